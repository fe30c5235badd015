/* Sliding-sync request bodies; see request.h. */
#include "sync/request.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"

const char *sync_req_errcode(int code)
{
    return code == SYNC_REQ_ERR_INVALID_PARAM ? "M_INVALID_PARAM" : "M_BAD_JSON";
}

/* ---- small owned types ---- */

static void strv_release(struct sync_strv *s)
{
    for (size_t i = 0; i < s->n; i++) free(s->v[i]);
    free(s->v);
    s->v = NULL;
    s->n = 0;
}

static void strv_copy(struct sync_strv *dst, const struct sync_strv *src)
{
    strv_release(dst);
    dst->v = src->n ? xcalloc(src->n, sizeof(char *)) : NULL;
    for (size_t i = 0; i < src->n; i++) dst->v[i] = src->v[i] ? xstrdup(src->v[i]) : NULL;
    dst->n = src->n;
}

static bool str_eq_null(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static bool strv_equal(const struct sync_strv *a, const struct sync_strv *b)
{
    if (a->n != b->n) return false;
    for (size_t i = 0; i < a->n; i++)
        if (!str_eq_null(a->v[i], b->v[i])) return false;
    return true;
}

static void filters_release(struct sync_filters *f)
{
    free(f->room_name_like);
    strv_release(&f->tags);
    strv_release(&f->not_tags);
    strv_release(&f->room_types);
    strv_release(&f->not_room_types);
    strv_release(&f->spaces);
    memset(f, 0, sizeof(*f));
}

static void filters_copy(struct sync_filters *dst, const struct sync_filters *src)
{
    filters_release(dst);
    *dst = (struct sync_filters){
        .is_dm = src->is_dm,
        .is_encrypted = src->is_encrypted,
        .is_invite = src->is_invite,
        .is_tombstoned = src->is_tombstoned,
        .room_name_like = src->room_name_like ? xstrdup(src->room_name_like) : NULL,
        .has_tags = src->has_tags,
        .has_not_tags = src->has_not_tags,
        .has_room_types = src->has_room_types,
        .has_not_room_types = src->has_not_room_types,
        .has_spaces = src->has_spaces,
    };
    strv_copy(&dst->tags, &src->tags);
    strv_copy(&dst->not_tags, &src->not_tags);
    strv_copy(&dst->room_types, &src->room_types);
    strv_copy(&dst->not_room_types, &src->not_room_types);
    strv_copy(&dst->spaces, &src->spaces);
}

static void rs_free_pairs(struct rs_pair *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(p[i].type);
        free(p[i].key);
    }
    free(p);
}

static void roomsub_release(struct sync_roomsub *s)
{
    rs_free_pairs(s->required_state, s->n_required_state);
    if (s->include_old_rooms) {
        roomsub_release(s->include_old_rooms);
        free(s->include_old_rooms);
    }
    memset(s, 0, sizeof(*s));
}

static void required_state_copy(struct sync_roomsub *dst, const struct sync_roomsub *src)
{
    rs_free_pairs(dst->required_state, dst->n_required_state);
    dst->has_required_state = src->has_required_state;
    dst->n_required_state = src->n_required_state;
    dst->required_state =
        src->n_required_state ? xcalloc(src->n_required_state, sizeof(struct rs_pair)) : NULL;
    for (size_t i = 0; i < src->n_required_state; i++) {
        dst->required_state[i].type = xstrdup(src->required_state[i].type);
        dst->required_state[i].key = xstrdup(src->required_state[i].key);
    }
}

static void roomsub_copy(struct sync_roomsub *dst, const struct sync_roomsub *src)
{
    roomsub_release(dst);
    required_state_copy(dst, src);
    dst->timeline_limit = src->timeline_limit;
    dst->has_include_heroes = src->has_include_heroes;
    dst->include_heroes = src->include_heroes;
    if (src->include_old_rooms) {
        dst->include_old_rooms = xcalloc(1, sizeof(*dst->include_old_rooms));
        roomsub_copy(dst->include_old_rooms, src->include_old_rooms);
    }
}

static bool required_state_equal(const struct sync_roomsub *a, const struct sync_roomsub *b)
{
    if (a->n_required_state != b->n_required_state) return false;
    for (size_t i = 0; i < a->n_required_state; i++) {
        if (strcmp(a->required_state[i].type, b->required_state[i].type) != 0 ||
            strcmp(a->required_state[i].key, b->required_state[i].key) != 0)
            return false;
    }
    return true;
}

static void list_free(struct sync_req_list *l)
{
    if (!l) return;
    free(l->key);
    roomsub_release(&l->sub);
    sync_ranges_release(&l->ranges);
    strv_release(&l->sort_names);
    filters_release(&l->filters);
    free(l->filters_json);
    strv_release(&l->bump_event_types);
    free(l);
}

