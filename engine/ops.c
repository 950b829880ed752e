/*
** ops.c — the numeric kernels. Each fast path has a naive reference beside it;
** tests check one against the other.
*/
#include "internal.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

/* A product split into column slices, one task each, run on the pool. */
typedef struct mm_job {
  int kind, nn, T, n_in, n_out, ncol, nslice, align, exact;
  float *out;
  const float *a, *w;
  const pf_wt *qw;   /* W of another type than F32 (w is then NULL) */
} mm_job;

static void mm_task(void *arg, int i) {
  const mm_job *j = arg;
  int per = (j->ncol + j->nslice - 1) / j->nslice;
  per = (per + j->align - 1) / j->align * j->align;
  int c0 = i * per, c1 = c0 + per < j->ncol ? c0 + per : j->ncol;
  if (j->qw && j->nn) pf_kernel_nn_w(j->kind, j->out, j->a, j->qw, j->T, c0, c1);
  else if (j->qw) pf_kernel_nt_w(j->kind, j->out, j->a, j->qw, j->T, c0, c1, j->exact);
  else if (j->nn) pf_kernel_nn_acc(j->kind, j->out, j->a, j->w, j->T, j->n_in, j->n_out, c0, c1);
  else pf_kernel_nt(j->kind, j->out, j->a, j->w, j->T, j->n_in, j->n_out, c0, c1);
}

static void mm_run(int nn, float *out, const float *a, const float *w, const pf_wt *qw, int T, int n_in, int n_out,
                   int exact) {
  int nt = pf_get_threads(), ncol = nn ? n_in : n_out, align = 32;
  double flops = 2.0 * T * n_in * n_out;
  int nslice = flops < 2e5 ? 1 : nt;   /* small products: not worth waking anyone */
  if (nslice > (ncol + align - 1) / align) nslice = (ncol + align - 1) / align;
  if (nslice < 1) nslice = 1;
  if (pf_gemm_parallel(pf_get_kernel(), nn, out, a, w, qw, T, n_in, n_out, nslice, exact)) return;
  mm_job j = {pf_get_kernel(), nn, T, n_in, n_out, ncol, nslice, align, exact, out, a, w, qw};
  if (nslice == 1) mm_task(&j, 0);
  else pf_parallel_for(nslice, mm_task, &j);
}

/* Items [0, n) in one chunk per thread, on the pool when the items hold
** enough elements (per_item each) to be worth it; every item is computed the
** same way whatever the chunking. */
typedef struct range_job { range_fn fn; void *ctx; size_t n, chunk; } range_job;
static void range_task(void *arg, int i) {
  const range_job *j = arg;
  size_t i0 = (size_t)i * j->chunk, i1 = i0 + j->chunk < j->n ? i0 + j->chunk : j->n;
  if (i0 < i1) j->fn(j->ctx, i0, i1);
}
static void parallel_items(size_t n, size_t per_item, range_fn fn, void *ctx) {
  int nt = pf_get_threads();
  if (nt <= 1 || n < 2 || n * per_item < 32768) { fn(ctx, 0, n); return; }
  if ((size_t)nt > n) nt = (int)n;
  range_job j = {fn, ctx, n, (n + (size_t)nt - 1) / (size_t)nt};
  pf_parallel_for(nt, range_task, &j);
}
void pf_parallel_range(size_t n, range_fn fn, void *ctx) { parallel_items(n, 1, fn, ctx); }

/* Row-wise work (norms, RoPE): rows [0, T) through parallel_items. */
typedef struct row_args {
  float *out, *o2, *o3;
  const float *inp, *w, *b, *dout, *a1, *a2;
  int C;
  float eps;
} row_args;
static void parallel_rows(int T, size_t per_row, range_fn fn, row_args *a) { parallel_items((size_t)T, per_row, fn, a); }

/* y += x over n elements, on the pool when long */
typedef struct add_args { float *y; const float *x; } add_args;
static void add_range(void *arg, size_t i0, size_t i1) {
  const add_args *a = arg;
  for (size_t i = i0; i < i1; i++) a->y[i] += a->x[i];
}
void pf_add_inplace(float *y, const float *x, size_t n) {
  add_args a = {y, x};
  pf_parallel_range(n, add_range, &a);
}

static int naive_kernels(void) { return pf_get_naive() || pf_get_kernel() == PF_KERNEL_NAIVE; }

