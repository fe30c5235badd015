#include "sync/conn_msc4186.h"

#include "sync/conn_priv.h"
#include "sync/m4186_sent.h"
#include "sync/msc4186_request.h"
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
 * subscription and the lists whose window holds it); returns how many. */
static int sources_of(struct conn *c, const char *room_id, struct room_params *p)
{
    *p = (struct room_params){0};
    int n = 0;
    struct sync_req_sub *s = sync_req_find_sub(&c->muxed, room_id);
    if (s) {
        room_params_add(p, s->sub.timeline_limit, s->sub.required_state, s->sub.n_required_state, false);
        n++;
    }
    for (struct clist *cl = c->lists; cl; cl = cl->hh.next) {
        struct sync_req_list *rl = conn_muxed_list(c, cl->key);
        if (conn_in_window(cl, rl, room_id)) {
            room_params_add(p, rl->sub.timeline_limit, rl->sub.required_state, rl->sub.n_required_state, false);
            n++;
        }
    }
    room_params_all_state_wins(p);
    return n;
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
    for (size_t i = 0; i < p.n_rs; i++) {
        buf_putc(&b, '\x1e');
        buf_puts(&b, p.rs[i].type);
        buf_putc(&b, '\x1f');
        buf_puts(&b, p.rs[i].key);
    }
    room_params_release(&p);
    return buf_detach(&b, NULL);
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

/* FNV-1a over a string (NULL and "" alike), chained from h. */
static uint64_t hash_str(uint64_t h, const char *v)
{
    for (const char *p = v ? v : ""; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    return (h ^ 0xff) * 1099511628211ULL; /* a separator: ("a","b") is not ("ab","") */
}

#define HASH_SEED 14695981039346656037ULL

static uint64_t members_hash(const struct store_room *m)
{
    uint64_t h = HASH_SEED;
    if (!m) return h;
    char n[48];
    snprintf(n, sizeof n, "%lld/%lld", (long long)m->joined_count, (long long)m->invited_count);
    h = hash_str(h, n);
    h = hash_str(h, m->name && *m->name ? "named" : "");
    for (int i = 0; i < m->n_heroes && i < MSC4186_MAX_HEROES + 1; i++) {
        h = hash_str(h, m->heroes[i].user_id);
        h = hash_str(h, m->heroes[i].displayname);
        h = hash_str(h, m->heroes[i].avatar_url);
    }
    return h;
}

static const struct store_room *meta_of(const struct user_room *ur)
{
    return ur && ur->meta ? &ur->meta->r : NULL;
}

/* Whether the client has the room as a joined room under its current join:
 * then anything re-sent of it is a delta. */
static struct m4186_sent *deltable(struct conn *c, const char *room_id, struct croom **crp)
{
    struct croom *cr;
    struct m4186_sent *s;
    HASH_FIND_STR(c->rooms, room_id, cr);
    HASH_FIND_STR(c->m4186_sent, room_id, s);
    *crp = cr;
    if (!cr || !s || cr->ur->invite || s->invite || s->join_nid != cr->ur->join_nid || !s->params) return NULL;
    return s;
}

static int64_t timeline_limit_of(struct conn *c, const char *room_id)
{
    struct room_params p;
    sources_of(c, room_id, &p);
    int64_t limit = p.timeline_limit;
    room_params_release(&p);
    return limit;
}

/* Whether a canonical parameter string asks for lazily loaded members. */
static bool key_lazy(const char *key)
{
    static const char pair[] = "\x1em.room.member\x1f" RS_LAZY;
    for (const char *p = strstr(key, pair); p; p = strstr(p + 1, pair)) {
        char next = p[sizeof pair - 1];
        if (next == '\0' || next == '\x1e') return true;
    }
    return false;
}

void conn_msc4186_prepare(struct conn *c, struct conn_resp *resp)
{
    for (struct resp_room *rr = resp->rooms; rr; rr = rr->hh.next) {
        struct croom *cr;
        struct m4186_sent *s = deltable(c, rr->room_id, &cr);
        if (!s) continue;
        int64_t limit = timeline_limit_of(c, rr->room_id);
        /* A live update with more events than the timeline_limit becomes a
         * delta too: the newest timeline_limit of them, limited. */
        if (!rr->snapshot && !(limit > 0 && rr->n_live > (size_t)limit)) continue;
        rr->snapshot = true;
        rr->delta = true;
        rr->expanded = limit > s->tl_limit;
        rr->tl_after = rr->expanded ? 0 : s->pos;
        if (!rr->expanded && !key_lazy(s->params)) {
            /* $LAZY added: the members of the senders of the timeline the
             * client has are owed too, so the timeline is read from the join
             * and cut back to the new events after loading. */
            char *now = params_key(c, rr->room_id);
            if (key_lazy(now)) rr->tl_after = 0;
            free(now);
        }
    }
}

/* The required_state pairs of a canonical parameter string (heap array of
 * borrowed-then-copied strings; free with free_pairs). */
static size_t key_pairs(const char *key, struct rs_pair **out)
{
    *out = NULL;
    size_t n = 0;
    const char *p = strchr(key, '\x1e');
    while (p) {
        const char *t = p + 1, *us = strchr(t, '\x1f');
        if (!us) break;
        const char *end = strchr(us + 1, '\x1e');
        size_t klen = end ? (size_t)(end - us - 1) : strlen(us + 1);
        *out = xrealloc(*out, (n + 1) * sizeof **out);
        (*out)[n++] = (struct rs_pair){xstrndup(t, (size_t)(us - t)), xstrndup(us + 1, klen)};
        p = end;
    }
    return n;
}

static void free_pairs(struct rs_pair *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i].type);
        free(v[i].key);
    }
    free(v);
}

