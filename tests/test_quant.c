/*
** test_quant.c — every weight type: exact dequantization against llama.cpp's
** reference values, each kernel against the naive product on dequantized
** weights, whole models against their f32 copies (NLL, decode, training
** gradients), the project's quantizers, and malformed quantized tensors.
*/
#include <math.h>
#include <unistd.h>

#include "internal.h"
#include "testlib.h"
#include "train.h"

static const int TYPES[] = {GGML_F16, GGML_BF16, GGML_Q4_0, GGML_Q4_1, GGML_Q5_0, GGML_Q5_1, GGML_Q8_0, GGML_Q2_K,
                            GGML_Q3_K, GGML_Q4_K, GGML_Q5_K, GGML_Q6_K, GGML_IQ4_NL, GGML_IQ4_XS};
#define NTYPES (int)(sizeof TYPES / sizeof TYPES[0])

static char *slurp(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long sz = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *b = malloc((size_t)sz + 1);
  if (b && fread(b, 1, (size_t)sz, f) != (size_t)sz) { free(b); b = NULL; }
  if (b) b[sz] = 0;
  fclose(f);
  if (n) *n = (size_t)sz;
  return b;
}

/* sha256 of a buffer, by the system's sha256sum */
static void sha256_hex(const void *p, size_t n, char out[65]) {
  char path[64], cmd[128];
  snprintf(path, sizeof path, "/tmp/pf_sha_%d", (int)getpid());
  FILE *f = fopen(path, "wb");
  fwrite(p, 1, n, f);
  fclose(f);
  snprintf(cmd, sizeof cmd, "sha256sum %s", path);
  FILE *pp = popen(cmd, "r");
  out[0] = 0;
  if (pp && fscanf(pp, "%64s", out) != 1) out[0] = 0;
  if (pp) pclose(pp);
  unlink(path);
}

/* ---------------------------------------- dequantization against llama.cpp
** ../shared/models/quant/dequant_reference.json: for each file, the first two
** rows of blk.0.attn_q.weight as llama.cpp's reference dequantizes them, and
** the sha256 of the whole tensor as f32. */
static void test_reference(void) {
  char path[4096];
  snprintf(path, sizeof path, "%s/quant/dequant_reference.json", t_model_dir());
  char *js = slurp(path, NULL);
  if (!js) { CHECK(0, "dequant reference", "cannot read %s", path); return; }
  int files = 0;
  for (char *p = strstr(js, ".gguf\": {"); p; p = strstr(p + 1, ".gguf\": {")) {
    char *q = p;
    while (q > js && q[-1] != '"') q--;
    char file[64];
    snprintf(file, sizeof file, "%.*s.gguf", (int)(p - q), q);
    char *rows = strstr(p, "\"rows_0_1\": ["), *sha = strstr(p, "\"sha256_all_rows_f32le\": \"");
    if (!rows || !sha) { CHECK(0, "dequant reference", "%s: fields missing", file); break; }
    float want[512];
    int nw = 0;
    for (char *s = rows + 13; *s && *s != ']' && nw < 512;) {
      char *end;
      double v = strtod(s, &end);
      if (end == s) break;
      want[nw++] = (float)v;
      s = end;
      while (*s == ',' || *s == ' ') s++;
    }
    char want_sha[65];
    snprintf(want_sha, sizeof want_sha, "%.64s", sha + 26);

    snprintf(path, sizeof path, "%s/quant/%s", t_model_dir(), file);
    gguf_file g;
    pf_err e;
    char name[160];
    if (gguf_open(&g, path, &e)) { snprintf(name, sizeof name, "%s loads", file); CHECK(0, name, "%s", e.msg); continue; }
    const gguf_tensor *t = gguf_find_tensor(&g, "blk.0.attn_q.weight");
    int K = (int)t->ne[0], R = (int)t->ne[1];
    size_t rb = pf_type_row_size(t->type, K);
    float *all = malloc(sizeof(float) * (size_t)K * R), *vec = malloc(sizeof(float) * (size_t)K * R);
    pf_dequant(t->type, t->data, 0, (int64_t)K * R, all);
    int exact = nw == 2 * K && memcmp(all, want, sizeof(float) * 2 * K) == 0;
    char got_sha[65];
    sha256_hex(all, sizeof(float) * (size_t)K * R, got_sha);
    snprintf(name, sizeof name, "%s (%s): rows 0-1 bit-exact with llama.cpp's reference, sha256 of all rows equal", file,
             pf_type_name(t->type));
    CHECK(exact && !strcmp(got_sha, want_sha), name, "exact %d, sha %s vs %s", exact, got_sha, want_sha);
    /* the kernels' unpacking (vectorised where the CPU allows) gives the same bits, for any range */
    pf_wt w = {t->data, t->type, R, K, rb};
    int same = 1;
    for (int kind = PF_KERNEL_NAIVE; kind < PF_KERNEL_COUNT; kind++) {
      if (pf_set_kernel(kind) != kind) continue;
      for (int r = 0; r < R; r++) pf_wt_deq(&w, r, 0, K, vec + (size_t)r * K);
      same &= memcmp(all, vec, sizeof(float) * (size_t)K * R) == 0;
      float part[256];
      for (int k0 = 0; k0 < K; k0 += 37) {
        int k1 = k0 + 70 < K ? k0 + 70 : K;
        pf_wt_deq(&w, 3, k0, k1, part);
        same &= memcmp(part, all + 3 * K + k0, sizeof(float) * (size_t)(k1 - k0)) == 0;
      }
    }
    pf_set_kernel(PF_KERNEL_AUTO);
    snprintf(name, sizeof name, "%s: the kernels' unpacking = the reference, every kernel kind and range", file);
    CHECK(same, name, "differs");
    free(all);
    free(vec);
    gguf_close(&g);
    files++;
  }
  CHECK(files == 16, "dequant reference: all 16 fixture files checked", "%d", files);
  free(js);
}

