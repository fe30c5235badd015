/* HTTP server on libmicrohttpd. See server.h for the contract.
 *
 * Locking (order: req->mu before srv->tmu; srv->amu is a leaf):
 *   req->mu  guards a request's phase, wake_pending and park_gen;
 *   srv->tmu guards the deadline heap (and every req->heap_idx) and srv->stopping;
 *   srv->amu guards the pending/active request counters.
 * No libmicrohttpd function is called while holding any of them. */
#include "http/server.h"

#include <errno.h>
#include <limits.h>
#include <microhttpd.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/clock.h"
#include "base/config.h"
#include "base/log.h"
#include "http/sock.h"
#include "http/static.h"
#include "obs/sentry.h"

#define DEFAULT_MAX_BODY ((size_t)1 << 20)
#define DEFAULT_POOL_THREADS 4u
#define DEFAULT_MAX_CONNECTIONS 16384u
#define DEFAULT_CONN_MEMORY ((size_t)32 << 10)
#define DEFAULT_IDLE_TIMEOUT 300u
#define LISTEN_BACKLOG 1024
#define DRAIN_SEND_SECS 5
#define HEAP_NONE SIZE_MAX
#define DISCARD_MAX ((size_t)16 << 20)

/* Where a request is in its life. Transitions are made under req->mu. */
enum phase {
    PH_RECEIVING, /* headers seen, body arriving */
    PH_RUNNING,   /* the handler is being called on the connection's thread */
    PH_PARKING,   /* the handler parked; the connection is being suspended */
    PH_SUSPENDED, /* suspended in libmicrohttpd, waiting for a wake or the deadline */
    PH_RESUMING,  /* someone claimed the resume; the handler will run again */
    PH_ANSWERED,  /* a response is queued */
    PH_ENDED,     /* libmicrohttpd reported the request finished; conn is gone */
};

struct route {
    char *path;      /* exact path */
    char *methods;   /* comma-separated allowed methods, NULL = any */
    http_handler_fn fn; /* handler */
    void *ud;        /* handler's argument */
};

struct heap_ent {
    int64_t deadline;     /* monotonic ms when the park ends */
    uint64_t gen;         /* req->park_gen of the park this entry belongs to */
    struct http_req *req; /* the parked request; the heap holds one reference */
};

struct http_server {
    struct MHD_Daemon *d;        /* the libmicrohttpd daemon */
    int listen_fd;               /* our listening socket (closed after the daemon stops) */
    char *unix_path;             /* unix socket file to unlink at stop, or NULL */
    int port;                    /* bound TCP port, -1 for unix sockets */
    struct route *routes;        /* exact-match routes (owned copies) */
    size_t n_routes;             /* entries in routes */
    char *static_prefix;         /* URL prefix (ending in '/') for static files, or NULL */
    const struct http_static_file *static_files; /* files below static_prefix (borrowed) */
    size_t n_static_files;       /* entries in static_files */
    size_t max_body;             /* request body limit in bytes */
    void (*on_done)(void *, int); /* per-request completion hook, or NULL */
    void *on_done_ud;            /* its argument */
    char *tls_key_pem;           /* PEM key text handed to libmicrohttpd, or NULL */
    char *tls_cert_pem;          /* PEM certificate text, or NULL */
    atomic_bool shutting_down;   /* http_server_stop has begun */
    pthread_t timer;             /* the deadline thread */
    bool timer_started;          /* timer is joinable */
    pthread_mutex_t tmu;         /* guards the heap, heap_idx fields, stopping, timer_exit */
    pthread_cond_t tcond;        /* signalled when the heap's head or the flags change */
    struct heap_ent *heap;       /* min-heap of parked requests by deadline */
    size_t heap_len;             /* entries in heap */
    size_t heap_cap;             /* allocated entries */
    bool stopping;               /* parks end at once; the timer drains the heap */
    bool timer_exit;             /* the timer thread should return */
    pthread_mutex_t amu;         /* guards pending and active */
    pthread_cond_t acond;        /* signalled when pending or active drops */
    size_t pending;              /* requests not yet answered nor ended */
    size_t active;               /* requests not yet ended */
};

