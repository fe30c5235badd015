#include "sync/conn_msc4186.h"

#include "sync/conn_priv.h"
#include "sync/msc4186_room.h"

int conn_msc4186_apply(struct conn *c, json_t *translated, struct conn_resp *resp, char **err)
{
    c->msc4186 = true;
    json_t *t = json_deep_copy(translated);
    json_t *lists = json_object_get(t, "lists");
    if (!json_is_object(lists)) {
        lists = json_object();
        json_object_set_new(t, "lists", lists);
    }
    for (struct sync_req_list *rl = c->muxed.lists; rl; rl = rl->hh.next) {
        json_t *nl = json_object_get(lists, rl->key);
        if (!nl) {
            json_object_set_new(lists, rl->key, json_pack("{s:b}", "deleted", 1));
            continue;
        }
        /* The sticky merge reads 0 as "unchanged"; here it means no timeline. */
        if (json_integer_value(json_object_get(nl, "timeline_limit")) == 0) rl->sub.timeline_limit = 0;
    }
    json_t *subs = json_object_get(t, "room_subscriptions"), *unsub = json_array();
    for (struct sync_req_sub *s = c->muxed.room_subscriptions; s; s = s->hh.next)
        if (!json_object_get(subs, s->room_id)) json_array_append_new(unsub, json_string(s->room_id));
    json_object_set_new(t, "unsubscribe_rooms", unsub);
    char *dump = json_dumps(t, JSON_COMPACT);
    json_decref(t);
    struct sync_req req;
    struct sync_req_error perr = {0};
    if (sync_req_parse(&req, dump, strlen(dump), &perr) != 0) {
        free(dump);
        *err = xasprintf("translated request rejected: %s", perr.message);
        return -1;
    }
    free(dump);
    int rc = conn_apply_request(c, &req, resp, err);
    sync_req_release(&req);
    return rc;
}

static void write_lists(struct conn *c, struct buf *b)
{
    buf_puts(b, "\"lists\":{");
    bool first = true;
    for (struct sync_req_list *rl = c->muxed.lists; rl; rl = rl->hh.next) {
        struct clist *cl;
        HASH_FIND_STR(c->lists, rl->key, cl);
        if (!cl) continue;
        if (!first) buf_putc(b, ',');
        first = false;
        int64_t count = (int64_t)sync_list_count(cl->l);
        buf_json_str(b, rl->key, strlen(rl->key));
        buf_printf(b, ":{\"count\":%lld", (long long)count);
        if (rl->ranges.n) buf_puts(b, ",\"ops\":[");
        for (size_t i = 0; i < rl->ranges.n; i++) {
            const struct sync_range *r = &rl->ranges.v[i];
            buf_printf(b, "%s{\"op\":\"SYNC\",\"range\":[%lld,%lld],\"room_ids\":[", i ? "," : "",
                       (long long)r->start, (long long)r->end);
            for (int64_t k = r->start; k <= r->end && k < count; k++) {
                const char *rid = sync_list_room_at(cl->l, k);
                if (k > r->start) buf_putc(b, ',');
                buf_json_str(b, rid, strlen(rid));
            }
            buf_puts(b, "]}");
        }
        if (rl->ranges.n) buf_putc(b, ']');
        buf_putc(b, '}');
    }
    buf_putc(b, '}');
}

/* The live state events of a room update that its required_state asks for,
 * combined over every source showing the room (its subscription and the
 * lists whose window holds it); members too when it loads them lazily. */
static size_t live_state_of(struct conn *c, const struct resp_room *rr, struct event ***out)
{
    *out = NULL;
    size_t n = 0;
    bool any = false;
    for (size_t i = 0; i < rr->n_live && !any; i++) any = rr->live[i]->state_key != NULL;
    if (!any) return 0;
    struct room_params p = {0};
    struct sync_req_sub *s = sync_req_find_sub(&c->muxed, rr->room_id);
    if (s) room_params_add(&p, 0, s->sub.required_state, s->sub.n_required_state, false);
    for (struct clist *cl = c->lists; cl; cl = cl->hh.next) {
        struct sync_req_list *rl = conn_muxed_list(c, cl->key);
        if (conn_in_window(cl, rl, rr->room_id))
            room_params_add(&p, 0, rl->sub.required_state, rl->sub.n_required_state, false);
    }
    struct rs_matcher m;
    rs_matcher_init(&m, p.rs, p.n_rs, c->user_id);
    for (size_t i = 0; i < rr->n_live; i++) {
        struct event *ev = rr->live[i];
        if (!ev->state_key) continue;
        bool lazy = m.lazy_members && strcmp(ev->type, "m.room.member") == 0;
        bool dup = false;
        for (int k = 0; k < rr->state.n && !dup; k++) dup = strcmp(rr->state.events[k]->event_id, ev->event_id) == 0;
        if (dup || !(lazy || rs_match(&m, ev->type, ev->state_key))) continue;
        *out = xrealloc(*out, (n + 1) * sizeof **out);
        (*out)[n++] = ev;
    }
    rs_matcher_release(&m);
    room_params_release(&p);
    return n;
}

void conn_msc4186_write(struct conn *c, struct conn_resp *resp, struct buf *b)
{
    write_lists(c, b);
    buf_puts(b, ",\"rooms\":{");
    bool first = true;
    for (struct resp_room *rr = resp->rooms; rr; rr = rr->hh.next) {
        struct croom *cr;
        HASH_FIND_STR(c->rooms, rr->room_id, cr);
        /* A live update shows the room as it is now (name, counts, heroes). */
        if (!rr->snapshot && cr && rr->ur != cr->ur) {
            user_room_unref(rr->ur);
            rr->ur = user_room_ref(cr->ur);
        }
        struct event **ls = NULL;
        size_t n_ls = rr->snapshot ? 0 : live_state_of(c, rr, &ls);
        if (!first) buf_putc(b, ',');
        first = false;
        buf_json_str(b, rr->room_id, strlen(rr->room_id));
        buf_putc(b, ':');
        msc4186_room_write(b, c->user_id, rr, n_ls ? ls : NULL, n_ls);
        if (n_ls) free(ls);
    }
    buf_putc(b, '}');
}
