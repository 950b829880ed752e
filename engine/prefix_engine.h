/*
** prefix_engine.h — the public API of the sqlite-prefix engine.
**
** A plain C11 library: GGUF loading, tokenizers, a batched transformer forward
** pass with per-sequence KV caches (whose first positions may hold a prefix),
** and a sampler. It knows nothing about SQLite; ext/ maps SQL onto it.
**
** Conventions
**   - Every fallible function returns PF_OK (0) or an error code and, on error,
**     fills a caller-owned pf_err with a message naming what was wrong and the
**     limit. Nothing here calls abort() or exit().
**   - Ownership: a pointer returned through an out-parameter belongs to the
**     caller and is released with the matching pf_*_free() or free().
**   - Index arithmetic on tensor sizes is done in size_t / int64_t.
*/
#ifndef PREFIX_ENGINE_H
#define PREFIX_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#define PF_VERSION "0.1.0"

enum {
  PF_OK = 0,
  PF_ERR = 1,        /* bad input, bad file, bad argument */
  PF_NOMEM = 2,      /* an allocation failed */
  PF_TOOBIG = 3,     /* a size over a documented limit */
  PF_INTERRUPT = 4,  /* the cancel callback asked to stop */
  PF_NOTFOUND = 5
};

#define PF_ERRMAX 512
typedef struct pf_err {
  int code;
  char msg[PF_ERRMAX];
} pf_err;

