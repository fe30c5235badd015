/* The sliding-sync extensions to_device, e2ee, account_data, typing and
 * receipts (docs/behaviour.md, "Extensions" and the sections after it): their
 * sticky request parameters, the data each response carries, and its JSON.
 *
 * A connection keeps one struct ext_state (under its request lock); every
 * response being built has one struct ext_resp. The connection calls, in
 * order: ext_apply_request (sticky merge of a request's `extensions`),
 * ext_collect (the pass before long-polling), ext_note for each drained live
 * update of kind CU_TO_DEVICE / CU_DEVICE_DATA / CU_ACCOUNT_DATA (and
 * ext_note_room for CU_TYPING / CU_RECEIPT), ext_refresh
 * after draining (re-reads what those updates touched), ext_resp_counts for
 * the long-poll decision (docs/behaviour.md, "Extensions and long-polling"),
 * and ext_finish + ext_resp_write when the response is built. Database work happens in ext_collect, ext_refresh
 * and ext_finish (never under the cache lock). */
#ifndef SYNCV3_SYNC_EXT_H
#define SYNCV3_SYNC_EXT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/buf.h"
#include "cache/cache.h"
#include "sync/request.h"

struct db_pool;

/* Default `limit` of the to_device extension (docs/behaviour.md, "Limits"). */
#define EXT_TO_DEVICE_LIMIT 100
/* The most to-device messages one response carries: a larger `limit` from a
 * client is lowered to this, so one request cannot make the server read and
 * send an unbounded inbox at once (the rest comes with the next since). */
#define EXT_TO_DEVICE_MAX_LIMIT 1000

/* Process-wide record of the devices whose to-device stream was served since
 * the process started (thread-safe). */
struct ext_registry;
struct ext_registry *ext_registry_new(void);
void ext_registry_free(struct ext_registry *r);
/* Devices the registry remembers at most (the least recently served go). */
#define EXT_REGISTRY_MAX 100000
/* Whether the device's to-device stream was served since start (and marks
 * it recently used), and recording that it was. */
bool ext_registry_has(struct ext_registry *r, const char *user_id, const char *device_id);
void ext_registry_add(struct ext_registry *r, const char *user_id, const char *device_id);
/* Forgets a device (its token died): its next first read ignores since again. */
void ext_registry_forget(struct ext_registry *r, const char *user_id, const char *device_id);
/* Devices remembered. */
size_t ext_registry_count(struct ext_registry *r);

/* One extension's sticky common parameters (docs/behaviour.md, "Sticky parameters", "Extension scope"). */
struct ext_params {
    bool seen;             /* the extension appeared in some request */
    bool enabled;          /* merged `enabled` */
    struct sync_strv lists; /* list keys in scope ("*" first = all) */
    struct sync_strv rooms; /* room IDs in scope ("*" first = subscribed rooms) */
};

/* A connection's extension state. */
struct ext_state {
    struct ext_params to_device;    /* to_device's common params */
    struct ext_params e2ee;         /* e2ee's */
    struct ext_params account_data; /* account_data's */
    struct ext_params typing;       /* typing's */
    struct ext_params receipts;     /* receipts' */
    char *td_since;                 /* sticky to_device `since` (NULL = none) */
    int64_t td_limit;               /* sticky to_device `limit` (0 = default) */
    bool e2ee_started;              /* e2ee produced a response on this connection */
    char *e2ee_otk_sent;            /* the one-time key counts last delivered (JSON; NULL = none) */
    char *e2ee_fb_sent;             /* the unused fallback key types last delivered (JSON; NULL = none) */
    bool ad_started;                /* account_data's first (full) pass reached a response */
    int64_t ad_hwm;                 /* highest account-data id this connection was given */
    bool ad_dirty;                  /* account data changed since the last read */
};

void ext_state_init(struct ext_state *s);
void ext_state_release(struct ext_state *s);
/* Merges a request's `extensions` object (may be NULL) into s. */
void ext_apply_request(struct ext_state *s, json_t *extensions);

struct ext_resp;
struct ext_resp *ext_resp_new(void);
void ext_resp_free(struct ext_resp *r);

/* What the extensions need from the connection. */
struct ext_env {
    struct db_pool *db;           /* store */
    struct ext_registry *reg;     /* devices served since start */
    const char *user_id;          /* the connection's user */
    const char *device_id;        /* and device */
    bool initial;                 /* the connection's first request (no pos) */
    /* Whether a room is in the scope of p (docs/behaviour.md, "Extension scope"); ud is passed back. */
    bool (*in_scope)(void *ud, const struct ext_params *p, const char *room_id);
    void *ud;                     /* the connection */
};

/* The pass before long-polling: every enabled extension reads its data. */
int ext_collect(const struct ext_env *env, struct ext_state *s, struct ext_resp *r, char **err);
/* Records a drained live update (other kinds are ignored). */
void ext_note(struct ext_state *s, struct ext_resp *r, enum cache_update_kind kind);
/* Records a drained CU_TYPING / CU_RECEIPT update (other kinds are ignored),
 * if its room is in the extension's scope in the connection's view at this
 * point (docs/behaviour.md, "Extension scope"). */
void ext_note_room(const struct ext_env *env, struct ext_state *s, struct ext_resp *r, const struct cache_update *u);
/* Re-reads what noted updates touched. On failure the work stays pending
 * (ext_finish retries it). */
int ext_refresh(const struct ext_env *env, struct ext_state *s, struct ext_resp *r, char **err);
/* Whether the response has extension data that makes a long-poll return
 * (docs/behaviour.md, "Extensions and long-polling": to-device events, or any e2ee / account_data / typing / receipts
 * content). */
bool ext_resp_counts(const struct ext_resp *r);
/* A room of the response being finished. */
struct ext_room {
    const char *room_id;          /* the room */
    const char *const *event_ids; /* its timeline events in this response (snapshot and live) */
    int n_events;                 /* entries */
};

/* Completes the response: pending refreshes, and for the response's rooms
 * that are in scope, all their room account data, their current typing EDU
 * and their receipts (docs/behaviour.md, "account_data", "typing", "receipts"). */
int ext_finish(const struct ext_env *env, struct ext_state *s, struct ext_resp *r, const struct ext_room *rooms,
               int n_rooms, char **err);
/* Calls fn for each room whose typing EDU (JSON) the response carries. */
void ext_resp_typing_each(const struct ext_resp *r, void (*fn)(void *ud, const char *room_id, const char *edu),
                          void *ud);

/* Appends the `extensions` object and commits what the response delivered
 * into s (call once, when the response is certainly built). */
void ext_resp_write(struct buf *b, struct ext_state *s, struct ext_resp *r);

#endif
