/*
** serve.c — every generation and scoring call on a model, from any thread, shares one batched forward pass
** per step.
**
** Each model has a scheduler: a batch of rows (gen.h) that one pass per step advances, a queue of requests
** waiting to join, and a thread of its own that runs the steps. A request (pf_generate, a pf_generate_batch
** group, a stream, a pf_score_tokens call: a row that only prefills) reserves its KV caches' bytes from the
** model's budget, makes its rows in its caller's thread (tokenizing, allocating caches, copying its prefix
** in), queues them and waits. The model's thread,
** at each step boundary, admits the queued rows and retires the rows that ended, then runs one step for all
** of them (the work of the step uses the thread pool as before); with nothing to step it sleeps (started on
** the first request; joined when the model is freed). The waiting callers sleep on a condition variable and
** wake once per step, to check their own cancel callback — in their own thread: SQLite's interrupt and
** progress handler belong to the caller's connection, and a slow handler delays only its own request — and
** whether they are done.
**
** What a request gets does not depend on its company: its rows are the same rows with the same sampler
** whatever else is in the pass. (The pass's row count can choose another kernel path for the products —
** the packed GEMM for many rows, the row kernels for a few — whose sums are ordered differently: per-token
** log-probabilities then agree to about 1e-6, not bit for bit; docs/performance.md.)
**
** Failure and cancellation are per request: a row that fails (non-finite logits) ends with its error, a
** cancelled request's rows end with PF_INTERRUPT at the next step boundary, and the others go on. A stream's
** row runs up to STREAM_AHEAD tokens ahead of its reader, each token kept with the piece of text it gives.
*/
#include "gen.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct req {
  row **rows;
  int n;
  int threads;         /* its call's thread count (0: the process default) */
  int queued;          /* waiting to join at the next step boundary */
  int admitted;        /* its rows are in the batch */
  int done;            /* its rows have left the batch (ended, failed or cancelled) */
  int cancelled;       /* its caller asked to stop */
  int stream;          /* satisfied when its row has a token its reader has not taken */
  pthread_cond_t cv;   /* its caller waits here: signalled when it is satisfied */
  struct req *next;
} req;

/* a waiting caller wakes at least this often to check its cancel callback (its connection's interrupt). More
** often costs the steps: each wake preempts a compute thread on a busy machine (every 20 ms slowed a lone
** request by 5% on 2 cores). */
#define CANCEL_POLL_NS 100000000

/* a caller waiting for KV-cache memory, in arrival order */
typedef struct waiter {
  size_t bytes;
  int granted;
  struct waiter *next;
} waiter;

typedef struct sched {
  pthread_mutex_t mu;
  pthread_cond_t cv;   /* the model thread waits here for work; broadcast after every step (withdrawals, the budget) */
  gen *g;
  req *queue, *queue_tail, *active;
  pthread_t thread;    /* the model's thread, which runs the steps */
  int running, quit;
  int hold;            /* tests: no step and no admission while set (callers queue) */
  int stepping;        /* a step runs (outside the lock) */
  uint64_t steps;
  /* the KV-cache budget: requests reserve their caches' bytes before making them, first come first served */
  size_t budget, used;
  waiter *wq, *wq_tail;
  /* counters for pf_sched_stats */
  uint64_t tokens, requests;
  int peak_rows;
  double busy_s;       /* time spent in steps */
  pid_t pid;           /* the process that made it (a forked child makes its own) */
} sched;

/* the default budget: a quarter of the machine's memory */
static size_t default_budget(void) {
  long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
  if (pages <= 0 || psz <= 0) return (size_t)1 << 30;
  return (size_t)pages * (size_t)psz / 4;
}

static pthread_mutex_t g_create = PTHREAD_MUTEX_INITIALIZER;

static void sched_free(void *p) {
  sched *s = p;
  if (!s) return;
  pthread_mutex_lock(&s->mu);
  int running = s->running;
  s->quit = 1;
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
  if (running) pthread_join(s->thread, NULL);
  gen_free(s->g);
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->cv);
  free(s);
}

