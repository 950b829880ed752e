/*
** kernels_neon.c — the ARM64 kernel table (kernels.h): NEON, which every AArch64 CPU has (Apple Silicon,
** Graviton, phones, Raspberry Pi 3 and later), and the dot-product instructions (SDOT, ARMv8.2 dotprod)
** where the CPU has them: getauxval(AT_HWCAP) on Linux, sysctlbyname("hw.optional.arm.FEAT_DotProd") on
** macOS.
**
** f32 products X·Wᵀ: the packed GEMM (kernels_common.c) on an 8 × 12 register tile for 16 rows or more (per
** k, two loads of A, three of the W panel, 24 FMAs by lane — no broadcasts), decode rows streaming each row
** of W once for one or two rows, 4 × 4 tiles of dot products otherwise. F16 and BF16 weights are widened
** in registers (FCVTL is baseline ARMv8). Block-quantized weights decode in integers as llama.cpp does:
** activations rounded to int8 per 32 (the same values as the x86 tables), each chunk of 32 weights as
** signed bytes (offset types minus their offset, the IQ4 tables looked up with TBL) against the activation
** bytes: SDOT where the CPU has it, else SMULL + SADALP (products of two int8 fit in 16 bits). Longer
** products of those types run the f32 GEMM on panels unpacked as packed. Also: e^x for softmax, SwiGLU
** and GELU, dot products and axpy for attention.
**
** Tested under qemu-user on x86 (make test-arm64: QEMU_CPU=cortex-a53 without dotprod, max with it); no
** speed is claimed until measured on ARM hardware.
*/
#include "kernels.h"

#if defined(__aarch64__)
#include <arm_neon.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#if defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
#endif
#if defined(__APPLE__)
#include <sys/sysctl.h>
#endif

/* SDOT through a function attribute (gcc); clang declares the intrinsic only when the whole build targets
** dotprod (Apple's does: every Apple Silicon CPU has it), so a clang build for generic ARMv8 leaves it out */
#if defined(__clang__) && !defined(__ARM_FEATURE_DOTPROD)
#define NO_SDOT 1
#define TDOT
#elif defined(__clang__)
#define NO_SDOT 0
#define TDOT
#else
#define NO_SDOT 0
#define TDOT __attribute__((target("arch=armv8.2-a+dotprod")))
#endif

#define DEC_AHEAD PF_DEC_AHEAD
#define N_MIN_GEMM 16   /* rows from which the packed GEMM runs */

static int has_dotprod(void) {
  static int v = -1;
  if (NO_SDOT) return 0;
  if (v < 0) {
#if defined(__linux__)
    v = (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#elif defined(__APPLE__)
    int x = 0;
    size_t n = sizeof x;
    v = sysctlbyname("hw.optional.arm.FEAT_DotProd", &x, &n, NULL, 0) == 0 && x;
#else
    v = 0;
#endif
  }
  return v;
}

/* ------------------------------------------------------------ vector math */

static float dot_neon(const float *a, const float *b, int n) {
  float32x4_t s0 = vdupq_n_f32(0), s1 = s0;
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    s0 = vfmaq_f32(s0, vld1q_f32(a + i), vld1q_f32(b + i));
    s1 = vfmaq_f32(s1, vld1q_f32(a + i + 4), vld1q_f32(b + i + 4));
  }
  float s = vaddvq_f32(vaddq_f32(s0, s1));
  for (; i < n; i++) s += a[i] * b[i];
  return s;
}

static void axpy_neon(float *y, float a, const float *x, int n) {
  float32x4_t va = vdupq_n_f32(a);
  int i = 0;
  for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vfmaq_f32(vld1q_f32(y + i), va, vld1q_f32(x + i)));
  for (; i < n; i++) y[i] += a * x[i];
}

/* e^x = 2^n · e^r, n = round(x / ln 2), |r| <= ln 2 / 2 (ln 2 in two parts), e^r by its degree-6 Taylor
** polynomial (below 2e-7 relative, as the x86 tables), 2^n in the exponent bits; x clamped to where e^x is a
** normal float; NaN stays NaN (the comparisons of the clamp are false for NaN: it passes through) */
static inline float32x4_t exp_neon(float32x4_t x) {
  uint32x4_t nan = vmvnq_u32(vceqq_f32(x, x));
  x = vmaxq_f32(vdupq_n_f32(-87.3365447505531f), vminq_f32(vdupq_n_f32(88.3762626647949f), x));
  float32x4_t n = vrndnq_f32(vmulq_f32(x, vdupq_n_f32(1.44269504088896341f)));
  float32x4_t r = vfmsq_f32(x, n, vdupq_n_f32(0.693359375f));
  r = vfmsq_f32(r, n, vdupq_n_f32(-2.12194440e-4f));
  float32x4_t p = vdupq_n_f32(1.0f / 720);
  p = vfmaq_f32(vdupq_n_f32(1.0f / 120), p, r);
  p = vfmaq_f32(vdupq_n_f32(1.0f / 24), p, r);
  p = vfmaq_f32(vdupq_n_f32(1.0f / 6), p, r);
  p = vfmaq_f32(vdupq_n_f32(0.5f), p, r);
  p = vfmaq_f32(vdupq_n_f32(1.0f), p, r);
  p = vfmaq_f32(vdupq_n_f32(1.0f), p, r);
  int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23);
  float32x4_t y = vmulq_f32(p, vreinterpretq_f32_s32(e));
  return vbslq_f32(nan, vdupq_n_f32(NAN), y);
}

