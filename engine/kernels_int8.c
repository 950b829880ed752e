/*
** kernels_int8.c — products with quantized weights in integers (AVX-512
** VNNI), for decode and prefill, as llama.cpp computes them: the
** activations are rounded to int8 in chunks of 32, and 64 weights meet 64
** activation bytes in one instruction.
*/
#include "internal.h"
#include "simd.h"

#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#define DEC_MAX 8        /* rows of A a decode row kernel takes at once */
#define DEC_AHEAD 2048   /* bytes of a weight row prefetched ahead (kernels_q.c) */

/* ------------------------------------------- decode with integer products
** For the common block types, decode (a few rows of A) can multiply in
** integers, as llama.cpp does: each row of A is quantized to int8 in chunks
** of 32 (scale = max|a| / 127), and a block's 64 weights meet 64 of A's int8
** values in one VNNI instruction (vpdpbusd: unsigned weight bytes × signed
** activation bytes, summed in 32-bit lanes of 4). Each lane's sum is scaled
** by its (sub-)block's weight scale times the chunk's activation scale, in
** f32. Weights that are signed are offset to unsigned (q + off), and
** off · Σ a-bytes is subtracted by starting the lanes at -off · (sums of 4
** activation bytes). Minimums (Q4_K, Q5_K) use the chunks' Σ a.
** The price is the activations' 8-bit rounding: about 0.4% of each product
** term, which leaves a model's NLL within 2e-3 of the f32 product's
** (tests/test_quant.c); prefill and training keep the exact f32 products. */

#define TVNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))

TVNNI static inline float f16s(const uint8_t *p) {
  uint16_t h;
  memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

int pf_int8 = 1;

typedef struct qact {
  int T, K, nch;
  int8_t *q;     /* (T, K) */
  float *d;      /* (T, nch) each chunk's scale */
  float *xs;     /* (T, nch) each chunk's d · Σ q */
  int32_t *off;  /* (T, K / 4) -off · the sum of each 4 q's (the weights' unsigned offset) */
} qact;

/* quantize T rows of A (K a multiple of 32) */
TVNNI static void qact_fill(qact *a, const float *A, int lda, int off) {
  for (int t = 0; t < a->T; t++)
    for (int c = 0; c < a->nch; c++) {
      const float *x = A + (size_t)t * lda + 32 * (size_t)c;
      __m512 x0 = _mm512_loadu_ps(x), x1 = _mm512_loadu_ps(x + 16);
      float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(x0), _mm512_abs_ps(x1)));
      float d = amax / 127.0f, id = amax > 0 ? 127.0f / amax : 0.0f;
      __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(x0, _mm512_set1_ps(id)));   /* round to nearest even */
      __m512i q1 = _mm512_cvtps_epi32(_mm512_mul_ps(x1, _mm512_set1_ps(id)));
      int8_t *q = a->q + (size_t)t * a->K + 32 * (size_t)c;
      _mm_storeu_si128((__m128i *)q, _mm512_cvtsepi32_epi8(q0));
      _mm_storeu_si128((__m128i *)(q + 16), _mm512_cvtsepi32_epi8(q1));
      a->d[(size_t)t * a->nch + c] = d;
      /* sums of 4 bytes: vpdpbusd of ones with the bytes */
      __m256i b = _mm256_loadu_si256((const __m256i *)q);
      __m256i s4 = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(1), b);
      _mm256_storeu_si256((__m256i *)(a->off + (size_t)t * (a->K / 4) + 8 * (size_t)c),
                          _mm256_mullo_epi32(s4, _mm256_set1_epi32(-off)));
      a->xs[(size_t)t * a->nch + c] = d * (float)(_mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1)));
    }
}

/* lanes [v[i] × 8, v[i+1] × 8] of an 8-float vector */
TVNNI static inline __m512 pair8(__m256 v, int i) {
  return _mm512_permutexvar_ps(_mm512_set_epi32(i + 1, i + 1, i + 1, i + 1, i + 1, i + 1, i + 1, i + 1, i, i, i, i, i, i,
                                                i, i),
                               _mm512_castps256_ps512(v));
}
/* lanes [v[i] × 4, v[i+1] × 4, v[i+2] × 4, v[i+3] × 4] of a 16-float vector */
TVNNI static inline __m512 quad4(__m512 v, int i) {
  return _mm512_permutexvar_ps(_mm512_set_epi32(i + 3, i + 3, i + 3, i + 3, i + 2, i + 2, i + 2, i + 2, i + 1, i + 1,
                                                i + 1, i + 1, i, i, i, i),
                               v);
}
/* 64 nibbles of 32 bytes: the low ones, then the high ones */
TVNNI static inline __m512i nib64(const uint8_t *p) {
  __m256i v = _mm256_loadu_si256((const __m256i *)p), m = _mm256_set1_epi8(0x0F);
  return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_and_si256(v, m)),
                            _mm256_and_si256(_mm256_srli_epi16(v, 4), m), 1);
}