/* Keeps of a delta's loaded state what the client lacks: entries the
 * parameters now cover and did not when it was last written, entries changed
 * since then, and members it has never been sent (lazy loading). */
static void trim_state(struct conn *c, struct resp_room *rr, struct croom *cr, const struct m4186_sent *s)
{
    struct rs_pair *old = NULL;
    size_t n_old = key_pairs(s->params, &old);
    struct rs_matcher om, nm;
    rs_matcher_init(&om, old, n_old, c->user_id);
    rs_matcher_init(&nm, rr->params.rs, rr->params.n_rs, c->user_id);
    int kept = 0;
    for (int i = 0; i < rr->state.n; i++) {
        struct event *ev = rr->state.events[i];
        const char *sk = ev->state_key ? ev->state_key : "";
        bool changed = ev->nid > s->pos, keep;
        if (rs_match(&om, ev->type, sk))
            keep = changed;
        else if (rs_match(&nm, ev->type, sk))
            keep = true;
        else /* a lazily loaded member */
            keep = changed || !conn_lazy_sent(cr, sk);
        if (keep)
            rr->state.events[kept++] = ev;
        else
            event_unref(ev);
    }
    rr->state.n = kept;
    rs_matcher_release(&om);
    rs_matcher_release(&nm);
    free_pairs(old, n_old);
}

void conn_msc4186_trim(struct conn *c, struct conn_resp *resp)
{
    for (struct resp_room *rr = resp->rooms; rr; rr = rr->hh.next) {
        if (!rr->delta) continue;
        struct croom *cr;
        struct m4186_sent *s = deltable(c, rr->room_id, &cr);
        if (!s) {
            rr->delta = rr->expanded = false; /* cannot happen: prepared from the same records */
            continue;
        }
        trim_state(c, rr, cr, s);
        if (!rr->expanded && rr->tl_after == 0) {
            /* Read from the join for lazy members ($LAZY added): keep only
             * the events the client lacks, which follow what it has. */
            int kept = 0;
            for (int i = 0; i < rr->tl.n; i++) {
                if (rr->tl.events[i]->nid > s->pos)
                    rr->tl.events[kept++] = rr->tl.events[i];
                else
                    event_unref(rr->tl.events[i]);
            }
            if (kept < rr->tl.n) rr->tl.limited = false;
            rr->tl.n = kept;
        }
        /* num_live: the trailing events newer than the request's position
         * (also those that came while the room was out of view). */
        if (resp->from_pos > 0) {
            int live = 0;
            for (int i = rr->tl.n - 1; i >= 0 && rr->tl.events[i]->nid > resp->from_pos; i--) live++;
            rr->num_live = live;
        }
        /* prev_batch only where the client is to paginate: a gap, or the
         * timeline re-sent whole. */
        if (!rr->tl.limited && !rr->expanded) {
            free(rr->tl.prev_batch);
            rr->tl.prev_batch = NULL;
        }
    }
}

