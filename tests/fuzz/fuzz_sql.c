/*
** fuzz_sql.c — libFuzzer target: random calls of every SQL function of the
** extension with random arguments, on one connection, as a careless or
** hostile user (or a view another tenant wrote) could make them.
**
** Input: a sequence of calls. Each call is a byte choosing the function and
** its arity, then one argument after another: a byte choosing the kind (NULL,
** integer, real, text, BLOB, a model name, a word from a dictionary of
** plausible values, the valid prefix BLOB — maybe with a byte changed), then
** the bytes of the value. prefix_model_load reads files: its paths come from
** a fixed list of the project's models; prefix_model_unload never takes 'm'.
*/
#include "sqlharness.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n);

/* json: the call's result is JSON; the statement's last column checks it is valid */
typedef struct call { const char *sql; int nargs, json; } call;
#define JSON(expr) "SELECT v, json_valid(v) IS NOT 0 FROM (SELECT " expr " AS v)"
static const call calls[] = {
    {"SELECT prefix_version()", 0},
    {JSON("prefix_system()"), 0, 1},
    {JSON("prefix_cache_stats()"), 0, 1},
    {JSON("prefix_tokenize(?1, ?2)"), 2, 1},
    {JSON("prefix_tokenize(?1, ?2, ?3)"), 3, 1},
    {"SELECT prefix_detokenize(?1, ?2)", 2},
    {"SELECT prefix_chat(?1, ?2)", 2},
    {"SELECT prefix_chat(?1, ?2, ?3)", 3},
    {"SELECT prefix_generate(?1, ?2, ?3)", 3},
    {"SELECT prefix_generate(?1, ?2, ?3, ?4)", 4},
    {JSON("prefix_score(?1, ?2, ?3, ?4)"), 4, 1},
    {JSON("prefix_score(?1, ?2, ?3, ?4, ?5)"), 5, 1},
    {JSON("prefix_info(?1)"), 1, 1},
    {"SELECT length(prefix_train(?1, ?2))", 2},
    {"SELECT length(prefix_train(?1, ?2, ?3))", 3},
    {"SELECT length(prefix_train_agg(?1, ?2, ?3)) FROM t", 3},
    {"SELECT length(prefix_train_agg(?1, a, b, ?2)) FROM t", 2},
    {"SELECT * FROM prefix_generate_batch(?1, ?2)", 2},
    {"SELECT * FROM prefix_generate_batch(?1, ?2, ?3)", 3},
    {"SELECT * FROM prefix_generate_stream(?1, ?2, ?3)", 3},
    {"SELECT * FROM prefix_generate_stream(?1, ?2, ?3, ?4) LIMIT 2", 4},
    {"SELECT length(prefix_ensemble(x)) FROM (SELECT ?1 AS x UNION ALL SELECT ?2)", 2},
    {"SELECT prefix_generate(?1, (SELECT prefix_ensemble(x) FROM (SELECT ?2 AS x UNION ALL SELECT ?2)), ?3, ?4)", 4},
    {"SELECT prefix_bleu(?1, ?2), prefix_chrf(?1, ?2), prefix_rouge_l(?1, ?2)", 2},
    {"SELECT prefix_bleu(a, ?1) FROM t", 1},
    {"SELECT length(prefix_train(?1, ?2, json_object('max_steps', 1, 'init_prefix', hex(?3))))", 3},
    {"SELECT length(prefix_export(?1, ?2)), prefix_export_config(?1)", 2},
    {"SELECT length(prefix_import(?1, ?2, ?3))", 3},
    {"SELECT length(prefix_import(?1, prefix_export(?2, 'peft')))", 2},
    {"SELECT length(prefix_help()), length(prefix_debug())", 0},
    {"SELECT * FROM prefix_models", 0},
    {"SELECT * FROM prefix_jobs", 0},
    {"SELECT prefix_model_load(?1, ?2)", -2},   /* path from the fixed list */
    {"SELECT prefix_model_unload(?1)", -1},     /* never 'm' */
};

static const char *words[] = {
    "Once upon a time", "", " ", "<|im_start|>user\nHi<|im_end|>", "\xff\xfe", "<0x41>",
    "{\"max_tokens\": 3}", "{\"max_tokens\": 3, \"temperature\": 0.9, \"top_k\": 5, \"top_p\": 0.5, \"seed\": 7}",
    "{\"max_tokens\": 2, \"stop\": [\".\", \"a\"]}", "{\"max_steps\": 2}", "{\"max_steps\": 1, \"mode\": \"embedding\"}",
    "{\"max_steps\": 1, \"prefix_len\": 2047}", "{\"max_steps\": 1, \"val_query\": \"SELECT a, b FROM t\"}",
    "{\"add_eos\": false}", "{\"per_token\": true}", "{\"max_tokens\": 3, \"beam_size\": 3}",
    "{\"max_tokens\": 4, \"beam_size\": 2, \"no_repeat_ngram_size\": 1, \"length_penalty\": -2, \"stop\": [\"a\"]}",
    "{\"max_steps\": 1, \"save_state\": true}", "{\"max_steps\": 2, \"batch_size\": 1, \"dp\": {\"epsilon\": 3, \"noise_seed\": 5}}", "[\"Once upon a time\", \"x\"]", "[\"\"]", "[[1]]", "{\"add_special\": false, \"parse_special\": false}", "{\"template\": \"llama3\"}",
    "{\"batch_size\": 2, \"max_tokens\": 2}", "{}", "[]", "null", "{\"max_tokens\": -1}",
    "[1, 403, 407]", "[0, 511, 512, -1]", "[1.5]", "[\"a\"]",
    "[{\"role\": \"user\", \"content\": \"Hi\"}]", "peft", "{\"peft_type\": \"PREFIX_TUNING\", \"num_virtual_tokens\": 2}", "[{\"role\": \"system\", \"content\": \"S\"}, {\"role\": \"user\", \"content\": \"Q\"}]",
    "SELECT a, b FROM t", "SELECT a, NULL FROM t", "SELECT 1, 2", "SELECT a, b FROM t WHERE 0",
    "SELECT rowid, NULL, a FROM t", "SELECT rowid, (SELECT b FROM p), a FROM t", "SELECT 1, x'00', 'hi'",
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x, x FROM c",
    "DELETE FROM t RETURNING a, b", "SELECT a, b FROM t; DROP TABLE t",
};

