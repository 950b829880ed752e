/*
** vocab.c — a vocabulary from GGUF metadata, shared by both tokenizers:
** tokens, scores and types, the special ids (BOS, EOS, the end-of-generation
** set), the tokens matched verbatim in text, the text -> id hash, and the
** merge loop both BPE flavours run.
*/
#include "internal.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


int pf_vocab_find(const pf_vocab *v, const char *s, size_t n) {
  if (!v->hash) return -1;
  uint32_t mask = v->hash_cap - 1, i = (uint32_t)pf_hash64(s, n, 7) & mask;
  for (;;) {
    int id = v->hash[i];
    if (id < 0) return -1;
    if ((size_t)v->len[id] == n && memcmp(v->text[id], s, n) == 0) return id;
    i = (i + 1) & mask;
  }
}

void pf_vocab_free(pf_vocab *v) {   /* the BPE tables are the model's to free (pf_bpe_free, model.c) */
  if (v->text) for (int i = 0; i < v->n; i++) free(v->text[i]);
  free(v->text); free(v->len); free(v->score); free(v->type); free(v->hash); free(v->special); free(v->eog); free(v->rstrip);
  memset(v, 0, sizeof *v);
}

static int read_id(const gguf_file *g, const char *key, int n_vocab, int *out, pf_err *err) {
  const gguf_kv *kv = gguf_find(g, key);
  if (!kv) return PF_OK;
  int64_t id;
  if (kv->type == GGUF_T_UINT32 || kv->type == GGUF_T_UINT64 || kv->type == GGUF_T_UINT16 || kv->type == GGUF_T_UINT8)
    id = kv->v.u > (uint64_t)INT32_MAX ? -1 : (int64_t)kv->v.u;
  else if (kv->type == GGUF_T_INT32 || kv->type == GGUF_T_INT64 || kv->type == GGUF_T_INT16 || kv->type == GGUF_T_INT8)
    id = kv->v.i;
  else
    return pf_seterr(err, PF_ERR, "GGUF %s has type %s, expected an integer", key, gguf_type_name(kv->type));
  if (id == -1 || id == (int64_t)UINT32_MAX) { *out = -1; return PF_OK; } /* "none" */
  if (id < 0 || id >= n_vocab)
    return pf_seterr(err, PF_ERR, "GGUF %s = %lld is outside the vocabulary (0..%d)", key, (long long)id, n_vocab - 1);
  *out = (int)id;
  return PF_OK;
}

static int read_bool(const gguf_file *g, const char *key, int dflt) {
  const gguf_kv *kv = gguf_find(g, key);
  if (!kv || kv->type != GGUF_T_BOOL) return dflt;
  return (int)kv->v.u;
}

/* Byte-level BPE pre-tokenizers by tokenizer.ggml.pre, as llama.cpp names them. */
static const struct { const char *name; int pre; } g_pre[] = {
  {"default", PF_PRE_DEFAULT}, {"gpt-2", PF_PRE_GPT2}, {"gpt2", PF_PRE_GPT2}, {"phi-2", PF_PRE_GPT2},
  {"llama-bpe", PF_PRE_LLAMA3}, {"llama3", PF_PRE_LLAMA3}, {"llama-v3", PF_PRE_LLAMA3},
  {"qwen2", PF_PRE_QWEN2}, {"deepseek-r1-qwen", PF_PRE_QWEN2},
  {"smollm", PF_PRE_SMOLLM}, {"starcoder", PF_PRE_SMOLLM}, {"refact", PF_PRE_SMOLLM},
};

