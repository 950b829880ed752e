/*
** test_sqlapi.c — the extension as an app that embeds SQLite uses it: loaded
** with sqlite3_load_extension, from several threads and connections, and
** interrupted with sqlite3_interrupt.
**
** Nothing here depends on the machine's speed: where a check needs a statement caught while it runs, the
** statement's own progress handler (which the extension calls while it computes) says when it has
** started, and can park it there until the check is done; promptness is counted in progress-handler
** calls after the stop, not in seconds.
*/
#include "testlib.h"
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
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

/* A progress handler that watches a running statement: it counts its calls (the extension runs the
** connection's progress handler while it computes), stops the statement at call stop_at (0: never), and
** while `hold` is set parks the statement inside the call, so another thread can act while it is known
** to be running. */
typedef struct watch {
  atomic_int calls, hold, parked, stop_at;
} watch;
static int watch_handler(void *arg) {
  watch *w = arg;
  int n = atomic_fetch_add(&w->calls, 1) + 1;
  while (atomic_load(&w->hold)) {
    atomic_store(&w->parked, 1);
    usleep(1000);
  }
  atomic_store(&w->parked, 0);
  int k = atomic_load(&w->stop_at);
  return k > 0 && n >= k;
}
static void watch_reset(watch *w, int hold) {
  atomic_store(&w->calls, 0);
  atomic_store(&w->hold, hold);
  atomic_store(&w->parked, 0);
  atomic_store(&w->stop_at, 0);
}
static void watch_on(sqlite3 *db, watch *w) {
  watch_reset(w, 0);
  sqlite3_progress_handler(db, 100, watch_handler, w);
}
/* Until the watched statement has called its handler once (it is running). */
static void wait_running(watch *w) {
  while (atomic_load(&w->calls) == 0) usleep(1000);
}
/* Parks the watched statement in its next handler call; 0 if `done` is set first (it ended). */
static int park(watch *w, atomic_int *done) {
  atomic_store(&w->hold, 1);
  while (!atomic_load(&w->parked))
    if (atomic_load(done)) return 0; else usleep(1000);
  return 1;
}
static void unpark(watch *w) { atomic_store(&w->hold, 0); }

/* sqlite3_interrupt from another thread once the statement runs (before it starts, the interrupt would be
** lost: SQLite clears the flag when a connection's first statement starts); calls_at: the handler calls
** until then. */
typedef struct interrupt_job { sqlite3 *db; watch *w; int calls_at, after_step; } interrupt_job;
static void *interrupter(void *arg) {
  interrupt_job *j = arg;
  wait_running(j->w);
  if (j->after_step) {   /* a training: until prefix_jobs (seen from another connection) shows a step done */
    sqlite3 *o = open_db();
    char step[64] = "";
    while (run1(o, "SELECT step FROM prefix_jobs WHERE status = 'running' ORDER BY id DESC LIMIT 1", step, sizeof step) ||
           atoi(step) < 1)
      usleep(1000);
    sqlite3_close(o);
  }
  j->calls_at = atomic_load(&j->w->calls);
  sqlite3_interrupt(j->db);
  return NULL;
}

typedef struct job { char sql[512]; char out[4096]; int rc; watch *w; atomic_int done; } job;
static void *worker(void *arg) {
  job *j = arg;
  sqlite3 *db = open_db();
  if (j->w) sqlite3_progress_handler(db, 100, watch_handler, j->w);
  j->rc = run1(db, j->sql, j->out, sizeof j->out);
  sqlite3_close(db);
  atomic_store(&j->done, 1);
  return NULL;
}

