/*
** quant.c — the GGUF weight types: their names and block sizes, exact
** dequantization, load-time checks of block scales, and the project's own
** quantizers (prefix-mkmodel --type, tests).
**
** A block type stores a row as blocks of QK elements (32, or 256 for the
** K-quants and IQ4_XS). Every format here can be decoded 32 elements at a
** time (a "chunk": a whole block of the 32-element types, one sub-block of
** the 256-element ones), so kernels can unpack any 32-aligned range of a
** row. The element layouts follow llama.cpp's format definitions
** (ggml-common.h, ggml-quants.c); the arithmetic of each decode step is the
** reference's, in the same order, so results are bit-exact (tested against
** values llama.cpp's reference dequantizer produced).
*/
#include "internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --------------------------------------------------------- f16 and bf16 */

float pf_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
  if (exp == 0) {
    if (man == 0) bits = sign;
    else { /* subnormal: normalise */
      int e = -1;
      do { e++; man <<= 1; } while (!(man & 0x400));
      man &= 0x3ff;
      bits = sign | ((uint32_t)(127 - 15 - e) << 23) | (man << 13);
    }
  } else if (exp == 31) bits = sign | 0x7f800000u | (man << 13);
  else bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

uint16_t pf_f32_to_f16(float f) {
  uint32_t x;
  memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000, e = (x >> 23) & 0xff, m = x & 0x7fffff;
  if (e == 0xff) return (uint16_t)(sign | 0x7c00 | (m ? 0x200 : 0));
  int exp = (int)e - 127 + 15;
  if (exp >= 31) return (uint16_t)(sign | 0x7c00);
  if (exp <= 0) {
    if (exp < -10) return (uint16_t)sign;
    m |= 0x800000;
    int shift = 14 - exp;
    uint32_t half = m >> shift, rem = m & ((1u << shift) - 1), mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half & 1))) half++;
    return (uint16_t)(sign | half);
  }
  uint32_t half = sign | ((uint32_t)exp << 10) | (m >> 13), rem = m & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (half & 1))) half++;  /* may carry into exp: fine */
  return (uint16_t)half;
}

static inline float bf16_to_f32(uint16_t h) {
  uint32_t b = (uint32_t)h << 16;
  float f;
  memcpy(&f, &b, 4);
  return f;
}

static uint16_t f32_to_bf16(float f) {   /* round to nearest even; NaN stays NaN */
  uint32_t b;
  memcpy(&b, &f, 4);
  if ((b & 0x7fffffff) > 0x7f800000) return (uint16_t)((b >> 16) | 0x40);
  return (uint16_t)((b + 0x7fff + ((b >> 16) & 1)) >> 16);
}

static inline float rd_f16(const uint8_t *p) {
  uint16_t h;
  memcpy(&h, p, 2);
  return pf_f16_to_f32(h);
}
static inline int f16_finite(const uint8_t *p) {
  uint16_t h;
  memcpy(&h, p, 2);
  return ((h >> 10) & 0x1f) != 0x1f;
}
static inline void wr_f16(uint8_t *p, float f) {
  uint16_t h = pf_f32_to_f16(f);
  memcpy(p, &h, 2);
}

