/*
** pfx_fn_generate.c — text generation, whole or as a stream of tokens.
**
**   SELECT prefix_generate('m', NULL, 'Once upon a time');
**   SELECT prefix_generate('m', (SELECT blob FROM prefixes WHERE customer = 7), 'Q: hours?');
**   SELECT prefix_generate('m', NULL, 'Once upon a time',
**                          '{"max_tokens": 40, "temperature": 0.8, "top_p": 0.9, "seed": 7, "stop": ["."]}');
**   SELECT prefix_generate('m', NULL, 'Once upon a time', '{"beam_size": 5, "no_repeat_ngram_size": 3}');
**   SELECT i, token_id, piece, logprob FROM prefix_generate_stream('m', NULL, 'Once upon a time');
**
** Options: max_tokens (128), temperature (0 = greedy), top_k, top_p, min_p,
** repeat_penalty, repeat_last_n (64), seed (0), stop (a string or an array),
** ignore_eos, threads, beam_size (1), length_penalty (1), no_repeat_ngram_size.
** The prefix may be an ensemble (prefix_ensemble). Ctrl-C in the shell
** (sqlite3_interrupt) stops it between tokens; a stream stops when its
** cursor is closed.
*/
#include "ext.h"
SQLITE_EXTENSION_INIT3

#include <stdlib.h>
#include <string.h>
#include "../engine/train.h"

void pfx_fn_generate(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  const char *fn = "prefix_generate";
  sqlite3 *db = sqlite3_context_db_handle(ctx);
  pfx_model *pm = pfx_arg_model(ctx, fn, argv[0]);
  if (!pm) return;
  char **owned = NULL, *emsg = NULL;
  int n_owned = 0;
  pfx_cancel cancel = {0};
  pf_batch_item it = {0};
  pf_sample_params p;
  pfx_prefix_ref *ref = NULL;
  int plen;
  const char *prompt = pfx_arg_text(ctx, fn, "prompt", argv[2], &plen);
  if (!prompt) goto done;
  if (pfx_arg_prefix(ctx, fn, argv[1], pm, (const char *)sqlite3_value_text(argv[0]), &ref)) goto done;
  int rc = pfx_parse_gen_options(db, fn, argc > 3 ? argv[3] : NULL, &p, &owned, &n_owned, &emsg);
  if (rc) {
    if (emsg) sqlite3_result_error(ctx, emsg, -1);
    else sqlite3_result_error_nomem(ctx);
    goto done;
  }
  pf_item_set_prefix(&it, ref ? pfx_prefix_get(ref) : NULL);
  it.prompt = prompt;
  it.prompt_len = (size_t)plen;
  pfx_cancel_init(&cancel, db);
  pf_err e;
  if (pf_generate_batch(pfx_model_engine(pm), &it, 1, 1, &p, pfx_cancel_check, &cancel, NULL, &e)) {
    pfx_result_err(ctx, fn, &e);
    goto done;
  }
  sqlite3_result_text64(ctx, it.res.text, it.res.len, SQLITE_TRANSIENT, SQLITE_UTF8);
done:
  pf_gen_result_clear(&it.res);
  pfx_prefix_release(ref);
  pfx_cancel_done(&cancel);
  pfx_opts_free(owned, n_owned);
  sqlite3_free(emsg);
  pfx_model_release(pm);
}

/* ------------------------------------------------------------ the stream */

enum { S_I, S_TOKEN, S_PIECE, S_LOGPROB, S_MODEL, S_PREFIX, S_PROMPT, S_OPTIONS };

typedef struct stream_vtab {
  sqlite3_vtab base;
  sqlite3 *db;
} stream_vtab;

typedef struct stream_cursor {
  sqlite3_vtab_cursor base;
  pf_stream *st;
  pfx_model *pm;
  pfx_prefix_ref *ref;
  pfx_cancel cancel;
  pf_stream_tok tok;
  int i, eof;
} stream_cursor;

static int s_connect(sqlite3 *db, void *aux, int argc, const char *const *argv, sqlite3_vtab **pp, char **err) {
  (void)aux; (void)argc; (void)argv; (void)err;
  int rc = pfx_vtab_connect(db, "CREATE TABLE x(i INT, token_id INT, piece TEXT, logprob REAL,"
                                  " model HIDDEN, prefix HIDDEN, prompt HIDDEN, options HIDDEN)", sizeof(stream_vtab), pp);
  if (rc == SQLITE_OK) ((stream_vtab *)*pp)->db = db;
  return rc;
}

static void s_clear(stream_cursor *c) {
  pf_stream_free(c->st);
  pfx_prefix_release(c->ref);
  pfx_model_release(c->pm);
  pfx_cancel_done(&c->cancel);
  c->st = NULL;
  c->ref = NULL;
  c->pm = NULL;
  memset(&c->cancel, 0, sizeof c->cancel);
  c->i = 0;
  c->eof = 1;
}

static int s_open(sqlite3_vtab *v, sqlite3_vtab_cursor **pc) {
  (void)v;
  return pfx_cursor_open(sizeof(stream_cursor), pc);
}
static int s_close(sqlite3_vtab_cursor *cur) {
  s_clear((stream_cursor *)cur);
  sqlite3_free(cur);
  return SQLITE_OK;
}

/* idxNum bits: 1 model, 2 prefix, 4 prompt, 8 options; argv in that order */
static int s_best_index(sqlite3_vtab *v, sqlite3_index_info *info) {
  (void)v;
  return pfx_vtab_best_index_args(info, S_MODEL, 4, 128);
}

