/*
** kernels_common.c — what the kernel tables share (kernels.h): scratch buffers, the packed GEMM's blocking
** around a table's micro-kernel, rows of any weight type unpacked through a table's chunk decoders, and
** the decoding every table can fall back to. No instruction-set code here.
*/
#include "kernels.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

int pf_int8 = 1;


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

/* ------------------------------------------------------------ row ranges */

/* columns [k0, k1) of chunk c (32 columns) through the table's decoder: the whole chunk, then the part (an NN
** panel of 16 columns takes half a chunk); a row's last chunk may be short (F16/BF16 rows), decoded as stored */
static void deq_part(pf_deq_fn f, const pf_wt *W, const uint8_t *row, int c, int k0, int k1, float *dst) {
  if (32 * c + 32 > W->cols) { pf_dequant_any(W->type, row, k0, k1, dst); return; }
  float buf[32];
  f(row, c, c + 1, buf);
  memcpy(dst, buf + (k0 - 32 * c), sizeof(float) * (size_t)(k1 - k0));
}

void pf_wt_deq_with(const pf_deq_fn *deq, const pf_wt *W, int r, int k0, int k1, float *dst) {
  const uint8_t *row = W->data + (size_t)r * W->row_bytes;
  if (k1 <= k0) return;
  pf_deq_fn f = deq ? deq[W->type] : NULL;
  if (!f) { pf_dequant_any(W->type, row, k0, k1, dst); return; }
  int a0 = (k0 + 31) / 32, a1 = k1 / 32;   /* whole chunks inside the range */
  if (a0 > a1) { deq_part(f, W, row, k0 / 32, k0, k1, dst); return; }   /* inside one chunk */
  if (32 * a0 > k0) deq_part(f, W, row, a0 - 1, k0, 32 * a0, dst);
  if (a1 > a0) f(row, a0, a1, dst + 32 * a0 - k0);
  if (k1 > 32 * a1) deq_part(f, W, row, a1, 32 * a1, k1, dst + 32 * a1 - k0);
}

/* dA[t][c0:c1] += dY[t] · W[:, c0:c1], a chunk of each row of W at a time (no panel memory needed) */
static void nn_chunks(const pf_deq_fn *deq, float *dA, const float *dY, const pf_wt *W, int T, int c0, int c1) {
  int K = W->cols, N = W->rows;
  float buf[32];
  for (int n = 0; n < N; n++)
    for (int k = c0; k < c1; k += 32) {
      int kk = c1 - k < 32 ? c1 - k : 32;
      pf_wt_deq_with(deq, W, n, k, k + kk, buf);
      for (int t = 0; t < T; t++) {
        float a = dY[(size_t)t * N + n], *y = dA + (size_t)t * K + k;
        for (int i = 0; i < kk; i++) y[i] += a * buf[i];
      }
    }
}

/* ---------------------------------------------------------------- decode */

void pf_nt_dec_chunks(float (*dot)(const float *, const float *, int), float *out, const float *A, const pf_wt *W,
                      int T, int c0, int c1) {
  int K = W->cols, N = W->rows;
  float buf[32];
  for (int n = c0; n < c1; n++) {
    const uint8_t *row = W->data + (size_t)n * W->row_bytes;
    for (int t = 0; t < T; t++) out[(size_t)t * N + n] = 0;
    for (int k = 0; k < K; k += 32) {
      int kk = K - k < 32 ? K - k : 32;
      pf_dequant_any(W->type, row, k, k + kk, buf);
      for (int t = 0; t < T; t++) out[(size_t)t * N + n] += dot(buf, A + (size_t)t * K + k, kk);
    }
  }
}

void pf_nt_dec_run(const pf_dec_fn *dec, int rows, float (*dot)(const float *, const float *, int), float *out,
                   const float *A, const pf_wt *W, int T, int c0, int c1) {
  int K = W->cols, N = W->rows;
  pf_dec_fn f = dec ? dec[W->type] : NULL;
  if (!f) { pf_nt_dec_chunks(dot, out, A, W, T, c0, c1); return; }
  int nch = K / 32, tail = K - 32 * nch;   /* F16/BF16 rows may end in a part chunk */
  for (int t0 = 0; t0 < T; t0 += rows) {
    int tt = T - t0 < rows ? T - t0 : rows;
    f(out + (size_t)t0 * N, N, A + (size_t)t0 * K, K, tt, W->data, W->row_bytes, nch, c0, c1);
  }
  if (tail) {
    float buf[32];
    for (int n = c0; n < c1; n++) {
      pf_dequant_any(W->type, W->data + (size_t)n * W->row_bytes, 32 * nch, K, buf);
      for (int t = 0; t < T; t++) out[(size_t)t * N + n] += dot(buf, A + (size_t)t * K + 32 * nch, tail);
    }
  }
}

