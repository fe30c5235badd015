#include "obs/metrics.h"

#include <ctype.h>
#include <dirent.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include "base/hash.h"
#include <unistd.h>

#include "base/alloc.h"
#include "base/log.h"

const double metrics_duration_buckets[11] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

/* One time series (or one set of histogram series) of a family. */
struct child {
    UT_hash_handle hh;        /* in metric.children, keyed by key */
    char *key;                /* label values joined by NUL bytes */
    size_t keylen;            /* bytes of key */
    char *lv[2];              /* label values (NULL when the family has fewer labels) */
    double value;             /* counter/gauge value; histogram sum */
    unsigned long long count; /* histogram: observations */
    unsigned long long *bucket; /* histogram: per-bucket (non-cumulative) counts, n_bounds entries */
};

struct metric {
    struct metric *next;      /* next family in the registry */
    char *name;               /* metric name */
    char *help;               /* HELP text */
    enum metrics_type type;   /* counter, gauge or histogram */
    int n_labels;             /* 0, 1 or 2 */
    char *label[2];           /* label names */
    double *bounds;           /* histogram upper bounds (without +Inf) */
    size_t n_bounds;          /* entries in bounds */
    pthread_mutex_t mu;       /* guards children and their values */
    struct child *children;   /* label values -> child */
};

/* ---------------------------------------------------------------- registry */

static bool valid_name(const char *s)
{
    if (!s || !*s || isdigit((unsigned char)s[0])) return false;
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '_' && *p != ':') return false;
    return true;
}

void metrics_init(struct metrics *m)
{
    *m = (struct metrics){0};
    pthread_mutex_init(&m->mu, NULL);
}

static void free_child(struct child *c)
{
    free(c->key);
    free(c->lv[0]);
    free(c->lv[1]);
    free(c->bucket);
    free(c);
}

void metrics_release(struct metrics *m)
{
    struct metric *f = m->families;
    while (f) {
        struct metric *next = f->next;
        struct child *c, *tmp;
        HASH_ITER(hh, f->children, c, tmp)
        {
            HASH_DEL(f->children, c);
            free_child(c);
        }
        free(f->name);
        free(f->help);
        free(f->label[0]);
        free(f->label[1]);
        free(f->bounds);
        pthread_mutex_destroy(&f->mu);
        free(f);
        f = next;
    }
    pthread_mutex_destroy(&m->mu);
    *m = (struct metrics){0};
}

/* Finds or creates the child for the label values; f->mu must be held. */
static struct child *child_get(struct metric *f, const char *l1, const char *l2)
{
    const char *lv[2] = {l1, l2};
    for (int i = 0; i < f->n_labels; i++) CHECK(lv[i] != NULL);
    for (int i = f->n_labels; i < 2; i++) lv[i] = NULL;
    size_t n1 = lv[0] ? strlen(lv[0]) : 0, n2 = lv[1] ? strlen(lv[1]) : 0;
    size_t keylen = f->n_labels == 0 ? 0 : f->n_labels == 1 ? n1 : n1 + 1 + n2;
    char stack[256];
    char *key = keylen <= sizeof stack ? stack : xmalloc(keylen);
    if (lv[0]) memcpy(key, lv[0], n1);
    if (lv[1]) {
        key[n1] = '\0';
        memcpy(key + n1 + 1, lv[1], n2);
    }
    struct child *c = NULL;
    HASH_FIND(hh, f->children, key, keylen, c);
    if (!c) {
        c = xcalloc(1, sizeof *c);
        c->key = xmalloc(keylen ? keylen : 1);
        memcpy(c->key, key, keylen);
        c->keylen = keylen;
        for (int i = 0; i < 2; i++) c->lv[i] = lv[i] ? xstrdup(lv[i]) : NULL;
        if (f->type == METRICS_HISTOGRAM) c->bucket = xcalloc(f->n_bounds ? f->n_bounds : 1, sizeof *c->bucket);
        HASH_ADD_KEYPTR(hh, f->children, c->key, c->keylen, c);
    }
    if (key != stack) free(key);
    return c;
}

