#include "sync/conn.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uthash.h>

#include "base/alloc.h"
#include "base/clock.h"
#include "base/log.h"
#include "cache/cache.h"
#include "http/server.h"
#include "obs/metrics.h"
#include "store/db.h"
#include "sync/ext.h"
#include "sync/list.h"
#include "sync/ops.h"
#include "sync/room.h"

/* A user whose member event this connection has sent for a room. */
struct lazy_member {
    char *user_id;         /* owned; hash key */
    UT_hash_handle hh;     /* in croom.lazy_sent */
};

/* The connection's view of one of the user's rooms. */
struct croom {
    struct user_room *ur;  /* the cache's view (ref); ur->room_id is the hash key */
    char *name;            /* computed name (heap), built on first use */
    bool lazy;             /* last snapshot asked for lazy members: live senders get theirs */
    struct lazy_member *lazy_sent; /* members already sent (never cleared, §11.2) */
    int64_t ts;            /* timestamp last sent under bump_event_types (§11.7) */
    bool in_block;         /* part of conn.room_block, not allocated alone */
    UT_hash_handle hh;     /* in conn.rooms */
};

/* A room's recency in a list with bump_event_types (§12.1). */
struct bump_ts {
    char *room_id;         /* the room (owned; hash key) */
    int64_t ts;            /* origin_server_ts of its newest bumping event */
    UT_hash_handle hh;     /* in clist.bump */
};

/* A list's sorted rooms. */
struct clist {
    char *key;             /* list key (owned) */
    struct sync_list *l;   /* the rooms */
    struct bump_ts *bump;  /* room -> recency, for lists with bump_event_types */
    UT_hash_handle hh;     /* in conn.lists */
};

/* The children of a space named in a `spaces` filter (§13). */
struct cspace {
    char *space_id;                /* the space (owned; hash key) */
    struct sync_roomset children;  /* state keys of its m.space.child events with an array `via` */
    UT_hash_handle hh;             /* in conn.spaces */
};

struct conn {
    char *key;                     /* "user|device|conn_id" (map key) */
    char *user_id;                 /* owner */
    char *device_id;               /* device */
    char *conn_id;                 /* client-chosen id ("" allowed) */
    atomic_int refs;               /* map + requests in flight */
    struct sync_ctx *ctx;          /* shared services */
    pthread_mutex_t req_lock;      /* serialises requests of this connection */
    /* --- under req_lock --- */
    bool loaded;                   /* the user's rooms were loaded and the listener registered */
    struct sync_req muxed;         /* sticky request state */
    struct ext_state ext;          /* the extensions' sticky state */
    struct clist *lists;           /* key -> sorted rooms */
    struct croom *rooms;           /* room_id -> view */
    struct croom *room_block;      /* the views load_rooms made, one allocation */
    struct cspace *spaces;         /* spaces named by filters -> their children, kept live */
    int64_t pos;                   /* stream position the view reflects */
    int64_t next_pos;              /* last pos handed out */
    int64_t last_req_pos;          /* pos of the last processed request (0 = none) */
    char *last_req_body;           /* its canonical body */
    struct conn_buffered buffered[CONN_MAX_BUFFERED]; /* unacknowledged responses, oldest first */
    int n_buffered;                /* entries used */
    struct cache_listener listener; /* registered with the cache while loaded */
    /* --- under q_lock --- */
    pthread_mutex_t q_lock;        /* guards the fields below */
    struct cache_update **queue;   /* live updates not processed yet */
    int q_n;                       /* entries */
    int q_cap;                     /* allocated */
    bool dead;                     /* ended; requests get M_UNKNOWN_POS */
    enum conn_end_reason end_reason; /* why, once dead */
    struct http_req *waiter;       /* parked request (ref'd) or NULL */
    int64_t cancels;               /* times a parked request was cancelled by a newer one */
    int64_t last_used_ms;          /* for idle expiry */
    UT_hash_handle hh;             /* in conn_map */
};

struct conn_map {
    pthread_mutex_t lock;          /* guards conns */
    struct conn *conns;            /* key -> connection (one ref each) */
    struct sync_ctx *ctx;          /* shared services */
};

struct resp_list {
    char *key;                     /* list key */
    struct sync_ops ops;           /* ops of this response */
    UT_hash_handle hh;             /* in conn_resp.lists */
};

/* One of the user's own events waiting for its transaction ID (§11.1). */
struct held_txn {
    char *event_id;                /* owned */
    int64_t until_ms;              /* monotonic time after which the response stops waiting */
};

/* An own event this device's upstream sync showed, and its transaction ID. */
struct txn_seen {
    char *event_id;                /* owned; hash key */
    char *txn_id;                  /* owned, or NULL: sent from another device */
    UT_hash_handle hh;             /* in conn_resp.txns */
};

struct conn_resp {
    struct resp_list *lists;       /* key -> ops */
    struct resp_room *rooms;       /* room_id -> room object */
    struct ext_resp *ext;          /* extension data */
    bool initial;                  /* the connection's first request */
    struct held_txn *held;         /* own events this device's sync has not shown yet */
    int n_held;                    /* entries */
    struct txn_seen *txns;         /* own events this device's sync showed (CU_TXN) */
};

/* How long a response waits for the sender device's own sync to show an
 * event's transaction ID (internals §2.9). */
#define CONN_TXN_WAIT_MS 1000

/* ---- lifecycle ---- */

static void on_update(void *ud, struct cache_update *u);
static void croom_del(struct conn *c, struct croom *cr);

static struct conn *conn_new(struct sync_ctx *ctx, const char *user_id, const char *device_id, const char *conn_id)
{
    struct conn *c = xcalloc(1, sizeof *c);
    c->key = xasprintf("%s|%s|%s", user_id, device_id, conn_id);
    c->user_id = xstrdup(user_id);
    c->device_id = xstrdup(device_id);
    c->conn_id = xstrdup(conn_id);
    atomic_init(&c->refs, 1);
    c->ctx = ctx;
    pthread_mutex_init(&c->req_lock, NULL);
    pthread_mutex_init(&c->q_lock, NULL);
    sync_req_init(&c->muxed);
    ext_state_init(&c->ext);
    c->listener = (struct cache_listener){.on_update = on_update, .ud = c, .device_id = c->device_id};
    c->last_used_ms = clock_mono_ms();
    return c;
}

/* Forgets a list's per-room recency under bump_event_types. */
static void bump_clear(struct clist *l)
{
    struct bump_ts *b, *bt;
    HASH_ITER(hh, l->bump, b, bt)
    {
        HASH_DEL(l->bump, b);
        free(b->room_id);
        free(b);
    }
}

static void clist_free(struct clist *l)
{
    bump_clear(l);
    sync_list_free(l->l);
    free(l->key);
    free(l);
}

static void conn_destroy(struct conn *c)
{
    struct clist *l, *lt;
    HASH_ITER(hh, c->lists, l, lt)
    {
        HASH_DEL(c->lists, l);
        clist_free(l);
    }
    struct cspace *sp, *spt;
    HASH_ITER(hh, c->spaces, sp, spt)
    {
        HASH_DEL(c->spaces, sp);
        sync_roomset_release(&sp->children);
        free(sp->space_id);
        free(sp);
    }
    struct croom *r, *rt;
    HASH_ITER(hh, c->rooms, r, rt) croom_del(c, r);
    free(c->room_block);
    for (int i = 0; i < c->q_n; i++) cache_update_unref(c->queue[i]);
    free(c->queue);
    for (int i = 0; i < c->n_buffered; i++) free(c->buffered[i].body);
    sync_req_release(&c->muxed);
    ext_state_release(&c->ext);
    free(c->last_req_body);
    pthread_mutex_destroy(&c->req_lock);
    pthread_mutex_destroy(&c->q_lock);
    free(c->key);
    free(c->user_id);
    free(c->device_id);
    free(c->conn_id);
    free(c);
}

void conn_unref(struct conn *c)
{
    if (!c) return;
    int before = atomic_fetch_sub(&c->refs, 1);
    CHECK(before > 0);
    if (before == 1) conn_destroy(c);
}

/* Marks the connection dead, unregisters it from the cache and wakes its
 * parked request. The caller must not hold the cache lock. */
static void conn_end(struct conn *c)
{
    pthread_mutex_lock(&c->q_lock);
    bool was_dead = c->dead;
    c->dead = true;
    struct http_req *w = c->waiter;
    c->waiter = NULL;
    pthread_mutex_unlock(&c->q_lock);
    if (w) {
        http_req_wake(w);
        http_req_unref(w);
    }
    if (!was_dead) cache_unlisten(c->ctx->cache, c->user_id, &c->listener);
}

struct conn_map *conn_map_new(struct sync_ctx *ctx)
{
    struct conn_map *m = xcalloc(1, sizeof *m);
    pthread_mutex_init(&m->lock, NULL);
    m->ctx = ctx;
    return m;
}

void conn_map_free(struct conn_map *m)
{
    if (!m) return;
    struct conn *c, *t;
    HASH_ITER(hh, m->conns, c, t)
    {
        HASH_DEL(m->conns, c);
        conn_end(c);
        conn_unref(c);
    }
    pthread_mutex_destroy(&m->lock);
    free(m);
}

static void set_gauge(struct conn_map *m)
{
    if (m->ctx->metrics) metrics_set(m->ctx->metrics->api_num_active_conns, (double)HASH_COUNT(m->conns));
}

struct conn *conn_map_get(struct conn_map *m, const char *user_id, const char *device_id, const char *conn_id)
{
    char *key = xasprintf("%s|%s|%s", user_id, device_id, conn_id);
    pthread_mutex_lock(&m->lock);
    struct conn *c;
    HASH_FIND_STR(m->conns, key, c);
    if (c) {
        atomic_fetch_add(&c->refs, 1);
        pthread_mutex_lock(&c->q_lock);
        c->last_used_ms = clock_mono_ms();
        pthread_mutex_unlock(&c->q_lock);
    }
    pthread_mutex_unlock(&m->lock);
    free(key);
    return c;
}