/* Q4_K: 8 sub-blocks of 32, w = d·sc·q − dmin·m */
TVNNI static inline __attribute__((always_inline)) void iq4k_row(int T, float *out, int ldc, const qact *a,
                                                                 const uint8_t *row, int nsb) {
  __m512 acc[DEC_MAX];
  __m256 macc[DEC_MAX];
  #pragma GCC unroll 8
  for (int t = 0; t < DEC_MAX; t++) acc[t] = _mm512_setzero_ps(), macc[t] = _mm256_setzero_ps();
  size_t pf = DEC_AHEAD;
  for (int sb = 0; sb < nsb; sb++) {
    const uint8_t *b = row + (size_t)sb * 144;
    for (size_t e = (size_t)(sb + 1) * 144 + DEC_AHEAD; pf < e; pf += 64) _mm_prefetch((const char *)row + pf, _MM_HINT_T0);
    uint32_t u[3];
    memcpy(u, b + 4, 12);
    uint64_t sc = (uint64_t)(u[0] & 0x3f3f3f3f) | (uint64_t)((u[2] & 0x0f0f0f0f) | ((u[0] >> 2) & 0x30303030)) << 32;
    uint64_t mn = (uint64_t)(u[1] & 0x3f3f3f3f) | (uint64_t)(((u[2] >> 4) & 0x0f0f0f0f) | ((u[1] >> 2) & 0x30303030)) << 32;
    __m256 scv = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)sc))),
                               _mm256_set1_ps(f16s(b)));
    __m256 mnv = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)mn))),
                               _mm256_set1_ps(f16s(b + 2)));
    __m256 s8[DEC_MAX];
    #pragma GCC unroll 8
    for (int t = 0; t < DEC_MAX; t++)
      if (t < T) {
        size_t ci = (size_t)t * a->nch + 8 * (size_t)sb;
        s8[t] = _mm256_mul_ps(scv, _mm256_loadu_ps(a->d + ci));
        macc[t] = _mm256_fmadd_ps(mnv, _mm256_loadu_ps(a->xs + ci), macc[t]);
      }
    #pragma GCC unroll 4
    for (int g = 0; g < 4; g++) {
      __m512i w = nib64(b + 16 + 32 * g);
      #pragma GCC unroll 8
      for (int t = 0; t < DEC_MAX; t++)
        if (t < T) {
          __m512i x = _mm512_loadu_si512(a->q + (size_t)t * a->K + 256 * (size_t)sb + 64 * g);
          __m512i s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w, x);
          acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), pair8(s8[t], 2 * g), acc[t]);
        }
    }
  }
  #pragma GCC unroll 8
  for (int t = 0; t < DEC_MAX; t++)
    if (t < T) {
      __m256 m = macc[t];
      __m128 m4 = _mm_add_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
      m4 = _mm_add_ps(m4, _mm_movehl_ps(m4, m4));
      m4 = _mm_add_ss(m4, _mm_shuffle_ps(m4, m4, 1));
      out[(size_t)t * ldc] = _mm512_reduce_add_ps(acc[t]) - _mm_cvtss_f32(m4);
    }
}

