/*
** options.c — JSON options -> engine parameter structs, with exact errors.
**
** The JSON is read with SQLite's own json_each() on the calling connection,
** so there is no second JSON parser to trust. Each option has a row in a
** table {name, kind, offset, range}; unknown names and ill-typed or
** out-of-range values are errors that name the option. The tables of every
** SQL function are here, side by side: generation (and batches), training,
** scoring.
**
**   SELECT prefix_generate('m', NULL, 'Once', '{"max_tokens": 20, "stop": ["."]}');
*/
#include "ext.h"
SQLITE_EXTENSION_INIT3

#include <stdarg.h>
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

/* What every option reader needs: the connection (json_each runs on it), the function's name for messages, and
** where the message and the strings it keeps go. */
typedef struct optctx {
  sqlite3 *db;
  const char *fn;
  char **errmsg;
  char ***owned;
  int *n_owned;
  const char *path;   /* "" at the top; "dp." inside the object of option 'dp' */
} optctx;

/* The one failure path: "<fn>: option '<name>' <what>" (o NULL: "<fn>: <what>"). SQLITE_NOMEM when even the
** message cannot be made. */
static int opt_fail(const optctx *c, const pfx_opt *o, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *what = sqlite3_vmprintf(fmt, ap);
  va_end(ap);
  if (what) *c->errmsg = o ? sqlite3_mprintf("%s: option '%s%s' %s", c->fn, c->path, o->name, what) : sqlite3_mprintf("%s: %s", c->fn, what);
  sqlite3_free(what);
  return *c->errmsg ? SQLITE_ERROR : SQLITE_NOMEM;
}

/* SQLite itself failed (rc: its code, kept; ROW or DONE where a failure was expected: SQLITE_ERROR). */
static int sql_fail(const optctx *c, int rc) {
  if (!*c->errmsg) *c->errmsg = sqlite3_mprintf("%s: options: %s", c->fn, sqlite3_errmsg(c->db));
  return rc == SQLITE_OK || rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_ERROR : rc;
}

/* A copy of s kept until pfx_opts_free (the parameter structs point at it). */
static int keep_str(const optctx *c, const char *s, char **out) {
  char *k = sqlite3_mprintf("%s", s ? s : "");
  if (!k || own_str(c->owned, c->n_owned, k)) return SQLITE_NOMEM;
  *out = k;
  return SQLITE_OK;
}

/* PFX_OPT_INT, PFX_OPT_U64: an integer within [lo, hi]. Row st: key, type, atom, value. */
static int opt_integer(const optctx *c, const pfx_opt *o, sqlite3_stmt *st, const char *jt, char *base) {
  if (!jt || strcmp(jt, "integer")) return opt_fail(c, o, "must be an integer, got %s", type_word(jt));
  if (sqlite3_column_type(st, 2) != SQLITE_INTEGER)   /* an integer beyond 64 bits: SQLite reads it as real */
    return opt_fail(c, o, "must be between %lld and %lld, got %s", (long long)o->lo, (long long)o->hi,
                    (const char *)sqlite3_column_text(st, 2));
  sqlite3_int64 v = sqlite3_column_int64(st, 2);
  if ((double)v < o->lo || (double)v > o->hi)
    return opt_fail(c, o, "must be between %lld and %lld, got %lld", (long long)o->lo, (long long)o->hi, (long long)v);
  if (o->kind == PFX_OPT_INT) *(int *)base = (int)v;
  else *(uint64_t *)base = (uint64_t)v;
  return SQLITE_OK;
}

/* PFX_OPT_FLOAT: a number within [lo, hi]. */
static int opt_number(const optctx *c, const pfx_opt *o, sqlite3_stmt *st, const char *jt, char *base) {
  if (!jt || (strcmp(jt, "integer") && strcmp(jt, "real"))) return opt_fail(c, o, "must be a number, got %s", type_word(jt));
  double v = sqlite3_column_double(st, 2);
  if (!(v >= o->lo && v <= o->hi)) return opt_fail(c, o, "must be between %g and %g, got %g", o->lo, o->hi, v);
  *(float *)base = (float)v;
  return SQLITE_OK;
}

