/* The client-facing HTTP/1.1 server (libmicrohttpd): listeners, routing,
 * CORS, Matrix-style JSON errors, bounded request bodies, static files, and
 * long-polls that hold no thread while they wait ("parking").
 *
 * Threads: libmicrohttpd runs a pool of threads; every handler call happens
 * on one of them. A server-owned timer thread ends parks whose deadline has
 * passed. http_req_wake() may be called from any thread.
 *
 * Life of a request: once method, path, headers and the whole body have
 * arrived, the route's handler is called. It either answers
 * (http_req_respond*, then returns HTTP_DONE) or parks (http_req_park, then
 * returns HTTP_PARK). A parked request is suspended inside libmicrohttpd and
 * its handler is called again, on some pool thread, after http_req_wake()
 * or when its deadline passes or the server is stopping; that call again
 * answers or parks. */
#ifndef SYNCV3_HTTP_SERVER_H
#define SYNCV3_HTTP_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"

struct config;
struct http_server;
struct http_static_file;
struct http_req; /* opaque; lives from the first byte of a request to its last reference */

enum http_action {
    HTTP_DONE, /* the handler answered with http_req_respond*() */
    HTTP_PARK, /* the handler called http_req_park() and wants to be called again */
};

/* A route handler. Runs on an HTTP pool thread; must not block for long (no
 * waiting for other requests: park instead). ud is the route's ud. */
typedef enum http_action (*http_handler_fn)(void *ud, struct http_req *req);

struct http_route {
    const char *path;    /* exact path to match (no query string, no trailing-slash folding) */
    const char *methods; /* comma-separated allowed methods ("POST", "GET,HEAD"); NULL = any */
    http_handler_fn fn;  /* the handler */
    void *ud;            /* passed to fn */
};

/* A deadline for http_req_park() that never passes: wait for a wake only. */
#define HTTP_NO_DEADLINE INT64_MAX

struct http_listen_opts {
    const char *host;          /* TCP host; NULL/"" = all interfaces (dual stack), "0.0.0.0" = all IPv4 */
    int port;                  /* TCP port; 0 = kernel chooses (see http_server_port) */
    const char *unix_path;     /* when set, listen on this unix socket instead of TCP */
    unsigned unix_mode;        /* file mode of the unix socket; 0 = 0666 */
    const char *tls_cert;      /* PEM certificate chain file; with tls_key enables HTTPS */
    const char *tls_key;       /* PEM private key file */
    size_t max_body;           /* largest request body accepted; 0 = 1 MiB; larger -> 413 */
    unsigned pool_threads;     /* HTTP pool threads; 0 = 4 */
    unsigned max_connections;  /* simultaneous connections (parked ones count); 0 = 16384 */
    size_t conn_memory;        /* libmicrohttpd per-connection pool (headers, I/O buffers; bodies are copied out); 0 = 32 KiB */
    unsigned idle_timeout_secs; /* close a connection idle this long between requests; 0 = 300 */
    const char *static_prefix; /* URL prefix (ending in '/') served from static_files, e.g. "/client/"; NULL = none */
    const struct http_static_file *static_files; /* the files below static_prefix (http/static.h); borrowed */
    size_t n_static_files;     /* entries in static_files */
    /* Called once per ended request, on an HTTP thread, with the status sent
     * (499 when the client went away first); NULL = none. Must not block. */
    void (*on_done)(void *ud, int status);
    void *on_done_ud;          /* passed to on_done */
};

/* Fills o from the SYNCV3_BINDADDR / SYNCV3_TLS_* settings of c, other fields
 * zero (defaults). Pointers in o borrow from c, which must outlive the start
 * call. TLS is ignored (with a warning) for unix sockets, as the original did. */
void http_listen_opts_from_config(struct http_listen_opts *o, const struct config *c);

/* Binds, then starts the pool and timer threads. routes (and the strings they
 * point to) are copied. Ignores SIGPIPE process-wide. On success *out is the
 * server (stop it with http_server_stop) and 0 is returned; on failure a
 * negative value, *out is NULL and an error has been logged. */
int http_server_start(struct http_server **out, const struct http_listen_opts *opts,
                      const struct http_route *routes, size_t n_routes);

/* The bound TCP port (useful after asking for port 0), or -1 for a unix socket. */
int http_server_port(const struct http_server *s);

