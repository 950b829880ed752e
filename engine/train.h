/*
** train.h — the engine's public API for prefixes: training one (train.c), scoring with one, the prefix
** BLOB and ensemble formats (prefix.c), PEFT adapter files (peft.c). With prefix_engine.h (models,
** tokenizers, generation) and metrics.h (text metrics) the public header set; what the engine's files
** and the tests share beyond it is in internal.h. No SQLite here.
*/
#ifndef PF_TRAIN_H
#define PF_TRAIN_H
#include "prefix_engine.h"

/* ------------------------------------------------------ prefix parameters */

/* Bytes of saved activations one pass may hold: a bigger batch runs as passes over parts of it (whole
** sequences), gradients accumulated. pf_train_params.activation_mb's default. */
#define PF_ACT_BUDGET ((size_t)128 << 20)


enum { PF_MODE_PREFIX = 0, PF_MODE_EMBEDDING = 1 };
enum { PF_SCHED_LINEAR = 0, PF_SCHED_CONSTANT = 1 };
enum { PF_DTYPE_F32 = 0, PF_DTYPE_F16 = 1 };

#define PF_INIT_TEXT_MAX (1 << 20)   /* init_text: 1 MB */

#define PF_DEFAULT_PREFIX_LEN 10
#define PF_DEFAULT_MID_DIM 512
#define PF_DEFAULT_PATIENCE 5          /* checks without improvement (docs/training.md) */
#define PF_DEFAULT_PATIENCE_WARM 4     /* the same for a warm start (init_prefix) with validation rows */
#define PF_DEFAULT_MIN_DELTA_VAL 0.0f   /* validation: any new best counts */
#define PF_DEFAULT_MIN_DELTA_TRAIN 0.01f /* the plateau rule: 1% of the best (the training loss creeps down for long) */

typedef struct pf_train_params {
  /* prefix_len 0, mode -1, mid_dim -1 (pf_train_params_default's): not given; pf_train takes init_prefix's,
  ** else PF_DEFAULT_PREFIX_LEN, PF_MODE_PREFIX and PF_DEFAULT_MID_DIM */
  int prefix_len;      /* virtual tokens */
  int mode;            /* PF_MODE_* */
  int mid_dim;         /* reparameterization MLP width; 0 = learn keys/values directly */
  const char *init_text; /* NULL = random; at most PF_INIT_TEXT_MAX bytes (kept in the BLOB's metadata) */
  float lr;            /* 0 = default for the mode (pf_train_default_lr) */
  float weight_decay;
  int warmup_steps;
  int lr_schedule;     /* PF_SCHED_* */
  float grad_clip;     /* 0 = off */
  int batch_size;
  int epochs;          /* 0 = unset: at least 3 epochs and 800 steps, stopped earlier by the checks below */
  int max_steps;       /* 0 = unset */
  uint64_t seed;
  int max_seq_len;     /* 0 = min(256, n_ctx - prefix_len) */
  int threads;         /* 0 = machine's cores */
  float val_fraction;
  int eval_every;      /* steps between checks; 0 = whole epochs, at least 5 steps (25 without validation rows) */
  int patience;        /* checks without improvement before stopping; 0 = off, -1 = PF_DEFAULT_PATIENCE (_WARM). A check
                       ** is the validation loss, or without validation rows the mean training loss since the
                       ** last check (the plateau rule; not with dp) */
  float min_delta;     /* an improvement: below the best so far by more than min_delta x best; -1 = by the check:
                       ** PF_DEFAULT_MIN_DELTA_VAL, PF_DEFAULT_MIN_DELTA_TRAIN */
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
  /* differential privacy, DP-SGD (docs/privacy.md): on when dp is 1. Each step samples every row with
  ** probability batch_size / rows, clips each sampled row's gradient to dp_max_grad_norm, adds Gaussian noise
  ** of dp_noise_multiplier x that norm to their sum and divides by batch_size; grad_clip does not apply. */
  int dp;
  float dp_epsilon;          /* what training may spend: the noise multiplier is chosen for it (0: give the multiplier) */
  float dp_delta;            /* 0: min(1e-5, 1 / (10 x training rows)) */
  float dp_max_grad_norm;    /* C (default 1; +inf: no clipping, tests only) */
  float dp_noise_multiplier; /* sigma >= 0, or -1: chosen for dp_epsilon */
  uint64_t dp_noise_seed;    /* noise and sampling from this seed (reproducible: it must stay secret); UINT64_MAX:
                             ** from the operating system (the default) */
} pf_train_params;

