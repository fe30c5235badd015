#include "cache/cache.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include "base/hash.h"

#include "base/alloc.h"
#include "base/clock.h"
#include "base/log.h"

/* A user ID in a room's member set. */
struct uset {
    char *user_id;      /* owned */
    UT_hash_handle hh;  /* uthash */
};

struct room_entry {
    char *room_id;           /* key */
    struct room_meta *meta;  /* current metadata (ref), may be NULL */
    struct uset *users;      /* loaded users joined or invited */
    bool swept;              /* queued in cache.sweep (checked for emptiness at the end of the write) */
    UT_hash_handle hh;       /* uthash */
};

struct ur_entry {
    char *key;               /* room ID (owned; r is replaced on changes, the key never is) */
    struct user_room *r;     /* the current view (ref) */
    UT_hash_handle hh;       /* uthash */
};

struct dm_entry {
    char *room_id;           /* a room listed in m.direct */
    UT_hash_handle hh;       /* uthash */
};

/* A user in someone's m.ignored_user_list. */
struct ignored_entry {
    char *user_id;                    /* key */
    UT_hash_handle hh;                /* uthash */
};

struct user_entry {
    char *user_id;                    /* key */
    struct ur_entry *rooms;           /* joined and invited rooms */
    struct dm_entry *dms;             /* m.direct rooms */
    struct ignored_entry *ignored;    /* m.ignored_user_list */
    struct cache_listener *listeners; /* connections of this user */
    struct user_entry *idle_prev;     /* idle list: older neighbour (only while no listener) */
    struct user_entry *idle_next;     /* idle list: newer neighbour */
    bool idle;                        /* on the idle list (no listener) */
    int64_t pinned_until;             /* monotonic ms before which eviction skips the user (0 = none) */
    UT_hash_handle hh;                /* uthash */
};

struct cache {
    pthread_rwlock_t lock;     /* guards everything below */
    struct room_entry *rooms;  /* room_id -> entry */
    struct user_entry *users;  /* user_id -> entry (loaded users) */
    int64_t pos;               /* highest NID applied */
    struct user_entry *idle_head; /* least recently used user without listeners (evicted first) */
    struct user_entry *idle_tail; /* most recently used user without listeners */
    int max_users;             /* users kept loaded before idle ones are evicted */
    int64_t evictions;         /* users evicted so far */
    int64_t room_evictions;    /* room entries dropped because no loaded user is in them */
    struct room_entry **sweep; /* rooms that may have lost their last loaded user in this write */
    int n_sweep, cap_sweep;    /* entries, capacity */
};

struct room_meta *room_meta_ref(struct room_meta *m)
{
    if (m) atomic_fetch_add(&m->refs, 1);
    return m;
}

void room_meta_unref(struct room_meta *m)
{
    if (!m) return;
    int before = atomic_fetch_sub(&m->refs, 1);
    CHECK(before > 0);
    if (before == 1) {
        store_room_release(&m->r);
        free(m);
    }
}

static struct room_meta *meta_new(struct store_room *r)
{
    struct room_meta *m = xcalloc(1, sizeof *m);
    atomic_init(&m->refs, 1);
    m->r = *r;
    *r = (struct store_room){0};
    return m;
}

struct cache_update *cache_update_new(enum cache_update_kind kind, const char *room_id, const char *device_id)
{
    struct cache_update *u = xcalloc(1, sizeof *u);
    atomic_init(&u->refs, 1);
    u->kind = kind;
    u->room_id = room_id ? xstrdup(room_id) : NULL;
    u->device_id = device_id ? xstrdup(device_id) : NULL;
    return u;
}

struct cache_update *cache_update_ref(struct cache_update *u)
{
    atomic_fetch_add(&u->refs, 1);
    return u;
}

void cache_update_unref(struct cache_update *u)
{
    if (!u) return;
    int before = atomic_fetch_sub(&u->refs, 1);
    CHECK(before > 0);
    if (before != 1) return;
    free(u->room_id);
    free(u->device_id);
    event_unref(u->ev);
    user_room_unref(u->member_ur);
    free(u->json);
    free(u);
}

struct user_room *user_room_ref(struct user_room *r)
{
    if (r) atomic_fetch_add(&r->refs, 1);
    return r;
}

