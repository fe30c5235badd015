#include "upstream/poller.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "base/hash.h"

#include "base/alloc.h"
#include "base/buf.h"
#include "base/clock.h"
#include "base/config.h"
#include "base/jsonx.h"
#include "base/log.h"
#include "upstream/hsclient.h"

#define DEFAULT_BACKOFF_BASE_MS 1000
#define DEFAULT_BACKOFF_MAX_MS 60000
#define DEFAULT_MAX_BODY ((size_t)512 * 1024 * 1024)
#define DEFAULT_MAX_FIRST_IN_FLIGHT 16
#define DEFAULT_TIMEOUT_SECS 300
#define DEFAULT_INITIAL_TIMEOUT_SECS 1800
/* A server asking us (Retry-After) to wait longer than this is capped. */
#define MAX_SERVER_DELAY_MS (15 * 60 * 1000)
/* Longest sleep of the loop when nothing is scheduled (wake-ups cut it short). */
#define IDLE_WAIT_MS 10000
/* Received first-poll bytes not yet processed before more first polls wait. */
#define DEFAULT_MAX_FIRST_BYTES ((size_t)256 * 1024 * 1024)
/* 200 bodies above this are handed out unparsed (poller_result_parse): parsing
 * megabytes here would stop every other device's transfer meanwhile. */
#define PARSE_INLINE_MAX ((size_t)1024 * 1024)

enum cmd_kind {
    CMD_ENSURE, /* start polling or update the token */
    CMD_DONE,   /* the receiver finished a result */
    CMD_STOP,   /* stop polling a device */
    CMD_WHOAMI, /* verify a token */
    CMD_GET,    /* a small unauthenticated GET (poller_set_get) */
};

/* A request from another thread, applied by the poller thread in order. */
struct cmd {
    enum cmd_kind kind;         /* what to do */
    char *user_id;              /* CMD_ENSURE, CMD_STOP: the device's user */
    char *device_id;            /* CMD_ENSURE, CMD_STOP: the device */
    char *token;                /* CMD_ENSURE, CMD_WHOAMI: access token (wiped on free) */
    char *token_hash;           /* CMD_ENSURE: its SHA-256 hex */
    char *since;                /* CMD_ENSURE: since token, "" for none */
    bool to_device_only;        /* CMD_ENSURE: start in to-device-only mode */
    struct poller_result *res;  /* CMD_DONE: the result handed back (owned) */
    bool ok;                    /* CMD_DONE: the receiver processed it */
    poller_whoami_fn whoami_fn; /* CMD_WHOAMI: the caller's callback, NULL once called */
    void *cb_ud;                /* CMD_WHOAMI, CMD_GET: the callback's argument */
    poller_get_fn get_fn;       /* CMD_GET: the caller's callback, NULL once called */
    char *path;                 /* CMD_GET: path and query */
    struct cmd *next;           /* queue link */
};

enum dev_state {
    DEV_WAITING,    /* in the timer heap: a request starts at deadline */
    DEV_IN_FLIGHT,  /* a request is in the multi handle */
    DEV_AWAIT_DONE, /* a result is with the receiver */
};

/* What a transfer's CURLOPT_PRIVATE points to: both structs start with it. */
enum xfer_kind {
    XFER_SYNC,   /* struct device */
    XFER_WHOAMI, /* struct whoami */
};

/* One poller: owned and touched only by the poller thread. */
struct device {
    enum xfer_kind kind;     /* XFER_SYNC; first member (CURLOPT_PRIVATE) */
    char *key;               /* user_id NUL device_id: the hash key */
    size_t keylen;           /* bytes of key, both parts and the NUL between */
    const char *user_id;     /* points into key */
    const char *device_id;   /* points into key */
    char *token;             /* access token for the next request (wiped on free) */
    char *token_hash;        /* SHA-256 hex of token */
    char *since;             /* since token of the next request; "" for none */
    bool first;              /* no response processed successfully yet: timeout=0 */
    bool to_device_only;     /* the next request's filter excludes rooms */
    enum dev_state state;    /* where the poller is in its cycle */
    int fail_count;          /* consecutive failures */
    uint64_t gen;            /* unique per poller object; stamped on results */
    int64_t deadline;        /* DEV_WAITING: clock_mono_ms of the next request */
    int heap_idx;            /* index in the timer heap, or -1 */
    CURL *easy;              /* DEV_IN_FLIGHT: the transfer */
    struct curl_slist *headers; /* DEV_IN_FLIGHT: request headers */
    struct buf body;         /* DEV_IN_FLIGHT: response body so far */
    char errbuf[CURL_ERROR_SIZE]; /* DEV_IN_FLIGHT: curl's error text */
    int64_t retry_after_ms;  /* Retry-After of the current response, or 0 */
    char *req_token_hash;    /* DEV_IN_FLIGHT: hash of the token the request used */
    char *req_since;         /* DEV_IN_FLIGHT: since the request used */
    bool req_first;          /* DEV_IN_FLIGHT: the request was a first poll */
    bool req_to_device_only; /* DEV_IN_FLIGHT: the request excluded rooms */
    double req_started;      /* DEV_IN_FLIGHT: clock_mono_secs at start */
    UT_hash_handle hh;       /* in poller_set.devices */
};

