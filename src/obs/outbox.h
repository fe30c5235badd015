/* A bounded queue drained by one background thread, for telemetry that must
 * never hold up the code that produces it (trace spans, error reports).
 *
 * Producers call outbox_push from any thread: it takes a leaf mutex for a
 * few instructions and never waits. When the queue is full the item is
 * freed and counted as dropped. The worker thread takes up to `batch` items
 * at a time — as soon as `batch` are queued, or `linger_ms` after the oldest
 * arrived — and hands them to the send callback, which owns them from then
 * on. outbox_post is the HTTP POST the callbacks use (libcurl easy, one
 * handle per outbox, so connections are kept alive between batches). */
#ifndef SYNCV3_OBS_OUTBOX_H
#define SYNCV3_OBS_OUTBOX_H

#include <stdbool.h>
#include <stddef.h>

struct metric;
struct outbox;

/* Sends n items (n >= 1) on the worker thread and frees them. Returns how
 * many of them were lost (0 when delivered), for the dropped counter. */
typedef size_t (*outbox_send_fn)(void *ud, struct outbox *b, void **items, size_t n);

struct outbox_opts {
    const char *name;             /* thread name and log prefix, e.g. "trace" (copied) */
    size_t cap;                   /* most queued items; pushes beyond are dropped */
    size_t batch;                 /* most items per send call */
    int linger_ms;                /* how long the first queued item waits for company; 0 = send at once */
    outbox_send_fn send;          /* the sender (required) */
    void (*free_item)(void *item); /* frees an item that is dropped or left at exit (required) */
    void *ud;                     /* passed to send */
    struct metric *dropped;       /* counter of lost items, or NULL */
};

/* Starts the worker. Returns 0, or -1 (thread creation failed) with *out NULL. */
int outbox_new(struct outbox **out, const struct outbox_opts *o);
/* Queues item (ownership passes to the outbox in every case). Returns false
 * when the queue was full or the outbox is stopping: the item was freed and
 * counted as dropped. Thread-safe, never blocks. */
bool outbox_push(struct outbox *b, void *item);
/* Stops the worker after it has handed everything still queued to send (so
 * at most one more send attempt per batch), then frees b. NULL is a no-op. */
void outbox_free(struct outbox *b);

/* One POST request. */
struct outbox_request {
    const char *url;          /* where to */
    const char *content_type; /* Content-Type header value */
    const char *header;       /* one extra "Name: value" header, or NULL */
    const char *user;         /* basic-auth user, or NULL */
    const char *password;     /* basic-auth password (with user) */
    const char *body;         /* request body */
    size_t len;               /* its length */
    long timeout_ms;          /* total time allowed; connecting gets at most 2 s of it */
};

/* POSTs r with the outbox's handle (only from its send callback). Returns
 * the HTTP status (2xx = accepted), or 0 on a transport error; *why (may be
 * NULL) then points to a static description, valid until the next call. */
long outbox_post(struct outbox *b, const struct outbox_request *r, const char **why);
/* Logs (at most once a minute per outbox) that n items (what: "spans") were
 * lost sending to url: status from outbox_post, why its description. */
void outbox_log_failure(struct outbox *b, const char *url, long status, const char *why, size_t n, const char *what);

#endif