static int s_advance(stream_cursor *c) {
  pf_err e;
  int done = 0;
  if (pf_stream_next(c->st, pfx_cancel_check, &c->cancel, &c->tok, &done, &e)) {
    if (e.code == PF_NOMEM) return SQLITE_NOMEM;
    int rc = pfx_vtab_fail(&c->base, sqlite3_mprintf("prefix_generate_stream: %s", e.msg));
    return e.code == PF_INTERRUPT ? SQLITE_INTERRUPT : rc;
  }
  c->eof = done;
  return SQLITE_OK;
}

static int s_filter(sqlite3_vtab_cursor *cur, int idx, const char *idxs, int argc, sqlite3_value **argv) {
  (void)idxs; (void)argc;
  const char *fn = "prefix_generate_stream";
  stream_cursor *c = (stream_cursor *)cur;
  s_clear(c);
  if ((idx & 7) != 7)
    return pfx_vtab_fail(cur, sqlite3_mprintf("%s: give a model, a prefix (or NULL) and a prompt: "
                                       "prefix_generate_stream(model, prefix, prompt [, options])", fn));
  sqlite3 *db = ((stream_vtab *)cur->pVtab)->db;
  sqlite3_value *vm = argv[0], *vp = argv[1], *vt = argv[2], *vo = (idx & 8) ? argv[3] : NULL;
  const char *model = (const char *)sqlite3_value_text(vm);
  if (!model) return pfx_vtab_fail(cur, sqlite3_mprintf("%s: the model name must not be NULL", fn));
  if (strlen(model) != (size_t)sqlite3_value_bytes(vm)) return pfx_vtab_fail(cur, sqlite3_mprintf("%s: model name contains a NUL byte", fn));
  if (sqlite3_value_type(vt) == SQLITE_NULL) return pfx_vtab_fail(cur, sqlite3_mprintf("%s: prompt must not be NULL", fn));
  char *e = NULL, **owned = NULL;
  int n_owned = 0, rc = SQLITE_OK;
  if (!(c->pm = pfx_registry_get(model, &e))) { char *m = sqlite3_mprintf("%s: %s", fn, e ? e : ""); sqlite3_free(e); return pfx_vtab_fail(cur, m); }
  if (sqlite3_value_type(vp) != SQLITE_NULL) {
    pf_err pe;
    if (sqlite3_value_type(vp) != SQLITE_BLOB) { rc = pfx_vtab_fail(cur, sqlite3_mprintf("%s: prefix must be a BLOB from prefix_train (or NULL)", fn)); goto done; }
    if (pfx_prefix_decode_cached(sqlite3_value_blob(vp), (size_t)sqlite3_value_bytes(vp), &c->ref, &pe)) {
      rc = pe.code == PF_NOMEM ? SQLITE_NOMEM : pfx_vtab_fail(cur, sqlite3_mprintf("%s: %s", fn, pe.msg));
      goto done;
    }
    char *bad = pfx_check_prefix(pfx_prefix_get(c->ref), c->pm, model);
    if (bad) { rc = pfx_vtab_fail(cur, sqlite3_mprintf("%s: %s", fn, bad)); sqlite3_free(bad); goto done; }
  }
  pf_sample_params p;
  if ((rc = pfx_parse_gen_options(db, fn, vo, &p, &owned, &n_owned, &e))) { rc = pfx_vtab_fail(cur, e); e = NULL; goto done; }
  pf_batch_item it = {0};
  pf_item_set_prefix(&it, c->ref ? pfx_prefix_get(c->ref) : NULL);
  it.prompt = (const char *)sqlite3_value_text(vt);
  it.prompt_len = (size_t)sqlite3_value_bytes(vt);
  if (!it.prompt) { rc = SQLITE_NOMEM; goto done; }
  pf_err ge;
  if (pf_stream_new(pfx_model_engine(c->pm), &it, &p, &c->st, &ge)) {   /* copies the prompt and options */
    rc = ge.code == PF_NOMEM ? SQLITE_NOMEM : pfx_vtab_fail(cur, sqlite3_mprintf("%s: %s", fn, ge.msg));
    goto done;
  }
  pfx_cancel_init(&c->cancel, db);
  c->i = 0;
  rc = s_advance(c);
done:
  pfx_opts_free(owned, n_owned);
  sqlite3_free(e);
  if (rc) s_clear(c);
  return rc;
}

static int s_next(sqlite3_vtab_cursor *cur) {
  stream_cursor *c = (stream_cursor *)cur;
  c->i++;
  return s_advance(c);
}
static int s_eof(sqlite3_vtab_cursor *cur) { return ((stream_cursor *)cur)->eof; }
static int s_rowid(sqlite3_vtab_cursor *cur, sqlite3_int64 *r) { *r = ((stream_cursor *)cur)->i + 1; return SQLITE_OK; }
static int s_column(sqlite3_vtab_cursor *cur, sqlite3_context *ctx, int col) {
  stream_cursor *c = (stream_cursor *)cur;
  switch (col) {
    case S_I: sqlite3_result_int(ctx, c->i); break;
    case S_TOKEN: sqlite3_result_int(ctx, c->tok.id); break;
    case S_PIECE: sqlite3_result_text64(ctx, c->tok.piece ? c->tok.piece : "", c->tok.piece_len, SQLITE_TRANSIENT, SQLITE_UTF8); break;
    case S_LOGPROB: sqlite3_result_double(ctx, c->tok.logprob); break;
    default: sqlite3_result_null(ctx);
  }
  return SQLITE_OK;
}

sqlite3_module pfx_stream_module = {
    0, NULL, s_connect, s_best_index, pfx_vtab_disconnect, NULL, s_open, s_close, s_filter, s_next, s_eof, s_column, s_rowid,
    NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
