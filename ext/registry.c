/*
** registry.c — the process-wide model registry.
**
** Every connection in the process sees the same names. A name holds a
** reference on a pfx_model; each running call holds one more, so unloading a
** model while a statement uses it is safe: the weights go when the last
** reference does. Loading happens outside the lock; the same file (device,
** inode, size, mtime) loaded twice shares its weights.
*/
#include "ext.h"
SQLITE_EXTENSION_INIT3

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct pfx_model {
  pf_model *m;
  int refs;
};

typedef struct entry { char *name; char *path; pfx_model *pm; } entry;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static entry *g_ent;
static int g_n, g_cap;

const pf_model *pfx_model_engine(const pfx_model *pm) { return pm->m; }

static void release_locked(pfx_model *pm) {
  if (--pm->refs == 0) {
    pf_model_free(pm->m);
    free(pm);
  }
}

void pfx_model_release(pfx_model *pm) {
  if (!pm) return;
  pthread_mutex_lock(&g_mu);
  release_locked(pm);
  pthread_mutex_unlock(&g_mu);
}

static int find_locked(const char *name) {
  for (int i = 0; i < g_n; i++) if (strcmp(g_ent[i].name, name) == 0) return i;
  return -1;
}

static char *loaded_list_locked(void) {
  if (g_n == 0) return sqlite3_mprintf("no models are loaded; use prefix_model_load(name, path)");
  char *s = sqlite3_mprintf("loaded:");
  for (int i = 0; i < g_n && s; i++) {
    char *t = sqlite3_mprintf("%s%s '%s'", s, i ? "," : "", g_ent[i].name);
    sqlite3_free(s);
    s = t;
  }
  return s;
}

int pfx_registry_load(const char *name, const char *path, char **errmsg) {
  pf_err e;
  pf_model *m = pf_model_load(path, &e);
  if (!m) {
    *errmsg = sqlite3_mprintf("%s", e.msg);
    return e.code == PF_NOMEM ? SQLITE_NOMEM : SQLITE_ERROR;
  }
  uint64_t id[4];
  pf_model_file_id(m, id);
  char *nm = strdup(name), *pt = strdup(path);
  if (!nm || !pt) { free(nm); free(pt); pf_model_free(m); return SQLITE_NOMEM; }

  pthread_mutex_lock(&g_mu);
  pfx_model *pm = NULL;
  for (int i = 0; i < g_n && !pm; i++) {   /* same file already loaded? share it */
    uint64_t other[4];
    pf_model_file_id(g_ent[i].pm->m, other);
    if (memcmp(id, other, sizeof id) == 0) pm = g_ent[i].pm;
  }
  if (pm) { pm->refs++; pf_model_free(m); m = NULL; }
  else {
    pm = malloc(sizeof *pm);
    if (!pm) { pthread_mutex_unlock(&g_mu); free(nm); free(pt); pf_model_free(m); return SQLITE_NOMEM; }
    pm->m = m;
    pm->refs = 1;
  }
  int at = find_locked(name);
  if (at >= 0) {   /* rebind the name; users of the old model keep their reference */
    release_locked(g_ent[at].pm);
    free(g_ent[at].name);
    free(g_ent[at].path);
  } else {
    if (g_n == g_cap) {
      int nc = g_cap ? g_cap * 2 : 8;
      entry *ne = realloc(g_ent, sizeof *ne * (size_t)nc);
      if (!ne) { release_locked(pm); pthread_mutex_unlock(&g_mu); free(nm); free(pt); return SQLITE_NOMEM; }
      g_ent = ne;
      g_cap = nc;
    }
    at = g_n++;
  }
  g_ent[at].name = nm;
  g_ent[at].path = pt;
  g_ent[at].pm = pm;
  pthread_mutex_unlock(&g_mu);
  return SQLITE_OK;
}

int pfx_registry_unload(const char *name, char **errmsg) {
  pthread_mutex_lock(&g_mu);
  int at = find_locked(name);
  if (at < 0) {
    char *l = loaded_list_locked();
    *errmsg = sqlite3_mprintf("no model named '%s' is loaded (%s)", name, l ? l : "");
    sqlite3_free(l);
    pthread_mutex_unlock(&g_mu);
    return SQLITE_ERROR;
  }
  release_locked(g_ent[at].pm);
  free(g_ent[at].name);
  free(g_ent[at].path);
  g_ent[at] = g_ent[--g_n];
  pthread_mutex_unlock(&g_mu);
  return SQLITE_OK;
}

pfx_model *pfx_registry_get(const char *name, char **errmsg) {
  pthread_mutex_lock(&g_mu);
  int at = find_locked(name);
  pfx_model *pm = NULL;
  if (at >= 0) {
    pm = g_ent[at].pm;
    pm->refs++;
  } else {
    char *l = loaded_list_locked();
    *errmsg = sqlite3_mprintf("no model named '%s' is loaded (%s)", name, l ? l : "");
    sqlite3_free(l);
  }
  pthread_mutex_unlock(&g_mu);
  return pm;
}

int pfx_registry_snapshot(pfx_model_row **rows, int *n) {
  pthread_mutex_lock(&g_mu);
  int total = g_n;   /* read under the lock: another thread may load or unload right after it */
  pfx_model_row *r = calloc((size_t)(total ? total : 1), sizeof *r);
  int k = 0;
  if (r) {
    for (; k < total; k++) {
      r[k].name = strdup(g_ent[k].name);
      r[k].path = strdup(g_ent[k].path);
      r[k].pm = g_ent[k].pm;
      r[k].pm->refs++;
      if (!r[k].name || !r[k].path) { free(r[k].name); free(r[k].path); release_locked(r[k].pm); break; }
    }
  }
  pthread_mutex_unlock(&g_mu);
  if (!r || k < total) { pfx_registry_snapshot_free(r, k); return SQLITE_NOMEM; }
  *rows = r;
  *n = k;
  return SQLITE_OK;
}

void pfx_registry_snapshot_free(pfx_model_row *rows, int n) {
  if (!rows) return;
  for (int i = 0; i < n; i++) {
    free(rows[i].name);
    free(rows[i].path);
    pfx_model_release(rows[i].pm);
  }
  free(rows);
}

/* When the extension's shared library is unloaded (the last connection that
** loaded it closed), nothing can use the models any more: free them. */
#ifndef SQLITE_CORE
__attribute__((destructor)) static void registry_unload(void) {
  pthread_mutex_lock(&g_mu);
  for (int i = 0; i < g_n; i++) {
    release_locked(g_ent[i].pm);
    free(g_ent[i].name);
    free(g_ent[i].path);
  }
  free(g_ent);
  g_ent = NULL;
  g_n = g_cap = 0;
  pthread_mutex_unlock(&g_mu);
}
#endif

/* A model-name argument, as every function takes it: the loaded model (a reference) or an SQL error. */
pfx_model *pfx_arg_model(sqlite3_context *ctx, const char *fn, sqlite3_value *v) {
  const char *name = pfx_arg_cstr(ctx, fn, "model name", v);
  if (!name) return NULL;
  char *e = NULL;
  pfx_model *pm = pfx_registry_get(name, &e);
  if (!pm) {
    pfx_result_errorf(ctx, "%s: %s", fn, e ? e : "unknown model");
    sqlite3_free(e);
  }
  return pm;
}
