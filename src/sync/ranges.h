/* Index ranges of a sliding-sync list window (MSC3575 `ranges`).
 *
 * A range [start, end] is inclusive at both ends. A struct sync_ranges keeps
 * the ranges in the order the client sent them (SYNC ops for a new list follow
 * that order); helpers that need ascending order sort a private copy. */
#ifndef SYNCV3_SYNC_RANGES_H
#define SYNCV3_SYNC_RANGES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sync_range {
    int64_t start; /* first index, inclusive */
    int64_t end;   /* last index, inclusive */
};

struct sync_ranges {
    struct sync_range *v; /* ranges, owned */
    size_t n;             /* number of ranges */
    size_t cap;           /* allocated slots in v */
};

void sync_ranges_init(struct sync_ranges *r);
void sync_ranges_release(struct sync_ranges *r);
/* Empties r, keeping its allocation. */
void sync_ranges_clear(struct sync_ranges *r);
/* Appends [start, end] (no validation). */
void sync_ranges_push(struct sync_ranges *r, int64_t start, int64_t end);
/* Replaces dst's contents with a copy of src. */
void sync_ranges_copy(struct sync_ranges *dst, const struct sync_ranges *src);
/* Same ranges in the same order. */
bool sync_ranges_equal(const struct sync_ranges *a, const struct sync_ranges *b);

/* Checks the request rules (docs/behaviour.md, "Request parsing"): start >= 0, end >= start, and no two
 * ranges overlapping or sharing an index. Returns 0, or -1 with *why set to a
 * static message. */
int sync_ranges_validate(const struct sync_ranges *r, const char **why);

/* Index into r->v of the range containing index i, or -1. */
int64_t sync_ranges_find(const struct sync_ranges *r, int64_t i);
static inline bool sync_ranges_contains(const struct sync_ranges *r, int64_t i)
{
    return sync_ranges_find(r, i) >= 0;
}

/* out = the index set of a minus the index set of b, as maximal intervals in
 * ascending order (out is cleared first; it must not alias a or b). Inputs may
 * overlap or be unsorted. */
void sync_ranges_subtract(const struct sync_ranges *a, const struct sync_ranges *b,
                          struct sync_ranges *out);

/* Serialises as a JSON array of pairs, e.g. [[0,10],[20,30]]. Returns 0 or -1
 * when the buffer bound is hit. */
struct buf;
int sync_ranges_to_json(const struct sync_ranges *r, struct buf *out);

#endif