static int pre_tokenizer(pf_vocab *v, const gguf_file *g, pf_err *err) {
  const gguf_kv *kv = gguf_find(g, "tokenizer.ggml.pre");
  v->pre = PF_PRE_DEFAULT;   /* llama.cpp's choice for a file without one */
  if (!kv) return PF_OK;
  if (kv->type != GGUF_T_STRING) return pf_seterr(err, PF_ERR, "GGUF tokenizer.ggml.pre has type %s, expected string", gguf_type_name(kv->type));
  for (size_t i = 0; i < sizeof g_pre / sizeof g_pre[0]; i++)
    if (gguf_str_eq(kv->v.s, g_pre[i].name)) {
      v->pre = g_pre[i].pre;
      v->ignore_merges = v->pre == PF_PRE_LLAMA3;   /* a piece that is a token is taken whole, as Llama 3's tokenizer does */
      return PF_OK;
    }
  char known[512] = "", nm[64];
  for (size_t i = 0; i < sizeof g_pre / sizeof g_pre[0]; i++)
    snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", i ? ", " : "", g_pre[i].name);
  pf_quote_bytes(nm, sizeof nm, kv->v.s.p, (size_t)kv->v.s.n);
  return pf_seterr(err, PF_ERR, "tokenizer.ggml.pre %s is not supported (supported: %s)", nm, known);
}

/* Tokens matched verbatim in text (control, user-defined, unknown; longest first, so "<|im_start|>" wins over
** a shorter token it starts with), the bytes they can start with, and the end-of-generation set: EOS, EOT,
** EOM and the control tokens that end a turn in the common chat formats. */
static int special_tokens(pf_vocab *v, const gguf_file *g) {
  static const char *eog_text[] = {"<|eot_id|>", "<|eom_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
                                   "<|end_of_text|>", "<EOT>", "<|return|>", "<|call|>"};
  int ns = 0;
  for (int i = 0; i < v->n; i++)
    if ((v->type[i] == PF_TT_CONTROL || v->type[i] == PF_TT_USER || v->type[i] == PF_TT_UNKNOWN) && v->len[i] > 0) ns++;
  v->special = malloc(sizeof(int) * (size_t)(ns + 1));
  v->eog = malloc(sizeof(int) * (size_t)(ns + 4));
  if (!v->special || !v->eog) return -1;
  v->n_special = 0;
  for (int i = 0; i < v->n; i++)
    if ((v->type[i] == PF_TT_CONTROL || v->type[i] == PF_TT_USER || v->type[i] == PF_TT_UNKNOWN) && v->len[i] > 0) {
      int j = v->n_special++;   /* insertion by length, longest first */
      while (j > 0 && v->len[v->special[j - 1]] < v->len[i]) { v->special[j] = v->special[j - 1]; j--; }
      v->special[j] = i;
      v->special_first[(unsigned char)v->text[i][0]] = 1;
    }
  /* Phi-3's special tokens eat the white space after them (llama.cpp sets this by the model's name) */
  const gguf_kv *name = gguf_find(g, "general.name");
  int phi3 = 0;
  if (name && name->type == GGUF_T_STRING)
    for (uint64_t i = 0; i + 4 <= name->v.s.n && !phi3; i++) {
      char c[5];
      for (int k = 0; k < 5 && i + (uint64_t)k < name->v.s.n; k++) c[k] = (char)tolower((unsigned char)name->v.s.p[i + (uint64_t)k]);
      phi3 = !memcmp(c, "phi3", 4) || (i + 5 <= name->v.s.n && !memcmp(c, "phi-3", 5));
    }
  v->rstrip = calloc((size_t)v->n, 1);
  if (!v->rstrip) return -1;
  for (int k = 0; phi3 && k < v->n_special; k++) {
    const char *t = v->text[v->special[k]];
    v->rstrip[v->special[k]] = strcmp(t, "<unk>") && strcmp(t, "<s>") && strcmp(t, "<|endoftext|>");
  }
  int cand[3] = {v->eos, v->eot, v->eom};
  v->n_eog = 0;
  for (int c = 0; c < 3; c++) {
    int dup = cand[c] < 0;
    for (int e = 0; e < v->n_eog && !dup; e++) dup = v->eog[e] == cand[c];
    if (!dup) v->eog[v->n_eog++] = cand[c];
  }
  for (int k = 0; k < v->n_special; k++) {
    int id = v->special[k], dup = v->type[id] != PF_TT_CONTROL;
    for (int e = 0; e < v->n_eog && !dup; e++) dup = v->eog[e] == id;
    for (size_t t = 0; t < sizeof eog_text / sizeof eog_text[0] && !dup; t++)
      if (!strcmp(v->text[id], eog_text[t])) { v->eog[v->n_eog++] = id; break; }
  }
  return 0;
}

