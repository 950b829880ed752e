/*
** fn_metrics.c — evaluation metrics as SQL aggregates (engine/metrics.c does the counting).
**
**   SELECT prefix_bleu(output, refs), prefix_chrf(output, refs), prefix_rouge_l(output, refs) FROM results;
**
** hypothesis: the generated text; references: a JSON array of strings (several references per row, as E2E
** has) or one reference as plain text. prefix_bleu is corpus BLEU-4 (mteval-13a tokenization, no smoothing),
** prefix_chrf corpus chrF2, prefix_rouge_l the mean of the rows' ROUGE-L; all 0..100. NULL hypotheses or
** references are errors that name the row. No rows: NULL.
*/
#include "ext.h"
SQLITE_EXTENSION_INIT3

#include <stdlib.h>
#include <string.h>
#include "../engine/metrics.h"

static const char *const m_name[] = {"prefix_bleu", "prefix_chrf", "prefix_rouge_l"};

typedef struct metric_ctx {
  sqlite3_stmt *each;   /* json_each over the references */
  pfx_cancel cancel;    /* interrupts and progress handlers, prepared at the first row */
  int cancel_ready;
  pf_bleu_stats bleu;
  pf_chrf_stats chrf;
  double rouge_sum;
  long rows;
  int failed;
} metric_ctx;

/* The references of a row: a JSON array of strings (copied) or one plain text (pointing into the value).
** Returns SQLITE_OK, or an error with *emsg. */
typedef struct refs { const char **s; size_t *n; int count, cap, owned; } refs;

static void refs_free(refs *r) {
  if (r->owned) for (int i = 0; i < r->count; i++) sqlite3_free((void *)r->s[i]);
  sqlite3_free(r->s);
  sqlite3_free(r->n);
}

static int refs_push(refs *r, const char *s, size_t n) {
  if (r->count == r->cap) {
    int nc = r->cap ? 2 * r->cap : 8;
    const char **ns = sqlite3_realloc64(r->s, sizeof *ns * (sqlite3_uint64)nc);
    if (ns) r->s = ns;
    size_t *nn = ns ? sqlite3_realloc64(r->n, sizeof *nn * (sqlite3_uint64)nc) : NULL;
    if (nn) r->n = nn;
    if (!ns || !nn) return SQLITE_NOMEM;
    r->cap = nc;
  }
  r->s[r->count] = s;
  r->n[r->count++] = n;
  return SQLITE_OK;
}

static int read_refs(sqlite3_context *ctx, metric_ctx *m, const char *fn, sqlite3_value *v, refs *r, char **emsg) {
  const char *t = (const char *)sqlite3_value_text(v);
  int tl = sqlite3_value_bytes(v);
  if (!t) return SQLITE_NOMEM;
  const char *p = t;
  while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
  if (*p != '[') return refs_push(r, t, (size_t)tl);   /* one reference as plain text */
  long nul = pfx_json_nul_at(v);
  if (nul >= 0) {   /* SQLite's JSON reader would cut a reference there */
    *emsg = sqlite3_mprintf("%s: row %ld: the references contain a NUL character (at byte %ld of %d)", fn, m->rows + 1, nul, tl);
    return SQLITE_ERROR;
  }
  if (!m->each) {
    /* one row (0, NULL, NULL) when the text is not JSON: then it is one plain-text reference that starts with '[' */
    int rc = sqlite3_prepare_v2(sqlite3_context_db_handle(ctx), "SELECT json_valid(?1), e.type, e.value FROM (SELECT 1) "
                                "LEFT JOIN json_each(CASE WHEN json_valid(?1) THEN ?1 END) e", -1, &m->each, NULL);
    if (rc) { *emsg = sqlite3_mprintf("%s: cannot read the references: %s", fn, sqlite3_errmsg(sqlite3_context_db_handle(ctx))); return rc; }
  }
  sqlite3_reset(m->each);
  sqlite3_bind_value(m->each, 1, v);
  int rc, k = 0;
  while ((rc = sqlite3_step(m->each)) == SQLITE_ROW) {
    if (!sqlite3_column_int(m->each, 0)) return refs_push(r, t, (size_t)tl);
    if (sqlite3_column_type(m->each, 1) == SQLITE_NULL) continue;   /* [] */
    k++;
    const char *ty = (const char *)sqlite3_column_text(m->each, 1);
    if (!ty || strcmp(ty, "text")) {
      *emsg = sqlite3_mprintf("%s: row %ld: references element %d is %s, not a string", fn, m->rows + 1, k, ty ? ty : "NULL");
      return SQLITE_ERROR;
    }
    const char *s = (const char *)sqlite3_column_text(m->each, 2);
    size_t n = (size_t)sqlite3_column_bytes(m->each, 2);
    char *c = s ? sqlite3_malloc64(n + 1) : NULL;
    if (!c) return SQLITE_NOMEM;
    memcpy(c, s, n + 1);
    r->owned = 1;
    if ((rc = refs_push(r, c, n))) { sqlite3_free(c); return rc; }
  }
  if (rc != SQLITE_DONE) {
    *emsg = sqlite3_mprintf("%s: row %ld: references are not a JSON array of strings (%s)", fn, m->rows + 1,
                            sqlite3_errmsg(sqlite3_context_db_handle(ctx)));
    return SQLITE_ERROR;
  }
  if (r->count == 0) { *emsg = sqlite3_mprintf("%s: row %ld: the references array is empty", fn, m->rows + 1); return SQLITE_ERROR; }
  return SQLITE_OK;
}

