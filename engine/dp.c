/*
** dp.c — the RDP accountant of the Poisson-subsampled Gaussian mechanism, and ChaCha20 noise (dp.h).
**
** A_alpha = E_{z ~ mu0} [((1 - q) + q mu1(z) / mu0(z))^alpha], mu0 = N(0, sigma^2), mu1 = N(1, sigma^2), and
** rdp(alpha) = log(A_alpha) / (alpha - 1) (Mironov, Talwar & Zhang 2019, section 3).
**
** Integer alpha: the binomial expansion is finite,
**   A = sum_{k=0..alpha} C(alpha, k) (1-q)^(alpha-k) q^k exp((k^2 - k) / (2 sigma^2)).
** Fractional alpha: split the integral at z0 = sigma^2 log(1/q - 1) + 1/2, where q mu1 = (1 - q) mu0. Below
** z0 expand in powers of q mu1/mu0 (the smaller term), above it in powers of (1-q) mu0/(q mu1); each term is
** a Gaussian integral over a half line:
**   A = sum_i C(alpha, i) (1-q)^(alpha-i) q^i exp((i^2 - i) / (2 sigma^2)) erfc((i - z0) / (sqrt 2 sigma)) / 2
**     + sum_i C(alpha, i) q^(alpha-i) (1-q)^i exp((j^2 - j) / (2 sigma^2)) erfc((z0 - j) / (sqrt 2 sigma)) / 2,
**       j = alpha - i,
** both series summed until their terms are 1e-18 of the total (binomial coefficients of a fractional alpha
** change sign past alpha). Everything is in logarithms: exp((k^2 - k) / 2 sigma^2) overflows doubles for
** small sigma.
*/
#include "dp.h"
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#if defined(__APPLE__)
#include <sys/random.h>
#else
#include <unistd.h>
#endif

double pf_dp_order(int i) { return i < 99 ? 1.0 + (i + 1) / 10.0 : 12.0 + (i - 99); }

/* log(exp(a) + exp(b)) */
static double log_add(double a, double b) {
  if (a == -INFINITY) return b;
  if (b == -INFINITY) return a;
  double m = a > b ? a : b;
  return m + log1p(exp(-fabs(a - b)));
}

/* log(erfc(x)), for large x from the asymptotic series (erfc underflows past x = 26) */
static double log_erfc(double x) {
  if (x < 20) return log(erfc(x));
  double x2 = x * x;
  return -x2 - log(x) - 0.5 * log(M_PI) + log1p(-1 / (2 * x2) + 3 / (4 * x2 * x2) - 15 / (8 * x2 * x2 * x2));
}

/* a signed sum kept as log|positive part| and log|negative part| */
typedef struct lsum { double pos, neg; } lsum;
static void lsum_add(lsum *s, double log_abs, int sign) {
  if (sign > 0) s->pos = log_add(s->pos, log_abs);
  else s->neg = log_add(s->neg, log_abs);
}

static double log_a_int(double q, double sigma, int alpha) {
  double acc = -INFINITY, lc = 0, lq = log(q), l1q = log1p(-q), s2 = 2 * sigma * sigma;
  for (int k = 0; k <= alpha; k++) {
    if (k > 0) lc += log((double)(alpha - k + 1) / k);   /* log C(alpha, k) */
    double t = lc + (alpha - k) * l1q + k * lq + ((double)k * k - k) / s2;
    acc = log_add(acc, t);
  }
  return acc;
}

static double log_a_frac(double q, double sigma, double alpha) {
  double lq = log(q), l1q = log1p(-q), s2 = 2 * sigma * sigma, r2s = M_SQRT2 * sigma;
  double z0 = sigma * sigma * log(1 / q - 1) + 0.5;
  lsum a = {-INFINITY, -INFINITY};
  double lc = 0;   /* log |C(alpha, i)| */
  int sign = 1;
  for (int i = 0; i < 100000; i++) {
    if (i > 0) {
      double f = (alpha - i + 1) / i;
      lc += log(fabs(f));
      if (f < 0) sign = -sign;
    }
    double j = alpha - i;
    double t0 = lc + j * l1q + i * lq + ((double)i * i - i) / s2 + log(0.5) + log_erfc((i - z0) / r2s);
    double t1 = lc + j * lq + i * l1q + (j * j - j) / s2 + log(0.5) + log_erfc((z0 - j) / r2s);
    lsum_add(&a, t0, sign);
    lsum_add(&a, t1, sign);
    double total = a.neg > -INFINITY && a.pos > a.neg ? a.pos + log1p(-exp(a.neg - a.pos)) : a.pos;
    if (i > alpha && (t0 > t1 ? t0 : t1) < total - 41.4) break;   /* 1e-18 of the sum */
  }
  if (a.neg == -INFINITY) return a.pos;
  return a.pos > a.neg ? a.pos + log1p(-exp(a.neg - a.pos)) : -INFINITY;
}

