/*
** tokenizer.c — the tokenizer entry points, dispatching on the vocabulary kind,
** and UTF-8-safe decoding.
*/
#include "internal.h"

#include <stdlib.h>
#include <string.h>

int pf_bpe_token_bytes(const pf_vocab *v, int id, char *buf, int cap);

int pf_token_bos(const pf_model *m) { return m->vocab.bos; }
int pf_token_eos(const pf_model *m) { return m->vocab.eos; }
int pf_add_bos(const pf_model *m) { return m->vocab.add_bos; }
int pf_token_is_eog(const pf_model *m, int id) { return pf_vocab_is_eog(&m->vocab, id); }

int pf_tokenize(const pf_model *m, const char *text, size_t len, int add_special, int **ids, int *n_ids, pf_err *err) {
  return pf_tokenize_ex(m, text, len, pf_tok_flags(m, add_special, 1), ids, n_ids, err);
}

int pf_tok_flags(const pf_model *m, int add_special, int parse_special) {
  const pf_vocab *v = &m->vocab;
  return (add_special && v->add_bos ? PF_TOKF_BOS : 0) | (add_special && v->add_eos ? PF_TOKF_EOS : 0) |
         (v->add_space_prefix ? PF_TOKF_PREFIX : 0) | (parse_special ? PF_TOKF_SPECIAL : 0);
}

/* The earliest special token at or after pos (the longest there), or len. Without parse_special only
** user-defined tokens count, as in llama.cpp. */
static size_t next_special(const pf_vocab *v, const char *text, size_t len, size_t pos, int parse_special, int *id) {
  *id = -1;
  if (v->n_special == 0) return len;
  for (size_t i = pos; i < len; i++) {
    if (!v->special_first[(unsigned char)text[i]]) continue;
    for (int k = 0; k < v->n_special; k++) {   /* longest first */
      int t = v->special[k];
      if (!parse_special && v->type[t] != PF_TT_USER) continue;
      if ((size_t)v->len[t] <= len - i && (unsigned char)v->text[t][0] == (unsigned char)text[i] &&
          !memcmp(text + i, v->text[t], (size_t)v->len[t])) {
        *id = t;
        return i;
      }
    }
  }
  return len;
}

/* Text is split at special tokens (control, user-defined and unknown tokens written in it, matched verbatim,
** as llama.cpp does when it parses specials); the text between is encoded by the vocabulary's tokenizer. A
** SentencePiece fragment gets the space prefix at the start (space_prefix) and after a special token
** (when the vocabulary adds one), as llama.cpp's tokenizer does. */
int pf_tokenize_ex(const pf_model *m, const char *text, size_t len, int flags, int **ids, int *n_ids, pf_err *err) {
  const pf_vocab *v = &m->vocab;
  int *out = NULL, n = 0, cap = 0, rc = PF_OK, prefix = !!(flags & PF_TOKF_PREFIX);
  *ids = NULL;
  *n_ids = 0;
  if ((flags & PF_TOKF_BOS) && v->bos >= 0 && pf_push_id(&out, &n, &cap, v->bos)) goto nomem;
  for (size_t pos = 0; pos < len;) {
    int sid;
    size_t at = next_special(v, text, len, pos, flags & PF_TOKF_SPECIAL, &sid);
    if (at > pos) {
      if (v->kind == PF_TOK_SPM) rc = pf_spm_encode(v, text + pos, at - pos, prefix, &out, &n, &cap, err);
      else rc = pf_bpe_encode(v, text + pos, at - pos, &out, &n, &cap, err);
      if (rc) { free(out); return rc; }
    }
    if (sid < 0) break;
    if (pf_push_id(&out, &n, &cap, sid)) goto nomem;
    prefix = v->add_space_prefix;
    pos = at + (size_t)v->len[sid];
    if (v->rstrip[sid])
      while (pos < len && (text[pos] == ' ' || (text[pos] >= '\t' && text[pos] <= '\r'))) pos++;
  }
  if ((flags & PF_TOKF_EOS) && v->eos >= 0 && pf_push_id(&out, &n, &cap, v->eos)) goto nomem;
  if (!out && !(out = malloc(sizeof(int)))) goto nomem;
  *ids = out;
  *n_ids = n;
  return PF_OK;
nomem:
  free(out);
  return pf_seterr(err, PF_NOMEM, "out of memory tokenizing");
}

/* Tokens that decode to nothing. SentencePiece-style vocabularies hide their
** control tokens (<s>, </s>) as sentencepiece does; byte-level BPE decodes its
** special tokens to their text (<|endoftext|>), as GPT-2's tokenizer does,
** so that decode(encode(text)) == text — except the BOS the tokenizer itself
** puts in front (Llama 3's <|begin_of_text|>). */
static int is_special(const pf_vocab *v, int id) {
  if (v->kind == PF_TOK_BPE) return v->type[id] == PF_TT_UNUSED || (id == v->bos && v->add_bos);
  return id == v->bos || id == v->eos || v->type[id] == PF_TT_CONTROL || v->type[id] == PF_TT_UNUSED;
}

