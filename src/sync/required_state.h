/* required_state matching (docs/behaviour.md, "required_state").
 *
 * A request's required_state is a list of [event_type, state_key] pairs,
 * where "*" (as a whole value only, no globbing) is a wildcard, a state_key
 * of exactly "$ME" means the syncing user, and ["m.room.member","$LAZY"]
 * asks for lazy-loaded members (the senders of the returned timeline; the
 * caller adds those, the matcher only reports the flag).
 *
 *  - ["*","*"] present: all-state mode. Every state event matches, except
 *    that an event type which also has explicit keys listed matches only
 *    those keys (["*","*"],["m.room.member","@a"] = all state, but only @a's
 *    membership; with $LAZY, no members except the lazy ones). Other entries
 *    with a "*" are then irrelevant.
 *  - otherwise (T,K) matches if [T,K], [T,"*"] or ["*",K] was listed.
 *  - an entry whose type starts with RS_EXCLUDE is an exclusion (the object
 *    form's `exclude`, translated by msc4186_request.c): [RS_EXCLUDE T, K]
 *    with the same wildcards; a state event an exclusion covers never
 *    matches, whatever else was listed (lazily loaded members, which the
 *    caller adds, are not subject to it).
 *
 * A compiled struct rs_matcher is immutable and may be shared read-only. */
#ifndef SYNCV3_SYNC_REQUIRED_STATE_H
#define SYNCV3_SYNC_REQUIRED_STATE_H

#include <stdbool.h>
#include <stddef.h>

/* One required_state entry. Ownership belongs to the array's holder. */
struct rs_pair {
    char *type; /* event type or "*" */
    char *key;  /* state key, "*", "$ME" or "$LAZY" */
};

#define RS_WILDCARD "*"
#define RS_ME "$ME"
#define RS_LAZY "$LAZY"
/* Type prefix of an exclusion entry (a control character no event type has). */
#define RS_EXCLUDE "\x1d"

struct rs_entry; /* private hash entry */

struct rs_matcher {
    bool all_state;              /* ["*","*"] was listed */
    bool lazy_members;           /* ["m.room.member","$LAZY"] was listed */
    char **types;                /* T of every [T,"*"] (T != "*"), deduplicated, owned */
    size_t n_types;              /* entries in types */
    char **keys;                 /* K of every ["*",K] (K != "*"), $ME resolved, owned */
    size_t n_keys;               /* entries in keys */
    struct rs_pair *pairs;       /* exact [T,K] (no "*", no $LAZY), $ME resolved, owned */
    size_t n_pairs;              /* entries in pairs */
    struct rs_entry *h_types;    /* uthash over types */
    struct rs_entry *h_keys;     /* uthash over keys */
    struct rs_entry *h_pairs;    /* uthash over pairs ("type\0key") */
    struct rs_entry *h_explicit; /* uthash: types having an exact pair (or $LAZY) */
    bool exclude_all;            /* [RS_EXCLUDE "*","*"] was listed */
    struct rs_entry *x_types;    /* uthash: T of every exclusion [T,"*"] */
    struct rs_entry *x_keys;     /* uthash: K of every exclusion ["*",K] */
    struct rs_entry *x_pairs;    /* uthash: exact exclusions ("type\0key") */
};

/* Compiles n pairs. user_id replaces "$ME" keys (NULL leaves them literal).
 * Copies everything; `pairs` may be freed afterwards. Release with
 * rs_matcher_release. */
void rs_matcher_init(struct rs_matcher *m, const struct rs_pair *pairs, size_t n,
                     const char *user_id);
void rs_matcher_release(struct rs_matcher *m);
/* Whether two pair arrays are the same pairs in the same order (then one
 * matcher serves both). */
bool rs_pairs_equal(const struct rs_pair *a, size_t na, const struct rs_pair *b, size_t nb);

/* Whether the state event (type, state_key) is to be returned. Lazy members
 * are not covered: the caller adds them when m->lazy_members is set. */
bool rs_match(const struct rs_matcher *m, const char *type, const char *state_key);

/* The cheapest store query that covers rs_match:
 *  RS_QUERY_NONE     - nothing (possibly lazy members only);
 *  RS_QUERY_ALL      - all current state, then filter each event by rs_match;
 *  RS_QUERY_SELECTED - the union of: every event of a type in m->types, every
 *                      event whose state key is in m->keys, and the exact
 *                      m->pairs. Everything it returns matches. */
enum rs_query {
    RS_QUERY_NONE,
    RS_QUERY_ALL,
    RS_QUERY_SELECTED,
};
enum rs_query rs_query_kind(const struct rs_matcher *m);

#endif