void user_room_unref(struct user_room *r)
{
    if (!r) return;
    int before = atomic_fetch_sub(&r->refs, 1);
    CHECK(before > 0);
    if (before != 1) return;
    free(r->room_id);
    free(r->invite_state);
    room_meta_unref(r->meta);
    for (int i = 0; i < r->n_tags; i++) free(r->tags[i]);
    free(r->tags);
    free(r);
}

bool user_room_has_tag(const struct user_room *r, const char *tag)
{
    for (int i = 0; i < r->n_tags; i++)
        if (strcmp(r->tags[i], tag) == 0) return true;
    return false;
}

/* Sets r's tags to the keys of content.tags of an m.tag event (JSON; NULL or
 * malformed = no tags), dropping the previous ones. */
static void set_tags(struct user_room *r, const char *tags_json)
{
    for (int i = 0; i < r->n_tags; i++) free(r->tags[i]);
    free(r->tags);
    r->tags = NULL;
    r->n_tags = 0;
    json_t *j = tags_json ? json_loads(tags_json, 0, NULL) : NULL;
    json_t *tags = json_object_get(json_object_get(j, "content"), "tags");
    if (json_is_object(tags) && json_object_size(tags)) {
        r->tags = xcalloc(json_object_size(tags), sizeof *r->tags);
        const char *key;
        json_t *v;
        json_object_foreach(tags, key, v) r->tags[r->n_tags++] = xstrdup(key);
    }
    json_decref(j);
}

/* A private, changeable copy (refs = 1) to publish in place of r. */
static struct user_room *user_room_clone(const struct user_room *src)
{
    struct user_room *r = xmalloc(sizeof *r);
    *r = *src;
    atomic_init(&r->refs, 1);
    r->room_id = xstrdup(src->room_id);
    r->invite_state = src->invite_state ? xstrdup(src->invite_state) : NULL;
    r->meta = room_meta_ref(src->meta);
    r->tags = src->n_tags ? xcalloc((size_t)src->n_tags, sizeof *r->tags) : NULL;
    for (int i = 0; i < src->n_tags; i++) r->tags[i] = xstrdup(src->tags[i]);
    return r;
}

static void entry_swap(struct ur_entry *e, struct user_room *r)
{
    user_room_unref(e->r);
    e->r = r;
}

struct cache *cache_new(void)
{
    struct cache *c = xcalloc(1, sizeof *c);
    pthread_rwlock_init(&c->lock, NULL);
    c->max_users = CACHE_DEFAULT_MAX_USERS;
    return c;
}

void cache_set_max_users(struct cache *c, int max_users)
{
    pthread_rwlock_wrlock(&c->lock);
    c->max_users = max_users > 0 ? max_users : CACHE_DEFAULT_MAX_USERS;
    pthread_rwlock_unlock(&c->lock);
}

void cache_get_stats(struct cache *c, struct cache_stats *st)
{
    pthread_rwlock_rdlock(&c->lock);
    st->users = (int64_t)HASH_COUNT(c->users);
    st->rooms = (int64_t)HASH_COUNT(c->rooms);
    st->evictions = c->evictions;
    st->room_evictions = c->room_evictions;
    pthread_rwlock_unlock(&c->lock);
}

static void free_uset(struct uset **s)
{
    struct uset *e, *t;
    HASH_ITER(hh, *s, e, t)
    {
        HASH_DEL(*s, e);
        free(e->user_id);
        free(e);
    }
}

static void free_ignored(struct ignored_entry **s)
{
    struct ignored_entry *e, *t;
    HASH_ITER(hh, *s, e, t)
    {
        HASH_DEL(*s, e);
        free(e->user_id);
        free(e);
    }
}

static void free_dms(struct dm_entry **s)
{
    struct dm_entry *e, *t;
    HASH_ITER(hh, *s, e, t)
    {
        HASH_DEL(*s, e);
        free(e->room_id);
        free(e);
    }
}

void cache_free(struct cache *c)
{
    if (!c) return;
    struct room_entry *re, *rt;
    HASH_ITER(hh, c->rooms, re, rt)
    {
        HASH_DEL(c->rooms, re);
        room_meta_unref(re->meta);
        free_uset(&re->users);
        free(re->room_id);
        free(re);
    }
    struct user_entry *ue, *ut;
    HASH_ITER(hh, c->users, ue, ut)
    {
        HASH_DEL(c->users, ue);
        struct ur_entry *e, *t;
        HASH_ITER(hh, ue->rooms, e, t)
        {
            HASH_DEL(ue->rooms, e);
            user_room_unref(e->r);
            free(e->key);
            free(e);
        }
        free_dms(&ue->dms);
        free_ignored(&ue->ignored);
        free(ue->user_id);
        free(ue);
    }
    free(c->sweep);
    pthread_rwlock_destroy(&c->lock);
    free(c);
}

