/*
** kernels.c — f32 matrix kernels with AVX-512 and AVX2 FMA, chosen at run
** time from what the CPU has and timed against OpenBLAS once
** (PREFIX_KERNEL=naive|blas|avx2|avx512 forces one). Two products:
**
**   NT  out (T, N) = A (T, K) · W (N, K)^T      forward projections, logits
**   NN  dA (T, K) += dY (T, N) · W (N, K)        backward to the input
**
** AVX-512, by the number of rows T:
**   T > 48     packed GEMM: A packed once into 14-row tiles, W into 32-column
**              panels, a 14 × 32 register tile (pf_gemm_parallel runs it on
**              the pool with A packed by all threads together)
**   10..48     NT decode batches: A transposed, W read in place, one FMA per
**              weight serving 16 sequences
**   < 10       4 × 4 tiles of dot products (NT), 6 × 32 outer products (NN)
** Weights of other types than F32 (pf_kernel_nt_w, pf_kernel_nn_w) use the
** same kernels on panels unpacked as needed, and kernels_q.c in decode.
** AVX2: the packed GEMM with a 6 × 16 tile from 24 rows, else the tiles.
** Also here: the vector e^x of softmax, SwiGLU and
** GELU, register transposes, and the scratch buffers the kernels reuse.
**
** Callers split the output columns into slices, one per task (ops.c).
** The naive loops in ops.c are the reference; tests check every kernel
** against them on odd shapes.
*/
#include "internal.h"
#include "simd.h"

#include <cblas.h>
#include <immintrin.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------- AVX-512 */

#define T512 __attribute__((target("avx512f,fma")))
#define T256 __attribute__((target("avx2,fma")))

/* products with at least this many rows use the packed GEMM below */
#ifndef PF_GEMM_MIN_ROWS
#define PF_GEMM_MIN_ROWS 16
#endif

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
** the classic blocking: K in blocks of GM_KC; a block of A is packed so each
** micro-tile's rows sit side by side ([k][14]); B is packed 32 columns at a
** time ([k][32], 32 KB, stays in L1) and every row tile of A runs over it.
** The micro-kernel keeps a 14 × 32 tile of C in 28 registers: per k, two
** loads of B, 14 broadcasts of A, 28 FMAs. */

#ifndef GM_MR
#define GM_MR 14
#define GM_NV 2
#define GM_KC 256
#endif
#define GM_NR (16 * GM_NV)
#define GM_SMALL_M 64
#define SM_MIN 10    /* 10..48 rows: the decode-batch kernel below */
#define SM_MAX 48
#define G2_MIN_ROWS 24   /* AVX2: the packed GEMM from this many rows (16-sequence decode is faster on the tiles) */
#define GM_MC 1008   /* rows of A packed at once (72 tiles, 1 MB, in L2) */

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

/* Scratch buffers (packing, attention blocks) are kept for the next use
** instead of freed: a fresh megabyte from malloc is fresh pages from the
** kernel, and clearing them cost ~3% of a training step. A small
** mutex-guarded stack, emptied at unload. */
#define GM_KEEP 16
static pthread_mutex_t g_scr_mu = PTHREAD_MUTEX_INITIALIZER;
static float *g_scr[GM_KEEP];
static size_t g_scr_cap[GM_KEEP];
static int g_nscr;

float *pf_scratch_get(size_t n, size_t *cap) {
  float *p = NULL;
  pthread_mutex_lock(&g_scr_mu);
  for (int i = g_nscr - 1; i >= 0; i--)
    if (g_scr_cap[i] >= n) {
      p = g_scr[i], *cap = g_scr_cap[i];
      g_scr[i] = g_scr[g_nscr - 1], g_scr_cap[i] = g_scr_cap[g_nscr - 1];
      g_nscr--;
      break;
    }
  pthread_mutex_unlock(&g_scr_mu);
  if (p) return p;
  n = (n + 15) / 16 * 16;   /* whole 64-byte lines, as aligned_alloc wants */
  *cap = n;
  return aligned_alloc(64, sizeof(float) * n);
}

void pf_scratch_put(float *p, size_t cap) {
  pthread_mutex_lock(&g_scr_mu);
  if (g_nscr < GM_KEEP) g_scr[g_nscr] = p, g_scr_cap[g_nscr++] = cap, p = NULL;
  else {   /* full: drop the smallest kept one if this one is bigger */
    int s = 0;
    for (int i = 1; i < g_nscr; i++) if (g_scr_cap[i] < g_scr_cap[s]) s = i;
    if (g_scr_cap[s] < cap) { float *old = g_scr[s]; g_scr[s] = p, g_scr_cap[s] = cap; p = old; }
  }
  pthread_mutex_unlock(&g_scr_mu);
  free(p);
}

