/*
** internal.h — structures shared by the engine's source files. Not installed.
*/
#ifndef PF_INTERNAL_H
#define PF_INTERNAL_H

#include "prefix_engine.h"
#include <stdint.h>
#include <stddef.h>

/* ------------------------------------------------------------------ GGUF */

enum {
  GGUF_T_UINT8 = 0, GGUF_T_INT8 = 1, GGUF_T_UINT16 = 2, GGUF_T_INT16 = 3,
  GGUF_T_UINT32 = 4, GGUF_T_INT32 = 5, GGUF_T_FLOAT32 = 6, GGUF_T_BOOL = 7,
  GGUF_T_STRING = 8, GGUF_T_ARRAY = 9, GGUF_T_UINT64 = 10, GGUF_T_INT64 = 11,
  GGUF_T_FLOAT64 = 12, GGUF_T_COUNT = 13
};

/* ggml tensor types we know by number (quant.c says which load) */
enum {
  GGML_F32 = 0, GGML_F16 = 1, GGML_Q4_0 = 2, GGML_Q4_1 = 3, GGML_Q5_0 = 6,
  GGML_Q5_1 = 7, GGML_Q8_0 = 8, GGML_Q8_1 = 9, GGML_Q2_K = 10, GGML_Q3_K = 11,
  GGML_Q4_K = 12, GGML_Q5_K = 13, GGML_Q6_K = 14, GGML_Q8_K = 15, GGML_IQ2_XXS = 16,
  GGML_IQ2_XS = 17, GGML_IQ3_XXS = 18, GGML_IQ1_S = 19, GGML_IQ4_NL = 20, GGML_IQ3_S = 21,
  GGML_IQ2_S = 22, GGML_IQ4_XS = 23, GGML_I8 = 24, GGML_I16 = 25, GGML_I32 = 26, GGML_I64 = 27,
  GGML_F64 = 28, GGML_IQ1_M = 29, GGML_BF16 = 30, GGML_TQ1_0 = 34, GGML_TQ2_0 = 35,
  GGML_MXFP4 = 39, GGML_TYPE_COUNT = 40
};

#define GGUF_MAX_DIMS 4
#define GGUF_MAX_NAME 64              /* tensor name bytes, as ggml */
#define GGUF_MAX_KEY (64 * 1024)      /* key bytes */
#define GGUF_MAX_STRING (64u << 20)   /* string value bytes */
#define GGUF_MAX_ARRAY (1u << 28)     /* array elements */
#define GGUF_MAX_TENSORS (1u << 20)
#define GGUF_MAX_KV (1u << 20)
#define GGUF_MAX_ALIGN (1u << 16)

typedef struct gguf_str { const char *p; uint64_t n; } gguf_str; /* into the map */

typedef struct gguf_kv {
  gguf_str key;
  uint32_t type;
  union { uint64_t u; int64_t i; double f; gguf_str s; } v; /* scalars, strings */
  uint32_t arr_type;   /* arrays: element type, count, and offset of first elem */
  uint64_t arr_n;
  uint64_t arr_off;
} gguf_kv;

typedef struct gguf_tensor {
  gguf_str name;
  uint32_t n_dims;
  uint64_t ne[GGUF_MAX_DIMS];  /* ne[0] is the contiguous dimension */
  uint32_t type;
  uint64_t offset;             /* relative to the data section */
  uint64_t n_elem;
  uint64_t nbytes;
  const uint8_t *data;
} gguf_tensor;

typedef struct gguf_file {
  const uint8_t *base;
  uint64_t size;
  int fd_mapped;               /* 1 if base is an mmap we own */
  uint32_t version;
  uint64_t n_kv;
  gguf_kv *kv;
  uint64_t n_tensors;
  gguf_tensor *tensors;
  uint64_t alignment;
  uint64_t data_off;
  /* name -> index hash sets (open addressing, UINT32_MAX = empty): duplicate checks and look-ups
  ** in O(1), so a hostile file of a million keys parses in linear time */
  uint32_t *kv_idx, *t_idx;
  uint32_t kv_cap, t_cap;
  uint64_t file_id[4];         /* device, inode, size, mtime of the opened file (fstat, not the path) */
} gguf_file;

