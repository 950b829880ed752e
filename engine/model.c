/*
** model.c — hyperparameters and weights from a GGUF file, checked against the
** architecture, and the model fingerprint.
*/
#include "internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

const pf_hparams *pf_model_hparams(const pf_model *m) { return &m->hp; }
int pf_model_has_weights(const pf_model *m) { return m->has_weights; }
uint64_t pf_model_n_params(const pf_model *m) { return m->n_params; }
uint64_t pf_model_file_size(const pf_model *m) { return m->g.size; }
const char *pf_model_fingerprint(const pf_model *m) { return m->fingerprint; }
void pf_model_file_id(const pf_model *m, uint64_t id[4]) { memcpy(id, m->file_id, sizeof m->file_id); }

void pf_model_free(pf_model *m) {
  if (!m) return;
  if (m->sched && m->sched_free) m->sched_free(m->sched);
  for (int i = 0; i < m->n_owned; i++) free(m->owned[i]);
  free(m->owned);
  free(m->layers);
  free(m->used);
  pf_bpe_free(&m->vocab);
  pf_vocab_free(&m->vocab);
  gguf_close(&m->g);
  free(m->path);
  free(m);
}

/* Read an integer hyperparameter "<arch>.<key>" into [lo, hi]. */
static int hp_int(const pf_model *m, const char *arch, const char *key, int required, int dflt, int lo, int hi,
                  int *out, pf_err *err) {
  char full[128];
  snprintf(full, sizeof full, "%s.%s", arch, key);
  const gguf_kv *kv = gguf_find(&m->g, full);
  if (!kv) {
    if (required) return pf_seterr(err, PF_ERR, "GGUF metadata %s is missing", full);
    *out = dflt;
    return PF_OK;
  }
  int64_t v;
  switch (kv->type) {
    case GGUF_T_UINT8: case GGUF_T_UINT16: case GGUF_T_UINT32: case GGUF_T_UINT64:
      v = kv->v.u > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)kv->v.u; break;
    case GGUF_T_INT8: case GGUF_T_INT16: case GGUF_T_INT32: case GGUF_T_INT64: v = kv->v.i; break;
    default: return pf_seterr(err, PF_ERR, "GGUF metadata %s has type %s, expected an integer", full, gguf_type_name(kv->type));
  }
  if (v < lo || v > hi)
    return pf_seterr(err, PF_ERR, "GGUF metadata %s = %lld is out of range (allowed: %d..%d)", full, (long long)v, lo, hi);
  *out = (int)v;
  return PF_OK;
}

static int hp_float(const pf_model *m, const char *arch, const char *key, float dflt, float lo, float hi, float *out,
                    pf_err *err) {
  char full[128];
  snprintf(full, sizeof full, "%s.%s", arch, key);
  const gguf_kv *kv = gguf_find(&m->g, full);
  if (!kv) { *out = dflt; return PF_OK; }
  if (kv->type != GGUF_T_FLOAT32 && kv->type != GGUF_T_FLOAT64)
    return pf_seterr(err, PF_ERR, "GGUF metadata %s has type %s, expected float32", full, gguf_type_name(kv->type));
  if (!(kv->v.f >= lo && kv->v.f <= hi))
    return pf_seterr(err, PF_ERR, "GGUF metadata %s = %g is out of range (allowed: %g..%g)", full, kv->v.f, lo, hi);
  *out = (float)kv->v.f;
  return PF_OK;
}

static int own(pf_model *m, void *p) {
  if (m->n_owned == m->cap_owned) {
    int nc = m->cap_owned ? m->cap_owned * 2 : 32;
    void **n = realloc(m->owned, sizeof *n * (size_t)nc);
    if (!n) return -1;
    m->owned = n; m->cap_owned = nc;
  }
  m->owned[m->n_owned++] = p;
  return 0;
}

