/*
** test_families.c — every model family against an independent
** double-precision reference forward (written here from the families'
** definitions, not from engine/block.c), with and without a prefix, through
** inference (pf_forward, KV cache) and training (pf_train_logits); the shared
** family fixtures (GGUF files written by llama.cpp's own writer with the
** families' real vocabularies) load, generate and train; finite-difference
** checks of the whole model's prefix gradient for each family; and the GGUF
** keys that change the math are honoured or refused.
*/
#include <math.h>
#include <unistd.h>

#include "internal.h"
#include "testlib.h"
#include "train.h"

/* ------------------------------------------------------------ reference */

static double *rowd(const pf_wt *w, int r) {
  float *f = malloc(sizeof(float) * (size_t)w->cols);
  double *d = malloc(sizeof(double) * (size_t)w->cols);
  pf_dequant_any(w->type, w->data + (size_t)r * w->row_bytes, 0, w->cols, f);
  for (int i = 0; i < w->cols; i++) d[i] = f[i];
  free(f);
  return d;
}

/* y (n_out) = W x (+ b) */
static void mv(double *y, const pf_wt *w, const double *x, const float *b) {
  for (int o = 0; o < w->rows; o++) {
    double *r = rowd(w, o), s = b ? b[o] : 0;
    for (int i = 0; i < w->cols; i++) s += r[i] * x[i];
    y[o] = s;
    free(r);
  }
}

static void norm_ref(const pf_hparams *hp, double *y, const double *x, const float *w, const float *b, int C) {
  if (hp->norm == PF_NORM_LAYER) {
    double m = 0, v = 0;
    for (int i = 0; i < C; i++) m += x[i];
    m /= C;
    for (int i = 0; i < C; i++) v += (x[i] - m) * (x[i] - m);
    double r = 1 / sqrt(v / C + hp->norm_eps);
    for (int i = 0; i < C; i++) y[i] = (x[i] - m) * r * w[i] + (b ? b[i] : 0);
  } else {
    double ss = 0;
    for (int i = 0; i < C; i++) ss += x[i] * x[i];
    double r = 1 / sqrt(ss / C + hp->norm_eps);
    for (int i = 0; i < C; i++) y[i] = x[i] * r * w[i];
  }
}

static void rmsnorm_ref(double *x, const float *w, int C, double eps) {
  double ss = 0;
  for (int i = 0; i < C; i++) ss += x[i] * x[i];
  double r = 1 / sqrt(ss / C + eps);
  for (int i = 0; i < C; i++) x[i] = x[i] * r * w[i];
}

/* one head's RoPE at position p, as the families define it */
static void rope_ref(const pf_model *m, double *x, int p) {
  const pf_hparams *hp = &m->hp;
  int half = hp->rope_dim / 2;
  for (int i = 0; i < half; i++) {
    double f = pow(hp->rope_base, -2.0 * i / hp->rope_dim);
    if (m->rope_freqs) f /= m->rope_freqs[i];
    double th = p * hp->rope_scale * f, c = cos(th), s = sin(th);
    int a = hp->rope == PF_ROPE_NEOX ? i : 2 * i, b = hp->rope == PF_ROPE_NEOX ? i + half : 2 * i + 1;
    double u = x[a], v = x[b];
    x[a] = u * c - v * s;
    x[b] = u * s + v * c;
  }
}

