#include "obs/trace.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "base/alloc.h"
#include "base/clock.h"
#include "base/config.h"
#include "base/crypto.h"
#include "base/log.h"
#include "obs/metrics.h"
#include "obs/outbox.h"

/* Queue and batch sizes: a few seconds of a busy server's spans. */
#define QUEUE_CAP 4096
#define BATCH_MAX 512
#define LINGER_MS 1000
#define POST_TIMEOUT_MS 5000

/* One finished span waiting to be sent. */
struct span_rec {
    struct trace_ctx self;      /* its ids */
    uint8_t parent[8];          /* parent span id; all zero for a root span */
    enum trace_kind kind;       /* OTLP kind */
    int64_t start_ns;           /* wall-clock start, ns since the epoch */
    int64_t end_ns;             /* wall-clock end */
    char *name;                 /* span name (owned) */
    char *error;                /* error description (owned), or NULL */
    size_t n_attrs;             /* entries in attrs */
    struct trace_attr *attrs;   /* attributes; str values owned */
};

/* The exporter. */
struct tracer {
    char *url;                  /* POST target: {base}/v1/traces */
    char *user;                 /* basic-auth user, or NULL */
    char *password;             /* basic-auth password, or NULL */
    struct metric *exported;    /* counter of spans the collector accepted, or NULL */
    struct outbox *box;         /* the queue and its sender thread */
};

bool trace_on = false;
static struct tracer *tracer;

/* ---------------------------------------------------------------- ids */

/* xorshift128+ per thread, seeded from the kernel: ids need to be unique,
 * not secret, and a syscall per span would be wasteful. */
static _Thread_local uint64_t rng[2];

static uint64_t rand64(void)
{
    if (!rng[0] && !rng[1]) {
        if (getrandom(rng, sizeof rng, 0) != (ssize_t)sizeof rng) {
            rng[0] = (uint64_t)clock_wall_ms() ^ (uint64_t)(uintptr_t)&rng;
            rng[1] = (uint64_t)clock_mono_ms() * 0x9e3779b97f4a7c15ULL;
        }
        rng[0] |= 1;
    }
    uint64_t s1 = rng[0];
    const uint64_t s0 = rng[1];
    rng[0] = s0;
    s1 ^= s1 << 23;
    rng[1] = s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26);
    return rng[1] + s0;
}

static void fill_random(uint8_t *p, size_t n)
{
    do {
        for (size_t i = 0; i < n; i += 8) {
            uint64_t v = rand64();
            memcpy(p + i, &v, n - i < 8 ? n - i : 8);
        }
    } while (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0); /* an all-zero id means "none" */
}

static bool is_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i]) return false;
    return true;
}

bool trace_ctx_new(struct trace_ctx *out, const struct trace_ctx *parent)
{
    if (!trace_on) {
        *out = (struct trace_ctx){0};
        return false;
    }
    if (parent && !is_zero(parent->trace_id, sizeof parent->trace_id))
        memcpy(out->trace_id, parent->trace_id, sizeof out->trace_id);
    else
        fill_random(out->trace_id, sizeof out->trace_id);
    fill_random(out->span_id, sizeof out->span_id);
    return true;
}

const char *trace_ctx_hex(const struct trace_ctx *c, char out[33])
{
    crypto_hex(c->trace_id, sizeof c->trace_id, out);
    return out;
}

/* ---------------------------------------------------------------- recording */

static void rec_free(void *p)
{
    struct span_rec *r = p;
    if (!r) return;
    for (size_t i = 0; i < r->n_attrs; i++) free((char *)r->attrs[i].str);
    free(r->attrs);
    free(r->name);
    free(r->error);
    free(r);
}

void trace_emit(const struct trace_ctx *self, const struct trace_ctx *parent, double start_mono, const char *name,
                enum trace_kind kind, const char *error, const struct trace_attr *attrs, size_t n)
{
    if (!tracer) return;
    struct span_rec *r = xcalloc(1, sizeof *r);
    if (self)
        r->self = *self;
    else
        trace_ctx_new(&r->self, parent);
    if (is_zero(r->self.trace_id, sizeof r->self.trace_id)) {
        free(r);
        return;
    }
    if (parent && !is_zero(parent->span_id, sizeof parent->span_id))
        memcpy(r->parent, parent->span_id, sizeof r->parent);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    r->end_ns = (int64_t)now.tv_sec * 1000000000LL + now.tv_nsec;
    double took = clock_mono_secs() - start_mono;
    r->start_ns = r->end_ns - (took > 0 ? (int64_t)(took * 1e9) : 0);
    r->kind = kind;
    r->name = xstrdup(name);
    r->error = error ? xstrdup(error) : NULL;
    r->attrs = xcalloc(n ? n : 1, sizeof *r->attrs);
    for (size_t i = 0; i < n; i++) {
        if (!attrs[i].is_int && !attrs[i].str) continue;
        struct trace_attr *a = &r->attrs[r->n_attrs++];
        *a = attrs[i];
        if (!a->is_int) a->str = xstrdup(a->str);
    }
    outbox_push(tracer->box, r);
}

/* ---------------------------------------------------------------- OTLP JSON */

static json_t *attr_json(const char *key, const struct trace_attr *a)
{
    json_t *v;
    if (a->is_int) {
        char num[24];
        snprintf(num, sizeof num, "%lld", (long long)a->num);
        v = json_pack("{s:s}", "intValue", num); /* int64 is a string in proto3 JSON */
    } else {
        v = json_pack("{s:s}", "stringValue", a->str);
    }
    return json_pack("{s:s, s:o}", "key", key, "value", v);
}

