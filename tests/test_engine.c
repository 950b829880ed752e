/*
** test_engine.c — the engine against the default model and its published
** facts, and the fast paths against their references.
*/
#include <math.h>
#include <unistd.h>

#include "internal.h"
#include "testlib.h"

static const char *STORY =
    ", there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. "
    "She wanted to play with it, but it was too high.";

static void test_tokenize(pf_model *m) {
  pf_err e;
  int *ids, n;
  int rc = pf_tokenize(m, "Once upon a time", 16, 1, &ids, &n, &e);
  int want[] = {1, 403, 407, 261, 378};
  int ok = rc == 0 && n == 5;
  for (int i = 0; ok && i < 5; i++) ok = ids[i] == want[i];
  CHECK(ok, "tokenize 'Once upon a time' = [1,403,407,261,378]", "rc=%d n=%d", rc, n);
  free(ids);

  /* round trip through byte fallback and multi-byte characters */
  const char *texts[] = {"Hello world", " two  spaces", "héllo wörld — 日本語 🙂", "tab\tand\nnewline", "",
                         "\xC3\xA9\xE2\x82\xAC"};
  for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
    char *back; size_t bl;
    rc = pf_tokenize(m, texts[i], strlen(texts[i]), 1, &ids, &n, &e);
    rc = rc ? rc : pf_detokenize(m, ids, n, 1, &back, &bl, &e);
    char name[128];
    snprintf(name, sizeof name, "tokenize/detokenize round trip #%zu", i);
    CHECK(rc == 0 && strcmp(back, texts[i]) == 0, name, "got '%s'", rc ? e.msg : back);
    if (!rc) free(back);
    free(ids);
  }
  /* decoding never cuts a character: a lone byte token of a 3-byte char */
  int bad[] = {403, 3 + 0xE6};
  char *t; size_t tl;
  rc = pf_detokenize(m, bad, 2, 1, &t, &tl, &e);
  CHECK(rc == 0 && strcmp(t, "Once\xEF\xBF\xBD") == 0, "incomplete UTF-8 decodes to U+FFFD", "got '%s'", rc ? e.msg : t);
  if (!rc) free(t);
  int oob[] = {5000};
  rc = pf_detokenize(m, oob, 1, 1, &t, &tl, &e);
  CHECK(rc != 0 && t_contains(e.msg, "token id 5000 at index 0 is outside the vocabulary (0..511)"),
        "detokenize rejects an id outside the vocabulary", "rc=%d %s", rc, e.msg);
}

static void test_greedy(pf_model *m) {
  pf_sample_params p;
  pf_sample_params_default(&p);
  p.max_tokens = 60;
  pf_gen_result r;
  pf_err e;
  int rc = pf_generate(m, NULL, 0, "Once upon a time", 16, &p, NULL, NULL, &r, &e);
  CHECK(rc == 0 && strncmp(r.text, STORY, strlen(STORY)) == 0, "greedy continuation matches the model card",
        "got '%s'", rc ? e.msg : r.text);
  CHECK(rc == 0 && r.n_tokens == 60 && r.finish == PF_FINISH_LENGTH && r.n_prompt == 5,
        "generation counts tokens and reports length", "n=%d finish=%d", r.n_tokens, r.finish);
  pf_gen_result_clear(&r);

  /* stop string */
  static char stop_lily[] = "Lily";
  p.stop[0] = stop_lily;
  p.n_stop = 1;
  rc = pf_generate(m, NULL, 0, "Once upon a time", 16, &p, NULL, NULL, &r, &e);
  CHECK(rc == 0 && strcmp(r.text, ", there was a little girl named ") == 0 && r.finish == PF_FINISH_STOP,
        "stop string ends generation before it", "got '%s'", rc ? e.msg : r.text);
  pf_gen_result_clear(&r);
  p.n_stop = 0;

  /* sampling: same seed, same text; another seed, other text */
  p.temperature = 1.0f; p.top_p = 0.95f; p.seed = 7; p.max_tokens = 40;
  pf_gen_result a, b, c;
  int ra = pf_generate(m, NULL, 0, "Once upon a time", 16, &p, NULL, NULL, &a, &e);
  int rb = pf_generate(m, NULL, 0, "Once upon a time", 16, &p, NULL, NULL, &b, &e);
  p.seed = 8;
  int rcc = pf_generate(m, NULL, 0, "Once upon a time", 16, &p, NULL, NULL, &c, &e);
  CHECK(!ra && !rb && !rcc && !strcmp(a.text, b.text) && strcmp(a.text, c.text), "same seed same text, other seed other text",
        "a='%s' c='%s'", a.text, c.text);
  pf_gen_result_clear(&a); pf_gen_result_clear(&b); pf_gen_result_clear(&c);

  /* top_k = 1 is greedy whatever the temperature */
  p.top_k = 1; p.temperature = 5.0f; p.max_tokens = 20;
  rc = pf_generate(m, NULL, 0, "Once upon a time", 16, &p, NULL, NULL, &r, &e);
  CHECK(rc == 0 && strncmp(r.text, STORY, strlen(r.text)) == 0 && r.len > 20, "top_k 1 equals greedy", "got '%s'", r.text);
  pf_gen_result_clear(&r);

  /* context limit */
  pf_sample_params_default(&p);
  p.max_tokens = 2044;
  rc = pf_generate(m, NULL, 0, "Once upon a time", 16, &p, NULL, NULL, &r, &e);
  CHECK(rc == PF_TOOBIG && !strcmp(e.msg, "prompt (5 tokens) + max_tokens (2044) = 2049 exceeds the model's context of 2048"),
        "prompt + max_tokens over the context is refused with both numbers", "rc=%d %s", rc, e.msg);
}