/* A whoami or small GET in flight: owned and touched only by the poller thread. */
struct whoami {
    enum xfer_kind kind;          /* XFER_WHOAMI; first member (CURLOPT_PRIVATE) */
    CURL *easy;                   /* the transfer */
    struct curl_slist *headers;   /* request headers */
    struct buf body;              /* response body so far */
    char errbuf[CURL_ERROR_SIZE]; /* curl's error text */
    poller_whoami_fn fn;          /* a whoami's callback, or NULL */
    poller_get_fn get_fn;         /* a small GET's callback, or NULL */
    void *ud;                     /* its argument */
    struct whoami *prev, *next;   /* in poller_set.whoamis */
};

struct poller_set {
    struct hsclient *hs;            /* URL and header set-up (read-only) */
    struct poller_callbacks cb;     /* the receiver */
    struct poller_options opt;      /* tunables, defaults filled in */
    long timeout_secs;              /* total timeout of later polls */
    long initial_timeout_secs;      /* total timeout of first polls */
    CURLM *multi;                   /* all in-flight transfers; poller thread only,
                                       except curl_multi_wakeup */
    pthread_t thread;               /* the poller thread */
    pthread_mutex_t lock;           /* guards cmd_head, cmd_tail, quit; never held
                                       while calling curl or a callback */
    struct cmd *cmd_head;           /* pending commands, oldest first */
    struct cmd *cmd_tail;           /* last pending command */
    bool quit;                      /* poller_set_free asked the thread to exit */
    struct device *devices;         /* uthash of live pollers; poller thread only */
    struct whoami *whoamis;         /* whoamis and small GETs in flight; poller thread only */
    struct device **heap;           /* min-heap on deadline of DEV_WAITING devices */
    int heap_len;                   /* entries used in heap */
    int heap_cap;                   /* entries allocated in heap */
    uint64_t next_gen;              /* last poller generation handed out */
    uint64_t rng;                   /* xorshift state for jitter; poller thread only */
    int first_in_flight;            /* first polls (timeout=0 initial syncs) in flight; poller thread only */
    size_t first_bytes;             /* bytes of first-poll results handed out and not done; poller thread only */
    atomic_int num_pollers;         /* stats: devices in the hash */
    atomic_int outstanding;         /* stats: DEV_IN_FLIGHT devices */
    atomic_int awaiting;            /* stats: DEV_AWAIT_DONE devices */
    atomic_uint_least64_t total_polls;    /* stats: requests started */
    atomic_uint_least64_t total_failures; /* stats: failed attempts */
};

/* ---- small helpers ---- */

static void free_secret(char *s)
{
    if (!s) return;
    explicit_bzero(s, strlen(s));
    free(s);
}

static char *make_key(const char *user_id, const char *device_id, size_t *len)
{
    size_t ul = strlen(user_id), dl = strlen(device_id);
    char *k = xmalloc(ul + 1 + dl + 1);
    memcpy(k, user_id, ul + 1);
    memcpy(k + ul + 1, device_id, dl + 1);
    *len = ul + 1 + dl;
    return k;
}

static struct device *find_device(struct poller_set *s, const char *user_id, const char *device_id)
{
    size_t len;
    char *k = make_key(user_id, device_id, &len);
    struct device *d = NULL;
    HASH_FIND(hh, s->devices, k, len, d);
    free(k);
    return d;
}

/* Appends s percent-encoded: everything but RFC 3986 unreserved characters. */
static int put_escaped(struct buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned char c = *p;
        bool plain = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                     c == '-' || c == '.' || c == '_' || c == '~';
        int rc = plain ? buf_putc(b, (char)c)
                       : buf_printf(b, "%%%c%c", hex[c >> 4], hex[c & 15]);
        if (rc < 0) return -1;
    }
    return 0;
}

/* The path and query of the device's next /sync request (heap; free()). */
static char *sync_path(const struct device *d)
{
    struct buf b;
    buf_init(&b, 0);
    bool has_since = d->since[0] != '\0';
    char *filter = xasprintf("{\"presence\":{\"not_types\":[\"*\"]},\"room\":{%s\"timeline\":"
                             "{\"limit\":%d}}}",
                             d->to_device_only ? "\"rooms\":[]," : "", has_since ? 50 : 1);
    buf_puts(&b, "/_matrix/client/v3/sync?timeout=");
    buf_puts(&b, d->first ? "0" : "30000");
    if (has_since) {
        buf_puts(&b, "&since=");
        put_escaped(&b, d->since);
    }
    buf_puts(&b, "&set_presence=offline&filter=");
    put_escaped(&b, filter);
    free(filter);
    return buf_detach(&b, NULL);
}