/* Condition variables the callers wait on with a timeout: on the monotonic clock where the system lets a
** condition use it (a wall-clock change then neither stalls nor hurries a wait), else on the wall clock. */
#if defined(__APPLE__)
#define WAIT_CLOCK CLOCK_REALTIME
static void cond_init(pthread_cond_t *cv) { pthread_cond_init(cv, NULL); }
#else
#define WAIT_CLOCK CLOCK_MONOTONIC
static void cond_init(pthread_cond_t *cv) {
  pthread_condattr_t a;
  pthread_condattr_init(&a);
  pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
  pthread_cond_init(cv, &a);
  pthread_condattr_destroy(&a);
}
#endif

/* wait on cv (made by cond_init) for at most ns nanoseconds */
static void wait_ns(pthread_cond_t *cv, pthread_mutex_t *mu, long ns) {
  struct timespec ts;
  clock_gettime(WAIT_CLOCK, &ts);
  ts.tv_nsec += ns;
  ts.tv_sec += ts.tv_nsec / 1000000000;
  ts.tv_nsec %= 1000000000;
  pthread_cond_timedwait(cv, mu, &ts);
}

/* the model's scheduler, made on first use */
static sched *sched_of(const pf_model *cm, pf_err *err) {
  pf_model *m = (pf_model *)cm;   /* the scheduler is the model's only mutable part */
  sched *s = m->sched;
  if (s && s->pid == getpid()) return s;
  pthread_mutex_lock(&g_create);
  if (!(s = m->sched) || s->pid != getpid()) {   /* (a forked child leaves its parent's: its thread is not here) */
    s = calloc(1, sizeof *s);
    if (s && !(s->g = gen_new(m))) { free(s); s = NULL; }
    if (s) {
      s->pid = getpid();
      s->budget = default_budget();
      pthread_mutex_init(&s->mu, NULL);
      cond_init(&s->cv);
      m->sched_free = sched_free;
      m->sched = s;
    }
  }
  pthread_mutex_unlock(&g_create);
  if (!s) pf_seterr(err, PF_NOMEM, "out of memory for the model's scheduler");
  return s;
}

/* ------------------------------------------------ under the lock: join and leave at step boundaries */

static int row_over(const row *r) { return r->done || r->rc; }

/* tokens a stream's row may make ahead of its reader (so it takes part in the steps between two reads) */
#define STREAM_AHEAD 4

static int req_satisfied(const req *q) {
  if (q->done) return 1;
  const row *r = q->rows[0];
  return q->stream && q->admitted && (r->n_pub > r->n_read || r->over);
}

static void unlink_req(req **list, req *q) {
  for (req **p = list; *p; p = &(*p)->next)
    if (*p == q) { *p = q->next; q->next = NULL; return; }
}

/* The queued requests join the batch (all of them: the pass grows with the callers). */
static void admit(sched *s) {
  while (s->queue) {
    req *q = s->queue;
    int ok = 1, i;
    for (i = 0; i < q->n && ok; i++) ok = gen_add(s->g, q->rows[i]) == PF_OK;
    if (!ok) {   /* out of memory growing the batch's row list: this request fails alone */
      for (int j = 0; j < i - 1; j++) gen_remove(s->g, q->rows[j]);
      for (int j = 0; j < q->n; j++) if (!q->rows[j]->rc) { q->rows[j]->rc = PF_NOMEM; q->rows[j]->done = 1; }
    }
    s->queue = q->next;
    if (!s->queue) s->queue_tail = NULL;
    q->queued = 0;
    q->admitted = ok;
    q->done = !ok;
    q->next = s->active;
    if (ok) s->active = q;
    else q->next = NULL;
    s->requests++;
  }
  if (gen_count(s->g) > s->peak_rows) s->peak_rows = gen_count(s->g);
}

