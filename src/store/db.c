#include "store/db.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-events.h>
#include "base/hash.h"

#include "base/alloc.h"
#include "base/clock.h"
#include "base/log.h"

struct idle_conn {
    PGconn *conn;      /* an open connection not in use */
    int64_t idle_since; /* clock_mono_ms when it was returned */
};

struct db_pool {
    char *conninfo;          /* libpq connection string */
    int max;                 /* most connections open at once */
    int idle_timeout_ms;     /* close idle connections older than this; 0 = never */
    pthread_mutex_t lock;    /* guards the fields below */
    pthread_cond_t freed;    /* signalled when a connection is returned, opened or closed */
    pthread_cond_t need;     /* signalled when a waiter may need a new connection, and on stop */
    struct idle_conn *idle;  /* stack of idle connections (size max) */
    int n_idle;              /* entries used in idle */
    int n_open;              /* connections open, idle, in use or being opened */
    int waiting;             /* callers of db_acquire waiting for a connection */
    char *last_err;          /* why the last attempt to connect failed; NULL after a success */
    bool stop;               /* the refill thread should exit */
    pthread_t refill;        /* opens connections for waiters (never the callers themselves) */
};

/* The longest one attempt to connect may take (the refill thread's, and the
 * first one at start-up), so a server that accepts but never answers cannot
 * stall the pool. */
#define DB_CONNECT_TIMEOUT_MS 10000
/* After a failed attempt the refill thread waits this long before the next. */
#define DB_RETRY_MS 200

/* Server notices go to the log (libpq would print them raw on stderr). */
static void on_notice(void *arg, const char *message)
{
    size_t n = strlen(message);
    while (n && (message[n - 1] == '\n' || message[n - 1] == ' ')) n--;
    LOG_WARN("db", "%.*s", (int)n, message);
}

static char *conn_error(PGconn *c, const char *fallback)
{
    char *e = xstrdup(c && *PQerrorMessage(c) ? PQerrorMessage(c) : fallback);
    size_t n = strlen(e);
    while (n && (e[n - 1] == '\n' || e[n - 1] == ' ')) e[--n] = '\0';
    return e;
}

/* ---- prepared statements ----
 *
 * Every statement with parameters is prepared once per pool connection (the
 * first time that connection runs it) and then executed by name, so the
 * server parses and analyses it once instead of on every call and may reuse
 * its plan. The statements a connection has are kept with it as libpq
 * instance data and go with it (PQfinish). A connection is used by one
 * thread at a time, so they need no lock. Connections opened outside the pool
 * (the command-line tools) have none and run statements unnamed. */

/* A statement prepared on one connection. */
struct db_stmt {
    char name[16];      /* its server-side name, "s<n>" */
    UT_hash_handle hh;  /* in db_stmts.by_sql; the key is the SQL text, allocated with the entry */
    char sql[];         /* the statement (hash key) */
};

/* The statements prepared on one pool connection. */
struct db_stmts {
    struct db_stmt *by_sql; /* SQL text -> statement */
    int n;                  /* entries */
};

/* The most statements kept per connection; further ones run unnamed (a
 * statement whose text varies from call to call must not grow it forever). */
#define DB_STMTS_MAX 256

static void stmts_free(struct db_stmts *st)
{
    if (!st) return;
    struct db_stmt *s, *t;
    HASH_ITER(hh, st->by_sql, s, t)
    {
        HASH_DEL(st->by_sql, s);
        free(s);
    }
    free(st);
}

/* libpq calls it on the connection's events: the statements go with the
 * connection (and are gone on the server after a reset). */
static int stmts_event(PGEventId id, void *info, void *arg)
{
    (void)arg;
    if (id == PGEVT_CONNDESTROY || id == PGEVT_CONNRESET) {
        PGconn *c = id == PGEVT_CONNDESTROY ? ((PGEventConnDestroy *)info)->conn : ((PGEventConnReset *)info)->conn;
        stmts_free(PQinstanceData(c, stmts_event));
        PQsetInstanceData(c, stmts_event, NULL);
    }
    return 1;
}

