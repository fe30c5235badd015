/* MSC4186 connections across restarts; see conn_persist.h. */
#include "sync/conn_persist.h"

#include <pthread.h>

#include "store/connstate.h"
#include "sync/conn_priv.h"
#include "sync/m4186_sent.h"

/* Serialises store_conn_replace (see write_change). */
static pthread_mutex_t replace_lock = PTHREAD_MUTEX_INITIALIZER;

/* What a connection remembers of its stored row. */
struct conn_persist {
    int64_t base;          /* position base of this instance (0 until its first response) */
    bool stored;           /* a row of this instance exists */
    bool off;              /* past CONN_PERSIST_MAX_BYTES: not stored */
    bool resuming;         /* restored: the next response is the catch-up */
    bool owed;             /* the instance's first response went out before its state was stored:
                            * written whole once it is sent (conn_persist_flush) */
    int64_t owed_pos;      /* that response's pos */
    int64_t last_write_ms; /* wall clock of the last write or touch */
    char *ext;             /* extension positions last written (owned) */
    char **gone;           /* rooms forgotten since the last save, whose rows go (owned) */
    size_t n_gone;         /* entries */
};

struct conn_saved {
    struct store_conn row;   /* the row as read */
    struct m4186_sent *sent; /* its rooms, decoded (hash by room ID) */
    struct ext_state ext;    /* its extension positions (ad_hwm, ad_started, e2ee_started) */
};

/* ---- the serialisation (one pair per value) ---- */

/* The integer fields of an entry and their keys (hashes are stored as
 * their two's-complement int64). */
#define SENT_INTS(s)                                                                             \
    {"n", &(s)->latest_nid}, {"c", &(s)->notif}, {"h", &(s)->highlight}, {"t", &(s)->invite_ts}, \
        {"j", &(s)->join_nid}, {"s", &(s)->pos},                                                 \
    {                                                                                            \
        "l", &(s)->tl_limit                                                                      \
    }

/* One integer field: its key and where it lives. */
struct sent_int {
    const char *key; /* JSON key */
    int64_t *v;      /* the field */
};

/* The hashes, kept apart: unsigned. */
struct sent_hash {
    const char *key; /* JSON key */
    uint64_t *v;     /* the field */
};

/* Appends ,"key":v (no comma before the first). */
static void put_int(struct buf *b, const char *key, int64_t v)
{
    char num[24], *e = num + sizeof num, *d = e;
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    do {
        *--d = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0) *--d = '-';
    buf_puts(b, ",\"");
    buf_puts(b, key);
    buf_puts(b, "\":");
    buf_append(b, d, (size_t)(e - d));
}

/* Written by hand rather than through a JSON tree: every room of every
 * response that changes a connection is encoded, 20 per first room-list
 * request. The decoder below reads it as any JSON object. */
char *conn_persist_sent_encode(const struct m4186_sent *s)
{
    struct m4186_sent *m = (struct m4186_sent *)s; /* only read */
    struct sent_int ints[] = {SENT_INTS(m)};
    struct sent_hash hashes[] = {{"nh", &m->name_hash}, {"ah", &m->avatar_hash}, {"mh", &m->members_hash}};
    struct buf b = BUF_INIT;
    const char *p = s->params ? s->params : "";
    buf_puts(&b, "{\"p\":");
    buf_json_str(&b, p, strlen(p));
    buf_puts(&b, s->invite ? ",\"i\":true" : ",\"i\":false");
    buf_puts(&b, s->is_dm ? ",\"d\":true" : ",\"d\":false");
    for (size_t i = 0; i < sizeof ints / sizeof *ints; i++) put_int(&b, ints[i].key, *ints[i].v);
    for (size_t i = 0; i < sizeof hashes / sizeof *hashes; i++) put_int(&b, hashes[i].key, (int64_t)*hashes[i].v);
    buf_putc(&b, '}');
    return buf_detach(&b, NULL);
}

