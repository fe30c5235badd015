/* The parts of a /sync v2 response that belong to the polling user or device
 * rather than to a room's shared timeline and state: account data, typing and
 * receipts, unread counts, invites, device lists and E2EE key counts. Each
 * function writes one section inside the accumulator's transaction (see
 * accumulate.h) and records what changed in the result; each returns 0, or -1
 * with *err set (the caller rolls the transaction back). */
#ifndef SYNCV3_INGEST_PERUSER_H
#define SYNCV3_INGEST_PERUSER_H

#include <jansson.h>
#include <libpq-fe.h>

#include "ingest/accumulate.h"

/* Where one response's per-user writes go. */
struct peruser {
    PGconn *c;              /* the connection, inside the accumulator's transaction */
    char **err;             /* where an error goes (heap) */
    const char *user_id;    /* the polling user */
    const char *device_id;  /* the polling device */
    struct acc_result *out; /* the result being filled (borrowed) */
};

/* Account data events of the user (room_id "" = global); a later duplicate
 * of a type in one batch wins, an unchanged one keeps its id. */
int peruser_account_data(struct peruser *x, const char *room_id, json_t *events);
/* A room's ephemeral events: the m.typing EDU when it differs from the stored
 * one, receipt rows whose event changed (private ones only of the user). */
int peruser_ephemeral(struct peruser *x, const char *room_id, json_t *events);
/* A room's unread_notifications; only fields present are changed. */
int peruser_unread(struct peruser *x, const char *room_id, json_t *un);
/* rooms.invite: the invite_state of every room the user is invited to. */
int peruser_invites(struct peruser *x, json_t *invites);
/* device_lists.changed / left into the device's NEW bucket. */
int peruser_device_lists(struct peruser *x, json_t *dl);
/* Stores OTK counts / fallback key types when they differ from what this
 * poller saw last (memo). An absent fallback field means "no news"; [] is
 * news. *new_otk / *new_fb get the new values to remember after the commit
 * (heap, or NULL when unchanged). */
int peruser_e2ee(struct peruser *x, json_t *body, struct acc_e2ee_memo *memo, char **new_otk, char **new_fb);

#endif
