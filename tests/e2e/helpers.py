"""Harness pieces shared by the black-box tests: the syncv3 process, a small
sliding sync client, users on the fake homeserver, waiting helpers.

Tests import what they need from here (`from helpers import ...`); the pytest
fixtures that build these objects live in conftest.py.
"""

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import fakehs
from pgtmp import free_port

REPO = Path(__file__).resolve().parents[2]
SS_PATH = "/_matrix/client/unstable/org.matrix.msc3575/sync"
SSS_PATH = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"
V3_SYNC_PATH = "/_matrix/client/v3/sync"
DEFAULT_SECRET = "e2e-test-secret-0123456789abcdef0123456789abcdef"

# Lines that mean a sanitizer found something in the child's stderr.
SANITIZER_MARKERS = (
    "ERROR: AddressSanitizer",
    "ERROR: LeakSanitizer",
    "UndefinedBehaviorSanitizer",
    "runtime error:",
    "SUMMARY: AddressSanitizer",
    "WARNING: ThreadSanitizer",
    "AddressSanitizer:DEADLYSIGNAL",
)


def binary_path():
    """The syncv3 binary under test: $SYNCV3_TEST_BINARY, else build-san/syncv3 when it
    exists, else build/syncv3 (relative paths are taken from the repository root)."""
    env = os.environ.get("SYNCV3_TEST_BINARY")
    if env:
        p = Path(env)
        return p if p.is_absolute() else REPO / p
    san = REPO / "build-san" / "syncv3"
    return san if san.exists() else REPO / "build" / "syncv3"


def sanitizer_env(base=None):
    """Environment for a child process with sanitizer options set (caller values win)."""
    env = dict(os.environ if base is None else base)
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:halt_on_error=1:"
                   "strict_string_checks=1:detect_stack_use_after_return=1:"
                   "check_initialization_order=1:allocator_may_return_null=0")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    supp = Path(__file__).resolve().parent / "lsan.supp"
    if supp.exists():
        env.setdefault("LSAN_OPTIONS", "suppressions=%s:print_suppressions=0" % supp)
    return env


