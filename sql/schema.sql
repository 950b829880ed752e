-- sqlite-prefix: recommended tables for per-customer prefixes.
-- Load with `.read sql/schema.sql` (or run it from your migration tool).

-- Training pairs: what each customer's prefix learns from.
CREATE TABLE IF NOT EXISTS prefix_pairs (
  id          INTEGER PRIMARY KEY,
  customer    TEXT NOT NULL,
  prompt      TEXT NOT NULL,
  completion  TEXT NOT NULL,
  split       TEXT NOT NULL DEFAULT 'train' CHECK (split IN ('train', 'val', 'test')),
  created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX IF NOT EXISTS prefix_pairs_customer ON prefix_pairs(customer, split);

-- Trained prefixes, one row per training run; the newest per customer is the live one.
CREATE TABLE IF NOT EXISTS prefixes (
  id                 INTEGER PRIMARY KEY,
  customer           TEXT NOT NULL,
  model              TEXT NOT NULL,             -- the registry name used to train
  model_fingerprint  TEXT NOT NULL,             -- prefix_models.fingerprint; generation checks it
  prefix             BLOB NOT NULL,             -- from prefix_train / prefix_train_agg
  options            TEXT,                      -- the options JSON passed to training
  rows               INTEGER,                   -- training rows used
  steps              INTEGER,
  best_val_loss      REAL,                      -- NULL when trained without validation
  final_train_loss   REAL,
  created_at         TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX IF NOT EXISTS prefixes_customer ON prefixes(customer, id);

-- The live prefix of each customer.
CREATE VIEW IF NOT EXISTS live_prefixes AS
  SELECT p.* FROM prefixes p
  WHERE p.id = (SELECT max(id) FROM prefixes q WHERE q.customer = p.customer);
