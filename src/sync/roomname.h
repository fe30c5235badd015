/* Computed room names and the by_name sort key (docs/behaviour.md, "Room
 * names", "Sorts").
 * Pure functions; results are heap strings the caller frees. */
#ifndef SYNCV3_SYNC_ROOMNAME_H
#define SYNCV3_SYNC_ROOMNAME_H

#include <stddef.h>
#include <stdint.h>

/* At most this many heroes are named; extra ones are ignored. */
#define ROOMNAME_MAX_HEROES 5

/* A member shown in a computed name (borrowed strings). */
struct roomname_hero {
    const char *user_id;     /* e.g. "@alice:example.org"; must not be NULL */
    const char *displayname; /* from the member event; NULL or "" = none */
};

/* The name a client shows for a room, for one user:
 *   1. `name` (m.room.name) if non-empty;
 *   2. else `alias` (m.room.canonical_alias) if non-empty;
 *   3. else built from the heroes (the syncing user already removed, most
 *      relevant first; only the first ROOMNAME_MAX_HEROES are used) and the
 *      joined/invited member counts, e.g. "Alice, Bob and 3 others",
 *      "Alice and Bob", "Empty Room (was Alice and Bob)", "Empty Room".
 * Heroes whose label (displayname, else user ID) equals another hero's label
 * or user ID are shown as "<displayname> (<user_id>)".
 * Returns a heap string (never NULL) the caller frees. */
char *roomname_compute(const char *name, const char *alias, const struct roomname_hero *heroes,
                       size_t n_heroes, int64_t joined, int64_t invited);

/* The by_name sort key of a computed name: leading and trailing characters
 * from the set #!():_@ stripped, then ufold_sort_key (case-insensitive for
 * every script, accents second; compare keys with strcmp). NULL is treated
 * as "". Returns a heap string the caller frees. */
char *roomname_sort_key(const char *name);

#endif