static uint64_t next_random(struct poller_set *s)
{
    uint64_t x = s->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    s->rng = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* Delay before attempt fail_count+1: base doubling per failure up to the cap,
 * then "equal jitter" (a random point in the upper half) so that many pollers
 * failing together (homeserver restart) do not come back in lockstep. */
static int64_t backoff_ms(struct poller_set *s, int fail_count)
{
    int64_t d = s->opt.backoff_base_ms;
    for (int i = 1; i < fail_count && d < s->opt.backoff_max_ms; i++) d *= 2;
    if (d > s->opt.backoff_max_ms) d = s->opt.backoff_max_ms;
    int64_t half = d / 2;
    return d - half + (int64_t)(next_random(s) % (uint64_t)(half + 1));
}

/* ---- timer heap (DEV_WAITING devices by deadline) ---- */

static void heap_set(struct poller_set *s, int i, struct device *d)
{
    s->heap[i] = d;
    d->heap_idx = i;
}

static void heap_up(struct poller_set *s, int i)
{
    struct device *d = s->heap[i];
    while (i > 0) {
        int p = (i - 1) / 2;
        if (s->heap[p]->deadline <= d->deadline) break;
        heap_set(s, i, s->heap[p]);
        i = p;
    }
    heap_set(s, i, d);
}

static void heap_down(struct poller_set *s, int i)
{
    struct device *d = s->heap[i];
    for (;;) {
        int c = 2 * i + 1;
        if (c >= s->heap_len) break;
        if (c + 1 < s->heap_len && s->heap[c + 1]->deadline < s->heap[c]->deadline) c++;
        if (s->heap[c]->deadline >= d->deadline) break;
        heap_set(s, i, s->heap[c]);
        i = c;
    }
    heap_set(s, i, d);
}

static void heap_remove(struct poller_set *s, struct device *d)
{
    int i = d->heap_idx;
    if (i < 0) return;
    d->heap_idx = -1;
    struct device *last = s->heap[--s->heap_len];
    if (i == s->heap_len) return;
    heap_set(s, i, last);
    heap_up(s, i);
    heap_down(s, last->heap_idx);
}

/* Puts d in DEV_WAITING with a request due at `at` (clock_mono_ms). */
static void schedule(struct poller_set *s, struct device *d, int64_t at)
{
    heap_remove(s, d);
    d->state = DEV_WAITING;
    d->deadline = at;
    if (s->heap_len == s->heap_cap) {
        s->heap_cap = s->heap_cap ? s->heap_cap * 2 : 64;
        s->heap = xrealloc(s->heap, (size_t)s->heap_cap * sizeof *s->heap);
    }
    heap_set(s, s->heap_len++, d);
    heap_up(s, d->heap_idx);
}

/* ---- device lifecycle ---- */

/* Ends d's in-flight transfer, if any, keeping nothing of it. */
static void end_transfer(struct poller_set *s, struct device *d)
{
    if (d->easy) {
        curl_multi_remove_handle(s->multi, d->easy);
        curl_easy_cleanup(d->easy);
        d->easy = NULL;
        atomic_fetch_sub(&s->outstanding, 1);
        if (d->req_first) s->first_in_flight--;
    }
    curl_slist_free_all(d->headers);
    d->headers = NULL;
    buf_release(&d->body);
    free(d->req_token_hash);
    d->req_token_hash = NULL;
    free(d->req_since);
    d->req_since = NULL;
}

/* Unlinks and frees d; no callback fires. */
static void remove_device(struct poller_set *s, struct device *d)
{
    end_transfer(s, d);
    heap_remove(s, d);
    if (d->state == DEV_AWAIT_DONE) atomic_fetch_sub(&s->awaiting, 1);
    HASH_DEL(s->devices, d);
    atomic_fetch_sub(&s->num_pollers, 1);
    free(d->key);
    free_secret(d->token);
    free(d->token_hash);
    free(d->since);
    free(d);
}

/* Counts a failed attempt and schedules the retry. server_delay_ms (0 if
 * none) is a lower bound the homeserver asked for. */
static void fail(struct poller_set *s, struct device *d, int status, int64_t server_delay_ms,
                 const char *why)
{
    d->fail_count++;
    atomic_fetch_add(&s->total_failures, 1);
    int64_t delay = backoff_ms(s, d->fail_count);
    if (server_delay_ms > MAX_SERVER_DELAY_MS) server_delay_ms = MAX_SERVER_DELAY_MS;
    if (server_delay_ms > delay) delay = server_delay_ms;
    LOG_WARN("poller",
             "user=%s device=%s poll failed (HTTP %d: %s), fail count %d, retry in %lld ms",
             d->user_id, d->device_id, status, why, d->fail_count, (long long)delay);
    schedule(s, d, clock_mono_ms() + delay);
    if (s->cb.on_failure)
        s->cb.on_failure(s->cb.ud, d->user_id, d->device_id, status, d->fail_count, delay, why);
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *ud)
{
    struct device *d = ud;
    size_t n = size * nmemb;
    static const char name[] = "retry-after:";
    if (n > sizeof name - 1 && n < 64 && strncasecmp(data, name, sizeof name - 1) == 0) {
        char tmp[64];
        memcpy(tmp, data + sizeof name - 1, n - (sizeof name - 1));
        tmp[n - (sizeof name - 1)] = '\0';
        char *end;
        long secs = strtol(tmp, &end, 10);
        while (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n') end++;
        /* Only the delay-seconds form; an HTTP date is ignored. */
        if (end != tmp && *end == '\0' && secs > 0 && secs < 86400) d->retry_after_ms = secs * 1000;
    }
    return n;
}

/* Starts d's next request; on set-up failure schedules a retry. */
static void start_request(struct poller_set *s, struct device *d)
{
    char *path = sync_path(d);
    d->state = DEV_IN_FLIGHT;
    d->retry_after_ms = 0;
    d->errbuf[0] = '\0';
    buf_init(&d->body, s->opt.max_body);
    d->req_token_hash = xstrdup(d->token_hash);
    d->req_since = xstrdup(d->since);
    d->req_first = d->first;
    d->req_to_device_only = d->to_device_only;
    d->req_started = clock_mono_secs();
    atomic_fetch_add(&s->total_polls, 1);
    CURL *e = curl_easy_init();
    bool ok = e && hsclient_prepare(s->hs, e, path, d->token,
                                    d->first ? s->initial_timeout_secs : s->timeout_secs,
                                    &d->headers) == 0;
    ok = ok && curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, hsclient_collect_body) == CURLE_OK &&
         curl_easy_setopt(e, CURLOPT_WRITEDATA, &d->body) == CURLE_OK &&
         curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header) == CURLE_OK &&
         curl_easy_setopt(e, CURLOPT_HEADERDATA, d) == CURLE_OK &&
         curl_easy_setopt(e, CURLOPT_ERRORBUFFER, d->errbuf) == CURLE_OK &&
         curl_easy_setopt(e, CURLOPT_PRIVATE, d) == CURLE_OK &&
         curl_multi_add_handle(s->multi, e) == CURLM_OK;
    free(path);
    if (!ok) {
        if (e) curl_easy_cleanup(e);
        end_transfer(s, d);
        fail(s, d, 0, 0, "cannot set up the request");
        return;
    }
    d->easy = e;
    atomic_fetch_add(&s->outstanding, 1);
    if (d->req_first) s->first_in_flight++;
}