static struct user_entry *find_user(struct cache *c, const char *user_id)
{
    struct user_entry *u;
    HASH_FIND_STR(c->users, user_id, u);
    return u;
}

static struct room_entry *find_room(struct cache *c, const char *room_id)
{
    struct room_entry *r;
    HASH_FIND_STR(c->rooms, room_id, r);
    return r;
}

static struct room_entry *get_room(struct cache *c, const char *room_id)
{
    struct room_entry *r = find_room(c, room_id);
    if (!r) {
        r = xcalloc(1, sizeof *r);
        r->room_id = xstrdup(room_id);
        HASH_ADD_KEYPTR(hh, c->rooms, r->room_id, strlen(r->room_id), r);
    }
    return r;
}

/* Queues a room to be dropped at the end of the write if no loaded user is
 * left in it. Entries are only freed by cache_sweep, so the pointer stays
 * valid until then. */
static void sweep_push(struct cache *c, struct room_entry *r)
{
    if (r->swept) return;
    if (c->n_sweep == c->cap_sweep) {
        c->cap_sweep = c->cap_sweep ? c->cap_sweep * 2 : 16;
        c->sweep = xrealloc(c->sweep, (size_t)c->cap_sweep * sizeof *c->sweep);
    }
    r->swept = true;
    c->sweep[c->n_sweep++] = r;
}

/* Drops the queued rooms nobody loaded is in: their metadata is not kept
 * fresh any more, and views that still hold it keep their own reference. */
static void cache_sweep(struct cache *c)
{
    for (int i = 0; i < c->n_sweep; i++) {
        struct room_entry *r = c->sweep[i];
        r->swept = false;
        if (r->users) continue;
        HASH_DEL(c->rooms, r);
        room_meta_unref(r->meta);
        free(r->room_id);
        free(r);
        c->room_evictions++;
    }
    c->n_sweep = 0;
}

static void room_add_user(struct room_entry *r, const char *user_id)
{
    struct uset *e;
    HASH_FIND_STR(r->users, user_id, e);
    if (e) return;
    e = xcalloc(1, sizeof *e);
    e->user_id = xstrdup(user_id);
    HASH_ADD_KEYPTR(hh, r->users, e->user_id, strlen(e->user_id), e);
}

static void room_del_user(struct cache *c, struct room_entry *r, const char *user_id)
{
    struct uset *e;
    HASH_FIND_STR(r->users, user_id, e);
    if (!e) return;
    HASH_DEL(r->users, e);
    free(e->user_id);
    free(e);
    if (!r->users) sweep_push(c, r);
}

/* ---- the idle list (users without listeners, least recently used first) ---- */

static void idle_unlink(struct cache *c, struct user_entry *u)
{
    if (!u->idle) return;
    if (u->idle_prev)
        u->idle_prev->idle_next = u->idle_next;
    else
        c->idle_head = u->idle_next;
    if (u->idle_next)
        u->idle_next->idle_prev = u->idle_prev;
    else
        c->idle_tail = u->idle_prev;
    u->idle_prev = u->idle_next = NULL;
    u->idle = false;
}

static void idle_append(struct cache *c, struct user_entry *u)
{
    if (u->idle) return;
    u->idle_prev = c->idle_tail;
    u->idle_next = NULL;
    if (c->idle_tail)
        c->idle_tail->idle_next = u;
    else
        c->idle_head = u;
    c->idle_tail = u;
    u->idle = true;
}

static bool user_is_dm(struct user_entry *u, const char *room_id)
{
    struct dm_entry *d;
    HASH_FIND_STR(u->dms, room_id, d);
    return d != NULL;
}

/* ---- readers ---- */

bool cache_user_loaded(struct cache *c, const char *user_id)
{
    pthread_rwlock_rdlock(&c->lock);
    bool ok = find_user(c, user_id) != NULL;
    pthread_rwlock_unlock(&c->lock);
    return ok;
}

