/*
** fuzz_prefix.c — libFuzzer target: any bytes as a prefix BLOB.
**
** Decoded (every header check, checksum, metadata, values, sections, ensemble
** members), described as prefix_info does, checked against stories260K, and
** when it fits that model, used to generate two tokens and to score a pair;
** one with a training state is continued for one training step. With bit 1 of
** the first byte set, the rest is a safetensors file (a PEFT adapter): read,
** checked, and imported as a prefix of stories260K. Inputs with a good checksum are rare,
** so half the time the harness repairs the checksum first: the checks after
** it get fuzzed too.
*/
#include "internal.h"
#include "train.h"
#include "common.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static pf_model *g_m;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc; (void)argv;
  pf_err e;
  if (!(g_m = pf_model_load(fz_path("stories260K.gguf", 0), &e))) fz_die("stories260K.gguf", e.msg);
  return 0;
}

/* a safetensors file (PEFT adapter): parsed, then imported for stories260K */
static void one_safetensors(const uint8_t *b, size_t n) {
  pf_st_file f;
  pf_err e;
  e.msg[0] = 0;
  if (pf_safetensors_read(b, n, &f, &e) == 0) {
    for (int i = 0; i < f.n; i++)
      if (f.t[i].end > f.data_len || f.t[i].end - f.t[i].begin != f.t[i].n_elems * (uint64_t)f.t[i].elem_size) __builtin_trap();
    pf_safetensors_clear(&f);
    float *kv = NULL;
    int P = 0;
    if (pf_peft_import(g_m, b, n, 0, &kv, &P, &e) == 0) {
      uint8_t *blob;
      size_t bl;
      if (pf_prefix_encode(g_m, kv, P, 0, "{}", &blob, &bl, &e) == 0) free(blob);
      free(kv);
    } else if (!e.msg[0]) __builtin_trap();
  } else if (!e.msg[0]) __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
  if (n < 1 || n > (4u << 20)) return 0;
  if (data[0] & 2) {   /* bit 1 of the first byte: the input is a safetensors file */
    one_safetensors(data + 1, n - 1);
    return 0;
  }
  int fix = data[0] & 1;
  data++, n--;
  uint8_t *b = malloc(n ? n : 1);
  if (!b) return 0;
  memcpy(b, data, n);
  if (fix && n >= 8) pf_prefix_seal(b, n);   /* the format's checksum */
  pf_prefix p;
  pf_err e;
  e.msg[0] = 0;
  if (pf_prefix_decode(b, n, &p, &e) == 0) {
    char *j = pf_prefix_info_json(&p, n);
    if (j && !pf_json_is_object(j, strlen(j))) __builtin_trap();   /* prefix_info must stay valid JSON */
    free(j);
    if (pf_prefix_check_model(&p, g_m, NULL, &e) == 0) {
      pf_sample_params sp;
      pf_sample_params_default(&sp);
      sp.max_tokens = 2;
      sp.threads = 1;
      pf_batch_item it = {NULL, 0, "Once", 4, {0}, 0, NULL, NULL};
      pf_item_set_prefix(&it, &p);
      if (pf_generate_batch(g_m, &it, 1, 1, &sp, NULL, NULL, NULL, &e) == 0) pf_gen_result_clear(&it.res);
      double nll;
      int nt;
      if (pf_score_tokens(g_m, &p, "Q", 1, "A.", 2, 1, NULL, NULL, &nt, &nll, NULL, NULL, &e) == 0 && !(nll >= 0)) __builtin_trap();
      if (p.state_len) {
        static const pf_example ex[] = {{"Q", 1, "A.", 2}};
        pf_train_params tp;
        pf_train_params_default(&tp);
        tp.max_steps = 1;
        tp.threads = 1;
        tp.init_prefix = b;
        tp.init_prefix_len = n;
        tp.prefix_len = 0;
        tp.mode = -1;
        tp.mid_dim = -1;
        uint8_t *out = NULL;
        size_t ol;
        if (pf_train(g_m, ex, 1, NULL, 0, &tp, NULL, NULL, NULL, NULL, &out, &ol, &e) == 0) free(out);
      }
    }
    pf_prefix_clear(&p);
  } else if (!e.msg[0]) __builtin_trap();
  free(b);
  return 0;
}
