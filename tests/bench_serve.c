/*
** bench_serve.c — many customers online at once (make bench-serve; docs/performance.md). Not a test: it prints
** figures and never fails on time.
**
** C client threads, each with its own SQLite connection and its own customer's prefix (random keys and values
** of 10 positions, encoded as a prefix BLOB), each making 2 requests of 64 tokens (ignore_eos) in turn: with
** prefix_generate (aggregate tokens/s, request latency p50 and p99), then reading prefix_generate_stream
** (tokens/s, time to first token p50 and p99). Then the same 16 requests in one prefix_generate_batch
** statement, for the ratio the scheduler reaches. Then scoring: each client scores 2 completions of about 64
** tokens with prefix_score (scored tokens/s, latency p50 and p99), beside the same 16 clients' pairs scored in
** turn by one statement.
**
**   dist/bench-serve MODEL.gguf [CLIENTS...]      (default 1 4 16 64)
*/
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../engine/train.h"
#include "../ext/sqlite_prefix.h"

#define NTOK 64
#define REQS 2   /* requests per client */
#define P 10

static const char *g_model;
static uint8_t *g_blob[64];
static size_t g_blob_len[64];

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

/* a connection; load: load the model (once per process: the registry is process-wide, every connection sees it) */
static sqlite3 *open_db(int load) {
  sqlite3 *db;
  if (sqlite3_open(":memory:", &db) != SQLITE_OK) return NULL;
  if (!load) return db;
  char sql[1024];
  snprintf(sql, sizeof sql, "SELECT prefix_model_load('m', '%s')", g_model);
  if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK) { fprintf(stderr, "%s\n", sqlite3_errmsg(db)); return NULL; }
  return db;
}

typedef struct client {
  int id, tokens, stream;   /* stream: 0 prefix_generate, 1 prefix_generate_stream, 2 prefix_score */
  double ttft[REQS], lat[REQS];
} client;

static const char *PROMPTS[] = {"Once upon a time", "The little dog", "Lily and Tom went to the park", "One day, a bird"};
static const char *COMPLETION = " there was a little girl named Lily. She loved to play outside in the sun with her "
                                "big red ball and her small brown dog, who ran after the ball all day long.";

static void *client_run(void *arg) {
  client *c = arg;
  sqlite3 *db = open_db(0);
  sqlite3_stmt *st = NULL;
  const char *sql = c->stream == 2 ? "SELECT json_extract(prefix_score('m', ?1, ?2, ?3), '$.tokens')"
                    : c->stream    ? "SELECT piece FROM prefix_generate_stream('m', ?1, ?2, '{\"max_tokens\": 64, \"ignore_eos\": true}')"
                                   : "SELECT prefix_generate('m', ?1, ?2, '{\"max_tokens\": 64, \"ignore_eos\": true}')";
  if (!db || sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
    fprintf(stderr, "bench-serve: %s\n", db ? sqlite3_errmsg(db) : "cannot open");
    return NULL;
  }
  for (int r = 0; r < REQS; r++) {
    sqlite3_bind_blob(st, 1, g_blob[c->id % 64], (int)g_blob_len[c->id % 64], SQLITE_STATIC);
    sqlite3_bind_text(st, 2, PROMPTS[(c->id + r) % 4], -1, SQLITE_STATIC);
    if (c->stream == 2) sqlite3_bind_text(st, 3, COMPLETION, -1, SQLITE_STATIC);
    double t0 = now();
    int n = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
      if (n++ == 0) c->ttft[r] = now() - t0;
      if (!c->stream) n = NTOK;   /* ignore_eos, no stop: exactly max_tokens */
      if (c->stream == 2) n = sqlite3_column_int(st, 0);   /* the completion's scored tokens */
    }
    c->lat[r] = now() - t0;
    c->tokens += n;
    sqlite3_reset(st);
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  return NULL;
}

/* the scheduler's steps and tokens so far (prefix_serving) */
static void counters(sqlite3 *db, long *steps, long *tokens) {
  sqlite3_stmt *st;
  *steps = *tokens = 0;
  if (sqlite3_prepare_v2(db, "SELECT steps, tokens FROM prefix_serving", -1, &st, NULL) != SQLITE_OK) return;
  if (sqlite3_step(st) == SQLITE_ROW) { *steps = sqlite3_column_int64(st, 0); *tokens = sqlite3_column_int64(st, 1); }
  sqlite3_finalize(st);
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}
static double pct(double *v, int n, double q) {
  qsort(v, (size_t)n, sizeof *v, cmp_d);
  int i = (int)(q * (n - 1) + 0.5);
  return v[i];
}

