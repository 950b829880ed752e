/*
** dqclient.c — dqlite wire-protocol client (see dqclient.h). Written from the protocol's documentation:
** every message is an 8-byte header (body size in 8-byte words, type, schema revision) and a body of
** little-endian words; text is NUL-terminated and zero-padded to a word; a blob is a length word and
** its bytes padded to a word.
*/
#include "dqclient.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* request and response types */
enum { RQ_LEADER = 0, RQ_OPEN = 3, RQ_EXEC_SQL = 8, RQ_QUERY_SQL = 9, RQ_ADD = 12, RQ_ASSIGN = 13,
       RQ_REMOVE = 14, RQ_CLUSTER = 16, RQ_TRANSFER = 17 };
enum { RS_FAILURE = 0, RS_LEADER = 1, RS_NODES = 3, RS_DB = 4, RS_RESULT = 6, RS_ROWS = 7, RS_EMPTY = 8 };
#define ROWS_DONE 0xffffffffffffffffULL
#define ROWS_PART 0xeeeeeeeeeeeeeeeeULL
#define MAX_BODY  (256u << 20)  /* largest response accepted: 256 MiB */
/* SQLite extended codes dqlite uses when a node is not (or no longer) the leader */
#define SQLITE_IOERR_NOT_LEADER (10 | (40 << 8))
#define SQLITE_IOERR_LEADERSHIP_LOST (10 | (41 << 8))

struct dq_client {
  int fd;
  uint32_t db_id;
  int has_db;
  double timeout_s;
  char *servers, *database;
  uint64_t leader_id;
  char leader[256];
  char err[512];
  unsigned char *buf;  /* message being built or read */
  size_t len, cap;
};

static int fail(dq_client *c, int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->err, sizeof c->err, fmt, ap);
  va_end(ap);
  return code;
}

/* After an I/O error or a response this client cannot follow, the stream is out of step: the connection
** is dropped, so a later call fails at once ("not connected") instead of reading the rest of a message. */
static int drop(dq_client *c, int code) {
  if (c->fd >= 0) close(c->fd);
  c->fd = -1;
  c->has_db = 0;
  return code;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- sockets ---- */

static int split_hostport(const char *addr, char *host, size_t hostlen, char *port, size_t portlen) {
  const char *colon = strrchr(addr, ':');
  if (!colon || colon == addr || !colon[1]) return -1;
  size_t hl = (size_t)(colon - addr);
  if (addr[0] == '[' && hl >= 2 && addr[hl - 1] == ']') { addr++; hl -= 2; }
  if (hl >= hostlen || strlen(colon + 1) >= portlen) return -1;
  memcpy(host, addr, hl);
  host[hl] = 0;
  strcpy(port, colon + 1);
  return 0;
}

/* A TCP connection with a connect timeout; send and receive time out after timeout_s too. */
static int tcp_connect(const char *addr, double timeout_s, char *err, size_t errlen) {
  char host[256], port[32];
  if (split_hostport(addr, host, sizeof host, port, sizeof port)) {
    snprintf(err, errlen, "'%s' is not host:port", addr);
    return -1;
  }
  struct addrinfo hints = {0}, *res = NULL;
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  int rc = getaddrinfo(host, port, &hints, &res);
  if (rc) {
    snprintf(err, errlen, "%s: %s", addr, gai_strerror(rc));
    return -1;
  }
  int fd = -1;
  for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) continue;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) break;
    if (errno == EINPROGRESS) {
      struct pollfd p = {.fd = fd, .events = POLLOUT};
      int soerr = 0;
      socklen_t sl = sizeof soerr;
      if (poll(&p, 1, (int)(timeout_s * 1000)) == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 &&
          soerr == 0)
        break;
      errno = soerr ? soerr : ETIMEDOUT;
    }
    snprintf(err, errlen, "%s: %s", addr, strerror(errno));
    close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  if (fd < 0) return -1;
  /* back to blocking, with timeouts */
  int flags = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &flags, sizeof flags);
  struct timeval tv = {.tv_sec = (time_t)timeout_s, .tv_usec = (suseconds_t)((timeout_s - (time_t)timeout_s) * 1e6)};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
    snprintf(err, errlen, "%s: %s", addr, strerror(errno));
    close(fd);
    return -1;
  }
  return fd;
}

