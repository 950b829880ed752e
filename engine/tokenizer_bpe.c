/*
** tokenizer_bpe.c — byte-level BPE (tokenizer.ggml.model = gpt2).
**
** Text is split at special tokens (matched verbatim), then by GPT-2's
** pre-tokenizer — contractions 's 't 're 've 'm 'll 'd, an optional space plus
** a run of letters, or of numbers, or of other symbols, and whitespace runs
** (the last space of a run goes with the word after it) — with categories
** from utf8proc. Each piece's bytes start as single-byte tokens (bytes are
** stored as printable characters, GPT-2's byte-to-unicode mapping) and the
** pair with the lowest merge rank is merged, again and again.
*/
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* GPT-2's byte -> code point mapping: printable Latin-1 bytes map to
** themselves, the others to 256, 257, ... in byte order. */
static int byte_to_cp(int b) {
  if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255)) return b;
  int n = 0;
  for (int x = 0; x < b; x++)
    if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255))) n++;
  return 256 + n;
}

int pf_gpt2_byte_utf8(int b, char out[3]) {
  int cp = byte_to_cp(b);
  if (cp < 0x80) { out[0] = (char)cp; out[1] = 0; return 1; }
  out[0] = (char)(0xC0 | (cp >> 6)), out[1] = (char)(0x80 | (cp & 0x3F)), out[2] = 0;
  return 2;
}

void pf_bpe_free(pf_vocab *v) {
  if (v->bytes) for (int i = 0; i < v->n; i++) free(v->bytes[i]);
  free(v->bytes); free(v->nbytes); free(v->mkey); free(v->mrank); free(v->mres); free(v->special);
  v->bytes = NULL; v->nbytes = NULL; v->mkey = NULL; v->mrank = NULL; v->mres = NULL; v->special = NULL;
}

static uint32_t pair_hash(uint64_t k) {
  k ^= k >> 33; k *= 0xff51afd7ed558ccdull; k ^= k >> 33; k *= 0xc4ceb9fe1a85ec53ull; k ^= k >> 33;
  return (uint32_t)k;
}

static int merge_find(const pf_vocab *v, int a, int b, int *rank, int *res) {
  if (!v->mkey) return 0;
  uint64_t key = ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) + 1;
  for (uint32_t i = pair_hash(key) & (v->mcap - 1);; i = (i + 1) & (v->mcap - 1)) {
    if (v->mkey[i] == 0) return 0;
    if (v->mkey[i] == key) { *rank = v->mrank[i]; *res = v->mres[i]; return 1; }
  }
}

static void show(char *out, size_t cap, const char *s, size_t n) {
  snprintf(out, cap, "%.*s", (int)(n < 60 ? n : 60), s);
}

