#include "sync/conn_msc4186.h"

#include "sync/conn_priv.h"
#include "sync/m4186_sent.h"
#include "sync/msc4186_room.h"

void conn_msc4186_release(struct conn *c)
{
    struct m4186_sent *s, *t;
    HASH_ITER(hh, c->m4186_sent, s, t)
    {
        HASH_DEL(c->m4186_sent, s);
        free(s->room_id);
        free(s->params);
        free(s);
    }
}

/* The combined parameters of every source showing the room (its
 * subscription and the lists whose window holds it). */
static void sources_of(struct conn *c, const char *room_id, struct room_params *p)
{
    *p = (struct room_params){0};
    struct sync_req_sub *s = sync_req_find_sub(&c->muxed, room_id);
    if (s) room_params_add(p, s->sub.timeline_limit, s->sub.required_state, s->sub.n_required_state, false);
    for (struct clist *cl = c->lists; cl; cl = cl->hh.next) {
        struct sync_req_list *rl = conn_muxed_list(c, cl->key);
        if (conn_in_window(cl, rl, room_id))
            room_params_add(p, rl->sub.timeline_limit, rl->sub.required_state, rl->sub.n_required_state, false);
    }
}

static int cmp_pair(const void *a, const void *b)
{
    const struct rs_pair *x = a, *y = b;
    int d = strcmp(x->type, y->type);
    return d ? d : strcmp(x->key, y->key);
}

/* The parameters as a canonical string: timeline_limit, then the sorted pairs. */
static char *params_key(struct conn *c, const char *room_id)
{
    struct room_params p;
    sources_of(c, room_id, &p);
    if (p.n_rs) qsort(p.rs, p.n_rs, sizeof *p.rs, cmp_pair);
    struct buf b = BUF_INIT;
    buf_printf(&b, "%lld", (long long)p.timeline_limit);
    for (size_t i = 0; i < p.n_rs; i++) buf_printf(&b, "\x1e%s\x1f%s", p.rs[i].type, p.rs[i].key);
    room_params_release(&p);
    return buf_detach(&b, NULL);
}

char *conn_msc4186_params(struct conn *c, const char *room_id)
{
    return params_key(c, room_id);
}

static void view_of(const struct user_room *ur, struct m4186_sent *v)
{
    v->latest_nid = ur->meta ? ur->meta->r.latest_nid : 0;
    v->notif = ur->notif;
    v->highlight = ur->highlight;
    v->invite = ur->invite;
    v->invite_ts = ur->invite_ts;
    v->is_dm = ur->is_dm;
}

static bool same_view(const struct m4186_sent *a, const struct m4186_sent *b)
{
    return a->latest_nid == b->latest_nid && a->notif == b->notif && a->highlight == b->highlight &&
           a->invite == b->invite && a->invite_ts == b->invite_ts && a->is_dm == b->is_dm;
}

/* Drops the response's snapshots of rooms the client already has as they are. */
static void drop_unchanged(struct conn *c, struct conn_resp *resp)
{
    struct resp_room *rr, *rt;
    HASH_ITER(hh, resp->rooms, rr, rt)
    {
        struct croom *cr;
        struct m4186_sent *s;
        if (!rr->snapshot || rr->n_live) continue;
        HASH_FIND_STR(c->rooms, rr->room_id, cr);
        HASH_FIND_STR(c->m4186_sent, rr->room_id, s);
        if (!cr || !s) continue;
        struct m4186_sent now;
        view_of(cr->ur, &now);
        if (!same_view(s, &now)) continue;
        char *key = params_key(c, rr->room_id);
        bool same = strcmp(key, s->params) == 0;
        free(key);
        if (!same) continue;
        HASH_DEL(resp->rooms, rr);
        resp_room_free(rr);
    }
}

/* Records what a written room now is on the client. */
static void note_sent(struct conn *c, const struct resp_room *rr, const struct croom *cr)
{
    struct m4186_sent *s;
    HASH_FIND_STR(c->m4186_sent, rr->room_id, s);
    if (!s) {
        if (!rr->snapshot) return; /* never sent whole: nothing to compare with later */
        s = xcalloc(1, sizeof *s);
        s->room_id = xstrdup(rr->room_id);
        HASH_ADD_KEYPTR(hh, c->m4186_sent, s->room_id, strlen(s->room_id), s);
    }
    if (rr->snapshot) {
        free(s->params);
        s->params = params_key(c, rr->room_id);
    }
    view_of(cr->ur, s);
}

/* Positions of MSC4186 connections are unique: each connection starts its
 * numbers at its own base, (seconds at start-up + connections made) * 10^9,
 * so a position of a replaced (or earlier process's) connection is never
 * taken for one of its successor's. */
#define POS_SPACING M4186_POS_SPACING
static atomic_llong pos_bases;

static int64_t next_base(void)
{
    long long zero = 0;
    atomic_compare_exchange_strong(&pos_bases, &zero, (long long)(clock_wall_ms() / 1000));
    return (int64_t)atomic_fetch_add(&pos_bases, 1) * POS_SPACING;
}

/* Parses an MSC3575 body built here (t is kept). Returns 0 or -1 with *err. */
static int parse_built(json_t *t, struct sync_req *req, char **err)
{
    char *dump = json_dumps(t, JSON_COMPACT);
    struct sync_req_error perr = {0};
    int rc = sync_req_parse(req, dump, strlen(dump), &perr);
    free(dump);
    if (rc == 0) return 0;
    *err = xasprintf("translated request rejected: %s", perr.message);
    return -1;
}

