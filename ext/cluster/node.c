/*
** prefix-node — a dqlite node (Raft-replicated SQLite) whose every connection has the sqlite-prefix
** functions, so prefixes trained or stored through the leader live in the replicated database and are
** served by whichever node leads.
**
**   prefix-node --address 127.0.0.1:9001 --data /var/lib/prefix/n1                       (first node)
**   prefix-node --address 127.0.0.1:9002 --data /var/lib/prefix/n2 --join 127.0.0.1:9001 (the others)
**
** The first node (id 1, no --join) bootstraps a one-node cluster. A node started with --join asks the
** leader to add it and make it a voter, once: its data directory remembers that it joined, so a restart
** (after a crash or kill -9) just catches up from the others' log. --model NAME=PATH loads a model into
** the process before the node serves, so every node can run prefix_generate when it becomes the leader.
** SIGINT / SIGTERM stop the node cleanly. See docs/scaling.md.
*/
#include <dqlite.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../../engine/prefix_engine.h" /* pf_clock */
#include "../sqlite_prefix.h"
#include "dqclient.h"
#include "models.h"

#define JOINED_MARK "prefix-node.joined"

/* ---- the statement time limit ----
** dqlite runs every statement on the leader's event loop, which also sends Raft's heartbeats: a statement
** that runs longer than the election timeout (dqlite's default: 3 s, randomized up to 6 s) makes the
** followers elect another leader, and the statement's transaction is lost ("disk I/O error"). So each
** connection gets a time limit, below the election timeout: a trace callback notes when the outermost
** statement starts and ends, and a progress handler interrupts it past the limit. prefix_train and
** prefix_generate call the progress handler while they compute (ext.h, pfx_cancel), so a long training
** through the cluster stops with "interrupted" instead of costing the leadership; training belongs to
** prefix-worker. */
typedef struct {
  sqlite3_stmt *outer; /* the statement being timed, NULL between statements */
  double start;
} stmt_clock;
static double g_limit_s = 2.0; /* 0: no limit */

static int on_trace(unsigned type, void *ctx, void *p, void *x) {
  stmt_clock *g = ctx;
  (void)x;
  if (type == SQLITE_TRACE_STMT) {
    if (!g->outer) { /* nested statements (the extension's own, triggers) run inside the outer one's time */
      g->outer = p;
      g->start = pf_clock();
    }
  } else if (type == SQLITE_TRACE_PROFILE) {
    if (p == g->outer) g->outer = NULL;
  } else if (type == SQLITE_TRACE_CLOSE) {
    free(g);
  }
  return 0;
}

static int on_progress(void *ctx) {
  stmt_clock *g = ctx;
  return g->outer && pf_clock() - g->start > g_limit_s;
}

static int limit_init(sqlite3 *db, char **err, const sqlite3_api_routines *api) {
  (void)err;
  (void)api;
  if (g_limit_s <= 0) return SQLITE_OK;
  stmt_clock *g = calloc(1, sizeof *g);
  if (!g) return SQLITE_NOMEM;
  int rc = sqlite3_trace_v2(db, SQLITE_TRACE_STMT | SQLITE_TRACE_PROFILE | SQLITE_TRACE_CLOSE, on_trace, g);
  if (rc) {
    free(g);
    return rc;
  }
  sqlite3_progress_handler(db, 1000, on_progress, g);
  return SQLITE_OK;
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: prefix-node --address HOST:PORT --data DIR [options]\n"
          "  --address HOST:PORT   where this node listens (and how the others reach it)\n"
          "  --data DIR            its Raft log and snapshots (created when missing)\n"
          "  --id N                node id (default: 1 without --join, else derived from the address)\n"
          "  --join HOST:PORT,...  nodes of the cluster to join (any of them; the leader is found)\n"
          "  --model NAME=PATH     load a GGUF model under NAME before serving (repeatable)\n"
          "  --latency-ms N        expected network latency; Raft's heartbeat is 1.5 N ms and its\n"
          "                        election timeout 15 N ms (dqlite's default when absent)\n"
          "  --join-timeout S      how long to keep trying to join (default 60)\n"
          "  --statement-timeout-ms N  interrupt a statement after N ms (default 2000, or 10 x latency;\n"
          "                        0: no limit). Above the election timeout, a statement costs the leader\n"
          "                        its leadership and its transaction\n"
          "  --trusted-network     allow an address that is not loopback: dqlite's protocol has no\n"
          "                        authentication, and one crafted connection can crash libdqlite 1.11\n"
          "                        (Debian 12); only on a network that admits nothing but the cluster's own\n"
          "                        machines (WireGuard, a firewall): docs/security.md\n");
}