/* Set err (if not NULL) and return code. printf-style. */
int pf_seterr(pf_err *err, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* ----------------------------------------------------------------- limits
** One name per limit. The engine checks against these; the SQL layer's option tables and error texts use
** the same names, so a limit changes in one place. */
#define PF_PREFIX_LEN_MAX 65536        /* positions a prefix BLOB or a PEFT adapter file may hold */
#define PF_TRAIN_PREFIX_LEN_MAX 4096   /* prefix_len a training run accepts */
#define PF_MID_DIM_MAX 65536           /* width of the reparameterization MLP */
#define PF_BATCH_SIZE_MAX 4096         /* pairs per training step; rows per generation batch */
#define PF_BEAM_MAX 64                 /* beam_size */
#define PF_ENSEMBLE_MAX 64             /* members of an ensemble */
#define PF_THREADS_MAX 64              /* compute threads (the pool's workers plus the caller) */
#define PF_MAX_STOPS 16                /* stop strings per request */
#define PF_STR_(x) #x
#define PF_STR(x) PF_STR_(x)           /* a limit as a string literal, for error texts */

/* A 64-bit hash of n bytes (not cryptographic): keys of caches of BLOBs and of prompts. */
uint64_t pf_hash64(const void *p, size_t n, uint64_t seed);

/* Cancellation: called between units of work; non-zero means stop. */
typedef int (*pf_cancel_fn)(void *arg);

/* ------------------------------------------------------------------ model */

/* model families (general.architecture): llama (Llama 1-3, Mistral, ...), gpt2, qwen2, qwen3, phi3 */
enum { PF_ARCH_NONE = 0, PF_ARCH_LLAMA = 1, PF_ARCH_GPT2 = 2, PF_ARCH_QWEN2 = 3, PF_ARCH_QWEN3 = 4, PF_ARCH_PHI3 = 5 };
enum { PF_NORM_RMS = 0, PF_NORM_LAYER = 1 };                     /* RMSNorm; LayerNorm with bias */
enum { PF_ROPE_NONE = 0, PF_ROPE_NORM = 1, PF_ROPE_NEOX = 2 };   /* learned positions; adjacent pairs; halves */
enum { PF_ACT_SWIGLU = 0, PF_ACT_GELU = 1 };                     /* silu(gate)·up; gelu(up) */

/* A model's hyperparameters and its block description: what every layer
** does, read once from the GGUF metadata (and which tensors the file has). */
typedef struct pf_hparams {
  int arch;        /* PF_ARCH_* */
  int n_layer;
  int n_embd;
  int n_head;
  int n_head_kv;
  int head_dim;    /* attention.key_length, else n_embd / n_head */
  int n_ff;
  int n_vocab;
  int n_ctx;       /* context length usable here: the file's, or its sliding window if smaller */
  int n_ctx_train; /* context length from the file */
  float norm_eps;
  float rope_base; /* frequency base */
  int rope_dim;    /* rotated dims per head (<= head_dim) */
  float rope_scale;/* positions multiplied by this (linear RoPE scaling; 1 = none) */
  int norm;        /* PF_NORM_* */
  int rope;        /* PF_ROPE_* */
  int act;         /* PF_ACT_* */
  int qk_norm;     /* per-head RMSNorm of queries and keys before RoPE (qwen3) */
} pf_hparams;

typedef struct pf_model pf_model;

/* Load a GGUF file (mmap read-only). Returns NULL and fills err on failure.
** A file with a tokenizer and no tensors loads as a vocab-only model. */
pf_model *pf_model_load(const char *path, pf_err *err);
void pf_model_free(pf_model *m);

const pf_hparams *pf_model_hparams(const pf_model *m);
const char *pf_model_arch_name(const pf_model *m);   /* "llama", "gpt2", "qwen2", "qwen3", "phi3" */
const char *pf_arch_name(int arch);                   /* the same for a PF_ARCH_* ("unknown" if none) */
int pf_model_has_weights(const pf_model *m);
uint64_t pf_model_n_params(const pf_model *m);
uint64_t pf_model_file_size(const pf_model *m);
/* 16 lowercase hex digits: a hash of the architecture, hyperparameters and
** tensor data. Two files with the same weights have the same fingerprint. */
const char *pf_model_fingerprint(const pf_model *m);
/* Identity of the file on disk (device, inode, size, mtime), for sharing. */
void pf_model_file_id(const pf_model *m, uint64_t id[4]);

/* -------------------------------------------------------------- tokenizer */

int pf_token_bos(const pf_model *m);   /* -1 if none */
int pf_token_eos(const pf_model *m);
int pf_add_bos(const pf_model *m);     /* does a prompt start with BOS? */

/* Tokenize UTF-8 text. *ids is malloc'ed (caller frees). add_special: 1 to add the special tokens the
** vocabulary asks for (BOS first and EOS last, per tokenizer.ggml.add_bos_token / add_eos_token and the
** tokenizer's defaults). Special tokens written in the text (<|im_start|>, </s>, ...) are matched verbatim. */
int pf_tokenize(const pf_model *m, const char *text, size_t len, int add_special,
                int **ids, int *n_ids, pf_err *err);
/* Tokenize with each choice explicit: BOS first, EOS last, the SentencePiece space prefix on the first
** fragment, special tokens written in the text parsed (else only user-defined ones) */
enum { PF_TOKF_BOS = 1, PF_TOKF_EOS = 2, PF_TOKF_PREFIX = 4, PF_TOKF_SPECIAL = 8 };
int pf_tokenize_ex(const pf_model *m, const char *text, size_t len, int flags, int **ids, int *n_ids, pf_err *err);
/* the flags pf_tokenize uses, with add_special and parse_special as given */
int pf_tok_flags(const pf_model *m, int add_special, int parse_special);
/* Does this token end a generation? EOS, EOT, EOM and the turn-ending control tokens (<|eot_id|>,
** <|im_end|>, <|end|>, ...) */
int pf_token_is_eog(const pf_model *m, int id);

/* Raw bytes of a token (byte-fallback tokens give their byte). Returns the
** number of bytes written to buf (at most cap), or -1 for a bad id. */
int pf_token_bytes(const pf_model *m, int id, char *buf, int cap);

/* Decode ids to UTF-8 text (malloc'ed, NUL-terminated). Special tokens (BOS,
** EOS, control) decode to nothing; a leading space that the tokenizer's
** space prefix added after BOS is removed when strip_leading is set. Invalid
** or incomplete UTF-8 becomes U+FFFD. */
int pf_detokenize(const pf_model *m, const int *ids, int n_ids, int strip_leading,
                  char **text, size_t *len, pf_err *err);

/* Bytes as valid UTF-8 text: each invalid or incomplete sequence becomes U+FFFD (malloc'ed, NUL-terminated). */
char *pf_utf8_clean_text(const char *in, size_t n, size_t *out_len);

/* ------------------------------------------------------------------- chat */

/* One message of a conversation (not NUL-terminated; lengths in bytes). */
typedef struct pf_chat_msg { const char *role; size_t role_len; const char *content; size_t content_len; } pf_chat_msg;
/* The prompt for a conversation in the format of the model's chat template (recognised from
** tokenizer.chat_template by its text, as llama.cpp does), or of the format `name` (NULL: the model's).
** add_ass: end with the assistant's turn opened. *out is malloc'ed, NUL-terminated; BOS is not in it. */
int pf_chat_format(const pf_model *m, const char *name, const pf_chat_msg *msgs, int n, int add_ass, char **out,
                   size_t *out_len, pf_err *err);
const char *pf_chat_template_names(void);   /* the formats, for messages */

/* ------------------------------------------------------- forward, caches */

/* One sequence's KV cache. Positions 0..n_prefix-1 may hold a prefix. */
typedef struct pf_seq {
  int n_ctx;      /* capacity in positions */
  int n_pos;      /* positions filled so far (prefix included) */
  int n_prefix;   /* leading positions holding a prefix */
  int n_layer, kv_dim;
  float *k;       /* (n_layer, n_ctx, kv_dim) post-RoPE keys */
  float *v;       /* (n_layer, n_ctx, kv_dim) values */
} pf_seq;

pf_seq *pf_seq_new(const pf_model *m, int n_ctx, pf_err *err);
void pf_seq_free(pf_seq *s);
/* Put a prefix into positions 0..prefix_len-1 and reset the sequence to it.
** kv layout: (n_layer, 2, prefix_len, kv_dim) — keys then values per layer. */
int pf_seq_set_prefix(pf_seq *s, const float *kv, int prefix_len, pf_err *err);
void pf_seq_reset(pf_seq *s);   /* back to just the prefix */
/* Make dst hold what src holds (its filled positions); dst must be as large. PF_OK or PF_ERR. */
int pf_seq_copy(pf_seq *dst, const pf_seq *src);

/* Kernel selection for tests: 1 = naive reference loops, 0 = BLAS/fast. */
void pf_set_naive(int naive);
int pf_get_naive(void);
/* Threads used by the compute kernels. pf_set_threads sets the process default
** (0 = PREFIX_THREADS, else the machine's cores). A call's own choice
** (pf_sample_params.threads, pf_train_params.threads) applies to that call
** only: pf_threads_push(n) makes n this thread's count until pf_threads_pop(old)
** with the value push returned. pf_get_threads: the count in effect here. */
void pf_set_threads(int n);
int pf_get_threads(void);
int pf_threads_push(int n);
void pf_threads_pop(int old);
/* What runs the products, as JSON: {"threads": n, "kernel": "avx512", "gflops": {"blas": .., "avx512": ..}}
** (the kernel in use, and each available kernel's speed as timed once per process). Returns the length, as
** snprintf does. */
int pf_system_info(char *buf, size_t n);
/* Lines "CPU features: …", "Kernel: …", "BLAS: …", "Threads: n" for bug reports (prefix_debug). */
int pf_build_info(char *buf, size_t n);
/* Seconds on the monotonic clock (for timing and deadlines). */
double pf_clock(void);

/* Scratch space for forward passes; grows as needed. */
typedef struct pf_work pf_work;
pf_work *pf_work_new(void);
void pf_work_free(pf_work *w);

/* Run the model on new tokens of n_seq sequences at once. Sequence i gets
** n_tok[i] tokens (concatenated in `tokens`), placed at its next positions.
** logits: if all_logits, (sum n_tok, n_vocab) rows in token order; else
** (n_seq, n_vocab), one row per sequence for its last new token. */
int pf_forward(const pf_model *m, pf_work *w, pf_seq **seqs, const int *n_tok,
               int n_seq, const int *tokens, float *logits, int all_logits,
               pf_err *err);

/* ---------------------------------------------------------------- sampler */

typedef struct pf_sample_params {
  int max_tokens;         /* default 128 */
  float temperature;      /* 0 = greedy (default) */
  int top_k;              /* 0 = off */
  float top_p;            /* 1 = off */
  float min_p;            /* 0 = off */
  float repeat_penalty;   /* 1 = off */
  int repeat_last_n;      /* window for repeat_penalty; default 64, -1 = all */
  uint64_t seed;
  int ignore_eos;         /* never stop at EOS (its logit is masked) */
  int threads;            /* compute threads for this call (0 = the process default) */
  int beam_size;          /* 1 = sampling/greedy (default); > 1 = beam search (deterministic) */
  float length_penalty;   /* beam search: a finished beam's score is sum(logprob) / n_tokens^length_penalty (1) */
  int no_repeat_ngram_size; /* n > 0: no n-gram of tokens occurs twice in the continuation (0 = off) */
  int n_stop;
  char *stop[PF_MAX_STOPS]; /* not owned by the params */
} pf_sample_params;

void pf_sample_params_default(pf_sample_params *p);

typedef struct pf_sampler pf_sampler;
pf_sampler *pf_sampler_new(const pf_sample_params *p, int n_vocab);
void pf_sampler_free(pf_sampler *s);
/* Pick the next token from logits (modified in place). history: the tokens
** seen so far (for repeat_penalty). */
int pf_sampler_sample(pf_sampler *s, float *logits, const int *history, int n_history);

/* ------------------------------------------------------------- generation */

enum { PF_FINISH_LENGTH = 0, PF_FINISH_STOP = 1, PF_FINISH_EOS = 2 };

typedef struct pf_gen_result {
  char *text;        /* malloc'ed continuation, UTF-8 */
  size_t len;
  int n_prompt;      /* prompt tokens (BOS included) */
  int n_tokens;      /* generated tokens */
  int finish;        /* PF_FINISH_* */
} pf_gen_result;

/* Generate a continuation of prompt. prefix (may be NULL): keys/values laid
** out as for pf_seq_set_prefix, prefix_len positions.
**
** Beam search (p->beam_size > 1) keeps the beam_size best continuations by summed log-probability, as
** Hugging Face's generate does without early stopping: a beam that ends (EOS, a stop string, max_tokens) is
** scored sum/n^length_penalty; the search ends when beam_size have ended and no live beam can beat the
** worst of them; the best ended one is the result. Sampling options (temperature, top_k, top_p, min_p,
** repeat_penalty) apply to beam_size 1 only. */
int pf_generate(const pf_model *m, const float *prefix, int prefix_len,
                const char *prompt, size_t prompt_len, const pf_sample_params *p,
                pf_cancel_fn cancel, void *cancel_arg, pf_gen_result *out, pf_err *err);
void pf_gen_result_clear(pf_gen_result *r);

/* Many rows at once, each with its own prefix (or none) and prompt, decoded
** together max_batch at a time. Results go to items[i].res. On error,
** *bad_item (if not NULL) is the row that could not start, or -1. */
typedef struct pf_batch_item {
  const float *prefix;
  int prefix_len;
  const char *prompt;
  size_t prompt_len;
  pf_gen_result res;
  /* an ensemble (n_members > 0; prefix/prefix_len are then unused): each member's prefix runs as its own
  ** sequence and the next-token distribution is the mean of the members' probabilities */
  int n_members;
  const float *const *member_kv;
  const int *member_len;
} pf_batch_item;
int pf_generate_batch(const pf_model *m, pf_batch_item *items, int n, int max_batch, const pf_sample_params *p,
                      pf_cancel_fn cancel, void *cancel_arg, int *bad_item, pf_err *err);
const char *pf_finish_name(int finish);

/* Streaming: one row, a token at a time. pf_stream_next gives the next generated token: its id, its
** log-probability under the model (the ensemble's mean distribution; before temperature and penalties),
** and the text it completes (piece; malloc'ed by the stream, valid until the next call). Text that may still
** become part of a stop string or of an incomplete UTF-8 character is held back, so the pieces concatenated
** equal pf_generate's text. A generation that ends with EOS gives that token last (its piece is what was held
** back). *done = 1 when there is nothing more. With beam search the search runs to its end at the first
** call and the best beam's tokens follow. Freeing the stream stops the work. */
typedef struct pf_stream pf_stream;
typedef struct pf_stream_tok { int id; double logprob; const char *piece; size_t piece_len; } pf_stream_tok;
int pf_stream_new(const pf_model *m, const pf_batch_item *item, const pf_sample_params *p, pf_stream **out, pf_err *err);
int pf_stream_next(pf_stream *s, pf_cancel_fn cancel, void *cancel_arg, pf_stream_tok *tok, int *done, pf_err *err);
/* The result so far (n_prompt, n_tokens, finish) */
const pf_gen_result *pf_stream_result(const pf_stream *s);
void pf_stream_free(pf_stream *s);

/* The model's scheduler (serve.c): every pf_generate, pf_generate_batch and stream on a model, from any
** thread, joins one batch that one forward pass per step advances; the model's own thread (started on the
** first request, joined by pf_model_free) runs the steps. What it holds now and has done. */
typedef struct pf_sched_info {
  int rows;          /* rows (prompts) in the running batch */
  int queued_rows;   /* rows waiting to join at the next step */
  int requests;      /* requests in the batch */
  int peak_rows;     /* the most rows the batch has held */
  int stepping;      /* a step runs now */
  uint64_t steps;    /* steps run */
  uint64_t tokens;   /* tokens generated */
  uint64_t served;   /* requests that joined */
  size_t budget;     /* bytes of KV cache all requests at once may hold */
  size_t used;       /* bytes reserved now */
  int waiting;       /* requests waiting for the budget */
  double busy_s;     /* seconds spent in steps */
} pf_sched_info;
int pf_sched_stats(const pf_model *m, pf_sched_info *out);
/* The KV-cache budget: a request reserves its caches' bytes (beams x ensemble members x (prefix + prompt +
** max_tokens) positions) before it makes them, and waits in arrival order while others hold the budget; one
** that can never fit fails at once (PF_TOOBIG). 0: the default, a quarter of the machine's memory. */
int pf_sched_set_budget(const pf_model *m, size_t bytes, pf_err *err);

#endif /* PREFIX_ENGINE_H */