/* Q6_K: 16 sub-blocks of 16, w = d·sc·(q − 32), q of 6 bits */
TVNNI static inline __attribute__((always_inline)) void iq6k_row(int T, float *out, int ldc, const qact *a,
                                                                 const uint8_t *row, int nsb) {
  __m512 acc[DEC_MAX];
  #pragma GCC unroll 8
  for (int t = 0; t < DEC_MAX; t++) acc[t] = _mm512_setzero_ps();
  const __m512i dup2 = _mm512_set_epi32(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0);
  const __m512i m4 = _mm512_set1_epi8(0x0F), m3 = _mm512_set1_epi8(3);
  size_t pf = DEC_AHEAD;
  for (int sb = 0; sb < nsb; sb++) {
    const uint8_t *b = row + (size_t)sb * 210;
    for (size_t e = (size_t)(sb + 1) * 210 + DEC_AHEAD; pf < e; pf += 64) _mm_prefetch((const char *)row + pf, _MM_HINT_T0);
    __m512 scv = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(b + 192)))),
                               _mm512_set1_ps(f16s(b + 208)));
    __m512 s16[DEC_MAX];
    #pragma GCC unroll 8
    for (int t = 0; t < DEC_MAX; t++)
      if (t < T)
        s16[t] = _mm512_mul_ps(scv, _mm512_permutexvar_ps(dup2, _mm512_castps256_ps512(
                                                                    _mm256_loadu_ps(a->d + (size_t)t * a->nch + 8 * (size_t)sb))));
    #pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
      __m512i ql = _mm512_loadu_si512(b + 64 * h);
      __m256i qh = _mm256_loadu_si256((const __m256i *)(b + 128 + 32 * h));
      __m512i qhh = _mm512_inserti64x4(_mm512_castsi256_si512(qh), _mm256_srli_epi16(qh, 2), 1);
      #pragma GCC unroll 2
      for (int pp = 0; pp < 2; pp++) {
        __m512i lo = pp ? _mm512_and_si512(_mm512_srli_epi16(ql, 4), m4) : _mm512_and_si512(ql, m4);
        __m512i hi = _mm512_and_si512(pp ? _mm512_srli_epi16(qhh, 4) : qhh, m3);
        __m512i w = _mm512_or_si512(lo, _mm512_slli_epi16(hi, 4));
        size_t k = 256 * (size_t)sb + 128 * h + 64 * pp;
        #pragma GCC unroll 8
        for (int t = 0; t < DEC_MAX; t++)
          if (t < T) {
            __m512i x = _mm512_loadu_si512(a->q + (size_t)t * a->K + k);
            __m512i s = _mm512_dpbusd_epi32(_mm512_loadu_si512(a->off + ((size_t)t * a->K + k) / 4), w, x);
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), quad4(s16[t], 8 * h + 4 * pp), acc[t]);
          }
      }
    }
  }
  #pragma GCC unroll 8
  for (int t = 0; t < DEC_MAX; t++)
    if (t < T) out[(size_t)t * ldc] = _mm512_reduce_add_ps(acc[t]);
}

/* Q8_0: blocks of 32 int8, w = d·q; two blocks at a time, offset by 128 */
TVNNI static inline __attribute__((always_inline)) void iq8_row(int T, float *out, int ldc, const qact *a,
                                                                const uint8_t *row, int nb) {
  __m512 acc[DEC_MAX];
  #pragma GCC unroll 8
  for (int t = 0; t < DEC_MAX; t++) acc[t] = _mm512_setzero_ps();
  const __m512i sign = _mm512_set1_epi8((char)0x80);
  const __m512i idx = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
  size_t pf = DEC_AHEAD;
  int bi = 0;
  for (; bi + 1 < nb; bi += 2) {
    const uint8_t *b = row + (size_t)bi * 34;
    for (size_t e = (size_t)(bi + 2) * 34 + DEC_AHEAD; pf < e; pf += 64) _mm_prefetch((const char *)row + pf, _MM_HINT_T0);
    __m512i w = _mm512_xor_si512(_mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(b + 2))),
                                                    _mm256_loadu_si256((const __m256i *)(b + 36)), 1), sign);
    __m512 dw = _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(f16s(b)), _mm512_set1_ps(f16s(b + 34)));
    #pragma GCC unroll 8
    for (int t = 0; t < DEC_MAX; t++)
      if (t < T) {
        size_t k = 32 * (size_t)bi;
        __m512i x = _mm512_loadu_si512(a->q + (size_t)t * a->K + k);
        __m512i s = _mm512_dpbusd_epi32(_mm512_loadu_si512(a->off + ((size_t)t * a->K + k) / 4), w, x);
        __m512 dx = _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(_mm_castpd_ps(
                                                     _mm_load_sd((const double *)(a->d + (size_t)t * a->nch + bi)))));
        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw, dx), acc[t]);
      }
  }
  float tail[DEC_MAX] = {0};
  if (bi < nb) {   /* an odd last block */
    const uint8_t *b = row + (size_t)bi * 34;
    __m256i w = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(b + 2)), _mm256_set1_epi8((char)0x80));
    #pragma GCC unroll 8
    for (int t = 0; t < DEC_MAX; t++)
      if (t < T) {
        size_t k = 32 * (size_t)bi;
        __m256i s = _mm256_dpbusd_epi32(_mm256_loadu_si256((const __m256i *)(a->off + ((size_t)t * a->K + k) / 4)), w,
                                        _mm256_loadu_si256((const __m256i *)(a->q + (size_t)t * a->K + k)));
        __m512 v = _mm512_castps256_ps512(_mm256_cvtepi32_ps(s));
        tail[t] = _mm512_reduce_add_ps(_mm512_maskz_mov_ps(0xFF, v)) * f16s(b) * a->d[(size_t)t * a->nch + bi];
      }
  }
  #pragma GCC unroll 8
  for (int t = 0; t < DEC_MAX; t++)
    if (t < T) out[(size_t)t * ldc] = _mm512_reduce_add_ps(acc[t]) + tail[t];
}