/* ----------------------------------------------------- the quantizers */

static void test_quantizers(void) {
  /* rms error of quantize -> dequantize on gaussian-ish data, relative to the data's rms */
  const struct { int type; double max_rel; } bound[] = {
    {GGML_F16, 1e-3}, {GGML_BF16, 5e-3}, {GGML_Q8_0, 0.01}, {GGML_Q6_K, 0.03}, {GGML_Q5_0, 0.06}, {GGML_Q5_1, 0.05},
    {GGML_Q5_K, 0.06}, {GGML_Q4_0, 0.12}, {GGML_Q4_1, 0.10}, {GGML_Q4_K, 0.12}, {GGML_IQ4_NL, 0.12},
    {GGML_IQ4_XS, 0.12}, {GGML_Q3_K, 0.25}, {GGML_Q2_K, 0.45},
  };
  int n = 4096;
  float *x = malloc(sizeof(float) * n), *y = malloc(sizeof(float) * n);
  uint8_t *q = malloc((size_t)n * 4);
  for (int i = 0; i < n; i++) x[i] = (t_frand() + t_frand() + t_frand()) * (i % 256 < 8 ? 3.0f : 1.0f);
  for (size_t b = 0; b < sizeof bound / sizeof bound[0]; b++) {
    int t = bound[b].type;
    pf_quantize((uint32_t)t, x, q, n);
    pf_to_f32((uint32_t)t, q, y, (uint64_t)n);
    double se = 0, sx = 0;
    for (int i = 0; i < n; i++) se += (double)(x[i] - y[i]) * (x[i] - y[i]), sx += (double)x[i] * x[i];
    double rel = sqrt(se / sx);
    char name[96];
    snprintf(name, sizeof name, "quantizer %s: relative rms error %.4f <= %g", pf_type_name((uint32_t)t), rel,
             bound[b].max_rel);
    CHECK(rel <= bound[b].max_rel, name, "%.4f", rel);
  }
  /* all-zero blocks quantize to zeros (no 0/0) */
  memset(x, 0, sizeof(float) * 256);
  int zeros = 1;
  for (int i = 0; i < NTYPES; i++) {
    pf_quantize((uint32_t)TYPES[i], x, q, 256);
    pf_to_f32((uint32_t)TYPES[i], q, y, 256);
    for (int j = 0; j < 256; j++) zeros &= y[j] == 0;
  }
  CHECK(zeros, "quantizers: a block of zeros stays zero in every type", "");
  free(x);
  free(y);
  free(q);
}

