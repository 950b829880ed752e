/*
** prefix-mkmodel — write a GGUF model with random weights, for tests and
** benchmarks. Real GGUF files: the engine loads them like any other.
**
**   prefix-mkmodel out.gguf --arch llama --layers 2 --embd 32 --heads 4 --heads-kv 2 --ff 48 --vocab 300
**   prefix-mkmodel llama134m.gguf --layers 12 --embd 768 --heads 12 --ff 2048 --vocab 32000 --ctx 1024
**   prefix-mkmodel tiny.gguf --vocab-from ../shared/models/stories260K.gguf --type q8_0
**   prefix-mkmodel gpt2-small.gguf --arch gpt2 --layers 12 --embd 768 --heads 12 --ff 3072 --ctx 1024 \
**       --vocab-from ../shared/data/gpt2/gpt2-vocab-only.gguf
**   prefix-mkmodel gpt2-tiny.gguf --arch gpt2 --layers 2 --embd 32 --heads 4 --ff 64 --vocab 400
**
** Options: --arch llama|llama3|mistral|qwen2|qwen3|phi3|gpt2 (the family's GGUF layout, see
** write_family), --layers, --embd, --heads, --heads-kv, --head-dim (attention.key_length), --ff, --vocab,
** --ctx, --seed, --scale (weight scale), --rope-dim (partial rotary), --rope-scale F (linear RoPE scaling),
** --type TYPE (the matrices' type: f32, f16, bf16, q4_0, q4_1, q5_0, q5_1, q8_0, q2_k, q3_k, q4_k, q5_k,
**   q6_k, iq4_nl, iq4_xs, or llama-quantize's mixes q4_k_m and q5_k_m; norms stay f32; rows that are
**   not a whole number of blocks fall back as llama-quantize does),
** --tied (llama: no output.weight; gpt2 is tied unless --untied), --vocab-only (tokenizer, no tensors),
** --vocab-from FILE (copy the tokenizer of another GGUF, with its pre-tokenizer, flags and chat
** template), --poison (a NaN weight, for testing how training reports divergence); for tests of
** refusals: --rope-scaling TYPE, --extra-key name=value, --extra-tensor name.
*/
#include "internal.h"
#include "gguf_write.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct cfg {
  const char *out, *arch, *vocab_from, *type;
  int layers, embd, heads, heads_kv, ff, vocab, ctx, tied, vocab_only, untied;
  uint64_t seed;
  float scale;
  int head_dim, rope_dim;          /* 0: embd / heads, head_dim */
  float rope_scale;                /* > 0: linear RoPE scaling by this factor */
  const char *rope_scaling;        /* a rope.scaling.type to write as it is (tests of refusal) */
  const char *extra_key[8], *extra_tensor[8];
  const char *pre;                 /* the made BPE vocabulary's tokenizer.ggml.pre (default gpt-2) */
  int n_extra_key, n_extra_tensor;
} cfg;

static uint64_t rng_state;
static int g_poison; /* --poison: a NaN in blk.0.attn_q.weight, to test divergence handling */
static float frand(void) {  /* uniform in [-1, 1) */
  rng_state ^= rng_state << 13; rng_state ^= rng_state >> 7; rng_state ^= rng_state << 17;
  return (float)((rng_state >> 40) * (1.0 / 8388608.0)) - 1.0f;
}

/* --type: one type for every matrix, or llama-quantize's mixes q4_k_m / q5_k_m (base Q4_K / Q5_K; Q6_K for the
** output and for attn_v and ffn_down in the layers where llama.cpp's use_more_bits holds) */
static int g_mix;   /* 0, or the base type of a _k_m mix */
static int type_of(const char *s) {
  if (!strcasecmp(s, "q4_k_m")) return g_mix = GGML_Q4_K;
  if (!strcasecmp(s, "q5_k_m")) return g_mix = GGML_Q5_K;
  return pf_type_from_name(s);
}
static int more_bits(int l, int n) { return l < n / 8 || l >= 7 * n / 8 || (l - n / 8) % 3 == 2; }

