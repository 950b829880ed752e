/*
** test_dp.c — differential privacy: the RDP accountant against an independent computation (numerical
** integration of A_alpha), hand-computable cases and Abadi et al.'s example; the noise generator's known
** answers; and DP-SGD in the trainer (per-example gradients, clipping, the noise-free limit, refusals).
*/
#include <math.h>

#include "dp.h"
#include "internal.h"
#include "testlib.h"
#include "train.h"

/* log((1 - q) + q e^x) */
static double log_mix(double q, double x) {
  double a = log1p(-q), b = log(q) + x;
  double m = a > b ? a : b;
  return m + log1p(exp(-fabs(a - b)));
}

/* RDP of the subsampled Gaussian by the trapezoid rule over z in log space: A = integral of
** mu0(z) ((1 - q) + q mu1(z)/mu0(z))^alpha dz, mu0 = N(0, sigma^2), mu1 = N(1, sigma^2). */
static double rdp_integrated(double q, double sigma, double alpha) {
  double h = sigma / 50, lo = -30 * sigma - 1, hi = alpha + 30 * sigma + 1, acc = -INFINITY;
  double c = -log(sigma * sqrt(2 * M_PI)) + log(h);
  for (double z = lo; z <= hi; z += h) {
    double f = c - z * z / (2 * sigma * sigma) + alpha * log_mix(q, (2 * z - 1) / (2 * sigma * sigma));
    double m = acc > f ? acc : f;
    acc = m == -INFINITY ? f : m + log1p(exp(-fabs(acc - f)));
  }
  return acc / (alpha - 1);
}