static double vexp_sum_neon(float *dst, const float *x, float sub, int n) {
  double sum = 0;
  float32x4_t vs = vdupq_n_f32(sub);
  for (int i0 = 0; i0 < n; i0 += 1024) {   /* float lanes for 1024 terms, then double */
    int i1 = i0 + 1024 < n ? i0 + 1024 : n, i = i0;
    float32x4_t acc = vdupq_n_f32(0);
    for (; i + 4 <= i1; i += 4) {
      float32x4_t e = exp_neon(vsubq_f32(vld1q_f32(x + i), vs));
      if (dst) vst1q_f32(dst + i, e);
      acc = vaddq_f32(acc, e);
    }
    float s = vaddvq_f32(acc);
    for (; i < i1; i++) {
      float e = expf(x[i] - sub);
      if (dst) dst[i] = e;
      s += e;
    }
    sum += s;
  }
  return sum;
}

static void silu_mul_neon(float *h, const float *g, const float *u, size_t n) {
  float32x4_t one = vdupq_n_f32(1.0f);
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    float32x4_t vg = vld1q_f32(g + i);
    float32x4_t sg = vdivq_f32(one, vaddq_f32(one, exp_neon(vnegq_f32(vg))));
    vst1q_f32(h + i, vmulq_f32(vmulq_f32(vg, sg), vld1q_f32(u + i)));
  }
  for (; i < n; i++) h[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

static void silu_mul_bwd_neon(float *dg, float *du, const float *dh, const float *g, const float *u, size_t n) {
  float32x4_t one = vdupq_n_f32(1.0f);
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    float32x4_t vg = vld1q_f32(g + i), vu = vld1q_f32(u + i), vd = vld1q_f32(dh + i);
    float32x4_t sg = vdivq_f32(one, vaddq_f32(one, exp_neon(vnegq_f32(vg))));
    float32x4_t silu = vmulq_f32(vg, sg);
    float32x4_t dsilu = vfmaq_f32(sg, silu, vsubq_f32(one, sg));   /* sg + silu (1 - sg) */
    vst1q_f32(dg + i, vfmaq_f32(vld1q_f32(dg + i), vmulq_f32(vd, vu), dsilu));
    vst1q_f32(du + i, vfmaq_f32(vld1q_f32(du + i), vd, silu));
  }
  for (; i < n; i++) {
    float sg = 1.0f / (1.0f + expf(-g[i])), silu = g[i] * sg;
    dg[i] += dh[i] * u[i] * (sg + silu * (1.0f - sg));
    du[i] += dh[i] * silu;
  }
}

#define GELU_K 0.7978845608028654f   /* sqrt(2/pi) */
/* tanh(u) = 1 - 2 / (1 + e^(2u)) */
static inline float32x4_t tanh_neon(float32x4_t u) {
  float32x4_t one = vdupq_n_f32(1.0f);
  return vsubq_f32(one, vdivq_f32(vdupq_n_f32(2.0f), vaddq_f32(one, exp_neon(vaddq_f32(u, u)))));
}
static void gelu_neon(float *out, const float *inp, size_t n) {
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    float32x4_t x = vld1q_f32(inp + i), x3 = vmulq_f32(vmulq_f32(x, x), x);
    float32x4_t t = tanh_neon(vmulq_f32(vdupq_n_f32(GELU_K), vfmaq_f32(x, vdupq_n_f32(0.044715f), x3)));
    vst1q_f32(out + i, vmulq_f32(vmulq_f32(vdupq_n_f32(0.5f), x), vaddq_f32(vdupq_n_f32(1.0f), t)));
  }
  for (; i < n; i++) {
    float x = inp[i];
    out[i] = 0.5f * x * (1.0f + tanhf(GELU_K * (x + 0.044715f * x * x * x)));
  }
}
static void gelu_bwd_neon(float *dinp, const float *inp, const float *dout, size_t n) {
  float32x4_t one = vdupq_n_f32(1.0f), half = vdupq_n_f32(0.5f), k = vdupq_n_f32(GELU_K);
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    float32x4_t x = vld1q_f32(inp + i), x2 = vmulq_f32(x, x);
    float32x4_t t = tanh_neon(vmulq_f32(k, vfmaq_f32(x, vmulq_f32(vdupq_n_f32(0.044715f), x2), x)));
    /* 0.5 (1 + t) + 0.5 x (1 - t²) k (1 + 3·0.044715 x²) */
    float32x4_t d = vmulq_f32(half, vaddq_f32(one, t));
    float32x4_t sech2 = vfmsq_f32(one, t, t);
    float32x4_t dd = vmulq_f32(k, vfmaq_f32(one, vdupq_n_f32(3.0f * 0.044715f), x2));
    d = vfmaq_f32(d, vmulq_f32(vmulq_f32(half, x), sech2), dd);
    vst1q_f32(dinp + i, vfmaq_f32(vld1q_f32(dinp + i), vld1q_f32(dout + i), d));
  }
  for (; i < n; i++) {
    float x = inp[i], u = GELU_K * (x + 0.044715f * x * x * x), t = tanhf(u);
    float d = 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * GELU_K * (1.0f + 3.0f * 0.044715f * x * x);
    dinp[i] += dout[i] * d;
  }
}

static void attend_neon(float *out, const float *q, const float *K, const float *V, int n, int ld, int hd, float scale,
                        float *att) {
  for (int i = 0; i < n; i++) att[i] = dot_neon(q, K + (size_t)i * ld, hd) * scale;
  pf_softmax_with(vexp_sum_neon, att, n);
  memset(out, 0, sizeof(float) * (size_t)hd);
  for (int i = 0; i < n; i++) axpy_neon(out, att[i], V + (size_t)i * ld, hd);
}

