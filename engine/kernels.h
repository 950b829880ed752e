/*
** kernels.h — the kernel tables: one per instruction set, each in its own file, chosen once per process
** from the CPU's features (PREFIX_KERNEL forces one); kernels.c dispatches to the table in use.
**
**   kernels_avx512.c    AVX-512 F (and VNNI for the integer products, checked at run time)
**   kernels_avx2.c      AVX2 + FMA + F16C (integer products with vpmaddubsw)
**   kernels_avxvnni.c   the same compiled again with AVX-VNNI (integer products with vpdpbusd on ymm)
**   kernels_neon.c      ARM64 NEON (integer products with SDOT where the CPU has dotprod, else SMULL)
**   kernels_portable.c  plain C11 loops the compiler vectorizes: any CPU, and the fallback of the others
**   kernels_common.c    what they share: scratch buffers, the packed GEMM's blocking around a table's
**                       micro-kernel, rows of any weight type unpacked through a table's chunk decoders
**
** Calls go one way: ops.c -> kernels.c -> a table's file -> kernels_common.c -> quant.c, pool.c. A table's
** functions compute a column slice [c0, c1) of a product on the calling thread (ops.c and the packed GEMM
** split products across the pool), or a whole vector operation.
*/
#ifndef PF_KERNELS_H
#define PF_KERNELS_H
#include "internal.h"

#if defined(__x86_64__) || defined(__i386__)
#define PF_X86 1
#else
#define PF_X86 0
#endif

/* chunks [ch0, ch1) of a row (32 elements each) to dst, f32 */
typedef void (*pf_deq_fn)(const uint8_t *row, int ch0, int ch1, float *dst);
/* out[t * ldc + n] = A[t] · W[n] for n in [c0, c1), t < T (at most the table's dec_rows), nch chunks of 32 */
typedef void (*pf_dec_fn)(float *out, int ldc, const float *A, int lda, int T, const uint8_t *W, size_t rb, int nch,
                          int c0, int c1);

/* The packed GEMM's micro-kernel for one instruction set (kernels_common.c blocks the product around it):
** A packed into tiles of MR rows ([k][MR]), W into panels of NR columns ([k][NR]), tile computes
** C[mr, nw] (+)= Ap · Bp. */
typedef struct pf_gemm_isa {
  int MR, NR;
  void (*pack_a)(float *ap, const float *A, int lda, int mr, int k0, int kc);
  void (*pack_nt)(float *bp, const float *W, int ldw, int n0, int nw, int k0, int kc, int pf_rows);
  void (*pack_nn)(float *bp, const float *W, int ldw, int n0, int nw, int k0, int kc);
  void (*tile)(int mr, float *c, int ldc, const float *ap, const float *bp, int kc, int acc, int nw);
  /* an NT panel straight from F16/BF16 rows (NULL: the rows are unpacked to f32 first) */
  void (*pack_nt_half)(float *bp, const uint16_t *W, int ldw, int bf16, int n0, int nw, int k0, int kc, int pf_rows);
  const pf_deq_fn *deq;   /* chunk decoders by weight type (NULL entries: quant.c's) */
  /* when a panel buffer cannot be had: the table's kernels that need none */
  void (*nt)(float *out, const float *A, const float *W, int T, int K, int N, int c0, int c1);
  void (*nn_acc)(float *dA, const float *dY, const float *W, int T, int K, int N, int c0, int c1);
  void (*nt_dec)(float *out, const float *A, const pf_wt *W, int T, int c0, int c1, int exact);
} pf_gemm_isa;