/* What of the room's name, avatar and members differs from what was last
 * written to the client. */
static struct msc4186_changes changes_of(const struct m4186_sent *s, const struct store_room *m)
{
    struct msc4186_changes ch = {0};
    if (!s || !m) return ch;
    ch.name = hash_str(HASH_SEED, m->name) != s->name_hash;
    ch.avatar = hash_str(HASH_SEED, m->avatar) != s->avatar_hash;
    ch.members = members_hash(m) != s->members_hash;
    return ch;
}

/* Whether a delta carries nothing for the client. */
static bool delta_empty(const struct resp_room *rr, const struct m4186_sent *s, const struct msc4186_changes *ch,
                        bool dm_changed)
{
    return !rr->tl.n && !rr->expanded && !rr->state.n && !ch->name && !ch->avatar && !ch->members && !dm_changed &&
           rr->ur && s->notif == rr->ur->notif && s->highlight == rr->ur->highlight;
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
    /* Live updates carry what the current parameters cover: the client
     * holds the room as those parameters show it. */
    free(s->params);
    s->params = params_key(c, rr->room_id);
    int64_t limit = timeline_limit_of(c, rr->room_id);
    bool whole = rr->snapshot && !rr->delta;
    /* A limit lowered sticks only once a timeline was cut to it (as Synapse):
     * 10, 5, 10 without a gap re-sends nothing. */
    if (whole || rr->expanded || (rr->delta && rr->tl.limited)) s->tl_limit = limit;
    view_of(cr->ur, s);
    s->join_nid = cr->ur->join_nid;
    s->pos = c->pos;
    const struct store_room *m = meta_of(cr->ur);
    s->name_hash = hash_str(HASH_SEED, m ? m->name : NULL);
    s->avatar_hash = hash_str(HASH_SEED, m ? m->avatar : NULL);
    s->members_hash = members_hash(m);
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
        conn_clist_free(c, cl);
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
    c->m4186_final = msc4186_req_final(translated);
    resp->from_pos = c->pos;
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
        /* The final text's lists carry only the count. */
        size_t n_ops = c->m4186_final ? 0 : rl->ranges.n;
        if (n_ops) buf_puts(b, ",\"ops\":[");
        for (size_t i = 0; i < n_ops; i++) {
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
        if (n_ops) buf_putc(b, ']');
        buf_putc(b, '}');
    }
    buf_putc(b, '}');
}

/* The live state events of a room update that its required_state asks for,
 * combined over every source showing the room (its subscription and the
 * lists whose window holds it); members too when it loads them lazily. A
 * room no source shows any more (the user left it) still carries the user's
 * own membership: matrix-rust-sdk learns it left only from required_state. */
