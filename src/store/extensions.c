#include "store/extensions.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "store/db.h"

/* ---- to-device ---- */

int store_to_device_take(PGconn *c, const char *user_id, const char *device_id, int64_t since, int64_t limit,
                         struct store_to_device **out, int *n, char **err)
{
    *out = NULL;
    *n = 0;
    char since_s[24], limit_s[24];
    snprintf(since_s, sizeof since_s, "%" PRId64, since > 0 ? since : 0);
    snprintf(limit_s, sizeof limit_s, "%" PRId64, limit);
    const char *p[] = {user_id, device_id, since_s, limit_s};
    /* The deleted rows (<= since) and the selected ones (> since) never
     * overlap, so one statement (one snapshot) can do both. The selected
     * rows are locked against deletion until the statement ends: ingest,
     * withdrawing an undelivered room-key request, then either waits and
     * sees the raised delivered position, or deleted it first and this
     * statement skips it. */
    PGresult *r = db_exec(c, err,
                          "WITH del AS (DELETE FROM syncv3_to_device_messages WHERE user_id = $1 AND device_id = $2 "
                          "AND position <= $3::bigint), "
                          "sel AS (SELECT position, message FROM syncv3_to_device_messages WHERE user_id = $1 "
                          "AND device_id = $2 AND position > $3::bigint ORDER BY position LIMIT $4::bigint "
                          "FOR KEY SHARE), "
                          "ack AS (INSERT INTO syncv3_to_device_ack_pos AS a (user_id, device_id, unack_pos) "
                          "SELECT $1, $2, max(position) FROM sel HAVING count(*) > 0 "
                          "ON CONFLICT (user_id, device_id) DO UPDATE SET "
                          "unack_pos = GREATEST(a.unack_pos, EXCLUDED.unack_pos)) "
                          "SELECT position, message FROM sel ORDER BY position",
                          4, p);
    if (!r) return -1;
    int rows = PQntuples(r);
    if (rows) *out = xcalloc((size_t)rows, sizeof **out);
    for (int i = 0; i < rows; i++)
        (*out)[i] = (struct store_to_device){db_get_i64(r, i, 0), xstrdup(PQgetvalue(r, i, 1))};
    *n = rows;
    PQclear(r);
    return 0;
}

int store_to_device_since_ok(PGconn *c, const char *user_id, const char *device_id, int64_t since, bool *ok,
                             char **err)
{
    *ok = false;
    char since_s[24];
    snprintf(since_s, sizeof since_s, "%" PRId64, since);
    const char *p[] = {user_id, device_id, since_s};
    PGresult *r = db_exec(c, err,
                          "SELECT COALESCE((SELECT unack_pos FROM syncv3_to_device_ack_pos WHERE user_id = $1 AND "
                          "device_id = $2), 0) >= $3::bigint AND (EXISTS (SELECT 1 FROM syncv3_to_device_messages "
                          "WHERE user_id = $1 AND device_id = $2 AND position = $3::bigint) OR NOT EXISTS (SELECT 1 "
                          "FROM syncv3_to_device_messages WHERE user_id = $1 AND device_id = $2 AND position <= "
                          "$3::bigint))",
                          3, p);
    if (!r) return -1;
    *ok = PQntuples(r) == 1 && PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    return 0;
}

void store_to_device_free(struct store_to_device *m, int n)
{
    for (int i = 0; i < n; i++) free(m[i].json);
    free(m);
}

/* ---- E2EE ---- */

static int read_lists(PGresult *r, struct store_e2ee *out)
{
    int rows = PQntuples(r);
    if (rows) out->lists = xcalloc((size_t)rows, sizeof *out->lists);
    for (int i = 0; i < rows; i++)
        out->lists[i] = (struct store_device_list){xstrdup(PQgetvalue(r, i, 0)), (int)db_get_i64(r, i, 1)};
    out->n_lists = rows;
    return 0;
}

static void read_data(PGresult *r, struct store_e2ee *out)
{
    if (PQntuples(r) != 1) return;
    const char *otk = db_get_str(r, 0, 0), *fb = db_get_str(r, 0, 1);
    out->otk_counts = otk ? xstrdup(otk) : NULL;
    out->fallback_types = fb ? xstrdup(fb) : NULL;
    out->changed = (int)db_get_i64(r, 0, 2);
}