/* logits of a whole prompt at once vs one token at a time through the cache */
static void test_kv_cache(pf_model *m, const char *label) {
  const pf_hparams *hp = pf_model_hparams(m);
  pf_err e;
  int *ids, n;
  const char *text = "Lily and Ben went to the park. They saw a dog and played with a ball.";
  pf_tokenize(m, text, strlen(text), 1, &ids, &n, &e);
  if (n > 40) n = 40;
  if (hp->n_vocab < 512) for (int i = 0; i < n; i++) ids[i] %= hp->n_vocab;
  size_t V = (size_t)hp->n_vocab;
  float *full = malloc(sizeof(float) * V * n), *step = malloc(sizeof(float) * V * n);
  int P = 3;
  size_t kvd = (size_t)hp->n_head_kv * hp->head_dim, np = (size_t)hp->n_layer * 2 * P * kvd;
  float *prefix = malloc(sizeof(float) * np);
  for (size_t i = 0; i < np; i++) prefix[i] = t_frand();
  for (int with_prefix = 0; with_prefix < 2; with_prefix++) {
    pf_seq *s = pf_seq_new(m, 64, &e);
    pf_work *w = pf_work_new();
    if (with_prefix) pf_seq_set_prefix(s, prefix, P, &e);
    int rc = pf_forward(m, w, &s, &n, 1, ids, full, 1, &e);
    pf_seq_reset(s);
    for (int t = 0; t < n && !rc; t++) {
      int one = 1;
      rc = pf_forward(m, w, &s, &one, 1, &ids[t], step + (size_t)t * V, 0, &e);
    }
    double d = t_maxdiff(full, step, V * n);
    char name[160];
    snprintf(name, sizeof name, "%s: KV-cache decoding = full recompute%s", label, with_prefix ? " (with prefix)" : "");
    CHECK(rc == 0 && d < 1e-4, name, "max diff %g rc=%d", d, rc);

    /* two sequences in one batch = each alone */
    pf_seq *s2 = pf_seq_new(m, 64, &e);
    pf_seq_reset(s);
    int nt[2] = {n, n - 5};
    int *both = malloc(sizeof(int) * (2 * n));
    memcpy(both, ids, sizeof(int) * n);
    memcpy(both + n, ids + 5, sizeof(int) * (n - 5));
    float *bl = malloc(sizeof(float) * V * 2), *alone = malloc(sizeof(float) * V);
    pf_seq *pair[2] = {s, s2};
    rc = pf_forward(m, w, pair, nt, 2, both, bl, 0, &e);
    pf_seq_reset(s2);
    rc = rc ? rc : pf_forward(m, w, &s2, &nt[1], 1, ids + 5, alone, 0, &e);
    d = t_maxdiff(bl + V, alone, V) + t_maxdiff(bl, full + (size_t)(n - 1) * V, V);
    snprintf(name, sizeof name, "%s: a batch of two sequences = each alone%s", label, with_prefix ? " (with prefix)" : "");
    CHECK(rc == 0 && d < 1e-4, name, "max diff %g", d);
    free(both); free(bl); free(alone);
    pf_seq_free(s2);

    /* BLAS path = naive path */
    pf_set_naive(1);
    float *naive = malloc(sizeof(float) * V * n);
    pf_seq_reset(s);
    rc = pf_forward(m, w, &s, &n, 1, ids, naive, 1, &e);
    pf_set_naive(0);
    d = t_maxdiff(full, naive, V * n);
    snprintf(name, sizeof name, "%s: BLAS forward = naive forward%s", label, with_prefix ? " (with prefix)" : "");
    CHECK(rc == 0 && d < 1e-4, name, "max diff %g", d);
    free(naive);
    pf_seq_free(s);
    pf_work_free(w);
  }
  free(prefix); free(full); free(step); free(ids);
}

