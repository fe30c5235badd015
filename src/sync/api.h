/* The sliding sync HTTP API: authentication (sync/auth: token -> device,
 * whoami, pollers), waiting for a device's first sync and the user's rooms,
 * connections, long-polling, errors. Every wait parks the request (nothing
 * blocks an HTTP thread). */
#ifndef SYNCV3_SYNC_API_H
#define SYNCV3_SYNC_API_H

#include <stdbool.h>

#include "http/server.h"

struct cache;
struct config;
struct db_pool;
struct ingest;
struct metrics;
struct poller_set;
struct sync_api;

/* Everything the API works with (borrowed; must outlive the API). */
struct sync_api_deps {
    const struct config *cfg;   /* configuration */
    struct db_pool *db;         /* store */
    struct cache *cache;        /* caches */
    struct ingest *ingest;      /* device readiness, user loading */
    struct poller_set *pollers; /* upstream pollers and whoami */
    struct metrics *metrics;    /* may be NULL */
};

/* Creates the API and installs its hooks in deps->ingest. */
int sync_api_new(struct sync_api **out, const struct sync_api_deps *deps);
/* Finishes every ended request still queued for the finisher thread
 * (stored first states, freed connections) and stops that thread; later
 * ends are finished in their own thread. Call once the HTTP server has
 * stopped, before ingest and the pollers stop. */
void sync_api_finish_ended(struct sync_api *api);
/* Frees it once nothing calls it any more: after the HTTP server, the poller
 * set and ingest (whose hooks point here) have stopped. */
void sync_api_free(struct sync_api *api);
/* Starts a poller for every device with a stored token (at start-up).
 * Returns how many were started. */
int sync_api_resume_pollers(struct sync_api *api);
/* Whether token_hash is the token the device's poller was started with last
 * (a newer token for the device makes older ones irrelevant). */
bool sync_api_is_current_token(struct sync_api *api, const char *user_id, const char *device_id,
                               const char *token_hash);
/* The poller reported token_hash dead: requests with it get 401 from now on;
 * current (it was the device's token): the device's connections end too. */
void sync_api_token_expired(struct sync_api *api, const char *user_id, const char *device_id, const char *token_hash,
                            bool current);
/* Periodic housekeeping (idle connections). */
void sync_api_tick(struct sync_api *api);

/* Route handlers. */
enum http_action sync_api_handle(void *api, struct http_req *req);
/* MSC4186 (simplified sliding sync): pos and timeout in the query, nothing
 * sticky, responses in its shape; its connections are apart from MSC3575's. */
enum http_action sync_api_handle_msc4186(void *api, struct http_req *req);
enum http_action sync_api_server_json(void *api, struct http_req *req);

#endif
