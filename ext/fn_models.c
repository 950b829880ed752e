/*
** fn_models.c — loading models and tokenizing.
**
**   SELECT prefix_model_load('m', 'stories260K.gguf');   -- 'm'
**   SELECT name, arch, n_layer, n_params, fingerprint FROM prefix_models;
**   SELECT prefix_tokenize('m', 'Once upon a time');     -- [1,403,407,261,378]
**   SELECT prefix_detokenize('m', '[403,407,261,378]');  -- Once upon a time
**   SELECT prefix_model_unload('m');                     -- 1
**
** prefix_model_load / prefix_model_unload read files and change process-wide
** state: SQLITE_DIRECTONLY, so a schema (trigger, view) cannot reach them.
** prefix_tokenize / prefix_detokenize only compute: SQLITE_INNOCUOUS. They are
** not DETERMINISTIC because a name may be rebound to another model.
*/
#include "ext.h"
#include <stddef.h>
SQLITE_EXTENSION_INIT3

#include <stdlib.h>
#include <string.h>

/* prefix_model_load's options */
typedef struct load_opts { int kv_budget_mb; } load_opts;
static const pfx_opt load_table[] = {
    {"kv_budget_mb", PFX_OPT_INT, offsetof(load_opts, kv_budget_mb), 0, 1 << 30, 0, 0, 0, 0, 0},
};

void pfx_fn_model_load(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  const char *fn = "prefix_model_load";
  const char *name = pfx_arg_cstr(ctx, fn, "model name", argv[0]);
  if (!name) return;
  const char *path = pfx_arg_cstr(ctx, fn, "path", argv[1]);
  if (!path) return;
  if (!name[0]) { sqlite3_result_error(ctx, "prefix_model_load: model name must not be empty", -1); return; }
  load_opts lo = {-1};
  char **owned = NULL, *e = NULL;
  int n_owned = 0, rc;
  if (argc > 2 && (rc = pfx_parse_options(sqlite3_context_db_handle(ctx), fn, argv[2], load_table, 1, &lo, &owned, &n_owned, &e))) {
    pfx_opts_free(owned, n_owned);
    if (rc == SQLITE_NOMEM && !e) { sqlite3_result_error_nomem(ctx); return; }
    sqlite3_result_error(ctx, e ? e : "prefix_model_load: bad options", -1);
    sqlite3_free(e);
    return;
  }
  pfx_opts_free(owned, n_owned);
  rc = pfx_registry_load(name, path, &e);
  if (rc == SQLITE_NOMEM) { sqlite3_free(e); sqlite3_result_error_nomem(ctx); return; }
  if (rc) {
    pfx_result_errorf(ctx, "%s: %s", fn, e ? e : "failed");
    sqlite3_free(e);
    return;
  }
  if (lo.kv_budget_mb >= 0) {   /* the model's budget for KV caches (0: the default) */
    pfx_model *pm = pfx_registry_get(name, &e);
    pf_err pe;
    if (pm && pf_sched_set_budget(pfx_model_engine(pm), (size_t)lo.kv_budget_mb << 20, &pe)) { pfx_model_release(pm); sqlite3_result_error_nomem(ctx); return; }
    pfx_model_release(pm);
    sqlite3_free(e);
  }
  sqlite3_result_value(ctx, argv[0]);
}

void pfx_fn_model_unload(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  (void)argc;
  const char *fn = "prefix_model_unload";
  const char *name = pfx_arg_cstr(ctx, fn, "model name", argv[0]);
  if (!name) return;
  char *e = NULL;
  if (pfx_registry_unload(name, &e)) {
    pfx_result_errorf(ctx, "%s: %s", fn, e ? e : "failed");
    sqlite3_free(e);
    return;
  }
  sqlite3_result_int(ctx, 1);
}

typedef struct tok_opts { int add_special, parse_special; } tok_opts;
static const pfx_opt tok_table[] = {
    {"add_special", PFX_OPT_BOOL, offsetof(tok_opts, add_special), 0, 0, 0, 0, 0, 0, 0},
    {"parse_special", PFX_OPT_BOOL, offsetof(tok_opts, parse_special), 0, 0, 0, 0, 0, 0, 0},
};