struct conn *conn_map_create(struct conn_map *m, const char *user_id, const char *device_id, const char *conn_id,
                             struct conn **replaced)
{
    struct conn *c = conn_new(m->ctx, user_id, device_id, conn_id);
    pthread_mutex_lock(&m->lock);
    struct conn *old;
    HASH_FIND_STR(m->conns, c->key, old);
    if (old) HASH_DEL(m->conns, old);
    /* A device keeps at most CONN_MAX_PER_DEVICE connections: beyond that the
     * least recently used one ends, so no client can grow memory without
     * bound by inventing conn_ids. */
    struct conn *evicted = NULL;
    size_t plen = strlen(c->key) - strlen(conn_id);
    int n = 0;
    struct conn *oldest = NULL, *oldest_idle = NULL, *it, *tmp;
    HASH_ITER(hh, m->conns, it, tmp)
    {
        if (strncmp(it->key, c->key, plen) != 0) continue;
        n++;
        if (!oldest || it->last_used_ms < oldest->last_used_ms) oldest = it;
        /* Only the map holds an idle one: no request of it is in flight. */
        if (atomic_load(&it->refs) == 1 && (!oldest_idle || it->last_used_ms < oldest_idle->last_used_ms))
            oldest_idle = it;
    }
    /* Never cut a request short when an idle connection can go instead. */
    if (oldest_idle) oldest = oldest_idle;
    if (n >= CONN_MAX_PER_DEVICE && oldest) {
        HASH_DEL(m->conns, oldest);
        evicted = oldest;
    }
    HASH_ADD_KEYPTR(hh, m->conns, c->key, strlen(c->key), c);
    atomic_fetch_add(&c->refs, 1);
    set_gauge(m);
    pthread_mutex_unlock(&m->lock);
    *replaced = NULL;
    if (old) {
        conn_end(old);
        *replaced = old;
    }
    if (evicted) {
        LOG_INFO("sync", "%s: more than %d connections; ending the least recently used", user_id,
                 CONN_MAX_PER_DEVICE);
        conn_end(evicted);
        conn_unref(evicted);
    }
    return c;
}

/* Ends the connections of a private list (linked through hh.next) taken
 * out of the map, dropping the map's references. */
static void end_all(struct conn *ended)
{
    while (ended) {
        struct conn *next = ended->hh.next;
        conn_end(ended);
        conn_unref(ended);
        ended = next;
    }
}

void conn_map_end_device(struct conn_map *m, const char *user_id, const char *device_id)
{
    char *prefix = xasprintf("%s|%s|", user_id, device_id);
    size_t plen = strlen(prefix);
    struct conn *ended = NULL;
    pthread_mutex_lock(&m->lock);
    struct conn *c, *t;
    HASH_ITER(hh, m->conns, c, t)
    {
        if (strncmp(c->key, prefix, plen) != 0) continue;
        HASH_DEL(m->conns, c);
        pthread_mutex_lock(&c->q_lock);
        if (!c->dead) c->end_reason = CONN_END_TOKEN;
        pthread_mutex_unlock(&c->q_lock);
        c->hh.next = ended; /* reuse the link for a private list */
        ended = c;
    }
    set_gauge(m);
    pthread_mutex_unlock(&m->lock);
    end_all(ended);
    free(prefix);
}

int conn_map_expire(struct conn_map *m, int64_t now_ms)
{
    struct conn *ended = NULL;
    int n = 0;
    pthread_mutex_lock(&m->lock);
    struct conn *c, *t;
    HASH_ITER(hh, m->conns, c, t)
    {
        pthread_mutex_lock(&c->q_lock);
        bool idle = now_ms - c->last_used_ms > CONN_IDLE_MS && !c->waiter;
        bool dead = c->dead;
        pthread_mutex_unlock(&c->q_lock);
        if (!idle && !dead) continue;
        HASH_DEL(m->conns, c);
        c->hh.next = ended;
        ended = c;
        n++;
    }
    set_gauge(m);
    pthread_mutex_unlock(&m->lock);
    end_all(ended);
    if (n && m->ctx->metrics) metrics_add(m->ctx->metrics->api_expiry_conn_timed_out, n);
    return n;
}

int conn_map_count(struct conn_map *m)
{
    pthread_mutex_lock(&m->lock);
    int n = (int)HASH_COUNT(m->conns);
    pthread_mutex_unlock(&m->lock);
    return n;
}

void conn_lock(struct conn *c)
{
    pthread_mutex_lock(&c->req_lock);
}

void conn_unlock(struct conn *c)
{
    pthread_mutex_unlock(&c->req_lock);
}

void conn_abandon(struct conn *c)
{
    conn_end(c);
}

bool conn_dead(struct conn *c)
{
    pthread_mutex_lock(&c->q_lock);
    bool d = c->dead;
    pthread_mutex_unlock(&c->q_lock);
    return d;
}

enum conn_end_reason conn_end_reason(struct conn *c)
{
    pthread_mutex_lock(&c->q_lock);
    enum conn_end_reason r = c->end_reason;
    pthread_mutex_unlock(&c->q_lock);
    return r;
}

/* ---- the listener (ingest thread, cache lock held) ---- */

static void on_update(void *ud, struct cache_update *u)
{
    struct conn *c = ud;
    struct http_req *w = NULL;
    pthread_mutex_lock(&c->q_lock);
    if (!c->dead) {
        if (c->q_n >= CONN_MAX_QUEUE) {
            /* The client is not keeping up: end the connection rather than
             * hold unbounded memory or stall ingest. */
            LOG_WARN("sync", "%s: %d updates queued; ending the connection", c->user_id, c->q_n);
            c->dead = true;
            if (c->ctx->metrics) metrics_inc(c->ctx->metrics->api_expiry_conn_buffer_full);
        } else {
            if (c->q_n == c->q_cap) {
                c->q_cap = c->q_cap ? 2 * c->q_cap : 16;
                c->queue = xrealloc(c->queue, (size_t)c->q_cap * sizeof *c->queue);
            }
            c->queue[c->q_n++] = cache_update_ref(u);
        }
        w = c->waiter;
        c->waiter = NULL;
    }
    pthread_mutex_unlock(&c->q_lock);
    if (w) {
        http_req_wake(w);
        http_req_unref(w);
    }
}

bool conn_set_waiter(struct conn *c, struct http_req *req)
{
    pthread_mutex_lock(&c->q_lock);
    bool ok = !c->dead && c->q_n == 0;
    if (ok) {
        if (c->waiter && c->waiter != req) {
            http_req_wake(c->waiter);
            http_req_unref(c->waiter);
            c->waiter = NULL;
        }
        if (!c->waiter) {
            http_req_ref(req);
            c->waiter = req;
        }
    }
    pthread_mutex_unlock(&c->q_lock);
    return ok;
}

void conn_clear_waiter(struct conn *c, struct http_req *req)
{
    pthread_mutex_lock(&c->q_lock);
    bool mine = c->waiter == req;
    if (mine) c->waiter = NULL;
    pthread_mutex_unlock(&c->q_lock);
    if (mine) http_req_unref(req);
}

int64_t conn_cancels(struct conn *c)
{
    pthread_mutex_lock(&c->q_lock);
    int64_t n = c->cancels;
    pthread_mutex_unlock(&c->q_lock);
    return n;
}

void conn_cancel_waiter(struct conn *c)
{
    pthread_mutex_lock(&c->q_lock);
    struct http_req *w = c->waiter;
    c->waiter = NULL;
    if (w) c->cancels++;
    pthread_mutex_unlock(&c->q_lock);
    if (w) {
        http_req_wake(w);
        http_req_unref(w);
    }
}

/* ---- response bookkeeping ---- */

int64_t conn_last_req_pos(struct conn *c)
{
    return c->last_req_pos;
}

const char *conn_last_req_body(struct conn *c)
{
    return c->last_req_body;
}

bool conn_has_buffered(struct conn *c, int64_t pos)
{
    for (int i = 0; i < c->n_buffered; i++)
        if (c->buffered[i].pos == pos) return true;
    return false;
}

const struct conn_buffered *conn_buffered_after(struct conn *c, int64_t pos)
{
    int drop = 0;
    while (drop < c->n_buffered && c->buffered[drop].pos < pos) free(c->buffered[drop++].body);
    memmove(c->buffered, c->buffered + drop, (size_t)(c->n_buffered - drop) * sizeof *c->buffered);
    c->n_buffered -= drop;
    for (int i = 0; i < c->n_buffered; i++)
        if (c->buffered[i].pos > pos) return &c->buffered[i];
    return NULL;
}

/* ---- the response under construction ---- */

struct conn_resp *conn_resp_new(void)
{
    struct conn_resp *r = xcalloc(1, sizeof *r);
    r->ext = ext_resp_new();
    return r;
}

void conn_resp_free(struct conn_resp *r)
{
    if (!r) return;
    ext_resp_free(r->ext);
    struct resp_list *l, *lt;
    HASH_ITER(hh, r->lists, l, lt)
    {
        HASH_DEL(r->lists, l);
        sync_ops_release(&l->ops);
        free(l->key);
        free(l);
    }
    struct resp_room *rr, *rt;
    HASH_ITER(hh, r->rooms, rr, rt)
    {
        HASH_DEL(r->rooms, rr);
        resp_room_free(rr);
    }
    for (int i = 0; i < r->n_held; i++) free(r->held[i].event_id);
    free(r->held);
    struct txn_seen *t, *tt;
    HASH_ITER(hh, r->txns, t, tt)
    {
        HASH_DEL(r->txns, t);
        free(t->event_id);
        free(t->txn_id);
        free(t);
    }
    free(r);
}

