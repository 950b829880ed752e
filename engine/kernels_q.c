/*
** kernels_q.c — products with weights of other types than F32, read as the
** file stores them (no f32 copy of the model):
**
**   pf_kernel_nt_dec    decode (a few rows of A): each row of W is streamed
**                       once, its 32-element chunks unpacked into registers
**                       and multiplied into every row of A (AVX-512, one
**                       instance per type so the unpacking is inlined)
**   pf_wt_deq           any range of a row to f32: what the packed GEMM and
**                       the decode-batch kernel (kernels.c) unpack panels with
**   pf_kernel_*_panels  panels unpacked to f32 through OpenBLAS, for CPUs
**                       without the engine's kernels
**
** The vector unpacking does the reference's arithmetic in its order, so it
** gives exactly quant.c's values (tested), and the products agree with the
** naive product on dequantized weights.
*/
#include "internal.h"

#include <cblas.h>
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#define T512Q __attribute__((target("avx512f,avx2,fma,f16c")))

/* ------------------------------------------- chunk unpacking, AVX-512
** d512_<type>(blk, c, lo, hi): elements 32c..32c+15 of the block to lo, the
** next 16 to hi. Offsets and layouts as in quant.c. */

T512Q static inline float f16s(const uint8_t *p) {
  uint16_t h;
  memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}
T512Q static inline __m512 u8_ps(__m128i v) { return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(v)); }
T512Q static inline __m512i u8_i32(__m128i v) { return _mm512_cvtepu8_epi32(v); }
T512Q static inline __m128i lo_nib(__m128i q) { return _mm_and_si128(q, _mm_set1_epi8(0x0F)); }
T512Q static inline __m128i hi_nib(__m128i q) { return _mm_and_si128(_mm_srli_epi16(q, 4), _mm_set1_epi8(0x0F)); }
T512Q static inline __m128i ld16(const uint8_t *p) { return _mm_loadu_si128((const __m128i *)p); }
/* bits of 32 bytes that have bit b set, as a 32-bit mask */
T512Q static inline uint32_t bit_mask32(const uint8_t *p, int b) {
  __m256i v = _mm256_loadu_si256((const __m256i *)p), m = _mm256_set1_epi8((char)(1 << b));
  return (uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(_mm256_and_si256(v, m), m));
}

T512Q static inline void d512_q4_0(const uint8_t *b, int c, __m512 *lo, __m512 *hi) {
  (void)c;
  __m512 d = _mm512_set1_ps(f16s(b));
  __m128i q = ld16(b + 2);
  __m512i e8 = _mm512_set1_epi32(8);
  *lo = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(u8_i32(lo_nib(q)), e8)), d);
  *hi = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(u8_i32(hi_nib(q)), e8)), d);
}

T512Q static inline void d512_q4_1(const uint8_t *b, int c, __m512 *lo, __m512 *hi) {
  (void)c;
  __m512 d = _mm512_set1_ps(f16s(b)), m = _mm512_set1_ps(f16s(b + 2));
  __m128i q = ld16(b + 4);
  *lo = _mm512_add_ps(_mm512_mul_ps(u8_ps(lo_nib(q)), d), m);
  *hi = _mm512_add_ps(_mm512_mul_ps(u8_ps(hi_nib(q)), d), m);
}

/* nibbles with their fifth bits (bit j of qh for element j) */
T512Q static inline void q5_ints(const uint8_t *qs, uint32_t qh, __m512i *lo, __m512i *hi) {
  __m128i q = ld16(qs);
  __m512i s16 = _mm512_set1_epi32(16);
  *lo = u8_i32(lo_nib(q));
  *hi = u8_i32(hi_nib(q));
  *lo = _mm512_mask_add_epi32(*lo, (__mmask16)(qh & 0xFFFF), *lo, s16);
  *hi = _mm512_mask_add_epi32(*hi, (__mmask16)(qh >> 16), *hi, s16);
}

T512Q static inline void d512_q5_0(const uint8_t *b, int c, __m512 *lo, __m512 *hi) {
  (void)c;
  uint32_t qh;
  memcpy(&qh, b + 2, 4);
  __m512i l, h, s16 = _mm512_set1_epi32(16);
  q5_ints(b + 6, qh, &l, &h);
  __m512 d = _mm512_set1_ps(f16s(b));
  *lo = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(l, s16)), d);
  *hi = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(h, s16)), d);
}

T512Q static inline void d512_q5_1(const uint8_t *b, int c, __m512 *lo, __m512 *hi) {
  (void)c;
  uint32_t qh;
  memcpy(&qh, b + 4, 4);
  __m512i l, h;
  q5_ints(b + 8, qh, &l, &h);
  __m512 d = _mm512_set1_ps(f16s(b)), m = _mm512_set1_ps(f16s(b + 2));
  *lo = _mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(l), d), m);
  *hi = _mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(h), d), m);
}