/* One instruction set's kernels. NULL entries: the caller's plain loops (ops.c) or the portable table. */
typedef struct pf_isa {
  int kind;              /* PF_KERNEL_* */
  const char *name;      /* as prefix_debug() and prefix_system() show it */
  int (*usable)(void);   /* the CPU runs it (and the OS saves its registers) */
  int dec_rows;          /* rows of A a decode kernel takes at once */
  /* out[T, c0:c1] = A (T, K) · W[c0:c1]ᵀ, W (N, K) f32 */
  void (*nt)(float *out, const float *A, const float *W, int T, int K, int N, int c0, int c1);
  /* dA[T, c0:c1] += dY (T, N) · W[:, c0:c1], W (N, K) f32 */
  void (*nn_acc)(float *dA, const float *dY, const float *W, int T, int K, int N, int c0, int c1);
  /* the same for W of any type (exact: f32 products of the dequantized weights only) */
  void (*nt_w)(float *out, const float *A, const pf_wt *W, int T, int c0, int c1, int exact);
  void (*nn_w)(float *dA, const float *dY, const pf_wt *W, int T, int c0, int c1);
  /* decode-sized products reading W's blocks as stored (exact: no integer products) */
  void (*nt_dec)(float *out, const float *A, const pf_wt *W, int T, int c0, int c1, int exact);
  /* the whole product on the pool (A packed once for all threads); 0: not for this shape or memory */
  int (*gemm_parallel)(int nn, float *out, const float *a, const float *w, const pf_wt *qw, int T, int n_in,
                       int n_out, int nslice, int exact);
  /* integer products (activations rounded to int8 per 32): decode rows, and the prefill GEMM on the pool;
  ** 0: this type, CPU or memory do not allow it (nothing was done) */
  int (*nt_int8)(float *out, const float *A, const pf_wt *W, int T, int c0, int c1);
  int (*gemm_int8)(float *out, const float *A, const pf_wt *W, int M, int nslice);
  const pf_deq_fn *deq;  /* chunk decoders by weight type */
  /* vector math */
  double (*vexp_sum)(float *dst, const float *x, float sub, int n);
  void (*silu_mul)(float *h, const float *g, const float *u, size_t n);
  void (*silu_mul_bwd)(float *dg, float *du, const float *dh, const float *g, const float *u, size_t n);
  void (*gelu)(float *out, const float *inp, size_t n);
  void (*gelu_bwd)(float *dinp, const float *inp, const float *dout, size_t n);
  float (*dot)(const float *a, const float *b, int n);
  void (*axpy)(float *y, float a, const float *x, int n);
  void (*attend)(float *out, const float *q, const float *K, const float *V, int n, int ld, int hd, float scale,
                 float *att);
  void (*transpose)(float *dst, const float *src, int rows, int cols);
} pf_isa;

extern const pf_isa pf_isa_portable;
#if PF_X86
extern const pf_isa pf_isa_avx2, pf_isa_avxvnni, pf_isa_avx512;
#endif
#if defined(__aarch64__)
extern const pf_isa pf_isa_neon;
int pf_neon_dotprod(void);   /* the CPU has SDOT (ARMv8.2 dotprod) */
#endif

/* ------------------------------------------------------------ kernels_common.c */

/* the packed GEMM: one column slice on the calling thread (C[M, c0:c1], NT when nt, else NN: C += A · W),
** or the whole product with the pool (pf_gemm_run: A packed by all threads, nslice column slices); W is f32
** (W) or of another type (qw); 0 when the buffers cannot be had (nothing was done) */
int pf_gemm_slice(const pf_gemm_isa *g, int nt, float *C, int ldc, const float *A, int lda, int M, int Kd,
                  const float *W, const pf_wt *qw, int ldw, int c0, int c1, int acc);
int pf_gemm_run(const pf_gemm_isa *g, int nn, float *out, const float *a, const float *w, const pf_wt *qw, int T,
                int n_in, int n_out, int nslice);
/* rows of K quantized per 32 for the integer products: q (T, K) int8, d each chunk's scale (max|a| / 127,
** rounded to nearest even), xs each chunk's d · Σ q, xs16 the same per half chunk (AVX2), off (T, K/4)
** -off · each 4 q's sum (a weight's unsigned offset, folded in: AVX-512) */
typedef struct pf_qact {
  int T, K, nch;
  int8_t *q;
  float *d, *xs, *xs16;
  int32_t *off;
} pf_qact;
/* elements [k0, k1) of row r of W through the chunk decoders deq (quant.c where an entry is NULL) */
void pf_wt_deq_with(const pf_deq_fn *deq, const pf_wt *W, int r, int k0, int k1, float *dst);
/* out[t][c0:c1] = A[t] · W[n] for T rows: decode kernels dec (by type; T at most rows at a time) on the
** whole chunks, then the row's tail; a type without one: unpacked 32 at a time and dotted with dot */
void pf_nt_dec_run(const pf_dec_fn *dec, int rows, float (*dot)(const float *, const float *, int), float *out,
                   const float *A, const pf_wt *W, int T, int c0, int c1);
/* the decoding every table can fall back to: each chunk of W unpacked (quant.c) and dotted with every row */
void pf_nt_dec_chunks(float (*dot)(const float *, const float *, int), float *out, const float *A, const pf_wt *W,
                      int T, int c0, int c1);
/* plain softmax of the attention row (as ops.c's pf_softmax) with a table's e^x */
void pf_softmax_with(double (*vexp_sum)(float *, const float *, float, int), float *x, int n);

/* products with at least this many rows use a table's packed GEMM on a slice (AVX-512) */
#define PF_GEMM_MIN_ROWS 16
/* rows of A packed at once (72 tiles of 14, 1 MB, in L2), K block, and the row count under which K is not
** blocked (each row of W read start to end) */
#define PF_GM_MC 1008
#define PF_GM_KC 256
#define PF_GM_SMALL_M 64
/* decode streams W from memory: hardware prefetchers stop at 4 KB pages, so each row also prefetches its
** own bytes this far ahead (measured on an f32 matrix of 98 MB, one core: 37.5 -> 42 GB/s) */
#define PF_DEC_AHEAD 2048

#endif