/* the kept buffers back to the system (those in use stay with their users) */
void pf_scratch_release(void) {
  pthread_mutex_lock(&g_scr_mu);
  for (int i = 0; i < g_nscr; i++) free(g_scr[i]);
  g_nscr = 0;
  pthread_mutex_unlock(&g_scr_mu);
}

__attribute__((destructor)) static void scratch_at_unload(void) { pf_scratch_release(); }
/* fork() with the lock held by another thread would leave it locked forever in the child */
static void scratch_prepare(void) { pthread_mutex_lock(&g_scr_mu); }
static void scratch_release_lock(void) { pthread_mutex_unlock(&g_scr_mu); }
__attribute__((constructor)) static void scratch_init(void) {
  pthread_atfork(scratch_prepare, scratch_release_lock, scratch_release_lock);
}

/* ------------------------------------------- AVX2 pieces of the packed GEMM
** 6 × 16 register tile (12 accumulators, 2 loads of W and 6 broadcasts of A
** per k); the panels are packed with plain loops. */
#define G2_MR 6
#define G2_NR 16

static inline void g2_pack_a(float *ap, const float *A, int lda, int mr, int k0, int kc) {
  for (int i = 0; i < mr; i++)
    for (int k = 0; k < kc; k++) ap[(size_t)k * G2_MR + i] = A[(size_t)i * lda + k0 + k];
}
static void g2_pack_nt(float *bp, const float *W, int ldw, int n0, int nw, int k0, int kc, int pf_rows) {
  (void)pf_rows;
  for (int j = 0; j < G2_NR; j++)
    for (int k = 0; k < kc; k++) bp[(size_t)k * G2_NR + j] = j < nw ? W[(size_t)(n0 + j) * ldw + k0 + k] : 0.0f;
}
static void g2_pack_nn(float *bp, const float *W, int ldw, int n0, int nw, int k0, int kc) {
  for (int k = 0; k < kc; k++)
    for (int j = 0; j < G2_NR; j++) bp[(size_t)k * G2_NR + j] = j < nw ? W[(size_t)(k0 + k) * ldw + n0 + j] : 0.0f;
}

T256 static inline __attribute__((always_inline)) void g2_tile(int mr, float *c, int ldc, const float *ap,
                                                                const float *bp, int kc, int acc, int nw) {
  __m256 c0[G2_MR], c1[G2_MR];
#pragma GCC unroll 6
  for (int i = 0; i < G2_MR; i++) c0[i] = c1[i] = _mm256_setzero_ps();
  for (int k = 0; k < kc; k++) {
    __m256 b0 = _mm256_load_ps(bp + k * G2_NR), b1 = _mm256_load_ps(bp + k * G2_NR + 8);
#pragma GCC unroll 6
    for (int i = 0; i < G2_MR; i++)
      if (i < mr) {
        __m256 a = _mm256_broadcast_ss(ap + k * G2_MR + i);
        c0[i] = _mm256_fmadd_ps(a, b0, c0[i]);
        c1[i] = _mm256_fmadd_ps(a, b1, c1[i]);
      }
  }
#pragma GCC unroll 6
  for (int i = 0; i < G2_MR; i++)   /* unrolled, so the accumulators stay in registers */
    if (i < mr) {
      float *ci = c + (size_t)i * ldc;
      if (nw == G2_NR) {
        if (acc) c0[i] = _mm256_add_ps(c0[i], _mm256_loadu_ps(ci)), c1[i] = _mm256_add_ps(c1[i], _mm256_loadu_ps(ci + 8));
        _mm256_storeu_ps(ci, c0[i]);
        _mm256_storeu_ps(ci + 8, c1[i]);
      } else {
        float tmp[G2_NR];
        _mm256_storeu_ps(tmp, c0[i]);
        _mm256_storeu_ps(tmp + 8, c1[i]);
        for (int j = 0; j < nw; j++) ci[j] = acc ? ci[j] + tmp[j] : tmp[j];
      }
    }
}
T256 static void g2_tile_n(int mr, float *c, int ldc, const float *ap, const float *bp, int kc, int acc, int nw) {
  switch (mr) {
#define G2_CASE(n) case n: g2_tile(n, c, ldc, ap, bp, kc, acc, nw); break;
    G2_CASE(1) G2_CASE(2) G2_CASE(3) G2_CASE(4) G2_CASE(5) G2_CASE(6)
#undef G2_CASE
    default: break;
  }
}