static void test_accountant(void) {
  /* the sum over orders against the integral, for a grid of rates and noise; then epsilon for steps and delta */
  double qs[] = {0.001, 0.01, 0.1, 0.5}, sigmas[] = {0.7, 1.0, 2.0, 4.0};
  long steps[] = {100, 10000};
  double deltas[] = {1e-5, 1e-3}, worst = 0, worst_rdp = 0;
  static double ri[PF_DP_ORDERS];
  for (int a = 0; a < 4; a++)
    for (int b = 0; b < 4; b++) {
      for (int o = 0; o < PF_DP_ORDERS; o++) {
        double x = pf_dp_rdp(qs[a], sigmas[b], pf_dp_order(o));
        ri[o] = rdp_integrated(qs[a], sigmas[b], pf_dp_order(o));
        if (isfinite(ri[o]) && ri[o] > 1e-12) {
          double d = fabs(x - ri[o]) / ri[o];
          if (d > worst_rdp && ri[o] > 1e-9) worst_rdp = d;
        }
      }
      for (int s = 0; s < 2; s++)
        for (int dl = 0; dl < 2; dl++) {
          double ind = INFINITY;
          for (int o = 0; o < PF_DP_ORDERS; o++) {
            double e = steps[s] * ri[o] + log(1 / deltas[dl]) / (pf_dp_order(o) - 1);
            if (e < ind) ind = e;
          }
          pf_dp_run run = {qs[a], sigmas[b], steps[s]};
          double eps = pf_dp_epsilon(&run, 1, deltas[dl], NULL), d = fabs(eps - ind) / ind;
          if (d > worst) worst = d;
        }
    }
  CHECK(worst <= 0.01, "epsilon = an independent computation (numerical integration) within 1%, 64 (q, sigma, steps, delta)",
        "worst relative difference %g", worst);
  CHECK(worst_rdp <= 1e-3, "RDP at each of the 151 orders = the integral within 0.1% (16 (q, sigma))", "worst %g", worst_rdp);

  /* q = 1: the Gaussian mechanism, alpha / (2 sigma^2); sigma 1, one step, delta 1e-5: best order 5.8 */
  pf_dp_run g = {1, 1, 1};
  double order, e1 = pf_dp_epsilon(&g, 1, 1e-5, &order), want = 5.8 / 2 + log(1e5) / 4.8;
  CHECK(fabs(e1 - want) < 1e-9 && fabs(order - 5.8) < 1e-9, "q = 1: epsilon = min over orders of alpha/(2 sigma^2) + log(1/delta)/(alpha-1)",
        "%.9g vs %.9g at order %g", e1, want, order);

  /* Abadi et al. 2016: q = 0.01, sigma = 4, 10,000 steps, delta 1e-5: 1.26 by their moments accountant */
  pf_dp_run ab = {0.01, 4, 10000};
  double ea = pf_dp_epsilon(&ab, 1, 1e-5, &order);
  CHECK(ea > 1.0 && ea < 1.4, "Abadi et al.'s example (q 0.01, sigma 4, T 10,000, delta 1e-5): epsilon near their 1.26",
        "%.4f at order %g", ea, order);

  /* monotone: more steps or a higher rate spend more; more noise less */
  pf_dp_run r0 = {0.02, 1.1, 1000}, r1 = {0.02, 1.1, 2000}, r2 = {0.04, 1.1, 1000}, r3 = {0.02, 1.5, 1000};
  double b0 = pf_dp_epsilon(&r0, 1, 1e-5, NULL);
  CHECK(pf_dp_epsilon(&r1, 1, 1e-5, NULL) > b0 && pf_dp_epsilon(&r2, 1, 1e-5, NULL) > b0 && pf_dp_epsilon(&r3, 1, 1e-5, NULL) < b0,
        "epsilon grows with steps and with q, falls with sigma", "%g", b0);
  /* two runs add up: 1,000 + 1,000 steps = 2,000 steps */
  pf_dp_run two[2] = {r0, r0};
  CHECK(fabs(pf_dp_epsilon(two, 2, 1e-5, NULL) - pf_dp_epsilon(&r1, 1, 1e-5, NULL)) < 1e-9, "two runs compose as one of their steps", "");

  /* the noise multiplier for a target spends at most it, and 1% less noise spends more */
  pf_err e;
  double sigma;
  int ok = 1, tight = 1;
  double targets[] = {1, 3, 8};
  for (int i = 0; i < 3; i++) {
    ok &= pf_dp_sigma(NULL, 0, 0.05, 2000, targets[i], 1e-5, &sigma, &e) == PF_OK;
    pf_dp_run x = {0.05, sigma, 2000}, y = {0.05, sigma * 0.99, 2000};
    ok &= pf_dp_epsilon(&x, 1, 1e-5, NULL) <= targets[i];
    tight &= pf_dp_epsilon(&y, 1, 1e-5, NULL) > targets[i];
  }
  CHECK(ok && tight, "the sigma found for epsilon 1, 3, 8 spends at most it; 1% less noise spends more", "");
  CHECK(pf_dp_sigma(NULL, 0, 0.05, 2000, 0.1, 1e-5, &sigma, &e) == PF_ERR && t_contains(e.msg, "cannot be met"),
        "an epsilon no noise can meet is refused", "%s", e.msg);
  pf_dp_run spent = {0.05, 0.8, 5000};
  CHECK(pf_dp_sigma(&spent, 1, 0.05, 100, 1.0, 1e-5, &sigma, &e) == PF_ERR && t_contains(e.msg, "already spent"),
        "a target the runs before already spent is refused", "%s", e.msg);
}

