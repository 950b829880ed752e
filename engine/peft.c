/*
** peft.c — interchange with Hugging Face PEFT: a safetensors reader and writer, and a prefix's keys and
** values in the layout PEFT's prefix-tuning adapter saves (docs/prefix-format.md, "PEFT").
**
** PEFT keeps a prefix as "prompt_embeddings", shape (num_virtual_tokens, num_layers * 2 * token_dim): row p
** holds, for each layer l, the key (index 2l) then the value (2l+1) of virtual token p, each token_dim =
** n_head_kv * head_dim floats, head after head. Hugging Face Llama checkpoints rotate dimension i with
** i + rope_dim/2 ("rotate_half"); llama.cpp's converter permutes the Q/K rows of `llama` models so that GGUF
** rotates adjacent pairs (2i, 2i+1). Keys are stored after RoPE in both, so a key moves between the two
** layouts by that permutation within each head; values and the other families (NEOX RoPE, or none) are
** the same in both.
**
** The safetensors reader checks the file as the GGUF reader does: an 8-byte header length within the file
** and at most 100 MB, a header that is one JSON object of tensors {dtype, shape, data_offsets} (and an
** optional "__metadata__" of strings), known dtypes, shapes whose size matches their byte range, ranges
** inside the data, in order, without gaps or overlaps (the format's rule).
*/
#include "internal.h"
#include "train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ST_MAX_HEADER (100u << 20)
#define ST_MAX_TENSORS 4096

/* ------------------------------------------------------------ header JSON */

typedef struct jp { const char *p, *end; pf_err *err; } jp;

static void ws(jp *j) { while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r')) j->p++; }

/* a JSON string into out (at most cap-1 bytes, NUL-terminated; escapes decoded, \u as UTF-8) */
static int str(jp *j, char *out, size_t cap) {
  size_t n = 0;
  ws(j);
  if (j->p >= j->end || *j->p != '"') return -1;
  j->p++;
  while (j->p < j->end && *j->p != '"') {
    unsigned c = (unsigned char)*j->p++;
    if (c < 0x20) return -1;
    if (c == '\\') {
      if (j->p >= j->end) return -1;
      c = (unsigned char)*j->p++;
      switch (c) {
        case '"': case '\\': case '/': break;
        case 'b': c = '\b'; break;
        case 'f': c = '\f'; break;
        case 'n': c = '\n'; break;
        case 'r': c = '\r'; break;
        case 't': c = '\t'; break;
        case 'u': {
          unsigned v = 0;
          for (int k = 0; k < 4; k++) {
            if (j->p >= j->end) return -1;
            char h = *j->p++;
            v = v * 16 + (unsigned)(h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10 : h >= 'A' && h <= 'F' ? h - 'A' + 10 : 99);
            if (v > 0xFFFF) return -1;
          }
          if (v == 0 || (v >= 0xD800 && v <= 0xDFFF)) return -1;   /* no NUL, no surrogates in names */
          char u[3];
          int k = v < 0x80 ? (u[0] = (char)v, 1) : v < 0x800 ? (u[0] = (char)(0xC0 | v >> 6), u[1] = (char)(0x80 | (v & 0x3F)), 2)
                : (u[0] = (char)(0xE0 | v >> 12), u[1] = (char)(0x80 | ((v >> 6) & 0x3F)), u[2] = (char)(0x80 | (v & 0x3F)), 3);
          if (n + (size_t)k >= cap) return -2;
          memcpy(out + n, u, (size_t)k);
          n += (size_t)k;
          continue;
        }
        default: return -1;
      }
    }
    if (n + 1 >= cap) return -2;
    out[n++] = (char)c;
  }
  if (j->p >= j->end) return -1;
  j->p++;
  out[n] = 0;
  return 0;
}

static int lit(jp *j, char c) {
  ws(j);
  if (j->p >= j->end || *j->p != c) return 0;
  j->p++;
  return 1;
}

static int uint_(jp *j, uint64_t *v) {
  ws(j);
  if (j->p >= j->end || *j->p < '0' || *j->p > '9') return -1;
  if (*j->p == '0' && j->p + 1 < j->end && j->p[1] >= '0' && j->p[1] <= '9') return -1;
  uint64_t x = 0;
  while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
    if (x > (UINT64_MAX - 9) / 10) return -1;
    x = x * 10 + (uint64_t)(*j->p++ - '0');
  }
  if (j->p < j->end && (*j->p == '.' || *j->p == 'e' || *j->p == 'E')) return -1;
  *v = x;
  return 0;
}

