/*
** kernels_avx2.c — the AVX2 kernel table (kernels.h): CPUs with AVX2, FMA and F16C (Intel since Haswell,
** AMD since Zen 1; most laptops and desktops, and cloud machines before AVX-512).
**
** f32 products X·Wᵀ by the number of rows T:
**   T >= 24    packed GEMM (kernels_common.c) on a 6 × 16 register tile: per k, two loads of the W panel,
**              6 broadcasts of A, 12 FMAs
**   6..23      decode batches: A transposed, W read in place, one FMA per weight serving 8 sequences
**   <= 2       decode rows: each row of W streamed once, prefetched ahead
**   else       4 × 2 tiles of dot products (NT), 4 × 16 outer products (NN)
** Weights of other types are read as stored: decode rows unpack each 32-element chunk into registers, or
** multiply in integers (activations rounded to int8 per 32, vpmaddubsw then vpmaddwd, as llama.cpp does on
** AVX2); longer products unpack panels as the GEMM needs them, or run an int8 GEMM. Also: e^x for
** softmax, SwiGLU and GELU, the dot product and axpy of attention.
**
** kernels_avxvnni.c compiles this file a second time with PF_AVXVNNI: the same kernels for CPUs that also
** have AVX-VNNI (Intel since the 12th generation and Sapphire Rapids, AMD since Zen 5), where the integer
** products take one vpdpbusd (ymm) instead of vpmaddubsw + vpmaddwd + vpaddd. No product reaches
** vpmaddubsw's saturation (below), so both tables give the same bits.
*/
#include "kernels.h"

#if PF_X86
#include <cpuid.h>
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#ifdef PF_AVXVNNI
#define T256 __attribute__((target("avx2,fma,avxvnni")))
#define T256Q __attribute__((target("avx2,fma,f16c,avxvnni")))
/* s + the sums of 4 products of unsigned bytes u and signed bytes a, per 32-bit lane */
#define DOT4(s, u, a) _mm256_dpbusd_avx_epi32((s), (u), (a))
#else
#define T256 __attribute__((target("avx2,fma")))
#define T256Q __attribute__((target("avx2,fma,f16c")))
#define DOT4(s, u, a) _mm256_add_epi32((s), _mm256_madd_epi16(_mm256_maddubs_epi16((u), (a)), _mm256_set1_epi16(1)))
#endif

#define SM2_MIN 6        /* 6..23 rows: the decode-batch kernel */
#define G2_MIN_ROWS 24   /* the packed GEMM from this many rows (16-sequence decode is faster on the tiles) */
#define DEC_AHEAD PF_DEC_AHEAD

static const pf_deq_fn g_deq256[GGML_TYPE_COUNT];

/* ------------------------------------------------------------- f32 tiles */

T256 static inline float hsum256(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}

