#include "sync/api.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#include "base/alloc.h"
#include "base/clock.h"
#include "base/config.h"
#include "base/crypto.h"
#include "base/log.h"
#include "cache/cache.h"
#include "ingest/ingest.h"
#include "obs/metrics.h"
#include "obs/trace.h"
#include "store/db.h"
#include "store/tokens.h"
#include "sync/conn.h"
#include "sync/conn_msc4186.h"
#include "sync/ext.h"
#include "sync/msc4186_request.h"
#include "sync/request.h"
#include "upstream/hsclient.h"
#include "upstream/poller.h"

#define DEFAULT_TIMEOUT_MS 10000
#define MIN_TIMEOUT_MS 100
/* How long a new connection waits for its device's first sync. */
#define DEVICE_WAIT_MS (10 * 60 * 1000)
/* How often a request waiting for that re-checks. */
#define DEVICE_POLL_MS 100
/* Live updates folded into one response at most. */
#define DRAIN_MAX 100

/* A token we have resolved. */
struct tok_entry {
    char hash[SHA256_HEX_LEN + 1]; /* key */
    char *user_id;                 /* owner */
    char *device_id;               /* device */
    UT_hash_handle hh;             /* in sync_api.tokens */
};

/* A device we started a poller for. */
struct dev_entry {
    char *key;                     /* "user|device" */
    char *user_id;                 /* owner */
    char hash[SHA256_HEX_LEN + 1]; /* token the poller uses */
    UT_hash_handle hh;             /* in sync_api.devices */
};

struct sync_api {
    struct sync_api_deps d;        /* services */
    struct sync_ctx ctx;           /* what connections use */
    struct conn_map *conns;        /* live connections */
    struct token_key key;          /* token encryption key */
    pthread_mutex_t lock;          /* guards tokens and devices */
    struct tok_entry *tokens;      /* resolved tokens */
    struct dev_entry *devices;     /* polled devices */
    int64_t last_tick_ms;          /* last housekeeping */
};

enum phase { PH_START, PH_WAIT_DEVICE, PH_PARKED };

/* State of one request across wake-ups. */
struct req_state {
    struct sync_api *api;          /* the API */
    enum phase phase;              /* where we are */
    char *user_id, *device_id;     /* who */
    struct sync_req req;           /* parsed body */
    char *canonical;               /* canonical body */
    bool has_pos;                  /* pos given */
    int64_t pos;                   /* its value */
    int64_t timeout_ms;            /* long-poll timeout */
    int64_t start_ms;              /* arrival */
    int64_t device_deadline;       /* end of the device wait */
    struct conn *conn;             /* the connection (ref) */
    struct conn *replaced;         /* the connection this one replaced (ref), freed with the request */
    struct conn_resp *resp;        /* response being built */
    int64_t cancels_at_park;       /* conn_cancels when parked */
    struct http_req *http;         /* the request this state belongs to (outlives it) */
    struct trace_ctx trace;        /* the request's span (zero when not traced) */
    json_t *msc4186;               /* MSC4186 request: its translated body, else NULL */
};

/* The request's span, recorded when the request ends: who, what it asked,
 * how many rooms it got, and its time parked (long-polling) vs computing. */
static void trace_request(struct req_state *s)
{
    int status = http_req_status(s->http);
    int64_t parked = http_req_parked_ms(s->http), took = clock_mono_ms() - s->start_ms;
    trace_emit(&s->trace, NULL, (double)s->start_ms / 1000.0, "sliding_sync", TRACE_SERVER,
               status >= 500 ? "server error" : NULL,
               TRACE_ATTRS(TRACE_STR("user_id", s->user_id), TRACE_STR("device_id", s->device_id),
                           TRACE_STR("conn_id", s->req.conn_id), TRACE_INT("initial", !s->has_pos),
                           TRACE_INT("lists", HASH_COUNT(s->req.lists)),
                           TRACE_INT("rooms", conn_resp_room_count(s->resp)), TRACE_INT("http.status_code", status),
                           TRACE_INT("wait_ms", parked), TRACE_INT("compute_ms", took - parked)));
}

static void req_state_free(void *p)
{
    struct req_state *s = p;
    if (trace_on) trace_request(s);
    free(s->user_id);
    free(s->device_id);
    sync_req_release(&s->req);
    free(s->canonical);
    json_decref(s->msc4186);
    conn_resp_free(s->resp);
    conn_unref(s->conn);
    conn_unref(s->replaced);
    free(s);
}

