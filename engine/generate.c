/*
** generate.c — rows of hypotheses and the step that advances a batch of them (gen.h); serve.c schedules them.
**
** A row is one prompt of one request, with its own parameters, prefix (or none, or an ensemble of several),
** prompt and KV caches. A batch holds rows of any requests; each step runs one forward pass over a prompt
** chunk of every row still prefilling and the last token of every live sequence of every row decoding, so
** the weights are read once per step for all of them; then each row samples (or extends its beams).
**
** A row holds hypotheses (1 when sampling; beam_size for beam search), and a hypothesis holds one cache per
** ensemble member. The members' next-token distributions are averaged (in probability); one member is its
** logits as they are, so a plain prefix decodes exactly as it always has. A row's sampler and state are its
** own, so its greedy or seeded text does not depend on what it was batched with.
**
** A scoring row only prefills: its pair's tokens go in chunk by chunk, and the logits of the positions whose
** next token is scored (the completion's) come back from the pass, each turned into that token's
** log-probability; it ends when its tokens are in.
*/
#include "gen.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *pf_finish_name(int finish) {
  switch (finish) {
    case PF_FINISH_STOP: return "stop";
    case PF_FINISH_EOS: return "eos";
    default: return "length";
  }
}

void pf_gen_result_clear(pf_gen_result *r) {
  free(r->text);
  memset(r, 0, sizeof *r);
}

/* Find the earliest stop string that now occurs in buf, searching only where
** the last append could have completed one. Returns its offset or -1. */
static long find_stop(const pf_sample_params *p, const char *buf, size_t len, size_t old_len) {
  long best = -1;
  for (int i = 0; i < p->n_stop; i++) {
    size_t sl = strlen(p->stop[i]);
    if (sl == 0 || sl > len) continue;
    size_t from = old_len >= sl ? old_len - sl + 1 : 0;
    for (size_t at = from; at + sl <= len; at++)
      if (memcmp(buf + at, p->stop[i], sl) == 0) {
        if (best < 0 || (long)at < best) best = (long)at;
        break;
      }
  }
  return best;
}

/* the bytes a generated token adds to the text (control tokens add none) */
int gen_tok_piece(const pf_model *m, int tok, char *piece, int cap) {
  int k = pf_token_bytes(m, tok, piece, cap);
  if (k < 0 || (m->vocab.kind == PF_TOK_SPM && m->vocab.type[tok] == PF_TT_CONTROL)) k = 0;
  return k;
}

struct gen {
  const pf_model *m;
  row **rows;         /* the rows in the batch (owned by their requests) */
  int n, cap;
  pf_work *w;
  pf_seq **seqs;      /* one pass's sequences, their new tokens, and each one's row and kind */
  int *ntok, *toks, *sq_row, *sq_chunk, *sq_out;   /* ... and the logits rows it gives */
  size_t seq_cap, tok_cap, lg_cap;
  float *logits;      /* (lg_cap, V): the pass's logits rows, each sequence's sq_out of them, in pass order */
  float *comb, *tmp;  /* (V): an ensemble's combined scores; the scores before masks */
};

static void ended_free(ended *e) { free(e->gen); free(e->lp); free(e->raw); memset(e, 0, sizeof *e); }

static void hyp_free(hyp *h) { free(h->ids); free(h->lp); free(h->raw); }

static void row_free(row *r) {
  if (r->groups) for (int i = 0; i < r->B * r->K; i++) pf_seq_free(r->groups[i]);
  free(r->groups);
  for (int i = 0; i < r->n_rec; i++) free(r->rec[i].piece);
  free(r->rec);
  for (int i = 0; r->h && i < r->B; i++) hyp_free(&r->h[i]);
  for (int i = 0; r->h2 && i < r->B; i++) hyp_free(&r->h2[i]);
  free(r->h);
  free(r->h2);
  for (int i = 0; i < r->n_fin; i++) ended_free(&r->fin[i]);
  free(r->fin);
  pf_sampler_free(r->smp);
  free(r->emsg);
  free(r->cand_s); free(r->cand_h); free(r->cand_t);
  memset(r, 0, sizeof *r);
}

static int hyp_alloc(hyp *h, int n_ids_cap, int max_tokens) {
  h->ids = malloc(sizeof(int) * (size_t)n_ids_cap);
  h->lp = malloc(sizeof(float) * ((size_t)max_tokens + 1));
  return h->ids && h->lp;
}

static int raw_reserve(hyp *h, size_t extra) {
  if (h->raw_len + extra + 1 <= h->raw_cap) return 0;
  size_t nc = h->raw_cap * 2 + extra + 64;
  char *nr = realloc(h->raw, nc);
  if (!nr) return -1;
  h->raw = nr;
  h->raw_cap = nc;
  return 0;
}

int gen_row_positions(const pf_model *m, const pf_batch_item *it, const pf_sample_params *p, int n_ids, int *need,
                      pf_err *err) {
  int maxP = gen_item_prefix_len(it), n_ctx = m->hp.n_ctx;
  long n = (long)maxP + n_ids + p->max_tokens;
  *need = 0;
  if (n_ids == 0) return pf_seterr(err, PF_ERR, "the prompt is empty and the model adds no BOS token");
  if (n > n_ctx) {
    if (maxP > 0)
      return pf_seterr(err, PF_TOOBIG, "prefix (%d positions) + prompt (%d tokens) + max_tokens (%d) = %ld exceeds the model's context of %d",
                       maxP, n_ids, p->max_tokens, n, n_ctx);
    return pf_seterr(err, PF_TOOBIG, "prompt (%d tokens) + max_tokens (%d) = %ld exceeds the model's context of %d",
                     n_ids, p->max_tokens, n, n_ctx);
  }
  *need = (int)n;
  return PF_OK;
}