/* 8 × 8 transpose in registers */
T256 static inline void transpose8(__m256 r[8]) {
  __m256 t[8], u[8];
  for (int i = 0; i < 8; i += 2) t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]), t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  for (int i = 0; i < 8; i += 4) {
    u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
    u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
    u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  for (int i = 0; i < 4; i++) {
    r[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
    r[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
  }
}

/* lanes below n (n < 8) for maskload/maskstore */
T256 static inline __m256i lanes256(int n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* ------------------------------------------- AVX2 pieces of the packed GEMM
** 6 × 16 register tile (12 accumulators, 2 loads of W and 6 broadcasts of A per k); the panels are packed
** 8 × 8 blocks at a time, transposed in registers (F16 and BF16 rows widened as they are loaded). */
#ifndef G2_MR
#define G2_MR 6
#define G2_NV 2
#endif
#define G2_NR (8 * G2_NV)

/* A tile: ap[k][i] = A[i][k0 + k] for its mr <= G2_MR rows (stride G2_MR). 8 × 8 blocks transposed in
** registers; their rows of 8 stored in order at stride G2_MR (each store's last lanes are overwritten by the
** next), the block's last row through a small copy so nothing is written past the tile. No masked stores
** (slow on AMD). */
T256 static void g2_pack_a(float *ap, const float *A, int lda, int mr, int k0, int kc) {
  for (int k = 0; k < kc; k += 8) {
    int kk = kc - k < 8 ? kc - k : 8;
    __m256 r[8];
    for (int i = 0; i < 8; i++) {
      const float *a = A + (size_t)i * lda + k0 + k;
      r[i] = i >= mr ? _mm256_setzero_ps() : kk == 8 ? _mm256_loadu_ps(a) : _mm256_maskload_ps(a, lanes256(kk));
    }
    transpose8(r);
    float *o = ap + (size_t)k * G2_MR;
    for (int j = 0; j + 1 < kk; j++) _mm256_storeu_ps(o + (size_t)j * G2_MR, r[j]);
    float last[8];
    _mm256_storeu_ps(last, r[kk - 1]);
    memcpy(o + (size_t)(kk - 1) * G2_MR, last, sizeof(float) * G2_MR);
  }
}

/* rows [n0, n0 + 16) of W, columns [k0, k0 + kc), as bp[k][j] (zero past nw rows); the rows come as f32
** (W, stride ldw) or as half floats (H: F16, or BF16 when bf16) */
T256Q static inline __attribute__((always_inline)) void g2_pack_rows(float *bp, const float *W, const uint16_t *H,
                                                                      int bf16, int ldw, int n0, int nw, int k0,
                                                                      int kc, int pf_rows) {
  size_t esz = W ? sizeof(float) : sizeof(uint16_t);
  const char *base = W ? (const char *)W : (const char *)H;
  for (int h = 0; h < G2_NV; h++) {
    int rows = nw - 8 * h;
    rows = rows < 0 ? 0 : rows > 8 ? 8 : rows;
    for (int k = 0; k < kc; k += 8) {
      int kk = kc - k < 8 ? kc - k : 8;
      /* the same columns of the next panel's rows (pf_rows of them), so reading W from memory overlaps the
      ** work: many short row streams are more than the hardware prefetcher follows */
      if ((k * esz) % 64 == 0)
        for (int i = 0; i < 8 && 8 * h + i < pf_rows; i++)
          _mm_prefetch(base + ((size_t)(n0 + G2_NR + 8 * h + i) * ldw + k0 + k) * esz, _MM_HINT_T0);
      __m256 r[8];
      for (int i = 0; i < 8; i++) {
        size_t at = (size_t)(n0 + 8 * h + i) * ldw + k0 + k;
        if (i >= rows) r[i] = _mm256_setzero_ps();
        else if (W) r[i] = kk == 8 ? _mm256_loadu_ps(W + at) : _mm256_maskload_ps(W + at, lanes256(kk));
        else {
          __m128i x;
          if (kk == 8) x = _mm_loadu_si128((const __m128i *)(H + at));
          else {
            uint16_t t[8] = {0};
            memcpy(t, H + at, sizeof(uint16_t) * (size_t)kk);
            x = _mm_loadu_si128((const __m128i *)t);
          }
          r[i] = bf16 ? _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(x), 16)) : _mm256_cvtph_ps(x);
        }
      }
      transpose8(r);
      for (int j = 0; j < kk; j++) _mm256_storeu_ps(bp + (size_t)(k + j) * G2_NR + 8 * h, r[j]);
    }
  }
}
T256Q static void g2_pack_nt(float *bp, const float *W, int ldw, int n0, int nw, int k0, int kc, int pf_rows) {
  g2_pack_rows(bp, W, NULL, 0, ldw, n0, nw, k0, kc, pf_rows);
}
T256Q static void g2_pack_nt_half(float *bp, const uint16_t *W, int ldw, int bf16, int n0, int nw, int k0, int kc,
                                  int pf_rows) {
  g2_pack_rows(bp, NULL, W, bf16, ldw, n0, nw, k0, kc, pf_rows);
}
/* B panel for NN: bp[k][j] = W[k0 + k][n0 + j], zero past nw columns (rows of W are already along j) */
T256 static void g2_pack_nn(float *bp, const float *W, int ldw, int n0, int nw, int k0, int kc) {
  for (int k = 0; k < kc; k++) {
    const float *w = W + (size_t)(k0 + k) * ldw + n0;
    for (int v = 0; v < G2_NV; v++) {
      int c = nw - 8 * v;
      __m256 x = c >= 8 ? _mm256_loadu_ps(w + 8 * v) : c > 0 ? _mm256_maskload_ps(w + 8 * v, lanes256(c)) : _mm256_setzero_ps();
      _mm256_store_ps(bp + (size_t)k * G2_NR + 8 * v, x);
    }
  }
}

T256 static inline __attribute__((always_inline)) void g2_tile(int mr, float *c, int ldc, const float *ap,
                                                                const float *bp, int kc, int acc, int nw) {
  __m256 cv[G2_MR][G2_NV];
#pragma GCC unroll 6
  for (int i = 0; i < G2_MR; i++)
#pragma GCC unroll 3
    for (int v = 0; v < G2_NV; v++) cv[i][v] = _mm256_setzero_ps();
  for (int k = 0; k < kc; k++) {
    __m256 b[G2_NV];
#pragma GCC unroll 3
    for (int v = 0; v < G2_NV; v++) b[v] = _mm256_load_ps(bp + k * G2_NR + 8 * v);
#pragma GCC unroll 6
    for (int i = 0; i < G2_MR; i++)
      if (i < mr) {
        __m256 a = _mm256_broadcast_ss(ap + k * G2_MR + i);
#pragma GCC unroll 3
        for (int v = 0; v < G2_NV; v++) cv[i][v] = _mm256_fmadd_ps(a, b[v], cv[i][v]);
      }
  }
#pragma GCC unroll 6
  for (int i = 0; i < G2_MR; i++)   /* unrolled, so the accumulators stay in registers */
    if (i < mr) {
      float *ci = c + (size_t)i * ldc;
      if (nw == G2_NR) {
#pragma GCC unroll 3
        for (int v = 0; v < G2_NV; v++) {
          if (acc) cv[i][v] = _mm256_add_ps(cv[i][v], _mm256_loadu_ps(ci + 8 * v));
          _mm256_storeu_ps(ci + 8 * v, cv[i][v]);
        }
      } else {
        float tmp[G2_NR];
#pragma GCC unroll 3
        for (int v = 0; v < G2_NV; v++) _mm256_storeu_ps(tmp + 8 * v, cv[i][v]);
        for (int j = 0; j < nw; j++) ci[j] = acc ? ci[j] + tmp[j] : tmp[j];
      }
    }
}
T256 static void g2_tile_n(int mr, float *c, int ldc, const float *ap, const float *bp, int kc, int acc, int nw) {
  switch (mr) {
#define G2_CASE(n) case n: g2_tile(n, c, ldc, ap, bp, kc, acc, nw); break;
    G2_CASE(1) G2_CASE(2) G2_CASE(3) G2_CASE(4)
#if G2_MR > 4
    G2_CASE(5) G2_CASE(6)
#endif
#undef G2_CASE
    default: break;
  }
}

T256 static void nt_tile256(float *c, int ldc, const float *a, int lda, const float *w, int ldw, int K, int mr, int nr) {
  __m256 acc[4][2];
  for (int i = 0; i < 4; i++) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
  int k = 0;
  if (mr == 4 && nr == 2) {
    for (; k + 8 <= K; k += 8) {
      __m256 w0 = _mm256_loadu_ps(w + k), w1 = _mm256_loadu_ps(w + ldw + k);
      __m256 a0 = _mm256_loadu_ps(a + k), a1 = _mm256_loadu_ps(a + lda + k);
      acc[0][0] = _mm256_fmadd_ps(a0, w0, acc[0][0]); acc[0][1] = _mm256_fmadd_ps(a0, w1, acc[0][1]);
      acc[1][0] = _mm256_fmadd_ps(a1, w0, acc[1][0]); acc[1][1] = _mm256_fmadd_ps(a1, w1, acc[1][1]);
      __m256 a2 = _mm256_loadu_ps(a + 2 * lda + k), a3 = _mm256_loadu_ps(a + 3 * lda + k);
      acc[2][0] = _mm256_fmadd_ps(a2, w0, acc[2][0]); acc[2][1] = _mm256_fmadd_ps(a2, w1, acc[2][1]);
      acc[3][0] = _mm256_fmadd_ps(a3, w0, acc[3][0]); acc[3][1] = _mm256_fmadd_ps(a3, w1, acc[3][1]);
    }
  } else {
    for (; k + 8 <= K; k += 8)
      for (int i = 0; i < mr; i++) {
        __m256 ai = _mm256_loadu_ps(a + i * lda + k);
        for (int j = 0; j < nr; j++) acc[i][j] = _mm256_fmadd_ps(ai, _mm256_loadu_ps(w + j * ldw + k), acc[i][j]);
      }
  }
  for (int i = 0; i < mr; i++)
    for (int j = 0; j < nr; j++) {
      float s = hsum256(acc[i][j]);
      for (int kk = k; kk < K; kk++) s += a[i * lda + kk] * w[j * ldw + kk];
      c[i * ldc + j] = s;
    }
}


/* AVX2 decode batches (SM2_MIN..G2_MIN_ROWS rows, 8 sequences per group), as nt_small512: A transposed
** once (at[g][k][8]), W read in place (or its 8 rows unpacked into wtmp), each weight broadcast into
** one FMA for 8 sequences, the 8 × 8 results transposed back. */
T256 static void nt_small256(float *out, int ldc, const float *A, int lda, int M, int K, const float *W, int ldw, int c0,
                             int c1, float *at, const pf_wt *qw, float *wtmp) {
  int ng = (M + 7) / 8;
  for (int g = 0; g < ng; g++)
    for (int k = 0; k < K; k++)
      for (int l = 0; l < 8; l++) at[((size_t)g * K + k) * 8 + l] = 8 * g + l < M ? A[(size_t)(8 * g + l) * lda + k] : 0.0f;
  for (int n = c0; n < c1; n += 8) {
    int nr = c1 - n < 8 ? c1 - n : 8;
    const float *w = W ? W + (size_t)n * ldw : wtmp;
    if (qw) {
      for (int r = 0; r < nr; r++) pf_wt_deq_with(g_deq256, qw, n + r, 0, K, wtmp + (size_t)r * K);
      ldw = K;
    }
    for (int g = 0; g < ng; g++) {
      const float *ag = at + (size_t)g * K * 8;
      __m256 acc[8];
      for (int i = 0; i < 8; i++) acc[i] = _mm256_setzero_ps();
      int k = 0;
      if (nr == 8)
        for (; k + 4 <= K; k += 4) {
          __m256 a0 = _mm256_load_ps(ag + (size_t)k * 8), a1 = _mm256_load_ps(ag + (size_t)(k + 1) * 8);
          __m256 a2 = _mm256_load_ps(ag + (size_t)(k + 2) * 8), a3 = _mm256_load_ps(ag + (size_t)(k + 3) * 8);
          const float *p = w + k;
#pragma GCC unroll 8
          for (int i = 0; i < 8; i++, p += ldw) {
            __m256 s = acc[i];
            s = _mm256_fmadd_ps(a0, _mm256_broadcast_ss(p), s);
            s = _mm256_fmadd_ps(a1, _mm256_broadcast_ss(p + 1), s);
            s = _mm256_fmadd_ps(a2, _mm256_broadcast_ss(p + 2), s);
            s = _mm256_fmadd_ps(a3, _mm256_broadcast_ss(p + 3), s);
            acc[i] = s;
          }
        }
      for (; k < K; k++) {
        __m256 a = _mm256_load_ps(ag + (size_t)k * 8);
        for (int i = 0; i < nr; i++) acc[i] = _mm256_fmadd_ps(a, _mm256_broadcast_ss(w + (size_t)i * ldw + k), acc[i]);
      }
      transpose8(acc);
      for (int t = 0; t < 8 && 8 * g + t < M; t++) {
        if (nr == 8) _mm256_storeu_ps(out + (size_t)(8 * g + t) * ldc + n, acc[t]);
        else _mm256_maskstore_ps(out + (size_t)(8 * g + t) * ldc + n, _mm256_cmpgt_epi32(_mm256_set1_epi32(nr), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)), acc[t]);
      }
    }
  }
}

T256 static void nt_avx2(float *out, const float *A, const float *W, int T, int K, int N, int c0, int c1) {
  int tb = K > 0 ? (int)(((size_t)256 * 1024) / ((size_t)K * 4)) : T;
  if (tb < 4) tb = 4;
  for (int t0 = 0; t0 < T; t0 += tb) {
    int t1 = t0 + tb < T ? t0 + tb : T;
    for (int n = c0; n < c1; n += 2) {
      int nr = c1 - n < 2 ? c1 - n : 2;
      for (int t = t0; t < t1; t += 4) {
        int mr = t1 - t < 4 ? t1 - t : 4;
        nt_tile256(out + (size_t)t * N + n, N, A + (size_t)t * K, K, W + (size_t)n * K, K, K, mr, nr);
      }
    }
  }
}