/* logits (n, V) for tokens at positions P.. after a prefix kv (n_layer, 2, P, kvd) (P may be 0) */
static double *forward_ref(const pf_model *m, const int *tok, int n, const float *pre, int P) {
  const pf_hparams *hp = &m->hp;
  int d = hp->n_embd, hd = hp->head_dim, nh = hp->n_head, nkv = hp->n_head_kv, qd = nh * hd, kvd = nkv * hd, ff = hp->n_ff;
  int V = hp->n_vocab, N = P + n;
  double *x = calloc((size_t)n * d, sizeof(double)), *xb = malloc(sizeof(double) * d);
  double *K = malloc(sizeof(double) * (size_t)N * kvd), *Vv = malloc(sizeof(double) * (size_t)N * kvd);
  double *q = malloc(sizeof(double) * (size_t)n * qd), *qkv = malloc(sizeof(double) * (size_t)(qd + 2 * kvd));
  double *ao = malloc(sizeof(double) * qd), *o = malloc(sizeof(double) * d), *att = malloc(sizeof(double) * N);
  double *gu = malloc(sizeof(double) * 2 * ff), *h = malloc(sizeof(double) * ff), *dn = malloc(sizeof(double) * d);
  for (int t = 0; t < n; t++) {
    double *e = rowd(&m->tok_embd, tok[t]);
    for (int i = 0; i < d; i++) x[(size_t)t * d + i] = e[i];
    free(e);
    if (hp->rope == PF_ROPE_NONE) {
      double *pe = rowd(&m->pos_embd, P + t);
      for (int i = 0; i < d; i++) x[(size_t)t * d + i] += pe[i];
      free(pe);
    }
  }
  for (int l = 0; l < hp->n_layer; l++) {
    const pf_layer *L = &m->layers[l];
    for (int j = 0; j < P; j++)
      for (int i = 0; i < kvd; i++) {
        K[(size_t)j * kvd + i] = pre[((size_t)l * 2 * P + j) * kvd + i];
        Vv[(size_t)j * kvd + i] = pre[((size_t)l * 2 * P + P + j) * kvd + i];
      }
    for (int t = 0; t < n; t++) {
      norm_ref(hp, xb, x + (size_t)t * d, L->attn_norm, L->attn_norm_b, d);
      double *qq = q + (size_t)t * qd, *kk = K + (size_t)(P + t) * kvd, *vv = Vv + (size_t)(P + t) * kvd;
      if (L->wqkv.data) {
        mv(qkv, &L->wqkv, xb, L->bqkv);
        memcpy(qq, qkv, sizeof(double) * qd);
        memcpy(kk, qkv + qd, sizeof(double) * kvd);
        memcpy(vv, qkv + qd + kvd, sizeof(double) * kvd);
      } else {
        mv(qq, &L->wq, xb, L->bq);
        mv(kk, &L->wk, xb, L->bk);
        mv(vv, &L->wv, xb, L->bv);
      }
      if (L->q_norm) {
        for (int hh = 0; hh < nh; hh++) rmsnorm_ref(qq + (size_t)hh * hd, L->q_norm, hd, hp->norm_eps);
        for (int hh = 0; hh < nkv; hh++) rmsnorm_ref(kk + (size_t)hh * hd, L->k_norm, hd, hp->norm_eps);
      }
      if (hp->rope != PF_ROPE_NONE) {
        for (int hh = 0; hh < nh; hh++) rope_ref(m, qq + (size_t)hh * hd, P + t);
        for (int hh = 0; hh < nkv; hh++) rope_ref(m, kk + (size_t)hh * hd, P + t);
      }
    }
    for (int t = 0; t < n; t++) {
      for (int hh = 0; hh < nh; hh++) {
        int kh = hh / (nh / nkv), keys = P + t + 1;
        double mx = -1e300, se = 0;
        for (int j = 0; j < keys; j++) {
          double s = 0;
          for (int i = 0; i < hd; i++) s += q[(size_t)t * qd + (size_t)hh * hd + i] * K[(size_t)j * kvd + (size_t)kh * hd + i];
          att[j] = s / sqrt((double)hd);
          if (att[j] > mx) mx = att[j];
        }
        for (int j = 0; j < keys; j++) se += att[j] = exp(att[j] - mx);
        for (int i = 0; i < hd; i++) {
          double s = 0;
          for (int j = 0; j < keys; j++) s += att[j] / se * Vv[(size_t)j * kvd + (size_t)kh * hd + i];
          ao[(size_t)hh * hd + i] = s;
        }
      }
      mv(o, &L->wo, ao, L->bo);
      for (int i = 0; i < d; i++) x[(size_t)t * d + i] += o[i];
      norm_ref(hp, xb, x + (size_t)t * d, L->ffn_norm, L->ffn_norm_b, d);
      if (hp->act == PF_ACT_GELU) {
        mv(h, &L->w_up, xb, L->b_up);
        for (int i = 0; i < ff; i++) h[i] = 0.5 * h[i] * (1 + tanh(0.7978845608028654 * (h[i] + 0.044715 * pow(h[i], 3))));
      } else {
        if (L->w_gate.data) { mv(gu, &L->w_gate, xb, L->b_gate); mv(gu + ff, &L->w_up, xb, L->b_up); }
        else mv(gu, &L->w_up, xb, L->b_up);   /* fused: gate rows then up rows */
        for (int i = 0; i < ff; i++) h[i] = gu[i] / (1 + exp(-gu[i])) * gu[ff + i];
      }
      mv(dn, &L->w_down, h, L->b_down);
      for (int i = 0; i < d; i++) x[(size_t)t * d + i] += dn[i];
    }
  }
  double *lg = malloc(sizeof(double) * (size_t)n * V);
  for (int t = 0; t < n; t++) {
    norm_ref(hp, xb, x + (size_t)t * d, m->out_norm, m->out_norm_b, d);
    mv(lg + (size_t)t * V, &m->output, xb, m->output_b);
  }
  free(x); free(xb); free(K); free(Vv); free(q); free(qkv); free(ao); free(o); free(att); free(gu); free(h); free(dn);
  return lg;
}

