/*
** options.c — JSON options -> engine parameter structs, with exact errors.
**
** The JSON is read with SQLite's own json_each() on the calling connection,
** so there is no second JSON parser to trust. Each option has a row in a
** table {name, kind, offset, range}; unknown names and ill-typed or
** out-of-range values are errors that name the option.
**
**   SELECT prefix_generate('m', NULL, 'Once', '{"max_tokens": 20, "stop": ["."]}');
*/
#include "ext.h"
SQLITE_EXTENSION_INIT3

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

void pfx_opts_free(char **owned, int n_owned) {
  for (int i = 0; i < n_owned; i++) sqlite3_free(owned[i]);
  sqlite3_free(owned);
}

static int own_str(char ***owned, int *n, char *s) {
  char **o = sqlite3_realloc64(*owned, sizeof(char *) * (sqlite3_uint64)(*n + 1));
  if (!o) { sqlite3_free(s); return SQLITE_NOMEM; }
  *owned = o;
  o[(*n)++] = s;
  return SQLITE_OK;
}

static char *known_list(const pfx_opt *t, int n) {
  char *s = sqlite3_mprintf("");
  for (int i = 0; i < n && s; i++) {
    char *x = sqlite3_mprintf("%s%s%s", s, i ? ", " : "", t[i].name);
    sqlite3_free(s);
    s = x;
  }
  return s;
}

static const char *type_word(const char *jt) {
  if (!jt) return "null";
  if (!strcmp(jt, "true") || !strcmp(jt, "false")) return "a boolean";
  if (!strcmp(jt, "integer")) return "an integer";
  if (!strcmp(jt, "real")) return "a real number";
  if (!strcmp(jt, "text")) return "a string";
  if (!strcmp(jt, "array")) return "an array";
  if (!strcmp(jt, "object")) return "an object";
  return jt;
}

long pfx_json_nul_at(sqlite3_value *v) {
  if (sqlite3_value_type(v) != SQLITE_TEXT) return -1;
  const char *t = (const char *)sqlite3_value_text(v);
  long n = sqlite3_value_bytes(v);
  if (!t) return -1;
  for (long i = 0; i < n; i++) {
    if (!t[i]) return i;
    if (t[i] != '\\' || i + 1 >= n) continue;
    const char *e = t + i + 1;   /* the escaped character; in valid JSON backslashes occur only in strings */
    if ((*e == 'u' && i + 5 < n && !memcmp(e + 1, "0000", 4)) || (*e == 'x' && i + 3 < n && !memcmp(e + 1, "00", 2)) ||
        (*e == '0' && !(i + 2 < n && e[1] >= '0' && e[1] <= '9')))
      return i;
    i++;   /* skip the escaped character (it may be a backslash) */
  }
  return -1;
}

