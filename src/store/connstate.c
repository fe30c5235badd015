#include "store/connstate.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "store/db.h"

void store_conn_release(struct store_conn *s)
{
    free(s->ext);
    for (int i = 0; i < s->n_rooms; i++) {
        free(s->rooms[i].room_id);
        free(s->rooms[i].sent);
    }
    free(s->rooms);
    *s = (struct store_conn){0};
}

int store_conn_load(PGconn *c, const struct store_conn_key *k, struct store_conn *out, char **err)
{
    *out = (struct store_conn){0};
    const char *p[] = {k->user_id, k->device_id, k->conn_id};
    PGresult *r = db_exec(c, err,
                          "SELECT c.base, c.pos, c.view_pos, c.bytes, c.updated_ms, c.format, c.ext, r.room_id, r.sent "
                          "FROM syncv3_conns c LEFT JOIN syncv3_conn_rooms r ON r.conn_nid = c.conn_nid "
                          "WHERE c.user_id = $1 AND c.device_id = $2 AND c.conn_id = $3",
                          3, p);
    if (!r) return -1;
    int n = PQntuples(r);
    if (n == 0) {
        PQclear(r);
        return 0;
    }
    out->base = db_get_i64(r, 0, 0);
    out->pos = db_get_i64(r, 0, 1);
    out->view_pos = db_get_i64(r, 0, 2);
    out->bytes = db_get_i64(r, 0, 3);
    out->updated_ms = db_get_i64(r, 0, 4);
    out->format = (int)db_get_i64(r, 0, 5);
    out->ext = xstrdup(PQgetvalue(r, 0, 6));
    out->rooms = xcalloc((size_t)n, sizeof *out->rooms);
    for (int i = 0; i < n; i++) {
        if (PQgetisnull(r, i, 7)) continue; /* a connection without rooms */
        out->rooms[out->n_rooms++] = (struct store_conn_room){xstrdup(PQgetvalue(r, i, 7)),
                                                              xstrdup(PQgetvalue(r, i, 8))};
    }
    PQclear(r);
    return 1;
}

/* The numbers and text of a write as statement parameters. */
struct wparams {
    char base[24];       /* instance */
    char pos[24];        /* pos */
    char view_pos[24];   /* view position */
    char bytes[24];      /* size */
    char now[24];        /* wall clock */
    char format[16];     /* serialisation version */
    struct db_arr ids;   /* rooms to put */
    struct db_arr sents; /* their values */
    struct db_arr gone;  /* rooms to delete */
    const char *p[13];   /* the statement parameters $1..$13 (the replacement uses the first 12) */
};

static void wparams_init(struct wparams *p, const struct store_conn_write *w)
{
    snprintf(p->base, sizeof p->base, "%lld", (long long)w->base);
    snprintf(p->pos, sizeof p->pos, "%lld", (long long)w->pos);
    snprintf(p->view_pos, sizeof p->view_pos, "%lld", (long long)w->view_pos);
    snprintf(p->bytes, sizeof p->bytes, "%lld", (long long)w->bytes);
    snprintf(p->now, sizeof p->now, "%lld", (long long)w->now_ms);
    snprintf(p->format, sizeof p->format, "%d", w->format);
    db_arr_init(&p->ids);
    db_arr_init(&p->sents);
    db_arr_init(&p->gone);
    for (int i = 0; i < w->n_put; i++) {
        db_arr_str(&p->ids, w->room_ids[i]);
        db_arr_str(&p->sents, w->sents[i]);
    }
    for (int i = 0; i < w->n_gone; i++) db_arr_str(&p->gone, w->gone[i]);
    const char *v[] = {w->key.user_id,
                       w->key.device_id,
                       w->key.conn_id,
                       p->base,
                       p->pos,
                       p->view_pos,
                       p->bytes,
                       p->now,
                       p->format,
                       w->ext,
                       db_arr_done(&p->ids),
                       db_arr_done(&p->sents),
                       db_arr_done(&p->gone)};
    memcpy(p->p, v, sizeof v);
}

static void wparams_release(struct wparams *p)
{
    db_arr_release(&p->ids);
    db_arr_release(&p->sents);
    db_arr_release(&p->gone);
}

int store_conn_update(PGconn *c, const struct store_conn_write *w, char **err)
{
    struct wparams wp;
    wparams_init(&wp, w);
    /* The rooms put and the rooms deleted are disjoint, so the two
     * data-modifying parts never touch one row twice. */
    PGresult *r = db_exec(
        c, err,
        "WITH c AS (UPDATE syncv3_conns SET pos = $5::bigint, view_pos = $6::bigint, "
        "bytes = $7::bigint, updated_ms = $8::bigint, format = $9::int, ext = $10 "
        "WHERE user_id = $1 AND device_id = $2 AND conn_id = $3 AND base = $4::bigint "
        "RETURNING conn_nid), "
        "d AS (DELETE FROM syncv3_conn_rooms r USING c WHERE r.conn_nid = c.conn_nid "
        "AND r.room_id = ANY($13::text[])), "
        "i AS (INSERT INTO syncv3_conn_rooms (conn_nid, room_id, sent) "
        "SELECT c.conn_nid, u.room_id, u.sent FROM c, unnest($11::text[], $12::text[]) AS u(room_id, sent) "
        "ON CONFLICT (conn_nid, room_id) DO UPDATE SET sent = EXCLUDED.sent) "
        "SELECT count(*) FROM c",
        13, wp.p);
    wparams_release(&wp);
    if (!r) return -1;
    int found = db_get_i64(r, 0, 0) > 0;
    PQclear(r);
    return found;
}

