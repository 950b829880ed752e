/*
** test_grad.c — finite-difference checks of every backward op and of the
** whole model's gradient with respect to the prefix (keys/values, learned
** embeddings, and the reparameterization MLP), on small random models with
** grouped-query attention.
*/
#include "internal.h"
#include "train.h"
#include "testlib.h"

#include <unistd.h>

/* compare analytic vs numeric gradients: |a - n| <= 5e-4 + tol * max(|a|, |n|) everywhere
** (float32 central differences carry ~1e-4 of absolute noise); report the worst ratio */
static void grad_report(const char *name, const double *an, const double *num, int n, double tol) {
  double worst = 0;
  int at = -1, nonzero = 0;
  for (int i = 0; i < n; i++) {
    double bound = 5e-4 + tol * fmax(fabs(an[i]), fabs(num[i])), e = fabs(an[i] - num[i]) / bound;
    if (e > worst || e != e) { worst = e; at = i; }
    nonzero += fabs(an[i]) > 1e-3;
  }
  CHECK(worst < 1.0 && nonzero >= n / 4, name, "worst error %.3g of the bound at %d (analytic %.6g, numeric %.6g), %d of %d non-zero",
        worst, at, at >= 0 ? an[at] : 0, at >= 0 ? num[at] : 0, nonzero, n);
}

/* ---- single ops: L = sum(r * f(x)) with random r ---- */
static double dotr(const float *a, const float *r, size_t n) { double s = 0; for (size_t i = 0; i < n; i++) s += (double)a[i] * r[i]; return s; }

static void op_rmsnorm(void) {
  enum { T = 3, C = 8 };
  float x[T * C], w[C], r[T * C], out[T * C], rstd[T], dx[T * C] = {0};
  for (int i = 0; i < T * C; i++) { x[i] = t_frand(); r[i] = t_frand(); }
  for (int i = 0; i < C; i++) w[i] = 1 + 0.3f * t_frand();
  pf_rmsnorm_forward(out, rstd, x, w, T, C, 1e-5f);
  pf_rmsnorm_backward(dx, r, x, w, rstd, T, C);
  double an[T * C], num[T * C];
  for (int i = 0; i < T * C; i++) {
    float keep = x[i], h = 1e-3f;
    x[i] = keep + h; pf_rmsnorm_forward(out, rstd, x, w, T, C, 1e-5f); double lp = dotr(out, r, T * C);
    x[i] = keep - h; pf_rmsnorm_forward(out, rstd, x, w, T, C, 1e-5f); double lm = dotr(out, r, T * C);
    x[i] = keep;
    an[i] = dx[i]; num[i] = (lp - lm) / (2 * h);
  }
  grad_report("gradcheck op: rmsnorm", an, num, T * C, 1e-2);
}

static void op_rope(void) {
  enum { T = 3, H = 2, D = 8 };
  float x[T * H * D], r[T * H * D], y[T * H * D];
  int pos[T] = {0, 5, 17};
  for (int i = 0; i < T * H * D; i++) { x[i] = t_frand(); r[i] = t_frand(); }
  float dx[T * H * D];
  memcpy(dx, r, sizeof dx);
  pf_rope_backward(dx, pos, T, H, D, D, 10000.0f);
  double an[T * H * D], num[T * H * D];
  for (int i = 0; i < T * H * D; i++) {
    float h = 1e-3f;
    memcpy(y, x, sizeof y); y[i] += h; pf_rope(y, pos, T, H, D, D, 10000.0f); double lp = dotr(y, r, T * H * D);
    memcpy(y, x, sizeof y); y[i] -= h; pf_rope(y, pos, T, H, D, D, 10000.0f); double lm = dotr(y, r, T * H * D);
    an[i] = dx[i]; num[i] = (lp - lm) / (2 * h);
  }
  grad_report("gradcheck op: rope", an, num, T * H * D, 1e-2);
}

