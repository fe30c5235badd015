/* Tests of src/http: the server (routing, CORS, limits, parking, shutdown,
 * unix sockets, TLS, static files) and the Prometheus listener, driven with
 * libcurl. No timing assertions: waits have generous upper bounds only. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "base/clock.h"
#include "base/log.h"
#include "http/prom.h"
#include "http/server.h"
#include "http/static.h"
#include "obs/metrics.h"

#define WAIT_LIMIT_MS 30000
#define MANY 200

/* ------------------------------------------------------------------ client side */

struct resp {
    long status;      /* HTTP status, 0 on transport failure */
    struct buf body;  /* response body */
    struct buf hdrs;  /* raw response headers */
};

struct upload {
    const char *data; /* bytes to send */
    size_t len;       /* total */
    size_t off;       /* sent so far */
};

static size_t on_write(char *p, size_t sz, size_t n, void *ud)
{
    buf_append(ud, p, sz * n);
    return sz * n;
}

static size_t on_read(char *p, size_t sz, size_t n, void *ud)
{
    struct upload *u = ud;
    size_t k = sz * n;
    if (k > 300) k = 300; /* several chunks */
    if (k > u->len - u->off) k = u->len - u->off;
    memcpy(p, u->data + u->off, k);
    u->off += k;
    return k;
}

static void resp_release(struct resp *r)
{
    buf_release(&r->body);
    buf_release(&r->hdrs);
}

static CURL *make_easy(const char *method, const char *url, const char *unix_path, struct resp *r,
                       struct curl_slist *hdrs)
{
    CURL *c = curl_easy_init();
    assert_non_null(c);
    r->status = 0;
    buf_init(&r->body, 0);
    buf_init(&r->hdrs, 0);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (strcmp(method, "HEAD") == 0) curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r->body);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_write);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &r->hdrs);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)WAIT_LIMIT_MS * 2);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
    curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
    if (hdrs) curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    if (unix_path) curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, unix_path);
    return c;
}

/* One request. body NULL = none; chunked sends it with Transfer-Encoding: chunked. */
static void do_req(const char *method, const char *url, const char *body, size_t body_len, bool chunked,
                   const char *unix_path, const char *header, struct resp *r)
{
    struct curl_slist *hdrs = NULL;
    if (header) hdrs = curl_slist_append(hdrs, header);
    if (chunked) hdrs = curl_slist_append(hdrs, "Transfer-Encoding: chunked");
    hdrs = curl_slist_append(hdrs, "Expect:");
    CURL *c = make_easy(method, url, unix_path, r, hdrs);
    struct upload up = {.data = body, .len = body_len};
    if (body && chunked) {
        curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(c, CURLOPT_READDATA, &up);
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    } else if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)body_len);
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    }
    CURLcode rc = curl_easy_perform(c);
    if (rc == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_easy_cleanup(c);
    curl_slist_free_all(hdrs);
}

static bool has_header(const struct resp *r, const char *line)
{
    return strcasestr(buf_cstr(&r->hdrs), line) != NULL;
}

static void assert_cors(const struct resp *r)
{
    assert_true(has_header(r, "Access-Control-Allow-Origin: *\r\n"));
    assert_true(has_header(r, "Access-Control-Allow-Methods: GET, POST, PUT, DELETE, OPTIONS\r\n"));
    assert_true(has_header(
        r, "Access-Control-Allow-Headers: Origin, X-Requested-With, Content-Type, Accept, Authorization\r\n"));
}

/* N requests at once on a client thread (curl multi). */
struct multi {
    int n;               /* number of requests */
    char urls[MANY][128]; /* one URL per request */
    const char *unix_path; /* or NULL */
    struct resp r[MANY]; /* results */
    pthread_t thread;    /* the client thread */
};