int pfx_parse_options(sqlite3 *db, const char *fn, sqlite3_value *json, const pfx_opt *table, int n_table,
                      void *target, char ***owned, int *n_owned, char **errmsg) {
  sqlite3_stmt *st = NULL, *arr = NULL;
  int rc = SQLITE_OK;
  *errmsg = NULL;
  if (!json || sqlite3_value_type(json) == SQLITE_NULL) return SQLITE_OK;
  if (sqlite3_value_type(json) != SQLITE_TEXT) {
    *errmsg = sqlite3_mprintf("%s: options must be a JSON object as text, like '{\"max_tokens\": 32}'", fn);
    return SQLITE_ERROR;
  }
  long nul = pfx_json_nul_at(json);
  if (nul >= 0) {   /* SQLite's JSON reader would cut the text or the string there */
    *errmsg = sqlite3_mprintf("%s: options contain a NUL character (at byte %ld of %d)",
                              fn, nul, sqlite3_value_bytes(json));
    return SQLITE_ERROR;
  }
  rc = sqlite3_prepare_v2(db, "SELECT json_type(?1)", -1, &st, NULL);
  if (rc) goto sqlfail;
  sqlite3_bind_value(st, 1, json);
  rc = sqlite3_step(st);
  if (rc != SQLITE_ROW) {
    *errmsg = sqlite3_mprintf("%s: options are not valid JSON: %s", fn, sqlite3_errmsg(db));
    rc = SQLITE_ERROR;
    goto done;
  }
  if (!sqlite3_column_text(st, 0) || strcmp((const char *)sqlite3_column_text(st, 0), "object")) {
    *errmsg = sqlite3_mprintf("%s: options must be a JSON object, got %s", fn,
                              type_word((const char *)sqlite3_column_text(st, 0)));
    rc = SQLITE_ERROR;
    goto done;
  }
  sqlite3_finalize(st);
  st = NULL;
  rc = sqlite3_prepare_v2(db, "SELECT key, type, atom, value FROM json_each(?1)", -1, &st, NULL);
  if (rc) goto sqlfail;
  sqlite3_bind_value(st, 1, json);
  uint64_t seen = 0;   /* tables have fewer than 64 options */
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    const char *key = (const char *)sqlite3_column_text(st, 0);
    const char *jt = (const char *)sqlite3_column_text(st, 1);
    const pfx_opt *o = NULL;
    int oi = -1;
    for (int i = 0; i < n_table; i++) if (key && !strcmp(key, table[i].name)) { o = &table[i]; oi = i; break; }
    if (!o) {
      char *k = known_list(table, n_table);
      size_t kl = key ? strlen(key) : 0;   /* a long key is quoted in part */
      *errmsg = sqlite3_mprintf("%s: unknown option '%.64s%s' (known: %s)", fn, key ? key : "", kl > 64 ? "..." : "", k ? k : "");
      sqlite3_free(k);
      rc = SQLITE_ERROR;
      goto done;
    }
    if (oi < 64 && (seen >> oi & 1)) {   /* JSON allows it; which one was meant is not known */
      *errmsg = sqlite3_mprintf("%s: option '%s' is given twice", fn, o->name);
      rc = SQLITE_ERROR;
      goto done;
    }
    if (oi < 64) seen |= 1ull << oi;
    char *base = (char *)target + o->off;
    int is_int = jt && !strcmp(jt, "integer"), is_num = is_int || (jt && !strcmp(jt, "real"));
    switch (o->kind) {
      case PFX_OPT_INT:
      case PFX_OPT_U64: {
        if (!is_int) {
          *errmsg = sqlite3_mprintf("%s: option '%s' must be an integer, got %s", fn, o->name, type_word(jt));
          rc = SQLITE_ERROR;
          goto done;
        }
        if (sqlite3_column_type(st, 2) != SQLITE_INTEGER) {   /* an integer beyond 64 bits: SQLite reads it as real */
          *errmsg = sqlite3_mprintf("%s: option '%s' must be between %lld and %lld, got %s", fn, o->name, (long long)o->lo,
                                    (long long)o->hi, (const char *)sqlite3_column_text(st, 2));
          rc = SQLITE_ERROR;
          goto done;
        }
        sqlite3_int64 v = sqlite3_column_int64(st, 2);
        if ((double)v < o->lo || (double)v > o->hi) {
          *errmsg = sqlite3_mprintf("%s: option '%s' must be between %lld and %lld, got %lld", fn, o->name,
                                    (long long)o->lo, (long long)o->hi, (long long)v);
          rc = SQLITE_ERROR;
          goto done;
        }
        if (o->kind == PFX_OPT_INT) *(int *)base = (int)v;
        else *(uint64_t *)base = (uint64_t)v;
        break;
      }
      case PFX_OPT_FLOAT: {
        if (!is_num) {
          *errmsg = sqlite3_mprintf("%s: option '%s' must be a number, got %s", fn, o->name, type_word(jt));
          rc = SQLITE_ERROR;
          goto done;
        }
        double v = sqlite3_column_double(st, 2);
        if (!(v >= o->lo && v <= o->hi)) {
          *errmsg = sqlite3_mprintf("%s: option '%s' must be between %g and %g, got %g", fn, o->name, o->lo, o->hi, v);
          rc = SQLITE_ERROR;
          goto done;
        }
        *(float *)base = (float)v;
        break;
      }
      case PFX_OPT_BOOL:
        if (!jt || (strcmp(jt, "true") && strcmp(jt, "false"))) {
          *errmsg = sqlite3_mprintf("%s: option '%s' must be true or false, got %s", fn, o->name, type_word(jt));
          rc = SQLITE_ERROR;
          goto done;
        }
        *(int *)base = !strcmp(jt, "true");
        break;
      case PFX_OPT_STR:
      case PFX_OPT_ENUM: {
        if (!jt || strcmp(jt, "text")) {
          *errmsg = sqlite3_mprintf("%s: option '%s' must be a string, got %s", fn, o->name, type_word(jt));
          rc = SQLITE_ERROR;
          goto done;
        }
        const char *v = (const char *)sqlite3_column_text(st, 2);
        if (o->kind == PFX_OPT_ENUM) {
          int idx = 0, found = -1;
          const char *c = o->choices;
          while (*c) {
            size_t l = strcspn(c, "|");
            if (strlen(v) == l && !strncmp(v, c, l)) { found = idx; break; }
            c += l;
            if (*c) c++;
            idx++;
          }
          if (found < 0) {
            *errmsg = sqlite3_mprintf("%s: option '%s' must be one of %s, got '%s'", fn, o->name, o->choices, v);
            rc = SQLITE_ERROR;
            goto done;
          }
          *(int *)base = found;
        } else {
          char *s = sqlite3_mprintf("%s", v);
          if (!s || own_str(owned, n_owned, s)) { rc = SQLITE_NOMEM; goto done; }
          *(char **)base = s;
        }
        break;
      }
      case PFX_OPT_STRLIST: {
        int *count = (int *)((char *)target + o->count_off);
        char **list = (char **)base;
        *count = 0;
        if (jt && !strcmp(jt, "text")) {
          char *s = sqlite3_mprintf("%s", (const char *)sqlite3_column_text(st, 2));
          if (!s || own_str(owned, n_owned, s)) { rc = SQLITE_NOMEM; goto done; }
          list[(*count)++] = s;
          break;
        }
        if (!jt || strcmp(jt, "array")) {
          *errmsg = sqlite3_mprintf("%s: option '%s' must be a string or an array of strings, got %s", fn, o->name,
                                    type_word(jt));
          rc = SQLITE_ERROR;
          goto done;
        }
        rc = sqlite3_prepare_v2(db, "SELECT type, atom FROM json_each(?1)", -1, &arr, NULL);
        if (rc) goto sqlfail;
        sqlite3_bind_value(arr, 1, sqlite3_column_value(st, 3));
        while ((rc = sqlite3_step(arr)) == SQLITE_ROW) {
          const char *et = (const char *)sqlite3_column_text(arr, 0);
          if (!et || strcmp(et, "text")) {
            *errmsg = sqlite3_mprintf("%s: option '%s' must hold only strings, got %s", fn, o->name, type_word(et));
            rc = SQLITE_ERROR;
            goto done;
          }
          if (*count >= o->max_count) {
            *errmsg = sqlite3_mprintf("%s: option '%s' holds more than %d strings", fn, o->name, o->max_count);
            rc = SQLITE_ERROR;
            goto done;
          }
          char *s = sqlite3_mprintf("%s", (const char *)sqlite3_column_text(arr, 1));
          if (!s || own_str(owned, n_owned, s)) { rc = SQLITE_NOMEM; goto done; }
          list[(*count)++] = s;
        }
        if (rc != SQLITE_DONE) goto sqlfail;
        sqlite3_finalize(arr);
        arr = NULL;
        break;
      }
    }
  }
  if (rc == SQLITE_DONE) { rc = SQLITE_OK; goto done; }
