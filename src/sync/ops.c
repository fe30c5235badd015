/* List operations; see ops.h. */
#include "sync/ops.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/buf.h"

void sync_ops_init(struct sync_ops *ops) { memset(ops, 0, sizeof(*ops)); }

void sync_ops_clear(struct sync_ops *ops)
{
    for (size_t i = 0; i < ops->n; i++) {
        for (size_t j = 0; j < ops->v[i].n_room_ids; j++) free(ops->v[i].room_ids[j]);
        free(ops->v[i].room_ids);
    }
    ops->n = 0;
}

void sync_ops_release(struct sync_ops *ops)
{
    sync_ops_clear(ops);
    free(ops->v);
    memset(ops, 0, sizeof(*ops));
}

static struct sync_op *push(struct sync_ops *ops, enum sync_op_kind kind, int64_t start,
                            int64_t end)
{
    if (ops->n == ops->cap) {
        ops->cap = ops->cap ? ops->cap * 2 : 8;
        ops->v = xrealloc(ops->v, ops->cap * sizeof(*ops->v));
    }
    struct sync_op *op = &ops->v[ops->n++];
    *op = (struct sync_op){.kind = kind, .start = start, .end = end};
    return op;
}

void sync_ops_push_delete(struct sync_ops *ops, int64_t index)
{
    push(ops, SYNC_OP_DELETE, index, index);
}

void sync_ops_push_insert(struct sync_ops *ops, int64_t index, const char *room_id)
{
    struct sync_op *op = push(ops, SYNC_OP_INSERT, index, index);
    op->room_ids = xmalloc(sizeof(char *));
    op->room_ids[0] = xstrdup(room_id);
    op->n_room_ids = 1;
}

void sync_ops_push_range(struct sync_ops *ops, enum sync_op_kind kind, int64_t start, int64_t end,
                         const char *const *room_ids, size_t n)
{
    struct sync_op *op = push(ops, kind, start, end);
    if (n == 0) return;
    op->room_ids = xmalloc(n * sizeof(char *));
    for (size_t i = 0; i < n; i++) op->room_ids[i] = xstrdup(room_ids[i]);
    op->n_room_ids = n;
}

int sync_ops_to_json(const struct sync_ops *ops, struct buf *out)
{
    static const char *const names[] = {
        [SYNC_OP_SYNC] = "SYNC",
        [SYNC_OP_INVALIDATE] = "INVALIDATE",
        [SYNC_OP_DELETE] = "DELETE",
        [SYNC_OP_INSERT] = "INSERT",
    };
    if (buf_putc(out, '[') < 0) return -1;
    for (size_t i = 0; i < ops->n; i++) {
        const struct sync_op *op = &ops->v[i];
        if (buf_printf(out, "%s{\"op\":\"%s\",", i ? "," : "", names[op->kind]) < 0) return -1;
        switch (op->kind) {
        case SYNC_OP_SYNC:
        case SYNC_OP_INVALIDATE:
            if (buf_printf(out, "\"range\":[%" PRId64 ",%" PRId64 "]", op->start, op->end) < 0)
                return -1;
            if (op->kind == SYNC_OP_SYNC && op->n_room_ids > 0) {
                if (buf_puts(out, ",\"room_ids\":[") < 0) return -1;
                for (size_t j = 0; j < op->n_room_ids; j++) {
                    if (j && buf_putc(out, ',') < 0) return -1;
                    if (buf_json_str(out, op->room_ids[j], strlen(op->room_ids[j])) < 0)
                        return -1;
                }
                if (buf_putc(out, ']') < 0) return -1;
            }
            break;
        case SYNC_OP_DELETE:
            if (buf_printf(out, "\"index\":%" PRId64, op->start) < 0) return -1;
            break;
        case SYNC_OP_INSERT:
            if (buf_printf(out, "\"index\":%" PRId64 ",\"room_id\":", op->start) < 0) return -1;
            if (buf_json_str(out, op->room_ids[0], strlen(op->room_ids[0])) < 0) return -1;
            break;
        }
        if (buf_putc(out, '}') < 0) return -1;
    }
    return buf_putc(out, ']');
}

void sync_roomset_init(struct sync_roomset *s) { memset(s, 0, sizeof(*s)); }

