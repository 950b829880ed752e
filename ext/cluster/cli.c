/*
** prefix-cluster — run SQL on a prefix-node cluster and manage its members from the shell.
**
**   prefix-cluster -s 127.0.0.1:9001,127.0.0.1:9002 query "SELECT customer, length(prefix) FROM live_prefixes"
**   prefix-cluster -s ... exec "INSERT INTO prefix_pairs(customer, prompt, completion) VALUES (?, ?, ?)" acme 'Q' 'A'
**   prefix-cluster -s ... exec-file sql/schema.sql
**   prefix-cluster -s ... leader | nodes | transfer ID | remove ID
**
** The client connects to any listed node, finds the leader and runs everything there (dqlite serves SQL
** from its leader only). Parameters after the SQL are text, unless written i:INT, f:REAL, x:HEX (a BLOB),
** @FILE (a BLOB read from FILE) or null:. Rows print like sqlite3's list mode (| between columns); a BLOB
** prints as hex unless --raw.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dqclient.h"

static void usage(FILE *f) {
  fprintf(f, "usage: prefix-cluster -s HOST:PORT[,HOST:PORT...] [-d DATABASE] [-t SECONDS] [--raw] COMMAND\n"
             "  query SQL [PARAM...]   one statement returning rows\n"
             "  exec SQL [PARAM...]    statements returning no rows (prints changes and last rowid with -v)\n"
             "  exec-file FILE         every statement of FILE\n"
             "  leader                 the leader's id and address\n"
             "  nodes                  the members: id, address, role\n"
             "  transfer ID            hand leadership to node ID\n"
             "  remove ID              remove node ID from the cluster\n"
             "PARAM: text, or i:INT, f:REAL, x:HEX, @FILE (BLOB), null:\n");
}

static unsigned char *read_file(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  size_t cap = 4096, len = 0;
  unsigned char *b = malloc(cap + 1);
  size_t r;
  while (b && (r = fread(b + len, 1, cap - len, f)) > 0) {
    len += r;
    if (len == cap) {
      unsigned char *nb = realloc(b, cap * 2 + 1);
      if (!nb) { free(b); b = NULL; break; }
      b = nb;
      cap *= 2;
    }
  }
  fclose(f);
  if (b) b[len] = 0;
  *n = len;
  return b;
}

static int hexval(int ch) {
  if (ch >= '0' && ch <= '9') return ch - '0';
  if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
  return -1;
}

/* Parses a PARAM argument; BLOB bytes are allocated into *owned. */
static int parse_param(const char *a, dq_value *v, void **owned) {
  memset(v, 0, sizeof *v);
  *owned = NULL;
  if (!strncmp(a, "i:", 2)) {
    char *end;
    v->type = DQ_INTEGER;
    v->i = strtoll(a + 2, &end, 10);
    return *end || end == a + 2 ? -1 : 0;
  }
  if (!strncmp(a, "f:", 2)) {
    char *end;
    v->type = DQ_FLOAT;
    v->f = strtod(a + 2, &end);
    return *end || end == a + 2 ? -1 : 0;
  }
  if (!strcmp(a, "null:")) {
    v->type = DQ_NULL;
    return 0;
  }
  if (!strncmp(a, "x:", 2)) {
    size_t l = strlen(a + 2);
    if (l % 2) return -1;
    unsigned char *b = malloc(l / 2 + 1);
    if (!b) return -1;
    for (size_t i = 0; i < l / 2; i++) {
      int h = hexval(a[2 + 2 * i]), lo = hexval(a[3 + 2 * i]);
      if (h < 0 || lo < 0) { free(b); return -1; }
      b[i] = (unsigned char)(h * 16 + lo);
    }
    v->type = DQ_BLOB;
    v->p = b;
    v->n = l / 2;
    *owned = b;
    return 0;
  }
  if (a[0] == '@') {
    size_t n;
    unsigned char *b = read_file(a + 1, &n);
    if (!b) return -1;
    v->type = DQ_BLOB;
    v->p = b;
    v->n = n;
    *owned = b;
    return 0;
  }
  v->type = DQ_TEXT;
  v->p = a;
  v->n = strlen(a);
  return 0;
}

static void print_rows(const dq_rows *r, int raw) {
  for (int i = 0; i < r->nrow; i++) {
    for (int j = 0; j < r->ncol; j++) {
      const dq_value *v = &r->v[(size_t)i * r->ncol + j];
      if (j) putchar('|');
      switch (v->type) {
      case DQ_INTEGER: printf("%lld", (long long)v->i); break;
      case DQ_FLOAT: printf("%.15g", v->f); break;
      case DQ_TEXT: fwrite(v->p, 1, v->n, stdout); break;
      case DQ_BLOB:
        if (raw) fwrite(v->p, 1, v->n, stdout);
        else
          for (size_t k = 0; k < v->n; k++) printf("%02X", ((const unsigned char *)v->p)[k]);
        break;
      default: break; /* NULL prints as nothing, as in sqlite3 */
      }
    }
    putchar('\n');
  }
}