void pfx_fn_tokenize(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  const char *fn = "prefix_tokenize";
  tok_opts o = {1, 1};
  char **owned = NULL, *em = NULL;
  int n_owned = 0;
  if (argc > 2 && pfx_parse_options(sqlite3_context_db_handle(ctx), fn, argv[2], tok_table, 2, &o, &owned, &n_owned, &em)) {
    pfx_result_errorf(ctx, "%s", em ? em : "options");
    sqlite3_free(em);
    pfx_opts_free(owned, n_owned);
    return;
  }
  pfx_opts_free(owned, n_owned);
  pfx_model *pm = pfx_arg_model(ctx, fn, argv[0]);
  if (!pm) return;
  int len;
  const char *text = pfx_arg_text(ctx, fn, "text", argv[1], &len);
  int *ids = NULL, n = 0;
  pf_err e;
  if (text) {
    const pf_model *m = pfx_model_engine(pm);
    if (pf_tokenize_ex(m, text, (size_t)len, pf_tok_flags(m, o.add_special, o.parse_special), &ids, &n, &e))
      pfx_result_err(ctx, fn, &e);
    else {
      sqlite3_str *s = sqlite3_str_new(sqlite3_context_db_handle(ctx));
      sqlite3_str_appendchar(s, 1, '[');
      for (int i = 0; i < n; i++) sqlite3_str_appendf(s, i ? ",%d" : "%d", ids[i]);
      sqlite3_str_appendchar(s, 1, ']');
      int sl = sqlite3_str_length(s);
      char *out = sqlite3_str_finish(s);
      if (!out) sqlite3_result_error_nomem(ctx);
      else { sqlite3_result_text(ctx, out, sl, sqlite3_free); sqlite3_result_subtype(ctx, PFX_JSON_SUBTYPE); }
    }
  }
  free(ids);
  pfx_model_release(pm);
}

void pfx_fn_detokenize(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  (void)argc;
  const char *fn = "prefix_detokenize";
  pfx_model *pm = pfx_arg_model(ctx, fn, argv[0]);
  if (!pm) return;
  sqlite3 *db = sqlite3_context_db_handle(ctx);
  sqlite3_stmt *st = NULL;
  int *ids = NULL, n = 0, cap = 0;
  char *text = NULL;
  size_t tl;
  pf_err e;
  if (!pfx_arg_text(ctx, fn, "ids", argv[1], NULL)) goto done;
  long nul = pfx_json_nul_at(argv[1]);
  if (nul >= 0) {   /* what follows would be ignored */
    pfx_result_errorf(ctx, "%s: ids contain a NUL character (at byte %ld of %d)", fn, nul, sqlite3_value_bytes(argv[1]));
    goto done;
  }
  if (sqlite3_prepare_v2(db, "SELECT json_type(?1), type, atom FROM json_each(?1)", -1, &st, NULL)) {
    pfx_result_errorf(ctx, "%s: %s", fn, sqlite3_errmsg(db));
    goto done;
  }
  sqlite3_bind_value(st, 1, argv[1]);
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    const char *top = (const char *)sqlite3_column_text(st, 0), *t = (const char *)sqlite3_column_text(st, 1);
    if (!top || strcmp(top, "array")) {
      sqlite3_result_error(ctx, "prefix_detokenize: ids must be a JSON array of integers, like '[1,403,407]'", -1);
      goto done;
    }
    if (!t || strcmp(t, "integer")) {
      pfx_result_errorf(ctx, "%s: ids[%d] is %s, not an integer", fn, n, t ? t : "null");
      goto done;
    }
    sqlite3_int64 v = sqlite3_column_int64(st, 2);
    int nv = pf_model_hparams(pfx_model_engine(pm))->n_vocab;
    if (v < 0 || v >= nv) {
      pfx_result_errorf(ctx, "%s: ids[%d] = %lld is outside the vocabulary (0..%d)", fn, n, (long long)v, nv - 1);
      goto done;
    }
    if (n == cap) {
      cap = cap ? 2 * cap : 64;
      int *ni = realloc(ids, sizeof(int) * (size_t)cap);
      if (!ni) { sqlite3_result_error_nomem(ctx); goto done; }
      ids = ni;
    }
    ids[n++] = (int)v;
  }
  if (rc != SQLITE_DONE) {
    pfx_result_errorf(ctx, "%s: ids must be a JSON array of integers: %s", fn, sqlite3_errmsg(db));
    goto done;
  }
  if (n == 0) {   /* "[]" gives no rows; anything else non-array was caught above or is a scalar */
    sqlite3_finalize(st);
    st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT json_type(?1)", -1, &st, NULL) == SQLITE_OK) {
      sqlite3_bind_value(st, 1, argv[1]);
      if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0) &&
          strcmp((const char *)sqlite3_column_text(st, 0), "array")) {
        sqlite3_result_error(ctx, "prefix_detokenize: ids must be a JSON array of integers, like '[1,403,407]'", -1);
        goto done;
      }
    }
  }
  if (pf_detokenize(pfx_model_engine(pm), ids, n, 1, &text, &tl, &e)) pfx_result_err(ctx, fn, &e);
  else sqlite3_result_text64(ctx, text, tl, SQLITE_TRANSIENT, SQLITE_UTF8);