/* Stops accepting connections, calls every parked handler once more with
 * http_req_shutting_down() true (they answer; a handler that parks again is
 * answered 503 by the server), waits up to a few seconds for answers to be
 * sent, then stops the threads, closes the listener (removing a unix socket
 * file) and frees s. No handler runs after it returns. NULL is a no-op. */
void http_server_stop(struct http_server *s);

/* --- inside a handler (pointers valid until the handler returns, except as noted) --- */

const char *http_req_method(const struct http_req *req);
/* The path without the query string, percent-decoded by libmicrohttpd. Valid for the request's life. */
const char *http_req_path(const struct http_req *req);
/* A request header, name compared case-insensitively; NULL if absent. */
const char *http_req_header(struct http_req *req, const char *name);
/* A query parameter's decoded value ("" for "?a"); NULL if absent. */
const char *http_req_query(struct http_req *req, const char *name);
/* The request body (empty slice if none); valid until the request ends. */
struct slice http_req_body(const struct http_req *req);

/* Application state kept across wake-ups. set_state replaces (and frees with
 * the old free_fn) any previous state. free_fn (may be NULL) runs on an HTTP
 * thread when the request ends (response sent, or the connection dropped), or
 * when the server stops — never while the handler runs. */
void *http_req_state(const struct http_req *req);
void http_req_set_state(struct http_req *req, void *state, void (*free_fn)(void *));

/* How many times the handler has been called before this call (0 on the first). */
int http_req_wakeups(const struct http_req *req);
/* The status of the response queued so far, 0 before one is. */
int http_req_status(const struct http_req *req);
/* Milliseconds the request has spent parked (suspended) so far. */
int64_t http_req_parked_ms(const struct http_req *req);
/* The deadline given to the last http_req_park() has passed. */
bool http_req_deadline_passed(const struct http_req *req);
/* The server is stopping: answer now, do not park. */
bool http_req_shutting_down(const struct http_req *req);

/* Marks the request parked until http_req_wake() or the monotonic time
 * deadline_ms (clock_mono_ms; HTTP_NO_DEADLINE = none). Only from the handler,
 * which must then return HTTP_PARK. Any wake that arrives after the handler
 * was entered — even before park was called — makes the handler run again, so
 * "check for data, then park" loses no wake-up. */
void http_req_park(struct http_req *req, int64_t deadline_ms);

/* Makes a parked request's handler run again soon. From any thread, any number
 * of times; a no-op once the request has ended. The caller must hold a
 * reference (or be in the handler). */
void http_req_wake(struct http_req *req);

/* Reference counting for threads that keep a pointer to a request (to wake it)
 * beyond the handler call. The server holds its own reference until the request
 * ends; the object is freed at the last unref. Unref of the last reference to
 * a live request is a bug (aborts). */
void http_req_ref(struct http_req *req);
void http_req_unref(struct http_req *req);

/* Answers the request: status, Content-Type (NULL = none), and a body that
 * this call takes ownership of (free()d later; NULL if len is 0). Adds the
 * CORS headers. Exactly once per request, only from the handler. */
void http_req_respond(struct http_req *req, int status, const char *content_type, char *body, size_t len);

struct http_header {
    const char *name;  /* header name */
    const char *value; /* its value */
};

/* Like http_req_respond, but the body is not owned nor freed by the server:
 * it must stay valid until the response is sent (static data). headers (and
 * their strings) are copied. */
void http_req_respond_static(struct http_req *req, int status, const char *content_type, const void *body,
                             size_t len, const struct http_header *headers, size_t n_headers);

/* Answers with a Matrix error body {"errcode":errcode,"error":message}
 * (errcode NULL = omitted), Content-Type application/json. A 5xx is also
 * sent as an error report when SYNCV3_SENTRY_DSN is set (obs/sentry.h). */
void http_req_respond_error(struct http_req *req, int status, const char *errcode, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* http_req_respond_error with a Retry-After header of retry_after_secs
 * (when > 0): for errors the client should retry after a pause (503). */
void http_req_respond_retry(struct http_req *req, int status, int retry_after_secs, const char *errcode,
                            const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Appends " text" to this request's access-log line (e.g. user, device, pos).
 * Never pass tokens. Only from the handler. */
void http_req_log_append(struct http_req *req, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
