/* Per room, the newest timeline event of each of a fixed set of types (the
 * bump event types of MSC4186), kept by ingest in syncv3_room_bump. */
#ifndef SYNCV3_STORE_BUMP_H
#define SYNCV3_STORE_BUMP_H

#include <libpq-fe.h>
#include <stdint.h>

#define STORE_N_BUMP 7

/* The types, in the order of the arrays below (and of 0005_room_bump.sql). */
extern const char *const store_bump_types[STORE_N_BUMP];

/* One room's newest event of each type; nid 0 = none. */
struct store_bump {
    int64_t nid[STORE_N_BUMP]; /* event NID of the newest event of store_bump_types[i] */
    int64_t ts[STORE_N_BUMP];  /* its origin_server_ts */
};

/* Index of type in store_bump_types, or -1. */
int store_bump_index(const char *type);
/* Whether the n types are exactly the set store_bump_types (any order,
 * repeats allowed). */
int store_bump_is_default(const char *const *types, int n);
/* The newest origin_server_ts among the newest events of each type with a
 * NID in (after_nid, pos]: 0 when there is none, -1 when the answer needs
 * the store (an event newer than pos hides the older ones). */
int64_t store_bump_ts(const struct store_bump *b, int64_t after_nid, int64_t pos);
/* Records events (four array literals of the same length: room ids, types,
 * NIDs, timestamps); a row only moves to a newer NID. Returns 0 or -1. */
int store_bump_put(PGconn *c, char **err, const char *rooms, const char *types, const char *nids, const char *ts);

#endif