/* The row's B x K caches of need positions each, and the item's prefix (or its members') in the first group. */
static int row_caches(const pf_model *m, row *r, const pf_batch_item *it, int need, pf_err *err) {
  int rc;
  if (!(r->groups = calloc((size_t)r->B * r->K, sizeof *r->groups))) return pf_seterr(err, PF_NOMEM, "out of memory starting generation");
  for (int b = 0; b < r->B; b++) r->h[b].seq = r->groups + (size_t)b * r->K;
  for (int i = 0; i < r->B * r->K; i++)
    if (!(r->groups[i] = pf_seq_new(m, need, err))) return err ? err->code : PF_NOMEM;
  for (int k = 0; k < r->K; k++) {
    const float *kv = it->n_members > 0 ? it->member_kv[k] : it->prefix;
    int P = it->n_members > 0 ? it->member_len[k] : it->prefix_len;
    if (P > 0 && (rc = pf_seq_set_prefix(r->h[0].seq[k], kv, P, err))) return rc;
  }
  return PF_OK;
}

/* Set up row r for item it and its prompt's tokens ids (taken). Returns PF_OK or an error (the row is then
** freed by the caller). */
static int row_init(const pf_model *m, const pf_sample_params *p, row *r, pf_batch_item *it, int *ids, int n_ids,
                    pf_err *err) {
  const pf_hparams *hp = &m->hp;
  r->it = it;
  r->p = p;
  r->last_tok = -1;
  r->K = it->n_members > 0 ? it->n_members : 1;
  r->B = p->beam_size > 1 ? p->beam_size : 1;
  int need, rc;
  if ((rc = gen_row_positions(m, it, p, n_ids, &need, err))) { free(ids); return rc; }
  r->n_prompt = n_ids;
  it->res.n_prompt = n_ids;
  it->res.finish = PF_FINISH_LENGTH;
  r->h = calloc((size_t)r->B, sizeof *r->h);
  r->h2 = r->B > 1 ? calloc((size_t)r->B, sizeof *r->h2) : NULL;
  r->fin = r->B > 1 ? calloc((size_t)r->B + 1, sizeof *r->fin) : NULL;
  if (!r->h || (r->B > 1 && (!r->h2 || !r->fin))) { free(ids); return pf_seterr(err, PF_NOMEM, "out of memory starting generation"); }
  int ok = 1;
  for (int b = 0; b < r->B && ok; b++)
    ok = hyp_alloc(&r->h[b], n_ids + p->max_tokens + 1, p->max_tokens) && (r->B == 1 || hyp_alloc(&r->h2[b], n_ids + p->max_tokens + 1, p->max_tokens));
  if (!ok) { free(ids); return pf_seterr(err, PF_NOMEM, "out of memory starting generation"); }
  memcpy(r->h[0].ids, ids, sizeof(int) * (size_t)n_ids);
  r->h[0].n_ids = n_ids;
  free(ids);
  if ((rc = row_caches(m, r, it, need, err))) return rc;
  if (r->B == 1 && !(r->smp = pf_sampler_new(p, hp->n_vocab))) return pf_seterr(err, PF_NOMEM, "out of memory starting generation");
  if (r->B > 1) {
    r->cand_s = malloc(sizeof(double) * 2 * (size_t)r->B);
    r->cand_h = malloc(sizeof(int) * 2 * (size_t)r->B);
    r->cand_t = malloc(sizeof(int) * 2 * (size_t)r->B);
    if (!r->cand_s || !r->cand_h || !r->cand_t) return pf_seterr(err, PF_NOMEM, "out of memory starting generation");
  }
  r->n_live = 1;
  r->done = p->max_tokens == 0;
  return PF_OK;
}

void gen_free(gen *g) {
  if (!g) return;
  free(g->rows);
  pf_work_free(g->w);
  free(g->seqs); free(g->ntok); free(g->toks); free(g->sq_row); free(g->sq_chunk);
  free(g->logits); free(g->comb); free(g->tmp); free(g->sq_out);
  free(g);
}

gen *gen_new(const pf_model *m) {
  gen *g = calloc(1, sizeof *g);
  if (!g) return NULL;
  g->m = m;
  g->w = pf_work_new();
  g->tmp = malloc(sizeof(float) * (size_t)m->hp.n_vocab);
  g->comb = malloc(sizeof(float) * (size_t)m->hp.n_vocab);
  if (!g->w || !g->tmp || !g->comb) { gen_free(g); return NULL; }
  return g;
}

int gen_item_prefix_len(const pf_batch_item *it) {
  int maxP = it->n_members > 0 ? 0 : it->prefix_len;
  for (int k = 0; k < it->n_members; k++) if (it->member_len[k] > maxP) maxP = it->member_len[k];
  return maxP;
}

