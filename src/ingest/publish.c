/* Turning a committed poller result into cache changes: what the ingest
 * thread does after accumulate.c has written a response to the store. */
#include "ingest/publish.h"

#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/log.h"
#include "cache/cache.h"
#include "store/rooms.h"

static int cmp_event_nid(const void *a, const void *b)
{
    const struct event *x = *(struct event *const *)a, *y = *(struct event *const *)b;
    return x->nid < y->nid ? -1 : x->nid > y->nid;
}

static void add_update(struct cache_changes *ch, struct cache_update *u)
{
    ch->user_updates = xrealloc(ch->user_updates, (size_t)(ch->n_user_updates + 1) * sizeof *ch->user_updates);
    ch->user_updates[ch->n_user_updates++] = u;
}

/* The newest m.tag event of each joined room's account data in a response
 * (JSON, heap) into ch->tags; the caller frees each tags_json and the array. */
static void collect_tags(json_t *body, struct cache_changes *ch)
{
    json_t *join = json_object_get(json_object_get(body, "rooms"), "join");
    const char *rid;
    json_t *sec;
    json_object_foreach(join, rid, sec)
    {
        json_t *evs = json_object_get(json_object_get(sec, "account_data"), "events");
        json_t *last = NULL, *ev;
        size_t i;
        json_array_foreach(evs, i, ev)
        {
            json_t *t = json_object_get(ev, "type");
            if (json_is_string(t) && strcmp(json_string_value(t), "m.tag") == 0) last = ev;
        }
        if (!last) continue;
        ch->tags = xrealloc(ch->tags, (size_t)(ch->n_tags + 1) * sizeof *ch->tags);
        ch->tags[ch->n_tags++] = (struct cache_tags){rid, json_dumps(last, JSON_COMPACT)};
    }
}

static void add_room_update(struct cache_changes *ch, struct cache_update *u)
{
    ch->room_updates = xrealloc(ch->room_updates, (size_t)(ch->n_room_updates + 1) * sizeof *ch->room_updates);
    ch->room_updates[ch->n_room_updates++] = u;
}

/* Typing and public receipts go to every joined member, private receipts
 * only to their owner (the polling user). */
static void add_ephemeral(struct cache_changes *ch, struct acc_result *ar)
{
    for (size_t i = 0; i < ar->n_ephemeral; i++) {
        struct acc_ephemeral *e = &ar->ephemeral[i];
        struct cache_update *u;
        if (e->typing) {
            u = cache_update_new(CU_TYPING, e->room_id, NULL);
            u->json = xstrdup(e->typing);
            add_room_update(ch, u);
        }
        if (e->receipts) {
            u = cache_update_new(CU_RECEIPT, e->room_id, NULL);
            u->json = xstrdup(e->receipts);
            add_room_update(ch, u);
        }
        if (e->receipts_private) {
            u = cache_update_new(CU_RECEIPT, e->room_id, NULL);
            u->json = xstrdup(e->receipts_private);
            u->is_private = true;
            add_update(ch, u);
        }
    }
}

/* dst = cur moved on by the room's new timeline events, as the store's
 * syncv3_rooms and syncv3_room_bump rows now read (accumulate.c writes them
 * from the same events): the newest event, and per bump type its newest
 * non-state event. */
static void meta_advance(struct store_room *dst, const struct store_room *cur, const struct acc_room *r)
{
    store_room_copy(dst, cur);
    for (size_t j = 0; j < r->n_events; j++) {
        const struct event *e = r->events[j];
        if (e->nid > dst->latest_nid) {
            dst->latest_nid = e->nid;
            dst->latest_ts = e->ts;
        }
        int k = e->state_key ? -1 : store_bump_index(e->type);
        if (k >= 0 && e->nid > dst->bump.nid[k]) {
            dst->bump.nid[k] = e->nid;
            dst->bump.ts[k] = e->ts;
        }
    }
}