/* Requests whose rows all ended, or that were cancelled, leave the batch. Returns how many left. */
static int retire(sched *s) {
  int left = 0;
  for (req **p = &s->active; *p;) {
    req *q = *p;
    int over = 1;
    for (int i = 0; i < q->n; i++) {
      row *r = q->rows[i];
      if (q->cancelled && !row_over(r)) { r->rc = PF_INTERRUPT; r->done = 1; }
      over &= row_over(r);
    }
    if (!over) { p = &q->next; continue; }
    for (int i = 0; i < q->n; i++) gen_remove(s->g, q->rows[i]);
    *p = q->next;
    q->next = NULL;
    q->admitted = 0;
    q->done = 1;
    pthread_cond_signal(&q->cv);
    left++;
  }
  return left;
}

/* The model's thread: at each boundary admit and retire, then one step for every row that can take part;
** sleep when there is none (or while a test holds the scheduler). */
static void *run_model(void *arg) {
  sched *s = arg;
  pthread_mutex_lock(&s->mu);
  while (!s->quit) {
    if (s->hold) { pthread_cond_wait(&s->cv, &s->mu); continue; }
    admit(s);
    if (retire(s)) pthread_cond_broadcast(&s->cv);
    int any = 0;
    for (int i = 0; i < gen_count(s->g); i++) {
      row *r = gen_row_at(s->g, i);
      r->go = !row_over(r) && (!r->rec || r->n_pub - r->n_read < STREAM_AHEAD);   /* a stream: not too far ahead */
      any |= r->go;
    }
    if (!any) { pthread_cond_wait(&s->cv, &s->mu); continue; }
    int threads = s->active ? s->active->threads : 0;   /* the newest request's setting */
    s->stepping = 1;
    pthread_mutex_unlock(&s->mu);
    int made = 0, old = pf_threads_push(threads);
    pf_err e;
    double t0 = pf_clock();
    gen_step(s->g, &made, &e);   /* a pass's failure is in its rows */
    double dt = pf_clock() - t0;
    pf_threads_pop(old);
    pthread_mutex_lock(&s->mu);
    s->busy_s += dt;
    for (int i = 0; i < gen_count(s->g); i++) {   /* what the step did, for the waiting callers */
      row *r = gen_row_at(s->g, i);
      if (!r->go) continue;
      r->over = row_over(r);
      if (r->rec) r->n_pub = r->n_rec;   /* the stream's reader may take them now */
    }
    s->tokens += (uint64_t)made;
    s->stepping = 0;
    s->steps++;
    for (req *q = s->active; q; q = q->next)   /* wake only the callers with something to take */
      if (req_satisfied(q)) pthread_cond_signal(&q->cv);
    pthread_cond_broadcast(&s->cv);   /* a caller withdrawing a stream, or waiting for the budget */
  }
  pthread_mutex_unlock(&s->mu);
  return NULL;
}

/* Queue q (its rows made) and wait until it is satisfied, checking the caller's cancel when woken (news for it,
** or every CANCEL_POLL_NS). */
static int serve(sched *s, req *q, pf_cancel_fn cancel, void *carg, pf_err *err) {
  int stop = cancel && cancel(carg);   /* at least once per call */
  pthread_mutex_lock(&s->mu);
  if (!s->running) {
    if (pthread_create(&s->thread, NULL, run_model, s)) {
      pthread_mutex_unlock(&s->mu);
      return pf_seterr(err, PF_NOMEM, "cannot start the model's thread");
    }
    s->running = 1;
  }
  if (stop) q->cancelled = 1;
  if (!q->admitted && !q->queued && !q->done) {
    q->queued = 1;
    if (s->queue_tail) s->queue_tail->next = q;
    else s->queue = q;
    s->queue_tail = q;
  }
  pthread_cond_broadcast(&s->cv);
  while (!req_satisfied(q)) {
    wait_ns(&q->cv, &s->mu, CANCEL_POLL_NS);   /* asleep until satisfied, waking to check the cancel callback */
    if (req_satisfied(q) || !cancel || q->cancelled) continue;
    pthread_mutex_unlock(&s->mu);
    stop = cancel(carg);   /* in this caller's thread: its connection's interrupt and progress handler */
    pthread_mutex_lock(&s->mu);
    if (stop) { q->cancelled = 1; pthread_cond_broadcast(&s->cv); }
  }
  pthread_mutex_unlock(&s->mu);
  return PF_OK;
}