int gen_row_new(const pf_model *m, const pf_sample_params *p, pf_batch_item *it, int *ids, int n_ids, int want_lp,
                row **out, pf_err *err) {
  *out = NULL;
  row *r = calloc(1, sizeof *r);
  if (!r) { free(ids); return pf_seterr(err, PF_NOMEM, "out of memory starting generation"); }
  memset(&it->res, 0, sizeof it->res);
  int rc = row_init(m, p, r, it, ids, n_ids, err);
  if (rc) { row_free(r); free(r); return rc; }
  r->want_lp = want_lp;
  if (want_lp && r->B == 1 && !(r->rec = calloc((size_t)p->max_tokens + 1, sizeof *r->rec))) {
    gen_row_free(r);
    return pf_seterr(err, PF_NOMEM, "out of memory starting generation");
  }
  *out = r;
  return PF_OK;
}

/* a scoring row's parameters: nothing is sampled */
static const pf_sample_params score_params;

int gen_score_row_new(const pf_model *m, pf_batch_item *it, const int *tok, int n, int n_score, double *lp, row **out,
                      pf_err *err) {
  *out = NULL;
  if (n < 2 || n_score < 1 || n_score > n - 1) return pf_seterr(err, PF_ERR, "nothing to score (%d tokens, %d scored)", n, n_score);
  row *r = calloc(1, sizeof *r);
  if (!r) return pf_seterr(err, PF_NOMEM, "out of memory starting scoring");
  memset(&it->res, 0, sizeof it->res);
  r->it = it;
  r->p = &score_params;
  r->last_tok = -1;
  r->K = it->n_members > 0 ? it->n_members : 1;
  r->B = 1;
  r->n_prompt = n - 1;
  r->n_score = n_score;
  r->score_lp = lp;
  int rc = PF_OK;
  if (!(r->h = calloc(1, sizeof *r->h)) || !hyp_alloc(&r->h[0], n, 0)) rc = pf_seterr(err, PF_NOMEM, "out of memory starting scoring");
  if (!rc) {
    memcpy(r->h[0].ids, tok, sizeof(int) * (size_t)n);
    r->h[0].n_ids = n;
    rc = row_caches(m, r, it, gen_item_prefix_len(it) + n - 1, err);
  }
  if (rc) { gen_row_free(r); return rc; }
  r->n_live = 1;
  *out = r;
  return PF_OK;
}

void gen_row_free(row *r) {
  if (!r) return;
  row_free(r);
  free(r);
}

int gen_add(gen *g, row *r) {
  if (g->n == g->cap) {
    int nc = g->cap ? 2 * g->cap : 16;
    row **nr = realloc(g->rows, sizeof *nr * (size_t)nc);
    if (!nr) return PF_NOMEM;
    g->rows = nr;
    g->cap = nc;
  }
  g->rows[g->n++] = r;
  return PF_OK;
}

void gen_remove(gen *g, row *r) {
  for (int i = 0; i < g->n; i++)
    if (g->rows[i] == r) { memmove(g->rows + i, g->rows + i + 1, sizeof *g->rows * (size_t)(g->n - i - 1)); g->n--; return; }
}

int gen_count(const gen *g) { return g->n; }
row *gen_row_at(const gen *g, int i) { return g->rows[i]; }

/* room for a pass of n sequences, t tokens and l logits rows */
static int pass_reserve(gen *g, size_t n, size_t t, size_t l) {
  size_t V = (size_t)g->m->hp.n_vocab;
  if (n > g->seq_cap) {
    size_t nc = n + n / 2 + 8;
    pf_seq **s = realloc(g->seqs, sizeof *s * nc);
    if (s) g->seqs = s;
    int *a = realloc(g->ntok, sizeof(int) * nc);
    if (a) g->ntok = a;
    int *b = realloc(g->sq_row, sizeof(int) * nc);
    if (b) g->sq_row = b;
    int *c = realloc(g->sq_chunk, sizeof(int) * nc);
    if (c) g->sq_chunk = c;
    int *d = realloc(g->sq_out, sizeof(int) * nc);
    if (d) g->sq_out = d;
    if (!s || !a || !b || !c || !d) return PF_NOMEM;
    g->seq_cap = nc;
  }
  if (l > g->lg_cap) {
    size_t nc = l + l / 2 + 8;
    float *lg = realloc(g->logits, sizeof(float) * nc * V);
    if (!lg) return PF_NOMEM;
    g->logits = lg;
    g->lg_cap = nc;
  }
  if (t > g->tok_cap) {
    size_t nc = t + t / 2 + 64;
    int *k = realloc(g->toks, sizeof(int) * nc);
    if (!k) return PF_NOMEM;
    g->toks = k;
    g->tok_cap = nc;
  }
  return PF_OK;
}

/* Prefill runs pf_prefill_chunk prompt tokens of a sequence per pass (as llama.cpp's micro-batches: a pass's
** activations stay bounded however long the prompts, and an interrupt is seen between passes), and at most
** pf_step_tokens prompt tokens in all per pass (chunked prefill: rows that arrive do not stall the rows
** decoding; at least one chunk always goes). */
int pf_prefill_chunk = 512;   /* prompt tokens of one sequence per pass (tests change it) */
int pf_step_tokens = 2048;    /* prompt tokens of all rows per pass */


/* The most logits rows a scoring row's chunk gives: each costs V floats, so a large vocabulary scores fewer
** positions per pass (about 64 MB of logits per member at most). */
static int score_cap(const gen *g) {
  int c = (int)((16u << 20) / (unsigned)g->m->hp.n_vocab);
  c = c < 16 ? 16 : c;
  return c < pf_prefill_chunk ? c : pf_prefill_chunk;
}

