/*
** pfx_fn_chat.c — prefix_chat: the prompt an instruction-tuned model expects for a
** conversation, laid out in the format of its chat template.
**
**   SELECT prefix_chat('m', '[{"role": "system", "content": "Be brief."},
**                            {"role": "user", "content": "Hi"}]');
**   -- <|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n
**   SELECT prefix_chat('m', '[{"role": "user", "content": "Hi"}]', '{"template": "llama3"}');
**
** Options: "template" (a format by name, instead of the one recognised from
** the model's tokenizer.chat_template), "add_generation_prompt" (default
** true: end with the assistant's turn opened). Pure computation on the
** model's metadata: SQLITE_INNOCUOUS, like prefix_tokenize.
*/
#include "ext.h"
SQLITE_EXTENSION_INIT3

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

typedef struct chat_opts { char *tmpl; int add_gen; } chat_opts;
static const pfx_opt chat_table[] = {
    {"template", PFX_OPT_STR, offsetof(chat_opts, tmpl), 0, 0, 0, 0, 0, 0, 0},
    {"add_generation_prompt", PFX_OPT_BOOL, offsetof(chat_opts, add_gen), 0, 0, 0, 0, 0, 0, 0},
};

void pfx_fn_chat(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  const char *fn = "prefix_chat";
  sqlite3 *db = sqlite3_context_db_handle(ctx);
  chat_opts o = {NULL, 1};
  char **owned = NULL, *em = NULL, *prompt = NULL;
  int n_owned = 0, n = 0, cap = 0;
  pf_chat_msg *msgs = NULL;
  sqlite3_stmt *st = NULL;
  pfx_model *pm = NULL;
  if (argc > 2 && pfx_parse_options(db, fn, argv[2], chat_table, 2, &o, &owned, &n_owned, &em)) {
    pfx_result_errorf(ctx, "%s", em ? em : "options");
    goto done;
  }
  if (!(pm = pfx_arg_model(ctx, fn, argv[0]))) goto done;
  const char *shape = "messages must be a JSON array of {\"role\": ..., \"content\": ...} objects";
  if (sqlite3_value_type(argv[1]) != SQLITE_TEXT) { pfx_result_errorf(ctx, "%s: %s", fn, shape); goto done; }
  long nul = pfx_json_nul_at(argv[1]);
  if (nul >= 0) {   /* a role or content would be cut there */
    pfx_result_errorf(ctx, "%s: messages contain a NUL character (at byte %ld of %d)", fn,
                      nul, sqlite3_value_bytes(argv[1]));
    goto done;
  }
  if (sqlite3_prepare_v2(db,
                         "SELECT json_type(?1), e.key, e.type, json_type(e.value, '$.role'), json_extract(e.value, '$.role'),"
                         " json_type(e.value, '$.content'), json_extract(e.value, '$.content')"
                         " FROM (SELECT 1) LEFT JOIN json_each(CASE json_type(?1) WHEN 'array' THEN ?1 END) e",
                         -1, &st, NULL) != SQLITE_OK) {
    pfx_result_errorf(ctx, "%s: %s: %s", fn, shape, sqlite3_errmsg(db));
    goto done;
  }
  sqlite3_bind_value(st, 1, argv[1]);
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    const char *jt = (const char *)sqlite3_column_text(st, 0);
    if (!jt || strcmp(jt, "array")) { pfx_result_errorf(ctx, "%s: %s", fn, shape); goto done; }
    if (sqlite3_column_type(st, 1) == SQLITE_NULL) break;   /* an empty array */
    int i = sqlite3_column_int(st, 1);
    const char *et = (const char *)sqlite3_column_text(st, 2), *rt = (const char *)sqlite3_column_text(st, 3),
               *ct = (const char *)sqlite3_column_text(st, 5);
    if (!et || strcmp(et, "object") || !rt || strcmp(rt, "text") || !ct || strcmp(ct, "text")) {
      pfx_result_errorf(ctx, "%s: %s; message %d has %s", fn, shape, i,
                        !et || strcmp(et, "object") ? "another type" : !rt || strcmp(rt, "text") ? "no string \"role\"" : "no string \"content\"");
      goto done;
    }
    if (n == cap) {
      int nc = cap ? 2 * cap : 8;
      pf_chat_msg *nm = realloc(msgs, sizeof *nm * (size_t)nc);
      if (!nm) { sqlite3_result_error_nomem(ctx); goto done; }
      msgs = nm, cap = nc;
    }
    /* the texts are copied: the statement's values change with each row */
    char *role = sqlite3_mprintf("%s", sqlite3_column_text(st, 4)), *content = NULL;
    int cl = sqlite3_column_bytes(st, 6);
    content = sqlite3_malloc(cl + 1);
    if (!role || !content) { sqlite3_free(role); sqlite3_free(content); sqlite3_result_error_nomem(ctx); goto done; }
    memcpy(content, sqlite3_column_text(st, 6), (size_t)cl);
    content[cl] = 0;
    msgs[n++] = (pf_chat_msg){role, strlen(role), content, (size_t)cl};
  }
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) { pfx_result_errorf(ctx, "%s: %s", fn, sqlite3_errmsg(db)); goto done; }
  size_t len;
  pf_err e;
  if (pf_chat_format(pfx_model_engine(pm), o.tmpl, msgs, n, o.add_gen, &prompt, &len, &e)) pfx_result_err(ctx, fn, &e);
  else sqlite3_result_text64(ctx, prompt, len, SQLITE_TRANSIENT, SQLITE_UTF8);
done:
  free(prompt);
  for (int i = 0; i < n; i++) sqlite3_free((char *)msgs[i].role), sqlite3_free((char *)msgs[i].content);
  free(msgs);
  sqlite3_finalize(st);
  sqlite3_free(em);
  pfx_opts_free(owned, n_owned);
  if (pm) pfx_model_release(pm);
}
