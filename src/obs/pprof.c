#include "obs/pprof.h"

#include <errno.h>
#include <gperftools/profiler.h>
#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "base/clock.h"
#include "base/log.h"
#include "http/sock.h"
#ifdef SYNCV3_TCMALLOC
#include "obs/heapsample.h"
#endif

#define DEFAULT_SECONDS 30
#define MAX_SECONDS 300
#define MAX_CONNECTIONS 8
#define HEAP_SAMPLE_BYTES (512 * 1024)
#define MAX_PROFILE_FILE ((size_t)256 << 20)

struct pprof_server {
    struct MHD_Daemon *d;   /* the daemon */
    int listen_fd;          /* our listening socket, closed after the daemon stops */
    int port;               /* bound TCP port */
    pthread_mutex_t mu;     /* guards busy, busy_until, stopping */
    pthread_cond_t cond;    /* signalled when stopping */
    bool busy;              /* a CPU profile is being taken */
    int64_t busy_until;     /* monotonic ms when it ends */
    bool stopping;          /* pprof_server_stop has begun */
};

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, const char *type, char *body, size_t len,
                             const char *disposition)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    CHECK(r != NULL);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    if (disposition) MHD_add_response_header(r, "Content-Disposition", disposition);
    enum MHD_Result rc = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return rc;
}

/* A Matrix-style error; extra (may be NULL) is merged into the body. */
static enum MHD_Result reply_error(struct MHD_Connection *conn, unsigned status, const char *errcode,
                                   const char *message, json_t *extra)
{
    json_t *o = json_pack("{s:s, s:s}", "errcode", errcode, "error", message);
    if (extra) json_object_update(o, extra);
    json_decref(extra);
    char *body = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    CHECK(body != NULL);
    return reply(conn, status, "application/json", body, strlen(body), NULL);
}

/* Reads a whole file into a heap buffer; NULL on error. */
static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rbe");
    if (!f) return NULL;
    struct buf b;
    buf_init(&b, MAX_PROFILE_FILE);
    char tmp[16384];
    size_t n;
    bool ok = true;
    while (ok && (n = fread(tmp, 1, sizeof tmp, f)) > 0) ok = buf_append(&b, tmp, n) == 0;
    ok = ok && !ferror(f);
    fclose(f);
    if (!ok) {
        buf_release(&b);
        return NULL;
    }
    return buf_detach(&b, len);
}

/* Waits until the profile's time is up or the server stops. */
static void wait_profile(struct pprof_server *p, int64_t until)
{
    pthread_mutex_lock(&p->mu);
    while (!p->stopping && clock_mono_ms() < until) {
        struct timespec ts = {.tv_sec = (time_t)(until / 1000), .tv_nsec = (long)(until % 1000) * 1000000L};
        pthread_cond_timedwait(&p->cond, &p->mu, &ts);
    }
    pthread_mutex_unlock(&p->mu);
}

static enum MHD_Result cpu_profile(struct pprof_server *p, struct MHD_Connection *conn)
{
    const char *sv = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "seconds");
    long secs = DEFAULT_SECONDS;
    if (sv) {
        char *end;
        errno = 0;
        secs = strtol(sv, &end, 10);
        if (errno || end == sv || *end || secs < 1 || secs > MAX_SECONDS)
            return reply_error(conn, 400, "M_INVALID_PARAM", "seconds must be an integer from 1 to 300", NULL);
    }
    pthread_mutex_lock(&p->mu);
    bool busy = p->busy;
    int64_t left = p->busy_until - clock_mono_ms();
    if (!busy) {
        p->busy = true;
        p->busy_until = clock_mono_ms() + secs * 1000;
    }
    pthread_mutex_unlock(&p->mu);
    if (busy)
        return reply_error(conn, 429, "M_LIMIT_EXCEEDED", "a CPU profile is already being taken; one at a time",
                           json_pack("{s:I}", "retry_after_ms", (json_int_t)(left > 0 ? left : 0)));

    const char *tmpdir = getenv("TMPDIR");
    char *path = xasprintf("%s/syncv3-cpu-XXXXXX", tmpdir && tmpdir[0] == '/' ? tmpdir : "/tmp");
    int fd = mkstemp(path);
    enum MHD_Result rc;
    if (fd < 0) {
        LOG_ERROR("pprof", "cannot create a file for the CPU profile (%s): %s", path, strerror(errno));
        rc = reply_error(conn, 500, "M_UNKNOWN", "cannot create a temporary file for the profile", NULL);
        goto out;
    }
    close(fd);
    if (!ProfilerStart(path)) {
        rc = reply_error(conn, 500, "M_UNKNOWN", "the CPU profiler did not start (is CPUPROFILE set?)", NULL);
        goto out;
    }
    LOG_INFO("pprof", "taking a CPU profile for %ld s", secs);
    wait_profile(p, clock_mono_ms() + secs * 1000);
    ProfilerStop();
    size_t len = 0;
    char *data = slurp(path, &len);
    if (!data) {
        rc = reply_error(conn, 500, "M_UNKNOWN", "cannot read the profile back", NULL);
        goto out;
    }
    LOG_INFO("pprof", "CPU profile done: %zu bytes", len);
    rc = reply(conn, 200, "application/octet-stream", data, len, "attachment; filename=\"profile\"");
