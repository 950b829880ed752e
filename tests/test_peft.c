/*
** test_peft.c — prefixes as Hugging Face PEFT adapters: the exported layout against an independent
** rotate_half RoPE, exact round trips, and a safetensors reader that refuses malformed files.
*/
#include "../engine/internal.h"
#include "../engine/train.h"
#include "testlib.h"

/* Hugging Face's RoPE on one head (x[i] pairs with x[i + d/2]), written here from the definition */
static void hf_rope(float *x, int d, int pos, float base) {
  for (int i = 0; i < d / 2; i++) {
    double th = pos * pow(base, -2.0 * i / d), c = cos(th), s = sin(th), a = x[i], b = x[i + d / 2];
    x[i] = (float)(a * c - b * s);
    x[i + d / 2] = (float)(a * s + b * c);
  }
}

/* A prefix of one layer, 2 key/value heads of 8, 3 positions: keys are random vectors rotated by this engine's
** RoPE (GGUF layout) at positions 0..2. Exported, each key must equal the same vector in Hugging Face's layout
** (llama.cpp's converter: GGUF dim 2i = HF dim i, 2i+1 = HF dim i + d/2) rotated by Hugging Face's RoPE. */
static void test_layout(void) {
  enum { L = 1, H = 2, D = 8, P = 3, KVD = H * D };
  float kv[L * 2 * P * KVD], hf_keys[P][KVD];
  for (int p = 0; p < P; p++) {
    float x[KVD];
    for (int i = 0; i < KVD; i++) x[i] = t_frand();
    for (int h = 0; h < H; h++)
      for (int i = 0; i < D / 2; i++) { hf_keys[p][h * D + i] = x[h * D + 2 * i]; hf_keys[p][h * D + i + D / 2] = x[h * D + 2 * i + 1]; }
    for (int h = 0; h < H; h++) hf_rope(hf_keys[p] + h * D, D, p, 10000.0f);
    int pos = p;
    pf_rope(x, &pos, 1, H, D, D, 10000.0f);
    memcpy(kv + (size_t)p * KVD, x, sizeof x);                                    /* keys of layer 0 */
    for (int i = 0; i < KVD; i++) kv[(size_t)P * KVD + (size_t)p * KVD + i] = (float)(100 * p + i);   /* values */
  }
  pf_prefix pre = {0};
  pre.arch = PF_ARCH_LLAMA; pre.n_layer = L; pre.n_head_kv = H; pre.head_dim = D; pre.prefix_len = P;
  memcpy(pre.fingerprint, "0123456789abcdef", 17);
  pre.kv = kv;
  uint8_t *st;
  size_t n;
  pf_err e;
  int rc = pf_peft_export(&pre, &st, &n, &e);
  pf_st_file f;
  rc = rc || pf_safetensors_read(st, n, &f, &e);
  const pf_st_tensor *t = rc ? NULL : pf_safetensors_find(&f, "prompt_embeddings");
  double kd = 0, vd = 0;
  int shape_ok = t && t->n_dims == 2 && t->shape[0] == P && t->shape[1] == L * 2 * KVD;
  if (shape_ok)
    for (int p = 0; p < P; p++)
      for (int i = 0; i < KVD; i++) {
        float k, v;
        memcpy(&k, f.data + t->begin + ((size_t)p * 2 * KVD + i) * 4, 4);
        memcpy(&v, f.data + t->begin + ((size_t)p * 2 * KVD + KVD + i) * 4, 4);
        if (fabs(k - hf_keys[p][i]) > kd) kd = fabs(k - hf_keys[p][i]);
        if (fabs(v - (100 * p + i)) > vd) vd = fabs(v - (100 * p + i));
      }
  CHECK(!rc && shape_ok && kd < 1e-5 && vd == 0, "PEFT layout: (P, layers x 2 x kv_dim), keys = Hugging Face RoPE of the permuted vector, values as they are",
        "rc %d shape %d key diff %g value diff %g", rc, shape_ok, kd, vd);
  if (!rc) pf_safetensors_clear(&f);
  free(st);
}

/* export then import: the same keys and values, for a permuted (llama) and a NEOX (qwen2) family */
static void test_round_trip(const char *file, const char *name) {
  pf_err e;
  pf_model *m = pf_model_load(t_model_path(file), &e);
  if (!m) { CHECK(0, name, "load: %s", e.msg); return; }
  const pf_hparams *hp = pf_model_hparams(m);
  int P = 4;
  size_t nkv = (size_t)hp->n_layer * 2 * P * hp->n_head_kv * hp->head_dim;
  float *kv = malloc(sizeof(float) * nkv), *back = NULL;
  for (size_t i = 0; i < nkv; i++) kv[i] = t_frand();
  uint8_t *blob, *st;
  size_t bl, sl;
  pf_prefix pre;
  int P2 = 0, rc = pf_prefix_encode(m, kv, P, 0, "{}", &blob, &bl, &e) || pf_prefix_decode(blob, bl, &pre, &e) ||
                   pf_peft_export(&pre, &st, &sl, &e) || pf_peft_import(m, st, sl, P, &back, &P2, &e);
  char nm[160];
  snprintf(nm, sizeof nm, "PEFT round trip on %s: export then import gives the same keys and values", name);
  CHECK(!rc && P2 == P && !memcmp(back, kv, sizeof(float) * nkv), nm, "%s", rc ? e.msg : "differs");
  if (!rc) {   /* the wrong model: the shape is named */
    pf_model *g = pf_model_load(t_model_path(strstr(file, "qwen") ? "stories260K.gguf" : "families/qwen2-tiny.gguf"), &e);
    float *x = NULL;
    int p3;
    int r2 = g ? pf_peft_import(g, st, sl, 0, &x, &p3, &e) : -1;
    snprintf(nm, sizeof nm, "PEFT import into a model of another shape is refused with both shapes (%s)", name);
    CHECK(r2 == PF_ERR && t_contains(e.msg, "this model's prefix needs (num_virtual_tokens,"), nm, "%s", e.msg);
    free(x);
    pf_model_free(g);
    free(st);
    pf_prefix_clear(&pre);
    free(blob);
  }
  free(kv);
  free(back);
  pf_model_free(m);
}

