#include "store/event.h"

#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"

static char *dup_opt(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

struct event *event_new(int64_t nid, const char *event_id, const char *room_id, const char *type,
                        const char *state_key, const char *sender, const char *membership, int64_t ts,
                        const char *json, size_t json_len)
{
    struct event *e = xcalloc(1, sizeof *e);
    atomic_init(&e->refs, 1);
    e->nid = nid;
    e->event_id = xstrdup(event_id ? event_id : "");
    e->room_id = xstrdup(room_id ? room_id : "");
    e->type = xstrdup(type ? type : "");
    e->state_key = dup_opt(state_key);
    e->sender = xstrdup(sender ? sender : "");
    e->membership = dup_opt(membership);
    e->ts = ts;
    if (!json_len) json_len = strlen(json);
    e->json = xstrndup(json, json_len);
    e->json_len = json_len;
    return e;
}

struct event *event_ref(struct event *e)
{
    atomic_fetch_add(&e->refs, 1);
    return e;
}

void event_unref(struct event *e)
{
    if (!e) return;
    int before = atomic_fetch_sub(&e->refs, 1);
    CHECK(before > 0);
    if (before != 1) return;
    free(e->event_id);
    free(e->room_id);
    free(e->type);
    free(e->state_key);
    free(e->sender);
    free(e->membership);
    free(e->json);
    free(e);
}
