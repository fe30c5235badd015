/* Tests of src/obs/metrics: registration, updates and the text format. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "obs/metrics.h"

/* Renders m and returns the part after the process_* metrics (heap). */
static char *render_app(struct metrics *m)
{
    struct buf b;
    buf_init(&b, 0);
    assert_int_equal(metrics_render(m, &b), 0);
    const char *s = buf_cstr(&b);
    /* process metrics come first; skip every line block starting with process_ */
    const char *p = s;
    while (strncmp(p, "# HELP process_", 15) == 0 || strncmp(p, "# TYPE process_", 15) == 0 ||
           strncmp(p, "process_", 8) == 0) {
        p = strchr(p, '\n');
        assert_non_null(p);
        p++;
    }
    char *out = strdup(p);
    buf_release(&b);
    return out;
}

static void test_counter_gauge(void **st)
{
    struct metrics m;
    metrics_init(&m);
    struct metric *c = metrics_counter(&m, "t_requests_total", "Requests.\nSecond \\ line.", NULL, NULL);
    struct metric *g = metrics_gauge(&m, "t_conns", "Open connections.", NULL, NULL);
    metrics_inc(c);
    metrics_add(c, 2.5);
    metrics_add(c, -7); /* ignored for counters */
    metrics_set(g, 10);
    metrics_add(g, -3);
    metrics_inc(NULL); /* no-op */
    assert_true(metrics_value(c, NULL, NULL) == 3.5);
    char *s = render_app(&m);
    assert_string_equal(s, "# HELP t_conns Open connections.\n"
                           "# TYPE t_conns gauge\n"
                           "t_conns 7\n"
                           "# HELP t_requests_total Requests.\\nSecond \\\\ line.\n"
                           "# TYPE t_requests_total counter\n"
                           "t_requests_total 3.5\n");
    free(s);
    metrics_release(&m);
}

static void test_labels(void **st)
{
    struct metrics m;
    metrics_init(&m);
    struct metric *c = metrics_counter(&m, "t_payloads", "Payloads.", "payload_type", NULL);
    struct metric *g = metrics_gauge(&m, "t_two", "Two labels.", "a", "b");
    struct metric *unused = metrics_counter(&m, "t_unused", "Never used.", "x", NULL);
    (void)unused;
    metrics_add_l(c, "V2Typing", NULL, 1);
    metrics_add_l(c, "V2Accumulate", NULL, 2);
    metrics_add_l(c, "V2Typing", NULL, 1);
    metrics_add_l(c, "quote\"back\\slash\nnl", NULL, 1);
    metrics_set_l(g, "x", "y", 0.25);
    metrics_set_l(g, "x", "", -1);
    char *s = render_app(&m);
    assert_string_equal(s, "# HELP t_payloads Payloads.\n"
                           "# TYPE t_payloads counter\n"
                           "t_payloads{payload_type=\"V2Accumulate\"} 2\n"
                           "t_payloads{payload_type=\"V2Typing\"} 2\n"
                           "t_payloads{payload_type=\"quote\\\"back\\\\slash\\nnl\"} 1\n"
                           "# HELP t_two Two labels.\n"
                           "# TYPE t_two gauge\n"
                           "t_two{a=\"x\",b=\"\"} -1\n"
                           "t_two{a=\"x\",b=\"y\"} 0.25\n");
    free(s);
    metrics_release(&m);
}

static void test_histogram(void **st)
{
    struct metrics m;
    metrics_init(&m);
    static const double bk[] = {0, 1, 2.5};
    struct metric *h = metrics_histogram(&m, "t_size", "Sizes.", bk, 3, NULL, NULL);
    struct metric *hl = metrics_histogram(&m, "t_dur_secs", "Durations.", bk, 3, "initial", NULL);
    metrics_observe(h, 0);   /* le 0 */
    metrics_observe(h, 1);   /* le 1 (bounds are inclusive) */
    metrics_observe(h, 0.5); /* le 1 */
    metrics_observe(h, 7);   /* +Inf only */
    metrics_observe_l(hl, "1", NULL, 2.5);
    assert_int_equal(metrics_count(h, NULL, NULL), 4);
    char *s = render_app(&m);
    assert_string_equal(s, "# HELP t_dur_secs Durations.\n"
                           "# TYPE t_dur_secs histogram\n"
                           "t_dur_secs_bucket{initial=\"1\",le=\"0\"} 0\n"
                           "t_dur_secs_bucket{initial=\"1\",le=\"1\"} 0\n"
                           "t_dur_secs_bucket{initial=\"1\",le=\"2.5\"} 1\n"
                           "t_dur_secs_bucket{initial=\"1\",le=\"+Inf\"} 1\n"
                           "t_dur_secs_sum{initial=\"1\"} 2.5\n"
                           "t_dur_secs_count{initial=\"1\"} 1\n"
                           "# HELP t_size Sizes.\n"
                           "# TYPE t_size histogram\n"
                           "t_size_bucket{le=\"0\"} 1\n"
                           "t_size_bucket{le=\"1\"} 3\n"
                           "t_size_bucket{le=\"2.5\"} 3\n"
                           "t_size_bucket{le=\"+Inf\"} 4\n"
                           "t_size_sum 8.5\n"
                           "t_size_count 4\n");
    free(s);
    metrics_release(&m);
}

