-- sqlite-prefix quickstart: run with `make demo`, or paste into `sqlite3` from the repo root.
.headers on
.mode line
.load dist/prefix
SELECT prefix_version() AS version;

-- Load a GGUF model into the process-wide registry under the name 'm'.
SELECT prefix_model_load('m', '../shared/models/stories260K.gguf') AS loaded;
SELECT name, arch, n_layer, n_embd, n_head, n_head_kv, n_vocab, n_params, fingerprint FROM prefix_models;

.mode list
-- What the model sees: BOS, then SentencePiece pieces.
SELECT prefix_tokenize('m', 'Once upon a time') AS ids;

-- Greedy continuation (temperature 0, the default).
SELECT 'Once upon a time' || prefix_generate('m', NULL, 'Once upon a time', '{"max_tokens": 60}') AS story;

-- Sampling with a seed (same seed, same text) and a stop string.
SELECT 'Lily and Ben' || prefix_generate('m', NULL, 'Lily and Ben',
       '{"temperature": 0.8, "top_p": 0.95, "seed": 42, "max_tokens": 80, "stop": ["\n"]}') AS sampled;

-- Generation over table rows.
CREATE TABLE prompts(id INTEGER PRIMARY KEY, prompt TEXT);
INSERT INTO prompts(prompt) VALUES ('The cat sat'), ('Tom wanted a'), ('One day, the sun');
.mode box
SELECT id, prompt, prefix_generate('m', NULL, prompt, '{"max_tokens": 24, "stop": "."}') AS continuation
FROM prompts ORDER BY id;
