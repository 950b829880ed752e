/*
** test_serve.c — many callers on many threads share the model's scheduler: each request gives what it gives
** alone (greedy, seeded sampling, beams, ensembles, streams, with and without a prefix), whatever else is in
** the batch; cancelling one ends only that one. The requests are made to meet: the scheduler is held while
** they queue and released when all are queued, so the test does not depend on the machine's speed.
*/
#include <math.h>
#include <pthread.h>
#include <unistd.h>

#include "internal.h"
#include "testlib.h"
#include "train.h"

#define NREQ 32
#define P_MAX 8

typedef struct job {
  const pf_model *m;
  int kind;                 /* 0 generate, 1 stream, 2 score (COMPLETION after the prompt) */
  pf_sample_params p;
  float *kv;                /* the prefix (NULL: none) */
  int P;
  const float *mkv[2];      /* an ensemble of two */
  int mlen[2], n_members;
  const char *prompt;
  int cancel_after;         /* > 0: the cancel callback says stop at its n-th call */
  int calls;
  /* what it gave */
  int rc;
  char *text;
  int n_tokens, finish;
  double lp[64];
  int n_lp;
} job;

static const char *PROMPTS[] = {"Once upon a time", "The little dog", "Lily and Tom went to the park",
                                "One day, a bird", "Sam had a red ball", "There was a big tree", "Mom said",
                                "The sun was hot"};

static const char *COMPLETION = " there was a little girl who liked to play in the garden.";

static int job_cancel(void *arg) {
  job *j = arg;
  return j->cancel_after > 0 && __atomic_add_fetch(&j->calls, 1, __ATOMIC_SEQ_CST) >= j->cancel_after;
}

static void job_item(job *j, pf_batch_item *it) {
  memset(it, 0, sizeof *it);
  it->prefix = j->kv;
  it->prefix_len = j->kv ? j->P : 0;
  it->prompt = j->prompt;
  it->prompt_len = strlen(j->prompt);
  if (j->n_members) {
    it->n_members = j->n_members;
    it->member_kv = j->mkv;
    it->member_len = j->mlen;
  }
}

static void job_run(job *j) {
  pf_err e = {0};
  pf_batch_item it;
  job_item(j, &it);
  j->calls = 0;
  free(j->text);
  j->text = NULL;
  j->n_lp = 0;
  if (j->kind == 2) {
    pf_prefix pre;
    memset(&pre, 0, sizeof pre);
    pre.kv = j->kv;
    pre.prefix_len = j->P;
    pre.n_members = j->n_members;
    pre.member_kv = (const float **)j->mkv;
    pre.member_len = j->mlen;
    if (j->n_members) pre.prefix_len = j->mlen[0] > j->mlen[1] ? j->mlen[0] : j->mlen[1];
    double *lp = NULL, nll;
    j->rc = pf_score_tokens(j->m, j->kv || j->n_members ? &pre : NULL, j->prompt, strlen(j->prompt), COMPLETION,
                            strlen(COMPLETION), 1, NULL, &lp, &j->n_tokens, &nll, job_cancel, j, &e);
    for (int i = 0; !j->rc && i < j->n_tokens && i < 64; i++) j->lp[j->n_lp++] = lp[i];
    free(lp);
    return;
  }
  if (j->kind == 0) {
    j->rc = pf_generate_batch(j->m, &it, 1, 1, &j->p, job_cancel, j, NULL, &e);
    if (!j->rc) { j->text = it.res.text; j->n_tokens = it.res.n_tokens; j->finish = it.res.finish; }
    return;
  }
  pf_stream *s = NULL;
  j->rc = pf_stream_new(j->m, &it, &j->p, &s, &e);
  size_t cap = 4096, len = 0;
  j->text = calloc(cap, 1);
  int done = 0;
  while (!j->rc && !done) {
    pf_stream_tok t;
    j->rc = pf_stream_next(s, job_cancel, j, &t, &done, &e);
    if (j->rc || done) break;
    if (j->n_lp < 64) j->lp[j->n_lp++] = t.logprob;
    if (len + t.piece_len + 1 < cap) { memcpy(j->text + len, t.piece, t.piece_len); len += t.piece_len; }
  }
  if (!j->rc && s) { j->n_tokens = pf_stream_result(s)->n_tokens; j->finish = pf_stream_result(s)->finish; }
  pf_stream_free(s);
}