static void *multi_main(void *arg)
{
    struct multi *m = arg;
    CURLM *mh = curl_multi_init();
    CURL *e[MANY];
    for (int i = 0; i < m->n; i++) {
        e[i] = make_easy("POST", m->urls[i], m->unix_path, &m->r[i], NULL);
        curl_easy_setopt(e[i], CURLOPT_POSTFIELDS, "{}");
        curl_easy_setopt(e[i], CURLOPT_PRIVATE, &m->r[i]);
        curl_multi_add_handle(mh, e[i]);
    }
    int running = 1;
    while (running) {
        curl_multi_perform(mh, &running);
        if (running) curl_multi_poll(mh, NULL, 0, 100, NULL);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(mh, &left)) != NULL) {
            if (msg->msg != CURLMSG_DONE || msg->data.result != CURLE_OK) continue;
            struct resp *r;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
            curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &r->status);
        }
    }
    for (int i = 0; i < m->n; i++) {
        curl_multi_remove_handle(mh, e[i]);
        curl_easy_cleanup(e[i]);
    }
    curl_multi_cleanup(mh);
    return NULL;
}

static struct multi *multi_start(int n, const char *base, const char *path, const char *unix_path)
{
    struct multi *m = xcalloc(1, sizeof *m);
    m->n = n;
    m->unix_path = unix_path;
    for (int i = 0; i < n; i++) snprintf(m->urls[i], sizeof m->urls[i], "%s%s?i=%d", base, path, i);
    assert_int_equal(pthread_create(&m->thread, NULL, multi_main, m), 0);
    return m;
}

static void multi_finish(struct multi *m)
{
    pthread_join(m->thread, NULL);
}

static void multi_free(struct multi *m)
{
    for (int i = 0; i < m->n; i++) resp_release(&m->r[i]);
    free(m);
}

/* ------------------------------------------------------------------ server side */

static atomic_int echo_calls;

/* POST /echo: {"body":...,"x":query x,"hdr":X-Test header} */
static enum http_action h_echo(void *ud, struct http_req *req)
{
    atomic_fetch_add(&echo_calls, 1);
    struct slice b = http_req_body(req);
    const char *x = http_req_query(req, "x");
    const char *h = http_req_header(req, "x-TEST");
    struct buf out;
    buf_init(&out, 0);
    buf_puts(&out, "{\"body\":");
    buf_json_str(&out, b.p, b.len);
    buf_printf(&out, ",\"x\":\"%s\",\"hdr\":\"%s\",\"m\":\"%s\",\"p\":\"%s\"}", x ? x : "(null)", h ? h : "(null)",
               http_req_method(req), http_req_path(req));
    size_t len;
    char *s = buf_detach(&out, &len);
    http_req_respond(req, 200, "application/json", s, len);
    return HTTP_DONE;
}

static enum http_action h_len(void *ud, struct http_req *req)
{
    struct slice b = http_req_body(req);
    size_t sum = 0;
    for (size_t i = 0; i < b.len; i++) sum += (unsigned char)b.p[i];
    char *s = xasprintf("%zu %zu", b.len, sum);
    http_req_respond(req, 200, "text/plain", s, strlen(s));
    return HTTP_DONE;
}

static enum http_action h_err(void *ud, struct http_req *req)
{
    http_req_respond_error(req, 400, ud, "bad \"thing\" %d", 7);
    return HTTP_DONE;
}

/* Parking handlers share this. */
struct parker {
    pthread_mutex_t mu;      /* guards the rest */
    pthread_cond_t cv;       /* signalled when n grows */
    struct http_req *reqs[MANY * 2]; /* referenced parked requests */
    int n;                   /* entries in reqs */
    atomic_bool go;          /* answer "woken" on the next call */
    int64_t deadline_in;     /* park deadline relative to now, 0 = none */
    bool stubborn;           /* park even while shutting down */
    bool self_wake;          /* wake ourselves before parking the first time */
    atomic_int state_freed;  /* state free_fn calls */
};

static void state_free(void *p)
{
    struct parker *pk = p;
    atomic_fetch_add(&pk->state_freed, 1);
}