/* the type of a matrix named `name` (layer l of n), with llama-quantize's fallback when its rows are not a
** whole number of blocks (K-quants to 32-element types, then F16) */
static int matrix_type(const cfg *c, const char *name, int l, uint64_t ne0) {
  int t = type_of(c->type);
  if (g_mix && (!strcmp(name, "output.weight") ||
                ((strstr(name, "attn_v.weight") || strstr(name, "ffn_down.weight")) && more_bits(l, c->layers))))
    t = GGML_Q6_K;
  if (ne0 % (uint64_t)pf_type_blck(t)) {
    switch (t) {
      case GGML_Q2_K: case GGML_Q3_K: t = GGML_Q4_0; break;
      case GGML_Q4_K: t = GGML_Q5_0; break;
      case GGML_Q5_K: t = GGML_Q5_1; break;
      case GGML_Q6_K: t = GGML_Q8_0; break;
      case GGML_IQ4_XS: t = GGML_IQ4_NL; break;
      default: break;
    }
    if (ne0 % (uint64_t)pf_type_blck(t)) t = GGML_F16;
  }
  return t;
}

/* Encode n floats as type t into a malloc'ed buffer. */
static void *encode(const float *x, uint64_t n, int t, size_t *nbytes) {
  uint64_t nb = 0;
  pf_type_nbytes((uint32_t)t, n, &nb);
  uint8_t *o = malloc(nb ? nb : 1);
  pf_quantize((uint32_t)t, x, o, (int64_t)n);
  *nbytes = nb;
  return o;
}

static void tensor_l(gguf_builder *b, const cfg *c, const char *name, int l, uint64_t ne0, uint64_t ne1, float scale,
                     float offset) {
  uint64_t ne[2] = {ne0, ne1}, n = ne0 * (ne1 ? ne1 : 1);
  float *x = malloc(n * sizeof(float));
  for (uint64_t i = 0; i < n; i++) x[i] = offset + scale * frand();
  if (g_poison && !strcmp(name, "blk.0.attn_q.weight")) x[0] = NAN;
  int t = ne1 ? matrix_type(c, name, l, ne0) : GGML_F32;   /* vectors stay f32, as llama.cpp does */
  size_t nb;
  void *data = encode(x, n, t, &nb);
  gb_tensor(b, name, ne1 ? 2 : 1, ne, (uint32_t)t, data, nb);
  free(data);
  free(x);
}
static void tensor(gguf_builder *b, const cfg *c, const char *name, uint64_t ne0, uint64_t ne1, float scale,
                   float offset) {
  tensor_l(b, c, name, 0, ne0, ne1, scale, offset);
}

