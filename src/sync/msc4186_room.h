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
 * bump_stamp. A delta (a room the client has, re-sent because it changed
 * while out of view or its parameters changed) is a live update built from
 * the store: the events since it was last written (limited past the
 * timeline_limit), the state it lacks, and name/avatar/heroes/counts when
 * they differ from what was written; `unstable_expanded_timeline` when the
 * timeline_limit grew and the timeline is re-sent whole. A name or avatar
 * removed is sent as null. Text values that are not strings in hostile state are left out,
 * never written with another type. */
#ifndef SYNCV3_SYNC_MSC4186_ROOM_H
#define SYNCV3_SYNC_MSC4186_ROOM_H

#include <stdbool.h>
#include <stddef.h>

#include "base/buf.h"
#include "sync/room.h"

/* Most heroes a room object lists (as Synapse). */
#define MSC4186_MAX_HEROES 5

/* What of a room's name, avatar and members differs from what the client
 * was last sent (for a delta). */
struct msc4186_changes {
    bool name;    /* m.room.name's name */
    bool avatar;  /* m.room.avatar's url */
    bool members; /* heroes or member counts */
};

/* What a room object says beyond the room itself (conn_msc4186_write). */
struct msc4186_out {
    bool final;              /* final-text names: stripped_state, expanded_timeline, no unread counts */
    const char *membership;  /* `membership` (join, invite, leave, ban), or NULL for none */
    const char *const *lists; /* names of the lists whose window holds the room (borrowed) */
    size_t n_lists;          /* entries in lists */
};

/* Appends the room object of r to b. live_state (n_live_state entries,
 * borrowed) are r's live state events that match the room's required_state;
 * they go into `required_state` after r->state (lazily loaded members).
 * dm_changed: a live update or delta says `is_dm` (true or false) as it is
 * now. ch: for a delta (r->delta), what else changed. out: membership,
 * lists and the dialect. */
void msc4186_room_write(struct buf *b, const char *user_id, const struct resp_room *r, struct event *const *live_state,
                        size_t n_live_state, bool dm_changed, const struct msc4186_changes *ch,
                        const struct msc4186_out *out);

#endif
