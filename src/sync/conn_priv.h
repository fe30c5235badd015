/* Internals shared by the files of the connection module (conn.c: life
 * cycle, queue, response bookkeeping; conn_view.c: the connection's view of
 * the user's rooms, filters, sort keys, windows and applying a request;
 * conn_live.c: folding live updates into a response; conn_finish.c: building
 * the response). Not for use outside src/sync/conn*.c. */
#ifndef SYNCV3_SYNC_CONN_PRIV_H
#define SYNCV3_SYNC_CONN_PRIV_H

#include "sync/conn.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "base/hash.h"

#include "base/alloc.h"
#include "base/clock.h"
#include "base/log.h"
#include "base/ufold.h"
#include "cache/cache.h"
#include "http/server.h"
#include "obs/metrics.h"
#include "store/db.h"
#include "sync/ext.h"
#include "sync/list.h"
#include "sync/ops.h"
#include "sync/room.h"

/* A user whose member event this connection has sent for a room. */
struct lazy_member {
    char *user_id;         /* owned; hash key */
    UT_hash_handle hh;     /* in croom.lazy_sent */
};

/* The connection's view of one of the user's rooms. */
struct croom {
    struct user_room *ur;  /* the cache's view (ref); ur->room_id is the hash key */
    char *name;            /* computed name (heap), built on first use */
    bool lazy;             /* last snapshot asked for lazy members: live senders get theirs */
    struct lazy_member *lazy_sent; /* members already sent (never cleared; behaviour.md "Lazy members") */
    int64_t ts;            /* timestamp last sent under bump_event_types (docs/behaviour.md, "Timestamps") */
    int64_t bump;          /* recency in conn.bump_list, when has_bump */
    bool has_bump;         /* bump is set */
    bool in_block;         /* part of conn.room_block, not allocated alone */
    UT_hash_handle hh;     /* in conn.rooms */
};

/* A room's recency in a list with bump_event_types (docs/behaviour.md, "Recency and bump_event_types"). */
struct bump_ts {
    int64_t ts;            /* origin_server_ts of its newest bumping event */
    UT_hash_handle hh;     /* in clist.bump */
    char room_id[];        /* the room (hash key), allocated with the entry */
};

/* A list's sorted rooms. */
struct clist {
    char *key;             /* list key (owned) */
    struct sync_list *l;   /* the rooms */
    struct bump_ts *bump;  /* room -> recency, for lists with bump_event_types */
    char *bump_block;      /* the entries load_bump made, one allocation (NULL: none) */
    size_t bump_block_len; /* its size in bytes */
    UT_hash_handle hh;     /* in conn.lists */
};

/* The children of a space named in a `spaces` filter (docs/behaviour.md, "Filters"). */
struct cspace {
    char *space_id;                /* the space (owned; hash key) */
    struct sync_roomset children;  /* state keys of its m.space.child events with an array `via` */
    UT_hash_handle hh;             /* in conn.spaces */
};

/* What all connections of one user share: the count their queues hold. */
struct conn_user {
    char *user_id;                 /* owned; hash key */
    atomic_int refs;               /* the map's entry + one per connection */
    atomic_int queued;             /* updates in the queues of the user's connections */
    UT_hash_handle hh;             /* in conn_map.users */
};

