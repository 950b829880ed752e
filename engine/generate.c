/*
** generate.c — prompts in, continuations out.
**
** pf_generate_batch decodes many sequences together: each row has its own
** prefix (or none), prompt and KV cache. All prompts are prefilled in one
** batched forward pass; then every step runs one forward pass over the last
** token of every unfinished row, so the weights are read once per step for
** all of them. Rows finish on EOS, a stop string or max_tokens, and leave the
** batch. pf_generate is the same code with one row, so a row's greedy text
** does not depend on what it was batched with.
*/
#include "internal.h"

#include <math.h>
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

/* one row in flight */
typedef struct row {
  pf_batch_item *it;
  pf_seq *seq;
  pf_sampler *smp;
  int *ids, n_ids, n_prompt;
  char *raw;
  size_t raw_len, raw_cap;
  int done;
} row;

static void row_free(row *r) {
  pf_seq_free(r->seq);
  pf_sampler_free(r->smp);
  free(r->ids);
  free(r->raw);
}

/* Append token bytes; check stop strings. Returns 1 if the row finished. */
static int row_append(const pf_model *m, const pf_sample_params *p, row *r, int tok, pf_err *err) {
  char piece[256];
  int k = pf_token_bytes(m, tok, piece, sizeof piece);
  if (k < 0 || (m->vocab.kind == PF_TOK_SPM && m->vocab.type[tok] == PF_TT_CONTROL)) k = 0;
  if (r->raw_len + (size_t)k + 1 > r->raw_cap) {
    size_t nc = r->raw_cap * 2 + (size_t)k + 64;
    char *nr = realloc(r->raw, nc);
    if (!nr) return pf_seterr(err, PF_NOMEM, "out of memory during generation"), -1;
    r->raw = nr;
    r->raw_cap = nc;
  }
  memcpy(r->raw + r->raw_len, piece, (size_t)k);
  size_t old = r->raw_len;
  r->raw_len += (size_t)k;
  long at = find_stop(p, r->raw, r->raw_len, old);
  if (at >= 0) { r->raw_len = (size_t)at; r->it->res.finish = PF_FINISH_STOP; return 1; }
  return 0;
}

int pf_prefill_chunk = 512;   /* prompt tokens of one sequence per prefill pass (tests change it) */

