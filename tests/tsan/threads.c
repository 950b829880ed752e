/*
** threads.c — make tsan: eight threads, each with its own connection to the
** extension (linked in), run a random mix of every kind of statement at once
** for TSAN_SECONDS (default 20): load and unload (rebinding names to other
** files), generate, generate_batch, train, score, tokenize, and reads of
** prefix_models, prefix_jobs, prefix_cache_stats and prefix_system. Built
** with ThreadSanitizer: any data race is a report and a failure. Errors a
** racing user can get ("no model named 'a'") are expected; any other is a
** failure. Ends with the number of statements run.
*/
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int sqlite3_prefix_init(sqlite3 *db, char **pzErrMsg, const sqlite3_api_routines *pApi);

static char g_stories[1024], g_qwen[1024];
static double g_end;
static atomic_long g_stmts, g_expected_err, g_bad;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void run(sqlite3 *db, const char *sql, int tid) {
  sqlite3_stmt *st;
  int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
  if (rc == SQLITE_OK) {
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
      for (int i = 0; i < sqlite3_column_count(st); i++) (void)sqlite3_column_text(st, i);
    sqlite3_finalize(st);
  }
  atomic_fetch_add(&g_stmts, 1);
  if (rc == SQLITE_DONE || rc == SQLITE_OK) return;
  const char *m = sqlite3_errmsg(db);
  if (strstr(m, "no model named 'a'") || strstr(m, "no model named 'b'")) { atomic_fetch_add(&g_expected_err, 1); return; }
  atomic_fetch_add(&g_bad, 1);
  fprintf(stderr, "thread %d: %s\n  -> %s\n", tid, sql, m);
}

static void *worker(void *arg) {
  int tid = (int)(long)arg;
  unsigned seed = 1234u + (unsigned)tid;
  sqlite3 *db;
  sqlite3_open(":memory:", &db);
  run(db, "CREATE TABLE t(a TEXT, b TEXT)", tid);
  run(db, "INSERT INTO t VALUES ('Once upon a time', ' there was a cat.'), ('The dog', ' ran.')", tid);
  run(db, "CREATE TABLE t2(a TEXT, b TEXT)", tid);
  run(db, "INSERT INTO t2 VALUES ('Once upon a time', ' there was a cat.')", tid);
  run(db, "CREATE TABLE p AS SELECT prefix_train('m', 'SELECT a, b FROM t2', '{\"max_steps\": 2, \"prefix_len\": 2}') AS b", tid);
  char sql[2048];
  while (now() < g_end) {
    int k = (int)(rand_r(&seed) % 16);
    const char *name = rand_r(&seed) & 1 ? "a" : "b";
    switch (k) {
      case 0: snprintf(sql, sizeof sql, "SELECT prefix_model_load('%s', '%s')", name, rand_r(&seed) & 1 ? g_stories : g_qwen); break;
      case 1: snprintf(sql, sizeof sql, "SELECT prefix_model_unload('%s')", name); break;
      case 2: snprintf(sql, sizeof sql, "SELECT prefix_generate('m', NULL, 'Once upon a time', '{\"max_tokens\": 8, \"threads\": %d}')", 1 + tid % 3); break;
      case 3: snprintf(sql, sizeof sql, "SELECT prefix_generate('m', (SELECT b FROM p), 'The dog', '{\"max_tokens\": 6, \"temperature\": 0.7, \"seed\": %d}')", tid); break;
      case 4: snprintf(sql, sizeof sql, "SELECT * FROM prefix_generate_batch('m', 'SELECT rowid, (SELECT b FROM p), a FROM t', '{\"max_tokens\": 4}')"); break;
      case 5: snprintf(sql, sizeof sql, "SELECT length(prefix_train('m', 'SELECT a, b FROM t', '{\"max_steps\": 3, \"prefix_len\": 2, \"threads\": 2}'))"); break;
      case 6: snprintf(sql, sizeof sql, "SELECT prefix_score('m', (SELECT b FROM p), a, b) FROM t"); break;
      case 7: snprintf(sql, sizeof sql, "SELECT prefix_tokenize('%s', 'Once upon a time <|im_end|>')", name); break;
      case 8: snprintf(sql, sizeof sql, "SELECT name, arch, n_params, fingerprint FROM prefix_models"); break;
      case 9: snprintf(sql, sizeof sql, "SELECT id, status, step, train_loss FROM prefix_jobs"); break;
      case 10: snprintf(sql, sizeof sql, "SELECT prefix_cache_stats(), prefix_system()"); break;
      case 11: snprintf(sql, sizeof sql, "SELECT prefix_generate('m', (SELECT b FROM p), 'Lily', '{\"max_tokens\": 5, \"beam_size\": 3}')"); break;
      case 12: snprintf(sql, sizeof sql, "SELECT token_id, piece FROM prefix_generate_stream('m', (SELECT b FROM p), 'Tom', '{\"max_tokens\": 5}') LIMIT 3"); break;
      case 13: snprintf(sql, sizeof sql, "SELECT prefix_generate('m', (SELECT prefix_ensemble(x) FROM (SELECT b AS x FROM p UNION ALL SELECT b FROM p)), 'Sue', '{\"max_tokens\": 4}')"); break;
      case 14: snprintf(sql, sizeof sql, "SELECT prefix_bleu(a, json_array(b)), prefix_rouge_l(a, b), prefix_score('m', (SELECT b FROM p), a, b, '{\"per_token\": true}') FROM t"); break;
      default: snprintf(sql, sizeof sql, "SELECT prefix_generate('%s', NULL, 'Hi', '{\"max_tokens\": 3}')", name); break;
    }
    run(db, sql, tid);
  }
  sqlite3_close(db);
  return NULL;
}

int main(void) {
  const char *md = getenv("PREFIX_MODEL_DIR");
  md = md ? md : "../shared/models";
  snprintf(g_stories, sizeof g_stories, "%s/stories260K.gguf", md);
  snprintf(g_qwen, sizeof g_qwen, "%s/families/qwen2-tiny.gguf", md);
  double secs = getenv("TSAN_SECONDS") ? atof(getenv("TSAN_SECONDS")) : 20;
  sqlite3_auto_extension((void (*)(void))sqlite3_prefix_init);
  sqlite3 *db;
  sqlite3_open(":memory:", &db);
  char sql[1200];
  snprintf(sql, sizeof sql, "SELECT prefix_model_load('m', '%s')", g_stories);
  run(db, sql, -1);
  g_end = now() + secs;
  pthread_t th[8];
  for (long i = 0; i < 8; i++) pthread_create(&th[i], NULL, worker, (void *)i);
  for (int i = 0; i < 8; i++) pthread_join(th[i], NULL);
  run(db, "SELECT prefix_model_unload('m')", -1);
  sqlite3_close(db);
  printf("tsan: 8 threads, %ld statements in %.0f s (%ld expected 'no model' errors), %ld unexpected errors\n",
         (long)g_stmts, secs, (long)g_expected_err, (long)g_bad);
  return g_bad ? 1 : 0;
}