static void transpose_neon(float *dst, const float *src, int rows, int cols) {
  for (int i = 0; i < rows; i++)
    for (int c = 0; c < cols; c++) dst[(size_t)c * rows + i] = src[(size_t)i * cols + c];
}

/* ------------------------------------------------------------ f32 tiles */

/* out[i][j] = A[i] · W[j] for mr, nr <= 4: dot products in 4 lanes along k */
static void nt_tile_neon(float *c, int ldc, const float *a, int lda, const float *w, int ldw, int K, int mr, int nr) {
  float32x4_t acc[4][4];
  for (int i = 0; i < 4; i++)
    for (int j = 0; j < 4; j++) acc[i][j] = vdupq_n_f32(0);
  int k = 0;
  for (; k + 4 <= K; k += 4)
    for (int i = 0; i < mr; i++) {
      float32x4_t ai = vld1q_f32(a + (size_t)i * lda + k);
      for (int j = 0; j < nr; j++) acc[i][j] = vfmaq_f32(acc[i][j], ai, vld1q_f32(w + (size_t)j * ldw + k));
    }
  for (int i = 0; i < mr; i++)
    for (int j = 0; j < nr; j++) {
      float s = vaddvq_f32(acc[i][j]);
      for (int kk = k; kk < K; kk++) s += a[(size_t)i * lda + kk] * w[(size_t)j * ldw + kk];
      c[(size_t)i * ldc + j] = s;
    }
}

static void nt_tiles_neon(float *out, const float *A, const float *W, int T, int K, int N, int c0, int c1) {
  int tb = K > 0 ? (int)(((size_t)256 * 1024) / ((size_t)K * 4)) : T;   /* rows of A that stay in L2 */
  if (tb < 4) tb = 4;
  for (int t0 = 0; t0 < T; t0 += tb) {
    int t1 = t0 + tb < T ? t0 + tb : T;
    for (int n = c0; n < c1; n += 4) {
      int nr = c1 - n < 4 ? c1 - n : 4;
      for (int t = t0; t < t1; t += 4)
        nt_tile_neon(out + (size_t)t * N + n, N, A + (size_t)t * K, K, W + (size_t)n * K, K, K, t1 - t < 4 ? t1 - t : 4, nr);
    }
  }
}

/* dA[t][c0:c1] += Σ_n dY[t][n] · W[n][c0:c1] */
static void nn_rows_neon(float *dA, const float *dY, const float *W, int T, int K, int N, int c0, int c1) {
  for (int n0 = 0; n0 < N; n0 += 256) {
    int n1 = n0 + 256 < N ? n0 + 256 : N;
    for (int t = 0; t < T; t++)
      for (int n = n0; n < n1; n++) axpy_neon(dA + (size_t)t * K + c0, dY[(size_t)t * N + n], W + (size_t)n * K + c0, c1 - c0);
  }
}

/* ------------------------------------------------------------ packed GEMM (8 × 12 tile) */
#define GN_MR 8
#define GN_NR 12

static void gn_pack_a(float *ap, const float *A, int lda, int mr, int k0, int kc) {
  for (int k = 0; k < kc; k++)
    for (int i = 0; i < GN_MR; i++) ap[(size_t)k * GN_MR + i] = i < mr ? A[(size_t)i * lda + k0 + k] : 0.0f;
}
static void gn_pack_nt(float *bp, const float *W, int ldw, int n0, int nw, int k0, int kc, int pf_rows) {
  (void)pf_rows;
  for (int j = 0; j < GN_NR; j++) {
    const float *w = W + (size_t)(n0 + j) * ldw + k0;
    for (int k = 0; k < kc; k++) bp[(size_t)k * GN_NR + j] = j < nw ? w[k] : 0.0f;
  }
}
static void gn_pack_nn(float *bp, const float *W, int ldw, int n0, int nw, int k0, int kc) {
  for (int k = 0; k < kc; k++) {
    const float *w = W + (size_t)(k0 + k) * ldw + n0;
    for (int j = 0; j < GN_NR; j++) bp[(size_t)k * GN_NR + j] = j < nw ? w[j] : 0.0f;
  }
}

/* C[mr][nw] (+)= Ap · Bp: 24 accumulators, the A values used by lane (no broadcast) */
static void gn_tile(int mr, float *c, int ldc, const float *ap, const float *bp, int kc, int acc, int nw) {
  float32x4_t cv[GN_MR][3];
  for (int i = 0; i < GN_MR; i++) cv[i][0] = cv[i][1] = cv[i][2] = vdupq_n_f32(0);
  for (int k = 0; k < kc; k++) {
    float32x4_t a0 = vld1q_f32(ap + (size_t)k * GN_MR), a1 = vld1q_f32(ap + (size_t)k * GN_MR + 4);
    float32x4_t b0 = vld1q_f32(bp + (size_t)k * GN_NR), b1 = vld1q_f32(bp + (size_t)k * GN_NR + 4),
                b2 = vld1q_f32(bp + (size_t)k * GN_NR + 8);
#define GN_ROW(i, av, l)                                 \
  cv[i][0] = vfmaq_laneq_f32(cv[i][0], b0, av, l);       \
  cv[i][1] = vfmaq_laneq_f32(cv[i][1], b1, av, l);       \
  cv[i][2] = vfmaq_laneq_f32(cv[i][2], b2, av, l);
    GN_ROW(0, a0, 0) GN_ROW(1, a0, 1) GN_ROW(2, a0, 2) GN_ROW(3, a0, 3)
    GN_ROW(4, a1, 0) GN_ROW(5, a1, 1) GN_ROW(6, a1, 2) GN_ROW(7, a1, 3)
#undef GN_ROW
  }
  for (int i = 0; i < mr; i++) {
    float *ci = c + (size_t)i * ldc, t[GN_NR];
    vst1q_f32(t, cv[i][0]);
    vst1q_f32(t + 4, cv[i][1]);
    vst1q_f32(t + 8, cv[i][2]);
    for (int j = 0; j < nw; j++) ci[j] = acc ? ci[j] + t[j] : t[j];
  }
}

