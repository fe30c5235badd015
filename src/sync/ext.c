#include "sync/ext.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "base/hash.h"

#include "base/alloc.h"
#include "base/log.h"
#include "store/db.h"
#include "store/extensions.h"

/* ---- the registry of served devices ---- */

struct served {
    char *key;         /* "user|device" */
    UT_hash_handle hh; /* in ext_registry.served */
};

struct ext_registry {
    pthread_mutex_t lock; /* guards served */
    struct served *served; /* devices whose to-device stream was served */
};

struct ext_registry *ext_registry_new(void)
{
    struct ext_registry *r = xcalloc(1, sizeof *r);
    pthread_mutex_init(&r->lock, NULL);
    return r;
}

void ext_registry_free(struct ext_registry *r)
{
    if (!r) return;
    struct served *s, *t;
    HASH_ITER(hh, r->served, s, t)
    {
        HASH_DEL(r->served, s);
        free(s->key);
        free(s);
    }
    pthread_mutex_destroy(&r->lock);
    free(r);
}

/* The device's entry or NULL; *key receives its key (heap). Lock held. */
static struct served *served_find(struct ext_registry *r, const char *user_id, const char *device_id, char **key)
{
    *key = xasprintf("%s|%s", user_id, device_id);
    struct served *s;
    HASH_FIND_STR(r->served, *key, s);
    return s;
}

bool ext_registry_has(struct ext_registry *r, const char *user_id, const char *device_id)
{
    char *key;
    pthread_mutex_lock(&r->lock);
    struct served *s = served_find(r, user_id, device_id, &key);
    if (s) {
        /* The most recently used goes to the end: eviction takes the oldest. */
        HASH_DEL(r->served, s);
        HASH_ADD_KEYPTR(hh, r->served, s->key, strlen(s->key), s);
    }
    pthread_mutex_unlock(&r->lock);
    free(key);
    return s != NULL;
}

void ext_registry_add(struct ext_registry *r, const char *user_id, const char *device_id)
{
    char *key;
    pthread_mutex_lock(&r->lock);
    struct served *s = served_find(r, user_id, device_id, &key);
    if (!s) {
        /* Bounded: the least recently served device is forgotten. Its next
         * read ignores since again, which can only repeat messages it has not
         * acknowledged, never lose any. */
        if (HASH_COUNT(r->served) >= EXT_REGISTRY_MAX) {
            struct served *old = r->served;
            HASH_DEL(r->served, old);
            free(old->key);
            free(old);
        }
        s = xcalloc(1, sizeof *s);
        s->key = key;
        key = NULL;
        HASH_ADD_KEYPTR(hh, r->served, s->key, strlen(s->key), s);
    }
    pthread_mutex_unlock(&r->lock);
    free(key);
}

void ext_registry_forget(struct ext_registry *r, const char *user_id, const char *device_id)
{
    char *key;
    pthread_mutex_lock(&r->lock);
    struct served *s = served_find(r, user_id, device_id, &key);
    if (s) {
        HASH_DEL(r->served, s);
        free(s->key);
        free(s);
    }
    pthread_mutex_unlock(&r->lock);
    free(key);
}

size_t ext_registry_count(struct ext_registry *r)
{
    pthread_mutex_lock(&r->lock);
    size_t n = HASH_COUNT(r->served);
    pthread_mutex_unlock(&r->lock);
    return n;
}

/* ---- sticky parameters ---- */

static void strv_clear(struct sync_strv *v)
{
    for (size_t i = 0; i < v->n; i++) free(v->v[i]);
    free(v->v);
    *v = (struct sync_strv){0};
}

static void strv_from_json(struct sync_strv *v, json_t *arr)
{
    strv_clear(v);
    size_t n = json_array_size(arr), k = 0;
    v->v = xcalloc(n ? n : 1, sizeof *v->v);
    for (size_t i = 0; i < n; i++) {
        json_t *s = json_array_get(arr, i);
        if (json_is_string(s)) v->v[k++] = xstrdup(json_string_value(s));
    }
    v->n = k;
}

static void strv_star(struct sync_strv *v)
{
    strv_clear(v);
    v->v = xcalloc(1, sizeof *v->v);
    v->v[0] = xstrdup("*");
    v->n = 1;
}

static void params_release(struct ext_params *p)
{
    strv_clear(&p->lists);
    strv_clear(&p->rooms);
}

void ext_state_init(struct ext_state *s)
{
    *s = (struct ext_state){0};
}

