/*
** test_paper.c — the rest of the paper in the engine: beam search against a full-recompute reference,
** streaming, ensembles, warm start and exact resume, hostile ensemble and training-state BLOBs, metrics.
*/
#include "../engine/prefix_engine.h"
#include "../engine/internal.h"   /* pf_prefix_seal, the training internals */
#include "../engine/train.h"
#include "../engine/metrics.h"
#include "testlib.h"

/* log-softmax of the next token after ids[0..n) through a fresh cache (no reuse: the reference) */
static int ref_logprobs(const pf_model *m, const float *kv, int P, const int *ids, int n, double *lp) {
  const pf_hparams *hp = pf_model_hparams(m);
  pf_err e;
  pf_seq *s = pf_seq_new(m, P + n + 1, &e);
  pf_work *w = pf_work_new();
  float *lg = malloc(sizeof(float) * hp->n_vocab);
  int rc = !s || !w || !lg;
  if (!rc && P) rc = pf_seq_set_prefix(s, kv, P, &e);
  if (!rc) rc = pf_forward(m, w, &s, &n, 1, ids, lg, 0, &e);
  if (!rc) {
    double mx = lg[0], se = 0;
    for (int i = 1; i < hp->n_vocab; i++) if (lg[i] > mx) mx = lg[i];
    for (int i = 0; i < hp->n_vocab; i++) se += exp(lg[i] - mx);
    for (int i = 0; i < hp->n_vocab; i++) lp[i] = lg[i] - mx - log(se);
  }
  free(lg);
  pf_work_free(w);
  pf_seq_free(s);
  return rc;
}

typedef struct cand { double s; int parent, tok; } cand;
static int cand_cmp(const void *a, const void *b) {
  const cand *x = a, *y = b;
  return x->s < y->s ? 1 : x->s > y->s ? -1 : 0;
}

/* Beam search without EOS (ignore_eos) for T tokens, beam B: every step keeps the B best (hypothesis, token)
** extensions by summed log-probability, each scored by a full recompute; the answer is the best at step T. */
static void ref_beam(const pf_model *m, const float *kv, int P, const int *prompt, int np, int B, int T, int *out,
                     double *score) {
  const pf_hparams *hp = pf_model_hparams(m);
  int V = hp->n_vocab, L = np + T;
  int *hy = calloc((size_t)B * L, sizeof(int)), *hy2 = calloc((size_t)B * L, sizeof(int)), nh = 1;
  double *sc = calloc((size_t)B, sizeof(double)), *sc2 = calloc((size_t)B, sizeof(double));
  double *lp = malloc(sizeof(double) * V);
  cand *c = malloc(sizeof(cand) * (size_t)B * V);
  memcpy(hy, prompt, sizeof(int) * (size_t)np);
  for (int t = 0; t < T; t++) {
    int nc = 0;
    for (int h = 0; h < nh; h++) {
      ref_logprobs(m, kv, P, hy + (size_t)h * L, np + t, lp);
      for (int v = 0; v < V; v++) c[nc++] = (cand){sc[h] + lp[v], h, v};
    }
    qsort(c, (size_t)nc, sizeof *c, cand_cmp);
    int keep = t == T - 1 ? 1 : B;
    for (int j = 0; j < keep; j++) {
      memcpy(hy2 + (size_t)j * L, hy + (size_t)c[j].parent * L, sizeof(int) * (size_t)(np + t));
      hy2[(size_t)j * L + np + t] = c[j].tok;
      sc2[j] = c[j].s;
    }
    int *ti = hy; hy = hy2; hy2 = ti;
    double *td = sc; sc = sc2; sc2 = td;
    nh = keep;
  }
  memcpy(out, hy + np, sizeof(int) * (size_t)T);
  *score = sc[0];
  free(hy); free(hy2); free(sc); free(sc2); free(lp); free(c);
}

/* the stream's tokens (up to cap), its text, and the summed log-probability */
static int stream_all(const pf_model *m, const pf_batch_item *it, const pf_sample_params *p, int *ids, double *lps, int cap,
                      char *text, size_t tcap, double *sum) {
  pf_stream *s;
  pf_err e;
  if (pf_stream_new(m, it, p, &s, &e)) { printf("# %s\n", e.msg); return -1; }
  int n = 0, done = 0;
  size_t tl = 0;
  *sum = 0;
  text[0] = 0;
  while (n < cap) {
    pf_stream_tok t;
    if (pf_stream_next(s, NULL, NULL, &t, &done, &e)) { printf("# %s\n", e.msg); n = -1; break; }
    if (done) break;
    ids[n] = t.id;
    if (lps) lps[n] = t.logprob;
    n++;
    *sum += t.logprob;
    if (tl + t.piece_len < tcap) { memcpy(text + tl, t.piece, t.piece_len); tl += t.piece_len; text[tl] = 0; }
  }
  pf_stream_free(s);
  return n;
}

