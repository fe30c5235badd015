#include "store/rooms.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "store/db.h"

static char *dup_opt(PGresult *r, int row, int col)
{
    const char *v = db_get_str(r, row, col);
    return v ? xstrdup(v) : NULL;
}

void store_room_release(struct store_room *r)
{
    free(r->room_id);
    free(r->name);
    free(r->canonical_alias);
    free(r->avatar);
    free(r->room_type);
    free(r->predecessor);
    free(r->upgraded);
    for (int i = 0; i < r->n_heroes; i++) {
        free(r->heroes[i].user_id);
        free(r->heroes[i].displayname);
        free(r->heroes[i].avatar_url);
    }
    *r = (struct store_room){0};
}

static char *dup_or_null(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

void store_room_copy(struct store_room *dst, const struct store_room *src)
{
    *dst = *src;
    dst->room_id = xstrdup(src->room_id);
    dst->name = dup_or_null(src->name);
    dst->canonical_alias = dup_or_null(src->canonical_alias);
    dst->avatar = dup_or_null(src->avatar);
    dst->room_type = dup_or_null(src->room_type);
    dst->predecessor = dup_or_null(src->predecessor);
    dst->upgraded = dup_or_null(src->upgraded);
    for (int i = 0; i < src->n_heroes; i++)
        dst->heroes[i] = (struct store_hero){xstrdup(src->heroes[i].user_id), dup_or_null(src->heroes[i].displayname),
                                             dup_or_null(src->heroes[i].avatar_url)};
}

void store_user_room_release(struct store_user_room *r)
{
    free(r->room_id);
    free(r->invite_state);
    free(r->tags_json);
    *r = (struct store_user_room){0};
}

int store_max_nid(PGconn *c, int64_t *pos, char **err)
{
    PGresult *r = db_exec(c, err, "SELECT COALESCE(max(event_nid), 0) FROM syncv3_events", 0, NULL);
    if (!r) return -1;
    *pos = db_get_i64(r, 0, 0);
    PQclear(r);
    return 0;
}

int store_user_rooms(PGconn *c, const char *user_id, struct store_user_room **out, int *n, char **err)
{
    const char *p[] = {user_id};
    /* The join span starts at the first join after the user's last non-join
     * membership, so profile changes do not move it. When the current join
     * row began the user's run of join/invite rows (member_since, the
     * common case: one join, no profile change since), that is the row
     * itself and nothing more is read; only other rooms look back through
     * the history (two index probes). MATERIALIZED: inlined, the span ran
     * twice per room (for the join event and for the column). */
    PGresult *r = db_exec(
        c, err,
        "WITH joined AS MATERIALIZED (SELECT s.room_id, s.start_nid, s.member_since FROM syncv3_room_state s "
        "  WHERE s.event_type = 'm.room.member' AND s.state_key = $1 AND s.end_nid IS NULL AND s.membership = "
        "  'join'), "
        "spans AS MATERIALIZED (SELECT j.room_id, CASE WHEN j.member_since = j.start_nid THEN j.start_nid ELSE "
        "  (SELECT min(h.start_nid) FROM syncv3_room_state h WHERE h.room_id = j.room_id "
        "  AND h.event_type = 'm.room.member' AND h.state_key = $1 AND h.membership = 'join' AND h.start_nid > "
        "  COALESCE((SELECT max(h2.start_nid) FROM syncv3_room_state h2 WHERE h2.room_id = j.room_id AND "
        "  h2.event_type = 'm.room.member' AND h2.state_key = $1 AND h2.membership <> 'join'), 0)) END AS join_nid "
        "  FROM joined j) "
        "SELECT sp.room_id, false, sp.join_nid, COALESCE(e.origin_server_ts, 0), NULL, 0, "
        "  COALESCE(u.notification_count, 0), COALESCE(u.highlight_count, 0), a.data FROM spans sp "
        "  LEFT JOIN syncv3_events e ON e.event_nid = sp.join_nid "
        "  LEFT JOIN syncv3_unread u ON u.user_id = $1 AND u.room_id = sp.room_id "
        "  LEFT JOIN syncv3_account_data a ON a.user_id = $1 AND a.room_id = sp.room_id AND a.type = 'm.tag' "
        "UNION ALL "
        "SELECT i.room_id, true, 0, 0, i.invite_state, i.ts, 0, 1, NULL FROM syncv3_invites i WHERE i.user_id = $1 "
        "  AND NOT EXISTS (SELECT 1 FROM joined j WHERE j.room_id = i.room_id)",
        1, p);
    if (!r) return -1;
    *n = PQntuples(r);
    *out = xcalloc((size_t)(*n ? *n : 1), sizeof **out);
    for (int i = 0; i < *n; i++) {
        (*out)[i] = (struct store_user_room){
            .room_id = xstrdup(PQgetvalue(r, i, 0)),
            .invite = PQgetvalue(r, i, 1)[0] == 't',
            .join_nid = db_get_i64(r, i, 2),
            .join_ts = db_get_i64(r, i, 3),
            .invite_state = dup_opt(r, i, 4),
            .invite_ts = db_get_i64(r, i, 5),
            .notif = db_get_i64(r, i, 6),
            .highlight = db_get_i64(r, i, 7),
            .tags_json = dup_opt(r, i, 8),
        };
    }
    PQclear(r);
    return 0;
}

static void ids_array(struct buf *b, const char *const *ids, int n)
{
    buf_putc(b, '{');
    for (int i = 0; i < n; i++) {
        if (i) buf_putc(b, ',');
        db_array_elem(b, ids[i]);
    }
    buf_putc(b, '}');
}

int store_rooms_get(PGconn *c, const char *const *room_ids, int n_ids, struct store_room **out, int *n,
                    char **err)
{
    *out = NULL;
    *n = 0;
    struct buf ids = BUF_INIT;
    ids_array(&ids, room_ids, n_ids);
    const char *p[] = {buf_cstr(&ids)};
    int rc = -1;
    PGresult *h = NULL, *b = NULL;
    PGresult *r = db_exec(c, err,
                          "SELECT room_id, name, canonical_alias, avatar, room_type, predecessor_room_id, "
                          "upgraded_room_id, is_encrypted, joined_count, invited_count, latest_nid, latest_ts "
                          "FROM syncv3_rooms WHERE room_id = ANY($1::text[]) ORDER BY room_id COLLATE \"C\"",
                          1, p);
    if (!r) goto out;
    /* Heroes: the earliest members of the current join/invite runs, so a
     * profile change or a newer member never reorders them. Only the six
     * chosen member events are read, each parsed once (the LATERAL with a
     * LIMIT is not inlined, so its projection is computed once per hero); a
     * profile field that is not a string counts as unset. Both look-ups are
     * LATERAL with a LIMIT so that the plan is index probes per room whatever
     * the table statistics say: right after a large first sync (before
     * autovacuum has analysed the tables) the planner otherwise hash-joined
     * the whole event table for one room. */
    h = db_exec(c, err,
                "SELECT u.room_id, x.state_key, CASE WHEN json_typeof(e.c->'displayname') = 'string' THEN "
                "e.c->>'displayname' END, CASE WHEN json_typeof(e.c->'avatar_url') = 'string' THEN "
                "e.c->>'avatar_url' END FROM unnest($1::text[]) AS u(room_id) "
                "CROSS JOIN LATERAL (SELECT s.state_key, s.event_nid, COALESCE(s.member_since, s.start_nid) AS "
                "since FROM syncv3_room_state s WHERE s.room_id = u.room_id AND s.event_type = 'm.room.member' "
                "AND s.end_nid IS NULL AND s.membership IN ('join', 'invite') ORDER BY 3, 1 LIMIT 6) x "
                "CROSS JOIN LATERAL (SELECT ev.event::json->'content' AS c FROM syncv3_events ev "
                "WHERE ev.event_nid = x.event_nid LIMIT 1) e ORDER BY u.room_id COLLATE \"C\", x.since, x.state_key",
                1, p);
    if (!h) goto out;
    b = db_exec(c, err,
                "SELECT room_id, event_type, event_nid, ts FROM syncv3_room_bump WHERE room_id = ANY($1::text[]) "
                "ORDER BY room_id COLLATE \"C\"",
                1, p);
    if (!b) goto out;
    *n = PQntuples(r);
    *out = xcalloc((size_t)(*n ? *n : 1), sizeof **out);
    for (int i = 0; i < *n; i++) {
        struct store_room *m = &(*out)[i];
        *m = (struct store_room){
            .room_id = xstrdup(PQgetvalue(r, i, 0)),
            .name = dup_opt(r, i, 1),
            .canonical_alias = dup_opt(r, i, 2),
            .avatar = dup_opt(r, i, 3),
            .room_type = dup_opt(r, i, 4),
            .predecessor = dup_opt(r, i, 5),
            .upgraded = dup_opt(r, i, 6),
            .encrypted = PQgetvalue(r, i, 7)[0] == 't',
            .joined_count = db_get_i64(r, i, 8),
            .invited_count = db_get_i64(r, i, 9),
            .latest_nid = db_get_i64(r, i, 10),
            .latest_ts = db_get_i64(r, i, 11),
        };
    }
    /* Rooms, heroes and bump rows all arrive sorted by room (byte order): merge them. */
    for (int i = 0, hi = 0; i < PQntuples(h); i++) {
        const char *rid = PQgetvalue(h, i, 0);
        while (hi < *n && strcmp((*out)[hi].room_id, rid) < 0) hi++;
        if (hi == *n) break;
        if (strcmp((*out)[hi].room_id, rid) != 0) continue;
        struct store_room *m = &(*out)[hi];
        if (m->n_heroes < STORE_MAX_HEROES)
            m->heroes[m->n_heroes++] =
                (struct store_hero){xstrdup(PQgetvalue(h, i, 1)), dup_opt(h, i, 2), dup_opt(h, i, 3)};
    }
    for (int i = 0, hi = 0; i < PQntuples(b); i++) {
        const char *rid = PQgetvalue(b, i, 0);
        int k = store_bump_index(PQgetvalue(b, i, 1));
        while (hi < *n && strcmp((*out)[hi].room_id, rid) < 0) hi++;
        if (hi == *n) break;
        if (k < 0 || strcmp((*out)[hi].room_id, rid) != 0) continue;
        (*out)[hi].bump.nid[k] = db_get_i64(b, i, 2);
        (*out)[hi].bump.ts[k] = db_get_i64(b, i, 3);
    }
    rc = 0;
out:
    PQclear(r);
    PQclear(h);
    PQclear(b);
    buf_release(&ids);
    return rc;
}

int store_latest_of_types(PGconn *c, const char *const *room_ids, const int64_t *after_nids, int n_rooms,
                          const char *const *types, int n_types, int64_t pos, int64_t *ts_out, char **err)
{
    for (int i = 0; i < n_rooms; i++) ts_out[i] = 0;
    if (!n_rooms || !n_types) return 0;
    struct buf a_idx = BUF_INIT, a_room = BUF_INIT, a_nid = BUF_INIT, a_type = BUF_INIT;
    buf_putc(&a_idx, '{');
    buf_putc(&a_room, '{');
    buf_putc(&a_nid, '{');
    for (int i = 0; i < n_rooms; i++) {
        const char *sep = i ? "," : "";
        buf_printf(&a_idx, "%s%d", sep, i);
        buf_puts(&a_room, sep);
        db_array_elem(&a_room, room_ids[i]);
        buf_printf(&a_nid, "%s%lld", sep, (long long)after_nids[i]);
    }
    buf_putc(&a_idx, '}');
    buf_putc(&a_room, '}');
    buf_putc(&a_nid, '}');
    ids_array(&a_type, types, n_types);
    char posb[24];
    snprintf(posb, sizeof posb, "%lld", (long long)pos);
    const char *p[] = {buf_cstr(&a_idx), buf_cstr(&a_room), buf_cstr(&a_nid), buf_cstr(&a_type), posb};
    /* One backward index scan per (room, type), stopping at its newest event. */
    PGresult *r = db_exec(
        c, err,
        "SELECT u.i, max(x.ts) FROM unnest($1::int[], $2::text[], $3::bigint[]) AS u(i, room_id, after) "
        "CROSS JOIN unnest($4::text[]) AS t(type) "
        "CROSS JOIN LATERAL (SELECT e.origin_server_ts AS ts FROM syncv3_events e WHERE e.room_id = u.room_id "
        "AND NOT e.is_state AND e.event_type = t.type AND e.event_nid > u.after AND e.event_nid <= $5::bigint "
        "ORDER BY e.event_nid DESC LIMIT 1) x GROUP BY u.i",
        5, p);
    int rc = -1;
    if (!r) goto out;
    for (int i = 0; i < PQntuples(r); i++) {
        int idx = (int)db_get_i64(r, i, 0);
        if (idx >= 0 && idx < n_rooms) ts_out[idx] = db_get_i64(r, i, 1);
    }
    rc = 0;
out:
    PQclear(r);
    buf_release(&a_idx);
    buf_release(&a_room);
    buf_release(&a_nid);
    buf_release(&a_type);
    return rc;
}

int store_txn_ids(PGconn *c, const char *user_id, const char *device_id, const char *const *event_ids, int n,
                  char **txn_out, char **err)
{
    for (int i = 0; i < n; i++) txn_out[i] = NULL;
    if (!n) return 0;
    struct buf ids = BUF_INIT;
    ids_array(&ids, event_ids, n);
    const char *p[] = {user_id, device_id, buf_cstr(&ids)};
    PGresult *r = db_exec(c, err,
                          "SELECT u.i, t.txn_id FROM unnest($3::text[]) WITH ORDINALITY AS u(event_id, i) "
                          "JOIN syncv3_txns t ON t.user_id = $1 AND t.device_id = $2 AND t.event_id = u.event_id",
                          3, p);
    buf_release(&ids);
    if (!r) return -1;
    for (int i = 0; i < PQntuples(r); i++) {
        int64_t idx = db_get_i64(r, i, 0) - 1;
        if (idx >= 0 && idx < n && !txn_out[idx]) txn_out[idx] = xstrdup(PQgetvalue(r, i, 1));
    }
    PQclear(r);
    return 0;
}

int64_t store_txn_ids_purge(PGconn *c, int64_t cutoff_ms, char **err)
{
    return db_cmd_rows_i64(c, err, "DELETE FROM syncv3_txns WHERE ts < $1::bigint", cutoff_ms);
}

int store_account_data_get(PGconn *c, const char *user_id, const char *room_id, const char *type, char **json,
                           char **err)
{
    const char *p[] = {user_id, room_id, type};
    PGresult *r = db_exec(c, err,
                          "SELECT data FROM syncv3_account_data WHERE user_id = $1 AND room_id = $2 AND type = $3",
                          3, p);
    if (!r) return -1;
    *json = PQntuples(r) ? xstrdup(PQgetvalue(r, 0, 0)) : NULL;
    PQclear(r);
    return 0;
}

void store_tl_release(struct store_tl *t)
{
    for (int i = 0; i < t->n; i++) event_unref(t->events[i]);
    free(t->events);
    free(t->prev_batch);
    *t = (struct store_tl){0};
}

static struct event *row_event(PGresult *r, int i, int col0)
{
    /* columns: nid, event_id, room_id, type, state_key, sender, membership, ts, json */
    return event_new(db_get_i64(r, i, col0), PQgetvalue(r, i, col0 + 1), PQgetvalue(r, i, col0 + 2),
                     PQgetvalue(r, i, col0 + 3), db_get_str(r, i, col0 + 4), PQgetvalue(r, i, col0 + 5),
                     db_get_str(r, i, col0 + 6), db_get_i64(r, i, col0 + 7), PQgetvalue(r, i, col0 + 8),
                     (size_t)PQgetlength(r, i, col0 + 8));
}

int store_timelines(PGconn *c, const struct store_tl_req *reqs, int n, struct store_tl *out, char **err)
{
    for (int i = 0; i < n; i++) out[i] = (struct store_tl){0};
    if (!n) return 0;
    struct buf a_idx = BUF_INIT, a_room = BUF_INIT, a_lo = BUF_INIT, a_hi = BUF_INIT, a_lim = BUF_INIT;
    struct buf *all[] = {&a_idx, &a_room, &a_lo, &a_hi, &a_lim};
    for (int k = 0; k < 5; k++) buf_putc(all[k], '{');
    for (int i = 0; i < n; i++) {
        const char *sep = i ? "," : "";
        buf_printf(&a_idx, "%s%d", sep, i);
        buf_puts(&a_room, sep);
        db_array_elem(&a_room, reqs[i].room_id);
        buf_printf(&a_lo, "%s%lld", sep, (long long)reqs[i].from_nid);
        buf_printf(&a_hi, "%s%lld", sep, (long long)reqs[i].to_nid);
        /* One more than asked: finding it tells that the timeline is limited. */
        buf_printf(&a_lim, "%s%d", sep, reqs[i].limit + 1);
    }
    for (int k = 0; k < 5; k++) buf_putc(all[k], '}');
    const char *p[] = {buf_cstr(&a_idx), buf_cstr(&a_room), buf_cstr(&a_lo), buf_cstr(&a_hi), buf_cstr(&a_lim)};
    int rc = -1;
    PGresult *pb = NULL;
    PGresult *r = db_exec(
        c, err,
        "SELECT u.i, e.event_nid, e.event_id, e.room_id, e.event_type, e.state_key, e.sender, e.membership, "
        "e.origin_server_ts, e.event, e.missing_previous, e.prev_batch "
        "FROM unnest($1::int[], $2::text[], $3::bigint[], $4::bigint[], $5::int[]) AS u(i, room_id, lo, hi, lim) "
        "CROSS JOIN LATERAL (SELECT * FROM syncv3_events e WHERE e.room_id = u.room_id AND NOT e.is_state "
        "AND e.event_nid >= u.lo AND e.event_nid <= u.hi ORDER BY e.event_nid DESC LIMIT u.lim) e "
        "ORDER BY u.i, e.event_nid DESC",
        5, p);
    if (!r) goto out;
    /* Rows are newest first per room; stop at a gap marker (include it). */
    int rows = PQntuples(r);
    bool *stopped = xcalloc((size_t)n, sizeof *stopped);
    for (int i = 0; i < rows; i++) {
        int idx = (int)db_get_i64(r, i, 0);
        if (idx < 0 || idx >= n || stopped[idx]) continue;
        struct store_tl *t = &out[idx];
        if (t->n == reqs[idx].limit) {
            t->limited = true; /* an older visible event exists */
            stopped[idx] = true;
            continue;
        }
        t->events = xrealloc(t->events, (size_t)(t->n + 1) * sizeof *t->events);
        t->events[t->n++] = row_event(r, i, 1);
        if (PQgetvalue(r, i, 10)[0] == 't') {
            /* A gap: what came before this event was never seen. */
            stopped[idx] = true;
            t->limited = true;
        }
        const char *b = db_get_str(r, i, 11);
        free(t->prev_batch);
        t->prev_batch = NULL;
        if (b) t->prev_batch = xstrdup(b); /* the oldest event's own token, if any */
    }
    free(stopped);
    /* Reverse to oldest first. */
    struct buf q_room = BUF_INIT, q_nid = BUF_INIT, q_idx = BUF_INIT;
    buf_putc(&q_room, '{');
    buf_putc(&q_nid, '{');
    buf_putc(&q_idx, '{');
    int need = 0;
    for (int i = 0; i < n; i++) {
        struct store_tl *t = &out[i];
        for (int a = 0, b = t->n - 1; a < b; a++, b--) {
            struct event *tmp = t->events[a];
            t->events[a] = t->events[b];
            t->events[b] = tmp;
        }
        if (t->n && !t->prev_batch) {
            const char *sep = need++ ? "," : "";
            buf_puts(&q_room, sep);
            db_array_elem(&q_room, reqs[i].room_id);
            buf_printf(&q_nid, "%s%lld", sep, (long long)t->events[0]->nid);
            buf_printf(&q_idx, "%s%d", sep, i);
        }
    }
    buf_putc(&q_room, '}');
    buf_putc(&q_nid, '}');
    buf_putc(&q_idx, '}');
    if (need) {
        /* The closest token at or after the oldest returned event. */
        const char *q[] = {buf_cstr(&q_idx), buf_cstr(&q_room), buf_cstr(&q_nid)};
        pb = db_exec(c, err,
                     "SELECT u.i, (SELECT e.prev_batch FROM syncv3_events e WHERE e.room_id = u.room_id AND "
                     "e.event_nid >= u.nid AND e.prev_batch IS NOT NULL AND NOT e.is_state "
                     "ORDER BY e.event_nid LIMIT 1) FROM unnest($1::int[], $2::text[], $3::bigint[]) AS u(i, room_id, nid)",
                     3, q);
        if (pb) {
            for (int i = 0; i < PQntuples(pb); i++) {
                int idx = (int)db_get_i64(pb, i, 0);
                const char *b = db_get_str(pb, i, 1);
                if (idx >= 0 && idx < n && b) out[idx].prev_batch = xstrdup(b);
            }
        }
    }
    buf_release(&q_room);
    buf_release(&q_nid);
    buf_release(&q_idx);
    if (need && !pb) goto out;
    rc = 0;
out:
    PQclear(r);
    PQclear(pb);
    for (int k = 0; k < 5; k++) buf_release(all[k]);
    if (rc < 0)
        for (int i = 0; i < n; i++) store_tl_release(&out[i]);
    return rc;
}

int store_state_at(PGconn *c, const char *const *room_ids, int n_rooms, bool large, int64_t pos, const char *const *types,
                   const char *const *keys, int n_patterns, struct store_tl *out, char **err)
{
    for (int i = 0; i < n_rooms; i++) out[i] = (struct store_tl){0};
    if (!n_rooms || !n_patterns) return 0;
    struct db_arr a_idx, a_room, a_wt, a_wk, a_pair, a_mkeys;
    db_arr_init(&a_idx);
    db_arr_init(&a_room);
    db_arr_init(&a_wt);
    db_arr_init(&a_wk);
    db_arr_init(&a_pair);
    db_arr_init(&a_mkeys);
    for (int i = 0; i < n_rooms; i++) {
        db_arr_i64(&a_idx, i);
        db_arr_str(&a_room, room_ids[i]);
    }
    /* The patterns by kind, so that each state row is tested with a few
     * array lookups: a type with any key, a key of any type, "*" for both
     * (everything), and exact pairs. A pair is "<bytes of the type>:" then
     * the type and the key, which no other (type, key) spells. A large
     * room's members are looked up by key ($8: the keys of member pairs and
     * of keys of any type), unless every member is asked for (all, or
     * m.room.member with any key). */
    bool all = false, members_all = false;
    struct buf pair = BUF_INIT;
    for (int i = 0; i < n_patterns; i++) {
        bool wt = strcmp(types[i], "*") == 0, wk = strcmp(keys[i], "*") == 0;
        bool member = strcmp(types[i], "m.room.member") == 0;
        if (wt && wk) {
            all = members_all = true;
        } else if (wk) {
            db_arr_str(&a_wt, types[i]);
            members_all |= member;
        } else if (wt) {
            db_arr_str(&a_wk, keys[i]);
            db_arr_str(&a_mkeys, keys[i]);
        } else {
            buf_reset(&pair);
            buf_printf(&pair, "%zu:%s%s", strlen(types[i]), types[i], keys[i]);
            db_arr_str(&a_pair, buf_cstr(&pair));
            if (member) db_arr_str(&a_mkeys, keys[i]);
        }
    }
    buf_release(&pair);
    char posb[24];
    snprintf(posb, sizeof posb, "%lld", (long long)pos);
    const char *p[] = {db_arr_done(&a_idx), db_arr_done(&a_room), posb,
                       all ? "t" : "f",     db_arr_done(&a_wt),   db_arr_done(&a_wk),
                       db_arr_done(&a_pair), db_arr_done(&a_mkeys)};
    int rc = -1;
    /* LATERAL: the state rows are looked up room by room through the
     * (room_id, event_type, state_key, start_nid) index. As a plain join the
     * planner hashed the rooms and scanned the whole state table whenever
     * the table had no statistics yet (right after a large account's first
     * sync), ~20,000 rows for 21 rooms at 4,000 rooms. OFFSET 0 keeps the
     * planner from flattening a LATERAL into such a join: it did so for
     * custom plans (7 ms instead of 0.3 ms at 4,000 rooms). */
#define STATE_ROOMS "FROM unnest($1::int[], $2::text[]) AS u(i, room_id) "
#define STATE_VISIBLE "AND s.start_nid <= $3::bigint AND (s.end_nid IS NULL OR s.end_nid > $3::bigint) "
#define STATE_MATCH                                                                                                  \
    "AND ($4::bool OR s.event_type = ANY($5::text[]) OR s.state_key = ANY($6::text[]) OR "                          \
    "octet_length(s.event_type) || ':' || s.event_type || s.state_key = ANY($7::text[])) "
#define STATE_SCAN "SELECT s.event_nid, s.start_nid FROM syncv3_room_state s WHERE s.room_id = u.room_id "
#define STATE_EVENTS                                                                                                 \
    "OFFSET 0) s CROSS JOIN LATERAL (SELECT * FROM syncv3_events e WHERE e.event_nid = s.event_nid OFFSET 0) e "     \
    "ORDER BY u.i, s.start_nid"
#define STATE_COLS                                                                                                   \
    "SELECT u.i, e.event_nid, e.event_id, e.room_id, e.event_type, e.state_key, e.sender, e.membership, "          \
    "e.origin_server_ts, e.event "
    PGresult *r;
    if (!large || members_all)
        /* One scan of each room's state: the cheapest for rooms of a few
         * members, and what asking for every member needs anyway. */
        r = db_exec(c, err,
                    STATE_COLS STATE_ROOMS "CROSS JOIN LATERAL (" STATE_SCAN STATE_VISIBLE STATE_MATCH
                    "OFFSET 0) s JOIN syncv3_events e ON e.event_nid = s.event_nid ORDER BY u.i, s.start_nid",
                    7, p);
    else
        /* A room may have many members: each room is read in three disjoint
         * parts, never reading members nobody asked for: the state below and
         * above m.room.member in the index (two range scans, each row tested
         * against the patterns) and one index probe per listed member,
         * fenced with OFFSET 0 (else the planner, which knows only the
         * average room's size, scanned every member and filtered by key).
         * The events are fetched one by one behind a fence too: a large
         * room's estimated rows made generic plans hash the whole events
         * table. Five rooms of 10,000 members in a window of 20
         * (bench/run.sh --members): first request 13-23 ms, now 2.3 ms. */
        r = db_exec(c, err,
                    STATE_COLS STATE_ROOMS "CROSS JOIN LATERAL (" STATE_SCAN "AND s.event_type < 'm.room.member' "
                    STATE_VISIBLE STATE_MATCH "UNION ALL " STATE_SCAN "AND s.event_type > 'm.room.member' "
                    STATE_VISIBLE STATE_MATCH
                    "UNION ALL SELECT m.event_nid, m.start_nid FROM (SELECT DISTINCT unnest($8::text[])) AS k(key) "
                    "CROSS JOIN LATERAL (" STATE_SCAN "AND s.event_type = 'm.room.member' AND s.state_key = k.key "
                    STATE_VISIBLE "OFFSET 0) m " STATE_EVENTS,
                    8, p);
#undef STATE_ROOMS
#undef STATE_VISIBLE
#undef STATE_MATCH
#undef STATE_SCAN
#undef STATE_EVENTS
#undef STATE_COLS
    if (!r) goto out;
    for (int i = 0; i < PQntuples(r); i++) {
        int idx = (int)db_get_i64(r, i, 0);
        if (idx < 0 || idx >= n_rooms) continue;
        struct store_tl *t = &out[idx];
        t->events = xrealloc(t->events, (size_t)(t->n + 1) * sizeof *t->events);
        t->events[t->n++] = row_event(r, i, 1);
    }
    rc = 0;
out:
    PQclear(r);
    db_arr_release(&a_idx);
    db_arr_release(&a_room);
    db_arr_release(&a_wt);
    db_arr_release(&a_wk);
    db_arr_release(&a_pair);
    db_arr_release(&a_mkeys);
    return rc;
}