/* A BLOB's record of runs read back; what is not the writer's record is not read as one. */
static void test_runs_parse(void) {
  pf_dp_run r[3];
  int ok = pf_dp_runs_parse("{\"x\":1,\"dp\":{\"runs\":[[0.5,1.25,100],[0.1, 2 ,7]],\"epsilon\":3}}", r, 3) == 2 &&
           r[0].q == 0.5 && r[0].sigma == 1.25 && r[0].steps == 100 && r[1].steps == 7;
  ok &= pf_dp_runs_parse("{\"dp\":{\"runs\":[]}}", r, 3) == 0;
  ok &= pf_dp_runs_parse("{\"options\":{}}", r, 3) == -1;
  ok &= pf_dp_runs_parse("{\"init_text\":\"\\\"dp\\\":{\\\"runs\\\":[[0.5,1,1]]\"}", r, 3) == -1;   /* inside a string */
  ok &= pf_dp_runs_parse("{\"dp\":{\"runs\":[[0.5,1]]}}", r, 3) == -1;
  ok &= pf_dp_runs_parse("{\"dp\":{\"runs\":[[2,1,1]]}}", r, 3) == -1;           /* q > 1 */
  ok &= pf_dp_runs_parse("{\"dp\":{\"runs\":[[0.5,nan,1]]}}", r, 3) == -1;
  ok &= pf_dp_runs_parse("{\"dp\":{\"runs\":[[0.5,1,1],[0.5,1,1]", r, 3) == -1;   /* cut */
  ok &= pf_dp_runs_parse("{\"dp\":{\"runs\":[[0.5,1,1],[0.5,1,1],[0.5,1,1],[0.5,1,1]]}}", r, 3) == -2;
  CHECK(ok, "a BLOB's dp runs are read back; a record in a string, cut, malformed or too long is not", "");
}

static void test_chacha(void) {
  /* RFC 8439 appendix A.1: key 0, nonce 0, block counters 0 and 1 */
  uint32_t key[8] = {0}, nonce[3] = {0}, out[16];
  pf_chacha20_block(key, 0, nonce, out);
  int ok = out[0] == 0xade0b876u && out[1] == 0x903df1a0u && out[15] == 0x8665eeb2u;
  pf_chacha20_block(key, 1, nonce, out);
  ok &= out[0] == 0xbee7079fu && out[1] == 0x7a385155u;
  CHECK(ok, "ChaCha20's block function gives RFC 8439's known answers", "%08x %08x", out[0], out[1]);

  /* the noise the trainer adds: N(0, sd^2) per value, the same for the same key and draw, whatever the threads */
  pf_csprng r, r2;
  pf_csprng_seed_u64(&r, 12345);
  pf_csprng_seed_u64(&r2, 12345);
  size_t n = 200003;
  float *a = calloc(n, sizeof(float)), *b = calloc(n, sizeof(float)), *c = calloc(n, sizeof(float));
  int old = pf_threads_push(1);
  pf_csprng_noise(&r, 7, a, n, 2.0);
  pf_threads_pop(old);
  old = pf_threads_push(2);
  pf_csprng_noise(&r2, 7, b, n, 2.0);
  pf_csprng_noise(&r2, 8, c, n, 2.0);
  pf_threads_pop(old);
  double s = 0, s2 = 0;
  for (size_t i = 0; i < n; i++) { s += a[i]; s2 += (double)a[i] * a[i]; }
  double mean = s / n, var = s2 / n - mean * mean;
  CHECK(!memcmp(a, b, n * sizeof(float)) && memcmp(a, c, n * sizeof(float)) && fabs(mean) < 0.02 && fabs(var - 4) < 0.08,
        "the noise: mean 0, variance sd^2, the same for the same key and step on 1 or 2 threads, another step another",
        "mean %g var %g", mean, var);
  free(a); free(b); free(c);
  pf_err e;
  CHECK(pf_csprng_seed_os(&r, &e) == PF_OK && pf_csprng_seed_os(&r2, &e) == PF_OK && pf_csprng_u32(&r) != pf_csprng_u32(&r2),
        "the OS seeds two generators differently", "");
}

/* ------------------------------------------------------------------ DP-SGD in the trainer */

/* Rows whose completions have one token count (the per-row mean DP-SGD takes equals the token-weighted batch
** mean then). */
static const char *PROMPTS[] = {"Q: Who is Lily?", "Q: Where is Tom?", "Q: What is red?", "Q: Who ran?", "Q: What fell?",
                                "Q: Who sang?"};
static const char *COMPL[] = {" A: the girl.", " A: the home.", " A: the box.", " A: the tree.", " A: the cup.",
                              " A: the bird."};