/* the prompt tokens a row's next chunk takes: pf_prefill_chunk, and for a scoring row at most score_cap
** positions scored (the positions before its first scored one give no logits) */
static int chunk_len(const gen *g, const row *r) {
  int left = r->n_prompt - r->n_pre, lim = pf_prefill_chunk;
  if (r->n_score) {
    int from = r->n_prompt - r->n_score, unscored = from > r->n_pre ? from - r->n_pre : 0;
    if (unscored + score_cap(g) < lim) lim = unscored + score_cap(g);
  }
  return left < lim ? left : lim;
}

/* the logits rows a scoring row's chunk of c tokens from position n_pre gives: the positions scored in it */
static int score_rows(const row *r, int c) {
  int from = r->n_prompt - r->n_score, a = r->n_pre > from ? r->n_pre : from;
  return r->n_pre + c > a ? r->n_pre + c - a : 0;
}

/* One forward pass: a prompt chunk of every row still prefilling (all its members, into the first
** hypothesis' caches; within the token budget) and the last token of every live hypothesis of every row
** decoding. Sequence j gives g->sq_out[j] logits rows (1, or a scoring row's positions in its chunk), in pass
** order from g->logits; g->sq_row[j] is its row and g->sq_chunk[j] the prompt tokens it took (0: a decode).
** *n_out: the sequences. */
static int gen_pass(gen *g, int *n_out, pf_err *err) {
  size_t nseq = 0, ntok = 0, nlg = 0, budget = (size_t)pf_step_tokens;
  for (int i = 0; i < g->n; i++) {
    row *r = g->rows[i];
    if (!r->go) continue;
    int pre = r->n_pre < r->n_prompt;
    nseq += (size_t)(pre ? 1 : r->n_live) * r->K;
    ntok += (size_t)(pre ? r->n_prompt - r->n_pre : r->n_live) * r->K;
    nlg += (size_t)(r->n_score ? score_cap(g) : pre ? 1 : r->n_live) * r->K;
  }
  *n_out = 0;
  if (pass_reserve(g, nseq, ntok, nlg)) return pf_seterr(err, PF_NOMEM, "out of memory for a pass of %zu sequences", nseq);
  int n = 0, any_prefill = 0;
  size_t o = 0, used = 0;
  for (int i = 0; i < g->n; i++) {
    row *r = g->rows[i];
    if (!r->go) continue;
    if (r->n_pre < r->n_prompt) {
      int c = chunk_len(g, r);
      if (any_prefill && used + (size_t)c * r->K > budget) continue;   /* the next pass */
      any_prefill = 1;
      used += (size_t)c * r->K;
      for (int k = 0; k < r->K; k++) {
        g->seqs[n] = r->h[0].seq[k];
        g->ntok[n] = c;
        g->sq_row[n] = i;
        g->sq_out[n] = r->n_score ? score_rows(r, c) : 1;
        g->sq_chunk[n++] = c;
        memcpy(g->toks + o, r->h[0].ids + r->n_pre, sizeof(int) * (size_t)c);
        o += (size_t)c;
      }
      continue;
    }
    for (int b = 0; b < r->n_live; b++)
      for (int k = 0; k < r->K; k++) {
        g->seqs[n] = r->h[b].seq[k];
        g->ntok[n] = 1;
        g->sq_row[n] = i;
        g->sq_out[n] = 1;
        g->sq_chunk[n++] = 0;
        g->toks[o++] = r->h[b].ids[r->h[b].n_ids - 1];
      }
  }
  *n_out = n;
  return n ? pf_forward_rows(g->m, g->w, g->seqs, g->ntok, n, g->toks, g->sq_out, g->logits, err) : PF_OK;
}

static double logsumexp(const float *x, int n) {
  float mx = x[0];
  for (int i = 1; i < n; i++) if (x[i] > mx) mx = x[i];
  if (mx == -INFINITY) return -INFINITY;
  double s = 0;
  for (int i = 0; i < n; i++) s += exp((double)x[i] - mx);
  return mx + log(s);
}

/* The next-token scores of one hypothesis from its members' logits lg (K rows): one member's logits as they
** are (*lse their log-normaliser), or for an ensemble log(mean of the members' probabilities) (*lse = 0).
** K <= 64: check_members bounds it. */
static const float *combine(const float *lg, int K, int V, float *out, double *lse) {
  if (K == 1) { *lse = logsumexp(lg, V); return lg; }
  double lk[64];
  for (int k = 0; k < K; k++) lk[k] = logsumexp(lg + (size_t)k * V, V);
  double logK = log((double)K);
  for (int i = 0; i < V; i++) {
    double mx = -INFINITY;
    for (int k = 0; k < K; k++) { double v = lg[(size_t)k * V + i] - lk[k]; if (v > mx) mx = v; }
    double s = 0;
    for (int k = 0; k < K; k++) s += exp(lg[(size_t)k * V + i] - lk[k] - mx);
    out[i] = (float)(mx + log(s) - logK);
  }
  int bad = 0;
  for (int k = 0; k < K; k++) bad |= isnan(lk[k]);
  *lse = bad ? NAN : 0;
  return out;
}

