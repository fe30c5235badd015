#include "sync/conn_priv.h"

/* ---- lifecycle ---- */

static void on_update(void *ud, struct cache_update *u);
static void stop_listening(struct conn *c);

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
void conn_bump_clear(struct conn *c, struct clist *l)
{
    if (c->bump_list == l) {
        c->bump_list = NULL;
        for (struct croom *cr = c->rooms; cr; cr = cr->hh.next) cr->has_bump = false;
    }
    /* The table goes in one piece; the entries are then freed along their
     * own links, which HASH_CLEAR leaves alone. */
    struct bump_ts *b = l->bump, *next;
    HASH_CLEAR(hh, l->bump);
    for (; b; b = next) {
        next = b->hh.next;
        if ((char *)b < l->bump_block || (char *)b >= l->bump_block + l->bump_block_len) free(b);
    }
    free(l->bump_block);
    l->bump_block = NULL;
    l->bump_block_len = 0;
}

void conn_clist_free(struct conn *c, struct clist *l)
{
    conn_bump_clear(c, l);
    sync_list_free(l->l);
    free(l->key);
    free(l);
}

static void cu_unref(struct conn_user *cu)
{
    if (!cu || atomic_fetch_sub(&cu->refs, 1) != 1) return;
    free(cu->user_id);
    free(cu);
}

void conn_queued_sub(struct conn *c, int n)
{
    if (!n) return;
    if (c->cu) atomic_fetch_sub(&c->cu->queued, n);
    if (c->ctx->metrics) metrics_add(c->ctx->metrics->api_queued_updates, -(double)n);
}

/* The user's shared counts, made on first use (map lock held). */
static struct conn_user *cu_get(struct conn_map *m, const char *user_id)
{
    struct conn_user *cu;
    HASH_FIND_STR(m->users, user_id, cu);
    if (!cu) {
        cu = xcalloc(1, sizeof *cu);
        cu->user_id = xstrdup(user_id);
        atomic_init(&cu->refs, 1);
        HASH_ADD_KEYPTR(hh, m->users, cu->user_id, strlen(cu->user_id), cu);
    }
    atomic_fetch_add(&cu->refs, 1);
    return cu;
}

