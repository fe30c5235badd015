#include "ingest/accumulate.h"

#include <stdlib.h>
#include <string.h>
#include "base/hash.h"

#include "base/alloc.h"
#include "base/buf.h"
#include "base/clock.h"
#include "base/log.h"
#include "ingest/peruser.h"
#include "ingest/redact.h"
#include "ingest/todevice.h"
#include "store/bump.h"
#include "store/db.h"

/* One parsed event of the response. */
struct pev {
    const char *event_id;   /* borrowed from the response JSON */
    const char *type;       /* borrowed */
    const char *state_key;  /* borrowed; NULL for message events */
    const char *sender;     /* borrowed; "" when absent */
    const char *membership; /* borrowed; content.membership of member events */
    const char *redacts;    /* borrowed; target of an m.room.redaction */
    char *txn_id;           /* unsigned.transaction_id (owned), stripped from json */
    int64_t ts;             /* origin_server_ts */
    char *json;             /* compact JSON as stored (owned) */
    int64_t nid;            /* assigned NID, or the stored one when known */
    bool known;             /* already in the database */
    bool is_state;          /* from a state block */
    bool missing_previous;  /* first new event of a limited timeline */
    const char *prev_batch; /* borrowed; a token to paginate back from: the chunk's prev_batch on its
                               first event, the response's next_batch on its last */
};

/* One room section of the response. */
struct room_work {
    const char *room_id;   /* borrowed key of rooms.join / rooms.leave */
    struct pev *state;     /* parsed state block */
    size_t n_state;        /* entries in state */
    struct pev *tl;        /* parsed timeline */
    size_t n_tl;           /* entries in tl */
    size_t tl_keep_from;   /* first timeline index to store */
    bool limited;          /* timeline.limited */
    bool known_room;       /* the room already had state */
    bool skip;             /* data error: nothing of this room is stored */
    bool is_leave;         /* from rooms.leave */
    json_t *section;       /* the room's JSON object */
    size_t out_idx;        /* 1 + index of the result entry, 0 before one is created */
};

/* Set of strings (event IDs seen in this response, etc). */
struct str_entry {
    const char *key;      /* borrowed */
    int64_t val;          /* payload (a NID) */
    UT_hash_handle hh;    /* uthash */
};

