/*
** metrics.c — the task metrics of table-to-text generation: corpus BLEU-4, chrF and ROUGE-L.
**
** BLEU: the tokenization of mteval-v13a.pl (the E2E challenge's scorer; sacrebleu's "13a"), clipped n-gram
** counts against the maximum count over the references, the closest reference length for the brevity
** penalty, no smoothing: sacrebleu's corpus_bleu with smooth_method "none". chrF: character 1..6-grams with
** white space removed, beta 2, precision and recall averaged over the orders, statistics of each row's best
** reference summed over the corpus (sacrebleu's CHRF defaults). ROUGE-L: the formula of the COCO caption
** evaluation code the E2E scorer runs (longest common subsequence; best precision and best recall over the
** references; F with beta 1.2) on lower-cased 13a tokens, averaged over rows. All scores are 0..100.
*/
#include "internal.h"
#include "metrics.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- text */

/* next code point of s[i..n) (invalid bytes are taken one at a time, as U+FFFD) */
static unsigned next_cp(const unsigned char *s, size_t n, size_t *i) {
  unsigned c = s[*i];
  if (c < 0x80) { (*i)++; return c; }
  int need = c >= 0xC2 && c <= 0xDF ? 1 : c >= 0xE0 && c <= 0xEF ? 2 : c >= 0xF0 && c <= 0xF4 ? 3 : -1;
  if (need < 0 || *i + (size_t)need >= n) { (*i)++; return 0xFFFD; }   /* invalid lead byte, or cut short */
  unsigned cp = c & (0x3Fu >> need);
  for (int k = 1; k <= need; k++) {
    if ((s[*i + k] & 0xC0) != 0x80) { (*i)++; return 0xFFFD; }
    cp = (cp << 6) | (s[*i + k] & 0x3F);
  }
  *i += (size_t)need + 1;
  return cp;
}

