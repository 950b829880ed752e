/*
** fuzz_dqclient.c — libFuzzer target: any bytes as what a dqlite server (or anything listening on its
** port) answers the cluster client (ext/cluster/dqclient.c). The bytes wait in a socket pair; the first
** byte picks the request whose response is read: rows of a query, the result of an exec, the cluster's
** members, the leader, a database. The client must return an error code, never read past what it got.
*/
#include <assert.h>
#include <sys/socket.h>

#include "../../ext/cluster/dqclient.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
  if (n < 1 || n > 65536) return 0;
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv)) return 0;
  int big = 1 << 20;
  setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
  setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
  if (write_all(sv[0], data + 1, n - 1)) {
    close(sv[0]);
    close(sv[1]);
    return 0;
  }
  shutdown(sv[0], SHUT_WR); /* the client reads the bytes, then end of stream */
  dq_client *c = calloc(1, sizeof *c);
  c->fd = sv[1];
  c->has_db = 1;
  c->database = strdup("fuzz");
  c->servers = strdup("fuzz:1");
  snprintf(c->leader, sizeof c->leader, "fuzz");
  int rc = DQ_OK;
  dq_value p[2] = {{.type = DQ_TEXT, .p = "x", .n = 1}, {.type = DQ_BLOB, .p = "\1\2\3", .n = 3}};
  switch (data[0] % 6) {
  case 0:
  case 1: {
    dq_rows *r = NULL;
    rc = dq_query(c, "SELECT ?, ?", 2, p, &r);
    if (rc == DQ_OK) { /* every value it hands out is inside its own storage */
      for (size_t i = 0; i < (size_t)r->nrow * r->ncol; i++)
        if (r->v[i].type == DQ_TEXT || r->v[i].type == DQ_BLOB) {
          volatile unsigned char s = 0;
          for (size_t k = 0; k < r->v[i].n; k++) s ^= ((const unsigned char *)r->v[i].p)[k];
          (void)s;
        }
      for (int j = 0; j < r->ncol; j++) assert(r->names[j]);
    }
    dq_rows_free(r);
    break;
  }
  case 2: {
    uint64_t last, changes;
    rc = dq_exec(c, "INSERT INTO t VALUES (?, ?)", 2, p, &last, &changes);
    break;
  }
  case 3: {
    dq_node *nodes = NULL;
    int k = 0;
    rc = dq_cluster(c, &nodes, &k);
    for (int i = 0; rc == DQ_OK && i < k; i++) assert(strlen(nodes[i].address) < sizeof nodes[i].address);
    free(nodes);
    break;
  }
  case 4: {
    uint64_t id;
    char addr[256];
    rc = ask_leader_fd(c, &id, addr, sizeof addr);
    break;
  }
  default:
    rc = open_db(c);
    break;
  }
  assert(rc == DQ_OK || c->err[0]);
  if (c->fd >= 0) close(c->fd);
  c->fd = -1;
  dq_close(c);
  close(sv[0]);
  return 0;
}