int pf_vocab_is_eog(const pf_vocab *v, int id) {
  for (int e = 0; e < v->n_eog; e++) if (v->eog[e] == id) return 1;
  return 0;
}

/* The byte of a SentencePiece byte token: exactly "<0x" two hex digits ">", else -1.
** (sscanf's %X would take a sign and "<0x-1>" would give 4294967295.) */
int pf_byte_token_value(const char *t, int len) {
  if (len != 6 || memcmp(t, "<0x", 3) || t[5] != '>') return -1;
  int b = 0;
  for (int i = 3; i < 5; i++) {
    int c = (unsigned char)t[i], d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                     : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (d < 0) return -1;
    b = b * 16 + d;
  }
  return b;
}


int pf_vocab_load(pf_vocab *v, const gguf_file *g, pf_err *err) {
  memset(v, 0, sizeof *v);
  v->bos = v->eos = v->unk = v->eot = v->eom = -1;
  for (int i = 0; i < 256; i++) v->byte_tok[i] = -1;
  const gguf_kv *model = gguf_find(g, "tokenizer.ggml.model");
  if (!model) return pf_seterr(err, PF_ERR, "GGUF has no tokenizer (tokenizer.ggml.model is missing)");
  if (model->type != GGUF_T_STRING)
    return pf_seterr(err, PF_ERR, "GGUF tokenizer.ggml.model has type %s, expected string", gguf_type_name(model->type));
  if (gguf_str_eq(model->v.s, "llama")) v->kind = PF_TOK_SPM;
  else if (gguf_str_eq(model->v.s, "gpt2")) v->kind = PF_TOK_BPE;
  else {
    char nm[64];
    pf_quote_bytes(nm, sizeof nm, model->v.s.p, (size_t)model->v.s.n);
    return pf_seterr(err, PF_ERR, "tokenizer.ggml.model %s is not supported (supported: llama, gpt2)", nm);
  }
  const gguf_kv *toks = gguf_find(g, "tokenizer.ggml.tokens");
  if (!toks) return pf_seterr(err, PF_ERR, "GGUF tokenizer.ggml.tokens is missing");
  if (toks->type != GGUF_T_ARRAY || toks->arr_type != GGUF_T_STRING)
    return pf_seterr(err, PF_ERR, "GGUF tokenizer.ggml.tokens must be an array of strings");
  if (toks->arr_n == 0 || toks->arr_n > (1u << 24))
    return pf_seterr(err, PF_ERR, "GGUF tokenizer.ggml.tokens has %llu tokens (allowed: 1..%u)",
                     (unsigned long long)toks->arr_n, 1u << 24);
  int n = (int)toks->arr_n;
  const gguf_kv *scores = gguf_find(g, "tokenizer.ggml.scores");
  const gguf_kv *types = gguf_find(g, "tokenizer.ggml.token_type");
  if (scores && (scores->type != GGUF_T_ARRAY || scores->arr_type != GGUF_T_FLOAT32 || scores->arr_n != toks->arr_n))
    return pf_seterr(err, PF_ERR, "GGUF tokenizer.ggml.scores must be %d float32 values", n);
  if (types && (types->type != GGUF_T_ARRAY || types->arr_type != GGUF_T_INT32 || types->arr_n != toks->arr_n))
    return pf_seterr(err, PF_ERR, "GGUF tokenizer.ggml.token_type must be %d int32 values", n);

  v->n = n;
  v->text = calloc((size_t)n, sizeof *v->text);
  v->len = calloc((size_t)n, sizeof *v->len);
  v->score = calloc((size_t)n, sizeof *v->score);
  v->type = calloc((size_t)n, sizeof *v->type);
  v->hash_cap = 16;
  while (v->hash_cap < (uint32_t)n * 2) v->hash_cap <<= 1;
  v->hash = malloc(sizeof(int) * v->hash_cap);
  if (!v->text || !v->len || !v->score || !v->type || !v->hash) goto nomem;
  memset(v->hash, 0xff, sizeof(int) * v->hash_cap);

  uint64_t off = toks->arr_off;
  for (int i = 0; i < n; i++) {
    uint64_t len;  /* bounds were checked by the parser */
    memcpy(&len, g->base + off, 8);
    off += 8;
    v->text[i] = malloc(len + 1);
    if (!v->text[i]) goto nomem;
    memcpy(v->text[i], g->base + off, len);
    v->text[i][len] = 0;
    v->len[i] = (int)len;
    off += len;
    if (scores) memcpy(&v->score[i], g->base + scores->arr_off + 4 * (uint64_t)i, 4);
    if (types) { int32_t t; memcpy(&t, g->base + types->arr_off + 4 * (uint64_t)i, 4); v->type[i] = t; }
    else v->type[i] = PF_TT_NORMAL;
    /* insert unless the same text is already there (first one wins) */
    uint32_t mask = v->hash_cap - 1, h = (uint32_t)pf_hash64(v->text[i], len, 7) & mask;
    for (;;) {
      int id = v->hash[h];
      if (id < 0) { v->hash[h] = i; break; }
      if (v->len[id] == (int)len && !memcmp(v->text[id], v->text[i], len)) break;
      h = (h + 1) & mask;
    }
    if (v->kind == PF_TOK_SPM) {
      int b = pf_byte_token_value(v->text[i], v->len[i]);
      if (b >= 0) {
        if (v->byte_tok[b] < 0) v->byte_tok[b] = i;
        if (!types) v->type[i] = PF_TT_BYTE;
      } else if (v->type[i] == PF_TT_BYTE) {
        char shown[48];
        pf_quote_bytes(shown, sizeof shown, v->text[i], v->len[i]);
        pf_seterr(err, PF_ERR, "GGUF tokenizer.ggml.tokens[%d] %s has token_type BYTE but is not of the form <0xHH>", i, shown);
        goto fail;
      }
    }
  }
  if (read_id(g, "tokenizer.ggml.bos_token_id", n, &v->bos, err) ||
      read_id(g, "tokenizer.ggml.eos_token_id", n, &v->eos, err) ||
      read_id(g, "tokenizer.ggml.unknown_token_id", n, &v->unk, err))
    goto fail;
  if (v->kind == PF_TOK_SPM) {
    if (v->bos < 0 && gguf_find(g, "tokenizer.ggml.bos_token_id") == NULL) v->bos = n > 1 ? 1 : -1;
    if (v->eos < 0 && gguf_find(g, "tokenizer.ggml.eos_token_id") == NULL) v->eos = n > 2 ? 2 : -1;
    if (v->unk < 0 && gguf_find(g, "tokenizer.ggml.unknown_token_id") == NULL) v->unk = 0;
  }
  if (read_id(g, "tokenizer.ggml.eot_token_id", n, &v->eot, err) || read_id(g, "tokenizer.ggml.eom_token_id", n, &v->eom, err))
    goto fail;
  if (v->kind == PF_TOK_BPE && pre_tokenizer(v, g, err)) goto fail;
  /* As llama.cpp: SentencePiece vocabularies add BOS, byte-level BPE ones only with some pre-tokenizers
  ** (Llama 3's); the file's flags decide when present. */
  v->add_bos = read_bool(g, "tokenizer.ggml.add_bos_token", v->kind == PF_TOK_SPM || v->pre == PF_PRE_LLAMA3) && v->bos >= 0;
  v->add_eos = read_bool(g, "tokenizer.ggml.add_eos_token", 0) && v->eos >= 0;
  v->add_space_prefix = read_bool(g, "tokenizer.ggml.add_space_prefix", v->kind == PF_TOK_SPM);
  if (special_tokens(v, g)) goto nomem;
  return PF_OK;
nomem:
  pf_seterr(err, PF_NOMEM, "out of memory loading a vocabulary of %d tokens", n);
fail:
  pf_vocab_free(v);
  return err ? err->code : PF_ERR;
}

