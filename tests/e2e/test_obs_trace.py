"""Traces: OTLP/HTTP JSON export (SYNCV3_OTLP_URL, SYNCV3_JAEGER_URL) to a fake collector."""

import re
import socket
import time

import pytest

import fakehs as F
from fakeobs import FakeCollector, basic_auth
from helpers import REPO, metric_value, wait_until

VERSION = (REPO / "VERSION").read_text().strip()
SECRET_TEXT = "the-body-of-a-private-message"


@pytest.fixture
def collector():
    c = FakeCollector().start()
    yield c
    c.stop()


def one_room(user):
    rid = F.new_room_id()
    user.queue(F.sync_response(join={rid: F.joined_room(
        F.room_state(user.user_id, "Traced room"), [F.message(user.user_id, SECRET_TEXT)])}))
    return rid


def test_request_poll_and_ingest_spans(make_proxy, collector, alice):
    proxy = make_proxy(extra_env={"SYNCV3_OTLP_URL": collector.url, "SYNCV3_OTLP_USERNAME": "otel",
                                  "SYNCV3_OTLP_PASSWORD": "s3cret"})
    one_room(alice)
    c = proxy.client(alice.token)
    body = c.sync({"conn_id": "phone", "lists": {"a": {"ranges": [[0, 9]], "timeline_limit": 5},
                                                 "b": {"ranges": [[0, 0]]}}})
    assert body["lists"]["a"]["count"] == 1
    alice.wait_idle()
    # A long-poll that times out: its time is spent waiting.
    h = c.request({"conn_id": "phone"}, pos=c.pos, timeout=3000)
    assert h.status == 200, h

    req = collector.wait_spans("sliding_sync", lambda s: s.attrs.get("initial") == 1)[0]
    poll = collector.wait_spans("sync_v2_poll", lambda s: s.attrs.get("rooms") == 1)[0]
    ingest = collector.wait_spans("ingest", lambda s: s.parent_id == poll.span_id)[0]

    for s in (req, poll, ingest):
        assert re.fullmatch(r"[0-9a-f]{32}", s.trace_id), s
        assert re.fullmatch(r"[0-9a-f]{16}", s.span_id), s
        assert isinstance(s.raw["startTimeUnixNano"], str) and isinstance(s.raw["endTimeUnixNano"], str)
        assert 0 <= s.end_ns - s.start_ns < 60e9, s
        assert abs(s.end_ns / 1e9 - time.time()) < 120, s
        assert s.resource["service.name"] == "syncv3"
        assert s.resource["service.version"] == VERSION

    assert req.kind == 2 and poll.kind == 3 and ingest.kind == 1
    assert req.parent_id is None and poll.parent_id is None
    assert ingest.trace_id == poll.trace_id, (ingest, poll)
    assert req.attrs["user_id"] == alice.user_id
    assert req.attrs["device_id"] == alice.device_id
    assert req.attrs["conn_id"] == "phone"
    assert req.attrs["lists"] == 2
    assert req.attrs["rooms"] == 1
    assert req.attrs["http.status_code"] == 200
    assert req.attrs["wait_ms"] >= 0 and req.attrs["compute_ms"] >= 0
    assert poll.attrs["device_id"] == alice.device_id
    assert poll.attrs["since"] == "" and poll.attrs["initial"] == 1
    assert poll.attrs["bytes"] > 100 and poll.attrs["events"] >= 3
    assert ingest.attrs["rooms"] == 1 and ingest.attrs["events"] >= 3
    assert "status" not in ingest.raw or ingest.status.get("code") != 2

    # The long-poll that timed out spent its time waiting.
    longpoll = collector.wait_spans("sliding_sync", lambda s: s.attrs.get("initial") == 0)[0]
    assert longpoll.attrs["wait_ms"] >= 2500, longpoll
    assert longpoll.attrs["compute_ms"] < longpoll.attrs["wait_ms"], longpoll

    # Every span request went to /v1/traces with basic auth.
    for path, headers, _ in collector.requests:
        assert path == "/v1/traces"
        assert basic_auth(headers) == ("otel", "s3cret"), headers
        assert headers.get("Content-Type") == "application/json"

    # The request's log line carries its trace id.
    logged = re.findall(r"POST /_matrix/client/unstable/org.matrix.msc3575/sync status=200 .*trace=([0-9a-f]{32})",
                        proxy.stderr())
    assert req.trace_id in logged, logged
    # No token and no message content in what was sent.
    raw = b"".join(body for _, _, body in collector.requests)
    assert alice.token.encode() not in raw
    assert SECRET_TEXT.encode() not in raw

    text = proxy.metrics()[1]
    assert metric_value(text, "sliding_sync_trace_spans_exported_total") >= 3
    assert metric_value(text, "sliding_sync_trace_spans_dropped_total") == 0


def test_failed_request_span_and_legacy_jaeger_variable(make_proxy, collector, hs, alice):
    proxy = make_proxy(extra_env={"SYNCV3_JAEGER_URL": collector.url})
    hs.fail_next(alice.token, "status", status=500, endpoint="whoami")
    r = proxy.client(alice.token).request({})
    assert r.status == 502, r
    span = collector.wait_spans("sliding_sync", lambda s: s.attrs.get("http.status_code") == 502)[0]
    assert span.status.get("code") == 2, span.raw
    assert "user_id" not in span.attrs
    assert "SYNCV3_JAEGER_URL is the old name" in proxy.stderr()


def test_down_collector_drops_and_counts_without_slowing_requests(make_proxy, alice):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = "http://127.0.0.1:%d" % s.getsockname()[1]
    proxy = make_proxy(extra_env={"SYNCV3_OTLP_URL": dead})
    one_room(alice)
    c = proxy.client(alice.token)
    c.sync({"lists": {"a": {"ranges": [[0, 9]]}}})
    for _ in range(5):
        c.reset()
        r = c.request({"lists": {"a": {"ranges": [[0, 9]]}}}, timeout=100)
        assert r.status == 200 and r.elapsed < 2.0, r
    wait_until(lambda: metric_value(proxy.metrics()[1], "sliding_sync_trace_spans_dropped_total") >= 6,
               timeout=20, what="dropped spans counted")
    assert metric_value(proxy.metrics()[1], "sliding_sync_trace_spans_exported_total") == 0
    assert "cannot reach %s/v1/traces" % dead in proxy.stderr()


def test_hanging_collector_does_not_hold_requests_or_shutdown(make_proxy, collector, alice):
    collector.delay = 30.0
    proxy = make_proxy(extra_env={"SYNCV3_OTLP_URL": collector.url})
    one_room(alice)
    c = proxy.client(alice.token)
    c.sync({"lists": {"a": {"ranges": [[0, 9]]}}})
    collector.wait_for(lambda: collector.requests, what="a first export")
    for _ in range(3):
        c.reset()
        r = c.request({"lists": {"a": {"ranges": [[0, 9]]}}}, timeout=100)
        assert r.status == 200 and r.elapsed < 2.0, r
    t0 = time.monotonic()
    proxy.stop()
    assert time.monotonic() - t0 < 15, "shutdown waited for the collector"