/* ------------------------------------------- kernels against the naive product */

static const char *kind_name(int k) { return pf_kernel_name(k); }

/* W (N rows of K) of type t with random values; f its dequantized copy */
static uint8_t *make_weight(int t, int K, int N, pf_wt *w, float **f) {
  float *x = malloc(sizeof(float) * (size_t)K * N);
  for (size_t i = 0; i < (size_t)K * N; i++) x[i] = 0.1f * t_frand();
  size_t rb = pf_type_row_size((uint32_t)t, K);
  uint8_t *q = malloc(rb * N);
  pf_quantize((uint32_t)t, x, q, (int64_t)K * N);
  pf_to_f32((uint32_t)t, q, x, (uint64_t)K * N);
  *w = (pf_wt){q, (uint32_t)t, N, K, rb};
  *f = x;
  return q;
}

static void test_kernels(void) {
  const int Ts[] = {1, 2, 3, 5, 8, 9, 12, 16, 23, 33, 48, 49, 100};
  for (int ti = 0; ti < NTYPES; ti++) {
    int t = TYPES[ti], blk = pf_type_blck((uint32_t)t);
    const int shapes[][2] = {{blk == 256 ? 512 : 96, 70}, {256, 129}, {blk == 1 ? 40 : 256, 33}};   /* K, N */
    double worst_nt = 0, worst_nn = 0;
    int ok_nt = 1, ok_nn = 1, ran = 0;
    for (int si = 0; si < 3; si++) {
      int K = shapes[si][0], N = shapes[si][1];
      pf_wt w;
      float *wf;
      uint8_t *q = make_weight(t, K, N, &w, &wf);
      int Tm = 100;
      float *a = malloc(sizeof(float) * (size_t)Tm * K), *dy = malloc(sizeof(float) * (size_t)Tm * N);
      float *got = malloc(sizeof(float) * (size_t)Tm * (N > K ? N : K)), *ref = malloc(sizeof(float) * (size_t)Tm * N);
      float *rnn = malloc(sizeof(float) * (size_t)Tm * K);
      for (int i = 0; i < Tm * K; i++) a[i] = t_frand();
      for (int i = 0; i < Tm * N; i++) dy[i] = t_frand();
      for (size_t tt = 0; tt < sizeof Ts / sizeof Ts[0]; tt++) {
        int T = Ts[tt];
        double tol = 2e-5 * sqrt((double)K) + 1e-5;
        pf_matmul_naive(ref, a, wf, T, K, N);
        for (int kind = PF_KERNEL_NAIVE; kind < PF_KERNEL_COUNT; kind++) {
          if (pf_set_kernel(kind) != kind) continue;
          /* the kernel on two column slices, as the pool runs it, then the whole product through pf_matmul_w */
          int cut = (N / 2 + 31) / 32 * 32 < N ? (N / 2 + 31) / 32 * 32 : 0;
          pf_kernel_nt_w(kind, got, a, &w, T, 0, cut, 1);
          pf_kernel_nt_w(kind, got, a, &w, T, cut, N, 1);
          double d = t_maxdiff(got, ref, (size_t)T * N);
          pf_matmul_w_exact(got, a, &w, T);
          double d2 = t_maxdiff(got, ref, (size_t)T * N);
          if (d2 > d) d = d2;
          if (d > worst_nt) worst_nt = d;
          if (d > tol) { ok_nt = 0; printf("  NT %s K%d N%d T%d %s: %g\n", pf_type_name((uint32_t)t), K, N, T, kind_name(kind), d); }
          /* dA += dY · W: the accumulation onto a non-zero dA */
          for (int i = 0; i < T * K; i++) got[i] = 0.5f;
          for (int i = 0; i < T; i++)
            for (int k = 0; k < K; k++) {
              double s = 0.5;
              for (int n = 0; n < N; n++) s += (double)dy[(size_t)i * N + n] * wf[(size_t)n * K + k];
              rnn[(size_t)i * K + k] = (float)s;
            }
          int kc = (K / 2) / 32 * 32;
          pf_kernel_nn_w(kind, got, dy, &w, T, 0, kc);
          pf_kernel_nn_w(kind, got, dy, &w, T, kc, K);
          d = t_maxdiff(got, rnn, (size_t)T * K);
          for (int i = 0; i < T * K; i++) got[i] = 0.5f;
          pf_matmul_backward_input_w(got, dy, &w, T);
          d2 = t_maxdiff(got, rnn, (size_t)T * K);
          if (d2 > d) d = d2;
          if (d > worst_nn) worst_nn = d;
          double tol_nn = 2e-5 * sqrt((double)N) + 1e-5;
          if (d > tol_nn) { ok_nn = 0; printf("  NN %s K%d N%d T%d %s: %g\n", pf_type_name((uint32_t)t), K, N, T, kind_name(kind), d); }
          ran++;
        }
        pf_set_kernel(PF_KERNEL_AUTO);
      }
      free(q); free(wf); free(a); free(dy); free(got); free(ref); free(rnn);
    }
    char name[160];
    snprintf(name, sizeof name, "%s: X·Wᵀ, every kernel kind, 1..100 rows, slices and the pool = naive on dequantized W",
             pf_type_name((uint32_t)t));
    CHECK(ok_nt && ran > 0, name, "max diff %g", worst_nt);
    snprintf(name, sizeof name, "%s: dX += dY·W (training backward through W), every kernel kind = naive",
             pf_type_name((uint32_t)t));
    CHECK(ok_nn && ran > 0, name, "max diff %g", worst_nn);
  }
}