/* out (T, n_out) = inp (T, n_in) · W^T; W is (n_out, n_in) row-major. */
void pf_matmul_naive(float *out, const float *inp, const float *w, int T, int n_in, int n_out) {
  for (size_t t = 0; t < (size_t)T; t++)
    for (size_t o = 0; o < (size_t)n_out; o++) {
      double acc = 0;
      const float *x = inp + t * n_in, *wr = w + o * n_in;
      for (size_t i = 0; i < (size_t)n_in; i++) acc += (double)x[i] * wr[i];
      out[t * n_out + o] = (float)acc;
    }
}

void pf_matmul(float *out, const float *inp, const float *w, int T, int n_in, int n_out) {
  if (naive_kernels()) { pf_matmul_naive(out, inp, w, T, n_in, n_out); return; }
  mm_run(0, out, inp, w, NULL, T, n_in, n_out, 1);
}

static void matmul_w(float *out, const float *inp, const pf_wt *w, int T, int exact) {
  const float *wf = pf_wt_f32(w);
  if (wf) pf_matmul(out, inp, wf, T, w->cols, w->rows);
  else if (naive_kernels()) pf_kernel_nt_panels(out, inp, w, T, 0, w->rows);
  else mm_run(0, out, inp, NULL, w, T, w->cols, w->rows, exact);
}
void pf_matmul_w(float *out, const float *inp, const pf_wt *w, int T) { matmul_w(out, inp, w, T, 0); }
void pf_matmul_w_exact(float *out, const float *inp, const pf_wt *w, int T) { matmul_w(out, inp, w, T, 1); }

void pf_matmul_backward_input_w(float *dinp, const float *dout, const pf_wt *w, int T) {
  const float *wf = pf_wt_f32(w);
  if (wf) pf_matmul_backward_input(dinp, dout, wf, T, w->cols, w->rows);
  else if (naive_kernels()) pf_kernel_nn_panels(dinp, dout, w, T, 0, w->cols);
  else mm_run(1, dinp, dout, NULL, w, T, w->cols, w->rows, 1);
}

/* out = inp / rms(inp) * weight, per row of C; 1/rms to o2 when given */
static void rmsnorm_rows(void *arg, size_t t0, size_t t1) {
  const row_args *a = arg;
  int C = a->C;
  for (size_t t = t0; t < t1; t++) {
    const float *x = a->inp + t * C;
    float ss = 0;
    for (int i = 0; i < C; i++) ss += x[i] * x[i];
    float r = 1.0f / sqrtf(ss / C + a->eps);
    if (a->o2) a->o2[t] = r;
    for (int i = 0; i < C; i++) a->out[t * C + i] = x[i] * r * a->w[i];
  }
}

/* RoPE. Pair i of each head's first r->dim values — adjacent (x[2i], x[2i+1]) or, NEOX, the halves
** (x[i], x[i + dim/2]) — is turned by the angle pos · scale · base^(-2i/dim) / factors[i]; sign -1 turns
** it back, which is the backward (the rotation is orthogonal). The frequencies are computed once per call
** (a table on the stack for dim <= 512, every real model). */
#define ROPE_TAB 256
typedef struct rope_job { float *x; const int *pos; int n_head, head_dim; const pf_rope_cfg *r; float sign; } rope_job;

static float rope_freq(const pf_rope_cfg *r, int i) {
  float f = powf(r->base, -2.0f * (float)i / (float)r->dim);
  return r->factors ? f / r->factors[i] : f;
}

static void rope_rows(void *arg, size_t t0, size_t t1) {
  const rope_job *j = arg;
  const pf_rope_cfg *r = j->r;
  int half = r->dim / 2, nh = j->n_head, hd = j->head_dim;
  float freq[ROPE_TAB];
  for (int i = 0; i < half && i < ROPE_TAB; i++) freq[i] = rope_freq(r, i);
  for (size_t t = t0; t < t1; t++) {
    float p = (float)j->pos[t] * r->scale;
    for (int i = 0; i < half; i++) {
      float theta = p * (i < ROPE_TAB ? freq[i] : rope_freq(r, i));
      float c = cosf(theta), sn = j->sign * sinf(theta);
      for (int h = 0; h < nh; h++) {
        float *x = j->x + ((size_t)t * nh + h) * hd;
        float *a = r->neox ? x + i : x + 2 * i, *b = r->neox ? x + i + half : x + 2 * i + 1;
        float u = *a, w = *b;
        *a = u * c - w * sn;
        *b = u * sn + w * c;
      }
    }
  }
}

