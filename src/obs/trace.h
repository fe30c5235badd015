/* Distributed tracing: spans exported to an OpenTelemetry collector over
 * OTLP/HTTP with the JSON encoding (SYNCV3_OTLP_URL, or the legacy
 * SYNCV3_JAEGER_URL), POST {base}/v1/traces.
 *
 * A span is recorded in one call when it ends (trace_emit): its ids, its
 * parent, when it began, a name, a kind, an optional error and a few
 * attributes. The record is queued for a background thread that sends
 * batches; a full queue or a failing collector drops spans and counts them in
 * sliding_sync_trace_spans_dropped_total. Nothing here blocks its caller.
 *
 * Tracing is process-wide, like the log threshold: trace_start runs once at
 * start-up before other threads exist and trace_stop once after they have
 * stopped. When tracing is off (never started) every function returns at
 * once, and TRACE_EMIT does not even evaluate its arguments.
 *
 * Never put an access token or message contents in a span. */
#ifndef SYNCV3_OBS_TRACE_H
#define SYNCV3_OBS_TRACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct config;
struct metrics;

/* Identifies a span: its trace and its own id. All zero = no span. */
struct trace_ctx {
    uint8_t trace_id[16]; /* the trace it belongs to */
    uint8_t span_id[8];   /* the span */
};

/* OTLP span kinds. */
enum trace_kind {
    TRACE_INTERNAL = 1, /* work inside the process (an ingest transaction) */
    TRACE_SERVER = 2,   /* a request we serve (sliding sync) */
    TRACE_CLIENT = 3,   /* a request we make (a /sync v2 poll) */
};

/* One attribute: a string (NULL = left out) or an integer. */
struct trace_attr {
    const char *key; /* a string literal (not copied) */
    bool is_int;     /* num is the value, else str */
    const char *str; /* string value, copied; NULL = attribute omitted */
    int64_t num;     /* integer value */
};

#define TRACE_STR(k, v) ((struct trace_attr){.key = (k), .str = (v)})
#define TRACE_INT(k, v) ((struct trace_attr){.key = (k), .is_int = true, .num = (int64_t)(v)})
/* Expands to "array, count" for trace_emit's last two arguments. */
#define TRACE_ATTRS(...)                                                                    \
    (const struct trace_attr[]){__VA_ARGS__},                                               \
        sizeof((const struct trace_attr[]){__VA_ARGS__}) / sizeof(struct trace_attr)

/* True between trace_start and trace_stop. Read-only for everyone else. */
extern bool trace_on;

/* trace_emit(...) only when tracing is on; the arguments are not evaluated otherwise. */
#define TRACE_EMIT(...)                                                        \
    do {                                                                       \
        if (trace_on) trace_emit(__VA_ARGS__);                                 \
    } while (0)

/* Starts exporting when c names a collector (SYNCV3_OTLP_URL, else
 * SYNCV3_JAEGER_URL); otherwise does nothing and returns 0. m (may be NULL)
 * receives the exported/dropped counters. Returns -1 when the exporter
 * thread cannot start. */
int trace_start(const struct config *c, struct metrics *m);
/* Sends what is queued (one attempt) and stops. No-op when not started. */
void trace_stop(void);

/* Gives out a fresh span id: in parent's trace, or in a new trace when
 * parent is NULL or empty. Returns false and zeroes *out when tracing is off. */
bool trace_ctx_new(struct trace_ctx *out, const struct trace_ctx *parent);
/* The trace id of c as 32 lowercase hex digits in out (returned). */
const char *trace_ctx_hex(const struct trace_ctx *c, char out[33]);

/* Records a span that began at start_mono (clock_mono_secs) and ends now.
 * self: its ids from trace_ctx_new (NULL = new ids under parent); nothing is
 * recorded when self is empty. parent: NULL or empty for a root span. name
 * is copied. error: NULL, or a short description that marks the span failed.
 * attrs: n attributes (see TRACE_ATTRS). Thread-safe, never blocks. */
void trace_emit(const struct trace_ctx *self, const struct trace_ctx *parent, double start_mono, const char *name,
                enum trace_kind kind, const char *error, const struct trace_attr *attrs, size_t n);

#endif