/* ------------------------------------------- the integer products (generation)
** Activations rounded to int8 per 32 (step d = max|a| / 127, error <= d/2): each output is within
** Σ_k |w_k| · d_k / 2 of the exact product (plus f32 rounding). Checked on every table with integer
** products this CPU runs, every block type it has them for: decode (1..48 rows) and the prefill GEMM
** (49..200 rows). */
static void test_int8(void) {
  const int types[] = {GGML_Q4_0, GGML_Q4_1, GGML_Q5_0, GGML_Q5_1, GGML_Q8_0, GGML_Q2_K, GGML_Q3_K,
                       GGML_Q4_K, GGML_Q5_K, GGML_Q6_K, GGML_IQ4_NL, GGML_IQ4_XS};
  const int Ts[] = {1, 2, 3, 4, 5, 8, 9, 16, 33, 48, 49, 64, 130, 200};
  for (int kind = PF_KERNEL_PORTABLE; kind < PF_KERNEL_COUNT; kind++) {
    if (pf_set_kernel(kind) != kind) continue;
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
      int t = types[ti], K = 512, N = 77, ok = 1, dec = 0, gemm = 0;
      double worst = 0;
      pf_wt w;
      float *wf;
      uint8_t *q = make_weight(t, K, N, &w, &wf);
      int Tm = 200;
      float *a = malloc(sizeof(float) * (size_t)Tm * K), *got = malloc(sizeof(float) * (size_t)Tm * N);
      float *ref = malloc(sizeof(float) * (size_t)Tm * N), *bound = malloc(sizeof(float) * (size_t)Tm * N);
      for (int i = 0; i < Tm * K; i++) a[i] = t_frand() * (i % 97 == 0 ? 4.0f : 1.0f);
      pf_matmul_naive(ref, a, wf, Tm, K, N);
      for (int i = 0; i < Tm; i++)
        for (int n = 0; n < N; n++) {
          double b = 0;
          for (int c = 0; c < K / 32; c++) {
            float amax = 0;
            for (int k = 0; k < 32; k++) amax = fmaxf(amax, fabsf(a[(size_t)i * K + 32 * c + k]));
            for (int k = 0; k < 32; k++) b += fabs(wf[(size_t)n * K + 32 * c + k]) * amax / 127.0 / 2;
          }
          bound[(size_t)i * N + n] = (float)(b * 1.01 + 1e-4 * fabs(ref[(size_t)i * N + n]) + 1e-5);
        }
      float *got2 = malloc(sizeof(float) * (size_t)Tm * N);
      int same = 1;
      for (size_t tt = 0; tt < sizeof Ts / sizeof Ts[0]; tt++) {
        int T = Ts[tt];
        /* decode rows on two column slices, as the pool runs them */
        int ran = T <= 48 ? pf_kernel_nt_int8(kind, got, a, &w, T, 0, 40) && pf_kernel_nt_int8(kind, got, a, &w, T, 40, N)
                          : pf_gemm_int8(got, a, &w, T, 2);
        if (T <= 48) dec += ran; else gemm += ran;
        for (int i = 0; ran && i < T * N; i++) {
          double d = fabs(got[i] - ref[i]);
          if (!(d <= bound[i])) ok = 0;
          if (d / bound[i] > worst) worst = d / bound[i];
        }
        /* AVX-VNNI's vpdpbusd = AVX2's vpmaddubsw + vpmaddwd (no sum saturates): the same bits */
        if (kind == PF_KERNEL_AVXVNNI && ran) {
          pf_set_kernel(PF_KERNEL_AVX2);
          int ran2 = T <= 48 ? pf_kernel_nt_int8(PF_KERNEL_AVX2, got2, a, &w, T, 0, N) : pf_gemm_int8(got2, a, &w, T, 2);
          pf_set_kernel(kind);
          same &= ran2 && memcmp(got, got2, sizeof(float) * (size_t)T * N) == 0;
        }
      }
      char name[200];
      snprintf(name, sizeof name, "%s, %s: integer products (decode 1..48 rows: %d runs, prefill GEMM 49..200: %d) within the int8 rounding bound",
               pf_type_name((uint32_t)t), pf_kernel_name(kind), dec, gemm);
      /* a table or type without integer kernels declines (0 runs) and the f32 kernels run: nothing to check,
      ** but AVX2 and AVX-VNNI have them for every block type, decode and prefill */
      int has_all = kind == PF_KERNEL_AVX2 || kind == PF_KERNEL_AVXVNNI;
      CHECK(ok && (!has_all || (dec == 10 && gemm == 4)), name, "worst %.3f of the bound", worst);
      if (kind == PF_KERNEL_AVXVNNI) {
        snprintf(name, sizeof name, "%s, avxvnni: integer products bit-identical to the avx2 table's", pf_type_name((uint32_t)t));
        CHECK(same, name, "differ");
      }
      free(q); free(wf); free(a); free(got); free(got2); free(ref); free(bound);
    }
  }
  pf_set_kernel(PF_KERNEL_AUTO);
}

