/*
** gguf.c — a GGUF v2/v3 reader built for hostile files.
**
** Every read is bounded by the bytes left; counts, sizes and offsets use
** checked arithmetic; string and array lengths are capped before anything is
** allocated; tensor data must lie inside the file. Errors name the field, the
** bad value, the limit and the byte offset.
*/
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>


const char *gguf_type_name(uint32_t t) {
  static const char *names[] = {"uint8", "int8", "uint16", "int16", "uint32", "int32",
                                "float32", "bool", "string", "array", "uint64",
                                "int64", "float64"};
  return t < GGUF_T_COUNT ? names[t] : "unknown";
}

/* ------------------------------------------------------ the bounded reader */

typedef struct rd {
  const uint8_t *b;
  uint64_t size, off;
  pf_err *err;
} rd;

static int rd_fail(rd *r, const char *what) {
  return pf_seterr(r->err, PF_ERR, "GGUF file truncated: %s needs more bytes than the %llu left at offset %llu",
                   what, (unsigned long long)(r->size - r->off), (unsigned long long)r->off);
}
static int rd_bytes(rd *r, void *out, uint64_t n, const char *what) {
  if (n > r->size - r->off) return rd_fail(r, what);
  memcpy(out, r->b + r->off, n);
  r->off += n;
  return PF_OK;
}
static int rd_u32(rd *r, uint32_t *v, const char *what) { return rd_bytes(r, v, 4, what); }
static int rd_u64(rd *r, uint64_t *v, const char *what) { return rd_bytes(r, v, 8, what); }

static int rd_str(rd *r, gguf_str *s, uint64_t cap, const char *what) {
  uint64_t at = r->off, n = 0;
  if (rd_u64(r, &n, what)) return PF_ERR;
  if (n > cap)
    return pf_seterr(r->err, PF_ERR, "GGUF %s length %llu exceeds the limit of %llu bytes (at offset %llu)",
                     what, (unsigned long long)n, (unsigned long long)cap, (unsigned long long)at);
  if (n > r->size - r->off)
    return pf_seterr(r->err, PF_ERR, "GGUF %s length %llu exceeds the %llu bytes left in the file (at offset %llu)",
                     what, (unsigned long long)n, (unsigned long long)(r->size - r->off), (unsigned long long)at);
  s->p = (const char *)r->b + r->off;
  s->n = n;
  r->off += n;
  return PF_OK;
}

static uint64_t scalar_size(uint32_t t) {
  switch (t) {
    case GGUF_T_UINT8: case GGUF_T_INT8: case GGUF_T_BOOL: return 1;
    case GGUF_T_UINT16: case GGUF_T_INT16: return 2;
    case GGUF_T_UINT32: case GGUF_T_INT32: case GGUF_T_FLOAT32: return 4;
    case GGUF_T_UINT64: case GGUF_T_INT64: case GGUF_T_FLOAT64: return 8;
    default: return 0;
  }
}

static int rd_scalar(rd *r, gguf_kv *kv, uint32_t t, const char *what) {
  uint8_t buf[8];
  uint64_t n = scalar_size(t);
  if (rd_bytes(r, buf, n, what)) return PF_ERR;
  switch (t) {
    case GGUF_T_UINT8: kv->v.u = buf[0]; break;
    case GGUF_T_INT8: kv->v.i = (int8_t)buf[0]; break;
    case GGUF_T_BOOL:
      if (buf[0] > 1)
        return pf_seterr(r->err, PF_ERR, "GGUF %s: bool value %u is not 0 or 1 (at offset %llu)", what,
                         buf[0], (unsigned long long)(r->off - 1));
      kv->v.u = buf[0]; break;
    case GGUF_T_UINT16: { uint16_t x; memcpy(&x, buf, 2); kv->v.u = x; break; }
    case GGUF_T_INT16: { int16_t x; memcpy(&x, buf, 2); kv->v.i = x; break; }
    case GGUF_T_UINT32: { uint32_t x; memcpy(&x, buf, 4); kv->v.u = x; break; }
    case GGUF_T_INT32: { int32_t x; memcpy(&x, buf, 4); kv->v.i = x; break; }
    case GGUF_T_FLOAT32: { float x; memcpy(&x, buf, 4); kv->v.f = x; break; }
    case GGUF_T_UINT64: memcpy(&kv->v.u, buf, 8); break;
    case GGUF_T_INT64: memcpy(&kv->v.i, buf, 8); break;
    case GGUF_T_FLOAT64: memcpy(&kv->v.f, buf, 8); break;
  }
  return PF_OK;
}

