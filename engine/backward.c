/*
** backward.c — the training forward pass (saving what backward needs) and the
** backward pass from the loss to the prefix, through the frozen model.
**
** A batch is several sequences concatenated (T tokens). Every sequence sees
** the same prefix: P key/value positions per layer (prefix mode) or E learned
** input embeddings in place of its first E tokens (embedding mode). Token i of
** a sequence sits at position P + i. The loss is the cross-entropy of the
** next token at positions with a target (the completion), so logits are only
** computed there. No weight gradients are computed: a step costs about two
** forward passes. The layers are block.c's phases, as in inference; only
** attention (over the shared prefix and each sequence's own tokens) is here.
**
** Sequences that begin with the same tokens (BOS and a template or system
** prompt) with no target among them have the same activations there: they see
** the same prefix, and causal attention looks only back. A pass computes that
** shared head once, as the first sequence's first rows; the other sequences
** keep only their rest, whose queries see the prefix, the head's rows, then
** their own (keys in that order, positions as if unshared), and the gradients
** their attention sends to the head's keys and values are added to its rows.
*/
#include "block.h"
#include "train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Logits rows computed at once: as many as fit in 8M floats (two such
** buffers), 64..256. Each chunk streams the whole output matrix twice (forward
** and backward), so bigger chunks read it less often and run the kernels on
** taller products. */
static int logits_chunk(int V) {
  int c = (int)(((size_t)8 << 20) / (size_t)(V > 0 ? V : 1));
  return c < 64 ? 64 : c > 256 ? 256 : c;
}

int pf_attn_rows = 0;   /* tests: 1 forces the row-at-a-time attention */
int pf_train_share = 1; /* tests: 0 computes a shared head once per sequence */

struct pf_tws {
  size_t budget;   /* bytes of saved activations one pass may hold (0: PF_ACT_BUDGET) */
  size_t T_cap, att_cap;
  int shared;      /* the last pass's shared head rows (tests) */
  int L, d, qd, kvd, ff, V, nh, nkv;
  /* saved activations, per layer (the pf_bsave of each, and attention's) */
  float *x_in;    /* (L, T, d) residual stream entering the layer */
  float *mean1, *rstd1, *mean2, *rstd2;   /* (L, T) norm statistics (means: LayerNorm) */
  float *q;       /* (L, T, q_dim) post-RoPE queries */
  float *k, *v;   /* (L, T, kvd) post-RoPE keys, values */
  float *qr, *kr; /* (L, T, q_dim), (L, T, kvd) before the per-head norms (q/k-norm models, else unused) */
  float *qrs, *krs; /* (L, T, n_head), (L, T, n_head_kv) the per-head norms' 1/rms */
  float *att;     /* (L, att_n) softmax probabilities, per token and head over its keys */
  float *x_mid;   /* (L, T, d) residual stream entering the feed-forward */
  float *g, *u;   /* (L, T, ff) gate and up before the activation */
  float *x_fin;   /* (T, d) */
  /* scratch */
  float *blk;     /* the block phases' scratch (pf_bscratch) */
  float *ao, *dx, *dq, *dk, *dv;
  float *dxb, *dh, *dg, *du, *dcat;   /* the backward phases' scratch (pf_bgrad) */
  float *logits, *dlogits, *xn, *dxn, *meanc, *rstdc;
  float *tmp;     /* (n_head_kv, max keys) attention backward scratch */
  size_t tmp_cap;
  int *pos, *seq_of, *att_off, *tgt_row, *tgt_id;
};

static void tws_free_bufs(pf_tws *w) {
  size_t budget = w->budget;
  float **f[] = {&w->x_in, &w->mean1, &w->rstd1, &w->mean2, &w->rstd2, &w->q, &w->k, &w->v, &w->qr, &w->kr, &w->qrs,
                 &w->krs, &w->att, &w->x_mid, &w->g, &w->u, &w->x_fin, &w->blk, &w->ao, &w->dx, &w->dq, &w->dk, &w->dv,
                 &w->dxb, &w->dh, &w->dg, &w->du, &w->dcat, &w->logits, &w->dlogits, &w->xn, &w->dxn, &w->meanc, &w->rstdc};
  for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) { free(*f[i]); *f[i] = NULL; }
  free(w->pos); free(w->seq_of); free(w->att_off); free(w->tgt_row); free(w->tgt_id); free(w->tmp);
  memset(w, 0, sizeof *w);
  w->budget = budget;
}

void pf_tws_free(pf_tws *w) {
  if (!w) return;
  tws_free_bufs(w);
  free(w);
}

void pf_tws_set_budget(pf_tws *w, size_t bytes) { w->budget = bytes; }
int pf_tws_last_shared(const pf_tws *w) { return w->shared; }

pf_tws *pf_tws_new(void) { return calloc(1, sizeof(pf_tws)); }