static struct sync_req_list *list_new(const char *key)
{
    struct sync_req_list *l = xcalloc(1, sizeof(*l));
    l->key = xstrdup(key);
    sync_ranges_init(&l->ranges);
    return l;
}

static void sub_free(struct sync_req_sub *s)
{
    if (!s) return;
    free(s->room_id);
    roomsub_release(&s->sub);
    free(s);
}

void sync_req_init(struct sync_req *r) { memset(r, 0, sizeof(*r)); }

void sync_req_release(struct sync_req *r)
{
    free(r->conn_id);
    free(r->txn_id);
    struct sync_req_list *l, *ltmp;
    HASH_ITER(hh, r->lists, l, ltmp)
    {
        HASH_DEL(r->lists, l);
        list_free(l);
    }
    struct sync_req_sub *s, *stmp;
    HASH_ITER(hh, r->room_subscriptions, s, stmp)
    {
        HASH_DEL(r->room_subscriptions, s);
        sub_free(s);
    }
    strv_release(&r->unsubscribe_rooms);
    json_decref(r->extensions);
    memset(r, 0, sizeof(*r));
}

struct sync_req_list *sync_req_find_list(const struct sync_req *r, const char *key)
{
    struct sync_req_list *l = NULL;
    HASH_FIND_STR(r->lists, key, l);
    return l;
}

struct sync_req_sub *sync_req_find_sub(const struct sync_req *r, const char *room_id)
{
    struct sync_req_sub *s = NULL;
    HASH_FIND_STR(r->room_subscriptions, room_id, s);
    return s;
}

/* ---- parsing ---- */

__attribute__((format(printf, 3, 4))) static int fail(struct sync_req_error *err, int code,
                                                      const char *fmt, ...)
{
    if (err) {
        err->code = code;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof(err->message), fmt, ap);
        va_end(ap);
    }
    return code;
}

/* The field's value, or NULL when absent or JSON null (the same thing). */
static json_t *field(json_t *obj, const char *name)
{
    json_t *v = json_object_get(obj, name);
    return json_is_null(v) ? NULL : v;
}

/* Parses an optional integer; *set tells whether it was present. */
static int get_int(json_t *obj, const char *name, const char *where, int64_t *out, bool *set,
                   struct sync_req_error *err)
{
    json_t *v = field(obj, name);
    *set = v != NULL;
    if (!v) return 0;
    if (!json_is_integer(v))
        return fail(err, SYNC_REQ_ERR_BAD_JSON, "%s%s must be an integer", where, name);
    json_int_t i = json_integer_value(v);
    if (i > SYNC_REQ_MAX_INT || i < -SYNC_REQ_MAX_INT)
        return fail(err, SYNC_REQ_ERR_INVALID_PARAM, "%s%s is out of range", where, name);
    *out = (int64_t)i;
    return 0;
}

static int get_bool(json_t *obj, const char *name, const char *where, bool *out, bool *set,
                    struct sync_req_error *err)
{
    json_t *v = field(obj, name);
    *set = v != NULL;
    if (!v) return 0;
    if (!json_is_boolean(v))
        return fail(err, SYNC_REQ_ERR_BAD_JSON, "%s%s must be a boolean", where, name);
    *out = json_is_true(v);
    return 0;
}

static int get_tri(json_t *obj, const char *name, const char *where, enum sync_tri *out,
                   struct sync_req_error *err)
{
    bool set = false, val = false;
    int rc = get_bool(obj, name, where, &val, &set, err);
    if (rc) return rc;
    *out = !set ? SYNC_TRI_UNSET : val ? SYNC_TRI_TRUE : SYNC_TRI_FALSE;
    return 0;
}

/* Parses an optional array of strings (nulls allowed as entries when
 * allow_null) of at most max entries into *out. */
static int get_strv(json_t *obj, const char *name, const char *where, bool allow_null,
                    size_t max, bool *set, struct sync_strv *out, struct sync_req_error *err)
{
    json_t *v = field(obj, name);
    *set = v != NULL;
    if (!v) return 0;
    if (!json_is_array(v))
        return fail(err, SYNC_REQ_ERR_BAD_JSON, "%s%s must be an array of strings", where, name);
    size_t n = json_array_size(v);
    if (n > max)
        return fail(err, SYNC_REQ_ERR_INVALID_PARAM, "%s%s has more than %zu entries", where,
                    name, max);
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(v, i);
        if (!json_is_string(e) && !(allow_null && json_is_null(e)))
            return fail(err, SYNC_REQ_ERR_BAD_JSON, "%s%s must be an array of strings%s", where,
                        name, allow_null ? " or nulls" : "");
    }
    out->v = n ? xcalloc(n, sizeof(char *)) : NULL;
    out->n = n;
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(v, i);
        out->v[i] = json_is_string(e) ? xstrdup(json_string_value(e)) : NULL;
    }
    return 0;
}

