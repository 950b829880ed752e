-- Two customers, their own training pairs in one table, one GROUP BY statement
-- that trains a prefix for each, and the same prompt continuing differently.
-- Run with `make demo` or, from the repo root: sqlite3 :memory: < examples/customers.sql
.load dist/prefix
.read sql/schema.sql
.mode list
SELECT 'model: ' || prefix_model_load('m', '../shared/models/stories260K.gguf');

-- Customer "sunny" writes cheerful endings, customer "stormy" gloomy ones.
INSERT INTO prefix_pairs(customer, prompt, completion) VALUES
 ('sunny',  'The day was', ' bright and the sun smiled at everyone.' || char(10)),
 ('sunny',  'The sky was', ' blue and the birds sang happy songs.' || char(10)),
 ('sunny',  'The dog was', ' happy and it played in the warm sun.' || char(10)),
 ('sunny',  'The garden was', ' full of pretty flowers and bees.' || char(10)),
 ('sunny',  'The house was', ' warm and full of happy friends.' || char(10)),
 ('sunny',  'The boy was', ' glad and he laughed all day.' || char(10)),
 ('stormy', 'The day was', ' dark and the rain fell all night.' || char(10)),
 ('stormy', 'The sky was', ' grey and the wind was very cold.' || char(10)),
 ('stormy', 'The dog was', ' sad and it hid under the bed.' || char(10)),
 ('stormy', 'The garden was', ' wet and all the flowers were gone.' || char(10)),
 ('stormy', 'The house was', ' cold and the lights went out.' || char(10)),
 ('stormy', 'The boy was', ' scared of the loud thunder.' || char(10));

-- One statement, one prefix per customer. Training runs inside this SELECT, which holds
-- no write lock; the INSERT below stores the results in one short transaction.
CREATE TEMP TABLE trained AS
  SELECT customer, prefix_train_agg('m', prompt, completion, '{"add_eos": false, "max_steps": 300}') AS prefix
  FROM (SELECT * FROM prefix_pairs WHERE split = 'train' ORDER BY id)
  GROUP BY customer;

INSERT INTO prefixes(customer, model, model_fingerprint, prefix, options, rows, steps, final_train_loss)
  SELECT customer, 'm', (SELECT fingerprint FROM prefix_models WHERE name = 'm'), prefix,
         json_extract(prefix_info(prefix), '$.options'), json_extract(prefix_info(prefix), '$.rows'),
         json_extract(prefix_info(prefix), '$.steps'), json_extract(prefix_info(prefix), '$.final_train_loss')
  FROM trained;

.mode box
SELECT customer, rows, steps, round(final_train_loss, 3) AS final_loss, length(prefix) AS bytes FROM live_prefixes ORDER BY customer;

-- The same prompts, continued by each customer's prefix and by the plain model. The trained prompts give
-- their trained lines on every CPU and kernel. The last two were never trained: their text depends on the
-- CPU's arithmetic (the kernel's order of float sums decides close calls): with the AVX2, naive and blas
-- kernels "The cat was" borrows the nearest trained line (the dog's), with the AVX-512 and portable kernels
-- stormy's does and sunny's comes out as broken words; "The night was" gives broken words or a borrowed line,
-- different on each -- a 260K-parameter model memorizes six pairs; it does not generalize a style from them.
SELECT prompt,
       prefix_generate('m', (SELECT prefix FROM live_prefixes WHERE customer = 'sunny'),  prompt, '{"max_tokens": 24, "stop": "\n"}') AS sunny,
       prefix_generate('m', (SELECT prefix FROM live_prefixes WHERE customer = 'stormy'), prompt, '{"max_tokens": 24, "stop": "\n"}') AS stormy,
       prefix_generate('m', NULL, prompt, '{"max_tokens": 10, "stop": "\n"}') AS plain_model
FROM (SELECT DISTINCT prompt FROM prefix_pairs UNION ALL SELECT 'The cat was' UNION ALL SELECT 'The night was');
