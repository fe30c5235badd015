/* Unit tests of src/base: the bounded buffer, config loading, token crypto. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/config.h"
#include "base/crypto.h"
#include "base/hash.h"
#include "base/jsonx.h"
#include "base/log.h"

static void test_buf_bounded(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 8);
    assert_int_equal(buf_puts(&b, "abcd"), 0);
    assert_int_equal(buf_puts(&b, "efgh"), 0);
    assert_int_equal(buf_puts(&b, "i"), -1); /* past max: refused, unchanged */
    assert_string_equal(buf_cstr(&b), "abcdefgh");
    assert_int_equal(buf_printf(&b, "%d", 1), -1);
    buf_truncate(&b, 2);
    assert_string_equal(buf_cstr(&b), "ab");
    size_t len;
    char *s = buf_detach(&b, &len);
    assert_int_equal(len, 2);
    assert_string_equal(s, "ab");
    free(s);
    assert_int_equal(b.len, 0);
    buf_release(&b);
}

static void test_buf_json_escaping(void **state)
{
    (void)state;
    struct buf b = BUF_INIT;
    const char in[] = "a\"b\\c\n\t\x01z";
    assert_int_equal(buf_json_str(&b, in, sizeof in - 1), 0);
    assert_string_equal(buf_cstr(&b), "\"a\\\"b\\\\c\\n\\t\\u0001z\"");
    buf_release(&b);
    /* A bounded buffer that cannot hold the escaped form is left unchanged. */
    buf_init(&b, 6);
    buf_puts(&b, "x");
    assert_int_equal(buf_json_str(&b, "\"\"\"", 3), -1);
    assert_string_equal(buf_cstr(&b), "x");
    buf_release(&b);
}

/* A fake environment for config_load. */
static const char *const *fake_env;

static const char *fake_get(const char *name)
{
    for (const char *const *e = fake_env; *e; e += 2)
        if (strcmp(e[0], name) == 0) return e[1];
    return NULL;
}

static enum config_result load(const char *const *env, struct config *c, char **err)
{
    fake_env = env;
    return config_load(c, fake_get, err);
}

static void test_config_defaults_and_required(void **state)
{
    (void)state;
    struct config c;
    char *err;
    const char *none[] = {NULL};
    assert_int_equal(load(none, &c, &err), CONFIG_MISSING);
    assert_string_equal(err, "SYNCV3_SERVER is not set");
    free(err);
    config_release(&c);

    const char *ok[] = {"SYNCV3_SERVER", "https://hs.example.org/", "SYNCV3_DB", "dbname=x", "SYNCV3_SECRET", "s",
                        NULL};
    assert_int_equal(load(ok, &c, &err), CONFIG_OK);
    assert_string_equal(c.server, "https://hs.example.org"); /* trailing slash dropped */
    assert_false(c.server_is_unix);
    assert_string_equal(c.bind_host, "0.0.0.0");
    assert_int_equal(c.bind_port, 8008);
    assert_int_equal(c.log_level, LOG_INFO);
    assert_int_equal(c.http_timeout_secs, 300);
    assert_int_equal(c.http_initial_timeout_secs, 1800);
    assert_null(c.tls_cert);
    config_release(&c);

    const char *unix_env[] = {"SYNCV3_SERVER", "/run/hs.sock", "SYNCV3_DB", "x", "SYNCV3_SECRET", "s",
                              "SYNCV3_BINDADDR", "/run/syncv3.sock", "SYNCV3_LOG_LEVEL", "ERR",
                              "SYNCV3_MAX_DB_CONN", "3", NULL};
    assert_int_equal(load(unix_env, &c, &err), CONFIG_OK);
    assert_true(c.server_is_unix);
    assert_true(c.bind_is_unix);
    assert_int_equal(c.log_level, LOG_ERROR);
    assert_int_equal(c.max_db_conn, 3);
    config_release(&c);
}

