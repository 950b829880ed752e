/*
** models.h — the --model NAME=PATH argument that prefix-node and prefix-worker share: its form, and
** loading it into the extension's process-wide model registry.
*/
#ifndef PREFIX_CLUSTER_MODELS_H
#define PREFIX_CLUSTER_MODELS_H

#include <sqlite3.h>
#include <stddef.h>

/* The length of NAME in "NAME=PATH", or 0 when spec is not of that form. */
size_t pfc_model_name_len(const char *spec);
/* Loads NAME=PATH with prefix_model_load on db (any connection with the extension: the registry is
** process-wide). Returns 0, or -1 with "model NAME: why" in err. */
int pfc_model_load(sqlite3 *db, const char *spec, char *err, size_t errlen);

#endif
