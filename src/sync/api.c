#include "sync/api.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "base/hash.h"

#include "base/alloc.h"
#include "base/clock.h"
#include "base/config.h"
#include "base/defer.h"
#include "base/log.h"
#include "cache/cache.h"
#include "ingest/ingest.h"
#include "obs/metrics.h"
#include "obs/trace.h"
#include "sync/auth.h"
#include "sync/conn.h"
#include "sync/conn_msc4186.h"
#include "sync/conn_persist.h"
#include "sync/ext.h"
#include "sync/msc4186_request.h"
#include "sync/request.h"
#include "sync/waitlist.h"

#define DEFAULT_TIMEOUT_MS 10000
#define MIN_TIMEOUT_MS 100
/* How long a new connection waits for its device's first sync. */
#define DEVICE_WAIT_MS (10 * 60 * 1000)
/* How long a new connection waits for its user's rooms to be loaded. */
#define LOAD_WAIT_MS 30000
/* Live updates folded into one response at most. */
#define DRAIN_MAX 100
/* Ended requests waiting for the finisher thread at most; past it a request
 * is finished in its own thread. */
#define FINISH_MAX_QUEUED 1024

struct sync_api {
    struct sync_api_deps d;        /* services */
    struct sync_ctx ctx;           /* what connections use */
    struct conn_map *conns;        /* live connections */
    struct waitlist *waits;        /* requests parked for a whoami, a device or a load */
    struct auth *auth;             /* tokens, devices, pollers */
    pthread_mutex_t lock;          /* guards last_tick_ms */
    int64_t last_tick_ms;          /* last housekeeping */
    struct defer *finisher;        /* finishes ended requests (req_state_finish) */
};

enum phase { PH_START, PH_AUTH, PH_WAIT_DEVICE, PH_LOAD, PH_PARKED };

/* The label of each parked phase in sliding_sync_api_num_parked_requests. */
static const char *const phase_label[] = {
    [PH_START] = NULL, [PH_AUTH] = "whoami", [PH_WAIT_DEVICE] = "device", [PH_LOAD] = "load", [PH_PARKED] = "long_poll",
};

/* State of one request across wake-ups. */
struct req_state {
    struct sync_api *api;          /* the API */
    enum phase phase;              /* where we are */
    enum phase counted;            /* the phase counted as parked, PH_START when none */
    struct auth_req auth;          /* the token and, once resolved, its device */
    struct waitlist_entry wait;    /* parked for a whoami, the device or the user's rooms */
    struct sync_req req;           /* parsed body */
    char *canonical;               /* canonical body */
    bool has_pos;                  /* pos given */
    int64_t pos;                   /* its value */
    int64_t timeout_ms;            /* long-poll timeout */
    int64_t start_ms;              /* arrival */
    int64_t setup_ms;              /* when computing the response began (setup done) */
    int64_t device_deadline;       /* end of the device wait */
    int64_t load_deadline;         /* end of the wait for the user's rooms (0 = not started) */
    struct conn *conn;             /* the connection (ref) */
    struct conn *replaced;         /* the connection this one replaced (ref), freed with the request */
    struct conn_resp *resp;        /* response being built */
    int64_t cancels_at_park;       /* conn_cancels when parked */
    struct http_req *http;         /* the request this state belongs to (outlives it) */
    struct trace_ctx trace;        /* the request's span (zero when not traced) */
    json_t *msc4186;               /* MSC4186 request: its translated body, else NULL */
    struct conn_saved *saved;      /* MSC4186: the stored connection its pos continues, until restored */
};

/* The request's span, recorded when the request ends: who, what it asked,
 * how many rooms it got, and its time parked (long-polling) vs computing. */