T256 static void nn_tile256(float *c, int ldc, const float *dy, int ldy, const float *w, int ldw, int N, int mr, int kw) {
  __m256 acc[4][2];
  for (int i = 0; i < 4; i++) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
  if (kw == 16) {
    for (int n = 0; n < N; n++) {
      __m256 w0 = _mm256_loadu_ps(w + (size_t)n * ldw), w1 = _mm256_loadu_ps(w + (size_t)n * ldw + 8);
      for (int i = 0; i < mr; i++) {
        __m256 b = _mm256_set1_ps(dy[(size_t)i * ldy + n]);
        acc[i][0] = _mm256_fmadd_ps(b, w0, acc[i][0]);
        acc[i][1] = _mm256_fmadd_ps(b, w1, acc[i][1]);
      }
    }
    for (int i = 0; i < mr; i++) {
      float *ci = c + (size_t)i * ldc;
      _mm256_storeu_ps(ci, _mm256_add_ps(_mm256_loadu_ps(ci), acc[i][0]));
      _mm256_storeu_ps(ci + 8, _mm256_add_ps(_mm256_loadu_ps(ci + 8), acc[i][1]));
    }
    return;
  }
  for (int i = 0; i < mr; i++)   /* ragged edge: plain loops */
    for (int kk = 0; kk < kw; kk++) {
      float s = 0;
      for (int n = 0; n < N; n++) s += dy[(size_t)i * ldy + n] * w[(size_t)n * ldw + kk];
      c[(size_t)i * ldc + kk] += s;
    }
}

T256 static void nn_avx2(float *dA, const float *dY, const float *W, int T, int K, int N, int c0, int c1) {
  for (int n0 = 0; n0 < N; n0 += 256) {
    int nb = N - n0 < 256 ? N - n0 : 256;
    for (int k = c0; k < c1; k += 16) {
      int kw = c1 - k < 16 ? c1 - k : 16;
      for (int t = 0; t < T; t += 4) {
        int mr = T - t < 4 ? T - t : 4;
        nn_tile256(dA + (size_t)t * K + k, K, dY + (size_t)t * N + n0, N, W + (size_t)n0 * K + k, K, nb, mr, kw);
      }
    }
  }
}

/* ------------------------------------------- chunk unpacking to f32
** d256_<type>(blk, c, v): elements 32c..32c+31 of the block to v[0..4), 8
** each, for the common types (the others unpack through quant.c's loops).
** Row kernels take up to 3 rows of A at once (16 registers). */

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

/* four statements, not a loop: gcc turns a copying loop into a memcpy through the stack (16-byte stores read
** back as 32-byte loads, a store-forwarding stall per chunk: F32 decode ran at half the memory's speed) */
T256Q static inline void d256_f32(const uint8_t *b, int c, __m256 v[4]) {
  (void)c;
  const float *f = (const float *)b;
  v[0] = _mm256_loadu_ps(f);
  v[1] = _mm256_loadu_ps(f + 8);
  v[2] = _mm256_loadu_ps(f + 16);
  v[3] = _mm256_loadu_ps(f + 24);
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

static const pf_deq_fn g_deq256[GGML_TYPE_COUNT] = {
  [GGML_F32] = deq2_f32, [GGML_F16] = deq2_f16, [GGML_BF16] = deq2_bf16, [GGML_Q8_0] = deq2_q8_0,
  [GGML_Q4_0] = deq2_q4_0, [GGML_Q4_K] = deq2_q4_k, [GGML_Q5_K] = deq2_q5_k, [GGML_Q6_K] = deq2_q6_k,
};
static const pf_dec_fn g_dec256[GGML_TYPE_COUNT] = {
  [GGML_F32] = dec2_f32, [GGML_F16] = dec2_f16, [GGML_BF16] = dec2_bf16, [GGML_Q8_0] = dec2_q8_0,
  [GGML_Q4_0] = dec2_q4_0, [GGML_Q4_K] = dec2_q4_k, [GGML_Q5_K] = dec2_q5_k, [GGML_Q6_K] = dec2_q6_k,
};

/* The same e^x in 8 lanes for AVX2: 2^n built in the exponent bits (n is in -126..127 after the clamp). */
T256 static inline __m256 exp256(__m256 x) {
  x = _mm256_max_ps(_mm256_set1_ps(-87.3365447505531f), _mm256_min_ps(_mm256_set1_ps(88.3762626647949f), x));
  __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                             _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.0f / 720);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}
/* lanes below n (n < 8) for maskload/maskstore */
T256 static inline __m256i mask256(size_t n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
T256 static double vexp_sum256(float *dst, const float *x, float sub, int n) {
  double sum = 0;
  __m256 vs = _mm256_set1_ps(sub);
  for (int i0 = 0; i0 < n; i0 += 1024) {
    int i1 = i0 + 1024 < n ? i0 + 1024 : n;
    __m256 acc = _mm256_setzero_ps();
    for (int i = i0; i < i1; i += 8) {
      __m256i m = mask256((size_t)(i1 - i));
      __m256 e = _mm256_and_ps(exp256(_mm256_sub_ps(_mm256_maskload_ps(x + i, m), vs)), _mm256_castsi256_ps(m));
      if (dst) _mm256_maskstore_ps(dst + i, m, e);
      acc = _mm256_add_ps(acc, e);
    }
    sum += hsum256(acc);
  }
  return sum;
}

T256 static void silu_mul256(float *h, const float *g, const float *u, size_t n) {
  __m256 one = _mm256_set1_ps(1.0f);
  for (size_t i = 0; i < n; i += 8) {
    __m256i m = mask256(n - i);
    __m256 vg = _mm256_maskload_ps(g + i, m);
    __m256 sg = _mm256_div_ps(one, _mm256_add_ps(one, exp256(_mm256_sub_ps(_mm256_setzero_ps(), vg))));
    _mm256_maskstore_ps(h + i, m, _mm256_mul_ps(_mm256_mul_ps(vg, sg), _mm256_maskload_ps(u + i, m)));
  }
}
T256 static void silu_mul_bwd256(float *dg, float *du, const float *dh, const float *g, const float *u, size_t n) {
  __m256 one = _mm256_set1_ps(1.0f);
  for (size_t i = 0; i < n; i += 8) {
    __m256i m = mask256(n - i);
    __m256 vg = _mm256_maskload_ps(g + i, m), vu = _mm256_maskload_ps(u + i, m), vd = _mm256_maskload_ps(dh + i, m);
    __m256 sg = _mm256_div_ps(one, _mm256_add_ps(one, exp256(_mm256_sub_ps(_mm256_setzero_ps(), vg))));
    __m256 silu = _mm256_mul_ps(vg, sg);
    __m256 dsilu = _mm256_fmadd_ps(silu, _mm256_sub_ps(one, sg), sg);
    _mm256_maskstore_ps(dg + i, m, _mm256_fmadd_ps(_mm256_mul_ps(vd, vu), dsilu, _mm256_maskload_ps(dg + i, m)));
    _mm256_maskstore_ps(du + i, m, _mm256_fmadd_ps(vd, silu, _mm256_maskload_ps(du + i, m)));
  }
}

#define GELU_K 0.7978845608028654f   /* sqrt(2/pi) */
T256 static inline __m256 tanh256(__m256 u) {
  __m256 one = _mm256_set1_ps(1.0f);
  return _mm256_sub_ps(one, _mm256_div_ps(_mm256_set1_ps(2.0f), _mm256_add_ps(one, exp256(_mm256_add_ps(u, u)))));
}
T256 static void gelu256(float *out, const float *inp, size_t n) {
  for (size_t i = 0; i < n; i += 8) {
    __m256i m = mask256(n - i);
    __m256 x = _mm256_maskload_ps(inp + i, m), x3 = _mm256_mul_ps(_mm256_mul_ps(x, x), x);
    __m256 t = tanh256(_mm256_mul_ps(_mm256_set1_ps(GELU_K), _mm256_fmadd_ps(_mm256_set1_ps(0.044715f), x3, x)));
    _mm256_maskstore_ps(out + i, m, _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), x), _mm256_add_ps(_mm256_set1_ps(1.0f), t)));
  }
}
T256 static void gelu_bwd256(float *dinp, const float *inp, const float *dout, size_t n) {
  __m256 one = _mm256_set1_ps(1.0f), half = _mm256_set1_ps(0.5f), k = _mm256_set1_ps(GELU_K);
  for (size_t i = 0; i < n; i += 8) {
    __m256i m = mask256(n - i);
    __m256 x = _mm256_maskload_ps(inp + i, m), x2 = _mm256_mul_ps(x, x);
    __m256 t = tanh256(_mm256_mul_ps(k, _mm256_fmadd_ps(_mm256_mul_ps(_mm256_set1_ps(0.044715f), x2), x, x)));
    __m256 d = _mm256_mul_ps(half, _mm256_add_ps(one, t));
    __m256 sech2 = _mm256_fnmadd_ps(t, t, one);
    __m256 du = _mm256_mul_ps(k, _mm256_fmadd_ps(_mm256_set1_ps(3.0f * 0.044715f), x2, one));
    d = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_mul_ps(half, x), sech2), du, d);
    _mm256_maskstore_ps(dinp + i, m, _mm256_fmadd_ps(_mm256_maskload_ps(dout + i, m), d, _mm256_maskload_ps(dinp + i, m)));
  }
}

