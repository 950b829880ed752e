/*
** prefix-bench — throughput figures for `make bench`. A benchmark, not a test:
** it prints numbers and never fails on time.
**
**   prefix-bench [--threads N] MODEL.gguf [MODEL.gguf ...]
**
** For each model: prefill tokens/s (one 128-token prompt), decode tokens/s at
** batch 1, decode tokens/s with 16 sequences with 16 different prefixes
** decoded together, training tokens/s (prefix-tuning steps, batch 8 x 64
** tokens, prefix_len 10), and the process's peak RSS. First line: the
** machine's measured matmul GFLOP/s for each kernel (1024^3).
*/
#include "internal.h"
#include "train.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}
static long peak_rss_mb(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss / 1024;
}

static double sgemm_gflops(void) {
  int n = 1024;
  float *a = malloc(sizeof(float) * n * n), *b = malloc(sizeof(float) * n * n), *c = malloc(sizeof(float) * n * n);
  for (int i = 0; i < n * n; i++) { a[i] = (float)(i % 7) * 0.1f; b[i] = (float)(i % 5) * 0.1f; }
  pf_matmul(c, a, b, n, n, n);
  double t0 = now();
  int reps = 3;
  for (int r = 0; r < reps; r++) pf_matmul(c, a, b, n, n, n);
  double dt = now() - t0;
  free(a); free(b); free(c);
  return 2.0 * n * n * n * reps / dt / 1e9;
}

static void bench_model(const char *path) {
  pf_err e;
  pf_model *m = pf_model_load(path, &e);
  if (!m) { printf("%-28s  error: %s\n", path, e.msg); return; }
  const pf_hparams *hp = pf_model_hparams(m);
  int V = hp->n_vocab, np = 128, nd = 128;
  int *toks = malloc(sizeof(int) * (np + nd));
  for (int i = 0; i < np + nd; i++) toks[i] = 3 + (i * 37) % (V - 3);
  float *logits = malloc(sizeof(float) * V);
  pf_seq *s = pf_seq_new(m, np + nd, &e);
  pf_work *w = pf_work_new();
  /* prefill */
  pf_forward(m, w, &s, &np, 1, toks, logits, 0, &e);   /* warm up */
  double best_pf = 1e9;
  for (int r = 0; r < 3; r++) {
    pf_seq_reset(s);
    double t0 = now();
    pf_forward(m, w, &s, &np, 1, toks, logits, 0, &e);
    double dt = now() - t0;
    if (dt < best_pf) best_pf = dt;
  }
  /* decode, batch 1 */
  int one = 1;
  double t0 = now();
  for (int i = 0; i < nd; i++) pf_forward(m, w, &s, &one, 1, &toks[np + i], logits, 0, &e);
  double dec = now() - t0;
  /* decode, 16 sequences with 16 different prefixes */
  int B16 = 16, P16 = 10, steps16 = 64, plen = 16;
  size_t kvd = (size_t)hp->n_head_kv * hp->head_dim, npk = (size_t)hp->n_layer * 2 * P16 * kvd;
  float *pk = malloc(sizeof(float) * npk), *lg16 = malloc(sizeof(float) * B16 * V);
  pf_seq *ss[16];
  int nt16[16], tk16[16 * 16];
  for (int i = 0; i < B16; i++) {
    for (size_t j = 0; j < npk; j++) pk[j] = (float)((j * 7 + i * 13) % 17) * 0.01f;
    ss[i] = pf_seq_new(m, P16 + plen + steps16, &e);
    pf_seq_set_prefix(ss[i], pk, P16, &e);
    nt16[i] = plen;
    for (int j = 0; j < plen; j++) tk16[i * plen + j] = toks[(i * 5 + j) % (np + nd)];
  }
  pf_forward(m, w, ss, nt16, B16, tk16, lg16, 0, &e);
  for (int i = 0; i < B16; i++) nt16[i] = 1;
  double t16 = now();
  for (int st = 0; st < steps16; st++) {
    for (int i = 0; i < B16; i++) tk16[i] = toks[(st * 3 + i) % (np + nd)];
    pf_forward(m, w, ss, nt16, B16, tk16, lg16, 0, &e);
  }
  double dec16 = now() - t16;
  for (int i = 0; i < B16; i++) pf_seq_free(ss[i]);
  free(pk); free(lg16);
  /* training steps */
  int B = 8, T = 128, P = 10;   /* the PyTorch setup: batch 8 × 128 tokens, prefix 10 */
  pf_pparams *pp = pf_pparams_new(m, PF_MODE_PREFIX, P, 512, &e);
  pf_pparams_init(pp, 1, NULL, NULL, 1.0f, &e);
  int *len = malloc(sizeof(int) * B), *bt = malloc(sizeof(int) * B * T), *tg = malloc(sizeof(int) * B * T);
  for (int i = 0; i < B; i++) len[i] = T;
  for (int i = 0; i < B * T; i++) { bt[i] = toks[i % (np + nd)]; tg[i] = (i % T) >= T / 2 ? toks[(i + 1) % (np + nd)] : -1; }
  pf_tbatch b = {B, len, bt, tg};
  pf_tws *tw = pf_tws_new();
  pf_prefix_in pin = {P, pf_pparams_kv(pp), pf_pparams_dkv(pp), 0, NULL, NULL};
  double ls;
  int nt, steps = 0;
  double tt0 = 0, tdt = 0;
  for (int st = 0;; st++) {   /* step 0 warms up (first-touch of the workspace) and is not timed */
    if (st == 1) tt0 = now();
    pf_pparams_zero_grad(pp);
    pf_pparams_forward(pp);
    pf_train_step(m, tw, &b, &pin, 1.0f / (B * T / 2), 1, &ls, &nt, NULL, NULL, &e);
    pf_pparams_backward(pp);
    pf_adamw(pp, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f, st + 1, 1.0f);
    if (st == 0) continue;
    steps++;
    tdt = now() - tt0;
    if ((tdt >= 3.0 && steps >= 3) || steps >= 50) break;
  }
  const char *name = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
  printf("%-22s %8.1fM %12.0f %11.1f %15.0f %8.1fx %11.0f %8ld\n", name, pf_model_n_params(m) / 1e6, np / best_pf,
         nd / dec, B16 * steps16 / dec16, (B16 * steps16 / dec16) / (nd / dec), (double)steps * B * T / tdt, peak_rss_mb());
  fflush(stdout);
  pf_tws_free(tw);
  pf_pparams_free(pp);
  free(len); free(bt); free(tg); free(toks); free(logits);
  pf_seq_free(s);
  pf_work_free(w);
  pf_model_free(m);
}

int main(int argc, char **argv) {
  int i = 1;
  if (argc > 2 && !strcmp(argv[1], "--threads")) { pf_set_threads(atoi(argv[2])); i = 3; }
  int auto_k = pf_get_kernel();
  printf("threads %d; matmul 1024x1024x1024 through the engine:", pf_get_threads());
  for (int k = PF_KERNEL_BLAS; k <= PF_KERNEL_AVX512; k++)
    if (pf_set_kernel(k) == k) printf(" %s %.1f GFLOP/s;", pf_kernel_name(k), sgemm_gflops());
  pf_set_kernel(auto_k);
  printf(" in use: %s\n", pf_kernel_name(auto_k));
  printf("%-22s %9s %12s %11s %15s %9s %11s %8s\n", "model", "params", "prefill t/s", "decode t/s", "16 prefixes t/s",
         "vs b=1", "train t/s", "peak MB");
  for (; i < argc; i++) bench_model(argv[i]);
  return 0;
}
