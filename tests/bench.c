/*
** prefix-bench — throughput and memory figures for `make bench` and
** `make bench-compare`. A benchmark, not a test: it prints numbers and never
** fails on time.
**
**   prefix-bench [--threads N] [--csv] MODEL.gguf [MODEL.gguf ...]
**   prefix-bench --peak CMD [ARGS...]     peak RSS of a command, in MB
**
** For each model, measured as llama-bench measures (so bench-compare can set
** the two side by side): prefill tokens/s of a fresh 128-token prompt (best
** of 3 after a warm-up), decode tokens/s of 128 tokens at batch 1 from an
** empty context, decode tokens/s of 16 sequences with 16 different 10-position
** prefixes and 16-token prompts decoded together for 64 steps (as
** llama-batched-bench -npp 26 -ntg 64 -npl 16), training tokens/s
** (prefix-tuning steps, batch 8 × 128 tokens, prefix_len 10, the loss on the
** second half), and peak RSS of two fresh processes: one that loads the
** model and generates 32 tokens from a short prompt (as llama-simple -n 32),
** and one that trains. First line: the machine's matmul GFLOP/s per kernel.
*/
#include "internal.h"
#include "train.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}
/* ru_maxrss is in kilobytes on Linux, in bytes on macOS */
static long maxrss_mb(const struct rusage *ru) {
#ifdef __APPLE__
  return ru->ru_maxrss >> 20;
#else
  return ru->ru_maxrss / 1024;
#endif
}
static long peak_rss_mb(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return maxrss_mb(&ru);
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

typedef struct figures { double prefill, decode, dec16, train; long gen_mb, train_mb; } figures;

/* Run fn in a child process; its figures come back through a pipe, its peak RSS from wait4. */
static int in_child(void (*fn)(pf_model *, figures *), const char *path, figures *f, long *rss_mb) {
  int fd[2];
  if (pipe(fd)) return -1;
  pid_t pid = fork();
  if (pid == 0) {
    close(fd[0]);
    pf_err e;
    pf_model *m = pf_model_load(path, &e);
    figures r = {0};
    if (m) fn(m, &r);
    else fprintf(stderr, "%s: %s\n", path, e.msg);
    if (write(fd[1], &r, sizeof r) != (ssize_t)sizeof r) _exit(1);
    _exit(m ? 0 : 1);
  }
  close(fd[1]);
  figures r;
  int ok = read(fd[0], &r, sizeof r) == (ssize_t)sizeof r;
  close(fd[0]);
  int status;
  struct rusage ru;
  wait4(pid, &status, 0, &ru);
  if (!ok || !WIFEXITED(status) || WEXITSTATUS(status)) return -1;
  *rss_mb = maxrss_mb(&ru);
  if (fn) {
    if (r.prefill) f->prefill = r.prefill, f->decode = r.decode, f->dec16 = r.dec16;
    if (r.train) f->train = r.train;
  }
  return 0;
}

/* what llama-simple -n 32 does: a short prompt, 32 tokens */
static void gen32(pf_model *m, figures *f) {
  (void)f;
  pf_sample_params p;
  pf_sample_params_default(&p);
  p.max_tokens = 32;
  p.ignore_eos = 1;
  pf_gen_result r;
  pf_err e;
  if (pf_generate(m, NULL, 0, "Once upon a time", 16, &p, NULL, NULL, &r, &e) == PF_OK) pf_gen_result_clear(&r);
}

static void generation(pf_model *m, figures *f) {
  pf_err e;
  const pf_hparams *hp = pf_model_hparams(m);
  int V = hp->n_vocab, np = 128, nd = 128;
  int *toks = malloc(sizeof(int) * (np + nd));
  for (int i = 0; i < np + nd; i++) toks[i] = 3 + (i * 37) % (V - 3);
  float *logits = malloc(sizeof(float) * V);
  pf_seq *s = pf_seq_new(m, np + nd, &e);
  pf_work *w = pf_work_new();
  /* prefill: a fresh 128-token prompt */
  pf_forward(m, w, &s, &np, 1, toks, logits, 0, &e);   /* warm up */
  double best_pf = 1e9;
  for (int r = 0; r < 3; r++) {
    pf_seq_reset(s);
    double t0 = now();
    pf_forward(m, w, &s, &np, 1, toks, logits, 0, &e);
    double dt = now() - t0;
    if (dt < best_pf) best_pf = dt;
  }
  /* decode, batch 1, from an empty context (as llama-bench's tg) */
  int one = 1;
  pf_seq_reset(s);
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
  free(pk); free(lg16); free(toks); free(logits);
  pf_seq_free(s);
  pf_work_free(w);
  f->prefill = np / best_pf;
  f->decode = nd / dec;
  f->dec16 = B16 * steps16 / dec16;
}

static void training(pf_model *m, figures *f) {
  pf_err e;
  int V = pf_model_hparams(m)->n_vocab;
  int B = 8, T = 128, P = 10;   /* batch 8 × 128 tokens, prefix 10 */
  pf_pparams *pp = pf_pparams_new(m, PF_MODE_PREFIX, P, 512, &e);
  pf_pparams_init(pp, 1, NULL, NULL, 1.0f, &e);
  int *len = malloc(sizeof(int) * B), *bt = malloc(sizeof(int) * B * T), *tg = malloc(sizeof(int) * B * T);
  for (int i = 0; i < B; i++) len[i] = T;
  for (int i = 0; i < B * T; i++) { bt[i] = 3 + (i * 37) % (V - 3); tg[i] = (i % T) >= T / 2 ? 3 + (i * 11) % (V - 3) : -1; }
  pf_tbatch b = {B, len, bt, tg};
  pf_tws *tw = pf_tws_new();
  pf_prefix_in pin = {P, pf_pparams_kv(pp), pf_pparams_dkv(pp), 0, NULL, NULL};
  double ls, tt0 = 0, tdt = 0;
  int nt, steps = 0;
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
  f->train = (double)steps * B * T / tdt;
  pf_tws_free(tw);
  pf_pparams_free(pp);
  free(len); free(bt); free(tg);
}

static void bench_model(const char *path, int csv) {
  figures f = {0};
  long rss;
  const char *name = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
  if (in_child(generation, path, &f, &rss) || in_child(gen32, path, &f, &f.gen_mb) ||
      in_child(training, path, &f, &f.train_mb)) {
    printf("%-26s  error (see above)\n", name);
    return;
  }
  pf_err e;
  pf_model *m = pf_model_load(path, &e);
  double params = m ? pf_model_n_params(m) / 1e6 : 0;
  long file_mb = m ? (long)(pf_model_file_size(m) >> 20) : 0;
  pf_model_free(m);
  if (csv)
    printf("%s,%.1f,%ld,%.1f,%.1f,%.1f,%.1f,%ld,%ld\n", name, params, file_mb, f.prefill, f.decode, f.dec16, f.train,
           f.gen_mb, f.train_mb);
  else
    printf("%-26s %7.1fM %7ld %11.0f %10.1f %10.0f %9.0f %8ld %8ld\n", name, params, file_mb, f.prefill, f.decode,
           f.dec16, f.train, f.gen_mb, f.train_mb);
  fflush(stdout);
}

/* --peak CMD ARGS: run a command, print its peak RSS in MB (for llama.cpp's programs in bench-compare) */
static int peak(char **argv) {
  pid_t pid = fork();
  if (pid == 0) {
    int devnull = open("/dev/null", 1);
    if (devnull >= 0) dup2(devnull, 1), dup2(devnull, 2);
    execvp(argv[0], argv);
    _exit(127);
  }
  int status;
  struct rusage ru;
  wait4(pid, &status, 0, &ru);
  if (!WIFEXITED(status) || WEXITSTATUS(status)) { printf("error: %s exited with %d\n", argv[0], WEXITSTATUS(status)); return 1; }
  printf("%ld\n", maxrss_mb(&ru));
  return 0;
}

int main(int argc, char **argv) {
  int i = 1, csv = 0;
  if (argc > 2 && !strcmp(argv[1], "--peak")) return peak(argv + 2);
  for (; i < argc && argv[i][0] == '-'; i++) {
    if (!strcmp(argv[i], "--threads") && i + 1 < argc) pf_set_threads(atoi(argv[++i]));
    else if (!strcmp(argv[i], "--csv")) csv = 1;
  }
  int auto_k = pf_get_kernel();
  if (!csv) {
    printf("threads %d; matmul 1024x1024x1024 through the engine:", pf_get_threads());
    for (int k = PF_KERNEL_BLAS; k < PF_KERNEL_COUNT; k++)
      if (pf_set_kernel(k) == k) printf(" %s %.1f GFLOP/s;", pf_kernel_name(k), sgemm_gflops());
    pf_set_kernel(auto_k);
    printf(" in use: %s\n", pf_kernel_name(auto_k));
    printf("%-26s %8s %7s %11s %10s %10s %9s %8s %8s\n", "model", "params", "file MB", "prefill t/s", "decode t/s",
           "16 seqs t/s", "train t/s", "gen MB", "train MB");
  }
  (void)peak_rss_mb;
  for (; i < argc; i++) bench_model(argv[i], csv);
  return 0;
}