static const struct { const char *name; int size; } st_types[] = {
    {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"F64", 8}, {"I64", 8}, {"I32", 4}, {"I16", 2}, {"I8", 1}, {"U8", 1}, {"BOOL", 1},
    {"U16", 2}, {"U32", 4}, {"U64", 8}, {"F8_E4M3", 1}, {"F8_E5M2", 1}};

static int tensor(jp *j, pf_st_tensor *t) {
  int have_dt = 0, have_sh = 0, have_off = 0;
  char key[32];
  if (!lit(j, '{')) return pf_seterr(j->err, PF_ERR, "safetensors header: tensor '%.64s' is not an object", t->name);
  for (int first = 1;; first = 0) {
    if (first && lit(j, '}')) break;
    int r = str(j, key, sizeof key);
    if (r || !lit(j, ':')) return pf_seterr(j->err, PF_ERR, "safetensors header: tensor '%.64s': malformed field", t->name);
    if (!strcmp(key, "dtype") && !have_dt) {
      char dt[16];
      if (str(j, dt, sizeof dt)) return pf_seterr(j->err, PF_ERR, "safetensors header: tensor '%.64s': dtype is not a short string", t->name);
      t->dtype = -1;
      for (size_t k = 0; k < sizeof st_types / sizeof st_types[0]; k++)
        if (!strcmp(dt, st_types[k].name)) t->dtype = (int)k;
      if (t->dtype < 0) return pf_seterr(j->err, PF_ERR, "safetensors header: tensor '%.64s': unknown dtype '%s'", t->name, dt);
      have_dt = 1;
    } else if (!strcmp(key, "shape") && !have_sh) {
      if (!lit(j, '[')) return pf_seterr(j->err, PF_ERR, "safetensors header: tensor '%.64s': shape is not an array", t->name);
      t->n_dims = 0;
      if (!lit(j, ']'))
        for (;;) {
          uint64_t v;
          if (t->n_dims == 8 || uint_(j, &v) || v > (1ull << 40))
            return pf_seterr(j->err, PF_ERR, "safetensors header: tensor '%.64s': shape must be at most 8 non-negative integers below 2^40", t->name);
          t->shape[t->n_dims++] = (int64_t)v;
          if (lit(j, ']')) break;
          if (!lit(j, ',')) return pf_seterr(j->err, PF_ERR, "safetensors header: tensor '%.64s': malformed shape", t->name);
        }
      have_sh = 1;
    } else if (!strcmp(key, "data_offsets") && !have_off) {
      if (!lit(j, '[') || uint_(j, &t->begin) || !lit(j, ',') || uint_(j, &t->end) || !lit(j, ']'))
        return pf_seterr(j->err, PF_ERR, "safetensors header: tensor '%.64s': data_offsets must be [begin, end]", t->name);
      have_off = 1;
    } else
      return pf_seterr(j->err, PF_ERR, "safetensors header: tensor '%.64s': unexpected or repeated field '%s'", t->name, key);
    if (lit(j, '}')) break;
    if (!lit(j, ',')) return pf_seterr(j->err, PF_ERR, "safetensors header: tensor '%.64s': malformed object", t->name);
  }
  if (!have_dt || !have_sh || !have_off)
    return pf_seterr(j->err, PF_ERR, "safetensors header: tensor '%.64s' lacks %s", t->name, !have_dt ? "dtype" : !have_sh ? "shape" : "data_offsets");
  return PF_OK;
}

