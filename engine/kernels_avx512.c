/*
** kernels_avx512.c — the AVX-512 kernel table (kernels.h): CPUs with AVX-512 F (server cores since
** Skylake-SP, AMD Zen 4 and later); the integer products where the CPU also has VNNI (checked at run time).
**
** f32 products X·Wᵀ by the number of rows T:
**   T > 48     packed GEMM (kernels_common.c) on a 14 × 32 register tile: per k, two loads of the W panel,
**              14 broadcasts of A, 28 FMAs
**   10..48     decode batches: A transposed, W read in place, one FMA per weight serving 16 sequences
**   <= 2       decode rows: each row of W streamed once, prefetched ahead
**   else       4 × 4 tiles of dot products (NT), 6 × 32 outer products (NN)
** Weights of other types are read as stored: decode rows unpack each 32-element chunk into registers (one
** instance per type, so the unpacking is inlined), or, with VNNI, multiply in integers as llama.cpp does
** (activations rounded to int8 per 32); longer products unpack panels as the GEMM needs them, or run an
** int8 GEMM. Also: e^x for softmax, SwiGLU and GELU, attention rows, transposes.
**
** The naive loops in ops.c are the reference; tests check every kernel against them on odd shapes.
*/
#include "kernels.h"

#if PF_X86
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#define T512 __attribute__((target("avx512f,fma")))
#define T512Q __attribute__((target("avx512f,avx2,fma,f16c")))
#define T512H __attribute__((target("avx512f,avx512bw,avx512vl,fma,f16c")))
#define TVNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))

#define SM_MIN 10   /* 10..48 rows: the decode-batch kernel */
#define SM_MAX 48
#define DEC_MAX 8   /* rows of A a decode row kernel takes at once */
#define DEC_AHEAD PF_DEC_AHEAD

static const pf_deq_fn g_deq512[GGML_TYPE_COUNT];
static void nt_w512(float *out, const float *A, const pf_wt *W, int T, int c0, int c1, int exact);

static const pf_deq_fn g_deq512[GGML_TYPE_COUNT];
static void nt_w512(float *out, const float *A, const pf_wt *W, int T, int c0, int c1, int exact);

