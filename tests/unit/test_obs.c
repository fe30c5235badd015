/* Unit tests of src/obs telemetry: Sentry DSNs, crash report files, the
 * bounded outbox, trace ids. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "obs/crash.h"
#include "obs/metrics.h"
#include "obs/outbox.h"
#include "obs/sentry.h"
#include "obs/trace.h"

static void test_dsn_parse(void **state)
{
    (void)state;
    struct sentry_dsn d;
    assert_int_equal(sentry_dsn_parse("https://abc123@o1.ingest.sentry.io/4567", &d), 0);
    assert_string_equal(d.envelope_url, "https://o1.ingest.sentry.io/api/4567/envelope/");
    assert_string_equal(d.public_key, "abc123");
    assert_null(d.secret_key);
    assert_string_equal(d.project, "4567");
    sentry_dsn_release(&d);

    assert_int_equal(sentry_dsn_parse("http://pub:sec@127.0.0.1:9000/sentry/7/", &d), 0);
    assert_string_equal(d.envelope_url, "http://127.0.0.1:9000/sentry/api/7/envelope/");
    assert_string_equal(d.public_key, "pub");
    assert_string_equal(d.secret_key, "sec");
    assert_string_equal(d.project, "7");
    sentry_dsn_release(&d);

    const char *bad[] = {"https://o1.ingest.sentry.io/4567", /* no key */
                         "https://@host/1",                  /* empty key */
                         "https://key@host",                 /* no project */
                         "https://key@host/",                /* empty project */
                         "ftp://key@host/1",                 /* scheme */
                         "https://key@/1",                   /* no host */
                         "https://key@host/1?x=y",           /* query */
                         "https://key@host/a%20b",           /* odd project */
                         "httpx://key@host/1",
                         ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(sentry_dsn_parse(bad[i], &d), -1);
        assert_null(d.envelope_url);
    }
}

static char *write_tmp(const char *dir, const char *name, const char *text)
{
    char *path = NULL;
    assert_true(asprintf(&path, "%s/%s", dir, name) > 0);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static void test_crash_files(void **state)
{
    (void)state;
    char dir[] = "/tmp/syncv3-unit-crash-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char *a = write_tmp(dir, "syncv3-crash-1700000002-12.txt",
                        "syncv3-crash 1\nrelease=syncv3@9.9.9\nsignal=11\ncode=1\naddr=0x10\ntime=1700000002\n"
                        "pid=12\ntid=13\nframes:\n/usr/bin/syncv3(+0x4e516)[0x55ac208f1516]\n"
                        "/lib/libc.so.6(poll+0x4f)[0x7faa3d31a26f]\n/usr/bin/syncv3(main+0x1c)[0x55ac208a8ebc]\n");
    char *b = write_tmp(dir, "syncv3-crash-1700000001-11.txt", "not a report\n");
    char *c = write_tmp(dir, ".syncv3-crash-14.tmp", "syncv3-crash 1\nsignal=6\n"); /* being written */
    char *d = write_tmp(dir, "other.txt", "x");

    char **files = crash_pending(dir);
    assert_non_null(files[0]);
    assert_string_equal(files[0], b); /* oldest first */
    assert_string_equal(files[1], a);
    assert_null(files[2]);
    for (char **f = files; *f; f++) free(*f);
    free(files);

    assert_null(crash_read_event(b));
    json_t *ev = crash_read_event(a);
    assert_non_null(ev);
    assert_string_equal(json_string_value(json_object_get(ev, "level")), "fatal");
    assert_string_equal(json_string_value(json_object_get(ev, "release")), "syncv3@9.9.9");
    assert_int_equal(json_integer_value(json_object_get(ev, "timestamp")), 1700000002);
    json_t *exc = json_array_get(json_object_get(json_object_get(ev, "exception"), "values"), 0);
    assert_string_equal(json_string_value(json_object_get(exc, "type")), "SIGSEGV");
    json_t *frames = json_object_get(json_object_get(exc, "stacktrace"), "frames");
    assert_int_equal(json_array_size(frames), 3);
    /* Outermost first: main, then poll, then the crashing frame. */
    json_t *f0 = json_array_get(frames, 0), *f2 = json_array_get(frames, 2);
    assert_string_equal(json_string_value(json_object_get(f0, "function")), "main");
    assert_string_equal(json_string_value(json_object_get(f0, "package")), "/usr/bin/syncv3");
    assert_string_equal(json_string_value(json_object_get(f2, "instruction_addr")), "0x55ac208f1516");
    assert_string_equal(json_string_value(json_object_get(f2, "symbol")), "+0x4e516");
    assert_null(json_object_get(f2, "function"));
    json_decref(ev);

    const char *paths[] = {a, b, c, d};
    for (size_t i = 0; i < 4; i++) {
        unlink(paths[i]);
        free((char *)paths[i]);
    }
    rmdir(dir);
}