/* "__metadata__": an object of string values */
static int metadata(jp *j) {
  char buf[4096];
  if (!lit(j, '{')) return pf_seterr(j->err, PF_ERR, "safetensors header: __metadata__ is not an object");
  for (int first = 1;; first = 0) {
    if (first && lit(j, '}')) return PF_OK;
    if (str(j, buf, sizeof buf) || !lit(j, ':') || str(j, buf, sizeof buf))
      return pf_seterr(j->err, PF_ERR, "safetensors header: __metadata__ must map strings to strings (of at most 4 KB)");
    if (lit(j, '}')) return PF_OK;
    if (!lit(j, ',')) return pf_seterr(j->err, PF_ERR, "safetensors header: malformed __metadata__");
  }
}

static int by_begin(const void *a, const void *b) {
  const pf_st_tensor *x = *(pf_st_tensor *const *)a, *y = *(pf_st_tensor *const *)b;
  return x->begin < y->begin ? -1 : x->begin > y->begin;
}

int pf_safetensors_read(const uint8_t *b, size_t n, pf_st_file *f, pf_err *err) {
  memset(f, 0, sizeof *f);
  if (n < 8) return pf_seterr(err, PF_ERR, "not a safetensors file: %zu bytes, the header length alone needs 8", n);
  uint64_t hl;
  memcpy(&hl, b, 8);
  if (hl > ST_MAX_HEADER) return pf_seterr(err, PF_ERR, "safetensors header length %llu exceeds %u bytes", (unsigned long long)hl, ST_MAX_HEADER);
  if (hl < 2 || hl > n - 8) return pf_seterr(err, PF_ERR, "safetensors header length %llu does not fit a file of %zu bytes", (unsigned long long)hl, n);
  if (!pf_json_is_object((const char *)b + 8, (size_t)hl)) return pf_seterr(err, PF_ERR, "safetensors header is not a JSON object (%llu bytes)", (unsigned long long)hl);
  jp j = {(const char *)b + 8, (const char *)b + 8 + hl, err};
  f->data = b + 8 + hl;
  f->data_len = n - 8 - (size_t)hl;
  if (!lit(&j, '{')) return pf_seterr(err, PF_ERR, "safetensors header is not a JSON object");
  int cap = 0, rc = PF_OK, have_meta = 0;
  for (int first = 1;; first = 0) {
    if (first && lit(&j, '}')) break;
    char name[PF_ST_NAME];
    int r = str(&j, name, sizeof name);
    if (r == -2) { rc = pf_seterr(err, PF_ERR, "safetensors header: a tensor name is longer than %d bytes", PF_ST_NAME - 1); goto bad; }
    if (r || !lit(&j, ':')) { rc = pf_seterr(err, PF_ERR, "safetensors header: malformed entry"); goto bad; }
    if (!strcmp(name, "__metadata__")) {
      if (have_meta++) { rc = pf_seterr(err, PF_ERR, "safetensors header: __metadata__ appears twice"); goto bad; }
      if ((rc = metadata(&j))) goto bad;
    } else {
      for (int i = 0; i < f->n; i++)
        if (!strcmp(f->t[i].name, name)) { rc = pf_seterr(err, PF_ERR, "safetensors header: tensor '%.64s' appears twice", name); goto bad; }
      if (f->n == ST_MAX_TENSORS) { rc = pf_seterr(err, PF_TOOBIG, "safetensors header: more than %d tensors", ST_MAX_TENSORS); goto bad; }
      if (f->n == cap) {
        cap = cap ? 2 * cap : 8;
        pf_st_tensor *nt = realloc(f->t, sizeof *nt * (size_t)cap);
        if (!nt) { rc = pf_seterr(err, PF_NOMEM, "out of memory reading a safetensors header"); goto bad; }
        f->t = nt;
      }
      pf_st_tensor *t = &f->t[f->n++];
      memset(t, 0, sizeof *t);
      memcpy(t->name, name, sizeof name);
      if ((rc = tensor(&j, t))) goto bad;
      uint64_t elems = 1;
      for (int d = 0; d < t->n_dims; d++) {
        if (t->shape[d] && elems > UINT64_MAX / (uint64_t)t->shape[d] / 8) { rc = pf_seterr(err, PF_ERR, "safetensors: tensor '%.64s' is too large", name); goto bad; }
        elems *= (uint64_t)t->shape[d];
      }
      t->elem_size = st_types[t->dtype].size;
      t->n_elems = elems;
      if (t->end < t->begin || t->end > f->data_len)
        { rc = pf_seterr(err, PF_ERR, "safetensors: tensor '%.64s' data_offsets [%llu, %llu] lie outside the %zu data bytes", name, (unsigned long long)t->begin, (unsigned long long)t->end, f->data_len); goto bad; }
      if (t->end - t->begin != elems * (uint64_t)t->elem_size)
        { rc = pf_seterr(err, PF_ERR, "safetensors: tensor '%.64s' has %llu bytes; its shape and dtype need %llu", name, (unsigned long long)(t->end - t->begin), (unsigned long long)(elems * (uint64_t)t->elem_size)); goto bad; }
    }
    if (lit(&j, '}')) break;
    if (!lit(&j, ',')) { rc = pf_seterr(err, PF_ERR, "safetensors header: malformed object"); goto bad; }
  }
  /* the tensors tile the data exactly */
  {
    pf_st_tensor **o = malloc(sizeof *o * (size_t)(f->n ? f->n : 1));
    if (!o) { rc = pf_seterr(err, PF_NOMEM, "out of memory"); goto bad; }
    for (int i = 0; i < f->n; i++) o[i] = &f->t[i];
    qsort(o, (size_t)f->n, sizeof *o, by_begin);
    uint64_t at = 0;
    for (int i = 0; i < f->n && !rc; i++) {
      if (o[i]->begin != at)
        rc = pf_seterr(err, PF_ERR, "safetensors: tensor '%.64s' starts at data byte %llu, expected %llu (gaps and overlaps are not allowed)", o[i]->name, (unsigned long long)o[i]->begin, (unsigned long long)at);
      at = o[i]->end;
    }
    if (!rc && at != f->data_len)
      rc = pf_seterr(err, PF_ERR, "safetensors: the tensors cover %llu of %zu data bytes", (unsigned long long)at, f->data_len);
    free(o);
    if (rc) goto bad;
  }
  return PF_OK;
bad:
  pf_safetensors_clear(f);
  return rc;
}