static int tws_reserve(pf_tws *w, const pf_model *m, size_t T, size_t att_n) {
  const pf_hparams *hp = &m->hp;
  size_t L = (size_t)hp->n_layer, d = (size_t)hp->n_embd, qd = (size_t)pf_q_dim(hp), kvd = (size_t)pf_kv_dim(hp),
         ff = (size_t)hp->n_ff, V = (size_t)hp->n_vocab, nh = (size_t)hp->n_head, nkv = (size_t)hp->n_head_kv;
  if (T <= w->T_cap && att_n <= w->att_cap && w->L == (int)L && w->d == (int)d && w->qd == (int)qd &&
      w->kvd == (int)kvd && w->ff == (int)ff && w->V == (int)V && w->nh == (int)nh && w->nkv == (int)nkv)
    return 0;
  size_t Tc = T > w->T_cap ? T : w->T_cap, Ac = att_n > w->att_cap ? att_n : w->att_cap;
  tws_free_bufs(w);
  w->T_cap = Tc; w->att_cap = Ac;
  w->L = (int)L; w->d = (int)d; w->qd = (int)qd; w->kvd = (int)kvd; w->ff = (int)ff; w->V = (int)V;
  w->nh = (int)nh; w->nkv = (int)nkv;
  size_t qkn = hp->qk_norm ? 1 : 0, cat = qd + 2 * kvd > 2 * ff ? qd + 2 * kvd : 2 * ff;
#define A(p, n) if (!((p) = malloc(sizeof(*(p)) * ((size_t)(n) + 1)))) return -1;
  A(w->x_in, L * Tc * d) A(w->mean1, L * Tc) A(w->rstd1, L * Tc) A(w->mean2, L * Tc) A(w->rstd2, L * Tc)
  A(w->q, L * Tc * qd) A(w->k, L * Tc * kvd) A(w->v, L * Tc * kvd)
  A(w->qr, qkn * L * Tc * qd) A(w->kr, qkn * L * Tc * kvd) A(w->qrs, qkn * L * Tc * nh) A(w->krs, qkn * L * Tc * nkv)
  A(w->att, L * Ac) A(w->x_mid, L * Tc * d) A(w->g, L * Tc * ff) A(w->u, L * Tc * ff)
  size_t chunk = (size_t)logits_chunk((int)V);
  A(w->x_fin, Tc * d) A(w->blk, pf_block_scratch_floats(hp, (int)Tc)) A(w->ao, Tc * qd) A(w->dx, Tc * d)
  A(w->dq, Tc * qd) A(w->dk, Tc * kvd) A(w->dv, Tc * kvd)
  A(w->dxb, Tc * d) A(w->dh, Tc * ff) A(w->dg, Tc * ff) A(w->du, Tc * ff) A(w->dcat, Tc * cat)
  A(w->logits, chunk * V) A(w->dlogits, chunk * V) A(w->xn, chunk * d) A(w->dxn, chunk * d) A(w->meanc, chunk)
  A(w->rstdc, chunk)
  A(w->pos, Tc) A(w->seq_of, Tc) A(w->att_off, Tc + 1) A(w->tgt_row, Tc) A(w->tgt_id, Tc)
#undef A
  return 0;
}

/* layer l's saved activations, for the block phases */
static pf_bsave layer_save(const pf_tws *w, int l, size_t T) {
  size_t L = (size_t)l;
  pf_bsave s = {w->x_in + L * T * w->d, w->mean1 + L * T, w->rstd1 + L * T, w->qr + L * T * w->qd,
                w->kr + L * T * w->kvd, w->qrs + L * T * w->nh, w->krs + L * T * w->nkv, w->x_mid + L * T * w->d,
                w->mean2 + L * T, w->rstd2 + L * T, w->g + L * T * w->ff, w->u + L * T * w->ff};
  return s;
}

/* the row of k, v (and dk, dv) behind key j of a sequence whose own rows start at row seq_start after a shared
** head of h rows (rows 0..h-1, the first sequence's), for j >= P (below P: the prefix's row j) */
#define OWN_ROW(j, h) ((size_t)((j) - P < (h) ? (j) - P : seq_start + (j) - P - (h)))
#define KROW(j) ((j) < P ? pk + (size_t)(j) * kvd : k + OWN_ROW(j, hs) * kvd)
#define VROW(j) ((j) < P ? pv + (size_t)(j) * kvd : v + OWN_ROW(j, hs) * kvd)

/* Attention runs one task per key/value head: each task owns that head's
** columns of k, v, dk, dv and the prefix gradient, and the query heads of its
** group, so tasks never write the same memory. */
typedef struct tattn {
  float *ao, *att, *dq, *dk, *dv, *dpk, *dpv, *tmp;
  const float *dao, *q, *k, *v, *pk, *pv;
  int P, T, tmp_stride, n_seq, max_len, backward;
  const int *seq_of, *pos, *att_off, *seq_start_of, *len;   /* len: each sequence's own rows */
  const pf_hparams *hp;
  const int *head;   /* each sequence's shared head rows (0 for the first), NULL: none */
} tattn;

/* ---- attention as small matrix products, one sequence and head at a time
** (the row-at-a-time loops further down are the fallback when no scratch can
** be had, and what the naive kernel setting uses). For a sequence of Tq
** tokens after P prefix positions and h shared head rows (n = P + h + Tq keys), with Kh, Vh its keys and
** values for one key/value head and Qh one query head's rows:
**   forward   S = Qh·Khᵀ, A = causal softmax(S·scale), O = A·Vh
**   backward  dA = dO·Vhᵀ, dS = A∘(dA − rowsum(A∘dA))·scale,
**             dQh = dS·Kh, dKh += dSᵀ·Qh, dVh += Aᵀ·dO
** Row i of A has keys 0..pos+1 (its prefix and earlier tokens); the rest of
** the row is zero, so the full products give the causal result. */