#define DEF_IROW(NAME, ROWFN, BYTES, UNITS)                                                                            \
  TVNNI static void NAME(float *out, int ldc, const qact *a, const uint8_t *W, size_t rb, int c0, int c1) {            \
    int units = a->K / UNITS;                                                                                          \
    for (int n = c0; n < c1; n++) {                                                                                    \
      const uint8_t *row = W + (size_t)n * rb;                                                                         \
      switch (a->T) {                                                                                                  \
        case 1: ROWFN(1, out + n, ldc, a, row, units); break;                                                          \
        case 2: ROWFN(2, out + n, ldc, a, row, units); break;                                                          \
        case 3: ROWFN(3, out + n, ldc, a, row, units); break;                                                          \
        case 4: ROWFN(4, out + n, ldc, a, row, units); break;                                                          \
        default:                                                                                                       \
          for (int t0 = 0; t0 < a->T; t0 += 4) { /* more rows: 4 at a time over the same W row (in L1 by then) */     \
            qact s = *a;                                                                                               \
            s.T = a->T - t0 < 4 ? a->T - t0 : 4;                                                                       \
            s.q += (size_t)t0 * a->K, s.d += (size_t)t0 * a->nch, s.xs += (size_t)t0 * a->nch;                         \
            s.off += (size_t)t0 * (a->K / 4);                                                                          \
            switch (s.T) {                                                                                             \
              case 1: ROWFN(1, out + n + (size_t)t0 * ldc, ldc, &s, row, units); break;                                \
              case 2: ROWFN(2, out + n + (size_t)t0 * ldc, ldc, &s, row, units); break;                                \
              case 3: ROWFN(3, out + n + (size_t)t0 * ldc, ldc, &s, row, units); break;                                \
              default: ROWFN(4, out + n + (size_t)t0 * ldc, ldc, &s, row, units); break;                               \
            }                                                                                                          \
          }                                                                                                            \
      }                                                                                                                \
    }                                                                                                                  \
  }

DEF_IROW(idec_q4_k, iq4k_row, 144, 256)
DEF_IROW(idec_q6_k, iq6k_row, 210, 256)
DEF_IROW(idec_q8_0, iq8_row, 34, 32)

typedef void (*idec_fn)(float *out, int ldc, const qact *a, const uint8_t *W, size_t rb, int c0, int c1);
static const struct { idec_fn fn; int off; } g_idec[GGML_TYPE_COUNT] = {
  [GGML_Q4_K] = {idec_q4_k, 0}, [GGML_Q6_K] = {idec_q6_k, 32}, [GGML_Q8_0] = {idec_q8_0, 128},
};

static int has_vnni(void) {
  static int v = -1;
  if (v < 0) {
    __builtin_cpu_init();
    v = __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl");
  }
  return v;
}

