#include "ingest/peruser.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/clock.h"
#include "store/db.h"

static const char *jstr(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

int peruser_account_data(struct peruser *x, const char *room_id, json_t *events)
{
    if (!json_is_array(events) || !json_array_size(events)) return 0;
    struct db_arr types, datas;
    db_arr_init(&types);
    db_arr_init(&datas);
    size_t i;
    json_t *ev;
    json_array_foreach(events, i, ev)
    {
        const char *type = jstr(ev, "type");
        if (!type) continue;
        char *s = json_dumps(ev, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (!s) continue;
        db_arr_str(&types, type);
        db_arr_str(&datas, s);
        free(s);
    }
    int rc = 0;
    if (types.n) {
        const char *p[] = {x->user_id, room_id, db_arr_done(&types), db_arr_done(&datas)};
        /* Later duplicates of a type in one batch win. */
        rc = db_cmd(x->c, x->err,
                    "INSERT INTO syncv3_account_data AS a (user_id, room_id, type, data) "
                    "SELECT DISTINCT ON (t) $1, $2, t, d FROM unnest($3::text[], $4::text[]) WITH ORDINALITY "
                    "AS u(t, d, o) ORDER BY t, o DESC "
                    "ON CONFLICT (user_id, room_id, type) DO UPDATE SET data = EXCLUDED.data, "
                    "id = nextval('syncv3_account_data_id_seq') WHERE a.data IS DISTINCT FROM EXCLUDED.data",
                    4, p);
        x->out->n_account_data += (int)types.n;
    }
    db_arr_release(&types);
    db_arr_release(&datas);
    return rc;
}

/* The room's entry in the result's ephemeral changes (created on first use). */
static struct acc_ephemeral *result_ephemeral(struct peruser *x, const char *room_id)
{
    struct acc_result *o = x->out;
    if (o->n_ephemeral && strcmp(o->ephemeral[o->n_ephemeral - 1].room_id, room_id) == 0)
        return &o->ephemeral[o->n_ephemeral - 1];
    o->ephemeral = xrealloc(o->ephemeral, (o->n_ephemeral + 1) * sizeof *o->ephemeral);
    o->ephemeral[o->n_ephemeral] = (struct acc_ephemeral){.room_id = xstrdup(room_id)};
    return &o->ephemeral[o->n_ephemeral++];
}

/* Appends the rows of r (user, thread, private, event, ts) whose private flag
 * is priv to *acc, a JSON array text (created on first use). */
static void receipt_rows(PGresult *r, bool priv, char **acc)
{
    json_t *arr = *acc ? json_loads(*acc, 0, NULL) : NULL;
    if (!arr) arr = json_array();
    size_t before = json_array_size(arr);
    for (int i = 0; i < PQntuples(r); i++) {
        bool p = PQgetvalue(r, i, 2)[0] == 't';
        if (p != priv) continue;
        json_array_append_new(arr, json_pack("[sssI]", PQgetvalue(r, i, 0), PQgetvalue(r, i, 1),
                                             PQgetvalue(r, i, 3), (json_int_t)db_get_i64(r, i, 4)));
    }
    if (json_array_size(arr) != before) {
        free(*acc);
        *acc = json_dumps(arr, JSON_COMPACT);
    }
    json_decref(arr);
}

int peruser_ephemeral(struct peruser *x, const char *room_id, json_t *events)
{
    size_t i;
    json_t *ev;
    json_array_foreach(events, i, ev)
    {
        const char *type = jstr(ev, "type");
        if (!type) continue;
        if (strcmp(type, "m.typing") == 0) {
            char *s = json_dumps(ev, JSON_COMPACT | JSON_PRESERVE_ORDER);
            const char *p[] = {room_id, s};
            /* Several pollers see the same typing EDU: a byte-identical
             * repeat is no change. */
            PGresult *r = db_exec(x->c, x->err,
                                  "INSERT INTO syncv3_typing AS t (room_id, event) VALUES ($1, $2) "
                                  "ON CONFLICT (room_id) DO UPDATE SET event = EXCLUDED.event "
                                  "WHERE t.event <> EXCLUDED.event RETURNING 1",
                                  2, p);
            if (!r) {
                free(s);
                return -1;
            }
            if (PQntuples(r)) {
                struct acc_ephemeral *e = result_ephemeral(x, room_id);
                free(e->typing);
                e->typing = s;
                s = NULL;
                x->out->n_typing++;
            }
            PQclear(r);
            free(s);
        } else if (strcmp(type, "m.receipt") == 0) {
            json_t *content = json_object_get(ev, "content");
            if (!json_is_object(content)) continue;
            struct db_arr a_user, a_thread, a_priv, a_event, a_ts;
            struct db_arr *all[] = {&a_user, &a_thread, &a_priv, &a_event, &a_ts};
            for (int k = 0; k < 5; k++) db_arr_init(all[k]);
            const char *event_id;
            json_t *by_type;
            json_object_foreach(content, event_id, by_type)
            {
                if (!json_is_object(by_type)) continue;
                for (int priv = 0; priv < 2; priv++) {
                    json_t *users = json_object_get(by_type, priv ? "m.read.private" : "m.read");
                    if (!json_is_object(users)) continue;
                    const char *uid;
                    json_t *info;
                    json_object_foreach(users, uid, info)
                    {
                        /* Private receipts only ever come from their owner's own sync. */
                        if (priv && strcmp(uid, x->user_id) != 0) continue;
                        const char *thread = json_is_object(info) ? jstr(info, "thread_id") : NULL;
                        json_t *ts = json_is_object(info) ? json_object_get(info, "ts") : NULL;
                        db_arr_str(&a_user, uid);
                        db_arr_str(&a_thread, thread ? thread : "");
                        db_arr_bool(&a_priv, priv);
                        db_arr_str(&a_event, event_id);
                        db_arr_i64(&a_ts, json_is_integer(ts) ? json_integer_value(ts) : 0);
                    }
                }
            }
            int rc = 0;
            if (a_user.n) {
                const char *p[] = {room_id,          db_arr_done(&a_user), db_arr_done(&a_thread),
                                   db_arr_done(&a_priv), db_arr_done(&a_event), db_arr_done(&a_ts)};
                PGresult *r = db_exec(
                    x->c, x->err,
                    "INSERT INTO syncv3_receipts AS rc (room_id, user_id, thread_id, is_private, event_id, ts) "
                    "SELECT DISTINCT ON (u, t, p) $1, u, t, p, e, ts FROM unnest($2::text[], $3::text[], "
                    "$4::bool[], $5::text[], $6::bigint[]) WITH ORDINALITY AS x(u, t, p, e, ts, o) "
                    "ORDER BY u, t, p, o DESC "
                    "ON CONFLICT (room_id, user_id, thread_id, is_private) DO UPDATE SET event_id = "
                    "EXCLUDED.event_id, ts = EXCLUDED.ts WHERE rc.event_id <> EXCLUDED.event_id "
                    "RETURNING user_id, thread_id, is_private, event_id, ts",
                    6, p);
                if (!r)
                    rc = -1;
                else if (PQntuples(r)) {
                    x->out->n_receipts += PQntuples(r);
                    struct acc_ephemeral *e = result_ephemeral(x, room_id);
                    receipt_rows(r, false, &e->receipts);
                    receipt_rows(r, true, &e->receipts_private);
                }
                PQclear(r);
            }
            for (int k = 0; k < 5; k++) db_arr_release(all[k]);
            if (rc < 0) return -1;
        }
    }
    return 0;
}

int peruser_unread(struct peruser *x, const char *room_id, json_t *un)
{
    if (!json_is_object(un)) return 0;
    json_t *n = json_object_get(un, "notification_count"), *h = json_object_get(un, "highlight_count");
    if (!json_is_integer(n) && !json_is_integer(h)) return 0;
    char nb[24], hb[24];
    snprintf(nb, sizeof nb, "%lld", (long long)(json_is_integer(n) ? json_integer_value(n) : 0));
    snprintf(hb, sizeof hb, "%lld", (long long)(json_is_integer(h) ? json_integer_value(h) : 0));
    const char *p[] = {x->user_id, room_id, json_is_integer(n) ? nb : NULL, json_is_integer(h) ? hb : NULL};
    PGresult *r = db_exec(x->c, x->err,
                          "INSERT INTO syncv3_unread AS u (user_id, room_id, notification_count, highlight_count) "
                          "VALUES ($1, $2, COALESCE($3::bigint, 0), COALESCE($4::bigint, 0)) "
                          "ON CONFLICT (user_id, room_id) DO UPDATE SET "
                          "notification_count = COALESCE($3::bigint, u.notification_count), "
                          "highlight_count = COALESCE($4::bigint, u.highlight_count) "
                          "WHERE u.notification_count IS DISTINCT FROM COALESCE($3::bigint, u.notification_count) "
                          "OR u.highlight_count IS DISTINCT FROM COALESCE($4::bigint, u.highlight_count) "
                          "RETURNING 1",
                          4, p);
    if (!r) return -1;
    bool changed = PQntuples(r) > 0;
    PQclear(r);
    if (changed) {
        x->out->unread = xrealloc(x->out->unread, (x->out->n_unread + 1) * sizeof *x->out->unread);
        x->out->unread[x->out->n_unread++] = (struct acc_unread){
            .room_id = xstrdup(room_id),
            .has_notif = json_is_integer(n),
            .has_highlight = json_is_integer(h),
            .notif = json_is_integer(n) ? json_integer_value(n) : 0,
            .highlight = json_is_integer(h) ? json_integer_value(h) : 0,
        };
    }
    return 0;
}

int peruser_invites(struct peruser *x, json_t *invites)
{
    const char *room_id;
    json_t *section;
    json_object_foreach(invites, room_id, section)
    {
        json_t *events = json_object_get(json_object_get(section, "invite_state"), "events");
        if (!json_is_array(events)) events = json_array(), json_decref(events), events = NULL;
        char *s = events ? json_dumps(events, JSON_COMPACT | JSON_PRESERVE_ORDER) : xstrdup("[]");
        char ts[24];
        snprintf(ts, sizeof ts, "%lld", (long long)clock_wall_ms());
        const char *p[] = {x->user_id, room_id, s, ts};
        int rc = db_cmd(x->c, x->err,
                        "INSERT INTO syncv3_invites (user_id, room_id, invite_state, ts) VALUES ($1, $2, $3, $4) "
                        "ON CONFLICT (user_id, room_id) DO UPDATE SET invite_state = EXCLUDED.invite_state",
                        4, p);
        free(s);
        if (rc < 0) return -1;
        x->out->invites = xrealloc(x->out->invites, (x->out->n_invites + 1) * sizeof *x->out->invites);
        x->out->invites[x->out->n_invites++] = xstrdup(room_id);
    }
    return 0;
}

int peruser_device_lists(struct peruser *x, json_t *dl)
{
    if (!json_is_object(dl)) return 0;
    struct db_arr users, states;
    db_arr_init(&users);
    db_arr_init(&states);
    /* "left" wins over "changed" for a user in both: write changed first. */
    static const char *const keys[] = {"changed", "left"};
    for (int k = 0; k < 2; k++) {
        json_t *a = json_object_get(dl, keys[k]);
        size_t i;
        json_t *u;
        json_array_foreach(a, i, u)
        {
            if (!json_is_string(u)) continue;
            db_arr_str(&users, json_string_value(u));
            db_arr_i64(&states, k + 1);
        }
    }
    int rc = 0;
    if (users.n) {
        const char *p[] = {x->user_id, x->device_id, db_arr_done(&users), db_arr_done(&states)};
        rc = db_cmd(x->c, x->err,
                    "INSERT INTO syncv3_device_list_updates AS d (user_id, device_id, target_user_id, "
                    "target_state, bucket) SELECT DISTINCT ON (t) $1, $2, t, s, 1 FROM unnest($3::text[], "
                    "$4::smallint[]) WITH ORDINALITY AS u(t, s, o) ORDER BY t, o DESC "
                    "ON CONFLICT (user_id, device_id, target_user_id, bucket) DO UPDATE SET "
                    "target_state = EXCLUDED.target_state",
                    4, p);
        x->out->device_data_changed = true;
    }
    db_arr_release(&users);
    db_arr_release(&states);
    return rc;
}

int peruser_e2ee(struct peruser *x, json_t *body, struct acc_e2ee_memo *memo, char **new_otk, char **new_fb)
{
    json_t *otk = json_object_get(body, "device_one_time_keys_count");
    json_t *fb = json_object_get(body, "device_unused_fallback_key_types");
    char *otk_s = json_is_object(otk) && json_object_size(otk)
                      ? json_dumps(otk, JSON_COMPACT | JSON_SORT_KEYS)
                      : NULL;
    char *fb_s = json_is_array(fb) ? json_dumps(fb, JSON_COMPACT) : NULL;
    bool otk_changed = otk_s && (!memo->otk_json || strcmp(otk_s, memo->otk_json) != 0);
    bool fb_changed = fb_s && (!memo->fallback_json || strcmp(fb_s, memo->fallback_json) != 0);
    int rc = 0;
    if (otk_changed || fb_changed) {
        const char *p[] = {x->user_id, x->device_id, otk_changed ? otk_s : NULL, fb_changed ? fb_s : NULL};
        rc = db_cmd(x->c, x->err,
                    "INSERT INTO syncv3_device_data AS d (user_id, device_id, otk_counts, fallback_types, changed) "
                    "VALUES ($1, $2, $3, $4, (CASE WHEN $3::text IS NULL THEN 0 ELSE 1 END) | "
                    "(CASE WHEN $4::text IS NULL THEN 0 ELSE 2 END)) "
                    "ON CONFLICT (user_id, device_id) DO UPDATE SET "
                    "otk_counts = COALESCE($3, d.otk_counts), fallback_types = COALESCE($4, d.fallback_types), "
                    "changed = d.changed | EXCLUDED.changed",
                    4, p);
        x->out->device_data_changed = true;
    }
    *new_otk = otk_changed ? otk_s : (free(otk_s), NULL);
    *new_fb = fb_changed ? fb_s : (free(fb_s), NULL);
    return rc;
}