static void test_transpose(void) {
  int shapes[][2] = {{16, 16}, {37, 21}, {33, 48}, {1, 70}, {130, 138}};
  int ok = 1;
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    int R = shapes[s][0], C = shapes[s][1];
    float *a = malloc(sizeof(float) * R * C), *b = malloc(sizeof(float) * R * C);
    for (int i = 0; i < R * C; i++) a[i] = (float)i;
    pf_transpose(b, a, R, C);
    for (int i = 0; i < R; i++)
      for (int c = 0; c < C; c++) if (b[(size_t)c * R + i] != a[(size_t)i * C + c]) ok = 0;
    free(a); free(b);
  }
  CHECK(ok, "transpose (16x16 register blocks and edges) on 5 shapes", "");
}

static void test_kernels(void) {
  int shapes[][3] = {{1, 64, 64}, {5, 64, 172}, {17, 33, 7}, {64, 128, 512}, {3, 1, 9}, {1, 768, 2051}, {13, 100, 37},
                     {130, 256, 96}, {100, 300, 70}, {70, 600, 33}, {1100, 40, 40}, {40, 200, 150}};
  /* 10..48 rows: the decode-batch kernel (groups of 16 rows); more: the packed GEMM (K blocked past 256 when
  ** T > 64, row blocks past 1008) */
  int kinds[] = {PF_KERNEL_BLAS, PF_KERNEL_PORTABLE, PF_KERNEL_AVX2, PF_KERNEL_AVXVNNI, PF_KERNEL_AVX512};
  int nkinds = (int)(sizeof kinds / sizeof kinds[0]);
  for (int threads = 1; threads <= 2; threads++) {
    pf_set_threads(threads);
    for (int kk = 0; kk < nkinds; kk++) {
      if (pf_set_kernel(kinds[kk]) != kinds[kk]) { printf("# kernel %s: not on this CPU\n", pf_kernel_name(kinds[kk])); continue; }
      int ok_nt = 1, ok_nn = 1, ok_dw = 1;
      double worst = 0;
      for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int T = shapes[s][0], K = shapes[s][1], N = shapes[s][2];
        float *x = malloc(sizeof(float) * T * K), *w = malloc(sizeof(float) * N * K);
        float *a = malloc(sizeof(float) * T * N), *b = malloc(sizeof(float) * T * N);
        float *dy = malloc(sizeof(float) * T * N), *da = malloc(sizeof(float) * T * K), *db = malloc(sizeof(float) * T * K);
        for (int i = 0; i < T * K; i++) { x[i] = t_frand(); da[i] = db[i] = t_frand(); }
        for (int i = 0; i < N * K; i++) w[i] = t_frand();
        for (int i = 0; i < T * N; i++) dy[i] = t_frand();
        pf_matmul(a, x, w, T, K, N);
        pf_matmul_naive(b, x, w, T, K, N);
        double d = t_maxdiff(a, b, (size_t)T * N);
        if (d > 1e-4 * sqrt(K)) ok_nt = 0;
        if (d > worst) worst = d;
        pf_matmul_backward_input(da, dy, w, T, K, N);   /* accumulates */
        pf_set_naive(1);
        pf_matmul_backward_input(db, dy, w, T, K, N);
        pf_set_naive(0);
        d = t_maxdiff(da, db, (size_t)T * K);
        if (d > 1e-4 * sqrt(N)) ok_nn = 0;
        float *gw = calloc((size_t)N * K, sizeof(float)), *gn = calloc((size_t)N * K, sizeof(float));
        pf_matmul_backward_weight(gw, dy, x, T, K, N);   /* dW (N, K) += dYᵀ · X */
        pf_set_naive(1);
        pf_matmul_backward_weight(gn, dy, x, T, K, N);
        pf_set_naive(0);
        if (t_maxdiff(gw, gn, (size_t)N * K) > 1e-4 * sqrt(T)) ok_dw = 0;
        free(gw); free(gn);
        free(x); free(w); free(a); free(b); free(dy); free(da); free(db);
      }
      char name[128];
      snprintf(name, sizeof name, "kernel %s, %d thread%s: X·W^T = naive on 12 shapes", pf_kernel_name(kinds[kk]), threads,
               threads > 1 ? "s" : "");
      CHECK(ok_nt, name, "max diff %g", worst);
      snprintf(name, sizeof name, "kernel %s, %d thread%s: dX += dY·W = naive on 12 shapes", pf_kernel_name(kinds[kk]),
               threads, threads > 1 ? "s" : "");
      CHECK(ok_nn, name, "");
      snprintf(name, sizeof name, "kernel %s, %d thread%s: dW += dYᵀ·X = naive on 12 shapes", pf_kernel_name(kinds[kk]),
               threads, threads > 1 ? "s" : "");
      CHECK(ok_dw, name, "");
    }
  }
  pf_set_kernel(PF_KERNEL_AUTO);
  pf_set_threads(0);
  /* f16 conversion: exact values and round trip */
  float vals[] = {0.0f, 1.0f, -2.5f, 65504.0f, 6.103515625e-05f, 5.960464477539063e-08f};
  int ok = 1;
  for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) ok &= pf_f16_to_f32(pf_f32_to_f16(vals[i])) == vals[i];
  ok &= pf_f32_to_f16(1.0f) == 0x3C00 && pf_f16_to_f32(0xC000) == -2.0f;
  CHECK(ok, "f16 conversion is exact on representable values", "");
  /* Q8_0 dequantization of one block */
  unsigned char blk[34];
  uint16_t h = pf_f32_to_f16(0.5f);
  memcpy(blk, &h, 2);
  for (int j = 0; j < 32; j++) blk[2 + j] = (unsigned char)(signed char)(j - 16);
  float out[32];
  pf_to_f32(GGML_Q8_0, blk, out, 32);
  ok = 1;
  for (int j = 0; j < 32; j++) ok &= out[j] == 0.5f * (j - 16);
  CHECK(ok, "Q8_0 block dequantizes to scale * int8", "");
}