/* out[t][c0:c1] through the integer products, or 0 when this type, CPU or memory cannot */
int pf_kernel_nt_int8(int kind, float *out, const float *A, const pf_wt *W, int T, int c0, int c1) {
  if (!pf_int8 || kind != PF_KERNEL_AVX512 || !g_idec[W->type].fn || W->cols % 32 || !has_vnni()) return 0;
  qact a = {T, W->cols, W->cols / 32, NULL, NULL, NULL, NULL};
  size_t need = (size_t)T * ((size_t)a.K + 2 * sizeof(float) * a.nch + sizeof(int32_t) * (a.K / 4)) / 4 + 64, cap;
  float *buf = pf_scratch_get(need, &cap);
  if (!buf) return 0;
  a.d = buf;
  a.xs = a.d + (size_t)T * a.nch;
  a.off = (int32_t *)(a.xs + (size_t)T * a.nch);
  a.q = (int8_t *)(a.off + (size_t)T * (a.K / 4));
  qact_fill(&a, A, W->cols, g_idec[W->type].off);
  g_idec[W->type].fn(out, W->rows, &a, W->data, W->row_bytes, c0, c1);
  pf_scratch_put(buf, cap);
  return 1;
}

/* ------------------------------------------------ prefill: an int8 GEMM
** out (M, N) = A (M, K) · Wᵀ for M > 48 rows. A is quantized once (as for
** decode). W is unpacked 32 rows at a time into a panel of unsigned bytes,
** each row's 4-byte groups side by side ([K/4][32] dwords, so one 64-byte
** load holds 4 k-values of 16 columns), with each group of G (32, or 16 for
** Q6_K) k-values' weight scale dw and cost per unit of activation sum cr, so
** that Σ w·x over a group = dw · Σ u·q_x · dx − cr · Σ x. The micro-kernel
** keeps a tile of up to 6 rows × 32 columns: per 4 k-values, two panel loads,
** a broadcast of each row's 4 activation bytes and two VNNI products per
** row; at each group's end the 32-bit sums are scaled into f32. */

#define IG_MR 6
#define IG_NR 32

/* Each type: the row's groups as unsigned bytes u, with dw and cr per group (stride 32: a panel column). */
typedef void (*unpack_fn)(const uint8_t *row, int K, uint8_t *u, float *dw, float *cr);

TVNNI static void unpack_q4_k(const uint8_t *row, int K, uint8_t *u, float *dw, float *cr) {
  const __m256i m4 = _mm256_set1_epi8(0x0F);
  for (int sb = 0; sb < K / 256; sb++) {
    const uint8_t *b = row + (size_t)sb * 144;
    float d = f16s(b), dmin = f16s(b + 2);
    for (int c = 0; c < 8; c++) {
      int sc, mn;
      pf_k4_scale_min(b + 4, c, &sc, &mn);
      dw[(8 * sb + c) * IG_NR] = d * (float)sc;
      cr[(8 * sb + c) * IG_NR] = dmin * (float)mn;
    }
    for (int g = 0; g < 4; g++) {
      __m256i v = _mm256_loadu_si256((const __m256i *)(b + 16 + 32 * g));
      _mm256_storeu_si256((__m256i *)(u + 256 * (size_t)sb + 64 * g), _mm256_and_si256(v, m4));
      _mm256_storeu_si256((__m256i *)(u + 256 * (size_t)sb + 64 * g + 32), _mm256_and_si256(_mm256_srli_epi16(v, 4), m4));
    }
  }
}

TVNNI static void unpack_q5_k(const uint8_t *row, int K, uint8_t *u, float *dw, float *cr) {
  const __m256i m4 = _mm256_set1_epi8(0x0F), s16 = _mm256_set1_epi8(16);
  for (int sb = 0; sb < K / 256; sb++) {
    const uint8_t *b = row + (size_t)sb * 176;
    float d = f16s(b), dmin = f16s(b + 2);
    __m256i qh = _mm256_loadu_si256((const __m256i *)(b + 16));
    for (int c = 0; c < 8; c++) {
      int sc, mn;
      pf_k4_scale_min(b + 4, c, &sc, &mn);
      dw[(8 * sb + c) * IG_NR] = d * (float)sc;
      cr[(8 * sb + c) * IG_NR] = dmin * (float)mn;
      __m256i v = _mm256_loadu_si256((const __m256i *)(b + 48 + 32 * (c / 2)));
      __m256i q = c % 2 ? _mm256_and_si256(_mm256_srli_epi16(v, 4), m4) : _mm256_and_si256(v, m4);
      __m256i bit = _mm256_set1_epi8((char)(1 << c));
      __m256i hi = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(qh, bit), bit), s16);
      _mm256_storeu_si256((__m256i *)(u + 256 * (size_t)sb + 32 * c), _mm256_or_si256(q, hi));
    }
  }
}