struct http_req {
    struct http_server *srv;     /* owning server */
    struct MHD_Connection *conn; /* the connection; only used before PH_ENDED */
    atomic_int refs;             /* references; the server's is dropped at PH_ENDED */
    pthread_mutex_t mu;          /* guards phase, wake_pending, park_gen */
    enum phase phase;            /* see enum phase */
    bool wake_pending;           /* a wake arrived while the handler ran or parked */
    uint64_t park_gen;           /* incremented at each suspension */
    size_t heap_idx;             /* index in srv->heap or HEAP_NONE (guarded by srv->tmu) */
    int64_t deadline;            /* deadline of the last park (handler thread only) */
    bool park_called;            /* the current handler call parked (handler thread only) */
    int wakeups;                 /* handler calls so far (handler thread only) */
    char *method;                /* request method (owned) */
    char *path;                  /* request path (owned) */
    const struct route *route;   /* matched route, or NULL */
    struct buf body;             /* request body, bounded by srv->max_body */
    bool too_large;              /* the body went over the limit */
    size_t discarded;            /* body bytes dropped after going over the limit */
    bool queue_failed;           /* libmicrohttpd refused our response: close the connection */
    void *state;                 /* application state */
    void (*state_free)(void *);  /* frees state, or NULL */
    bool counted_pending;        /* still counted in srv->pending */
    int status;                  /* status of the queued response, 0 before */
    size_t resp_size;            /* body bytes of the queued response */
    int64_t start_ms;            /* monotonic arrival time */
    int64_t suspended_ms;        /* monotonic time of the last suspension */
    int64_t parked_ms;           /* time spent suspended so far */
    struct buf logx;             /* extra access-log text */
};

static const char *const cors_headers[][2] = {
    {"Access-Control-Allow-Origin", "*"},
    {"Access-Control-Allow-Methods", "GET, POST, PUT, DELETE, OPTIONS"},
    {"Access-Control-Allow-Headers", "Origin, X-Requested-With, Content-Type, Accept, Authorization"},
};

/* ---------------------------------------------------------------- counters */

static void pending_done(struct http_req *req)
{
    if (!req->counted_pending) return;
    req->counted_pending = false;
    struct http_server *s = req->srv;
    pthread_mutex_lock(&s->amu);
    s->pending--;
    pthread_cond_broadcast(&s->acond);
    pthread_mutex_unlock(&s->amu);
}

/* ---------------------------------------------------------------- refcounts */

void http_req_ref(struct http_req *req)
{
    int old = atomic_fetch_add(&req->refs, 1);
    CHECK(old > 0);
}

void http_req_unref(struct http_req *req)
{
    int old = atomic_fetch_sub(&req->refs, 1);
    CHECK(old > 0);
    if (old != 1) return;
    /* The server's own reference goes at PH_ENDED, so nobody else can see req now. */
    CHECK(req->phase == PH_ENDED);
    buf_release(&req->body);
    buf_release(&req->logx);
    free(req->method);
    free(req->path);
    pthread_mutex_destroy(&req->mu);
    free(req);
}

/* ---------------------------------------------------------------- deadline heap (under tmu) */

static void heap_set(struct http_server *s, size_t i, struct heap_ent e)
{
    s->heap[i] = e;
    e.req->heap_idx = i;
}

static void heap_up(struct http_server *s, size_t i)
{
    struct heap_ent e = s->heap[i];
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (s->heap[p].deadline <= e.deadline) break;
        heap_set(s, i, s->heap[p]);
        i = p;
    }
    heap_set(s, i, e);
}

static void heap_down(struct http_server *s, size_t i)
{
    struct heap_ent e = s->heap[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= s->heap_len) break;
        if (c + 1 < s->heap_len && s->heap[c + 1].deadline < s->heap[c].deadline) c++;
        if (e.deadline <= s->heap[c].deadline) break;
        heap_set(s, i, s->heap[c]);
        i = c;
    }
    heap_set(s, i, e);
}

static void heap_push(struct http_server *s, struct heap_ent e)
{
    if (s->heap_len == s->heap_cap) {
        s->heap_cap = s->heap_cap ? s->heap_cap * 2 : 64;
        s->heap = xrealloc(s->heap, s->heap_cap * sizeof *s->heap);
    }
    s->heap[s->heap_len++] = e;
    heap_up(s, s->heap_len - 1);
}

/* Removes entry i and returns it; its req->heap_idx becomes HEAP_NONE. */
static struct heap_ent heap_remove(struct http_server *s, size_t i)
{
    struct heap_ent e = s->heap[i];
    e.req->heap_idx = HEAP_NONE;
    s->heap_len--;
    if (i < s->heap_len) {
        struct heap_ent moved = s->heap[s->heap_len];
        heap_set(s, i, moved);
        heap_up(s, i);
        heap_down(s, moved.req->heap_idx);
    }
    return e;
}

