/* In-memory caches shared by all connections: room metadata (the same for
 * every user) and per-user room sets, plus the listeners (connections) to
 * wake when something changes for a user.
 *
 * Threads: only the ingest thread writes data (cache_apply,
 * cache_install_user) and evicts (when it installs a user); HTTP threads read
 * under the read lock and take the write lock only to register or remove a
 * listener (which moves the user on or off the idle list that eviction
 * takes from). Listener callbacks run on
 * the ingest thread with the write lock held: they must only queue and wake.
 * Lock order: (a connection's request lock) -> cache lock -> (a connection's
 * queue lock). Nothing blocks on the network or the database while holding
 * the cache lock. */
#ifndef SYNCV3_CACHE_CACHE_H
#define SYNCV3_CACHE_CACHE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "store/event.h"
#include "store/rooms.h"

/* Immutable, reference-counted room metadata. */
struct room_meta {
    atomic_int refs;       /* references */
    struct store_room r;   /* the facts */
};

struct room_meta *room_meta_ref(struct room_meta *m);
void room_meta_unref(struct room_meta *m);

/* What a connection is told about. */
enum cache_update_kind {
    CU_EVENT,          /* a new timeline event in a room the user is joined to, or their own membership */
    CU_UNREAD,         /* the user's unread counts of a room changed */
    CU_INVITE,         /* the user was invited to a room */
    CU_JOIN,           /* the user is joined to a room learnt from a state block */
    CU_LEAVE,          /* the user left / was kicked / banned / the invite was rejected or withdrawn */
    CU_ROOM_RESET,     /* a room's state changed without timeline events, or its timeline has a gap (gappy sync): resend it */
    CU_ACCOUNT_DATA,   /* the user's account data changed */
    CU_TO_DEVICE,      /* to-device messages arrived for device_id */
    CU_DEVICE_DATA,    /* device lists / OTK counts changed for device_id */
    CU_TYPING,         /* a room's m.typing EDU changed (json: the EDU) */
    CU_RECEIPT,        /* receipts of a room changed (json: the changed rows, see ingest) */
    CU_TXN,            /* device_id's upstream sync showed the user's own message events (json:
                        * array of [event ID, transaction ID or null]) */
};

/* One update, shared (reference-counted) by every connection it goes to. */
struct cache_update {
    atomic_int refs;            /* references */
    enum cache_update_kind kind; /* what happened */
    char *room_id;              /* the room, or NULL */
    char *device_id;            /* for device-scoped kinds, else NULL */
    struct event *ev;           /* CU_EVENT: the event (owned ref) */
    int64_t notif, highlight;   /* CU_UNREAD: the new counts */
    int64_t nid;                /* stream position this update belongs to (0 = none) */
    char *json;                 /* CU_TYPING: the EDU; CU_RECEIPT: the changed rows (ingest's
                                 * acc_ephemeral form); owned, else NULL */
    bool is_private;            /* CU_RECEIPT: m.read.private rows (the user's own) */
    struct user_room *member_ur; /* CU_EVENT of a loaded user's own membership, CU_JOIN, CU_INVITE:
                                  * that user's view of the room right after this update (ref), or
                                  * NULL when they are no longer in it. A connection judges the
                                  * update by it, not by the cache as it is when it drains. */
};

struct cache_update *cache_update_new(enum cache_update_kind kind, const char *room_id, const char *device_id);
struct cache_update *cache_update_ref(struct cache_update *u);
void cache_update_unref(struct cache_update *u);

/* A connection listening for a user's updates. on_update must not block. */
struct cache_listener {
    void (*on_update)(void *ud, struct cache_update *u); /* takes no ownership; ref what you keep */
    void *ud;                                            /* the connection */
    const char *device_id;                               /* device of the connection */
    struct cache_listener *next;                         /* list link (cache-owned) */
};

/* A user's view of one room. Immutable once in the cache and reference-
 * counted: readers (connections) hold references instead of copies, and the
 * ingest thread replaces an entry with a changed clone. */
struct user_room {
    atomic_int refs;      /* references */
    char *room_id;        /* the room */
    size_t room_id_len;   /* strlen(room_id) */
    uint32_t room_hash;   /* hash_bytes(room_id) (base/hash.h): given to the tables keyed by it */
    bool invite;          /* invited, not joined */
    int64_t join_nid;     /* start of the join span */
    int64_t join_ts;      /* its timestamp */
    int64_t notif;        /* notification_count */
    int64_t highlight;    /* highlight_count */
    bool is_dm;           /* in m.direct, or an invite with is_direct */
    char *invite_state;   /* JSON array for invites */
    int64_t invite_ts;    /* when the invite arrived */
    struct room_meta *meta; /* metadata ref (invites: NULL) */
    char **tags;          /* keys of the user's m.tag content.tags for the room (owned), or NULL */
    int n_tags;           /* entries in tags */
};

struct user_room *user_room_ref(struct user_room *r);
/* Drops a reference; NULL is a no-op. */
void user_room_unref(struct user_room *r);
/* Whether the user tagged the room with tag. */
bool user_room_has_tag(const struct user_room *r, const char *tag);

struct cache;

/* Users kept loaded by default (SYNCV3_CACHE_MAX_USERS). */
#define CACHE_DEFAULT_MAX_USERS 10000

