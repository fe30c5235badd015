"""SYNCV3_PROM serves Prometheus metrics (docs/behaviour.md, "Metrics")."""

import fakehs as F
from helpers import metric_sum, metric_value, wait_until

NAMES = ["sliding_sync_poller_num_pollers", "sliding_sync_poller_num_payloads",
         "sliding_sync_api_num_active_conns", "sliding_sync_poller_process_duration_secs",
         "sliding_sync_api_process_duration_secs"]


def start(proxy, user):
    user.queue(F.sync_response(join={F.new_room_id(): F.joined_room(
        F.room_state(user.user_id, "Room"), [F.message(user.user_id, "hello")])}))
    c = proxy.client(user.token)
    c.sync({"lists": {"a": {"ranges": [[0, 9]]}}})
    user.wait_idle()
    return c


def test_metrics_endpoint_before_any_client(proxy):
    status, text = proxy.metrics()
    assert status == 200
    assert metric_value(text, "sliding_sync_poller_num_pollers") == 0
    assert metric_value(text, "sliding_sync_api_num_active_conns") == 0


def test_metric_names_and_values(proxy, hs, alice, bob):
    start(proxy, alice)
    status, text = proxy.metrics()
    assert status == 200
    for name in NAMES:
        assert name in text, "metric %s missing:\n%s" % (name, text)
    assert "# TYPE sliding_sync_poller_process_duration_secs histogram" in text
    assert "# TYPE sliding_sync_api_process_duration_secs histogram" in text
    assert "# TYPE sliding_sync_poller_num_pollers gauge" in text
    assert "# TYPE sliding_sync_api_num_active_conns gauge" in text
    assert "# TYPE sliding_sync_poller_num_payloads counter" in text
    assert metric_value(text, "sliding_sync_poller_num_pollers") == 1
    assert metric_value(text, "sliding_sync_api_num_active_conns") == 1
    assert metric_sum(text, "sliding_sync_poller_process_duration_secs_count") >= 1
    assert metric_sum(text, "sliding_sync_api_process_duration_secs_count") >= 1
    assert metric_sum(text, "sliding_sync_poller_num_payloads") >= 1

    start(proxy, bob)
    text = proxy.metrics()[1]
    assert metric_value(text, "sliding_sync_poller_num_pollers") == 2
    assert metric_value(text, "sliding_sync_api_num_active_conns") == 2

    hs.revoke(alice.token)
    wait_until(lambda: metric_value(proxy.metrics()[1], "sliding_sync_poller_num_pollers") == 1,
               timeout=20, what="num_pollers back to 1 after alice's token expired")
