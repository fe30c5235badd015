/* Unit tests for src/sync/request: parsing, validation, merge (docs/behaviour.md, "Request parsing"). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "sync/request.h"

static int parse(struct sync_req *r, const char *body, struct sync_req_error *err)
{
    return sync_req_parse(r, body, strlen(body), err);
}

/* Parses body, expecting failure with code; checks the message contains sub. */
static void expect_error(const char *body, int code, const char *sub)
{
    struct sync_req r;
    struct sync_req_error err = {0};
    int rc = parse(&r, body, &err);
    if (rc != code) fprintf(stderr, "body %s: rc %d (%s), want %d\n", body, rc, err.message, code);
    assert_int_equal(rc, code);
    assert_int_equal(err.code, code);
    if (sub && !strstr(err.message, sub)) {
        fprintf(stderr, "message '%s' lacks '%s'\n", err.message, sub);
        fail();
    }
    assert_null(r.lists);
    assert_null(r.conn_id);
}

static void expect_ok(const char *body)
{
    struct sync_req r;
    struct sync_req_error err = {0};
    int rc = parse(&r, body, &err);
    if (rc) fprintf(stderr, "body %s: %s\n", body, err.message);
    assert_int_equal(rc, 0);
    sync_req_release(&r);
}

static void test_empty_and_minimal(void **state)
{
    struct sync_req r;
    assert_int_equal(sync_req_parse(&r, NULL, 0, NULL), 0);
    assert_null(r.lists);
    assert_null(r.extensions);
    sync_req_release(&r);
    assert_int_equal(parse(&r, "{}", NULL), 0);
    sync_req_release(&r);
    assert_int_equal(parse(&r, "{\"conn_id\":null,\"lists\":null,\"unknown\":[1,{}]}", NULL), 0);
    assert_null(r.conn_id);
    sync_req_release(&r);
}

static void test_full_request(void **state)
{
    const char *body =
        "{\"conn_id\":\"room-list\",\"txn_id\":\"t1\","
        "\"lists\":{\"all\":{\"ranges\":[[0,9],[20,29]],\"sort\":[\"by_notification_level\","
        "\"by_recency\",\"by_future\"],\"timeline_limit\":120,\"required_state\":[[\"m.room.name\","
        "\"\"],[\"m.room.member\",\"$LAZY\"]],\"include_heroes\":true,"
        "\"filters\":{\"is_dm\":false,\"is_encrypted\":true,\"room_name_like\":\"foo\","
        "\"tags\":[\"m.favourite\"],\"not_tags\":[],\"room_types\":[null,\"m.space\"],"
        "\"not_room_types\":[\"x\"],\"spaces\":[\"!s:x\"],\"zzz\":1},"
        "\"bump_event_types\":[\"m.room.message\"],\"slow_get_all_rooms\":false,"
        "\"include_old_rooms\":{\"timeline_limit\":-3,\"required_state\":[[\"*\",\"*\"]]}}},"
        "\"room_subscriptions\":{\"!a:x\":{\"timeline_limit\":5},\"!b:x\":null},"
        "\"unsubscribe_rooms\":[\"!c:x\"],\"extensions\":{\"e2ee\":{\"enabled\":true}}}";
    struct sync_req r;
    struct sync_req_error err;
    int rc = parse(&r, body, &err);
    if (rc) fprintf(stderr, "%s\n", err.message);
    assert_int_equal(rc, 0);
    assert_string_equal(r.conn_id, "room-list");
    assert_string_equal(r.txn_id, "t1");
    assert_int_equal(HASH_COUNT(r.lists), 1);
    struct sync_req_list *l = sync_req_find_list(&r, "all");
    assert_non_null(l);
    assert_true(l->has_ranges);
    assert_int_equal(l->ranges.n, 2);
    assert_int_equal(l->ranges.v[1].start, 20);
    assert_true(l->has_sort);
    assert_int_equal(l->sort_names.n, 3);
    assert_int_equal(l->n_sort, 2);
    assert_int_equal(l->sort[0], SYNC_SORT_BY_NOTIFICATION_LEVEL);
    assert_int_equal(l->sort[1], SYNC_SORT_BY_RECENCY);
    assert_true(l->sort_unknown);
    assert_int_equal(l->sub.timeline_limit, 120); /* 20 rooms: within the budget */
    assert_int_equal(l->sub.n_required_state, 2);
    assert_string_equal(l->sub.required_state[1].key, "$LAZY");
    assert_true(l->sub.has_include_heroes && l->sub.include_heroes);
    assert_true(l->has_filters);
    assert_int_equal(l->filters.is_dm, SYNC_TRI_FALSE);
    assert_int_equal(l->filters.is_encrypted, SYNC_TRI_TRUE);
    assert_int_equal(l->filters.is_invite, SYNC_TRI_UNSET);
    assert_string_equal(l->filters.room_name_like, "foo");
    assert_true(l->filters.has_tags);
    assert_true(l->filters.has_not_tags);
    assert_int_equal(l->filters.not_tags.n, 0);
    assert_int_equal(l->filters.room_types.n, 2);
    assert_null(l->filters.room_types.v[0]);
    assert_string_equal(l->filters.room_types.v[1], "m.space");
    assert_false(l->filters.has_spaces == false);
    /* canonical: sorted keys, compact */
    assert_string_equal(l->filters_json,
                        "{\"is_dm\":false,\"is_encrypted\":true,\"not_room_types\":[\"x\"],"
                        "\"not_tags\":[],\"room_name_like\":\"foo\",\"room_types\":[null,"
                        "\"m.space\"],\"spaces\":[\"!s:x\"],\"tags\":[\"m.favourite\"],\"zzz\":1}");
    assert_true(l->has_bump_event_types);
    assert_true(l->has_slow_get_all_rooms);
    assert_false(l->slow_get_all_rooms);
    assert_non_null(l->sub.include_old_rooms);
    assert_int_equal(l->sub.include_old_rooms->timeline_limit, 0);
    assert_int_equal(l->sub.include_old_rooms->n_required_state, 1);
    assert_int_equal(HASH_COUNT(r.room_subscriptions), 1);
    assert_int_equal(sync_req_find_sub(&r, "!a:x")->sub.timeline_limit, 5);
    assert_false(sync_req_find_sub(&r, "!a:x")->sub.has_required_state);
    assert_int_equal(r.unsubscribe_rooms.n, 1);
    assert_non_null(json_object_get(r.extensions, "e2ee"));
    sync_req_release(&r);
}