static int key_name(char *out, size_t cap, gguf_str k) {
  size_t n = k.n < cap - 1 ? (size_t)k.n : cap - 1;
  memcpy(out, k.p, n);
  out[n] = 0;
  for (size_t i = 0; i < n; i++) if ((unsigned char)out[i] < 32 || (unsigned char)out[i] >= 127) out[i] = '?';   /* messages stay printable ASCII */
  return 0;
}

int gguf_str_eq(gguf_str s, const char *c) {
  size_t n = strlen(c);
  return s.n == n && memcmp(s.p, c, n) == 0;
}

static int read_kv(rd *r, gguf_kv *kv, uint64_t idx) {
  char what[128], kn[80];
  snprintf(what, sizeof what, "key #%llu", (unsigned long long)idx);
  if (rd_str(r, &kv->key, GGUF_MAX_KEY, what)) return PF_ERR;
  key_name(kn, sizeof kn, kv->key);
  snprintf(what, sizeof what, "value type of key '%s'", kn);
  uint64_t at = r->off;
  if (rd_u32(r, &kv->type, what)) return PF_ERR;
  if (kv->type >= GGUF_T_COUNT)
    return pf_seterr(r->err, PF_ERR, "GGUF key '%s' has unknown value type %u (valid: 0..%d) at offset %llu",
                     kn, kv->type, GGUF_T_COUNT - 1, (unsigned long long)at);
  snprintf(what, sizeof what, "value of key '%s'", kn);
  if (kv->type == GGUF_T_STRING) return rd_str(r, &kv->v.s, GGUF_MAX_STRING, what);
  if (kv->type != GGUF_T_ARRAY) return rd_scalar(r, kv, kv->type, what);

  at = r->off;
  if (rd_u32(r, &kv->arr_type, what) || rd_u64(r, &kv->arr_n, what)) return PF_ERR;
  if (kv->arr_type >= GGUF_T_COUNT || kv->arr_type == GGUF_T_ARRAY)
    return pf_seterr(r->err, PF_ERR, "GGUF key '%s': array element type %u is not supported (at offset %llu)",
                     kn, kv->arr_type, (unsigned long long)at);
  if (kv->arr_n > GGUF_MAX_ARRAY)
    return pf_seterr(r->err, PF_ERR, "GGUF key '%s': array of %llu elements exceeds the limit of %u (at offset %llu)",
                     kn, (unsigned long long)kv->arr_n, GGUF_MAX_ARRAY, (unsigned long long)at);
  kv->arr_off = r->off;
  if (kv->arr_type == GGUF_T_STRING) {
    /* each element is at least its 8-byte length */
    if (kv->arr_n > (r->size - r->off) / 8)
      return pf_seterr(r->err, PF_ERR, "GGUF key '%s': array of %llu strings cannot fit in the %llu bytes left (at offset %llu)",
                       kn, (unsigned long long)kv->arr_n, (unsigned long long)(r->size - r->off),
                       (unsigned long long)at);
    for (uint64_t i = 0; i < kv->arr_n; i++) {
      gguf_str s;
      snprintf(what, sizeof what, "string #%llu of key '%s'", (unsigned long long)i, kn);
      if (rd_str(r, &s, GGUF_MAX_STRING, what)) return PF_ERR;
    }
    return PF_OK;
  }
  uint64_t es = scalar_size(kv->arr_type);
  if (kv->arr_n > (r->size - r->off) / es)
    return pf_seterr(r->err, PF_ERR, "GGUF key '%s': array of %llu %s needs %llu bytes, only %llu left (at offset %llu)",
                     kn, (unsigned long long)kv->arr_n, gguf_type_name(kv->arr_type),
                     (unsigned long long)(kv->arr_n * es), (unsigned long long)(r->size - r->off),
                     (unsigned long long)at);
  if (kv->arr_type == GGUF_T_BOOL)
    for (uint64_t i = 0; i < kv->arr_n; i++)
      if (r->b[r->off + i] > 1)
        return pf_seterr(r->err, PF_ERR, "GGUF key '%s': bool element %llu is %u, not 0 or 1", kn,
                         (unsigned long long)i, r->b[r->off + i]);
  r->off += kv->arr_n * es;
  return PF_OK;
}

