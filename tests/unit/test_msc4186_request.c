/* Unit tests for src/sync/msc4186_request: MSC4186 bodies into full MSC3575 parameters. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/buf.h"
#include "sync/msc4186_request.h"

static json_t *translate(const char *body)
{
    json_t *out = NULL;
    struct sync_req_error err = {0};
    int rc = msc4186_req_translate(body, strlen(body), &out, NULL, &err);
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

/* The pairs of subscription !r:x's required_state as "type|key;..." (exclusions as "-type|key"). */
static char *pairs_of(json_t *t)
{
    json_t *rs = json_object_get(json_object_get(json_object_get(t, "room_subscriptions"), "!r:x"), "required_state");
    static char out[512];
    out[0] = 0;
    size_t i;
    json_t *p;
    json_array_foreach(rs, i, p)
    {
        const char *ty = json_string_value(json_array_get(p, 0)), *k = json_string_value(json_array_get(p, 1));
        bool x = strncmp(ty, RS_EXCLUDE, strlen(RS_EXCLUDE)) == 0;
        size_t n = strlen(out);
        snprintf(out + n, sizeof out - n, "%s%s|%s;", x ? "-" : "", x ? ty + strlen(RS_EXCLUDE) : ty, k);
    }
    return out;
}

static void test_object_required_state(void **state)
{
    (void)state;
    struct msc4186_top top;
    struct sync_req_error err = {0};
    json_t *t = NULL;
    const char *b1 = "{\"room_subscriptions\":{\"!r:x\":{\"required_state\":{\"include\":[{\"type\":\"m.room.name\"},"
                     "{\"state_key\":\"\"},{\"type\":\"m.room.member\",\"state_key\":\"@a:x\"}],"
                     "\"exclude\":[{\"type\":\"m.room.topic\"}],\"lazy_members\":true}}}}";
    assert_int_equal(msc4186_req_translate(b1, strlen(b1), &t, &top, &err), 0);
    assert_string_equal(pairs_of(t), "m.room.name|*;*|;m.room.member|@a:x;m.room.member|$LAZY;-m.room.topic|*;");
    assert_true(top.final);
    assert_true(msc4186_req_final(t));
    json_decref(t);
    msc4186_top_release(&top);
    /* {} is all state and stands alone; lazy_members is moot when every member is included. */
    const char *b2 = "{\"room_subscriptions\":{\"!r:x\":{\"required_state\":{\"include\":[{\"type\":\"a\"},{}],"
                     "\"lazy_members\":true}}}}";
    t = translate(b2);
    assert_string_equal(pairs_of(t), "*|*;");
    json_decref(t);
    /* ... but not when members are excluded. */
    const char *b3 = "{\"room_subscriptions\":{\"!r:x\":{\"required_state\":{\"include\":[{}],"
                     "\"exclude\":[{\"type\":\"m.room.member\"}],\"lazy_members\":true}}}}";
    t = translate(b3);
    assert_string_equal(pairs_of(t), "*|*;m.room.member|$LAZY;-m.room.member|*;");
    json_decref(t);
    const char *bad = "{\"room_subscriptions\":{\"!r:x\":{\"required_state\":{\"include\":[{\"type\":5}]}}}}";
    assert_int_equal(msc4186_req_translate(bad, strlen(bad), &t, NULL, &err), SYNC_REQ_ERR_BAD_JSON);
    assert_null(t);
}

static void test_top_level_fields(void **state)
{
    (void)state;
    struct msc4186_top top;
    struct sync_req_error err = {0};
    json_t *t = NULL;
    const char *ok = "{\"pos\":\"17\",\"timeout\":3000,\"set_presence\":\"offline\"}";
    assert_int_equal(msc4186_req_translate(ok, strlen(ok), &t, &top, &err), 0);
    assert_string_equal(top.pos, "17");
    assert_true(top.has_timeout);
    assert_int_equal(top.timeout, 3000);
    assert_true(top.final);
    char *canon = msc4186_req_canonical(t);
    assert_null(strstr(canon, "17"));
    assert_null(strstr(canon, "3000"));
    free(canon);
    json_decref(t);
    msc4186_top_release(&top);
    /* A deployed body: js-sdk leaves a timeout of 0 in the body. */
    const char *dep = "{\"timeout\":0,\"lists\":{\"a\":{\"ranges\":[[0,1]]}}}";
    assert_int_equal(msc4186_req_translate(dep, strlen(dep), &t, &top, &err), 0);
    assert_false(top.final);
    assert_false(msc4186_req_final(t));
    json_decref(t);
    msc4186_top_release(&top);
    const char *bad[] = {"{\"pos\":1}", "{\"timeout\":\"1\"}", "{\"set_presence\":\"away\"}",
                         "{\"set_presence\":true}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(msc4186_req_translate(bad[i], strlen(bad[i]), &t, &top, &err), SYNC_REQ_ERR_INVALID_PARAM);
        assert_null(t);
    }
}

static void test_subscription_bound(void **state)
{
    (void)state;
    struct buf b = BUF_INIT;
    buf_puts(&b, "{\"room_subscriptions\":{");
    for (int i = 0; i <= MSC4186_MAX_SUBSCRIPTIONS; i++) buf_printf(&b, "%s\"!r%d:x\":{}", i ? "," : "", i);
    buf_puts(&b, "}}");
    json_t *t = NULL;
    struct sync_req_error err = {0};
    assert_int_equal(msc4186_req_translate(b.ptr, b.len, &t, NULL, &err), SYNC_REQ_ERR_INVALID_PARAM);
    buf_release(&b);
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
    assert_int_equal(msc4186_req_parse(&r, &t, NULL, ok, strlen(ok), &err), 0);
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
        assert_int_not_equal(msc4186_req_parse(&r, &t, NULL, bad[i], strlen(bad[i]), &err), 0);
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
        cmocka_unit_test(test_object_required_state), cmocka_unit_test(test_top_level_fields),
        cmocka_unit_test(test_subscription_bound),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