void pfx_metric_step(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  (void)argc;
  int kind = (int)(size_t)sqlite3_user_data(ctx);
  const char *fn = m_name[kind];
  metric_ctx *m = sqlite3_aggregate_context(ctx, sizeof *m);
  if (!m) { sqlite3_result_error_nomem(ctx); return; }
  if (m->failed) return;
  if (sqlite3_value_type(argv[0]) == SQLITE_NULL || sqlite3_value_type(argv[1]) == SQLITE_NULL) {
    pfx_result_errorf(ctx, "%s: row %ld: %s is NULL", fn, m->rows + 1, sqlite3_value_type(argv[0]) == SQLITE_NULL ? "hypothesis" : "references");
    m->failed = 1;
    return;
  }
  const char *h = (const char *)sqlite3_value_text(argv[0]);
  size_t hl = (size_t)sqlite3_value_bytes(argv[0]);
  refs r = {0};
  char *emsg = NULL;
  int rc = h ? read_refs(ctx, m, fn, argv[1], &r, &emsg) : SQLITE_NOMEM;
  if (!rc && !m->cancel_ready) {
    if (pfx_cancel_init(&m->cancel, sqlite3_context_db_handle(ctx))) rc = SQLITE_NOMEM;
    else m->cancel_ready = 1;
  }
  if (!rc) {
    pf_err e = {0};
    double s = 0;
    int er = kind == PFX_METRIC_BLEU ? pf_bleu_add(&m->bleu, h, hl, r.s, r.n, r.count, pfx_cancel_check, &m->cancel)
           : kind == PFX_METRIC_CHRF ? pf_chrf_add(&m->chrf, h, hl, r.s, r.n, r.count, pfx_cancel_check, &m->cancel)
           : pf_rouge_l(h, hl, r.s, r.n, r.count, &s, pfx_cancel_check, &m->cancel, &e);
    if (kind == PFX_METRIC_ROUGE_L && !er) m->rouge_sum += s;
    if (er == PF_INTERRUPT) { emsg = sqlite3_mprintf("%s: interrupted", fn); rc = SQLITE_INTERRUPT; }
    else if (er == PF_TOOBIG) { emsg = sqlite3_mprintf("%s: row %ld: %s", fn, m->rows + 1, e.msg); rc = SQLITE_TOOBIG; }
    else if (er) rc = SQLITE_NOMEM;
  }
  refs_free(&r);
  if (rc) {
    m->failed = 1;
    if (emsg) { sqlite3_result_error(ctx, emsg, -1); if (rc != SQLITE_ERROR && rc != SQLITE_NOMEM) sqlite3_result_error_code(ctx, rc); }
    else sqlite3_result_error_nomem(ctx);
    sqlite3_free(emsg);
    return;
  }
  m->rows++;
}

void pfx_metric_final(sqlite3_context *ctx) {
  int kind = (int)(size_t)sqlite3_user_data(ctx);
  metric_ctx *m = sqlite3_aggregate_context(ctx, 0);
  if (!m) { sqlite3_result_null(ctx); return; }
  sqlite3_finalize(m->each);
  m->each = NULL;
  if (m->cancel_ready) pfx_cancel_done(&m->cancel);
  m->cancel_ready = 0;
  if (m->failed) return;
  if (!m->rows) { sqlite3_result_null(ctx); return; }
  double s = kind == PFX_METRIC_BLEU ? pf_bleu_score(&m->bleu, NULL, NULL) : kind == PFX_METRIC_CHRF ? pf_chrf_score(&m->chrf) : m->rouge_sum / (double)m->rows;
  sqlite3_result_double(ctx, s);
}
