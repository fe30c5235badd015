"""SYNCV3_PROM serves Prometheus metrics: the Go proxy's names, types, labels and buckets, each
moving when its event happens; the README's queries and the Grafana dashboard name only
exported metrics (docs/behaviour.md, "Metrics")."""

import json
import re

import fakehs as F
from helpers import REPO, metric_sum, metric_value, run_in_thread, wait_until

DUR = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10"]
# name: (type, label names, histogram bucket bounds)
CATALOGUE = {
    "sliding_sync_poller_num_pollers": ("gauge", [], None),
    "sliding_sync_poller_num_outstanding_sync_v2_reqs": ("gauge", [], None),
    "sliding_sync_poller_total_num_polls": ("counter", [], None),
    "sliding_sync_poller_process_duration_secs": ("histogram", ["initial", "first"], DUR),
    "sliding_sync_poller_timeline_size": ("histogram", ["limited"], ["0", "1", "2", "5", "10", "20", "50"]),
    "sliding_sync_poller_gappy_state_size": ("histogram", [], ["1", "10", "100", "1000", "10000"]),
    "sliding_sync_poller_num_payloads": ("counter", ["payload_type"], None),
    "sliding_sync_api_num_payloads": ("counter", ["payload_type"], None),
    "sliding_sync_api_num_devices_pending_ensure_polling": ("gauge", [], None),
    "sliding_sync_api_num_active_conns": ("gauge", [], None),
    "sliding_sync_api_expiry_conn_timed_out": ("counter", [], None),
    "sliding_sync_api_expiry_conn_buffer_full": ("counter", [], None),
    "sliding_sync_api_destroyed_conns": ("counter", [], None),
    "sliding_sync_api_setup_duration_secs": ("histogram", ["initial"], DUR),
    "sliding_sync_api_process_duration_secs": ("histogram", ["initial"], DUR),
    "sliding_sync_api_slow_requests": ("counter", [], None),
    "sliding_sync_http_responses_total": ("counter", ["code"], None),
    "sliding_sync_poller_sync_failures_total": ("counter", ["code"], None),
    "sliding_sync_trace_spans_exported_total": ("counter", [], None),
    "sliding_sync_trace_spans_dropped_total": ("counter", [], None),
    "sliding_sync_sentry_events_sent_total": ("counter", [], None),
    "sliding_sync_sentry_events_dropped_total": ("counter", [], None),
    "process_resident_memory_bytes": ("gauge", [], None),
    "process_cpu_seconds_total": ("counter", [], None),
    "process_open_fds": ("gauge", [], None),
}


def parse(text):
    """{family: {"type": t, "samples": [(name, {label: value}, value)]}} from text format 0.0.4."""
    fams, types = {}, {}
    for line in text.splitlines():
        m = re.match(r"^# TYPE (\S+) (\S+)$", line)
        if m:
            types[m.group(1)] = m.group(2)
            fams[m.group(1)] = {"type": m.group(2), "samples": []}
            continue
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$", line)
        assert m, "unparsable sample line: %r" % line
        name, labels = m.group(1), dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        fam = name
        if fam not in fams:
            fam = re.sub(r"_(bucket|sum|count)$", "", name)
        assert fam in fams, "sample %s has no TYPE line" % name
        fams[fam]["samples"].append((name, labels, float(m.group(3))))
    return fams


def traffic(proxy, hs, user):
    """Enough traffic that every family has samples: a first request, a limited timeline
    with a state block (gappy), a left room, a request with pos."""
    rid = F.new_room_id()
    user.queue(F.sync_response(join={rid: F.joined_room(
        F.room_state(user.user_id, "Room"), [F.message(user.user_id, "hello")])}))
    c = proxy.client(user.token)
    c.sync({"lists": {"a": {"ranges": [[0, 9]]}}})
    gone = F.new_room_id()
    user.queue(F.sync_response(
        join={rid: F.joined_room(F.room_state(user.user_id, "Renamed"), [F.message(user.user_id, "x")],
                                 limited=True)},
        leave={gone: F.left_room([F.message(user.user_id, "bye")])}))
    user.wait_idle()
    c.sync({}, timeout=100)
    hs.fail_next(user.token, "status", count=1, status=502)
    user.queue(F.sync_response())  # ends the poll in flight; the next one fails
    wait_until(lambda: metric_sum(proxy.metrics()[1], "sliding_sync_poller_sync_failures_total"),
               timeout=20, what="a failed /sync counted")
    return c


def test_metrics_endpoint_before_any_client(proxy):
    status, text = proxy.metrics()
    assert status == 200
    assert metric_value(text, "sliding_sync_poller_num_pollers") == 0
    assert metric_value(text, "sliding_sync_api_num_active_conns") == 0