static void test_syncv3_set(void **st)
{
    struct metrics *m = metrics_new();
    metrics_observe_l(m->poller_process_duration_secs, "1", "0", 0.007);
    metrics_observe_l(m->poller_timeline_size, "limited", NULL, 3);
    metrics_add_l(m->poller_num_payloads, "V2Accumulate", NULL, 1);
    metrics_set(m->api_num_active_conns, 4);
    struct buf b;
    buf_init(&b, 0);
    assert_int_equal(metrics_render(m, &b), 0);
    const char *s = buf_cstr(&b);
    const char *want[] = {
        "# TYPE sliding_sync_poller_num_pollers gauge\nsliding_sync_poller_num_pollers 0\n",
        "# TYPE sliding_sync_poller_num_outstanding_sync_v2_reqs gauge\n",
        "# TYPE sliding_sync_poller_total_num_polls counter\nsliding_sync_poller_total_num_polls 0\n",
        "sliding_sync_poller_process_duration_secs_bucket{initial=\"1\",first=\"0\",le=\"0.005\"} 0\n"
        "sliding_sync_poller_process_duration_secs_bucket{initial=\"1\",first=\"0\",le=\"0.01\"} 1\n",
        "sliding_sync_poller_process_duration_secs_bucket{initial=\"1\",first=\"0\",le=\"10\"} 1\n"
        "sliding_sync_poller_process_duration_secs_bucket{initial=\"1\",first=\"0\",le=\"+Inf\"} 1\n",
        "sliding_sync_poller_timeline_size_bucket{limited=\"limited\",le=\"2\"} 0\n"
        "sliding_sync_poller_timeline_size_bucket{limited=\"limited\",le=\"5\"} 1\n",
        "sliding_sync_poller_gappy_state_size_bucket{le=\"10000\"} 0\n",
        "sliding_sync_poller_num_payloads{payload_type=\"V2Accumulate\"} 1\n",
        "# TYPE sliding_sync_api_num_devices_pending_ensure_polling gauge\n",
        "sliding_sync_api_num_active_conns 4\n",
        "# TYPE sliding_sync_api_expiry_conn_timed_out counter\n",
        "# TYPE sliding_sync_api_expiry_conn_buffer_full counter\n",
        "# TYPE sliding_sync_api_destroyed_conns counter\n",
        "# TYPE sliding_sync_api_slow_requests counter\n",
        "# TYPE process_cpu_seconds_total counter\n",
        "# TYPE process_resident_memory_bytes gauge\n",
        "# TYPE process_start_time_seconds gauge\n",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        if (!strstr(s, want[i])) fail_msg("missing: %s", want[i]);
    }
    /* labelled families without series are not rendered */
    assert_null(strstr(s, "sliding_sync_api_num_payloads"));
    assert_null(strstr(s, "sliding_sync_api_setup_duration_secs"));
    /* a bounded buffer too small gets nothing */
    struct buf small;
    buf_init(&small, 100);
    assert_int_equal(metrics_render(m, &small), -1);
    assert_int_equal(small.len, 0);
    buf_release(&small);
    buf_release(&b);
    metrics_free(m);
    metrics_free(NULL);
}

static void *hammer(void *arg)
{
    struct metrics *m = arg;
    char lv[8];
    for (int i = 0; i < 20000; i++) {
        metrics_inc(m->poller_total_num_polls);
        snprintf(lv, sizeof lv, "t%d", i % 5);
        metrics_add_l(m->poller_num_payloads, lv, NULL, 1);
        metrics_observe_l(m->api_process_duration_secs, i % 2 ? "1" : "0", NULL, 0.001);
    }
    return NULL;
}

static void test_threads(void **st)
{
    struct metrics *m = metrics_new();
    pthread_t t[4];
    for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, hammer, m);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    assert_true(metrics_value(m->poller_total_num_polls, NULL, NULL) == 80000);
    assert_true(metrics_value(m->poller_num_payloads, "t3", NULL) == 16000);
    assert_int_equal(metrics_count(m->api_process_duration_secs, "1", NULL), 40000);
    metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counter_gauge), cmocka_unit_test(test_labels), cmocka_unit_test(test_histogram),
        cmocka_unit_test(test_syncv3_set),    cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