/* Gives a pool connection its (empty) set of prepared statements. */
static void stmts_attach(PGconn *c)
{
    if (PQregisterEventProc(c, stmts_event, "syncv3 statements", NULL))
        PQsetInstanceData(c, stmts_event, xcalloc(1, sizeof(struct db_stmts)));
}

/* The name sql is prepared under on c, preparing it first if needed; NULL:
 * run it unnamed (not a pool connection, or the set is full), or it failed
 * to prepare and *fail is the server's answer (a syntax or type error is
 * reported as running it would have). */
static const char *stmt_name(PGconn *c, const char *sql, int n, PGresult **fail)
{
    struct db_stmts *st = PQinstanceData(c, stmts_event);
    if (!st) return NULL;
    struct db_stmt *s;
    HASH_FIND_STR(st->by_sql, sql, s);
    if (s) return s->name;
    if (st->n >= DB_STMTS_MAX) return NULL;
    size_t len = strlen(sql);
    s = xcalloc(1, sizeof *s + len + 1);
    memcpy(s->sql, sql, len + 1);
    snprintf(s->name, sizeof s->name, "s%d", st->n);
    PGresult *r = PQprepare(c, s->name, sql, n, NULL);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        *fail = r;
        free(s);
        return NULL;
    }
    PQclear(r);
    st->n++;
    HASH_ADD(hh, st->by_sql, sql, len, s);
    return s->name;
}

/* Connects within timeout_ms (PQconnectStart/PQconnectPoll, so the deadline
 * holds whatever the server does). Returns NULL with *err (heap). */
static PGconn *connect_new(const char *conninfo, int timeout_ms, char **err)
{
    int64_t deadline = clock_mono_ms() + timeout_ms;
    PGconn *c = PQconnectStart(conninfo);
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;
    if (!c || PQstatus(c) == CONNECTION_BAD) st = PGRES_POLLING_FAILED;
    while (st != PGRES_POLLING_OK && st != PGRES_POLLING_FAILED) {
        struct pollfd pfd = {PQsocket(c), st == PGRES_POLLING_READING ? POLLIN : POLLOUT, 0};
        int64_t left = deadline - clock_mono_ms();
        int rc = left > 0 ? poll(&pfd, 1, (int)left) : 0;
        if (rc < 0 && errno == EINTR) continue;
        if (rc <= 0) {
            *err = rc == 0 ? xasprintf("no answer from the database within %d ms", timeout_ms)
                           : xasprintf("poll: %s", strerror(errno));
            PQfinish(c);
            return NULL;
        }
        st = PQconnectPoll(c);
    }
    if (st == PGRES_POLLING_FAILED) {
        *err = conn_error(c, "cannot connect");
        PQfinish(c);
        return NULL;
    }
    PQsetNoticeProcessor(c, on_notice, NULL);
    stmts_attach(c);
    /* Quiet NOTICEs (e.g. "relation already exists"). */
    PGresult *r = PQexec(c, "SET client_min_messages = warning");
    PQclear(r);
    return c;
}

/* The CLOCK_REALTIME time ms from now, for pthread_cond_timedwait. */
static struct timespec abs_in(int64_t ms)
{
    return clock_abs_in(CLOCK_REALTIME, ms);
}

/* Whether a waiter lacks a connection the pool may still open. Lock held. */
static bool refill_due(const struct db_pool *p)
{
    return p->waiting > p->n_idle && p->n_open < p->max;
}

/* The refill thread: opens connections while callers wait for one, so no
 * caller (an HTTP thread least of all) ever blocks in a connect. */
