/* common.h — what the fuzz targets share: finding the project's models. */
#ifndef PF_FUZZ_COMMON_H
#define PF_FUZZ_COMMON_H
#include <stdio.h>
#include <stdlib.h>

/* $PREFIX_MODEL_DIR/name (default ../shared/models), or with data=1 $PREFIX_DATA_DIR/name (../shared/data). */
static inline const char *fz_path(const char *name, int data) {
  static char p[4][1024];
  static int i;
  const char *d = getenv(data ? "PREFIX_DATA_DIR" : "PREFIX_MODEL_DIR");
  i = (i + 1) % 4;
  snprintf(p[i], sizeof p[i], "%s/%s", d && *d ? d : data ? "../shared/data" : "../shared/models", name);
  return p[i];
}

static inline void fz_die(const char *what, const char *msg) {
  fprintf(stderr, "fuzz setup: %s: %s\n", what, msg);
  exit(2);
}
#endif