/* Copy the tokenizer of another GGUF (--vocab-from): tokens and types, the
** scores of a llama tokenizer or the merges of a gpt2 one, special ids. */
static int copy_vocab(gguf_builder *b, const char *path, int *n_vocab) {
  gguf_file g;
  pf_err e;
  pf_vocab v;
  if (gguf_open(&g, path, &e)) { fprintf(stderr, "%s\n", e.msg); return -1; }
  if (pf_vocab_load(&v, &g, &e)) { fprintf(stderr, "%s\n", e.msg); gguf_close(&g); return -1; }
  int32_t *types = malloc(sizeof(int32_t) * (size_t)v.n);
  for (int i = 0; i < v.n; i++) types[i] = v.type[i];
  gb_str(b, "tokenizer.ggml.model", v.kind == PF_TOK_SPM ? "llama" : "gpt2");
  gb_arr_str(b, "tokenizer.ggml.tokens", (const char *const *)v.text, v.n);
  if (v.kind == PF_TOK_SPM) gb_arr_f32(b, "tokenizer.ggml.scores", v.score, v.n);
  gb_arr_i32(b, "tokenizer.ggml.token_type", types, v.n);
  if (v.kind == PF_TOK_BPE) {
    const gguf_kv *mg = gguf_find(&g, "tokenizer.ggml.merges");
    char **merges = malloc(sizeof(char *) * mg->arr_n);
    uint64_t off = mg->arr_off;
    for (uint64_t i = 0; i < mg->arr_n; i++) {
      uint64_t n;
      memcpy(&n, g.base + off, 8);
      merges[i] = malloc(n + 1);
      memcpy(merges[i], g.base + off + 8, n);
      merges[i][n] = 0;
      off += 8 + n;
    }
    gb_arr_str(b, "tokenizer.ggml.merges", (const char *const *)merges, (int)mg->arr_n);
    for (uint64_t i = 0; i < mg->arr_n; i++) free(merges[i]);
    free(merges);
  }
  if (v.bos >= 0) gb_u32(b, "tokenizer.ggml.bos_token_id", (uint32_t)v.bos);
  if (v.eos >= 0) gb_u32(b, "tokenizer.ggml.eos_token_id", (uint32_t)v.eos);
  if (v.kind == PF_TOK_SPM && v.unk >= 0) gb_u32(b, "tokenizer.ggml.unknown_token_id", (uint32_t)v.unk);
  if (v.eot >= 0) gb_u32(b, "tokenizer.ggml.eot_token_id", (uint32_t)v.eot);
  /* the rest of the tokenizer's keys as they are: pre-tokenizer, flags, chat template */
  const char *str_keys[] = {"tokenizer.ggml.pre", "tokenizer.chat_template"};
  for (int k = 0; k < 2; k++) {
    const gguf_kv *kv = gguf_find(&g, str_keys[k]);
    if (!kv || kv->type != GGUF_T_STRING) continue;
    char *val = malloc(kv->v.s.n + 1);
    memcpy(val, kv->v.s.p, kv->v.s.n);
    val[kv->v.s.n] = 0;
    gb_str(b, str_keys[k], val);
    free(val);
  }
  const char *bool_keys[] = {"tokenizer.ggml.add_bos_token", "tokenizer.ggml.add_eos_token", "tokenizer.ggml.add_space_prefix"};
  for (int k = 0; k < 3; k++) {
    const gguf_kv *kv = gguf_find(&g, bool_keys[k]);
    if (kv && kv->type == GGUF_T_BOOL) gb_bool(b, bool_keys[k], (int)kv->v.u);
  }
  *n_vocab = v.n;
  free(types);
  pf_vocab_free(&v);
  gguf_close(&g);
  return 0;
}

