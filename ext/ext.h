/*
** ext.h — shared declarations of the SQLite layer (ext/). The engine does the
** work; these files map SQL values to engine calls and engine errors to SQL.
*/
#ifndef PFX_EXT_H
#define PFX_EXT_H

#include "sqlite3ext.h"
#include "../engine/prefix_engine.h"
#include "../engine/train.h"

#ifndef SQLITE_CORE
extern const sqlite3_api_routines *sqlite3_api;
#endif

/* ---------------------------------------------------------- model registry */
/* A process-wide registry: name -> loaded model, shared by all connections.
** The same file (device, inode, size, mtime) loaded under two names shares
** one pf_model. Lookups take a reference; release it when done. */
typedef struct pfx_model pfx_model;   /* a refcounted loaded file */

int pfx_registry_load(const char *name, const char *path, char **errmsg);
int pfx_registry_unload(const char *name, char **errmsg);
/* Find by name and take a reference; NULL and *errmsg (sqlite3_malloc'ed,
** listing the loaded names) if unknown. */
pfx_model *pfx_registry_get(const char *name, char **errmsg);
void pfx_model_release(pfx_model *pm);
const pf_model *pfx_model_engine(const pfx_model *pm);

/* Snapshot of the registry for the prefix_models table. */
typedef struct pfx_model_row {
  char *name, *path;
  pfx_model *pm;     /* a reference */
} pfx_model_row;
int pfx_registry_snapshot(pfx_model_row **rows, int *n);
void pfx_registry_snapshot_free(pfx_model_row *rows, int n);

/* ------------------------------------------------------ prefix BLOB cache */
typedef struct pfx_prefix_ref pfx_prefix_ref;   /* a decoded prefix, refcounted */
struct pf_prefix;
int pfx_prefix_decode_cached(const unsigned char *blob, size_t len, pfx_prefix_ref **out, pf_err *err);
const struct pf_prefix *pfx_prefix_get(const pfx_prefix_ref *r);
void pfx_prefix_release(pfx_prefix_ref *r);
/* Read a prefix argument (NULL = none): decoded through the cache and checked
** against the model. Returns 0 (with *out NULL for no prefix) or -1 after
** setting the error on ctx. */
int pfx_arg_prefix(sqlite3_context *ctx, const char *fn, sqlite3_value *v, const pfx_model *pm, const char *model_name,
                   pfx_prefix_ref **out);
/* The same check without a context: returns an error message (sqlite3_malloc'ed) or NULL. */
char *pfx_check_prefix(const struct pf_prefix *p, const pfx_model *pm, const char *model_name);

/* ---------------------------------------------------------------- options */
enum { PFX_OPT_INT, PFX_OPT_FLOAT, PFX_OPT_U64, PFX_OPT_BOOL, PFX_OPT_STR, PFX_OPT_STRLIST, PFX_OPT_ENUM, PFX_OPT_OBJ };
typedef struct pfx_opt {
  const char *name;
  int kind;
  size_t off;           /* offset in the target struct */
  double lo, hi;        /* allowed range (INT, FLOAT, U64) */
  const char *choices;  /* ENUM: "a|b|c"; stored as the index (int) */
  size_t count_off;     /* STRLIST: offset of the int count */
  int max_count;        /* STRLIST: array capacity */
  const struct pfx_opt *sub;   /* OBJ: the object's own options (read into the same target; off: an int set to 1) */
  int n_sub;
} pfx_opt;

/* Results that are JSON carry SQLite's JSON subtype ('J', as SQLite's own JSON functions set it), so
** json_object('ids', prefix_tokenize(...)) nests the array instead of quoting a string. Functions that set a
** subtype declare it where SQLite asks for that (SQLITE_RESULT_SUBTYPE, 3.45 and later). */
#define PFX_JSON_SUBTYPE 'J'
#ifdef SQLITE_RESULT_SUBTYPE
#define PFX_RESULT_SUBTYPE SQLITE_RESULT_SUBTYPE
#else
#define PFX_RESULT_SUBTYPE 0
#endif

