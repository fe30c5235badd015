/* MSC4186 request bodies; see msc4186_request.h. */
#include "sync/msc4186_request.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "store/bump.h"

/* The extensions this server knows; each is written explicitly, so an
 * extension the body leaves out is switched off. */
static const char *const known_exts[] = {"to_device", "e2ee", "account_data", "typing", "receipts"};

static int fail(struct sync_req_error *err, int code, const char *fmt, ...)
{
    if (err) {
        err->code = code;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
    }
    return code;
}

/* Copies key from src into dst when present (not null). */
static void copy_field(json_t *dst, json_t *src, const char *key)
{
    json_t *v = json_object_get(src, key);
    if (v && !json_is_null(v)) json_object_set(dst, key, v);
}

/* required_state as given, or [] when absent; a ["*","*"] entry stands for
 * all state, whatever else is listed (no exclusions, as Synapse). */
static json_t *required_state_of(json_t *room)
{
    json_t *rs = json_object_get(room, "required_state");
    if (!rs || json_is_null(rs)) return json_array();
    if (!json_is_array(rs)) return json_incref(rs); /* rejected by the parser */
    size_t i;
    json_t *p;
    json_array_foreach(rs, i, p)
    {
        const char *t = json_string_value(json_array_get(p, 0)), *k = json_string_value(json_array_get(p, 1));
        if (json_is_array(p) && json_array_size(p) == 2 && t && k && strcmp(t, "*") == 0 && strcmp(k, "*") == 0) {
            json_t *all = json_array();
            json_array_append(all, p);
            return all;
        }
    }
    return json_incref(rs);
}

/* A pair [type, key] appended to arr. */
static void push_pair(json_t *arr, const char *type, const char *key)
{
    json_array_append_new(arr, json_pack("[ss]", type, key));
}

/* The {"type"?, "state_key"?} of an include/exclude element; an omitted (or
 * null) one is "*". Returns 0 or an error. */
static int element_of(json_t *el, const char *where, const char **type, const char **key,
                      struct sync_req_error *err)
{
    if (!json_is_object(el))
        return fail(err, SYNC_REQ_ERR_BAD_JSON, "%srequired_state.include/exclude entries must be objects", where);
    json_t *t = json_object_get(el, "type"), *k = json_object_get(el, "state_key");
    if ((t && !json_is_null(t) && !json_is_string(t)) || (k && !json_is_null(k) && !json_is_string(k)))
        return fail(err, SYNC_REQ_ERR_BAD_JSON, "%srequired_state: type and state_key must be strings", where);
    *type = json_is_string(t) ? json_string_value(t) : RS_WILDCARD;
    *key = json_is_string(k) ? json_string_value(k) : RS_WILDCARD;
    return 0;
}

/* The final text's object form {"include": [...], "exclude": [...],
 * "lazy_members": bool} as pairs: includes as they are ({} = ["*","*"],
 * which then stands alone as in the tuple form), exclusions with the
 * RS_EXCLUDE type prefix, lazy_members as ["m.room.member","$LAZY"] unless
 * an include asks for every membership and no exclusion touches members
 * (then the members are all sent anyway). */
static int required_state_object(json_t *rs, const char *where, json_t **out, struct sync_req_error *err)
{
    *out = NULL;
    json_t *inc = json_object_get(rs, "include"), *exc = json_object_get(rs, "exclude");
    json_t *lazy = json_object_get(rs, "lazy_members");
    if ((inc && !json_is_null(inc) && !json_is_array(inc)) || (exc && !json_is_null(exc) && !json_is_array(exc)))
        return fail(err, SYNC_REQ_ERR_BAD_JSON, "%srequired_state.include and .exclude must be arrays", where);
    if (lazy && !json_is_null(lazy) && !json_is_boolean(lazy))
        return fail(err, SYNC_REQ_ERR_BAD_JSON, "%srequired_state.lazy_members must be a boolean", where);
    json_t *pairs = json_array(), *excl = json_array();
    int rc = 0;
    bool all = false, all_members = false, members_excluded = false;
    size_t i;
    json_t *el;
    const char *t, *k;
    json_array_foreach(inc, i, el)
    {
        if ((rc = element_of(el, where, &t, &k, err))) goto bad;
        bool wt = strcmp(t, RS_WILDCARD) == 0, wk = strcmp(k, RS_WILDCARD) == 0;
        all |= wt && wk;
        all_members |= wk && (wt || strcmp(t, "m.room.member") == 0);
        push_pair(pairs, t, k);
    }
    json_array_foreach(exc, i, el)
    {
        if ((rc = element_of(el, where, &t, &k, err))) goto bad;
        members_excluded |= strcmp(t, RS_WILDCARD) == 0 || strcmp(t, "m.room.member") == 0;
        char *xt = xasprintf("%s%s", RS_EXCLUDE, t);
        push_pair(excl, xt, k);
        free(xt);
    }
    if (all) {
        json_array_clear(pairs);
        push_pair(pairs, RS_WILDCARD, RS_WILDCARD);
    }
    if (json_is_true(lazy) && !(all_members && !members_excluded)) push_pair(pairs, "m.room.member", RS_LAZY);
    json_array_extend(pairs, excl);
    json_decref(excl);
    *out = pairs;
    return 0;
bad:
    json_decref(pairs);
    json_decref(excl);
    return rc;
}