/* r[i][j] -> r[j][i] for a 16 × 16 block: 32-bit and 64-bit interleaves, then
** two rounds of 128-bit lane shuffles. */
T512 static inline __attribute__((always_inline)) void pf_transpose16(__m512 r[16]) {
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

/* ------------------------------------------------------------- f32 tiles */


/* one output element block: rows a[0..mr) × rows w[0..nr), mr, nr <= 4 */
T512 static void nt_tile512(float *c, int ldc, const float *a, int lda, const float *w, int ldw, int K, int mr, int nr,
                            int pf) {
  __m512 acc[4][4];
  for (int i = 0; i < 4; i++)
    for (int j = 0; j < 4; j++) acc[i][j] = _mm512_setzero_ps();
  int k = 0;
  if (mr == 4 && nr == 4) {
    for (; k + 16 <= K; k += 16) {
      if (pf) for (int j = 0; j < 4; j++) _mm_prefetch((const char *)(w + (4 + j) * ldw + k), _MM_HINT_T0);
      __m512 a0 = _mm512_loadu_ps(a + k), a1 = _mm512_loadu_ps(a + lda + k), a2 = _mm512_loadu_ps(a + 2 * lda + k),
             a3 = _mm512_loadu_ps(a + 3 * lda + k);
      __m512 w0 = _mm512_loadu_ps(w + k), w1 = _mm512_loadu_ps(w + ldw + k), w2 = _mm512_loadu_ps(w + 2 * ldw + k),
             w3 = _mm512_loadu_ps(w + 3 * ldw + k);
      acc[0][0] = _mm512_fmadd_ps(a0, w0, acc[0][0]); acc[0][1] = _mm512_fmadd_ps(a0, w1, acc[0][1]);
      acc[0][2] = _mm512_fmadd_ps(a0, w2, acc[0][2]); acc[0][3] = _mm512_fmadd_ps(a0, w3, acc[0][3]);
      acc[1][0] = _mm512_fmadd_ps(a1, w0, acc[1][0]); acc[1][1] = _mm512_fmadd_ps(a1, w1, acc[1][1]);
      acc[1][2] = _mm512_fmadd_ps(a1, w2, acc[1][2]); acc[1][3] = _mm512_fmadd_ps(a1, w3, acc[1][3]);
      acc[2][0] = _mm512_fmadd_ps(a2, w0, acc[2][0]); acc[2][1] = _mm512_fmadd_ps(a2, w1, acc[2][1]);
      acc[2][2] = _mm512_fmadd_ps(a2, w2, acc[2][2]); acc[2][3] = _mm512_fmadd_ps(a2, w3, acc[2][3]);
      acc[3][0] = _mm512_fmadd_ps(a3, w0, acc[3][0]); acc[3][1] = _mm512_fmadd_ps(a3, w1, acc[3][1]);
      acc[3][2] = _mm512_fmadd_ps(a3, w2, acc[3][2]); acc[3][3] = _mm512_fmadd_ps(a3, w3, acc[3][3]);
    }
  } else if (mr == 1) {   /* a single row (decode): 4 rows of W at a time, the next 4 prefetched */
    for (; k + 16 <= K; k += 16) {
      for (int j = 0; j < 4; j++) _mm_prefetch((const char *)(w + (4 + j) * ldw + k), _MM_HINT_T0);
      __m512 a0 = _mm512_loadu_ps(a + k);
      for (int j = 0; j < nr; j++) acc[0][j] = _mm512_fmadd_ps(a0, _mm512_loadu_ps(w + j * ldw + k), acc[0][j]);
    }
  } else {
    for (; k + 16 <= K; k += 16)
      for (int i = 0; i < mr; i++) {
        __m512 ai = _mm512_loadu_ps(a + i * lda + k);
        for (int j = 0; j < nr; j++) acc[i][j] = _mm512_fmadd_ps(ai, _mm512_loadu_ps(w + j * ldw + k), acc[i][j]);
      }
  }
  if (k < K) {   /* the last K % 16 with masked loads */
    __mmask16 m = (__mmask16)((1u << (K - k)) - 1);
    for (int i = 0; i < mr; i++) {
      __m512 ai = _mm512_maskz_loadu_ps(m, a + i * lda + k);
      for (int j = 0; j < nr; j++) acc[i][j] = _mm512_fmadd_ps(ai, _mm512_maskz_loadu_ps(m, w + j * ldw + k), acc[i][j]);
    }
  }
  for (int i = 0; i < mr; i++)
    for (int j = 0; j < nr; j++) c[i * ldc + j] = _mm512_reduce_add_ps(acc[i][j]);
}

T512 static void nt_avx512(float *out, const float *A, const float *W, int T, int K, int N, int c0, int c1) {
  /* rows of A in blocks that stay in L2 while 4 rows of W sit in L1 */
  int tb = K > 0 ? (int)(((size_t)256 * 1024) / ((size_t)K * 4)) : T;
  if (tb < 4) tb = 4;
  for (int t0 = 0; t0 < T; t0 += tb) {
    int t1 = t0 + tb < T ? t0 + tb : T;
    for (int n = c0; n < c1; n += 4) {
      int nr = c1 - n < 4 ? c1 - n : 4;
      for (int t = t0; t < t1; t += 4) {
        int mr = t1 - t < 4 ? t1 - t : 4;
        /* decode batches (a few rows): the last row tile prefetches the next rows of W, so memory
        ** traffic overlaps the FMAs; for long blocks (prefill, training) it only costs */
        int pf = t1 - t0 <= 16 && t + 4 >= t1 && n + 8 <= c1;
        nt_tile512(out + (size_t)t * N + n, N, A + (size_t)t * K, K, W + (size_t)n * K, K, K, mr, nr, pf);
      }
    }
  }
}

/* dA[t0:t0+mr, k0:k0+32] += dY[rows, :] · W[:, k0:k0+32] (masked to kw columns) */
T512 static void nn_tile512(float *c, int ldc, const float *dy, int ldy, const float *w, int ldw, int N, int mr, int kw) {
  __m512 acc[6][2];
  for (int i = 0; i < 6; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
  __mmask16 m0 = kw >= 16 ? 0xFFFF : (__mmask16)((1u << kw) - 1);
  __mmask16 m1 = kw >= 32 ? 0xFFFF : kw <= 16 ? 0 : (__mmask16)((1u << (kw - 16)) - 1);
  if (mr == 6 && kw == 32) {
    for (int n = 0; n < N; n++) {
      __m512 w0 = _mm512_loadu_ps(w + (size_t)n * ldw), w1 = _mm512_loadu_ps(w + (size_t)n * ldw + 16);
      __m512 b;
      b = _mm512_set1_ps(dy[n]); acc[0][0] = _mm512_fmadd_ps(b, w0, acc[0][0]); acc[0][1] = _mm512_fmadd_ps(b, w1, acc[0][1]);
      b = _mm512_set1_ps(dy[ldy + n]); acc[1][0] = _mm512_fmadd_ps(b, w0, acc[1][0]); acc[1][1] = _mm512_fmadd_ps(b, w1, acc[1][1]);
      b = _mm512_set1_ps(dy[2 * ldy + n]); acc[2][0] = _mm512_fmadd_ps(b, w0, acc[2][0]); acc[2][1] = _mm512_fmadd_ps(b, w1, acc[2][1]);
      b = _mm512_set1_ps(dy[3 * ldy + n]); acc[3][0] = _mm512_fmadd_ps(b, w0, acc[3][0]); acc[3][1] = _mm512_fmadd_ps(b, w1, acc[3][1]);
      b = _mm512_set1_ps(dy[4 * ldy + n]); acc[4][0] = _mm512_fmadd_ps(b, w0, acc[4][0]); acc[4][1] = _mm512_fmadd_ps(b, w1, acc[4][1]);
      b = _mm512_set1_ps(dy[5 * ldy + n]); acc[5][0] = _mm512_fmadd_ps(b, w0, acc[5][0]); acc[5][1] = _mm512_fmadd_ps(b, w1, acc[5][1]);
    }
  } else {
    for (int n = 0; n < N; n++) {
      __m512 w0 = _mm512_maskz_loadu_ps(m0, w + (size_t)n * ldw), w1 = _mm512_maskz_loadu_ps(m1, w + (size_t)n * ldw + 16);
      for (int i = 0; i < mr; i++) {
        __m512 b = _mm512_set1_ps(dy[(size_t)i * ldy + n]);
        acc[i][0] = _mm512_fmadd_ps(b, w0, acc[i][0]);
        acc[i][1] = _mm512_fmadd_ps(b, w1, acc[i][1]);
      }
    }
  }
  for (int i = 0; i < mr; i++) {
    float *ci = c + (size_t)i * ldc;
    _mm512_mask_storeu_ps(ci, m0, _mm512_add_ps(_mm512_maskz_loadu_ps(m0, ci), acc[i][0]));
    if (m1) _mm512_mask_storeu_ps(ci + 16, m1, _mm512_add_ps(_mm512_maskz_loadu_ps(m1, ci + 16), acc[i][1]));
  }
}

/* N is cut into blocks of 256 so a tile's rows of dY and the W panel stay in L1. */
T512 static void nn_avx512(float *dA, const float *dY, const float *W, int T, int K, int N, int c0, int c1) {
  for (int n0 = 0; n0 < N; n0 += 256) {
    int nb = N - n0 < 256 ? N - n0 : 256;
    for (int k = c0; k < c1; k += 32) {
      int kw = c1 - k < 32 ? c1 - k : 32;
      for (int t = 0; t < T; t += 6) {
        int mr = T - t < 6 ? T - t : 6;
        nn_tile512(dA + (size_t)t * K + k, K, dY + (size_t)t * N + n0, N, W + (size_t)n0 * K + k, K, nb, mr, kw);
      }
    }
  }
}

/* ------------------------------------------------ AVX-512 packed GEMM
** For products with many rows (prefill, training, batches of 16 or more):
**   C[M, c0:c1] (+)= A (M, Kd) · B,   B = W^T (NT: W is (N, Kd)) or B = W (NN: W is (Kd, N))
** the classic blocking: K in blocks of PF_GM_KC; a block of A is packed so each
** micro-tile's rows sit side by side ([k][14]); B is packed 32 columns at a
** time ([k][32], 32 KB, stays in L1) and every row tile of A runs over it.
** The micro-kernel keeps a 14 × 32 tile of C in 28 registers: per k, two
** loads of B, 14 broadcasts of A, 28 FMAs. */

#define GM_MR 14
#define GM_NV 2
#define GM_NR (16 * GM_NV)

/* the mask of vector v's columns among the panel's first nw */
static inline __mmask16 gm_mask(int nw, int v) {
  int c = nw - 16 * v;
  return c >= 16 ? 0xFFFF : c <= 0 ? 0 : (__mmask16)((1u << c) - 1);
}

T512 static inline __attribute__((always_inline)) void gm_tile(int mr, float *c, int ldc, const float *ap,
                                                                const float *bp, int kc, int acc, int nw) {
  __m512 cv[GM_MR][GM_NV];
#pragma GCC unroll 16
  for (int i = 0; i < GM_MR; i++)
#pragma GCC unroll 4
    for (int v = 0; v < GM_NV; v++) cv[i][v] = _mm512_setzero_ps();
  for (int k = 0; k < kc; k++) {
    __m512 b[GM_NV];
#pragma GCC unroll 4
    for (int v = 0; v < GM_NV; v++) b[v] = _mm512_load_ps(bp + k * GM_NR + 16 * v);
#pragma GCC unroll 16
    for (int i = 0; i < GM_MR; i++)
      if (i < mr) {
        __m512 a = _mm512_set1_ps(ap[k * GM_MR + i]);
#pragma GCC unroll 4
        for (int v = 0; v < GM_NV; v++) cv[i][v] = _mm512_fmadd_ps(a, b[v], cv[i][v]);
      }
  }
#pragma GCC unroll 16
  for (int i = 0; i < GM_MR; i++)
    if (i < mr) {
      float *ci = c + (size_t)i * ldc;
#pragma GCC unroll 4
      for (int v = 0; v < GM_NV; v++) {
        __mmask16 m = gm_mask(nw, v);
        if (acc) cv[i][v] = _mm512_add_ps(cv[i][v], _mm512_maskz_loadu_ps(m, ci + 16 * v));
        _mm512_mask_storeu_ps(ci + 16 * v, m, cv[i][v]);
      }
    }
}

/* one instance per row count, so each is fully unrolled */
T512 static void gm_tile_n(int mr, float *c, int ldc, const float *ap, const float *bp, int kc, int acc, int nw) {
  switch (mr) {
#define GM_CASE(n) case n: gm_tile(n, c, ldc, ap, bp, kc, acc, nw); break;
    GM_CASE(1) GM_CASE(2) GM_CASE(3) GM_CASE(4) GM_CASE(5) GM_CASE(6) GM_CASE(7)
#if GM_MR > 7
    GM_CASE(8)
#endif
#if GM_MR > 8
    GM_CASE(9) GM_CASE(10) GM_CASE(11) GM_CASE(12) GM_CASE(13) GM_CASE(14)
#endif
#undef GM_CASE
    default: break;
  }
}

/* B panel for NT: bp[k][j] = W[n0 + j][k0 + k], zero past nw columns, in
** 16 × 16 transposes. The same columns of the next panel's rows (pf_rows of
** them) are prefetched, so reading W from memory overlaps the work: many
** short row streams are more than the hardware prefetcher follows. */
T512 static void gm_pack_nt(float *bp, const float *W, int ldw, int n0, int nw, int k0, int kc, int pf_rows) {
  for (int h = 0; h < GM_NR / 16; h++) {
    int rows = nw - 16 * h;
    rows = rows < 0 ? 0 : rows > 16 ? 16 : rows;
    const float *w = W + (size_t)(n0 + 16 * h) * ldw + k0;
    for (int k = 0; k < kc; k += 16) {
      int kk = kc - k < 16 ? kc - k : 16;
      __mmask16 km = kk == 16 ? 0xFFFF : (__mmask16)((1u << kk) - 1);
      __m512 r[16];
      for (int i = 0; i < 16 && 16 * h + i < pf_rows; i++)
        _mm_prefetch((const char *)(w + (size_t)(GM_NR + i) * ldw + k), _MM_HINT_T0);
      for (int i = 0; i < 16; i++) r[i] = i < rows ? _mm512_maskz_loadu_ps(km, w + (size_t)i * ldw + k) : _mm512_setzero_ps();
      pf_transpose16(r);
      for (int j = 0; j < kk; j++) _mm512_store_ps(bp + (size_t)(k + j) * GM_NR + 16 * h, r[j]);
    }
  }
}

/* The same panel from an F16 or BF16 W (row stride in elements): each 16 half floats widened as they are
** loaded, so half precision packs as fast as f32 (no f32 rows in between). */
#define T512H __attribute__((target("avx512f,avx512bw,avx512vl,fma,f16c")))
T512H static void gm_pack_nt_half(float *bp, const uint16_t *W, int ldw, int bf16, int n0, int nw, int k0, int kc,
                                  int pf_rows) {
  for (int h = 0; h < GM_NR / 16; h++) {
    int rows = nw - 16 * h;
    rows = rows < 0 ? 0 : rows > 16 ? 16 : rows;
    const uint16_t *w = W + (size_t)(n0 + 16 * h) * ldw + k0;
    for (int k = 0; k < kc; k += 16) {
      int kk = kc - k < 16 ? kc - k : 16;
      __mmask16 km = kk == 16 ? 0xFFFF : (__mmask16)((1u << kk) - 1);
      __m512 r[16];
      if ((k & 31) == 0)   /* the next panel's rows, as gm_pack_nt */
        for (int i = 0; i < 16 && 16 * h + i < pf_rows; i++)
          _mm_prefetch((const char *)(w + (size_t)(GM_NR + i) * ldw + k), _MM_HINT_T0);
      for (int i = 0; i < 16; i++) {
        __m256i x = i < rows ? _mm256_maskz_loadu_epi16(km, w + (size_t)i * ldw + k) : _mm256_setzero_si256();
        r[i] = bf16 ? _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(x), 16)) : _mm512_cvtph_ps(x);
      }
      pf_transpose16(r);
      for (int j = 0; j < kk; j++) _mm512_store_ps(bp + (size_t)(k + j) * GM_NR + 16 * h, r[j]);
    }
  }
}

