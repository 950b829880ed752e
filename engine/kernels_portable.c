/*
** kernels_portable.c — the portable kernel table (kernels.h): plain C11 for any CPU (ARM64, RISC-V, old
** x86, big-endian hosts are refused at load), and the reference the instruction-set tables are tested
** beside. PREFIX_KERNEL=portable chooses it on any machine.
**
** The loops are written so a compiler at -O2 vectorizes them without reordering a sum (eight independent
** partial sums per dot product, outer products along a row): blocked for the caches as the x86 tables
** are, but one value at a time. Weights of other types than F32 are unpacked 32 elements at a time
** (quant.c's exact decoders) into rows or panels of f32, then multiplied.
*/
#include "kernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Σ a[i]·b[i] in eight lanes, then the lanes in a fixed order */
static float dot_portable(const float *a, const float *b, int n) {
  float s[8] = {0};
  int i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; j++) s[j] += a[i + j] * b[i + j];
  float t = ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
  for (; i < n; i++) t += a[i] * b[i];
  return t;
}

static void axpy_portable(float *y, float a, const float *x, int n) {
  for (int i = 0; i < n; i++) y[i] += a * x[i];
}

/* out[t][n] for 4 rows of A × 4 rows of W at a time, each a dot product in eight lanes */
static void tile_nt(float *c, int ldc, const float *a, int lda, const float *w, int ldw, int K, int mr, int nr) {
  float s[4][4][8];
  memset(s, 0, sizeof s);
  int k = 0;
  for (; k + 8 <= K; k += 8)
    for (int i = 0; i < mr; i++)
      for (int j = 0; j < nr; j++)
        for (int l = 0; l < 8; l++) s[i][j][l] += a[(size_t)i * lda + k + l] * w[(size_t)j * ldw + k + l];
  for (int i = 0; i < mr; i++)
    for (int j = 0; j < nr; j++) {
      float *v = s[i][j], t = ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
      for (int kk = k; kk < K; kk++) t += a[(size_t)i * lda + kk] * w[(size_t)j * ldw + kk];
      c[(size_t)i * ldc + j] = t;
    }
}

static void nt_portable(float *out, const float *A, const float *W, int T, int K, int N, int c0, int c1) {
  /* rows of A in blocks that stay in L2 while 4 rows of W sit in L1 */
  int tb = K > 0 ? (int)(((size_t)256 * 1024) / ((size_t)K * 4)) : T;
  if (tb < 4) tb = 4;
  for (int t0 = 0; t0 < T; t0 += tb) {
    int t1 = t0 + tb < T ? t0 + tb : T;
    for (int n = c0; n < c1; n += 4) {
      int nr = c1 - n < 4 ? c1 - n : 4;
      for (int t = t0; t < t1; t += 4) {
        int mr = t1 - t < 4 ? t1 - t : 4;
        tile_nt(out + (size_t)t * N + n, N, A + (size_t)t * K, K, W + (size_t)n * K, K, K, mr, nr);
      }
    }
  }
}

/* dA[t][c0:c1] += Σ_n dY[t][n] · W[n][c0:c1]: outer products along rows of W, N in blocks of 256 */
static void nn_portable(float *dA, const float *dY, const float *W, int T, int K, int N, int c0, int c1) {
  for (int n0 = 0; n0 < N; n0 += 256) {
    int n1 = n0 + 256 < N ? n0 + 256 : N;
    for (int t = 0; t < T; t++) {
      float *y = dA + (size_t)t * K + c0;
      for (int n = n0; n < n1; n++) axpy_portable(y, dY[(size_t)t * N + n], W + (size_t)n * K + c0, c1 - c0);
    }
  }
}

#define PANEL 64   /* rows of a quantized W unpacked to f32 at once */

static void nt_dec_portable(float *out, const float *A, const pf_wt *W, int T, int c0, int c1, int exact) {
  (void)exact;
  pf_nt_dec_chunks(dot_portable, out, A, W, T, c0, c1);
}

static void nt_w_portable(float *out, const float *A, const pf_wt *W, int T, int c0, int c1, int exact) {
  const float *wf = pf_wt_f32(W);
  int K = W->cols, N = W->rows;
  if (wf) { nt_portable(out, A, wf, T, K, N, c0, c1); return; }
  size_t cap;
  float *tmp = T > 2 ? pf_scratch_get((size_t)PANEL * K, &cap) : NULL;
  if (!tmp) { nt_dec_portable(out, A, W, T, c0, c1, exact); return; }   /* decode, or no memory for a panel */
  for (int n = c0; n < c1; n += PANEL) {
    int r = c1 - n < PANEL ? c1 - n : PANEL;
    for (int i = 0; i < r; i++) pf_wt_deq_with(NULL, W, n + i, 0, K, tmp + (size_t)i * K);
    for (int t0 = 0; t0 < T; t0 += 4) {
      int mr = T - t0 < 4 ? T - t0 : 4;
      for (int i = 0; i < r; i += 4)
        tile_nt(out + (size_t)t0 * N + n + i, N, A + (size_t)t0 * K, K, tmp + (size_t)i * K, K, K, mr, r - i < 4 ? r - i : 4);
    }
  }
  pf_scratch_put(tmp, cap);
}