double pf_dp_rdp(double q, double sigma, double alpha) {
  if (q <= 0) return 0;
  if (!(sigma > 0)) return INFINITY;
  if (q >= 1) return alpha / (2 * sigma * sigma);   /* the Gaussian mechanism itself */
  double la = alpha == floor(alpha) ? log_a_int(q, sigma, (int)alpha) : log_a_frac(q, sigma, alpha);
  double r = la / (alpha - 1);
  return isnan(r) || r < 0 ? (isnan(r) ? INFINITY : 0) : r;
}

double pf_dp_epsilon(const pf_dp_run *runs, int n, double delta, double *order) {
  double best = INFINITY, best_a = NAN;
  for (int i = 0; i < PF_DP_ORDERS; i++) {
    double a = pf_dp_order(i), rdp = 0;
    for (int k = 0; k < n; k++) rdp += runs[k].steps > 0 ? (double)runs[k].steps * pf_dp_rdp(runs[k].q, runs[k].sigma, a) : 0;
    double eps = rdp + log(1 / delta) / (a - 1);
    if (eps < best) { best = eps; best_a = a; }
  }
  if (order) *order = best_a;
  return best;
}

int pf_dp_sigma(const pf_dp_run *before, int n_before, double q, long steps, double epsilon, double delta,
                double *sigma, pf_err *err) {
  pf_dp_run runs[PF_DP_RUNS_MAX];
  if (n_before < 0 || !before) n_before = 0;
  if (n_before > PF_DP_RUNS_MAX - 1) n_before = PF_DP_RUNS_MAX - 1;
  if (n_before) memcpy(runs, before, sizeof *runs * (size_t)n_before);
  int n = n_before + 1;
  runs[n - 1] = (pf_dp_run){q, 1e4, steps};
  if (pf_dp_epsilon(runs, n, delta, NULL) > epsilon) {
    runs[n - 1].steps = 0;
    double spent = pf_dp_epsilon(runs, n, delta, NULL);
    if (n_before > 0 && spent >= epsilon)
      return pf_seterr(err, PF_ERR, "the starting prefix already spent epsilon %.4g of the target %g (delta %g)", spent,
                       epsilon, delta);
    return pf_seterr(err, PF_ERR, "epsilon %g cannot be met with delta %g (log(1/delta) alone needs more over the "
                     "accountant's orders): raise epsilon or delta", epsilon, delta);
  }
  double lo = 1e-3, hi = 1e4;
  while (hi / lo > 1.001) {   /* geometric bisection: epsilon falls as sigma grows */
    double mid = sqrt(lo * hi);
    runs[n - 1].sigma = mid;
    if (pf_dp_epsilon(runs, n, delta, NULL) <= epsilon) hi = mid;
    else lo = mid;
  }
  *sigma = hi;
  return PF_OK;
}

/* ------------------------------------------------------------------ a BLOB's record */

static const char *skip_ws(const char *p) {
  while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r') p++;
  return p;
}

int pf_dp_runs_parse(const char *meta, pf_dp_run *runs, int max) {
  /* the writer's exact key: inside a JSON string a quote is escaped, so this cannot match a string's text */
  const char *p = meta ? strstr(meta, "\"dp\":{\"runs\":[") : NULL;
  if (!p) return -1;
  p += strlen("\"dp\":{\"runs\":[");
  int n = 0;
  for (p = skip_ws(p); *p != ']'; p = skip_ws(p)) {
    if (*p != '[') return -1;
    if (n == max) return -2;
    double v[3];
    p++;
    for (int i = 0; i < 3; i++) {
      char *end;
      v[i] = strtod(skip_ws(p), &end);
      if (end == skip_ws(p)) return -1;
      p = skip_ws(end);
      if (*p != (i < 2 ? ',' : ']')) return -1;
      p++;
    }
    if (!(v[0] >= 0 && v[0] <= 1 && v[1] >= 0 && v[1] < 1e9 && v[2] >= 0 && v[2] < 1e12)) return -1;
    runs[n++] = (pf_dp_run){v[0], v[1], (long)v[2]};
    p = skip_ws(p);
    if (*p == ',') p++;
  }
  return n;
}

/* ------------------------------------------------------------------ ChaCha20 */

#define ROTL(x, n) ((x) << (n) | (x) >> (32 - (n)))
#define QR(a, b, c, d) \
  (a += b, d ^= a, d = ROTL(d, 16), c += d, b ^= c, b = ROTL(b, 12), a += b, d ^= a, d = ROTL(d, 8), c += d, b ^= c, b = ROTL(b, 7))

