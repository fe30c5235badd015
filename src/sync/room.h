/* Building room objects (docs/behaviour.md, "Room object") for a response: snapshots loaded
 * from the caches and the store in a few batched queries, and live updates.
 * Room JSON is written by hand so stored event JSON is spliced in as is. */
#ifndef SYNCV3_SYNC_ROOM_H
#define SYNCV3_SYNC_ROOM_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>
#include "base/hash.h"

#include "base/buf.h"
#include "cache/cache.h"
#include "store/rooms.h"
#include "sync/required_state.h"

/* The combined subscription a room snapshot is built with (docs/behaviour.md, "Combined subscriptions"). */
struct room_params {
    int64_t timeline_limit;     /* max timeline events (0..50) */
    struct rs_pair *rs;         /* required_state pairs, concatenated from every source (owned;
                                 * their strings live in blocks) */
    size_t n_rs;                /* entries in rs */
    bool include_heroes;        /* any source asked for heroes */
    char **blocks;              /* the strings of rs, one allocation per room_params_add (owned) */
    size_t n_blocks;            /* entries in blocks */
};

/* A transaction ID to show on one of the user's own events (docs/behaviour.md, "Transaction IDs"). */
struct resp_txn {
    const char *event_id;       /* the event (borrowed from the room's events) */
    char *txn_id;               /* owned */
};

/* One room of a response being built. */
struct resp_room {
    char *room_id;              /* key, owned */
    bool snapshot;              /* send a full object (initial: true), or load one for a delta */
    bool delta;                 /* MSC4186: loaded like a snapshot, sent as what changed since tl_after */
    bool expanded;              /* MSC4186 delta: the timeline limit grew, timeline re-sent whole */
    int64_t tl_after;           /* a snapshot's timeline holds only events after this position (0 = from the
                                 * join; a delta not expanded then cuts it back after loading) */
    struct room_params params;  /* for snapshots */
    struct user_room *ur;       /* the user's view of the room (ref), or NULL */
    struct event **live;        /* live events to append (owned refs), NID order */
    size_t n_live;              /* entries in live */
    int num_live;               /* live events processed for this room */
    bool counts_changed;        /* unread counts changed */
    char *live_name;            /* live update: the room's new name (owned), NULL = unchanged */
    bool avatar_changed;        /* live update: the avatar changed (live_avatar, NULL = removed) */
    bool member_counts_changed; /* live update: joined or invited count changed (values from ur->meta) */
    char *live_avatar;          /* the new avatar (owned) */
    struct store_tl tl;         /* snapshot timeline (filled by room_load) */
    struct store_tl state;      /* required_state (filled by room_load): a snapshot's, or a live
                                 * update's lazily loaded members */
    bool lazy;                  /* snapshot built with ["m.room.member","$LAZY"] (set by room_load) */
    char **lazy_need;           /* live update: senders whose member events to add (owned) */
    size_t n_lazy_need;         /* entries in lazy_need */
    size_t n_lazy_loaded;       /* of which were loaded into state already */
    int64_t timestamp;          /* "Timestamps" value to send, 0 = none (see room_load) */
    struct resp_txn *txns;      /* this device's transaction IDs for timeline events (owned) */
    size_t n_txns;              /* entries in txns */
    UT_hash_handle hh;          /* in the response's room table */
};

/* Adds a source's subscription to params (max timeline, union of state, OR heroes). */
void room_params_add(struct room_params *p, int64_t timeline_limit, const struct rs_pair *rs, size_t n_rs,
                     bool include_heroes);
void room_params_release(struct room_params *p);
/* MSC4186 (as Synapse): a ["*","*"] pair from any source means all state, so
 * when one is there it becomes the only pair (the others would restrict
 * their types, as in MSC3575), but for exclusions (RS_EXCLUDE) and, when
 * there are exclusions, ["m.room.member","$LAZY"]. */
void room_params_all_state_wins(struct room_params *p);
void resp_room_free(struct resp_room *r);

/* Loads timelines and required_state of every snapshot room in rooms (a
 * uthash table) at stream position pos, in two round trips, plus the member
 * events live updates need (lazy_need) in one more. With bump types (the
 * union of the connection's bump_event_types), a joined snapshot's timestamp
 * is its newest event of those types after the user's join, at least the
 * join's time (docs/behaviour.md, "Timestamps"), one more round trip. Returns 0 or -1 with *err (heap). */
int room_load(PGconn *c, const char *user_id, int64_t pos, struct resp_room *rooms, const char *const *bump,
              int n_bump, char **err);

/* Loads the member events of every room's lazy_need not loaded yet,
 * appending them to its state (one round trip). Returns 0 or -1. */
int room_load_lazy(PGconn *c, int64_t pos, struct resp_room *rooms, char **err);

/* Appends a JSON array of the events evs then more (either may be empty),
 * each as stored or with the transaction ID r holds for it (r may be NULL). */
void room_write_events(struct buf *b, struct event *const *evs, size_t n, struct event *const *more, size_t n_more,
                       const struct resp_room *r);

/* Appends the JSON object of r to b. */
void room_write_json(struct buf *b, const char *user_id, const struct resp_room *r);

/* The name the user sees for a room (heap), from its metadata or invite state. */
char *room_display_name(const char *user_id, const struct user_room *ur);
/* The avatar the user sees (heap) or NULL: m.room.avatar, else a DM's only other member's. */
char *room_display_avatar(const char *user_id, const struct user_room *ur);

#endif
