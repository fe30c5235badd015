#include "ingest/ingest.h"

#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "base/hash.h"

#include "base/alloc.h"
#include "base/clock.h"
#include "base/log.h"
#include "cache/cache.h"
#include "ingest/accumulate.h"
#include "ingest/publish.h"
#include "obs/metrics.h"
#include "obs/trace.h"
#include "store/connstate.h"
#include "store/db.h"
#include "store/rooms.h"
#include "store/tokens.h"
#include "upstream/poller.h"

enum job_kind {
    JOB_RESULT,   /* apply a poller result */
    JOB_LOAD,     /* load a user into the cache */
    JOB_EXPIRED,  /* a token died */
};

struct job {
    enum job_kind kind;          /* what to do */
    struct poller_result *res;   /* JOB_RESULT */
    char *user_id;               /* JOB_LOAD, JOB_EXPIRED */
    char *device_id;             /* JOB_EXPIRED */
    char *token_hash;            /* JOB_EXPIRED */
    bool device_expired;         /* JOB_EXPIRED: it was the device's current token */
    struct job *next;            /* queue link */
};

enum dev_state { DEV_PENDING, DEV_READY, DEV_EXPIRED };

struct device {
    char *key;                   /* "user_id|device_id" */
    enum dev_state state;        /* readiness */
    char *expired_hash;          /* DEV_EXPIRED: the rejected token's hash */
    char *worked_hash;           /* the token whose older tokens were deleted last (ingest thread only) */
    struct acc_e2ee_memo memo;   /* last OTK counts / fallback types seen (ingest thread only) */
    int64_t expired_ms;          /* DEV_EXPIRED: when (monotonic ms) */
    struct device *x_prev;       /* DEV_EXPIRED: the expired list, oldest first */
    struct device *x_next;       /* DEV_EXPIRED: the expired list */
    UT_hash_handle hh;           /* uthash */
};

struct ingest {
    struct db_pool *db;          /* database */
    struct cache *cache;         /* caches to update */
    struct metrics *metrics;     /* may be NULL */
    struct poller_set *pollers;  /* whose results we process */
    pthread_t thread;            /* the ingest thread */
    pthread_t parser;            /* parses large bodies the poller handed out unparsed */
    pthread_mutex_t lock;        /* guards the queue, devices, hooks and stop */
    pthread_cond_t cond;         /* signalled on new jobs and stop */
    struct ingest_hooks hooks;   /* what to tell the layer above */
    struct job *head, *tail;     /* job queue; loads are put at the head */
    struct job *p_head, *p_tail; /* results waiting to be parsed (the parser's queue) */
    struct device *devices;      /* readiness per device */
    struct device *x_head;       /* expired devices, oldest first (forgotten after a while) */
    struct device *x_tail;       /* newest expired device */
    int n_expired;               /* length of that list */
    bool stop;                   /* the thread should exit */
    bool joined;                 /* ingest_stop joined the thread */
    int64_t last_purge_ms;       /* monotonic time of the last transaction-ID purge (ingest thread) */
    int preload_want;            /* ingest_preload_users' max while its list is not read yet, else 0 (lock) */
    int preload_max;             /* pre-loading stops once the cache holds this many users (ingest thread) */
    char **preload;              /* users to pre-load, the most recent first (ingest thread) */
    int n_preload;               /* entries in preload */
    int preload_next;            /* the next one to load */
    int preloaded;               /* users pre-loaded so far */
    bool preloading;             /* ingest_preload_users asked and the pre-load has not ended (lock) */
    pthread_cond_t preload_cond; /* signalled when the pre-load ends (CLOCK_MONOTONIC) */
};

/* Transaction IDs only matter while the sender's clients wait for their
 * echo: kept an hour, purged at most hourly (docs/behaviour.md, "Transaction IDs"). */
#define TXN_KEEP_MS (60 * 60 * 1000)