/* the 16 values of IQ4_NL and IQ4_XS (llama.cpp's kvalues_iq4nl) */
const int8_t pf_iq4nl_values[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

/* ------------------------------------------------- chunk decoders (exact)
** deq_<type>(blk, c, y): y[0..32) = elements 32c .. 32c+31 of the block. */

static void deq_q4_0(const uint8_t *b, int c, float *y) {
  (void)c;
  float d = rd_f16(b);
  const uint8_t *qs = b + 2;
  for (int j = 0; j < 16; j++) {
    y[j] = (float)((qs[j] & 0x0F) - 8) * d;
    y[j + 16] = (float)((qs[j] >> 4) - 8) * d;
  }
}

static void deq_q4_1(const uint8_t *b, int c, float *y) {
  (void)c;
  float d = rd_f16(b), m = rd_f16(b + 2);
  const uint8_t *qs = b + 4;
  for (int j = 0; j < 16; j++) {
    y[j] = (float)(qs[j] & 0x0F) * d + m;
    y[j + 16] = (float)(qs[j] >> 4) * d + m;
  }
}

static void deq_q5_0(const uint8_t *b, int c, float *y) {
  (void)c;
  float d = rd_f16(b);
  uint32_t qh;
  memcpy(&qh, b + 2, 4);
  const uint8_t *qs = b + 6;
  for (int j = 0; j < 16; j++) {
    int x0 = ((qs[j] & 0x0F) | (((qh >> j) & 1) << 4)) - 16;
    int x1 = ((qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4)) - 16;
    y[j] = (float)x0 * d;
    y[j + 16] = (float)x1 * d;
  }
}

static void deq_q5_1(const uint8_t *b, int c, float *y) {
  (void)c;
  float d = rd_f16(b), m = rd_f16(b + 2);
  uint32_t qh;
  memcpy(&qh, b + 4, 4);
  const uint8_t *qs = b + 8;
  for (int j = 0; j < 16; j++) {
    int x0 = (qs[j] & 0x0F) | (((qh >> j) & 1) << 4);
    int x1 = (qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
    y[j] = (float)x0 * d + m;
    y[j + 16] = (float)x1 * d + m;
  }
}

static void deq_q8_0(const uint8_t *b, int c, float *y) {
  (void)c;
  float d = rd_f16(b);
  for (int j = 0; j < 32; j++) y[j] = (float)(int8_t)b[2 + j] * d;
}

/* Q2_K, 84 bytes: scales[16] (4-bit scale, 4-bit min), qs[64], d, dmin. Element e = 128h + 32j + l sits in
** qs[32h + l] at bits 2j; its sub-block of 16 is e / 16. */
static void deq_q2_k(const uint8_t *b, int c, float *y) {
  const uint8_t *sc = b, *qs = b + 16 + 32 * (c / 4);
  float d = rd_f16(b + 80), dmin = rd_f16(b + 82);
  int j = c % 4, shift = 2 * j;
  for (int half = 0; half < 2; half++) {
    uint8_t s = sc[8 * (c / 4) + 2 * j + half];
    float dl = d * (float)(s & 0xF), ml = dmin * (float)(s >> 4);
    for (int l = 16 * half; l < 16 * half + 16; l++) y[l] = dl * (float)((qs[l] >> shift) & 3) - ml;
  }
}

/* Q3_K, 110 bytes: hmask[32], qs[64], scales[12], d. Element e = 128h + 32j + l: low 2 bits in qs[32h + l] at
** bits 2j, high bit in hmask[l] bit 4h + j (set: +0, clear: -4). */
static void deq_q3_k(const uint8_t *b, int c, float *y) {
  const uint8_t *hm = b, *qs = b + 32 + 32 * (c / 4), *sc = b + 96;
  float d = rd_f16(b + 108);
  int j = c % 4, shift = 2 * j, m = 1 << c;
  for (int half = 0; half < 2; half++) {
    float dl = d * (float)pf_q3k_scale(sc, 8 * (c / 4) + 2 * j + half);
    for (int l = 16 * half; l < 16 * half + 16; l++)
      y[l] = dl * (float)(((qs[l] >> shift) & 3) - ((hm[l] & m) ? 0 : 4));
  }
}

/* Q4_K, 144 bytes: d, dmin, scales[12], qs[128]. Sub-block c: qs[32 (c/2) + l], low nibble for even c. */
static void deq_q4_k(const uint8_t *b, int c, float *y) {
  int sc, mn;
  pf_k4_scale_min(b + 4, c, &sc, &mn);
  float d = rd_f16(b) * (float)sc, m = rd_f16(b + 2) * (float)mn;
  const uint8_t *qs = b + 16 + 32 * (c / 2);
  int shift = 4 * (c % 2);
  for (int l = 0; l < 32; l++) y[l] = d * (float)((qs[l] >> shift) & 0xF) - m;
}

/* Q5_K, 176 bytes: d, dmin, scales[12], qh[32], qs[128]; the fifth bit of sub-block c is bit c of qh[l]. */
static void deq_q5_k(const uint8_t *b, int c, float *y) {
  int sc, mn;
  pf_k4_scale_min(b + 4, c, &sc, &mn);
  float d = rd_f16(b) * (float)sc, m = rd_f16(b + 2) * (float)mn;
  const uint8_t *qh = b + 16, *qs = b + 48 + 32 * (c / 2);
  int shift = 4 * (c % 2);
  for (int l = 0; l < 32; l++) y[l] = d * (float)(((qs[l] >> shift) & 0xF) | (((qh[l] >> c) & 1) << 4)) - m;
}

/* Q6_K, 210 bytes: ql[128], qh[64], scales[16] (int8), d. Element e = 128h + 32p + l: low 4 bits in
** ql[64h + 32(p%2) + l] (high nibble for p >= 2), high 2 bits in qh[32h + l] at bits 2p. */
static void deq_q6_k(const uint8_t *b, int c, float *y) {
  int h = c / 4, p = c % 4;
  const uint8_t *ql = b + 64 * h + 32 * (p % 2), *qh = b + 128 + 32 * h;
  const int8_t *sc = (const int8_t *)(b + 192);
  float d = rd_f16(b + 208);
  int lshift = 4 * (p / 2), hshift = 2 * p;
  for (int half = 0; half < 2; half++) {
    float dl = d * (float)sc[8 * h + 2 * p + half];
    for (int l = 16 * half; l < 16 * half + 16; l++)
      y[l] = dl * (float)((((ql[l] >> lshift) & 0xF) | (((qh[l] >> hshift) & 3) << 4)) - 32);
  }
}

static void deq_iq4_nl(const uint8_t *b, int c, float *y) {
  (void)c;
  float d = rd_f16(b);
  const uint8_t *qs = b + 2;
  for (int j = 0; j < 16; j++) {
    y[j] = d * (float)pf_iq4nl_values[qs[j] & 0xF];
    y[j + 16] = d * (float)pf_iq4nl_values[qs[j] >> 4];
  }
}

/* IQ4_XS, 136 bytes: d, scales_h (u16), scales_l[4], qs[128]; sub-block c has a 6-bit scale minus 32. */
static void deq_iq4_xs(const uint8_t *b, int c, float *y) {
  uint16_t sh;
  memcpy(&sh, b + 2, 2);
  int ls = ((b[4 + c / 2] >> (4 * (c % 2))) & 0xF) | (((sh >> (2 * c)) & 3) << 4);
  float dl = rd_f16(b) * (float)(ls - 32);
  const uint8_t *qs = b + 8 + 16 * c;
  for (int j = 0; j < 16; j++) {
    y[j] = dl * (float)pf_iq4nl_values[qs[j] & 0xF];
    y[j + 16] = dl * (float)pf_iq4nl_values[qs[j] >> 4];
  }
}

/* ------------------------------------------------------ scale checks
** A block whose scale is NaN or infinite would poison every product it
** enters; such a tensor is refused at load. Offsets of each block's f16
** scales: */
static int scales_ok(const uint8_t *b, int o1, int o2) {
  return f16_finite(b + o1) && (o2 < 0 || f16_finite(b + o2));
}

/* ------------------------------------------------------------ quantizers
** Straightforward quantizers written from the format definitions (not
** llama.cpp's error-minimising searches): enough for tests and benchmarks
** to make any model in any type. */

static int nearest(float x) { return (int)lrintf(x); }
static int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* the value of largest magnitude, with its sign */
static float signed_amax(const float *x, int n) {
  float m = 0;
  for (int i = 0; i < n; i++) if (fabsf(x[i]) > fabsf(m)) m = x[i];
  return m;
}

static void q_q4_0(const float *x, uint8_t *b) {
  float d = signed_amax(x, 32) / -8, id = d ? 1.0f / d : 0;
  wr_f16(b, d);
  for (int j = 0; j < 16; j++) {
    int a = clampi(nearest(x[j] * id) + 8, 0, 15), c = clampi(nearest(x[j + 16] * id) + 8, 0, 15);
    b[2 + j] = (uint8_t)(a | (c << 4));
  }
}

static void minmax(const float *x, int n, float *mn, float *mx) {
  *mn = *mx = x[0];
  for (int i = 1; i < n; i++) { if (x[i] < *mn) *mn = x[i]; if (x[i] > *mx) *mx = x[i]; }
}

static void q_q4_1(const float *x, uint8_t *b) {
  float mn, mx;
  minmax(x, 32, &mn, &mx);
  float d = (mx - mn) / 15, id = d ? 1.0f / d : 0;
  wr_f16(b, d);
  wr_f16(b + 2, mn);
  for (int j = 0; j < 16; j++) {
    int a = clampi(nearest((x[j] - mn) * id), 0, 15), c = clampi(nearest((x[j + 16] - mn) * id), 0, 15);
    b[4 + j] = (uint8_t)(a | (c << 4));
  }
}

static void q_q5(const float *x, uint8_t *b, int with_min) {
  float d, mn = 0, id;
  if (with_min) {
    float mx;
    minmax(x, 32, &mn, &mx);
    d = (mx - mn) / 31;
  } else d = signed_amax(x, 32) / -16;
  id = d ? 1.0f / d : 0;
  uint8_t *qs = b + (with_min ? 8 : 6);
  uint32_t qh = 0;
  wr_f16(b, d);
  if (with_min) wr_f16(b + 2, mn);
  for (int j = 0; j < 32; j++) {
    int q = with_min ? clampi(nearest((x[j] - mn) * id), 0, 31) : clampi(nearest(x[j] * id) + 16, 0, 31);
    if (j < 16) qs[j] = (uint8_t)(q & 0xF);
    else qs[j - 16] |= (uint8_t)((q & 0xF) << 4);
    qh |= (uint32_t)(q >> 4) << j;
  }
  memcpy(b + (with_min ? 4 : 2), &qh, 4);
}
static void q_q5_0(const float *x, uint8_t *b) { q_q5(x, b, 0); }
static void q_q5_1(const float *x, uint8_t *b) { q_q5(x, b, 1); }

static void q_q8_0(const float *x, uint8_t *b) {
  float amax = 0;
  for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
  float d = amax / 127.0f, id = d ? 1.0f / d : 0;
  wr_f16(b, d);
  for (int j = 0; j < 32; j++) b[2 + j] = (uint8_t)(int8_t)clampi(nearest(x[j] * id), -127, 127);
}

/* Q2_K: per 16 elements x ≈ dl·q − ml, q in 0..3; dl, ml as 4-bit multiples of d, dmin */
static void q_q2_k(const float *x, uint8_t *b) {
  float scale[16], minv[16], maxs = 0, maxm = 0;
  for (int s = 0; s < 16; s++) {
    float mn, mx;
    minmax(x + 16 * s, 16, &mn, &mx);
    if (mn > 0) mn = 0;
    scale[s] = (mx - mn) / 3;
    minv[s] = -mn;
    maxs = fmaxf(maxs, scale[s]);
    maxm = fmaxf(maxm, minv[s]);
  }
  float d = maxs / 15, dmin = maxm / 15;
  wr_f16(b + 80, d);
  wr_f16(b + 82, dmin);
  d = rd_f16(b + 80), dmin = rd_f16(b + 82);
  memset(b + 16, 0, 64);
  for (int s = 0; s < 16; s++) {
    int ls = d ? clampi(nearest(scale[s] / d), 0, 15) : 0, lm = dmin ? clampi(nearest(minv[s] / dmin), 0, 15) : 0;
    b[s] = (uint8_t)(ls | (lm << 4));
    float dl = d * (float)ls, ml = dmin * (float)lm;
    for (int i = 0; i < 16; i++) {
      int e = 16 * s + i, q = dl ? clampi(nearest((x[e] + ml) / dl), 0, 3) : 0;
      int h = e / 128, j = (e % 128) / 32, l = e % 32;
      b[16 + 32 * h + l] |= (uint8_t)(q << (2 * j));
    }
  }
}

/* Q3_K: per 16 elements x ≈ dl·q, q in -4..3, dl = d·(scale − 32) with a 6-bit scale */
static void q_q3_k(const float *x, uint8_t *b) {
  float sc[16], maxs = 0;
  for (int s = 0; s < 16; s++) {
    sc[s] = signed_amax(x + 16 * s, 16) / -4;
    maxs = fmaxf(maxs, fabsf(sc[s]));
  }
  float d = maxs / 31;
  wr_f16(b + 108, d);
  d = rd_f16(b + 108);
  memset(b, 0, 108);
  for (int s = 0; s < 16; s++) {
    int ls = d ? clampi(nearest(sc[s] / d), -32, 31) : 0, v = ls + 32;
    if (s < 8) b[96 + s] |= (uint8_t)(v & 0xF);
    else b[96 + s - 8] |= (uint8_t)((v & 0xF) << 4);
    b[96 + 8 + s % 4] |= (uint8_t)(((v >> 4) & 3) << (2 * (s / 4)));
    float dl = d * (float)ls;
    for (int i = 0; i < 16; i++) {
      int e = 16 * s + i, q = dl ? clampi(nearest(x[e] / dl), -4, 3) : 0, u = q + 4;
      int h = e / 128, j = (e % 128) / 32, l = e % 32;
      b[32 + 32 * h + l] |= (uint8_t)((u & 3) << (2 * j));
      if (u & 4) b[l] |= (uint8_t)(1 << (4 * h + j));
    }
  }
}

/* Q4_K and Q5_K: per 32 elements x ≈ ds·q − dm, ds and dm 6-bit multiples of d and dmin */
static void q_k45(const float *x, uint8_t *b, int bits) {
  int qmax = (1 << bits) - 1;
  float scale[8], minv[8], maxs = 0, maxm = 0;
  for (int s = 0; s < 8; s++) {
    float mn, mx;
    minmax(x + 32 * s, 32, &mn, &mx);
    if (mn > 0) mn = 0;
    scale[s] = (mx - mn) / (float)qmax;
    minv[s] = -mn;
    maxs = fmaxf(maxs, scale[s]);
    maxm = fmaxf(maxm, minv[s]);
  }
  float d = maxs / 63, dmin = maxm / 63;
  wr_f16(b, d);
  wr_f16(b + 2, dmin);
  d = rd_f16(b), dmin = rd_f16(b + 2);
  uint8_t *sc = b + 4, *qh = b + 16, *qs = b + (bits == 5 ? 48 : 16);
  memset(sc, 0, 12);
  if (bits == 5) memset(qh, 0, 32);
  memset(qs, 0, 128);
  for (int s = 0; s < 8; s++) {
    int ls = d ? clampi(nearest(scale[s] / d), 0, 63) : 0, lm = dmin ? clampi(nearest(minv[s] / dmin), 0, 63) : 0;
    if (s < 4) {
      sc[s] = (uint8_t)ls;
      sc[s + 4] = (uint8_t)lm;
    } else {
      sc[s + 4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
      sc[s - 4] |= (uint8_t)((ls >> 4) << 6);
      sc[s] |= (uint8_t)((lm >> 4) << 6);
    }
    float ds = d * (float)ls, dm = dmin * (float)lm;
    for (int l = 0; l < 32; l++) {
      int q = ds ? clampi(nearest((x[32 * s + l] + dm) / ds), 0, qmax) : 0;
      qs[32 * (s / 2) + l] |= (uint8_t)((q & 0xF) << (4 * (s % 2)));
      if (bits == 5) qh[l] |= (uint8_t)((q >> 4) << s);
    }
  }
}
static void q_q4_k(const float *x, uint8_t *b) { q_k45(x, b, 4); }
static void q_q5_k(const float *x, uint8_t *b) { q_k45(x, b, 5); }

/* Q6_K: per 16 elements x ≈ d·scale·q, q in -32..31, an int8 scale */
static void q_q6_k(const float *x, uint8_t *b) {
  float sc[16], maxs = 0;
  for (int s = 0; s < 16; s++) {
    sc[s] = signed_amax(x + 16 * s, 16) / -32;
    maxs = fmaxf(maxs, fabsf(sc[s]));
  }
  float d = maxs / 127;
  wr_f16(b + 208, d);
  d = rd_f16(b + 208);
  memset(b, 0, 192);
  for (int s = 0; s < 16; s++) {
    int ls = d ? clampi(nearest(sc[s] / d), -127, 127) : 0;
    b[192 + s] = (uint8_t)(int8_t)ls;
    float dl = d * (float)ls;
    for (int i = 0; i < 16; i++) {
      int e = 16 * s + i, q = dl ? clampi(nearest(x[e] / dl), -32, 31) : 0, u = q + 32;
      int h = e / 128, p = (e % 128) / 32, l = e % 32;
      b[64 * h + 32 * (p % 2) + l] |= (uint8_t)((u & 0xF) << (4 * (p / 2)));
      b[128 + 32 * h + l] |= (uint8_t)((u >> 4) << (2 * p));
    }
  }
}

static int iq4_nearest(float v) {
  int best = 0;
  for (int k = 1; k < 16; k++)
    if (fabsf(v - (float)pf_iq4nl_values[k]) < fabsf(v - (float)pf_iq4nl_values[best])) best = k;
  return best;
}

static void q_iq4_nl(const float *x, uint8_t *b) {
  float d = signed_amax(x, 32) / -127, id = d ? 1.0f / d : 0;
  wr_f16(b, d);
  for (int j = 0; j < 16; j++) b[2 + j] = (uint8_t)(iq4_nearest(x[j] * id) | (iq4_nearest(x[j + 16] * id) << 4));
}

static void q_iq4_xs(const float *x, uint8_t *b) {
  float sub[8], maxs = 0;
  for (int s = 0; s < 8; s++) {
    sub[s] = signed_amax(x + 32 * s, 32) / -127;
    maxs = fmaxf(maxs, fabsf(sub[s]));
  }
  float d = maxs / 31;
  wr_f16(b, d);
  d = rd_f16(b);
  uint16_t sh = 0;
  memset(b + 4, 0, 4);
  for (int s = 0; s < 8; s++) {
    int ls = d ? clampi(nearest(sub[s] / d), -32, 31) : 0, v = ls + 32;
    b[4 + s / 2] |= (uint8_t)((v & 0xF) << (4 * (s % 2)));
    sh |= (uint16_t)(((v >> 4) & 3) << (2 * s));
    float dl = d * (float)ls, id = dl ? 1.0f / dl : 0;
    for (int j = 0; j < 16; j++)
      b[8 + 16 * s + j] = (uint8_t)(iq4_nearest(x[32 * s + j] * id) | (iq4_nearest(x[32 * s + j + 16] * id) << 4));
  }
  memcpy(b + 2, &sh, 2);
}

/* ---------------------------------------------------------- type table */

typedef struct qtype {
  const char *name;
  int blck, bytes;                                   /* elements and bytes per block; 0: not loadable */
  void (*deq)(const uint8_t *blk, int c, float *y);  /* chunk c of a block */
  int s1, s2;                                        /* byte offsets of the block's f16 scales (-1: none) */
  void (*quant)(const float *x, uint8_t *blk);       /* one block */
} qtype;

static const qtype g_types[GGML_TYPE_COUNT] = {
  [GGML_F32] = {"F32", 1, 4, NULL, -1, -1, NULL},
  [GGML_F16] = {"F16", 1, 2, NULL, -1, -1, NULL},
  [GGML_BF16] = {"BF16", 1, 2, NULL, -1, -1, NULL},
  [GGML_Q4_0] = {"Q4_0", 32, 18, deq_q4_0, 0, -1, q_q4_0},
  [GGML_Q4_1] = {"Q4_1", 32, 20, deq_q4_1, 0, 2, q_q4_1},
  [GGML_Q5_0] = {"Q5_0", 32, 22, deq_q5_0, 0, -1, q_q5_0},
  [GGML_Q5_1] = {"Q5_1", 32, 24, deq_q5_1, 0, 2, q_q5_1},
  [GGML_Q8_0] = {"Q8_0", 32, 34, deq_q8_0, 0, -1, q_q8_0},
  [GGML_Q2_K] = {"Q2_K", 256, 84, deq_q2_k, 80, 82, q_q2_k},
  [GGML_Q3_K] = {"Q3_K", 256, 110, deq_q3_k, 108, -1, q_q3_k},
  [GGML_Q4_K] = {"Q4_K", 256, 144, deq_q4_k, 0, 2, q_q4_k},
  [GGML_Q5_K] = {"Q5_K", 256, 176, deq_q5_k, 0, 2, q_q5_k},
  [GGML_Q6_K] = {"Q6_K", 256, 210, deq_q6_k, 208, -1, q_q6_k},
  [GGML_IQ4_NL] = {"IQ4_NL", 32, 18, deq_iq4_nl, 0, -1, q_iq4_nl},
  [GGML_IQ4_XS] = {"IQ4_XS", 256, 136, deq_iq4_xs, 0, -1, q_iq4_xs},
  /* known by name, refused */
  [GGML_Q8_1] = {"Q8_1", 0, 0, NULL, -1, -1, NULL},
  [GGML_Q8_K] = {"Q8_K", 0, 0, NULL, -1, -1, NULL},
  [GGML_IQ2_XXS] = {"IQ2_XXS", 0, 0, NULL, -1, -1, NULL},
  [GGML_IQ2_XS] = {"IQ2_XS", 0, 0, NULL, -1, -1, NULL},
  [GGML_IQ3_XXS] = {"IQ3_XXS", 0, 0, NULL, -1, -1, NULL},
  [GGML_IQ1_S] = {"IQ1_S", 0, 0, NULL, -1, -1, NULL},
  [GGML_IQ3_S] = {"IQ3_S", 0, 0, NULL, -1, -1, NULL},
  [GGML_IQ2_S] = {"IQ2_S", 0, 0, NULL, -1, -1, NULL},
  [GGML_I8] = {"I8", 0, 0, NULL, -1, -1, NULL},
  [GGML_I16] = {"I16", 0, 0, NULL, -1, -1, NULL},
  [GGML_I32] = {"I32", 0, 0, NULL, -1, -1, NULL},
  [GGML_I64] = {"I64", 0, 0, NULL, -1, -1, NULL},
  [GGML_F64] = {"F64", 0, 0, NULL, -1, -1, NULL},
  [GGML_IQ1_M] = {"IQ1_M", 0, 0, NULL, -1, -1, NULL},
  [GGML_TQ1_0] = {"TQ1_0", 0, 0, NULL, -1, -1, NULL},
  [GGML_TQ2_0] = {"TQ2_0", 0, 0, NULL, -1, -1, NULL},
  [GGML_MXFP4] = {"MXFP4", 0, 0, NULL, -1, -1, NULL},
};

const char *pf_type_name(uint32_t t) { return t < GGML_TYPE_COUNT ? g_types[t].name : NULL; }

int pf_type_loadable(uint32_t t) { return t < GGML_TYPE_COUNT && g_types[t].blck > 0; }

int pf_type_blck(uint32_t t) { return t < GGML_TYPE_COUNT ? g_types[t].blck : 0; }

const char *pf_type_list(void) {
  return "F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS";
}

int pf_type_nbytes(uint32_t t, uint64_t n, uint64_t *nbytes) {
  if (!pf_type_loadable(t)) return 0;
  const qtype *q = &g_types[t];
  if (n % (uint64_t)q->blck || n / (uint64_t)q->blck > UINT64_MAX / (uint64_t)q->bytes) return 0;
  *nbytes = n / (uint64_t)q->blck * (uint64_t)q->bytes;
  return 1;
}

size_t pf_type_row_size(uint32_t t, int64_t n) { return (size_t)(n / g_types[t].blck) * (size_t)g_types[t].bytes; }

int pf_type_from_name(const char *s) {
  for (int t = 0; t < GGML_TYPE_COUNT; t++)
    if (g_types[t].name && g_types[t].blck > 0 && !strcasecmp(s, g_types[t].name)) return t;
  return -1;
}

/* Elements [k0, k1) of one row of type t (block types: k0 a multiple of 32, k1 too or the row's end). */
void pf_dequant(uint32_t t, const uint8_t *row, int64_t k0, int64_t k1, float *dst) {
  switch (t) {
    case GGML_F32: memcpy(dst, row + 4 * k0, sizeof(float) * (size_t)(k1 - k0)); return;
    case GGML_F16:
      for (int64_t k = k0; k < k1; k++) dst[k - k0] = rd_f16(row + 2 * k);
      return;
    case GGML_BF16:
      for (int64_t k = k0; k < k1; k++) {
        uint16_t h;
        memcpy(&h, row + 2 * k, 2);
        dst[k - k0] = bf16_to_f32(h);
      }
      return;
    default: break;
  }
  const qtype *q = &g_types[t];
  int per = q->blck / 32;
  for (int64_t c = k0 / 32; c < k1 / 32; c++) q->deq(row + (size_t)(c / per) * q->bytes, (int)(c % per), dst + 32 * c - k0);
}

void pf_dequant_any(uint32_t t, const uint8_t *row, int64_t k0, int64_t k1, float *dst) {
  if (g_types[t].blck == 1) { pf_dequant(t, row, k0, k1, dst); return; }
  float buf[32];
  for (int64_t k = k0; k < k1;) {
    int64_t cs = k / 32 * 32, whole = k1 / 32 * 32;
    if (k == cs && whole > k) {   /* a run of whole chunks */
      pf_dequant(t, row, k, whole, dst + (k - k0));
      k = whole;
      continue;
    }
    int64_t e = cs + 32 < k1 ? cs + 32 : k1;   /* part of one chunk */
    pf_dequant(t, row, cs, cs + 32, buf);
    memcpy(dst + (k - k0), buf + (k - cs), sizeof(float) * (size_t)(e - k));
    k = e;
  }
}

int pf_to_f32(uint32_t type, const uint8_t *src, float *dst, uint64_t n) {
  if (!pf_type_loadable(type) || n % (uint64_t)g_types[type].blck) return 0;
  pf_dequant(type, src, 0, (int64_t)n, dst);
  return 1;
}

int pf_check_blocks(uint32_t t, const uint8_t *data, uint64_t nbytes, uint64_t *bad_block) {
  const qtype *q = &g_types[t];
  if (q->s1 < 0) return 1;
  for (uint64_t i = 0, n = nbytes / (uint64_t)q->bytes; i < n; i++)
    if (!scales_ok(data + i * (uint64_t)q->bytes, q->s1, q->s2)) { *bad_block = i; return 0; }
  return 1;
}

int pf_quantize(uint32_t t, const float *src, uint8_t *dst, int64_t n) {
  if (!pf_type_loadable(t) || n % g_types[t].blck) return 0;
  const qtype *q = &g_types[t];
  switch (t) {
    case GGML_F32: memcpy(dst, src, sizeof(float) * (size_t)n); return 1;
    case GGML_F16:
      for (int64_t i = 0; i < n; i++) wr_f16(dst + 2 * i, src[i]);
      return 1;
    case GGML_BF16:
      for (int64_t i = 0; i < n; i++) {
        uint16_t h = f32_to_bf16(src[i]);
        memcpy(dst + 2 * i, &h, 2);
      }
      return 1;
    default:
      for (int64_t b = 0; b < n / q->blck; b++) q->quant(src + b * q->blck, dst + (size_t)b * q->bytes);
      return 1;
  }
}