/* scratch floats one task needs for the blocked path */
static size_t attn_block_floats(const tattn *j) {
  size_t hd = (size_t)j->hp->head_dim, n = (size_t)j->P + (size_t)j->max_len, Tq = (size_t)j->max_len;
  return 4 * n * hd + 3 * Tq * hd + 3 * Tq * n + 64;
}

/* rows [r0, r0 + rows) of a (rows, width) block at column c0 of a matrix with row stride ld */
static void gather_rows(float *dst, const float *src, size_t ld, size_t c0, int rows, int width) {
  for (int i = 0; i < rows; i++) memcpy(dst + (size_t)i * width, src + (size_t)i * ld + c0, sizeof(float) * (size_t)width);
}

/* the sequence's keys (or values) for head kh: prefix rows, the shared head's h rows (from all, row 0 on), then
** its own */
static void gather_kv(float *dst, const float *pre, const float *all, int h, const float *own, int P, int Tq, int kvd,
                      int kh, int hd) {
  if (P) gather_rows(dst, pre, (size_t)kvd, (size_t)kh * hd, P, hd);
  if (h) gather_rows(dst + (size_t)P * hd, all, (size_t)kvd, (size_t)kh * hd, h, hd);
  gather_rows(dst + (size_t)(P + h) * hd, own, (size_t)kvd, (size_t)kh * hd, Tq, hd);
}
static int head_of(const tattn *j, int s) { return j->head ? j->head[s] : 0; }

static void attn_fwd_blocked(const tattn *j, int kh, float *buf, int kind) {
  const pf_hparams *hp = j->hp;
  int hd = hp->head_dim, kvd = hp->n_head_kv * hd, grp = hp->n_head / hp->n_head_kv, nh = hp->n_head, P = j->P;
  float scale = 1.0f / sqrtf((float)hd);
  size_t nmax = (size_t)P + (size_t)j->max_len;
  float *Kh = buf, *Vh = Kh + nmax * hd, *Qh = Vh + nmax * hd, *O = Qh + (size_t)j->max_len * hd;
  float *S = O + (size_t)j->max_len * hd;
  for (int s = 0; s < j->n_seq; s++) {
    int Tq = j->len[s], hs = head_of(j, s), n = P + hs + Tq, r0 = j->seq_start_of[s];
    if (Tq == 0) continue;
    gather_kv(Kh, j->pk, j->k, hs, j->k + (size_t)r0 * kvd, P, Tq, kvd, kh, hd);
    gather_kv(Vh, j->pv, j->v, hs, j->v + (size_t)r0 * kvd, P, Tq, kvd, kh, hd);
    for (int h = kh * grp; h < (kh + 1) * grp; h++) {
      gather_rows(Qh, j->q + (size_t)r0 * nh * hd, (size_t)nh * hd, (size_t)h * hd, Tq, hd);
      pf_kernel_nt(kind, S, Qh, Kh, Tq, hd, n, 0, n);
      for (int i = 0; i < Tq; i++) {
        int t = r0 + i, ni = j->pos[t] + 1;
        float *srow = S + (size_t)i * n, *a = j->att + j->att_off[t] + (size_t)h * ni;
        for (int c = 0; c < ni; c++) a[c] = srow[c] * scale;
        pf_softmax(a, ni);
        memcpy(srow, a, sizeof(float) * (size_t)ni);
        memset(srow + ni, 0, sizeof(float) * (size_t)(n - ni));
      }
      memset(O, 0, sizeof(float) * (size_t)Tq * hd);
      pf_kernel_nn_acc(kind, O, S, Vh, Tq, hd, n, 0, hd);
      for (int i = 0; i < Tq; i++)
        memcpy(j->ao + (size_t)(r0 + i) * nh * hd + (size_t)h * hd, O + (size_t)i * hd, sizeof(float) * (size_t)hd);
    }
  }
}