T256 static float dot256(const float *a, const float *b, int n) {
  __m256 acc = _mm256_setzero_ps();
  int i = 0;
  for (; i + 8 <= n; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc);
  float s = hsum256(acc);
  for (; i < n; i++) s += a[i] * b[i];
  return s;
}
T256 static void axpy256(float *y, float a, const float *x, int n) {
  __m256 va = _mm256_set1_ps(a);
  int i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  for (; i < n; i++) y[i] += a * x[i];
}

/* ------------------------------------------------ integer products (decode)
** Every common block type multiplies in integers, as llama.cpp does on AVX2: each row of A is rounded to
** int8 in chunks of 32 (scale max|a| / 127, as the AVX-512 kernels: the same int8 values), and a chunk's
** 32 weight bytes meet its 32 activation bytes in vpmaddubsw (unsigned × signed bytes, pairs summed to 16
** bits) and vpmaddwd (pairs summed to 32 bits): 8 lanes of 4 products each. Lanes 0-3 hold elements 0-15,
** lanes 4-7 elements 16-31, so a scale per 16 (Q2_K, Q3_K, Q6_K) is a vector of two halves. Each lane's
** sum is scaled in f32 by its weight scale times the chunk's activation scale.
** vpmaddubsw saturates at 16 bits: unsigned weights have at most 6 bits (63 · 127 · 2 < 32767); weights
** that are signed (Q8_0, the IQ4 tables) or offset (Q4_0, Q5_0, Q3_K, Q6_K: q - off) go in as |w| with
** the activation's sign flipped where w < 0 (vpsignb; 128 · 127 · 2 < 32767). Additive minimums (Q4_1,
** Q5_1, Q2_K, Q4_K, Q5_K) meet the chunks' (or half chunks') activation sums. */

#define I2_MAX 8   /* rows of A one pass over a weight row serves */

T256Q static inline float f16v(const uint8_t *p) {
  uint16_t h;
  memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

/* T rows of A (K a multiple of 32) rounded to int8 per 32: q, d, xs, xs16 */
T256Q static void qact_fill256(pf_qact *a, const float *A, int lda) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  for (int t = 0; t < a->T; t++)
    for (int c = 0; c < a->nch; c++) {
      const float *x = A + (size_t)t * lda + 32 * (size_t)c;
      __m256 x0 = _mm256_loadu_ps(x), x1 = _mm256_loadu_ps(x + 8), x2 = _mm256_loadu_ps(x + 16),
             x3 = _mm256_loadu_ps(x + 24);
      __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, x0), _mm256_andnot_ps(sign, x1)),
                               _mm256_max_ps(_mm256_andnot_ps(sign, x2), _mm256_andnot_ps(sign, x3)));
      __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
      h = _mm_max_ps(h, _mm_movehl_ps(h, h));
      h = _mm_max_ss(h, _mm_shuffle_ps(h, h, 1));
      float amax = _mm_cvtss_f32(h), d = amax / 127.0f, id = amax > 0 ? 127.0f / amax : 0.0f;
      __m256 vid = _mm256_set1_ps(id);
      __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(x0, vid)), i1 = _mm256_cvtps_epi32(_mm256_mul_ps(x1, vid));
      __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(x2, vid)), i3 = _mm256_cvtps_epi32(_mm256_mul_ps(x3, vid));
      __m256i b = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
      _mm256_storeu_si256((__m256i *)(a->q + (size_t)t * a->K + 32 * (size_t)c), _mm256_permutevar8x32_epi32(b, order));
      __m256i s01 = _mm256_add_epi32(i0, i1), s23 = _mm256_add_epi32(i2, i3);
      __m128i r01 = _mm_add_epi32(_mm256_castsi256_si128(s01), _mm256_extracti128_si256(s01, 1));
      __m128i r23 = _mm_add_epi32(_mm256_castsi256_si128(s23), _mm256_extracti128_si256(s23, 1));
      __m128i r = _mm_hadd_epi32(r01, r23);   /* [a0+a1, a2+a3, b0+b1, b2+b3] */
      r = _mm_hadd_epi32(r, r);                /* [Σ first 16, Σ last 16, ...] */
      int s0 = _mm_cvtsi128_si32(r), s1 = _mm_extract_epi32(r, 1);
      size_t ci = (size_t)t * a->nch + c;
      a->d[ci] = d;
      a->xs[ci] = d * (float)(s0 + s1);
      a->xs16[2 * ci] = d * (float)s0;
      a->xs16[2 * ci + 1] = d * (float)s1;
    }
}

/* A block's scales and minimums, computed once per block: s[i], m[i] for chunk i (a scale per 32), or
** s[2i], s[2i + 1] and m[2i], m[2i + 1] for its halves (a scale per 16). A value is s · w + m, w the
** chunk's byte. */
typedef struct ihdr {
  float s[16] __attribute__((aligned(32)));
  float m[16] __attribute__((aligned(32)));
} ihdr;

/* 16 bytes of nibbles to 32 bytes: the low nibbles (elements 0-15), then the high ones (16-31) */
T256Q static inline __m256i nib32(const uint8_t *p) {
  __m128i q = _mm_loadu_si128((const __m128i *)p), m = _mm_set1_epi8(0x0F);
  return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), m), _mm_and_si128(q, m));
}
/* bit j of 32 bits as byte j: 0xFF where set */
T256Q static inline __m256i bits32(uint32_t x) {
  const __m256i shuf = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3,
                                        3, 3, 3, 3);
  const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
  __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)x), shuf);
  return _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
}
/* bits (shift, shift+1, ...) of 32 bytes, masked to m */
T256Q static inline __m256i field32(const uint8_t *p, int shift, int m) {
  return _mm256_and_si256(_mm256_srl_epi16(_mm256_loadu_si256((const __m256i *)p), _mm_cvtsi32_si128(shift)),
                          _mm256_set1_epi8((char)m));
}
T256Q static inline __m256i iq4_lookup(__m256i nibbles) {
  const __m128i v = _mm_loadu_si128((const __m128i *)pf_iq4nl_values);
  return _mm256_shuffle_epi8(_mm256_set_m128i(v, v), nibbles);
}
/* 8 unsigned bytes of a 64-bit word to 8 floats times f */
T256Q static inline __m256 u8x8_ps(uint64_t v, float f) {
  return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)v))), _mm256_set1_ps(f));
}