static int write_all(int fd, const void *p, size_t n) {
  const unsigned char *b = p;
  while (n) {
    ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    b += w;
    n -= (size_t)w;
  }
  return 0;
}

static int read_all(int fd, void *p, size_t n) {
  unsigned char *b = p;
  while (n) {
    ssize_t r = recv(fd, b, n, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      if (r == 0) errno = ECONNRESET;
      return -1;
    }
    b += r;
    n -= (size_t)r;
  }
  return 0;
}

/* ---- message building: c->buf holds the 8-byte header, then the body ---- */

static int reserve(dq_client *c, size_t extra) {
  if (c->len + extra <= c->cap) return 0;
  size_t cap = c->cap ? c->cap : 4096;
  while (cap < c->len + extra) cap *= 2;
  unsigned char *b = realloc(c->buf, cap);
  if (!b) return -1;
  c->buf = b;
  c->cap = cap;
  return 0;
}

static void put_u64(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static uint64_t get_u64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
  return v;
}

static int msg_begin(dq_client *c) {
  c->len = 0;
  c->err[0] = 0;
  if (reserve(c, 8)) return -1;
  memset(c->buf, 0, 8);
  c->len = 8;
  return 0;
}
static int msg_u64(dq_client *c, uint64_t v) {
  if (reserve(c, 8)) return -1;
  put_u64(c->buf + c->len, v);
  c->len += 8;
  return 0;
}
/* bytes then zeros up to a word boundary (text: with its NUL, so at least one zero) */
static int msg_padded(dq_client *c, const void *p, size_t n, int text) {
  size_t total = (n + (size_t)text + 7) / 8 * 8;
  if (total == 0) return 0;
  if (reserve(c, total)) return -1;
  if (n) memcpy(c->buf + c->len, p, n);
  memset(c->buf + c->len + n, 0, total - n);
  c->len += total;
  return 0;
}
static int msg_text(dq_client *c, const char *s) { return msg_padded(c, s, strlen(s), 1); }

/* params-tuple (schema 0): count byte, one type byte each, padded; then the values */
static int msg_params(dq_client *c, int n, const dq_value *v) {
  unsigned char head[256 + 8];
  size_t hl = ((size_t)n + 1 + 7) / 8 * 8;
  memset(head, 0, sizeof head);
  head[0] = (unsigned char)n;
  for (int i = 0; i < n; i++) head[1 + i] = (unsigned char)v[i].type;
  if (msg_padded(c, head, hl, 0)) return -1;
  for (int i = 0; i < n; i++) {
    int rc = 0;
    switch (v[i].type) {
    case DQ_INTEGER: rc = msg_u64(c, (uint64_t)v[i].i); break;
    case DQ_FLOAT: {
      uint64_t bits;
      memcpy(&bits, &v[i].f, 8);
      rc = msg_u64(c, bits);
      break;
    }
    case DQ_TEXT: rc = msg_text(c, v[i].p ? (const char *)v[i].p : ""); break;
    case DQ_BLOB: rc = msg_u64(c, v[i].n) || msg_padded(c, v[i].p, v[i].n, 0); break;
    default: rc = msg_u64(c, 0); break; /* NULL */
    }
    if (rc) return -1;
  }
  return 0;
}

static int msg_send(dq_client *c, int type) {
  size_t words = (c->len - 8) / 8;
  c->buf[0] = (unsigned char)words;
  c->buf[1] = (unsigned char)(words >> 8);
  c->buf[2] = (unsigned char)(words >> 16);
  c->buf[3] = (unsigned char)(words >> 24);
  c->buf[4] = (unsigned char)type;
  c->buf[5] = 0;
  if (c->fd < 0) return fail(c, DQ_IO, "not connected to a leader");
  if (write_all(c->fd, c->buf, c->len)) return drop(c, fail(c, DQ_IO, "sending to %s: %s", c->leader, strerror(errno)));
  return DQ_OK;
}