T512Q static inline void d512_q8_0(const uint8_t *b, int c, __m512 *lo, __m512 *hi) {
  (void)c;
  __m512 d = _mm512_set1_ps(f16s(b));
  *lo = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(ld16(b + 2))), d);
  *hi = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(ld16(b + 18))), d);
}

/* two bits at `shift` of 32 bytes, as two vectors of 16 ints */
T512Q static inline void two_bits(const uint8_t *qs, int shift, __m512i *lo, __m512i *hi) {
  __m128i sh = _mm_cvtsi32_si128(shift), m3 = _mm_set1_epi8(3);
  *lo = u8_i32(_mm_and_si128(_mm_srl_epi16(ld16(qs), sh), m3));
  *hi = u8_i32(_mm_and_si128(_mm_srl_epi16(ld16(qs + 16), sh), m3));
}

T512Q static inline void d512_q2_k(const uint8_t *b, int c, __m512 *lo, __m512 *hi) {
  int j = c % 4;
  __m512i l, h;
  two_bits(b + 16 + 32 * (c / 4), 2 * j, &l, &h);
  float d = f16s(b + 80), dmin = f16s(b + 82);
  uint8_t s0 = b[8 * (c / 4) + 2 * j], s1 = b[8 * (c / 4) + 2 * j + 1];
  *lo = _mm512_sub_ps(_mm512_mul_ps(_mm512_set1_ps(d * (float)(s0 & 0xF)), _mm512_cvtepi32_ps(l)),
                      _mm512_set1_ps(dmin * (float)(s0 >> 4)));
  *hi = _mm512_sub_ps(_mm512_mul_ps(_mm512_set1_ps(d * (float)(s1 & 0xF)), _mm512_cvtepi32_ps(h)),
                      _mm512_set1_ps(dmin * (float)(s1 >> 4)));
}

T512Q static inline void d512_q3_k(const uint8_t *b, int c, __m512 *lo, __m512 *hi) {
  int j = c % 4;
  __m512i l, h, four = _mm512_set1_epi32(4);
  two_bits(b + 32 + 32 * (c / 4), 2 * j, &l, &h);
  uint32_t hb = bit_mask32(b, c);   /* set: +0, clear: -4; i.e. (q | 4 if set) - 4 */
  l = _mm512_sub_epi32(_mm512_mask_add_epi32(l, (__mmask16)(hb & 0xFFFF), l, four), four);
  h = _mm512_sub_epi32(_mm512_mask_add_epi32(h, (__mmask16)(hb >> 16), h, four), four);
  float d = f16s(b + 108);
  *lo = _mm512_mul_ps(_mm512_set1_ps(d * (float)pf_q3k_scale(b + 96, 8 * (c / 4) + 2 * j)), _mm512_cvtepi32_ps(l));
  *hi = _mm512_mul_ps(_mm512_set1_ps(d * (float)pf_q3k_scale(b + 96, 8 * (c / 4) + 2 * j + 1)), _mm512_cvtepi32_ps(h));
}

/* 32 nibbles of qs (low or high by `shift`) as two vectors of 16 ints */
T512Q static inline void nibbles32(const uint8_t *qs, int shift, __m512i *lo, __m512i *hi) {
  __m128i sh = _mm_cvtsi32_si128(shift), m4 = _mm_set1_epi8(0x0F);
  *lo = u8_i32(_mm_and_si128(_mm_srl_epi16(ld16(qs), sh), m4));
  *hi = u8_i32(_mm_and_si128(_mm_srl_epi16(ld16(qs + 16), sh), m4));
}

T512Q static inline void d512_q4_k(const uint8_t *b, int c, __m512 *lo, __m512 *hi) {
  int sc, mn;
  pf_k4_scale_min(b + 4, c, &sc, &mn);
  __m512 d = _mm512_set1_ps(f16s(b) * (float)sc), m = _mm512_set1_ps(f16s(b + 2) * (float)mn);
  __m512i l, h;
  nibbles32(b + 16 + 32 * (c / 2), 4 * (c % 2), &l, &h);
  *lo = _mm512_sub_ps(_mm512_mul_ps(d, _mm512_cvtepi32_ps(l)), m);
  *hi = _mm512_sub_ps(_mm512_mul_ps(d, _mm512_cvtepi32_ps(h)), m);
}

