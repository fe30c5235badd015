/* Tests of src/http/static: content types, the file lookup (exact names
 * only, so no traversal), If-None-Match matching, and the generated table of
 * the web client's files. Serving through the server is in test_http.c. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "http/static.h"

static void test_content_types(void **st)
{
    static const char *const cases[][2] = {
        {"index.html", "text/html; charset=utf-8"},
        {"INDEX.HTML", "text/html; charset=utf-8"},
        {"app.js", "text/javascript; charset=utf-8"},
        {"mod.mjs", "text/javascript; charset=utf-8"},
        {"style.css", "text/css; charset=utf-8"},
        {"icon.svg", "image/svg+xml"},
        {"shot.png", "image/png"},
        {"x.json", "application/json"},
        {"README", "application/octet-stream"},
        {"a.jsx", "application/octet-stream"},
        {"a.html.bak", "application/octet-stream"},
        {"dir.js/file", "application/octet-stream"},
        {"", "application/octet-stream"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        assert_string_equal(http_static_content_type(cases[i][0]), cases[i][1]);
}

static const unsigned char A[] = "a", B[] = "b";
static const struct http_static_file files[] = {
    {"index.html", A, 1, "\"a\""},
    {"app.js", B, 1, "\"b\""},
};

static void test_find(void **st)
{
    assert_ptr_equal(http_static_find(files, 2, ""), &files[0]);
    assert_ptr_equal(http_static_find(files, 2, "index.html"), &files[0]);
    assert_ptr_equal(http_static_find(files, 2, "app.js"), &files[1]);
    const char *misses[] = {"../app.js", "./app.js", "/app.js", "sub/app.js", "app.js/", "APP.JS", "app.js ",
                            "..", ".", "/", "//", "app", "app.js\\", "%2e%2e/app.js", "index.htm", "/etc/passwd"};
    for (size_t i = 0; i < sizeof misses / sizeof misses[0]; i++)
        assert_null(http_static_find(files, 2, misses[i]));
    assert_null(http_static_find(files, 0, ""));
}

static void test_etag_matches(void **st)
{
    const char *tag = "\"abc\"";
    assert_true(http_static_etag_matches("\"abc\"", tag));
    assert_true(http_static_etag_matches("W/\"abc\"", tag));
    assert_true(http_static_etag_matches("\"x\", \"abc\"", tag));
    assert_true(http_static_etag_matches("\"x\",W/\"abc\"", tag));
    assert_true(http_static_etag_matches("*", tag));
    assert_false(http_static_etag_matches(NULL, tag));
    assert_false(http_static_etag_matches("", tag));
    assert_false(http_static_etag_matches("\"abcd\"", tag));
    assert_false(http_static_etag_matches("\"ab\"", tag));
    assert_false(http_static_etag_matches("abc", tag));
    assert_false(http_static_etag_matches("\"abc", tag));
    assert_false(http_static_etag_matches("\"x\", junk \"abc\"", tag));
}

/* The generated table: index.html is there, names are plain file names,
 * every file has a known type, a quoted hex ETag, and distinct ETags for
 * distinct contents. */
static void test_embedded_table(void **st)
{
    assert_true(web_client_files_count >= 4);
    const struct http_static_file *index = http_static_find(web_client_files, web_client_files_count, "");
    assert_non_null(index);
    assert_non_null(strstr((const char *)index->data, "<!doctype html>"));
    assert_non_null(http_static_find(web_client_files, web_client_files_count, "style.css"));
    assert_non_null(http_static_find(web_client_files, web_client_files_count, "app.js"));
    for (size_t i = 0; i < web_client_files_count; i++) {
        const struct http_static_file *f = &web_client_files[i];
        assert_null(strchr(f->name, '/'));
        assert_true(f->name[0] != '.');
        assert_string_not_equal(http_static_content_type(f->name), "application/octet-stream");
        assert_int_equal(strlen(f->etag), 34);
        assert_true(f->etag[0] == '"' && f->etag[33] == '"');
        assert_int_equal(strspn(f->etag + 1, "0123456789abcdef"), 32);
        assert_true(f->len > 0);
        assert_int_equal(f->data[f->len], 0); /* NUL after the contents */
        for (size_t j = 0; j < i; j++) {
            assert_string_not_equal(web_client_files[j].name, f->name);
            if (web_client_files[j].len != f->len || memcmp(web_client_files[j].data, f->data, f->len) != 0)
                assert_string_not_equal(web_client_files[j].etag, f->etag);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_content_types),
        cmocka_unit_test(test_find),
        cmocka_unit_test(test_etag_matches),
        cmocka_unit_test(test_embedded_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