void ext_state_release(struct ext_state *s)
{
    params_release(&s->to_device);
    params_release(&s->e2ee);
    params_release(&s->account_data);
    params_release(&s->typing);
    params_release(&s->receipts);
    free(s->td_since);
    free(s->e2ee_otk_sent);
    free(s->e2ee_fb_sent);
    *s = (struct ext_state){0};
}

/* Absent/null keeps the previous value; the first appearance is taken as
 * given with lists/rooms defaulting to ["*"]; later ones replace each field
 * that is present and not null (docs/behaviour.md, "Sticky parameters"). */
static json_t *merge_common(struct ext_params *p, json_t *extensions, const char *name)
{
    json_t *e = json_object_get(extensions, name);
    if (!json_is_object(e)) return NULL;
    bool first = !p->seen;
    p->seen = true;
    json_t *v = json_object_get(e, "enabled");
    if (json_is_boolean(v)) p->enabled = json_is_true(v);
    v = json_object_get(e, "lists");
    if (json_is_array(v))
        strv_from_json(&p->lists, v);
    else if (first)
        strv_star(&p->lists);
    v = json_object_get(e, "rooms");
    if (json_is_array(v))
        strv_from_json(&p->rooms, v);
    else if (first)
        strv_star(&p->rooms);
    return e;
}

void ext_apply_request(struct ext_state *s, json_t *extensions)
{
    if (!json_is_object(extensions)) return;
    json_t *td = merge_common(&s->to_device, extensions, "to_device");
    if (td) {
        /* since: replaced only by a non-empty string; limit: by a positive
         * number, at most EXT_TO_DEVICE_MAX_LIMIT. */
        json_t *v = json_object_get(td, "since");
        if (json_is_string(v) && *json_string_value(v)) {
            free(s->td_since);
            s->td_since = xstrdup(json_string_value(v));
        }
        v = json_object_get(td, "limit");
        if (json_is_integer(v) && json_integer_value(v) > 0)
            s->td_limit = json_integer_value(v) > EXT_TO_DEVICE_MAX_LIMIT ? EXT_TO_DEVICE_MAX_LIMIT
                                                                          : json_integer_value(v);
    }
    merge_common(&s->e2ee, extensions, "e2ee");
    merge_common(&s->account_data, extensions, "account_data");
    merge_common(&s->typing, extensions, "typing");
    merge_common(&s->receipts, extensions, "receipts");
}

/* ---- one response's data ---- */

struct ad_type {
    char *type;        /* event type (key) */
    char *json;        /* the event */
    UT_hash_handle hh; /* in ad_room.types, insertion order */
};

struct ad_room {
    char *room_id;         /* "" = global (key) */
    struct ad_type *types; /* its events */
    bool full;             /* every row of the room was read for this response */
    UT_hash_handle hh;     /* in ext_resp.ad, insertion order */
};

struct ty_room {
    char *room_id;     /* key */
    char *json;        /* the room's latest typing EDU, NULL = none stored */
    UT_hash_handle hh; /* in ext_resp.ty */
};

/* A receipt position: the newest one of (user, thread, private) wins. */
struct rc_row {
    char *key;         /* "user\x1fthread\x1f0|1" */
    char *user_id;     /* whose */
    char *thread_id;   /* "" = unthreaded */
    bool priv;         /* m.read.private */
    char *event_id;    /* the event read */
    int64_t ts;        /* when */
    UT_hash_handle hh; /* in rc_room.rows, insertion order */
};

struct rc_room {
    char *room_id;       /* key */
    struct rc_row *rows; /* its receipts */
    bool read;           /* the stored receipts were read for this response */
    UT_hash_handle hh;   /* in ext_resp.rc */
};

struct ext_resp {
    /* to_device */
    bool td_started;               /* the effective since was chosen */
    bool td_invalid;               /* `since` is not a decimal integer: object omitted */
    bool td_dirty;                 /* new messages arrived since the last read */
    int64_t td_since;              /* effective since of this response */
    struct store_to_device *td_msgs; /* the messages read last */
    int td_n;                      /* entries */
    /* e2ee */
    bool e2ee_read;                /* a read happened */
    bool e2ee_dirty;               /* device data changed since */
    struct store_e2ee e2ee;        /* what to send (fields filtered already) */
    /* account_data */
    bool ad_initial;               /* the full global read is in this response */
    bool ad_dirty;                 /* account data changed since the last read */
    int64_t ad_hwm;                /* highest id read for this response */
    struct ad_room *ad;            /* room -> events */
    /* typing */
    struct ty_room *ty;            /* room -> EDU */
    /* receipts */
    struct rc_room *rc;            /* room -> receipts */
};

