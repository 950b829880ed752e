/*
** forward.c — the batched inference forward pass with per-sequence KV caches.
**
** One call takes new tokens for several independent sequences. The
** position-wise work (norms, projections, feed-forward, output head) runs on
** all tokens at once as matrix-matrix products; attention runs per sequence
** over that sequence's own cache, whose first n_prefix positions may hold a
** prefix. A sequence's token at cache position p attends to positions 0..p.
*/
#include "block.h"

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
  s->kv_dim = pf_kv_dim(hp);
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

int pf_seq_copy(pf_seq *dst, const pf_seq *src) {
  if (dst->n_ctx < src->n_pos || dst->kv_dim != src->kv_dim || dst->n_layer != src->n_layer) return PF_ERR;
  size_t kvd = (size_t)src->kv_dim, n = (size_t)src->n_pos * kvd * sizeof(float);
  for (int l = 0; l < src->n_layer; l++) {
    memcpy(dst->k + (size_t)l * dst->n_ctx * kvd, src->k + (size_t)l * src->n_ctx * kvd, n);
    memcpy(dst->v + (size_t)l * dst->n_ctx * kvd, src->v + (size_t)l * src->n_ctx * kvd, n);
  }
  dst->n_pos = src->n_pos;
  dst->n_prefix = src->n_prefix;
  return PF_OK;
}

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

/* out (T, q_dim): attention of each new token over its own sequence. One task per token and group of
** heads (groups when there are fewer tokens than threads: decode), each with its own row of the scratch
** `att`; a head is computed the same way whatever the grouping. */
typedef struct attn_job {
  float *out, *att;
  const float *q;
  pf_seq **seqs;
  const int *seq_of, *pos;
  int layer, att_stride, hsplit;
  const pf_hparams *hp;
} attn_job;

static void attn_task(void *arg, int i) {
  const attn_job *j = arg;
  const pf_hparams *hp = j->hp;
  int t = i / j->hsplit, g = i % j->hsplit, per = (hp->n_head + j->hsplit - 1) / j->hsplit;
  int h0 = g * per, h1 = h0 + per < hp->n_head ? h0 + per : hp->n_head;
  int hd = hp->head_dim, kvd = pf_kv_dim(hp), grp = hp->n_head / hp->n_head_kv;
  float scale = 1.0f / sqrtf((float)hd), *att = j->att + (size_t)i * j->att_stride;
  const pf_seq *s = j->seqs[j->seq_of[t]];
  const float *K = s->k + (size_t)j->layer * s->n_ctx * kvd;
  const float *V = s->v + (size_t)j->layer * s->n_ctx * kvd;
  int n = j->pos[t] + 1;
  for (int h = h0; h < h1; h++) {
    int kh = h / grp;
    pf_attend(j->out + ((size_t)t * hp->n_head + h) * hd, j->q + ((size_t)t * hp->n_head + h) * hd,
              K + (size_t)kh * hd, V + (size_t)kh * hd, n, kvd, hd, scale, att);
  }
}

int pf_forward(const pf_model *m, pf_work *w, pf_seq **seqs, const int *n_tok, int n_seq, const int *tokens,
               float *logits, int all_logits, pf_err *err) {
  return pf_forward_rows(m, w, seqs, n_tok, n_seq, tokens, all_logits ? n_tok : NULL, logits, err);
}