/* ------------------------------------------- the packed GEMM, either ISA
** One product's blocking. A is packed whole, once (by all threads together
** when the product runs on the pool): row block b (<= GM_MC rows, tiles of
** even height <= MR) starts at b * tiles_max * MR * Kd; in it the K block at
** p0 holds its tiles at ntile * MR * p0, tile t at + t * MR * kc. The ISA's
** pieces come through a table (calls per panel and tile, not per FMA). */
typedef struct gm_isa {
  int MR, NR;
  void (*pack_a)(float *ap, const float *A, int lda, int mr, int k0, int kc);
  void (*pack_nt)(float *bp, const float *W, int ldw, int n0, int nw, int k0, int kc, int pf_rows);
  void (*pack_nn)(float *bp, const float *W, int ldw, int n0, int nw, int k0, int kc);
  void (*tile)(int mr, float *c, int ldc, const float *ap, const float *bp, int kc, int acc, int nw);
} gm_isa;

static const gm_isa gm_avx512 = {GM_MR, GM_NR, gm_pack_a, gm_pack_nt, gm_pack_nn, gm_tile_n};
static const gm_isa gm_avx2 = {G2_MR, G2_NR, g2_pack_a, g2_pack_nt, g2_pack_nn, g2_tile_n};

typedef struct gm_plan {
  const gm_isa *isa;
  int nt, acc, M, Kd, KC, nblk, mc_max, tiles_max, lda, ldw, ldc;
  float *C, *ap;
  const float *A, *W;
  const pf_wt *qw;   /* W of another type than F32 (W is then NULL): panels are unpacked from its blocks */
} gm_plan;

static void gm_plan_init(gm_plan *p, const gm_isa *isa, int nt, float *C, int ldc, const float *A, int lda, int M,
                         int Kd, const float *W, const pf_wt *qw, int ldw, int acc) {
  p->isa = isa, p->nt = nt, p->acc = acc, p->M = M, p->Kd = Kd, p->lda = lda, p->ldw = ldw, p->ldc = ldc;
  p->C = C, p->A = A, p->W = W, p->qw = qw, p->ap = NULL;
  p->nblk = (M + GM_MC - 1) / GM_MC;
  p->mc_max = (M + p->nblk - 1) / p->nblk;
  p->tiles_max = (p->mc_max + isa->MR - 1) / isa->MR;
  /* few rows: K unblocked, so each row of W is read start to end; a quantized W is unpacked KC at a time */
  p->KC = M <= GM_SMALL_M && !qw ? Kd : GM_KC;
}

/* floats of one B panel buffer: the panel, and for a quantized W the rows it is unpacked into first */
static size_t gm_bp_floats(const gm_plan *p) {
  return (size_t)p->KC * p->isa->NR * (p->qw ? 2 : 1) + (p->qw ? 64 : 0);
}

/* B panel of a quantized W: NT unpacks nw rows' K block into the buffer after the panel, then packs them as
** f32 rows; NN unpacks each of the kc rows' panel columns straight into the panel. */
static void gm_pack_q(const gm_plan *p, float *bp, int n0, int nw, int p0, int kc, int pf_rows) {
  int NR = p->isa->NR;
  float *tmp = bp + (size_t)p->KC * NR;
  int half = p->qw->type == GGML_F16 || p->qw->type == GGML_BF16;
  if (p->nt && half && p->isa == &gm_avx512)
    gm_pack_nt_half(bp, (const uint16_t *)p->qw->data, p->qw->cols, p->qw->type == GGML_BF16, n0, nw, p0, kc, pf_rows);
  else if (p->nt) {
    for (int r = 0; r < nw; r++) pf_wt_deq(p->qw, n0 + r, p0, p0 + kc, tmp + (size_t)r * kc);
    p->isa->pack_nt(bp, tmp, kc, 0, nw, 0, kc, 0);
  } else
    for (int k = 0; k < kc; k++) pf_wt_deq_cols(p->qw, p0 + k, n0, nw, NR, bp + (size_t)k * NR, tmp);
}

static size_t gm_ap_floats(const gm_plan *p) {
  return ((size_t)p->nblk * p->tiles_max * p->isa->MR * p->Kd + 15) / 16 * 16;
}

/* rows of row block b: first row, count, tiles and their heights (base, +1 for the first extra) */
static void gm_block(const gm_plan *p, int b, int *m0, int *mc, int *ntile, int *base, int *extra) {
  *m0 = b * p->mc_max;
  *mc = p->M - *m0 < p->mc_max ? p->M - *m0 : p->mc_max;
  *ntile = (*mc + p->isa->MR - 1) / p->isa->MR;
  *base = *mc / *ntile, *extra = *mc % *ntile;
}

