"""Connection semantics (docs/behaviour.md, "Connections"): several conn_ids per device, pos
retransmission, txn_id echo, a newer request cancelling a parked one, the
queue bound, the bound on unacknowledged responses, and a new token taking over a device's poller."""

import time

from helpers import User, run_in_thread
import fakehs as F

LIST = {"ranges": [[0, 9]], "timeline_limit": 1}


def one_room(user, name="Room"):
    rid = F.new_room_id()
    user.queue(F.sync_response(join={rid: F.joined_room(F.room_state(user.user_id, name),
                                                         [F.message(user.user_id, "hi")])}))
    return rid


def send(user, rid, text):
    ev = F.message(user.user_id, text)
    user.queue(F.sync_response(join={rid: F.joined_room(timeline=[ev])}))
    return ev


def test_conn_ids_are_independent(proxy, alice):
    rid = one_room(alice)
    a, b = proxy.client(alice.token), proxy.client(alice.token)
    ra = a.sync({"conn_id": "a", "lists": {"x": LIST}})
    rb = b.sync({"conn_id": "b", "lists": {"y": {"ranges": [[0, 0]]}}})
    assert set(ra["lists"]) == {"x"} and set(rb["lists"]) == {"y"}
    assert ra["pos"] == rb["pos"] == "1"  # each connection counts its own responses
    # a's pos means nothing to b, and a new request on b leaves a alive
    r = b.request({"conn_id": "b"}, pos="5", timeout=100)
    assert r.status == 400 and r.json["errcode"] == "M_UNKNOWN_POS"
    ev = send(alice, rid, "to both")
    for c, cid in ((a, "a"), (b, "b")):
        resp = c.sync({"conn_id": cid}, timeout=10000)
        assert resp["rooms"][rid]["timeline"][-1]["event_id"] == ev["event_id"], cid


def test_retransmitted_request_gets_the_same_response(proxy, alice):
    rid = one_room(alice)
    c = proxy.client(alice.token)
    c.sync({"lists": {"x": LIST}})
    alice.wait_idle()
    ev = send(alice, rid, "once")
    alice.wait_idle()
    pos = c.pos
    first = c.request({}, pos=pos, timeout=5000)
    assert first.status == 200 and first.json["rooms"][rid]["timeline"][-1]["event_id"] == ev["event_id"]
    # The client did not get it (say): the same pos and body give the same response.
    again = c.request({}, pos=pos, timeout=5000)
    assert again.status == 200
    assert again.json == first.json
    # Acknowledging it moves on; the old pos before it is gone.
    nxt = c.request({}, pos=first.json["pos"], timeout=100)
    assert nxt.status == 200 and int(nxt.json["pos"]) == int(first.json["pos"]) + 1
    stale = c.request({}, pos="1000", timeout=100)
    assert stale.status == 400 and stale.json["errcode"] == "M_UNKNOWN_POS"


def test_txn_id_is_echoed(proxy, alice):
    one_room(alice)
    c = proxy.client(alice.token)
    resp = c.sync({"txn_id": "t-1", "lists": {"x": LIST}})
    assert resp["txn_id"] == "t-1"
    resp = c.sync({"txn_id": "t-2", "lists": {"x": {"ranges": [[0, 3]]}}}, timeout=100)
    assert resp["txn_id"] == "t-2"
    resp = c.sync({}, timeout=100)
    assert "txn_id" not in resp


def test_newer_request_cancels_the_parked_one(proxy, alice):
    one_room(alice)
    c = proxy.client(alice.token)
    c.sync({"lists": {"x": LIST}})
    alice.wait_idle()
    pos = c.pos
    parked = run_in_thread(c.request, {}, pos=pos, timeout=30000)
    time.sleep(1.0)
    assert not parked.done()
    t0 = time.monotonic()
    newer = c.request({"lists": {"x": {"ranges": [[0, 5]]}}}, pos=pos, timeout=100)
    old = parked.result(20)
    assert time.monotonic() - t0 < 10, "the parked request was not cancelled"
    assert old.status == 200, old
    assert newer.status == 200, newer