/* ------------------------------------------------------------ decode rows, f32 / F16 / BF16 */

/* chunk c (32 elements) of a row as 8 vectors of 4 */
static inline void dq_f32(const uint8_t *b, float32x4_t v[8]) {
  const float *f = (const float *)b;
  v[0] = vld1q_f32(f), v[1] = vld1q_f32(f + 4), v[2] = vld1q_f32(f + 8), v[3] = vld1q_f32(f + 12);
  v[4] = vld1q_f32(f + 16), v[5] = vld1q_f32(f + 20), v[6] = vld1q_f32(f + 24), v[7] = vld1q_f32(f + 28);
}
static inline void dq_f16(const uint8_t *b, float32x4_t v[8]) {
  for (int i = 0; i < 4; i++) {
    float16x8_t h = vreinterpretq_f16_u8(vld1q_u8(b + 16 * i));
    v[2 * i] = vcvt_f32_f16(vget_low_f16(h));
    v[2 * i + 1] = vcvt_high_f32_f16(h);
  }
}
static inline void dq_bf16(const uint8_t *b, float32x4_t v[8]) {
  for (int i = 0; i < 4; i++) {
    uint16x8_t h = vld1q_u16((const uint16_t *)(b + 16 * i));
    v[2 * i] = vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(h), 16));
    v[2 * i + 1] = vreinterpretq_f32_u32(vshll_high_n_u16(h, 16));
  }
}

#define DECN_MAX 4
#define DEF_DECN(TY, DQ, BYTES)                                                                                          \
  static void deqn_##TY(const uint8_t *row, int ch0, int ch1, float *dst) {                                          \
    for (int c = ch0; c < ch1; c++, dst += 32) {                                                                       \
      float32x4_t v[8];                                                                                                \
      DQ(row + (size_t)c * BYTES, v);                                                                                  \
      for (int i = 0; i < 8; i++) vst1q_f32(dst + 4 * i, v[i]);                                                        \
    }                                                                                                                  \
  }                                                                                                                    \
  static void decn_##TY(float *out, int ldc, const float *A, int lda, int T, const uint8_t *W, size_t rb, int nch,   \
                        int c0, int c1) {                                                                              \
    for (int n = c0; n < c1; n++) {                                                                                    \
      const uint8_t *row = W + (size_t)n * rb;                                                                         \
      float32x4_t acc[DECN_MAX][2];                                                                                    \
      for (int t = 0; t < DECN_MAX; t++) acc[t][0] = acc[t][1] = vdupq_n_f32(0);                                       \
      size_t pf = DEC_AHEAD;                                                                                           \
      for (int c = 0; c < nch; c++) {                                                                                  \
        for (size_t e = (size_t)(c + 1) * BYTES + DEC_AHEAD; pf < e; pf += 64)                                         \
          __builtin_prefetch((const char *)row + pf);                                                                  \
        float32x4_t v[8];                                                                                              \
        DQ(row + (size_t)c * BYTES, v);                                                                                \
        for (int t = 0; t < T; t++) {                                                                                  \
          const float *a = A + (size_t)t * lda + 32 * (size_t)c;                                                       \
          for (int i = 0; i < 8; i++) acc[t][i & 1] = vfmaq_f32(acc[t][i & 1], vld1q_f32(a + 4 * i), v[i]);            \
        }                                                                                                              \
      }                                                                                                                \
      for (int t = 0; t < T; t++) out[(size_t)t * ldc + n] = vaddvq_f32(vaddq_f32(acc[t][0], acc[t][1]));             \
    }                                                                                                                  \
  }
DEF_DECN(f32, dq_f32, 128)
DEF_DECN(f16, dq_f16, 64)
DEF_DECN(bf16, dq_bf16, 64)

static const pf_deq_fn g_deqn[GGML_TYPE_COUNT] = {[GGML_F32] = deqn_f32, [GGML_F16] = deqn_f16, [GGML_BF16] = deqn_bf16};
static const pf_dec_fn g_decn[GGML_TYPE_COUNT] = {[GGML_F32] = decn_f32, [GGML_F16] = decn_f16, [GGML_BF16] = decn_bf16};

/* ------------------------------------------------------------ integer products (decode) */

#define IN_MAX 4   /* rows of A one pass over a weight row serves */

static inline float f16n(const uint8_t *p) {
  uint16_t h;
  memcpy(&h, p, 2);
  return pf_f16_to_f32(h);
}