/* Reads one response into c->buf (body only, c->len bytes); *type is its type. A failure response
** becomes DQ_FAILED or DQ_LEADER with the server's text. */
static int msg_recv(dq_client *c, int *type) {
  unsigned char h[8];
  if (read_all(c->fd, h, 8))
    return drop(c, fail(c, DQ_IO, "reading from %s: %s", c->leader, errno == EAGAIN ? "timed out" : strerror(errno)));
  uint64_t words = (uint64_t)h[0] | (uint64_t)h[1] << 8 | (uint64_t)h[2] << 16 | (uint64_t)h[3] << 24;
  if (words * 8 > MAX_BODY)
    return drop(c, fail(c, DQ_PROTO, "a response of %llu bytes (the limit is %u)", (unsigned long long)words * 8, MAX_BODY));
  /* the buffer grows with the bytes that arrive, not with the size the header claims */
  size_t want = (size_t)words * 8, got = 0;
  c->len = 0;
  while (got < want) {
    size_t chunk = want - got < (1u << 20) ? want - got : (1u << 20);
    if (reserve(c, chunk + 8)) return drop(c, fail(c, DQ_NOMEM, "out of memory for a %zu-byte response", want));
    if (read_all(c->fd, c->buf + got, chunk))
      return drop(c, fail(c, DQ_IO, "reading from %s: %s", c->leader, errno == EAGAIN ? "timed out" : strerror(errno)));
    got += chunk;
    c->len = got;
  }
  *type = h[4];
  if (*type == RS_FAILURE) {
    if (c->len < 8) return fail(c, DQ_PROTO, "a short failure response");
    uint64_t code = get_u64(c->buf);
    char msg[401]; /* the text, cut to 400 bytes and terminated whether or not the server did */
    size_t ml = strnlen((const char *)c->buf + 8, c->len - 8);
    if (ml > 400) ml = 400;
    memcpy(msg, c->buf + 8, ml);
    msg[ml] = 0;
    int leader = code == SQLITE_IOERR_NOT_LEADER || code == SQLITE_IOERR_LEADERSHIP_LOST ||
                 strstr(msg, "not leader") || strstr(msg, "leadership lost");
    int busy = (code & 0xff) == 5 /* SQLITE_BUSY */ || (code & 0xff) == 6 /* SQLITE_LOCKED */;
    if (!ml) return fail(c, leader ? DQ_LEADER : busy ? DQ_BUSY : DQ_FAILED, "%s refused the request (code %llu, no message)",
                         c->leader, (unsigned long long)code);
    return fail(c, leader ? DQ_LEADER : busy ? DQ_BUSY : DQ_FAILED, "%s", msg);
  }
  return DQ_OK;
}

static int expect(dq_client *c, int want) {
  int type, rc = msg_recv(c, &type);
  if (rc) return rc;
  if (type != want) return fail(c, DQ_PROTO, "response type %d to a request expecting %d", type, want);
  return DQ_OK;
}

/* ---- a reader over a response body ---- */
typedef struct { const unsigned char *p, *end; } rd;
static int rd_u64(rd *r, uint64_t *v) {
  if (r->end - r->p < 8) return -1;
  *v = get_u64(r->p);
  r->p += 8;
  return 0;
}
static int rd_text(rd *r, const char **s, size_t *n) {
  size_t avail = (size_t)(r->end - r->p);
  if (!avail) return -1;
  size_t l = strnlen((const char *)r->p, avail);
  if (l == avail) return -1;
  *s = (const char *)r->p;
  *n = l;
  r->p += (l + 1 + 7) / 8 * 8 <= avail ? (l + 1 + 7) / 8 * 8 : avail;
  return 0;
}

/* ---- connection setup ---- */

static int handshake(int fd) {
  unsigned char v[8];
  put_u64(v, 1); /* protocol version 1 */
  return write_all(fd, v, 8);
}