/* ---------------------------------------------------------------- resume */

/* Ends the park identified by (req, gen) if it is still suspended. Called by
 * the timer thread for an entry it removed from the heap. */
static void end_park(struct http_req *req, uint64_t gen)
{
    bool resume = false;
    pthread_mutex_lock(&req->mu);
    if (req->phase == PH_SUSPENDED && req->park_gen == gen) {
        req->phase = PH_RESUMING;
        resume = true;
    }
    pthread_mutex_unlock(&req->mu);
    /* Only the thread that moved the request to PH_RESUMING resumes it, and a
     * suspended connection cannot end, so conn is valid here. */
    if (resume) MHD_resume_connection(req->conn);
}

void http_req_wake(struct http_req *req)
{
    struct http_server *s = req->srv;
    bool resume = false;
    struct http_req *heap_ref = NULL;
    pthread_mutex_lock(&req->mu);
    switch (req->phase) {
    case PH_RUNNING:
    case PH_PARKING:
        req->wake_pending = true;
        break;
    case PH_SUSPENDED:
        req->phase = PH_RESUMING;
        resume = true;
        pthread_mutex_lock(&s->tmu);
        if (req->heap_idx != HEAP_NONE) heap_ref = heap_remove(s, req->heap_idx).req;
        pthread_mutex_unlock(&s->tmu);
        break;
    default:
        break;
    }
    pthread_mutex_unlock(&req->mu);
    if (resume) MHD_resume_connection(req->conn);
    if (heap_ref) http_req_unref(heap_ref); /* the caller's reference keeps req alive */
}

static void *timer_main(void *arg)
{
    struct http_server *s = arg;
    pthread_mutex_lock(&s->tmu);
    while (!s->timer_exit) {
        if (s->heap_len == 0) {
            pthread_cond_wait(&s->tcond, &s->tmu);
            continue;
        }
        int64_t now = clock_mono_ms();
        struct heap_ent top = s->heap[0];
        if (!s->stopping && top.deadline > now) {
            if (top.deadline == HTTP_NO_DEADLINE) {
                pthread_cond_wait(&s->tcond, &s->tmu);
                continue;
            }
            int64_t at = top.deadline;
            struct timespec ts = {.tv_sec = (time_t)(at / 1000), .tv_nsec = (long)(at % 1000) * 1000000L};
            pthread_cond_timedwait(&s->tcond, &s->tmu, &ts);
            continue;
        }
        struct heap_ent e = heap_remove(s, 0);
        pthread_mutex_unlock(&s->tmu);
        end_park(e.req, e.gen);
        http_req_unref(e.req);
        pthread_mutex_lock(&s->tmu);
    }
    pthread_mutex_unlock(&s->tmu);
    return NULL;
}

/* ---------------------------------------------------------------- responses */

/* Queues the response. Without `owned` the body is static data the server
 * neither copies nor frees; with it, body is free()d later. */
