#!/usr/bin/env python3
"""A scripted fake Matrix homeserver for syncv3's black-box tests and demo.

Standard library only. It serves the three upstream endpoints the proxy uses:

  GET /_matrix/client/versions
  GET /_matrix/client/{v3,r0}/account/whoami
  GET /_matrix/client/{v3,r0}/sync

and, for the web client at syncv3's /client/ (which talks to the homeserver
directly, so every answer carries CORS headers and OPTIONS is answered):

  PUT /_matrix/client/v3/rooms/{room}/send/{type}/{txn}   the event goes into the
      sender's next /sync (with unsigned.transaction_id); see on_send
  GET /_matrix/client/v3/rooms/{room}/messages?dir=b&from=   history added with add_history
  GET /_matrix/media/v3/thumbnail/{server}/{id}           media added with add_media

and what matrix-js-sdk's startClient asks of the homeserver before it syncs (empty answers for
a known token): GET /_matrix/client/v3/pushrules/ and GET /_matrix/client/v3/capabilities.

Tests register access tokens (token -> user_id, device_id) and push sync v2
response bodies onto a per-token queue. A /sync pops the next queued body
(assigning next_batch "s1", "s2", ... when absent); with an empty queue it
long-polls until something is queued or its `timeout` query parameter
elapses, then answers an empty response carrying the same next_batch.
Every request is recorded (path, parsed query, token) so tests can assert on
the exact /sync request the proxy made. Faults can be injected per token
(fail_next): HTTP status codes, invalid JSON, `null`, a hang, a reset.

The second half of this file holds small builders for v2 response bodies
(events with unique IDs and increasing timestamps, joined/invited/left rooms,
to-device, device lists, account data, unread counts).

Standalone:  python3 tests/e2e/fakehs.py --port 8118 --script demo
"""

import argparse
import collections
import itertools
import json
import os
import secrets
import signal
import socket
import socketserver
import struct
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SYNC_PATHS = ("/_matrix/client/v3/sync", "/_matrix/client/r0/sync")
WHOAMI_PATHS = ("/_matrix/client/v3/account/whoami", "/_matrix/client/r0/account/whoami")
VERSIONS_PATH = "/_matrix/client/versions"
ROOMS_PREFIX = "/_matrix/client/v3/rooms/"
THUMBNAIL_PREFIX = "/_matrix/media/v3/thumbnail/"
PUSHRULES_PATH = "/_matrix/client/v3/pushrules/"
CAPABILITIES_PATH = "/_matrix/client/v3/capabilities"
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, PUT, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "Origin, X-Requested-With, Content-Type, Accept, Authorization",
}


class Request:
    """One request the fake homeserver received."""

    def __init__(self, method, raw_path, headers, body=b""):
        self.method = method
        self.body = body  # the request body (bytes)
        parts = urllib.parse.urlsplit(raw_path)
        self.path = parts.path
        self.raw_query = parts.query
        # Ordered (key, value) pairs exactly as sent, and a key -> first value map.
        self.query_list = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        self.query = {}
        for k, v in self.query_list:
            self.query.setdefault(k, v)
        self.headers = dict(headers.items())
        auth = headers.get("Authorization")
        self.authorization = auth
        if auth is not None and auth.startswith("Bearer "):
            self.token = auth[len("Bearer "):]
        else:
            self.token = auth
        self.time = time.monotonic()
        self.status = None  # HTTP status answered (None: dropped / still open)
        self.served_next_batch = None  # next_batch of the body answered to a /sync
        self.answered_at = None  # monotonic time the answer was sent (or the connection dropped)

    @property
    def is_sync(self):
        return self.path in SYNC_PATHS

    @property
    def since(self):
        return self.query.get("since")

    @property
    def timeout(self):
        t = self.query.get("timeout")
        return None if t is None else int(t)

    @property
    def filter(self):
        f = self.query.get("filter")
        return None if f is None else json.loads(f)

    def __repr__(self):
        return "<Request %s %s?%s token=%r status=%r>" % (
            self.method, self.path, self.raw_query, self.token, self.status)


