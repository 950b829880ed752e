/*
** prefix-worker — trains the prefixes queued in a prefix-node cluster's prefix_train_jobs table
** (sql/cluster.sql), on this machine, with its own loaded models.
**
**   prefix-worker -s 127.0.0.1:9001,127.0.0.1:9002 --model m=stories260K.gguf
**
** For each job: claim it with a lease (one short UPDATE on the leader), read the customer's pairs, train
** in a private in-memory SQLite with prefix_train — no transaction is open on the cluster meanwhile — and
** renew the lease from a second connection every lease/3 seconds. Then one transaction marks the job
** done and inserts the prefix, and only if this claim still holds the job: a worker that lost its lease
** (it stalled, or the others thought it dead) writes nothing. A worker killed mid-training leaves a lease
** that runs out; another worker claims the job again (attempts counts the claims, max_attempts bounds
** them). Leader changes are retried. See docs/scaling.md.
*/
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../../engine/prefix_engine.h" /* pf_clock */
#include "../sqlite_prefix.h"
#include "dqclient.h"
#include "models.h"

typedef struct {
  const char *servers, *database, *name;
  double lease_s, poll_s, timeout_s;
  int exit_when_idle, max_jobs;
  char models_json[4096]; /* ["m", ...]: the jobs this worker can take */
} config;

static volatile sig_atomic_t g_stop;
static void on_signal(int sig) {
  (void)sig;
  g_stop = 1;
}

static void logf_(const config *cfg, const char *fmt, ...) {
  char ts[32];
  time_t t = time(NULL);
  struct tm tm;
  strftime(ts, sizeof ts, "%H:%M:%S", localtime_r(&t, &tm));
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "%s prefix-worker %s: ", ts, cfg->name);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

static dq_value txt(const char *s) { return (dq_value){.type = DQ_TEXT, .p = s, .n = strlen(s)}; }
static dq_value num(int64_t i) { return (dq_value){.type = DQ_INTEGER, .i = i}; }

/* Runs `call` until it succeeds or fails for a reason other than a lost connection or leader (then it
** reconnects: an election takes a few seconds) or a busy write lock (then it waits a little). */
static const config *g_cfg; /* for the retry loop's log line */
static void logf_(const config *cfg, const char *fmt, ...);
static int reconnect_logged(dq_client *c) {
  if (g_cfg) logf_(g_cfg, "%s; finding the leader again", dq_errmsg(c));
  int rc = dq_reconnect(c);
  if (g_cfg) {
    if (rc == DQ_OK) logf_(g_cfg, "leader is %s", dq_leader_address(c));
    else logf_(g_cfg, "%s", dq_errmsg(c));
  }
  return rc;
}
static void busy_wait(int try_) { usleep((useconds_t)(10000 + (rand() % 20000) * (try_ < 10 ? try_ + 1 : 10))); }
#define RETRY(c, call)                                                                            \
  ({                                                                                              \
    int rc_;                                                                                      \
    for (int try_ = 0, busy_ = 0;; try_++) {                                                      \
      rc_ = (call);                                                                               \
      if (rc_ == DQ_BUSY && busy_ < 200 && !g_stop) { busy_wait(busy_++); continue; }             \
      if ((rc_ != DQ_IO && rc_ != DQ_LEADER) || try_ >= 5 || g_stop) break;                       \
      if (reconnect_logged(c) != DQ_OK) break;                                                    \
    }                                                                                             \
    rc_;                                                                                          \
  })

/* ---- the lease keeper: a thread with its own connection ---- */
typedef struct {
  const config *cfg;
  int64_t job;
  const char *claim;
  sqlite3 *local;       /* interrupted when the lease is lost */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int done, lost;
} keeper;