static void test_beam_reference(const char *file, const char *name) {
  pf_err e;
  pf_model *m = pf_model_load(t_model_path(file), &e);
  if (!m) { CHECK(0, name, "load: %s", e.msg); return; }
  const char *prompts[] = {"Once upon a time", "Tom had a", "The sun"};
  int all_ok = 1;
  for (int q = 0; q < 3; q++) {
    int *ids, n;
    if (pf_tokenize(m, prompts[q], strlen(prompts[q]), 1, &ids, &n, &e)) { all_ok = 0; break; }
    enum { B = 3, T = 4 };
    int ref[T], got[64];
    double rs, gs;
    ref_beam(m, NULL, 0, ids, n, B, T, ref, &rs);
    pf_sample_params p;
    pf_sample_params_default(&p);
    p.max_tokens = T;
    p.ignore_eos = 1;
    p.beam_size = B;
    pf_batch_item it = {NULL, 0, prompts[q], strlen(prompts[q]), {0}, 0, NULL, NULL};
    char text[4096];
    int k = stream_all(m, &it, &p, got, NULL, 64, text, sizeof text, &gs);
    int same = k == T && !memcmp(got, ref, sizeof ref) && fabs(gs - rs) < 1e-3;
    if (!same) {
      printf("# %s prompt %d: reference", name, q);
      for (int i = 0; i < T; i++) printf(" %d", ref[i]);
      printf(" (%.5f), beam", rs);
      for (int i = 0; i < k; i++) printf(" %d", got[i]);
      printf(" (%.5f)\n", gs);
      all_ok = 0;
    }
    free(ids);
  }
  char nm[160];
  snprintf(nm, sizeof nm, "%s: beam search (3 beams, 4 tokens) = a full-recompute reference, tokens and score", name);
  CHECK(all_ok, nm, "see above");
  pf_model_free(m);
}

/* A random model ends some generation with EOS: the stream gives it last, the pieces make the text. */
static void test_stream_eos(void) {
  pf_err e;
  const char *path = "/tmp/pf_test_paper_rand.gguf";
  char args[512];
  snprintf(args, sizeof args, "--vocab-from %s --layers 2 --embd 32 --heads 4 --ff 64 --seed 9", t_model_path("stories260K.gguf"));
  pf_model *m = t_mkmodel(path, args) ? NULL : pf_model_load(path, &e);
  if (!m) { CHECK(0, "stream: EOS ends a random model's generation", "no model"); return; }
  int found = 0, ok = 0;
  for (int q = 0; q < 200 && !found; q++) {
    char prompt[32];
    snprintf(prompt, sizeof prompt, "%c%c", 'a' + q % 26, 'a' + q / 26);
    pf_sample_params p;
    pf_sample_params_default(&p);
    p.max_tokens = 60;
    pf_gen_result r;
    if (pf_generate(m, NULL, 0, prompt, strlen(prompt), &p, NULL, NULL, &r, &e)) break;
    if (r.finish == PF_FINISH_EOS) {
      found = 1;
      pf_batch_item it = {NULL, 0, prompt, strlen(prompt), {0}, 0, NULL, NULL};
      int ids[128];
      char text[4096];
      double sum;
      int n = stream_all(m, &it, &p, ids, NULL, 128, text, sizeof text, &sum);
      ok = n == r.n_tokens + 1 && pf_token_is_eog(m, ids[n - 1]) && !strcmp(text, r.text);
      if (!ok) printf("# rows %d, tokens %d, last %d, text '%s' vs '%s'\n", n, r.n_tokens, n > 0 ? ids[n - 1] : -1, text, r.text);
    }
    pf_gen_result_clear(&r);
  }
  CHECK(found && ok, "stream: a generation that ends with EOS gives EOS as its last row; the pieces make the text", "found %d", found);
  pf_model_free(m);
  remove(path);
}

/* ------------------------------------------------------------ resume */

static const pf_example EX[] = {
    {"Q: colour?", 10, "A: blue.", 8}, {"Q: pet?", 7, "A: a cat.", 9}, {"Q: food?", 8, "A: soup.", 8},
    {"Q: day?", 7, "A: monday.", 10}, {"Q: sky?", 7, "A: grey.", 8},
};

