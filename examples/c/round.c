/*
** examples/c/round.c — a C program with SQLite and sqlite-prefix linked in statically: it registers the
** extension for every connection, then tokenizes, trains a prefix from rows and generates with it.
**
**   cc round.c $(pkg-config --cflags --libs --static sqlite-prefix) -o round
**   ./round /path/to/stories260K.gguf
*/
#include <sqlite3.h>
#include <sqlite_prefix.h>
#include <stdio.h>

static int print_row(void *arg, int n, char **val, char **col) {
  (void)arg;
  for (int i = 0; i < n; i++) printf("%s%s = %s\n", i ? "  " : "", col[i], val[i] ? val[i] : "NULL");
  return 0;
}

int main(int argc, char **argv) {
  const char *model = argc > 1 ? argv[1] : "../shared/models/stories260K.gguf";
  if (sqlite3_auto_extension((void (*)(void))sqlite3_prefix_init) != SQLITE_OK) return 1;
  sqlite3 *db;
  if (sqlite3_open(":memory:", &db) != SQLITE_OK) return 1;
  char *sql = sqlite3_mprintf(
      "SELECT prefix_version() AS version;"
      "SELECT prefix_model_load('m', %Q) AS loaded;"
      "SELECT prefix_tokenize('m', 'Once upon a time') AS tokens;"
      "CREATE TABLE pairs(prompt TEXT, completion TEXT);"
      "INSERT INTO pairs VALUES ('The day was', ' bright and sunny.' || char(10)), ('The dog was', ' happy in the sun.' || char(10));"
      "CREATE TABLE p AS SELECT prefix_train('m', 'SELECT prompt, completion FROM pairs', '{\"max_steps\": 200, \"add_eos\": false}') AS b;"
      "SELECT json_extract(prefix_info(b), '$.prefix_len') AS prefix_len FROM p;"
      "SELECT prefix_generate('m', b, 'The dog was', '{\"stop\": \"\\n\"}') AS generated FROM p;",
      model);
  char *err = NULL;
  int rc = sqlite3_exec(db, sql, print_row, NULL, &err);
  if (rc != SQLITE_OK) fprintf(stderr, "round: %s\n", err ? err : sqlite3_errstr(rc));
  sqlite3_free(err);
  sqlite3_free(sql);
  sqlite3_close(db);
  return rc == SQLITE_OK ? 0 : 1;
}