static struct metric *reg(struct metrics *m, enum metrics_type type, const char *name, const char *help,
                          const double *buckets, size_t n_buckets, const char *label1, const char *label2)
{
    CHECK(valid_name(name));
    CHECK(!label2 || label1);
    CHECK(!label1 || (valid_name(label1) && strcmp(label1, "le") != 0 && strncmp(label1, "__", 2) != 0));
    CHECK(!label2 || (valid_name(label2) && strcmp(label2, "le") != 0 && strcmp(label1, label2) != 0));
    struct metric *f = xcalloc(1, sizeof *f);
    f->name = xstrdup(name);
    f->help = xstrdup(help ? help : "");
    f->type = type;
    f->n_labels = label2 ? 2 : label1 ? 1 : 0;
    f->label[0] = label1 ? xstrdup(label1) : NULL;
    f->label[1] = label2 ? xstrdup(label2) : NULL;
    if (type == METRICS_HISTOGRAM) {
        for (size_t i = 0; i < n_buckets; i++) {
            CHECK(isfinite(buckets[i]));
            CHECK(i == 0 || buckets[i] > buckets[i - 1]);
        }
        f->bounds = xmalloc((n_buckets ? n_buckets : 1) * sizeof *f->bounds);
        if (n_buckets) memcpy(f->bounds, buckets, n_buckets * sizeof *f->bounds);
        f->n_bounds = n_buckets;
    }
    pthread_mutex_init(&f->mu, NULL);
    /* Unlabelled families always have their one series, so they render as 0. */
    if (f->n_labels == 0) child_get(f, NULL, NULL);
    pthread_mutex_lock(&m->mu);
    for (struct metric *g = m->families; g; g = g->next) CHECK(strcmp(g->name, name) != 0);
    f->next = m->families;
    m->families = f;
    pthread_mutex_unlock(&m->mu);
    return f;
}

struct metric *metrics_counter(struct metrics *m, const char *name, const char *help, const char *label1,
                               const char *label2)
{
    return reg(m, METRICS_COUNTER, name, help, NULL, 0, label1, label2);
}

struct metric *metrics_gauge(struct metrics *m, const char *name, const char *help, const char *label1,
                             const char *label2)
{
    return reg(m, METRICS_GAUGE, name, help, NULL, 0, label1, label2);
}

struct metric *metrics_histogram(struct metrics *m, const char *name, const char *help, const double *buckets,
                                 size_t n_buckets, const char *label1, const char *label2)
{
    return reg(m, METRICS_HISTOGRAM, name, help, buckets, n_buckets, label1, label2);
}

/* ---------------------------------------------------------------- updates */

void metrics_add_l(struct metric *f, const char *l1, const char *l2, double v)
{
    if (!f) return;
    CHECK(f->type != METRICS_HISTOGRAM);
    if (f->type == METRICS_COUNTER && !(v >= 0)) return;
    pthread_mutex_lock(&f->mu);
    child_get(f, l1, l2)->value += v;
    pthread_mutex_unlock(&f->mu);
}

void metrics_set_l(struct metric *f, const char *l1, const char *l2, double v)
{
    if (!f) return;
    CHECK(f->type == METRICS_GAUGE);
    pthread_mutex_lock(&f->mu);
    child_get(f, l1, l2)->value = v;
    pthread_mutex_unlock(&f->mu);
}

void metrics_observe_l(struct metric *f, const char *l1, const char *l2, double v)
{
    if (!f) return;
    CHECK(f->type == METRICS_HISTOGRAM);
    /* First bucket whose upper bound holds v; n_bounds = only +Inf. */
    size_t lo = 0, hi = f->n_bounds;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (v <= f->bounds[mid])
            hi = mid;
        else
            lo = mid + 1;
    }
    pthread_mutex_lock(&f->mu);
    struct child *c = child_get(f, l1, l2);
    if (lo < f->n_bounds) c->bucket[lo]++;
    c->count++;
    c->value += v;
    pthread_mutex_unlock(&f->mu);
}

void metrics_inc(struct metric *f) { metrics_add_l(f, NULL, NULL, 1); }
void metrics_add(struct metric *f, double v) { metrics_add_l(f, NULL, NULL, v); }
void metrics_set(struct metric *f, double v) { metrics_set_l(f, NULL, NULL, v); }
void metrics_observe(struct metric *f, double v) { metrics_observe_l(f, NULL, NULL, v); }

double metrics_value(struct metric *f, const char *l1, const char *l2)
{
    if (!f) return 0;
    pthread_mutex_lock(&f->mu);
    double v = child_get(f, l1, l2)->value;
    pthread_mutex_unlock(&f->mu);
    return v;
}

unsigned long long metrics_count(struct metric *f, const char *l1, const char *l2)
{
    if (!f) return 0;
    pthread_mutex_lock(&f->mu);
    unsigned long long n = child_get(f, l1, l2)->count;
    pthread_mutex_unlock(&f->mu);
    return n;
}

/* ---------------------------------------------------------------- rendering */