int conn_persist_sent_decode(const char *text, struct m4186_sent *s)
{
    json_t *o = json_loads(text ? text : "", 0, NULL);
    json_t *p = json_object_get(o, "p");
    int rc = -1;
    if (!json_is_object(o) || !json_is_string(p)) goto out;
    struct sent_int ints[] = {SENT_INTS(s)};
    struct sent_hash hashes[] = {{"nh", &s->name_hash}, {"ah", &s->avatar_hash}, {"mh", &s->members_hash}};
    for (size_t i = 0; i < sizeof ints / sizeof *ints; i++) {
        json_t *v = json_object_get(o, ints[i].key);
        if (v && !json_is_integer(v)) goto out;
        *ints[i].v = v ? (int64_t)json_integer_value(v) : 0;
    }
    for (size_t i = 0; i < sizeof hashes / sizeof *hashes; i++) {
        json_t *v = json_object_get(o, hashes[i].key);
        if (v && !json_is_integer(v)) goto out;
        *hashes[i].v = v ? (uint64_t)(int64_t)json_integer_value(v) : 0;
    }
    json_t *inv = json_object_get(o, "i"), *dm = json_object_get(o, "d");
    if ((inv && !json_is_boolean(inv)) || (dm && !json_is_boolean(dm))) goto out;
    s->invite = json_is_true(inv);
    s->is_dm = json_is_true(dm);
    s->params = xstrdup(json_string_value(p));
    rc = 0;
out:
    json_decref(o);
    return rc;
}

char *conn_persist_ext_encode(const struct ext_state *e)
{
    json_t *o = json_pack("{s:I,s:b,s:b}", "ad", (json_int_t)e->ad_hwm, "ads", e->ad_started, "e2ee", e->e2ee_started);
    char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return text;
}

int conn_persist_ext_decode(const char *text, struct ext_state *e)
{
    json_t *o = json_loads(text ? text : "", 0, NULL);
    json_t *ad = json_object_get(o, "ad"), *ads = json_object_get(o, "ads"), *e2 = json_object_get(o, "e2ee");
    int rc = -1;
    if (json_is_object(o) && (!ad || json_is_integer(ad)) && (!ads || json_is_boolean(ads)) &&
        (!e2 || json_is_boolean(e2))) {
        e->ad_hwm = ad ? (int64_t)json_integer_value(ad) : 0;
        e->ad_started = json_is_true(ads);
        e->e2ee_started = json_is_true(e2);
        rc = 0;
    }
    json_decref(o);
    return rc;
}

/* ---- reading back ---- */

static void sent_free_all(struct m4186_sent **h)
{
    struct m4186_sent *s, *t;
    HASH_ITER(hh, *h, s, t)
    {
        HASH_DEL(*h, s);
        free(s->room_id);
        free(s->params);
        free(s);
    }
}

void conn_saved_free(struct conn_saved *sv)
{
    if (!sv) return;
    store_conn_release(&sv->row);
    sent_free_all(&sv->sent);
    free(sv);
}

/* Decodes the row's values into sv; returns why it is unusable, or NULL. */
static const char *saved_decode(struct conn_saved *sv, int64_t pos)
{
    const struct store_conn *r = &sv->row;
    if (r->format != CONN_PERSIST_FORMAT) return "stored by another version";
    if (r->updated_ms < clock_wall_ms() - CONN_PERSIST_IDLE_MS) return "expired";
    if (pos <= r->base || pos >= r->base + M4186_POS_SPACING) return "another connection's pos";
    if (pos < r->pos) return "older than the stored state";
    if (conn_persist_ext_decode(r->ext, &sv->ext) < 0) return "malformed";
    for (int i = 0; i < r->n_rooms; i++) {
        struct m4186_sent *s = xcalloc(1, sizeof *s);
        s->room_id = xstrdup(r->rooms[i].room_id);
        struct m4186_sent *dup;
        HASH_FIND_STR(sv->sent, s->room_id, dup);
        if (dup || conn_persist_sent_decode(r->rooms[i].sent, s) < 0) {
            free(s->room_id);
            free(s->params);
            free(s);
            return "malformed";
        }
        HASH_ADD_KEYPTR(hh, sv->sent, s->room_id, strlen(s->room_id), s);
    }
    return NULL;
}

int conn_persist_lookup(struct sync_ctx *ctx, const char *user_id, const char *device_id, const char *conn_id,
                        int64_t pos, struct conn_saved **out, const char **why, char **err)
{
    *out = NULL;
    *why = "none stored";
    PGconn *pg = db_acquire(ctx->db, DB_WAIT_HTTP_MS, err);
    if (!pg) return -1;
    struct conn_saved *sv = xcalloc(1, sizeof *sv);
    struct store_conn_key k = {user_id, device_id, conn_id};
    int rc = store_conn_load(pg, &k, &sv->row, err);
    db_release(ctx->db, pg);
    if (rc == 1) {
        *why = saved_decode(sv, pos);
        rc = *why ? 0 : 1;
    }
    if (rc == 1)
        *out = sv;
    else
        conn_saved_free(sv);
    return rc;
}

