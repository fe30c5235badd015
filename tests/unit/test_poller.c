/* Tests for src/upstream: the homeserver client and the poller set, against
 * a small in-process fake homeserver (plain sockets, one thread per
 * connection) that records the raw request target of every /sync request and
 * answers from a scripted queue, holding the request while the queue is
 * empty. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/clock.h"
#include "base/config.h"
#include "base/log.h"
#include "upstream/hsclient.h"
#include "upstream/poller.h"

/* URL-escaped filters, written out independently of the code under test. */
#define FILTER_PREFIX                                                                      \
    "%7B%22presence%22%3A%7B%22not_types%22%3A%5B%22%2A%22%5D%7D%2C%22room%22%3A%7B"
#define FILTER_1 FILTER_PREFIX "%22timeline%22%3A%7B%22limit%22%3A1%7D%7D%7D"
#define FILTER_50 FILTER_PREFIX "%22timeline%22%3A%7B%22limit%22%3A50%7D%7D%7D"
#define FILTER_TDO_50                                                                      \
    FILTER_PREFIX "%22rooms%22%3A%5B%5D%2C%22timeline%22%3A%7B%22limit%22%3A50%7D%7D%7D"
#define SYNC "/_matrix/client/v3/sync?"
#define WAIT_MS 5000

/* ---- fake homeserver ---- */

#define MAX_SCRIPT 32
#define MAX_LOG 64
#define MAX_CONNS 64

/* One scripted /sync answer. */
struct script {
    int status;         /* HTTP status */
    char *body;         /* response body (heap) */
    char *headers;      /* extra header lines, each ending CRLF (heap), or NULL */
};

/* One /sync request seen. */
struct seen {
    char *target;       /* raw request target (path and query) */
    char *auth;         /* Authorization header value, or NULL */
    char *ua;           /* User-Agent header value, or NULL */
    int64_t at_ms;      /* clock_mono_ms when it arrived */
};

struct fake {
    int lfd;                         /* listening socket */
    int port;                        /* TCP port, or 0 for a unix socket */
    char path[108];                  /* unix socket path, or "" */
    int wake[2];                     /* pipe that stops the acceptor */
    pthread_t acceptor;              /* accept loop */
    pthread_mutex_t mu;              /* guards everything below */
    pthread_cond_t cv;               /* signalled on new requests, scripts, stop */
    struct script q[MAX_SCRIPT];     /* pending scripted answers */
    int qh, qt;                      /* queue head and tail */
    struct seen log[MAX_LOG];        /* /sync requests in arrival order */
    int nlog;                        /* entries in log */
    bool stopping;                   /* fake_stop was called */
    int conns[MAX_CONNS];            /* accepted sockets */
    pthread_t threads[MAX_CONNS];    /* their threads */
    int nconns;                      /* entries in conns/threads */
};

/* Argument of a connection thread. */
struct conn_arg {
    struct fake *f; /* the server */
    int fd;         /* the connection */
};

static void fake_script(struct fake *f, int status, const char *body, const char *headers)
{
    pthread_mutex_lock(&f->mu);
    assert_true(f->qt < MAX_SCRIPT);
    f->q[f->qt++] = (struct script){status, xstrdup(body), headers ? xstrdup(headers) : NULL};
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
}

static bool send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0) return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

static bool respond(int fd, int status, const char *body, const char *headers)
{
    char head[512];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n%s\r\n",
                     status, strlen(body), headers ? headers : "");
    return send_all(fd, head, (size_t)n) && send_all(fd, body, strlen(body));
}

/* Value of header `name` in the request head, heap copy or NULL. */
static char *header_value(const char *head, const char *name)
{
    size_t nl = strlen(name);
    for (const char *p = strstr(head, "\r\n"); p && p[2]; p = strstr(p + 2, "\r\n")) {
        const char *line = p + 2;
        if (strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            const char *v = line + nl + 1;
            while (*v == ' ') v++;
            const char *e = strstr(v, "\r\n");
            return xstrndup(v, (size_t)(e - v));
        }
    }
    return NULL;
}

