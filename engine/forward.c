/*
** forward.c — the batched inference forward pass with per-sequence KV caches.
**
** One call takes new tokens for several independent sequences. The
** position-wise work (norms, projections, feed-forward, output head) runs on
** all tokens at once as matrix-matrix products; attention runs per sequence
** over that sequence's own cache, whose first n_prefix positions may hold a
** prefix. A sequence's token at cache position p attends to positions 0..p.
*/
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct pf_work {
  size_t cap;      /* floats in buf */
  float *buf;
  size_t icap;
  int *ibuf;
};

pf_work *pf_work_new(void) { return calloc(1, sizeof(pf_work)); }
void pf_work_free(pf_work *w) {
  if (!w) return;
  free(w->buf);
  free(w->ibuf);
  free(w);
}
static int work_reserve(pf_work *w, size_t nf, size_t ni) {
  if (nf > w->cap) {
    float *b = realloc(w->buf, nf * sizeof(float));
    if (!b) return -1;
    w->buf = b; w->cap = nf;
  }
  if (ni > w->icap) {
    int *b = realloc(w->ibuf, ni * sizeof(int));
    if (!b) return -1;
    w->ibuf = b; w->icap = ni;
  }
  return 0;
}

pf_seq *pf_seq_new(const pf_model *m, int n_ctx, pf_err *err) {
  const pf_hparams *hp = &m->hp;
  pf_seq *s = calloc(1, sizeof *s);
  if (!s) { pf_seterr(err, PF_NOMEM, "out of memory"); return NULL; }
  s->n_ctx = n_ctx;
  s->n_layer = hp->n_layer;
  s->kv_dim = hp->n_head_kv * hp->head_dim;
  size_t n = (size_t)hp->n_layer * n_ctx * s->kv_dim;
  s->k = malloc(n * sizeof(float));
  s->v = malloc(n * sizeof(float));
  if (!s->k || !s->v) {
    pf_seq_free(s);
    pf_seterr(err, PF_NOMEM, "out of memory for a KV cache of %d positions (%zu MB)", n_ctx, (2 * n * 4) >> 20);
    return NULL;
  }
  return s;
}

void pf_seq_free(pf_seq *s) {
  if (!s) return;
  free(s->k);
  free(s->v);
  free(s);
}

void pf_seq_reset(pf_seq *s) { s->n_pos = s->n_prefix; }

int pf_seq_set_prefix(pf_seq *s, const float *kv, int prefix_len, pf_err *err) {
  if (prefix_len < 0 || prefix_len > s->n_ctx)
    return pf_seterr(err, PF_TOOBIG, "prefix of %d positions does not fit a cache of %d", prefix_len, s->n_ctx);
  size_t kvd = (size_t)s->kv_dim;
  for (int l = 0; l < s->n_layer; l++) {
    const float *src = kv + (size_t)l * 2 * prefix_len * kvd;
    memcpy(s->k + (size_t)l * s->n_ctx * kvd, src, (size_t)prefix_len * kvd * sizeof(float));
    memcpy(s->v + (size_t)l * s->n_ctx * kvd, src + (size_t)prefix_len * kvd, (size_t)prefix_len * kvd * sizeof(float));
  }
  s->n_prefix = prefix_len;
  s->n_pos = prefix_len;
  return PF_OK;
}

/* out (T, n_head*hd): attention of each new token over its own sequence.
** One task per token; each uses its own row of the scratch `att`. */
typedef struct attn_job {
  float *out, *att;
  const float *q;
  pf_seq **seqs;
  const int *seq_of, *pos;
  int layer, att_stride;
  const pf_hparams *hp;
} attn_job;