/* An expired device (its poller stopped) is forgotten this long after its
 * token was rejected, or sooner when more than INGEST_EXPIRED_MAX are
 * remembered, so devices that came once and went do not pile up. A device
 * not remembered reads as INGEST_DEVICE_STOPPED: a request for it verifies
 * its token again (the rejected token's row is deleted, so the homeserver
 * answers, and a rejected token still gets 401). */
#define INGEST_EXPIRED_KEEP_MS (5 * 60 * 1000)
#define INGEST_EXPIRED_MAX 10000

static char *dev_key(const char *user_id, const char *device_id)
{
    return xasprintf("%s|%s", user_id, device_id);
}

/* The device's entry, or NULL. Lock held. */
static struct device *find_device(struct ingest *ing, const char *user_id, const char *device_id)
{
    char *key = dev_key(user_id, device_id);
    struct device *d;
    HASH_FIND_STR(ing->devices, key, d);
    free(key);
    return d;
}

/* The device's entry, made (pending) when missing. Lock held. */
static struct device *get_device(struct ingest *ing, const char *user_id, const char *device_id)
{
    struct device *d = find_device(ing, user_id, device_id);
    if (d) return d;
    char *key = dev_key(user_id, device_id);
    d = xcalloc(1, sizeof *d);
    d->key = key;
    d->state = DEV_PENDING;
    HASH_ADD_KEYPTR(hh, ing->devices, d->key, strlen(d->key), d);
    return d;
}

/* Takes d off the expired list if it is on it. Lock held. */
static void expired_unlink(struct ingest *ing, struct device *d)
{
    if (d->state != DEV_EXPIRED) return;
    if (d->x_prev)
        d->x_prev->x_next = d->x_next;
    else
        ing->x_head = d->x_next;
    if (d->x_next)
        d->x_next->x_prev = d->x_prev;
    else
        ing->x_tail = d->x_prev;
    d->x_prev = d->x_next = NULL;
    ing->n_expired--;
}

static void device_free(struct device *d)
{
    acc_e2ee_memo_release(&d->memo);
    free(d->expired_hash);
    free(d->worked_hash);
    free(d->key);
    free(d);
}

/* Forgets expired devices past INGEST_EXPIRED_KEEP_MS or INGEST_EXPIRED_MAX.
 * Ingest thread only: process_result holds a device across its transaction
 * without the lock, and runs on this thread too. */
static void forget_expired(struct ingest *ing, int64_t now_ms)
{
    pthread_mutex_lock(&ing->lock);
    while (ing->x_head &&
           (ing->n_expired > INGEST_EXPIRED_MAX || now_ms - ing->x_head->expired_ms >= INGEST_EXPIRED_KEEP_MS)) {
        struct device *d = ing->x_head;
        expired_unlink(ing, d);
        HASH_DEL(ing->devices, d);
        device_free(d);
    }
    pthread_mutex_unlock(&ing->lock);
}

static struct ingest_hooks hooks_of(struct ingest *ing)
{
    pthread_mutex_lock(&ing->lock);
    struct ingest_hooks h = ing->hooks;
    pthread_mutex_unlock(&ing->lock);
    return h;
}

void ingest_set_hooks(struct ingest *ing, const struct ingest_hooks *h)
{
    pthread_mutex_lock(&ing->lock);
    ing->hooks = *h;
    pthread_mutex_unlock(&ing->lock);
}

static void device_changed(struct ingest *ing, const char *user_id, const char *device_id)
{
    struct ingest_hooks h = hooks_of(ing);
    if (h.on_device) h.on_device(h.ud, user_id, device_id);
}

static void push(struct ingest *ing, struct job *j, bool front)
{
    pthread_mutex_lock(&ing->lock);
    if (front) {
        j->next = ing->head;
        ing->head = j;
        if (!ing->tail) ing->tail = j;
    } else {
        if (ing->tail)
            ing->tail->next = j;
        else
            ing->head = j;
        ing->tail = j;
    }
    pthread_cond_broadcast(&ing->cond);
    pthread_mutex_unlock(&ing->lock);
}

static void job_free(struct job *j)
{
    if (!j) return;
    free(j->user_id);
    free(j->device_id);
    free(j->token_hash);
    free(j);
}