/* no_repeat_ngram_size: forbid the tokens that would repeat an n-gram of the continuation gen[0..L) */
static void ban_ngrams(const int *gen, int L, int n, float *lg) {
  if (n <= 0 || L < n) return;
  if (n == 1) { for (int i = 0; i < L; i++) lg[gen[i]] = -INFINITY; return; }
  const int *tail = gen + L - (n - 1);
  for (int s = 0; s + n <= L; s++)
    if (!memcmp(gen + s, tail, sizeof(int) * (size_t)(n - 1))) lg[gen[s + n - 1]] = -INFINITY;
}

/* Append token bytes to h and look for a stop string. Returns 1 if one ended the text (cut before it), 0 if
** not, -1 when out of memory. */
static int hyp_append(const pf_model *m, const pf_sample_params *p, hyp *h, int tok) {
  char piece[256];
  int k = gen_tok_piece(m, tok, piece, sizeof piece);
  if (raw_reserve(h, (size_t)k)) return -1;
  memcpy(h->raw + h->raw_len, piece, (size_t)k);
  size_t old = h->raw_len;
  h->raw_len += (size_t)k;
  long at = find_stop(p, h->raw, h->raw_len, old);
  if (at >= 0) { h->raw_len = (size_t)at; return 1; }
  return 0;
}

char *gen_piece(const pf_sample_params *p, const char *raw, size_t len, int final, size_t *emitted, size_t *out_len) {
  size_t upto = len;
  if (!final) {
    upto = *emitted + pf_utf8_complete(raw + *emitted, len - *emitted);
    for (int i = 0; i < p->n_stop; i++) {   /* a tail that may become a stop string waits */
      size_t sl = strlen(p->stop[i]);
      for (size_t k = sl > 1 ? sl - 1 : 0; k > 0; k--)
        if (k <= len && len - k >= *emitted && !memcmp(raw + len - k, p->stop[i], k)) {
          if (len - k < upto) upto = len - k;
          break;
        }
    }
  }
  if (upto < *emitted) upto = *emitted;
  char *piece = pf_utf8_clean(raw + *emitted, upto - *emitted, 1, out_len);
  if (piece) *emitted = upto;
  return piece;
}

/* a stream's record of the token the step made (the row's state after it) */
static int add_rec(row *r, int tok) {
  stream_rec *x = &r->rec[r->n_rec];
  hyp *h = &r->h[0];
  x->piece = gen_piece(r->p, h->raw ? h->raw : "", h->raw_len, r->done, &r->emitted, &x->piece_len);
  if (!x->piece) return PF_NOMEM;
  x->id = tok;
  x->lp = r->last_lp;
  x->final = r->done;
  x->n_tokens = r->it->res.n_tokens;
  x->finish = r->it->res.finish;
  r->n_rec++;
  return PF_OK;
}

/* One step of a sampling row: pick a token for its single hypothesis. */
static int step_sample(gen *g, row *r, float *lg, pf_err *err) {
  const pf_model *m = g->m;
  const pf_sample_params *p = r->p;
  int V = m->hp.n_vocab;
  hyp *h = &r->h[0];
  double lse = 0;
  float *sc = lg;
  if (r->K > 1) {
    sc = (float *)combine(lg, r->K, V, g->comb, &lse);
    if (isnan(lse)) return pf_seterr(err, PF_ERR, "the model gave non-finite logits at token %d (its weights hold NaN or overflow?)", r->it->res.n_tokens + 1);
  } else if (r->want_lp) {   /* a whole pass over the vocabulary per token: only when asked for */
    lse = logsumexp(lg, V);
    if (isnan(lse)) return pf_seterr(err, PF_ERR, "the model gave non-finite logits at token %d (its weights hold NaN or overflow?)", r->it->res.n_tokens + 1);
  } else {   /* NaN or +inf (NaN weights, overflow) would pick token 0 or a wrong one silently */
    for (int i = 0; i < V; i++)
      if (!(lg[i] < INFINITY))
        return pf_seterr(err, PF_ERR, "the model gave non-finite logits at token %d (its weights hold NaN or overflow?)", r->it->res.n_tokens + 1);
  }
  if (r->want_lp || r->K > 1) memcpy(g->tmp, sc, sizeof(float) * (size_t)V);   /* the scores before masks and penalties */
  if (p->ignore_eos)
    for (int e = 0; e < m->vocab.n_eog; e++) sc[m->vocab.eog[e]] = -INFINITY;
  ban_ngrams(h->ids + r->n_prompt, h->n_ids - r->n_prompt, p->no_repeat_ngram_size, sc);
  int tok = pf_sampler_sample(r->smp, sc, h->ids, h->n_ids);
  r->last_tok = tok;
  r->last_lp = r->want_lp || r->K > 1 ? g->tmp[tok] - lse : 0;
  if (pf_vocab_is_eog(&m->vocab, tok)) {
    r->it->res.finish = PF_FINISH_EOS;
    r->done = 1;
    return r->rec && add_rec(r, tok) ? pf_seterr(err, PF_NOMEM, "out of memory during generation") : PF_OK;
  }
  h->ids[h->n_ids++] = tok;
  h->lp[r->it->res.n_tokens] = (float)r->last_lp;
  r->it->res.n_tokens++;
  int s = hyp_append(m, p, h, tok);
  if (s < 0) return pf_seterr(err, PF_NOMEM, "out of memory during generation");
  if (s) r->it->res.finish = PF_FINISH_STOP;
  if (s || r->it->res.n_tokens == p->max_tokens) r->done = 1;
  if (r->rec && add_rec(r, tok)) return pf_seterr(err, PF_NOMEM, "out of memory during generation");
  return PF_OK;
}