int64_t conn_resp_hold_until(struct conn_resp *r)
{
    int64_t now = clock_mono_ms(), until = 0;
    for (int i = 0; i < r->n_held; i++)
        if (r->held[i].until_ms > now && r->held[i].until_ms > until) until = r->held[i].until_ms;
    return until;
}

/* An own message event is shown with its transaction ID once this device's
 * upstream sync has shown it (a CU_TXN, right after the event when this
 * device's poller stored it; later when another poller did): until then the
 * response waits, at most CONN_TXN_WAIT_MS. */
static void hold_for_txn(struct conn *c, struct conn_resp *r, const struct cache_update *u)
{
    const struct event *ev = u->ev;
    if (r->initial || ev->state_key || strcmp(ev->sender, c->user_id) != 0) return;
    struct txn_seen *t;
    HASH_FIND_STR(r->txns, ev->event_id, t);
    if (t) return;
    /* Only an event this response shows is worth waiting for. */
    struct resp_room *rr;
    HASH_FIND_STR(r->rooms, ev->room_id, rr);
    if (!rr || !rr->n_live || rr->live[rr->n_live - 1] != ev) return;
    r->held = xrealloc(r->held, (size_t)(r->n_held + 1) * sizeof *r->held);
    r->held[r->n_held++] = (struct held_txn){xstrdup(ev->event_id), clock_mono_ms() + CONN_TXN_WAIT_MS};
}

/* This device's sync showed these own events ([event ID, transaction ID or
 * null] pairs): remember their IDs and stop waiting for them. */
static void record_txns(struct conn_resp *r, const char *json)
{
    json_t *pairs = json_loads(json ? json : "[]", 0, NULL);
    size_t i;
    json_t *v;
    json_array_foreach(pairs, i, v)
    {
        json_t *id = json_array_get(v, 0), *txn = json_array_get(v, 1);
        if (!json_is_string(id)) continue;
        const char *eid = json_string_value(id);
        struct txn_seen *t;
        HASH_FIND_STR(r->txns, eid, t);
        if (!t) {
            t = xcalloc(1, sizeof *t);
            t->event_id = xstrdup(eid);
            HASH_ADD_KEYPTR(hh, r->txns, t->event_id, strlen(t->event_id), t);
        }
        if (json_is_string(txn)) {
            free(t->txn_id);
            t->txn_id = xstrdup(json_string_value(txn));
        }
        for (int k = 0; k < r->n_held; k++) {
            if (strcmp(r->held[k].event_id, eid) != 0) continue;
            free(r->held[k].event_id);
            r->held[k--] = r->held[--r->n_held];
        }
    }
    json_decref(pairs);
}

bool conn_resp_has_data(const struct conn_resp *r)
{
    if (r->rooms || ext_resp_counts(r->ext)) return true;
    for (struct resp_list *l = r->lists; l; l = l->hh.next)
        if (l->ops.n) return true;
    return false;
}

static struct sync_ops *resp_ops(struct conn_resp *r, const char *key)
{
    struct resp_list *l;
    HASH_FIND_STR(r->lists, key, l);
    if (!l) {
        l = xcalloc(1, sizeof *l);
        l->key = xstrdup(key);
        sync_ops_init(&l->ops);
        HASH_ADD_KEYPTR(hh, r->lists, l->key, strlen(l->key), l);
    }
    return &l->ops;
}

static struct resp_room *resp_room_get(struct conn *c, struct conn_resp *r, const char *room_id)
{
    struct resp_room *rr;
    HASH_FIND_STR(r->rooms, room_id, rr);
    if (!rr) {
        rr = xcalloc(1, sizeof *rr);
        rr->room_id = xstrdup(room_id);
        HASH_ADD_KEYPTR(hh, r->rooms, rr->room_id, strlen(rr->room_id), rr);
    }
    if (!rr->ur) {
        struct croom *cr;
        HASH_FIND_STR(c->rooms, room_id, cr);
        if (cr) rr->ur = user_room_ref(cr->ur);
    }
    return rr;
}

/* Most predecessors include_old_rooms walks back (a guard against cycles). */
#define CONN_MAX_OLD_ROOMS 32

static void add_snapshot_one(struct conn *c, struct conn_resp *r, const char *room_id,
                             const struct sync_roomsub *sub)
{
    struct resp_room *rr = resp_room_get(c, r, room_id);
    rr->snapshot = true;
    room_params_add(&rr->params, sub->timeline_limit, sub->required_state, sub->n_required_state,
                    sub->has_include_heroes && sub->include_heroes);
}

static void add_snapshot(struct conn *c, struct conn_resp *r, const char *room_id, const struct sync_roomsub *sub)
{
    struct croom *cr;
    HASH_FIND_STR(c->rooms, room_id, cr);
    if (!cr) return;
    add_snapshot_one(c, r, room_id, sub);
    if (!sub->include_old_rooms || cr->ur->invite) return;
    /* §11.9: the predecessors the user is joined to, newest first, until the
     * first one they are not in; in `rooms` only, never in list ops. */
    for (int depth = 0; depth < CONN_MAX_OLD_ROOMS && cr->ur->meta; depth++) {
        const char *pred = cr->ur->meta->r.predecessor;
        if (!pred || !*pred || strcmp(pred, room_id) == 0) break;
        HASH_FIND_STR(c->rooms, pred, cr);
        if (!cr || cr->ur->invite) break;
        add_snapshot_one(c, r, cr->ur->room_id, sub->include_old_rooms);
    }
}

static void add_snapshots(struct conn *c, struct conn_resp *r, struct sync_roomset *set,
                          const struct sync_roomsub *sub)
{
    for (struct sync_roomset_entry *e = set->h; e; e = e->hh.next) add_snapshot(c, r, e->room_id, sub);
}

/* ---- filters and keys ---- */

static const char *croom_name(struct conn *c, struct croom *cr);

static bool invite_has(const char *invite_state, const char *type, const char **content_type)
{
    json_t *arr = invite_state ? json_loads(invite_state, 0, NULL) : NULL;
    bool found = false;
    size_t i;
    json_t *ev;
    json_array_foreach(arr, i, ev)
    {
        json_t *t = json_object_get(ev, "type");
        if (json_is_string(t) && strcmp(json_string_value(t), type) == 0) {
            found = true;
            if (content_type) {
                json_t *ct = json_object_get(json_object_get(ev, "content"), "type");
                *content_type = json_is_string(ct) ? xstrdup(json_string_value(ct)) : NULL;
            }
            break;
        }
    }
    json_decref(arr);
    return found;
}

static bool type_listed(const struct sync_strv *v, const char *type)
{
    for (size_t i = 0; i < v->n; i++) {
        if (!v->v[i] && !type) return true;
        if (v->v[i] && type && strcmp(v->v[i], type) == 0) return true;
    }
    return false;
}

static bool tri_ok(enum sync_tri t, bool v)
{
    return t == SYNC_TRI_UNSET || (t == SYNC_TRI_TRUE) == v;
}

static bool joined(struct conn *c, const char *room_id)
{
    struct croom *cr;
    HASH_FIND_STR(c->rooms, room_id, cr);
    return cr && !cr->ur->invite;
}

static bool space_has_child(struct conn *c, const char *space_id, const char *room_id)
{
    struct cspace *sp;
    HASH_FIND_STR(c->spaces, space_id, sp);
    return sp && sync_roomset_has(&sp->children, room_id);
}

/* §11.1: message events of users the syncing user ignores are not shown
 * (state events are). */
static bool ignored_message(struct conn *c, const struct event *ev)
{
    return !ev->state_key && *ev->sender && strcmp(ev->sender, c->user_id) != 0 &&
           cache_user_ignores(c->ctx->cache, c->user_id, ev->sender);
}

/* An invite from an ignored user is not shown at all. */
static bool invite_ignored(struct conn *c, const struct user_room *ur)
{
    if (!cache_user_ignores_anyone(c->ctx->cache, c->user_id)) return false;
    json_t *arr = ur->invite_state ? json_loads(ur->invite_state, 0, NULL) : NULL;
    bool ignored = false;
    size_t i;
    json_t *ev;
    json_array_foreach(arr, i, ev)
    {
        json_t *t = json_object_get(ev, "type"), *sk = json_object_get(ev, "state_key"),
               *sender = json_object_get(ev, "sender");
        if (json_is_string(t) && strcmp(json_string_value(t), "m.room.member") == 0 && json_is_string(sk) &&
            strcmp(json_string_value(sk), c->user_id) == 0 && json_is_string(sender)) {
            ignored = cache_user_ignores(c->ctx->cache, c->user_id, json_string_value(sender));
            break;
        }
    }
    json_decref(arr);
    return ignored;
}

