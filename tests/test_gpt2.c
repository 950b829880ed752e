/*
** test_gpt2.c — the GPT-2 architecture and its byte-level BPE tokenizer.
**
** ref_forward() below is an independent, plainly written reference: double
** precision, every position recomputed from scratch, no KV cache, no BLAS,
** read straight from the GGUF tensors. The engine's logits must agree with
** it to 1e-4 on random GPT-2 models, with and without a prefix.
*/
#include "internal.h"
#include "gguf_write.h"
#include "train.h"
#include "testlib.h"

#include <unistd.h>

static char tmpdir[256];
static const char *tmp(const char *name) {
  static char p[4][512];
  static int k;
  k = (k + 1) % 4;
  snprintf(p[k], sizeof p[k], "%s/%s", tmpdir, name);
  return p[k];
}

/* ------------------------------------------------------- the reference */

typedef struct ref_model {
  gguf_file g;
  int L, d, H, ff, V, ctx;
  double eps;
} ref_model;

static double *ref_tensor(ref_model *r, const char *name, int layer) {
  char nm[96];
  if (layer >= 0) snprintf(nm, sizeof nm, "blk.%d.%s", layer, name);
  else snprintf(nm, sizeof nm, "%s", name);
  const gguf_tensor *t = gguf_find_tensor(&r->g, nm);
  if (!t) return NULL;
  float *f = malloc(sizeof(float) * t->n_elem);
  pf_to_f32(t->type, t->data, f, t->n_elem);
  double *dd = malloc(sizeof(double) * t->n_elem);
  for (uint64_t i = 0; i < t->n_elem; i++) dd[i] = f[i];
  free(f);
  return dd;
}

static uint32_t ref_u32(ref_model *r, const char *key) { return (uint32_t)gguf_find(&r->g, key)->v.u; }

static void layernorm(double *out, const double *x, const double *w, const double *b, int n, double eps) {
  double m = 0, v = 0;
  for (int i = 0; i < n; i++) m += x[i];
  m /= n;
  for (int i = 0; i < n; i++) v += (x[i] - m) * (x[i] - m);
  v /= n;
  for (int i = 0; i < n; i++) out[i] = (x[i] - m) / sqrt(v + eps) * w[i] + b[i];
}

/* y = W x + b, W stored (out, in) */
static void linear(double *y, const double *W, const double *b, const double *x, int in, int out) {
  for (int o = 0; o < out; o++) {
    double s = b ? b[o] : 0;
    for (int i = 0; i < in; i++) s += W[(size_t)o * in + i] * x[i];
    y[o] = s;
  }
}

