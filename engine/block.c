/*
** block.c — the transformer block, written once. Inference (forward.c) and
** training (backward.c) both call these phases; only attention itself
** differs between them (per-sequence KV caches there, a batch with a shared
** prefix here). What a layer does is the model's block description
** (pf_hparams: norm, RoPE layout, activation, q/k norm) and which tensors the
** file holds (pf_layer: fused or separate projections, biases):
**
**   attn_in    xb = norm(x); q, k, v = xb·Wᵀ (+ b), fused or separate;
**              q, k = per-head RMSNorm (qwen3); q, k = RoPE (NORM / NEOX,
**              frequency factors, linear scaling)
**   attn_out   x += ao·Woᵀ (+ bo)
**   ffn        x += down(act(xb·Wgᵀ + bg, xb·Wuᵀ + bu)) (+ bd), xb = norm(x);
**              act = silu(g)·u with gate and up separate or fused (phi3), or
**              gelu(u) (gpt2)
**
** Each forward phase saves what its backward needs when given a pf_bsave
** (training), and runs the exact f32 products then; without one (inference)
** it may use the integer kernels. The backward phases compute input
** gradients only: the weights are frozen.
*/
#include "block.h"

#include <string.h>

/* ------------------------------------------------------------- helpers */

static void norm_fwd(const pf_hparams *hp, float *out, float *mean, float *rstd, const float *x, const float *w,
                     const float *b, int T) {
  if (hp->norm == PF_NORM_LAYER) pf_layernorm_forward(out, mean, rstd, x, w, b, T, hp->n_embd, hp->norm_eps);
  else pf_rmsnorm_forward(out, rstd, x, w, T, hp->n_embd, hp->norm_eps);
}

/* In the forward pass this was: out = norm(x) (with w, b). */
static void norm_bwd(const pf_hparams *hp, float *dx, const float *dout, const float *x, const float *w,
                     const float *mean, const float *rstd, int T) {
  if (hp->norm == PF_NORM_LAYER) pf_layernorm_backward(dx, dout, x, w, mean, rstd, T, hp->n_embd);
  else pf_rmsnorm_backward(dx, dout, x, w, rstd, T, hp->n_embd);
}

static void matmul(float *out, const float *in, const pf_wt *w, int T, int exact) {
  if (exact) pf_matmul_w_exact(out, in, w, T);
  else pf_matmul_w(out, in, w, T);
}

/* columns [c0, c0 + w) of a (T, ld) matrix to (T, w) and back */
static void take_cols(float *dst, const float *src, int T, int ld, int c0, int w) {
  for (int t = 0; t < T; t++) memcpy(dst + (size_t)t * w, src + (size_t)t * ld + c0, sizeof(float) * (size_t)w);
}
static void put_cols(float *dst, int ld, int c0, const float *src, int T, int w) {
  for (int t = 0; t < T; t++) memcpy(dst + (size_t)t * ld + c0, src + (size_t)t * w, sizeof(float) * (size_t)w);
}

size_t pf_block_scratch_floats(const pf_hparams *hp, int T) {
  size_t d = (size_t)hp->n_embd, qkv = (size_t)pf_q_dim(hp) + 2 * (size_t)pf_kv_dim(hp), ff = (size_t)hp->n_ff;
  size_t big = qkv > 2 * ff ? qkv : 2 * ff;
  return (size_t)T * (d + big + 3 * ff);
}

void pf_block_scratch_point(pf_bscratch *w, float *buf, const pf_hparams *hp, int T, int exact) {
  size_t d = (size_t)hp->n_embd, qkv = (size_t)pf_q_dim(hp) + 2 * (size_t)pf_kv_dim(hp), ff = (size_t)hp->n_ff;
  size_t big = qkv > 2 * ff ? qkv : 2 * ff;
  w->xb = buf;
  w->cat = w->xb + (size_t)T * d;
  w->g = w->cat + (size_t)T * big;
  w->u = w->g + (size_t)T * ff;
  w->h = w->u + (size_t)T * ff;
  w->exact = exact;
}

/* ------------------------------------------------------------ forward */