static bool matches(struct conn *c, struct croom *cr, const struct sync_req_list *rl)
{
    const struct store_room *m = cr->ur->meta ? &cr->ur->meta->r : NULL;
    if (cr->ur->invite && invite_ignored(c, cr->ur)) return false;
    /* §11.9: a room replaced by one the user is joined to is in no list. */
    if (m && m->upgraded && *m->upgraded && joined(c, m->upgraded)) return false;
    if (!rl->has_filters) return true;
    const struct sync_filters *f = &rl->filters;
    bool encrypted = cr->ur->invite ? invite_has(cr->ur->invite_state, "m.room.encryption", NULL)
                                   : (m && m->encrypted);
    if (!tri_ok(f->is_encrypted, encrypted)) return false;
    if (!tri_ok(f->is_tombstoned, m && m->upgraded && *m->upgraded)) return false;
    if (!tri_ok(f->is_dm, cr->ur->is_dm)) return false;
    if (!tri_ok(f->is_invite, cr->ur->invite)) return false;
    if (f->room_name_like && *f->room_name_like && !strcasestr(croom_name(c, cr), f->room_name_like))
        return false;
    /* not_tags first, so it wins over tags. An empty array filters nothing. */
    if (f->has_not_tags)
        for (size_t i = 0; i < f->not_tags.n; i++)
            if (f->not_tags.v[i] && user_room_has_tag(cr->ur, f->not_tags.v[i])) return false;
    if (f->has_tags && f->tags.n) {
        bool any = false;
        for (size_t i = 0; i < f->tags.n && !any; i++) any = f->tags.v[i] && user_room_has_tag(cr->ur, f->tags.v[i]);
        if (!any) return false;
    }
    if (f->has_room_types || f->has_not_room_types) {
        const char *type = NULL;
        char *owned = NULL;
        if (cr->ur->invite)
            invite_has(cr->ur->invite_state, "m.room.create", (const char **)&owned), type = owned;
        else if (m)
            type = m->room_type;
        bool ok = !(f->has_not_room_types && type_listed(&f->not_room_types, type)) &&
                  !(f->has_room_types && !type_listed(&f->room_types, type));
        free(owned);
        if (!ok) return false;
    }
    if (f->has_spaces && f->spaces.n) {
        /* Only spaces the user is joined to say anything (no leak of others). */
        bool any = false;
        for (size_t i = 0; i < f->spaces.n && !any; i++)
            any = f->spaces.v[i] && joined(c, f->spaces.v[i]) &&
                  space_has_child(c, f->spaces.v[i], cr->ur->room_id);
        if (!any) return false;
    }
    return true;
}

static bool sorts_by_name(const struct sync_req_list *rl)
{
    for (size_t i = 0; i < rl->n_sort; i++)
        if (rl->sort[i] == SYNC_SORT_BY_NAME) return true;
    return false;
}

static bool has_bump_types(const struct sync_req_list *rl)
{
    return rl->has_bump_event_types && rl->bump_event_types.n > 0;
}

static struct bump_ts *bump_get(struct clist *cl, const char *room_id)
{
    struct bump_ts *b;
    HASH_FIND_STR(cl->bump, room_id, b);
    return b;
}

static void bump_set(struct clist *cl, const char *room_id, int64_t ts)
{
    struct bump_ts *b = bump_get(cl, room_id);
    if (!b) {
        b = xcalloc(1, sizeof *b);
        b->room_id = xstrdup(room_id);
        HASH_ADD_KEYPTR(hh, cl->bump, b->room_id, strlen(b->room_id), b);
    }
    b->ts = ts;
}

/* §12.1: invites use the invite's time; lists with bump_event_types keep
 * their own per-room value (frozen at the room's latest activity when first
 * seen, moved only by events of the listed types); others the latest event.
 * Never before the user's join. */
static struct sync_list_keys keys_of(struct conn *c, struct clist *cl, struct croom *cr,
                                     const struct sync_req_list *rl)
{
    const struct store_room *m = cr->ur->meta ? &cr->ur->meta->r : NULL;
    int64_t recency = cr->ur->invite ? cr->ur->invite_ts : (m ? m->latest_ts : 0);
    if (!cr->ur->invite && has_bump_types(rl)) {
        struct bump_ts *b = bump_get(cl, cr->ur->room_id);
        if (b)
            recency = b->ts;
        else
            bump_set(cl, cr->ur->room_id, recency > cr->ur->join_ts ? recency : cr->ur->join_ts);
    }
    if (!cr->ur->invite && cr->ur->join_ts > recency) recency = cr->ur->join_ts;
    return (struct sync_list_keys){
        .room_id = cr->ur->room_id,
        .recency = recency,
        .name = sorts_by_name(rl) ? croom_name(c, cr) : NULL,
        .notification_count = cr->ur->notif,
        .highlight_count = cr->ur->invite ? 1 : cr->ur->highlight,
        .encrypted = m && m->encrypted,
    };
}

/* §6.4: changing an existing list's bump_event_types changes only future
 * ordering. Every joined room keeps the recency it has now (its place in the
 * list, or its latest activity); without this a room would be frozen only
 * when it is next re-listed, i.e. after the event that re-lists it, so an
 * event of an unlisted type would still move it. Bump types removed: the
 * frozen values go, so a later change freezes afresh. */
static void bump_refreeze(struct conn *c, struct clist *cl, const struct sync_req_list *rl)
{
    bump_clear(cl);
    if (!has_bump_types(rl)) return;
    for (struct croom *cr = c->rooms; cr; cr = cr->hh.next) {
        if (cr->ur->invite) continue;
        const struct sync_list_room *lr = sync_list_get(cl->l, cr->ur->room_id);
        const struct store_room *m = cr->ur->meta ? &cr->ur->meta->r : NULL;
        int64_t ts = lr ? lr->recency : (m ? m->latest_ts : 0);
        bump_set(cl, cr->ur->room_id, ts > cr->ur->join_ts ? ts : cr->ur->join_ts);
    }
}

static struct sync_req_list *muxed_list(struct conn *c, const char *key)
{
    return sync_req_find_list(&c->muxed, key);
}

static void rebuild_list(struct conn *c, struct clist *cl, const struct sync_req_list *rl)
{
    sync_list_clear(cl->l);
    sync_list_set_sort(cl->l, rl->sort, rl->n_sort);
    size_t n = HASH_COUNT(c->rooms), k = 0;
    struct sync_list_keys *keys = xmalloc((n ? n : 1) * sizeof *keys);
    for (struct croom *cr = c->rooms; cr; cr = cr->hh.next)
        if (matches(c, cr, rl)) keys[k++] = keys_of(c, cl, cr, rl);
    sync_list_upsert_many(cl->l, keys, k);
    free(keys);
}

/* Points the room at a new view (taking the caller's reference). The hash
 * key is the view's room ID string, so the entry is re-keyed. */
static void croom_set(struct conn *c, struct croom *cr, struct user_room *ur)
{
    if (cr->ur) {
        HASH_DEL(c->rooms, cr);
        user_room_unref(cr->ur);
    }
    cr->ur = ur;
    HASH_ADD_KEYPTR(hh, c->rooms, ur->room_id, strlen(ur->room_id), cr);
    free(cr->name);
    cr->name = NULL;
}

/* The room's computed name (built when first needed: most connections never
 * sort or filter by name). */
static const char *croom_name(struct conn *c, struct croom *cr)
{
    if (!cr->name) cr->name = room_display_name(c->user_id, cr->ur);
    return cr->name;
}

static struct croom *croom_add(struct conn *c, struct user_room *ur)
{
    struct croom *cr = xcalloc(1, sizeof *cr);
    croom_set(c, cr, ur);
    return cr;
}

static void croom_del(struct conn *c, struct croom *cr)
{
    HASH_DEL(c->rooms, cr);
    user_room_unref(cr->ur);
    free(cr->name);
    struct lazy_member *lm, *lt;
    HASH_ITER(hh, cr->lazy_sent, lm, lt)
    {
        HASH_DEL(cr->lazy_sent, lm);
        free(lm->user_id);
        free(lm);
    }
    if (!cr->in_block) free(cr);
}

static bool lazy_sent(const struct croom *cr, const char *user_id)
{
    struct lazy_member *lm;
    HASH_FIND_STR(cr->lazy_sent, user_id, lm);
    return lm != NULL;
}

static void lazy_mark(struct croom *cr, const char *user_id)
{
    if (!user_id || !*user_id || lazy_sent(cr, user_id)) return;
    struct lazy_member *lm = xcalloc(1, sizeof *lm);
    lm->user_id = xstrdup(user_id);
    HASH_ADD_KEYPTR(hh, cr->lazy_sent, lm->user_id, strlen(lm->user_id), lm);
}

/* Whether the room is inside a window of the list (every room is, for
 * slow_get_all_rooms). rl may be NULL (a list being deleted). */
static bool in_window(const struct clist *cl, const struct sync_req_list *rl, const char *room_id)
{
    if (!rl) return false;
    int64_t i = sync_list_index_of(cl->l, room_id);
    return i >= 0 && (rl->slow_get_all_rooms || sync_ranges_contains(&rl->ranges, i));
}

static bool visible(struct conn *c, const char *room_id)
{
    if (sync_req_find_sub(&c->muxed, room_id)) return true;
    for (struct clist *cl = c->lists; cl; cl = cl->hh.next)
        if (in_window(cl, muxed_list(c, cl->key), room_id)) return true;
    return false;
}

/* Whether a source that shows the room (its subscription, or a list whose
 * window holds it) asks for heroes: include_heroes is ORed (§11.8). */
static bool wants_heroes(struct conn *c, const char *room_id)
{
    struct sync_req_sub *s = sync_req_find_sub(&c->muxed, room_id);
    if (s && s->sub.has_include_heroes && s->sub.include_heroes) return true;
    for (struct clist *cl = c->lists; cl; cl = cl->hh.next) {
        struct sync_req_list *rl = muxed_list(c, cl->key);
        if (rl && rl->sub.has_include_heroes && rl->sub.include_heroes && in_window(cl, rl, room_id)) return true;
    }
    return false;
}

/* Re-evaluates one room in every list after its data changed (or it was
 * added/removed), emitting live ops and snapshots. force_snapshot: a join. */