/* T rows of A (K a multiple of 32) rounded to int8 per 32: q, d, xs, xs16 (as the x86 tables: scale
** max|a| / 127, rounded to nearest even) */
static void qact_fill_neon(pf_qact *a, const float *A, int lda) {
  for (int t = 0; t < a->T; t++)
    for (int c = 0; c < a->nch; c++) {
      const float *x = A + (size_t)t * lda + 32 * (size_t)c;
      float32x4_t v[8], m = vdupq_n_f32(0);
      for (int i = 0; i < 8; i++) v[i] = vld1q_f32(x + 4 * i), m = vmaxq_f32(m, vabsq_f32(v[i]));
      float amax = vmaxvq_f32(m), d = amax / 127.0f, id = amax > 0 ? 127.0f / amax : 0.0f;
      int32x4_t q[8];
      int s0 = 0, s1 = 0;
      for (int i = 0; i < 8; i++) {
        q[i] = vcvtnq_s32_f32(vmulq_f32(v[i], vdupq_n_f32(id)));
        if (i < 4) s0 += vaddvq_s32(q[i]);
        else s1 += vaddvq_s32(q[i]);
      }
      int8_t *o = a->q + (size_t)t * a->K + 32 * (size_t)c;
      for (int h = 0; h < 2; h++) {
        int16x8_t lo = vcombine_s16(vqmovn_s32(q[4 * h]), vqmovn_s32(q[4 * h + 1]));
        int16x8_t hi = vcombine_s16(vqmovn_s32(q[4 * h + 2]), vqmovn_s32(q[4 * h + 3]));
        vst1q_s8(o + 16 * h, vcombine_s8(vqmovn_s16(lo), vqmovn_s16(hi)));
      }
      size_t ci = (size_t)t * a->nch + c;
      a->d[ci] = d;
      a->xs[ci] = d * (float)(s0 + s1);
      a->xs16[2 * ci] = d * (float)s0;
      a->xs16[2 * ci + 1] = d * (float)s1;
    }
}

/* one chunk of a weight row as signed bytes (w0: elements 0-15, w1: 16-31), its halves' scales and
** additive minimums: value = s · w + m */
typedef struct nchunk {
  int8x16_t w0, w1;
  float s0, s1, m0, m1;
} nchunk;

static inline void nib16(const uint8_t *p, int8x16_t *lo, int8x16_t *hi) {
  uint8x16_t q = vld1q_u8(p);
  *lo = vreinterpretq_s8_u8(vandq_u8(q, vdupq_n_u8(0x0F)));
  *hi = vreinterpretq_s8_u8(vshrq_n_u8(q, 4));
}
/* bits j of 32 bits as 16 + 16 bytes: 0x10 where set */
static inline void bits5(uint32_t qh, int8x16_t *b0, int8x16_t *b1) {
  static const uint8_t sel0[16] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1};
  static const uint8_t bit[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
  uint8x16_t v = vreinterpretq_u8_u32(vdupq_n_u32(qh)), s0 = vld1q_u8(sel0), m = vld1q_u8(bit);
  uint8x16_t x0 = vqtbl1q_u8(v, s0), x1 = vqtbl1q_u8(v, vaddq_u8(s0, vdupq_n_u8(2)));
  *b0 = vreinterpretq_s8_u8(vandq_u8(vtstq_u8(x0, m), vdupq_n_u8(16)));
  *b1 = vreinterpretq_s8_u8(vandq_u8(vtstq_u8(x1, m), vdupq_n_u8(16)));
}
/* (p[l] >> shift) & mask for 32 bytes */
static inline void field(const uint8_t *p, int shift, int mask, int8x16_t *w0, int8x16_t *w1) {
  int8x16_t sh = vdupq_n_s8((int8_t)-shift);
  uint8x16_t m = vdupq_n_u8((uint8_t)mask);
  *w0 = vreinterpretq_s8_u8(vandq_u8(vshlq_u8(vld1q_u8(p), sh), m));
  *w1 = vreinterpretq_s8_u8(vandq_u8(vshlq_u8(vld1q_u8(p + 16), sh), m));
}
static inline int8x16_t iq4(int8x16_t nib) { return vqtbl1q_s8(vld1q_s8(pf_iq4nl_values), vreinterpretq_u8_s8(nib)); }