/* ---- per type: h_<t> the block's scales, w_<t> chunk c's 32 bytes */
T256Q static inline void h_q4_0(const uint8_t *b, ihdr *h) { h->s[0] = f16v(b); }
T256Q static inline __m256i w_q4_0(const uint8_t *b, int c) {
  (void)c;
  return _mm256_sub_epi8(nib32(b + 2), _mm256_set1_epi8(8));
}
T256Q static inline void h_q4_1(const uint8_t *b, ihdr *h) { h->s[0] = f16v(b), h->m[0] = f16v(b + 2); }
T256Q static inline __m256i w_q4_1(const uint8_t *b, int c) {
  (void)c;
  return nib32(b + 4);
}
T256Q static inline void h_q5_0(const uint8_t *b, ihdr *h) { h->s[0] = f16v(b); }
T256Q static inline __m256i w_q5_0(const uint8_t *b, int c) {
  (void)c;
  uint32_t qh;
  memcpy(&qh, b + 2, 4);
  __m256i u = _mm256_or_si256(nib32(b + 6), _mm256_and_si256(bits32(qh), _mm256_set1_epi8(16)));
  return _mm256_sub_epi8(u, _mm256_set1_epi8(16));
}
T256Q static inline void h_q5_1(const uint8_t *b, ihdr *h) { h->s[0] = f16v(b), h->m[0] = f16v(b + 2); }
T256Q static inline __m256i w_q5_1(const uint8_t *b, int c) {
  (void)c;
  uint32_t qh;
  memcpy(&qh, b + 4, 4);
  return _mm256_or_si256(nib32(b + 8), _mm256_and_si256(bits32(qh), _mm256_set1_epi8(16)));
}
T256Q static inline void h_q8_0(const uint8_t *b, ihdr *h) { h->s[0] = f16v(b); }
T256Q static inline __m256i w_q8_0(const uint8_t *b, int c) {
  (void)c;
  return _mm256_loadu_si256((const __m256i *)(b + 2));
}
/* Q2_K: element 128h + 32j + l in qs[32h + l] at bits 2j; per 16: 4-bit scale (low) and min (high) */
T256Q static inline void h_q2_k(const uint8_t *b, ihdr *h) {
  float d = f16v(b + 80), dmin = -f16v(b + 82);
  __m128i sc = _mm_loadu_si128((const __m128i *)b), m4 = _mm_set1_epi8(0x0F);
  __m128i lo = _mm_and_si128(sc, m4), hi = _mm_and_si128(_mm_srli_epi16(sc, 4), m4);
  _mm256_store_ps(h->s, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(lo)), _mm256_set1_ps(d)));
  _mm256_store_ps(h->s + 8, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8))), _mm256_set1_ps(d)));
  _mm256_store_ps(h->m, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(hi)), _mm256_set1_ps(dmin)));
  _mm256_store_ps(h->m + 8, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8))), _mm256_set1_ps(dmin)));
}
T256Q static inline __m256i w_q2_k(const uint8_t *b, int c) { return field32(b + 16 + 32 * (c / 4), 2 * (c % 4), 3); }
/* Q3_K: low 2 bits as Q2_K (qs at 32), high bit in hmask[l] bit c (clear: -4); 6-bit scales per 16 */
T256Q static inline void h_q3_k(const uint8_t *b, ihdr *h) {
  float d = f16v(b + 108);
  for (int i = 0; i < 16; i++) h->s[i] = d * (float)pf_q3k_scale(b + 96, i);
}
T256Q static inline __m256i w_q3_k(const uint8_t *b, int c) {
  __m256i u = field32(b + 32 + 32 * (c / 4), 2 * (c % 4), 3);
  __m256i bit = _mm256_set1_epi8((char)(1 << c)), hm = _mm256_loadu_si256((const __m256i *)b);
  __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(hm, bit), bit);
  return _mm256_sub_epi8(u, _mm256_andnot_si256(set, _mm256_set1_epi8(4)));
}
/* Q4_K and Q5_K: 8 6-bit scales and mins packed in 12 bytes (as pf_k4_scale_min, 8 at once) */
T256Q static inline void h_k4(const uint8_t *b, ihdr *h) {
  uint32_t u[3];
  memcpy(u, b + 4, 12);
  uint64_t sc = (uint64_t)(u[0] & 0x3f3f3f3f) | (uint64_t)((u[2] & 0x0f0f0f0f) | ((u[0] >> 2) & 0x30303030)) << 32;
  uint64_t mn = (uint64_t)(u[1] & 0x3f3f3f3f) | (uint64_t)(((u[2] >> 4) & 0x0f0f0f0f) | ((u[1] >> 2) & 0x30303030)) << 32;
  _mm256_store_ps(h->s, u8x8_ps(sc, f16v(b)));
  _mm256_store_ps(h->m, u8x8_ps(mn, -f16v(b + 2)));
}
T256Q static inline __m256i w_q4_k(const uint8_t *b, int c) { return field32(b + 16 + 32 * (c / 2), 4 * (c % 2), 0x0F); }
T256Q static inline __m256i w_q5_k(const uint8_t *b, int c) {
  __m256i bit = _mm256_set1_epi8((char)(1 << c)), qh = _mm256_loadu_si256((const __m256i *)(b + 16));
  __m256i hi = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(qh, bit), bit), _mm256_set1_epi8(16));
  return _mm256_or_si256(field32(b + 48 + 32 * (c / 2), 4 * (c % 2), 0x0F), hi);
}
/* Q6_K: element 128h + 32p + l: 4 low bits in ql[64h + 32(p%2) + l] (high nibble for p >= 2), 2 high bits
** in qh[32h + l] at bits 2p; minus 32; int8 scales per 16 */
T256Q static inline void h_q6_k(const uint8_t *b, ihdr *h) {
  __m128i sc = _mm_loadu_si128((const __m128i *)(b + 192));
  __m256 d = _mm256_set1_ps(f16v(b + 208));
  _mm256_store_ps(h->s, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(sc)), d));
  _mm256_store_ps(h->s + 8, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(sc, 8))), d));
}
T256Q static inline __m256i w_q6_k(const uint8_t *b, int c) {
  int hh = c / 4, p = c % 4;
  __m256i lo = field32(b + 64 * hh + 32 * (p % 2), 4 * (p / 2), 0x0F), hi = field32(b + 128 + 32 * hh, 2 * p, 3);
  return _mm256_sub_epi8(_mm256_or_si256(lo, _mm256_slli_epi16(hi, 4)), _mm256_set1_epi8(32));
}
T256Q static inline void h_iq4_nl(const uint8_t *b, ihdr *h) { h->s[0] = f16v(b); }
T256Q static inline __m256i w_iq4_nl(const uint8_t *b, int c) {
  (void)c;
  return iq4_lookup(nib32(b + 2));
}
T256Q static inline void h_iq4_xs(const uint8_t *b, ihdr *h) {
  uint16_t sh;
  memcpy(&sh, b + 2, 2);
  float d = f16v(b);
  for (int c = 0; c < 8; c++) h->s[c] = d * (float)((((b[4 + c / 2] >> (4 * (c % 2))) & 0xF) | (((sh >> (2 * c)) & 3) << 4)) - 32);
}
T256Q static inline __m256i w_iq4_xs(const uint8_t *b, int c) { return iq4_lookup(nib32(b + 8 + 16 * c)); }

/* the lane scales of chunk c: one per 32, or the two halves' */
#define I2_SCALE(h, c, SC16) \
  ((SC16) ? _mm256_setr_m128(_mm_broadcast_ss(&(h).s[2 * (c)]), _mm_broadcast_ss(&(h).s[2 * (c) + 1])) \
          : _mm256_broadcast_ss(&(h).s[c]))

/* For each type: irow2_<t> out[t * ldc] = A[t] · row for T <= I2_MAX rows of A, block by block (the block's
** scales once, its chunks unrolled); SGN: the bytes are signed; SC16: a scale per 16; MIN: additive
** minimums, met with the chunks' (or halves') activation sums a block at a time. Two accumulators per row,
** so the FMA chains of a single row overlap. */
#define DEF_I2(TY, HDR, WB, BYTES, PER, SGN, SC16, MIN)                                                                \
  T256Q static inline __attribute__((always_inline)) void irow2_##TY(int T, float *out, int ldc, const pf_qact *a,     \
                                                                     const uint8_t *row) {                             \
    __m256 acc[I2_MAX], acc2[I2_MAX], macc[I2_MAX];                                                                    \
    _Pragma("GCC unroll 8") for (int t = 0; t < I2_MAX; t++) acc[t] = acc2[t] = macc[t] = _mm256_setzero_ps();         \
    const int nch = a->nch, nb = nch / PER;                                                                            \
    size_t pf = DEC_AHEAD;                                                                                             \
    for (int ib = 0; ib < nb; ib++) {                                                                                  \
      const uint8_t *b = row + (size_t)ib * BYTES;                                                                     \
      for (size_t e = (size_t)(ib + 1) * BYTES + DEC_AHEAD; pf < e; pf += 64)                                          \
        _mm_prefetch((const char *)row + pf, _MM_HINT_T0);                                                             \
      ihdr h;                                                                                                          \
      HDR(b, &h);                                                                                                      \
      _Pragma("GCC unroll 8") for (int cc = 0; cc < PER; cc++) {                                                       \
        __m256i w = WB(b, cc);                                                                                         \
        __m256i aw = SGN ? _mm256_sign_epi8(w, w) : w;                                                                 \
        __m256 sv = I2_SCALE(h, cc, SC16);                                                                             \
        int c = ib * PER + cc;                                                                                         \
        _Pragma("GCC unroll 8") for (int t = 0; t < I2_MAX; t++) if (t < T) {                                          \
          size_t ci = (size_t)t * nch + c;                                                                             \
          __m256i q = _mm256_loadu_si256((const __m256i *)(a->q + 32 * ci));                                           \
          if (SGN) q = _mm256_sign_epi8(q, w);                                                                         \
          __m256 p = _mm256_cvtepi32_ps(DOT4(_mm256_setzero_si256(), aw, q));                                        \
          __m256 s = _mm256_mul_ps(sv, _mm256_broadcast_ss(a->d + ci));                                                \
          if ((cc & 1) && PER > 1) acc2[t] = _mm256_fmadd_ps(p, s, acc2[t]);                                           \
          else acc[t] = _mm256_fmadd_ps(p, s, acc[t]);                                                                 \
        }                                                                                                              \
      }                                                                                                                \
      if (MIN) _Pragma("GCC unroll 8") for (int t = 0; t < I2_MAX; t++) if (t < T) {                                   \
        size_t c0 = (size_t)t * nch + (size_t)ib * PER;                                                                \
        if (PER == 1) macc[t] = _mm256_fmadd_ps(_mm256_set_ps(0, 0, 0, 0, 0, 0, 0, h.m[0]),                            \
                                                _mm256_set_ps(0, 0, 0, 0, 0, 0, 0, a->xs[c0]), macc[t]);               \
        else if (SC16) {                                                                                               \
          macc[t] = _mm256_fmadd_ps(_mm256_load_ps(h.m), _mm256_loadu_ps(a->xs16 + 2 * c0), macc[t]);                  \
          macc[t] = _mm256_fmadd_ps(_mm256_load_ps(h.m + 8), _mm256_loadu_ps(a->xs16 + 2 * c0 + 8), macc[t]);          \
        } else macc[t] = _mm256_fmadd_ps(_mm256_load_ps(h.m), _mm256_loadu_ps(a->xs + c0), macc[t]);                  \
      }                                                                                                                \
    }                                                                                                                  \
    _Pragma("GCC unroll 8") for (int t = 0; t < I2_MAX; t++) if (t < T)                                               \
      out[(size_t)t * ldc] = hsum256(_mm256_add_ps(_mm256_add_ps(acc[t], acc2[t]), macc[t]));                         \
  }                                                                                                                    \
  T256Q static void idec2_##TY(float *out, int ldc, const pf_qact *a, const uint8_t *W, size_t rb, int c0, int c1) {   \
    for (int n = c0; n < c1; n++) {                                                                                    \
      const uint8_t *row = W + (size_t)n * rb;                                                                         \
      switch (a->T) {                                                                                                  \
        case 1: irow2_##TY(1, out + n, ldc, a, row); break;                                                            \
        case 2: irow2_##TY(2, out + n, ldc, a, row); break;                                                            \
        case 3: irow2_##TY(3, out + n, ldc, a, row); break;                                                            \
        case 4: irow2_##TY(4, out + n, ldc, a, row); break;                                                            \
        case 5: irow2_##TY(5, out + n, ldc, a, row); break;                                                            \
        case 6: irow2_##TY(6, out + n, ldc, a, row); break;                                                            \
        case 7: irow2_##TY(7, out + n, ldc, a, row); break;                                                            \
        default: irow2_##TY(8, out + n, ldc, a, row); break;                                                           \
      }                                                                                                                \
    }                                                                                                                  \
  }