T512Q static inline void d512_q5_k(const uint8_t *b, int c, __m512 *lo, __m512 *hi) {
  int sc, mn;
  pf_k4_scale_min(b + 4, c, &sc, &mn);
  __m512 d = _mm512_set1_ps(f16s(b) * (float)sc), m = _mm512_set1_ps(f16s(b + 2) * (float)mn);
  __m512i l, h, s16 = _mm512_set1_epi32(16);
  nibbles32(b + 48 + 32 * (c / 2), 4 * (c % 2), &l, &h);
  uint32_t hb = bit_mask32(b + 16, c);
  l = _mm512_mask_add_epi32(l, (__mmask16)(hb & 0xFFFF), l, s16);
  h = _mm512_mask_add_epi32(h, (__mmask16)(hb >> 16), h, s16);
  *lo = _mm512_sub_ps(_mm512_mul_ps(d, _mm512_cvtepi32_ps(l)), m);
  *hi = _mm512_sub_ps(_mm512_mul_ps(d, _mm512_cvtepi32_ps(h)), m);
}

T512Q static inline void d512_q6_k(const uint8_t *b, int c, __m512 *lo, __m512 *hi) {
  int h = c / 4, p = c % 4;
  const uint8_t *ql = b + 64 * h + 32 * (p % 2), *qh = b + 128 + 32 * h;
  __m128i ls = _mm_cvtsi32_si128(4 * (p / 2)), hs = _mm_cvtsi32_si128(2 * p), m4 = _mm_set1_epi8(0x0F),
          m3 = _mm_set1_epi8(3);
  __m128i q0 = _mm_or_si128(_mm_and_si128(_mm_srl_epi16(ld16(ql), ls), m4),
                            _mm_slli_epi16(_mm_and_si128(_mm_srl_epi16(ld16(qh), hs), m3), 4));
  __m128i q1 = _mm_or_si128(_mm_and_si128(_mm_srl_epi16(ld16(ql + 16), ls), m4),
                            _mm_slli_epi16(_mm_and_si128(_mm_srl_epi16(ld16(qh + 16), hs), m3), 4));
  __m512i s32 = _mm512_set1_epi32(32);
  const int8_t *sc = (const int8_t *)(b + 192);
  float d = f16s(b + 208);
  *lo = _mm512_mul_ps(_mm512_set1_ps(d * (float)sc[8 * h + 2 * p]), _mm512_cvtepi32_ps(_mm512_sub_epi32(u8_i32(q0), s32)));
  *hi = _mm512_mul_ps(_mm512_set1_ps(d * (float)sc[8 * h + 2 * p + 1]), _mm512_cvtepi32_ps(_mm512_sub_epi32(u8_i32(q1), s32)));
}

/* 16 bytes of nibble pairs through the IQ4_NL table: values of the low nibbles, then of the high */
T512Q static inline void iq4_vals(const uint8_t *qs, __m512 *lo, __m512 *hi) {
  __m128i tbl = _mm_loadu_si128((const __m128i *)pf_iq4nl_values), q = ld16(qs);
  *lo = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_shuffle_epi8(tbl, lo_nib(q))));
  *hi = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_shuffle_epi8(tbl, hi_nib(q))));
}

T512Q static inline void d512_iq4_nl(const uint8_t *b, int c, __m512 *lo, __m512 *hi) {
  (void)c;
  __m512 d = _mm512_set1_ps(f16s(b)), l, h;
  iq4_vals(b + 2, &l, &h);
  *lo = _mm512_mul_ps(d, l);
  *hi = _mm512_mul_ps(d, h);
}

T512Q static inline void d512_iq4_xs(const uint8_t *b, int c, __m512 *lo, __m512 *hi) {
  uint16_t sh;
  memcpy(&sh, b + 2, 2);
  int ls = ((b[4 + c / 2] >> (4 * (c % 2))) & 0xF) | (((sh >> (2 * c)) & 3) << 4);
  __m512 d = _mm512_set1_ps(f16s(b) * (float)(ls - 32)), l, h;
  iq4_vals(b + 8 + 16 * c, &l, &h);
  *lo = _mm512_mul_ps(d, l);
  *hi = _mm512_mul_ps(d, h);
}

/* F32, F16 and BF16: a "block" of 32 elements, 128 or 64 bytes */
T512Q static inline void d512_f32(const uint8_t *b, int c, __m512 *lo, __m512 *hi) {
  (void)c;
  *lo = _mm512_loadu_ps((const float *)b);
  *hi = _mm512_loadu_ps((const float *)(b + 64));
}
T512Q static inline void d512_f16(const uint8_t *b, int c, __m512 *lo, __m512 *hi) {
  (void)c;
  *lo = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)b));
  *hi = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(b + 32)));
}
T512Q static inline void d512_bf16(const uint8_t *b, int c, __m512 *lo, __m512 *hi) {
  (void)c;
  *lo = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)b)), 16));
  *hi = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(b + 32))), 16));
}

/* ------------------------------------------------ per-type instances
** For each type: deq_<t>  chunks [ch0, ch1) of a row to dst (2 stores each)
**                dec_<t>  out[t][n] = A[t] · W[n] for n in [c0, c1), T <= 8
** A decode row keeps two accumulators per row of A (four for T <= 2, so the
** FMA chains of a single row overlap) and reduces them at the row's end. */

