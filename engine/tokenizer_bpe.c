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
  free(v->bytes); free(v->nbytes); free(v->mkey); free(v->mrank); free(v->mres);
  v->bytes = NULL; v->nbytes = NULL; v->mkey = NULL; v->mrank = NULL; v->mres = NULL;
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

/* ------------------------------------------------------------ pre-tokenizers
** Each is the regular expressions llama.cpp uses for that tokenizer.ggml.pre,
** written out as scanners over code points: a scanner returns the length of
** its expression's match at position i of a piece (0: no match there).
** Expressions that match everywhere split a piece completely; the others
** cut out their matches and leave the text between as pieces, and a
** pre-tokenizer applies its expressions one after another. Categories come
** from utf8proc: \p{L} letters, \p{N} numbers, \s Unicode white space. */

static int is_white(int32_t c) {
  return (c >= 9 && c <= 13) || c == 32 || c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) ||
         c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}
static int is_L(int32_t c) {
  if (c < 0) return 0;   /* a byte that is not UTF-8 */
  switch (utf8proc_category(c)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO: return 1;
    default: return 0;
  }
}
static int is_N(int32_t c) {
  if (c < 0) return 0;
  switch (utf8proc_category(c)) {
    case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_NO: return 1;
    default: return 0;
  }
}
static int is_P(int32_t c) {   /* \p{P}, and the symbols llama.cpp's default expression adds: $ + < = > ^ ~ | */
  if (c < 0) return 0;
  if (c == '$' || c == '+' || c == '<' || c == '=' || c == '>' || c == '^' || c == '~' || c == '|') return 1;
  switch (utf8proc_category(c)) {
    case UTF8PROC_CATEGORY_PC: case UTF8PROC_CATEGORY_PD: case UTF8PROC_CATEGORY_PS: case UTF8PROC_CATEGORY_PE:
    case UTF8PROC_CATEGORY_PI: case UTF8PROC_CATEGORY_PF: case UTF8PROC_CATEGORY_PO: return 1;
    default: return 0;
  }
}
static int is_nl(int32_t c) { return c == '\r' || c == '\n'; }
static int lower(int32_t c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }
enum { C_OTHER, C_LETTER, C_NUMBER, C_SPACE };
static int cls(int32_t c) { return is_white(c) ? C_SPACE : is_L(c) ? C_LETTER : is_N(c) ? C_NUMBER : C_OTHER; }

/* 's 't 're 've 'm 'll 'd (any case when ci) */
static int contraction(const int32_t *cp, int n, int i, int ci) {
  if (cp[i] != '\'' || i + 1 >= n) return 0;
  int a = ci ? lower(cp[i + 1]) : cp[i + 1], b = i + 2 < n ? (ci ? lower(cp[i + 2]) : cp[i + 2]) : 0;
  if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
  if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
  return 0;
}

/* GPT-2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
static int scan_gpt2(const int32_t *cp, int n, int i) {
  int j = contraction(cp, n, i, 0);
  if (j) return j;
  int c = cls(cp[i]);
  if (cp[i] == ' ' && i + 1 < n && cls(cp[i + 1]) != C_SPACE) {   /* " ?" + a run */
    int k = cls(cp[i + 1]);
    for (j = i + 2; j < n && cls(cp[j]) == k;) j++;
    return j - i;
  }
  if (c != C_SPACE) {
    for (j = i + 1; j < n && cls(cp[j]) == c;) j++;
    return j - i;
  }
  for (j = i + 1; j < n && cls(cp[j]) == C_SPACE;) j++;
  if (j < n && j - i > 1) return j - 1 - i;   /* \s+(?!\S): leave the last space to the word after it */
  return j - i;
}