struct ext_resp *ext_resp_new(void)
{
    return xcalloc(1, sizeof(struct ext_resp));
}

void ext_resp_free(struct ext_resp *r)
{
    if (!r) return;
    store_to_device_free(r->td_msgs, r->td_n);
    store_e2ee_release(&r->e2ee);
    struct ad_room *ar, *at;
    HASH_ITER(hh, r->ad, ar, at)
    {
        struct ad_type *t, *tt;
        HASH_ITER(hh, ar->types, t, tt)
        {
            HASH_DEL(ar->types, t);
            free(t->type);
            free(t->json);
            free(t);
        }
        HASH_DEL(r->ad, ar);
        free(ar->room_id);
        free(ar);
    }
    struct ty_room *ty, *tyt;
    HASH_ITER(hh, r->ty, ty, tyt)
    {
        HASH_DEL(r->ty, ty);
        free(ty->room_id);
        free(ty->json);
        free(ty);
    }
    struct rc_room *rc, *rct;
    HASH_ITER(hh, r->rc, rc, rct)
    {
        struct rc_row *w, *wt;
        HASH_ITER(hh, rc->rows, w, wt)
        {
            HASH_DEL(rc->rows, w);
            free(w->key);
            free(w->user_id);
            free(w->thread_id);
            free(w->event_id);
            free(w);
        }
        HASH_DEL(r->rc, rc);
        free(rc->room_id);
        free(rc);
    }
    free(r);
}

static struct ad_room *ad_room_get(struct ext_resp *r, const char *room_id)
{
    struct ad_room *ar;
    HASH_FIND_STR(r->ad, room_id, ar);
    if (!ar) {
        ar = xcalloc(1, sizeof *ar);
        ar->room_id = xstrdup(room_id);
        HASH_ADD_KEYPTR(hh, r->ad, ar->room_id, strlen(ar->room_id), ar);
    }
    return ar;
}

/* Adds an event, replacing an earlier one of the same room and type (one
 * response carries each (room, type) once, with its newest content). */
static void ad_add(struct ext_resp *r, const struct store_account_data *a)
{
    struct ad_room *ar = ad_room_get(r, a->room_id);
    struct ad_type *t;
    HASH_FIND_STR(ar->types, a->type, t);
    if (t) {
        free(t->json);
        t->json = xstrdup(a->json);
        return;
    }
    t = xcalloc(1, sizeof *t);
    t->type = xstrdup(a->type);
    t->json = xstrdup(a->json);
    HASH_ADD_KEYPTR(hh, ar->types, t->type, strlen(t->type), t);
}

void ext_resp_typing_each(const struct ext_resp *r, void (*fn)(void *ud, const char *room_id, const char *edu),
                          void *ud)
{
    for (struct ty_room *t = r->ty; t; t = t->hh.next)
        if (t->json) fn(ud, t->room_id, t->json);
}

/* Sets a room's typing EDU (json may be NULL: read, nothing stored). */
static void ty_put(struct ext_resp *r, const char *room_id, const char *json)
{
    struct ty_room *t;
    HASH_FIND_STR(r->ty, room_id, t);
    if (!t) {
        t = xcalloc(1, sizeof *t);
        t->room_id = xstrdup(room_id);
        HASH_ADD_KEYPTR(hh, r->ty, t->room_id, strlen(t->room_id), t);
    }
    free(t->json);
    t->json = json ? xstrdup(json) : NULL;
}

static struct rc_room *rc_room_get(struct ext_resp *r, const char *room_id)
{
    struct rc_room *rr;
    HASH_FIND_STR(r->rc, room_id, rr);
    if (!rr) {
        rr = xcalloc(1, sizeof *rr);
        rr->room_id = xstrdup(room_id);
        HASH_ADD_KEYPTR(hh, r->rc, rr->room_id, strlen(rr->room_id), rr);
    }
    return rr;
}

/* Records a receipt position, replacing an older one of the same user,
 * thread and kind (it moved on). */
static void rc_put(struct ext_resp *r, const char *room_id, const char *user_id, const char *thread_id, bool priv,
                   const char *event_id, int64_t ts)
{
    struct rc_room *rr = rc_room_get(r, room_id);
    char *key = xasprintf("%s\x1f%s\x1f%d", user_id, thread_id, priv ? 1 : 0);
    struct rc_row *w;
    HASH_FIND_STR(rr->rows, key, w);
    if (w) {
        free(key);
        free(w->event_id);
        w->event_id = xstrdup(event_id);
        w->ts = ts;
        return;
    }
    w = xcalloc(1, sizeof *w);
    w->key = key;
    w->user_id = xstrdup(user_id);
    w->thread_id = xstrdup(thread_id);
    w->priv = priv;
    w->event_id = xstrdup(event_id);
    w->ts = ts;
    HASH_ADD_KEYPTR(hh, rr->rows, w->key, strlen(w->key), w);
}