static void attn_task(void *arg, int t) {
  const attn_job *j = arg;
  const pf_hparams *hp = j->hp;
  int hd = hp->head_dim, kvd = hp->n_head_kv * hd, grp = hp->n_head / hp->n_head_kv;
  float scale = 1.0f / sqrtf((float)hd), *att = j->att + (size_t)t * j->att_stride;
  const pf_seq *s = j->seqs[j->seq_of[t]];
  const float *K = s->k + (size_t)j->layer * s->n_ctx * kvd;
  const float *V = s->v + (size_t)j->layer * s->n_ctx * kvd;
  int n = j->pos[t] + 1;
  for (int h = 0; h < hp->n_head; h++) {
    int kh = h / grp;
    pf_attend(j->out + ((size_t)t * hp->n_head + h) * hd, j->q + ((size_t)t * hp->n_head + h) * hd,
              K + (size_t)kh * hd, V + (size_t)kh * hd, n, kvd, hd, scale, att);
  }
}

static void attention(float *out, float *att, int att_stride, const float *q, pf_seq **seqs, const int *seq_of,
                      const int *pos, int T, int layer, const pf_hparams *hp) {
  attn_job j = {out, att, q, seqs, seq_of, pos, layer, att_stride, hp};
  pf_parallel_for(T, attn_task, &j);
}

