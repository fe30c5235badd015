/* Error reports to Sentry (SYNCV3_SENTRY_DSN) through its envelope API:
 * POST {scheme}://{host}{path}/api/{project}/envelope/ with X-Sentry-Auth.
 *
 * Reported: every LOG_FATAL line, HTTP 5xx answers (at most 10 in a row,
 * then one every 6 s), and crashes (obs/crash.h: the report a crash left is
 * sent at the next start, then removed). An event carries the release
 * (syncv3@<version>), the environment (SYNCV3_SENTRY_ENVIRONMENT, default
 * "production"), the host name, a message and tags — never a request body,
 * a header value or an access token.
 *
 * Events go through a bounded queue to a background thread (obs/outbox.h):
 * reporting never blocks the caller; a full queue, the rate limit or a
 * failing Sentry drop events, counted in sliding_sync_sentry_events_dropped_total.
 *
 * Process-wide, like the log threshold: sentry_start once at start-up,
 * sentry_stop once at the end. */
#ifndef SYNCV3_OBS_SENTRY_H
#define SYNCV3_OBS_SENTRY_H

#include <stdbool.h>

struct config;
struct metrics;

/* The parts of a DSN {scheme}://{public_key}[:{secret}]@{host}[{path}]/{project}. */
struct sentry_dsn {
    char *envelope_url; /* {scheme}://{host}{path}/api/{project}/envelope/ */
    char *public_key;   /* the key */
    char *secret_key;   /* the legacy secret, or NULL */
    char *project;      /* the project id */
};

/* Fills d from a DSN. Returns 0, or -1 (d zeroed) when it is not one. */
int sentry_dsn_parse(const char *dsn, struct sentry_dsn *d);
void sentry_dsn_release(struct sentry_dsn *d);

/* True between sentry_start (with a DSN) and sentry_stop. */
extern bool sentry_on;

/* With SYNCV3_SENTRY_DSN set: starts the sender, hooks LOG_FATAL, queues the
 * crash reports a previous run left, and installs the crash handler. Without
 * it does nothing. m (may be NULL) receives the sent/dropped counters.
 * Returns 0, or -1 with *err (heap) for a malformed DSN or a thread failure. */
int sentry_start(const struct config *c, struct metrics *m, char **err);
/* Sends what is queued (one attempt each), removes the crash handler and
 * stops. No-op when not started. */
void sentry_stop(void);

/* Reports a 5xx answer: status, method and path (no query string), and the
 * server's own errcode and message (may be NULL). Rate-limited. */
void sentry_http_error(int status, const char *method, const char *path, const char *errcode, const char *message);

/* sentry_http_error(...) only when reporting is on; arguments unevaluated otherwise. */
#define SENTRY_HTTP_ERROR(...)                                                 \
    do {                                                                       \
        if (sentry_on) sentry_http_error(__VA_ARGS__);                         \
    } while (0)

#endif