/* the vector e^x of softmax and SiLU (every table): within 4e-7 relative
** of exp on [-87, 88], tiny below, NaN kept; and the sum it returns */
static void test_vexp(void) {
  int n = 19001;
  float *x = malloc(sizeof(float) * n), *y = malloc(sizeof(float) * n);
  for (int i = 0; i < n; i++) x[i] = -100.0f + 0.01f * (float)i;   /* -100 .. 90 */
  x[5] = NAN;
  for (int kind = PF_KERNEL_PORTABLE; kind < PF_KERNEL_COUNT; kind++) {
    if (pf_set_kernel(kind) != kind) continue;
    int ok = 1;
    double sum = pf_vexp_sum(y, x, 0.0f, n), worst = 0;
    for (int i = 0; i < n; i++) {
      if (i == 5) { ok &= isnan(y[i]); continue; }
      if (x[i] < -87.0f) { ok &= y[i] >= 0 && y[i] < 2e-38f; continue; }
      if (x[i] > 88.0f) continue;
      double e = exp((double)x[i]), rel = fabs(y[i] - e) / e;
      if (rel > worst) worst = rel;
    }
    ok &= worst < 4e-7 && isnan(sum);
    double s2 = pf_vexp_sum(NULL, x + 10000, 1.0f, 1000), ref = 0;   /* the sum alone, with an offset */
    for (int i = 0; i < 1000; i++) ref += exp((double)x[10000 + i] - 1.0);
    ok &= fabs(s2 - ref) <= 1e-6 * ref;
    char name[128];
    snprintf(name, sizeof name, "vector exp (%s): 4e-7 relative on [-87, 88], tiny below, NaN kept; sums", pf_kernel_name(kind));
    CHECK(ok, name, "worst %g", worst);
  }
  pf_set_kernel(PF_KERNEL_AUTO);
  free(x); free(y);
}