void sync_roomset_release(struct sync_roomset *s)
{
    struct sync_roomset_entry *e, *tmp;
    HASH_ITER(hh, s->h, e, tmp)
    {
        HASH_DEL(s->h, e);
        free(e->room_id);
        free(e);
    }
    s->n = 0;
}

void sync_roomset_add(struct sync_roomset *s, const char *room_id)
{
    if (!s || sync_roomset_has(s, room_id)) return;
    struct sync_roomset_entry *e = xcalloc(1, sizeof(*e));
    e->room_id = xstrdup(room_id);
    HASH_ADD_KEYPTR(hh, s->h, e->room_id, strlen(e->room_id), e);
    s->n++;
}

bool sync_roomset_has(const struct sync_roomset *s, const char *room_id)
{
    struct sync_roomset_entry *e = NULL;
    HASH_FIND_STR(s->h, room_id, e);
    return e != NULL;
}

/* SYNC [start, min(end, n-1)] if start < n. */
static void sync_clamped(struct sync_ops *ops, const struct sync_list *l, int64_t start,
                         int64_t end, struct sync_roomset *snapshots)
{
    int64_t n = (int64_t)l->n;
    if (start >= n) return;
    if (end > n - 1) end = n - 1;
    size_t cnt = (size_t)(end - start + 1);
    const char **ids = xmalloc(cnt * sizeof(*ids));
    for (size_t i = 0; i < cnt; i++) {
        ids[i] = l->v[start + (int64_t)i]->room_id;
        sync_roomset_add(snapshots, ids[i]);
    }
    sync_ops_push_range(ops, SYNC_OP_SYNC, start, end, ids, cnt);
    free(ids);
}

void sync_ops_sync_ranges(struct sync_ops *ops, const struct sync_list *l,
                          const struct sync_ranges *ranges, struct sync_roomset *snapshots)
{
    for (size_t i = 0; i < ranges->n; i++)
        sync_clamped(ops, l, ranges->v[i].start, ranges->v[i].end, snapshots);
}

void sync_ops_invalidate_ranges(struct sync_ops *ops, const struct sync_ranges *old_ranges,
                                int64_t n_old)
{
    for (size_t i = 0; i < old_ranges->n; i++) {
        int64_t a = old_ranges->v[i].start, b = old_ranges->v[i].end;
        if (a >= n_old) continue;
        sync_ops_push_range(ops, SYNC_OP_INVALIDATE, a, b < n_old - 1 ? b : n_old - 1, NULL, 0);
    }
}

void sync_ops_ranges_changed(struct sync_ops *ops, const struct sync_list *l,
                             const struct sync_ranges *old_ranges,
                             const struct sync_ranges *new_ranges, struct sync_roomset *snapshots)
{
    struct sync_ranges diff;
    sync_ranges_init(&diff);
    sync_ranges_subtract(old_ranges, new_ranges, &diff);
    sync_ops_invalidate_ranges(ops, &diff, (int64_t)l->n);
    sync_ranges_subtract(new_ranges, old_ranges, &diff);
    sync_ops_sync_ranges(ops, l, &diff, snapshots);
    sync_ranges_release(&diff);
}

void sync_ops_all_rooms(struct sync_ops *ops, const struct sync_list *l,
                        struct sync_roomset *snapshots)
{
    if (l->n == 0) {
        sync_ops_push_range(ops, SYNC_OP_SYNC, 0, -1, NULL, 0);
        return;
    }
    sync_clamped(ops, l, 0, (int64_t)l->n - 1, snapshots);
}

/* ---- Live ops ----
 *
 * Every live update is a move of one room from index f to index t in an array
 * of fixed size: a change moves within the list; an addition moves the room
 * from the empty slot one past the old end (f = n_old) to its place; a removal
 * moves the room to the old last slot (t = n_old - 1), which then becomes
 * empty. Seen through a window [a,b], a move shifts the entries between f and
 * t by one, so the window changes by "remove at x, insert at y" with both x
 * and y inside it:
 *   - f, t both in the window:            (f, t)
 *   - f in it, t beyond the edge:         (f, edge towards t)
 *   - t in it, f beyond the edge:         (edge towards f, t)
 *   - the window lies strictly between:   (edge towards f, edge towards t)
 *   - otherwise the window is unaffected.
 * Each (x, y) is sent as DELETE x, INSERT y <room now at y>. For a removal
 * the room at y may not exist (y == n_old - 1, the vacated slot): the DELETE
 * alone already leaves the window's last slot empty, as the client expects.
 * This reproduces every worked example of docs/behaviour.md, "Live ops", and
 * the property test in tests/unit/test_ops.c checks it against a client
 * model.
 *
 * Two [QUIRK]s of the original are fixed here: a room sliding into a window
 * on a removal is snapshotted like any other newly visible room, and a list
 * emptied while index 0 is outside every window yields no op at all rather
 * than a JSON null inside `ops`. */