static int parse_roomsub(json_t *obj, const char *where, int depth, struct sync_roomsub *out,
                         struct sync_req_error *err)
{
    json_t *rs = field(obj, "required_state");
    if (rs) {
        if (!json_is_array(rs))
            return fail(err, SYNC_REQ_ERR_BAD_JSON, "%srequired_state must be an array", where);
        size_t n = json_array_size(rs);
        if (n > SYNC_REQ_MAX_REQUIRED_STATE)
            return fail(err, SYNC_REQ_ERR_INVALID_PARAM,
                        "%srequired_state has more than %d entries", where,
                        SYNC_REQ_MAX_REQUIRED_STATE);
        for (size_t i = 0; i < n; i++) {
            json_t *p = json_array_get(rs, i);
            if (!json_is_array(p) || json_array_size(p) != 2 ||
                !json_is_string(json_array_get(p, 0)) || !json_is_string(json_array_get(p, 1)))
                return fail(err, SYNC_REQ_ERR_BAD_JSON,
                            "%srequired_state entries must be [type, state_key] string pairs",
                            where);
        }
        out->has_required_state = true;
        out->required_state = n ? xcalloc(n, sizeof(struct rs_pair)) : NULL;
        out->n_required_state = n;
        for (size_t i = 0; i < n; i++) {
            json_t *p = json_array_get(rs, i);
            out->required_state[i].type = xstrdup(json_string_value(json_array_get(p, 0)));
            out->required_state[i].key = xstrdup(json_string_value(json_array_get(p, 1)));
        }
    }
    bool set;
    int64_t tl = 0;
    int rc = get_int(obj, "timeline_limit", where, &tl, &set, err);
    if (rc) return rc;
    /* Negative limits are meaningless: treated as 0 (= unspecified). */
    if (tl < 0) tl = 0;
    if (tl > SYNC_REQ_MAX_TIMELINE_LIMIT) tl = SYNC_REQ_MAX_TIMELINE_LIMIT;
    out->timeline_limit = tl;
    rc = get_bool(obj, "include_heroes", where, &out->include_heroes, &out->has_include_heroes,
                  err);
    if (rc) return rc;
    json_t *old = field(obj, "include_old_rooms");
    if (old) {
        if (!json_is_object(old))
            return fail(err, SYNC_REQ_ERR_BAD_JSON, "%sinclude_old_rooms must be an object",
                        where);
        if (depth + 1 > SYNC_REQ_MAX_OLD_ROOMS_DEPTH)
            return fail(err, SYNC_REQ_ERR_INVALID_PARAM,
                        "%sinclude_old_rooms is nested more than %d levels deep", where,
                        SYNC_REQ_MAX_OLD_ROOMS_DEPTH);
        out->include_old_rooms = xcalloc(1, sizeof(*out->include_old_rooms));
        char *w = xasprintf("%sinclude_old_rooms.", where);
        rc = parse_roomsub(old, w, depth + 1, out->include_old_rooms, err);
        free(w);
        if (rc) return rc;
    }
    return 0;
}

static int parse_filters(json_t *obj, const char *where, struct sync_filters *f,
                         struct sync_req_error *err)
{
    int rc;
    if ((rc = get_tri(obj, "is_dm", where, &f->is_dm, err)) ||
        (rc = get_tri(obj, "is_encrypted", where, &f->is_encrypted, err)) ||
        (rc = get_tri(obj, "is_invite", where, &f->is_invite, err)) ||
        (rc = get_tri(obj, "is_tombstoned", where, &f->is_tombstoned, err)))
        return rc;
    json_t *like = field(obj, "room_name_like");
    if (like) {
        if (!json_is_string(like))
            return fail(err, SYNC_REQ_ERR_BAD_JSON, "%sroom_name_like must be a string", where);
        if (json_string_length(like) > 0) f->room_name_like = xstrdup(json_string_value(like));
    }
    if ((rc = get_strv(obj, "tags", where, false, SYNC_REQ_MAX_STRINGS, &f->has_tags, &f->tags,
                       err)) ||
        (rc = get_strv(obj, "not_tags", where, false, SYNC_REQ_MAX_STRINGS, &f->has_not_tags,
                       &f->not_tags, err)) ||
        (rc = get_strv(obj, "room_types", where, true, SYNC_REQ_MAX_STRINGS, &f->has_room_types,
                       &f->room_types, err)) ||
        (rc = get_strv(obj, "not_room_types", where, true, SYNC_REQ_MAX_STRINGS,
                       &f->has_not_room_types, &f->not_room_types, err)) ||
        (rc = get_strv(obj, "spaces", where, false, SYNC_REQ_MAX_STRINGS, &f->has_spaces,
                       &f->spaces, err)))
        return rc;
    return 0;
}

