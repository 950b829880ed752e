/*
** train.c — the prefix-tuning loop.
**
**   tokenize pairs (prompt is context, completion + EOS is the target)
**   split off validation rows (val_fraction or a given set)
**   for each step: kv = reparam(params); loss, dkv = step(batch, kv);
**                  dparams = reparam_backward(dkv); clip; AdamW; schedule
**   validate every eval_every steps (default: once per epoch); keep the best
**   prefix by validation loss; stop after `patience` evaluations without
**   improvement; encode the best (or last) keys/values as a BLOB.
**
** Same rows, options, seed and thread count give the same bytes.
*/
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
  char val[32] = "";
  if (!isnan(pr->val_loss)) snprintf(val, sizeof val, " val %.4f", pr->val_loss);
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

static int train_run(const pf_model *m, const pf_example *train, int n_train, const pf_example *val, int n_val,
                     const pf_train_params *p, const warm *wm, pf_progress_fn progress, void *parg, pf_cancel_fn cancel,
                     void *carg, uint8_t **blob, size_t *blob_len, pf_err *err) {
  const pf_hparams *hp = &m->hp;
  int rc = PF_OK, P = p->prefix_len, E = p->mode == PF_MODE_EMBEDDING ? P : 0, KP = E ? 0 : P;
  tseq *tr = NULL, *va = NULL;
  int n_tr = 0, n_va = 0, truncated = 0;
  pf_pparams *pp = NULL;
  pf_tws *w = NULL;
  float *best_kv = NULL, *init_kv = NULL, *init_emb = NULL;
  int *len = NULL, *tok = NULL, *tgt = NULL, *order = NULL, *idx = NULL;
  sbuf hist = {0}, vhist = {0}, meta = {0};
  int bar_open = 0;   /* a terminal bar is on the screen without its newline */
  *blob = NULL;
  *blob_len = 0;

  if (!m->has_weights) return pf_seterr(err, PF_ERR, "the model has no weights (vocab-only GGUF): it cannot be trained");
  if (n_train <= 0) return pf_seterr(err, PF_ERR, "no training rows (the query returned no rows)");
  if ((rc = pf_prefix_len_check(m, P, err))) return rc;
  /* init_text is kept in the BLOB's metadata (JSON-escaped: up to 6 bytes per byte): refuse before training */
  if (p->init_text && strlen(p->init_text) > PF_INIT_TEXT_MAX)
    return pf_seterr(err, PF_TOOBIG, "init_text is %zu bytes; at most %d (it is kept in the prefix's metadata; only its "
                     "first prefix_len tokens are used)", strlen(p->init_text), PF_INIT_TEXT_MAX);
  pf_train_params pd = *p;   /* the parameters with defaults resolved */
  char limit[200];           /* what bounds a sequence, for the message of a prompt that does not fit */
  if (pd.max_seq_len == 0) {
    pd.max_seq_len = hp->n_ctx - P < 256 ? hp->n_ctx - P : 256;
    if (pd.max_seq_len < 256)
      snprintf(limit, sizeof limit, "prefix_len (%d) leaves %d of the model's context of %d for prompt and completion "
               "(lower prefix_len or shorten the prompt)", P, pd.max_seq_len, hp->n_ctx);
    else
      snprintf(limit, sizeof limit, "max_seq_len is %d by default (raise max_seq_len, up to %d with prefix_len %d, or "
               "shorten the prompt)", pd.max_seq_len, hp->n_ctx - P, P);
  } else
    snprintf(limit, sizeof limit, "max_seq_len is %d (raise max_seq_len or shorten the prompt)", pd.max_seq_len);
  p = &pd;
  if (P + p->max_seq_len > hp->n_ctx)
    return pf_seterr(err, PF_TOOBIG, "prefix_len (%d) + max_seq_len (%d) = %d exceeds the model's context of %d", P,
                     p->max_seq_len, P + p->max_seq_len, hp->n_ctx);
  if (p->epochs > 0 && p->max_steps > 0) return pf_seterr(err, PF_ERR, "give epochs or max_steps, not both");
  if (val && p->val_fraction > 0) return pf_seterr(err, PF_ERR, "give val_fraction or val_query, not both");

  /* tokenize; rows are numbered from 1 as the user counts them */
  int n_all = n_train;
  tseq *all = calloc((size_t)n_all, sizeof *all);
  if (!all) return pf_seterr(err, PF_NOMEM, "out of memory");
  for (int i = 0; i < n_all; i++)
    if ((rc = make_seq(m, &train[i], i + 1, E, p->max_seq_len, limit, p->add_eos, &all[i], &truncated, err))) { free_seqs(all, n_all); return rc; }
  if (val) {
    va = calloc((size_t)(n_val ? n_val : 1), sizeof *va);
    if (!va) { free_seqs(all, n_all); return pf_seterr(err, PF_NOMEM, "out of memory"); }
    n_va = n_val;
    for (int i = 0; i < n_val; i++)
      if ((rc = make_seq(m, &val[i], i + 1, E, p->max_seq_len, limit, p->add_eos, &va[i], &truncated, err))) {
        char msg[PF_ERRMAX];
        snprintf(msg, sizeof msg, "validation %.400s", err ? err->msg : "");
        pf_seterr(err, rc, "%s", msg);
        goto done_early;
      }
    tr = all;
    n_tr = n_all;
  } else if (p->val_fraction > 0) {
    int nv = (int)lround(p->val_fraction * n_all);
    if (nv < 1) nv = 1;
    if (nv >= n_all) {
      rc = pf_seterr(err, PF_ERR, "val_fraction %g of %d rows leaves no training rows", p->val_fraction, n_all);
      goto done_early;
    }
    int *perm = malloc(sizeof(int) * (size_t)n_all);
    tr = calloc((size_t)(n_all - nv), sizeof *tr);
    va = calloc((size_t)nv, sizeof *va);
    if (!perm || !tr || !va) { free(perm); rc = pf_seterr(err, PF_NOMEM, "out of memory"); goto done_early; }
    for (int i = 0; i < n_all; i++) perm[i] = i;
    uint64_t s = p->seed ^ 0x5EEDull;
    shuffle(perm, n_all, &s);
    for (int i = 0; i < n_all; i++) {
      if (i < nv) va[n_va++] = all[perm[i]];
      else tr[n_tr++] = all[perm[i]];
    }
    free(perm);
    free(all);  /* the sequences moved into tr/va */
    all = NULL;
  } else {
    tr = all;
    n_tr = n_all;
  }
  all = NULL;

  long tgt_total = 0;
  int max_len = 0;
  for (int i = 0; i < n_tr; i++) { tgt_total += tr[i].n_tgt; if (tr[i].len > max_len) max_len = tr[i].len; }
  for (int i = 0; i < n_va; i++) if (va[i].len > max_len) max_len = va[i].len;
  if (tgt_total == 0) { rc = pf_seterr(err, PF_ERR, "the training rows have no completion tokens to learn"); goto done; }

  int bs = p->batch_size < n_tr ? p->batch_size : n_tr;
  int steps_per_epoch = (n_tr + bs - 1) / bs;
  /* default length: at least 3 epochs and at least 800 steps (docs/training.md) */
  int auto_epochs = 3;
  if (auto_epochs * steps_per_epoch < 800) auto_epochs = (800 + steps_per_epoch - 1) / steps_per_epoch;
  int total = p->max_steps > 0 ? p->max_steps : (p->epochs > 0 ? p->epochs : auto_epochs) * steps_per_epoch;
  float base_lr = p->lr > 0 ? p->lr : pf_train_default_lr(p);
  int eval_every = p->eval_every > 0 ? p->eval_every : steps_per_epoch;
  int n_epochs = (total + steps_per_epoch - 1) / steps_per_epoch;

  pp = pf_pparams_new(m, p->mode, P, p->mid_dim, err);
  w = pf_tws_new();
  if (w && p->activation_mb > 0) pf_tws_set_budget(w, (size_t)p->activation_mb << 20);
  size_t kvn = (size_t)hp->n_layer * 2 * P * hp->n_head_kv * hp->head_dim;
  best_kv = malloc(sizeof(float) * kvn);
  int cap_b = bs > 1 ? bs : 1;
  len = malloc(sizeof(int) * (size_t)cap_b);
  tok = malloc(sizeof(int) * (size_t)cap_b * max_len);
  tgt = malloc(sizeof(int) * (size_t)cap_b * max_len);
  order = malloc(sizeof(int) * (size_t)n_tr);
  idx = malloc(sizeof(int) * (size_t)cap_b);
  if (!pp || !w || !best_kv || !len || !tok || !tgt || !order || !idx) {
    if (pp) rc = pf_seterr(err, PF_NOMEM, "out of memory for training");
    else rc = err ? err->code : PF_NOMEM;
    goto done;
  }
  /* initialisation */
  float emb_std = 0;
  {
    double s2 = 0;
    float *row = malloc(sizeof(float) * (size_t)hp->n_embd);
    if (!row) { rc = pf_seterr(err, PF_NOMEM, "out of memory"); goto done; }
    for (int v = 0; v < hp->n_vocab; v++) {
      pf_wt_row(&m->tok_embd, v, row);
      for (int i = 0; i < hp->n_embd; i++) s2 += (double)row[i] * row[i];
    }
    free(row);
    emb_std = (float)sqrt(s2 / ((double)hp->n_vocab * hp->n_embd));
  }
  if (p->init_text) {
    init_kv = malloc(sizeof(float) * kvn);
    init_emb = malloc(sizeof(float) * (size_t)P * hp->n_embd);
    if (!init_kv || !init_emb) { rc = pf_seterr(err, PF_NOMEM, "out of memory"); goto done; }
    if ((rc = text_kv(m, p->init_text, P, E ? NULL : init_kv, E ? init_emb : NULL, err))) goto done;
  }
  const char *init_kind = p->init_text ? "text" : "random";
  if (wm && wm->st) {
    if ((rc = warm_restore(wm, pp, err))) goto done;
    init_kind = "state";
  } else if (wm) {   /* start exactly at the given keys/values */
    if ((rc = pf_pparams_init(pp, p->seed, wm->ip.kv, NULL, emb_std, err))) goto done;
    pf_pparams_zero_mlp_out(pp);
    init_kind = "prefix";
  } else if ((rc = pf_pparams_init(pp, p->seed, E ? NULL : init_kv, E ? init_emb : NULL, emb_std, err))) goto done;

  pf_prefix_in pin = {KP, pf_pparams_kv(pp), pf_pparams_dkv(pp), E, E ? pf_pparams_emb(pp) : NULL,
                      E ? pf_pparams_demb(pp) : NULL};
  pf_prefix_in pin_eval = pin;
  pin_eval.dkv = NULL;
  pin_eval.dembd = NULL;

  double best = INFINITY, last_val = NAN, t0 = pf_clock(), win_loss = 0;
  long tokens_done = 0, win_tok = 0;
  int best_step = 0, bad_evals = 0, step = 0, have_best = 0, log_every = total / 50 > 0 ? total / 50 : 1;
  double last_train = NAN, last_draw = -1;
  uint64_t rs = p->seed * 0x2545F4914F6CDD1Dull + 7;
  for (int i = 0; i < n_tr; i++) order[i] = i;
  sb_printf(&hist, "[");
  sb_printf(&vhist, "[");
  int pos_in_epoch = steps_per_epoch, epoch = 0, stopped_early = 0;
  long step0 = 0;   /* optimizer steps before this run (a continued state) */
  int tty = isatty(2), show = p->progress < 0 ? tty : p->progress;   /* progress -1: when stderr is a terminal */
  if (wm && wm->st) {
    step0 = (long)wm->step;
    rs = wm->rng;
    epoch = (int)wm->epoch;
    /* the same rows: the data order goes on where it stopped; other rows: a new epoch */
    if (wm->n_order == (uint32_t)n_tr && wm->pos <= (uint32_t)steps_per_epoch) {   /* unsigned: a hostile 2^31 is not negative */
      const uint8_t *o = wm->st + STATE_HEADER;
      char *seen = calloc((size_t)n_tr, 1);
      int ok = seen != NULL;
      for (int i = 0; ok && i < n_tr; i++) {
        uint32_t v = rd32(o + 4 * (size_t)i);
        ok = v < (uint32_t)n_tr && !seen[v];
        if (ok) { seen[v] = 1; order[i] = (int)v; }
      }
      int nomem = seen == NULL;
      free(seen);
      if (nomem) { rc = pf_seterr(err, PF_NOMEM, "out of memory"); goto done; }
      if (!ok) { rc = pf_seterr(err, PF_ERR, "init_prefix: its training state's data order is damaged"); goto done; }
      pos_in_epoch = (int)wm->pos;
    }
  }
  while (step < total) {
    if (pos_in_epoch == steps_per_epoch) { shuffle(order, n_tr, &rs); pos_in_epoch = 0; epoch++; }
    int k = n_tr - pos_in_epoch * bs < bs ? n_tr - pos_in_epoch * bs : bs;
    pf_tbatch b;
    gather(tr, order + pos_in_epoch * bs, k, len, tok, tgt, &b);
    pos_in_epoch++;
    step++;
    int nt = 0;
    for (int i = 0; i < k; i++) nt += tr[order[(pos_in_epoch - 1) * bs + i]].n_tgt;
    pf_pparams_zero_grad(pp);
    pf_pparams_forward(pp);
    double ls;
    int n_t;
    if ((rc = pf_train_step(m, w, &b, &pin, nt ? 1.0f / (float)nt : 0.0f, 1, &ls, &n_t, cancel, carg, err))) goto done;
    pf_pparams_backward(pp);
    double loss = n_t ? ls / n_t : 0, gn = pf_pparams_grad_norm(pp);
    if (!isfinite(loss) || !isfinite(gn)) {
      rc = pf_seterr(err, PF_ERR, "training diverged at step %d: %s is %s (try a lower lr)", step,
                     isfinite(loss) ? "the gradient norm" : "the loss", isnan(isfinite(loss) ? gn : loss) ? "NaN" : "infinite");
      goto done;
    }
    float gscale = p->grad_clip > 0 && gn > p->grad_clip ? (float)(p->grad_clip / gn) : 1.0f;
    /* the schedule and AdamW's bias correction count steps from the first run of a continued state */
    long gstep = step0 + step, gtotal = step0 + total;
    double lr = base_lr;
    if (p->warmup_steps > 0 && gstep <= p->warmup_steps) lr = base_lr * gstep / (double)p->warmup_steps;
    else if (p->lr_schedule == PF_SCHED_LINEAR) {
      long span = gtotal - p->warmup_steps;
      lr = span > 0 ? base_lr * (double)(gtotal - gstep + 1) / span : base_lr;
    }
    pf_adamw(pp, (float)lr, 0.9f, 0.999f, 1e-8f, p->weight_decay, (int)gstep, gscale);
    for (int i = 0; i < k; i++) tokens_done += len[i];
    win_loss += ls;
    win_tok += n_t;
    last_train = loss;
    if (step % log_every == 0 || step == total) {
      sb_printf(&hist, "%s[%d,%.5g]", hist.n > 1 ? "," : "", step, win_tok ? win_loss / win_tok : 0.0);
      win_loss = 0;
      win_tok = 0;
    }
    /* validation */
    int is_eval = n_va > 0 && (step % eval_every == 0 || step == total);
    if (is_eval) {
      pf_pparams_forward(pp);
      double vl;
      if ((rc = eval_loss(m, w, va, n_va, bs, &pin_eval, len, tok, tgt, idx, &vl, cancel, carg, err))) goto done;
      last_val = vl;
      sb_printf(&vhist, "%s[%d,%.5g]", vhist.n > 1 ? "," : "", step, vl);
      if (vl < best) {
        best = vl;
        best_step = step;
        bad_evals = 0;
        have_best = 1;
        if (E) { if ((rc = pf_embd_to_kv(m, w, E, pf_pparams_emb(pp), best_kv, err))) goto done; }
        else memcpy(best_kv, pf_pparams_kv(pp), sizeof(float) * kvn);
      } else if (p->patience > 0 && ++bad_evals >= p->patience) {
        stopped_early = 1;
      }
    }
    if (progress || show) {
      double el = pf_clock() - t0;
      pf_progress pr = {step, total, epoch, n_epochs, loss, last_val, best, el > 0 ? tokens_done / el : 0, el,
                        step ? el * (total - step) / step : 0, step == total || stopped_early};
      if (progress) progress(parg, &pr);
      if (show && tty && (pr.done || el - last_draw >= 0.1)) { draw_bar(&pr, 1); last_draw = el; bar_open = !pr.done; }
      if (show && !tty && (pr.done || (long)step * 10 / total != (long)(step - 1) * 10 / total)) draw_bar(&pr, 0);
    }
    if (stopped_early) break;
  }
  if (!have_best) {   /* no validation: the last prefix */
    pf_pparams_forward(pp);
    if (E) { if ((rc = pf_embd_to_kv(m, w, E, pf_pparams_emb(pp), best_kv, err))) goto done; }
    else memcpy(best_kv, pf_pparams_kv(pp), sizeof(float) * kvn);
  }
  sb_printf(&hist, "]");
  sb_printf(&vhist, "]");

  /* metadata: everything that shaped the prefix, nothing that varies between runs */
  sb_printf(&meta, "{\"options\":{\"prefix_len\":%d,\"mode\":\"%s\",\"mid_dim\":%d,\"init_text\":", P, mode_name(p->mode),
            p->mode == PF_MODE_PREFIX ? p->mid_dim : 0);
  if (p->init_text) sb_json_str(&meta, p->init_text);
  else sb_printf(&meta, "null");
  sb_printf(&meta, ",\"lr\":%.6g,\"weight_decay\":%.6g,\"warmup_steps\":%d,\"lr_schedule\":\"%s\",\"grad_clip\":%.6g,"
                   "\"batch_size\":%d,\"epochs\":%d,\"max_steps\":%d,\"seed\":%llu,\"max_seq_len\":%d,\"val_fraction\":%.6g,"
                   "\"eval_every\":%d,\"patience\":%d,\"dtype\":\"%s\",\"add_eos\":%s},",
            base_lr, p->weight_decay, p->warmup_steps, p->lr_schedule == PF_SCHED_LINEAR ? "linear" : "constant", p->grad_clip,
            p->batch_size, p->max_steps > 0 ? 0 : (p->epochs > 0 ? p->epochs : auto_epochs), p->max_steps, (unsigned long long)p->seed, p->max_seq_len, p->val_fraction, eval_every,
            p->patience, p->dtype == PF_DTYPE_F16 ? "f16" : "f32", p->add_eos ? "true" : "false");
  sb_printf(&meta, "\"init\":\"%s\",\"steps_before\":%ld,", init_kind, step0);
  sb_printf(&meta, "\"rows\":%d,\"val_rows\":%d,\"truncated_rows\":%d,\"target_tokens\":%ld,\"steps\":%d,\"epochs_run\":%.3g,"
                   "\"stopped_early\":%s,\"final_train_loss\":%.6g,",
            n_tr, n_va, truncated, tgt_total, step, (double)step / steps_per_epoch, stopped_early ? "true" : "false",
            last_train);
  if (have_best) sb_printf(&meta, "\"best_val_loss\":%.6g,\"best_step\":%d,", best, best_step);
  else sb_printf(&meta, "\"best_val_loss\":null,\"best_step\":null,");
  sb_printf(&meta, "\"loss_history\":%s,\"val_history\":%s}", hist.p ? hist.p : "[]", vhist.p ? vhist.p : "[]");
  if (meta.oom || hist.oom || vhist.oom) { rc = pf_seterr(err, PF_NOMEM, "out of memory"); goto done; }
  if (p->save_state) {
    size_t nf = pf_pparams_state_floats(pp), sl = STATE_HEADER + 4 * (size_t)n_tr + 4 * nf;
    uint8_t *st = malloc(sl);
    if (!st) { rc = pf_seterr(err, PF_NOMEM, "out of memory for the training state (%zu bytes)", sl); goto done; }
    uint32_t h32[] = {1, (uint32_t)p->mode, (uint32_t)P, (uint32_t)(p->mode == PF_MODE_PREFIX ? p->mid_dim : 0)};
    memcpy(st, h32, 16);
    uint64_t h64[] = {pf_pparams_count(pp), (uint64_t)(step0 + step), rs};
    memcpy(st + 16, h64, 24);
    uint32_t t32[] = {(uint32_t)epoch, (uint32_t)pos_in_epoch, (uint32_t)n_tr, (uint32_t)pf_pparams_has_base(pp)};
    memcpy(st + 40, t32, 16);
    for (int i = 0; i < n_tr; i++) { uint32_t v = (uint32_t)order[i]; memcpy(st + STATE_HEADER + 4 * (size_t)i, &v, 4); }
    float *f = malloc(sizeof(float) * (nf ? nf : 1));
    if (!f) { free(st); rc = pf_seterr(err, PF_NOMEM, "out of memory for the training state"); goto done; }
    pf_pparams_get_state(pp, f);
    memcpy(st + STATE_HEADER + 4 * (size_t)n_tr, f, 4 * nf);
    free(f);
    rc = pf_prefix_encode_ex(m, best_kv, P, p->dtype, meta.p, st, sl, blob, blob_len, err);
    free(st);
  } else
    rc = pf_prefix_encode(m, best_kv, P, p->dtype, meta.p, blob, blob_len, err);
  goto done;

done_early:
  free_seqs(all, n_all);
  all = NULL;
  free_seqs(va, n_va);
  return rc;
done:
  if (bar_open) fputc('\n', stderr);   /* an error or an interrupt ends the bar's line */
  free_seqs(tr, n_tr);
  free_seqs(va, n_va);
  pf_pparams_free(pp);
  pf_tws_free(w);
  pf_scratch_release();   /* a trained customer is often the last for a while */
  free(best_kv); free(init_kv); free(init_emb);
  free(len); free(tok); free(tgt); free(order); free(idx);
  free(hist.p); free(vhist.p); free(meta.p);
  return rc;
}