/* A tile: ap[k][i] = A[i][k0 + k] for its mr <= 14 rows (stride GM_MR) */
T512 static void gm_pack_a(float *ap, const float *A, int lda, int mr, int k0, int kc) {
  for (int k = 0; k < kc; k += 16) {
    int kk = kc - k < 16 ? kc - k : 16;
    __mmask16 km = kk == 16 ? 0xFFFF : (__mmask16)((1u << kk) - 1);
    __m512 r[16];
    for (int i = 0; i < 16; i++) r[i] = i < mr ? _mm512_maskz_loadu_ps(km, A + (size_t)i * lda + k0 + k) : _mm512_setzero_ps();
    pf_transpose16(r);
    for (int j = 0; j < kk; j++) _mm512_mask_storeu_ps(ap + (size_t)(k + j) * GM_MR, (1u << GM_MR) - 1, r[j]);
  }
}

/* B panel for NN: bp[k][j] = W[k0 + k][n0 + j], zero past nw columns */
T512 static void gm_pack_nn(float *bp, const float *W, int ldw, int n0, int nw, int k0, int kc) {
  for (int k = 0; k < kc; k++) {
    const float *w = W + (size_t)(k0 + k) * ldw + n0;
    for (int v = 0; v < GM_NV; v++) _mm512_store_ps(bp + k * GM_NR + 16 * v, _mm512_maskz_loadu_ps(gm_mask(nw, v), w + 16 * v));
  }
}