/* NLL of a text through generation's forward (prefill, then token-by-token decode), integer products
** where the CPU has them */
static double nll_forward(const pf_model *m, const int *ids, int n, int n_prefill) {
  pf_err e;
  int V = m->hp.n_vocab;
  float *lg = malloc(sizeof(float) * (size_t)n * V);
  pf_seq *s = pf_seq_new(m, n, &e);
  pf_work *w = pf_work_new();
  double nll = 0;
  if (pf_forward(m, w, &s, &n_prefill, 1, ids, lg, 1, &e)) { nll = NAN; goto done; }
  for (int i = n_prefill; i < n; i++) {
    int one = 1;
    if (pf_forward(m, w, &s, &one, 1, ids + i, lg + (size_t)i * V, 0, &e)) { nll = NAN; goto done; }
  }
  for (int i = 0; i + 1 < n; i++) {
    const float *l = lg + (size_t)i * V;
    double mx = l[0], se = 0;
    for (int v = 1; v < V; v++) mx = fmax(mx, l[v]);
    for (int v = 0; v < V; v++) se += exp(l[v] - mx);
    nll += mx + log(se) - l[ids[i + 1]];
  }
  nll /= n - 1;
done:
  free(lg);
  pf_seq_free(s);
  pf_work_free(w);
  return nll;
}

/* ------------------------------------------- whole models against their f32 copies */

