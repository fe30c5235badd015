/* The poller set: one thread long-polls the homeserver's /sync for every
 * device at once (libcurl multi interface).
 *
 * One poller per (user_id, device_id). A poller sends one request at a time:
 * after a 200 response with a JSON object body it hands the parsed result (a
 * large body unparsed: see poller_result_parse) to
 * on_response and sends nothing more until the receiver calls
 * poller_set_done() for that result (the receiver stores it first). done(ok)
 * advances the since token to the result's next_batch and polls again at
 * once; done(!ok) retries the same since after a backoff.
 *
 * Request (exactly): GET {base}/_matrix/client/v3/sync?timeout=T[&since=S]
 *   &set_presence=offline&filter=F, with T = 0 until the poller's first
 *   response has been processed successfully and 30000 afterwards; S the
 *   URL-escaped since token when there is one; F the URL-escaped filter
 *   {"presence":{"not_types":["*"]},"room":{"timeline":{"limit":N}}}, N = 1
 *   without a since token and 50 with one; in to-device-only mode "room" also
 *   holds "rooms":[] (first request only: the mode ends with the first
 *   successfully processed response). First polls time out after
 *   cfg->http_initial_timeout_secs, later ones after cfg->http_timeout_secs.
 *
 * Failures (network, timeout, 5xx, 404, 429, bad JSON, non-object body,
 * missing next_batch, body over max_body) are retried with exponential
 * backoff and jitter; a 429's retry_after_ms or Retry-After is a lower bound
 * for the delay. 401/403 (or errcode M_UNKNOWN_TOKEN) stop the poller and
 * call on_token_expired.
 *
 * The same thread also runs token checks (poller_set_whoami) on its multi
 * handle, so a caller never waits for the homeserver.
 *
 * Threads: every poller_set_* function but poller_set_free may be called from
 * any thread, including from inside the callbacks (they only queue a command
 * for the poller thread and wake it). The callbacks run on the poller
 * thread, with no lock held; they must not block for long (push to a queue). */
#ifndef SYNCV3_UPSTREAM_POLLER_H
#define SYNCV3_UPSTREAM_POLLER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "obs/trace.h"

struct config;
struct poller_set;

/* A parsed 200 response. Ownership passes to on_response's receiver, who must
 * call poller_set_done() on it exactly once (which frees it); only while or
 * after the set is being freed may it instead be discarded with
 * poller_result_free(). */
struct poller_result {
    char *user_id;       /* who this is for */
    char *device_id;     /* the device polled */
    char *since;         /* the since token the request used ("" if none) */
    char *next_batch;    /* from the response; NULL until poller_result_parse for a large body */
    char *token_hash;    /* SHA-256 hex of the token the request used */
    json_t *body;        /* the whole parsed response, a JSON object; the result holds one
                            reference (json_incref to keep it). NULL for a large body, which
                            comes unparsed in raw: the receiver parses it (poller_result_parse) */
    char *raw;           /* the unparsed body (owned), or NULL once parsed */
    size_t raw_len;      /* bytes in raw */
    bool initial;        /* the request had no since token (initial sync) */
    bool first;          /* first poll of this poller object since it was created */
    bool to_device_only; /* the request's filter excluded rooms */
    double http_secs;    /* how long the HTTP transfer took */
    size_t bytes;        /* size of the response body */
    struct trace_ctx trace; /* the poll's span, parent of the ingest's (zero when not traced) */
    uint64_t poller_gen; /* private: identifies the poller object that produced it */
};

struct poller_callbacks {
    void *ud; /* passed to every callback */
    /* Every 200 response with a valid body. Takes ownership of res. Required. */
    void (*on_response)(void *ud, struct poller_result *res);
    /* 401/403 or M_UNKNOWN_TOKEN: the token whose SHA-256 hex is token_hash is
     * dead and the poller has stopped (unless poller_set_ensure gave it a newer
     * token meanwhile: then it carries on with that one). May be NULL. */
    void (*on_token_expired)(void *ud, const char *user_id, const char *device_id,
                             const char *token_hash);
    /* Each failed attempt: http_status is 0 for transport errors; fail_count
     * counts consecutive failures (1 for the first); retry_ms is the delay
     * before the next attempt. For logs and metrics. May be NULL. */
    void (*on_failure)(void *ud, const char *user_id, const char *device_id, int http_status,
                       int fail_count, int64_t retry_ms, const char *why);
};

