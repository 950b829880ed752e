/*
** simd.h — AVX-512 helpers shared by the kernel files (kernels.c,
** kernels_int8.c). Included only by files that compile per-function ISA
** targets; nothing here runs unless the caller checked the CPU.
*/
#ifndef PF_SIMD_H
#define PF_SIMD_H
#include <immintrin.h>

#define PF_T512 __attribute__((target("avx512f,fma")))

/* r[i][j] -> r[j][i] for a 16 × 16 block: 32-bit and 64-bit interleaves, then
** two rounds of 128-bit lane shuffles. */
PF_T512 static inline __attribute__((always_inline)) void pf_transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int g = 0; g < 4; g++) {   /* r[4g + c], 128-bit lane L: rows 4g..4g+3 at column 4L + c */
    __m512d a = _mm512_castps_pd(t[4 * g]), b = _mm512_castps_pd(t[4 * g + 2]);
    __m512d c = _mm512_castps_pd(t[4 * g + 1]), d = _mm512_castps_pd(t[4 * g + 3]);
    r[4 * g] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
    r[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
    r[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(c, d));
    r[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(c, d));
  }
  for (int c = 0; c < 4; c++) {   /* collect lane L of r[c], r[4+c], r[8+c], r[12+c]: column 4L + c */
    __m512 v = _mm512_shuffle_f32x4(r[c], r[4 + c], 0x88), x = _mm512_shuffle_f32x4(r[c], r[4 + c], 0xdd);
    __m512 v2 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0x88), x2 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0xdd);
    t[c] = _mm512_shuffle_f32x4(v, v2, 0x88);
    t[8 + c] = _mm512_shuffle_f32x4(v, v2, 0xdd);
    t[4 + c] = _mm512_shuffle_f32x4(x, x2, 0x88);
    t[12 + c] = _mm512_shuffle_f32x4(x, x2, 0xdd);
  }
  for (int i = 0; i < 16; i++) r[i] = t[i];
}

#endif