static void *refill_run(void *arg)
{
    struct db_pool *p = arg;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (!p->stop && !refill_due(p)) pthread_cond_wait(&p->need, &p->lock);
        if (p->stop) break;
        p->n_open++;
        pthread_mutex_unlock(&p->lock);
        char *why = NULL;
        PGconn *c = connect_new(p->conninfo, DB_CONNECT_TIMEOUT_MS, &why);
        pthread_mutex_lock(&p->lock);
        if (c) {
            if (p->last_err) LOG_INFO("db", "connected to the database again");
            free(p->last_err);
            p->last_err = NULL;
            p->idle[p->n_idle++] = (struct idle_conn){c, clock_mono_ms()};
            pthread_cond_broadcast(&p->freed);
            continue;
        }
        p->n_open--;
        if (!p->last_err) LOG_WARN("db", "cannot connect to the database (retrying while needed): %s", why);
        free(p->last_err);
        p->last_err = why;
        pthread_cond_broadcast(&p->freed);
        /* The server may be restarting: wait a little before trying again
         * (waiters arriving meanwhile do not cut it short). */
        int64_t until = clock_mono_ms() + DB_RETRY_MS;
        while (!p->stop && clock_mono_ms() < until) {
            struct timespec ts = abs_in(until - clock_mono_ms());
            pthread_cond_timedwait(&p->need, &p->lock, &ts);
        }
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

int db_pool_new(struct db_pool **out, const char *conninfo, int max_conns, int idle_timeout_secs,
                char **err)
{
    struct db_pool *p = xcalloc(1, sizeof *p);
    p->conninfo = xstrdup(conninfo);
    p->max = max_conns > 0 ? max_conns : 8;
    p->idle_timeout_ms = idle_timeout_secs * 1000;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->freed, NULL);
    pthread_cond_init(&p->need, NULL);
    p->idle = xcalloc((size_t)p->max, sizeof *p->idle);
    PGconn *c = connect_new(conninfo, DB_CONNECT_TIMEOUT_MS, err);
    if (!c || pthread_create(&p->refill, NULL, refill_run, p) != 0) {
        if (c && err) *err = xstrdup("cannot start the database pool's thread");
        PQfinish(c);
        pthread_mutex_destroy(&p->lock);
        pthread_cond_destroy(&p->freed);
        pthread_cond_destroy(&p->need);
        free(p->idle);
        free(p->conninfo);
        free(p);
        return -1;
    }
    p->idle[p->n_idle++] = (struct idle_conn){c, clock_mono_ms()};
    p->n_open = 1;
    *out = p;
    return 0;
}

void db_pool_free(struct db_pool *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->lock);
    p->stop = true;
    pthread_cond_broadcast(&p->need);
    pthread_mutex_unlock(&p->lock);
    pthread_join(p->refill, NULL);
    for (int i = 0; i < p->n_idle; i++) PQfinish(p->idle[i].conn);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->freed);
    pthread_cond_destroy(&p->need);
    free(p->idle);
    free(p->last_err);
    free(p->conninfo);
    free(p);
}

PGconn *db_acquire(struct db_pool *p, int timeout_ms, char **err)
{
    int64_t deadline = clock_mono_ms() + timeout_ms;
    bool counted = false;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (p->n_idle > 0) {
            struct idle_conn ic = p->idle[--p->n_idle];
            bool stale = p->idle_timeout_ms && clock_mono_ms() - ic.idle_since > p->idle_timeout_ms;
            if (!stale && PQstatus(ic.conn) == CONNECTION_OK) {
                if (counted) p->waiting--;
                pthread_mutex_unlock(&p->lock);
                return ic.conn;
            }
            PQfinish(ic.conn);
            p->n_open--;
        }
        int64_t left = deadline - clock_mono_ms();
        if (left <= 0) {
            if (counted) p->waiting--;
            if (err)
                *err = p->last_err ? xasprintf("database unavailable: %s", p->last_err)
                                   : xstrdup("timed out waiting for a database connection");
            pthread_mutex_unlock(&p->lock);
            return NULL;
        }
        if (!counted) p->waiting++;
        counted = true;
        /* The refill thread opens one if the pool may grow. */
        if (refill_due(p)) pthread_cond_signal(&p->need);
        struct timespec ts = abs_in(left);
        pthread_cond_timedwait(&p->freed, &p->lock, &ts);
    }
}

