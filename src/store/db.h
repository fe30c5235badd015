/* PostgreSQL access: a bounded connection pool and small helpers over libpq
 * (db_exec prepares each statement with parameters once per pooled
 * connection and runs it by name after that).
 *
 * Every thread that talks to the database takes a connection with db_acquire,
 * uses it, and gives it back with db_release; nobody ever holds two at once, so
 * a pool of one connection (SYNCV3_MAX_DB_CONN=1) cannot deadlock. A broken
 * connection (the server restarted) is detected on release and closed. New
 * connections are opened by the pool's own refill thread while someone waits
 * for one (each attempt at most 10 s, retried every 200 ms while needed), so
 * no caller ever blocks in a connect: a caller only waits, at most its
 * timeout. */
#ifndef SYNCV3_STORE_DB_H
#define SYNCV3_STORE_DB_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"

struct db_pool;

/* Opens the pool; connects one connection eagerly to fail fast on a bad
 * conninfo. Returns 0, or -1 with *err (heap) describing why. */
int db_pool_new(struct db_pool **out, const char *conninfo, int max_conns, int idle_timeout_secs,
                char **err);
void db_pool_free(struct db_pool *p);

/* The longest an HTTP pool thread waits for a connection (ms). Each of those
 * threads serves many clients, so rather than wait longer a request is
 * answered 503 and retried by its client. */
#define DB_WAIT_HTTP_MS 250

/* Waits until a connection is free or the refill thread opened one. Returns
 * NULL if none is within timeout_ms (then *err is set, heap: it names the
 * last connect error while the server cannot be reached). */
PGconn *db_acquire(struct db_pool *p, int timeout_ms, char **err);
/* Returns a connection; it is closed instead of reused when it is broken or
 * left inside a transaction. */
void db_release(struct db_pool *p, PGconn *c);

/* Runs a statement with text parameters (NULL entries are SQL NULL). Returns
 * the result (PQclear it) when the status is COMMAND_OK or TUPLES_OK, else
 * logs, clears, sets *err (heap) if err != NULL, and returns NULL. */
PGresult *db_exec(PGconn *c, char **err, const char *sql, int n, const char *const *params);
/* Same for statements without results; returns 0 or -1. */
int db_cmd(PGconn *c, char **err, const char *sql, int n, const char *const *params);
/* Runs a statement whose one parameter is a bigint (a cutoff, say) and
 * returns the number of rows it affected, or -1. */
int64_t db_cmd_rows_i64(PGconn *c, char **err, const char *sql, int64_t v);
int db_begin(PGconn *c, char **err);
int db_commit(PGconn *c, char **err);
void db_rollback(PGconn *c);

/* Appends s as an element of a Postgres text-array literal ({"a","b"}): the
 * caller writes the braces and commas. s == NULL appends NULL. */
void db_array_elem(struct buf *b, const char *s);
void db_array_elem_n(struct buf *b, const char *s, size_t n);
/* A Postgres array literal built element by element, for batched statements
 * (`unnest($1::text[], ...)`): db_arr_init, then one append per element,
 * db_arr_done for the text to pass as a parameter (valid until the next
 * append or db_arr_release). */
struct db_arr {
    struct buf b; /* "{...}" under construction */
    size_t n;     /* elements so far */
};

void db_arr_init(struct db_arr *a);
void db_arr_release(struct db_arr *a);
/* Appends a text element; s == NULL appends NULL. */
void db_arr_str(struct db_arr *a, const char *s);
void db_arr_i64(struct db_arr *a, int64_t v);
void db_arr_bool(struct db_arr *a, bool v);
/* Appends an SQL NULL (of any element type). */
void db_arr_null(struct db_arr *a);
/* Closes the literal and returns it. */
const char *db_arr_done(struct db_arr *a);

/* Parses a decimal column value; returns 0 for NULL/empty. */
int64_t db_get_i64(const PGresult *r, int row, int col);
/* Column value or NULL when SQL NULL. */
const char *db_get_str(const PGresult *r, int row, int col);

#endif
