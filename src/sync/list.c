/* The sorted room array of one list; see list.h. */
#include "sync/list.h"

#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/hash.h"
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

/* The rooms sync_list_upsert_many added in one call: the entries, then their
 * room ID strings. */
struct sync_list_block {
    struct sync_list_block *next;    /* older block */
    struct sync_list_room rooms[];   /* entries (their IDs follow the array) */
};

struct sync_list *sync_list_new(void)
{
    struct sync_list *l = xcalloc(1, sizeof(*l));
    l->sort[0] = SYNC_SORT_BY_RECENCY;
    l->n_sort = 1;
    return l;
}

static void room_free(struct sync_list_room *r)
{
    free(r->name_key);
    if (!r->in_block) free(r);
}

void sync_list_clear(struct sync_list *l)
{
    for (size_t i = 0; i < l->n; i++) room_free(l->v[i]);
    l->n = 0;
    if (l->slots) memset(l->slots, 0, l->n_slots * sizeof(*l->slots));
    while (l->blocks) {
        struct sync_list_block *b = l->blocks;
        l->blocks = b->next;
        free(b);
    }
}

void sync_list_free(struct sync_list *l)
{
    if (!l) return;
    sync_list_clear(l);
    free(l->slots);
    free(l->v);
    free(l);
}

/* ---- the index by room ID ----
 *
 * Open addressing with linear probing, at most half full. One array of
 * pointers instead of uthash's chained buckets: a lookup touches one cache
 * line of slots and then the entry, and sync_list_upsert_many sizes the
 * table once instead of rehashing as it grows. */

/* The entry for id (hash h), or NULL with *free_slot (if not NULL) = the
 * free slot where it would go. The index must have slots. */
static struct sync_list_room *index_lookup(const struct sync_list *l, const char *id, uint32_t h,
                                           size_t *free_slot)
{
    size_t mask = l->n_slots - 1, i = h & mask;
    for (; l->slots[i]; i = (i + 1) & mask)
        if (l->slots[i]->hash == h && strcmp(l->slots[i]->room_id, id) == 0) return l->slots[i];
    if (free_slot) *free_slot = i;
    return NULL;
}

static struct sync_list_room *index_find(const struct sync_list *l, const char *id, uint32_t h)
{
    return l->n_slots ? index_lookup(l, id, h, NULL) : NULL;
}

/* Puts r into the slots (there is room, r is not there yet). */
static void index_put(struct sync_list_room **slots, size_t n_slots, struct sync_list_room *r)
{
    size_t mask = n_slots - 1, i = r->hash & mask;
    while (slots[i]) i = (i + 1) & mask;
    slots[i] = r;
}

/* Makes the index big enough for n rooms (keeping it at most half full). */
static void index_reserve(struct sync_list *l, size_t n)
{
    if (2 * n <= l->n_slots) return;
    size_t ns = l->n_slots ? l->n_slots : 16;
    while (ns < 2 * n) ns *= 2;
    struct sync_list_room **slots = xcalloc(ns, sizeof(*slots));
    for (size_t i = 0; i < l->n_slots; i++)
        if (l->slots[i]) index_put(slots, ns, l->slots[i]);
    free(l->slots);
    l->slots = slots;
    l->n_slots = ns;
}

/* Takes r out of the index; later entries of its probe run move back so that
 * no lookup stops early at the freed slot. */
static void index_del(struct sync_list *l, const struct sync_list_room *r)
{
    size_t mask = l->n_slots - 1, i = r->hash & mask;
    while (l->slots[i] != r) i = (i + 1) & mask;
    for (size_t j = (i + 1) & mask; l->slots[j]; j = (j + 1) & mask) {
        size_t home = l->slots[j]->hash & mask;
        /* The entry at j may fill the hole at i unless its home slot lies
         * cyclically in (i, j]. */
        bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (stays) continue;
        l->slots[i] = l->slots[j];
        i = j;
    }
    l->slots[i] = NULL;
}