TVNNI static void unpack_q6_k(const uint8_t *row, int K, uint8_t *u, float *dw, float *cr) {
  const __m256i m4 = _mm256_set1_epi8(0x0F), m3 = _mm256_set1_epi8(3);
  for (int sb = 0; sb < K / 256; sb++) {
    const uint8_t *b = row + (size_t)sb * 210;
    const int8_t *sc = (const int8_t *)(b + 192);
    float d = f16s(b + 208);
    for (int i = 0; i < 16; i++) {
      dw[(16 * sb + i) * IG_NR] = d * (float)sc[i];
      cr[(16 * sb + i) * IG_NR] = 32.0f * d * (float)sc[i];
    }
    for (int h = 0; h < 2; h++) {
      __m256i l0 = _mm256_loadu_si256((const __m256i *)(b + 64 * h)), l1 = _mm256_loadu_si256((const __m256i *)(b + 64 * h + 32));
      __m256i qh = _mm256_loadu_si256((const __m256i *)(b + 128 + 32 * h));
      uint8_t *o = u + 256 * (size_t)sb + 128 * h;
      _mm256_storeu_si256((__m256i *)o, _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(_mm256_and_si256(qh, m3), 4)));
      _mm256_storeu_si256((__m256i *)(o + 32), _mm256_or_si256(_mm256_and_si256(l1, m4),
                                                               _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), m3), 4)));
      _mm256_storeu_si256((__m256i *)(o + 64), _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                                                               _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), m3), 4)));
      _mm256_storeu_si256((__m256i *)(o + 96), _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                                               _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), m3), 4)));
    }
  }
}

TVNNI static void unpack_q8_0(const uint8_t *row, int K, uint8_t *u, float *dw, float *cr) {
  for (int bi = 0; bi < K / 32; bi++) {
    const uint8_t *b = row + (size_t)bi * 34;
    float d = f16s(b);
    dw[bi * IG_NR] = d;
    cr[bi * IG_NR] = 128.0f * d;
    _mm256_storeu_si256((__m256i *)(u + 32 * (size_t)bi),
                        _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(b + 2)), _mm256_set1_epi8((char)0x80)));
  }
}

TVNNI static void unpack_q4_0(const uint8_t *row, int K, uint8_t *u, float *dw, float *cr) {
  const __m128i m4 = _mm_set1_epi8(0x0F);
  for (int bi = 0; bi < K / 32; bi++) {
    const uint8_t *b = row + (size_t)bi * 18;
    float d = f16s(b);
    dw[bi * IG_NR] = d;
    cr[bi * IG_NR] = 8.0f * d;
    __m128i q = _mm_loadu_si128((const __m128i *)(b + 2));
    _mm_storeu_si128((__m128i *)(u + 32 * (size_t)bi), _mm_and_si128(q, m4));
    _mm_storeu_si128((__m128i *)(u + 32 * (size_t)bi + 16), _mm_and_si128(_mm_srli_epi16(q, 4), m4));
  }
}

static const struct { unpack_fn unpack; int G; } g_igemm[GGML_TYPE_COUNT] = {
  [GGML_Q4_K] = {unpack_q4_k, 32}, [GGML_Q5_K] = {unpack_q5_k, 32}, [GGML_Q6_K] = {unpack_q6_k, 16},
  [GGML_Q8_0] = {unpack_q8_0, 32}, [GGML_Q4_0] = {unpack_q4_0, 32},
};

/* rows n0 .. n0+nw of W into the panel: bp [K/4][32] dwords of unsigned bytes, dw and cr [K/G][32] (zero past nw) */
TVNNI static void ig_pack(const pf_wt *W, int n0, int nw, uint8_t *tmp, int32_t *bp, float *dw, float *cr, int G) {
  int K = W->cols, ng = K / G, nq = K / 4;
  for (int r = 0; r < IG_NR; r++) {
    uint8_t *u = tmp + (size_t)r * K;
    if (r < nw) g_igemm[W->type].unpack(W->data + (size_t)(n0 + r) * W->row_bytes, K, u, dw + r, cr + r);
    else {
      memset(u, 0, (size_t)K);
      for (int g = 0; g < ng; g++) dw[g * IG_NR + r] = cr[g * IG_NR + r] = 0;
    }
  }
  for (int h = 0; h < 2; h++)   /* 16 rows × 16 dwords at a time, transposed */
    for (int q0 = 0; q0 < nq; q0 += 16) {
      int qq = nq - q0 < 16 ? nq - q0 : 16;
      __mmask16 km = qq == 16 ? 0xFFFF : (__mmask16)((1u << qq) - 1);
      __m512 r[16];
      for (int i = 0; i < 16; i++) r[i] = _mm512_maskz_loadu_ps(km, (const float *)(tmp + (size_t)(16 * h + i) * K) + q0);
      pf_transpose16(r);
      for (int j = 0; j < qq; j++) _mm512_storeu_ps((float *)(bp + (size_t)(q0 + j) * IG_NR + 16 * h), r[j]);
    }
}