/* PFX_OPT_BOOL: true or false. */
static int opt_bool(const optctx *c, const pfx_opt *o, const char *jt, char *base) {
  if (!jt || (strcmp(jt, "true") && strcmp(jt, "false"))) return opt_fail(c, o, "must be true or false, got %s", type_word(jt));
  *(int *)base = !strcmp(jt, "true");
  return SQLITE_OK;
}

/* PFX_OPT_STR: a string (kept); PFX_OPT_ENUM: one of the '|'-separated choices, stored as its index. */
static int opt_string(const optctx *c, const pfx_opt *o, sqlite3_stmt *st, const char *jt, char *base) {
  if (!jt || strcmp(jt, "text")) return opt_fail(c, o, "must be a string, got %s", type_word(jt));
  const char *v = (const char *)sqlite3_column_text(st, 2);
  if (o->kind == PFX_OPT_STR) return keep_str(c, v, (char **)base);
  int idx = 0;
  for (const char *ch = o->choices; *ch; idx++) {
    size_t l = strcspn(ch, "|");
    if (strlen(v) == l && !strncmp(v, ch, l)) { *(int *)base = idx; return SQLITE_OK; }
    ch += l;
    if (*ch) ch++;
  }
  return opt_fail(c, o, "must be one of %s, got '%s'", o->choices, v);
}

/* PFX_OPT_STRLIST: a string, or an array of at most max_count strings (kept); the count goes to count_off. */
static int opt_strlist(const optctx *c, const pfx_opt *o, sqlite3_stmt *st, const char *jt, void *target) {
  int *count = (int *)((char *)target + o->count_off);
  char **list = (char **)((char *)target + o->off);
  *count = 0;
  if (jt && !strcmp(jt, "text")) return keep_str(c, (const char *)sqlite3_column_text(st, 2), &list[(*count)++]);
  if (!jt || strcmp(jt, "array")) return opt_fail(c, o, "must be a string or an array of strings, got %s", type_word(jt));
  sqlite3_stmt *arr = NULL;
  int rc = sqlite3_prepare_v2(c->db, "SELECT type, atom FROM json_each(?1)", -1, &arr, NULL), step = SQLITE_DONE;
  if (rc) return sql_fail(c, rc);
  sqlite3_bind_value(arr, 1, sqlite3_column_value(st, 3));
  while (!rc && (step = sqlite3_step(arr)) == SQLITE_ROW) {
    const char *et = (const char *)sqlite3_column_text(arr, 0);
    if (!et || strcmp(et, "text")) rc = opt_fail(c, o, "must hold only strings, got %s", type_word(et));
    else if (*count >= o->max_count) rc = opt_fail(c, o, "holds more than %d strings", o->max_count);
    else if (!(rc = keep_str(c, (const char *)sqlite3_column_text(arr, 1), &list[*count]))) (*count)++;
  }
  if (!rc && step != SQLITE_DONE) rc = sql_fail(c, step);
  sqlite3_finalize(arr);
  return rc;
}

/* The options value is TEXT holding a JSON object, with no NUL in it. */
static int check_object(const optctx *c, sqlite3_value *json) {
  if (sqlite3_value_type(json) != SQLITE_TEXT)
    return opt_fail(c, NULL, "options must be a JSON object as text, like '{\"max_tokens\": 32}'");
  long nul = pfx_json_nul_at(json);
  if (nul >= 0)   /* SQLite's JSON reader would cut the text or the string there */
    return opt_fail(c, NULL, "options contain a NUL character (at byte %ld of %d)", nul, sqlite3_value_bytes(json));
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(c->db, "SELECT json_type(?1)", -1, &st, NULL);
  if (rc) return sql_fail(c, rc);
  else {
    sqlite3_bind_value(st, 1, json);
    if (sqlite3_step(st) != SQLITE_ROW) rc = opt_fail(c, NULL, "options are not valid JSON: %s", sqlite3_errmsg(c->db));
    else if (!sqlite3_column_text(st, 0) || strcmp((const char *)sqlite3_column_text(st, 0), "object"))
      rc = opt_fail(c, NULL, "options must be a JSON object, got %s", type_word((const char *)sqlite3_column_text(st, 0)));
  }
  sqlite3_finalize(st);
  return rc;
}