/* LEADER request on an open connection */
static int ask_leader_fd(dq_client *c, uint64_t *id, char *addr, size_t addrlen) {
  int rc;
  if (msg_begin(c) || msg_u64(c, 0)) return fail(c, DQ_NOMEM, "out of memory");
  if ((rc = msg_send(c, RQ_LEADER)) || (rc = expect(c, RS_LEADER))) return rc;
  rd r = {c->buf, c->buf + c->len};
  const char *s;
  size_t n;
  if (rd_u64(&r, id) || rd_text(&r, &s, &n)) return fail(c, DQ_PROTO, "a malformed leader response");
  snprintf(addr, addrlen, "%.*s", (int)n, s);
  return DQ_OK;
}

static int open_db(dq_client *c) {
  int rc;
  if (msg_begin(c) || msg_text(c, c->database) || msg_u64(c, 0) || msg_text(c, "")) return fail(c, DQ_NOMEM, "out of memory");
  if ((rc = msg_send(c, RQ_OPEN)) || (rc = expect(c, RS_DB))) return rc;
  if (c->len < 8) return fail(c, DQ_PROTO, "a short database response");
  c->db_id = (uint32_t)get_u64(c->buf);
  c->has_db = 1;
  return DQ_OK;
}

/* Tries each server once: connect, ask who leads, connect there, confirm. */
static int find_leader_once(dq_client *c) {
  char list[4096];
  snprintf(list, sizeof list, "%s", c->servers);
  char *save = NULL;
  for (char *a = strtok_r(list, ",", &save); a; a = strtok_r(NULL, ",", &save)) {
    while (*a == ' ') a++;
    if (!*a) continue;
    char err[256];
    int fd = tcp_connect(a, c->timeout_s, err, sizeof err);
    if (fd < 0) { fail(c, DQ_IO, "%s", err); continue; }
    c->fd = fd;
    snprintf(c->leader, sizeof c->leader, "%s", a);
    uint64_t id = 0;
    char leader[256] = "";
    if (handshake(fd)) {
      drop(c, fail(c, DQ_IO, "%s: %s", a, strerror(errno)));
      continue;
    }
    if (ask_leader_fd(c, &id, leader, sizeof leader) || !leader[0]) {
      if (!leader[0] && !c->err[0]) fail(c, DQ_LEADER, "%s knows no leader", a);
      drop(c, 0);
      continue;
    }
    if (strcmp(leader, a) != 0) { /* go to the leader and ask it again */
      drop(c, 0);
      fd = tcp_connect(leader, c->timeout_s, err, sizeof err);
      if (fd < 0) { fail(c, DQ_IO, "%s", err); continue; }
      c->fd = fd;
      snprintf(c->leader, sizeof c->leader, "%s", leader);
      uint64_t id2 = 0;
      char again[256] = "";
      if (handshake(fd) || ask_leader_fd(c, &id2, again, sizeof again) || strcmp(again, leader) != 0) {
        fail(c, DQ_LEADER, "%s does not confirm it leads", leader);
        drop(c, 0);
        continue;
      }
      id = id2;
    }
    c->leader_id = id;
    if (c->database) {
      int rc = open_db(c);
      if (rc) {
        drop(c, 0);
        if (rc == DQ_FAILED || rc == DQ_PROTO) return rc;
        continue;
      }
    }
    c->err[0] = 0;
    return DQ_OK;
  }
  return c->err[0] ? DQ_IO : fail(c, DQ_MISUSE, "no server address given");
}

int dq_reconnect(dq_client *c) {
  if (c->fd >= 0) close(c->fd);
  c->fd = -1;
  c->has_db = 0;
  c->leader_id = 0;
  double deadline = now_s() + c->timeout_s;
  int rc;
  for (;;) {
    c->err[0] = 0;
    rc = find_leader_once(c);
    if (rc == DQ_OK || rc == DQ_FAILED || rc == DQ_PROTO || rc == DQ_MISUSE || now_s() >= deadline) break;
    usleep(100 * 1000); /* an election may be running */
  }
  if (rc) {
    char e[512];
    snprintf(e, sizeof e, "%s", c->err);
    fail(c, rc, "no leader reachable through %s within %.0f s (last: %s)", c->servers, c->timeout_s, e);
  }
  return rc;
}