/* A model from a GGUF image in memory (not owned; it must outlive the model and be 64-byte aligned);
** name stands for the path in messages. For the fuzzers and tests. */
struct pf_model *pf_model_load_mem(const void *data, size_t n, const char *name, pf_err *err);
/* Parse a GGUF image already in memory (not owned). */
int gguf_parse(gguf_file *g, const uint8_t *base, uint64_t size, pf_err *err);
/* mmap a file and parse it. */
int gguf_open(gguf_file *g, const char *path, pf_err *err);
void gguf_close(gguf_file *g);
const gguf_kv *gguf_find(const gguf_file *g, const char *key);
const gguf_tensor *gguf_find_tensor(const gguf_file *g, const char *name);
int gguf_str_eq(gguf_str s, const char *c);
const char *gguf_type_name(uint32_t t);

/* ------------------------------------------------------ weight types (quant.c) */

const char *pf_type_name(uint32_t t);            /* NULL for a number ggml does not define */
int pf_type_loadable(uint32_t t);                /* can the engine compute with it? */
const char *pf_type_list(void);            /* their names, for error texts */
int pf_type_blck(uint32_t t);                    /* elements per block (1 for F32, F16, BF16) */
int pf_type_from_name(const char *s);            /* "q4_k" -> GGML_Q4_K (any case), -1 if unknown */
/* bytes for n elements of a loadable type t; 0 if n is not a whole number of blocks */
int pf_type_nbytes(uint32_t t, uint64_t n, uint64_t *nbytes);
size_t pf_type_row_size(uint32_t t, int64_t n);       /* bytes of a row of n elements (a block multiple) */
/* dst[0 .. k1-k0) = elements [k0, k1) of a row of type t; for block types k0 is a multiple of 32 and k1
** too or the row's end. Exact: the reference's arithmetic in the reference's order. */
void pf_dequant(uint32_t t, const uint8_t *row, int64_t k0, int64_t k1, float *dst);
/* the same for any range [k0, k1) of the row */
void pf_dequant_any(uint32_t t, const uint8_t *row, int64_t k0, int64_t k1, float *dst);
/* n elements of a loadable type to f32 (n a block multiple) */
int pf_to_f32(uint32_t type, const uint8_t *src, float *dst, uint64_t n);
/* Are every block's scales finite? 0 and the first bad block's index if not. */
int pf_check_blocks(uint32_t t, const uint8_t *data, uint64_t nbytes, uint64_t *bad_block);
/* Quantize n floats (a block multiple) into type t (the project's own quantizers). */
int pf_quantize(uint32_t t, const float *src, uint8_t *dst, int64_t n);
extern const int8_t pf_iq4nl_values[16];
/* Q3_K's 16 6-bit scales from their 12 packed bytes, minus 32 */
static inline int pf_q3k_scale(const uint8_t *s, int i) {
  int lo = i < 8 ? s[i] & 0xF : s[i - 8] >> 4;
  int hi = (s[8 + i % 4] >> (2 * (i / 4))) & 3;
  return (lo | (hi << 4)) - 32;
}
/* Q4_K and Q5_K's 8 6-bit scales and mins from their 12 packed bytes */
static inline void pf_k4_scale_min(const uint8_t *q, int j, int *sc, int *mn) {
  if (j < 4) {
    *sc = q[j] & 63;
    *mn = q[j + 4] & 63;
  } else {
    *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    *mn = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}
float pf_f16_to_f32(uint16_t h);
uint16_t pf_f32_to_f16(float f);

/* --------------------------------------------------------------- tokenizer */

enum { PF_TOK_NONE = 0, PF_TOK_SPM = 1, PF_TOK_BPE = 2 };
/* byte-level BPE pre-tokenizers: llama.cpp's default (punctuation runs, GPT-2's rules, digit runs, groups of 3),
** GPT-2's, Llama 3's (letters after one symbol, digits in threes, newlines kept together), Qwen2's (the same
** with single digits), SmolLM's (single digits, then GPT-2's) */
enum { PF_PRE_DEFAULT = 0, PF_PRE_GPT2, PF_PRE_LLAMA3, PF_PRE_QWEN2, PF_PRE_SMOLLM };
enum { PF_TT_NORMAL = 1, PF_TT_UNKNOWN = 2, PF_TT_CONTROL = 3,
       PF_TT_USER = 4, PF_TT_UNUSED = 5, PF_TT_BYTE = 6 };

typedef struct pf_vocab {
  int kind;               /* PF_TOK_* */
  int n;                  /* tokens */
  char **text;            /* token strings as in the file (NUL-terminated) */
  int *len;
  float *score;
  int *type;
  int bos, eos, unk;      /* -1 if none */
  int eot, eom;           /* end of turn / of message (tokenizer.ggml.eot_token_id, eom_token_id), -1 if none */
  int add_bos, add_eos;   /* what a prompt gets (tokenizer.ggml.add_bos_token, add_eos_token) */
  int add_space_prefix;
  int byte_tok[256];      /* SPM: id of <0xXX>, -1 if missing */
  /* open-addressing hash: token text -> id */
  int *hash;
  uint32_t hash_cap;
  /* byte-level BPE (gpt2) */
  int pre;                /* PF_PRE_*: the pre-tokenizer (tokenizer.ggml.pre) */
  int ignore_merges;      /* a pre-tokenized piece that is a token is taken whole (Llama 3) */
  int byte_id[256];       /* the single-character token of each byte */
  char **bytes;           /* each token's raw bytes (the byte<->unicode mapping undone) */
  int *nbytes;
  uint64_t *mkey;         /* merges: hash of (left id, right id) -> rank, result */
  int *mrank, *mres;
  uint32_t mcap;
  int n_merges;
  /* both kinds */
  int *special;           /* ids matched verbatim in text (control, user-defined, unknown), longest first */
  int n_special;
  uint8_t special_first[256];   /* 1 for each byte a special token starts with */
  uint8_t *rstrip;        /* (n) 1: white space after this special token in text is dropped (Phi-3, as llama.cpp) */
  int *eog;               /* end-of-generation ids: eos, eot, eom, and turn-ending control tokens */
  int n_eog;
} pf_vocab;

int pf_vocab_load(pf_vocab *v, const gguf_file *g, pf_err *err);
int pf_vocab_is_eog(const pf_vocab *v, int id);

/* symbols being merged (a linked list over a byte buffer) */
typedef struct pf_sym { int start, len, prev, next, id; } pf_sym;
/* Can a and b merge? Fill the pair's score (higher merges first) and the merged id. */
typedef int (*pf_pair_fn)(const pf_vocab *v, const char *buf, const pf_sym *a, const pf_sym *b, float *score, int *id);
int pf_merge_symbols(const pf_vocab *v, const char *buf, pf_sym *s, int ns, pf_pair_fn pair);
int pf_push_id(int **ids, int *n, int *cap, int id);
void pf_vocab_free(pf_vocab *v);
int pf_vocab_find(const pf_vocab *v, const char *s, size_t n);
int pf_bpe_load(pf_vocab *v, const gguf_file *g, pf_err *err);
void pf_bpe_free(pf_vocab *v);
int pf_spm_encode(const pf_vocab *v, const char *text, size_t len, int space_prefix, int **ids, int *n,
                  int *cap, pf_err *err);
int pf_bpe_encode(const pf_vocab *v, const char *text, size_t len, int **ids, int *n, int *cap, pf_err *err);

/* ------------------------------------------------------------------ model */

/* A weight matrix as the file stores it, read in place from the mapped file:
** rows (n_out) of cols (n_in) elements of a ggml type (quant.c). Kernels
** take it as it is; nothing is converted to f32 ahead of use. */
typedef struct pf_wt {
  const uint8_t *data;   /* rows × row_bytes */
  uint32_t type;         /* GGML_* */
  int rows, cols;
  size_t row_bytes;
} pf_wt;
/* the f32 rows of an F32 weight, NULL for other types */
static inline const float *pf_wt_f32(const pf_wt *w) { return w->type == GGML_F32 ? (const float *)w->data : NULL; }
/* dst[0 .. cols) = row r */
void pf_wt_row(const pf_wt *w, int r, float *dst);

/* One layer's tensors. Which are present is the file's choice (llama.cpp's
** loader takes the same optional ones): q, k, v fused (wqkv) or separate,
** with or without biases; gate and up fused (phi3: w_up of 2·n_ff rows, gate
** first) or separate; per-head q/k norms; biases on everything (gpt2). */
typedef struct pf_layer {
  float *attn_norm, *attn_norm_b;   /* (n_embd); the bias with LayerNorm */
  pf_wt wqkv;                       /* (q_dim + 2·kv_dim, n_embd): q, k, v stacked, or absent */
  float *bqkv;                      /* (q_dim + 2·kv_dim) */
  pf_wt wq, wk, wv;                 /* (q_dim, n_embd), (kv_dim, n_embd) × 2 when not fused */
  float *bq, *bk, *bv;              /* their biases (qwen2), or NULL */
  float *q_norm, *k_norm;           /* (head_dim) per-head RMSNorm weights (qwen3), or NULL */
  pf_wt wo;                         /* (n_embd, q_dim) */
  float *bo;                        /* (n_embd) or NULL */
  float *ffn_norm, *ffn_norm_b;     /* (n_embd) */
  pf_wt w_gate;                     /* (n_ff, n_embd), absent when fused into w_up or no gate (GELU) */
  pf_wt w_up;                       /* (n_ff, n_embd), or (2·n_ff, n_embd) fused: gate rows then up rows */
  float *b_gate, *b_up;             /* (n_ff) or NULL (a fused up has one bias of 2·n_ff) */
  pf_wt w_down;                     /* (n_embd, n_ff) */
  float *b_down;                    /* (n_embd) or NULL */
} pf_layer;

/* RoPE as a model does it: pair i of a head's first `dim` values is turned by
** pos · scale · base^(-2i/dim) / factors[i] */
typedef struct pf_rope_cfg {
  int dim;               /* rotated values per head (even, <= head_dim) */
  int neox;              /* 0: pairs (x[2i], x[2i+1]) (llama.cpp NORM); 1: pairs (x[i], x[i + dim/2]) (NEOX) */
  float base;
  float scale;           /* linear scaling of positions; 1 = none */
  const float *factors;  /* (dim/2) frequency divisors (Llama 3's rope_freqs.weight), or NULL */
} pf_rope_cfg;

struct pf_model {
  char *path;
  gguf_file g;
  pf_hparams hp;
  pf_vocab vocab;
  int has_weights;
  pf_wt tok_embd;      /* (n_vocab, n_embd) */
  float *out_norm;     /* (n_embd) */
  float *out_norm_b;   /* (n_embd) LayerNorm bias, or NULL */
  pf_wt pos_embd;      /* (n_ctx, n_embd) learned positions (gpt2) */
  pf_wt output;        /* (n_vocab, n_embd); may be tok_embd */
  float *output_b;     /* (n_vocab) or NULL (qwen2 files may have one) */
  float *rope_freqs;   /* (rope_dim / 2) or NULL */
  pf_rope_cfg rope;    /* the model's RoPE, for the ops */
  pf_layer *layers;    /* (n_layer) */
  uint8_t *used;       /* while loading: which of the file's tensors were taken */
  void **owned;        /* vectors converted to f32, and misaligned F32 matrices copied, to free */
  int n_owned, cap_owned;
  uint64_t n_params;
  uint64_t file_id[4];
  char fingerprint[17];
  /* the model's scheduler (serve.c), made on first use; freed through sched_free by pf_model_free */
  void *_Atomic sched;
  void (*sched_free)(void *);
};

/* q_dim and kv_dim of a model */
static inline int pf_q_dim(const pf_hparams *hp) { return hp->n_head * hp->head_dim; }
static inline int pf_kv_dim(const pf_hparams *hp) { return hp->n_head_kv * hp->head_dim; }

/* tests: while on, the model's scheduler neither admits nor steps (requests queue); off lets them run (serve.c) */
void pf_sched_hold(const pf_model *m, int on);
/* prompt tokens of all rows per pass (generate.c; tests change it) */
extern int pf_step_tokens;

/* decoding helpers (tokenizer.c) */
int pf_ids_to_bytes(const pf_model *m, const int *ids, int n_ids, int strip_leading, char **buf, size_t *len, pf_err *err);
char *pf_utf8_clean(const char *in, size_t n, int tail_mode, size_t *out_len);
size_t pf_utf8_complete(const char *in, size_t n);

/* GPT-2's byte -> code point mapping as UTF-8 (NUL-terminated; returns its length) (tokenizer_bpe.c) */
int pf_gpt2_byte_utf8(int b, char out[3]);

/* base.c: the host stores numbers little-endian (GGUF and the BLOB format are); tests set pf_test_big_endian */
int pf_host_little_endian(void);
extern int pf_test_big_endian;
#define PF_BIG_ENDIAN_MSG "this host is big-endian; GGUF files and prefix BLOBs are little-endian and are read in place, so it is not supported"

/* base.c: JSON well-formedness, quoting for messages (pf_seterr, pf_clock and pf_hash64 are public) */
int pf_json_is_object(const char *p, size_t n);                      /* exactly one JSON object (RFC 8259) */
void pf_quote_bytes(char *out, size_t cap, const char *p, size_t n); /* 'text' for messages, escaped */
int pf_byte_token_value(const char *t, int len);                     /* vocab.c: "<0xHH>" -> 0..255, else -1 */

/* ------------------------------------------------------------------- ops */

/* thread pool (pool.c): run fn(ctx, i) for i in [0, n) on the compute threads */
typedef void (*pf_task_fn)(void *ctx, int i);
void pf_parallel_for(int n, pf_task_fn fn, void *ctx);
/* elementwise work over [0, n): fn(ctx, i0, i1) on chunks, on the pool when n is large (ops.c) */
typedef void (*range_fn)(void *ctx, size_t i0, size_t i1);
void pf_parallel_range(size_t n, range_fn fn, void *ctx);

/* kernel choice (kernels.c): naive (ops.c's reference loops), blas (OpenBLAS), then the engine's tables
** (kernels.h) from least to most capable */
enum { PF_KERNEL_AUTO = 0, PF_KERNEL_NAIVE, PF_KERNEL_BLAS, PF_KERNEL_PORTABLE, PF_KERNEL_AVX2, PF_KERNEL_AVXVNNI,
       PF_KERNEL_AVX512, PF_KERNEL_NEON, PF_KERNEL_COUNT };
int pf_set_kernel(int kind);          /* returns the kind in effect (a kind the CPU lacks falls back) */
int pf_get_kernel(void);
const char *pf_kernel_name(int kind);
/* out[T, c0:c1] = inp (T, n_in) · W[c0:c1]^T, W (n_out, n_in), ldc = n_out (one slice) */
void pf_kernel_nt(int kind, float *out, const float *inp, const float *w, int T, int n_in, int n_out, int c0, int c1);
/* dinp[T, c0:c1] += dout (T, n_out) · W[:, c0:c1], W (n_out, n_in), ldc = n_in (one slice) */
void pf_kernel_nn_acc(int kind, float *dinp, const float *dout, const float *w, int T, int n_in, int n_out, int c0, int c1);
/* the whole product (as pf_matmul, or pf_matmul_backward_input when nn) on the
** pool with A packed once for all threads; 0 when kind or shape do not suit it
** (too few rows for the table's packed GEMM, or naive/blas) or memory is short,
** and nothing was done. W is f32 (w), or of another type (qw, w NULL). */
int pf_gemm_parallel(int kind, int nn, float *out, const float *a, const float *w, const pf_wt *qw, int T, int n_in,
                     int n_out, int nslice, int exact);
/* pf_kernel_nt and pf_kernel_nn_acc for a weight of any type (W (rows, cols) = (n_out, n_in)); exact: f32
** products of the dequantized weights only (no integer products) */
void pf_kernel_nt_w(int kind, float *out, const float *inp, const pf_wt *W, int T, int c0, int c1, int exact);
void pf_kernel_nn_w(int kind, float *dinp, const float *dout, const pf_wt *W, int T, int c0, int c1);
/* decode of the common block types in integers (activations rounded to int8 per 32), where the table in use
** has integer products (AVX-512 VNNI, AVX2); tests: 0 turns it off */
extern int pf_int8;
extern int pf_prefill_chunk;   /* generate.c: prompt tokens per sequence per prefill pass */
int pf_kernel_nt_int8(int kind, float *out, const float *inp, const pf_wt *W, int T, int c0, int c1);
/* out (M, W->rows) = inp · Wᵀ in integers on the pool (nslice column slices), for prefill; 0 when the type,
** CPU or memory do not allow it (nothing was done) */
int pf_gemm_int8(float *out, const float *inp, const pf_wt *W, int M, int nslice);
/* the products on panels of W unpacked to f32, through OpenBLAS: the fallback of kernels without their own */
void pf_kernel_nt_panels(float *out, const float *inp, const pf_wt *W, int T, int c0, int c1);
void pf_kernel_nn_panels(float *dinp, const float *dout, const pf_wt *W, int T, int c0, int c1);
/* dst[0 .. k1-k0) = elements [k0, k1) of row r of W, any range (vectorised where the CPU allows) */
void pf_wt_deq(const pf_wt *W, int r, int k0, int k1, float *dst);
/* dst[i] = e^(x[i] - sub) for i < n (dst may be NULL, or x); returns the sum in double. AVX-512: a
** polynomial e^x (relative error < 2e-7), else expf */
double pf_vexp_sum(float *dst, const float *x, float sub, int n);
/* SwiGLU forward (h = silu(g)·u) and backward (dg += .., du += ..) over n elements with the table in use;
** 0 when it has none (the caller then loops) */
int pf_silu_mul_fast(float *h, const float *g, const float *u, size_t n);
int pf_silu_mul_bwd_fast(float *dg, float *du, const float *dh, const float *g, const float *u, size_t n);
/* GELU (tanh form) forward and backward (dinp += dout · gelu'(inp)) with the table in use; 0 as above */
int pf_gelu_fast(float *out, const float *inp, size_t n);
int pf_gelu_bwd_fast(float *dinp, const float *inp, const float *dout, size_t n);
/* dst (cols, rows) = src (rows, cols) transposed */
void pf_transpose(float *dst, const float *src, int rows, int cols);
/* 64-byte aligned scratch of at least n floats (NULL when out of memory), and
** its return for reuse; *cap is what to pass back */
float *pf_scratch_get(size_t n, size_t *cap);
void pf_scratch_put(float *p, size_t cap);
void pf_scratch_release(void);   /* free the kept ones (after training: tens of MB) */
/* one query row of attention: out (hd) = softmax(q·Kᵀ·scale)·V over n rows of K and V (stride ld), the
** probabilities left in att (n) */
void pf_attend(float *out, const float *q, const float *K, const float *V, int n, int ld, int hd, float scale,
               float *att);
/* vectorised dot product and y += a x, for attention */
float pf_vdot(const float *a, const float *b, int n);
void pf_vaxpy(float *y, float a, const float *x, int n);

/* out (T, n_out) = inp (T, n_in) · W^T, W (n_out, n_in) row-major. */
void pf_matmul(float *out, const float *inp, const float *w, int T, int n_in, int n_out);
/* out (T, w->rows) = inp (T, w->cols) · Wᵀ for a weight of any type: F32 rows through pf_matmul's kernels,
** others read as stored (kernels.h's tables), the common block types in integers where the table has them
** (generation) */
void pf_matmul_w(float *out, const float *inp, const pf_wt *w, int T);
/* the same in f32 products of the dequantized weights (training, scoring) */
void pf_matmul_w_exact(float *out, const float *inp, const pf_wt *w, int T);
/* dinp (T, w->cols) += dout (T, w->rows) · W */
void pf_matmul_backward_input_w(float *dinp, const float *dout, const pf_wt *w, int T);
void pf_matmul_naive(float *out, const float *inp, const float *w, int T, int n_in, int n_out);
/* y += x, n elements (on the pool when long) */
void pf_add_inplace(float *y, const float *x, size_t n);
void pf_rope(float *x, const int *pos, int T, int n_head, int head_dim, int rope_dim, float base);
/* x (T, n_head·head_dim) rotated as r says (sign -1: the inverse rotation, which is also its backward) */
void pf_rope_ex(float *x, const int *pos, int T, int n_head, int head_dim, const pf_rope_cfg *r, float sign);
void pf_softmax(float *x, int n);

/* backward ops (ops.c); gradients accumulate */
void pf_matmul_backward_input(float *dinp, const float *dout, const float *w, int T, int n_in, int n_out);
void pf_matmul_backward_weight(float *dw, const float *dout, const float *inp, int T, int n_in, int n_out);
void pf_rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight, int T, int C, float eps);
void pf_rmsnorm_backward(float *dinp, const float *dout, const float *inp, const float *weight, const float *rstd, int T,
                         int C);