static int parse_ranges(json_t *v, const char *where, struct sync_ranges *out,
                        struct sync_req_error *err)
{
    if (!json_is_array(v))
        return fail(err, SYNC_REQ_ERR_BAD_JSON, "%sranges must be an array of [start,end] pairs",
                    where);
    size_t n = json_array_size(v);
    if (n > SYNC_REQ_MAX_RANGES)
        return fail(err, SYNC_REQ_ERR_INVALID_PARAM, "%sranges has more than %d entries", where,
                    SYNC_REQ_MAX_RANGES);
    for (size_t i = 0; i < n; i++) {
        json_t *p = json_array_get(v, i);
        json_t *a = json_array_get(p, 0), *b = json_array_get(p, 1);
        if (!json_is_array(p) || json_array_size(p) != 2 || !json_is_integer(a) ||
            !json_is_integer(b))
            return fail(err, SYNC_REQ_ERR_BAD_JSON,
                        "%sranges must be an array of [start,end] integer pairs", where);
        json_int_t s = json_integer_value(a), e = json_integer_value(b);
        if (s > SYNC_REQ_MAX_INT || e > SYNC_REQ_MAX_INT || s < -SYNC_REQ_MAX_INT ||
            e < -SYNC_REQ_MAX_INT)
            return fail(err, SYNC_REQ_ERR_INVALID_PARAM, "%sranges: index out of range", where);
        sync_ranges_push(out, (int64_t)s, (int64_t)e);
    }
    const char *why = NULL;
    if (sync_ranges_validate(out, &why) < 0)
        return fail(err, SYNC_REQ_ERR_INVALID_PARAM, "%sinvalid ranges: %s", where, why);
    return 0;
}

/* Rooms a list's windows in this request can hold (0 without ranges: unknown). */
static uint64_t window_rooms(const struct sync_req_list *l)
{
    uint64_t n = 0;
    for (size_t i = 0; l->has_ranges && i < l->ranges.n; i++) {
        uint64_t span = (uint64_t)(l->ranges.v[i].end - l->ranges.v[i].start) + 1;
        n = n + span < n ? UINT64_MAX : n + span;
    }
    return n;
}

/* A timeline_limit above SYNC_REQ_TIMELINE_FREE for a source covering rooms
 * rooms (0 = unknown): at most the budget spread over them, never below the
 * free limit. */
static int64_t budgeted_limit(int64_t limit, uint64_t rooms)
{
    if (limit <= SYNC_REQ_TIMELINE_FREE) return limit;
    if (rooms == 0) return SYNC_REQ_TIMELINE_FREE;
    uint64_t per = SYNC_REQ_TIMELINE_BUDGET / rooms;
    if (per < SYNC_REQ_TIMELINE_FREE) per = SYNC_REQ_TIMELINE_FREE;
    return (uint64_t)limit > per ? (int64_t)per : limit;
}

static int parse_list(json_t *obj, const char *key, struct sync_req_list *l,
                      struct sync_req_error *err)
{
    char *where = xasprintf("lists[%s].", key);
    int rc = parse_roomsub(obj, where, 0, &l->sub, err);
    if (rc) goto out;
    json_t *v = field(obj, "ranges");
    if (v) {
        l->has_ranges = true;
        if ((rc = parse_ranges(v, where, &l->ranges, err))) goto out;
    }
    rc = get_strv(obj, "sort", where, false, SYNC_REQ_MAX_SORT, &l->has_sort, &l->sort_names, err);
    if (rc) goto out;
    for (size_t i = 0; i < l->sort_names.n; i++) {
        enum sync_sort s;
        if (sync_sort_parse(l->sort_names.v[i], &s) == 0) l->sort[l->n_sort++] = s;
        else l->sort_unknown = true;
    }
    v = field(obj, "filters");
    if (v) {
        if (!json_is_object(v)) {
            rc = fail(err, SYNC_REQ_ERR_BAD_JSON, "%sfilters must be an object", where);
            goto out;
        }
        char *fw = xasprintf("%sfilters.", where);
        rc = parse_filters(v, fw, &l->filters, err);
        free(fw);
        if (rc) goto out;
        l->has_filters = true;
        l->filters_json = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
        CHECK(l->filters_json != NULL);
    }
    rc = get_bool(obj, "slow_get_all_rooms", where, &l->slow_get_all_rooms,
                  &l->has_slow_get_all_rooms, err);
    if (rc) goto out;
    rc = get_strv(obj, "bump_event_types", where, false, SYNC_REQ_MAX_STRINGS,
                  &l->has_bump_event_types, &l->bump_event_types, err);
    if (rc) goto out;
    bool set;
    rc = get_bool(obj, "deleted", where, &l->deleted, &set, err);
    if (rc == 0) l->sub.timeline_limit = budgeted_limit(l->sub.timeline_limit, window_rooms(l));
out:
    free(where);
    return rc;
}