/* a safetensors file from a header text and data bytes */
static uint8_t *st_make(const char *hdr, size_t data_len, size_t *n) {
  size_t hl = strlen(hdr);
  uint8_t *b = calloc(8 + hl + data_len + 1, 1);
  uint64_t h = hl;
  memcpy(b, &h, 8);
  memcpy(b + 8, hdr, hl);
  *n = 8 + hl + data_len;
  return b;
}

static void test_hostile(void) {
  struct { const char *hdr; size_t data; const char *want; } c[] = {
      {"{}", 0, NULL},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, NULL},
      {"[1,2]", 0, "not a JSON object"},
      {"{\"a\":1}", 0, "is not an object"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, "lacks data_offsets"},
      {"{\"a\":{\"dtype\":\"Q4\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "unknown dtype 'Q4'"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, "its shape and dtype need 12"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,80]}}", 8, "lie outside the 8 data bytes"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "starts at data byte 4, expected 0"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "expected 8"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8, "cover 4 of 8 data bytes"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "appears twice"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "non-negative integers"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"extra\":1}}", 4, "unexpected or repeated field 'extra'"},
      {"{\"__metadata__\":{\"k\":1}}", 0, "must map strings to strings"},
      {"{\"__metadata__\":{\"k\":\"a\"},\"__metadata__\":{\"k\":\"b\"}}", 0, "__metadata__ appears twice"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, "at most 8"},
  };
  int ok = 1;
  for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
    size_t n;
    uint8_t *b = st_make(c[i].hdr, c[i].data, &n);
    pf_st_file f;
    pf_err e;
    int rc = pf_safetensors_read(b, n, &f, &e);
    if (c[i].want ? !(rc && t_contains(e.msg, c[i].want)) : rc != 0) { ok = 0; printf("# case %zu: rc %d '%s'\n", i, rc, rc ? e.msg : ""); }
    if (!rc) pf_safetensors_clear(&f);
    free(b);
  }
  /* lengths: too short, a header length beyond the file or the limit */
  uint8_t small[7] = {0};
  pf_st_file f;
  pf_err e;
  ok &= pf_safetensors_read(small, 7, &f, &e) != 0 && t_contains(e.msg, "the header length alone needs 8");
  uint8_t big[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f};
  ok &= pf_safetensors_read(big, 16, &f, &e) != 0 && t_contains(e.msg, "exceeds");
  uint8_t over[16] = {100};
  ok &= pf_safetensors_read(over, 16, &f, &e) != 0 && t_contains(e.msg, "does not fit a file of 16 bytes");
  CHECK(ok, "safetensors: malformed headers are refused, each with what is wrong", "see above");
}

/* a prompt_embeddings of a shape this model cannot take: the error gives every dimension as stored */
static void test_shape_named(void) {
  pf_err e;
  pf_model *m = pf_model_load(t_model_path("stories260K.gguf"), &e);
  if (!m) { CHECK(0, "PEFT shape error", "load: %s", e.msg); return; }
  const pf_hparams *hp = pf_model_hparams(m);
  size_t cols = (size_t)hp->n_layer * 2 * hp->n_head_kv * hp->head_dim, n;
  char hdr[256], want[64];
  snprintf(hdr, sizeof hdr, "{\"prompt_embeddings\":{\"dtype\":\"F32\",\"shape\":[2,%zu,1],\"data_offsets\":[0,%zu]}}", cols, 8 * cols);
  snprintf(want, sizeof want, "has shape (2, %zu, 1);", cols);
  uint8_t *b = st_make(hdr, 8 * cols, &n);
  float *kv = NULL;
  int P;
  int rc = pf_peft_import(m, b, n, 0, &kv, &P, &e);
  CHECK(rc == PF_ERR && t_contains(e.msg, want) && t_contains(e.msg, "2 dimensions expected"),
        "PEFT import: a 3-dimensional prompt_embeddings is refused naming its whole shape", "%s", rc ? e.msg : "accepted");
  free(kv);
  free(b);
  pf_model_free(m);
}

int main(void) {
  test_layout();
  test_round_trip("stories260K.gguf", "stories260K (llama: keys permuted)");
  test_round_trip("families/qwen2-tiny.gguf", "qwen2-tiny (NEOX: as stored)");
  test_hostile();
  test_shape_named();
  return t_failed != 0;
}