/* The client closed its end (nothing more to read, EOF pending). */
static bool peer_closed(int fd)
{
    struct pollfd pf = {.fd = fd, .events = POLLIN | POLLRDHUP};
    if (poll(&pf, 1, 0) <= 0) return false;
    if (pf.revents & (POLLRDHUP | POLLHUP | POLLERR)) return true;
    char c;
    return recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

static void *conn_main(void *arg)
{
    struct conn_arg *ca = arg;
    struct fake *f = ca->f;
    int fd = ca->fd;
    free(ca);
    char buf[16384];
    size_t len = 0;
    for (;;) {
        char *end;
        while (!(end = memmem(buf, len, "\r\n\r\n", 4))) {
            if (len == sizeof buf) return NULL;
            ssize_t r = recv(fd, buf + len, sizeof buf - len, 0);
            if (r <= 0) return NULL;
            len += (size_t)r;
        }
        size_t head_len = (size_t)(end - buf) + 4;
        char *head = xstrndup(buf, head_len);
        memmove(buf, buf + head_len, len - head_len);
        len -= head_len;
        char *sp1 = strchr(head, ' ');
        char *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
        char *target = sp1 && sp2 ? xstrndup(sp1 + 1, (size_t)(sp2 - sp1 - 1)) : xstrdup("");
        char *auth = header_value(head, "Authorization");
        bool ok;
        if (strcmp(target, "/_matrix/client/versions") == 0) {
            ok = respond(fd, 200, "{\"versions\":[\"v1.1\",\"v1.11\"]}", NULL);
        } else if (strcmp(target, "/_matrix/client/v3/account/whoami") == 0) {
            if (auth && strcmp(auth, "Bearer good") == 0)
                ok = respond(fd, 200, "{\"user_id\":\"@alice:test\",\"device_id\":\"DEV1\"}", NULL);
            else if (auth && strcmp(auth, "Bearer nodev") == 0)
                ok = respond(fd, 200, "{\"user_id\":\"@alice:test\"}", NULL);
            else if (auth && strcmp(auth, "Bearer bad") == 0)
                ok = respond(fd, 401, "{\"errcode\":\"M_UNKNOWN_TOKEN\",\"error\":\"no\"}", NULL);
            else
                ok = respond(fd, 500, "{\"errcode\":\"M_UNKNOWN\"}", NULL);
        } else {
            pthread_mutex_lock(&f->mu);
            if (f->nlog < MAX_LOG) {
                f->log[f->nlog++] = (struct seen){
                    xstrdup(target), auth ? xstrdup(auth) : NULL,
                    header_value(head, "User-Agent"), clock_mono_ms()};
            }
            pthread_cond_broadcast(&f->cv);
            /* Hold the request until an answer is scripted; a client that
             * gave up (aborted poll) must not consume the next answer. */
            bool gone = false;
            while (f->qh == f->qt && !f->stopping && !(gone = peer_closed(fd))) {
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_nsec += 10 * 1000 * 1000;
                if (ts.tv_nsec >= 1000000000L) {
                    ts.tv_sec++;
                    ts.tv_nsec -= 1000000000L;
                }
                pthread_cond_timedwait(&f->cv, &f->mu, &ts);
            }
            if (!gone) gone = peer_closed(fd);
            struct script sc = {0};
            bool have = !gone && f->qh < f->qt;
            if (have) sc = f->q[f->qh++];
            pthread_mutex_unlock(&f->mu);
            ok = have && respond(fd, sc.status, sc.body, sc.headers);
            free(sc.body);
            free(sc.headers);
        }
        free(auth);
        free(target);
        free(head);
        if (!ok) return NULL;
    }
}

static void *accept_main(void *arg)
{
    struct fake *f = arg;
    for (;;) {
        struct pollfd pf[2] = {{.fd = f->lfd, .events = POLLIN},
                               {.fd = f->wake[0], .events = POLLIN}};
        if (poll(pf, 2, -1) < 0) continue;
        if (pf[1].revents) return NULL;
        int fd = accept(f->lfd, NULL, NULL);
        if (fd < 0) continue;
        pthread_mutex_lock(&f->mu);
        if (f->nconns == MAX_CONNS) {
            pthread_mutex_unlock(&f->mu);
            close(fd);
            continue;
        }
        struct conn_arg *ca = xmalloc(sizeof *ca);
        *ca = (struct conn_arg){f, fd};
        f->conns[f->nconns] = fd;
        if (pthread_create(&f->threads[f->nconns], NULL, conn_main, ca) != 0) abort();
        f->nconns++;
        pthread_mutex_unlock(&f->mu);
    }
}

static struct fake *fake_start(bool unix_socket)
{
    struct fake *f = xcalloc(1, sizeof *f);
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    if (unix_socket) {
        const char *dir = getenv("TMPDIR");
        snprintf(f->path, sizeof f->path, "%s/syncv3-test-hs-%d.sock", dir && dir[0] ? dir : "/tmp",
                 (int)getpid());
        unlink(f->path);
        f->lfd = socket(AF_UNIX, SOCK_STREAM, 0);
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        memcpy(a.sun_path, f->path, strlen(f->path) + 1);
        assert_int_equal(bind(f->lfd, (struct sockaddr *)&a, sizeof a), 0);
    } else {
        f->lfd = socket(AF_INET, SOCK_STREAM, 0);
        int one = 1;
        setsockopt(f->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        assert_int_equal(bind(f->lfd, (struct sockaddr *)&a, sizeof a), 0);
        socklen_t al = sizeof a;
        getsockname(f->lfd, (struct sockaddr *)&a, &al);
        f->port = ntohs(a.sin_port);
    }
    assert_int_equal(listen(f->lfd, 64), 0);
    assert_int_equal(pipe(f->wake), 0);
    assert_int_equal(pthread_create(&f->acceptor, NULL, accept_main, f), 0);
    return f;
}

static void fake_stop(struct fake *f)
{
    pthread_mutex_lock(&f->mu);
    f->stopping = true;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
    assert_int_equal(write(f->wake[1], "x", 1), 1);
    pthread_join(f->acceptor, NULL);
    for (int i = 0; i < f->nconns; i++) shutdown(f->conns[i], SHUT_RDWR);
    for (int i = 0; i < f->nconns; i++) {
        pthread_join(f->threads[i], NULL);
        close(f->conns[i]);
    }
    for (int i = 0; i < f->nlog; i++) {
        free(f->log[i].target);
        free(f->log[i].auth);
        free(f->log[i].ua);
    }
    for (int i = f->qh; i < f->qt; i++) {
        free(f->q[i].body);
        free(f->q[i].headers);
    }
    close(f->lfd);
    close(f->wake[0]);
    close(f->wake[1]);
    if (f->path[0]) unlink(f->path);
    pthread_cond_destroy(&f->cv);
    pthread_mutex_destroy(&f->mu);
    free(f);
}

/* Waits until the fake has seen n /sync requests; returns the count seen. */
static int fake_wait(struct fake *f, int n, int timeout_ms)
{
    int64_t deadline = clock_mono_ms() + timeout_ms;
    pthread_mutex_lock(&f->mu);
    while (f->nlog < n && clock_mono_ms() < deadline) {
        pthread_mutex_unlock(&f->mu);
        usleep(2000);
        pthread_mutex_lock(&f->mu);
    }
    int got = f->nlog;
    pthread_mutex_unlock(&f->mu);
    return got;
}

/* Copy of request i's field (target, auth); free(). */
static char *fake_target(struct fake *f, int i)
{
    pthread_mutex_lock(&f->mu);
    char *t = xstrdup(f->log[i].target);
    pthread_mutex_unlock(&f->mu);
    return t;
}

static void assert_target(struct fake *f, int i, const char *want)
{
    char *t = fake_target(f, i);
    if (strcmp(t, want) != 0) fail_msg("request %d:\n got  %s\n want %s", i, t, want);
    free(t);
}

static void assert_auth(struct fake *f, int i, const char *want)
{
    pthread_mutex_lock(&f->mu);
    bool eq = f->log[i].auth && strcmp(f->log[i].auth, want) == 0;
    pthread_mutex_unlock(&f->mu);
    assert_true(eq);
}

/* ---- receiver ---- */

struct rx {
    pthread_mutex_t mu;                 /* guards everything below */
    struct poller_result *res[32];      /* results received, in order */
    int nres;                           /* entries in res */
    int fail_status[32];                /* http_status of each failure */
    int fail_count[32];                 /* fail_count of each failure */
    char *fail_why[32];                 /* why of each failure (heap) */
    int nfail;                          /* entries in the fail_* arrays */
    char *expired[8];                   /* token hashes reported expired (heap) */
    int nexp;                           /* entries in expired */
};

static void rx_response(void *ud, struct poller_result *res)
{
    struct rx *r = ud;
    pthread_mutex_lock(&r->mu);
    if (r->nres < 32) r->res[r->nres++] = res;
    else poller_result_free(res);
    pthread_mutex_unlock(&r->mu);
}

static void rx_expired(void *ud, const char *user_id, const char *device_id, const char *hash)
{
    struct rx *r = ud;
    pthread_mutex_lock(&r->mu);
    if (r->nexp < 8) r->expired[r->nexp++] = xstrdup(hash);
    pthread_mutex_unlock(&r->mu);
}

static void rx_failure(void *ud, const char *user_id, const char *device_id, int status,
                       int fail_count, int64_t retry_ms, const char *why)
{
    struct rx *r = ud;
    pthread_mutex_lock(&r->mu);
    if (r->nfail < 32) {
        r->fail_status[r->nfail] = status;
        r->fail_count[r->nfail] = fail_count;
        r->fail_why[r->nfail] = xstrdup(why);
        r->nfail++;
    }
    pthread_mutex_unlock(&r->mu);
}

/* Waits for result number i (0-based) and returns it (still owned by rx). */
static struct poller_result *rx_wait(struct rx *r, int i)
{
    int64_t deadline = clock_mono_ms() + WAIT_MS;
    for (;;) {
        pthread_mutex_lock(&r->mu);
        struct poller_result *res = r->nres > i ? r->res[i] : NULL;
        pthread_mutex_unlock(&r->mu);
        if (res) return res;
        if (clock_mono_ms() > deadline) fail_msg("no result %d", i);
        usleep(2000);
    }
}

static int rx_count(struct rx *r, int *field)
{
    pthread_mutex_lock(&r->mu);
    int n = *field;
    pthread_mutex_unlock(&r->mu);
    return n;
}

static void rx_wait_count(struct rx *r, int *field, int n)
{
    int64_t deadline = clock_mono_ms() + WAIT_MS;
    while (rx_count(r, field) < n) {
        if (clock_mono_ms() > deadline) fail_msg("count stayed below %d", n);
        usleep(2000);
    }
}

/* Frees what rx holds that the set no longer tracks (call after poller_set_free). */
static void rx_release(struct rx *r, int first_unhanded)
{
    for (int i = first_unhanded; i < r->nres; i++) poller_result_free(r->res[i]);
    for (int i = 0; i < r->nfail; i++) free(r->fail_why[i]);
    for (int i = 0; i < r->nexp; i++) free(r->expired[i]);
    pthread_mutex_destroy(&r->mu);
}

/* ---- fixtures ---- */

struct env {
    struct fake *f;        /* the fake homeserver */
    struct config cfg;     /* points at it */
    struct rx rx;          /* collected callbacks */
    struct poller_set *s;  /* the set under test */
};

static void env_start(struct env *e, bool unix_socket, const struct poller_options *opt)
{
    memset(e, 0, sizeof *e);
    e->f = fake_start(unix_socket);
    e->cfg.server =
        unix_socket ? xstrdup(e->f->path) : xasprintf("http://127.0.0.1:%d", e->f->port);
    e->cfg.server_is_unix = unix_socket;
    e->cfg.http_timeout_secs = 20;
    e->cfg.http_initial_timeout_secs = 20;
    pthread_mutex_init(&e->rx.mu, NULL);
    struct poller_callbacks cb = {
        .ud = &e->rx, .on_response = rx_response, .on_token_expired = rx_expired,
        .on_failure = rx_failure,
    };
    assert_int_equal(poller_set_new(&e->s, &e->cfg, &cb, opt), 0);
}

/* Results 0..handed-1 were given back with poller_set_done. */
static void env_stop(struct env *e, int handed)
{
    poller_set_free(e->s);
    rx_release(&e->rx, handed);
    fake_stop(e->f);
    free(e->cfg.server);
}

static void wait_pollers(struct poller_set *s, int n)
{
    int64_t deadline = clock_mono_ms() + WAIT_MS;
    while (poller_set_count(s) != n) {
        if (clock_mono_ms() > deadline) fail_msg("pollers %d, want %d", poller_set_count(s), n);
        usleep(2000);
    }
}

/* ---- tests ---- */

static void test_query_and_results(void **state)
{
    struct env e;
    env_start(&e, false, NULL);
    fake_script(e.f, 200, "{\"next_batch\":\"b1\",\"rooms\":{\"join\":{}}}", NULL);
    poller_set_ensure(e.s, "@alice:test", "DEV1", "tokA", "hashA", "", false);

    struct poller_result *r0 = rx_wait(&e.rx, 0);
    assert_target(e.f, 0, SYNC "timeout=0&set_presence=offline&filter=" FILTER_1);
    assert_auth(e.f, 0, "Bearer tokA");
    pthread_mutex_lock(&e.f->mu);
    assert_string_equal(e.f->log[0].ua, "syncv3/" SYNCV3_VERSION);
    pthread_mutex_unlock(&e.f->mu);
    assert_string_equal(r0->user_id, "@alice:test");
    assert_string_equal(r0->device_id, "DEV1");
    assert_string_equal(r0->since, "");
    assert_string_equal(r0->next_batch, "b1");
    assert_string_equal(r0->token_hash, "hashA");
    assert_true(r0->initial);
    assert_true(r0->first);
    assert_false(r0->to_device_only);
    assert_true(json_is_object(json_object_get(r0->body, "rooms")));
    assert_true(r0->http_secs >= 0);
    assert_int_equal(poller_set_count(e.s), 1);

    /* Nothing more is requested until the result is done. */
    fake_script(e.f, 200, "{\"next_batch\":\"b/2 +&=\"}", NULL);
    usleep(200 * 1000);
    assert_int_equal(fake_wait(e.f, 1, 0), 1);
    struct poller_stats st;
    poller_set_stats(e.s, &st);
    assert_int_equal(st.num_pollers, 1);
    assert_int_equal(st.outstanding, 0);
    assert_int_equal(st.awaiting_done, 1);
    assert_int_equal((int)st.total_polls, 1);

    poller_set_done(e.s, r0, true);
    struct poller_result *r1 = rx_wait(&e.rx, 1);
    assert_target(e.f, 1, SYNC "timeout=30000&since=b1&set_presence=offline&filter=" FILTER_50);
    assert_string_equal(r1->since, "b1");
    assert_string_equal(r1->next_batch, "b/2 +&=");
    assert_false(r1->initial);
    assert_false(r1->first);

    /* The since token is escaped; the script is empty so the poll is held. */
    poller_set_done(e.s, r1, true);
    assert_int_equal(fake_wait(e.f, 3, WAIT_MS), 3);
    assert_target(e.f, 2,
                  SYNC "timeout=30000&since=b%2F2%20%2B%26%3D&set_presence=offline&filter="
                       FILTER_50);
    poller_set_stats(e.s, &st);
    assert_int_equal(st.outstanding, 1);
    assert_int_equal((int)st.total_polls, 3);
    assert_int_equal(rx_count(&e.rx, &e.rx.nfail), 0);
    env_stop(&e, 2); /* aborts the held request */
}

static void test_to_device_only_token_update_and_expiry(void **state)
{
    struct env e;
    env_start(&e, false, NULL);
    fake_script(e.f, 200, "{\"next_batch\":\"s1\"}", NULL);
    poller_set_ensure(e.s, "@bob:test", "PHONE", "tokA", "hashA", "s0", true);
    struct poller_result *r0 = rx_wait(&e.rx, 0);
    assert_target(e.f, 0, SYNC "timeout=0&since=s0&set_presence=offline&filter=" FILTER_TDO_50);
    assert_true(r0->first);
    assert_false(r0->initial);
    assert_true(r0->to_device_only);

    /* A new token while the result is with the receiver: used from the next
     * request on; since and mode are not reset by a repeated ensure. */
    poller_set_ensure(e.s, "@bob:test", "PHONE", "tokB", "hashB", "", true);
    fake_script(e.f, 401, "{\"errcode\":\"M_UNKNOWN_TOKEN\"}", NULL);
    poller_set_done(e.s, r0, true);
    assert_int_equal(fake_wait(e.f, 2, WAIT_MS), 2);
    assert_target(e.f, 1, SYNC "timeout=30000&since=s1&set_presence=offline&filter=" FILTER_50);
    assert_auth(e.f, 1, "Bearer tokB");

    rx_wait_count(&e.rx, &e.rx.nexp, 1);
    assert_string_equal(e.rx.expired[0], "hashB");
    wait_pollers(e.s, 0);
    usleep(150 * 1000);
    assert_int_equal(fake_wait(e.f, 3, 0), 2);
    assert_int_equal(rx_count(&e.rx, &e.rx.nfail), 0);
    env_stop(&e, 1);
}

static void test_expiry_of_replaced_token_continues(void **state)
{
    struct env e;
    env_start(&e, false, NULL);
    poller_set_ensure(e.s, "@c:test", "D", "old", "hashOld", "", false);
    assert_int_equal(fake_wait(e.f, 1, WAIT_MS), 1);
    /* The token changes while the request is in flight, then that request
     * is rejected: the old hash is reported, the poller carries on. */
    poller_set_ensure(e.s, "@c:test", "D", "new", "hashNew", "", false);
    usleep(50 * 1000);
    fake_script(e.f, 403, "{\"errcode\":\"M_FORBIDDEN\"}", NULL);
    rx_wait_count(&e.rx, &e.rx.nexp, 1);
    assert_string_equal(e.rx.expired[0], "hashOld");
    fake_script(e.f, 200, "{\"next_batch\":\"n\"}", NULL);
    rx_wait(&e.rx, 0);
    assert_auth(e.f, 1, "Bearer new");
    assert_target(e.f, 1, SYNC "timeout=0&set_presence=offline&filter=" FILTER_1);
    assert_int_equal(poller_set_count(e.s), 1);
    env_stop(&e, 0);
}

static void test_retries_and_backoff(void **state)
{
    struct env e;
    struct poller_options opt = {.backoff_base_ms = 20, .backoff_max_ms = 80};
    env_start(&e, false, &opt);
    fake_script(e.f, 500, "{\"errcode\":\"M_UNKNOWN\"}", NULL);
    fake_script(e.f, 200, "this is not json", NULL);
    fake_script(e.f, 200, "null", NULL);
    fake_script(e.f, 200, "[]", NULL);
    fake_script(e.f, 200, "{\"rooms\":{}}", NULL);
    fake_script(e.f, 404, "", NULL);
    fake_script(e.f, 200, "{\"next_batch\":\"n1\"}", NULL);
    poller_set_ensure(e.s, "@d:test", "D", "tok", "hash", "", false);
    struct poller_result *r0 = rx_wait(&e.rx, 0);
    assert_int_equal(fake_wait(e.f, 7, 0), 7);
    for (int i = 0; i < 7; i++)
        assert_target(e.f, i, SYNC "timeout=0&set_presence=offline&filter=" FILTER_1);
    static const int want_status[] = {500, 200, 200, 200, 200, 404};
    assert_int_equal(rx_count(&e.rx, &e.rx.nfail), 6);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(e.rx.fail_status[i], want_status[i]);
        assert_int_equal(e.rx.fail_count[i], i + 1);
    }
    /* Backoff: never a tight loop (>= half the base delay between tries). */
    for (int i = 1; i < 7; i++) assert_true(e.f->log[i].at_ms - e.f->log[i - 1].at_ms >= 10);
    assert_string_equal(r0->next_batch, "n1");

    /* The receiver fails: the same request is retried after a backoff. */
    fake_script(e.f, 200, "{\"next_batch\":\"n1b\"}", NULL);
    poller_set_done(e.s, r0, false);
    struct poller_result *r1 = rx_wait(&e.rx, 1);
    assert_target(e.f, 7, SYNC "timeout=0&set_presence=offline&filter=" FILTER_1);
    assert_int_equal(rx_count(&e.rx, &e.rx.nfail), 7);
    assert_string_equal(r1->next_batch, "n1b");

    /* 429 with retry_after_ms is a lower bound for the delay. */
    fake_script(e.f, 429, "{\"errcode\":\"M_LIMIT_EXCEEDED\",\"retry_after_ms\":300}", NULL);
    fake_script(e.f, 429, "{\"errcode\":\"M_LIMIT_EXCEEDED\"}", "Retry-After: 1\r\n");
    fake_script(e.f, 200, "{\"next_batch\":\"n2\"}", NULL);
    poller_set_done(e.s, r1, true);
    rx_wait(&e.rx, 2);
    assert_int_equal(fake_wait(e.f, 11, 0), 11);
    assert_target(e.f, 8, SYNC "timeout=30000&since=n1b&set_presence=offline&filter=" FILTER_50);
    assert_target(e.f, 10, SYNC "timeout=30000&since=n1b&set_presence=offline&filter=" FILTER_50);
    assert_int_equal(e.rx.fail_status[7], 429);
    assert_int_equal(e.rx.fail_count[7], 1); /* reset by the successful done */
    assert_true(e.f->log[9].at_ms - e.f->log[8].at_ms >= 290);
    assert_true(e.f->log[10].at_ms - e.f->log[9].at_ms >= 990);
    env_stop(&e, 2);
}

static void test_body_too_large(void **state)
{
    struct env e;
    struct poller_options opt = {.backoff_base_ms = 10, .max_body = 64};
    env_start(&e, false, &opt);
    char big[300];
    memset(big, 'x', sizeof big);
    memcpy(big, "{\"next_batch\":\"a\",\"pad\":\"", 25);
    memcpy(big + sizeof big - 3, "\"}", 3);
    fake_script(e.f, 200, big, NULL);
    fake_script(e.f, 200, "{\"next_batch\":\"small\"}", NULL);
    poller_set_ensure(e.s, "@e:test", "D", "tok", "hash", "", false);
    struct poller_result *r = rx_wait(&e.rx, 0);
    assert_string_equal(r->next_batch, "small");
    assert_int_equal(rx_count(&e.rx, &e.rx.nfail), 1);
    assert_int_equal(e.rx.fail_status[0], 0);
    assert_non_null(strstr(e.rx.fail_why[0], "larger than 64"));
    env_stop(&e, 0);
}

static void test_stop_and_free_with_outstanding(void **state)
{
    struct env e;
    env_start(&e, false, NULL);
    poller_set_ensure(e.s, "@f:test", "D1", "t1", "h1", "", false);
    assert_int_equal(fake_wait(e.f, 1, WAIT_MS), 1);
    struct poller_stats st;
    poller_set_stats(e.s, &st);
    assert_int_equal(st.outstanding, 1);
    poller_set_stop_device(e.s, "@f:test", "D1");
    wait_pollers(e.s, 0);
    poller_set_stats(e.s, &st);
    assert_int_equal(st.outstanding, 0);
    poller_set_stop_device(e.s, "@nobody:test", "X"); /* unknown: no-op */

    /* A device restarted after a stop polls from scratch; a done for a
     * result of the old poller object is ignored. */
    fake_script(e.f, 200, "{\"next_batch\":\"g1\"}", NULL);
    poller_set_ensure(e.s, "@g:test", "D", "t", "h", "", false);
    struct poller_result *old = rx_wait(&e.rx, 0);
    poller_set_stop_device(e.s, "@g:test", "D");
    wait_pollers(e.s, 0);
    fake_script(e.f, 200, "{\"next_batch\":\"g2\"}", NULL);
    poller_set_ensure(e.s, "@g:test", "D", "t", "h", "", false);
    struct poller_result *fresh = rx_wait(&e.rx, 1);
    assert_true(fresh->first);
    int seen = fake_wait(e.f, 99, 0);
    poller_set_done(e.s, old, true); /* stale: freed, no request */
    usleep(100 * 1000);
    assert_int_equal(fake_wait(e.f, 99, 0), seen);
    /* fresh stays with the receiver across poller_set_free. */
    env_stop(&e, 1);
}

/* Answers of poller_set_whoami. */
struct who_rx {
    pthread_mutex_t mu; /* guards the rest */
    int n;              /* answers so far */
    int status[8];      /* by the index passed as ud */
    char *user[8];      /* user_id of OK answers */
    int calls[8];       /* times each callback ran */
};

struct who_arg {
    struct who_rx *rx; /* where to record */
    int i;             /* which call */
};

static void on_who(void *ud, int status, const char *user_id, const char *device_id, const char *err)
{
    struct who_arg *a = ud;
    pthread_mutex_lock(&a->rx->mu);
    a->rx->status[a->i] = status;
    a->rx->user[a->i] = user_id ? xasprintf("%s/%s", user_id, device_id) : NULL;
    a->rx->calls[a->i]++;
    a->rx->n++;
    pthread_mutex_unlock(&a->rx->mu);
    assert_true(status == HSCLIENT_OK ? err == NULL : err != NULL);
}

static void test_whoami_on_the_poller_thread(void **state)
{
    struct env e;
    env_start(&e, false, NULL);
    struct who_rx rx = {0};
    pthread_mutex_init(&rx.mu, NULL);
    const char *tokens[] = {"good", "bad", "other", "nodev"};
    struct who_arg args[5];
    for (int i = 0; i < 4; i++) {
        args[i] = (struct who_arg){&rx, i};
        poller_set_whoami(e.s, tokens[i], on_who, &args[i]);
    }
    int64_t deadline = clock_mono_ms() + WAIT_MS;
    for (;;) {
        pthread_mutex_lock(&rx.mu);
        int n = rx.n;
        pthread_mutex_unlock(&rx.mu);
        if (n == 4) break;
        if (clock_mono_ms() > deadline) fail_msg("%d whoami answers, want 4", n);
        usleep(2000);
    }
    assert_int_equal(rx.status[0], HSCLIENT_OK);
    assert_string_equal(rx.user[0], "@alice:test/DEV1");
    assert_int_equal(rx.status[1], HSCLIENT_UNAUTHORIZED);
    assert_int_equal(rx.status[2], HSCLIENT_FAILED);
    assert_int_equal(rx.status[3], HSCLIENT_FAILED);
    assert_null(rx.user[3]);
    /* One asked just before the set stops still gets exactly one answer. */
    args[4] = (struct who_arg){&rx, 4};
    poller_set_whoami(e.s, "good", on_who, &args[4]);
    env_stop(&e, 0);
    for (int i = 0; i < 5; i++) assert_int_equal(rx.calls[i], 1);
    for (int i = 0; i < 5; i++) free(rx.user[i]);
    pthread_mutex_destroy(&rx.mu);
}

static void test_hsclient(void **state)
{
    struct fake *f = fake_start(false);
    struct config cfg = {.http_timeout_secs = 10};
    cfg.server = xasprintf("http://127.0.0.1:%d", f->port);
    struct hsclient *c;
    assert_int_equal(hsclient_new(&c, &cfg), 0);
    char *err = NULL, *user = NULL, *dev = NULL;
    assert_int_equal(hsclient_versions(c, &err), HSCLIENT_OK);
    assert_null(err);

    assert_int_equal(hsclient_whoami(c, "good", &user, &dev, &err), HSCLIENT_OK);
    assert_string_equal(user, "@alice:test");
    assert_string_equal(dev, "DEV1");
    assert_null(err);
    free(user);
    free(dev);

    assert_int_equal(hsclient_whoami(c, "bad", &user, &dev, &err), HSCLIENT_UNAUTHORIZED);
    assert_null(user);
    assert_null(dev);
    assert_non_null(strstr(err, "401"));
    free(err);

    assert_int_equal(hsclient_whoami(c, "other", &user, &dev, &err), HSCLIENT_FAILED);
    assert_non_null(strstr(err, "500"));
    free(err);

    assert_int_equal(hsclient_whoami(c, "nodev", &user, &dev, &err), HSCLIENT_FAILED);
    assert_non_null(strstr(err, "device_id"));
    assert_null(user);
    free(err);
    hsclient_free(c);
    fake_stop(f);

    /* Nothing listening: a network failure, not a crash. */
    struct hsclient *c2;
    assert_int_equal(hsclient_new(&c2, &cfg), 0);
    assert_int_equal(hsclient_whoami(c2, "good", &user, &dev, &err), HSCLIENT_FAILED);
    assert_non_null(err);
    free(err);
    assert_int_equal(hsclient_versions(c2, NULL), HSCLIENT_FAILED);
    hsclient_free(c2);
    free(cfg.server);
}

/* Many threads calling whoami at once on one client. */
struct whoami_arg {
    struct hsclient *c; /* shared client */
    int ok;             /* successful calls */
};

static void *whoami_thread(void *arg)
{
    struct whoami_arg *a = arg;
    for (int i = 0; i < 10; i++) {
        char *u, *d, *err;
        if (hsclient_whoami(a->c, "good", &u, &d, &err) == HSCLIENT_OK) a->ok++;
        else free(err);
        free(u);
        free(d);
    }
    return NULL;
}

static void test_hsclient_threads(void **state)
{
    struct fake *f = fake_start(false);
    struct config cfg = {.http_timeout_secs = 10};
    cfg.server = xasprintf("http://127.0.0.1:%d", f->port);
    struct hsclient *c;
    assert_int_equal(hsclient_new(&c, &cfg), 0);
    pthread_t t[8];
    struct whoami_arg a[8];
    for (int i = 0; i < 8; i++) {
        a[i] = (struct whoami_arg){c, 0};
        assert_int_equal(pthread_create(&t[i], NULL, whoami_thread, &a[i]), 0);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(a[i].ok, 10);
    }
    hsclient_free(c);
    fake_stop(f);
    free(cfg.server);
}

static void test_unix_socket(void **state)
{
    struct env e;
    env_start(&e, true, NULL);
    struct hsclient *c;
    assert_int_equal(hsclient_new(&c, &e.cfg), 0);
    char *user, *dev, *err;
    assert_int_equal(hsclient_whoami(c, "good", &user, &dev, &err), HSCLIENT_OK);
    assert_string_equal(dev, "DEV1");
    free(user);
    free(dev);
    hsclient_free(c);

    fake_script(e.f, 200, "{\"next_batch\":\"u1\"}", NULL);
    poller_set_ensure(e.s, "@u:test", "D", "tok", "hash", NULL, false);
    struct poller_result *r = rx_wait(&e.rx, 0);
    assert_string_equal(r->next_batch, "u1");
    assert_target(e.f, 0, SYNC "timeout=0&set_presence=offline&filter=" FILTER_1);
    env_stop(&e, 0);
}

int main(void)
{
    log_threshold = getenv("TEST_LOG") ? LOG_TRACE : LOG_FATAL;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_query_and_results),
        cmocka_unit_test(test_to_device_only_token_update_and_expiry),
        cmocka_unit_test(test_expiry_of_replaced_token_continues),
        cmocka_unit_test(test_retries_and_backoff),
        cmocka_unit_test(test_body_too_large),
        cmocka_unit_test(test_stop_and_free_with_outstanding),
        cmocka_unit_test(test_whoami_on_the_poller_thread),
        cmocka_unit_test(test_hsclient),
        cmocka_unit_test(test_hsclient_threads),
        cmocka_unit_test(test_unix_socket),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