static int train(const pf_model *m, pf_train_params *p, uint8_t **b, size_t *n) {
  pf_err e;
  int rc = pf_train(m, EX, 5, NULL, 0, p, NULL, NULL, NULL, NULL, b, n, &e);
  if (rc) printf("# train: %s\n", e.msg);
  return rc;
}

static void test_resume(const pf_model *m, int mode, int mid, const char *name) {
  pf_train_params p;
  pf_train_params_default(&p);
  p.prefix_len = 3;
  p.mode = mode;
  p.mid_dim = mid;
  p.batch_size = 2;            /* 3 steps per epoch: 7 steps stop inside an epoch */
  p.lr_schedule = PF_SCHED_CONSTANT;
  p.save_state = 1;
  p.init_text = mode == PF_MODE_PREFIX && mid ? "Once upon a time there was" : NULL;   /* a base for the MLP */
  uint8_t *a = NULL, *b = NULL, *one = NULL;
  size_t an = 0, bn = 0, on = 0;
  p.max_steps = 7;
  int rc = train(m, &p, &a, &an);
  p.max_steps = 12;
  rc = rc || train(m, &p, &one, &on);
  pf_train_params q = p;
  q.max_steps = 5;
  q.init_text = NULL;
  q.init_prefix = a;
  q.init_prefix_len = an;
  q.prefix_len = 0;
  q.mode = -1;
  q.mid_dim = -1;
  rc = rc || train(m, &q, &b, &bn);
  int same = 0;
  if (!rc) {
    pf_prefix x, y;
    pf_err e;
    if (!pf_prefix_decode(b, bn, &x, &e) && !pf_prefix_decode(one, on, &y, &e)) {
      size_t kvn = (size_t)x.n_layer * 2 * x.prefix_len * x.n_head_kv * x.head_dim;
      same = x.prefix_len == y.prefix_len && !memcmp(x.kv, y.kv, kvn * sizeof(float)) && x.state_len == y.state_len &&
             !memcmp(b + x.state_off, one + y.state_off, x.state_len);
      if (!same) printf("# kv diff %g, state %zu vs %zu bytes\n", t_maxdiff(x.kv, y.kv, kvn), x.state_len, y.state_len);
      pf_prefix_clear(&x);
      pf_prefix_clear(&y);
    }
  }
  char nm[200];
  snprintf(nm, sizeof nm, "resume %s: 7 steps then 5 more = 12 steps, the prefix and its state byte for byte", name);
  CHECK(!rc && same, nm, "rc %d", rc);
  free(a); free(b); free(one);
}

/* ------------------------------------------------------------ hostile */

static pf_train_params tiny(int P, int mid, int steps) {
  pf_train_params p;
  pf_train_params_default(&p);
  p.prefix_len = P;
  p.mid_dim = mid;
  p.max_steps = steps;
  return p;
}

/* one training step continued from BLOB c (prefix_len and mode from it); the error code, e filled */
static int continue_from(const pf_model *m, const pf_train_params *base, const uint8_t *c, size_t n, pf_err *e) {
  pf_train_params q = *base;
  q.init_prefix = c;
  q.init_prefix_len = n;
  q.prefix_len = 0;
  q.mode = -1;
  q.max_steps = 1;
  uint8_t *out = NULL;
  size_t ol;
  int rc = pf_train(m, EX, 5, NULL, 0, &q, NULL, NULL, NULL, NULL, &out, &ol, e);
  free(out);
  return rc;
}