void pf_safetensors_clear(pf_st_file *f) {
  free(f->t);
  memset(f, 0, sizeof *f);
}

const pf_st_tensor *pf_safetensors_find(const pf_st_file *f, const char *name) {
  for (int i = 0; i < f->n; i++) if (!strcmp(f->t[i].name, name)) return &f->t[i];
  return NULL;
}

/* element i of a float tensor as f32 (dtype F32, F16 or BF16: st_types' first three) */
enum { ST_F32 = 0, ST_F16 = 1, ST_BF16 = 2 };
static float st_get(const pf_st_file *f, const pf_st_tensor *t, uint64_t i) {
  const uint8_t *p = f->data + t->begin + i * (uint64_t)t->elem_size;
  if (t->dtype == ST_F32) { float v; memcpy(&v, p, 4); return v; }
  if (t->dtype == ST_F16) { uint16_t h; memcpy(&h, p, 2); return pf_f16_to_f32(h); }
  uint16_t h;   /* BF16 */
  memcpy(&h, p, 2);
  uint32_t u = (uint32_t)h << 16;
  float v;
  memcpy(&v, &u, 4);
  return v;
}

/* --------------------------------------------------------------- PEFT layout */

/* GGUF (adjacent pairs) index -> Hugging Face (rotate_half) index within a head, for the rotated dims */
static int hf_index(int g, int rope_dim) {
  if (g >= rope_dim) return g;
  return g % 2 == 0 ? g / 2 : g / 2 + rope_dim / 2;
}