#define DEC_MAX 8
/* decode streams W from memory: hardware prefetchers stop at 4 KB pages, so
** each row also prefetches its own bytes this far ahead (measured on an f32
** matrix of 98 MB, one core: 37.5 -> 42 GB/s) */
#define DEC_AHEAD 2048

#define DEF_TYPE(TY, DEQ, BYTES, PER)                                                                                  \
  T512Q static void deq_##TY(const uint8_t *row, int ch0, int ch1, float *dst) {                                       \
    for (int c = ch0; c < ch1; c++, dst += 32) {                                                                       \
      __m512 lo, hi;                                                                                                   \
      DEQ(row + (size_t)(c / PER) * BYTES, c % PER, &lo, &hi);                                                         \
      _mm512_storeu_ps(dst, lo);                                                                                       \
      _mm512_storeu_ps(dst + 16, hi);                                                                                  \
    }                                                                                                                  \
  }                                                                                                                    \
  T512Q static inline __attribute__((always_inline)) void row_##TY(int T, float *out, int ldc, const float *A, int lda, \
                                                                  int nch, const uint8_t *row) {                      \
    __m512 a0[DEC_MAX], b0[DEC_MAX], a1[DEC_MAX], b1[DEC_MAX];                                                         \
    _Pragma("GCC unroll 8") for (int t = 0; t < DEC_MAX; t++) a0[t] = b0[t] = a1[t] = b1[t] = _mm512_setzero_ps();    \
    int c = 0;                                                                                                         \
    size_t pf = DEC_AHEAD; /* the next byte of the row to prefetch, DEC_AHEAD ahead of the chunk in work */            \
    if (T <= 4) /* two chunks a step, four accumulators a row, so the FMA chains overlap */                           \
      for (; c + 1 < nch; c += 2) {                                                                                    \
        __m512 l0, h0, l1, h1;                                                                                         \
        for (size_t e = (size_t)(c + 2) * BYTES / PER + DEC_AHEAD; pf < e; pf += 64)                                   \
          _mm_prefetch((const char *)row + pf, _MM_HINT_T0);                                                           \
        DEQ(row + (size_t)(c / PER) * BYTES, c % PER, &l0, &h0);                                                       \
        DEQ(row + (size_t)((c + 1) / PER) * BYTES, (c + 1) % PER, &l1, &h1);                                           \
        _Pragma("GCC unroll 8") for (int t = 0; t < DEC_MAX; t++) if (t < T) {                                         \
          const float *a = A + (size_t)t * lda + 32 * (size_t)c;                                                       \
          a0[t] = _mm512_fmadd_ps(_mm512_loadu_ps(a), l0, a0[t]);                                                      \
          b0[t] = _mm512_fmadd_ps(_mm512_loadu_ps(a + 16), h0, b0[t]);                                                 \
          a1[t] = _mm512_fmadd_ps(_mm512_loadu_ps(a + 32), l1, a1[t]);                                                 \
          b1[t] = _mm512_fmadd_ps(_mm512_loadu_ps(a + 48), h1, b1[t]);                                                 \
        }                                                                                                              \
      }                                                                                                                \
    for (; c < nch; c++) {                                                                                             \
      __m512 lo, hi;                                                                                                   \
      for (size_t e = (size_t)(c + 1) * BYTES / PER + DEC_AHEAD; pf < e; pf += 64)                                     \
        _mm_prefetch((const char *)row + pf, _MM_HINT_T0);                                                             \
      DEQ(row + (size_t)(c / PER) * BYTES, c % PER, &lo, &hi);                                                         \
      _Pragma("GCC unroll 8") for (int t = 0; t < DEC_MAX; t++) if (t < T) {                                           \
        const float *a = A + (size_t)t * lda + 32 * (size_t)c;                                                         \
        a0[t] = _mm512_fmadd_ps(_mm512_loadu_ps(a), lo, a0[t]);                                                        \
        b0[t] = _mm512_fmadd_ps(_mm512_loadu_ps(a + 16), hi, b0[t]);                                                   \
      }                                                                                                                \
    }                                                                                                                  \
    _Pragma("GCC unroll 8") for (int t = 0; t < DEC_MAX; t++) if (t < T) out[(size_t)t * ldc] =                        \
        _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0[t], b0[t]), _mm512_add_ps(a1[t], b1[t])));                \
  }                                                                                                                    \
  T512Q static void dec_##TY(float *out, int ldc, const float *A, int lda, int T, const uint8_t *W, size_t rb,         \
                             int nch, int c0, int c1) {                                                                \
    for (int n = c0; n < c1; n++) {                                                                                    \
      const uint8_t *row = W + (size_t)n * rb;                                                                         \
      switch (T) {                                                                                                     \
        case 1: row_##TY(1, out + n, ldc, A, lda, nch, row); break;                                                    \
        case 2: row_##TY(2, out + n, ldc, A, lda, nch, row); break;                                                    \
        case 3: row_##TY(3, out + n, ldc, A, lda, nch, row); break;                                                    \
        case 4: row_##TY(4, out + n, ldc, A, lda, nch, row); break;                                                    \
        case 5: row_##TY(5, out + n, ldc, A, lda, nch, row); break;                                                    \
        case 6: row_##TY(6, out + n, ldc, A, lda, nch, row); break;                                                    \
        case 7: row_##TY(7, out + n, ldc, A, lda, nch, row); break;                                                    \
        case 8: row_##TY(8, out + n, ldc, A, lda, nch, row); break;                                                    \
        default: break;                                                                                                \
      }                                                                                                                \
    }                                                                                                                  \
  }