static void *keep_lease(void *arg) {
  keeper *k = arg;
  char err[512];
  dq_client *c = NULL;
  pthread_mutex_lock(&k->mu);
  while (!k->done) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    double step = k->cfg->lease_s / 3;
    until.tv_sec += (time_t)step;
    until.tv_nsec += (long)((step - (double)(time_t)step) * 1e9);
    if (until.tv_nsec >= 1000000000L) { until.tv_sec++; until.tv_nsec -= 1000000000L; }
    pthread_cond_timedwait(&k->cv, &k->mu, &until);
    if (k->done) break;
    pthread_mutex_unlock(&k->mu);
    if (!c) c = dq_connect(k->cfg->servers, k->cfg->database, k->cfg->timeout_s, err, sizeof err);
    uint64_t changes = 1;
    int rc = DQ_IO;
    if (c) {
      dq_value p[3] = {num((int64_t)(k->cfg->lease_s + 0.999)), num(k->job), txt(k->claim)};
      rc = RETRY(c, dq_exec(c, "UPDATE prefix_train_jobs SET lease_until = unixepoch() + ?1 "
                               "WHERE id = ?2 AND claim = ?3 AND state = 'running'", 3, p, NULL, &changes));
    }
    pthread_mutex_lock(&k->mu);
    if (rc == DQ_OK && changes == 0 && !k->done) { /* another worker holds the job now */
      k->lost = 1;
      sqlite3_interrupt(k->local);
      break;
    }
    if (rc != DQ_OK) logf_(k->cfg, "job %lld: renewing the lease failed (%s); retrying", (long long)k->job,
                           c ? dq_errmsg(c) : err);
  }
  pthread_mutex_unlock(&k->mu);
  dq_close(c);
  return NULL;
}

/* ---- one job ---- */

/* Trains on the pairs in a private connection: the prefix BLOB, the model's fingerprint and the
** numbers prefixes keeps. Returns 0, or -1 with the reason in err. */
typedef struct {
  void *blob;
  int nblob;
  char fingerprint[64];
  int64_t rows, steps;
  double final_loss;
} trained;

static int train_local(sqlite3 *db, const char *model, const char *options, const dq_rows *pairs, trained *out,
                       char *err, size_t errlen) {
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_exec(db, "DROP TABLE IF EXISTS temp.pairs; CREATE TEMP TABLE pairs(prompt TEXT, completion TEXT)",
                        NULL, NULL, NULL);
  if (rc == SQLITE_OK) rc = sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
  if (rc == SQLITE_OK) rc = sqlite3_prepare_v2(db, "INSERT INTO temp.pairs VALUES (?1, ?2)", -1, &st, NULL);
  for (int i = 0; rc == SQLITE_OK && i < pairs->nrow; i++) {
    for (int j = 0; j < 2; j++) {
      const dq_value *v = &pairs->v[(size_t)i * 2 + j];
      if (v->type == DQ_TEXT) sqlite3_bind_text(st, j + 1, v->p, (int)v->n, SQLITE_STATIC);
      else sqlite3_bind_null(st, j + 1); /* prefix_train reports the row */
    }
    rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
    sqlite3_reset(st);
  }
  sqlite3_finalize(st);
  st = NULL;
  if (rc == SQLITE_OK) rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
  if (rc == SQLITE_OK)
    rc = sqlite3_prepare_v2(db,
                            "SELECT p, (SELECT fingerprint FROM prefix_models WHERE name = ?1), "
                            "json_extract(prefix_info(p), '$.rows'), json_extract(prefix_info(p), '$.steps'), "
                            "json_extract(prefix_info(p), '$.final_train_loss') "
                            "FROM (SELECT prefix_train(?1, 'SELECT prompt, completion FROM temp.pairs ORDER BY rowid', ?2) AS p)",
                            -1, &st, NULL);
  if (rc == SQLITE_OK) {
    sqlite3_bind_text(st, 1, model, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, options, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) == SQLITE_BLOB) {
      out->nblob = sqlite3_column_bytes(st, 0);
      out->blob = malloc((size_t)out->nblob);
      if (!out->blob) rc = SQLITE_NOMEM;
      else memcpy(out->blob, sqlite3_column_blob(st, 0), (size_t)out->nblob);
      snprintf(out->fingerprint, sizeof out->fingerprint, "%s", (const char *)sqlite3_column_text(st, 1));
      out->rows = sqlite3_column_int64(st, 2);
      out->steps = sqlite3_column_int64(st, 3);
      out->final_loss = sqlite3_column_double(st, 4);
    } else
      rc = SQLITE_ERROR;
  }
  if (rc) snprintf(err, errlen, "%s", sqlite3_errmsg(db));
  sqlite3_finalize(st);
  return rc ? -1 : 0;
}

