/*
** kernels.c — which kernels run: the table of the best instruction set this CPU has (kernels.h), chosen
** once per process and timed against OpenBLAS once (PREFIX_KERNEL=naive|blas|portable|avx2|avxvnni|avx512|neon
** forces one), and the entry points ops.c calls, each passing its work to the table in use:
**
**   NT  out (T, N) = A (T, K) · W (N, K)^T      forward projections, logits
**   NN  dA (T, K) += dY (T, N) · W (N, K)        backward to the input
**
** and the vector operations (e^x, SwiGLU, GELU, attention rows, dot, axpy, transposes). Two kinds are not
** tables: "naive" (ops.c's double-precision loops, the reference every kernel is tested against) and
** "blas" (OpenBLAS's sgemm on panels unpacked to f32, with the plain vector loops).
*/
#include "kernels.h"

#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int g_naive = 0;
void pf_set_naive(int naive) { g_naive = naive; }
int pf_get_naive(void) { return g_naive; }

/* the table of a kind (NULL for naive and blas, and for a kind this build has no table for) */
static const pf_isa *isa_of(int kind) {
  switch (kind) {
    case PF_KERNEL_PORTABLE: return &pf_isa_portable;
#if PF_X86
    case PF_KERNEL_AVX2: return &pf_isa_avx2;
    case PF_KERNEL_AVXVNNI: return &pf_isa_avxvnni;
    case PF_KERNEL_AVX512: return &pf_isa_avx512;
#endif
#if defined(__aarch64__)
    case PF_KERNEL_NEON: return &pf_isa_neon;
#endif
    default: return NULL;
  }
}

static int cpu_has(int kind) {
  if (kind == PF_KERNEL_NAIVE || kind == PF_KERNEL_BLAS) return 1;
  const pf_isa *i = isa_of(kind);
  return i && i->usable();
}

/* ------------------------------------------------------------ products */

/* ---- blas and naive: panels of W unpacked to f32, then sgemm (or double loops) */
#define PANEL_ROWS 64

static float dot_plain(const float *a, const float *b, int n) {
  float s = 0;
  for (int i = 0; i < n; i++) s += a[i] * b[i];
  return s;
}
static void axpy_plain(float *y, float a, const float *x, int n) {
  for (int i = 0; i < n; i++) y[i] += a * x[i];
}

void pf_kernel_nt_panels(float *out, const float *A, const pf_wt *W, int T, int c0, int c1) {
  int K = W->cols, N = W->rows;
  int naive = g_naive || pf_get_kernel() == PF_KERNEL_NAIVE;
  size_t cap;
  float *tmp = pf_scratch_get((size_t)PANEL_ROWS * K, &cap);
  if (!tmp) { pf_nt_dec_chunks(dot_plain, out, A, W, T, c0, c1); return; }
  for (int n = c0; n < c1; n += PANEL_ROWS) {
    int r = c1 - n < PANEL_ROWS ? c1 - n : PANEL_ROWS;
    for (int i = 0; i < r; i++) pf_wt_deq(W, n + i, 0, K, tmp + (size_t)i * K);
    if (naive)
      for (int t = 0; t < T; t++)
        for (int i = 0; i < r; i++) {
          double acc = 0;
          for (int k = 0; k < K; k++) acc += (double)A[(size_t)t * K + k] * tmp[(size_t)i * K + k];
          out[(size_t)t * N + n + i] = (float)acc;
        }
    else cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, r, K, 1.0f, A, K, tmp, K, 0.0f, out + n, N);
  }
  pf_scratch_put(tmp, cap);
}

void pf_kernel_nn_panels(float *dA, const float *dY, const pf_wt *W, int T, int c0, int c1) {
  int K = W->cols, N = W->rows, w = c1 - c0;
  int naive = g_naive || pf_get_kernel() == PF_KERNEL_NAIVE;
  size_t cap;
  float *tmp = pf_scratch_get((size_t)PANEL_ROWS * w, &cap);
  if (!tmp) {   /* no memory for a panel: one chunk at a time */
    float buf[32];
    for (int n = 0; n < N; n++)
      for (int k = c0; k < c1; k += 32) {
        int kk = c1 - k < 32 ? c1 - k : 32;
        pf_wt_deq(W, n, k, k + kk, buf);
        for (int t = 0; t < T; t++) axpy_plain(dA + (size_t)t * K + k, dY[(size_t)t * N + n], buf, kk);
      }
    return;
  }
  for (int n0 = 0; n0 < N; n0 += PANEL_ROWS) {
    int r = N - n0 < PANEL_ROWS ? N - n0 : PANEL_ROWS;
    for (int i = 0; i < r; i++) pf_wt_deq(W, n0 + i, c0, c1, tmp + (size_t)i * w);
    if (naive)
      for (int t = 0; t < T; t++)
        for (int k = 0; k < w; k++) {
          double acc = 0;
          for (int i = 0; i < r; i++) acc += (double)dY[(size_t)t * N + n0 + i] * tmp[(size_t)i * w + k];
          dA[(size_t)t * K + c0 + k] += (float)acc;
        }
    else cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, w, r, 1.0f, dY + n0, N, tmp, w, 1.0f, dA + c0, K);
  }
  pf_scratch_put(tmp, cap);
}