static double maxdiff_d(const float *a, const double *b, size_t n, double *scale) {
  double m = 0, s = 0;
  *scale = 0;
  for (size_t i = 0; i < n; i++) {
    double d = fabs(a[i] - b[i]);
    if (d != d) return INFINITY;
    if (d > m) m = d;
    if (fabs(b[i]) > s) s = fabs(b[i]);
  }
  *scale = s;
  return m;
}

/* A model against the reference: without and with a prefix, inference and training forwards. */
static void check_model(const char *label, pf_model *m) {
  const pf_hparams *hp = &m->hp;
  int V = hp->n_vocab, n = 7, P = 3, toks[7] = {5, 17, 3, 99, 42, 7, 250};
  for (int i = 0; i < n; i++) toks[i] %= V;
  int kvd = pf_kv_dim(hp);
  size_t npre = (size_t)hp->n_layer * 2 * P * kvd;
  float *pre = malloc(sizeof(float) * npre), *lg = malloc(sizeof(float) * (size_t)n * V);
  for (size_t i = 0; i < npre; i++) pre[i] = 0.5f * t_frand();
  pf_err e;
  pf_int8 = 0;   /* exact f32 products: the integer ones have their own bound (test_quant.c) */
  for (int with = 0; with < 2; with++) {
    int PP = with ? P : 0;
    double *ref = forward_ref(m, toks, n, pre, PP), scale;
    /* inference: the prompt in one pass, then token by token through the KV cache */
    pf_seq *s = pf_seq_new(m, 32, &e);
    pf_work *w = pf_work_new();
    if (PP) pf_seq_set_prefix(s, pre, PP, &e);
    int k3 = 3, ok = pf_forward(m, w, &s, &k3, 1, toks, lg, 1, &e) == PF_OK;
    for (int t = 3; t < n; t++) {
      int one = 1;
      ok &= pf_forward(m, w, &s, &one, 1, toks + t, lg + (size_t)t * V, 0, &e) == PF_OK;
    }
    double d = maxdiff_d(lg, ref, (size_t)n * V, &scale);
    char name[200];
    snprintf(name, sizeof name, "%s: inference logits (prefill + KV cache) = double reference %s a prefix", label,
             with ? "with" : "without");
    CHECK(ok && d <= 1e-4 * (scale > 1 ? scale : 1), name, "max diff %g (scale %g) %s", d, scale, ok ? "" : e.msg);
    pf_seq_free(s);
    pf_work_free(w);
    /* training's forward */
    pf_tws *tw = pf_tws_new();
    int len = n, tg[7] = {-1, -1, -1, -1, -1, -1, -1};
    pf_tbatch b = {1, &len, toks, tg};
    pf_prefix_in pin = {PP, pre, NULL, 0, NULL, NULL};
    ok = pf_train_logits(m, tw, &b, &pin, lg, &e) == PF_OK;
    d = maxdiff_d(lg, ref, (size_t)n * V, &scale);
    snprintf(name, sizeof name, "%s: training logits = double reference %s a prefix", label, with ? "with" : "without");
    CHECK(ok && d <= 1e-4 * (scale > 1 ? scale : 1), name, "max diff %g (scale %g) %s", d, scale, ok ? "" : e.msg);
    pf_tws_free(tw);
    free(ref);
  }
  pf_int8 = 1;
  free(pre);
  free(lg);
}

