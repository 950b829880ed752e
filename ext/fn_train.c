/*
** pfx_fn_train.c — training prefixes from table rows, scoring, and inspecting BLOBs.
**
**   -- one prefix from a query returning (prompt, completion)
**   SELECT prefix_train('m', 'SELECT prompt, completion FROM pairs WHERE customer = 7',
**                       '{"epochs": 20, "val_fraction": 0.1}');
**   -- one prefix per customer in a single statement
**   SELECT customer, prefix_train_agg('m', prompt, completion) FROM pairs GROUP BY customer;
**   -- evaluate on held-out rows
**   SELECT prefix_score('m', blob, prompt, completion) FROM heldout;
**   SELECT prefix_info(blob);
**
** prefix_train and prefix_train_agg run statements and long computations:
** SQLITE_DIRECTONLY. They write nothing: the statement that stores the BLOB
** does, so an error or an interrupt leaves the database as it was. A plain
** SELECT prefix_train(...) holds no write lock while it trains.
*/
#include "ext.h"
SQLITE_EXTENSION_INIT3

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../engine/train.h"

/* ------------------------------------------------------------- options: options.c */


/* ---------------------------------------------------------------- rows */

typedef struct rows {
  pf_example *ex;
  int n, cap;
} rows;

static void rows_free(rows *r) {
  for (int i = 0; i < r->n; i++) {
    sqlite3_free((void *)r->ex[i].prompt);
    sqlite3_free((void *)r->ex[i].completion);
  }
  sqlite3_free(r->ex);
  memset(r, 0, sizeof *r);
}

/* Add a pair (copied). Returns SQLITE_OK, SQLITE_NOMEM, or SQLITE_ERROR with *errmsg. */
static int rows_add(rows *r, const char *fn, sqlite3_value *prompt, sqlite3_value *completion, char **errmsg) {
  if (sqlite3_value_type(prompt) == SQLITE_NULL || sqlite3_value_type(completion) == SQLITE_NULL) {
    *errmsg = sqlite3_mprintf("%s: row %d: %s is NULL", fn, r->n + 1,
                              sqlite3_value_type(prompt) == SQLITE_NULL ? "prompt" : "completion");
    return SQLITE_ERROR;
  }
  if (r->n == r->cap) {
    int nc = r->cap ? r->cap * 2 : 64;
    pf_example *ne = sqlite3_realloc64(r->ex, sizeof *ne * (sqlite3_uint64)nc);
    if (!ne) return SQLITE_NOMEM;
    r->ex = ne;
    r->cap = nc;
  }
  const char *p = (const char *)sqlite3_value_text(prompt);
  int pl = sqlite3_value_bytes(prompt);
  const char *c = (const char *)sqlite3_value_text(completion);
  int cl = sqlite3_value_bytes(completion);
  char *pc = p ? sqlite3_malloc(pl + 1) : NULL, *cc = c ? sqlite3_malloc(cl + 1) : NULL;
  if (!pc || !cc) { sqlite3_free(pc); sqlite3_free(cc); return SQLITE_NOMEM; }
  memcpy(pc, p, (size_t)pl + 1);
  memcpy(cc, c, (size_t)cl + 1);
  pf_example *e = &r->ex[r->n++];
  e->prompt = pc; e->prompt_len = (size_t)pl;
  e->completion = cc; e->completion_len = (size_t)cl;
  return SQLITE_OK;
}

/* Run a query returning (prompt, completion) rows. */
static int rows_from_query(sqlite3 *db, const char *fn, const char *what, const char *sql, rows *r, char **errmsg) {
  int rc;
  sqlite3_stmt *st = pfx_prepare_rows(db, fn, what, sql, 2, "prompt, completion", errmsg, &rc);
  if (!st) return rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    rc = rows_add(r, fn, sqlite3_column_value(st, 0), sqlite3_column_value(st, 1), errmsg);
    if (rc) break;
  }
  if (rc == SQLITE_DONE) rc = SQLITE_OK;
  else if (rc != SQLITE_OK && rc != SQLITE_NOMEM && !*errmsg)
    *errmsg = sqlite3_mprintf("%s: %s: %s", fn, what, sqlite3_errmsg(db));
  sqlite3_finalize(st);
  return rc;
}

/* --------------------------------------------------------- the training */

