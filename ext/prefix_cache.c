/*
** prefix_cache.c — decoded prefix BLOBs, cached by a hash of their bytes.
**
** Decoding a BLOB means verifying its checksum, checking every value and
** converting f16 to f32. Rows that reuse a customer's prefix (a JOIN against
** the prefixes table, or prefix_generate_batch) decode it once: the process
** keeps the 64 most recently used decoded prefixes. Entries are immutable
** and reference-counted, so a statement keeps its prefix while others evict.
**
** The hash only finds the slot: an entry keeps a copy of the BLOB's bytes and
** a hit requires them equal, so a BLOB crafted to collide with another
** tenant's gets decoded (and checked) on its own, never the other's prefix.
**
** Below the cache: a prefix argument as every function takes it (NULL, or a BLOB of this model).
*/
#include "ext.h"
SQLITE_EXTENSION_INIT3

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "../engine/train.h"

#define CACHE_SLOTS 64

struct pfx_prefix_ref {
  pf_prefix p;
  uint64_t key;
  size_t len;
  uint8_t *bytes;   /* the BLOB, compared on every hit */
  int refs;
  uint64_t used;
};

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pfx_prefix_ref *g_slot[CACHE_SLOTS];
static uint64_t g_clock;
static uint64_t g_hits, g_misses;

static void unref_locked(pfx_prefix_ref *r) {
  if (--r->refs == 0) {
    pf_prefix_clear(&r->p);
    free(r->bytes);
    free(r);
  }
}

void pfx_prefix_release(pfx_prefix_ref *r) {
  if (!r) return;
  pthread_mutex_lock(&g_mu);
  unref_locked(r);
  pthread_mutex_unlock(&g_mu);
}

const pf_prefix *pfx_prefix_get(const pfx_prefix_ref *r) { return &r->p; }

/* prefix_cache_stats(): {"entries": n, "hits": h, "misses": m} */
void pfx_fn_cache_stats(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  (void)argc; (void)argv;
  int n = 0;
  pthread_mutex_lock(&g_mu);
  for (int i = 0; i < CACHE_SLOTS; i++) n += g_slot[i] != NULL;
  char *j = sqlite3_mprintf("{\"entries\":%d,\"hits\":%llu,\"misses\":%llu}", n, (unsigned long long)g_hits,
                            (unsigned long long)g_misses);
  pthread_mutex_unlock(&g_mu);
  if (j) { sqlite3_result_text(ctx, j, -1, sqlite3_free); sqlite3_result_subtype(ctx, PFX_JSON_SUBTYPE); }
  else sqlite3_result_error_nomem(ctx);
}


/* For tests only (tests/test_sqlapi.c finds it with dlsym): keep this many bits of the hash, so that
** a test can make every BLOB collide and see that the bytes decide. */
int pfx_test_cache_hash_bits = 64;

int pfx_prefix_decode_cached(const uint8_t *blob, size_t len, pfx_prefix_ref **out, pf_err *err) {
  uint64_t key = pf_hash64(blob, len, 0x5046584341434845ull);
  if (pfx_test_cache_hash_bits < 64) key &= pfx_test_cache_hash_bits <= 0 ? 0 : (1ull << pfx_test_cache_hash_bits) - 1;
  *out = NULL;
  pthread_mutex_lock(&g_mu);
  for (int i = 0; i < CACHE_SLOTS; i++) {
    pfx_prefix_ref *r = g_slot[i];
    if (r && r->key == key && r->len == len && !memcmp(r->bytes, blob, len)) {
      r->refs++;
      r->used = ++g_clock;
      g_hits++;
      pthread_mutex_unlock(&g_mu);
      *out = r;
      return PF_OK;
    }
  }
  g_misses++;
  pthread_mutex_unlock(&g_mu);
  pfx_prefix_ref *r = calloc(1, sizeof *r);
  if (r) r->bytes = malloc(len ? len : 1);
  if (!r || !r->bytes) { free(r); return pf_seterr(err, PF_NOMEM, "out of memory caching a prefix of %zu bytes", len); }
  if (len) memcpy(r->bytes, blob, len);   /* (an empty BLOB may come as NULL) */
  int rc = pf_prefix_decode(blob, len, &r->p, err);
  if (rc) { free(r->bytes); free(r); return rc; }
  r->key = key;
  r->len = len;
  r->refs = 2;   /* the cache's and the caller's */
  pthread_mutex_lock(&g_mu);
  int at = 0;
  for (int i = 0; i < CACHE_SLOTS; i++) {
    if (!g_slot[i]) { at = i; break; }
    if (g_slot[i]->used < g_slot[at]->used) at = i;
  }
  if (g_slot[at]) unref_locked(g_slot[at]);
  r->used = ++g_clock;
  g_slot[at] = r;
  pthread_mutex_unlock(&g_mu);
  *out = r;
  return PF_OK;
}

#ifndef SQLITE_CORE
__attribute__((destructor)) static void prefix_cache_unload(void) {
  for (int i = 0; i < CACHE_SLOTS; i++)
    if (g_slot[i]) { unref_locked(g_slot[i]); g_slot[i] = NULL; }
}
#endif

/* ----------------------------------------------------- prefix arguments */

char *pfx_check_prefix(const pf_prefix *p, const pfx_model *pm, const char *model_name) {
  pf_err e;
  if (pf_prefix_check_model(p, pfx_model_engine(pm), model_name, &e)) return sqlite3_mprintf("%s", e.msg);
  return NULL;
}

int pfx_arg_prefix(sqlite3_context *ctx, const char *fn, sqlite3_value *v, const pfx_model *pm, const char *model_name,
                   pfx_prefix_ref **out) {
  *out = NULL;
  if (sqlite3_value_type(v) == SQLITE_NULL) return 0;
  if (sqlite3_value_type(v) != SQLITE_BLOB) {
    pfx_result_errorf(ctx, "%s: prefix must be a BLOB from prefix_train (or NULL), got %s", fn,
                              sqlite3_value_type(v) == SQLITE_TEXT ? "text" : "a number");
    return -1;
  }
  pf_err e;
  if (pfx_prefix_decode_cached(sqlite3_value_blob(v), (size_t)sqlite3_value_bytes(v), out, &e)) {
    pfx_result_err(ctx, fn, &e);
    return -1;
  }
  char *bad = pfx_check_prefix(pfx_prefix_get(*out), pm, model_name);
  if (bad) {
    pfx_result_errorf(ctx, "%s: %s", fn, bad);
    sqlite3_free(bad);
    pfx_prefix_release(*out);
    *out = NULL;
    return -1;
  }
  return 0;
}