static int read_tensor_info(rd *r, gguf_tensor *t, uint64_t idx) {
  char what[128], tn[80];
  snprintf(what, sizeof what, "name of tensor #%llu", (unsigned long long)idx);
  uint64_t at = r->off;
  if (rd_str(r, &t->name, UINT64_MAX, what)) return PF_ERR;
  key_name(tn, sizeof tn, t->name);
  if (t->name.n >= GGUF_MAX_NAME)
    return pf_seterr(r->err, PF_ERR, "GGUF tensor #%llu name is %llu bytes; the limit is %d (at offset %llu)",
                     (unsigned long long)idx, (unsigned long long)t->name.n, GGUF_MAX_NAME - 1,
                     (unsigned long long)at);
  snprintf(what, sizeof what, "tensor '%s' info", tn);
  at = r->off;
  if (rd_u32(r, &t->n_dims, what)) return PF_ERR;
  if (t->n_dims == 0 || t->n_dims > GGUF_MAX_DIMS)
    return pf_seterr(r->err, PF_ERR, "GGUF tensor '%s' has %u dimensions (allowed: 1..%d) at offset %llu",
                     tn, t->n_dims, GGUF_MAX_DIMS, (unsigned long long)at);
  t->n_elem = 1;
  for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
  for (uint32_t d = 0; d < t->n_dims; d++) {
    at = r->off;
    if (rd_u64(r, &t->ne[d], what)) return PF_ERR;
    if (t->ne[d] == 0 || t->ne[d] > (uint64_t)INT64_MAX)
      return pf_seterr(r->err, PF_ERR, "GGUF tensor '%s' dimension %u is %llu (allowed: 1..%lld) at offset %llu",
                       tn, d, (unsigned long long)t->ne[d], (long long)INT64_MAX, (unsigned long long)at);
    if (t->n_elem > (uint64_t)INT64_MAX / t->ne[d])
      return pf_seterr(r->err, PF_ERR, "GGUF tensor '%s': element count overflows (dimension %u = %llu)",
                       tn, d, (unsigned long long)t->ne[d]);
    t->n_elem *= t->ne[d];
  }
  at = r->off;
  if (rd_u32(r, &t->type, what)) return PF_ERR;
  if (!pf_type_name(t->type))
    return pf_seterr(r->err, PF_ERR, "GGUF tensor '%s' has unknown type %u (at offset %llu)", tn, t->type,
                     (unsigned long long)at);
  if (!pf_type_loadable(t->type))
    return pf_seterr(r->err, PF_ERR, "GGUF tensor '%s' has type %s, which is not supported (supported: %s)", tn,
                     pf_type_name(t->type), pf_type_list());
  if (t->ne[0] % (uint64_t)pf_type_blck(t->type))
    return pf_seterr(r->err, PF_ERR, "GGUF tensor '%s': %s rows of %llu elements are not a multiple of its block size %d",
                     tn, pf_type_name(t->type), (unsigned long long)t->ne[0], pf_type_blck(t->type));
  if (!pf_type_nbytes(t->type, t->n_elem, &t->nbytes))
    return pf_seterr(r->err, PF_ERR, "GGUF tensor '%s': the byte size of %llu %s elements overflows", tn,
                     (unsigned long long)t->n_elem, pf_type_name(t->type));
  return rd_u64(r, &t->offset, what);
}

/* ---------------------------------------------------- name hash sets
** Keys and tensor names are indexed by an open-addressing set of indices into
** g->kv / g->tensors (the name is a gguf_str at a fixed offset in each entry),
** at most half full. */
#define SET_EMPTY UINT32_MAX

static uint32_t *set_new(uint64_t n, uint32_t *cap) {
  uint32_t c = 16;
  while (c < 2 * n) c <<= 1;   /* n <= 2^20: no overflow */
  *cap = c;
  uint32_t *s = malloc(sizeof *s * c);
  if (s) memset(s, 0xff, sizeof *s * c);
  return s;
}

static gguf_str set_name(const void *arr, size_t stride, size_t off, uint32_t i) {
  gguf_str s;
  memcpy(&s, (const char *)arr + (size_t)i * stride + off, sizeof s);
  return s;
}

/* The slot of name p[0..n): the one holding an entry of that name, or the empty one where it would go. */
static uint32_t set_slot(const uint32_t *set, uint32_t cap, const void *arr, size_t stride, size_t off, const void *p,
                         uint64_t n) {
  uint32_t mask = cap - 1, h = (uint32_t)pf_hash64(p, (size_t)n, 11) & mask;
  for (;; h = (h + 1) & mask) {
    if (set[h] == SET_EMPTY) return h;
    gguf_str s = set_name(arr, stride, off, set[h]);
    if (s.n == n && !memcmp(s.p, p, (size_t)n)) return h;
  }
}

