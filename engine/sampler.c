/*
** sampler.c — choosing the next token.
**
** Order: repeat penalty (over the last repeat_last_n tokens, prompt included;
** positive logits are divided by the penalty, negative ones multiplied, as
** llama.cpp does), then greedy argmax when temperature is 0; otherwise
** logits / temperature, top_k, softmax, top_p (smallest set whose mass reaches
** top_p), min_p (drop tokens below min_p × the top probability), and a draw
** from a seeded xoshiro256** generator: the same seed gives the same text.
*/
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void pf_sample_params_default(pf_sample_params *p) {
  memset(p, 0, sizeof *p);
  p->max_tokens = 128;
  p->temperature = 0.0f;
  p->top_k = 0;
  p->top_p = 1.0f;
  p->min_p = 0.0f;
  p->repeat_penalty = 1.0f;
  p->repeat_last_n = 64;
  p->seed = 0;
  p->beam_size = 1;
  p->length_penalty = 1.0f;
}

typedef struct cand { float logit; int id; } cand;

struct pf_sampler {
  pf_sample_params p;
  int n_vocab;
  cand *c;
  uint8_t *seen;
  double *pr;      /* probabilities of the candidates */
  uint64_t s[4];
};

static uint64_t splitmix(uint64_t *x) {
  uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
static uint64_t next_u64(uint64_t *s) {
  uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
  s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3]; s[2] ^= t; s[3] = rotl(s[3], 45);
  return r;
}

pf_sampler *pf_sampler_new(const pf_sample_params *p, int n_vocab) {
  pf_sampler *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->p = *p;
  s->n_vocab = n_vocab;
  s->c = malloc(sizeof *s->c * (size_t)n_vocab);
  s->seen = calloc((size_t)n_vocab, 1);
  s->pr = malloc(sizeof *s->pr * (size_t)n_vocab);   /* here, not per token: sampling never allocates */
  if (!s->c || !s->seen || !s->pr) { pf_sampler_free(s); return NULL; }
  uint64_t x = p->seed;
  for (int i = 0; i < 4; i++) s->s[i] = splitmix(&x);
  return s;
}

void pf_sampler_free(pf_sampler *s) {
  if (!s) return;
  free(s->c);
  free(s->seen);
  free(s->pr);
  free(s);
}

static int cand_desc(const void *a, const void *b) {
  const cand *x = a, *y = b;
  if (x->logit != y->logit) return x->logit < y->logit ? 1 : -1;
  return x->id - y->id;
}

int pf_sampler_sample(pf_sampler *s, float *logits, const int *history, int n_history) {
  const pf_sample_params *p = &s->p;
  int V = s->n_vocab;
  if (p->repeat_penalty != 1.0f && n_history > 0) {
    int from = p->repeat_last_n < 0 ? 0 : n_history - p->repeat_last_n;
    if (from < 0) from = 0;
    for (int i = from; i < n_history; i++) {
      int id = history[i];
      if (id < 0 || id >= V || s->seen[id]) continue;
      s->seen[id] = 1;
      logits[id] = logits[id] > 0 ? logits[id] / p->repeat_penalty : logits[id] * p->repeat_penalty;
    }
    for (int i = from; i < n_history; i++) if (history[i] >= 0 && history[i] < V) s->seen[history[i]] = 0;
  }
  if (p->temperature <= 0.0f) {
    int best = 0;
    for (int i = 1; i < V; i++) if (logits[i] > logits[best]) best = i;
    return best;
  }
  int n = V;
  for (int i = 0; i < V; i++) { s->c[i].logit = logits[i]; s->c[i].id = i; }
  qsort(s->c, (size_t)n, sizeof *s->c, cand_desc);   /* a positive temperature keeps the order */
  if (p->top_k > 0 && p->top_k < n) n = p->top_k;
  /* softmax of logit / temperature over the n candidates, in double and relative to the largest, so no
  ** temperature overflows: the distances to the top divided by a tiny temperature go to -inf and their
  ** probabilities to 0, leaving the top (and its ties) — the limit of the distribution, not a wrong one */
  double mx = s->c[0].logit, t = p->temperature, sum = 0;
  double *pr = s->pr;
  for (int i = 0; i < n; i++) { pr[i] = exp(((double)s->c[i].logit - mx) / t); sum += pr[i]; }
  for (int i = 0; i < n; i++) pr[i] /= sum;
  if (p->top_p < 1.0f) {
    double cum = 0;
    for (int i = 0; i < n; i++) {
      cum += pr[i];
      if (cum >= p->top_p) { n = i + 1; break; }
    }
  }
  if (p->min_p > 0.0f) {
    double lim = p->min_p * pr[0];
    int k = 1;
    while (k < n && pr[k] >= lim) k++;
    n = k;
  }
  double tot = 0;
  for (int i = 0; i < n; i++) tot += pr[i];
  double u = (double)(next_u64(s->s) >> 11) * (1.0 / 9007199254740992.0) * tot, acc = 0;
  int pick = s->c[n - 1].id;
  for (int i = 0; i < n; i++) {
    acc += pr[i];
    if (u < acc) { pick = s->c[i].id; break; }
  }
  return pick;
}