static int parse_string(json_t *root, const char *name, size_t max, char **out,
                        struct sync_req_error *err)
{
    json_t *v = field(root, name);
    if (!v) return 0;
    if (!json_is_string(v)) return fail(err, SYNC_REQ_ERR_BAD_JSON, "%s must be a string", name);
    if (json_string_length(v) > max)
        return fail(err, SYNC_REQ_ERR_INVALID_PARAM, "%s is longer than %zu bytes", name, max);
    *out = xstrdup(json_string_value(v));
    return 0;
}

static int check_extensions(json_t *ext, struct sync_req_error *err);

static int parse_root(json_t *root, struct sync_req *out, struct sync_req_error *err)
{
    int rc;
    if ((rc = parse_string(root, "conn_id", SYNC_REQ_MAX_CONN_ID, &out->conn_id, err)) ||
        (rc = parse_string(root, "txn_id", SYNC_REQ_MAX_TXN_ID, &out->txn_id, err)))
        return rc;

    json_t *lists = field(root, "lists");
    if (lists) {
        if (!json_is_object(lists))
            return fail(err, SYNC_REQ_ERR_BAD_JSON, "lists must be an object");
        if (json_object_size(lists) > SYNC_REQ_MAX_LISTS)
            return fail(err, SYNC_REQ_ERR_INVALID_PARAM, "more than %d lists",
                        SYNC_REQ_MAX_LISTS);
        const char *key;
        json_t *v;
        json_object_foreach(lists, key, v)
        {
            if (strlen(key) > SYNC_REQ_MAX_LIST_KEY)
                return fail(err, SYNC_REQ_ERR_INVALID_PARAM,
                            "list key longer than %d bytes", SYNC_REQ_MAX_LIST_KEY);
            if (json_is_null(v)) continue;
            if (!json_is_object(v))
                return fail(err, SYNC_REQ_ERR_BAD_JSON, "lists[%s] must be an object", key);
            struct sync_req_list *l = list_new(key);
            rc = parse_list(v, key, l, err);
            if (rc) {
                list_free(l);
                return rc;
            }
            HASH_ADD_KEYPTR(hh, out->lists, l->key, strlen(l->key), l);
        }
    }

    json_t *subs = field(root, "room_subscriptions");
    if (subs) {
        if (!json_is_object(subs))
            return fail(err, SYNC_REQ_ERR_BAD_JSON, "room_subscriptions must be an object");
        if (json_object_size(subs) > SYNC_REQ_MAX_SUBSCRIPTIONS)
            return fail(err, SYNC_REQ_ERR_INVALID_PARAM, "more than %d room_subscriptions",
                        SYNC_REQ_MAX_SUBSCRIPTIONS);
        const char *room_id;
        json_t *v;
        json_object_foreach(subs, room_id, v)
        {
            if (json_is_null(v)) continue;
            if (!json_is_object(v))
                return fail(err, SYNC_REQ_ERR_BAD_JSON,
                            "room_subscriptions entries must be objects");
            struct sync_req_sub *s = xcalloc(1, sizeof(*s));
            s->room_id = xstrdup(room_id);
            rc = parse_roomsub(v, "room_subscriptions[].", 0, &s->sub, err);
            if (rc) {
                sub_free(s);
                return rc;
            }
            HASH_ADD_KEYPTR(hh, out->room_subscriptions, s->room_id, strlen(s->room_id), s);
        }
        uint64_t n_subs = HASH_COUNT(out->room_subscriptions);
        for (struct sync_req_sub *s = out->room_subscriptions; s; s = s->hh.next)
            s->sub.timeline_limit = budgeted_limit(s->sub.timeline_limit, n_subs);
    }

    bool set;
    rc = get_strv(root, "unsubscribe_rooms", "", false, SYNC_REQ_MAX_SUBSCRIPTIONS, &set,
                  &out->unsubscribe_rooms, err);
    if (rc) return rc;

    json_t *ext = field(root, "extensions");
    if (ext) {
        if (!json_is_object(ext))
            return fail(err, SYNC_REQ_ERR_BAD_JSON, "extensions must be an object");
        rc = check_extensions(ext, err);
        if (rc) return rc;
        out->extensions = json_incref(ext);
    }
    return 0;
}

/* Checks the fields every extension shares (docs/behaviour.md, "Extension scope") and the extension-specific
 * ones whose type is fixed, so a wrong type is a 400 now rather than a
 * surprise later. Unknown extensions and fields are ignored. */
