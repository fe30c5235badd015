/* Applies one parsed /sync v2 response to the database in one transaction:
 * the accumulator (events stored once, room state intervals, rooms' derived
 * columns, redactions, invites) and everything else the response carries
 * (account data, unread counts, receipts, typing, to-device messages, device
 * lists, one-time-key counts, fallback key types, transaction ids) and the
 * device's next since token. Either all of it is stored or none of it, so a
 * to-device message is never lost nor stored twice.
 *
 * Rules (see ARCHITECTURE.md, "The accumulator"):
 * - an event is stored once per event_id; a timeline keeps only the events
 *   after the last one already known;
 * - a room must begin with an m.room.create event (in the state block, or in
 *   the timeline when the homeserver put it there); stray events for unknown
 *   rooms are ignored;
 * - the first new event of a limited timeline is marked missing_previous;
 * - an invite is retired as soon as the user's membership in the room's state
 *   is anything but invite. */
#ifndef SYNCV3_INGEST_ACCUMULATE_H
#define SYNCV3_INGEST_ACCUMULATE_H

#include <jansson.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

#include "store/event.h"

/* A membership learnt from a state block (not the timeline). */
struct acc_member {
    char *user_id;          /* state_key */
    char *membership;       /* content.membership */
    int64_t nid;            /* the member event */
    int64_t ts;             /* its origin_server_ts */
};

/* What changed in one room. */
struct acc_room {
    struct acc_member *members; /* memberships from the state block, in order (owned) */
    size_t n_members;       /* entries in members */
    char *room_id;          /* the room */
    struct event **events;  /* new timeline events in NID order (owned refs) */
    size_t n_events;        /* entries in events */
    bool state_changed;     /* current state changed (metadata must be reloaded) */
    bool state_reset;       /* a state block changed state of a room already known (gappy sync) */
    bool gap;               /* a room already known got a timeline that starts after unknown history */
    bool is_new;            /* the room was first stored by this response */
};

/* An unread-count change for the polling user. */
struct acc_unread {
    char *room_id;          /* the room */
    bool has_notif;         /* notification_count was present */
    bool has_highlight;     /* highlight_count was present */
    int64_t notif;          /* notification_count */
    int64_t highlight;      /* highlight_count */
};

/* Typing and receipt changes of one room (docs/behaviour.md, "Ordering and de-duplication"). Receipts are a
 * compact JSON array of rows [user_id, thread_id ("" = unthreaded),
 * event_id, ts], only the rows whose event changed. */
struct acc_ephemeral {
    char *room_id;          /* the room */
    char *typing;           /* the new m.typing EDU (compact JSON), NULL = unchanged */
    char *receipts;         /* changed public receipts, NULL = none */
    char *receipts_private; /* the polling user's changed m.read.private receipts, NULL = none */
};

/* Everything a response changed, for the caches and connections. */
/* One of the polling user's own message events as this device's sync showed it. */
struct acc_own {
    char *event_id;             /* owned */
    char *txn_id;               /* unsigned.transaction_id (owned), or NULL: sent from elsewhere */
};

struct acc_result {
    struct acc_room *rooms;     /* rooms with new events or state */
    size_t n_rooms;             /* entries in rooms */
    struct acc_unread *unread;  /* unread-count changes of the polling user */
    size_t n_unread;            /* entries in unread */
    char **invites;             /* rooms the polling user is (newly or still) invited to */
    size_t n_invites;           /* entries in invites */
    char **leaves;              /* rooms the polling user left or whose invite was rejected/withdrawn */
    struct event **leave_events; /* per leaves entry: the user's own leave/ban event, or NULL (owned refs) */
    size_t n_leaves;            /* entries in leaves */
    int n_to_device;            /* to-device messages stored */
    int n_account_data;         /* account data events stored */
    bool device_data_changed;   /* otk counts, fallback types or device lists changed */
    int n_events;               /* new events stored (all rooms) */
    int n_typing;               /* typing EDUs that changed */
    int n_receipts;             /* receipt rows changed */
    struct acc_ephemeral *ephemeral; /* rooms whose typing or receipts changed */
    size_t n_ephemeral;         /* entries in ephemeral */
    struct acc_own *own_seen;   /* the polling user's own message events in this response's
                                 * timelines, new or known, with their transaction IDs */
    size_t n_own_seen;          /* entries in own_seen */
};

/* Last-seen E2EE values of one poller, to forward only changes. */
struct acc_e2ee_memo {
    char *otk_json;             /* last device_one_time_keys_count (compact JSON) or NULL */
    char *fallback_json;        /* last device_unused_fallback_key_types or NULL when absent */
};

/* Applies body (a /sync response object) for (user_id, device_id) and stores
 * next_batch as the device's since, in one transaction on c. memo is read and,
 * after a successful commit, updated. On success fills *out (release with
 * acc_result_release) and returns 0. Returns -1 with *err (heap) on a database
 * error (nothing stored; the caller retries the same response later). Events
 * that are malformed are skipped with a warning, never an error. */
int acc_apply(PGconn *c, const char *user_id, const char *device_id, json_t *body, const char *next_batch,
              struct acc_e2ee_memo *memo, struct acc_result *out, char **err);
void acc_result_release(struct acc_result *r);
void acc_e2ee_memo_release(struct acc_e2ee_memo *m);

/* Parses a response's rooms and events exactly as acc_apply does, without a
 * database, and returns how many events would be considered. For the fuzz
 * driver and tests. */
size_t acc_parse_only(json_t *body);

#endif
