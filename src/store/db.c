#include "store/db.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
    pthread_cond_t freed;    /* signalled when a connection is returned or closed */
    struct idle_conn *idle;  /* stack of idle connections (size max) */
    int n_idle;              /* entries used in idle */
    int n_open;              /* connections open, idle or in use */
};

/* Server notices go to the log (libpq would print them raw on stderr). */
static void on_notice(void *arg, const char *message)
{
    size_t n = strlen(message);
    while (n && (message[n - 1] == '\n' || message[n - 1] == ' ')) n--;
    LOG_WARN("db", "%.*s", (int)n, message);
}

static PGconn *connect_new(const char *conninfo, char **err)
{
    PGconn *c = PQconnectdb(conninfo);
    if (PQstatus(c) != CONNECTION_OK) {
        if (err) {
            *err = xstrdup(PQerrorMessage(c));
            size_t n = strlen(*err);
            while (n && ((*err)[n - 1] == '\n' || (*err)[n - 1] == ' ')) (*err)[--n] = '\0';
        }
        PQfinish(c);
        return NULL;
    }
    PQsetNoticeProcessor(c, on_notice, NULL);
    /* Quiet NOTICEs (e.g. "relation already exists"). */
    PGresult *r = PQexec(c, "SET client_min_messages = warning");
    PQclear(r);
    return c;
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
    p->idle = xcalloc((size_t)p->max, sizeof *p->idle);
    PGconn *c = connect_new(conninfo, err);
    if (!c) {
        db_pool_free(p);
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
    for (int i = 0; i < p->n_idle; i++) PQfinish(p->idle[i].conn);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->freed);
    free(p->idle);
    free(p->conninfo);
    free(p);
}

PGconn *db_acquire(struct db_pool *p, int timeout_ms, char **err)
{
    int64_t deadline = clock_mono_ms() + timeout_ms;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (p->n_idle > 0) {
            struct idle_conn ic = p->idle[--p->n_idle];
            bool stale = p->idle_timeout_ms && clock_mono_ms() - ic.idle_since > p->idle_timeout_ms;
            if (!stale && PQstatus(ic.conn) == CONNECTION_OK) {
                pthread_mutex_unlock(&p->lock);
                return ic.conn;
            }
            PQfinish(ic.conn);
            p->n_open--;
        }
        if (p->n_open < p->max) {
            p->n_open++;
            pthread_mutex_unlock(&p->lock);
            char *why = NULL;
            PGconn *c = connect_new(p->conninfo, &why);
            if (c) {
                free(why);
                return c;
            }
            pthread_mutex_lock(&p->lock);
            p->n_open--;
            pthread_cond_signal(&p->freed);
            if (clock_mono_ms() >= deadline) {
                pthread_mutex_unlock(&p->lock);
                LOG_WARN("db", "cannot connect to the database: %s", why);
                if (err) *err = xasprintf("database unavailable: %s", why);
                free(why);
                return NULL;
            }
            free(why);
            /* The server may be restarting: wait a little before trying again. */
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 200 * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&p->freed, &p->lock, &ts);
            continue;
        }
        int64_t left = deadline - clock_mono_ms();
        if (left <= 0) {
            pthread_mutex_unlock(&p->lock);
            if (err) *err = xstrdup("timed out waiting for a database connection");
            return NULL;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += left / 1000;
        ts.tv_nsec += (left % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
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
    PGresult *r = PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0);
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