static int write_vocab(gguf_builder *b, const cfg *c, int *n_vocab) {
  if (c->vocab_from) return copy_vocab(b, c->vocab_from, n_vocab);
  /* synthetic SentencePiece-style vocabulary: specials, 256 bytes, then pieces */
  int n = c->vocab;
  if (n < 3 + 256 + 1) { fprintf(stderr, "--vocab must be at least %d\n", 3 + 256 + 1); return -1; }
  char **tok = calloc((size_t)n, sizeof *tok);
  float *score = calloc((size_t)n, sizeof *score);
  int32_t *type = calloc((size_t)n, sizeof *type);
  const char *sp[3] = {"<unk>", "<s>", "</s>"};
  for (int i = 0; i < 3; i++) { tok[i] = strdup(sp[i]); type[i] = i == 0 ? PF_TT_UNKNOWN : PF_TT_CONTROL; }
  for (int i = 0; i < 256; i++) { tok[3 + i] = malloc(8); snprintf(tok[3 + i], 8, "<0x%02X>", i); type[3 + i] = PF_TT_BYTE; }
  int k = 259;
  const char *letters = "etaoinshrdlcumwfgypbvkjxqz";
  if (k < n) { tok[k] = strdup("\xE2\x96\x81"); score[k] = -1; type[k++] = PF_TT_NORMAL; }
  for (int i = 0; letters[i] && k < n; i++) {
    tok[k] = malloc(2); tok[k][0] = letters[i]; tok[k][1] = 0; score[k] = -2.0f - i; type[k++] = PF_TT_NORMAL;
  }
  for (int i = 0; letters[i] && k < n; i++) {
    tok[k] = malloc(5); snprintf(tok[k], 5, "\xE2\x96\x81%c", letters[i]); score[k] = -30.0f - i; type[k++] = PF_TT_NORMAL;
  }
  for (int i = 0; k < n; i++) {
    tok[k] = malloc(16); snprintf(tok[k], 16, "\xE2\x96\x81w%d", i); score[k] = -100.0f - i; type[k++] = PF_TT_NORMAL;
  }
  gb_str(b, "tokenizer.ggml.model", "llama");
  gb_arr_str(b, "tokenizer.ggml.tokens", (const char *const *)tok, n);
  gb_arr_f32(b, "tokenizer.ggml.scores", score, n);
  gb_arr_i32(b, "tokenizer.ggml.token_type", type, n);
  gb_u32(b, "tokenizer.ggml.bos_token_id", 1);
  gb_u32(b, "tokenizer.ggml.eos_token_id", 2);
  gb_u32(b, "tokenizer.ggml.unknown_token_id", 0);
  for (int i = 0; i < n; i++) free(tok[i]);
  free(tok); free(score); free(type);
  *n_vocab = n;
  return 0;
}