DEF_I2(q4_0, h_q4_0, w_q4_0, 18, 1, 1, 0, 0)
DEF_I2(q4_1, h_q4_1, w_q4_1, 20, 1, 0, 0, 1)
DEF_I2(q5_0, h_q5_0, w_q5_0, 22, 1, 1, 0, 0)
DEF_I2(q5_1, h_q5_1, w_q5_1, 24, 1, 0, 0, 1)
DEF_I2(q8_0, h_q8_0, w_q8_0, 34, 1, 1, 0, 0)
DEF_I2(q2_k, h_q2_k, w_q2_k, 84, 8, 0, 1, 1)
DEF_I2(q3_k, h_q3_k, w_q3_k, 110, 8, 1, 1, 0)
DEF_I2(q4_k, h_k4, w_q4_k, 144, 8, 0, 0, 1)
DEF_I2(q5_k, h_k4, w_q5_k, 176, 8, 0, 0, 1)
DEF_I2(q6_k, h_q6_k, w_q6_k, 210, 8, 1, 1, 0)
DEF_I2(iq4_nl, h_iq4_nl, w_iq4_nl, 18, 1, 1, 0, 0)
DEF_I2(iq4_xs, h_iq4_xs, w_iq4_xs, 136, 8, 1, 0, 0)

typedef void (*idec2_fn)(float *out, int ldc, const pf_qact *a, const uint8_t *W, size_t rb, int c0, int c1);
static const idec2_fn g_idec2[GGML_TYPE_COUNT] = {
  [GGML_Q4_0] = idec2_q4_0, [GGML_Q4_1] = idec2_q4_1, [GGML_Q5_0] = idec2_q5_0, [GGML_Q5_1] = idec2_q5_1,
  [GGML_Q8_0] = idec2_q8_0, [GGML_Q2_K] = idec2_q2_k, [GGML_Q3_K] = idec2_q3_k, [GGML_Q4_K] = idec2_q4_k,
  [GGML_Q5_K] = idec2_q5_k, [GGML_Q6_K] = idec2_q6_k, [GGML_IQ4_NL] = idec2_iq4_nl, [GGML_IQ4_XS] = idec2_iq4_xs,
};

/* scratch for T rows of K rounded to int8: q, d, xs, xs16 (NULL when out of memory) */
static float *qact_get(pf_qact *a, int T, int K, size_t *cap) {
  a->T = T, a->K = K, a->nch = K / 32, a->off = NULL;
  size_t nf = (size_t)T * a->nch;
  float *buf = pf_scratch_get(4 * nf + ((size_t)T * K + 3) / 4 + 16, cap);
  if (!buf) return NULL;
  a->d = buf, a->xs = buf + nf, a->xs16 = buf + 2 * nf;
  a->q = (int8_t *)(buf + 4 * nf);
  return buf;
}

/* out[t][c0:c1] through the integer products, or 0 when this type or memory cannot */
static int nt_int8_256(float *out, const float *A, const pf_wt *W, int T, int c0, int c1) {
  if (!pf_int8 || !g_idec2[W->type] || W->cols % 32) return 0;
  pf_qact a;
  size_t cap;
  float *buf = qact_get(&a, T, W->cols, &cap);
  if (!buf) return 0;
  qact_fill256(&a, A, W->cols);
  for (int t0 = 0; t0 < T; t0 += I2_MAX) {   /* more rows: 8 at a time over the same W rows */
    pf_qact s = a;
    s.T = T - t0 < I2_MAX ? T - t0 : I2_MAX;
    s.q += (size_t)t0 * a.K, s.d += (size_t)t0 * a.nch, s.xs += (size_t)t0 * a.nch, s.xs16 += (size_t)2 * t0 * a.nch;
    g_idec2[W->type](out + (size_t)t0 * W->rows, W->rows, &s, W->data, W->row_bytes, c0, c1);
  }
  pf_scratch_put(buf, cap);
  return 1;
}

/* ------------------------------------------------ integer products (prefill)
** out (M, N) = A (M, K) · Wᵀ for many rows (prompt prefill, 24 rows or more): A is rounded to int8 once (as
** for decode); W is unpacked 16 rows at a time into a panel of unsigned bytes, each row's 4-byte groups
** side by side ([K/4][16] dwords, so one 32-byte load holds 4 k-values of 8 columns), with each group of G
** k-values' (32, or 16 for the types with a scale per 16) weight scale dw and additive term cr, so that
** Σ w·x over a group = dw · Σ u·q · dx + cr · Σ x. Offset types are stored as u = q + off (unsigned, at most
** 6 bits: no vpmaddubsw saturation) with the offset folded into cr. The micro-kernel keeps 4 rows × 16
** columns of 32-bit sums in registers: per 4 k-values, two panel loads, a broadcast of each row's 4
** activation bytes, vpmaddubsw + vpmaddwd per row and half; at each group's end the sums are scaled into
** the f32 tile. Q8_0 and the IQ4 tables (signed bytes of full range) go in as |w| with the activation's
** sign flipped where w < 0, as for decode. */

#define IG2_MR 4
#define IG2_NR 16

/* Each type: a row's chunks as unsigned bytes u (q + off for the offset types), with dw and cr per group
** (stride IG2_NR: a panel column), G = 16 for the types with a scale per 16, else 32 */
#define DEF_IG2(TY, HDR, WB, BYTES, PER, SC16, OFF)                                                                    \
  T256Q static void ig2_unpack_##TY(const uint8_t *row, int K, uint8_t *u, float *dw, float *cr) {                    \
    for (int ib = 0; ib < K / 32 / PER; ib++) {                                                                        \
      const uint8_t *b = row + (size_t)ib * BYTES;                                                                     \
      ihdr h;                                                                                                          \
      HDR(b, &h);                                                                                                      \
      _Pragma("GCC unroll 8") for (int cc = 0; cc < PER; cc++) {                                                       \
        int c = ib * PER + cc;                                                                                         \
        _mm256_storeu_si256((__m256i *)(u + 32 * (size_t)c), _mm256_add_epi8(WB(b, cc), _mm256_set1_epi8(OFF)));       \
        if (SC16)                                                                                                      \
          for (int k = 0; k < 2; k++) {                                                                                \
            dw[(2 * c + k) * IG2_NR] = h.s[2 * cc + k];                                                                \
            cr[(2 * c + k) * IG2_NR] = (MINOF(TY) ? h.m[2 * cc + k] : 0) - (float)(OFF) * h.s[2 * cc + k];             \
          }                                                                                                            \
        else {                                                                                                         \
          dw[c * IG2_NR] = h.s[cc];                                                                                    \
          cr[c * IG2_NR] = (MINOF(TY) ? h.m[cc] : 0) - (float)(OFF) * h.s[cc];                                         \
        }                                                                                                              \
      }                                                                                                                \
    }                                                                                                                  \
  }
/* which types have additive minimums (their header's m[]) */
#define MINOF(TY) MIN_##TY
enum { MIN_q4_0 = 0, MIN_q4_1 = 1, MIN_q5_0 = 0, MIN_q5_1 = 1, MIN_q8_0 = 0, MIN_q2_k = 1, MIN_q3_k = 0, MIN_q4_k = 1,
       MIN_q5_k = 1, MIN_q6_k = 0, MIN_iq4_nl = 0, MIN_iq4_xs = 0 };