static void conn_destroy(struct conn *c)
{
    /* Every path that ends a connection unregisters it first; this is the
     * last guard against the ingest thread calling into freed memory. */
    stop_listening(c);
    c->bump_list = NULL; /* the rooms go too: nothing to reset in them */
    struct clist *l, *lt;
    HASH_ITER(hh, c->lists, l, lt)
    {
        HASH_DEL(c->lists, l);
        conn_clist_free(c, l);
    }
    struct cspace *sp, *spt;
    HASH_ITER(hh, c->spaces, sp, spt)
    {
        HASH_DEL(c->spaces, sp);
        sync_roomset_release(&sp->children);
        free(sp->space_id);
        free(sp);
    }
    /* The room map goes in one piece (as conn_bump_clear's table), then the
     * views along their own links. */
    struct croom *r = c->rooms, *rt;
    HASH_CLEAR(hh, c->rooms);
    for (; r; r = rt) {
        rt = r->hh.next;
        conn_croom_release(r);
    }
    free(c->room_block);
    for (int i = 0; i < c->q_n; i++) cache_update_unref(c->queue[i]);
    conn_queued_sub(c, c->q_n);
    cu_unref(c->cu);
    free(c->queue);
    for (int i = 0; i < c->n_buffered; i++) free(c->buffered[i].body);
    sync_req_release(&c->muxed);
    ext_state_release(&c->ext);
    conn_msc4186_release(c);
    conn_persist_release(c);
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

/* Takes the "listening" state away (under q_lock) and unregisters the
 * listener if it was registered. Once this returns, the ingest thread can no
 * longer reach the connection: cache_unlisten takes the cache's write lock,
 * which the listener runs under. The caller must not hold the cache lock. */
static void stop_listening(struct conn *c)
{
    pthread_mutex_lock(&c->q_lock);
    bool was = c->listening;
    c->listening = false;
    pthread_mutex_unlock(&c->q_lock);
    if (was) cache_unlisten(c->ctx->cache, c->user_id, &c->listener);
}

/* Marks the connection dead, unregisters it from the cache and wakes its
 * parked request. Ending is independent of how the connection died: a
 * connection already marked dead (its queue overflowed, its token expired)
 * is still registered until this runs. The caller must not hold the cache
 * lock. */
static void conn_end(struct conn *c)
{
    pthread_mutex_lock(&c->q_lock);
    c->dead = true;
    struct http_req *w = c->waiter;
    c->waiter = NULL;
    pthread_mutex_unlock(&c->q_lock);
    if (w) {
        http_req_wake(w);
        http_req_unref(w);
    }
    stop_listening(c);
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
    struct conn_user *cu, *cut;
    HASH_ITER(hh, m->users, cu, cut)
    {
        HASH_DEL(m->users, cu);
        cu_unref(cu);
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

/* The least recently used of the connections whose key starts with the
 * plen bytes of prefix (idle ones first: only the map holds them, no request
 * is in flight, so none is cut short when an idle one can go), and how many
 * there are. Map lock held. */
static struct conn *lru_of(struct conn_map *m, const char *prefix, size_t plen, int *n)
{
    *n = 0;
    struct conn *oldest = NULL, *oldest_idle = NULL, *it, *tmp;
    HASH_ITER(hh, m->conns, it, tmp)
    {
        if (strncmp(it->key, prefix, plen) != 0) continue;
        (*n)++;
        if (!oldest || it->last_used_ms < oldest->last_used_ms) oldest = it;
        if (atomic_load(&it->refs) == 1 && (!oldest_idle || it->last_used_ms < oldest_idle->last_used_ms))
            oldest_idle = it;
    }
    return oldest_idle ? oldest_idle : oldest;
}

struct conn *conn_map_create(struct conn_map *m, const char *user_id, const char *device_id, const char *conn_id,
                             struct conn **replaced)
{
    struct conn *c = conn_new(m->ctx, user_id, device_id, conn_id);
    pthread_mutex_lock(&m->lock);
    struct conn *old;
    HASH_FIND_STR(m->conns, c->key, old);
    if (old) HASH_DEL(m->conns, old);
    /* A device keeps at most CONN_MAX_PER_DEVICE connections and a user
     * CONN_MAX_PER_USER across their devices: beyond that the least recently
     * used one ends, so no client can grow memory without bound by inventing
     * conn_ids or devices. */
    size_t plen = strlen(c->key) - strlen(conn_id);
    int n = 0;
    struct conn *evicted = lru_of(m, c->key, plen, &n);
    if (n < CONN_MAX_PER_DEVICE) evicted = NULL;
    if (!evicted) {
        char *uprefix = xasprintf("%s|", user_id);
        evicted = lru_of(m, uprefix, strlen(uprefix), &n);
        free(uprefix);
        if (n < CONN_MAX_PER_USER) evicted = NULL;
    }
    if (evicted) HASH_DEL(m->conns, evicted);
    c->cu = cu_get(m, user_id);
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
        LOG_INFO("sync", "%s: too many connections (at most %d per device, %d per user); ending the least "
                 "recently used", user_id, CONN_MAX_PER_DEVICE, CONN_MAX_PER_USER);
        if (m->ctx->metrics) metrics_inc(m->ctx->metrics->api_destroyed_conns);
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
    /* Counted with the expiries, as the Go proxy did for explicit closes. */
    int n = 0;
    for (struct conn *e = ended; e; e = e->hh.next) n++;
    if (n && m->ctx->metrics) metrics_add(m->ctx->metrics->api_expiry_conn_timed_out, n);
    end_all(ended);
    free(prefix);
    /* The device is gone: the registry of served devices need not keep it. */
    if (m->ctx->ext) ext_registry_forget(m->ctx->ext, user_id, device_id);
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
    /* Shared counts no connection uses any more. */
    struct conn_user *cu, *cut;
    HASH_ITER(hh, m->users, cu, cut)
    {
        if (atomic_load(&cu->refs) != 1) continue;
        HASH_DEL(m->users, cu);
        cu_unref(cu);
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
    /* Before anything changes the connection: a first response's state not
     * stored yet is stored as it was sent. */
    conn_persist_flush(c);
}

void conn_settle(struct conn *c)
{
    /* Whoever holds the lock took it after the response was finished, so
     * conn_lock has written what it owed. */
    if (pthread_mutex_trylock(&c->req_lock) != 0) return;
    conn_persist_flush(c);
    pthread_mutex_unlock(&c->req_lock);
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
        int user_q = c->cu ? atomic_load(&c->cu->queued) : 0;
        if (c->q_n >= CONN_MAX_QUEUE || user_q >= CONN_MAX_QUEUE_PER_USER) {
            /* The client is not keeping up: end the connection rather than
             * hold unbounded memory or stall ingest. */
            LOG_WARN("sync", "%s: %d updates queued (%d for the user); ending the connection", c->user_id, c->q_n,
                     user_q);
            c->dead = true;
            if (c->ctx->metrics) metrics_inc(c->ctx->metrics->api_expiry_conn_buffer_full);
            /* Nobody drains a dead connection: give its share of the user's
             * budget back now, so the user's other connections go on. */
            for (int i = 0; i < c->q_n; i++) cache_update_unref(c->queue[i]);
            conn_queued_sub(c, c->q_n);
            c->q_n = 0;
        } else {
            if (c->q_n == c->q_cap) {
                c->q_cap = c->q_cap ? 2 * c->q_cap : 16;
                c->queue = xrealloc(c->queue, (size_t)c->q_cap * sizeof *c->queue);
            }
            c->queue[c->q_n++] = cache_update_ref(u);
            if (c->cu) atomic_fetch_add(&c->cu->queued, 1);
            if (c->ctx->metrics) metrics_add(c->ctx->metrics->api_queued_updates, 1);
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
void conn_hold_for_txn(struct conn *c, struct conn_resp *r, const struct cache_update *u)
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
void conn_record_txns(struct conn_resp *r, const char *json)
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

size_t conn_resp_room_count(const struct conn_resp *r)
{
    return r ? HASH_COUNT(r->rooms) : 0;
}

struct sync_ops *conn_resp_ops(struct conn_resp *r, const char *key)
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

struct resp_room *conn_resp_room_get(struct conn *c, struct conn_resp *r, const char *room_id)
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
    struct resp_room *rr = conn_resp_room_get(c, r, room_id);
    rr->snapshot = true;
    room_params_add(&rr->params, sub->timeline_limit, sub->required_state, sub->n_required_state,
                    sub->has_include_heroes && sub->include_heroes);
}

void conn_add_snapshot(struct conn *c, struct conn_resp *r, const char *room_id, const struct sync_roomsub *sub)
{
    struct croom *cr;
    HASH_FIND_STR(c->rooms, room_id, cr);
    if (!cr) return;
    add_snapshot_one(c, r, room_id, sub);
    if (!sub->include_old_rooms || cr->ur->invite) return;
    /* The predecessors the user is joined to, newest first, until the first
     * one they are not in; in `rooms` only, never in list ops
     * (docs/behaviour.md, "Old rooms and upgrades"). */
    for (int depth = 0; depth < CONN_MAX_OLD_ROOMS && cr->ur->meta; depth++) {
        const char *pred = cr->ur->meta->r.predecessor;
        if (!pred || !*pred || strcmp(pred, room_id) == 0) break;
        HASH_FIND_STR(c->rooms, pred, cr);
        if (!cr || cr->ur->invite) break;
        add_snapshot_one(c, r, cr->ur->room_id, sub->include_old_rooms);
    }
}

void conn_add_snapshots(struct conn *c, struct conn_resp *r, struct sync_roomset *set,
                          const struct sync_roomsub *sub)
{
    for (struct sync_roomset_entry *e = set->h; e; e = e->hh.next) conn_add_snapshot(c, r, e->room_id, sub);
}