void ingest_on_response(void *ud, struct poller_result *res)
{
    struct ingest *ing = ud;
    struct job *j = xcalloc(1, sizeof *j);
    j->kind = JOB_RESULT;
    j->res = res;
    if (res->body) {
        push(ing, j, false);
        return;
    }
    /* A large body: parsed on the parser thread, so neither the poller's
     * transfers nor other devices' results wait for it. */
    pthread_mutex_lock(&ing->lock);
    if (ing->p_tail)
        ing->p_tail->next = j;
    else
        ing->p_head = j;
    ing->p_tail = j;
    pthread_cond_broadcast(&ing->cond);
    pthread_mutex_unlock(&ing->lock);
}

static void *run_parser(void *arg)
{
    struct ingest *ing = arg;
    for (;;) {
        pthread_mutex_lock(&ing->lock);
        while (!ing->p_head && !ing->stop) pthread_cond_wait(&ing->cond, &ing->lock);
        struct job *j = ing->stop ? NULL : ing->p_head;
        if (j) {
            ing->p_head = j->next;
            if (!ing->p_head) ing->p_tail = NULL;
            j->next = NULL;
        }
        pthread_mutex_unlock(&ing->lock);
        if (!j) break;
        char *why = NULL;
        if (poller_result_parse(j->res, &why) == 0) {
            push(ing, j, false);
            continue;
        }
        LOG_WARN("ingest", "%s/%s: /sync response not usable (will retry): %s", j->res->user_id, j->res->device_id,
                 why);
        free(why);
        if (ing->pollers)
            poller_set_done(ing->pollers, j->res, false);
        else
            poller_result_free(j->res);
        job_free(j);
    }
    return NULL;
}

void ingest_on_token_expired(void *ud, const char *user_id, const char *device_id, const char *token_hash,
                             bool device_expired)
{
    struct ingest *ing = ud;
    /* Readers must see the expiry before the device's connections end. */
    if (device_expired) ingest_device_expire(ing, user_id, device_id, token_hash);
    struct job *j = xcalloc(1, sizeof *j);
    j->kind = JOB_EXPIRED;
    j->device_expired = device_expired;
    j->user_id = xstrdup(user_id);
    j->device_id = xstrdup(device_id);
    j->token_hash = xstrdup(token_hash ? token_hash : "");
    push(ing, j, false);
}

void ingest_on_failure(void *ud, const char *user_id, const char *device_id, int http_status, int fail_count,
                       int64_t retry_ms, const char *why)
{
    struct ingest *ing = ud;
    LOG_DEBUG("poller", "%s/%s: /sync failed (status %d, %s); attempt %d, retrying in %lld ms", user_id, device_id,
             http_status, why, fail_count, (long long)retry_ms);
    char code[16];
    snprintf(code, sizeof code, "%d", http_status > 0 ? http_status : 0);
    if (ing->metrics) metrics_add_l(ing->metrics->poller_sync_failures, code, NULL, 1);
}

void ingest_device_expire(struct ingest *ing, const char *user_id, const char *device_id, const char *token_hash)
{
    pthread_mutex_lock(&ing->lock);
    struct device *d = get_device(ing, user_id, device_id);
    expired_unlink(ing, d);
    d->state = DEV_EXPIRED;
    free(d->expired_hash);
    d->expired_hash = xstrdup(token_hash ? token_hash : "");
    d->expired_ms = clock_mono_ms();
    d->x_prev = ing->x_tail;
    if (ing->x_tail)
        ing->x_tail->x_next = d;
    else
        ing->x_head = d;
    ing->x_tail = d;
    ing->n_expired++;
    pthread_mutex_unlock(&ing->lock);
    device_changed(ing, user_id, device_id);
}

void ingest_device_pending(struct ingest *ing, const char *user_id, const char *device_id)
{
    pthread_mutex_lock(&ing->lock);
    struct device *d = get_device(ing, user_id, device_id);
    expired_unlink(ing, d);
    d->state = DEV_PENDING;
    free(d->expired_hash);
    d->expired_hash = NULL;
    pthread_mutex_unlock(&ing->lock);
}