int main(int argc, char **argv) {
  const char *servers = NULL, *database = "prefixes";
  double timeout = 10;
  int raw = 0, verbose = 0, i = 1;
  for (; i < argc && argv[i][0] == '-'; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
    if (!strcmp(a, "--raw")) { raw = 1; continue; }
    if (!strcmp(a, "-v")) { verbose = 1; continue; }
    if (i + 1 >= argc) { usage(stderr); return 2; }
    if (!strcmp(a, "-s")) servers = argv[++i];
    else if (!strcmp(a, "-d")) database = argv[++i];
    else if (!strcmp(a, "-t")) timeout = atof(argv[++i]);
    else { fprintf(stderr, "prefix-cluster: unknown option %s\n", a); usage(stderr); return 2; }
  }
  if (!servers || i >= argc) { usage(stderr); return 2; }
  const char *cmd = argv[i++];
  int sqlcmd = !strcmp(cmd, "query") || !strcmp(cmd, "exec") || !strcmp(cmd, "exec-file");
  char err[512];
  dq_client *c = dq_connect(servers, sqlcmd ? database : NULL, timeout, err, sizeof err);
  if (!c) { fprintf(stderr, "prefix-cluster: %s\n", err); return 1; }
  int rc = DQ_OK;
  if (!strcmp(cmd, "query") || !strcmp(cmd, "exec")) {
    if (i >= argc) { usage(stderr); dq_close(c); return 2; }
    const char *sql = argv[i++];
    int np = argc - i;
    if (np > 255) { fprintf(stderr, "prefix-cluster: %d parameters (the limit is 255)\n", np); dq_close(c); return 2; }
    dq_value params[255];
    void *owned[255];
    for (int k = 0; k < np; k++)
      if (parse_param(argv[i + k], &params[k], &owned[k])) {
        fprintf(stderr, "prefix-cluster: parameter %d ('%s') is not valid (or its file cannot be read)\n", k + 1, argv[i + k]);
        for (int j = 0; j < k; j++) free(owned[j]);
        dq_close(c);
        return 2;
      }
    if (cmd[0] == 'q') {
      dq_rows *rows = NULL;
      if ((rc = dq_query(c, sql, np, params, &rows)) == DQ_OK) print_rows(rows, raw);
      dq_rows_free(rows);
    } else {
      uint64_t last = 0, changes = 0;
      if ((rc = dq_exec(c, sql, np, params, &last, &changes)) == DQ_OK && verbose)
        printf("changes %llu, last rowid %llu\n", (unsigned long long)changes, (unsigned long long)last);
    }
    for (int k = 0; k < np; k++) free(owned[k]);
  } else if (!strcmp(cmd, "exec-file")) {
    size_t n;
    unsigned char *text = i < argc ? read_file(argv[i], &n) : NULL;
    if (!text) { fprintf(stderr, "prefix-cluster: cannot read %s\n", i < argc ? argv[i] : "(no file given)"); dq_close(c); return 1; }
    rc = dq_exec(c, (const char *)text, 0, NULL, NULL, NULL);
    free(text);
  } else if (!strcmp(cmd, "leader")) {
    printf("%llu|%s\n", (unsigned long long)dq_leader_id(c), dq_leader_address(c));
  } else if (!strcmp(cmd, "nodes")) {
    dq_node *nodes;
    int n;
    static const char *roles[] = {"voter", "standby", "spare"};
    if ((rc = dq_cluster(c, &nodes, &n)) == DQ_OK) {
      for (int k = 0; k < n; k++)
        printf("%llu|%s|%s\n", (unsigned long long)nodes[k].id, nodes[k].address,
               nodes[k].role >= 0 && nodes[k].role <= 2 ? roles[nodes[k].role] : "?");
      free(nodes);
    }
  } else if ((!strcmp(cmd, "transfer") || !strcmp(cmd, "remove")) && i < argc) {
    char *end;
    unsigned long long id = strtoull(argv[i], &end, 10);
    if (*end || !id) { fprintf(stderr, "prefix-cluster: '%s' is not a node id\n", argv[i]); dq_close(c); return 2; }
    rc = cmd[0] == 't' ? dq_transfer(c, id) : dq_remove(c, id);
  } else {
    usage(stderr);
    dq_close(c);
    return 2;
  }
  if (rc) fprintf(stderr, "prefix-cluster: %s%s\n", dq_errmsg(c),
                  !strstr(dq_errmsg(c), "interrupted") ? ""
                  : " (prefix-node stops a statement after --statement-timeout-ms, 2 s by default, to keep its "
                    "leadership; train with prefix-worker: docs/scaling.md)");
  dq_close(c);
  return rc ? 1 : 0;
}
