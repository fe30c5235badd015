"""Fake telemetry receivers for the black-box tests (standard library only).

FakeCollector: an OTLP/HTTP collector. It accepts POST /v1/traces with the JSON encoding,
decodes every span (hex ids, nanosecond strings, attributes into a dict) and keeps them with
the request headers. `delay` makes each answer wait (a slow collector).

`python3 tests/e2e/fakeobs.py collector --port N` runs a collector standalone (it prints the number
of spans received every 10 s), e.g. for `bench/bench.py --env SYNCV3_OTLP_URL=http://127.0.0.1:N`.

FakeSentry: a Sentry endpoint. It accepts POST /api/<project>/envelope/, splits the envelope
into its header, item headers and payloads, and keeps them with the request headers.
"""

import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def _attr_value(v):
    if "stringValue" in v:
        return v["stringValue"]
    if "intValue" in v:
        return int(v["intValue"])
    if "boolValue" in v:
        return bool(v["boolValue"])
    if "doubleValue" in v:
        return float(v["doubleValue"])
    raise AssertionError("unsupported attribute value %r" % v)


def attributes(items):
    """An OTLP attribute list as a dict (values decoded)."""
    return {a["key"]: _attr_value(a["value"]) for a in items}


class Span:
    """One received span; `raw` is the span's JSON object as sent."""

    def __init__(self, raw, resource):
        self.raw = raw
        self.resource = resource
        self.trace_id = raw["traceId"]
        self.span_id = raw["spanId"]
        self.parent_id = raw.get("parentSpanId") or None
        self.name = raw["name"]
        self.kind = raw["kind"]
        self.start_ns = int(raw["startTimeUnixNano"])
        self.end_ns = int(raw["endTimeUnixNano"])
        self.attrs = attributes(raw.get("attributes", []))
        self.status = raw.get("status") or {}

    def __repr__(self):
        return "<Span %s %s/%s parent=%s %r>" % (self.name, self.trace_id, self.span_id, self.parent_id,
                                                  self.attrs)


class _Server:
    """A threaded HTTP server that hands each POST to `self.receive(handler, body)`."""

    def __init__(self, port=0):
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt, *args):  # quiet
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                status = outer.receive(self, body)
                if outer.delay:
                    time.sleep(outer.delay)
                payload = b"{}"
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.delay = 0.0
        self.cond = threading.Condition()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = "http://127.0.0.1:%d" % self.port
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def wait_for(self, predicate, timeout=15.0, what="condition"):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                v = predicate()
                if v:
                    return v
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("timed out waiting for %s" % what)
                self.cond.wait(left)


class FakeCollector(_Server):
    def __init__(self, port=0):
        super().__init__(port)
        self.requests = []   # (path, headers dict, raw body bytes)
        self.spans = []

    def receive(self, handler, body):
        doc = json.loads(body)
        spans = []
        for rs in doc["resourceSpans"]:
            resource = attributes(rs["resource"]["attributes"])
            for ss in rs["scopeSpans"]:
                for s in ss["spans"]:
                    spans.append(Span(s, resource))
        with self.cond:
            self.requests.append((handler.path, dict(handler.headers), body))
            self.spans += spans
            self.cond.notify_all()
        return 200 if handler.path == "/v1/traces" else 404

    def named(self, name):
        with self.cond:
            return [s for s in self.spans if s.name == name]

    def wait_spans(self, name, pred=lambda s: True, count=1, timeout=15.0):
        return self.wait_for(lambda: (lambda got: got if len(got) >= count else None)(
            [s for s in self.spans if s.name == name and pred(s)]), timeout, "span %s" % name)


def basic_auth(headers):
    """(user, password) from an Authorization: Basic header, or None."""
    v = headers.get("Authorization") or headers.get("authorization")
    if not v or not v.startswith("Basic "):
        return None
    user, _, pw = base64.b64decode(v[6:]).decode().partition(":")
    return user, pw


class Envelope:
    """One received envelope: header, [(item header, payload)], request headers, path, raw."""

    def __init__(self, path, headers, raw):
        self.path = path
        self.headers = headers
        self.raw = raw
        nl = raw.index(b"\n")
        self.header = json.loads(raw[:nl])
        self.items = []
        pos = nl + 1
        while pos < len(raw):
            nl = raw.find(b"\n", pos)
            nl = len(raw) if nl < 0 else nl
            line, pos = raw[pos:nl], nl + 1
            if not line.strip():
                continue
            ih = json.loads(line)
            if "length" in ih:
                payload, pos = raw[pos:pos + ih["length"]], pos + ih["length"] + 1
            else:
                nl = raw.find(b"\n", pos)
                nl = len(raw) if nl < 0 else nl
                payload, pos = raw[pos:nl], nl + 1
            self.items.append((ih, json.loads(payload)))

    @property
    def event(self):
        events = [p for h, p in self.items if h.get("type") == "event"]
        assert len(events) == 1, self.items
        return events[0]


class FakeSentry(_Server):
    def __init__(self, project="42", key="abc123"):
        super().__init__()
        self.project = project
        self.key = key
        self.dsn = "http://%s@127.0.0.1:%d/%s" % (key, self.port, project)
        self.envelopes = []

    def receive(self, handler, body):
        env = Envelope(handler.path, dict(handler.headers), body)
        with self.cond:
            self.envelopes.append(env)
            self.cond.notify_all()
        return 200 if handler.path == "/api/%s/envelope/" % self.project else 404

    def events(self, pred=lambda e: True):
        with self.cond:
            return [e for e in self.envelopes if pred(e.event)]

    def wait_events(self, pred=lambda e: True, count=1, timeout=15.0):
        return self.wait_for(lambda: (lambda got: got if len(got) >= count else None)(
            [e for e in self.envelopes if pred(e.event)]), timeout, "%d Sentry event(s)" % count)


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="a fake OTLP/HTTP JSON trace collector")
    ap.add_argument("kind", choices=["collector"])
    ap.add_argument("--port", type=int, default=4318)
    a = ap.parse_args()
    c = FakeCollector(a.port).start()
    try:
        while True:
            time.sleep(10)
            print("spans received: %d" % len(c.spans), flush=True)
    except KeyboardInterrupt:
        pass