static void queue(struct http_req *req, int status, const char *content_type, char *body, size_t len, bool owned,
                  const struct http_header *hdrs, size_t n_hdrs)
{
    CHECK(req->status == 0);
    struct MHD_Response *r;
    if (!len) {
        if (owned) free(body);
        r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    } else {
        r = MHD_create_response_from_buffer(len, body, owned ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    }
    CHECK(r != NULL);
    for (size_t i = 0; i < sizeof cors_headers / sizeof cors_headers[0]; i++)
        MHD_add_response_header(r, cors_headers[i][0], cors_headers[i][1]);
    if (content_type) MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    for (size_t i = 0; i < n_hdrs; i++) MHD_add_response_header(r, hdrs[i].name, hdrs[i].value);
    if (MHD_queue_response(req->conn, (unsigned)status, r) != MHD_YES) {
        LOG_ERROR("http", "%s %s: could not queue the %d response; closing", req->method, req->path, status);
        req->queue_failed = true;
    }
    MHD_destroy_response(r);
    req->status = status;
    req->resp_size = len;
    pthread_mutex_lock(&req->mu);
    req->phase = PH_ANSWERED;
    pthread_mutex_unlock(&req->mu);
    pending_done(req);
}

void http_req_respond(struct http_req *req, int status, const char *content_type, char *body, size_t len)
{
    queue(req, status, content_type, body, len, true, NULL, 0);
}

void http_req_respond_static(struct http_req *req, int status, const char *content_type, const void *body,
                             size_t len, const struct http_header *headers, size_t n_headers)
{
    queue(req, status, content_type, (char *)body, len, false, headers, n_headers);
}

static char *error_json(const char *errcode, const char *msg, size_t *len)
{
    struct buf b;
    buf_init(&b, 0);
    buf_putc(&b, '{');
    if (errcode) {
        buf_puts(&b, "\"errcode\":");
        buf_json_str(&b, errcode, strlen(errcode));
        buf_putc(&b, ',');
    }
    buf_puts(&b, "\"error\":");
    buf_json_str(&b, msg, strlen(msg));
    buf_putc(&b, '}');
    return buf_detach(&b, len);
}

static void respond_error_v(struct http_req *req, int status, int retry_after_secs, const char *errcode,
                            const char *fmt, va_list ap)
{
    char msg[1024];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t len;
    char *body = error_json(errcode, msg, &len);
    if (status >= 500) SENTRY_HTTP_ERROR(status, req->method, req->path, errcode, msg);
    char retry[24];
    snprintf(retry, sizeof retry, "%d", retry_after_secs);
    struct http_header h = {"Retry-After", retry};
    queue(req, status, "application/json", body, len, true, retry_after_secs > 0 ? &h : NULL,
          retry_after_secs > 0 ? 1 : 0);
}

void http_req_respond_error(struct http_req *req, int status, const char *errcode, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    respond_error_v(req, status, 0, errcode, fmt, ap);
    va_end(ap);
}

void http_req_respond_retry(struct http_req *req, int status, int retry_after_secs, const char *errcode,
                            const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    respond_error_v(req, status, retry_after_secs, errcode, fmt, ap);
    va_end(ap);
}

void http_req_log_append(struct http_req *req, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    buf_putc(&req->logx, ' ');
    buf_puts(&req->logx, tmp);
}

/* ---------------------------------------------------------------- accessors */

const char *http_req_method(const struct http_req *req) { return req->method; }
const char *http_req_path(const struct http_req *req) { return req->path; }

const char *http_req_header(struct http_req *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

const char *http_req_query(struct http_req *req, const char *name)
{
    const char *v = NULL;
    if (MHD_lookup_connection_value_n(req->conn, MHD_GET_ARGUMENT_KIND, name, strlen(name), &v, NULL) != MHD_YES)
        return NULL;
    return v ? v : "";
}

struct slice http_req_body(const struct http_req *req)
{
    return (struct slice){.p = buf_cstr(&req->body), .len = req->body.len};
}

void *http_req_state(const struct http_req *req) { return req->state; }

void http_req_set_state(struct http_req *req, void *state, void (*free_fn)(void *))
{
    if (req->state && req->state_free && req->state != state) req->state_free(req->state);
    req->state = state;
    req->state_free = free_fn;
}

int http_req_wakeups(const struct http_req *req) { return req->wakeups; }
int http_req_status(const struct http_req *req) { return req->status; }
int64_t http_req_parked_ms(const struct http_req *req) { return req->parked_ms; }

bool http_req_deadline_passed(const struct http_req *req)
{
    return req->deadline != HTTP_NO_DEADLINE && clock_mono_ms() >= req->deadline;
}

bool http_req_shutting_down(const struct http_req *req) { return atomic_load(&req->srv->shutting_down); }

void http_req_park(struct http_req *req, int64_t deadline_ms)
{
    CHECK(req->phase == PH_RUNNING);
    req->park_called = true;
    req->deadline = deadline_ms;
}

/* ---------------------------------------------------------------- routing */

static bool method_allowed(const char *methods, const char *m)
{
    if (!methods) return true;
    size_t mlen = strlen(m);
    bool get_ok = false;
    for (const char *p = methods; *p;) {
        while (*p == ',' || *p == ' ') p++;
        const char *e = p;
        while (*e && *e != ',' && *e != ' ') e++;
        size_t n = (size_t)(e - p);
        if (n == mlen && memcmp(p, m, n) == 0) return true;
        if (n == 3 && memcmp(p, "GET", 3) == 0) get_ok = true;
        p = e;
    }
    return get_ok && strcmp(m, "HEAD") == 0;
}

static const struct route *find_route(const struct http_server *s, const char *path)
{
    for (size_t i = 0; i < s->n_routes; i++)
        if (strcmp(s->routes[i].path, path) == 0) return &s->routes[i];
    return NULL;
}

/* True if path is below the static prefix (*rel = the rest) or is the prefix
 * without its trailing slash (*rel = NULL: redirect). */
static bool static_match(const struct http_server *s, const char *path, const char **rel)
{
    if (!s->static_prefix) return false;
    size_t n = strlen(s->static_prefix);
    if (strncmp(path, s->static_prefix, n) == 0) {
        *rel = path + n;
        return true;
    }
    *rel = NULL;
    return n > 1 && strlen(path) == n - 1 && strncmp(path, s->static_prefix, n - 1) == 0;
}

/* Calls the handler (again) and answers or suspends the connection. */
static void run_handler(struct http_req *req)
{
    struct http_server *s = req->srv;
    if (!req->counted_pending) {
        req->counted_pending = true;
        pthread_mutex_lock(&s->amu);
        s->pending++;
        pthread_mutex_unlock(&s->amu);
    }
    for (;;) {
        pthread_mutex_lock(&req->mu);
        req->phase = PH_RUNNING;
        req->wake_pending = false;
        pthread_mutex_unlock(&req->mu);
        req->park_called = false;
        bool saw_shutdown = atomic_load(&s->shutting_down);
        enum http_action act = req->route->fn(req->route->ud, req);
        if (req->status != 0) {
            if (act != HTTP_DONE) LOG_ERROR("http", "%s %s: handler answered and parked", req->method, req->path);
            return;
        }
        if (act != HTTP_PARK || !req->park_called) {
            LOG_ERROR("http", "%s %s: handler returned without answering or parking", req->method, req->path);
            http_req_respond_error(req, 500, "M_UNKNOWN", "Internal server error");
            return;
        }
        if (saw_shutdown) {
            http_req_respond_error(req, 503, "M_UNKNOWN", "Server is shutting down");
            return;
        }
        pthread_mutex_lock(&req->mu);
        bool again = req->wake_pending || atomic_load(&s->shutting_down) ||
                     (req->deadline != HTTP_NO_DEADLINE && clock_mono_ms() >= req->deadline);
        if (!again) req->phase = PH_PARKING;
        pthread_mutex_unlock(&req->mu);
        if (again) {
            req->wakeups++;
            continue;
        }
        break;
    }

    /* Suspend first (outside our locks); a wake in the meantime only sets
     * wake_pending, which we look at right after. */
    req->suspended_ms = clock_mono_ms();
    MHD_suspend_connection(req->conn);
    bool resume_now = false;
    pthread_mutex_lock(&req->mu);
    uint64_t gen = ++req->park_gen;
    if (req->wake_pending) {
        req->phase = PH_RESUMING;
        resume_now = true;
    } else {
        pthread_mutex_lock(&s->tmu);
        if (s->stopping) {
            req->phase = PH_RESUMING;
            resume_now = true;
        } else {
            req->phase = PH_SUSPENDED;
            http_req_ref(req);
            heap_push(s, (struct heap_ent){.deadline = req->deadline, .gen = gen, .req = req});
            if (req->heap_idx == 0) pthread_cond_signal(&s->tcond);
        }
        pthread_mutex_unlock(&s->tmu);
    }
    pthread_mutex_unlock(&req->mu);
    if (resume_now) MHD_resume_connection(req->conn);
}

static void answer_too_large(struct http_req *req)
{
    http_req_respond_error(req, 413, "M_TOO_LARGE", "Request body too large (limit %zu bytes)", req->srv->max_body);
}

/* First call for a request: create our request object and route it. */
static struct http_req *new_req(struct http_server *s, struct MHD_Connection *conn, const char *url, const char *method)
{
    struct http_req *req = xcalloc(1, sizeof *req);
    req->srv = s;
    req->conn = conn;
    atomic_init(&req->refs, 1);
    pthread_mutex_init(&req->mu, NULL);
    req->phase = PH_RECEIVING;
    req->heap_idx = HEAP_NONE;
    req->deadline = HTTP_NO_DEADLINE;
    req->method = xstrdup(method);
    req->path = xstrdup(url);
    buf_init(&req->body, s->max_body);
    buf_init(&req->logx, 1024);
    req->start_ms = clock_mono_ms();
    /* Counted as pending (for shutdown) only once its handler runs: a request
     * whose body is still arriving (or never will) is not suspended and
     * MHD_stop_daemon closes it, so shutdown need not wait for it. */
    req->counted_pending = false;
    pthread_mutex_lock(&s->amu);
    s->active++;
    pthread_mutex_unlock(&s->amu);
    return req;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                 const char *version, const char *upload_data, size_t *upload_data_size,
                                 void **con_cls)
{
    struct http_server *s = cls;
    struct http_req *req = *con_cls;
    if (!req) {
        req = new_req(s, conn, url, method);
        *con_cls = req;
        if (strcmp(method, "OPTIONS") == 0) {
            http_req_respond(req, 200, NULL, NULL, 0);
            return req->queue_failed ? MHD_NO : MHD_YES;
        }
        req->route = find_route(s, req->path);
        const char *static_rel = NULL;
        bool is_static = !req->route && static_match(s, req->path, &static_rel);
        if (!req->route && !is_static) {
            http_req_respond_error(req, 404, "M_UNRECOGNIZED", "Unrecognized request");
            return req->queue_failed ? MHD_NO : MHD_YES;
        }
        const char *methods = req->route ? req->route->methods : "GET";
        if (!method_allowed(methods, method)) {
            char *allow = xasprintf("%s, OPTIONS", methods);
            struct http_header h = {MHD_HTTP_HEADER_ALLOW, allow};
            queue(req, 405, NULL, NULL, 0, true, &h, 1);
            free(allow);
            return req->queue_failed ? MHD_NO : MHD_YES;
        }
        if (is_static) {
            http_static_answer(req, s->static_prefix, s->static_files, s->n_static_files, static_rel);
            return req->queue_failed ? MHD_NO : MHD_YES;
        }
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl) {
            char *end;
            errno = 0;
            unsigned long long n = strtoull(cl, &end, 10);
            if (errno == 0 && end != cl && *end == '\0' && n > s->max_body) {
                req->too_large = true;
                answer_too_large(req);
            }
        }
        return req->queue_failed ? MHD_NO : MHD_YES;
    }

    if (*upload_data_size > 0) {
        size_t n = *upload_data_size;
        *upload_data_size = 0; /* consumed, or discarded once too large */
        if (req->status != 0) return req->queue_failed ? MHD_NO : MHD_YES;
        if (!req->too_large && buf_append(&req->body, upload_data, n) < 0) {
            /* libmicrohttpd cannot send a response while a body is still
             * arriving, so read and drop the rest (bounded), then answer 413. */
            req->too_large = true;
            buf_release(&req->body);
        }
        if (req->too_large) {
            req->discarded += n;
            if (req->discarded > DISCARD_MAX) return MHD_NO; /* not worth reading: close */
        }
        return req->queue_failed ? MHD_NO : MHD_YES;
    }

    if (req->status != 0) return req->queue_failed ? MHD_NO : MHD_YES; /* already answered */
    if (req->too_large) {
        answer_too_large(req);
        return req->queue_failed ? MHD_NO : MHD_YES;
    }
    if (req->phase == PH_RESUMING) {
        req->wakeups++;
        req->parked_ms += clock_mono_ms() - req->suspended_ms;
    }
    run_handler(req);
    return req->queue_failed ? MHD_NO : MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe)
{
    struct http_server *s = cls;
    struct http_req *req = *con_cls;
    if (!req) return;
    *con_cls = NULL;
    /* Usually PH_ANSWERED. PH_RESUMING when the client went away while parked
     * (noticed once resumed); a heap entry still holding a reference then
     * finds PH_ENDED and does nothing. */
    pthread_mutex_lock(&req->mu);
    req->phase = PH_ENDED;
    pthread_mutex_unlock(&req->mu);
    pending_done(req);
    if (req->state && req->state_free) req->state_free(req->state);
    req->state = NULL;

    int status = toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? req->status : 499;
    double secs = (double)(clock_mono_ms() - req->start_ms) / 1000.0;
    enum log_level lvl = strcmp(req->method, "OPTIONS") == 0 ? LOG_DEBUG : LOG_INFO;
    LOG_AT(lvl, "http", "%s %s status=%d size=%zu duration=%.3f%s%s", req->method, req->path, status,
           req->resp_size, secs, toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " aborted=1",
           buf_cstr(&req->logx));
    if (s->on_done) s->on_done(s->on_done_ud, status);

    pthread_mutex_lock(&s->amu);
    s->active--;
    pthread_cond_broadcast(&s->acond);
    pthread_mutex_unlock(&s->amu);
    http_req_unref(req);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r')) msg[--n] = '\0';
    LOG_WARN("http", "libmicrohttpd: %s", msg);
}

/* ---------------------------------------------------------------- start/stop */

void http_listen_opts_from_config(struct http_listen_opts *o, const struct config *c)
{
    *o = (struct http_listen_opts){0};
    if (c->bind_is_unix) {
        o->unix_path = c->bindaddr;
        if (c->tls_cert || c->tls_key) LOG_WARN("http", "TLS settings are ignored for a unix socket listener");
    } else {
        o->host = c->bind_host;
        o->port = c->bind_port;
        o->tls_cert = c->tls_cert;
        o->tls_key = c->tls_key;
    }
}

/* Reads a whole (small) file into a NUL-terminated heap string, or NULL. */
static char *read_text_file(const char *path)
{
    FILE *f = fopen(path, "re");
    if (!f) return NULL;
    struct buf b;
    buf_init(&b, (size_t)1 << 20);
    char tmp[4096];
    size_t n;
    bool ok = true;
    while ((n = fread(tmp, 1, sizeof tmp, f)) > 0)
        if (buf_append(&b, tmp, n) < 0) {
            ok = false;
            break;
        }
    ok = ok && !ferror(f) && b.len > 0;
    fclose(f);
    if (!ok) {
        buf_release(&b);
        return NULL;
    }
    return buf_detach(&b, NULL);
}

static void server_free(struct http_server *s)
{
    if (s->timer_started) {
        pthread_mutex_lock(&s->tmu);
        s->timer_exit = true;
        pthread_cond_signal(&s->tcond);
        pthread_mutex_unlock(&s->tmu);
        pthread_join(s->timer, NULL);
    }
    CHECK(s->heap_len == 0);
    if (s->listen_fd >= 0) close(s->listen_fd);
    if (s->unix_path) unlink(s->unix_path);
    for (size_t i = 0; i < s->n_routes; i++) {
        free(s->routes[i].path);
        free(s->routes[i].methods);
    }
    free(s->routes);
    free(s->static_prefix);
    free(s->unix_path);
    free(s->heap);
    if (s->tls_key_pem) explicit_bzero(s->tls_key_pem, strlen(s->tls_key_pem));
    free(s->tls_key_pem);
    free(s->tls_cert_pem);
    pthread_mutex_destroy(&s->tmu);
    pthread_cond_destroy(&s->tcond);
    pthread_mutex_destroy(&s->amu);
    pthread_cond_destroy(&s->acond);
    free(s);
}

/* Once shutdown has begun, a new connection is closed as soon as it is
 * accepted; the ones already open are drained by http_server_stop. */
static enum MHD_Result on_accept_policy(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
    (void)addr;
    (void)addrlen;
    const struct http_server *s = cls;
    return atomic_load(&s->shutting_down) ? MHD_NO : MHD_YES;
}

int http_server_start(struct http_server **out, const struct http_listen_opts *opts,
                      const struct http_route *routes, size_t n_routes)
{
    int rc = -1;
    *out = NULL;
    /* A peer closing early must never kill the process (TLS writes may not use MSG_NOSIGNAL). */
    struct sigaction sa = {.sa_handler = SIG_IGN};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGPIPE, &sa, NULL);

    struct http_server *s = xcalloc(1, sizeof *s);
    s->listen_fd = -1;
    s->port = -1;
    atomic_init(&s->shutting_down, false);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&s->tmu, NULL);
    pthread_cond_init(&s->tcond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&s->amu, NULL);
    pthread_cond_init(&s->acond, NULL);
    s->max_body = opts->max_body ? opts->max_body : DEFAULT_MAX_BODY;
    s->on_done = opts->on_done;
    s->on_done_ud = opts->on_done_ud;
    s->routes = xcalloc(n_routes ? n_routes : 1, sizeof *s->routes);
    for (size_t i = 0; i < n_routes; i++) {
        CHECK(routes[i].path && routes[i].fn);
        s->routes[i] = (struct route){.path = xstrdup(routes[i].path),
                                      .methods = routes[i].methods ? xstrdup(routes[i].methods) : NULL,
                                      .fn = routes[i].fn,
                                      .ud = routes[i].ud};
    }
    s->n_routes = n_routes;
    if (opts->static_prefix && opts->static_files) {
        size_t n = strlen(opts->static_prefix);
        CHECK(n > 0 && opts->static_prefix[n - 1] == '/');
        s->static_prefix = xstrdup(opts->static_prefix);
        s->static_files = opts->static_files;
        s->n_static_files = opts->n_static_files;
    }

    bool tls = opts->tls_cert || opts->tls_key;
    if (tls) {
        if (!opts->tls_cert || !opts->tls_key) {
            LOG_ERROR("http", "TLS needs both a certificate and a key");
            goto out;
        }
        if (!MHD_is_feature_supported(MHD_FEATURE_TLS)) {
            LOG_ERROR("http", "libmicrohttpd was built without TLS support");
            goto out;
        }
        s->tls_cert_pem = read_text_file(opts->tls_cert);
        s->tls_key_pem = read_text_file(opts->tls_key);
        if (!s->tls_cert_pem || !s->tls_key_pem) {
            LOG_ERROR("http", "cannot read TLS certificate %s or key %s", opts->tls_cert, opts->tls_key);
            goto out;
        }
    }

    if (opts->unix_path) {
        s->listen_fd = sock_listen_unix(opts->unix_path, opts->unix_mode ? opts->unix_mode : 0666, LISTEN_BACKLOG);
        if (s->listen_fd < 0) goto out;
        s->unix_path = xstrdup(opts->unix_path);
    } else {
        s->listen_fd = sock_listen_tcp(opts->host, opts->port, LISTEN_BACKLOG);
        if (s->listen_fd < 0) goto out;
        s->port = sock_bound_port(s->listen_fd);
    }

    if (pthread_create(&s->timer, NULL, timer_main, s) != 0) {
        LOG_ERROR("http", "cannot start the timer thread");
        goto out;
    }
    s->timer_started = true;

    struct MHD_OptionItem extra[4];
    size_t ne = 0;
    if (tls) {
        extra[ne++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, s->tls_key_pem};
        extra[ne++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, s->tls_cert_pem};
    }