static enum http_action h_park(void *ud, struct http_req *req)
{
    struct parker *p = ud;
    if (http_req_shutting_down(req) && !p->stubborn) {
        http_req_respond(req, 200, "text/plain", xstrdup("bye"), 3);
        return HTTP_DONE;
    }
    if (atomic_load(&p->go)) {
        char *s = xasprintf("woken %d", http_req_wakeups(req));
        http_req_respond(req, 200, "text/plain", s, strlen(s));
        return HTTP_DONE;
    }
    if (http_req_deadline_passed(req)) {
        char *s = xasprintf("timeout %d", http_req_wakeups(req));
        http_req_respond(req, 200, "text/plain", s, strlen(s));
        return HTTP_DONE;
    }
    if (!http_req_state(req)) {
        http_req_set_state(req, p, state_free);
        if (p->self_wake) {
            /* A wake racing with the park: arrives before the handler returns. */
            atomic_store(&p->go, true);
            http_req_wake(req);
        } else {
            http_req_ref(req);
            pthread_mutex_lock(&p->mu);
            p->reqs[p->n++] = req;
            pthread_cond_broadcast(&p->cv);
            pthread_mutex_unlock(&p->mu);
        }
    }
    http_req_park(req, p->deadline_in ? clock_mono_ms() + p->deadline_in : HTTP_NO_DEADLINE);
    return HTTP_PARK;
}

static struct parker *parker_new(void)
{
    struct parker *p = xcalloc(1, sizeof *p);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    return p;
}

static void parker_wait(struct parker *p, int n)
{
    int64_t until = clock_mono_ms() + WAIT_LIMIT_MS;
    pthread_mutex_lock(&p->mu);
    while (p->n < n && clock_mono_ms() < until) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&p->cv, &p->mu, &ts);
    }
    int got = p->n;
    pthread_mutex_unlock(&p->mu);
    assert_int_equal(got, n);
}

static void parker_free(struct parker *p)
{
    for (int i = 0; i < p->n; i++) {
        http_req_wake(p->reqs[i]); /* after the end: must be a harmless no-op */
        http_req_unref(p->reqs[i]);
    }
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p);
}

static struct http_server *start(struct http_listen_opts *o, struct parker *p, char *base, size_t base_len)
{
    struct http_route routes[] = {
        {.path = "/echo", .methods = "POST,PUT", .fn = h_echo},
        {.path = "/err", .methods = NULL, .fn = h_err, .ud = "M_BAD_JSON"},
        {.path = "/err2", .methods = "GET", .fn = h_err, .ud = NULL},
        {.path = "/park", .methods = "POST", .fn = h_park, .ud = p},
        {.path = "/len", .methods = "POST", .fn = h_len},
        {.path = "/client/route", .methods = "GET", .fn = h_err},
    };
    struct http_server *s = NULL;
    assert_int_equal(http_server_start(&s, o, routes, sizeof routes / sizeof routes[0]), 0);
    assert_non_null(s);
    if (base) {
        if (o->unix_path)
            snprintf(base, base_len, "http://localhost");
        else
            snprintf(base, base_len, "%s://127.0.0.1:%d", o->tls_cert ? "https" : "http", http_server_port(s));
    }
    return s;
}

/* ------------------------------------------------------------------ tests */

