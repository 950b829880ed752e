/*
** fuzz_options.c — libFuzzer target: any bytes as the JSON options of every
** function that takes options (prefix_tokenize, prefix_chat, prefix_generate,
** prefix_score, prefix_train, prefix_train_agg, prefix_generate_batch), read
** through SQLite's json_each on the calling connection, as users pass them.
** The first byte picks the function.
*/
#include "sqlharness.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n);

/* the first three return JSON: their last column checks it is valid */
static const char *calls[] = {
    "SELECT v, json_valid(v) IS NOT 0 FROM (SELECT prefix_tokenize('q', '<|im_start|>user hi', ?1) AS v)",
    "SELECT v, json_valid(v) IS NOT 0 FROM (SELECT prefix_score('m', (SELECT b FROM p), 'Once', ' upon', ?1) AS v)",
    "SELECT v, json_valid(v) IS NOT 0 FROM (SELECT prefix_score('m', NULL, 'Once', ' upon', ?1) AS v)",
    "SELECT prefix_chat('q', '[{\"role\": \"user\", \"content\": \"Hi\"}]', ?1)",
    "SELECT prefix_generate('m', NULL, 'Once upon a time', ?1)",
    "SELECT prefix_generate('m', (SELECT b FROM p), 'Once', ?1)",
    "SELECT length(prefix_train('m', 'SELECT a, b FROM t', ?1))",
    "SELECT length(prefix_train_agg('m', a, b, ?1)) FROM t",
    "SELECT * FROM prefix_generate_batch('m', 'SELECT rowid, NULL, a FROM t', ?1)",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
  if (n < 1 || n > 4096) return 0;
  sqlite3_stmt *st;
  unsigned pick = data[0] % (sizeof calls / sizeof calls[0]);
  if (sqlite3_prepare_v2(g_db, calls[pick], -1, &st, NULL) != SQLITE_OK) __builtin_trap();
  sqlite3_bind_text(st, 1, (const char *)data + 1, (int)n - 1, SQLITE_TRANSIENT);
  fz_run_json(st, pick < 3);
  return 0;
}
