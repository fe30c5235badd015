#include "upstream/hsclient.h"

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/config.h"
#include "base/log.h"

/* Idle easy handles kept for reuse (they keep their connections alive). */
#define POOL_SIZE 8
/* Used when the configuration carries no positive timeout. */
#define DEFAULT_TIMEOUT_SECS 300
/* A homeserver that cannot accept a TCP connection within this is down. */
#define CONNECT_TIMEOUT_SECS 30

struct hsclient {
    char *base;               /* URL prefix: cfg->server, or "http://localhost" for a unix socket */
    char *unix_path;          /* unix socket path, or NULL for TCP */
    char *user_agent;         /* "syncv3/<version>" */
    long timeout_secs;        /* total timeout of the blocking calls */
    pthread_mutex_t lock;     /* guards idle and n_idle */
    CURL *idle[POOL_SIZE];    /* easy handles not in use; reset before reuse */
    int n_idle;               /* entries used in idle */
};

int hsclient_new(struct hsclient **out, const struct config *cfg)
{
    *out = NULL;
    if (!cfg->server || !cfg->server[0]) return -1;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) return -1;
    struct hsclient *c = xcalloc(1, sizeof *c);
    if (cfg->server_is_unix) {
        c->base = xstrdup("http://localhost");
        c->unix_path = xstrdup(cfg->server);
    } else {
        c->base = xstrdup(cfg->server);
    }
    c->user_agent = xasprintf("syncv3/%s", SYNCV3_VERSION);
    c->timeout_secs = cfg->http_timeout_secs > 0 ? cfg->http_timeout_secs : DEFAULT_TIMEOUT_SECS;
    CHECK(pthread_mutex_init(&c->lock, NULL) == 0);
    *out = c;
    return 0;
}

void hsclient_free(struct hsclient *c)
{
    if (!c) return;
    for (int i = 0; i < c->n_idle; i++) curl_easy_cleanup(c->idle[i]);
    pthread_mutex_destroy(&c->lock);
    free(c->base);
    free(c->unix_path);
    free(c->user_agent);
    free(c);
    curl_global_cleanup();
}

int hsclient_prepare(const struct hsclient *c, CURL *e, const char *path_query,
                     const char *token, long timeout_secs, struct curl_slist **headers)
{
    int rc = -1;
    *headers = NULL;
    char *url = xasprintf("%s%s", c->base, path_query);
    bool ok = curl_easy_setopt(e, CURLOPT_URL, url) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_USERAGENT, c->user_agent) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_TIMEOUT, timeout_secs > 0 ? timeout_secs : 0L) ==
                  CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, (long)CONNECT_TIMEOUT_SECS) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L) == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") == CURLE_OK &&
              curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "") == CURLE_OK &&
              /* Long polls cross NATs and proxies that drop silent connections. */
              curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L) == CURLE_OK;
    if (ok && c->unix_path)
        ok = curl_easy_setopt(e, CURLOPT_UNIX_SOCKET_PATH, c->unix_path) == CURLE_OK;
    if (!ok) goto out;
    if (token) {
        char *auth = xasprintf("Authorization: Bearer %s", token);
        struct curl_slist *h = curl_slist_append(NULL, auth);
        explicit_bzero(auth, strlen(auth));
        free(auth);
        if (!h) goto out;
        if (curl_easy_setopt(e, CURLOPT_HTTPHEADER, h) != CURLE_OK) {
            curl_slist_free_all(h);
            goto out;
        }
        *headers = h;
    }
    rc = 0;
out:
    free(url);
    return rc;
}

size_t hsclient_collect_body(char *data, size_t size, size_t nmemb, void *ud)
{
    struct buf *b = ud;
    size_t n = size * nmemb;
    if (buf_append(b, data, n) < 0) return 0;
    return n;
}

static CURL *take_handle(struct hsclient *c)
{
    CURL *e = NULL;
    pthread_mutex_lock(&c->lock);
    if (c->n_idle > 0) e = c->idle[--c->n_idle];
    pthread_mutex_unlock(&c->lock);
    return e ? e : curl_easy_init();
}

static void give_handle(struct hsclient *c, CURL *e)
{
    /* Reset forgets options (including the header list we are about to free)
     * but keeps live connections and the DNS cache. */
    curl_easy_reset(e);
    pthread_mutex_lock(&c->lock);
    if (c->n_idle < POOL_SIZE) {
        c->idle[c->n_idle++] = e;
        e = NULL;
    }
    pthread_mutex_unlock(&c->lock);
    if (e) curl_easy_cleanup(e);
}

/* Performs GET path with token (may be NULL) into b. On transport success
 * returns 0 with *status; on transport failure returns -1 with *err set. */
static int get_body(struct hsclient *c, const char *path, const char *token, long *status, struct buf *b,
                    char **err)
{
    int rc = -1;
    *status = 0;
    struct curl_slist *headers = NULL;
    char errbuf[CURL_ERROR_SIZE] = "";
    CURL *e = take_handle(c);
    if (!e) {
        *err = xstrdup("cannot create a curl handle");
        goto out;
    }
    if (hsclient_prepare(c, e, path, token, c->timeout_secs, &headers) < 0 ||
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, hsclient_collect_body) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_WRITEDATA, b) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf) != CURLE_OK) {
        *err = xstrdup("cannot configure a curl handle");
        goto out;
    }
    CURLcode cc = curl_easy_perform(e);
    if (cc != CURLE_OK) {
        if (cc == CURLE_WRITE_ERROR)
            *err = xasprintf("response body larger than %d bytes", HSCLIENT_MAX_SMALL_BODY);
        else
            *err = xasprintf("%s", errbuf[0] ? errbuf : curl_easy_strerror(cc));
        goto out;
    }
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, status);
    rc = 0;
