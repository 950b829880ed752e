/*
** jobs.c — training jobs and the prefix_jobs table.
**
**   SELECT id, model, status, step, total_steps, train_loss, val_loss, eta FROM prefix_jobs;
**
** Every prefix_train / prefix_train_agg call is a job in a process-wide list
** (the 64 most recent are kept), updated after every step, so another
** connection of the same process can watch training while it runs.
*/
#include "ext.h"
SQLITE_EXTENSION_INIT3

#include <math.h>
#include <stdio.h>
#include "../engine/train.h"
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_JOBS 64

typedef struct job {
  sqlite3_int64 id;
  char model[128];
  char status[16];      /* running, done, failed, interrupted */
  char error[256];
  pf_progress pr;
  int used;
} job;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static job g_jobs[MAX_JOBS];
static sqlite3_int64 g_next = 1;

sqlite3_int64 pfx_job_start(const char *model) {
  pthread_mutex_lock(&g_mu);
  /* reuse the oldest slot that is not running */
  int at = -1;
  for (int i = 0; i < MAX_JOBS; i++) if (!g_jobs[i].used) { at = i; break; }
  if (at < 0)
    for (int i = 0; i < MAX_JOBS; i++)
      if (strcmp(g_jobs[i].status, "running") && (at < 0 || g_jobs[i].id < g_jobs[at].id)) at = i;
  sqlite3_int64 id = 0;
  if (at >= 0) {
    job *j = &g_jobs[at];
    memset(j, 0, sizeof *j);
    j->used = 1;
    j->id = id = g_next++;
    snprintf(j->model, sizeof j->model, "%s", model);
    strcpy(j->status, "running");
    j->pr.val_loss = NAN;
    j->pr.best_val_loss = NAN;
    j->pr.train_loss = NAN;
  }
  pthread_mutex_unlock(&g_mu);
  return id;
}

static job *find_locked(sqlite3_int64 id) {
  for (int i = 0; i < MAX_JOBS; i++) if (g_jobs[i].used && g_jobs[i].id == id) return &g_jobs[i];
  return NULL;
}

void pfx_job_progress(void *arg, const pf_progress *pr) {
  sqlite3_int64 id = *(sqlite3_int64 *)arg;
  pthread_mutex_lock(&g_mu);
  job *j = find_locked(id);
  if (j) j->pr = *pr;
  pthread_mutex_unlock(&g_mu);
}

void pfx_job_finish(sqlite3_int64 id, const char *status, const char *error) {
  pthread_mutex_lock(&g_mu);
  job *j = find_locked(id);
  if (j) {
    snprintf(j->status, sizeof j->status, "%s", status);
    snprintf(j->error, sizeof j->error, "%s", error ? error : "");
    if (!strcmp(status, "done")) j->pr.eta_s = 0;
  }
  pthread_mutex_unlock(&g_mu);
}

enum { J_ID, J_MODEL, J_STATUS, J_STEP, J_TOTAL, J_EPOCH, J_TRAIN, J_VAL, J_BEST, J_TOKS, J_ELAPSED, J_ETA, J_ERROR, J_STALLED,
       J_STOP };

typedef struct jobs_cursor {
  sqlite3_vtab_cursor base;
  job *rows;
  int n, i;
} jobs_cursor;