/* pack tile i (row block i / tiles_max) for every K block */
static void gm_pack_tile(const gm_plan *p, int i) {
  int MR = p->isa->MR, b = i / p->tiles_max, t = i % p->tiles_max, m0, mc, ntile, base, extra;
  gm_block(p, b, &m0, &mc, &ntile, &base, &extra);
  if (t >= ntile) return;
  int r = m0 + t * base + (t < extra ? t : extra), mr = base + (t < extra);
  float *blk = p->ap + (size_t)b * p->tiles_max * MR * p->Kd;
  for (int p0 = 0; p0 < p->Kd; p0 += p->KC) {
    int kc = p->Kd - p0 < p->KC ? p->Kd - p0 : p->KC;
    p->isa->pack_a(blk + (size_t)ntile * MR * p0 + (size_t)t * MR * kc, p->A + (size_t)r * p->lda, p->lda, mr, p0, kc);
  }
}

/* columns [c0, c1) of C from the packed A; bp holds one B panel (KC × NR) */
static void gm_compute(const gm_plan *p, float *bp, int c0, int c1) {
  const gm_isa *isa = p->isa;
  int MR = isa->MR, NR = isa->NR;
  for (int b = 0; b < p->nblk; b++) {
    int m0, mc, ntile, base, extra;
    gm_block(p, b, &m0, &mc, &ntile, &base, &extra);
    const float *blk = p->ap + (size_t)b * p->tiles_max * MR * p->Kd;
    for (int p0 = 0; p0 < p->Kd; p0 += p->KC) {
      int kc = p->Kd - p0 < p->KC ? p->Kd - p0 : p->KC;
      const float *ak = blk + (size_t)ntile * MR * p0;
      for (int n0 = c0; n0 < c1; n0 += NR) {
        int nw = c1 - n0 < NR ? c1 - n0 : NR;
        if (p->qw) gm_pack_q(p, bp, n0, nw, p0, kc, c1 - n0 - NR < NR ? c1 - n0 - NR : NR);
        else if (p->nt) isa->pack_nt(bp, p->W, p->ldw, n0, nw, p0, kc, c1 - n0 - NR < NR ? c1 - n0 - NR : NR);
        else isa->pack_nn(bp, p->W, p->ldw, n0, nw, p0, kc);
        for (int t = 0, r = m0; t < ntile; t++) {
          int mr = base + (t < extra);
          isa->tile(mr, p->C + (size_t)r * p->ldc + n0, p->ldc, ak + (size_t)t * MR * kc, bp, kc, p->acc || p0 > 0, nw);
          r += mr;
        }
      }
    }
  }
}

/* One slice on the calling thread. Returns 0 when its buffers cannot be had
** (the caller then uses the tile kernels). */
static int gemm_slice(const gm_isa *isa, int nt, float *C, int ldc, const float *A, int lda, int M, int Kd,
                      const float *W, const pf_wt *qw, int ldw, int c0, int c1, int acc) {
  gm_plan p;
  gm_plan_init(&p, isa, nt, C, ldc, A, lda, M, Kd, W, qw, ldw, acc);
  size_t cap, a_len = gm_ap_floats(&p);
  p.ap = pf_scratch_get(a_len + gm_bp_floats(&p), &cap);
  if (!p.ap) return 0;
  for (int i = 0; i < p.nblk * p.tiles_max; i++) gm_pack_tile(&p, i);
  gm_compute(&p, p.ap + a_len, c0, c1);
  pf_scratch_put(p.ap, cap);
  return 1;
}

/* The whole product on the pool: the threads pack A's tiles together, then
** each computes a slice of columns (multiples of NR) with its own B panel. */
typedef struct gm_job { gm_plan p; int kind, ncol, nslice; } gm_job;

static void gm_pack_task(void *arg, int i) { gm_pack_tile(&((gm_job *)arg)->p, i); }

static void gm_slice_task(void *arg, int i) {
  const gm_job *j = arg;
  int NR = j->p.isa->NR, per = ((j->ncol + j->nslice - 1) / j->nslice + NR - 1) / NR * NR;
  int c0 = i * per, c1 = c0 + per < j->ncol ? c0 + per : j->ncol;
  if (c1 <= c0) return;
  size_t cap;
  float *bp = pf_scratch_get(gm_bp_floats(&j->p), &cap);
  if (bp) { gm_compute(&j->p, bp, c0, c1); pf_scratch_put(bp, cap); return; }
  const gm_plan *p = &j->p;   /* no panel buffer: kernels that need none */
  if (p->qw && p->nt) pf_kernel_nt_dec(j->kind, p->C, p->A, p->qw, p->M, c0, c1, 1);
  else if (p->qw) pf_kernel_nn_panels(p->C, p->A, p->qw, p->M, c0, c1);
  else if (p->nt) pf_kernel_nt(j->kind, p->C, p->A, p->W, p->M, p->Kd, p->ldc, c0, c1);
  else pf_kernel_nn_acc(j->kind, p->C, p->A, p->W, p->M, p->ldc, p->Kd, c0, c1);
}