void pf_rope_backward(float *dx, const int *pos, int T, int n_head, int head_dim, int rope_dim, float base);
void pf_swiglu_forward(float *h, const float *g, const float *u, size_t n);
void pf_swiglu_backward(float *dg, float *du, const float *dh, const float *g, const float *u, size_t n);
double pf_xent_forward_backward(float *dlogits, const float *logits, const int *targets, int n, int V, float scale);
void pf_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w, const float *b, int T,
                          int C, float eps);
void pf_layernorm_backward(float *dinp, const float *dout, const float *inp, const float *w, const float *mean,
                           const float *rstd, int T, int C);
void pf_gelu_forward(float *out, const float *inp, size_t n);
void pf_gelu_backward(float *dinp, const float *inp, const float *dout, size_t n);
void pf_add_bias(float *out, const float *b, int T, int C);

/* -------------------------------------------------------- inference (forward.c, serve.c) */

/* pf_forward with chosen logits rows: sequence i gives the logits of its last n_out[i] new tokens (0..n_tok[i]),
** in order, sequence after sequence; n_out NULL: each sequence's last (a zero row for one without tokens). */
int pf_forward_rows(const pf_model *m, pf_work *w, pf_seq **seqs, const int *n_tok, int n_seq, const int *tokens,
                    const int *n_out, float *logits, pf_err *err);