/* RoPE as the families use it: NEOX halves, Llama 3 frequency divisors, linear scaling, partial rotary */
static void op_rope_ex(void) {
  enum { T = 3, H = 2, D = 8 };
  float x[T * H * D], r[T * H * D], y[T * H * D], factors[3] = {1.0f, 2.5f, 7.0f};
  int pos[T] = {0, 5, 17};
  for (int v = 0; v < 2; v++) {
    pf_rope_cfg cfg = {6, v == 0, 500000.0f, 0.25f, factors};   /* 6 of 8 dims rotated */
    for (int i = 0; i < T * H * D; i++) { x[i] = t_frand(); r[i] = t_frand(); }
    float dx[T * H * D];
    memcpy(dx, r, sizeof dx);
    pf_rope_ex(dx, pos, T, H, D, &cfg, -1.0f);
    double an[T * H * D], num[T * H * D];
    for (int i = 0; i < T * H * D; i++) {
      float h = 1e-3f;
      memcpy(y, x, sizeof y); y[i] += h; pf_rope_ex(y, pos, T, H, D, &cfg, 1.0f); double lp = dotr(y, r, T * H * D);
      memcpy(y, x, sizeof y); y[i] -= h; pf_rope_ex(y, pos, T, H, D, &cfg, 1.0f); double lm = dotr(y, r, T * H * D);
      an[i] = dx[i]; num[i] = (lp - lm) / (2 * h);
    }
    grad_report(v == 0 ? "gradcheck op: rope NEOX, frequency divisors, linear scaling, partial rotary"
                       : "gradcheck op: rope adjacent pairs, frequency divisors, linear scaling, partial rotary",
                an, num, T * H * D, 1e-2);
  }
}

static void op_swiglu(void) {
  enum { N = 32 };
  float g[N], u[N], r[N], h[N], dg[N] = {0}, du[N] = {0};
  for (int i = 0; i < N; i++) { g[i] = 3 * t_frand(); u[i] = t_frand(); r[i] = t_frand(); }
  pf_swiglu_backward(dg, du, r, g, u, N);
  double an[2 * N], num[2 * N];
  for (int i = 0; i < N; i++) {
    float keep = g[i], e = 1e-3f;
    g[i] = keep + e; pf_swiglu_forward(h, g, u, N); double lp = dotr(h, r, N);
    g[i] = keep - e; pf_swiglu_forward(h, g, u, N); double lm = dotr(h, r, N);
    g[i] = keep; an[i] = dg[i]; num[i] = (lp - lm) / (2 * e);
    keep = u[i];
    u[i] = keep + e; pf_swiglu_forward(h, g, u, N); lp = dotr(h, r, N);
    u[i] = keep - e; pf_swiglu_forward(h, g, u, N); lm = dotr(h, r, N);
    u[i] = keep; an[N + i] = du[i]; num[N + i] = (lp - lm) / (2 * e);
  }
  grad_report("gradcheck op: swiglu", an, num, 2 * N, 1e-2);
}

static void op_layernorm(void) {
  enum { T = 3, C = 8 };
  float x[T * C], w[C], bb[C], r[T * C], out[T * C], mean[T], rstd[T], dx[T * C] = {0};
  for (int i = 0; i < T * C; i++) { x[i] = 2 * t_frand(); r[i] = t_frand(); }
  for (int i = 0; i < C; i++) { w[i] = 1 + 0.3f * t_frand(); bb[i] = 0.2f * t_frand(); }
  pf_layernorm_forward(out, mean, rstd, x, w, bb, T, C, 1e-5f);
  pf_layernorm_backward(dx, r, x, w, mean, rstd, T, C);
  double an[T * C], num[T * C];
  for (int i = 0; i < T * C; i++) {
    float keep = x[i], h = 1e-3f;
    x[i] = keep + h; pf_layernorm_forward(out, NULL, NULL, x, w, bb, T, C, 1e-5f); double lp = dotr(out, r, T * C);
    x[i] = keep - h; pf_layernorm_forward(out, NULL, NULL, x, w, bb, T, C, 1e-5f); double lm = dotr(out, r, T * C);
    x[i] = keep;
    an[i] = dx[i]; num[i] = (lp - lm) / (2 * h);
  }
  grad_report("gradcheck op: layernorm", an, num, T * C, 1e-2);
}