/* dst (cols, rows) = src (rows, cols)ᵀ: 16 × 16 blocks in registers, edges plain */
T512 static void transpose512(float *dst, const float *src, int rows, int cols) {
  int r16 = rows & ~15, c16 = cols & ~15;
  for (int i = 0; i < r16; i += 16)
    for (int c = 0; c < c16; c += 16) {
      __m512 r[16];
      for (int u = 0; u < 16; u++) r[u] = _mm512_loadu_ps(src + (size_t)(i + u) * cols + c);
      pf_transpose16(r);
      for (int u = 0; u < 16; u++) _mm512_storeu_ps(dst + (size_t)(c + u) * rows + i, r[u]);
    }
  for (int i = 0; i < rows; i++)
    for (int c = i < r16 ? c16 : 0; c < cols; c++) dst[(size_t)c * rows + i] = src[(size_t)i * cols + c];
}

/* ------------------------------------------ AVX-512 decode batches (NT)
** A batch of up to 16 rows (16 sequences decoding together) against a
** weight matrix: each output column is one vector of 16 lanes, one per row.
** A is transposed once (at[k][16]); W is read in place, 16 rows at a time,
** each element broadcast into one FMA: no packing of W, whose reading is
** the cost here (it streams from memory once per step). The 16 × 16 block of
** results is transposed back in registers. Batches of 17..48 rows run in
** groups of 16 over the same W block, which is then in cache. */

