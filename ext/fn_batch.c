/*
** fn_batch.c — prefix_generate_batch: many customers' prompts decoded together.
**
**   SELECT id, text, n_tokens, finish_reason
**   FROM prefix_generate_batch('m',
**          'SELECT r.id, p.prefix, r.prompt FROM requests r JOIN live_prefixes p USING (customer)',
**          '{"max_tokens": 64, "batch_size": 16}');
**
** The query returns (id, prefix BLOB or NULL, prompt). All rows are decoded
** together, batch_size at a time, in batched forward passes: each sequence
** attends only to its own prefix and its own tokens. With greedy decoding each
** row's text equals what prefix_generate gives for that row alone. Options:
** those of prefix_generate, plus batch_size (16). Rows come back in the
** query's order. The query runs on this connection: DIRECTONLY.
*/
#include "ext.h"
SQLITE_EXTENSION_INIT3

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../engine/train.h"

enum { B_ID, B_TEXT, B_NTOK, B_FINISH, B_PREFIX_ID, B_MODEL, B_QUERY, B_OPTIONS };

typedef struct batch_vtab {
  sqlite3_vtab base;
  sqlite3 *db;   /* the connection: the query runs on it */
} batch_vtab;

typedef struct batch_cursor {
  sqlite3_vtab_cursor base;
  sqlite3_value **ids;
  char (*pid)[17];   /* each row's prefix_id ("" when its prefix was NULL) */
  pf_batch_item *items;
  int n, i;
} batch_cursor;

static int b_connect(sqlite3 *db, void *aux, int argc, const char *const *argv, sqlite3_vtab **pp, char **err) {
  (void)aux; (void)argc; (void)argv; (void)err;
  int rc = pfx_vtab_connect(db, "CREATE TABLE x(id, text TEXT, n_tokens INT, finish_reason TEXT, prefix_id TEXT,"
                                  " model HIDDEN, query HIDDEN, options HIDDEN)", sizeof(batch_vtab), pp);
  if (rc == SQLITE_OK) ((batch_vtab *)*pp)->db = db;
  return rc;
}

static void b_clear(batch_cursor *c) {
  for (int i = 0; i < c->n; i++) {
    sqlite3_value_free(c->ids[i]);
    pf_gen_result_clear(&c->items[i].res);
    free((void *)c->items[i].prompt);
  }
  sqlite3_free(c->ids);
  sqlite3_free(c->pid);
  sqlite3_free(c->items);
  c->pid = NULL;
  c->ids = NULL;
  c->items = NULL;
  c->n = c->i = 0;
}

static int b_open(sqlite3_vtab *v, sqlite3_vtab_cursor **pc) {
  (void)v;
  return pfx_cursor_open(sizeof(batch_cursor), pc);
}
static int b_close(sqlite3_vtab_cursor *cur) {
  b_clear((batch_cursor *)cur);
  sqlite3_free(cur);
  return SQLITE_OK;
}

/* idxNum bits: 1 model, 2 query, 4 options; argv in that order */
static int b_best_index(sqlite3_vtab *v, sqlite3_index_info *info) {
  (void)v;
  return pfx_vtab_best_index_args(info, B_MODEL, 3, 100);
}

