/*
** fuzz_gguf.c — libFuzzer target: any bytes as a GGUF file.
**
** The input is loaded as a model from memory (both tokenizer kinds' metadata,
** hyperparameters, every weight type's block checks); a file that loads is
** then used: a few texts tokenized and detokenized, and for small models two
** tokens generated. The only acceptable outcomes are a model or a clear error.
*/
#include "internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n);

static const char *texts[] = {"Once upon a time", "", " héllo\n\n  wörld 123 <s></s><|endoftext|>", "\xff\xfe\x80"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
  if (n > (8u << 20)) return 0;
  size_t cap = (n + 63) / 64 * 64 + 64;
  uint8_t *buf = aligned_alloc(64, cap);
  if (!buf) return 0;
  memcpy(buf, data, n);
  pf_err e;
  e.msg[0] = 0;
  pf_model *m = pf_model_load_mem(buf, n, "fuzz.gguf", &e);
  if (!m) {
    if (!e.msg[0] || strlen(e.msg) >= sizeof e.msg) __builtin_trap();   /* an error always says something */
    free(buf);
    return 0;
  }
  for (size_t t = 0; t < sizeof texts / sizeof texts[0]; t++) {
    int *ids = NULL, k = 0;
    if (pf_tokenize(m, texts[t], strlen(texts[t]), 1, &ids, &k, &e) == 0) {
      char *out = NULL;
      size_t ol;
      if (pf_detokenize(m, ids, k, 1, &out, &ol, &e) == 0) free(out);
      free(ids);
    }
  }
  const pf_hparams *hp = pf_model_hparams(m);
  if (pf_model_has_weights(m) && pf_model_n_params(m) < 2000000 && hp->n_ctx >= 8) {
    pf_sample_params p;
    pf_sample_params_default(&p);
    p.max_tokens = 2;
    p.threads = 1;
    pf_gen_result r;
    if (pf_generate(m, NULL, 0, "Once", 4, &p, NULL, NULL, &r, &e) == 0) pf_gen_result_clear(&r);
  }
  pf_model_free(m);
  free(buf);
  return 0;
}