static void test_hostile_ensemble(const pf_model *m) {
  pf_train_params p = tiny(2, 0, 2);
  uint8_t *a, *b, *en;
  size_t an, bn, enl;
  pf_err e;
  if (train(m, &p, &a, &an)) return;
  p.seed = 7;
  if (train(m, &p, &b, &bn)) { free(a); return; }
  const uint8_t *mb[2] = {a, b};
  size_t ml[2] = {an, bn};
  int rc = pf_ensemble_encode(mb, ml, 2, &en, &enl, &e);
  CHECK(!rc, "ensemble: two prefixes pack", "%s", e.msg);
  if (rc) { free(a); free(b); return; }
  pf_prefix d;
  rc = pf_prefix_decode(en, enl, &d, &e);
  CHECK(!rc && d.n_members == 2 && d.members[1].prefix_len == 2 && !memcmp(d.member_kv[0], d.members[0].kv, 4),
        "ensemble: decodes to its members", "%s", rc ? e.msg : "wrong members");
  if (!rc) pf_prefix_clear(&d);
  /* every truncation, and every byte changed with the checksum made right again: an error or a valid decode */
  int bad = 0, refused = 0;
  uint8_t *c = malloc(enl);
  for (size_t n = 0; n < enl; n += n < 200 ? 1 : 97) {
    if (!pf_prefix_decode(en, n, &d, &e)) { bad++; pf_prefix_clear(&d); }
    else refused++;
  }
  for (size_t i = 0; i < enl - 8; i += i < 200 ? 1 : 131) {
    memcpy(c, en, enl);
    c[i] ^= 0x5A;
    pf_prefix_seal(c, enl);
    if (!pf_prefix_decode(c, enl, &d, &e)) pf_prefix_clear(&d);
  }
  free(c);
  CHECK(bad == 0 && refused > 0, "ensemble: every truncation is refused; resealed byte changes never crash", "%d truncations decoded", bad);
  /* a finite but huge value (attention over it would overflow): refused at decode */
  {
    uint8_t *h = malloc(an);
    memcpy(h, a, an);
    uint32_t ml;
    memcpy(&ml, h + 52, 4);
    float big = 1e30f;
    memcpy(h + 64 + ml + 8, &big, 4);
    t_prefix_refused(h, an, "outside the range a prefix may hold (|x| <= 65504)", "prefix: a huge value is refused");
    free(h);
  }
  const uint8_t *nested[1] = {en};
  size_t nl[1] = {enl};
  uint8_t *x;
  size_t xl;
  rc = pf_ensemble_encode(nested, nl, 1, &x, &xl, &e);
  CHECK(rc && t_contains(e.msg, "itself an ensemble"), "ensemble: of an ensemble is refused", "%s", e.msg);
  free(en);
  free(a);
  free(b);
}

/* A training state changed and resealed: continuing from it is refused with a message, or continues. */
static void test_hostile_state(const pf_model *m) {
  pf_train_params p = tiny(2, 8, 3);
  p.save_state = 1;
  uint8_t *a;
  size_t an;
  if (train(m, &p, &a, &an)) return;
  pf_prefix d;
  pf_err e;
  if (pf_prefix_decode(a, an, &d, &e)) { CHECK(0, "state: decodes", "%s", e.msg); free(a); return; }
  size_t so = d.state_off, sl = d.state_len;
  pf_prefix_clear(&d);
  struct { size_t off; uint32_t val; const char *want; } cases[] = {
      {0, 9, "not of version 1"},
      {4, 5, "damaged: mode is 5"},
      {12, 9, "differs"},               /* mid_dim 9 vs 8 given below */
      {16, 1, "does not fit"},          /* parameter count */
      {48, 4, "does not fit"},          /* rows of the data order: the length no longer adds up */
      {56, 77, "data order is damaged"},/* an order entry out of range */
      {40, 0x7fffffff, "damaged: epoch is 2147483647"},
      {52, 2, "damaged: has_base is 2"},
      {28, 0x1000, "damaged: steps taken is 175921860444"},   /* the high half of the 64-bit step count */
      /* a position in the epoch past its rows (fuzz_prefix: 2^31 + 1 read as a negative int once indexed before
      ** the order; later such positions started a new epoch silently) */
      {44, 0x80000001u, "damaged: batches taken in its epoch is 2147483649, more than its"},
      {44, 0xffffffffu, "damaged: batches taken in its epoch is 4294967295"},
  };
  int ok = 1;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    uint8_t *c = malloc(an);
    memcpy(c, a, an);
    memcpy(c + so + cases[i].off, &cases[i].val, 4);
    pf_prefix_seal(c, an);
    int rc = continue_from(m, &p, c, an, &e);
    if (!rc || !t_contains(e.msg, cases[i].want)) { ok = 0; printf("# case %zu: rc %d '%s'\n", i, rc, rc ? e.msg : ""); }
    free(c);
  }
  /* a position past this run's batches but within the rows (the batch size changed): a new epoch */
  {
    uint8_t *c = malloc(an);
    memcpy(c, a, an);
    uint32_t pos = 3;
    memcpy(c + so + 44, &pos, 4);
    pf_prefix_seal(c, an);
    int rc = continue_from(m, &p, c, an, &e);
    if (rc) { ok = 0; printf("# position 3 of 5 rows: rc %d '%s'\n", rc, e.msg); }
    free(c);
  }
  /* a NaN moment */
  uint8_t *c = malloc(an);
  memcpy(c, a, an);
  float nan = NAN;
  memcpy(c + so + sl - 4, &nan, 4);
  pf_prefix_seal(c, an);
  pf_train_params any = p;
  any.mid_dim = -1;
  int rc = continue_from(m, &any, c, an, &e);
  if (!rc || !t_contains(e.msg, "invalid value")) { ok = 0; printf("# NaN: rc %d '%s'\n", rc, rc ? e.msg : ""); }
  free(c);
  CHECK(ok, "state: damaged training states are refused with what is wrong", "see above");
  free(a);
}

