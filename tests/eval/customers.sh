#!/bin/sh
# make bench-customers: the time from a customer's rows to a good prefix (docs/training.md).
#
# E2E restaurants are the customers: the CUSTOMERS restaurants with the most rows of the official train set, each
# with its first N rows as training pairs (N = 20 and 100), 20 later rows as validation rows (val_query) and 40
# rows after those held out to score the prefix (never seen in training). One GROUP BY statement trains every
# customer's prefix; its wall time is divided by the customers. The schedules compared:
#   before       the previous defaults: at least 3 epochs and 800 steps, the last prefix (patience 0)
#   before+val   the previous defaults given the same validation rows: the best prefix by them (patience 0)
#   auto         the defaults, no validation rows (the plateau rule on the training loss)
# (with 100 rows only before, auto+val and warm+val run: there the plateau rule did not fire before the end, so auto
# gave before's prefix, and before+val's best prefix scored within 0.1% of before's; docs/training.md)
#   auto+val     the defaults with the validation rows (early stopping)
#   warm+val     the defaults with the validation rows, starting from a shared prefix trained once on other
#                restaurants' rows (its own time is shown apart: it is paid once for all customers)
# Then the recall check of docs/training.md (16 TinyStories sentence pairs, greedy continuation = the next
# sentence) and, with BENCH_BIG=1 (the default), the wall time of a 20-pair customer on a 134M Llama in Q4_K_M
# (make bench-compare's shape: 12 layers, 768 wide) with Llama 2's SentencePiece vocabulary of 32,000 tokens
# (from the Mistral family fixture, so E2E pairs are as many tokens as with a real model of that size; random
# weights, so time only): 10 steps (the previous default's time is extrapolated from them) and the defaults
# with validation rows.
# CUSTOMERS (default 8), BENCH_BIG=0 make it shorter. The table goes to stdout and dist/eval/customers.md.
set -e
. tests/eval/lib.sh
C=${CUSTOMERS:-8}
BIG=${BENCH_BIG:-1}
sql=$out/customers.sql
big=$BUILD/bench/llama134m-spm-Q4_K_M.gguf
if [ "$BIG" = 1 ] && [ ! -f "$big" ]; then
  mkdir -p "$BUILD/bench"
  "$BUILD/prefix-mkmodel" "$big" --layers 12 --embd 768 --heads 12 --ff 2048 --ctx 1024 --type q4_k_m \
    --vocab-from "$PREFIX_MODEL_DIR/families/mistral-tiny.gguf" >/dev/null || exit 1
fi

