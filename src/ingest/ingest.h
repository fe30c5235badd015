/* The ingest thread: the only writer of shared room data. It applies each
 * /sync v2 response in one transaction (accumulate.h), then updates the
 * caches and wakes the connections concerned, then tells the poller set it may
 * poll that device again. It also loads users into the cache on request, so
 * that every cache write happens on this one thread, in stream order.
 *
 * It keeps each device's readiness: a device becomes ready when its first
 * response since its poller (re)started has been processed, and expired when
 * the homeserver rejects its token (an expired device is forgotten after a
 * while, so the table holds the polled devices plus a bounded tail). Once a response polled with a token is
 * stored, the device's older tokens are deleted (refresh-token clients
 * rotate them every few minutes), so the token table stays bounded. */
#ifndef SYNCV3_INGEST_INGEST_H
#define SYNCV3_INGEST_INGEST_H

#include <stdbool.h>
#include <stdint.h>

struct cache;
struct db_pool;
struct metrics;
struct poller_result;
struct poller_set;
struct ingest;

int ingest_new(struct ingest **out, struct db_pool *db, struct cache *cache, struct metrics *m);
/* Connects the poller set whose results this ingest processes (before any poll). */
void ingest_set_pollers(struct ingest *ing, struct poller_set *ps);
/* Stops the thread after the job in progress; later jobs stay queued. Call
 * before freeing the poller set, so no result is handed back to it after. */
void ingest_stop(struct ingest *ing);
/* Stops (if needed) and frees; queued results are dropped (their since
 * tokens were not advanced, so they are fetched again next start). */
void ingest_free(struct ingest *ing);

/* What ingest tells the layer above it, without calling into it. Every
 * function is called with no ingest lock held; none may block. */
struct ingest_hooks {
    void *ud; /* passed to every hook */
    /* A device's readiness changed (it became ready, or its token was
     * rejected). Ingest or poller thread. May be NULL. */
    void (*on_device)(void *ud, const char *user_id, const char *device_id);
    /* A load asked for with ingest_load_user_async finished: rc 0 (the user
     * is in the cache) or -1. Ingest thread. May be NULL. */
    void (*on_loaded)(void *ud, const char *user_id, int rc);
    /* The device's token token_hash worked (a response polled with it was
     * stored), and the device's older tokens were deleted from the store:
     * their hashes (n of them, n >= 1). Ingest thread. May be NULL. */
    void (*on_superseded)(void *ud, const char *user_id, const char *device_id, const char *token_hash,
                          const char *const *old_hashes, int n);
};

/* Installs the hooks (copied); call before any poller or client can start. */
void ingest_set_hooks(struct ingest *ing, const struct ingest_hooks *h);

/* Poller callbacks (poller thread): queue work for the ingest thread. */
void ingest_on_response(void *ud, struct poller_result *res);
/* device_expired: token_hash was the device's current token (its poller
 * stopped: the device is marked expired at once); otherwise only that older
 * token's row is forgotten. */
void ingest_on_token_expired(void *ud, const char *user_id, const char *device_id, const char *token_hash,
                             bool device_expired);
void ingest_on_failure(void *ud, const char *user_id, const char *device_id, int http_status, int fail_count,
                       int64_t retry_ms, const char *why);

/* A device's readiness, as seen by a request holding one of its tokens. */
enum ingest_device_state {
    INGEST_DEVICE_PENDING, /* its poller runs and has not stored a response since it (re)started */
    INGEST_DEVICE_READY,   /* a response was stored since its poller started */
    INGEST_DEVICE_EXPIRED, /* its poller stopped because the homeserver rejected this token */
    INGEST_DEVICE_STOPPED, /* its poller stopped because the homeserver rejected another token, or the
                              device is not known: no poller runs for it */
};

/* Marks a device's poller stopped because token_hash was rejected (the poller
 * saw 401), and calls on_device. */
void ingest_device_expire(struct ingest *ing, const char *user_id, const char *device_id, const char *token_hash);
/* Marks a device as waiting for its first response (its poller starts or restarts now). */
void ingest_device_pending(struct ingest *ing, const char *user_id, const char *device_id);
/* Whether the device has stored a response since its poller started. */
bool ingest_device_ready(struct ingest *ing, const char *user_id, const char *device_id);
/* How many devices wait for their first response (for a gauge). */
int ingest_pending_devices(struct ingest *ing);
/* The device's state for a request with token_hash. A device not known
 * (never polled, or forgotten a while after its token was rejected: at most
 * 10,000 expired devices are kept, for at most 5 minutes) is
 * stopped. */
enum ingest_device_state ingest_device_state(struct ingest *ing, const char *user_id, const char *device_id,
                                             const char *token_hash);
/* Queues loading the user into the cache on the ingest thread, ahead of
 * responses (a no-op job when loaded already); on_loaded tells when done. */
void ingest_load_user_async(struct ingest *ing, const char *user_id);
/* Pre-loads into the cache, in the background, the users with a stored
 * connection written within its expiry (STORE_CONN_KEEP_MS), the most
 * recently written first, at most max of them and only while the cache holds
 * fewer than max users (so it never evicts anyone). The ingest thread loads
 * one of them only when no other job is queued: poll results and the loads
 * requests ask for go first, and wait for at most one pre-load. A pre-loaded
 * user is evictable like any user without a connection. Call once, after
 * the pollers are resumed; max <= 0 does nothing. */
void ingest_preload_users(struct ingest *ing, int max);
/* Waits until the pre-load ingest_preload_users started has ended (every
 * user of its list loaded or skipped, or the cache full), at most budget_ms.
 * Returns whether it ended. Start-up calls it before listening, so the
 * first requests after a restart find their users loaded. */
bool ingest_preload_wait(struct ingest *ing, int64_t budget_ms);

#endif
