/*
** metrics.h — BLEU, chrF and ROUGE-L for evaluating generated text (metrics.c). Part of the engine's
** public API; no SQLite here. Scores are 0..100.
*/
#ifndef PF_METRICS_H
#define PF_METRICS_H
#include <stddef.h>

#include "prefix_engine.h"   /* pf_cancel_fn, pf_err */

/* mteval-v13a tokenization: tokens separated by one space (malloc'ed, NUL-terminated). */
int pf_tok13a(const char *s, size_t n, char **out, size_t *out_len);

/* The adding functions are linear in the texts' length (n-grams counted through hash tables); ROUGE-L's
** longest common subsequence takes the product of the lengths, up to PF_ROUGE_MAX_CELLS word comparisons
** per reference (PF_TOOBIG beyond). cancel (may be NULL) is called now and then: non-zero stops with
** PF_INTERRUPT, the statistics unchanged. PF_NOMEM when an allocation fails. */
#define PF_ROUGE_MAX_CELLS 1e9

/* Corpus BLEU-4: add rows (a hypothesis and its references), then score. */
typedef struct pf_bleu_stats { double match[4], total[4], hyp_len, ref_len; long rows; } pf_bleu_stats;
int pf_bleu_add(pf_bleu_stats *st, const char *hyp, size_t hl, const char *const *refs, const size_t *rl, int nref,
                pf_cancel_fn cancel, void *carg);
/* prec (may be NULL): the four n-gram precisions in percent; bp: the brevity penalty */
double pf_bleu_score(const pf_bleu_stats *st, double prec[4], double *bp);

/* Corpus chrF (character 6-grams, beta 2). */
#define PF_CHRF_ORDER 6
typedef struct pf_chrf_stats { double s[PF_CHRF_ORDER][3]; long rows; } pf_chrf_stats;
int pf_chrf_add(pf_chrf_stats *st, const char *hyp, size_t hl, const char *const *refs, const size_t *rl, int nref,
                pf_cancel_fn cancel, void *carg);
double pf_chrf_score(const pf_chrf_stats *st);

/* Sentence ROUGE-L against several references (best precision and best recall, F with beta 1.2). */
int pf_rouge_l(const char *hyp, size_t hl, const char *const *refs, const size_t *rl, int nref, double *score,
               pf_cancel_fn cancel, void *carg, pf_err *err);

#endif