int pf_bpe_load(pf_vocab *v, const gguf_file *g, pf_err *err) {
  int cp_to_byte[512];
  for (int i = 0; i < 512; i++) cp_to_byte[i] = -1;
  for (int b = 0; b < 256; b++) cp_to_byte[byte_to_cp(b)] = b;
  v->bytes = calloc((size_t)v->n, sizeof *v->bytes);
  v->nbytes = calloc((size_t)v->n, sizeof *v->nbytes);
  if (!v->bytes || !v->nbytes) return pf_seterr(err, PF_NOMEM, "out of memory loading the gpt2 vocabulary");
  int n_special = 0;
  for (int i = 0; i < v->n; i++) {
    const uint8_t *t = (const uint8_t *)v->text[i];
    utf8proc_ssize_t len = v->len[i], o = 0;
    v->bytes[i] = malloc((size_t)len + 1);
    if (!v->bytes[i]) return pf_seterr(err, PF_NOMEM, "out of memory loading the gpt2 vocabulary");
    int k = 0;
    int special = v->type[i] == PF_TT_CONTROL || v->type[i] == PF_TT_USER;
    while (o < len) {
      utf8proc_int32_t cp;
      utf8proc_ssize_t r = utf8proc_iterate(t + o, len - o, &cp);
      if (r <= 0) { v->bytes[i][k++] = (char)t[o++]; continue; }
      if (!special && cp < 512 && cp_to_byte[cp] >= 0) v->bytes[i][k++] = (char)cp_to_byte[cp];
      else { memcpy(v->bytes[i] + k, t + o, (size_t)r); k += (int)r; }   /* kept as written */
      o += r;
    }
    v->nbytes[i] = k;
    if (special && v->len[i] > 0) n_special++;
  }
  for (int b = 0; b < 256; b++) {
    char u[4];
    int cp = byte_to_cp(b), n = cp < 0x80 ? 1 : 2;
    if (n == 1) u[0] = (char)cp;
    else { u[0] = (char)(0xC0 | (cp >> 6)); u[1] = (char)(0x80 | (cp & 0x3F)); }
    v->byte_id[b] = pf_vocab_find(v, u, (size_t)n);
    if (v->byte_id[b] < 0)
      return pf_seterr(err, PF_ERR, "the gpt2 vocabulary has no token for byte 0x%02X (a byte-level BPE needs all 256)", b);
  }
  v->special = malloc(sizeof(int) * (size_t)(n_special + 1));
  if (!v->special) return pf_seterr(err, PF_NOMEM, "out of memory");
  for (int i = 0; i < v->n; i++)
    if ((v->type[i] == PF_TT_CONTROL || v->type[i] == PF_TT_USER) && v->len[i] > 0) v->special[v->n_special++] = i;

  const gguf_kv *mg = gguf_find(g, "tokenizer.ggml.merges");
  if (!mg) return pf_seterr(err, PF_ERR, "GGUF tokenizer.ggml.merges is missing (a gpt2 tokenizer needs its merges)");
  if (mg->type != GGUF_T_ARRAY || mg->arr_type != GGUF_T_STRING)
    return pf_seterr(err, PF_ERR, "GGUF tokenizer.ggml.merges must be an array of strings");
  if (mg->arr_n > (1u << 24))
    return pf_seterr(err, PF_ERR, "GGUF tokenizer.ggml.merges has %llu entries (limit %u)", (unsigned long long)mg->arr_n, 1u << 24);
  v->n_merges = (int)mg->arr_n;
  v->mcap = 16;
  while (v->mcap < (uint32_t)v->n_merges * 2) v->mcap <<= 1;
  v->mkey = calloc(v->mcap, sizeof *v->mkey);
  v->mrank = malloc(sizeof(int) * v->mcap);
  v->mres = malloc(sizeof(int) * v->mcap);
  if (!v->mkey || !v->mrank || !v->mres) return pf_seterr(err, PF_NOMEM, "out of memory loading %d merges", v->n_merges);
  uint64_t off = mg->arr_off;
  char *cat = NULL;
  size_t catcap = 0;
  for (int r = 0; r < v->n_merges; r++) {
    uint64_t n;
    memcpy(&n, g->base + off, 8);
    const char *m = (const char *)g->base + off + 8;
    off += 8 + n;
    const char *sp = memchr(m, ' ', (size_t)n);
    char shown[80];
    show(shown, sizeof shown, m, (size_t)n);
    if (!sp || sp == m || sp == m + n - 1) {
      free(cat);
      return pf_seterr(err, PF_ERR, "GGUF tokenizer.ggml.merges[%d] '%s' is not two tokens separated by a space", r, shown);
    }
    size_t la = (size_t)(sp - m), lb = (size_t)n - la - 1;
    int a = pf_vocab_find(v, m, la), b = pf_vocab_find(v, sp + 1, lb);
    if (a < 0 || b < 0) {
      char bad[80];
      show(bad, sizeof bad, a < 0 ? m : sp + 1, a < 0 ? la : lb);
      free(cat);
      return pf_seterr(err, PF_ERR, "GGUF tokenizer.ggml.merges[%d] '%s': '%s' is not a token", r, shown, bad);
    }
    if (la + lb > catcap) {
      catcap = (la + lb) * 2;
      char *nc = realloc(cat, catcap);
      if (!nc) { free(cat); return pf_seterr(err, PF_NOMEM, "out of memory"); }
      cat = nc;
    }
    memcpy(cat, m, la);
    memcpy(cat + la, sp + 1, lb);
    int res = pf_vocab_find(v, cat, la + lb);
    if (res < 0) {
      char merged[80];
      show(merged, sizeof merged, cat, la + lb);
      free(cat);
      return pf_seterr(err, PF_ERR, "GGUF tokenizer.ggml.merges[%d] '%s' makes '%s', which is not a token", r, shown, merged);
    }
    uint64_t key = ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) + 1;
    uint32_t i = pair_hash(key) & (v->mcap - 1);
    while (v->mkey[i] && v->mkey[i] != key) i = (i + 1) & (v->mcap - 1);
    if (!v->mkey[i]) { v->mkey[i] = key; v->mrank[i] = r; v->mres[i] = res; }  /* first rank wins */
  }
  free(cat);
  return PF_OK;
}

int pf_bpe_token_bytes(const pf_vocab *v, int id, char *buf, int cap) {
  int n = v->nbytes[id] < cap ? v->nbytes[id] : cap;
  memcpy(buf, v->bytes[id], (size_t)n);
  return n;
}

/* ------------------------------------------------------------ pre-tokenizer */

enum { C_OTHER, C_LETTER, C_NUMBER, C_SPACE };

static int is_white(int32_t c) {
  return (c >= 9 && c <= 13) || c == 32 || c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) ||
         c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

