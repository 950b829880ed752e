/*
** block.h — the transformer block's phases (block.c), shared by inference
** (forward.c) and training (backward.c). Internal to the engine.
*/
#ifndef PF_BLOCK_H
#define PF_BLOCK_H
#include "internal.h"

/* What a layer's backward needs, saved by its forward (training only). Shapes for T tokens. */
typedef struct pf_bsave {
  float *x_in;             /* (T, d) residual stream entering the layer */
  float *mean1, *rstd1;    /* (T) attention norm: mean (LayerNorm) and 1/std */
  float *qr, *kr;          /* (T, q_dim), (T, kv_dim): q, k before their per-head norm (q/k-norm models) */
  float *qrs, *krs;        /* (T, n_head), (T, n_head_kv): the per-head norms' 1/rms */
  float *x_mid;            /* (T, d) residual stream entering the feed-forward */
  float *mean2, *rstd2;    /* (T) feed-forward norm */
  float *g, *u;            /* (T, n_ff): gate and up before the activation (GELU: g) */
} pf_bsave;

/* Scratch of the forward phases; exact: f32 products only (training) */
typedef struct pf_bscratch {
  float *xb;               /* (T, d) */
  float *cat;              /* (T, max(q_dim + 2 kv_dim, 2 n_ff)) fused products */
  float *g, *u, *h;        /* (T, n_ff) */
  int exact;
} pf_bscratch;
size_t pf_block_scratch_floats(const pf_hparams *hp, int T);
void pf_block_scratch_point(pf_bscratch *w, float *buf, const pf_hparams *hp, int T, int exact);

/* Scratch of the backward phases */
typedef struct pf_bgrad {
  float *dxb;              /* (T, d) */
  float *dh, *dg, *du;     /* (T, n_ff) */
  float *dcat;             /* (T, max(q_dim + 2 kv_dim, 2 n_ff)) */
} pf_bgrad;

/* x (T, d) = token embeddings (tokens may be NULL: x is already set) + learned positions (gpt2); row (d) scratch */
void pf_block_embed(const pf_model *m, float *x, const int *tokens, const int *pos, int T, float *row);
/* q (T, q_dim), k, v (T, kv_dim) of layer L for the residual stream x; post-RoPE */
void pf_block_attn_in(const pf_model *m, const pf_layer *L, const float *x, const int *pos, int T, float *q,
                      float *k, float *v, pf_bscratch *w, pf_bsave *s);
/* x += ao (T, q_dim) · Woᵀ (+ bo) */
void pf_block_attn_out(const pf_model *m, const pf_layer *L, const float *ao, int T, float *x, pf_bscratch *w);
/* x += the feed-forward of norm(x) */
void pf_block_ffn(const pf_model *m, const pf_layer *L, float *x, int T, pf_bscratch *w, pf_bsave *s);
/* the final norm and the output head (+ output bias) */
void pf_block_final_norm(const pf_model *m, float *out, float *mean, float *rstd, const float *x, int T);
void pf_block_logits(const pf_model *m, float *logits, const float *xn, int T, int exact);

/* backward: dx (T, d) accumulates the gradient reaching the phase's input */
void pf_block_ffn_backward(const pf_model *m, const pf_layer *L, float *dx, int T, const pf_bsave *s, pf_bgrad *b);
/* dao (T, q_dim) = dx · Wo */
void pf_block_attn_out_backward(const pf_model *m, const pf_layer *L, const float *dx, int T, float *dao);
/* dx += the gradient through norm, projections, q/k norm and RoPE from dq, dk, dv (dq and dk are
** overwritten on the way) */
void pf_block_attn_in_backward(const pf_model *m, const pf_layer *L, float *dx, float *dq, float *dk, float *dv,
                               const int *pos, int T, const pf_bsave *s, pf_bgrad *b);
void pf_block_final_norm_backward(const pf_model *m, float *dx, const float *dout, const float *x, const float *mean,
                                  const float *rstd, int T);
#endif
