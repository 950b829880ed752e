-- A new customer's prefix in a few seconds: one shared task prefix trained on other customers' rows, then each
-- new customer's prefix starts from it and stops as soon as its own validation rows stop improving
-- (docs/training.md). One statement does both.
-- From the repo root: sqlite3 :memory: < examples/warm_start.sql
.load dist/prefix
.mode list
SELECT 'model: ' || prefix_model_load('m', '../shared/models/stories260K.gguf');

-- Real E2E restaurant descriptions; each restaurant is a customer, its rows numbered k = 1, 2, ...
CREATE TABLE e2e(mr TEXT, ref TEXT);
.import --csv --skip 1 ../shared/data/e2e/devset.csv e2e
CREATE TABLE pairs AS
  SELECT substr(mr, 6, instr(mr, ']') - 6) AS customer,
         row_number() OVER (PARTITION BY substr(mr, 6, instr(mr, ']') - 6) ORDER BY rowid) AS k,
         replace(replace(replace(mr, '[', ': '), '], ', ' | '), ']', '') || ' ||' AS prompt, ' ' || ref || char(10) AS completion
  FROM e2e;

-- Two new customers: rows 1-20 to train on, 21-30 to validate (early stopping), 31-50 held out to measure
CREATE TABLE new_customers(name TEXT);
INSERT INTO new_customers VALUES ('Cocum'), ('Cotto');

-- One statement: the shared prefix (10 rows of every other restaurant, a fixed 150 steps: it is trained once), then
-- each new customer's prefix from it, with the defaults. init_prefix takes the BLOB as hex text (JSON holds no BLOB).
CREATE TABLE prefixes AS
WITH shared(b) AS MATERIALIZED (
  SELECT prefix_train('m', 'SELECT prompt, completion FROM pairs WHERE customer NOT IN (SELECT name FROM new_customers) AND k <= 10 ORDER BY customer, k',
                      '{"add_eos": false, "max_steps": 150, "progress": false}'))
SELECT name AS customer, b AS shared,
       prefix_train('m', printf('SELECT prompt, completion FROM pairs WHERE customer = %Q AND k <= 20 ORDER BY k', name),
                    json_object('add_eos', json('false'), 'progress', json('false'), 'init_prefix', hex(b),
                                'val_query', printf('SELECT prompt, completion FROM pairs WHERE customer = %Q AND k BETWEEN 21 AND 30', name))) AS warm,
       NULL AS cold
FROM new_customers, shared;

-- To compare: the same customers from random values (a cold start), also with the defaults
UPDATE prefixes SET cold = prefix_train('m', printf('SELECT prompt, completion FROM pairs WHERE customer = %Q AND k <= 20 ORDER BY k', customer),
  json_object('add_eos', json('false'), 'progress', json('false'),
              'val_query', printf('SELECT prompt, completion FROM pairs WHERE customer = %Q AND k BETWEEN 21 AND 30', customer)));

-- How long each customer's training ran and why it stopped
SELECT customer, printf('warm: %d steps (%s), cold: %s steps (%s)',
         json_extract(prefix_info(warm), '$.steps'), json_extract(prefix_info(warm), '$.stop_reason'),
         CASE WHEN cold IS NULL THEN '-' ELSE json_extract(prefix_info(cold), '$.steps') END,
         CASE WHEN cold IS NULL THEN 'not trained' ELSE json_extract(prefix_info(cold), '$.stop_reason') END)
FROM prefixes;

-- Held-out loss (nats per token) on rows 31-50: no prefix, the shared prefix alone, cold, warm
SELECT p.customer,
       printf('none %.3f', avg(json_extract(prefix_score('m', NULL, prompt, completion, '{"add_eos": false}'), '$.nll'))),
       printf('shared %.3f', avg(json_extract(prefix_score('m', shared, prompt, completion, '{"add_eos": false}'), '$.nll'))),
       printf('cold %.3f', avg(json_extract(prefix_score('m', cold, prompt, completion, '{"add_eos": false}'), '$.nll'))),
       printf('warm %.3f', avg(json_extract(prefix_score('m', warm, prompt, completion, '{"add_eos": false}'), '$.nll')))
FROM pairs p JOIN prefixes USING (customer) WHERE k BETWEEN 31 AND 50 GROUP BY p.customer;