struct cache *cache_new(void);
void cache_free(struct cache *c);
/* The bound on loaded users: past it, the least recently used users without
 * a listener are evicted when another user is loaded (ingest thread). Users
 * with a listener are never evicted, so the count can exceed the bound while
 * that many users have connections. max_users <= 0 means the default. */
void cache_set_max_users(struct cache *c, int max_users);

/* What the cache holds, for the gauges. */
struct cache_stats {
    int64_t users;          /* loaded users */
    int64_t rooms;          /* room entries (rooms some loaded user is in) */
    int64_t evictions;      /* users evicted since start */
    int64_t room_evictions; /* room entries dropped since start */
};
void cache_get_stats(struct cache *c, struct cache_stats *st);

/* ---- readers (any thread) ---- */

/* Whether the user's data is loaded. */
bool cache_user_loaded(struct cache *c, const char *user_id);
/* Whether the user is loaded; if so, they become the most recently used and
 * are not evicted for CACHE_PIN_MS or until a listener registers, whichever
 * comes first: a request that found them loaded can register its listener. */
bool cache_pin_user(struct cache *c, const char *user_id);
#define CACHE_PIN_MS 30000
/* References to the user's rooms (heap array of refs: unref each, then free)
 * and the position they reflect, and registers l (if non-NULL) in the same
 * critical section, so every later change reaches l and none before it does.
 * Returns -1 when the user is not loaded. */
int cache_snapshot_user(struct cache *c, const char *user_id, struct cache_listener *l, struct user_room ***out,
                        int *n, int64_t *pos);
void cache_unlisten(struct cache *c, const char *user_id, struct cache_listener *l);
/* A room's metadata (ref) or NULL. */
struct room_meta *cache_room(struct cache *c, const char *room_id);
/* A reference to the user's view of a room, or NULL if they are not in or
 * invited to it. */
struct user_room *cache_user_room(struct cache *c, const char *user_id, const char *room_id);
int64_t cache_position(struct cache *c);

/* ---- the ingest thread ---- */

/* Installs a freshly loaded user (rooms from the store, DM set from m.direct
 * JSON and ignored users from m.ignored_user_list JSON, each may be NULL) and the metadata of rooms not cached yet. Takes
 * ownership of rooms' and metas' contents. */
void cache_install_user(struct cache *c, const char *user_id, struct store_user_room *rooms, int n_rooms,
                        struct store_room *metas, int n_metas, const char *m_direct_json,
                        const char *ignored_json, int64_t pos);
/* Whether user_id's m.ignored_user_list names other (docs/behaviour.md, "Ignored users"). */
bool cache_user_ignores(struct cache *c, const char *user_id, const char *other);
/* Whether user_id's m.ignored_user_list names anyone (one check before many). */
bool cache_user_ignores_anyone(struct cache *c, const char *user_id);
/* Rooms among ids that are not cached (heap array of borrowed pointers into ids). */
int cache_missing_rooms(struct cache *c, const char *const *ids, int n, const char ***out);
/* Whether any loaded user is in the room (its metadata is kept fresh). */
bool cache_room_wanted(struct cache *c, const char *room_id);

/* A membership from a state block. */
struct cache_member {
    const char *room_id;     /* the room */
    const char *user_id;     /* the member */
    const char *membership;  /* content.membership */
    int64_t nid;             /* the member event */
    int64_t ts;              /* its timestamp */
};

/* The polling user's new m.tag room account data for one room. */
struct cache_tags {
    const char *room_id;   /* the room */
    const char *tags_json; /* the m.tag event JSON (borrowed), or NULL for no tags */
};

/* One applied v2 response, for cache_apply. */
struct cache_changes {
    const char *user_id;              /* the polling user */
    const char *device_id;            /* the polling device */
    struct store_room *metas;         /* fresh metadata of touched rooms (ownership taken) */
    int n_metas;                      /* entries */
    struct event **events;            /* new timeline events, NID order (borrowed) */
    int n_events;                     /* entries */
    struct cache_member *members;     /* memberships learnt from state blocks (borrowed) */
    int n_members;                    /* entries */
    const char **reset_rooms;         /* rooms whose state changed outside the timeline, or whose timeline has a gap */
    int n_reset;                      /* entries */
    struct cache_update **room_updates; /* updates for every loaded user joined to their room (ownership taken) */
    int n_room_updates;               /* entries */
    struct cache_update **user_updates; /* updates for the polling user (ownership taken) */
    int n_user_updates;               /* entries */
    struct store_user_room *invites;  /* the polling user's invites (ownership taken) */
    int n_invites;                    /* entries */
    const char *m_direct_json;        /* new m.direct content, or NULL */
    const char *ignored_json;         /* new m.ignored_user_list event, or NULL */
    struct cache_tags *tags;          /* the polling user's changed room tags (borrowed); each room's
                                       * listeners get a CU_ACCOUNT_DATA carrying the room ID */
    int n_tags;                       /* entries */
    int64_t pos;                      /* highest NID now stored */
};

/* Applies changes and notifies listeners. */
void cache_apply(struct cache *c, struct cache_changes *ch);
/* Notifies a user's listeners (filtered by device when device_id is set). Takes ownership of u. */
void cache_notify_user(struct cache *c, const char *user_id, struct cache_update *u);

#endif
