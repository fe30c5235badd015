"""PostgreSQL restarting under a running syncv3: requests get a Matrix error
instead of a crash, pooled connections are re-established, ingest retries, and
nothing stored or delivered upstream is lost (issue: surviving faults)."""

import time

import pytest

import fakehs as F
import pgtmp


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