static void op_gelu(void) {
  enum { N = 32 };
  float x[N], r[N], y[N], dx[N] = {0};
  for (int i = 0; i < N; i++) { x[i] = 4 * t_frand(); r[i] = t_frand(); }
  pf_gelu_backward(dx, x, r, N);
  double an[N], num[N];
  for (int i = 0; i < N; i++) {
    float keep = x[i], h = 1e-3f;
    x[i] = keep + h; pf_gelu_forward(y, x, N); double lp = dotr(y, r, N);
    x[i] = keep - h; pf_gelu_forward(y, x, N); double lm = dotr(y, r, N);
    x[i] = keep;
    an[i] = dx[i]; num[i] = (lp - lm) / (2 * h);
  }
  grad_report("gradcheck op: gelu (tanh approximation)", an, num, N, 1e-2);
}

static void op_xent(void) {
  enum { R = 3, V = 11 };
  float l[R * V], dl[R * V];
  int tg[R] = {0, 4, 10};
  for (int i = 0; i < R * V; i++) l[i] = 2 * t_frand();
  pf_xent_forward_backward(dl, l, tg, R, V, 1.0f);
  double an[R * V], num[R * V];
  for (int i = 0; i < R * V; i++) {
    float keep = l[i], h = 1e-3f;
    l[i] = keep + h; double lp = pf_xent_forward_backward(NULL, l, tg, R, V, 1);
    l[i] = keep - h; double lm = pf_xent_forward_backward(NULL, l, tg, R, V, 1);
    l[i] = keep; an[i] = dl[i]; num[i] = (lp - lm) / (2 * h);
  }
  grad_report("gradcheck op: softmax cross-entropy", an, num, R * V, 1e-2);
}

static void op_matmul(void) {
  enum { T = 4, I = 6, O = 5 };
  float x[T * I], w[O * I], r[T * O], y[T * O], dx[T * I] = {0}, dw[O * I] = {0};
  for (int i = 0; i < T * I; i++) x[i] = t_frand();
  for (int i = 0; i < O * I; i++) w[i] = t_frand();
  for (int i = 0; i < T * O; i++) r[i] = t_frand();
  for (int naive = 0; naive < 2; naive++) {
    pf_set_naive(naive);
    memset(dx, 0, sizeof dx); memset(dw, 0, sizeof dw);
    pf_matmul_backward_input(dx, r, w, T, I, O);
    pf_matmul_backward_weight(dw, r, x, T, I, O);
    double an[T * I + O * I], num[T * I + O * I];
    for (int i = 0; i < T * I; i++) {
      float keep = x[i], h = 1e-2f;
      x[i] = keep + h; pf_matmul(y, x, w, T, I, O); double lp = dotr(y, r, T * O);
      x[i] = keep - h; pf_matmul(y, x, w, T, I, O); double lm = dotr(y, r, T * O);
      x[i] = keep; an[i] = dx[i]; num[i] = (lp - lm) / (2 * h);
    }
    for (int i = 0; i < O * I; i++) {
      float keep = w[i], h = 1e-2f;
      w[i] = keep + h; pf_matmul(y, x, w, T, I, O); double lp = dotr(y, r, T * O);
      w[i] = keep - h; pf_matmul(y, x, w, T, I, O); double lm = dotr(y, r, T * O);
      w[i] = keep; an[T * I + i] = dw[i]; num[T * I + i] = (lp - lm) / (2 * h);
    }
    grad_report(naive ? "gradcheck op: matmul input+weight (naive)" : "gradcheck op: matmul input+weight (kernels)", an, num,
                T * I + O * I, 1e-2);
  }
  pf_set_naive(0);
}

/* ---- the whole model ---- */
static char model_path[256];

static double batch_loss(pf_model *m, pf_tws *w, const pf_tbatch *b, const pf_prefix_in *pin) {
  double ls; int nt; pf_err e;
  pf_prefix_in p = *pin;
  p.dkv = NULL; p.dembd = NULL;
  if (pf_train_step(m, w, b, &p, 1.0f, 0, &ls, &nt, NULL, NULL, &e)) { printf("# %s\n", e.msg); return NAN; }
  return ls;
}

