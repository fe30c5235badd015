/* Unit tests of src/base/ufold: case-insensitive keys for every script. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "base/ufold.h"

static void same_key(const char *a, const char *b)
{
    char *ka = ufold_key(a), *kb = ufold_key(b);
    if (strcmp(ka, kb) != 0) fail_msg("\"%s\" -> \"%s\" but \"%s\" -> \"%s\"", a, ka, b, kb);
    free(ka);
    free(kb);
}

static void key_is(const char *in, const char *want)
{
    char *k = ufold_key(in);
    assert_string_equal(k, want);
    free(k);
}

static void test_scripts(void **state)
{
    (void)state;
    key_is("Hello World", "hello world");
    key_is(NULL, "");
    key_is("", "");
    /* Greek: precomposed and decomposed accents, final sigma */
    key_is("ΑΘΉΝΑ", "αθήνα");
    same_key("αθήνα", "αθη\xcc\x81να"); /* ή = η + U+0301 */
    same_key("ΟΔΥΣΣΕΥΣ", "οδυσσευς");
    /* Cyrillic */
    key_is("МОСКВА Ёж", "москва ёж");
    /* German sharp s, both cases */
    same_key("STRASSE", "straße");
    same_key("STRAẞE", "strasse");
    /* Turkish: all four i's meet */
    same_key("İstanbul", "istanbul");
    same_key("ISPARTA", "ısparta");
    same_key("Diyarbakır", "DIYARBAKIR");
    /* Armenian, Georgian Mtavruli, Cherokee have case too */
    same_key("ԱՐԱՄ", "արամ");
    same_key("ᲡᲐᲥᲐᲠᲗᲕᲔᲚᲝ", "საქართველო");
    /* compatibility forms: full-width letters, ligatures */
    same_key("ＡＢＣ", "abc");
    same_key("ﬁle", "FILE");
    /* scripts without case are untouched */
    key_is("日本語 한국어", "日本語 한국어");
}

static void test_contains(void **state)
{
    (void)state;
    assert_true(ufold_contains("αθήνα 2004", "ΑΘΉΝΑ"));
    assert_true(ufold_contains("Große Straße", "STRASSE"));
    assert_true(ufold_contains("İzmir friends", "izmir"));
    assert_true(ufold_contains("Москва чат", "МОСКВА"));
    assert_true(ufold_contains("anything", ""));
    assert_true(ufold_contains("anything", NULL));
    assert_false(ufold_contains("Athens", "ΑΘΉΝΑ"));
    assert_false(ufold_contains(NULL, "x"));
    assert_false(ufold_contains("cafe", "café")); /* accents matter when searching */
}

static void test_invalid_utf8(void **state)
{
    (void)state;
    /* Stray continuation bytes, truncated sequences, overlongs, surrogates:
     * each becomes U+FFFD, the valid parts are still folded. */
    const char *bad[] = {"\x80", "A\xc3", "\xc0\xaf", "\xed\xa0\x80Z", "\xff\xfe", "ok\xe2\x82", "\xf4\x90\x80\x80"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char *k = ufold_key(bad[i]);
        assert_non_null(k);
        assert_non_null(strstr(k, "\xef\xbf\xbd"));
        free(k);
        char *s = ufold_sort_key(bad[i]);
        assert_non_null(s);
        free(s);
        (void)ufold_contains(bad[i], bad[i]);
    }
    key_is("A\x80" "B", "a\xef\xbf\xbd" "b");
}

static void before(const char *a, const char *b)
{
    char *ka = ufold_sort_key(a), *kb = ufold_sort_key(b);
    if (strcmp(ka, kb) >= 0) fail_msg("\"%s\" does not sort before \"%s\"", a, b);
    free(ka);
    free(kb);
}

static void test_sort_key(void **state)
{
    (void)state;
    before("Ärger", "émile");
    before("émile", "Zoe");
    before("a", "ab");
    before("resume", "résumé");
    before("Résumé", "resumes");
    before("αθήνα", "Βόλος");
    before("Ёлка", "жук");
    before("", "a");
    char *x = ufold_sort_key("ÉMILE"), *y = ufold_sort_key("émile");
    assert_string_equal(x, y); /* only case differs: equal keys */
    free(x);
    free(y);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scripts),
        cmocka_unit_test(test_contains),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_sort_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
