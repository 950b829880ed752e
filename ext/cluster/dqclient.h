/*
** dqclient.h — a small client of dqlite's wire protocol (https://dqlite.io/docs/reference/wire-protocol),
** written for prefix-node (joining a cluster), prefix-worker and prefix-cluster. libdqlite exports a
** server only; this is the client side: find the leader among a list of nodes, open a database, run SQL
** with bound parameters, read rows, and the membership requests (add, assign, remove, transfer, list).
**
** One dq_client is one TCP connection to the current leader; it is not thread-safe (use one per
** thread). Every call returns DQ_OK or an error code, with the text in dq_errmsg():
**   DQ_IO       the connection failed or timed out (the node may be gone): dq_reconnect() and retry
**   DQ_LEADER   the node is no longer the leader (or lost leadership during a write): reconnect, retry
**   DQ_BUSY     another connection holds the write lock (SQLITE_BUSY): wait a moment and retry
**   DQ_FAILED   the server refused the request (SQL error, constraint...): do not retry blindly
**   DQ_PROTO    the server sent something this client does not understand
*/
#ifndef PREFIX_DQCLIENT_H
#define PREFIX_DQCLIENT_H

#include <stddef.h>
#include <stdint.h>

enum { DQ_OK = 0, DQ_IO = 1, DQ_LEADER = 2, DQ_FAILED = 3, DQ_PROTO = 4, DQ_NOMEM = 5, DQ_MISUSE = 6, DQ_BUSY = 7 };
/* value types, as the protocol codes them */
enum { DQ_INTEGER = 1, DQ_FLOAT = 2, DQ_TEXT = 3, DQ_BLOB = 4, DQ_NULL = 5 };
/* node roles */
enum { DQ_VOTER = 0, DQ_STANDBY = 1, DQ_SPARE = 2 };

typedef struct dq_value {
  int type;        /* DQ_INTEGER ... DQ_NULL */
  int64_t i;       /* DQ_INTEGER */
  double f;        /* DQ_FLOAT */
  const void *p;   /* DQ_TEXT (NUL-terminated) / DQ_BLOB; owned by the caller (params) or by dq_rows */
  size_t n;        /* bytes of a BLOB; strlen of a TEXT */
} dq_value;

typedef struct dq_rows {
  int ncol, nrow;
  char **names;    /* ncol column names */
  dq_value *v;     /* nrow * ncol values, row-major */
  char *mem;       /* storage of every text and blob */
} dq_rows;

typedef struct dq_node {
  uint64_t id;
  char address[256];
  int role;
} dq_node;

typedef struct dq_client dq_client;

/* Connects to the leader of the cluster that `servers` ("host:port,host:port,...") belong to, trying each
** until one names a leader that confirms it, for at most timeout_s seconds; opens `database` when it is not
** NULL. Returns NULL with the reason in err when no leader answered in time. */
dq_client *dq_connect(const char *servers, const char *database, double timeout_s, char *err, size_t errlen);
/* Drops the connection and finds the leader again (after DQ_IO or DQ_LEADER). */
int dq_reconnect(dq_client *c);
void dq_close(dq_client *c);
const char *dq_errmsg(const dq_client *c);
/* The leader this client is connected to. */
const char *dq_leader_address(const dq_client *c);
uint64_t dq_leader_id(const dq_client *c);

/* SQL (possibly several statements; parameters bind to the first) that returns no rows. */
int dq_exec(dq_client *c, const char *sql, int nparam, const dq_value *params, uint64_t *last_id, uint64_t *changes);
/* One statement that returns rows; *out is freed with dq_rows_free. */
int dq_query(dq_client *c, const char *sql, int nparam, const dq_value *params, dq_rows **out);
void dq_rows_free(dq_rows *r);

int dq_add(dq_client *c, uint64_t id, const char *address);
int dq_assign(dq_client *c, uint64_t id, int role);
int dq_remove(dq_client *c, uint64_t id);
int dq_transfer(dq_client *c, uint64_t id);
/* The cluster's members; *nodes is freed with free(). */
int dq_cluster(dq_client *c, dq_node **nodes, int *n);

/* Asks one node (not necessarily the leader) whom it believes to be the leader. *id is 0 and address
** empty when it knows none. */
int dq_ask_leader(const char *address, double timeout_s, uint64_t *id, char *leader, size_t leaderlen,
                  char *err, size_t errlen);

#endif