T512 static void nt_small512(float *out, int ldc, const float *A, int lda, int M, int K, const float *W, int ldw, int c0,
                             int c1, float *at, const pf_wt *qw, float *wtmp) {
  int ng = (M + 15) / 16, K8 = K & ~7;
  for (int g = 0; g < ng; g++)   /* at[g][k][16] = A[16 g + lane][k], zero past M */
    for (int k = 0; k < K; k += 16) {
      int kk = K - k < 16 ? K - k : 16, rows = M - 16 * g < 16 ? M - 16 * g : 16;
      __mmask16 km = kk == 16 ? 0xFFFF : (__mmask16)((1u << kk) - 1);
      __m512 r[16];
      for (int i = 0; i < 16; i++)
        r[i] = i < rows ? _mm512_maskz_loadu_ps(km, A + (size_t)(16 * g + i) * lda + k) : _mm512_setzero_ps();
      pf_transpose16(r);
      for (int j = 0; j < kk; j++) _mm512_store_ps(at + ((size_t)g * K + k + j) * 16, r[j]);
    }
  for (int n = c0; n < c1; n += 16) {
    int nr = c1 - n < 16 ? c1 - n : 16;
    const float *w = W ? W + (size_t)n * ldw : wtmp;
    if (qw) {   /* a quantized W: its 16 rows unpacked into wtmp, read from there */
      for (int r = 0; r < nr; r++) pf_wt_deq_with(g_deq512, qw, n + r, 0, K, wtmp + (size_t)r * K);
      ldw = K;
    }
    for (int g = 0; g < ng; g++) {
      const float *ag = at + (size_t)g * K * 16;
      __m512 acc[16];
      for (int i = 0; i < 16; i++) acc[i] = _mm512_setzero_ps();
      int k = 0;
      if (nr == 16)
        for (; k < K8; k += 8) {   /* 8 values of A in registers, then 8 FMAs per row of W */
          __m512 a[8];
          for (int u = 0; u < 8; u++) a[u] = _mm512_load_ps(ag + (size_t)(k + u) * 16);
          const float *p = w + k;
          if (!qw && g == 0 && (k & 15) == 0 && n + 32 <= c1)   /* the next block's rows, same columns */
            for (int i = 0; i < 16; i++) _mm_prefetch((const char *)(p + (size_t)(16 + i) * ldw), _MM_HINT_T0);
#pragma GCC unroll 16
          for (int i = 0; i < 16; i++, p += ldw) {
            __m512 s = acc[i];
#pragma GCC unroll 8
            for (int u = 0; u < 8; u++) s = _mm512_fmadd_ps(a[u], _mm512_set1_ps(p[u]), s);
            acc[i] = s;
          }
        }
      for (; k < K; k++) {
        __m512 a = _mm512_load_ps(ag + (size_t)k * 16);
        for (int i = 0; i < nr; i++) acc[i] = _mm512_fmadd_ps(a, _mm512_set1_ps(w[(size_t)i * ldw + k]), acc[i]);
      }
      pf_transpose16(acc);
      __mmask16 nm = nr == 16 ? 0xFFFF : (__mmask16)((1u << nr) - 1);
      for (int t = 0; t < 16 && 16 * g + t < M; t++) _mm512_mask_storeu_ps(out + (size_t)(16 * g + t) * ldc + n, nm, acc[t]);
    }
  }
}

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

static const pf_deq_fn g_deq512[GGML_TYPE_COUNT] = {
  [GGML_Q4_0] = deq_q4_0, [GGML_Q4_1] = deq_q4_1, [GGML_Q5_0] = deq_q5_0, [GGML_Q5_1] = deq_q5_1,
  [GGML_Q8_0] = deq_q8_0, [GGML_Q2_K] = deq_q2_k, [GGML_Q3_K] = deq_q3_k, [GGML_Q4_K] = deq_q4_k,
  [GGML_Q5_K] = deq_q5_k, [GGML_Q6_K] = deq_q6_k, [GGML_IQ4_NL] = deq_iq4_nl, [GGML_IQ4_XS] = deq_iq4_xs,
  [GGML_F16] = deq_f16, [GGML_BF16] = deq_bf16, [GGML_F32] = deq_f32,
};
static const pf_dec_fn g_dec512[GGML_TYPE_COUNT] = {
  [GGML_Q4_0] = dec_q4_0, [GGML_Q4_1] = dec_q4_1, [GGML_Q5_0] = dec_q5_0, [GGML_Q5_1] = dec_q5_1,
  [GGML_Q8_0] = dec_q8_0, [GGML_Q2_K] = dec_q2_k, [GGML_Q3_K] = dec_q3_k, [GGML_Q4_K] = dec_q4_k,
  [GGML_Q5_K] = dec_q5_k, [GGML_Q6_K] = dec_q6_k, [GGML_IQ4_NL] = dec_iq4_nl, [GGML_IQ4_XS] = dec_iq4_xs,
  [GGML_F16] = dec_f16, [GGML_BF16] = dec_bf16, [GGML_F32] = dec_f32,
};

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


