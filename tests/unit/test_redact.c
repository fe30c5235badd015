/* Unit tests of src/ingest/redact: the redaction algorithm for every room
 * version from 1 to 11, unknown versions, and what happens to `unsigned`. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "ingest/redact.h"

#define REDACTION "{\"type\":\"m.room.redaction\",\"event_id\":\"$r\",\"sender\":\"@a:x\"}"

/* Redacts ev under room version ver and parses the result. */
static json_t *redact(const char *ev, const char *ver)
{
    char *out = redact_json(ev, ver, REDACTION);
    assert_non_null(out);
    json_t *j = json_loads(out, 0, NULL);
    free(out);
    assert_non_null(j);
    return j;
}

/* The sorted, comma-separated keys of o (e.g. "a,b"). */
static char *keys(json_t *o)
{
    const char *k[64];
    size_t n = 0;
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v)
    {
        if (n < 64) k[n++] = key;
    }
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && strcmp(k[j - 1], k[j]) > 0; j--) {
            const char *t = k[j];
            k[j] = k[j - 1];
            k[j - 1] = t;
        }
    struct buf b = BUF_INIT;
    for (size_t i = 0; i < n; i++) buf_printf(&b, "%s%s", i ? "," : "", k[i]);
    char *s = buf_detach(&b, NULL);
    return s;
}

/* Asserts the content keys left of an event of `type` with `content` under version ver. */
static void check_content(const char *type, const char *content, int ver, const char *want)
{
    char ev[2048], v[16];
    snprintf(ev, sizeof ev, "{\"type\":\"%s\",\"state_key\":\"\",\"event_id\":\"$e\",\"content\":%s}", type,
             content);
    snprintf(v, sizeof v, "%d", ver);
    json_t *j = redact(ev, v);
    char *got = keys(json_object_get(j, "content"));
    if (strcmp(got, want) != 0) fail_msg("%s v%d: content keys \"%s\", want \"%s\"", type, ver, got, want);
    free(got);
    json_decref(j);
}

static void test_rules_version(void **state)
{
    (void)state;
    assert_int_equal(redact_rules_version(NULL), 1);
    assert_int_equal(redact_rules_version(""), 1);
    assert_int_equal(redact_rules_version("1"), 1);
    assert_int_equal(redact_rules_version("9"), 9);
    assert_int_equal(redact_rules_version("11"), 11);
    assert_int_equal(redact_rules_version("12"), 11);
    assert_int_equal(redact_rules_version("org.example.custom"), 1);
    assert_int_equal(redact_rules_version("10x"), 1);
    assert_int_equal(redact_rules_version("0"), 1);
    assert_int_equal(redact_rules_version("-3"), 1);
}

static void test_top_level_keys(void **state)
{
    (void)state;
    const char *ev = "{\"type\":\"m.room.message\",\"event_id\":\"$e\",\"sender\":\"@a:x\",\"room_id\":\"!r:x\","
                     "\"origin_server_ts\":5,\"content\":{\"body\":\"secret\"},\"origin\":\"x\","
                     "\"membership\":\"join\",\"prev_state\":[],\"depth\":3,\"hashes\":{},\"signatures\":{},"
                     "\"prev_events\":[],\"auth_events\":[],\"extra\":1,\"age\":7,\"redacts\":\"$z\"}";
    for (int ver = 1; ver <= 11; ver++) {
        char v[8];
        snprintf(v, sizeof v, "%d", ver);
        json_t *j = redact(ev, v);
        char *got = keys(j);
        const char *want = ver >= 11 ? "auth_events,content,depth,event_id,hashes,origin_server_ts,prev_events,"
                                       "room_id,sender,signatures,type,unsigned"
                                     : "auth_events,content,depth,event_id,hashes,membership,origin,"
                                       "origin_server_ts,prev_events,prev_state,room_id,sender,signatures,type,"
                                       "unsigned";
        if (strcmp(got, want) != 0) fail_msg("v%d: top-level keys \"%s\"", ver, got);
        free(got);
        assert_int_equal(json_object_size(json_object_get(j, "content")), 0);
        json_decref(j);
    }
}

static void test_unsigned_replaced(void **state)
{
    (void)state;
    const char *ev = "{\"type\":\"m.room.member\",\"state_key\":\"@a:x\",\"event_id\":\"$m\","
                     "\"content\":{\"membership\":\"join\",\"displayname\":\"A\"},"
                     "\"unsigned\":{\"age\":3,\"prev_content\":{\"membership\":\"invite\"},"
                     "\"m.relations\":{\"m.thread\":{\"count\":2}},\"replaces_state\":\"$o\","
                     "\"redacted_because\":{\"event_id\":\"$old\"}}}";
    json_t *j = redact(ev, "10");
    json_t *uns = json_object_get(j, "unsigned");
    char *got = keys(uns);
    assert_string_equal(got, "redacted_because");
    free(got);
    assert_string_equal(json_string_value(json_object_get(json_object_get(uns, "redacted_because"), "event_id")),
                        "$r");
    json_decref(j);

    /* Without a redaction event: an empty unsigned. */
    char *out = redact_json(ev, "10", NULL);
    j = json_loads(out, 0, NULL);
    free(out);
    assert_int_equal(json_object_size(json_object_get(j, "unsigned")), 0);
    json_decref(j);
}

