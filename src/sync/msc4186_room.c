/* MSC4186 room objects; see msc4186_room.h. */
#include "sync/msc4186_room.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* bump_stamp is an unsigned integer JSON numbers hold exactly: a hostile
 * origin_server_ts is clamped into that range. */
#define MAX_STAMP 9007199254740991LL

struct writer {
    struct buf *b; /* output */
    bool first;    /* no key written yet */
};

static void key(struct writer *w, const char *k)
{
    buf_printf(w->b, "%s\"%s\":", w->first ? "" : ",", k);
    w->first = false;
}

/* A string field; nothing at all for NULL or "". */
static void put_str(struct writer *w, const char *k, const char *v)
{
    if (!v || !*v) return;
    key(w, k);
    buf_json_str(w->b, v, strlen(v));
}

static void put_int(struct writer *w, const char *k, int64_t v)
{
    key(w, k);
    buf_printf(w->b, "%lld", (long long)v);
}

static int64_t clamp_stamp(int64_t ts)
{
    return ts < 0 ? 0 : ts > MAX_STAMP ? MAX_STAMP : ts;
}

/* heroes of a joined room without an m.room.name: its earliest members but
 * the user, at most MSC4186_MAX_HEROES. */
static void put_heroes(struct writer *w, const char *user_id, const struct store_room *m)
{
    if (m->name && *m->name) return;
    int n = 0;
    for (int i = 0; i < m->n_heroes && n < MSC4186_MAX_HEROES; i++) {
        const struct store_hero *h = &m->heroes[i];
        if (!h->user_id || strcmp(h->user_id, user_id) == 0) continue;
        if (n++ == 0) {
            key(w, "heroes");
            buf_putc(w->b, '[');
        } else {
            buf_putc(w->b, ',');
        }
        struct writer hw = {w->b, true};
        buf_putc(w->b, '{');
        put_str(&hw, "user_id", h->user_id);
        put_str(&hw, "displayname", h->displayname);
        put_str(&hw, "avatar_url", h->avatar_url);
        buf_putc(w->b, '}');
    }
    if (n) buf_putc(w->b, ']');
}

/* content.<field> of the stripped state event of type (state key "") when it
 * is a string, else NULL. Borrowed from arr. */
static const char *stripped_str(json_t *arr, const char *type, const char *field)
{
    size_t i;
    json_t *ev;
    json_array_foreach(arr, i, ev)
    {
        const char *t = json_string_value(json_object_get(ev, "type"));
        const char *sk = json_string_value(json_object_get(ev, "state_key"));
        if (t && sk && !*sk && strcmp(t, type) == 0)
            return json_string_value(json_object_get(json_object_get(ev, "content"), field));
    }
    return NULL;
}

static void write_invite(struct writer *w, const struct resp_room *r, bool final)
{
    json_t *arr = r->ur->invite_state ? json_loads(r->ur->invite_state, 0, NULL) : NULL;
    if (!json_is_array(arr)) {
        json_decref(arr);
        arr = json_array();
    }
    /* Only events ruma can read: objects with a string type and state key. */
    for (size_t i = json_array_size(arr); i-- > 0;) {
        json_t *ev = json_array_get(arr, i);
        if (!json_is_string(json_object_get(ev, "type")) || !json_is_string(json_object_get(ev, "state_key")))
            json_array_remove(arr, i);
    }
    put_str(w, "name", stripped_str(arr, "m.room.name", "name"));
    put_str(w, "avatar", stripped_str(arr, "m.room.avatar", "url"));
    key(w, final ? "stripped_state" : "invite_state");
    char *s = json_dumps(arr, JSON_COMPACT);
    buf_puts(w->b, s ? s : "[]");
    free(s);
    json_decref(arr);
    key(w, "initial");
    buf_puts(w->b, "true");
    if (r->ur->is_dm) {
        key(w, "is_dm");
        buf_puts(w->b, "true");
    }
    put_int(w, "bump_stamp", clamp_stamp(r->ur->invite_ts));
}

/* Whether the live events hold a state event of type with state key "". */
static bool live_has_state(const struct resp_room *r, const char *type)
{
    for (size_t i = 0; i < r->n_live; i++)
        if (r->live[i]->state_key && !*r->live[i]->state_key && strcmp(r->live[i]->type, type) == 0) return true;
    return false;
}

static bool live_has_member(const struct resp_room *r)
{
    for (size_t i = 0; i < r->n_live; i++)
        if (r->live[i]->membership) return true;
    return false;
}

static void write_required_state(struct writer *w, const struct resp_room *r, struct event *const *extra,
                                 size_t n_extra)
{
    if (!r->state.n && !n_extra) return;
    key(w, "required_state");
    room_write_events(w->b, r->state.events, (size_t)r->state.n, extra, n_extra, NULL);
}

static void write_snapshot(struct writer *w, const char *user_id, const struct resp_room *r, const struct store_room *m)
{
    if (m) {
        put_str(w, "name", m->name);
        put_str(w, "avatar", m->avatar);
        put_heroes(w, user_id, m);
    }
    key(w, "initial");
    buf_puts(w->b, "true");
    if (r->ur->is_dm) {
        key(w, "is_dm");
        buf_puts(w->b, "true");
    }
    write_required_state(w, r, NULL, 0);
    key(w, "timeline");
    room_write_events(w->b, r->tl.events, (size_t)r->tl.n, NULL, 0, r);
    if (r->params.timeline_limit > 0) {
        key(w, "limited");
        buf_puts(w->b, r->tl.limited ? "true" : "false");
    }
    put_str(w, "prev_batch", r->tl.prev_batch);
    put_int(w, "num_live", r->num_live);
    put_int(w, "bump_stamp", clamp_stamp(r->timestamp));
    put_int(w, "joined_count", m ? m->joined_count : 0);
    put_int(w, "invited_count", m ? m->invited_count : 0);
}