typedef struct rd { const uint8_t *p; size_t n; } rd;
static int rd_byte(rd *r) { if (!r->n) return -1; r->n--; return *r->p++; }
static size_t rd_take(rd *r, const uint8_t **out) {
  int l = rd_byte(r);
  size_t len = l < 0 ? 0 : (size_t)l;
  if (l >= 0xF0) len = (size_t)(l - 0xF0) << 8 | (size_t)(rd_byte(r) & 0xFF);   /* up to 4 KB */
  if (len > r->n) len = r->n;
  *out = r->p;
  r->p += len, r->n -= len;
  return len;
}

static void bind_arg(sqlite3_stmt *st, int i, rd *r, unsigned char *scratch) {
  static const char *names[] = {"m", "q", "g", "nope", "", "M"};
  int kind = rd_byte(r);
  const uint8_t *p;
  size_t len;
  switch (kind < 0 ? 0 : kind % 9) {
    case 0: sqlite3_bind_null(st, i); break;
    case 1: { sqlite3_int64 v = 0; len = rd_take(r, &p); memcpy(&v, p, len < 8 ? len : 8); sqlite3_bind_int64(st, i, v); break; }
    case 2: { double v = 0; len = rd_take(r, &p); memcpy(&v, p, len < 8 ? len : 8); sqlite3_bind_double(st, i, v); break; }
    case 3: len = rd_take(r, &p); sqlite3_bind_text(st, i, (const char *)p, (int)len, SQLITE_TRANSIENT); break;
    case 4: len = rd_take(r, &p); sqlite3_bind_blob(st, i, p, (int)len, SQLITE_TRANSIENT); break;
    case 5: sqlite3_bind_text(st, i, names[(unsigned)rd_byte(r) % 6], -1, SQLITE_STATIC); break;
    case 6: case 7: sqlite3_bind_text(st, i, words[(unsigned)rd_byte(r) % (sizeof words / sizeof words[0])], -1, SQLITE_STATIC); break;
    default: {   /* the valid prefix, maybe with one byte changed, maybe cut */
      memcpy(scratch, g_prefix, (size_t)g_prefix_len);
      int at = rd_byte(r), v = rd_byte(r), cut = rd_byte(r);
      if (at >= 0 && v >= 0 && (at & 1)) scratch[(size_t)at * 131 % (size_t)g_prefix_len] ^= (unsigned char)(v | 1);
      int len2 = cut > 0xF8 ? g_prefix_len * (cut - 0xF8) / 8 : g_prefix_len;
      sqlite3_bind_blob(st, i, scratch, len2, SQLITE_TRANSIENT);
    }
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
  if (n > 16384) return 0;
  static unsigned char *scratch;
  if (!scratch) scratch = malloc((size_t)g_prefix_len);
  rd r = {data, n};
  for (int calls_left = 8; calls_left > 0 && r.n; calls_left--) {
    const call *c = &calls[(unsigned)rd_byte(&r) % (sizeof calls / sizeof calls[0])];
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(g_db, c->sql, -1, &st, NULL) != SQLITE_OK) __builtin_trap();
    if (c->nargs == -2) {   /* prefix_model_load: a name, and a path from the list */
      static const char *names[] = {"x", "y", "q", "g"};
      const char *paths[] = {fz_path("stories260K.gguf", 0), fz_path("families/qwen2-tiny.gguf", 0),
                             fz_path("gpt2/gpt2-vocab-only.gguf", 1), "/dev/null", "/nonexistent.gguf", fz_path("", 0)};
      int a = rd_byte(&r), b = rd_byte(&r);
      sqlite3_bind_text(st, 1, names[(unsigned)a % 4], -1, SQLITE_STATIC);
      sqlite3_bind_text(st, 2, paths[(unsigned)b % 6], -1, SQLITE_TRANSIENT);
    } else if (c->nargs == -1) {
      static const char *names[] = {"x", "y", "nope"};
      sqlite3_bind_text(st, 1, names[(unsigned)rd_byte(&r) % 3], -1, SQLITE_STATIC);
    } else {
      for (int i = 1; i <= c->nargs; i++) bind_arg(st, i, &r, scratch);
    }
    fz_run_json(st, c->json);
  }
  return 0;
}