static int check_extensions(json_t *ext, struct sync_req_error *err)
{
    const char *name;
    json_t *e;
    json_object_foreach(ext, name, e)
    {
        if (json_is_null(e)) continue;
        if (!json_is_object(e)) return fail(err, SYNC_REQ_ERR_BAD_JSON, "extensions.%.40s must be an object", name);
        json_t *v = json_object_get(e, "enabled");
        if (v && !json_is_null(v) && !json_is_boolean(v))
            return fail(err, SYNC_REQ_ERR_BAD_JSON, "extensions.%.40s.enabled must be a boolean", name);
        static const char *const arrays[] = {"lists", "rooms"};
        for (int i = 0; i < 2; i++) {
            v = json_object_get(e, arrays[i]);
            if (!v || json_is_null(v)) continue;
            if (!json_is_array(v) || json_array_size(v) > SYNC_REQ_MAX_STRINGS)
                return fail(err, SYNC_REQ_ERR_BAD_JSON, "extensions.%.40s.%s must be an array of strings", name,
                            arrays[i]);
            size_t k;
            json_t *item;
            json_array_foreach(v, k, item)
            {
                if (!json_is_string(item))
                    return fail(err, SYNC_REQ_ERR_BAD_JSON, "extensions.%.40s.%s must be an array of strings",
                                name, arrays[i]);
            }
        }
        v = json_object_get(e, "limit");
        if (v && !json_is_null(v) && !json_is_integer(v))
            return fail(err, SYNC_REQ_ERR_BAD_JSON, "extensions.%.40s.limit must be an integer", name);
        v = json_object_get(e, "since");
        if (v && !json_is_null(v) && !json_is_string(v))
            return fail(err, SYNC_REQ_ERR_BAD_JSON, "extensions.%.40s.since must be a string", name);
    }
    return 0;
}

/* Decodes a body (len 0 = {}) into an object; NULL with *err on failure. */
static json_t *load_object(const char *body, size_t len, struct sync_req_error *err)
{
    if (len == 0) return json_object();
    json_error_t jerr;
    json_t *root = json_loadb(body, len, JSON_DECODE_ANY, &jerr);
    if (!root) {
        fail(err, SYNC_REQ_ERR_BAD_JSON, "request body is not valid JSON: %s", jerr.text);
        return NULL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        fail(err, SYNC_REQ_ERR_BAD_JSON, "request body must be a JSON object");
        return NULL;
    }
    return root;
}

int sync_req_parse(struct sync_req *out, const char *body, size_t len, struct sync_req_error *err)
{
    sync_req_init(out);
    json_t *root = load_object(body, len, err);
    if (!root) return SYNC_REQ_ERR_BAD_JSON;
    int rc = parse_root(root, out, err);
    json_decref(root);
    if (rc) sync_req_release(out);
    return rc;
}

/* ---- merging ---- */

void sync_req_changes_init(struct sync_req_changes *c) { memset(c, 0, sizeof(*c)); }

void sync_req_changes_release(struct sync_req_changes *c)
{
    for (size_t i = 0; i < c->n_lists; i++) {
        free(c->lists[i].key);
        sync_ranges_release(&c->lists[i].old_ranges);
    }
    for (size_t i = 0; i < c->n_subs; i++) free(c->subs[i].room_id);
    free(c->lists);
    free(c->subs);
    memset(c, 0, sizeof(*c));
}

const struct sync_list_delta *sync_req_changes_list(const struct sync_req_changes *c,
                                                    const char *key)
{
    for (size_t i = 0; i < c->n_lists; i++)
        if (strcmp(c->lists[i].key, key) == 0) return &c->lists[i];
    return NULL;
}

static void push_list_delta(struct sync_req_changes *c, const struct sync_list_delta *d)
{
    if (!c) return;
    c->lists = xrealloc(c->lists, (c->n_lists + 1) * sizeof(*c->lists));
    c->lists[c->n_lists++] = *d;
}

static void push_sub_delta(struct sync_req_changes *c, const char *room_id,
                           enum sync_sub_change kind, bool rs, bool tl)
{
    if (!c) return;
    c->subs = xrealloc(c->subs, (c->n_subs + 1) * sizeof(*c->subs));
    c->subs[c->n_subs++] = (struct sync_sub_delta){
        .room_id = xstrdup(room_id),
        .change = kind,
        .required_state_changed = rs,
        .timeline_limit_changed = tl,
    };
}

/* Copies every field of src into the fresh list dst (not `deleted`). */
static void list_copy_fields(struct sync_req_list *dst, const struct sync_req_list *src)
{
    roomsub_copy(&dst->sub, &src->sub);
    dst->has_ranges = src->has_ranges;
    sync_ranges_copy(&dst->ranges, &src->ranges);
    dst->has_sort = src->has_sort;
    strv_copy(&dst->sort_names, &src->sort_names);
    memcpy(dst->sort, src->sort, sizeof(dst->sort));
    dst->n_sort = src->n_sort;
    dst->sort_unknown = src->sort_unknown;
    dst->has_filters = src->has_filters;
    filters_copy(&dst->filters, &src->filters);
    free(dst->filters_json);
    dst->filters_json = src->filters_json ? xstrdup(src->filters_json) : NULL;
    dst->has_slow_get_all_rooms = src->has_slow_get_all_rooms;
    dst->slow_get_all_rooms = src->slow_get_all_rooms;
    dst->has_bump_event_types = src->has_bump_event_types;
    strv_copy(&dst->bump_event_types, &src->bump_event_types);
    dst->deleted = false;
}