/* Marks the job done and inserts its prefix in one transaction, if this claim still holds it.
** Returns 1 done, 0 the claim was lost, -1 a connection or leader failure (try again), -2 the cluster
** refused a statement (the text in why: a missing table, a constraint). */
static int complete(dq_client *c, int64_t job, const char *claim, const char *customer, const char *model,
                    const char *options, const trained *t, char *why, size_t whylen) {
  uint64_t changes = 0, prefix_id = 0;
  int rc;
  /* IMMEDIATE: the write lock is taken (or found busy) here, before any statement of the transaction */
  for (int busy = 0; (rc = dq_exec(c, "BEGIN IMMEDIATE", 0, NULL, NULL, NULL)) == DQ_BUSY && busy < 200; busy++)
    busy_wait(busy);
  if (rc == DQ_OK) {
    dq_value p[2] = {num(job), txt(claim)};
    rc = dq_exec(c, "UPDATE prefix_train_jobs SET state = 'done', finished_at = unixepoch(), lease_until = NULL "
                    "WHERE id = ?1 AND claim = ?2 AND state = 'running'", 2, p, NULL, &changes);
  }
  if (rc == DQ_OK && changes == 1) {
    dq_value p[8] = {txt(customer), txt(model), txt(t->fingerprint), {.type = DQ_BLOB, .p = t->blob, .n = (size_t)t->nblob},
                     txt(options), num(t->rows), num(t->steps), {.type = DQ_FLOAT, .f = t->final_loss}};
    rc = dq_exec(c, "INSERT INTO prefixes(customer, model, model_fingerprint, prefix, options, rows, steps, final_train_loss) "
                    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)", 8, p, &prefix_id, NULL);
    if (rc == DQ_OK) {
      dq_value q[2] = {num((int64_t)prefix_id), num(job)};
      rc = dq_exec(c, "UPDATE prefix_train_jobs SET prefix_id = ?1 WHERE id = ?2", 2, q, NULL, NULL);
    }
  }
  if (rc == DQ_OK && changes == 1) rc = dq_exec(c, "COMMIT", 0, NULL, NULL, NULL);
  else if (rc == DQ_OK || rc == DQ_FAILED) {
    snprintf(why, whylen, "%s", dq_errmsg(c)); /* the refusal's text, before ROLLBACK's answer replaces it */
    dq_exec(c, "ROLLBACK", 0, NULL, NULL, NULL);
  }
  if (rc == DQ_OK) return changes == 1;
  return rc == DQ_FAILED ? -2 : -1;
}

/* After a failure in complete(): did the commit land anyway (the answer may have been lost)? */
static int completed_by(dq_client *c, int64_t job, const char *claim) {
  dq_rows *r = NULL;
  dq_value p[2] = {num(job), txt(claim)};
  int rc = RETRY(c, dq_query(c, "SELECT state = 'done' FROM prefix_train_jobs WHERE id = ?1 AND claim = ?2", 2, p, &r));
  int done = rc == DQ_OK && r->nrow == 1 && r->v[0].type == DQ_INTEGER && r->v[0].i == 1;
  dq_rows_free(r);
  return rc == DQ_OK ? done : -1;
}

static void fail_job(const config *cfg, dq_client *c, int64_t job, const char *claim, const char *why) {
  dq_value p[3] = {txt(why), num(job), txt(claim)};
  int rc = RETRY(c, dq_exec(c, "UPDATE prefix_train_jobs SET state = 'failed', error = ?1, finished_at = unixepoch(), "
                               "lease_until = NULL WHERE id = ?2 AND claim = ?3 AND state = 'running'", 3, p, NULL, NULL));
  if (rc) logf_(cfg, "job %lld: could not record its failure: %s", (long long)job, dq_errmsg(c));
}

/* A test hook (tests/cluster.sh): PREFIX_WORKER_STOP_AT_CLAIM=K makes the worker stop itself (SIGSTOP)
** right after its K-th claim is logged, before it reads the pairs, as a stalled or frozen machine would.
** The test then kills it, lets its lease run out, or kills the leader, and continues it (SIGCONT) at a
** point that does not depend on how fast the machine trains. */
static void stop_if_asked(void) {
  static int claims;
  const char *k = getenv("PREFIX_WORKER_STOP_AT_CLAIM");
  if (k && atoi(k) == ++claims) raise(SIGSTOP);
}

