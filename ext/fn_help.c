/*
** pfx_fn_help.c — prefix_help() lists the SQL surface; prefix_debug() says what was built and what runs
** (version, commit, build flags, CPU features, kernel, BLAS, threads), for bug reports.
*/
#include "ext.h"
SQLITE_EXTENSION_INIT3

#include <string.h>
#include "buildinfo.h"   /* PF_COMMIT, PF_BUILD_FLAGS: written by the Makefile */

/* one line per function or table: signature, then what it does */
static const char *const help[] = {
    "prefix_version()                                   the extension's version",
    "prefix_help()                                      this list",
    "prefix_debug()                                     version, commit, build flags, CPU, kernel, BLAS, threads",
    "prefix_system()                                    threads, kernel in use and measured GFLOP/s (JSON)",
    "prefix_model_load(name, path [, options])          load a GGUF model under a name (process-wide); kv_budget_mb",
    "prefix_model_unload(name)                          forget a loaded model",
    "prefix_models                                      table: the loaded models and their shapes",
    "prefix_tokenize(model, text [, options])           token ids as a JSON array",
    "prefix_detokenize(model, ids)                      text of a JSON array of ids",
    "prefix_chat(model, messages [, options])           a conversation in the model's chat format",
    "prefix_generate(model, prefix, prompt [, options]) a continuation (greedy, sampling or beam search)",
    "prefix_generate_batch(model, query [, options])    table: many rows decoded together (id, text, n_tokens, finish_reason, prefix_id)",
    "prefix_generate_stream(model, prefix, prompt [, options])  table: one row per token (i, token_id, piece, logprob)",
    "prefix_train(model, query [, options])             train a prefix on (prompt, completion) rows; a BLOB",
    "prefix_train_agg(model, prompt, completion [, options])  aggregate: one prefix per group",
    "prefix_score(model, prefix, prompt, completion [, options])  NLL of a completion (JSON; per_token)",
    "prefix_info(blob)                                  a prefix or ensemble BLOB described (JSON)",
    "prefix_ensemble(prefix)                            aggregate: prefixes packed into one ensemble BLOB",
    "prefix_export(prefix, 'peft')                      a Hugging Face PEFT adapter (safetensors bytes)",
    "prefix_export_config(prefix [, 'peft'])            its adapter_config.json",
    "prefix_import(model, safetensors [, config])       a PEFT prefix-tuning adapter as a prefix BLOB",
    "prefix_bleu(hypothesis, references)                aggregate: corpus BLEU-4 (mteval-13a)",
    "prefix_chrf(hypothesis, references)                aggregate: corpus chrF2",
    "prefix_rouge_l(hypothesis, references)             aggregate: mean ROUGE-L",
    "prefix_jobs                                        table: training runs of this process and their progress",
    "prefix_serving                                     table: each model's scheduler: requests, rows, queue, tokens/s",
    "prefix_cache_stats()                               the decoded-prefix cache's counters (JSON)",
};

void pfx_fn_help(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  (void)argc; (void)argv;
  sqlite3_str *s = sqlite3_str_new(sqlite3_context_db_handle(ctx));
  sqlite3_str_appendf(s, "sqlite-prefix %s — prefix-tuning inside SQLite. docs/sql.md has every argument, option and error.\n", PF_VERSION);
  for (size_t i = 0; i < sizeof help / sizeof help[0]; i++) sqlite3_str_appendf(s, "%s\n", help[i]);
  int n = sqlite3_str_length(s);
  char *t = sqlite3_str_finish(s);
  if (t) sqlite3_result_text(ctx, t, n, sqlite3_free);
  else sqlite3_result_error_nomem(ctx);
}

void pfx_fn_debug(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  (void)argc; (void)argv;
  char info[1024];
  pf_build_info(info, sizeof info);
  char *t = sqlite3_mprintf("Version: %s\nCommit: %s\nBuild flags: %s\nSQLite: %s (built against %s)\n%s", PF_VERSION, PF_COMMIT,
                            PF_BUILD_FLAGS, sqlite3_libversion(), SQLITE_VERSION, info);
  if (t) sqlite3_result_text(ctx, t, -1, sqlite3_free);
  else sqlite3_result_error_nomem(ctx);
}