bool ingest_device_ready(struct ingest *ing, const char *user_id, const char *device_id)
{
    return ingest_device_state(ing, user_id, device_id, NULL) == INGEST_DEVICE_READY;
}

enum ingest_device_state ingest_device_state(struct ingest *ing, const char *user_id, const char *device_id,
                                             const char *token_hash)
{
    char *key = dev_key(user_id, device_id);
    pthread_mutex_lock(&ing->lock);
    struct device *d;
    HASH_FIND_STR(ing->devices, key, d);
    enum ingest_device_state st = d ? INGEST_DEVICE_PENDING : INGEST_DEVICE_STOPPED;
    if (d && d->state == DEV_READY) st = INGEST_DEVICE_READY;
    if (d && d->state == DEV_EXPIRED)
        st = token_hash && strcmp(d->expired_hash, token_hash) != 0 ? INGEST_DEVICE_STOPPED : INGEST_DEVICE_EXPIRED;
    pthread_mutex_unlock(&ing->lock);
    free(key);
    return st;
}

int ingest_pending_devices(struct ingest *ing)
{
    int n = 0;
    pthread_mutex_lock(&ing->lock);
    for (struct device *d = ing->devices; d; d = d->hh.next) n += d->state == DEV_PENDING;
    pthread_mutex_unlock(&ing->lock);
    return n;
}

void ingest_load_user_async(struct ingest *ing, const char *user_id)
{
    struct job *j = xcalloc(1, sizeof *j);
    j->kind = JOB_LOAD;
    j->user_id = xstrdup(user_id);
    push(ing, j, true);
}

/* ---- jobs ---- */

static int load_user(struct ingest *ing, const char *user_id)
{
    if (cache_user_loaded(ing->cache, user_id)) return 0;
    char *err = NULL;
    PGconn *c = db_acquire(ing->db, 30000, &err);
    if (!c) {
        LOG_ERROR("ingest", "loading %s: %s", user_id, err);
        free(err);
        return -1;
    }
    int rc = -1;
    struct store_user_room *rooms = NULL;
    struct store_room *metas = NULL;
    const char **missing = NULL;
    const char **ids = NULL;
    int n_rooms = 0, n_metas = 0;
    char *m_direct = NULL, *ignored = NULL;
    int64_t pos = 0;
    if (store_max_nid(c, &pos, &err) < 0 || store_user_rooms(c, user_id, &rooms, &n_rooms, &err) < 0 ||
        store_account_data_get(c, user_id, "", "m.direct", &m_direct, &err) < 0 ||
        store_account_data_get(c, user_id, "", "m.ignored_user_list", &ignored, &err) < 0)
        goto out;
    ids = xcalloc((size_t)(n_rooms ? n_rooms : 1), sizeof *ids);
    for (int i = 0; i < n_rooms; i++) ids[i] = rooms[i].room_id;
    int n_missing = cache_missing_rooms(ing->cache, ids, n_rooms, &missing);
    if (n_missing && store_rooms_get(c, missing, n_missing, &metas, &n_metas, &err) < 0) goto out;
    db_release(ing->db, c);
    c = NULL;
    /* No events can be ingested between the reads above and this install:
     * this thread is the only one that ingests. */
    cache_install_user(ing->cache, user_id, rooms, n_rooms, metas, n_metas, m_direct, ignored, pos);
    LOG_DEBUG("ingest", "loaded %s: %d rooms", user_id, n_rooms);
    rc = 0;
out:
    if (rc < 0) {
        LOG_ERROR("ingest", "loading %s: %s", user_id, err ? err : "?");
    }
    if (c) db_release(ing->db, c);
    free(err);
    for (int i = 0; i < n_rooms; i++) store_user_room_release(&rooms[i]);
    free(rooms);
    for (int i = 0; i < n_metas; i++) store_room_release(&metas[i]);
    free(metas);
    free(missing);
    free(ids);
    free(m_direct);
    free(ignored);
    return rc;
}


