/*
** oom.c — allocation-failure injection (make oom): every allocation of the
** engine and the extension made by loading a model, tokenizing, chatting,
** generating (alone, batched, with beams, streamed, with an ensemble), scoring, training (and continuing a
** training), describing a prefix and computing the metrics
** is failed in turn, through SQL as an app makes these calls.
**
** For each scenario: run it twice to warm the process-wide caches, count its
** allocations K, then for N = 1..K run it with the N-th allocation failing.
** Each run must either give exactly the result of a normal run (the failure
** was absorbed) or fail with SQLITE_NOMEM / a message saying "out of memory";
** nothing may crash, and LeakSanitizer (this build has ASan) must find no
** leak at exit. One line per scenario: allocation points failed, outcomes.
*/
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int sqlite3_prefix_init(sqlite3 *db, char **pzErrMsg, const sqlite3_api_routines *pApi);
extern atomic_long pf_fa_count, pf_fa_failed;
extern long pf_fa_fail_at;
extern int pf_fa_trace;

static sqlite3 *g_db;

/* Run every statement of sql; the result is the text of every column of every row, or the error. */
static int run(const char *sql, char *out, size_t cap) {
  size_t o = 0;
  out[0] = 0;
  const char *tail = sql;
  int rc = SQLITE_OK;
  while (rc == SQLITE_OK && tail && *tail) {
    sqlite3_stmt *st = NULL;
    rc = sqlite3_prepare_v2(g_db, tail, -1, &st, &tail);
    if (rc != SQLITE_OK || !st) break;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
      for (int i = 0; i < sqlite3_column_count(st); i++) {
        const char *t = (const char *)sqlite3_column_text(st, i);
        int n = snprintf(out + o, cap - o, "%s|", t ? t : "NULL");
        if (n > 0 && (size_t)n < cap - o) o += (size_t)n;
      }
    if (rc == SQLITE_DONE) rc = SQLITE_OK;
    if (rc != SQLITE_OK) snprintf(out, cap, "ERROR %d: %s", rc, sqlite3_errmsg(g_db));
    sqlite3_finalize(st);
  }
  if (rc != SQLITE_OK && strncmp(out, "ERROR", 5)) snprintf(out, cap, "ERROR %d: %s", rc, sqlite3_errmsg(g_db));
  return rc;
}

typedef struct scenario { const char *name, *sql, *cleanup; } scenario;

