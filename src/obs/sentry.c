#include "obs/sentry.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/clock.h"
#include "base/config.h"
#include "base/crypto.h"
#include "base/log.h"
#include "obs/crash.h"
#include "obs/metrics.h"
#include "obs/outbox.h"

#define QUEUE_CAP 64
#define BATCH_MAX 16
#define POST_TIMEOUT_MS 5000
/* 5xx reports: a burst of this many, then one per REFILL_MS. */
#define BURST 10
#define REFILL_MS 6000

/* One queued event. */
struct report {
    json_t *event;      /* the event, complete (owned) */
    char *remove_path;  /* crash file to delete once Sentry took the event, or NULL */
};

struct sentry {
    struct sentry_dsn dsn;      /* where to */
    char *auth_header;          /* "X-Sentry-Auth: Sentry sentry_version=7, ..." */
    char *environment;          /* environment name */
    char *server_name;          /* host name */
    struct metric *sent;        /* counter, or NULL */
    struct metric *dropped;     /* counter, or NULL */
    struct outbox *box;         /* queue and sender thread */
    pthread_mutex_t rl_mu;      /* guards tokens and refill_at (leaf) */
    int tokens;                 /* 5xx reports allowed now */
    int64_t refill_at;          /* monotonic ms when the next token arrives */
};

bool sentry_on = false;
static struct sentry *sentry;

/* ---------------------------------------------------------------- DSN */

void sentry_dsn_release(struct sentry_dsn *d)
{
    free(d->envelope_url);
    free(d->public_key);
    free(d->secret_key);
    free(d->project);
    *d = (struct sentry_dsn){0};
}

int sentry_dsn_parse(const char *dsn, struct sentry_dsn *d)
{
    *d = (struct sentry_dsn){0};
    const char *scheme_end = strstr(dsn, "://");
    if (!scheme_end || !(scheme_end - dsn == 4 || scheme_end - dsn == 5)) return -1;
    if (strncmp(dsn, "http", 4) != 0 || (scheme_end - dsn == 5 && dsn[4] != 's')) return -1;
    const char *auth = scheme_end + 3;
    const char *at = strchr(auth, '@');
    const char *slash = strchr(auth, '/');
    if (!at || !slash || at > slash || at == auth) return -1;
    const char *host = at + 1;
    /* The project is the last path segment; a trailing slash is tolerated. */
    size_t len = strlen(host);
    while (len && host[len - 1] == '/') len--;
    const char *last = host + len;
    while (last > host && last[-1] != '/') last--;
    if (last == host + len || last - 1 <= host) return -1;
    const char *host_end = strchr(host, '/');
    if (host_end == host || strpbrk(dsn, " \t\r\n?#")) return -1;
    for (const char *p = last; p < host + len; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '-'))
            return -1;
    const char *colon = memchr(auth, ':', (size_t)(at - auth));
    d->public_key = xstrndup(auth, (size_t)((colon ? colon : at) - auth));
    if (colon) d->secret_key = xstrndup(colon + 1, (size_t)(at - colon - 1));
    d->project = xstrndup(last, (size_t)(host + len - last));
    /* {scheme}://{host}{path}/api/{project}/envelope/, the path being what lies between. */
    d->envelope_url = xasprintf("%.*s%.*s/api/%s/envelope/", (int)(auth - dsn), dsn, (int)(last - 1 - host), host,
                                d->project);
    if (!*d->public_key) {
        sentry_dsn_release(d);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- events */

static void uuid_hex(char out[33])
{
    uint8_t b[16];
    if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b) {
        uint64_t x = (uint64_t)clock_wall_ms() * 6364136223846793005ULL ^ (uint64_t)clock_mono_ms();
        for (size_t i = 0; i < sizeof b; i++, x = x * 6364136223846793005ULL + 1442695040888963407ULL)
            b[i] = (uint8_t)(x >> 56);
    }
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    crypto_hex(b, sizeof b, out);
}

static void rfc3339_now(char out[40])
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(out, 40, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 40 - n, ".%03dZ", (int)(ts.tv_nsec / 1000000));
}

