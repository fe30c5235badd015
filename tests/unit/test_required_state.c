/* Unit tests for src/sync/required_state (docs/behaviour.md, "required_state"). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "sync/required_state.h"

#define P(t, k) {(char *)(t), (char *)(k)}

static void test_exact_and_wildcards(void **state)
{
    struct rs_pair p[] = {P("m.room.name", ""), P("m.room.member", "*"), P("*", "@x:y"),
                          P("m.room.topic", "")};
    struct rs_matcher m;
    rs_matcher_init(&m, p, 4, "@me:y");
    assert_true(rs_match(&m, "m.room.name", ""));
    assert_false(rs_match(&m, "m.room.name", "x"));
    assert_true(rs_match(&m, "m.room.member", "@anyone:z"));
    assert_true(rs_match(&m, "custom", "@x:y"));
    assert_false(rs_match(&m, "custom", "@z:y"));
    assert_false(rs_match(&m, "m.room.create", ""));
    assert_false(m.all_state);
    assert_false(m.lazy_members);
    assert_int_equal(rs_query_kind(&m), RS_QUERY_SELECTED);
    assert_int_equal(m.n_types, 1);
    assert_string_equal(m.types[0], "m.room.member");
    assert_int_equal(m.n_keys, 1);
    assert_string_equal(m.keys[0], "@x:y");
    assert_int_equal(m.n_pairs, 2);
    assert_string_equal(m.pairs[1].type, "m.room.topic");
    rs_matcher_release(&m);
}

static void test_no_globbing(void **state)
{
    struct rs_pair p[] = {P("m.room.*", "*"), P("m.room.name", "a*")};
    struct rs_matcher m;
    rs_matcher_init(&m, p, 2, NULL);
    assert_false(rs_match(&m, "m.room.name", ""));
    assert_true(rs_match(&m, "m.room.*", "whatever"));
    assert_true(rs_match(&m, "m.room.name", "a*"));
    assert_false(rs_match(&m, "m.room.name", "ab"));
    rs_matcher_release(&m);
}

static void test_me_and_lazy(void **state)
{
    struct rs_pair p[] = {P("m.room.member", "$ME"), P("m.room.member", "$LAZY"),
                          P("m.room.member", "$ME"), P("x", "$MEE")};
    struct rs_matcher m;
    rs_matcher_init(&m, p, 4, "@me:y");
    assert_true(m.lazy_members);
    assert_true(rs_match(&m, "m.room.member", "@me:y"));
    assert_false(rs_match(&m, "m.room.member", "$ME"));
    assert_false(rs_match(&m, "m.room.member", "$LAZY"));
    assert_false(rs_match(&m, "m.room.member", "@other:y"));
    assert_true(rs_match(&m, "x", "$MEE")); /* only an exact $ME is substituted */
    assert_int_equal(m.n_pairs, 2);         /* deduplicated, $LAZY not a pair */
    rs_matcher_release(&m);

    struct rs_pair lazy_only[] = {P("m.room.member", "$LAZY")};
    rs_matcher_init(&m, lazy_only, 1, "@me:y");
    assert_true(m.lazy_members);
    assert_int_equal(rs_query_kind(&m), RS_QUERY_NONE);
    rs_matcher_release(&m);
    /* ["*","$ME"] */
    struct rs_pair star_me[] = {P("*", "$ME")};
    rs_matcher_init(&m, star_me, 1, "@me:y");
    assert_true(rs_match(&m, "anything", "@me:y"));
    assert_string_equal(m.keys[0], "@me:y");
    rs_matcher_release(&m);
}

static void test_all_state(void **state)
{
    struct rs_pair p[] = {P("*", "*"), P("m.room.member", "@a:x"), P("m.room.topic", "*"),
                          P("*", "@b:x")};
    struct rs_matcher m;
    rs_matcher_init(&m, p, 4, NULL);
    assert_true(m.all_state);
    assert_int_equal(rs_query_kind(&m), RS_QUERY_ALL);
    assert_true(rs_match(&m, "m.room.name", ""));
    assert_true(rs_match(&m, "m.room.topic", ""));
    assert_true(rs_match(&m, "custom", "k"));
    assert_true(rs_match(&m, "m.room.member", "@a:x"));
    /* explicit keys restrict their type; "*" entries are otherwise ignored */
    assert_false(rs_match(&m, "m.room.member", "@b:x"));
    assert_false(rs_match(&m, "m.room.member", "@c:x"));
    rs_matcher_release(&m);

    /* all state + $LAZY: no members except the lazy ones (added by the caller) */
    struct rs_pair q[] = {P("*", "*"), P("m.room.member", "$LAZY")};
    rs_matcher_init(&m, q, 2, NULL);
    assert_true(m.lazy_members);
    assert_true(rs_match(&m, "m.room.create", ""));
    assert_false(rs_match(&m, "m.room.member", "@a:x"));
    rs_matcher_release(&m);
}

static void test_empty(void **state)
{
    struct rs_matcher m;
    rs_matcher_init(&m, NULL, 0, "@me:y");
    assert_int_equal(rs_query_kind(&m), RS_QUERY_NONE);
    assert_false(rs_match(&m, "m.room.name", ""));
    rs_matcher_release(&m);
}

static void test_exclusions(void **state)
{
    (void)state;
    struct rs_pair p[] = {P("*", "*"), P(RS_EXCLUDE "m.room.member", "*"), P(RS_EXCLUDE "*", "@x:y"),
                          P(RS_EXCLUDE "m.room.topic", "")};
    struct rs_matcher m;
    rs_matcher_init(&m, p, 4, "@me:y");
    assert_true(m.all_state);
    assert_true(rs_match(&m, "m.room.name", ""));
    assert_false(rs_match(&m, "m.room.member", "@me:y"));
    assert_false(rs_match(&m, "custom", "@x:y"));
    assert_true(rs_match(&m, "custom", "@z:y"));
    assert_false(rs_match(&m, "m.room.topic", ""));
    assert_true(rs_match(&m, "m.room.topic", "x"));
    rs_matcher_release(&m);
    struct rs_pair q[] = {P("m.room.member", "*"), P(RS_EXCLUDE "*", "*")};
    rs_matcher_init(&m, q, 2, NULL);
    assert_false(rs_match(&m, "m.room.member", "@a:y"));
    rs_matcher_release(&m);
}

static void test_pairs_equal(void **state)
{
    (void)state;
    struct rs_pair a[] = {P("m.room.name", ""), P("m.room.member", "$LAZY")};
    struct rs_pair b[] = {P("m.room.name", ""), P("m.room.member", "$LAZY")};
    struct rs_pair swapped[] = {P("m.room.member", "$LAZY"), P("m.room.name", "")};
    /* Type and key boundaries differ although the concatenations agree. */
    struct rs_pair shifted[] = {P("m.room.nam", "e"), P("m.room.member", "$LAZY")};
    assert_true(rs_pairs_equal(a, 2, a, 2));
    assert_true(rs_pairs_equal(a, 2, b, 2));
    assert_true(rs_pairs_equal(a, 0, NULL, 0));
    assert_false(rs_pairs_equal(a, 2, b, 1));
    assert_false(rs_pairs_equal(a, 2, swapped, 2));
    assert_false(rs_pairs_equal(a, 2, shifted, 2));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_and_wildcards),
        cmocka_unit_test(test_no_globbing),
        cmocka_unit_test(test_me_and_lazy),
        cmocka_unit_test(test_all_state),
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_exclusions),
        cmocka_unit_test(test_pairs_equal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