static int opt_object(const optctx *c, const pfx_opt *o, sqlite3_stmt *st, const char *jt, void *target);

/* One member of the object: find its row of the table, refuse unknown and repeated names, read it by kind. */
static int read_option(const optctx *c, sqlite3_stmt *st, const pfx_opt *table, int n_table, uint64_t *seen, void *target) {
  const char *key = (const char *)sqlite3_column_text(st, 0);
  const char *jt = (const char *)sqlite3_column_text(st, 1);
  int oi = -1;
  for (int i = 0; i < n_table && oi < 0; i++) if (key && !strcmp(key, table[i].name)) oi = i;
  if (oi < 0) {
    char *k = known_list(table, n_table);
    size_t kl = key ? strlen(key) : 0;   /* a long key is quoted in part */
    int rc = opt_fail(c, NULL, "unknown option '%s%.64s%s' (known: %s)", c->path, key ? key : "", kl > 64 ? "..." : "", k ? k : "");
    sqlite3_free(k);
    return rc;
  }
  const pfx_opt *o = &table[oi];
  if (oi < 64 && (*seen >> oi & 1)) return opt_fail(c, o, "is given twice");   /* JSON allows it; which was meant is not known */
  if (oi < 64) *seen |= 1ull << oi;
  char *base = (char *)target + o->off;
  switch (o->kind) {
    case PFX_OPT_INT:
    case PFX_OPT_U64: return opt_integer(c, o, st, jt, base);
    case PFX_OPT_FLOAT: return opt_number(c, o, st, jt, base);
    case PFX_OPT_BOOL: return opt_bool(c, o, jt, base);
    case PFX_OPT_STR:
    case PFX_OPT_ENUM: return opt_string(c, o, st, jt, base);
    case PFX_OPT_STRLIST: return opt_strlist(c, o, st, jt, target);
    case PFX_OPT_OBJ: return opt_object(c, o, st, jt, target);
  }
  return opt_fail(c, o, "has an unknown kind %d", (int)o->kind);
}

/* The members of a JSON object by the table. */
static int parse_object(const optctx *c, sqlite3_value *json, const pfx_opt *table, int n_table, void *target) {
  int rc = check_object(c, json);
  if (rc) return rc;
  sqlite3_stmt *st = NULL;
  uint64_t seen = 0;   /* tables have fewer than 64 options */
  int step = SQLITE_DONE;
  if ((rc = sqlite3_prepare_v2(c->db, "SELECT key, type, atom, value FROM json_each(?1)", -1, &st, NULL))) return sql_fail(c, rc);
  sqlite3_bind_value(st, 1, json);
  while (!rc && (step = sqlite3_step(st)) == SQLITE_ROW) rc = read_option(c, st, table, n_table, &seen, target);
  if (!rc && step != SQLITE_DONE) rc = sql_fail(c, step);
  sqlite3_finalize(st);
  return rc;
}