/* 401/403/M_UNKNOWN_TOKEN: reports the request's token dead; d is freed
 * unless ensure gave it a newer token meanwhile. */
static void token_rejected(struct poller_set *s, struct device *d, int status)
{
    char *hash = d->req_token_hash;
    d->req_token_hash = NULL;
    bool replaced = strcmp(hash, d->token_hash) != 0;
    LOG_WARN("poller", "user=%s device=%s token rejected (HTTP %d)%s", d->user_id, d->device_id,
             status, replaced ? "; carrying on with the newer token" : "; poller stopped");
    if (s->cb.on_token_expired) s->cb.on_token_expired(s->cb.ud, d->user_id, d->device_id, hash);
    free(hash);
    if (replaced) {
        end_transfer(s, d);
        schedule(s, d, clock_mono_ms());
        return;
    }
    remove_device(s, d);
}

static struct poller_result *new_result(struct device *d, char *since, char *next_batch, char *token_hash,
                                        json_t *body, double secs, size_t bytes)
{
    struct poller_result *res = xcalloc(1, sizeof *res);
    res->user_id = xstrdup(d->user_id);
    res->device_id = xstrdup(d->device_id);
    res->since = since;
    res->next_batch = next_batch;
    res->token_hash = token_hash;
    res->body = body;
    res->initial = res->since[0] == '\0';
    res->first = d->req_first;
    res->to_device_only = d->req_to_device_only;
    res->http_secs = secs;
    res->bytes = bytes;
    res->poller_gen = d->gen;
    return res;
}

static void hand_out(struct poller_set *s, struct device *d, struct poller_result *res)
{
    d->state = DEV_AWAIT_DONE;
    atomic_fetch_add(&s->awaiting, 1);
    if (res->first) s->first_bytes += res->bytes;
    LOG_DEBUG("poller", "user=%s device=%s response next_batch=%s (%zu bytes) in %.3f s", d->user_id, d->device_id,
              res->next_batch ? res->next_batch : "(not parsed yet)", res->bytes, res->http_secs);
    s->cb.on_response(s->cb.ud, res);
}

int poller_result_parse(struct poller_result *res, char **why)
{
    if (res->body) return 0;
    json_error_t jerr;
    json_t *json = jsonx_loadb(res->raw ? res->raw : "", res->raw_len, 0, &jerr);
    free(res->raw);
    res->raw = NULL;
    const char *next_batch = json_string_value(json_object_get(json, "next_batch"));
    if (!json_is_object(json) || !next_batch || !next_batch[0]) {
        *why = !json ? xasprintf("invalid JSON: %s", jerr.text)
                     : xstrdup(json_is_object(json) ? "response has no next_batch" : "response body is not a JSON object");
        json_decref(json);
        return -1;
    }
    res->next_batch = xstrdup(next_batch);
    res->body = json;
    return 0;
}