int sync_api_new(struct sync_api **out, const struct sync_api_deps *deps)
{
    struct sync_api *api = xcalloc(1, sizeof *api);
    api->d = *deps;
    api->ctx = (struct sync_ctx){deps->cache, deps->db, deps->metrics, ext_registry_new()};
    api->conns = conn_map_new(&api->ctx);
    crypto_key_from_secret(&api->key, deps->cfg->secret);
    pthread_mutex_init(&api->lock, NULL);
    api->last_tick_ms = clock_mono_ms();
    *out = api;
    return 0;
}

void sync_api_free(struct sync_api *api)
{
    if (!api) return;
    conn_map_free(api->conns);
    ext_registry_free(api->ctx.ext);
    struct tok_entry *t, *tt;
    HASH_ITER(hh, api->tokens, t, tt)
    {
        HASH_DEL(api->tokens, t);
        free(t->user_id);
        free(t->device_id);
        free(t);
    }
    struct dev_entry *d, *dt;
    HASH_ITER(hh, api->devices, d, dt)
    {
        HASH_DEL(api->devices, d);
        free(d->key);
        free(d->user_id);
        free(d);
    }
    pthread_mutex_destroy(&api->lock);
    free(api);
}

/* ---- devices and pollers ---- */

/* Starts (or re-tokens) the poller of a device. since: the stored since. */
static void ensure_polling(struct sync_api *api, const char *user_id, const char *device_id, const char *token,
                           const char *hash, const char *since, bool startup, bool take_over)
{
    char *key = xasprintf("%s|%s", user_id, device_id);
    pthread_mutex_lock(&api->lock);
    struct dev_entry *d;
    HASH_FIND_STR(api->devices, key, d);
    bool fresh = !d;
    /* A working poller keeps its token when a client shows up with another
     * one already known to us (possibly older); only a token just verified
     * (whoami or the store) takes over. */
    bool keep = d && ingest_device_ready(api->d.ingest, user_id, device_id) &&
                (strcmp(d->hash, hash) == 0 || !take_over);
    if (keep) {
        pthread_mutex_unlock(&api->lock);
        free(key);
        return;
    }
    if (!d) {
        d = xcalloc(1, sizeof *d);
        d->key = key;
        key = NULL;
        d->user_id = xstrdup(user_id);
        HASH_ADD_KEYPTR(hh, api->devices, d->key, strlen(d->key), d);
    }
    bool token_swap = !fresh && strcmp(d->hash, hash) != 0;
    memcpy(d->hash, hash, sizeof d->hash);
    /* A second device of a user already polled only needs its to-device
     * messages and E2EE data: the other device's poller fetches the rooms. */
    bool to_device_only = false;
    if (!startup) {
        for (struct dev_entry *o = api->devices; o; o = o->hh.next) {
            if (o != d && strcmp(o->user_id, user_id) == 0 &&
                ingest_device_ready(api->d.ingest, user_id, o->key + strlen(user_id) + 1))
                to_device_only = true;
        }
    }
    pthread_mutex_unlock(&api->lock);
    free(key);
    if (fresh || !token_swap) ingest_device_pending(api->d.ingest, user_id, device_id);
    poller_set_ensure(api->d.pollers, user_id, device_id, token, hash, since, to_device_only);
}

int sync_api_resume_pollers(struct sync_api *api)
{
    char *err = NULL;
    PGconn *c = db_acquire(api->d.db, 10000, &err);
    if (!c) {
        LOG_ERROR("api", "cannot resume pollers: %s", err);
        free(err);
        return 0;
    }
    struct store_token *devs = NULL;
    int n = 0, started = 0, failed = 0;
    if (store_devices_load(c, &devs, &n, &err) < 0) {
        LOG_ERROR("api", "cannot resume pollers: %s", err);
        free(err);
        n = 0;
    }
    db_release(api->d.db, c);
    for (int i = 0; i < n; i++) {
        char *token = crypto_decrypt_token(&api->key, devs[i].token_encrypted);
        if (!token) {
            failed++;
        } else {
            ensure_polling(api, devs[i].user_id, devs[i].device_id, token, devs[i].token_hash, devs[i].since, true,
                           true);
            explicit_bzero(token, strlen(token));
            free(token);
            started++;
        }
        store_token_release(&devs[i]);
    }
    free(devs);
    LOG_INFO("api", "resumed polling %d devices (%d tokens could not be decrypted: was SYNCV3_SECRET changed?)",
             started, failed);
    return started;
}

