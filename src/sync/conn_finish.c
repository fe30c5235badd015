#include "sync/conn_priv.h"
#include "sync/conn_msc4186.h"

/* ---- finishing ---- */

/* Adds a user to what a response's room needs lazily loaded, once per
 * connection. Returns whether it was added. */
static bool lazy_need(struct croom *cr, struct resp_room *rr, const char *user_id)
{
    if (!user_id || !*user_id || conn_lazy_sent(cr, user_id)) return false;
    rr->lazy_need = xrealloc(rr->lazy_need, (rr->n_lazy_need + 1) * sizeof *rr->lazy_need);
    rr->lazy_need[rr->n_lazy_need++] = xstrdup(user_id);
    conn_lazy_mark(cr, user_id);
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
        if (!json_is_string(v) || conn_lazy_sent(cr, json_string_value(v))) continue;
        tl->any |= lazy_need(cr, conn_resp_room_get(tl->c, tl->r, room_id), json_string_value(v));
    }
    json_decref(j);
}

/* The user's own message events carry the transaction ID this
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

/* B of docs/behaviour.md, "Timestamps": the union of the bump_event_types of
 * every list (the strings are borrowed from the sticky request: free only
 * out->v). */
static void bump_union(struct conn *c, struct sync_strv *out)
{
    *out = (struct sync_strv){0};
    for (struct sync_req_list *rl = c->muxed.lists; rl; rl = rl->hh.next) {
        if (!conn_has_bump_types(rl)) continue;
        for (size_t i = 0; i < rl->bump_event_types.n; i++) {
            const char *t = rl->bump_event_types.v[i];
            if (!t || conn_strv_has(out, t)) continue;
            out->v = xrealloc(out->v, (out->n + 1) * sizeof *out->v);
            out->v[out->n++] = (char *)t;
        }
    }
}

/* After loading: what the connection now knows it sent (lazy members), and
 * the room's timestamp (docs/behaviour.md, "Timestamps") — only on snapshots and on updates carrying
 * events, never revealing activity from before the user's join. */
static void room_settle(struct conn *c, struct resp_room *rr, bool bump)
{
    struct croom *cr;
    HASH_FIND_STR(c->rooms, rr->room_id, cr);
    if (!cr || cr->ur->invite) return;
    if (rr->snapshot) {
        cr->lazy = rr->lazy;
        if (rr->lazy)
            for (int i = 0; i < rr->tl.n; i++) conn_lazy_mark(cr, rr->tl.events[i]->sender);
        for (int i = 0; i < rr->state.n; i++)
            if (strcmp(rr->state.events[i]->type, "m.room.member") == 0) conn_lazy_mark(cr, rr->state.events[i]->state_key);
    }
    if (!rr->snapshot && !rr->n_live) return;
    const struct store_room *m = cr->ur->meta ? &cr->ur->meta->r : NULL;
    int64_t ts;
    if (bump) {
        ts = rr->snapshot ? rr->timestamp : cr->ts;
        for (size_t i = 0; i < rr->n_live && !rr->snapshot; i++) {
            const struct event *ev = rr->live[i];
            for (struct sync_req_list *rl = c->muxed.lists; rl; rl = rl->hh.next)
                if (conn_has_bump_types(rl) && conn_strv_has(&rl->bump_event_types, ev->type) && ev->ts > ts) ts = ev->ts;
        }
    } else {
        ts = m ? m->latest_ts : 0;
        if (rr->n_live && rr->live[rr->n_live - 1]->ts > ts) ts = rr->live[rr->n_live - 1]->ts;
    }
    if (cr->ur->join_ts > ts) ts = cr->ur->join_ts;
    cr->ts = ts;
    rr->timestamp = ts;
}

/* A snapshot is built with the settings of every source that shows the room
 * (its subscription and each list whose window holds it): the largest
 * timeline_limit, the union of required_state, heroes if any asks. */