bool cache_pin_user(struct cache *c, const char *user_id)
{
    pthread_rwlock_wrlock(&c->lock);
    struct user_entry *u = find_user(c, user_id);
    if (u) {
        u->pinned_until = clock_mono_ms() + CACHE_PIN_MS;
        if (u->idle) {
            idle_unlink(c, u);
            idle_append(c, u);
        }
    }
    pthread_rwlock_unlock(&c->lock);
    return u != NULL;
}

int cache_snapshot_user(struct cache *c, const char *user_id, struct cache_listener *l, struct user_room ***out,
                        int *n, int64_t *pos)
{
    /* Registering a listener changes the user entry: take the write lock. */
    if (l)
        pthread_rwlock_wrlock(&c->lock);
    else
        pthread_rwlock_rdlock(&c->lock);
    struct user_entry *u = find_user(c, user_id);
    if (!u) {
        pthread_rwlock_unlock(&c->lock);
        return -1;
    }
    int cnt = (int)HASH_COUNT(u->rooms), i = 0;
    *out = xcalloc((size_t)(cnt ? cnt : 1), sizeof **out);
    struct ur_entry *e, *t;
    HASH_ITER(hh, u->rooms, e, t)
    {
        (*out)[i++] = user_room_ref(e->r);
    }
    *n = cnt;
    *pos = c->pos;
    if (l) {
        l->next = u->listeners;
        u->listeners = l;
        u->pinned_until = 0;
        idle_unlink(c, u);
    }
    pthread_rwlock_unlock(&c->lock);
    return 0;
}

void cache_unlisten(struct cache *c, const char *user_id, struct cache_listener *l)
{
    pthread_rwlock_wrlock(&c->lock);
    struct user_entry *u = find_user(c, user_id);
    if (u) {
        for (struct cache_listener **pp = &u->listeners; *pp; pp = &(*pp)->next) {
            if (*pp == l) {
                *pp = l->next;
                break;
            }
        }
        /* Its last connection went: the user becomes the most recently used idle one. */
        if (!u->listeners) idle_append(c, u);
    }
    pthread_rwlock_unlock(&c->lock);
}

struct room_meta *cache_room(struct cache *c, const char *room_id)
{
    pthread_rwlock_rdlock(&c->lock);
    struct room_entry *r = find_room(c, room_id);
    struct room_meta *m = r ? room_meta_ref(r->meta) : NULL;
    pthread_rwlock_unlock(&c->lock);
    return m;
}

struct user_room *cache_user_room(struct cache *c, const char *user_id, const char *room_id)
{
    pthread_rwlock_rdlock(&c->lock);
    struct user_entry *u = find_user(c, user_id);
    struct ur_entry *e = NULL;
    if (u) HASH_FIND_STR(u->rooms, room_id, e);
    struct user_room *r = e ? user_room_ref(e->r) : NULL;
    pthread_rwlock_unlock(&c->lock);
    return r;
}

int64_t cache_position(struct cache *c)
{
    pthread_rwlock_rdlock(&c->lock);
    int64_t p = c->pos;
    pthread_rwlock_unlock(&c->lock);
    return p;
}

/* ---- writers (ingest thread) ---- */

/* Replaces the ignored set from m.ignored_user_list JSON (may be NULL). */
static void set_ignored(struct user_entry *u, const char *json)
{
    free_ignored(&u->ignored);
    json_t *j = json ? json_loads(json, 0, NULL) : NULL;
    const char *key;
    json_t *v;
    json_object_foreach(json_object_get(json_object_get(j, "content"), "ignored_users"), key, v)
    {
        struct ignored_entry *e;
        HASH_FIND_STR(u->ignored, key, e);
        if (e) continue;
        e = xcalloc(1, sizeof *e);
        e->user_id = xstrdup(key);
        HASH_ADD_KEYPTR(hh, u->ignored, e->user_id, strlen(e->user_id), e);
    }
    json_decref(j);
}

bool cache_user_ignores(struct cache *c, const char *user_id, const char *other)
{
    pthread_rwlock_rdlock(&c->lock);
    struct user_entry *u = find_user(c, user_id);
    struct ignored_entry *e = NULL;
    if (u && other) HASH_FIND_STR(u->ignored, other, e);
    pthread_rwlock_unlock(&c->lock);
    return e != NULL;
}