def sanitizer_report(text):
    """The sanitizer report in `text` (from its first marker line on), or None."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if any(m in line for m in SANITIZER_MARKERS):
            return "\n".join(lines[max(0, i - 2):i + 60])
    return None


def clean_env():
    """os.environ without any SYNCV3_* variable (so the host's settings never leak in)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("SYNCV3_")}


def wait_until(fn, timeout=10.0, interval=0.05, what="condition"):
    """Polls fn() until it returns a truthy value (returned) or raises AssertionError."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = fn()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - keep polling, report the last error
            last_exc = e
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s (last error: %r)"
                                 % (timeout, what, last_exc))
        time.sleep(interval)


def port_open(host, port):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class Proxy:
    """One syncv3 server process (restartable on the same database)."""

    def __init__(self, hs_url, db, workdir, binary=None, extra_env=None, secret=DEFAULT_SECRET,
                 prom=True):
        self.hs_url = hs_url
        self.db = db
        self.workdir = Path(workdir)
        self.binary = Path(binary) if binary else binary_path()
        self.extra_env = dict(extra_env or {})
        self.secret = secret
        self.with_prom = prom
        self.proc = None
        self.port = None
        self.prom_port = None
        self.runs = 0
        self.problems = []      # sanitizer reports, crashes, bad exits (checked at teardown)
        self._stderr_path = None

    # ---------------------------------------------------------------- process
    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    @property
    def metrics_url(self):
        return "http://127.0.0.1:%d/metrics" % self.prom_port

    def env(self):
        env = sanitizer_env(clean_env())
        env.update({
            "SYNCV3_SERVER": self.hs_url,
            "SYNCV3_DB": self.db,
            "SYNCV3_SECRET": self.secret,
            "SYNCV3_BINDADDR": "127.0.0.1:%d" % self.port,
            "SYNCV3_LOG_LEVEL": os.environ.get("SYNCV3_TEST_LOG_LEVEL", "debug"),
        })
        if self.with_prom:
            env["SYNCV3_PROM"] = "127.0.0.1:%d" % self.prom_port
        env.update(self.extra_env)
        return env

    def start(self, timeout=30.0):
        if not self.binary.exists():
            raise AssertionError("syncv3 binary not found at %s (build it with make)" % self.binary)
        self.runs += 1
        self.port = free_port()
        self.prom_port = free_port()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._stderr_path = self.workdir / ("syncv3-run%d.stderr" % self.runs)
        self._stdout_path = self.workdir / ("syncv3-run%d.stdout" % self.runs)
        with open(self._stderr_path, "wb") as err, open(self._stdout_path, "wb") as out:
            self.proc = subprocess.Popen([str(self.binary)], env=self.env(), stdout=out, stderr=err,
                                         stdin=subprocess.DEVNULL, cwd=str(self.workdir))
        deadline = time.monotonic() + timeout
        while not port_open("127.0.0.1", self.port):
            if self.proc.poll() is not None:
                self._record_exit("exited during start-up")
                raise AssertionError("syncv3 exited during start-up (status %s):\n%s"
                                     % (self.proc.returncode, self.stderr_tail()))
            if time.monotonic() > deadline:
                raise AssertionError("syncv3 did not accept connections on port %d within %.0fs:\n%s"
                                     % (self.port, timeout, self.stderr_tail()))
            time.sleep(0.05)
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=20.0):
        """SIGTERM, wait, record problems (sanitizer output, crash, non-zero exit, hang)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self.problems.append("run %d: syncv3 did not exit within %.0fs of SIGTERM"
                                     % (self.runs, timeout))
            else:
                self._record_exit("on SIGTERM")
        else:
            self._record_exit("before the test ended (crash?)")
        self.proc = None

    def restart(self):
        self.stop()
        return self.start()

    def _record_exit(self, when):
        rc = self.proc.returncode
        text = self.stderr()
        rep = sanitizer_report(text)
        if rep:
            self.problems.append("run %d: sanitizer report in stderr:\n%s" % (self.runs, rep))
        if rc != 0 and not any("syncv3 did not exit" in p for p in self.problems):
            self.problems.append("run %d: syncv3 exited with status %s %s\n%s"
                                 % (self.runs, rc, when, self.stderr_tail()))

    def stderr(self):
        if not self._stderr_path or not self._stderr_path.exists():
            return ""
        return self._stderr_path.read_text(errors="replace")

    def all_stderr(self):
        return "".join((self.workdir / ("syncv3-run%d.stderr" % i)).read_text(errors="replace")
                       for i in range(1, self.runs + 1)
                       if (self.workdir / ("syncv3-run%d.stderr" % i)).exists())

    def stderr_tail(self, n=40):
        return "\n".join(self.stderr().splitlines()[-n:])

    # ---------------------------------------------------------------- helpers
    def client(self, token, path=SS_PATH):
        return SlidingSync(self, token, path)

    def metrics(self):
        with urllib.request.urlopen(self.metrics_url, timeout=10) as r:
            return r.status, r.read().decode()


class Response:
    """An HTTP answer; unpacks as (status, json)."""

    def __init__(self, status, body, headers, elapsed):
        self.status = status
        self.body = body
        self.headers = headers
        self.elapsed = elapsed
        try:
            self.json = json.loads(body) if body else None
        except ValueError:
            self.json = None

    def __iter__(self):
        return iter((self.status, self.json))

    def __repr__(self):
        return "<Response %s %.2fs %s>" % (self.status, self.elapsed, self.body[:300])


def http_request(url, method="GET", body=None, headers=None, timeout=60.0):
    """One HTTP request with urllib; never raises for HTTP error statuses."""
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
    elif isinstance(body, str):
        body = body.encode()
    req = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    t0 = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            data = r.read()
            return Response(r.status, data, r.headers, time.monotonic() - t0)
    except urllib.error.HTTPError as e:
        data = e.read()
        return Response(e.code, data, e.headers, time.monotonic() - t0)


class SlidingSync:
    """A minimal sliding sync client for one access token (and one conn_id if set in bodies).

    request(): one raw request, returns a Response (unpacks as (status, json)).
    sync():    request() on the current pos; asserts the status; tracks pos on 200.
    """

    def __init__(self, proxy, token, path=SS_PATH):
        self.proxy = proxy
        self.token = token
        self.path = path
        self.pos = None

    def request(self, body=None, pos=None, timeout=None, token="__default__", headers=None,
                method="POST", path=None, query=None, raw=None, http_timeout=None):
        params = []
        if pos is not None:
            params.append(("pos", str(pos)))
        if timeout is not None:
            params.append(("timeout", str(timeout)))
        params += list((query or {}).items())
        url = self.proxy.url + (path or self.path)
        if params:
            url += "?" + "&".join("%s=%s" % (k, urllib.parse.quote(v, safe="")) for k, v in params)
        hdrs = {"Content-Type": "application/json"}
        tok = self.token if token == "__default__" else token
        if tok is not None:
            hdrs["Authorization"] = "Bearer " + tok
        hdrs.update(headers or {})
        data = raw if raw is not None else (json.dumps(body if body is not None else {}).encode()
                                            if method == "POST" else None)
        if http_timeout is None:
            http_timeout = 60.0 + (int(timeout) / 1000.0 if timeout is not None else 10.0)
        return http_request(url, method, data, hdrs, http_timeout)

    def sync(self, body=None, timeout=100, expect=200, **kw):
        r = self.request(body, pos=self.pos, timeout=timeout, **kw)
        assert r.status == expect, "expected HTTP %s, got %r" % (expect, r)
        if r.status == 200:
            assert isinstance(r.json, dict), r
            assert isinstance(r.json.get("pos"), str), "pos must be a string: %r" % r.json
            self.pos = r.json["pos"]
        return r.json

    def reset(self):
        self.pos = None


class SimplifiedSync(SlidingSync):
    """A client of the MSC4186 path: pos and timeout in the query, every request in full.
    sync() checks each 200 answer against the ruma v5 response types."""

    def __init__(self, proxy, token, path=SSS_PATH):
        super().__init__(proxy, token, path)

    def sync(self, body=None, timeout=0, expect=200, **kw):
        resp = super().sync(body, timeout=timeout, expect=expect, **kw)
        if expect == 200:
            import msc4186_shape
            msc4186_shape.check_response(resp)
        return resp


class User:
    """A user+device on the fake homeserver."""

    def __init__(self, hs, localpart, device_id=None, token=None, server="localhost"):
        self.hs = hs
        self.user_id = "@%s:%s" % (localpart, server)
        self.token = token or "syt_%s_%s" % (localpart, secrets.token_hex(6))
        self.device_id = hs.register(self.token, self.user_id, device_id)

    def queue(self, body):
        return self.hs.queue(self.token, body)

    def wait_idle(self, timeout=15.0):
        self.hs.wait_until_idle(self.token, timeout)

    def syncs(self):
        return self.hs.sync_requests(self.token)


def list_ops(resp, key):
    return (resp.get("lists", {}).get(key) or {}).get("ops") or []


class Window:
    """The client's copy of one list (one range starting at 0), updated by applying each
    response's ops in order, as a client does."""

    def __init__(self, key="a"):
        self.key = key
        self.rooms = []
        self.count = None

    def apply(self, resp):
        lst = resp["lists"][self.key]
        for op in lst.get("ops") or []:
            if op["op"] == "SYNC":
                assert op["range"][0] == 0, op
                self.rooms = list(op.get("room_ids", []))
            elif op["op"] == "DELETE":
                if op["index"] < len(self.rooms):
                    del self.rooms[op["index"]]
            elif op["op"] == "INSERT":
                self.rooms.insert(op["index"], op["room_id"])
            elif op["op"] == "INVALIDATE":
                self.rooms = []
        self.count = lst["count"]
        return self.rooms


def ids(events):
    """The event IDs of events, in order."""
    return [e["event_id"] for e in events]


def tl_ids(resp, rid):
    """The event IDs of room rid's timeline in a response (empty when absent)."""
    return ids(((resp.get("rooms") or {}).get(rid) or {}).get("timeline") or [])


def sync_op_room_ids(resp, key):
    """room_ids of the SYNC ops of list `key`, concatenated in op order."""
    out = []
    for op in list_ops(resp, key):
        if op and op.get("op") == "SYNC":
            out += op.get("room_ids", [])
    return out


def one_room_connection(proxy, user):
    """user joined to one new room (initial sync stored) and a connection whose first response was
    consumed (list "a", timeline_limit 1). Returns (SlidingSync, room_id)."""
    rid = fakehs.new_room_id()
    user.queue(fakehs.sync_response(join={rid: fakehs.joined_room(
        fakehs.room_state(user.user_id, "Room"), [fakehs.message(user.user_id, "hello")])}))
    c = proxy.client(user.token)
    c.sync({"lists": {"a": {"ranges": [[0, 9]], "timeline_limit": 1}}})
    user.wait_idle()
    return c, rid


def metric_value(text, name, labels=None):
    """The value of sample `name` (exact, with labels all matching) in Prometheus text, or None."""
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)", line)
        if not m or m.group(1) != name:
            continue
        if labels:
            got = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
            if any(got.get(k) != v for k, v in labels.items()):
                continue
        return float(m.group(3))
    return None


__all__ = ["REPO", "SS_PATH", "V3_SYNC_PATH", "Proxy", "SlidingSync", "Response", "User",
           "http_request", "wait_until", "binary_path", "sanitizer_env", "sanitizer_report",
           "clean_env", "list_ops", "one_room_connection", "sync_op_room_ids", "metric_value", "metric_sum", "run_in_thread",
           "fakehs"]


def metric_sum(text, name):
    """Sum of every sample named exactly `name` (all label sets), or None if absent."""
    total, seen = 0.0, False
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)", line)
        if m and m.group(1) == name:
            total += float(m.group(3))
            seen = True
    return total if seen else None


def run_in_thread(fn, *args, **kw):
    """Starts fn(*args, **kw) in a thread; returns a handle whose .result(timeout) joins it."""
    import threading

    class Handle:
        value = None
        error = None

        def result(self, timeout=60.0):
            t.join(timeout)
            assert not t.is_alive(), "background request still running after %.0fs" % timeout
            if self.error:
                raise self.error
            return self.value

        def done(self):
            return not t.is_alive()

    h = Handle()

    def run():
        try:
            h.value = fn(*args, **kw)
        except BaseException as e:  # noqa: BLE001 - re-raised in result()
            h.error = e
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return h