static void test_specified_flags(void **state)
{
    struct sync_req r;
    assert_int_equal(parse(&r, "{\"lists\":{\"a\":{\"ranges\":[],\"sort\":null,"
                               "\"required_state\":[],\"timeline_limit\":0,\"filters\":null}}}",
                           NULL),
                     0);
    struct sync_req_list *l = sync_req_find_list(&r, "a");
    assert_true(l->has_ranges);
    assert_int_equal(l->ranges.n, 0);
    assert_false(l->has_sort);
    assert_true(l->sub.has_required_state);
    assert_int_equal(l->sub.timeline_limit, 0);
    assert_false(l->has_filters);
    assert_null(l->filters_json);
    assert_false(l->has_bump_event_types);
    assert_false(l->has_slow_get_all_rooms);
    sync_req_release(&r);
    /* room_name_like "" = no filter */
    assert_int_equal(parse(&r, "{\"lists\":{\"a\":{\"filters\":{\"room_name_like\":\"\"}}}}", NULL),
                     0);
    assert_null(sync_req_find_list(&r, "a")->filters.room_name_like);
    sync_req_release(&r);
}

static void test_bad_json(void **state)
{
    expect_error("{", SYNC_REQ_ERR_BAD_JSON, "not valid JSON");
    expect_error("[]", SYNC_REQ_ERR_BAD_JSON, "object");
    expect_error("\"x\"", SYNC_REQ_ERR_BAD_JSON, "object");
    expect_error("{} x", SYNC_REQ_ERR_BAD_JSON, NULL);
    expect_error("{\"conn_id\":5}", SYNC_REQ_ERR_BAD_JSON, "conn_id");
    expect_error("{\"txn_id\":[]}", SYNC_REQ_ERR_BAD_JSON, "txn_id");
    expect_error("{\"lists\":[]}", SYNC_REQ_ERR_BAD_JSON, "lists");
    expect_error("{\"lists\":{\"a\":5}}", SYNC_REQ_ERR_BAD_JSON, "lists[a]");
    expect_error("{\"lists\":{\"a\":{\"timeline_limit\":\"5\"}}}", SYNC_REQ_ERR_BAD_JSON,
                 "lists[a].timeline_limit");
    expect_error("{\"lists\":{\"a\":{\"timeline_limit\":5.0}}}", SYNC_REQ_ERR_BAD_JSON, NULL);
    expect_error("{\"lists\":{\"a\":{\"ranges\":[[0]]}}}", SYNC_REQ_ERR_BAD_JSON, "ranges");
    expect_error("{\"lists\":{\"a\":{\"ranges\":[[0,1,2]]}}}", SYNC_REQ_ERR_BAD_JSON, "ranges");
    expect_error("{\"lists\":{\"a\":{\"ranges\":[[0,\"1\"]]}}}", SYNC_REQ_ERR_BAD_JSON, "ranges");
    expect_error("{\"lists\":{\"a\":{\"ranges\":[0,1]}}}", SYNC_REQ_ERR_BAD_JSON, "ranges");
    expect_error("{\"lists\":{\"a\":{\"ranges\":{}}}}", SYNC_REQ_ERR_BAD_JSON, "ranges");
    expect_error("{\"lists\":{\"a\":{\"sort\":[\"by_name\",1]}}}", SYNC_REQ_ERR_BAD_JSON, "sort");
    expect_error("{\"lists\":{\"a\":{\"sort\":\"by_name\"}}}", SYNC_REQ_ERR_BAD_JSON, "sort");
    expect_error("{\"lists\":{\"a\":{\"filters\":[]}}}", SYNC_REQ_ERR_BAD_JSON, "filters");
    expect_error("{\"lists\":{\"a\":{\"filters\":{\"is_dm\":1}}}}", SYNC_REQ_ERR_BAD_JSON,
                 "filters.is_dm");
    expect_error("{\"lists\":{\"a\":{\"filters\":{\"tags\":[null]}}}}", SYNC_REQ_ERR_BAD_JSON,
                 "tags");
    expect_error("{\"lists\":{\"a\":{\"filters\":{\"room_types\":[1]}}}}", SYNC_REQ_ERR_BAD_JSON,
                 "room_types");
    expect_error("{\"lists\":{\"a\":{\"filters\":{\"room_name_like\":1}}}}", SYNC_REQ_ERR_BAD_JSON,
                 NULL);
    expect_error("{\"lists\":{\"a\":{\"required_state\":[[\"a\"]]}}}", SYNC_REQ_ERR_BAD_JSON,
                 "required_state");
    expect_error("{\"lists\":{\"a\":{\"required_state\":[[\"a\",1]]}}}", SYNC_REQ_ERR_BAD_JSON,
                 NULL);
    expect_error("{\"lists\":{\"a\":{\"required_state\":{}}}}", SYNC_REQ_ERR_BAD_JSON, NULL);
    expect_error("{\"lists\":{\"a\":{\"include_old_rooms\":true}}}", SYNC_REQ_ERR_BAD_JSON, NULL);
    expect_error("{\"lists\":{\"a\":{\"include_heroes\":\"yes\"}}}", SYNC_REQ_ERR_BAD_JSON, NULL);
    expect_error("{\"lists\":{\"a\":{\"deleted\":1}}}", SYNC_REQ_ERR_BAD_JSON, NULL);
    expect_error("{\"lists\":{\"a\":{\"slow_get_all_rooms\":\"true\"}}}", SYNC_REQ_ERR_BAD_JSON,
                 NULL);
    expect_error("{\"lists\":{\"a\":{\"bump_event_types\":[true]}}}", SYNC_REQ_ERR_BAD_JSON, NULL);
    expect_error("{\"room_subscriptions\":[]}", SYNC_REQ_ERR_BAD_JSON, NULL);
    expect_error("{\"room_subscriptions\":{\"!a\":1}}", SYNC_REQ_ERR_BAD_JSON, NULL);
    expect_error("{\"room_subscriptions\":{\"!a\":{\"timeline_limit\":true}}}",
                 SYNC_REQ_ERR_BAD_JSON, NULL);
    expect_error("{\"unsubscribe_rooms\":\"!a\"}", SYNC_REQ_ERR_BAD_JSON, NULL);
    expect_error("{\"extensions\":[]}", SYNC_REQ_ERR_BAD_JSON, NULL);
    /* beyond int64: jansson rejects the number itself */
    expect_error("{\"lists\":{\"a\":{\"ranges\":[[0,99999999999999999999999]]}}}",
                 SYNC_REQ_ERR_BAD_JSON, NULL);
}

