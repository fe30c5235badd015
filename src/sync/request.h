/* Sliding-sync request bodies (docs/behaviour.md, "Request parsing", "Request body"): parsing, validation, the sticky
 * merge into a connection's state, and body comparison for retransmits.
 *
 * A struct sync_req is used two ways: as one parsed request ("delta"), where
 * every has_* flag says whether the client specified the field, and as a
 * connection's accumulated ("muxed") state, built by sync_req_merge. All
 * strings and arrays are owned by the struct holding them. Not thread-safe;
 * a request belongs to one connection. */
#ifndef SYNCV3_SYNC_REQUEST_H
#define SYNCV3_SYNC_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include "base/hash.h"

#include "sync/list.h"
#include "sync/ranges.h"
#include "sync/required_state.h"

/* Limits. The first two are the spec's (docs/behaviour.md, "Limits"); the rest keep a request's
 * memory bounded (the original enforced none of them). */
#define SYNC_REQ_MAX_CONN_ID 16           /* bytes */
#define SYNC_REQ_MAX_TXN_ID 64            /* bytes */
#define SYNC_REQ_MAX_LISTS 100            /* lists per request */
#define SYNC_REQ_MAX_LIST_KEY 64          /* bytes of a list key */
#define SYNC_REQ_MAX_RANGES 100           /* ranges per list */
#define SYNC_REQ_MAX_SUBSCRIPTIONS 1000   /* room_subscriptions and unsubscribe_rooms entries */
#define SYNC_REQ_MAX_REQUIRED_STATE 500   /* entries of one required_state */
#define SYNC_REQ_MAX_OLD_ROOMS_DEPTH 8    /* nested include_old_rooms */
#define SYNC_REQ_MAX_SORT 16              /* sort entries */
#define SYNC_REQ_MAX_STRINGS 1000         /* entries of bump_event_types and filter arrays */
#define SYNC_REQ_MAX_TIMELINE_LIMIT 1000  /* larger timeline_limit values are capped (Synapse rejects them) */
/* A timeline_limit up to SYNC_REQ_TIMELINE_FREE is taken whatever the windows; above it, a list's
 * limit is lowered so that its windows ask for at most SYNC_REQ_TIMELINE_BUDGET events (and the
 * same for a request's room subscriptions together), keeping a response's timelines within what
 * the former cap of 50 allowed for a window of 200 rooms (docs/behaviour.md, "Limits"). */
#define SYNC_REQ_TIMELINE_FREE 50
#define SYNC_REQ_TIMELINE_BUDGET 10000
#define SYNC_REQ_MAX_INT 9007199254740992 /* 2^53: larger integers are rejected */

/* Error codes of sync_req_parse. */
enum sync_req_err {
    SYNC_REQ_ERR_BAD_JSON = -1,      /* not JSON / not an object / wrong type: M_BAD_JSON */
    SYNC_REQ_ERR_INVALID_PARAM = -2, /* well-typed but not acceptable: M_INVALID_PARAM */
};

struct sync_req_error {
    int code;          /* an enum sync_req_err */
    char message[256]; /* human-readable, names the offending field */
};

/* "M_BAD_JSON" or "M_INVALID_PARAM" for an enum sync_req_err. */
const char *sync_req_errcode(int code);

/* A boolean that may be unspecified. */
enum sync_tri {
    SYNC_TRI_UNSET, /* absent or null: no filtering on this criterion */
    SYNC_TRI_FALSE, /* false */
    SYNC_TRI_TRUE,  /* true */
};

/* An owned array of owned strings. */
struct sync_strv {
    char **v; /* entries; may be NULL only where a field says so */
    size_t n; /* number of entries */
};

/* List filters (docs/behaviour.md, "Filters"). Each array has a has_* flag: absent/null = no
 * filtering, while [] is specified (and filters accordingly). */