out:
    if (e) give_handle(c, e);
    curl_slist_free_all(headers);
    return rc;
}

/* get_body, parsed: *body is the JSON value, or NULL if the body is not JSON. */
static int get_json(struct hsclient *c, const char *path, const char *token, long *status,
                    json_t **body, char **err)
{
    *body = NULL;
    struct buf b;
    buf_init(&b, HSCLIENT_MAX_SMALL_BODY);
    int rc = get_body(c, path, token, status, &b, err);
    if (rc == 0) {
        json_error_t jerr;
        *body = json_loadb(buf_cstr(&b), b.len, 0, &jerr);
    }
    buf_release(&b);
    return rc;
}

static void set_err(char **err, char *msg)
{
    if (err)
        *err = msg;
    else
        free(msg);
}

int hsclient_versions(struct hsclient *c, char **err)
{
    return hsclient_versions_list(c, NULL, err);
}

int hsclient_versions_list(struct hsclient *c, char **versions, char **err)
{
    if (versions) *versions = NULL;
    json_t *body = NULL;
    int rc = hsclient_versions_get(c, &body, err);
    if (rc == HSCLIENT_OK && versions) {
        struct buf b = BUF_INIT;
        size_t i;
        json_t *v;
        json_array_foreach (json_object_get(body, "versions"), i, v) {
            if (!json_is_string(v)) continue;
            if (b.len) buf_putc(&b, ' ');
            buf_puts(&b, json_string_value(v));
        }
        *versions = buf_detach(&b, NULL);
        if (!*versions) *versions = xstrdup("");
    }
    json_decref(body);
    return rc;
}

/* Whether a /versions answer is usable; else *msg (heap) says why. */
static bool versions_ok(long status, json_t *body, char **msg)
{
    if (status != 200)
        *msg = xasprintf("HTTP %ld from /versions", status);
    else if (!json_is_array(json_object_get(body, "versions")))
        *msg = xstrdup("/versions response has no \"versions\" array");
    return !*msg;
}

int hsclient_versions_get(struct hsclient *c, json_t **out, char **err)
{
    char *msg = NULL;
    long status = 0;
    json_t *body = NULL;
    *out = NULL;
    if (err) *err = NULL;
    if (get_json(c, "/_matrix/client/versions", NULL, &status, &body, &msg) == 0 && versions_ok(status, body, &msg)) {
        *out = body;
        return HSCLIENT_OK;
    }
    json_decref(body);
    set_err(err, msg);
    return HSCLIENT_FAILED;
}

int hsclient_versions_result(long status, const char *body, size_t len, json_t **out, char **err)
{
    char *msg = NULL;
    *out = NULL;
    if (err) *err = NULL;
    json_t *j = body ? json_loadb(body, len, 0, NULL) : NULL;
    if (!json_is_object(j) && status == 200) msg = xstrdup("/versions response is not a JSON object");
    if (!msg && versions_ok(status, j, &msg)) {
        *out = j;
        return HSCLIENT_OK;
    }
    json_decref(j);
    set_err(err, msg);
    return HSCLIENT_FAILED;
}

/* The non-empty string at key in obj, or NULL. */
static const char *str_field(json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s && s[0] ? s : NULL;
}

int hsclient_whoami_result(long status, const char *body, size_t len, char **user_id, char **device_id,
                           char **err)
{
    int rc = HSCLIENT_FAILED;
    char *msg = NULL;
    *user_id = NULL;
    *device_id = NULL;
    if (err) *err = NULL;
    json_error_t jerr;
    json_t *json = body ? json_loadb(body, len, 0, &jerr) : NULL;
    if (status == 401 || status == 403) {
        const char *code = json_string_value(json_object_get(json, "errcode"));
        msg = xasprintf("HTTP %ld from whoami%s%s", status, code ? ": " : "", code ? code : "");
        rc = HSCLIENT_UNAUTHORIZED;
        goto out;
    }
    if (status != 200) {
        msg = xasprintf("HTTP %ld from whoami", status);
        goto out;
    }
    if (!json_is_object(json)) {
        msg = xstrdup("whoami response is not a JSON object");
        goto out;
    }
    const char *u = str_field(json, "user_id"), *d = str_field(json, "device_id");
    if (!u || !d) {
        msg = xasprintf("whoami response lacks %s", u ? "device_id" : "user_id");
        goto out;
    }
    *user_id = xstrdup(u);
    *device_id = xstrdup(d);
    rc = HSCLIENT_OK;
out:
    json_decref(json);
    if (msg) set_err(err, msg);
    return rc;
}

int hsclient_whoami(struct hsclient *c, const char *token, char **user_id, char **device_id,
                    char **err)
{
    char *msg = NULL;
    long status = 0;
    struct buf body;
    buf_init(&body, HSCLIENT_MAX_SMALL_BODY);
    *user_id = NULL;
    *device_id = NULL;
    if (err) *err = NULL;
    int rc = HSCLIENT_FAILED;
    if (get_body(c, HSCLIENT_WHOAMI_PATH, token, &status, &body, &msg) < 0)
        set_err(err, msg);
    else
        rc = hsclient_whoami_result(status, buf_cstr(&body), body.len, user_id, device_id, err);
    buf_release(&body);
    return rc;
}