/* ---- every kind */

void pf_kernel_nt(int kind, float *out, const float *A, const float *W, int T, int K, int N, int c0, int c1) {
  if (c1 <= c0) return;
  const pf_isa *i = isa_of(kind);
  if (i) i->nt(out, A, W, T, K, N, c0, c1);
  else cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, c1 - c0, K, 1.0f, A, K, W + (size_t)c0 * K, K, 0.0f, out + c0, N);
}

void pf_kernel_nn_acc(int kind, float *dA, const float *dY, const float *W, int T, int K, int N, int c0, int c1) {
  if (c1 <= c0) return;
  const pf_isa *i = isa_of(kind);
  if (i) i->nn_acc(dA, dY, W, T, K, N, c0, c1);
  else cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, c1 - c0, N, 1.0f, dY, N, W + c0, K, 1.0f, dA + c0, K);
}

/* The same products for a weight of any type (an F32 one goes to the kernels above). A quantized or
** half-precision W is read as stored: each table decodes few rows with fused kernels and longer products on
** rows or panels unpacked as they are needed. */
void pf_kernel_nt_w(int kind, float *out, const float *A, const pf_wt *W, int T, int c0, int c1, int exact) {
  const float *wf = pf_wt_f32(W);
  if (wf) { pf_kernel_nt(kind, out, A, wf, T, W->cols, W->rows, c0, c1); return; }
  if (c1 <= c0) return;
  const pf_isa *i = isa_of(kind);
  if (i) i->nt_w(out, A, W, T, c0, c1, exact);
  else pf_kernel_nt_panels(out, A, W, T, c0, c1);
}

void pf_kernel_nn_w(int kind, float *dA, const float *dY, const pf_wt *W, int T, int c0, int c1) {
  const float *wf = pf_wt_f32(W);
  if (wf) { pf_kernel_nn_acc(kind, dA, dY, wf, T, W->cols, W->rows, c0, c1); return; }
  if (c1 <= c0) return;
  const pf_isa *i = isa_of(kind);
  if (i) i->nn_w(dA, dY, W, T, c0, c1);
  else pf_kernel_nn_panels(dA, dY, W, T, c0, c1);
}

int pf_kernel_nt_int8(int kind, float *out, const float *A, const pf_wt *W, int T, int c0, int c1) {
  const pf_isa *i = isa_of(kind);
  return i && i->nt_int8 && !g_naive ? i->nt_int8(out, A, W, T, c0, c1) : 0;
}

int pf_gemm_int8(float *out, const float *A, const pf_wt *W, int M, int nslice) {
  const pf_isa *i = isa_of(pf_get_kernel());
  return i && i->gemm_int8 && !g_naive ? i->gemm_int8(out, A, W, M, nslice) : 0;
}

int pf_gemm_parallel(int kind, int nn, float *out, const float *a, const float *w, const pf_wt *qw, int T, int n_in,
                     int n_out, int nslice, int exact) {
  const pf_isa *i = isa_of(kind);
  return i && i->gemm_parallel ? i->gemm_parallel(nn, out, a, w, qw, T, n_in, n_out, nslice, exact) : 0;
}

void pf_wt_deq(const pf_wt *W, int r, int k0, int k1, float *dst) {
  const pf_isa *i = g_naive ? NULL : isa_of(pf_get_kernel());
  pf_wt_deq_with(i ? i->deq : NULL, W, r, k0, k1, dst);
}

/* ------------------------------------------------------------- choice */

static atomic_int g_kernel = -1;