/* Claims one job and runs it. Returns 1 when a job was run, 0 when none was free, -1 on a connection
** error, -2 when the cluster refuses the claim itself (no job table, say). */
static int run_one(const config *cfg, dq_client *c, sqlite3 *local) {
  char claim[80];
  unsigned char rnd[12] = {0};
  FILE *ur = fopen("/dev/urandom", "rb");
  if (!ur || fread(rnd, 1, sizeof rnd, ur) != sizeof rnd) {
    for (size_t i = 0; i < sizeof rnd; i++) rnd[i] = (unsigned char)(rand() ^ (int)getpid());
  }
  if (ur) fclose(ur);
  int o = 0;
  for (size_t i = 0; i < sizeof rnd; i++) o += snprintf(claim + o, sizeof claim - (size_t)o, "%02x", rnd[i]);

  uint64_t changes = 0;
  dq_value p[4] = {txt(cfg->name), txt(claim), num((int64_t)(cfg->lease_s + 0.999)), txt(cfg->models_json)};
  int rc = RETRY(c, dq_exec(c,
                            "UPDATE prefix_train_jobs SET state = 'running', worker = ?1, claim = ?2, attempts = attempts + 1, "
                            "lease_until = unixepoch() + ?3, started_at = unixepoch(), error = NULL "
                            "WHERE id = (SELECT id FROM prefix_train_jobs "
                            "  WHERE (state = 'queued' OR (state = 'running' AND lease_until < unixepoch())) "
                            "    AND attempts < max_attempts AND model IN (SELECT value FROM json_each(?4)) "
                            "  ORDER BY id LIMIT 1)",
                            4, p, NULL, &changes));
  if (rc) return rc == DQ_FAILED || rc == DQ_MISUSE ? -2 : -1;
  if (changes == 0) return 0;

  dq_rows *job = NULL, *pairs = NULL;
  dq_value q[1] = {txt(claim)};
  rc = RETRY(c, dq_query(c, "SELECT id, customer, model, options, attempts FROM prefix_train_jobs WHERE claim = ?1", 1, q, &job));
  if (rc || job->nrow != 1 || job->ncol != 5 || job->v[1].type != DQ_TEXT || job->v[2].type != DQ_TEXT ||
      job->v[3].type != DQ_TEXT) {
    logf_(cfg, "claimed a job but cannot read it back: %s", rc ? dq_errmsg(c) : "unexpected row");
    dq_rows_free(job);
    return -1;
  }
  int64_t id = job->v[0].i, attempt = job->v[4].i;
  const char *customer = job->v[1].p, *model = job->v[2].p, *options = job->v[3].p;
  logf_(cfg, "job %lld claimed: customer '%s', model '%s', attempt %lld", (long long)id, customer, model, (long long)attempt);
  stop_if_asked();

  dq_value r[1] = {txt(customer)};
  rc = RETRY(c, dq_query(c, "SELECT prompt, completion FROM prefix_pairs WHERE customer = ?1 AND split = 'train' ORDER BY id",
                         1, r, &pairs));
  if (rc) {
    logf_(cfg, "job %lld: reading its pairs failed: %s", (long long)id, dq_errmsg(c));
    dq_rows_free(job);
    return -1; /* the lease runs out and the job is claimed again */
  }

  keeper k = {.cfg = cfg, .job = id, .claim = claim, .local = local};
  pthread_mutex_init(&k.mu, NULL);
  pthread_cond_init(&k.cv, NULL);
  pthread_t th;
  int have_thread = pthread_create(&th, NULL, keep_lease, &k) == 0;

  double t0 = pf_clock();
  trained t = {0};
  char err[1024] = "";
  int bad = pairs->nrow == 0 ? (snprintf(err, sizeof err, "customer '%s' has no training pairs", customer), -1)
                             : train_local(local, model, options, pairs, &t, err, sizeof err);
  double secs = pf_clock() - t0;

  pthread_mutex_lock(&k.mu);
  k.done = 1;
  pthread_cond_signal(&k.cv);
  pthread_mutex_unlock(&k.mu);
  if (have_thread) pthread_join(th, NULL);

  if (k.lost) {
    logf_(cfg, "job %lld: lease lost to another worker after %.1f s; result dropped", (long long)id, secs);
  } else if (bad) {
    logf_(cfg, "job %lld failed: %s", (long long)id, err);
    fail_job(cfg, c, id, claim, err);
  } else {
    /* the transaction is fenced by the claim, so it can be tried again after a leader change */
    int done = -1;
    char why[512] = "";
    for (int attempt_ = 0; attempt_ < 5 && done == -1 && !g_stop; attempt_++) {
      done = complete(c, id, claim, customer, model, options, &t, why, sizeof why);
      if (done != -1) break;
      logf_(cfg, "job %lld: storing the prefix failed (%s); checking whether it landed", (long long)id, dq_errmsg(c));
      if (reconnect_logged(c) != DQ_OK) continue;
      if (completed_by(c, id, claim) == 1) done = 1;
    }
    if (done == 1)
      logf_(cfg, "job %lld done: %d-byte prefix, %lld rows, %lld steps, final loss %.4f, %.1f s", (long long)id, t.nblob,
            (long long)t.rows, (long long)t.steps, t.final_loss, secs);
    else if (done == 0)
      logf_(cfg, "job %lld: another worker holds it now; result dropped", (long long)id);
    else if (done == -2) {
      char msg[600];
      snprintf(msg, sizeof msg, "storing the prefix failed: %s", why);
      logf_(cfg, "job %lld failed: %s", (long long)id, msg);
      fail_job(cfg, c, id, claim, msg);
    }
    else
      logf_(cfg, "job %lld: not stored (%s); its lease will run out and it will be retried", (long long)id, dq_errmsg(c));
  }
  free(t.blob);
  pthread_mutex_destroy(&k.mu);
  pthread_cond_destroy(&k.cv);
  dq_rows_free(pairs);
  dq_rows_free(job);
  return 1;
}