/* Logits (n, V) for tokens at positions P..P+n-1, with prefix keys/values
** pkv laid out (L, 2, P, d) in front (P may be 0). */
static void ref_forward(ref_model *r, const int *tok, int n, const float *pkv, int P, double *logits) {
  int L = r->L, d = r->d, H = r->H, hd = d / H, ff = r->ff, V = r->V;
  double *wte = ref_tensor(r, "token_embd.weight", -1), *wpe = ref_tensor(r, "position_embd.weight", -1);
  double *lnfw = ref_tensor(r, "output_norm.weight", -1), *lnfb = ref_tensor(r, "output_norm.bias", -1);
  double *wout = ref_tensor(r, "output.weight", -1);
  if (!wout) wout = wte;
  /* x[t] for all positions, layer by layer; keys/values of every position */
  double *x = malloc(sizeof(double) * n * d), *h = malloc(sizeof(double) * d), *qkv = malloc(sizeof(double) * n * 3 * d);
  double *att = malloc(sizeof(double) * d), *tmp2 = malloc(sizeof(double) * d), *u = malloc(sizeof(double) * ff);
  double *y = malloc(sizeof(double) * n * d), *sc = malloc(sizeof(double) * (P + n));
  for (int t = 0; t < n; t++)
    for (int i = 0; i < d; i++) x[t * d + i] = wte[(size_t)tok[t] * d + i] + wpe[(size_t)(P + t) * d + i];
  for (int l = 0; l < L; l++) {
    double *ln1w = ref_tensor(r, "attn_norm.weight", l), *ln1b = ref_tensor(r, "attn_norm.bias", l);
    double *wqkv = ref_tensor(r, "attn_qkv.weight", l), *bqkv = ref_tensor(r, "attn_qkv.bias", l);
    double *wo = ref_tensor(r, "attn_output.weight", l), *bo = ref_tensor(r, "attn_output.bias", l);
    double *ln2w = ref_tensor(r, "ffn_norm.weight", l), *ln2b = ref_tensor(r, "ffn_norm.bias", l);
    double *wu = ref_tensor(r, "ffn_up.weight", l), *bu = ref_tensor(r, "ffn_up.bias", l);
    double *wd = ref_tensor(r, "ffn_down.weight", l), *bd = ref_tensor(r, "ffn_down.bias", l);
    for (int t = 0; t < n; t++) {
      layernorm(h, x + t * d, ln1w, ln1b, d, r->eps);
      linear(qkv + (size_t)t * 3 * d, wqkv, bqkv, h, d, 3 * d);
    }
    for (int t = 0; t < n; t++) {
      const double *q = qkv + (size_t)t * 3 * d;
      for (int hh = 0; hh < H; hh++) {
        int nk = P + t + 1;
        double mx = -1e300, sum = 0;
        for (int j = 0; j < nk; j++) {
          double s = 0;
          for (int i = 0; i < hd; i++) {
            double kj = j < P ? pkv[(((size_t)l * 2 + 0) * P + j) * d + hh * hd + i]
                              : qkv[(size_t)(j - P) * 3 * d + d + hh * hd + i];
            s += q[hh * hd + i] * kj;
          }
          sc[j] = s / sqrt((double)hd);
          if (sc[j] > mx) mx = sc[j];
        }
        for (int j = 0; j < nk; j++) { sc[j] = exp(sc[j] - mx); sum += sc[j]; }
        for (int i = 0; i < hd; i++) {
          double o = 0;
          for (int j = 0; j < nk; j++) {
            double vj = j < P ? pkv[(((size_t)l * 2 + 1) * P + j) * d + hh * hd + i]
                              : qkv[(size_t)(j - P) * 3 * d + 2 * d + hh * hd + i];
            o += sc[j] / sum * vj;
          }
          att[hh * hd + i] = o;
        }
      }
      linear(tmp2, wo, bo, att, d, d);
      for (int i = 0; i < d; i++) y[t * d + i] = x[t * d + i] + tmp2[i];
    }
    for (int t = 0; t < n; t++) {
      layernorm(h, y + t * d, ln2w, ln2b, d, r->eps);
      linear(u, wu, bu, h, d, ff);
      for (int i = 0; i < ff; i++) u[i] = 0.5 * u[i] * (1 + tanh(sqrt(2 / M_PI) * (u[i] + 0.044715 * u[i] * u[i] * u[i])));
      linear(tmp2, wd, bd, u, ff, d);
      for (int i = 0; i < d; i++) x[t * d + i] = y[t * d + i] + tmp2[i];
    }
    free(ln1w); free(ln1b); free(wqkv); free(bqkv); free(wo); free(bo); free(ln2w); free(ln2b);
    free(wu); free(bu); free(wd); free(bd);
  }
  for (int t = 0; t < n; t++) {
    layernorm(h, x + t * d, lnfw, lnfb, d, r->eps);
    linear(logits + (size_t)t * V, wout, NULL, h, d, V);
  }
  if (wout != wte) free(wout);
  free(wte); free(wpe); free(lnfw); free(lnfb);
  free(x); free(h); free(qkv); free(att); free(tmp2); free(u); free(y); free(sc);
}

static int ref_open(ref_model *r, const char *path) {
  pf_err e;
  if (gguf_open(&r->g, path, &e)) return -1;
  r->L = (int)ref_u32(r, "gpt2.block_count");
  r->d = (int)ref_u32(r, "gpt2.embedding_length");
  r->H = (int)ref_u32(r, "gpt2.attention.head_count");
  r->ff = (int)ref_u32(r, "gpt2.feed_forward_length");
  r->ctx = (int)ref_u32(r, "gpt2.context_length");
  r->V = (int)gguf_find(&r->g, "tokenizer.ggml.tokens")->arr_n;
  r->eps = 1e-5;
  return 0;
}

