/* What an MSC4186 connection remembers of each room it sent (conn_msc4186.c
 * keeps it, conn_persist.c stores it across restarts). Not for use outside
 * src/sync/conn*.c. A field added here is stored once conn_persist_sent_encode
 * and conn_persist_sent_decode (the one pair that serialises it) know it. */
#ifndef SYNCV3_SYNC_M4186_SENT_H
#define SYNCV3_SYNC_M4186_SENT_H

#include <stdbool.h>
#include <stdint.h>
#include <uthash.h>

/* MSC4186 positions of one connection stay below its base plus this; bases
 * are this far apart (conn_msc4186.c). */
#define M4186_POS_SPACING 1000000000LL

/* What a room was last sent as on an MSC4186 connection: the parameters
 * (timeline_limit and required_state of every source showing it) and the
 * state of the connection's view then. A room that comes back into a window
 * with both unchanged is not sent again: the client has it. */
struct m4186_sent {
    char *room_id;      /* owned; hash key */
    char *params;       /* the parameters, as a canonical string (owned) */
    int64_t latest_nid; /* the room's newest event then */
    int64_t notif;      /* unread counts then */
    int64_t highlight;  /* and highlights */
    bool invite;        /* was an invite */
    int64_t invite_ts;  /* when the invite arrived */
    bool is_dm;         /* was a DM */
    UT_hash_handle hh;  /* in conn.m4186_sent */
};

#endif