static void test_invalid_params(void **state)
{
    expect_error("{\"conn_id\":\"12345678901234567\"}", SYNC_REQ_ERR_INVALID_PARAM, "conn_id");
    expect_ok("{\"conn_id\":\"1234567890123456\"}");
    char body[256];
    snprintf(body, sizeof(body), "{\"txn_id\":\"%065d\"}", 0);
    expect_error(body, SYNC_REQ_ERR_INVALID_PARAM, "txn_id");
    snprintf(body, sizeof(body), "{\"txn_id\":\"%064d\"}", 0);
    expect_ok(body);
    expect_error("{\"lists\":{\"a\":{\"ranges\":[[-1,5]]}}}", SYNC_REQ_ERR_INVALID_PARAM,
                 "invalid ranges");
    expect_error("{\"lists\":{\"a\":{\"ranges\":[[5,4]]}}}", SYNC_REQ_ERR_INVALID_PARAM,
                 "lists[a].invalid ranges");
    expect_error("{\"lists\":{\"a\":{\"ranges\":[[0,10],[10,20]]}}}", SYNC_REQ_ERR_INVALID_PARAM,
                 "overlap");
    expect_error("{\"lists\":{\"a\":{\"ranges\":[[5,10],[0,6]]}}}", SYNC_REQ_ERR_INVALID_PARAM,
                 "overlap");
    expect_ok("{\"lists\":{\"a\":{\"ranges\":[[0,9],[10,20]]}}}");
    expect_ok("{\"lists\":{\"a\":{\"ranges\":[[0,9007199254740992]]}}}");
    expect_error("{\"lists\":{\"a\":{\"ranges\":[[0,9007199254740993]]}}}",
                 SYNC_REQ_ERR_INVALID_PARAM, "out of range");
    expect_error("{\"lists\":{\"a\":{\"timeline_limit\":9007199254740993}}}",
                 SYNC_REQ_ERR_INVALID_PARAM, "timeline_limit");
    /* list key length */
    char key[80];
    memset(key, 'k', 65);
    key[65] = 0;
    snprintf(body, sizeof(body), "{\"lists\":{\"%s\":{}}}", key);
    expect_error(body, SYNC_REQ_ERR_INVALID_PARAM, "list key");
    key[64] = 0;
    snprintf(body, sizeof(body), "{\"lists\":{\"%s\":{}}}", key);
    expect_ok(body);
}

