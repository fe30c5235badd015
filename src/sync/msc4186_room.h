/* Room objects in MSC4186 shape (the fields and value types matrix-rust-sdk's
 * ruma v5 types and matrix-js-sdk read).
 *
 * A snapshot (`initial: true`) carries everything: name (m.room.name only),
 * avatar, heroes (joined rooms without a name), is_dm, required_state,
 * timeline with limited/prev_batch, bump_stamp, joined/invited counts and the
 * unread counts; an invite carries its stripped state as `invite_state`. A live
 * update carries only what changed: new timeline events (num_live, limited
 * false), the state events among them that the room's required_state asks
 * for, name/avatar when those state events changed (avatar null when
 * removed), heroes and member counts after a membership change, and the
 * bump_stamp. Text values that are not strings in hostile state are left out,
 * never written with another type. */
#ifndef SYNCV3_SYNC_MSC4186_ROOM_H
#define SYNCV3_SYNC_MSC4186_ROOM_H

#include <stdbool.h>
#include <stddef.h>

#include "base/buf.h"
#include "sync/room.h"

/* Most heroes a room object lists (as Synapse). */
#define MSC4186_MAX_HEROES 5

/* Appends the room object of r to b. live_state (n_live_state entries,
 * borrowed) are r's live state events that match the room's required_state;
 * they go into `required_state` after r->state (lazily loaded members).
 * dm_changed: a live update says `is_dm` (true or false) as it is now. */
void msc4186_room_write(struct buf *b, const char *user_id, const struct resp_room *r, struct event *const *live_state,
                        size_t n_live_state, bool dm_changed);

#endif
