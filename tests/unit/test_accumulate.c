/* Unit tests of the accumulator's pure parts: redaction by room version, and
 * the Postgres array encoding the batched writes rely on. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "ingest/accumulate.h"
#include "store/db.h"

static json_t *redact(const char *ev, const char *version)
{
    char *out = acc_redact_json(ev, version, "{\"type\":\"m.room.redaction\",\"event_id\":\"$r\"}");
    assert_non_null(out);
    json_t *j = json_loads(out, 0, NULL);
    free(out);
    assert_non_null(j);
    return j;
}

static void test_redact_message(void **state)
{
    (void)state;
    json_t *j = redact("{\"type\":\"m.room.message\",\"event_id\":\"$e\",\"sender\":\"@a:x\",\"room_id\":\"!r:x\","
                       "\"origin_server_ts\":5,\"content\":{\"body\":\"secret\",\"msgtype\":\"m.text\"},"
                       "\"unsigned\":{\"age\":3},\"extra\":1}",
                       "10");
    assert_int_equal(json_object_size(json_object_get(j, "content")), 0);
    assert_null(json_object_get(j, "extra"));
    assert_string_equal(json_string_value(json_object_get(j, "sender")), "@a:x");
    json_t *because = json_object_get(json_object_get(j, "unsigned"), "redacted_because");
    assert_string_equal(json_string_value(json_object_get(because, "event_id")), "$r");
    json_decref(j);
}

static void test_redact_by_version(void **state)
{
    (void)state;
    const char *member = "{\"type\":\"m.room.member\",\"state_key\":\"@a:x\",\"event_id\":\"$m\","
                         "\"content\":{\"membership\":\"join\",\"displayname\":\"A\","
                         "\"join_authorised_via_users_server\":\"@s:x\"}}";
    json_t *v1 = redact(member, "1");
    json_t *c1 = json_object_get(v1, "content");
    assert_non_null(json_object_get(c1, "membership"));
    assert_null(json_object_get(c1, "displayname"));
    assert_null(json_object_get(c1, "join_authorised_via_users_server"));
    json_t *v9 = redact(member, "9");
    assert_non_null(json_object_get(json_object_get(v9, "content"), "join_authorised_via_users_server"));
    json_decref(v1);
    json_decref(v9);

    const char *create = "{\"type\":\"m.room.create\",\"state_key\":\"\",\"event_id\":\"$c\","
                         "\"content\":{\"creator\":\"@a:x\",\"m.federate\":true}}";
    json_t *c_v1 = redact(create, "6");
    assert_null(json_object_get(json_object_get(c_v1, "content"), "m.federate"));
    json_t *c_v11 = redact(create, "11");
    assert_non_null(json_object_get(json_object_get(c_v11, "content"), "m.federate"));
    json_decref(c_v1);
    json_decref(c_v11);

    /* Unknown versions follow the v1 rules. */
    json_t *u = redact(member, "org.example.custom");
    assert_null(json_object_get(json_object_get(u, "content"), "join_authorised_via_users_server"));
    json_decref(u);
    assert_null(acc_redact_json("not json", "1", NULL));
}

static void test_array_encoding(void **state)
{
    (void)state;
    struct buf b = BUF_INIT;
    buf_putc(&b, '{');
    db_array_elem(&b, "plain");
    buf_putc(&b, ',');
    db_array_elem(&b, "q\"uo\\te,{x}");
    buf_putc(&b, ',');
    db_array_elem(&b, NULL);
    buf_putc(&b, '}');
    assert_string_equal(buf_cstr(&b), "{\"plain\",\"q\\\"uo\\\\te,{x}\",NULL}");
    buf_release(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_redact_message),
        cmocka_unit_test(test_redact_by_version),
        cmocka_unit_test(test_array_encoding),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