/* Builds a body with n entries produced by fmt(i). */
static char *many(const char *head, const char *fmt, int n, const char *tail)
{
    struct buf b = BUF_INIT;
    buf_puts(&b, head);
    for (int i = 0; i < n; i++) {
        if (i) buf_putc(&b, ',');
        buf_printf(&b, fmt, i, i);
    }
    buf_puts(&b, tail);
    return buf_detach(&b, NULL);
}

static void test_bounds(void **state)
{
    char *b = many("{\"lists\":{", "\"l%d\":{\"timeline_limit\":%d}", 101, "}}");
    expect_error(b, SYNC_REQ_ERR_INVALID_PARAM, "lists");
    free(b);
    b = many("{\"lists\":{", "\"l%d\":{\"timeline_limit\":%d}", 100, "}}");
    expect_ok(b);
    free(b);
    b = many("{\"lists\":{\"a\":{\"ranges\":[", "[1%d0,1%d5]", 101, "]}}}");
    expect_error(b, SYNC_REQ_ERR_INVALID_PARAM, "ranges");
    free(b);
    b = many("{\"lists\":{\"a\":{\"ranges\":[", "[1%d0,1%d5]", 100, "]}}}");
    expect_ok(b);
    free(b);
    b = many("{\"room_subscriptions\":{", "\"!r%d:%d\":{}", 1001, "}}");
    expect_error(b, SYNC_REQ_ERR_INVALID_PARAM, "room_subscriptions");
    free(b);
    b = many("{\"room_subscriptions\":{", "\"!r%d:%d\":{}", 1000, "}}");
    expect_ok(b);
    free(b);
    b = many("{\"room_subscriptions\":{\"!a\":{\"required_state\":[", "[\"t%d\",\"%d\"]", 501,
             "]}}}");
    expect_error(b, SYNC_REQ_ERR_INVALID_PARAM, "required_state");
    free(b);
    b = many("{\"room_subscriptions\":{\"!a\":{\"required_state\":[", "[\"t%d\",\"%d\"]", 500,
             "]}}}");
    expect_ok(b);
    free(b);
    /* include_old_rooms depth: 8 levels ok, 9 rejected */
    struct buf d = BUF_INIT;
    buf_puts(&d, "{\"room_subscriptions\":{\"!a\":{");
    for (int i = 0; i < 8; i++) buf_puts(&d, "\"include_old_rooms\":{");
    for (int i = 0; i < 8; i++) buf_puts(&d, "}");
    buf_puts(&d, "}}}");
    expect_ok(buf_cstr(&d));
    buf_reset(&d);
    buf_puts(&d, "{\"room_subscriptions\":{\"!a\":{");
    for (int i = 0; i < 9; i++) buf_puts(&d, "\"include_old_rooms\":{");
    for (int i = 0; i < 9; i++) buf_puts(&d, "}");
    buf_puts(&d, "}}}");
    expect_error(buf_cstr(&d), SYNC_REQ_ERR_INVALID_PARAM, "nested more than 8");
    buf_release(&d);
}