static json_t *span_json(const struct span_rec *r)
{
    char tid[33], sid[17], pid[17], start[24], end[24];
    crypto_hex(r->self.trace_id, sizeof r->self.trace_id, tid);
    crypto_hex(r->self.span_id, sizeof r->self.span_id, sid);
    crypto_hex(r->parent, sizeof r->parent, pid);
    snprintf(start, sizeof start, "%lld", (long long)r->start_ns);
    snprintf(end, sizeof end, "%lld", (long long)r->end_ns);
    json_t *s = json_pack("{s:s, s:s, s:s, s:i, s:s, s:s}", "traceId", tid, "spanId", sid, "name", r->name, "kind",
                          (int)r->kind, "startTimeUnixNano", start, "endTimeUnixNano", end);
    if (!is_zero(r->parent, sizeof r->parent)) json_object_set_new(s, "parentSpanId", json_string(pid));
    json_t *attrs = json_array();
    for (size_t i = 0; i < r->n_attrs; i++) json_array_append_new(attrs, attr_json(r->attrs[i].key, &r->attrs[i]));
    json_object_set_new(s, "attributes", attrs);
    if (r->error) json_object_set_new(s, "status", json_pack("{s:i, s:s}", "code", 2, "message", r->error));
    return s;
}

/* The request body for n spans (heap, compact JSON). */
static char *batch_json(struct span_rec **recs, size_t n)
{
    json_t *spans = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(spans, span_json(recs[i]));
    struct trace_attr svc = TRACE_STR("service.name", "syncv3"), ver = TRACE_STR("service.version", SYNCV3_VERSION);
    json_t *resource = json_pack("{s:[o,o]}", "attributes", attr_json(svc.key, &svc), attr_json(ver.key, &ver));
    json_t *scope = json_pack("{s:s, s:s}", "name", "syncv3", "version", SYNCV3_VERSION);
    json_t *root = json_pack("{s:[{s:o, s:[{s:o, s:o}]}]}", "resourceSpans", "resource", resource, "scopeSpans",
                             "scope", scope, "spans", spans);
    char *body = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    CHECK(body != NULL);
    return body;
}

static size_t send_batch(void *ud, struct outbox *box, void **items, size_t n)
{
    struct tracer *t = ud;
    char *body = batch_json((struct span_rec **)items, n);
    struct outbox_request req = {.url = t->url,
                                 .content_type = "application/json",
                                 .user = t->user,
                                 .password = t->password,
                                 .body = body,
                                 .len = strlen(body),
                                 .timeout_ms = POST_TIMEOUT_MS};
    const char *why = NULL;
    long status = outbox_post(box, &req, &why);
    free(body);
    for (size_t i = 0; i < n; i++) rec_free(items[i]);
    if (status >= 200 && status < 300) {
        metrics_add(t->exported, (double)n);
        return 0;
    }
    outbox_log_failure(box, t->url, status, why, n, "spans");
    return n;
}

/* ---------------------------------------------------------------- start/stop */

/* {base}/v1/traces; a legacy SYNCV3_JAEGER_URL that has a path is used as is. */
static char *export_url(const struct config *c)
{
    const char *base = c->otlp_url ? c->otlp_url : c->jaeger_url;
    const char *after = strstr(base, "://");
    const char *path = after ? strchr(after + 3, '/') : NULL;
    if (path && path[1]) return xstrdup(base);
    size_t n = path ? (size_t)(path - base) : strlen(base);
    return xasprintf("%.*s/v1/traces", (int)n, base);
}

static void tracer_free(struct tracer *t)
{
    if (!t) return;
    free(t->url);
    free(t->user);
    if (t->password) explicit_bzero(t->password, strlen(t->password));
    free(t->password);
    free(t);
}

int trace_start(const struct config *c, struct metrics *m)
{
    if (!c->otlp_url && !c->jaeger_url) return 0;
    if (!c->otlp_url) LOG_WARN("trace", "SYNCV3_JAEGER_URL is the old name: set SYNCV3_OTLP_URL instead");
    struct tracer *t = xcalloc(1, sizeof *t);
    t->url = export_url(c);
    t->user = c->otlp_username ? xstrdup(c->otlp_username) : NULL;
    t->password = c->otlp_password ? xstrdup(c->otlp_password) : NULL;
    t->exported = m ? m->trace_spans_exported : NULL;
    struct outbox_opts o = {.name = "trace",
                            .cap = QUEUE_CAP,
                            .batch = BATCH_MAX,
                            .linger_ms = LINGER_MS,
                            .send = send_batch,
                            .free_item = rec_free,
                            .ud = t,
                            .dropped = m ? m->trace_spans_dropped : NULL};
    if (outbox_new(&t->box, &o) < 0) {
        tracer_free(t);
        return -1;
    }
    tracer = t;
    trace_on = true;
    LOG_INFO("trace", "exporting spans to %s (OTLP/HTTP JSON)", t->url);
    return 0;
}

void trace_stop(void)
{
    if (!tracer) return;
    trace_on = false;
    struct tracer *t = tracer;
    outbox_free(t->box); /* sends what is queued first */
    tracer = NULL;
    tracer_free(t);
}