struct conn {
    char *key;                     /* "user|device|conn_id" (map key) */
    char *user_id;                 /* owner */
    char *device_id;               /* device */
    char *conn_id;                 /* client-chosen id ("" allowed) */
    atomic_int refs;               /* map + requests in flight */
    struct sync_ctx *ctx;          /* shared services */
    pthread_mutex_t req_lock;      /* serialises requests of this connection */
    /* --- under req_lock --- */
    bool loaded;                   /* the user's rooms were loaded and the listener registered */
    bool msc4186;                  /* speaks MSC4186: nothing sticky, responses in its shape */
    struct m4186_sent *m4186_sent; /* MSC4186: what each room was last sent as (conn_msc4186.c) */
    bool m4186_final;              /* MSC4186: the request being answered is of the final text (its names) */
    struct conn_persist *persist;  /* MSC4186: its stored state across restarts (conn_persist.c), or NULL */
    struct sync_req muxed;         /* sticky request state */
    struct ext_state ext;          /* the extensions' sticky state */
    struct clist *lists;           /* key -> sorted rooms */
    struct croom *rooms;           /* room_id -> view */
    struct croom *room_block;      /* the views load_rooms made, one allocation */
    struct clist *bump_list;       /* the list with bump_event_types whose per-room recency is kept in
                                    * the rooms (croom.bump) instead of its own table; NULL: none */
    struct cspace *spaces;         /* spaces named by filters -> their children, kept live */
    int64_t pos;                   /* stream position the view reflects */
    int64_t next_pos;              /* last pos handed out */
    int64_t last_req_pos;          /* pos of the last processed request (0 = none) */
    char *last_req_body;           /* its canonical body */
    struct conn_buffered buffered[CONN_MAX_BUFFERED]; /* unacknowledged responses, oldest first */
    int n_buffered;                /* entries used */
    struct cache_listener listener; /* registered with the cache while loaded */
    struct conn_user *cu;          /* the user's shared counts (ref), set when it enters the map */
    /* --- under q_lock --- */
    pthread_mutex_t q_lock;        /* guards the fields below */
    struct cache_update **queue;   /* live updates not processed yet */
    int q_n;                       /* entries */
    int q_cap;                     /* allocated */
    bool dead;                     /* ended; requests get M_UNKNOWN_POS */
    enum conn_end_reason end_reason; /* why, once dead */
    bool listening;                /* the listener is registered with the cache: whoever ends the
                                    * connection must unregister it before its memory can go */
    struct http_req *waiter;       /* parked request (ref'd) or NULL */
    int64_t cancels;               /* times a parked request was cancelled by a newer one */
    int64_t last_used_ms;          /* for idle expiry */
    UT_hash_handle hh;             /* in conn_map */
};

struct conn_map {
    pthread_mutex_t lock;          /* guards conns */
    struct conn *conns;            /* key -> connection (one ref each) */
    struct conn_user *users;       /* user_id -> shared counts (one ref each; unused ones purged by expiry) */
    struct sync_ctx *ctx;          /* shared services */
};

struct resp_list {
    char *key;                     /* list key */
    struct sync_ops ops;           /* ops of this response */
    UT_hash_handle hh;             /* in conn_resp.lists */
};

/* One of the user's own events waiting for its transaction ID (docs/behaviour.md, "Transaction IDs"). */
struct held_txn {
    char *event_id;                /* owned */
    int64_t until_ms;              /* monotonic time after which the response stops waiting */
};

/* An own event this device's upstream sync showed, and its transaction ID. */
struct txn_seen {
    char *event_id;                /* owned; hash key */
    char *txn_id;                  /* owned, or NULL: sent from another device */
    UT_hash_handle hh;             /* in conn_resp.txns */
};

struct conn_resp {
    struct resp_list *lists;       /* key -> ops */
    struct resp_room *rooms;       /* room_id -> room object */
    struct ext_resp *ext;          /* extension data */
    bool initial;                  /* the connection's first request */
    int64_t from_pos;              /* MSC4186: the connection's position when the request came */
    struct held_txn *held;         /* own events this device's sync has not shown yet */
    int n_held;                    /* entries */
    struct txn_seen *txns;         /* own events this device's sync showed (CU_TXN) */
};

/* How long a response waits for the sender device's own sync to show an
 * event's transaction ID (docs/behaviour.md, "Transaction IDs"). */
#define CONN_TXN_WAIT_MS 1000

/* ---- conn_msc4186.c ---- */

/* Frees what an MSC4186 connection remembers of the rooms it sent. */
void conn_msc4186_release(struct conn *c);
/* Before loading: the response's rooms the client already has (joined,
 * under the same join) are to be loaded as deltas (resp_room.delta), and so
 * are live updates with more events than the room's timeline_limit; a grown
 * timeline_limit re-sends the timeline whole (resp_room.expanded). */
void conn_msc4186_prepare(struct conn *c, struct conn_resp *resp);
/* After loading: a delta keeps of its state what the client lacks. */
void conn_msc4186_trim(struct conn *c, struct conn_resp *resp);

/* ---- conn_persist.c ---- */

void conn_persist_release(struct conn *c);
/* The first response after a restore: rooms left meanwhile get the user's
 * membership event (rooms the client has go as deltas like any re-sent
 * room, conn_msc4186_prepare). Returns 0 or -1. */