static bool ty_has_data(const struct ext_resp *r)
{
    for (struct ty_room *t = r->ty; t; t = t->hh.next)
        if (t->json) return true;
    return false;
}

static bool rc_has_data(const struct ext_resp *r)
{
    for (struct rc_room *rr = r->rc; rr; rr = rr->hh.next)
        if (rr->rows) return true;
    return false;
}

static bool e2ee_has_data(const struct ext_resp *r)
{
    return r->e2ee.otk_counts || r->e2ee.fallback_types || r->e2ee.n_lists;
}

static bool ad_has_data(const struct ext_resp *r)
{
    for (struct ad_room *ar = r->ad; ar; ar = ar->hh.next)
        if (ar->types) return true;
    return false;
}

bool ext_resp_counts(const struct ext_resp *r)
{
    return r->td_n > 0 || e2ee_has_data(r) || ad_has_data(r) || ty_has_data(r) || rc_has_data(r);
}

/* Adds the receipt rows of a CU_RECEIPT update ([[user, thread, event, ts], ...]). */
static void rc_note(struct ext_resp *r, const struct cache_update *u)
{
    json_t *rows = json_loads(u->json, 0, NULL);
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row)
    {
        const char *user = json_string_value(json_array_get(row, 0));
        const char *thread = json_string_value(json_array_get(row, 1));
        const char *event = json_string_value(json_array_get(row, 2));
        json_t *ts = json_array_get(row, 3);
        if (!user || !thread || !event) continue;
        rc_put(r, u->room_id, user, thread, u->is_private, event, json_is_integer(ts) ? json_integer_value(ts) : 0);
    }
    json_decref(rows);
}

void ext_note(struct ext_state *s, struct ext_resp *r, enum cache_update_kind kind)
{
    (void)s;
    switch (kind) {
    case CU_TO_DEVICE: r->td_dirty = true; break;
    case CU_DEVICE_DATA: r->e2ee_dirty = true; break;
    case CU_ACCOUNT_DATA: r->ad_dirty = true; break;
    default: break;
    }
}

void ext_note_room(const struct ext_env *env, struct ext_state *s, struct ext_resp *r, const struct cache_update *u)
{
    switch (u->kind) {
    case CU_TYPING:
        if (s->typing.enabled && u->room_id && u->json && env->in_scope(env->ud, &s->typing, u->room_id))
            ty_put(r, u->room_id, u->json);
        break;
    case CU_RECEIPT:
        if (s->receipts.enabled && u->room_id && u->json && env->in_scope(env->ud, &s->receipts, u->room_id))
            rc_note(r, u);
        break;
    default: break;
    }
}

/* ---- the passes ---- */

static bool parse_pos(const char *s, int64_t *out)
{
    if (!s || !*s) return false;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < 0) return false;
    *out = v;
    return true;
}

/* Reads the device's inbox: acknowledges (deletes) up to the effective
 * since, returns what follows. Re-running it within one response is
 * harmless (it is a function of the since), so a live wake simply reads
 * again. */
static int td_run(const struct ext_env *env, struct ext_state *s, struct ext_resp *r, PGconn *pg, char **err)
{
    bool first = false;
    int64_t since = r->td_since;
    if (!r->td_started) {
        since = 0;
        if (s->td_since && !parse_pos(s->td_since, &since)) {
            /* As the original: an unusable since omits the object. */
            r->td_invalid = true;
            r->td_started = true;
            return 0;
        }
        /* The first to-device read of a device since this process started
         * checks the client's since against the store: one syncv3 handed
         * this device out (before a restart) is honoured, so what it
         * acknowledges is not sent again; any other (another device's, or
         * past everything ever sent, as when the database was dropped and
         * recreated and positions restarted at 1) reads from 0, since
         * acknowledging it could delete messages unseen. Re-sending costs
         * duplicates, never loss. The response keeps the since it used for
         * later reads (live wakes). */
        if (!ext_registry_has(env->reg, env->user_id, env->device_id)) {
            bool ok = false;
            if (since && store_to_device_since_ok(pg, env->user_id, env->device_id, since, &ok, err) < 0) return -1;
            if (since && !ok) {
                LOG_INFO("ext", "%s/%s: first to-device read since start; since %" PRId64
                                " was not handed out to this device: reading from 0",
                         env->user_id, env->device_id, since);
                since = 0;
            }
            first = true;
        }
    }
    if (r->td_invalid) return 0;
    struct store_to_device *msgs = NULL;
    int n = 0;
    int64_t limit = s->td_limit > 0 ? s->td_limit : EXT_TO_DEVICE_LIMIT;
    if (store_to_device_take(pg, env->user_id, env->device_id, since, limit, &msgs, &n, err) < 0) return -1;
    store_to_device_free(r->td_msgs, r->td_n);
    r->td_msgs = msgs;
    r->td_n = n;
    r->td_since = since;
    r->td_started = true;
    r->td_dirty = false;
    if (first) ext_registry_add(env->reg, env->user_id, env->device_id);
    LOG_DEBUG("ext", "%s/%s: to-device since %" PRId64 ": %d messages", env->user_id, env->device_id, since, n);
    return 0;
}