static void relist_room(struct conn *c, struct conn_resp *r, const char *room_id, bool force_snapshot)
{
    struct croom *cr;
    HASH_FIND_STR(c->rooms, room_id, cr);
    for (struct clist *cl = c->lists; cl; cl = cl->hh.next) {
        struct sync_req_list *rl = muxed_list(c, cl->key);
        if (!rl) continue;
        struct sync_roomset snaps;
        sync_roomset_init(&snaps);
        struct sync_ops *ops = resp_ops(r, cl->key);
        bool in = sync_list_index_of(cl->l, room_id) >= 0;
        if (cr && matches(c, cr, rl)) {
            struct sync_list_keys k = keys_of(c, cl, cr, rl);
            if (rl->slow_get_all_rooms) {
                sync_list_upsert(cl->l, &k, NULL, NULL);
                if (!in) sync_roomset_add(&snaps, room_id);
            } else {
                sync_ops_upsert(ops, cl->l, &rl->ranges, &k, &snaps);
            }
            if (force_snapshot) sync_roomset_add(&snaps, room_id);
        } else if (in) {
            if (rl->slow_get_all_rooms)
                sync_list_remove(cl->l, room_id, NULL);
            else
                sync_ops_remove(ops, cl->l, &rl->ranges, room_id, &snaps);
        }
        add_snapshots(c, r, &snaps, &rl->sub);
        sync_roomset_release(&snaps);
    }
    if (force_snapshot && cr) {
        struct sync_req_sub *s = sync_req_find_sub(&c->muxed, room_id);
        if (s && !cr->ur->invite) add_snapshot(c, r, room_id, &s->sub);
    }
}

/* ---- extensions ---- */

static bool strv_has(const struct sync_strv *v, const char *s)
{
    for (size_t i = 0; i < v->n; i++)
        if (v->v[i] && strcmp(v->v[i], s) == 0) return true;
    return false;
}

/* §16.0: listed in `rooms` ("*" first: a confirmed subscription, i.e. a
 * subscribed room the user is joined to), or inside the window of a list
 * named in `lists` ("*" first: any list). */
static bool ext_in_scope(void *ud, const struct ext_params *p, const char *room_id)
{
    struct conn *c = ud;
    if (p->rooms.n) {
        if (strcmp(p->rooms.v[0], "*") == 0) {
            struct croom *cr;
            HASH_FIND_STR(c->rooms, room_id, cr);
            if (cr && !cr->ur->invite && sync_req_find_sub(&c->muxed, room_id)) return true;
        } else if (strv_has(&p->rooms, room_id)) {
            return true;
        }
    }
    if (!p->lists.n) return false;
    bool all = strcmp(p->lists.v[0], "*") == 0;
    for (struct clist *cl = c->lists; cl; cl = cl->hh.next) {
        if ((all || strv_has(&p->lists, cl->key)) && in_window(cl, muxed_list(c, cl->key), room_id)) return true;
    }
    return false;
}

static struct ext_env ext_env_of(struct conn *c, const struct conn_resp *r)
{
    return (struct ext_env){
        .db = c->ctx->db,
        .reg = c->ctx->ext,
        .user_id = c->user_id,
        .device_id = c->device_id,
        .initial = r->initial,
        .in_scope = ext_in_scope,
        .ud = c,
    };
}

/* ---- applying a request ---- */

static int load_rooms(struct conn *c, char **err)
{
    struct user_room **rooms = NULL;
    int n = 0;
    int64_t pos = 0;
    if (cache_snapshot_user(c->ctx->cache, c->user_id, &c->listener, &rooms, &n, &pos) < 0) {
        *err = xstrdup("the user's rooms are not loaded");
        return -1;
    }
    /* One allocation for all views: a first request of a large account
     * otherwise spends much of its time in malloc, and freeing them again. */
    c->room_block = xcalloc(n ? (size_t)n : 1, sizeof *c->room_block);
    for (int i = 0; i < n; i++) {
        c->room_block[i].in_block = true;
        croom_set(c, &c->room_block[i], rooms[i]);
    }
    free(rooms);
    c->pos = pos;
    c->loaded = true;
    return 0;
}

/* §12.1: on the connection's first request, a list with bump_event_types
 * starts each joined room at its newest event of those types after the join
 * (or the join). Lists added later start from the latest event (keys_of). */
static int load_bump(struct conn *c, struct clist *cl, const struct sync_req_list *rl, char **err)
{
    size_t n = HASH_COUNT(c->rooms), k = 0;
    const char **ids = xcalloc(n ? n : 1, sizeof *ids);
    int64_t *after = xcalloc(n ? n : 1, sizeof *after);
    int64_t *ts = xcalloc(n ? n : 1, sizeof *ts);
    struct croom **crs = xcalloc(n ? n : 1, sizeof *crs);
    for (struct croom *cr = c->rooms; cr; cr = cr->hh.next) {
        if (cr->ur->invite) continue;
        crs[k] = cr;
        after[k] = cr->ur->join_nid;
        ids[k++] = cr->ur->room_id;
    }
    int rc = -1;
    PGconn *pg = db_acquire(c->ctx->db, DB_WAIT_HTTP_MS, err);
    if (!pg) goto out;
    rc = store_latest_of_types(pg, ids, after, (int)k, (const char *const *)rl->bump_event_types.v,
                               (int)rl->bump_event_types.n, c->pos, ts, err);
    db_release(c->ctx->db, pg);
    if (rc < 0) goto out;
    for (size_t i = 0; i < k; i++)
        bump_set(cl, ids[i], ts[i] > crs[i]->ur->join_ts ? ts[i] : crs[i]->ur->join_ts);
out:
    free(ids);
    free(after);
    free(ts);
    free(crs);
    return rc;
}

/* Whether an m.space.child event's content has an array `via` (event JSON). */
static bool child_event_valid(const char *json)
{
    json_t *j = json_loads(json, 0, NULL);
    bool ok = json_is_array(json_object_get(json_object_get(j, "content"), "via"));
    json_decref(j);
    return ok;
}

/* Reads the children of k spaces as of the connection's position: the state
 * keys of their m.space.child events with an array `via`. out[i] (initialised
 * by the caller) answers ids[i]. */
static int read_space_children(struct conn *c, const char *const *ids, int k, struct sync_roomset *out, char **err)
{
    struct store_tl *st = xcalloc((size_t)k, sizeof *st);
    const char *types[] = {"m.space.child"}, *keys[] = {"*"};
    PGconn *pg = db_acquire(c->ctx->db, DB_WAIT_HTTP_MS, err);
    int rc = pg ? store_state_at(pg, ids, k, c->pos, types, keys, 1, st, err) : -1;
    if (pg) db_release(c->ctx->db, pg);
    for (int i = 0; i < k && rc == 0; i++)
        for (int e = 0; e < st[i].n; e++)
            if (st[i].events[e]->state_key && child_event_valid(st[i].events[e]->json))
                sync_roomset_add(&out[i], st[i].events[e]->state_key);
    for (int i = 0; i < k; i++) store_tl_release(&st[i]);
    free(st);
    return rc;
}

/* Reads the children of the spaces a list filters by that are not known yet,
 * as of the connection's position (later changes arrive as events). */
static int load_spaces(struct conn *c, const struct sync_req_list *rl, char **err)
{
    if (!rl->has_filters || !rl->filters.has_spaces) return 0;
    const struct sync_strv *sv = &rl->filters.spaces;
    const char **ids = xcalloc(sv->n ? sv->n : 1, sizeof *ids);
    int k = 0;
    for (size_t i = 0; i < sv->n; i++) {
        struct cspace *sp;
        if (!sv->v[i]) continue;
        HASH_FIND_STR(c->spaces, sv->v[i], sp);
        bool dup = false;
        for (int j = 0; j < k && !dup; j++) dup = strcmp(ids[j], sv->v[i]) == 0;
        if (!sp && !dup) ids[k++] = sv->v[i];
    }
    int rc = 0;
    if (k) {
        struct sync_roomset *sets = xcalloc((size_t)k, sizeof *sets);
        for (int i = 0; i < k; i++) sync_roomset_init(&sets[i]);
        rc = read_space_children(c, ids, k, sets, err);
        for (int i = 0; i < k; i++) {
            if (rc < 0) {
                sync_roomset_release(&sets[i]);
                continue;
            }
            struct cspace *sp = xcalloc(1, sizeof *sp);
            sp->space_id = xstrdup(ids[i]);
            sp->children = sets[i];
            HASH_ADD_KEYPTR(hh, c->spaces, sp->space_id, strlen(sp->space_id), sp);
        }
        free(sets);
    }
    free(ids);
    return rc;
}