void pf_block_attn_in(const pf_model *m, const pf_layer *L, const float *x, const int *pos, int T, float *q,
                      float *k, float *v, pf_bscratch *w, pf_bsave *s) {
  const pf_hparams *hp = &m->hp;
  int qd = pf_q_dim(hp), kvd = pf_kv_dim(hp), exact = w->exact;
  if (s) memcpy(s->x_in, x, sizeof(float) * (size_t)T * hp->n_embd);
  norm_fwd(hp, w->xb, s ? s->mean1 : NULL, s ? s->rstd1 : NULL, x, L->attn_norm, L->attn_norm_b, T);
  if (L->wqkv.data) {   /* fused: one product, then split */
    int n = qd + 2 * kvd;
    matmul(w->cat, w->xb, &L->wqkv, T, exact);
    if (L->bqkv) pf_add_bias(w->cat, L->bqkv, T, n);
    take_cols(q, w->cat, T, n, 0, qd);
    take_cols(k, w->cat, T, n, qd, kvd);
    take_cols(v, w->cat, T, n, qd + kvd, kvd);
  } else {
    matmul(q, w->xb, &L->wq, T, exact);
    matmul(k, w->xb, &L->wk, T, exact);
    matmul(v, w->xb, &L->wv, T, exact);
  }
  if (L->bq) pf_add_bias(q, L->bq, T, qd);
  if (L->bk) pf_add_bias(k, L->bk, T, kvd);
  if (L->bv) pf_add_bias(v, L->bv, T, kvd);
  if (L->q_norm) {   /* per-head RMSNorm: rows of head_dim */
    if (s) memcpy(s->qr, q, sizeof(float) * (size_t)T * qd), memcpy(s->kr, k, sizeof(float) * (size_t)T * kvd);
    pf_rmsnorm_forward(q, s ? s->qrs : NULL, q, L->q_norm, T * hp->n_head, hp->head_dim, hp->norm_eps);
    pf_rmsnorm_forward(k, s ? s->krs : NULL, k, L->k_norm, T * hp->n_head_kv, hp->head_dim, hp->norm_eps);
  }
  if (hp->rope != PF_ROPE_NONE) {
    pf_rope_ex(q, pos, T, hp->n_head, hp->head_dim, &m->rope, 1.0f);
    pf_rope_ex(k, pos, T, hp->n_head_kv, hp->head_dim, &m->rope, 1.0f);
  }
}

void pf_block_attn_out(const pf_model *m, const pf_layer *L, const float *ao, int T, float *x, pf_bscratch *w) {
  const pf_hparams *hp = &m->hp;
  matmul(w->xb, ao, &L->wo, T, w->exact);
  if (L->bo) pf_add_bias(w->xb, L->bo, T, hp->n_embd);
  pf_add_inplace(x, w->xb, (size_t)T * hp->n_embd);
}

void pf_block_ffn(const pf_model *m, const pf_layer *L, float *x, int T, pf_bscratch *w, pf_bsave *s) {
  const pf_hparams *hp = &m->hp;
  int ff = hp->n_ff, exact = w->exact;
  float *g = s ? s->g : w->g, *u = s ? s->u : w->u;
  if (s) memcpy(s->x_mid, x, sizeof(float) * (size_t)T * hp->n_embd);
  norm_fwd(hp, w->xb, s ? s->mean2 : NULL, s ? s->rstd2 : NULL, x, L->ffn_norm, L->ffn_norm_b, T);
  if (hp->act == PF_ACT_GELU) {   /* g holds the pre-activation */
    matmul(g, w->xb, &L->w_up, T, exact);
    if (L->b_up) pf_add_bias(g, L->b_up, T, ff);
    pf_gelu_forward(w->h, g, (size_t)T * ff);
  } else {
    if (L->w_gate.data) {
      matmul(g, w->xb, &L->w_gate, T, exact);
      matmul(u, w->xb, &L->w_up, T, exact);
      if (L->b_gate) pf_add_bias(g, L->b_gate, T, ff);
      if (L->b_up) pf_add_bias(u, L->b_up, T, ff);
    } else {   /* fused: gate rows, then up rows */
      matmul(w->cat, w->xb, &L->w_up, T, exact);
      if (L->b_up) pf_add_bias(w->cat, L->b_up, T, 2 * ff);
      take_cols(g, w->cat, T, 2 * ff, 0, ff);
      take_cols(u, w->cat, T, 2 * ff, ff, ff);
    }
    pf_swiglu_forward(w->h, g, u, (size_t)T * ff);
  }
  matmul(w->xb, w->h, &L->w_down, T, exact);
  if (L->b_down) pf_add_bias(w->xb, L->b_down, T, hp->n_embd);
  pf_add_inplace(x, w->xb, (size_t)T * hp->n_embd);
}

void pf_block_embed(const pf_model *m, float *x, const int *tokens, const int *pos, int T, float *row) {
  int d = m->hp.n_embd;
  for (int t = 0; t < T; t++) {
    if (tokens) pf_wt_row(&m->tok_embd, tokens[t], x + (size_t)t * d);
    if (m->hp.rope == PF_ROPE_NONE && m->pos_embd.data) {   /* learned positions */
      pf_wt_row(&m->pos_embd, pos[t], row);
      for (int i = 0; i < d; i++) x[(size_t)t * d + i] += row[i];
    }
  }
}

void pf_block_final_norm(const pf_model *m, float *out, float *mean, float *rstd, const float *x, int T) {
  norm_fwd(&m->hp, out, mean, rstd, x, m->out_norm, m->out_norm_b, T);
}

void pf_block_final_norm_backward(const pf_model *m, float *dx, const float *dout, const float *x, const float *mean,
                                  const float *rstd, int T) {
  norm_bwd(&m->hp, dx, dout, x, m->out_norm, mean, rstd, T);
}