static void test_member(void **state)
{
    (void)state;
    const char *c = "{\"membership\":\"join\",\"displayname\":\"A\",\"avatar_url\":\"mxc://x/y\","
                    "\"join_authorised_via_users_server\":\"@s:x\",\"third_party_invite\":"
                    "{\"display_name\":\"inv\",\"signed\":{\"mxid\":\"@a:x\",\"token\":\"t\"}}}";
    for (int ver = 1; ver <= 11; ver++)
        check_content("m.room.member", c, ver,
                      ver >= 11  ? "join_authorised_via_users_server,membership,third_party_invite"
                      : ver >= 9 ? "join_authorised_via_users_server,membership"
                                 : "membership");
    /* v11 keeps only third_party_invite.signed. */
    json_t *j = redact("{\"type\":\"m.room.member\",\"state_key\":\"@a:x\",\"content\":{\"membership\":"
                       "\"invite\",\"third_party_invite\":{\"display_name\":\"inv\",\"signed\":{\"token\":\"t\"}}}}",
                       "11");
    json_t *tpi = json_object_get(json_object_get(j, "content"), "third_party_invite");
    char *got = keys(tpi);
    assert_string_equal(got, "signed");
    free(got);
    assert_string_equal(json_string_value(json_object_get(json_object_get(tpi, "signed"), "token")), "t");
    json_decref(j);
}

static void test_create(void **state)
{
    (void)state;
    const char *c = "{\"creator\":\"@a:x\",\"m.federate\":true,\"room_version\":\"9\",\"type\":\"m.space\","
                    "\"predecessor\":{\"room_id\":\"!o:x\"}}";
    for (int ver = 1; ver <= 11; ver++)
        check_content("m.room.create", c, ver,
                      ver >= 11 ? "creator,m.federate,predecessor,room_version,type" : "creator");
}

static void test_join_rules(void **state)
{
    (void)state;
    const char *c = "{\"join_rule\":\"restricted\",\"allow\":[{\"type\":\"m.room_membership\"}],\"x\":1}";
    for (int ver = 1; ver <= 11; ver++)
        check_content("m.room.join_rules", c, ver, ver >= 8 ? "allow,join_rule" : "join_rule");
}

static void test_power_levels(void **state)
{
    (void)state;
    const char *c = "{\"ban\":50,\"events\":{},\"events_default\":0,\"invite\":0,\"kick\":50,\"redact\":50,"
                    "\"state_default\":50,\"users\":{},\"users_default\":0,\"notifications\":{\"room\":50}}";
    for (int ver = 1; ver <= 11; ver++)
        check_content("m.room.power_levels", c, ver,
                      ver >= 11 ? "ban,events,events_default,invite,kick,redact,state_default,users,users_default"
                                : "ban,events,events_default,kick,redact,state_default,users,users_default");
}

static void test_other_types(void **state)
{
    (void)state;
    for (int ver = 1; ver <= 11; ver++) {
        check_content("m.room.history_visibility", "{\"history_visibility\":\"shared\",\"x\":1}", ver,
                      "history_visibility");
        check_content("m.room.aliases", "{\"aliases\":[\"#a:x\"],\"x\":1}", ver, ver <= 5 ? "aliases" : "");
        check_content("m.room.redaction", "{\"redacts\":\"$t\",\"reason\":\"r\"}", ver, ver >= 11 ? "redacts" : "");
        check_content("m.room.name", "{\"name\":\"N\"}", ver, "");
        check_content("m.room.topic", "{\"topic\":\"T\"}", ver, "");
    }
}

static void test_unknown_versions_follow_v1(void **state)
{
    (void)state;
    const char *member = "{\"type\":\"m.room.member\",\"state_key\":\"@a:x\",\"event_id\":\"$m\","
                         "\"content\":{\"membership\":\"join\",\"join_authorised_via_users_server\":\"@s:x\"}}";
    json_t *u = redact(member, "org.example.custom");
    assert_null(json_object_get(json_object_get(u, "content"), "join_authorised_via_users_server"));
    json_decref(u);
    u = redact(member, NULL);
    assert_non_null(json_object_get(json_object_get(u, "content"), "membership"));
    json_decref(u);
    /* A future numbered version keeps what v11 keeps. */
    check_content("m.room.create", "{\"creator\":\"@a:x\",\"m.federate\":false}", 12, "creator,m.federate");
}

static void test_bad_input(void **state)
{
    (void)state;
    assert_null(redact_json("not json", "1", NULL));
    assert_null(redact_json("[1,2]", "1", REDACTION));
    json_t *arr = json_array();
    assert_int_equal(redact_event(arr, "1", json_object()), -1); /* because is released: no leak */
    json_decref(arr);
    /* A content that is not an object becomes {}; an unparsable redaction is left out. */
    char *out = redact_json("{\"type\":\"m.room.message\",\"content\":\"str\"}", "10", "{broken");
    json_t *j = json_loads(out, 0, NULL);
    free(out);
    assert_true(json_is_object(json_object_get(j, "content")));
    assert_int_equal(json_object_size(json_object_get(j, "unsigned")), 0);
    json_decref(j);
    /* Integers past 64 bits do not make the event unredactable. */
    out = redact_json("{\"type\":\"m.room.message\",\"content\":{\"n\":123456789012345678901234567890}}", "10",
                      REDACTION);
    assert_non_null(out);
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rules_version),      cmocka_unit_test(test_top_level_keys),
        cmocka_unit_test(test_unsigned_replaced),  cmocka_unit_test(test_member),
        cmocka_unit_test(test_create),             cmocka_unit_test(test_join_rules),
        cmocka_unit_test(test_power_levels),       cmocka_unit_test(test_other_types),
        cmocka_unit_test(test_unknown_versions_follow_v1), cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