static void trace_request(struct req_state *s)
{
    int status = http_req_status(s->http);
    int64_t parked = http_req_parked_ms(s->http), took = clock_mono_ms() - s->start_ms;
    trace_emit(&s->trace, NULL, (double)s->start_ms / 1000.0, "sliding_sync", TRACE_SERVER,
               status >= 500 ? "server error" : NULL,
               TRACE_ATTRS(TRACE_STR("user_id", s->auth.user_id), TRACE_STR("device_id", s->auth.device_id),
                           TRACE_STR("conn_id", s->req.conn_id), TRACE_INT("initial", !s->has_pos),
                           TRACE_INT("lists", HASH_COUNT(s->req.lists)),
                           TRACE_INT("rooms", conn_resp_room_count(s->resp)), TRACE_INT("http.status_code", status),
                           TRACE_INT("wait_ms", parked), TRACE_INT("compute_ms", took - parked)));
}

/* Moves the request's parked count from its old phase to ph (PH_START: none). */
static void count_parked(struct req_state *s, enum phase ph)
{
    struct metrics *m = s->api->d.metrics;
    if (s->counted == ph) return;
    if (m && s->counted != PH_START) metrics_add_l(m->api_num_parked_requests, phase_label[s->counted], NULL, -1);
    if (m && ph != PH_START) metrics_add_l(m->api_num_parked_requests, phase_label[ph], NULL, 1);
    s->counted = ph;
}

/* The part of finishing a request that can wait: storing a new
 * connection's first state, and freeing what the request held (the
 * connection it replaced may hold thousands of rooms). */
static void req_state_finish(void *p)
{
    struct req_state *s = p;
    if (s->conn) conn_settle(s->conn);
    auth_req_release(&s->auth);
    sync_req_release(&s->req);
    free(s->canonical);
    json_decref(s->msc4186);
    conn_saved_free(s->saved);
    conn_resp_free(s->resp);
    conn_unref(s->conn);
    conn_unref(s->replaced);
    free(s);
}

/* When the request has ended (its response sent, or the client gone). What
 * touches the HTTP request or its wait entry happens here; the rest on the
 * finisher thread, so the client's next request does not wait for it. */
static void req_state_free(void *p)
{
    struct req_state *s = p;
    if (trace_on) trace_request(s);
    /* Over 50 s is slow (the Go proxy's mark); a long-poll with a longer timeout counts too. */
    int64_t ms = clock_mono_ms() - s->start_ms;
    if (ms > 50000 && s->api->d.metrics) {
        metrics_inc(s->api->d.metrics->api_slow_requests);
        LOG_WARN("api", "slow request: %.3f s user=%s device=%s", (double)ms / 1000.0,
                 s->auth.user_id ? s->auth.user_id : "-", s->auth.device_id ? s->auth.device_id : "-");
    }
    waitlist_remove(s->api->waits, &s->wait);
    count_parked(s, PH_START);
    s->http = NULL; /* freed once this returns */
    if (s->api->finisher)
        defer_run(s->api->finisher, req_state_finish, s);
    else
        req_state_finish(s);
}

/* Parks the request in phase ph until a wake or deadline. */
static enum http_action park(struct req_state *s, struct http_req *req, enum phase ph, int64_t deadline)
{
    s->phase = ph;
    count_parked(s, ph);
    http_req_park(req, deadline);
    return HTTP_PARK;
}

/* ---- what ingest tells us ---- */

static char *device_key(const char *user_id, const char *device_id)
{
    return xasprintf("device:%s|%s", user_id, device_id);
}

static char *load_key(const char *user_id)
{
    return xasprintf("load:%s", user_id);
}

static void on_device(void *ud, const char *user_id, const char *device_id)
{
    struct sync_api *api = ud;
    char *key = device_key(user_id, device_id);
    waitlist_fire(api->waits, key, 0);
    free(key);
}

static void on_loaded(void *ud, const char *user_id, int rc)
{
    struct sync_api *api = ud;
    char *key = load_key(user_id);
    waitlist_fire(api->waits, key, rc);
    free(key);
}

static void on_superseded(void *ud, const char *user_id, const char *device_id, const char *token_hash,
                          const char *const *old_hashes, int n)
{
    struct sync_api *api = ud;
    auth_forget(api->auth, old_hashes, n);
}