static double maxdiff_d(const float *a, const double *b, size_t n) {
  double m = 0;
  for (size_t i = 0; i < n; i++) { double x = fabs(a[i] - b[i]); if (!(x <= m)) m = x; }
  return m;
}

static void test_against_reference(const char *label, const char *args) {
  const char *path = tmp("ref.gguf");
  char name[256];
  if (t_mkmodel(path, args)) { CHECK(0, label, "mkmodel failed"); return; }
  pf_err e;
  pf_model *m = pf_model_load(path, &e);
  ref_model r;
  if (!m || ref_open(&r, path)) { CHECK(0, label, "load: %s", m ? "reference" : e.msg); return; }
  int n = 12, V = r.V, d = r.d, L = r.L;
  int tok[12];
  for (int i = 0; i < n; i++) tok[i] = (i * 37 + 5) % V;
  float *lg = malloc(sizeof(float) * n * V), *step = malloc(sizeof(float) * n * V);
  double *ref = malloc(sizeof(double) * n * V);
  for (int P = 0; P <= 3; P += 3) {
    float *pkv = malloc(sizeof(float) * (size_t)(L * 2 * (P ? P : 1) * d));
    for (int i = 0; i < L * 2 * P * d; i++) pkv[i] = t_frand();
    ref_forward(&r, tok, n, pkv, P, ref);
    pf_seq *s = pf_seq_new(m, 32, &e);
    pf_work *w = pf_work_new();
    if (P) pf_seq_set_prefix(s, pkv, P, &e);
    int rc = pf_forward(m, w, &s, &n, 1, tok, lg, 1, &e);
    snprintf(name, sizeof name, "%s: engine logits = reference forward to 1e-4%s", label, P ? " (with a prefix)" : "");
    CHECK(rc == 0 && maxdiff_d(lg, ref, (size_t)n * V) < 1e-4, name, "max diff %g", maxdiff_d(lg, ref, (size_t)n * V));
    pf_seq_reset(s);
    for (int t = 0; t < n && !rc; t++) {
      int one = 1;
      rc = pf_forward(m, w, &s, &one, 1, &tok[t], step + (size_t)t * V, 0, &e);
    }
    snprintf(name, sizeof name, "%s: KV-cache decoding = full recompute%s", label, P ? " (with a prefix)" : "");
    CHECK(rc == 0 && t_maxdiff(step, lg, (size_t)n * V) < 1e-4, name, "max diff %g", t_maxdiff(step, lg, (size_t)n * V));
    pf_set_naive(1);
    pf_seq_reset(s);
    rc = pf_forward(m, w, &s, &n, 1, tok, step, 1, &e);
    pf_set_naive(0);
    snprintf(name, sizeof name, "%s: naive forward = BLAS forward%s", label, P ? " (with a prefix)" : "");
    CHECK(rc == 0 && t_maxdiff(step, lg, (size_t)n * V) < 1e-4, name, "max diff %g", t_maxdiff(step, lg, (size_t)n * V));
    /* the training forward agrees as well */
    pf_tws *tw = pf_tws_new();
    int tg[12];
    for (int i = 0; i < n; i++) tg[i] = -1;
    pf_tbatch b = {1, &n, tok, tg};
    pf_prefix_in pin = {P, pkv, NULL, 0, NULL, NULL};
    rc = pf_train_logits(m, tw, &b, &pin, step, &e);
    snprintf(name, sizeof name, "%s: training forward = reference%s", label, P ? " (with a prefix)" : "");
    CHECK(rc == 0 && maxdiff_d(step, ref, (size_t)n * V) < 1e-4, name, "max diff %g", maxdiff_d(step, ref, (size_t)n * V));
    pf_tws_free(tw);
    pf_seq_free(s);
    pf_work_free(w);
    free(pkv);
  }
  free(lg); free(step); free(ref);
  gguf_close(&r.g);
  pf_model_free(m);
}

