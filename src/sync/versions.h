/* GET /_matrix/client/versions for clients: the homeserver's own answer
 * passed through, with unstable_features["org.matrix.simplified_msc3575"]
 * set, so that clients (matrix-rust-sdk, matrix-js-sdk) discover that
 * simplified sliding sync is served here. The answer is kept for
 * VERSIONS_CACHE_MS; when the homeserver cannot be asked, clients get 502
 * M_UNKNOWN. With the cache cold the request parks while the poller thread
 * asks the homeserver (poller_set_get; concurrent requests share one call),
 * so no HTTP thread waits for it. Thread-safe. */
#ifndef SYNCV3_SYNC_VERSIONS_H
#define SYNCV3_SYNC_VERSIONS_H

#include "http/server.h"

struct poller_set;
struct versions;

/* How long an answer from the homeserver is reused. */
#define VERSIONS_CACHE_MS 60000
/* How long a request waits for the homeserver's answer before 502. */
#define VERSIONS_WAIT_MS 30000

/* ps is borrowed and must outlive the object's last request; its callbacks
 * reach the object, so free the poller set first. */
struct versions *versions_new(struct poller_set *ps);
void versions_free(struct versions *v);

/* Route handler (ud: the struct versions). */
enum http_action versions_handle(void *ud, struct http_req *req);

#endif
