/* required_state matching; see required_state.h. */
#include "sync/required_state.h"

#include <stdlib.h>
#include <string.h>

#include "base/hash.h"

#include "base/alloc.h"

struct rs_entry {
    char *key;         /* hash key bytes, owned */
    size_t len;        /* key length (pairs embed a NUL between type and key) */
    UT_hash_handle hh; /* in one of the matcher's tables */
};

static bool is_wild(const char *s) { return strcmp(s, RS_WILDCARD) == 0; }

static struct rs_entry *find(struct rs_entry *h, const char *k, size_t len)
{
    struct rs_entry *e = NULL;
    HASH_FIND(hh, h, k, len, e);
    return e;
}

/* Adds k (len bytes) to *h; returns false if it was already there. */
static bool add(struct rs_entry **h, const char *k, size_t len)
{
    if (find(*h, k, len)) return false;
    struct rs_entry *e = xcalloc(1, sizeof(*e));
    e->key = xmalloc(len + 1);
    memcpy(e->key, k, len);
    e->key[len] = 0;
    e->len = len;
    HASH_ADD_KEYPTR(hh, *h, e->key, e->len, e);
    return true;
}

static void clear(struct rs_entry **h)
{
    struct rs_entry *e, *tmp;
    HASH_ITER(hh, *h, e, tmp)
    {
        HASH_DEL(*h, e);
        free(e->key);
        free(e);
    }
}

/* "type\0key" as a heap buffer; *len excludes the final terminator. */
static char *pair_key(const char *type, const char *key, size_t *len)
{
    size_t tl = strlen(type), kl = strlen(key);
    char *b = xmalloc(tl + kl + 2);
    memcpy(b, type, tl + 1);
    memcpy(b + tl + 1, key, kl + 1);
    *len = tl + 1 + kl;
    return b;
}

static void push_str(char ***v, size_t *n, const char *s)
{
    *v = xrealloc(*v, (*n + 1) * sizeof(**v));
    (*v)[(*n)++] = xstrdup(s);
}

void rs_matcher_init(struct rs_matcher *m, const struct rs_pair *pairs, size_t n,
                     const char *user_id)
{
    memset(m, 0, sizeof(*m));
    for (size_t i = 0; i < n; i++) {
        const char *type = pairs[i].type, *key = pairs[i].key;
        if (user_id && strcmp(key, RS_ME) == 0) key = user_id;
        bool excl = strncmp(type, RS_EXCLUDE, strlen(RS_EXCLUDE)) == 0;
        if (excl) type += strlen(RS_EXCLUDE);
        bool wt = is_wild(type), wk = is_wild(key);
        if (excl) {
            if (wt && wk) {
                m->exclude_all = true;
            } else if (wk) {
                add(&m->x_types, type, strlen(type));
            } else if (wt) {
                add(&m->x_keys, key, strlen(key));
            } else {
                size_t len;
                char *pk = pair_key(type, key, &len);
                add(&m->x_pairs, pk, len);
                free(pk);
            }
        } else if (wt && wk) {
            m->all_state = true;
        } else if (!wt && strcmp(type, "m.room.member") == 0 && strcmp(key, RS_LAZY) == 0) {
            m->lazy_members = true;
            /* In all-state mode, $LAZY restricts members to the lazy ones. */
            add(&m->h_explicit, type, strlen(type));
        } else if (wk) {
            if (add(&m->h_types, type, strlen(type))) push_str(&m->types, &m->n_types, type);
        } else if (wt) {
            if (add(&m->h_keys, key, strlen(key))) push_str(&m->keys, &m->n_keys, key);
        } else {
            size_t len;
            char *pk = pair_key(type, key, &len);
            if (add(&m->h_pairs, pk, len)) {
                m->pairs = xrealloc(m->pairs, (m->n_pairs + 1) * sizeof(*m->pairs));
                m->pairs[m->n_pairs++] = (struct rs_pair){xstrdup(type), xstrdup(key)};
            }
            free(pk);
            add(&m->h_explicit, type, strlen(type));
        }
    }
}

bool rs_pairs_equal(const struct rs_pair *a, size_t na, const struct rs_pair *b, size_t nb)
{
    if (na != nb) return false;
    if (a == b) return true;
    for (size_t i = 0; i < na; i++)
        if (strcmp(a[i].type, b[i].type) != 0 || strcmp(a[i].key, b[i].key) != 0) return false;
    return true;
}

void rs_matcher_release(struct rs_matcher *m)
{
    for (size_t i = 0; i < m->n_types; i++) free(m->types[i]);
    for (size_t i = 0; i < m->n_keys; i++) free(m->keys[i]);
    for (size_t i = 0; i < m->n_pairs; i++) {
        free(m->pairs[i].type);
        free(m->pairs[i].key);
    }
    free(m->types);
    free(m->keys);
    free(m->pairs);
    clear(&m->h_types);
    clear(&m->h_keys);
    clear(&m->h_pairs);
    clear(&m->h_explicit);
    clear(&m->x_types);
    clear(&m->x_keys);
    clear(&m->x_pairs);
    memset(m, 0, sizeof(*m));
}

static bool in_pairs(struct rs_entry *h, const char *type, const char *state_key)
{
    if (!h) return false;
    size_t len;
    char *pk = pair_key(type, state_key, &len);
    bool found = find(h, pk, len) != NULL;
    free(pk);
    return found;
}

static bool has_pair(const struct rs_matcher *m, const char *type, const char *state_key)
{
    return in_pairs(m->h_pairs, type, state_key);
}

static bool excluded(const struct rs_matcher *m, const char *type, const char *state_key)
{
    return m->exclude_all || (m->x_types && find(m->x_types, type, strlen(type))) ||
           (m->x_keys && find(m->x_keys, state_key, strlen(state_key))) || in_pairs(m->x_pairs, type, state_key);
}

bool rs_match(const struct rs_matcher *m, const char *type, const char *state_key)
{
    if (excluded(m, type, state_key)) return false;
    if (m->all_state) {
        if (find(m->h_explicit, type, strlen(type))) return has_pair(m, type, state_key);
        return true;
    }
    return find(m->h_types, type, strlen(type)) ||
           find(m->h_keys, state_key, strlen(state_key)) || has_pair(m, type, state_key);
}

enum rs_query rs_query_kind(const struct rs_matcher *m)
{
    if (m->all_state) return RS_QUERY_ALL;
    if (m->n_types || m->n_keys || m->n_pairs) return RS_QUERY_SELECTED;
    return RS_QUERY_NONE;
}