out:
    unlink(path);
    free(path);
    pthread_mutex_lock(&p->mu);
    p->busy = false;
    pthread_mutex_unlock(&p->mu);
    return rc;
}

static enum MHD_Result heap_profile(struct MHD_Connection *conn)
{
#ifdef SYNCV3_TCMALLOC
    size_t len;
    char *data = heapsample_take(&len);
    return reply(conn, 200, "text/plain; charset=utf-8", data, len, "attachment; filename=\"heap\"");
#else
    return reply_error(conn, 501, "M_UNRECOGNIZED",
                       "heap profiles need tcmalloc, which this build (with sanitizers) does not use; "
                       "build without SANITIZE to get them",
                       NULL);
#endif
}

static const char index_text[] = "syncv3 profiles (read them with google-pprof or go tool pprof and the binary):\n"
                                 "  /debug/pprof/profile?seconds=30   CPU profile (1..300 s, one at a time)\n"
                                 "  /debug/pprof/heap                 sampled heap profile\n";

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                 const char *version, const char *upload_data, size_t *upload_data_size,
                                 void **con_cls)
{
    struct pprof_server *p = cls;
    if (*upload_data_size) {
        *upload_data_size = 0; /* no endpoint takes a body */
        return MHD_YES;
    }
    bool known = strcmp(url, "/debug/pprof/profile") == 0 || strcmp(url, "/debug/pprof/heap") == 0 ||
                 strcmp(url, "/debug/pprof/") == 0;
    if (!known) return reply_error(conn, 404, "M_UNRECOGNIZED", "Unrecognized request", NULL);
    if (strcmp(method, "GET") != 0)
        return reply_error(conn, 405, "M_UNRECOGNIZED", "only GET is allowed here", NULL);
    if (strcmp(url, "/debug/pprof/profile") == 0) return cpu_profile(p, conn);
    if (strcmp(url, "/debug/pprof/heap") == 0) return heap_profile(conn);
    return reply(conn, 200, "text/plain; charset=utf-8", xstrdup(index_text), strlen(index_text), NULL);
}

static void server_free(struct pprof_server *p)
{
    if (p->listen_fd >= 0) close(p->listen_fd);
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

int pprof_server_start(struct pprof_server **out, const char *addr)
{
    *out = NULL;
    struct pprof_server *p = xcalloc(1, sizeof *p);
    pthread_mutex_init(&p->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->cond, &ca);
    pthread_condattr_destroy(&ca);
    p->listen_fd = sock_listen_addr(addr, 0600, 16);
    if (p->listen_fd < 0) {
        server_free(p);
        return -1;
    }
    p->port = sock_bound_port(p->listen_fd);
    p->d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0,
                            NULL, NULL, on_access, p, MHD_OPTION_LISTEN_SOCKET, (MHD_socket)p->listen_fd,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)60, MHD_OPTION_CONNECTION_LIMIT,
                            (unsigned)MAX_CONNECTIONS, MHD_OPTION_END);
    if (!p->d) {
        LOG_ERROR("pprof", "cannot start the profiling listener on %s", addr);
        server_free(p);
        return -1;
    }
    LOG_INFO("pprof", "serving profiles on %s/debug/pprof/", addr);
    *out = p;
    return 0;
}

void pprof_heap_sampling_on(void)
{
#ifdef SYNCV3_TCMALLOC
    heapsample_enable(HEAP_SAMPLE_BYTES);
#endif
}

int pprof_server_port(const struct pprof_server *p) { return p->port; }

void pprof_server_stop(struct pprof_server *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stopping = true;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->mu);
    MHD_stop_daemon(p->d);
    server_free(p);
}