static void reserve_v(struct sync_list *l, size_t n)
{
    if (n <= l->cap) return;
    size_t cap = l->cap ? l->cap : 16;
    while (cap < n) cap *= 2;
    l->v = xrealloc(l->v, cap * sizeof(*l->v));
    l->cap = cap;
}

/* ---- order ---- */

/* by_notification_level group: smaller sorts first (docs/behaviour.md, "Sorts"). */
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

static void reindex(struct sync_list *l, size_t from, size_t to)
{
    for (size_t i = from; i < to && i < l->n; i++) l->v[i]->index = i;
}

/* A room with its most significant sort key copied out, so that most
 * comparisons of a full sort read neither the room nor a string. */
struct sort_item {
    int64_t key;                 /* ascending: the first criterion, negated where it sorts descending */
    struct sync_list_room *r;    /* the room */
};

/* The first criterion as an ascending integer, or false for by_name. The
 * descending keys are mapped by ~x (= -x - 1), which reverses the order of
 * every int64_t without overflow. */
static bool first_key(const struct sync_list *l, const struct sync_list_room *r, int64_t *key)
{
    switch (l->sort[0]) {
    case SYNC_SORT_BY_RECENCY: *key = ~r->recency; return true;
    case SYNC_SORT_BY_NOTIFICATION_COUNT: *key = ~r->notification_count; return true;
    case SYNC_SORT_BY_HIGHLIGHT_COUNT: *key = ~r->highlight_count; return true;
    case SYNC_SORT_BY_NOTIFICATION_LEVEL: *key = level(r); return true;
    case SYNC_SORT_BY_NAME: break;
    }
    return false;
}

/* a < b in list order. Equal keys fall back to the full comparison, which
 * re-checks the first criterion (equal) and goes on. */
static inline bool item_less(const struct sync_list *l, const struct sort_item *a, const struct sort_item *b)
{
    if (a->key != b->key) return a->key < b->key;
    return compare(l, a->r, b->r) < 0;
}

/* Sorts a[0..n) (tmp has room for n items): insertion sort of short runs,
 * then bottom-up merges, skipping a merge whose halves are already in order. */
static void sort_items(const struct sync_list *l, struct sort_item *a, struct sort_item *tmp, size_t n)
{
    enum { RUN = 16 };
    for (size_t s = 0; s < n; s += RUN) {
        size_t e = s + RUN < n ? s + RUN : n;
        for (size_t i = s + 1; i < e; i++) {
            struct sort_item x = a[i];
            size_t j = i;
            for (; j > s && item_less(l, &x, &a[j - 1]); j--) a[j] = a[j - 1];
            a[j] = x;
        }
    }
    struct sort_item *src = a, *dst = tmp;
    for (size_t w = RUN; w < n; w *= 2) {
        for (size_t s = 0; s < n; s += 2 * w) {
            size_t m = s + w < n ? s + w : n, e = s + 2 * w < n ? s + 2 * w : n;
            if (m == e || !item_less(l, &src[m], &src[m - 1])) {
                memcpy(&dst[s], &src[s], (e - s) * sizeof(*src));
                continue;
            }
            size_t i = s, j = m, k = s;
            while (i < m && j < e) dst[k++] = item_less(l, &src[j], &src[i]) ? src[j++] : src[i++];
            while (i < m) dst[k++] = src[i++];
            while (j < e) dst[k++] = src[j++];
        }
        struct sort_item *t = src;
        src = dst;
        dst = t;
    }
    if (src != a) memcpy(a, src, n * sizeof(*a));
}