static void test_routing_cors(void **st)
{
    struct parker *p = parker_new();
    struct http_listen_opts o = {.host = "127.0.0.1", .port = 0};
    char base[64], url[128];
    struct http_server *s = start(&o, p, base, sizeof base);
    assert_true(http_server_port(s) > 0);
    struct resp r;

    snprintf(url, sizeof url, "%s/echo?x=a%%20b&y", base);
    do_req("POST", url, "hello", 5, false, NULL, "X-Test: v1", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(buf_cstr(&r.body), "{\"body\":\"hello\",\"x\":\"a b\",\"hdr\":\"v1\",\"m\":\"POST\",\"p\":\"/echo\"}");
    assert_true(has_header(&r, "Content-Type: application/json\r\n"));
    assert_cors(&r);
    resp_release(&r);

    /* wrong method: 405, empty body, CORS, Allow */
    snprintf(url, sizeof url, "%s/echo", base);
    do_req("GET", url, NULL, 0, false, NULL, NULL, &r);
    assert_int_equal(r.status, 405);
    assert_int_equal(r.body.len, 0);
    assert_cors(&r);
    assert_true(has_header(&r, "Allow: POST,PUT, OPTIONS\r\n"));
    resp_release(&r);

    /* OPTIONS: 200, empty, CORS, handler not called */
    int before = atomic_load(&echo_calls);
    do_req("OPTIONS", url, NULL, 0, false, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body.len, 0);
    assert_cors(&r);
    assert_int_equal(atomic_load(&echo_calls), before);
    resp_release(&r);

    /* unknown path, and a trailing slash does not match */
    snprintf(url, sizeof url, "%s/nope", base);
    do_req("GET", url, NULL, 0, false, NULL, NULL, &r);
    assert_int_equal(r.status, 404);
    assert_string_equal(buf_cstr(&r.body), "{\"errcode\":\"M_UNRECOGNIZED\",\"error\":\"Unrecognized request\"}");
    assert_cors(&r);
    resp_release(&r);
    snprintf(url, sizeof url, "%s/echo/", base);
    do_req("POST", url, "x", 1, false, NULL, NULL, &r);
    assert_int_equal(r.status, 404);
    resp_release(&r);

    /* Matrix errors, with and without errcode; methods NULL = any */
    snprintf(url, sizeof url, "%s/err", base);
    do_req("DELETE", url, NULL, 0, false, NULL, NULL, &r);
    assert_int_equal(r.status, 400);
    assert_string_equal(buf_cstr(&r.body), "{\"errcode\":\"M_BAD_JSON\",\"error\":\"bad \\\"thing\\\" 7\"}");
    assert_cors(&r);
    resp_release(&r);
    snprintf(url, sizeof url, "%s/err2", base);
    do_req("HEAD", url, NULL, 0, false, NULL, NULL, &r); /* HEAD allowed where GET is */
    assert_int_equal(r.status, 400);
    resp_release(&r);
    do_req("GET", url, NULL, 0, false, NULL, NULL, &r);
    assert_string_equal(buf_cstr(&r.body), "{\"error\":\"bad \\\"thing\\\" 7\"}");
    resp_release(&r);

    /* empty body POST and keep-alive reuse both work */
    snprintf(url, sizeof url, "%s/echo", base);
    do_req("PUT", url, "", 0, false, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(buf_cstr(&r.body), "\"body\":\"\""));
    resp_release(&r);

    http_server_stop(s);
    parker_free(p);
}

static void test_body_limit(void **st)
{
    struct http_listen_opts o = {.host = "127.0.0.1", .port = 0, .max_body = 1024};
    char base[64], url[128];
    struct http_server *s = start(&o, NULL, base, sizeof base);
    snprintf(url, sizeof url, "%s/echo", base);
    char *big = xmalloc(5000);
    memset(big, 'a', 5000);
    struct resp r;
    int before = atomic_load(&echo_calls);

    do_req("POST", url, big, 1024, false, NULL, NULL, &r); /* exactly the limit */
    assert_int_equal(r.status, 200);
    resp_release(&r);
    assert_int_equal(atomic_load(&echo_calls), before + 1);

    do_req("POST", url, big, 1025, false, NULL, NULL, &r); /* Content-Length says too big */
    assert_int_equal(r.status, 413);
    assert_non_null(strstr(buf_cstr(&r.body), "\"errcode\":\"M_TOO_LARGE\""));
    assert_cors(&r);
    resp_release(&r);

    do_req("POST", url, big, 5000, true, NULL, NULL, &r); /* chunked, found while streaming */
    assert_int_equal(r.status, 413);
    assert_non_null(strstr(buf_cstr(&r.body), "\"errcode\":\"M_TOO_LARGE\""));
    resp_release(&r);

    do_req("POST", url, big, 1000, true, NULL, NULL, &r); /* chunked, small enough */
    assert_int_equal(r.status, 200);
    resp_release(&r);

    assert_int_equal(atomic_load(&echo_calls), before + 2);
    free(big);
    http_server_stop(s);
}

/* The default 1 MiB limit, bodies far larger than the connection memory, and
 * "Expect: 100-continue" (curl's default for big uploads). */
static void test_big_body(void **st)
{
    struct http_listen_opts o = {.host = "127.0.0.1", .port = 0};
    char base[64], url[128];
    struct http_server *s = start(&o, NULL, base, sizeof base);
    snprintf(url, sizeof url, "%s/len", base);
    size_t n = (size_t)1 << 20;
    char *big = xmalloc(2 * n);
    size_t sum = 0;
    for (size_t i = 0; i < 2 * n; i++) {
        big[i] = (char)('a' + i % 26);
        if (i < n) sum += (unsigned char)big[i];
    }
    char want[64];
    snprintf(want, sizeof want, "%zu %zu", n, sum);
    for (int expect = 0; expect < 2; expect++) {
        const char *hdr = expect ? "Expect: 100-continue" : NULL;
        struct resp r;
        struct curl_slist *h = NULL;
        if (hdr) h = curl_slist_append(h, hdr);
        CURL *c = make_easy("POST", url, NULL, &r, h);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, big);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)n);
        assert_int_equal(curl_easy_perform(c), CURLE_OK);
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
        assert_int_equal(r.status, 200);
        assert_string_equal(buf_cstr(&r.body), want);
        resp_release(&r);
        /* one byte over: 413 without reading the body */
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)(n + 1));
        buf_init(&r.body, 0);
        buf_init(&r.hdrs, 0);
        assert_int_equal(curl_easy_perform(c), CURLE_OK);
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
        assert_int_equal(r.status, 413);
        resp_release(&r);
        curl_easy_cleanup(c);
        curl_slist_free_all(h);
    }
    free(big);
    http_server_stop(s);
}

