/* Unit tests for src/sync/ext: the extensions' sticky parameters (docs/behaviour.md, "Extensions"). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sync/ext.h"

static void apply(struct ext_state *s, const char *json)
{
    json_error_t e;
    json_t *v = json_loads(json, 0, &e);
    assert_non_null(v);
    ext_apply_request(s, v);
    json_decref(v);
}

static void test_first_appearance_needs_enabled(void **state)
{
    (void)state;
    struct ext_state s;
    ext_state_init(&s);
    apply(&s, "{\"to_device\":{\"since\":\"5\"}}");
    assert_true(s.to_device.seen);
    assert_false(s.to_device.enabled);
    assert_string_equal(s.td_since, "5");
    apply(&s, "{\"to_device\":{\"enabled\":true}}");
    assert_true(s.to_device.enabled);
    assert_string_equal(s.td_since, "5");
    ext_state_release(&s);
}

static void test_defaults_and_merge(void **state)
{
    (void)state;
    struct ext_state s;
    ext_state_init(&s);
    apply(&s, "{\"account_data\":{\"enabled\":true},\"e2ee\":null}");
    assert_false(s.e2ee.seen);
    assert_int_equal(s.account_data.lists.n, 1);
    assert_string_equal(s.account_data.lists.v[0], "*");
    assert_int_equal(s.account_data.rooms.n, 1);
    assert_string_equal(s.account_data.rooms.v[0], "*");
    /* later appearances replace only fields present and not null */
    apply(&s, "{\"account_data\":{\"lists\":[\"a\",\"b\"],\"rooms\":null,\"enabled\":null}}");
    assert_true(s.account_data.enabled);
    assert_int_equal(s.account_data.lists.n, 2);
    assert_string_equal(s.account_data.lists.v[1], "b");
    assert_string_equal(s.account_data.rooms.v[0], "*");
    apply(&s, "{\"account_data\":{\"rooms\":[]}}");
    assert_int_equal(s.account_data.rooms.n, 0);
    apply(&s, "{}");
    assert_true(s.account_data.enabled);
    apply(&s, "{\"account_data\":{\"enabled\":false}}");
    assert_false(s.account_data.enabled);
    ext_state_release(&s);
}

static void test_to_device_since_and_limit(void **state)
{
    (void)state;
    struct ext_state s;
    ext_state_init(&s);
    apply(&s, "{\"to_device\":{\"enabled\":true,\"limit\":7}}");
    assert_null(s.td_since);
    assert_int_equal(s.td_limit, 7);
    apply(&s, "{\"to_device\":{\"since\":\"12\",\"limit\":0}}");
    assert_string_equal(s.td_since, "12");
    assert_int_equal(s.td_limit, 7);
    /* an empty since keeps the previous one */
    apply(&s, "{\"to_device\":{\"since\":\"\"}}");
    assert_string_equal(s.td_since, "12");
    /* a limit past the maximum is lowered to it */
    apply(&s, "{\"to_device\":{\"limit\":1000000}}");
    assert_int_equal(s.td_limit, EXT_TO_DEVICE_MAX_LIMIT);
    apply(&s, "{\"to_device\":{\"limit\":1000}}");
    assert_int_equal(s.td_limit, 1000);
    ext_state_release(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_appearance_needs_enabled),
        cmocka_unit_test(test_defaults_and_merge),
        cmocka_unit_test(test_to_device_since_and_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