int sync_api_new(struct sync_api **out, const struct sync_api_deps *deps)
{
    struct sync_api *api = xcalloc(1, sizeof *api);
    api->d = *deps;
    api->ctx = (struct sync_ctx){deps->cache, deps->db, deps->metrics, ext_registry_new()};
    api->conns = conn_map_new(&api->ctx);
    api->waits = waitlist_new();
    struct auth_deps ad = {deps->cfg, deps->db, deps->ingest, deps->pollers, api->waits, deps->metrics};
    auth_new(&api->auth, &ad);
    pthread_mutex_init(&api->lock, NULL);
    api->last_tick_ms = clock_mono_ms();
    api->finisher = defer_new("syncv3-finish", FINISH_MAX_QUEUED);
    struct ingest_hooks hooks = {api, on_device, on_loaded, on_superseded};
    ingest_set_hooks(deps->ingest, &hooks);
    *out = api;
    return 0;
}

void sync_api_finish_ended(struct sync_api *api)
{
    if (!api) return;
    defer_free(api->finisher);
    api->finisher = NULL;
}

void sync_api_free(struct sync_api *api)
{
    if (!api) return;
    sync_api_finish_ended(api);
    conn_map_free(api->conns);
    ext_registry_free(api->ctx.ext);
    auth_free(api->auth);
    waitlist_free(api->waits);
    pthread_mutex_destroy(&api->lock);
    free(api);
}

int sync_api_resume_pollers(struct sync_api *api)
{
    return auth_resume_pollers(api->auth);
}

bool sync_api_is_current_token(struct sync_api *api, const char *user_id, const char *device_id,
                               const char *token_hash)
{
    return auth_is_current_token(api->auth, user_id, device_id, token_hash);
}

void sync_api_token_expired(struct sync_api *api, const char *user_id, const char *device_id, const char *token_hash,
                            bool current)
{
    /* Dead first: the parked requests woken by the connections' end answer 401. */
    auth_token_rejected(api->auth, user_id, device_id, token_hash);
    if (current) conn_map_end_device(api->conns, user_id, device_id);
}

