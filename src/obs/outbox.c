#include "obs/outbox.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/alloc.h"
#include "base/clock.h"
#include "base/log.h"
#include "obs/metrics.h"

/* A failing receiver is logged at most this often. */
#define WARN_EVERY_MS 60000

struct outbox {
    struct outbox_opts o;     /* options (name owned) */
    pthread_t thread;         /* the worker */
    pthread_mutex_t mu;       /* guards ring, head, n, first_ms, stop */
    pthread_cond_t cond;      /* signalled on the first item, a full batch and stop */
    void **ring;              /* queued items, cap entries */
    size_t head;              /* index of the oldest item */
    size_t n;                 /* queued items */
    int64_t first_ms;         /* monotonic time the oldest queued item arrived */
    bool stop;                /* outbox_free was called */
    CURL *curl;               /* the worker's handle, created on first use */
    int64_t last_warn_ms;     /* when a failure was last logged (worker only) */
    char errbuf[CURL_ERROR_SIZE]; /* the last transport error */
};

static void count_dropped(struct outbox *b, size_t n)
{
    if (n) metrics_add(b->o.dropped, (double)n);
}

bool outbox_push(struct outbox *b, void *item)
{
    pthread_mutex_lock(&b->mu);
    if (b->stop || b->n == b->o.cap) {
        pthread_mutex_unlock(&b->mu);
        b->o.free_item(item);
        count_dropped(b, 1);
        return false;
    }
    b->ring[(b->head + b->n) % b->o.cap] = item;
    if (++b->n == 1) b->first_ms = clock_mono_ms();
    if (b->n == 1 || b->n == b->o.batch) pthread_cond_signal(&b->cond);
    pthread_mutex_unlock(&b->mu);
    return true;
}

/* Waits (b->mu held) until a batch is due; returns false when stopped and empty. */
static bool wait_batch(struct outbox *b)
{
    for (;;) {
        if (b->n == 0) {
            if (b->stop) return false;
            pthread_cond_wait(&b->cond, &b->mu);
            continue;
        }
        if (b->stop || b->n >= b->o.batch || b->o.linger_ms <= 0) return true;
        int64_t due = b->first_ms + b->o.linger_ms;
        if (clock_mono_ms() >= due) return true;
        struct timespec ts = {.tv_sec = (time_t)(due / 1000), .tv_nsec = (long)(due % 1000) * 1000000L};
        pthread_cond_timedwait(&b->cond, &b->mu, &ts);
    }
}

static void *run(void *arg)
{
    struct outbox *b = arg;
    void **items = xmalloc(b->o.batch * sizeof *items);
    pthread_mutex_lock(&b->mu);
    while (wait_batch(b)) {
        size_t k = b->n < b->o.batch ? b->n : b->o.batch;
        for (size_t i = 0; i < k; i++) items[i] = b->ring[(b->head + i) % b->o.cap];
        b->head = (b->head + k) % b->o.cap;
        b->n -= k;
        if (b->n) b->first_ms = clock_mono_ms();
        pthread_mutex_unlock(&b->mu);
        size_t lost = b->o.send(b->o.ud, b, items, k);
        count_dropped(b, lost);
        pthread_mutex_lock(&b->mu);
        if (b->stop && lost) {
            /* Stopping and the receiver is not taking anything: do not make
             * shutdown wait for one timeout per remaining batch. */
            size_t rest = b->n;
            for (size_t i = 0; i < rest; i++) b->o.free_item(b->ring[(b->head + i) % b->o.cap]);
            b->n = 0;
            pthread_mutex_unlock(&b->mu);
            count_dropped(b, rest);
            pthread_mutex_lock(&b->mu);
        }
    }
    pthread_mutex_unlock(&b->mu);
    free(items);
    return NULL;
}

int outbox_new(struct outbox **out, const struct outbox_opts *o)
{
    CHECK(o->send && o->free_item && o->cap > 0 && o->batch > 0);
    struct outbox *b = xcalloc(1, sizeof *b);
    b->o = *o;
    b->o.name = xstrdup(o->name ? o->name : "outbox");
    b->ring = xcalloc(o->cap, sizeof *b->ring);
    pthread_mutex_init(&b->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&b->cond, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&b->thread, NULL, run, b) != 0) {
        LOG_ERROR("obs", "%s: cannot start the sender thread", b->o.name);
        pthread_cond_destroy(&b->cond);
        pthread_mutex_destroy(&b->mu);
        free(b->ring);
        free((char *)b->o.name);
        free(b);
        *out = NULL;
        return -1;
    }
    char tname[16];
    snprintf(tname, sizeof tname, "%s", b->o.name);
    pthread_setname_np(b->thread, tname);
    *out = b;
    return 0;
}

void outbox_free(struct outbox *b)
{
    if (!b) return;
    pthread_mutex_lock(&b->mu);
    b->stop = true;
    pthread_cond_signal(&b->cond);
    pthread_mutex_unlock(&b->mu);
    pthread_join(b->thread, NULL);
    for (size_t i = 0; i < b->n; i++) b->o.free_item(b->ring[(b->head + i) % b->o.cap]);
    if (b->curl) curl_easy_cleanup(b->curl);
    pthread_cond_destroy(&b->cond);
    pthread_mutex_destroy(&b->mu);
    free(b->ring);
    free((char *)b->o.name);
    free(b);
}

void outbox_log_failure(struct outbox *b, const char *url, long status, const char *why, size_t n, const char *what)
{
    int64_t now = clock_mono_ms();
    if (b->last_warn_ms && now - b->last_warn_ms < WARN_EVERY_MS) return;
    b->last_warn_ms = now;
    if (status)
        LOG_WARN(b->o.name, "%s answered HTTP %ld: dropped %zu %s (logged at most once a minute)", url, status, n,
                 what);
    else
        LOG_WARN(b->o.name, "cannot reach %s: %s: dropped %zu %s (logged at most once a minute)", url,
                 why ? why : "?", n, what);
}

static size_t discard(char *p, size_t size, size_t n, void *ud)
{
    return size * n;
}

long outbox_post(struct outbox *b, const struct outbox_request *r, const char **why)
{
    if (why) *why = NULL;
    if (!b->curl) b->curl = curl_easy_init();
    if (!b->curl) {
        if (why) *why = "cannot create a libcurl handle";
        return 0;
    }
    CURL *c = b->curl;
    curl_easy_reset(c);
    struct curl_slist *hdrs = NULL;
    char ct[128];
    snprintf(ct, sizeof ct, "Content-Type: %s", r->content_type);
    hdrs = curl_slist_append(hdrs, ct);
    hdrs = curl_slist_append(hdrs, "Expect:");
    if (r->header) hdrs = curl_slist_append(hdrs, r->header);
    b->errbuf[0] = '\0';
    long connect_ms = r->timeout_ms < 2000 ? r->timeout_ms : 2000;
    curl_easy_setopt(c, CURLOPT_URL, r->url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, r->body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->len);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, r->timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, b->errbuf);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "syncv3/" SYNCV3_VERSION);
    if (r->user) {
        curl_easy_setopt(c, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(c, CURLOPT_USERNAME, r->user);
        curl_easy_setopt(c, CURLOPT_PASSWORD, r->password ? r->password : "");
    }
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    if (rc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    else if (why)
        *why = b->errbuf[0] ? b->errbuf : curl_easy_strerror(rc);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(hdrs);
    return status;
}