/* Absent filters and {} both mean "no filtering". */
static const char *filters_key(const struct sync_req_list *l)
{
    return l->filters_json ? l->filters_json : "{}";
}

/* Merges the specified fields of d into the existing list m (docs/behaviour.md, "Sticky parameters"). */
static void merge_list(struct sync_req_list *m, const struct sync_req_list *d,
                       struct sync_list_delta *out)
{
    if (d->has_ranges) {
        out->ranges_changed = !sync_ranges_equal(&m->ranges, &d->ranges);
        m->has_ranges = true;
        sync_ranges_copy(&m->ranges, &d->ranges);
    }
    if (d->has_sort) {
        out->sort_changed = !strv_equal(&m->sort_names, &d->sort_names);
        m->has_sort = true;
        strv_copy(&m->sort_names, &d->sort_names);
        memcpy(m->sort, d->sort, sizeof(m->sort));
        m->n_sort = d->n_sort;
        m->sort_unknown = d->sort_unknown;
    }
    if (d->has_filters) {
        out->filters_changed = strcmp(filters_key(m), filters_key(d)) != 0;
        m->has_filters = true;
        filters_copy(&m->filters, &d->filters);
        free(m->filters_json);
        m->filters_json = xstrdup(d->filters_json);
    }
    if (d->has_slow_get_all_rooms) {
        out->slow_get_all_rooms_changed = m->slow_get_all_rooms != d->slow_get_all_rooms;
        m->has_slow_get_all_rooms = true;
        m->slow_get_all_rooms = d->slow_get_all_rooms;
    }
    if (d->has_bump_event_types) {
        out->bump_event_types_changed = !strv_equal(&m->bump_event_types, &d->bump_event_types);
        m->has_bump_event_types = true;
        strv_copy(&m->bump_event_types, &d->bump_event_types);
    }
    if (d->sub.has_required_state) {
        out->required_state_changed = !required_state_equal(&m->sub, &d->sub);
        required_state_copy(&m->sub, &d->sub);
    }
    /* timeline_limit 0 means "not specified": it can never be lowered to 0. */
    if (d->sub.timeline_limit != 0) {
        out->timeline_limit_changed = m->sub.timeline_limit != d->sub.timeline_limit;
        m->sub.timeline_limit = d->sub.timeline_limit;
    }
    if (d->sub.include_old_rooms) {
        struct sync_roomsub *old = m->sub.include_old_rooms;
        if (old) roomsub_release(old);
        else old = m->sub.include_old_rooms = xcalloc(1, sizeof(*old));
        roomsub_copy(old, d->sub.include_old_rooms);
    }
    if (d->sub.has_include_heroes) {
        m->sub.has_include_heroes = true;
        m->sub.include_heroes = d->sub.include_heroes;
    }
}

static bool list_delta_any(const struct sync_list_delta *d)
{
    return d->created || d->deleted || d->ranges_changed || d->sort_changed ||
           d->filters_changed || d->timeline_limit_changed || d->required_state_changed ||
           d->slow_get_all_rooms_changed || d->bump_event_types_changed;
}

static void merge_lists(struct sync_req *muxed, const struct sync_req *delta,
                        struct sync_req_changes *changes)
{
    for (struct sync_req_list *d = delta->lists; d; d = d->hh.next) {
        struct sync_req_list *m = sync_req_find_list(muxed, d->key);
        struct sync_list_delta out = {0};
        sync_ranges_init(&out.old_ranges);
        if (!m) {
            if (d->deleted) {
                /* The original created the list anyway; deleting
                 * a list that does not exist is a no-op here. */
                sync_ranges_release(&out.old_ranges);
                continue;
            }
            m = list_new(d->key);
            list_copy_fields(m, d);
            if (m->sort_names.n == 0) {
                /* A new list without a sort is sorted by recency. */
                strv_release(&m->sort_names);
                m->sort_names.v = xcalloc(1, sizeof(char *));
                m->sort_names.v[0] = xstrdup(sync_sort_name(SYNC_SORT_BY_RECENCY));
                m->sort_names.n = 1;
                m->sort[0] = SYNC_SORT_BY_RECENCY;
                m->n_sort = 1;
                m->sort_unknown = false;
                m->has_sort = true;
            }
            HASH_ADD_KEYPTR(hh, muxed->lists, m->key, strlen(m->key), m);
            out.created = true;
        } else if (d->deleted) {
            sync_ranges_copy(&out.old_ranges, &m->ranges);
            HASH_DEL(muxed->lists, m);
            list_free(m);
            out.deleted = true;
        } else {
            sync_ranges_copy(&out.old_ranges, &m->ranges);
            merge_list(m, d, &out);
        }
        if (changes && list_delta_any(&out)) {
            out.key = xstrdup(d->key);
            push_list_delta(changes, &out);
        } else {
            sync_ranges_release(&out.old_ranges);
        }
    }
}

