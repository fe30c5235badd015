/* MSC4186 on a connection: applying a request that replaces (rather than
 * merges into) the connection's parameters, and writing the lists and rooms
 * of a response in MSC4186 shape. The connection still remembers what it
 * sent: rooms already in a window get only their changes (new timeline
 * events, the state among them that required_state asks for), unchanged
 * rooms are left out, rooms the client has that come back changed or whose
 * parameters changed get what is new to it (conn_msc4186_prepare/_trim in
 * conn_priv.h), rooms new to it are sent whole. Caller holds the
 * connection's request lock. */
#ifndef SYNCV3_SYNC_CONN_MSC4186_H
#define SYNCV3_SYNC_CONN_MSC4186_H

#include <jansson.h>

#include "base/buf.h"

struct conn;
struct conn_resp;

/* Marks the connection as MSC4186 and applies translated (a body from
 * msc4186_req_translate, borrowed): lists and room subscriptions the
 * connection has but the body lacks are removed, a timeline_limit lowered to
 * 0 takes effect, and the rest goes through conn_apply_request. Returns 0 or
 * -1 with *err (heap). */
int conn_msc4186_apply(struct conn *c, json_t *translated, struct conn_resp *resp, char **err);

/* Appends `"lists":{...},"rooms":{...}` of a finished response: per list its
 * count and one SYNC op per range with the room IDs in it (as Synapse). */
void conn_msc4186_write(struct conn *c, struct conn_resp *resp, struct buf *b);

#endif
