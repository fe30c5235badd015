#include "sync/conn_priv.h"

/* ---- filters and keys ---- */


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

bool conn_joined(struct conn *c, const char *room_id)
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

/* Message events of users the syncing user ignores are not shown
 * (state events are). */
bool conn_ignored_message(struct conn *c, const struct event *ev)
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
    /* A room replaced by one the user is joined to is in no list. */
    if (m && m->upgraded && *m->upgraded && conn_joined(c, m->upgraded)) return false;
    if (!rl->has_filters) return true;
    const struct sync_filters *f = &rl->filters;
    bool encrypted = cr->ur->invite ? invite_has(cr->ur->invite_state, "m.room.encryption", NULL)
                                   : (m && m->encrypted);
    if (!tri_ok(f->is_encrypted, encrypted)) return false;
    if (!tri_ok(f->is_tombstoned, m && m->upgraded && *m->upgraded)) return false;
    if (!tri_ok(f->is_dm, cr->ur->is_dm)) return false;
    if (!tri_ok(f->is_invite, cr->ur->invite)) return false;
    if (f->room_name_like && *f->room_name_like && !ufold_contains(conn_croom_name(c, cr), f->room_name_like))
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
            any = f->spaces.v[i] && conn_joined(c, f->spaces.v[i]) &&
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

bool conn_has_bump_types(const struct sync_req_list *rl)
{
    return rl->has_bump_event_types && rl->bump_event_types.n > 0;
}

/* A list's recency values are kept in the rooms for one list of the
 * connection (conn.bump_list, the first with bump_event_types: a client
 * rarely has more), in the list's own table for the others. */
static struct bump_ts *bump_entry(struct clist *cl, const struct user_room *ur)
{
    struct bump_ts *b;
    HASH_FIND_BYHASHVALUE(hh, cl->bump, ur->room_id, ur->room_id_len, ur->room_hash, b);
    return b;
}

void conn_bump_set(struct conn *c, struct clist *cl, struct croom *cr, int64_t ts)
{
    if (c->bump_list == cl) {
        cr->bump = ts;
        cr->has_bump = true;
        return;
    }
    const struct user_room *ur = cr->ur;
    struct bump_ts *b = bump_entry(cl, ur);
    if (!b) {
        b = xcalloc(1, sizeof *b + ur->room_id_len + 1);
        memcpy(b->room_id, ur->room_id, ur->room_id_len + 1);
        HASH_ADD_KEYPTR_BYHASHVALUE(hh, cl->bump, b->room_id, ur->room_id_len, ur->room_hash, b);
    }
    b->ts = ts;
}

/* Size of one entry inside a block, keeping the next one aligned. */
static size_t bump_entry_size(size_t len)
{
    size_t a = _Alignof(struct bump_ts), sz = sizeof(struct bump_ts) + len + 1;
    return (sz + a - 1) / a * a;
}

/* Adds the recency of n rooms to a list that has none yet: in the rooms when
 * no list keeps its values there yet, else in the list's table, all entries
 * in one allocation (a first request of a large account otherwise spends
 * much of its time allocating them, and freeing them when it is replaced).
 * The entries keep the order of crs, the order rebuild_list walks them in. */
static void bump_fill(struct conn *c, struct clist *cl, struct croom *const *crs, const int64_t *ts, size_t n)
{
    if (!c->bump_list) {
        c->bump_list = cl;
        for (size_t i = 0; i < n; i++) crs[i]->bump = ts[i], crs[i]->has_bump = true;
        return;
    }
    size_t total = 0;
    for (size_t i = 0; i < n; i++) total += bump_entry_size(crs[i]->ur->room_id_len);
    cl->bump_block = xcalloc(total ? total : 1, 1);
    cl->bump_block_len = total;
    char *p = cl->bump_block;
    for (size_t i = 0; i < n; i++) {
        const struct user_room *ur = crs[i]->ur;
        struct bump_ts *b = (struct bump_ts *)(void *)p;
        memcpy(b->room_id, ur->room_id, ur->room_id_len + 1);
        b->ts = ts[i];
        HASH_ADD_KEYPTR_BYHASHVALUE(hh, cl->bump, b->room_id, ur->room_id_len, ur->room_hash, b);
        p += bump_entry_size(ur->room_id_len);
    }
}

