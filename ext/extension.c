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
  int rc = sqlite3_create_function_v2(db, "prefix_version", 0,
                                      SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS, NULL, fn_version,
                                      NULL, NULL, NULL);
  if (rc == SQLITE_OK)
    rc = sqlite3_create_function_v2(db, "prefix_system", 0, SQLITE_UTF8 | SQLITE_INNOCUOUS | PFX_RESULT_SUBTYPE, NULL,
                                    fn_system, NULL, NULL, NULL);
  if (rc == SQLITE_OK) rc = pfx_register_models(db);
  if (rc == SQLITE_OK) rc = pfx_register_generate(db);
  if (rc == SQLITE_OK) rc = pfx_register_train(db);
  if (rc == SQLITE_OK) rc = pfx_register_batch(db);
  if (rc == SQLITE_OK) rc = pfx_register_cache(db);
  if (rc == SQLITE_OK) rc = pfx_register_chat(db);
  if (rc == SQLITE_OK) rc = pfx_register_metrics(db);
  if (rc == SQLITE_OK) rc = pfx_register_peft(db);
  if (rc == SQLITE_OK) rc = pfx_register_help(db);
  return rc;
}