static void snapshot_all_sources(struct conn *c, struct resp_room *rr)
{
    struct croom *cr;
    HASH_FIND_STR(c->rooms, rr->room_id, cr);
    if (!cr || cr->ur->invite) return;
    struct sync_req_sub *s = sync_req_find_sub(&c->muxed, rr->room_id);
    if (s)
        room_params_add(&rr->params, s->sub.timeline_limit, s->sub.required_state, s->sub.n_required_state,
                        s->sub.has_include_heroes && s->sub.include_heroes);
    for (struct clist *cl = c->lists; cl; cl = cl->hh.next) {
        struct sync_req_list *rl = conn_muxed_list(c, cl->key);
        if (!conn_in_window(cl, rl, rr->room_id)) continue;
        room_params_add(&rr->params, rl->sub.timeline_limit, rl->sub.required_state, rl->sub.n_required_state,
                        rl->sub.has_include_heroes && rl->sub.include_heroes);
    }
    if (c->msc4186) room_params_all_state_wins(&rr->params);
}

static int cmp_event_nid(const void *a, const void *b)
{
    const struct event *x = *(struct event *const *)a, *y = *(struct event *const *)b;
    return (x->nid > y->nid) - (x->nid < y->nid);
}

/* A room re-sent whole in a response that also drained live events for it:
 * the snapshot's timeline was read at the connection's position, so it ends
 * with those events, but a small timeline_limit would cut some of them off.
 * The client is owed every one: the timeline becomes the union, in stream
 * order, and num_live counts the live events in it. */
static void merge_live(struct resp_room *rr)
{
    if (rr->delta) {
        /* A delta's timeline is the newest events since what was sent, which
         * ends with the live ones: they count as live where it holds them. */
        rr->num_live = 0;
        for (size_t i = 0; i < rr->n_live; i++) {
            for (int j = 0; j < rr->tl.n; j++)
                if (strcmp(rr->tl.events[j]->event_id, rr->live[i]->event_id) == 0) {
                    rr->num_live++;
                    break;
                }
            event_unref(rr->live[i]);
        }
        free(rr->live);
        rr->live = NULL;
        rr->n_live = 0;
        return;
    }
    size_t n = (size_t)rr->tl.n, k = n;
    struct event **evs = xmalloc((n + rr->n_live) * sizeof *evs);
    if (n) memcpy(evs, rr->tl.events, n * sizeof *evs);
    for (size_t i = 0; i < rr->n_live; i++) {
        bool have = false;
        for (size_t j = 0; j < n && !have; j++) have = evs[j] == rr->live[i] || strcmp(evs[j]->event_id, rr->live[i]->event_id) == 0;
        if (have)
            event_unref(rr->live[i]);
        else
            evs[k++] = rr->live[i];
    }
    qsort(evs, k, sizeof *evs, cmp_event_nid);
    free(rr->tl.events);
    rr->tl.events = evs;
    rr->tl.n = (int)k;
    rr->num_live = (int)rr->n_live;
    free(rr->live);
    rr->live = NULL;
    rr->n_live = 0;
}

/* The MSC3575 "lists" and "rooms" members. */
static void write_lists_rooms(struct conn *c, struct conn_resp *resp, struct buf *b)
{
    struct resp_room *rr, *rt;
    buf_puts(b, "\"lists\":{");
    bool first = true;
    for (struct sync_req_list *rl = c->muxed.lists; rl; rl = rl->hh.next) {
        struct clist *cl;
        HASH_FIND_STR(c->lists, rl->key, cl);
        if (!cl) continue;
        if (!first) buf_putc(b, ',');
        first = false;
        buf_json_str(b, rl->key, strlen(rl->key));
        buf_printf(b, ":{\"count\":%zu", sync_list_count(cl->l));
        struct resp_list *ol;
        HASH_FIND_STR(resp->lists, rl->key, ol);
        if (ol && ol->ops.n) {
            buf_puts(b, ",\"ops\":");
            sync_ops_to_json(&ol->ops, b);
        }
        buf_putc(b, '}');
    }
    buf_puts(b, "},\"rooms\":{");
    first = true;
    HASH_ITER(hh, resp->rooms, rr, rt)
    {
        if (!first) buf_putc(b, ',');
        first = false;
        buf_json_str(b, rr->room_id, strlen(rr->room_id));
        buf_putc(b, ':');
        room_write_json(b, c->user_id, rr);
    }
    buf_putc(b, '}');
}