/* Reads E2EE data: on the connection's first request read-only (the SENT
 * bucket again, in case the response carrying it was lost), afterwards the
 * NEW -> SENT swap. One response never swaps twice once it holds data: a
 * second swap would discard the SENT rows it is about to deliver. */
static int e2ee_run(const struct ext_env *env, struct ext_state *s, struct ext_resp *r, PGconn *pg, char **err)
{
    struct store_e2ee e;
    if (store_e2ee_read(pg, env->user_id, env->device_id, !env->initial, &e, err) < 0) return -1;
    /* Counts and fallback types go whole on a connection's first e2ee
     * response, afterwards only when changed. */
    bool whole = env->initial || !s->e2ee_started;
    if (!(whole || (e.changed & STORE_E2EE_OTK_CHANGED))) {
        free(e.otk_counts);
        e.otk_counts = NULL;
    }
    if (!(whole || (e.changed & STORE_E2EE_FALLBACK_CHANGED))) {
        free(e.fallback_types);
        e.fallback_types = NULL;
    }
    /* Values equal to what the connection was last given are no news (the
     * first response reads without clearing the changed bits, so the next
     * one would otherwise send the same counts again and end its long-poll). */
    if (!whole && e.otk_counts && s->e2ee_otk_sent && strcmp(e.otk_counts, s->e2ee_otk_sent) == 0) {
        free(e.otk_counts);
        e.otk_counts = NULL;
    }
    if (!whole && e.fallback_types && s->e2ee_fb_sent && strcmp(e.fallback_types, s->e2ee_fb_sent) == 0) {
        free(e.fallback_types);
        e.fallback_types = NULL;
    }
    store_e2ee_release(&r->e2ee);
    r->e2ee = e;
    r->e2ee_read = true;
    r->e2ee_dirty = false;
    return 0;
}

/* Account data: the first pass of a connection reads all global data and
 * the high-water mark; later passes read rows above the mark. */
static int ad_run(const struct ext_env *env, struct ext_state *s, struct ext_resp *r, PGconn *pg, char **err)
{
    struct store_account_data *rows = NULL;
    int n = 0;
    if (!s->ad_started && !r->ad_initial) {
        int64_t max_id = 0;
        if (store_account_data_global(pg, env->user_id, &rows, &n, &max_id, err) < 0) return -1;
        for (int i = 0; i < n; i++) ad_add(r, &rows[i]);
        store_account_data_free(rows, n);
        r->ad_initial = true;
        r->ad_hwm = max_id;
        r->ad_dirty = false;
        return 0;
    }
    int64_t after = s->ad_hwm > r->ad_hwm ? s->ad_hwm : r->ad_hwm;
    if (store_account_data_after(pg, env->user_id, after, &rows, &n, err) < 0) return -1;
    for (int i = 0; i < n; i++) {
        if (rows[i].id > r->ad_hwm) r->ad_hwm = rows[i].id;
        if (!*rows[i].room_id || env->in_scope(env->ud, &s->account_data, rows[i].room_id)) ad_add(r, &rows[i]);
    }
    store_account_data_free(rows, n);
    r->ad_dirty = false;
    return 0;
}

static bool td_on(const struct ext_state *s)
{
    return s->to_device.enabled;
}

static bool e2ee_on(const struct ext_state *s)
{
    return s->e2ee.enabled;
}

static bool ad_on(const struct ext_state *s)
{
    return s->account_data.enabled;
}