static void observe(struct ingest *ing, struct poller_result *res, struct acc_result *ar, double secs)
{
    if (!ing->metrics) return;
    metrics_observe_l(ing->metrics->poller_process_duration_secs, res->initial ? "1" : "0", res->first ? "1" : "0",
                      secs);
    struct {
        const char *name;
        size_t n;
    } payloads[] = {
        {"V2Accumulate", 0}, {"V2UnreadCounts", ar->n_unread}, {"V2InviteRoom", ar->n_invites},
        {"V2LeaveRoom", ar->n_leaves}, {"V2DeviceMessages", ar->n_to_device ? 1 : 0},
        {"V2AccountData", ar->n_account_data ? 1 : 0}, {"V2DeviceData", ar->device_data_changed ? 1 : 0},
        {"V2Typing", (size_t)ar->n_typing}, {"V2Receipt", (size_t)ar->n_receipts}, {"V2InvalidateRoom", 0},
    };
    for (size_t i = 0; i < ar->n_rooms; i++) {
        if (ar->rooms[i].n_events) payloads[0].n++;
        if (ar->rooms[i].state_reset) payloads[9].n++;
    }
    for (size_t i = 0; i < sizeof payloads / sizeof payloads[0]; i++)
        if (payloads[i].n) metrics_add_l(ing->metrics->poller_num_payloads, payloads[i].name, NULL, (double)payloads[i].n);
    /* Timelines of joined and left rooms; gappy state of joined rooms only. */
    static const char *const sections[] = {"join", "leave"};
    for (int k = 0; k < 2; k++) {
        json_t *rooms = json_object_get(json_object_get(res->body, "rooms"), sections[k]);
        const char *rid;
        json_t *sec;
        json_object_foreach(rooms, rid, sec)
        {
            json_t *tl = json_object_get(sec, "timeline");
            json_t *evs = json_object_get(tl, "events");
            bool limited = json_is_true(json_object_get(tl, "limited"));
            if (json_is_array(evs))
                metrics_observe_l(ing->metrics->poller_timeline_size, limited ? "limited" : "unlimited", NULL,
                                  (double)json_array_size(evs));
            json_t *st = json_object_get(json_object_get(sec, "state"), "events");
            if (k == 0 && limited && json_is_array(st) && json_array_size(st))
                metrics_observe(ing->metrics->poller_gappy_state_size, (double)json_array_size(st));
        }
    }
}

/* The first stored response polled with a token makes the device's older
 * tokens superseded: their rows go, and the layer above forgets them. */
static void forget_older_tokens(struct ingest *ing, PGconn *c, struct poller_result *res, struct device *d)
{
    if (!res->token_hash || (d->worked_hash && strcmp(d->worked_hash, res->token_hash) == 0)) return;
    char **old = NULL, *err = NULL;
    int n = 0;
    if (store_tokens_delete_older(c, res->user_id, res->device_id, res->token_hash, &old, &n, &err) < 0) {
        LOG_WARN("ingest", "%s/%s: deleting superseded tokens failed (retried next poll): %s", res->user_id,
                 res->device_id, err ? err : "?");
        free(err);
        return;
    }
    free(d->worked_hash);
    d->worked_hash = xstrdup(res->token_hash);
    if (n) {
        LOG_INFO("ingest", "%s/%s: a newer token works; forgot %d older token%s", res->user_id, res->device_id, n,
                 n == 1 ? "" : "s");
        struct ingest_hooks h = hooks_of(ing);
        if (h.on_superseded)
            h.on_superseded(h.ud, res->user_id, res->device_id, res->token_hash, (const char *const *)old, n);
    }
    for (int i = 0; i < n; i++) free(old[i]);
    free(old);
}