static int jobs_connect(sqlite3 *db, void *aux, int argc, const char *const *argv, sqlite3_vtab **pp, char **err) {
  (void)aux; (void)argc; (void)argv; (void)err;
  return pfx_vtab_connect(db,
      "CREATE TABLE x(id INT, model TEXT, status TEXT, step INT, total_steps INT, epoch INT, train_loss REAL,"
      " val_loss REAL, best_val_loss REAL, tokens_per_s REAL, elapsed REAL, eta REAL, error TEXT, stalled_checks INT,"
      " stop_reason TEXT)", sizeof(sqlite3_vtab), pp);
}
static int jobs_open(sqlite3_vtab *v, sqlite3_vtab_cursor **pc) {
  (void)v;
  return pfx_cursor_open(sizeof(jobs_cursor), pc);
}
static int jobs_close(sqlite3_vtab_cursor *cur) {
  jobs_cursor *c = (jobs_cursor *)cur;
  sqlite3_free(c->rows);
  sqlite3_free(c);
  return SQLITE_OK;
}
static int cmp_id(const void *a, const void *b) {
  const job *x = a, *y = b;
  return x->id < y->id ? -1 : x->id > y->id;
}
static int jobs_filter(sqlite3_vtab_cursor *cur, int idx, const char *idxs, int argc, sqlite3_value **argv) {
  (void)idx; (void)idxs; (void)argc; (void)argv;
  jobs_cursor *c = (jobs_cursor *)cur;
  sqlite3_free(c->rows);
  c->rows = sqlite3_malloc(sizeof(job) * MAX_JOBS);
  c->n = c->i = 0;
  if (!c->rows) return SQLITE_NOMEM;
  pthread_mutex_lock(&g_mu);
  for (int i = 0; i < MAX_JOBS; i++) if (g_jobs[i].used) c->rows[c->n++] = g_jobs[i];
  pthread_mutex_unlock(&g_mu);
  qsort(c->rows, (size_t)c->n, sizeof(job), cmp_id);
  return SQLITE_OK;
}
static int jobs_next(sqlite3_vtab_cursor *cur) { ((jobs_cursor *)cur)->i++; return SQLITE_OK; }
static int jobs_eof(sqlite3_vtab_cursor *cur) { jobs_cursor *c = (jobs_cursor *)cur; return c->i >= c->n; }
static int jobs_rowid(sqlite3_vtab_cursor *cur, sqlite3_int64 *r) {
  jobs_cursor *c = (jobs_cursor *)cur;
  *r = c->rows[c->i].id;
  return SQLITE_OK;
}
static void real_or_null(sqlite3_context *ctx, double v) {
  if (isnan(v) || isinf(v)) sqlite3_result_null(ctx);
  else sqlite3_result_double(ctx, v);
}
static int jobs_column(sqlite3_vtab_cursor *cur, sqlite3_context *ctx, int col) {
  jobs_cursor *c = (jobs_cursor *)cur;
  const job *j = &c->rows[c->i];
  switch (col) {
    case J_ID: sqlite3_result_int64(ctx, j->id); break;
    case J_MODEL: sqlite3_result_text(ctx, j->model, -1, SQLITE_TRANSIENT); break;
    case J_STATUS: sqlite3_result_text(ctx, j->status, -1, SQLITE_TRANSIENT); break;
    case J_STEP: sqlite3_result_int(ctx, j->pr.step); break;
    case J_TOTAL: sqlite3_result_int(ctx, j->pr.total_steps); break;
    case J_EPOCH: sqlite3_result_int(ctx, j->pr.epoch); break;
    case J_TRAIN: real_or_null(ctx, j->pr.step ? j->pr.train_loss : NAN); break;
    case J_VAL: real_or_null(ctx, j->pr.val_loss); break;
    case J_BEST: real_or_null(ctx, j->pr.best_val_loss); break;
    case J_TOKS: sqlite3_result_double(ctx, j->pr.tokens_per_s); break;
    case J_ELAPSED: sqlite3_result_double(ctx, j->pr.elapsed_s); break;
    case J_ETA: sqlite3_result_double(ctx, j->pr.eta_s); break;
    case J_ERROR:
      if (j->error[0]) sqlite3_result_text(ctx, j->error, -1, SQLITE_TRANSIENT);
      else sqlite3_result_null(ctx);
      break;
    case J_STALLED: sqlite3_result_int(ctx, j->pr.since_best); break;
    case J_STOP:
      if (j->pr.stop_reason) sqlite3_result_text(ctx, j->pr.stop_reason, -1, SQLITE_STATIC);
      else sqlite3_result_null(ctx);
      break;
  }
  return SQLITE_OK;
}
static int jobs_best_index(sqlite3_vtab *v, sqlite3_index_info *info) {
  (void)v;
  info->estimatedCost = 10;
  info->estimatedRows = MAX_JOBS;
  return SQLITE_OK;
}

sqlite3_module pfx_jobs_module = {
    0, NULL, jobs_connect, jobs_best_index, pfx_vtab_disconnect, NULL, jobs_open, jobs_close, jobs_filter, jobs_next,
    jobs_eof, jobs_column, jobs_rowid, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
