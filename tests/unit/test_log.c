/* Unit tests of src/base/log: the text and JSON line formats. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"

/* 2026-12-06T18:45:26.123Z */
static const struct timespec when = {.tv_sec = 1796582726, .tv_nsec = 123456789};

static char *fmt_line(enum log_format f, enum log_level lvl, const char *module, const char *msg, size_t cap)
{
    char *out = calloc(1, cap + 1);
    size_t n = log_format_line(out, cap, f, &when, lvl, module, msg);
    assert_true(n <= cap);
    assert_null(memchr(out, '\0', n));
    out[n] = '\0';
    assert_true(n > 0 && out[n - 1] == '\n');
    return out;
}

/* Parses a JSON line (with its newline) strictly; fails the test otherwise. */
static json_t *parse(const char *line)
{
    json_error_t e;
    json_t *j = json_loads(line, JSON_REJECT_DUPLICATES, &e);
    if (!j) fail_msg("not JSON (%s): %s", e.text, line);
    assert_true(json_is_object(j));
    return j;
}

static void test_text_line_has_iso_time(void **state)
{
    (void)state;
    char *l = fmt_line(LOG_FORMAT_TEXT, LOG_WARN, "http", "hello", 512);
    assert_string_equal(l, "2026-12-06T18:45:26.123Z WRN [http] hello\n");
    free(l);
}

static void test_text_line_stays_one_line(void **state)
{
    (void)state;
    char *l = fmt_line(LOG_FORMAT_TEXT, LOG_INFO, "db", "a\nb\rc\x01", 512);
    assert_string_equal(l, "2026-12-06T18:45:26.123Z INF [db] a\\nb\\rc?\n");
    free(l);
}

static void test_json_basic_fields(void **state)
{
    (void)state;
    char *l = fmt_line(LOG_FORMAT_JSON, LOG_ERROR, "store", "cannot connect", 512);
    json_t *j = parse(l);
    assert_string_equal(json_string_value(json_object_get(j, "time")), "2026-12-06T18:45:26.123Z");
    assert_string_equal(json_string_value(json_object_get(j, "level")), "error");
    assert_string_equal(json_string_value(json_object_get(j, "module")), "store");
    assert_string_equal(json_string_value(json_object_get(j, "message")), "cannot connect");
    assert_int_equal(json_object_size(j), 4);
    json_decref(j);
    free(l);
}

static void test_json_request_fields(void **state)
{
    (void)state;
    char *l = fmt_line(LOG_FORMAT_JSON, LOG_INFO, "http",
                       "POST /_matrix/client/unstable/org.matrix.msc3575/sync status=200 size=1234 duration=0.012 "
                       "user=@alice:example.org device=ABCDEF",
                       1024);
    json_t *j = parse(l);
    assert_string_equal(json_string_value(json_object_get(j, "message")),
                        "POST /_matrix/client/unstable/org.matrix.msc3575/sync");
    assert_true(json_is_integer(json_object_get(j, "status")));
    assert_int_equal(json_integer_value(json_object_get(j, "status")), 200);
    assert_int_equal(json_integer_value(json_object_get(j, "size")), 1234);
    assert_true(json_is_real(json_object_get(j, "duration")));
    assert_true(json_real_value(json_object_get(j, "duration")) > 0.0119);
    assert_string_equal(json_string_value(json_object_get(j, "user")), "@alice:example.org");
    assert_string_equal(json_string_value(json_object_get(j, "device")), "ABCDEF");
    json_decref(j);
    free(l);
}

/* Formats msg as JSON and checks its message and string fields (kv: key,
 * value pairs, NULL-terminated; n_fields: how many keys besides time, level,
 * module and message, or -1 not to count). */
static void expect_fields(const char *msg, const char *want_msg, int n_fields, const char *const *kv)
{
    char *l = fmt_line(LOG_FORMAT_JSON, LOG_INFO, "x", msg, 512);
    json_t *j = parse(l);
    assert_string_equal(json_string_value(json_object_get(j, "message")), want_msg);
    for (; *kv; kv += 2) {
        const char *got = json_string_value(json_object_get(j, kv[0]));
        if (!got || strcmp(got, kv[1]) != 0) fail_msg("%s: want %s=%s in %s", msg, kv[0], kv[1], l);
    }
    if (n_fields >= 0) assert_int_equal(json_object_size(j), 4 + (size_t)n_fields);
    json_decref(j);
    free(l);
}

