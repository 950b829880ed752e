/*
** pool.c — a small persistent thread pool for the compute kernels.
**
** It also owns the thread setting (pf_set_threads and friends).
**
** pf_parallel_for(n, fn, ctx) runs fn(ctx, 0..n-1) on the calling thread and
** up to pf_get_threads()-1 workers, and returns when all are done. Workers spin
** briefly for the next job (decode issues hundreds of small jobs per token),
** then sleep on a condition variable. One job runs at a time: a caller that
** finds the pool busy (another connection's statement) runs its job inline.
** The workers are joined when the library is unloaded; a forked child
** starts its own.
*/
#include "internal.h"

#include <cblas.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

/* ------------------------------------------------ the thread setting
** The number of compute threads: the process default (PREFIX_THREADS, else the machine's cores) and a
** per-thread override for one call (a statement's "threads" option). */
static atomic_int g_threads;                 /* the process default, 0 = not chosen yet */
static _Thread_local int t_threads;         /* this thread's call asked for so many (0 = the default) */
static pthread_once_t g_blas_once = PTHREAD_ONCE_INIT;

/* OpenBLAS runs single-threaded (its thread wake-ups cost more than the
** small products here); products are split across our own pool (pool.c). */
static void blas_single(void) { openblas_set_num_threads(1); }

static int clamp_threads(long c) { return c > 0 ? (int)(c < PF_THREADS_MAX ? c : PF_THREADS_MAX) : 1; }

void pf_set_threads(int n) {
  if (n <= 0) {   /* PREFIX_THREADS, else the machine's cores */
    const char *env = getenv("PREFIX_THREADS");
    n = clamp_threads(env && atoi(env) > 0 ? atoi(env) : sysconf(_SC_NPROCESSORS_ONLN));
  }
  pthread_once(&g_blas_once, blas_single);
  atomic_store(&g_threads, clamp_threads(n));
}

int pf_get_threads(void) {
  if (t_threads > 0) return t_threads;
  int n = atomic_load(&g_threads);
  if (n <= 0) {
    pf_set_threads(0);
    n = atomic_load(&g_threads);
  }
  return n;
}

int pf_threads_push(int n) {
  int old = t_threads;
  pthread_once(&g_blas_once, blas_single);
  if (n > 0) t_threads = clamp_threads(n);
  return old;
}

void pf_threads_pop(int old) { t_threads = old; }

/* ------------------------------------------------------------ the pool */

#define MAX_WORKERS (PF_THREADS_MAX - 1)   /* the caller is the last thread */

static pthread_mutex_t g_pool_mu = PTHREAD_MUTEX_INITIALIZER;   /* one job at a time */
static pthread_mutex_t g_wake_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_wake = PTHREAD_COND_INITIALIZER;
static pthread_t g_thr[MAX_WORKERS];
static int g_nthr;                      /* workers started */
static atomic_int g_gen;                /* job generation */
static atomic_int g_next;               /* next task index */
static atomic_int g_active;             /* workers still inside the current job */
static int g_ntasks, g_want;            /* tasks in the job, workers wanted */
static pf_task_fn g_fn;
static void *g_ctx;
static atomic_int g_quit;

static void run_tasks(void) {
  for (;;) {
    int i = atomic_fetch_add(&g_next, 1);
    if (i >= g_ntasks) break;
    g_fn(g_ctx, i);
  }
}

static int g_start_gen[MAX_WORKERS];   /* the job generation when each worker was started */

static void *worker(void *arg) {
  int id = (int)(intptr_t)arg, seen = g_start_gen[id];   /* jobs from before its start are not its */
  for (;;) {
    int gen;
    for (int spin = 0;; spin++) {   /* spin, then sleep */
      gen = atomic_load(&g_gen);
      if (gen != seen) break;
      if (spin > 20000) {
        pthread_mutex_lock(&g_wake_mu);
        while ((gen = atomic_load(&g_gen)) == seen) pthread_cond_wait(&g_wake, &g_wake_mu);
        pthread_mutex_unlock(&g_wake_mu);
        break;
      }
      if (spin > 1000) sched_yield();
    }
    seen = gen;
    if (atomic_load(&g_quit)) return NULL;
    if (id < g_want) run_tasks();
    atomic_fetch_sub(&g_active, 1);
  }
  return NULL;
}

void pf_parallel_for(int n, pf_task_fn fn, void *ctx) {
  int want = pf_get_threads() - 1;
  if (want > MAX_WORKERS) want = MAX_WORKERS;
  if (want > n - 1) want = n - 1;
  if (want <= 0 || pthread_mutex_trylock(&g_pool_mu) != 0) {
    for (int i = 0; i < n; i++) fn(ctx, i);
    return;
  }
  while (g_nthr < want) {
    g_start_gen[g_nthr] = atomic_load(&g_gen);
    if (pthread_create(&g_thr[g_nthr], NULL, worker, (void *)(intptr_t)g_nthr) != 0) break;
    g_nthr++;
  }
  if (want > g_nthr) want = g_nthr;
  g_fn = fn;
  g_ctx = ctx;
  g_ntasks = n;
  g_want = want;
  atomic_store(&g_next, 0);
  atomic_store(&g_active, g_nthr);
  pthread_mutex_lock(&g_wake_mu);
  atomic_fetch_add(&g_gen, 1);
  pthread_cond_broadcast(&g_wake);
  pthread_mutex_unlock(&g_wake_mu);
  run_tasks();
  for (int spin = 0; atomic_load(&g_active) > 0; spin++)
    if (spin > 1000) sched_yield();
  pthread_mutex_unlock(&g_pool_mu);
}

/* fork(): the child has none of the workers (only the forking thread
** survives), so the pool forgets them and starts new ones on demand. The
** pool lock is held across fork so no job is half run in the child. (glibc
** drops these handlers when the extension is unloaded.) */
static void pool_prepare(void) { pthread_mutex_lock(&g_pool_mu); }
static void pool_parent(void) { pthread_mutex_unlock(&g_pool_mu); }
static void pool_child(void) {
  g_nthr = 0;
  atomic_store(&g_active, 0);
  /* the parent's sleeping workers are counted in these; the child starts them afresh */
  pthread_mutex_init(&g_wake_mu, NULL);
  pthread_cond_init(&g_wake, NULL);
  pthread_mutex_unlock(&g_pool_mu);
}
__attribute__((constructor)) static void pool_init(void) { pthread_atfork(pool_prepare, pool_parent, pool_child); }

/* When the library is unloaded (the extension's last connection closed, or
** the process exits), stop the workers before their code goes away. */
__attribute__((destructor)) static void pool_stop(void) {
  pthread_mutex_lock(&g_pool_mu);
  if (g_nthr > 0) {
    atomic_store(&g_quit, 1);
    pthread_mutex_lock(&g_wake_mu);
    atomic_fetch_add(&g_gen, 1);
    pthread_cond_broadcast(&g_wake);
    pthread_mutex_unlock(&g_wake_mu);
    for (int i = 0; i < g_nthr; i++) pthread_join(g_thr[i], NULL);
    g_nthr = 0;
  }
  pthread_mutex_unlock(&g_pool_mu);
}