/* The tensor `name`, checked to have shape (ne0, ne1) — ne1 = 0 for a vector — and finite block scales.
** *out is NULL when it is missing and not required. */
static int find_tensor(pf_model *m, const char *name, int64_t ne0, int64_t ne1, int required, const gguf_tensor **out,
                       pf_err *err) {
  const gguf_tensor *t = gguf_find_tensor(&m->g, name);
  *out = NULL;
  if (!t) return required ? pf_seterr(err, PF_ERR, "GGUF tensor '%s' is missing", name) : PF_OK;
  if (m->used) m->used[t - m->g.tensors] = 1;
  int nd = ne1 ? 2 : 1;
  int ok = t->ne[0] == (uint64_t)ne0 && (nd == 1 ? t->ne[1] == 1 : t->ne[1] == (uint64_t)ne1) && t->ne[2] == 1 &&
           t->ne[3] == 1;
  if (!ok) {
    if (nd == 1)
      return pf_seterr(err, PF_ERR, "GGUF tensor '%s' has shape [%llu, %llu, %llu, %llu], expected [%lld] from the hyperparameters",
                       name, (unsigned long long)t->ne[0], (unsigned long long)t->ne[1], (unsigned long long)t->ne[2],
                       (unsigned long long)t->ne[3], (long long)ne0);
    return pf_seterr(err, PF_ERR, "GGUF tensor '%s' has shape [%llu, %llu, %llu, %llu], expected [%lld, %lld] from the hyperparameters",
                     name, (unsigned long long)t->ne[0], (unsigned long long)t->ne[1], (unsigned long long)t->ne[2],
                     (unsigned long long)t->ne[3], (long long)ne0, (long long)ne1);
  }
  uint64_t bad;
  if (!pf_check_blocks(t->type, t->data, t->nbytes, &bad))
    return pf_seterr(err, PF_ERR, "GGUF tensor '%s' (%s): block %llu has a scale that is NaN or infinite", name,
                     pf_type_name(t->type), (unsigned long long)bad);
  *out = t;
  return PF_OK;
}

/* A vector (norm weights, biases) as f32: in place when the file holds aligned F32, else converted (small). */
static int get_vector(pf_model *m, const char *name, int64_t n, int required, float **out, pf_err *err) {
  const gguf_tensor *t;
  *out = NULL;
  if (find_tensor(m, name, n, 0, required, &t, err)) return PF_ERR;
  if (!t) return PF_OK;
  if (t->type == GGML_F32 && ((uintptr_t)t->data % sizeof(float)) == 0) {
    *out = (float *)t->data;   /* read-only mapping; the engine never writes weights */
    return PF_OK;
  }
  float *f = malloc(sizeof(float) * (size_t)n);
  if (!f || own(m, f)) { free(f); return pf_seterr(err, PF_NOMEM, "out of memory converting tensor '%s'", name); }
  pf_to_f32(t->type, t->data, f, (uint64_t)n);
  *out = f;
  return PF_OK;
}

/* A matrix of rows × cols as stored: kernels read it in place, whatever its type. An F32 matrix that the
** file leaves unaligned (general.alignment < 4) is copied. */
static int get_matrix(pf_model *m, const char *name, int64_t cols, int64_t rows, int required, pf_wt *out,
                      pf_err *err) {
  const gguf_tensor *t;
  memset(out, 0, sizeof *out);
  if (find_tensor(m, name, cols, rows, required, &t, err)) return PF_ERR;
  if (!t) return PF_OK;
  out->data = t->data;
  out->type = t->type;
  out->rows = (int)rows;
  out->cols = (int)cols;
  out->row_bytes = pf_type_row_size(t->type, cols);
  if (t->type == GGML_F32 && ((uintptr_t)t->data % sizeof(float))) {
    void *f = malloc((size_t)t->nbytes);
    if (!f || own(m, f)) { free(f); return pf_seterr(err, PF_NOMEM, "out of memory copying tensor '%s'", name); }
    memcpy(f, t->data, (size_t)t->nbytes);
    out->data = f;
  }
  return PF_OK;
}

void pf_wt_row(const pf_wt *w, int r, float *dst) {
  pf_dequant(w->type, w->data + (size_t)r * w->row_bytes, 0, w->cols, dst);
}

