/* gguf_write.h — a small GGUF v3 writer (see gguf_write.c). */
#ifndef PF_GGUF_WRITE_H
#define PF_GGUF_WRITE_H
#include <stddef.h>
#include <stdint.h>

typedef struct gguf_builder gguf_builder;
gguf_builder *gb_new(void);
void gb_free(gguf_builder *b);
void gb_str(gguf_builder *b, const char *key, const char *v);
void gb_u32(gguf_builder *b, const char *key, uint32_t v);
void gb_f32(gguf_builder *b, const char *key, float v);
void gb_bool(gguf_builder *b, const char *key, int v);
void gb_arr_str(gguf_builder *b, const char *key, const char *const *v, int n);
void gb_arr_f32(gguf_builder *b, const char *key, const float *v, int n);
void gb_arr_i32(gguf_builder *b, const char *key, const int32_t *v, int n);
/* ne[0] is the contiguous dimension; data is copied. */
void gb_tensor(gguf_builder *b, const char *name, int n_dims, const uint64_t *ne, uint32_t type, const void *data,
               size_t nbytes);
int gb_write(gguf_builder *b, const char *path, char *err, size_t errcap);
#endif