static void nn_w_portable(float *dA, const float *dY, const pf_wt *W, int T, int c0, int c1) {
  const float *wf = pf_wt_f32(W);
  int K = W->cols, N = W->rows, w = c1 - c0;
  if (wf) { nn_portable(dA, dY, wf, T, K, N, c0, c1); return; }
  if (w <= 0) return;
  size_t cap;
  float *tmp = pf_scratch_get((size_t)PANEL * w, &cap), buf[32];
  for (int n0 = 0; n0 < N; n0 += PANEL) {
    int r = N - n0 < PANEL ? N - n0 : PANEL;
    if (tmp) {
      for (int i = 0; i < r; i++) pf_wt_deq_with(NULL, W, n0 + i, c0, c1, tmp + (size_t)i * w);
      for (int t = 0; t < T; t++)
        for (int i = 0; i < r; i++) axpy_portable(dA + (size_t)t * K + c0, dY[(size_t)t * N + n0 + i], tmp + (size_t)i * w, w);
    } else   /* no memory for a panel: one chunk at a time */
      for (int i = 0; i < r; i++)
        for (int k = c0; k < c1; k += 32) {
          int kk = c1 - k < 32 ? c1 - k : 32;
          pf_wt_deq_with(NULL, W, n0 + i, k, k + kk, buf);
          for (int t = 0; t < T; t++) axpy_portable(dA + (size_t)t * K + k, dY[(size_t)t * N + n0 + i], buf, kk);
        }
  }
  if (tmp) pf_scratch_put(tmp, cap);
}

static double vexp_sum_portable(float *dst, const float *x, float sub, int n) {
  double sum = 0;
  for (int i = 0; i < n; i++) {
    float e = expf(x[i] - sub);
    if (dst) dst[i] = e;
    sum += e;
  }
  return sum;
}

/* SwiGLU and GELU: the reference formulas (as ops.c's loops for naive and blas) */
static void silu_mul_portable(float *h, const float *g, const float *u, size_t n) {
  for (size_t i = 0; i < n; i++) h[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}
static void silu_mul_bwd_portable(float *dg, float *du, const float *dh, const float *g, const float *u, size_t n) {
  for (size_t i = 0; i < n; i++) {
    float sg = 1.0f / (1.0f + expf(-g[i])), silu = g[i] * sg;
    dg[i] += dh[i] * u[i] * (sg + silu * (1.0f - sg));
    du[i] += dh[i] * silu;
  }
}
#define GELU_K 0.7978845608028654f   /* sqrt(2/pi) */
static void gelu_portable(float *out, const float *inp, size_t n) {
  for (size_t i = 0; i < n; i++) {
    float x = inp[i];
    out[i] = 0.5f * x * (1.0f + tanhf(GELU_K * (x + 0.044715f * x * x * x)));
  }
}
static void gelu_bwd_portable(float *dinp, const float *inp, const float *dout, size_t n) {
  for (size_t i = 0; i < n; i++) {
    float x = inp[i], u = GELU_K * (x + 0.044715f * x * x * x), t = tanhf(u);
    float d = 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * GELU_K * (1.0f + 3.0f * 0.044715f * x * x);
    dinp[i] += dout[i] * d;
  }
}

static void attend_portable(float *out, const float *q, const float *K, const float *V, int n, int ld, int hd,
                            float scale, float *att) {
  for (int i = 0; i < n; i++) att[i] = dot_portable(q, K + (size_t)i * ld, hd) * scale;
  pf_softmax_with(vexp_sum_portable, att, n);
  memset(out, 0, sizeof(float) * (size_t)hd);
  for (int i = 0; i < n; i++) axpy_portable(out, att[i], V + (size_t)i * ld, hd);
}

static void transpose_portable(float *dst, const float *src, int rows, int cols) {
  for (int i = 0; i < rows; i++)
    for (int c = 0; c < cols; c++) dst[(size_t)c * rows + i] = src[(size_t)i * cols + c];
}

static int usable_portable(void) { return 1; }

const pf_isa pf_isa_portable = {
  .kind = PF_KERNEL_PORTABLE, .name = "portable", .usable = usable_portable, .dec_rows = 1,
  .nt = nt_portable, .nn_acc = nn_portable, .nt_w = nt_w_portable, .nn_w = nn_w_portable,
  .nt_dec = nt_dec_portable, .gemm_parallel = NULL, .nt_int8 = NULL, .gemm_int8 = NULL, .deq = NULL,
  .vexp_sum = vexp_sum_portable, .silu_mul = silu_mul_portable, .silu_mul_bwd = silu_mul_bwd_portable,
  .gelu = gelu_portable, .gelu_bwd = gelu_bwd_portable,
  .dot = dot_portable, .axpy = axpy_portable, .attend = attend_portable, .transpose = transpose_portable,
};