void sync_api_tick(struct sync_api *api)
{
    int64_t now = clock_mono_ms();
    pthread_mutex_lock(&api->lock);
    bool due = now - api->last_tick_ms > 10000;
    if (due) api->last_tick_ms = now;
    pthread_mutex_unlock(&api->lock);
    if (!due) return;
    conn_map_expire(api->conns, now);
    auth_tick(api->auth, now);
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

/* Setup (auth, waiting for the device, the connection) ends when the
 * response starts being computed. */
static void observe_setup(struct sync_api *api, struct req_state *s)
{
    s->setup_ms = clock_mono_ms();
    if (api->d.metrics)
        metrics_observe_l(api->d.metrics->api_setup_duration_secs, s->has_pos ? "0" : "1", NULL,
                          (double)(s->setup_ms - s->start_ms) / 1000.0);
}

/* Processing time counts only responses that did not long-poll. */
static void observe_process(struct sync_api *api, struct req_state *s)
{
    if (api->d.metrics && s->phase != PH_PARKED)
        metrics_observe_l(api->d.metrics->api_process_duration_secs, s->has_pos ? "0" : "1", NULL,
                          (double)(clock_mono_ms() - s->setup_ms) / 1000.0);
}

/* Finishes and answers; returns HTTP_DONE. */
static enum http_action finish(struct sync_api *api, struct http_req *req, struct req_state *s)
{
    char *err = NULL;
    size_t len = 0;
    char *body = conn_finish(s->conn, s->resp, s->req.txn_id, s->has_pos ? s->pos : 0, s->canonical, &len, &err);
    if (!body) conn_abandon(s->conn); /* its drained updates would be lost otherwise */
    conn_unlock(s->conn);
    if (!body) {
        LOG_ERROR("api", "%s: building a response failed: %s", s->auth.user_id, err ? err : "?");
        free(err);
        http_req_respond_error(req, 500, "M_UNKNOWN", "could not build the response, try again");
        return HTTP_DONE;
    }
    observe_process(api, s);
    respond_body(req, body, len);
    return HTTP_DONE;
}

/* The connection is gone or ended: a request whose token the homeserver
 * rejected must refresh it (401); any other starts over (M_UNKNOWN_POS). */
static enum http_action respond_ended(struct sync_api *api, struct http_req *req, struct req_state *s)
{
    if (auth_token_dead(api->auth, s->auth.hash)) {
        http_req_respond_error(req, 401, "M_UNKNOWN_TOKEN", "the homeserver rejected the access token");
        return HTTP_DONE;
    }
    if (s->conn && conn_dead(s->conn) && conn_end_reason(s->conn) == CONN_END_TOKEN)
        http_req_respond_error(req, 400, "M_UNKNOWN_POS",
                               "the connection ended with an older access token of this device; start a new one");
    else
        http_req_respond_error(req, 400, "M_UNKNOWN_POS", "unknown or expired pos; start a new connection");
    return HTTP_DONE;
}

/* Computes with the connection locked; answers or parks. */
static enum http_action compute(struct sync_api *api, struct http_req *req, struct req_state *s)
{
    for (;;) {
        conn_drain(s->conn, s->resp, DRAIN_MAX);
        if (conn_dead(s->conn)) {
            conn_unlock(s->conn);
            return respond_ended(api, req, s);
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
        conn_unlock(s->conn);
        return park(s, req, PH_PARKED, end);
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
    LOG_ERROR("api", "%s: %s", s->auth.user_id, err);
    free(err);
    http_req_respond_retry(req, 503, 1, "M_UNKNOWN", "could not process the request, try again");
    return -1;
}

static enum http_action authenticate(struct sync_api *api, struct http_req *req, struct req_state *s);

/* Parks until the device's first sync since its poller (re)started is stored
 * (ingest fires the device's key), or answers; returns -1 when ready. */
static int wait_for_device(struct sync_api *api, struct http_req *req, struct req_state *s, enum http_action *act)
{
    bool listening = false;
    for (;;) {
        enum ingest_device_state st = ingest_device_state(api->d.ingest, s->auth.user_id, s->auth.device_id,
                                                          s->auth.hash);
        if (st == INGEST_DEVICE_READY) break;
        if (st == INGEST_DEVICE_EXPIRED) {
            waitlist_remove(api->waits, &s->wait);
            http_req_respond_error(req, 401, "M_UNKNOWN_TOKEN", "the homeserver rejected the access token");
            *act = HTTP_DONE;
            return 0;
        }
        if (st == INGEST_DEVICE_STOPPED) {
            /* The device's previous token died: poll with this one. */
            waitlist_remove(api->waits, &s->wait);
            switch (auth_restart(api->auth, req, &s->auth)) {
            case AUTH_OK: continue;
            case AUTH_PARKED: *act = park(s, req, PH_AUTH, s->auth.deadline); return 0;
            case AUTH_ANSWERED: *act = HTTP_DONE; return 0;
            }
        }
        if (!listening) {
            /* Listen first, then look again: a change in between is not lost. */
            char *key = device_key(s->auth.user_id, s->auth.device_id);
            waitlist_remove(api->waits, &s->wait);
            waitlist_add(api->waits, &s->wait, key, req);
            free(key);
            listening = true;
            continue;
        }
        if (clock_mono_ms() >= s->device_deadline || http_req_shutting_down(req)) {
            waitlist_remove(api->waits, &s->wait);
            http_req_respond_error(req, 504, "M_UNKNOWN",
                                   "the first sync of this device with the homeserver has not finished yet; "
                                   "try again later");
            *act = HTTP_DONE;
            return 0;
        }
        *act = park(s, req, PH_WAIT_DEVICE, s->device_deadline);
        return 0;
    }
    waitlist_remove(api->waits, &s->wait);
    return -1;
}

/* Parks until the user's rooms are in the cache (loaded by the ingest
 * thread), or answers; returns -1 when loaded. */
static int wait_for_load(struct sync_api *api, struct http_req *req, struct req_state *s, enum http_action *act)
{
    int rc = 0;
    bool failed = s->phase == PH_LOAD && waitlist_fired(api->waits, &s->wait, &rc) && rc < 0;
    waitlist_remove(api->waits, &s->wait);
    if (cache_pin_user(api->d.cache, s->auth.user_id)) return -1;
    if (!s->load_deadline) s->load_deadline = clock_mono_ms() + LOAD_WAIT_MS;
    if (failed || clock_mono_ms() >= s->load_deadline || http_req_shutting_down(req)) {
        http_req_respond_retry(req, 503, 1, "M_UNKNOWN", "could not load the account, try again");
        *act = HTTP_DONE;
        return 0;
    }
    char *key = load_key(s->auth.user_id);
    /* The first waiter asks for the load; later ones share it. */
    if (waitlist_add(api->waits, &s->wait, key, req)) ingest_load_user_async(api->d.ingest, s->auth.user_id);
    free(key);
    /* Loaded meanwhile (by a load that fired before we listened)? */
    if (cache_pin_user(api->d.cache, s->auth.user_id)) {
        waitlist_remove(api->waits, &s->wait);
        return -1;
    }
    *act = park(s, req, PH_LOAD, s->load_deadline);
    return 0;
}

static enum http_action start_connection(struct sync_api *api, struct http_req *req, struct req_state *s)
{
    enum http_action act = HTTP_DONE;
    if (wait_for_device(api, req, s, &act) == 0) return act;
    if (wait_for_load(api, req, s, &act) == 0) return act;
    s->conn = conn_map_create(api->conns, s->auth.user_id, s->auth.device_id, s->req.conn_id ? s->req.conn_id : "",
                              &s->replaced);
    conn_lock(s->conn);
    observe_setup(api, s);
    bool restored = s->saved != NULL;
    if (restored) conn_persist_restore(s->conn, s->saved);
    s->saved = NULL;
    if (apply(req, s) < 0) return HTTP_DONE;
    if (restored && conn_persist_resume(s->conn, s->resp, s->pos) < 0) {
        conn_abandon(s->conn);
        conn_unlock(s->conn);
        http_req_respond_error(req, 400, "M_UNKNOWN_POS", "too much changed since pos %lld; start a new connection",
                               (long long)s->pos);
        return HTTP_DONE;
    }
    return compute(api, req, s);
}

/* An MSC4186 pos of no connection in memory: the connection stored before
 * a restart, rebuilt as a new connection is (after the device's first sync
 * and the user's rooms), continues it (docs/behaviour.md, "Connections
 * across restarts"); without a usable one the client starts over. */
static enum http_action resume_connection(struct sync_api *api, struct http_req *req, struct req_state *s)
{
    const char *why = NULL;
    char *err = NULL;
    int rc = conn_persist_lookup(&api->ctx, s->auth.user_id, s->auth.device_id, s->req.conn_id ? s->req.conn_id : "",
                                 s->pos, &s->saved, &why, &err);
    if (rc < 0) {
        LOG_ERROR("api", "%s: reading a stored connection: %s", s->auth.user_id, err ? err : "?");
        free(err);
        http_req_respond_retry(req, 503, 1, "M_UNKNOWN", "could not read the connection, try again");
        return HTTP_DONE;
    }
    if (rc == 0) {
        LOG_DEBUG("api", "%s: pos %lld: no usable stored connection (%s)", s->auth.user_id, (long long)s->pos, why);
        return respond_ended(api, req, s);
    }
    http_req_log_append(req, "restored=1");
    s->device_deadline = s->start_ms + DEVICE_WAIT_MS;
    return start_connection(api, req, s);
}

static enum http_action continue_connection(struct sync_api *api, struct http_req *req, struct req_state *s)
{
    s->conn = conn_map_get(api->conns, s->auth.user_id, s->auth.device_id, s->req.conn_id ? s->req.conn_id : "");
    if (!s->conn && s->msc4186) return resume_connection(api, req, s);
    if (!s->conn || conn_dead(s->conn)) return respond_ended(api, req, s);
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
    observe_setup(api, s);
    if (apply(req, s) < 0) return HTTP_DONE;
    return compute(api, req, s);
}

/* Resolves the token (possibly parking for whoami), then serves. */
static enum http_action authenticate(struct sync_api *api, struct http_req *req, struct req_state *s)
{
    switch (auth_step(api->auth, req, &s->auth)) {
    case AUTH_OK: break;
    case AUTH_PARKED: return park(s, req, PH_AUTH, s->auth.deadline);
    case AUTH_ANSWERED: return HTTP_DONE;
    }
    s->phase = PH_START;
    if (s->has_pos) {
        http_req_log_append(req, "user=%s device=%s", s->auth.user_id, s->auth.device_id);
        return continue_connection(api, req, s);
    }
    if (!s->device_deadline) {
        http_req_log_append(req, "user=%s device=%s", s->auth.user_id, s->auth.device_id);
        s->device_deadline = s->start_ms + DEVICE_WAIT_MS;
    }
    return start_connection(api, req, s);
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
    struct slice body = http_req_body(req);
    struct sync_req_error perr = {0};
    struct msc4186_top top = {0};
    if ((msc4186 ? msc4186_req_parse(&s->req, &s->msc4186, &top, body.p, body.len, &perr)
                 : sync_req_parse(&s->req, body.p, body.len, &perr)) != 0) {
        http_req_respond_error(req, 400, sync_req_errcode(perr.code), "%s", perr.message);
        return HTTP_DONE;
    }
    const char *presence = msc4186 ? http_req_query(req, "set_presence") : NULL;
    if (presence && !msc4186_presence_valid(presence)) {
        msc4186_top_release(&top);
        http_req_respond_error(req, 400, "M_INVALID_PARAM", "set_presence must be online, offline or unavailable");
        return HTTP_DONE;
    }
    /* The final text's body pos and timeout; the query's win when both are given. */
    if (!pos) pos = top.pos;
    /* MSC4186: no timeout answers at once. */
    s->timeout_ms = msc4186 ? 0 : DEFAULT_TIMEOUT_MS;
    if (!timeout && top.has_timeout) s->timeout_ms = top.timeout;
    if (timeout && !parse_i64(timeout, &s->timeout_ms)) {
        msc4186_top_release(&top);
        http_req_respond_error(req, 400, "M_INVALID_PARAM", "invalid timeout: must be an integer (milliseconds)");
        return HTTP_DONE;
    }
    if (s->timeout_ms < (msc4186 ? 0 : MIN_TIMEOUT_MS)) s->timeout_ms = msc4186 ? 0 : MIN_TIMEOUT_MS;
    if (s->timeout_ms > 24LL * 3600 * 1000) s->timeout_ms = 24LL * 3600 * 1000;
    if (pos && *pos) {
        if (!parse_i64(pos, &s->pos) || s->pos < 0) {
            http_req_respond_error(req, 400, "M_UNKNOWN_POS", "invalid pos: %.40s", pos);
            msc4186_top_release(&top);
            return HTTP_DONE;
        }
        s->has_pos = true;
    }
    msc4186_top_release(&top);
    s->canonical = msc4186 ? msc4186_req_canonical(s->msc4186) : sync_req_canonical_body(body.p, body.len);

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
    auth_req_init(&s->auth, token, s->has_pos, &s->wait);
    sync_api_tick(api);
    return authenticate(api, req, s);
}

static enum http_action handle(void *ud, struct http_req *req, bool msc4186)
{
    struct sync_api *api = ud;
    struct req_state *s = http_req_state(req);
    if (!s) return first_call(api, req, msc4186);
    count_parked(s, PH_START);
    switch (s->phase) {
    case PH_AUTH: return authenticate(api, req, s);
    case PH_WAIT_DEVICE:
    case PH_LOAD: return start_connection(api, req, s);
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