/* Score through the model's batch (serve.c): item it's prefix or ensemble over tok[0..n-1), each member's
** log-probability of tok[i + 1] at the last n_score positions i into lp (n_members x n_score). Waits for the
** KV-cache budget like a generation; cancel is checked while it waits and between steps. */
int pf_serve_score(const pf_model *m, pf_batch_item *it, const int *tok, int n, int n_score, double *lp,
                   pf_cancel_fn cancel, void *carg, pf_err *err);

/* ------------------------------------------- training internals (backward.c, prefix.c, peft.c, train.c) */

/* A batch: n_seq sequences concatenated. targets[t] is the id expected after
** token t, or -1 where there is no loss (the prompt). */
typedef struct pf_tbatch {
  int n_seq;
  const int *len;
  const int *tokens;
  const int *targets;
} pf_tbatch;

/* What every sequence of the batch sees in front of it. */
typedef struct pf_prefix_in {
  int P;              /* prefix mode: key/value positions per layer (0: none) */
  const float *kv;    /* (n_layer, 2, P, kv_dim) */
  float *dkv;         /* its gradient (accumulated), or NULL */
  int E;              /* embedding mode: the first E tokens of each sequence are learned embeddings */
  const float *embd;  /* (E, n_embd) */
  float *dembd;       /* its gradient (accumulated), or NULL */
} pf_prefix_in;