void pf_rope_ex(float *x, const int *pos, int T, int n_head, int head_dim, const pf_rope_cfg *r, float sign) {
  rope_job j = {x, pos, n_head, head_dim, r, sign};
  parallel_items((size_t)T, (size_t)n_head * head_dim, rope_rows, &j);
}

void pf_rope(float *x, const int *pos, int T, int n_head, int head_dim, int rope_dim, float base) {
  pf_rope_cfg r = {rope_dim, 0, base, 1.0f, NULL};
  pf_rope_ex(x, pos, T, n_head, head_dim, &r, 1.0f);
}

void pf_softmax(float *x, int n) {
  float mx = x[0];
  for (int i = 1; i < n; i++) if (x[i] > mx) mx = x[i];
  float inv = (float)(1.0 / pf_vexp_sum(x, x, mx, n));
  for (int i = 0; i < n; i++) x[i] *= inv;
}

/* ------------------------------------------------------------ backward ops
** Gradients accumulate (+=). Model weights are frozen: only input gradients
** are computed for them; the prefix MLP uses pf_matmul_backward_weight. */

/* dinp (T, n_in) += dout (T, n_out) · W (n_out, n_in).
** In the forward pass this was: out = inp · W^T. */
void pf_matmul_backward_input(float *dinp, const float *dout, const float *w, int T, int n_in, int n_out) {
  if (naive_kernels()) {
    for (size_t t = 0; t < (size_t)T; t++)
      for (size_t i = 0; i < (size_t)n_in; i++) {
        double acc = 0;
        for (size_t o = 0; o < (size_t)n_out; o++) acc += (double)dout[t * n_out + o] * w[o * n_in + i];
        dinp[t * n_in + i] += (float)acc;
      }
    return;
  }
  mm_run(1, dinp, dout, w, NULL, T, n_in, n_out, 1);
}

/* dw (n_out, n_in) += dout^T (n_out, T) · inp (T, n_in). */
void pf_matmul_backward_weight(float *dw, const float *dout, const float *inp, int T, int n_in, int n_out) {
  pf_get_threads();
  if (pf_get_naive()) {
    for (size_t o = 0; o < (size_t)n_out; o++)
      for (size_t i = 0; i < (size_t)n_in; i++) {
        double acc = 0;
        for (size_t t = 0; t < (size_t)T; t++) acc += (double)dout[t * n_out + o] * inp[t * n_in + i];
        dw[o * n_in + i] += (float)acc;
      }
    return;
  }
  /* as dinp += dout·W with the roles turned: dw (n_out, n_in) += doutᵀ (n_out, T) · inp (T, n_in), so it runs on
  ** the engine's kernels and pool (OpenBLAS may be running generic kernels) */
  float *dt = pf_get_kernel() != PF_KERNEL_BLAS ? malloc(sizeof(float) * (size_t)T * n_out) : NULL;
  if (!dt) {
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n_out, n_in, T, 1.0f, dout, n_out, inp, n_in, 1.0f, dw, n_in);
    return;
  }
  pf_transpose(dt, dout, T, n_out);
  pf_matmul_backward_input(dw, dt, inp, n_out, n_in, T);
  free(dt);
}

/* RMSNorm that keeps 1/rms per row for the backward pass. */
void pf_rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight, int T, int C, float eps) {
  row_args a = {.out = out, .o2 = rstd, .inp = inp, .w = weight, .C = C, .eps = eps};
  parallel_rows(T, (size_t)C, rmsnorm_rows, &a);
}

/* In the forward pass this was: out[i] = inp[i] * rstd * weight[i].
** dinp[i] += rstd * w[i] * dout[i] - inp[i] * rstd^3 / C * sum_j dout[j] w[j] inp[j] */
static void rmsnorm_bwd_rows(void *arg, size_t t0, size_t t1) {
  const row_args *a = arg;
  int C = a->C;
  for (size_t t = t0; t < t1; t++) {
    const float *x = a->inp + t * C, *dy = a->dout + t * C, *weight = a->w;
    float r = a->a1[t], dot = 0;
    for (int i = 0; i < C; i++) dot += dy[i] * weight[i] * x[i];
    float c = dot * r * r * r / C;
    for (int i = 0; i < C; i++) a->out[t * C + i] += r * weight[i] * dy[i] - x[i] * c;
  }
}

