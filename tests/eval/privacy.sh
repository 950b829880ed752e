#!/bin/sh
# make eval-privacy: what differential privacy costs and what it buys, through SQL only (docs/evaluation.md).
#
# One SQL script (dist/eval/privacy.sql) in one sqlite3 process, on stories260K and E2E:
#  - quality: prefixes trained on 1,000 E2E rows (plus one canary row) with epsilon 1, 3, 8 and without dp;
#    held-out NLL (prefix_score) on dev pairs;
#  - memorisation, as in Carlini et al. 2019 ("The Secret Sharer"): a secret ("my code is 4 8 1 5 9 2") put
#    k = 1 and k = 10 times among the 1,000 rows; the true secret ranked among PRIVACY_CANDIDATES random
#    alternatives (other digit strings) by prefix_score; exposure = log2(candidates + 1) - log2(rank).
# The table goes to stdout and dist/eval/privacy.md. PRIVACY_STEPS, PRIVACY_BATCH, PRIVACY_CANDIDATES and
# PRIVACY_DEV_PAIRS make it shorter.
set -e
. tests/eval/lib.sh
STEPS=${PRIVACY_STEPS:-300}
BATCH=${PRIVACY_BATCH:-64}
CAND=${PRIVACY_CANDIDATES:-10000}
PAIRS=${PRIVACY_DEV_PAIRS:-300}
sql=$out/privacy.sql

# cell|copies of the secret|dp options (empty: no dp)
cells="none k1|1|
eps 8 k1|1|{\"epsilon\": 8}
eps 3 k1|1|{\"epsilon\": 3}
eps 1 k1|1|{\"epsilon\": 1}
none k10|10|
eps 8 k10|10|{\"epsilon\": 8}"

{
  sql_preamble
  cat <<SQL
$(e2e_train_raw train_raw part1)
CREATE TABLE dev_raw(mr TEXT, ref TEXT);
.import --csv --skip 1 $e2e/devset.csv dev_raw
-- as make eval: the table linearized; completions end with a newline (stories260K never learned EOS)
CREATE TABLE tr AS SELECT $E2E_PROMPT AS p, $E2E_COMPLETION AS q
  FROM train_raw ORDER BY rowid LIMIT 1000;
CREATE TABLE dev_pairs AS SELECT $E2E_PROMPT AS p, $E2E_COMPLETION AS q
  FROM dev_raw ORDER BY rowid LIMIT $PAIRS;
-- the secret and its alternatives: six digits each, drawn at random (the true one excluded)
CREATE TABLE secret(p TEXT, q TEXT);
INSERT INTO secret VALUES ('my code is', ' 4 8 1 5 9 2' || char(10));
CREATE TABLE cand(q TEXT PRIMARY KEY);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3 * $CAND)
INSERT OR IGNORE INTO cand SELECT ' ' || (abs(random()) % 10) || ' ' || (abs(random()) % 10) || ' ' || (abs(random()) % 10) || ' '
  || (abs(random()) % 10) || ' ' || (abs(random()) % 10) || ' ' || (abs(random()) % 10) || char(10) FROM n;
DELETE FROM cand WHERE q = (SELECT q FROM secret);
DELETE FROM cand WHERE rowid NOT IN (SELECT rowid FROM cand LIMIT $CAND);
CREATE TABLE copies(k INT);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10) INSERT INTO copies SELECT i FROM n;
CREATE TABLE cells(name TEXT PRIMARY KEY, k INT, dp TEXT, prefix BLOB, train_s REAL, nll REAL, secret_nll REAL, rank INT,
  epsilon REAL, sigma REAL);
CREATE TABLE clock(t REAL);
INSERT INTO clock VALUES (0);
SQL
  echo "$cells" | while IFS='|' read -r name k dp; do
    [ -n "$name" ] || continue
    if [ -n "$dp" ]; then opts="{\"max_steps\": $STEPS, \"batch_size\": $BATCH, \"add_eos\": false, \"progress\": false, \"dp\": $dp}"
    else opts="{\"max_steps\": $STEPS, \"batch_size\": $BATCH, \"add_eos\": false, \"progress\": false}"; fi
    cat <<SQL
INSERT INTO cells(name, k, dp) VALUES ('$name', $k, NULLIF('$dp', ''));
UPDATE clock SET t = julianday('now');
UPDATE cells SET prefix = prefix_train('m', 'SELECT p, q FROM tr UNION ALL SELECT s.p, s.q FROM secret s, copies c WHERE c.k <= $k',
  '$opts') WHERE name = '$name';
UPDATE cells SET train_s = (julianday('now') - (SELECT t FROM clock)) * 86400,
  epsilon = json_extract(prefix_info(prefix), '\$.dp.epsilon'), sigma = json_extract(prefix_info(prefix), '\$.dp.noise_multiplier')
  WHERE name = '$name';
UPDATE cells SET nll = (SELECT sum(json_extract(s, '\$.nll') * json_extract(s, '\$.tokens')) / sum(json_extract(s, '\$.tokens'))
  FROM (SELECT prefix_score('m', cells.prefix, p, q, '{"add_eos": false}') AS s FROM dev_pairs)) WHERE name = '$name';
UPDATE cells SET secret_nll = (SELECT json_extract(prefix_score('m', cells.prefix, p, q, '{"add_eos": false}'), '\$.nll') FROM secret)
  WHERE name = '$name';
UPDATE cells SET rank = 1 + (SELECT count(*) FROM cand
  WHERE json_extract(prefix_score('m', cells.prefix, (SELECT p FROM secret), cand.q, '{"add_eos": false}'), '\$.nll') < cells.secret_nll)
  WHERE name = '$name';
.print done $name
SQL
  done
  cat <<SQL
.headers off
.mode list
.separator ""
.print
.print | cell | secret copies | dp | epsilon spent | noise multiplier | held-out NLL | secret's rank of $CAND + 1 | exposure (bits) | train s |
.print |---|---|---|---|---|---|---|---|---|
SELECT '| ', name, ' | ', k, ' | ', coalesce(dp, 'none'), ' | ', CASE WHEN epsilon IS NULL THEN 'inf' ELSE printf('%.2f', epsilon) END, ' | ',
       CASE WHEN sigma IS NULL THEN '-' ELSE printf('%.3f', sigma) END, ' | ', printf('%.3f', nll), ' | ', rank, ' | ',
       printf('%.2f', log2((SELECT count(*) + 1 FROM cand)) - log2(rank)), ' | ', printf('%.1f', train_s), ' |'
FROM cells ORDER BY rowid;
SQL
} >"$sql"
echo "eval-privacy: stories260K, E2E (1,000 training rows), $STEPS steps of batch $BATCH, $CAND candidates; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(date -u +%Y-%m-%d)"
sqlite3 <"$sql" | tee "$out/privacy.out" | grep -v '^done' | tee "$out/privacy.md"