void pf_train_params_default(pf_train_params *p);


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
  int since_best;          /* checks in a row without improvement (patience stops at patience) */
  const char *stop_reason; /* NULL while running; then "steps", "validation" or "plateau" (a static string) */
} pf_progress;
typedef void (*pf_progress_fn)(void *arg, const pf_progress *p);

/* Train a prefix. val may be NULL (then val_fraction of train is held out
** when > 0). On success *blob is a malloc'ed BLOB (see docs/prefix-format.md). */
int pf_train(const pf_model *m, const pf_example *train, int n_train, const pf_example *val, int n_val,
             const pf_train_params *p, pf_progress_fn progress, void *parg, pf_cancel_fn cancel, void *carg,
             uint8_t **blob, size_t *blob_len, pf_err *err);

/* Mean negative log-likelihood of the completion given the prompt (and a
** prefix, kv may be NULL). */
int pf_score(const pf_model *m, const float *kv, int prefix_len, const char *prompt, size_t plen,
             const char *completion, size_t clen, int add_eos, double *nll, int *n_tokens, pf_err *err);

/* Per token: the completion's token ids (EOS last when add_eos) and the log-probability of each given what
** precedes it, under no prefix (pre NULL), a prefix, or an ensemble (log of the mean of the members'
** probabilities). *nll: the mean negative log-probability. ids and lp are malloc'ed (either may be NULL
** when not wanted). The pass joins the model's batch (every generation and scoring on the model, from any
** thread); cancel (may be NULL) is checked while it waits for its turn and between steps. */
struct pf_prefix;
int pf_score_tokens(const pf_model *m, const struct pf_prefix *pre, const char *prompt, size_t plen,
                    const char *completion, size_t clen, int add_eos, int **ids, double **lp, int *n_tokens,
                    double *nll, pf_cancel_fn cancel, void *cancel_arg, pf_err *err);

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
/* the largest magnitude a stored key or value may have (what f16 holds): far beyond any trained prefix, and
** small enough that attention over it cannot overflow to infinity */
#define PF_PREFIX_MAX_ABS 65504.0f
/* Decode and verify (magic, version, lengths, checksum, finite values). A prefix BLOB or an ensemble. */
int pf_prefix_decode(const uint8_t *blob, size_t len, pf_prefix *out, pf_err *err);
/* Whether a prefix of prefix_len positions fits model m: 1..PF_PREFIX_LEN_MAX, and at least one position of
** the model's context left after it. The one check of a prefix length against a model. */
int pf_prefix_len_check(const pf_model *m, int prefix_len, pf_err *err);
/* Whether a decoded prefix or ensemble fits model m: its fingerprint, its shapes, and pf_prefix_len_check.
** model_name (may be NULL: "this model") names the model in the message. The one check of a prefix
** against a model, for the SQL layer and the engine alike. */
int pf_prefix_check_model(const pf_prefix *p, const pf_model *m, const char *model_name, pf_err *err);
void pf_prefix_clear(pf_prefix *p);
/* Point a generation item at a decoded prefix or ensemble (p may be NULL: no prefix). */
void pf_item_set_prefix(pf_batch_item *it, const pf_prefix *p);
/* ------------------------------------------------------------------ PEFT (peft.c) */
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

#endif /* PF_TRAIN_H */