static void process_result(struct ingest *ing, struct poller_result *res)
{
    double t0 = clock_mono_secs();
    char *err = NULL;
    bool ok = false, trim = false, known = true;
    struct acc_result ar = {0};
    struct device spare = {0}; /* stands in for a forgotten device's entry */
    PGconn *c = db_acquire(ing->db, 10000, &err);
    if (!c) goto out;
    /* Every polled device has an entry (ingest_device_pending runs before its
     * poller starts); one forgotten since (its token died and this result
     * waited long in the queue) is stored with a throwaway entry and not made
     * ready again, since no poller runs for it. */
    pthread_mutex_lock(&ing->lock);
    struct device *d = find_device(ing, res->user_id, res->device_id);
    pthread_mutex_unlock(&ing->lock);
    known = d != NULL;
    if (!d) d = &spare;
    /* d->memo is only touched on this thread. */
    if (acc_apply(c, res->user_id, res->device_id, res->body, res->next_batch, &d->memo, &ar, &err) < 0) goto out;
    if (ingest_publish(ing->cache, c, res, &ar) < 0) {
        /* Stored but not published: connections may miss this update; they
         * catch up on their next snapshot. Do not re-fetch (it is stored). */
        LOG_ERROR("ingest", "%s/%s: stored a response but could not update the caches", res->user_id,
                  res->device_id);
    }
    ok = true;
    forget_older_tokens(ing, c, res, d);
    LOG_DEBUG("ingest", "%s/%s: %d new events, %zu rooms, %d to-device", res->user_id, res->device_id, ar.n_events,
              ar.n_rooms, ar.n_to_device);
    observe(ing, res, &ar, clock_mono_secs() - t0);
    /* A big initial sync leaves freed memory in malloc's arenas: hand it back. */
    if (ar.n_events > 5000) trim = true;
out:
    if (c) db_release(ing->db, c);
    TRACE_EMIT(NULL, &res->trace, t0, "ingest", TRACE_INTERNAL, ok ? NULL : "could not store the response",
               TRACE_ATTRS(TRACE_STR("user_id", res->user_id), TRACE_STR("device_id", res->device_id),
                           TRACE_INT("rooms", ar.n_rooms), TRACE_INT("events", ar.n_events),
                           TRACE_INT("to_device", ar.n_to_device)));
    if (!ok) LOG_ERROR("ingest", "%s/%s: could not store a response (will retry): %s", res->user_id,
                       res->device_id, err ? err : "?");
    free(err);
    acc_result_release(&ar);
    if (!known) {
        acc_e2ee_memo_release(&spare.memo);
        free(spare.worked_hash);
    }
    if (ok && known) {
        /* A response polled with another token than the rejected one proves
         * the device's new poller works. */
        pthread_mutex_lock(&ing->lock);
        struct device *dv = get_device(ing, res->user_id, res->device_id);
        bool changed = dv->state == DEV_PENDING ||
                       (dv->state == DEV_EXPIRED && res->token_hash && strcmp(dv->expired_hash, res->token_hash) != 0);
        if (changed) {
            expired_unlink(ing, dv);
            dv->state = DEV_READY;
            free(dv->expired_hash);
            dv->expired_hash = NULL;
        }
        pthread_mutex_unlock(&ing->lock);
        if (changed) device_changed(ing, res->user_id, res->device_id);
    }
    if (trim) {
        /* Free the parsed body here, then give the freed memory back. */
        json_decref(res->body);
        res->body = NULL;
        alloc_trim();
    }
    if (ing->pollers)
        poller_set_done(ing->pollers, res, ok);
    else
        poller_result_free(res);
}

static void process_expired(struct ingest *ing, struct job *j)
{
    LOG_INFO("ingest", "%s/%s: the homeserver rejected %s token; forgetting it", j->user_id, j->device_id,
             j->device_expired ? "the device's" : "an older");
    char *err = NULL;
    PGconn *c = db_acquire(ing->db, 10000, &err);
    if (c) {
        if (store_token_delete(c, j->token_hash, &err) < 0) LOG_ERROR("ingest", "deleting token: %s", err);
        free(err);
        err = NULL;
        /* The device's stored connections end with its token (it cannot continue them). */
        if (j->device_expired && store_conn_delete_device(c, j->user_id, j->device_id, &err) < 0)
            LOG_ERROR("ingest", "deleting stored connections: %s", err);
        db_release(ing->db, c);
    } else {
        LOG_ERROR("ingest", "deleting token: %s", err);
    }
    free(err);
    /* The device was marked expired and its connections ended when the poller
     * reported it (ingest_on_token_expired): doing it again here, later,
     * would end what a new token of the device started meanwhile. */
}