/* SwiGLU and GELU forward and backward through every table's vector kernels = the scalar formulas */
static void test_activations(void) {
  size_t n = 1003;
  float *g = malloc(sizeof(float) * n), *u = malloc(sizeof(float) * n), *dh = malloc(sizeof(float) * n);
  float *h = malloc(sizeof(float) * n), *dg = malloc(sizeof(float) * n), *du = malloc(sizeof(float) * n);
  for (size_t i = 0; i < n; i++) g[i] = 8 * t_frand(), u[i] = t_frand(), dh[i] = t_frand();
  for (int kind = PF_KERNEL_PORTABLE; kind < PF_KERNEL_COUNT; kind++) {
    if (pf_set_kernel(kind) != kind) continue;
    double w1 = 0, w2 = 0, w3 = 0, w4 = 0;
    for (size_t i = 0; i < n; i++) dg[i] = du[i] = 0.25f;
    int ran = pf_silu_mul_fast(h, g, u, n) && pf_silu_mul_bwd_fast(dg, du, dh, g, u, n);
    for (size_t i = 0; i < n; i++) {
      double sg = 1 / (1 + exp(-(double)g[i])), silu = g[i] * sg;
      w1 = fmax(w1, fabs(h[i] - silu * u[i]));
      w2 = fmax(w2, fabs(dg[i] - (0.25 + dh[i] * u[i] * (sg + silu * (1 - sg)))) + fabs(du[i] - (0.25 + dh[i] * silu)));
    }
    for (size_t i = 0; i < n; i++) dg[i] = 0.25f;
    ran &= pf_gelu_fast(h, g, n) && pf_gelu_bwd_fast(dg, g, dh, n);
    for (size_t i = 0; i < n; i++) {
      double x = g[i], t = tanh(0.7978845608028654 * (x + 0.044715 * x * x * x));
      double d = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * 0.7978845608028654 * (1 + 3 * 0.044715 * x * x);
      w3 = fmax(w3, fabs(h[i] - 0.5 * x * (1 + t)));
      w4 = fmax(w4, fabs(dg[i] - (0.25 + dh[i] * d)));
    }
    char name[128];
    snprintf(name, sizeof name, "SwiGLU and GELU forward and backward (%s) = the scalar formulas", pf_kernel_name(kind));
    CHECK(ran && w1 < 1e-5 && w2 < 1e-5 && w3 < 1e-5 && w4 < 1e-5, name, "%g %g %g %g", w1, w2, w3, w4);
  }
  pf_set_kernel(PF_KERNEL_AUTO);
  free(g); free(u); free(dh); free(h); free(dg); free(du);
}

/* Long prompts are prefilled pf_prefill_chunk tokens at a time: three rows of different lengths (one over
** two chunks) give the same greedy text with chunks of 512, of 7 and in one pass. */
static void test_prefill_chunks(pf_model *m) {
  static char longp[8192];
  size_t o = 0;
  while (o + 64 < 4800) o += (size_t)snprintf(longp + o, sizeof longp - o, "Once upon a time there was a little girl named Lily. ");
  const char *prompts[3] = {"Once upon a time", longp, "The dog ran to the park and"};
  char *ref[3] = {0};
  int chunks[3] = {1 << 30, 512, 7}, saved = pf_prefill_chunk, ok = 1, n_prompt = 0;
  for (int c = 0; c < 3; c++) {
    pf_prefill_chunk = chunks[c];
    pf_batch_item it[3];
    memset(it, 0, sizeof it);
    for (int i = 0; i < 3; i++) it[i].prompt = prompts[i], it[i].prompt_len = strlen(prompts[i]);
    pf_sample_params p;
    pf_sample_params_default(&p);
    p.max_tokens = 12;
    pf_err e;
    int rc = pf_generate_batch(m, it, 3, 3, &p, NULL, NULL, NULL, &e);
    if (rc) { CHECK(0, "chunked prefill runs", "%s", e.msg); break; }
    n_prompt = it[1].res.n_prompt;
    for (int i = 0; i < 3; i++) {
      if (c == 0) ref[i] = strdup(it[i].res.text);
      else ok &= !strcmp(ref[i], it[i].res.text);
      pf_gen_result_clear(&it[i].res);
    }
  }
  pf_prefill_chunk = saved;
  CHECK(ok && n_prompt > 1024, "prefill in chunks of 512 and of 7 = in one pass (rows of 5, >1024 and 8 tokens)",
        "long prompt %d tokens; '%s'", n_prompt, ref[1] ? ref[1] : "");
  for (int i = 0; i < 3; i++) free(ref[i]);
}

