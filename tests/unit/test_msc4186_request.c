/* Unit tests for src/sync/msc4186_request: MSC4186 bodies into full MSC3575 parameters. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sync/msc4186_request.h"

static json_t *translate(const char *body)
{
    json_t *out = NULL;
    struct sync_req_error err = {0};
    int rc = msc4186_req_translate(body, strlen(body), &out, &err);
    if (rc) fprintf(stderr, "%s: %s\n", body, err.message);
    assert_int_equal(rc, 0);
    return out;
}

static void test_every_field_explicit(void **state)
{
    (void)state;
    json_t *t = translate("{\"lists\":{\"a\":{\"timeline_limit\":3}},\"room_subscriptions\":{\"!r:x\":{}}}");
    json_t *l = json_object_get(json_object_get(t, "lists"), "a");
    assert_int_equal(json_array_size(json_object_get(l, "ranges")), 0);
    assert_int_equal(json_array_size(json_object_get(l, "required_state")), 0);
    assert_true(json_is_object(json_object_get(l, "filters")));
    assert_int_equal(json_integer_value(json_object_get(l, "timeline_limit")), 3);
    assert_string_equal(json_string_value(json_array_get(json_object_get(l, "sort"), 0)), "by_recency");
    assert_string_equal(json_string_value(json_array_get(json_object_get(l, "bump_event_types"), 1)), "m.room.message");
    json_t *s = json_object_get(json_object_get(t, "room_subscriptions"), "!r:x");
    assert_int_equal(json_integer_value(json_object_get(s, "timeline_limit")), 0);
    json_t *ext = json_object_get(t, "extensions");
    assert_int_equal(json_object_size(ext), 5);
    assert_true(json_is_false(json_object_get(json_object_get(ext, "typing"), "enabled")));
    json_decref(t);
}

static void test_msc3575_fields_dropped(void **state)
{
    (void)state;
    json_t *t = translate("{\"unsubscribe_rooms\":[\"!a:x\"],\"lists\":{\"a\":{\"ranges\":[[0,1]],"
                          "\"sort\":[\"by_name\"],\"include_old_rooms\":{},\"slow_get_all_rooms\":true,"
                          "\"bump_event_types\":[\"x\"]}}}");
    json_t *l = json_object_get(json_object_get(t, "lists"), "a");
    assert_null(json_object_get(t, "unsubscribe_rooms"));
    assert_null(json_object_get(l, "include_old_rooms"));
    assert_null(json_object_get(l, "slow_get_all_rooms"));
    assert_string_equal(json_string_value(json_array_get(json_object_get(l, "sort"), 0)), "by_recency");
    assert_int_equal(json_array_size(json_object_get(l, "bump_event_types")), 7);
    json_decref(t);
}

static void test_all_state_wins(void **state)
{
    (void)state;
    json_t *t = translate("{\"room_subscriptions\":{\"!r:x\":{\"required_state\":[[\"m.room.member\",\"@a:x\"],"
                          "[\"*\",\"*\"],[\"m.room.name\",\"\"]]}}}");
    json_t *rs = json_object_get(json_object_get(json_object_get(t, "room_subscriptions"), "!r:x"), "required_state");
    assert_int_equal(json_array_size(rs), 1);
    assert_string_equal(json_string_value(json_array_get(json_array_get(rs, 0), 0)), "*");
    json_decref(t);
}

static void test_final_text_spellings(void **state)
{
    (void)state;
    json_t *t = translate("{\"lists\":{\"a\":{\"range\":[0,4],\"filters\":{\"is_invited\":true}}}}");
    json_t *l = json_object_get(json_object_get(t, "lists"), "a");
    assert_int_equal(json_integer_value(json_array_get(json_array_get(json_object_get(l, "ranges"), 0), 1)), 4);
    json_t *f = json_object_get(l, "filters");
    assert_true(json_is_true(json_object_get(f, "is_invite")));
    assert_null(json_object_get(f, "is_invited"));
    json_decref(t);
}

static void test_extension_defaults(void **state)
{
    (void)state;
    json_t *t = translate("{\"extensions\":{\"receipts\":{\"enabled\":true},\"to_device\":{\"enabled\":true,"
                          "\"since\":\"7\"},\"other\":{\"enabled\":true}}}");
    json_t *ext = json_object_get(t, "extensions");
    json_t *rc = json_object_get(ext, "receipts");
    assert_string_equal(json_string_value(json_array_get(json_object_get(rc, "lists"), 0)), "*");
    assert_string_equal(json_string_value(json_array_get(json_object_get(rc, "rooms"), 0)), "*");
    assert_string_equal(json_string_value(json_object_get(json_object_get(ext, "to_device"), "since")), "7");
    assert_null(json_object_get(ext, "other"));
    json_decref(t);
}

static void test_parse_prefixes_conn_id_and_rejects(void **state)
{
    (void)state;
    struct sync_req r;
    json_t *t = NULL;
    struct sync_req_error err = {0};
    const char *ok = "{\"conn_id\":\"room-list\"}";
    assert_int_equal(msc4186_req_parse(&r, &t, ok, strlen(ok), &err), 0);
    assert_string_equal(r.conn_id, MSC4186_CONN_PREFIX "room-list");
    assert_non_null(t);
    json_decref(t);
    sync_req_release(&r);
    const char *bad[] = {"[]",
                         "nope",
                         "{\"lists\":[]}",
                         "{\"room_subscriptions\":5}",
                         "{\"extensions\":[]}",
                         "{\"lists\":{\"a\":{\"ranges\":\"x\"}}}",
                         "{\"lists\":{\"a\":{\"ranges\":[[2,1]]}}}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_not_equal(msc4186_req_parse(&r, &t, bad[i], strlen(bad[i]), &err), 0);
        assert_null(t);
        assert_true(err.code == SYNC_REQ_ERR_BAD_JSON || err.code == SYNC_REQ_ERR_INVALID_PARAM);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_field_explicit), cmocka_unit_test(test_msc3575_fields_dropped),
        cmocka_unit_test(test_all_state_wins),       cmocka_unit_test(test_final_text_spellings),
        cmocka_unit_test(test_extension_defaults),   cmocka_unit_test(test_parse_prefixes_conn_id_and_rejects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
