#include "sync/versions.h"

#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/clock.h"
#include "base/log.h"
#include "upstream/hsclient.h"

#define MSC4186_FEATURE "org.matrix.simplified_msc3575"

struct versions {
    struct hsclient *hs; /* the homeserver (borrowed) */
    pthread_mutex_t mu;  /* guards the fields below */
    char *body;          /* the last answer as served (owned), or NULL */
    size_t len;          /* its bytes */
    int64_t fetched_ms;  /* monotonic time it was fetched */
};

struct versions *versions_new(struct hsclient *hs)
{
    struct versions *v = xcalloc(1, sizeof *v);
    v->hs = hs;
    pthread_mutex_init(&v->mu, NULL);
    return v;
}

void versions_free(struct versions *v)
{
    if (!v) return;
    pthread_mutex_destroy(&v->mu);
    free(v->body);
    free(v);
}

/* The homeserver's answer with the feature flag added (heap), or NULL. */
static char *fetch(struct versions *v, size_t *len)
{
    json_t *body = NULL;
    char *err = NULL;
    if (hsclient_versions_get(v->hs, &body, &err) != HSCLIENT_OK) {
        LOG_WARN("versions", "GET /_matrix/client/versions from the homeserver failed: %s", err ? err : "?");
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

enum http_action versions_handle(void *ud, struct http_req *req)
{
    struct versions *v = ud;
    int64_t now = clock_mono_ms();
    char *copy = NULL;
    size_t len = 0;
    pthread_mutex_lock(&v->mu);
    if (v->body && now - v->fetched_ms < VERSIONS_CACHE_MS) {
        copy = xstrndup(v->body, v->len);
        len = v->len;
    }
    pthread_mutex_unlock(&v->mu);
    if (!copy) {
        /* Fetched without the lock: a slow homeserver holds up only its askers. */
        copy = fetch(v, &len);
        if (!copy) {
            http_req_respond_error(req, 502, "M_UNKNOWN", "the homeserver did not answer /versions");
            return HTTP_DONE;
        }
        pthread_mutex_lock(&v->mu);
        free(v->body);
        v->body = xstrndup(copy, len);
        v->len = len;
        v->fetched_ms = now;
        pthread_mutex_unlock(&v->mu);
    }
    http_req_respond(req, 200, "application/json", copy, len);
    return HTTP_DONE;
}