/* ---------------------------------------------------- finite differences */

/* d loss / d prefix through the whole model, analytic vs central differences */
static void grad_model(const char *label, pf_model *m) {
  const pf_hparams *hp = &m->hp;
  int P = 2, kvd = pf_kv_dim(hp), V = hp->n_vocab, n = 6;
  size_t npre = (size_t)hp->n_layer * 2 * P * kvd;
  float *pre = malloc(sizeof(float) * npre), *g = calloc(npre, sizeof(float));
  for (size_t i = 0; i < npre; i++) pre[i] = 0.5f * t_frand();
  int toks[6] = {3, 9, 27, 81, 5, 11}, tg[6] = {-1, -1, 14, 6, 22, 2}, len = n;
  for (int i = 0; i < n; i++) toks[i] %= V, tg[i] = tg[i] < 0 ? -1 : tg[i] % V;
  pf_tbatch b = {1, &len, toks, tg};
  pf_tws *tw = pf_tws_new();
  pf_err e;
  double ls;
  int nt;
  pf_prefix_in pin = {P, pre, g, 0, NULL, NULL};
  pf_train_step(m, tw, &b, &pin, 1.0f, 1, &ls, &nt, NULL, NULL, &e);
  double worst = 0;
  int checked = 0;
  for (size_t i = 0; i < npre; i += npre / 40 + 1) {
    /* the five-point stencil (error O(h^4)) lets h be large enough that the f32 loss's rounding, which
    ** differs between kernels (OpenBLAS sums in another order), stays well under the bound */
    float keep = pre[i], hstep = 2e-2f;
    double l[4];
    static const float at[4] = {-2, -1, 1, 2};
    pf_prefix_in p0 = {P, pre, NULL, 0, NULL, NULL};
    for (int k = 0; k < 4; k++) {
      pre[i] = keep + at[k] * hstep;
      pf_train_step(m, tw, &b, &p0, 1.0f, 0, &l[k], &nt, NULL, NULL, &e);
    }
    pre[i] = keep;
    double num = (l[0] - 8 * l[1] + 8 * l[2] - l[3]) / (12 * hstep),
           err = fabs(num - g[i]) / (1e-3 + 2e-2 * fmax(fabs(num), fabs(g[i])));
    if (err > worst) worst = err;
    checked++;
  }
  char name[160];
  snprintf(name, sizeof name, "%s: prefix gradient through the whole model = central differences", label);
  CHECK(worst < 1.0 && checked > 10, name, "worst %.3g of the bound over %d entries", worst, checked);
  pf_tws_free(tw);
  free(pre);
  free(g);
}

/* ------------------------------------------------------------ families */

static void test_mkmodel_families(void) {
  const struct { const char *label, *args; } cases[] = {
    {"llama3 (rope_freqs, base 500000, tied)", "--arch llama3 --layers 2 --embd 64 --heads 4 --heads-kv 2 --ff 96 --vocab 300"},
    {"qwen2 (q/k/v biases, NEOX)", "--arch qwen2 --layers 2 --embd 64 --heads 4 --heads-kv 2 --ff 96 --vocab 300"},
    {"qwen3 (q/k norm, head size 32 of embd 64 / 4 heads)", "--arch qwen3 --layers 2 --embd 64 --heads 4 --heads-kv 2 --head-dim 32 --ff 96 --vocab 300"},
    {"phi3 (fused qkv and gate/up, NEOX, partial rotary 12 of 16)", "--arch phi3 --layers 2 --embd 64 --heads 4 --ff 96 --vocab 300 --rope-dim 12"},
    {"mistral (llama, SentencePiece, untied)", "--arch mistral --layers 2 --embd 64 --heads 4 --heads-kv 1 --ff 96 --vocab 300"},
    {"llama, linear RoPE scaling 4", "--layers 2 --embd 32 --heads 4 --ff 48 --vocab 300 --rope-scale 4"},
    {"gpt2", "--arch gpt2 --layers 2 --embd 32 --heads 4 --ff 64 --vocab 300 --ctx 64"},
    {"qwen2, Q8_0", "--arch qwen2 --layers 2 --embd 64 --heads 4 --heads-kv 2 --ff 96 --vocab 300 --type q8_0"},
  };
  char path[128];
  snprintf(path, sizeof path, "/tmp/pf_fam_%d.gguf", (int)getpid());
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    pf_err e;
    pf_model *m = t_mkmodel(path, cases[i].args) ? NULL : pf_model_load(path, &e);
    if (!m) { CHECK(0, cases[i].label, "%s", e.msg); continue; }
    check_model(cases[i].label, m);
    grad_model(cases[i].label, m);
    pf_model_free(m);
  }
  unlink(path);
}