/* Llama 3 (digits 3 at a time) and Qwen2 (one at a time):
** (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ */
static int scan_llama3_n(const int32_t *cp, int n, int i, int max_digits) {
  int j = contraction(cp, n, i, 1);
  if (j) return j;
  int32_t c = cp[i];
  if (!is_nl(c) && !is_L(c) && !is_N(c) && i + 1 < n && is_L(cp[i + 1])) {   /* one symbol (or space) + letters */
    for (j = i + 2; j < n && is_L(cp[j]);) j++;
    return j - i;
  }
  if (is_L(c)) {
    for (j = i + 1; j < n && is_L(cp[j]);) j++;
    return j - i;
  }
  if (is_N(c)) {
    for (j = i + 1; j < n && is_N(cp[j]) && j - i < max_digits;) j++;
    return j - i;
  }
  int k = c == ' ' ? i + 1 : i;
  if (k < n && !is_white(cp[k]) && !is_L(cp[k]) && !is_N(cp[k])) {   /* symbols, then newlines */
    for (j = k + 1; j < n && !is_white(cp[j]) && !is_L(cp[j]) && !is_N(cp[j]);) j++;
    while (j < n && is_nl(cp[j])) j++;
    return j - i;
  }
  if (is_white(c)) {
    int end = i, last_nl = -1;
    while (end < n && is_white(cp[end])) { if (is_nl(cp[end])) last_nl = end; end++; }
    if (last_nl >= 0) return last_nl + 1 - i;   /* \s*[\r\n]+ */
    if (end == n || end - i == 1) return end - i;   /* \s+(?!\S) at the end, or \s+ */
    return end - 1 - i;   /* \s+(?!\S): leave the last space to what follows */
  }
  return 1;
}
static int scan_llama3(const int32_t *cp, int n, int i) { return scan_llama3_n(cp, n, i, 3); }
static int scan_qwen2(const int32_t *cp, int n, int i) { return scan_llama3_n(cp, n, i, 1); }

/* llama.cpp's default expressions: [\p{P}\$\+<=>\^~\|]+ then GPT-2's, then \p{N}+, then [0-9][0-9][0-9] */
static int scan_punct(const int32_t *cp, int n, int i) {
  int j = i;
  while (j < n && is_P(cp[j])) j++;
  return j - i;
}
static int scan_numbers(const int32_t *cp, int n, int i) {
  int j = i;
  while (j < n && is_N(cp[j])) j++;
  return j - i;
}
static int scan_digits3(const int32_t *cp, int n, int i) {
  return i + 2 < n && cp[i] >= '0' && cp[i] <= '9' && cp[i + 1] >= '0' && cp[i + 1] <= '9' && cp[i + 2] >= '0' &&
                 cp[i + 2] <= '9' ? 3 : 0;
}
static int scan_number1(const int32_t *cp, int n, int i) { (void)n; return is_N(cp[i]) ? 1 : 0; }

typedef int (*scan_fn)(const int32_t *cp, int n, int i);

/* BPE: a pair merges when the merges list has it; a lower rank merges first. */
static int bpe_pair(const pf_vocab *v, const char *buf, const pf_sym *a, const pf_sym *b, float *score, int *id) {
  (void)buf;
  int rank;
  if (!merge_find(v, a->id, b->id, &rank, id)) return 0;
  *score = -(float)rank;
  return 1;
}

/* Encode one pre-tokenized piece (its bytes). tmp holds 2 bytes per byte of the piece. */
static int encode_word(const pf_vocab *v, const char *w, int n, pf_sym *s, char *tmp, int **ids, int *nid, int *cap) {
  if (v->ignore_merges && n > 1) {   /* the whole piece is a token: taken as it is */
    int o = 0;
    for (int i = 0; i < n; i++) o += pf_gpt2_byte_utf8((unsigned char)w[i], tmp + o);
    int id = pf_vocab_find(v, tmp, (size_t)o);
    if (id >= 0) return pf_push_id(ids, nid, cap, id);
  }
  for (int i = 0; i < n; i++) {
    s[i].start = i; s[i].len = 1; s[i].prev = i - 1; s[i].next = i + 1 < n ? i + 1 : -1;
    s[i].id = v->byte_id[(unsigned char)w[i]];
  }
  if (pf_merge_symbols(v, w, s, n, bpe_pair)) return -1;
  for (int i = 0; i != -1; i = s[i].next)
    if (pf_push_id(ids, nid, cap, s[i].id)) return -1;
  return 0;
}