/* Replace every matrix of m by an F32 dequantized copy (kept in *bufs, freed by the caller). */
static void to_f32_copy(pf_model *m, void ***bufs, int *nb) {
  int L = m->hp.n_layer, cap = 16 * L + 8;
  *bufs = calloc((size_t)cap, sizeof(void *));
  *nb = 0;
  pf_wt *ws[16 * 64 + 8];
  int n = 0;
  ws[n++] = &m->tok_embd;
  if (m->output.data != m->tok_embd.data) ws[n++] = &m->output;
  for (int l = 0; l < L && l < 64; l++) {
    pf_layer *y = &m->layers[l];
    pf_wt *lw[] = {&y->wq, &y->wk, &y->wv, &y->wo, &y->w_gate, &y->w_up, &y->w_down};
    for (int i = 0; i < 7; i++) if (lw[i]->data) ws[n++] = lw[i];
  }
  int tied = m->output.data == m->tok_embd.data;
  for (int i = 0; i < n; i++) {
    pf_wt *w = ws[i];
    float *f = malloc(sizeof(float) * (size_t)w->rows * w->cols);
    for (int r = 0; r < w->rows; r++) pf_dequant_any(w->type, w->data + (size_t)r * w->row_bytes, 0, w->cols, f + (size_t)r * w->cols);
    (*bufs)[(*nb)++] = f;
    *w = (pf_wt){(const uint8_t *)f, GGML_F32, w->rows, w->cols, sizeof(float) * (size_t)w->cols};
  }
  if (tied) m->output = m->tok_embd;
}

static double nll_of(const pf_model *m, const char *text, size_t n, int *tokens) {
  double nll;
  pf_err e;
  if (pf_score(m, NULL, 0, "", 0, text, n, 0, &nll, tokens, &e)) { printf("  score: %s\n", e.msg); return NAN; }
  return nll;
}