#if MHD_VERSION >= 0x00097205
    extra[ne++] = (struct MHD_OptionItem){MHD_OPTION_SIGPIPE_HANDLED_BY_APP, 1, NULL};
#endif
    extra[ne] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};

    unsigned flags = MHD_USE_AUTO_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ITC | MHD_USE_ERROR_LOG;
    if (tls) flags |= MHD_USE_TLS;
    s->d = MHD_start_daemon(
        flags, 0, on_accept_policy, s, on_access, s, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, s,
        MHD_OPTION_LISTEN_SOCKET, (MHD_socket)s->listen_fd,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)(opts->pool_threads ? opts->pool_threads : DEFAULT_POOL_THREADS),
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)(opts->max_connections ? opts->max_connections : DEFAULT_MAX_CONNECTIONS),
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(opts->conn_memory ? opts->conn_memory : DEFAULT_CONN_MEMORY),
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)(opts->idle_timeout_secs ? opts->idle_timeout_secs : DEFAULT_IDLE_TIMEOUT),
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
        MHD_OPTION_ARRAY, extra, MHD_OPTION_END);
    if (!s->d) {
        LOG_ERROR("http", "cannot start the HTTP daemon");
        goto out;
    }
    if (s->unix_path)
        LOG_INFO("http", "listening on unix:%s", s->unix_path);
    else
        LOG_INFO("http", "listening on %s:%d%s", opts->host && *opts->host ? opts->host : "*", s->port,
                 tls ? " (TLS)" : "");
    *out = s;
    s = NULL;
    rc = 0;
