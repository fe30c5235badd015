/* The ingest thread: the only writer of shared room data. It applies each
 * /sync v2 response in one transaction (accumulate.h), then updates the
 * caches and wakes the connections concerned, then tells the poller set it may
 * poll that device again. It also loads users into the cache on request, so
 * that every cache write happens on this one thread, in stream order.
 *
 * It keeps each device's readiness: a device becomes ready when its first
 * response since its poller (re)started has been processed, and expired when
 * the homeserver rejects its token. */
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

/* Poller callbacks (poller thread): queue work for the ingest thread. */
void ingest_on_response(void *ud, struct poller_result *res);
/* device_expired: token_hash was the device's current token (its poller
 * stopped); otherwise only that older token's row is forgotten. */
void ingest_on_token_expired(void *ud, const char *user_id, const char *device_id, const char *token_hash,
                             bool device_expired);
void ingest_on_failure(void *ud, const char *user_id, const char *device_id, int http_status, int fail_count,
                       int64_t retry_ms, const char *why);

enum ingest_wait {
    INGEST_READY = 0,     /* done */
    INGEST_EXPIRED = -1,  /* the device's token was rejected by the homeserver */
    INGEST_TIMEOUT = -2,  /* not done within the time given */
    INGEST_FAILED = -3,   /* a database error */
};

/* Marks a device's token as rejected at once (the poller saw 401); the token
 * row is deleted by the ingest thread after. */
void ingest_device_expire(struct ingest *ing, const char *user_id, const char *device_id);
/* Marks a device as waiting for its first response (its poller starts or restarts now). */
void ingest_device_pending(struct ingest *ing, const char *user_id, const char *device_id);
/* Whether the device has processed a response since its poller started. */
bool ingest_device_ready(struct ingest *ing, const char *user_id, const char *device_id);
/* How many devices wait for their first response (for a gauge). */
int ingest_pending_devices(struct ingest *ing);
/* Blocks until the device is ready or expired, or timeout_ms passes. */
enum ingest_wait ingest_device_wait(struct ingest *ing, const char *user_id, const char *device_id,
                                    int timeout_ms);
/* Loads the user into the cache on the ingest thread (no-op when loaded) and waits. */
enum ingest_wait ingest_load_user(struct ingest *ing, const char *user_id, int timeout_ms);

#endif
