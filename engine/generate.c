/*
** generate.c — prompt in, continuation out: tokenize, prefill the prompt
** after the prefix in one batched forward pass, then decode one token at a
** time from the KV cache until EOS, a stop string, or max_tokens.
*/
#include "internal.h"

#include <stdlib.h>
#include <string.h>

const char *pf_finish_name(int finish) {
  switch (finish) {
    case PF_FINISH_STOP: return "stop";
    case PF_FINISH_EOS: return "eos";
    default: return "length";
  }
}

void pf_gen_result_clear(pf_gen_result *r) {
  free(r->text);
  memset(r, 0, sizeof *r);
}

/* Find the earliest stop string that now occurs in buf, searching only where
** the last append could have completed one. Returns its offset or -1. */
static long find_stop(const pf_sample_params *p, const char *buf, size_t len, size_t old_len) {
  long best = -1;
  for (int i = 0; i < p->n_stop; i++) {
    size_t sl = strlen(p->stop[i]);
    if (sl == 0 || sl > len) continue;
    size_t from = old_len >= sl ? old_len - sl + 1 : 0;
    for (size_t at = from; at + sl <= len; at++)
      if (memcmp(buf + at, p->stop[i], sl) == 0) {
        if (best < 0 || (long)at < best) best = (long)at;
        break;
      }
  }
  return best;
}

int pf_generate(const pf_model *m, const float *prefix, int prefix_len, const char *prompt, size_t prompt_len,
                const pf_sample_params *p, pf_cancel_fn cancel, void *cancel_arg, pf_gen_result *out, pf_err *err) {
  const pf_hparams *hp = &m->hp;
  int *ids = NULL, n_ids = 0, rc = PF_OK;
  pf_seq *seq = NULL;
  pf_work *w = NULL;
  pf_sampler *smp = NULL;
  float *logits = NULL;
  char *raw = NULL;
  size_t raw_len = 0, raw_cap = 0;
  memset(out, 0, sizeof *out);
  if (!m->has_weights) return pf_seterr(err, PF_ERR, "the model has no weights (vocab-only GGUF): it can tokenize but not generate");
  if (p->max_tokens < 0) return pf_seterr(err, PF_ERR, "max_tokens must be >= 0, got %d", p->max_tokens);
  if ((rc = pf_tokenize(m, prompt, prompt_len, m->vocab.add_bos, &ids, &n_ids, err))) return rc;
  if (n_ids == 0) { free(ids); return pf_seterr(err, PF_ERR, "the prompt is empty and the model adds no BOS token"); }
  long need = (long)prefix_len + n_ids + p->max_tokens;
  if (need > hp->n_ctx) {
    if (prefix_len > 0)
      rc = pf_seterr(err, PF_TOOBIG, "prefix (%d positions) + prompt (%d tokens) + max_tokens (%d) = %ld exceeds the model's context of %d",
                     prefix_len, n_ids, p->max_tokens, need, hp->n_ctx);
    else
      rc = pf_seterr(err, PF_TOOBIG, "prompt (%d tokens) + max_tokens (%d) = %ld exceeds the model's context of %d",
                     n_ids, p->max_tokens, need, hp->n_ctx);
    goto done;
  }
  out->n_prompt = n_ids;
  if (!(seq = pf_seq_new(m, (int)need, err))) { rc = err ? err->code : PF_NOMEM; goto done; }
  if (prefix_len > 0 && (rc = pf_seq_set_prefix(seq, prefix, prefix_len, err))) goto done;
  w = pf_work_new();
  smp = pf_sampler_new(p, hp->n_vocab);
  logits = malloc(sizeof(float) * (size_t)hp->n_vocab);
  int *hist = realloc(ids, sizeof(int) * (size_t)(n_ids + p->max_tokens + 1));
  if (!w || !smp || !logits || !hist) { rc = pf_seterr(err, PF_NOMEM, "out of memory starting generation"); goto done; }
  ids = hist;
  out->finish = PF_FINISH_LENGTH;
  if (p->max_tokens == 0) goto finish;
  if ((rc = pf_forward(m, w, &seq, &n_ids, 1, ids, logits, 0, err))) goto done;
  int n_hist = n_ids;
  for (int i = 0; i < p->max_tokens; i++) {
    if (cancel && cancel(cancel_arg)) { rc = pf_seterr(err, PF_INTERRUPT, "interrupted"); goto done; }
    int tok = pf_sampler_sample(smp, logits, ids, n_hist);
    if (tok == m->vocab.eos) { out->finish = PF_FINISH_EOS; break; }
    ids[n_hist++] = tok;
    out->n_tokens++;
    char piece[256];
    int k = pf_token_bytes(m, tok, piece, sizeof piece);
    if (k < 0) k = 0;
    if (m->vocab.type[tok] == PF_TT_CONTROL) k = 0;
    if (raw_len + (size_t)k + 1 > raw_cap) {
      size_t nc = raw_cap * 2 + (size_t)k + 64;
      char *nr = realloc(raw, nc);
      if (!nr) { rc = pf_seterr(err, PF_NOMEM, "out of memory during generation"); goto done; }
      raw = nr; raw_cap = nc;
    }
    memcpy(raw + raw_len, piece, (size_t)k);
    size_t old = raw_len;
    raw_len += (size_t)k;
    long at = find_stop(p, raw, raw_len, old);
    if (at >= 0) { raw_len = (size_t)at; out->finish = PF_FINISH_STOP; break; }
    if (i + 1 == p->max_tokens) break;
    int one = 1;
    if ((rc = pf_forward(m, w, &seq, &one, 1, &tok, logits, 0, err))) goto done;
  }
finish:
  out->text = pf_utf8_clean(raw ? raw : "", raw_len, 1, &out->len);
  if (!out->text) rc = pf_seterr(err, PF_NOMEM, "out of memory during generation");
done:
  if (rc) pf_gen_result_clear(out);
  free(ids); free(logits); free(raw);
  pf_seq_free(seq);
  pf_work_free(w);
  pf_sampler_free(smp);
  return rc;
}