/* ------------------------------------------------------------ metrics */

static void test_tok13a(void) {
  struct { const char *in, *want; } c[] = {
      {"Hello, world.", "Hello , world ."},
      {"It costs 3.14 or 1,000 dollars.", "It costs 3.14 or 1,000 dollars ."},
      {"a-b 1-2 (x)", "a-b 1 - 2 ( x )"},
      {"&amp;&lt;b&gt; &quot;q&quot;", "& < b > \" q \""},
      {"e.g. x.y", "e . g . x . y"},
      {"don't  stop\nnow", "don't stop now"},
      {"  ", ""},
      {"caf\xc3\xa9, na\xc3\xafve.", "caf\xc3\xa9 , na\xc3\xafve ."},
  };
  int ok = 1;
  for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
    char *o;
    size_t n;
    if (pf_tok13a(c[i].in, strlen(c[i].in), &o, &n) || strcmp(o, c[i].want)) {
      ok = 0;
      printf("# '%s' -> '%s', want '%s'\n", c[i].in, o ? o : "?", c[i].want);
    }
    free(o);
  }
  CHECK(ok, "metrics: mteval-13a tokenization", "see above");
}

static void test_bleu_cases(void) {
  /* one row, one reference: precisions 4/4, 2/3, 1/2, 0/1 -> BLEU 0 (no smoothing) */
  pf_bleu_stats s = {0};
  const char *r[] = {"the cat sat down"};
  size_t rl[] = {strlen(r[0])};
  pf_bleu_add(&s, "the cat sat up", 14, r, rl, 1, NULL, NULL);
  double p[4], bp;
  double b = pf_bleu_score(&s, p, &bp);
  CHECK(b == 0 && fabs(p[0] - 75) < 1e-9 && fabs(p[1] - 200.0 / 3) < 1e-9 && fabs(p[2] - 50) < 1e-9 && p[3] == 0 && bp == 1,
        "metrics: BLEU precisions by hand, 0 when a precision is 0", "%g %g %g %g %g", b, p[0], p[1], p[2], p[3]);
  /* closest reference length: 3 tokens vs refs of 2 and 5 -> 2 (shorter on a tie is not needed here) */
  pf_bleu_stats t = {0};
  const char *r2[] = {"a b", "a b c d e"};
  size_t rl2[] = {3, 9};
  pf_bleu_add(&t, "a b c", 5, r2, rl2, 2, NULL, NULL);
  CHECK(t.ref_len == 2 && t.hyp_len == 3, "metrics: BLEU uses the closest reference length", "ref %g hyp %g", t.ref_len, t.hyp_len);
}

