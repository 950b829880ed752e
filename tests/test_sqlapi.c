/*
** test_sqlapi.c — the extension as an app that embeds SQLite uses it: loaded
** with sqlite3_load_extension, from several threads and connections, and
** interrupted with sqlite3_interrupt.
*/
#include "testlib.h"
#include <pthread.h>
#include <sqlite3.h>
#include <dlfcn.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static sqlite3 *open_db(void) {
  sqlite3 *db;
  char *err = NULL, so[512];
  snprintf(so, sizeof so, "%s/prefix", getenv("PF_BUILD") ? getenv("PF_BUILD") : "dist");
  sqlite3_open(":memory:", &db);
  sqlite3_enable_load_extension(db, 1);
  if (sqlite3_load_extension(db, so, NULL, &err) != SQLITE_OK) {
    fprintf(stderr, "load_extension: %s\n", err);
    sqlite3_free(err);
  }
  return db;
}

/* Run one statement returning one text value, with ?1 bound to a BLOB if blob is not NULL; returns rc,
** copies the result or the error. */
static int run_blob(sqlite3 *db, const char *sql, const void *blob, int n, char *out, size_t cap) {
  sqlite3_stmt *st;
  int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
  if (rc) { snprintf(out, cap, "%s", sqlite3_errmsg(db)); return rc; }
  if (blob) sqlite3_bind_blob(st, 1, blob, n, SQLITE_TRANSIENT);
  rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) { snprintf(out, cap, "%s", sqlite3_column_text(st, 0) ? (const char *)sqlite3_column_text(st, 0) : "NULL"); rc = SQLITE_OK; }
  else snprintf(out, cap, "%s", sqlite3_errmsg(db));
  int rc2 = sqlite3_finalize(st);
  return rc ? rc : rc2;
}

static int run1(sqlite3 *db, const char *sql, char *out, size_t cap) { return run_blob(db, sql, NULL, 0, out, cap); }

/* The decoded-prefix cache: a BLOB whose hash collides with a cached one (forced here by keeping 0 bits
** of the hash) is decoded and checked on its own, never served the other's prefix. */
static void cache_collision(sqlite3 *db, const char *build) {
  char so[512], out[4096], refB[4096];
  snprintf(so, sizeof so, "%s/prefix.so", build);
  void *h = dlopen(so, RTLD_NOW | RTLD_NOLOAD);
  int *bits = h ? (int *)dlsym(h, "pfx_test_cache_hash_bits") : NULL;
  CHECK(bits != NULL, "the cache's test knob is found", "%s", dlerror());
  if (!bits) return;
  sqlite3_exec(db, "CREATE TEMP TABLE cc AS SELECT 1 AS k, prefix_train('m', 'SELECT ''Once upon'', '' a time''', "
                   "'{\"max_steps\": 3, \"seed\": 1}') AS b UNION ALL SELECT 2, prefix_train('m', "
                   "'SELECT ''Once upon'', '' a time''', '{\"max_steps\": 3, \"seed\": 2}')", NULL, NULL, NULL);
  sqlite3_stmt *st;
  unsigned char *a = NULL, *b = NULL;
  int na = 0, nb = 0;
  if (sqlite3_prepare_v2(db, "SELECT b FROM cc ORDER BY k", -1, &st, NULL) == SQLITE_OK) {
    if (sqlite3_step(st) == SQLITE_ROW) { na = sqlite3_column_bytes(st, 0); a = malloc(na); memcpy(a, sqlite3_column_blob(st, 0), na); }
    if (sqlite3_step(st) == SQLITE_ROW) { nb = sqlite3_column_bytes(st, 0); b = malloc(nb); memcpy(b, sqlite3_column_blob(st, 0), nb); }
    sqlite3_finalize(st);
  }
  CHECK(a && b && na == nb && memcmp(a, b, na), "two different prefixes of the same length", "%d %d", na, nb);
  if (!a || !b || na != nb) { free(a); free(b); return; }
  const char *gen = "SELECT prefix_generate('m', ?1, 'Once upon a time', '{\"max_tokens\": 12}')";
  run_blob(db, gen, b, nb, refB, sizeof refB);
  *bits = 0;
  char st0[256], st1[256];
  run1(db, "SELECT json_extract(prefix_cache_stats(), '$.misses')", st0, sizeof st0);
  int rc = run_blob(db, gen, a, na, out, sizeof out);   /* cached under the colliding key */
  rc |= run_blob(db, gen, b, nb, out, sizeof out);
  run1(db, "SELECT json_extract(prefix_cache_stats(), '$.misses')", st1, sizeof st1);
  CHECK(rc == 0 && !strcmp(out, refB) && atoi(st1) == atoi(st0) + 2, "a colliding prefix gets its own text, not the cached one's",
        "rc=%d '%s' vs '%s', misses %s -> %s", rc, out, refB, st0, st1);
  b[nb / 2] ^= 0x40;   /* damaged: same length, same (forced) hash as the cached A and B */
  rc = run_blob(db, gen, b, nb, out, sizeof out);
  CHECK(rc != 0 && strstr(out, "prefix BLOB is damaged"), "a damaged BLOB that collides is still checked", "rc=%d '%s'", rc, out);
  *bits = 64;
  free(a);
  free(b);
  dlclose(h);
}