/* The families' GGUF layouts, as llama.cpp's converter writes them:
**   llama    q, k, v, gate, up, down separate; adjacent-pair RoPE; output separate unless --tied
**   llama3   llama with rope_freqs.weight (frequency divisors), base 500000, tied output
**   mistral  llama with GQA and a separate output (the SentencePiece vocabulary is the default)
**   qwen2    biases on q, k, v; NEOX RoPE, base 1e6; tied output
**   qwen3    per-head RMSNorm on q and k; head size from attention.key_length; NEOX; tied output
**   phi3     fused attn_qkv, fused ffn_up (gate rows then up rows); NEOX; separate output */
static int write_family(gguf_builder *b, const cfg *c, int V) {
  const char *fam = c->arch, *a = !strcmp(fam, "llama3") || !strcmp(fam, "mistral") ? "llama" : fam;
  int llama3 = !strcmp(fam, "llama3"), qwen2 = !strcmp(fam, "qwen2"), qwen3 = !strcmp(fam, "qwen3"), phi3 = !strcmp(fam, "phi3");
  int d = c->embd, hd = c->head_dim ? c->head_dim : d / c->heads, qd = c->heads * hd, kvd = c->heads_kv * hd, ff = c->ff;
  int rd = c->rope_dim ? c->rope_dim : hd, tied = c->tied || llama3 || qwen2 || qwen3;
  char k[128];
#define KEY(suffix) (snprintf(k, sizeof k, "%s.%s", a, suffix), k)
  gb_u32(b, KEY("context_length"), (uint32_t)c->ctx);
  gb_u32(b, KEY("embedding_length"), (uint32_t)d);
  gb_u32(b, KEY("block_count"), (uint32_t)c->layers);
  gb_u32(b, KEY("feed_forward_length"), (uint32_t)ff);
  gb_u32(b, KEY("attention.head_count"), (uint32_t)c->heads);
  gb_u32(b, KEY("attention.head_count_kv"), (uint32_t)c->heads_kv);
  gb_u32(b, KEY("rope.dimension_count"), (uint32_t)rd);
  gb_f32(b, KEY("attention.layer_norm_rms_epsilon"), 1e-5f);
  gb_f32(b, KEY("rope.freq_base"), llama3 ? 500000.0f : qwen2 || qwen3 ? 1e6f : 10000.0f);
  if (qwen3 || c->head_dim) {
    gb_u32(b, KEY("attention.key_length"), (uint32_t)hd);
    gb_u32(b, KEY("attention.value_length"), (uint32_t)hd);
  }
  if (c->rope_scale > 0) {
    gb_str(b, KEY("rope.scaling.type"), "linear");
    gb_f32(b, KEY("rope.scaling.factor"), c->rope_scale);
  }
  if (c->rope_scaling) gb_str(b, KEY("rope.scaling.type"), c->rope_scaling);
  for (int i = 0; i < c->n_extra_key; i++) {   /* name=value: an integer, a float or a string */
    const char *eq = strchr(c->extra_key[i], '=');
    char name[128];
    snprintf(name, sizeof name, "%.*s", (int)(eq - c->extra_key[i]), c->extra_key[i]);
    char *end;
    long iv = strtol(eq + 1, &end, 10);
    if (!*end) gb_u32(b, name, (uint32_t)iv);
    else if (strtod(eq + 1, &end), !*end) gb_f32(b, name, (float)atof(eq + 1));
    else gb_str(b, name, eq + 1);
  }
#undef KEY
  if (c->vocab_only) return 0;
  float s = c->scale, si = s / sqrtf((float)d), so = s / sqrtf((float)qd), sf = s / sqrtf((float)ff);
  tensor(b, c, "token_embd.weight", (uint64_t)d, (uint64_t)V, s, 0);
  tensor(b, c, "output_norm.weight", (uint64_t)d, 0, 0.1f, 1.0f);
  if (!tied) tensor(b, c, "output.weight", (uint64_t)d, (uint64_t)V, s / sqrtf((float)d) * 4, 0);
  if (llama3) tensor(b, c, "rope_freqs.weight", (uint64_t)(rd / 2), 0, 3.5f, 4.5f);   /* divisors in 1..8 */
  for (int i = 0; i < c->n_extra_tensor; i++) tensor(b, c, c->extra_tensor[i], (uint64_t)d, 0, 0.1f, 0);
  for (int l = 0; l < c->layers; l++) {
    char nm[64];
#define W(suffix, n0, n1, sc, off) snprintf(nm, sizeof nm, "blk.%d." suffix, l); tensor_l(b, c, nm, l, n0, n1, sc, off);
    W("attn_norm.weight", (uint64_t)d, 0, 0.1f, 1.0f)
    if (phi3) { W("attn_qkv.weight", (uint64_t)d, (uint64_t)(qd + 2 * kvd), si, 0) }
    else {
      W("attn_q.weight", (uint64_t)d, (uint64_t)qd, si, 0)
      W("attn_k.weight", (uint64_t)d, (uint64_t)kvd, si, 0)
      W("attn_v.weight", (uint64_t)d, (uint64_t)kvd, si, 0)
    }
    if (qwen2) {
      W("attn_q.bias", (uint64_t)qd, 0, 0.3f, 0)
      W("attn_k.bias", (uint64_t)kvd, 0, 0.3f, 0)
      W("attn_v.bias", (uint64_t)kvd, 0, 0.3f, 0)
    }
    if (qwen3) {
      W("attn_q_norm.weight", (uint64_t)hd, 0, 0.1f, 1.0f)
      W("attn_k_norm.weight", (uint64_t)hd, 0, 0.1f, 1.0f)
    }
    W("attn_output.weight", (uint64_t)qd, (uint64_t)d, so, 0)
    W("ffn_norm.weight", (uint64_t)d, 0, 0.1f, 1.0f)
    if (phi3) { W("ffn_up.weight", (uint64_t)d, (uint64_t)(2 * ff), si, 0) }
    else {
      W("ffn_gate.weight", (uint64_t)d, (uint64_t)ff, si, 0)
      W("ffn_up.weight", (uint64_t)d, (uint64_t)ff, si, 0)
    }
    W("ffn_down.weight", (uint64_t)ff, (uint64_t)d, sf, 0)
#undef W
  }
  return 0;
}