/* The connection's persistence state, made on first use. */
static struct conn_persist *persist_of(struct conn *c)
{
    if (!c->persist) c->persist = xcalloc(1, sizeof *c->persist);
    return c->persist;
}

static void free_gone(struct conn_persist *p)
{
    for (size_t i = 0; i < p->n_gone; i++) free(p->gone[i]);
    free(p->gone);
    p->gone = NULL;
    p->n_gone = 0;
}

void conn_persist_release(struct conn *c)
{
    if (!c->persist) return;
    free(c->persist->ext);
    free_gone(c->persist);
    free(c->persist);
    c->persist = NULL;
}

void conn_persist_restore(struct conn *c, struct conn_saved *sv)
{
    struct conn_persist *p = persist_of(c);
    c->msc4186 = true;
    conn_msc4186_release(c);
    c->m4186_sent = sv->sent;
    sv->sent = NULL;
    c->ext.ad_hwm = sv->ext.ad_hwm;
    c->ext.ad_started = sv->ext.ad_started;
    c->ext.e2ee_started = sv->ext.e2ee_started;
    /* The row is in this database, so the device's to-device positions are
     * this database's: the client's since holds (no re-send from 0). */
    if (c->ctx->ext) ext_registry_add(c->ctx->ext, c->user_id, c->device_id);
    p->base = sv->row.base;
    p->stored = true;
    p->resuming = true;
    p->last_write_ms = sv->row.updated_ms;
    p->ext = xstrdup(sv->row.ext);
    conn_saved_free(sv);
}

/* How many stored rooms differ from the connection's view now (gone,
 * newer events, other counts or membership). */
static int count_changed(struct conn *c)
{
    int n = 0;
    for (struct m4186_sent *s = c->m4186_sent; s; s = s->hh.next) {
        struct croom *cr;
        HASH_FIND_STR(c->rooms, s->room_id, cr);
        if (!cr) {
            n++;
            continue;
        }
        const struct user_room *ur = cr->ur;
        int64_t latest = ur->meta ? ur->meta->r.latest_nid : 0;
        if (latest != s->latest_nid || ur->notif != s->notif || ur->highlight != s->highlight ||
            ur->invite != s->invite || ur->is_dm != s->is_dm)
            n++;
    }
    return n;
}

int conn_persist_resume(struct conn *c, struct conn_resp *resp, int64_t pos)
{
    int changed = count_changed(c);
    if (changed > CONN_PERSIST_MAX_CHANGED) {
        LOG_INFO("sync", "%s: %d rooms changed since the stored connection (at most %d); starting over", c->user_id,
                 changed, CONN_PERSIST_MAX_CHANGED);
        char *err = NULL;
        PGconn *pg = db_acquire(c->ctx->db, DB_WAIT_HTTP_MS, &err);
        struct store_conn_key k = {c->user_id, c->device_id, c->conn_id};
        if (!pg || store_conn_delete(pg, &k, &err) < 0) LOG_WARN("sync", "deleting a stored connection: %s", err);
        if (pg) db_release(c->ctx->db, pg);
        free(err);
        c->persist->stored = false;
        return -1;
    }
    c->next_pos = pos;
    /* Account data is read above the stored mark only when told it changed. */
    ext_note(&c->ext, resp->ext, CU_ACCOUNT_DATA);
    LOG_DEBUG("sync", "%s: connection restored at pos %lld (%d rooms changed)", c->user_id, (long long)pos, changed);
    return 0;
}

/* ---- the catch-up response ---- */

/* Rooms the user left while no connection was there to tell the client: it
 * gets their membership event, as a live connection would have sent it. */