/* Where a JSON text given by the user holds a NUL character — a raw byte, or escaped as \u0000 (or JSON5's
** \x00 and \0, which newer SQLite reads) — its byte offset, else -1 (also for a non-text value). SQLite's
** JSON functions cut a string at an escaped NUL and read a text only up to a raw one, so a key, a value or
** everything after would be silently lost: callers refuse such JSON. */
long pfx_json_nul_at(sqlite3_value *v);
/* Parse a JSON object of options into target using the table. Strings are
** sqlite3_malloc'ed and recorded in *owned (free with pfx_opts_free).
** Returns SQLITE_OK or an error code with *errmsg set (sqlite3_malloc'ed). */
int pfx_parse_options(sqlite3 *db, const char *fn, sqlite3_value *json, const pfx_opt *table, int n_table,
                      void *target, char ***owned, int *n_owned, char **errmsg);
void pfx_opts_free(char **owned, int n_owned);
int pfx_parse_gen_options(sqlite3 *db, const char *fn, sqlite3_value *json, pf_sample_params *p, char ***owned,
                          int *n_owned, char **errmsg);
typedef struct pfx_batch_opts { pf_sample_params p; int batch_size, require_prefix; } pfx_batch_opts;
int pfx_parse_batch_options(sqlite3 *db, const char *fn, sqlite3_value *json, pfx_batch_opts *o, char ***owned,
                            int *n_owned, char **errmsg);
/* prefix_train's options: the engine's parameters (prefix_len, mode, mid_dim left to the engine), val_query, and
** init_prefix given as hex text, decoded in place into p.init_prefix. */
typedef struct pfx_train_opts {
  pf_train_params p;
  char *val_query;
  char *init_hex;
} pfx_train_opts;
int pfx_parse_train_options(sqlite3 *db, const char *fn, sqlite3_value *json, pfx_train_opts *o, char ***owned,
                            int *n_owned, char **errmsg);
typedef struct pfx_score_opts { int add_eos, per_token; } pfx_score_opts;
int pfx_parse_score_options(sqlite3 *db, const char *fn, sqlite3_value *json, pfx_score_opts *o, char ***owned,
                            int *n_owned, char **errmsg);

/* ------------------------------------------------------------ jobs (jobs.c) */
/* A training run as a row of prefix_jobs: started, its progress (a pf_progress_fn), finished. */
sqlite3_int64 pfx_job_start(const char *model);
void pfx_job_progress(void *arg, const pf_progress *pr);
void pfx_job_finish(sqlite3_int64 id, const char *status, const char *error);

/* --------------------------------------------------------------- interrupt */
/* Works on SQLite 3.40 (no sqlite3_is_interrupted) and newer: stepping a tiny
** prepared statement on the same connection returns SQLITE_INTERRUPT once
** sqlite3_interrupt() has been called while our statement runs. A progress
** handler (sqlite3_progress_handler, Python's set_progress_handler: how apps
** put a time limit on a statement) is called only after its N virtual-machine
** operations within one step, so every 10 ms a longer probe of about 1,700
** operations runs too: handlers with N up to 1,000 can stop generation and
** training. */
typedef struct pfx_cancel {
  sqlite3 *db;
  sqlite3_stmt *probe, *probe_long;
  double last_long;
} pfx_cancel;
int pfx_cancel_init(pfx_cancel *c, sqlite3 *db);
int pfx_cancel_check(void *arg);   /* pf_cancel_fn */
void pfx_cancel_done(pfx_cancel *c);

/* ---------------------------------------------------------------- helpers */
/* Set a formatted error on ctx (out of memory if formatting fails). */
void pfx_result_errorf(sqlite3_context *ctx, const char *fmt, ...);
/* Report an engine error on ctx: "fn: message", with NOMEM / TOOBIG mapped. */
void pfx_result_err(sqlite3_context *ctx, const char *fn, const pf_err *e);
/* Get the model named by argv[0] or report the error; NULL if reported. */
pfx_model *pfx_arg_model(sqlite3_context *ctx, const char *fn, sqlite3_value *v);
/* Text argument required (non-NULL); NULL and an error if not. */
const char *pfx_arg_text(sqlite3_context *ctx, const char *fn, const char *what, sqlite3_value *v, int *len);
/* The same for names, paths and SQL, which C reads up to a NUL: one inside the value is refused. */
const char *pfx_arg_cstr(sqlite3_context *ctx, const char *fn, const char *what, sqlite3_value *v);
/* Prepare the query a function runs for its rows: one statement, read-only (sqlite3_stmt_readonly), with
** exactly ncols result columns (cols names them for the message). NULL and *errmsg ("fn: what ...") if not;
** *rc the SQLite code. */
sqlite3_stmt *pfx_prepare_rows(sqlite3 *db, const char *fn, const char *what, const char *sql, int ncols,
                               const char *cols, char **errmsg, int *rc);