int conn_apply_request(struct conn *c, const struct sync_req *req, struct conn_resp *resp, char **err)
{
    if (!c->loaded && load_rooms(c, err) < 0) return -1;
    resp->initial = c->next_pos == 0;
    struct sync_req_changes ch;
    sync_req_changes_init(&ch);
    sync_req_merge(&c->muxed, req, &ch);
    for (size_t i = 0; i < ch.n_lists; i++) {
        const struct sync_list_delta *d = &ch.lists[i];
        struct clist *cl;
        HASH_FIND_STR(c->lists, d->key, cl);
        if (d->deleted) {
            if (cl) {
                HASH_DEL(c->lists, cl);
                clist_free(cl);
            }
            continue;
        }
        struct sync_req_list *rl = muxed_list(c, d->key);
        if (!rl) continue;
        struct sync_ops *ops = resp_ops(resp, d->key);
        struct sync_roomset snaps;
        sync_roomset_init(&snaps);
        if (!cl) {
            cl = xcalloc(1, sizeof *cl);
            cl->key = xstrdup(d->key);
            cl->l = sync_list_new();
            HASH_ADD_KEYPTR(hh, c->lists, cl->key, strlen(cl->key), cl);
            if ((resp->initial && has_bump_types(rl) && load_bump(c, cl, rl, err) < 0) ||
                load_spaces(c, rl, err) < 0) {
                sync_req_changes_release(&ch);
                return -1;
            }
            rebuild_list(c, cl, rl);
            if (rl->slow_get_all_rooms)
                sync_ops_all_rooms(ops, cl->l, &snaps);
            else
                sync_ops_sync_ranges(ops, cl->l, &rl->ranges, &snaps);
        } else if (d->sort_changed || d->filters_changed) {
            if (load_spaces(c, rl, err) < 0) {
                sync_req_changes_release(&ch);
                return -1;
            }
            if (!rl->slow_get_all_rooms) sync_ops_invalidate_ranges(ops, &d->old_ranges, (int64_t)sync_list_count(cl->l));
            rebuild_list(c, cl, rl);
            if (rl->slow_get_all_rooms)
                sync_ops_all_rooms(ops, cl->l, &snaps);
            else
                sync_ops_sync_ranges(ops, cl->l, &rl->ranges, &snaps);
        } else if (d->ranges_changed && !rl->slow_get_all_rooms) {
            sync_ops_ranges_changed(ops, cl->l, &d->old_ranges, &rl->ranges, &snaps);
        }
        if (d->bump_event_types_changed && !d->created) bump_refreeze(c, cl, rl);
        if ((d->timeline_limit_changed || d->required_state_changed) && !d->created) {
            /* Resend the joined rooms of the window with the new parameters;
             * unlike the original we send both timeline and required_state,
             * so `initial: true` always means a complete room. */
            for (size_t k = 0; k < sync_list_count(cl->l); k++) {
                if (!rl->slow_get_all_rooms && !sync_ranges_contains(&rl->ranges, (int64_t)k)) continue;
                const char *rid = sync_list_room_at(cl->l, (int64_t)k);
                struct croom *cr;
                HASH_FIND_STR(c->rooms, rid, cr);
                if (cr && !cr->ur->invite) sync_roomset_add(&snaps, rid);
            }
        }
        add_snapshots(c, resp, &snaps, &rl->sub);
        sync_roomset_release(&snaps);
    }
    for (size_t i = 0; i < ch.n_subs; i++) {
        const struct sync_sub_delta *d = &ch.subs[i];
        if (d->change == SYNC_SUB_UNSUBSCRIBED) continue;
        struct sync_req_sub *s = sync_req_find_sub(&c->muxed, d->room_id);
        struct croom *cr;
        HASH_FIND_STR(c->rooms, d->room_id, cr);
        /* Only rooms the user is joined to: nothing leaks of other rooms. */
        if (s && cr && !cr->ur->invite) add_snapshot(c, resp, d->room_id, &s->sub);
    }
    sync_req_changes_release(&ch);
    ext_apply_request(&c->ext, req->extensions);
    struct ext_env env = ext_env_of(c, resp);
    return ext_collect(&env, &c->ext, resp->ext, err);
}

/* ---- live updates ---- */

/* §11.9: joining a room leaves its predecessor out of every list. */
static void relist_predecessor(struct conn *c, struct conn_resp *r, struct croom *cr)
{
    const char *pred = cr->ur->meta ? cr->ur->meta->r.predecessor : NULL;
    struct croom *pc = NULL;
    if (pred && *pred) HASH_FIND_STR(c->rooms, pred, pc);
    if (pc) relist_room(c, r, pc->ur->room_id, false);
}

/* A space named by a filter gained or lost a child: re-evaluate the child. */
static void space_child_changed(struct conn *c, struct conn_resp *r, const struct event *ev)
{
    struct cspace *sp;
    HASH_FIND_STR(c->spaces, ev->room_id, sp);
    if (!sp) return;
    bool was = sync_roomset_has(&sp->children, ev->state_key);
    bool is = child_event_valid(ev->json);
    if (was == is) return;
    if (is) {
        sync_roomset_add(&sp->children, ev->state_key);
    } else {
        /* No removal in the set's API: rebuild it without the child. */
        struct sync_roomset n;
        sync_roomset_init(&n);
        for (struct sync_roomset_entry *e = sp->children.h; e; e = e->hh.next)
            if (strcmp(e->room_id, ev->state_key) != 0) sync_roomset_add(&n, e->room_id);
        sync_roomset_release(&sp->children);
        sp->children = n;
    }
    struct croom *child;
    HASH_FIND_STR(c->rooms, ev->state_key, child);
    if (child) relist_room(c, r, child->ur->room_id, false);
}

/* The user joined or left a space a filter names: its children enter or
 * leave the lists (§13: only joined spaces count). On a join the children
 * are read again, as they came in the join's state, not as live events. */
static void space_membership_changed(struct conn *c, struct conn_resp *r, const char *space_id, bool joined_now)
{
    struct cspace *sp;
    HASH_FIND_STR(c->spaces, space_id, sp);
    if (!sp) return;
    struct sync_roomset affected;
    sync_roomset_init(&affected);
    for (struct sync_roomset_entry *e = sp->children.h; e; e = e->hh.next) sync_roomset_add(&affected, e->room_id);
    if (joined_now) {
        struct sync_roomset now;
        sync_roomset_init(&now);
        char *err = NULL;
        const char *id = sp->space_id;
        if (read_space_children(c, &id, 1, &now, &err) == 0) {
            for (struct sync_roomset_entry *e = now.h; e; e = e->hh.next) sync_roomset_add(&affected, e->room_id);
            sync_roomset_release(&sp->children);
            sp->children = now;
        } else {
            LOG_WARN("sync", "%s: reading the children of %s failed: %s", c->user_id, space_id, err ? err : "?");
            free(err);
            sync_roomset_release(&now);
        }
    }
    for (struct sync_roomset_entry *e = affected.h; e; e = e->hh.next) {
        struct croom *child;
        HASH_FIND_STR(c->rooms, e->room_id, child);
        if (child) relist_room(c, r, child->ur->room_id, false);
    }
    sync_roomset_release(&affected);
}

/* §11.9: leaving an upgraded room's replacement brings the old room back. */
static void relist_replaced(struct conn *c, struct conn_resp *r, const char *room_id)
{
    for (struct croom *cr = c->rooms; cr; cr = cr->hh.next) {
        const char *up = cr->ur->meta ? cr->ur->meta->r.upgraded : NULL;
        if (up && strcmp(up, room_id) == 0) relist_room(c, r, cr->ur->room_id, false);
    }
}

/* The user is no longer in the room (left, kicked, banned, invite gone). */
static void room_gone(struct conn *c, struct conn_resp *r, struct croom *cr, const char *room_id)
{
    char *id = xstrdup(room_id);
    croom_del(c, cr);
    relist_room(c, r, id, false);
    space_membership_changed(c, r, id, false);
    relist_replaced(c, r, id);
    free(id);
}

/* The user joined the room (first join, invite accepted, rejoin). */
static void room_joined(struct conn *c, struct conn_resp *r, struct croom *cr)
{
    relist_predecessor(c, r, cr);
    space_membership_changed(c, r, cr->ur->room_id, true);
}

static void live_event(struct conn *c, struct conn_resp *r, struct cache_update *u)
{
    struct event *ev = u->ev;
    struct croom *cr;
    HASH_FIND_STR(c->rooms, u->room_id, cr);
    struct user_room *ur = cache_user_room(c->ctx->cache, c->user_id, u->room_id);
    bool has = ur != NULL;
    bool own_membership = ev->state_key && ev->membership && strcmp(ev->state_key, c->user_id) == 0;
    if (!has) {
        if (!cr) return;
        /* The user left: deliver this event (their leave) once, then drop the room. */
        if (own_membership && visible(c, u->room_id)) {
            struct resp_room *rr = resp_room_get(c, r, u->room_id);
            rr->live = xrealloc(rr->live, (rr->n_live + 1) * sizeof *rr->live);
            rr->live[rr->n_live++] = event_ref(ev);
            rr->num_live++;
        }
        room_gone(c, r, cr, u->room_id);
        return;
    }
    bool joined_now = !cr || (cr->ur->invite && !ur->invite);
    /* An event that takes the room out of a window (a tombstone, a filter
     * no longer matching) caused a DELETE: the client gets the event too. */
    bool was_visible = cr && !cr->ur->invite && visible(c, u->room_id);
    char *old_name = NULL, *old_avatar = NULL;
    int64_t old_joined = -1, old_invited = -1;
    if (cr && cr->ur->meta) {
        old_joined = cr->ur->meta->r.joined_count;
        old_invited = cr->ur->meta->r.invited_count;
    }
    if (cr) {
        old_name = xstrdup(croom_name(c, cr));
        old_avatar = room_display_avatar(c->user_id, cr->ur);
    }
    if (!cr)
        cr = croom_add(c, ur);
    else
        croom_set(c, cr, ur);
    /* Refresh the view the response holds, if any. */
    struct resp_room *rr;
    HASH_FIND_STR(r->rooms, u->room_id, rr);
    if (rr && rr->ur) {
        user_room_unref(rr->ur);
        rr->ur = user_room_ref(cr->ur);
    }
    /* §12.1: lists with bump_event_types move only for their types. */
    for (struct clist *cl = c->lists; cl; cl = cl->hh.next) {
        struct sync_req_list *rl = muxed_list(c, cl->key);
        if (rl && has_bump_types(rl) && !cr->ur->invite && strv_has(&rl->bump_event_types, ev->type))
            bump_set(cl, u->room_id, ev->ts);
    }
    relist_room(c, r, u->room_id, joined_now);
    if (joined_now) room_joined(c, r, cr);
    if (ev->state_key && strcmp(ev->type, "m.space.child") == 0) space_child_changed(c, r, ev);
    HASH_FIND_STR(r->rooms, u->room_id, rr);
    if ((rr && rr->snapshot) || was_visible || visible(c, u->room_id)) {
        rr = resp_room_get(c, r, u->room_id);
        if (!ignored_message(c, ev)) {
            rr->live = xrealloc(rr->live, (rr->n_live + 1) * sizeof *rr->live);
            rr->live[rr->n_live++] = event_ref(ev);
            rr->num_live++;
        }
        if (old_joined >= 0 && cr->ur->meta &&
            (cr->ur->meta->r.joined_count != old_joined || cr->ur->meta->r.invited_count != old_invited))
            rr->member_counts_changed = true;
        /* Name and avatar are sent live only when they change. */
        if (old_name && strcmp(old_name, croom_name(c, cr)) != 0) {
            free(rr->live_name);
            rr->live_name = xstrdup(croom_name(c, cr));
            if (wants_heroes(c, u->room_id)) rr->params.include_heroes = true;
        }
        char *avatar = room_display_avatar(c->user_id, cr->ur);
        if (old_name && ((!avatar) != (!old_avatar) || (avatar && strcmp(avatar, old_avatar) != 0))) {
            free(rr->live_avatar);
            rr->live_avatar = avatar;
            avatar = NULL;
            rr->avatar_changed = true;
        }
        free(avatar);
    }
    free(old_name);
    free(old_avatar);
}

