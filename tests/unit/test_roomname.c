/* Unit tests for src/sync/roomname: computed names, by_name keys (docs/behaviour.md, "Room names", "Sorts"). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/ufold.h"
#include "sync/roomname.h"

static void check(const char *want, const char *name, const char *alias,
                  const struct roomname_hero *h, size_t n, int64_t joined, int64_t invited)
{
    char *got = roomname_compute(name, alias, h, n, joined, invited);
    assert_string_equal(got, want);
    free(got);
}

static const struct roomname_hero alice = {"@alice:x", "Alice"};
static const struct roomname_hero bob = {"@bob:x", "Bob"};
static const struct roomname_hero carol = {"@carol:x", NULL};
static const struct roomname_hero dave = {"@dave:x", ""};

static void test_name_and_alias(void **state)
{
    struct roomname_hero h[] = {alice};
    check("My Room", "My Room", "#a:x", h, 1, 5, 0);
    check("#a:x", "", "#a:x", h, 1, 5, 0);
    check("#a:x", NULL, "#a:x", h, 1, 5, 0);
    check("Alice", "", "", h, 1, 2, 0);
}

static void test_heroes(void **state)
{
    struct roomname_hero two[] = {alice, bob};
    check("Alice and Bob", NULL, NULL, two, 2, 3, 0);
    check("Alice and Bob", NULL, NULL, two, 2, 2, 1);
    struct roomname_hero three[] = {alice, bob, carol};
    check("Alice, Bob and @carol:x", NULL, NULL, three, 3, 4, 0);
    /* example from the spec: 5 joined + 1 invited */
    check("Alice, Bob and 3 others", NULL, NULL, two, 2, 5, 1);
    check("Alice and 1 others", NULL, NULL, two, 1, 3, 0);
    /* empty displayname falls back to the user ID */
    struct roomname_hero d[] = {dave};
    check("@dave:x", NULL, NULL, d, 1, 2, 0);
    /* at most 5 names */
    struct roomname_hero six[] = {alice, bob, carol, dave, {"@e:x", "E"}, {"@f:x", "F"}};
    check("Alice, Bob, @carol:x, @dave:x, E and 5 others", NULL, NULL, six, 6, 11, 0);
    check("Alice, Bob, @carol:x, @dave:x and E", NULL, NULL, six, 6, 6, 0);
}

static void test_empty_rooms(void **state)
{
    check("Empty Room", NULL, NULL, NULL, 0, 1, 0);
    check("Empty Room", NULL, NULL, NULL, 0, 0, 0);
    /* [QUIRK] fix: no heroes but other members => "Empty Room", not " and 4 others" */
    check("Empty Room", NULL, NULL, NULL, 0, 5, 0);
    struct roomname_hero two[] = {alice, bob};
    check("Empty Room (was Alice and Bob)", NULL, NULL, two, 2, 1, 0);
    check("Empty Room (was Alice and Bob)", NULL, NULL, two, 2, 0, 0);
    /* a single hero is never wrapped */
    struct roomname_hero one[] = {alice};
    check("Alice", NULL, NULL, one, 1, 1, 0);
    check("Alice", NULL, NULL, one, 1, 0, 0);
}

static void test_disambiguation(void **state)
{
    struct roomname_hero same[] = {{"@a1:x", "Sam"}, {"@a2:x", "Sam"}, bob};
    check("Sam (@a1:x), Sam (@a2:x) and Bob", NULL, NULL, same, 3, 4, 0);
    /* a displayname equal to another hero's user ID */
    struct roomname_hero tricky[] = {{"@a:x", "@b:x"}, {"@b:x", "Bee"}};
    check("@b:x (@a:x) and Bee", NULL, NULL, tricky, 2, 3, 0);
    /* displayname equal to another's bare user-ID label */
    struct roomname_hero tricky2[] = {{"@a:x", "@b:x"}, {"@b:x", NULL}};
    check("@b:x (@a:x) and @b:x", NULL, NULL, tricky2, 2, 3, 0);
    /* heroes beyond the fifth do not cause disambiguation */
    struct roomname_hero far[] = {{"@1:x", "A"}, {"@2:x", "B"}, {"@3:x", "C"},
                                  {"@4:x", "D"}, {"@5:x", "E"}, {"@6:x", "A"}};
    check("A, B, C, D, E and 1 others", NULL, NULL, far, 6, 7, 0);
}

/* The sort key of in must be the sort key of the already-folded want (the
 * stripping of #!():_@ and the case folding both happened). */
static void key(const char *in, const char *want)
{
    char *got = roomname_sort_key(in);
    char *exp = ufold_sort_key(want);
    assert_string_equal(got, exp);
    free(got);
    free(exp);
}

/* roomname_sort_key(a) sorts before roomname_sort_key(b). */
static void before(const char *a, const char *b)
{
    char *ka = roomname_sort_key(a), *kb = roomname_sort_key(b);
    if (strcmp(ka, kb) >= 0) fail_msg("\"%s\" does not sort before \"%s\"", a, b);
    free(ka);
    free(kb);
}

static void test_sort_key(void **state)
{
    key("#Room:Server", "room:server");
    key("!!(Hello)__", "hello");
    key("@:_#!()", "");
    key("", "");
    key(NULL, "");
    key("a#b", "a#b");
    key("ÉCOLE Ünd Straße", "école ünd strasse");
    key("ΑΒΓ Дом", "αβγ дом");
    key("Ёж", "ёж");
    key("日本 Room", "日本 room");
    key("×", "×"); /* U+00D7 has no lower case */
    /* by_name is alphabetical whatever the case and accents */
    before("Ärger", "émile");
    before("émile", "Zoe");
    before("apple", "Banana");
    before("#alpha", "beta");
    before("Ωmega", "ωmegas");
    before("resume", "résumé");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_name_and_alias),
        cmocka_unit_test(test_heroes),
        cmocka_unit_test(test_empty_rooms),
        cmocka_unit_test(test_disambiguation),
        cmocka_unit_test(test_sort_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