DEF_TYPE(q4_0, d512_q4_0, 18, 1)
DEF_TYPE(q4_1, d512_q4_1, 20, 1)
DEF_TYPE(q5_0, d512_q5_0, 22, 1)
DEF_TYPE(q5_1, d512_q5_1, 24, 1)
DEF_TYPE(q8_0, d512_q8_0, 34, 1)
DEF_TYPE(q2_k, d512_q2_k, 84, 8)
DEF_TYPE(q3_k, d512_q3_k, 110, 8)
DEF_TYPE(q4_k, d512_q4_k, 144, 8)
DEF_TYPE(q5_k, d512_q5_k, 176, 8)
DEF_TYPE(q6_k, d512_q6_k, 210, 8)
DEF_TYPE(iq4_nl, d512_iq4_nl, 18, 1)
DEF_TYPE(iq4_xs, d512_iq4_xs, 136, 8)
DEF_TYPE(f32, d512_f32, 128, 1)
DEF_TYPE(f16, d512_f16, 64, 1)
DEF_TYPE(bf16, d512_bf16, 64, 1)

/* ------------------------------------------- the same for AVX2 CPUs
** d256_<type>(blk, c, v): elements 32c..32c+31 of the block to v[0..4), 8
** each, for the common types (the others unpack through quant.c's loops).
** Row kernels take up to 3 rows of A at once (16 registers). */

#define T256Q __attribute__((target("avx2,fma,f16c")))

/* 32 unsigned bytes to 4 × 8 floats */
T256Q static inline void u8x32_ps(__m256i q, __m256 v[4]) {
  __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
  v[0] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(lo));
  v[1] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8)));
  v[2] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(hi));
  v[3] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8)));
}
T256Q static inline float f16s2(const uint8_t *p) {
  uint16_t h;
  memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}
T256Q static inline __m256i ld32(const uint8_t *p) { return _mm256_loadu_si256((const __m256i *)p); }

