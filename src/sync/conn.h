/* Sliding-sync connections: one per (user, device, conn_id), holding the
 * sticky request, the lists with their sorted rooms, the user's rooms as the
 * connection last saw them, the queue of live updates from the caches, and the
 * responses not yet acknowledged.
 *
 * Threads: requests of one connection are serialised by req_lock (held only
 * while computing, never while parked). The ingest thread only touches a
 * connection through its listener, which appends to the queue under q_lock
 * and wakes the parked request. Lock order: req_lock -> cache lock -> q_lock. */
#ifndef SYNCV3_SYNC_CONN_H
#define SYNCV3_SYNC_CONN_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/buf.h"
#include "sync/request.h"

struct cache;
struct db_pool;
struct ext_registry;
struct http_req;
struct metrics;

/* Most queued live updates a connection holds before it is declared dead
 * (its client gets M_UNKNOWN_POS and starts over). */
#define CONN_MAX_QUEUE 2000
/* Idle connections are forgotten after this long. */
#define CONN_IDLE_MS (30 * 60 * 1000)
/* Most connections (conn_ids) one device keeps; more end the least recently used. */
#define CONN_MAX_PER_DEVICE 64
/* Most unacknowledged responses kept per connection. */
#define CONN_MAX_BUFFERED 8
/* Most bytes of unacknowledged responses kept per connection (the newest
 * always stays, however large). Past either bound the responses the client
 * has go first; when only dropping one it may not have received would do,
 * the connection ends instead (conn_finish). */
#define CONN_MAX_BUFFERED_BYTES (4 * 1024 * 1024)
/* Most connections of one user across all their devices; more end the least
 * recently used (idle ones first). */
#define CONN_MAX_PER_USER 100
/* Most live updates queued across all connections of one user: an update that
 * would pass it ends the connection it was for, like a full queue. */
#define CONN_MAX_QUEUE_PER_USER 10000

/* Shared services a connection computes with. */
struct sync_ctx {
    struct cache *cache;       /* room and user caches */
    struct db_pool *db;        /* store */
    struct metrics *metrics;   /* may be NULL */
    struct ext_registry *ext;  /* devices whose to-device stream was served since start */
};

struct conn;
struct conn_map;
struct conn_resp;

/* A generated response kept until the client acknowledges it. */
struct conn_buffered {
    int64_t pos;   /* its pos */
    char *body;    /* the JSON (owned) */
    size_t len;    /* bytes */
};

struct conn_map *conn_map_new(struct sync_ctx *ctx);
/* Ends every connection (their parked requests are woken and answer). */
void conn_map_free(struct conn_map *m);
/* The live connection or NULL; the result holds a reference (conn_unref). */
struct conn *conn_map_get(struct conn_map *m, const char *user_id, const char *device_id, const char *conn_id);
/* A new connection, replacing (and ending) any with the same identity. Ref'd.
 * *replaced receives the ended connection's map reference (or NULL), for the
 * caller to drop with conn_unref once the response is on its way: freeing a
 * large connection is then off the request's path. */
struct conn *conn_map_create(struct conn_map *m, const char *user_id, const char *device_id, const char *conn_id,
                             struct conn **replaced);
/* Why a connection was ended. */
enum conn_end_reason {
    CONN_END_OTHER, /* replaced, idle, too far behind, too many unacknowledged responses, abandoned:
                       its client starts over */
    CONN_END_TOKEN, /* the homeserver rejected its device's token */
};

/* Ends every connection of a device because its token was rejected
 * (conn_end_reason then says CONN_END_TOKEN). */
void conn_map_end_device(struct conn_map *m, const char *user_id, const char *device_id);
/* Forgets connections idle for longer than CONN_IDLE_MS; returns how many. */
int conn_map_expire(struct conn_map *m, int64_t now_ms);
int conn_map_count(struct conn_map *m);
void conn_unref(struct conn *c);

/* ---- request processing (caller holds the connection's request lock) ---- */
void conn_lock(struct conn *c);
void conn_unlock(struct conn *c);
/* After a response of the connection was sent (or the request ended), not
 * holding the request lock: stores what that response left unstored (an
 * MSC4186 connection's first response, docs/behaviour.md "Connections
 * across restarts"). Never waits for the lock: a request holding it has
 * stored it already. */
void conn_settle(struct conn *c);
/* Ends the connection because a response could not be built after live
 * updates were taken from its queue: the client must start over rather than
 * miss them. Callable with the request lock held. */
void conn_abandon(struct conn *c);
/* Whether the connection was ended (token expired, buffer overflow, replaced, expired). */
bool conn_dead(struct conn *c);
/* Why it was ended (meaningful once conn_dead). */
enum conn_end_reason conn_end_reason(struct conn *c);
/* Response bookkeeping (docs/behaviour.md, "Positions and retransmits"). */
int64_t conn_last_req_pos(struct conn *c);
const char *conn_last_req_body(struct conn *c);
/* Drops buffered responses below pos; returns the first one above it, or NULL. */
const struct conn_buffered *conn_buffered_after(struct conn *c, int64_t pos);
bool conn_has_buffered(struct conn *c, int64_t pos);

struct conn_resp *conn_resp_new(void);
void conn_resp_free(struct conn_resp *r);
bool conn_resp_has_data(const struct conn_resp *r);
/* Room objects in the response (0 for NULL). */
size_t conn_resp_room_count(const struct conn_resp *r);
/* While the response holds one of the user's own events whose transaction
 * ID this device's upstream sync has not shown yet (docs/behaviour.md, "Transaction IDs"): the monotonic
 * time until which it should wait for it; else 0. */
int64_t conn_resp_hold_until(struct conn_resp *r);
/* Applies a parsed request: sticky merge, first load of the user's rooms,
 * list ops, room subscriptions, and the extensions' pass before long-polling
 * (sync/ext.h). Returns 0 or -1 with *err (heap). */
int conn_apply_request(struct conn *c, const struct sync_req *req, struct conn_resp *resp, char **err);
/* Folds queued live updates into resp (at most max of them), re-reading
 * extension data they touched. */
void conn_drain(struct conn *c, struct conn_resp *resp, int max);
/* Parks req as the connection's waiter unless updates are already queued
 * (returns false then) or the connection is dead. */
bool conn_set_waiter(struct conn *c, struct http_req *req);
/* Clears req as the waiter (if it still is). */
void conn_clear_waiter(struct conn *c, struct http_req *req);
/* Wakes the current waiter (a newer request on the same connection arrived). */
void conn_cancel_waiter(struct conn *c);
/* How many parked requests were cancelled so far (a woken request compares). */
int64_t conn_cancels(struct conn *c);
/* Builds the response JSON, assigns the next pos, buffers it, and records
 * req_pos / canonical body as the last processed request. Returns the body
 * (heap copy for the caller) or NULL with *err. The connection may be ended
 * by the buffering (see CONN_MAX_BUFFERED_BYTES); the body is still valid. */
char *conn_finish(struct conn *c, struct conn_resp *resp, const char *txn_id, int64_t req_pos,
                  const char *canonical_body, size_t *len, char **err);

#endif