/* Split text (no special tokens inside) into pieces by the vocabulary's pre-tokenizer and encode them. */
int pf_bpe_encode(const pf_vocab *v, const char *text, size_t len, int **ids, int *nid, int *cap, pf_err *err) {
  if (len == 0) return PF_OK;
  static const scan_fn pre_default[] = {scan_punct, scan_gpt2, scan_numbers, scan_digits3};
  static const scan_fn pre_gpt2[] = {scan_gpt2}, pre_llama3[] = {scan_llama3}, pre_qwen2[] = {scan_qwen2};
  static const scan_fn pre_smollm[] = {scan_number1, scan_gpt2};
  const scan_fn *scans;
  int n_scans;
  switch (v->pre) {
    case PF_PRE_GPT2: scans = pre_gpt2, n_scans = 1; break;
    case PF_PRE_LLAMA3: scans = pre_llama3, n_scans = 1; break;
    case PF_PRE_QWEN2: scans = pre_qwen2, n_scans = 1; break;
    case PF_PRE_SMOLLM: scans = pre_smollm, n_scans = 2; break;
    default: scans = pre_default, n_scans = 4; break;
  }
  /* code points with their byte offsets; a byte that is not UTF-8 stands alone (-1) */
  int32_t *cp = malloc(sizeof(int32_t) * (len + 1));
  int *off = malloc(sizeof(int) * (len + 1)), *cut = malloc(sizeof(int) * (len + 2)), *cut2 = malloc(sizeof(int) * (len + 2));
  pf_sym *s = malloc(sizeof(pf_sym) * (len + 1));
  char *tmp = malloc(2 * len + 1);
  int rc = PF_OK;
  if (!cp || !off || !cut || !cut2 || !s || !tmp) { rc = pf_seterr(err, PF_NOMEM, "out of memory tokenizing"); goto done; }
  int n = 0;
  for (size_t o = 0; o < len;) {
    utf8proc_int32_t c;
    utf8proc_ssize_t r = utf8proc_iterate((const uint8_t *)text + o, (utf8proc_ssize_t)(len - o), &c);
    off[n] = (int)o;
    if (r <= 0) { cp[n++] = -1; o++; }
    else { cp[n++] = c; o += (size_t)r; }
  }
  off[n] = (int)len;
  /* piece boundaries (code point indices), refined by each expression in turn */
  int nc = 2;
  cut[0] = 0, cut[1] = n;
  for (int e = 0; e < n_scans; e++) {
    int m = 0;
    for (int p = 0; p + 1 < nc; p++) {
      int a = cut[p], b = cut[p + 1], gap = a;
      cut2[m++] = a;
      for (int i = a; i < b;) {
        int k = scans[e](cp + a, b - a, i - a);
        if (k <= 0) { i++; continue; }
        if (i > gap) cut2[m++] = i;   /* the text before the match */
        if (i + k < b) cut2[m++] = i + k;
        i += k;
        gap = i;
      }
    }
    cut2[m++] = n;
    int *t = cut; cut = cut2; cut2 = t;
    nc = m;
  }
  for (int p = 0; p + 1 < nc; p++)
    if (cut[p + 1] > cut[p] &&
        encode_word(v, text + off[cut[p]], off[cut[p + 1]] - off[cut[p]], s, tmp, ids, nid, cap)) {
      rc = pf_seterr(err, PF_NOMEM, "out of memory tokenizing");
      goto done;
    }
done:
  free(cp); free(off); free(cut); free(cut2); free(s); free(tmp);
  return rc;
}