static void attn_bwd_blocked(const tattn *j, int kh, float *buf, int kind) {
  const pf_hparams *hp = j->hp;
  int hd = hp->head_dim, kvd = hp->n_head_kv * hd, grp = hp->n_head / hp->n_head_kv, nh = hp->n_head, P = j->P;
  float scale = 1.0f / sqrtf((float)hd);
  size_t nmax = (size_t)P + (size_t)j->max_len, Tm = (size_t)j->max_len;
  float *Kh = buf, *Vh = Kh + nmax * hd, *dKh = Vh + nmax * hd, *dVh = dKh + nmax * hd;
  float *Qh = dVh + nmax * hd, *dO = Qh + Tm * hd, *dQ = dO + Tm * hd;
  float *A = dQ + Tm * hd, *dS = A + Tm * nmax, *Tr = dS + Tm * nmax;
  for (int s = 0; s < j->n_seq; s++) {
    int Tq = j->len[s], hs = head_of(j, s), n = P + hs + Tq, r0 = j->seq_start_of[s];
    if (Tq == 0) continue;
    gather_kv(Kh, j->pk, j->k, hs, j->k + (size_t)r0 * kvd, P, Tq, kvd, kh, hd);
    gather_kv(Vh, j->pv, j->v, hs, j->v + (size_t)r0 * kvd, P, Tq, kvd, kh, hd);
    memset(dKh, 0, sizeof(float) * (size_t)n * hd);
    memset(dVh, 0, sizeof(float) * (size_t)n * hd);
    for (int h = kh * grp; h < (kh + 1) * grp; h++) {
      gather_rows(Qh, j->q + (size_t)r0 * nh * hd, (size_t)nh * hd, (size_t)h * hd, Tq, hd);
      gather_rows(dO, j->dao + (size_t)r0 * nh * hd, (size_t)nh * hd, (size_t)h * hd, Tq, hd);
      for (int i = 0; i < Tq; i++) {
        int t = r0 + i, ni = j->pos[t] + 1;
        memcpy(A + (size_t)i * n, j->att + j->att_off[t] + (size_t)h * ni, sizeof(float) * (size_t)ni);
        memset(A + (size_t)i * n + ni, 0, sizeof(float) * (size_t)(n - ni));
      }
      pf_kernel_nt(kind, dS, dO, Vh, Tq, hd, n, 0, n);   /* dA */
      for (int i = 0; i < Tq; i++) {
        float *ar = A + (size_t)i * n, *dr = dS + (size_t)i * n, dot = 0;
        for (int c = 0; c < n; c++) dot += ar[c] * dr[c];
        for (int c = 0; c < n; c++) dr[c] = ar[c] * (dr[c] - dot) * scale;
      }
      memset(dQ, 0, sizeof(float) * (size_t)Tq * hd);
      pf_kernel_nn_acc(kind, dQ, dS, Kh, Tq, hd, n, 0, hd);
      for (int i = 0; i < Tq; i++) {
        float *dst = j->dq + (size_t)(r0 + i) * nh * hd + (size_t)h * hd;
        for (int c = 0; c < hd; c++) dst[c] += dQ[(size_t)i * hd + c];
      }
      pf_transpose(Tr, dS, Tq, n);
      pf_kernel_nn_acc(kind, dKh, Tr, Qh, n, hd, Tq, 0, hd);
      pf_transpose(Tr, A, Tq, n);
      pf_kernel_nn_acc(kind, dVh, Tr, dO, n, hd, Tq, 0, hd);
    }
    for (int c = 0; c < n; c++) {   /* scatter: prefix rows to the prefix gradient, the rest to dk, dv */
      size_t row = c < P + hs ? (size_t)(c - P) : (size_t)r0 + c - P - hs;
      float *dk = c < P ? (j->dpk ? j->dpk + (size_t)c * kvd : NULL) : j->dk + row * kvd;
      float *dv = c < P ? (j->dpv ? j->dpv + (size_t)c * kvd : NULL) : j->dv + row * kvd;
      for (int e = 0; dk && e < hd; e++) dk[(size_t)kh * hd + e] += dKh[(size_t)c * hd + e];
      for (int e = 0; dv && e < hd; e++) dv[(size_t)kh * hd + e] += dVh[(size_t)c * hd + e];
    }
  }
}

/* the blocked path's scratch, or NULL to use the row loops */
static float *attn_scratch(const tattn *j, size_t *cap, int *kind) {
  *kind = pf_get_kernel();
  if (pf_get_naive() || *kind == PF_KERNEL_NAIVE || pf_attn_rows) return NULL;
  return pf_scratch_get(attn_block_floats(j), cap);
}

static void attn_fwd_rows(const tattn *j, int kh) {
  const pf_hparams *hp = j->hp;
  int hd = hp->head_dim, kvd = hp->n_head_kv * hd, grp = hp->n_head / hp->n_head_kv, nh = hp->n_head, P = j->P;
  const float *k = j->k, *v = j->v, *pk = j->pk, *pv = j->pv;
  float scale = 1.0f / sqrtf((float)hd);
  for (int t = 0; t < j->T; t++) {
    int seq_start = j->seq_start_of[j->seq_of[t]], hs = head_of(j, j->seq_of[t]), n = j->pos[t] + 1;
    for (int h = kh * grp; h < (kh + 1) * grp; h++) {
      const float *qh = j->q + (size_t)t * nh * hd + (size_t)h * hd;
      float *a = j->att + j->att_off[t] + (size_t)h * n;
      for (int i = 0; i < n; i++) a[i] = pf_vdot(qh, KROW(i) + (size_t)kh * hd, hd) * scale;
      pf_softmax(a, n);
      float *o = j->ao + (size_t)t * nh * hd + (size_t)h * hd;
      memset(o, 0, sizeof(float) * (size_t)hd);
      for (int i = 0; i < n; i++) pf_vaxpy(o, a[i], VROW(i) + (size_t)kh * hd, hd);
    }
  }
}