/* Eponymous read-only tables: xConnect that declares the schema, marks the
** table DIRECTONLY and allocates `size` zeroed bytes; the matching
** xDisconnect; and an xOpen helper allocating a zeroed cursor of `size`. */
int pfx_vtab_connect(sqlite3 *db, const char *schema, size_t size, sqlite3_vtab **pp);
int pfx_vtab_disconnect(sqlite3_vtab *v);
int pfx_cursor_open(size_t size, sqlite3_vtab_cursor **pc);
/* xBestIndex of a table-valued function whose arguments are the hidden columns first_hidden.. (at most 8):
** idxNum bit k set when argument k is given, argv in column order. */
int pfx_vtab_best_index_args(sqlite3_index_info *info, int first_hidden, int n_hidden, double rows);
/* Set the cursor's table error to msg (sqlite3_malloc'ed; NULL: out of memory) and return the code. */
int pfx_vtab_fail(sqlite3_vtab_cursor *cur, char *msg);

/* The SQL functions and tables, registered from one table in extension.c (sqlite3_prefix_init). */
typedef void (*pfx_sql_fn)(sqlite3_context *, int, sqlite3_value **);
void pfx_fn_model_load(sqlite3_context *, int, sqlite3_value **);     /* fn_models.c */
void pfx_fn_model_unload(sqlite3_context *, int, sqlite3_value **);
void pfx_fn_tokenize(sqlite3_context *, int, sqlite3_value **);
void pfx_fn_detokenize(sqlite3_context *, int, sqlite3_value **);
void pfx_fn_chat(sqlite3_context *, int, sqlite3_value **);           /* fn_chat.c */
void pfx_fn_generate(sqlite3_context *, int, sqlite3_value **);       /* fn_generate.c */
void pfx_fn_train(sqlite3_context *, int, sqlite3_value **);          /* fn_train.c */
void pfx_fn_score(sqlite3_context *, int, sqlite3_value **);
void pfx_fn_info(sqlite3_context *, int, sqlite3_value **);
void pfx_train_agg_step(sqlite3_context *, int, sqlite3_value **);
void pfx_train_agg_final(sqlite3_context *);
void pfx_ensemble_step(sqlite3_context *, int, sqlite3_value **);
void pfx_ensemble_final(sqlite3_context *);
enum { PFX_METRIC_BLEU, PFX_METRIC_CHRF, PFX_METRIC_ROUGE_L };      /* fn_metrics.c: the user data of each */
void pfx_metric_step(sqlite3_context *, int, sqlite3_value **);
void pfx_metric_final(sqlite3_context *);
void pfx_fn_export(sqlite3_context *, int, sqlite3_value **);         /* fn_peft.c */
void pfx_fn_export_config(sqlite3_context *, int, sqlite3_value **);
void pfx_fn_import(sqlite3_context *, int, sqlite3_value **);
void pfx_fn_help(sqlite3_context *, int, sqlite3_value **);           /* fn_help.c */
void pfx_fn_debug(sqlite3_context *, int, sqlite3_value **);
void pfx_fn_cache_stats(sqlite3_context *, int, sqlite3_value **);    /* prefix_cache.c */
extern sqlite3_module pfx_models_module;   /* prefix_models (fn_models.c) */
extern sqlite3_module pfx_stream_module;   /* prefix_generate_stream (fn_generate.c) */
extern sqlite3_module pfx_batch_module;    /* prefix_generate_batch (fn_batch.c) */
extern sqlite3_module pfx_jobs_module;     /* prefix_jobs (jobs.c) */
extern sqlite3_module pfx_serving_module;  /* prefix_serving (fn_models.c) */

#endif