DEF_IG2(q4_0, h_q4_0, w_q4_0, 18, 1, 0, 8)
DEF_IG2(q4_1, h_q4_1, w_q4_1, 20, 1, 0, 0)
DEF_IG2(q5_0, h_q5_0, w_q5_0, 22, 1, 0, 16)
DEF_IG2(q5_1, h_q5_1, w_q5_1, 24, 1, 0, 0)
DEF_IG2(q2_k, h_q2_k, w_q2_k, 84, 8, 1, 0)
DEF_IG2(q3_k, h_q3_k, w_q3_k, 110, 8, 1, 4)
DEF_IG2(q4_k, h_k4, w_q4_k, 144, 8, 0, 0)
DEF_IG2(q5_k, h_k4, w_q5_k, 176, 8, 0, 0)
DEF_IG2(q6_k, h_q6_k, w_q6_k, 210, 8, 1, 32)
DEF_IG2(q8_0, h_q8_0, w_q8_0, 34, 1, 0, 0)   /* signed bytes, kept signed */
DEF_IG2(iq4_nl, h_iq4_nl, w_iq4_nl, 18, 1, 0, 0)
DEF_IG2(iq4_xs, h_iq4_xs, w_iq4_xs, 136, 8, 0, 0)

typedef void (*ig2_unpack_fn)(const uint8_t *row, int K, uint8_t *u, float *dw, float *cr);
static const struct { ig2_unpack_fn unpack; int G, sgn; } g_ig2[GGML_TYPE_COUNT] = {
  [GGML_Q4_0] = {ig2_unpack_q4_0, 32, 0}, [GGML_Q4_1] = {ig2_unpack_q4_1, 32, 0}, [GGML_Q5_0] = {ig2_unpack_q5_0, 32, 0},
  [GGML_Q5_1] = {ig2_unpack_q5_1, 32, 0}, [GGML_Q2_K] = {ig2_unpack_q2_k, 16, 0}, [GGML_Q3_K] = {ig2_unpack_q3_k, 16, 0},
  [GGML_Q4_K] = {ig2_unpack_q4_k, 32, 0}, [GGML_Q5_K] = {ig2_unpack_q5_k, 32, 0}, [GGML_Q6_K] = {ig2_unpack_q6_k, 16, 0},
  [GGML_Q8_0] = {ig2_unpack_q8_0, 32, 1}, [GGML_IQ4_NL] = {ig2_unpack_iq4_nl, 32, 1},
  [GGML_IQ4_XS] = {ig2_unpack_iq4_xs, 32, 1},
};

/* rows n0 .. n0+nw of W into the panel: bp [K/4][16] dwords of unsigned bytes, dw and cr [K/G][16] (zero past
** nw); tmp holds 16 rows of K bytes */
T256Q static void ig2_pack(const pf_wt *W, int n0, int nw, uint8_t *tmp, int32_t *bp, float *dw, float *cr) {
  int K = W->cols, nq = K / 4, ng = K / g_ig2[W->type].G;
  for (int r = 0; r < IG2_NR; r++) {
    uint8_t *u = tmp + (size_t)r * K;
    if (r < nw) g_ig2[W->type].unpack(W->data + (size_t)(n0 + r) * W->row_bytes, K, u, dw + r, cr + r);
    else {
      memset(u, 0, (size_t)K);
      for (int g = 0; g < ng; g++) dw[g * IG2_NR + r] = cr[g * IG2_NR + r] = 0;
    }
  }
  for (int h = 0; h < 2; h++)   /* 8 rows × 8 dwords at a time, transposed */
    for (int q0 = 0; q0 < nq; q0 += 8) {
      int qq = nq - q0 < 8 ? nq - q0 : 8;
      __m256 v[8];
      for (int i = 0; i < 8; i++) {
        const uint8_t *src = tmp + (size_t)(8 * h + i) * K + 4 * (size_t)q0;
        if (qq == 8) v[i] = _mm256_loadu_ps((const float *)src);
        else {
          float b[8] = {0};
          memcpy(b, src, 4 * (size_t)qq);
          v[i] = _mm256_loadu_ps(b);
        }
      }
      transpose8(v);
      for (int j = 0; j < qq; j++) _mm256_storeu_ps((float *)(bp + (size_t)(q0 + j) * IG2_NR + 8 * h), v[j]);
    }
}

/* out[0..mr)[0..nw) = rows of A against the panel; A's int8 rows at stride K, their chunk scales ad (stride
** nch) and group sums axs (stride ng) */
T256Q static inline __attribute__((always_inline)) void ig2_tile(int sgn, int mr, float *out, int ldc, int nw, const int8_t *aq,
                                                                  int K, const float *ad, const float *axs, int nch,
                                                                  int ng, const int32_t *bp, const float *dw,
                                                                  const float *cr, int G) {
  float c[IG2_MR][IG2_NR] __attribute__((aligned(32)));
  memset(c, 0, sizeof c);
  int steps = G / 4;
  for (int g = 0; g < ng; g++) {
    __m256i s[IG2_MR][2];
#pragma GCC unroll 4
    for (int i = 0; i < IG2_MR; i++) s[i][0] = s[i][1] = _mm256_setzero_si256();
    const int32_t *b = bp + (size_t)g * steps * IG2_NR;
    for (int k = 0; k < steps; k++, b += IG2_NR) {
      __m256i b0 = _mm256_loadu_si256((const __m256i *)b), b1 = _mm256_loadu_si256((const __m256i *)(b + 8));
      /* signed weights: |w| meets the activation with w's sign */
      __m256i u0 = sgn ? _mm256_sign_epi8(b0, b0) : b0, u1 = sgn ? _mm256_sign_epi8(b1, b1) : b1;
      int off = g * G + 4 * k;
#pragma GCC unroll 4
      for (int i = 0; i < IG2_MR; i++)
        if (i < mr) {
          int32_t a4;
          memcpy(&a4, aq + (size_t)i * K + off, 4);
          __m256i a = _mm256_set1_epi32(a4);
          __m256i a0 = sgn ? _mm256_sign_epi8(a, b0) : a, a1 = sgn ? _mm256_sign_epi8(a, b1) : a;
          s[i][0] = DOT4(s[i][0], u0, a0);
          s[i][1] = DOT4(s[i][1], u1, a1);
        }
    }
    __m256 w0 = _mm256_loadu_ps(dw + (size_t)g * IG2_NR), w1 = _mm256_loadu_ps(dw + (size_t)g * IG2_NR + 8);
    __m256 r0 = _mm256_loadu_ps(cr + (size_t)g * IG2_NR), r1 = _mm256_loadu_ps(cr + (size_t)g * IG2_NR + 8);
    int ch = g * G / 32;
#pragma GCC unroll 4
    for (int i = 0; i < IG2_MR; i++)
      if (i < mr) {
        __m256 dx = _mm256_set1_ps(ad[(size_t)i * nch + ch]), xs = _mm256_set1_ps(axs[(size_t)i * ng + g]);
        __m256 c0 = _mm256_load_ps(c[i]), c1 = _mm256_load_ps(c[i] + 8);
        c0 = _mm256_fmadd_ps(xs, r0, _mm256_fmadd_ps(_mm256_cvtepi32_ps(s[i][0]), _mm256_mul_ps(dx, w0), c0));
        c1 = _mm256_fmadd_ps(xs, r1, _mm256_fmadd_ps(_mm256_cvtepi32_ps(s[i][1]), _mm256_mul_ps(dx, w1), c1));
        _mm256_store_ps(c[i], c0);
        _mm256_store_ps(c[i] + 8, c1);
      }
  }
  for (int i = 0; i < mr; i++) memcpy(out + (size_t)i * ldc, c[i], sizeof(float) * (size_t)nw);
}

T256Q static void ig2_tile_n(int sgn, int mr, float *out, int ldc, int nw, const int8_t *aq, int K, const float *ad,
                             const float *axs, int nch, int ng, const int32_t *bp, const float *dw, const float *cr,
                             int G) {
  switch (mr + 4 * sgn) {
#define IG2_CASE(sg, n) case n + 4 * sg: ig2_tile(sg, n, out, ldc, nw, aq, K, ad, axs, nch, ng, bp, dw, cr, G); break;
    IG2_CASE(0, 1) IG2_CASE(0, 2) IG2_CASE(0, 3) IG2_CASE(0, 4) IG2_CASE(1, 1) IG2_CASE(1, 2) IG2_CASE(1, 3) IG2_CASE(1, 4)
#undef IG2_CASE
    default: break;
  }
}

typedef struct ig2_job {
  float *out;
  const float *A;   /* f32, for a slice that cannot have its panel memory */
  const pf_wt *W;
  const pf_qact *a;
  const float *xs;   /* the activations' sums per group of G (times d) */
  int M, nslice;
} ig2_job;