/* Record an ended beam (keeping the B best). src: the hypothesis before tok; tok appended unless it is EOS. */
static int add_ended(gen *g, row *r, const hyp *src, int tok, double lp, double score, int finish, int n_gen,
                     size_t raw_len, const char *raw) {
  (void)g;
  double norm = score / pow((double)n_gen, (double)r->p->length_penalty);
  if (r->n_fin == r->B) {   /* full: replace the worst if this is better */
    int worst = 0;
    for (int i = 1; i < r->n_fin; i++) if (r->fin[i].norm < r->fin[worst].norm) worst = i;
    if (norm <= r->fin[worst].norm) return PF_OK;
    ended_free(&r->fin[worst]);
    r->fin[worst] = r->fin[--r->n_fin];
  }
  ended *e = &r->fin[r->n_fin];
  int ng = src->n_ids - r->n_prompt;
  e->gen = malloc(sizeof(int) * ((size_t)ng + 1));
  e->lp = malloc(sizeof(float) * ((size_t)ng + 1));
  e->raw = malloc(raw_len + 1);
  if (!e->gen || !e->lp || !e->raw) { ended_free(e); return PF_NOMEM; }
  memcpy(e->gen, src->ids + r->n_prompt, sizeof(int) * (size_t)ng);
  memcpy(e->lp, src->lp, sizeof(float) * (size_t)ng);
  e->n = ng;
  e->n_eos = 0;
  if (tok >= 0) { e->gen[ng] = tok; e->lp[ng] = (float)lp; if (finish == PF_FINISH_EOS) e->n_eos = 1; else e->n = ng + 1; }
  memcpy(e->raw, raw, raw_len);
  e->raw_len = raw_len;
  e->norm = norm;
  e->finish = finish;
  r->n_fin++;
  return PF_OK;
}

static double worst_ended(const row *r) {
  double w = INFINITY;
  for (int i = 0; i < r->n_fin; i++) if (r->fin[i].norm < w) w = r->fin[i].norm;
  return w;
}

/* One step of beam search for a row: lg holds (n_live, K, V) logits. */
/* The children a beam step keeps: each one's parent hypothesis, token, summed and own log-probability, and
** whether appending the token hit a stop string. */
typedef struct beam_next {
  int nb;
  int parent[PF_BEAM_MAX], tok[PF_BEAM_MAX], stop[PF_BEAM_MAX];
  double score[PF_BEAM_MAX], lp[PF_BEAM_MAX];
} beam_next;

/* The 2B best (hypothesis, token) extensions by summed log-probability, best first, in r->cand_*; their count. */
static int beam_candidates(gen *g, row *r, const float *lg, int *nc_out, pf_err *err) {
  const pf_model *m = g->m;
  const pf_sample_params *p = r->p;
  int V = m->hp.n_vocab, C = 2 * r->B, nc = 0;
  double *cs = r->cand_s;
  int *ch = r->cand_h, *ct = r->cand_t;
  for (int b = 0; b < r->n_live; b++) {
    hyp *h = &r->h[b];
    double lse;
    const float *sc0 = combine(lg + (size_t)b * r->K * V, r->K, V, g->comb, &lse);
    if (isnan(lse)) return pf_seterr(err, PF_ERR, "the model gave non-finite logits at token %d (its weights hold NaN or overflow?)", h->n_ids - r->n_prompt + 1);
    float *sc = g->tmp;
    for (int i = 0; i < V; i++) sc[i] = (float)(sc0[i] - lse);
    if (p->ignore_eos)
      for (int e = 0; e < m->vocab.n_eog; e++) sc[m->vocab.eog[e]] = -INFINITY;
    ban_ngrams(h->ids + r->n_prompt, h->n_ids - r->n_prompt, p->no_repeat_ngram_size, sc);
    for (int i = 0; i < V; i++) {
      if (sc[i] == -INFINITY) continue;
      double s = h->score + sc[i];
      if (nc == C && s <= cs[nc - 1]) continue;
      int j = nc < C ? nc++ : C - 1;   /* insertion into the sorted list */
      while (j > 0 && cs[j - 1] < s) { cs[j] = cs[j - 1]; ch[j] = ch[j - 1]; ct[j] = ct[j - 1]; j--; }
      cs[j] = s; ch[j] = b; ct[j] = i;
    }
  }
  *nc_out = nc;
  return PF_OK;
}

/* Children of the hypotheses, as in Hugging Face's beam search: an EOS among the first B candidates ends a
** beam; the others continue until there are B. Returns 0, or -1 out of memory. */
static int beam_choose(gen *g, row *r, int nc, beam_next *nx) {
  const double *cs = r->cand_s;
  const int *ch = r->cand_h, *ct = r->cand_t;
  nx->nb = 0;
  for (int c = 0; c < nc && nx->nb < r->B; c++) {
    hyp *h = &r->h[ch[c]];
    int tok = ct[c], ng = h->n_ids - r->n_prompt;
    double lp = cs[c] - h->score;
    if (pf_vocab_is_eog(&g->m->vocab, tok)) {
      if (c >= r->B) continue;
      if (add_ended(g, r, h, tok, lp, cs[c], PF_FINISH_EOS, ng + 1, h->raw_len, h->raw ? h->raw : "")) return -1;
      continue;
    }
    int j = nx->nb++;
    nx->parent[j] = ch[c];
    nx->tok[j] = tok;
    nx->score[j] = cs[c];
    nx->lp[j] = lp;
    nx->stop[j] = 0;
  }
  return 0;
}