int ext_collect(const struct ext_env *env, struct ext_state *s, struct ext_resp *r, char **err)
{
    bool ad_first = ad_on(s) && !s->ad_started && !r->ad_initial;
    if (!td_on(s) && !e2ee_on(s) && !ad_first) return 0;
    PGconn *pg = db_acquire(env->db, DB_WAIT_HTTP_MS, err);
    if (!pg) return -1;
    int rc = 0;
    if (td_on(s)) rc = td_run(env, s, r, pg, err);
    if (rc == 0 && e2ee_on(s) && !(r->e2ee_read && e2ee_has_data(r))) rc = e2ee_run(env, s, r, pg, err);
    if (rc == 0 && ad_first) rc = ad_run(env, s, r, pg, err);
    db_release(env->db, pg);
    return rc;
}

int ext_refresh(const struct ext_env *env, struct ext_state *s, struct ext_resp *r, char **err)
{
    bool td = td_on(s) && r->td_dirty;
    /* Live device data is delivered with the incremental logic, unless the
     * response already holds e2ee data (the next request takes it) or this
     * is the connection's first request (which never swaps). */
    bool e2ee = e2ee_on(s) && r->e2ee_dirty && !env->initial && !e2ee_has_data(r);
    bool ad = ad_on(s) && (r->ad_dirty || (!s->ad_started && !r->ad_initial));
    if (!td && !e2ee && !ad) return 0;
    PGconn *pg = db_acquire(env->db, DB_WAIT_HTTP_MS, err);
    if (!pg) return -1;
    int rc = 0;
    if (td) rc = td_run(env, s, r, pg, err);
    if (rc == 0 && e2ee) rc = e2ee_run(env, s, r, pg, err);
    if (rc == 0 && ad) rc = ad_run(env, s, r, pg, err);
    db_release(env->db, pg);
    return rc;
}

/* Every in-scope room of the response carries all its room account data. */
static int ad_rooms(const struct ext_env *env, struct ext_state *s, struct ext_resp *r, const struct ext_room *rooms,
                    int n_rooms, PGconn **pg, char **err)
{
    const char **want = xcalloc((size_t)n_rooms, sizeof *want);
    int n_want = 0;
    for (int i = 0; i < n_rooms; i++) {
        struct ad_room *ar;
        HASH_FIND_STR(r->ad, rooms[i].room_id, ar);
        if (ar && ar->full) continue;
        if (env->in_scope(env->ud, &s->account_data, rooms[i].room_id)) want[n_want++] = rooms[i].room_id;
    }
    int rc = 0;
    if (n_want) {
        struct store_account_data *rows = NULL;
        int n = 0;
        if (!*pg) *pg = db_acquire(env->db, DB_WAIT_HTTP_MS, err);
        rc = *pg ? store_account_data_rooms(*pg, env->user_id, want, n_want, &rows, &n, err) : -1;
        if (rc == 0) {
            for (int i = 0; i < n_want; i++) ad_room_get(r, want[i])->full = true;
            for (int i = 0; i < n; i++) ad_add(r, &rows[i]);
        }
        store_account_data_free(rows, n);
    }
    free(want);
    return rc;
}

/* The current typing EDU of every in-scope room of the response that has
 * none yet (on snapshots and on rooms with live updates). */
static int ty_rooms(const struct ext_env *env, struct ext_state *s, struct ext_resp *r, const struct ext_room *rooms,
                    int n_rooms, PGconn **pg, char **err)
{
    const char **want = xcalloc((size_t)n_rooms, sizeof *want);
    int n_want = 0;
    for (int i = 0; i < n_rooms; i++) {
        struct ty_room *t;
        HASH_FIND_STR(r->ty, rooms[i].room_id, t);
        if (!t && env->in_scope(env->ud, &s->typing, rooms[i].room_id)) want[n_want++] = rooms[i].room_id;
    }
    int rc = 0;
    if (n_want) {
        struct store_typing *rows = NULL;
        int n = 0;
        if (!*pg) *pg = db_acquire(env->db, DB_WAIT_HTTP_MS, err);
        rc = *pg ? store_typing_rooms(*pg, want, n_want, &rows, &n, err) : -1;
        if (rc == 0) {
            for (int i = 0; i < n_want; i++) ty_put(r, want[i], NULL);
            for (int i = 0; i < n; i++) ty_put(r, rows[i].room_id, rows[i].json);
        }
        store_typing_free(rows, n);
    }
    free(want);
    return rc;
}

/* For the in-scope rooms of the response, the public receipts on their
 * timeline events in this response and all the user's own receipts
 * (docs/behaviour.md, "receipts"). */