typedef struct pf_tws pf_tws;   /* training workspace: saved activations */
pf_tws *pf_tws_new(void);
void pf_tws_free(pf_tws *w);
/* Bytes of saved activations one pass may hold (0 = PF_ACT_BUDGET, train.h): a bigger batch runs as passes
** over parts of it (whole sequences), gradients accumulated. */
void pf_tws_set_budget(pf_tws *w, size_t bytes);
/* the shared head rows of the last pass: computed once for all its sequences (backward.c; tests) */
int pf_tws_last_shared(const pf_tws *w);

/* Forward (and, if backward, backward) over a batch. loss_sum: summed nats
** over the n_tgt target positions; gradients are of loss_scale * loss_sum. */
/* tests: 1 makes the training attention run row at a time (the blocked path's reference) */
extern int pf_attn_rows;
/* tests: 0 makes a training pass compute the head its sequences share once per sequence (backward.c) */
extern int pf_train_share;
int pf_train_step(const pf_model *m, pf_tws *w, const pf_tbatch *b, const pf_prefix_in *pin, float loss_scale,
                  int backward, double *loss_sum, int *n_tgt, pf_cancel_fn cancel, void *carg, pf_err *err);
/* Logits (T, n_vocab) at every row, through the training forward (tests). */
int pf_train_logits(const pf_model *m, pf_tws *w, const pf_tbatch *b, const pf_prefix_in *pin, float *logits,
                    pf_err *err);

