/* Unit tests for the lifecycle of src/sync/conn with the cache, without a
 * database: however a connection ends (its queue overflowed, it expired, it
 * was replaced, the map was freed), the cache can no longer reach it once its
 * memory is gone. Under AddressSanitizer a listener left registered shows up
 * as a heap-use-after-free in the notify calls below. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/clock.h"
#include "cache/cache.h"
#include "sync/conn.h"
#include "sync/ext.h"
#include "sync/request.h"

#define USER "@alice:localhost"
#define DEVICE "PHONE"

struct fixture {
    struct cache *cache;     /* one loaded user with no rooms */
    struct sync_ctx ctx;     /* no database: nothing here reads the store */
    struct conn_map *map;    /* the connections */
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    f->cache = cache_new();
    cache_install_user(f->cache, USER, NULL, 0, NULL, 0, NULL, NULL, 1);
    f->ctx = (struct sync_ctx){.cache = f->cache, .ext = ext_registry_new()};
    f->map = conn_map_new(&f->ctx);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    conn_map_free(f->map);
    ext_registry_free(f->ctx.ext);
    cache_free(f->cache);
    free(f);
    return 0;
}

/* A connection that has served its first request: loaded and listening. */
static struct conn *open_conn_on(struct fixture *f, const char *device_id, const char *conn_id,
                                 struct conn **replaced)
{
    struct conn *c = conn_map_create(f->map, USER, device_id, conn_id, replaced);
    struct sync_req req;
    sync_req_init(&req);
    struct conn_resp *resp = conn_resp_new();
    char *err = NULL;
    conn_lock(c);
    assert_int_equal(conn_apply_request(c, &req, resp, &err), 0);
    conn_unlock(c);
    conn_resp_free(resp);
    sync_req_release(&req);
    return c;
}

static struct conn *open_conn(struct fixture *f, const char *conn_id, struct conn **replaced)
{
    return open_conn_on(f, DEVICE, conn_id, replaced);
}

static void notify(struct fixture *f, int n)
{
    for (int i = 0; i < n; i++) cache_notify_user(f->cache, USER, cache_update_new(CU_TO_DEVICE, NULL, NULL));
}

/* Queues more updates than the connection may hold: it is marked dead. */
static void overflow(struct fixture *f, const char *conn_id)
{
    notify(f, CONN_MAX_QUEUE + 1);
    struct conn *c = conn_map_get(f->map, USER, DEVICE, conn_id);
    assert_non_null(c);
    assert_true(conn_dead(c));
    conn_unref(c);
}

static void test_overflow_then_replace_then_notify(void **state)
{
    struct fixture *f = *state;
    struct conn *replaced = NULL;
    struct conn *c = open_conn(f, "room-list", &replaced);
    assert_null(replaced);
    conn_unref(c);
    overflow(f, "room-list");
    /* The client reconnects with the same conn_id. */
    c = open_conn(f, "room-list", &replaced);
    assert_non_null(replaced);
    conn_unref(replaced); /* the old connection's memory goes here */
    notify(f, 3);
    /* The new connection keeps receiving. */
    assert_false(conn_dead(c));
    struct conn_resp *resp = conn_resp_new();
    conn_lock(c);
    conn_drain(c, resp, 100);
    conn_unlock(c);
    conn_resp_free(resp);
    conn_unref(c);
}

static void test_expiry_then_notify(void **state)
{
    struct fixture *f = *state;
    struct conn *replaced = NULL;
    conn_unref(open_conn(f, "a", &replaced));
    assert_int_equal(conn_map_expire(f->map, clock_mono_ms() + CONN_IDLE_MS + 1000), 1);
    assert_int_equal(conn_map_count(f->map), 0);
    notify(f, 2);
}

static void test_overflow_then_expiry_then_notify(void **state)
{
    struct fixture *f = *state;
    struct conn *replaced = NULL;
    conn_unref(open_conn(f, "a", &replaced));
    overflow(f, "a");
    /* Dead connections go at the next expiry run, idle or not. */
    assert_int_equal(conn_map_expire(f->map, clock_mono_ms()), 1);
    notify(f, 2);
}

static void test_device_end_then_notify(void **state)
{
    struct fixture *f = *state;
    struct conn *replaced = NULL;
    conn_unref(open_conn(f, "a", &replaced));
    conn_unref(open_conn(f, "b", &replaced));
    overflow(f, "a");
    conn_map_end_device(f->map, USER, DEVICE);
    assert_int_equal(conn_map_count(f->map), 0);
    notify(f, 2);
}

static void test_held_reference_outlives_end(void **state)
{
    struct fixture *f = *state;
    struct conn *replaced = NULL;
    /* A request still holds the connection while it is replaced. */
    struct conn *c = open_conn(f, "a", &replaced);
    struct conn *c2 = open_conn(f, "a", &replaced);
    assert_ptr_equal(replaced, c);
    assert_true(conn_dead(c));
    notify(f, 2); /* reaches only c2 */
    conn_unref(replaced);
    conn_unref(c);
    notify(f, 2);
    conn_unref(c2);
}