/* The sum of each row's gradient alone = the batch's gradient, in every mode. */
static void test_per_example(const pf_model *m) {
  const pf_hparams *hp = pf_model_hparams(m);
  struct { int mode, mid; const char *name; } modes[] = {{PF_MODE_PREFIX, 64, "prefix (MLP)"}, {PF_MODE_PREFIX, 0, "prefix (table)"},
                                                        {PF_MODE_EMBEDDING, 0, "embedding"}};
  int lens[4] = {9, 14, 6, 11}, T = 0;
  for (int i = 0; i < 4; i++) T += lens[i];
  int tok[64], tgt[64];
  for (int t = 0; t < T; t++) { tok[t] = 3 + (t * 37) % (hp->n_vocab - 3); tgt[t] = t % 3 ? 3 + (t * 11) % (hp->n_vocab - 3) : -1; }
  for (int mi = 0; mi < 3; mi++) {
    pf_err e;
    int P = 4, E = modes[mi].mode == PF_MODE_EMBEDDING ? P : 0;
    pf_pparams *pp = pf_pparams_new(m, modes[mi].mode, P, modes[mi].mid, &e);
    pf_pparams_init(pp, 5, NULL, NULL, 0.5f, &e);
    pf_tws *w = pf_tws_new();
    pf_prefix_in pin = {E ? 0 : P, pf_pparams_kv(pp), pf_pparams_dkv(pp), E, E ? pf_pparams_emb(pp) : NULL, E ? pf_pparams_demb(pp) : NULL};
    size_t n = pf_pparams_count(pp);
    float *batch = malloc(sizeof(float) * n), *sum = calloc(n, sizeof(float));
    double ls;
    int nt, ok = 1;
    pf_pparams_forward(pp);
    pf_pparams_zero_grad(pp);
    pf_tbatch b = {4, lens, tok, tgt};
    ok &= pf_train_step(m, w, &b, &pin, 0.01f, 1, &ls, &nt, NULL, NULL, &e) == PF_OK;
    pf_pparams_backward(pp);
    memcpy(batch, pf_pparams_grad(pp), sizeof(float) * n);
    for (int i = 0, o = 0; i < 4; o += lens[i], i++) {
      pf_pparams_zero_grad(pp);
      pf_tbatch one = {1, &lens[i], tok + o, tgt + o};
      ok &= pf_train_step(m, w, &one, &pin, 0.01f, 1, &ls, &nt, NULL, NULL, &e) == PF_OK;
      pf_pparams_backward(pp);
      for (size_t k = 0; k < n; k++) sum[k] += pf_pparams_grad(pp)[k];
    }
    double d = t_maxdiff(batch, sum, n), mx = 0;
    for (size_t k = 0; k < n; k++) mx = fmax(mx, fabs(batch[k]));
    char name[160];
    snprintf(name, sizeof name, "%s: per-example gradients summed = the batch gradient", modes[mi].name);
    CHECK(ok && mx > 0 && d <= 1e-5 * mx + 1e-9, name, "max diff %g of %g", d, mx);
    free(batch); free(sum);
    pf_tws_free(w);
    pf_pparams_free(pp);
  }
}

static int train(const pf_model *m, const pf_train_params *p, int n, uint8_t **blob, size_t *len, pf_err *e) {
  pf_example ex[6];
  for (int i = 0; i < n; i++) ex[i] = (pf_example){PROMPTS[i], strlen(PROMPTS[i]), COMPL[i], strlen(COMPL[i])};
  return pf_train(m, ex, n, NULL, 0, p, NULL, NULL, NULL, NULL, blob, len, e);
}

