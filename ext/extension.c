/*
** extension.c — entry point of the sqlite-prefix loadable extension.
**
**   .load dist/prefix
**   SELECT prefix_version();
**   SELECT prefix_model_load('m', '../shared/models/stories260K.gguf');
**   SELECT prefix_generate('m', NULL, 'Once upon a time', '{"max_tokens": 40}');
**
** The same sources build as a loadable extension (default) and statically
** with -DSQLITE_CORE, where the host calls sqlite3_prefix_init itself or
** registers it with sqlite3_auto_extension().
*/
#include "ext.h"
SQLITE_EXTENSION_INIT3   /* the API pointer is defined in args.c, below every other ext file */

#include <pthread.h>
#include <stdarg.h>
#include <string.h>

static void fn_version(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  (void)argc; (void)argv;
  sqlite3_result_text(ctx, PF_VERSION, -1, SQLITE_STATIC);
}

/* prefix_system(): threads, the kernel in use and the measured speed of each (JSON) */
static void fn_system(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  (void)argc; (void)argv;
  char buf[512];
  int n = pf_system_info(buf, sizeof buf);
  if (n < 0 || n >= (int)sizeof buf) { sqlite3_result_error(ctx, "prefix_system: info too long", -1); return; }
  sqlite3_result_text(ctx, buf, n, SQLITE_TRANSIENT);
  sqlite3_result_subtype(ctx, PFX_JSON_SUBTYPE);
}

/* Every SQL function of the extension: name, arguments (a range: one registration per count), flags (why each:
** docs/sql.md's flags table), user data, and the scalar or aggregate callbacks. */
#define D SQLITE_DETERMINISTIC
#define I SQLITE_INNOCUOUS
#define DO SQLITE_DIRECTONLY
#define J PFX_RESULT_SUBTYPE
static const struct pfx_fn_def {
  const char *name;
  int n_min, n_max, flags;
  int user;                                   /* sqlite3_user_data, as an integer */
  pfx_sql_fn fn, step;                        /* scalar, or an aggregate's step ... */
  void (*final)(sqlite3_context *);           /* ... and final */
} fns[] = {
    {"prefix_version", 0, 0, D | I, 0, fn_version, NULL, NULL},
    {"prefix_system", 0, 0, I | J, 0, fn_system, NULL, NULL},
    {"prefix_model_load", 2, 3, DO, 0, pfx_fn_model_load, NULL, NULL},
    {"prefix_model_unload", 1, 1, DO, 0, pfx_fn_model_unload, NULL, NULL},
    {"prefix_tokenize", 2, 3, I | J, 0, pfx_fn_tokenize, NULL, NULL},
    {"prefix_detokenize", 2, 2, I, 0, pfx_fn_detokenize, NULL, NULL},
    {"prefix_chat", 2, 3, I, 0, pfx_fn_chat, NULL, NULL},
    {"prefix_generate", 3, 4, 0, 0, pfx_fn_generate, NULL, NULL},
    {"prefix_train", 2, 3, DO, 0, pfx_fn_train, NULL, NULL},
    {"prefix_train_agg", 3, 4, DO, 0, NULL, pfx_train_agg_step, pfx_train_agg_final},
    {"prefix_score", 4, 5, J, 0, pfx_fn_score, NULL, NULL},
    {"prefix_info", 1, 1, D | I | J, 0, pfx_fn_info, NULL, NULL},
    {"prefix_ensemble", 1, 1, I, 0, NULL, pfx_ensemble_step, pfx_ensemble_final},
    {"prefix_bleu", 2, 2, D | I, PFX_METRIC_BLEU, NULL, pfx_metric_step, pfx_metric_final},
    {"prefix_chrf", 2, 2, D | I, PFX_METRIC_CHRF, NULL, pfx_metric_step, pfx_metric_final},
    {"prefix_rouge_l", 2, 2, D | I, PFX_METRIC_ROUGE_L, NULL, pfx_metric_step, pfx_metric_final},
    {"prefix_export", 2, 2, D | I, 0, pfx_fn_export, NULL, NULL},
    {"prefix_export_config", 1, 2, D | I | J, 0, pfx_fn_export_config, NULL, NULL},
    {"prefix_import", 2, 3, I, 0, pfx_fn_import, NULL, NULL},
    {"prefix_cache_stats", 0, 0, I | J, 0, pfx_fn_cache_stats, NULL, NULL},
    {"prefix_help", 0, 0, D | I, 0, pfx_fn_help, NULL, NULL},
    {"prefix_debug", 0, 0, I, 0, pfx_fn_debug, NULL, NULL},
};
#undef D
#undef I
#undef DO
#undef J

/* Every table: the table-valued functions and the views of process state (all DIRECTONLY in their xConnect). */
static const struct pfx_module_def { const char *name; const sqlite3_module *module; } modules[] = {
    {"prefix_models", &pfx_models_module},
    {"prefix_generate_stream", &pfx_stream_module},
    {"prefix_generate_batch", &pfx_batch_module},
    {"prefix_jobs", &pfx_jobs_module},
    {"prefix_serving", &pfx_serving_module},
};

#ifdef _WIN32
__declspec(dllexport)
#endif
int sqlite3_prefix_init(sqlite3 *db, char **pzErrMsg, const sqlite3_api_routines *pApi) {
#ifndef SQLITE_CORE
  /* SQLITE_EXTENSION_INIT2 writes the global API pointer on every connection's init, while statements of
  ** other connections read it on other threads: a data race (always the same value, yet undefined
  ** behaviour). Written once, under a lock, it never changes while anyone reads it. */
  static pthread_mutex_t api_mu = PTHREAD_MUTEX_INITIALIZER;
  pthread_mutex_lock(&api_mu);
  if (sqlite3_api != pApi) sqlite3_api = pApi;
  pthread_mutex_unlock(&api_mu);
#else
  (void)pApi;
#endif
  (void)pzErrMsg;
  int rc = SQLITE_OK;
  for (size_t i = 0; i < sizeof fns / sizeof fns[0] && rc == SQLITE_OK; i++)
    for (int n = fns[i].n_min; n <= fns[i].n_max && rc == SQLITE_OK; n++)
      rc = sqlite3_create_function_v2(db, fns[i].name, n, SQLITE_UTF8 | fns[i].flags, (void *)(size_t)fns[i].user,
                                      fns[i].fn, fns[i].step, fns[i].final, NULL);
  for (size_t i = 0; i < sizeof modules / sizeof modules[0] && rc == SQLITE_OK; i++)
    rc = sqlite3_create_module(db, modules[i].name, modules[i].module, NULL);
  return rc;
}