static inline nchunk n_q4_0(const uint8_t *b, int c) {
  (void)c;
  nchunk r;
  nib16(b + 2, &r.w0, &r.w1);
  r.w0 = vsubq_s8(r.w0, vdupq_n_s8(8)), r.w1 = vsubq_s8(r.w1, vdupq_n_s8(8));
  r.s0 = r.s1 = f16n(b), r.m0 = r.m1 = 0;
  return r;
}
static inline nchunk n_q4_1(const uint8_t *b, int c) {
  (void)c;
  nchunk r;
  nib16(b + 4, &r.w0, &r.w1);
  r.s0 = r.s1 = f16n(b), r.m0 = r.m1 = f16n(b + 2);
  return r;
}
static inline nchunk n_q5_0(const uint8_t *b, int c) {
  (void)c;
  nchunk r;
  uint32_t qh;
  memcpy(&qh, b + 2, 4);
  int8x16_t h0, h1;
  nib16(b + 6, &r.w0, &r.w1);
  bits5(qh, &h0, &h1);
  r.w0 = vsubq_s8(vorrq_s8(r.w0, h0), vdupq_n_s8(16)), r.w1 = vsubq_s8(vorrq_s8(r.w1, h1), vdupq_n_s8(16));
  r.s0 = r.s1 = f16n(b), r.m0 = r.m1 = 0;
  return r;
}
static inline nchunk n_q5_1(const uint8_t *b, int c) {
  (void)c;
  nchunk r;
  uint32_t qh;
  memcpy(&qh, b + 4, 4);
  int8x16_t h0, h1;
  nib16(b + 8, &r.w0, &r.w1);
  bits5(qh, &h0, &h1);
  r.w0 = vorrq_s8(r.w0, h0), r.w1 = vorrq_s8(r.w1, h1);
  r.s0 = r.s1 = f16n(b), r.m0 = r.m1 = f16n(b + 2);
  return r;
}
static inline nchunk n_q8_0(const uint8_t *b, int c) {
  (void)c;
  nchunk r;
  r.w0 = vld1q_s8((const int8_t *)(b + 2)), r.w1 = vld1q_s8((const int8_t *)(b + 18));
  r.s0 = r.s1 = f16n(b), r.m0 = r.m1 = 0;
  return r;
}
static inline nchunk n_q2_k(const uint8_t *b, int c) {
  nchunk r;
  field(b + 16 + 32 * (c / 4), 2 * (c % 4), 3, &r.w0, &r.w1);
  const uint8_t *sc = b + 8 * (c / 4) + 2 * (c % 4);
  float d = f16n(b + 80), dmin = f16n(b + 82);
  r.s0 = d * (float)(sc[0] & 0xF), r.s1 = d * (float)(sc[1] & 0xF);
  r.m0 = -dmin * (float)(sc[0] >> 4), r.m1 = -dmin * (float)(sc[1] >> 4);
  return r;
}
static inline nchunk n_q3_k(const uint8_t *b, int c) {
  nchunk r;
  field(b + 32 + 32 * (c / 4), 2 * (c % 4), 3, &r.w0, &r.w1);
  uint8x16_t bit = vdupq_n_u8((uint8_t)(1 << c)), four = vdupq_n_u8(4);
  r.w0 = vsubq_s8(r.w0, vreinterpretq_s8_u8(vbicq_u8(four, vtstq_u8(vld1q_u8(b), bit))));
  r.w1 = vsubq_s8(r.w1, vreinterpretq_s8_u8(vbicq_u8(four, vtstq_u8(vld1q_u8(b + 16), bit))));
  float d = f16n(b + 108);
  int i = 8 * (c / 4) + 2 * (c % 4);
  r.s0 = d * (float)pf_q3k_scale(b + 96, i), r.s1 = d * (float)pf_q3k_scale(b + 96, i + 1), r.m0 = r.m1 = 0;
  return r;
}
static inline nchunk n_q4_k(const uint8_t *b, int c) {
  nchunk r;
  field(b + 16 + 32 * (c / 2), 4 * (c % 2), 0x0F, &r.w0, &r.w1);
  int sc, mn;
  pf_k4_scale_min(b + 4, c, &sc, &mn);
  r.s0 = r.s1 = f16n(b) * (float)sc, r.m0 = r.m1 = -f16n(b + 2) * (float)mn;
  return r;
}
static inline nchunk n_q5_k(const uint8_t *b, int c) {
  nchunk r;
  field(b + 48 + 32 * (c / 2), 4 * (c % 2), 0x0F, &r.w0, &r.w1);
  uint8x16_t bit = vdupq_n_u8((uint8_t)(1 << c)), s16 = vdupq_n_u8(16);
  r.w0 = vorrq_s8(r.w0, vreinterpretq_s8_u8(vandq_u8(vtstq_u8(vld1q_u8(b + 16), bit), s16)));
  r.w1 = vorrq_s8(r.w1, vreinterpretq_s8_u8(vandq_u8(vtstq_u8(vld1q_u8(b + 32), bit), s16)));
  int sc, mn;
  pf_k4_scale_min(b + 4, c, &sc, &mn);
  r.s0 = r.s1 = f16n(b) * (float)sc, r.m0 = r.m1 = -f16n(b + 2) * (float)mn;
  return r;
}
static inline nchunk n_q6_k(const uint8_t *b, int c) {
  nchunk r;
  int h = c / 4, p = c % 4;
  int8x16_t l0, l1, h0, h1;
  field(b + 64 * h + 32 * (p % 2), 4 * (p / 2), 0x0F, &l0, &l1);
  field(b + 128 + 32 * h, 2 * p, 3, &h0, &h1);
  r.w0 = vsubq_s8(vorrq_s8(l0, vshlq_n_s8(h0, 4)), vdupq_n_s8(32));
  r.w1 = vsubq_s8(vorrq_s8(l1, vshlq_n_s8(h1, 4)), vdupq_n_s8(32));
  const int8_t *sc = (const int8_t *)(b + 192);
  float d = f16n(b + 208);
  r.s0 = d * (float)sc[2 * c], r.s1 = d * (float)sc[2 * c + 1], r.m0 = r.m1 = 0;
  return r;
}
static inline nchunk n_iq4_nl(const uint8_t *b, int c) {
  (void)c;
  nchunk r;
  nib16(b + 2, &r.w0, &r.w1);
  r.w0 = iq4(r.w0), r.w1 = iq4(r.w1);
  r.s0 = r.s1 = f16n(b), r.m0 = r.m1 = 0;
  return r;
}
static inline nchunk n_iq4_xs(const uint8_t *b, int c) {
  nchunk r;
  uint16_t sh;
  memcpy(&sh, b + 2, 2);
  int ls = ((b[4 + c / 2] >> (4 * (c % 2))) & 0xF) | (((sh >> (2 * c)) & 3) << 4);
  nib16(b + 8 + 16 * c, &r.w0, &r.w1);
  r.w0 = iq4(r.w0), r.w1 = iq4(r.w1);
  r.s0 = r.s1 = f16n(b) * (float)(ls - 32), r.m0 = r.m1 = 0;
  return r;
}