/* The next hypotheses (into r->h, swapped with r->h2): the first child of a parent takes its caches; another
** child takes a free group and a copy of its parent's caches. */
static int beam_advance(gen *g, row *r, beam_next *nx, pf_err *err) {
  const pf_model *m = g->m;
  int nb = nx->nb, used[PF_BEAM_MAX] = {0}, firstchild[PF_BEAM_MAX];
  pf_seq **grp[PF_BEAM_MAX], **free_g[PF_BEAM_MAX];
  for (int b = 0; b < r->n_live; b++) firstchild[b] = -1;
  for (int j = 0; j < nb; j++) if (firstchild[nx->parent[j]] < 0) firstchild[nx->parent[j]] = j;
  for (int j = 0; j < nb; j++) grp[j] = NULL;
  for (int b = 0; b < r->n_live; b++) if (firstchild[b] >= 0) { grp[firstchild[b]] = r->h[b].seq; used[b] = 1; }
  int nfree = 0;   /* groups not held by a parent with children are free */
  for (int q = 0; q < r->B; q++) {
    pf_seq **gq = r->groups + (size_t)q * r->K;
    int held = 0;
    for (int b = 0; b < r->n_live; b++) if (used[b] && r->h[b].seq == gq) held = 1;
    if (!held) free_g[nfree++] = gq;
  }
  for (int j = 0, fi = 0; j < nb; j++) {
    hyp *src = &r->h[nx->parent[j]], *dst = &r->h2[j];
    if (!grp[j]) {
      grp[j] = free_g[fi++];
      for (int k = 0; k < r->K; k++)
        if (pf_seq_copy(grp[j][k], src->seq[k])) return pf_seterr(err, PF_ERR, "internal: beam cache copy");
    }
    dst->seq = grp[j];
    memcpy(dst->ids, src->ids, sizeof(int) * (size_t)src->n_ids);
    dst->n_ids = src->n_ids;
    int ng = src->n_ids - r->n_prompt;
    memcpy(dst->lp, src->lp, sizeof(float) * (size_t)ng);
    dst->raw_len = 0;
    if (raw_reserve(dst, src->raw_len)) return pf_seterr(err, PF_NOMEM, "out of memory during beam search");
    if (src->raw_len) memcpy(dst->raw, src->raw, src->raw_len);
    dst->raw_len = src->raw_len;
    dst->ids[dst->n_ids++] = nx->tok[j];
    dst->lp[ng] = (float)nx->lp[j];
    dst->score = nx->score[j];
    int s = hyp_append(m, r->p, dst, nx->tok[j]);
    if (s < 0) return pf_seterr(err, PF_NOMEM, "out of memory during beam search");
    nx->stop[j] = s;
  }
  hyp *t = r->h;
  r->h = r->h2;
  r->h2 = t;
  return PF_OK;
}

/* Beams that hit a stop string or max_tokens end now; the others stay live, first. Returns 0, or -1 out of
** memory. */
static int beam_retire(gen *g, row *r, const beam_next *nx) {
  int nl = 0;
  for (int j = 0; j < nx->nb; j++) {
    hyp *h = &r->h[j];
    int ng = h->n_ids - r->n_prompt;
    if (nx->stop[j] || ng >= r->p->max_tokens) {
      /* h already holds the token: record it without appending again */
      int fin = nx->stop[j] ? PF_FINISH_STOP : PF_FINISH_LENGTH;
      h->n_ids--;
      int rc = add_ended(g, r, h, nx->tok[j], nx->lp[j], h->score, fin, ng, h->raw_len, h->raw ? h->raw : "");
      h->n_ids++;
      if (rc) return -1;
      continue;
    }
    if (nl != j) { hyp tmp = r->h[nl]; r->h[nl] = r->h[j]; r->h[j] = tmp; }
    nl++;
  }
  r->n_live = nl;
  return 0;
}

static int step_beam(gen *g, row *r, const float *lg, pf_err *err) {
  beam_next nx;
  int nc = 0, rc;
  if ((rc = beam_candidates(g, r, lg, &nc, err))) return rc;
  if (beam_choose(g, r, nc, &nx)) return pf_seterr(err, PF_NOMEM, "out of memory during beam search");
  if ((rc = beam_advance(g, r, &nx, err))) return rc;
  if (beam_retire(g, r, &nx)) return pf_seterr(err, PF_NOMEM, "out of memory during beam search");
  /* done: no live beam, or B ended and the best live one cannot beat the worst of them */
  int nl = r->n_live;
  if (nl == 0) r->done = 1;
  else if (r->n_fin == r->B) {
    double best_live = -INFINITY;
    for (int b = 0; b < nl; b++) if (r->h[b].score > best_live) best_live = r->h[b].score;
    int cur = r->h[0].n_ids - r->n_prompt;
    if (worst_ended(r) >= best_live / pow((double)cur, (double)r->p->length_penalty)) r->done = 1;
  }
  if (r->done && r->n_fin == 0) return pf_seterr(err, PF_ERR, "beam search ended with no beam (every token was forbidden)");
  return PF_OK;
}