/* Appends v as Prometheus expects: shortest text that reads back the same. */
static void put_double(struct buf *b, double v)
{
    if (isnan(v)) {
        buf_puts(b, "NaN");
        return;
    }
    if (isinf(v)) {
        buf_puts(b, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    if (v == floor(v) && fabs(v) < 1e15) {
        buf_printf(b, "%.0f", v);
        return;
    }
    char tmp[40];
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, v);
        if (strtod(tmp, NULL) == v) break;
    }
    buf_puts(b, tmp);
}

/* Appends s with the escapes of HELP text (label_value = also '"'). */
static void put_escaped(struct buf *b, const char *s, bool label_value)
{
    for (const char *p = s; *p; p++) {
        if (*p == '\\')
            buf_puts(b, "\\\\");
        else if (*p == '\n')
            buf_puts(b, "\\n");
        else if (*p == '"' && label_value)
            buf_puts(b, "\\\"");
        else
            buf_putc(b, *p);
    }
}

/* Appends {a="x",b="y"[,le="..."]} (nothing when there are no labels at all). */
static void put_labels(struct buf *b, const struct metric *f, const struct child *c, const double *le)
{
    if (f->n_labels == 0 && !le) return;
    buf_putc(b, '{');
    for (int i = 0; i < f->n_labels; i++) {
        if (i) buf_putc(b, ',');
        buf_printf(b, "%s=\"", f->label[i]);
        put_escaped(b, c->lv[i], true);
        buf_putc(b, '"');
    }
    if (le) {
        if (f->n_labels) buf_putc(b, ',');
        buf_puts(b, "le=\"");
        put_double(b, *le);
        buf_putc(b, '"');
    }
    buf_putc(b, '}');
}

static int cmp_child(const void *a, const void *b)
{
    const struct child *x = *(const struct child *const *)a, *y = *(const struct child *const *)b;
    for (int i = 0; i < 2; i++) {
        int r = strcmp(x->lv[i] ? x->lv[i] : "", y->lv[i] ? y->lv[i] : "");
        if (r) return r;
    }
    return 0;
}

static const char *type_name(enum metrics_type t)
{
    return t == METRICS_COUNTER ? "counter" : t == METRICS_GAUGE ? "gauge" : "histogram";
}

static void render_family(struct metric *f, struct buf *b)
{
    pthread_mutex_lock(&f->mu);
    size_t n = HASH_COUNT(f->children);
    if (n == 0) goto out;
    struct child **v = xmalloc(n * sizeof *v);
    size_t i = 0;
    for (struct child *c = f->children; c; c = c->hh.next) v[i++] = c;
    qsort(v, n, sizeof *v, cmp_child);
    buf_printf(b, "# HELP %s ", f->name);
    put_escaped(b, f->help, false);
    buf_printf(b, "\n# TYPE %s %s\n", f->name, type_name(f->type));
    for (i = 0; i < n; i++) {
        struct child *c = v[i];
        if (f->type != METRICS_HISTOGRAM) {
            buf_puts(b, f->name);
            put_labels(b, f, c, NULL);
            buf_putc(b, ' ');
            put_double(b, c->value);
            buf_putc(b, '\n');
            continue;
        }
        unsigned long long cum = 0;
        for (size_t k = 0; k <= f->n_bounds; k++) {
            double le = k < f->n_bounds ? f->bounds[k] : INFINITY;
            cum = k < f->n_bounds ? cum + c->bucket[k] : c->count;
            buf_printf(b, "%s_bucket", f->name);
            put_labels(b, f, c, &le);
            buf_printf(b, " %llu\n", cum);
        }
        buf_printf(b, "%s_sum", f->name);
        put_labels(b, f, c, NULL);
        buf_putc(b, ' ');
        put_double(b, c->value);
        buf_printf(b, "\n%s_count", f->name);
        put_labels(b, f, c, NULL);
        buf_printf(b, " %llu\n", c->count);
    }
    free(v);
out:
    pthread_mutex_unlock(&f->mu);
}

/* Reads a whole /proc file into tmp (NUL-terminated); returns bytes or -1. */
static long read_proc(const char *path, char *tmp, size_t cap)
{
    FILE *fp = fopen(path, "re");
    if (!fp) return -1;
    size_t n = fread(tmp, 1, cap - 1, fp);
    fclose(fp);
    tmp[n] = '\0';
    return (long)n;
}

static void put_simple(struct buf *b, const char *name, const char *type, const char *help, double v)
{
    buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s ", name, help, name, type, name);
    put_double(b, v);
    buf_putc(b, '\n');
}