/* In the forward pass this was: s_j = q·k_j * scale; a = softmax(s); o = sum_j a_j v_j. */
static void attn_bwd_rows(const tattn *j, int kh) {
  const pf_hparams *hp = j->hp;
  int hd = hp->head_dim, kvd = hp->n_head_kv * hd, grp = hp->n_head / hp->n_head_kv, nh = hp->n_head, P = j->P;
  const float *k = j->k, *v = j->v, *pk = j->pk, *pv = j->pv;
  float scale = 1.0f / sqrtf((float)hd), *tmp = j->tmp + (size_t)kh * j->tmp_stride;
  for (int t = 0; t < j->T; t++) {
    int seq_start = j->seq_start_of[j->seq_of[t]], hs = head_of(j, j->seq_of[t]), n = j->pos[t] + 1;
    for (int h = kh * grp; h < (kh + 1) * grp; h++) {
      const float *qh = j->q + (size_t)t * nh * hd + (size_t)h * hd, *a = j->att + j->att_off[t] + (size_t)h * n;
      const float *doh = j->dao + (size_t)t * nh * hd + (size_t)h * hd;
      float *dqh = j->dq + (size_t)t * nh * hd + (size_t)h * hd;
      float dot_ada = 0;
      for (int i = 0; i < n; i++) {   /* da_i = do · v_i; dv_i += a_i do */
        tmp[i] = pf_vdot(doh, VROW(i) + (size_t)kh * hd, hd);
        dot_ada += a[i] * tmp[i];
        if (i >= P) pf_vaxpy(j->dv + OWN_ROW(i, hs) * kvd + (size_t)kh * hd, a[i], doh, hd);
        else if (j->dpv) pf_vaxpy(j->dpv + (size_t)i * kvd + (size_t)kh * hd, a[i], doh, hd);
      }
      for (int i = 0; i < n; i++) {   /* ds_i = a_i (da_i - sum a da); dq += ds k_i; dk_i += ds q */
        float ds = a[i] * (tmp[i] - dot_ada) * scale;
        pf_vaxpy(dqh, ds, KROW(i) + (size_t)kh * hd, hd);
        if (i >= P) pf_vaxpy(j->dk + OWN_ROW(i, hs) * kvd + (size_t)kh * hd, ds, qh, hd);
        else if (j->dpk) pf_vaxpy(j->dpk + (size_t)i * kvd + (size_t)kh * hd, ds, qh, hd);
      }
    }
  }
}

/* one key/value head's attention, forward or backward: blocked when scratch can be had, else row at a time */
static void attn_task(void *arg, int kh) {
  const tattn *j = arg;
  size_t cap;
  int kind;
  float *buf = attn_scratch(j, &cap, &kind);
  if (buf) {
    if (j->backward) attn_bwd_blocked(j, kh, buf, kind);
    else attn_fwd_blocked(j, kh, buf, kind);
    pf_scratch_put(buf, cap);
  } else if (j->backward) attn_bwd_rows(j, kh);
  else attn_fwd_rows(j, kh);
}

/* One pass over a batch, in its phases: lay the batch out (positions, targets, scratch), the forward keeping
** what backward needs, the loss (and its gradient at the target rows), the backward. */
typedef struct tpass {
  const pf_model *m;
  pf_tws *w;
  const pf_tbatch *b;
  const pf_prefix_in *pin;
  int P, E, iT, max_keys, n_t;
  size_t T;
  int *seq_start_of;   /* each sequence's first row */
  int *own_len, *head; /* each sequence's rows of its own, and the shared head's rows it sees before them */
  pf_bscratch bs;
  pf_bgrad bg;
} tpass;

/* The rows every sequence of the batch begins with, the same tokens and no target among them (the shared head),
** leaving each sequence at least one row of its own: 0 for a single sequence or with learned input embeddings. */
static int shared_head(const pf_tbatch *b, int E) {
  if (b->n_seq < 2 || E) return 0;
  int h = b->len[0] - 1;
  for (int s = 1; s < b->n_seq; s++)
    if (b->len[s] - 1 < h) h = b->len[s] - 1;
  size_t off = 0;
  for (int s = 0; s < b->n_seq && h > 0; off += (size_t)b->len[s], s++) {
    int i = 0;
    while (i < h && b->tokens[off + i] == b->tokens[i] && b->targets[off + i] < 0) i++;
    h = i;
  }
  return h > 0 ? h : 0;
}