int store_e2ee_read(PGconn *c, const char *user_id, const char *device_id, bool swap, struct store_e2ee *out,
                    char **err)
{
    *out = (struct store_e2ee){0};
    const char *p[] = {user_id, device_id};
    PGresult *r;
    if (!swap) {
        r = db_exec(c, err,
                    "SELECT target_user_id, target_state FROM syncv3_device_list_updates "
                    "WHERE user_id = $1 AND device_id = $2 AND bucket = 2 ORDER BY target_user_id",
                    2, p);
        if (!r) return -1;
        read_lists(r, out);
        PQclear(r);
        r = db_exec(c, err,
                    "SELECT otk_counts, fallback_types, changed FROM syncv3_device_data "
                    "WHERE user_id = $1 AND device_id = $2",
                    2, p);
        if (!r) goto fail;
        read_data(r, out);
        PQclear(r);
        return 0;
    }
    if (db_begin(c, err) < 0) return -1;
    /* Two statements, not one with CTEs: a NEW row moving to SENT may
     * collide with the SENT row of the same user being deleted, and the
     * sub-statements of one query run in no defined order. */
    if (db_cmd(c, err,
               "DELETE FROM syncv3_device_list_updates WHERE user_id = $1 AND device_id = $2 AND bucket = 2", 2,
               p) < 0)
        goto rollback;
    r = db_exec(c, err,
                "UPDATE syncv3_device_list_updates SET bucket = 2 WHERE user_id = $1 AND device_id = $2 "
                "AND bucket = 1 RETURNING target_user_id, target_state",
                2, p);
    if (!r) goto rollback;
    read_lists(r, out);
    PQclear(r);
    /* Locked so the poller's upsert (which ORs bits in) waits: a change
     * committed between reading and clearing cannot lose its bit. */
    r = db_exec(c, err,
                "SELECT otk_counts, fallback_types, changed FROM syncv3_device_data "
                "WHERE user_id = $1 AND device_id = $2 FOR UPDATE",
                2, p);
    if (!r) goto rollback;
    read_data(r, out);
    PQclear(r);
    if (out->changed &&
        db_cmd(c, err, "UPDATE syncv3_device_data SET changed = 0 WHERE user_id = $1 AND device_id = $2", 2, p) < 0)
        goto rollback;
    if (db_commit(c, err) < 0) goto fail;
    return 0;
rollback:
    db_rollback(c);
fail:
    store_e2ee_release(out);
    return -1;
}

void store_e2ee_release(struct store_e2ee *e)
{
    free(e->otk_counts);
    free(e->fallback_types);
    for (int i = 0; i < e->n_lists; i++) free(e->lists[i].user_id);
    free(e->lists);
    *e = (struct store_e2ee){0};
}

/* ---- account data ---- */

/* Rows with columns id, room_id, type, data; rows whose id is NULL (the
 * outer join's empty side) are skipped. */
static void read_rows(PGresult *r, struct store_account_data **out, int *n)
{
    int rows = PQntuples(r), k = 0;
    if (rows) *out = xcalloc((size_t)rows, sizeof **out);
    for (int i = 0; i < rows; i++) {
        if (PQgetisnull(r, i, 0)) continue;
        (*out)[k++] = (struct store_account_data){db_get_i64(r, i, 0), xstrdup(PQgetvalue(r, i, 1)),
                                                  xstrdup(PQgetvalue(r, i, 2)), xstrdup(PQgetvalue(r, i, 3))};
    }
    *n = k;
}

int store_account_data_global(PGconn *c, const char *user_id, struct store_account_data **out, int *n,
                              int64_t *max_id, char **err)
{
    *out = NULL;
    *n = 0;
    *max_id = 0;
    const char *p[] = {user_id};
    /* One statement, so the high-water mark and the rows are one snapshot:
     * a change committed in between is either in both or in neither. */
    PGresult *r = db_exec(c, err,
                          "SELECT a.id, a.room_id, a.type, a.data, m.mx FROM "
                          "(SELECT COALESCE(max(id), 0) AS mx FROM syncv3_account_data WHERE user_id = $1) m "
                          "LEFT JOIN syncv3_account_data a ON a.user_id = $1 AND a.room_id = '' "
                          "ORDER BY a.id",
                          1, p);
    if (!r) return -1;
    if (PQntuples(r)) *max_id = db_get_i64(r, 0, 4);
    read_rows(r, out, n);
    PQclear(r);
    return 0;
}

int store_account_data_after(PGconn *c, const char *user_id, int64_t after, struct store_account_data **out,
                             int *n, char **err)
{
    *out = NULL;
    *n = 0;
    char after_s[24];
    snprintf(after_s, sizeof after_s, "%" PRId64, after);
    const char *p[] = {user_id, after_s};
    PGresult *r = db_exec(c, err,
                          "SELECT id, room_id, type, data FROM syncv3_account_data WHERE user_id = $1 "
                          "AND id > $2::bigint ORDER BY id",
                          2, p);
    if (!r) return -1;
    read_rows(r, out, n);
    PQclear(r);
    return 0;
}

