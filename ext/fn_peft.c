/*
** fn_peft.c — prefixes to and from Hugging Face PEFT's prefix-tuning adapters.
**
**   SELECT writefile('adapter_model.safetensors', prefix_export(prefix, 'peft')),
**          writefile('adapter_config.json', prefix_export_config(prefix)) FROM prefixes WHERE customer = 7;
**   SELECT prefix_import('m', readfile('adapter_model.safetensors'), readfile('adapter_config.json'));
**
** The layout, the key permutation between GGUF and Hugging Face RoPE, and the checks: docs/prefix-format.md.
*/
#include "ext.h"
SQLITE_EXTENSION_INIT3

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../engine/train.h"

/* the prefix argument decoded (not cached: export is rare); -1 after an error on ctx */
static int arg_prefix(sqlite3_context *ctx, const char *fn, sqlite3_value *v, pf_prefix *p) {
  if (sqlite3_value_type(v) != SQLITE_BLOB) {
    pfx_result_errorf(ctx, "%s: prefix must be a BLOB from prefix_train", fn);
    return -1;
  }
  pf_err e;
  if (pf_prefix_decode(sqlite3_value_blob(v), (size_t)sqlite3_value_bytes(v), p, &e)) { pfx_result_err(ctx, fn, &e); return -1; }
  return 0;
}

static int arg_format(sqlite3_context *ctx, const char *fn, sqlite3_value *v) {
  const char *f = (const char *)sqlite3_value_text(v);
  if (f && !strcmp(f, "peft")) return 0;
  pfx_result_errorf(ctx, "%s: format must be 'peft' (Hugging Face PEFT's prefix-tuning adapter), got %s%.40s%s", fn,
                    f ? "'" : "", f ? f : "NULL", f ? "'" : "");
  return -1;
}

void pfx_fn_export(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  (void)argc;
  const char *fn = "prefix_export";
  pf_prefix p;
  if (arg_format(ctx, fn, argv[1]) || arg_prefix(ctx, fn, argv[0], &p)) return;
  uint8_t *out;
  size_t n;
  pf_err e;
  if (pf_peft_export(&p, &out, &n, &e)) pfx_result_err(ctx, fn, &e);
  else sqlite3_result_blob64(ctx, out, n, free);
  pf_prefix_clear(&p);
}

void pfx_fn_export_config(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  const char *fn = "prefix_export_config";
  pf_prefix p;
  if ((argc > 1 && arg_format(ctx, fn, argv[1])) || arg_prefix(ctx, fn, argv[0], &p)) return;
  if (p.n_members) {
    pfx_result_errorf(ctx, "%s: an ensemble of %d prefix%s cannot be exported as one PEFT adapter: export its members", fn, p.n_members, p.n_members == 1 ? "" : "es");
    pf_prefix_clear(&p);
    return;
  }
  char *s = pf_peft_config_json(&p, 0);
  pf_prefix_clear(&p);
  if (s) { sqlite3_result_text(ctx, s, -1, free); sqlite3_result_subtype(ctx, PFX_JSON_SUBTYPE); }
  else sqlite3_result_error_nomem(ctx);
}