/* The room part shared by lists and subscriptions; an object-form
 * required_state makes the request a final-text one (*final). */
static int room_config(json_t *dst, json_t *src, const char *where, bool *final, struct sync_req_error *err)
{
    json_t *rs = json_object_get(src, "required_state");
    if (json_is_object(rs)) {
        json_t *pairs;
        int rc = required_state_object(rs, where, &pairs, err);
        if (rc) return rc;
        *final = true;
        json_object_set_new(dst, "required_state", pairs);
    } else {
        json_object_set_new(dst, "required_state", required_state_of(src));
    }
    json_t *tl = json_object_get(src, "timeline_limit");
    json_object_set_new(dst, "timeline_limit", tl && !json_is_null(tl) ? json_incref(tl) : json_integer(0));
    return 0;
}

static json_t *filters_of(json_t *list)
{
    json_t *f = json_object_get(list, "filters");
    if (!f || json_is_null(f)) return json_object();
    if (!json_is_object(f)) return json_incref(f); /* rejected by the parser */
    json_t *out = json_deep_copy(f);
    json_t *inv = json_object_get(out, "is_invited");
    if (inv && !json_object_get(out, "is_invite")) json_object_set(out, "is_invite", inv);
    json_object_del(out, "is_invited");
    return out;
}

static int list_of(json_t *src, const char *key, json_t **out, bool *final, struct sync_req_error *err)
{
    *out = NULL;
    if (!json_is_object(src)) {
        *out = json_incref(src); /* rejected by the parser */
        return 0;
    }
    json_t *l = json_object();
    json_t *ranges = json_object_get(src, "ranges"), *range = json_object_get(src, "range");
    if (ranges && !json_is_null(ranges)) {
        json_object_set(l, "ranges", ranges);
    } else if (range && !json_is_null(range)) {
        json_t *rv = json_array();
        json_array_append(rv, range); /* a malformed range is rejected by the parser */
        json_object_set_new(l, "ranges", rv);
        *final = true;
    } else {
        json_object_set_new(l, "ranges", json_array());
    }
    char *where = xasprintf("lists[%s].", key);
    int rc = room_config(l, src, where, final, err);
    free(where);
    if (rc) {
        json_decref(l);
        return rc;
    }
    json_object_set_new(l, "filters", filters_of(src));
    json_t *sort = json_array();
    json_array_append_new(sort, json_string("by_recency"));
    json_object_set_new(l, "sort", sort);
    json_t *bump = json_array();
    for (int i = 0; i < STORE_N_BUMP; i++) json_array_append_new(bump, json_string(store_bump_types[i]));
    json_object_set_new(l, "bump_event_types", bump);
    *out = l;
    return 0;
}

static json_t *extension_of(json_t *src, const char *name)
{
    json_t *e = json_object();
    bool scoped = strcmp(name, "to_device") != 0 && strcmp(name, "e2ee") != 0;
    json_t *en = json_is_object(src) ? json_object_get(src, "enabled") : NULL;
    json_object_set(e, "enabled", en && !json_is_null(en) ? en : json_false());
    if (!json_is_object(src)) return e;
    if (scoped) {
        for (int i = 0; i < 2; i++) {
            const char *k = i ? "rooms" : "lists";
            json_t *v = json_object_get(src, k);
            if (v && !json_is_null(v)) {
                json_object_set(e, k, v);
            } else {
                json_t *star = json_array();
                json_array_append_new(star, json_string("*"));
                json_object_set_new(e, k, star);
            }
        }
    }
    if (strcmp(name, "to_device") == 0) {
        copy_field(e, src, "since");
        copy_field(e, src, "limit");
    }
    return e;
}

bool msc4186_presence_valid(const char *v)
{
    return strcmp(v, "online") == 0 || strcmp(v, "offline") == 0 || strcmp(v, "unavailable") == 0;
}

void msc4186_top_release(struct msc4186_top *t)
{
    free(t->pos);
    *t = (struct msc4186_top){0};
}

/* pos, timeout and set_presence of the body (final text) into top. */
static int top_of(json_t *root, struct msc4186_top *top, struct sync_req_error *err)
{
    json_t *pos = json_object_get(root, "pos"), *timeout = json_object_get(root, "timeout");
    json_t *presence = json_object_get(root, "set_presence");
    if (pos && !json_is_null(pos)) {
        if (!json_is_string(pos)) return fail(err, SYNC_REQ_ERR_INVALID_PARAM, "pos must be a string");
        if (top) top->pos = xstrdup(json_string_value(pos));
    }
    if (timeout && !json_is_null(timeout)) {
        if (!json_is_integer(timeout))
            return fail(err, SYNC_REQ_ERR_INVALID_PARAM, "timeout must be an integer (milliseconds)");
        if (top) {
            top->has_timeout = true;
            top->timeout = json_integer_value(timeout);
        }
    }
    if (presence && !json_is_null(presence) &&
        (!json_is_string(presence) || !msc4186_presence_valid(json_string_value(presence))))
        return fail(err, SYNC_REQ_ERR_INVALID_PARAM, "set_presence must be online, offline or unavailable");
    return 0;
}