bool sync_api_is_current_token(struct sync_api *api, const char *user_id, const char *device_id,
                               const char *token_hash)
{
    char *key = xasprintf("%s|%s", user_id, device_id);
    pthread_mutex_lock(&api->lock);
    struct dev_entry *d;
    HASH_FIND_STR(api->devices, key, d);
    bool current = !d || !token_hash || strcmp(d->hash, token_hash) == 0;
    pthread_mutex_unlock(&api->lock);
    free(key);
    return current;
}

void sync_api_token_expired(struct sync_api *api, const char *user_id, const char *device_id)
{
    conn_map_end_device(api->conns, user_id, device_id);
}

void sync_api_tick(struct sync_api *api)
{
    int64_t now = clock_mono_ms();
    pthread_mutex_lock(&api->lock);
    bool due = now - api->last_tick_ms > 10000;
    if (due) api->last_tick_ms = now;
    pthread_mutex_unlock(&api->lock);
    if (due) conn_map_expire(api->conns, now);
}

/* ---- authentication ---- */

/* Resolves a token to its device, verifying unknown tokens with whoami and
 * starting the device's poller. Returns 0, or responds with an error and
 * returns -1. */
static int authenticate(struct sync_api *api, struct http_req *req, const char *token, bool has_pos,
                        char **user_id, char **device_id)
{
    char hash[SHA256_HEX_LEN + 1];
    crypto_sha256_hex(token, strlen(token), hash);
    bool verify = false;
    pthread_mutex_lock(&api->lock);
    struct tok_entry *t;
    HASH_FIND_STR(api->tokens, hash, t);
    if (t) {
        *user_id = xstrdup(t->user_id);
        *device_id = xstrdup(t->device_id);
    }
    pthread_mutex_unlock(&api->lock);
    char *err = NULL;
    if (*user_id) {
        /* A token the homeserver rejected since must be verified again. */
        if (ingest_device_wait(api->d.ingest, *user_id, *device_id, 0) != INGEST_EXPIRED) {
            ensure_polling(api, *user_id, *device_id, token, hash, NULL, false, false);
            return 0;
        }
        pthread_mutex_lock(&api->lock);
        HASH_FIND_STR(api->tokens, hash, t);
        if (t) {
            HASH_DEL(api->tokens, t);
            free(t->user_id);
            free(t->device_id);
            free(t);
        }
        pthread_mutex_unlock(&api->lock);
        free(*user_id);
        free(*device_id);
        *user_id = *device_id = NULL;
        if (has_pos) {
            /* Its connections ended with the token; the client starts over
             * (and then learns whether the token is still good). */
            http_req_respond_error(req, 400, "M_UNKNOWN_POS", "the connection ended; start a new one");
            return -1;
        }
        verify = true; /* the stored row may not be deleted yet: ask the homeserver */
    }
    PGconn *c = db_acquire(api->d.db, 5000, &err);
    if (!c) {
        http_req_respond_error(req, 503, "M_UNKNOWN", "database unavailable, try again");
        free(err);
        return -1;
    }
    struct store_token st = {0};
    int found = verify ? 0 : store_token_get(c, hash, &st, &err);
    char *since = NULL;
    if (found < 0) {
        db_release(api->d.db, c);
        http_req_respond_error(req, 503, "M_UNKNOWN", "database unavailable, try again");
        free(err);
        return -1;
    }
    if (!found) {
        db_release(api->d.db, c);
        c = NULL;
        int rc = hsclient_whoami(api->d.hs, token, user_id, device_id, &err);
        if (rc == HSCLIENT_UNAUTHORIZED) {
            free(err);
            http_req_respond_error(req, 401, "M_UNKNOWN_TOKEN", "the homeserver rejected the access token");
            return -1;
        }
        if (rc != HSCLIENT_OK) {
            LOG_WARN("api", "whoami failed: %s", err ? err : "?");
            free(err);
            http_req_respond_error(req, 502, "M_UNKNOWN", "could not verify the access token with the homeserver");
            return -1;
        }
        char *enc = crypto_encrypt_token(&api->key, token);
        c = db_acquire(api->d.db, 5000, &err);
        if (!enc || !c || store_token_put(c, hash, enc, *user_id, *device_id, &err) < 0) {
            free(enc);
            if (c) db_release(api->d.db, c);
            free(err);
            free(*user_id);
            free(*device_id);
            *user_id = *device_id = NULL;
            http_req_respond_error(req, 503, "M_UNKNOWN", "could not store the access token, try again");
            return -1;
        }
        free(enc);
    } else {
        *user_id = st.user_id;
        *device_id = st.device_id;
        st.user_id = st.device_id = NULL;
        store_token_release(&st);
    }
    since = store_device_since(c, *user_id, *device_id, &err);
    db_release(api->d.db, c);
    free(err);
    pthread_mutex_lock(&api->lock);
    HASH_FIND_STR(api->tokens, hash, t);
    if (!t) {
        t = xcalloc(1, sizeof *t);
        memcpy(t->hash, hash, sizeof t->hash);
        t->user_id = xstrdup(*user_id);
        t->device_id = xstrdup(*device_id);
        HASH_ADD_STR(api->tokens, hash, t);
    }
    pthread_mutex_unlock(&api->lock);
    ensure_polling(api, *user_id, *device_id, token, hash, since ? since : "", false, true);
    free(since);
    return 0;
}