/* ------------------------------------------------ merging (SPM and BPE) */

typedef struct bigram { float score; int left, size; } bigram;

static int bg_less(const bigram *a, const bigram *b) { /* a below b in the max-heap? */
  if (a->score != b->score) return a->score < b->score;
  return a->left > b->left;
}
typedef struct heap { bigram *a; int n, cap; } heap;
static int heap_push(heap *h, bigram b) {
  if (h->n == h->cap) {
    int nc = h->cap ? h->cap * 2 : 64;
    bigram *na = realloc(h->a, sizeof *na * (size_t)nc);
    if (!na) return -1;
    h->a = na; h->cap = nc;
  }
  int i = h->n++;
  h->a[i] = b;
  while (i > 0) {
    int p = (i - 1) / 2;
    if (!bg_less(&h->a[p], &h->a[i])) break;
    bigram t = h->a[p]; h->a[p] = h->a[i]; h->a[i] = t;
    i = p;
  }
  return 0;
}
static bigram heap_pop(heap *h) {
  bigram top = h->a[0];
  h->a[0] = h->a[--h->n];
  int i = 0;
  for (;;) {
    int l = 2 * i + 1, r = l + 1, m = i;
    if (l < h->n && bg_less(&h->a[m], &h->a[l])) m = l;
    if (r < h->n && bg_less(&h->a[m], &h->a[r])) m = r;
    if (m == i) break;
    bigram t = h->a[m]; h->a[m] = h->a[i]; h->a[i] = t;
    i = m;
  }
  return top;
}

