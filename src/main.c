/* syncv3: a sliding sync server for Matrix. Reads its configuration from
 * SYNCV3_* variables, builds the pipeline (pollers -> ingest -> store and
 * caches -> connections -> HTTP) and runs until SIGTERM or SIGINT. */
#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/alloc.h"
#include "base/clock.h"
#include "base/config.h"
#include "base/log.h"
#include "cache/cache.h"
#include "cli/cli.h"
#include "http/prom.h"
#include "http/server.h"
#include "http/static.h"
#include "ingest/ingest.h"
#include "obs/metrics.h"
#include "obs/pprof.h"
#include "obs/sentry.h"
#include "obs/trace.h"
#include "store/db.h"
#include "store/migrate.h"
#include "sync/api.h"
#include "sync/versions.h"
#include "upstream/hsclient.h"
#include "upstream/poller.h"

/* Everything the process runs, built in main and torn down in reverse. */
struct server {
    struct config cfg;           /* configuration */
    struct metrics *metrics;     /* Prometheus registry */
    struct db_pool *db;          /* PostgreSQL pool */
    struct cache *cache;         /* room and user caches */
    struct ingest *ingest;       /* the ingest thread */
    struct hsclient *hs;         /* homeserver client: the start-up check */
    struct poller_set *pollers;  /* the poller thread */
    struct sync_api *api;        /* the sliding sync API */
    struct versions *versions;   /* GET /_matrix/client/versions with our feature flag */
    struct http_server *http;    /* client-facing listener */
    struct prom_server *prom;    /* metrics listener, or NULL */
    struct pprof_server *pprof;  /* profiling listener, or NULL */
};

/* How long start-up waits for the pre-load of users with a recent stored
 * connection before it listens anyway (the pre-load then continues). */
#define PRELOAD_BUDGET_MS 300

static const char *env(const char *name)
{
    return getenv(name);
}

static void usage(FILE *out)
{
    fprintf(out, "syncv3 %s (%s): a sliding sync server for Matrix.\n\n", SYNCV3_VERSION, SYNCV3_COMMIT);
    cli_print_usage(out);
    fputc('\n', out);
    config_print_help(out);
}

/* The poller reports a dead token to ingest (which forgets it and marks the
 * device) and to the API (which answers 401 to it and ends the device's
 * connections). */
struct expiry_fanout {
    struct ingest *ingest;   /* forgets the token, marks the device */
    struct sync_api *api;    /* ends connections */
};

static struct expiry_fanout fanout;

static void on_token_expired(void *ud, const char *user_id, const char *device_id, const char *token_hash)
{
    struct expiry_fanout *f = ud;
    bool current = !f->api || sync_api_is_current_token(f->api, user_id, device_id, token_hash);
    ingest_on_token_expired(f->ingest, user_id, device_id, token_hash, current);
    if (f->api) sync_api_token_expired(f->api, user_id, device_id, token_hash, current);
}

/* The span of one /sync v2 poll, with the size of what it brought; its
 * context travels with the result, so the ingest transaction is its child. */
static void trace_poll(struct poller_result *res)
{
    if (!trace_ctx_new(&res->trace, NULL)) return;
    static const char *const kinds[] = {"join", "invite", "leave", "knock"};
    json_t *rooms = json_object_get(res->body, "rooms");
    size_t n_rooms = 0, n_events = 0;
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        json_t *set = json_object_get(rooms, kinds[i]), *room;
        const char *room_id;
        n_rooms += json_object_size(set);
        json_object_foreach(set, room_id, room)
        {
            n_events += json_array_size(json_object_get(json_object_get(room, "timeline"), "events"));
            n_events += json_array_size(json_object_get(json_object_get(room, "state"), "events"));
        }
    }
    size_t n_to_device = json_array_size(json_object_get(json_object_get(res->body, "to_device"), "events"));
    trace_emit(&res->trace, NULL, clock_mono_secs() - res->http_secs, "sync_v2_poll", TRACE_CLIENT, NULL,
               TRACE_ATTRS(TRACE_STR("user_id", res->user_id), TRACE_STR("device_id", res->device_id),
                           TRACE_STR("since", res->since), TRACE_INT("bytes", res->bytes),
                           TRACE_INT("rooms", n_rooms), TRACE_INT("events", n_events),
                           TRACE_INT("to_device", n_to_device), TRACE_INT("initial", res->initial)));
}

static void on_response(void *ud, struct poller_result *res)
{
    struct expiry_fanout *f = ud;
    trace_poll(res);
    ingest_on_response(f->ingest, res);
}

static void on_failure(void *ud, const char *user_id, const char *device_id, int http_status, int fail_count,
                       int64_t retry_ms, const char *why)
{
    struct expiry_fanout *f = ud;
    ingest_on_failure(f->ingest, user_id, device_id, http_status, fail_count, retry_ms, why);
}