void pf_block_logits(const pf_model *m, float *logits, const float *xn, int T, int exact) {
  matmul(logits, xn, &m->output, T, exact);
  if (m->output_b) pf_add_bias(logits, m->output_b, T, m->hp.n_vocab);
}

/* ----------------------------------------------------------- backward
** Gradients accumulate (+=) into dx; the other buffers are scratch. */

void pf_block_ffn_backward(const pf_model *m, const pf_layer *L, float *dx, int T, const pf_bsave *s, pf_bgrad *b) {
  const pf_hparams *hp = &m->hp;
  int d = hp->n_embd, ff = hp->n_ff;
  size_t Tff = (size_t)T * ff;
  /* In the forward pass this was: x += h·Wdᵀ (+ bd), h = act(g, u) */
  memset(b->dh, 0, sizeof(float) * Tff);
  pf_matmul_backward_input_w(b->dh, dx, &L->w_down, T);
  memset(b->dg, 0, sizeof(float) * Tff);
  memset(b->dxb, 0, sizeof(float) * (size_t)T * d);
  if (hp->act == PF_ACT_GELU) {   /* h = gelu(g), g = xb·Wuᵀ + bu */
    pf_gelu_backward(b->dg, s->g, b->dh, Tff);
    pf_matmul_backward_input_w(b->dxb, b->dg, &L->w_up, T);
  } else {   /* h = silu(g)·u */
    memset(b->du, 0, sizeof(float) * Tff);
    pf_swiglu_backward(b->dg, b->du, b->dh, s->g, s->u, Tff);
    if (L->w_gate.data) {
      pf_matmul_backward_input_w(b->dxb, b->dg, &L->w_gate, T);
      pf_matmul_backward_input_w(b->dxb, b->du, &L->w_up, T);
    } else {   /* [g u] = xb·Wᵀ fused */
      put_cols(b->dcat, 2 * ff, 0, b->dg, T, ff);
      put_cols(b->dcat, 2 * ff, ff, b->du, T, ff);
      pf_matmul_backward_input_w(b->dxb, b->dcat, &L->w_up, T);
    }
  }
  /* xb = norm(x_mid) */
  norm_bwd(hp, dx, b->dxb, s->x_mid, L->ffn_norm, s->mean2, s->rstd2, T);
}

void pf_block_attn_out_backward(const pf_model *m, const pf_layer *L, const float *dx, int T, float *dao) {
  /* In the forward pass this was: x += ao·Woᵀ (+ bo) */
  memset(dao, 0, sizeof(float) * (size_t)T * pf_q_dim(&m->hp));
  pf_matmul_backward_input_w(dao, dx, &L->wo, T);
}

void pf_block_attn_in_backward(const pf_model *m, const pf_layer *L, float *dx, float *dq, float *dk, float *dv,
                               const int *pos, int T, const pf_bsave *s, pf_bgrad *b) {
  const pf_hparams *hp = &m->hp;
  int qd = pf_q_dim(hp), kvd = pf_kv_dim(hp);
  /* In the forward pass this was: q, k = rope(norm_h(xb·Wqᵀ + bq)), rope(norm_h(xb·Wkᵀ + bk)); v = xb·Wvᵀ + bv */
  if (hp->rope != PF_ROPE_NONE) {
    pf_rope_ex(dq, pos, T, hp->n_head, hp->head_dim, &m->rope, -1.0f);
    pf_rope_ex(dk, pos, T, hp->n_head_kv, hp->head_dim, &m->rope, -1.0f);
  }
  if (L->q_norm) {
    memset(b->dcat, 0, sizeof(float) * (size_t)T * (qd + kvd));
    float *dqr = b->dcat, *dkr = b->dcat + (size_t)T * qd;
    pf_rmsnorm_backward(dqr, dq, s->qr, L->q_norm, s->qrs, T * hp->n_head, hp->head_dim);
    pf_rmsnorm_backward(dkr, dk, s->kr, L->k_norm, s->krs, T * hp->n_head_kv, hp->head_dim);
    memcpy(dq, dqr, sizeof(float) * (size_t)T * qd);
    memcpy(dk, dkr, sizeof(float) * (size_t)T * kvd);
  }
  memset(b->dxb, 0, sizeof(float) * (size_t)T * hp->n_embd);
  if (L->wqkv.data) {
    int n = qd + 2 * kvd;
    put_cols(b->dcat, n, 0, dq, T, qd);
    put_cols(b->dcat, n, qd, dk, T, kvd);
    put_cols(b->dcat, n, qd + kvd, dv, T, kvd);
    pf_matmul_backward_input_w(b->dxb, b->dcat, &L->wqkv, T);
  } else {
    pf_matmul_backward_input_w(b->dxb, dq, &L->wq, T);
    pf_matmul_backward_input_w(b->dxb, dk, &L->wk, T);
    pf_matmul_backward_input_w(b->dxb, dv, &L->wv, T);
  }
  /* xb = norm(x_in) */
  norm_bwd(hp, dx, b->dxb, s->x_in, L->attn_norm, s->mean1, s->rstd1, T);
}