/* q leaves now (a stream closed early): queued, it is dropped; in the batch, it is retired here when no step
** runs, else at the next boundary by the model's thread. */
static void withdraw(sched *s, req *q) {
  pthread_mutex_lock(&s->mu);
  if (!q->queued && !q->admitted) q->done = 1;   /* never joined, or already left */
  if (q->queued) {
    unlink_req(&s->queue, q);
    s->queue_tail = NULL;
    for (req *x = s->queue; x; x = x->next) s->queue_tail = x;
    q->queued = 0;
    q->done = 1;
  }
  q->cancelled = 1;
  while (!q->done) {
    if (!s->stepping) {   /* a boundary: retire it ourselves (cancelled, its rows are over) */
      if (retire(s)) pthread_cond_broadcast(&s->cv);
      break;
    }
    pthread_cond_wait(&s->cv, &s->mu);
  }
  pthread_mutex_unlock(&s->mu);
}

void pf_sched_hold(const pf_model *m, int on) {
  pf_err e;
  sched *s = sched_of(m, &e);
  if (!s) return;
  pthread_mutex_lock(&s->mu);
  s->hold = on;
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
}

int pf_sched_stats(const pf_model *m, pf_sched_info *out) {
  memset(out, 0, sizeof *out);
  sched *s = m->sched;
  if (!s) { out->budget = default_budget(); return PF_OK; }
  pthread_mutex_lock(&s->mu);
  out->rows = gen_count(s->g);
  for (req *q = s->queue; q; q = q->next) out->queued_rows += q->n;
  for (req *q = s->active; q; q = q->next) out->requests++;
  out->steps = s->steps;
  out->tokens = s->tokens;
  out->served = s->requests;
  out->peak_rows = s->peak_rows;
  out->stepping = s->stepping;
  out->budget = s->budget;
  out->used = s->used;
  for (waiter *w = s->wq; w; w = w->next) out->waiting++;
  out->busy_s = s->busy_s;
  pthread_mutex_unlock(&s->mu);
  return PF_OK;
}

/* ------------------------------------------------------------------ the KV-cache budget */

/* Bytes of KV cache a row holds: B x K caches of `positions` each (gen_row_positions, gen_score_row_new). */
static size_t row_bytes(const pf_model *m, int B, int K, int positions) {
  return (size_t)B * K * 2 * (size_t)m->hp.n_layer * (size_t)positions * (size_t)pf_kv_dim(&m->hp) * sizeof(float);
}

/* An item's prompt tokens (BOS included; *ids malloc'ed) and the bytes of KV cache its row will hold. */
static int item_tokens(const pf_model *m, const pf_batch_item *it, const pf_sample_params *p, int **ids, int *n,
                       size_t *bytes, pf_err *err) {
  int need, rc = pf_tokenize(m, it->prompt, it->prompt_len, 1, ids, n, err);
  if (!rc && (rc = gen_row_positions(m, it, p, *n, &need, err))) { free(*ids); *ids = NULL; }
  if (rc) return rc;
  *bytes = row_bytes(m, p->beam_size > 1 ? p->beam_size : 1, it->n_members > 0 ? it->n_members : 1, need);
  return PF_OK;
}

/* grant the waiting reservations that fit, in order (lock held) */
static void grant(sched *s) {
  while (s->wq && s->used + s->wq->bytes <= s->budget) {
    waiter *w = s->wq;
    s->used += w->bytes;
    w->granted = 1;
    s->wq = w->next;
    if (!s->wq) s->wq_tail = NULL;
  }
}