static void update_gauges(struct server *s)
{
    struct poller_stats st;
    poller_set_stats(s->pollers, &st);
    metrics_set(s->metrics->poller_num_pollers, st.num_pollers);
    metrics_set(s->metrics->poller_num_outstanding_sync_v2_reqs, st.outstanding);
    if (s->ingest) metrics_set(s->metrics->api_num_devices_pending_ensure_polling, ingest_pending_devices(s->ingest));
    double total = metrics_value(s->metrics->poller_total_num_polls, NULL, NULL);
    if ((double)st.total_polls > total) metrics_add(s->metrics->poller_total_num_polls, (double)st.total_polls - total);
    struct cache_stats cs = {0};
    if (s->cache) cache_get_stats(s->cache, &cs);
    metrics_set(s->metrics->cache_users, (double)cs.users);
    metrics_set(s->metrics->cache_rooms, (double)cs.rooms);
    const char *kinds[2] = {"user", "room"};
    int64_t counts[2] = {cs.evictions, cs.room_evictions};
    for (int i = 0; i < 2; i++) {
        double seen = metrics_value(s->metrics->cache_evictions, kinds[i], NULL);
        if ((double)counts[i] > seen) metrics_add_l(s->metrics->cache_evictions, kinds[i], NULL, (double)counts[i] - seen);
    }
}

static void on_http_done(void *ud, int status)
{
    struct server *s = ud;
    char code[16];
    snprintf(code, sizeof code, "%d", status);
    metrics_add_l(s->metrics->http_responses, code, NULL, 1);
}

/* Gauges that mirror other modules' state are read when scraped. */
static int render_metrics(void *ud, struct buf *out)
{
    struct server *s = ud;
    update_gauges(s);
    return metrics_render(s->metrics, out);
}