/* Sizes, activations reserved, each row's position, sequence and attention offset, the target rows; with share,
** the shared head's rows only once (the first sequence's). */
static int pass_layout(tpass *tp, int backward, int share, pf_err *err) {
  const pf_hparams *hp = &tp->m->hp;
  const pf_tbatch *b = tp->b;
  pf_tws *w = tp->w;
  int P = tp->P, V = hp->n_vocab, nh = hp->n_head, sh = share && pf_train_share ? shared_head(b, tp->E) : 0;
  size_t att_n = 0;
  w->shared = sh;
  for (int s = 0; s < b->n_seq; s++) {
    int hs = s ? sh : 0;
    tp->T += (size_t)(b->len[s] - hs);
    for (int i = hs; i < b->len[s]; i++) att_n += (size_t)nh * (P + i + 1);
    if (P + b->len[s] > tp->max_keys) tp->max_keys = P + b->len[s];
  }
  size_t T = tp->T;
  if (T == 0) return PF_OK;
  if (hp->rope == PF_ROPE_NONE && tp->max_keys > hp->n_ctx)
    return pf_seterr(err, PF_TOOBIG, "prefix (%d) + sequence (%d) exceed the model's %d learned positions", P,
                     tp->max_keys - P, hp->n_ctx);
  if (tws_reserve(w, tp->m, T + 3 * (size_t)b->n_seq + (size_t)tp->max_keys, att_n))
    return pf_seterr(err, PF_NOMEM, "out of memory for training activations (%zu tokens)", T);
  tp->seq_start_of = w->tgt_id + T;   /* 3 × n_seq ints after the T target ids (reserved above) */
  tp->own_len = tp->seq_start_of + b->n_seq;
  tp->head = tp->own_len + b->n_seq;
  size_t tmp_need = (size_t)hp->n_head_kv * (size_t)tp->max_keys;
  if (backward && tmp_need > w->tmp_cap) {
    float *nt = realloc(w->tmp, sizeof(float) * tmp_need);
    if (!nt) return pf_seterr(err, PF_NOMEM, "out of memory for training scratch");
    w->tmp = nt;
    w->tmp_cap = tmp_need;
  }
  size_t t = 0, att = 0, off = 0;
  for (int s = 0; s < b->n_seq; off += (size_t)b->len[s], s++) {
    int hs = s ? sh : 0;
    tp->seq_start_of[s] = (int)t;
    tp->head[s] = hs;
    tp->own_len[s] = b->len[s] - hs;
    for (int i = hs; i < b->len[s]; i++, t++) {
      w->pos[t] = P + i;
      w->seq_of[t] = s;
      w->att_off[t] = (int)att;
      att += (size_t)nh * (P + i + 1);
      int tg = b->targets[off + i];
      if (tg >= 0) {
        if (tg >= V) return pf_seterr(err, PF_ERR, "target id %d outside the vocabulary", tg);
        w->tgt_row[tp->n_t] = (int)t;
        w->tgt_id[tp->n_t++] = tg;
      }
      int tok = b->tokens[off + i];
      if (i >= tp->E && (tok < 0 || tok >= V)) return pf_seterr(err, PF_ERR, "token id %d outside the vocabulary", tok);
    }
  }
  tp->iT = (int)T;
  pf_block_scratch_point(&tp->bs, w->blk, hp, tp->iT, 1);
  pf_bgrad bg = {w->dxb, w->dh, w->dg, w->du, w->dcat};
  tp->bg = bg;
  return PF_OK;
}

/* The forward through every layer, each layer's activations saved; x_fin ends as the last residual stream. */
static int pass_forward(tpass *tp, pf_cancel_fn cancel, void *carg, pf_err *err) {
  const pf_model *m = tp->m;
  const pf_hparams *hp = &m->hp;
  const pf_tbatch *b = tp->b;
  pf_tws *w = tp->w;
  int d = hp->n_embd, qd = pf_q_dim(hp), kvd = pf_kv_dim(hp), P = tp->P, iT = tp->iT;
  size_t T = tp->T;
  float *x = w->x_fin;   /* the running residual stream */
  size_t off = 0;
  for (int s = 0; s < b->n_seq; off += (size_t)b->len[s], s++)   /* the first E tokens: the learned embeddings */
    for (int i = tp->head[s]; i < b->len[s]; i++) {
      size_t r = (size_t)tp->seq_start_of[s] + i - tp->head[s];
      if (i < tp->E) memcpy(x + r * d, tp->pin->embd + (size_t)i * d, sizeof(float) * d);
      else pf_wt_row(&m->tok_embd, b->tokens[off + i], x + r * d);
    }
  pf_block_embed(m, x, NULL, w->pos, iT, tp->bs.xb);   /* learned positions (gpt2) */
  for (int l = 0; l < hp->n_layer; l++) {
    if (cancel && cancel(carg)) return pf_seterr(err, PF_INTERRUPT, "interrupted");
    const pf_layer *Ly = &m->layers[l];
    pf_bsave sv = layer_save(w, l, T);
    float *q = w->q + (size_t)l * T * qd, *k = w->k + (size_t)l * T * kvd, *v = w->v + (size_t)l * T * kvd;
    const float *pk = P ? tp->pin->kv + (size_t)l * 2 * P * kvd : NULL, *pv = P ? pk + (size_t)P * kvd : NULL;
    pf_block_attn_in(m, Ly, x, w->pos, iT, q, k, v, &tp->bs, &sv);
    tattn aj = {w->ao, w->att + (size_t)l * w->att_cap, NULL, NULL, NULL, NULL, NULL, NULL, NULL, q, k, v, pk, pv,
                P, iT, 0, b->n_seq, tp->max_keys - P, 0, w->seq_of, w->pos, w->att_off, tp->seq_start_of, tp->own_len, hp,
                tp->head};
    pf_parallel_for(hp->n_head_kv, attn_task, &aj);
    pf_block_attn_out(m, Ly, w->ao, iT, x, &tp->bs);
    pf_block_ffn(m, Ly, x, iT, &tp->bs, &sv);
  }
  return PF_OK;
}