/* m.direct or m.ignored_user_list may have changed: rooms whose DM flag
 * changed, and invites (their inviter may be ignored now, or no longer),
 * are re-evaluated in every list at once. */
static void global_account_data_changed(struct conn *c, struct conn_resp *r)
{
    size_t n = HASH_COUNT(c->rooms), k = 0;
    char **ids = xcalloc(n ? n : 1, sizeof *ids);
    for (struct croom *cr = c->rooms; cr; cr = cr->hh.next) {
        struct user_room *ur = cache_user_room(c->ctx->cache, c->user_id, cr->ur->room_id);
        if (ur && (ur->is_dm != cr->ur->is_dm || ur->invite)) ids[k++] = xstrdup(ur->room_id);
        user_room_unref(ur);
    }
    for (size_t i = 0; i < k; i++) {
        struct croom *cr;
        HASH_FIND_STR(c->rooms, ids[i], cr);
        struct user_room *ur = cr ? cache_user_room(c->ctx->cache, c->user_id, ids[i]) : NULL;
        if (ur) {
            croom_set(c, cr, ur);
            relist_room(c, r, ids[i], false);
        }
        free(ids[i]);
    }
    free(ids);
}

static void apply_update(struct conn *c, struct conn_resp *r, struct cache_update *u)
{
    if (u->nid > c->pos) c->pos = u->nid;
    struct croom *cr = NULL;
    if (u->room_id) HASH_FIND_STR(c->rooms, u->room_id, cr);
    switch (u->kind) {
    case CU_EVENT:
        live_event(c, r, u);
        hold_for_txn(c, r, u);
        break;
    case CU_TXN: record_txns(r, u->json); break;
    case CU_UNREAD:
        if (!cr) break;
        {
            /* The cache already holds the new counts (or newer ones). */
            struct user_room *ur = cache_user_room(c->ctx->cache, c->user_id, u->room_id);
            if (!ur) break;
            croom_set(c, cr, ur);
            relist_room(c, r, u->room_id, false);
            struct resp_room *rr = resp_room_get(c, r, u->room_id);
            user_room_unref(rr->ur);
            rr->ur = user_room_ref(cr->ur);
            rr->counts_changed = true;
        }
        break;
    case CU_INVITE:
    case CU_JOIN: {
        struct user_room *ur = cache_user_room(c->ctx->cache, c->user_id, u->room_id);
        if (!ur) break;
        bool joined_now = u->kind == CU_JOIN && (!cr || cr->ur->invite);
        if (cr)
            croom_set(c, cr, ur);
        else
            cr = croom_add(c, ur);
        relist_room(c, r, u->room_id, joined_now);
        if (joined_now) room_joined(c, r, cr);
        break;
    }
    case CU_LEAVE:
        if (!cr) break;
        /* Only a room the timeline never told us about (an invite rejected
         * or withdrawn): show the user their leave once, then drop the room. */
        if (u->ev && visible(c, u->room_id)) {
            struct resp_room *rr = resp_room_get(c, r, u->room_id);
            rr->live = xrealloc(rr->live, (rr->n_live + 1) * sizeof *rr->live);
            rr->live[rr->n_live++] = event_ref(u->ev);
            rr->num_live++;
        }
        room_gone(c, r, cr, u->room_id);
        break;
    case CU_ROOM_RESET:
        if (!cr || cr->ur->invite) break;
        {
            struct user_room *ur = cache_user_room(c->ctx->cache, c->user_id, u->room_id);
            if (ur) croom_set(c, cr, ur);
        }
        relist_room(c, r, u->room_id, false);
        if (visible(c, u->room_id)) {
            struct sync_req_sub *s = sync_req_find_sub(&c->muxed, u->room_id);
            for (struct clist *cl = c->lists; cl; cl = cl->hh.next) {
                struct sync_req_list *rl = muxed_list(c, cl->key);
                if (in_window(cl, rl, u->room_id)) add_snapshot(c, r, u->room_id, &rl->sub);
            }
            if (s) add_snapshot(c, r, u->room_id, &s->sub);
        }
        break;
    case CU_TOKEN_EXPIRED:
        pthread_mutex_lock(&c->q_lock);
        c->dead = true;
        pthread_mutex_unlock(&c->q_lock);
        break;
    case CU_ACCOUNT_DATA:
        if (cr) {
            /* The room's tags changed (§13 tags / not_tags). */
            struct user_room *ur = cache_user_room(c->ctx->cache, c->user_id, u->room_id);
            if (ur) {
                croom_set(c, cr, ur);
                relist_room(c, r, u->room_id, false);
            }
        } else if (!u->room_id) {
            global_account_data_changed(c, r);
        }
        ext_note(&c->ext, r->ext, u->kind);
        break;
    case CU_TO_DEVICE:
    case CU_DEVICE_DATA: ext_note(&c->ext, r->ext, u->kind); break;
    case CU_TYPING:
    case CU_RECEIPT: {
        struct ext_env env = ext_env_of(c, r);
        ext_note_room(&env, &c->ext, r->ext, u);
        break;
    }
    }
}

void conn_drain(struct conn *c, struct conn_resp *resp, int max)
{
    for (;;) {
        pthread_mutex_lock(&c->q_lock);
        int n = c->q_n < max ? c->q_n : max;
        struct cache_update **batch = NULL;
        if (n) {
            batch = xmalloc((size_t)n * sizeof *batch);
            memcpy(batch, c->queue, (size_t)n * sizeof *batch);
            memmove(c->queue, c->queue + n, (size_t)(c->q_n - n) * sizeof *c->queue);
            c->q_n -= n;
        }
        pthread_mutex_unlock(&c->q_lock);
        if (!n) break;
        for (int i = 0; i < n; i++) {
            apply_update(c, resp, batch[i]);
            cache_update_unref(batch[i]);
        }
        free(batch);
        max -= n;
        if (max <= 0) break;
    }
    struct ext_env env = ext_env_of(c, resp);
    char *err = NULL;
    if (ext_refresh(&env, &c->ext, resp->ext, &err) < 0) {
        /* Still pending: conn_finish tries again. */
        LOG_WARN("sync", "%s: reading extension data failed: %s", c->user_id, err ? err : "?");
        free(err);
    }
}

/* ---- finishing ---- */

/* Adds a user to what a response's room needs lazily loaded, once per
 * connection. Returns whether it was added. */
static bool lazy_need(struct croom *cr, struct resp_room *rr, const char *user_id)
{
    if (!user_id || !*user_id || lazy_sent(cr, user_id)) return false;
    rr->lazy_need = xrealloc(rr->lazy_need, (rr->n_lazy_need + 1) * sizeof *rr->lazy_need);
    rr->lazy_need[rr->n_lazy_need++] = xstrdup(user_id);
    lazy_mark(cr, user_id);
    return true;
}

struct typing_lazy {
    struct conn *c;        /* the connection */
    struct conn_resp *r;   /* the response */
    bool any;              /* some member is needed */
};

static void typing_lazy_room(void *ud, const char *room_id, const char *edu)
{
    struct typing_lazy *tl = ud;
    struct croom *cr;
    HASH_FIND_STR(tl->c->rooms, room_id, cr);
    if (!cr || !cr->lazy || cr->ur->invite) return;
    json_t *j = json_loads(edu, 0, NULL);
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(json_object_get(j, "content"), "user_ids"), i, v)
    {
        if (!json_is_string(v) || lazy_sent(cr, json_string_value(v))) continue;
        tl->any |= lazy_need(cr, resp_room_get(tl->c, tl->r, room_id), json_string_value(v));
    }
    json_decref(j);
}

/* §11.1: the user's own message events carry the transaction ID this
 * device's upstream sync showed for them (the stored copy has none). Live
 * events take it from the CU_TXN updates drained with them; snapshot
 * timelines (older events) from the store, in one query. */
static void add_txn(struct resp_room *rr, const char *event_id, char *txn_id)
{
    rr->txns = xrealloc(rr->txns, (rr->n_txns + 1) * sizeof *rr->txns);
    rr->txns[rr->n_txns++] = (struct resp_txn){event_id, txn_id};
}

static int annotate_txns(struct conn *c, struct conn_resp *resp, char **err)
{
    size_t n = 0, cap = 0;
    const char **ids = NULL;
    struct resp_room **owner = NULL;
    for (struct resp_room *rr = resp->rooms; rr; rr = rr->hh.next) {
        size_t n_tl = rr->snapshot ? (size_t)rr->tl.n : 0, n_live = rr->snapshot ? 0 : rr->n_live;
        for (size_t i = 0; i < n_tl + n_live; i++) {
            const struct event *ev = i < n_tl ? rr->tl.events[i] : rr->live[i - n_tl];
            if (ev->state_key || strcmp(ev->sender, c->user_id) != 0) continue;
            struct txn_seen *t;
            HASH_FIND_STR(resp->txns, ev->event_id, t);
            if (t) {
                if (t->txn_id) add_txn(rr, ev->event_id, xstrdup(t->txn_id));
                continue;
            }
            if (i >= n_tl) continue; /* live, and this device's sync never showed it */
            if (n == cap) {
                cap = cap ? 2 * cap : 16;
                ids = xrealloc(ids, cap * sizeof *ids);
                owner = xrealloc(owner, cap * sizeof *owner);
            }
            owner[n] = rr;
            ids[n++] = ev->event_id;
        }
    }
    int rc = 0;
    if (n) {
        char **txns = xcalloc(n, sizeof *txns);
        PGconn *pg = db_acquire(c->ctx->db, DB_WAIT_HTTP_MS, err);
        rc = pg ? store_txn_ids(pg, c->user_id, c->device_id, ids, (int)n, txns, err) : -1;
        if (pg) db_release(c->ctx->db, pg);
        for (size_t i = 0; i < n; i++)
            if (txns[i]) add_txn(owner[i], ids[i], txns[i]);
        free(txns);
    }
    free(ids);
    free(owner);
    return rc;
}