/* An outbox whose sender records what it got. */
struct sink {
    size_t calls;     /* send calls */
    size_t items;     /* items received */
    size_t lose;      /* report this many of each batch as lost */
};

static size_t sink_send(void *ud, struct outbox *b, void **items, size_t n)
{
    struct sink *s = ud;
    s->calls++;
    s->items += n;
    for (size_t i = 0; i < n; i++) free(items[i]);
    return s->lose < n ? s->lose : n;
}

static void test_outbox_bounded_and_flushed(void **state)
{
    (void)state;
    struct metrics m;
    metrics_init(&m);
    struct metric *dropped = metrics_counter(&m, "t_dropped_total", "", NULL, NULL);
    struct sink s = {0};
    struct outbox *b;
    /* A long linger keeps everything queued until the outbox stops. */
    struct outbox_opts o = {.name = "t", .cap = 3, .batch = 2, .linger_ms = 60000, .send = sink_send,
                            .free_item = free, .ud = &s, .dropped = dropped};
    assert_int_equal(outbox_new(&b, &o), 0);
    int ok = 0;
    for (int i = 0; i < 5; i++) ok += outbox_push(b, malloc(8));
    assert_int_equal(ok, 3);
    assert_true(metrics_value(dropped, NULL, NULL) == 2);
    outbox_free(b); /* hands the 3 queued items over in batches of 2 */
    assert_int_equal(s.items, 3);
    assert_int_equal(s.calls, 2);

    /* A failing receiver at shutdown: one attempt, the rest dropped. */
    s = (struct sink){.lose = 2};
    assert_int_equal(outbox_new(&b, &o), 0);
    for (int i = 0; i < 3; i++) outbox_push(b, malloc(8));
    outbox_free(b);
    assert_int_equal(s.calls, 1);
    assert_true(metrics_value(dropped, NULL, NULL) == 2 + 3);
    metrics_release(&m);
}

static void test_trace_off(void **state)
{
    (void)state;
    struct trace_ctx c;
    memset(&c, 0xff, sizeof c);
    assert_false(trace_on);
    assert_false(trace_ctx_new(&c, NULL));
    char hex[33];
    assert_string_equal(trace_ctx_hex(&c, hex), "00000000000000000000000000000000");
    /* Not started: nothing to do, nothing crashes. */
    trace_emit(NULL, NULL, 0, "x", TRACE_INTERNAL, NULL, TRACE_ATTRS(TRACE_STR("k", "v"), TRACE_INT("n", 1)));
    trace_stop();
    SENTRY_HTTP_ERROR(500, "GET", "/", NULL, NULL);
    sentry_http_error(500, "GET", "/", NULL, NULL);
    sentry_stop();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dsn_parse),
        cmocka_unit_test(test_crash_files),
        cmocka_unit_test(test_outbox_bounded_and_flushed),
        cmocka_unit_test(test_trace_off),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