/* Bytes of the buffered responses. */
static size_t buffered_bytes(const struct conn *c)
{
    size_t total = 0;
    for (int i = 0; i < c->n_buffered; i++) total += c->buffered[i].len;
    return total;
}

/* Buffers the response at pos until it is acknowledged (docs/behaviour.md,
 * "Positions and retransmits"), within CONN_MAX_BUFFERED responses and
 * CONN_MAX_BUFFERED_BYTES. Those at or below req_pos reached the client and
 * go first when either bound is passed; the newest stays, however large. A
 * response the client may not have received is never dropped, since a later
 * one would then skip what it carried: past the bounds with such responses
 * still buffered, the connection ends instead (the client starts over with
 * M_UNKNOWN_POS, which loses nothing). Request lock held. */
static void buffer_response(struct conn *c, int64_t pos, const struct buf *b, int64_t req_pos)
{
    int drop = 0;
    bool full = c->n_buffered == CONN_MAX_BUFFERED;
    size_t total = buffered_bytes(c) + b->len;
    while (drop < c->n_buffered && c->buffered[drop].pos <= req_pos &&
           (full || total > CONN_MAX_BUFFERED_BYTES)) {
        total -= c->buffered[drop].len;
        free(c->buffered[drop++].body);
        full = false;
    }
    if (drop) {
        memmove(c->buffered, c->buffered + drop, (size_t)(c->n_buffered - drop) * sizeof *c->buffered);
        c->n_buffered -= drop;
    }
    if (full || (total > CONN_MAX_BUFFERED_BYTES && c->n_buffered > 0)) {
        LOG_WARN("sync", "%s: %d unacknowledged responses (%zu bytes) would pass the bound; ending the connection",
                 c->user_id, c->n_buffered + 1, total);
        if (c->ctx->metrics) metrics_inc(c->ctx->metrics->api_expiry_conn_buffer_full);
        conn_abandon(c);
        for (int i = 0; i < c->n_buffered; i++) free(c->buffered[i].body);
        c->n_buffered = 0;
    }
    c->buffered[c->n_buffered++] = (struct conn_buffered){pos, xstrndup(b->ptr, b->len), b->len};
}

