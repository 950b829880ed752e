/*
** dp.h — differential privacy for prefix training (DP-SGD, Abadi et al. 2016): the privacy accountant and
** the noise.
**
** The accountant is Rényi DP for the Poisson-subsampled Gaussian mechanism (Mironov, Talwar & Zhang 2019):
** one step that samples each row with probability q, clips each row's gradient to norm C and adds
** N(0, sigma^2 C^2) to their sum is (alpha, rdp(alpha))-RDP; T steps compose to T rdp(alpha), and
** epsilon(delta) = min over alpha of T rdp(alpha) + log(1/delta) / (alpha - 1), over the orders
** 1.1, 1.2, ..., 10.9 and 12, 13, ..., 63. docs/privacy.md has the formulas.
**
** The noise comes from ChaCha20 (RFC 8439's block function) keyed by 32 bytes: from the OS, or from a seed
** the caller keeps secret (whoever knows it can take the noise back out).
*/
#ifndef PF_DP_H
#define PF_DP_H
#include <stdint.h>
#include "prefix_engine.h"

#define PF_DP_ACCOUNTANT "rdp"   /* what a BLOB's metadata names, with PF_DP_ACCOUNTANT_VERSION */
#define PF_DP_ACCOUNTANT_VERSION 1
#define PF_DP_ORDERS 151          /* 99 fractional orders 1.1..10.9, 52 integer orders 12..63 */

/* The orders the accountant tries, ascending. */
double pf_dp_order(int i);
/* RDP of one step of the subsampled Gaussian mechanism at order alpha > 1 (sampling rate q in [0, 1], noise
** multiplier sigma > 0). +inf when it overflows. */
double pf_dp_rdp(double q, double sigma, double alpha);

/* A history of runs: each n_steps steps at sampling rate q and noise multiplier sigma (RDP adds up). */
typedef struct pf_dp_run { double q, sigma; long steps; } pf_dp_run;
/* epsilon spent by the runs for delta in (0, 1); *order (may be NULL): the order that gave it. */
double pf_dp_epsilon(const pf_dp_run *runs, int n, double delta, double *order);
/* The smallest noise multiplier (to 0.1%) whose epsilon over `steps` more steps at rate q, after the runs
** before (may be 0 of them), is at most `epsilon`. PF_ERR (with a message) when even sigma = 10^4 spends
** more, or the runs before already spent it. */
int pf_dp_sigma(const pf_dp_run *before, int n_before, double q, long steps, double epsilon, double delta,
                double *sigma, pf_err *err);

/* The runs a prefix BLOB's metadata records ("dp":{"runs":[[q, sigma, steps], ...], ...}, as pf_train writes
** it): how many (at most max); -1 when it has none or they are malformed, -2 when there are more than max. */
#define PF_DP_RUNS_MAX 64
int pf_dp_runs_parse(const char *meta, pf_dp_run *runs, int max);

/* ChaCha20 as a random generator. */
typedef struct pf_csprng {
  uint32_t key[8];
  uint64_t block;      /* the next block's counter */
  uint32_t out[16];
  int used;            /* words of out taken */
} pf_csprng;
/* The key from a 64-bit seed (reproducible: the seed must stay secret), or from the OS (PF_ERR if it has none). */
void pf_csprng_seed_u64(pf_csprng *r, uint64_t seed);
int pf_csprng_seed_os(pf_csprng *r, pf_err *err);
uint32_t pf_csprng_u32(pf_csprng *r);
/* Uniform in (0, 1) with 53 random bits. */
double pf_csprng_uniform(pf_csprng *r);
/* Add N(0, stddev^2) to each of g[0..n): draw `draw` of the generator's key (each draw its own stream of
** ChaCha20 blocks, 8 values per block: the same values whatever the thread count). */
void pf_csprng_noise(const pf_csprng *r, uint64_t draw, float *g, size_t n, double stddev);
/* The first 64 bytes of ChaCha20's keystream for key, counter and nonce 0 (the known-answer test). */
void pf_chacha20_block(const uint32_t key[8], uint32_t counter, const uint32_t nonce[3], uint32_t out[16]);

#endif
