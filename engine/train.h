/*
** train.h — prefix-tuning inside the engine: the training step (backward.c),
** the prefix parameters and BLOB format (prefix.c), and the training loop
** (train.c). Part of the engine's public API; no SQLite here.
*/
#ifndef PF_TRAIN_H
#define PF_TRAIN_H
#include "prefix_engine.h"

/* ------------------------------------------------------ one training step */

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
/* Bytes of saved activations one pass may hold: a bigger batch runs as passes over parts of it (whole
** sequences), gradients accumulated. 0 = PF_ACT_BUDGET. */
#define PF_ACT_BUDGET ((size_t)128 << 20)
void pf_tws_set_budget(pf_tws *w, size_t bytes);
/* Make the following steps write each target's log-probability to out (in target order; NULL: stop). */
void pf_tws_set_token_logprobs(pf_tws *w, double *out);

/* Forward (and, if backward, backward) over a batch. loss_sum: summed nats
** over the n_tgt target positions; gradients are of loss_scale * loss_sum. */
/* tests: 1 makes the training attention run row at a time (the blocked path's reference) */
extern int pf_attn_rows;
int pf_train_step(const pf_model *m, pf_tws *w, const pf_tbatch *b, const pf_prefix_in *pin, float loss_scale,
                  int backward, double *loss_sum, int *n_tgt, pf_cancel_fn cancel, void *carg, pf_err *err);
/* Logits (T, n_vocab) at every row, through the training forward (tests). */
int pf_train_logits(const pf_model *m, pf_tws *w, const pf_tbatch *b, const pf_prefix_in *pin, float *logits,
                    pf_err *err);

/* ------------------------------------------------------ prefix parameters */

enum { PF_MODE_PREFIX = 0, PF_MODE_EMBEDDING = 1 };
enum { PF_SCHED_LINEAR = 0, PF_SCHED_CONSTANT = 1 };
enum { PF_DTYPE_F32 = 0, PF_DTYPE_F16 = 1 };

#define PF_INIT_TEXT_MAX (1 << 20)   /* init_text: 1 MB */

typedef struct pf_train_params {
  int prefix_len;      /* virtual tokens; default 10 */
  int mode;            /* PF_MODE_* */
  int mid_dim;         /* reparameterization MLP width; 0 = learn keys/values directly */
  const char *init_text; /* NULL = random; at most PF_INIT_TEXT_MAX bytes (kept in the BLOB's metadata) */
  float lr;            /* 0 = default for the mode (pf_train_default_lr) */
  float weight_decay;
  int warmup_steps;
  int lr_schedule;     /* PF_SCHED_* */
  float grad_clip;     /* 0 = off */
  int batch_size;
  int epochs;          /* 0 = unset: at least 3 epochs and 800 steps */
  int max_steps;       /* 0 = unset */
  uint64_t seed;
  int max_seq_len;     /* 0 = min(256, n_ctx - prefix_len) */
  int threads;         /* 0 = machine's cores */
  float val_fraction;
  int eval_every;      /* steps between validations; 0 = once per epoch */
  int patience;        /* evaluations without improvement before stopping; 0 = off */
  int dtype;           /* PF_DTYPE_* of the BLOB payload */
  int progress;        /* progress on stderr: 1 on (a bar on a terminal, else a line per 10%), 0 off, -1 when stderr is a terminal */
  int add_eos;         /* append EOS to every completion (default 1) */
  int activation_mb;   /* saved activations per pass (0 = PF_ACT_BUDGET); bigger batches run in parts */
  /* warm start: a prefix BLOB of this model to start from (NULL: random or init_text). With a training-state
  ** section (save_state) training continues exactly where that run stopped: parameters, AdamW moments, step
  ** count, and the data order when the rows are the same. prefix_len 0 / mode -1 / mid_dim -1: the BLOB's. */
  const uint8_t *init_prefix;
  size_t init_prefix_len;
  int save_state;      /* store the parameters, moments and data order in the BLOB (an optional section) */
} pf_train_params;

void pf_train_params_default(pf_train_params *p);
float pf_train_default_lr(const pf_train_params *p);

/* The learnable parameters of a prefix and their gradients and moments. */
typedef struct pf_pparams pf_pparams;

/* A training pair. */
typedef struct pf_example {
  const char *prompt;
  size_t prompt_len;
  const char *completion;
  size_t completion_len;
} pf_example;

/* Progress, as reported to the callback after every step. */
typedef struct pf_progress {
  int step, total_steps, epoch, epochs;
  double train_loss;       /* mean nats/token of the last step */
  double val_loss;         /* last validation, NAN before the first */
  double best_val_loss;
  double tokens_per_s;
  double elapsed_s, eta_s;
  int done;
} pf_progress;
typedef void (*pf_progress_fn)(void *arg, const pf_progress *p);

/* Train a prefix. val may be NULL (then val_fraction of train is held out
** when > 0). On success *blob is a malloc'ed BLOB (see docs/prefix-format.md). */
int pf_train(const pf_model *m, const pf_example *train, int n_train, const pf_example *val, int n_val,
             const pf_train_params *p, pf_progress_fn progress, void *parg, pf_cancel_fn cancel, void *carg,
             uint8_t **blob, size_t *blob_len, pf_err *err);

