/*
** prefix.c — the prefix's learnable parameters, the reparameterization MLP,
** AdamW, and the prefix BLOB (docs/prefix-format.md).
**
** Parameters, gradients and AdamW moments live in one flat buffer each, with
** named views into them, so the optimizer is one loop.
**
**   mode prefix, mid_dim > 0:  kv = base + MLP(P'),  P' (P, n_embd),
**       MLP = Linear(n_embd, mid) -> tanh -> Linear(mid, n_layer*2*kv_dim)
**   mode prefix, mid_dim = 0:  kv = the table itself (n_layer, 2, P, kv_dim)
**   mode embedding:            E (P, n_embd) learned input embeddings
** `base` is a constant: the model's own keys/values for init_text (zeros
** otherwise), so the MLP starts near them.
*/
#include "internal.h"
#include "train.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ----------------------------------------------------------- parameters */

typedef struct pf_pparams {
  int mode, P, mid, d, L, kvd;
  size_t out_dim;          /* n_layer * 2 * kv_dim */
  size_t n;                /* learnable floats */
  float *params, *grads, *m1, *m2;
  /* views into params (and the same offsets in grads) */
  size_t o_emb, o_w1, o_b1, o_w2, o_b2, o_kv;
  float *base;             /* (L, 2, P, kvd) constant offset or NULL */
  /* scratch */
  float *h;                /* (P, mid) tanh activations */
  float *out, *dout;       /* (P, out_dim) MLP output and its gradient */
  float *dh;               /* (P, mid) */
  float *kv, *dkv;         /* (L, 2, P, kvd) */
} pf_pparams;

void pf_pparams_free(pf_pparams *pp) {
  if (!pp) return;
  free(pp->params); free(pp->grads); free(pp->m1); free(pp->m2); free(pp->base);
  free(pp->h); free(pp->out); free(pp->dout); free(pp->dh); free(pp->kv); free(pp->dkv);
  free(pp);
}

size_t pf_pparams_count(const pf_pparams *pp) { return pp->n; }
float *pf_pparams_kv(pf_pparams *pp) { return pp->kv; }
float *pf_pparams_dkv(pf_pparams *pp) { return pp->dkv; }
float *pf_pparams_emb(pf_pparams *pp) { return pp->params + pp->o_emb; }
float *pf_pparams_demb(pf_pparams *pp) { return pp->grads + pp->o_emb; }
float *pf_pparams_data(pf_pparams *pp) { return pp->params; }
float *pf_pparams_grad(pf_pparams *pp) { return pp->grads; }

pf_pparams *pf_pparams_new(const pf_model *m, int mode, int P, int mid, pf_err *err) {
  const pf_hparams *hp = &m->hp;
  pf_pparams *pp = calloc(1, sizeof *pp);
  if (!pp) { pf_seterr(err, PF_NOMEM, "out of memory"); return NULL; }
  pp->mode = mode; pp->P = P; pp->mid = mode == PF_MODE_PREFIX ? mid : 0;
  pp->d = hp->n_embd; pp->L = hp->n_layer; pp->kvd = hp->n_head_kv * hp->head_dim;
  pp->out_dim = (size_t)pp->L * 2 * pp->kvd;
  size_t Pd = (size_t)P * pp->d, kvn = (size_t)P * pp->out_dim, o = 0;
  if (mode == PF_MODE_EMBEDDING) { pp->o_emb = o; o += Pd; }
  else if (pp->mid > 0) {
    pp->o_emb = o; o += Pd;
    pp->o_w1 = o; o += (size_t)pp->mid * pp->d;
    pp->o_b1 = o; o += (size_t)pp->mid;
    pp->o_w2 = o; o += pp->out_dim * pp->mid;
    pp->o_b2 = o; o += pp->out_dim;
  } else { pp->o_kv = o; o += kvn; }
  pp->n = o;
  pp->params = calloc(o, sizeof(float));
  pp->grads = calloc(o, sizeof(float));
  pp->m1 = calloc(o, sizeof(float));
  pp->m2 = calloc(o, sizeof(float));
  pp->kv = calloc(kvn, sizeof(float));
  pp->dkv = calloc(kvn, sizeof(float));
  int ok = pp->params && pp->grads && pp->m1 && pp->m2 && pp->kv && pp->dkv;
  if (ok && pp->mid > 0) {
    pp->h = calloc((size_t)P * pp->mid, sizeof(float));
    pp->dh = calloc((size_t)P * pp->mid, sizeof(float));
    pp->out = calloc(kvn, sizeof(float));
    pp->dout = calloc(kvn, sizeof(float));
    ok = pp->h && pp->dh && pp->out && pp->dout;
  }
  if (!ok) {
    pf_pparams_free(pp);
    pf_seterr(err, PF_NOMEM, "out of memory for prefix parameters (%zu floats)", o);
    return NULL;
  }
  return pp;
}