char *conn_finish(struct conn *c, struct conn_resp *resp, const char *txn_id, int64_t req_pos,
                  const char *canonical_body, size_t *len, char **err)
{
    /* MSC4186: rooms the client has are loaded as deltas. */
    if (c->msc4186) conn_msc4186_prepare(c, resp);
    /* Snapshot rooms take the connection's latest view of the room. */
    struct resp_room *rr, *rt;
    bool any_snapshot = false;
    HASH_ITER(hh, resp->rooms, rr, rt)
    {
        struct croom *cr;
        HASH_FIND_STR(c->rooms, rr->room_id, cr);
        if (rr->snapshot && !cr) {
            /* The user left while the room was to be re-sent: their leave
             * (a live event) still goes out, nothing else of the room. */
            if (rr->n_live) {
                rr->snapshot = false;
                room_params_release(&rr->params);
                continue;
            }
            HASH_DEL(resp->rooms, rr);
            resp_room_free(rr);
            continue;
        }
        if (rr->snapshot) {
            user_room_unref(rr->ur);
            rr->ur = user_room_ref(cr->ur);
            snapshot_all_sources(c, rr);
            any_snapshot = true;
        }
    }
    /* Live updates of lazily loaded rooms: members of new senders (docs/behaviour.md, "Lazy members"). */
    bool any_lazy = false;
    for (rr = resp->rooms; rr; rr = rr->hh.next) {
        struct croom *cr;
        if (rr->snapshot || !rr->n_live) continue;
        HASH_FIND_STR(c->rooms, rr->room_id, cr);
        if (!cr || !cr->lazy) continue;
        for (size_t i = 0; i < rr->n_live; i++) {
            const struct event *ev = rr->live[i];
            if (!*ev->sender || conn_lazy_sent(cr, ev->sender)) continue;
            /* A sender's own membership event in the timeline is their member event. */
            if (ev->membership && ev->state_key && strcmp(ev->state_key, ev->sender) == 0) {
                conn_lazy_mark(cr, ev->sender);
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
    for (rr = resp->rooms; rr; rr = rr->hh.next)
        if (rr->snapshot && rr->n_live) merge_live(rr);
    if (c->msc4186) conn_msc4186_trim(c, resp);
    bool ignores = cache_user_ignores_anyone(c->ctx->cache, c->user_id);
    for (rr = resp->rooms; rr; rr = rr->hh.next) {
        /* Snapshot timelines leave out messages of ignored users (docs/behaviour.md, "Ignored users"). */
        int kept = 0;
        for (int i = 0; i < rr->tl.n; i++) {
            if (ignores && conn_ignored_message(c, rr->tl.events[i]))
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
         * response (receipts on them: docs/behaviour.md, "receipts"). */
        size_t n = HASH_COUNT(resp->rooms), k = 0, n_ev = 0;
        for (rr = resp->rooms; rr; rr = rr->hh.next) n_ev += (size_t)rr->tl.n + rr->n_live;
        struct ext_room *rooms = xcalloc(n ? n : 1, sizeof *rooms);
        const char **evs = xcalloc(n_ev ? n_ev : 1, sizeof *evs), **ev = evs;
        for (rr = resp->rooms; rr; rr = rr->hh.next) {
            rooms[k++] = (struct ext_room){rr->room_id, ev, rr->tl.n + (int)rr->n_live};
            for (int i = 0; i < rr->tl.n; i++) *ev++ = rr->tl.events[i]->event_id;
            for (size_t i = 0; i < rr->n_live; i++) *ev++ = rr->live[i]->event_id;
        }
        struct ext_env env = conn_ext_env_of(c, resp);
        int rc = ext_finish(&env, &c->ext, resp->ext, rooms, (int)k, err);
        free(rooms);
        free(evs);
        if (rc < 0) return NULL;
    }
    {
        /* Typing users of lazily loaded rooms get their member events (docs/behaviour.md, "typing"). */
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
    buf_putc(&b, '{');
    if (c->msc4186 && conn_persist_catch_up(c, resp, err) < 0) {
        buf_release(&b);
        return NULL;
    }
    if (c->msc4186)
        conn_msc4186_write(c, resp, &b);
    else
        write_lists_rooms(c, resp, &b);
    int64_t pos = ++c->next_pos;
    buf_puts(&b, ",\"extensions\":");
    ext_resp_write(&b, &c->ext, resp->ext);
    buf_printf(&b, ",\"pos\":\"%lld\"", (long long)pos);
    if (txn_id && *txn_id) {
        buf_puts(&b, ",\"txn_id\":");
        buf_json_str(&b, txn_id, strlen(txn_id));
    }
    buf_puts(&b, "}\n");
    if (conn_persist_save(c, resp, pos, err) < 0) {
        buf_release(&b);
        return NULL;
    }
    buffer_response(c, pos, &b, req_pos);
    c->last_req_pos = req_pos;
    free(c->last_req_body);
    c->last_req_body = canonical_body ? xstrdup(canonical_body) : NULL;
    return buf_detach(&b, len);
}