struct sync_filters {
    enum sync_tri is_dm;              /* docs/behaviour.md, "DM rooms" */
    enum sync_tri is_encrypted;       /* has m.room.encryption */
    enum sync_tri is_invite;          /* user invited, not joined */
    enum sync_tri is_tombstoned;      /* has a tombstone with a replacement */
    char *room_name_like;             /* substring of the name; NULL if absent or "" */
    bool has_tags;                    /* tags given */
    struct sync_strv tags;            /* room has at least one of these */
    bool has_not_tags;                /* not_tags given */
    struct sync_strv not_tags;        /* room has none of these */
    bool has_room_types;              /* room_types given */
    struct sync_strv room_types;      /* create type in these; NULL entry = no type */
    bool has_not_room_types;          /* not_room_types given */
    struct sync_strv not_room_types;  /* create type not in these; NULL entry = no type */
    bool has_spaces;                  /* spaces given */
    struct sync_strv spaces;          /* child of one of these spaces */
};

/* A RoomSubscription (docs/behaviour.md, "Request body"); also the room part of a list. */
struct sync_roomsub {
    bool has_required_state;             /* required_state given (an [] counts) */
    struct rs_pair *required_state;      /* the pairs, in request order */
    size_t n_required_state;             /* entries in required_state */
    int64_t timeline_limit;              /* 0..SYNC_REQ_MAX_TIMELINE_LIMIT; 0 = not specified (docs/behaviour.md, "Sticky parameters") */
    struct sync_roomsub *include_old_rooms; /* NULL = not specified */
    bool has_include_heroes;             /* include_heroes given */
    bool include_heroes;                 /* its value */
};

/* One entry of `lists` (docs/behaviour.md, "Request body"). */
struct sync_req_list {
    char *key;                        /* the list key, owned; also the hash key */
    struct sync_roomsub sub;          /* required_state, timeline_limit, ... */
    bool has_ranges;                  /* ranges given (an [] counts) */
    struct sync_ranges ranges;        /* validated windows, request order */
    bool has_sort;                    /* sort given (an [] counts) */
    struct sync_strv sort_names;      /* sort as sent */
    enum sync_sort sort[SYNC_REQ_MAX_SORT]; /* the known names of sort_names, in order */
    size_t n_sort;                    /* entries in sort */
    bool sort_unknown;                /* sort_names had a name we do not know (skipped) */
    bool has_filters;                 /* filters given */
    struct sync_filters filters;      /* parsed filters */
    char *filters_json;               /* canonical JSON of the filters object; NULL if absent */
    bool has_slow_get_all_rooms;      /* slow_get_all_rooms given */
    bool slow_get_all_rooms;          /* its value */
    bool has_bump_event_types;        /* bump_event_types given (an [] counts) */
    struct sync_strv bump_event_types; /* event types that bump recency */
    bool deleted;                     /* "deleted": true (never set in merged state) */
    UT_hash_handle hh;                /* in sync_req.lists, request order */
};

/* One entry of `room_subscriptions`. */
struct sync_req_sub {
    char *room_id;           /* owned; also the hash key */
    struct sync_roomsub sub; /* the subscription */
    UT_hash_handle hh;       /* in sync_req.room_subscriptions */
};

struct sync_req {
    char *conn_id;                           /* NULL if absent (not sticky) */
    char *txn_id;                            /* NULL if absent (not sticky) */
    struct sync_req_list *lists;             /* uthash by key */
    struct sync_req_sub *room_subscriptions; /* uthash by room ID */
    struct sync_strv unsubscribe_rooms;      /* room IDs (not sticky) */
    json_t *extensions;                      /* the extensions object, owned ref; NULL if absent */
};

void sync_req_init(struct sync_req *r);
void sync_req_release(struct sync_req *r);

/* Parses and validates a request body of len bytes (len 0 = "{}"). On
 * success returns 0 with *out filled (out must be freshly initialised or
 * released; it is initialised here). On failure returns an enum sync_req_err,
 * fills *err (may be NULL) and leaves *out empty (released). */