def test_every_metric_has_its_type_labels_and_buckets(proxy, hs, alice):
    traffic(proxy, hs, alice)
    fams = parse(proxy.metrics()[1])
    for name, (typ, labels, buckets) in CATALOGUE.items():
        assert name in fams, "metric %s missing; have %s" % (name, sorted(fams))
        assert fams[name]["type"] == typ, (name, fams[name]["type"], typ)
        samples = fams[name]["samples"]
        assert samples, "%s has no samples after traffic" % name
        for sname, got, _ in samples:
            keys = set(got) - ({"le"} if sname.endswith("_bucket") else set())
            assert keys == set(labels), (name, sname, got, labels)
        if buckets:
            series = {}
            for sname, got, _ in samples:
                if sname == name + "_bucket":
                    series.setdefault(tuple(got.get(l) for l in labels), []).append(got["le"])
            assert series, name
            for les in series.values():
                assert les == buckets + ["+Inf"], (name, les)
    assert metric_value(proxy.metrics()[1], "sliding_sync_poller_gappy_state_size_count") >= 1
    left = metric_value(proxy.metrics()[1], "sliding_sync_poller_timeline_size_count", {"limited": "unlimited"})
    assert left >= 2, "the left room's timeline counts too"
    assert metric_value(proxy.metrics()[1], "sliding_sync_poller_sync_failures_total", {"code": "502"}) == 1
    assert metric_value(proxy.metrics()[1], "sliding_sync_http_responses_total", {"code": "200"}) >= 2


def test_pollers_conns_and_expiry(proxy, hs, alice, bob):
    traffic(proxy, hs, alice)
    text = proxy.metrics()[1]
    assert metric_value(text, "sliding_sync_poller_num_pollers") == 1
    assert metric_value(text, "sliding_sync_api_num_active_conns") == 1
    assert metric_sum(text, "sliding_sync_poller_num_payloads") >= 1

    bob.queue(F.sync_response())
    proxy.client(bob.token).sync({"lists": {"a": {"ranges": [[0, 9]]}}})
    text = proxy.metrics()[1]
    assert metric_value(text, "sliding_sync_poller_num_pollers") == 2
    assert metric_value(text, "sliding_sync_api_num_active_conns") == 2
    assert metric_value(text, "sliding_sync_api_expiry_conn_timed_out") == 0

    hs.revoke(alice.token)
    wait_until(lambda: metric_value(proxy.metrics()[1], "sliding_sync_poller_num_pollers") == 1,
               timeout=20, what="num_pollers back to 1 after alice's token expired")
    text = proxy.metrics()[1]
    assert metric_value(text, "sliding_sync_api_num_active_conns") == 1
    # Explicit closes count with the expiries, as in the Go proxy.
    assert metric_value(text, "sliding_sync_api_expiry_conn_timed_out") == 1


def test_ensure_polling_payload_and_pending_devices(proxy, hs, alice):
    hs.hold(alice.token)
    alice.queue(F.sync_response())
    c = proxy.client(alice.token)
    first = run_in_thread(c.sync, {"lists": {"a": {"ranges": [[0, 9]]}}})
    wait_until(lambda: metric_value(proxy.metrics()[1], "sliding_sync_api_num_devices_pending_ensure_polling") == 1,
               what="alice's device pending while its first /sync is held")
    text = proxy.metrics()[1]
    assert metric_value(text, "sliding_sync_api_num_payloads", {"payload_type": "V3EnsurePolling"}) == 1
    hs.release(alice.token)
    first.result(30)
    text = proxy.metrics()[1]
    assert metric_value(text, "sliding_sync_api_num_devices_pending_ensure_polling") == 0
    c.sync({}, timeout=100)
    # A device already polling needs no new EnsurePolling.
    assert metric_value(proxy.metrics()[1], "sliding_sync_api_num_payloads",
                        {"payload_type": "V3EnsurePolling"}) == 1


def test_setup_and_process_durations(proxy, alice):
    rid = F.new_room_id()
    alice.queue(F.sync_response(join={rid: F.joined_room(
        F.room_state(alice.user_id, "Room"), [F.message(alice.user_id, "hello")])}))
    c = proxy.client(alice.token)
    c.sync({"lists": {"a": {"ranges": [[0, 9]], "timeline_limit": 1}}})
    text = proxy.metrics()[1]
    setup = lambda t, i: metric_value(t, "sliding_sync_api_setup_duration_secs_count", {"initial": i}) or 0
    proc = lambda t, i: metric_value(t, "sliding_sync_api_process_duration_secs_count", {"initial": i}) or 0
    assert (setup(text, "1"), proc(text, "1")) == (1, 1)

    # Nothing new: the request long-polls until its timeout; not a processing time.
    c.sync({}, timeout=300)
    text = proxy.metrics()[1]
    assert setup(text, "0") == 1
    assert proc(text, "0") == 0

    # New data waiting: answered without long-polling.
    alice.queue(F.sync_response(join={rid: F.joined_room(timeline=[F.message(alice.user_id, "again")])}))
    alice.wait_idle()
    c.sync({}, timeout=10000)
    text = proxy.metrics()[1]
    assert setup(text, "0") == 2
    assert proc(text, "0") == 1