/* adapter_config.json against the model: returns num_virtual_tokens (0 if absent) or -1 after an error. Each
** field, when present, must have its JSON type (integers are not read from strings or reals: "5", 5.9 and 2.5
** are refused, not converted), and errors quote the value as given. */
static int check_config(sqlite3_context *ctx, const char *fn, sqlite3_value *cfg, const pf_hparams *hp) {
  sqlite3 *db = sqlite3_context_db_handle(ctx);
  static const char *names[] = {"peft_type", "num_virtual_tokens", "num_layers", "token_dim", "num_attention_heads",
                                "num_transformer_submodules"};
  enum { NF = (int)(sizeof names / sizeof names[0]) };
  long nul = pfx_json_nul_at(cfg);
  if (nul >= 0) {
    pfx_result_errorf(ctx, "%s: config contains a NUL character (at byte %ld of %d)", fn, nul, sqlite3_value_bytes(cfg));
    return -1;
  }
  /* per field: its JSON type and its value as JSON text (json_quote keeps strings quoted) */
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(db,
                              "SELECT ok, CASE WHEN ok THEN json_type(?1, '$.' || f) END, "
                              "CASE WHEN ok THEN CASE json_type(?1, '$.' || f) WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' "
                              "ELSE json_quote(json_extract(?1, '$.' || f)) END END, "
                              "CASE WHEN ok THEN json_extract(?1, '$.' || f) END "
                              "FROM (SELECT json_valid(?1) AND json_type(?1) = 'object' AS ok), "
                              "(SELECT ?2 AS f UNION ALL SELECT ?3 UNION ALL SELECT ?4 UNION ALL SELECT ?5 "
                              "UNION ALL SELECT ?6 UNION ALL SELECT ?7)",
                              -1, &st, NULL);
  if (rc) { pfx_result_errorf(ctx, "%s: config: %s", fn, sqlite3_errmsg(db)); return -1; }
  sqlite3_bind_value(st, 1, cfg);
  for (int i = 0; i < NF; i++) sqlite3_bind_text(st, i + 2, names[i], -1, SQLITE_STATIC);
  const int want[NF] = {0, 0, hp->n_layer, hp->n_head_kv * hp->head_dim, hp->n_head_kv, 1};
  int P = 0, bad = 0;
  for (int i = 0; i < NF && !bad; i++) {
    if (sqlite3_step(st) != SQLITE_ROW) { pfx_result_errorf(ctx, "%s: config: %s", fn, sqlite3_errmsg(db)); bad = 1; break; }
    if (!sqlite3_column_int(st, 0)) { pfx_result_errorf(ctx, "%s: config must be adapter_config.json's JSON object", fn); bad = 1; break; }
    const char *type = (const char *)sqlite3_column_text(st, 1);
    if (!type || !strcmp(type, "null")) continue;   /* absent: PEFT's default */
    const char *given = (const char *)sqlite3_column_text(st, 2);
    if (i == 0) {
      const char *v = (const char *)sqlite3_column_text(st, 3);
      if (strcmp(type, "text") || strcmp(v ? v : "", "PREFIX_TUNING")) {
        pfx_result_errorf(ctx, "%s: config's peft_type is %.60s%s, not \"PREFIX_TUNING\"", fn, given ? given : "?",
                          given && strlen(given) > 60 ? "..." : "");
        bad = 1;
      }
      continue;
    }
    if (strcmp(type, "integer")) {
      pfx_result_errorf(ctx, "%s: config's %s must be an integer, got %.60s%s", fn, names[i], given ? given : "?",
                        given && strlen(given) > 60 ? "..." : "");
      bad = 1;
      break;
    }
    sqlite3_int64 v = sqlite3_column_int64(st, 3);
    if (i == 1) {
      if (v < 1 || v > PF_PREFIX_LEN_MAX) {
        pfx_result_errorf(ctx, "%s: config's num_virtual_tokens is %s; allowed: 1..%d", fn, given, PF_PREFIX_LEN_MAX);
        bad = 1;
      }
      else P = (int)v;
      continue;
    }
    if (v != want[i]) {
      pfx_result_errorf(ctx, "%s: config's %s is %s; this model needs %d%s", fn, names[i], given, want[i],
                        i == 4 ? " (PEFT counts the key/value heads for grouped-query attention)" : "");
      bad = 1;
    }
  }
  sqlite3_finalize(st);
  return bad ? -1 : P;
}

void pfx_fn_import(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  const char *fn = "prefix_import";
  pfx_model *pm = pfx_arg_model(ctx, fn, argv[0]);
  if (!pm) return;
  const pf_model *m = pfx_model_engine(pm);
  float *kv = NULL;
  int P = 0, want = 0;
  pf_err e;
  if (sqlite3_value_type(argv[1]) != SQLITE_BLOB) { pfx_result_errorf(ctx, "%s: the adapter must be a BLOB (adapter_model.safetensors, e.g. readfile(...))", fn); goto done; }
  if (!pf_model_has_weights(m)) { pfx_result_errorf(ctx, "%s: the model has no weights (vocab-only GGUF)", fn); goto done; }
  if (argc > 2 && sqlite3_value_type(argv[2]) != SQLITE_NULL && (want = check_config(ctx, fn, argv[2], pf_model_hparams(m))) < 0) goto done;
  if (pf_peft_import(m, sqlite3_value_blob(argv[1]), (size_t)sqlite3_value_bytes(argv[1]), want, &kv, &P, &e)) { pfx_result_err(ctx, fn, &e); goto done; }
  char meta[128];
  snprintf(meta, sizeof meta, "{\"init\":\"peft\",\"imported\":\"peft\",\"num_virtual_tokens\":%d}", P);
  uint8_t *blob;
  size_t n;
  if (pf_prefix_encode(m, kv, P, PF_DTYPE_F32, meta, &blob, &n, &e)) pfx_result_err(ctx, fn, &e);
  else sqlite3_result_blob64(ctx, blob, n, free);
done:
  free(kv);
  pfx_model_release(pm);
}