void pf_rmsnorm_backward(float *dinp, const float *dout, const float *inp, const float *weight, const float *rstd, int T,
                         int C) {
  row_args a = {.out = dinp, .inp = inp, .w = weight, .dout = dout, .a1 = rstd, .C = C};
  parallel_rows(T, (size_t)C, rmsnorm_bwd_rows, &a);
}

/* The rotation is orthogonal: its backward is the rotation by -theta. */
void pf_rope_backward(float *dx, const int *pos, int T, int n_head, int head_dim, int rope_dim, float base) {
  pf_rope_cfg r = {rope_dim, 0, base, 1.0f, NULL};
  pf_rope_ex(dx, pos, T, n_head, head_dim, &r, -1.0f);
}

typedef struct ew { float *o1, *o2; const float *i1, *i2, *i3; } ew;

/* h = silu(g) * u */
static void swiglu_fwd_range(void *arg, size_t i0, size_t i1) {
  const ew *a = arg;
  if (pf_silu_mul_fast(a->o1 + i0, a->i1 + i0, a->i2 + i0, i1 - i0)) return;
  for (size_t i = i0; i < i1; i++) a->o1[i] = a->i1[i] / (1.0f + expf(-a->i1[i])) * a->i2[i];
}
void pf_swiglu_forward(float *h, const float *g, const float *u, size_t n) {
  ew a = {h, NULL, g, u, NULL};
  pf_parallel_range(n, swiglu_fwd_range, &a);
}
/* In the forward pass this was: h = g * sigmoid(g) * u. */
static void swiglu_bwd_range(void *arg, size_t i0, size_t i1) {
  const ew *a = arg;
  const float *dh = a->i1, *g = a->i2, *u = a->i3;
  if (pf_silu_mul_bwd_fast(a->o1 + i0, a->o2 + i0, dh + i0, g + i0, u + i0, i1 - i0)) return;
  for (size_t i = i0; i < i1; i++) {
    float sg = 1.0f / (1.0f + expf(-g[i])), silu = g[i] * sg;
    a->o1[i] += dh[i] * u[i] * (sg + silu * (1.0f - sg));
    a->o2[i] += dh[i] * silu;
  }
}
void pf_swiglu_backward(float *dg, float *du, const float *dh, const float *g, const float *u, size_t n) {
  ew a = {dg, du, dh, g, u};
  pf_parallel_range(n, swiglu_bwd_range, &a);
}

/* One row: loss = logsumexp(l) - l[target]; the softmax goes to dlogits
** (scaled, minus scale at the target). exp is taken once per logit. */
static double xent_row(float *dl, const float *l, int target, int V, float scale) {
  float mx = l[0];
  for (int i = 1; i < V; i++) if (l[i] > mx) mx = l[i];
  double sum = pf_vexp_sum(dl, l, mx, V);
  if (dl) {
    float f = (float)(scale / sum);
    for (int i = 0; i < V; i++) dl[i] *= f;
    dl[target] -= scale;
  }
  return mx + log(sum) - l[target];
}

typedef struct xent_job {
  float *dlogits;
  const float *logits;
  const int *targets;
  double *row_loss;
  int V;
  float scale;
} xent_job;

static void xent_range(void *arg, size_t r0, size_t r1) {
  const xent_job *j = arg;
  for (size_t r = r0; r < r1; r++)
    j->row_loss[r] = xent_row(j->dlogits ? j->dlogits + r * j->V : NULL, j->logits + r * j->V, j->targets[r], j->V,
                              j->scale);
}

/* Cross-entropy of logits (n, V) against targets; writes dlogits = scale *
** (softmax - onehot) and returns the summed loss in nats (double). Rows are
** split over the pool; the total is summed in row order, so it does not
** depend on the number of threads. */
double pf_xent_forward_backward(float *dlogits, const float *logits, const int *targets, int n, int V, float scale) {
  double loss = 0, *row_loss = n > 1 ? malloc(sizeof(double) * (size_t)n) : NULL;
  if (!row_loss) {   /* one row, or out of memory: row by row here */
    for (int r = 0; r < n; r++)
      loss += xent_row(dlogits ? dlogits + (size_t)r * V : NULL, logits + (size_t)r * V, targets[r], V, scale);
    return loss;
  }
  xent_job j = {dlogits, logits, targets, row_loss, V, scale};
  parallel_items((size_t)n, (size_t)V, xent_range, &j);
  for (int r = 0; r < n; r++) loss += row_loss[r];
  free(row_loss);
  return loss;
}