static void test_errcode_names(void **state)
{
    assert_string_equal(sync_req_errcode(SYNC_REQ_ERR_BAD_JSON), "M_BAD_JSON");
    assert_string_equal(sync_req_errcode(SYNC_REQ_ERR_INVALID_PARAM), "M_INVALID_PARAM");
}

/* ---- merge ---- */

static void merge(struct sync_req *muxed, const char *body, struct sync_req_changes *ch)
{
    struct sync_req d;
    struct sync_req_error err;
    int rc = parse(&d, body, &err);
    if (rc) fprintf(stderr, "%s: %s\n", body, err.message);
    assert_int_equal(rc, 0);
    sync_req_changes_release(ch);
    sync_req_changes_init(ch);
    assert_int_equal(sync_req_merge(muxed, &d, ch), 0);
    sync_req_release(&d);
}

static void test_merge_lists(void **state)
{
    struct sync_req m;
    struct sync_req_changes ch;
    sync_req_init(&m);
    sync_req_changes_init(&ch);
    merge(&m, "{\"txn_id\":\"x\",\"lists\":{\"a\":{\"ranges\":[[0,5]],\"timeline_limit\":3,"
              "\"required_state\":[[\"m.room.name\",\"\"]]}}}",
          &ch);
    assert_string_equal(m.txn_id, "x");
    assert_int_equal(ch.n_lists, 1);
    assert_true(ch.lists[0].created);
    struct sync_req_list *a = sync_req_find_list(&m, "a");
    assert_int_equal(a->n_sort, 1); /* defaulted */
    assert_int_equal(a->sort[0], SYNC_SORT_BY_RECENCY);
    assert_string_equal(a->sort_names.v[0], "by_recency");

    /* omitting the list keeps it; nothing changes; txn_id is not sticky */
    merge(&m, "{}", &ch);
    assert_int_equal(ch.n_lists, 0);
    assert_null(m.txn_id);
    assert_non_null(sync_req_find_list(&m, "a"));

    /* same values: no change */
    merge(&m, "{\"lists\":{\"a\":{\"ranges\":[[0,5]],\"timeline_limit\":3}}}", &ch);
    assert_int_equal(ch.n_lists, 0);

    /* ranges changed, old ranges kept; timeline_limit 0 keeps the value */
    merge(&m, "{\"lists\":{\"a\":{\"ranges\":[[0,10]],\"timeline_limit\":0}}}", &ch);
    assert_int_equal(ch.n_lists, 1);
    const struct sync_list_delta *d = sync_req_changes_list(&ch, "a");
    assert_non_null(d);
    assert_true(d->ranges_changed);
    assert_false(d->timeline_limit_changed || d->sort_changed || d->filters_changed);
    assert_int_equal(d->old_ranges.n, 1);
    assert_int_equal(d->old_ranges.v[0].end, 5);
    a = sync_req_find_list(&m, "a");
    assert_int_equal(a->ranges.v[0].end, 10);
    assert_int_equal(a->sub.timeline_limit, 3);

    /* timeline_limit and required_state */
    merge(&m, "{\"lists\":{\"a\":{\"timeline_limit\":7,\"required_state\":[[\"m.room.name\",\"\"],"
              "[\"m.room.topic\",\"\"]]}}}",
          &ch);
    d = sync_req_changes_list(&ch, "a");
    assert_true(d->timeline_limit_changed && d->required_state_changed);
    assert_false(d->ranges_changed);

    /* sort: [] replaces (and counts as a change) */
    merge(&m, "{\"lists\":{\"a\":{\"sort\":[]}}}", &ch);
    d = sync_req_changes_list(&ch, "a");
    assert_true(d->sort_changed);
    a = sync_req_find_list(&m, "a");
    assert_int_equal(a->n_sort, 0);
    merge(&m, "{\"lists\":{\"a\":{\"sort\":[\"by_name\"]}}}", &ch);
    assert_true(sync_req_changes_list(&ch, "a")->sort_changed);

    /* filters: {} equals no filters; a new object replaces wholesale */
    merge(&m, "{\"lists\":{\"a\":{\"filters\":{}}}}", &ch);
    assert_null(sync_req_changes_list(&ch, "a"));
    merge(&m, "{\"lists\":{\"a\":{\"filters\":{\"is_dm\":true,\"tags\":[\"x\"]}}}}", &ch);
    assert_true(sync_req_changes_list(&ch, "a")->filters_changed);
    merge(&m, "{\"lists\":{\"a\":{\"filters\":{\"tags\":[\"x\"],\"is_dm\":true}}}}", &ch);
    assert_null(sync_req_changes_list(&ch, "a")); /* same canonical JSON */
    merge(&m, "{\"lists\":{\"a\":{\"filters\":{\"is_dm\":true}}}}", &ch);
    assert_true(sync_req_changes_list(&ch, "a")->filters_changed);
    a = sync_req_find_list(&m, "a");
    assert_false(a->filters.has_tags);

    /* ranges: [] clears */
    merge(&m, "{\"lists\":{\"a\":{\"ranges\":[]}}}", &ch);
    assert_true(sync_req_changes_list(&ch, "a")->ranges_changed);
    assert_int_equal(sync_req_find_list(&m, "a")->ranges.n, 0);

    /* slow_get_all_rooms, bump_event_types, include_heroes, include_old_rooms */
    merge(&m, "{\"lists\":{\"a\":{\"slow_get_all_rooms\":true,\"bump_event_types\":[\"m.x\"],"
              "\"include_heroes\":true,\"include_old_rooms\":{\"timeline_limit\":1}}}}",
          &ch);
    d = sync_req_changes_list(&ch, "a");
    assert_true(d->slow_get_all_rooms_changed && d->bump_event_types_changed);
    a = sync_req_find_list(&m, "a");
    assert_true(a->sub.include_heroes);
    assert_int_equal(a->sub.include_old_rooms->timeline_limit, 1);
    merge(&m, "{\"lists\":{\"a\":{\"include_heroes\":false}}}", &ch);
    assert_int_equal(ch.n_lists, 0); /* no immediate effect, not reported */
    assert_false(sync_req_find_list(&m, "a")->sub.include_heroes);
    assert_true(sync_req_find_list(&m, "a")->slow_get_all_rooms);

    /* deleted: true on an unknown list creates nothing */
    merge(&m, "{\"lists\":{\"zz\":{\"deleted\":true,\"ranges\":[[0,1]]}}}", &ch);
    assert_int_equal(ch.n_lists, 0);
    assert_null(sync_req_find_list(&m, "zz"));

    /* deleted: true removes; other lists stay */
    merge(&m, "{\"lists\":{\"b\":{}}}", &ch);
    assert_true(sync_req_changes_list(&ch, "b")->created);
    merge(&m, "{\"lists\":{\"a\":{\"deleted\":true}}}", &ch);
    assert_true(sync_req_changes_list(&ch, "a")->deleted);
    assert_null(sync_req_find_list(&m, "a"));
    assert_non_null(sync_req_find_list(&m, "b"));
    /* deleted: false merges normally and is never retained */
    merge(&m, "{\"lists\":{\"b\":{\"deleted\":false,\"ranges\":[[0,1]]}}}", &ch);
    assert_false(sync_req_find_list(&m, "b")->deleted);

    sync_req_changes_release(&ch);
    sync_req_release(&m);
}