/* A finished transfer of d with curl result cc. */
static void finish_request(struct poller_set *s, struct device *d, CURLcode cc)
{
    long status = 0;
    curl_easy_getinfo(d->easy, CURLINFO_RESPONSE_CODE, &status);
    double secs = clock_mono_secs() - d->req_started;
    /* Take the body out and release the transfer now: from here on d is
     * scheduled, handed out, or freed. */
    struct buf body = d->body;
    buf_init(&d->body, 0);
    char *since = d->req_since;
    d->req_since = NULL;
    char *token_hash = NULL; /* the request's token, handed to the result on success */
    curl_multi_remove_handle(s->multi, d->easy);
    curl_easy_cleanup(d->easy);
    d->easy = NULL;
    atomic_fetch_sub(&s->outstanding, 1);
    if (d->req_first) s->first_in_flight--;
    curl_slist_free_all(d->headers);
    d->headers = NULL;
    json_t *json = NULL;
    char *why = NULL;

    if (cc != CURLE_OK) {
        /* Our write callback is the only source of CURLE_WRITE_ERROR. */
        if (cc == CURLE_WRITE_ERROR)
            why = xasprintf("response body larger than %zu bytes", body.max);
        else
            why = xstrdup(d->errbuf[0] ? d->errbuf : curl_easy_strerror(cc));
        free(d->req_token_hash);
        d->req_token_hash = NULL;
        fail(s, d, 0, 0, why);
        goto out;
    }
    json_error_t jerr;
    size_t body_len = body.len;
    if (status == 200 && body_len > PARSE_INLINE_MAX) {
        struct poller_result *res = new_result(d, since, NULL, d->req_token_hash, NULL, secs, body_len);
        since = NULL;
        d->req_token_hash = NULL;
        res->raw = buf_detach(&body, &res->raw_len);
        hand_out(s, d, res);
        goto out;
    }
    json = jsonx_loadb(buf_cstr(&body), body.len, 0, &jerr);
    buf_release(&body);
    const char *errcode = json_string_value(json_object_get(json, "errcode"));
    if (status == 401 || status == 403 || (errcode && strcmp(errcode, "M_UNKNOWN_TOKEN") == 0)) {
        token_rejected(s, d, (int)status);
        goto out;
    }
    token_hash = d->req_token_hash;
    d->req_token_hash = NULL;
    if (status != 200) {
        int64_t server_delay = 0;
        if (status == 429) {
            json_int_t ms = json_integer_value(json_object_get(json, "retry_after_ms"));
            server_delay = ms > 0 ? (int64_t)ms : 0;
            if (d->retry_after_ms > server_delay) server_delay = d->retry_after_ms;
        }
        why = xasprintf("HTTP %ld%s%s", status, errcode ? " " : "", errcode ? errcode : "");
        fail(s, d, (int)status, server_delay, why);
        goto out;
    }
    if (!json) {
        why = xasprintf("invalid JSON: %s", jerr.text);
        fail(s, d, 200, 0, why);
        goto out;
    }
    if (!json_is_object(json)) {
        fail(s, d, 200, 0, "response body is not a JSON object");
        goto out;
    }
    const char *next_batch = json_string_value(json_object_get(json, "next_batch"));
    if (!next_batch || !next_batch[0]) {
        fail(s, d, 200, 0, "response has no next_batch");
        goto out;
    }
    struct poller_result *res = new_result(d, since, xstrdup(next_batch), token_hash, json, secs, body_len);
    since = NULL;
    token_hash = NULL;
    json = NULL;
    hand_out(s, d, res);
out:
    json_decref(json);
    buf_release(&body);
    free(since);
    free(token_hash);
    free(why);
}

/* ---- whoami ---- */

static void whoami_free(struct poller_set *s, struct whoami *w)
{
    if (w->easy) {
        curl_multi_remove_handle(s->multi, w->easy);
        curl_easy_cleanup(w->easy);
    }
    curl_slist_free_all(w->headers);
    buf_release(&w->body);
    if (w->prev)
        w->prev->next = w->next;
    else
        s->whoamis = w->next;
    if (w->next) w->next->prev = w->prev;
    free(w);
}

/* Answers w's caller with a failure. */
static void whoami_fail(struct whoami *w, const char *why)
{
    if (w->fn) w->fn(w->ud, HSCLIENT_FAILED, NULL, NULL, why);
    if (w->get_fn) w->get_fn(w->ud, 0, NULL, 0, why);
}