/* ------------------------------------------------------- GPT-2 building blocks */

/* LayerNorm with bias, keeping mean and 1/std per row for the backward pass. */
static void layernorm_rows(void *arg, size_t t0, size_t t1) {
  const row_args *a = arg;
  int C = a->C;
  float *out = a->out, *mean = a->o2, *rstd = a->o3, eps = a->eps;
  const float *w = a->w, *b = a->b;
  for (size_t t = t0; t < t1; t++) {
    const float *x = a->inp + t * C;
    float m = 0, v = 0;
    for (int i = 0; i < C; i++) m += x[i];
    m /= C;
    for (int i = 0; i < C; i++) v += (x[i] - m) * (x[i] - m);
    float r = 1.0f / sqrtf(v / C + eps);
    if (mean) mean[t] = m;
    if (rstd) rstd[t] = r;
    for (int i = 0; i < C; i++) out[t * C + i] = (x[i] - m) * r * w[i] + b[i];
  }
}

void pf_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w, const float *b, int T,
                          int C, float eps) {
  row_args a = {.out = out, .o2 = mean, .o3 = rstd, .inp = inp, .w = w, .b = b, .C = C, .eps = eps};
  parallel_rows(T, (size_t)C, layernorm_rows, &a);
}

/* In the forward pass this was: out = (x - mean) * rstd * w + b.
** dinp += rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dout * w. */
static void layernorm_bwd_rows(void *arg, size_t t0, size_t t1) {
  const row_args *a = arg;
  int C = a->C;
  float *dinp = a->out;
  const float *w = a->w, *mean = a->a1, *rstd = a->a2;
  for (size_t t = t0; t < t1; t++) {
    const float *x = a->inp + t * C, *dy = a->dout + t * C;
    float m = mean[t], r = rstd[t], sg = 0, sgx = 0;
    for (int i = 0; i < C; i++) {
      float g = dy[i] * w[i], xh = (x[i] - m) * r;
      sg += g;
      sgx += g * xh;
    }
    sg /= C;
    sgx /= C;
    for (int i = 0; i < C; i++) {
      float xh = (x[i] - m) * r;
      dinp[t * C + i] += r * (dy[i] * w[i] - sg - xh * sgx);
    }
  }
}

void pf_layernorm_backward(float *dinp, const float *dout, const float *inp, const float *w, const float *mean,
                           const float *rstd, int T, int C) {
  row_args a = {.out = dinp, .inp = inp, .w = w, .dout = dout, .a1 = mean, .a2 = rstd, .C = C};
  parallel_rows(T, (size_t)C, layernorm_bwd_rows, &a);
}

#define GELU_K 0.7978845608028654f   /* sqrt(2/pi) */
/* GELU, tanh approximation: 0.5 x (1 + tanh(k (x + 0.044715 x^3))) */
static void gelu_fwd_range(void *arg, size_t i0, size_t i1) {
  const ew *a = arg;
  if (pf_gelu_fast(a->o1 + i0, a->i1 + i0, i1 - i0)) return;
  for (size_t i = i0; i < i1; i++) {
    float x = a->i1[i];
    a->o1[i] = 0.5f * x * (1.0f + tanhf(GELU_K * (x + 0.044715f * x * x * x)));
  }
}
void pf_gelu_forward(float *out, const float *inp, size_t n) {
  ew a = {out, NULL, inp, NULL, NULL};
  pf_parallel_range(n, gelu_fwd_range, &a);
}
static void gelu_bwd_range(void *arg, size_t i0, size_t i1) {
  const ew *a = arg;
  if (pf_gelu_bwd_fast(a->o1 + i0, a->i1 + i0, a->i2 + i0, i1 - i0)) return;
  for (size_t i = i0; i < i1; i++) {
    float x = a->i1[i], u = GELU_K * (x + 0.044715f * x * x * x), t = tanhf(u);
    float d = 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * GELU_K * (1.0f + 3.0f * 0.044715f * x * x);
    a->o1[i] += a->i2[i] * d;
  }
}
void pf_gelu_backward(float *dinp, const float *inp, const float *dout, size_t n) {
  ew a = {dinp, NULL, inp, dout, NULL};
  pf_parallel_range(n, gelu_bwd_range, &a);
}

void pf_add_bias(float *out, const float *b, int T, int C) {
  for (size_t t = 0; t < (size_t)T; t++)
    for (int i = 0; i < C; i++) out[t * C + i] += b[i];
}