void db_release(struct db_pool *p, PGconn *c)
{
    if (!c) return;
    bool ok = PQstatus(c) == CONNECTION_OK && PQtransactionStatus(c) == PQTRANS_IDLE;
    pthread_mutex_lock(&p->lock);
    if (ok && p->n_idle < p->max) {
        p->idle[p->n_idle++] = (struct idle_conn){c, clock_mono_ms()};
    } else {
        PQfinish(c);
        p->n_open--;
    }
    pthread_cond_signal(&p->freed);
    pthread_mutex_unlock(&p->lock);
}

PGresult *db_exec(PGconn *c, char **err, const char *sql, int n, const char *const *params)
{
    PGresult *r = NULL;
    const char *name = n > 0 ? stmt_name(c, sql, n, &r) : NULL;
    if (name)
        r = PQexecPrepared(c, name, n, params, NULL, NULL, 0);
    else if (!r)
        r = PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) return r;
    const char *msg = PQresultErrorMessage(r);
    if (!msg || !*msg) msg = PQerrorMessage(c);
    LOG_WARN("db", "query failed: %.*s: %s", 120, sql, msg);
    if (err && !*err) *err = xstrdup(msg);
    PQclear(r);
    return NULL;
}

int db_cmd(PGconn *c, char **err, const char *sql, int n, const char *const *params)
{
    PGresult *r = db_exec(c, err, sql, n, params);
    if (!r) return -1;
    PQclear(r);
    return 0;
}

int64_t db_cmd_rows_i64(PGconn *c, char **err, const char *sql, int64_t v)
{
    char arg[24];
    snprintf(arg, sizeof arg, "%lld", (long long)v);
    const char *p[] = {arg};
    PGresult *r = db_exec(c, err, sql, 1, p);
    if (!r) return -1;
    errno = 0;
    long long n = strtoll(PQcmdTuples(r), NULL, 10);
    PQclear(r);
    return errno ? 0 : n;
}

int db_begin(PGconn *c, char **err)
{
    return db_cmd(c, err, "BEGIN", 0, NULL);
}

int db_commit(PGconn *c, char **err)
{
    return db_cmd(c, err, "COMMIT", 0, NULL);
}

void db_rollback(PGconn *c)
{
    if (PQtransactionStatus(c) != PQTRANS_IDLE) {
        PGresult *r = PQexec(c, "ROLLBACK");
        PQclear(r);
    }
}

void db_array_elem_n(struct buf *b, const char *s, size_t n)
{
    if (!s) {
        buf_puts(b, "NULL");
        return;
    }
    buf_putc(b, '"');
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"' || s[i] == '\\') {
            buf_append(b, s + run, i - run);
            buf_putc(b, '\\');
            run = i;
        }
    }
    buf_append(b, s + run, n - run);
    buf_putc(b, '"');
}

void db_array_elem(struct buf *b, const char *s)
{
    db_array_elem_n(b, s, s ? strlen(s) : 0);
}

void db_arr_init(struct db_arr *a)
{
    buf_init(&a->b, 0);
    buf_putc(&a->b, '{');
    a->n = 0;
}

void db_arr_release(struct db_arr *a)
{
    buf_release(&a->b);
}

/* The separator before the next element. */
static void arr_next(struct db_arr *a)
{
    if (a->n++) buf_putc(&a->b, ',');
}

void db_arr_str(struct db_arr *a, const char *s)
{
    arr_next(a);
    db_array_elem(&a->b, s);
}

void db_arr_i64(struct db_arr *a, int64_t v)
{
    arr_next(a);
    buf_printf(&a->b, "%lld", (long long)v);
}

void db_arr_bool(struct db_arr *a, bool v)
{
    arr_next(a);
    buf_putc(&a->b, v ? 't' : 'f');
}

void db_arr_null(struct db_arr *a)
{
    arr_next(a);
    buf_puts(&a->b, "NULL");
}

const char *db_arr_done(struct db_arr *a)
{
    buf_putc(&a->b, '}');
    return buf_cstr(&a->b);
}

int64_t db_get_i64(const PGresult *r, int row, int col)
{
    if (PQgetisnull(r, row, col)) return 0;
    const char *v = PQgetvalue(r, row, col);
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (errno || end == v) return 0;
    return n;
}

const char *db_get_str(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}