/* PFX_OPT_OBJ: an object of options of its own, read into the same target; the int at off says it was given. */
static int opt_object(const optctx *c, const pfx_opt *o, sqlite3_stmt *st, const char *jt, void *target) {
  if (!jt || strcmp(jt, "object")) return opt_fail(c, o, "must be an object like %s, got %s", o->choices, type_word(jt));
  sqlite3_value *v = sqlite3_value_dup(sqlite3_column_value(st, 3));
  char *path = sqlite3_mprintf("%s%s.", c->path, o->name);
  int rc = SQLITE_NOMEM;
  if (v && path) {
    optctx in = *c;
    in.path = path;
    rc = parse_object(&in, v, o->sub, o->n_sub, target);
  }
  sqlite3_value_free(v);
  sqlite3_free(path);
  if (!rc) *(int *)((char *)target + o->off) = 1;
  return rc;
}

int pfx_parse_options(sqlite3 *db, const char *fn, sqlite3_value *json, const pfx_opt *table, int n_table,
                      void *target, char ***owned, int *n_owned, char **errmsg) {
  optctx c = {db, fn, errmsg, owned, n_owned, ""};
  *errmsg = NULL;
  if (!json || sqlite3_value_type(json) == SQLITE_NULL) return SQLITE_OK;
  return parse_object(&c, json, table, n_table, target);
}

#define GO(f) offsetof(pf_sample_params, f)
static const pfx_opt gen_opts[] = {
    {"max_tokens", PFX_OPT_INT, GO(max_tokens), 0, 1 << 24, 0, 0, 0, 0, 0},
    {"temperature", PFX_OPT_FLOAT, GO(temperature), 0, 100, 0, 0, 0, 0, 0},
    {"top_k", PFX_OPT_INT, GO(top_k), 0, 1 << 24, 0, 0, 0, 0, 0},
    {"top_p", PFX_OPT_FLOAT, GO(top_p), 0, 1, 0, 0, 0, 0, 0},
    {"min_p", PFX_OPT_FLOAT, GO(min_p), 0, 1, 0, 0, 0, 0, 0},
    {"repeat_penalty", PFX_OPT_FLOAT, GO(repeat_penalty), 0.01, 100, 0, 0, 0, 0, 0},
    {"repeat_last_n", PFX_OPT_INT, GO(repeat_last_n), -1, 1 << 24, 0, 0, 0, 0, 0},
    {"seed", PFX_OPT_U64, GO(seed), 0, 9007199254740992.0, 0, 0, 0, 0, 0},
    {"ignore_eos", PFX_OPT_BOOL, GO(ignore_eos), 0, 0, 0, 0, 0, 0, 0},
    {"threads", PFX_OPT_INT, GO(threads), 0, PF_THREADS_MAX, 0, 0, 0, 0, 0},
    {"beam_size", PFX_OPT_INT, GO(beam_size), 1, PF_BEAM_MAX, 0, 0, 0, 0, 0},
    {"length_penalty", PFX_OPT_FLOAT, GO(length_penalty), -10, 10, 0, 0, 0, 0, 0},
    {"no_repeat_ngram_size", PFX_OPT_INT, GO(no_repeat_ngram_size), 0, 64, 0, 0, 0, 0, 0},
    {"stop", PFX_OPT_STRLIST, GO(stop), 0, 0, 0, GO(n_stop), PF_MAX_STOPS, 0, 0},
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
  pfx_opt bs = {"batch_size", PFX_OPT_INT, BO(batch_size), 1, PF_BATCH_SIZE_MAX, 0, 0, 0, 0, 0};
  pfx_opt rp = {"require_prefix", PFX_OPT_BOOL, BO(require_prefix), 0, 0, 0, 0, 0, 0, 0};
  table[NG] = bs;
  table[NG + 1] = rp;
  pf_sample_params_default(&o->p);
  o->batch_size = 16;
  o->require_prefix = 0;
  return pfx_parse_options(db, fn, json, table, NG + 2, o, owned, n_owned, errmsg);
}

/* ------------------------------------------------ prefix_train, prefix_train_agg, prefix_score */