/* ------------------------------------------------------------ families
** What each general.architecture's block does; which optional tensors a
** file has (fused or separate projections, biases, q/k norms, rope_freqs)
** is read from the file itself, as llama.cpp's loader does. */
typedef struct family {
  const char *name;
  int arch, norm, rope, act;
  const char *eps_key;   /* the norm epsilon's key */
  int qk_norm;           /* 1: attn_q_norm / attn_k_norm required */
} family;

static const family g_families[] = {
  {"llama", PF_ARCH_LLAMA, PF_NORM_RMS, PF_ROPE_NORM, PF_ACT_SWIGLU, "attention.layer_norm_rms_epsilon", 0},
  {"qwen2", PF_ARCH_QWEN2, PF_NORM_RMS, PF_ROPE_NEOX, PF_ACT_SWIGLU, "attention.layer_norm_rms_epsilon", 0},
  {"qwen3", PF_ARCH_QWEN3, PF_NORM_RMS, PF_ROPE_NEOX, PF_ACT_SWIGLU, "attention.layer_norm_rms_epsilon", 1},
  {"phi3", PF_ARCH_PHI3, PF_NORM_RMS, PF_ROPE_NEOX, PF_ACT_SWIGLU, "attention.layer_norm_rms_epsilon", 0},
  {"gpt2", PF_ARCH_GPT2, PF_NORM_LAYER, PF_ROPE_NONE, PF_ACT_GELU, "attention.layer_norm_epsilon", 0},
};
#define N_FAMILIES (int)(sizeof g_families / sizeof g_families[0])

static const family *family_of(int arch) {
  for (int i = 0; i < N_FAMILIES; i++) if (g_families[i].arch == arch) return &g_families[i];
  return NULL;
}

const char *pf_arch_name(int arch) {
  const family *f = family_of(arch);
  return f ? f->name : "unknown";
}
const char *pf_model_arch_name(const pf_model *m) { return m->hp.arch ? pf_arch_name(m->hp.arch) : "none"; }

/* Keys that change a model's math in ways this engine does not compute: refused, never ignored. */
static int refuse_unsupported(const pf_model *m, const char *a, pf_err *err) {
  static const char *keys[] = {"expert_count", "attn_logit_softcapping", "final_logit_softcapping", "attention.scale",
                               "embedding_scale", "residual_scale", "logit_scale", "attention.clamp_kqv",
                               "rope.scaling.attn_factor", "attention.sliding_window_pattern"};
  char full[128];
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
    snprintf(full, sizeof full, "%s.%s", a, keys[i]);
    const gguf_kv *kv = gguf_find(&m->g, full);
    if (!kv) continue;
    if (!strcmp(keys[i], "expert_count") && kv->type != GGUF_T_STRING && kv->v.u == 0) continue;   /* 0: dense */
    return pf_seterr(err, PF_ERR, "GGUF metadata %s is set: this engine does not implement it (it would change the model's output)", full);
  }
  snprintf(full, sizeof full, "%s.attention.causal", a);
  const gguf_kv *kv = gguf_find(&m->g, full);
  if (kv && kv->type == GGUF_T_BOOL && !kv->v.u)
    return pf_seterr(err, PF_ERR, "GGUF metadata %s is false: only causal (generative) models are supported", full);
  return PF_OK;
}

/* RoPE scaling: none, or linear (positions divided by the factor); Llama 3's per-pair factors come as the
** rope_freqs.weight tensor. YaRN, LongRoPE and the rest are refused. */
static int rope_scaling(pf_model *m, const char *a, pf_err *err) {
  char full[128];
  snprintf(full, sizeof full, "%s.rope.scaling.type", a);
  const gguf_kv *kv = gguf_find(&m->g, full);
  m->hp.rope_scale = 1.0f;
  if (!kv) return PF_OK;
  if (kv->type != GGUF_T_STRING) return pf_seterr(err, PF_ERR, "GGUF metadata %s has type %s, expected string", full, gguf_type_name(kv->type));
  if (gguf_str_eq(kv->v.s, "none")) return PF_OK;
  if (gguf_str_eq(kv->v.s, "linear")) {
    float f;
    if (hp_float(m, a, "rope.scaling.factor", 1.0f, 1e-3f, 1e6f, &f, err)) return PF_ERR;
    m->hp.rope_scale = 1.0f / f;
    return PF_OK;
  }
  char nm[64];
  pf_quote_bytes(nm, sizeof nm, kv->v.s.p, (size_t)kv->v.s.n);
  return pf_seterr(err, PF_ERR, "GGUF metadata %s = %s is not supported (supported: none, linear; Llama 3's factors come as rope_freqs.weight)",
                   full, nm);
}