int conn_persist_catch_up(struct conn *c, struct conn_resp *resp, char **err);
/* On response completion (pos assigned, before it is sent): stores what
 * changed. Returns 0, or -1 when it could not (the response must not go).
 * A new connection's first response is the exception: it is stored by
 * conn_persist_flush after it was sent. */
int conn_persist_save(struct conn *c, struct conn_resp *resp, int64_t pos, char **err);
/* Writes the state a sent first response left unstored, if any (request
 * lock held; conn_lock and conn_settle call it). A failure only logs. */
void conn_persist_flush(struct conn *c);

/* ---- conn.c ---- */

/* Takes n updates off the queue's count (q_lock not needed). */
void conn_queued_sub(struct conn *c, int n);

/* Forgets a list's per-room recency under bump_event_types. */
void conn_bump_clear(struct conn *c, struct clist *l);
void conn_clist_free(struct conn *c, struct clist *l);
/* An own message event is shown with its transaction ID once this device's
 * upstream sync has shown it (a CU_TXN, right after the event when this
 * device's poller stored it; later when another poller did): until then the
 * response waits, at most CONN_TXN_WAIT_MS. */
void conn_hold_for_txn(struct conn *c, struct conn_resp *r, const struct cache_update *u);
/* This device's sync showed these own events ([event ID, transaction ID or
 * null] pairs): remember their IDs and stop waiting for them. */
void conn_record_txns(struct conn_resp *r, const char *json);
struct sync_ops *conn_resp_ops(struct conn_resp *r, const char *key);
struct resp_room *conn_resp_room_get(struct conn *c, struct conn_resp *r, const char *room_id);
void conn_add_snapshot(struct conn *c, struct conn_resp *r, const char *room_id, const struct sync_roomsub *sub);
void conn_add_snapshots(struct conn *c, struct conn_resp *r, struct sync_roomset *set,
                          const struct sync_roomsub *sub);

/* ---- conn_view.c ---- */

bool conn_joined(struct conn *c, const char *room_id);
/* Message events of users the syncing user ignores are not shown
 * (state events are). */
bool conn_ignored_message(struct conn *c, const struct event *ev);
bool conn_has_bump_types(const struct sync_req_list *rl);
void conn_bump_set(struct conn *c, struct clist *cl, struct croom *cr, int64_t ts);
struct sync_req_list *conn_muxed_list(struct conn *c, const char *key);
/* Points the room at a new view (taking the caller's reference). The hash
 * key is the view's room ID string, so the entry is re-keyed. */
void conn_croom_set(struct conn *c, struct croom *cr, struct user_room *ur);
/* The room's computed name (built when first needed: most connections never
 * sort or filter by name). */
const char *conn_croom_name(struct conn *c, struct croom *cr);
struct croom *conn_croom_add(struct conn *c, struct user_room *ur);
void conn_croom_del(struct conn *c, struct croom *cr);
/* Frees a view that is in no hash any more (conn_croom_del without the unlinking). */
void conn_croom_release(struct croom *cr);
bool conn_lazy_sent(const struct croom *cr, const char *user_id);
void conn_lazy_mark(struct croom *cr, const char *user_id);
/* Whether the room is inside a window of the list (every room is, for
 * slow_get_all_rooms). rl may be NULL (a list being deleted). */
bool conn_in_window(const struct clist *cl, const struct sync_req_list *rl, const char *room_id);
bool conn_visible(struct conn *c, const char *room_id);
/* Whether a source that shows the room (its subscription, or a list whose
 * window holds it) asks for heroes: include_heroes is ORed (docs/behaviour.md, "Combined subscriptions"). */
bool conn_wants_heroes(struct conn *c, const char *room_id);
/* Re-evaluates one room in every list after its data changed (or it was
 * added/removed), emitting live ops and snapshots. force_snapshot: a join. */
void conn_relist_room(struct conn *c, struct conn_resp *r, const char *room_id, bool force_snapshot);
bool conn_strv_has(const struct sync_strv *v, const char *s);
struct ext_env conn_ext_env_of(struct conn *c, const struct conn_resp *r);
/* Whether an m.space.child event's content has an array `via` (event JSON). */
bool conn_child_event_valid(const char *json);
/* Reads the children of k spaces as of the connection's position: the state
 * keys of their m.space.child events with an array `via`. out[i] (initialised
 * by the caller) answers ids[i]. */
int conn_read_space_children(struct conn *c, const char *const *ids, int k, struct sync_roomset *out, char **err);

#endif