# cell|customer rows|options (JSON, merged over add_eos false; $V: the customer's validation rows)
cells="before|20|{\"patience\": 0}
before+val|20|{\"patience\": 0, \"eval_every\": 3, \"val_query\": \$V}
auto|20|{}
auto+val|20|{\"val_query\": \$V}
warm+val|20|{\"val_query\": \$V, \"init_prefix\": \$S}
before|100|{\"patience\": 0}
auto+val|100|{\"val_query\": \$V}
warm+val|100|{\"val_query\": \$V, \"init_prefix\": \$S}"

# the SQL expression of a cell's options for customer `name`
opts_sql() {
  o=$(printf '%s' "$1" | sed "s/'/''/g")
  printf "json_patch('{\"add_eos\": false}', replace(replace('%s', '\$V', json_quote(printf('SELECT p, q FROM va WHERE name = %%Q ORDER BY k', name))), '\$S', json_quote((SELECT hex(b) FROM shared))))" "$o"
}

{
  sql_preamble
  cat <<SQL
$(e2e_train_raw raw)
-- a restaurant's rows in file order; the table linearized as in make eval, a completion ending with a newline
CREATE TABLE e AS SELECT substr(mr, 6, instr(mr, ']') - 6) AS name,
  row_number() OVER (PARTITION BY substr(mr, 6, instr(mr, ']') - 6) ORDER BY rowid) AS k,
  $E2E_PROMPT AS p, $E2E_COMPLETION AS q FROM raw;
CREATE TABLE cust AS SELECT name FROM e GROUP BY name ORDER BY count(*) DESC LIMIT $C;
CREATE TABLE va AS SELECT * FROM e WHERE name IN (SELECT name FROM cust) AND k BETWEEN 121 AND 140;
CREATE TABLE ho AS SELECT * FROM e WHERE name IN (SELECT name FROM cust) AND k BETWEEN 201 AND 240;
CREATE TABLE tr AS SELECT * FROM e WHERE name IN (SELECT name FROM cust) AND k <= 100;
-- the shared prefix: other restaurants' rows (30 each), validated on 10 more of each
CREATE TABLE clock(t REAL);
INSERT INTO clock VALUES (julianday('now'));
CREATE TABLE shared AS SELECT prefix_train('m', 'SELECT p, q FROM e WHERE name NOT IN (SELECT name FROM cust) AND k <= 30 ORDER BY name, k',
  '{"add_eos": false, "val_query": "SELECT p, q FROM e WHERE name NOT IN (SELECT name FROM cust) AND k BETWEEN 31 AND 40"}') AS b;
CREATE TABLE cells(name TEXT, rows INT, options TEXT, train_s REAL, steps REAL, nll REAL, PRIMARY KEY (name, rows));
INSERT INTO cells VALUES ('shared', (SELECT json_extract(prefix_info(b), '$.rows') FROM shared), '{}',
  (julianday('now') - (SELECT t FROM clock)) * 86400, (SELECT json_extract(prefix_info(b), '$.steps') FROM shared), NULL);
CREATE TABLE pf(cell TEXT, rows INT, name TEXT, b BLOB);
SQL
  echo "$cells" | while IFS='|' read -r cell rows opts; do
    cat <<SQL
UPDATE clock SET t = julianday('now');
INSERT INTO pf SELECT '$cell', $rows, name, prefix_train('m', printf('SELECT p, q FROM tr WHERE name = %Q AND k <= $rows ORDER BY k', name), $(opts_sql "$opts"))
  FROM cust GROUP BY name;
INSERT INTO cells(name, rows, options, train_s) VALUES ('$cell', $rows, '$(printf '%s' "$opts" | sed "s/'/''/g")', (julianday('now') - (SELECT t FROM clock)) * 86400 / $C);
.print done $cell $rows
SQL
  done
  cat <<'SQL'
-- held-out NLL per customer: mean nats per completion token of its 40 held-out rows
CREATE TABLE nll AS SELECT cell, rows, pf.name,
  (SELECT sum(json_extract(s, '$.nll') * json_extract(s, '$.tokens')) / sum(json_extract(s, '$.tokens'))
   FROM (SELECT prefix_score('m', pf.b, p, q, '{"add_eos": false}') AS s FROM ho WHERE ho.name = pf.name)) AS nll,
  json_extract(prefix_info(b), '$.steps') AS steps, json_extract(prefix_info(b), '$.stop_reason') AS why FROM pf;
INSERT INTO nll SELECT 'no prefix', 0, name, (SELECT sum(json_extract(s, '$.nll') * json_extract(s, '$.tokens')) / sum(json_extract(s, '$.tokens'))
   FROM (SELECT prefix_score('m', NULL, p, q, '{"add_eos": false}') AS s FROM ho WHERE ho.name = cust.name)), 0, NULL FROM cust;
UPDATE cells SET nll = (SELECT avg(nll) FROM nll WHERE nll.cell = cells.name AND nll.rows = cells.rows),
  steps = (SELECT avg(steps) FROM nll WHERE nll.cell = cells.name AND nll.rows = cells.rows) WHERE name <> 'shared';
.headers off
.mode list
.separator ""
.print
.print | customer rows | schedule | options (besides add_eos false) | s per customer | × before | steps (mean) | stopped by | held-out NLL (mean) | × before |
.print |---|---|---|---|---|---|---|---|---|
SELECT '| ', c.rows, ' | ', c.name, ' | ', replace(c.options, '|', '\|'), ' | ', printf('%.2f', c.train_s), ' | ',
  CASE WHEN c.name = 'shared' THEN '(once)' ELSE printf('%.3f', c.train_s / b.train_s) END, ' | ', printf('%.0f', c.steps), ' | ',
  coalesce((SELECT group_concat(why || ' ' || n, ', ') FROM (SELECT why, count(*) n FROM nll WHERE nll.cell = c.name AND nll.rows = c.rows GROUP BY why)), '-'),
  ' | ', coalesce(printf('%.3f', c.nll), '-'), ' | ', coalesce(printf('%.3f', c.nll / b.nll), '-'), ' |'
FROM cells c LEFT JOIN cells b ON b.name = 'before' AND b.rows = c.rows ORDER BY c.rows, c.rowid;
.print
SELECT 'No prefix: held-out NLL ' || printf('%.3f', avg(nll)) || ' (mean over the customers).' FROM nll WHERE cell = 'no prefix';
.print
.print Held-out NLL per customer (20 training rows):
SELECT '- ', name, ': ', group_concat(cell || ' ' || printf('%.3f', nll) || ' (' || steps || ' steps)', ', ') FROM nll WHERE rows IN (0, 20) GROUP BY name;
SQL
  # recall: the first two sentences of the first 16 stories without quotes, as docs/training.md describes
  cat <<SQL
CREATE TABLE ts(id INTEGER PRIMARY KEY, p TEXT, q TEXT);
.import --csv $out/ts-pairs.csv ts
CREATE TABLE rc(cell TEXT, s REAL, steps INT, why TEXT, recall INT);
SQL
  for o in '{"patience": 0}|before' '{}|auto'; do
    cat <<SQL
UPDATE clock SET t = julianday('now');
CREATE TABLE r AS SELECT prefix_train('m', 'SELECT p, q FROM ts ORDER BY id', json_patch('{"add_eos": false}', '${o%|*}')) AS b;
INSERT INTO rc SELECT '${o#*|}', (julianday('now') - (SELECT t FROM clock)) * 86400, json_extract(prefix_info(b), '\$.steps'),
  json_extract(prefix_info(b), '\$.stop_reason'), (SELECT sum(prefix_generate('m', b, p, '{"max_tokens": 80, "stop": "\n"}') || char(10) = q) FROM ts) FROM r;
DROP TABLE r;
SQL
  done
  cat <<'SQL'
.print
.print Recall of 16 TinyStories sentence pairs (greedy continuation = the next sentence):
SELECT '- ', cell, ': ', recall, '/16 in ', steps, ' steps (', why, '), ', printf('%.1f', s), ' s' FROM rc;
SQL
  if [ "$BIG" = 1 ]; then
    cat <<SQL
.output /dev/null
SELECT prefix_model_load('big', '$big');
.output stdout
CREATE TABLE bg(cell TEXT, name TEXT, s REAL, steps INT, why TEXT);
SQL
    for o in "{\"max_steps\": 10, \"patience\": 0}|10 steps" "{\"val_query\": \$V}|auto+val"; do
      cat <<SQL
UPDATE clock SET t = julianday('now');
INSERT INTO bg WITH t(name, b) AS MATERIALIZED (
    SELECT name, prefix_train('big', printf('SELECT p, q FROM tr WHERE name = %Q AND k <= 20 ORDER BY k', name), $(opts_sql "${o%|*}" | sed 's/(SELECT hex(b) FROM shared)/NULL/'))
    FROM (SELECT name FROM cust LIMIT 1))
  SELECT '${o#*|}', name, NULL, json_extract(prefix_info(b), '\$.steps'), json_extract(prefix_info(b), '\$.stop_reason') FROM t;
UPDATE bg SET s = (julianday('now') - (SELECT t FROM clock)) * 86400 WHERE s IS NULL;
SQL
    done
    cat <<'SQL'
.print
.print 134M Q4_K_M (random weights, Llama 2's vocabulary), one 20-pair customer:
SELECT '- ', printf('%.0f', avg(json_array_length(prefix_tokenize('big', p || q)))), ' tokens per training pair (',
  printf('%.0f', avg(json_array_length(prefix_tokenize('m', p || q)))), ' with stories260K''s vocabulary)'
  FROM tr WHERE name = (SELECT name FROM cust LIMIT 1) AND k <= 20;
SELECT '- ', cell, ': ', steps, ' steps (', why, '), ', printf('%.1f', s), ' s', CASE WHEN cell = '10 steps' THEN
  printf(' (the previous default, 801 steps, would take about %.0f s)', s / steps * 801) ELSE '' END FROM bg;
SQL
  fi
} >"$sql"

# the 16 recall pairs: the first two sentences of each of the first 16 stories whose two sentences hold no quote
awk 'BEGIN { RS = "<[|]endoftext[|]>"; n = 0 }
n < 16 {
  gsub(/\n/, " "); sub(/^ +/, "")
  if (!match($0, /[.!?] +/)) next
  a = substr($0, 1, RSTART); rest = substr($0, RSTART + RLENGTH)
  if (!match(rest, /[.!?]( |$)/)) next
  b = substr(rest, 1, RSTART)
  if (index(a b, "\"")) next
  printf "%d,\"%s\",\" %s\n\"\n", ++n, a, b
}' "$PREFIX_DATA_DIR/tinystories/tinystories_train_1MiB_a.txt" >"$out/ts-pairs.csv"

eval_run "$sql" "$out/customers.log" "$out/customers.md" "$C customers; make bench-customers"