/* Reads what the caches need after a commit and applies it. */
int ingest_publish(struct cache *cache, PGconn *c, struct poller_result *res, struct acc_result *ar)
{
    struct cache_changes ch = {.user_id = res->user_id, .device_id = res->device_id};
    int rc = -1;
    char *err = NULL;
    const char **want = xcalloc(ar->n_rooms + 1, sizeof *want);
    int n_want = 0, n_events = 0, n_derived = 0;
    struct store_room *derived = NULL;
    for (size_t i = 0; i < ar->n_rooms; i++) {
        struct acc_room *r = &ar->rooms[i];
        bool wanted = cache_room_wanted(cache, r->room_id);
        for (size_t j = 0; !wanted && j < r->n_events; j++) {
            struct event *e = r->events[j];
            wanted = e->membership && e->state_key && cache_user_loaded(cache, e->state_key);
        }
        for (size_t j = 0; !wanted && j < r->n_members; j++)
            wanted = cache_user_loaded(cache, r->members[j].user_id);
        n_events += (int)r->n_events;
        if (!wanted) continue;
        /* Only timeline messages: the cached metadata plus the newest event
         * and bump rows is what a reload would read, without the queries. */
        struct room_meta *cur = r->state_changed || r->state_reset || r->gap || r->is_new || r->n_members
                                    ? NULL
                                    : cache_room(cache, r->room_id);
        if (!cur) {
            want[n_want++] = r->room_id;
            continue;
        }
        if (r->n_events) {
            derived = xrealloc(derived, (size_t)(n_derived + 1) * sizeof *derived);
            meta_advance(&derived[n_derived++], &cur->r, r);
        }
        room_meta_unref(cur);
    }
    if (n_want && store_rooms_get(c, want, n_want, &ch.metas, &ch.n_metas, &err) < 0) goto out;
    if (n_derived) {
        ch.metas = xrealloc(ch.metas, (size_t)(ch.n_metas + n_derived) * sizeof *ch.metas);
        memcpy(ch.metas + ch.n_metas, derived, (size_t)n_derived * sizeof *derived);
        ch.n_metas += n_derived;
        n_derived = 0;
    }
    ch.events = xcalloc((size_t)(n_events ? n_events : 1), sizeof *ch.events);
    ch.reset_rooms = xcalloc(ar->n_rooms + 1, sizeof *ch.reset_rooms);
    size_t n_members = 0;
    for (size_t i = 0; i < ar->n_rooms; i++) n_members += ar->rooms[i].n_members;
    ch.members = xcalloc(n_members + 1, sizeof *ch.members);
    for (size_t i = 0; i < ar->n_rooms; i++) {
        struct acc_room *r = &ar->rooms[i];
        for (size_t j = 0; j < r->n_members; j++)
            ch.members[ch.n_members++] = (struct cache_member){r->room_id, r->members[j].user_id,
                                                               r->members[j].membership, r->members[j].nid,
                                                               r->members[j].ts};
        for (size_t j = 0; j < r->n_events; j++) ch.events[ch.n_events++] = r->events[j];
        if (r->state_reset || r->gap) ch.reset_rooms[ch.n_reset++] = r->room_id;
    }
    qsort(ch.events, (size_t)ch.n_events, sizeof *ch.events, cmp_event_nid);
    ch.pos = ch.n_events ? ch.events[ch.n_events - 1]->nid : 0;
    for (int i = 0; i < ch.n_members; i++)
        if (ch.members[i].nid > ch.pos) ch.pos = ch.members[i].nid;

    bool loaded = cache_user_loaded(cache, res->user_id);
    if (loaded) {
        if (ar->n_invites) {
            struct store_user_room *rooms = NULL;
            int n = 0;
            if (store_user_rooms(c, res->user_id, &rooms, &n, &err) < 0) goto out;
            ch.invites = xcalloc((size_t)(n ? n : 1), sizeof *ch.invites);
            for (int i = 0; i < n; i++) {
                bool fresh = false;
                for (size_t k = 0; k < ar->n_invites && !fresh; k++)
                    fresh = rooms[i].invite && strcmp(rooms[i].room_id, ar->invites[k]) == 0;
                if (fresh)
                    ch.invites[ch.n_invites++] = rooms[i];
                else
                    store_user_room_release(&rooms[i]);
            }
            free(rooms);
        }
        if (ar->n_account_data &&
            (store_account_data_get(c, res->user_id, "", "m.direct", (char **)&ch.m_direct_json, &err) < 0 ||
             store_account_data_get(c, res->user_id, "", "m.ignored_user_list", (char **)&ch.ignored_json,
                                    &err) < 0))
            goto out;
        if (ar->n_account_data) collect_tags(res->body, &ch);
    }
    for (size_t i = 0; i < ar->n_unread; i++) {
        struct cache_update *u = cache_update_new(CU_UNREAD, ar->unread[i].room_id, NULL);
        u->notif = ar->unread[i].notif;
        u->highlight = ar->unread[i].highlight;
        if (!ar->unread[i].has_notif || !ar->unread[i].has_highlight) {
            struct user_room *cur = cache_user_room(cache, res->user_id, u->room_id);
            if (cur) {
                if (!ar->unread[i].has_notif) u->notif = cur->notif;
                if (!ar->unread[i].has_highlight) u->highlight = cur->highlight;
                user_room_unref(cur);
            }
        }
        add_update(&ch, u);
    }
    for (size_t i = 0; i < ar->n_leaves; i++) {
        struct cache_update *u = cache_update_new(CU_LEAVE, ar->leaves[i], NULL);
        if (ar->leave_events[i]) u->ev = event_ref(ar->leave_events[i]);
        add_update(&ch, u);
    }
    if (ar->n_account_data) add_update(&ch, cache_update_new(CU_ACCOUNT_DATA, NULL, NULL));
    add_ephemeral(&ch, ar);
    if (ar->n_own_seen) {
        /* Connections of this device holding back one of these events for
         * its transaction ID can stop waiting (docs/behaviour.md, "Transaction IDs"). */
        json_t *ids = json_array();
        for (size_t i = 0; i < ar->n_own_seen; i++) {
            const struct acc_own *o = &ar->own_seen[i];
            json_array_append_new(ids, json_pack("[s,s?]", o->event_id, o->txn_id));
        }
        struct cache_update *u = cache_update_new(CU_TXN, NULL, res->device_id);
        u->json = json_dumps(ids, JSON_COMPACT);
        json_decref(ids);
        add_update(&ch, u);
    }
    if (ar->n_to_device) add_update(&ch, cache_update_new(CU_TO_DEVICE, NULL, res->device_id));
    if (ar->device_data_changed) add_update(&ch, cache_update_new(CU_DEVICE_DATA, NULL, res->device_id));
    cache_apply(cache, &ch);
    rc = 0;
out:
    if (err) LOG_ERROR("ingest", "publishing %s/%s: %s", res->user_id, res->device_id, err);
    free(err);
    for (int i = 0; i < ch.n_metas; i++) store_room_release(&ch.metas[i]);
    free(ch.metas);
    for (int i = 0; i < n_derived; i++) store_room_release(&derived[i]);
    free(derived);
    for (int i = 0; i < ch.n_user_updates; i++) cache_update_unref(ch.user_updates[i]);
    free(ch.user_updates);
    for (int i = 0; i < ch.n_room_updates; i++) cache_update_unref(ch.room_updates[i]);
    free(ch.room_updates);
    for (int i = 0; i < ch.n_invites; i++) store_user_room_release(&ch.invites[i]);
    free(ch.invites);
    free((char *)ch.m_direct_json);
    free((char *)ch.ignored_json);
    for (int i = 0; i < ch.n_tags; i++) free((char *)ch.tags[i].tags_json);
    free(ch.tags);
    free(ch.events);
    free(ch.reset_rooms);
    free(ch.members);
    free(want);
    return rc;
}