static void *job_thread(void *arg) {
  job_run(arg);
  return NULL;
}

/* Requests of every kind: greedy, seeded sampling, beams, an ensemble, streams; most with a prefix of their
** own (1..8 positions), some without. */
static void make_jobs(const pf_model *m, job *jobs, int n) {
  const pf_hparams *hp = pf_model_hparams(m);
  size_t kvd = (size_t)hp->n_head_kv * hp->head_dim;
  for (int i = 0; i < n; i++) {
    job *j = &jobs[i];
    memset(j, 0, sizeof *j);
    j->m = m;
    pf_sample_params_default(&j->p);
    j->p.max_tokens = 12 + (i * 7) % 20;
    j->prompt = PROMPTS[i % 8];
    if (i % 5 != 4) {
      j->P = 1 + i % P_MAX;
      size_t nkv = (size_t)hp->n_layer * 2 * j->P * kvd;
      j->kv = malloc(sizeof(float) * nkv);
      for (size_t k = 0; k < nkv; k++) j->kv[k] = 0.5f * t_frand();
    }
    switch (i % 8) {
      case 1: j->p.temperature = 0.8f; j->p.seed = 100 + (uint64_t)i; break;   /* seeded sampling */
      case 2: j->p.beam_size = 3; break;
      case 3: j->kind = 1; break;                                             /* a stream */
      case 5: j->kind = 1; j->p.temperature = 0.7f; j->p.top_k = 20; j->p.seed = 7; break;
      case 6:                                                                   /* an ensemble of two */
        if (i >= 8 && jobs[i - 8].kv && jobs[i - 7].kv) {
          j->mkv[0] = jobs[i - 8].kv; j->mlen[0] = jobs[i - 8].P;
          j->mkv[1] = jobs[i - 7].kv; j->mlen[1] = jobs[i - 7].P;
          j->n_members = 2;
          if (i >= 24) j->kind = 2;                                             /* ... scoring */
        }
        break;
      case 7: j->kind = 2; break;                                             /* scoring a completion */
      default: break;
    }
  }
}

static int wait_queued(const pf_model *m, int want) {
  for (int i = 0; i < 600000; i++) {   /* a ceiling of 10 minutes, not a timing */
    pf_sched_info si;
    pf_sched_stats(m, &si);
    if (si.queued_rows + si.waiting >= want) return 1;   /* in the scheduler's queue, or waiting for the budget */
    usleep(1000);
  }
  return 0;
}

/* n requests at once, from n threads, released together; returns the peak rows of the batch */
static int run_together(const pf_model *m, job *jobs, int n) {
  pthread_t th[NREQ];
  pf_sched_hold(m, 1);
  for (int i = 0; i < n; i++) pthread_create(&th[i], NULL, job_thread, &jobs[i]);
  /* a stream queues at its first pf_stream_next; everything else at its call */
  int ok = wait_queued(m, n);
  /* a request to be cancelled is seen cancelling before anything runs (its caller checks while it waits),
  ** so the test does not race its end */
  for (int i = 0; i < n; i++)
    for (int k = 0; jobs[i].cancel_after > 0 && k < 600000 && __atomic_load_n(&jobs[i].calls, __ATOMIC_SEQ_CST) < jobs[i].cancel_after; k++)
      usleep(1000);
  pf_sched_info before;
  pf_sched_stats(m, &before);
  pf_sched_hold(m, 0);
  for (int i = 0; i < n; i++) pthread_join(th[i], NULL);
  pf_sched_info after;
  pf_sched_stats(m, &after);
  CHECK(ok, "the requests queued while the scheduler was held", "%d of %d", before.queued_rows, n);
  return after.peak_rows;
}