/* Adds what every event carries (keeping fields the event already has). */
static void complete_event(struct sentry *s, json_t *ev)
{
    char id[33], now[40];
    uuid_hex(id);
    rfc3339_now(now);
    json_object_set_new(ev, "event_id", json_string(id));
    if (!json_object_get(ev, "timestamp")) json_object_set_new(ev, "timestamp", json_string(now));
    if (!json_object_get(ev, "release")) json_object_set_new(ev, "release", json_string("syncv3@" SYNCV3_VERSION));
    json_object_set_new(ev, "platform", json_string("native"));
    json_object_set_new(ev, "environment", json_string(s->environment));
    json_object_set_new(ev, "server_name", json_string(s->server_name));
    json_object_set_new(ev, "sdk", json_pack("{s:s, s:s}", "name", "syncv3", "version", SYNCV3_VERSION));
    json_t *tags = json_object_get(ev, "tags");
    if (tags) json_object_set_new(tags, "commit", json_string(SYNCV3_COMMIT));
}

static void report_free(void *p)
{
    struct report *r = p;
    if (!r) return;
    json_decref(r->event);
    free(r->remove_path);
    free(r);
}

static void queue_event(struct sentry *s, json_t *ev, const char *remove_path)
{
    complete_event(s, ev);
    struct report *r = xcalloc(1, sizeof *r);
    r->event = ev;
    r->remove_path = remove_path ? xstrdup(remove_path) : NULL;
    outbox_push(s->box, r);
}

/* The envelope: a header line, an item header line, the event. */
static char *envelope(const json_t *ev, size_t *len)
{
    char *event = json_dumps(ev, JSON_COMPACT);
    CHECK(event != NULL);
    char now[40];
    rfc3339_now(now);
    json_t *hdr = json_pack("{s:s, s:s}", "event_id", json_string_value(json_object_get(ev, "event_id")), "sent_at",
                            now);
    json_t *item = json_pack("{s:s, s:I, s:s}", "type", "event", "length", (json_int_t)strlen(event), "content_type",
                             "application/json");
    char *h = json_dumps(hdr, JSON_COMPACT), *i = json_dumps(item, JSON_COMPACT);
    char *out = xasprintf("%s\n%s\n%s\n", h, i, event);
    free(h);
    free(i);
    free(event);
    json_decref(hdr);
    json_decref(item);
    *len = strlen(out);
    return out;
}

static size_t send_reports(void *ud, struct outbox *box, void **items, size_t n)
{
    struct sentry *s = ud;
    size_t lost = 0;
    for (size_t k = 0; k < n; k++) {
        struct report *r = items[k];
        size_t len;
        char *body = envelope(r->event, &len);
        struct outbox_request req = {.url = s->dsn.envelope_url,
                                     .content_type = "application/x-sentry-envelope",
                                     .header = s->auth_header,
                                     .body = body,
                                     .len = len,
                                     .timeout_ms = POST_TIMEOUT_MS};
        const char *why = NULL;
        long status = outbox_post(box, &req, &why);
        free(body);
        if (status >= 200 && status < 300) {
            metrics_inc(s->sent);
            if (r->remove_path && unlink(r->remove_path) < 0 && errno != ENOENT)
                LOG_WARN("sentry", "cannot remove the sent crash report %s: %s", r->remove_path, strerror(errno));
        } else {
            lost++;
            outbox_log_failure(box, s->dsn.envelope_url, status, why, 1, "error report");
        }
        report_free(r);
    }
    return lost;
}

/* ---------------------------------------------------------------- reporters */

static bool rate_ok(struct sentry *s)
{
    int64_t now = clock_mono_ms();
    pthread_mutex_lock(&s->rl_mu);
    while (s->tokens < BURST && now >= s->refill_at) {
        s->tokens++;
        s->refill_at += REFILL_MS;
    }
    if (s->tokens == BURST) s->refill_at = now + REFILL_MS;
    bool ok = s->tokens > 0;
    if (ok) s->tokens--;
    pthread_mutex_unlock(&s->rl_mu);
    return ok;
}

void sentry_http_error(int status, const char *method, const char *path, const char *errcode, const char *message)
{
    struct sentry *s = sentry;
    if (!s) return;
    if (!rate_ok(s)) {
        metrics_inc(s->dropped);
        return;
    }
    char st[12];
    snprintf(st, sizeof st, "%d", status);
    char *msg = xasprintf("HTTP %d on %s %s%s%s", status, method, path, message ? ": " : "", message ? message : "");
    json_t *ev = json_pack("{s:s, s:s, s:{s:s}, s:{s:s, s:s, s:s}, s:{s:s, s:s}}", "level", "error", "logger",
                           "syncv3.http", "message", "formatted", msg, "tags", "http.status_code", st, "http.method",
                           method, "http.path", path, "request", "method", method, "url", path);
    if (errcode) json_object_set_new(json_object_get(ev, "tags"), "errcode", json_string(errcode));
    free(msg);
    queue_event(s, ev, NULL);
}