sqlfail:
  if (!*errmsg) *errmsg = sqlite3_mprintf("%s: options: %s", fn, sqlite3_errmsg(db));
  if (rc == SQLITE_OK || rc == SQLITE_ROW || rc == SQLITE_DONE) rc = SQLITE_ERROR;
done:
  sqlite3_finalize(st);
  sqlite3_finalize(arr);
  if (rc == SQLITE_NOMEM && !*errmsg) *errmsg = NULL;
  return rc;
}

#define GO(f) offsetof(pf_sample_params, f)
static const pfx_opt gen_opts[] = {
    {"max_tokens", PFX_OPT_INT, GO(max_tokens), 0, 1 << 24, 0, 0, 0},
    {"temperature", PFX_OPT_FLOAT, GO(temperature), 0, 100, 0, 0, 0},
    {"top_k", PFX_OPT_INT, GO(top_k), 0, 1 << 24, 0, 0, 0},
    {"top_p", PFX_OPT_FLOAT, GO(top_p), 0, 1, 0, 0, 0},
    {"min_p", PFX_OPT_FLOAT, GO(min_p), 0, 1, 0, 0, 0},
    {"repeat_penalty", PFX_OPT_FLOAT, GO(repeat_penalty), 0.01, 100, 0, 0, 0},
    {"repeat_last_n", PFX_OPT_INT, GO(repeat_last_n), -1, 1 << 24, 0, 0, 0},
    {"seed", PFX_OPT_U64, GO(seed), 0, 9007199254740992.0, 0, 0, 0},
    {"ignore_eos", PFX_OPT_BOOL, GO(ignore_eos), 0, 0, 0, 0, 0},
    {"threads", PFX_OPT_INT, GO(threads), 0, PF_THREADS_MAX, 0, 0, 0},
    {"beam_size", PFX_OPT_INT, GO(beam_size), 1, PF_BEAM_MAX, 0, 0, 0},
    {"length_penalty", PFX_OPT_FLOAT, GO(length_penalty), -10, 10, 0, 0, 0},
    {"no_repeat_ngram_size", PFX_OPT_INT, GO(no_repeat_ngram_size), 0, 64, 0, 0, 0},
    {"stop", PFX_OPT_STRLIST, GO(stop), 0, 0, 0, GO(n_stop), PF_MAX_STOPS},
};

