/* MSC4186 ("simplified sliding sync") request bodies, translated into the
 * MSC3575 form the connection code works with.
 *
 * Nothing in an MSC4186 request is sticky: each body states every list,
 * room subscription and extension in full. The translation therefore writes
 * every field explicitly (ranges, required_state, filters, timeline_limit,
 * the fixed bump event types, every known extension with `enabled`), so that
 * the MSC3575 sticky merge replaces what the connection had. Lists and
 * subscriptions the new body lacks are removed when the request is applied
 * (conn_msc4186_apply), as only the connection knows them.
 *
 * Also accepted, and ignored, are the MSC3575-era fields clients still send
 * (`sort`, `include_old_rooms`, `unsubscribe_rooms`, `slow_get_all_rooms`,
 * `bump_event_types`, `txn_id`); `range` (one window) and `is_invited` of the
 * final text are taken as `ranges: [range]` and `is_invite`, its object-form
 * `required_state` as pairs (exclusions with the RS_EXCLUDE prefix), and its
 * `pos`, `timeout` and `set_presence` in the body are validated and handed
 * back in struct msc4186_top. A request using a form only the final text has
 * (object `required_state`, `range`, `pos` in the body) is a final-text one
 * and is answered with the final text's names (conn_msc4186_write). Pure;
 * thread-safe. */
#ifndef SYNCV3_SYNC_MSC4186_REQUEST_H
#define SYNCV3_SYNC_MSC4186_REQUEST_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sync/request.h"

/* Prefix of the internal conn_id of MSC4186 connections, so that they never
 * share state with an MSC3575 connection of the same conn_id. */
#define MSC4186_CONN_PREFIX "4186\x1f"

/* Most room subscriptions of a request (the final text's bound). */
#define MSC4186_MAX_SUBSCRIPTIONS 100

/* Key of the translated body marking a final-text request. */
#define MSC4186_FINAL_KEY "\x1f" "final"

/* The top-level fields of the final text a body may carry. */
struct msc4186_top {
    char *pos;        /* body `pos` (owned), NULL if absent */
    bool has_timeout; /* body `timeout` given */
    int64_t timeout;  /* its value, milliseconds */
    bool final;       /* a form only the final text has was used */
};

void msc4186_top_release(struct msc4186_top *t);

/* Whether v is a set_presence value of the final text (online, offline,
 * unavailable). */
bool msc4186_presence_valid(const char *v);

/* The event types whose newest event gives a room's bump_stamp and its place
 * in every list (the MSC's fixed list) are store_bump_types (store/bump.h),
 * whose per-room values the cache keeps. */

/* Translates a body of len bytes (len 0 = "{}") into the MSC3575 form
 * described above, filling *top (may be NULL; release with
 * msc4186_top_release) on success. On success returns 0 and *out, a new reference the caller
 * must json_decref. On failure returns an enum sync_req_err with *err filled
 * (err may be NULL) and *out = NULL. Later validation (sync_req_parse of the
 * dumped result) catches what the translation passes on unchanged. */
int msc4186_req_translate(const char *body, size_t len, json_t **out, struct msc4186_top *top,
                          struct sync_req_error *err);

/* Whether a translated body is of a final-text request. */
bool msc4186_req_final(json_t *translated);

/* A translated body as the string retransmits are compared by (sorted keys,
 * no txn_id; pos and timeout are not in it). Heap (free). */
char *msc4186_req_canonical(json_t *translated);

/* Translates and parses a body into out (fresh or released; initialised here),
 * keeping the translated object in *translated (new reference, or NULL on
 * failure). out->conn_id is the internal one (MSC4186_CONN_PREFIX + the
 * client's, or the bare prefix when absent). Returns 0 or an enum
 * sync_req_err with *err filled. */
int msc4186_req_parse(struct sync_req *out, json_t **translated, struct msc4186_top *top, const char *body,
                      size_t len, struct sync_req_error *err);

#endif