/* GPT-2's byte -> code point mapping, as UTF-8 (the engine's) */
static void byte_char(int byte, char *out) { pf_gpt2_byte_utf8(byte, out); }

/* A byte-level BPE vocabulary: copied from a GGUF (--vocab-from), or made:
** the 256 byte tokens, merges of frequent English pairs, <|endoftext|> last. */
static int write_bpe_vocab(gguf_builder *b, const cfg *c, int *n_vocab) {
  if (c->vocab_from) return copy_vocab(b, c->vocab_from, n_vocab);
  int n = c->vocab;
  if (n < 257 + 1) { fprintf(stderr, "--vocab must be at least 258 for gpt2\n"); return -1; }
  char **tok = calloc((size_t)n, sizeof *tok), **merges = calloc((size_t)n, sizeof *merges);
  int32_t *type = calloc((size_t)n, sizeof *type);
  for (int i = 0; i < 256; i++) { tok[i] = malloc(4); byte_char(i, tok[i]); type[i] = PF_TT_NORMAL; }
  const char *first = " etaoinshrdlcumwfgypbvk", *second = "etaoinshrdlcumwfgypbvk .,";
  int k = 256, nm = 0;
  for (int i = 0; first[i] && k < n - 1; i++)
    for (int j = 0; second[j] && k < n - 1; j++) {
      char a[4], bb[4];
      byte_char((unsigned char)first[i], a);
      byte_char((unsigned char)second[j], bb);
      tok[k] = malloc(16);
      snprintf(tok[k], 16, "%s%s", a, bb);
      merges[nm] = malloc(16);
      snprintf(merges[nm], 16, "%s %s", a, bb);
      type[k++] = PF_TT_NORMAL;
      nm++;
    }
  while (k < n - 1) { tok[k] = malloc(24); snprintf(tok[k], 24, "unused%d", k); type[k++] = PF_TT_NORMAL; }
  tok[k] = strdup("<|endoftext|>");
  type[k] = PF_TT_CONTROL;
  gb_str(b, "tokenizer.ggml.model", "gpt2");
  gb_str(b, "tokenizer.ggml.pre", c->pre ? c->pre : "gpt-2");
  gb_arr_str(b, "tokenizer.ggml.tokens", (const char *const *)tok, n);
  gb_arr_i32(b, "tokenizer.ggml.token_type", type, n);
  gb_arr_str(b, "tokenizer.ggml.merges", (const char *const *)merges, nm);
  gb_u32(b, "tokenizer.ggml.bos_token_id", (uint32_t)k);
  gb_u32(b, "tokenizer.ggml.eos_token_id", (uint32_t)k);
  for (int i = 0; i < n; i++) free(tok[i]);
  for (int i = 0; i < nm; i++) free(merges[i]);
  free(tok); free(merges); free(type);
  *n_vocab = n;
  return 0;
}