/* Starts a whoami or small GET for the command (which gives up its callback to it). */
static void apply_whoami(struct poller_set *s, struct cmd *c)
{
    struct whoami *w = xcalloc(1, sizeof *w);
    w->kind = XFER_WHOAMI;
    w->fn = c->whoami_fn;
    w->get_fn = c->get_fn;
    w->ud = c->cb_ud;
    c->whoami_fn = NULL;
    c->get_fn = NULL;
    const char *path = c->kind == CMD_GET ? c->path : HSCLIENT_WHOAMI_PATH;
    const char *token = c->kind == CMD_GET ? NULL : c->token;
    buf_init(&w->body, HSCLIENT_MAX_SMALL_BODY);
    w->next = s->whoamis;
    if (s->whoamis) s->whoamis->prev = w;
    s->whoamis = w;
    CURL *e = curl_easy_init();
    bool ok = e && hsclient_prepare(s->hs, e, path, token, s->timeout_secs, &w->headers) == 0;
    ok = ok && curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, hsclient_collect_body) == CURLE_OK &&
         curl_easy_setopt(e, CURLOPT_WRITEDATA, &w->body) == CURLE_OK &&
         curl_easy_setopt(e, CURLOPT_ERRORBUFFER, w->errbuf) == CURLE_OK &&
         curl_easy_setopt(e, CURLOPT_PRIVATE, w) == CURLE_OK && curl_multi_add_handle(s->multi, e) == CURLM_OK;
    if (!ok) {
        if (e) curl_easy_cleanup(e);
        whoami_fail(w, "cannot set up the request");
        whoami_free(s, w);
        return;
    }
    w->easy = e;
}

static void finish_whoami(struct poller_set *s, struct whoami *w, CURLcode cc)
{
    char *user = NULL, *dev = NULL, *err = NULL;
    int rc = HSCLIENT_FAILED;
    if (cc != CURLE_OK) {
        err = cc == CURLE_WRITE_ERROR ? xasprintf("response body larger than %d bytes", HSCLIENT_MAX_SMALL_BODY)
                                      : xstrdup(w->errbuf[0] ? w->errbuf : curl_easy_strerror(cc));
    } else if (w->get_fn) {
        long status = 0;
        curl_easy_getinfo(w->easy, CURLINFO_RESPONSE_CODE, &status);
        w->get_fn(w->ud, status, buf_cstr(&w->body), w->body.len, NULL);
        w->get_fn = NULL;
    } else {
        long status = 0;
        curl_easy_getinfo(w->easy, CURLINFO_RESPONSE_CODE, &status);
        rc = hsclient_whoami_result(status, buf_cstr(&w->body), w->body.len, &user, &dev, &err);
    }
    if (w->get_fn) w->get_fn(w->ud, 0, NULL, 0, err);
    if (w->fn) w->fn(w->ud, rc, user, dev, err);
    free(user);
    free(dev);
    free(err);
    whoami_free(s, w);
}

/* ---- commands ---- */

static void apply_ensure(struct poller_set *s, struct cmd *c)
{
    struct device *d = find_device(s, c->user_id, c->device_id);
    if (d) {
        if (strcmp(d->token_hash, c->token_hash) != 0) {
            LOG_INFO("poller", "user=%s device=%s token updated", d->user_id, d->device_id);
            free_secret(d->token);
            free(d->token_hash);
            d->token = c->token;
            d->token_hash = c->token_hash;
            c->token = c->token_hash = NULL;
        }
        return;
    }
    d = xcalloc(1, sizeof *d);
    d->kind = XFER_SYNC;
    d->key = make_key(c->user_id, c->device_id, &d->keylen);
    d->user_id = d->key;
    d->device_id = d->key + strlen(d->key) + 1;
    d->token = c->token;
    d->token_hash = c->token_hash;
    d->since = c->since;
    c->token = c->token_hash = c->since = NULL;
    d->first = true;
    d->to_device_only = c->to_device_only;
    d->gen = ++s->next_gen;
    d->heap_idx = -1;
    buf_init(&d->body, 0);
    HASH_ADD_KEYPTR(hh, s->devices, d->key, d->keylen, d);
    atomic_fetch_add(&s->num_pollers, 1);
    LOG_INFO("poller", "user=%s device=%s poll loop started (since %s%s%s)", d->user_id,
             d->device_id, d->since[0] ? "\"" : "none", d->since, d->since[0] ? "\"" : "");
    schedule(s, d, clock_mono_ms());
}

static void apply_done(struct poller_set *s, struct poller_result *res, bool ok)
{
    if (res->first) s->first_bytes -= res->bytes < s->first_bytes ? res->bytes : s->first_bytes;
    struct device *d = find_device(s, res->user_id, res->device_id);
    if (!d || d->gen != res->poller_gen || d->state != DEV_AWAIT_DONE) {
        poller_result_free(res);
        return;
    }
    atomic_fetch_sub(&s->awaiting, 1);
    if (ok) {
        free(d->since);
        d->since = res->next_batch;
        res->next_batch = NULL;
        d->first = false;
        d->to_device_only = false;
        d->fail_count = 0;
        schedule(s, d, clock_mono_ms());
    } else {
        fail(s, d, 200, 0, "the response could not be processed");
    }
    poller_result_free(res);
}