/* white space as Python's str.split() sees it */
static int is_space_cp(unsigned c) {
  return (c >= 9 && c <= 13) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

typedef struct buf { char *p; size_t n, cap; int oom; } buf;
static void put(buf *b, const char *s, size_t n) {
  if (b->oom) return;
  if (b->n + n + 1 > b->cap) {
    size_t nc = (b->cap + n) * 2 + 64;
    char *np = realloc(b->p, nc);
    if (!np) { b->oom = 1; return; }
    b->p = np;
    b->cap = nc;
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = 0;
}
static void putc1(buf *b, char c) { put(b, &c, 1); }

static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
/* the punctuation of the first rule: { | } ~ [ \ ] ^ _ ` space ! " # $ % & ( ) * + : ; < = > ? @ / */
static int is_punct13a(unsigned char c) {
  return (c >= '{' && c <= '~') || (c >= '[' && c <= '`') || (c >= ' ' && c <= '&') || (c >= '(' && c <= '+') ||
         (c >= ':' && c <= '@') || c == '/';
}

/* One rewriting pass of 13a over in (left to right, non-overlapping, as a regex substitution). */
static int pass13a(const char *in, size_t n, int rule, buf *o) {
  for (size_t i = 0; i < n;) {
    unsigned char c = (unsigned char)in[i], d = i + 1 < n ? (unsigned char)in[i + 1] : 0;
    int has_d = i + 1 < n;
    if (rule == 1 && is_punct13a(c)) { putc1(o, ' '); putc1(o, (char)c); putc1(o, ' '); i++; continue; }
    if (rule == 2 && has_d && !is_digit(c) && (d == '.' || d == ',')) {   /* ([^0-9])([.,]) -> "\1 \2 " */
      putc1(o, (char)c); putc1(o, ' '); putc1(o, (char)d); putc1(o, ' '); i += 2; continue;
    }
    if (rule == 3 && has_d && (c == '.' || c == ',') && !is_digit(d)) {  /* ([.,])([^0-9]) -> " \1 \2" */
      putc1(o, ' '); putc1(o, (char)c); putc1(o, ' '); putc1(o, (char)d); i += 2; continue;
    }
    if (rule == 4 && has_d && is_digit(c) && d == '-') {                  /* ([0-9])(-) -> "\1 \2 " */
      putc1(o, (char)c); putc1(o, ' '); putc1(o, '-'); putc1(o, ' '); i += 2; continue;
    }
    putc1(o, (char)c);
    i++;
  }
  return o->oom ? PF_NOMEM : PF_OK;
}

static void replace_all(buf *o, const char *s, size_t n, const char *from, const char *to) {
  size_t fl = strlen(from), tl = strlen(to);
  for (size_t i = 0; i < n;) {
    if (i + fl <= n && !memcmp(s + i, from, fl)) { put(o, to, tl); i += fl; }
    else { putc1(o, s[i]); i++; }
  }
}

int pf_tok13a(const char *s, size_t n, char **out, size_t *out_len) {
  buf a = {0}, b = {0};
  /* language-independent part: drop <skipped>, join "-\n", newlines to spaces, unescape 4 entities */
  replace_all(&a, s, n, "<skipped>", "");
  replace_all(&b, a.p ? a.p : "", a.n, "-\n", "");
  a.n = 0;
  replace_all(&a, b.p ? b.p : "", b.n, "\n", " ");
  if (memchr(a.p ? a.p : "", '&', a.n)) {
    static const char *ent[][2] = {{"&quot;", "\""}, {"&amp;", "&"}, {"&lt;", "<"}, {"&gt;", ">"}};
    for (int k = 0; k < 4; k++) {
      b.n = 0;
      replace_all(&b, a.p, a.n, ent[k][0], ent[k][1]);
      a.n = 0;
      put(&a, b.p ? b.p : "", b.n);
    }
  }
  /* " line ", then the four rules */
  b.n = 0;
  putc1(&b, ' ');
  put(&b, a.p ? a.p : "", a.n);
  putc1(&b, ' ');
  for (int r = 1; r <= 4; r++) {
    a.n = 0;
    pass13a(b.p, b.n, r, &a);
    buf t = a; a = b; b = t;   /* the result in b */
  }
  /* single spaces between tokens, none at the ends */
  a.n = 0;
  if (a.p) a.p[0] = 0;
  const unsigned char *u = (const unsigned char *)(b.p ? b.p : "");
  int in_tok = 0;
  for (size_t i = 0; i < b.n;) {
    size_t st = i;
    unsigned cp = next_cp(u, b.n, &i);
    if (is_space_cp(cp)) { in_tok = 0; continue; }
    if (!in_tok && a.n) putc1(&a, ' ');
    in_tok = 1;
    put(&a, (const char *)u + st, i - st);
  }
  int oom = a.oom || b.oom;
  free(b.p);
  if (oom) { free(a.p); return PF_NOMEM; }
  if (!a.p) { a.p = malloc(1); if (!a.p) return PF_NOMEM; a.p[0] = 0; }
  *out = a.p;
  *out_len = a.n;
  return PF_OK;
}

/* ------------------------------------------------------- n-gram ids
** Counting is exact and linear in the text: every unit (a 13a token, or a code point for chrF) gets a
** dense id, and the n-grams of order n get dense ids from the pair (id of their first n-1 units, id of their
** last unit) through a hash table, so equal n-grams have equal ids without comparing them again. */

/* open addressing, 64-bit keys (UINT64_MAX: empty) to dense ids 0, 1, 2, ... in order of first sight */
typedef struct idmap { uint64_t *key; int *val; size_t mask; int n; } idmap;

static int idmap_init(idmap *m, size_t n_max) {
  size_t cap = 64;
  while (cap < 2 * n_max + 2) cap *= 2;
  m->key = malloc(sizeof(uint64_t) * cap);
  m->val = malloc(sizeof(int) * cap);
  if (!m->key || !m->val) return PF_NOMEM;
  memset(m->key, 0xff, sizeof(uint64_t) * cap);
  m->mask = cap - 1;
  m->n = 0;
  return PF_OK;
}
static void idmap_clear(idmap *m) { memset(m->key, 0xff, sizeof(uint64_t) * (m->mask + 1)); m->n = 0; }
static void idmap_free(idmap *m) { free(m->key); free(m->val); }
static uint64_t mix64(uint64_t x) {
  x ^= x >> 33; x *= 0xff51afd7ed558ccdull; x ^= x >> 33; x *= 0xc4ceb9fe1a85ec53ull; x ^= x >> 33;
  return x;
}
/* the id of key; a new one the first time (the table holds at most n_max keys: never full) */
static int idmap_id(idmap *m, uint64_t key) {
  size_t h = (size_t)mix64(key) & m->mask;
  while (m->key[h] != UINT64_MAX) {
    if (m->key[h] == key) return m->val[h];
    h = (h + 1) & m->mask;
  }
  m->key[h] = key;
  return m->val[h] = m->n++;
}

/* a sequence of unit ids, rewritten in place from order n-1 to order n grams */
typedef struct seq { int *g; int n; } seq;
static int grams(const seq *s, int n) { return s->n >= n ? s->n - n + 1 : 0; }

/* From the (n-1)-gram ids in g to the n-gram ids of every sequence: g[i] = id(g[i], unit[i + n - 1]). */
static void next_order(idmap *m, seq *g, const seq *u, int n_seq, int n) {
  idmap_clear(m);
  for (int k = 0; k < n_seq; k++)
    for (int i = 0; i < grams(&g[k], n); i++) g[k].g[i] = idmap_id(m, (uint64_t)g[k].g[i] << 32 | (uint32_t)u[k].g[i + n - 1]);
}

/* 13a tokens of the texts (hypothesis first) as ids shared by all: a token's id is its first occurrence's
** position in all the texts put end to end, found through a hash of its bytes and a comparison. */
typedef struct tokset { char **text; seq *u; int n_seq; } tokset;

static void tokset_free(tokset *t) {
  for (int k = 0; t->text && k < t->n_seq; k++) free(t->text[k]);
  for (int k = 0; t->u && k < t->n_seq; k++) free(t->u[k].g);
  free(t->text);
  free(t->u);
}

static uint64_t hash_bytes(const char *s, size_t n) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
  return h;
}

static int tokset_make(tokset *t, const char *hyp, size_t hl, const char *const *refs, const size_t *rl, int nref,
                       int lower) {
  memset(t, 0, sizeof *t);
  t->n_seq = nref + 1;
  t->text = calloc((size_t)t->n_seq, sizeof *t->text);
  t->u = calloc((size_t)t->n_seq, sizeof *t->u);
  if (!t->text || !t->u) return PF_NOMEM;
  size_t total = 0;
  int rc = PF_OK;
  size_t *len = calloc((size_t)t->n_seq, sizeof *len);
  if (!len) return PF_NOMEM;
  for (int k = 0; k < t->n_seq && !rc; k++) {
    rc = k ? pf_tok13a(refs[k - 1], rl[k - 1], &t->text[k], &len[k]) : pf_tok13a(hyp, hl, &t->text[0], &len[0]);
    if (rc) break;
    if (lower)
      for (char *c = t->text[k]; *c; c++) if (*c >= 'A' && *c <= 'Z') *c = (char)(*c - 'A' + 'a');
    size_t cap = 1;
    for (size_t i = 0; i < len[k]; i++) cap += t->text[k][i] == ' ';
    total += cap;
    if (!(t->u[k].g = malloc(sizeof(int) * cap))) rc = PF_NOMEM;
  }
  /* per token: where it starts and its length, to compare on a hash match */
  const char **ts = NULL;
  size_t *tl = NULL;
  idmap m = {0};
  if (!rc && total > (size_t)INT32_MAX) rc = PF_TOOBIG;
  if (!rc && (!(ts = malloc(sizeof *ts * total)) || !(tl = malloc(sizeof *tl * total)) || idmap_init(&m, total))) rc = PF_NOMEM;
  int seen = 0;   /* tokens so far, over all texts */
  for (int k = 0; k < t->n_seq && !rc; k++) {
    const char *s = t->text[k];
    seq *u = &t->u[k];
    u->n = 0;
    for (size_t i = 0; i < len[k];) {
      size_t j = i;
      while (j < len[k] && s[j] != ' ') j++;
      if (j > i) {
        /* the first earlier token with these bytes: probe the hash's slots, comparing the bytes */
        uint64_t h = hash_bytes(s + i, j - i);
        if (h == UINT64_MAX) h--;   /* the empty slot's mark */
        size_t slot = (size_t)mix64(h) & m.mask;
        int id = -1;
        while (m.key[slot] != UINT64_MAX) {
          int o = m.val[slot];
          if (m.key[slot] == h && tl[o] == j - i && !memcmp(ts[o], s + i, j - i)) { id = o; break; }
          slot = (slot + 1) & m.mask;
        }
        if (id < 0) { m.key[slot] = h; m.val[slot] = id = seen; }
        ts[seen] = s + i;
        tl[seen] = j - i;
        seen++;
        u->g[u->n++] = id;
      }
      i = j + 1;
    }
  }
  idmap_free(&m);
  free(ts);
  free(tl);
  free(len);
  return rc;
}

/* ----------------------------------------------------------------- BLEU */

int pf_bleu_add(pf_bleu_stats *st, const char *hyp, size_t hl, const char *const *refs, const size_t *rl, int nref,
                pf_cancel_fn cancel, void *carg) {
  if (nref < 1) return PF_ERR;
  tokset t;
  idmap m = {0};
  seq *g = NULL;
  int *ch = NULL, *mr = NULL, *cnt = NULL, rc = tokset_make(&t, hyp, hl, refs, rl, nref, 0);
  size_t total = 0;
  for (int k = 0; !rc && k < t.n_seq; k++) total += (size_t)t.u[k].n;
  if (!rc && (!(g = calloc((size_t)t.n_seq, sizeof *g)) || idmap_init(&m, total) || !(ch = calloc(total + 1, sizeof(int))) ||
              !(mr = calloc(total + 1, sizeof(int))) || !(cnt = calloc(total + 1, sizeof(int)))))
    rc = PF_NOMEM;
  for (int k = 0; !rc && k < t.n_seq; k++) {
    g[k].n = t.u[k].n;
    if (!(g[k].g = malloc(sizeof(int) * ((size_t)g[k].n + 1)))) rc = PF_NOMEM;
    else memcpy(g[k].g, t.u[k].g, sizeof(int) * (size_t)g[k].n);
  }
  if (!rc) {
    const seq *th = &t.u[0], *tr = t.u + 1;
    /* the closest reference length; the shorter one on a tie */
    int best = -1;
    for (int k = 0; k < nref; k++) {
      int d = abs(tr[k].n - th->n);
      if (best < 0 || d < abs(tr[best].n - th->n) || (d == abs(tr[best].n - th->n) && tr[k].n < tr[best].n)) best = k;
    }
    pf_bleu_stats add = {{0}, {0}, th->n, tr[best].n, 1};
    for (int n = 1; n <= 4 && !rc; n++) {
      if (cancel && cancel(carg)) { rc = PF_INTERRUPT; break; }
      if (n > 1) next_order(&m, g, t.u, t.n_seq, n);   /* order 1: the token ids themselves */
      add.total[n - 1] = grams(&g[0], n);
      /* the hypothesis's count of each n-gram, and its largest count in any one reference */
      for (int i = 0; i < grams(&g[0], n); i++) ch[g[0].g[i]]++;
      for (int k = 1; k < t.n_seq; k++) {
        for (int i = 0; i < grams(&g[k], n); i++) cnt[g[k].g[i]]++;
        for (int i = 0; i < grams(&g[k], n); i++) { int d = g[k].g[i]; if (cnt[d] > mr[d]) mr[d] = cnt[d]; }
        for (int i = 0; i < grams(&g[k], n); i++) cnt[g[k].g[i]] = 0;
      }
      /* clipped: each distinct n-gram once (its count then cleared), then the arrays back to zero */
      for (int i = 0; i < grams(&g[0], n); i++) {
        int d = g[0].g[i];
        if (ch[d]) { add.match[n - 1] += ch[d] < mr[d] ? ch[d] : mr[d]; ch[d] = 0; }
      }
      for (int k = 1; k < t.n_seq; k++) for (int i = 0; i < grams(&g[k], n); i++) mr[g[k].g[i]] = 0;
    }
    if (!rc) {
      for (int n = 0; n < 4; n++) { st->match[n] += add.match[n]; st->total[n] += add.total[n]; }
      st->hyp_len += add.hyp_len;
      st->ref_len += add.ref_len;
      st->rows++;
    }
  }
  for (int k = 0; g && k < t.n_seq; k++) free(g[k].g);
  free(g);
  free(ch); free(mr); free(cnt);
  idmap_free(&m);
  tokset_free(&t);
  return rc;
}

double pf_bleu_score(const pf_bleu_stats *st, double prec[4], double *bp) {
  double lsum = 0;
  int zero = 0;
  for (int n = 0; n < 4; n++) {
    double p = st->total[n] > 0 ? st->match[n] / st->total[n] : 0;
    if (prec) prec[n] = 100 * p;
    if (p <= 0) zero = 1;
    else lsum += log(p);
  }
  double b = st->hyp_len <= 0 ? 0 : st->hyp_len < st->ref_len ? exp(1 - st->ref_len / st->hyp_len) : 1;
  if (bp) *bp = b;
  return zero ? 0 : 100 * b * exp(lsum / 4);
}

/* ----------------------------------------------------------------- chrF */

/* code points of s with white space removed */
static int chars_nows(const char *s, size_t n, seq *out) {
  out->g = malloc(sizeof(int) * (n + 1));
  if (!out->g) return PF_NOMEM;
  int k = 0;
  for (size_t i = 0; i < n;) {
    unsigned cp = next_cp((const unsigned char *)s, n, &i);
    if (!is_space_cp(cp)) out->g[k++] = (int)cp;
  }
  out->n = k;
  return PF_OK;
}

static double chrf_f(const double s[PF_CHRF_ORDER][3]) {
  double ap = 0, ar = 0, beta2 = 4;
  int eff = 0;
  for (int n = 0; n < PF_CHRF_ORDER; n++)
    if (s[n][0] > 0 && s[n][1] > 0) { ap += s[n][2] / s[n][0]; ar += s[n][2] / s[n][1]; eff++; }
  if (!eff) return 0;
  ap /= eff;
  ar /= eff;
  return ap + ar > 0 ? 100 * (1 + beta2) * ap * ar / (beta2 * ap + ar) : 0;
}

double pf_chrf_score(const pf_chrf_stats *st) { return chrf_f((const double(*)[3])st->s); }

int pf_chrf_add(pf_chrf_stats *st, const char *hyp, size_t hl, const char *const *refs, const size_t *rl, int nref,
                pf_cancel_fn cancel, void *carg) {
  if (nref < 1) return PF_ERR;
  seq u[2] = {{0}}, g[2] = {{0}};   /* the hypothesis and one reference: code points, and their n-gram ids */
  idmap m = {0};
  int *ch = NULL, *cr = NULL;
  double best[PF_CHRF_ORDER][3], bf = -1;
  int rc = chars_nows(hyp, hl, &u[0]);
  for (int k = 0; k < nref && !rc; k++) {
    free(u[1].g); free(g[0].g); free(g[1].g);
    u[1].g = g[0].g = g[1].g = NULL;
    idmap_free(&m);
    free(ch); free(cr);
    ch = cr = NULL;
    if ((rc = chars_nows(refs[k], rl[k], &u[1]))) break;
    size_t total = (size_t)u[0].n + (size_t)u[1].n;
    if (idmap_init(&m, total) || !(ch = calloc(total + 1, sizeof(int))) || !(cr = calloc(total + 1, sizeof(int)))) { rc = PF_NOMEM; break; }
    for (int j = 0; j < 2 && !rc; j++) {
      g[j].n = u[j].n;
      if (!(g[j].g = malloc(sizeof(int) * ((size_t)u[j].n + 1)))) rc = PF_NOMEM;
      else for (int i = 0; i < u[j].n; i++) g[j].g[i] = idmap_id(&m, (uint32_t)u[j].g[i]);   /* order 1 */
    }
    if (rc) break;
    double s[PF_CHRF_ORDER][3];
    for (int n = 1; n <= PF_CHRF_ORDER && !rc; n++) {
      if (cancel && cancel(carg)) { rc = PF_INTERRUPT; break; }
      if (n > 1) next_order(&m, g, u, 2, n);   /* units: the code points themselves (below 2^21) */
      double mt = 0;
      for (int i = 0; i < grams(&g[0], n); i++) ch[g[0].g[i]]++;
      for (int i = 0; i < grams(&g[1], n); i++) cr[g[1].g[i]]++;
      for (int i = 0; i < grams(&g[0], n); i++) {
        int d = g[0].g[i];
        if (ch[d]) { mt += ch[d] < cr[d] ? ch[d] : cr[d]; ch[d] = 0; }
      }
      for (int i = 0; i < grams(&g[1], n); i++) cr[g[1].g[i]] = 0;
      s[n - 1][0] = grams(&g[0], n);
      s[n - 1][1] = grams(&g[1], n);
      s[n - 1][2] = mt;
    }
    if (rc) break;
    double f = chrf_f((const double(*)[3])s);
    if (f > bf) { bf = f; memcpy(best, s, sizeof best); }
  }
  free(u[0].g); free(u[1].g); free(g[0].g); free(g[1].g);
  free(ch); free(cr);
  idmap_free(&m);
  if (rc) return rc;
  for (int n = 0; n < PF_CHRF_ORDER; n++) for (int j = 0; j < 3; j++) st->s[n][j] += best[n][j];
  st->rows++;
  return PF_OK;
}

/* -------------------------------------------------------------- ROUGE-L */

/* the longest common subsequence of two id sequences: linear space; the cancel callback every ~2^22 cells */
static int lcs(const seq *a, const seq *b, pf_cancel_fn cancel, void *carg, int *out) {
  int *prev = calloc((size_t)b->n + 1, sizeof(int)), *cur = calloc((size_t)b->n + 1, sizeof(int));
  if (!prev || !cur) { free(prev); free(cur); return PF_NOMEM; }
  size_t since = 0;
  for (int i = 1; i <= a->n; i++) {
    int x = a->g[i - 1];
    for (int j = 1; j <= b->n; j++)
      cur[j] = x == b->g[j - 1] ? prev[j - 1] + 1 : (prev[j] > cur[j - 1] ? prev[j] : cur[j - 1]);
    int *t = prev; prev = cur; cur = t;
    if ((since += (size_t)b->n) >= ((size_t)1 << 22)) {
      since = 0;
      if (cancel && cancel(carg)) { free(prev); free(cur); return PF_INTERRUPT; }
    }
  }
  *out = prev[b->n];
  free(prev);
  free(cur);
  return PF_OK;
}

int pf_rouge_l(const char *hyp, size_t hl, const char *const *refs, const size_t *rl, int nref, double *score,
               pf_cancel_fn cancel, void *carg, pf_err *err) {
  if (nref < 1) return pf_seterr(err, PF_ERR, "no reference");
  tokset t;
  int rc = tokset_make(&t, hyp, hl, refs, rl, nref, 1);
  if (rc) { tokset_free(&t); return pf_seterr(err, rc, rc == PF_NOMEM ? "out of memory" : "the texts are too long"); }
  const seq *th = &t.u[0];
  double pmax = 0, rmax = 0, beta2 = 1.2 * 1.2;
  for (int k = 0; k < nref && !rc; k++) {
    const seq *tr = &t.u[k + 1];
    if ((double)th->n * tr->n > PF_ROUGE_MAX_CELLS) {
      rc = pf_seterr(err, PF_TOOBIG, "the hypothesis (%d words) and reference %d (%d words) would take %.0f word comparisons; "
                     "the limit is %.0f (ROUGE-L's longest common subsequence grows with the product of the lengths)",
                     th->n, k + 1, tr->n, (double)th->n * tr->n, (double)PF_ROUGE_MAX_CELLS);
      break;
    }
    int l = 0;
    if ((rc = lcs(tr, th, cancel, carg, &l))) { pf_seterr(err, rc, rc == PF_NOMEM ? "out of memory" : "interrupted"); break; }
    double p = th->n ? (double)l / th->n : 0, q = tr->n ? (double)l / tr->n : 0;
    if (p > pmax) pmax = p;
    if (q > rmax) rmax = q;
  }
  tokset_free(&t);
  if (rc) return rc;
  *score = pmax > 0 && rmax > 0 ? 100 * (1 + beta2) * pmax * rmax / (rmax + beta2 * pmax) : 0;
  return PF_OK;
}
