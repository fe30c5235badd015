/* A small thread-safe Prometheus registry (text exposition format 0.0.4)
 * and the syncv3 metric set.
 *
 * A family (struct metric) is a counter, gauge or histogram with zero, one
 * or two label names; a child per distinct combination of label values is
 * created on first use. Every update takes the family's mutex, so updates
 * may come from any thread. Families live as long as their registry. */
#ifndef SYNCV3_OBS_METRICS_H
#define SYNCV3_OBS_METRICS_H

#include <pthread.h>
#include <stddef.h>

#include "base/buf.h"

enum metrics_type {
    METRICS_COUNTER,   /* only goes up */
    METRICS_GAUGE,     /* goes up and down */
    METRICS_HISTOGRAM, /* cumulative buckets, sum and count */
};

struct metric; /* one family; opaque */

/* Bucket upper bounds of sliding_sync_*_duration_secs. */
extern const double metrics_duration_buckets[11];

/* The registry plus the syncv3 metrics (the Go proxy's names; docs/behaviour.md, "Metrics"). The named
 * pointers are owned by the registry. */
struct metrics {
    pthread_mutex_t mu;       /* guards families */
    struct metric *families;  /* every registered family, newest first */

    struct metric *poller_num_pollers;                 /* gauge */
    struct metric *poller_num_outstanding_sync_v2_reqs; /* gauge */
    struct metric *poller_total_num_polls;             /* counter */
    struct metric *poller_process_duration_secs;       /* histogram {initial, first} */
    struct metric *poller_timeline_size;               /* histogram {limited} */
    struct metric *poller_gappy_state_size;            /* histogram */
    struct metric *poller_num_payloads;                /* counter {payload_type} */
    struct metric *api_num_payloads;                   /* counter {payload_type} */
    struct metric *api_num_devices_pending_ensure_polling; /* gauge */
    struct metric *api_num_active_conns;               /* gauge */
    struct metric *api_expiry_conn_timed_out;          /* counter */
    struct metric *api_expiry_conn_buffer_full;        /* counter */
    struct metric *api_destroyed_conns;                /* counter */
    struct metric *api_setup_duration_secs;            /* histogram {initial} */
    struct metric *api_process_duration_secs;          /* histogram {initial} */
    struct metric *api_slow_requests;                  /* counter */
    struct metric *api_queued_updates;                 /* gauge: live updates queued in all connections */
    struct metric *cache_users;                        /* gauge: users loaded in the cache */
    struct metric *cache_rooms;                        /* gauge: rooms in the cache */
    struct metric *cache_evictions;                    /* counter {kind}: users / rooms evicted */
    struct metric *cache_preloaded_users;              /* counter: users loaded at start-up without a request */
    struct metric *trace_spans_exported;               /* counter: spans the collector accepted */
    struct metric *trace_spans_dropped;                /* counter: spans lost (queue full, collector failing) */
    struct metric *sentry_events_sent;                 /* counter: error reports Sentry accepted */
    struct metric *sentry_events_dropped;              /* counter: error reports lost or rate-limited */
    /* syncv3's own (no Go proxy counterpart) */
    struct metric *http_responses;                     /* counter {code} */
    struct metric *poller_sync_failures;               /* counter {code} */
    struct metric *api_num_parked_requests;            /* gauge {phase} */
};

/* An empty registry (no syncv3 metrics): release with metrics_release. */
void metrics_init(struct metrics *m);
void metrics_release(struct metrics *m);

/* A registry holding the syncv3 set. Free with metrics_free (NULL is a no-op). */
struct metrics *metrics_new(void);
void metrics_free(struct metrics *m);

/* Registers a family. name and label names must be valid Prometheus names
 * and unique in the registry (aborts otherwise). label1/label2 may be NULL
 * (label2 only with label1). buckets: n_buckets strictly increasing finite
 * upper bounds (+Inf is implicit); copied. Strings are copied. The family
 * lives until the registry is released. */
struct metric *metrics_counter(struct metrics *m, const char *name, const char *help, const char *label1,
                               const char *label2);
struct metric *metrics_gauge(struct metrics *m, const char *name, const char *help, const char *label1,
                             const char *label2);
struct metric *metrics_histogram(struct metrics *m, const char *name, const char *help, const double *buckets,
                                 size_t n_buckets, const char *label1, const char *label2);

/* Updates of an unlabelled family. A NULL family is a no-op, so optional
 * metrics need no checks. Counters ignore negative additions. */
void metrics_inc(struct metric *f);
void metrics_add(struct metric *f, double v);     /* counter or gauge */
void metrics_set(struct metric *f, double v);     /* gauge */
void metrics_observe(struct metric *f, double v); /* histogram */

/* The same for labelled families: pass as many label values as the family
 * has label names (l2 NULL for one label). Values are copied; keep their
 * set small (they become time series). */
void metrics_add_l(struct metric *f, const char *l1, const char *l2, double v);
void metrics_set_l(struct metric *f, const char *l1, const char *l2, double v);
void metrics_observe_l(struct metric *f, const char *l1, const char *l2, double v);

/* Current value of a counter/gauge child (0 if it does not exist), and
 * sample count of a histogram child; for tests and admin pages. */
double metrics_value(struct metric *f, const char *l1, const char *l2);
unsigned long long metrics_count(struct metric *f, const char *l1, const char *l2);

/* Appends the process metrics (from /proc) and every family, sorted by name,
 * in text format 0.0.4 to out. Labelled families without children are left
 * out. Returns 0, or -1 if out would go past its limit (out is then unchanged). */
int metrics_render(struct metrics *m, struct buf *out);
/* metrics_render with the registry as a void pointer, to plug into
 * prom_server_start. */
int metrics_render_cb(void *m, struct buf *out);

#endif