def test_evicted_connections_count_as_destroyed(proxy, alice):
    alice.queue(F.sync_response())
    c = proxy.client(alice.token)
    for i in range(65):
        r = c.request({"conn_id": "c%d" % i}, timeout=100)
        assert r.status == 200, r
    text = proxy.metrics()[1]
    assert metric_value(text, "sliding_sync_api_destroyed_conns") == 1
    assert metric_value(text, "sliding_sync_api_num_active_conns") == 64


def test_slow_request_is_counted_and_logged(proxy, alice):
    # The mark is 50 s, as in the Go proxy: one long-poll of 51 s.
    alice.queue(F.sync_response())
    c = proxy.client(alice.token)
    c.sync({})
    assert metric_value(proxy.metrics()[1], "sliding_sync_api_slow_requests") == 0
    c.sync({}, timeout=51000)
    wait_until(lambda: metric_value(proxy.metrics()[1], "sliding_sync_api_slow_requests") == 1,
               what="slow request counted")
    assert re.search(r"slow request: 5\d\.\d+ s user=@alice", proxy.stderr()), proxy.stderr_tail()


# ---------------------------------------------------------------- queries and dashboard

def used_metrics(expr, fams):
    """(family, [label names used]) for every metric name in a PromQL expression."""
    names = set(re.findall(r"\b((?:sliding_sync|syncv3|process)_[a-z0-9_]+)\b", expr))
    out = []
    for n in names:
        fam = n if n in fams else re.sub(r"_(bucket|sum|count)$", "", n)
        out.append((n, fam))
    labels = set(re.findall(r"\b(\w+)\s*(?:=~|!~|!=|=)\s*\"", expr))
    for grp in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr):
        labels |= {l.strip() for l in grp.split(",") if l.strip()}
    return out, labels


def check_expr(expr, fams, where):
    used, labels = used_metrics(expr, fams)
    assert used, "%s: no metric in %r" % (where, expr)
    known = {"le", "job", "instance"}  # le from histograms; job and instance from the scrape
    for n, fam in used:
        assert fam in fams, "%s: %s is not exported (expr %r)" % (where, n, expr)
        if n != fam:
            assert fams[fam]["type"] == "histogram", "%s: %s is not a histogram" % (where, fam)
        for _, got, _ in fams[fam]["samples"]:
            known |= set(got)
    assert labels <= known, "%s: labels %s not on %s (expr %r)" % (where, labels - known, used, expr)


def readme_queries():
    text = (REPO / "README.md").read_text()
    m = re.search(r"^#+ Prometheus queries$", text, re.M)
    assert m, "the README has no 'Prometheus queries' section"
    block = re.search(r"```promql\n(.*?)```", text[m.end():], re.S)
    assert block, "no ```promql block in the README's Prometheus queries section"
    qs = [l.strip() for l in block.group(1).splitlines() if l.strip() and not l.strip().startswith("#")]
    assert len(qs) >= 8
    return qs


def dashboard_exprs():
    d = json.loads((REPO / "deploy" / "grafana-dashboard.json").read_text())
    exprs = []

    def walk(panels):
        for p in panels:
            walk(p.get("panels", []))
            for t in p.get("targets", []):
                exprs.append((p.get("title"), t["expr"]))
    walk(d["panels"])
    return d, exprs


def test_readme_queries_name_exported_metrics(proxy, hs, alice):
    traffic(proxy, hs, alice)
    fams = parse(proxy.metrics()[1])
    for q in readme_queries():
        check_expr(q, fams, "README")


def test_grafana_dashboard_parses_and_names_exported_metrics(proxy, hs, alice):
    d, exprs = dashboard_exprs()
    assert any(i.get("type") == "datasource" and i.get("pluginId") == "prometheus" for i in d["__inputs"])
    variables = d["templating"]["list"]
    assert any(v["type"] == "datasource" and v["query"] == "prometheus" for v in variables)
    titles = " ".join(t for t, _ in exprs).lower()
    for want in ("request", "p99", "connections", "pollers", "poller process", "to-device", "error", "memory"):
        assert want in titles, "no dashboard panel about %r: %s" % (want, titles)
    # Every query runs against the datasource variable.
    for p in d["panels"]:
        if p.get("type") != "row":
            assert p["datasource"]["uid"] == "${datasource}", p.get("title")
    traffic(proxy, hs, alice)
    fams = parse(proxy.metrics()[1])
    assert len(exprs) >= 10
    for title, expr in exprs:
        check_expr(expr, fams, "dashboard panel %r" % title)
