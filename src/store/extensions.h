/* Storage of the per-device and per-user streams the sliding-sync extensions
 * serve (docs/behaviour.md, "Extensions", "Storage"): to-device messages, E2EE device data
 * and device-list buckets, account data, typing and receipts.
 *
 * Every function takes a connection from the caller's db_acquire and returns
 * 0 or -1 with *err (heap). Results are heap arrays the caller frees with the
 * matching *_free function, also after a failure (they are then empty). */
#ifndef SYNCV3_STORE_EXTENSIONS_H
#define SYNCV3_STORE_EXTENSIONS_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

/* One stored to-device message. */
struct store_to_device {
    int64_t pos; /* its position (the stream token the client acknowledges) */
    char *json;  /* the event as received (heap) */
};

/* Acknowledges and reads a device's inbox in one statement: deletes every
 * message with position <= since (nothing when since <= 0), then returns up
 * to limit messages with position > since, oldest first, and raises the
 * device's delivered position (syncv3_to_device_ack_pos.unack_pos, the
 * highest position ever returned) to the last one. */
int store_to_device_take(PGconn *c, const char *user_id, const char *device_id, int64_t since, int64_t limit,
                         struct store_to_device **out, int *n, char **err);
void store_to_device_free(struct store_to_device *m, int n);
/* Whether since can be a to-device since syncv3 handed this device out
 * (each is the position of a message it sent the device, or one the client
 * presented before): at most the device's delivered position, and either
 * the device's own message is stored at since or none of its messages is
 * stored at or below it (so acknowledging it deletes only messages it was
 * sent in responses up to since). A since of another device's message, or
 * past anything ever sent (a recreated database), is refused. */
int store_to_device_since_ok(PGconn *c, const char *user_id, const char *device_id, int64_t since, bool *ok,
                             char **err);

/* One entry of a device-list bucket. */
struct store_device_list {
    char *user_id; /* the user whose devices changed (heap) */
    int state;     /* STORE_DL_CHANGED or STORE_DL_LEFT */
};

#define STORE_DL_CHANGED 1
#define STORE_DL_LEFT 2
#define STORE_E2EE_OTK_CHANGED 1
#define STORE_E2EE_FALLBACK_CHANGED 2

/* A device's E2EE data as one request sees it. */
struct store_e2ee {
    char *otk_counts;               /* JSON object, NULL = never reported */
    char *fallback_types;           /* JSON array, NULL = never reported */
    int changed;                    /* STORE_E2EE_* bits before this read */
    struct store_device_list *lists; /* device-list entries returned */
    int n_lists;                    /* entries */
};

/* Reads a device's E2EE data. swap = false (a connection's first request):
 * the SENT device-list bucket, read-only, and the data with its changed bits
 * untouched. swap = true (any later request), in one transaction: delete the
 * SENT bucket (the client acknowledged it by asking again), move NEW to SENT
 * with UPDATE ... RETURNING (so every row moved is returned, even while the
 * poller inserts), and clear the changed bits. */
int store_e2ee_read(PGconn *c, const char *user_id, const char *device_id, bool swap, struct store_e2ee *out,
                    char **err);
void store_e2ee_release(struct store_e2ee *e);

/* One account-data row. */
struct store_account_data {
    int64_t id;    /* bumped on every change: id order = recency */
    char *room_id; /* "" = global (heap) */
    char *type;    /* event type (heap) */
    char *json;    /* the event {type, content} (heap) */
};

/* The user's global account data and, from the same snapshot, the highest id
 * of any of their rows (0 when none): later changes have larger ids. */
int store_account_data_global(PGconn *c, const char *user_id, struct store_account_data **out, int *n,
                              int64_t *max_id, char **err);
/* Every row of the user with id > after, in id order. */
int store_account_data_after(PGconn *c, const char *user_id, int64_t after, struct store_account_data **out,
                             int *n, char **err);
/* Every row of the user in the given rooms. */
int store_account_data_rooms(PGconn *c, const char *user_id, const char *const *room_ids, int n_rooms,
                             struct store_account_data **out, int *n, char **err);
void store_account_data_free(struct store_account_data *a, int n);

/* A room's latest typing EDU. */
struct store_typing {
    char *room_id; /* the room (heap) */
    char *json;    /* the m.typing EDU as received (heap) */
};

/* The latest typing EDU of each of the rooms that has one. */
int store_typing_rooms(PGconn *c, const char *const *room_ids, int n_rooms, struct store_typing **out, int *n,
                       char **err);
void store_typing_free(struct store_typing *t, int n);

/* One stored receipt. */
struct store_receipt {
    char *room_id;   /* the room (heap) */
    char *user_id;   /* whose receipt (heap) */
    char *thread_id; /* "" = unthreaded (heap) */
    char *event_id;  /* the event read (heap) */
    bool is_private; /* m.read.private */
    int64_t ts;      /* its timestamp */
};

/* The receipts of the rooms a response shows (docs/behaviour.md, "receipts"): every
 * receipt of user_id (public and private), and the public receipts of anyone
 * on one of event_ids. */
int store_receipts_read(PGconn *c, const char *user_id, const char *const *room_ids, int n_rooms,
                        const char *const *event_ids, int n_events, struct store_receipt **out, int *n, char **err);
void store_receipts_free(struct store_receipt *r, int n);

#endif