static void maybe_purge(struct ingest *ing)
{
    int64_t now = clock_mono_ms();
    if (ing->last_purge_ms && now - ing->last_purge_ms < TXN_KEEP_MS) return;
    ing->last_purge_ms = now;
    char *err = NULL;
    PGconn *pg = db_acquire(ing->db, 5000, &err);
    int64_t n = pg ? store_txn_ids_purge(pg, clock_wall_ms() - TXN_KEEP_MS, &err) : -1;
    /* Stored connections past their idle expiry (docs/behaviour.md, "Connections across restarts"). */
    int64_t nc = n >= 0 ? store_conn_purge(pg, clock_wall_ms() - STORE_CONN_KEEP_MS, &err) : -1;
    if (pg) db_release(ing->db, pg);
    if (n < 0 || nc < 0) {
        LOG_WARN("ingest", "purging old transaction IDs or connections failed (retried later): %s", err ? err : "?");
        free(err);
    } else if (n > 0 || nc > 0) {
        LOG_DEBUG("ingest", "purged %lld old transaction IDs, %lld expired connections", (long long)n, (long long)nc);
    }
}

void ingest_preload_users(struct ingest *ing, int max)
{
    if (max <= 0) return;
    pthread_mutex_lock(&ing->lock);
    ing->preload_want = max;
    ing->preloading = true;
    pthread_cond_broadcast(&ing->cond);
    pthread_mutex_unlock(&ing->lock);
}

static void preload_end(struct ingest *ing, const char *why)
{
    LOG_INFO("ingest", "pre-loaded %d of %d users with a recent stored connection%s", ing->preloaded, ing->n_preload,
             why);
    for (int i = 0; i < ing->n_preload; i++) free(ing->preload[i]);
    free(ing->preload);
    ing->preload = NULL;
    ing->n_preload = ing->preload_next = 0;
    pthread_mutex_lock(&ing->lock);
    ing->preloading = false;
    pthread_cond_broadcast(&ing->preload_cond);
    pthread_mutex_unlock(&ing->lock);
}

bool ingest_preload_wait(struct ingest *ing, int64_t budget_ms)
{
    struct timespec ts = clock_abs_in(CLOCK_MONOTONIC, budget_ms);
    pthread_mutex_lock(&ing->lock);
    while (ing->preloading && !ing->stop && pthread_cond_timedwait(&ing->preload_cond, &ing->lock, &ts) == 0) {
    }
    bool done = !ing->preloading;
    pthread_mutex_unlock(&ing->lock);
    return done;
}

/* Reads the list to pre-load (want > 0), or loads its next user. Ingest
 * thread, nothing else queued. */
static void preload_step(struct ingest *ing, int want)
{
    if (want > 0) {
        char *err = NULL;
        PGconn *c = db_acquire(ing->db, 10000, &err);
        if (!c || store_conn_recent_users(c, clock_wall_ms() - STORE_CONN_KEEP_MS, want, &ing->preload,
                                          &ing->n_preload, &err) < 0)
            LOG_WARN("ingest", "not pre-loading users: %s", err ? err : "?");
        if (c) db_release(ing->db, c);
        free(err);
        ing->preload_max = want;
        if (ing->n_preload == 0) preload_end(ing, "");
        return;
    }
    struct cache_stats st;
    cache_get_stats(ing->cache, &st);
    if (st.users >= ing->preload_max) {
        preload_end(ing, " (the cache is full)");
        return;
    }
    const char *user_id = ing->preload[ing->preload_next++];
    if (!cache_user_loaded(ing->cache, user_id) && load_user(ing, user_id) == 0) {
        ing->preloaded++;
        if (ing->metrics) metrics_add(ing->metrics->cache_preloaded_users, 1);
    }
    if (ing->preload_next == ing->n_preload) preload_end(ing, "");
}