static void test_config_invalid(void **state)
{
    (void)state;
    static const char *const cases[][2] = {
        {"SYNCV3_SERVER", "ftp://x"},      {"SYNCV3_BINDADDR", "nohostport"}, {"SYNCV3_BINDADDR", "h:99999"},
        {"SYNCV3_TLS_CERT", "cert.pem"},   {"SYNCV3_LOG_LEVEL", "loudest"},   {"SYNCV3_MAX_DB_CONN", "ten"},
        {"SYNCV3_MAX_DB_CONN", "-1"},      {"SYNCV3_OTLP_URL", "http://c:4318/v1"},
        {"SYNCV3_PROM", "2112"},           {"SYNCV3_OTLP_USERNAME", "u"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *env[] = {"SYNCV3_SERVER", "http://hs:8008", "SYNCV3_DB", "x", "SYNCV3_SECRET", "s",
                             cases[i][0], cases[i][1], NULL};
        /* Later entries do not override earlier ones in fake_get: put the case first. */
        const char *env2[] = {cases[i][0], cases[i][1], env[0], env[1], env[2], env[3], env[4], env[5], NULL};
        struct config c;
        char *err = NULL;
        assert_int_equal(load(env2, &c, &err), CONFIG_INVALID);
        assert_non_null(err);
        assert_non_null(strstr(err, cases[i][0]));
        assert_null(strchr(err, '\n'));
        free(err);
        config_release(&c);
    }
}

static void test_crypto_round_trip(void **state)
{
    (void)state;
    char hex[SHA256_HEX_LEN + 1];
    crypto_sha256_hex("abc", 3, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");

    struct token_key k, other;
    crypto_key_from_secret(&k, "secret one");
    crypto_key_from_secret(&other, "secret two");
    char *a = crypto_encrypt_token(&k, "syt_token");
    char *b = crypto_encrypt_token(&k, "syt_token");
    assert_non_null(a);
    assert_string_not_equal(a, b); /* a fresh nonce each time */
    assert_null(strstr(a, "syt_token"));
    char *p = crypto_decrypt_token(&k, a);
    assert_string_equal(p, "syt_token");
    free(p);
    assert_null(crypto_decrypt_token(&other, a)); /* wrong secret: refused, not garbage */
    a[strlen(a) - 1] = a[strlen(a) - 1] == '0' ? '1' : '0';
    assert_null(crypto_decrypt_token(&k, a)); /* tampered */
    assert_null(crypto_decrypt_token(&k, "not a token"));
    assert_null(crypto_decrypt_token(&k, ""));
    free(a);
    free(b);
}

static void test_log_levels(void **state)
{
    (void)state;
    enum log_level l;
    assert_int_equal(log_level_parse("TRACE", &l), 0);
    assert_int_equal(l, LOG_TRACE);
    assert_int_equal(log_level_parse("err", &l), 0);
    assert_int_equal(l, LOG_ERROR);
    assert_int_equal(log_level_parse("warning", &l), -1);
}

static void test_jsonx_big_integers(void **state)
{
    (void)state;
    const char *doc = "{\"a\":123456789012345678901234,\"s\":\"99999999999999999999999\",\"n\":-5,"
                      "\"b\":[-123456789012345678901234],\"t\":1700000000000,\"e\":\"x\\\"1\"}";
    json_error_t err;
    assert_null(json_loadb(doc, strlen(doc), 0, &err)); /* jansson alone refuses it */
    json_t *j = jsonx_loadb(doc, strlen(doc), 0, &err);
    assert_non_null(j);
    assert_true(json_is_real(json_object_get(j, "a")));
    assert_true(json_real_value(json_object_get(j, "a")) > 1e23);
    assert_true(json_real_value(json_array_get(json_object_get(j, "b"), 0)) < -1e23);
    assert_string_equal(json_string_value(json_object_get(j, "s")), "99999999999999999999999"); /* strings untouched */
    assert_int_equal(json_integer_value(json_object_get(j, "n")), -5);
    assert_int_equal(json_integer_value(json_object_get(j, "t")), 1700000000000LL);
    assert_string_equal(json_string_value(json_object_get(j, "e")), "x\"1");
    json_decref(j);
    assert_null(jsonx_loadb("{\"a\":", 5, 0, &err)); /* still an error when truly broken */
}

/* Keys of every length around the 8-byte steps hash alike however they are
 * laid out in memory, differ from their neighbours, and uthash's tables use
 * the same function (so a hash kept from one table serves the others). */
static void test_hash_bytes(void **state)
{
    (void)state;
    char a[80], b[96];
    for (size_t len = 0; len < 70; len++) {
        for (size_t i = 0; i < len; i++) a[i] = (char)('a' + (i * 7 + len) % 26);
        memcpy(b + 3, a, len); /* an unaligned copy */
        assert_int_equal(hash_bytes(a, len), hash_bytes(b + 3, len));
        if (len) {
            char saved = a[len - 1];
            a[len - 1] = (char)(saved ^ 1); /* the last byte counts */
            uint32_t h1 = hash_bytes(a, len);
            a[len - 1] = saved;
            assert_int_not_equal(h1, hash_bytes(a, len));
            assert_int_not_equal(hash_bytes(a, len), hash_bytes(a, len - 1)); /* so does the length */
        }
        unsigned hv;
        HASH_VALUE(a, len, hv);
        assert_int_equal(hv, hash_bytes(a, len));
    }
    struct item {
        const char *k;
        UT_hash_handle hh;
    } x = {.k = "!room:example.org"}, *h = NULL, *found = NULL;
    HASH_ADD_KEYPTR_BYHASHVALUE(hh, h, x.k, strlen(x.k), hash_bytes(x.k, strlen(x.k)), &x);
    HASH_FIND_STR(h, "!room:example.org", found);
    assert_ptr_equal(found, &x);
    HASH_CLEAR(hh, h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buf_bounded),      cmocka_unit_test(test_buf_json_escaping),
        cmocka_unit_test(test_config_defaults_and_required), cmocka_unit_test(test_config_invalid),
        cmocka_unit_test(test_crypto_round_trip), cmocka_unit_test(test_log_levels), cmocka_unit_test(test_jsonx_big_integers),
        cmocka_unit_test(test_hash_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
