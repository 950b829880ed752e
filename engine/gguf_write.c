/*
** gguf_write.c — a small GGUF v3 writer, used by the project's model tool
** (tests/mkmodel.c) and tests to make real GGUF files with random weights.
*/
#include "gguf_write.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct buf { uint8_t *p; size_t n, cap; int oom; } buf;
struct gguf_builder {
  buf kv, ti, data;
  uint64_t n_kv, n_tensors;
  uint32_t align;
};

static void put(buf *b, const void *p, size_t n) {
  if (b->oom) return;
  if (b->n + n > b->cap) {
    size_t nc = (b->cap + n) * 2;
    uint8_t *np = realloc(b->p, nc);
    if (!np) { b->oom = 1; return; }
    b->p = np; b->cap = nc;
  }
  memcpy(b->p + b->n, p, n);
  b->n += n;
}
static void put_u32(buf *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(buf *b, uint64_t v) { put(b, &v, 8); }
static void put_str(buf *b, const char *s) { put_u64(b, strlen(s)); put(b, s, strlen(s)); }

gguf_builder *gb_new(void) {
  gguf_builder *b = calloc(1, sizeof *b);
  if (b) b->align = 32;
  return b;
}
void gb_free(gguf_builder *b) {
  if (!b) return;
  free(b->kv.p); free(b->ti.p); free(b->data.p);
  free(b);
}
static void key(gguf_builder *b, const char *k, uint32_t type) { put_str(&b->kv, k); put_u32(&b->kv, type); b->n_kv++; }
void gb_str(gguf_builder *b, const char *k, const char *v) { key(b, k, 8); put_str(&b->kv, v); }
void gb_u32(gguf_builder *b, const char *k, uint32_t v) { key(b, k, 4); put_u32(&b->kv, v); }
void gb_f32(gguf_builder *b, const char *k, float v) { key(b, k, 6); put(&b->kv, &v, 4); }
void gb_bool(gguf_builder *b, const char *k, int v) { uint8_t x = (uint8_t)(v != 0); key(b, k, 7); put(&b->kv, &x, 1); }
void gb_arr_str(gguf_builder *b, const char *k, const char *const *v, int n) {
  key(b, k, 9); put_u32(&b->kv, 8); put_u64(&b->kv, (uint64_t)n);
  for (int i = 0; i < n; i++) put_str(&b->kv, v[i]);
}
void gb_arr_f32(gguf_builder *b, const char *k, const float *v, int n) {
  key(b, k, 9); put_u32(&b->kv, 6); put_u64(&b->kv, (uint64_t)n); put(&b->kv, v, 4 * (size_t)n);
}
void gb_arr_i32(gguf_builder *b, const char *k, const int32_t *v, int n) {
  key(b, k, 9); put_u32(&b->kv, 5); put_u64(&b->kv, (uint64_t)n); put(&b->kv, v, 4 * (size_t)n);
}
void gb_tensor(gguf_builder *b, const char *name, int n_dims, const uint64_t *ne, uint32_t type, const void *data,
               size_t nbytes) {
  static const uint8_t zero[64] = {0};
  while (b->data.n % b->align) put(&b->data, zero, 1);
  put_str(&b->ti, name);
  put_u32(&b->ti, (uint32_t)n_dims);
  for (int d = 0; d < n_dims; d++) put_u64(&b->ti, ne[d]);
  put_u32(&b->ti, type);
  put_u64(&b->ti, b->data.n);
  put(&b->data, data, nbytes);
  b->n_tensors++;
}

int gb_write(gguf_builder *b, const char *path, char *err, size_t errcap) {
  if (b->kv.oom || b->ti.oom || b->data.oom) { snprintf(err, errcap, "out of memory"); return -1; }
  FILE *f = fopen(path, "wb");
  if (!f) { snprintf(err, errcap, "cannot write %s", path); return -1; }
  buf h = {0};
  put(&h, "GGUF", 4);
  put_u32(&h, 3);
  put_u64(&h, b->n_tensors);
  put_u64(&h, b->n_kv);
  size_t off = h.n + b->kv.n + b->ti.n, pad = (b->align - off % b->align) % b->align;
  static const uint8_t zero[64] = {0};
  int ok = !h.oom && fwrite(h.p, 1, h.n, f) == h.n && (!b->kv.n || fwrite(b->kv.p, 1, b->kv.n, f) == b->kv.n) &&
           (!b->ti.n || fwrite(b->ti.p, 1, b->ti.n, f) == b->ti.n) && fwrite(zero, 1, pad, f) == pad &&
           (!b->data.n || fwrite(b->data.p, 1, b->data.n, f) == b->data.n);
  free(h.p);
  if (fclose(f) != 0) ok = 0;
  if (!ok) { snprintf(err, errcap, "error writing %s", path); return -1; }
  return 0;
}
