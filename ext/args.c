/*
** args.c — what every SQL function and table of the extension shares: reading arguments (text; model names
** are read beside the registry, prefixes beside the prefix cache),
** reporting errors (an engine pf_err as an SQL error with SQLite's code), running a user's row query, the
** virtual-table plumbing of the table-valued functions, and the interrupt/progress-handler probe that long
** computations call between steps. No SQL function is defined here; ext/extension.c registers them.
*/
#include "ext.h"
SQLITE_EXTENSION_INIT1   /* the loadable extension's API pointer, written once by sqlite3_prefix_init (extension.c) */

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void pfx_result_errorf(sqlite3_context *ctx, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *m = sqlite3_vmprintf(fmt, ap);
  va_end(ap);
  if (!m) { sqlite3_result_error_nomem(ctx); return; }
  sqlite3_result_error(ctx, m, -1);
  sqlite3_free(m);
}

void pfx_result_err(sqlite3_context *ctx, const char *fn, const pf_err *e) {
  if (e->code == PF_NOMEM) { sqlite3_result_error_nomem(ctx); return; }
  char *m = sqlite3_mprintf("%s: %s", fn, e->msg);
  if (m) { sqlite3_result_error(ctx, m, -1); sqlite3_free(m); }
  else sqlite3_result_error_nomem(ctx);
  if (e->code == PF_TOOBIG) sqlite3_result_error_code(ctx, SQLITE_TOOBIG);
  else if (e->code == PF_INTERRUPT) sqlite3_result_error_code(ctx, SQLITE_INTERRUPT);
}

const char *pfx_arg_text(sqlite3_context *ctx, const char *fn, const char *what, sqlite3_value *v, int *len) {
  if (sqlite3_value_type(v) == SQLITE_NULL) {
    pfx_result_errorf(ctx, "%s: %s must not be NULL", fn, what);
    return NULL;
  }
  const char *t = (const char *)sqlite3_value_text(v);
  if (!t) { sqlite3_result_error_nomem(ctx); return NULL; }
  if (len) *len = sqlite3_value_bytes(v);
  return t;
}

const char *pfx_arg_cstr(sqlite3_context *ctx, const char *fn, const char *what, sqlite3_value *v) {
  int len;
  const char *t = pfx_arg_text(ctx, fn, what, v, &len);
  if (t && strlen(t) != (size_t)len) {
    pfx_result_errorf(ctx, "%s: %s contains a NUL byte (at byte %d of %d)", fn, what, (int)strlen(t), len);
    return NULL;
  }
  return t;
}

sqlite3_stmt *pfx_prepare_rows(sqlite3 *db, const char *fn, const char *what, const char *sql, int ncols,
                               const char *cols, char **errmsg, int *rc) {
  sqlite3_stmt *st = NULL, *next = NULL;
  const char *tail = NULL;
  *errmsg = NULL;
  *rc = sqlite3_prepare_v2(db, sql, -1, &st, &tail);
  if (*rc != SQLITE_OK) {
    *errmsg = sqlite3_mprintf("%s: %s: %s", fn, what, sqlite3_errmsg(db));
    if (*rc != SQLITE_NOMEM) *rc = SQLITE_ERROR;
    return NULL;
  }
  *rc = SQLITE_ERROR;
  if (!st) { *errmsg = sqlite3_mprintf("%s: %s is empty", fn, what); return NULL; }
  /* what follows must be nothing, white space or comments: prepare it to see */
  if (tail && *tail) {
    int r2 = sqlite3_prepare_v2(db, tail, -1, &next, NULL);
    if (r2 != SQLITE_OK || next) {
      sqlite3_finalize(next);
      sqlite3_finalize(st);
      *errmsg = sqlite3_mprintf("%s: %s must be a single statement; text follows the first one: '%.40s'", fn, what, tail);
      return NULL;
    }
  }
  if (!sqlite3_stmt_readonly(st)) {
    sqlite3_finalize(st);
    *errmsg = sqlite3_mprintf("%s: %s must only read (a SELECT or a read-only WITH); it would write to the database",
                              fn, what);
    return NULL;
  }
  if (sqlite3_column_count(st) != ncols) {
    *errmsg = sqlite3_mprintf("%s: %s must return %d columns (%s), it returns %d", fn, what, ncols, cols,
                              sqlite3_column_count(st));
    sqlite3_finalize(st);
    return NULL;
  }
  *rc = SQLITE_OK;
  return st;
}