static const char *jstr(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static void pev_release(struct pev *p)
{
    free(p->json);
    free(p->txn_id);
}

/* Parses one event; returns false (with a warning) for malformed events. */
static bool parse_event(json_t *ev, const char *room_id, bool is_state, struct pev *out)
{
    *out = (struct pev){.is_state = is_state};
    if (!json_is_object(ev)) return false;
    out->event_id = jstr(ev, "event_id");
    out->type = jstr(ev, "type");
    if (!out->event_id || !*out->event_id || !out->type) {
        LOG_WARN("ingest", "room %s: dropping an event without event_id or type", room_id);
        return false;
    }
    json_t *sk = json_object_get(ev, "state_key");
    if (sk && !json_is_string(sk)) {
        LOG_WARN("ingest", "room %s: dropping %s: state_key is not a string", room_id, out->event_id);
        return false;
    }
    out->state_key = sk ? json_string_value(sk) : NULL;
    if (is_state && !out->state_key) {
        LOG_WARN("ingest", "room %s: dropping %s: state block event without state_key", room_id,
                 out->event_id);
        return false;
    }
    out->sender = jstr(ev, "sender");
    if (!out->sender) out->sender = "";
    json_t *ts = json_object_get(ev, "origin_server_ts");
    out->ts = json_is_integer(ts) ? json_integer_value(ts) : 0;
    json_t *content = json_object_get(ev, "content");
    if (strcmp(out->type, "m.room.member") == 0 && out->state_key) {
        out->membership = json_is_object(content) ? jstr(content, "membership") : NULL;
        if (!out->membership || !*out->membership) {
            LOG_WARN("ingest", "room %s: dropping member event %s without membership", room_id,
                     out->event_id);
            return false;
        }
    }
    if (strcmp(out->type, "m.room.redaction") == 0 && !out->state_key) {
        out->redacts = jstr(ev, "redacts");
        if (!out->redacts && json_is_object(content)) out->redacts = jstr(content, "redacts");
    }
    /* One stored copy serves every user: drop the per-user fields. */
    json_t *uns = json_object_get(ev, "unsigned");
    json_t *copy = NULL;
    if (json_is_object(uns) &&
        (json_object_get(uns, "membership") || json_object_get(uns, "io.element.msc4115.membership") ||
         json_object_get(uns, "transaction_id"))) {
        copy = json_deep_copy(ev);
        json_t *u2 = json_object_get(copy, "unsigned");
        const char *txn = jstr(u2, "transaction_id");
        if (txn) out->txn_id = xstrdup(txn);
        json_object_del(u2, "membership");
        json_object_del(u2, "io.element.msc4115.membership");
        json_object_del(u2, "transaction_id");
        if (json_object_size(u2) == 0) json_object_del(copy, "unsigned");
    }
    out->json = json_dumps(copy ? copy : ev, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(copy);
    if (!out->json) return false;
    return true;
}

static struct pev *parse_events(json_t *arr, const char *room_id, bool is_state, size_t *n_out)
{
    size_t n = json_is_array(arr) ? json_array_size(arr) : 0;
    struct pev *v = xcalloc(n ? n : 1, sizeof *v);
    size_t k = 0;
    struct str_entry *seen = NULL;
    for (size_t i = 0; i < n; i++) {
        if (!parse_event(json_array_get(arr, i), room_id, is_state, &v[k])) continue;
        struct str_entry *e;
        HASH_FIND_STR(seen, v[k].event_id, e);
        if (e) {
            LOG_WARN("ingest", "room %s: the same event %s twice in one chunk", room_id, v[k].event_id);
            pev_release(&v[k]);
            continue;
        }
        e = xcalloc(1, sizeof *e);
        e->key = v[k].event_id;
        HASH_ADD_KEYPTR(hh, seen, e->key, strlen(e->key), e);
        k++;
    }
    struct str_entry *e, *tmp;
    HASH_ITER(hh, seen, e, tmp)
    {
        HASH_DEL(seen, e);
        free(e);
    }
    *n_out = k;
    return v;
}

static void free_set(struct str_entry **set)
{
    struct str_entry *e, *tmp;
    HASH_ITER(hh, *set, e, tmp)
    {
        HASH_DEL(*set, e);
        free(e);
    }
}

static void set_put(struct str_entry **set, const char *key, int64_t val)
{
    struct str_entry *e;
    HASH_FIND_STR(*set, key, e);
    if (e) {
        e->val = val;
        return;
    }
    e = xcalloc(1, sizeof *e);
    e->key = key;
    e->val = val;
    HASH_ADD_KEYPTR(hh, *set, e->key, strlen(e->key), e);
}

static struct str_entry *set_get(struct str_entry *set, const char *key)
{
    struct str_entry *e;
    HASH_FIND_STR(set, key, e);
    return e;
}

/* ---- the transaction -------------------------------------------------------- */

struct ctx {
    PGconn *c;                  /* the connection, inside BEGIN */
    char **err;                 /* where errors go */
    const char *user_id;        /* polling user */
    const char *device_id;      /* polling device */
    struct room_work *rooms;    /* join then leave sections */
    size_t n_rooms;             /* entries in rooms */
    struct acc_result *out;     /* the result being filled */
    bool redacted_state;        /* a redaction hit some room's current state */
};

/* The result entry of a room (created on first use). The array may move, so
 * rooms remember an index, never a pointer. */
static struct acc_room *result_room(struct ctx *x, struct room_work *w)
{
    if (w->out_idx) return &x->out->rooms[w->out_idx - 1];
    x->out->rooms = xrealloc(x->out->rooms, (x->out->n_rooms + 1) * sizeof *x->out->rooms);
    x->out->rooms[x->out->n_rooms] = (struct acc_room){.room_id = xstrdup(w->room_id)};
    w->out_idx = ++x->out->n_rooms;
    return &x->out->rooms[w->out_idx - 1];
}

/* Finds which event IDs of the response are already stored, and which rooms
 * already have state. */
static int lookup_known(struct ctx *x, struct str_entry **known_events, struct str_entry **known_rooms)
{
    struct db_arr ids, rooms;
    db_arr_init(&ids);
    db_arr_init(&rooms);
    for (size_t i = 0; i < x->n_rooms; i++) {
        struct room_work *w = &x->rooms[i];
        db_arr_str(&rooms, w->room_id);
        for (size_t j = 0; j < w->n_state; j++) db_arr_str(&ids, w->state[j].event_id);
        for (size_t j = 0; j < w->n_tl; j++) db_arr_str(&ids, w->tl[j].event_id);
    }
    const char *p1[] = {db_arr_done(&ids)};
    const char *p2[] = {db_arr_done(&rooms)};
    int rc = -1;
    PGresult *r = db_exec(x->c, x->err,
                          "SELECT event_id, event_nid FROM syncv3_events WHERE event_id = ANY($1::text[])",
                          1, p1);
    if (!r) goto out;
    /* Keys must outlive r: point them at the response's strings instead. */
    struct str_entry *byid = NULL;
    for (size_t i = 0; i < x->n_rooms; i++) {
        struct room_work *w = &x->rooms[i];
        for (size_t j = 0; j < w->n_state; j++) set_put(&byid, w->state[j].event_id, 0);
        for (size_t j = 0; j < w->n_tl; j++) set_put(&byid, w->tl[j].event_id, 0);
    }
    for (int i = 0; i < PQntuples(r); i++) {
        struct str_entry *e = set_get(byid, PQgetvalue(r, i, 0));
        if (e) set_put(known_events, e->key, db_get_i64(r, i, 1));
    }
    free_set(&byid);
    PQclear(r);
    r = db_exec(x->c, x->err, "SELECT room_id FROM syncv3_rooms WHERE room_id = ANY($1::text[])", 1, p2);
    if (!r) goto out;
    for (int i = 0; i < PQntuples(r); i++) {
        for (size_t j = 0; j < x->n_rooms; j++)
            if (strcmp(x->rooms[j].room_id, PQgetvalue(r, i, 0)) == 0)
                set_put(known_rooms, x->rooms[j].room_id, 1);
    }
    PQclear(r);
    rc = 0;
out:
    db_arr_release(&ids);
    db_arr_release(&rooms);
    return rc;
}

static bool is_create(const struct pev *p)
{
    return strcmp(p->type, "m.room.create") == 0 && p->state_key && !*p->state_key;
}

/* Decides, per room, which events to store (the accumulator's rules). */
static void decide(struct ctx *x, struct str_entry *known_events, struct str_entry *known_rooms)
{
    for (size_t i = 0; i < x->n_rooms; i++) {
        struct room_work *w = &x->rooms[i];
        w->known_room = set_get(known_rooms, w->room_id) != NULL;
        for (size_t j = 0; j < w->n_state; j++) {
            struct str_entry *e = set_get(known_events, w->state[j].event_id);
            if (e) w->state[j].known = true, w->state[j].nid = e->val;
        }
        for (size_t j = 0; j < w->n_tl; j++) {
            struct str_entry *e = set_get(known_events, w->tl[j].event_id);
            if (e) w->tl[j].known = true, w->tl[j].nid = e->val;
        }
        /* Keep only what follows the last known timeline event: anything
         * unknown before it is old history arriving late. */
        w->tl_keep_from = 0;
        for (size_t j = w->n_tl; j-- > 0;) {
            if (w->tl[j].known) {
                w->tl_keep_from = j + 1;
                break;
            }
        }
        if (!w->known_room) {
            bool has_create = false;
            for (size_t j = 0; j < w->n_state; j++) has_create |= is_create(&w->state[j]);
            if (!has_create && w->n_state > 0) {
                /* Some homeservers put the create event in the timeline. */
                for (size_t j = 0; j < w->n_tl; j++) {
                    if (is_create(&w->tl[j]) && !w->tl[j].known) {
                        has_create = true;
                        break;
                    }
                }
            }
            bool tl_starts_with_create = w->tl_keep_from < w->n_tl && is_create(&w->tl[w->tl_keep_from]);
            if (!has_create && !tl_starts_with_create) {
                if (w->n_state || w->n_tl > w->tl_keep_from)
                    LOG_WARN("ingest", "room %s: no m.room.create for an unknown room; ignoring its events",
                             w->room_id);
                w->skip = true;
                continue;
            }
        }
        if (w->limited && w->tl_keep_from == 0 && w->n_tl > 0 && !w->tl[0].known)
            w->tl[0].missing_previous = true;
    }
}

/* A state change to write. */
struct state_change {
    const char *room_id;    /* the room */
    const char *type;       /* event type */
    const char *state_key;  /* state key */
    const char *membership; /* content.membership or NULL */
    int64_t nid;            /* the state event */
};

static int cmp_change(const void *a, const void *b)
{
    const struct state_change *x = a, *y = b;
    int c = strcmp(x->room_id, y->room_id);
    if (!c) c = strcmp(x->type, y->type);
    if (!c) c = strcmp(x->state_key, y->state_key);
    if (!c) c = x->nid < y->nid ? -1 : x->nid > y->nid;
    return c;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* Rows per INSERT of events. */
#define INSERT_CHUNK 2000

static int write_events(struct ctx *x)
{
    size_t total = 0;
    for (size_t i = 0; i < x->n_rooms; i++) {
        struct room_work *w = &x->rooms[i];
        if (w->skip) continue;
        for (size_t j = 0; j < w->n_state; j++) total += !w->state[j].known;
        total += w->n_tl - w->tl_keep_from;
    }
    if (!total) return 0;
    char nbuf[24];
    snprintf(nbuf, sizeof nbuf, "%zu", total);
    const char *pn[] = {nbuf};
    PGresult *r = db_exec(x->c, x->err,
                          "SELECT nextval('syncv3_event_nids_seq') FROM generate_series(1, $1::int)", 1, pn);
    if (!r) return -1;
    int64_t *nids = xmalloc(total * sizeof *nids);
    for (size_t i = 0; i < total; i++) nids[i] = db_get_i64(r, (int)i, 0);
    PQclear(r);
    qsort(nids, total, sizeof *nids, cmp_i64);

    /* Assign NIDs in delivery order, then insert in chunks so one statement
     * (and the connection's buffers) stays small however big the response. */
    struct pev **all_ev = xmalloc(total * sizeof *all_ev);
    const char **all_room = xmalloc(total * sizeof *all_room);
    size_t k = 0;
    for (size_t i = 0; i < x->n_rooms; i++) {
        struct room_work *w = &x->rooms[i];
        if (w->skip) continue;
        for (int pass = 0; pass < 2; pass++) {
            struct pev *v = pass ? w->tl : w->state;
            size_t from = pass ? w->tl_keep_from : 0, n = pass ? w->n_tl : w->n_state;
            for (size_t j = from; j < n; j++) {
                if (v[j].known) continue;
                v[j].nid = nids[k];
                all_room[k] = w->room_id;
                all_ev[k++] = &v[j];
            }
        }
    }
    int rc = 0;
    for (size_t base = 0; rc == 0 && base < total; base += INSERT_CHUNK) {
        struct db_arr a_nid, a_id, a_room, a_type, a_sk, a_sender, a_ts, a_state, a_memb, a_pb, a_mp, a_json;
        struct db_arr *all[] = {&a_nid, &a_id,    &a_room, &a_type, &a_sk, &a_sender,
                             &a_ts,  &a_state, &a_memb, &a_pb,   &a_mp, &a_json};
        for (size_t i = 0; i < 12; i++) db_arr_init(all[i]);
        for (size_t e = base; e < total && e < base + INSERT_CHUNK; e++) {
            struct pev *p = all_ev[e];
            db_arr_i64(&a_nid, p->nid);
            db_arr_str(&a_id, p->event_id);
            db_arr_str(&a_room, all_room[e]);
            db_arr_str(&a_type, p->type);
            db_arr_str(&a_sk, p->state_key);
            db_arr_str(&a_sender, p->sender);
            db_arr_i64(&a_ts, p->ts);
            db_arr_bool(&a_state, p->is_state);
            db_arr_str(&a_memb, p->membership);
            db_arr_str(&a_pb, p->prev_batch);
            db_arr_bool(&a_mp, p->missing_previous);
            db_arr_str(&a_json, p->json);
        }
        const char *params[12];
        for (size_t i = 0; i < 12; i++) params[i] = db_arr_done(all[i]);
        rc = db_cmd(x->c, x->err,
                    "INSERT INTO syncv3_events (event_nid, event_id, room_id, event_type, state_key, sender, "
                    "origin_server_ts, is_state, membership, prev_batch, missing_previous, event) "
                    "SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], "
                    "$6::text[], $7::bigint[], $8::bool[], $9::text[], $10::text[], $11::bool[], $12::text[]) "
                    "ON CONFLICT (event_id) DO NOTHING",
                    12, params);
        for (size_t i = 0; i < 12; i++) db_arr_release(all[i]);
    }
    free(all_ev);
    free(all_room);
    free(nids);
    x->out->n_events = (int)total;
    return rc;
}

static int write_state(struct ctx *x)
{
    size_t cap = 16, n = 0;
    struct state_change *ch = xmalloc(cap * sizeof *ch);
    for (size_t i = 0; i < x->n_rooms; i++) {
        struct room_work *w = &x->rooms[i];
        if (w->skip) continue;
        for (int pass = 0; pass < 2; pass++) {
            struct pev *v = pass ? w->tl : w->state;
            size_t from = pass ? w->tl_keep_from : 0, cnt = pass ? w->n_tl : w->n_state;
            for (size_t j = from; j < cnt; j++) {
                struct pev *p = &v[j];
                if (p->known || !p->state_key) continue;
                if (n == cap) ch = xrealloc(ch, (cap *= 2) * sizeof *ch);
                ch[n++] = (struct state_change){w->room_id, p->type, p->state_key, p->membership, p->nid};
                struct acc_room *ar = result_room(x, w);
                ar->state_changed = true;
                if (!pass && w->known_room) ar->state_reset = true;
            }
        }
    }
    int rc = 0;
    if (!n) goto out;
    qsort(ch, n, sizeof *ch, cmp_change);
    /* One entry per (room, type, state_key) changed: its first new row ends the current one. */
    size_t n_keys = 0;
    size_t *key_of = xmalloc(n * sizeof *key_of);
    struct db_arr c_room, c_type, c_key, c_start;
    struct db_arr i_room, i_type, i_key, i_nid, i_start, i_end, i_memb, i_since;
    struct db_arr *all[] = {&c_room, &c_type,  &c_key, &c_start, &i_room, &i_type,
                         &i_key,  &i_nid,   &i_start, &i_end, &i_memb, &i_since};
    for (size_t i = 0; i < 12; i++) db_arr_init(all[i]);
    for (size_t i = 0; i < n; i++) {
        bool first = i == 0 || strcmp(ch[i - 1].room_id, ch[i].room_id) || strcmp(ch[i - 1].type, ch[i].type) ||
                     strcmp(ch[i - 1].state_key, ch[i].state_key);
        if (first) {
            db_arr_str(&c_room, ch[i].room_id);
            db_arr_str(&c_type, ch[i].type);
            db_arr_str(&c_key, ch[i].state_key);
            db_arr_i64(&c_start, ch[i].nid);
            n_keys++;
        }
        key_of[i] = n_keys - 1;
    }
    /* The current rows being ended tell where a member's run of join/invite
     * rows began, for the first new row of each key (0003_member_since.sql). */
    int64_t *old_since = xmalloc(n_keys * sizeof *old_since);
    for (size_t k = 0; k < n_keys; k++) old_since[k] = -1;
    const char *cp[] = {db_arr_done(&c_room), db_arr_done(&c_type), db_arr_done(&c_key), db_arr_done(&c_start)};
    PGresult *ended = db_exec(x->c, x->err,
                              "UPDATE syncv3_room_state s SET end_nid = u.start FROM unnest($1::text[], $2::text[], "
                              "$3::text[], $4::bigint[]) WITH ORDINALITY AS u(room_id, event_type, state_key, start, "
                              "ord) WHERE s.room_id = u.room_id AND s.event_type = u.event_type AND "
                              "s.state_key = u.state_key AND s.end_nid IS NULL "
                              "RETURNING u.ord, CASE WHEN s.event_type = 'm.room.member' AND s.membership IN "
                              "('join', 'invite') THEN COALESCE(s.member_since, s.start_nid) END",
                              4, cp);
    rc = ended ? 0 : -1;
    if (ended) {
        for (int r = 0; r < PQntuples(ended); r++) {
            int64_t ord = db_get_i64(ended, r, 0);
            if (ord >= 1 && (size_t)ord <= n_keys && !PQgetisnull(ended, r, 1))
                old_since[ord - 1] = db_get_i64(ended, r, 1);
        }
        PQclear(ended);
    }
    /* Heroes keep their order across profile changes: a join or invite row
     * continues the run of the row before it when that one was a join or
     * invite too, else starts one at its own position. */
    int64_t since = -1;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        bool first = i == 0 || key_of[i] != key_of[i - 1];
        bool last = i + 1 == n || key_of[i + 1] != key_of[i];
        if (first) since = old_since[key_of[i]];
        bool member = !strcmp(ch[i].type, "m.room.member") && ch[i].membership &&
                      (!strcmp(ch[i].membership, "join") || !strcmp(ch[i].membership, "invite"));
        if (member) {
            if (since < 0) since = ch[i].nid;
            db_arr_i64(&i_since, since);
        } else {
            since = -1;
            db_arr_null(&i_since);
        }
        db_arr_str(&i_room, ch[i].room_id);
        db_arr_str(&i_type, ch[i].type);
        db_arr_str(&i_key, ch[i].state_key);
        db_arr_i64(&i_nid, ch[i].nid);
        db_arr_i64(&i_start, ch[i].nid);
        if (last) {
            db_arr_null(&i_end);
        } else {
            db_arr_i64(&i_end, ch[i + 1].nid);
        }
        db_arr_str(&i_memb, ch[i].membership);
    }
    free(old_since);
    free(key_of);
    if (rc == 0) {
        const char *ip[] = {db_arr_done(&i_room),  db_arr_done(&i_type), db_arr_done(&i_key),
                            db_arr_done(&i_nid),   db_arr_done(&i_start), db_arr_done(&i_end),
                            db_arr_done(&i_memb),  db_arr_done(&i_since)};
        rc = db_cmd(x->c, x->err,
                    "INSERT INTO syncv3_room_state (room_id, event_type, state_key, event_nid, start_nid, "
                    "end_nid, membership, member_since) SELECT * FROM unnest($1::text[], $2::text[], $3::text[], "
                    "$4::bigint[], $5::bigint[], $6::bigint[], $7::text[], $8::bigint[])",
                    8, ip);
    }
    /* Retire invites whose user's membership is now anything but invite. */
    if (rc == 0)
        rc = db_cmd(x->c, x->err,
                    "DELETE FROM syncv3_invites i USING syncv3_room_state s "
                    "WHERE s.room_id = ANY($1::text[]) AND s.event_type = 'm.room.member' AND s.end_nid IS NULL "
                    "AND s.membership <> 'invite' AND i.room_id = s.room_id AND i.user_id = s.state_key",
                    1, (const char *const[]){cp[0]});
    for (size_t i = 0; i < 12; i++) db_arr_release(all[i]);
out:
    free(ch);
    return rc;
}

static int apply_redactions(struct ctx *x)
{
    for (size_t i = 0; i < x->n_rooms; i++) {
        struct room_work *w = &x->rooms[i];
        if (w->skip) continue;
        for (size_t j = w->tl_keep_from; j < w->n_tl; j++) {
            struct pev *p = &w->tl[j];
            if (!p->redacts || p->known) continue;
            const char *params[] = {p->redacts, w->room_id};
            PGresult *r = db_exec(x->c, x->err,
                                  "SELECT e.event, r.room_version, EXISTS (SELECT 1 FROM syncv3_room_state s "
                                  "WHERE s.event_nid = e.event_nid AND s.end_nid IS NULL) "
                                  "FROM syncv3_events e LEFT JOIN syncv3_rooms r ON r.room_id = e.room_id "
                                  "WHERE e.event_id = $1 AND e.room_id = $2",
                                  2, params);
            if (!r) return -1;
            if (PQntuples(r) == 1) {
                char *red = redact_json(PQgetvalue(r, 0, 0), db_get_str(r, 0, 1), p->json);
                bool is_current_state = PQgetvalue(r, 0, 2)[0] == 't';
                if (red) {
                    const char *up[] = {p->redacts, red};
                    int rc = db_cmd(x->c, x->err, "UPDATE syncv3_events SET event = $2 WHERE event_id = $1", 2,
                                    up);
                    free(red);
                    if (rc < 0) {
                        PQclear(r);
                        return -1;
                    }
                    if (is_current_state) {
                        result_room(x, w)->state_changed = true;
                        x->redacted_state = true;
                    }
                }
            }
            PQclear(r);
        }
    }
    return 0;
}

static int write_rooms(struct ctx *x)
{
    struct db_arr r_all, r_nid, r_ts, r_state, b_room, b_type, b_nid, b_ts;
    struct db_arr *arrs[] = {&r_all, &r_nid, &r_ts, &r_state, &b_room, &b_type, &b_nid, &b_ts};
    for (size_t i = 0; i < 8; i++) db_arr_init(arrs[i]);
    for (size_t i = 0; i < x->n_rooms; i++) {
        struct room_work *w = &x->rooms[i];
        if (w->skip) continue;
        int64_t max_nid = 0, ts = 0;
        for (int pass = 0; pass < 2; pass++) {
            struct pev *v = pass ? w->tl : w->state;
            size_t from = pass ? w->tl_keep_from : 0, cnt = pass ? w->n_tl : w->n_state;
            for (size_t j = from; j < cnt; j++) {
                if (v[j].known) continue;
                if (v[j].nid > max_nid) {
                    max_nid = v[j].nid;
                    ts = v[j].ts;
                }
                if (pass && !v[j].is_state && store_bump_index(v[j].type) >= 0) {
                    db_arr_str(&b_room, w->room_id);
                    db_arr_str(&b_type, v[j].type);
                    db_arr_i64(&b_nid, v[j].nid);
                    db_arr_i64(&b_ts, v[j].ts);
                }
            }
        }
        if (!max_nid) continue;
        db_arr_str(&r_all, w->room_id);
        db_arr_i64(&r_nid, max_nid);
        db_arr_i64(&r_ts, ts);
        if (w->out_idx && x->out->rooms[w->out_idx - 1].state_changed) db_arr_str(&r_state, w->room_id);
        if (!w->known_room) result_room(x, w)->is_new = true;
    }
    int rc = 0;
    if (r_all.n) {
        const char *p[] = {db_arr_done(&r_all), db_arr_done(&r_nid), db_arr_done(&r_ts)};
        rc = db_cmd(x->c, x->err,
                    "INSERT INTO syncv3_rooms AS r (room_id, latest_nid, latest_ts) "
                    "SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[]) "
                    "ON CONFLICT (room_id) DO UPDATE SET latest_nid = GREATEST(r.latest_nid, EXCLUDED.latest_nid), "
                    "latest_ts = CASE WHEN EXCLUDED.latest_nid > r.latest_nid THEN EXCLUDED.latest_ts "
                    "ELSE r.latest_ts END",
                    3, p);
    }
    if (rc == 0 && b_room.n)
        rc = store_bump_put(x->c, x->err, db_arr_done(&b_room), db_arr_done(&b_type), db_arr_done(&b_nid),
                            db_arr_done(&b_ts));
    /* Derived columns come from current state, so they can never disagree with it. */
    if (rc == 0 && r_state.n) {
        const char *p[] = {db_arr_done(&r_state)};
        rc = db_cmd(
            x->c, x->err,
            "WITH cur AS (SELECT s.room_id, s.event_type, s.state_key, s.membership, e.event::json AS ev "
            "  FROM syncv3_room_state s JOIN syncv3_events e ON e.event_nid = s.event_nid "
            "  WHERE s.room_id = ANY($1::text[]) AND s.end_nid IS NULL AND (s.state_key = '' OR "
            "  s.event_type = 'm.room.member') AND s.event_type IN ('m.room.name', 'm.room.canonical_alias', "
            "  'm.room.avatar', 'm.room.encryption', 'm.room.create', 'm.room.tombstone', 'm.room.member')), "
            "agg AS (SELECT room_id, "
            /* Only string values: a hostile number or object is no name at all. */
            "  max(ev->'content'->>'name') FILTER (WHERE event_type = 'm.room.name' AND "
            "  json_typeof(ev->'content'->'name') = 'string') AS name, "
            "  max(ev->'content'->>'alias') FILTER (WHERE event_type = 'm.room.canonical_alias') AS alias, "
            "  max(ev->'content'->>'url') FILTER (WHERE event_type = 'm.room.avatar' AND "
            "  json_typeof(ev->'content'->'url') = 'string') AS avatar, "
            "  bool_or(event_type = 'm.room.encryption') AS enc, "
            "  max(ev->'content'->>'type') FILTER (WHERE event_type = 'm.room.create') AS rtype, "
            "  max(COALESCE(ev->'content'->>'room_version', '1')) FILTER (WHERE event_type = 'm.room.create') AS ver, "
            "  max(ev->'content'->'predecessor'->>'room_id') FILTER (WHERE event_type = 'm.room.create') AS pred, "
            "  max(ev->'content'->>'replacement_room') FILTER (WHERE event_type = 'm.room.tombstone') AS upg, "
            "  count(*) FILTER (WHERE event_type = 'm.room.member' AND membership = 'join') AS joined, "
            "  count(*) FILTER (WHERE event_type = 'm.room.member' AND membership = 'invite') AS invited "
            "  FROM cur GROUP BY room_id) "
            "UPDATE syncv3_rooms r SET name = NULLIF(agg.name, ''), canonical_alias = NULLIF(agg.alias, ''), "
            "avatar = NULLIF(agg.avatar, ''), is_encrypted = r.is_encrypted OR COALESCE(agg.enc, false), "
            "room_type = COALESCE(agg.rtype, r.room_type), room_version = COALESCE(agg.ver, r.room_version), "
            "predecessor_room_id = COALESCE(agg.pred, r.predecessor_room_id), "
            "upgraded_room_id = NULLIF(agg.upg, ''), joined_count = agg.joined, invited_count = agg.invited "
            "FROM agg WHERE r.room_id = agg.room_id",
            1, p);
    }
    for (size_t i = 0; i < 8; i++) db_arr_release(arrs[i]);
    return rc;
}

static int write_txns(struct ctx *x)
{
    struct db_arr ev, txn;
    db_arr_init(&ev);
    db_arr_init(&txn);
    for (size_t i = 0; i < x->n_rooms; i++) {
        struct room_work *w = &x->rooms[i];
        for (size_t j = 0; j < w->n_tl; j++) {
            if (!w->tl[j].txn_id) continue;
            db_arr_str(&ev, w->tl[j].event_id);
            db_arr_str(&txn, w->tl[j].txn_id);
        }
    }
    int rc = 0;
    if (ev.n) {
        char ts[24];
        snprintf(ts, sizeof ts, "%lld", (long long)clock_wall_ms());
        const char *p[] = {x->user_id, x->device_id, db_arr_done(&ev), db_arr_done(&txn), ts};
        rc = db_cmd(x->c, x->err,
                    "INSERT INTO syncv3_txns (user_id, device_id, event_id, txn_id, ts) "
                    "SELECT $1, $2, e, t, $5 FROM unnest($3::text[], $4::text[]) AS u(e, t) "
                    "ON CONFLICT DO NOTHING",
                    5, p);
    }
    db_arr_release(&ev);
    db_arr_release(&txn);
    return rc;
}

/* Finds the polling user's own leave/ban/invite-withdrawal in a leave section. */
static void note_leave(struct ctx *x, struct room_work *w)
{
    /* The user's own membership change, which the user must see even when
     * the room itself was never stored (an invite rejected or withdrawn). */
    struct event *ev = NULL;
    for (size_t j = w->n_tl; j-- > 0 && !ev;) {
        struct pev *p = &w->tl[j];
        if (p->membership && p->state_key && strcmp(p->state_key, x->user_id) == 0 &&
            (strcmp(p->membership, "leave") == 0 || strcmp(p->membership, "ban") == 0))
            ev = event_new(0, p->event_id, w->room_id, p->type, p->state_key, p->sender, p->membership, p->ts,
                           p->json, 0);
    }
    x->out->leave_events = xrealloc(x->out->leave_events, (x->out->n_leaves + 1) * sizeof *x->out->leave_events);
    x->out->leave_events[x->out->n_leaves] = ev;
    x->out->leaves = xrealloc(x->out->leaves, (x->out->n_leaves + 1) * sizeof *x->out->leaves);
    x->out->leaves[x->out->n_leaves++] = xstrdup(w->room_id);
}

/* next_batch: the response's token, which /messages also accepts as `from`; on a
 * chunk's last event it lets a timeline that starts inside the chunk be paginated
 * back without a hole (the client gets the events after it once more). */
static void collect_rooms(json_t *body, const char *next_batch, struct room_work **rooms_out, size_t *n_out)
{
    json_t *rooms = json_object_get(body, "rooms");
    json_t *sections[2] = {json_object_get(rooms, "join"), json_object_get(rooms, "leave")};
    size_t n = 0, cap = 0;
    struct room_work *v = NULL;
    for (int s = 0; s < 2; s++) {
        if (!json_is_object(sections[s])) continue;
        const char *room_id;
        json_t *sec;
        json_object_foreach(sections[s], room_id, sec)
        {
            if (!json_is_object(sec) || !*room_id) continue;
            if (n == cap) v = xrealloc(v, (cap = cap ? 2 * cap : 16) * sizeof *v);
            struct room_work *w = &v[n++];
            *w = (struct room_work){.room_id = room_id, .section = sec, .is_leave = s == 1};
            json_t *tl = json_object_get(sec, "timeline");
            w->state = parse_events(json_object_get(json_object_get(sec, "state"), "events"), room_id, true,
                                    &w->n_state);
            w->tl = parse_events(json_object_get(tl, "events"), room_id, false, &w->n_tl);
            w->limited = json_is_true(json_object_get(tl, "limited"));
            if (w->n_tl) w->tl[0].prev_batch = jstr(tl, "prev_batch");
            if (w->n_tl && next_batch && *next_batch && !w->tl[w->n_tl - 1].prev_batch)
                w->tl[w->n_tl - 1].prev_batch = next_batch;
            /* A state event that also appears in the timeline is timeline. */
            for (size_t i = 0; i < w->n_state; i++) {
                for (size_t j = 0; j < w->n_tl; j++) {
                    if (strcmp(w->state[i].event_id, w->tl[j].event_id) == 0) {
                        pev_release(&w->state[i]);
                        w->state[i] = w->state[--w->n_state];
                        i--;
                        break;
                    }
                }
            }
            /* A create event that only the timeline carries, for a room whose
             * state block lacks it, moves to the state block. */
            bool state_has_create = false;
            for (size_t i = 0; i < w->n_state; i++) state_has_create |= is_create(&w->state[i]);
            if (!state_has_create && w->n_state) {
                for (size_t j = 0; j < w->n_tl; j++) {
                    if (is_create(&w->tl[j])) {
                        w->state = xrealloc(w->state, (w->n_state + 1) * sizeof *w->state);
                        memmove(w->state + 1, w->state, w->n_state * sizeof *w->state);
                        w->state[0] = w->tl[j];
                        w->state[0].is_state = true;
                        w->state[0].prev_batch = NULL;
                        w->n_state++;
                        memmove(w->tl + j, w->tl + j + 1, (w->n_tl - j - 1) * sizeof *w->tl);
                        w->n_tl--;
                        LOG_INFO("ingest", "room %s: moved m.room.create from the timeline to the state", room_id);
                        break;
                    }
                }
            }
        }
    }
    *rooms_out = v;
    *n_out = n;
}

static void build_result_events(struct ctx *x)
{
    for (size_t i = 0; i < x->n_rooms; i++) {
        struct room_work *w = &x->rooms[i];
        if (w->skip) continue;
        for (size_t j = 0; j < w->n_state; j++) {
            struct pev *p = &w->state[j];
            if (p->known || !p->membership) continue;
            struct acc_room *ar = result_room(x, w);
            ar->members = xrealloc(ar->members, (ar->n_members + 1) * sizeof *ar->members);
            ar->members[ar->n_members++] =
                (struct acc_member){xstrdup(p->state_key), xstrdup(p->membership), p->nid, p->ts};
        }
    }
    for (size_t i = 0; i < x->n_rooms; i++) {
        struct room_work *w = &x->rooms[i];
        if (w->skip || w->tl_keep_from >= w->n_tl) continue;
        struct acc_room *ar = result_room(x, w);
        /* Connections hold the history before the gap: they must be told. */
        if (w->known_room && w->tl[w->tl_keep_from].missing_previous) ar->gap = true;
        size_t n = w->n_tl - w->tl_keep_from;
        ar->events = xcalloc(n, sizeof *ar->events);
        for (size_t j = w->tl_keep_from; j < w->n_tl; j++) {
            struct pev *p = &w->tl[j];
            ar->events[ar->n_events++] = event_new(p->nid, p->event_id, w->room_id, p->type, p->state_key,
                                                   p->sender, p->membership, p->ts, p->json, 0);
        }
    }
    for (size_t i = 0; i < x->n_rooms; i++) {
        struct room_work *w = &x->rooms[i];
        if (w->skip) continue;
        for (size_t j = 0; j < w->n_tl; j++) {
            struct pev *p = &w->tl[j];
            if (p->state_key || strcmp(p->sender, x->user_id) != 0) continue;
            x->out->own_seen = xrealloc(x->out->own_seen, (x->out->n_own_seen + 1) * sizeof *x->out->own_seen);
            x->out->own_seen[x->out->n_own_seen++] =
                (struct acc_own){xstrdup(p->event_id), p->txn_id ? xstrdup(p->txn_id) : NULL};
        }
    }
}

int acc_apply(PGconn *c, const char *user_id, const char *device_id, json_t *body, const char *next_batch,
              struct acc_e2ee_memo *memo, struct acc_result *out, char **err)
{
    *out = (struct acc_result){0};
    struct ctx x = {.c = c, .err = err, .user_id = user_id, .device_id = device_id, .out = out};
    struct peruser u = {.c = c, .err = err, .user_id = user_id, .device_id = device_id, .out = out};
    struct str_entry *known_events = NULL, *known_rooms = NULL;
    char *new_otk = NULL, *new_fb = NULL;
    int rc = -1;
    collect_rooms(body, next_batch, &x.rooms, &x.n_rooms);

    if (db_begin(c, err) < 0) goto out;
    if (peruser_account_data(&u, "", json_object_get(json_object_get(body, "account_data"), "events")) < 0)
        goto out;
    if (x.n_rooms) {
        if (lookup_known(&x, &known_events, &known_rooms) < 0) goto out;
        decide(&x, known_events, known_rooms);
        /* Rooms first, so redactions see a new room's version; then the
         * derived columns again for rooms whose current state a redaction hit. */
        if (write_events(&x) < 0 || write_state(&x) < 0 || write_rooms(&x) < 0 || apply_redactions(&x) < 0 ||
            (x.redacted_state && write_rooms(&x) < 0) || write_txns(&x) < 0)
            goto out;
    }
    for (size_t i = 0; i < x.n_rooms; i++) {
        struct room_work *w = &x.rooms[i];
        if (w->is_leave) {
            note_leave(&x, w);
            const char *p[] = {user_id, w->room_id};
            if (db_cmd(c, err, "DELETE FROM syncv3_invites WHERE user_id = $1 AND room_id = $2", 2, p) < 0)
                goto out;
            continue;
        }
        json_t *eph = json_object_get(json_object_get(w->section, "ephemeral"), "events");
        if (json_is_array(eph) && peruser_ephemeral(&u, w->room_id, eph) < 0) goto out;
        if (peruser_account_data(&u, w->room_id,
                               json_object_get(json_object_get(w->section, "account_data"), "events")) < 0)
            goto out;
        if (peruser_unread(&u, w->room_id, json_object_get(w->section, "unread_notifications")) < 0) goto out;
    }
    json_t *invites = json_object_get(json_object_get(body, "rooms"), "invite");
    if (json_is_object(invites) && peruser_invites(&u, invites) < 0) goto out;
    if (peruser_device_lists(&u, json_object_get(body, "device_lists")) < 0) goto out;
    if (peruser_e2ee(&u, body, memo, &new_otk, &new_fb) < 0) goto out;
    /* To-device messages and the since token commit together: a crash before
     * the commit re-fetches them, after it they are stored exactly once. */
    if (todevice_store(&u, json_object_get(json_object_get(body, "to_device"), "events")) < 0) goto out;
    const char *sp[] = {user_id, device_id, next_batch ? next_batch : ""};
    if (db_cmd(c, err,
               "INSERT INTO syncv3_sync2_devices (user_id, device_id, since) VALUES ($1, $2, $3) "
               "ON CONFLICT (user_id, device_id) DO UPDATE SET since = EXCLUDED.since",
               3, sp) < 0)
        goto out;
    if (db_commit(c, err) < 0) goto out;
    build_result_events(&x);
    if (new_otk) {
        free(memo->otk_json);
        memo->otk_json = new_otk;
        new_otk = NULL;
    }
    if (new_fb) {
        free(memo->fallback_json);
        memo->fallback_json = new_fb;
        new_fb = NULL;
    }
    rc = 0;
out:
    if (rc < 0) {
        db_rollback(c);
        acc_result_release(out);
    }
    free(new_otk);
    free(new_fb);
    free_set(&known_events);
    free_set(&known_rooms);
    for (size_t i = 0; i < x.n_rooms; i++) {
        for (size_t j = 0; j < x.rooms[i].n_state; j++) pev_release(&x.rooms[i].state[j]);
        for (size_t j = 0; j < x.rooms[i].n_tl; j++) pev_release(&x.rooms[i].tl[j]);
        free(x.rooms[i].state);
        free(x.rooms[i].tl);
    }
    free(x.rooms);
    return rc;
}

size_t acc_parse_only(json_t *body)
{
    struct room_work *rooms = NULL;
    size_t n_rooms = 0, n_events = 0;
    collect_rooms(body, NULL, &rooms, &n_rooms);
    for (size_t i = 0; i < n_rooms; i++) {
        n_events += rooms[i].n_state + rooms[i].n_tl;
        for (size_t j = 0; j < rooms[i].n_state; j++) pev_release(&rooms[i].state[j]);
        for (size_t j = 0; j < rooms[i].n_tl; j++) pev_release(&rooms[i].tl[j]);
        free(rooms[i].state);
        free(rooms[i].tl);
    }
    free(rooms);
    return n_events;
}

void acc_result_release(struct acc_result *r)
{
    for (size_t i = 0; i < r->n_rooms; i++) {
        for (size_t j = 0; j < r->rooms[i].n_events; j++) event_unref(r->rooms[i].events[j]);
        free(r->rooms[i].events);
        for (size_t j = 0; j < r->rooms[i].n_members; j++) {
            free(r->rooms[i].members[j].user_id);
            free(r->rooms[i].members[j].membership);
        }
        free(r->rooms[i].members);
        free(r->rooms[i].room_id);
    }
    free(r->rooms);
    for (size_t i = 0; i < r->n_unread; i++) free(r->unread[i].room_id);
    free(r->unread);
    for (size_t i = 0; i < r->n_invites; i++) free(r->invites[i]);
    free(r->invites);
    for (size_t i = 0; i < r->n_leaves; i++) {
        free(r->leaves[i]);
        event_unref(r->leave_events[i]);
    }
    free(r->leaves);
    free(r->leave_events);
    for (size_t i = 0; i < r->n_ephemeral; i++) {
        free(r->ephemeral[i].room_id);
        free(r->ephemeral[i].typing);
        free(r->ephemeral[i].receipts);
        free(r->ephemeral[i].receipts_private);
    }
    free(r->ephemeral);
    for (size_t i = 0; i < r->n_own_seen; i++) {
        free(r->own_seen[i].event_id);
        free(r->own_seen[i].txn_id);
    }
    free(r->own_seen);
    *r = (struct acc_result){0};
}

void acc_e2ee_memo_release(struct acc_e2ee_memo *m)
{
    free(m->otk_json);
    free(m->fallback_json);
    *m = (struct acc_e2ee_memo){0};
}
