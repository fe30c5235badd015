/* Unit tests for src/sync/conn_persist's serialisation: what an MSC4186
 * connection stores per room and for its extensions (docs/behaviour.md,
 * "Connections across restarts"). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sync/conn_persist.h"
#include "sync/ext.h"
#include "sync/m4186_sent.h"

static void test_sent_round_trip(void **state)
{
    struct m4186_sent s = {.params = "2\x1em.room.name\x1f",
                           .latest_nid = 9007199254740993LL,
                           .notif = 3,
                           .highlight = 1,
                           .invite = true,
                           .invite_ts = 1700000000000LL,
                           .is_dm = true,
                           .join_nid = 7,
                           .pos = 1234,
                           .tl_limit = 20,
                           .name_hash = 0xfedcba9876543210ULL,
                           .avatar_hash = 1,
                           .members_hash = UINT64_MAX};
    char *text = conn_persist_sent_encode(&s);
    struct m4186_sent back = {0};
    assert_int_equal(conn_persist_sent_decode(text, &back), 0);
    assert_string_equal(back.params, s.params);
    assert_true(back.latest_nid == s.latest_nid); /* past 2^53: kept exactly */
    assert_int_equal(back.notif, 3);
    assert_int_equal(back.highlight, 1);
    assert_true(back.invite);
    assert_true(back.invite_ts == s.invite_ts);
    assert_true(back.is_dm);
    assert_int_equal(back.join_nid, 7);
    assert_int_equal(back.pos, 1234);
    assert_int_equal(back.tl_limit, 20);
    assert_true(back.name_hash == 0xfedcba9876543210ULL); /* the high bit survives */
    assert_true(back.avatar_hash == 1);
    assert_true(back.members_hash == UINT64_MAX);
    free(back.params);
    free(text);
}

static void test_sent_missing_keys_are_zero(void **state)
{
    /* An older writer that knew fewer fields: the others read as zero. */
    struct m4186_sent back = {.latest_nid = 5, .is_dm = true};
    assert_int_equal(conn_persist_sent_decode("{\"p\":\"1\",\"future\":[1]}", &back), 0);
    assert_string_equal(back.params, "1");
    assert_int_equal(back.latest_nid, 0);
    assert_false(back.is_dm);
    free(back.params);
}

static void test_sent_malformed(void **state)
{
    const char *bad[] = {"",
                         "not json",
                         "[]",
                         "{}",
                         "{\"p\":1}",
                         "{\"p\":\"1\",\"n\":\"7\"}",
                         "{\"p\":\"1\",\"i\":1}",
                         "{\"p\":\"1\",\"d\":null}",
                         NULL};
    for (const char *const *b = bad; *b; b++) {
        struct m4186_sent back = {0};
        assert_int_equal(conn_persist_sent_decode(*b, &back), -1);
        assert_null(back.params);
    }
    struct m4186_sent back = {0};
    assert_int_equal(conn_persist_sent_decode(NULL, &back), -1);
}

static void test_ext_round_trip(void **state)
{
    struct ext_state e;
    ext_state_init(&e);
    e.ad_hwm = 42;
    e.ad_started = true;
    char *text = conn_persist_ext_encode(&e);
    struct ext_state back;
    ext_state_init(&back);
    back.e2ee_started = true;
    assert_int_equal(conn_persist_ext_decode(text, &back), 0);
    assert_int_equal(back.ad_hwm, 42);
    assert_true(back.ad_started);
    assert_false(back.e2ee_started);
    assert_int_equal(conn_persist_ext_decode("{\"ad\":\"x\"}", &back), -1);
    assert_int_equal(conn_persist_ext_decode("nope", &back), -1);
    free(text);
    ext_state_release(&e);
    ext_state_release(&back);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sent_round_trip),
        cmocka_unit_test(test_sent_missing_keys_are_zero),
        cmocka_unit_test(test_sent_malformed),
        cmocka_unit_test(test_ext_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