static uint32_t set_find(const uint32_t *set, uint32_t cap, const void *arr, size_t stride, size_t off,
                         const void *p, uint64_t n) {
  return set ? set[set_slot(set, cap, arr, stride, off, p, n)] : SET_EMPTY;
}

/* Insert entry i; returns i, or the index of an earlier entry with the same name. */
static uint32_t set_insert(uint32_t *set, uint32_t cap, const void *arr, size_t stride, size_t off, uint32_t i) {
  gguf_str s = set_name(arr, stride, off, i);
  uint32_t h = set_slot(set, cap, arr, stride, off, s.p, s.n);
  if (set[h] == SET_EMPTY) set[h] = i;
  return set[h];
}

int gguf_parse(gguf_file *g, const uint8_t *base, uint64_t size, pf_err *err) {
  rd r = {base, size, 0, err};
  uint32_t magic;
  memset(g, 0, sizeof *g);
  g->base = base;
  g->size = size;
  if (!pf_host_little_endian()) return pf_seterr(err, PF_ERR, "%s", PF_BIG_ENDIAN_MSG);
  if (size == 0) return pf_seterr(err, PF_ERR, "not a GGUF file: the file is empty");
  if (size < 4 || (memcpy(&magic, base, 4), magic != 0x46554747u))
    return pf_seterr(err, PF_ERR, "not a GGUF file: bad magic (expected \"GGUF\" at offset 0)");
  r.off = 4;
  if (rd_u32(&r, &g->version, "version")) return PF_ERR;
  if (g->version < 2 || g->version > 3)
    return pf_seterr(err, PF_ERR, "GGUF version %u is not supported (supported: 2, 3)", g->version);
  if (rd_u64(&r, &g->n_tensors, "tensor count") || rd_u64(&r, &g->n_kv, "metadata count")) return PF_ERR;
  if (g->n_tensors > GGUF_MAX_TENSORS || g->n_tensors > (size - r.off) / 24)
    return pf_seterr(err, PF_ERR, "GGUF tensor count %llu is too large (limit %u, and each needs at least 24 bytes of the %llu left)",
                     (unsigned long long)g->n_tensors, GGUF_MAX_TENSORS, (unsigned long long)(size - r.off));
  if (g->n_kv > GGUF_MAX_KV || g->n_kv > (size - r.off) / 12)
    return pf_seterr(err, PF_ERR, "GGUF metadata count %llu is too large (limit %u, and each needs at least 12 bytes of the %llu left)",
                     (unsigned long long)g->n_kv, GGUF_MAX_KV, (unsigned long long)(size - r.off));

  g->kv = calloc(g->n_kv ? g->n_kv : 1, sizeof *g->kv);
  g->tensors = calloc(g->n_tensors ? g->n_tensors : 1, sizeof *g->tensors);
  g->kv_idx = set_new(g->n_kv, &g->kv_cap);
  g->t_idx = set_new(g->n_tensors, &g->t_cap);
  if (!g->kv || !g->tensors || !g->kv_idx || !g->t_idx) {
    gguf_close(g);
    return pf_seterr(err, PF_NOMEM, "out of memory reading GGUF header");
  }

  for (uint64_t i = 0; i < g->n_kv; i++) {
    if (read_kv(&r, &g->kv[i], i)) goto fail;
    uint64_t j = set_insert(g->kv_idx, g->kv_cap, g->kv, sizeof *g->kv, offsetof(gguf_kv, key), (uint32_t)i);
    if (j != i) {
      char kn[80];
      key_name(kn, sizeof kn, g->kv[i].key);
      pf_seterr(err, PF_ERR, "GGUF key '%s' appears twice (#%llu and #%llu)", kn, (unsigned long long)j,
                (unsigned long long)i);
      goto fail;
    }
  }
  g->alignment = 32;
  const gguf_kv *al = gguf_find(g, "general.alignment");
  if (al) {
    if (al->type != GGUF_T_UINT32) {
      pf_seterr(err, PF_ERR, "GGUF general.alignment has type %s, expected uint32", gguf_type_name(al->type));
      goto fail;
    }
    if (al->v.u == 0 || (al->v.u & (al->v.u - 1)) || al->v.u > GGUF_MAX_ALIGN) {
      pf_seterr(err, PF_ERR, "GGUF general.alignment is %llu; it must be a power of two from 1 to %u",
                (unsigned long long)al->v.u, GGUF_MAX_ALIGN);
      goto fail;
    }
    g->alignment = al->v.u;
  }
  for (uint64_t i = 0; i < g->n_tensors; i++) {
    if (read_tensor_info(&r, &g->tensors[i], i)) goto fail;
    if (set_insert(g->t_idx, g->t_cap, g->tensors, sizeof *g->tensors, offsetof(gguf_tensor, name), (uint32_t)i) != i) {
      char tn[80];
      key_name(tn, sizeof tn, g->tensors[i].name);
      pf_seterr(err, PF_ERR, "GGUF tensor '%s' appears twice", tn);
      goto fail;
    }
  }
  /* the data section starts at the next multiple of the alignment */
  uint64_t pad = (g->alignment - r.off % g->alignment) % g->alignment;
  g->data_off = r.off + pad;
  for (uint64_t i = 0; i < g->n_tensors; i++) {
    gguf_tensor *t = &g->tensors[i];
    char tn[80];
    key_name(tn, sizeof tn, t->name);
    if (t->offset % g->alignment) {
      pf_seterr(err, PF_ERR, "GGUF tensor '%s' offset %llu is not a multiple of the alignment %llu", tn,
                (unsigned long long)t->offset, (unsigned long long)g->alignment);
      goto fail;
    }
    if (g->data_off > size || t->offset > size - g->data_off || t->nbytes > size - g->data_off - t->offset) {
      pf_seterr(err, PF_ERR, "GGUF tensor '%s' data (offset %llu, %llu bytes) lies outside the file (data section starts at %llu, file is %llu bytes)",
                tn, (unsigned long long)t->offset, (unsigned long long)t->nbytes,
                (unsigned long long)g->data_off, (unsigned long long)size);
      goto fail;
    }
    t->data = base + g->data_off + t->offset;
  }
  return PF_OK;
fail:
  free(g->kv); free(g->tensors); free(g->kv_idx); free(g->t_idx);
  g->kv = NULL; g->tensors = NULL; g->kv_idx = g->t_idx = NULL;
  return PF_ERR;
}