bool cache_user_ignores_anyone(struct cache *c, const char *user_id)
{
    pthread_rwlock_rdlock(&c->lock);
    struct user_entry *u = find_user(c, user_id);
    bool any = u && u->ignored;
    pthread_rwlock_unlock(&c->lock);
    return any;
}

static void set_dms(struct user_entry *u, const char *m_direct_json)
{
    free_dms(&u->dms);
    json_t *j = m_direct_json ? json_loads(m_direct_json, 0, NULL) : NULL;
    json_t *content = json_object_get(j, "content");
    const char *key;
    json_t *arr;
    json_object_foreach(content, key, arr)
    {
        size_t i;
        json_t *rid;
        json_array_foreach(arr, i, rid)
        {
            if (!json_is_string(rid)) continue;
            struct dm_entry *d;
            HASH_FIND_STR(u->dms, json_string_value(rid), d);
            if (d) continue;
            d = xcalloc(1, sizeof *d);
            d->room_id = xstrdup(json_string_value(rid));
            HASH_ADD_KEYPTR(hh, u->dms, d->room_id, strlen(d->room_id), d);
        }
    }
    json_decref(j);
    /* Publish the new flag on joined rooms whose DM status changed. */
    struct ur_entry *e, *t;
    HASH_ITER(hh, u->rooms, e, t)
    {
        if (e->r->invite || e->r->is_dm == user_is_dm(u, e->key)) continue;
        struct user_room *nr = user_room_clone(e->r);
        nr->is_dm = !nr->is_dm;
        entry_swap(e, nr);
    }
}

static void put_meta(struct cache *c, struct store_room *r)
{
    struct room_entry *e = get_room(c, r->room_id);
    room_meta_unref(e->meta);
    e->meta = meta_new(r);
    if (!e->users) sweep_push(c, e);
}

/* Forgets a loaded user: their rooms' member sets, their views, DMs and
 * ignored users. Only for users without listeners; the store still has
 * everything and a later connection loads them again. */
static void evict_user(struct cache *c, struct user_entry *u)
{
    idle_unlink(c, u);
    HASH_DEL(c->users, u);
    struct ur_entry *e, *t;
    HASH_ITER(hh, u->rooms, e, t)
    {
        HASH_DEL(u->rooms, e);
        struct room_entry *re = find_room(c, e->key);
        if (re) room_del_user(c, re, u->user_id);
        user_room_unref(e->r);
        free(e->key);
        free(e);
    }
    free_dms(&u->dms);
    free_ignored(&u->ignored);
    free(u->user_id);
    free(u);
    c->evictions++;
}

/* Evicts the least recently used idle users until at most max_users are
 * loaded (keep, if non-NULL, is never evicted). Users with listeners are
 * not on the idle list, so they stay whatever the count. */
static void evict_over_bound(struct cache *c, struct user_entry *keep)
{
    int64_t now = -1;
    struct user_entry *v = c->idle_head;
    while (v && (int64_t)HASH_COUNT(c->users) > c->max_users) {
        struct user_entry *next = v->idle_next;
        if (v != keep && v->pinned_until) {
            if (now < 0) now = clock_mono_ms();
            if (v->pinned_until <= now) v->pinned_until = 0;
        }
        if (v != keep && !v->pinned_until) evict_user(c, v);
        v = next;
    }
}

static bool invite_is_direct(const char *invite_state, const char *user_id)
{
    json_t *j = invite_state ? json_loads(invite_state, 0, NULL) : NULL;
    bool direct = false;
    size_t i;
    json_t *ev;
    json_array_foreach(j, i, ev)
    {
        json_t *sk = json_object_get(ev, "state_key");
        json_t *type = json_object_get(ev, "type");
        if (json_is_string(sk) && json_is_string(type) && strcmp(json_string_value(type), "m.room.member") == 0 &&
            strcmp(json_string_value(sk), user_id) == 0)
            direct = json_is_true(json_object_get(json_object_get(ev, "content"), "is_direct"));
    }
    json_decref(j);
    return direct;
}