int msc4186_req_translate(const char *body, size_t len, json_t **out, struct msc4186_top *top,
                          struct sync_req_error *err)
{
    *out = NULL;
    if (top) *top = (struct msc4186_top){0};
    json_error_t je;
    json_t *root = len ? json_loadb(body, len, JSON_REJECT_DUPLICATES, &je) : json_object();
    if (!root) return fail(err, SYNC_REQ_ERR_BAD_JSON, "request body is not valid JSON: %s", je.text);
    if (!json_is_object(root)) {
        json_decref(root);
        return fail(err, SYNC_REQ_ERR_BAD_JSON, "request body must be a JSON object");
    }
    /* The three maps: absent or null, else an object. */
    static const char *const maps[] = {"lists", "room_subscriptions", "extensions"};
    for (size_t i = 0; i < sizeof maps / sizeof *maps; i++) {
        json_t *m = json_object_get(root, maps[i]);
        if (m && !json_is_null(m) && !json_is_object(m)) {
            json_decref(root);
            return fail(err, SYNC_REQ_ERR_BAD_JSON, "%s must be an object", maps[i]);
        }
    }
    json_t *subs = json_object_get(root, "room_subscriptions");
    if (json_object_size(subs) > MSC4186_MAX_SUBSCRIPTIONS) {
        json_decref(root);
        return fail(err, SYNC_REQ_ERR_INVALID_PARAM, "more than %d room_subscriptions", MSC4186_MAX_SUBSCRIPTIONS);
    }
    int rc = top_of(root, top, err);
    bool final = json_is_string(json_object_get(root, "pos"));
    json_t *r = json_object();
    copy_field(r, root, "conn_id");
    copy_field(r, root, "txn_id");
    const char *k;
    json_t *v;
    json_t *lists = json_object_get(root, "lists");
    if (rc == 0 && json_is_object(lists)) {
        json_t *ol = json_object();
        json_object_set_new(r, "lists", ol);
        json_object_foreach(lists, k, v)
        {
            json_t *l;
            if ((rc = list_of(v, k, &l, &final, err))) break;
            json_object_set_new(ol, k, l);
        }
    }
    if (rc == 0 && json_is_object(subs)) {
        json_t *os = json_object();
        json_object_set_new(r, "room_subscriptions", os);
        json_object_foreach(subs, k, v)
        {
            json_t *sub = v; /* not an object: rejected by the parser */
            if (json_is_object(v)) {
                sub = json_object();
                if ((rc = room_config(sub, v, "room_subscriptions[].", &final, err))) {
                    json_decref(sub);
                    break;
                }
            } else {
                json_incref(v);
            }
            json_object_set_new(os, k, sub);
        }
    }
    json_t *exts = json_object_get(root, "extensions");
    json_t *oe = json_object();
    for (size_t i = 0; i < sizeof known_exts / sizeof *known_exts; i++)
        json_object_set_new(oe, known_exts[i], extension_of(json_object_get(exts, known_exts[i]), known_exts[i]));
    json_object_set_new(r, "extensions", oe);
    if (final) json_object_set_new(r, MSC4186_FINAL_KEY, json_true());
    json_decref(root);
    if (rc) {
        json_decref(r);
        if (top) msc4186_top_release(top);
        return rc;
    }
    if (top) top->final = final;
    *out = r;
    return 0;
}

bool msc4186_req_final(json_t *translated)
{
    return json_is_true(json_object_get(translated, MSC4186_FINAL_KEY));
}

char *msc4186_req_canonical(json_t *translated)
{
    json_t *c = json_copy(translated);
    json_object_del(c, "txn_id");
    char *s = json_dumps(c, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(c);
    return s;
}

int msc4186_req_parse(struct sync_req *out, json_t **translated, struct msc4186_top *top, const char *body,
                      size_t len, struct sync_req_error *err)
{
    sync_req_init(out);
    *translated = NULL;
    json_t *t;
    int rc = msc4186_req_translate(body, len, &t, top, err);
    if (rc) return rc;
    char *dump = json_dumps(t, JSON_COMPACT);
    rc = sync_req_parse(out, dump, strlen(dump), err);
    free(dump);
    if (rc) {
        json_decref(t);
        if (top) msc4186_top_release(top);
        return rc;
    }
    char *id = xasprintf("%s%s", MSC4186_CONN_PREFIX, out->conn_id ? out->conn_id : "");
    free(out->conn_id);
    out->conn_id = id;
    *translated = t;
    return 0;
}