/* Reserve bytes of the budget, waiting (first come, first served) for requests before it to finish. A
** request that can never fit fails at once. The caller's cancel is checked while it waits. */
static int reserve(sched *s, size_t bytes, pf_cancel_fn cancel, void *carg, pf_err *err) {
  pthread_mutex_lock(&s->mu);
  if (bytes > s->budget) {
    size_t b = s->budget;
    pthread_mutex_unlock(&s->mu);
    return pf_seterr(err, PF_TOOBIG, "the request needs %.1f MiB of KV cache; the model's budget for all requests at once "
                     "is %.1f MiB (prefix_model_load's option kv_budget_mb)", bytes / 1048576.0, b / 1048576.0);
  }
  waiter w = {bytes, 0, NULL};
  if (s->wq_tail) s->wq_tail->next = &w;
  else s->wq = &w;
  s->wq_tail = &w;
  grant(s);
  int rc = PF_OK;
  while (!w.granted) {
    wait_ns(&s->cv, &s->mu, CANCEL_POLL_NS);   /* woken by every step and release, and to see an interrupt */
    if (w.granted || !cancel) continue;
    pthread_mutex_unlock(&s->mu);
    int stop = cancel(carg);
    pthread_mutex_lock(&s->mu);
    if (stop && !w.granted) {   /* leave the line */
      waiter **p = &s->wq;
      while (*p != &w) p = &(*p)->next;
      *p = w.next;
      s->wq_tail = NULL;
      for (waiter *x = s->wq; x; x = x->next) s->wq_tail = x;
      grant(s);
      pthread_cond_broadcast(&s->cv);
      rc = pf_seterr(err, PF_INTERRUPT, "interrupted");
      break;
    }
  }
  pthread_mutex_unlock(&s->mu);
  return rc;
}

static void release(sched *s, size_t bytes) {
  if (!bytes) return;
  pthread_mutex_lock(&s->mu);
  s->used -= bytes;
  grant(s);
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
}

int pf_sched_set_budget(const pf_model *m, size_t bytes, pf_err *err) {
  sched *s = sched_of(m, err);
  if (!s) return PF_NOMEM;
  pthread_mutex_lock(&s->mu);
  s->budget = bytes ? bytes : default_budget();
  grant(s);
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
  return PF_OK;
}

/* ------------------------------------------------------------------ the public calls */

static void rows_free(row **rows, int n) {
  for (int i = 0; i < n; i++) gen_row_free(rows[i]);
}

/* the first row's error of a request, as the call's */
static int rows_error(row **rows, int n, int *bad, pf_err *err) {
  for (int i = 0; i < n; i++)
    if (rows[i]->rc) {
      if (bad) *bad = i;
      return rows[i]->rc == PF_INTERRUPT ? pf_seterr(err, PF_INTERRUPT, "interrupted")
             : rows[i]->emsg                ? pf_seterr(err, rows[i]->rc, "%s", rows[i]->emsg)
             : pf_seterr(err, rows[i]->rc, rows[i]->rc == PF_NOMEM ? "out of memory during generation" : "generation failed");
    }
  return PF_OK;
}

/* Queue a request of rows (made) and wait for its end; the first failed row's error is the call's (*bad: its
** index, unless interrupted). */
static int run_rows(sched *s, row **rows, int n, int threads, pf_cancel_fn cancel, void *carg, int *bad, pf_err *err) {
  if (cancel && cancel(carg)) return pf_seterr(err, PF_INTERRUPT, "interrupted");
  req q;
  memset(&q, 0, sizeof q);
  q.rows = rows;
  q.n = n;
  q.threads = threads;
  cond_init(&q.cv);
  int b = -1, rc = serve(s, &q, cancel, carg, err);
  if (!rc && (rc = rows_error(rows, n, &b, err)) && rc != PF_INTERRUPT && bad) *bad = b;
  pthread_cond_destroy(&q.cv);
  return rc;
}