static int load_hparams(pf_model *m, const family *f, pf_err *err) {
  pf_hparams *hp = &m->hp;
  const char *a = f->name;
  char nm[96];
  hp->norm = f->norm, hp->rope = f->rope, hp->act = f->act;
  if (hp_int(m, a, "block_count", 1, 0, 1, 1024, &hp->n_layer, err) ||
      hp_int(m, a, "embedding_length", 1, 0, 1, 1 << 16, &hp->n_embd, err) ||
      hp_int(m, a, "feed_forward_length", 1, 0, 1, 1 << 20, &hp->n_ff, err) ||
      hp_int(m, a, "attention.head_count", 1, 0, 1, 1 << 12, &hp->n_head, err) ||
      hp_int(m, a, "attention.head_count_kv", 0, hp->n_head, 1, 1 << 12, &hp->n_head_kv, err) ||
      hp_int(m, a, "context_length", 1, 0, 1, 1 << 24, &hp->n_ctx_train, err) ||
      hp_float(m, a, f->eps_key, 1e-5f, 0.0f, 1.0f, &hp->norm_eps, err) ||
      refuse_unsupported(m, a, err))
    return PF_ERR;
  if (hp->n_head % hp->n_head_kv)
    return pf_seterr(err, PF_ERR, "GGUF %s.attention.head_count %d is not a multiple of head_count_kv %d", a, hp->n_head,
                     hp->n_head_kv);
  int dflt_hd = hp->n_embd % hp->n_head ? 0 : hp->n_embd / hp->n_head, vdim;
  if (hp_int(m, a, "attention.key_length", 0, dflt_hd, 1, 1 << 12, &hp->head_dim, err) ||
      hp_int(m, a, "attention.value_length", 0, hp->head_dim, 1, 1 << 12, &vdim, err))
    return PF_ERR;
  if (hp->head_dim == 0)
    return pf_seterr(err, PF_ERR, "GGUF %s.embedding_length %d is not a multiple of %s.attention.head_count %d (and %s.attention.key_length is not set)",
                     a, hp->n_embd, a, hp->n_head, a);
  if (vdim != hp->head_dim)
    return pf_seterr(err, PF_ERR, "GGUF %s.attention.value_length %d differs from key_length %d: not supported", a, vdim,
                     hp->head_dim);
  hp->n_ctx = hp->n_ctx_train;
  int window;
  if (hp_int(m, a, "attention.sliding_window", 0, 0, 0, 1 << 24, &window, err)) return PF_ERR;
  /* a context no longer than the window attends to everything: the window has nothing to slide */
  if (window > 0 && window < hp->n_ctx) hp->n_ctx = window;
  hp->rope_scale = 1.0f;
  if (hp->rope != PF_ROPE_NONE) {
    if (hp_float(m, a, "rope.freq_base", 10000.0f, 1.0f, 1e12f, &hp->rope_base, err) ||
        hp_int(m, a, "rope.dimension_count", 0, hp->head_dim, 2, hp->head_dim, &hp->rope_dim, err) ||
        rope_scaling(m, a, err))
      return PF_ERR;
    if (hp->rope_dim % 2) return pf_seterr(err, PF_ERR, "GGUF %s.rope.dimension_count %d is odd", a, hp->rope_dim);
  }
  hp->n_vocab = m->vocab.n;
  (void)nm;
  return PF_OK;
}