int store_conn_replace(PGconn *c, const struct store_conn_write *w, int max_per_device, int max_per_user, char **err)
{
    struct wparams wp;
    wparams_init(&wp, w);
    char dev_cap[16], user_cap[16];
    snprintf(dev_cap, sizeof dev_cap, "%d", max_per_device);
    snprintf(user_cap, sizeof user_cap, "%d", max_per_user);
    const char *p[14];
    memcpy(p, wp.p, 12 * sizeof *p);
    p[12] = dev_cap;
    p[13] = user_cap;
    /* One statement, so one round trip and its own transaction: the row is
     * upserted (keeping its conn_nid), the rooms of an earlier connection
     * under the same key that are not in the new set go, the new set is
     * upserted (the two room parts are disjoint), and the same bounds as for
     * connections in memory drop the least recently written other rows
     * (their rooms by cascade). The bounds' subqueries see the table as it
     * was before the statement, which never holds this key's new row. */
    int rc = db_cmd(c, err,
                    "WITH c AS (INSERT INTO syncv3_conns (user_id, device_id, conn_id, base, pos, view_pos, bytes, "
                    "updated_ms, format, ext) VALUES ($1, $2, $3, $4::bigint, $5::bigint, $6::bigint, $7::bigint, "
                    "$8::bigint, $9::int, $10) ON CONFLICT (user_id, device_id, conn_id) DO UPDATE SET "
                    "base = EXCLUDED.base, pos = EXCLUDED.pos, view_pos = EXCLUDED.view_pos, bytes = EXCLUDED.bytes, "
                    "updated_ms = EXCLUDED.updated_ms, format = EXCLUDED.format, ext = EXCLUDED.ext "
                    "RETURNING conn_nid), "
                    "d AS (DELETE FROM syncv3_conn_rooms r USING c WHERE r.conn_nid = c.conn_nid "
                    "AND NOT (r.room_id = ANY($11::text[]))), "
                    "i AS (INSERT INTO syncv3_conn_rooms (conn_nid, room_id, sent) "
                    "SELECT c.conn_nid, u.room_id, u.sent FROM c, unnest($11::text[], $12::text[]) AS u(room_id, sent) "
                    "ON CONFLICT (conn_nid, room_id) DO UPDATE SET sent = EXCLUDED.sent) "
                    "DELETE FROM syncv3_conns WHERE conn_nid IN ("
                    "SELECT conn_nid FROM syncv3_conns WHERE user_id = $1 AND device_id = $2 AND conn_id <> $3 "
                    "ORDER BY updated_ms DESC, conn_nid DESC OFFSET GREATEST($13::int - 1, 0)) "
                    "OR conn_nid IN (SELECT conn_nid FROM syncv3_conns WHERE user_id = $1 "
                    "AND NOT (device_id = $2 AND conn_id = $3) "
                    "ORDER BY updated_ms DESC, conn_nid DESC OFFSET GREATEST($14::int - 1, 0))",
                    14, p);
    wparams_release(&wp);
    return rc;
}

int store_conn_touch(PGconn *c, const struct store_conn_key *k, int64_t base, int64_t now_ms, char **err)
{
    char b[24], now[24];
    snprintf(b, sizeof b, "%lld", (long long)base);
    snprintf(now, sizeof now, "%lld", (long long)now_ms);
    const char *p[] = {k->user_id, k->device_id, k->conn_id, b, now};
    return db_cmd(c, err,
                  "UPDATE syncv3_conns SET updated_ms = $5::bigint WHERE user_id = $1 AND device_id = $2 "
                  "AND conn_id = $3 AND base = $4::bigint",
                  5, p);
}

int store_conn_delete(PGconn *c, const struct store_conn_key *k, char **err)
{
    const char *p[] = {k->user_id, k->device_id, k->conn_id};
    return db_cmd(c, err, "DELETE FROM syncv3_conns WHERE user_id = $1 AND device_id = $2 AND conn_id = $3", 3, p);
}

int store_conn_delete_device(PGconn *c, const char *user_id, const char *device_id, char **err)
{
    const char *p[] = {user_id, device_id};
    return db_cmd(c, err, "DELETE FROM syncv3_conns WHERE user_id = $1 AND device_id = $2", 2, p);
}

int64_t store_conn_purge(PGconn *c, int64_t cutoff_ms, char **err)
{
    return db_cmd_rows_i64(c, err, "DELETE FROM syncv3_conns WHERE updated_ms < $1::bigint", cutoff_ms);
}

int store_conn_recent_users(PGconn *c, int64_t since_ms, int limit, char ***out, int *n, char **err)
{
    *out = NULL;
    *n = 0;
    char since[24], lim[24];
    snprintf(since, sizeof since, "%lld", (long long)since_ms);
    snprintf(lim, sizeof lim, "%d", limit);
    const char *p[] = {since, lim};
    PGresult *r = db_exec(c, err,
                          "SELECT user_id FROM syncv3_conns WHERE updated_ms >= $1::bigint "
                          "GROUP BY user_id ORDER BY max(updated_ms) DESC LIMIT $2::int",
                          2, p);
    if (!r) return -1;
    int rows = PQntuples(r);
    *out = xcalloc((size_t)(rows ? rows : 1), sizeof **out);
    for (int i = 0; i < rows; i++) (*out)[i] = xstrdup(PQgetvalue(r, i, 0));
    *n = rows;
    PQclear(r);
    return 0;
}