/* A string field that is null when the value is gone (ruma reads null as
 * "removed" for the avatar and as absent for the name; the final text of
 * the MSC says null for both). */
static void put_str_or_null(struct writer *w, const char *k, const char *v)
{
    key(w, k);
    if (v && *v)
        buf_json_str(w->b, v, strlen(v));
    else
        buf_puts(w->b, "null");
}

static void write_delta(struct writer *w, const char *user_id, const struct resp_room *r, const struct store_room *m,
                        const struct msc4186_changes *ch, bool final)
{
    if (m && ch && ch->name) put_str_or_null(w, "name", m->name);
    if (m && ch && ch->avatar) put_str_or_null(w, "avatar", m->avatar);
    bool members = m && ch && ch->members;
    if (members) put_heroes(w, user_id, m);
    write_required_state(w, r, NULL, 0);
    if (r->tl.n || r->expanded) {
        key(w, "timeline");
        room_write_events(w->b, r->tl.events, (size_t)r->tl.n, NULL, 0, r);
        /* An expanded timeline is always limited: it does not continue the
         * client's timeline, it replaces it, and a client that does not know
         * unstable_expanded_timeline (matrix-js-sdk) files the older events
         * as back-pagination only for a limited or initial room
         * (docs/behaviour.md, "Re-sending a room"). */
        key(w, "limited");
        buf_puts(w->b, r->tl.limited || r->expanded ? "true" : "false");
        put_str(w, "prev_batch", r->tl.prev_batch);
        put_int(w, "num_live", r->num_live);
        if (r->expanded) {
            key(w, final ? "expanded_timeline" : "unstable_expanded_timeline");
            buf_puts(w->b, "true");
        }
        put_int(w, "bump_stamp", clamp_stamp(r->timestamp));
    }
    if (members) {
        put_int(w, "joined_count", m->joined_count);
        put_int(w, "invited_count", m->invited_count);
    }
}

static void write_live(struct writer *w, const char *user_id, const struct resp_room *r, const struct store_room *m,
                       struct event *const *live_state, size_t n_live_state)
{
    if (m && live_has_state(r, "m.room.name")) put_str_or_null(w, "name", m->name);
    if (m && live_has_state(r, "m.room.avatar")) put_str_or_null(w, "avatar", m->avatar);
    bool members = r->member_counts_changed || live_has_member(r);
    if (m && members) put_heroes(w, user_id, m);
    write_required_state(w, r, live_state, n_live_state);
    if (r->n_live) {
        key(w, "timeline");
        room_write_events(w->b, NULL, 0, r->live, r->n_live, r);
        key(w, "limited");
        buf_puts(w->b, "false");
        put_int(w, "num_live", r->num_live);
    }
    if (r->timestamp) put_int(w, "bump_stamp", clamp_stamp(r->timestamp));
    if (m && members) {
        put_int(w, "joined_count", m->joined_count);
        put_int(w, "invited_count", m->invited_count);
    }
}

/* membership and lists (final text; clients of the deployed one ignore them). */
static void write_out(struct writer *w, const struct msc4186_out *out)
{
    put_str(w, "membership", out->membership);
    if (!out->n_lists) return;
    key(w, "lists");
    buf_putc(w->b, '[');
    for (size_t i = 0; i < out->n_lists; i++) {
        if (i) buf_putc(w->b, ',');
        buf_json_str(w->b, out->lists[i], strlen(out->lists[i]));
    }
    buf_putc(w->b, ']');
}

void msc4186_room_write(struct buf *b, const char *user_id, const struct resp_room *r, struct event *const *live_state,
                        size_t n_live_state, bool dm_changed, const struct msc4186_changes *ch,
                        const struct msc4186_out *out)
{
    struct writer w = {b, true};
    buf_putc(b, '{');
    const struct store_room *m = r->ur && r->ur->meta ? &r->ur->meta->r : NULL;
    if (r->snapshot && r->ur && r->ur->invite) {
        write_invite(&w, r, out->final);
        /* The final text has no unread counts; an invite's are 0. */
        if (!out->final) {
            put_int(&w, "notification_count", 0);
            put_int(&w, "highlight_count", 0);
        }
        write_out(&w, out);
        buf_putc(b, '}');
        return;
    }
    if (r->delta && r->ur)
        write_delta(&w, user_id, r, m, ch, out->final);
    else if (r->snapshot && r->ur)
        write_snapshot(&w, user_id, r, m);
    else
        write_live(&w, user_id, r, m, live_state, n_live_state);
    if (dm_changed && r->ur) {
        key(&w, "is_dm");
        buf_puts(b, r->ur->is_dm ? "true" : "false");
    }
    if (!out->final) {
        int64_t notif = r->ur ? r->ur->notif : 0, highlight = r->ur ? r->ur->highlight : 0;
        put_int(&w, "notification_count", notif);
        put_int(&w, "highlight_count", highlight);
    }
    write_out(&w, out);
    buf_putc(b, '}');
}