/* Σ w·q over 16 bytes into 4 lanes of 32 bits: SDOT, or SMULL + SADALP */
static inline int32x4_t sum16_mul(int8x16_t w, int8x16_t q) {
  int16x8_t lo = vmull_s8(vget_low_s8(w), vget_low_s8(q)), hi = vmull_high_s8(w, q);
  return vpadalq_s16(vpaddlq_s16(lo), hi);
}
#if !NO_SDOT
TDOT static inline int32x4_t sum16_dot(int8x16_t w, int8x16_t q) { return vdotq_s32(vdupq_n_s32(0), w, q); }
#else
static inline int32x4_t sum16_dot(int8x16_t w, int8x16_t q) { return sum16_mul(w, q); }
#endif

/* For each type and each way to multiply: irown_<t>_<dot|mul> out[t * ldc] = A[t] · row for T <= IN_MAX */
#define DEF_IN(TY, UNPACK, BYTES, PER, SUM, ATTR)                                                                        \
  ATTR static void idecn_##TY##_##SUM(float *out, int ldc, const pf_qact *a, const uint8_t *W, size_t rb, int c0,      \
                                      int c1) {                                                                          \
    const int nch = a->nch, T = a->T;                                                                                    \
    for (int n = c0; n < c1; n++) {                                                                                      \
      const uint8_t *row = W + (size_t)n * rb;                                                                           \
      float32x4_t acc[IN_MAX];                                                                                           \
      float mn[IN_MAX];                                                                                                  \
      for (int t = 0; t < IN_MAX; t++) acc[t] = vdupq_n_f32(0), mn[t] = 0;                                               \
      size_t pf = DEC_AHEAD;                                                                                             \
      for (int c = 0; c < nch; c++) {                                                                                    \
        for (size_t e = (size_t)(c + 1) * BYTES / PER + DEC_AHEAD; pf < e; pf += 64)                                     \
          __builtin_prefetch((const char *)row + pf);                                                                    \
        nchunk ch = UNPACK(row + (size_t)(c / PER) * BYTES, c % PER);                                                   \
        for (int t = 0; t < T; t++) {                                                                                    \
          size_t ci = (size_t)t * nch + c;                                                                               \
          const int8_t *q = a->q + 32 * ci;                                                                              \
          float dx = a->d[ci];                                                                                           \
          acc[t] = vfmaq_n_f32(acc[t], vcvtq_f32_s32(sum16_##SUM(ch.w0, vld1q_s8(q))), ch.s0 * dx);                      \
          acc[t] = vfmaq_n_f32(acc[t], vcvtq_f32_s32(sum16_##SUM(ch.w1, vld1q_s8(q + 16))), ch.s1 * dx);                 \
          mn[t] += ch.m0 * a->xs16[2 * ci] + ch.m1 * a->xs16[2 * ci + 1];                                               \
        }                                                                                                                \
      }                                                                                                                  \
      for (int t = 0; t < T; t++) out[(size_t)t * ldc + n] = vaddvq_f32(acc[t]) + mn[t];                                 \
    }                                                                                                                    \
  }
#define DEF_IN2(TY, UNPACK, BYTES, PER) DEF_IN(TY, UNPACK, BYTES, PER, dot, TDOT) DEF_IN(TY, UNPACK, BYTES, PER, mul, )
DEF_IN2(q4_0, n_q4_0, 18, 1)
DEF_IN2(q4_1, n_q4_1, 20, 1)
DEF_IN2(q5_0, n_q5_0, 22, 1)
DEF_IN2(q5_1, n_q5_1, 24, 1)
DEF_IN2(q8_0, n_q8_0, 34, 1)
DEF_IN2(q2_k, n_q2_k, 84, 8)
DEF_IN2(q3_k, n_q3_k, 110, 8)
DEF_IN2(q4_k, n_q4_k, 144, 8)
DEF_IN2(q5_k, n_q5_k, 176, 8)
DEF_IN2(q6_k, n_q6_k, 210, 8)
DEF_IN2(iq4_nl, n_iq4_nl, 18, 1)
DEF_IN2(iq4_xs, n_iq4_xs, 136, 8)

typedef void (*idecn_fn)(float *out, int ldc, const pf_qact *a, const uint8_t *W, size_t rb, int c0, int c1);
#define IN_ENTRY(TY) {idecn_##TY##_dot, idecn_##TY##_mul}
static const idecn_fn g_idecn[GGML_TYPE_COUNT][2] = {
  [GGML_Q4_0] = IN_ENTRY(q4_0), [GGML_Q4_1] = IN_ENTRY(q4_1), [GGML_Q5_0] = IN_ENTRY(q5_0),
  [GGML_Q5_1] = IN_ENTRY(q5_1), [GGML_Q8_0] = IN_ENTRY(q8_0), [GGML_Q2_K] = IN_ENTRY(q2_k),
  [GGML_Q3_K] = IN_ENTRY(q3_k), [GGML_Q4_K] = IN_ENTRY(q4_k), [GGML_Q5_K] = IN_ENTRY(q5_k),
  [GGML_Q6_K] = IN_ENTRY(q6_k), [GGML_IQ4_NL] = IN_ENTRY(iq4_nl), [GGML_IQ4_XS] = IN_ENTRY(iq4_xs),
};

/* out[t][c0:c1] through the integer products, or 0 when this type or memory cannot */
static int nt_int8_neon(float *out, const float *A, const pf_wt *W, int T, int c0, int c1) {
  if (!pf_int8 || !g_idecn[W->type][0] || W->cols % 32) return 0;
  pf_qact a;
  a.T = T, a.K = W->cols, a.nch = W->cols / 32, a.off = NULL;
  size_t nf = (size_t)T * a.nch, cap;
  float *buf = pf_scratch_get(4 * nf + ((size_t)T * a.K + 3) / 4 + 16, &cap);
  if (!buf) return 0;
  a.d = buf, a.xs = buf + nf, a.xs16 = buf + 2 * nf, a.q = (int8_t *)(buf + 4 * nf);
  qact_fill_neon(&a, A, W->cols);
  idecn_fn f = g_idecn[W->type][has_dotprod() ? 0 : 1];
  for (int t0 = 0; t0 < T; t0 += IN_MAX) {
    pf_qact s = a;
    s.T = T - t0 < IN_MAX ? T - t0 : IN_MAX;
    s.q += (size_t)t0 * a.K, s.d += (size_t)t0 * a.nch, s.xs += (size_t)t0 * a.nch, s.xs16 += (size_t)2 * t0 * a.nch;
    f(out + (size_t)t0 * W->rows, W->rows, &s, W->data, W->row_bytes, c0, c1);
  }
  pf_scratch_put(buf, cap);
  return 1;
}

/* ------------------------------------------------------------ the table */

static void nt_dec_neon(float *out, const float *A, const pf_wt *W, int T, int c0, int c1, int exact) {
  if (!exact && nt_int8_neon(out, A, W, T, c0, c1)) return;
  pf_nt_dec_run(g_decn, DECN_MAX, dot_neon, out, A, W, T, c0, c1);
}

static const pf_gemm_isa gmn = {GN_MR, GN_NR, gn_pack_a, gn_pack_nt, gn_pack_nn, gn_tile, NULL,
                                g_deqn, nt_tiles_neon, nn_rows_neon, nt_dec_neon};

static void nt_neon(float *out, const float *A, const float *W, int T, int K, int N, int c0, int c1) {
  if (c1 <= c0) return;
  if (T <= 2) {   /* decode: each row of W streamed once */
    pf_wt w = {(const uint8_t *)W, GGML_F32, N, K, sizeof(float) * (size_t)K};
    nt_dec_neon(out, A, &w, T, c0, c1, 1);
    return;
  }
  if (T < N_MIN_GEMM || !pf_gemm_slice(&gmn, 1, out, N, A, K, T, K, W, NULL, K, c0, c1, 0))
    nt_tiles_neon(out, A, W, T, K, N, c0, c1);
}

static void nn_acc_neon(float *dA, const float *dY, const float *W, int T, int K, int N, int c0, int c1) {
  if (c1 <= c0) return;
  if (T < N_MIN_GEMM || !pf_gemm_slice(&gmn, 0, dA, K, dY, N, T, N, W, NULL, K, c0, c1, 1))
    nn_rows_neon(dA, dY, W, T, K, N, c0, c1);
}

static void nt_w_neon(float *out, const float *A, const pf_wt *W, int T, int c0, int c1, int exact) {
  const float *wf = pf_wt_f32(W);
  int K = W->cols, N = W->rows;
  if (wf) { nt_neon(out, A, wf, T, K, N, c0, c1); return; }
  if (c1 <= c0) return;
  if (!exact && T < N_MIN_GEMM && nt_int8_neon(out, A, W, T, c0, c1)) return;
  if (T >= N_MIN_GEMM && pf_gemm_slice(&gmn, 1, out, N, A, K, T, K, NULL, W, K, c0, c1, 0)) return;
  nt_dec_neon(out, A, W, T, c0, c1, exact);
}

static void nn_w_neon(float *dA, const float *dY, const pf_wt *W, int T, int c0, int c1) {
  const float *wf = pf_wt_f32(W);
  int K = W->cols, N = W->rows;
  if (wf) { nn_acc_neon(dA, dY, wf, T, K, N, c0, c1); return; }
  if (c1 <= c0) return;
  if (!pf_gemm_slice(&gmn, 0, dA, K, dY, N, T, N, NULL, W, K, c0, c1, 1)) pf_isa_portable.nn_w(dA, dY, W, T, c0, c1);
}

static int gemm_parallel_neon(int nn, float *out, const float *a, const float *w, const pf_wt *qw, int T, int n_in,
                              int n_out, int nslice, int exact) {
  (void)exact;
  if (T < N_MIN_GEMM) return 0;
  return pf_gemm_run(&gmn, nn, out, a, w, qw, T, n_in, n_out, nslice);
}

static int usable_neon(void) { return 1; }   /* AArch64 has NEON (Advanced SIMD) */

const pf_isa pf_isa_neon = {
  .kind = PF_KERNEL_NEON, .name = "neon", .usable = usable_neon, .dec_rows = DECN_MAX,
  .nt = nt_neon, .nn_acc = nn_acc_neon, .nt_w = nt_w_neon, .nn_w = nn_w_neon, .nt_dec = nt_dec_neon,
  .gemm_parallel = gemm_parallel_neon, .nt_int8 = nt_int8_neon, .gemm_int8 = NULL, .deq = g_deqn,
  .vexp_sum = vexp_sum_neon, .silu_mul = silu_mul_neon, .silu_mul_bwd = silu_mul_bwd_neon, .gelu = gelu_neon,
  .gelu_bwd = gelu_bwd_neon, .dot = dot_neon, .axpy = axpy_neon, .attend = attend_neon, .transpose = transpose_neon,
};

/* "neon (dotprod)" or "neon" for prefix_debug() */
int pf_neon_dotprod(void) { return has_dotprod(); }

#endif /* __aarch64__ */