T256Q static inline void d256_f32(const uint8_t *b, int c, __m256 v[4]) {
  (void)c;
  for (int i = 0; i < 4; i++) v[i] = _mm256_loadu_ps((const float *)b + 8 * i);
}
T256Q static inline void d256_f16(const uint8_t *b, int c, __m256 v[4]) {
  (void)c;
  for (int i = 0; i < 4; i++) v[i] = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(b + 16 * i)));
}
T256Q static inline void d256_bf16(const uint8_t *b, int c, __m256 v[4]) {
  (void)c;
  for (int i = 0; i < 4; i++)
    v[i] = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(b + 16 * i))), 16));
}
T256Q static inline void d256_q8_0(const uint8_t *b, int c, __m256 v[4]) {
  (void)c;
  __m256 d = _mm256_set1_ps(f16s2(b));
  for (int i = 0; i < 4; i++)
    v[i] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(b + 2 + 8 * i)))), d);
}
T256Q static inline void d256_q4_0(const uint8_t *b, int c, __m256 v[4]) {
  (void)c;
  __m128i q = _mm_loadu_si128((const __m128i *)(b + 2)), m4 = _mm_set1_epi8(0x0F);
  __m256i qq = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), m4), _mm_and_si128(q, m4));
  __m256 d = _mm256_set1_ps(f16s2(b)), e8 = _mm256_set1_ps(8.0f);
  u8x32_ps(qq, v);
  for (int i = 0; i < 4; i++) v[i] = _mm256_mul_ps(_mm256_sub_ps(v[i], e8), d);   /* (q - 8) exact in f32 */
}
T256Q static inline void d256_q4_k(const uint8_t *b, int c, __m256 v[4]) {
  int sc, mn;
  pf_k4_scale_min(b + 4, c, &sc, &mn);
  __m256 d = _mm256_set1_ps(f16s2(b) * (float)sc), m = _mm256_set1_ps(f16s2(b + 2) * (float)mn);
  __m256i q = _mm256_and_si256(_mm256_srl_epi16(ld32(b + 16 + 32 * (c / 2)), _mm_cvtsi32_si128(4 * (c % 2))),
                               _mm256_set1_epi8(0x0F));
  u8x32_ps(q, v);
  for (int i = 0; i < 4; i++) v[i] = _mm256_sub_ps(_mm256_mul_ps(d, v[i]), m);
}
T256Q static inline void d256_q5_k(const uint8_t *b, int c, __m256 v[4]) {
  int sc, mn;
  pf_k4_scale_min(b + 4, c, &sc, &mn);
  __m256 d = _mm256_set1_ps(f16s2(b) * (float)sc), m = _mm256_set1_ps(f16s2(b + 2) * (float)mn);
  __m256i q = _mm256_and_si256(_mm256_srl_epi16(ld32(b + 48 + 32 * (c / 2)), _mm_cvtsi32_si128(4 * (c % 2))),
                               _mm256_set1_epi8(0x0F));
  __m256i bit = _mm256_set1_epi8((char)(1 << c)), qh = ld32(b + 16);
  q = _mm256_or_si256(q, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(qh, bit), bit), _mm256_set1_epi8(16)));
  u8x32_ps(q, v);
  for (int i = 0; i < 4; i++) v[i] = _mm256_sub_ps(_mm256_mul_ps(d, v[i]), m);
}
T256Q static inline void d256_q6_k(const uint8_t *b, int c, __m256 v[4]) {
  int h = c / 4, p = c % 4;
  __m256i lo = _mm256_and_si256(_mm256_srl_epi16(ld32(b + 64 * h + 32 * (p % 2)), _mm_cvtsi32_si128(4 * (p / 2))),
                                _mm256_set1_epi8(0x0F));
  __m256i hi = _mm256_and_si256(_mm256_srl_epi16(ld32(b + 128 + 32 * h), _mm_cvtsi32_si128(2 * p)), _mm256_set1_epi8(3));
  u8x32_ps(_mm256_or_si256(lo, _mm256_slli_epi16(hi, 4)), v);
  const int8_t *sc = (const int8_t *)(b + 192);
  float d = f16s2(b + 208);
  __m256 d0 = _mm256_set1_ps(d * (float)sc[8 * h + 2 * p]), d1 = _mm256_set1_ps(d * (float)sc[8 * h + 2 * p + 1]);
  __m256 e32 = _mm256_set1_ps(32.0f);
  v[0] = _mm256_mul_ps(d0, _mm256_sub_ps(v[0], e32));   /* (q - 32) exact in f32 */
  v[1] = _mm256_mul_ps(d0, _mm256_sub_ps(v[1], e32));
  v[2] = _mm256_mul_ps(d1, _mm256_sub_ps(v[2], e32));
  v[3] = _mm256_mul_ps(d1, _mm256_sub_ps(v[3], e32));
}

#define DEC2_MAX 3
#define DEF_TYPE256(TY, DEQ, BYTES, PER)                                                                               \
  T256Q static void deq2_##TY(const uint8_t *row, int ch0, int ch1, float *dst) {                                      \
    for (int c = ch0; c < ch1; c++, dst += 32) {                                                                       \
      __m256 v[4];                                                                                                     \
      DEQ(row + (size_t)(c / PER) * BYTES, c % PER, v);                                                                \
      for (int i = 0; i < 4; i++) _mm256_storeu_ps(dst + 8 * i, v[i]);                                                 \
    }                                                                                                                  \
  }                                                                                                                    \
  T256Q static inline __attribute__((always_inline)) void row2_##TY(int T, float *out, int ldc, const float *A,       \
                                                                   int lda, int nch, const uint8_t *row) {           \
    __m256 acc[DEC2_MAX][4];                                                                                           \
    _Pragma("GCC unroll 3") for (int t = 0; t < DEC2_MAX; t++)                                                         \
      for (int i = 0; i < 4; i++) acc[t][i] = _mm256_setzero_ps();                                                     \
    size_t pf = DEC_AHEAD;                                                                                             \
    for (int c = 0; c < nch; c++) {                                                                                    \
      __m256 v[4];                                                                                                     \
      for (size_t e = (size_t)(c + 1) * BYTES / PER + DEC_AHEAD; pf < e; pf += 64)                                     \
        _mm_prefetch((const char *)row + pf, _MM_HINT_T0);                                                             \
      DEQ(row + (size_t)(c / PER) * BYTES, c % PER, v);                                                                \
      _Pragma("GCC unroll 3") for (int t = 0; t < DEC2_MAX; t++) if (t < T) {                                          \
        const float *a = A + (size_t)t * lda + 32 * (size_t)c;                                                         \
        _Pragma("GCC unroll 4") for (int i = 0; i < 4; i++)                                                            \
          acc[t][i] = _mm256_fmadd_ps(_mm256_loadu_ps(a + 8 * i), v[i], acc[t][i]);                                    \
      }                                                                                                                \
    }                                                                                                                  \
    _Pragma("GCC unroll 3") for (int t = 0; t < DEC2_MAX; t++) if (t < T) {                                            \
      __m256 s = _mm256_add_ps(_mm256_add_ps(acc[t][0], acc[t][1]), _mm256_add_ps(acc[t][2], acc[t][3]));             \
      __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));                                   \
      h = _mm_add_ps(h, _mm_movehl_ps(h, h));                                                                          \
      h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));                                                                      \
      out[(size_t)t * ldc] = _mm_cvtss_f32(h);                                                                         \
    }                                                                                                                  \
  }                                                                                                                    \
  T256Q static void dec2_##TY(float *out, int ldc, const float *A, int lda, int T, const uint8_t *W, size_t rb,       \
                              int nch, int c0, int c1) {                                                               \
    for (int n = c0; n < c1; n++) {                                                                                    \
      const uint8_t *row = W + (size_t)n * rb;                                                                         \
      if (T == 1) row2_##TY(1, out + n, ldc, A, lda, nch, row);                                                        \
      else if (T == 2) row2_##TY(2, out + n, ldc, A, lda, nch, row);                                                   \
      else row2_##TY(3, out + n, ldc, A, lda, nch, row);                                                               \
    }                                                                                                                  \
  }

