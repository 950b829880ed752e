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

/* tokens of a 13a string: offsets and lengths */
typedef struct toks { const char *s; size_t *off, *len; int n; } toks;
static int split_tokens(const char *s, size_t n, toks *t) {
  t->s = s;
  t->n = 0;
  int cap = 1;
  for (size_t i = 0; i < n; i++) cap += s[i] == ' ';
  t->off = malloc(sizeof(size_t) * (size_t)cap);
  t->len = malloc(sizeof(size_t) * (size_t)cap);
  if (!t->off || !t->len) return PF_NOMEM;
  for (size_t i = 0; i < n;) {
    size_t j = i;
    while (j < n && s[j] != ' ') j++;
    if (j > i) { t->off[t->n] = i; t->len[t->n] = j - i; t->n++; }
    i = j + 1;
  }
  return PF_OK;
}
static void toks_free(toks *t) { free(t->off); free(t->len); }

static int tok_eq(const toks *a, int i, const toks *b, int j) {
  return a->len[i] == b->len[j] && !memcmp(a->s + a->off[i], b->s + b->off[j], a->len[i]);
}
static int gram_eq(const toks *a, int i, const toks *b, int j, int n) {
  for (int k = 0; k < n; k++) if (!tok_eq(a, i + k, b, j + k)) return 0;
  return 1;
}
static int count_gram(const toks *in, int n, const toks *g, int at) {
  int c = 0;
  for (int i = 0; i + n <= in->n; i++) c += gram_eq(in, i, g, at, n);
  return c;
}

/* ----------------------------------------------------------------- BLEU */