typedef pf_qact qact;

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
static int nt_int8_512(float *out, const float *A, const pf_wt *W, int T, int c0, int c1) {
  if (!pf_int8 || !g_idec[W->type].fn || W->cols % 32 || !has_vnni()) return 0;
  qact a = {T, W->cols, W->cols / 32, NULL, NULL, NULL, NULL, NULL};
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
    nt_w512(j->out, j->A, W, j->M, c0, c1, 1);
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

static int gemm_int8_512(float *out, const float *A, const pf_wt *W, int M, int nslice) {
  if (!pf_int8 || !g_igemm[W->type].unpack || W->cols % 64 || !has_vnni()) return 0;
  int K = W->cols, G = g_igemm[W->type].G, ng = K / G;
  qact a = {M, K, K / 32, NULL, NULL, NULL, NULL, NULL};
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

/* ------------------------------------------------ exp for softmax and SiLU
** e^x = 2^n · e^r with n = round(x / ln 2) and |r| <= ln 2 / 2 (ln 2 split in
** two for an exact n·ln 2), e^r by its degree-6 Taylor polynomial (error
** below 2e-7 relative, as expf), 2^n by scalef. x is clamped to where e^x is
** a normal float (softmax and SiLU need no infinities); NaN stays NaN, so a
** diverging model is still caught. */
T512 static inline __m512 exp512(__m512 x) {
  /* min/max return their second operand when either is NaN: x second, so NaN stays NaN */
  x = _mm512_max_ps(_mm512_set1_ps(-87.3365447505531f), _mm512_min_ps(_mm512_set1_ps(88.3762626647949f), x));
  __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.0f / 720);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

/* dst[i] = e^(x[i] - sub) (dst may be NULL, or x); returns the sum, in double */
T512 static double vexp_sum512(float *dst, const float *x, float sub, int n) {
  double sum = 0;
  __m512 vs = _mm512_set1_ps(sub);
  for (int i0 = 0; i0 < n; i0 += 1024) {   /* float lanes for 1024 terms, then double */
    int i1 = i0 + 1024 < n ? i0 + 1024 : n;
    __m512 acc = _mm512_setzero_ps();
    for (int i = i0; i < i1; i += 16) {
      __mmask16 m = i1 - i >= 16 ? 0xFFFF : (__mmask16)((1u << (i1 - i)) - 1);
      __m512 e = exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), vs));
      e = _mm512_maskz_mov_ps(m, e);
      if (dst) _mm512_mask_storeu_ps(dst + i, m, e);
      acc = _mm512_add_ps(acc, e);
    }
    sum += _mm512_reduce_add_ps(acc);
  }
  return sum;
}

/* SwiGLU, h = silu(g)·u, and its backward, over [0, n) */
T512 static void silu_mul512(float *h, const float *g, const float *u, size_t n) {
  for (size_t i = 0; i < n; i += 16) {
    __mmask16 m = n - i >= 16 ? 0xFFFF : (__mmask16)((1u << (n - i)) - 1);
    __m512 vg = _mm512_maskz_loadu_ps(m, g + i);
    __m512 sg = _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_add_ps(_mm512_set1_ps(1.0f), exp512(_mm512_sub_ps(_mm512_setzero_ps(), vg))));
    _mm512_mask_storeu_ps(h + i, m, _mm512_mul_ps(_mm512_mul_ps(vg, sg), _mm512_maskz_loadu_ps(m, u + i)));
  }
}
T512 static void silu_mul_bwd512(float *dg, float *du, const float *dh, const float *g, const float *u, size_t n) {
  __m512 one = _mm512_set1_ps(1.0f);
  for (size_t i = 0; i < n; i += 16) {
    __mmask16 m = n - i >= 16 ? 0xFFFF : (__mmask16)((1u << (n - i)) - 1);
    __m512 vg = _mm512_maskz_loadu_ps(m, g + i), vu = _mm512_maskz_loadu_ps(m, u + i), vd = _mm512_maskz_loadu_ps(m, dh + i);
    __m512 sg = _mm512_div_ps(one, _mm512_add_ps(one, exp512(_mm512_sub_ps(_mm512_setzero_ps(), vg))));
    __m512 silu = _mm512_mul_ps(vg, sg);
    __m512 dsilu = _mm512_fmadd_ps(silu, _mm512_sub_ps(one, sg), sg);   /* sg + silu (1 - sg) */
    _mm512_mask_storeu_ps(dg + i, m, _mm512_fmadd_ps(_mm512_mul_ps(vd, vu), dsilu, _mm512_maskz_loadu_ps(m, dg + i)));
    _mm512_mask_storeu_ps(du + i, m, _mm512_fmadd_ps(vd, silu, _mm512_maskz_loadu_ps(m, du + i)));
  }
}