static int write_gpt2(gguf_builder *b, const cfg *c, int V) {
  int d = c->embd, ff = c->ff;
  gb_u32(b, "gpt2.context_length", (uint32_t)c->ctx);
  gb_u32(b, "gpt2.embedding_length", (uint32_t)d);
  gb_u32(b, "gpt2.block_count", (uint32_t)c->layers);
  gb_u32(b, "gpt2.feed_forward_length", (uint32_t)ff);
  gb_u32(b, "gpt2.attention.head_count", (uint32_t)c->heads);
  gb_f32(b, "gpt2.attention.layer_norm_epsilon", 1e-5f);
  if (c->vocab_only) return 0;
  float s = c->scale, si = s / sqrtf((float)d), sf = s / sqrtf((float)ff);
  tensor(b, c, "token_embd.weight", (uint64_t)d, (uint64_t)V, 0.5f * s, 0);
  tensor(b, c, "position_embd.weight", (uint64_t)d, (uint64_t)c->ctx, 0.2f * s, 0);
  for (int l = 0; l < c->layers; l++) {
    char nm[64];
#define W(suffix, n0, n1, sc, off) snprintf(nm, sizeof nm, "blk.%d." suffix, l); tensor_l(b, c, nm, l, n0, n1, sc, off);
    W("attn_norm.weight", (uint64_t)d, 0, 0.1f, 1.0f)
    W("attn_norm.bias", (uint64_t)d, 0, 0.1f, 0)
    W("attn_qkv.weight", (uint64_t)d, (uint64_t)(3 * d), si, 0)
    W("attn_qkv.bias", (uint64_t)(3 * d), 0, 0.1f, 0)
    W("attn_output.weight", (uint64_t)d, (uint64_t)d, si, 0)
    W("attn_output.bias", (uint64_t)d, 0, 0.1f, 0)
    W("ffn_norm.weight", (uint64_t)d, 0, 0.1f, 1.0f)
    W("ffn_norm.bias", (uint64_t)d, 0, 0.1f, 0)
    W("ffn_up.weight", (uint64_t)d, (uint64_t)ff, si, 0)
    W("ffn_up.bias", (uint64_t)ff, 0, 0.1f, 0)
    W("ffn_down.weight", (uint64_t)ff, (uint64_t)d, sf, 0)
    W("ffn_down.bias", (uint64_t)d, 0, 0.1f, 0)
#undef W
  }
  tensor(b, c, "output_norm.weight", (uint64_t)d, 0, 0.1f, 1.0f);
  tensor(b, c, "output_norm.bias", (uint64_t)d, 0, 0.1f, 0);
  if (c->untied) tensor(b, c, "output.weight", (uint64_t)d, (uint64_t)V, si, 0);
  return 0;
}

static const char usage[] =
    "usage: prefix-mkmodel OUT.gguf [options]   a GGUF model with random weights, for tests and benchmarks\n"
    "  --arch A          llama (default), llama3 (rope_freqs, base 500000), mistral, qwen2 (q/k/v biases),\n"
    "                    qwen3 (q/k norms), phi3 (fused qkv and gate/up), gpt2\n"
    "  --layers N --embd N --heads N --heads-kv N --head-dim N --ff N --vocab N --ctx N   the shape\n"
    "  --type T          f32 (default), f16, bf16, q4_0 ... q6_k, iq4_nl, iq4_xs, or the mixes q4_k_m, q5_k_m\n"
    "  --vocab-from F    copy the tokenizer (tokens, merges, pre-tokenizer, chat template) of GGUF file F\n"
    "  --vocab-only      write the tokenizer only     --tied / --untied   output head tied or not\n"
    "  --rope-dim N --rope-scale F --rope-scaling T   partial rotary, linear scaling, the scaling type key\n"
    "  --pre NAME        tokenizer.ggml.pre           --seed S --scale F   the random weights\n"
    "  --extra-key K=V --extra-tensor NAME   add metadata / a tensor (to test refusals)\n";