static int try_bigram(const pf_vocab *v, const char *buf, const pf_sym *s, int l, int r, pf_pair_fn pair, heap *h) {
  if (l < 0 || r < 0) return 0;
  float score;
  int id;
  if (!pair(v, buf, &s[l], &s[r], &score, &id)) return 0;
  bigram b = {score, l, s[l].len + s[r].len};
  return heap_push(h, b);
}

/* Merge adjacent symbols, best pair first (highest score; ties: leftmost),
** until no pair merges. The linked list s[0..ns) is updated in place. */
int pf_merge_symbols(const pf_vocab *v, const char *buf, pf_sym *s, int ns, pf_pair_fn pair) {
  heap h = {0};
  for (int i = 1; i < ns; i++) if (try_bigram(v, buf, s, i - 1, i, pair, &h)) goto nomem;
  while (h.n > 0) {
    bigram b = heap_pop(&h);
    pf_sym *L = &s[b.left];
    if (L->len == 0 || L->next < 0) continue;
    pf_sym *R = &s[L->next];
    if (L->len + R->len != b.size) continue;   /* stale */
    float score;
    int id;
    pair(v, buf, L, R, &score, &id);
    L->len += R->len;
    L->id = id;
    R->len = 0;
    L->next = R->next;
    if (R->next >= 0) s[R->next].prev = b.left;
    if (try_bigram(v, buf, s, L->prev, b.left, pair, &h) || try_bigram(v, buf, s, b.left, L->next, pair, &h)) goto nomem;
  }
  free(h.a);
  return 0;
nomem:
  free(h.a);
  return -1;
}

int pf_push_id(int **ids, int *n, int *cap, int id) {
  if (*n == *cap) {
    int nc = *cap ? *cap * 2 : 64;
    int *na = realloc(*ids, sizeof(int) * (size_t)nc);
    if (!na) return -1;
    *ids = na; *cap = nc;
  }
  (*ids)[(*n)++] = id;
  return 0;
}