static int add_left_rooms(struct conn *c, struct conn_resp *resp, char **err)
{
    size_t n = 0;
    const char **ids = NULL;
    for (struct m4186_sent *s = c->m4186_sent; s; s = s->hh.next) {
        struct croom *cr;
        struct resp_room *rr;
        HASH_FIND_STR(c->rooms, s->room_id, cr);
        HASH_FIND_STR(resp->rooms, s->room_id, rr);
        if (cr || rr) continue;
        ids = xrealloc(ids, (n + 1) * sizeof *ids);
        ids[n++] = s->room_id;
    }
    if (!n) return 0;
    struct store_tl *out = xcalloc(n, sizeof *out);
    const char *types[] = {"m.room.member"}, *keys[] = {c->user_id};
    PGconn *pg = db_acquire(c->ctx->db, DB_WAIT_HTTP_MS, err);
    int rc = pg ? store_state_at(pg, ids, (int)n, true, c->pos, types, keys, 1, out, err) : -1;
    if (pg) db_release(c->ctx->db, pg);
    for (size_t i = 0; i < n; i++) {
        struct m4186_sent *s;
        HASH_FIND_STR(c->m4186_sent, ids[i], s);
        struct event *ev = rc == 0 && out[i].n ? out[i].events[out[i].n - 1] : NULL;
        if (ev && ev->nid > s->latest_nid) {
            struct resp_room *rr = conn_resp_room_get(c, resp, ids[i]);
            rr->live = xmalloc(sizeof *rr->live);
            rr->live[0] = event_ref(ev);
            rr->n_live = 1;
            rr->num_live = 1;
        }
        store_tl_release(&out[i]);
        if (rc < 0) continue;
        /* Forgotten: the next save deletes its row. */
        struct conn_persist *p = c->persist;
        p->gone = xrealloc(p->gone, (p->n_gone + 1) * sizeof *p->gone);
        p->gone[p->n_gone++] = s->room_id;
        HASH_DEL(c->m4186_sent, s);
        free(s->params);
        free(s);
    }
    free(out);
    free(ids);
    return rc;
}

int conn_persist_catch_up(struct conn *c, struct conn_resp *resp, char **err)
{
    if (!c->persist || !c->persist->resuming) return 0;
    c->persist->resuming = false;
    return add_left_rooms(c, resp, err);
}

/* ---- writing ---- */

/* What the connection's rooms take in the store (room IDs and values,
 * estimated without serialising them). */
static int64_t stored_bytes(const struct conn *c)
{
    int64_t n = 0;
    for (const struct m4186_sent *s = c->m4186_sent; s; s = s->hh.next)
        n += (int64_t)(strlen(s->room_id) + (s->params ? strlen(s->params) : 0)) + 200; /* + the numbers, as JSON */
    return n;
}

/* The rooms a write puts: all of them, or those of the response the
 * connection remembers; the others of the response (and the forgotten
 * ones) are deleted. The strings in *ids and *gone are borrowed. */
static void collect(struct conn *c, struct conn_resp *resp, bool all, struct store_conn_write *w, char ***sents)
{
    size_t cap = all ? HASH_COUNT(c->m4186_sent) : HASH_COUNT(resp->rooms);
    const char **ids = xcalloc(cap + 1, sizeof *ids), **gone = xcalloc(cap + c->persist->n_gone + 1, sizeof *gone);
    char **vals = xcalloc(cap + 1, sizeof *vals);
    int n = 0, n_gone = 0;
    if (all) {
        for (struct m4186_sent *s = c->m4186_sent; s; s = s->hh.next) {
            ids[n] = s->room_id;
            vals[n++] = conn_persist_sent_encode(s);
        }
    } else {
        for (struct resp_room *rr = resp->rooms; rr; rr = rr->hh.next) {
            struct m4186_sent *s;
            HASH_FIND_STR(c->m4186_sent, rr->room_id, s);
            if (!s) {
                gone[n_gone++] = rr->room_id;
                continue;
            }
            ids[n] = s->room_id;
            vals[n++] = conn_persist_sent_encode(s);
        }
        for (size_t i = 0; i < c->persist->n_gone; i++) gone[n_gone++] = c->persist->gone[i];
    }
    w->room_ids = ids;
    w->sents = (const char *const *)vals;
    w->n_put = n;
    w->gone = gone;
    w->n_gone = n_gone;
    *sents = vals;
}

static void collect_free(struct store_conn_write *w, char **sents)
{
    for (int i = 0; i < w->n_put; i++) free(sents[i]);
    free(sents);
    free((void *)w->room_ids);
    free((void *)w->gone);
}