int gguf_open(gguf_file *g, const char *path, pf_err *err) {
  memset(g, 0, sizeof *g);
  /* O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused below as not a regular file) */
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return pf_seterr(err, PF_ERR, "cannot open '%s': %s", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0) { int e = errno; close(fd); return pf_seterr(err, PF_ERR, "cannot stat '%s': %s", path, strerror(e)); }
  if (!S_ISREG(st.st_mode)) { close(fd); return pf_seterr(err, PF_ERR, "'%s' is not a regular file", path); }
  if (st.st_size == 0) { close(fd); return pf_seterr(err, PF_ERR, "'%s': not a GGUF file: the file is empty", path); }
  void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if (p == MAP_FAILED) return pf_seterr(err, PF_ERR, "cannot map '%s': %s", path, strerror(errno));
  pf_err e2;
  if (gguf_parse(g, p, (uint64_t)st.st_size, &e2)) {
    munmap(p, (size_t)st.st_size);
    memset(g, 0, sizeof *g);
    return pf_seterr(err, e2.code, "'%s': %s", path, e2.msg);
  }
  g->fd_mapped = 1;
  g->file_id[0] = (uint64_t)st.st_dev;
  g->file_id[1] = (uint64_t)st.st_ino;
  g->file_id[2] = (uint64_t)st.st_size;
  g->file_id[3] = (uint64_t)st.st_mtime;
  return PF_OK;
}

void gguf_close(gguf_file *g) {
  free(g->kv);
  free(g->tensors);
  free(g->kv_idx);
  free(g->t_idx);
  if (g->fd_mapped && g->base) munmap((void *)g->base, (size_t)g->size);
  memset(g, 0, sizeof *g);
}

const gguf_kv *gguf_find(const gguf_file *g, const char *key) {
  uint32_t i = set_find(g->kv_idx, g->kv_cap, g->kv, sizeof *g->kv, offsetof(gguf_kv, key), key, strlen(key));
  return i == SET_EMPTY ? NULL : &g->kv[i];
}

const gguf_tensor *gguf_find_tensor(const gguf_file *g, const char *name) {
  uint32_t i = set_find(g->t_idx, g->t_cap, g->tensors, sizeof *g->tensors, offsetof(gguf_tensor, name), name, strlen(name));
  return i == SET_EMPTY ? NULL : &g->tensors[i];
}