/* Tunables; zero fields take the defaults shown. */
struct poller_options {
    int64_t backoff_base_ms; /* delay after the first failure (1000); doubles per failure */
    int64_t backoff_max_ms;  /* cap of the doubling delay (60000) */
    size_t max_body;         /* largest response body accepted, bytes (512 MiB) */
    int max_first_in_flight; /* most first polls (initial syncs) in flight at once (16) */
    size_t max_first_bytes;  /* first polls wait while handed-out first-poll results not yet done
                              * hold this many bytes (256 MiB) */
};

/* Counters, read with poller_set_stats. */
struct poller_stats {
    int num_pollers;         /* live pollers */
    int outstanding;         /* /sync requests in flight */
    int awaiting_done;       /* results handed out and not yet done */
    uint64_t total_polls;    /* /sync requests started since creation */
    uint64_t total_failures; /* failed attempts since creation */
};

/* Creates the set and starts its thread. cfg is copied (server, timeouts); cb
 * is copied; opts may be NULL. Returns 0, or -1 with *out = NULL (bad config,
 * libcurl or thread failure). Free with poller_set_free. */
int poller_set_new(struct poller_set **out, const struct config *cfg,
                   const struct poller_callbacks *cb, const struct poller_options *opts);

/* Stops the thread, aborts in-flight requests and frees the set. Not from a
 * callback (it joins the poller thread). Results the
 * receiver still holds must then be freed with poller_result_free. No other
 * poller_set_* call may run concurrently or later. NULL is a no-op. */
void poller_set_free(struct poller_set *s);

/* Starts polling a device, or, if it is already polled, gives it a new token
 * (used from its next request on; its since token and mode are kept). since
 * may be "" or NULL (initial sync). to_device_only: the first request's filter
 * excludes rooms (second device of a user whose rooms another poller already
 * fetches). All strings are copied. Asynchronous and thread-safe. */
void poller_set_ensure(struct poller_set *s, const char *user_id, const char *device_id,
                       const char *token, const char *token_hash, const char *since,
                       bool to_device_only);

/* The receiver finished with res: ok → the poller polls again at once with
 * since = res->next_batch; !ok → it retries res->since after a backoff.
 * Takes ownership of res and frees it. A result of a poller that has since
 * been stopped (or replaced) is just freed. Thread-safe. */
void poller_set_done(struct poller_set *s, struct poller_result *res, bool ok);

/* Stops polling a device (aborting its in-flight request); no callback fires
 * for it afterwards. A no-op for an unknown device. Thread-safe. */
void poller_set_stop_device(struct poller_set *s, const char *user_id, const char *device_id);

/* The answer to poller_set_whoami: status is an enum hsclient_status
 * (upstream/hsclient.h); user_id and device_id are set only for HSCLIENT_OK;
 * err is a one-line reason otherwise. The strings live for the call only. */
typedef void (*poller_whoami_fn)(void *ud, int status, const char *user_id, const char *device_id,
                                 const char *err);

/* Asks GET /_matrix/client/v3/account/whoami with token on the poller
 * thread, without waiting. fn runs exactly once: on the poller thread with
 * the answer (no lock held; it must not block), or with HSCLIENT_FAILED from
 * poller_set_free when the set stops first. The call times out after
 * cfg->http_timeout_secs. token is copied. Thread-safe. */
void poller_set_whoami(struct poller_set *s, const char *token, poller_whoami_fn fn, void *ud);

/* The answer to poller_set_get: status is the HTTP status, or 0 when there is
 * none (err says why; body is then NULL). body is the response (len bytes,
 * NUL-terminated, at most HSCLIENT_MAX_SMALL_BODY) and lives for the call
 * only. */
typedef void (*poller_get_fn)(void *ud, long status, const char *body, size_t len, const char *err);

/* Asks GET path_query of the homeserver without a token on the poller
 * thread, without waiting (GET /_matrix/client/versions for clients). fn
 * runs exactly once, as for poller_set_whoami. path_query is copied.
 * Thread-safe. */
void poller_set_get(struct poller_set *s, const char *path_query, poller_get_fn fn, void *ud);

/* Live pollers, as of the last command the poller thread applied. */
int poller_set_count(struct poller_set *s);
/* Fills *st with a snapshot of the counters. Thread-safe. */
void poller_set_stats(struct poller_set *s, struct poller_stats *st);

/* Parses a result handed out unparsed (body NULL, raw set): sets body and
 * next_batch. 0, or -1 with *why (heap) when the body is not a JSON object
 * with a next_batch: the receiver then calls poller_set_done(res, false).
 * Any thread; a no-op for a parsed result. */
int poller_result_parse(struct poller_result *res, char **why);

/* Frees a result without telling the set (shutdown only). NULL is a no-op. */
void poller_result_free(struct poller_result *res);

#endif
