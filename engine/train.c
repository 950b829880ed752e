/*
** train.c — the prefix-tuning loop.
**
**   tokenize pairs (prompt is context, completion + EOS is the target)
**   split off validation rows (val_fraction or a given set)
**   for each step: kv = reparam(params); loss, dkv = step(batch, kv);
**                  dparams = reparam_backward(dkv); clip; AdamW; schedule
**   check every eval_every steps (default: whole epochs, at least 5 steps
**   with validation rows, 25 without): the validation loss (keep the best
**   prefix by it), or without validation rows the mean training loss since
**   the last check (the plateau rule); stop after `patience` checks without
**   an improvement of min_delta; encode the best (or last) keys/values.
**
** Same rows, options, seed and thread count give the same bytes.
*/
#include "dp.h"
#include "internal.h"
#include "train.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>



void pf_train_params_default(pf_train_params *p) {
  memset(p, 0, sizeof *p);
  p->prefix_len = 0;     /* 0 / -1: not given; pf_train settles them (init_prefix's, or the defaults) */
  p->mode = -1;
  p->mid_dim = -1;
  p->lr = 0;             /* 0: by mode, see pf_train_default_lr */
  p->weight_decay = 0.0f;
  p->warmup_steps = 0;
  p->lr_schedule = PF_SCHED_LINEAR;
  p->grad_clip = 1.0f;
  p->batch_size = 8;
  p->seed = 42;
  p->max_seq_len = 0;   /* 0: min(256, the model's context - prefix_len) */
  p->dtype = PF_DTYPE_F32;
  p->add_eos = 1;
  p->dp_max_grad_norm = 1.0f;
  p->dp_noise_multiplier = -1;
  p->dp_noise_seed = UINT64_MAX;
  p->patience = -1;
  p->min_delta = -1;
}

/* ------------------------------------------------------------- strings */

typedef struct sbuf { char *p; size_t n, cap; int oom; } sbuf;
static void sb_printf(sbuf *s, const char *fmt, ...) {
  if (s->oom) return;
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(s->p ? s->p + s->n : NULL, s->p ? s->cap - s->n : 0, fmt, ap);
    va_end(ap);
    if (k < 0) { s->oom = 1; return; }
    if (s->p && (size_t)k < s->cap - s->n) { s->n += (size_t)k; return; }
    size_t nc = (s->cap + (size_t)k + 1) * 2;
    char *np = realloc(s->p, nc);
    if (!np) { s->oom = 1; return; }
    s->p = np; s->cap = nc;
  }
}
static void sb_json_str(sbuf *s, const char *t) {
  sb_printf(s, "\"");
  for (; t && *t; t++) {
    unsigned char c = (unsigned char)*t;
    if (c == '"' || c == '\\') sb_printf(s, "\\%c", c);
    else if (c < 0x20) sb_printf(s, "\\u%04x", c);
    else sb_printf(s, "%c", c);
  }
  sb_printf(s, "\"");
}

/* ------------------------------------------------------------ pairs */

/* Tokenize a pair as training sees it: BOS + prompt, then the completion (no space prefix, so generation
** reproduces it exactly) and EOS. Returns tokens and the index of the first completion token. */
static int pf_pair_tokens(const pf_model *m, const char *prompt, size_t plen, const char *completion, size_t clen, int add_eos,
                   int **ids, int *n, int *n_prompt, pf_err *err) {
  int *a = NULL, na = 0, *c = NULL, nc = 0, rc;
  *ids = NULL;
  int f = pf_tok_flags(m, 1, 1) & ~PF_TOKF_EOS;   /* EOS, if any, goes after the completion (add_eos) */
  if ((rc = pf_tokenize_ex(m, prompt, plen, f, &a, &na, err))) return rc;
  if ((rc = pf_tokenize_ex(m, completion, clen, PF_TOKF_SPECIAL, &c, &nc, err))) { free(a); return rc; }
  int eos = add_eos && m->vocab.eos >= 0;
  int *all = malloc(sizeof(int) * (size_t)(na + nc + eos + 1));
  if (!all) { free(a); free(c); return pf_seterr(err, PF_NOMEM, "out of memory tokenizing"); }
  memcpy(all, a, sizeof(int) * (size_t)na);
  memcpy(all + na, c, sizeof(int) * (size_t)nc);
  if (eos) all[na + nc] = m->vocab.eos;
  free(a);
  free(c);
  *ids = all;
  *n = na + nc + eos;
  *n_prompt = na;
  return PF_OK;
}

typedef struct tseq { int *tok; int *tgt; int len; int n_tgt; } tseq;

/* Build one training sequence: E placeholder slots (embedding mode), the
** pair's tokens, and next-token targets on the completion. */
static int make_seq(const pf_model *m, const pf_example *ex, int row, int E, int max_len, const char *limit, int add_eos,
                    tseq *s, int *truncated, pf_err *err) {
  int *ids = NULL, n = 0, np = 0, rc;
  if ((rc = pf_pair_tokens(m, ex->prompt, ex->prompt_len, ex->completion, ex->completion_len, add_eos, &ids, &n, &np,
                           err))) {
    char msg[PF_ERRMAX];
    snprintf(msg, sizeof msg, "%s", err ? err->msg : "");
    return pf_seterr(err, rc, "row %d: %s", row, msg);
  }
  if (np >= max_len) {
    free(ids);
    return pf_seterr(err, PF_TOOBIG, "row %d: the prompt is %d tokens; %s", row, np, limit);
  }
  if (n > max_len) { n = max_len; (*truncated)++; }
  s->len = E + n;
  s->tok = malloc(sizeof(int) * (size_t)s->len);
  s->tgt = malloc(sizeof(int) * (size_t)s->len);
  if (!s->tok || !s->tgt) {
    free(ids);
    free(s->tok);
    free(s->tgt);
    s->tok = s->tgt = NULL;
    return pf_seterr(err, PF_NOMEM, "out of memory");
  }
  s->n_tgt = 0;
  for (int i = 0; i < s->len; i++) {
    int j = i - E;   /* index into ids */
    s->tok[i] = j < 0 ? 0 : ids[j];
    s->tgt[i] = j >= 0 && j + 1 < n && j + 1 >= np ? ids[j + 1] : -1;
    s->n_tgt += s->tgt[i] >= 0;
  }
  free(ids);
  return PF_OK;
}

static void free_seqs(tseq *s, int n) {
  if (!s) return;
  for (int i = 0; i < n; i++) { free(s[i].tok); free(s[i].tgt); }
  free(s);
}

/* Build a batch from sequences idx[0..n). Buffers are caller's, big enough. */
static void gather(const tseq *seqs, const int *idx, int n, int *len, int *tok, int *tgt, pf_tbatch *b) {
  int o = 0;
  for (int i = 0; i < n; i++) {
    const tseq *s = &seqs[idx[i]];
    len[i] = s->len;
    memcpy(tok + o, s->tok, sizeof(int) * (size_t)s->len);
    memcpy(tgt + o, s->tgt, sizeof(int) * (size_t)s->len);
    o += s->len;
  }
  b->n_seq = n;
  b->len = len;
  b->tokens = tok;
  b->targets = tgt;
}


/* the model's own keys/values for the first P tokens of text */
static int text_kv(const pf_model *m, const char *text, int P, float *kv, float *emb, pf_err *err) {
  int *ids, n, rc;
  if ((rc = pf_tokenize_ex(m, text, strlen(text), pf_tok_flags(m, 1, 1) & ~PF_TOKF_EOS, &ids, &n, err))) return rc;
  if (n < P) {
    free(ids);
    return pf_seterr(err, PF_ERR, "init_text is %d tokens; it needs at least prefix_len (%d)", n, P);
  }
  const pf_hparams *hp = &m->hp;
  if (emb)
    for (int p = 0; p < P; p++) pf_wt_row(&m->tok_embd, ids[p], emb + (size_t)p * hp->n_embd);
  if (kv) {
    pf_seq *s = pf_seq_new(m, P, err);
    pf_work *w = pf_work_new();
    float *lg = malloc(sizeof(float) * hp->n_vocab);
    rc = !s || !w || !lg ? pf_seterr(err, PF_NOMEM, "out of memory") : pf_forward(m, w, &s, &P, 1, ids, lg, 0, err);
    if (!rc) {
      size_t kvd = (size_t)s->kv_dim;
      for (int l = 0; l < hp->n_layer; l++) {
        memcpy(kv + (size_t)l * 2 * P * kvd, s->k + (size_t)l * s->n_ctx * kvd, sizeof(float) * P * kvd);
        memcpy(kv + ((size_t)l * 2 + 1) * P * kvd, s->v + (size_t)l * s->n_ctx * kvd, sizeof(float) * P * kvd);
      }
    }
    free(lg);
    pf_work_free(w);
    pf_seq_free(s);
  }
  free(ids);
  return rc;
}

