/* A stored room event as the rest of syncv3 sees it: immutable once built,
 * reference-counted because one event is shared by every connection it is
 * delivered to. */
#ifndef SYNCV3_STORE_EVENT_H
#define SYNCV3_STORE_EVENT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event {
    atomic_int refs;       /* references; freed when it drops to 0 */
    int64_t nid;           /* stream position (0 = not from the timeline stream) */
    char *event_id;        /* $... */
    char *room_id;         /* !... */
    char *type;            /* event type */
    char *state_key;       /* NULL for message events */
    char *sender;          /* user ID of the sender ("" when absent) */
    char *membership;      /* content.membership for m.room.member, else NULL */
    int64_t ts;            /* origin_server_ts */
    char *json;            /* the event's JSON, served as is */
    size_t json_len;       /* strlen(json) */
};

/* Takes copies of every string; json_len may be 0 to use strlen. refs = 1. */
struct event *event_new(int64_t nid, const char *event_id, const char *room_id, const char *type,
                        const char *state_key, const char *sender, const char *membership, int64_t ts,
                        const char *json, size_t json_len);
struct event *event_ref(struct event *e);
/* Drops a reference; NULL is a no-op. Aborts on underflow. */
void event_unref(struct event *e);

#endif
