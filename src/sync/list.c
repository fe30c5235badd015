/* The sorted room array of one list; see list.h. */
#include "sync/list.h"

#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "sync/roomname.h"

static const char *const sort_names[] = {
    [SYNC_SORT_BY_RECENCY] = "by_recency",
    [SYNC_SORT_BY_NAME] = "by_name",
    [SYNC_SORT_BY_NOTIFICATION_LEVEL] = "by_notification_level",
    [SYNC_SORT_BY_NOTIFICATION_COUNT] = "by_notification_count",
    [SYNC_SORT_BY_HIGHLIGHT_COUNT] = "by_highlight_count",
};

int sync_sort_parse(const char *name, enum sync_sort *out)
{
    for (size_t i = 0; i < sizeof(sort_names) / sizeof(sort_names[0]); i++) {
        if (strcmp(name, sort_names[i]) == 0) {
            *out = (enum sync_sort)i;
            return 0;
        }
    }
    return -1;
}

const char *sync_sort_name(enum sync_sort s)
{
    if ((size_t)s < sizeof(sort_names) / sizeof(sort_names[0])) return sort_names[s];
    return "unknown";
}

struct sync_list *sync_list_new(void)
{
    struct sync_list *l = xcalloc(1, sizeof(*l));
    l->sort[0] = SYNC_SORT_BY_RECENCY;
    l->n_sort = 1;
    return l;
}

static void room_free(struct sync_list_room *r)
{
    free(r->room_id);
    free(r->name_key);
    free(r);
}

void sync_list_clear(struct sync_list *l)
{
    HASH_CLEAR(hh, l->by_id);
    for (size_t i = 0; i < l->n; i++) room_free(l->v[i]);
    l->n = 0;
}

void sync_list_free(struct sync_list *l)
{
    if (!l) return;
    sync_list_clear(l);
    free(l->v);
    free(l);
}

/* by_notification_level group: smaller sorts first (spec §12). */
static int level(const struct sync_list_room *r)
{
    if (r->highlight_count > 0) return 1;
    if (r->notification_count > 0) return r->encrypted ? 2 : 3;
    return 4;
}

static int cmp_i64_desc(int64_t a, int64_t b) { return a > b ? -1 : a < b ? 1 : 0; }

static int compare(const struct sync_list *l, const struct sync_list_room *a,
                   const struct sync_list_room *b)
{
    for (size_t i = 0; i < l->n_sort; i++) {
        int c = 0;
        switch (l->sort[i]) {
        case SYNC_SORT_BY_RECENCY: c = cmp_i64_desc(a->recency, b->recency); break;
        case SYNC_SORT_BY_NAME: c = strcmp(a->name_key ? a->name_key : "", b->name_key ? b->name_key : ""); break;
        case SYNC_SORT_BY_NOTIFICATION_LEVEL: c = level(a) - level(b); break;
        case SYNC_SORT_BY_NOTIFICATION_COUNT:
            c = cmp_i64_desc(a->notification_count, b->notification_count);
            break;
        case SYNC_SORT_BY_HIGHLIGHT_COUNT:
            c = cmp_i64_desc(a->highlight_count, b->highlight_count);
            break;
        }
        if (c) return c;
    }
    /* Deterministic final tie-break (see list.h). strcmp compares bytes as
     * unsigned char, i.e. UTF-8 code point order. */
    return strcmp(a->room_id, b->room_id);
}

static int qsort_cmp(const void *pa, const void *pb, void *ctx)
{
    return compare(ctx, *(struct sync_list_room *const *)pa, *(struct sync_list_room *const *)pb);
}

static void reindex(struct sync_list *l, size_t from, size_t to)
{
    for (size_t i = from; i < to && i < l->n; i++) l->v[i]->index = i;
}

static void resort(struct sync_list *l)
{
    if (l->n < 2) {
        reindex(l, 0, l->n);
        return;
    }
    qsort_r(l->v, l->n, sizeof(*l->v), qsort_cmp, l);
    reindex(l, 0, l->n);
}

void sync_list_set_sort(struct sync_list *l, const enum sync_sort *sort, size_t n)
{
    if (n > SYNC_LIST_MAX_SORT) n = SYNC_LIST_MAX_SORT;
    if (n == 0) {
        l->sort[0] = SYNC_SORT_BY_RECENCY;
        l->n_sort = 1;
    } else {
        memcpy(l->sort, sort, n * sizeof(*sort));
        l->n_sort = n;
    }
    resort(l);
}