/* B of §11.7: the union of the bump_event_types of every list (the strings
 * are borrowed from the sticky request: free only out->v). */
static void bump_union(struct conn *c, struct sync_strv *out)
{
    *out = (struct sync_strv){0};
    for (struct sync_req_list *rl = c->muxed.lists; rl; rl = rl->hh.next) {
        if (!has_bump_types(rl)) continue;
        for (size_t i = 0; i < rl->bump_event_types.n; i++) {
            const char *t = rl->bump_event_types.v[i];
            if (!t || strv_has(out, t)) continue;
            out->v = xrealloc(out->v, (out->n + 1) * sizeof *out->v);
            out->v[out->n++] = (char *)t;
        }
    }
}

/* After loading: what the connection now knows it sent (lazy members), and
 * the room's timestamp (§11.7) — only on snapshots and on updates carrying
 * events, never revealing activity from before the user's join. */
static void room_settle(struct conn *c, struct resp_room *rr, bool bump)
{
    struct croom *cr;
    HASH_FIND_STR(c->rooms, rr->room_id, cr);
    if (!cr || cr->ur->invite) return;
    if (rr->snapshot) {
        cr->lazy = rr->lazy;
        if (rr->lazy)
            for (int i = 0; i < rr->tl.n; i++) lazy_mark(cr, rr->tl.events[i]->sender);
        for (int i = 0; i < rr->state.n; i++)
            if (strcmp(rr->state.events[i]->type, "m.room.member") == 0) lazy_mark(cr, rr->state.events[i]->state_key);
    }
    if (!rr->snapshot && !rr->n_live) return;
    const struct store_room *m = cr->ur->meta ? &cr->ur->meta->r : NULL;
    int64_t ts;
    if (bump) {
        ts = rr->snapshot ? rr->timestamp : cr->ts;
        for (size_t i = 0; i < rr->n_live && !rr->snapshot; i++) {
            const struct event *ev = rr->live[i];
            for (struct sync_req_list *rl = c->muxed.lists; rl; rl = rl->hh.next)
                if (has_bump_types(rl) && strv_has(&rl->bump_event_types, ev->type) && ev->ts > ts) ts = ev->ts;
        }
    } else {
        ts = m ? m->latest_ts : 0;
        if (rr->n_live && rr->live[rr->n_live - 1]->ts > ts) ts = rr->live[rr->n_live - 1]->ts;
    }
    if (cr->ur->join_ts > ts) ts = cr->ur->join_ts;
    cr->ts = ts;
    rr->timestamp = ts;
}

char *conn_finish(struct conn *c, struct conn_resp *resp, const char *txn_id, int64_t req_pos,
                  const char *canonical_body, size_t *len, char **err)
{
    /* Snapshot rooms take the connection's latest view of the room. */
    struct resp_room *rr, *rt;
    bool any_snapshot = false;
    HASH_ITER(hh, resp->rooms, rr, rt)
    {
        struct croom *cr;
        HASH_FIND_STR(c->rooms, rr->room_id, cr);
        if (rr->snapshot && !cr) {
            HASH_DEL(resp->rooms, rr);
            resp_room_free(rr);
            continue;
        }
        if (rr->snapshot) {
            user_room_unref(rr->ur);
            rr->ur = user_room_ref(cr->ur);
            any_snapshot = true;
        }
    }
    /* Live updates of lazily loaded rooms: members of new senders (§11.2). */
    bool any_lazy = false;
    for (rr = resp->rooms; rr; rr = rr->hh.next) {
        struct croom *cr;
        if (rr->snapshot || !rr->n_live) continue;
        HASH_FIND_STR(c->rooms, rr->room_id, cr);
        if (!cr || !cr->lazy) continue;
        for (size_t i = 0; i < rr->n_live; i++) {
            const struct event *ev = rr->live[i];
            if (!*ev->sender || lazy_sent(cr, ev->sender)) continue;
            /* A sender's own membership event in the timeline is their member event. */
            if (ev->membership && ev->state_key && strcmp(ev->state_key, ev->sender) == 0) {
                lazy_mark(cr, ev->sender);
                continue;
            }
            any_lazy |= lazy_need(cr, rr, ev->sender);
        }
    }
    struct sync_strv bump;
    bump_union(c, &bump);
    if (any_snapshot || any_lazy) {
        PGconn *pg = db_acquire(c->ctx->db, DB_WAIT_HTTP_MS, err);
        int rc = pg ? room_load(pg, c->user_id, c->pos, resp->rooms, (const char *const *)bump.v, (int)bump.n, err)
                    : -1;
        if (pg) db_release(c->ctx->db, pg);
        if (rc < 0) {
            free(bump.v);
            return NULL;
        }
    }
    bool ignores = cache_user_ignores_anyone(c->ctx->cache, c->user_id);
    for (rr = resp->rooms; rr; rr = rr->hh.next) {
        /* Snapshot timelines leave out messages of ignored users (§11.1). */
        int kept = 0;
        for (int i = 0; i < rr->tl.n; i++) {
            if (ignores && ignored_message(c, rr->tl.events[i]))
                event_unref(rr->tl.events[i]);
            else
                rr->tl.events[kept++] = rr->tl.events[i];
        }
        rr->tl.n = kept;
        room_settle(c, rr, bump.n > 0);
    }
    free(bump.v);
    if (annotate_txns(c, resp, err) < 0) return NULL;
    {
        /* The extensions see each room with its timeline events in this
         * response (receipts on them, §16.5). */
        size_t n = HASH_COUNT(resp->rooms), k = 0, n_ev = 0;
        for (rr = resp->rooms; rr; rr = rr->hh.next) n_ev += (size_t)rr->tl.n + rr->n_live;
        struct ext_room *rooms = xcalloc(n ? n : 1, sizeof *rooms);
        const char **evs = xcalloc(n_ev ? n_ev : 1, sizeof *evs), **ev = evs;
        for (rr = resp->rooms; rr; rr = rr->hh.next) {
            rooms[k++] = (struct ext_room){rr->room_id, ev, rr->tl.n + (int)rr->n_live};
            for (int i = 0; i < rr->tl.n; i++) *ev++ = rr->tl.events[i]->event_id;
            for (size_t i = 0; i < rr->n_live; i++) *ev++ = rr->live[i]->event_id;
        }
        struct ext_env env = ext_env_of(c, resp);
        int rc = ext_finish(&env, &c->ext, resp->ext, rooms, (int)k, err);
        free(rooms);
        free(evs);
        if (rc < 0) return NULL;
    }
    {
        /* §16.4: typing users of lazily loaded rooms get their member events. */
        struct typing_lazy tl = {c, resp, false};
        ext_resp_typing_each(resp->ext, typing_lazy_room, &tl);
        if (tl.any) {
            PGconn *pg = db_acquire(c->ctx->db, DB_WAIT_HTTP_MS, err);
            int rc = pg ? room_load_lazy(pg, c->pos, resp->rooms, err) : -1;
            if (pg) db_release(c->ctx->db, pg);
            if (rc < 0) return NULL;
        }
    }
    struct buf b = BUF_INIT;
    buf_puts(&b, "{\"lists\":{");
    bool first = true;
    for (struct sync_req_list *rl = c->muxed.lists; rl; rl = rl->hh.next) {
        struct clist *cl;
        HASH_FIND_STR(c->lists, rl->key, cl);
        if (!cl) continue;
        if (!first) buf_putc(&b, ',');
        first = false;
        buf_json_str(&b, rl->key, strlen(rl->key));
        buf_printf(&b, ":{\"count\":%zu", sync_list_count(cl->l));
        struct resp_list *ol;
        HASH_FIND_STR(resp->lists, rl->key, ol);
        if (ol && ol->ops.n) {
            buf_puts(&b, ",\"ops\":");
            sync_ops_to_json(&ol->ops, &b);
        }
        buf_putc(&b, '}');
    }
    buf_puts(&b, "},\"rooms\":{");
    first = true;
    HASH_ITER(hh, resp->rooms, rr, rt)
    {
        if (!first) buf_putc(&b, ',');
        first = false;
        buf_json_str(&b, rr->room_id, strlen(rr->room_id));
        buf_putc(&b, ':');
        room_write_json(&b, c->user_id, rr);
    }
    int64_t pos = ++c->next_pos;
    buf_puts(&b, "},\"extensions\":");
    ext_resp_write(&b, &c->ext, resp->ext);
    buf_printf(&b, ",\"pos\":\"%lld\"", (long long)pos);
    if (txn_id && *txn_id) {
        buf_puts(&b, ",\"txn_id\":");
        buf_json_str(&b, txn_id, strlen(txn_id));
    }
    buf_puts(&b, "}\n");
    /* Buffer it until acknowledged (§5.3). */
    if (c->n_buffered == CONN_MAX_BUFFERED) {
        free(c->buffered[0].body);
        memmove(c->buffered, c->buffered + 1, (CONN_MAX_BUFFERED - 1) * sizeof *c->buffered);
        c->n_buffered--;
    }
    c->buffered[c->n_buffered++] = (struct conn_buffered){pos, xstrndup(b.ptr, b.len), b.len};
    c->last_req_pos = req_pos;
    free(c->last_req_body);
    c->last_req_body = canonical_body ? xstrdup(canonical_body) : NULL;
    return buf_detach(&b, len);
}