static void whole_model(const char *label, const char *mk_args) {
  if (t_mkmodel(model_path, mk_args)) { CHECK(0, label, "mkmodel failed: %s", mk_args); return; }
  pf_err e;
  pf_model *m = pf_model_load(model_path, &e);
  if (!m) { CHECK(0, label, "%s", e.msg); return; }
  const pf_hparams *hp = pf_model_hparams(m);
  int P = 3, kvd = hp->n_head_kv * hp->head_dim, V = hp->n_vocab;
  size_t nkv = (size_t)hp->n_layer * 2 * P * kvd;
  float *kv = malloc(sizeof(float) * nkv), *dkv = calloc(nkv, sizeof(float));
  for (size_t i = 0; i < nkv; i++) kv[i] = t_frand();
  int len[2] = {7, 5}, tokens[12], targets[12];
  for (int i = 0; i < 12; i++) { tokens[i] = 3 + (int)((t_frand() + 1) * 0.5f * (V - 4)); targets[i] = -1; }
  for (int i = 3; i < 7; i++) targets[i] = tokens[i + 1 < 7 ? i + 1 : 6];
  for (int i = 9; i < 12; i++) targets[i] = tokens[i + 1 < 12 ? i + 1 : 11];
  pf_tbatch b = {2, len, tokens, targets};
  pf_tws *w = pf_tws_new();
  pf_prefix_in pin = {P, kv, dkv, 0, NULL, NULL};
  double ls; int nt;
  int rc = pf_train_step(m, w, &b, &pin, 1.0f, 1, &ls, &nt, NULL, NULL, &e);
  CHECK(rc == 0 && nt == 7, label, "train step: %s (n_tgt %d)", rc ? e.msg : "", nt);
  /* check a spread of prefix entries in every layer, keys and values */
  enum { NCHK = 48 };
  double an[NCHK], num[NCHK];
  for (int c = 0; c < NCHK; c++) {
    size_t i = ((size_t)c * nkv / NCHK + (size_t)c % 3) % nkv;
    float keep = kv[i], h = 1e-2f;
    kv[i] = keep + h; double lp = batch_loss(m, w, &b, &pin);
    kv[i] = keep - h; double lm = batch_loss(m, w, &b, &pin);
    kv[i] = keep;
    an[c] = dkv[i]; num[c] = (lp - lm) / (2 * h);
  }
  char name[160];
  snprintf(name, sizeof name, "gradcheck whole model w.r.t. prefix keys/values (%s)", label);
  grad_report(name, an, num, NCHK, 2e-2);

  /* embedding mode: the first 2 tokens of each sequence are learned embeddings */
  int E = 2, d = hp->n_embd;
  float *emb = malloc(sizeof(float) * E * d), *demb = calloc((size_t)E * d, sizeof(float));
  for (int i = 0; i < E * d; i++) emb[i] = t_frand();
  pf_prefix_in pe = {0, NULL, NULL, E, emb, demb};
  rc = pf_train_step(m, w, &b, &pe, 1.0f, 1, &ls, &nt, NULL, NULL, &e);
  for (int c = 0; c < NCHK && c < E * d; c++) {
    int i = (c * 7) % (E * d);
    float keep = emb[i], h = 1e-2f;
    emb[i] = keep + h; double lp = batch_loss(m, w, &b, &pe);
    emb[i] = keep - h; double lm = batch_loss(m, w, &b, &pe);
    emb[i] = keep;
    an[c] = demb[i]; num[c] = (lp - lm) / (2 * h);
  }
  snprintf(name, sizeof name, "gradcheck whole model w.r.t. learned input embeddings (%s)", label);
  grad_report(name, an, num, NCHK < E * d ? NCHK : E * d, 2e-2);

  /* the training forward gives the inference forward's logits */
  float *lt = malloc(sizeof(float) * 12 * V), *li = malloc(sizeof(float) * 12 * V);
  pf_prefix_in pn = {P, kv, NULL, 0, NULL, NULL};
  rc = pf_train_logits(m, w, &b, &pn, lt, &e);
  pf_seq *s = pf_seq_new(m, 32, &e);
  pf_work *wk = pf_work_new();
  pf_seq_set_prefix(s, kv, P, &e);
  rc = rc ? rc : pf_forward(m, wk, &s, &len[0], 1, tokens, li, 1, &e);
  pf_seq_reset(s);
  rc = rc ? rc : pf_forward(m, wk, &s, &len[1], 1, tokens + 7, li + (size_t)7 * V, 1, &e);
  snprintf(name, sizeof name, "training forward = inference forward with a prefix (%s)", label);
  CHECK(rc == 0 && t_maxdiff(lt, li, (size_t)12 * V) < 1e-4, name, "max diff %g", t_maxdiff(lt, li, (size_t)12 * V));
  free(lt); free(li);
  pf_seq_free(s); pf_work_free(wk);
  free(emb); free(demb); free(kv); free(dkv);
  pf_tws_free(w);
  pf_model_free(m);
}