/* The shared fixtures: llama.cpp's own writer, the families' real vocabularies. Greedy continuations that
** llama.cpp (node-llama-cpp 3.22.1, llama-simple -n 8) printed for "Hello, my name is" on these files; a
** random model's logits can nearly tie (phi3's 6th token: 1.6e-4 apart), so the first 5 tokens are
** required equal. */
static void test_fixtures(void) {
  const struct { const char *file, *arch, *llama_cpp; } fx[] = {
    {"llama3-tiny", "llama", " astore Ack Ack Ack Fuller"},
    {"qwen2-tiny", "qwen2", "/sw/sw/sw Ford Ford"},
    {"qwen3-tiny", "qwen3", "的游戏股东股东股东股东"},
    {"phi3-tiny", "phi3", " surprising loggingwerke ambient ambient"},
    {"mistral-tiny", "llama", " writing writing writing writing writing"},
  };
  for (size_t i = 0; i < sizeof fx / sizeof fx[0]; i++) {
    char path[4096], name[200];
    snprintf(path, sizeof path, "%s/families/%s.gguf", t_model_dir(), fx[i].file);
    pf_err e;
    pf_model *m = pf_model_load(path, &e);
    snprintf(name, sizeof name, "%s loads as %s", fx[i].file, fx[i].arch);
    CHECK(m && !strcmp(pf_model_arch_name(m), fx[i].arch), name, "%s", m ? pf_model_arch_name(m) : e.msg);
    if (!m) continue;
    check_model(fx[i].file, m);
    pf_sample_params p;
    pf_sample_params_default(&p);
    p.max_tokens = 5;
    p.ignore_eos = 1;
    pf_gen_result r;
    int rc = pf_generate(m, NULL, 0, "Hello, my name is", 17, &p, NULL, NULL, &r, &e);
    snprintf(name, sizeof name, "%s: greedy continuation = llama.cpp's ('%s')", fx[i].file, fx[i].llama_cpp);
    CHECK(rc == 0 && !strcmp(r.text, fx[i].llama_cpp), name, "got '%s'", rc ? e.msg : r.text);
    if (!rc) pf_gen_result_clear(&r);
    /* a few training steps lower the loss */
    pf_example ex[2] = {{"The cat", 7, " sat on the mat.", 16}, {"The dog", 7, " ran in the park.", 17}};
    pf_train_params tp;
    pf_train_params_default(&tp);
    tp.max_steps = 30;
    tp.prefix_len = 4;
    tp.mid_dim = 0;
    tp.add_eos = 0;
    uint8_t *blob = NULL;
    size_t bl = 0;
    double before, after;
    int nt;
    pf_score(m, NULL, 0, "The cat", 7, " sat on the mat.", 16, 0, &before, &nt, &e);
    rc = pf_train(m, ex, 2, NULL, 0, &tp, NULL, NULL, NULL, NULL, &blob, &bl, &e);
    pf_prefix px;
    if (!rc) rc = pf_prefix_decode(blob, bl, &px, &e);
    if (!rc) rc = pf_score(m, px.kv, px.prefix_len, "The cat", 7, " sat on the mat.", 16, 0, &after, &nt, &e);
    snprintf(name, sizeof name, "%s: a prefix trains (loss %.3f -> %.3f)", fx[i].file, before, rc ? 0.0 : after);
    CHECK(rc == 0 && after < before * 0.9, name, "%s", rc ? e.msg : "");
    if (blob) { pf_prefix_clear(&px); free(blob); }
    pf_model_free(m);
  }
}