static int same(const job *a, const job *b, double *lp_diff) {
  *lp_diff = 0;
  if (a->rc != b->rc || (a->text == NULL) != (b->text == NULL)) return 0;
  if (a->text && strcmp(a->text, b->text)) return 0;
  if (a->n_tokens != b->n_tokens || a->finish != b->finish || a->n_lp != b->n_lp) return 0;
  for (int i = 0; i < a->n_lp; i++) if (fabs(a->lp[i] - b->lp[i]) > *lp_diff) *lp_diff = fabs(a->lp[i] - b->lp[i]);
  return *lp_diff <= 1e-4;
}

static void test_company(const pf_model *m) {
  static job solo[NREQ], many[NREQ];
  make_jobs(m, solo, NREQ);
  for (int i = 0; i < NREQ; i++) job_run(&solo[i]);
  int ok_solo = 1;
  for (int i = 0; i < NREQ; i++) ok_solo &= solo[i].rc == 0 && (solo[i].text || solo[i].kind == 2) && solo[i].n_tokens > 0;
  CHECK(ok_solo, "32 mixed requests run alone", "");
  for (int n = 1; n <= NREQ; n *= 2) {
    for (int i = 0; i < n; i++) {
      many[i] = solo[i];
      many[i].text = NULL;
    }
    int peak = run_together(m, many, n);
    int ok = 1, bad = -1;
    double worst = 0;
    for (int i = 0; i < n; i++) {
      double d;
      if (!same(&solo[i], &many[i], &d)) { ok = 0; if (bad < 0) bad = i; }
      if (d > worst) worst = d;
    }
    char name[256];
    snprintf(name, sizeof name, "%d concurrent requests (greedy, sampling, beams, ensembles, streams, scoring, prefixes or "
             "none) give their solo texts and log-probabilities, in one batch", n);
    CHECK(ok && peak >= n, name, "request %d: '%s' vs solo '%s'; peak rows %d; lp diff %g", bad,
          bad >= 0 && many[bad].text ? many[bad].text : "(none)", bad >= 0 && solo[bad].text ? solo[bad].text : "", peak,
          worst);
    for (int i = 0; i < n; i++) free(many[i].text);
  }
  /* one request is cancelled at its third check: only it ends, with PF_INTERRUPT */
  for (int i = 0; i < 8; i++) { many[i] = solo[i]; many[i].text = NULL; }
  /* it cannot end before its own thread checks: 1,000 tokens, far more than the others need (once they are
  ** done, only its own thread leads, and the leader checks every step) */
  many[2].cancel_after = 3;
  many[2].p.beam_size = 1;
  many[2].p.ignore_eos = 1;
  many[2].p.max_tokens = 1000;
  many[3].cancel_after = 3;   /* a stream: one check per pf_stream_next at least */
  many[3].p.ignore_eos = 1;
  run_together(m, many, 8);
  int ok = many[2].rc == PF_INTERRUPT && many[3].rc == PF_INTERRUPT;
  for (int i = 0; i < 8; i++) {
    double d;
    if (i != 2 && i != 3) ok &= same(&solo[i], &many[i], &d);
  }
  CHECK(ok, "a cancelled request ends alone (PF_INTERRUPT); the 6 others give their solo texts", "rc %d %d", many[2].rc,
        many[3].rc);
  for (int i = 0; i < 8; i++) free(many[i].text);
  for (int i = 0; i < NREQ; i++) { free(solo[i].text); free(solo[i].kv); }
}