int pfx_vtab_connect(sqlite3 *db, const char *schema, size_t size, sqlite3_vtab **pp) {
  int rc = sqlite3_declare_vtab(db, schema);
  if (rc) return rc;
  sqlite3_vtab *v = sqlite3_malloc64(size);
  if (!v) return SQLITE_NOMEM;
  memset(v, 0, size);
  sqlite3_vtab_config(db, SQLITE_VTAB_DIRECTONLY);
  *pp = v;
  return SQLITE_OK;
}

int pfx_vtab_disconnect(sqlite3_vtab *v) {
  sqlite3_free(v);
  return SQLITE_OK;
}

/* Table-valued functions: the hidden columns first_hidden .. first_hidden+n_hidden-1 are the arguments. Each
** one given (an equality constraint) becomes argv[k] in column order and sets bit k of idxNum. */
int pfx_vtab_best_index_args(sqlite3_index_info *info, int first_hidden, int n_hidden, double rows) {
  int pos[8] = {-1, -1, -1, -1, -1, -1, -1, -1};
  for (int i = 0; i < info->nConstraint; i++) {
    const struct sqlite3_index_constraint *ct = &info->aConstraint[i];
    if (ct->iColumn < first_hidden || ct->iColumn >= first_hidden + n_hidden || ct->op != SQLITE_INDEX_CONSTRAINT_EQ) continue;
    if (!ct->usable) return SQLITE_CONSTRAINT;
    pos[ct->iColumn - first_hidden] = i;
  }
  int n = 0, idx = 0;
  for (int k = 0; k < n_hidden && k < 8; k++)
    if (pos[k] >= 0) {
      info->aConstraintUsage[pos[k]].argvIndex = ++n;
      info->aConstraintUsage[pos[k]].omit = 1;
      idx |= 1 << k;
    }
  info->idxNum = idx;
  info->estimatedCost = 1e6;
  info->estimatedRows = (sqlite3_int64)rows;
  return SQLITE_OK;
}

int pfx_vtab_fail(sqlite3_vtab_cursor *cur, char *msg) {
  sqlite3_free(cur->pVtab->zErrMsg);
  cur->pVtab->zErrMsg = msg;
  return msg ? SQLITE_ERROR : SQLITE_NOMEM;
}

int pfx_cursor_open(size_t size, sqlite3_vtab_cursor **pc) {
  sqlite3_vtab_cursor *c = sqlite3_malloc64(size);
  if (!c) return SQLITE_NOMEM;
  memset(c, 0, size);
  *pc = c;
  return SQLITE_OK;
}

int pfx_cancel_init(pfx_cancel *c, sqlite3 *db) {
  c->db = db;
  c->probe = c->probe_long = NULL;
  c->last_long = pf_clock();
  int rc = sqlite3_prepare_v2(db, "SELECT 1", -1, &c->probe, NULL);
  if (rc == SQLITE_OK)
    rc = sqlite3_prepare_v2(db, "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100) "
                                "SELECT count(*) FROM c", -1, &c->probe_long, NULL);
  return rc;
}

static int probe_step(sqlite3_stmt *st) {
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  return rc == SQLITE_INTERRUPT;
}

int pfx_cancel_check(void *arg) {
  pfx_cancel *c = arg;
  if (!c || !c->probe) return 0;
  if (probe_step(c->probe)) return 1;
  double t = pf_clock();
  if (c->probe_long && t - c->last_long >= 0.01) {
    c->last_long = t;
    return probe_step(c->probe_long);
  }
  return 0;
}

void pfx_cancel_done(pfx_cancel *c) {
  sqlite3_finalize(c->probe);
  sqlite3_finalize(c->probe_long);
  c->probe = c->probe_long = NULL;
}

