/*
** sqlite_prefix.h — the entry point of the sqlite-prefix SQLite extension.
**
** Loadable: sqlite3_load_extension(db, ".../prefix.so", NULL, &err) finds sqlite3_prefix_init by itself.
** Linked statically (libsqlite_prefix.a, pkg-config sqlite-prefix): register it for every connection the
** program opens, before opening them:
**
**   #include <sqlite3.h>
**   #include <sqlite_prefix.h>
**   sqlite3_auto_extension((void (*)(void))sqlite3_prefix_init);
**
** The engine's own C API (no SQLite) is in prefix_engine.h, train.h and metrics.h beside this file.
*/
#ifndef SQLITE_PREFIX_H
#define SQLITE_PREFIX_H

#include <sqlite3.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Registers every prefix_* function and table on db. Returns SQLITE_OK or an SQLite error code. */
int sqlite3_prefix_init(sqlite3 *db, char **pzErrMsg, const sqlite3_api_routines *pApi);

#ifdef __cplusplus
}
#endif
#endif /* SQLITE_PREFIX_H */