/* 127.0.0.0/8, ::1, localhost, or an abstract Unix socket (@name): reachable from this machine only */
static int is_loopback(const char *address) {
  if (address[0] == '@') return 1;
  const char *colon = strrchr(address, ':');
  size_t n = colon ? (size_t)(colon - address) : strlen(address);
  char host[256];
  if (n >= sizeof host) return 0;
  memcpy(host, address, n);
  host[n] = 0;
  if (host[0] == '[' && n >= 2 && host[n - 1] == ']') { memmove(host, host + 1, n - 2); host[n - 2] = 0; }
  return !strncmp(host, "127.", 4) || !strcmp(host, "::1") || !strcmp(host, "localhost");
}

static int mkdirs(const char *path) {
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s", path);
  for (char *p = tmp + 1; *p; p++)
    if (*p == '/') {
      *p = 0;
      if (mkdir(tmp, 0755) && errno != EEXIST) return -1;
      *p = '/';
    }
  return mkdir(tmp, 0755) && errno != EEXIST ? -1 : 0;
}

/* Loads NAME=PATH into the extension's process-wide model registry through a private connection. */
static int load_model(const char *spec) {
  char err[1024];
  if (!pfc_model_name_len(spec)) {
    fprintf(stderr, "prefix-node: --model wants NAME=PATH, got '%s'\n", spec);
    return -1;
  }
  sqlite3 *db;
  int rc = sqlite3_open(":memory:", &db) == SQLITE_OK ? pfc_model_load(db, spec, err, sizeof err)
                                                      : (snprintf(err, sizeof err, "cannot open SQLite"), -1);
  if (rc) fprintf(stderr, "prefix-node: %s\n", err);
  sqlite3_close(db);
  return rc;
}

/* This node's role in the leader's configuration: DQ_VOTER..DQ_SPARE, -1 when absent, -2 on error. */
static int role_of(dq_client *c, uint64_t id) {
  dq_node *nodes;
  int n, role = -1;
  if (dq_cluster(c, &nodes, &n)) return -2;
  for (int i = 0; i < n; i++)
    if (nodes[i].id == id) role = nodes[i].role;
  free(nodes);
  return role;
}

/* Asks the cluster's leader to add this node and make it a voter, checking the configuration between
** steps: Raft takes one membership change at a time, so a request can be refused while another node
** joins, and is then tried again. */
static int join_cluster(const char *servers, uint64_t id, const char *address, double timeout_s) {
  double deadline = (double)time(NULL) + timeout_s;
  char err[512] = "no attempt";
  for (;;) {
    dq_client *c = dq_connect(servers, NULL, 5, err, sizeof err);
    if (c) {
      int role = role_of(c, id);
      if (role == -1) dq_add(c, id, address);
      else if (role >= 0 && role != DQ_VOTER) dq_assign(c, id, DQ_VOTER);
      if (dq_errmsg(c)[0]) snprintf(err, sizeof err, "%s", dq_errmsg(c));
      role = role_of(c, id);
      dq_close(c);
      if (role == DQ_VOTER) return 0;
    }
    if ((double)time(NULL) >= deadline) break;
    usleep(200 * 1000 + (useconds_t)(id % 7) * 50 * 1000);
  }
  fprintf(stderr, "prefix-node: could not join through %s within %.0f s: %s\n", servers, timeout_s, err);
  return -1;
}