/* A layer's tensors: whichever of the optional ones the file has. */
static int load_layer(pf_model *m, const family *f, int l, pf_err *err) {
  const pf_hparams *hp = &m->hp;
  pf_layer *L = &m->layers[l];
  int64_t d = hp->n_embd, qd = pf_q_dim(hp), kvd = pf_kv_dim(hp), ff = hp->n_ff, hd = hp->head_dim;
  int ln = hp->norm == PF_NORM_LAYER;
  char nm[GGUF_MAX_NAME + 16];
#define NAME(suffix) (snprintf(nm, sizeof nm, "blk.%d.%s", l, suffix), nm)
  if (get_vector(m, NAME("attn_norm.weight"), d, 1, &L->attn_norm, err) ||
      get_vector(m, NAME("attn_norm.bias"), d, ln, &L->attn_norm_b, err) ||
      get_matrix(m, NAME("attn_qkv.weight"), d, qd + 2 * kvd, 0, &L->wqkv, err))
    return PF_ERR;
  if (L->wqkv.data) {
    if (get_vector(m, NAME("attn_qkv.bias"), qd + 2 * kvd, 0, &L->bqkv, err)) return PF_ERR;
  } else if (get_matrix(m, NAME("attn_q.weight"), d, qd, 1, &L->wq, err) ||
             get_matrix(m, NAME("attn_k.weight"), d, kvd, 1, &L->wk, err) ||
             get_matrix(m, NAME("attn_v.weight"), d, kvd, 1, &L->wv, err))
    return PF_ERR;
  if (get_vector(m, NAME("attn_q.bias"), qd, 0, &L->bq, err) || get_vector(m, NAME("attn_k.bias"), kvd, 0, &L->bk, err) ||
      get_vector(m, NAME("attn_v.bias"), kvd, 0, &L->bv, err) ||
      get_vector(m, NAME("attn_q_norm.weight"), hd, f->qk_norm, &L->q_norm, err) ||
      get_vector(m, NAME("attn_k_norm.weight"), hd, f->qk_norm || L->q_norm, &L->k_norm, err) ||
      get_matrix(m, NAME("attn_output.weight"), qd, d, 1, &L->wo, err) ||
      get_vector(m, NAME("attn_output.bias"), d, 0, &L->bo, err) ||
      get_vector(m, NAME("ffn_norm.weight"), d, 1, &L->ffn_norm, err) ||
      get_vector(m, NAME("ffn_norm.bias"), d, ln, &L->ffn_norm_b, err) ||
      get_matrix(m, NAME("ffn_down.weight"), ff, d, 1, &L->w_down, err) ||
      get_vector(m, NAME("ffn_down.bias"), d, 0, &L->b_down, err))
    return PF_ERR;
  if (hp->act == PF_ACT_GELU) {
    if (get_matrix(m, NAME("ffn_up.weight"), d, ff, 1, &L->w_up, err) || get_vector(m, NAME("ffn_up.bias"), ff, 0, &L->b_up, err))
      return PF_ERR;
  } else {
    if (get_matrix(m, NAME("ffn_gate.weight"), d, ff, 0, &L->w_gate, err)) return PF_ERR;
    int64_t up = L->w_gate.data ? ff : 2 * ff;   /* no gate: gate and up fused in ffn_up (phi3) */
    if (get_matrix(m, NAME("ffn_up.weight"), d, up, 1, &L->w_up, err) || get_vector(m, NAME("ffn_up.bias"), up, 0, &L->b_up, err) ||
        get_vector(m, NAME("ffn_gate.bias"), ff, 0, &L->b_gate, err))
      return PF_ERR;
  }
#undef NAME
  if (hp->qk_norm != (L->q_norm != NULL) && l > 0)
    return pf_seterr(err, PF_ERR, "GGUF: layer %d %s per-head q/k norms and layer 0 %s", l, L->q_norm ? "has" : "lacks",
                     hp->qk_norm ? "has them" : "does not");
  return PF_OK;
}