static void user_put_room(struct cache *c, struct user_entry *u, struct store_user_room *sr)
{
    struct ur_entry *e;
    HASH_FIND_STR(u->rooms, sr->room_id, e);
    if (!e) {
        e = xcalloc(1, sizeof *e);
        e->key = xstrdup(sr->room_id);
        HASH_ADD_KEYPTR(hh, u->rooms, e->key, strlen(e->key), e);
    }
    struct room_entry *re = get_room(c, sr->room_id);
    struct user_room *r = xmalloc(sizeof *r);
    *r = (struct user_room){
        .room_id = sr->room_id,
        .invite = sr->invite,
        .join_nid = sr->join_nid,
        .join_ts = sr->join_ts,
        .notif = sr->notif,
        .highlight = sr->highlight,
        .invite_state = sr->invite_state,
        .invite_ts = sr->invite_ts,
        .is_dm = sr->invite ? invite_is_direct(sr->invite_state, u->user_id) : user_is_dm(u, sr->room_id),
        .meta = sr->invite ? NULL : room_meta_ref(re->meta),
    };
    atomic_init(&r->refs, 1);
    r->room_id_len = strlen(r->room_id);
    r->room_hash = hash_bytes(r->room_id, r->room_id_len);
    if (sr->tags_json) {
        set_tags(r, sr->tags_json);
    } else if (e->r) {
        /* A join of an invited room (or a rejoin seen live): the tags stay. */
        r->tags = e->r->n_tags ? xcalloc((size_t)e->r->n_tags, sizeof *r->tags) : NULL;
        for (int i = 0; i < e->r->n_tags; i++) r->tags[r->n_tags++] = xstrdup(e->r->tags[i]);
    }
    free(sr->tags_json);
    *sr = (struct store_user_room){0};
    entry_swap(e, r);
    room_add_user(re, u->user_id);
}

static void user_del_room(struct cache *c, struct user_entry *u, const char *room_id)
{
    struct ur_entry *e;
    HASH_FIND_STR(u->rooms, room_id, e);
    if (!e) return;
    HASH_DEL(u->rooms, e);
    struct room_entry *re = find_room(c, room_id);
    if (re) room_del_user(c, re, u->user_id);
    user_room_unref(e->r);
    free(e->key);
    free(e);
}

void cache_install_user(struct cache *c, const char *user_id, struct store_user_room *rooms, int n_rooms,
                        struct store_room *metas, int n_metas, const char *m_direct_json,
                        const char *ignored_json, int64_t pos)
{
    pthread_rwlock_wrlock(&c->lock);
    for (int i = 0; i < n_metas; i++) put_meta(c, &metas[i]);
    struct user_entry *u = find_user(c, user_id);
    if (!u) {
        u = xcalloc(1, sizeof *u);
        u->user_id = xstrdup(user_id);
        HASH_ADD_KEYPTR(hh, c->users, u->user_id, strlen(u->user_id), u);
    }
    set_dms(u, m_direct_json);
    set_ignored(u, ignored_json);
    for (int i = 0; i < n_rooms; i++) user_put_room(c, u, &rooms[i]);
    if (pos > c->pos) c->pos = pos;
    /* Loaded for a connection that registers its listener next: the most
     * recently used until then. */
    if (!u->listeners) {
        idle_unlink(c, u);
        idle_append(c, u);
    }
    evict_over_bound(c, u);
    cache_sweep(c);
    pthread_rwlock_unlock(&c->lock);
}

int cache_missing_rooms(struct cache *c, const char *const *ids, int n, const char ***out)
{
    *out = xcalloc((size_t)(n ? n : 1), sizeof **out);
    int k = 0;
    pthread_rwlock_rdlock(&c->lock);
    for (int i = 0; i < n; i++) {
        struct room_entry *r = find_room(c, ids[i]);
        if (!r || !r->meta) (*out)[k++] = ids[i];
    }
    pthread_rwlock_unlock(&c->lock);
    return k;
}

bool cache_room_wanted(struct cache *c, const char *room_id)
{
    pthread_rwlock_rdlock(&c->lock);
    struct room_entry *r = find_room(c, room_id);
    bool w = r && (r->users || r->meta);
    pthread_rwlock_unlock(&c->lock);
    return w;
}

static bool device_matches(const struct cache_listener *l, const struct cache_update *u)
{
    return !u->device_id || !l->device_id || strcmp(u->device_id, l->device_id) == 0;
}

static void notify(struct user_entry *u, struct cache_update *upd)
{
    for (struct cache_listener *l = u->listeners; l; l = l->next)
        if (device_matches(l, upd)) l->on_update(l->ud, upd);
}

