/* Index ranges of a list window; see ranges.h. */
#include "sync/ranges.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/buf.h"

void sync_ranges_init(struct sync_ranges *r) { memset(r, 0, sizeof(*r)); }

void sync_ranges_release(struct sync_ranges *r)
{
    free(r->v);
    memset(r, 0, sizeof(*r));
}

void sync_ranges_clear(struct sync_ranges *r) { r->n = 0; }

void sync_ranges_push(struct sync_ranges *r, int64_t start, int64_t end)
{
    if (r->n == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 4;
        r->v = xrealloc(r->v, r->cap * sizeof(*r->v));
    }
    r->v[r->n++] = (struct sync_range){.start = start, .end = end};
}

void sync_ranges_copy(struct sync_ranges *dst, const struct sync_ranges *src)
{
    if (dst == src) return;
    sync_ranges_clear(dst);
    for (size_t i = 0; i < src->n; i++) sync_ranges_push(dst, src->v[i].start, src->v[i].end);
}

bool sync_ranges_equal(const struct sync_ranges *a, const struct sync_ranges *b)
{
    if (a->n != b->n) return false;
    for (size_t i = 0; i < a->n; i++)
        if (a->v[i].start != b->v[i].start || a->v[i].end != b->v[i].end) return false;
    return true;
}

static int cmp_range(const void *pa, const void *pb)
{
    const struct sync_range *a = pa, *b = pb;
    if (a->start != b->start) return a->start < b->start ? -1 : 1;
    if (a->end != b->end) return a->end < b->end ? -1 : 1;
    return 0;
}

/* A sorted private copy; the caller frees the result. */
static struct sync_range *sorted_copy(const struct sync_ranges *r)
{
    struct sync_range *v = xmalloc((r->n ? r->n : 1) * sizeof(*v));
    if (r->n) memcpy(v, r->v, r->n * sizeof(*v));
    qsort(v, r->n, sizeof(*v), cmp_range);
    return v;
}

int sync_ranges_validate(const struct sync_ranges *r, const char **why)
{
    for (size_t i = 0; i < r->n; i++) {
        if (r->v[i].start < 0) {
            *why = "range start is negative";
            return -1;
        }
        if (r->v[i].end < r->v[i].start) {
            *why = "range end is before its start";
            return -1;
        }
    }
    struct sync_range *v = sorted_copy(r);
    int rc = 0;
    for (size_t i = 1; i < r->n; i++) {
        if (v[i].start <= v[i - 1].end) {
            *why = "ranges overlap";
            rc = -1;
            break;
        }
    }
    free(v);
    return rc;
}

int64_t sync_ranges_find(const struct sync_ranges *r, int64_t i)
{
    /* Lists carry a handful of ranges; a linear scan beats anything clever. */
    for (size_t k = 0; k < r->n; k++)
        if (i >= r->v[k].start && i <= r->v[k].end) return (int64_t)k;
    return -1;
}

/* Merges sorted v (n entries) into disjoint maximal intervals in place;
 * returns the new count. Adjacent intervals ([0,4],[5,9]) are joined too. */
static size_t coalesce(struct sync_range *v, size_t n)
{
    if (n == 0) return 0;
    size_t w = 0;
    for (size_t i = 1; i < n; i++) {
        if (v[i].start <= v[w].end || v[i].start - 1 == v[w].end) {
            if (v[i].end > v[w].end) v[w].end = v[i].end;
        } else {
            v[++w] = v[i];
        }
    }
    return w + 1;
}

void sync_ranges_subtract(const struct sync_ranges *a, const struct sync_ranges *b,
                          struct sync_ranges *out)
{
    sync_ranges_clear(out);
    struct sync_range *av = sorted_copy(a), *bv = sorted_copy(b);
    size_t an = coalesce(av, a->n), bn = coalesce(bv, b->n);
    size_t j = 0;
    for (size_t i = 0; i < an; i++) {
        int64_t cur = av[i].start, end = av[i].end;
        while (j < bn && bv[j].end < cur) j++;
        /* bv[j..] are the b intervals that may cut into [cur, end]. */
        size_t k = j;
        while (cur <= end) {
            if (k >= bn || bv[k].start > end) {
                sync_ranges_push(out, cur, end);
                break;
            }
            if (bv[k].start > cur) sync_ranges_push(out, cur, bv[k].start - 1);
            if (bv[k].end >= end) break;
            cur = bv[k].end + 1;
            k++;
        }
    }
    free(av);
    free(bv);
}

int sync_ranges_to_json(const struct sync_ranges *r, struct buf *out)
{
    if (buf_putc(out, '[') < 0) return -1;
    for (size_t i = 0; i < r->n; i++) {
        if (buf_printf(out, "%s[%" PRId64 ",%" PRId64 "]", i ? "," : "", r->v[i].start,
                       r->v[i].end) < 0)
            return -1;
    }
    return buf_putc(out, ']');
}
