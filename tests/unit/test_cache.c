/* Unit tests for the cache's bound on loaded users: the least recently used
 * users without a listener go first, listened users never go, and room
 * entries no loaded user is in go with them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/alloc.h"
#include "cache/cache.h"

static void on_update(void *ud, struct cache_update *u)
{
    (void)u;
    (*(int *)ud)++;
}

/* Loads user_id joined to one room, "!<name>:x", with its metadata when the
 * cache lacks it (as the ingest thread does). */
static void load(struct cache *c, const char *user_id, const char *room)
{
    struct store_user_room *ur = xcalloc(1, sizeof *ur);
    ur->room_id = xstrdup(room);
    ur->join_nid = 1;
    const char *ids[1] = {room};
    const char **missing = NULL;
    int n_missing = cache_missing_rooms(c, ids, 1, &missing);
    free(missing);
    struct store_room *meta = NULL;
    if (n_missing) {
        meta = xcalloc(1, sizeof *meta);
        meta->room_id = xstrdup(room);
    }
    cache_install_user(c, user_id, ur, 1, meta, n_missing, NULL, NULL, 1);
    store_user_room_release(ur);
    free(ur);
    if (meta) store_room_release(meta);
    free(meta);
}

/* Registers l for user_id as a connection's first request does. */
static void listen(struct cache *c, const char *user_id, struct cache_listener *l)
{
    struct user_room **rooms;
    int n;
    int64_t pos;
    assert_int_equal(cache_snapshot_user(c, user_id, l, &rooms, &n, &pos), 0);
    for (int i = 0; i < n; i++) user_room_unref(rooms[i]);
    free(rooms);
}

static void user_name(char *out, size_t n, int i)
{
    snprintf(out, n, "@u%d:x", i);
}

static void test_lru_order(void **state)
{
    (void)state;
    struct cache *c = cache_new();
    cache_set_max_users(c, 3);
    char u[32], r[32];
    for (int i = 0; i < 3; i++) {
        user_name(u, sizeof u, i);
        snprintf(r, sizeof r, "!r%d:x", i);
        load(c, u, r);
    }
    /* u0 becomes the most recently used: a connection came and went. */
    struct cache_listener l = {.on_update = on_update};
    listen(c, "@u0:x", &l);
    cache_unlisten(c, "@u0:x", &l);
    load(c, "@u3:x", "!r3:x");
    /* u1 was the least recently used; u0 stays. */
    assert_false(cache_user_loaded(c, "@u1:x"));
    assert_true(cache_user_loaded(c, "@u0:x"));
    assert_true(cache_user_loaded(c, "@u2:x"));
    assert_true(cache_user_loaded(c, "@u3:x"));
    load(c, "@u4:x", "!r4:x");
    assert_false(cache_user_loaded(c, "@u2:x"));
    assert_true(cache_user_loaded(c, "@u0:x"));
    struct cache_stats st;
    cache_get_stats(c, &st);
    assert_int_equal(st.users, 3);
    assert_int_equal(st.evictions, 2);
    /* Their rooms went with them. */
    assert_int_equal(st.rooms, 3);
    assert_int_equal(st.room_evictions, 2);
    assert_null(cache_user_room(c, "@u1:x", "!r1:x"));
    cache_free(c);
}

static void test_listened_users_stay(void **state)
{
    (void)state;
    struct cache *c = cache_new();
    cache_set_max_users(c, 2);
    int hits = 0;
    struct cache_listener l = {.on_update = on_update, .ud = &hits};
    load(c, "@a:x", "!a:x");
    listen(c, "@a:x", &l);
    char u[32];
    for (int i = 0; i < 10; i++) {
        user_name(u, sizeof u, i);
        load(c, u, "!shared:x");
    }
    /* a is listened to: never evicted, and still told about its users. */
    assert_true(cache_user_loaded(c, "@a:x"));
    cache_notify_user(c, "@a:x", cache_update_new(CU_ACCOUNT_DATA, NULL, NULL));
    assert_int_equal(hits, 1);
    struct cache_stats st;
    cache_get_stats(c, &st);
    assert_int_equal(st.users, 2);
    /* Everyone listened to: the bound is exceeded rather than breaking a connection. */
    struct cache_listener l2 = {.on_update = on_update, .ud = &hits};
    listen(c, "@u9:x", &l2);
    load(c, "@b:x", "!b:x");
    cache_get_stats(c, &st);
    assert_int_equal(st.users, 3);
    assert_true(cache_user_loaded(c, "@a:x"));
    assert_true(cache_user_loaded(c, "@u9:x"));
    assert_true(cache_user_loaded(c, "@b:x"));
    /* Once they go idle, the next load brings the count back down. */
    cache_unlisten(c, "@a:x", &l);
    cache_unlisten(c, "@u9:x", &l2);
    load(c, "@c:x", "!c:x");
    cache_get_stats(c, &st);
    assert_int_equal(st.users, 2);
    assert_false(cache_user_loaded(c, "@b:x"));
    assert_false(cache_user_loaded(c, "@a:x"));
    assert_true(cache_user_loaded(c, "@u9:x"));
    assert_true(cache_user_loaded(c, "@c:x"));
    cache_free(c);
}