int pf_token_bytes(const pf_model *m, int id, char *buf, int cap) {
  const pf_vocab *v = &m->vocab;
  if (id < 0 || id >= v->n) return -1;
  if (v->kind == PF_TOK_BPE) return pf_bpe_token_bytes(v, id, buf, cap);
  if (v->type[id] == PF_TT_BYTE) {   /* the load accepted only <0xHH> as BYTE */
    int b = pf_byte_token_value(v->text[id], v->len[id]);
    if (b >= 0) {
      if (cap < 1) return 0;
      buf[0] = (char)b;
      return 1;
    }
  }
  /* "▁" (E2 96 81) -> ' ' */
  const char *t = v->text[id];
  int o = 0;
  for (int i = 0; i < v->len[id] && o < cap;) {
    if (i + 2 < v->len[id] && (unsigned char)t[i] == 0xE2 && (unsigned char)t[i + 1] == 0x96 &&
        (unsigned char)t[i + 2] == 0x81) { buf[o++] = ' '; i += 3; }
    else buf[o++] = t[i++];
  }
  return o;
}

/* Length of the valid UTF-8 sequence at s (n bytes available): 1..4, or 0 if
** invalid, or -k if it is a valid but incomplete start needing more bytes. */
static int utf8_valid(const unsigned char *s, size_t n) {
  unsigned c = s[0];
  int need;
  unsigned min;
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) { need = 2; min = 0x80; }
  else if (c >= 0xE0 && c <= 0xEF) { need = 3; min = 0x800; }
  else if (c >= 0xF0 && c <= 0xF4) { need = 4; min = 0x10000; }
  else return 0;
  unsigned cp = c & (0x7F >> need);
  for (int i = 1; i < need; i++) {
    if ((size_t)i >= n) return -need;
    if ((s[i] & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (s[i] & 0x3F);
    /* reject overlong / surrogate / >U+10FFFF early when possible */
    if (i == 1) {
      if (need == 3 && c == 0xE0 && s[1] < 0xA0) return 0;
      if (need == 3 && c == 0xED && s[1] > 0x9F) return 0;
      if (need == 4 && c == 0xF0 && s[1] < 0x90) return 0;
      if (need == 4 && c == 0xF4 && s[1] > 0x8F) return 0;
    }
  }
  return cp >= min ? need : 0;
}

/* Copy bytes to valid UTF-8: invalid bytes become U+FFFD. An incomplete
** sequence at the very end becomes U+FFFD (tail_mode 0) or is dropped
** (tail_mode 1, for text still being generated). Returns malloc'ed text. */
char *pf_utf8_clean(const char *in, size_t n, int tail_mode, size_t *out_len) {
  char *out = malloc(n * 3 + 1);
  if (!out) return NULL;
  size_t o = 0;
  const unsigned char *s = (const unsigned char *)in;
  for (size_t i = 0; i < n;) {
    int k = utf8_valid(s + i, n - i);
    if (k > 0) { memcpy(out + o, s + i, (size_t)k); o += (size_t)k; i += (size_t)k; continue; }
    if (k < 0 && tail_mode == 1) break;       /* incomplete tail: hold back */
    memcpy(out + o, "\xEF\xBF\xBD", 3);
    o += 3;
    i += k < 0 ? n - i : 1;
  }
  out[o] = 0;
  if (out_len) *out_len = o;
  return out;
}

char *pf_utf8_clean_text(const char *in, size_t n, size_t *out_len) { return pf_utf8_clean(in, n, 0, out_len); }

/* Bytes of in[0..n) up to the start of an incomplete UTF-8 sequence at the end (n if there is none): the
** part pf_utf8_clean(.., 1, ..) can convert now without waiting for more bytes. */
size_t pf_utf8_complete(const char *in, size_t n) {
  const unsigned char *s = (const unsigned char *)in;
  for (size_t i = 0; i < n;) {
    int k = utf8_valid(s + i, n - i);
    if (k < 0) return i;
    i += k > 0 ? (size_t)k : 1;
  }
  return n;
}

/* Append the bytes of ids to a growing buffer. */
int pf_ids_to_bytes(const pf_model *m, const int *ids, int n_ids, int strip_leading, char **buf, size_t *len,
                    pf_err *err) {
  size_t cap = 64 + (size_t)n_ids * 8, o = 0;
  char *b = malloc(cap);
  if (!b) return pf_seterr(err, PF_NOMEM, "out of memory decoding %d tokens", n_ids);
  int first = 1;
  for (int i = 0; i < n_ids; i++) {
    if (ids[i] < 0 || ids[i] >= m->vocab.n) {
      free(b);
      return pf_seterr(err, PF_ERR, "token id %d at index %d is outside the vocabulary (0..%d)", ids[i], i,
                       m->vocab.n - 1);
    }
    if (is_special(&m->vocab, ids[i])) continue;
    int need = m->vocab.len[ids[i]] + 8;
    if (o + (size_t)need > cap) {
      size_t nc = cap * 2 + (size_t)need;
      char *nb = realloc(b, nc);
      if (!nb) { free(b); return pf_seterr(err, PF_NOMEM, "out of memory decoding %d tokens", n_ids); }
      b = nb; cap = nc;
    }
    int k = pf_token_bytes(m, ids[i], b + o, (int)(cap - o));
    if (first && strip_leading && m->vocab.add_space_prefix && k > 0 && b[o] == ' ') {
      memmove(b + o, b + o + 1, (size_t)k - 1);
      k--;
    }
    first = 0;
    o += (size_t)k;
  }
  *buf = b;
  *len = o;
  return PF_OK;
}

int pf_detokenize(const pf_model *m, const int *ids, int n_ids, int strip_leading, char **text, size_t *len,
                  pf_err *err) {
  char *raw;
  size_t n;
  int rc = pf_ids_to_bytes(m, ids, n_ids, strip_leading, &raw, &n, err);
  if (rc) return rc;
  *text = pf_utf8_clean(raw, n, 0, len);
  free(raw);
  if (!*text) return pf_seterr(err, PF_NOMEM, "out of memory decoding %d tokens", n_ids);
  return PF_OK;
}