static int generate_group(const pf_model *m, sched *s, pf_batch_item *items, int n, const pf_sample_params *p,
                          pf_cancel_fn cancel, void *carg, int *bad, pf_err *err) {
  size_t bytes = 0, held = 0;   /* held: reserved from the budget (released at the end) */
  int **ids = calloc((size_t)n, sizeof *ids), *n_ids = calloc((size_t)n, sizeof *n_ids), rc = PF_OK, made = 0;
  row **rows = calloc((size_t)n, sizeof *rows);
  if (!ids || !n_ids || !rows) { free(ids); free(n_ids); free(rows); return pf_seterr(err, PF_NOMEM, "out of memory for a batch of %d", n); }
  for (int i = 0; i < n && !rc; i++) {
    size_t b = 0;
    if ((rc = item_tokens(m, &items[i], p, &ids[i], &n_ids[i], &b, err))) *bad = i;
    bytes += b;
  }
  if (!rc && !(rc = reserve(s, bytes, cancel, carg, err))) held = bytes;
  for (; made < n && !rc; made++) {
    rc = gen_row_new(m, p, &items[made], ids[made], n_ids[made], 0, &rows[made], err);   /* takes ids[made] */
    ids[made] = NULL;
    if (rc) *bad = made;
  }
  if (!rc) rc = run_rows(s, rows, n, p->threads, cancel, carg, bad, err);
  for (int i = 0; i < n && !rc; i++) rc = gen_row_result(rows[i], err);
  rows_free(rows, made);
  for (int i = 0; i < n; i++) free(ids[i]);
  free(ids);
  free(n_ids);
  free(rows);
  release(s, held);
  return rc;
}

static int generate_batch(const pf_model *m, pf_batch_item *items, int n, int max_batch, const pf_sample_params *p,
                          pf_cancel_fn cancel, void *carg, int *bad_item, pf_err *err) {
  if (bad_item) *bad_item = -1;
  int rc = gen_check_params(m, p, err);
  if (rc) return rc;
  if (max_batch < 1) max_batch = 1;
  for (int i = 0; i < n; i++) memset(&items[i].res, 0, sizeof items[i].res);
  for (int i = 0; i < n; i++)
    if ((rc = gen_check_members(&items[i], err))) { if (bad_item) *bad_item = i; return rc; }
  sched *s = sched_of(m, err);
  if (!s) return PF_NOMEM;
  for (int b0 = 0; b0 < n && !rc; b0 += max_batch) {
    int nb = n - b0 < max_batch ? n - b0 : max_batch, bad = -1;
    rc = generate_group(m, s, items + b0, nb, p, cancel, carg, &bad, err);
    if (rc && bad >= 0 && bad_item) *bad_item = b0 + bad;
  }
  if (rc) for (int i = 0; i < n; i++) pf_gen_result_clear(&items[i].res);
  return rc;
}

int pf_generate(const pf_model *m, const float *prefix, int prefix_len, const char *prompt, size_t prompt_len,
                const pf_sample_params *p, pf_cancel_fn cancel, void *cancel_arg, pf_gen_result *out, pf_err *err) {
  pf_batch_item it = {prefix, prefix_len, prompt, prompt_len, {0}, 0, NULL, NULL};
  int rc = pf_generate_batch(m, &it, 1, 1, p, cancel, cancel_arg, NULL, err);
  *out = it.res;
  return rc;
}

/* The call's thread count applies to the steps while it is the newest request in the batch. */
int pf_generate_batch(const pf_model *m, pf_batch_item *items, int n, int max_batch, const pf_sample_params *p,
                      pf_cancel_fn cancel, void *carg, int *bad_item, pf_err *err) {
  int old = pf_threads_push(p->threads);
  int rc = generate_batch(m, items, n, max_batch, p, cancel, carg, bad_item, err);
  pf_threads_pop(old);
  return rc;
}

/* ------------------------------------------------------------------ scoring */