void cache_notify_user(struct cache *c, const char *user_id, struct cache_update *u)
{
    pthread_rwlock_wrlock(&c->lock);
    struct user_entry *ue = find_user(c, user_id);
    if (ue) notify(ue, u);
    pthread_rwlock_unlock(&c->lock);
    cache_update_unref(u);
}

/* The user's current view of a room (ref), or NULL. */
static struct user_room *entry_view(struct user_entry *u, const char *room_id)
{
    struct ur_entry *e;
    HASH_FIND_STR(u->rooms, room_id, e);
    return e ? user_room_ref(e->r) : NULL;
}

static bool joined_entry(struct user_entry *u, const char *room_id)
{
    struct ur_entry *e;
    HASH_FIND_STR(u->rooms, room_id, e);
    return e && !e->r->invite;
}

static void apply_event(struct cache *c, struct event *ev)
{
    struct room_entry *re = find_room(c, ev->room_id);
    struct user_entry *target = NULL;
    bool target_was_in = false;
    if (ev->membership && ev->state_key && (target = find_user(c, ev->state_key))) {
        struct ur_entry *e;
        HASH_FIND_STR(target->rooms, ev->room_id, e);
        target_was_in = e != NULL;
        bool joined_before = e && !e->r->invite;
        if (strcmp(ev->membership, "join") == 0) {
            if (!joined_before) {
                struct store_user_room sr = {
                    .room_id = xstrdup(ev->room_id),
                    .join_nid = ev->nid,
                    .join_ts = ev->ts,
                };
                user_put_room(c, target, &sr);
                re = find_room(c, ev->room_id);
            }
        } else if (strcmp(ev->membership, "invite") != 0) {
            /* leave, ban: after this event nothing more of the room reaches them */
            if (e) user_del_room(c, target, ev->room_id);
        }
    }
    struct cache_update *upd = cache_update_new(CU_EVENT, ev->room_id, NULL);
    upd->ev = event_ref(ev);
    upd->nid = ev->nid;
    if (target) upd->member_ur = entry_view(target, ev->room_id);
    /* Only joined members see the room's events: an invitee sees nothing of
     * it but the invite and their own membership changes. */
    if (re) {
        struct uset *s, *t;
        HASH_ITER(hh, re->users, s, t)
        {
            struct user_entry *u = find_user(c, s->user_id);
            if (u && u != target && joined_entry(u, ev->room_id)) notify(u, upd);
        }
    }
    /* The member it is about sees it (a user who just left: their leave, once). */
    if (target && (target_was_in || upd->member_ur)) notify(target, upd);
    cache_update_unref(upd);
}

/* A state block told us a loaded user's membership (a room first seen, or a
 * gappy sync): join or leave the room in their set, and tell them. */
static void apply_member(struct cache *c, const struct cache_member *m)
{
    struct user_entry *u = find_user(c, m->user_id);
    if (!u) return;
    struct ur_entry *e;
    HASH_FIND_STR(u->rooms, m->room_id, e);
    enum cache_update_kind kind;
    if (strcmp(m->membership, "join") == 0) {
        if (e && !e->r->invite) return;
        struct store_user_room sr = {.room_id = xstrdup(m->room_id), .join_nid = m->nid, .join_ts = m->ts};
        user_put_room(c, u, &sr);
        kind = CU_JOIN;
    } else if (strcmp(m->membership, "invite") != 0) {
        if (!e) return;
        user_del_room(c, u, m->room_id);
        kind = CU_LEAVE;
    } else {
        return;
    }
    struct cache_update *upd = cache_update_new(kind, m->room_id, NULL);
    upd->nid = m->nid;
    upd->member_ur = entry_view(u, m->room_id);
    notify(u, upd);
    cache_update_unref(upd);
}