/* A stream closed after two tokens while others run: they finish as alone; the scheduler holds no rows. */
static void test_stream_closed(const pf_model *m) {
  static job solo[4], many[4];
  make_jobs(m, solo, 4);
  for (int i = 0; i < 4; i++) job_run(&solo[i]);
  for (int i = 0; i < 4; i++) { many[i] = solo[i]; many[i].text = NULL; }
  pf_batch_item it;
  job_item(&solo[3], &it);
  pf_err e;
  pf_stream *s = NULL;
  int rc = pf_stream_new(m, &it, &solo[3].p, &s, &e), done = 0;
  for (int k = 0; k < 2 && !rc; k++) {
    pf_stream_tok t;
    rc = pf_stream_next(s, NULL, NULL, &t, &done, &e);
  }
  pthread_t th[3];
  for (int i = 0; i < 3; i++) pthread_create(&th[i], NULL, job_thread, &many[i]);
  pf_stream_free(s);   /* closed early, while the others may be running */
  for (int i = 0; i < 3; i++) pthread_join(th[i], NULL);
  int ok = !rc;
  for (int i = 0; i < 3; i++) {
    double d;
    ok &= same(&solo[i], &many[i], &d);
  }
  pf_sched_info si;
  pf_sched_stats(m, &si);
  CHECK(ok && si.rows == 0 && si.queued_rows == 0 && si.requests == 0,
        "a stream closed early leaves the batch; the requests beside it give their solo texts", "rows %d queued %d", si.rows,
        si.queued_rows);
  for (int i = 0; i < 4; i++) { free(solo[i].text); free(many[i].text); free(solo[i].kv); }
}

/* Scoring through the batch gives the log-probabilities of the training forward (the exact reference), with
** and without a prefix. */
static void test_score_exact(const pf_model *m) {
  const pf_hparams *hp = pf_model_hparams(m);
  int P = 5, V = hp->n_vocab, ok = 1;
  size_t nkv = (size_t)hp->n_layer * 2 * P * hp->n_head_kv * hp->head_dim;
  float *kv = malloc(sizeof(float) * nkv);
  for (size_t k = 0; k < nkv; k++) kv[k] = 0.5f * t_frand();
  double worst = 0;
  for (int with = 0; with < 2; with++) {
    pf_prefix pre;
    memset(&pre, 0, sizeof pre);
    pre.kv = kv;
    pre.prefix_len = P;
    pf_err e;
    int *ids = NULL, *pid = NULL, nt = 0, np = 0;
    double *lp = NULL, nll;
    const char *prompt = "The little dog";
    ok &= pf_score_tokens(m, with ? &pre : NULL, prompt, strlen(prompt), COMPLETION, strlen(COMPLETION), 1, &ids, &lp, &nt,
                          &nll, NULL, NULL, &e) == PF_OK;
    ok &= pf_tokenize(m, prompt, strlen(prompt), 1, &pid, &np, &e) == PF_OK;
    if (!ok) break;
    int T = np + nt - 1, *tok = malloc(sizeof(int) * (size_t)T), *tgt = malloc(sizeof(int) * (size_t)T);
    for (int i = 0; i < T; i++) {
      tok[i] = i < np ? pid[i] : ids[i - np];
      tgt[i] = i >= np - 1 ? ids[i - np + 1] : -1;
    }
    float *lg = malloc(sizeof(float) * (size_t)T * V);
    pf_tws *w = pf_tws_new();
    pf_tbatch b = {1, &T, tok, tgt};
    pf_prefix_in pin = {with ? P : 0, with ? kv : NULL, NULL, 0, NULL, NULL};
    ok &= pf_train_logits(m, w, &b, &pin, lg, &e) == PF_OK;
    for (int i = np - 1; ok && i < T; i++) {
      const float *l = lg + (size_t)i * V;
      double mx = l[0], se = 0;
      for (int v = 1; v < V; v++) mx = fmax(mx, l[v]);
      for (int v = 0; v < V; v++) se += exp(l[v] - mx);
      double d = fabs(lp[i - np + 1] - (l[tgt[i]] - mx - log(se)));
      if (d > worst) worst = d;
    }
    pf_tws_free(w);
    free(lg); free(tok); free(tgt); free(ids); free(pid); free(lp);
  }
  free(kv);
  CHECK(ok && worst <= 1e-4, "scoring in the batch = the training forward's log-probabilities (1e-4), with a prefix and without",
        "worst %g", worst);
}

