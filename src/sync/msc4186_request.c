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

/* The room part shared by lists and subscriptions. */
static void room_config(json_t *dst, json_t *src)
{
    json_object_set_new(dst, "required_state", required_state_of(src));
    json_t *tl = json_object_get(src, "timeline_limit");
    json_object_set_new(dst, "timeline_limit", tl && !json_is_null(tl) ? json_incref(tl) : json_integer(0));
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

static json_t *list_of(json_t *src)
{
    if (!json_is_object(src)) return json_incref(src); /* rejected by the parser */
    json_t *l = json_object();
    json_t *ranges = json_object_get(src, "ranges"), *range = json_object_get(src, "range");
    if (ranges && !json_is_null(ranges)) {
        json_object_set(l, "ranges", ranges);
    } else if (json_is_array(range)) {
        json_t *rv = json_array();
        json_array_append(rv, range);
        json_object_set_new(l, "ranges", rv);
    } else {
        json_object_set_new(l, "ranges", json_array());
    }
    room_config(l, src);
    json_object_set_new(l, "filters", filters_of(src));
    json_t *sort = json_array();
    json_array_append_new(sort, json_string("by_recency"));
    json_object_set_new(l, "sort", sort);
    json_t *bump = json_array();
    for (int i = 0; i < STORE_N_BUMP; i++) json_array_append_new(bump, json_string(store_bump_types[i]));
    json_object_set_new(l, "bump_event_types", bump);
    return l;
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

int msc4186_req_translate(const char *body, size_t len, json_t **out, struct sync_req_error *err)
{
    *out = NULL;
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
    json_t *r = json_object();
    copy_field(r, root, "conn_id");
    copy_field(r, root, "txn_id");
    const char *k;
    json_t *v;
    json_t *lists = json_object_get(root, "lists");
    if (json_is_object(lists)) {
        json_t *ol = json_object();
        json_object_foreach(lists, k, v) json_object_set_new(ol, k, list_of(v));
        json_object_set_new(r, "lists", ol);
    }
    json_t *subs = json_object_get(root, "room_subscriptions");
    if (json_is_object(subs)) {
        json_t *os = json_object();
        json_object_foreach(subs, k, v)
        {
            json_t *sub = v; /* not an object: rejected by the parser */
            if (json_is_object(v)) {
                sub = json_object();
                room_config(sub, v);
            } else {
                json_incref(v);
            }
            json_object_set_new(os, k, sub);
        }
        json_object_set_new(r, "room_subscriptions", os);
    }
    json_t *exts = json_object_get(root, "extensions");
    json_t *oe = json_object();
    for (size_t i = 0; i < sizeof known_exts / sizeof *known_exts; i++)
        json_object_set_new(oe, known_exts[i], extension_of(json_object_get(exts, known_exts[i]), known_exts[i]));
    json_object_set_new(r, "extensions", oe);
    json_decref(root);
    *out = r;
    return 0;
}

int msc4186_req_parse(struct sync_req *out, json_t **translated, const char *body, size_t len,
                      struct sync_req_error *err)
{
    sync_req_init(out);
    *translated = NULL;
    json_t *t;
    int rc = msc4186_req_translate(body, len, &t, err);
    if (rc) return rc;
    char *dump = json_dumps(t, JSON_COMPACT);
    rc = sync_req_parse(out, dump, strlen(dump), err);
    free(dump);
    if (rc) {
        json_decref(t);
        return rc;
    }
    char *id = xasprintf("%s%s", MSC4186_CONN_PREFIX, out->conn_id ? out->conn_id : "");
    free(out->conn_id);
    out->conn_id = id;
    *translated = t;
    return 0;
}