static int cls(int32_t c) {
  if (c < 0) return C_OTHER;   /* a byte that is not UTF-8 */
  if (is_white(c)) return C_SPACE;
  switch (utf8proc_category(c)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO: return C_LETTER;
    case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_NO: return C_NUMBER;
    default: return C_OTHER;
  }
}

/* BPE: a pair merges when the merges list has it; a lower rank merges first. */
static int bpe_pair(const pf_vocab *v, const char *buf, const pf_sym *a, const pf_sym *b, float *score, int *id) {
  (void)buf;
  int rank;
  if (!merge_find(v, a->id, b->id, &rank, id)) return 0;
  *score = -(float)rank;
  return 1;
}

/* Encode one pre-tokenized piece. */
static int encode_word(const pf_vocab *v, const char *w, int n, pf_sym *s, int **ids, int *nid, int *cap) {
  for (int i = 0; i < n; i++) {
    s[i].start = i; s[i].len = 1; s[i].prev = i - 1; s[i].next = i + 1 < n ? i + 1 : -1;
    s[i].id = v->byte_id[(unsigned char)w[i]];
  }
  if (pf_merge_symbols(v, w, s, n, bpe_pair)) return -1;
  for (int i = 0; i != -1; i = s[i].next)
    if (pf_push_id(ids, nid, cap, s[i].id)) return -1;
  return 0;
}

/* Split [text, text+len) (no special tokens inside) into GPT-2 pieces and encode them. */
static int encode_segment(const pf_vocab *v, const char *text, size_t len, int **ids, int *nid, int *cap, pf_err *err) {
  if (len == 0) return PF_OK;
  /* code points with their byte offsets; a byte that is not UTF-8 stands alone */
  int32_t *cp = malloc(sizeof(int32_t) * (len + 1));
  int *off = malloc(sizeof(int) * (len + 1));
  pf_sym *s = malloc(sizeof(pf_sym) * (len + 1));
  int rc = PF_OK;
  if (!cp || !off || !s) { rc = pf_seterr(err, PF_NOMEM, "out of memory tokenizing"); goto done; }
  int n = 0;
  for (size_t o = 0; o < len;) {
    utf8proc_int32_t c;
    utf8proc_ssize_t r = utf8proc_iterate((const uint8_t *)text + o, (utf8proc_ssize_t)(len - o), &c);
    off[n] = (int)o;
    if (r <= 0) { cp[n++] = -1; o++; }
    else { cp[n++] = c; o += (size_t)r; }
  }
  off[n] = (int)len;
  for (int i = 0; i < n;) {
    int j = i + 1;
    if (cp[i] == '\'' && i + 1 < n) {
      int a = cp[i + 1], b = i + 2 < n ? cp[i + 2] : 0;
      if (a == 's' || a == 't' || a == 'm' || a == 'd') j = i + 2;
      else if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) j = i + 3;
    }
    if (j == i + 1) {
      int c = cls(cp[i]);
      if (cp[i] == ' ' && i + 1 < n && cls(cp[i + 1]) != C_SPACE) {   /* " ?" + a run */
        int k = cls(cp[i + 1]);
        j = i + 2;
        while (j < n && cls(cp[j]) == k) j++;
      } else if (c != C_SPACE) {
        while (j < n && cls(cp[j]) == c) j++;
      } else {                                                          /* whitespace */
        while (j < n && cls(cp[j]) == C_SPACE) j++;
        if (j < n && j - i > 1) j--;                /* leave the last one for the next word */
        else if (j < n) j = i + 1;
      }
    }
    if (encode_word(v, text + off[i], off[j] - off[i], s, ids, nid, cap)) {
      rc = pf_seterr(err, PF_NOMEM, "out of memory tokenizing");
      goto done;
    }
    i = j;
  }
done:
  free(cp); free(off); free(s);
  return rc;
}

int pf_bpe_encode(const pf_vocab *v, const char *text, size_t len, int **ids, int *n, int *cap, pf_err *err) {
  size_t pos = 0;
  while (pos < len) {
    /* the earliest special token at or after pos (the longest one there) */
    size_t best = len;
    int best_id = -1;
    for (int k = 0; k < v->n_special; k++) {
      int id = v->special[k];
      const char *f = memmem(text + pos, len - pos, v->text[id], (size_t)v->len[id]);
      if (!f) continue;
      size_t at = (size_t)(f - text);
      if (at < best || (at == best && best_id >= 0 && v->len[id] > v->len[best_id])) { best = at; best_id = id; }
    }
    int rc = encode_segment(v, text + pos, best - pos, ids, n, cap, err);
    if (rc) return rc;
    if (best_id < 0) break;
    if (pf_push_id(ids, n, cap, best_id)) return pf_seterr(err, PF_NOMEM, "out of memory tokenizing");
    pos = best + (size_t)v->len[best_id];
  }
  return PF_OK;
}