static int rc_rooms(const struct ext_env *env, struct ext_state *s, struct ext_resp *r, const struct ext_room *rooms,
                    int n_rooms, PGconn **pg, char **err)
{
    const char **want = xcalloc((size_t)n_rooms, sizeof *want);
    int n_want = 0, n_ev = 0;
    for (int i = 0; i < n_rooms; i++) {
        struct rc_room *rr;
        HASH_FIND_STR(r->rc, rooms[i].room_id, rr);
        if (rr && rr->read) continue;
        if (!env->in_scope(env->ud, &s->receipts, rooms[i].room_id)) continue;
        want[n_want++] = rooms[i].room_id;
        n_ev += rooms[i].n_events;
    }
    int rc = 0;
    if (n_want) {
        const char **evs = xcalloc((size_t)(n_ev ? n_ev : 1), sizeof *evs);
        int k = 0;
        for (int i = 0, w = 0; i < n_rooms && w < n_want; i++) {
            if (rooms[i].room_id != want[w]) continue;
            w++;
            for (int j = 0; j < rooms[i].n_events; j++) evs[k++] = rooms[i].event_ids[j];
        }
        struct store_receipt *rows = NULL;
        int n = 0;
        if (!*pg) *pg = db_acquire(env->db, DB_WAIT_HTTP_MS, err);
        rc = *pg ? store_receipts_read(*pg, env->user_id, want, n_want, evs, k, &rows, &n, err) : -1;
        if (rc == 0) {
            for (int i = 0; i < n_want; i++) rc_room_get(r, want[i])->read = true;
            for (int i = 0; i < n; i++)
                rc_put(r, rows[i].room_id, rows[i].user_id, rows[i].thread_id, rows[i].is_private, rows[i].event_id,
                       rows[i].ts);
        }
        store_receipts_free(rows, n);
        free(evs);
    }
    free(want);
    return rc;
}

int ext_finish(const struct ext_env *env, struct ext_state *s, struct ext_resp *r, const struct ext_room *rooms,
               int n_rooms, char **err)
{
    if (ext_refresh(env, s, r, err) < 0) return -1;
    if (!n_rooms) return 0;
    PGconn *pg = NULL;
    int rc = 0;
    if (ad_on(s)) rc = ad_rooms(env, s, r, rooms, n_rooms, &pg, err);
    if (rc == 0 && s->typing.enabled) rc = ty_rooms(env, s, r, rooms, n_rooms, &pg, err);
    if (rc == 0 && s->receipts.enabled) rc = rc_rooms(env, s, r, rooms, n_rooms, &pg, err);
    if (pg) db_release(env->db, pg);
    return rc;
}

/* ---- JSON ---- */

static void write_users(struct buf *b, const struct store_e2ee *e, int state)
{
    buf_putc(b, '[');
    bool first = true;
    for (int i = 0; i < e->n_lists; i++) {
        if (e->lists[i].state != state) continue;
        if (!first) buf_putc(b, ',');
        first = false;
        buf_json_str(b, e->lists[i].user_id, strlen(e->lists[i].user_id));
    }
    buf_putc(b, ']');
}

/* One m.receipt EDU of a room's receipts. For one user and event an
 * unthreaded receipt wins over a threaded one (MSC4102). */
static void write_receipt_edu(struct buf *b, const struct rc_room *rr)
{
    json_t *content = json_object();
    for (struct rc_row *w = rr->rows; w; w = w->hh.next) {
        json_t *ev = json_object_get(content, w->event_id);
        if (!ev) {
            ev = json_object();
            json_object_set_new(content, w->event_id, ev);
        }
        const char *type = w->priv ? "m.read.private" : "m.read";
        json_t *users = json_object_get(ev, type);
        if (!users) {
            users = json_object();
            json_object_set_new(ev, type, users);
        }
        json_t *old = json_object_get(users, w->user_id);
        if (old && !json_object_get(old, "thread_id") && *w->thread_id) continue;
        json_t *info = json_pack("{sI}", "ts", (json_int_t)w->ts);
        if (*w->thread_id) json_object_set_new(info, "thread_id", json_string(w->thread_id));
        json_object_set_new(users, w->user_id, info);
    }
    json_t *edu = json_pack("{sssO}", "type", "m.receipt", "content", content);
    char *text = json_dumps(edu, JSON_COMPACT | JSON_PRESERVE_ORDER);
    buf_puts(b, text);
    free(text);
    json_decref(edu);
    json_decref(content);
}

static void write_events(struct buf *b, const struct ad_room *ar)
{
    buf_putc(b, '[');
    for (struct ad_type *t = ar->types; t; t = t->hh.next) {
        if (t != ar->types) buf_putc(b, ',');
        buf_puts(b, t->json);
    }
    buf_putc(b, ']');
}