static int load_weights(pf_model *m, const family *f, pf_err *err) {
  pf_hparams *hp = &m->hp;
  int64_t d = hp->n_embd, V = hp->n_vocab;
  int ln = hp->norm == PF_NORM_LAYER;
  m->used = calloc((size_t)m->g.n_tensors, 1);
  if (!m->used) return pf_seterr(err, PF_NOMEM, "out of memory");
  if (get_matrix(m, "token_embd.weight", d, V, 1, &m->tok_embd, err) ||
      (hp->rope == PF_ROPE_NONE && get_matrix(m, "position_embd.weight", d, hp->n_ctx_train, 1, &m->pos_embd, err)) ||
      get_vector(m, "output_norm.weight", d, 1, &m->out_norm, err) ||
      get_vector(m, "output_norm.bias", d, ln, &m->out_norm_b, err) ||
      get_matrix(m, "output.weight", d, V, 0, &m->output, err) || get_vector(m, "output.bias", V, 0, &m->output_b, err) ||
      (hp->rope != PF_ROPE_NONE && get_vector(m, "rope_freqs.weight", hp->rope_dim / 2, 0, &m->rope_freqs, err)))
    return PF_ERR;
  if (!m->output.data) m->output = m->tok_embd;   /* tied embeddings */
  for (int i = 0; m->rope_freqs && i < hp->rope_dim / 2; i++)
    if (!(m->rope_freqs[i] > 0) || !isfinite(m->rope_freqs[i]))
      return pf_seterr(err, PF_ERR, "GGUF tensor 'rope_freqs.weight': factor %d is %g (factors must be positive)", i,
                       (double)m->rope_freqs[i]);
  m->rope = (pf_rope_cfg){hp->rope_dim, hp->rope == PF_ROPE_NEOX, hp->rope_base, hp->rope_scale, m->rope_freqs};
  m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
  if (!m->layers) return pf_seterr(err, PF_NOMEM, "out of memory");
  for (int l = 0; l < hp->n_layer; l++) {
    if (l == 0) hp->qk_norm = gguf_find_tensor(&m->g, "blk.0.attn_q_norm.weight") != NULL;
    if (load_layer(m, f, l, err)) return PF_ERR;
  }
  /* every tensor of the file takes part: one this engine does not know would be silently ignored */
  for (uint64_t i = 0; i < m->g.n_tensors; i++)
    if (!m->used[i]) {
      const gguf_tensor *t = &m->g.tensors[i];
      char nm[96];
      pf_quote_bytes(nm, sizeof nm, t->name.p, (size_t)t->name.n);
      return pf_seterr(err, PF_ERR, "GGUF tensor %s is not part of a %s model as this engine computes it (not supported)",
                       nm, f->name);
    }
  return PF_OK;
}

/* The fingerprint: a canonical serialization of the hyperparameters (little-endian 32-bit fields, the
** first 12 in the layout of format 1, then fields later families added, only when they differ from
** their defaults) and of every tensor's name, shape, type and bytes. */
static void put_le32(uint8_t *b, uint32_t v) { b[0] = (uint8_t)v, b[1] = (uint8_t)(v >> 8), b[2] = (uint8_t)(v >> 16), b[3] = (uint8_t)(v >> 24); }
static uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

static void make_fingerprint(pf_model *m) {
  const pf_hparams *hp = &m->hp;
  uint8_t b[24 * 4];
  uint32_t fields[] = {(uint32_t)hp->arch, (uint32_t)hp->n_layer, (uint32_t)hp->n_embd, (uint32_t)hp->n_head,
                       (uint32_t)hp->n_head_kv, (uint32_t)hp->head_dim, (uint32_t)hp->n_ff, (uint32_t)hp->n_vocab,
                       (uint32_t)hp->n_ctx_train, f32_bits(hp->norm_eps), f32_bits(hp->rope_base), (uint32_t)hp->rope_dim};
  size_t n = 0;
  for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++, n += 4) put_le32(b + n, fields[i]);
  if (hp->n_ctx != hp->n_ctx_train || hp->rope_scale != 1.0f) {   /* added with the model families */
    put_le32(b + n, 2), n += 4;
    put_le32(b + n, (uint32_t)hp->n_ctx), n += 4;
    put_le32(b + n, f32_bits(hp->rope_scale)), n += 4;
  }
  uint64_t h = pf_hash64(b, n, 1);
  h = pf_hash64(pf_model_arch_name(m), strlen(pf_model_arch_name(m)), h);
  for (uint64_t i = 0; i < m->g.n_tensors; i++) {
    const gguf_tensor *t = &m->g.tensors[i];
    uint8_t ne[GGUF_MAX_DIMS * 8];
    for (int d = 0; d < GGUF_MAX_DIMS; d++) put_le32(ne + 8 * d, (uint32_t)t->ne[d]), put_le32(ne + 8 * d + 4, (uint32_t)(t->ne[d] >> 32));
    h = pf_hash64(t->name.p, t->name.n, h);
    h = pf_hash64(ne, sizeof ne, h ^ t->type);
    h = pf_hash64(t->data, t->nbytes, h);
  }
  if (m->g.n_tensors == 0) {   /* vocab-only: the tokens identify it */
    for (int i = 0; i < m->vocab.n; i++) h = pf_hash64(m->vocab.text[i], (size_t)m->vocab.len[i], h);
  }
  snprintf(m->fingerprint, sizeof m->fingerprint, "%016llx", (unsigned long long)h);
}