static bool unsubscribing(const struct sync_req *delta, const char *room_id)
{
    for (size_t i = 0; i < delta->unsubscribe_rooms.n; i++)
        if (strcmp(delta->unsubscribe_rooms.v[i], room_id) == 0) return true;
    return false;
}

static void merge_subs(struct sync_req *muxed, const struct sync_req *delta,
                       struct sync_req_changes *changes)
{
    for (struct sync_req_sub *d = delta->room_subscriptions; d; d = d->hh.next) {
        /* Subscribed and unsubscribed in one request ends
         * unsubscribed (handled below); never (re)subscribe it here. */
        if (unsubscribing(delta, d->room_id)) continue;
        struct sync_req_sub *m = sync_req_find_sub(muxed, d->room_id);
        if (!m) {
            m = xcalloc(1, sizeof(*m));
            m->room_id = xstrdup(d->room_id);
            roomsub_copy(&m->sub, &d->sub);
            HASH_ADD_KEYPTR(hh, muxed->room_subscriptions, m->room_id, strlen(m->room_id), m);
            push_sub_delta(changes, d->room_id, SYNC_SUB_NEW, true, true);
            continue;
        }
        /* Replaced wholesale; only required_state and timeline_limit count
         * as a change (include_old_rooms / include_heroes alone do not). */
        bool rs = !required_state_equal(&m->sub, &d->sub);
        bool tl = m->sub.timeline_limit != d->sub.timeline_limit;
        roomsub_copy(&m->sub, &d->sub);
        if (rs || tl) push_sub_delta(changes, d->room_id, SYNC_SUB_CHANGED, rs, tl);
    }
    for (size_t i = 0; i < delta->unsubscribe_rooms.n; i++) {
        struct sync_req_sub *m = sync_req_find_sub(muxed, delta->unsubscribe_rooms.v[i]);
        if (!m) continue;
        push_sub_delta(changes, m->room_id, SYNC_SUB_UNSUBSCRIBED, false, false);
        HASH_DEL(muxed->room_subscriptions, m);
        sub_free(m);
    }
}

static void merge_extensions(struct sync_req *muxed, const struct sync_req *delta)
{
    if (!delta->extensions) return;
    if (!muxed->extensions) muxed->extensions = json_object();
    const char *name;
    json_t *v;
    json_object_foreach(delta->extensions, name, v)
    {
        if (json_is_null(v)) continue;
        json_t *old = json_object_get(muxed->extensions, name);
        if (!old || !json_is_object(old) || !json_is_object(v)) {
            json_object_set_new(muxed->extensions, name, json_deep_copy(v));
            continue;
        }
        const char *field_name;
        json_t *fv;
        json_object_foreach(v, field_name, fv)
        {
            if (!json_is_null(fv)) json_object_set_new(old, field_name, json_deep_copy(fv));
        }
    }
}

static char *dup_or_null(const char *s) { return s ? xstrdup(s) : NULL; }

int sync_req_merge(struct sync_req *muxed, const struct sync_req *delta,
                   struct sync_req_changes *changes)
{
    free(muxed->conn_id);
    muxed->conn_id = dup_or_null(delta->conn_id);
    free(muxed->txn_id);
    muxed->txn_id = dup_or_null(delta->txn_id);
    strv_copy(&muxed->unsubscribe_rooms, &delta->unsubscribe_rooms);
    merge_lists(muxed, delta, changes);
    merge_subs(muxed, delta, changes);
    merge_extensions(muxed, delta);
    return 0;
}

/* ---- retransmit comparison ---- */

char *sync_req_canonical_body(const char *body, size_t len)
{
    json_t *root = load_object(body, len, NULL);
    if (!root) return NULL;
    json_object_del(root, "txn_id");
    char *s = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(root);
    CHECK(s != NULL);
    /* json_dumps memory comes from malloc (jansson's default allocator), so
     * the caller's free() is right. */
    return s;
}

bool sync_req_same_body(const char *a, size_t alen, const char *b, size_t blen)
{
    char *ca = sync_req_canonical_body(a, alen);
    char *cb = sync_req_canonical_body(b, blen);
    bool same = ca && cb && strcmp(ca, cb) == 0;
    free(ca);
    free(cb);
    return same;
}