static size_t live_state_of(struct conn *c, const struct resp_room *rr, struct event ***out)
{
    *out = NULL;
    size_t n = 0;
    bool any = false;
    for (size_t i = 0; i < rr->n_live && !any; i++) any = rr->live[i]->state_key != NULL;
    if (!any) return 0;
    struct room_params p;
    bool shown = sources_of(c, rr->room_id, &p) > 0;
    struct rs_matcher m;
    rs_matcher_init(&m, p.rs, p.n_rs, c->user_id);
    for (size_t i = 0; i < rr->n_live; i++) {
        struct event *ev = rr->live[i];
        if (!ev->state_key) continue;
        bool lazy = m.lazy_members && strcmp(ev->type, "m.room.member") == 0;
        bool dup = false;
        for (int k = 0; k < rr->state.n && !dup; k++) dup = strcmp(rr->state.events[k]->event_id, ev->event_id) == 0;
        bool own = !shown && strcmp(ev->type, "m.room.member") == 0 && strcmp(ev->state_key, c->user_id) == 0;
        if (dup || !(lazy || own || rs_match(&m, ev->type, ev->state_key))) continue;
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

/* The user's membership of a written room when the object says it: rooms
 * sent whole (join or invite) and rooms the user is no longer in (the
 * membership of its own member event among the live events: leave or ban). */
static const char *membership_of(const struct conn *c, const struct resp_room *rr, const struct croom *cr)
{
    if (cr) {
        if (!rr->snapshot || rr->delta) return NULL;
        return cr->ur->invite ? "invite" : "join";
    }
    for (size_t i = rr->n_live; i-- > 0;) {
        const struct event *ev = rr->live[i];
        if (ev->membership && ev->state_key && strcmp(ev->type, "m.room.member") == 0 &&
            strcmp(ev->state_key, c->user_id) == 0)
            return strcmp(ev->membership, "ban") == 0 ? "ban" : strcmp(ev->membership, "knock") == 0 ? "knock" : "leave";
    }
    return "leave";
}

/* The names of the lists whose window holds the room (borrowed from the
 * connection's lists; *names grows as needed). */
static size_t lists_of(struct conn *c, const char *room_id, const char ***names, size_t *cap)
{
    size_t n = 0;
    for (struct clist *cl = c->lists; cl; cl = cl->hh.next) {
        struct sync_req_list *rl = conn_muxed_list(c, cl->key);
        if (!conn_in_window(cl, rl, room_id)) continue;
        if (n == *cap) *names = xrealloc(*names, (*cap = *cap ? 2 * *cap : 4) * sizeof **names);
        (*names)[n++] = rl->key;
    }
    return n;
}

void conn_msc4186_write(struct conn *c, struct conn_resp *resp, struct buf *b)
{
    const char **names = NULL;
    size_t names_cap = 0;
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
        /* A room the user is no longer in shows just its last events (the
         * leave): nothing of its state, not the counts or heroes of before. */
        if (!rr->snapshot && !cr) {
            user_room_unref(rr->ur);
            rr->ur = NULL;
        }
        struct m4186_sent *sent;
        HASH_FIND_STR(c->m4186_sent, rr->room_id, sent);
        bool dm_changed = (!rr->snapshot || rr->delta) && cr && sent && sent->is_dm != cr->ur->is_dm;
        struct msc4186_changes ch = changes_of(sent, meta_of(cr ? cr->ur : NULL));
        if (rr->delta && sent && delta_empty(rr, sent, &ch, dm_changed)) {
            /* Nothing new to the client (parameters shrank, or grew over nothing). */
            note_sent(c, rr, cr);
            continue;
        }
        struct event **ls = NULL;
        size_t n_ls = rr->snapshot ? 0 : live_state_of(c, rr, &ls);
        if (!first) buf_putc(b, ',');
        first = false;
        buf_json_str(b, rr->room_id, strlen(rr->room_id));
        buf_putc(b, ':');
        struct msc4186_out out = {c->m4186_final, membership_of(c, rr, cr), NULL, 0};
        out.n_lists = lists_of(c, rr->room_id, &names, &names_cap);
        out.lists = names;
        msc4186_room_write(b, c->user_id, rr, n_ls ? ls : NULL, n_ls, dm_changed, &ch, &out);
        if (n_ls) free(ls);
        if (cr) note_sent(c, rr, cr);
    }
    buf_putc(b, '}');
    free(names);
}