/* the reparameterization MLP: gradients of the loss through kv = MLP(P') to every MLP parameter */
static void reparam(const char *mk_args) {
  if (t_mkmodel(model_path, mk_args)) { CHECK(0, "reparam model", "mkmodel failed"); return; }
  pf_err e;
  pf_model *m = pf_model_load(model_path, &e);
  const pf_hparams *hp = pf_model_hparams(m);
  int P = 2, V = hp->n_vocab;
  pf_pparams *pp = pf_pparams_new(m, PF_MODE_PREFIX, P, 6, &e);
  pf_pparams_init(pp, 3, NULL, NULL, 1.0f, &e);
  int len[1] = {6}, tokens[6], targets[6];
  for (int i = 0; i < 6; i++) tokens[i] = 3 + (int)((t_frand() + 1) * 0.5f * (V - 4));
  for (int i = 0; i < 6; i++) targets[i] = i >= 2 ? tokens[(i + 1) % 6] : -1;
  pf_tbatch b = {1, len, tokens, targets};
  pf_tws *w = pf_tws_new();
  pf_prefix_in pin = {P, pf_pparams_kv(pp), pf_pparams_dkv(pp), 0, NULL, NULL};
  double ls; int nt;
  pf_pparams_zero_grad(pp);
  pf_pparams_forward(pp);
  pf_train_step(m, w, &b, &pin, 1.0f, 1, &ls, &nt, NULL, NULL, &e);
  pf_pparams_backward(pp);
  size_t n = pf_pparams_count(pp);
  float *par = pf_pparams_data(pp), *gr = pf_pparams_grad(pp);
  enum { NCHK = 40 };
  double an[NCHK], num[NCHK];
  pf_prefix_in pe = pin;
  pe.dkv = NULL;
  for (int c = 0; c < NCHK; c++) {
    size_t i = ((size_t)c * n / NCHK + (size_t)c % 5) % n;   /* spread over P', W1, b1, W2, b2 */
    float keep = par[i], h = 1e-2f;
    par[i] = keep + h; pf_pparams_forward(pp); double lp = batch_loss(m, w, &b, &pe);
    par[i] = keep - h; pf_pparams_forward(pp); double lm = batch_loss(m, w, &b, &pe);
    par[i] = keep;
    an[c] = gr[i]; num[c] = (lp - lm) / (2 * h);
  }
  grad_report("gradcheck whole model w.r.t. the reparameterization MLP (P', W1, b1, W2, b2)", an, num, NCHK, 2e-2);
  /* AdamW moves every parameter against its gradient on the first step */
  float *before = malloc(sizeof(float) * n);
  memcpy(before, par, sizeof(float) * n);
  pf_adamw(pp, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f, 1, 1.0f);
  int ok = 1;
  for (size_t i = 0; i < n; i++)
    if (gr[i] != 0 && !((par[i] - before[i]) * gr[i] < 0 && fabsf(par[i] - before[i] - (gr[i] > 0 ? -1e-3f : 1e-3f)) < 1e-5f)) ok = 0;
  CHECK(ok, "AdamW first step moves each parameter by lr against its gradient", "");
  free(before);
  pf_tws_free(w);
  pf_pparams_free(pp);
  pf_model_free(m);
}