#define TO(f) offsetof(pfx_train_opts, p.f)
/* differential privacy: "dp": {"epsilon": 8, "delta": 1e-5, "max_grad_norm": 1} (docs/privacy.md) */
static const pfx_opt dp_table[] = {
    {"epsilon", PFX_OPT_FLOAT, TO(dp_epsilon), 1e-3, 1e6, 0, 0, 0, 0, 0},
    {"delta", PFX_OPT_FLOAT, TO(dp_delta), 1e-30, 0.5, 0, 0, 0, 0, 0},
    {"max_grad_norm", PFX_OPT_FLOAT, TO(dp_max_grad_norm), 1e-6, 1e6, 0, 0, 0, 0, 0},
    {"noise_multiplier", PFX_OPT_FLOAT, TO(dp_noise_multiplier), 0, 1e4, 0, 0, 0, 0, 0},
    {"noise_seed", PFX_OPT_U64, TO(dp_noise_seed), 0, 9007199254740992.0, 0, 0, 0, 0, 0},
};
static const pfx_opt train_table[] = {
    {"prefix_len", PFX_OPT_INT, TO(prefix_len), 1, PF_TRAIN_PREFIX_LEN_MAX, 0, 0, 0, 0, 0},
    {"mode", PFX_OPT_ENUM, TO(mode), 0, 0, "prefix|embedding", 0, 0, 0, 0},
    {"mid_dim", PFX_OPT_INT, TO(mid_dim), 0, PF_MID_DIM_MAX, 0, 0, 0, 0, 0},
    {"init_text", PFX_OPT_STR, TO(init_text), 0, 0, 0, 0, 0, 0, 0},
    {"lr", PFX_OPT_FLOAT, TO(lr), 1e-9, 10, 0, 0, 0, 0, 0},
    {"weight_decay", PFX_OPT_FLOAT, TO(weight_decay), 0, 10, 0, 0, 0, 0, 0},
    {"warmup_steps", PFX_OPT_INT, TO(warmup_steps), 0, 1e9, 0, 0, 0, 0, 0},
    {"lr_schedule", PFX_OPT_ENUM, TO(lr_schedule), 0, 0, "linear|constant", 0, 0, 0, 0},
    {"grad_clip", PFX_OPT_FLOAT, TO(grad_clip), 0, 1e9, 0, 0, 0, 0, 0},
    {"batch_size", PFX_OPT_INT, TO(batch_size), 1, PF_BATCH_SIZE_MAX, 0, 0, 0, 0, 0},
    {"epochs", PFX_OPT_INT, TO(epochs), 1, 1e6, 0, 0, 0, 0, 0},
    {"max_steps", PFX_OPT_INT, TO(max_steps), 1, 1e9, 0, 0, 0, 0, 0},
    {"seed", PFX_OPT_U64, TO(seed), 0, 9007199254740992.0, 0, 0, 0, 0, 0},
    {"max_seq_len", PFX_OPT_INT, TO(max_seq_len), 2, 1 << 20, 0, 0, 0, 0, 0},
    {"threads", PFX_OPT_INT, TO(threads), 0, PF_THREADS_MAX, 0, 0, 0, 0, 0},
    {"val_fraction", PFX_OPT_FLOAT, TO(val_fraction), 0, 0.9, 0, 0, 0, 0, 0},
    {"val_query", PFX_OPT_STR, offsetof(pfx_train_opts, val_query), 0, 0, 0, 0, 0, 0, 0},
    {"eval_every", PFX_OPT_INT, TO(eval_every), 0, 1e9, 0, 0, 0, 0, 0},
    {"patience", PFX_OPT_INT, TO(patience), 0, 1e6, 0, 0, 0, 0, 0},
    {"min_delta", PFX_OPT_FLOAT, TO(min_delta), 0, 0.99, 0, 0, 0, 0, 0},
    {"dtype", PFX_OPT_ENUM, TO(dtype), 0, 0, "f32|f16", 0, 0, 0, 0},
    {"progress", PFX_OPT_BOOL, TO(progress), 0, 0, 0, 0, 0, 0, 0},
    {"add_eos", PFX_OPT_BOOL, TO(add_eos), 0, 0, 0, 0, 0, 0, 0},
    {"activation_mb", PFX_OPT_INT, TO(activation_mb), 16, 1 << 20, 0, 0, 0, 0, 0},
    {"init_prefix", PFX_OPT_STR, offsetof(pfx_train_opts, init_hex), 0, 0, 0, 0, 0, 0, 0},
    {"save_state", PFX_OPT_BOOL, TO(save_state), 0, 0, 0, 0, 0, 0, 0},
    {"dp", PFX_OPT_OBJ, TO(dp), 0, 0, "{\"epsilon\": 8}", 0, 0, dp_table, (int)(sizeof dp_table / sizeof dp_table[0])},
};