/* Jobs whose last lease ran out with no attempt left become 'failed'; returns how many jobs this worker
** could still take or wait for (queued or running, for its models). */
static int64_t housekeeping(const config *cfg, dq_client *c) {
  RETRY(c, dq_exec(c, "UPDATE prefix_train_jobs SET state = 'failed', finished_at = unixepoch(), "
                      "error = 'no attempt left: the lease of attempt ' || attempts || ' (' || coalesce(worker, '?') || ') ran out' "
                      "WHERE state = 'running' AND lease_until < unixepoch() AND attempts >= max_attempts",
                   0, NULL, NULL, NULL));
  dq_rows *r = NULL;
  dq_value p[1] = {txt(cfg->models_json)};
  int rc = RETRY(c, dq_query(c, "SELECT count(*) FROM prefix_train_jobs WHERE state IN ('queued', 'running') "
                                "AND model IN (SELECT value FROM json_each(?1))", 1, p, &r));
  int64_t n = rc == DQ_OK && r->nrow == 1 ? r->v[0].i : -1;
  dq_rows_free(r);
  return n;
}

static void usage(FILE *f) {
  fprintf(f, "usage: prefix-worker -s HOST:PORT[,HOST:PORT...] --model NAME=PATH [options]\n"
             "  -s SERVERS            nodes of the cluster (any of them; the leader is found)\n"
             "  -d DATABASE           database name (default prefixes)\n"
             "  --model NAME=PATH     a model this worker trains for (jobs whose model is NAME); repeatable\n"
             "  --name NAME           how jobs name this worker (default host:pid)\n"
             "  --lease S             lease length in seconds, renewed every S/3 (default 30)\n"
             "  --poll S              wait between looks at an empty queue (default 1)\n"
             "  --exit-when-idle      exit when no job for this worker's models is queued or running\n"
             "  --max-jobs N          exit after N jobs\n"
             "Threads per training: PREFIX_THREADS (default: the machine's cores). Logs go to stderr.\n");
}