dq_client *dq_connect(const char *servers, const char *database, double timeout_s, char *err, size_t errlen) {
  dq_client *c = calloc(1, sizeof *c);
  if (!c) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  c->fd = -1;
  c->timeout_s = timeout_s > 0 ? timeout_s : 10;
  c->servers = strdup(servers ? servers : "");
  c->database = database ? strdup(database) : NULL;
  if (!c->servers || (database && !c->database)) {
    snprintf(err, errlen, "out of memory");
    dq_close(c);
    return NULL;
  }
  if (dq_reconnect(c)) {
    snprintf(err, errlen, "%s", c->err);
    dq_close(c);
    return NULL;
  }
  return c;
}

void dq_close(dq_client *c) {
  if (!c) return;
  if (c->fd >= 0) close(c->fd);
  free(c->servers);
  free(c->database);
  free(c->buf);
  free(c);
}

const char *dq_errmsg(const dq_client *c) { return c ? c->err : "no client"; }
const char *dq_leader_address(const dq_client *c) { return c->leader; }
uint64_t dq_leader_id(const dq_client *c) { return c->leader_id; }

/* ---- SQL ---- */

static int sql_request(dq_client *c, int type, const char *sql, int nparam, const dq_value *params) {
  if (c->fd < 0) return fail(c, DQ_IO, "not connected to a leader (an earlier request failed)");
  if (!c->has_db) return fail(c, DQ_MISUSE, "no database is open on this connection");
  if (nparam < 0 || nparam > 255) return fail(c, DQ_MISUSE, "%d parameters (the limit is 255)", nparam);
  for (int i = 0; i < nparam; i++)
    if (params[i].type < DQ_INTEGER || params[i].type > DQ_NULL)
      return fail(c, DQ_MISUSE, "parameter %d has type %d", i + 1, params[i].type);
  if (msg_begin(c) || msg_u64(c, c->db_id) || msg_text(c, sql) || msg_params(c, nparam, params))
    return fail(c, DQ_NOMEM, "out of memory");
  return msg_send(c, type);
}

int dq_exec(dq_client *c, const char *sql, int nparam, const dq_value *params, uint64_t *last_id, uint64_t *changes) {
  int rc = sql_request(c, RQ_EXEC_SQL, sql, nparam, params);
  if (rc || (rc = expect(c, RS_RESULT))) return rc;
  if (c->len < 16) return fail(c, DQ_PROTO, "a short result response");
  if (last_id) *last_id = get_u64(c->buf);
  if (changes) *changes = get_u64(c->buf + 8);
  return DQ_OK;
}

void dq_rows_free(dq_rows *r) {
  if (!r) return;
  if (r->names)
    for (int i = 0; i < r->ncol; i++) free(r->names[i]);
  free(r->names);
  free(r->v);
  free(r->mem);
  free(r);
}

/* Appends the rows of one ROWS message; *more is set when another batch follows. Texts and blobs are
** copied into r->mem (offsets kept in p until the end, then turned into pointers). */
typedef struct { dq_rows *r; size_t vcap, mlen, mcap; } rows_acc;

static int acc_bytes(rows_acc *a, const void *p, size_t n, int nul, size_t *off) {
  if (a->mlen + n + 1 > a->mcap) {
    size_t cap = a->mcap ? a->mcap : 1024;
    while (cap < a->mlen + n + 1) cap *= 2;
    char *m = realloc(a->r->mem, cap);
    if (!m) return -1;
    a->r->mem = m;
    a->mcap = cap;
  }
  memcpy(a->r->mem + a->mlen, p, n);
  if (nul) a->r->mem[a->mlen + n] = 0;
  *off = a->mlen;
  a->mlen += n + (size_t)nul;
  return 0;
}