/* The loss at the target rows, in chunks of rows; with backward, its gradient into dx at those rows. */
static double pass_loss(tpass *tp, float loss_scale, int backward) {
  const pf_model *m = tp->m;
  pf_tws *w = tp->w;
  int d = m->hp.n_embd, V = m->hp.n_vocab, n_t = tp->n_t;
  const float *x = w->x_fin;
  if (backward) memset(w->dx, 0, sizeof(float) * tp->T * d);
  double loss = 0;
  for (int c0 = 0, chunk = logits_chunk(V); c0 < n_t; c0 += chunk) {
    int nc = n_t - c0 < chunk ? n_t - c0 : chunk;
    for (int r = 0; r < nc; r++) memcpy(w->dxn + (size_t)r * d, x + (size_t)w->tgt_row[c0 + r] * d, sizeof(float) * d);
    pf_block_final_norm(m, w->xn, w->meanc, w->rstdc, w->dxn, nc);
    pf_block_logits(m, w->logits, w->xn, nc, 1);
    loss += pf_xent_forward_backward(backward ? w->dlogits : NULL, w->logits, w->tgt_id + c0, nc, V, loss_scale);
    if (!backward) continue;
    /* w->dxn holds the rows' inputs; use xn as the gradient buffer */
    memset(w->xn, 0, sizeof(float) * (size_t)nc * d);
    pf_matmul_backward_input_w(w->xn, w->dlogits, &m->output, nc);
    for (int r = 0; r < nc; r++)
      pf_block_final_norm_backward(m, w->dx + (size_t)w->tgt_row[c0 + r] * d, w->xn + (size_t)r * d,
                                   w->dxn + (size_t)r * d, w->meanc + r, w->rstdc + r, 1);
  }
  return loss;
}

/* The backward from dx through every layer into the prefix's keys and values (and the learned embeddings). */
static int pass_backward(tpass *tp, pf_cancel_fn cancel, void *carg, pf_err *err) {
  const pf_model *m = tp->m;
  const pf_hparams *hp = &m->hp;
  const pf_tbatch *b = tp->b;
  const pf_prefix_in *pin = tp->pin;
  pf_tws *w = tp->w;
  int d = hp->n_embd, qd = pf_q_dim(hp), kvd = pf_kv_dim(hp), P = tp->P, E = tp->E, iT = tp->iT, max_keys = tp->max_keys;
  size_t T = tp->T;
  float *dx = w->dx;
  for (int l = hp->n_layer - 1; l >= 0; l--) {
    if (cancel && cancel(carg)) return pf_seterr(err, PF_INTERRUPT, "interrupted");
    const pf_layer *Ly = &m->layers[l];
    pf_bsave sv = layer_save(w, l, T);
    float *q = w->q + (size_t)l * T * qd, *k = w->k + (size_t)l * T * kvd, *v = w->v + (size_t)l * T * kvd;
    const float *pk = P ? pin->kv + (size_t)l * 2 * P * kvd : NULL, *pv = P ? pk + (size_t)P * kvd : NULL;
    float *dpk = P && pin->dkv ? pin->dkv + (size_t)l * 2 * P * kvd : NULL, *dpv = dpk ? dpk + (size_t)P * kvd : NULL;
    pf_block_ffn_backward(m, Ly, dx, iT, &sv, &tp->bg);
    pf_block_attn_out_backward(m, Ly, dx, iT, w->ao);   /* ao is dao here */
    memset(w->dq, 0, sizeof(float) * T * qd);
    memset(w->dk, 0, sizeof(float) * T * kvd);
    memset(w->dv, 0, sizeof(float) * T * kvd);
    tattn bj = {NULL, w->att + (size_t)l * w->att_cap, w->dq, w->dk, w->dv, dpk, dpv, w->tmp, w->ao, q, k, v, pk, pv,
                P, iT, max_keys, b->n_seq, max_keys - P, 1, w->seq_of, w->pos, w->att_off, tp->seq_start_of, tp->own_len,
                hp, tp->head};
    pf_parallel_for(hp->n_head_kv, attn_task, &bj);
    /* below layer 0's attention only the input embeddings could take a gradient */
    if (l == 0 && !(E && pin->dembd)) break;
    pf_block_attn_in_backward(m, Ly, dx, w->dq, w->dk, w->dv, w->pos, iT, &sv, &tp->bg);
  }
  if (E && pin->dembd)
    for (int s = 0; s < b->n_seq; s++)
      for (int i = 0; i < E && i < b->len[s]; i++) {
        const float *src = dx + ((size_t)tp->seq_start_of[s] + i) * d;
        float *dst = pin->dembd + (size_t)i * d;
        for (int j = 0; j < d; j++) dst[j] += src[j];
      }
  return PF_OK;
}

static int train_pass(const pf_model *m, pf_tws *w, const pf_tbatch *b, const pf_prefix_in *pin, float loss_scale,
                      int backward, int share, double *loss_sum, int *n_tgt, pf_cancel_fn cancel, void *carg,
                      pf_err *err) {
  if (!m->has_weights) return pf_seterr(err, PF_ERR, "the model has no weights (vocab-only GGUF): it cannot be trained");
  tpass tp;
  memset(&tp, 0, sizeof tp);
  tp.m = m;
  tp.w = w;
  tp.b = b;
  tp.pin = pin;
  tp.P = pin ? pin->P : 0;
  tp.E = pin ? pin->E : 0;
  *loss_sum = 0;
  *n_tgt = 0;
  int rc = pass_layout(&tp, backward, share, err);
  if (rc || tp.T == 0) return rc;
  if ((rc = pass_forward(&tp, cancel, carg, err))) return rc;
  *loss_sum = pass_loss(&tp, loss_scale, backward);
  *n_tgt = tp.n_t;
  return backward ? pass_backward(&tp, cancel, carg, err) : PF_OK;
}