static void test_merge_subscriptions(void **state)
{
    struct sync_req m;
    struct sync_req_changes ch;
    sync_req_init(&m);
    sync_req_changes_init(&ch);
    merge(&m, "{\"room_subscriptions\":{\"!a\":{\"timeline_limit\":1},\"!b\":{}}}", &ch);
    assert_int_equal(ch.n_subs, 2);
    assert_int_equal(ch.subs[0].change, SYNC_SUB_NEW);
    assert_int_equal(HASH_COUNT(m.room_subscriptions), 2);
    /* sticky when omitted */
    merge(&m, "{}", &ch);
    assert_int_equal(ch.n_subs, 0);
    assert_int_equal(HASH_COUNT(m.room_subscriptions), 2);
    /* identical: unchanged; include_heroes alone: not a change, but replaced */
    merge(&m, "{\"room_subscriptions\":{\"!a\":{\"timeline_limit\":1,\"include_heroes\":true}}}",
          &ch);
    assert_int_equal(ch.n_subs, 0);
    assert_true(sync_req_find_sub(&m, "!a")->sub.include_heroes);
    /* replaced wholesale: timeline_limit differs */
    merge(&m, "{\"room_subscriptions\":{\"!a\":{\"required_state\":[[\"a\",\"b\"]]}}}", &ch);
    assert_int_equal(ch.n_subs, 1);
    assert_int_equal(ch.subs[0].change, SYNC_SUB_CHANGED);
    assert_true(ch.subs[0].required_state_changed);
    assert_true(ch.subs[0].timeline_limit_changed);
    assert_int_equal(sync_req_find_sub(&m, "!a")->sub.timeline_limit, 0);
    assert_false(sync_req_find_sub(&m, "!a")->sub.include_heroes);
    /* required_state order matters */
    merge(&m, "{\"room_subscriptions\":{\"!b\":{\"required_state\":[[\"a\",\"b\"],[\"c\",\"d\"]]}}}",
          &ch);
    merge(&m, "{\"room_subscriptions\":{\"!b\":{\"required_state\":[[\"c\",\"d\"],[\"a\",\"b\"]]}}}",
          &ch);
    assert_int_equal(ch.n_subs, 1);
    assert_true(ch.subs[0].required_state_changed);
    assert_false(ch.subs[0].timeline_limit_changed);
    /* unsubscribe: removed and reported; unknown room: nothing */
    merge(&m, "{\"unsubscribe_rooms\":[\"!b\",\"!nope\"]}", &ch);
    assert_int_equal(ch.n_subs, 1);
    assert_int_equal(ch.subs[0].change, SYNC_SUB_UNSUBSCRIBED);
    assert_string_equal(ch.subs[0].room_id, "!b");
    assert_null(sync_req_find_sub(&m, "!b"));
    assert_int_equal(m.unsubscribe_rooms.n, 2);
    merge(&m, "{}", &ch);
    assert_int_equal(m.unsubscribe_rooms.n, 0); /* not sticky */
    /* [QUIRK] fix: subscribed + unsubscribed in one request ends unsubscribed */
    merge(&m, "{\"room_subscriptions\":{\"!a\":{\"timeline_limit\":9}},\"unsubscribe_rooms\":[\"!a\"]}",
          &ch);
    assert_null(sync_req_find_sub(&m, "!a"));
    assert_int_equal(ch.n_subs, 1);
    assert_int_equal(ch.subs[0].change, SYNC_SUB_UNSUBSCRIBED);
    /* ... and for a room not subscribed before, nothing at all */
    merge(&m, "{\"room_subscriptions\":{\"!c\":{}},\"unsubscribe_rooms\":[\"!c\"]}", &ch);
    assert_null(sync_req_find_sub(&m, "!c"));
    assert_int_equal(ch.n_subs, 0);
    sync_req_changes_release(&ch);
    sync_req_release(&m);
}