static void *run(void *arg)
{
    struct ingest *ing = arg;
    for (;;) {
        pthread_mutex_lock(&ing->lock);
        while (!ing->head && !ing->stop && !ing->preload_want && ing->preload_next == ing->n_preload)
            pthread_cond_wait(&ing->cond, &ing->lock);
        if (ing->stop) {
            pthread_mutex_unlock(&ing->lock);
            break;
        }
        struct job *j = ing->head;
        int want = 0;
        if (j) {
            ing->head = j->next;
            if (!ing->head) ing->tail = NULL;
        } else {
            want = ing->preload_want;
            ing->preload_want = 0;
        }
        pthread_mutex_unlock(&ing->lock);
        if (!j) {
            /* Lowest priority: only when no result or request load waits. */
            preload_step(ing, want);
            continue;
        }
        switch (j->kind) {
        case JOB_RESULT: process_result(ing, j->res); break;
        case JOB_LOAD: {
            int rc = load_user(ing, j->user_id);
            struct ingest_hooks h = hooks_of(ing);
            if (h.on_loaded) h.on_loaded(h.ud, j->user_id, rc);
            break;
        }
        case JOB_EXPIRED: process_expired(ing, j); break;
        }
        job_free(j);
        maybe_purge(ing);
        forget_expired(ing, clock_mono_ms());
    }
    return NULL;
}

int ingest_new(struct ingest **out, struct db_pool *db, struct cache *cache, struct metrics *m)
{
    struct ingest *ing = xcalloc(1, sizeof *ing);
    ing->db = db;
    ing->cache = cache;
    ing->metrics = m;
    pthread_mutex_init(&ing->lock, NULL);
    pthread_cond_init(&ing->cond, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&ing->preload_cond, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&ing->thread, NULL, run, ing) != 0) {
        free(ing);
        return -1;
    }
    if (pthread_create(&ing->parser, NULL, run_parser, ing) != 0) {
        pthread_mutex_lock(&ing->lock);
        ing->stop = true;
        pthread_cond_broadcast(&ing->cond);
        pthread_mutex_unlock(&ing->lock);
        pthread_join(ing->thread, NULL);
        free(ing);
        return -1;
    }
    *out = ing;
    return 0;
}

void ingest_set_pollers(struct ingest *ing, struct poller_set *ps)
{
    ing->pollers = ps;
}

void ingest_stop(struct ingest *ing)
{
    if (!ing) return;
    pthread_mutex_lock(&ing->lock);
    bool joined = ing->joined;
    ing->stop = true;
    ing->joined = true;
    pthread_cond_broadcast(&ing->cond);
    pthread_cond_broadcast(&ing->preload_cond);
    pthread_mutex_unlock(&ing->lock);
    if (!joined) {
        pthread_join(ing->thread, NULL);
        pthread_join(ing->parser, NULL);
    }
}

void ingest_free(struct ingest *ing)
{
    if (!ing) return;
    ingest_stop(ing);
    for (struct job *j = ing->p_head, *next; j; j = next) {
        next = j->next;
        poller_result_free(j->res);
        job_free(j);
    }
    for (struct job *j = ing->head, *next; j; j = next) {
        next = j->next;
        if (j->kind == JOB_RESULT) poller_result_free(j->res);
        job_free(j);
    }
    for (int i = 0; i < ing->n_preload; i++) free(ing->preload[i]);
    free(ing->preload);
    struct device *d, *t;
    HASH_ITER(hh, ing->devices, d, t)
    {
        HASH_DEL(ing->devices, d);
        device_free(d);
    }
    pthread_mutex_destroy(&ing->lock);
    pthread_cond_destroy(&ing->cond);
    pthread_cond_destroy(&ing->preload_cond);
    free(ing);
}