/* ---- the handler ---- */

static void respond_body(struct http_req *req, char *body, size_t len)
{
    http_req_respond(req, 200, "application/json", body, len);
}

static bool parse_i64(const char *s, int64_t *out)
{
    if (!s || !*s) return false;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno || *end) return false;
    *out = v;
    return true;
}

static void observe_process(struct sync_api *api, struct req_state *s, double secs)
{
    if (api->d.metrics)
        metrics_observe_l(api->d.metrics->api_process_duration_secs, s->has_pos ? "0" : "1", NULL, secs);
}

/* Finishes and answers; returns HTTP_DONE. */
static enum http_action finish(struct sync_api *api, struct http_req *req, struct req_state *s)
{
    double t0 = clock_mono_secs();
    char *err = NULL;
    size_t len = 0;
    char *body = conn_finish(s->conn, s->resp, s->req.txn_id, s->has_pos ? s->pos : 0, s->canonical, &len, &err);
    if (!body) conn_abandon(s->conn); /* its drained updates would be lost otherwise */
    conn_unlock(s->conn);
    if (!body) {
        LOG_ERROR("api", "%s: building a response failed: %s", s->user_id, err ? err : "?");
        free(err);
        http_req_respond_error(req, 500, "M_UNKNOWN", "could not build the response, try again");
        return HTTP_DONE;
    }
    observe_process(api, s, clock_mono_secs() - t0);
    respond_body(req, body, len);
    return HTTP_DONE;
}

/* Computes with the connection locked; answers or parks. */
static enum http_action compute(struct sync_api *api, struct http_req *req, struct req_state *s)
{
    for (;;) {
        conn_drain(s->conn, s->resp, DRAIN_MAX);
        if (conn_dead(s->conn)) {
            conn_unlock(s->conn);
            http_req_respond_error(req, 400, "M_UNKNOWN_POS", "the connection ended; start a new one");
            return HTTP_DONE;
        }
        bool cancelled = s->phase == PH_PARKED && conn_cancels(s->conn) != s->cancels_at_park;
        int64_t end = s->start_ms + s->timeout_ms, hold = conn_resp_hold_until(s->resp);
        if (!s->has_pos || cancelled || http_req_deadline_passed(req) || http_req_shutting_down(req) ||
            clock_mono_ms() >= end || (conn_resp_has_data(s->resp) && !hold))
            return finish(api, req, s);
        /* With data held back for a transaction ID, wait only for that. */
        if (hold && hold < end) end = hold;
        s->cancels_at_park = conn_cancels(s->conn);
        if (!conn_set_waiter(s->conn, req)) continue; /* updates arrived meanwhile */
        s->phase = PH_PARKED;
        conn_unlock(s->conn);
        http_req_park(req, end);
        return HTTP_PARK;
    }
}

/* The request applied to the locked connection, in its dialect. */
static int apply_request(struct req_state *s, char **err)
{
    if (s->msc4186) return conn_msc4186_apply(s->conn, s->msc4186, s->resp, err);
    return conn_apply_request(s->conn, &s->req, s->resp, err);
}