done:
  sqlite3_finalize(st);
  free(ids);
  free(text);
  pfx_model_release(pm);
}

/* ------------------------------------------------ prefix_models (eponymous) */

enum { COL_NAME, COL_PATH, COL_ARCH, COL_N_LAYER, COL_N_EMBD, COL_N_HEAD, COL_N_HEAD_KV, COL_N_FF, COL_N_VOCAB,
       COL_N_CTX, COL_N_PARAMS, COL_FILE_SIZE, COL_FINGERPRINT, COL_HAS_WEIGHTS };

typedef struct models_cursor {
  sqlite3_vtab_cursor base;
  pfx_model_row *rows;
  int n, i;
} models_cursor;

static int models_connect(sqlite3 *db, void *aux, int argc, const char *const *argv, sqlite3_vtab **pp, char **err) {
  (void)aux; (void)argc; (void)argv; (void)err;
  return pfx_vtab_connect(db,
      "CREATE TABLE x(name TEXT, path TEXT, arch TEXT, n_layer INT, n_embd INT, n_head INT, n_head_kv INT,"
      " n_ff INT, n_vocab INT, n_ctx INT, n_params INT, file_size INT, fingerprint TEXT, has_weights INT)", sizeof(sqlite3_vtab), pp);
}
static int models_open(sqlite3_vtab *v, sqlite3_vtab_cursor **pc) {
  (void)v;
  return pfx_cursor_open(sizeof(models_cursor), pc);
}
static int models_close(sqlite3_vtab_cursor *cur) {
  models_cursor *c = (models_cursor *)cur;
  pfx_registry_snapshot_free(c->rows, c->n);
  sqlite3_free(c);
  return SQLITE_OK;
}
static int models_filter(sqlite3_vtab_cursor *cur, int idx, const char *idxs, int argc, sqlite3_value **argv) {
  (void)idx; (void)idxs; (void)argc; (void)argv;
  models_cursor *c = (models_cursor *)cur;
  pfx_registry_snapshot_free(c->rows, c->n);
  c->rows = NULL;
  c->n = c->i = 0;
  return pfx_registry_snapshot(&c->rows, &c->n);
}
static int models_next(sqlite3_vtab_cursor *cur) { ((models_cursor *)cur)->i++; return SQLITE_OK; }
static int models_eof(sqlite3_vtab_cursor *cur) { models_cursor *c = (models_cursor *)cur; return c->i >= c->n; }
static int models_rowid(sqlite3_vtab_cursor *cur, sqlite3_int64 *r) { *r = ((models_cursor *)cur)->i + 1; return SQLITE_OK; }
static int models_column(sqlite3_vtab_cursor *cur, sqlite3_context *ctx, int col) {
  models_cursor *c = (models_cursor *)cur;
  const pfx_model_row *r = &c->rows[c->i];
  const pf_model *m = pfx_model_engine(r->pm);
  const pf_hparams *hp = pf_model_hparams(m);
  switch (col) {
    case COL_NAME: sqlite3_result_text(ctx, r->name, -1, SQLITE_TRANSIENT); break;
    case COL_PATH: sqlite3_result_text(ctx, r->path, -1, SQLITE_TRANSIENT); break;
    case COL_ARCH: sqlite3_result_text(ctx, pf_model_arch_name(m), -1, SQLITE_STATIC); break;
    case COL_N_LAYER: sqlite3_result_int(ctx, hp->n_layer); break;
    case COL_N_EMBD: sqlite3_result_int(ctx, hp->n_embd); break;
    case COL_N_HEAD: sqlite3_result_int(ctx, hp->n_head); break;
    case COL_N_HEAD_KV: sqlite3_result_int(ctx, hp->n_head_kv); break;
    case COL_N_FF: sqlite3_result_int(ctx, hp->n_ff); break;
    case COL_N_VOCAB: sqlite3_result_int(ctx, hp->n_vocab); break;
    case COL_N_CTX: sqlite3_result_int(ctx, hp->n_ctx); break;
    case COL_N_PARAMS: sqlite3_result_int64(ctx, (sqlite3_int64)pf_model_n_params(m)); break;
    case COL_FILE_SIZE: sqlite3_result_int64(ctx, (sqlite3_int64)pf_model_file_size(m)); break;
    case COL_FINGERPRINT: sqlite3_result_text(ctx, pf_model_fingerprint(m), -1, SQLITE_TRANSIENT); break;
    case COL_HAS_WEIGHTS: sqlite3_result_int(ctx, pf_model_has_weights(m)); break;
  }
  return SQLITE_OK;
}
static int models_best_index(sqlite3_vtab *v, sqlite3_index_info *info) {
  (void)v;
  info->estimatedCost = 10;
  info->estimatedRows = 10;
  return SQLITE_OK;
}