/* the blocked attention (small matrix products per sequence and head) gives the
** row-at-a-time loops' loss and prefix gradient, on sequences long enough for
** the packed GEMM (16 rows or more) and one short one */
static void attn_blocked_vs_rows(const char *label, const char *mk_args) {
  char name[160];
  if (t_mkmodel(model_path, mk_args)) { CHECK(0, label, "mkmodel failed: %s", mk_args); return; }
  pf_err e;
  pf_model *m = pf_model_load(model_path, &e);
  const pf_hparams *hp = pf_model_hparams(m);
  int P = 10, V = hp->n_vocab, kvd = hp->n_head_kv * hp->head_dim;
  size_t nkv = (size_t)hp->n_layer * 2 * P * kvd;
  int len[3] = {40, 17, 5}, T = 62, tokens[62], targets[62];
  for (int i = 0; i < T; i++) tokens[i] = 3 + (int)((t_frand() + 1) * 0.5f * (V - 4));
  for (int i = 0; i < T; i++) targets[i] = i % 3 ? tokens[(i + 1) % T] : -1;
  pf_tbatch b = {3, len, tokens, targets};
  float *kv = malloc(sizeof(float) * nkv), *dkv[2];
  for (size_t i = 0; i < nkv; i++) kv[i] = t_frand();
  double loss[2];
  pf_tws *w = pf_tws_new();
  int rc = 0;
  for (int rows = 0; rows < 2; rows++) {
    dkv[rows] = calloc(nkv, sizeof(float));
    pf_prefix_in pin = {P, kv, dkv[rows], 0, NULL, NULL};
    int nt;
    pf_attn_rows = rows;
    rc |= pf_train_step(m, w, &b, &pin, 1.0f / 40, 1, &loss[rows], &nt, NULL, NULL, &e);
  }
  pf_attn_rows = 0;
  double g = 0;
  for (size_t i = 0; i < nkv; i++) g = fabs(dkv[1][i]) > g ? fabs(dkv[1][i]) : g;
  double d = t_maxdiff(dkv[0], dkv[1], nkv);
  snprintf(name, sizeof name, "blocked attention = row attention: loss and prefix gradient (%s)", label);
  CHECK(rc == 0 && fabs(loss[0] - loss[1]) < 1e-4 * fabs(loss[1]) && d < 1e-4 * g && g > 0, name,
        "loss %.7g vs %.7g, max diff %g of max %g", loss[0], loss[1], d, g);
  free(kv); free(dkv[0]); free(dkv[1]);
  pf_tws_free(w);
  pf_model_free(m);
}

/* Sequences that begin alike (a template, BOS) share those rows in a pass: computed once, the other sequences'
** attention reads them. Loss and prefix gradient equal the unshared pass's (every sequence with its own copy),
** with the blocked attention and row at a time; the head stops at the first differing token, at a target, and
** one row short of the shortest sequence. */
static void shared_head_vs_copies(const char *label, const char *mk_args) {
  char name[200];
  if (t_mkmodel(model_path, mk_args)) { CHECK(0, label, "mkmodel failed: %s", mk_args); return; }
  pf_err e;
  pf_model *m = pf_model_load(model_path, &e);
  const pf_hparams *hp = pf_model_hparams(m);
  int P = 6, V = hp->n_vocab, kvd = hp->n_head_kv * hp->head_dim;
  size_t nkv = (size_t)hp->n_layer * 2 * P * kvd;
  float *kv = malloc(sizeof(float) * nkv), *dkv[2];
  for (size_t i = 0; i < nkv; i++) kv[i] = t_frand();
  pf_tws *w = pf_tws_new();
  /* case 0: a 9-token template (no targets) then different rests; case 1: sequence 2 differs at token 5;
  ** case 2: sequence 1 has a target at token 4; case 3: the shortest sequence is the template (9 tokens): its last row stays its own */
  static const int lens[4][4] = {{40, 25, 12, 30}, {40, 25, 12, 30}, {40, 25, 12, 30}, {40, 25, 9, 30}};
  static const int want[4] = {9, 5, 4, 8};
  for (int c = 0; c < 4; c++) {
    int T = 0, tokens[120], targets[120], off = 0;
    for (int s = 0; s < 4; s++) T += lens[c][s];
    for (int s = 0; s < 4; s++) {
      for (int i = 0; i < lens[c][s]; i++) {
        int t = off + i;
        tokens[t] = i < 9 ? 3 + (i * 37) % (V - 4) : 3 + (int)((t_frand() + 1) * 0.5f * (V - 4));
        targets[t] = i >= 9 && i % 2 ? 3 + (t * 11) % (V - 4) : -1;
      }
      if (c == 1 && s == 2) tokens[off + 5] = tokens[5] == 3 ? 4 : 3;
      if (c == 2 && s == 1) targets[off + 4] = 7;
      off += lens[c][s];
    }
    pf_tbatch b = {4, lens[c], tokens, targets};
    for (int rows = 0; rows < 2; rows++) {
      double loss[2], fwd[2];
      int shared[2], rc = 0;
      for (int share = 0; share < 2; share++) {
        dkv[share] = calloc(nkv, sizeof(float));
        pf_prefix_in pin = {P, kv, dkv[share], 0, NULL, NULL};
        int nt;
        pf_attn_rows = rows;
        pf_train_share = share;
        rc |= pf_train_step(m, w, &b, &pin, 1.0f / 40, 1, &loss[share], &nt, NULL, NULL, &e);
        shared[share] = pf_tws_last_shared(w);
        rc |= pf_train_step(m, w, &b, &pin, 1.0f, 0, &fwd[share], &nt, NULL, NULL, &e);   /* validation's pass */
      }
      pf_attn_rows = 0;
      pf_train_share = 1;
      double g = 0;
      for (size_t i = 0; i < nkv; i++) g = fabs(dkv[0][i]) > g ? fabs(dkv[0][i]) : g;
      double d = t_maxdiff(dkv[0], dkv[1], nkv);
      snprintf(name, sizeof name, "a shared head of %d rows computed once = a copy per sequence: loss, prefix gradient "
               "(%s, case %d, %s)", want[c], label, c, rows ? "rows" : "blocked");
      CHECK(rc == 0 && shared[0] == 0 && shared[1] == want[c] && fabs(loss[0] - loss[1]) < 1e-5 * fabs(loss[0]) &&
              fabs(fwd[0] - fwd[1]) < 1e-5 * fabs(fwd[0]) && d < 1e-5 * g && g > 0, name,
            "shared %d/%d, loss %.8g vs %.8g, forward %.8g vs %.8g, max diff %g of max %g", shared[0], shared[1],
            loss[0], loss[1], fwd[0], fwd[1], d, g);
      free(dkv[0]); free(dkv[1]);
    }
  }
  free(kv);
  pf_tws_free(w);
  pf_model_free(m);
}

