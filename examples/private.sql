-- Differentially private prefixes: each customer's prefix trained with DP-SGD, the privacy it spent
-- recorded in the BLOB, and what that costs in held-out loss (docs/privacy.md).
-- From the repo root: sqlite3 :memory: < examples/private.sql
.load dist/prefix
.mode list
SELECT 'model: ' || prefix_model_load('m', '../shared/models/stories260K.gguf');

-- 60 rows per customer from real E2E restaurant descriptions; 20 held out of each
CREATE TABLE e2e(mr TEXT, ref TEXT);
.import --csv --skip 1 ../shared/data/e2e/devset.csv e2e
CREATE TABLE pairs AS
  SELECT CASE WHEN rowid % 2 THEN 'acme' ELSE 'zenith' END AS customer, rowid % 3 = 0 AS held_out,
         replace(replace(replace(mr, '[', ': '), '], ', ' | '), ']', '') || ' ||' AS prompt, ' ' || ref || char(10) AS completion
  FROM e2e WHERE rowid <= 120;

-- One statement: a private prefix per customer (epsilon 8, delta 1e-5), and one without dp to compare
CREATE TABLE prefixes AS
  SELECT customer,
         prefix_train_agg('m', prompt, completion, '{"add_eos": false, "max_steps": 60, "batch_size": 16,
                          "progress": false, "dp": {"epsilon": 8, "delta": 1e-5}}') AS private,
         prefix_train_agg('m', prompt, completion, '{"add_eos": false, "max_steps": 60, "batch_size": 16,
                          "progress": false}') AS plain
  FROM (SELECT * FROM pairs WHERE NOT held_out ORDER BY rowid) GROUP BY customer;

-- What each private prefix spent, as its BLOB records it
SELECT customer, printf('epsilon %.2f at delta %g, noise multiplier %.3f, %d steps at sample rate %.3f',
         json_extract(i, '$.dp.epsilon'), json_extract(i, '$.dp.delta'), json_extract(i, '$.dp.noise_multiplier'),
         json_extract(i, '$.dp.steps'), json_extract(i, '$.dp.sample_rate'))
FROM (SELECT customer, prefix_info(private) AS i FROM prefixes);

-- Held-out loss (nats per token): no prefix, the private prefix, the plain one
SELECT p.customer,
       printf('none %.3f', avg(json_extract(prefix_score('m', NULL, prompt, completion, '{"add_eos": false}'), '$.nll'))),
       printf('private %.3f', avg(json_extract(prefix_score('m', private, prompt, completion, '{"add_eos": false}'), '$.nll'))),
       printf('plain %.3f', avg(json_extract(prefix_score('m', plain, prompt, completion, '{"add_eos": false}'), '$.nll')))
FROM pairs p JOIN prefixes USING (customer) WHERE held_out GROUP BY p.customer;