/* ------------------------------------------------------------ tokenizer */

static void test_tokenizer(void) {
  pf_err e;
  char path[600];
  snprintf(path, sizeof path, "%s/../data/gpt2/gpt2-vocab-only.gguf", t_model_dir());
  pf_model *m = pf_model_load(path, &e);
  CHECK(m != NULL, "load the gpt2 vocab-only GGUF", "%s", e.msg);
  if (!m) return;
  CHECK(!pf_add_bos(m) && pf_token_eos(m) == 50256, "gpt2 adds no BOS; <|endoftext|> is EOS", "add_bos %d eos %d",
        pf_add_bos(m), pf_token_eos(m));
  /* round trips: arbitrary UTF-8, invalid bytes, special tokens */
  const char *texts[] = {"Hello world", "  leading spaces and\ttabs\n\nnewlines  ", "naïve café — 日本語 🙂 Ω≈ç√",
                         "I'm you're they've we'll she'd it's DON'T", "numbers 123 4567 1e10 3.14",
                         "\xff\xfe invalid \xc3 bytes \x80", "a<|endoftext|>b<|endoftext|>", ""};
  for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
    int *ids, n;
    char *back;
    size_t bl;
    int rc = pf_tokenize(m, texts[i], strlen(texts[i]), 0, &ids, &n, &e);
    char *raw = NULL;
    size_t rl = 0;
    rc = rc ? rc : pf_ids_to_bytes(m, ids, n, 0, &raw, &rl, &e);
    char name[96];
    snprintf(name, sizeof name, "gpt2 bytes round trip #%zu", i);
    CHECK(rc == 0 && rl == strlen(texts[i]) && memcmp(raw, texts[i], rl) == 0, name, "rc=%d len %zu", rc, rl);
    free(raw);
    if (!rc && i != 5) {   /* valid UTF-8: the text itself comes back */
      rc = pf_detokenize(m, ids, n, 1, &back, &bl, &e);
      snprintf(name, sizeof name, "gpt2 text round trip #%zu", i);
      CHECK(rc == 0 && strcmp(back, texts[i]) == 0, name, "got '%s'", rc ? e.msg : back);
      if (!rc) free(back);
    }
    free(ids);
  }
  /* random bytes, many lengths */
  int ok = 1;
  for (int trial = 0; trial < 200 && ok; trial++) {
    char buf[64];
    int len = trial % 60;
    for (int i = 0; i < len; i++) buf[i] = (char)(int)((t_frand() + 1) * 128);
    int *ids, n;
    char *raw;
    size_t rl;
    if (pf_tokenize(m, buf, (size_t)len, 0, &ids, &n, &e) || pf_ids_to_bytes(m, ids, n, 0, &raw, &rl, &e)) { ok = 0; break; }
    ok = rl == (size_t)len && memcmp(raw, buf, rl) == 0;
    free(ids);
    free(raw);
  }
  CHECK(ok, "gpt2: 200 random byte strings round trip exactly", "");
  int *ids, n;
  pf_tokenize(m, "<|endoftext|>", 13, 0, &ids, &n, &e);
  CHECK(n == 1 && ids[0] == 50256, "<|endoftext|> is one token", "n=%d", n);
  free(ids);
  pf_model_free(m);
}