int main(void) {
  snprintf(model_path, sizeof model_path, "/tmp/pf_grad_%d.gguf", (int)getpid());
  op_rmsnorm();
  op_rope();
  op_rope_ex();
  op_swiglu();
  op_xent();
  op_matmul();
  op_layernorm();
  op_gelu();
  whole_model("llama, 2 layers, GQA 4/2 heads", "--layers 2 --embd 32 --heads 4 --heads-kv 2 --ff 48 --vocab 300 --scale 1.5");
  whole_model("llama, 3 layers, MQA 4/1 heads", "--layers 3 --embd 16 --heads 4 --heads-kv 1 --ff 24 --vocab 280 --scale 1.5 --seed 5");
  whole_model("gpt2, 2 layers, 4 heads", "--arch gpt2 --layers 2 --embd 32 --heads 4 --ff 48 --vocab 300 --ctx 64 --scale 1.5");
  whole_model("gpt2, 3 layers, 2 heads, untied", "--arch gpt2 --layers 3 --embd 16 --heads 2 --ff 24 --vocab 280 --ctx 32 --untied --scale 1.5 --seed 8");
  attn_blocked_vs_rows("llama, GQA 4/2 heads of 32", "--layers 2 --embd 128 --heads 4 --heads-kv 2 --ff 96 --vocab 300 --seed 3");
  attn_blocked_vs_rows("gpt2, 4 heads of 16", "--arch gpt2 --layers 2 --embd 64 --heads 4 --ff 96 --vocab 300 --ctx 128 --seed 4");
  shared_head_vs_copies("llama, GQA 4/2 heads of 32", "--layers 2 --embd 128 --heads 4 --heads-kv 2 --ff 96 --vocab 300 --seed 6");
  shared_head_vs_copies("gpt2, learned positions", "--arch gpt2 --layers 2 --embd 64 --heads 4 --ff 96 --vocab 300 --ctx 128 --seed 7");
  reparam("--layers 2 --embd 16 --heads 4 --heads-kv 2 --ff 24 --vocab 280 --scale 1.5 --seed 9");
  unlink(model_path);
  return t_failed ? 1 : 0;
}