/* the packed GEMM's ISA for a kernel kind and row count, or NULL */
static const gm_isa *gm_isa_for(int kind, int T) {
  if (kind == PF_KERNEL_AVX512) return T > SM_MAX ? &gm_avx512 : NULL;
  if (kind == PF_KERNEL_AVX2) return T >= G2_MIN_ROWS ? &gm_avx2 : NULL;
  return NULL;
}

int pf_gemm_parallel(int kind, int nn, float *out, const float *a, const float *w, const pf_wt *qw, int T, int n_in,
                     int n_out, int nslice, int exact) {
  if (qw && !nn && !exact && T > SM_MAX && pf_gemm_int8(out, a, qw, T, nslice)) return 1;
  const gm_isa *isa = gm_isa_for(kind, T);
  if (!isa) return 0;
  gm_job j;
  if (nn) gm_plan_init(&j.p, isa, 0, out, n_in, a, n_out, T, n_out, w, qw, n_in, 1);   /* dA += dY · W */
  else gm_plan_init(&j.p, isa, 1, out, n_out, a, n_in, T, n_in, w, qw, n_in, 0);        /* out = X · Wᵀ */
  j.kind = kind;
  j.ncol = nn ? n_in : n_out;
  j.nslice = nslice;
  size_t cap;
  j.p.ap = pf_scratch_get(gm_ap_floats(&j.p), &cap);
  if (!j.p.ap) return 0;
  pf_parallel_for(j.p.nblk * j.p.tiles_max, gm_pack_task, &j);
  pf_parallel_for(nslice, gm_slice_task, &j);
  pf_scratch_put(j.p.ap, cap);
  return 1;
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

void pf_transpose(float *dst, const float *src, int rows, int cols) {
  if (pf_get_kernel() == PF_KERNEL_AVX512) { transpose512(dst, src, rows, cols); return; }
  for (int i = 0; i < rows; i++)
    for (int c = 0; c < cols; c++) dst[(size_t)c * rows + i] = src[(size_t)i * cols + c];
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
      for (int r = 0; r < nr; r++) pf_wt_deq(qw, n + r, 0, K, wtmp + (size_t)r * K);
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


/* ---------------------------------------------------------------- AVX2 */


T256 static inline float hsum256(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
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

/* AVX2 decode batches (SM2_MIN..G2_MIN_ROWS rows, 8 sequences per group), as nt_small512: A transposed
** once (at[g][k][8]), W read in place (or its 8 rows unpacked into wtmp), each weight broadcast into
** one FMA for 8 sequences, the 8 × 8 results transposed back. */
#define SM2_MIN 6
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
      for (int r = 0; r < nr; r++) pf_wt_deq(qw, n + r, 0, K, wtmp + (size_t)r * K);
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

/* ------------------------------------------------------------ dispatch */

void pf_kernel_nt(int kind, float *out, const float *A, const float *W, int T, int K, int N, int c0, int c1) {
  if (c1 <= c0) return;
  switch (kind) {
    case PF_KERNEL_AVX512:
      if (T <= 2) {   /* decode: each row of W streamed once (one stream is what the prefetchers follow best) */
        pf_wt w = {(const uint8_t *)W, GGML_F32, N, K, sizeof(float) * (size_t)K};
        pf_kernel_nt_dec(kind, out, A, &w, T, c0, c1, 1);
        return;
      }
      if (T >= SM_MIN && T <= SM_MAX) {
        size_t cap;
        float *at = pf_scratch_get((size_t)((T + 15) / 16) * K * 16, &cap);
        if (at) { nt_small512(out, N, A, K, T, K, W, K, c0, c1, at, NULL, NULL); pf_scratch_put(at, cap); return; }
      }
      if (T < PF_GEMM_MIN_ROWS || !gemm_slice(&gm_avx512, 1, out, N, A, K, T, K, W, NULL, K, c0, c1, 0)) nt_avx512(out, A, W, T, K, N, c0, c1);
      return;
    case PF_KERNEL_AVX2:
      if (T <= 2) {   /* decode: rows of W streamed one at a time, as for AVX-512 */
        pf_wt w = {(const uint8_t *)W, GGML_F32, N, K, sizeof(float) * (size_t)K};
        pf_kernel_nt_dec(kind, out, A, &w, T, c0, c1, 1);
        return;
      }
      if (T >= SM2_MIN && T < G2_MIN_ROWS) {
        size_t cap;
        float *at = pf_scratch_get((size_t)((T + 7) / 8) * K * 8, &cap);
        if (at) { nt_small256(out, N, A, K, T, K, W, K, c0, c1, at, NULL, NULL); pf_scratch_put(at, cap); return; }
      }
      if (T < G2_MIN_ROWS || !gemm_slice(&gm_avx2, 1, out, N, A, K, T, K, W, NULL, K, c0, c1, 0)) nt_avx2(out, A, W, T, K, N, c0, c1);
      return;
    default:
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, c1 - c0, K, 1.0f, A, K, W + (size_t)c0 * K, K, 0.0f,
                  out + c0, N);
  }
}

void pf_kernel_nn_acc(int kind, float *dA, const float *dY, const float *W, int T, int K, int N, int c0, int c1) {
  if (c1 <= c0) return;
  switch (kind) {
    case PF_KERNEL_AVX512:
      if (T < PF_GEMM_MIN_ROWS || !gemm_slice(&gm_avx512, 0, dA, K, dY, N, T, N, W, NULL, K, c0, c1, 1)) nn_avx512(dA, dY, W, T, K, N, c0, c1);
      return;
    case PF_KERNEL_AVX2:
      if (T < G2_MIN_ROWS || !gemm_slice(&gm_avx2, 0, dA, K, dY, N, T, N, W, NULL, K, c0, c1, 1)) nn_avx2(dA, dY, W, T, K, N, c0, c1);
      return;
    default:
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, c1 - c0, N, 1.0f, dY, N, W + c0, K, 1.0f, dA + c0, K);
  }
}

/* The same products for a weight of any type (an F32 one goes to the kernels above). A quantized or
** half-precision W is read as stored: decode (few rows) through the fused kernels of kernels_q.c, decode
** batches and long products through the kernels above on rows or panels unpacked as they are needed. */
void pf_kernel_nt_w(int kind, float *out, const float *A, const pf_wt *W, int T, int c0, int c1, int exact) {
  const float *wf = pf_wt_f32(W);
  int K = W->cols, N = W->rows;
  if (wf) { pf_kernel_nt(kind, out, A, wf, T, K, N, c0, c1); return; }
  if (c1 <= c0) return;
  switch (kind) {
    case PF_KERNEL_AVX512:
      /* decode and decode batches of the common block types in integers, where the CPU has VNNI */
      if (!exact && T <= SM_MAX && pf_kernel_nt_int8(kind, out, A, W, T, c0, c1)) return;
      if (T >= SM_MIN && T <= SM_MAX) {
        size_t cap, at_n = (size_t)((T + 15) / 16) * K * 16;
        float *at = pf_scratch_get(at_n + (size_t)16 * K, &cap);
        if (at) { nt_small512(out, N, A, K, T, K, NULL, K, c0, c1, at, W, at + at_n); pf_scratch_put(at, cap); return; }
      }
      if (T > SM_MAX && gemm_slice(&gm_avx512, 1, out, N, A, K, T, K, NULL, W, K, c0, c1, 0)) return;
      break;
    case PF_KERNEL_AVX2:
      if (T >= SM2_MIN && T < G2_MIN_ROWS) {
        size_t cap, at_n = (size_t)((T + 7) / 8) * K * 8;
        float *at = pf_scratch_get(at_n + (size_t)8 * K, &cap);
        if (at) { nt_small256(out, N, A, K, T, K, NULL, K, c0, c1, at, W, at + at_n); pf_scratch_put(at, cap); return; }
      }
      if (T >= G2_MIN_ROWS && gemm_slice(&gm_avx2, 1, out, N, A, K, T, K, NULL, W, K, c0, c1, 0)) return;
      break;
    default: pf_kernel_nt_panels(out, A, W, T, c0, c1); return;
  }
  pf_kernel_nt_dec(kind, out, A, W, T, c0, c1, exact);
}

void pf_kernel_nn_w(int kind, float *dA, const float *dY, const pf_wt *W, int T, int c0, int c1) {
  const float *wf = pf_wt_f32(W);
  int K = W->cols, N = W->rows;
  if (wf) { pf_kernel_nn_acc(kind, dA, dY, wf, T, K, N, c0, c1); return; }
  if (c1 <= c0) return;
  const gm_isa *isa = kind == PF_KERNEL_AVX512 ? &gm_avx512 : kind == PF_KERNEL_AVX2 ? &gm_avx2 : NULL;
  if (isa && gemm_slice(isa, 0, dA, K, dY, N, T, N, NULL, W, K, c0, c1, 1)) return;
  pf_kernel_nn_panels(dA, dY, W, T, c0, c1);
}

static atomic_int g_kernel = -1;

static int cpu_has(int kind) {
  __builtin_cpu_init();
  if (kind == PF_KERNEL_AVX512) return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma");
  if (kind == PF_KERNEL_AVX2) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return 1;
}

int pf_build_info(char *buf, size_t n) {
  __builtin_cpu_init();
  /* the names both gcc and clang 14 know */
  static const char *feat[] = {"sse4.2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512vnni"};
  int have[8] = {__builtin_cpu_supports("sse4.2"), __builtin_cpu_supports("avx"), __builtin_cpu_supports("avx2"),
                 __builtin_cpu_supports("fma"), __builtin_cpu_supports("avx512f"), __builtin_cpu_supports("avx512bw"),
                 __builtin_cpu_supports("avx512vl"), __builtin_cpu_supports("avx512vnni")};
  int len = snprintf(buf, n, "CPU features: ");
  for (int i = 0; i < 8; i++)
    if (have[i]) len += snprintf(buf + (len < (int)n ? len : (int)n), len < (int)n ? n - (size_t)len : 0, "%s ", feat[i]);
  const char *cfg = openblas_get_config(), *core = openblas_get_corename();
  len += snprintf(buf + (len < (int)n ? len : (int)n), len < (int)n ? n - (size_t)len : 0,
                  "\nKernel: %s (engine kernels available: %s%s)\nBLAS: %s, core %s\nThreads: %d\n",
                  pf_kernel_name(pf_get_kernel()), cpu_has(PF_KERNEL_AVX512) ? "avx512 " : "",
                  cpu_has(PF_KERNEL_AVX2) ? "avx2" : "none", cfg ? cfg : "?", core ? core : "?", pf_get_threads());
  return len;
}

const char *pf_kernel_name(int kind) {
  static const char *n[] = {"auto", "naive", "blas", "avx2", "avx512"};
  return kind >= 0 && kind <= PF_KERNEL_AVX512 ? n[kind] : "?";
}

/* "Used where it is faster": the engine's best kernel for this CPU is timed
** against OpenBLAS once per process, single-threaded, on a product the size
** of a small model's projection (96 × 384 · 384ᵀ, best of 5, the kinds
** taking turns). OpenBLAS is chosen only when it is clearly (1.5×) faster,
** so a noisy machine does not flip the choice; e.g. a current OpenBLAS with
** tuned kernels on a CPU without AVX-512; a Debian OpenBLAS that does not
** know the CPU runs generic kernels and loses. PREFIX_KERNEL skips this. */
static double g_gflops[PF_KERNEL_AVX512 + 1];
static pthread_once_t g_measure_once = PTHREAD_ONCE_INIT;

static void measure_kernels(void) {
  enum { MT = 96, MK = 384, MN = 384, ROUNDS = 5 };
  pf_get_threads();   /* OpenBLAS single-threaded, as in use */
  float *a = malloc(sizeof(float) * MT * MK), *w = malloc(sizeof(float) * MN * MK), *o = malloc(sizeof(float) * MT * MN);
  double best[PF_KERNEL_AVX512 + 1];
  for (int k = 0; k <= PF_KERNEL_AVX512; k++) best[k] = 1e30;
  if (a && w && o) {
    for (int i = 0; i < MT * MK; i++) a[i] = (float)(i % 13) * 0.01f;
    for (int i = 0; i < MN * MK; i++) w[i] = (float)(i % 7) * 0.01f;
    /* the kinds take turns, so a busy machine slows them alike; the first round warms up */
    for (int r = 0; r <= ROUNDS; r++)
      for (int kind = PF_KERNEL_BLAS; kind <= PF_KERNEL_AVX512; kind++) {
        if (!cpu_has(kind)) continue;
        double t0 = pf_clock();
        pf_kernel_nt(kind, o, a, w, MT, MK, MN, 0, MN);
        double dt = pf_clock() - t0;
        if (r > 0 && dt < best[kind]) best[kind] = dt;
      }
    for (int kind = PF_KERNEL_BLAS; kind <= PF_KERNEL_AVX512; kind++)
      if (cpu_has(kind)) g_gflops[kind] = 2.0 * MT * MK * MN / (best[kind] > 1e-9 ? best[kind] : 1e-9) / 1e9;
  }
  free(a); free(w); free(o);
}

double pf_kernel_gflops(int kind) {
  pthread_once(&g_measure_once, measure_kernels);
  return kind >= 0 && kind <= PF_KERNEL_AVX512 ? g_gflops[kind] : 0;
}

int pf_set_kernel(int kind) {
  if (kind == PF_KERNEL_AUTO) {
    const char *env = getenv("PREFIX_KERNEL");
    kind = cpu_has(PF_KERNEL_AVX512) ? PF_KERNEL_AVX512 : cpu_has(PF_KERNEL_AVX2) ? PF_KERNEL_AVX2 : PF_KERNEL_BLAS;
    int forced = 0;
    for (int k = PF_KERNEL_NAIVE; env && k <= PF_KERNEL_AVX512; k++)
      if (!strcmp(env, pf_kernel_name(k)) && cpu_has(k)) kind = k, forced = 1;
    if (!forced && kind != PF_KERNEL_BLAS && pf_kernel_gflops(PF_KERNEL_BLAS) > 1.5 * pf_kernel_gflops(kind))
      kind = PF_KERNEL_BLAS;
  }
  if (!cpu_has(kind)) kind = cpu_has(PF_KERNEL_AVX2) ? PF_KERNEL_AVX2 : PF_KERNEL_BLAS;
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
  for (int k = PF_KERNEL_BLAS; k <= PF_KERNEL_AVX512; k++) {
    if (!cpu_has(k)) continue;
    len += snprintf(buf + (len < (int)n ? len : (int)n), len < (int)n ? n - (size_t)len : 0, "%s\"%s\":%.1f", sep,
                    pf_kernel_name(k), pf_kernel_gflops(k));
    sep = ",";
  }
  len += snprintf(buf + (len < (int)n ? len : (int)n), len < (int)n ? n - (size_t)len : 0, "}}");
  return len;
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

double pf_vexp_sum(float *dst, const float *x, float sub, int n) {
  if (pf_get_kernel() == PF_KERNEL_AVX512) return vexp_sum512(dst, x, sub, n);
  if (pf_get_kernel() == PF_KERNEL_AVX2) return vexp_sum256(dst, x, sub, n);
  double sum = 0;
  for (int i = 0; i < n; i++) {
    float e = expf(x[i] - sub);
    if (dst) dst[i] = e;
    sum += e;
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
int pf_silu_mul_fast(float *h, const float *g, const float *u, size_t n) {
  switch (pf_get_kernel()) {
    case PF_KERNEL_AVX512: silu_mul512(h, g, u, n); return 1;
    case PF_KERNEL_AVX2: silu_mul256(h, g, u, n); return 1;
    default: return 0;
  }
}
int pf_silu_mul_bwd_fast(float *dg, float *du, const float *dh, const float *g, const float *u, size_t n) {
  switch (pf_get_kernel()) {
    case PF_KERNEL_AVX512: silu_mul_bwd512(dg, du, dh, g, u, n); return 1;
    case PF_KERNEL_AVX2: silu_mul_bwd256(dg, du, dh, g, u, n); return 1;
    default: return 0;
  }
}


/* GELU (tanh form) forward and backward; tanh(u) = 1 - 2 / (1 + e^(2u)) */
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
int pf_gelu_fast(float *out, const float *inp, size_t n) {
  switch (pf_get_kernel()) {
    case PF_KERNEL_AVX512: gelu512(out, inp, n); return 1;
    case PF_KERNEL_AVX2: gelu256(out, inp, n); return 1;
    default: return 0;
  }
}
int pf_gelu_bwd_fast(float *dinp, const float *inp, const float *dout, size_t n) {
  switch (pf_get_kernel()) {
    case PF_KERNEL_AVX512: gelu_bwd512(dinp, inp, dout, n); return 1;
    case PF_KERNEL_AVX2: gelu_bwd256(dinp, inp, dout, n); return 1;
    default: return 0;
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
static float dot_plain(const float *a, const float *b, int n) {
  float s = 0;
  for (int i = 0; i < n; i++) s += a[i] * b[i];
  return s;
}
static void axpy_plain(float *y, float a, const float *x, int n) {
  for (int i = 0; i < n; i++) y[i] += a * x[i];
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
  pf_softmax(att, n);
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

void pf_attend(float *out, const float *q, const float *K, const float *V, int n, int ld, int hd, float scale,
               float *att) {
  if (pf_get_kernel() == PF_KERNEL_AVX512 && hd % 16 == 0 && hd <= 128) {
    attend512(out, q, K, V, n, ld, hd, scale, att);
    return;
  }
  for (int i = 0; i < n; i++) att[i] = pf_vdot(q, K + (size_t)i * ld, hd) * scale;
  pf_softmax(att, n);
  memset(out, 0, sizeof(float) * (size_t)hd);
  for (int i = 0; i < n; i++) pf_vaxpy(out, att[i], V + (size_t)i * ld, hd);
}

float pf_vdot(const float *a, const float *b, int n) {
  switch (pf_get_kernel()) {
    case PF_KERNEL_AVX512: return dot512(a, b, n);
    case PF_KERNEL_AVX2: return dot256(a, b, n);
    default: return dot_plain(a, b, n);
  }
}
void pf_vaxpy(float *y, float a, const float *x, int n) {
  switch (pf_get_kernel()) {
    case PF_KERNEL_AVX512: axpy512(y, a, x, n); return;
    case PF_KERNEL_AVX2: axpy256(y, a, x, n); return;
    default: axpy_plain(y, a, x, n);
  }
}