void ext_resp_write(struct buf *b, struct ext_state *s, struct ext_resp *r)
{
    buf_putc(b, '{');
    bool first = true;
    if (td_on(s) && r->td_started && !r->td_invalid) {
        int64_t next = r->td_n ? r->td_msgs[r->td_n - 1].pos : r->td_since;
        buf_printf(b, "\"to_device\":{\"next_batch\":\"%" PRId64 "\"", next);
        if (r->td_n) {
            buf_puts(b, ",\"events\":[");
            for (int i = 0; i < r->td_n; i++) {
                if (i) buf_putc(b, ',');
                buf_puts(b, r->td_msgs[i].json);
            }
            buf_putc(b, ']');
        }
        buf_putc(b, '}');
        first = false;
    }
    if (e2ee_on(s) && e2ee_has_data(r)) {
        if (!first) buf_putc(b, ',');
        first = false;
        buf_puts(b, "\"e2ee\":{");
        bool f2 = true;
        if (r->e2ee.n_lists) {
            buf_puts(b, "\"device_lists\":{\"changed\":");
            write_users(b, &r->e2ee, STORE_DL_CHANGED);
            buf_puts(b, ",\"left\":");
            write_users(b, &r->e2ee, STORE_DL_LEFT);
            buf_putc(b, '}');
            f2 = false;
        }
        if (r->e2ee.otk_counts) {
            buf_printf(b, "%s\"device_one_time_keys_count\":%s", f2 ? "" : ",", r->e2ee.otk_counts);
            f2 = false;
        }
        if (r->e2ee.fallback_types)
            buf_printf(b, "%s\"device_unused_fallback_key_types\":%s", f2 ? "" : ",", r->e2ee.fallback_types);
        buf_putc(b, '}');
    }
    if (ad_on(s) && ad_has_data(r)) {
        if (!first) buf_putc(b, ',');
        first = false;
        buf_puts(b, "\"account_data\":{");
        struct ad_room *global;
        HASH_FIND_STR(r->ad, "", global);
        bool f2 = true;
        if (global && global->types) {
            buf_puts(b, "\"global\":");
            write_events(b, global);
            f2 = false;
        }
        bool any_room = false;
        for (struct ad_room *ar = r->ad; ar; ar = ar->hh.next) {
            if (!*ar->room_id || !ar->types) continue;
            buf_puts(b, any_room ? "," : (f2 ? "\"rooms\":{" : ",\"rooms\":{"));
            any_room = true;
            buf_json_str(b, ar->room_id, strlen(ar->room_id));
            buf_putc(b, ':');
            write_events(b, ar);
        }
        if (any_room) buf_putc(b, '}');
        buf_putc(b, '}');
    }
    if (s->typing.enabled && ty_has_data(r)) {
        buf_puts(b, first ? "\"typing\":{\"rooms\":{" : ",\"typing\":{\"rooms\":{");
        first = false;
        bool f2 = true;
        for (struct ty_room *t = r->ty; t; t = t->hh.next) {
            if (!t->json) continue;
            if (!f2) buf_putc(b, ',');
            f2 = false;
            buf_json_str(b, t->room_id, strlen(t->room_id));
            buf_putc(b, ':');
            buf_puts(b, t->json);
        }
        buf_puts(b, "}}");
    }
    if (s->receipts.enabled && rc_has_data(r)) {
        buf_puts(b, first ? "\"receipts\":{\"rooms\":{" : ",\"receipts\":{\"rooms\":{");
        first = false;
        bool f2 = true;
        for (struct rc_room *rr = r->rc; rr; rr = rr->hh.next) {
            if (!rr->rows) continue;
            if (!f2) buf_putc(b, ',');
            f2 = false;
            buf_json_str(b, rr->room_id, strlen(rr->room_id));
            buf_putc(b, ':');
            write_receipt_edu(b, rr);
        }
        buf_puts(b, "}}");
    }
    buf_putc(b, '}');
    /* What this response delivered. */
    if (r->e2ee_read) {
        s->e2ee_started = true;
        if (r->e2ee.otk_counts) {
            free(s->e2ee_otk_sent);
            s->e2ee_otk_sent = xstrdup(r->e2ee.otk_counts);
        }
        if (r->e2ee.fallback_types) {
            free(s->e2ee_fb_sent);
            s->e2ee_fb_sent = xstrdup(r->e2ee.fallback_types);
        }
    }
    if (r->ad_initial) s->ad_started = true;
    if (r->ad_hwm > s->ad_hwm) s->ad_hwm = r->ad_hwm;
}
