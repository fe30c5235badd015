#include "sync/versions.h"

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/clock.h"
#include "base/log.h"
#include "sync/waitlist.h"
#include "upstream/hsclient.h"
#include "upstream/poller.h"

#define MSC4186_FEATURE "org.matrix.simplified_msc3575"
#define VERSIONS_PATH "/_matrix/client/versions"
/* The wait-list key of requests waiting for the homeserver's answer. */
#define VERSIONS_KEY "versions"

struct versions {
    struct poller_set *ps;  /* asks the homeserver (borrowed) */
    struct waitlist *waits; /* requests waiting for its answer */
    pthread_mutex_t mu;     /* guards the fields below */
    char *body;             /* the last answer as served (owned), or NULL */
    size_t len;             /* its bytes */
    int64_t fetched_ms;     /* monotonic time it was fetched */
};

/* One request's state across its wake-ups. */
struct versions_req {
    struct versions *v;          /* whose */
    struct waitlist_entry wait;  /* under VERSIONS_KEY while waiting */
    int64_t deadline;            /* give up then (monotonic ms) */
};

struct versions *versions_new(struct poller_set *ps)
{
    struct versions *v = xcalloc(1, sizeof *v);
    v->ps = ps;
    v->waits = waitlist_new();
    pthread_mutex_init(&v->mu, NULL);
    return v;
}

void versions_free(struct versions *v)
{
    if (!v) return;
    waitlist_free(v->waits);
    pthread_mutex_destroy(&v->mu);
    free(v->body);
    free(v);
}

/* The homeserver's answer with the feature flag added (heap), or NULL. */
static char *with_flag(long status, const char *raw, size_t raw_len, const char *why, size_t *len)
{
    json_t *body = NULL;
    char *err = NULL;
    if (!raw || hsclient_versions_result(status, raw, raw_len, &body, &err) != HSCLIENT_OK) {
        LOG_WARN("versions", "GET /_matrix/client/versions from the homeserver failed: %s",
                 err ? err : why ? why : "?");
        free(err);
        return NULL;
    }
    json_t *uf = json_object_get(body, "unstable_features");
    if (!json_is_object(uf)) {
        uf = json_object();
        json_object_set_new(body, "unstable_features", uf);
    }
    json_object_set_new(uf, MSC4186_FEATURE, json_true());
    char *out = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    *len = out ? strlen(out) : 0;
    return out;
}

/* The poller thread's answer: cache it and wake the waiting requests
 * (rc 0 with an answer in the cache, -1 without). */
static void on_answer(void *ud, long status, const char *raw, size_t raw_len, const char *why)
{
    struct versions *v = ud;
    size_t len = 0;
    char *body = with_flag(status, raw, raw_len, why, &len);
    if (body) {
        pthread_mutex_lock(&v->mu);
        free(v->body);
        v->body = body;
        v->len = len;
        v->fetched_ms = clock_mono_ms();
        pthread_mutex_unlock(&v->mu);
    }
    waitlist_fire(v->waits, VERSIONS_KEY, body ? 0 : -1);
}

/* Answers from the cache if it is fresh; returns whether it did. */
static bool answer_cached(struct versions *v, struct http_req *req)
{
    char *copy = NULL;
    size_t len = 0;
    pthread_mutex_lock(&v->mu);
    if (v->body && clock_mono_ms() - v->fetched_ms < VERSIONS_CACHE_MS) {
        copy = xstrndup(v->body, v->len);
        len = v->len;
    }
    pthread_mutex_unlock(&v->mu);
    if (copy) http_req_respond(req, 200, "application/json", copy, len);
    return copy != NULL;
}

static void versions_req_free(void *p)
{
    struct versions_req *r = p;
    waitlist_remove(r->v->waits, &r->wait);
    free(r);
}

static enum http_action bad_gateway(struct http_req *req)
{
    http_req_respond_error(req, 502, "M_UNKNOWN", "the homeserver did not answer /versions");
    return HTTP_DONE;
}

enum http_action versions_handle(void *ud, struct http_req *req)
{
    struct versions *v = ud;
    struct versions_req *r = http_req_state(req);
    if (r) {
        /* Woken: by the answer, the deadline or shutdown. */
        int rc = 0;
        bool fired = waitlist_fired(v->waits, &r->wait, &rc);
        if (fired && rc == 0 && answer_cached(v, req)) return HTTP_DONE;
        if (fired) return bad_gateway(req);
        if (http_req_shutting_down(req)) {
            waitlist_remove(v->waits, &r->wait);
            http_req_respond_error(req, 503, "M_UNKNOWN", "the server is shutting down");
            return HTTP_DONE;
        }
        if (clock_mono_ms() >= r->deadline) {
            waitlist_remove(v->waits, &r->wait);
            return bad_gateway(req);
        }
        http_req_park(req, r->deadline);
        return HTTP_PARK;
    }
    if (answer_cached(v, req)) return HTTP_DONE;
    /* Cold: the poller thread asks (one request for every client waiting),
     * and this request parks, so no HTTP thread waits for the homeserver. */
    r = xcalloc(1, sizeof *r);
    r->v = v;
    r->deadline = clock_mono_ms() + VERSIONS_WAIT_MS;
    http_req_set_state(req, r, versions_req_free);
    if (waitlist_add(v->waits, &r->wait, VERSIONS_KEY, req)) poller_set_get(v->ps, VERSIONS_PATH, on_answer, v);
    /* Answered between the first look and joining the list? */
    if (answer_cached(v, req)) {
        waitlist_remove(v->waits, &r->wait);
        return HTTP_DONE;
    }
    http_req_park(req, r->deadline);
    return HTTP_PARK;
}