static int parse_rows(dq_client *c, rows_acc *a, int *more) {
  rd r = {c->buf, c->buf + c->len};
  dq_rows *out = a->r;
  uint64_t ncol;
  if (rd_u64(&r, &ncol) || ncol > 32767) return fail(c, DQ_PROTO, "a malformed rows response");
  if (!out->names) {
    out->ncol = (int)ncol;
    out->names = calloc(ncol ? ncol : 1, sizeof *out->names);
    if (!out->names) return fail(c, DQ_NOMEM, "out of memory");
  } else if ((int)ncol != out->ncol)
    return fail(c, DQ_PROTO, "a batch with %llu columns after %d", (unsigned long long)ncol, out->ncol);
  for (uint64_t i = 0; i < ncol; i++) {
    const char *s;
    size_t n;
    if (rd_text(&r, &s, &n)) return fail(c, DQ_PROTO, "a malformed column name");
    if (!out->names[i] && !(out->names[i] = strndup(s, n))) return fail(c, DQ_NOMEM, "out of memory");
  }
  size_t hwords = (ncol + 15) / 16;
  for (;;) {
    if (r.end - r.p < 8) return fail(c, DQ_PROTO, "a rows response without its end marker");
    uint64_t w = get_u64(r.p);
    if (w == ROWS_DONE || w == ROWS_PART) {
      *more = w == ROWS_PART;
      return DQ_OK;
    }
    if (ncol == 0) return fail(c, DQ_PROTO, "a row in a result without columns");
    if ((size_t)(r.end - r.p) < hwords * 8) return fail(c, DQ_PROTO, "a truncated row header");
    const unsigned char *h = r.p;
    r.p += hwords * 8;
    if ((size_t)(out->nrow + 1) * ncol > a->vcap) {
      size_t cap = a->vcap ? a->vcap * 2 : 64 * (ncol ? ncol : 1);
      while (cap < (size_t)(out->nrow + 1) * ncol) cap *= 2;
      dq_value *v = realloc(out->v, cap * sizeof *v);
      if (!v) return fail(c, DQ_NOMEM, "out of memory");
      out->v = v;
      a->vcap = cap;
    }
    for (uint64_t i = 0; i < ncol; i++) {
      int t = (h[i / 2] >> ((i % 2) * 4)) & 0x0f;
      dq_value *v = &out->v[(size_t)out->nrow * ncol + i];
      memset(v, 0, sizeof *v);
      uint64_t u;
      const char *s;
      size_t n, off;
      switch (t) {
      case DQ_INTEGER: case 11: /* boolean */
        if (rd_u64(&r, &u)) return fail(c, DQ_PROTO, "a truncated row");
        v->type = DQ_INTEGER;
        v->i = (int64_t)u;
        break;
      case DQ_FLOAT: case 9: /* unixtime: an integer */
        if (rd_u64(&r, &u)) return fail(c, DQ_PROTO, "a truncated row");
        if (t == 9) { v->type = DQ_INTEGER; v->i = (int64_t)u; }
        else { v->type = DQ_FLOAT; memcpy(&v->f, &u, 8); }
        break;
      case DQ_TEXT: case 10: /* ISO-8601: text */
        if (rd_text(&r, &s, &n)) return fail(c, DQ_PROTO, "a malformed text value");
        if (acc_bytes(a, s, n, 1, &off)) return fail(c, DQ_NOMEM, "out of memory");
        v->type = DQ_TEXT;
        v->n = n;
        v->p = (const void *)(uintptr_t)off;
        break;
      case DQ_BLOB:
        if (rd_u64(&r, &u) || u > (uint64_t)(r.end - r.p)) return fail(c, DQ_PROTO, "a truncated blob");
        if (acc_bytes(a, r.p, (size_t)u, 0, &off)) return fail(c, DQ_NOMEM, "out of memory");
        r.p += ((size_t)u + 7) / 8 * 8 <= (size_t)(r.end - r.p) ? ((size_t)u + 7) / 8 * 8 : (size_t)u;
        v->type = DQ_BLOB;
        v->n = (size_t)u;
        v->p = (const void *)(uintptr_t)off;
        break;
      case DQ_NULL:
        if (rd_u64(&r, &u)) return fail(c, DQ_PROTO, "a truncated row");
        v->type = DQ_NULL;
        break;
      default:
        return fail(c, DQ_PROTO, "value type %d in column %llu", t, (unsigned long long)i + 1);
      }
    }
    out->nrow++;
  }
}