struct move {
    int64_t x; /* index deleted */
    int64_t y; /* index inserted */
};

/* Fills mv (room for ranges->n entries) with the window moves of f -> t, in
 * the order: f's window, t's window, then jumped windows in range order (the
 * order of the original's output). Returns the number of moves. */
static size_t window_moves(const struct sync_ranges *ranges, int64_t f, int64_t t,
                           struct move *mv)
{
    int64_t fi = sync_ranges_find(ranges, f), ti = sync_ranges_find(ranges, t);
    size_t n = 0;
    if (fi >= 0 && fi == ti) {
        mv[n++] = (struct move){f, t};
        return n;
    }
    if (fi >= 0) {
        const struct sync_range *r = &ranges->v[fi];
        mv[n++] = (struct move){f, t < f ? r->start : r->end};
    }
    if (ti >= 0) {
        const struct sync_range *r = &ranges->v[ti];
        mv[n++] = (struct move){f < t ? r->start : r->end, t};
    }
    int64_t lo = f < t ? f : t, hi = f < t ? t : f;
    for (size_t k = 0; k < ranges->n; k++) {
        const struct sync_range *r = &ranges->v[k];
        if ((int64_t)k == fi || (int64_t)k == ti) continue;
        if (r->start > lo && r->end < hi)
            mv[n++] = t < f ? (struct move){r->end, r->start} : (struct move){r->start, r->end};
    }
    return n;
}

/* Emits the ops of the move f -> t. `room_id` is the updated room, `visible`
 * whether it was inside a window before the update. */
static void emit_moves(struct sync_ops *ops, const struct sync_list *l,
                       const struct sync_ranges *ranges, int64_t f, int64_t t,
                       const char *room_id, bool visible, struct sync_roomset *snapshots)
{
    struct move stack_mv[8];
    struct move *mv = ranges->n <= 8 ? stack_mv : xmalloc(ranges->n * sizeof(*mv));
    size_t n = window_moves(ranges, f, t, mv);
    for (size_t i = 0; i < n; i++) {
        sync_ops_push_delete(ops, mv[i].x);
        const char *at = sync_list_room_at(l, mv[i].y);
        if (!at) continue; /* removal into the vacated last slot: DELETE only */
        sync_ops_push_insert(ops, mv[i].y, at);
        if (strcmp(at, room_id) != 0 || !visible) sync_roomset_add(snapshots, at);
    }
    if (mv != stack_mv) free(mv);
}

int64_t sync_ops_upsert(struct sync_ops *ops, struct sync_list *l,
                        const struct sync_ranges *ranges, const struct sync_list_keys *keys,
                        struct sync_roomset *snapshots)
{
    int64_t f, t;
    int64_t n_old = (int64_t)l->n;
    sync_list_upsert(l, keys, &f, &t);
    if (f < 0) {
        emit_moves(ops, l, ranges, n_old, t, keys->room_id, false, snapshots);
    } else if (f != t) {
        /* f == t is the no-op move: nothing changed in any window. */
        emit_moves(ops, l, ranges, f, t, keys->room_id, sync_ranges_contains(ranges, f),
                   snapshots);
    }
    return t;
}

int64_t sync_ops_remove(struct sync_ops *ops, struct sync_list *l,
                        const struct sync_ranges *ranges, const char *room_id,
                        struct sync_roomset *snapshots)
{
    int64_t f;
    int64_t n_old = (int64_t)l->n;
    /* room_id may point into the list's own entry, which removal frees. */
    char *id = xstrdup(room_id);
    if (sync_list_remove(l, id, &f) < 0) {
        free(id);
        return -1;
    }
    /* The room is gone from l, so it can never be the room found at y. */
    emit_moves(ops, l, ranges, f, n_old - 1, id, true, snapshots);
    free(id);
    return f;
}