static void shutdown_all(struct server *s)
{
    /* Stop accepting and answer parked requests first, then stop polling,
     * then let ingest finish the response it is applying. */
    http_server_stop(s->http);
    sync_api_finish_ended(s->api); /* while ingest, the pollers and the store still run */
    prom_server_stop(s->prom);
    pprof_server_stop(s->pprof);
    ingest_stop(s->ingest);
    poller_set_free(s->pollers);
    ingest_free(s->ingest);
    sync_api_free(s->api);
    versions_free(s->versions);
    hsclient_free(s->hs);
    cache_free(s->cache);
    db_pool_free(s->db);
    /* Last, so that spans and reports of the shutdown itself are sent. */
    trace_stop();
    sentry_stop();
    metrics_free(s->metrics);
    config_release(&s->cfg);
    curl_global_cleanup();
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "check") == 0) {
        if (argc > 2) {
            fprintf(stderr, "syncv3 check takes no arguments (try --help)\n");
            return 2;
        }
        return cli_check(env, stdout, stderr);
    }
    if (argc >= 2 && strcmp(argv[1], "migrate") == 0) return cli_migrate(argc - 2, argv + 2, env, stdout, stderr);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(argv[i], "--version") == 0) {
            printf("syncv3 %s (%s)\n", SYNCV3_VERSION, SYNCV3_COMMIT);
            return 0;
        }
        fprintf(stderr, "syncv3: unknown argument '%s' (try --help)\n", argv[i]);
        return 2;
    }
    struct server s = {0};
    char *err = NULL;
    enum config_result cr = config_load(&s.cfg, env, &err);
    if (cr == CONFIG_MISSING) {
        usage(stderr);
        fprintf(stderr, "\nsyncv3: %s\n", err);
        free(err);
        config_release(&s.cfg);
        return 1;
    }
    if (cr != CONFIG_OK) {
        fprintf(stderr, "syncv3: %s\n", err);
        free(err);
        config_release(&s.cfg);
        return 1;
    }
    log_threshold = s.cfg.log_level;
    log_output_format = s.cfg.log_format;
    if (s.cfg.pprof) pprof_heap_sampling_on(); /* before any thread starts */
    LOG_INFO("main", "syncv3 %s (%s) starting; log level %s, max db connections %d", SYNCV3_VERSION,
             SYNCV3_COMMIT, log_level_name(s.cfg.log_level), s.cfg.max_db_conn);

    /* Signals are taken synchronously by this thread; every other thread
     * inherits the mask. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);

    s.metrics = metrics_new();
    /* Error reports and traces first, so that they see every later failure. */
    if (sentry_start(&s.cfg, s.metrics, &err) < 0) {
        fprintf(stderr, "syncv3: %s\n", err);
        goto fail;
    }
    if (trace_start(&s.cfg, s.metrics) < 0) {
        LOG_FATAL("main", "cannot start the trace exporter");
        goto fail;
    }
    if (db_pool_new(&s.db, s.cfg.db, s.cfg.max_db_conn, s.cfg.db_idle_timeout_secs, &err) < 0) {
        LOG_FATAL("main", "cannot connect to the database (SYNCV3_DB): %s", err);
        goto fail;
    }
    {
        PGconn *c = db_acquire(s.db, 10000, &err);
        int rc = c ? migrate_up(c, &err) : -1;
        db_release(s.db, c);
        if (rc < 0) {
            LOG_FATAL("main", "database migration failed: %s", err);
            goto fail;
        }
    }
    if (hsclient_new(&s.hs, &s.cfg) < 0) {
        LOG_FATAL("main", "cannot set up the homeserver client");
        goto fail;
    }
    if (hsclient_versions(s.hs, &err) != 0) {
        LOG_WARN("main", "GET /_matrix/client/versions failed (is SYNCV3_SERVER=%s right?): %s", s.cfg.server,
                 err ? err : "?");
        free(err);
        err = NULL;
    }
    s.cache = cache_new();
    cache_set_max_users(s.cache, s.cfg.cache_max_users);
    if (ingest_new(&s.ingest, s.db, s.cache, s.metrics) < 0) {
        LOG_FATAL("main", "cannot start the ingest thread");
        goto fail;
    }
    fanout.ingest = s.ingest;
    struct poller_callbacks cb = {
        .ud = &fanout, .on_response = on_response, .on_token_expired = on_token_expired, .on_failure = on_failure};
    if (poller_set_new(&s.pollers, &s.cfg, &cb, NULL) < 0) {
        LOG_FATAL("main", "cannot start the poller thread");
        goto fail;
    }
    ingest_set_pollers(s.ingest, s.pollers);
    struct sync_api_deps deps = {&s.cfg, s.db, s.cache, s.ingest, s.pollers, s.metrics};
    sync_api_new(&s.api, &deps);
    fanout.api = s.api;
    s.versions = versions_new(s.pollers);

    struct http_route routes[] = {
        {"/_matrix/client/unstable/org.matrix.msc3575/sync", "POST", sync_api_handle, s.api},
        {"/_matrix/client/v3/sync", "POST", sync_api_handle, s.api},
        {"/_matrix/client/unstable/org.matrix.simplified_msc3575/sync", "POST", sync_api_handle_msc4186, s.api},
        {"/client/server.json", "GET", sync_api_server_json, s.api},
        {"/_matrix/client/versions", "GET", versions_handle, s.versions},
    };
    /* Before listening: the devices' first polls run while the users with a
     * recent stored connection are loaded, for at most PRELOAD_BUDGET_MS
     * (the rest goes on in the background), so the first requests after a
     * restart find their device polled and their rooms in memory. */
    sync_api_resume_pollers(s.api);
    ingest_preload_users(s.ingest, s.cfg.cache_max_users > 0 ? s.cfg.cache_max_users : CACHE_DEFAULT_MAX_USERS);
    if (!ingest_preload_wait(s.ingest, PRELOAD_BUDGET_MS))
        LOG_INFO("main", "pre-loading users goes on after %d ms, in the background", PRELOAD_BUDGET_MS);

    struct http_listen_opts lo;
    http_listen_opts_from_config(&lo, &s.cfg);
    lo.pool_threads = 8;
    lo.static_prefix = "/client/";
    lo.static_files = web_client_files;
    lo.n_static_files = web_client_files_count;
    lo.on_done = on_http_done;
    lo.on_done_ud = &s;
    /* The metrics and profile listeners first: once clients are accepted,
     * what they cause can be watched. */
    if (s.cfg.prom && prom_server_start(&s.prom, s.cfg.prom, render_metrics, &s) < 0) {
        LOG_FATAL("main", "cannot listen on SYNCV3_PROM=%s", s.cfg.prom);
        goto fail;
    }
    if (s.cfg.pprof && pprof_server_start(&s.pprof, s.cfg.pprof) < 0) {
        LOG_FATAL("main", "cannot listen on SYNCV3_PPROF=%s", s.cfg.pprof);
        goto fail;
    }
    if (http_server_start(&s.http, &lo, routes, sizeof routes / sizeof routes[0]) < 0) {
        LOG_FATAL("main", "cannot listen on %s", s.cfg.bindaddr);
        goto fail;
    }
    LOG_INFO("main", "listening on %s%s", s.cfg.bindaddr, s.cfg.tls_cert ? " (TLS)" : "");

    for (;;) {
        struct timespec ts = {.tv_sec = 1};
        int sig = sigtimedwait(&sigs, NULL, &ts);
        if (sig == SIGTERM || sig == SIGINT) {
            LOG_INFO("main", "received %s; shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");
            break;
        }
        update_gauges(&s);
        sync_api_tick(s.api);
    }
    shutdown_all(&s);
    LOG_INFO("main", "stopped");
    return 0;
fail:
    free(err);
    shutdown_all(&s);
    return 1;
}