static void test_models(void) {
  const char *files[] = {"tiny-f16", "tiny-bf16", "tiny-q4_0", "tiny-q4_1", "tiny-q5_0", "tiny-q5_1", "tiny-q8_0",
                         "tiny-q2_k", "tiny-q3_k_s", "tiny-q4_k_s", "tiny-q5_k_s", "tiny-q6_k", "tiny-iq4_nl",
                         "tiny-iq4_xs", "tiny-q4_k_m"};
  char path[4096];
  snprintf(path, sizeof path, "%s/tinystories/tinystories_train_1MiB_a.txt",
           getenv("PREFIX_DATA_DIR") ? getenv("PREFIX_DATA_DIR") : "../shared/data");
  size_t tn;
  char *text = slurp(path, &tn);
  if (!text) { CHECK(0, "quantized models", "cannot read %s", path); return; }
  size_t n = 220;   /* about 200 tokens in the fixtures' letter-level vocabulary (context 256) */
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
    snprintf(path, sizeof path, "%s/quant/%s.gguf", t_model_dir(), files[i]);
    pf_err e;
    pf_model *q = pf_model_load(path, &e), *f = pf_model_load(path, &e);
    char name[200];
    if (!q || !f) { snprintf(name, sizeof name, "%s loads", files[i]); CHECK(0, name, "%s", e.msg); pf_model_free(q); pf_model_free(f); continue; }
    void **bufs;
    int nb;
    to_f32_copy(f, &bufs, &nb);
    int tq, tf;
    pf_int8 = 0;   /* scoring runs generation's forward: f32 products here, integer products just below */
    double a = nll_of(q, text, n, &tq), b = nll_of(f, text, n, &tf);
    pf_int8 = 1;
    snprintf(name, sizeof name, "%s: NLL %.6f through its blocks (f32 products) = %.6f through its f32 copy (1e-4 relative)", files[i], a, b);
    CHECK(tq == tf && tq > 100 && fabs(a - b) <= 1e-4 * fabs(b), name, "tokens %d/%d", tq, tf);
    /* generation's forward: prefill 100 tokens, decode the rest; integer products where the CPU has them */
    int *ids, nid;
    if (pf_tokenize(q, text, n, 1, &ids, &nid, &e) == PF_OK) {
      double g = nll_forward(q, ids, nid, 100), gf = nll_forward(f, ids, nid, 100);
      snprintf(name, sizeof name, "%s: NLL %.6f through generation's forward (prefill + decode) = %.6f of the f32 copy (2e-3 relative)",
               files[i], g, gf);
      CHECK(fabs(g - gf) <= 2e-3 * fabs(gf), name, "diff %g", fabs(g - gf));
      free(ids);
    }

    /* decode: token by token through the KV cache, logits as the f32 copy's */
    int V = q->hp.n_vocab, toks[12] = {1, 5, 9, 200, 17, 42, 300, 7, 77, 100, 64, 3};
    float *lq = malloc(sizeof(float) * 12 * V), *lf = malloc(sizeof(float) * 12 * V);
    pf_seq *sq = pf_seq_new(q, 16, &e), *sf = pf_seq_new(f, 16, &e);
    pf_work *wk = pf_work_new();
    int one = 1, ok = 1;
    pf_int8 = 0;
    for (int t = 0; t < 12; t++) {
      ok &= pf_forward(q, wk, &sq, &one, 1, &toks[t], lq + (size_t)t * V, 0, &e) == PF_OK;
      ok &= pf_forward(f, wk, &sf, &one, 1, &toks[t], lf + (size_t)t * V, 0, &e) == PF_OK;
    }
    pf_int8 = 1;
    double d = t_maxdiff(lq, lf, (size_t)12 * V);
    snprintf(name, sizeof name, "%s: decode logits (f32 products) through the blocks = through the f32 copy", files[i]);
    CHECK(ok && d < 1e-4, name, "max diff %g", d);

    /* training: the prefix gradient through the quantized W = through the f32 copy */
    pf_pparams *pq = pf_pparams_new(q, PF_MODE_PREFIX, 4, 0, &e);
    pf_pparams_init(pq, 3, NULL, NULL, 1.0f, &e);
    int P = 4, L = 40, len[2] = {L, L}, bt[80], tg[80];
    for (int j = 0; j < 80; j++) bt[j] = 3 + (j * 37) % (V - 3), tg[j] = j % L >= L / 2 ? 3 + (j * 11) % (V - 3) : -1;
    pf_tbatch bb = {2, len, bt, tg};
    size_t nkv = (size_t)q->hp.n_layer * 2 * P * q->hp.n_head_kv * q->hp.head_dim;
    float *g[2];
    double ls[2];
    for (int k = 0; k < 2; k++) {
      pf_tws *tw = pf_tws_new();
      g[k] = calloc(nkv, sizeof(float));
      pf_prefix_in pin = {P, pf_pparams_kv(pq), g[k], 0, NULL, NULL};
      int nt;
      pf_train_step(k ? f : q, tw, &bb, &pin, 1.0f / 40, 1, &ls[k], &nt, NULL, NULL, &e);
      pf_tws_free(tw);
    }
    double gmax = 0;
    for (size_t j = 0; j < nkv; j++) gmax = fmax(gmax, fabs(g[1][j]));
    d = t_maxdiff(g[0], g[1], nkv);
    snprintf(name, sizeof name, "%s: training loss and prefix gradient through the blocks = through the f32 copy", files[i]);
    CHECK(fabs(ls[0] - ls[1]) <= 1e-4 * fabs(ls[1]) && d <= 1e-4 * gmax + 1e-7, name, "loss %g vs %g, grad diff %g of %g",
          ls[0], ls[1], d, gmax);
    free(g[0]); free(g[1]);
    pf_pparams_free(pq);
    free(lq); free(lf);
    pf_seq_free(sq); pf_seq_free(sf);
    pf_work_free(wk);
    for (int j = 0; j < nb; j++) free(bufs[j]);
    free(bufs);
    pf_model_free(q);
    pf_model_free(f);
  }
  free(text);
}

/* ------------------------------------------------------------ malformed */

