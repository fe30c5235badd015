#include "sync/conn_priv.h"

/* ---- live updates ---- */

/* Joining a room leaves its predecessor out of every list (docs/behaviour.md, "Old rooms and upgrades"). */
static void relist_predecessor(struct conn *c, struct conn_resp *r, struct croom *cr)
{
    const char *pred = cr->ur->meta ? cr->ur->meta->r.predecessor : NULL;
    struct croom *pc = NULL;
    if (pred && *pred) HASH_FIND_STR(c->rooms, pred, pc);
    if (pc) conn_relist_room(c, r, pc->ur->room_id, false);
}

/* A space named by a filter gained or lost a child: re-evaluate the child. */
static void space_child_changed(struct conn *c, struct conn_resp *r, const struct event *ev)
{
    struct cspace *sp;
    HASH_FIND_STR(c->spaces, ev->room_id, sp);
    if (!sp) return;
    bool was = sync_roomset_has(&sp->children, ev->state_key);
    bool is = conn_child_event_valid(ev->json);
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
    if (child) conn_relist_room(c, r, child->ur->room_id, false);
}

/* The user joined or left a space a filter names: its children enter or
 * leave the lists (only joined spaces count: docs/behaviour.md, "Filters"). On a join the children
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
        if (conn_read_space_children(c, &id, 1, &now, &err) == 0) {
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
        if (child) conn_relist_room(c, r, child->ur->room_id, false);
    }
    sync_roomset_release(&affected);
}

/* Leaving an upgraded room's replacement brings the old room back. */
static void relist_replaced(struct conn *c, struct conn_resp *r, const char *room_id)
{
    for (struct croom *cr = c->rooms; cr; cr = cr->hh.next) {
        const char *up = cr->ur->meta ? cr->ur->meta->r.upgraded : NULL;
        if (up && strcmp(up, room_id) == 0) conn_relist_room(c, r, cr->ur->room_id, false);
    }
}