static double g_ph_deadline;
static int ph_deadline(void *arg) { (void)arg; return now() > g_ph_deadline; }

static void *interrupter(void *arg) {
  usleep(100 * 1000);
  sqlite3_interrupt((sqlite3 *)arg);
  return NULL;
}

typedef struct job { char sql[512]; char out[4096]; int rc; } job;
static void *worker(void *arg) {
  job *j = arg;
  sqlite3 *db = open_db();
  j->rc = run1(db, j->sql, j->out, sizeof j->out);
  sqlite3_close(db);
  return NULL;
}

typedef struct train_job { sqlite3 *db; char sql[512]; char out[4096]; int rc; } train_job;
static void *train_worker(void *arg) {
  train_job *j = arg;
  j->rc = run1(j->db, j->sql, j->out, sizeof j->out);
  return NULL;
}

int main(void) {
  char out[4096], sql[8192], model[512];
  const char *build = getenv("PF_BUILD") ? getenv("PF_BUILD") : "dist";
  snprintf(model, sizeof model, "/tmp/pf_sqlapi_%d.gguf", (int)getpid());
  const char *mk_args = "--layers 6 --embd 512 --heads 8 --heads-kv 4 --ff 1024 --vocab 512 --ctx 8192";
  CHECK(t_mkmodel(model, mk_args) == 0, "make a random model for long runs", "%s", mk_args);

  sqlite3 *db = open_db();
  snprintf(sql, sizeof sql, "SELECT prefix_model_load('big', '%s')", model);
  int rc = run1(db, sql, out, sizeof out);
  CHECK(rc == 0, "load the random model through the C API", "%s", out);
  snprintf(sql, sizeof sql, "SELECT prefix_model_load('m', '%s')", t_model_path("stories260K.gguf"));
  rc = run1(db, sql, out, sizeof out);

  cache_collision(db, build);

  /* interrupt: a generation of 8000 tokens stops soon after sqlite3_interrupt */
  pthread_t th;
  pthread_create(&th, NULL, interrupter, db);
  double t0 = now();
  rc = run1(db, "SELECT prefix_generate('big', NULL, 'hello', '{\"max_tokens\": 8000, \"ignore_eos\": true}')", out, sizeof out);
  double dt = now() - t0;
  pthread_join(th, NULL);
  CHECK(rc == SQLITE_INTERRUPT && !strcmp(out, "prefix_generate: interrupted") && dt < 1.5,
        "sqlite3_interrupt stops generation within a second", "rc=%d '%s' after %.2fs", rc, out, dt);
  /* a progress handler as apps use for time limits (every 1000 operations) stops generation too */
  g_ph_deadline = now() + 0.1;
  sqlite3_progress_handler(db, 1000, ph_deadline, NULL);
  t0 = now();
  rc = run1(db, "SELECT prefix_generate('big', NULL, 'hello', '{\"max_tokens\": 8000, \"ignore_eos\": true}')", out, sizeof out);
  dt = now() - t0;
  sqlite3_progress_handler(db, 0, NULL, NULL);
  CHECK(rc == SQLITE_INTERRUPT && !strcmp(out, "prefix_generate: interrupted") && dt < 1.5,
        "a progress handler of 1000 operations stops generation", "rc=%d '%s' after %.2fs", rc, out, dt);
  /* the connection works normally afterwards */
  rc = run1(db, "SELECT prefix_tokenize('m', 'Once upon a time')", out, sizeof out);
  CHECK(rc == 0 && !strcmp(out, "[1,403,407,261,378]"), "the connection works after an interrupt", "%s", out);

  /* models are process-wide: other connections in other threads see them and
     generate concurrently; results equal the single-threaded ones */
  char ref[4096];
  run1(db, "SELECT prefix_generate('m', NULL, 'Once upon a time', '{\"max_tokens\": 50}')", ref, sizeof ref);
  job jobs[4];
  pthread_t ths[4];
  for (int i = 0; i < 4; i++) {
    snprintf(jobs[i].sql, sizeof jobs[i].sql, "SELECT prefix_generate('m', NULL, 'Once upon a time', '{\"max_tokens\": 50}')");
    pthread_create(&ths[i], NULL, worker, &jobs[i]);
  }
  int same = 1;
  for (int i = 0; i < 4; i++) { pthread_join(ths[i], NULL); same &= jobs[i].rc == 0 && !strcmp(jobs[i].out, ref); }
  CHECK(same, "four connections on four threads share the model and agree", "'%s' vs '%s'", jobs[0].out, ref);

  /* unloading while another thread generates is safe: it finishes with its reference */
  snprintf(jobs[0].sql, sizeof jobs[0].sql, "SELECT length(prefix_generate('big', NULL, 'hello', '{\"max_tokens\": 400, \"ignore_eos\": true}'))");
  pthread_create(&ths[0], NULL, worker, &jobs[0]);
  usleep(50 * 1000);
  rc = run1(db, "SELECT prefix_model_unload('big')", out, sizeof out);
  pthread_join(ths[0], NULL);
  CHECK(rc == 0 && jobs[0].rc == 0 && atoi(jobs[0].out) > 0, "unload during a generation in another connection is safe",
        "unload rc=%d, worker rc=%d '%s'", rc, jobs[0].rc, jobs[0].out);
  rc = run1(db, "SELECT prefix_generate('big', NULL, 'x')", out, sizeof out);
  CHECK(rc != 0 && !strcmp(out, "prefix_generate: no model named 'big' is loaded (loaded: 'm')"),
        "an unloaded model is gone for every connection", "%s", out);
  /* ---- training: interrupt ---- */
  pthread_create(&th, NULL, interrupter, db);
  t0 = now();
  rc = run1(db, "SELECT prefix_train('m', 'SELECT ''Q: a question about the story'', '' A: an answer about it''',"
                " '{\"max_steps\": 100000}')", out, sizeof out);
  dt = now() - t0;
  pthread_join(th, NULL);
  CHECK(rc == SQLITE_INTERRUPT && !strcmp(out, "prefix_train: interrupted") && dt < 1.5,
        "sqlite3_interrupt stops training within a second", "rc=%d '%s' after %.2fs", rc, out, dt);
  rc = run1(db, "SELECT status || ' ' || (step > 0) FROM prefix_jobs ORDER BY id DESC LIMIT 1", out, sizeof out);
  CHECK(rc == 0 && !strcmp(out, "interrupted 1"), "the interrupted job is listed as interrupted", "%s", out);

  /* ---- training: no write lock held, progress visible from another connection ---- */
  char dbpath[256];
  snprintf(dbpath, sizeof dbpath, "/tmp/pf_sqlapi_%d.db", (int)getpid());
  unlink(dbpath);
  sqlite3 *w;
  sqlite3_open(dbpath, &w);
  sqlite3_busy_timeout(w, 0);
  sqlite3_exec(w, "CREATE TABLE pairs(prompt TEXT, completion TEXT);"
               "INSERT INTO pairs VALUES ('Q: What does Lily have?', ' A: Lily has a red ball.'),"
               "('Q: What does Tom have?', ' A: Tom has a big dog.'), ('Q: Who is Sue?', ' A: Sue is a cat.');",
               NULL, NULL, NULL);
  train_job tj;
  tj.db = open_db();   /* a second connection on the same file, with the extension */
  snprintf(sql, sizeof sql, "ATTACH '%s' AS f", dbpath);
  sqlite3_exec(tj.db, sql, NULL, NULL, NULL);
  snprintf(tj.sql, sizeof tj.sql,
           "SELECT length(prefix_train('m', 'SELECT prompt, completion FROM f.pairs', '{\"max_steps\": 1500}'))");
  pthread_create(&th, NULL, train_worker, &tj);
  usleep(400 * 1000);
  char *em = NULL;
  int wrc = sqlite3_exec(w, "INSERT INTO pairs VALUES ('Q: new', ' A: row')", NULL, NULL, &em);
  sqlite3_free(em);
  char prog[256];
  int prc = run1(db, "SELECT status || ' ' || (step > 0) || ' ' || (total_steps = 1500) || ' ' || (train_loss > 0) "
                     "FROM prefix_jobs ORDER BY id DESC LIMIT 1", prog, sizeof prog);
  pthread_join(th, NULL);
  CHECK(wrc == SQLITE_OK, "another connection writes to the database while training runs", "rc=%d", wrc);
  CHECK(prc == 0 && !strcmp(prog, "running 1 1 1"), "another connection watches training progress in prefix_jobs",
        "'%s'", prog);
  CHECK(tj.rc == 0 && atoi(tj.out) > 0, "the training finishes and returns a BLOB", "rc=%d %s", tj.rc, tj.out);
  sqlite3_close(tj.db);
  sqlite3_close(w);
  unlink(dbpath);
  sqlite3_close(db);
  unlink(model);
  return t_failed ? 1 : 0;
}