/* Tokenize a pair as training sees it: BOS + prompt, then the completion
** (no space prefix, so generation reproduces it exactly) and EOS. Returns
** tokens and the index of the first completion token. */
int pf_pair_tokens(const pf_model *m, const char *prompt, size_t plen, const char *completion, size_t clen, int add_eos,
                   int **ids, int *n, int *n_prompt, pf_err *err);

/* Mean negative log-likelihood of the completion given the prompt (and a
** prefix, kv may be NULL). */
int pf_score(const pf_model *m, const float *kv, int prefix_len, const char *prompt, size_t plen,
             const char *completion, size_t clen, int add_eos, double *nll, int *n_tokens, pf_err *err);

/* Per token: the completion's token ids (EOS last when add_eos) and the log-probability of each given what
** precedes it, under no prefix (pre NULL), a prefix, or an ensemble (log of the mean of the members'
** probabilities). *nll: the mean negative log-probability. ids and lp are malloc'ed (either may be NULL
** when not wanted). */
struct pf_prefix;
int pf_score_tokens(const pf_model *m, const struct pf_prefix *pre, const char *prompt, size_t plen,
                    const char *completion, size_t clen, int add_eos, int **ids, double **lp, int *n_tokens,
                    double *nll, pf_err *err);

/* ------------------------------------------------------------ BLOB format */

typedef struct pf_prefix {
  uint32_t version;
  char fingerprint[17];
  char id[17];           /* the BLOB's checksum in hex: names this prefix (prefix_info, prefix_generate_batch) */
  int arch, n_layer, n_head_kv, head_dim, prefix_len, dtype;
  uint32_t positions;    /* 0: prefix at positions 0..P-1, prompt from P */
  char *meta;            /* training metadata JSON (malloc'ed, NUL-terminated) */
  size_t meta_len;
  float *kv;             /* (n_layer, 2, prefix_len, kv_dim), decoded to f32 (NULL for an ensemble) */
  size_t bytes;          /* the BLOB's length */
  size_t state_off, state_len;   /* the training-state section in the BLOB (state_len 0: none) */
  int n_members;         /* an ensemble: its members (prefix_len is the longest member's); 0 otherwise */
  struct pf_prefix *members;
  const float **member_kv;  /* an ensemble: members[i].kv and .prefix_len, as pf_batch_item wants them */
  int *member_len;
} pf_prefix;

int pf_prefix_encode(const pf_model *m, const float *kv, int prefix_len, int dtype, const char *meta, uint8_t **blob,
                     size_t *len, pf_err *err);
/* The same with a training-state section (state may be NULL): a version 2 BLOB when there is one. */
int pf_prefix_encode_ex(const pf_model *m, const float *kv, int prefix_len, int dtype, const char *meta,
                        const uint8_t *state, size_t state_len, uint8_t **blob, size_t *len, pf_err *err);
/* An ensemble BLOB from n member BLOBs of one model (each a prefix BLOB, not an ensemble). */
int pf_ensemble_encode(const uint8_t *const *members, const size_t *lens, int n, uint8_t **blob, size_t *len, pf_err *err);
#define PF_ENSEMBLE_MAX 64
/* the largest magnitude a stored key or value may have (what f16 holds): far beyond any trained prefix, and
** small enough that attention over it cannot overflow to infinity */
#define PF_PREFIX_MAX_ABS 65504.0f
/* Write the format's checksum into the last 8 bytes of a BLOB of len >= 8 bytes (the encoder's last step;
** tests and the fuzzer use it to reach the checks that follow the checksum). */
void pf_prefix_seal(uint8_t *blob, size_t len);
/* Decode and verify (magic, version, lengths, checksum, finite values). A prefix BLOB or an ensemble. */
int pf_prefix_decode(const uint8_t *blob, size_t len, pf_prefix *out, pf_err *err);
/* Check that a decoded prefix fits the model (fingerprint and shapes). */
int pf_prefix_check_model(const pf_prefix *p, const pf_model *m, pf_err *err);
void pf_prefix_clear(pf_prefix *p);
/* Point a generation item at a decoded prefix or ensemble (p may be NULL: no prefix). */
void pf_item_set_prefix(pf_batch_item *it, const pf_prefix *p);
/* ------------------------------------------------------- PEFT, safetensors (peft.c) */
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
/* A prefix as PEFT's prefix-tuning adapter file (adapter_model.safetensors): "prompt_embeddings" (P, L*2*kv_dim),
** F32, keys in Hugging Face's RoPE layout for llama; and its adapter_config.json (n_head: the model's, for the
** record; PEFT's GQA rule makes num_attention_heads the key/value heads). */
int pf_peft_export(const pf_prefix *p, uint8_t **out, size_t *out_len, pf_err *err);
char *pf_peft_config_json(const pf_prefix *p, int n_head);
/* Keys and values (layout of pf_seq_set_prefix) from a PEFT adapter file for model m; want_P > 0: the
** config's num_virtual_tokens, checked. *kv malloc'ed. */
int pf_peft_import(const pf_model *m, const uint8_t *st, size_t st_len, int want_P, float **kv, int *P, pf_err *err);

/* prefix_info JSON (malloc'ed). */
char *pf_prefix_info_json(const pf_prefix *p, size_t blob_len);

#endif

/* ---------------------------------------------- internals, for the tests */
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
