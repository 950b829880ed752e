# Sourced by the scripts of make eval, make eval-privacy and make bench-customers: the paths they share, and
# E2E (../shared/data/e2e) as they all read it.
BUILD=${BUILD:-dist}
: "${PREFIX_MODEL_DIR:=../shared/models}"
: "${PREFIX_DATA_DIR:=../shared/data}"
out=$BUILD/eval
mkdir -p "$out"
e2e=$PREFIX_DATA_DIR/e2e
# the prompt: the meaning representation "name[X], food[Y]" linearized as "name: X | food: Y ||" (SQL over mr)
E2E_PROMPT="replace(replace(replace(mr, '[', ': '), '], ', ' | '), ']', '') || ' ||'"
# the completion: the reference after a space, ending with a newline (stories260K never learned EOS)
E2E_COMPLETION="' ' || ref || char(10)"

# SQL that imports the official train set into TABLE(mr, ref): all three parts, or only the first with "part1"
e2e_train_raw() {
  echo "CREATE TABLE $1(mr TEXT, ref TEXT);"
  echo ".import --csv --skip 1 $e2e/trainset.csv.part1of3 $1"
  if [ "${2:-}" != part1 ]; then
    echo ".import --csv $e2e/trainset.csv.part2of3 $1"
    echo ".import --csv $e2e/trainset.csv.part3of3 $1"
  fi
}

# The first lines of every eval script's SQL: stop at the first error, the extension, stories260K as 'm'
sql_preamble() {
  printf ".bail on\n.load %s/prefix\n.output /dev/null\nSELECT prefix_model_load('m', '%s/stories260K.gguf');\n.output stdout\n" \
    "$BUILD" "$PREFIX_MODEL_DIR"
}

# eval_run SQL LOG MD WHAT: the SQL in one sqlite3 process, all it prints to LOG, the table (without the "done"
# lines) to MD, then a line with the date, CPU, threads, WHAT and the seconds it took; prints MD
eval_run() {
  t0=$(date +%s)
  sqlite3 -batch :memory: <"$1" | tee "$2" | grep -v '^done ' >"$3"
  t1=$(date +%s)
  cpu=$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')
  {
    echo
    echo "$(date -u +%Y-%m-%d), $cpu, $(nproc) threads; $4 took $((t1 - t0)) s."
  } >>"$3"
  cat "$3"
}