int pf_bleu_add(pf_bleu_stats *st, const char *hyp, size_t hl, const char *const *refs, const size_t *rl, int nref) {
  if (nref < 1) return PF_ERR;
  char *h = NULL, **r = calloc((size_t)nref, sizeof *r);
  size_t hn, *rn = calloc((size_t)nref, sizeof *rn);
  toks th = {0}, *tr = calloc((size_t)nref, sizeof *tr);
  int rc = !r || !rn || !tr ? PF_NOMEM : pf_tok13a(hyp, hl, &h, &hn);
  for (int k = 0; k < nref && !rc; k++) rc = pf_tok13a(refs[k], rl[k], &r[k], &rn[k]);
  if (!rc) rc = split_tokens(h, hn, &th);
  for (int k = 0; k < nref && !rc; k++) rc = split_tokens(r[k], rn[k], &tr[k]);
  if (!rc) {
    /* the closest reference length; the shorter one on a tie */
    int best = -1;
    for (int k = 0; k < nref; k++) {
      int d = abs(tr[k].n - th.n);
      if (best < 0 || d < abs(tr[best].n - th.n) || (d == abs(tr[best].n - th.n) && tr[k].n < tr[best].n)) best = k;
    }
    st->hyp_len += th.n;
    st->ref_len += tr[best].n;
    for (int n = 1; n <= 4; n++) {
      if (th.n >= n) st->total[n - 1] += th.n - n + 1;
      for (int i = 0; i + n <= th.n; i++) {
        int first = 1;   /* count each distinct n-gram once, at its first occurrence */
        for (int j = 0; j < i && first; j++) first = !gram_eq(&th, j, &th, i, n);
        if (!first) continue;
        int ch = count_gram(&th, n, &th, i), mr = 0;
        for (int k = 0; k < nref; k++) { int c = count_gram(&tr[k], n, &th, i); if (c > mr) mr = c; }
        st->match[n - 1] += ch < mr ? ch : mr;
      }
    }
    st->rows++;
  }
  toks_free(&th);
  for (int k = 0; tr && k < nref; k++) toks_free(&tr[k]);
  for (int k = 0; r && k < nref; k++) free(r[k]);
  free(tr); free(r); free(rn); free(h);
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
static unsigned *chars_nows(const char *s, size_t n, int *len) {
  unsigned *c = malloc(sizeof(unsigned) * (n + 1));
  if (!c) return NULL;
  int k = 0;
  for (size_t i = 0; i < n;) {
    unsigned cp = next_cp((const unsigned char *)s, n, &i);
    if (!is_space_cp(cp)) c[k++] = cp;
  }
  *len = k;
  return c;
}

static int cgram_count(const unsigned *a, int an, const unsigned *g, int n) {
  int c = 0;
  for (int i = 0; i + n <= an; i++) c += !memcmp(a + i, g, sizeof(unsigned) * (size_t)n);
  return c;
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

int pf_chrf_add(pf_chrf_stats *st, const char *hyp, size_t hl, const char *const *refs, const size_t *rl, int nref) {
  if (nref < 1) return PF_ERR;
  int hn, rc = PF_OK;
  unsigned *h = chars_nows(hyp, hl, &hn);
  if (!h) return PF_NOMEM;
  double best[PF_CHRF_ORDER][3], bf = -1;
  for (int k = 0; k < nref && !rc; k++) {
    int rn;
    unsigned *r = chars_nows(refs[k], rl[k], &rn);
    if (!r) { rc = PF_NOMEM; break; }
    double s[PF_CHRF_ORDER][3];
    for (int n = 1; n <= PF_CHRF_ORDER; n++) {
      double m = 0;
      for (int i = 0; i + n <= hn; i++) {
        int first = 1;
        for (int j = 0; j < i && first; j++) first = memcmp(h + j, h + i, sizeof(unsigned) * (size_t)n) != 0;
        if (!first) continue;
        int ch = cgram_count(h, hn, h + i, n), cr = cgram_count(r, rn, h + i, n);
        m += ch < cr ? ch : cr;
      }
      s[n - 1][0] = hn >= n ? hn - n + 1 : 0;
      s[n - 1][1] = rn >= n ? rn - n + 1 : 0;
      s[n - 1][2] = m;
    }
    double f = chrf_f((const double(*)[3])s);
    if (f > bf) { bf = f; memcpy(best, s, sizeof best); }
    free(r);
  }
  free(h);
  if (rc) return rc;
  for (int n = 0; n < PF_CHRF_ORDER; n++) for (int j = 0; j < 3; j++) st->s[n][j] += best[n][j];
  st->rows++;
  return PF_OK;
}

/* -------------------------------------------------------------- ROUGE-L */

static int lcs(const toks *a, const toks *b) {
  int *prev = calloc((size_t)b->n + 1, sizeof(int)), *cur = calloc((size_t)b->n + 1, sizeof(int));
  if (!prev || !cur) { free(prev); free(cur); return -1; }
  for (int i = 1; i <= a->n; i++) {
    for (int j = 1; j <= b->n; j++)
      cur[j] = tok_eq(a, i - 1, b, j - 1) ? prev[j - 1] + 1 : (prev[j] > cur[j - 1] ? prev[j] : cur[j - 1]);
    int *t = prev; prev = cur; cur = t;
  }
  int r = prev[b->n];
  free(prev);
  free(cur);
  return r;
}

static void ascii_lower(char *s) { for (; *s; s++) if (*s >= 'A' && *s <= 'Z') *s = (char)(*s - 'A' + 'a'); }

int pf_rouge_l(const char *hyp, size_t hl, const char *const *refs, const size_t *rl, int nref, double *score) {
  if (nref < 1) return PF_ERR;
  char *h;
  size_t hn;
  toks th = {0};
  int rc = pf_tok13a(hyp, hl, &h, &hn);
  if (rc) return rc;
  ascii_lower(h);
  if ((rc = split_tokens(h, hn, &th))) { free(h); toks_free(&th); return rc; }
  double pmax = 0, rmax = 0, beta2 = 1.2 * 1.2;
  for (int k = 0; k < nref && !rc; k++) {
    char *r;
    size_t rn;
    toks tr = {0};
    if ((rc = pf_tok13a(refs[k], rl[k], &r, &rn))) break;
    ascii_lower(r);
    if (!(rc = split_tokens(r, rn, &tr))) {
      int l = lcs(&tr, &th);
      if (l < 0) rc = PF_NOMEM;
      else {
        double p = th.n ? (double)l / th.n : 0, q = tr.n ? (double)l / tr.n : 0;
        if (p > pmax) pmax = p;
        if (q > rmax) rmax = q;
      }
    }
    toks_free(&tr);
    free(r);
  }
  toks_free(&th);
  free(h);
  if (rc) return rc;
  *score = pmax > 0 && rmax > 0 ? 100 * (1 + beta2) * pmax * rmax / (rmax + beta2 * pmax) : 0;
  return PF_OK;
}