#define GELU_K 0.7978845608028654f   /* sqrt(2/pi) */
T512 static inline __m512 tanh512(__m512 u) {
  __m512 one = _mm512_set1_ps(1.0f);
  return _mm512_sub_ps(one, _mm512_div_ps(_mm512_set1_ps(2.0f), _mm512_add_ps(one, exp512(_mm512_add_ps(u, u)))));
}
T512 static void gelu512(float *out, const float *inp, size_t n) {
  for (size_t i = 0; i < n; i += 16) {
    __mmask16 m = n - i >= 16 ? 0xFFFF : (__mmask16)((1u << (n - i)) - 1);
    __m512 x = _mm512_maskz_loadu_ps(m, inp + i), x3 = _mm512_mul_ps(_mm512_mul_ps(x, x), x);
    __m512 t = tanh512(_mm512_mul_ps(_mm512_set1_ps(GELU_K), _mm512_fmadd_ps(_mm512_set1_ps(0.044715f), x3, x)));
    _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), x), _mm512_add_ps(_mm512_set1_ps(1.0f), t)));
  }
}
T512 static void gelu_bwd512(float *dinp, const float *inp, const float *dout, size_t n) {
  __m512 one = _mm512_set1_ps(1.0f), half = _mm512_set1_ps(0.5f), k = _mm512_set1_ps(GELU_K);
  for (size_t i = 0; i < n; i += 16) {
    __mmask16 m = n - i >= 16 ? 0xFFFF : (__mmask16)((1u << (n - i)) - 1);
    __m512 x = _mm512_maskz_loadu_ps(m, inp + i), x2 = _mm512_mul_ps(x, x);
    __m512 t = tanh512(_mm512_mul_ps(k, _mm512_fmadd_ps(_mm512_mul_ps(_mm512_set1_ps(0.044715f), x2), x, x)));
    /* 0.5 (1 + t) + 0.5 x (1 - t²) k (1 + 3·0.044715 x²) */
    __m512 d = _mm512_mul_ps(half, _mm512_add_ps(one, t));
    __m512 sech2 = _mm512_fnmadd_ps(t, t, one);
    __m512 du = _mm512_mul_ps(k, _mm512_fmadd_ps(_mm512_set1_ps(3.0f * 0.044715f), x2, one));
    d = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_mul_ps(half, x), sech2), du, d);
    _mm512_mask_storeu_ps(dinp + i, m, _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, dout + i), d, _mm512_maskz_loadu_ps(m, dinp + i)));
  }
}

/* ------------------------------------------ vector helpers for attention */

T512 static float dot512(const float *a, const float *b, int n) {
  __m512 acc = _mm512_setzero_ps();
  int i = 0;
  for (; i + 16 <= n; i += 16) acc = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc);
  if (i < n) {
    __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
    acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), acc);
  }
  return _mm512_reduce_add_ps(acc);
}
T512 static void axpy512(float *y, float a, const float *x, int n) {
  __m512 va = _mm512_set1_ps(a);
  int i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, _mm512_fmadd_ps(va, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
  if (i < n) {
    __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(y + i, m, _mm512_fmadd_ps(va, _mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i)));
  }
}

/* One query row of attention over n cached rows (K, V rows at stride ld):
** out = softmax(q·Kᵀ·scale)·V, the probabilities left in att. AVX-512 for
** head sizes of 16..128 in steps of 16: q and the output stay in registers,
** two keys per step; other sizes and kernels through pf_vdot / pf_vaxpy. */
T512 static void attend512(float *out, const float *q, const float *K, const float *V, int n, int ld, int hd,
                           float scale, float *att) {
  int nv = hd / 16;
  __m512 qv[8], ov[8];
#pragma GCC unroll 8
  for (int j = 0; j < 8; j++) qv[j] = j < nv ? _mm512_loadu_ps(q + 16 * j) : _mm512_setzero_ps(), ov[j] = _mm512_setzero_ps();
  int i = 0;
  for (; i + 1 < n; i += 2) {
    const float *k0 = K + (size_t)i * ld, *k1 = k0 + ld;
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++)
      if (j < nv) {
        a0 = _mm512_fmadd_ps(qv[j], _mm512_loadu_ps(k0 + 16 * j), a0);
        a1 = _mm512_fmadd_ps(qv[j], _mm512_loadu_ps(k1 + 16 * j), a1);
      }
    att[i] = _mm512_reduce_add_ps(a0) * scale;
    att[i + 1] = _mm512_reduce_add_ps(a1) * scale;
  }
  for (; i < n; i++) {
    const float *k0 = K + (size_t)i * ld;
    __m512 a0 = _mm512_setzero_ps();
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++)
      if (j < nv) a0 = _mm512_fmadd_ps(qv[j], _mm512_loadu_ps(k0 + 16 * j), a0);
    att[i] = _mm512_reduce_add_ps(a0) * scale;
  }
  pf_softmax_with(vexp_sum512, att, n);
  for (i = 0; i < n; i++) {
    __m512 a = _mm512_set1_ps(att[i]);
    const float *v = V + (size_t)i * ld;
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++)
      if (j < nv) ov[j] = _mm512_fmadd_ps(a, _mm512_loadu_ps(v + 16 * j), ov[j]);
  }
#pragma GCC unroll 8
  for (int j = 0; j < 8; j++)
    if (j < nv) _mm512_storeu_ps(out + 16 * j, ov[j]);
}

/* ------------------------------------------------------------- the table */

static void nt_dec512(float *out, const float *A, const pf_wt *W, int T, int c0, int c1, int exact) {
  if (!exact && nt_int8_512(out, A, W, T, c0, c1)) return;
  pf_nt_dec_run(g_dec512, DEC_MAX, dot512, out, A, W, T, c0, c1);
}

static const pf_gemm_isa gm512 = {GM_MR, GM_NR, gm_pack_a, gm_pack_nt, gm_pack_nn, gm_tile_n, gm_pack_nt_half,
                                  g_deq512, nt_avx512, nn_avx512, nt_dec512};

