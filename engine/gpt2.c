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

#include "train.h"
int pf_train_gpt2_step(const pf_model *m, pf_tws *w, const pf_tbatch *b, const pf_prefix_in *pin, float loss_scale,
                       int backward, double *loss_sum, int *n_tgt, pf_cancel_fn cancel, void *carg, pf_err *err) {
  (void)m; (void)w; (void)b; (void)pin; (void)loss_scale; (void)backward; (void)loss_sum; (void)n_tgt; (void)cancel; (void)carg;
  return pf_seterr(err, PF_ERR, "architecture 'gpt2' is not supported yet");
}
