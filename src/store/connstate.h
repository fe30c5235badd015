/* Storage of MSC4186 connections across restarts (syncv3_conns,
 * syncv3_conn_rooms; docs/behaviour.md, "Connections across restarts"). The
 * values are opaque text here: sync/conn_persist serialises them.
 *
 * Every function takes a connection from the caller's db_acquire and returns
 * 0 (or a count) or -1 with *err (heap). */
#ifndef SYNCV3_STORE_CONNSTATE_H
#define SYNCV3_STORE_CONNSTATE_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

/* A row not written for this long is expired (sync/conn_persist.h says
 * why this long): not used, and deleted by store_conn_purge. */
#define STORE_CONN_KEEP_MS (35 * 60 * 1000)

/* Which connection a row belongs to. */
struct store_conn_key {
    const char *user_id;   /* owner */
    const char *device_id; /* device */
    const char *conn_id;   /* the connection's internal conn_id */
};

/* One stored room: what it was last sent as. */
struct store_conn_room {
    char *room_id; /* heap */
    char *sent;    /* serialised (heap) */
};

/* A stored connection as read back. */
struct store_conn {
    int64_t base;                  /* position base of the connection instance */
    int64_t pos;                   /* pos of the last response that changed the stored state */
    int64_t view_pos;              /* stream position the view reflected then */
    int64_t bytes;                 /* size of the stored rooms */
    int64_t updated_ms;            /* wall clock of the last write */
    int format;                    /* serialisation version */
    char *ext;                     /* extension positions, serialised (heap) */
    struct store_conn_room *rooms; /* heap array */
    int n_rooms;                   /* entries */
};

void store_conn_release(struct store_conn *s);

/* Reads a connection and its rooms (one round trip). Returns 1 (found, *out
 * filled), 0 (no row) or -1. */
int store_conn_load(PGconn *c, const struct store_conn_key *k, struct store_conn *out, char **err);

/* One write of a connection's state. */
struct store_conn_write {
    struct store_conn_key key;   /* whose */
    int64_t base;                /* the instance */
    int64_t pos;                 /* pos of this change */
    int64_t view_pos;            /* stream position of the view */
    int64_t bytes;               /* size of every room the connection stores after this write */
    int64_t now_ms;              /* wall clock */
    int format;                  /* serialisation version */
    const char *ext;             /* extension positions */
    const char *const *room_ids; /* rooms to insert or replace */
    const char *const *sents;    /* their values (parallel) */
    int n_put;                   /* entries */
    const char *const *gone;     /* rooms to delete */
    int n_gone;                  /* entries */
};

/* Updates the row of this instance (key and base) and its changed rooms in
 * one statement. Returns 1 when written, 0 when there is no row of this
 * instance (never written, or replaced: write it whole), -1 on error. */
int store_conn_update(PGconn *c, const struct store_conn_write *w, char **err);
/* Replaces whatever row the key has with this instance (w's rooms are all
 * of them; gone is ignored), then deletes the least recently written rows
 * past max_per_device of the device and max_per_user of the user, in one
 * statement (one round trip). Returns 0 or -1. */
int store_conn_replace(PGconn *c, const struct store_conn_write *w, int max_per_device, int max_per_user, char **err);
/* Records that this instance is still in use (idle expiry). Returns 0 or -1. */
int store_conn_touch(PGconn *c, const struct store_conn_key *k, int64_t base, int64_t now_ms, char **err);
/* Deletes the key's row (any instance). Returns 0 or -1. */
int store_conn_delete(PGconn *c, const struct store_conn_key *k, char **err);
/* Deletes every row of a device (its token died). Returns 0 or -1. */
int store_conn_delete_device(PGconn *c, const char *user_id, const char *device_id, char **err);
/* Deletes rows last written before cutoff_ms (wall clock); returns how many or -1. */
int64_t store_conn_purge(PGconn *c, int64_t cutoff_ms, char **err);
/* The users with a row written at or after since_ms, the most recently
 * written first, at most limit of them: *out is a heap array of heap strings
 * (*n entries; free each, then the array). Returns 0 or -1. */
int store_conn_recent_users(PGconn *c, int64_t since_ms, int limit, char ***out, int *n, char **err);

#endif