DEF_TYPE256(f32, d256_f32, 128, 1)
DEF_TYPE256(f16, d256_f16, 64, 1)
DEF_TYPE256(bf16, d256_bf16, 64, 1)
DEF_TYPE256(q8_0, d256_q8_0, 34, 1)
DEF_TYPE256(q4_0, d256_q4_0, 18, 1)
DEF_TYPE256(q4_k, d256_q4_k, 144, 8)
DEF_TYPE256(q5_k, d256_q5_k, 176, 8)
DEF_TYPE256(q6_k, d256_q6_k, 210, 8)

typedef void (*deq_fn)(const uint8_t *row, int ch0, int ch1, float *dst);
typedef void (*dec_fn)(float *out, int ldc, const float *A, int lda, int T, const uint8_t *W, size_t rb, int nch,
                       int c0, int c1);
static const struct { deq_fn deq; dec_fn dec; } g_q512[GGML_TYPE_COUNT] = {
  [GGML_Q4_0] = {deq_q4_0, dec_q4_0}, [GGML_Q4_1] = {deq_q4_1, dec_q4_1}, [GGML_Q5_0] = {deq_q5_0, dec_q5_0},
  [GGML_Q5_1] = {deq_q5_1, dec_q5_1}, [GGML_Q8_0] = {deq_q8_0, dec_q8_0}, [GGML_Q2_K] = {deq_q2_k, dec_q2_k},
  [GGML_Q3_K] = {deq_q3_k, dec_q3_k}, [GGML_Q4_K] = {deq_q4_k, dec_q4_k}, [GGML_Q5_K] = {deq_q5_k, dec_q5_k},
  [GGML_Q6_K] = {deq_q6_k, dec_q6_k}, [GGML_IQ4_NL] = {deq_iq4_nl, dec_iq4_nl},
  [GGML_IQ4_XS] = {deq_iq4_xs, dec_iq4_xs}, [GGML_F16] = {deq_f16, dec_f16}, [GGML_BF16] = {deq_bf16, dec_bf16},
  [GGML_F32] = {deq_f32, dec_f32},
};
static const struct { deq_fn deq; dec_fn dec; } g_q256[GGML_TYPE_COUNT] = {
  [GGML_F32] = {deq2_f32, dec2_f32}, [GGML_F16] = {deq2_f16, dec2_f16}, [GGML_BF16] = {deq2_bf16, dec2_bf16},
  [GGML_Q8_0] = {deq2_q8_0, dec2_q8_0}, [GGML_Q4_0] = {deq2_q4_0, dec2_q4_0}, [GGML_Q4_K] = {deq2_q4_k, dec2_q4_k},
  [GGML_Q5_K] = {deq2_q5_k, dec2_q5_k}, [GGML_Q6_K] = {deq2_q6_k, dec2_q6_k},
};

/* the unpacking and decode kernels for the kernel kind in use, if this type has them */
static deq_fn deq_for(int kind, uint32_t type) {
  if (pf_get_naive()) return NULL;
  return kind == PF_KERNEL_AVX512 ? g_q512[type].deq : kind == PF_KERNEL_AVX2 ? g_q256[type].deq : NULL;
}

/* ------------------------------------------------------------ row ranges */

void pf_wt_deq(const pf_wt *W, int r, int k0, int k1, float *dst) {
  const uint8_t *row = W->data + (size_t)r * W->row_bytes;
  if (k1 <= k0) return;
  deq_fn deq = deq_for(pf_get_kernel(), W->type);
  int a0 = (k0 + 31) / 32, a1 = k1 / 32;   /* whole chunks inside the range */
  if (!deq || a0 >= a1) { pf_dequant_any(W->type, row, k0, k1, dst); return; }
  if (32 * a0 > k0) pf_dequant_any(W->type, row, k0, 32 * a0, dst);
  deq(row, a0, a1, dst + 32 * a0 - k0);
  if (k1 > 32 * a1) pf_dequant_any(W->type, row, 32 * a1, k1, dst + 32 * a1 - k0);
}

