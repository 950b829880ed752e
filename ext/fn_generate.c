/*
** fn_generate.c — text generation.
**
**   SELECT prefix_generate('m', NULL, 'Once upon a time');
**   SELECT prefix_generate('m', (SELECT blob FROM prefixes WHERE customer = 7), 'Q: hours?');
**   SELECT prefix_generate('m', NULL, 'Once upon a time',
**                          '{"max_tokens": 40, "temperature": 0.8, "top_p": 0.9, "seed": 7, "stop": ["."]}');
**
** Options: max_tokens (128), temperature (0 = greedy), top_k, top_p, min_p,
** repeat_penalty, repeat_last_n (64), seed (0), stop (a string or an array).
** Ctrl-C in the shell (sqlite3_interrupt) stops it between tokens.
*/
#include "ext.h"
SQLITE_EXTENSION_INIT3

#include <string.h>
#include "../engine/train.h"


static void fn_generate(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  const char *fn = "prefix_generate";
  sqlite3 *db = sqlite3_context_db_handle(ctx);
  pfx_model *pm = pfx_arg_model(ctx, fn, argv[0]);
  if (!pm) return;
  char **owned = NULL, *emsg = NULL;
  int n_owned = 0;
  pfx_cancel cancel = {0};
  pf_gen_result res = {0};
  pf_sample_params p;
  pfx_prefix_ref *ref = NULL;
  int plen;
  const char *prompt = pfx_arg_text(ctx, fn, "prompt", argv[2], &plen);
  if (!prompt) goto done;
  if (pfx_arg_prefix(ctx, fn, argv[1], pm, (const char *)sqlite3_value_text(argv[0]), &ref)) goto done;
  const pf_prefix *pre = ref ? pfx_prefix_get(ref) : NULL;
  int rc = pfx_parse_gen_options(db, fn, argc > 3 ? argv[3] : NULL, &p, &owned, &n_owned, &emsg);
  if (rc) {
    if (emsg) sqlite3_result_error(ctx, emsg, -1);
    else sqlite3_result_error_nomem(ctx);
    goto done;
  }
  pfx_cancel_init(&cancel, db);
  pf_err e;
  if (pf_generate(pfx_model_engine(pm), pre ? pre->kv : NULL, pre ? pre->prefix_len : 0, prompt, (size_t)plen, &p, pfx_cancel_check, &cancel, &res, &e)) {
    pfx_result_err(ctx, fn, &e);
    goto done;
  }
  sqlite3_result_text64(ctx, res.text, res.len, SQLITE_TRANSIENT, SQLITE_UTF8);
done:
  pf_gen_result_clear(&res);
  pfx_prefix_release(ref);
  pfx_cancel_done(&cancel);
  pfx_opts_free(owned, n_owned);
  sqlite3_free(emsg);
  pfx_model_release(pm);
}

int pfx_register_generate(sqlite3 *db) {
  int rc = sqlite3_create_function_v2(db, "prefix_generate", 3, SQLITE_UTF8, NULL, fn_generate, NULL, NULL, NULL);
  if (rc == SQLITE_OK)
    rc = sqlite3_create_function_v2(db, "prefix_generate", 4, SQLITE_UTF8, NULL, fn_generate, NULL, NULL, NULL);
  return rc;
}