static void test_merge_extensions(void **state)
{
    struct sync_req m;
    struct sync_req_changes ch;
    sync_req_init(&m);
    sync_req_changes_init(&ch);
    merge(&m, "{\"extensions\":{\"to_device\":{\"enabled\":true,\"since\":\"5\"},\"typing\":null}}",
          &ch);
    assert_non_null(json_object_get(m.extensions, "to_device"));
    assert_null(json_object_get(m.extensions, "typing"));
    merge(&m, "{\"extensions\":{\"to_device\":{\"since\":\"6\",\"enabled\":null},"
              "\"e2ee\":{\"enabled\":true}}}",
          &ch);
    json_t *td = json_object_get(m.extensions, "to_device");
    assert_true(json_is_true(json_object_get(td, "enabled")));
    assert_string_equal(json_string_value(json_object_get(td, "since")), "6");
    assert_non_null(json_object_get(m.extensions, "e2ee"));
    merge(&m, "{}", &ch);
    assert_non_null(json_object_get(m.extensions, "e2ee"));
    sync_req_changes_release(&ch);
    sync_req_release(&m);
}

static void test_same_body(void **state)
{
    const char *a = "{\"txn_id\":\"1\",\"lists\":{\"a\":{\"ranges\":[[0,1]]},\"b\":{}}}";
    const char *b = "{ \"lists\" : {\"b\":{}, \"a\":{\"ranges\":[[0,1]]}}, \"txn_id\":\"2\"}";
    const char *c = "{\"lists\":{\"a\":{\"ranges\":[[0,2]]},\"b\":{}}}";
    assert_true(sync_req_same_body(a, strlen(a), b, strlen(b)));
    assert_false(sync_req_same_body(a, strlen(a), c, strlen(c)));
    assert_true(sync_req_same_body("", 0, "{}", 2));
    assert_true(sync_req_same_body("{\"txn_id\":\"x\"}", 14, "{}", 2));
    assert_false(sync_req_same_body("{", 1, "{", 1));
    char *canon = sync_req_canonical_body(b, strlen(b));
    assert_string_equal(canon, "{\"lists\":{\"a\":{\"ranges\":[[0,1]]},\"b\":{}}}");
    free(canon);
    assert_null(sync_req_canonical_body("[1]", 3));
}