int pf_build_info(char *buf, size_t n) {
  int len = 0;
#define ADD(...) len += snprintf(buf + (len < (int)n ? len : (int)n), len < (int)n ? n - (size_t)len : 0, __VA_ARGS__)
  ADD("CPU features: ");
#if PF_X86
  __builtin_cpu_init();
  /* the names both gcc and clang 14 know (clang 14 has no "f16c": every AVX2 CPU has it) */
  static const char *feat[] = {"sse4.2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512vnni"};
  int have[8] = {__builtin_cpu_supports("sse4.2"), __builtin_cpu_supports("avx"), __builtin_cpu_supports("avx2"),
                 __builtin_cpu_supports("fma"), __builtin_cpu_supports("avx512f"), __builtin_cpu_supports("avx512bw"),
                 __builtin_cpu_supports("avx512vl"), __builtin_cpu_supports("avx512vnni")};
  for (int i = 0; i < 8; i++)
    if (have[i]) ADD("%s ", feat[i]);
  if (cpu_has(PF_KERNEL_AVXVNNI)) ADD("avxvnni ");
#elif defined(__aarch64__)
  ADD("neon %s", pf_neon_dotprod() ? "dotprod " : "");
#else
  ADD("(none the engine uses) ");
#endif
  const char *cfg = openblas_get_config(), *core = openblas_get_corename();
  ADD("\nKernel: %s (tables this CPU can run:", pf_kernel_name(pf_get_kernel()));
  for (int k = PF_KERNEL_PORTABLE; k < PF_KERNEL_COUNT; k++)
    if (cpu_has(k)) ADD(" %s", pf_kernel_name(k));
  ADD(")\nBLAS: %s, core %s\nThreads: %d\n", cfg ? cfg : "?", core ? core : "?", pf_get_threads());
#undef ADD
  return len;
}

const char *pf_kernel_name(int kind) {
  static const char *n[PF_KERNEL_COUNT] = {"auto", "naive", "blas", "portable", "avx2", "avxvnni", "avx512", "neon"};
  return kind >= 0 && kind < PF_KERNEL_COUNT && n[kind] ? n[kind] : "?";
}

/* "Used where it is faster": the engine's best table for this CPU is timed against OpenBLAS once per
** process, single-threaded, on a product the size of a small model's projection (96 × 384 · 384ᵀ, best
** of 5, the kinds taking turns). OpenBLAS is chosen only when it is clearly (1.5×) faster, so a noisy
** machine does not flip the choice; e.g. a current OpenBLAS with tuned kernels on a CPU the engine has only
** the portable table for; a Debian OpenBLAS that does not know the CPU runs generic kernels and loses.
** PREFIX_KERNEL skips this. */
static double g_gflops[PF_KERNEL_COUNT];
static pthread_once_t g_measure_once = PTHREAD_ONCE_INIT;

static void measure_kernels(void) {
  enum { MT = 96, MK = 384, MN = 384, ROUNDS = 5 };
  pf_get_threads();   /* OpenBLAS single-threaded, as in use */
  float *a = malloc(sizeof(float) * MT * MK), *w = malloc(sizeof(float) * MN * MK), *o = malloc(sizeof(float) * MT * MN);
  double best[PF_KERNEL_COUNT];
  for (int k = 0; k < PF_KERNEL_COUNT; k++) best[k] = 1e30;
  if (a && w && o) {
    for (int i = 0; i < MT * MK; i++) a[i] = (float)(i % 13) * 0.01f;
    for (int i = 0; i < MN * MK; i++) w[i] = (float)(i % 7) * 0.01f;
    /* the kinds take turns, so a busy machine slows them alike; the first round warms up */
    for (int r = 0; r <= ROUNDS; r++)
      for (int kind = PF_KERNEL_BLAS; kind < PF_KERNEL_COUNT; kind++) {
        if (!cpu_has(kind)) continue;
        double t0 = pf_clock();
        pf_kernel_nt(kind, o, a, w, MT, MK, MN, 0, MN);
        double dt = pf_clock() - t0;
        if (r > 0 && dt < best[kind]) best[kind] = dt;
      }
    for (int kind = PF_KERNEL_BLAS; kind < PF_KERNEL_COUNT; kind++)
      if (cpu_has(kind)) g_gflops[kind] = 2.0 * MT * MK * MN / (best[kind] > 1e-9 ? best[kind] : 1e-9) / 1e9;
  }
  free(a); free(w); free(o);
}

static double pf_kernel_gflops(int kind) {
  pthread_once(&g_measure_once, measure_kernels);
  return kind >= 0 && kind < PF_KERNEL_COUNT ? g_gflops[kind] : 0;
}

/* the best table this CPU runs: the last usable one (they are listed from least to most capable) */
static int best_table(void) {
  int best = PF_KERNEL_PORTABLE;
  for (int k = PF_KERNEL_PORTABLE; k < PF_KERNEL_COUNT; k++)
    if (cpu_has(k)) best = k;
  return best;
}

