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

const char *pf_model_arch_name(const pf_model *m) {
  switch (m->hp.arch) {
    case PF_ARCH_LLAMA: return "llama";
    case PF_ARCH_GPT2: return "gpt2";
    default: return "none";
  }
}

void pf_model_free(pf_model *m) {
  if (!m) return;
  for (int i = 0; i < m->n_owned; i++) free(m->owned[i]);
  free(m->owned);
  free(m->layers);
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

/* "blk.<l>.<suffix>": a matrix of n1 rows of n0, or a vector of n0 */
static int layer_matrix(pf_model *m, int l, const char *suffix, int64_t n0, int64_t n1, pf_wt *out, pf_err *err) {
  char nm[GGUF_MAX_NAME + 16];
  snprintf(nm, sizeof nm, "blk.%d.%s", l, suffix);
  return get_matrix(m, nm, n0, n1, 1, out, err);
}
static int layer_vector(pf_model *m, int l, const char *suffix, int64_t n0, float **out, pf_err *err) {
  char nm[GGUF_MAX_NAME + 16];
  snprintf(nm, sizeof nm, "blk.%d.%s", l, suffix);
  return get_vector(m, nm, n0, 1, out, err);
}

/* Token embeddings (and gpt2's learned positions), the final norm (with gpt2's bias), the output head
** (tied to the embeddings when the file has none) and the layer array. */
static int load_outer(pf_model *m, int gpt2, pf_err *err) {
  const pf_hparams *hp = &m->hp;
  int64_t d = hp->n_embd, V = hp->n_vocab;
  if (get_matrix(m, "token_embd.weight", d, V, 1, &m->tok_embd, err) ||
      (gpt2 && get_matrix(m, "position_embd.weight", d, hp->n_ctx, 1, &m->pos_embd, err)) ||
      get_vector(m, "output_norm.weight", d, 1, &m->out_norm, err) ||
      (gpt2 && get_vector(m, "output_norm.bias", d, 1, &m->out_norm_b, err)) ||
      get_matrix(m, "output.weight", d, V, 0, &m->output, err))
    return PF_ERR;
  if (!m->output.data) m->output = m->tok_embd;   /* tied embeddings */
  m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
  if (!m->layers) return pf_seterr(err, PF_NOMEM, "out of memory");
  return PF_OK;
}

static int load_llama(pf_model *m, pf_err *err) {
  pf_hparams *hp = &m->hp;
  const char *a = "llama";
  if (hp_int(m, a, "block_count", 1, 0, 1, 1024, &hp->n_layer, err) ||
      hp_int(m, a, "embedding_length", 1, 0, 1, 1 << 16, &hp->n_embd, err) ||
      hp_int(m, a, "feed_forward_length", 1, 0, 1, 1 << 20, &hp->n_ff, err) ||
      hp_int(m, a, "attention.head_count", 1, 0, 1, 1 << 12, &hp->n_head, err) ||
      hp_int(m, a, "attention.head_count_kv", 0, hp->n_head, 1, 1 << 12, &hp->n_head_kv, err) ||
      hp_int(m, a, "context_length", 1, 0, 1, 1 << 24, &hp->n_ctx, err) ||
      hp_float(m, a, "rope.freq_base", 10000.0f, 1.0f, 1e12f, &hp->rope_base, err) ||
      hp_float(m, a, "attention.layer_norm_rms_epsilon", 1e-5f, 0.0f, 1.0f, &hp->norm_eps, err))
    return PF_ERR;
  if (hp->n_embd % hp->n_head)
    return pf_seterr(err, PF_ERR, "GGUF llama.embedding_length %d is not a multiple of llama.attention.head_count %d",
                     hp->n_embd, hp->n_head);
  if (hp->n_head % hp->n_head_kv)
    return pf_seterr(err, PF_ERR, "GGUF llama.attention.head_count %d is not a multiple of head_count_kv %d",
                     hp->n_head, hp->n_head_kv);
  hp->head_dim = hp->n_embd / hp->n_head;
  if (hp_int(m, a, "rope.dimension_count", 0, hp->head_dim, 2, hp->head_dim, &hp->rope_dim, err)) return PF_ERR;
  if (hp->rope_dim % 2) return pf_seterr(err, PF_ERR, "GGUF llama.rope.dimension_count %d is odd", hp->rope_dim);
  hp->n_vocab = m->vocab.n;

  int64_t d = hp->n_embd, kvd = (int64_t)hp->n_head_kv * hp->head_dim, ff = hp->n_ff;
  if (load_outer(m, 0, err)) return PF_ERR;
  for (int l = 0; l < hp->n_layer; l++) {
    pf_layer *L = &m->layers[l];
#define M(field, suffix, n0, n1) \
  if (layer_matrix(m, l, suffix, n0, n1, &L->field, err)) return PF_ERR;
#define V(field, suffix, n0) \
  if (layer_vector(m, l, suffix, n0, &L->field, err)) return PF_ERR;
    V(attn_norm, "attn_norm.weight", d)
    M(wq, "attn_q.weight", d, d)
    M(wk, "attn_k.weight", d, kvd)
    M(wv, "attn_v.weight", d, kvd)
    M(wo, "attn_output.weight", d, d)
    V(ffn_norm, "ffn_norm.weight", d)
    M(w_gate, "ffn_gate.weight", d, ff)
    M(w_up, "ffn_up.weight", d, ff)
    M(w_down, "ffn_down.weight", ff, d)
#undef M
#undef V
  }
  return PF_OK;
}

static int load_gpt2(pf_model *m, pf_err *err) {
  pf_hparams *hp = &m->hp;
  const char *a = "gpt2";
  if (hp_int(m, a, "block_count", 1, 0, 1, 1024, &hp->n_layer, err) ||
      hp_int(m, a, "embedding_length", 1, 0, 1, 1 << 16, &hp->n_embd, err) ||
      hp_int(m, a, "feed_forward_length", 1, 0, 1, 1 << 20, &hp->n_ff, err) ||
      hp_int(m, a, "attention.head_count", 1, 0, 1, 1 << 12, &hp->n_head, err) ||
      hp_int(m, a, "context_length", 1, 0, 1, 1 << 24, &hp->n_ctx, err) ||
      hp_float(m, a, "attention.layer_norm_epsilon", 1e-5f, 0.0f, 1.0f, &hp->norm_eps, err))
    return PF_ERR;
  if (hp->n_embd % hp->n_head)
    return pf_seterr(err, PF_ERR, "GGUF gpt2.embedding_length %d is not a multiple of gpt2.attention.head_count %d",
                     hp->n_embd, hp->n_head);
  hp->n_head_kv = hp->n_head;
  hp->head_dim = hp->n_embd / hp->n_head;
  hp->n_vocab = m->vocab.n;
  int64_t d = hp->n_embd, ff = hp->n_ff;
  if (load_outer(m, 1, err)) return PF_ERR;
  for (int l = 0; l < hp->n_layer; l++) {
    pf_layer *L = &m->layers[l];
#define M(field, suffix, n0, n1) \
  if (layer_matrix(m, l, suffix, n0, n1, &L->field, err)) return PF_ERR;
#define V(field, suffix, n0) \
  if (layer_vector(m, l, suffix, n0, &L->field, err)) return PF_ERR;
    V(attn_norm, "attn_norm.weight", d)
    V(attn_norm_b, "attn_norm.bias", d)
    M(wqkv, "attn_qkv.weight", d, 3 * d)
    V(bqkv, "attn_qkv.bias", 3 * d)
    M(wo, "attn_output.weight", d, d)
    V(bo, "attn_output.bias", d)
    V(ffn_norm, "ffn_norm.weight", d)
    V(ffn_norm_b, "ffn_norm.bias", d)
    M(w_up, "ffn_up.weight", d, ff)
    V(b_up, "ffn_up.bias", ff)
    M(w_down, "ffn_down.weight", ff, d)
    V(b_down, "ffn_down.bias", d)
#undef M
#undef V
  }
  return PF_OK;
}

static void make_fingerprint(pf_model *m) {
  uint64_t h = pf_hash64(&m->hp, sizeof m->hp, 1);
  h = pf_hash64(pf_model_arch_name(m), strlen(pf_model_arch_name(m)), h);
  for (uint64_t i = 0; i < m->g.n_tensors; i++) {
    const gguf_tensor *t = &m->g.tensors[i];
    h = pf_hash64(t->name.p, t->name.n, h);
    h = pf_hash64(t->ne, sizeof t->ne, h ^ t->type);
    h = pf_hash64(t->data, t->nbytes, h);
  }
  if (m->g.n_tensors == 0) {   /* vocab-only: the tokens identify it */
    for (int i = 0; i < m->vocab.n; i++) h = pf_hash64(m->vocab.text[i], (size_t)m->vocab.len[i], h);
  }
  snprintf(m->fingerprint, sizeof m->fingerprint, "%016llx", (unsigned long long)h);
}

pf_model *pf_model_load(const char *path, pf_err *err) {
  pf_model *m = calloc(1, sizeof *m);
  if (!m) { pf_seterr(err, PF_NOMEM, "out of memory"); return NULL; }
  m->path = strdup(path);
  if (!m->path) { pf_seterr(err, PF_NOMEM, "out of memory"); goto fail; }
  if (gguf_open(&m->g, path, err)) goto fail;
  struct stat st;
  if (stat(path, &st) == 0) {
    m->file_id[0] = (uint64_t)st.st_dev;
    m->file_id[1] = (uint64_t)st.st_ino;
    m->file_id[2] = (uint64_t)st.st_size;
    m->file_id[3] = (uint64_t)st.st_mtime;
  }
  pf_err e2;
  const gguf_kv *arch = gguf_find(&m->g, "general.architecture");
  if (!arch || arch->type != GGUF_T_STRING) {
    pf_seterr(err, PF_ERR, "'%s': GGUF general.architecture is %s", path, arch ? "not a string" : "missing");
    goto fail;
  }
  if (gguf_str_eq(arch->v.s, "llama")) m->hp.arch = PF_ARCH_LLAMA;
  else if (gguf_str_eq(arch->v.s, "gpt2")) m->hp.arch = PF_ARCH_GPT2;
  else {
    pf_seterr(err, PF_ERR, "'%s': architecture '%.*s' is not supported (supported: llama, gpt2)", path,
              (int)(arch->v.s.n < 40 ? arch->v.s.n : 40), arch->v.s.p);
    goto fail;
  }
  if (pf_vocab_load(&m->vocab, &m->g, &e2)) { pf_seterr(err, e2.code, "'%s': %s", path, e2.msg); goto fail; }
  for (uint64_t i = 0; i < m->g.n_tensors; i++) m->n_params += m->g.tensors[i].n_elem;
  if (m->g.n_tensors > 0) {
    int rc = m->hp.arch == PF_ARCH_LLAMA ? load_llama(m, &e2) : load_gpt2(m, &e2);
    if (rc) { pf_seterr(err, e2.code, "'%s': %s", path, e2.msg); goto fail; }
    m->has_weights = 1;
  } else {
    m->hp.n_vocab = m->vocab.n;
  }
  make_fingerprint(m);
  return m;
fail:
  pf_model_free(m);
  return NULL;
}