/* The metrics' reference: the plain quadratic counting (every distinct n-gram found again by comparing
** tokens), which the engine's hash-table counting must match exactly. */
typedef struct rtoks { char *s; const char *t[4096]; size_t l[4096]; int n; } rtoks;
static void rt_make(rtoks *r, const char *text, int lower) {
  size_t n;
  pf_tok13a(text, strlen(text), &r->s, &n);
  if (lower) for (char *c = r->s; *c; c++) if (*c >= 'A' && *c <= 'Z') *c += 'a' - 'A';
  r->n = 0;
  for (size_t i = 0; i < n;) {
    size_t j = i;
    while (j < n && r->s[j] != ' ') j++;
    if (j > i && r->n < 4096) { r->t[r->n] = r->s + i; r->l[r->n++] = j - i; }
    i = j + 1;
  }
}
static int rt_eq(const rtoks *a, int i, const rtoks *b, int j, int n) {
  for (int k = 0; k < n; k++)
    if (a->l[i + k] != b->l[j + k] || memcmp(a->t[i + k], b->t[j + k], a->l[i + k])) return 0;
  return 1;
}
static int rt_count(const rtoks *in, int n, const rtoks *g, int at) {
  int c = 0;
  for (int i = 0; i + n <= in->n; i++) c += rt_eq(in, i, g, at, n);
  return c;
}
static void ref_bleu(const char *hyp, const char **refs, int nref, double match[4], double total[4]) {
  rtoks h, r[3];
  rt_make(&h, hyp, 0);
  for (int k = 0; k < nref; k++) rt_make(&r[k], refs[k], 0);
  for (int n = 1; n <= 4; n++) {
    match[n - 1] = 0;
    total[n - 1] = h.n >= n ? h.n - n + 1 : 0;
    for (int i = 0; i + n <= h.n; i++) {
      int first = 1;
      for (int j = 0; j < i && first; j++) first = !rt_eq(&h, j, &h, i, n);
      if (!first) continue;
      int ch = rt_count(&h, n, &h, i), mr = 0;
      for (int k = 0; k < nref; k++) { int c = rt_count(&r[k], n, &h, i); if (c > mr) mr = c; }
      match[n - 1] += ch < mr ? ch : mr;
    }
  }
  free(h.s);
  for (int k = 0; k < nref; k++) free(r[k].s);
}
static int ref_lcs(const rtoks *a, const rtoks *b) {
  int *prev = calloc((size_t)b->n + 1, sizeof(int)), *cur = calloc((size_t)b->n + 1, sizeof(int));
  for (int i = 1; i <= a->n; i++) {
    for (int j = 1; j <= b->n; j++)
      cur[j] = rt_eq(a, i - 1, b, j - 1, 1) ? prev[j - 1] + 1 : (prev[j] > cur[j - 1] ? prev[j] : cur[j - 1]);
    int *t = prev; prev = cur; cur = t;
  }
  int r = prev[b->n];
  free(prev);
  free(cur);
  return r;
}
static double ref_rouge(const char *hyp, const char **refs, int nref) {
  rtoks h, r;
  rt_make(&h, hyp, 1);
  double pmax = 0, rmax = 0, beta2 = 1.2 * 1.2;
  for (int k = 0; k < nref; k++) {
    rt_make(&r, refs[k], 1);
    int l = ref_lcs(&r, &h);
    double p = h.n ? (double)l / h.n : 0, q = r.n ? (double)l / r.n : 0;
    if (p > pmax) pmax = p;
    if (q > rmax) rmax = q;
    free(r.s);
  }
  free(h.s);
  return pmax > 0 && rmax > 0 ? 100 * (1 + beta2) * pmax * rmax / (rmax + beta2 * pmax) : 0;
}
/* chrF's statistics against one reference: code points without white space (ASCII and 2-byte UTF-8 here) */
static int ref_cps(const char *s, unsigned *out) {
  int n = 0;
  for (const unsigned char *p = (const unsigned char *)s; *p;) {
    unsigned c = *p++;
    if (c >= 0xC0) c = (c & 0x1F) << 6 | (*p++ & 0x3F);
    if (c != ' ') out[n++] = c;
  }
  return n;
}
static void ref_chrf(const char *hyp, const char *ref, double s[6][3]) {
  static unsigned h[8192], r[8192];
  int hn = ref_cps(hyp, h), rn = ref_cps(ref, r);
  for (int n = 1; n <= 6; n++) {
    double m = 0;
    for (int i = 0; i + n <= hn; i++) {
      int first = 1;
      for (int j = 0; j < i && first; j++) first = memcmp(h + j, h + i, sizeof(unsigned) * n) != 0;
      if (!first) continue;
      int ch = 0, cr = 0;
      for (int j = 0; j + n <= hn; j++) ch += !memcmp(h + j, h + i, sizeof(unsigned) * n);
      for (int j = 0; j + n <= rn; j++) cr += !memcmp(r + j, h + i, sizeof(unsigned) * n);
      m += ch < cr ? ch : cr;
    }
    s[n - 1][0] = hn >= n ? hn - n + 1 : 0;
    s[n - 1][1] = rn >= n ? rn - n + 1 : 0;
    s[n - 1][2] = m;
  }
}

static void rand_text(char *out, size_t cap, int words) {
  static const char *w[] = {"the", "The", "cat", "sat", "on", "mat", ".", ",", "caf\xc3\xa9", "a", "3-4", "dog's", "\xc3\xa9t\xc3\xa9", "x"};
  size_t o = 0;
  out[0] = 0;
  for (int i = 0; i < words && o + 16 < cap; i++) {
    t_rng = t_rng * 6364136223846793005ull + 1442695040888963407ull;
    o += (size_t)snprintf(out + o, cap - o, "%s%s", i ? " " : "", w[(t_rng >> 33) % 14]);
  }
}

static int cancel_now(void *arg) { (void)arg; return 1; }