/* Prefill in chunks across steps (a small token budget) gives the same texts as in one pass. */
static void test_chunked_prefill(const pf_model *m) {
  static job a[8], b[8];
  make_jobs(m, a, 8);
  for (int i = 0; i < 8; i++) job_run(&a[i]);
  int old_chunk = pf_prefill_chunk, old_budget = pf_step_tokens;
  pf_prefill_chunk = 3;
  pf_step_tokens = 5;
  for (int i = 0; i < 8; i++) { b[i] = a[i]; b[i].text = NULL; }
  run_together(m, b, 8);
  pf_prefill_chunk = old_chunk;
  pf_step_tokens = old_budget;
  int ok = 1;
  double worst = 0;
  for (int i = 0; i < 8; i++) {
    double d;
    ok &= same(&a[i], &b[i], &d);
    if (d > worst) worst = d;
  }
  CHECK(ok, "prompts prefilled 3 tokens at a time, 5 per step, while others decode: the same texts", "lp diff %g", worst);
  for (int i = 0; i < 8; i++) { free(a[i].text); free(b[i].text); free(a[i].kv); }
}

/* A budget that holds about two requests' caches: the 8 run a few at a time, in order, and give their solo
** texts; one that can never fit fails at once, naming the budget. */
static void test_budget(pf_model *m) {
  static job a[8], b[8];
  make_jobs(m, a, 8);
  for (int i = 0; i < 8; i++) { a[i].p.beam_size = 1; a[i].n_members = 0; }   /* one cache each */
  for (int i = 0; i < 8; i++) job_run(&a[i]);
  const pf_hparams *hp = pf_model_hparams(m);
  size_t per_pos = 2 * (size_t)hp->n_layer * (size_t)hp->n_head_kv * hp->head_dim * sizeof(float);
  pf_err e;
  pf_sched_set_budget(m, per_pos * 100, &e);   /* a request here needs 20..50 positions */
  for (int i = 0; i < 8; i++) { b[i] = a[i]; b[i].text = NULL; }
  run_together(m, b, 8);
  int ok = 1;
  double d;
  for (int i = 0; i < 8; i++) ok &= same(&a[i], &b[i], &d);
  pf_sched_info si;
  pf_sched_stats(m, &si);
  CHECK(ok && si.used == 0 && si.waiting == 0, "8 requests under a budget of 100 positions: a few at a time, each its solo text",
        "used %zu waiting %d", si.used, si.waiting);
  pf_sample_params p;
  pf_sample_params_default(&p);
  p.max_tokens = 200;
  pf_gen_result r;
  int rc = pf_generate(m, NULL, 0, "Once upon a time", 16, &p, NULL, NULL, &r, &e);
  CHECK(rc == PF_TOOBIG && t_contains(e.msg, "needs") && t_contains(e.msg, "kv_budget_mb"),
        "a request bigger than the whole budget fails at once, naming it", "rc %d: %s", rc, e.msg);
  pf_sched_set_budget(m, 0, &e);
  for (int i = 0; i < 8; i++) { free(a[i].text); free(b[i].text); free(a[i].kv); }
}

int main(void) {
  pf_err e;
  pf_model *m = pf_model_load(t_model_path("stories260K.gguf"), &e);
  CHECK(m != NULL, "load stories260K.gguf", "%s", e.msg);
  if (!m) return 1;
  test_company(m);
  test_stream_closed(m);
  test_score_exact(m);
  test_chunked_prefill(m);
  test_budget(m);
  pf_model_free(m);
  return t_failed ? 1 : 0;
}