static void test_json_only_trailing_words_are_fields(void **state)
{
    (void)state;
    /* A key=value word followed by free text stays in the message; reserved
     * and uppercase keys are never fields; a device ID that looks like a
     * number stays a string. */
    const char *msg = "GET /versions failed (is SYNCV3_SERVER=http://x right?): timeout";
    expect_fields(msg, msg, 0, (const char *const[]){NULL});
    expect_fields("done level=9 device=0123 status=abc", "done level=9", 2,
                  (const char *const[]){"level", "info", "device", "0123", "status", "abc", NULL});
    /* Leading words too; a message of only fields has an empty message. */
    expect_fields("user=@a:b device=D poll started (since \"s1\") n=3", "poll started (since \"s1\")", 3,
                  (const char *const[]){"user", "@a:b", "device", "D", "n", "3", NULL});
    expect_fields("a=1 b=2", "", 2, (const char *const[]){"a", "1", "b", "2", NULL});
}

static void test_json_escapes_everything(void **state)
{
    (void)state;
    /* Quotes, backslashes, control bytes, DEL, valid UTF-8 and invalid bytes
     * (a lone continuation, an overlong form, a surrogate, a cut sequence). */
    const char msg[] = "q\"b\\n\nt\t\x01\x7f é 😀 \x80 \xc0\xaf \xed\xa0\x80 end\xe2\x82";
    char *l = fmt_line(LOG_FORMAT_JSON, LOG_INFO, "mod\"ule", msg, 1024);
    json_t *j = parse(l);
    assert_string_equal(json_string_value(json_object_get(j, "module")), "mod\"ule");
    assert_string_equal(json_string_value(json_object_get(j, "message")),
                        "q\"b\\n\nt\t\x01\x7f é 😀 \xef\xbf\xbd \xef\xbf\xbd\xef\xbf\xbd "
                        "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd end\xef\xbf\xbd\xef\xbf\xbd");
    json_decref(j);
    free(l);
}

static void test_json_cut_lines_stay_valid(void **state)
{
    (void)state;
    /* Every capacity from the smallest allowed up: the line is cut but parses. */
    char msg[600];
    memset(msg, '"', 300);
    memcpy(msg + 300, " status=200 user=@someone:example.org duration=1.5 device=DEV", 62);
    msg[362] = '\0';
    for (size_t cap = 256; cap < 1100; cap++) {
        char *l = fmt_line(LOG_FORMAT_JSON, LOG_INFO, "http", msg, cap);
        json_t *j = parse(l);
        assert_non_null(json_object_get(j, "time"));
        json_decref(j);
        free(l);
    }
    /* Multi-byte characters are never split. */
    char wide[401];
    for (int i = 0; i < 200; i++) memcpy(wide + 2 * i, "é", 2);
    wide[400] = '\0';
    for (size_t cap = 256; cap < 500; cap++) {
        char *l = fmt_line(LOG_FORMAT_JSON, LOG_INFO, "x", wide, cap);
        json_decref(parse(l));
        free(l);
    }
}

static void test_format_parse(void **state)
{
    (void)state;
    enum log_format f = LOG_FORMAT_TEXT;
    assert_int_equal(log_format_parse("JSON", &f), 0);
    assert_int_equal(f, LOG_FORMAT_JSON);
    assert_int_equal(log_format_parse("text", &f), 0);
    assert_int_equal(f, LOG_FORMAT_TEXT);
    assert_int_equal(log_format_parse("logfmt", &f), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_line_has_iso_time),
        cmocka_unit_test(test_text_line_stays_one_line),
        cmocka_unit_test(test_json_basic_fields),
        cmocka_unit_test(test_json_request_fields),
        cmocka_unit_test(test_json_only_trailing_words_are_fields),
        cmocka_unit_test(test_json_escapes_everything),
        cmocka_unit_test(test_json_cut_lines_stay_valid),
        cmocka_unit_test(test_format_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