static void test_metrics_exact(void) {
  int ok = 1;
  char hyp[2048], rb[3][2048];
  for (int trial = 0; trial < 300 && ok; trial++) {
    int nref = 1 + trial % 3;
    rand_text(hyp, sizeof hyp, trial % 40);
    const char *refs[3];
    size_t rl[3];
    for (int k = 0; k < nref; k++) { rand_text(rb[k], sizeof rb[k], (trial * 7 + k * 13) % 45); refs[k] = rb[k]; rl[k] = strlen(rb[k]); }
    /* BLEU: the n-gram statistics of the row */
    pf_bleu_stats st = {0};
    double m[4], t[4];
    ref_bleu(hyp, refs, nref, m, t);
    if (pf_bleu_add(&st, hyp, strlen(hyp), refs, rl, nref, NULL, NULL)) ok = 0;
    for (int n = 0; n < 4; n++) if (st.match[n] != m[n] || st.total[n] != t[n]) ok = 0;
    /* ROUGE-L */
    double rs = -1;
    pf_err e;
    if (pf_rouge_l(hyp, strlen(hyp), refs, rl, nref, &rs, NULL, NULL, &e) || rs != ref_rouge(hyp, refs, nref)) ok = 0;
    /* chrF against one reference: the statistics added are that reference's */
    pf_chrf_stats cs = {0};
    double s[6][3];
    ref_chrf(hyp, refs[0], s);
    if (pf_chrf_add(&cs, hyp, strlen(hyp), refs, rl, 1, NULL, NULL)) ok = 0;
    for (int n = 0; n < 6; n++) for (int j = 0; j < 3; j++) if (cs.s[n][j] != s[n][j]) ok = 0;
    if (!ok) printf("# trial %d: hyp '%s' ref0 '%s'\n", trial, hyp, refs[0]);
  }
  CHECK(ok, "metrics: BLEU, chrF and ROUGE-L by hash tables equal the quadratic counting on 300 random rows", "see above");

  /* a cancel callback stops each (the statistics unchanged); ROUGE-L refuses beyond its limit, naming both lengths */
  size_t big = 200000;
  char *a = malloc(2 * big + 1);
  for (size_t i = 0; i < big; i++) { a[2 * i] = (char)('a' + i % 7); a[2 * i + 1] = ' '; }
  a[2 * big] = 0;
  const char *refs[1] = {a};
  size_t rl[1] = {2 * big};
  pf_bleu_stats st = {0};
  pf_chrf_stats cs = {0};
  double rs = 0;
  pf_err e;
  int rb1 = pf_bleu_add(&st, a, 2 * big, refs, rl, 1, cancel_now, NULL), rc1 = pf_chrf_add(&cs, a, 2 * big, refs, rl, 1, cancel_now, NULL);
  CHECK(rb1 == PF_INTERRUPT && rc1 == PF_INTERRUPT && st.rows == 0 && st.total[0] == 0 && cs.rows == 0,
        "metrics: BLEU and chrF stop when the cancel callback asks", "bleu %d chrf %d", rb1, rc1);
  int rr = pf_rouge_l(a, 2 * big, refs, rl, 1, &rs, NULL, NULL, &e);
  CHECK(rr == PF_TOOBIG && t_contains(e.msg, "the hypothesis (200000 words) and reference 1 (200000 words)"),
        "metrics: ROUGE-L beyond its limit is refused naming the lengths", "%d %s", rr, e.msg);
  size_t half = 2 * 30000;   /* 30,000 words each: 9e8 comparisons, under the limit: the callback stops it */
  const char *r2[1] = {a};
  size_t rl2[1] = {half};
  rr = pf_rouge_l(a, half, r2, rl2, 1, &rs, cancel_now, NULL, &e);
  CHECK(rr == PF_INTERRUPT, "metrics: ROUGE-L stops when the cancel callback asks", "%d", rr);
  free(a);
}

/* ------------------------------------------------------------ checks: early stopping */

typedef struct seen { int n, last_step, last_since, last_done, reason_early; const char *reason; } seen;
static void on_progress(void *arg, const pf_progress *pr) {
  seen *s = arg;
  s->n++;
  if (!pr->done && pr->stop_reason) s->reason_early = 1;   /* the reason is set only when it ends */
  s->last_step = pr->step;
  s->last_since = pr->since_best;
  s->last_done = pr->done;
  s->reason = pr->stop_reason;
}

static double meta_num(const char *meta, const char *key) {
  const char *at = meta ? strstr(meta, key) : NULL;
  return at ? atof(at + strlen(key)) : NAN;
}