/* Invites use the invite's time; lists with bump_event_types keep their own
 * per-room value (frozen at the room's latest activity when first
 * seen, moved only by events of the listed types); others the latest event.
 * Never before the user's join. */
static struct sync_list_keys keys_of(struct conn *c, struct clist *cl, struct croom *cr,
                                     const struct sync_req_list *rl, struct bump_ts **hint)
{
    const struct store_room *m = cr->ur->meta ? &cr->ur->meta->r : NULL;
    int64_t recency = cr->ur->invite ? cr->ur->invite_ts : (m ? m->latest_ts : 0);
    if (!cr->ur->invite && conn_has_bump_types(rl)) {
        bool found = false;
        if (c->bump_list == cl) {
            found = cr->has_bump;
            if (found) recency = cr->bump;
        } else {
            /* hint: the entry after the one the previous room found, which
             * is this room's when the entries were added in the rooms' order. */
            struct bump_ts *b = hint && *hint && !strcmp((*hint)->room_id, cr->ur->room_id) ? *hint
                                                                                          : bump_entry(cl, cr->ur);
            if (hint && b) *hint = b->hh.next;
            found = b != NULL;
            if (found) recency = b->ts;
        }
        if (!found) conn_bump_set(c, cl, cr, recency > cr->ur->join_ts ? recency : cr->ur->join_ts);
    }
    if (!cr->ur->invite && cr->ur->join_ts > recency) recency = cr->ur->join_ts;
    return (struct sync_list_keys){
        .room_id = cr->ur->room_id,
        .room_id_len = cr->ur->room_id_len,
        .hash = cr->ur->room_hash,
        .recency = recency,
        .name = sorts_by_name(rl) ? conn_croom_name(c, cr) : NULL,
        .notification_count = cr->ur->notif,
        .highlight_count = cr->ur->invite ? 1 : cr->ur->highlight,
        .encrypted = m && m->encrypted,
    };
}

/* Changing an existing list's bump_event_types changes only future
 * ordering. Every joined room keeps the recency it has now (its place in the
 * list, or its latest activity); without this a room would be frozen only
 * when it is next re-listed, i.e. after the event that re-lists it, so an
 * event of an unlisted type would still move it. Bump types removed: the
 * frozen values go, so a later change freezes afresh. */
static void bump_refreeze(struct conn *c, struct clist *cl, const struct sync_req_list *rl)
{
    conn_bump_clear(c, cl);
    if (!conn_has_bump_types(rl)) return;
    for (struct croom *cr = c->rooms; cr; cr = cr->hh.next) {
        if (cr->ur->invite) continue;
        const struct sync_list_room *lr = sync_list_get(cl->l, cr->ur->room_id);
        const struct store_room *m = cr->ur->meta ? &cr->ur->meta->r : NULL;
        int64_t ts = lr ? lr->recency : (m ? m->latest_ts : 0);
        conn_bump_set(c, cl, cr, ts > cr->ur->join_ts ? ts : cr->ur->join_ts);
    }
}

struct sync_req_list *conn_muxed_list(struct conn *c, const char *key)
{
    return sync_req_find_list(&c->muxed, key);
}

static void rebuild_list(struct conn *c, struct clist *cl, const struct sync_req_list *rl)
{
    sync_list_clear(cl->l);
    sync_list_set_sort(cl->l, rl->sort, rl->n_sort);
    size_t n = HASH_COUNT(c->rooms), k = 0;
    struct sync_list_keys *keys = xmalloc((n ? n : 1) * sizeof *keys);
    struct bump_ts *hint = cl->bump;
    for (struct croom *cr = c->rooms; cr; cr = cr->hh.next)
        if (matches(c, cr, rl)) keys[k++] = keys_of(c, cl, cr, rl, &hint);
    sync_list_upsert_many(cl->l, keys, k);
    free(keys);
}

/* Points the room at a new view (taking the caller's reference). The hash
 * key is the view's room ID string, so the entry is re-keyed. */