const char *sync_list_room_at(const struct sync_list *l, int64_t i)
{
    if (i < 0 || (uint64_t)i >= l->n) return NULL;
    return l->v[i]->room_id;
}

const struct sync_list_room *sync_list_get(const struct sync_list *l, const char *room_id)
{
    struct sync_list_room *r = NULL;
    HASH_FIND_STR(l->by_id, room_id, r);
    return r;
}

int64_t sync_list_index_of(const struct sync_list *l, const char *room_id)
{
    const struct sync_list_room *r = sync_list_get(l, room_id);
    return r ? (int64_t)r->index : -1;
}

static void set_keys(struct sync_list_room *r, const struct sync_list_keys *k)
{
    r->recency = k->recency;
    free(r->name_key);
    /* Callers that do not sort by name pass no name: no key to build. */
    r->name_key = k->name ? roomname_sort_key(k->name) : NULL;
    r->notification_count = k->notification_count;
    r->highlight_count = k->highlight_count;
    r->encrypted = k->encrypted;
}

/* Inserts r (not in v) at its sorted position; returns that position. */
static size_t insert_sorted(struct sync_list *l, struct sync_list_room *r)
{
    size_t lo = 0, hi = l->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (compare(l, l->v[mid], r) < 0) lo = mid + 1;
        else hi = mid;
    }
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 16;
        l->v = xrealloc(l->v, l->cap * sizeof(*l->v));
    }
    memmove(&l->v[lo + 1], &l->v[lo], (l->n - lo) * sizeof(*l->v));
    l->v[lo] = r;
    l->n++;
    return lo;
}

/* Takes the entry at i out of v (it stays in the hash). */
static void take_out(struct sync_list *l, size_t i)
{
    memmove(&l->v[i], &l->v[i + 1], (l->n - i - 1) * sizeof(*l->v));
    l->n--;
}

void sync_list_upsert(struct sync_list *l, const struct sync_list_keys *k, int64_t *from,
                      int64_t *to)
{
    struct sync_list_room *r = NULL;
    HASH_FIND_STR(l->by_id, k->room_id, r);
    int64_t f = -1;
    size_t lo, hi;
    if (r) {
        f = (int64_t)r->index;
        take_out(l, r->index);
        set_keys(r, k);
        size_t t = insert_sorted(l, r);
        lo = t < (size_t)f ? t : (size_t)f;
        hi = t < (size_t)f ? (size_t)f + 1 : t + 1;
    } else {
        r = xcalloc(1, sizeof(*r));
        r->room_id = xstrdup(k->room_id);
        set_keys(r, k);
        HASH_ADD_KEYPTR(hh, l->by_id, r->room_id, strlen(r->room_id), r);
        lo = insert_sorted(l, r);
        hi = l->n;
    }
    reindex(l, lo, hi);
    if (from) *from = f;
    if (to) *to = (int64_t)r->index;
}

int sync_list_remove(struct sync_list *l, const char *room_id, int64_t *from)
{
    struct sync_list_room *r = NULL;
    HASH_FIND_STR(l->by_id, room_id, r);
    if (!r) return -1;
    size_t f = r->index;
    take_out(l, f);
    reindex(l, f, l->n);
    HASH_DEL(l->by_id, r);
    room_free(r);
    if (from) *from = (int64_t)f;
    return 0;
}

void sync_list_upsert_many(struct sync_list *l, const struct sync_list_keys *k, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct sync_list_room *r = NULL;
        /* Hash the key once for both the lookup and the insertion. */
        size_t len = strlen(k[i].room_id);
        unsigned hv;
        HASH_VALUE(k[i].room_id, len, hv);
        HASH_FIND_BYHASHVALUE(hh, l->by_id, k[i].room_id, len, hv, r);
        if (!r) {
            r = xcalloc(1, sizeof(*r));
            r->room_id = xstrndup(k[i].room_id, len);
            HASH_ADD_KEYPTR_BYHASHVALUE(hh, l->by_id, r->room_id, len, hv, r);
            if (l->n == l->cap) {
                l->cap = l->cap ? l->cap * 2 : 16;
                l->v = xrealloc(l->v, l->cap * sizeof(*l->v));
            }
            l->v[l->n++] = r;
        }
        set_keys(r, &k[i]);
    }
    resort(l);
}