void pf_wt_deq_cols(const pf_wt *W, int r, int n0, int nw, int nr, float *dst, float *tmp) {
  (void)tmp;
  pf_wt_deq(W, r, n0, n0 + nw, dst);
  if (nw < nr) memset(dst + nw, 0, sizeof(float) * (size_t)(nr - nw));
}

/* ---------------------------------------------------------------- decode */

/* any kernel kind: each 32-element chunk unpacked once per row of W, then dotted with every row of A */
static void dec_generic(float *out, const float *A, const pf_wt *W, int T, int c0, int c1) {
  int K = W->cols, N = W->rows;
  float buf[32];
  for (int n = c0; n < c1; n++) {
    const uint8_t *row = W->data + (size_t)n * W->row_bytes;
    for (int t = 0; t < T; t++) out[(size_t)t * N + n] = 0;
    for (int k = 0; k < K; k += 32) {
      int kk = K - k < 32 ? K - k : 32;
      pf_dequant_any(W->type, row, k, k + kk, buf);
      for (int t = 0; t < T; t++) out[(size_t)t * N + n] += pf_vdot(buf, A + (size_t)t * K + k, kk);
    }
  }
}

void pf_kernel_nt_dec(int kind, float *out, const float *A, const pf_wt *W, int T, int c0, int c1, int exact) {
  int K = W->cols, N = W->rows;
  if (!exact && pf_kernel_nt_int8(kind, out, A, W, T, c0, c1)) return;
  dec_fn dec = kind == PF_KERNEL_AVX512 ? g_q512[W->type].dec : kind == PF_KERNEL_AVX2 ? g_q256[W->type].dec : NULL;
  int rows = kind == PF_KERNEL_AVX512 ? DEC_MAX : DEC2_MAX;
  if (!dec) { dec_generic(out, A, W, T, c0, c1); return; }
  int nch = K / 32, tail = K - 32 * nch;   /* F16/BF16 rows may end in a part chunk */
  for (int t0 = 0; t0 < T; t0 += rows) {
    int tt = T - t0 < rows ? T - t0 : rows;
    dec(out + (size_t)t0 * N, N, A + (size_t)t0 * K, K, tt, W->data, W->row_bytes, nch, c0, c1);
  }
  if (tail) {
    float buf[32];
    for (int n = c0; n < c1; n++) {
      pf_dequant_any(W->type, W->data + (size_t)n * W->row_bytes, 32 * nch, K, buf);
      for (int t = 0; t < T; t++) out[(size_t)t * N + n] += pf_vdot(buf, A + (size_t)t * K + 32 * nch, tail);
    }
  }
}

/* ---------------------------------------------------- panels, OpenBLAS */

#define PANEL_ROWS 64

void pf_kernel_nt_panels(float *out, const float *A, const pf_wt *W, int T, int c0, int c1) {
  int K = W->cols, N = W->rows;
  size_t cap;
  float *tmp = pf_scratch_get((size_t)PANEL_ROWS * K, &cap);
  if (!tmp) { dec_generic(out, A, W, T, c0, c1); return; }
  for (int n = c0; n < c1; n += PANEL_ROWS) {
    int r = c1 - n < PANEL_ROWS ? c1 - n : PANEL_ROWS;
    for (int i = 0; i < r; i++) pf_wt_deq(W, n + i, 0, K, tmp + (size_t)i * K);
    if (pf_get_naive() || pf_get_kernel() == PF_KERNEL_NAIVE)
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
  size_t cap;
  float *tmp = pf_scratch_get((size_t)PANEL_ROWS * w, &cap);
  if (!tmp) {   /* no memory for a panel: one chunk at a time */
    float buf[32];
    for (int n = 0; n < N; n++)
      for (int k = c0; k < c1; k += 32) {
        int kk = c1 - k < 32 ? c1 - k : 32;
        pf_wt_deq(W, n, k, k + kk, buf);
        for (int t = 0; t < T; t++) pf_vaxpy(dA + (size_t)t * K + k, dY[(size_t)t * N + n], buf, kk);
      }
    return;
  }
  for (int n0 = 0; n0 < N; n0 += PANEL_ROWS) {
    int r = N - n0 < PANEL_ROWS ? N - n0 : PANEL_ROWS;
    for (int i = 0; i < r; i++) pf_wt_deq(W, n0 + i, c0, c1, tmp + (size_t)i * w);
    if (pf_get_naive() || pf_get_kernel() == PF_KERNEL_NAIVE)
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