void cache_apply(struct cache *c, struct cache_changes *ch)
{
    pthread_rwlock_wrlock(&c->lock);
    for (int i = 0; i < ch->n_metas; i++) {
        char *rid = xstrdup(ch->metas[i].room_id);
        put_meta(c, &ch->metas[i]);
        /* Users' joined-room entries point at the new metadata. */
        struct room_entry *re = find_room(c, rid);
        struct uset *s, *t;
        HASH_ITER(hh, re->users, s, t)
        {
            struct user_entry *u = find_user(c, s->user_id);
            struct ur_entry *e = NULL;
            if (u) HASH_FIND_STR(u->rooms, rid, e);
            if (e && !e->r->invite) {
                struct user_room *nr = user_room_clone(e->r);
                room_meta_unref(nr->meta);
                nr->meta = room_meta_ref(re->meta);
                entry_swap(e, nr);
            }
        }
        free(rid);
    }
    struct user_entry *poller_user = find_user(c, ch->user_id);
    if (poller_user && ch->m_direct_json) set_dms(poller_user, ch->m_direct_json);
    if (poller_user && ch->ignored_json) set_ignored(poller_user, ch->ignored_json);
    for (int i = 0; i < ch->n_members; i++) apply_member(c, &ch->members[i]);
    for (int i = 0; i < ch->n_events; i++) apply_event(c, ch->events[i]);
    for (int i = 0; i < ch->n_reset; i++) {
        struct room_entry *re = find_room(c, ch->reset_rooms[i]);
        if (!re) continue;
        struct cache_update *upd = cache_update_new(CU_ROOM_RESET, ch->reset_rooms[i], NULL);
        struct uset *s, *t;
        HASH_ITER(hh, re->users, s, t)
        {
            struct user_entry *u = find_user(c, s->user_id);
            if (u && joined_entry(u, ch->reset_rooms[i])) notify(u, upd);
        }
        cache_update_unref(upd);
    }
    /* After the events, so a receipt never arrives before its event. */
    for (int i = 0; i < ch->n_room_updates; i++) {
        struct cache_update *upd = ch->room_updates[i];
        struct room_entry *re = find_room(c, upd->room_id);
        struct uset *s, *t;
        if (re) HASH_ITER(hh, re->users, s, t)
        {
            struct user_entry *u = find_user(c, s->user_id);
            struct ur_entry *e = NULL;
            if (u) HASH_FIND_STR(u->rooms, upd->room_id, e);
            if (e && !e->r->invite) notify(u, upd);
        }
        cache_update_unref(upd);
    }
    ch->n_room_updates = 0;
    if (poller_user) {
        for (int i = 0; i < ch->n_tags; i++) {
            struct ur_entry *e;
            HASH_FIND_STR(poller_user->rooms, ch->tags[i].room_id, e);
            if (!e) continue;
            struct user_room *nr = user_room_clone(e->r);
            set_tags(nr, ch->tags[i].tags_json);
            entry_swap(e, nr);
            struct cache_update *upd = cache_update_new(CU_ACCOUNT_DATA, ch->tags[i].room_id, NULL);
            notify(poller_user, upd);
            cache_update_unref(upd);
        }
        for (int i = 0; i < ch->n_invites; i++) {
            struct ur_entry *e;
            HASH_FIND_STR(poller_user->rooms, ch->invites[i].room_id, e);
            if (e && !e->r->invite) continue; /* already joined */
            char *rid = xstrdup(ch->invites[i].room_id);
            user_put_room(c, poller_user, &ch->invites[i]);
            struct cache_update *upd = cache_update_new(CU_INVITE, rid, NULL);
            upd->member_ur = entry_view(poller_user, rid);
            notify(poller_user, upd);
            cache_update_unref(upd);
            free(rid);
        }
    }
    for (int i = 0; i < ch->n_user_updates; i++) {
        struct cache_update *upd = ch->user_updates[i];
        if (poller_user) {
            struct ur_entry *e = NULL;
            if (upd->room_id) HASH_FIND_STR(poller_user->rooms, upd->room_id, e);
            if (upd->kind == CU_UNREAD && e) {
                struct user_room *nr = user_room_clone(e->r);
                nr->notif = upd->notif;
                nr->highlight = upd->highlight;
                entry_swap(e, nr);
            }
            bool deliver = true;
            if (upd->kind == CU_LEAVE) {
                /* Only a room still held (an invite being rejected or withdrawn) needs it. */
                deliver = e != NULL;
                if (e) user_del_room(c, poller_user, upd->room_id);
            }
            if (upd->kind == CU_UNREAD && !e) deliver = false;
            if (upd->kind == CU_RECEIPT && (!e || e->r->invite)) deliver = false;
            if (deliver) notify(poller_user, upd);
        }
        cache_update_unref(upd);
    }
    ch->n_user_updates = 0;
    for (int i = 0; i < ch->n_invites; i++) store_user_room_release(&ch->invites[i]);
    if (ch->pos > c->pos) c->pos = ch->pos;
    cache_sweep(c);
    pthread_rwlock_unlock(&c->lock);
}
