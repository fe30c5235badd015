/* The homeserver client: blocking calls to /versions and /account/whoami
 * (the server verifies tokens and answers clients' /versions without blocking,
 * through poller_set_whoami and poller_set_get),
 * plus the request set-up shared with the poller set (URL, unix socket,
 * User-Agent, bearer token, timeouts).
 *
 * The homeserver is cfg->server used verbatim as a URL prefix, or, when
 * cfg->server_is_unix, a unix socket path reached with the fake base
 * "http://localhost". Every request carries "User-Agent: syncv3/<version>";
 * authenticated ones carry "Authorization: Bearer <token>" (never a query
 * parameter, never logged).
 *
 * All functions here are safe to call from many threads at once on the same
 * struct hsclient: each call uses its own curl easy handle, taken from a small
 * mutex-protected pool of idle handles so that connections are reused. */
#ifndef SYNCV3_UPSTREAM_HSCLIENT_H
#define SYNCV3_UPSTREAM_HSCLIENT_H

#include <curl/curl.h>
#include <jansson.h>
#include <stddef.h>

#include "base/buf.h"

struct config;
struct hsclient;

/* Outcomes of the blocking calls. */
enum hsclient_status {
    HSCLIENT_OK = 0,            /* success */
    HSCLIENT_UNAUTHORIZED = -1, /* the homeserver rejected the token (401 or 403) */
    HSCLIENT_FAILED = -2,       /* network error, timeout, other status, malformed body */
};

/* Largest response body read by the blocking calls. */
#define HSCLIENT_MAX_SMALL_BODY (1024 * 1024)

/* Creates a client for cfg (server, server_is_unix, http_timeout_secs are
 * copied; cfg need not outlive the client). Initialises libcurl globally
 * (reference counted by libcurl; main should still call curl_global_init
 * before starting threads). Returns 0, or -1 with *out = NULL if libcurl could
 * not be initialised or cfg->server is empty. Free with hsclient_free. */
int hsclient_new(struct hsclient **out, const struct config *cfg);
/* Frees the client and its pooled handles. NULL is a no-op. No call may be in
 * progress. */
void hsclient_free(struct hsclient *c);

/* GET /_matrix/client/versions: a start-up sanity check. Returns HSCLIENT_OK
 * if the homeserver answered 200 with a JSON object holding a "versions"
 * array, else HSCLIENT_FAILED with *err set to a one-line heap message
 * (free()); on success *err is NULL. err may be NULL. */
int hsclient_versions(struct hsclient *c, char **err);
/* The same, and on success *versions (if non-NULL) is a heap string of the
 * advertised versions separated by spaces ("" when none). */
int hsclient_versions_list(struct hsclient *c, char **versions, char **err);
/* The same call, keeping the answer: on HSCLIENT_OK *out is the homeserver's
 * JSON object (a new reference for the caller to json_decref), else NULL. */
int hsclient_versions_get(struct hsclient *c, json_t **out, char **err);
/* Interprets a finished /versions transfer (its HTTP status and body, len
 * bytes; body may be NULL): the same results and outputs as
 * hsclient_versions_get. */
int hsclient_versions_result(long status, const char *body, size_t len, json_t **out, char **err);

/* GET /_matrix/client/v3/account/whoami with token.
 * HSCLIENT_OK: *user_id and *device_id are heap strings (free()).
 * HSCLIENT_UNAUTHORIZED: the token is rejected; *err says how.
 * HSCLIENT_FAILED: anything else (network, 5xx, 200 lacking either field, bad
 *   JSON); *err says what.
 * On failure *user_id and *device_id are NULL; on success *err is NULL.
 * err may be NULL. */
int hsclient_whoami(struct hsclient *c, const char *token, char **user_id, char **device_id,
                    char **err);

/* The path of whoami. */
#define HSCLIENT_WHOAMI_PATH "/_matrix/client/v3/account/whoami"

/* Interprets a finished whoami transfer: its HTTP status and body (len bytes;
 * body may be NULL). Same results and outputs as hsclient_whoami. */
int hsclient_whoami_result(long status, const char *body, size_t len, char **user_id, char **device_id,
                           char **err);

/* Prepares a fresh or reset easy handle for GET {base}{path_query}: URL,
 * unix socket, User-Agent, bearer token (when token is non-NULL), total
 * timeout (seconds; <= 0 means none), no signals, gzip accepted, http/https
 * only, no redirects. The caller sets the write callback and its data, and
 * after the transfer frees *headers (curl_slist_free_all; it may be NULL).
 * Returns 0 or -1 (*headers is then NULL). Thread-safe; c is only read. */
int hsclient_prepare(const struct hsclient *c, CURL *e, const char *path_query,
                     const char *token, long timeout_secs, struct curl_slist **headers);

/* CURLOPT_WRITEFUNCTION that appends to the struct buf passed as
 * CURLOPT_WRITEDATA; returns a short count (so curl fails the transfer with
 * CURLE_WRITE_ERROR) once the buffer's max would be exceeded. */
size_t hsclient_collect_body(char *data, size_t size, size_t nmemb, void *ud);

#endif