/* GGUF files with broken gpt2 metadata */
static void write_vocab_file(const char *path, int with_merges, const char *bad_merge, int qkv_rows) {
  gguf_builder *b = gb_new();
  gb_str(b, "general.architecture", "gpt2");
  const char *toks[260];
  char store[260][8];
  for (int i = 0; i < 256; i++) {
    pf_gpt2_byte_utf8(i, store[i]);
    toks[i] = store[i];
  }
  toks[256] = "th";
  toks[257] = "<|endoftext|>";
  int32_t types[258];
  for (int i = 0; i < 258; i++) types[i] = i == 257 ? PF_TT_CONTROL : PF_TT_NORMAL;
  gb_str(b, "tokenizer.ggml.model", "gpt2");
  gb_arr_str(b, "tokenizer.ggml.tokens", toks, 258);
  gb_arr_i32(b, "tokenizer.ggml.token_type", types, 258);
  if (with_merges) {
    const char *merges[1] = {bad_merge ? bad_merge : "t h"};
    gb_arr_str(b, "tokenizer.ggml.merges", merges, 1);
  }
  if (qkv_rows) {   /* weights with a wrong attn_qkv shape */
    int d = 8, ff = 8, ctx = 16, V = 258;
    gb_u32(b, "gpt2.context_length", (uint32_t)ctx);
    gb_u32(b, "gpt2.embedding_length", (uint32_t)d);
    gb_u32(b, "gpt2.block_count", 1);
    gb_u32(b, "gpt2.feed_forward_length", (uint32_t)ff);
    gb_u32(b, "gpt2.attention.head_count", 2);
    static float zeros[8 * 258];
    uint64_t ne_e[2] = {(uint64_t)d, (uint64_t)V}, ne_p[2] = {(uint64_t)d, (uint64_t)ctx}, ne_v[1] = {(uint64_t)d};
    uint64_t ne_q[2] = {(uint64_t)d, (uint64_t)qkv_rows};
    gb_tensor(b, "token_embd.weight", 2, ne_e, GGML_F32, zeros, sizeof(float) * d * V);
    gb_tensor(b, "position_embd.weight", 2, ne_p, GGML_F32, zeros, sizeof(float) * d * ctx);
    gb_tensor(b, "output_norm.weight", 1, ne_v, GGML_F32, zeros, sizeof(float) * d);
    gb_tensor(b, "output_norm.bias", 1, ne_v, GGML_F32, zeros, sizeof(float) * d);
    gb_tensor(b, "blk.0.attn_norm.weight", 1, ne_v, GGML_F32, zeros, sizeof(float) * d);
    gb_tensor(b, "blk.0.attn_norm.bias", 1, ne_v, GGML_F32, zeros, sizeof(float) * d);
    gb_tensor(b, "blk.0.attn_qkv.weight", 2, ne_q, GGML_F32, zeros, sizeof(float) * d * (size_t)qkv_rows);
  }
  char err[128];
  gb_write(b, path, err, sizeof err);
  gb_free(b);
}

static void test_malformed(void) {
  pf_err e;
  const char *p = tmp("bad.gguf");
  write_vocab_file(p, 0, NULL, 0);
  pf_model *m = pf_model_load(p, &e);
  CHECK(!m && t_contains(e.msg, "GGUF tokenizer.ggml.merges is missing (a gpt2 tokenizer needs its merges)"),
        "gpt2 without merges is refused", "%s", m ? "loaded" : e.msg);
  pf_model_free(m);
  write_vocab_file(p, 1, "t zz", 0);
  m = pf_model_load(p, &e);
  CHECK(!m && t_contains(e.msg, "GGUF tokenizer.ggml.merges[0] 't zz': 'zz' is not a token"),
        "a merge naming an unknown token is refused", "%s", m ? "loaded" : e.msg);
  pf_model_free(m);
  write_vocab_file(p, 1, "th", 0);
  m = pf_model_load(p, &e);
  CHECK(!m && t_contains(e.msg, "GGUF tokenizer.ggml.merges[0] 'th' is not two tokens separated by a space"),
        "a merge without a space is refused", "%s", m ? "loaded" : e.msg);
  pf_model_free(m);
  write_vocab_file(p, 1, "h t", 0);
  m = pf_model_load(p, &e);
  CHECK(!m && t_contains(e.msg, "GGUF tokenizer.ggml.merges[0] 'h t' makes 'ht', which is not a token"),
        "a merge whose result is not a token is refused", "%s", m ? "loaded" : e.msg);
  pf_model_free(m);
  write_vocab_file(p, 1, NULL, 23);
  m = pf_model_load(p, &e);
  CHECK(!m && t_contains(e.msg, "GGUF tensor 'blk.0.attn_qkv.weight' has shape [8, 23, 1, 1], expected [8, 24] from the hyperparameters"),
        "a gpt2 tensor of the wrong shape is refused", "%s", m ? "loaded" : e.msg);
  pf_model_free(m);
  write_vocab_file(p, 1, NULL, 0);
  m = pf_model_load(p, &e);
  CHECK(m != NULL, "the same file with a good merge loads", "%s", m ? "" : e.msg);
  pf_model_free(m);
}