static void resort(struct sync_list *l)
{
    if (l->n < 2) {
        reindex(l, 0, l->n);
        return;
    }
    struct sort_item *items = xmalloc(2 * l->n * sizeof(*items));
    for (size_t i = 0; i < l->n; i++) {
        items[i].r = l->v[i];
        if (!first_key(l, l->v[i], &items[i].key)) items[i].key = 0;
    }
    sort_items(l, items, items + l->n, l->n);
    for (size_t i = 0; i < l->n; i++) {
        l->v[i] = items[i].r;
        l->v[i]->index = i;
    }
    free(items);
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
    return index_find(l, room_id, hash_bytes(room_id, strlen(room_id)));
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
    reserve_v(l, l->n + 1);
    memmove(&l->v[lo + 1], &l->v[lo], (l->n - lo) * sizeof(*l->v));
    l->v[lo] = r;
    l->n++;
    return lo;
}

/* Takes the entry at i out of v (it stays in the index). */
static void take_out(struct sync_list *l, size_t i)
{
    memmove(&l->v[i], &l->v[i + 1], (l->n - i - 1) * sizeof(*l->v));
    l->n--;
}

void sync_list_upsert(struct sync_list *l, const struct sync_list_keys *k, int64_t *from,
                      int64_t *to)
{
    size_t len = k->room_id_len ? k->room_id_len : strlen(k->room_id), slot;
    uint32_t h = k->room_id_len ? k->hash : hash_bytes(k->room_id, len);
    index_reserve(l, l->n + 1);
    struct sync_list_room *r = index_lookup(l, k->room_id, h, &slot);
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
        /* The entry and its room ID in one allocation. */
        r = xcalloc(1, sizeof(*r) + len + 1);
        r->room_id = (char *)(r + 1);
        memcpy(r->room_id, k->room_id, len);
        r->hash = h;
        set_keys(r, k);
        l->slots[slot] = r;
        lo = insert_sorted(l, r);
        hi = l->n;
    }
    reindex(l, lo, hi);
    if (from) *from = f;
    if (to) *to = (int64_t)r->index;
}

int sync_list_remove(struct sync_list *l, const char *room_id, int64_t *from)
{
    struct sync_list_room *r = index_find(l, room_id, hash_bytes(room_id, strlen(room_id)));
    if (!r) return -1;
    size_t f = r->index;
    take_out(l, f);
    reindex(l, f, l->n);
    index_del(l, r);
    room_free(r);
    if (from) *from = (int64_t)f;
    return 0;
}

void sync_list_upsert_many(struct sync_list *l, const struct sync_list_keys *k, size_t n)
{
    if (n == 0) {
        resort(l);
        return;
    }
    /* One block for every room that may be new (all of them when building a
     * list from empty, the common case): entries, then their IDs. */
    size_t *lens = xmalloc(n * sizeof(*lens)), id_bytes = 0;
    for (size_t i = 0; i < n; i++) {
        lens[i] = k[i].room_id_len ? k[i].room_id_len : strlen(k[i].room_id);
        id_bytes += lens[i] + 1;
    }

    struct sync_list_block *b = xmalloc(sizeof(*b) + n * sizeof(b->rooms[0]) + id_bytes);
    char *ids = (char *)&b->rooms[n];
    size_t used = 0;
    index_reserve(l, l->n + n);
    reserve_v(l, l->n + n);
    for (size_t i = 0; i < n; i++) {
        uint32_t h = k[i].room_id_len ? k[i].hash : hash_bytes(k[i].room_id, lens[i]);
        size_t slot;
        struct sync_list_room *r = index_lookup(l, k[i].room_id, h, &slot);
        if (!r) {
            r = &b->rooms[used++];
            memcpy(ids, k[i].room_id, lens[i] + 1);
            *r = (struct sync_list_room){.room_id = ids, .hash = h, .in_block = true};
            ids += lens[i] + 1;
            l->slots[slot] = r;
            l->v[l->n++] = r;
        }
        set_keys(r, &k[i]);
    }
    free(lens);
    if (used) {
        b->next = l->blocks;
        l->blocks = b;
    } else {
        free(b);
    }
    resort(l);
}