void pf_softmax_with(double (*vexp_sum)(float *, const float *, float, int), float *x, int n) {
  float mx = x[0];
  for (int i = 1; i < n; i++) if (x[i] > mx) mx = x[i];
  float inv = (float)(1.0 / vexp_sum(x, x, mx, n));
  for (int i = 0; i < n; i++) x[i] *= inv;
}

/* ------------------------------------------- the packed GEMM, any table
** For products with many rows (prefill, training, batches of 16 or more):
**   C[M, c0:c1] (+)= A (M, Kd) · B,   B = W^T (NT: W is (N, Kd)) or B = W (NN: W is (Kd, N))
** the classic blocking: K in blocks of PF_GM_KC; A is packed whole, once (by all threads together when
** the product runs on the pool): row block b (<= PF_GM_MC rows, tiles of even height <= MR) starts at
** b * tiles_max * MR * Kd; in it the K block at p0 holds its tiles at ntile * MR * p0, tile t at
** + t * MR * kc. W is packed NR columns at a time into a panel that stays in L1 while every row tile runs
** over it. The table's micro-kernel comes through pf_gemm_isa (calls per panel and tile, not per FMA). */
typedef pf_gemm_isa gm_isa;

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
  p->nblk = (M + PF_GM_MC - 1) / PF_GM_MC;
  p->mc_max = (M + p->nblk - 1) / p->nblk;
  p->tiles_max = (p->mc_max + isa->MR - 1) / isa->MR;
  /* few rows: K unblocked, so each row of W is read start to end; a quantized W is unpacked KC at a time */
  p->KC = M <= PF_GM_SMALL_M && !qw ? Kd : PF_GM_KC;
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
  if (p->nt && half && p->isa->pack_nt_half)
    p->isa->pack_nt_half(bp, (const uint16_t *)p->qw->data, p->qw->cols, p->qw->type == GGML_BF16, n0, nw, p0, kc,
                         pf_rows);
  else if (p->nt) {
    for (int r = 0; r < nw; r++) pf_wt_deq_with(p->isa->deq, p->qw, n0 + r, p0, p0 + kc, tmp + (size_t)r * kc);
    p->isa->pack_nt(bp, tmp, kc, 0, nw, 0, kc, 0);
  } else
    for (int k = 0; k < kc; k++) {
      pf_wt_deq_with(p->isa->deq, p->qw, p0 + k, n0, n0 + nw, bp + (size_t)k * NR);
      if (nw < NR) memset(bp + (size_t)k * NR + nw, 0, sizeof(float) * (size_t)(NR - nw));
    }
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
int pf_gemm_slice(const gm_isa *isa, int nt, float *C, int ldc, const float *A, int lda, int M, int Kd,
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
typedef struct gm_job { gm_plan p; int ncol, nslice; } gm_job;

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
  if (p->qw && p->nt) p->isa->nt_dec(p->C, p->A, p->qw, p->M, c0, c1, 1);
  else if (p->qw) nn_chunks(p->isa->deq, p->C, p->A, p->qw, p->M, c0, c1);
  else if (p->nt) p->isa->nt(p->C, p->A, p->W, p->M, p->Kd, p->ldc, c0, c1);
  else p->isa->nn_acc(p->C, p->A, p->W, p->M, p->ldc, p->Kd, c0, c1);
}

int pf_gemm_run(const pf_gemm_isa *isa, int nn, float *out, const float *a, const float *w, const pf_wt *qw, int T,
                int n_in, int n_out, int nslice) {
  gm_job j;
  if (nn) gm_plan_init(&j.p, isa, 0, out, n_in, a, n_out, T, n_out, w, qw, n_in, 1);   /* dA += dY · W */
  else gm_plan_init(&j.p, isa, 1, out, n_out, a, n_in, T, n_in, w, qw, n_in, 0);        /* out = X · Wᵀ */
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