/* a prefix trained on a random GPT-2 lowers its training loss and generates */
static void test_training(void) {
  const char *path = tmp("train.gguf");
  if (t_mkmodel(path, "--arch gpt2 --layers 2 --embd 32 --heads 4 --ff 64 --vocab 400 --ctx 128")) { CHECK(0, "gpt2 training", "mkmodel"); return; }
  pf_err e;
  pf_model *m = pf_model_load(path, &e);
  pf_example ex[4] = {{"the cat", 7, " sat on the mat", 15}, {"a dog", 5, " ran to the sea", 15},
                      {"one bird", 8, " sang a song", 12}, {"the sun", 7, " is hot", 7}};
  double before = 0, after = 0, nll;
  int nt;
  for (int i = 0; i < 4; i++) { pf_score(m, NULL, 0, ex[i].prompt, ex[i].prompt_len, ex[i].completion, ex[i].completion_len, 1, &nll, &nt, &e); before += nll; }
  pf_train_params p;
  pf_train_params_default(&p);
  p.max_steps = 60;
  uint8_t *blob;
  size_t bl;
  int rc = pf_train(m, ex, 4, NULL, 0, &p, NULL, NULL, NULL, NULL, &blob, &bl, &e);
  CHECK(rc == 0, "train a prefix on a random gpt2", "%s", rc ? e.msg : "");
  if (rc) { pf_model_free(m); return; }
  pf_prefix pre;
  rc = pf_prefix_decode(blob, bl, &pre, &e);
  for (int i = 0; i < 4; i++) { pf_score(m, pre.kv, pre.prefix_len, ex[i].prompt, ex[i].prompt_len, ex[i].completion, ex[i].completion_len, 1, &nll, &nt, &e); after += nll; }
  CHECK(rc == 0 && pre.arch == PF_ARCH_GPT2 && after < before * 0.5, "the gpt2 prefix lowers the training loss by half or more",
        "before %.3f after %.3f", before / 4, after / 4);
  pf_sample_params sp;
  pf_sample_params_default(&sp);
  sp.max_tokens = 12;
  pf_gen_result g;
  rc = pf_generate(m, pre.kv, pre.prefix_len, "the cat", 7, &sp, NULL, NULL, &g, &e);
  CHECK(rc == 0 && g.n_tokens + (g.finish == PF_FINISH_EOS) >= 1, "generation with the gpt2 prefix runs", "%s", rc ? e.msg : g.text);
  if (!rc) pf_gen_result_clear(&g);
  /* embedding mode on gpt2: learned embeddings plus learned positions */
  p.mode = PF_MODE_EMBEDDING;
  p.max_steps = 30;
  free(blob);
  rc = pf_train(m, ex, 4, NULL, 0, &p, NULL, NULL, NULL, NULL, &blob, &bl, &e);
  CHECK(rc == 0, "embedding-mode training on gpt2", "%s", rc ? e.msg : "");
  if (!rc) free(blob);
  pf_prefix_clear(&pre);
  pf_model_free(m);
}

int main(void) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/pf_gpt2_XXXXXX");
  if (!mkdtemp(tmpdir)) return 1;
  test_against_reference("gpt2 2 layers, 4 heads, tied", "--arch gpt2 --layers 2 --embd 32 --heads 4 --ff 64 --vocab 300 --ctx 64");
  test_against_reference("gpt2 3 layers, 2 heads, untied, f16", "--arch gpt2 --layers 3 --embd 24 --heads 2 --ff 40 --vocab 280 --ctx 32 --untied --type f16 --seed 3");
  test_tokenizer();
  test_malformed();
  test_training();
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
  if (system(cmd)) {}
  return t_failed ? 1 : 0;
}