int main(void) {
  const char *md = getenv("PREFIX_MODEL_DIR");
  char sql[4096], tiny[512];
  snprintf(tiny, sizeof tiny, "%s/oom-tiny.gguf", getenv("OOM_TMP") ? getenv("OOM_TMP") : "/tmp");
  sqlite3_auto_extension((void (*)(void))sqlite3_prefix_init);
  if (sqlite3_open(":memory:", &g_db) != SQLITE_OK) return 2;
  char out[65536], ref[65536];
  snprintf(sql, sizeof sql,
           "SELECT prefix_model_load('m', '%s/stories260K.gguf');"
           "SELECT prefix_model_load('q', '%s/families/qwen2-tiny.gguf');"
           "CREATE TABLE t(a TEXT, b TEXT); INSERT INTO t VALUES ('Once upon a time', ' there was a cat.'), ('The dog', ' ran.'),"
           " ('Lily had a ball', ' and a kite.');"
           "CREATE TABLE p AS SELECT prefix_train('m', 'SELECT a, b FROM t', '{\"max_steps\": 2, \"prefix_len\": 3}') AS b;",
           md ? md : "../shared/models", md ? md : "../shared/models");
  if (run(sql, out, sizeof out)) { fprintf(stderr, "setup: %s\n", out); return 2; }
  char load[1024];
  snprintf(load, sizeof load, "SELECT prefix_model_load('x', '%s');", tiny);
  scenario sc[] = {
      {"load", load, "SELECT prefix_model_unload('x') FROM prefix_models WHERE name = 'x';"},
      {"tokenize", "SELECT prefix_tokenize('m', 'Once upon a time, Lily'), prefix_detokenize('m', '[1,403,407,261,378]'),"
                   " prefix_tokenize('q', '<|im_start|>user hello 123<|im_end|>', '{\"add_special\": false}');", NULL},
      {"chat", "SELECT prefix_chat('q', '[{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": \"user\", \"content\": \"Hi\"}]');", NULL},
      {"generate", "SELECT prefix_generate('m', NULL, 'Once upon a time', '{\"max_tokens\": 4}'),"
                   " prefix_generate('m', (SELECT b FROM p), 'The dog', '{\"max_tokens\": 3, \"temperature\": 0.8, \"seed\": 1, \"stop\": \".\"}');", NULL},
      {"batch", "SELECT id, text, finish_reason FROM prefix_generate_batch('m', 'SELECT rowid, (SELECT b FROM p), a FROM t',"
                " '{\"max_tokens\": 3, \"batch_size\": 2}');", NULL},
      {"score", "SELECT prefix_score('m', (SELECT b FROM p), a, b), prefix_score('m', NULL, a, b, '{\"add_eos\": false}') FROM t;", NULL},
      {"train", "SELECT length(prefix_train('m', 'SELECT a, b FROM t', '{\"max_steps\": 2, \"prefix_len\": 2, \"val_query\": \"SELECT a, b FROM t LIMIT 1\"}'));", NULL},
      {"train_agg", "SELECT length(prefix_train_agg('m', a, b, '{\"max_steps\": 1, \"mode\": \"embedding\", \"prefix_len\": 2}')) FROM t;", NULL},
      {"dp", "SELECT length(prefix_train('m', 'SELECT a, b FROM t', '{\"max_steps\": 2, \"prefix_len\": 2, \"mid_dim\": 4,"
             " \"dp\": {\"epsilon\": 8, \"noise_seed\": 1}}'));", NULL},
      {"info", "SELECT prefix_info(b) FROM p;", NULL},
      {"beam", "SELECT prefix_generate('m', (SELECT b FROM p), 'Once upon a time', '{\"max_tokens\": 4, \"beam_size\": 3, \"no_repeat_ngram_size\": 2, \"stop\": \"x\"}'),"
               " (SELECT group_concat(text, '|') FROM prefix_generate_batch('m', 'SELECT rowid, NULL, a FROM t', '{\"max_tokens\": 3, \"beam_size\": 2}'));", NULL},
      {"stream", "SELECT i, token_id, piece FROM prefix_generate_stream('m', (SELECT b FROM p), 'Lily', '{\"max_tokens\": 4, \"stop\": [\"ab\"]}');"
                 "SELECT token_id FROM prefix_generate_stream('m', NULL, 'Lily', '{\"max_tokens\": 3, \"beam_size\": 2}');", NULL},
      {"ensemble", "SELECT prefix_generate('m', (SELECT prefix_ensemble(x) FROM (SELECT b AS x FROM p UNION ALL SELECT b FROM p)), 'Tom', '{\"max_tokens\": 3}'),"
                   " prefix_score('m', (SELECT prefix_ensemble(b) FROM p), 'Tom', ' ran.', '{\"per_token\": true}'),"
                   " prefix_info((SELECT prefix_ensemble(b) FROM p));", NULL},
      {"resume", "SELECT length(prefix_train('m', 'SELECT a, b FROM t', json_object('max_steps', 1, 'save_state', json('true'),"
                 " 'init_prefix', hex(prefix_train('m', 'SELECT a, b FROM t', '{\"max_steps\": 1, \"prefix_len\": 2, \"mid_dim\": 4, \"save_state\": true}')))));"
                 "SELECT length(prefix_train('m', 'SELECT a, b FROM t', json_object('max_steps', 1, 'init_prefix', hex(b)))) FROM p;", NULL},
      {"peft", "SELECT length(prefix_export(b, 'peft')), prefix_export_config(b),"
               " length(prefix_import('m', prefix_export(b, 'peft'), prefix_export_config(b))) FROM p;", NULL},
      {"help", "SELECT length(prefix_help()), length(prefix_debug()) > 0;", NULL},
      {"metrics", "SELECT prefix_bleu(a, json_array(b, a)), prefix_chrf(a, json_array(b)), prefix_rouge_l(a, b) FROM t;", NULL},
  };
  int bad = 0;
  long total_points = 0;
  const char *only = getenv("OOM_ONLY"), *at = getenv("OOM_AT");   /* one scenario; one allocation of it */
  pf_fa_trace = getenv("OOM_TRACE") != NULL;
  for (size_t s = 0; s < sizeof sc / sizeof sc[0]; s++) {
    if (only && strcmp(only, sc[s].name)) continue;
    char cl[256];
    pf_fa_fail_at = 0;
    for (int w = 0; w < 2; w++) {
      run(sc[s].sql, ref, sizeof ref);
      if (sc[s].cleanup) run(sc[s].cleanup, cl, sizeof cl);
    }
    atomic_store(&pf_fa_count, 0);
    if (run(sc[s].sql, ref, sizeof ref)) { printf("oom %s: the normal run fails: %s\n", sc[s].name, ref); bad++; continue; }
    long k = atomic_load(&pf_fa_count);
    if (sc[s].cleanup) run(sc[s].cleanup, cl, sizeof cl);
    long same = 0, nomem = 0, wrong = 0;
    for (long n = at ? atol(at) : 1; n <= (at ? atol(at) : k); n++) {
      pf_fa_fail_at = n;
      atomic_store(&pf_fa_count, 0);
      long failed0 = atomic_load(&pf_fa_failed);
      int rc = run(sc[s].sql, out, sizeof out);
      pf_fa_fail_at = 0;
      if (sc[s].cleanup) run(sc[s].cleanup, cl, sizeof cl);
      int hit = atomic_load(&pf_fa_failed) > failed0;
      if (rc == SQLITE_OK && !strcmp(out, ref)) same++;
      else if (rc != SQLITE_OK && (rc == SQLITE_NOMEM || strstr(out, "out of memory")) && hit) nomem++;
      else {
        wrong++;
        if (wrong <= 5) printf("oom %s: allocation %ld of %ld: %s\n   expected: %s\n", sc[s].name, n, k, out, ref);
      }
    }
    total_points += k;
    printf("oom %s: %ld allocation points failed in turn: %ld same result, %ld out-of-memory errors, %ld wrong\n",
           sc[s].name, k, same, nomem, wrong);
    bad += wrong > 0;
  }
  /* the process-wide state goes before the leak check */
  run("SELECT prefix_model_unload('m'); SELECT prefix_model_unload('q');", out, sizeof out);
  sqlite3_close(g_db);
  printf("oom: %ld allocation points, %s\n", total_points, bad ? "FAILED" : "every one ended in the same result or a clear out-of-memory error");
  return bad ? 1 : 0;
}