/* Random numbers: splitmix64 + Box-Muller, deterministic per seed. */
typedef struct prng { uint64_t s; int have; double spare; } prng;
static uint64_t pr_next(prng *r) {
  uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
static double pr_unif(prng *r) { return ((pr_next(r) >> 11) + 0.5) * (1.0 / 9007199254740992.0); }
static double pr_normal(prng *r) {
  if (r->have) { r->have = 0; return r->spare; }
  double u = pr_unif(r), v = pr_unif(r), rad = sqrt(-2.0 * log(u));
  r->spare = rad * sin(6.283185307179586 * v);
  r->have = 1;
  return rad * cos(6.283185307179586 * v);
}

/* Initialise. init_kv: (L,2,P,kvd) keys/values of a real text (or NULL);
** init_emb: (P, d) embeddings to start from (or NULL); emb_std: scale of the
** model's token embeddings (for random embedding-mode init). */
int pf_pparams_init(pf_pparams *pp, uint64_t seed, const float *init_kv, const float *init_emb, float emb_std,
                    pf_err *err) {
  prng r = {seed * 0xD1B54A32D192ED03ull + 0x1234567, 0, 0};
  size_t Pd = (size_t)pp->P * pp->d, kvn = (size_t)pp->P * pp->out_dim;
  float *p = pp->params;
  if (pp->mode == PF_MODE_EMBEDDING) {
    for (size_t i = 0; i < Pd; i++) p[pp->o_emb + i] = init_emb ? init_emb[i] : (float)(emb_std * pr_normal(&r));
    return PF_OK;
  }
  if (pp->mid == 0) {
    for (size_t i = 0; i < kvn; i++) p[pp->o_kv + i] = init_kv ? init_kv[i] : (float)pr_normal(&r);
    return PF_OK;
  }
  /* as PyTorch: Embedding ~ N(0,1); Linear ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)) */
  for (size_t i = 0; i < Pd; i++) p[pp->o_emb + i] = (float)pr_normal(&r);
  double a1 = 1.0 / sqrt((double)pp->d), a2 = 1.0 / sqrt((double)pp->mid);
  for (size_t i = 0; i < (size_t)pp->mid * pp->d; i++) p[pp->o_w1 + i] = (float)(a1 * (2 * pr_unif(&r) - 1));
  for (size_t i = 0; i < (size_t)pp->mid; i++) p[pp->o_b1 + i] = (float)(a1 * (2 * pr_unif(&r) - 1));
  for (size_t i = 0; i < pp->out_dim * pp->mid; i++) p[pp->o_w2 + i] = (float)(a2 * (2 * pr_unif(&r) - 1));
  for (size_t i = 0; i < pp->out_dim; i++) p[pp->o_b2 + i] = (float)(a2 * (2 * pr_unif(&r) - 1));
  if (init_kv) {
    pp->base = malloc(kvn * sizeof(float));
    if (!pp->base) return pf_seterr(err, PF_NOMEM, "out of memory");
    memcpy(pp->base, init_kv, kvn * sizeof(float));
  }
  return PF_OK;
}

/* Training state: params, the AdamW moments m1 and m2 (n floats each), then the constant base when there is
** one (P * out_dim floats). */
int pf_pparams_has_base(const pf_pparams *pp) { return pp->base != NULL; }
size_t pf_pparams_state_floats(const pf_pparams *pp) {
  return 3 * pp->n + (pp->base ? (size_t)pp->P * pp->out_dim : 0);
}
void pf_pparams_get_state(const pf_pparams *pp, float *out) {
  memcpy(out, pp->params, pp->n * sizeof(float));
  memcpy(out + pp->n, pp->m1, pp->n * sizeof(float));
  memcpy(out + 2 * pp->n, pp->m2, pp->n * sizeof(float));
  if (pp->base) memcpy(out + 3 * pp->n, pp->base, (size_t)pp->P * pp->out_dim * sizeof(float));
}
int pf_pparams_set_state(pf_pparams *pp, const float *in, int has_base, pf_err *err) {
  size_t kvn = (size_t)pp->P * pp->out_dim;
  memcpy(pp->params, in, pp->n * sizeof(float));
  memcpy(pp->m1, in + pp->n, pp->n * sizeof(float));
  memcpy(pp->m2, in + 2 * pp->n, pp->n * sizeof(float));
  free(pp->base);
  pp->base = NULL;
  if (has_base) {
    if (!(pp->base = malloc(kvn * sizeof(float)))) return pf_seterr(err, PF_NOMEM, "out of memory");
    memcpy(pp->base, in + 3 * pp->n, kvn * sizeof(float));
  }
  return PF_OK;
}
/* Start the MLP at output 0, so kv = base exactly (a warm start from a prefix): the last layer is zero. */
void pf_pparams_zero_mlp_out(pf_pparams *pp) {
  if (pp->mid == 0 || pp->mode != PF_MODE_PREFIX) return;
  memset(pp->params + pp->o_w2, 0, pp->out_dim * pp->mid * sizeof(float));
  memset(pp->params + pp->o_b2, 0, pp->out_dim * sizeof(float));
}

/* (P, L, 2, kvd) <-> (L, 2, P, kvd) */
static size_t kv_index(const pf_pparams *pp, int p, size_t j) {
  size_t lk = j / (size_t)pp->kvd, c = j % (size_t)pp->kvd;   /* lk = layer*2 + k/v */
  return (lk * pp->P + (size_t)p) * pp->kvd + c;
}

/* Compute kv from the parameters (prefix mode). */
void pf_pparams_forward(pf_pparams *pp) {
  size_t kvn = (size_t)pp->P * pp->out_dim;
  if (pp->mode == PF_MODE_EMBEDDING) return;
  if (pp->mid == 0) { memcpy(pp->kv, pp->params + pp->o_kv, kvn * sizeof(float)); return; }
  const float *emb = pp->params + pp->o_emb, *w1 = pp->params + pp->o_w1, *b1 = pp->params + pp->o_b1;
  const float *w2 = pp->params + pp->o_w2, *b2 = pp->params + pp->o_b2;
  pf_matmul(pp->h, emb, w1, pp->P, pp->d, pp->mid);
  for (int p = 0; p < pp->P; p++)
    for (int i = 0; i < pp->mid; i++) pp->h[(size_t)p * pp->mid + i] = tanhf(pp->h[(size_t)p * pp->mid + i] + b1[i]);
  pf_matmul(pp->out, pp->h, w2, pp->P, pp->mid, (int)pp->out_dim);
  for (int p = 0; p < pp->P; p++)
    for (size_t j = 0; j < pp->out_dim; j++) {
      size_t at = kv_index(pp, p, j);
      pp->kv[at] = pp->out[(size_t)p * pp->out_dim + j] + b2[j] + (pp->base ? pp->base[at] : 0.0f);
    }
}

/* From dkv to the parameters' gradients (prefix mode). In the forward pass
** this was: kv = base + tanh(P'·W1^T + b1)·W2^T + b2. */
void pf_pparams_backward(pf_pparams *pp) {
  size_t kvn = (size_t)pp->P * pp->out_dim;
  if (pp->mode == PF_MODE_EMBEDDING) return;
  if (pp->mid == 0) {
    for (size_t i = 0; i < kvn; i++) pp->grads[pp->o_kv + i] += pp->dkv[i];
    return;
  }
  float *g = pp->grads;
  const float *emb = pp->params + pp->o_emb, *w1 = pp->params + pp->o_w1, *w2 = pp->params + pp->o_w2;
  for (int p = 0; p < pp->P; p++)
    for (size_t j = 0; j < pp->out_dim; j++) pp->dout[(size_t)p * pp->out_dim + j] = pp->dkv[kv_index(pp, p, j)];
  for (int p = 0; p < pp->P; p++)
    for (size_t j = 0; j < pp->out_dim; j++) g[pp->o_b2 + j] += pp->dout[(size_t)p * pp->out_dim + j];
  pf_matmul_backward_weight(g + pp->o_w2, pp->dout, pp->h, pp->P, pp->mid, (int)pp->out_dim);
  memset(pp->dh, 0, sizeof(float) * (size_t)pp->P * pp->mid);
  pf_matmul_backward_input(pp->dh, pp->dout, w2, pp->P, pp->mid, (int)pp->out_dim);
  for (size_t i = 0; i < (size_t)pp->P * pp->mid; i++) pp->dh[i] *= 1.0f - pp->h[i] * pp->h[i];  /* tanh' */
  for (int p = 0; p < pp->P; p++)
    for (int i = 0; i < pp->mid; i++) g[pp->o_b1 + i] += pp->dh[(size_t)p * pp->mid + i];
  pf_matmul_backward_weight(g + pp->o_w1, pp->dh, emb, pp->P, pp->d, pp->mid);
  pf_matmul_backward_input(g + pp->o_emb, pp->dh, w1, pp->P, pp->d, pp->mid);
}

void pf_pparams_zero_grad(pf_pparams *pp) {
  memset(pp->grads, 0, pp->n * sizeof(float));
  memset(pp->dkv, 0, (size_t)pp->P * pp->out_dim * sizeof(float));
}

/* Global L2 norm of the gradients (double accumulation). */
double pf_pparams_grad_norm(const pf_pparams *pp) {
  double s = 0;
  for (size_t i = 0; i < pp->n; i++) s += (double)pp->grads[i] * pp->grads[i];
  return sqrt(s);
}

/* AdamW (decoupled weight decay), step t >= 1; gradients scaled by gscale. */
typedef struct adamw_job {
  pf_pparams *pp;
  float lr, beta1, beta2, eps, wd, gscale;
  double bc1, bc2;
} adamw_job;

static void adamw_range(void *arg, size_t i0, size_t i1) {
  const adamw_job *j = arg;
  pf_pparams *pp = j->pp;
  float beta1 = j->beta1, beta2 = j->beta2;
  for (size_t i = i0; i < i1; i++) {
    float g = pp->grads[i] * j->gscale;
    pp->m1[i] = beta1 * pp->m1[i] + (1 - beta1) * g;
    pp->m2[i] = beta2 * pp->m2[i] + (1 - beta2) * g * g;
    double mh = pp->m1[i] / j->bc1, vh = pp->m2[i] / j->bc2;
    pp->params[i] -= (float)(j->lr * (mh / (sqrt(vh) + j->eps) + j->wd * pp->params[i]));
  }
}

/* elementwise, so split over the pool with the same result */
void pf_adamw(pf_pparams *pp, float lr, float beta1, float beta2, float eps, float wd, int t, float gscale) {
  adamw_job j = {pp, lr, beta1, beta2, eps, wd, gscale, 1.0 - pow(beta1, t), 1.0 - pow(beta2, t)};
  pf_parallel_range(pp->n, adamw_range, &j);
}

/* ------------------------------------------------------------------ BLOB */

#define BLOB_MAGIC "SQPF"
#define BLOB_VERSION 1u
#define BLOB_HEADER 64u
#define BLOB_MAX_META (16u << 20)

static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static uint32_t get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

#define ENS_MAGIC "SQPE"
#define ENS_HEADER 32u
#define BLOB_CHECKSUM_SEED 0x53515046u
#define SECTION_OPTIONAL 1u   /* a reader that does not know the section may ignore it */
static uint64_t blob_checksum(const uint8_t *b, size_t len) { return pf_hash64(b, len - 8, BLOB_CHECKSUM_SEED); }
void pf_prefix_seal(uint8_t *b, size_t len) { put64(b + len - 8, blob_checksum(b, len)); }

int pf_prefix_encode_ex(const pf_model *m, const float *kv, int prefix_len, int dtype, const char *meta,
                        const uint8_t *state, size_t state_len, uint8_t **blob, size_t *len, pf_err *err) {
  const pf_hparams *hp = &m->hp;
  size_t n = (size_t)hp->n_layer * 2 * prefix_len * hp->n_head_kv * hp->head_dim;
  for (size_t i = 0; i < n; i++)
    if (!isfinite(kv[i])) return pf_seterr(err, PF_ERR, "the prefix holds a non-finite value at index %zu", i);
    else if (fabsf(kv[i]) > PF_PREFIX_MAX_ABS)
      return pf_seterr(err, PF_ERR, "the prefix holds %g at index %zu, outside the range a prefix may hold (|x| <= 65504; try a lower lr)", kv[i], i);
  size_t es = dtype == PF_DTYPE_F16 ? 2 : 4, ml = meta ? strlen(meta) : 0, pl = n * es;
  if (ml > BLOB_MAX_META) return pf_seterr(err, PF_TOOBIG, "training metadata of %zu bytes exceeds %u", ml, BLOB_MAX_META);
  size_t sec = state ? 16 + state_len : 0;
  size_t total = BLOB_HEADER + ml + pl + sec + 8;
  uint8_t *b = malloc(total);
  if (!b) return pf_seterr(err, PF_NOMEM, "out of memory for a prefix BLOB of %zu bytes", total);
  memset(b, 0, BLOB_HEADER);
  memcpy(b, BLOB_MAGIC, 4);
  put32(b + 4, state ? 2u : 1u);   /* version 1 when there is no section: what every reader knows */
  memcpy(b + 8, pf_model_fingerprint(m), 16);
  put32(b + 24, (uint32_t)hp->arch);
  put32(b + 28, (uint32_t)hp->n_layer);
  put32(b + 32, (uint32_t)hp->n_head_kv);
  put32(b + 36, (uint32_t)hp->head_dim);
  put32(b + 40, (uint32_t)prefix_len);
  put32(b + 44, (uint32_t)dtype);
  put32(b + 48, 0);  /* positions: prefix at 0..P-1, prompt from P */
  put32(b + 52, (uint32_t)ml);
  put64(b + 56, pl);
  if (ml) memcpy(b + BLOB_HEADER, meta, ml);
  uint8_t *pay = b + BLOB_HEADER + ml;
  if (dtype == PF_DTYPE_F16) {
    for (size_t i = 0; i < n; i++) {
      uint16_t h = pf_f32_to_f16(kv[i]);
      if ((h & 0x7c00) == 0x7c00) { free(b); return pf_seterr(err, PF_ERR, "prefix value %g at index %zu does not fit f16 (|x| > 65504); use dtype f32", kv[i], i); }
      memcpy(pay + 2 * i, &h, 2);
    }
  } else memcpy(pay, kv, pl);
  if (state) {
    uint8_t *sp = pay + pl;
    memcpy(sp, "STAT", 4);
    put32(sp + 4, SECTION_OPTIONAL);
    put64(sp + 8, state_len);
    memcpy(sp + 16, state, state_len);
  }
  pf_prefix_seal(b, total);
  *blob = b;
  *len = total;
  return PF_OK;
}

int pf_prefix_encode(const pf_model *m, const float *kv, int prefix_len, int dtype, const char *meta, uint8_t **blob,
                     size_t *len, pf_err *err) {
  return pf_prefix_encode_ex(m, kv, prefix_len, dtype, meta, NULL, 0, blob, len, err);
}

void pf_prefix_clear(pf_prefix *p) {
  for (int i = 0; i < p->n_members; i++) pf_prefix_clear(&p->members[i]);
  free(p->members);
  free(p->member_kv);
  free(p->member_len);
  free(p->meta);
  free(p->kv);
  memset(p, 0, sizeof *p);
}

/* ------------------------------------------------------------- decoding
** The metadata of a BLOB is copied into prefix_info's JSON and into error texts, so a decoded BLOB holds only
** a well-formed JSON object (pf_json_is_object, base.c) and a fingerprint of 16 lower-case hex digits,
** whatever its checksum says. */
static int ensemble_decode(const uint8_t *b, size_t len, pf_prefix *out, pf_err *err);

int pf_prefix_decode(const uint8_t *b, size_t len, pf_prefix *out, pf_err *err) {
  memset(out, 0, sizeof *out);
  if (!pf_host_little_endian()) return pf_seterr(err, PF_ERR, "%s", PF_BIG_ENDIAN_MSG);
  if (len >= 4 && !memcmp(b, ENS_MAGIC, 4)) return ensemble_decode(b, len, out, err);
  if (len < 4 || memcmp(b, BLOB_MAGIC, 4) != 0)
    return pf_seterr(err, PF_ERR, "not a prefix BLOB (bad magic; expected \"SQPF\", %zu bytes)", len);
  if (len < BLOB_HEADER + 8)
    return pf_seterr(err, PF_ERR, "prefix BLOB is truncated: %zu bytes, the header alone needs %u", len, BLOB_HEADER + 8);
  uint32_t ver = get32(b + 4);
  if (ver != 1 && ver != 2) return pf_seterr(err, PF_ERR, "prefix BLOB format version %u is not supported (supported: 1, 2)", ver);
  uint32_t L = get32(b + 28), H = get32(b + 32), D = get32(b + 36), P = get32(b + 40), dt = get32(b + 44),
           pos = get32(b + 48), ml = get32(b + 52);
  uint64_t pl = get64(b + 56);
  if (L < 1 || L > 1024 || H < 1 || H > 4096 || D < 1 || D > 4096 || P < 1 || P > PF_PREFIX_LEN_MAX)
    return pf_seterr(err, PF_ERR, "prefix BLOB has impossible shape: n_layer %u, n_head_kv %u, head_dim %u, prefix_len %u", L, H, D, P);
  if (dt > 1) return pf_seterr(err, PF_ERR, "prefix BLOB dtype %u is not supported (0 = f32, 1 = f16)", dt);
  if (pos != 0) return pf_seterr(err, PF_ERR, "prefix BLOB position convention %u is not supported (0)", pos);
  if (ml > BLOB_MAX_META) return pf_seterr(err, PF_ERR, "prefix BLOB metadata length %u exceeds %u", ml, BLOB_MAX_META);
  uint64_t n = (uint64_t)L * 2 * P * H * D, want = n * (dt ? 2 : 4);
  if (pl != want) return pf_seterr(err, PF_ERR, "prefix BLOB payload is %llu bytes; its shape needs %llu", (unsigned long long)pl, (unsigned long long)want);
  uint64_t total = BLOB_HEADER + (uint64_t)ml + pl + 8;
  if (ver == 1 ? total != len : total > len)
    return pf_seterr(err, PF_ERR, "prefix BLOB is %s: %zu bytes, its header says %llu", len < total ? "truncated" : "too long",
                     len, (unsigned long long)total);
  if (get64(b + len - 8) != blob_checksum(b, len))
    return pf_seterr(err, PF_ERR, "prefix BLOB is damaged (checksum mismatch)");
  snprintf(out->id, sizeof out->id, "%016llx", (unsigned long long)get64(b + len - 8));
  /* version 2: sections between the payload and the checksum, each {tag[4], u32 flags, u64 length, bytes} */
  uint64_t so = total - 8, state_off = 0, state_len = 0;
  while (so < len - 8) {
    if (len - 8 - so < 16) return pf_seterr(err, PF_ERR, "prefix BLOB has a truncated section header at byte %llu", (unsigned long long)so);
    uint64_t sl = get64(b + so + 8);
    uint32_t fl = get32(b + so + 4);
    if (sl > len - 8 - so - 16) return pf_seterr(err, PF_ERR, "prefix BLOB section at byte %llu claims %llu bytes, %llu remain", (unsigned long long)so, (unsigned long long)sl, (unsigned long long)(len - 8 - so - 16));
    if (!memcmp(b + so, "STAT", 4)) {
      if (state_len) return pf_seterr(err, PF_ERR, "prefix BLOB has two training-state sections");
      state_off = so + 16;
      state_len = sl;
    } else if (!(fl & SECTION_OPTIONAL)) {
      char tag[20];
      pf_quote_bytes(tag, sizeof tag, (const char *)b + so, 4);
      return pf_seterr(err, PF_ERR, "prefix BLOB has a section %s this version does not know (not marked optional)", tag);
    }
    so += 16 + sl;
  }
  for (int i = 0; i < 16; i++) {
    uint8_t c = b[8 + i];
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
      return pf_seterr(err, PF_ERR, "prefix BLOB's model fingerprint is not 16 hex digits (byte %d is 0x%02X)", i, c);
  }
  if (!strcmp(pf_arch_name((int)get32(b + 24)), "unknown"))
    return pf_seterr(err, PF_ERR, "prefix BLOB names an unknown architecture (%u)", get32(b + 24));
  if (ml && !pf_json_is_object((const char *)b + BLOB_HEADER, ml))   /* none at all is allowed */
    return pf_seterr(err, PF_ERR, "prefix BLOB's metadata (%u bytes) is not a JSON object", ml);
  out->version = ver;
  memcpy(out->fingerprint, b + 8, 16);
  out->fingerprint[16] = 0;
  out->arch = (int)get32(b + 24);
  out->n_layer = (int)L; out->n_head_kv = (int)H; out->head_dim = (int)D; out->prefix_len = (int)P;
  out->dtype = (int)dt; out->positions = pos;
  out->bytes = len;
  out->state_off = (size_t)state_off;
  out->state_len = (size_t)state_len;
  out->meta = malloc((size_t)ml + 1);
  out->kv = malloc(sizeof(float) * (size_t)n);
  if (!out->meta || !out->kv) { pf_prefix_clear(out); return pf_seterr(err, PF_NOMEM, "out of memory decoding a prefix"); }
  memcpy(out->meta, b + BLOB_HEADER, ml);
  out->meta[ml] = 0;
  out->meta_len = ml;
  const uint8_t *pay = b + BLOB_HEADER + ml;
  if (dt) for (uint64_t i = 0; i < n; i++) { uint16_t h; memcpy(&h, pay + 2 * i, 2); out->kv[i] = pf_f16_to_f32(h); }
  else memcpy(out->kv, pay, (size_t)pl);
  for (uint64_t i = 0; i < n; i++)
    if (!isfinite(out->kv[i])) { pf_prefix_clear(out); return pf_seterr(err, PF_ERR, "prefix BLOB holds a non-finite value at index %llu", (unsigned long long)i); }
    else if (fabsf(out->kv[i]) > PF_PREFIX_MAX_ABS) {
      double v = out->kv[i];
      pf_prefix_clear(out);
      return pf_seterr(err, PF_ERR, "prefix BLOB holds %g at index %llu, outside the range a prefix may hold (|x| <= 65504)", v, (unsigned long long)i);
    }
  return PF_OK;
}

/* ------------------------------------------------------------ ensembles
** "SQPE", u32 version 1, fingerprint[16], u32 n_members, u32 0, then per member {u64 length, a prefix BLOB},
** then the checksum as in a prefix BLOB. */
int pf_ensemble_encode(const uint8_t *const *mb, const size_t *ml, int n, uint8_t **blob, size_t *len, pf_err *err) {
  *blob = NULL;
  *len = 0;
  if (n < 1) return pf_seterr(err, PF_ERR, "an ensemble needs at least one prefix");
  if (n > PF_ENSEMBLE_MAX) return pf_seterr(err, PF_TOOBIG, "an ensemble of %d prefixes exceeds the limit of %d", n, PF_ENSEMBLE_MAX);
  size_t total = ENS_HEADER + 8;
  pf_prefix first = {0};
  for (int i = 0; i < n; i++) {
    pf_prefix p;
    int rc = pf_prefix_decode(mb[i], ml[i], &p, err);
    if (rc) {
      char msg[PF_ERRMAX];
      snprintf(msg, sizeof msg, "member %d: %.400s", i + 1, err ? err->msg : "");
      pf_prefix_clear(&first);
      return pf_seterr(err, rc, "%s", msg);
    }
    if (p.n_members) { pf_prefix_clear(&p); pf_prefix_clear(&first); return pf_seterr(err, PF_ERR, "member %d is itself an ensemble", i + 1); }
    if (i == 0) first = p;
    else {
      int bad = strcmp(p.fingerprint, first.fingerprint) || p.n_layer != first.n_layer || p.n_head_kv != first.n_head_kv ||
                p.head_dim != first.head_dim;
      if (bad) {
        pf_seterr(err, PF_ERR, "member %d was trained on a model with fingerprint %s, member 1 on %s: an ensemble is of one model",
                  i + 1, p.fingerprint, first.fingerprint);
        pf_prefix_clear(&p);
        pf_prefix_clear(&first);
        return PF_ERR;
      }
      pf_prefix_clear(&p);
    }
    total += 8 + ml[i];
  }
  uint8_t *b = malloc(total);
  if (!b) { pf_prefix_clear(&first); return pf_seterr(err, PF_NOMEM, "out of memory for an ensemble BLOB of %zu bytes", total); }
  memset(b, 0, ENS_HEADER);
  memcpy(b, ENS_MAGIC, 4);
  put32(b + 4, 1);
  memcpy(b + 8, first.fingerprint, 16);
  put32(b + 24, (uint32_t)n);
  pf_prefix_clear(&first);
  size_t o = ENS_HEADER;
  for (int i = 0; i < n; i++) {
    put64(b + o, ml[i]);
    memcpy(b + o + 8, mb[i], ml[i]);
    o += 8 + ml[i];
  }
  pf_prefix_seal(b, total);
  *blob = b;
  *len = total;
  return PF_OK;
}

static int ensemble_decode(const uint8_t *b, size_t len, pf_prefix *out, pf_err *err) {
  if (len < ENS_HEADER + 8)
    return pf_seterr(err, PF_ERR, "ensemble BLOB is truncated: %zu bytes, the header alone needs %u", len, ENS_HEADER + 8);
  uint32_t ver = get32(b + 4), n = get32(b + 24);
  if (ver != 1) return pf_seterr(err, PF_ERR, "ensemble BLOB format version %u is not supported (supported: 1)", ver);
  if (n < 1 || n > PF_ENSEMBLE_MAX) return pf_seterr(err, PF_ERR, "ensemble BLOB has %u members (1..%d)", n, PF_ENSEMBLE_MAX);
  if (get64(b + len - 8) != blob_checksum(b, len)) return pf_seterr(err, PF_ERR, "ensemble BLOB is damaged (checksum mismatch)");
  snprintf(out->id, sizeof out->id, "%016llx", (unsigned long long)get64(b + len - 8));
  out->members = calloc(n, sizeof *out->members);
  if (!out->members) return pf_seterr(err, PF_NOMEM, "out of memory decoding an ensemble");
  size_t o = ENS_HEADER;
  for (uint32_t i = 0; i < n; i++) {
    if (len - 8 - o < 8) { pf_prefix_clear(out); return pf_seterr(err, PF_ERR, "ensemble BLOB is truncated at member %u of %u", i + 1, n); }
    uint64_t ml = get64(b + o);
    if (ml > len - 8 - o - 8) { pf_prefix_clear(out); return pf_seterr(err, PF_ERR, "ensemble BLOB member %u claims %llu bytes, %zu remain", i + 1, (unsigned long long)ml, len - 8 - o - 8); }
    if (ml >= 4 && !memcmp(b + o + 8, ENS_MAGIC, 4)) { pf_prefix_clear(out); return pf_seterr(err, PF_ERR, "ensemble BLOB member %u is itself an ensemble", i + 1); }
    int rc = pf_prefix_decode(b + o + 8, (size_t)ml, &out->members[i], err);
    out->n_members = (int)i + 1;
    if (rc) {
      char msg[PF_ERRMAX];
      snprintf(msg, sizeof msg, "ensemble member %u: %.400s", i + 1, err ? err->msg : "");
      pf_prefix_clear(out);
      return pf_seterr(err, rc, "%s", msg);
    }
    pf_prefix *p = &out->members[i], *f = &out->members[0];
    if (memcmp(p->fingerprint, b + 8, 16) || p->n_layer != f->n_layer || p->n_head_kv != f->n_head_kv || p->head_dim != f->head_dim || p->arch != f->arch) {
      pf_prefix_clear(out);
      return pf_seterr(err, PF_ERR, "ensemble member %u does not match the ensemble's model (fingerprint or shape)", i + 1);
    }
    o += 8 + (size_t)ml;
  }
  if (o != len - 8) { pf_prefix_clear(out); return pf_seterr(err, PF_ERR, "ensemble BLOB has %zu bytes after its last member", len - 8 - o); }
  pf_prefix *f = &out->members[0];
  out->version = ver;
  memcpy(out->fingerprint, f->fingerprint, 17);
  out->arch = f->arch; out->n_layer = f->n_layer; out->n_head_kv = f->n_head_kv; out->head_dim = f->head_dim;
  out->dtype = f->dtype;
  out->bytes = len;
  for (int i = 0; i < out->n_members; i++) if (out->members[i].prefix_len > out->prefix_len) out->prefix_len = out->members[i].prefix_len;
  out->meta = malloc(3);
  out->member_kv = malloc(sizeof(float *) * n);
  out->member_len = malloc(sizeof(int) * n);
  if (!out->meta || !out->member_kv || !out->member_len) { pf_prefix_clear(out); return pf_seterr(err, PF_NOMEM, "out of memory decoding an ensemble"); }
  memcpy(out->meta, "{}", 3);
  out->meta_len = 2;
  for (uint32_t i = 0; i < n; i++) { out->member_kv[i] = out->members[i].kv; out->member_len[i] = out->members[i].prefix_len; }
  return PF_OK;
}

void pf_item_set_prefix(pf_batch_item *it, const pf_prefix *p) {
  it->prefix = NULL;
  it->prefix_len = 0;
  it->n_members = 0;
  it->member_kv = NULL;
  it->member_len = NULL;
  if (!p) return;
  if (p->n_members) {
    it->n_members = p->n_members;
    it->member_kv = (const float *const *)p->member_kv;
    it->member_len = p->member_len;
  } else {
    it->prefix = p->kv;
    it->prefix_len = p->prefix_len;
  }
}

int pf_prefix_len_check(const pf_model *m, int prefix_len, pf_err *err) {
  if (prefix_len < 1 || prefix_len > PF_PREFIX_LEN_MAX)
    return pf_seterr(err, PF_ERR, "prefix_len must be 1..%d, got %d", PF_PREFIX_LEN_MAX, prefix_len);
  if (prefix_len >= m->hp.n_ctx)
    return pf_seterr(err, PF_TOOBIG, "prefix_len (%d) leaves no room in the model's context of %d", prefix_len, m->hp.n_ctx);
  return PF_OK;
}

int pf_prefix_check_model(const pf_prefix *p, const pf_model *m, const char *model_name, pf_err *err) {
  const pf_hparams *hp = &m->hp;
  char who[96];
  if (model_name) snprintf(who, sizeof who, "model '%.80s'", model_name);
  else snprintf(who, sizeof who, "this model");
  if (strcmp(p->fingerprint, pf_model_fingerprint(m)) != 0)
    return pf_seterr(err, PF_ERR, "the prefix was trained on a model with fingerprint %s; %s has fingerprint %s",
                     p->fingerprint, who, pf_model_fingerprint(m));
  if (p->n_layer != hp->n_layer || p->n_head_kv != hp->n_head_kv || p->head_dim != hp->head_dim)
    return pf_seterr(err, PF_ERR, "the prefix's shape (%d layers, %d kv heads of %d) does not match %s's (%d, %d, %d)",
                     p->n_layer, p->n_head_kv, p->head_dim, who, hp->n_layer, hp->n_head_kv, hp->head_dim);
  /* an ensemble's prefix_len is its longest member's */
  return pf_prefix_len_check(m, p->prefix_len, err);
}

char *pf_prefix_info_json(const pf_prefix *p, size_t blob_len) {
  if (p->n_members) {   /* {"kind":"ensemble",...,"members":[each member's info]} */
    char **mj = calloc((size_t)p->n_members, sizeof *mj);
    size_t cap = 512;
    int ok = mj != NULL;
    for (int i = 0; ok && i < p->n_members; i++) ok = (mj[i] = pf_prefix_info_json(&p->members[i], p->members[i].bytes)) != NULL, cap += ok ? strlen(mj[i]) + 1 : 0;
    char *s = ok ? malloc(cap) : NULL;
    if (s) {
      size_t n = (size_t)snprintf(s, cap, "{\"kind\":\"ensemble\",\"prefix_id\":\"%s\",\"format_version\":%u,\"model_fingerprint\":\"%s\",\"arch\":\"%s\","
                                  "\"n_members\":%d,\"bytes\":%zu,\"members\":[", p->id, p->version, p->fingerprint, pf_arch_name(p->arch),
                                  p->n_members, blob_len);
      for (int i = 0; i < p->n_members; i++) n += (size_t)snprintf(s + n, cap - n, "%s%s", i ? "," : "", mj[i]);
      snprintf(s + n, cap - n, "]}");
    }
    for (int i = 0; mj && i < p->n_members; i++) free(mj[i]);
    free(mj);
    return s;
  }
  const char *arch = pf_arch_name(p->arch);
  size_t cap = p->meta_len + 1024;
  char *s = malloc(cap);
  if (!s) return NULL;
  int n = snprintf(s, cap,
                   "{\"kind\":\"prefix\",\"prefix_id\":\"%s\",\"format_version\":%u,\"model_fingerprint\":\"%s\",\"arch\":\"%s\",\"n_layer\":%d,\"n_head_kv\":%d,"
                   "\"head_dim\":%d,\"prefix_len\":%d,\"dtype\":\"%s\",\"positions\":\"prefix at 0..%d, prompt from %d\","
                   "\"bytes\":%zu,\"training_state\":%s",
                   p->id, p->version, p->fingerprint, arch, p->n_layer, p->n_head_kv, p->head_dim, p->prefix_len,
                   p->dtype ? "f16" : "f32", p->prefix_len - 1, p->prefix_len, blob_len, p->state_len ? "true" : "false");
  /* merge the metadata object's members */
  const char *m = p->meta;
  while (*m == ' ' || *m == '\n') m++;
  if (*m == '{') {
    m++;
    while (*m == ' ' || *m == '\n') m++;
    if (*m && *m != '}') n += snprintf(s + n, cap - (size_t)n, ",%s", m);
    else n += snprintf(s + n, cap - (size_t)n, "}");
  } else n += snprintf(s + n, cap - (size_t)n, "}");
  return s;
}