/* Writes the change; returns 0 or -1. */
static int write_change(struct conn *c, struct conn_resp *resp, int64_t pos, char *ext, int64_t now, char **err)
{
    struct conn_persist *p = c->persist;
    struct store_conn_write w = {.key = {c->user_id, c->device_id, c->conn_id},
                                 .base = p->base,
                                 .pos = pos,
                                 .view_pos = c->pos,
                                 .bytes = stored_bytes(c),
                                 .now_ms = now,
                                 .format = CONN_PERSIST_FORMAT,
                                 .ext = ext};
    PGconn *pg = db_acquire(c->ctx->db, DB_WAIT_HTTP_MS, err);
    if (!pg) return -1;
    int rc;
    if (w.bytes > CONN_PERSIST_MAX_BYTES) {
        /* Too big to keep: the row goes, so no stale state outlives this. */
        LOG_INFO("sync", "%s: connection state of %lld bytes is not kept across restarts (at most %d)", c->user_id,
                 (long long)w.bytes, CONN_PERSIST_MAX_BYTES);
        rc = store_conn_delete(pg, &w.key, err);
        if (rc == 0) p->off = true;
        db_release(c->ctx->db, pg);
        return rc;
    }
    char **sents = NULL;
    rc = 0;
    if (p->stored) {
        collect(c, resp, false, &w, &sents);
        rc = store_conn_update(pg, &w, err);
        collect_free(&w, sents);
    }
    if (rc == 0) {
        /* No row of this instance yet (or it was replaced): write it whole. */
        collect(c, resp, true, &w, &sents);
        /* One replace at a time: two running at once (a new connection's
         * first write comes after its response, so the client's next new
         * connection may overlap it) would each keep the bounds as of its
         * own snapshot and together leave one row too many. */
        pthread_mutex_lock(&replace_lock);
        rc = store_conn_replace(pg, &w, CONN_MAX_PER_DEVICE, CONN_MAX_PER_USER, err);
        pthread_mutex_unlock(&replace_lock);
        collect_free(&w, sents);
    } else if (rc == 1) {
        rc = 0;
    }
    db_release(c->ctx->db, pg);
    return rc;
}

/* After a successful write of the state as of pos. */
static void written(struct conn_persist *p, char *ext, int64_t now)
{
    p->stored = !p->off;
    p->last_write_ms = now;
    free(p->ext);
    p->ext = ext;
    free_gone(p);
}

int conn_persist_save(struct conn *c, struct conn_resp *resp, int64_t pos, char **err)
{
    if (!c->msc4186) return 0;
    struct conn_persist *p = persist_of(c);
    bool first = !p->base;
    if (first) p->base = pos - 1; /* the first response of a new connection */
    if (p->off) return 0;
    /* A new instance's first response: its row is written once the
     * response is sent. Until then no row of this base exists, so after a
     * crash in between its pos is another connection's to the store
     * (M_UNKNOWN_POS), never a wrong incremental answer. */
    if (first && !p->stored) {
        p->owed = true;
        p->owed_pos = pos;
        return 0;
    }
    p->owed = false; /* a whole write follows (not stored yet) */
    char *ext = conn_persist_ext_encode(&c->ext);
    int64_t now = clock_wall_ms();
    bool changed = !p->stored || resp->rooms || p->n_gone || !p->ext || strcmp(ext, p->ext) != 0;
    if (!changed) {
        free(ext);
        if (now - p->last_write_ms < CONN_PERSIST_TOUCH_MS) return 0;
        /* Still in use: keeps the row from expiring. A failed touch is
         * harmless (the stored state is still right), so it only logs. */
        char *terr = NULL;
        PGconn *pg = db_acquire(c->ctx->db, DB_WAIT_HTTP_MS, &terr);
        struct store_conn_key k = {c->user_id, c->device_id, c->conn_id};
        if (pg && store_conn_touch(pg, &k, p->base, now, &terr) == 0) p->last_write_ms = now;
        if (pg) db_release(c->ctx->db, pg);
        if (terr) LOG_DEBUG("sync", "%s: marking the stored connection in use: %s", c->user_id, terr);
        free(terr);
        return 0;
    }
    /* The response goes out only once its change is stored: a pos a client
     * holds never reflects more than the store does. */
    if (write_change(c, resp, pos, ext, now, err) < 0) {
        free(ext);
        return -1;
    }
    written(p, ext, now);
    return 0;
}

void conn_persist_flush(struct conn *c)
{
    struct conn_persist *p = c->persist;
    if (!p || !p->owed) return;
    p->owed = false;
    /* Replaced or ended: its pos is of no use any more (and its row must
     * not overwrite its successor's). */
    if (conn_dead(c)) return;
    char *ext = conn_persist_ext_encode(&c->ext), *err = NULL;
    int64_t now = clock_wall_ms();
    if (write_change(c, NULL, p->owed_pos, ext, now, &err) < 0) {
        /* The next response that changes anything writes it whole (the
         * connection has no row yet); until then a restart is M_UNKNOWN_POS. */
        LOG_WARN("sync", "%s: storing a new connection: %s", c->user_id, err ? err : "failed");
        free(err);
        free(ext);
        return;
    }
    written(p, ext, now);
}