/* Train on rows and set the result (BLOB or error) on ctx. */
static void train_and_result(sqlite3_context *ctx, const char *fn, pfx_model *pm, const char *model_name, rows *tr,
                             rows *va, pfx_train_opts *o) {
  sqlite3 *db = sqlite3_context_db_handle(ctx);
  pfx_cancel cancel = {0};
  pfx_cancel_init(&cancel, db);
  sqlite3_int64 job = pfx_job_start(model_name);
  uint8_t *blob = NULL;
  size_t len = 0;
  pf_err e;
  int rc = pf_train(pfx_model_engine(pm), tr->ex, tr->n, va ? va->ex : NULL, va ? va->n : 0, &o->p, pfx_job_progress,
                    &job, pfx_cancel_check, &cancel, &blob, &len, &e);
  pfx_cancel_done(&cancel);
  if (rc) {
    pfx_job_finish(job, rc == PF_INTERRUPT ? "interrupted" : "failed", e.msg);
    pfx_result_err(ctx, fn, &e);
    return;
  }
  pfx_job_finish(job, "done", NULL);
  sqlite3_result_blob64(ctx, blob, len, free);
}

void pfx_fn_train(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  const char *fn = "prefix_train";
  sqlite3 *db = sqlite3_context_db_handle(ctx);
  pfx_model *pm = pfx_arg_model(ctx, fn, argv[0]);
  if (!pm) return;
  rows tr = {0}, va = {0};
  char **owned = NULL, *emsg = NULL;
  int n_owned = 0, rc;
  pfx_train_opts o;
  const char *query = pfx_arg_cstr(ctx, fn, "query", argv[1]);
  if (!query) goto done;
  rc = pfx_parse_train_options(db, fn, argc > 2 ? argv[2] : NULL, &o, &owned, &n_owned, &emsg);
  if (!rc) rc = rows_from_query(db, fn, "query", query, &tr, &emsg);
  if (!rc && o.val_query) rc = rows_from_query(db, fn, "val_query", o.val_query, &va, &emsg);
  if (rc) {
    if (emsg) sqlite3_result_error(ctx, emsg, -1);
    else sqlite3_result_error_nomem(ctx);
    goto done;
  }
  train_and_result(ctx, fn, pm, (const char *)sqlite3_value_text(argv[0]), &tr, o.val_query ? &va : NULL, &o);
done:
  rows_free(&tr);
  rows_free(&va);
  pfx_opts_free(owned, n_owned);
  sqlite3_free(emsg);
  pfx_model_release(pm);
}

/* prefix_train_agg: rows arrive one by one; training happens in xFinal. */
typedef struct agg {
  rows r;
  char *model;
  char *options;
  int failed;
} agg;

void pfx_train_agg_step(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  const char *fn = "prefix_train_agg";
  agg *a = sqlite3_aggregate_context(ctx, sizeof *a);
  if (!a) { sqlite3_result_error_nomem(ctx); return; }
  if (a->failed) return;
  if (!a->model) {
    if (sqlite3_value_type(argv[0]) == SQLITE_NULL) {
      sqlite3_result_error(ctx, "prefix_train_agg: model name must not be NULL", -1);
      a->failed = 1;
      return;
    }
    a->model = sqlite3_mprintf("%s", (const char *)sqlite3_value_text(argv[0]));
    if (argc > 3 && sqlite3_value_type(argv[3]) != SQLITE_NULL)
      a->options = sqlite3_mprintf("%s", (const char *)sqlite3_value_text(argv[3]));
    if (!a->model || (argc > 3 && sqlite3_value_type(argv[3]) != SQLITE_NULL && !a->options)) {
      sqlite3_result_error_nomem(ctx);
      a->failed = 1;
      return;
    }
  }
  char *emsg = NULL;
  int rc = rows_add(&a->r, fn, argv[1], argv[2], &emsg);
  if (rc) {
    a->failed = 1;
    if (emsg) sqlite3_result_error(ctx, emsg, -1);
    else sqlite3_result_error_nomem(ctx);
    sqlite3_free(emsg);
  }
}

void pfx_train_agg_final(sqlite3_context *ctx) {
  const char *fn = "prefix_train_agg";
  agg *a = sqlite3_aggregate_context(ctx, 0);
  sqlite3 *db = sqlite3_context_db_handle(ctx);
  char **owned = NULL, *emsg = NULL;
  int n_owned = 0;
  sqlite3_value *optv = NULL;
  pfx_model *pm = NULL;
  rows va = {0};
  pfx_train_opts o;
  if (!a || !a->model) {
    sqlite3_result_error(ctx, "prefix_train_agg: no training rows (the group is empty)", -1);
    return;
  }
  if (a->failed) goto done;
  char *e2 = NULL;
  pm = pfx_registry_get(a->model, &e2);
  if (!pm) {
    pfx_result_errorf(ctx, "%s: %s", fn, e2 ? e2 : "unknown model");
    sqlite3_free(e2);
    goto done;
  }
  if (a->options) {
    sqlite3_stmt *st = NULL;   /* turn the saved text back into a value for the parser */
    if (sqlite3_prepare_v2(db, "SELECT ?1", -1, &st, NULL) == SQLITE_OK) {
      sqlite3_bind_text(st, 1, a->options, -1, SQLITE_STATIC);
      if (sqlite3_step(st) == SQLITE_ROW) optv = sqlite3_value_dup(sqlite3_column_value(st, 0));
    }
    sqlite3_finalize(st);
    if (!optv) { sqlite3_result_error_nomem(ctx); goto done; }
  }
  int rc = pfx_parse_train_options(db, fn, optv, &o, &owned, &n_owned, &emsg);
  if (!rc && o.val_query) rc = rows_from_query(db, fn, "val_query", o.val_query, &va, &emsg);
  if (rc) {
    if (emsg) sqlite3_result_error(ctx, emsg, -1);
    else sqlite3_result_error_nomem(ctx);
    goto done;
  }
  train_and_result(ctx, fn, pm, a->model, &a->r, o.val_query ? &va : NULL, &o);
done:
  sqlite3_value_free(optv);
  rows_free(&va);
  pfx_opts_free(owned, n_owned);
  sqlite3_free(emsg);
  pfx_model_release(pm);
  rows_free(&a->r);
  sqlite3_free(a->model);
  sqlite3_free(a->options);
}