void conn_croom_set(struct conn *c, struct croom *cr, struct user_room *ur)
{
    if (cr->ur) {
        HASH_DEL(c->rooms, cr);
        user_room_unref(cr->ur);
    }
    cr->ur = ur;
    HASH_ADD_KEYPTR_BYHASHVALUE(hh, c->rooms, ur->room_id, ur->room_id_len, ur->room_hash, cr);
    free(cr->name);
    cr->name = NULL;
}

/* The room's computed name (built when first needed: most connections never
 * sort or filter by name). */
const char *conn_croom_name(struct conn *c, struct croom *cr)
{
    if (!cr->name) cr->name = room_display_name(c->user_id, cr->ur);
    return cr->name;
}

struct croom *conn_croom_add(struct conn *c, struct user_room *ur)
{
    struct croom *cr = xcalloc(1, sizeof *cr);
    conn_croom_set(c, cr, ur);
    return cr;
}

void conn_croom_del(struct conn *c, struct croom *cr)
{
    HASH_DEL(c->rooms, cr);
    conn_croom_release(cr);
}

void conn_croom_release(struct croom *cr)
{
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

bool conn_lazy_sent(const struct croom *cr, const char *user_id)
{
    struct lazy_member *lm;
    HASH_FIND_STR(cr->lazy_sent, user_id, lm);
    return lm != NULL;
}

void conn_lazy_mark(struct croom *cr, const char *user_id)
{
    if (!user_id || !*user_id || conn_lazy_sent(cr, user_id)) return;
    struct lazy_member *lm = xcalloc(1, sizeof *lm);
    lm->user_id = xstrdup(user_id);
    HASH_ADD_KEYPTR(hh, cr->lazy_sent, lm->user_id, strlen(lm->user_id), lm);
}

/* Whether the room is inside a window of the list (every room is, for
 * slow_get_all_rooms). rl may be NULL (a list being deleted). */
bool conn_in_window(const struct clist *cl, const struct sync_req_list *rl, const char *room_id)
{
    if (!rl) return false;
    int64_t i = sync_list_index_of(cl->l, room_id);
    return i >= 0 && (rl->slow_get_all_rooms || sync_ranges_contains(&rl->ranges, i));
}

bool conn_visible(struct conn *c, const char *room_id)
{
    if (sync_req_find_sub(&c->muxed, room_id)) return true;
    for (struct clist *cl = c->lists; cl; cl = cl->hh.next)
        if (conn_in_window(cl, conn_muxed_list(c, cl->key), room_id)) return true;
    return false;
}

/* Whether a source that shows the room (its subscription, or a list whose
 * window holds it) asks for heroes: include_heroes is ORed (docs/behaviour.md, "Combined subscriptions"). */
bool conn_wants_heroes(struct conn *c, const char *room_id)
{
    struct sync_req_sub *s = sync_req_find_sub(&c->muxed, room_id);
    if (s && s->sub.has_include_heroes && s->sub.include_heroes) return true;
    for (struct clist *cl = c->lists; cl; cl = cl->hh.next) {
        struct sync_req_list *rl = conn_muxed_list(c, cl->key);
        if (rl && rl->sub.has_include_heroes && rl->sub.include_heroes && conn_in_window(cl, rl, room_id)) return true;
    }
    return false;
}

/* Re-evaluates one room in every list after its data changed (or it was
 * added/removed), emitting live ops and snapshots. force_snapshot: a join. */
void conn_relist_room(struct conn *c, struct conn_resp *r, const char *room_id, bool force_snapshot)
{
    struct croom *cr;
    HASH_FIND_STR(c->rooms, room_id, cr);
    for (struct clist *cl = c->lists; cl; cl = cl->hh.next) {
        struct sync_req_list *rl = conn_muxed_list(c, cl->key);
        if (!rl) continue;
        struct sync_roomset snaps;
        sync_roomset_init(&snaps);
        struct sync_ops *ops = conn_resp_ops(r, cl->key);
        bool in = sync_list_index_of(cl->l, room_id) >= 0;
        if (cr && matches(c, cr, rl)) {
            struct sync_list_keys k = keys_of(c, cl, cr, rl, NULL);
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
        conn_add_snapshots(c, r, &snaps, &rl->sub);
        sync_roomset_release(&snaps);
    }
    if (force_snapshot && cr) {
        struct sync_req_sub *s = sync_req_find_sub(&c->muxed, room_id);
        if (s && !cr->ur->invite) conn_add_snapshot(c, r, room_id, &s->sub);
    }
}

/* ---- extensions ---- */

bool conn_strv_has(const struct sync_strv *v, const char *s)
{
    for (size_t i = 0; i < v->n; i++)
        if (v->v[i] && strcmp(v->v[i], s) == 0) return true;
    return false;
}

/* Listed in `rooms` ("*" first: a confirmed subscription, i.e. a subscribed
 * room the user is joined to), or inside the window of a list named in
 * `lists` ("*" first: any list). See docs/behaviour.md, "Extension scope". */
static bool ext_in_scope(void *ud, const struct ext_params *p, const char *room_id)
{
    struct conn *c = ud;
    if (p->rooms.n) {
        if (strcmp(p->rooms.v[0], "*") == 0) {
            struct croom *cr;
            HASH_FIND_STR(c->rooms, room_id, cr);
            if (cr && !cr->ur->invite && sync_req_find_sub(&c->muxed, room_id)) return true;
        } else if (conn_strv_has(&p->rooms, room_id)) {
            return true;
        }
    }
    if (!p->lists.n) return false;
    bool all = strcmp(p->lists.v[0], "*") == 0;
    for (struct clist *cl = c->lists; cl; cl = cl->hh.next) {
        if ((all || conn_strv_has(&p->lists, cl->key)) && conn_in_window(cl, conn_muxed_list(c, cl->key), room_id)) return true;
    }
    return false;
}

struct ext_env conn_ext_env_of(struct conn *c, const struct conn_resp *r)
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
    /* The request pinned the user when it found them loaded (cache_pin_user),
     * so eviction leaves them until this registers the listener. */
    if (cache_snapshot_user(c->ctx->cache, c->user_id, &c->listener, &rooms, &n, &pos) < 0) {
        *err = xstrdup("the user's rooms are not loaded");
        return -1;
    }
    /* One allocation for all views: a first request of a large account
     * otherwise spends much of its time in malloc, and freeing them again. */
    c->room_block = xcalloc(n ? (size_t)n : 1, sizeof *c->room_block);
    for (int i = 0; i < n; i++) {
        c->room_block[i].in_block = true;
        conn_croom_set(c, &c->room_block[i], rooms[i]);
    }
    free(rooms);
    c->pos = pos;
    c->loaded = true;
    /* The listener is registered now. A connection ended meanwhile (replaced
     * while this request was loading) did not see it: unregister here. */
    pthread_mutex_lock(&c->q_lock);
    bool ended = c->dead;
    c->listening = !ended;
    pthread_mutex_unlock(&c->q_lock);
    if (ended) cache_unlisten(c->ctx->cache, c->user_id, &c->listener);
    return 0;
}

/* On the connection's first request, a list with bump_event_types
 * starts each joined room at its newest event of those types after the join
 * (or the join). Lists added later start from the latest event (keys_of).
 * The default types (MSC4186's) are answered from the cached room metadata;
 * other types, and rooms the cache cannot answer, ask the store. */
static int load_bump(struct conn *c, struct clist *cl, const struct sync_req_list *rl, char **err)
{
    size_t n = HASH_COUNT(c->rooms), k = 0, m = 0;
    /* all_*: every joined room, in the rooms' order; ids/after/ts/at: the
     * ones the store answers (at: their index in all_*). */
    struct croom **all_cr = xcalloc(n ? n : 1, sizeof *all_cr);
    int64_t *all_ts = xcalloc(n ? n : 1, sizeof *all_ts);
    const char **ids = xcalloc(n ? n : 1, sizeof *ids);
    int64_t *after = xcalloc(n ? n : 1, sizeof *after);
    int64_t *ts = xcalloc(n ? n : 1, sizeof *ts);
    size_t *at = xcalloc(n ? n : 1, sizeof *at);
    bool cached = store_bump_is_default((const char *const *)rl->bump_event_types.v, (int)rl->bump_event_types.n);
    for (struct croom *cr = c->rooms; cr; cr = cr->hh.next) {
        if (cr->ur->invite) continue;
        int64_t t = cached && cr->ur->meta ? store_bump_ts(&cr->ur->meta->r.bump, cr->ur->join_nid, c->pos) : -1;
        all_cr[m] = cr;
        all_ts[m] = t > cr->ur->join_ts ? t : cr->ur->join_ts;
        if (t < 0) {
            at[k] = m;
            after[k] = cr->ur->join_nid;
            ids[k++] = cr->ur->room_id;
        }
        m++;
    }
    int rc = 0;
    if (k) {
        rc = -1;
        PGconn *pg = db_acquire(c->ctx->db, DB_WAIT_HTTP_MS, err);
        if (!pg) goto out;
        rc = store_latest_of_types(pg, ids, after, (int)k, (const char *const *)rl->bump_event_types.v,
                                   (int)rl->bump_event_types.n, c->pos, ts, err);
        db_release(c->ctx->db, pg);
        if (rc < 0) goto out;
        for (size_t i = 0; i < k; i++)
            if (ts[i] > all_ts[at[i]]) all_ts[at[i]] = ts[i];
    }
    if (!cl->bump && c->bump_list != cl)
        bump_fill(c, cl, all_cr, all_ts, m);
    else
        for (size_t i = 0; i < m; i++) conn_bump_set(c, cl, all_cr[i], all_ts[i]);
out:
    free(all_cr);
    free(all_ts);
    free(ids);
    free(after);
    free(ts);
    free(at);
    return rc;
}

/* Whether an m.space.child event's content has an array `via` (event JSON). */
bool conn_child_event_valid(const char *json)
{
    json_t *j = json_loads(json, 0, NULL);
    bool ok = json_is_array(json_object_get(json_object_get(j, "content"), "via"));
    json_decref(j);
    return ok;
}

/* Reads the children of k spaces as of the connection's position: the state
 * keys of their m.space.child events with an array `via`. out[i] (initialised
 * by the caller) answers ids[i]. */
int conn_read_space_children(struct conn *c, const char *const *ids, int k, struct sync_roomset *out, char **err)
{
    struct store_tl *st = xcalloc((size_t)k, sizeof *st);
    const char *types[] = {"m.space.child"}, *keys[] = {"*"};
    PGconn *pg = db_acquire(c->ctx->db, DB_WAIT_HTTP_MS, err);
    int rc = pg ? store_state_at(pg, ids, k, true, c->pos, types, keys, 1, st, err) : -1;
    if (pg) db_release(c->ctx->db, pg);
    for (int i = 0; i < k && rc == 0; i++)
        for (int e = 0; e < st[i].n; e++)
            if (st[i].events[e]->state_key && conn_child_event_valid(st[i].events[e]->json))
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
        rc = conn_read_space_children(c, ids, k, sets, err);
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
                conn_clist_free(c, cl);
            }
            continue;
        }
        struct sync_req_list *rl = conn_muxed_list(c, d->key);
        if (!rl) continue;
        struct sync_ops *ops = conn_resp_ops(resp, d->key);
        struct sync_roomset snaps;
        sync_roomset_init(&snaps);
        if (!cl) {
            cl = xcalloc(1, sizeof *cl);
            cl->key = xstrdup(d->key);
            cl->l = sync_list_new();
            HASH_ADD_KEYPTR(hh, c->lists, cl->key, strlen(cl->key), cl);
            if ((resp->initial && conn_has_bump_types(rl) && load_bump(c, cl, rl, err) < 0) ||
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
        conn_add_snapshots(c, resp, &snaps, &rl->sub);
        sync_roomset_release(&snaps);
    }
    for (size_t i = 0; i < ch.n_subs; i++) {
        const struct sync_sub_delta *d = &ch.subs[i];
        if (d->change == SYNC_SUB_UNSUBSCRIBED) continue;
        struct sync_req_sub *s = sync_req_find_sub(&c->muxed, d->room_id);
        struct croom *cr;
        HASH_FIND_STR(c->rooms, d->room_id, cr);
        /* Only rooms the user is joined to: nothing leaks of other rooms. */
        if (s && cr && !cr->ur->invite) conn_add_snapshot(c, resp, d->room_id, &s->sub);
    }
    sync_req_changes_release(&ch);
    ext_apply_request(&c->ext, req->extensions);
    struct ext_env env = conn_ext_env_of(c, resp);
    return ext_collect(&env, &c->ext, resp->ext, err);
}