typedef struct train_job { sqlite3 *db; char sql[512]; char out[4096]; int rc; atomic_int done; } train_job;
static void *train_worker(void *arg) {
  train_job *j = arg;
  j->rc = run1(j->db, j->sql, j->out, sizeof j->out);
  atomic_store(&j->done, 1);
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

  /* interrupt: a generation of 8000 tokens (minutes of work on any machine) stops at its next check after
  ** sqlite3_interrupt: a few progress-handler calls later (at most one probe's), not one per token */
  watch wi;
  watch_on(db, &wi);
  interrupt_job ij = {.db = db, .w = &wi};
  pthread_t th;
  pthread_create(&th, NULL, interrupter, &ij);
  double t0 = now();
  rc = run1(db, "SELECT prefix_generate('big', NULL, 'hello', '{\"max_tokens\": 8000, \"ignore_eos\": true}')", out, sizeof out);
  double dt = now() - t0;
  pthread_join(th, NULL);
  int after = atomic_load(&wi.calls) - ij.calls_at;
  CHECK(rc == SQLITE_INTERRUPT && !strcmp(out, "prefix_generate: interrupted") && after <= 20,
        "sqlite3_interrupt stops generation at its next check", "rc=%d '%s', %d handler calls after the interrupt (%.2f s)",
        rc, out, after, dt);
  /* a progress handler as apps use for time limits stops generation too: the call that says stop is its last */
  watch_on(db, &wi);
  atomic_store(&wi.stop_at, 5);
  rc = run1(db, "SELECT prefix_generate('big', NULL, 'hello', '{\"max_tokens\": 8000, \"ignore_eos\": true}')", out, sizeof out);
  sqlite3_progress_handler(db, 0, NULL, NULL);
  CHECK(rc == SQLITE_INTERRUPT && !strcmp(out, "prefix_generate: interrupted") && atomic_load(&wi.calls) == 5,
        "a progress handler stops generation at the call that says so", "rc=%d '%s', %d calls", rc, out, atomic_load(&wi.calls));
  /* ROUGE-L on two texts of 30,000 words (9e8 word comparisons, under its limit; seconds of work): a progress
  ** handler stops it inside the row (the texts are made first, so the handler's calls are the metric's) */
  run1(db, "CREATE TEMP TABLE long_text AS WITH RECURSIVE w(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM w WHERE i < 30000) "
           "SELECT group_concat(char(97 + i % 7), ' ') AS t FROM w", out, sizeof out);
  watch_on(db, &wi);
  atomic_store(&wi.stop_at, 3);
  rc = run1(db, "SELECT prefix_rouge_l(t, t) FROM long_text", out, sizeof out);
  sqlite3_progress_handler(db, 0, NULL, NULL);
  CHECK(rc == SQLITE_INTERRUPT && !strcmp(out, "prefix_rouge_l: interrupted") && atomic_load(&wi.calls) == 3,
        "a progress handler stops ROUGE-L inside a long row", "rc=%d '%s', %d calls", rc, out, atomic_load(&wi.calls));
  /* the connection works normally afterwards */
  rc = run1(db, "SELECT prefix_tokenize('m', 'Once upon a time')", out, sizeof out);
  CHECK(rc == 0 && !strcmp(out, "[1,403,407,261,378]"), "the connection works after an interrupt", "%s", out);

  /* models are process-wide: other connections in other threads see them and
     generate concurrently; results equal the single-threaded ones */
  char ref[4096];
  run1(db, "SELECT prefix_generate('m', NULL, 'Once upon a time', '{\"max_tokens\": 50}')", ref, sizeof ref);
  job jobs[4] = {0};
  pthread_t ths[4];
  for (int i = 0; i < 4; i++) {
    snprintf(jobs[i].sql, sizeof jobs[i].sql, "SELECT prefix_generate('m', NULL, 'Once upon a time', '{\"max_tokens\": 50}')");
    pthread_create(&ths[i], NULL, worker, &jobs[i]);
  }
  int same = 1;
  for (int i = 0; i < 4; i++) { pthread_join(ths[i], NULL); same &= jobs[i].rc == 0 && !strcmp(jobs[i].out, ref); }
  CHECK(same, "four connections on four threads share the model and agree", "'%s' vs '%s'", jobs[0].out, ref);

  /* eight connections at once (their generations share the model's batch); one is stopped by its own progress
  ** handler while it runs (parked there, then told to stop): only it fails, the seven others agree */
  {
    job j8[8];
    pthread_t t8[8];
    watch w8;
    memset(j8, 0, sizeof j8);
    watch_reset(&w8, 1);
    for (int i = 0; i < 8; i++) {
      if (i == 3) {
        snprintf(j8[i].sql, sizeof j8[i].sql, "SELECT prefix_generate('m', NULL, 'hello', '{\"max_tokens\": 2000, \"ignore_eos\": true}')");
        j8[i].w = &w8;
      } else
        snprintf(j8[i].sql, sizeof j8[i].sql, "SELECT prefix_generate('m', NULL, 'Once upon a time', '{\"max_tokens\": 50}')");
      pthread_create(&t8[i], NULL, worker, &j8[i]);
    }
    int parked8 = park(&w8, &j8[3].done);
    atomic_store(&w8.stop_at, 1);
    unpark(&w8);
    int agree = 1;
    for (int i = 0; i < 8; i++) {
      pthread_join(t8[i], NULL);
      if (i != 3) agree &= j8[i].rc == 0 && !strcmp(j8[i].out, ref);
    }
    CHECK(parked8 && agree && j8[3].rc != 0 && strstr(j8[3].out, "interrupt"),
          "eight connections at once: the one its progress handler stops fails alone, the seven others agree",
          "parked %d, stopped one: rc %d '%s'", parked8, j8[3].rc, j8[3].out);
  }

  /* unloading while another thread generates is safe: it finishes with its reference (the generation is
  ** parked in its progress handler, mid-way, while the model is unloaded) */
  watch wg;
  watch_reset(&wg, 1);
  jobs[0].w = &wg;
  atomic_store(&jobs[0].done, 0);
  snprintf(jobs[0].sql, sizeof jobs[0].sql, "SELECT length(prefix_generate('big', NULL, 'hello', '{\"max_tokens\": 400, \"ignore_eos\": true}'))");
  pthread_create(&ths[0], NULL, worker, &jobs[0]);
  int gparked = park(&wg, &jobs[0].done);
  rc = run1(db, "SELECT prefix_model_unload('big')", out, sizeof out);
  unpark(&wg);
  pthread_join(ths[0], NULL);
  CHECK(gparked, "the generation is caught running", "it ended first: rc=%d %s", jobs[0].rc, jobs[0].out);
  CHECK(rc == 0 && jobs[0].rc == 0 && atoi(jobs[0].out) > 0, "unload during a generation in another connection is safe",
        "unload rc=%d, worker rc=%d '%s'", rc, jobs[0].rc, jobs[0].out);
  rc = run1(db, "SELECT prefix_generate('big', NULL, 'x')", out, sizeof out);
  CHECK(rc != 0 && !strcmp(out, "prefix_generate: no model named 'big' is loaded (loaded: 'm')"),
        "an unloaded model is gone for every connection", "%s", out);
  /* ---- training: interrupt ---- */
  watch_on(db, &wi);
  ij.calls_at = 0;
  ij.after_step = 1;
  pthread_create(&th, NULL, interrupter, &ij);
  t0 = now();
  rc = run1(db, "SELECT prefix_train('m', 'SELECT ''Q: a question about the story'', '' A: an answer about it''',"
                " '{\"max_steps\": 100000}')", out, sizeof out);
  dt = now() - t0;
  pthread_join(th, NULL);
  sqlite3_progress_handler(db, 0, NULL, NULL);
  after = atomic_load(&wi.calls) - ij.calls_at;
  CHECK(rc == SQLITE_INTERRUPT && !strcmp(out, "prefix_train: interrupted") && after <= 20,
        "sqlite3_interrupt stops training at its next check", "rc=%d '%s', %d handler calls after the interrupt (%.2f s)",
        rc, out, after, dt);
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
  train_job tj = {0};
  tj.db = open_db();   /* a second connection on the same file, with the extension */
  watch wt;
  watch_on(tj.db, &wt);
  snprintf(sql, sizeof sql, "ATTACH '%s' AS f", dbpath);
  sqlite3_exec(tj.db, sql, NULL, NULL, NULL);
  snprintf(tj.sql, sizeof tj.sql,
           "SELECT length(prefix_train('m', 'SELECT prompt, completion FROM f.pairs', '{\"max_steps\": 1500}'))");
  pthread_create(&th, NULL, train_worker, &tj);
  /* wait until a step is done, then park the training in its progress handler while the other
  ** connection writes and reads: it is known to be running, whatever the machine's speed */
  char prog[256] = "";
  while (!atomic_load(&tj.done)) {
    run1(db, "SELECT step FROM prefix_jobs WHERE status = 'running' ORDER BY id DESC LIMIT 1", prog, sizeof prog);
    if (atoi(prog) > 0) break;
    usleep(1000);
  }
  int parked = park(&wt, &tj.done);
  char *em = NULL;
  int wrc = sqlite3_exec(w, "INSERT INTO pairs VALUES ('Q: new', ' A: row')", NULL, NULL, &em);
  sqlite3_free(em);
  int prc = run1(db, "SELECT status || ' ' || (step > 0) || ' ' || (total_steps = 1500) || ' ' || (train_loss > 0) "
                     "FROM prefix_jobs ORDER BY id DESC LIMIT 1", prog, sizeof prog);
  unpark(&wt);
  pthread_join(th, NULL);
  CHECK(parked, "the training is caught running after its first step", "it ended first: rc=%d %s", tj.rc, tj.out);
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