/* ---------------------------------------------- keys that change the math */

static void test_keys(void) {
  char path[128];
  snprintf(path, sizeof path, "/tmp/pf_keys_%d.gguf", (int)getpid());
  const struct { const char *args, *want; } refused[] = {
    {"--layers 1 --embd 32 --heads 4 --ff 48 --vocab 300 --extra-key llama.attn_logit_softcapping=30",
     "GGUF metadata llama.attn_logit_softcapping is set: this engine does not implement it"},
    {"--layers 1 --embd 32 --heads 4 --ff 48 --vocab 300 --extra-key llama.expert_count=8",
     "GGUF metadata llama.expert_count is set: this engine does not implement it"},
    {"--layers 1 --embd 32 --heads 4 --ff 48 --vocab 300 --rope-scaling yarn",
     "GGUF metadata llama.rope.scaling.type = 'yarn' is not supported (supported: none, linear"},
    {"--layers 1 --embd 32 --heads 4 --ff 48 --vocab 300 --extra-tensor blk.0.attn_sinks",
     "GGUF tensor 'blk.0.attn_sinks' is not part of a llama model as this engine computes it"},
  };
  for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
    pf_err e;
    pf_model *m = t_mkmodel(path, refused[i].args) ? NULL : pf_model_load(path, &e);
    char name[200];
    snprintf(name, sizeof name, "refused with a clear error: %s", refused[i].want);
    CHECK(!m && t_contains(e.msg, refused[i].want), name, "%s", m ? "loaded" : e.msg);
    pf_model_free(m);
  }
  /* a sliding window shorter than the context: the usable context is the window */
  pf_err e;
  pf_model *m = t_mkmodel(path, "--layers 1 --embd 32 --heads 4 --ff 48 --vocab 300 --ctx 256 --extra-key llama.attention.sliding_window=64")
                    ? NULL : pf_model_load(path, &e);
  CHECK(m && m->hp.n_ctx == 64 && m->hp.n_ctx_train == 256, "a sliding window of 64 limits the usable context to 64",
        "%s", m ? "" : e.msg);
  pf_model_free(m);
  unlink(path);
}

/* generation ends at every end-of-generation token a vocabulary declares or uses to end a turn */
static void test_eog(void) {
  const struct { const char *file; int eog[3], not_eog; } v[] = {
    {"llama-bpe", {128001, 128009, 128001}, 128000},   /* <|end_of_text|>, <|eot_id|>; not BOS */
    {"qwen2", {151643, 151645, 151643}, 151644},       /* <|endoftext|>, <|im_end|>; not <|im_start|> */
    {"phi-3", {32000, 32007, 32000}, 32010},           /* <|endoftext|>, <|end|>; not <|user|> */
    {"llama-spm", {2, 2, 2}, 1},                       /* </s> */
  };
  for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
    char path[4096], name[160];
    snprintf(path, sizeof path, "%s/vocab/%s.gguf", getenv("PREFIX_DATA_DIR") ? getenv("PREFIX_DATA_DIR") : "../shared/data",
             v[i].file);
    pf_err e;
    pf_model *m = pf_model_load(path, &e);
    int ok = m != NULL;
    for (int k = 0; ok && k < 3; k++) ok = pf_token_is_eog(m, v[i].eog[k]);
    ok = ok && !pf_token_is_eog(m, v[i].not_eog);
    snprintf(name, sizeof name, "%s: the end-of-generation tokens are EOS and the turn-ending control tokens", v[i].file);
    CHECK(ok, name, "%s", m ? "" : e.msg);
    pf_model_free(m);
  }
}

int main(void) {
  pf_set_threads(2);
  test_mkmodel_families();
  test_fixtures();
  test_keys();
  test_eog();
  return t_failed != 0;
}
