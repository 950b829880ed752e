/*
** tokenizer_bpe.c — byte-level BPE (tokenizer.ggml.model = gpt2).
** Not implemented yet: tokenizing with it reports so clearly (issue #4).
*/
#include "internal.h"

int pf_bpe_encode(const pf_vocab *v, const char *text, size_t len, int **ids, int *n, int *cap, pf_err *err) {
  (void)v; (void)text; (void)len; (void)ids; (void)n; (void)cap;
  return pf_seterr(err, PF_ERR, "the gpt2 (byte-level BPE) tokenizer is not supported yet");
}

int pf_bpe_token_bytes(const pf_vocab *v, int id, char *buf, int cap) {
  int n = v->len[id] < cap ? v->len[id] : cap;
  for (int i = 0; i < n; i++) buf[i] = v->text[id][i];
  return n;
}
