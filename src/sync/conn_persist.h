/* MSC4186 connections across restarts (docs/behaviour.md, "Connections
 * across restarts"): what a connection stores on response completion (what
 * each room was last sent as, the extension positions, the position of the
 * last change), and rebuilding a connection from it when a request's pos is
 * unknown in memory. The rows are written through store/connstate.
 *
 * Threads: everything runs on the HTTP thread computing the connection's
 * request (its request lock held), on a database connection taken for at
 * most DB_WAIT_HTTP_MS. */
#ifndef SYNCV3_SYNC_CONN_PERSIST_H
#define SYNCV3_SYNC_CONN_PERSIST_H

#include <stdbool.h>
#include <stdint.h>

#include "store/connstate.h"
#include "sync/conn.h"

struct m4186_sent;
struct ext_state;

/* Version of the stored values: a row of another version is not used. */
#define CONN_PERSIST_FORMAT 1
/* A connection that wrote nothing new still marks its row as in use this
 * often (the row of a busy connection is rewritten on every change anyway). */
#define CONN_PERSIST_TOUCH_MS (5 * 60 * 1000)
/* A row not written for this long is expired: the idle time of connections
 * in memory plus one touch interval (the ingest thread's purge uses the
 * store's name for it). */
#define CONN_PERSIST_IDLE_MS STORE_CONN_KEEP_MS
_Static_assert(CONN_PERSIST_IDLE_MS == CONN_IDLE_MS + CONN_PERSIST_TOUCH_MS, "expiry = idle time + one touch");
/* Most bytes one connection stores (room IDs and their values): a
 * connection past it is not kept across restarts. */
#define CONN_PERSIST_MAX_BYTES (4 * 1024 * 1024)
/* More rooms than this changed since the stored state ("too much changed"):
 * the client starts over (M_UNKNOWN_POS), as a catch-up that large costs
 * about as much as a new connection. */
#define CONN_PERSIST_MAX_CHANGED 500

/* The pair that (de)serialises one room's entry: text for the store (heap),
 * and back (fills *s, whose room_id the caller sets; returns 0, or -1 when
 * the text is malformed). Unknown keys are ignored, missing ones are zero. */
char *conn_persist_sent_encode(const struct m4186_sent *s);
int conn_persist_sent_decode(const char *text, struct m4186_sent *s);
/* The same for the extension positions kept per connection. */
char *conn_persist_ext_encode(const struct ext_state *e);
int conn_persist_ext_decode(const char *text, struct ext_state *e);

/* A stored connection read back for a request. */
struct conn_saved;

/* Looks up the stored state of (user, device, conn_id) for a request with
 * pos. Returns 1 with *out when it is usable, 0 when there is none or it is
 * unusable (expired, another instance's or too old a pos, another format,
 * malformed: *why says which, static), -1 on a database error (*err heap). */
int conn_persist_lookup(struct sync_ctx *ctx, const char *user_id, const char *device_id, const char *conn_id,
                        int64_t pos, struct conn_saved **out, const char **why, char **err);
void conn_saved_free(struct conn_saved *sv);
/* Gives a new, locked, not yet applied connection the saved state (taking
 * sv): what it sent, its extension positions, its position base. */
void conn_persist_restore(struct conn *c, struct conn_saved *sv);
/* After the request was applied to a restored connection (its rooms
 * loaded) into resp: -1 when too much changed since (then its row is
 * deleted and the client starts over), else 0, and the connection continues
 * from pos (account data changed since is read into resp). */
int conn_persist_resume(struct conn *c, struct conn_resp *resp, int64_t pos);

#endif