static void test_park_wake(void **st)
{
    struct parker *p = parker_new();
    struct http_listen_opts o = {.host = "127.0.0.1", .port = 0};
    char base[64];
    struct http_server *s = start(&o, p, base, sizeof base);
    struct multi *m = multi_start(1, base, "/park", NULL);
    parker_wait(p, 1);
    atomic_store(&p->go, true);
    http_req_wake(p->reqs[0]);
    http_req_wake(p->reqs[0]); /* idempotent */
    multi_finish(m);
    assert_int_equal(m->r[0].status, 200);
    assert_string_equal(buf_cstr(&m->r[0].body), "woken 1");
    assert_cors(&m->r[0]);
    multi_free(m);
    http_server_stop(s);
    assert_int_equal(atomic_load(&p->state_freed), 1);
    parker_free(p);
}

static void test_park_self_wake(void **st)
{
    struct parker *p = parker_new();
    p->self_wake = true;
    struct http_listen_opts o = {.host = "127.0.0.1", .port = 0};
    char base[64];
    struct http_server *s = start(&o, p, base, sizeof base);
    struct multi *m = multi_start(1, base, "/park", NULL);
    multi_finish(m);
    assert_int_equal(m->r[0].status, 200);
    assert_string_equal(buf_cstr(&m->r[0].body), "woken 1");
    multi_free(m);
    http_server_stop(s);
    parker_free(p);
}

static void test_park_deadline(void **st)
{
    struct parker *p = parker_new();
    p->deadline_in = 150;
    struct http_listen_opts o = {.host = "127.0.0.1", .port = 0};
    char base[64];
    struct http_server *s = start(&o, p, base, sizeof base);
    struct multi *m = multi_start(3, base, "/park", NULL);
    multi_finish(m);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(m->r[i].status, 200);
        assert_string_equal(buf_cstr(&m->r[i].body), "timeout 1");
    }
    multi_free(m);
    http_server_stop(s);
    parker_free(p);
}

/* Wakes every referenced request from its own thread. */
static void *waker_main(void *arg)
{
    struct parker *p = arg;
    atomic_store(&p->go, true);
    for (int i = 0; i < p->n; i++) http_req_wake(p->reqs[i]);
    return NULL;
}