/* The public API's small accessors, each against a fact of the model or of another call. */
static void test_api_accessors(pf_model *m) {
  pf_err e;
  CHECK(pf_token_bos(m) == 1, "pf_token_bos: stories260K's BOS is id 1", "got %d", pf_token_bos(m));
  const char *names = pf_chat_template_names();
  CHECK(names && strstr(names, "chatml") && strstr(names, "llama3"), "pf_chat_template_names lists chatml and llama3",
        "got '%s'", names ? names : "(null)");
  /* the same file from memory: the same fingerprint and the same greedy text */
  FILE *f = fopen(t_model_path("stories260K.gguf"), "rb");
  char *buf = NULL;
  long n = -1;
  if (f && fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) > 0 && fseek(f, 0, SEEK_SET) == 0 &&
      (buf = aligned_alloc(64, ((size_t)n + 63) / 64 * 64)))   /* the loader wants 64-byte alignment */
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) n = -1;
  if (f) fclose(f);
  pf_model *mm = buf && n > 0 ? pf_model_load_mem(buf, (size_t)n, "mem", &e) : NULL;
  CHECK(mm && !strcmp(pf_model_fingerprint(mm), pf_model_fingerprint(m)), "pf_model_load_mem: the file's fingerprint",
        "%s", mm ? pf_model_fingerprint(mm) : e.msg);
  /* a stream's result: the prompt's tokens, the tokens it gave and why it stopped */
  pf_sample_params sp;
  pf_sample_params_default(&sp);
  sp.max_tokens = 7;
  pf_batch_item it = {0};
  it.prompt = "Once upon a time";
  it.prompt_len = strlen(it.prompt);
  pf_stream *st = NULL;
  int done = 0, got = 0, rc = pf_stream_new(mm ? mm : m, &it, &sp, &st, &e);
  while (!rc && !done) {
    pf_stream_tok tok;
    rc = pf_stream_next(st, NULL, NULL, &tok, &done, &e);
    if (!rc && !done) got++;
  }
  const pf_gen_result *r = st ? pf_stream_result(st) : NULL;
  CHECK(!rc && r && r->n_prompt == 5 && r->n_tokens == 7 && got == 7 && r->finish == PF_FINISH_LENGTH,
        "pf_stream_result: 5 prompt tokens, 7 given, stopped by length", "rc %d got %d n_prompt %d n_tokens %d", rc, got,
        r ? r->n_prompt : -1, r ? r->n_tokens : -1);
  pf_stream_free(st);
  pf_model_free(mm);
  free(buf);
}

int main(void) {
  pf_err e;
  pf_model *m = pf_model_load(t_model_path("stories260K.gguf"), &e);
  CHECK(m != NULL, "load stories260K.gguf", "%s", e.msg);
  if (!m) return 1;
  const pf_hparams *hp = pf_model_hparams(m);
  CHECK(hp->n_layer == 5 && hp->n_embd == 64 && hp->n_head == 8 && hp->n_head_kv == 4 && hp->n_ff == 172 &&
            hp->n_vocab == 512 && hp->head_dim == 8 && pf_model_n_params(m) == 292800,
        "stories260K hyperparameters", "layers %d embd %d params %llu", hp->n_layer, hp->n_embd,
        (unsigned long long)pf_model_n_params(m));
  test_tokenize(m);
  test_greedy(m);
  test_kv_cache(m, "stories260K");
  test_prefill_chunks(m);
  test_api_accessors(m);
  test_kernels();
  test_transpose();
  test_vexp();
  test_activations();
  pf_model_free(m);
  return t_failed ? 1 : 0;
}