/* One scoring row (gen_score_row_new) through the batch, as a request of its own. */
int pf_serve_score(const pf_model *m, pf_batch_item *it, const int *tok, int n, int n_score, double *lp,
                   pf_cancel_fn cancel, void *carg, pf_err *err) {
  int rc = gen_check_members(it, err);
  if (rc) return rc;
  sched *s = sched_of(m, err);
  if (!s) return PF_NOMEM;
  size_t bytes = row_bytes(m, 1, it->n_members > 0 ? it->n_members : 1, gen_item_prefix_len(it) + n - 1);
  if ((rc = reserve(s, bytes, cancel, carg, err))) return rc;
  row *r = NULL;
  if (!(rc = gen_score_row_new(m, it, tok, n, n_score, lp, &r, err))) rc = run_rows(s, &r, 1, 0, cancel, carg, NULL, err);
  gen_row_free(r);
  release(s, bytes);
  return rc;
}

/* ------------------------------------------------------------------ streaming */

struct pf_stream {
  const pf_model *m;
  sched *s;
  size_t bytes;       /* its reservation of the budget */
  row *r;
  req q;
  pf_batch_item it;
  pf_sample_params p;
  char *stops[PF_MAX_STOPS];
  size_t emitted;     /* bytes of the text given out so far */
  char *piece;
  pf_gen_result res;  /* the result as of the last token given (the row's own changes while steps run) */
  int q_cv;           /* q.cv is initialised */
  int replay;         /* beam search: index of the next token of the best beam to give */
  size_t replay_bytes;/* the bytes of the best beam's tokens given so far */
  int finished;       /* nothing more to give */
};

void pf_stream_free(pf_stream *st) {
  if (!st) return;
  if (st->s) withdraw(st->s, &st->q);   /* under the lock: the model's thread may be retiring it right now */
  gen_row_free(st->r);
  if (st->s) release(st->s, st->bytes);
  if (st->q_cv) pthread_cond_destroy(&st->q.cv);
  pf_gen_result_clear(&st->it.res);
  free((void *)st->it.prompt);
  for (int i = 0; i < PF_MAX_STOPS; i++) free(st->stops[i]);
  free(st->piece);
  free(st);
}

const pf_gen_result *pf_stream_result(const pf_stream *st) { return &st->res; }

int pf_stream_new(const pf_model *m, const pf_batch_item *item, const pf_sample_params *p, pf_stream **out, pf_err *err) {
  *out = NULL;
  int rc = gen_check_params(m, p, err);
  if (rc || (rc = gen_check_members(item, err))) return rc;
  sched *s = sched_of(m, err);
  if (!s) return PF_NOMEM;
  pf_stream *st = calloc(1, sizeof *st);
  char *pr = malloc(item->prompt_len + 1);
  if (!st || !pr) { free(st); free(pr); return pf_seterr(err, PF_NOMEM, "out of memory starting generation"); }
  memcpy(pr, item->prompt, item->prompt_len);
  pr[item->prompt_len] = 0;
  st->m = m;
  st->it = *item;   /* the member arrays stay the caller's (alive as long as the stream) */
  st->it.prompt = pr;
  memset(&st->it.res, 0, sizeof st->it.res);
  st->p = *p;
  for (int i = 0; i < p->n_stop && i < PF_MAX_STOPS; i++) {
    if (!(st->stops[i] = strdup(p->stop[i]))) { pf_stream_free(st); return pf_seterr(err, PF_NOMEM, "out of memory"); }
    st->p.stop[i] = st->stops[i];
  }
  int n_ids, *ids;
  size_t bytes;
  if ((rc = item_tokens(m, &st->it, &st->p, &ids, &n_ids, &bytes, err))) { pf_stream_free(st); return rc; }
  if ((rc = reserve(s, bytes, NULL, NULL, err))) { free(ids); pf_stream_free(st); return rc; }
  st->s = s;
  st->bytes = bytes;
  int old = pf_threads_push(p->threads);
  rc = gen_row_new(m, &st->p, &st->it, ids, n_ids, 1, &st->r, err);
  pf_threads_pop(old);
  if (rc) { pf_stream_free(st); return rc; }
  st->res.n_prompt = st->it.res.n_prompt;
  st->res.finish = st->it.res.finish;
  st->q.rows = &st->r;
  st->q.n = 1;
  cond_init(&st->q.cv);
  st->q_cv = 1;
  st->q.threads = p->threads;
  st->q.stream = st->r->B == 1;
  *out = st;
  return PF_OK;
}

