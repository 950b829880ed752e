-- sqlite-prefix on a dqlite cluster: the training job queue that prefix-worker processes take work from.
-- Load after sql/schema.sql:  prefix-cluster -s HOST:PORT exec-file sql/schema.sql
--                             prefix-cluster -s HOST:PORT exec-file sql/cluster.sql
-- A job trains one prefix for one customer from prefix_pairs (split 'train', in id order) and, in the same
-- transaction that marks it done, inserts the result into prefixes. See docs/scaling.md.

CREATE TABLE IF NOT EXISTS prefix_train_jobs (
  id            INTEGER PRIMARY KEY,
  customer      TEXT NOT NULL,
  model         TEXT NOT NULL,        -- a model NAME the workers load (prefix-worker --model NAME=PATH)
  options       TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(options)),  -- prefix_train's options
  state         TEXT NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'running', 'done', 'failed')),
  attempts      INTEGER NOT NULL DEFAULT 0,   -- claims so far; a claim whose lease ran out counts
  max_attempts  INTEGER NOT NULL DEFAULT 3,
  worker        TEXT,                 -- the worker holding (or that last held) the job
  claim         TEXT,                 -- this claim's token: only its holder may renew or complete it
  lease_until   INTEGER,              -- unix seconds (the leader's clock); past it, another worker may claim
  error         TEXT,                 -- why the job failed
  prefix_id     INTEGER REFERENCES prefixes(id),  -- the row it wrote
  created_at    INTEGER NOT NULL DEFAULT (unixepoch()),
  started_at    INTEGER,
  finished_at   INTEGER
);
CREATE INDEX IF NOT EXISTS prefix_train_jobs_state ON prefix_train_jobs(state, id);