/* The user is no longer in the room (left, kicked, banned, invite gone). */
static void room_gone(struct conn *c, struct conn_resp *r, struct croom *cr, const char *room_id)
{
    char *id = xstrdup(room_id);
    conn_croom_del(c, cr);
    conn_relist_room(c, r, id, false);
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

/* The user's view of a room as of update u (ref), or NULL when they are not
 * in it at that position. Updates are drained after the cache has moved on
 * (a message and the user's leave can come in one batch): membership is
 * decided by the connection's own view, moved forward by the user's own
 * membership updates, which carry the view right after them. The metadata
 * (name, counts) may be the cache's newer one. */
static struct user_room *view_at(struct conn *c, struct croom *cr, const struct cache_update *u, bool own)
{
    if (own) return u->member_ur ? user_room_ref(u->member_ur) : NULL;
    if (!cr) return NULL;
    struct user_room *ur = cache_user_room(c->ctx->cache, c->user_id, u->room_id);
    if (ur && ur->invite == cr->ur->invite) return ur;
    user_room_unref(ur);
    return user_room_ref(cr->ur);
}

static void live_event(struct conn *c, struct conn_resp *r, struct cache_update *u)
{
    struct event *ev = u->ev;
    struct croom *cr;
    HASH_FIND_STR(c->rooms, u->room_id, cr);
    bool own_membership = ev->state_key && ev->membership && strcmp(ev->state_key, c->user_id) == 0;
    /* An invitee sees nothing of the room but its own membership changes. */
    if (!own_membership && (!cr || cr->ur->invite)) return;
    struct user_room *ur = view_at(c, cr, u, own_membership);
    bool has = ur != NULL;
    if (!has) {
        if (!cr) return;
        /* The user left: deliver this event (their leave) once, then drop the room. */
        if (own_membership && conn_visible(c, u->room_id)) {
            struct resp_room *rr = conn_resp_room_get(c, r, u->room_id);
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
    bool was_visible = cr && !cr->ur->invite && conn_visible(c, u->room_id);
    char *old_name = NULL, *old_avatar = NULL;
    int64_t old_joined = -1, old_invited = -1;
    if (cr && cr->ur->meta) {
        old_joined = cr->ur->meta->r.joined_count;
        old_invited = cr->ur->meta->r.invited_count;
    }
    if (cr) {
        old_name = xstrdup(conn_croom_name(c, cr));
        old_avatar = room_display_avatar(c->user_id, cr->ur);
    }
    if (!cr)
        cr = conn_croom_add(c, ur);
    else
        conn_croom_set(c, cr, ur);
    /* Refresh the view the response holds, if any. */
    struct resp_room *rr;
    HASH_FIND_STR(r->rooms, u->room_id, rr);
    if (rr && rr->ur) {
        user_room_unref(rr->ur);
        rr->ur = user_room_ref(cr->ur);
    }
    /* Lists with bump_event_types move only for their types (docs/behaviour.md, "Recency and bump_event_types"). */
    for (struct clist *cl = c->lists; cl; cl = cl->hh.next) {
        struct sync_req_list *rl = conn_muxed_list(c, cl->key);
        if (rl && conn_has_bump_types(rl) && !cr->ur->invite && conn_strv_has(&rl->bump_event_types, ev->type))
            conn_bump_set(c, cl, cr, ev->ts);
    }
    conn_relist_room(c, r, u->room_id, joined_now);
    if (joined_now) room_joined(c, r, cr);
    if (ev->state_key && strcmp(ev->type, "m.space.child") == 0) space_child_changed(c, r, ev);
    HASH_FIND_STR(r->rooms, u->room_id, rr);
    if ((rr && rr->snapshot) || was_visible || conn_visible(c, u->room_id)) {
        rr = conn_resp_room_get(c, r, u->room_id);
        if (!conn_ignored_message(c, ev)) {
            rr->live = xrealloc(rr->live, (rr->n_live + 1) * sizeof *rr->live);
            rr->live[rr->n_live++] = event_ref(ev);
            rr->num_live++;
        }
        if (old_joined >= 0 && cr->ur->meta &&
            (cr->ur->meta->r.joined_count != old_joined || cr->ur->meta->r.invited_count != old_invited))
            rr->member_counts_changed = true;
        /* Name and avatar are sent live only when they change. */
        if (old_name && strcmp(old_name, conn_croom_name(c, cr)) != 0) {
            free(rr->live_name);
            rr->live_name = xstrdup(conn_croom_name(c, cr));
            if (conn_wants_heroes(c, u->room_id)) rr->params.include_heroes = true;
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
            conn_croom_set(c, cr, ur);
            conn_relist_room(c, r, ids[i], false);
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
        conn_hold_for_txn(c, r, u);
        break;
    case CU_TXN: conn_record_txns(r, u->json); break;
    case CU_UNREAD:
        if (!cr) break;
        {
            /* The cache already holds the new counts (or newer ones). */
            struct user_room *ur = cache_user_room(c->ctx->cache, c->user_id, u->room_id);
            if (!ur) break;
            conn_croom_set(c, cr, ur);
            conn_relist_room(c, r, u->room_id, false);
            struct resp_room *rr = conn_resp_room_get(c, r, u->room_id);
            user_room_unref(rr->ur);
            rr->ur = user_room_ref(cr->ur);
            rr->counts_changed = true;
        }
        break;
    case CU_INVITE:
    case CU_JOIN: {
        /* As of the update: the cache may already hold a later leave. */
        struct user_room *ur = u->member_ur ? user_room_ref(u->member_ur) : NULL;
        if (!ur) break;
        bool joined_now = u->kind == CU_JOIN && (!cr || cr->ur->invite);
        if (cr)
            conn_croom_set(c, cr, ur);
        else
            cr = conn_croom_add(c, ur);
        conn_relist_room(c, r, u->room_id, joined_now);
        if (joined_now) room_joined(c, r, cr);
        break;
    }
    case CU_LEAVE:
        if (!cr) break;
        /* Only a room the timeline never told us about (an invite rejected
         * or withdrawn): show the user their leave once, then drop the room. */
        if (u->ev && conn_visible(c, u->room_id)) {
            struct resp_room *rr = conn_resp_room_get(c, r, u->room_id);
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
            if (ur) conn_croom_set(c, cr, ur);
        }
        conn_relist_room(c, r, u->room_id, false);
        if (conn_visible(c, u->room_id)) {
            /* The snapshot replaces what was drained of the room so far: its
             * timeline stops at the gap (limited, with the chunk's token), and
             * events from before a gap must not look contiguous with it. */
            struct resp_room *rr;
            HASH_FIND_STR(r->rooms, u->room_id, rr);
            if (rr) {
                for (size_t i = 0; i < rr->n_live; i++) event_unref(rr->live[i]);
                rr->n_live = 0;
                rr->num_live = 0;
            }
            struct sync_req_sub *s = sync_req_find_sub(&c->muxed, u->room_id);
            for (struct clist *cl = c->lists; cl; cl = cl->hh.next) {
                struct sync_req_list *rl = conn_muxed_list(c, cl->key);
                if (conn_in_window(cl, rl, u->room_id)) conn_add_snapshot(c, r, u->room_id, &rl->sub);
            }
            if (s) conn_add_snapshot(c, r, u->room_id, &s->sub);
        }
        break;
    case CU_ACCOUNT_DATA:
        if (cr) {
            /* The room's tags changed (the tags / not_tags filters). */
            struct user_room *ur = cache_user_room(c->ctx->cache, c->user_id, u->room_id);
            if (ur) {
                conn_croom_set(c, cr, ur);
                conn_relist_room(c, r, u->room_id, false);
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
        struct ext_env env = conn_ext_env_of(c, r);
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
        conn_queued_sub(c, n);
        if (!n) break;
        for (int i = 0; i < n; i++) {
            apply_update(c, resp, batch[i]);
            cache_update_unref(batch[i]);
        }
        free(batch);
        max -= n;
        if (max <= 0) break;
    }
    struct ext_env env = conn_ext_env_of(c, resp);
    char *err = NULL;
    if (ext_refresh(&env, &c->ext, resp->ext, &err) < 0) {
        /* Still pending: conn_finish tries again. */
        LOG_WARN("sync", "%s: reading extension data failed: %s", c->user_id, err ? err : "?");
        free(err);
    }
}