/* out[0..mr)[0..nw) = rows of A against the panel; A's int8 rows at stride K, their chunk scales and group sums */
TVNNI static inline __attribute__((always_inline)) void ig_tile(int mr, float *out, int ldc, int nw, const int8_t *aq, int K,
                                                                 const float *ad, const float *axs, int nch, int nxs,
                                                                 const int32_t *bp, const float *dw, const float *cr, int G) {
  __m512 c[IG_MR][2];
#pragma GCC unroll 6
  for (int i = 0; i < IG_MR; i++) c[i][0] = c[i][1] = _mm512_setzero_ps();
  int ng = K / G, steps = G / 4;
  for (int g = 0; g < ng; g++) {
    __m512i s[IG_MR][2];
#pragma GCC unroll 6
    for (int i = 0; i < IG_MR; i++) s[i][0] = s[i][1] = _mm512_setzero_si512();
    const int32_t *b = bp + (size_t)g * steps * IG_NR;
    for (int k = 0; k < steps; k++, b += IG_NR) {
      __m512i b0 = _mm512_loadu_si512(b), b1 = _mm512_loadu_si512(b + 16);
      int off = g * G + 4 * k;
#pragma GCC unroll 6
      for (int i = 0; i < IG_MR; i++)
        if (i < mr) {
          int32_t a4;
          memcpy(&a4, aq + (size_t)i * K + off, 4);
          __m512i a = _mm512_set1_epi32(a4);
          s[i][0] = _mm512_dpbusd_epi32(s[i][0], b0, a);
          s[i][1] = _mm512_dpbusd_epi32(s[i][1], b1, a);
        }
    }
    __m512 w0 = _mm512_loadu_ps(dw + (size_t)g * IG_NR), w1 = _mm512_loadu_ps(dw + (size_t)g * IG_NR + 16);
    __m512 r0 = _mm512_loadu_ps(cr + (size_t)g * IG_NR), r1 = _mm512_loadu_ps(cr + (size_t)g * IG_NR + 16);
    int ch = g * G / 32;
#pragma GCC unroll 6
    for (int i = 0; i < IG_MR; i++)
      if (i < mr) {
        __m512 dx = _mm512_set1_ps(ad[(size_t)i * nch + ch]), xs = _mm512_set1_ps(axs[(size_t)i * nxs + g]);
        c[i][0] = _mm512_fnmadd_ps(xs, r0, _mm512_fmadd_ps(_mm512_cvtepi32_ps(s[i][0]), _mm512_mul_ps(dx, w0), c[i][0]));
        c[i][1] = _mm512_fnmadd_ps(xs, r1, _mm512_fmadd_ps(_mm512_cvtepi32_ps(s[i][1]), _mm512_mul_ps(dx, w1), c[i][1]));
      }
  }
  __mmask16 m0 = nw >= 16 ? 0xFFFF : (__mmask16)((1u << nw) - 1), m1 = nw >= 32 ? 0xFFFF : nw <= 16 ? 0 : (__mmask16)((1u << (nw - 16)) - 1);
#pragma GCC unroll 6
  for (int i = 0; i < IG_MR; i++)
    if (i < mr) {
      _mm512_mask_storeu_ps(out + (size_t)i * ldc, m0, c[i][0]);
      if (m1) _mm512_mask_storeu_ps(out + (size_t)i * ldc + 16, m1, c[i][1]);
    }
}

