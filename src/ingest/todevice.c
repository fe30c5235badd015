#include "ingest/todevice.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "store/db.h"

/* One to-device message of the batch. */
struct msg {
    json_t *ev;         /* borrowed from the response */
    const char *type;   /* borrowed; "" when absent */
    const char *sender; /* borrowed; "" when absent */
    char *key;          /* [sender, requesting_device_id, request_id] of a room-key request or
                         * cancellation (heap), else NULL */
    bool cancel;        /* a cancellation (key is set) */
    bool matched;       /* cancellation: it removed a request */
    bool delivered;     /* cancellation: a request it removed had been sent to a client */
    bool drop;          /* not stored */
};

static const char *jstr(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* Fills m from ev; returns false for a message that is not an object. */
static bool parse_msg(json_t *ev, struct msg *m)
{
    *m = (struct msg){.ev = ev};
    if (!json_is_object(ev)) return false;
    m->type = jstr(ev, "type");
    m->sender = jstr(ev, "sender");
    if (!m->type) m->type = "";
    if (!m->sender) m->sender = "";
    if (strcmp(m->type, "m.room_key_request") != 0) return true;
    json_t *content = json_object_get(ev, "content");
    const char *action = jstr(content, "action"), *rid = jstr(content, "request_id"),
               *dev = jstr(content, "requesting_device_id");
    if (!action || !rid || !dev) return true;
    bool cancel = strcmp(action, "request_cancellation") == 0;
    if (!cancel && strcmp(action, "request") != 0) return true;
    /* A JSON array is an unambiguous key whatever the strings hold. */
    json_t *k = json_pack("[sss]", m->sender, dev, rid);
    m->key = k ? json_dumps(k, JSON_COMPACT) : NULL;
    json_decref(k);
    m->cancel = m->key && cancel;
    return true;
}

/* The first cancellation in v with this key, or NULL. */
static struct msg *first_cancel(struct msg *v, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (v[i].cancel && strcmp(v[i].key, key) == 0) return &v[i];
    return NULL;
}

/* Removes the stored, undelivered requests the batch's cancellations name and
 * marks those cancellations. The requests are locked in position order
 * (FOR UPDATE), and a client's read locks the rows it returns (FOR KEY
 * SHARE, see store_to_device_take), so a read running at the same time
 * either returned a request before it is deleted here — and the delivered
 * position read afterwards shows it — or never sees it. */
static int drop_stored(struct peruser *x, struct msg *v, size_t n)
{
    struct db_arr keys;
    db_arr_init(&keys);
    for (size_t i = 0; i < n; i++)
        if (v[i].cancel) db_arr_str(&keys, v[i].key);
    int rc = 0;
    if (!keys.n) goto out;
    const char *p[] = {x->user_id, x->device_id, db_arr_done(&keys)};
    PGresult *r = db_exec(x->c, x->err,
                          "DELETE FROM syncv3_to_device_messages m WHERE m.position IN (SELECT position "
                          "FROM syncv3_to_device_messages WHERE user_id = $1 AND device_id = $2 "
                          "AND key_request = ANY($3::text[]) AND position > COALESCE((SELECT unack_pos "
                          "FROM syncv3_to_device_ack_pos WHERE user_id = $1 AND device_id = $2), 0) "
                          "ORDER BY position FOR UPDATE) RETURNING m.position, m.key_request",
                          3, p);
    if (!r) {
        rc = -1;
        goto out;
    }
    if (PQntuples(r)) {
        PGresult *a = db_exec(x->c, x->err,
                              "SELECT COALESCE(max(unack_pos), 0) FROM syncv3_to_device_ack_pos "
                              "WHERE user_id = $1 AND device_id = $2",
                              2, p);
        if (!a) {
            PQclear(r);
            rc = -1;
            goto out;
        }
        int64_t delivered = db_get_i64(a, 0, 0);
        PQclear(a);
        for (int i = 0; i < PQntuples(r); i++) {
            struct msg *c = first_cancel(v, n, PQgetvalue(r, i, 1));
            if (!c) continue;
            c->matched = true;
            if (db_get_i64(r, i, 0) <= delivered) c->delivered = true;
        }
    }
    PQclear(r);
out:
    db_arr_release(&keys);
    return rc;
}

int todevice_store(struct peruser *x, json_t *events)
{
    if (!json_is_array(events) || !json_array_size(events)) return 0;
    size_t n = 0, total = json_array_size(events);
    struct msg *v = xcalloc(total, sizeof *v);
    for (size_t i = 0; i < total; i++)
        if (parse_msg(json_array_get(events, i), &v[n])) n++;
    /* Requests earlier in this batch that a cancellation withdraws. */
    for (size_t i = 0; i < n; i++) {
        if (!v[i].cancel) continue;
        for (size_t j = 0; j < i; j++) {
            if (v[j].drop || !v[j].key || v[j].cancel || strcmp(v[j].key, v[i].key) != 0) continue;
            v[j].drop = true;
            v[i].matched = true;
        }
    }
    int rc = drop_stored(x, v, n);
    struct db_arr types, senders, msgs, keys;
    struct db_arr *all[] = {&types, &senders, &msgs, &keys};
    for (int k = 0; k < 4; k++) db_arr_init(all[k]);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        struct msg *m = &v[i];
        if (m->cancel && m->matched && !m->delivered) m->drop = true;
        if (m->drop) continue;
        char *s = json_dumps(m->ev, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (!s) continue;
        db_arr_str(&types, m->type);
        db_arr_str(&senders, m->sender);
        db_arr_str(&msgs, s);
        db_arr_str(&keys, m->cancel ? NULL : m->key);
        free(s);
    }
    if (rc == 0 && types.n) {
        const char *p[] = {x->user_id,          x->device_id,       db_arr_done(&types),
                           db_arr_done(&senders), db_arr_done(&msgs), db_arr_done(&keys)};
        rc = db_cmd(x->c, x->err,
                    "INSERT INTO syncv3_to_device_messages (user_id, device_id, event_type, sender, message, "
                    "key_request) SELECT $1, $2, t, s, m, k FROM unnest($3::text[], $4::text[], $5::text[], "
                    "$6::text[]) WITH ORDINALITY AS u(t, s, m, k, o) ORDER BY o",
                    6, p);
    }
    if (rc == 0) x->out->n_to_device = (int)types.n;
    for (int k = 0; k < 4; k++) db_arr_release(all[k]);
    for (size_t i = 0; i < n; i++) free(v[i].key);
    free(v);
    return rc;
}