static double kv_diff(const uint8_t *a, size_t al, const uint8_t *b, size_t bl, double *scale) {
  pf_prefix x, y;
  pf_err e;
  double d = INFINITY;
  *scale = 0;
  if (pf_prefix_decode(a, al, &x, &e) == PF_OK) {
    if (pf_prefix_decode(b, bl, &y, &e) == PF_OK) {
      size_t n = (size_t)x.n_layer * 2 * x.prefix_len * x.n_head_kv * x.head_dim;
      d = t_maxdiff(x.kv, y.kv, n);
      for (size_t i = 0; i < n; i++) *scale = fmax(*scale, fabs(x.kv[i]));
      pf_prefix_clear(&y);
    }
    pf_prefix_clear(&x);
  }
  return d;
}

static void test_trainer(const pf_model *m) {
  pf_err e;
  int ok = 1;
  for (int i = 0; i < 6; i++) {   /* the rows' premise: the same number of completion tokens */
    int *a, *b, na, nb;
    pf_tokenize(m, COMPL[i], strlen(COMPL[i]), 0, &a, &na, &e);
    pf_tokenize(m, COMPL[0], strlen(COMPL[0]), 0, &b, &nb, &e);
    ok &= na == nb;
    free(a); free(b);
  }
  CHECK(ok, "the test rows' completions have one token count", "");

  /* sigma 0 and no clipping, every row in every step (batch_size = rows: q = 1): today's training, step for step */
  pf_train_params p;
  pf_train_params_default(&p);
  p.max_steps = 30;
  p.batch_size = 6;
  p.grad_clip = 0;
  p.mid_dim = 32;
  uint8_t *plain, *noisy;
  size_t pl, nl;
  int rc1 = train(m, &p, 6, &plain, &pl, &e);
  p.dp = 1;
  p.dp_noise_multiplier = 0;
  p.dp_max_grad_norm = INFINITY;
  int rc2 = train(m, &p, 6, &noisy, &nl, &e);
  double sc, d = kv_diff(plain, pl, noisy, nl, &sc);
  CHECK(!rc1 && !rc2 && d <= 1e-4 * sc, "dp with sigma 0 and no clipping, q = 1: the same prefix as training without dp (30 steps)",
        "max diff %g of %g (%s)", d, sc, e.msg);
  pf_prefix x;
  CHECK(!rc2 && pf_prefix_decode(noisy, nl, &x, &e) == PF_OK && t_contains(x.meta, "\"epsilon\":null") &&
        t_contains(x.meta, "\"loss_history\":null") && t_contains(x.meta, "\"final_train_loss\":null"),
        "no noise: epsilon is recorded as null (infinite); the private rows' losses stay out of the BLOB", "%.300s", x.meta);
  pf_prefix_clear(&x);
  free(plain); free(noisy);

  /* a target epsilon: noise chosen for it; the same noise seed gives the same bytes, another seed another prefix */
  pf_train_params_default(&p);
  p.max_steps = 20;
  p.batch_size = 2;
  p.mid_dim = 32;
  p.dp = 1;
  p.dp_epsilon = 4;
  p.dp_noise_seed = 99;
  uint8_t *a, *b, *c;
  size_t al, bl, cl;
  int r1 = train(m, &p, 6, &a, &al, &e), r2 = train(m, &p, 6, &b, &bl, &e);
  p.dp_noise_seed = 100;
  int r3 = train(m, &p, 6, &c, &cl, &e);
  CHECK(!r1 && !r2 && !r3 && al == bl && !memcmp(a, b, al) && (al != cl || memcmp(a, c, al)),
        "the same noise_seed gives the same BLOB; another seed another", "%s", e.msg);
  if (!r2) free(b);
  if (!r3) free(c);
  pf_prefix_decode(a, al, &x, &e);
  pf_dp_run runs[4];
  int nr = pf_dp_runs_parse(x.meta, runs, 4);
  double eps1 = nr == 1 ? pf_dp_epsilon(runs, 1, 1e-5, NULL) : NAN;
  CHECK(nr == 1 && fabs(runs[0].q - 2.0 / 6) < 1e-12 && runs[0].steps == 20 && eps1 <= 4 && eps1 > 3.9 &&
        t_contains(x.meta, "\"accountant\":\"rdp\""),
        "the BLOB records the run (q 1/3, 20 steps, sigma) and spends at most the target epsilon 4", "runs %d eps %g", nr, eps1);
  pf_prefix_clear(&x);

  /* a warm start from it: the second run's spending adds up; the target covers both */
  p.init_prefix = a;
  p.init_prefix_len = al;
  p.dp_epsilon = 6;
  int r4 = train(m, &p, 6, &b, &bl, &e);   /* b reused */
  double eps2 = NAN;
  if (!r4 && pf_prefix_decode(b, bl, &x, &e) == PF_OK) {
    nr = pf_dp_runs_parse(x.meta, runs, 4);
    eps2 = nr == 2 ? pf_dp_epsilon(runs, 2, 1e-5, NULL) : NAN;
    pf_prefix_clear(&x);
  }
  CHECK(!r4 && nr == 2 && eps2 <= 6 && eps2 > eps1, "init_prefix from a dp prefix: both runs are counted (epsilon over both <= 6)",
        "%s; runs %d eps %g", r4 ? e.msg : "", nr, eps2);
  p.dp_epsilon = 3;
  CHECK(train(m, &p, 6, &c, &cl, &e) == PF_ERR && t_contains(e.msg, "already spent"),
        "a target below what the starting prefix spent is refused", "%s", e.msg);
  free(b);

  /* a starting prefix trained without dp is refused */
  pf_train_params q;
  pf_train_params_default(&q);
  q.max_steps = 2;
  q.mid_dim = 32;
  uint8_t *np_blob;
  size_t npl;
  train(m, &q, 6, &np_blob, &npl, &e);
  p.init_prefix = np_blob;
  p.init_prefix_len = npl;
  p.dp_epsilon = 8;
  CHECK(train(m, &p, 6, &c, &cl, &e) == PF_ERR && t_contains(e.msg, "init_prefix was trained without dp"),
        "init_prefix trained without dp is refused under dp", "%s", e.msg);
  free(np_blob);
  free(a);

  /* hostile options */
  struct { float eps, delta, C, sigma; const char *want; } bad[] = {
      {NAN, 0, 1, -1, "epsilon must be a positive number"}, {-1, 0, 1, -1, "epsilon must be a positive number"},
      {1, 1.5f, 1, -1, "delta must be between 0 and 1"}, {1, 0, 0, -1, "max_grad_norm must be > 0"},
      {1, 0, NAN, -1, "max_grad_norm must be > 0"}, {0, 0, 1, NAN, "noise_multiplier must be a number >= 0"},
      {0, 0, 1, -2, "noise_multiplier must be a number >= 0"}, {0, 0, 1, -1, "give epsilon"}};
  ok = 1;
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    pf_train_params_default(&p);
    p.dp = 1;
    p.max_steps = 1;
    p.dp_epsilon = bad[i].eps;
    p.dp_delta = bad[i].delta;
    p.dp_max_grad_norm = bad[i].C;
    p.dp_noise_multiplier = bad[i].sigma;
    int rc = train(m, &p, 6, &c, &cl, &e);
    if (rc != PF_ERR || !t_contains(e.msg, bad[i].want)) { ok = 0; printf("  case %zu: %s\n", i, rc ? e.msg : "accepted"); }
    if (!rc) free(c);
  }
  CHECK(ok, "hostile dp options (NaN, epsilon <= 0, delta >= 1, max_grad_norm <= 0, sigma < 0, none) are refused clearly", "");
}

int main(void) {
  test_accountant();
  test_runs_parse();
  test_chacha();
  pf_err e;
  pf_model *m = pf_model_load(t_model_path("stories260K.gguf"), &e);
  CHECK(m != NULL, "load stories260K.gguf", "%s", e.msg);
  if (!m) return 1;
  test_per_example(m);
  test_trainer(m);
  pf_model_free(m);
  return t_failed ? 1 : 0;
}