static pf_model *model_from_gguf(pf_model *m, const char *path, pf_err *err);

pf_model *pf_model_load(const char *path, pf_err *err) {
  pf_model *m = calloc(1, sizeof *m);
  if (!m) { pf_seterr(err, PF_NOMEM, "out of memory"); return NULL; }
  m->path = strdup(path);
  if (!m->path) { pf_seterr(err, PF_NOMEM, "out of memory"); goto fail; }
  if (gguf_open(&m->g, path, err)) goto fail;
  memcpy(m->file_id, m->g.file_id, sizeof m->file_id);
  return model_from_gguf(m, path, err);
fail:
  pf_model_free(m);
  return NULL;
}

pf_model *pf_model_load_mem(const void *data, size_t n, const char *name, pf_err *err) {
  pf_model *m = calloc(1, sizeof *m);
  if (!m) { pf_seterr(err, PF_NOMEM, "out of memory"); return NULL; }
  m->path = strdup(name);
  pf_err e2;
  if (!m->path) { pf_seterr(err, PF_NOMEM, "out of memory"); goto fail; }
  if (gguf_parse(&m->g, data, n, &e2)) { pf_seterr(err, e2.code, "'%s': %s", name, e2.msg); goto fail; }
  return model_from_gguf(m, name, err);
fail:
  pf_model_free(m);
  return NULL;
}

/* The rest of a load, on a parsed GGUF: family, vocabulary, hyperparameters, weights. */
static pf_model *model_from_gguf(pf_model *m, const char *path, pf_err *err) {
  pf_err e2;
  const gguf_kv *arch = gguf_find(&m->g, "general.architecture");
  if (!arch || arch->type != GGUF_T_STRING) {
    pf_seterr(err, PF_ERR, "'%s': GGUF general.architecture is %s", path, arch ? "not a string" : "missing");
    goto fail;
  }
  const family *f = NULL;
  for (int i = 0; i < N_FAMILIES; i++) if (gguf_str_eq(arch->v.s, g_families[i].name)) f = &g_families[i];
  if (!f) {
    char nm[64];
    pf_quote_bytes(nm, sizeof nm, arch->v.s.p, (size_t)arch->v.s.n);
    pf_seterr(err, PF_ERR, "'%s': architecture %s is not supported (supported: llama, qwen2, qwen3, phi3, gpt2)", path, nm);
    goto fail;
  }
  m->hp.arch = f->arch;
  /* the vocabulary, then a byte-level BPE vocabulary's merge and byte tables (tokenizer_bpe.c) */
  if (pf_vocab_load(&m->vocab, &m->g, &e2) || (m->vocab.kind == PF_TOK_BPE && pf_bpe_load(&m->vocab, &m->g, &e2))) {
    pf_seterr(err, e2.code, "'%s': %s", path, e2.msg);
    goto fail;
  }
  for (uint64_t i = 0; i < m->g.n_tensors; i++) m->n_params += m->g.tensors[i].n_elem;
  if (m->g.n_tensors > 0) {
    if (load_hparams(m, f, &e2) || load_weights(m, f, &e2)) { pf_seterr(err, e2.code, "'%s': %s", path, e2.msg); goto fail; }
    m->has_weights = 1;
  } else {
    m->hp.n_vocab = m->vocab.n;
  }
  free(m->used);
  m->used = NULL;
  make_fingerprint(m);
  return m;
fail:
  pf_model_free(m);
  return NULL;
}