class _Account:
    def __init__(self, token, user_id, device_id):
        self.token = token
        self.user_id = user_id
        self.device_id = device_id
        self.revoked = False
        self.queue = collections.deque()  # of (next_batch, body bytes)
        self.counter = 0                  # for automatic next_batch values
        self.issued = set()               # every next_batch handed out for this token
        self.answers = {}                 # since -> (next_batch, body) answered with new data
        self.last_next_batch = None
        self.served = 0                   # bodies popped from the queue
        self.idle_at_served = -1          # value of `served` when a /sync found the queue empty
        self.faults = {"sync": collections.deque(), "whoami": collections.deque()}
        self.held = False                 # /sync requests wait while held


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fakehs/1"

    def log_message(self, fmt, *args):  # quiet; unix sockets have no client address
        if self.server.fakehs.verbose:
            sys.stderr.write("fakehs: " + (fmt % args) + "\n")

    def setup(self):
        super().setup()
        self.server.fakehs._track(self.connection, True)

    def finish(self):
        try:
            super().finish()
        finally:
            self.server.fakehs._track(self.connection, False)

    def _dispatch(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.body = self.rfile.read(length) if length else b""
        self.server.fakehs._handle(self)

    do_GET = _dispatch
    do_POST = _dispatch
    do_PUT = _dispatch
    do_DELETE = _dispatch
    do_OPTIONS = _dispatch

    # -- response helpers used by FakeHomeserver._handle --
    def send_body(self, status, body, content_type="application/json", extra_headers=None):
        if isinstance(body, (dict, list)) or body is None and content_type == "application/json":
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in dict(CORS_HEADERS, **(extra_headers or {})).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def drop(self, reset=False):
        """Closes the connection without answering (reset=True sends a TCP RST)."""
        self.close_connection = True
        try:
            if reset:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class _QuietErrors:
    def handle_error(self, request, client_address):
        # The proxy going away mid-answer (or a dropped connection) is not an error here.
        exc = sys.exc_info()[1]
        if isinstance(exc, (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)):
            return
        super().handle_error(request, client_address)


class _TCPServer(_QuietErrors, ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class _UnixServer(_QuietErrors, socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class FakeHomeserver:
    """In-process fake homeserver. Use start()/stop() or a `with` block.

    url: what to put in SYNCV3_SERVER (http://127.0.0.1:PORT, or the unix
    socket path when unix_path was given).
    """

    def __init__(self, host="127.0.0.1", port=0, unix_path=None, server_name="localhost",
                 max_wait=None, verbose=False):
        self.host = host
        self.port = port
        self.unix_path = unix_path
        self.server_name = server_name
        self.max_wait = max_wait  # cap (seconds) for any long-poll, None = honour `timeout`
        self.verbose = verbose
        self.versions_body = {"versions": ["r0.6.1", "v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6"],
                              "unstable_features": {}}
        self.versions_delay = 0.0     # seconds /versions waits before answering (a slow homeserver)
        self.requests = []            # every Request, in arrival order
        self.unknown_since = []       # /sync requests whose since this server never issued
        self._cond = threading.Condition()
        self._accounts = {}           # token -> _Account
        self._sockets = set()
        self._kick_gen = 0
        self._closing = False
        self._httpd = None
        self._thread = None
        self._device_counter = itertools.count(1)
        self.sent = []                # (token, room_id, event) of every PUT /send, in order
        self.on_send = None           # called as on_send(token, room_id, event) after a /send
        self._txns = {}               # (token, room_id, txn) -> event ID
        self._history = {}            # (room_id, prev_batch) -> events before it, oldest first
        self._media = {}              # (server, media_id) -> (content type, bytes)

    # ------------------------------------------------------------ lifecycle
    def start(self):
        if self.unix_path:
            if os.path.exists(self.unix_path):
                os.unlink(self.unix_path)
            self._httpd = _UnixServer(self.unix_path, _Handler)
        else:
            self._httpd = _TCPServer((self.host, self.port), _Handler)
            self.port = self._httpd.server_address[1]
        self._httpd.fakehs = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="fakehs",
                                        kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if not self._httpd:
            return
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._httpd.shutdown()
        self.kick()
        self._httpd.server_close()
        self._thread.join(5)
        self._httpd = None
        if self.unix_path and os.path.exists(self.unix_path):
            os.unlink(self.unix_path)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def url(self):
        if self.unix_path:
            return self.unix_path
        return "http://%s:%d" % (self.host, self.port)

    def kick(self):
        """Drops every open client connection (ends the proxy's in-flight long-polls)."""
        with self._cond:
            self._kick_gen += 1
            socks = list(self._sockets)
            self._cond.notify_all()
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _track(self, sock, add):
        with self._cond:
            (self._sockets.add if add else self._sockets.discard)(sock)

    # ------------------------------------------------------------ accounts
    def register(self, token, user_id, device_id=None):
        """Makes `token` valid for (user_id, device_id). Returns the device id."""
        if device_id is None:
            device_id = "DEV%d%s" % (next(self._device_counter), secrets.token_hex(2).upper())
        with self._cond:
            acct = self._accounts.get(token)
            if acct is None:
                self._accounts[token] = _Account(token, user_id, device_id)
            else:
                acct.user_id, acct.device_id, acct.revoked = user_id, device_id, False
            self._cond.notify_all()
        return device_id

    def revoke(self, token, kick=False):
        """Invalidates `token`: whoami and /sync now answer 401 M_UNKNOWN_TOKEN (a /sync parked
        in its long-poll answers 401 at once). With kick, every open connection is dropped."""
        with self._cond:
            self._acct(token).revoked = True
            self._cond.notify_all()
        if kick:
            self.kick()

    def user_of(self, token):
        return self._acct(token).user_id

    def device_of(self, token):
        return self._acct(token).device_id

    def _acct(self, token):
        try:
            return self._accounts[token]
        except KeyError:
            raise KeyError("token %r was never registered with the fake homeserver" % token) from None

    # ------------------------------------------------------------ queueing
    def queue(self, token, body):
        """Queues a v2 /sync response body (dict, or raw bytes/str sent verbatim) for `token`.
        A dict without next_batch gets "s<N>". Returns the next_batch (None for raw bodies)."""
        with self._cond:
            acct = self._acct(token)
            if isinstance(body, dict):
                body = dict(body)
                _check_v2(body)
                if "next_batch" not in body:
                    acct.counter += 1
                    body["next_batch"] = "s%d" % acct.counter
                nb = body["next_batch"]
                raw = json.dumps(body).encode()
            else:
                nb = None
                raw = body.encode() if isinstance(body, str) else bytes(body)
            acct.queue.append((nb, raw))
            self._cond.notify_all()
        return nb

    def queue_many(self, token, bodies):
        return [self.queue(token, b) for b in bodies]

    def pending(self, token):
        with self._cond:
            return len(self._acct(token).queue)

    def hold(self, token):
        """/sync requests for `token` block (before anything is answered) until release()."""
        with self._cond:
            self._acct(token).held = True

    def release(self, token):
        with self._cond:
            self._acct(token).held = False
            self._cond.notify_all()

    def fail_next(self, token, kind="status", count=1, status=500, body=None, retry_after_ms=None,
                  seconds=5.0, endpoint="sync"):
        """The next `count` requests of `token` to `endpoint` ("sync" or "whoami") fail:
          kind="status"       HTTP `status` with `body` (default: a Matrix error; 429 gets
                              M_LIMIT_EXCEEDED and retry_after_ms when given)
          kind="invalid_json" 200 with a body that is not JSON
          kind="null"         200 with the JSON body `null`
          kind="hang"         no answer for `seconds`, then the connection is closed
          kind="reset"        the connection is reset (TCP RST) without an answer
          kind="delay"        no answer for `seconds` (cut short by kick()), then the usual one
        Failed requests do not consume queued responses."""
        if kind not in ("status", "invalid_json", "null", "hang", "reset", "delay"):
            raise ValueError("unknown fault kind %r" % kind)
        fault = {"kind": kind, "status": status, "body": body, "retry_after_ms": retry_after_ms,
                 "seconds": seconds}
        with self._cond:
            q = self._acct(token).faults[endpoint]
            for _ in range(count):
                q.append(fault)

    # ------------------------------------------------------------ client endpoints
    def add_history(self, room_id, prev_batch, events):
        """Makes /messages?dir=b&from=<prev_batch> page back through `events` (oldest first: the
        history just before the timeline that carried prev_batch), newest first, `limit` at a
        time; the last page has no `end`."""
        with self._cond:
            self._history[(room_id, prev_batch)] = list(events)

    def add_media(self, server, media_id, data, content_type="image/png"):
        """Serves `data` at /_matrix/media/v3/thumbnail/<server>/<media_id>."""
        with self._cond:
            self._media[(server, media_id)] = (content_type, bytes(data))

    def send_requests(self, token=None):
        with self._cond:
            return [r for r in self.requests if r.method == "PUT" and "/send/" in r.path
                    and (token is None or r.token == token)]

    # ------------------------------------------------------------ observing
    def sync_requests(self, token=None):
        with self._cond:
            return [r for r in self.requests if r.is_sync and (token is None or r.token == token)]

    def whoami_requests(self, token=None):
        with self._cond:
            return [r for r in self.requests
                    if r.path in WHOAMI_PATHS and (token is None or r.token == token)]

    def wait_for(self, predicate, timeout=10.0, what="condition"):
        """Waits until predicate(requests) returns a truthy value, which is returned.
        Raises AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                v = predicate(self.requests)
                if v:
                    return v
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("fake homeserver: timed out after %.1fs waiting for %s; "
                                         "requests seen: %r" % (timeout, what, self.requests[-10:]))
                self._cond.wait(min(left, 0.25))

    def wait_for_sync(self, token, n=1, timeout=10.0, start=0, pred=None):
        """Waits until `token` has made at least n /sync requests (counting from index `start`
        of its /sync requests, and only those matching pred). Returns the n-th such request."""
        def check(reqs):
            ss = [r for r in reqs if r.is_sync and r.token == token][start:]
            if pred:
                ss = [r for r in ss if pred(r)]
            return ss[n - 1] if len(ss) >= n else None
        return self.wait_for(check, timeout, "/sync #%d of token %s" % (n, token))

    def wait_until_idle(self, token, timeout=15.0):
        """Barrier: returns once everything queued for `token` was served and the proxy came
        back with another /sync while the queue was empty — i.e. it finished processing
        every queued response (the proxy handles one response before polling again)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            acct = self._acct(token)
            while not (not acct.queue and acct.idle_at_served == acct.served):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        "fake homeserver: proxy did not come back idle for token %s within %.1fs "
                        "(queued=%d served=%d)" % (token, timeout, len(acct.queue), acct.served))
                self._cond.wait(min(left, 0.25))

    # ------------------------------------------------------------ serving
    def _handle(self, h):
        req = Request(h.command, h.path, h.headers, h.body)
        with self._cond:
            self.requests.append(req)
            self._cond.notify_all()
        try:
            if req.method == "OPTIONS":
                self._answer(h, req, 200, b"", "text/plain")
            elif req.path.startswith(ROOMS_PREFIX):
                self._room_endpoint(h, req)
            elif req.path.startswith(THUMBNAIL_PREFIX):
                self._thumbnail(h, req)
            elif req.path == VERSIONS_PATH:
                if self.versions_delay:
                    time.sleep(self.versions_delay)
                self._answer(h, req, 200, self.versions_body)
            elif req.path in WHOAMI_PATHS:
                self._whoami(h, req)
            elif req.path in SYNC_PATHS:
                self._sync(h, req)
            elif req.path in (PUSHRULES_PATH, CAPABILITIES_PATH) and req.method == "GET":
                self._client_start(h, req)
            else:
                self._answer(h, req, 404, {"errcode": "M_UNRECOGNIZED", "error": "Unrecognized request"})
        finally:
            with self._cond:
                req.answered_at = time.monotonic()
                self._cond.notify_all()

    def _answer(self, h, req, status, body, content_type="application/json", extra_headers=None):
        req.status = status
        h.send_body(status, body, content_type, extra_headers)

    def _unknown_token(self, h, req):
        self._answer(h, req, 401, {"errcode": "M_UNKNOWN_TOKEN", "error": "Invalid access token passed.",
                                   "soft_logout": False})

    def _take_fault(self, acct, endpoint):
        with self._cond:
            q = acct.faults[endpoint]
            return q.popleft() if q else None

    def _sleep(self, seconds):
        """Waits `seconds`; returns False when kick() or stop() cut it short."""
        deadline = time.monotonic() + seconds
        with self._cond:
            gen = self._kick_gen
            while not self._closing and gen == self._kick_gen:
                left = deadline - time.monotonic()
                if left <= 0:
                    return True
                self._cond.wait(left)
        return False

    def _apply_fault(self, h, req, f):
        """Answers with fault f; returns False for a "delay" that ran out (answer normally)."""
        kind = f["kind"]
        if kind == "status":
            status = f["status"]
            body = f["body"]
            headers = {}
            if body is None:
                if status == 429:
                    body = {"errcode": "M_LIMIT_EXCEEDED", "error": "Too Many Requests"}
                    if f["retry_after_ms"] is not None:
                        body["retry_after_ms"] = f["retry_after_ms"]
                        headers["Retry-After"] = str(max(1, f["retry_after_ms"] // 1000))
                elif status == 401:
                    body = {"errcode": "M_UNKNOWN_TOKEN", "error": "Invalid access token passed."}
                elif status == 403:
                    body = {"errcode": "M_FORBIDDEN", "error": "Forbidden"}
                else:
                    body = {"errcode": "M_UNKNOWN", "error": "Internal server error"}
            self._answer(h, req, status, body, extra_headers=headers)
        elif kind == "invalid_json":
            self._answer(h, req, 200, b'{"next_batch": "broken", "rooms": {', "application/json")
        elif kind == "null":
            self._answer(h, req, 200, b"null")
        elif kind == "hang":
            self._sleep(f["seconds"])
            h.drop()
        elif kind == "reset":
            h.drop(reset=True)
        elif kind == "delay":
            if self._sleep(f["seconds"]):
                return False
            h.drop()
        return True

    def _room_endpoint(self, h, req):
        parts = [urllib.parse.unquote(p) for p in req.path[len(ROOMS_PREFIX):].split("/")]
        acct = self._accounts.get(req.token) if req.token else None
        if acct is None or acct.revoked:
            return self._unknown_token(h, req)
        if req.method == "PUT" and len(parts) == 4 and parts[1] == "send":
            return self._send(h, req, acct, parts[0], parts[2], parts[3])
        if req.method == "GET" and len(parts) == 2 and parts[1] == "messages":
            return self._messages(h, req, parts[0])
        self._answer(h, req, 404, {"errcode": "M_UNRECOGNIZED", "error": "Unrecognized request"})

    def _send(self, h, req, acct, room_id, ev_type, txn):
        try:
            content = json.loads(req.body or b"null")
        except ValueError:
            content = None
        if not isinstance(content, dict):
            return self._answer(h, req, 400, {"errcode": "M_NOT_JSON", "error": "Content not JSON."})
        key = (acct.token, room_id, txn)
        with self._cond:
            known = self._txns.get(key)
        if known:  # a retried transaction: the same event, sent once
            return self._answer(h, req, 200, {"event_id": known})
        ev = event(ev_type, acct.user_id, content)
        with self._cond:
            self._txns[key] = ev["event_id"]
            self.sent.append((acct.token, room_id, ev))
        own = dict(ev, unsigned={"transaction_id": txn})
        self.queue(acct.token, sync_response(join={room_id: joined_room(timeline=[own])}))
        if self.on_send:
            self.on_send(acct.token, room_id, ev)
        self._answer(h, req, 200, {"event_id": ev["event_id"]})

    def _messages(self, h, req, room_id):
        if req.query.get("dir", "b") != "b" or not req.query.get("from"):
            return self._answer(h, req, 400, {"errcode": "M_INVALID_PARAM", "error": "need dir=b and from"})
        prev_batch, _, done = req.query["from"].partition("~")
        try:
            done = int(done or 0)
            limit = max(1, min(int(req.query.get("limit", "10")), 100))
        except ValueError:
            return self._answer(h, req, 400, {"errcode": "M_INVALID_PARAM", "error": "bad from or limit"})
        with self._cond:
            history = self._history.get((room_id, prev_batch), [])
        older = history[:max(0, len(history) - done)]
        chunk = list(reversed(older[-limit:]))
        body = {"chunk": chunk, "start": req.query["from"]}
        if len(older) > len(chunk):
            body["end"] = "%s~%d" % (prev_batch, done + len(chunk))
        self._answer(h, req, 200, body)

    def _thumbnail(self, h, req):
        parts = req.path[len(THUMBNAIL_PREFIX):].split("/")
        with self._cond:
            media = self._media.get(tuple(parts)) if len(parts) == 2 else None
        if media is None:
            return self._answer(h, req, 404, {"errcode": "M_NOT_FOUND", "error": "Not found"})
        self._answer(h, req, 200, media[1], media[0])

    def _whoami(self, h, req):
        acct = self._accounts.get(req.token) if req.token else None
        if acct is not None:
            f = self._take_fault(acct, "whoami")
            if f and self._apply_fault(h, req, f):
                return
        if acct is None or acct.revoked:
            return self._unknown_token(h, req)
        self._answer(h, req, 200, {"user_id": acct.user_id, "device_id": acct.device_id,
                                   "is_guest": False})

    def _client_start(self, h, req):
        acct = self._accounts.get(req.token) if req.token else None
        if acct is None or acct.revoked:
            return self._unknown_token(h, req)
        if req.path == PUSHRULES_PATH:
            kinds = ("override", "content", "room", "sender", "underride")
            return self._answer(h, req, 200, {"global": {k: [] for k in kinds}})
        self._answer(h, req, 200, {"capabilities": {}})

    def _sync(self, h, req):
        acct = self._accounts.get(req.token) if req.token else None
        if acct is None:
            return self._unknown_token(h, req)
        with self._cond:
            gen = self._kick_gen
            while acct.held and not self._closing and gen == self._kick_gen:
                self._cond.wait()
            if self._closing or gen != self._kick_gen:
                return h.drop()
            if acct.revoked:
                pass
            elif req.since is not None and req.since not in acct.issued:
                self.unknown_since.append(req)
        if acct.revoked:
            return self._unknown_token(h, req)
        f = self._take_fault(acct, "sync")
        if f and self._apply_fault(h, req, f):
            return

        try:
            wait = max(0, int(req.query.get("timeout", "0"))) / 1000.0
        except ValueError:
            wait = 0.0
        if self.max_wait is not None:
            wait = min(wait, self.max_wait)
        deadline = time.monotonic() + wait
        with self._cond:
            # Like a real homeserver, the same since token gets the same data
            # again (a client that could not store a response asks again).
            replay = acct.answers.get(req.since)
            if replay is not None and not acct.revoked:
                req.served_next_batch = replay[0]
                item = replay
            else:
                item = None
        if item is not None:
            return self._answer(h, req, 200, item[1])
        with self._cond:
            if not acct.queue:
                acct.idle_at_served = acct.served
                self._cond.notify_all()
            # A long-poll of the same since may be answered by another request meanwhile (one of a
            # proxy process that has since stopped, whose socket nobody reads any more): like a
            # real homeserver, this one then gets the same data.
            while (not acct.queue and not acct.revoked and not self._closing and gen == self._kick_gen
                   and req.since not in acct.answers):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            if self._closing or gen != self._kick_gen:
                return h.drop()
            if acct.revoked:
                item = None
                revoked = True
            else:
                revoked = False
                if req.since in acct.answers:
                    item = acct.answers[req.since]
                elif acct.queue:
                    item = acct.queue.popleft()
                    acct.served += 1
                    if item[0] is not None and item[0] != req.since:
                        acct.answers[req.since] = item
                        self._cond.notify_all()
                else:
                    nb = req.since if req.since is not None else "s%d" % acct.counter
                    item = (nb, json.dumps({"next_batch": nb}).encode())
                if item[0] is not None:
                    acct.issued.add(item[0])
                    acct.last_next_batch = item[0]
                req.served_next_batch = item[0]
        if revoked:
            return self._unknown_token(h, req)
        self._answer(h, req, 200, item[1])


def _check_v2(body):
    """Rejects bodies no real homeserver sends (state without a timeline)."""
    for rid, room in ((body.get("rooms") or {}).get("join") or {}).items():
        state = (room.get("state") or {}).get("events") or []
        timeline = (room.get("timeline") or {}).get("events") or []
        if state and not timeline:
            raise ValueError("joined room %s has state but an empty timeline" % rid)


# =========================================================================
# v2 response builders
# =========================================================================

_ids = itertools.count(1)
_ts_lock = threading.Lock()
_last_ts = [0]
_run = secrets.token_hex(3)


def now_ts():
    """A strictly increasing millisecond timestamp (never below wall-clock time)."""
    with _ts_lock:
        _last_ts[0] = max(int(time.time() * 1000), _last_ts[0] + 1)
        return _last_ts[0]


def new_event_id():
    return "$ev%d_%s" % (next(_ids), _run)


def new_room_id(label="room", server="localhost"):
    return "!%s%d_%s:%s" % (label, next(_ids), _run, server)


def event(type, sender, content, state_key=None, ts=None, event_id=None, unsigned=None):
    """A client-format event with a unique event_id and an increasing origin_server_ts."""
    ev = {"type": type, "sender": sender, "content": content,
          "event_id": event_id or new_event_id(),
          "origin_server_ts": now_ts() if ts is None else ts}
    if state_key is not None:
        ev["state_key"] = state_key
    if unsigned is not None:
        ev["unsigned"] = unsigned
    return ev


def state(type, state_key, sender, content, **kw):
    return event(type, sender, content, state_key=state_key, **kw)


def create(creator, room_version="10", room_type=None, predecessor=None, **kw):
    content = {"creator": creator, "room_version": room_version}
    if room_type is not None:
        content["type"] = room_type
    if predecessor is not None:
        content["predecessor"] = {"room_id": predecessor, "event_id": new_event_id()}
    return state("m.room.create", "", creator, content, **kw)


def member(user, membership="join", sender=None, displayname=None, avatar_url=None, is_direct=None,
           reason=None, **kw):
    content = {"membership": membership}
    if displayname is not None:
        content["displayname"] = displayname
    if avatar_url is not None:
        content["avatar_url"] = avatar_url
    if is_direct is not None:
        content["is_direct"] = is_direct
    if reason is not None:
        content["reason"] = reason
    return state("m.room.member", user, sender or user, content, **kw)


def join(user, **kw):
    return member(user, "join", **kw)


def invite(sender, target, **kw):
    return member(target, "invite", sender=sender, **kw)


def leave(user, sender=None, **kw):
    return member(user, "leave", sender=sender, **kw)


def ban(sender, target, **kw):
    return member(target, "ban", sender=sender, **kw)


def name(sender, text, **kw):
    return state("m.room.name", "", sender, {"name": text}, **kw)


def topic(sender, text, **kw):
    return state("m.room.topic", "", sender, {"topic": text}, **kw)


def avatar(sender, url, **kw):
    return state("m.room.avatar", "", sender, {"url": url}, **kw)


def canonical_alias(sender, alias, **kw):
    return state("m.room.canonical_alias", "", sender, {"alias": alias}, **kw)


def encryption(sender, algorithm="m.megolm.v1.aes-sha2", **kw):
    return state("m.room.encryption", "", sender, {"algorithm": algorithm}, **kw)


def join_rules(sender, rule="public", **kw):
    return state("m.room.join_rules", "", sender, {"join_rule": rule}, **kw)


def history_visibility(sender, visibility="shared", **kw):
    return state("m.room.history_visibility", "", sender, {"history_visibility": visibility}, **kw)


def power_levels(creator, users=None, **kw):
    content = {"users": users or {creator: 100}, "users_default": 0, "events": {},
               "events_default": 0, "state_default": 50, "ban": 50, "kick": 50, "redact": 50,
               "invite": 0}
    return state("m.room.power_levels", "", creator, content, **kw)


def tombstone(sender, replacement_room, body="This room has been replaced", **kw):
    return state("m.room.tombstone", "", sender, {"body": body, "replacement_room": replacement_room},
                 **kw)


def space_child(sender, space_child_id, via=("localhost",), **kw):
    return state("m.space.child", space_child_id, sender, {"via": list(via)}, **kw)


def message(sender, body, msgtype="m.text", **kw):
    return event("m.room.message", sender, {"msgtype": msgtype, "body": body}, **kw)


def room_state(creator, room_name=None, encrypted=False, alias=None, avatar_url=None, room_type=None,
               ts=None):
    """The usual initial state of a room made by `creator`: create, creator's join, power
    levels, public join rules (+ name/alias/avatar/encryption when asked)."""
    kw = {} if ts is None else {"ts": ts}
    evs = [create(creator, room_type=room_type, **kw), join(creator, **kw),
           power_levels(creator, **kw), join_rules(creator, **kw)]
    if room_name is not None:
        evs.append(name(creator, room_name, **kw))
    if alias is not None:
        evs.append(canonical_alias(creator, alias, **kw))
    if avatar_url is not None:
        evs.append(avatar(creator, avatar_url, **kw))
    if encrypted:
        evs.append(encryption(creator, **kw))
    return evs


def stripped(ev):
    """The stripped-state form of an event (as in invite_state)."""
    return {k: ev[k] for k in ("type", "state_key", "sender", "content") if k in ev}


def joined_room(state=(), timeline=(), prev_batch=None, limited=None, notification_count=None,
                highlight_count=None, ephemeral=(), account_data=()):
    room = {"state": {"events": list(state)}, "timeline": {"events": list(timeline)}}
    if prev_batch is not None:
        room["timeline"]["prev_batch"] = prev_batch
    if limited is not None:
        room["timeline"]["limited"] = limited
    counts = {}
    if notification_count is not None:
        counts["notification_count"] = notification_count
    if highlight_count is not None:
        counts["highlight_count"] = highlight_count
    if counts:
        room["unread_notifications"] = counts
    if ephemeral:
        room["ephemeral"] = {"events": list(ephemeral)}
    if account_data:
        room["account_data"] = {"events": list(account_data)}
    return room


def invited_room(invite_state):
    return {"invite_state": {"events": [stripped(e) for e in invite_state]}}


def invite_to(room_creator, invitee, room_name=None, is_direct=None, encrypted=False):
    """invite_state for an invite of `invitee` by `room_creator` (returns the events list;
    the invite membership is the last one)."""
    evs = [create(room_creator), join(room_creator), join_rules(room_creator, "invite")]
    if room_name is not None:
        evs.append(name(room_creator, room_name))
    if encrypted:
        evs.append(encryption(room_creator))
    evs.append(invite(room_creator, invitee, is_direct=is_direct))
    return evs


def left_room(timeline=(), state=(), prev_batch=None, limited=None):
    room = {"state": {"events": list(state)}, "timeline": {"events": list(timeline)}}
    if prev_batch is not None:
        room["timeline"]["prev_batch"] = prev_batch
    if limited is not None:
        room["timeline"]["limited"] = limited
    return room


def to_device(sender, type, content):
    return {"sender": sender, "type": type, "content": content}


def account_data(type, content):
    return {"type": type, "content": content}


def tags(tag_map):
    """Room account data m.tag: tag_map like {"m.favourite": {"order": 0.5}}."""
    return account_data("m.tag", {"tags": tag_map})


def typing(user_ids):
    return {"type": "m.typing", "content": {"user_ids": list(user_ids)}}


def receipt(event_id, user, ts=None, receipt_type="m.read", thread_id=None):
    data = {"ts": now_ts() if ts is None else ts}
    if thread_id is not None:
        data["thread_id"] = thread_id
    return {"type": "m.receipt", "content": {event_id: {receipt_type: {user: data}}}}


def sync_response(join=None, invite=None, leave=None, to_device=(), device_lists=None,
                  account_data=(), otk_counts=None, fallback_key_types=None, next_batch=None):
    """A v2 /sync body. join/invite/leave: room_id -> joined_room()/invited_room()/left_room().
    device_lists: {"changed": [...], "left": [...]}."""
    body = {}
    if next_batch is not None:
        body["next_batch"] = next_batch
    rooms = {}
    if join:
        rooms["join"] = join
    if invite:
        rooms["invite"] = invite
    if leave:
        rooms["leave"] = leave
    if rooms:
        body["rooms"] = rooms
    if to_device:
        body["to_device"] = {"events": list(to_device)}
    if device_lists is not None:
        body["device_lists"] = {"changed": list(device_lists.get("changed", ())),
                                "left": list(device_lists.get("left", ()))}
    if account_data:
        body["account_data"] = {"events": list(account_data)}
    if otk_counts is not None:
        body["device_one_time_keys_count"] = otk_counts
    if fallback_key_types is not None:
        body["device_unused_fallback_key_types"] = list(fallback_key_types)
    return body


# =========================================================================
# Standalone mode (the demo script lives in fakehs_demo.py)
# =========================================================================

def main(argv=None):
    ap = argparse.ArgumentParser(description="syncv3's scripted fake homeserver")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--unix", help="listen on this unix socket path instead of TCP")
    ap.add_argument("--script", choices=["demo", "none"], default="none")
    ap.add_argument("--interval", type=float, default=5.0, help="demo: seconds between messages")
    ap.add_argument("--token", action="append", default=[], metavar="TOKEN:USER_ID:DEVICE_ID",
                    help="register a token (script none)")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    hs = FakeHomeserver(args.host, args.port, unix_path=args.unix, verbose=args.verbose).start()
    for spec in args.token:
        tok, rest = spec.split(":", 1)
        uid, dev = rest.rsplit(":", 1)
        hs.register(tok, uid, dev)
    if args.script == "demo":
        # Run as a script, this module is __main__: the demo must use this copy of it.
        sys.modules.setdefault("fakehs", sys.modules[__name__])
        import fakehs_demo
        fakehs_demo.run_demo(hs, args.interval)
        for token, (uid, dev, _) in fakehs_demo.DEMO_USERS.items():
            print("token %s  user %s  device %s" % (token, uid, dev), flush=True)
    print("fakehs listening on %s" % hs.url, flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    while not done.wait(0.5):
        pass
    hs.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