static void test_malformed(void) {
  char path[128];
  snprintf(path, sizeof path, "/tmp/pf_qbad_%d.gguf", (int)getpid());
  /* a NaN or infinite scale in a block: refused at load with the tensor's name */
  const struct { const char *type; int off; uint16_t bits; const char *what; } cases[] = {
    {"q4_k", 0, 0x7e00, "NaN d"}, {"q4_k", 2, 0x7c00, "infinite dmin"}, {"q6_k", 208, 0xfc00, "-inf d"},
    {"q8_0", 0, 0x7e00, "NaN d"}, {"q4_1", 2, 0x7e00, "NaN m"}, {"q2_k", 82, 0x7c00, "infinite dmin"},
    {"iq4_xs", 0, 0x7e01, "NaN d"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char args[256];
    snprintf(args, sizeof args, "--layers 1 --embd 256 --heads 4 --ff 256 --vocab 300 --type %s", cases[i].type);
    if (t_mkmodel(path, args)) { CHECK(0, "malformed quantized tensor", "mkmodel"); continue; }
    size_t n;
    char *b = slurp(path, &n);
    gguf_file g;
    pf_err e;
    gguf_parse(&g, (const uint8_t *)b, n, &e);
    const gguf_tensor *t = gguf_find_tensor(&g, "blk.0.ffn_up.weight");
    size_t bsz = pf_type_row_size(t->type, pf_type_blck(t->type)), at = (size_t)(t->data - (const uint8_t *)b) + 3 * bsz;
    gguf_close(&g);   /* not mapped: frees the tables only */
    memcpy(b + at + cases[i].off, &cases[i].bits, 2);
    FILE *f = fopen(path, "wb");
    fwrite(b, 1, n, f);
    fclose(f);
    free(b);
    pf_model *m = pf_model_load(path, &e);
    char name[160], want[160];
    snprintf(want, sizeof want, "GGUF tensor 'blk.0.ffn_up.weight' (%s): block 3 has a scale that is NaN or infinite",
             cases[i].type[0] == 'i' ? "IQ4_XS" : cases[i].type[1] == '4' && cases[i].type[3] == 'k' ? "Q4_K" : "");
    snprintf(name, sizeof name, "%s with a %s in block 3 is refused at load, naming the tensor", cases[i].type, cases[i].what);
    CHECK(!m && t_contains(e.msg, "GGUF tensor 'blk.0.ffn_up.weight'") && t_contains(e.msg, "block 3 has a scale that is NaN or infinite"),
          name, "%s", m ? "loaded" : e.msg);
    pf_model_free(m);
  }
  unlink(path);
}

/* ------------------------------------------------- mkmodel writes every type */

static void test_mkmodel_types(void) {
  const char *types[] = {"f16", "bf16", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_k", "q3_k", "q4_k", "q5_k", "q6_k",
                         "iq4_nl", "iq4_xs", "q4_k_m", "q5_k_m"};
  char path[128];
  snprintf(path, sizeof path, "/tmp/pf_qmk_%d.gguf", (int)getpid());
  for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
    char args[256], name[128];
    /* ff 96: rows of ffn_down are not a whole number of 256-blocks, so the fallback types appear too */
    snprintf(args, sizeof args, "--layers 2 --embd 256 --heads 4 --heads-kv 2 --ff 96 --vocab 300 --type %s", types[i]);
    pf_err e;
    pf_model *m = t_mkmodel(path, args) ? NULL : pf_model_load(path, &e);
    int ok = m != NULL;
    if (m) {
      pf_sample_params p;
      pf_sample_params_default(&p);
      p.max_tokens = 8;
      p.ignore_eos = 1;
      pf_gen_result r;
      ok = pf_generate(m, NULL, 0, "hello", 5, &p, NULL, NULL, &r, &e) == PF_OK && r.n_tokens == 8;
      if (ok) pf_gen_result_clear(&r);
      int want = pf_type_from_name(types[i]);
      if (want >= 0) ok &= m->layers[0].wq.type == (uint32_t)want;
      else ok &= m->layers[0].wq.type == (types[i][1] == '4' ? GGML_Q4_K : GGML_Q5_K) && m->output.type == GGML_Q6_K;
      pf_model_free(m);
    }
    snprintf(name, sizeof name, "prefix-mkmodel --type %s writes a model that loads and generates", types[i]);
    CHECK(ok, name, "%s", ok ? "" : e.msg);
  }
  unlink(path);
}

/* test_quant [PART ...]: all parts, or the named ones (reference quantizers kernels int8 models malformed
** mkmodel): tests/arm64.sh runs the kernel parts on a second emulated CPU */
int main(int argc, char **argv) {
  static const struct { const char *name; void (*fn)(void); } parts[] = {
    {"reference", test_reference}, {"quantizers", test_quantizers}, {"kernels", test_kernels}, {"int8", test_int8},
    {"models", test_models}, {"malformed", test_malformed}, {"mkmodel", test_mkmodel_types},
  };
  pf_set_threads(2);
  for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
    int run = argc < 2;
    for (int a = 1; a < argc; a++) run |= !strcmp(argv[a], parts[i].name);
    if (run) parts[i].fn();
  }
  return t_failed != 0;
}
