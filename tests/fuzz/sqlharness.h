/*
** sqlharness.h — the SQL side of the fuzz targets: one connection with the
** extension registered (linked in, as an app that embeds SQLite does), the
** models loaded once, and a deadline per statement: a progress handler
** interrupts any statement after 50 ms, so options like max_steps 10^9 end
** (as a user's Ctrl-C would) instead of stalling the fuzzer. The interrupt is
** seen between the model's steps, so prompts are prefilled 64 tokens per step
** (not 512): a step of this instrumented build stays well under a second.
*/
#ifndef PF_SQLHARNESS_H
#define PF_SQLHARNESS_H
#include <sqlite3.h>
#include <stdint.h>
#include <string.h>
#include "common.h"
#include "prefix_engine.h"
#include "internal.h"

int sqlite3_prefix_init(sqlite3 *db, char **pzErrMsg, const sqlite3_api_routines *pApi);

static sqlite3 *g_db;
static double g_deadline;
static unsigned char *g_prefix;   /* a valid prefix BLOB of model 'm' */
static int g_prefix_len;

static int fz_progress(void *arg) {
  (void)arg;
  return pf_clock() > g_deadline;
}

static void fz_exec(const char *sql) {
  char *err = NULL;
  g_deadline = pf_clock() + 600;
  if (sqlite3_exec(g_db, sql, NULL, NULL, &err) != SQLITE_OK) fz_die(sql, err ? err : "?");
}

static void fz_setup(void) {
  pf_prefill_chunk = 64;
  sqlite3_auto_extension((void (*)(void))sqlite3_prefix_init);
  if (sqlite3_open(":memory:", &g_db) != SQLITE_OK) fz_die("open", "sqlite3_open failed");
  sqlite3_progress_handler(g_db, 50, fz_progress, NULL);
  char sql[4096];
  snprintf(sql, sizeof sql,
           "SELECT prefix_model_load('m', '%s'); SELECT prefix_model_load('q', '%s'); SELECT prefix_model_load('g', '%s');"
           "CREATE TABLE t(a TEXT, b TEXT); INSERT INTO t VALUES ('Once upon a time', ' there was a cat.'),"
           "('The dog', ' ran.'), ('Q: Who?', ' A: Sue.');"
           "CREATE TABLE p AS SELECT prefix_train('m', 'SELECT a, b FROM t', '{\"max_steps\": 2, \"prefix_len\": 2, \"dtype\": \"f16\"}') AS b;",
           fz_path("stories260K.gguf", 0), fz_path("families/qwen2-tiny.gguf", 0), fz_path("gpt2/gpt2-vocab-only.gguf", 1));
  fz_exec(sql);
  sqlite3_stmt *st;
  if (sqlite3_prepare_v2(g_db, "SELECT b FROM p", -1, &st, NULL) || sqlite3_step(st) != SQLITE_ROW) fz_die("prefix", sqlite3_errmsg(g_db));
  g_prefix_len = sqlite3_column_bytes(st, 0);
  g_prefix = malloc((size_t)g_prefix_len);
  memcpy(g_prefix, sqlite3_column_blob(st, 0), (size_t)g_prefix_len);
  sqlite3_finalize(st);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc; (void)argv;
  fz_setup();
  return 0;
}

/* Run a prepared statement to its end under the deadline; every error must say something. */
/* Steps st to the end; an error must carry a message. With json_check, the statement's last column says
** whether the result is valid JSON (json_valid(v) IS NOT 0: NULL passes): a 0 there is a defect. */
static void fz_run_json(sqlite3_stmt *st, int json_check) {
  g_deadline = pf_clock() + 0.05;
  int rc, nc = sqlite3_column_count(st);
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    for (int i = 0; i < nc; i++) (void)sqlite3_column_text(st, i);
    if (json_check && sqlite3_column_int(st, nc - 1) != 1) __builtin_trap();
  }
  if (rc != SQLITE_DONE) {
    const char *m = sqlite3_errmsg(g_db);
    if (!m || !*m) __builtin_trap();
  }
  sqlite3_finalize(st);
}
static void fz_run(sqlite3_stmt *st) { fz_run_json(st, 0); }
#endif