def test_a_connection_that_falls_too_far_behind_is_ended(proxy, alice):
    rid = one_room(alice)
    c = proxy.client(alice.token)
    c.sync({"lists": {"x": LIST}})
    alice.wait_idle()
    # More live updates than a connection may queue (2,000), with no request to drain them.
    evs = [F.message(alice.user_id, "flood %d" % i) for i in range(2100)]
    alice.queue(F.sync_response(join={rid: F.joined_room(timeline=evs)}))
    alice.wait_idle(timeout=60)
    r = c.request({}, pos=c.pos, timeout=100)
    assert r.status == 400 and r.json["errcode"] == "M_UNKNOWN_POS", r
    # Starting over works and shows the newest events.
    c.reset()
    resp = c.sync({"lists": {"x": LIST}})
    assert resp["rooms"][rid]["timeline"][-1]["event_id"] == evs[-1]["event_id"]


def test_a_client_that_never_acknowledges_is_ended_rather_than_losing_a_response(proxy, alice):
    rid = one_room(alice)
    c = proxy.client(alice.token)
    c.sync({"lists": {"x": LIST}})
    alice.wait_idle()
    pos = c.pos
    ev = send(alice, rid, "only in the missed response")
    alice.wait_idle()
    missed = c.request({}, pos=pos, timeout=5000)
    assert missed.status == 200 and missed.json["rooms"][rid]["timeline"][-1]["event_id"] == ev["event_id"]
    # The client never gets it and keeps asking from pos with a changed body (as js-sdk does when
    # its ranges move): each time the missed response comes again, and each changed body buffers
    # one more response the client never received, until more than 8 are unacknowledged.
    ended = False
    for i in range(12):
        r = c.request({"lists": {"x": {"ranges": [[0, 9 - i % 2]], "timeline_limit": 1}}}, pos=pos, timeout=100)
        if r.status == 400:
            assert r.json["errcode"] == "M_UNKNOWN_POS", r
            ended = True
            break
        # Never a later response that skips the event.
        assert r.status == 200 and r.json == missed.json, (i, r)
    assert ended, "the connection should end once its unacknowledged responses pass the bound"
    # Starting over loses nothing.
    c.reset()
    resp = c.sync({"lists": {"x": LIST}})
    assert resp["rooms"][rid]["timeline"][-1]["event_id"] == ev["event_id"]


def test_a_new_token_for_the_device_takes_over_the_poller(proxy, hs, alice):
    rid = one_room(alice)
    c = proxy.client(alice.token)
    c.sync({"lists": {"x": LIST}})
    alice.wait_idle()
    # The device refreshes its token (same user, same device).
    newer = User(hs, "alice", device_id=alice.device_id)
    n_old = len(alice.syncs())
    c2 = proxy.client(newer.token)
    c2.sync({"conn_id": "n", "lists": {"x": LIST}})
    send(newer, rid, "via the new token")
    # the poller switches tokens at its next request (after the current long-poll)
    hs.wait_for_sync(newer.token, 1, timeout=45)
    # The old token is retired upstream: the poller keeps going with the new one.
    hs.revoke(alice.token)
    ev = send(newer, rid, "still polling")
    resp = c2.sync({"conn_id": "n"}, timeout=15000)
    got = [e["event_id"] for e in resp["rooms"].get(rid, {}).get("timeline", [])]
    deadline = time.monotonic() + 45
    while ev["event_id"] not in got and time.monotonic() < deadline:
        resp = c2.sync({"conn_id": "n"}, timeout=5000)
        got += [e["event_id"] for e in resp["rooms"].get(rid, {}).get("timeline", [])]
    assert ev["event_id"] in got
    # the first connection (the device's) was not ended by the old token's death:
    # the client carries on with the new token
    r = c.request({}, pos=c.pos, timeout=100, token=newer.token)
    assert r.status == 200, r
    assert len(alice.syncs()) >= n_old
    # while the old token, superseded and rejected upstream, gets 401
    r = c.request({}, pos=r.json["pos"], timeout=100)
    assert r.status == 401 and r.json["errcode"] == "M_UNKNOWN_TOKEN", r