static void test_timeline_budget(void **state)
{
    (void)state;
    struct sync_req r;
    struct sync_req_error err;
    /* Up to 50 whatever the window; above, the budget over the window's rooms; at most 1000. */
    const char *body = "{\"lists\":{\"a\":{\"ranges\":[[0,4999]],\"timeline_limit\":50},"
                       "\"b\":{\"ranges\":[[0,99]],\"timeline_limit\":500},"
                       "\"c\":{\"ranges\":[[0,1],[5,6]],\"timeline_limit\":5000},"
                       "\"d\":{\"timeline_limit\":100}},"
                       "\"room_subscriptions\":{\"!a:x\":{\"timeline_limit\":1000}}}";
    assert_int_equal(parse(&r, body, &err), 0);
    assert_int_equal(sync_req_find_list(&r, "a")->sub.timeline_limit, 50);
    assert_int_equal(sync_req_find_list(&r, "b")->sub.timeline_limit, 100);
    assert_int_equal(sync_req_find_list(&r, "c")->sub.timeline_limit, 1000);
    assert_int_equal(sync_req_find_list(&r, "d")->sub.timeline_limit, 50); /* no ranges: the window is unknown */
    assert_int_equal(sync_req_find_sub(&r, "!a:x")->sub.timeline_limit, 1000);
    sync_req_release(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_and_minimal),
        cmocka_unit_test(test_full_request),
        cmocka_unit_test(test_specified_flags),
        cmocka_unit_test(test_bad_json),
        cmocka_unit_test(test_invalid_params),
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_errcode_names),
        cmocka_unit_test(test_merge_lists),
        cmocka_unit_test(test_merge_subscriptions),
        cmocka_unit_test(test_merge_extensions),
        cmocka_unit_test(test_same_body),
        cmocka_unit_test(test_timeline_budget),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
