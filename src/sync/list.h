/* The sorted room array behind one sliding-sync list (docs/behaviour.md, "Live ops", "Sorts").
 *
 * A struct sync_list holds every room matching the list's filters (not just
 * the window), in sort order, each with the sort keys it was last given.
 * Filtering is the caller's business: the list only orders what it is told.
 *
 * Order: the list's sort criteria in order (docs/behaviour.md, "Sorts"), then ascending room ID
 * (bytewise) as a final tie-break. The original left fully tied rooms in
 * arbitrary hash-map order; the MSC asks for a deterministic tie-break, and
 * it keeps the live ops (ops.h) reproducible, so we always apply it. The
 * order is therefore total and a room's position is a pure function of the
 * keys of all rooms.
 *
 * Not thread-safe: a list belongs to one connection. */
#ifndef SYNCV3_SYNC_LIST_H
#define SYNCV3_SYNC_LIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Known sort names (docs/behaviour.md, "Sorts"). */
enum sync_sort {
    SYNC_SORT_BY_RECENCY,              /* "by_recency": newest activity first */
    SYNC_SORT_BY_NAME,                 /* "by_name": canonical name ascending */
    SYNC_SORT_BY_NOTIFICATION_LEVEL,   /* "by_notification_level": 4 groups */
    SYNC_SORT_BY_NOTIFICATION_COUNT,   /* "by_notification_count": descending */
    SYNC_SORT_BY_HIGHLIGHT_COUNT,      /* "by_highlight_count": descending */
};

/* Most sort criteria a list applies; later ones are ignored (only 5 exist). */
#define SYNC_LIST_MAX_SORT 16

/* Parses a sort name; returns 0, or -1 for an unknown name. */
int sync_sort_parse(const char *name, enum sync_sort *out);
/* The wire name of s (static string). */
const char *sync_sort_name(enum sync_sort s);

/* Sort keys of one room, as passed in by the caller (borrowed for the call). */
struct sync_list_keys {
    const char *room_id;        /* the room */
    size_t room_id_len;         /* strlen(room_id), with hash given; 0: both computed here */
    uint32_t hash;              /* hash_bytes(room_id, room_id_len) (base/hash.h) when room_id_len is set */
    int64_t recency;            /* per-list activity timestamp (ms) */
    const char *name;           /* computed room name; NULL = "" (pass it when the sort uses by_name) */
    int64_t notification_count; /* unread notifications */
    int64_t highlight_count;    /* unread highlights */
    bool encrypted;             /* room is encrypted (for by_notification_level) */
};

/* One room in the list; owned by the list. */
struct sync_list_room {
    char *room_id;              /* the room: stored with the entry or in its block, owned by the list */
    int64_t recency;            /* by_recency key */
    char *name_key;             /* by_name key: roomname_sort_key() of the name, owned */
    int64_t notification_count; /* by_notification_count / level key */
    int64_t highlight_count;    /* by_highlight_count / level key */
    size_t index;               /* current position in the list */
    uint32_t hash;              /* hash of room_id: its place in the index */
    bool encrypted;             /* by_notification_level key */
    bool in_block;              /* allocated in a block of sync_list_upsert_many, not on its own */
};

struct sync_list_block;

struct sync_list {
    struct sync_list_room **v;               /* rooms in sort order, owned */
    size_t n;                                /* number of rooms */
    size_t cap;                              /* allocated slots in v */
    struct sync_list_room **slots;           /* index by room_id: open addressing, linear probing, NULL = free */
    size_t n_slots;                          /* size of slots: 0 or a power of two, at least 2 * n */
    struct sync_list_block *blocks;          /* the bulk allocations of sync_list_upsert_many */
    enum sync_sort sort[SYNC_LIST_MAX_SORT]; /* criteria, most significant first */
    size_t n_sort;                           /* used entries of sort */
};

/* An empty list sorted by_recency. Free with sync_list_free (NULL is fine). */
struct sync_list *sync_list_new(void);
void sync_list_free(struct sync_list *l);
/* Removes every room; keeps the sort. */
void sync_list_clear(struct sync_list *l);

/* Sets the sort criteria (copied; at most SYNC_LIST_MAX_SORT used) and
 * re-sorts. An empty array means by_recency: the spec's default for a new
 * list, and also what we use for `sort: []` on an existing list, where the
 * original would stop ordering the list at all (docs/behaviour.md, "Sticky parameters"). */
void sync_list_set_sort(struct sync_list *l, const enum sync_sort *sort, size_t n);

static inline size_t sync_list_count(const struct sync_list *l) { return l->n; }
/* Room ID at index i (valid until the list next changes), or NULL if i is
 * out of bounds. */
const char *sync_list_room_at(const struct sync_list *l, int64_t i);
/* Position of room_id, or -1 if absent. */
int64_t sync_list_index_of(const struct sync_list *l, const char *room_id);
/* The stored entry for room_id or NULL; valid until the list next changes. */
const struct sync_list_room *sync_list_get(const struct sync_list *l, const char *room_id);

/* Adds the room or updates its keys, moving it to its sorted position.
 * *from = its index before (-1 if it was absent), *to = its index after.
 * Either out pointer may be NULL. */
void sync_list_upsert(struct sync_list *l, const struct sync_list_keys *k, int64_t *from,
                      int64_t *to);
/* Removes the room. Returns 0 with *from = its former index (may be NULL),
 * or -1 if it was not in the list. */
int sync_list_remove(struct sync_list *l, const char *room_id, int64_t *from);
/* Adds/updates many rooms and sorts once: for building a list. The new
 * rooms share one allocation, released when the list is cleared or freed
 * (a room removed before that keeps its bytes until then). */
void sync_list_upsert_many(struct sync_list *l, const struct sync_list_keys *k, size_t n);

#endif
