#include "sync/room.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include "base/hash.h"

#include "base/alloc.h"
#include "base/log.h"
#include "sync/request.h"
#include "sync/roomname.h"

void room_params_add(struct room_params *p, int64_t timeline_limit, const struct rs_pair *rs, size_t n_rs,
                     bool include_heroes)
{
    if (timeline_limit > p->timeline_limit) p->timeline_limit = timeline_limit;
    if (p->timeline_limit > SYNC_REQ_MAX_TIMELINE_LIMIT) p->timeline_limit = SYNC_REQ_MAX_TIMELINE_LIMIT;
    if (n_rs) {
        /* The strings in one allocation: every room of a window copies its
         * list's pairs (17 of them for Element X). */
        size_t total = 0;
        for (size_t i = 0; i < n_rs; i++) total += strlen(rs[i].type) + strlen(rs[i].key) + 2;
        char *blk = xmalloc(total), *at = blk;
        p->blocks = xrealloc(p->blocks, (p->n_blocks + 1) * sizeof *p->blocks);
        p->blocks[p->n_blocks++] = blk;
        p->rs = xrealloc(p->rs, (p->n_rs + n_rs) * sizeof *p->rs);
        for (size_t i = 0; i < n_rs; i++) {
            size_t lt = strlen(rs[i].type) + 1, lk = strlen(rs[i].key) + 1;
            struct rs_pair *d = &p->rs[p->n_rs++];
            d->type = memcpy(at, rs[i].type, lt);
            d->key = memcpy(at + lt, rs[i].key, lk);
            at += lt + lk;
        }
    }
    p->include_heroes |= include_heroes;
}

void room_params_release(struct room_params *p)
{
    for (size_t i = 0; i < p->n_blocks; i++) free(p->blocks[i]);
    free(p->blocks);
    free(p->rs);
    *p = (struct room_params){0};
}

/* Whether a pair survives ["*","*"]: exclusions, and lazy members when there
 * are exclusions (the object form's all state but members, members lazily). */
static bool kept_by_all_state(const struct rs_pair *p, bool exclusions)
{
    if (strncmp(p->type, RS_EXCLUDE, strlen(RS_EXCLUDE)) == 0) return true;
    return exclusions && strcmp(p->type, "m.room.member") == 0 && strcmp(p->key, RS_LAZY) == 0;
}

void room_params_all_state_wins(struct room_params *p)
{
    size_t all = p->n_rs;
    bool exclusions = false;
    for (size_t i = 0; i < p->n_rs; i++) {
        if (all == p->n_rs && strcmp(p->rs[i].type, RS_WILDCARD) == 0 && strcmp(p->rs[i].key, RS_WILDCARD) == 0)
            all = i;
        exclusions |= strncmp(p->rs[i].type, RS_EXCLUDE, strlen(RS_EXCLUDE)) == 0;
    }
    if (all == p->n_rs) return;
    /* The strings live in p->blocks: dropping a pair frees nothing. */
    struct rs_pair *kept = xcalloc(p->n_rs, sizeof *kept);
    size_t n = 0;
    kept[n++] = p->rs[all];
    for (size_t i = 0; i < p->n_rs; i++)
        if (i != all && kept_by_all_state(&p->rs[i], exclusions)) kept[n++] = p->rs[i];
    free(p->rs);
    p->rs = kept;
    p->n_rs = n;
}

void resp_room_free(struct resp_room *r)
{
    if (!r) return;
    free(r->room_id);
    room_params_release(&r->params);
    user_room_unref(r->ur);
    for (size_t i = 0; i < r->n_live; i++) event_unref(r->live[i]);
    free(r->live);
    store_tl_release(&r->tl);
    store_tl_release(&r->state);
    free(r->live_name);
    free(r->live_avatar);
    for (size_t i = 0; i < r->n_txns; i++) free(r->txns[i].txn_id);
    free(r->txns);
    for (size_t i = 0; i < r->n_lazy_need; i++) free(r->lazy_need[i]);
    free(r->lazy_need);
    free(r);
}