/* Removes the lists named in gone (steals it) from the connection. */
static int drop_lists(struct conn *c, json_t *gone, char **err)
{
    json_t *t = json_pack("{s:o}", "lists", gone);
    struct sync_req req;
    if (parse_built(t, &req, err) < 0) {
        json_decref(t);
        return -1;
    }
    sync_req_merge(&c->muxed, &req, NULL);
    sync_req_release(&req);
    const char *key;
    json_t *v;
    json_object_foreach(gone, key, v)
    {
        struct clist *cl;
        HASH_FIND_STR(c->lists, key, cl);
        if (!cl) continue;
        HASH_DEL(c->lists, cl);
        conn_clist_free(cl);
    }
    json_decref(t);
    return 0;
}

/* Parses an MSC3575 body built here and applies it. Steals t. */
static int apply_json(struct conn *c, json_t *t, struct conn_resp *resp, char **err)
{
    struct sync_req req;
    int rc = parse_built(t, &req, err);
    json_decref(t);
    if (rc < 0) return -1;
    rc = conn_apply_request(c, &req, resp, err);
    sync_req_release(&req);
    return rc;
}

int conn_msc4186_apply(struct conn *c, json_t *translated, struct conn_resp *resp, char **err)
{
    c->msc4186 = true;
    json_t *t = json_deep_copy(translated);
    json_t *lists = json_object_get(t, "lists");
    if (!json_is_object(lists)) {
        lists = json_object();
        json_object_set_new(t, "lists", lists);
    }
    json_t *gone = json_object();
    for (struct sync_req_list *rl = c->muxed.lists; rl; rl = rl->hh.next) {
        json_t *nl = json_object_get(lists, rl->key);
        if (!nl) {
            json_object_set_new(gone, rl->key, json_pack("{s:b}", "deleted", 1));
            continue;
        }
        /* The sticky merge reads 0 as "unchanged"; here it means no timeline. */
        if (json_integer_value(json_object_get(nl, "timeline_limit")) == 0) rl->sub.timeline_limit = 0;
    }
    int rc = 0;
    if (json_object_size(gone) + json_object_size(lists) > SYNC_REQ_MAX_LISTS) {
        /* Together past the parser's limit: remove the old lists first
         * (just the lists: a second full apply would read the extensions twice). */
        rc = drop_lists(c, gone, err);
    } else {
        json_object_update(lists, gone);
        json_decref(gone);
    }
    json_t *subs = json_object_get(t, "room_subscriptions"), *unsub = json_array();
    for (struct sync_req_sub *s = c->muxed.room_subscriptions; s; s = s->hh.next)
        if (!json_object_get(subs, s->room_id)) json_array_append_new(unsub, json_string(s->room_id));
    json_object_set_new(t, "unsubscribe_rooms", unsub);
    if (rc == 0)
        rc = apply_json(c, t, resp, err);
    else
        json_decref(t);
    if (rc == 0) drop_unchanged(c, resp);
    if (rc == 0 && resp->initial) c->next_pos = next_base();
    return rc;
}

static void write_lists(struct conn *c, struct buf *b)
{
    buf_puts(b, "\"lists\":{");
    bool first = true;
    for (struct clist *cl = c->lists; cl; cl = cl->hh.next) {
        const struct sync_req_list *rl = conn_muxed_list(c, cl->key);
        if (!rl) continue;
        buf_puts(b, first ? "" : ",");
        first = false;
        int64_t count = (int64_t)sync_list_count(cl->l);
        buf_json_str(b, rl->key, strlen(rl->key));
        buf_printf(b, ":{\"count\":%lld", (long long)count);
        if (rl->ranges.n) buf_puts(b, ",\"ops\":[");
        for (size_t i = 0; i < rl->ranges.n; i++) {
            const struct sync_range *r = &rl->ranges.v[i];
            buf_printf(b, "%s{\"op\":\"SYNC\",\"range\":[%lld,%lld],\"room_ids\":[", i ? "," : "", (long long)r->start,
                       (long long)r->end);
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
    struct room_params p;
    sources_of(c, rr->room_id, &p);
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

/* Rooms the client shows whose DM status changed since they were sent
 * (m.direct changed) get an object saying so. */
static void add_dm_changes(struct conn *c, struct conn_resp *resp)
{
    for (struct m4186_sent *s = c->m4186_sent; s; s = s->hh.next) {
        struct croom *cr;
        HASH_FIND_STR(c->rooms, s->room_id, cr);
        if (cr && !cr->ur->invite && s->is_dm != cr->ur->is_dm && conn_visible(c, s->room_id))
            conn_resp_room_get(c, resp, s->room_id);
    }
}

void conn_msc4186_write(struct conn *c, struct conn_resp *resp, struct buf *b)
{
    add_dm_changes(c, resp);
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
        struct m4186_sent *sent;
        HASH_FIND_STR(c->m4186_sent, rr->room_id, sent);
        bool dm_changed = !rr->snapshot && cr && sent && sent->is_dm != cr->ur->is_dm;
        struct event **ls = NULL;
        size_t n_ls = rr->snapshot ? 0 : live_state_of(c, rr, &ls);
        if (!first) buf_putc(b, ',');
        first = false;
        buf_json_str(b, rr->room_id, strlen(rr->room_id));
        buf_putc(b, ':');
        msc4186_room_write(b, c->user_id, rr, n_ls ? ls : NULL, n_ls, dm_changed);
        if (n_ls) free(ls);
        if (cr) note_sent(c, rr, cr);
    }
    buf_putc(b, '}');
}