static int b_filter(sqlite3_vtab_cursor *cur, int idx, const char *idxs, int argc, sqlite3_value **argv) {
  (void)idxs; (void)argc;
  const char *fn = "prefix_generate_batch";
  batch_cursor *c = (batch_cursor *)cur;
  b_clear(c);
  if ((idx & 3) != 3) return pfx_vtab_fail(cur, sqlite3_mprintf("%s: give a model and a query: prefix_generate_batch(model, query [, options])", fn));
  sqlite3 *db = ((batch_vtab *)cur->pVtab)->db;
  sqlite3_value *vm = argv[0], *vq = argv[1], *vo = (idx & 4) ? argv[2] : NULL;
  const char *model = (const char *)sqlite3_value_text(vm), *query = (const char *)sqlite3_value_text(vq);
  if (!model || !query) return pfx_vtab_fail(cur, sqlite3_mprintf("%s: model and query must not be NULL", fn));
  if (strlen(model) != (size_t)sqlite3_value_bytes(vm) || strlen(query) != (size_t)sqlite3_value_bytes(vq))
    return pfx_vtab_fail(cur, sqlite3_mprintf("%s: %s contains a NUL byte", fn, strlen(model) != (size_t)sqlite3_value_bytes(vm) ? "model name" : "query"));
  char *e = NULL, **owned = NULL;
  int n_owned = 0, rc = SQLITE_OK, cap = 0;
  pfx_model *pm = pfx_registry_get(model, &e);
  sqlite3_stmt *st = NULL;
  pfx_prefix_ref **refs = NULL;
  pfx_cancel cancel = {0};
  if (!pm) { char *m = sqlite3_mprintf("%s: %s", fn, e ? e : ""); sqlite3_free(e); return pfx_vtab_fail(cur, m); }
  pfx_batch_opts o;
  if ((rc = pfx_parse_batch_options(db, fn, vo, &o, &owned, &n_owned, &e))) { rc = pfx_vtab_fail(cur, e); e = NULL; goto done; }
  int prc;
  if (!(st = pfx_prepare_rows(db, fn, "query", query, 3, "id, prefix, prompt", &e, &prc))) {
    rc = pfx_vtab_fail(cur, e);
    e = NULL;
    goto done;
  }
  int qrc;
  while ((qrc = sqlite3_step(st)) == SQLITE_ROW) {
    if (c->n == cap) {
      cap = cap ? cap * 2 : 32;
      sqlite3_value **ni = sqlite3_realloc64(c->ids, sizeof *ni * (sqlite3_uint64)cap);
      pf_batch_item *nt = ni ? sqlite3_realloc64(c->items, sizeof *nt * (sqlite3_uint64)cap) : NULL;
      pfx_prefix_ref **nr = nt ? sqlite3_realloc64(refs, sizeof *nr * (sqlite3_uint64)cap) : NULL;
      char (*np)[17] = nr ? sqlite3_realloc64(c->pid, sizeof *np * (sqlite3_uint64)cap) : NULL;
      if (ni) c->ids = ni;
      if (nt) c->items = nt;
      if (nr) refs = nr;
      if (np) c->pid = np;
      if (!ni || !nt || !nr || !np) { rc = SQLITE_NOMEM; goto done; }
    }
    int i = c->n;
    memset(&c->items[i], 0, sizeof c->items[i]);
    c->pid[i][0] = 0;
    refs[i] = NULL;
    c->ids[i] = sqlite3_value_dup(sqlite3_column_value(st, 0));
    c->n++;
    const char *idtxt = (const char *)sqlite3_column_text(st, 0);
    char idbuf[64];
    snprintf(idbuf, sizeof idbuf, "%.40s", idtxt ? idtxt : "NULL");
    if (sqlite3_column_type(st, 2) == SQLITE_NULL) {
      rc = pfx_vtab_fail(cur, sqlite3_mprintf("%s: row with id %s: prompt is NULL", fn, idbuf));
      goto done;
    }
    const char *pr = (const char *)sqlite3_column_text(st, 2);
    int pl = sqlite3_column_bytes(st, 2);
    char *copy = malloc((size_t)pl + 1);
    if (!copy) { rc = SQLITE_NOMEM; goto done; }
    memcpy(copy, pr, (size_t)pl + 1);
    c->items[i].prompt = copy;
    c->items[i].prompt_len = (size_t)pl;
    int pt = sqlite3_column_type(st, 1);
    if (pt == SQLITE_NULL && o.require_prefix) {   /* a mistyped join: the plain model's text would be a wrong answer */
      rc = pfx_vtab_fail(cur, sqlite3_mprintf("%s: row with id %s: prefix is NULL, and require_prefix is set", fn, idbuf));
      goto done;
    }
    if (pt != SQLITE_NULL) {
      pf_err pe;
      if (pt != SQLITE_BLOB) {
        rc = pfx_vtab_fail(cur, sqlite3_mprintf("%s: row with id %s: prefix must be a BLOB from prefix_train (or NULL)", fn, idbuf));
        goto done;
      }
      if (pfx_prefix_decode_cached(sqlite3_column_blob(st, 1), (size_t)sqlite3_column_bytes(st, 1), &refs[i], &pe)) {
        rc = pfx_vtab_fail(cur, sqlite3_mprintf("%s: row with id %s: %s", fn, idbuf, pe.msg));
        goto done;
      }
      char *bad = pfx_check_prefix(pfx_prefix_get(refs[i]), pm, model);
      if (bad) { rc = pfx_vtab_fail(cur, sqlite3_mprintf("%s: row with id %s: %s", fn, idbuf, bad)); sqlite3_free(bad); goto done; }
      pf_item_set_prefix(&c->items[i], pfx_prefix_get(refs[i]));
      memcpy(c->pid[i], pfx_prefix_get(refs[i])->id, sizeof c->pid[i]);
    }
  }
  if (qrc != SQLITE_DONE) { rc = pfx_vtab_fail(cur, sqlite3_mprintf("%s: query: %s", fn, sqlite3_errmsg(db))); goto done; }
  sqlite3_finalize(st);
  st = NULL;
  pfx_cancel_init(&cancel, db);
  pf_err ge;
  int bad_item = -1;
  if (pf_generate_batch(pfx_model_engine(pm), c->items, c->n, o.batch_size, &o.p, pfx_cancel_check, &cancel, &bad_item,
                        &ge)) {
    if (ge.code == PF_NOMEM) rc = SQLITE_NOMEM;
    else if (bad_item >= 0) {
      const char *idtxt = (const char *)sqlite3_value_text(c->ids[bad_item]);
      rc = pfx_vtab_fail(cur, sqlite3_mprintf("%s: row with id %.40s: %s", fn, idtxt ? idtxt : "NULL", ge.msg));
    } else rc = pfx_vtab_fail(cur, sqlite3_mprintf("%s: %s", fn, ge.msg));
    if (ge.code == PF_INTERRUPT) rc = SQLITE_INTERRUPT;
    goto done;
  }
done:
  pfx_cancel_done(&cancel);
  sqlite3_finalize(st);
  if (refs) for (int i = 0; i < c->n; i++) pfx_prefix_release(refs[i]);
  sqlite3_free(refs);
  pfx_opts_free(owned, n_owned);
  sqlite3_free(e);
  pfx_model_release(pm);
  if (rc) b_clear(c);
  return rc;
}