int pf_forward(const pf_model *m, pf_work *w, pf_seq **seqs, const int *n_tok, int n_seq, const int *tokens,
               float *logits, int all_logits, pf_err *err) {
  const pf_hparams *hp = &m->hp;
  if (!m->has_weights) return pf_seterr(err, PF_ERR, "the model has no weights (vocab-only GGUF)");
  int T = 0, gpt2 = hp->arch == PF_ARCH_GPT2;
  for (int i = 0; i < n_seq; i++) {
    if (n_tok[i] < 0 || seqs[i]->n_pos + n_tok[i] > seqs[i]->n_ctx)
      return pf_seterr(err, PF_TOOBIG, "sequence %d: %d positions used + %d new tokens exceed its context of %d", i,
                       seqs[i]->n_pos, n_tok[i], seqs[i]->n_ctx);
    if (gpt2 && seqs[i]->n_pos + n_tok[i] > hp->n_ctx)
      return pf_seterr(err, PF_TOOBIG, "sequence %d: position %d is past the model's %d learned positions", i,
                       seqs[i]->n_pos + n_tok[i] - 1, hp->n_ctx);
    T += n_tok[i];
  }
  for (int t = 0; t < T; t++)
    if (tokens[t] < 0 || tokens[t] >= hp->n_vocab)
      return pf_seterr(err, PF_ERR, "token id %d is outside the vocabulary (0..%d)", tokens[t], hp->n_vocab - 1);
  if (T == 0) return PF_OK;

  int d = hp->n_embd, hd = hp->head_dim, kvd = hp->n_head_kv * hd, ff = hp->n_ff;
  int max_ctx = 0;
  for (int i = 0; i < n_seq; i++) if (seqs[i]->n_ctx > max_ctx) max_ctx = seqs[i]->n_ctx;
  size_t need = (size_t)T * (4 * (size_t)d + 2 * (size_t)kvd + 2 * (size_t)ff + 3 * (size_t)d + (size_t)max_ctx);
  if (work_reserve(w, need, 2 * (size_t)T))
    return pf_seterr(err, PF_NOMEM, "out of memory for forward scratch (%zu MB)", need * 4 >> 20);
  float *x = w->buf, *xb = x + (size_t)T * d, *q = xb + (size_t)T * d, *ao = q + (size_t)T * d;
  float *k = ao + (size_t)T * d, *v = k + (size_t)T * kvd, *hb = v + (size_t)T * kvd, *hb2 = hb + (size_t)T * ff;
  float *qkv = hb2 + (size_t)T * ff, *att = qkv + (size_t)T * 3 * d;
  int *seq_of = w->ibuf, *pos = w->ibuf + T;
  for (int i = 0, t = 0; i < n_seq; i++)
    for (int j = 0; j < n_tok[i]; j++, t++) { seq_of[t] = i; pos[t] = seqs[i]->n_pos + j; }

  for (int t = 0; t < T; t++) {
    pf_wt_row(&m->tok_embd, tokens[t], x + (size_t)t * d);
    if (gpt2) {   /* learned positions: the prompt after a prefix of P starts at position P */
      pf_wt_row(&m->pos_embd, pos[t], xb);
      for (int i = 0; i < d; i++) x[(size_t)t * d + i] += xb[i];
    }
  }

  for (int l = 0; l < hp->n_layer; l++) {
    const pf_layer *L = &m->layers[l];
    if (gpt2) {
      pf_layernorm_forward(xb, NULL, NULL, x, L->attn_norm, L->attn_norm_b, T, d, hp->norm_eps);
      pf_matmul_w(qkv, xb, &L->wqkv, T);
      pf_add_bias(qkv, L->bqkv, T, 3 * d);
      for (int t = 0; t < T; t++) {
        memcpy(q + (size_t)t * d, qkv + (size_t)t * 3 * d, sizeof(float) * d);
        memcpy(k + (size_t)t * kvd, qkv + (size_t)t * 3 * d + d, sizeof(float) * d);
        memcpy(v + (size_t)t * kvd, qkv + (size_t)t * 3 * d + 2 * d, sizeof(float) * d);
      }
    } else {
      pf_rmsnorm(xb, x, L->attn_norm, T, d, hp->norm_eps);
      pf_matmul_w(q, xb, &L->wq, T);
      pf_matmul_w(k, xb, &L->wk, T);
      pf_matmul_w(v, xb, &L->wv, T);
      pf_rope(q, pos, T, hp->n_head, hd, hp->rope_dim, hp->rope_base);
      pf_rope(k, pos, T, hp->n_head_kv, hd, hp->rope_dim, hp->rope_base);
    }
    for (int t = 0; t < T; t++) {
      pf_seq *s = seqs[seq_of[t]];
      size_t at = ((size_t)l * s->n_ctx + pos[t]) * kvd;
      memcpy(s->k + at, k + (size_t)t * kvd, sizeof(float) * kvd);
      memcpy(s->v + at, v + (size_t)t * kvd, sizeof(float) * kvd);
    }
    attention(ao, att, max_ctx, q, seqs, seq_of, pos, T, l, hp);
    pf_matmul_w(xb, ao, &L->wo, T);
    if (gpt2) pf_add_bias(xb, L->bo, T, d);
    pf_add_inplace(x, xb, (size_t)T * d);

    if (gpt2) {
      pf_layernorm_forward(xb, NULL, NULL, x, L->ffn_norm, L->ffn_norm_b, T, d, hp->norm_eps);
      pf_matmul_w(hb, xb, &L->w_up, T);
      pf_add_bias(hb, L->b_up, T, ff);
      pf_gelu_forward(hb, hb, (size_t)T * ff);
    } else {
      pf_rmsnorm(xb, x, L->ffn_norm, T, d, hp->norm_eps);
      pf_matmul_w(hb, xb, &L->w_gate, T);
      pf_matmul_w(hb2, xb, &L->w_up, T);
      pf_swiglu_forward(hb, hb, hb2, (size_t)T * ff);   /* silu(gate) * up */
    }
    pf_matmul_w(xb, hb, &L->w_down, T);
    if (gpt2) pf_add_bias(xb, L->b_down, T, d);
    pf_add_inplace(x, xb, (size_t)T * d);
  }

  /* rows whose logits are wanted: all, or each sequence's last */
  int R = all_logits ? T : n_seq;
  if (all_logits) memcpy(xb, x, sizeof(float) * (size_t)T * d);
  else
    for (int i = 0, t = 0; i < n_seq; i++) {
      t += n_tok[i];
      if (n_tok[i] > 0) memcpy(xb + (size_t)i * d, x + (size_t)(t - 1) * d, sizeof(float) * d);
      else memset(xb + (size_t)i * d, 0, sizeof(float) * d);
    }
  if (gpt2) pf_layernorm_forward(xb, NULL, NULL, xb, m->out_norm, m->out_norm_b, R, d, hp->norm_eps);
  else pf_rmsnorm(xb, xb, m->out_norm, R, d, hp->norm_eps);
  pf_matmul_w(logits, xb, &m->output, R);
  for (int i = 0; i < n_seq; i++) seqs[i]->n_pos += n_tok[i];
  return PF_OK;
}