/* Write the prefix format's checksum into the last 8 bytes of a BLOB of len >= 8 bytes (the encoder's last
** step; tests and the fuzzer use it to reach the checks that follow the checksum). */
void pf_prefix_seal(uint8_t *blob, size_t len);

/* safetensors (peft.c) */
#define PF_ST_NAME 256
typedef struct pf_st_tensor {
  char name[PF_ST_NAME];
  int dtype, elem_size, n_dims;
  int64_t shape[8];
  uint64_t begin, end, n_elems;   /* byte range within the data */
} pf_st_tensor;
typedef struct pf_st_file { pf_st_tensor *t; int n; const uint8_t *data; size_t data_len; } pf_st_file;
/* Parse and check a safetensors file held in memory (the tensors point into it). */
int pf_safetensors_read(const uint8_t *b, size_t n, pf_st_file *f, pf_err *err);
void pf_safetensors_clear(pf_st_file *f);
const pf_st_tensor *pf_safetensors_find(const pf_st_file *f, const char *name);

/* The learnable parameters of a prefix and their gradients and moments (prefix.c), with the hooks the
** tests use. */
typedef struct pf_pparams pf_pparams;
pf_pparams *pf_pparams_new(const pf_model *m, int mode, int P, int mid, pf_err *err);
void pf_pparams_free(pf_pparams *pp);
int pf_pparams_init(pf_pparams *pp, uint64_t seed, const float *init_kv, const float *init_emb, float emb_std,
                    pf_err *err);