int pf_set_kernel(int kind) {
  if (kind == PF_KERNEL_AUTO) {
    const char *env = getenv("PREFIX_KERNEL");
    kind = best_table();
    int forced = 0;
    for (int k = PF_KERNEL_NAIVE; env && k < PF_KERNEL_COUNT; k++)
      if (!strcmp(env, pf_kernel_name(k)) && cpu_has(k)) kind = k, forced = 1;
    if (!forced && pf_kernel_gflops(PF_KERNEL_BLAS) > 1.5 * pf_kernel_gflops(kind)) kind = PF_KERNEL_BLAS;
  }
  if (kind <= PF_KERNEL_AUTO || kind >= PF_KERNEL_COUNT || !cpu_has(kind)) kind = best_table();
  g_kernel = kind;
  return kind;
}

int pf_get_kernel(void) {
  if (g_kernel < 0) pf_set_kernel(PF_KERNEL_AUTO);
  return g_kernel;
}

int pf_system_info(char *buf, size_t n) {
  int kind = pf_get_kernel(), len = snprintf(buf, n, "{\"threads\":%d,\"kernel\":\"%s\",\"gflops\":{", pf_get_threads(),
                                             pf_kernel_name(kind));
  const char *sep = "";
  for (int k = PF_KERNEL_BLAS; k < PF_KERNEL_COUNT; k++) {
    if (!cpu_has(k)) continue;
    len += snprintf(buf + (len < (int)n ? len : (int)n), len < (int)n ? n - (size_t)len : 0, "%s\"%s\":%.1f", sep,
                    pf_kernel_name(k), pf_kernel_gflops(k));
    sep = ",";
  }
  len += snprintf(buf + (len < (int)n ? len : (int)n), len < (int)n ? n - (size_t)len : 0, "}}");
  return len;
}

/* ------------------------------------------------------- vector operations
** The table in use; naive and blas use the plain loops (dot and axpy summed in order, e^x by expf). */
static const pf_isa *vec_isa(void) { return isa_of(pf_get_kernel()); }

double pf_vexp_sum(float *dst, const float *x, float sub, int n) {
  const pf_isa *i = vec_isa();
  return (i ? i : &pf_isa_portable)->vexp_sum(dst, x, sub, n);
}

int pf_silu_mul_fast(float *h, const float *g, const float *u, size_t n) {
  const pf_isa *i = vec_isa();
  if (!i || !i->silu_mul) return 0;
  i->silu_mul(h, g, u, n);
  return 1;
}
int pf_silu_mul_bwd_fast(float *dg, float *du, const float *dh, const float *g, const float *u, size_t n) {
  const pf_isa *i = vec_isa();
  if (!i || !i->silu_mul_bwd) return 0;
  i->silu_mul_bwd(dg, du, dh, g, u, n);
  return 1;
}
int pf_gelu_fast(float *out, const float *inp, size_t n) {
  const pf_isa *i = vec_isa();
  if (!i || !i->gelu) return 0;
  i->gelu(out, inp, n);
  return 1;
}
int pf_gelu_bwd_fast(float *dinp, const float *inp, const float *dout, size_t n) {
  const pf_isa *i = vec_isa();
  if (!i || !i->gelu_bwd) return 0;
  i->gelu_bwd(dinp, inp, dout, n);
  return 1;
}

float pf_vdot(const float *a, const float *b, int n) {
  const pf_isa *i = vec_isa();
  return i ? i->dot(a, b, n) : dot_plain(a, b, n);
}
void pf_vaxpy(float *y, float a, const float *x, int n) {
  const pf_isa *i = vec_isa();
  if (i) i->axpy(y, a, x, n);
  else axpy_plain(y, a, x, n);
}

/* One query row of attention over n cached rows (K, V rows at stride ld): out = softmax(q·Kᵀ·scale)·V,
** the probabilities left in att. */
void pf_attend(float *out, const float *q, const float *K, const float *V, int n, int ld, int hd, float scale,
               float *att) {
  const pf_isa *i = vec_isa();
  if (i) { i->attend(out, q, K, V, n, ld, hd, scale, att); return; }
  for (int j = 0; j < n; j++) att[j] = dot_plain(q, K + (size_t)j * ld, hd) * scale;
  pf_softmax_with(pf_isa_portable.vexp_sum, att, n);
  memset(out, 0, sizeof(float) * (size_t)hd);
  for (int j = 0; j < n; j++) axpy_plain(out, att[j], V + (size_t)j * ld, hd);
}

void pf_transpose(float *dst, const float *src, int rows, int cols) {
  const pf_isa *i = vec_isa();
  (i ? i : &pf_isa_portable)->transpose(dst, src, rows, cols);
}
