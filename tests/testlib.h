/* testlib.h — a tiny test harness: each check prints "PASS name" or
** "FAIL name: why"; tests/run.sh counts the lines. */
#ifndef PF_TESTLIB_H
#define PF_TESTLIB_H
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int t_failed;

static inline void t_result(int ok, const char *name, const char *fmt, ...) {
  if (ok) { printf("PASS %s\n", name); fflush(stdout); return; }
  t_failed++;
  printf("FAIL %s: ", name);
  va_list ap;
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  printf("\n");
  fflush(stdout);
}
#define CHECK(ok, name, ...) t_result((ok), (name), __VA_ARGS__)

/* Does s contain sub? */
static inline int t_contains(const char *s, const char *sub) { return s && sub && strstr(s, sub) != NULL; }

static inline const char *t_model_dir(void) {
  const char *d = getenv("PREFIX_MODEL_DIR");
  return d && *d ? d : "../shared/models";
}
static inline const char *t_model_path(const char *file) {
  static char buf[4096];
  snprintf(buf, sizeof buf, "%s/%s", t_model_dir(), file);
  return buf;
}

/* Write a model with the project's tool ($PF_BUILD/prefix-mkmodel PATH ARGS); 0 on success. */
static inline int t_mkmodel(const char *path, const char *args) {
  char cmd[4096];
  snprintf(cmd, sizeof cmd, "%s/prefix-mkmodel %s %s", getenv("PF_BUILD") ? getenv("PF_BUILD") : "dist", path, args);
  return system(cmd);
}

static inline double t_maxdiff(const float *a, const float *b, size_t n) {
  double m = 0;
  for (size_t i = 0; i < n; i++) {
    double d = fabs((double)a[i] - b[i]);
    if (d != d) return INFINITY;
    if (d > m) m = d;
  }
  return m;
}

/* deterministic uniform [-1, 1) */
static unsigned long long t_rng = 88172645463325252ull;
static inline float t_frand(void) {
  t_rng ^= t_rng << 13; t_rng ^= t_rng >> 7; t_rng ^= t_rng << 17;
  return (float)((t_rng >> 40) * (1.0 / 8388608.0)) - 1.0f;
}
#if defined(PF_TRAIN_H) && defined(PF_INTERNAL_H)
/* Reseals a BLOB the test changed (a correct checksum, so decoding reaches the later checks) and checks
** that decoding refuses it with a message containing want. */
static inline void t_prefix_refused(uint8_t *blob, size_t len, const char *want, const char *name) {
  pf_prefix p;
  pf_err e = {0};
  pf_prefix_seal(blob, len);
  int rc = pf_prefix_decode(blob, len, &p, &e);
  CHECK(rc && t_contains(e.msg, want), name, "%s", rc ? e.msg : "decoded");
  if (!rc) pf_prefix_clear(&p);
}
#endif

#endif