/* Applies the request to the locked connection into a fresh response. On
 * failure answers, unlocks and returns -1. */
static int apply(struct http_req *req, struct req_state *s)
{
    s->resp = conn_resp_new();
    char *err = NULL;
    if (apply_request(s, &err) == 0) return 0;
    conn_unlock(s->conn);
    LOG_ERROR("api", "%s: %s", s->user_id, err);
    free(err);
    http_req_respond_error(req, 503, "M_UNKNOWN", "could not process the request, try again");
    return -1;
}

static enum http_action start_connection(struct sync_api *api, struct http_req *req, struct req_state *s)
{
    enum ingest_wait w = ingest_device_wait(api->d.ingest, s->user_id, s->device_id, 0);
    if (w == INGEST_EXPIRED) {
        http_req_respond_error(req, 401, "M_UNKNOWN_TOKEN", "the homeserver rejected the access token");
        return HTTP_DONE;
    }
    if (w != INGEST_READY) {
        if (clock_mono_ms() >= s->device_deadline || http_req_shutting_down(req)) {
            http_req_respond_error(req, 504, "M_UNKNOWN",
                                   "the first sync of this device with the homeserver has not finished yet; "
                                   "try again later");
            return HTTP_DONE;
        }
        s->phase = PH_WAIT_DEVICE;
        http_req_park(req, clock_mono_ms() + DEVICE_POLL_MS);
        return HTTP_PARK;
    }
    if (ingest_load_user(api->d.ingest, s->user_id, 30000) != INGEST_READY) {
        http_req_respond_error(req, 503, "M_UNKNOWN", "could not load the account, try again");
        return HTTP_DONE;
    }
    s->conn = conn_map_create(api->conns, s->user_id, s->device_id, s->req.conn_id ? s->req.conn_id : "",
                              &s->replaced);
    conn_lock(s->conn);
    if (apply(req, s) < 0) return HTTP_DONE;
    if (api->d.metrics)
        metrics_observe_l(api->d.metrics->api_setup_duration_secs, "1", NULL,
                          (double)(clock_mono_ms() - s->start_ms) / 1000.0);
    return compute(api, req, s);
}

static enum http_action continue_connection(struct sync_api *api, struct http_req *req, struct req_state *s)
{
    s->conn = conn_map_get(api->conns, s->user_id, s->device_id, s->req.conn_id ? s->req.conn_id : "");
    if (!s->conn || conn_dead(s->conn)) {
        http_req_respond_error(req, 400, "M_UNKNOWN_POS", "unknown or expired pos; start a new connection");
        return HTTP_DONE;
    }
    /* A newer request ends the long-poll of the previous one. */
    conn_cancel_waiter(s->conn);
    conn_lock(s->conn);
    int64_t last = conn_last_req_pos(s->conn);
    if (s->pos != last && !conn_has_buffered(s->conn, s->pos)) {
        conn_unlock(s->conn);
        http_req_respond_error(req, 400, "M_UNKNOWN_POS", "unknown pos %lld", (long long)s->pos);
        return HTTP_DONE;
    }
    const struct conn_buffered *next = conn_buffered_after(s->conn, s->pos);
    const char *prev = conn_last_req_body(s->conn);
    bool same = prev && s->canonical && strcmp(prev, s->canonical) == 0;
    if (next) {
        /* The client missed a response: send it again, whether or not the
         * body changed (js-sdk aborts and resends the same pos whenever the
         * visible range moves; computing afresh would drop what the missed
         * response carried). A changed body is still applied; its effects
         * come in the following response. */
        size_t len = next->len;
        char *copy = xstrndup(next->body, len); /* next may move when the buffer changes */
        if (!same) {
            s->resp = conn_resp_new();
            char *err = NULL;
            if (apply_request(s, &err) == 0) {
                conn_drain(s->conn, s->resp, DRAIN_MAX);
                size_t blen;
                char *body = conn_finish(s->conn, s->resp, s->req.txn_id, s->pos, s->canonical, &blen, &err);
                if (!body) conn_abandon(s->conn);
                free(body);
            }
            free(err);
        }
        conn_unlock(s->conn);
        respond_body(req, copy, len);
        return HTTP_DONE;
    }
    if (apply(req, s) < 0) return HTTP_DONE;
    return compute(api, req, s);
}