/* shuffle with a seeded generator */
static uint64_t mix(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
static void shuffle(int *a, int n, uint64_t *s) {
  for (int i = n - 1; i > 0; i--) {
    int j = (int)(mix(s) % (uint64_t)(i + 1)), t = a[i];
    a[i] = a[j];
    a[j] = t;
  }
}

/* Progress on stderr: on a terminal a bar redrawn in place (at most 10 times a second); otherwise (a log
** file, a pipe) one line per tenth of the run, no carriage returns. */
static void draw_bar(const pf_progress *pr, int tty) {
  char val[64] = "";
  if (!isnan(pr->val_loss)) snprintf(val, sizeof val, " val %.4f", pr->val_loss);
  if (pr->done && pr->stop_reason && strcmp(pr->stop_reason, "steps"))   /* why it ended before total_steps */
    snprintf(val + strlen(val), sizeof val - strlen(val), " stopped: %s", pr->stop_reason);
  if (!tty) {
    fprintf(stderr, "prefix_train: step %d/%d (%d%%) epoch %d loss %.4f%s %.0f tok/s eta %.0fs\n", pr->step, pr->total_steps,
            pr->total_steps ? (int)(100.0 * pr->step / pr->total_steps) : 100, pr->epoch, pr->train_loss, val, pr->tokens_per_s, pr->eta_s);
    fflush(stderr);
    return;
  }
  int width = 24, fill = pr->total_steps ? (int)((double)pr->step * width / pr->total_steps) : 0;
  char bar[32];
  for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
  bar[width] = 0;
  fprintf(stderr, "\rprefix_train [%s] step %d/%d epoch %d loss %.4f%s %.0f tok/s eta %.0fs   ", bar, pr->step,
          pr->total_steps, pr->epoch, pr->train_loss, val, pr->tokens_per_s, pr->eta_s);
  if (pr->done) fprintf(stderr, "\n");
  fflush(stderr);
}

/* validation loss over a set of sequences (mean nats per target token) */
static int eval_loss(const pf_model *m, pf_tws *w, const tseq *seqs, int n, int bs, const pf_prefix_in *pin,
                     int *len, int *tok, int *tgt, int *idx, double *out, pf_cancel_fn cancel, void *carg, pf_err *err) {
  double sum = 0;
  long cnt = 0;
  for (int i = 0; i < n; i += bs) {
    int k = n - i < bs ? n - i : bs;
    for (int j = 0; j < k; j++) idx[j] = i + j;
    pf_tbatch b;
    gather(seqs, idx, k, len, tok, tgt, &b);
    double ls;
    int nt, rc = pf_train_step(m, w, &b, pin, 1.0f, 0, &ls, &nt, cancel, carg, err);
    if (rc) return rc;
    sum += ls;
    cnt += nt;
  }
  *out = cnt ? sum / (double)cnt : NAN;
  return PF_OK;
}

/* Default learning rates, found by experiment (docs/training.md): the
** reparameterization MLP wants a small one, a directly learned table or
** learned embeddings a large one. */
static float pf_train_default_lr(const pf_train_params *p) {
  return p->mode == PF_MODE_PREFIX && p->mid_dim > 0 ? 3e-3f : 1e-1f;
}

static const char *mode_name(int m) { return m == PF_MODE_EMBEDDING ? "embedding" : "prefix"; }

/* A warm start: the decoded init_prefix and its training state, if any. */
#define STATE_HEADER 56u
typedef struct warm {
  pf_prefix ip;
  const uint8_t *st;      /* the state section, or NULL */
  size_t st_len;
  uint32_t mode, P, mid, epoch, pos, n_order, has_base;
  uint64_t n, step, rng;
} warm;

static uint32_t rd32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t rd64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

/* Decode init_prefix and settle prefix_len, mode and mid_dim from it where they were left to it (0 / -1). */
static int warm_open(const pf_model *m, pf_train_params *pd, warm *wm, pf_err *err) {
  memset(wm, 0, sizeof *wm);
  pf_err e;
  if (pf_prefix_decode(pd->init_prefix, pd->init_prefix_len, &wm->ip, &e) || pf_prefix_check_model(&wm->ip, m, NULL, &e))
    return pf_seterr(err, e.code, "init_prefix: %.480s", e.msg);
  if (wm->ip.n_members) return pf_seterr(err, PF_ERR, "init_prefix is an ensemble of %d prefix%s: give one prefix", wm->ip.n_members, wm->ip.n_members == 1 ? "" : "es");
  if (pd->init_text) return pf_seterr(err, PF_ERR, "give init_text or init_prefix, not both");
  int P = wm->ip.prefix_len, mode = PF_MODE_PREFIX, mid = -1;
  if (wm->ip.state_len) {
    const uint8_t *s = pd->init_prefix + wm->ip.state_off;
    size_t n = wm->ip.state_len;
    if (n < STATE_HEADER || rd32(s) != 1) return pf_seterr(err, PF_ERR, "init_prefix: its training state is not of version 1 (%zu bytes)", n);
    wm->st = s;
    wm->st_len = n;
    wm->mode = rd32(s + 4); wm->P = rd32(s + 8); wm->mid = rd32(s + 12);
    wm->n = rd64(s + 16); wm->step = rd64(s + 24); wm->rng = rd64(s + 32);
    wm->epoch = rd32(s + 40); wm->pos = rd32(s + 44); wm->n_order = rd32(s + 48); wm->has_base = rd32(s + 52);
    /* each field against what a training run can write; the first that cannot be is named */
    const char *dm = "init_prefix: its training state is damaged:";
    if (wm->mode > 1) return pf_seterr(err, PF_ERR, "%s mode is %u (0 prefix, 1 embedding)", dm, wm->mode);
    if ((int)wm->P != P) return pf_seterr(err, PF_ERR, "%s prefix_len is %u; the prefix has %d", dm, wm->P, P);
    if (wm->mid > PF_MID_DIM_MAX) return pf_seterr(err, PF_ERR, "%s mid_dim is %u (at most %d)", dm, wm->mid, PF_MID_DIM_MAX);
    if (wm->has_base > 1) return pf_seterr(err, PF_ERR, "%s has_base is %u (0 or 1)", dm, wm->has_base);
    if (wm->step > (1ull << 40)) return pf_seterr(err, PF_ERR, "%s steps taken is %llu (at most 2^40)", dm, (unsigned long long)wm->step);
    if (wm->epoch > (1u << 30)) return pf_seterr(err, PF_ERR, "%s epoch is %u (at most 2^30)", dm, wm->epoch);
    if (wm->pos > wm->n_order)   /* a batch takes at least one row: an epoch has at most as many batches as rows */
      return pf_seterr(err, PF_ERR, "%s batches taken in its epoch is %u, more than its %u rows", dm, wm->pos, wm->n_order);
    mode = (int)wm->mode;
    mid = (int)wm->mid;
  }
  if (pd->prefix_len == 0) pd->prefix_len = P;
  else if (pd->prefix_len != P)
    return pf_seterr(err, PF_ERR, "prefix_len %d differs from init_prefix's %d (leave prefix_len out to continue it)", pd->prefix_len, P);
  if (pd->mode < 0) pd->mode = mode;
  else if (wm->st && pd->mode != mode)
    return pf_seterr(err, PF_ERR, "mode '%s' differs from init_prefix's training state ('%s')", pd->mode ? "embedding" : "prefix", mode ? "embedding" : "prefix");
  if (pd->mode == PF_MODE_EMBEDDING && !wm->st)
    return pf_seterr(err, PF_ERR, "mode 'embedding' can continue only from a BLOB trained with save_state: a prefix BLOB "
                     "holds keys and values, not the embeddings");
  if (pd->mid_dim < 0) pd->mid_dim = mid >= 0 ? mid : PF_DEFAULT_MID_DIM;
  else if (wm->st && pd->mode == PF_MODE_PREFIX && pd->mid_dim != mid)
    return pf_seterr(err, PF_ERR, "mid_dim %d differs from init_prefix's training state (%d)", pd->mid_dim, mid);
  return PF_OK;
}

/* Restore parameters and moments from the state; check that it fits pp. */
static int warm_restore(const warm *wm, pf_pparams *pp, pf_err *err) {
  size_t kvn = (size_t)wm->ip.n_layer * 2 * wm->P * wm->ip.n_head_kv * wm->ip.head_dim;   /* the base's floats */
  size_t nf = 3 * (size_t)wm->n + (wm->has_base ? kvn : 0);
  if (wm->n != pf_pparams_count(pp) || wm->st_len != STATE_HEADER + 4 * (size_t)wm->n_order + 4 * nf)
    return pf_seterr(err, PF_ERR, "init_prefix: its training state does not fit: it says %llu parameters and %u rows in "
                     "its data order (%zu bytes with its header and moments), and is %zu bytes; this prefix has %zu parameters",
                     (unsigned long long)wm->n, wm->n_order, STATE_HEADER + 4 * (size_t)wm->n_order + 4 * nf, wm->st_len,
                     pf_pparams_count(pp));
  const uint8_t *f = wm->st + STATE_HEADER + 4 * (size_t)wm->n_order;
  float *buf = malloc(sizeof(float) * (nf ? nf : 1));
  if (!buf) return pf_seterr(err, PF_NOMEM, "out of memory");
  memcpy(buf, f, sizeof(float) * nf);
  for (size_t i = 0; i < nf; i++)
    if (!isfinite(buf[i]) || (i >= 2 * wm->n && i < 3 * wm->n && buf[i] < 0)) {
      free(buf);
      return pf_seterr(err, PF_ERR, "init_prefix: its training state holds an invalid value at index %zu", i);
    }
  int rc = pf_pparams_set_state(pp, buf, (int)wm->has_base, err);
  free(buf);
  return rc;
}

/* One training run, in the phases its steps go through: settle the options, tokenize and split the rows,
** fix the schedule, allocate, initialise, resume a continued state, the loop (a step, a validation, a report),
** then the metadata and the BLOB. Every phase reads and writes this state; run_free releases it. */
typedef struct trun {
  const pf_model *m;
  pf_train_params p;        /* the options, defaults resolved */
  const warm *wm;           /* a warm start, or NULL */
  int P, E, KP;             /* prefix positions; learned embeddings (embedding mode); key/value positions */
  char limit[200];          /* what bounds a sequence, for the message of a prompt that does not fit */
  tseq *tr, *va;
  int n_tr, n_va, truncated, max_len;
  long tgt_total;
  /* the schedule */
  int bs, steps_per_epoch, auto_epochs, total, eval_every, n_epochs, log_every;
  float base_lr;
  /* the parameters and buffers */
  size_t kvn;
  pf_pparams *pp;
  pf_tws *w;
  float *best_kv;
  int *len, *tok, *tgt, *order, *idx;
  const char *init_kind;
  pf_prefix_in pin, pin_eval;
  /* the loop */
  double best, last_val, last_train, t0, win_loss, last_draw;
  long tokens_done, win_tok, step0;   /* step0: optimizer steps before this run (a continued state) */
  int best_step, bad_evals, step, have_best, pos_in_epoch, epoch, stopped_early;
  double ref, chk_loss;               /* the loss an improvement must beat; the plateau rule's window */
  long chk_tok;
  int plateau;                        /* no validation rows: checks on the training loss */
  int auto_patience;                  /* patience not given */
  const char *stop_reason;            /* "steps", or the check that ended the run: "validation", "plateau" */
  int tty, show, bar_open;            /* bar_open: a terminal bar is on the screen without its newline */
  uint64_t rs;
  sbuf hist, vhist, meta;
  /* differential privacy (dp.h): the starting prefix's runs then this one's, the noise, the sampled rows */
  pf_dp_run dp_runs[PF_DP_RUNS_MAX];
  int dp_n;
  double dp_delta, dp_order;
  pf_csprng dp_rng;
  float *dp_sum;
  int *dp_rows;
} trun;

/* DP's options, and what may come with them: validation rows that are not private, a starting prefix whose
** own privacy spending is on record. */
static int run_settle_dp(trun *r, int have_val, pf_err *err) {
  const pf_train_params *p = &r->p;
  if (!p->dp) return PF_OK;
  int has_eps = p->dp_epsilon != 0, has_sigma = p->dp_noise_multiplier != -1;
  if (!(p->dp_max_grad_norm > 0)) return pf_seterr(err, PF_ERR, "dp: max_grad_norm must be > 0, got %g", p->dp_max_grad_norm);
  if (has_eps && has_sigma) return pf_seterr(err, PF_ERR, "dp: give epsilon or noise_multiplier, not both");
  if (!has_eps && !has_sigma) return pf_seterr(err, PF_ERR, "dp: give epsilon (the privacy training may spend) or noise_multiplier");
  if (has_eps && !(p->dp_epsilon > 0 && isfinite(p->dp_epsilon))) return pf_seterr(err, PF_ERR, "dp: epsilon must be a positive number, got %g", p->dp_epsilon);
  if (has_sigma && !(p->dp_noise_multiplier >= 0 && isfinite(p->dp_noise_multiplier)))
    return pf_seterr(err, PF_ERR, "dp: noise_multiplier must be a number >= 0, got %g", p->dp_noise_multiplier);
  if (p->dp_delta != 0 && !(p->dp_delta > 0 && p->dp_delta < 1)) return pf_seterr(err, PF_ERR, "dp: delta must be between 0 and 1 (exclusive), got %g", p->dp_delta);
  if (p->val_fraction > 0)
    return pf_seterr(err, PF_ERR, "dp: val_fraction holds out private rows and picks the prefix by their loss, which the "
                     "accountant does not count: give val_query (rows that need no protection) or no validation");
  if (!have_val && !r->auto_patience && p->patience > 0)
    return pf_seterr(err, PF_ERR, "dp: patience without val_query would stop on the training loss of the private rows (the "
                     "plateau rule), which the accountant does not count: give val_query or leave patience out");
  if (r->wm && (r->dp_n = pf_dp_runs_parse(r->wm->ip.meta, r->dp_runs, PF_DP_RUNS_MAX - 1)) == -2)
    return pf_seterr(err, PF_TOOBIG, "dp: init_prefix records more than %d dp runs; the accountant counts at most %d "
                     "before this one", PF_DP_RUNS_MAX - 1, PF_DP_RUNS_MAX - 1);
  if (r->wm && r->dp_n < 0)
    return pf_seterr(err, PF_ERR, "dp: init_prefix was trained without dp, so the rows it saw are not protected and its "
                     "spending is unknown: start from a prefix trained with dp, from init_text, or from random");
  if (r->dp_n < 0) r->dp_n = 0;
  return PF_OK;
}

/* Check the options against the model and settle max_seq_len (and the message of a prompt that does not fit). */
static int run_settle(trun *r, const pf_train_params *p, int n_train, int have_val, pf_err *err) {
  const pf_model *m = r->m;
  const pf_hparams *hp = &m->hp;
  int rc, P = p->prefix_len;
  if (!m->has_weights) return pf_seterr(err, PF_ERR, "the model has no weights (vocab-only GGUF): it cannot be trained");
  if (n_train <= 0) return pf_seterr(err, PF_ERR, "no training rows (the query returned no rows)");
  if ((rc = pf_prefix_len_check(m, P, err))) return rc;
  /* init_text is kept in the BLOB's metadata (JSON-escaped: up to 6 bytes per byte): refuse before training */
  if (p->init_text && strlen(p->init_text) > PF_INIT_TEXT_MAX)
    return pf_seterr(err, PF_TOOBIG, "init_text is %zu bytes; at most %d (it is kept in the prefix's metadata; only its "
                     "first prefix_len tokens are used)", strlen(p->init_text), PF_INIT_TEXT_MAX);
  r->p = *p;
  r->P = P;
  r->E = p->mode == PF_MODE_EMBEDDING ? P : 0;
  r->KP = r->E ? 0 : P;
  pf_train_params *pd = &r->p;
  if (pd->max_seq_len == 0) {
    pd->max_seq_len = hp->n_ctx - P < 256 ? hp->n_ctx - P : 256;
    if (pd->max_seq_len < 256)
      snprintf(r->limit, sizeof r->limit, "prefix_len (%d) leaves %d of the model's context of %d for prompt and "
               "completion (lower prefix_len or shorten the prompt)", P, pd->max_seq_len, hp->n_ctx);
    else
      snprintf(r->limit, sizeof r->limit, "max_seq_len is %d by default (raise max_seq_len, up to %d with prefix_len "
               "%d, or shorten the prompt)", pd->max_seq_len, hp->n_ctx - P, P);
  } else
    snprintf(r->limit, sizeof r->limit, "max_seq_len is %d (raise max_seq_len or shorten the prompt)", pd->max_seq_len);
  if (P + pd->max_seq_len > hp->n_ctx)
    return pf_seterr(err, PF_TOOBIG, "prefix_len (%d) + max_seq_len (%d) = %d exceeds the model's context of %d", P,
                     pd->max_seq_len, P + pd->max_seq_len, hp->n_ctx);
  if (pd->epochs > 0 && pd->max_steps > 0) return pf_seterr(err, PF_ERR, "give epochs or max_steps, not both");
  if (have_val && pd->val_fraction > 0) return pf_seterr(err, PF_ERR, "give val_fraction or val_query, not both");
  r->auto_patience = pd->patience < 0;   /* its default is settled with the schedule (run_schedule) */
  if (!(pd->min_delta < 1)) return pf_seterr(err, PF_ERR, "min_delta must be >= 0 and < 1 (a share of the best loss), got %g", pd->min_delta);
  return run_settle_dp(r, have_val, err);
}

/* Tokenize n rows into *out (rows numbered from 1 as the user counts them); what names them in a message. */
static int run_tokenize(trun *r, const pf_example *ex, int n, const char *what, tseq **out, pf_err *err) {
  int rc = PF_OK;
  *out = calloc((size_t)(n ? n : 1), sizeof **out);
  if (!*out) return pf_seterr(err, PF_NOMEM, "out of memory");
  for (int i = 0; i < n && !rc; i++)
    if ((rc = make_seq(r->m, &ex[i], i + 1, r->E, r->p.max_seq_len, r->limit, r->p.add_eos, &(*out)[i], &r->truncated,
                       err)) && *what) {
      char msg[PF_ERRMAX];
      snprintf(msg, sizeof msg, "%s %.400s", what, err ? err->msg : "");
      pf_seterr(err, rc, "%s", msg);
    }
  if (rc) { free_seqs(*out, n); *out = NULL; }
  return rc;
}

/* The training and validation sequences: the validation rows given, a held-out share (val_fraction), or none. */
static int run_data(trun *r, const pf_example *train, int n_train, const pf_example *val, int n_val, pf_err *err) {
  tseq *all = NULL;
  int rc = run_tokenize(r, train, n_train, "", &all, err);
  if (!rc && val) {
    if (!(rc = run_tokenize(r, val, n_val, "validation", &r->va, err))) r->n_va = n_val;
  } else if (!rc && r->p.val_fraction > 0) {
    int nv = (int)lround(r->p.val_fraction * n_train);
    if (nv < 1) nv = 1;
    if (nv >= n_train) rc = pf_seterr(err, PF_ERR, "val_fraction %g of %d rows leaves no training rows", r->p.val_fraction, n_train);
    int *perm = rc ? NULL : malloc(sizeof(int) * (size_t)n_train);
    tseq *tr = rc ? NULL : calloc((size_t)(n_train - nv), sizeof *tr), *va = rc ? NULL : calloc((size_t)nv, sizeof *va);
    if (!rc && (!perm || !tr || !va)) rc = pf_seterr(err, PF_NOMEM, "out of memory");
    if (!rc) {
      for (int i = 0; i < n_train; i++) perm[i] = i;
      uint64_t s = r->p.seed ^ 0x5EEDull;
      shuffle(perm, n_train, &s);
      for (int i = 0; i < n_train; i++) {
        if (i < nv) va[r->n_va++] = all[perm[i]];
        else tr[r->n_tr++] = all[perm[i]];
      }
      free(all);   /* the sequences moved into tr/va */
      all = NULL;
      r->tr = tr;
      r->va = va;
    } else {
      free(tr);
      free(va);
    }
    free(perm);
  }
  if (all && !rc) { r->tr = all; r->n_tr = n_train; all = NULL; }
  free_seqs(all, n_train);
  if (rc) return rc;
  for (int i = 0; i < r->n_tr; i++) { r->tgt_total += r->tr[i].n_tgt; if (r->tr[i].len > r->max_len) r->max_len = r->tr[i].len; }
  for (int i = 0; i < r->n_va; i++) if (r->va[i].len > r->max_len) r->max_len = r->va[i].len;
  if (r->tgt_total == 0) return pf_seterr(err, PF_ERR, "the training rows have no completion tokens to learn");
  return PF_OK;
}

/* Steps, epochs, learning rate, checks. The default length: at least 3 epochs and at least 800 steps, which the
** checks usually end much earlier; a check every whole number of epochs, at least 5 steps with validation rows and
** 25 without. A warm start (init_prefix) with validation rows begins near its best: it stops after 4 checks without
** a new best instead of 5 (measured on E2E customers: the same held-out loss in two thirds of the steps;
** docs/training.md). */
static void run_schedule(trun *r) {
  const pf_train_params *p = &r->p;
  r->bs = p->batch_size < r->n_tr ? p->batch_size : r->n_tr;
  r->steps_per_epoch = (r->n_tr + r->bs - 1) / r->bs;
  r->auto_epochs = 3;
  if (r->auto_epochs * r->steps_per_epoch < 800) r->auto_epochs = (800 + r->steps_per_epoch - 1) / r->steps_per_epoch;
  r->total = p->max_steps > 0 ? p->max_steps : (p->epochs > 0 ? p->epochs : r->auto_epochs) * r->steps_per_epoch;
  r->base_lr = p->lr > 0 ? p->lr : pf_train_default_lr(p);
  int least = r->n_va ? 5 : 25;   /* the training loss of a few steps is noisier than a validation */
  if (r->auto_patience) r->p.patience = r->n_va && p->init_prefix ? PF_DEFAULT_PATIENCE_WARM : PF_DEFAULT_PATIENCE;
  r->eval_every = p->eval_every > 0 ? p->eval_every : r->steps_per_epoch * ((least + r->steps_per_epoch - 1) / r->steps_per_epoch);
  /* the plateau rule reads the training loss: not with dp, whose rows' losses are private; with a length given,
  ** only when patience is given too */
  r->plateau = r->n_va == 0 && p->patience > 0 && !p->dp && (r->auto_patience ? !p->max_steps && !p->epochs : 1);
  if (r->p.min_delta < 0) r->p.min_delta = r->n_va ? PF_DEFAULT_MIN_DELTA_VAL : PF_DEFAULT_MIN_DELTA_TRAIN;
  r->n_epochs = (r->total + r->steps_per_epoch - 1) / r->steps_per_epoch;
  r->log_every = r->total / 50 > 0 ? r->total / 50 : 1;
}

static int run_alloc(trun *r, pf_err *err) {
  const pf_hparams *hp = &r->m->hp;
  r->pp = pf_pparams_new(r->m, r->p.mode, r->P, r->p.mid_dim, err);
  r->w = pf_tws_new();
  if (r->w && r->p.activation_mb > 0) pf_tws_set_budget(r->w, (size_t)r->p.activation_mb << 20);
  r->kvn = (size_t)hp->n_layer * 2 * r->P * hp->n_head_kv * hp->head_dim;
  r->best_kv = malloc(sizeof(float) * r->kvn);
  int cap_b = r->bs > 1 ? r->bs : 1;
  r->len = malloc(sizeof(int) * (size_t)cap_b);
  r->tok = malloc(sizeof(int) * (size_t)cap_b * r->max_len);
  r->tgt = malloc(sizeof(int) * (size_t)cap_b * r->max_len);
  r->order = malloc(sizeof(int) * (size_t)r->n_tr);
  r->idx = malloc(sizeof(int) * (size_t)cap_b);
  if (!r->pp) return err ? err->code : PF_NOMEM;
  if (!r->w || !r->best_kv || !r->len || !r->tok || !r->tgt || !r->order || !r->idx)
    return pf_seterr(err, PF_NOMEM, "out of memory for training");
  return PF_OK;
}

/* DP's plan: the sampling rate, delta, the noise multiplier (given, or the least that spends at most epsilon over
** this run's steps after the starting prefix's runs), the generator, and the buffers of a step. */
static int run_dp_plan(trun *r, pf_err *err) {
  const pf_train_params *p = &r->p;
  if (!p->dp) return PF_OK;
  double q = (double)r->bs / r->n_tr, sigma = p->dp_noise_multiplier;
  r->dp_delta = p->dp_delta > 0 ? p->dp_delta : fmin(1e-5, 0.1 / r->n_tr);
  int rc;
  if (p->dp_epsilon > 0 && (rc = pf_dp_sigma(r->dp_runs, r->dp_n, q, r->total, p->dp_epsilon, r->dp_delta, &sigma, err))) {
    char msg[PF_ERRMAX];
    snprintf(msg, sizeof msg, "dp: %.400s (%d steps at sample rate %.4g)", err->msg, r->total, q);
    return pf_seterr(err, rc, "%s", msg);
  }
  r->dp_runs[r->dp_n++] = (pf_dp_run){q, sigma, r->total};
  /* a seeded run's key also depends on the runs before it: a seed reused for a warm start draws new noise */
  if (p->dp_noise_seed != UINT64_MAX) pf_csprng_seed_u64(&r->dp_rng, p->dp_noise_seed ^ (uint64_t)(r->dp_n - 1) * 0x9E3779B97F4A7C15ull);
  else if ((rc = pf_csprng_seed_os(&r->dp_rng, err))) return rc;
  r->dp_sum = malloc(sizeof(float) * pf_pparams_count(r->pp));
  r->dp_rows = malloc(sizeof(int) * (size_t)r->n_tr);
  if (!r->dp_sum || !r->dp_rows) return pf_seterr(err, PF_NOMEM, "out of memory for training");
  return PF_OK;
}

/* The starting parameters: a continued state, a given prefix, init_text's activations, or random (scaled to the
** model's embeddings). */
static int run_init(trun *r, pf_err *err) {
  const pf_model *m = r->m;
  const pf_hparams *hp = &m->hp;
  int rc = PF_OK, E = r->E;
  double s2 = 0;
  float *row = malloc(sizeof(float) * (size_t)hp->n_embd), *init_kv = NULL, *init_emb = NULL;
  if (!row) return pf_seterr(err, PF_NOMEM, "out of memory");
  for (int v = 0; v < hp->n_vocab; v++) {
    pf_wt_row(&m->tok_embd, v, row);
    for (int i = 0; i < hp->n_embd; i++) s2 += (double)row[i] * row[i];
  }
  free(row);
  float emb_std = (float)sqrt(s2 / ((double)hp->n_vocab * hp->n_embd));
  if (r->p.init_text && !r->wm) {
    init_kv = malloc(sizeof(float) * r->kvn);
    init_emb = malloc(sizeof(float) * (size_t)r->P * hp->n_embd);
    if (!init_kv || !init_emb) rc = pf_seterr(err, PF_NOMEM, "out of memory");
    else rc = text_kv(m, r->p.init_text, r->P, E ? NULL : init_kv, E ? init_emb : NULL, err);
  }
  r->init_kind = r->p.init_text ? "text" : "random";
  if (rc) {
  } else if (r->wm && r->wm->st) {
    rc = warm_restore(r->wm, r->pp, err);
    r->init_kind = "state";
  } else if (r->wm) {   /* start exactly at the given keys/values */
    if (!(rc = pf_pparams_init(r->pp, r->p.seed, r->wm->ip.kv, NULL, emb_std, err))) pf_pparams_zero_mlp_out(r->pp);
    r->init_kind = "prefix";
  } else
    rc = pf_pparams_init(r->pp, r->p.seed, E ? NULL : init_kv, E ? init_emb : NULL, emb_std, err);
  free(init_kv);
  free(init_emb);
  pf_prefix_in pin = {r->KP, pf_pparams_kv(r->pp), pf_pparams_dkv(r->pp), E, E ? pf_pparams_emb(r->pp) : NULL,
                      E ? pf_pparams_demb(r->pp) : NULL};
  r->pin = r->pin_eval = pin;
  r->pin_eval.dkv = NULL;
  r->pin_eval.dembd = NULL;
  return rc;
}

/* The loop's starting point: a fresh data order, or a continued state's step count, random state, epoch and
** (on the same rows) the data order where it stopped. */
static int run_resume(trun *r, pf_err *err) {
  const warm *wm = r->wm;
  r->best = r->ref = INFINITY;
  r->last_val = r->last_train = NAN;
  r->stop_reason = "steps";   /* until a check ends the run early */
  r->t0 = pf_clock();
  r->last_draw = -1;
  r->rs = r->p.seed * 0x2545F4914F6CDD1Dull + 7;
  for (int i = 0; i < r->n_tr; i++) r->order[i] = i;
  sb_printf(&r->hist, "[");
  sb_printf(&r->vhist, "[");
  r->pos_in_epoch = r->steps_per_epoch;
  r->tty = isatty(2);
  r->show = r->p.progress < 0 ? r->tty : r->p.progress;   /* progress -1: when stderr is a terminal */
  if (!wm || !wm->st) return PF_OK;
  r->step0 = (long)wm->step;
  r->rs = wm->rng;
  r->epoch = (int)wm->epoch;
  /* the same rows: the data order goes on where it stopped; other rows: a new epoch */
  if (wm->n_order != (uint32_t)r->n_tr || wm->pos > (uint32_t)r->steps_per_epoch) return PF_OK;   /* unsigned: a hostile 2^31 is not negative */
  const uint8_t *o = wm->st + STATE_HEADER;
  char *seen = calloc((size_t)r->n_tr, 1);
  if (!seen) return pf_seterr(err, PF_NOMEM, "out of memory");
  int ok = 1;
  for (int i = 0; ok && i < r->n_tr; i++) {
    uint32_t v = rd32(o + 4 * (size_t)i);
    ok = v < (uint32_t)r->n_tr && !seen[v];
    if (ok) { seen[v] = 1; r->order[i] = (int)v; }
  }
  free(seen);
  if (!ok) return pf_seterr(err, PF_ERR, "init_prefix: its training state's data order is damaged");
  r->pos_in_epoch = (int)wm->pos;
  return PF_OK;
}

/* AdamW with the schedule's learning rate for this step; the gradients scaled by gscale. The schedule and AdamW's
** bias correction count steps from the first run of a continued state. */
static void run_update(trun *r, float gscale) {
  const pf_train_params *p = &r->p;
  long gstep = r->step0 + r->step, gtotal = r->step0 + r->total;
  double lr = r->base_lr;
  if (p->warmup_steps > 0 && gstep <= p->warmup_steps) lr = r->base_lr * gstep / (double)p->warmup_steps;
  else if (p->lr_schedule == PF_SCHED_LINEAR) {
    long span = gtotal - p->warmup_steps;
    lr = span > 0 ? r->base_lr * (double)(gtotal - gstep + 1) / span : r->base_lr;
  }
  pf_adamw(r->pp, (float)lr, 0.9f, 0.999f, 1e-8f, p->weight_decay, (int)gstep, gscale);
}

/* The loss so far, into the history every log_every steps. */
static void run_log(trun *r, double ls, int n_t) {
  r->win_loss += ls;
  r->win_tok += n_t;
  r->chk_loss += ls;
  r->chk_tok += n_t;
  r->last_train = n_t ? ls / n_t : 0;
  if (r->step % r->log_every == 0 || r->step == r->total) {
    sb_printf(&r->hist, "%s[%d,%.5g]", r->hist.n > 1 ? "," : "", r->step, r->win_tok ? r->win_loss / r->win_tok : 0.0);
    r->win_loss = 0;
    r->win_tok = 0;
  }
}

/* One DP-SGD step: rows sampled with probability batch_size / rows each, every sampled row's gradient (of its
** mean token loss) on its own and clipped to max_grad_norm, their sum plus N(0, (sigma C)^2) per parameter,
** divided by batch_size (the expected count: the accountant's assumption). */
static int run_step_dp(trun *r, pf_cancel_fn cancel, void *carg, pf_err *err) {
  const pf_dp_run *run = &r->dp_runs[r->dp_n - 1];
  double C = r->p.dp_max_grad_norm, ls_all = 0;
  int k = 0, nt_all = 0, rc;
  for (int i = 0; i < r->n_tr; i++)
    if (run->q >= 1 || pf_csprng_uniform(&r->dp_rng) < run->q) r->dp_rows[k++] = i;
  r->step++;
  r->epoch = (r->step - 1) / r->steps_per_epoch + 1;   /* expected passes over the rows */
  size_t np = pf_pparams_count(r->pp);
  memset(r->dp_sum, 0, sizeof(float) * np);
  pf_pparams_forward(r->pp);
  for (int j = 0; j < k; j++) {
    const int *row = &r->dp_rows[j];
    pf_tbatch b;
    gather(r->tr, row, 1, r->len, r->tok, r->tgt, &b);
    pf_pparams_zero_grad(r->pp);
    double ls;
    int n_t, nt = r->tr[*row].n_tgt;
    if ((rc = pf_train_step(r->m, r->w, &b, &r->pin, nt ? 1.0f / (float)nt : 0.0f, 1, &ls, &n_t, cancel, carg, err))) return rc;
    pf_pparams_backward(r->pp);
    double gn = pf_pparams_grad_norm(r->pp);
    if (!isfinite(ls) || !isfinite(gn))
      return pf_seterr(err, PF_ERR, "training diverged at step %d: %s is %s (try a lower lr)", r->step,
                       isfinite(ls) ? "a row's gradient norm" : "the loss", isnan(isfinite(ls) ? gn : ls) ? "NaN" : "infinite");
    float s = gn > C ? (float)(C / gn) : 1.0f;
    const float *g = pf_pparams_grad(r->pp);
    for (size_t i = 0; i < np; i++) r->dp_sum[i] += s * g[i];
    ls_all += ls;
    nt_all += n_t;
    r->tokens_done += r->len[0];
  }
  if (run->sigma > 0) pf_csprng_noise(&r->dp_rng, (uint64_t)(r->step0 + r->step), r->dp_sum, np, run->sigma * C);
  float *g = pf_pparams_grad(r->pp);
  for (size_t i = 0; i < np; i++) g[i] = r->dp_sum[i] / (float)r->bs;
  run_update(r, 1.0f);
  run_log(r, ls_all, nt_all);
  return PF_OK;
}

/* One optimizer step on the next batch of the data order. */
static int run_step(trun *r, pf_cancel_fn cancel, void *carg, pf_err *err) {
  const pf_train_params *p = &r->p;
  int rc, bs = r->bs;
  if (r->pos_in_epoch == r->steps_per_epoch) { shuffle(r->order, r->n_tr, &r->rs); r->pos_in_epoch = 0; r->epoch++; }
  const int *rows = r->order + r->pos_in_epoch * bs;
  int k = r->n_tr - r->pos_in_epoch * bs < bs ? r->n_tr - r->pos_in_epoch * bs : bs;
  pf_tbatch b;
  gather(r->tr, rows, k, r->len, r->tok, r->tgt, &b);
  r->pos_in_epoch++;
  r->step++;
  int nt = 0;
  for (int i = 0; i < k; i++) nt += r->tr[rows[i]].n_tgt;
  pf_pparams_zero_grad(r->pp);
  pf_pparams_forward(r->pp);
  double ls;
  int n_t;
  if ((rc = pf_train_step(r->m, r->w, &b, &r->pin, nt ? 1.0f / (float)nt : 0.0f, 1, &ls, &n_t, cancel, carg, err))) return rc;
  pf_pparams_backward(r->pp);
  double loss = n_t ? ls / n_t : 0, gn = pf_pparams_grad_norm(r->pp);
  if (!isfinite(loss) || !isfinite(gn))
    return pf_seterr(err, PF_ERR, "training diverged at step %d: %s is %s (try a lower lr)", r->step,
                     isfinite(loss) ? "the gradient norm" : "the loss", isnan(isfinite(loss) ? gn : loss) ? "NaN" : "infinite");
  float gscale = p->grad_clip > 0 && gn > p->grad_clip ? (float)(p->grad_clip / gn) : 1.0f;
  run_update(r, gscale);
  for (int i = 0; i < k; i++) r->tokens_done += r->len[i];
  run_log(r, ls, n_t);
  return PF_OK;
}

/* The keys and values of the parameters as they are now (embedding mode: through the model). */
static int run_keep_kv(trun *r, pf_err *err) {
  if (r->E) return pf_embd_to_kv(r->m, r->w, r->E, pf_pparams_emb(r->pp), r->best_kv, err);
  memcpy(r->best_kv, pf_pparams_kv(r->pp), sizeof(float) * r->kvn);
  return PF_OK;
}

/* A check every eval_every steps and at the end: the validation loss (the best prefix is kept), or without
** validation rows the mean training loss since the last check (the plateau rule). A check improves when it is below
** the reference by more than min_delta of it; after patience checks in a row that do not, training stops. */
static int run_check(trun *r, pf_cancel_fn cancel, void *carg, pf_err *err) {
  if (r->step % r->eval_every != 0 && r->step != r->total) return PF_OK;
  double v;
  int rc = PF_OK;
  if (r->n_va) {
    pf_pparams_forward(r->pp);
    if ((rc = eval_loss(r->m, r->w, r->va, r->n_va, r->bs, &r->pin_eval, r->len, r->tok, r->tgt, r->idx, &v, cancel, carg,
                        err)))
      return rc;
    r->last_val = v;
    sb_printf(&r->vhist, "%s[%d,%.5g]", r->vhist.n > 1 ? "," : "", r->step, v);
    if (v < r->best) {
      r->best = v;
      r->best_step = r->step;
      r->have_best = 1;
      rc = run_keep_kv(r, err);
    }
  } else if (r->plateau && r->chk_tok > 0) {
    v = r->chk_loss / r->chk_tok;
    r->chk_loss = 0;
    r->chk_tok = 0;
  } else
    return PF_OK;
  if (v < r->ref * (1 - r->p.min_delta)) {
    r->ref = v;
    r->bad_evals = 0;
  } else if (r->p.patience > 0 && ++r->bad_evals >= r->p.patience && r->step < r->total) {
    r->stopped_early = 1;
    r->stop_reason = r->n_va ? "validation" : "plateau";
  }
  return rc;
}

/* The progress callback, and the bar (a terminal) or a line per 10% (a log) on stderr. */
static void run_report(trun *r, pf_progress_fn progress, void *parg) {
  if (!progress && !r->show) return;
  int step = r->step, total = r->total;
  double el = pf_clock() - r->t0;
  pf_progress pr = {step, total, r->epoch, r->n_epochs, r->last_train, r->last_val, r->best,
                    el > 0 ? r->tokens_done / el : 0, el, step ? el * (total - step) / step : 0,
                    step == total || r->stopped_early, r->bad_evals, NULL};
  if (pr.done) pr.stop_reason = r->stop_reason;
  if (progress) progress(parg, &pr);
  if (r->show && r->tty && (pr.done || el - r->last_draw >= 0.1)) { draw_bar(&pr, 1); r->last_draw = el; r->bar_open = !pr.done; }
  if (r->show && !r->tty && (pr.done || (long)step * 10 / total != (long)(step - 1) * 10 / total)) draw_bar(&pr, 0);
}

/* DP's record: the runs the accountant counted (the starting prefix's, then this one: pf_dp_runs_parse reads
** them back), what they spent, and how. */
static void run_meta_dp(trun *r) {
  const pf_dp_run *run = &r->dp_runs[r->dp_n - 1];
  sbuf *meta = &r->meta;
  sb_printf(meta, "\"dp\":{\"runs\":[");
  for (int i = 0; i < r->dp_n; i++)
    sb_printf(meta, "%s[%.17g,%.17g,%ld]", i ? "," : "", r->dp_runs[i].q, r->dp_runs[i].sigma,
              i == r->dp_n - 1 ? (long)r->step : r->dp_runs[i].steps);   /* this run: the steps it took */
  r->dp_runs[r->dp_n - 1].steps = r->step;   /* an interrupted or early-stopped run spent only its steps */
  double eps = run->sigma > 0 ? pf_dp_epsilon(r->dp_runs, r->dp_n, r->dp_delta, &r->dp_order) : INFINITY;
  sb_printf(meta, "],\"epsilon\":");
  if (isfinite(eps)) sb_printf(meta, "%.6g", eps);
  else sb_printf(meta, "null");
  sb_printf(meta, ",\"delta\":%.6g,\"order\":", r->dp_delta);
  if (isfinite(eps)) sb_printf(meta, "%.3g", r->dp_order);
  else sb_printf(meta, "null");
  sb_printf(meta, ",\"noise_multiplier\":%.6g,\"max_grad_norm\":", run->sigma);
  if (isfinite(r->p.dp_max_grad_norm)) sb_printf(meta, "%.6g", r->p.dp_max_grad_norm);
  else sb_printf(meta, "null");
  sb_printf(meta, ",\"sample_rate\":%.6g,\"expected_batch\":%d,\"steps\":%d,\"target_epsilon\":", run->q, r->bs, r->step);
  if (r->p.dp_epsilon > 0) sb_printf(meta, "%.6g", r->p.dp_epsilon);
  else sb_printf(meta, "null");
  sb_printf(meta, ",\"accountant\":\"%s\",\"accountant_version\":%d,\"sampling\":\"poisson\",\"noise\":\"%s\"},",
            PF_DP_ACCOUNTANT, PF_DP_ACCOUNTANT_VERSION,
            r->p.dp_noise_seed == UINT64_MAX ? "chacha20, seeded by the system" : "chacha20, seeded by noise_seed");
}

/* The metadata: everything that shaped the prefix, nothing that varies between runs. */
static int run_meta(trun *r, pf_err *err) {
  const pf_train_params *p = &r->p;
  sbuf *meta = &r->meta;
  sb_printf(&r->hist, "]");
  sb_printf(&r->vhist, "]");
  sb_printf(meta, "{\"options\":{\"prefix_len\":%d,\"mode\":\"%s\",\"mid_dim\":%d,\"init_text\":", r->P, mode_name(p->mode),
            p->mode == PF_MODE_PREFIX ? p->mid_dim : 0);
  if (p->init_text) sb_json_str(meta, p->init_text);
  else sb_printf(meta, "null");
  sb_printf(meta, ",\"lr\":%.6g,\"weight_decay\":%.6g,\"warmup_steps\":%d,\"lr_schedule\":\"%s\",\"grad_clip\":%.6g,"
                  "\"batch_size\":%d,\"epochs\":%d,\"max_steps\":%d,\"seed\":%llu,\"max_seq_len\":%d,\"val_fraction\":%.6g,"
                  "\"eval_every\":%d,\"patience\":%d,\"min_delta\":%.6g,\"dtype\":\"%s\",\"add_eos\":%s},",
            r->base_lr, p->weight_decay, p->warmup_steps, p->lr_schedule == PF_SCHED_LINEAR ? "linear" : "constant",
            p->grad_clip, p->batch_size, p->max_steps > 0 ? 0 : (p->epochs > 0 ? p->epochs : r->auto_epochs),
            p->max_steps, (unsigned long long)p->seed, p->max_seq_len, p->val_fraction, r->eval_every, p->patience, p->min_delta,
            p->dtype == PF_DTYPE_F16 ? "f16" : "f32", p->add_eos ? "true" : "false");
  sb_printf(meta, "\"init\":\"%s\",\"steps_before\":%ld,", r->init_kind, r->step0);
  if (p->dp) run_meta_dp(r);
  /* with dp, what the private rows give without noise (their losses, token counts) stays out of the BLOB */
  if (p->dp) sb_printf(meta, "\"rows\":%d,\"val_rows\":%d,\"truncated_rows\":null,\"target_tokens\":null,", r->n_tr, r->n_va);
  else sb_printf(meta, "\"rows\":%d,\"val_rows\":%d,\"truncated_rows\":%d,\"target_tokens\":%ld,", r->n_tr, r->n_va,
                 r->truncated, r->tgt_total);
  sb_printf(meta, "\"steps\":%d,\"epochs_run\":%.3g,\"stopped_early\":%s,\"stop_reason\":\"%s\",", r->step,
            (double)r->step / r->steps_per_epoch, r->stopped_early ? "true" : "false",
            r->stop_reason);
  if (p->dp) sb_printf(meta, "\"final_train_loss\":null,");
  else sb_printf(meta, "\"final_train_loss\":%.6g,", r->last_train);
  if (r->have_best) sb_printf(meta, "\"best_val_loss\":%.6g,\"best_step\":%d,", r->best, r->best_step);
  else sb_printf(meta, "\"best_val_loss\":null,\"best_step\":null,");
  sb_printf(meta, "\"loss_history\":%s,\"val_history\":%s}", p->dp ? "null" : r->hist.p ? r->hist.p : "[]",
            r->vhist.p ? r->vhist.p : "[]");
  if (meta->oom || r->hist.oom || r->vhist.oom) return pf_seterr(err, PF_NOMEM, "out of memory");
  return PF_OK;
}

/* The BLOB, with the training state section when save_state asks for it (docs/prefix-format.md). */
static int run_encode(trun *r, uint8_t **blob, size_t *blob_len, pf_err *err) {
  const pf_train_params *p = &r->p;
  if (!p->save_state) return pf_prefix_encode(r->m, r->best_kv, r->P, p->dtype, r->meta.p, blob, blob_len, err);
  int n_tr = r->n_tr;
  size_t nf = pf_pparams_state_floats(r->pp), sl = STATE_HEADER + 4 * (size_t)n_tr + 4 * nf;
  uint8_t *st = malloc(sl);
  float *f = malloc(sizeof(float) * (nf ? nf : 1));
  if (!st || !f) {
    free(st);
    free(f);
    return pf_seterr(err, PF_NOMEM, "out of memory for the training state (%zu bytes)", sl);
  }
  uint32_t h32[] = {1, (uint32_t)p->mode, (uint32_t)r->P, (uint32_t)(p->mode == PF_MODE_PREFIX ? p->mid_dim : 0)};
  memcpy(st, h32, 16);
  uint64_t h64[] = {pf_pparams_count(r->pp), (uint64_t)(r->step0 + r->step), r->rs};
  memcpy(st + 16, h64, 24);
  uint32_t t32[] = {(uint32_t)r->epoch, (uint32_t)r->pos_in_epoch, (uint32_t)n_tr, (uint32_t)pf_pparams_has_base(r->pp)};
  memcpy(st + 40, t32, 16);
  for (int i = 0; i < n_tr; i++) { uint32_t v = (uint32_t)r->order[i]; memcpy(st + STATE_HEADER + 4 * (size_t)i, &v, 4); }
  pf_pparams_get_state(r->pp, f);
  memcpy(st + STATE_HEADER + 4 * (size_t)n_tr, f, 4 * nf);
  free(f);
  int rc = pf_prefix_encode_ex(r->m, r->best_kv, r->P, p->dtype, r->meta.p, st, sl, blob, blob_len, err);
  free(st);
  return rc;
}

static void run_free(trun *r) {
  if (r->bar_open) fputc('\n', stderr);   /* an error or an interrupt ends the bar's line */
  free_seqs(r->tr, r->n_tr);
  free_seqs(r->va, r->n_va);
  pf_pparams_free(r->pp);
  pf_tws_free(r->w);
  pf_scratch_release();   /* a trained customer is often the last for a while */
  free(r->best_kv);
  free(r->len); free(r->tok); free(r->tgt); free(r->order); free(r->idx);
  free(r->hist.p); free(r->vhist.p); free(r->meta.p);
  free(r->dp_sum); free(r->dp_rows);
  memset(&r->dp_rng, 0, sizeof r->dp_rng);   /* the noise's key */
}

static int train_run(const pf_model *m, const pf_example *train, int n_train, const pf_example *val, int n_val,
                     const pf_train_params *p, const warm *wm, pf_progress_fn progress, void *parg, pf_cancel_fn cancel,
                     void *carg, uint8_t **blob, size_t *blob_len, pf_err *err) {
  trun r;
  memset(&r, 0, sizeof r);
  r.m = m;
  r.wm = wm;
  *blob = NULL;
  *blob_len = 0;
  int rc = run_settle(&r, p, n_train, val != NULL, err);
  if (!rc) rc = run_data(&r, train, n_train, val, n_val, err);
  if (!rc) { run_schedule(&r); rc = run_alloc(&r, err); }
  if (!rc) rc = run_dp_plan(&r, err);
  if (!rc) rc = run_init(&r, err);
  if (!rc) rc = run_resume(&r, err);
  /* a warm start is checked before its first step: the prefix returned is never worse on the validation rows than
  ** the one it started from, and a start that is already good stops after patience checks */
  if (!rc && r.wm && r.n_va) rc = run_check(&r, cancel, carg, err);
  while (!rc && r.step < r.total && !r.stopped_early) {
    rc = r.p.dp ? run_step_dp(&r, cancel, carg, err) : run_step(&r, cancel, carg, err);
    if (!rc) rc = run_check(&r, cancel, carg, err);
    if (!rc) run_report(&r, progress, parg);
  }
  if (!rc && !r.have_best) {   /* no validation: the last prefix */
    pf_pparams_forward(r.pp);
    rc = run_keep_kv(&r, err);
  }
  if (!rc) rc = run_meta(&r, err);
  if (!rc) rc = run_encode(&r, blob, blob_len, err);
  run_free(&r);
  return rc;
}

int pf_score(const pf_model *m, const float *kv, int prefix_len, const char *prompt, size_t plen,
             const char *completion, size_t clen, int add_eos, double *nll, int *n_tokens, pf_err *err) {
  pf_prefix one = {0};
  one.kv = (float *)kv;
  one.prefix_len = prefix_len;
  return pf_score_tokens(m, kv ? &one : NULL, prompt, plen, completion, clen, add_eos, NULL, NULL, n_tokens, nll, NULL,
                         NULL, err);
}

/* The pair is tokenized as training tokenizes it and runs through the model's batch (pf_serve_score), joining
** whatever generation and scoring runs on the model from other threads. */
int pf_score_tokens(const pf_model *m, const pf_prefix *pre, const char *prompt, size_t plen, const char *completion,
                    size_t clen, int add_eos, int **ids, double **lp, int *n_tokens, double *nll, pf_cancel_fn cancel,
                    void *carg, pf_err *err) {
  pf_example ex = {prompt, plen, completion, clen};
  tseq s = {0};
  int tr = 0, rc, K = pre && pre->n_members ? pre->n_members : 1;
  int maxP = pre ? pre->prefix_len : 0;
  const pf_hparams *hp = &m->hp;
  if (ids) *ids = NULL;
  if (lp) *lp = NULL;
  *nll = NAN;
  *n_tokens = 0;
  if (!m->has_weights) return pf_seterr(err, PF_ERR, "the model has no weights (vocab-only GGUF): it cannot score");
  char limit[160];
  if (maxP) snprintf(limit, sizeof limit, "with the prefix (%d positions) it leaves no room for the completion in the model's context of %d", maxP, hp->n_ctx);
  else snprintf(limit, sizeof limit, "it leaves no room for the completion in the model's context of %d", hp->n_ctx);
  if ((rc = make_seq(m, &ex, 1, 0, hp->n_ctx - maxP, limit, add_eos, &s, &tr, err))) {
    char msg[PF_ERRMAX];
    snprintf(msg, sizeof msg, "%s", err->msg + (strncmp(err->msg, "row 1: ", 7) ? 0 : 7));
    return pf_seterr(err, rc, "%s", msg);
  }
  if (tr) { free(s.tok); free(s.tgt); return pf_seterr(err, PF_TOOBIG, "prompt + completion exceed the model's context of %d (with a prefix of %d)", hp->n_ctx, maxP); }
  if (s.n_tgt == 0) {
    free(s.tok);
    free(s.tgt);
    return pf_seterr(err, PF_ERR, "the completion is empty: there is no token to score (add_eos is false)");
  }
  int nt = s.n_tgt;
  double *acc = malloc(sizeof(double) * (size_t)nt * K);
  int *tid = malloc(sizeof(int) * (size_t)nt);
  if (!acc || !tid) { rc = pf_seterr(err, PF_NOMEM, "out of memory"); goto done; }
  /* the targets are the last nt tokens: each is scored at the position before it */
  pf_batch_item it = {0};
  pf_item_set_prefix(&it, pre);
  if ((rc = pf_serve_score(m, &it, s.tok, s.len, nt, acc, cancel, carg, err))) goto done;
  memcpy(tid, s.tok + s.len - nt, sizeof(int) * (size_t)nt);
  double sum = 0;
  for (int i = 0; i < nt; i++) {   /* members: log of the mean probability */
    double mx = -INFINITY, se = 0;
    for (int k = 0; k < K; k++) if (acc[(size_t)k * nt + i] > mx) mx = acc[(size_t)k * nt + i];
    for (int k = 0; k < K; k++) se += exp(acc[(size_t)k * nt + i] - mx);
    acc[i] = K == 1 ? acc[i] : mx + log(se) - log((double)K);
    sum += acc[i];
  }
  *nll = -sum / nt;
  if (!isfinite(*nll) || *nll < 0) {
    rc = pf_seterr(err, PF_ERR, "scoring gave a non-finite log-likelihood (the model's weights overflow?)");
    *nll = NAN;
    goto done;
  }
  *n_tokens = nt;
  if (ids) { *ids = tid; tid = NULL; }
  if (lp) { *lp = acc; acc = NULL; }
done:
  free(acc);
  free(tid);
  free(s.tok);
  free(s.tgt);
  return rc;
}

/* The call's thread count applies to this call only. */
int pf_train(const pf_model *m, const pf_example *train, int n_train, const pf_example *val, int n_val,
             const pf_train_params *p, pf_progress_fn progress, void *parg, pf_cancel_fn cancel, void *carg,
             uint8_t **blob, size_t *blob_len, pf_err *err) {
  pf_train_params pd = *p;
  warm wm;
  int rc = PF_OK, have_warm = p->init_prefix != NULL;
  *blob = NULL;
  *blob_len = 0;
  if (have_warm) rc = warm_open(m, &pd, &wm, err);
  else {
    if (pd.prefix_len == 0) pd.prefix_len = PF_DEFAULT_PREFIX_LEN;
    if (pd.mode < 0) pd.mode = PF_MODE_PREFIX;
    if (pd.mid_dim < 0) pd.mid_dim = PF_DEFAULT_MID_DIM;
  }
  if (!rc) {
    int old = pf_threads_push(p->threads);
    rc = train_run(m, train, n_train, val, n_val, &pd, have_warm ? &wm : NULL, progress, parg, cancel, carg, blob, blob_len, err);
    pf_threads_pop(old);
  }
  if (have_warm) pf_prefix_clear(&wm.ip);
  return rc;
}