static int b_next(sqlite3_vtab_cursor *cur) { ((batch_cursor *)cur)->i++; return SQLITE_OK; }
static int b_eof(sqlite3_vtab_cursor *cur) { batch_cursor *c = (batch_cursor *)cur; return c->i >= c->n; }
static int b_rowid(sqlite3_vtab_cursor *cur, sqlite3_int64 *r) { *r = ((batch_cursor *)cur)->i + 1; return SQLITE_OK; }
static int b_column(sqlite3_vtab_cursor *cur, sqlite3_context *ctx, int col) {
  batch_cursor *c = (batch_cursor *)cur;
  const pf_gen_result *r = &c->items[c->i].res;
  switch (col) {
    case B_ID: sqlite3_result_value(ctx, c->ids[c->i]); break;
    case B_TEXT: sqlite3_result_text64(ctx, r->text, r->len, SQLITE_TRANSIENT, SQLITE_UTF8); break;
    case B_NTOK: sqlite3_result_int(ctx, r->n_tokens); break;
    case B_FINISH: sqlite3_result_text(ctx, pf_finish_name(r->finish), -1, SQLITE_STATIC); break;
    case B_PREFIX_ID:
      if (c->pid[c->i][0]) sqlite3_result_text(ctx, c->pid[c->i], -1, SQLITE_TRANSIENT);
      else sqlite3_result_null(ctx);
      break;
    default: sqlite3_result_null(ctx);
  }
  return SQLITE_OK;
}

sqlite3_module pfx_batch_module = {
    0, NULL, b_connect, b_best_index, pfx_vtab_disconnect, NULL, b_open, b_close, b_filter, b_next, b_eof, b_column, b_rowid,
    NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
