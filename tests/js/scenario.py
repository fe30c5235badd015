#!/usr/bin/env python3
"""The fake homeserver for the real-client test (tests/js), as a separate process.

Starts tests/e2e/fakehs.py's FakeHomeserver with one user whose first /sync
holds a few rooms with strictly increasing activity, plus a small control
HTTP server the Node test drives:

  GET  /scenario         -> {"user_id", "device_id", "token", "rooms": [{"room_id", "name",
                             "last_event"}...] (oldest activity first)}
  POST /message          {"room_id", "body"} -> queues a v2 /sync response carrying a new
                             m.room.message in that room; answers {"event": <the event>}
  POST /wait_idle        {"timeout"?: seconds} -> 200 once the proxy processed everything
                             queued and polled again; 504 on timeout
  GET  /requests         -> the /sync, whoami and versions requests the proxy made
                             (for diagnostics)

When both servers listen, one JSON line {"hs_url", "control_url"} is written to
--info FILE (atomically) and to stdout. SIGTERM/SIGINT stop it.
"""

import argparse
import json
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
import fakehs as F  # noqa: E402

SERVER = "localhost"
USER = "@jsclient:" + SERVER
DEVICE = "JSCLIENTDEV"
TOKEN = "syt_jsclient_0123456789"
ROOM_NAMES = ["Alpha", "Bravo", "Charlie", "Delta"]


class Scenario:
    def __init__(self, hs):
        self.hs = hs
        self.lock = threading.Lock()
        hs.register(TOKEN, USER, DEVICE)
        other = "@friend:" + SERVER
        self.rooms = []
        join = {}
        # Created in order, so activity (origin_server_ts, strictly increasing) is
        # Alpha < Bravo < Charlie < Delta: by_recency lists Delta first, Alpha last.
        for i, name in enumerate(ROOM_NAMES):
            rid = "!js%d_%s:%s" % (i + 1, name.lower(), SERVER)
            st = F.room_state(USER, name) + [F.join(other)]
            last = F.message(other, "hello from %s" % name)
            join[rid] = F.joined_room(st, [F.message(USER, "welcome to %s" % name), last],
                                      prev_batch="p_js_%d" % i)
            self.rooms.append({"room_id": rid, "name": name, "last_event": last})
        hs.queue(TOKEN, F.sync_response(join=join))

    def describe(self):
        return {"user_id": USER, "device_id": DEVICE, "token": TOKEN, "rooms": self.rooms}

    def message(self, room_id, body):
        if room_id not in {r["room_id"] for r in self.rooms}:
            raise KeyError(room_id)
        ev = F.message("@friend:" + SERVER, body)
        self.hs.queue(TOKEN, F.sync_response(join={room_id: F.joined_room(timeline=[ev])}))
        return ev

    def requests(self):
        out = []
        for r in list(self.hs.requests):
            out.append({"method": r.method, "path": r.path, "query": r.raw_query, "status": r.status,
                        "served_next_batch": r.served_next_batch})
        return out


def make_control(scenario):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):
            pass

        def _reply(self, status, obj):
            data = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self):
            n = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(n) if n else b""
            return json.loads(raw) if raw else {}

        def do_GET(self):
            if self.path == "/scenario":
                return self._reply(200, scenario.describe())
            if self.path == "/requests":
                return self._reply(200, scenario.requests())
            self._reply(404, {"error": "unknown path"})

        def do_POST(self):
            try:
                body = self._body()
            except ValueError:
                return self._reply(400, {"error": "body is not JSON"})
            if self.path == "/message":
                try:
                    ev = scenario.message(body["room_id"], body.get("body", "ping"))
                except KeyError as e:
                    return self._reply(400, {"error": "unknown room or missing field: %s" % e})
                return self._reply(200, {"event": ev})
            if self.path == "/wait_idle":
                try:
                    scenario.hs.wait_until_idle(TOKEN, float(body.get("timeout", 15)))
                except AssertionError as e:
                    return self._reply(504, {"error": str(e)})
                return self._reply(200, {})
            self._reply(404, {"error": "unknown path"})

    class Server(ThreadingHTTPServer):
        daemon_threads = True

    return Server(("127.0.0.1", 0), Handler)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--info", help="write the listening URLs here (one JSON line)")
    args = ap.parse_args(argv)
    hs = F.FakeHomeserver().start()
    scenario = Scenario(hs)
    control = make_control(scenario)
    threading.Thread(target=control.serve_forever, kwargs={"poll_interval": 0.1},
                     daemon=True).start()
    info = json.dumps({"hs_url": hs.url,
                       "control_url": "http://127.0.0.1:%d" % control.server_address[1]})
    if args.info:
        tmp = args.info + ".tmp"
        with open(tmp, "w") as f:
            f.write(info + "\n")
        os.replace(tmp, args.info)
    print(info, flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    while not done.wait(0.5):
        pass
    control.shutdown()
    control.server_close()
    hs.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