static int permutes(int arch) { return arch == PF_ARCH_LLAMA; }

int pf_peft_export(const pf_prefix *p, uint8_t **out, size_t *out_len, pf_err *err) {
  *out = NULL;
  *out_len = 0;
  if (p->n_members) return pf_seterr(err, PF_ERR, "an ensemble of %d prefix%s cannot be exported as one PEFT adapter: export its members", p->n_members, p->n_members == 1 ? "" : "es");
  int P = p->prefix_len, L = p->n_layer, H = p->n_head_kv, D = p->head_dim, kvd = H * D;
  size_t cols = (size_t)L * 2 * kvd, bytes = (size_t)P * cols * 4;
  char hdr[1024];
  int hl = snprintf(hdr, sizeof hdr,
                    "{\"__metadata__\":{\"format\":\"pt\",\"sqlite_prefix_fingerprint\":\"%s\",\"sqlite_prefix_arch\":\"%s\","
                    "\"sqlite_prefix_key_layout\":\"%s\"},\"prompt_embeddings\":{\"dtype\":\"F32\",\"shape\":[%d,%zu],"
                    "\"data_offsets\":[0,%zu]}}",
                    p->fingerprint, pf_arch_name(p->arch), permutes(p->arch) ? "hf_rotate_half" : "as_gguf", P, cols, bytes);
  while (hl % 8) hdr[hl++] = ' ';   /* the data starts 8-aligned, as the reference writer does */
  hdr[hl] = 0;
  size_t total = 8 + (size_t)hl + bytes;
  uint8_t *b = malloc(total);
  if (!b) return pf_seterr(err, PF_NOMEM, "out of memory for a safetensors file of %zu bytes", total);
  uint64_t h64 = (uint64_t)hl;
  memcpy(b, &h64, 8);
  memcpy(b + 8, hdr, (size_t)hl);
  float *dst = malloc(bytes ? bytes : 1);
  if (!dst) { free(b); return pf_seterr(err, PF_NOMEM, "out of memory"); }
  int perm = permutes(p->arch);
  for (int l = 0; l < L; l++)
    for (int kv = 0; kv < 2; kv++)
      for (int t = 0; t < P; t++) {
        const float *src = p->kv + (((size_t)l * 2 + kv) * P + t) * kvd;
        float *row = dst + (size_t)t * cols + ((size_t)l * 2 + kv) * kvd;
        for (int h = 0; h < H; h++)
          for (int g = 0; g < D; g++) row[h * D + (kv == 0 && perm ? hf_index(g, D) : g)] = src[h * D + g];
      }
  memcpy(b + 8 + hl, dst, bytes);
  free(dst);
  *out = b;
  *out_len = total;
  return PF_OK;
}

char *pf_peft_config_json(const pf_prefix *p, int n_head) {
  char *s = malloc(1024);
  if (!s) return NULL;
  snprintf(s, 1024,
           "{\"peft_type\":\"PREFIX_TUNING\",\"task_type\":\"CAUSAL_LM\",\"num_virtual_tokens\":%d,\"token_dim\":%d,"
           "\"num_transformer_submodules\":1,\"num_attention_heads\":%d,\"num_layers\":%d,\"encoder_hidden_size\":%d,"
           "\"prefix_projection\":false,\"inference_mode\":true,\"base_model_name_or_path\":null,\"revision\":null}",
           p->prefix_len, p->n_head_kv * p->head_dim, n_head > 0 ? n_head : p->n_head_kv, p->n_layer, p->n_head_kv * p->head_dim);
  return s;
}