/* A room stays while a loaded user is in it, and goes when the last one
 * leaves (live) or is evicted. */
static void test_room_eviction(void **state)
{
    (void)state;
    struct cache *c = cache_new();
    cache_set_max_users(c, 10);
    load(c, "@a:x", "!room:x");
    load(c, "@b:x", "!room:x");
    struct cache_stats st;
    cache_get_stats(c, &st);
    assert_int_equal(st.rooms, 1);
    /* a leaves: b still holds the room. */
    struct event *ev = event_new(2, "$1", "!room:x", "m.room.member", "@a:x", "@a:x", "leave", 0, "{}", 0);
    struct cache_changes ch = {.user_id = "@a:x", .device_id = "D", .events = &ev, .n_events = 1, .pos = 2};
    cache_apply(c, &ch);
    cache_get_stats(c, &st);
    assert_int_equal(st.rooms, 1);
    /* Metadata refreshed for a room no loaded user is in does not stay either. */
    struct store_room *meta = xcalloc(1, sizeof *meta);
    meta->room_id = xstrdup("!other:x");
    struct cache_changes ch2 = {.user_id = "@a:x", .device_id = "D", .metas = meta, .n_metas = 1, .pos = 3};
    cache_apply(c, &ch2);
    free(meta);
    cache_get_stats(c, &st);
    assert_int_equal(st.rooms, 1);
    assert_false(cache_room_wanted(c, "!other:x"));
    /* b leaves too: the room goes. */
    event_unref(ev);
    ev = event_new(4, "$2", "!room:x", "m.room.member", "@b:x", "@b:x", "leave", 0, "{}", 0);
    struct cache_changes ch3 = {.user_id = "@b:x", .device_id = "D", .events = &ev, .n_events = 1, .pos = 4};
    cache_apply(c, &ch3);
    cache_get_stats(c, &st);
    assert_int_equal(st.rooms, 0);
    assert_false(cache_room_wanted(c, "!room:x"));
    event_unref(ev);
    cache_free(c);
}

/* A request that found the user loaded pins them until its listener
 * registers: loads of other users evict around them. */
static void test_pinned_user_stays(void **state)
{
    (void)state;
    struct cache *c = cache_new();
    cache_set_max_users(c, 2);
    load(c, "@p:x", "!p:x");
    load(c, "@q:x", "!q:x");
    assert_true(cache_pin_user(c, "@q:x"));
    assert_true(cache_pin_user(c, "@p:x"));
    assert_false(cache_pin_user(c, "@nobody:x"));
    load(c, "@r:x", "!r:x");
    load(c, "@s:x", "!s:x");
    assert_true(cache_user_loaded(c, "@p:x"));
    assert_true(cache_user_loaded(c, "@q:x"));
    /* The listener takes the pin's place; once it goes, p is an ordinary idle user. */
    struct cache_listener l = {.on_update = on_update};
    listen(c, "@p:x", &l);
    cache_unlisten(c, "@p:x", &l);
    load(c, "@t:x", "!t:x");
    load(c, "@u:x", "!u:x");
    load(c, "@v:x", "!v:x");
    assert_false(cache_user_loaded(c, "@p:x"));
    assert_true(cache_user_loaded(c, "@q:x"));
    cache_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lru_order),
        cmocka_unit_test(test_listened_users_stay),
        cmocka_unit_test(test_room_eviction),
        cmocka_unit_test(test_pinned_user_stays),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
