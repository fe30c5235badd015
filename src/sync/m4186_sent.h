/* What an MSC4186 connection remembers of each room it sent (conn_msc4186.c
 * keeps it, conn_persist.c stores it across restarts). Not for use outside
 * src/sync/conn*.c. A field added here is stored once conn_persist_sent_encode
 * and conn_persist_sent_decode (the one pair that serialises it) know it. */
#ifndef SYNCV3_SYNC_M4186_SENT_H
#define SYNCV3_SYNC_M4186_SENT_H

#include <stdbool.h>
#include <stdint.h>
#include "base/hash.h"

/* MSC4186 positions of one connection stay below its base plus this; bases
 * are this far apart (conn_msc4186.c). */
#define M4186_POS_SPACING 1000000000LL

/* What a room was last sent as on an MSC4186 connection: the parameters
 * (timeline_limit and required_state of every source showing it), the state
 * of the connection's view then, and how far the client has the room. A
 * room that comes back into a window with both unchanged is not sent again:
 * the client has it; one that changed, or whose parameters changed, gets
 * only what is new to the client (docs/behaviour.md, "Re-sending a room").
 * Only IDs, positions and hashes: never events. */
struct m4186_sent {
    char *room_id;         /* owned; hash key */
    char *params;          /* the parameters, as a canonical string (owned) */
    int64_t latest_nid;    /* the room's newest event then */
    int64_t notif;         /* unread counts then */
    int64_t highlight;     /* and highlights */
    bool invite;           /* was an invite */
    int64_t invite_ts;     /* when the invite arrived */
    bool is_dm;            /* was a DM */
    int64_t join_nid;      /* the user's join it was sent under */
    int64_t pos;           /* the connection's position when it was last written */
    int64_t tl_limit;      /* the timeline_limit the client's timeline of it reflects */
    uint64_t name_hash;    /* hash of the name last sent */
    uint64_t avatar_hash;  /* of the avatar */
    uint64_t members_hash; /* of the heroes and member counts */
    UT_hash_handle hh;     /* in conn.m4186_sent */
};

#endif