static void cmd_free(struct cmd *c)
{
    /* A whoami or GET that never started still answers its caller. */
    if (c->whoami_fn) c->whoami_fn(c->cb_ud, HSCLIENT_FAILED, NULL, NULL, "the server is stopping");
    if (c->get_fn) c->get_fn(c->cb_ud, 0, NULL, 0, "the server is stopping");
    free(c->path);
    free(c->user_id);
    free(c->device_id);
    free_secret(c->token);
    free(c->token_hash);
    free(c->since);
    poller_result_free(c->res);
    free(c);
}

/* Applies the queued commands in order; returns true when the thread must exit. */
static bool drain_commands(struct poller_set *s)
{
    pthread_mutex_lock(&s->lock);
    struct cmd *c = s->cmd_head;
    s->cmd_head = s->cmd_tail = NULL;
    bool quit = s->quit;
    pthread_mutex_unlock(&s->lock);
    while (c) {
        struct cmd *next = c->next;
        if (!quit) {
            if (c->kind == CMD_ENSURE) {
                apply_ensure(s, c);
            } else if (c->kind == CMD_DONE) {
                apply_done(s, c->res, c->ok);
                c->res = NULL;
            } else if (c->kind == CMD_WHOAMI || c->kind == CMD_GET) {
                apply_whoami(s, c);
            } else {
                struct device *d = find_device(s, c->user_id, c->device_id);
                if (d) {
                    LOG_INFO("poller", "user=%s device=%s poller stopped", d->user_id,
                             d->device_id);
                    remove_device(s, d);
                }
            }
        }
        cmd_free(c);
        c = next;
    }
    return quit;
}

static void push_cmd(struct poller_set *s, struct cmd *c)
{
    pthread_mutex_lock(&s->lock);
    if (s->cmd_tail)
        s->cmd_tail->next = c;
    else
        s->cmd_head = c;
    s->cmd_tail = c;
    pthread_mutex_unlock(&s->lock);
    curl_multi_wakeup(s->multi);
}

/* ---- the thread ---- */

static void *run(void *arg)
{
    struct poller_set *s = arg;
    for (;;) {
        if (drain_commands(s)) break;
        int64_t now = clock_mono_ms();
        while (s->heap_len > 0 && s->heap[0]->deadline <= now) {
            struct device *d = s->heap[0];
            heap_remove(s, d);
            /* First polls are whole initial syncs for the homeserver: at
             * start-up, hundreds of devices resume at once, so only a few
             * run together and the rest wait their turn. */
            if (d->first && (s->first_in_flight >= s->opt.max_first_in_flight ||
                             s->first_bytes >= s->opt.max_first_bytes)) {
                schedule(s, d, now + 100 + (int64_t)(next_random(s) % 100));
                continue;
            }
            start_request(s, d);
        }
        int running = 0;
        CURLMcode mc = curl_multi_perform(s->multi, &running);
        if (mc != CURLM_OK) LOG_ERROR("poller", "curl_multi_perform: %s", curl_multi_strerror(mc));
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(s->multi, &left))) {
            if (msg->msg != CURLMSG_DONE) continue;
            char *priv = NULL;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
            CURLcode cc = msg->data.result;
            /* msg is invalid once the handle is removed: read it first. */
            if (*(enum xfer_kind *)(void *)priv == XFER_WHOAMI)
                finish_whoami(s, (struct whoami *)(void *)priv, cc);
            else
                finish_request(s, (struct device *)(void *)priv, cc);
        }
        int wait_ms = IDLE_WAIT_MS;
        if (s->heap_len > 0) {
            int64_t until = s->heap[0]->deadline - clock_mono_ms();
            wait_ms = until <= 0 ? 0 : until < IDLE_WAIT_MS ? (int)until : IDLE_WAIT_MS;
        }
        mc = curl_multi_poll(s->multi, NULL, 0, wait_ms, NULL);
        if (mc != CURLM_OK) LOG_ERROR("poller", "curl_multi_poll: %s", curl_multi_strerror(mc));
    }
    struct device *d, *tmp;
    HASH_ITER(hh, s->devices, d, tmp) remove_device(s, d);
    while (s->whoamis) {
        whoami_fail(s->whoamis, "the server is stopping");
        whoami_free(s, s->whoamis);
    }
    return NULL;
}

/* ---- public API ---- */