void pf_pparams_forward(pf_pparams *pp);
void pf_pparams_backward(pf_pparams *pp);
void pf_pparams_zero_grad(pf_pparams *pp);
double pf_pparams_grad_norm(const pf_pparams *pp);
void pf_adamw(pf_pparams *pp, float lr, float beta1, float beta2, float eps, float wd, int t, float gscale);
float *pf_pparams_kv(pf_pparams *pp);
float *pf_pparams_dkv(pf_pparams *pp);
float *pf_pparams_emb(pf_pparams *pp);
float *pf_pparams_demb(pf_pparams *pp);
float *pf_pparams_data(pf_pparams *pp);
float *pf_pparams_grad(pf_pparams *pp);
size_t pf_pparams_count(const pf_pparams *pp);
int pf_pparams_has_base(const pf_pparams *pp);
size_t pf_pparams_state_floats(const pf_pparams *pp);
void pf_pparams_get_state(const pf_pparams *pp, float *out);
int pf_pparams_set_state(pf_pparams *pp, const float *in, int has_base, pf_err *err);
void pf_pparams_zero_mlp_out(pf_pparams *pp);
int pf_embd_to_kv(const pf_model *m, pf_tws *w, int E, const float *embd, float *kv, pf_err *err);

#endif /* PF_INTERNAL_H */
