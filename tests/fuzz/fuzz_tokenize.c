/*
** fuzz_tokenize.c — libFuzzer target: any bytes as text to tokenize, and as
** token ids to detokenize, with the vocabularies users have: stories260K
** (SentencePiece), GPT-2, Llama 3 and Qwen2 (byte-level BPE, three
** pre-tokenizers), Phi-3 (SentencePiece with special tokens).
**
** The first byte picks the vocabulary and the flags. Properties checked: a
** byte-level BPE vocabulary gives back exactly the text it was given when the
** text is valid UTF-8 and special tokens are not parsed; every id is in the
** vocabulary; detokenized text is valid UTF-8.
*/
#include "internal.h"
#include "common.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define NV 5
static pf_model *g_v[NV];
static int g_bpe[NV];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc; (void)argv;
  const char *paths[NV] = {fz_path("stories260K.gguf", 0), fz_path("gpt2/gpt2-vocab-only.gguf", 1),
                           fz_path("vocab/llama-bpe.gguf", 1), fz_path("vocab/qwen2.gguf", 1), fz_path("vocab/phi-3.gguf", 1)};
  for (int i = 0; i < NV; i++) {
    pf_err e;
    if (!(g_v[i] = pf_model_load(paths[i], &e))) fz_die(paths[i], e.msg);
    g_bpe[i] = i >= 1 && i <= 3;
  }
  return 0;
}

/* 1 if s[0..n) is valid UTF-8 (shortest forms, no surrogates) */
static int utf8_ok(const unsigned char *s, size_t n) {
  for (size_t i = 0; i < n;) {
    unsigned c = s[i];
    if (c < 0x80) { i++; continue; }
    int k = c >= 0xC2 && c <= 0xDF ? 1 : c >= 0xE0 && c <= 0xEF ? 2 : c >= 0xF0 && c <= 0xF4 ? 3 : -1;
    if (k < 0 || n - i <= (size_t)k) return 0;
    unsigned c1 = s[i + 1];
    if ((c == 0xE0 && c1 < 0xA0) || (c == 0xED && c1 > 0x9F) || (c == 0xF0 && c1 < 0x90) || (c == 0xF4 && c1 > 0x8F)) return 0;
    for (int j = 1; j <= k; j++) if ((s[i + j] & 0xC0) != 0x80) return 0;
    i += (size_t)k + 1;
  }
  return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
  if (n < 1 || n > 65536) return 0;
  int sel = data[0] % NV, special = data[0] >> 3 & 1, add = data[0] >> 4 & 1, as_ids = data[0] >> 5 & 1;
  const pf_model *m = g_v[sel];
  const char *text = (const char *)data + 1;
  size_t tl = n - 1;
  pf_err e;
  if (as_ids) {   /* the bytes as little-endian 16-bit ids, folded into the vocabulary */
    int k = (int)(tl / 2), nv = pf_model_hparams(m)->n_vocab;
    int *ids = malloc(sizeof(int) * (size_t)(k ? k : 1));
    if (!ids) return 0;
    for (int i = 0; i < k; i++) ids[i] = (data[1 + 2 * i] | data[2 + 2 * i] << 8) % (nv + 2) - 1;   /* -1 and nv too */
    char *out = NULL;
    size_t ol = 0;
    if (pf_detokenize(m, ids, k, data[0] >> 6 & 1, &out, &ol, &e) == 0) {
      if (!utf8_ok((const unsigned char *)out, ol)) __builtin_trap();
      free(out);
    }
    free(ids);
    return 0;
  }
  int *ids = NULL, k = 0;
  int flags = pf_tok_flags(m, add, special);
  if (pf_tokenize_ex(m, text, tl, flags, &ids, &k, &e)) return 0;
  int nv = pf_model_hparams(m)->n_vocab;
  for (int i = 0; i < k; i++) if (ids[i] < 0 || ids[i] >= nv) __builtin_trap();
  char *out = NULL;
  size_t ol = 0;
  if (pf_detokenize(m, ids, k, 1, &out, &ol, &e) == 0) {
    if (!utf8_ok((const unsigned char *)out, ol)) __builtin_trap();
    if (g_bpe[sel] && !special && !add && utf8_ok((const unsigned char *)text, tl) && (ol != tl || memcmp(out, text, tl)))
      __builtin_trap();   /* byte-level BPE round-trips exactly */
    free(out);
  }
  free(ids);
  return 0;
}