int store_account_data_rooms(PGconn *c, const char *user_id, const char *const *room_ids, int n_rooms,
                             struct store_account_data **out, int *n, char **err)
{
    *out = NULL;
    *n = 0;
    if (n_rooms == 0) return 0;
    struct buf b = BUF_INIT;
    buf_putc(&b, '{');
    for (int i = 0; i < n_rooms; i++) {
        if (i) buf_putc(&b, ',');
        db_array_elem(&b, room_ids[i]);
    }
    buf_putc(&b, '}');
    const char *p[] = {user_id, buf_cstr(&b)};
    PGresult *r = db_exec(c, err,
                          "SELECT id, room_id, type, data FROM syncv3_account_data WHERE user_id = $1 "
                          "AND room_id = ANY($2::text[]) ORDER BY room_id, id",
                          2, p);
    buf_release(&b);
    if (!r) return -1;
    read_rows(r, out, n);
    PQclear(r);
    return 0;
}

void store_account_data_free(struct store_account_data *a, int n)
{
    for (int i = 0; i < n; i++) {
        free(a[i].room_id);
        free(a[i].type);
        free(a[i].json);
    }
    free(a);
}

/* Appends the PostgreSQL text[] literal of v to b. */
static void text_array(struct buf *b, const char *const *v, int n)
{
    buf_putc(b, '{');
    for (int i = 0; i < n; i++) {
        if (i) buf_putc(b, ',');
        db_array_elem(b, v[i]);
    }
    buf_putc(b, '}');
}

int store_typing_rooms(PGconn *c, const char *const *room_ids, int n_rooms, struct store_typing **out, int *n,
                       char **err)
{
    *out = NULL;
    *n = 0;
    if (n_rooms == 0) return 0;
    struct buf b = BUF_INIT;
    text_array(&b, room_ids, n_rooms);
    const char *p[] = {buf_cstr(&b)};
    PGresult *r = db_exec(c, err, "SELECT room_id, event FROM syncv3_typing WHERE room_id = ANY($1::text[])", 1, p);
    buf_release(&b);
    if (!r) return -1;
    int k = PQntuples(r);
    *out = xcalloc((size_t)(k ? k : 1), sizeof **out);
    for (int i = 0; i < k; i++)
        (*out)[i] = (struct store_typing){xstrdup(PQgetvalue(r, i, 0)), xstrdup(PQgetvalue(r, i, 1))};
    *n = k;
    PQclear(r);
    return 0;
}

void store_typing_free(struct store_typing *t, int n)
{
    for (int i = 0; i < n; i++) {
        free(t[i].room_id);
        free(t[i].json);
    }
    free(t);
}

int store_receipts_read(PGconn *c, const char *user_id, const char *const *room_ids, int n_rooms,
                        const char *const *event_ids, int n_events, struct store_receipt **out, int *n, char **err)
{
    *out = NULL;
    *n = 0;
    if (n_rooms == 0) return 0;
    struct buf rb = BUF_INIT, eb = BUF_INIT;
    text_array(&rb, room_ids, n_rooms);
    text_array(&eb, event_ids, n_events);
    const char *p[] = {user_id, buf_cstr(&rb), buf_cstr(&eb)};
    PGresult *r = db_exec(c, err,
                          "SELECT room_id, user_id, thread_id, is_private, event_id, ts FROM syncv3_receipts "
                          "WHERE room_id = ANY($2::text[]) AND (user_id = $1 OR "
                          "(NOT is_private AND event_id = ANY($3::text[]))) ORDER BY room_id, ts",
                          3, p);
    buf_release(&rb);
    buf_release(&eb);
    if (!r) return -1;
    int k = PQntuples(r);
    *out = xcalloc((size_t)(k ? k : 1), sizeof **out);
    for (int i = 0; i < k; i++)
        (*out)[i] = (struct store_receipt){
            .room_id = xstrdup(PQgetvalue(r, i, 0)),
            .user_id = xstrdup(PQgetvalue(r, i, 1)),
            .thread_id = xstrdup(PQgetvalue(r, i, 2)),
            .is_private = PQgetvalue(r, i, 3)[0] == 't',
            .event_id = xstrdup(PQgetvalue(r, i, 4)),
            .ts = db_get_i64(r, i, 5),
        };
    *n = k;
    PQclear(r);
    return 0;
}

void store_receipts_free(struct store_receipt *r, int n)
{
    for (int i = 0; i < n; i++) {
        free(r[i].room_id);
        free(r[i].user_id);
        free(r[i].thread_id);
        free(r[i].event_id);
    }
    free(r);
}