/* a JSON string of a token's text (valid UTF-8; a part of a character shows as U+FFFD); -1 out of memory */
/* a real number in JSON: JSON has no infinity, so as SQLite's own JSON functions write it (9.0e+999, which
** readers take as infinity), null for NaN, and exponent notation from 1e15 */
static void json_real(sqlite3_str *s, const char *fmt, double v) {
  if (isnan(v)) sqlite3_str_appendall(s, "null");
  else if (isinf(v)) sqlite3_str_appendall(s, v > 0 ? "9.0e+999" : "-9.0e+999");
  else if (fabs(v) >= 1e15) sqlite3_str_appendf(s, "%.6e", v);   /* not 300 digits of %f */
  else sqlite3_str_appendf(s, fmt, v);
}

static int json_piece(sqlite3_str *s, const pf_model *m, int id) {
  char raw[256];
  int k = pf_token_bytes(m, id, raw, sizeof raw);
  size_t n;
  char *t = pf_utf8_clean_text(raw, k > 0 ? (size_t)k : 0, &n);
  if (!t) return -1;
  sqlite3_str_appendchar(s, 1, '"');
  for (size_t i = 0; t && i < n; i++) {
    unsigned char c = (unsigned char)t[i];
    if (c == '"' || c == '\\') sqlite3_str_appendf(s, "\\%c", c);
    else if (c < 0x20) sqlite3_str_appendf(s, "\\u%04x", c);
    else sqlite3_str_appendchar(s, 1, (char)c);
  }
  sqlite3_str_appendchar(s, 1, '"');
  free(t);
  return 0;
}

void pfx_fn_score(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  const char *fn = "prefix_score";
  pfx_model *pm = pfx_arg_model(ctx, fn, argv[0]);
  if (!pm) return;
  pfx_prefix_ref *ref = NULL;
  int pl, cl, *ids = NULL;
  double *lp = NULL;
  const char *prompt, *completion;
  if (pfx_arg_prefix(ctx, fn, argv[1], pm, (const char *)sqlite3_value_text(argv[0]), &ref)) goto done;
  const pf_prefix *pre = ref ? pfx_prefix_get(ref) : NULL;
  if (!(prompt = pfx_arg_text(ctx, fn, "prompt", argv[2], &pl))) goto done;
  if (!(completion = pfx_arg_text(ctx, fn, "completion", argv[3], &cl))) goto done;
  double nll;
  int n, rc;
  pf_err e;
  pfx_score_opts so = {1, 0};
  char **owned = NULL, *emsg = NULL;
  int n_owned = 0;
  if (pfx_parse_score_options(sqlite3_context_db_handle(ctx), fn, argc > 4 ? argv[4] : NULL, &so, &owned, &n_owned,
                              &emsg)) {
    if (emsg) sqlite3_result_error(ctx, emsg, -1);
    else sqlite3_result_error_nomem(ctx);
    sqlite3_free(emsg);
    pfx_opts_free(owned, n_owned);
    goto done;
  }
  pfx_opts_free(owned, n_owned);
  const pf_model *m = pfx_model_engine(pm);
  pfx_cancel cancel;
  pfx_cancel_init(&cancel, sqlite3_context_db_handle(ctx));
  rc = pf_score_tokens(m, pre, prompt, (size_t)pl, completion, (size_t)cl, so.add_eos, so.per_token ? &ids : NULL,
                       so.per_token ? &lp : NULL, &n, &nll, pfx_cancel_check, &cancel, &e);
  pfx_cancel_done(&cancel);
  if (rc) {
    pfx_result_err(ctx, fn, &e);
    goto done;
  }
  sqlite3_str *s = sqlite3_str_new(sqlite3_context_db_handle(ctx));
  sqlite3_str_appendf(s, "{\"nll\":%.6f,\"tokens\":%d,\"ppl\":", nll, n);
  json_real(s, "%.4f", exp(nll));
  int oom = 0;
  if (so.per_token) {
    sqlite3_str_appendf(s, ",\"per_token\":[");
    for (int i = 0; i < n && !oom; i++) {
      sqlite3_str_appendf(s, "%s{\"id\":%d,\"piece\":", i ? "," : "", ids[i]);
      oom = json_piece(s, m, ids[i]);
      sqlite3_str_appendf(s, ",\"logprob\":");
      json_real(s, "%.6f", lp[i]);
      sqlite3_str_appendchar(s, 1, '}');
    }
    sqlite3_str_appendchar(s, 1, ']');
  }
  sqlite3_str_appendchar(s, 1, '}');
  int len = sqlite3_str_length(s);
  char *json = sqlite3_str_finish(s);
  if (oom) { sqlite3_free(json); json = NULL; }
  if (json) { sqlite3_result_text(ctx, json, len, sqlite3_free); sqlite3_result_subtype(ctx, PFX_JSON_SUBTYPE); }
  else sqlite3_result_error_nomem(ctx);
done:
  free(ids);
  free(lp);
  pfx_prefix_release(ref);
  pfx_model_release(pm);
}