TVNNI static void ig_tile_n(int mr, float *out, int ldc, int nw, const int8_t *aq, int K, const float *ad,
                            const float *axs, int nch, int nxs, const int32_t *bp, const float *dw, const float *cr, int G) {
  switch (mr) {
#define IG_CASE(n) case n: ig_tile(n, out, ldc, nw, aq, K, ad, axs, nch, nxs, bp, dw, cr, G); break;
    IG_CASE(1) IG_CASE(2) IG_CASE(3) IG_CASE(4) IG_CASE(5) IG_CASE(6)
#undef IG_CASE
    default: break;
  }
}

typedef struct ig_job {
  float *out;
  const float *A;   /* f32, for a slice that cannot have its panel memory */
  const pf_wt *W;
  const qact *a;
  const float *xs;   /* the activations' sums per group of G */
  int M, G, nslice;
} ig_job;

static void ig_slice(void *arg, int si) {
  const ig_job *j = arg;
  const pf_wt *W = j->W;
  int K = W->cols, N = W->rows, G = j->G, ng = K / G;
  int per = ((N + j->nslice - 1) / j->nslice + IG_NR - 1) / IG_NR * IG_NR, c0 = si * per, c1 = c0 + per < N ? c0 + per : N;
  if (c1 <= c0) return;
  size_t cap, need = ((size_t)2 * IG_NR * K + 2 * sizeof(float) * (size_t)ng * IG_NR) / sizeof(float) + 64;
  float *buf = pf_scratch_get(need, &cap);
  if (!buf) {   /* no panel memory: the f32 kernels */
    pf_kernel_nt_w(PF_KERNEL_AVX512, j->out, j->A, W, j->M, c0, c1, 1);
    return;
  }
  float *dw = buf, *cr = dw + (size_t)ng * IG_NR;
  int32_t *bp = (int32_t *)(cr + (size_t)ng * IG_NR);
  uint8_t *tmp = (uint8_t *)(bp + (size_t)IG_NR * K / 4);
  for (int n0 = c0; n0 < c1; n0 += IG_NR) {
    int nw = c1 - n0 < IG_NR ? c1 - n0 : IG_NR;
    ig_pack(W, n0, nw, tmp, bp, dw, cr, G);
    for (int i0 = 0; i0 < j->M; i0 += IG_MR) {
      int mr = j->M - i0 < IG_MR ? j->M - i0 : IG_MR;
      ig_tile_n(mr, j->out + (size_t)i0 * N + n0, N, nw, j->a->q + (size_t)i0 * K, K, j->a->d + (size_t)i0 * j->a->nch,
                j->xs + (size_t)i0 * ng, j->a->nch, ng, bp, dw, cr, G);
    }
  }
  pf_scratch_put(buf, cap);
}

int pf_gemm_int8(float *out, const float *A, const pf_wt *W, int M, int nslice) {
  if (!pf_int8 || pf_get_kernel() != PF_KERNEL_AVX512 || pf_get_naive() || !g_igemm[W->type].unpack || W->cols % 64 ||
      !has_vnni())
    return 0;
  int K = W->cols, G = g_igemm[W->type].G, ng = K / G;
  qact a = {M, K, K / 32, NULL, NULL, NULL, NULL};
  size_t need = ((size_t)M * K + (size_t)M * (2 * a.nch + ng) * sizeof(float) + sizeof(int32_t) * (size_t)M * (K / 4)) / 4 + 64, cap;
  float *buf = pf_scratch_get(need, &cap);
  if (!buf) return 0;
  a.d = buf;
  a.xs = a.d + (size_t)M * a.nch;
  float *xs = a.xs + (size_t)M * a.nch;
  a.off = (int32_t *)(xs + (size_t)M * ng);
  a.q = (int8_t *)(a.off + (size_t)M * (K / 4));
  qact_fill(&a, A, K, 0);
  if (G == 32) memcpy(xs, a.xs, sizeof(float) * (size_t)M * ng);
  else   /* sums per 16: the chunk scale times the sum of each half chunk's bytes */
    for (int i = 0; i < M; i++)
      for (int g = 0; g < ng; g++) {
        const int8_t *q = a.q + (size_t)i * K + 16 * (size_t)g;
        int s = 0;
        for (int e = 0; e < 16; e++) s += q[e];
        xs[(size_t)i * ng + g] = a.d[(size_t)i * a.nch + g / 2] * (float)s;
      }
  ig_job j = {out, A, W, &a, xs, M, G, nslice};
  pf_parallel_for(nslice, ig_slice, &j);
  pf_scratch_put(buf, cap);
  return 1;
}