int pf_score(const pf_model *m, const float *kv, int prefix_len, const char *prompt, size_t plen,
             const char *completion, size_t clen, int add_eos, double *nll, int *n_tokens, pf_err *err) {
  pf_prefix one = {0};
  one.kv = (float *)kv;
  one.prefix_len = prefix_len;
  return pf_score_tokens(m, kv ? &one : NULL, prompt, plen, completion, clen, add_eos, NULL, NULL, n_tokens, nll, err);
}

int pf_score_tokens(const pf_model *m, const pf_prefix *pre, const char *prompt, size_t plen, const char *completion,
                    size_t clen, int add_eos, int **ids, double **lp, int *n_tokens, double *nll, pf_err *err) {
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
  pf_tws *w = pf_tws_new();
  double *acc = malloc(sizeof(double) * (size_t)nt * K);
  int *tid = malloc(sizeof(int) * (size_t)nt);
  if (!w || !acc || !tid) { rc = pf_seterr(err, PF_NOMEM, "out of memory"); goto done; }
  double ls_one = 0;
  for (int k = 0; k < K && !rc; k++) {
    const float *kv = !pre ? NULL : pre->n_members ? pre->members[k].kv : pre->kv;
    int P = !pre ? 0 : pre->n_members ? pre->members[k].prefix_len : pre->prefix_len;
    pf_prefix_in pin = {kv ? P : 0, kv, NULL, 0, NULL, NULL};
    pf_tbatch b = {1, &s.len, s.tok, s.tgt};
    int n_t = 0;
    pf_tws_set_token_logprobs(w, acc + (size_t)k * nt);
    rc = pf_train_step(m, w, &b, &pin, 1.0f, 0, &ls_one, &n_t, NULL, NULL, err);
  }
  if (rc) goto done;
  int j = 0;
  for (int t = 0; t < s.len; t++) if (s.tgt[t] >= 0) tid[j++] = s.tgt[t];
  double sum = 0;
  for (int i = 0; i < nt; i++) {   /* members: log of the mean probability */
    double mx = -INFINITY, se = 0;
    for (int k = 0; k < K; k++) if (acc[(size_t)k * nt + i] > mx) mx = acc[(size_t)k * nt + i];
    for (int k = 0; k < K; k++) se += exp(acc[(size_t)k * nt + i] - mx);
    acc[i] = K == 1 ? acc[i] : mx + log(se) - log((double)K);
    sum += acc[i];
  }
  *nll = K == 1 ? ls_one / nt : -sum / nt;   /* one prefix: the loss as training computes it */
  if (!isfinite(*nll) || *nll < 0) {
    rc = pf_seterr(err, PF_ERR, "scoring gave a non-finite log-likelihood (the model's weights overflow?)");
    *nll = NAN;
    goto done;
  }
  *n_tokens = nt;
  if (ids) { *ids = tid; tid = NULL; }
  if (lp) { *lp = acc; acc = NULL; }
done:
  pf_tws_free(w);
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