void pfx_fn_info(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  (void)argc;
  if (sqlite3_value_type(argv[0]) != SQLITE_BLOB) {
    sqlite3_result_error(ctx, "prefix_info: the argument must be a prefix BLOB", -1);
    return;
  }
  pf_prefix p;
  pf_err e;
  size_t n = (size_t)sqlite3_value_bytes(argv[0]);
  if (pf_prefix_decode(sqlite3_value_blob(argv[0]), n, &p, &e)) { pfx_result_err(ctx, "prefix_info", &e); return; }
  char *json = pf_prefix_info_json(&p, n);
  pf_prefix_clear(&p);
  if (!json) { sqlite3_result_error_nomem(ctx); return; }
  sqlite3_result_text(ctx, json, -1, free);
  sqlite3_result_subtype(ctx, PFX_JSON_SUBTYPE);
}

/* prefix_ensemble(prefix): the prefixes of the group packed into one ensemble BLOB */
typedef struct ens_ctx { uint8_t **b; size_t *n; int count, cap, failed; } ens_ctx;

void pfx_ensemble_step(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  (void)argc;
  ens_ctx *e = sqlite3_aggregate_context(ctx, sizeof *e);
  if (!e) { sqlite3_result_error_nomem(ctx); return; }
  if (e->failed) return;
  if (sqlite3_value_type(argv[0]) != SQLITE_BLOB) {
    pfx_result_errorf(ctx, "prefix_ensemble: row %d: prefix must be a BLOB from prefix_train, got %s", e->count + 1,
                      sqlite3_value_type(argv[0]) == SQLITE_NULL ? "NULL" : "a non-BLOB value");
    e->failed = 1;
    return;
  }
  if (e->count == PF_ENSEMBLE_MAX) {
    pfx_result_errorf(ctx, "prefix_ensemble: more than %d prefixes", PF_ENSEMBLE_MAX);
    e->failed = 1;
    return;
  }
  if (e->count == e->cap) {
    int nc = e->cap ? e->cap * 2 : 4;
    uint8_t **nb = sqlite3_realloc64(e->b, sizeof *nb * (sqlite3_uint64)nc);
    if (nb) e->b = nb;
    size_t *nn = nb ? sqlite3_realloc64(e->n, sizeof *nn * (sqlite3_uint64)nc) : NULL;
    if (nn) e->n = nn;
    if (!nb || !nn) { sqlite3_result_error_nomem(ctx); e->failed = 1; return; }
    e->cap = nc;
  }
  size_t n = (size_t)sqlite3_value_bytes(argv[0]);
  uint8_t *c = malloc(n ? n : 1);
  if (!c) { sqlite3_result_error_nomem(ctx); e->failed = 1; return; }
  if (n) memcpy(c, sqlite3_value_blob(argv[0]), n);
  e->b[e->count] = c;
  e->n[e->count++] = n;
}

void pfx_ensemble_final(sqlite3_context *ctx) {
  ens_ctx *e = sqlite3_aggregate_context(ctx, 0);
  if (!e) { sqlite3_result_null(ctx); return; }
  if (!e->failed && e->count > 0) {
    uint8_t *out;
    size_t len;
    pf_err er;
    if (pf_ensemble_encode((const uint8_t *const *)e->b, e->n, e->count, &out, &len, &er)) pfx_result_err(ctx, "prefix_ensemble", &er);
    else sqlite3_result_blob64(ctx, out, len, free);
  } else if (!e->failed) sqlite3_result_null(ctx);
  for (int i = 0; i < e->count; i++) free(e->b[i]);
  sqlite3_free(e->b);
  sqlite3_free(e->n);
}