out:
    if (s) server_free(s);
    return rc;
}

int http_server_port(const struct http_server *s) { return s->port; }

void http_server_stop(struct http_server *s)
{
    if (!s) return;
    atomic_store(&s->shutting_down, true);
    pthread_mutex_lock(&s->tmu);
    s->stopping = true; /* the timer thread now ends every park at once */
    pthread_cond_signal(&s->tcond);
    pthread_mutex_unlock(&s->tmu);
    /* New connections are refused by on_accept_policy from here on. We do
     * not quiesce: MHD_quiesce_daemon races the pool threads' epoll sets
     * and can abort the process ("Failed to remove listen FD"). */

    /* Every handler answers once woken; a suspended connection must not
     * survive into MHD_stop_daemon, so wait for all of them. */
    pthread_mutex_lock(&s->amu);
    while (s->pending > 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 5;
        if (pthread_cond_timedwait(&s->acond, &s->amu, &ts) == ETIMEDOUT)
            LOG_WARN("http", "shutdown: still waiting for %zu unanswered request(s)", s->pending);
    }
    /* Give queued responses a moment to reach their clients. */
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += DRAIN_SEND_SECS;
    while (s->active > 0)
        if (pthread_cond_timedwait(&s->acond, &s->amu, &until) == ETIMEDOUT) break;
    pthread_mutex_unlock(&s->amu);

    MHD_stop_daemon(s->d); /* closes the listen socket it was given */
    s->d = NULL;
    s->listen_fd = -1;
    server_free(s);
}
