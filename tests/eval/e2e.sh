#!/bin/sh
# make eval: the Prefix-Tuning paper's E2E experiments at our scale, through SQL only.
#
# This script writes one SQL script (dist/eval/e2e.sql) and runs it in one sqlite3 process: it imports E2E
# from $PREFIX_DATA_DIR/e2e, trains one prefix per cell with prefix_train, and measures on held-out dev data
# the NLL (prefix_score), and BLEU/ROUGE-L (prefix_bleu, prefix_rouge_l) of greedy and beam-5 outputs
# (prefix_generate_batch). Each cell's wall time is measured in SQL (julianday('now') between statements).
# The table goes to stdout and dist/eval/results.md. EVAL_STEPS, EVAL_DEV_MRS, EVAL_NLL_PAIRS, EVAL_GPT2=0
# make it shorter.
set -e
. tests/eval/lib.sh
STEPS=${EVAL_STEPS:-600}
MRS=${EVAL_DEV_MRS:-100}
PAIRS=${EVAL_NLL_PAIRS:-300}
GPT2=${EVAL_GPT2:-1}
sql=$out/e2e.sql

# cell|model|training rows|options (JSON); an empty options field: no prefix
cells="base|m|0|
p1|m|1000|{\"prefix_len\": 1}
p5|m|1000|{\"prefix_len\": 5}
p10|m|1000|{\"prefix_len\": 10}
p20|m|1000|{\"prefix_len\": 20}
p40|m|1000|{\"prefix_len\": 40}
table10|m|1000|{\"prefix_len\": 10, \"mid_dim\": 0}
embedding10|m|1000|{\"prefix_len\": 10, \"mode\": \"embedding\"}
text10|m|1000|{\"prefix_len\": 10, \"init_text\": \"name food area price rating\"}
rows50|m|50|{\"prefix_len\": 10}
rows100|m|100|{\"prefix_len\": 10}
rows200|m|200|{\"prefix_len\": 10}
rows500|m|500|{\"prefix_len\": 10}
long10|m|5000|{\"prefix_len\": 10, \"max_steps\": 3000}
seed2|m|1000|{\"prefix_len\": 10, \"seed\": 2}
seed3|m|1000|{\"prefix_len\": 10, \"seed\": 3}"

# SQL that measures cell $1 on model $2: NLL on $3 dev pairs; greedy and beam-5 outputs (at most $5 tokens)
# for $4 dev tables; its wall time
eval_cell() {
  cat <<SQL
UPDATE clock SET t = julianday('now');
UPDATE cells SET nll = (SELECT sum(json_extract(s, '\$.nll') * json_extract(s, '\$.tokens')) / sum(json_extract(s, '\$.tokens'))
  FROM (SELECT prefix_score('$2', cells.prefix, p, q, '{"add_eos": false}') AS s FROM dev_pairs LIMIT $3)) WHERE name = '$1';
INSERT INTO outs SELECT '$1', 'greedy', id, text FROM prefix_generate_batch('$2',
  'SELECT id, (SELECT prefix FROM cells WHERE name = ''$1''), p FROM dev_mr LIMIT $4', '{"max_tokens": $5, "stop": ["\\n"], "batch_size": 50}');
INSERT INTO outs SELECT '$1', 'beam5', id, text FROM prefix_generate_batch('$2',
  'SELECT id, (SELECT prefix FROM cells WHERE name = ''$1''), p FROM dev_mr LIMIT $4', '{"max_tokens": $5, "stop": ["\\n"], "beam_size": 5, "batch_size": 20}');
UPDATE cells SET eval_s = (julianday('now') - (SELECT t FROM clock)) * 86400 WHERE name = '$1';
.print done $1
SQL
}

{
  sql_preamble
  cat <<SQL
-- E2E: the official train and dev files; the table linearized as "name: X | food: Y | ..." and " ||"
$(e2e_train_raw train_raw)
CREATE TABLE dev_raw(mr TEXT, ref TEXT);
.import --csv --skip 1 $e2e/devset.csv dev_raw
-- stories260K never learned to emit EOS (its output row for EOS is untrained), so a completion ends with a
-- newline and generation stops at one
CREATE TABLE tr AS SELECT $E2E_PROMPT AS p, $E2E_COMPLETION AS q
  FROM train_raw ORDER BY rowid;
CREATE TABLE dev_mr AS SELECT row_number() OVER (ORDER BY min(rowid)) AS id, mr,
  $E2E_PROMPT AS p, json_group_array(ref) AS refs
  FROM dev_raw GROUP BY mr ORDER BY min(rowid) LIMIT $MRS;
CREATE TABLE dev_pairs AS SELECT $E2E_PROMPT AS p, $E2E_COMPLETION AS q
  FROM dev_raw ORDER BY rowid LIMIT $PAIRS;
CREATE TABLE cells(name TEXT PRIMARY KEY, model TEXT, rows INT, options TEXT, prefix BLOB, train_s REAL, eval_s REAL,
  nll REAL, bleu_greedy REAL, rouge_greedy REAL, chrf_greedy REAL, bleu_beam REAL, rouge_beam REAL, chrf_beam REAL, sample TEXT);
CREATE TABLE outs(cell TEXT, decoding TEXT, id INT, text TEXT);
CREATE TABLE clock(t REAL);
INSERT INTO clock VALUES (0);
SQL
  echo "$cells" | while IFS='|' read -r name model rows opts; do
    [ -n "$name" ] || continue
    o=$(printf '%s' "$opts" | sed "s/'/''/g")
    opt_json="json_patch('{\"max_steps\": $STEPS, \"add_eos\": false}', '$o')"
    echo "INSERT INTO cells(name, model, rows, options) VALUES ('$name', '$model', $rows, CASE WHEN '$o' = '' THEN NULL ELSE $opt_json END);"
    echo "UPDATE clock SET t = julianday('now');"
    if [ -n "$opts" ]; then
      echo "UPDATE cells SET prefix = prefix_train(model, 'SELECT p, q FROM tr LIMIT $rows', options) WHERE name = '$name';"
    fi
    echo "UPDATE cells SET train_s = (julianday('now') - (SELECT t FROM clock)) * 86400 WHERE name = '$name';"
    eval_cell "$name" "$model" "$PAIRS" "$MRS" 60
  done
  cat <<'SQL'
-- the ensemble of three prefixes trained with three seeds (p10, seed2, seed3)
INSERT INTO cells(name, model, rows, options, prefix, train_s)
  SELECT 'ensemble3', 'm', 1000, '{"members": ["p10", "seed2", "seed3"]}', prefix_ensemble(prefix), sum(train_s)
  FROM cells WHERE name IN ('p10', 'seed2', 'seed3');
SQL
  eval_cell ensemble3 m "$PAIRS" "$MRS" 60
  if [ "$GPT2" = 1 ]; then
    cat <<SQL
-- the paper's architecture: a GPT-2-small-shape model (random weights, GPT-2's real vocabulary)
.shell $BUILD/prefix-mkmodel $out/gpt2-small-random.gguf --arch gpt2 --layers 12 --embd 768 --heads 12 --ff 3072 --ctx 1024 --vocab-from $PREFIX_DATA_DIR/gpt2/gpt2-vocab-only.gguf >/dev/null
.output /dev/null
SELECT prefix_model_load('gpt2', '$out/gpt2-small-random.gguf');
.output stdout
INSERT INTO cells(name, model, rows, options) VALUES ('gpt2-small-random', 'gpt2', 200, '{"prefix_len": 10, "max_steps": 10, "batch_size": 4, "add_eos": false}');
UPDATE clock SET t = julianday('now');
UPDATE cells SET prefix = prefix_train('gpt2', 'SELECT p, q FROM tr LIMIT 200', options) WHERE name = 'gpt2-small-random';
UPDATE cells SET train_s = (julianday('now') - (SELECT t FROM clock)) * 86400 WHERE name = 'gpt2-small-random';
SQL
    eval_cell gpt2-small-random gpt2 20 10 20
  fi
  cat <<'SQL'
-- metrics: corpus BLEU-4 and mean ROUGE-L against every reference of each dev table
UPDATE cells SET
  bleu_greedy = (SELECT prefix_bleu(o.text, d.refs) FROM outs o JOIN dev_mr d USING (id) WHERE o.cell = cells.name AND o.decoding = 'greedy'),
  rouge_greedy = (SELECT prefix_rouge_l(o.text, d.refs) FROM outs o JOIN dev_mr d USING (id) WHERE o.cell = cells.name AND o.decoding = 'greedy'),
  chrf_greedy = (SELECT prefix_chrf(o.text, d.refs) FROM outs o JOIN dev_mr d USING (id) WHERE o.cell = cells.name AND o.decoding = 'greedy'),
  chrf_beam = (SELECT prefix_chrf(o.text, d.refs) FROM outs o JOIN dev_mr d USING (id) WHERE o.cell = cells.name AND o.decoding = 'beam5'),
  bleu_beam = (SELECT prefix_bleu(o.text, d.refs) FROM outs o JOIN dev_mr d USING (id) WHERE o.cell = cells.name AND o.decoding = 'beam5'),
  rouge_beam = (SELECT prefix_rouge_l(o.text, d.refs) FROM outs o JOIN dev_mr d USING (id) WHERE o.cell = cells.name AND o.decoding = 'beam5'),
  sample = (SELECT text FROM outs WHERE cell = cells.name AND decoding = 'beam5' AND id = 1);
.headers off
.mode list
.separator ""
.print
.print | cell | model | train rows | prefix_len | options | held-out NLL (nats/token) | BLEU greedy | ROUGE-L greedy | chrF greedy | BLEU beam-5 | ROUGE-L beam-5 | chrF beam-5 | train s | eval s |
.print |---|---|---|---|---|---|---|---|---|---|---|---|---|---|
SELECT '| ', name, ' | ', model, ' | ', rows, ' | ', CASE WHEN prefix IS NULL THEN '-' ELSE coalesce(json_extract(prefix_info(prefix), '$.prefix_len'), json_extract(prefix_info(prefix), '$.members[0].prefix_len')) END,
       ' | ', coalesce(replace(options, '|', '\|'), 'no prefix'), ' | ', printf('%.3f', nll), ' | ', printf('%.2f', bleu_greedy), ' | ', printf('%.2f', rouge_greedy),
       ' | ', printf('%.2f', chrf_greedy), ' | ', printf('%.2f', bleu_beam), ' | ', printf('%.2f', rouge_beam), ' | ', printf('%.2f', chrf_beam), ' | ', printf('%.1f', train_s), ' | ', printf('%.1f', eval_s), ' |'
FROM cells ORDER BY rowid;
.print
.print Beam-5 output for the first dev table:
SELECT '- ', name, ': ', replace(sample, char(10), ' ') FROM cells ORDER BY rowid;
.print
.print References of the first dev table:
SELECT '- ', j.value FROM dev_mr, json_each(dev_mr.refs) j WHERE dev_mr.id = 1;
SQL
} >"$sql"

eval_run "$sql" "$out/run.log" "$out/results.md" "$STEPS steps per cell, $MRS dev tables, $PAIRS dev pairs; make eval"
