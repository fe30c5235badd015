/* Read side of room data: what the caches load and what room snapshots need. */
#ifndef SYNCV3_STORE_ROOMS_H
#define SYNCV3_STORE_ROOMS_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

#include "store/bump.h"
#include "store/event.h"

#define STORE_MAX_HEROES 6

struct store_hero {
    char *user_id;     /* member */
    char *displayname; /* content.displayname or NULL */
    char *avatar_url;  /* content.avatar_url or NULL */
};

/* Room-wide facts, the same for every user. */
struct store_room {
    char *room_id;         /* the room */
    char *name;            /* m.room.name or NULL */
    char *canonical_alias; /* m.room.canonical_alias or NULL */
    char *avatar;          /* m.room.avatar url or NULL */
    char *room_type;       /* create content.type or NULL */
    char *predecessor;     /* create content.predecessor.room_id or NULL */
    char *upgraded;        /* tombstone replacement_room or NULL */
    bool encrypted;        /* has had m.room.encryption */
    int64_t joined_count;  /* joined members */
    int64_t invited_count; /* invited members */
    int64_t latest_nid;    /* newest event */
    int64_t latest_ts;     /* its origin_server_ts */
    struct store_hero heroes[STORE_MAX_HEROES]; /* the earliest joined/invited members, in the order they
                                                 * joined or were invited (profile changes keep it) */
    int n_heroes;          /* entries used in heroes */
    struct store_bump bump; /* newest timeline event of each MSC4186 bump type */
};

/* A room a user is in (joined) or invited to. */
struct store_user_room {
    char *room_id;         /* the room */
    bool invite;           /* invited, not joined */
    int64_t join_nid;      /* start of the current join span (0 for invites) */
    int64_t join_ts;       /* origin_server_ts of that join */
    char *invite_state;    /* JSON array for invites, else NULL */
    int64_t invite_ts;     /* when the invite was seen */
    int64_t notif;         /* notification_count */
    int64_t highlight;     /* highlight_count */
    char *tags_json;       /* the user's m.tag account data event for the room (JSON), or NULL */
};

void store_room_release(struct store_room *r);
/* Makes dst a deep copy of src (release it with store_room_release). */
void store_room_copy(struct store_room *dst, const struct store_room *src);
void store_user_room_release(struct store_user_room *r);

/* Highest NID stored. Returns 0 and sets *pos, or -1. */
int store_max_nid(PGconn *c, int64_t *pos, char **err);
/* Rooms the user is joined or invited to, with unread counts. *out heap array. */
int store_user_rooms(PGconn *c, const char *user_id, struct store_user_room **out, int *n, char **err);
/* Room metadata for the given rooms (missing rooms are skipped). */
int store_rooms_get(PGconn *c, const char *const *room_ids, int n_ids, struct store_room **out, int *n,
                    char **err);
/* For each room (after_nids[i]: the user's join), the newest origin_server_ts
 * among the latest timeline events of each of the types, between after_nid
 * (exclusive) and pos (inclusive); 0 where there is none. ts_out[i] answers
 * room_ids[i]. */
int store_latest_of_types(PGconn *c, const char *const *room_ids, const int64_t *after_nids, int n_rooms,
                          const char *const *types, int n_types, int64_t pos, int64_t *ts_out, char **err);
/* The transaction IDs a device's own upstream sync showed for some events:
 * txn_out[i] (heap, or NULL when none) answers event_ids[i]. */
int store_txn_ids(PGconn *c, const char *user_id, const char *device_id, const char *const *event_ids, int n,
                  char **txn_out, char **err);
/* Forgets transaction IDs recorded before cutoff_ms (wall clock); returns the
 * number of rows removed or -1. */
int64_t store_txn_ids_purge(PGconn *c, int64_t cutoff_ms, char **err);
/* The user's global m.direct content (heap JSON) or NULL when none. */
int store_account_data_get(PGconn *c, const char *user_id, const char *room_id, const char *type, char **json,
                           char **err);

/* A timeline window request for one room. */
struct store_tl_req {
    const char *room_id; /* the room */
    int64_t from_nid;    /* oldest visible position (inclusive) */
    int64_t to_nid;      /* newest position (inclusive) */
    int limit;           /* most events wanted (<= 50) */
};

/* Result for one room: events oldest first, and the token to paginate back. */
struct store_tl {
    struct event **events; /* owned refs */
    int n;                 /* entries */
    char *prev_batch;      /* heap or NULL */
    bool limited;          /* older visible events exist, or the oldest follows a gap */
};

/* Loads the newest events of several rooms in one round trip. out[i] answers
 * reqs[i]; a timeline never reaches back past a gap (missing_previous). */
int store_timelines(PGconn *c, const struct store_tl_req *reqs, int n, struct store_tl *out, char **err);
void store_tl_release(struct store_tl *t);

/* State of several rooms at position pos, limited to events matching any of
 * the (type, state_key) patterns ("*" matches anything). Returns events
 * grouped by room in out (parallel to room_ids), ascending position.
 * large: a room may have many members (store_room_large, or not known);
 * then only the members the patterns name are read, which costs a little
 * more for small rooms than one scan of each room's state. */
int store_state_at(PGconn *c, const char *const *room_ids, int n_rooms, bool large, int64_t pos,
                   const char *const *types, const char *const *keys, int n_patterns, struct store_tl *out,
                   char **err);

/* Rooms with more joined and invited members than this are read without
 * the members nobody asked for (store_state_at). Members who left still have
 * state rows; they are not counted. */
#define STORE_LARGE_ROOM_MEMBERS 100

static inline bool store_room_large(const struct store_room *m)
{
    return m && m->joined_count + m->invited_count > STORE_LARGE_ROOM_MEMBERS;
}

#endif