/* ---- invite state helpers ---- */

/* Reads what an invite shows: name, alias, avatar and member heroes. */
struct invite_info {
    json_t *arr;                /* parsed invite_state (owned) */
    const char *name;           /* m.room.name */
    const char *alias;          /* m.room.canonical_alias */
    const char *avatar;         /* m.room.avatar url */
    struct roomname_hero heroes[ROOMNAME_MAX_HEROES]; /* members who sent their own event */
    const char *hero_avatars[ROOMNAME_MAX_HEROES];    /* their avatars */
    size_t n_heroes;            /* entries */
};

static const char *jstr(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static void invite_info_load(struct invite_info *ii, const char *user_id, const char *invite_state)
{
    *ii = (struct invite_info){0};
    ii->arr = invite_state ? json_loads(invite_state, 0, NULL) : NULL;
    size_t i;
    json_t *ev;
    json_array_foreach(ii->arr, i, ev)
    {
        const char *type = jstr(ev, "type"), *sk = jstr(ev, "state_key"), *sender = jstr(ev, "sender");
        json_t *content = json_object_get(ev, "content");
        if (!type || !sk) continue;
        if (strcmp(type, "m.room.name") == 0 && !*sk) ii->name = jstr(content, "name");
        if (strcmp(type, "m.room.canonical_alias") == 0 && !*sk) ii->alias = jstr(content, "alias");
        if (strcmp(type, "m.room.avatar") == 0 && !*sk) ii->avatar = jstr(content, "url");
        if (strcmp(type, "m.room.member") == 0 && sender && strcmp(sk, sender) == 0 && strcmp(sk, user_id) != 0 &&
            ii->n_heroes < ROOMNAME_MAX_HEROES) {
            ii->hero_avatars[ii->n_heroes] = jstr(content, "avatar_url");
            ii->heroes[ii->n_heroes++] = (struct roomname_hero){sk, jstr(content, "displayname")};
        }
    }
}

char *room_display_name(const char *user_id, const struct user_room *ur)
{
    if (ur->invite) {
        struct invite_info ii;
        invite_info_load(&ii, user_id, ur->invite_state);
        char *n = roomname_compute(ii.name, ii.alias, ii.heroes, ii.n_heroes, 1, 1);
        json_decref(ii.arr);
        return n;
    }
    const struct store_room *m = ur->meta ? &ur->meta->r : NULL;
    if (!m) return xstrdup("Empty Room");
    struct roomname_hero h[STORE_MAX_HEROES];
    size_t n = 0;
    for (int i = 0; i < m->n_heroes; i++) {
        if (strcmp(m->heroes[i].user_id, user_id) == 0) continue;
        h[n++] = (struct roomname_hero){m->heroes[i].user_id, m->heroes[i].displayname};
    }
    return roomname_compute(m->name, m->canonical_alias, h, n, m->joined_count, m->invited_count);
}

char *room_display_avatar(const char *user_id, const struct user_room *ur)
{
    if (ur->invite) {
        struct invite_info ii;
        invite_info_load(&ii, user_id, ur->invite_state);
        const char *a = ii.avatar;
        if (!a && ur->is_dm && ii.n_heroes == 1) a = ii.hero_avatars[0];
        char *out = a ? xstrdup(a) : NULL;
        json_decref(ii.arr);
        return out;
    }
    const struct store_room *m = ur->meta ? &ur->meta->r : NULL;
    if (!m) return NULL;
    if (m->avatar) return xstrdup(m->avatar);
    const struct store_hero *only = NULL;
    int others = 0;
    for (int i = 0; i < m->n_heroes; i++) {
        if (strcmp(m->heroes[i].user_id, user_id) == 0) continue;
        others++;
        only = &m->heroes[i];
    }
    return ur->is_dm && others == 1 && only->avatar_url ? xstrdup(only->avatar_url) : NULL;
}

/* ---- loading ---- */

/* Members for rooms with lazy loading: the current member events of the
 * senders (and typing users) not sent yet on this connection (docs/behaviour.md, "Lazy members"),
 * appended to the room's state; one round trip. */
/* Whether one of the rooms has many members (store_room_large). */
static bool any_large(struct resp_room *const *rooms, int n)
{
    for (int i = 0; i < n; i++)
        if (rooms[i]->ur && store_room_large(rooms[i]->ur->meta ? &rooms[i]->ur->meta->r : NULL)) return true;
    return false;
}

int room_load_lazy(PGconn *c, int64_t pos, struct resp_room *rooms, char **err)
{
    int n = 0;
    size_t nk = 0;
    struct resp_room *r, *tmp;
    HASH_ITER(hh, rooms, r, tmp)
    {
        if (r->n_lazy_need > r->n_lazy_loaded) {
            n++;
            nk += r->n_lazy_need - r->n_lazy_loaded;
        }
    }
    if (!n) return 0;
    const char **ids = xcalloc((size_t)n, sizeof *ids), **types = xcalloc(nk, sizeof *types),
               **keys = xcalloc(nk, sizeof *keys);
    struct resp_room **order = xcalloc((size_t)n, sizeof *order);
    struct store_tl *out = xcalloc((size_t)n, sizeof *out);
    int k = 0;
    size_t j = 0;
    HASH_ITER(hh, rooms, r, tmp)
    {
        if (r->n_lazy_need <= r->n_lazy_loaded) continue;
        order[k] = r;
        ids[k++] = r->room_id;
        for (size_t i = r->n_lazy_loaded; i < r->n_lazy_need; i++, j++) {
            types[j] = "m.room.member";
            keys[j] = r->lazy_need[i];
        }
    }
    int rc = store_state_at(c, ids, n, any_large(order, n), pos, types, keys, (int)nk, out, err);
    for (int i = 0; i < n && rc == 0; i++) {
        /* The query matched the union of every room's users: keep this room's. */
        r = order[i];
        for (int e = 0; e < out[i].n; e++) {
            struct event *ev = out[i].events[e];
            bool keep = false;
            for (size_t s = r->n_lazy_loaded; s < r->n_lazy_need && !keep; s++)
                keep = ev->state_key && strcmp(ev->state_key, r->lazy_need[s]) == 0;
            if (!keep) {
                event_unref(ev);
                continue;
            }
            r->state.events = xrealloc(r->state.events, (size_t)(r->state.n + 1) * sizeof *r->state.events);
            r->state.events[r->state.n++] = ev;
        }
        out[i].n = 0;
        r->n_lazy_loaded = r->n_lazy_need;
    }
    for (int i = 0; i < n; i++) store_tl_release(&out[i]);
    free(out);
    free(order);
    free(ids);
    free(types);
    free(keys);
    return rc;
}

/* A joined snapshot's timestamp under bump_event_types. */
static int load_timestamps(PGconn *c, int64_t pos, struct resp_room *rooms, const char *const *bump, int n_bump,
                           char **err)
{
    int n = 0;
    struct resp_room *r, *tmp;
    HASH_ITER(hh, rooms, r, tmp)
    {
        if (r->snapshot && r->ur && !r->ur->invite) n++;
    }
    if (!n || !n_bump) return 0;
    const char **ids = xcalloc((size_t)n, sizeof *ids);
    int64_t *after = xcalloc((size_t)n, sizeof *after), *ts = xcalloc((size_t)n, sizeof *ts);
    struct resp_room **order = xcalloc((size_t)n, sizeof *order);
    int k = 0;
    /* MSC4186's types are answered from the cached room metadata where it can. */
    bool cached = store_bump_is_default(bump, n_bump);
    HASH_ITER(hh, rooms, r, tmp)
    {
        if (!(r->snapshot && r->ur && !r->ur->invite)) continue;
        int64_t t = cached && r->ur->meta ? store_bump_ts(&r->ur->meta->r.bump, r->ur->join_nid, pos) : -1;
        if (t >= 0) {
            r->timestamp = t > r->ur->join_ts ? t : r->ur->join_ts;
            continue;
        }
        order[k] = r;
        after[k] = r->ur->join_nid;
        ids[k++] = r->room_id;
    }
    int rc = k ? store_latest_of_types(c, ids, after, k, bump, n_bump, pos, ts, err) : 0;
    for (int i = 0; i < k && rc == 0; i++)
        order[i]->timestamp = ts[i] > order[i]->ur->join_ts ? ts[i] : order[i]->ur->join_ts;
    free(ids);
    free(after);
    free(ts);
    free(order);
    return rc;
}

/* One (type, state_key) pattern of the state query, seen once. */
struct rs_seen {
    UT_hash_handle hh;     /* in the set; the key is text, allocated with the entry */
    char text[];           /* type, NUL, state_key */
};

/* Adds a pattern unless the set has it: every room of a list brings the
 * same pairs, and the query compares each state row with every pattern. */
static void pattern_add(struct rs_seen **set, const char ***types, const char ***keys, size_t *np, size_t *cap,
                        const char *t, const char *k)
{
    size_t lt = strlen(t), lk = strlen(k);
    char stack[256], *text = lt + lk + 2 <= sizeof stack ? stack : xmalloc(lt + lk + 2);
    memcpy(text, t, lt + 1);
    memcpy(text + lt + 1, k, lk + 1);
    struct rs_seen *e;
    HASH_FIND(hh, *set, text, lt + lk + 2, e);
    if (!e) {
        e = xmalloc(sizeof *e + lt + lk + 2);
        memcpy(e->text, text, lt + lk + 2);
        HASH_ADD(hh, *set, text, lt + lk + 2, e);
        if (*np + 1 >= *cap) {
            *cap *= 2;
            *types = xrealloc(*types, *cap * sizeof **types);
            *keys = xrealloc(*keys, *cap * sizeof **keys);
        }
        (*types)[*np] = t;
        (*keys)[(*np)++] = k;
    }
    if (text != stack) free(text);
}

int room_load(PGconn *c, const char *user_id, int64_t pos, struct resp_room *rooms, const char *const *bump,
              int n_bump, char **err)
{
    if (room_load_lazy(c, pos, rooms, err) < 0 || load_timestamps(c, pos, rooms, bump, n_bump, err) < 0)
        return -1;
    int n = 0;
    struct resp_room *r, *tmp;
    HASH_ITER(hh, rooms, r, tmp)
    {
        if (r->snapshot && r->ur && !r->ur->invite) n++;
    }
    if (!n) return 0;
    struct store_tl_req *tl_reqs = xcalloc((size_t)n, sizeof *tl_reqs);
    struct resp_room **order = xcalloc((size_t)n, sizeof *order);
    struct store_tl *tls = xcalloc((size_t)n, sizeof *tls);
    int k = 0, n_tl = 0;
    HASH_ITER(hh, rooms, r, tmp)
    {
        if (!(r->snapshot && r->ur && !r->ur->invite)) continue;
        order[k++] = r;
    }
    struct resp_room **tl_rooms = xcalloc((size_t)n, sizeof *tl_rooms);
    for (int i = 0; i < n; i++) {
        r = order[i];
        if (r->params.timeline_limit <= 0) continue;
        tl_rooms[n_tl] = r;
        int64_t from = r->tl_after > 0 && r->tl_after >= r->ur->join_nid ? r->tl_after + 1 : r->ur->join_nid;
        tl_reqs[n_tl++] = (struct store_tl_req){r->room_id, from, pos, (int)r->params.timeline_limit};
    }
    int rc = -1;
    const char **ids = NULL, **types = NULL, **keys = NULL;
    struct store_tl *states = NULL;
    struct rs_matcher *matchers = NULL; /* matchers[owner[i]] is order[i]'s */
    int *owner = NULL;
    struct rs_seen *seen = NULL, *se, *st_tmp;
    if (store_timelines(c, tl_reqs, n_tl, tls, err) < 0) goto out;
    for (int i = 0; i < n_tl; i++) {
        tl_rooms[i]->tl = tls[i];
        tls[i] = (struct store_tl){0};
    }
    /* required_state: one query with the union of every room's patterns
     * (plus lazy members of timeline senders, each pair once), filtered
     * per room after. */
    matchers = xcalloc((size_t)n, sizeof *matchers);
    owner = xcalloc((size_t)n, sizeof *owner);
    size_t cap = 16, np = 0;
    types = xcalloc(cap, sizeof *types);
    keys = xcalloc(cap, sizeof *keys);
    ids = xcalloc((size_t)n, sizeof *ids);
    int n_ids = 0;
    for (int i = 0; i < n; i++) {
        r = order[i];
        /* Rooms of one list have the same pairs: they share its matcher. */
        int same = i > 0 && rs_pairs_equal(order[i - 1]->params.rs, order[i - 1]->params.n_rs, r->params.rs,
                                           r->params.n_rs)
                       ? owner[i - 1]
                       : i;
        owner[i] = same;
        if (same == i) rs_matcher_init(&matchers[i], r->params.rs, r->params.n_rs, user_id);
        r->lazy = matchers[same].lazy_members;
        if (!r->params.n_rs) continue;
        ids[n_ids++] = r->room_id;
        for (size_t j = 0; j < r->params.n_rs + r->tl.n; j++) {
            const char *t, *kk;
            if (j < r->params.n_rs) {
                t = r->params.rs[j].type;
                kk = r->params.rs[j].key;
                if (strcmp(kk, RS_LAZY) == 0) continue;
                if (strcmp(kk, RS_ME) == 0) kk = user_id;
            } else {
                if (!matchers[same].lazy_members) break;
                t = "m.room.member";
                kk = r->tl.events[j - r->params.n_rs]->sender;
            }
            pattern_add(&seen, &types, &keys, &np, &cap, t, kk);
        }
    }
    if (n_ids) {
        states = xcalloc((size_t)n_ids, sizeof *states);
        if (store_state_at(c, ids, n_ids, any_large(order, n), pos, types, keys, (int)np, states, err) < 0) goto out;
        for (int i = 0, s = 0; i < n; i++) {
            r = order[i];
            if (!r->params.n_rs) continue;
            struct store_tl *st = &states[s++];
            /* Keep what this room's own matcher accepts, plus lazy members. */
            int kept = 0;
            for (int e = 0; e < st->n; e++) {
                struct event *ev = st->events[e];
                const struct rs_matcher *m = &matchers[owner[i]];
                bool keep = rs_match(m, ev->type, ev->state_key ? ev->state_key : "");
                if (!keep && m->lazy_members && strcmp(ev->type, "m.room.member") == 0) {
                    for (int t = 0; t < r->tl.n && !keep; t++)
                        keep = ev->state_key && strcmp(r->tl.events[t]->sender, ev->state_key) == 0;
                }
                if (keep)
                    st->events[kept++] = ev;
                else
                    event_unref(ev);
            }
            st->n = kept;
            r->state = *st;
            *st = (struct store_tl){0};
        }
    }
    rc = 0;
out:
    HASH_ITER(hh, seen, se, st_tmp)
    {
        HASH_DEL(seen, se);
        free(se);
    }
    if (matchers)
        for (int i = 0; i < n; i++)
            if (owner[i] == i) rs_matcher_release(&matchers[i]);
    free(matchers);
    free(owner);
    if (states)
        for (int i = 0; i < n_ids; i++) store_tl_release(&states[i]);
    free(states);
    for (int i = 0; i < n; i++) store_tl_release(&tls[i]);
    free(tls);
    free(tl_reqs);
    free(tl_rooms);
    free(order);
    free(ids);
    free(types);
    free(keys);
    return rc;
}

/* ---- JSON ---- */

/* Writes an event as stored, or with unsigned.transaction_id added when the
 * room's response has one for it (the syncing device sent it). */
static void write_event(struct buf *b, const struct event *ev, const struct resp_room *r)
{
    for (size_t i = 0; r && i < r->n_txns; i++) {
        if (strcmp(r->txns[i].event_id, ev->event_id) != 0) continue;
        json_t *j = json_loadb(ev->json, ev->json_len, 0, NULL);
        json_t *u = json_object_get(j, "unsigned");
        if (j && !json_is_object(u)) {
            u = json_object();
            json_object_set_new(j, "unsigned", u);
        }
        char *out = NULL;
        if (u && json_object_set_new(u, "transaction_id", json_string(r->txns[i].txn_id)) == 0)
            out = json_dumps(j, JSON_COMPACT);
        json_decref(j);
        if (out) {
            buf_puts(b, out);
            free(out);
            return;
        }
        break;
    }
    buf_append(b, ev->json, ev->json_len);
}

void room_write_events(struct buf *b, struct event *const *evs, size_t n, struct event *const *more, size_t n_more,
                       const struct resp_room *r)
{
    buf_putc(b, '[');
    size_t k = 0;
    for (size_t i = 0; i < n; i++, k++) {
        if (k) buf_putc(b, ',');
        write_event(b, evs[i], r);
    }
    for (size_t i = 0; i < n_more; i++, k++) {
        if (k) buf_putc(b, ',');
        write_event(b, more[i], r);
    }
    buf_putc(b, ']');
}

static void key_str(struct buf *b, bool *first, const char *key, const char *val)
{
    buf_printf(b, "%s\"%s\":", *first ? "" : ",", key);
    *first = false;
    if (val)
        buf_json_str(b, val, strlen(val));
    else
        buf_puts(b, "null");
}

static void key_int(struct buf *b, bool *first, const char *key, int64_t v)
{
    buf_printf(b, "%s\"%s\":%lld", *first ? "" : ",", key, (long long)v);
    *first = false;
}

static void write_hero(struct buf *b, bool first, const char *uid, const char *dn, const char *av)
{
    buf_puts(b, first ? "{" : ",{");
    bool f = true;
    key_str(b, &f, "user_id", uid);
    if (dn) key_str(b, &f, "displayname", dn);
    if (av) key_str(b, &f, "avatar_url", av);
    buf_putc(b, '}');
}

/* ,"heroes":[...] of a joined room whose name comes from its members (never
 * the user themself); nothing when it has a name or alias or no other hero. */
static void write_heroes(struct buf *b, const char *user_id, const struct store_room *m)
{
    if (m->name || m->canonical_alias) return;
    bool first = true;
    for (int i = 0; i < m->n_heroes; i++) {
        if (strcmp(m->heroes[i].user_id, user_id) == 0) continue;
        buf_puts(b, first ? ",\"heroes\":[" : "");
        write_hero(b, first, m->heroes[i].user_id, m->heroes[i].displayname, m->heroes[i].avatar_url);
        first = false;
    }
    if (!first) buf_putc(b, ']');
}

static void write_invite(struct buf *b, const char *user_id, const struct resp_room *r)
{
    struct invite_info ii;
    invite_info_load(&ii, user_id, r->ur->invite_state);
    bool f = true;
    char *name = roomname_compute(ii.name, ii.alias, ii.heroes, ii.n_heroes, 1, 1);
    key_str(b, &f, "name", name);
    free(name);
    const char *avatar = ii.avatar;
    if (!avatar && r->ur->is_dm && ii.n_heroes == 1) avatar = ii.hero_avatars[0];
    key_str(b, &f, "avatar", avatar);
    if (r->params.include_heroes && !ii.name && !ii.alias && ii.n_heroes) {
        buf_puts(b, ",\"heroes\":[");
        for (size_t i = 0; i < ii.n_heroes; i++)
            write_hero(b, i == 0, ii.heroes[i].user_id, ii.heroes[i].displayname, ii.hero_avatars[i]);
        buf_putc(b, ']');
    }
    buf_puts(b, ",\"invite_state\":");
    buf_puts(b, r->ur->invite_state ? r->ur->invite_state : "[]");
    buf_puts(b, ",\"notification_count\":0,\"highlight_count\":1,\"initial\":true");
    if (r->ur->is_dm) buf_puts(b, ",\"is_dm\":true");
    buf_puts(b, ",\"joined_count\":1,\"invited_count\":1");
    if (r->ur->invite_ts) buf_printf(b, ",\"timestamp\":%lld", (long long)r->ur->invite_ts);
    json_decref(ii.arr);
}

void room_write_json(struct buf *b, const char *user_id, const struct resp_room *r)
{
    buf_putc(b, '{');
    if (r->snapshot && r->ur && r->ur->invite) {
        write_invite(b, user_id, r);
        buf_putc(b, '}');
        return;
    }
    bool f = true;
    const struct store_room *m = r->ur && r->ur->meta ? &r->ur->meta->r : NULL;
    if (r->snapshot && m) {
        char *name = room_display_name(user_id, r->ur);
        key_str(b, &f, "name", name);
        free(name);
        char *avatar = room_display_avatar(user_id, r->ur);
        key_str(b, &f, "avatar", avatar);
        free(avatar);
        if (r->params.include_heroes) write_heroes(b, user_id, m);
        if (r->state.n) {
            buf_puts(b, ",\"required_state\":");
            room_write_events(b, r->state.events, (size_t)r->state.n, NULL, 0, NULL);
        }
    }
    if (!r->snapshot) {
        if (r->live_name) key_str(b, &f, "name", r->live_name);
        /* Heroes go along with a name change (docs/behaviour.md, "Heroes"). */
        if (r->live_name && r->params.include_heroes && m) write_heroes(b, user_id, m);
        if (r->avatar_changed) key_str(b, &f, "avatar", r->live_avatar);
        /* Lazily loaded members of new senders (docs/behaviour.md, "Lazy members"). */
        if (r->state.n) {
            buf_printf(b, "%s\"required_state\":", f ? "" : ",");
            f = false;
            room_write_events(b, r->state.events, (size_t)r->state.n, NULL, 0, NULL);
        }
    }
    /* A snapshot already holds its live events (it was loaded after them). */
    size_t n_tl = r->snapshot ? (size_t)r->tl.n : 0;
    size_t n_live = r->snapshot ? 0 : r->n_live;
    if (n_tl + n_live) {
        buf_printf(b, "%s\"timeline\":", f ? "" : ",");
        f = false;
        room_write_events(b, r->tl.events, n_tl, r->live, n_live, r);
    }
    int64_t notif = r->ur ? r->ur->notif : 0, highlight = r->ur ? r->ur->highlight : 0;
    key_int(b, &f, "notification_count", notif);
    key_int(b, &f, "highlight_count", highlight);
    if (r->snapshot) {
        buf_puts(b, ",\"initial\":true");
        if (r->ur->is_dm) buf_puts(b, ",\"is_dm\":true");
        if (m && m->joined_count) key_int(b, &f, "joined_count", m->joined_count);
        key_int(b, &f, "invited_count", m ? m->invited_count : 0);
        if (r->tl.prev_batch) key_str(b, &f, "prev_batch", r->tl.prev_batch);
        /* The original never set it; clients need it to know a gap is there. */
        if (r->tl.limited) buf_puts(b, ",\"limited\":true");
    }
    if (!r->snapshot && r->member_counts_changed && m) {
        if (m->joined_count) key_int(b, &f, "joined_count", m->joined_count);
        key_int(b, &f, "invited_count", m->invited_count);
    }
    if (r->num_live) key_int(b, &f, "num_live", r->num_live);
    if (r->timestamp) key_int(b, &f, "timestamp", r->timestamp);
    buf_putc(b, '}');
}