static enum http_action first_call(struct sync_api *api, struct http_req *req, bool msc4186)
{
    struct req_state *s = xcalloc(1, sizeof *s);
    s->api = api;
    s->start_ms = clock_mono_ms();
    s->http = req;
    sync_req_init(&s->req);
    http_req_set_state(req, s, req_state_free);
    if (trace_ctx_new(&s->trace, NULL)) http_req_log_append(req, "trace=%s", trace_ctx_hex(&s->trace, (char[33]){0}));

    const char *pos = http_req_query(req, "pos");
    const char *timeout = http_req_query(req, "timeout");
    /* MSC4186: no timeout answers at once. */
    s->timeout_ms = msc4186 ? 0 : DEFAULT_TIMEOUT_MS;
    if (timeout && !parse_i64(timeout, &s->timeout_ms)) {
        http_req_respond_error(req, 400, "M_INVALID_PARAM", "invalid timeout: must be an integer (milliseconds)");
        return HTTP_DONE;
    }
    if (s->timeout_ms < (msc4186 ? 0 : MIN_TIMEOUT_MS)) s->timeout_ms = msc4186 ? 0 : MIN_TIMEOUT_MS;
    if (s->timeout_ms > 24LL * 3600 * 1000) s->timeout_ms = 24LL * 3600 * 1000;
    if (pos && *pos) {
        if (!parse_i64(pos, &s->pos) || s->pos < 0) {
            http_req_respond_error(req, 400, "M_UNKNOWN_POS", "invalid pos: %.40s", pos);
            return HTTP_DONE;
        }
        s->has_pos = true;
    }
    struct slice body = http_req_body(req);
    struct sync_req_error perr = {0};
    if ((msc4186 ? msc4186_req_parse(&s->req, &s->msc4186, body.p, body.len, &perr)
                 : sync_req_parse(&s->req, body.p, body.len, &perr)) != 0) {
        http_req_respond_error(req, 400, sync_req_errcode(perr.code), "%s", perr.message);
        return HTTP_DONE;
    }
    s->canonical = sync_req_canonical_body(body.p, body.len);

    const char *auth = http_req_header(req, "Authorization");
    if (!auth) {
        http_req_respond_error(req, 401, "M_MISSING_TOKEN", "missing Authorization header");
        return HTTP_DONE;
    }
    const char *token = strncmp(auth, "Bearer ", 7) == 0 ? auth + 7 : auth;
    if (!*token) {
        http_req_respond_error(req, 401, "M_MISSING_TOKEN", "empty access token");
        return HTTP_DONE;
    }
    if (authenticate(api, req, token, s->has_pos, &s->user_id, &s->device_id) < 0) return HTTP_DONE;
    http_req_log_append(req, "u=%s dev=%s", s->user_id, s->device_id);
    sync_api_tick(api);
    if (s->has_pos) return continue_connection(api, req, s);
    s->device_deadline = s->start_ms + DEVICE_WAIT_MS;
    return start_connection(api, req, s);
}

static enum http_action handle(void *ud, struct http_req *req, bool msc4186)
{
    struct sync_api *api = ud;
    struct req_state *s = http_req_state(req);
    if (!s) return first_call(api, req, msc4186);
    switch (s->phase) {
    case PH_WAIT_DEVICE: return start_connection(api, req, s);
    case PH_PARKED:
        conn_lock(s->conn);
        conn_clear_waiter(s->conn, req);
        return compute(api, req, s);
    case PH_START: break;
    }
    http_req_respond_error(req, 500, "M_UNKNOWN", "internal error");
    return HTTP_DONE;
}

enum http_action sync_api_handle(void *ud, struct http_req *req)
{
    return handle(ud, req, false);
}

enum http_action sync_api_handle_msc4186(void *ud, struct http_req *req)
{
    return handle(ud, req, true);
}

enum http_action sync_api_server_json(void *ud, struct http_req *req)
{
    struct sync_api *api = ud;
    struct buf b = BUF_INIT;
    buf_puts(&b, "{\"server\":");
    buf_json_str(&b, api->d.cfg->server, strlen(api->d.cfg->server));
    buf_puts(&b, ",\"version\":\"" SYNCV3_VERSION " (" SYNCV3_COMMIT ")\"}\n");
    size_t len;
    char *body = buf_detach(&b, &len);
    respond_body(req, body, len);
    return HTTP_DONE;
}