/* the result of an ended beam search */
const ended *gen_best_ended(const row *r) {
  const ended *b = NULL;
  for (int i = 0; i < r->n_fin; i++) if (!b || r->fin[i].norm > b->norm) b = &r->fin[i];
  return b;
}

/* a row's error: kept in the row (the other rows go on) */
static void row_fail(row *r, int rc, const pf_err *e) {
  r->rc = rc ? rc : PF_ERR;
  free(r->emsg);
  r->emsg = strdup(e && e->msg[0] ? e->msg : "generation failed");
  r->done = 1;
}

/* A scoring row's chunk of c tokens is in: lg holds each member's w logits rows (the positions scored in it). */
static int score_step(gen *g, row *r, int c, const float *lg, int w, pf_err *err) {
  int V = g->m->hp.n_vocab, p0 = r->n_pre + c - w, i0 = p0 - (r->n_prompt - r->n_score);
  for (int k = 0; k < r->K; k++)
    for (int t = 0; t < w; t++) {
      const float *x = lg + ((size_t)k * w + t) * V;
      double lse = logsumexp(x, V), v = x[r->h[0].ids[p0 + t + 1]] - lse;
      if (!isfinite(v)) return pf_seterr(err, PF_ERR, "scoring gave a non-finite log-likelihood at token %d (the model's weights overflow?)", i0 + t + 1);
      r->score_lp[(size_t)k * r->n_score + i0 + t] = v;
    }
  r->n_pre += c;
  r->done = r->n_pre == r->n_prompt;
  return PF_OK;
}

int gen_step(gen *g, int *n_tokens, pf_err *err) {
  int n, rc = gen_pass(g, &n, err);
  *n_tokens = 0;
  if (rc) {   /* the pass failed (out of memory): every row in it fails */
    for (int j = 0; j < n; j++) row_fail(g->rows[g->sq_row[j]], rc, err);
    return rc;
  }
  size_t V = (size_t)g->m->hp.n_vocab, lo = 0;   /* lo: the logits row of sequence j */
  for (int j = 0; j < n;) {   /* the sequences of a row are consecutive */
    row *r = g->rows[g->sq_row[j]];
    int c = g->sq_chunk[j], first = j;
    float *lg = g->logits + lo * V;
    r->last_tok = -1;
    j += c ? r->K : r->n_live * r->K;
    for (int x = first; x < j; x++) lo += (size_t)g->sq_out[x];
    pf_err e = {0};
    if (r->n_score) {
      if ((rc = score_step(g, r, c, lg, g->sq_out[first], &e))) row_fail(r, rc, &e);
      continue;
    }
    if (c) {
      r->n_pre += c;
      if (r->n_pre < r->n_prompt) continue;   /* more of the prompt to come */
    }
    if (r->done) continue;   /* max_tokens 0: the prompt is in, nothing to generate */
    rc = r->B > 1 ? step_beam(g, r, lg, &e) : step_sample(g, r, lg, &e);
    if (rc) row_fail(r, rc, &e);
    else *n_tokens += r->last_tok >= 0 || r->B > 1;
  }
  return PF_OK;
}

/* the row's text into its result */
int gen_row_result(row *r, pf_err *err) {
  pf_gen_result *res = &r->it->res;
  const char *raw = r->h[0].raw;
  size_t len = r->h[0].raw_len;
  if (r->B > 1) {
    const ended *e = gen_best_ended(r);
    if (e) { raw = e->raw; len = e->raw_len; res->n_tokens = e->n; res->finish = e->finish; }
  }
  res->text = pf_utf8_clean(raw ? raw : "", len, 1, &res->len);
  return res->text ? PF_OK : pf_seterr(err, PF_NOMEM, "out of memory during generation");
}

int gen_check_params(const pf_model *m, const pf_sample_params *p, pf_err *err) {
  if (!m->has_weights) return pf_seterr(err, PF_ERR, "the model has no weights (vocab-only GGUF): it can tokenize but not generate");
  if (p->max_tokens < 0) return pf_seterr(err, PF_ERR, "max_tokens must be >= 0, got %d", p->max_tokens);
  if (p->beam_size < 1 || p->beam_size > PF_BEAM_MAX)
    return pf_seterr(err, PF_ERR, "beam_size must be 1..%d, got %d", PF_BEAM_MAX, p->beam_size);
  if (p->beam_size > 1 && (p->temperature > 0 || p->top_k > 0 || p->top_p < 1 || p->min_p > 0 || p->repeat_penalty != 1))
    return pf_seterr(err, PF_ERR, "beam search (beam_size %d) is deterministic: temperature, top_k, top_p, min_p and "
                     "repeat_penalty apply to beam_size 1 (use no_repeat_ngram_size against repetition)", p->beam_size);
  return PF_OK;
}

int gen_check_members(const pf_batch_item *it, pf_err *err) {
  if (it->n_members > PF_ENSEMBLE_MAX)
    return pf_seterr(err, PF_TOOBIG, "an ensemble of %d members exceeds the limit of %d", it->n_members, PF_ENSEMBLE_MAX);
  return PF_OK;
}