static void nt512(float *out, const float *A, const float *W, int T, int K, int N, int c0, int c1) {
  if (c1 <= c0) return;
  if (T <= 2) {   /* decode: each row of W streamed once (one stream is what the prefetchers follow best) */
    pf_wt w = {(const uint8_t *)W, GGML_F32, N, K, sizeof(float) * (size_t)K};
    nt_dec512(out, A, &w, T, c0, c1, 1);
    return;
  }
  if (T >= SM_MIN && T <= SM_MAX) {
    size_t cap;
    float *at = pf_scratch_get((size_t)((T + 15) / 16) * K * 16, &cap);
    if (at) { nt_small512(out, N, A, K, T, K, W, K, c0, c1, at, NULL, NULL); pf_scratch_put(at, cap); return; }
  }
  if (T < PF_GEMM_MIN_ROWS || !pf_gemm_slice(&gm512, 1, out, N, A, K, T, K, W, NULL, K, c0, c1, 0))
    nt_avx512(out, A, W, T, K, N, c0, c1);
}

static void nn_acc512(float *dA, const float *dY, const float *W, int T, int K, int N, int c0, int c1) {
  if (c1 <= c0) return;
  if (T < PF_GEMM_MIN_ROWS || !pf_gemm_slice(&gm512, 0, dA, K, dY, N, T, N, W, NULL, K, c0, c1, 1))
    nn_avx512(dA, dY, W, T, K, N, c0, c1);
}

/* A quantized or half-precision W is read as stored: decode and decode batches of the common block types
** in integers where the CPU has VNNI; decode batches otherwise on rows unpacked as needed; long products
** through the packed GEMM on panels unpacked as it packs them. */
static void nt_w512(float *out, const float *A, const pf_wt *W, int T, int c0, int c1, int exact) {
  const float *wf = pf_wt_f32(W);
  int K = W->cols, N = W->rows;
  if (wf) { nt512(out, A, wf, T, K, N, c0, c1); return; }
  if (c1 <= c0) return;
  if (!exact && T <= SM_MAX && nt_int8_512(out, A, W, T, c0, c1)) return;
  if (T >= SM_MIN && T <= SM_MAX) {
    size_t cap, at_n = (size_t)((T + 15) / 16) * K * 16;
    float *at = pf_scratch_get(at_n + (size_t)16 * K, &cap);
    if (at) { nt_small512(out, N, A, K, T, K, NULL, K, c0, c1, at, W, at + at_n); pf_scratch_put(at, cap); return; }
  }
  if (T > SM_MAX && pf_gemm_slice(&gm512, 1, out, N, A, K, T, K, NULL, W, K, c0, c1, 0)) return;
  nt_dec512(out, A, W, T, c0, c1, exact);
}

static void nn_w512(float *dA, const float *dY, const pf_wt *W, int T, int c0, int c1) {
  const float *wf = pf_wt_f32(W);
  int K = W->cols, N = W->rows;
  if (wf) { nn_acc512(dA, dY, wf, T, K, N, c0, c1); return; }
  if (c1 <= c0) return;
  if (!pf_gemm_slice(&gm512, 0, dA, K, dY, N, T, N, NULL, W, K, c0, c1, 1)) pf_isa_portable.nn_w(dA, dY, W, T, c0, c1);
}

static int gemm_parallel512(int nn, float *out, const float *a, const float *w, const pf_wt *qw, int T, int n_in,
                            int n_out, int nslice, int exact) {
  if (T <= SM_MAX) return 0;
  if (qw && !nn && !exact && gemm_int8_512(out, a, qw, T, nslice)) return 1;
  return pf_gemm_run(&gm512, nn, out, a, w, qw, T, n_in, n_out, nslice);
}

/* head sizes 16..128 in steps of 16 here; others through the dot product and axpy */
static void attend512_any(float *out, const float *q, const float *K, const float *V, int n, int ld, int hd,
                          float scale, float *att) {
  if (hd % 16 == 0 && hd <= 128) { attend512(out, q, K, V, n, ld, hd, scale, att); return; }
  for (int i = 0; i < n; i++) att[i] = dot512(q, K + (size_t)i * ld, hd) * scale;
  pf_softmax_with(vexp_sum512, att, n);
  memset(out, 0, sizeof(float) * (size_t)hd);
  for (int i = 0; i < n; i++) axpy512(out, att[i], V + (size_t)i * ld, hd);
}

static int usable512(void) {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("avx2");
}

const pf_isa pf_isa_avx512 = {
  .kind = PF_KERNEL_AVX512, .name = "avx512", .usable = usable512, .dec_rows = DEC_MAX,
  .nt = nt512, .nn_acc = nn_acc512, .nt_w = nt_w512, .nn_w = nn_w512, .nt_dec = nt_dec512,
  .gemm_parallel = gemm_parallel512, .nt_int8 = nt_int8_512, .gemm_int8 = gemm_int8_512, .deq = g_deq512,
  .vexp_sum = vexp_sum512, .silu_mul = silu_mul512, .silu_mul_bwd = silu_mul_bwd512, .gelu = gelu512,
  .gelu_bwd = gelu_bwd512, .dot = dot512, .axpy = axpy512, .attend = attend512_any, .transpose = transpose512,
};

#endif /* PF_X86 */