static void test_checks(const pf_model *m) {
  pf_err e;
  pf_prefix x;
  uint8_t *b = NULL;
  size_t n = 0;
  /* the plateau rule: 5 rows (one step per epoch), a loss that cannot move; a check every 25 steps, the first sets
  ** the mark, 5 more without 1% better end it at 150; the callback sees the count of stalled checks and the reason */
  pf_train_params p;
  pf_train_params_default(&p);
  p.prefix_len = 3;
  p.lr = 1e-9f;
  seen s = {0};
  int rc = pf_train(m, EX, 5, NULL, 0, &p, on_progress, &s, NULL, NULL, &b, &n, &e);
  CHECK(!rc && s.last_step == 150 && s.last_done && s.last_since == 5 && s.reason && !strcmp(s.reason, "plateau") &&
            !s.reason_early && s.n == 150,
        "plateau rule: stops after 5 checks without 1% improvement; progress reports the stalled checks and the reason",
        "rc %d step %d since %d reason %s early %d calls %d", rc, s.last_step, s.last_since, s.reason ? s.reason : "-",
        s.reason_early, s.n);
  free(b);
  /* validation with min_delta: the rows themselves as validation rows, so every check is better; the mark moves only
  ** on a check below half of it (4.50 at step 5, then 1.59 at 15), so patience 2 stops at step 25, and the prefix
  ** kept is still the best one (step 25), not the mark's */
  pf_train_params_default(&p);
  p.prefix_len = 3;
  p.eval_every = 5;
  p.patience = 2;
  p.min_delta = 0.5f;
  b = NULL;
  rc = pf_train(m, EX, 5, EX, 5, &p, NULL, NULL, NULL, NULL, &b, &n, &e);
  rc = rc || pf_prefix_decode(b, n, &x, &e);
  CHECK(!rc && meta_num(x.meta, "\"steps\":") == 25 && meta_num(x.meta, "\"best_step\":") == 25 &&
            t_contains(x.meta, "\"stop_reason\":\"validation\"") && t_contains(x.meta, "\"min_delta\":0.5"),
        "min_delta: improvements below it do not reset patience, yet the best prefix is kept", "%s",
        rc ? e.msg : strstr(x.meta, "\"steps\":"));
  if (!rc) pf_prefix_clear(&x);
  /* a warm start is checked before its first step: its validation curve starts at step 0, and the prefix kept is
  ** never worse there than the start */
  uint8_t *w = NULL;
  size_t wn = 0;
  pf_train_params q;
  pf_train_params_default(&q);
  q.init_prefix = b;
  q.init_prefix_len = n;
  q.lr = 1e-9f;
  q.min_delta = 0.01f;   /* the loss creeps down by float dust at this rate: 0 would count that as improving */
  rc = !b || pf_train(m, EX, 5, EX + 1, 3, &q, NULL, NULL, NULL, NULL, &w, &wn, &e);
  rc = rc || pf_prefix_decode(w, wn, &x, &e);
  CHECK(!rc && t_contains(x.meta, "\"val_history\":[[0,") && meta_num(x.meta, "\"best_val_loss\":") <=
            meta_num(x.meta, "\"val_history\":[[0,") + 1e-4 &&   /* the history has 5 digits */ t_contains(x.meta, "\"stop_reason\":\"validation\""),
        "warm start: checked at step 0; the best prefix is never worse on the validation rows than the start", "%s",
        rc ? e.msg : strstr(x.meta, "\"steps\":"));
  if (!rc) pf_prefix_clear(&x);
  free(w);
  free(b);
  /* refused: min_delta of 1 or more (a share of the best), and patience given with dp but no validation rows */
  pf_train_params_default(&p);
  p.min_delta = 1;
  b = NULL;
  rc = pf_train(m, EX, 5, NULL, 0, &p, NULL, NULL, NULL, NULL, &b, &n, &e);
  CHECK(rc && t_contains(e.msg, "min_delta must be >= 0 and < 1"), "min_delta 1 is refused", "%s", rc ? e.msg : "trained");
  free(b);
}

int main(void) {
  test_beam_reference("stories260K.gguf", "stories260K");
  test_beam_reference("families/qwen2-tiny.gguf", "qwen2-tiny");
  test_stream_eos();
  pf_err e;
  pf_model *m = pf_model_load(t_model_path("stories260K.gguf"), &e);
  if (!m) { CHECK(0, "load stories260K", "%s", e.msg); return 1; }
  test_resume(m, PF_MODE_PREFIX, 0, "prefix table");
  test_resume(m, PF_MODE_PREFIX, 16, "prefix MLP");
  test_resume(m, PF_MODE_EMBEDDING, 0, "embedding");
  test_hostile_ensemble(m);
  test_hostile_state(m);
  test_checks(m);
  pf_model_free(m);
  test_tok13a();
  test_bleu_cases();
  test_metrics_exact();
  return t_failed != 0;
}