/* Decode rows [0, n) together (n <= the batch size). */
static int run_batch(const pf_model *m, row *rows, int n, const pf_sample_params *p, pf_cancel_fn cancel, void *carg,
                     pf_err *err) {
  const pf_hparams *hp = &m->hp;
  int rc = PF_OK;
  pf_work *w = pf_work_new();
  pf_seq **seqs = malloc(sizeof(pf_seq *) * (size_t)n);
  int *ntok = malloc(sizeof(int) * (size_t)n), *toks = NULL, *act = malloc(sizeof(int) * (size_t)n);
  float *logits = malloc(sizeof(float) * (size_t)n * hp->n_vocab);
  size_t total = 0;
  for (int i = 0; i < n; i++) total += (size_t)rows[i].n_prompt;
  toks = malloc(sizeof(int) * (total + (size_t)n));
  if (!w || !seqs || !ntok || !act || !logits || !toks) { rc = pf_seterr(err, PF_NOMEM, "out of memory for a batch of %d", n); goto done; }

  /* prefill every prompt (rows with max_tokens 0 take no part), pf_prefill_chunk tokens of each per pass, as
  ** llama.cpp's micro-batches: a pass's activations stay bounded however long the prompts, and an interrupt
  ** is seen between passes */
  int na = 0;
  for (int i = 0; i < n; i++)
    if (!rows[i].done) act[na++] = i;
  int *pre = calloc((size_t)n + 1, sizeof *pre), *slot = malloc(sizeof(int) * ((size_t)n + 1));
  float *pass_lg = malloc(sizeof(float) * (size_t)n * hp->n_vocab);
  if (!pre || !slot || !pass_lg) { rc = pf_seterr(err, PF_NOMEM, "out of memory for a batch of %d", n); goto prefill_done; }
  for (;;) {
    int k = 0;
    size_t o = 0;
    for (int a = 0; a < na; a++) {
      row *r = &rows[act[a]];
      int c = r->n_prompt - pre[a] < pf_prefill_chunk ? r->n_prompt - pre[a] : pf_prefill_chunk;
      if (c <= 0) continue;
      seqs[k] = r->seq;
      ntok[k] = c;
      memcpy(toks + o, r->ids + pre[a], sizeof(int) * (size_t)c);
      o += (size_t)c;
      pre[a] += c;
      slot[k++] = a;
    }
    if (!k) break;
    if (cancel && cancel(carg)) { rc = pf_seterr(err, PF_INTERRUPT, "interrupted"); goto prefill_done; }
    if ((rc = pf_forward(m, w, seqs, ntok, k, toks, pass_lg, 0, err))) goto prefill_done;
    for (int j = 0; j < k; j++)   /* a row whose prompt is all in: its next-token logits */
      if (pre[slot[j]] == rows[act[slot[j]]].n_prompt)
        memcpy(logits + (size_t)slot[j] * hp->n_vocab, pass_lg + (size_t)j * hp->n_vocab, sizeof(float) * (size_t)hp->n_vocab);
  }
prefill_done:
  free(pre);
  free(slot);
  free(pass_lg);
  if (rc) goto done;
  while (na > 0) {
    if (cancel && cancel(carg)) { rc = pf_seterr(err, PF_INTERRUPT, "interrupted"); goto done; }
    int nn = 0;
    for (int a = 0; a < na; a++) {
      row *r = &rows[act[a]];
      float *lg = logits + (size_t)a * hp->n_vocab;
      if (p->ignore_eos)
        for (int e = 0; e < m->vocab.n_eog; e++) lg[m->vocab.eog[e]] = -INFINITY;
      int tok = pf_sampler_sample(r->smp, lg, r->ids, r->n_ids);
      int fin = 0;
      if (pf_vocab_is_eog(&m->vocab, tok)) { r->it->res.finish = PF_FINISH_EOS; fin = 1; }
      else {
        r->ids[r->n_ids++] = tok;
        r->it->res.n_tokens++;
        int s = row_append(m, p, r, tok, err);
        if (s < 0) { rc = PF_NOMEM; goto done; }
        fin = s || r->it->res.n_tokens == p->max_tokens;
      }
      if (fin) { r->done = 1; continue; }
      act[nn] = act[a];
      seqs[nn] = r->seq;
      ntok[nn] = 1;
      toks[nn] = tok;
      nn++;
    }
    na = nn;
    if (na && (rc = pf_forward(m, w, seqs, ntok, na, toks, logits, 0, err))) goto done;
  }
done:
  free(seqs); free(ntok); free(toks); free(act); free(logits);
  pf_work_free(w);
  return rc;
}