void pf_chacha20_block(const uint32_t key[8], uint32_t counter, const uint32_t nonce[3], uint32_t out[16]) {
  uint32_t s[16] = {0x61707865, 0x3320646e, 0x79622d32, 0x6b206574, key[0], key[1], key[2], key[3],
                    key[4], key[5], key[6], key[7], counter, nonce[0], nonce[1], nonce[2]};
  uint32_t x[16];
  memcpy(x, s, sizeof x);
  for (int r = 0; r < 10; r++) {   /* 20 rounds: a column round and a diagonal round each time */
    QR(x[0], x[4], x[8], x[12]); QR(x[1], x[5], x[9], x[13]); QR(x[2], x[6], x[10], x[14]); QR(x[3], x[7], x[11], x[15]);
    QR(x[0], x[5], x[10], x[15]); QR(x[1], x[6], x[11], x[12]); QR(x[2], x[7], x[8], x[13]); QR(x[3], x[4], x[9], x[14]);
  }
  for (int i = 0; i < 16; i++) out[i] = x[i] + s[i];
}

static void csprng_key(pf_csprng *r, const uint8_t key[32]) {
  memset(r, 0, sizeof *r);
  for (int i = 0; i < 8; i++)
    r->key[i] = (uint32_t)key[4 * i] | (uint32_t)key[4 * i + 1] << 8 | (uint32_t)key[4 * i + 2] << 16 | (uint32_t)key[4 * i + 3] << 24;
  r->used = 16;
}

void pf_csprng_seed_u64(pf_csprng *r, uint64_t seed) {
  uint8_t k[32] = "sqlite-prefix dp noise seed....";   /* 24 constant bytes, then the seed */
  for (int i = 0; i < 8; i++) k[24 + i] = (uint8_t)(seed >> (8 * i));
  csprng_key(r, k);
}

int pf_csprng_seed_os(pf_csprng *r, pf_err *err) {
  uint8_t k[32];
  if (getentropy(k, sizeof k) != 0) return pf_seterr(err, PF_ERR, "dp: the system gave no random bytes for the noise (getentropy failed)");
  csprng_key(r, k);
  memset(k, 0, sizeof k);
  return PF_OK;
}

uint32_t pf_csprng_u32(pf_csprng *r) {
  if (r->used == 16) {
    uint32_t nonce[3] = {(uint32_t)(r->block >> 32), 0, 0};   /* 2^64 blocks: the high half of the counter */
    pf_chacha20_block(r->key, (uint32_t)r->block, nonce, r->out);
    r->block++;
    r->used = 0;
  }
  return r->out[r->used++];
}

double pf_csprng_uniform(pf_csprng *r) {
  uint64_t x = (uint64_t)pf_csprng_u32(r) << 32 | pf_csprng_u32(r);
  return ((double)(x >> 11) + 0.5) * 0x1p-53;
}

/* 8 normal values from one block: 4 Box-Muller pairs of 53-bit uniforms */
static void block_normals(const uint32_t w[16], double out[8]) {
  for (int i = 0; i < 4; i++) {
    const uint32_t *x = w + 4 * i;
    double u = ((double)(((uint64_t)x[0] << 32 | x[1]) >> 11) + 0.5) * 0x1p-53;
    double v = ((double)(((uint64_t)x[2] << 32 | x[3]) >> 11) + 0.5) * 0x1p-53;
    double m = sqrt(-2 * log(u));
    out[2 * i] = m * cos(2 * M_PI * v);
    out[2 * i + 1] = m * sin(2 * M_PI * v);
  }
}

typedef struct noise_job { const uint32_t *key; uint32_t nonce[3]; float *g; size_t n; double sd; } noise_job;

static void noise_range(void *arg, size_t i0, size_t i1) {   /* i: blocks of 8 values */
  const noise_job *j = arg;
  uint32_t w[16];
  double z[8];
  for (size_t b = i0; b < i1; b++) {
    pf_chacha20_block(j->key, (uint32_t)b, j->nonce, w);
    block_normals(w, z);
    for (size_t k = 0; k < 8 && 8 * b + k < j->n; k++) j->g[8 * b + k] += (float)(j->sd * z[k]);
  }
}

void pf_csprng_noise(const pf_csprng *r, uint64_t draw, float *g, size_t n, double stddev) {
  /* nonce word 2 = 1: apart from the sequential generator's blocks (word 2 = 0) */
  noise_job j = {r->key, {(uint32_t)draw, (uint32_t)(draw >> 32), 1}, g, n, stddev};
  pf_parallel_range((n + 7) / 8, noise_range, &j);
}