static int hexval(int c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1; }

static const pfx_opt score_table[] = {
    {"add_eos", PFX_OPT_BOOL, offsetof(pfx_score_opts, add_eos), 0, 0, 0, 0, 0, 0, 0},
    {"per_token", PFX_OPT_BOOL, offsetof(pfx_score_opts, per_token), 0, 0, 0, 0, 0, 0, 0},
};

int pfx_parse_train_options(sqlite3 *db, const char *fn, sqlite3_value *json, pfx_train_opts *o, char ***owned,
                            int *n_owned, char **errmsg) {
  memset(o, 0, sizeof *o);
  pf_train_params_default(&o->p);   /* prefix_len, mode, mid_dim not given: settled by the engine */
  o->p.progress = -1;   /* a bar when stderr is a terminal (the shell), unless the options say */
  int rc = pfx_parse_options(db, fn, json, train_table, (int)(sizeof train_table / sizeof train_table[0]), o, owned,
                             n_owned, errmsg);
  if (!rc && o->init_hex) {   /* hex(blob) -> bytes, in place */
    size_t n = strlen(o->init_hex);
    for (size_t i = 0; i < n && !rc; i++)
      if (hexval((unsigned char)o->init_hex[i]) < 0) {
        *errmsg = sqlite3_mprintf("%s: option 'init_prefix' must be a prefix BLOB written as hex text (hex(blob)); "
                                  "character %lld is not a hex digit", fn, (long long)i + 1);
        rc = SQLITE_ERROR;
      }
    if (!rc && (n % 2 || n == 0)) {
      *errmsg = sqlite3_mprintf("%s: option 'init_prefix' must be a prefix BLOB written as hex text (hex(blob)); it has "
                                "%lld hex digits, an odd number", fn, (long long)n);
      if (n == 0) { sqlite3_free(*errmsg); *errmsg = sqlite3_mprintf("%s: option 'init_prefix' is empty", fn); }
      rc = SQLITE_ERROR;
    }
    if (!rc) {
      uint8_t *b = (uint8_t *)o->init_hex;
      for (size_t i = 0; i < n / 2; i++) b[i] = (uint8_t)(hexval((unsigned char)o->init_hex[2 * i]) * 16 + hexval((unsigned char)o->init_hex[2 * i + 1]));
      o->p.init_prefix = b;
      o->p.init_prefix_len = n / 2;
    }
  }
  if (!rc && o->p.mid_dim >= 0 && o->p.mode == PF_MODE_EMBEDDING) {
    *errmsg = sqlite3_mprintf("%s: option 'mid_dim' applies to mode 'prefix' only (mode 'embedding' learns the embeddings "
                              "directly)", fn);
    rc = SQLITE_ERROR;
  }
  return rc;
}

int pfx_parse_score_options(sqlite3 *db, const char *fn, sqlite3_value *json, pfx_score_opts *o, char ***owned,
                            int *n_owned, char **errmsg) {
  return pfx_parse_options(db, fn, json, score_table, (int)(sizeof score_table / sizeof score_table[0]), o, owned,
                           n_owned, errmsg);
}