static void on_fatal(const char *module, const char *message)
{
    struct sentry *s = sentry;
    if (!s) return;
    char *logger = xasprintf("syncv3.%s", module);
    json_t *ev = json_pack("{s:s, s:s, s:{s:s}, s:{s:s}}", "level", "fatal", "logger", logger, "message", "formatted",
                           message, "tags", "module", module);
    free(logger);
    queue_event(s, ev, NULL);
}

/* Queues the reports that crashes of earlier runs left in dir. */
static void queue_crash_reports(struct sentry *s, const char *dir)
{
    char **files = crash_pending(dir);
    for (char **f = files; *f; f++) {
        json_t *ev = crash_read_event(*f);
        if (ev) {
            LOG_WARN("sentry", "an earlier run crashed; sending its report %s", *f);
            queue_event(s, ev, *f);
        } else {
            LOG_WARN("sentry", "removing %s: not a readable crash report", *f);
            unlink(*f);
        }
        free(*f);
    }
    free(files);
}

/* ---------------------------------------------------------------- start/stop */

static void sentry_free(struct sentry *s)
{
    if (!s) return;
    sentry_dsn_release(&s->dsn);
    free(s->auth_header);
    free(s->environment);
    free(s->server_name);
    pthread_mutex_destroy(&s->rl_mu);
    free(s);
}

int sentry_start(const struct config *c, struct metrics *m, char **err)
{
    *err = NULL;
    if (!c->sentry_dsn) return 0;
    struct sentry *s = xcalloc(1, sizeof *s);
    pthread_mutex_init(&s->rl_mu, NULL);
    if (sentry_dsn_parse(c->sentry_dsn, &s->dsn) < 0) {
        *err = xstrdup("SYNCV3_SENTRY_DSN must look like https://<key>@<host>/<project id>");
        sentry_free(s);
        return -1;
    }
    s->auth_header = xasprintf("X-Sentry-Auth: Sentry sentry_version=7, sentry_key=%s%s%s, "
                               "sentry_client=syncv3/" SYNCV3_VERSION,
                               s->dsn.public_key, s->dsn.secret_key ? ", sentry_secret=" : "",
                               s->dsn.secret_key ? s->dsn.secret_key : "");
    s->environment = xstrdup(c->sentry_environment ? c->sentry_environment : "production");
    char host[256] = "";
    if (gethostname(host, sizeof host - 1) < 0) snprintf(host, sizeof host, "unknown");
    s->server_name = xstrdup(host);
    s->sent = m ? m->sentry_events_sent : NULL;
    s->dropped = m ? m->sentry_events_dropped : NULL;
    s->tokens = BURST;
    s->refill_at = clock_mono_ms() + REFILL_MS;
    struct outbox_opts o = {.name = "sentry",
                            .cap = QUEUE_CAP,
                            .batch = BATCH_MAX,
                            .send = send_reports,
                            .free_item = report_free,
                            .ud = s,
                            .dropped = s->dropped};
    if (outbox_new(&s->box, &o) < 0) {
        *err = xstrdup("cannot start the error-report thread");
        sentry_free(s);
        return -1;
    }
    sentry = s;
    sentry_on = true;
    log_fatal_hook = on_fatal;

    const char *tmp = getenv("TMPDIR");
    const char *dir = c->sentry_crash_dir ? c->sentry_crash_dir : tmp && tmp[0] == '/' ? tmp : "/tmp";
    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        LOG_WARN("sentry", "cannot create the crash report directory %s: %s", dir, strerror(errno));
    queue_crash_reports(s, dir);
    if (crash_install(dir, "syncv3@" SYNCV3_VERSION) < 0)
        LOG_WARN("sentry", "crash reports are off: the directory name %s is too long", dir);
    LOG_INFO("sentry", "sending error reports to %s (environment %s); crash reports go to %s", s->dsn.envelope_url,
             s->environment, dir);
    return 0;
}

void sentry_stop(void)
{
    struct sentry *s = sentry;
    if (!s) return;
    log_fatal_hook = NULL;
    sentry_on = false;
    crash_uninstall();
    outbox_free(s->box); /* sends what is queued first */
    sentry = NULL;
    sentry_free(s);
}
