/* List operations (docs/behaviour.md, "Response body", "Live ops"): the SYNC / INVALIDATE / DELETE / INSERT ops
 * that keep a client's view of a list's windows equal to the server's list.
 *
 * Request-driven ops (docs/behaviour.md, "Request-driven ops") come from window, sort or filter changes; live ops
 * (docs/behaviour.md, "Live ops") come from one room being added, re-positioned or removed. Every
 * function appends to a struct sync_ops in processing order (the client
 * applies ops strictly in order) and adds to a struct sync_roomset the rooms
 * that must be sent as full snapshots (`initial: true`). */
#ifndef SYNCV3_SYNC_OPS_H
#define SYNCV3_SYNC_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/hash.h"

#include "sync/list.h"
#include "sync/ranges.h"

struct buf;

enum sync_op_kind {
    SYNC_OP_SYNC,       /* fill range [start,end] with room_ids */
    SYNC_OP_INVALIDATE, /* forget range [start,end] */
    SYNC_OP_DELETE,     /* remove index start, later entries of its window move up */
    SYNC_OP_INSERT,     /* insert room_ids[0] at index start, later entries move down */
};

struct sync_op {
    enum sync_op_kind kind; /* what to do */
    int64_t start;          /* range start, or the index for DELETE/INSERT */
    int64_t end;            /* range end (inclusive); == start for DELETE/INSERT */
    char **room_ids;        /* SYNC: the rooms at start..; INSERT: one room; owned */
    size_t n_room_ids;      /* entries in room_ids */
};

struct sync_ops {
    struct sync_op *v; /* ops in emission order, owned */
    size_t n;          /* number of ops */
    size_t cap;        /* allocated slots in v */
};

void sync_ops_init(struct sync_ops *ops);
void sync_ops_release(struct sync_ops *ops);
/* Drops every op, keeping the allocation. */
void sync_ops_clear(struct sync_ops *ops);
/* Appends a DELETE / INSERT / range op (room_id / room_ids copied). */
void sync_ops_push_delete(struct sync_ops *ops, int64_t index);
void sync_ops_push_insert(struct sync_ops *ops, int64_t index, const char *room_id);
void sync_ops_push_range(struct sync_ops *ops, enum sync_op_kind kind, int64_t start, int64_t end,
                         const char *const *room_ids, size_t n);

/* Appends the ops as the JSON array of the response (docs/behaviour.md,
 * "Response body"), e.g.
 *   [{"op":"SYNC","range":[0,1],"room_ids":["!a","!b"]},{"op":"DELETE","index":3}]
 * (room_ids omitted on an empty SYNC). Returns 0, or -1 when the buffer's
 * bound is hit (the buffer then holds a partial array). */
int sync_ops_to_json(const struct sync_ops *ops, struct buf *out);

/* An insertion-ordered set of room IDs (the rooms needing snapshots). */
struct sync_roomset_entry {
    char *room_id;     /* owned */
    UT_hash_handle hh; /* in sync_roomset.h, insertion order */
};
struct sync_roomset {
    struct sync_roomset_entry *h; /* uthash head; iterate with e->hh.next */
    size_t n;                     /* number of members */
};
void sync_roomset_init(struct sync_roomset *s);
void sync_roomset_release(struct sync_roomset *s);
/* Adds a copy of room_id; no-op if present. */
void sync_roomset_add(struct sync_roomset *s, const char *room_id);
bool sync_roomset_has(const struct sync_roomset *s, const char *room_id);

/* ---- Request-driven ops (docs/behaviour.md, "Request-driven ops"); `snapshots` may be NULL. ---- */

/* For each range of `ranges` (request order) starting below the list length
 * n: SYNC [start, min(end, n-1)] with its rooms, all added to snapshots.
 * Used for a new list, and after a sort/filter change. */
void sync_ops_sync_ranges(struct sync_ops *ops, const struct sync_list *l,
                          const struct sync_ranges *ranges, struct sync_roomset *snapshots);
/* For each range of `old_ranges` starting below n_old: INVALIDATE
 * [start, min(end, n_old-1)]. The first half of a sort/filter change: call it
 * with the length before rebuilding, then change the list, then call
 * sync_ops_sync_ranges with the current ranges. */
void sync_ops_invalidate_ranges(struct sync_ops *ops, const struct sync_ranges *old_ranges,
                                int64_t n_old);
/* Only the ranges changed: INVALIDATE every maximal interval covered before
 * but not now, then SYNC every maximal interval covered now but not before,
 * each clamped to the list and skipped when it starts beyond it. */
void sync_ops_ranges_changed(struct sync_ops *ops, const struct sync_list *l,
                             const struct sync_ranges *old_ranges,
                             const struct sync_ranges *new_ranges, struct sync_roomset *snapshots);
/* slow_get_all_rooms (docs/behaviour.md, "slow_get_all_rooms"): one SYNC [0, n-1] of every room (for n == 0,
 * SYNC [0,-1] without room_ids), all added to snapshots. */
void sync_ops_all_rooms(struct sync_ops *ops, const struct sync_list *l,
                        struct sync_roomset *snapshots);

/* ---- Live ops (docs/behaviour.md, "Live ops"). ----
 * Not for slow_get_all_rooms lists, which never get DELETE/INSERT (docs/behaviour.md, "slow_get_all_rooms"):
 * update those with sync_list_upsert / sync_list_remove directly and send
 * newly matching rooms as snapshots. */

/* Adds the room to the list or updates its sort keys, and appends the
 * DELETE/INSERT pairs that show the move through the windows `ranges`.
 * Rooms inserted into a window that were not visible there before get a
 * snapshot (any room other than the updated one, and the updated room unless
 * it was already inside a window). Returns the room's new index. */
int64_t sync_ops_upsert(struct sync_ops *ops, struct sync_list *l,
                        const struct sync_ranges *ranges, const struct sync_list_keys *keys,
                        struct sync_roomset *snapshots);
/* Removes the room from the list (no-op returning -1 if absent) and appends
 * the ops; a room sliding into a window from outside gets a snapshot. When
 * the list becomes empty this is a single DELETE 0 if index 0 is inside a
 * range, and nothing otherwise. Returns the former index. */
int64_t sync_ops_remove(struct sync_ops *ops, struct sync_list *l,
                        const struct sync_ranges *ranges, const char *room_id,
                        struct sync_roomset *snapshots);

#endif