int dq_query(dq_client *c, const char *sql, int nparam, const dq_value *params, dq_rows **outp) {
  *outp = NULL;
  int rc = sql_request(c, RQ_QUERY_SQL, sql, nparam, params);
  if (rc) return rc;
  rows_acc a = {0};
  if (!(a.r = calloc(1, sizeof *a.r))) return fail(c, DQ_NOMEM, "out of memory");
  int more = 1;
  while (more) {
    if ((rc = expect(c, RS_ROWS)) || (rc = parse_rows(c, &a, &more))) {
      dq_rows_free(a.r);
      return rc == DQ_PROTO || rc == DQ_NOMEM ? drop(c, rc) : rc; /* a batch half read: out of step */
    }
  }
  for (size_t i = 0; i < (size_t)a.r->nrow * a.r->ncol; i++) {
    dq_value *v = &a.r->v[i];
    if (v->type == DQ_TEXT || v->type == DQ_BLOB) v->p = a.r->mem + (uintptr_t)v->p;
  }
  *outp = a.r;
  return DQ_OK;
}

/* ---- membership ---- */

static int simple(dq_client *c, int type, uint64_t a, uint64_t b, int nb, const char *text) {
  int rc;
  if (msg_begin(c) || msg_u64(c, a) || (text && msg_text(c, text)) || (nb && msg_u64(c, b)))
    return fail(c, DQ_NOMEM, "out of memory");
  if ((rc = msg_send(c, type))) return rc;
  return expect(c, RS_EMPTY);
}

int dq_add(dq_client *c, uint64_t id, const char *address) { return simple(c, RQ_ADD, id, 0, 0, address); }
int dq_assign(dq_client *c, uint64_t id, int role) { return simple(c, RQ_ASSIGN, id, (uint64_t)role, 1, NULL); }
int dq_remove(dq_client *c, uint64_t id) { return simple(c, RQ_REMOVE, id, 0, 0, NULL); }
int dq_transfer(dq_client *c, uint64_t id) { return simple(c, RQ_TRANSFER, id, 0, 0, NULL); }

int dq_cluster(dq_client *c, dq_node **nodes, int *n) {
  int rc;
  *nodes = NULL;
  *n = 0;
  if (msg_begin(c) || msg_u64(c, 1)) return fail(c, DQ_NOMEM, "out of memory");
  if ((rc = msg_send(c, RQ_CLUSTER)) || (rc = expect(c, RS_NODES))) return rc;
  rd r = {c->buf, c->buf + c->len};
  uint64_t count;
  if (rd_u64(&r, &count) || count > 4096) return fail(c, DQ_PROTO, "a malformed cluster response");
  dq_node *out = calloc(count ? count : 1, sizeof *out);
  if (!out) return fail(c, DQ_NOMEM, "out of memory");
  for (uint64_t i = 0; i < count; i++) {
    const char *s;
    size_t l;
    uint64_t role;
    if (rd_u64(&r, &out[i].id) || rd_text(&r, &s, &l) || rd_u64(&r, &role)) {
      free(out);
      return fail(c, DQ_PROTO, "a malformed cluster response");
    }
    snprintf(out[i].address, sizeof out[i].address, "%.*s", (int)l, s);
    out[i].role = (int)role;
  }
  *nodes = out;
  *n = (int)count;
  return DQ_OK;
}

int dq_ask_leader(const char *address, double timeout_s, uint64_t *id, char *leader, size_t leaderlen, char *err,
                  size_t errlen) {
  dq_client c = {0};
  c.fd = tcp_connect(address, timeout_s, err, errlen);
  if (c.fd < 0) return DQ_IO;
  snprintf(c.leader, sizeof c.leader, "%s", address);
  int rc = handshake(c.fd) ? fail(&c, DQ_IO, "%s: %s", address, strerror(errno))
                           : ask_leader_fd(&c, id, leader, leaderlen);
  if (rc) snprintf(err, errlen, "%s", c.err);
  if (c.fd >= 0) close(c.fd);
  free(c.buf);
  return rc;
}