/* raw[emitted..len) as the piece of t (the stream keeps it until the next call) */
static int stream_piece(pf_stream *st, const char *raw, size_t len, int final, pf_stream_tok *t) {
  free(st->piece);
  st->piece = gen_piece(&st->p, raw, len, final, &st->emitted, &t->piece_len);
  t->piece = st->piece;
  return st->piece ? PF_OK : PF_NOMEM;
}

/* beam search: the search runs to its end at the first call; then the best beam's tokens, one per call */
static int stream_beam(pf_stream *st, pf_stream_tok *t, int *done, pf_err *err) {
  row *r = st->r;
  int rc = rows_error(&st->r, 1, NULL, err);
  if (rc) return rc;
  const ended *e = gen_best_ended(r);
  if (!e || st->replay >= e->n + e->n_eos) { st->finished = 1; *done = 1; return PF_OK; }
  st->res.n_tokens = e->n;
  st->res.finish = e->finish;
  int i = st->replay++;
  t->id = e->gen[i];
  t->logprob = e->lp[i];
  char piece[256];   /* the text up to this token (within the ended beam's text) */
  if (i < e->n) st->replay_bytes += (size_t)gen_tok_piece(st->m, e->gen[i], piece, sizeof piece);
  size_t cum = st->replay_bytes < e->raw_len ? st->replay_bytes : e->raw_len;
  if (stream_piece(st, e->raw, cum, st->replay == e->n + e->n_eos, t)) return pf_seterr(err, PF_NOMEM, "out of memory");
  return PF_OK;
}

/* the next token the row made, if the reader has not taken it yet (lock held) */
static int take(row *r, stream_rec *x) {
  if (r->n_read >= r->n_pub) return 0;
  *x = r->rec[r->n_read];
  r->rec[r->n_read++].piece = NULL;   /* the reader's now */
  return 1;
}

int pf_stream_next(pf_stream *st, pf_cancel_fn cancel, void *carg, pf_stream_tok *t, int *done, pf_err *err) {
  memset(t, 0, sizeof *t);
  *done = 0;
  if (st->finished) { *done = 1; return PF_OK; }
  row *r = st->r;
  if (r->B > 1) {   /* the whole search at the first call */
    int rc = st->q.done ? PF_OK : serve(st->s, &st->q, cancel, carg, err);
    return rc ? rc : stream_beam(st, t, done, err);
  }
  stream_rec x;
  pthread_mutex_lock(&st->s->mu);
  int have = take(r, &x), ended = st->q.done;
  if (have) pthread_cond_broadcast(&st->s->cv);   /* the row may make another */
  pthread_mutex_unlock(&st->s->mu);
  if (!have && !ended) {   /* none made ahead: wait for the steps that make one */
    int rc = serve(st->s, &st->q, cancel, carg, err);
    if (rc) return rc;
    pthread_mutex_lock(&st->s->mu);
    have = take(r, &x);
    if (have) pthread_cond_broadcast(&st->s->cv);
    pthread_mutex_unlock(&st->s->mu);
  }
  if (!have) {   /* the row ended without another token: failed, cancelled, or nothing to make (max_tokens 0) */
    int rc = rows_error(&st->r, 1, NULL, err);
    if (rc) return rc;
    st->finished = 1;
    *done = 1;
    return PF_OK;
  }
  free(st->piece);
  st->piece = x.piece;
  t->id = x.id;
  t->logprob = x.lp;
  t->piece = x.piece;
  t->piece_len = x.piece_len;
  st->res.n_tokens = x.n_tokens;
  st->res.finish = x.finish;
  if (x.final) st->finished = 1;
  return PF_OK;
}