int pfx_parse_gen_options(sqlite3 *db, const char *fn, sqlite3_value *json, pf_sample_params *p, char ***owned,
                          int *n_owned, char **errmsg) {
  pf_sample_params_default(p);
  return pfx_parse_options(db, fn, json, gen_opts, (int)(sizeof gen_opts / sizeof gen_opts[0]), p, owned, n_owned,
                           errmsg);
}

/* prefix_generate_batch: the generation options plus batch_size. */
#define BO(f) offsetof(pfx_batch_opts, f)
int pfx_parse_batch_options(sqlite3 *db, const char *fn, sqlite3_value *json, pfx_batch_opts *o, char ***owned,
                            int *n_owned, char **errmsg) {
  enum { NG = (int)(sizeof gen_opts / sizeof gen_opts[0]) };
  pfx_opt table[NG + 2];
  memcpy(table, gen_opts, sizeof gen_opts);   /* p is the struct's first member: same offsets */
  pfx_opt bs = {"batch_size", PFX_OPT_INT, BO(batch_size), 1, PF_BATCH_SIZE_MAX, 0, 0, 0};
  pfx_opt rp = {"require_prefix", PFX_OPT_BOOL, BO(require_prefix), 0, 0, 0, 0, 0};
  table[NG] = bs;
  table[NG + 1] = rp;
  pf_sample_params_default(&o->p);
  o->batch_size = 16;
  o->require_prefix = 0;
  return pfx_parse_options(db, fn, json, table, NG + 2, o, owned, n_owned, errmsg);
}