int pf_peft_import(const pf_model *m, const uint8_t *st, size_t st_len, int want_P, float **kv_out, int *P_out, pf_err *err) {
  const pf_hparams *hp = &m->hp;
  *kv_out = NULL;
  *P_out = 0;
  pf_st_file f;
  int rc = pf_safetensors_read(st, st_len, &f, err);
  if (rc) return rc;
  const pf_st_tensor *t = pf_safetensors_find(&f, "prompt_embeddings");
  int L = hp->n_layer, H = hp->n_head_kv, D = hp->head_dim, kvd = H * D;
  size_t cols = (size_t)L * 2 * kvd;
  if (!t) { rc = pf_seterr(err, PF_ERR, "the safetensors file has no tensor 'prompt_embeddings' (%d tensors): not a PEFT prefix-tuning adapter", f.n); goto done; }
  if (t->dtype != ST_F32 && t->dtype != ST_F16 && t->dtype != ST_BF16) {
    rc = pf_seterr(err, PF_ERR, "prompt_embeddings has dtype %s; F32, F16 or BF16 expected", st_types[t->dtype].name);
    goto done;
  }
  if (t->n_dims != 2 || (uint64_t)t->shape[1] != cols || t->shape[0] < 1 || t->shape[0] > PF_PREFIX_LEN_MAX) {
    char shape[8 * 16 + 4];   /* the shape as given, every dimension */
    size_t o = 0;
    shape[o++] = '(';
    for (int d = 0; d < t->n_dims; d++) o += (size_t)snprintf(shape + o, sizeof shape - o, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
    snprintf(shape + o, sizeof shape - o, ")");
    rc = pf_seterr(err, PF_ERR, "prompt_embeddings has shape %s; this model's prefix needs (num_virtual_tokens, %zu) = "
                   "(P, n_layer %d x 2 x n_head_kv %d x head_dim %d)%s", shape, cols, L, H, D,
                   t->n_dims == 2 && (uint64_t)t->shape[1] != cols ? " (an adapter saved with prefix_projection in inference mode "
                   "holds the MLP's input, not keys and values)" : t->n_dims != 2 ? " (2 dimensions expected)" : " (1.." PF_STR(PF_PREFIX_LEN_MAX) " rows)");
    goto done;
  }
  int P = (int)t->shape[0];
  if (want_P > 0 && want_P != P) { rc = pf_seterr(err, PF_ERR, "the config says num_virtual_tokens %d, prompt_embeddings has %d rows", want_P, P); goto done; }
  float *kv = malloc(sizeof(float) * (size_t)P * cols);
  if (!kv) { rc = pf_seterr(err, PF_NOMEM, "out of memory"); goto done; }
  int perm = permutes(hp->arch);
  for (int l = 0; l < L; l++)
    for (int k = 0; k < 2; k++)
      for (int p = 0; p < P; p++) {
        float *dst = kv + (((size_t)l * 2 + k) * P + p) * kvd;
        uint64_t row = (uint64_t)p * cols + ((uint64_t)l * 2 + k) * kvd;
        for (int h = 0; h < H; h++)
          for (int g = 0; g < D; g++) {
            float v = st_get(&f, t, row + (uint64_t)h * D + (uint64_t)(k == 0 && perm ? hf_index(g, D) : g));
            if (!isfinite(v) || fabsf(v) > PF_PREFIX_MAX_ABS) {
              free(kv);
              rc = pf_seterr(err, PF_ERR, "prompt_embeddings holds %g at row %d, outside what a prefix may hold (finite, |x| <= 65504)", v, p);
              goto done;
            }
            dst[h * D + g] = v;
          }
      }
  *kv_out = kv;
  *P_out = P;
done:
  pf_safetensors_clear(&f);
  return rc;
}