int poller_set_new(struct poller_set **out, const struct config *cfg,
                   const struct poller_callbacks *cb, const struct poller_options *opts)
{
    *out = NULL;
    if (!cb || !cb->on_response) return -1;
    int rc = -1;
    struct poller_set *s = xcalloc(1, sizeof *s);
    CHECK(pthread_mutex_init(&s->lock, NULL) == 0);
    if (hsclient_new(&s->hs, cfg) < 0) goto out;
    s->cb = *cb;
    if (opts) s->opt = *opts;
    if (s->opt.backoff_base_ms <= 0) s->opt.backoff_base_ms = DEFAULT_BACKOFF_BASE_MS;
    if (s->opt.backoff_max_ms <= 0) s->opt.backoff_max_ms = DEFAULT_BACKOFF_MAX_MS;
    if (s->opt.backoff_max_ms < s->opt.backoff_base_ms)
        s->opt.backoff_max_ms = s->opt.backoff_base_ms;
    if (s->opt.max_body == 0) s->opt.max_body = DEFAULT_MAX_BODY;
    if (s->opt.max_first_in_flight <= 0) s->opt.max_first_in_flight = DEFAULT_MAX_FIRST_IN_FLIGHT;
    if (s->opt.max_first_bytes == 0) s->opt.max_first_bytes = DEFAULT_MAX_FIRST_BYTES;
    s->timeout_secs = cfg->http_timeout_secs > 0 ? cfg->http_timeout_secs : DEFAULT_TIMEOUT_SECS;
    s->initial_timeout_secs = cfg->http_initial_timeout_secs > 0 ? cfg->http_initial_timeout_secs
                                                                 : DEFAULT_INITIAL_TIMEOUT_SECS;
    s->rng = ((uint64_t)clock_wall_ms() << 20) ^ (uint64_t)(uintptr_t)s ^ 0x9E3779B97F4A7C15ULL;
    if (s->rng == 0) s->rng = 1;
    s->multi = curl_multi_init();
    if (!s->multi) goto out;
    /* Every device holds its own long-poll; never queue one behind another. */
    curl_multi_setopt(s->multi, CURLMOPT_MAX_HOST_CONNECTIONS, 0L);
    if (pthread_create(&s->thread, NULL, run, s) != 0) goto out;
    *out = s;
    rc = 0;
out:
    if (rc < 0) {
        if (s->multi) curl_multi_cleanup(s->multi);
        pthread_mutex_destroy(&s->lock);
        hsclient_free(s->hs);
        free(s);
    }
    return rc;
}

void poller_set_free(struct poller_set *s)
{
    if (!s) return;
    pthread_mutex_lock(&s->lock);
    s->quit = true;
    pthread_mutex_unlock(&s->lock);
    curl_multi_wakeup(s->multi);
    pthread_join(s->thread, NULL);
    for (struct cmd *c = s->cmd_head, *next; c; c = next) {
        next = c->next;
        cmd_free(c);
    }
    curl_multi_cleanup(s->multi);
    pthread_mutex_destroy(&s->lock);
    hsclient_free(s->hs);
    free(s->heap);
    free(s);
}

void poller_set_ensure(struct poller_set *s, const char *user_id, const char *device_id,
                       const char *token, const char *token_hash, const char *since,
                       bool to_device_only)
{
    struct cmd *c = xcalloc(1, sizeof *c);
    c->kind = CMD_ENSURE;
    c->user_id = xstrdup(user_id);
    c->device_id = xstrdup(device_id);
    c->token = xstrdup(token);
    c->token_hash = xstrdup(token_hash);
    c->since = xstrdup(since ? since : "");
    c->to_device_only = to_device_only;
    push_cmd(s, c);
}

void poller_set_done(struct poller_set *s, struct poller_result *res, bool ok)
{
    if (!res) return;
    struct cmd *c = xcalloc(1, sizeof *c);
    c->kind = CMD_DONE;
    c->res = res;
    c->ok = ok;
    push_cmd(s, c);
}

void poller_set_stop_device(struct poller_set *s, const char *user_id, const char *device_id)
{
    struct cmd *c = xcalloc(1, sizeof *c);
    c->kind = CMD_STOP;
    c->user_id = xstrdup(user_id);
    c->device_id = xstrdup(device_id);
    push_cmd(s, c);
}

/* Queues a token check (token set) or a small GET (path set) answered through fn. */
static void push_small_request(struct poller_set *s, const char *token, const char *path,
                               poller_whoami_fn whoami_fn, poller_get_fn get_fn, void *ud)
{
    struct cmd *c = xcalloc(1, sizeof *c);
    c->kind = token ? CMD_WHOAMI : CMD_GET;
    c->token = token ? xstrdup(token) : NULL;
    c->path = path ? xstrdup(path) : NULL;
    c->whoami_fn = whoami_fn;
    c->get_fn = get_fn;
    c->cb_ud = ud;
    push_cmd(s, c);
}

void poller_set_whoami(struct poller_set *s, const char *token, poller_whoami_fn fn, void *ud)
{
    push_small_request(s, token, NULL, fn, NULL, ud);
}

void poller_set_get(struct poller_set *s, const char *path, poller_get_fn fn, void *ud)
{
    push_small_request(s, NULL, path, NULL, fn, ud);
}

int poller_set_count(struct poller_set *s)
{
    return atomic_load(&s->num_pollers);
}

void poller_set_stats(struct poller_set *s, struct poller_stats *st)
{
    st->num_pollers = atomic_load(&s->num_pollers);
    st->outstanding = atomic_load(&s->outstanding);
    st->awaiting_done = atomic_load(&s->awaiting);
    st->total_polls = atomic_load(&s->total_polls);
    st->total_failures = atomic_load(&s->total_failures);
}

void poller_result_free(struct poller_result *res)
{
    if (!res) return;
    free(res->user_id);
    free(res->device_id);
    free(res->since);
    free(res->next_batch);
    free(res->token_hash);
    json_decref(res->body);
    free(res->raw);
    free(res);
}