/* Bytes a pass saves for one sequence of len tokens after P prefix positions (the per-layer activations
** and attention probabilities that tws_reserve sizes). */
static size_t seq_act_bytes(const pf_model *m, int P, int len) {
  const pf_hparams *hp = &m->hp;
  size_t L = (size_t)hp->n_layer, kvd = (size_t)pf_kv_dim(hp), qd = (size_t)pf_q_dim(hp);
  size_t per_tok = L * (2 * (size_t)hp->n_embd + qd + 2 * kvd + 2 * (size_t)hp->n_ff + 4 +
                        (hp->qk_norm ? qd + kvd + (size_t)hp->n_head + (size_t)hp->n_head_kv : 0));
  size_t keys = (size_t)len * (size_t)P + (size_t)len * ((size_t)len + 1) / 2;
  return sizeof(float) * ((size_t)len * per_tok + L * (size_t)hp->n_head * keys);
}

/* A batch whose saved activations would exceed the budget runs as several passes over parts of it (whole
** sequences each); their losses add and their gradients accumulate, so the result is the batch's, up to
** float rounding of the sums. */
int pf_train_step(const pf_model *m, pf_tws *w, const pf_tbatch *b, const pf_prefix_in *pin, float loss_scale,
                  int backward, double *loss_sum, int *n_tgt, pf_cancel_fn cancel, void *carg, pf_err *err) {
  size_t budget = w->budget ? w->budget : PF_ACT_BUDGET, off = 0;
  int P = pin ? pin->P : 0;
  *loss_sum = 0;
  *n_tgt = 0;
  for (int s0 = 0; s0 < b->n_seq;) {
    size_t bytes = seq_act_bytes(m, P, b->len[s0]), n_tok = (size_t)b->len[s0];
    int s1 = s0 + 1;
    for (; s1 < b->n_seq && bytes + seq_act_bytes(m, P, b->len[s1]) <= budget; s1++) {
      bytes += seq_act_bytes(m, P, b->len[s1]);
      n_tok += (size_t)b->len[s1];
    }
    pf_tbatch part = {s1 - s0, b->len + s0, b->tokens + off, b->targets + off};
    double ls;
    int nt, rc = train_pass(m, w, &part, pin, loss_scale, backward, 1, &ls, &nt, cancel, carg, err);
    if (rc) return rc;
    *loss_sum += ls;
    *n_tgt += nt;
    off += n_tok;
    s0 = s1;
  }
  return PF_OK;
}

/* Logits at every row (for tests): runs the training forward without loss, in one pass. */
int pf_train_logits(const pf_model *m, pf_tws *w, const pf_tbatch *b, const pf_prefix_in *pin, float *logits,
                    pf_err *err) {
  double ls;
  int nt;
  int rc = train_pass(m, w, b, pin, 0.0f, 0, 0, &ls, &nt, NULL, NULL, err);   /* a row per token */
  if (rc) return rc;
  size_t T = 0;
  for (int s = 0; s < b->n_seq; s++) T += (size_t)b->len[s];
  const pf_hparams *hp = &m->hp;
  int d = hp->n_embd;
  for (size_t t = 0; t < T; t++) {
    pf_block_final_norm(m, w->xn, NULL, NULL, w->x_fin + t * d, 1);
    pf_block_logits(m, logits + t * hp->n_vocab, w->xn, 1, 1);
  }
  return PF_OK;
}

/* The keys/values that E learned input embeddings leave at cache positions
** 0..E-1: what an embedding-mode prefix looks like to generation. */
int pf_embd_to_kv(const pf_model *m, pf_tws *w, int E, const float *embd, float *kv, pf_err *err) {
  const pf_hparams *hp = &m->hp;
  int *tok = calloc((size_t)E, sizeof(int)), *tgt = malloc(sizeof(int) * (size_t)E);
  if (!tok || !tgt) { free(tok); free(tgt); return pf_seterr(err, PF_NOMEM, "out of memory"); }
  for (int i = 0; i < E; i++) tgt[i] = -1;
  pf_tbatch b = {1, &E, tok, tgt};
  pf_prefix_in pin = {0, NULL, NULL, E, embd, NULL};
  double ls;
  int nt, rc = train_pass(m, w, &b, &pin, 0.0f, 0, 0, &ls, &nt, NULL, NULL, err);
  if (!rc) {
    size_t kvd = (size_t)pf_kv_dim(hp);
    for (int l = 0; l < hp->n_layer; l++) {
      memcpy(kv + (size_t)l * 2 * E * kvd, w->k + (size_t)l * E * kvd, sizeof(float) * E * kvd);
      memcpy(kv + ((size_t)l * 2 + 1) * E * kvd, w->v + (size_t)l * E * kvd, sizeof(float) * E * kvd);
    }
  }
  free(tok);
  free(tgt);
  return rc;
}