static void test_many_parked(void **st)
{
    struct parker *p = parker_new();
    struct http_listen_opts o = {.host = "127.0.0.1", .port = 0, .pool_threads = 4};
    char base[64];
    struct http_server *s = start(&o, p, base, sizeof base);
    struct multi *m = multi_start(MANY, base, "/park", NULL);
    parker_wait(p, MANY);
    /* While all 200 are parked, the pool still answers other requests. */
    struct resp r;
    char url[128];
    snprintf(url, sizeof url, "%s/echo", base);
    do_req("POST", url, "x", 1, false, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    resp_release(&r);
    pthread_t w1, w2;
    pthread_create(&w1, NULL, waker_main, p);
    pthread_create(&w2, NULL, waker_main, p); /* two racing wakers */
    pthread_join(w1, NULL);
    pthread_join(w2, NULL);
    multi_finish(m);
    for (int i = 0; i < MANY; i++) {
        assert_int_equal(m->r[i].status, 200);
        assert_string_equal(buf_cstr(&m->r[i].body), "woken 1");
    }
    multi_free(m);
    http_server_stop(s);
    assert_int_equal(atomic_load(&p->state_freed), MANY);
    parker_free(p);
}

static void test_shutdown_parked(void **st)
{
    struct parker *p = parker_new();
    struct parker *q = parker_new();
    q->stubborn = true;
    struct http_route routes[] = {
        {.path = "/park", .methods = "POST", .fn = h_park, .ud = p},
        {.path = "/stubborn", .methods = "POST", .fn = h_park, .ud = q},
    };
    struct http_listen_opts o = {.host = "127.0.0.1", .port = 0};
    struct http_server *s = NULL;
    assert_int_equal(http_server_start(&s, &o, routes, 2), 0);
    char base[64];
    snprintf(base, sizeof base, "http://127.0.0.1:%d", http_server_port(s));
    struct multi *m1 = multi_start(20, base, "/park", NULL);
    struct multi *m2 = multi_start(5, base, "/stubborn", NULL);
    parker_wait(p, 20);
    parker_wait(q, 5);
    http_server_stop(s);
    multi_finish(m1);
    multi_finish(m2);
    for (int i = 0; i < 20; i++) {
        assert_int_equal(m1->r[i].status, 200);
        assert_string_equal(buf_cstr(&m1->r[i].body), "bye");
    }
    for (int i = 0; i < 5; i++) assert_int_equal(m2->r[i].status, 503);
    assert_int_equal(atomic_load(&p->state_freed), 20);
    assert_int_equal(atomic_load(&q->state_freed), 5);
    multi_free(m1);
    multi_free(m2);
    parker_free(p);
    parker_free(q);
}

static char tmpdir[64];

static void make_tmpdir(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/syncv3-test-http-XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_unix_socket(void **st)
{
    make_tmpdir();
    char *path = xasprintf("%s/s.sock", tmpdir);
    write_file(path, ""); /* a regular file is not removed... */
    struct http_server *s = NULL;
    struct http_listen_opts o = {.unix_path = path};
    struct http_route routes[] = {{.path = "/echo", .methods = "POST", .fn = h_echo}};
    assert_true(http_server_start(&s, &o, routes, 1) < 0);
    assert_null(s);
    unlink(path);

    struct parker *p = parker_new();
    s = start(&o, p, NULL, 0);
    http_server_stop(s);
    struct stat sb;
    assert_int_equal(stat(path, &sb), -1); /* removed at stop */
    /* ...but a stale socket is replaced */
    s = start(&o, p, NULL, 0);
    http_server_stop(s);
    s = start(&o, p, NULL, 0);
    assert_int_equal(http_server_port(s), -1);
    assert_int_equal(stat(path, &sb), 0);
    assert_true(S_ISSOCK(sb.st_mode));
    assert_int_equal(sb.st_mode & 0777, 0666);

    struct resp r;
    do_req("POST", "http://localhost/echo?x=u", "sock", 4, false, path, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(buf_cstr(&r.body), "\"body\":\"sock\",\"x\":\"u\""));
    resp_release(&r);

    struct multi *m = multi_start(10, "http://localhost", "/park", path);
    parker_wait(p, 10);
    atomic_store(&p->go, true);
    for (int i = 0; i < 10; i++) http_req_wake(p->reqs[i]);
    multi_finish(m);
    for (int i = 0; i < 10; i++) assert_int_equal(m->r[i].status, 200);
    multi_free(m);
    http_server_stop(s);
    parker_free(p);
    rmdir(tmpdir);
    free(path);
}

/* Served through the server: the files of a table, exact routes first, 308
 * for the bare prefix, ETag/304, HEAD, and JSON 404s for anything else. */
static void test_static(void **st)
{
    static const unsigned char page[] = "<html>hi</html>", js[] = "let x = 1;";
    const struct http_static_file files[] = {
        {"index.html", page, sizeof page - 1, "\"e1\""},
        {"app.js", js, sizeof js - 1, "\"e2\""},
    };
    struct http_listen_opts o = {
        .host = "127.0.0.1", .port = 0, .static_prefix = "/client/", .static_files = files, .n_static_files = 2};
    char base[64], url[160];
    struct http_server *s = start(&o, NULL, base, sizeof base);
    struct resp r;

    snprintf(url, sizeof url, "%s/client/", base);
    do_req("GET", url, NULL, 0, false, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(buf_cstr(&r.body), "<html>hi</html>");
    assert_true(has_header(&r, "Content-Type: text/html; charset=utf-8\r\n"));
    assert_true(has_header(&r, "ETag: \"e1\"\r\n"));
    assert_true(has_header(&r, "Cache-Control: no-cache\r\n"));
    assert_true(has_header(&r, "Content-Security-Policy: default-src 'none'; script-src 'self'"));
    assert_cors(&r);
    resp_release(&r);

    snprintf(url, sizeof url, "%s/client/index.html", base);
    do_req("GET", url, NULL, 0, false, NULL, "If-None-Match: W/\"zz\", \"e1\"", &r);
    assert_int_equal(r.status, 304);
    assert_int_equal(r.body.len, 0);
    assert_true(has_header(&r, "ETag: \"e1\"\r\n"));
    resp_release(&r);

    snprintf(url, sizeof url, "%s/client/app.js", base);
    do_req("GET", url, NULL, 0, false, NULL, "If-None-Match: \"e1\"", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(buf_cstr(&r.body), "let x = 1;");
    assert_true(has_header(&r, "Content-Type: text/javascript; charset=utf-8\r\n"));
    assert_false(has_header(&r, "Content-Security-Policy:"));
    resp_release(&r);

    do_req("HEAD", url, NULL, 0, false, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body.len, 0);
    assert_true(has_header(&r, "Content-Length: 10\r\n"));
    resp_release(&r);

    do_req("POST", url, "x", 1, false, NULL, NULL, &r);
    assert_int_equal(r.status, 405);
    assert_true(has_header(&r, "Allow: GET, OPTIONS\r\n"));
    resp_release(&r);

    snprintf(url, sizeof url, "%s/client", base);
    do_req("GET", url, NULL, 0, false, NULL, NULL, &r);
    assert_int_equal(r.status, 308);
    assert_true(has_header(&r, "Location: /client/\r\n"));
    resp_release(&r);

    const char *bad[] = {"/client/../etc/passwd", "/client/sub/../../x", "/client/nope.js", "/client/sub",
                         "/client/sub/", "/client/..", "/client//etc/passwd", "/client/%2e%2e/app.js",
                         "/client/./app.js", "/client/APP.JS", "/clientx", "/cli", "/client/app.js/"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(url, sizeof url, "%s%s", base, bad[i]);
        do_req("GET", url, NULL, 0, false, NULL, NULL, &r);
        assert_int_equal(r.status, 404);
        assert_non_null(strstr(buf_cstr(&r.body), "\"errcode\":\"M_UNRECOGNIZED\""));
        assert_true(has_header(&r, "Content-Type: application/json\r\n"));
        resp_release(&r);
    }
    /* an exact route below the prefix wins over the files */
    snprintf(url, sizeof url, "%s/client/route", base);
    do_req("GET", url, NULL, 0, false, NULL, NULL, &r);
    assert_int_equal(r.status, 400);
    resp_release(&r);

    http_server_stop(s);
}

/* Writes a throwaway self-signed certificate and key. */
static void make_cert(const char *cert_path, const char *key_path)
{
    EVP_PKEY *pk = EVP_EC_gen("P-256");
    assert_non_null(pk);
    X509 *x = X509_new();
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600L * 24);
    X509_set_pubkey(x, pk);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1, 0);
    X509_set_issuer_name(x, name);
    assert_true(X509_sign(x, pk, EVP_sha256()) > 0);
    FILE *f = fopen(cert_path, "w");
    assert_non_null(f);
    PEM_write_X509(f, x);
    fclose(f);
    f = fopen(key_path, "w");
    assert_non_null(f);
    PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    X509_free(x);
    EVP_PKEY_free(pk);
}

static void test_tls(void **st)
{
    make_tmpdir();
    char *cert = xasprintf("%s/c.pem", tmpdir), *key = xasprintf("%s/k.pem", tmpdir);
    make_cert(cert, key);
    struct http_listen_opts o = {.host = "127.0.0.1", .port = 0, .tls_cert = cert, .tls_key = key};
    struct parker *p = parker_new();
    char base[64], url[128];
    struct http_server *s = start(&o, p, base, sizeof base);
    assert_non_null(strstr(base, "https://"));
    snprintf(url, sizeof url, "%s/echo", base);
    struct resp r;
    do_req("POST", url, "tls", 3, false, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(buf_cstr(&r.body), "\"body\":\"tls\""));
    resp_release(&r);
    /* park + wake over TLS too */
    struct multi *m = multi_start(3, base, "/park", NULL);
    parker_wait(p, 3);
    atomic_store(&p->go, true);
    for (int i = 0; i < 3; i++) http_req_wake(p->reqs[i]);
    multi_finish(m);
    for (int i = 0; i < 3; i++) assert_int_equal(m->r[i].status, 200);
    multi_free(m);
    http_server_stop(s);
    parker_free(p);

    /* only one of the pair, or an unreadable file: start fails cleanly */
    struct http_listen_opts bad = {.host = "127.0.0.1", .port = 0, .tls_cert = cert};
    struct http_route routes[] = {{.path = "/echo", .methods = "POST", .fn = h_echo}};
    assert_true(http_server_start(&s, &bad, routes, 1) < 0);
    bad.tls_key = "/nonexistent/key.pem";
    assert_true(http_server_start(&s, &bad, routes, 1) < 0);

    unlink(cert);
    unlink(key);
    rmdir(tmpdir);
    free(cert);
    free(key);
}

static void test_prom(void **st)
{
    struct metrics *mx = metrics_new();
    metrics_inc(mx->api_slow_requests);
    struct prom_server *ps = NULL;
    assert_int_equal(prom_server_start(&ps, "127.0.0.1:0", metrics_render_cb, mx), 0);
    char url[96];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/metrics", prom_server_port(ps));
    struct resp r;
    do_req("GET", url, NULL, 0, false, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_true(has_header(&r, "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
    assert_non_null(strstr(buf_cstr(&r.body), "\nsliding_sync_api_slow_requests 1\n"));
    assert_non_null(strstr(buf_cstr(&r.body), "# TYPE process_resident_memory_bytes gauge\n"));
    resp_release(&r);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/other", prom_server_port(ps));
    do_req("GET", url, NULL, 0, false, NULL, NULL, &r);
    assert_int_equal(r.status, 404);
    resp_release(&r);
    prom_server_stop(ps);
    prom_server_stop(NULL);
    http_server_stop(NULL);
    metrics_free(mx);
    assert_true(prom_server_start(&ps, "not an address", metrics_render_cb, NULL) < 0);
}

int main(void)
{
    log_threshold = getenv("TEST_HTTP_VERBOSE") ? LOG_DEBUG : LOG_WARN;
    curl_global_init(CURL_GLOBAL_ALL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_routing_cors),  cmocka_unit_test(test_body_limit),
        cmocka_unit_test(test_big_body),
        cmocka_unit_test(test_park_wake),     cmocka_unit_test(test_park_self_wake),
        cmocka_unit_test(test_park_deadline), cmocka_unit_test(test_many_parked),
        cmocka_unit_test(test_shutdown_parked), cmocka_unit_test(test_unix_socket),
        cmocka_unit_test(test_static),        cmocka_unit_test(test_tls),
        cmocka_unit_test(test_prom),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