int main(int argc, char **argv) {
  const char *address = NULL, *data = NULL, *join = NULL;
  unsigned long long id = 0;
  unsigned latency_ms = 0;
  double join_timeout = 60, limit_ms = -1;
  const char *models[64];
  int nmodels = 0, trusted = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      usage(stdout);
      return 0;
    }
    if (!strcmp(a, "--trusted-network")) { trusted = 1; continue; }
    if (!v) {
      fprintf(stderr, "prefix-node: %s needs a value\n", a);
      usage(stderr);
      return 2;
    }
    i++;
    if (!strcmp(a, "--address")) address = v;
    else if (!strcmp(a, "--data")) data = v;
    else if (!strcmp(a, "--join")) join = v;
    else if (!strcmp(a, "--id")) id = strtoull(v, NULL, 10);
    else if (!strcmp(a, "--latency-ms")) latency_ms = (unsigned)strtoul(v, NULL, 10);
    else if (!strcmp(a, "--join-timeout")) join_timeout = atof(v);
    else if (!strcmp(a, "--statement-timeout-ms")) limit_ms = atof(v);
    else if (!strcmp(a, "--model")) {
      if (nmodels == 64) {
        fprintf(stderr, "prefix-node: at most 64 --model options\n");
        return 2;
      }
      models[nmodels++] = v;
    } else {
      fprintf(stderr, "prefix-node: unknown option %s\n", a);
      usage(stderr);
      return 2;
    }
  }
  if (!address || !data) {
    usage(stderr);
    return 2;
  }
  if (!is_loopback(address) && !trusted) {
    fprintf(stderr, "prefix-node: --address %s is reachable from other machines, and dqlite's protocol has no "
                    "authentication: one crafted connection can crash libdqlite 1.11 (Debian 12). Serve on a network that "
                    "admits only the cluster's machines (WireGuard, a firewall) and say so with --trusted-network; "
                    "see docs/security.md\n", address);
    return 2;
  }
  if (!id) id = join ? dqlite_generate_node_id(address) : 1;
  if (id == 1 && join) {
    fprintf(stderr, "prefix-node: id 1 is the node that bootstraps a new cluster; a joining node needs another id\n");
    return 2;
  }
  if (mkdirs(data)) {
    fprintf(stderr, "prefix-node: cannot create %s: %s\n", data, strerror(errno));
    return 1;
  }

  if (limit_ms < 0) limit_ms = latency_ms ? 10.0 * latency_ms : 2000;
  g_limit_s = limit_ms / 1000;
  if (latency_ms && limit_ms > 15.0 * latency_ms)
    fprintf(stderr, "prefix-node: warning: --statement-timeout-ms %.0f exceeds the election timeout (%u ms)\n", limit_ms,
            15 * latency_ms);

  /* every connection the node opens (dqlite's own included) gets the prefix functions and the limit */
  sqlite3_auto_extension((void (*)(void))sqlite3_prefix_init);
  for (int i = 0; i < nmodels; i++)
    if (load_model(models[i])) return 1;
  sqlite3_auto_extension((void (*)(void))limit_init); /* after the models: loading one may take longer */

  /* SIGINT/SIGTERM are waited for below; block them before dqlite starts its threads */
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  signal(SIGPIPE, SIG_IGN);

  dqlite_node *node = NULL;
  int rc = dqlite_node_create(id, address, data, &node);
  if (rc) {
    fprintf(stderr, "prefix-node: dqlite_node_create: %s (code %d)\n", node ? dqlite_node_errmsg(node) : "", rc);
    if (node) dqlite_node_destroy(node);
    return 1;
  }
  if ((rc = dqlite_node_set_bind_address(node, address)) ||
      (latency_ms && (rc = dqlite_node_set_network_latency_ms(node, latency_ms))) || (rc = dqlite_node_start(node))) {
    fprintf(stderr, "prefix-node: cannot start on %s: %s (code %d)\n", address, dqlite_node_errmsg(node), rc);
    dqlite_node_destroy(node);
    return 1;
  }

  char mark[4200];
  snprintf(mark, sizeof mark, "%s/%s", data, JOINED_MARK);
  if (join && access(mark, F_OK) != 0) {
    if (join_cluster(join, id, address, join_timeout)) {
      dqlite_node_stop(node);
      dqlite_node_destroy(node);
      return 1;
    }
    FILE *f = fopen(mark, "w");
    if (f) {
      fprintf(f, "%llu %s\n", id, address);
      fclose(f);
    }
  }
  printf("prefix-node %llu serving on %s (data %s, %d model%s)\n", id, address, data, nmodels, nmodels == 1 ? "" : "s");
  fflush(stdout);

  int sig = 0;
  sigwait(&set, &sig);
  fprintf(stderr, "prefix-node %llu: signal %d, stopping\n", id, sig);
  dqlite_node_stop(node);
  dqlite_node_destroy(node);
  return 0;
}
