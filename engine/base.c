/*
** base.c — small helpers every part of the engine uses, with no dependency of their own.
*/
#include "internal.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* Every engine error: the message into *err (may be NULL), the code returned. */
int pf_seterr(pf_err *err, int code, const char *fmt, ...) {
  if (err) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    err->code = code;
  }
  return code;
}


/* seconds on a monotonic clock */
double pf_clock(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* GGUF files and prefix BLOBs are little-endian and read in place: a big-endian host is refused with a
** clear error instead of computing with byte-swapped numbers. pf_test_big_endian lets a test take that path. */
int pf_test_big_endian;
int pf_host_little_endian(void) {
  const uint16_t one = 1;
  return !pf_test_big_endian && *(const uint8_t *)&one == 1;
}

/* 64-bit hash of p[0..n): vocabulary tables, the BLOB checksum, the GGUF reader's duplicate checks. */
uint64_t pf_hash64(const void *p, size_t n, uint64_t seed) {
  /* 64-bit multiply-xorshift over 8-byte words; fast and well mixed. */
  const uint8_t *b = p;
  uint64_t h = seed ^ (0x9E3779B97F4A7C15ull * (n + 1));
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    memcpy(&w, b + i, 8);
    w *= 0xBF58476D1CE4E5B9ull;
    w ^= w >> 31;
    h = (h ^ w) * 0x94D049BB133111EBull;
    h ^= h >> 29;
  }
  uint64_t w = 0;
  if (n > i) memcpy(&w, b + i, n - i);   /* (p may be NULL when n is 0) */
  w *= 0xBF58476D1CE4E5B9ull;
  h = (h ^ w ^ (n - i)) * 0x94D049BB133111EBull;
  h ^= h >> 32;
  h *= 0xD6E8FEB86659FD93ull;
  h ^= h >> 32;
  return h;
}

/* A token's text for an error message: printable ASCII as is, other bytes as \xHH, cut to fit. */
void pf_quote_bytes(char *out, size_t cap, const char *p, size_t n) {
  size_t o = 0;
  if (cap < 8) { if (cap) out[0] = 0; return; }
  out[o++] = '\'';
  for (size_t i = 0; i < n; i++) {
    unsigned c = (unsigned char)p[i];
    if (o + 8 > cap) { memcpy(out + o, "...", 3); o += 3; break; }
    if (c >= 0x20 && c < 0x7f && c != '\\' && c != '\'') out[o++] = (char)c;
    else o += (size_t)snprintf(out + o, cap - o, "\\x%02X", c);
  }
  out[o++] = '\'';
  out[o] = 0;
}

/* JSON well-formedness without a parser library: a BLOB's metadata and a safetensors header are copied into
** prefix_info's JSON and into error texts, so they must be one well-formed JSON object (RFC 8259: UTF-8, no
** control characters in strings, nesting at most 64 deep). */
typedef struct jscan { const unsigned char *p, *end; int depth; } jscan;

static void j_ws(jscan *j) { while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r')) j->p++; }

static int j_lit(jscan *j, const char *w) {
  size_t n = strlen(w);
  if ((size_t)(j->end - j->p) < n || memcmp(j->p, w, n)) return 0;
  j->p += n;
  return 1;
}

static int j_string(jscan *j) {
  if (j->p >= j->end || *j->p != '"') return 0;
  j->p++;
  while (j->p < j->end) {
    unsigned c = *j->p;
    if (c == '"') { j->p++; return 1; }
    if (c < 0x20) return 0;
    if (c == '\\') {
      if (++j->p >= j->end) return 0;
      c = *j->p++;
      if (c == 'u') {
        for (int i = 0; i < 4; i++, j->p++)
          if (j->p >= j->end || !isxdigit(*j->p)) return 0;
      } else if (!strchr("\"\\/bfnrt", (int)c) || !c) return 0;
      continue;
    }
    if (c < 0x80) { j->p++; continue; }
    /* one UTF-8 sequence, shortest form, no surrogates, at most U+10FFFF */
    int need = c >= 0xC2 && c <= 0xDF ? 1 : c >= 0xE0 && c <= 0xEF ? 2 : c >= 0xF0 && c <= 0xF4 ? 3 : -1;
    if (need < 0 || j->end - j->p <= need) return 0;
    unsigned c1 = j->p[1];
    if ((c == 0xE0 && c1 < 0xA0) || (c == 0xED && c1 > 0x9F) || (c == 0xF0 && c1 < 0x90) || (c == 0xF4 && c1 > 0x8F)) return 0;
    for (int i = 1; i <= need; i++) if ((j->p[i] & 0xC0) != 0x80) return 0;
    j->p += need + 1;
  }
  return 0;
}

static int j_number(jscan *j) {
  const unsigned char *s = j->p;
  if (j->p < j->end && *j->p == '-') j->p++;
  if (j->p >= j->end) return 0;
  if (*j->p == '0') j->p++;
  else if (*j->p >= '1' && *j->p <= '9') while (j->p < j->end && isdigit(*j->p)) j->p++;
  else return 0;
  if (j->p < j->end && *j->p == '.') {
    j->p++;
    if (j->p >= j->end || !isdigit(*j->p)) return 0;
    while (j->p < j->end && isdigit(*j->p)) j->p++;
  }
  if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
    j->p++;
    if (j->p < j->end && (*j->p == '+' || *j->p == '-')) j->p++;
    if (j->p >= j->end || !isdigit(*j->p)) return 0;
    while (j->p < j->end && isdigit(*j->p)) j->p++;
  }
  return j->p > s;
}

static int j_value(jscan *j) {
  j_ws(j);
  if (j->p >= j->end) return 0;
  unsigned c = *j->p;
  if (c == '"') return j_string(j);
  if (c == '{' || c == '[') {
    if (++j->depth > 64) return 0;
    unsigned close = c == '{' ? '}' : ']';
    j->p++;
    j_ws(j);
    if (j->p < j->end && *j->p == close) { j->p++; j->depth--; return 1; }
    for (;;) {
      if (c == '{') {
        j_ws(j);
        if (!j_string(j)) return 0;
        j_ws(j);
        if (j->p >= j->end || *j->p++ != ':') return 0;
      }
      if (!j_value(j)) return 0;
      j_ws(j);
      if (j->p >= j->end) return 0;
      if (*j->p == ',') { j->p++; continue; }
      if (*j->p++ != close) return 0;
      j->depth--;
      return 1;
    }
  }
  if (c == 't') return j_lit(j, "true");
  if (c == 'f') return j_lit(j, "false");
  if (c == 'n') return j_lit(j, "null");
  return j_number(j);
}

/* 1 if p[0..n) is exactly one JSON object (white space around it allowed). */
int pf_json_is_object(const char *p, size_t n) {
  jscan j = {(const unsigned char *)p, (const unsigned char *)p + n, 0};
  j_ws(&j);
  if (j.p >= j.end || *j.p != '{' || !j_value(&j)) return 0;
  j_ws(&j);
  return j.p == j.end;
}