int main(int argc, char **argv) {
  cfg c = {.arch = "llama", .type = "f32", .layers = 2, .embd = 32, .heads = 4, .ff = 64, .vocab = 300, .ctx = 256, .seed = 42, .scale = 1.0f};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
#define ARG(name) (!strcmp(a, name) && v && (i++, 1))
    if (ARG("--arch")) c.arch = v;
    else if (ARG("--layers")) c.layers = atoi(v);
    else if (ARG("--embd")) c.embd = atoi(v);
    else if (ARG("--heads")) c.heads = atoi(v);
    else if (ARG("--heads-kv")) c.heads_kv = atoi(v);
    else if (ARG("--ff")) c.ff = atoi(v);
    else if (ARG("--vocab")) c.vocab = atoi(v);
    else if (ARG("--ctx")) c.ctx = atoi(v);
    else if (ARG("--seed")) c.seed = strtoull(v, NULL, 10);
    else if (ARG("--type")) c.type = v;
    else if (ARG("--scale")) c.scale = (float)atof(v);
    else if (ARG("--vocab-from")) c.vocab_from = v;
    else if (ARG("--head-dim")) c.head_dim = atoi(v);
    else if (ARG("--pre")) c.pre = v;
    else if (ARG("--rope-dim")) c.rope_dim = atoi(v);
    else if (ARG("--rope-scale")) c.rope_scale = (float)atof(v);
    else if (ARG("--rope-scaling")) c.rope_scaling = v;
    else if (ARG("--extra-key") && c.n_extra_key < 8 && strchr(v, '=')) c.extra_key[c.n_extra_key++] = v;
    else if (ARG("--extra-tensor") && c.n_extra_tensor < 8) c.extra_tensor[c.n_extra_tensor++] = v;
    else if (!strcmp(a, "--tied")) c.tied = 1;
    else if (!strcmp(a, "--untied")) c.untied = 1;
    else if (!strcmp(a, "--vocab-only")) c.vocab_only = 1;
    else if (!strcmp(a, "--poison")) g_poison = 1;
    else if (!strcmp(a, "--help") || !strcmp(a, "-h")) { fputs(usage, stdout); return 0; }
    else if (a[0] != '-' && !c.out) c.out = a;
    else { fprintf(stderr, "prefix-mkmodel: unknown or incomplete argument '%s'\n", a); return 2; }
#undef ARG
  }
  if (!c.out) { fputs(usage, stderr); return 2; }
  if (!c.heads_kv) c.heads_kv = c.heads;
  if (type_of(c.type) < 0) {
    fprintf(stderr, "prefix-mkmodel: --type must be one of %s (any case), or q4_k_m, q5_k_m\n", pf_type_list());
    return 2;
  }
  if (c.layers < 1 || c.embd < 2 || c.heads < 1 || (c.embd % c.heads && !c.head_dim) || c.heads % c.heads_kv || c.ff < 1 ||
      c.ctx < 1) {
    fprintf(stderr, "prefix-mkmodel: inconsistent shape (embd must divide by heads, heads by heads-kv)\n");
    return 2;
  }
  rng_state = c.seed * 0x9E3779B97F4A7C15ull + 1;
  gguf_builder *b = gb_new();
  int V = 0, rc;
  const char *arch_key = !strcmp(c.arch, "llama3") || !strcmp(c.arch, "mistral") ? "llama" : c.arch;
  int bpe = !strcmp(c.arch, "gpt2") || !strcmp(c.arch, "llama3") || !strcmp(c.arch, "qwen2") || !strcmp(c.arch, "qwen3");
  if (strcmp(c.arch, "llama") && strcmp(c.arch, "llama3") && strcmp(c.arch, "mistral") && strcmp(c.arch, "qwen2") &&
      strcmp(c.arch, "qwen3") && strcmp(c.arch, "phi3") && strcmp(c.arch, "gpt2")) {
    fprintf(stderr, "prefix-mkmodel: --arch must be llama, llama3, mistral, qwen2, qwen3, phi3 or gpt2\n");
    return 2;
  }
  gb_str(b, "general.architecture", arch_key);
  gb_str(b, "general.name", "prefix-mkmodel random weights");
  if (bpe ? write_bpe_vocab(b, &c, &V) : write_vocab(b, &c, &V)) return 1;
  rc = !strcmp(c.arch, "gpt2") ? write_gpt2(b, &c, V) : write_family(b, &c, V);
  char err[256];
  if (rc || gb_write(b, c.out, err, sizeof err)) { fprintf(stderr, "prefix-mkmodel: %s\n", rc ? "failed" : err); gb_free(b); return 1; }
  gb_free(b);
  return 0;
}