static void test_map_free_then_notify(void **state)
{
    struct fixture *f = *state;
    struct conn *replaced = NULL;
    conn_unref(open_conn(f, "a", &replaced));
    overflow(f, "a");
    conn_map_free(f->map);
    f->map = conn_map_new(&f->ctx);
    notify(f, 2);
}

/* A user's connections across devices are capped too; the newest stays. */
static void test_user_connection_cap(void **state)
{
    struct fixture *f = *state;
    struct conn *replaced = NULL;
    char dev[32];
    for (int i = 0; i <= CONN_MAX_PER_USER; i++) {
        snprintf(dev, sizeof dev, "D%d", i);
        conn_unref(open_conn_on(f, dev, "", &replaced));
        assert_null(replaced);
    }
    assert_int_equal(conn_map_count(f->map), CONN_MAX_PER_USER);
    snprintf(dev, sizeof dev, "D%d", CONN_MAX_PER_USER);
    struct conn *c = conn_map_get(f->map, USER, dev, "");
    assert_non_null(c);
    assert_false(conn_dead(c));
    conn_unref(c);
    notify(f, 2);
}

/* Updates queued across a user's connections are capped: each queue below
 * its own limit, the sum over the user's limit ends connections. */
static void test_user_queue_cap(void **state)
{
    struct fixture *f = *state;
    struct conn *replaced = NULL;
    enum { N = 6 };
    struct conn *cs[N];
    char dev[32];
    for (int i = 0; i < N; i++) {
        snprintf(dev, sizeof dev, "D%d", i);
        cs[i] = open_conn_on(f, dev, "", &replaced);
    }
    int per_conn = CONN_MAX_QUEUE_PER_USER / N + 10;
    assert_true(per_conn < CONN_MAX_QUEUE);
    notify(f, per_conn);
    int dead = 0;
    for (int i = 0; i < N; i++) dead += conn_dead(cs[i]);
    /* One went over and gave its share back; the others go on. */
    assert_true(dead >= 1 && dead < N);
    /* Draining gives the budget back: a new connection of the user receives. */
    for (int i = 0; i < N; i++) {
        struct conn_resp *resp = conn_resp_new();
        conn_lock(cs[i]);
        conn_drain(cs[i], resp, CONN_MAX_QUEUE);
        conn_unlock(cs[i]);
        conn_resp_free(resp);
    }
    struct conn *c = open_conn_on(f, "NEW", "", &replaced);
    notify(f, 10);
    assert_false(conn_dead(c));
    conn_unref(c);
    for (int i = 0; i < N; i++) conn_unref(cs[i]);
}

/* One response of c to a request with req_pos; returns its pos. */
static int64_t respond(struct conn *c, int64_t req_pos)
{
    struct sync_req req;
    sync_req_init(&req);
    struct conn_resp *resp = conn_resp_new();
    char *err = NULL;
    size_t len = 0;
    conn_lock(c);
    assert_int_equal(conn_apply_request(c, &req, resp, &err), 0);
    char *body = conn_finish(c, resp, NULL, req_pos, NULL, &len, &err);
    conn_unlock(c);
    assert_non_null(body);
    const char *p = strstr(body, "\"pos\":\"");
    assert_non_null(p);
    int64_t pos = strtoll(p + 7, NULL, 10);
    free(body);
    conn_resp_free(resp);
    sync_req_release(&req);
    return pos;
}

/* A client that keeps asking from its first position (never acknowledging
 * the responses computed since) fills the buffer of unacknowledged
 * responses: the connection ends rather than drop one the client never got. */
static void test_unacknowledged_buffer_ends_connection(void **state)
{
    struct fixture *f = *state;
    struct conn *replaced = NULL;
    struct conn *c = open_conn(f, "", &replaced);
    int64_t first = respond(c, 0);
    /* Pos first stays buffered until a later one is acknowledged; it is the
     * only one that may go. */
    for (int i = 0; i < CONN_MAX_BUFFERED; i++) {
        respond(c, first);
        assert_false(conn_dead(c));
    }
    respond(c, first);
    assert_true(conn_dead(c));
    conn_unref(c);
}

/* A client acknowledging every response never hits the bound. */
static void test_acknowledged_buffer_stays(void **state)
{
    struct fixture *f = *state;
    struct conn *replaced = NULL;
    struct conn *c = open_conn(f, "", &replaced);
    int64_t pos = respond(c, 0);
    for (int i = 0; i < 4 * CONN_MAX_BUFFERED; i++) pos = respond(c, pos);
    assert_false(conn_dead(c));
    conn_unref(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_overflow_then_replace_then_notify, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expiry_then_notify, setup, teardown),
        cmocka_unit_test_setup_teardown(test_overflow_then_expiry_then_notify, setup, teardown),
        cmocka_unit_test_setup_teardown(test_device_end_then_notify, setup, teardown),
        cmocka_unit_test_setup_teardown(test_held_reference_outlives_end, setup, teardown),
        cmocka_unit_test_setup_teardown(test_map_free_then_notify, setup, teardown),
        cmocka_unit_test_setup_teardown(test_user_connection_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_user_queue_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unacknowledged_buffer_ends_connection, setup, teardown),
        cmocka_unit_test_setup_teardown(test_acknowledged_buffer_stays, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