int sync_req_parse(struct sync_req *out, const char *body, size_t len, struct sync_req_error *err);

/* Looks up a list / subscription by key; NULL if absent. */
struct sync_req_list *sync_req_find_list(const struct sync_req *r, const char *key);
struct sync_req_sub *sync_req_find_sub(const struct sync_req *r, const char *room_id);

/* What a merge changed for one list. */
struct sync_list_delta {
    char *key;                      /* list key, owned */
    bool created;                   /* new list (no other flag set) */
    bool deleted;                   /* deleted by "deleted": true (no other flag set) */
    bool ranges_changed;            /* ranges differ; old_ranges holds the previous ones */
    struct sync_ranges old_ranges;  /* ranges before the merge (valid for every entry) */
    bool sort_changed;              /* sort names differ element-wise */
    bool filters_changed;           /* canonical filters JSON differs */
    bool timeline_limit_changed;    /* non-zero timeline_limit that differs */
    bool required_state_changed;    /* required_state pairs differ (order-sensitive) */
    bool slow_get_all_rooms_changed; /* flag value changed */
    bool bump_event_types_changed;  /* bump_event_types differ */
};

enum sync_sub_change {
    SYNC_SUB_NEW,          /* not subscribed before */
    SYNC_SUB_CHANGED,      /* required_state or timeline_limit differs */
    SYNC_SUB_UNSUBSCRIBED, /* was subscribed, now removed */
};

/* What a merge changed for one room subscription. */
struct sync_sub_delta {
    char *room_id;               /* owned */
    enum sync_sub_change change; /* kind of change */
    bool required_state_changed; /* for SYNC_SUB_CHANGED (both set for NEW) */
    bool timeline_limit_changed; /* for SYNC_SUB_CHANGED (both set for NEW) */
};

struct sync_req_changes {
    struct sync_list_delta *lists; /* changed lists, in processing order */
    size_t n_lists;                /* entries in lists */
    struct sync_sub_delta *subs;   /* changed subscriptions */
    size_t n_subs;                 /* entries in subs */
};

void sync_req_changes_init(struct sync_req_changes *c);
void sync_req_changes_release(struct sync_req_changes *c);
/* The entry for list `key`, or NULL if it did not change. */
const struct sync_list_delta *sync_req_changes_list(const struct sync_req_changes *c,
                                                    const char *key);

/* Applies `delta` (a parsed request) onto `muxed` (a connection's sticky
 * state) following docs/behaviour.md, "Sticky parameters", and appends what changed to *changes (may be NULL).
 * Deviations from the original, as the spec recommends:
 *  - `deleted: true` on a list that does not exist creates nothing;
 *  - a room both subscribed and unsubscribed in one request ends
 *    unsubscribed (and is reported only if it was subscribed before).
 * Extensions are merged shallowly per extension name: a null/absent entry
 * keeps the previous value, otherwise every non-null field replaces the
 * previous one (extension-specific rules are left to the extension code).
 * conn_id, txn_id and unsubscribe_rooms are copied into muxed as "the last
 * request's" values. Sorting: unknown sort names are skipped (the original
 * disabled the whole sort), and `sort: []` on an existing list is reported as
 * a sort change and then orders by_recency (sync_list_set_sort with n == 0)
 * instead of freezing the order (see ARCHITECTURE.md, "Decisions that differ"). Always returns 0. */
int sync_req_merge(struct sync_req *muxed, const struct sync_req *delta,
                   struct sync_req_changes *changes);

/* Canonical form of a body for retransmit detection (docs/behaviour.md, "Positions and retransmits"): the JSON with
 * keys sorted, compact, and the top-level txn_id removed. len 0 = "{}".
 * Returns a heap string, or NULL if the body is not a JSON object. */
char *sync_req_canonical_body(const char *body, size_t len);
/* Whether two bodies are "the same ignoring txn_id". Invalid JSON is never
 * the same as anything. */
bool sync_req_same_body(const char *a, size_t alen, const char *b, size_t blen);

#endif