sqlite3_module pfx_models_module = {
    0, NULL /* eponymous only */, models_connect, models_best_index, pfx_vtab_disconnect, NULL, models_open,
    models_close, models_filter, models_next, models_eof, models_column, models_rowid,
    NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL};

/* ------------------------------------------------ prefix_serving (eponymous)
** Each loaded model's scheduler (engine/serve.c): every generation of every connection joins one batch.
**   SELECT model, requests, rows, queued_rows, waiting, tokens_per_s FROM prefix_serving; */

enum { SV_MODEL, SV_REQUESTS, SV_ROWS, SV_QUEUED, SV_WAITING, SV_PEAK, SV_STEPS, SV_TOKENS, SV_TPS, SV_SERVED,
       SV_BUDGET, SV_USED };

static int serving_connect(sqlite3 *db, void *aux, int argc, const char *const *argv, sqlite3_vtab **pp, char **err) {
  (void)aux; (void)argc; (void)argv; (void)err;
  return pfx_vtab_connect(db,
      "CREATE TABLE x(model TEXT, requests INT, rows INT, queued_rows INT, waiting INT, peak_rows INT, steps INT,"
      " tokens INT, tokens_per_s REAL, served INT, kv_budget_mb REAL, kv_used_mb REAL)", sizeof(sqlite3_vtab), pp);
}
static int serving_column(sqlite3_vtab_cursor *cur, sqlite3_context *ctx, int col) {
  models_cursor *c = (models_cursor *)cur;
  const pfx_model_row *r = &c->rows[c->i];
  pf_sched_info si;
  pf_sched_stats(pfx_model_engine(r->pm), &si);
  switch (col) {
    case SV_MODEL: sqlite3_result_text(ctx, r->name, -1, SQLITE_TRANSIENT); break;
    case SV_REQUESTS: sqlite3_result_int(ctx, si.requests); break;
    case SV_ROWS: sqlite3_result_int(ctx, si.rows); break;
    case SV_QUEUED: sqlite3_result_int(ctx, si.queued_rows); break;
    case SV_WAITING: sqlite3_result_int(ctx, si.waiting); break;
    case SV_PEAK: sqlite3_result_int(ctx, si.peak_rows); break;
    case SV_STEPS: sqlite3_result_int64(ctx, (sqlite3_int64)si.steps); break;
    case SV_TOKENS: sqlite3_result_int64(ctx, (sqlite3_int64)si.tokens); break;
    case SV_TPS:
      if (si.busy_s > 0) sqlite3_result_double(ctx, si.tokens / si.busy_s);
      else sqlite3_result_null(ctx);
      break;
    case SV_SERVED: sqlite3_result_int64(ctx, (sqlite3_int64)si.served); break;
    case SV_BUDGET: sqlite3_result_double(ctx, si.budget / 1048576.0); break;
    case SV_USED: sqlite3_result_double(ctx, si.used / 1048576.0); break;
  }
  return SQLITE_OK;
}

sqlite3_module pfx_serving_module = {
    0, NULL /* eponymous only */, serving_connect, models_best_index, pfx_vtab_disconnect, NULL, models_open,
    models_close, models_filter, models_next, models_eof, serving_column, models_rowid,
    NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