int pf_forward_rows(const pf_model *m, pf_work *w, pf_seq **seqs, const int *n_tok, int n_seq, const int *tokens,
                    const int *n_out, float *logits, pf_err *err) {
  const pf_hparams *hp = &m->hp;
  if (!m->has_weights) return pf_seterr(err, PF_ERR, "the model has no weights (vocab-only GGUF)");
  int T = 0;
  for (int i = 0; i < n_seq; i++) {
    if (n_tok[i] < 0 || seqs[i]->n_pos + n_tok[i] > seqs[i]->n_ctx)
      return pf_seterr(err, PF_TOOBIG, "sequence %d: %d positions used + %d new tokens exceed its context of %d", i,
                       seqs[i]->n_pos, n_tok[i], seqs[i]->n_ctx);
    if (hp->rope == PF_ROPE_NONE && seqs[i]->n_pos + n_tok[i] > hp->n_ctx)
      return pf_seterr(err, PF_TOOBIG, "sequence %d: position %d is past the model's %d learned positions", i,
                       seqs[i]->n_pos + n_tok[i] - 1, hp->n_ctx);
    if (n_out && (n_out[i] < 0 || n_out[i] > n_tok[i]))
      return pf_seterr(err, PF_ERR, "sequence %d: %d logits rows asked of %d new tokens", i, n_out[i], n_tok[i]);
    T += n_tok[i];
  }
  for (int t = 0; t < T; t++)
    if (tokens[t] < 0 || tokens[t] >= hp->n_vocab)
      return pf_seterr(err, PF_ERR, "token id %d is outside the vocabulary (0..%d)", tokens[t], hp->n_vocab - 1);
  if (T == 0) return PF_OK;

  int d = hp->n_embd, qd = pf_q_dim(hp), kvd = pf_kv_dim(hp);
  int max_ctx = 0;
  for (int i = 0; i < n_seq; i++) if (seqs[i]->n_ctx > max_ctx) max_ctx = seqs[i]->n_ctx;
  /* fewer tokens than threads (decode): each token's heads in groups, so attention uses every thread */
  int nt = pf_get_threads(), hsplit = T >= nt ? 1 : (nt + T - 1) / T;
  if (hsplit > hp->n_head) hsplit = hp->n_head;
  size_t need = (size_t)T * ((size_t)d + 2 * (size_t)qd + 2 * (size_t)kvd + (size_t)hsplit * max_ctx) +
                pf_block_scratch_floats(hp, T);
  if (work_reserve(w, need, 2 * (size_t)T))
    return pf_seterr(err, PF_NOMEM, "out of memory for forward scratch (%zu MB)", need * 4 >> 20);
  float *x = w->buf, *q = x + (size_t)T * d, *ao = q + (size_t)T * qd, *k = ao + (size_t)T * qd;
  float *v = k + (size_t)T * kvd, *att = v + (size_t)T * kvd;
  pf_bscratch bs;
  pf_block_scratch_point(&bs, att + (size_t)T * hsplit * max_ctx, hp, T, 0);
  int *seq_of = w->ibuf, *pos = w->ibuf + T;
  for (int i = 0, t = 0; i < n_seq; i++)
    for (int j = 0; j < n_tok[i]; j++, t++) { seq_of[t] = i; pos[t] = seqs[i]->n_pos + j; }

  /* learned positions: the prompt after a prefix of P starts at position P */
  pf_block_embed(m, x, tokens, pos, T, bs.xb);
  for (int l = 0; l < hp->n_layer; l++) {
    const pf_layer *L = &m->layers[l];
    pf_block_attn_in(m, L, x, pos, T, q, k, v, &bs, NULL);
    for (int t = 0; t < T; t++) {
      pf_seq *s = seqs[seq_of[t]];
      size_t at = ((size_t)l * s->n_ctx + pos[t]) * kvd;
      memcpy(s->k + at, k + (size_t)t * kvd, sizeof(float) * kvd);
      memcpy(s->v + at, v + (size_t)t * kvd, sizeof(float) * kvd);
    }
    attn_job j = {ao, att, q, seqs, seq_of, pos, l, max_ctx, hsplit, hp};
    pf_parallel_for(T * hsplit, attn_task, &j);
    pf_block_attn_out(m, L, ao, T, x, &bs);
    pf_block_ffn(m, L, x, T, &bs, NULL);
  }

  /* rows whose logits are wanted: each sequence's last n_out[i] tokens, or its last (a zero row when it has none) */
  int R = 0;
  float *xr = bs.xb;
  for (int i = 0, t = 0; i < n_seq; i++) {
    t += n_tok[i];
    int k = n_out ? n_out[i] : 1;
    if (k > 0 && n_tok[i] > 0) memcpy(xr + (size_t)R * d, x + (size_t)(t - k) * d, sizeof(float) * (size_t)k * d);
    else if (k > 0) memset(xr + (size_t)R * d, 0, sizeof(float) * d);
    R += k;
  }
  pf_block_final_norm(m, xr, NULL, NULL, xr, R);
  pf_block_logits(m, logits, xr, R, 0);
  for (int i = 0; i < n_seq; i++) seqs[i]->n_pos += n_tok[i];
  return PF_OK;
}