int main(int argc, char **argv) {
  config cfg = {.database = "prefixes", .lease_s = 30, .poll_s = 1, .timeout_s = 30};
  const char *models[64];
  int nmodels = 0;
  char namebuf[300];
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
    if (!strcmp(a, "--exit-when-idle")) { cfg.exit_when_idle = 1; continue; }
    if (i + 1 >= argc) { fprintf(stderr, "prefix-worker: %s needs a value\n", a); return 2; }
    const char *v = argv[++i];
    if (!strcmp(a, "-s")) cfg.servers = v;
    else if (!strcmp(a, "-d")) cfg.database = v;
    else if (!strcmp(a, "--name")) cfg.name = v;
    else if (!strcmp(a, "--lease")) cfg.lease_s = atof(v);
    else if (!strcmp(a, "--poll")) cfg.poll_s = atof(v);
    else if (!strcmp(a, "--max-jobs")) cfg.max_jobs = atoi(v);
    else if (!strcmp(a, "--model")) {
      if (nmodels == 64) { fprintf(stderr, "prefix-worker: at most 64 --model options\n"); return 2; }
      models[nmodels++] = v;
    } else { fprintf(stderr, "prefix-worker: unknown option %s\n", a); usage(stderr); return 2; }
  }
  if (!cfg.servers || !nmodels) { usage(stderr); return 2; }
  if (cfg.lease_s < 1) { fprintf(stderr, "prefix-worker: --lease must be at least 1 second\n"); return 2; }
  if (!cfg.name) {
    char host[256] = "worker";
    gethostname(host, sizeof host - 1);
    snprintf(namebuf, sizeof namebuf, "%s:%d", host, (int)getpid());
    cfg.name = namebuf;
  }

  /* the private connection that trains, with the models loaded once */
  sqlite3_auto_extension((void (*)(void))sqlite3_prefix_init);
  sqlite3 *local;
  if (sqlite3_open(":memory:", &local) != SQLITE_OK) { fprintf(stderr, "prefix-worker: cannot open SQLite\n"); return 1; }
  size_t o = 0;
  o += (size_t)snprintf(cfg.models_json + o, sizeof cfg.models_json - o, "[");
  for (int i = 0; i < nmodels; i++) {
    size_t nl = pfc_model_name_len(models[i]);
    if (!nl || memchr(models[i], '"', nl) || memchr(models[i], '\\', nl)) {
      fprintf(stderr, "prefix-worker: --model wants NAME=PATH (NAME without quotes or backslashes), got '%s'\n", models[i]);
      return 2;
    }
    char err[1024];
    if (pfc_model_load(local, models[i], err, sizeof err)) {
      fprintf(stderr, "prefix-worker: %s\n", err);
      return 1;
    }
    o += (size_t)snprintf(cfg.models_json + o, sizeof cfg.models_json - o, "%s\"%.*s\"", i ? "," : "", (int)nl, models[i]);
    if (o >= sizeof cfg.models_json - 2) { fprintf(stderr, "prefix-worker: too many model names\n"); return 2; }
  }
  snprintf(cfg.models_json + o, sizeof cfg.models_json - o, "]");

  struct sigaction sa = {0};
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);

  char err[512];
  dq_client *c = dq_connect(cfg.servers, cfg.database, cfg.timeout_s, err, sizeof err);
  if (!c) { fprintf(stderr, "prefix-worker: %s\n", err); sqlite3_close(local); return 1; }
  g_cfg = &cfg;
  logf_(&cfg, "connected to leader %s; models %s; lease %.0f s", dq_leader_address(c), cfg.models_json, cfg.lease_s);
  int jobs = 0, status = 0;
  while (!g_stop && (!cfg.max_jobs || jobs < cfg.max_jobs)) {
    int r = run_one(&cfg, c, local);
    if (r == 1) { jobs++; continue; }
    if (r == -2) {
      logf_(&cfg, "the cluster refused the claim: %s (is sql/cluster.sql loaded?)", dq_errmsg(c));
      status = 1;
      break;
    }
    if (r < 0) {
      if (reconnect_logged(c) != DQ_OK) { status = 1; break; }
      usleep((useconds_t)(cfg.poll_s * 1e6));
      continue;
    }
    int64_t left = housekeeping(&cfg, c);
    if (cfg.exit_when_idle && left == 0) break;
    usleep((useconds_t)(cfg.poll_s * 1e6));
  }
  logf_(&cfg, "%d job%s run; exiting", jobs, jobs == 1 ? "" : "s");
  dq_close(c);
  sqlite3_close(local);
  return status;
}
