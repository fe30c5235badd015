#!/usr/bin/env python3
"""The fake homeserver for the real-client test (tests/js), as a separate process.

Starts tests/e2e/fakehs.py's FakeHomeserver with one user whose first /sync
holds a few rooms with strictly increasing activity, plus a small control
HTTP server the Node test drives:

  GET  /scenario         -> {"user_id", "device_id", "token", "rooms": [{"room_id", "name",
                             "last_event"}...] (oldest activity first)}
  POST /message          {"room_id", "body", "sender"?, "notification_count"?,
                          "highlight_count"?} -> queues a v2 /sync response carrying a new
                             m.room.message in that room (from @friend, or from the given user
                             ID), with those unread counts; answers {"event": <the event>}
  POST /rename           {"room_id", "name"} -> the same with an m.room.name event from @friend
  POST /tag              {"room_id", "tags": {tag: {"order"?}}} -> queues that room's m.tag
                             account data; answers {"event"}
  POST /ephemeral        {"room_id", "typing"?: [user IDs], "receipt"?: {"event_id", "user"}} ->
                             queues that room's m.typing and/or m.receipt EDU; answers {"events"}
  POST /wait_idle        {"timeout"?: seconds} -> 200 once the proxy processed everything
                             queued and polled again; 504 on timeout
  GET  /requests         -> the /sync, whoami and versions requests the proxy made
                             (for diagnostics)

A second, independent user ("lister", for lists.test.mjs) has its own token and rooms, so the
test files (run concurrently by node --test) do not see each other's rooms:

  GET  /lists/scenario   -> {"user_id", "device_id", "token", "rooms": [{"room_id", "name",
                             "kind": "dm"|"group", "timeline": [events]}...] (oldest activity
                             first)}. Two DMs (m.direct account data, is_direct invites; no
                             room name, the other member has a displayname) and three named
                             rooms; "Zulu" has a topic, five timeline events and a member who
                             never spoke (@quiet, displayname "Quiet").
  POST /lists/invite     {"name"?} -> queues rooms.invite for a new room named `name`
                             (default "Kilo") from @carol; answers {"room_id", "invite_state"}
  POST /lists/accept     {"room_id"} -> queues rooms.join for that invite: the room's state and a
                             timeline with the user's join; answers {"event": <the join>}
  POST /lists/leave      {"room_id"} -> queues rooms.leave with the user's leave in the
                             timeline; answers {"event": <the leave>}

A third user ("crypter", for e2ee.test.mjs) has one room, and its first /sync carries one-time
key counts ({"signed_curve25519": 50}) and unused fallback key types (["signed_curve25519"]):

  GET  /e2ee/scenario    -> {"user_id", "device_id", "token", "rooms": [{"room_id", "name",
                             "last_event"}], "otk_counts", "fallback_key_types"}
  POST /e2ee/push        {"to_device"?: [{"sender"?, "type", "content"}...], "device_lists"?:
                             {"changed"?, "left"?}, "otk_counts"?, "fallback_key_types"?} ->
                             queues one v2 /sync response for the crypter carrying those
                             top-level sections; answers {"next_batch", "to_device": [events]}

The demo's users (tests/e2e/fakehs_demo.py: alice with 60 rooms, bob), for tests/browser; nothing
is sent by itself, a PUT /send reaches the room's members:

  GET  /demo/scenario    -> {"token", "user_id", "device_id", "count", "history", "rooms":
                             [{"room_id", "name", "has_avatar", "history_prefix"}...] (newest
                             activity first)}

/wait_idle takes an optional "token" (default: the first user's); /message, /rename, /tag and
/ephemeral also know the lister's and the crypter's rooms and then queue for that user.

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
import fakehs_demo  # noqa: E402

SERVER = "localhost"
USER = "@jsclient:" + SERVER
DEVICE = "JSCLIENTDEV"
TOKEN = "syt_jsclient_0123456789"
ROOM_NAMES = ["Alpha", "Bravo", "Charlie", "Delta"]

LISTER = "@lister:" + SERVER
LISTER_DEVICE = "LISTERDEV"
LISTER_TOKEN = "syt_lister_0123456789"

CRYPTER = "@crypter:" + SERVER
CRYPTER_DEVICE = "CRYPTERDEV"
CRYPTER_TOKEN = "syt_crypter_0123456789"
CRYPTER_OTK_COUNTS = {"signed_curve25519": 50}
CRYPTER_FALLBACK_KEY_TYPES = ["signed_curve25519"]


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
        self._setup_lister()
        self._setup_crypter()

    def describe(self):
        return {"user_id": USER, "device_id": DEVICE, "token": TOKEN, "rooms": self.rooms}

    def _token_of(self, room_id):
        if room_id in {r["room_id"] for r in self.rooms}:
            return TOKEN
        if room_id in {r["room_id"] for r in self.lister_rooms}:
            return LISTER_TOKEN
        if room_id in {r["room_id"] for r in self.crypter_rooms}:
            return CRYPTER_TOKEN
        raise KeyError(room_id)

    def _live(self, room_id, ev, **counts):
        token = self._token_of(room_id)
        self.hs.queue(token, F.sync_response(join={room_id: F.joined_room(timeline=[ev], **counts)}))
        return ev

    def message(self, room_id, body, sender=None, notification_count=None, highlight_count=None):
        return self._live(room_id, F.message(sender or "@friend:" + SERVER, body),
                          notification_count=notification_count, highlight_count=highlight_count)

    def rename(self, room_id, name):
        return self._live(room_id, F.name("@friend:" + SERVER, name))

    def tag(self, room_id, tags):
        ev = F.tags(tags)
        self.hs.queue(self._token_of(room_id), F.sync_response(
            join={room_id: F.joined_room(account_data=[ev])}))
        return ev

    def ephemeral(self, room_id, typing=None, receipt=None):
        evs = []
        if typing is not None:
            evs.append(F.typing(typing))
        if receipt is not None:
            evs.append(F.receipt(receipt["event_id"], receipt["user"]))
        self.hs.queue(self._token_of(room_id), F.sync_response(
            join={room_id: F.joined_room(ephemeral=evs)}))
        return evs

    # ---------------------------------------------------------------- the lister
    def _setup_lister(self):
        hs = self.hs
        hs.register(LISTER_TOKEN, LISTER, LISTER_DEVICE)
        friend = "@friend:" + SERVER
        self.lister_rooms = []
        self.lister_invites = {}  # room_id -> {"name", "state": [full events]}
        join = {}
        direct = {}

        def group(name, n_messages, topic=None, members=()):
            rid = "!ls_%s:%s" % (name.lower(), SERVER)
            st = F.room_state(LISTER, name) + [F.join(friend, displayname="Friend")]
            st += [F.join("@%s:%s" % (m.lower(), SERVER), displayname=m) for m in members]
            if topic is not None:
                st.append(F.topic(LISTER, topic))
            tl = [F.message(friend if i % 2 else LISTER, "%s message %d" % (name, i + 1))
                  for i in range(n_messages)]
            join[rid] = F.joined_room(st, tl, prev_batch="p_ls_%s" % name.lower())
            self.lister_rooms.append({"room_id": rid, "name": name, "kind": "group", "timeline": tl})

        def dm(localpart, displayname):
            other = "@%s:%s" % (localpart, SERVER)
            rid = "!ls_dm_%s:%s" % (localpart, SERVER)
            st = [F.create(LISTER), F.join(LISTER, displayname="Lister"), F.power_levels(LISTER),
                  F.join_rules(LISTER, "invite"), F.invite(LISTER, other, is_direct=True),
                  F.join(other, displayname=displayname)]
            tl = [F.message(other, "hi, it's %s" % displayname)]
            join[rid] = F.joined_room(st, tl, prev_batch="p_ls_dm_%s" % localpart)
            direct[other] = [rid]
            self.lister_rooms.append({"room_id": rid, "name": displayname, "kind": "dm",
                                      "timeline": tl})

        # Activity (origin_server_ts, strictly increasing in creation order):
        # Mike < Dee (DM) < Zulu < Oscar (DM) < Echo. By name the groups are Echo, Mike, Zulu.
        group("Mike", 2)
        dm("dee", "Dee")
        group("Zulu", 5, topic="the last letter", members=["Quiet"])
        dm("oscar", "Oscar")
        group("Echo", 2)
        hs.queue(LISTER_TOKEN, F.sync_response(
            join=join, account_data=[F.account_data("m.direct", direct)]))

    def lister_describe(self):
        return {"user_id": LISTER, "device_id": LISTER_DEVICE, "token": LISTER_TOKEN,
                "rooms": self.lister_rooms}

    def lister_invite(self, name):
        carol = "@carol:" + SERVER
        rid = "!ls_inv_%s:%s" % (name.lower(), SERVER)
        with self.lock:
            if rid in self.lister_invites:
                raise KeyError("room %s was already invited" % rid)
            evs = F.invite_to(carol, LISTER, room_name=name)
            self.lister_invites[rid] = {"name": name, "state": evs}
        self.hs.queue(LISTER_TOKEN, F.sync_response(invite={rid: F.invited_room(evs)}))
        return {"room_id": rid, "invite_state": [F.stripped(e) for e in evs]}

    def lister_accept(self, room_id):
        with self.lock:
            inv = self.lister_invites.pop(room_id)  # KeyError: not invited
        # The state before the join: the invite's events, the user's invite membership
        # included (the join in the timeline replaces it).
        st = list(inv["state"])
        ev = F.join(LISTER, displayname="Lister")
        self.hs.queue(LISTER_TOKEN, F.sync_response(
            join={room_id: F.joined_room(st, [ev], prev_batch="p_ls_join_%s" % inv["name"].lower())}))
        with self.lock:
            self.lister_rooms.append({"room_id": room_id, "name": inv["name"], "kind": "group",
                                      "timeline": [ev]})
        return {"event": ev}

    def lister_leave(self, room_id):
        with self.lock:
            if room_id not in {r["room_id"] for r in self.lister_rooms}:
                raise KeyError(room_id)
            self.lister_rooms = [r for r in self.lister_rooms if r["room_id"] != room_id]
        ev = F.leave(LISTER)
        self.hs.queue(LISTER_TOKEN, F.sync_response(leave={room_id: F.left_room(timeline=[ev])}))
        return {"event": ev}

    # ---------------------------------------------------------------- the crypter
    def _setup_crypter(self):
        self.hs.register(CRYPTER_TOKEN, CRYPTER, CRYPTER_DEVICE)
        friend = "@friend:" + SERVER
        rid = "!cr_kappa:" + SERVER
        st = F.room_state(CRYPTER, "Kappa") + [F.join(friend)]
        last = F.message(friend, "hello from Kappa")
        self.crypter_rooms = [{"room_id": rid, "name": "Kappa", "last_event": last}]
        self.hs.queue(CRYPTER_TOKEN, F.sync_response(
            join={rid: F.joined_room(st, [last], prev_batch="p_cr_kappa")},
            otk_counts=CRYPTER_OTK_COUNTS, fallback_key_types=CRYPTER_FALLBACK_KEY_TYPES))

    def crypter_describe(self):
        return {"user_id": CRYPTER, "device_id": CRYPTER_DEVICE, "token": CRYPTER_TOKEN,
                "rooms": self.crypter_rooms, "otk_counts": CRYPTER_OTK_COUNTS,
                "fallback_key_types": CRYPTER_FALLBACK_KEY_TYPES}

    def crypter_push(self, body):
        evs = [F.to_device(m.get("sender", "@friend:" + SERVER), m["type"], m.get("content", {}))
               for m in body.get("to_device", ())]
        nb = self.hs.queue(CRYPTER_TOKEN, F.sync_response(
            to_device=evs, device_lists=body.get("device_lists"),
            otk_counts=body.get("otk_counts"), fallback_key_types=body.get("fallback_key_types")))
        return {"next_batch": nb, "to_device": evs}

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
            if self.path == "/lists/scenario":
                return self._reply(200, scenario.lister_describe())
            if self.path == "/e2ee/scenario":
                return self._reply(200, scenario.crypter_describe())
            if self.path == "/demo/scenario":
                return self._reply(200, fakehs_demo.describe())
            self._reply(404, {"error": "unknown path"})

        def do_POST(self):
            try:
                body = self._body()
            except ValueError:
                return self._reply(400, {"error": "body is not JSON"})
            if self.path == "/message":
                try:
                    ev = scenario.message(body["room_id"], body.get("body", "ping"), body.get("sender"),
                                          body.get("notification_count"), body.get("highlight_count"))
                except KeyError as e:
                    return self._reply(400, {"error": "unknown room or missing field: %s" % e})
                return self._reply(200, {"event": ev})
            if self.path == "/wait_idle":
                try:
                    scenario.hs.wait_until_idle(body.get("token", TOKEN), float(body.get("timeout", 15)))
                except KeyError as e:
                    return self._reply(400, {"error": "unknown token: %s" % e})
                except AssertionError as e:
                    return self._reply(504, {"error": str(e)})
                return self._reply(200, {})
            try:
                if self.path == "/rename":
                    return self._reply(200, {"event": scenario.rename(body["room_id"], body["name"])})
                if self.path == "/tag":
                    return self._reply(200, {"event": scenario.tag(body["room_id"], body["tags"])})
                if self.path == "/ephemeral":
                    return self._reply(200, {"events": scenario.ephemeral(
                        body["room_id"], body.get("typing"), body.get("receipt"))})
                if self.path == "/lists/invite":
                    return self._reply(200, scenario.lister_invite(body.get("name", "Kilo")))
                if self.path == "/lists/accept":
                    return self._reply(200, scenario.lister_accept(body["room_id"]))
                if self.path == "/lists/leave":
                    return self._reply(200, scenario.lister_leave(body["room_id"]))
                if self.path == "/e2ee/push":
                    return self._reply(200, scenario.crypter_push(body))
            except KeyError as e:
                return self._reply(400, {"error": "unknown room or missing field: %s" % e})
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
    fakehs_demo.run_demo(hs, None)  # the demo's users and rooms, for tests/browser
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
