/* models.c — see models.h */
#include "models.h"

#include <stdio.h>
#include <string.h>

size_t pfc_model_name_len(const char *spec) {
  const char *eq = strchr(spec, '=');
  return eq && eq != spec && eq[1] ? (size_t)(eq - spec) : 0;
}

int pfc_model_load(sqlite3 *db, const char *spec, char *err, size_t errlen) {
  size_t nl = pfc_model_name_len(spec);
  if (!nl) {
    snprintf(err, errlen, "--model wants NAME=PATH, got '%s'", spec);
    return -1;
  }
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(db, "SELECT prefix_model_load(?1, ?2)", -1, &st, NULL);
  if (rc == SQLITE_OK) {
    sqlite3_bind_text(st, 1, spec, (int)nl, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, spec + nl + 1, -1, SQLITE_STATIC);
    rc = sqlite3_step(st) == SQLITE_ROW ? SQLITE_OK : SQLITE_ERROR;
  }
  if (rc) snprintf(err, errlen, "model %.*s: %s", (int)nl, spec, sqlite3_errmsg(db));
  sqlite3_finalize(st);
  return rc ? -1 : 0;
}