static void nt_w256(float *out, const float *A, const pf_wt *W, int T, int c0, int c1, int exact);

static void ig2_slice(void *arg, int si) {
  const ig2_job *j = arg;
  const pf_wt *W = j->W;
  int K = W->cols, N = W->rows, G = g_ig2[W->type].G, ng = K / G;
  int per = ((N + j->nslice - 1) / j->nslice + IG2_NR - 1) / IG2_NR * IG2_NR, c0 = si * per;
  int c1 = c0 + per < N ? c0 + per : N;
  if (c1 <= c0) return;
  size_t cap, need = ((size_t)2 * IG2_NR * K + 2 * sizeof(float) * (size_t)ng * IG2_NR) / sizeof(float) + 64;
  float *buf = pf_scratch_get(need, &cap);
  if (!buf) {   /* no panel memory: the f32 kernels */
    nt_w256(j->out, j->A, W, j->M, c0, c1, 1);
    return;
  }
  float *dw = buf, *cr = dw + (size_t)ng * IG2_NR;
  int32_t *bp = (int32_t *)(cr + (size_t)ng * IG2_NR);
  uint8_t *tmp = (uint8_t *)(bp + (size_t)IG2_NR * K / 4);
  for (int n0 = c0; n0 < c1; n0 += IG2_NR) {
    int nw = c1 - n0 < IG2_NR ? c1 - n0 : IG2_NR;
    ig2_pack(W, n0, nw, tmp, bp, dw, cr);
    for (int i0 = 0; i0 < j->M; i0 += IG2_MR) {
      int mr = j->M - i0 < IG2_MR ? j->M - i0 : IG2_MR;
      ig2_tile_n(g_ig2[W->type].sgn, mr, j->out + (size_t)i0 * N + n0, N, nw, j->a->q + (size_t)i0 * K, K, j->a->d + (size_t)i0 * j->a->nch,
                 j->xs + (size_t)i0 * ng, j->a->nch, ng, bp, dw, cr, G);
    }
  }
  pf_scratch_put(buf, cap);
}

static int gemm_int8_256(float *out, const float *A, const pf_wt *W, int M, int nslice) {
  if (!pf_int8 || !g_ig2[W->type].unpack || W->cols % 32) return 0;
  pf_qact a;
  size_t cap;
  float *buf = qact_get(&a, M, W->cols, &cap);
  if (!buf) return 0;
  qact_fill256(&a, A, W->cols);
  ig2_job j = {out, A, W, &a, g_ig2[W->type].G == 32 ? a.xs : a.xs16, M, nslice};
  pf_parallel_for(nslice, ig2_slice, &j);
  pf_scratch_put(buf, cap);
  return 1;
}

/* ------------------------------------------------------------- the table */

static void nt_dec256(float *out, const float *A, const pf_wt *W, int T, int c0, int c1, int exact) {
  if (!exact && nt_int8_256(out, A, W, T, c0, c1)) return;
  pf_nt_dec_run(g_dec256, DEC2_MAX, dot256, out, A, W, T, c0, c1);
}

static const pf_gemm_isa gm256 = {G2_MR, G2_NR, g2_pack_a, g2_pack_nt, g2_pack_nn, g2_tile_n, g2_pack_nt_half,
                                  g_deq256, nt_avx2, nn_avx2, nt_dec256};

static void nt256(float *out, const float *A, const float *W, int T, int K, int N, int c0, int c1) {
  if (c1 <= c0) return;
  if (T <= 2) {   /* decode: rows of W streamed one at a time */
    pf_wt w = {(const uint8_t *)W, GGML_F32, N, K, sizeof(float) * (size_t)K};
    nt_dec256(out, A, &w, T, c0, c1, 1);
    return;
  }
  if (T >= SM2_MIN && T < G2_MIN_ROWS) {
    size_t cap;
    float *at = pf_scratch_get((size_t)((T + 7) / 8) * K * 8, &cap);
    if (at) { nt_small256(out, N, A, K, T, K, W, K, c0, c1, at, NULL, NULL); pf_scratch_put(at, cap); return; }
  }
  if (T < G2_MIN_ROWS || !pf_gemm_slice(&gm256, 1, out, N, A, K, T, K, W, NULL, K, c0, c1, 0))
    nt_avx2(out, A, W, T, K, N, c0, c1);
}

static void nn_acc256(float *dA, const float *dY, const float *W, int T, int K, int N, int c0, int c1) {
  if (c1 <= c0) return;
  if (T < G2_MIN_ROWS || !pf_gemm_slice(&gm256, 0, dA, K, dY, N, T, N, W, NULL, K, c0, c1, 1))
    nn_avx2(dA, dY, W, T, K, N, c0, c1);
}

static void nt_w256(float *out, const float *A, const pf_wt *W, int T, int c0, int c1, int exact) {
  const float *wf = pf_wt_f32(W);
  int K = W->cols, N = W->rows;
  if (wf) { nt256(out, A, wf, T, K, N, c0, c1); return; }
  if (c1 <= c0) return;
  if (!exact && T < G2_MIN_ROWS && nt_int8_256(out, A, W, T, c0, c1)) return;
  if (T >= SM2_MIN && T < G2_MIN_ROWS) {
    size_t cap, at_n = (size_t)((T + 7) / 8) * K * 8;
    float *at = pf_scratch_get(at_n + (size_t)8 * K, &cap);
    if (at) { nt_small256(out, N, A, K, T, K, NULL, K, c0, c1, at, W, at + at_n); pf_scratch_put(at, cap); return; }
  }
  if (T >= G2_MIN_ROWS && pf_gemm_slice(&gm256, 1, out, N, A, K, T, K, NULL, W, K, c0, c1, 0)) return;
  nt_dec256(out, A, W, T, c0, c1, exact);
}

static void nn_w256(float *dA, const float *dY, const pf_wt *W, int T, int c0, int c1) {
  const float *wf = pf_wt_f32(W);
  int K = W->cols, N = W->rows;
  if (wf) { nn_acc256(dA, dY, wf, T, K, N, c0, c1); return; }
  if (c1 <= c0) return;
  if (!pf_gemm_slice(&gm256, 0, dA, K, dY, N, T, N, NULL, W, K, c0, c1, 1)) pf_isa_portable.nn_w(dA, dY, W, T, c0, c1);
}

static int gemm_parallel256(int nn, float *out, const float *a, const float *w, const pf_wt *qw, int T, int n_in,
                            int n_out, int nslice, int exact) {
  if (T < G2_MIN_ROWS) return 0;
  if (qw && !nn && !exact && gemm_int8_256(out, a, qw, T, nslice)) return 1;
  return pf_gemm_run(&gm256, nn, out, a, w, qw, T, n_in, n_out, nslice);
}

static void attend256(float *out, const float *q, const float *K, const float *V, int n, int ld, int hd, float scale,
                      float *att) {
  for (int i = 0; i < n; i++) att[i] = dot256(q, K + (size_t)i * ld, hd) * scale;
  pf_softmax_with(vexp_sum256, att, n);
  memset(out, 0, sizeof(float) * (size_t)hd);
  for (int i = 0; i < n; i++) axpy256(out, att[i], V + (size_t)i * ld, hd);
}

static void transpose256(float *dst, const float *src, int rows, int cols) {
  for (int i = 0; i < rows; i++)
    for (int c = 0; c < cols; c++) dst[(size_t)c * rows + i] = src[(size_t)i * cols + c];
}

static int usable256(void) {
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return 0;
#ifdef PF_AVXVNNI
  unsigned a, b, c, d;   /* AVX-VNNI: CPUID leaf 7, sub-leaf 1, EAX bit 4 (compilers' feature names differ) */
  return __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a >> 4 & 1);
#else
  return 1;
#endif
}

#ifdef PF_AVXVNNI
const pf_isa pf_isa_avxvnni = {
  .kind = PF_KERNEL_AVXVNNI, .name = "avxvnni",
#else
const pf_isa pf_isa_avx2 = {
  .kind = PF_KERNEL_AVX2, .name = "avx2",
#endif
  .usable = usable256, .dec_rows = DEC2_MAX,
  .nt = nt256, .nn_acc = nn_acc256, .nt_w = nt_w256, .nn_w = nn_w256, .nt_dec = nt_dec256,
  .gemm_parallel = gemm_parallel256, .nt_int8 = nt_int8_256, .gemm_int8 = gemm_int8_256, .deq = g_deq256,
  .vexp_sum = vexp_sum256, .silu_mul = silu_mul256, .silu_mul_bwd = silu_mul_bwd256, .gelu = gelu256,
  .gelu_bwd = gelu_bwd256, .dot = dot256, .axpy = axpy256, .attend = attend256, .transpose = transpose256,
};

#endif /* PF_X86 */
