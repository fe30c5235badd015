"""PostgreSQL restarting under a running syncv3: requests get a Matrix error
instead of a crash, pooled connections are re-established, ingest retries, and
nothing stored or delivered upstream is lost (issue: surviving faults); a database that stops
answering never holds an HTTP thread in a connect."""

import socket
import threading
import time

import pytest

import fakehs as F
import pgtmp
from helpers import User, run_in_thread


@pytest.fixture
def private_pg():
    """A PostgreSQL cluster of this test's own, so it can be stopped."""
    server = pgtmp.TempPostgres().start()
    try:
        conninfo = pgtmp.create_database(server.conninfo(), "syncv3")
        yield server, conninfo
    finally:
        server.stop()


def test_postgres_restart(make_proxy, private_pg, alice):
    server, conninfo = private_pg
    A = alice.user_id
    rid = F.new_room_id("pg")
    alice.queue(F.sync_response(join={rid: F.joined_room(F.room_state(A, "Survivor"), [F.message(A, "one")])}))
    proxy = make_proxy(db=conninfo, extra_env={"SYNCV3_MAX_DB_CONN": "2"})
    c = proxy.client(alice.token)
    resp = c.sync({"lists": {"a": {"ranges": [[0, 9]], "timeline_limit": 5}}})
    assert resp["rooms"][rid]["name"] == "Survivor"
    alice.wait_idle()

    # A fast shutdown (what a restart or upgrade does): clients are disconnected.
    server.stop(remove=False, mode="fast")
    # The homeserver keeps sending while the database is down.
    msg = F.message(A, "sent while the database was down")
    alice.queue(F.sync_response(join={rid: F.joined_room(timeline=[msg])}))
    time.sleep(1.5)
    # A new connection whose rooms need the database (timelines): a Matrix
    # error, not a crash or a hang.
    fresh = proxy.client(alice.token)
    r = fresh.request({"conn_id": "other", "lists": {"a": {"ranges": [[0, 9]], "timeline_limit": 1}}},
                      timeout=100)
    assert r.status in (500, 502, 503, 504), r
    assert r.json and r.json.get("errcode", "").startswith("M_"), r
    # An HTTP thread serves many clients: it gives up on the database quickly.
    assert r.elapsed < 2.0, r
    assert proxy.proc.poll() is None, "syncv3 exited while the database was down"

    server.start()
    # Ingest retries the response it could not store; the live connection gets it.
    deadline = time.monotonic() + 60
    seen = False
    while time.monotonic() < deadline and not seen:
        r = c.request({}, pos=c.pos, timeout=3000)
        assert r.status != 400, r  # the connection must survive the outage
        if r.status != 200:
            continue
        c.pos = r.json["pos"]
        tl = r.json.get("rooms", {}).get(rid, {}).get("timeline", [])
        seen = any(e["event_id"] == msg["event_id"] for e in tl)
    assert seen, "the message queued while the database was down never arrived"
    # And a new connection works again, showing it once.
    resp = proxy.client(alice.token).sync({"conn_id": "third", "lists": {"a": {"ranges": [[0, 9]], "timeline_limit": 5}}})
    ids = [e["event_id"] for e in resp["rooms"][rid]["timeline"]]
    assert ids.count(msg["event_id"]) == 1


class Gate:
    """A TCP forwarder to PostgreSQL that can stop answering. hang() drops the forwarded
    connections and from then on accepts new ones without ever reading or answering them (a
    server that is unreachable without refusing: a connect waits for its timeout);
    forward() closes those and forwards again."""

    def __init__(self, target):
        self.target = target
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.hanging = False
        self.pairs = []  # forwarded (client, upstream) sockets
        self.held = []   # accepted while hanging
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                cl, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                if self.hanging:
                    self.held.append(cl)
                    continue
                up = socket.create_connection(self.target)
                self.pairs.append((cl, up))
            for a, b in ((cl, up), (up, cl)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(a, b):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    @staticmethod
    def _drop(socks):
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def hang(self):
        with self.lock:
            self.hanging = True
            pairs, self.pairs = self.pairs, []
        self._drop([s for p in pairs for s in p])

    def forward(self):
        with self.lock:
            self.hanging = False
            held, self.held = self.held, []
        self._drop(held)

    def close(self):
        self.sock.close()
        self.hang()
        self.forward()


def test_http_requests_never_wait_for_a_database_connect(make_proxy, private_pg, hs, alice):
    server, _ = private_pg
    gate = Gate(("127.0.0.1", server.port))
    try:
        conninfo = "host=127.0.0.1 port=%d user=%s dbname=syncv3 sslmode=disable" % (gate.port, server.user)
        proxy = make_proxy(db=conninfo, extra_env={"SYNCV3_MAX_DB_CONN": "4"})
        alice.queue(F.sync_response(join={F.new_room_id(): F.joined_room(F.room_state(alice.user_id, "R"), [F.message(alice.user_id, "hi")])}))
        proxy.client(alice.token).sync({"lists": {"a": {"ranges": [[0, 9]]}}})
        alice.wait_idle()

        # The database stops answering: every pooled connection breaks, and a new one would wait
        # for its connect timeout. Unknown tokens need the token table, so every request below
        # wants a database connection; more of them than there are HTTP threads (8).
        gate.hang()
        time.sleep(0.5)
        started = time.monotonic()
        handles = [run_in_thread(proxy.client("syt_unknown_%d" % i).request, {}, timeout=100, http_timeout=15)
                   for i in range(12)]
        for h in handles:
            r = h.result(30)
            assert r.status == 503 and r.json["errcode"] == "M_UNKNOWN", r
            assert r.elapsed < 3.0, r
        assert time.monotonic() - started < 5.0
        assert proxy.proc.poll() is None

        # The database answers again: the pool reconnects on its own and requests work.
        gate.forward()
        bob = User(hs, "bob")
        bob.queue(F.sync_response(join={F.new_room_id(): F.joined_room(F.room_state(bob.user_id, "B"), [F.message(bob.user_id, "hi")])}))
        deadline = time.monotonic() + 30
        while True:
            r = proxy.client(bob.token).request({"lists": {"a": {"ranges": [[0, 9]]}}}, timeout=100)
            if r.status == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert r.status == 200, r
        assert r.json["lists"]["a"]["count"] == 1, r
    finally:
        gate.close()
