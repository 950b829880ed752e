/*
** ops.c — the numeric kernels. Each fast path has a naive reference beside it;
** tests check one against the other.
*/
#include "internal.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int g_naive = 0;
static int g_threads = 0;

void pf_set_naive(int naive) { g_naive = naive; }
int pf_get_naive(void) { return g_naive; }

void pf_set_threads(int n) {
  if (n <= 0) {
    long c = sysconf(_SC_NPROCESSORS_ONLN);
    n = c > 0 ? (int)c : 1;
  }
  g_threads = n;
  openblas_set_num_threads(n);
}
int pf_get_threads(void) {
  if (g_threads <= 0) pf_set_threads(0);
  return g_threads;
}

/* out (T, n_out) = inp (T, n_in) · W^T; W is (n_out, n_in) row-major. */
void pf_matmul_naive(float *out, const float *inp, const float *w, int T, int n_in, int n_out) {
  for (size_t t = 0; t < (size_t)T; t++)
    for (size_t o = 0; o < (size_t)n_out; o++) {
      double acc = 0;
      const float *x = inp + t * n_in, *wr = w + o * n_in;
      for (size_t i = 0; i < (size_t)n_in; i++) acc += (double)x[i] * wr[i];
      out[t * n_out + o] = (float)acc;
    }
}

void pf_matmul(float *out, const float *inp, const float *w, int T, int n_in, int n_out) {
  if (g_naive) { pf_matmul_naive(out, inp, w, T, n_in, n_out); return; }
  if (T == 1)
    cblas_sgemv(CblasRowMajor, CblasNoTrans, n_out, n_in, 1.0f, w, n_in, inp, 1, 0.0f, out, 1);
  else
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, n_out, n_in, 1.0f, inp, n_in, w, n_in, 0.0f, out, n_out);
}

/* out = inp / rms(inp) * weight, per row of C. */
void pf_rmsnorm(float *out, const float *inp, const float *weight, int T, int C, float eps) {
  for (size_t t = 0; t < (size_t)T; t++) {
    const float *x = inp + t * C;
    float ss = 0;
    for (int i = 0; i < C; i++) ss += x[i] * x[i];
    float r = 1.0f / sqrtf(ss / C + eps);
    for (int i = 0; i < C; i++) out[t * C + i] = x[i] * r * weight[i];
  }
}

/* Rotate adjacent pairs (x[2i], x[2i+1]) of each head by pos * base^(-2i/rope_dim). */
void pf_rope(float *x, const int *pos, int T, int n_head, int head_dim, int rope_dim, float base) {
  for (int t = 0; t < T; t++)
    for (int i = 0; i < rope_dim / 2; i++) {
      float theta = (float)pos[t] * powf(base, -2.0f * (float)i / (float)rope_dim);
      float c = cosf(theta), s = sinf(theta);
      for (int h = 0; h < n_head; h++) {
        float *p = x + ((size_t)t * n_head + h) * head_dim + 2 * i;
        float a = p[0], b = p[1];
        p[0] = a * c - b * s;
        p[1] = a * s + b * c;
      }
    }
}

void pf_softmax(float *x, int n) {
  float mx = x[0];
  for (int i = 1; i < n; i++) if (x[i] > mx) mx = x[i];
  float sum = 0;
  for (int i = 0; i < n; i++) { x[i] = expf(x[i] - mx); sum += x[i]; }
  for (int i = 0; i < n; i++) x[i] /= sum;
}