/* The standard process_* metrics, from /proc/self. Missing files are skipped. */
static void render_process(struct buf *b)
{
    char tmp[4096];
    long ticks = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
    if (ticks <= 0) ticks = 100;
    if (read_proc("/proc/self/stat", tmp, sizeof tmp) > 0) {
        /* Fields after "(comm)" start at field 3 (state); comm may contain spaces. */
        char *p = strrchr(tmp, ')');
        unsigned long long field[24] = {0};
        int nf = 0;
        if (p) {
            p += 2;
            for (int i = 3; i <= 24 && p && *p; i++) {
                char *end;
                field[i - 1] = strtoull(p, &end, 10);
                nf = i;
                p = strchr(p, ' ');
                if (p) p++;
            }
        }
        if (nf >= 24) {
            put_simple(b, "process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.",
                       (double)(field[13] + field[14]) / (double)ticks);
            put_simple(b, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", (double)field[22]);
            put_simple(b, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.",
                       (double)field[23] * (double)page);
            char st[4096];
            if (read_proc("/proc/stat", st, sizeof st) > 0) {
                char *bt = strstr(st, "\nbtime ");
                if (bt) {
                    double boot = strtod(bt + 7, NULL);
                    put_simple(b, "process_start_time_seconds", "gauge",
                               "Start time of the process since unix epoch in seconds.",
                               boot + (double)field[21] / (double)ticks);
                }
            }
        }
    }
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        long n = 0;
        struct dirent *e;
        while ((e = readdir(d)) != NULL)
            if (e->d_name[0] != '.') n++;
        closedir(d);
        put_simple(b, "process_open_fds", "gauge", "Number of open file descriptors.", (double)(n - 1));
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        put_simple(b, "process_max_fds", "gauge", "Maximum number of open file descriptors.",
                   rl.rlim_cur == RLIM_INFINITY ? INFINITY : (double)rl.rlim_cur);
}

static int cmp_family(const void *a, const void *b)
{
    return strcmp((*(struct metric *const *)a)->name, (*(struct metric *const *)b)->name);
}

int metrics_render(struct metrics *m, struct buf *out)
{
    /* Render unbounded first, so a bounded out gets all or nothing. */
    struct buf b;
    buf_init(&b, 0);
    render_process(&b);
    pthread_mutex_lock(&m->mu);
    size_t n = 0;
    for (struct metric *f = m->families; f; f = f->next) n++;
    struct metric **v = xmalloc((n ? n : 1) * sizeof *v);
    n = 0;
    for (struct metric *f = m->families; f; f = f->next) v[n++] = f;
    pthread_mutex_unlock(&m->mu);
    /* Families are never removed before the registry is released, so v stays valid. */
    qsort(v, n, sizeof *v, cmp_family);
    for (size_t i = 0; i < n; i++) render_family(v[i], &b);
    free(v);
    int rc = buf_append(out, b.ptr ? b.ptr : "", b.len);
    buf_release(&b);
    return rc < 0 ? -1 : 0;
}

int metrics_render_cb(void *m, struct buf *out) { return metrics_render(m, out); }

/* ---------------------------------------------------------------- syncv3 set */

struct metrics *metrics_new(void)
{
    static const double timeline_buckets[] = {0, 1, 2, 5, 10, 20, 50};
    static const double gappy_buckets[] = {1, 10, 100, 1000, 10000};
    const double *dur = metrics_duration_buckets;
    size_t ndur = sizeof metrics_duration_buckets / sizeof metrics_duration_buckets[0];
    struct metrics *m = xmalloc(sizeof *m);
    metrics_init(m);
    m->poller_num_pollers =
        metrics_gauge(m, "sliding_sync_poller_num_pollers", "Number of active sync v2 pollers.", NULL, NULL);
    m->poller_num_outstanding_sync_v2_reqs =
        metrics_gauge(m, "sliding_sync_poller_num_outstanding_sync_v2_reqs",
                      "Number of sync v2 requests that have yet to return a response.", NULL, NULL);
    m->poller_total_num_polls =
        metrics_counter(m, "sliding_sync_poller_total_num_polls",
                        "Total number of poll loops iterated, including retries.", NULL, NULL);
    m->poller_process_duration_secs = metrics_histogram(
        m, "sliding_sync_poller_process_duration_secs", "Time taken in seconds to process a sync v2 response.", dur,
        ndur, "initial", "first");
    m->poller_timeline_size = metrics_histogram(
        m, "sliding_sync_poller_timeline_size", "Number of events seen by the poller in a room's timeline.",
        timeline_buckets, sizeof timeline_buckets / sizeof timeline_buckets[0], "limited", NULL);
    m->poller_gappy_state_size = metrics_histogram(
        m, "sliding_sync_poller_gappy_state_size", "Number of state events in a joined room's gappy sync state block.",
        gappy_buckets, sizeof gappy_buckets / sizeof gappy_buckets[0], NULL, NULL);
    m->poller_num_payloads = metrics_counter(m, "sliding_sync_poller_num_payloads",
                                             "Number of payloads published by the poller side.", "payload_type", NULL);
    m->api_num_payloads = metrics_counter(m, "sliding_sync_api_num_payloads",
                                          "Number of payloads published by the API side.", "payload_type", NULL);
    m->api_num_devices_pending_ensure_polling =
        metrics_gauge(m, "sliding_sync_api_num_devices_pending_ensure_polling",
                      "Number of devices blocked waiting for their poller to start.", NULL, NULL);
    m->api_num_active_conns =
        metrics_gauge(m, "sliding_sync_api_num_active_conns", "Number of active sliding sync connections.", NULL, NULL);
    m->api_expiry_conn_timed_out =
        metrics_counter(m, "sliding_sync_api_expiry_conn_timed_out",
                        "Number of connections removed by expiry or explicit close.", NULL, NULL);
    m->api_expiry_conn_buffer_full =
        metrics_counter(m, "sliding_sync_api_expiry_conn_buffer_full",
                        "Number of connections expired because their update buffer filled up.", NULL, NULL);
    m->api_destroyed_conns =
        metrics_counter(m, "sliding_sync_api_destroyed_conns",
                        "Number of connections ended to make room for newer ones of the same device.", NULL, NULL);
    m->api_setup_duration_secs =
        metrics_histogram(m, "sliding_sync_api_setup_duration_secs",
                          "Time taken in seconds from request arrival to the start of processing.", dur, ndur,
                          "initial", NULL);
    m->api_process_duration_secs =
        metrics_histogram(m, "sliding_sync_api_process_duration_secs",
                          "Time taken in seconds to compute a response that did not long-poll.", dur, ndur,
                          "initial", NULL);
    m->api_slow_requests =
        metrics_counter(m, "sliding_sync_api_slow_requests", "Number of requests that took more than 50 seconds.",
                        NULL, NULL);
    m->api_queued_updates = metrics_gauge(m, "sliding_sync_api_queued_updates",
                                          "Number of live updates queued in connections, not yet drained.", NULL, NULL);
    m->cache_users = metrics_gauge(m, "sliding_sync_cache_users", "Number of users loaded in the cache.", NULL, NULL);
    m->cache_rooms = metrics_gauge(m, "sliding_sync_cache_rooms", "Number of rooms held in the cache.", NULL, NULL);
    m->cache_evictions = metrics_counter(m, "sliding_sync_cache_evictions_total",
                                         "Number of cache entries evicted (kind: user or room).", "kind", NULL);
    m->cache_preloaded_users =
        metrics_counter(m, "sliding_sync_cache_preloaded_users_total",
                        "Number of users with a recent stored connection loaded at start-up before any request.",
                        NULL, NULL);
    m->trace_spans_exported = metrics_counter(m, "sliding_sync_trace_spans_exported_total",
                                              "Number of trace spans the collector accepted.", NULL, NULL);
    m->trace_spans_dropped =
        metrics_counter(m, "sliding_sync_trace_spans_dropped_total",
                        "Number of trace spans dropped because the queue was full or the collector failed.", NULL,
                        NULL);
    m->sentry_events_sent = metrics_counter(m, "sliding_sync_sentry_events_sent_total",
                                            "Number of error reports Sentry accepted.", NULL, NULL);
    m->sentry_events_dropped =
        metrics_counter(m, "sliding_sync_sentry_events_dropped_total",
                        "Number of error reports dropped (rate limit, full queue or Sentry failing).", NULL, NULL);
    m->http_responses = metrics_counter(m, "sliding_sync_http_responses_total",
                                        "Client HTTP responses by status code (499 = the client went away first).",
                                        "code", NULL);
    m->poller_sync_failures =
        metrics_counter(m, "sliding_sync_poller_sync_failures_total",
                        "Failed /sync requests to the homeserver by status code (0 = no HTTP answer).", "code", NULL);
    m->api_num_parked_requests =
        metrics_gauge(m, "sliding_sync_api_num_parked_requests",
                      "Number of requests parked, by what they wait for (whoami, device, load, long_poll).", "phase",
                      NULL);
    return m;
}

void metrics_free(struct metrics *m)
{
    if (!m) return;
    metrics_release(m);
    free(m);
}
