/*
** tokenizer_spm.c — the SentencePiece-style BPE tokenizer of
** `tokenizer.ggml.model = llama` (the vocabulary is loaded by vocab.c).
**
** Encoding: spaces become U+2581 "▁" (and one is put in front when
** add_space_prefix is on), the text is split into UTF-8 characters, and the
** adjacent pair whose concatenation is a token with the highest score is
** merged, again and again (ties: leftmost first). What remains outside the
** vocabulary falls back to byte tokens <0xXX>.
*/
#include "internal.h"

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ SPM encode */

static int utf8_len(unsigned char c) {
  if (c < 0x80) return 1;
  if ((c & 0xE0) == 0xC0) return 2;
  if ((c & 0xF0) == 0xE0) return 3;
  if ((c & 0xF8) == 0xF0) return 4;
  return 1;
}

/* SPM: two pieces merge when their concatenation is a token; its score ranks them. */
static int spm_pair(const pf_vocab *v, const char *buf, const pf_sym *a, const pf_sym *b, float *score, int *id) {
  *id = pf_vocab_find(v, buf + a->start, (size_t)(a->len + b->len));
  if (*id < 0) return 0;
  *score = v->score[*id];
  return 1;
}

int pf_spm_encode(const pf_vocab *v, const char *text, size_t len, int space_prefix, int **ids, int *n, int *cap,
                  pf_err *err) {
  if (len == 0) return PF_OK;
  if (len > (size_t)INT32_MAX / 4) return pf_seterr(err, PF_TOOBIG, "text of %zu bytes is too long to tokenize (limit %d)", len, INT32_MAX / 4);
  /* normalise: optional leading space, spaces -> U+2581 (3 bytes) */
  size_t spaces = space_prefix ? 1 : 0;
  for (size_t i = 0; i < len; i++) spaces += text[i] == ' ';
  size_t blen = len + 2 * spaces;
  char *buf = malloc(blen + 1);
  pf_sym *s = malloc(sizeof *s * (blen + 1));
  int rc = PF_OK;
  if (!buf || !s) goto nomem;
  size_t o = 0;
  if (space_prefix) { memcpy(buf, "\xE2\x96\x81", 3); o = 3; }
  for (size_t i = 0; i < len; i++) {
    if (text[i] == ' ') { memcpy(buf + o, "\xE2\x96\x81", 3); o += 3; }
    else buf[o++] = text[i];
  }
  int ns = 0;
  for (size_t i = 0; i < o;) {
    int l = utf8_len((unsigned char)buf[i]);
    if ((size_t)l > o - i) l = (int)(o - i);
    s[ns].start = (int)i; s[ns].len = l; s[ns].prev = ns - 1; s[ns].next = i + l < o ? ns + 1 : -1; s[ns].id = -1;
    ns++;
    i += l;
  }
  if (pf_merge_symbols(v, buf, s, ns, spm_pair)) goto nomem;
  for (int i = 0; i != -1 && ns > 0; i = s[i].next) {
    int id = pf_vocab_find(v, buf + s[i].start, (size_t)s[i].len);
    if (id >= 0) { if (pf_push_id(ids, n, cap, id)) goto nomem; continue; }
    for (int j = 0; j < s[i].len; j++) {
      int bt = v->byte_tok[(unsigned char)buf[s[i].start + j]];
      if (bt < 0) bt = v->unk;
      if (bt < 0) { rc = pf_seterr(err, PF_ERR, "cannot tokenize byte 0x%02X: no byte token and no unknown token",
                                   (unsigned char)buf[s[i].start + j]); goto done; }
      if (pf_push_id(ids, n, cap, bt)) goto nomem;
    }
  }
  goto done;
nomem:
  rc = pf_seterr(err, PF_NOMEM, "out of memory tokenizing %zu bytes", len);
done:
  free(buf); free(s);
  return rc;
}
