/*
** gpt2.c — GPT-2 architecture (general.architecture = gpt2).
** Not implemented yet: loading its weights reports so clearly (issue #4).
*/
#include "internal.h"

int pf_gpt2_load(pf_model *m, pf_err *err) {
  (void)m;
  return pf_seterr(err, PF_ERR, "architecture 'gpt2' weights are not supported yet (vocab-only gpt2 files load)");
}

int pf_gpt2_forward(const pf_model *m, pf_work *w, pf_seq **seqs, const int *n_tok, int n_seq, const int *tokens,
                    float *logits, int all_logits, pf_err *err) {
  (void)m; (void)w; (void)seqs; (void)n_tok; (void)n_seq; (void)tokens; (void)logits; (void)all_logits;
  return pf_seterr(err, PF_ERR, "architecture 'gpt2' is not supported yet");
}
