/* Who a sliding sync request is, and the pollers of the devices seen.
 *
 * Tokens: a memory table in front of syncv3_sync2_tokens. A token not in it
 * is looked up in the store, and a token the store does not have is verified
 * with the homeserver's whoami, which runs on the poller thread
 * (poller_set_whoami) while the request is parked; concurrent requests with
 * the same token share one whoami. A token the homeserver rejected is kept
 * as dead for a while: a request with it and a pos (its connections ended
 * with it) gets 401 at once, a new one asks whoami again (the token may work
 * after all). When a newer token of a device has worked, ingest deletes the
 * older rows and they are forgotten here too; they are verified again if a
 * request brings one back.
 *
 * Devices: the first token seen for a device starts its poller; a token just
 * verified (store or whoami) takes a running poller over; a device whose
 * poller stopped because its token died gets a new poller with the next
 * token, from its stored since.
 *
 * No function waits for the homeserver, and database waits are at most
 * DB_WAIT_HTTP_MS, so the HTTP threads stay free.
 *
 * Threads: thread-safe; one mutex guards the tables (taken before the wait
 * list's and ingest's locks, never while calling the poller set). */
#ifndef SYNCV3_SYNC_AUTH_H
#define SYNCV3_SYNC_AUTH_H

#include <stdbool.h>
#include <stdint.h>

#include "base/crypto.h"

struct config;
struct db_pool;
struct http_req;
struct ingest;
struct poller_set;
struct waitlist;
struct waitlist_entry;
struct auth;

/* What authentication works with (borrowed; must outlive it). */
struct auth_deps {
    const struct config *cfg;   /* secret, timeouts */
    struct db_pool *db;         /* token and device rows */
    struct ingest *ingest;      /* device readiness */
    struct poller_set *pollers; /* pollers and whoami */
    struct waitlist *waits;     /* where requests wait for whoami */
    struct metrics *metrics;    /* may be NULL */
};

/* One request's authentication, kept across its wake-ups. */
struct auth_req {
    char *token;                   /* the access token (heap; wiped on release) */
    char hash[SHA256_HEX_LEN + 1]; /* its SHA-256 hex */
    bool has_pos;                  /* the request continues a connection */
    char *user_id;                 /* after AUTH_OK: the owner (heap) */
    char *device_id;               /* after AUTH_OK: the device (heap) */
    bool verifying;                /* parked until a whoami answers */
    int64_t deadline;              /* AUTH_PARKED: park until then (monotonic ms) */
    struct waitlist_entry *wait;   /* the request's wait-list entry (borrowed) */
};

enum auth_step {
    AUTH_OK,       /* user_id and device_id are set */
    AUTH_PARKED,   /* park until ar->deadline (or a wake), then call auth_step again */
    AUTH_ANSWERED, /* an error was sent */
};

void auth_req_init(struct auth_req *ar, const char *token, bool has_pos, struct waitlist_entry *wait);
void auth_req_release(struct auth_req *ar);

int auth_new(struct auth **out, const struct auth_deps *deps);
void auth_free(struct auth *a);

/* Resolves ar's token (from the memory table, the store, or whoami) and
 * makes sure its device is polled. Call again after AUTH_PARKED. */
enum auth_step auth_step(struct auth *a, struct http_req *req, struct auth_req *ar);
/* The device's poller stopped because another of its tokens was rejected:
 * starts it again with ar's token (verified again in the store or with
 * whoami) from the device's stored since. AUTH_PARKED: continue with
 * auth_step. */
enum auth_step auth_restart(struct auth *a, struct http_req *req, struct auth_req *ar);

/* Starts a poller for every device with a stored token (at start-up; may
 * block on the database). Returns how many were started. */
int auth_resume_pollers(struct auth *a);
/* Whether token_hash is the token the device's poller was given last. */
bool auth_is_current_token(struct auth *a, const char *user_id, const char *device_id, const char *token_hash);
/* The homeserver rejected token_hash (of user_id/device_id): remember it dead. */
void auth_token_rejected(struct auth *a, const char *user_id, const char *device_id, const char *token_hash);
/* Whether token_hash is known dead. */
bool auth_token_dead(struct auth *a, const char *token_hash);
/* Forgets tokens (superseded by a newer one that worked). */
void auth_forget(struct auth *a, const char *const *hashes, int n);
/* Housekeeping: forgets dead tokens after a while. */
void auth_tick(struct auth *a, int64_t now_ms);

#endif