static int generate_batch(const pf_model *m, pf_batch_item *items, int n, int max_batch, const pf_sample_params *p,
                          pf_cancel_fn cancel, void *carg, int *bad_item, pf_err *err) {
  const pf_hparams *hp = &m->hp;
  if (bad_item) *bad_item = -1;
  if (!m->has_weights) return pf_seterr(err, PF_ERR, "the model has no weights (vocab-only GGUF): it can tokenize but not generate");
  if (p->max_tokens < 0) return pf_seterr(err, PF_ERR, "max_tokens must be >= 0, got %d", p->max_tokens);
  if (max_batch < 1) max_batch = 1;
  for (int i = 0; i < n; i++) memset(&items[i].res, 0, sizeof items[i].res);
  row *rows = calloc((size_t)(max_batch < n ? max_batch : n) + 1, sizeof *rows);
  if (!rows) return pf_seterr(err, PF_NOMEM, "out of memory");
  int rc = PF_OK;
  for (int b0 = 0; b0 < n && !rc; b0 += max_batch) {
    int nb = n - b0 < max_batch ? n - b0 : max_batch;
    memset(rows, 0, sizeof *rows * (size_t)nb);
    int i;
    for (i = 0; i < nb; i++) {
      pf_batch_item *it = &items[b0 + i];
      row *r = &rows[i];
      r->it = it;
      if ((rc = pf_tokenize(m, it->prompt, it->prompt_len, 1, &r->ids, &r->n_ids, err))) break;
      if (r->n_ids == 0) { rc = pf_seterr(err, PF_ERR, "the prompt is empty and the model adds no BOS token"); break; }
      long need = (long)it->prefix_len + r->n_ids + p->max_tokens;
      if (need > hp->n_ctx) {
        if (it->prefix_len > 0)
          rc = pf_seterr(err, PF_TOOBIG, "prefix (%d positions) + prompt (%d tokens) + max_tokens (%d) = %ld exceeds the model's context of %d",
                         it->prefix_len, r->n_ids, p->max_tokens, need, hp->n_ctx);
        else
          rc = pf_seterr(err, PF_TOOBIG, "prompt (%d tokens) + max_tokens (%d) = %ld exceeds the model's context of %d",
                         r->n_ids, p->max_tokens, need, hp->n_ctx);
        break;
      }
      r->n_prompt = r->n_ids;
      it->res.n_prompt = r->n_ids;
      it->res.finish = PF_FINISH_LENGTH;
      int *grown = realloc(r->ids, sizeof(int) * (size_t)(r->n_ids + p->max_tokens + 1));
      r->seq = pf_seq_new(m, (int)need, err);
      r->smp = pf_sampler_new(p, hp->n_vocab);
      if (!grown || !r->seq || !r->smp) { if (grown) r->ids = grown; rc = pf_seterr(err, PF_NOMEM, "out of memory starting generation"); break; }
      r->ids = grown;
      if (it->prefix_len > 0 && (rc = pf_seq_set_prefix(r->seq, it->prefix, it->prefix_len, err))) break;
      r->done = p->max_tokens == 0;
    }
    if (rc && bad_item) *bad_item = b0 + i;   /* the row that could not start */
    if (!rc) rc = run_batch(m, rows, nb, p, cancel, carg, err);
    for (i = 0; i < nb && !rc; i++) {
      row *r = &rows[i];
      r->it->res.text = pf_utf8_clean(r->raw ? r->raw : "", r->raw_len, 1, &r->it->res.len);
      if (!r->it->res.text) rc = pf_seterr(err, PF_NOMEM, "out of memory during generation");
    }
    for (i = 0; i < nb; i++) row_free(&rows[i]);
  }
  free(rows);
  if (rc) for (int i = 0; i < n; i++) pf_gen_result_clear(&items[i].res);
  return rc;
}

int pf_generate(const pf_model *m, const float *prefix, int prefix_len, const char *prompt, size_t prompt_len,
                const pf_sample_params *p, pf_cancel_fn cancel, void *cancel_arg, pf_gen_result *out, pf_err *err) {
  pf_batch_item it = {prefix, prefix_len, prompt, prompt_len, {0}};
  int rc = pf_generate_batch(m, &it, 1, 1, p, cancel, cancel_arg, NULL, err);
  *out = it.res;
  return rc;
}

/* The call's thread count applies to this call only. */
int pf_generate_batch(const pf_model *m, pf_batch_item *items, int n, int max_batch, const pf_sample_params *p,
                      pf_cancel_fn cancel, void *carg, int *bad_item, pf_err *err) {
  int old = pf_threads_push(p->threads);
  int rc = generate_batch(m, items, n, max_batch, p, cancel, carg, bad_item, err);
  pf_threads_pop(old);
  return rc;
}