/* the same 16 requests (one per customer) in one prefix_generate_batch statement */
static double one_batch(int n) {
  sqlite3 *db = open_db(0);
  sqlite3_exec(db, "CREATE TABLE req(id INTEGER PRIMARY KEY, prefix BLOB, prompt TEXT)", NULL, NULL, NULL);
  sqlite3_stmt *ins;
  sqlite3_prepare_v2(db, "INSERT INTO req VALUES (?1, ?2, ?3)", -1, &ins, NULL);
  for (int i = 0; i < n; i++) {
    sqlite3_bind_int(ins, 1, i);
    sqlite3_bind_blob(ins, 2, g_blob[i % 64], (int)g_blob_len[i % 64], SQLITE_STATIC);
    sqlite3_bind_text(ins, 3, PROMPTS[i % 4], -1, SQLITE_STATIC);
    sqlite3_step(ins);
    sqlite3_reset(ins);
  }
  sqlite3_finalize(ins);
  char sql[256];
  snprintf(sql, sizeof sql, "SELECT sum(n_tokens) FROM prefix_generate_batch('m', 'SELECT id, prefix, prompt FROM req', "
           "'{\"max_tokens\": 64, \"ignore_eos\": true, \"batch_size\": %d}')", n);
  sqlite3_stmt *st;
  sqlite3_prepare_v2(db, sql, -1, &st, NULL);
  double best = 0;
  for (int round = 0; round < 2; round++) {
    double t0 = now();
    long tok = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    double dt = now() - t0;
    sqlite3_reset(st);
    if (tok / dt > best) best = tok / dt;
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  return best;
}

/* the pairs of n clients, scored in turn by one statement: scored tokens/s */
static double one_scoring(int n) {
  sqlite3 *db = open_db(0);
  sqlite3_exec(db, "CREATE TABLE req(id INTEGER PRIMARY KEY, prefix BLOB, prompt TEXT)", NULL, NULL, NULL);
  sqlite3_stmt *ins, *st;
  sqlite3_prepare_v2(db, "INSERT INTO req VALUES (?1, ?2, ?3)", -1, &ins, NULL);
  for (int i = 0; i < n * REQS; i++) {
    sqlite3_bind_int(ins, 1, i);
    sqlite3_bind_blob(ins, 2, g_blob[(i / REQS) % 64], (int)g_blob_len[(i / REQS) % 64], SQLITE_STATIC);
    sqlite3_bind_text(ins, 3, PROMPTS[(i / REQS + i % REQS) % 4], -1, SQLITE_STATIC);
    sqlite3_step(ins);
    sqlite3_reset(ins);
  }
  sqlite3_finalize(ins);
  sqlite3_prepare_v2(db, "SELECT sum(json_extract(prefix_score('m', prefix, prompt, ?1), '$.tokens')) FROM req", -1, &st, NULL);
  sqlite3_bind_text(st, 1, COMPLETION, -1, SQLITE_STATIC);
  double t0 = now();
  long tok = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
  double dt = now() - t0;
  sqlite3_finalize(st);
  sqlite3_close(db);
  return tok / dt;
}

int main(int argc, char **argv) {
  if (argc < 2) { fprintf(stderr, "usage: bench-serve MODEL.gguf [CLIENTS...]\n"); return 2; }
  g_model = argv[1];
  sqlite3_auto_extension((void (*)(void))sqlite3_prefix_init);
  pf_err e;
  pf_model *m = pf_model_load(g_model, &e);
  if (!m) { fprintf(stderr, "bench-serve: %s\n", e.msg); return 1; }
  const pf_hparams *hp = pf_model_hparams(m);
  size_t nkv = (size_t)hp->n_layer * 2 * P * hp->n_head_kv * hp->head_dim;
  float *kv = malloc(sizeof(float) * nkv);
  uint64_t x = 88172645463325252ull;
  for (int c = 0; c < 64; c++) {   /* each customer's prefix: small random keys and values */
    for (size_t i = 0; i < nkv; i++) {
      x ^= x << 13; x ^= x >> 7; x ^= x << 17;
      kv[i] = (float)((x >> 40) * (1.0 / 8388608.0) - 1.0) * 0.5f;
    }
    if (pf_prefix_encode(m, kv, P, PF_DTYPE_F32, "{}", &g_blob[c], &g_blob_len[c], &e)) { fprintf(stderr, "%s\n", e.msg); return 1; }
  }
  free(kv);
  pf_model_free(m);
  int counts[16] = {1, 4, 16, 64}, nc = 4;
  if (argc > 2) {
    nc = 0;
    for (int i = 2; i < argc && nc < 16; i++) counts[nc++] = atoi(argv[i]);
  }
  printf("%-8s %-8s %12s %12s %12s %12s\n", "clients", "calls", "tokens/s", "p50 ms", "p99 ms", "rows/step");
  sqlite3 *keep = open_db(1);   /* the model, loaded once for the process; not timed */
  if (!keep) return 1;
  for (int k = 0; k < 3 * nc; k++) {
    int C = counts[k / 3], stream = k % 3;
    client *cl = calloc((size_t)C, sizeof *cl);
    pthread_t *th = calloc((size_t)C, sizeof *th);
    long s0, k0, s1, k1;
    counters(keep, &s0, &k0);
    double t0 = now();
    for (int i = 0; i < C; i++) { cl[i].id = i; cl[i].stream = stream; pthread_create(&th[i], NULL, client_run, &cl[i]); }
    long tok = 0;
    for (int i = 0; i < C; i++) { pthread_join(th[i], NULL); tok += cl[i].tokens; }
    double wall = now() - t0;
    counters(keep, &s1, &k1);
    double *tt = calloc((size_t)C * REQS, sizeof *tt), *lt = calloc((size_t)C * REQS, sizeof *lt);
    for (int i = 0; i < C; i++)
      for (int r = 0; r < REQS; r++) { tt[i * REQS + r] = cl[i].ttft[r] * 1e3; lt[i * REQS + r] = cl[i].lat[r] * 1e3; }
    double *v = stream == 1 ? tt : lt;   /* streams: time to first token; whole calls and scoring: latency */
    printf("%-8d %-8s %12.1f %12.1f %12.1f %12.1f\n", C, stream == 2 ? "score" : stream ? "stream" : "generate", tok / wall, pct(v, C * REQS, 0.5),
           pct(v, C * REQS, 0.99), s1 > s0 ? (double)(k1 - k0) / (double)(s1 - s0) : 0.0);
    fflush(stdout);
    free(tt); free(lt); free(cl); free(th);
  }
  printf("one prefix_generate_batch of the same 16 requests: %.1f tokens/s\n", one_batch(16));
  printf("one statement scoring the 16 clients' pairs in turn: %.1f scored tokens/s\n", one_scoring(16));
  for (int c = 0; c < 64; c++) free(g_blob[c]);
  sqlite3_close(keep);
  return 0;
}
