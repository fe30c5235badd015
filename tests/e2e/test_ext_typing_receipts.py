"""Extensions typing and receipts (docs/behaviour.md, "Extension scope", "typing",
"receipts", "Extensions and long-polling", "Ordering and de-duplication")."""

import time

from helpers import run_in_thread
import fakehs as F

TY = {"typing": {"enabled": True}}
RC = {"receipts": {"enabled": True}}


def shared_room(alice, bob, label="Shared"):
    """A room alice and bob are both joined to (both pollers deliver it);
    returns (room_id, the id of its last timeline event)."""
    rid = F.new_room_id()
    state = F.room_state(alice.user_id, label) + [F.join(bob.user_id)]
    msg = F.message(alice.user_id, "hello")
    body = F.sync_response(join={rid: F.joined_room(state, [msg])})
    alice.queue(body)
    bob.queue(body)
    return rid, msg["event_id"]


def own_room(user, label):
    rid = F.new_room_id()
    msg = F.message(user.user_id, label)
    user.queue(F.sync_response(join={rid: F.joined_room(F.room_state(user.user_id, label), [msg])}))
    return rid, msg["event_id"]


def ephemeral(user, rid, *edus):
    user.queue(F.sync_response(join={rid: F.joined_room(ephemeral=list(edus))}))


def started(proxy, *users):
    for u in users:
        proxy.client(u.token).sync({"conn_id": "warm-up"})
    for u in users:
        u.wait_idle()
    return [proxy.client(u.token) for u in users]


def ext(resp, name):
    return resp["extensions"].get(name)


def window(n=9, limit=5):
    return {"a": {"ranges": [[0, n]], "timeline_limit": limit}}


def parked(c, body=None):
    h = run_in_thread(c.sync, body or {}, timeout=20000)
    time.sleep(1.0)
    assert not h.done(), "the request should be long-polling"
    return h


# ---------------------------------------------------------------- typing

def test_typing_initial_live_and_stop(proxy, alice, bob):
    rid, _ = shared_room(alice, bob)
    ephemeral(alice, rid, F.typing([bob.user_id]))
    (c,) = started(proxy, alice)
    resp = c.sync({"lists": window(), "extensions": TY})
    assert ext(resp, "typing") == {"rooms": {rid: F.typing([bob.user_id])}}
    # nothing changed: nothing sent
    resp = c.sync({}, timeout=300)
    assert "typing" not in resp["extensions"]
    # a live change wakes a parked request
    h = parked(c)
    ephemeral(alice, rid, F.typing([bob.user_id, alice.user_id]))
    resp = h.result(30)
    assert ext(resp, "typing") == {"rooms": {rid: F.typing([bob.user_id, alice.user_id])}}
    # typing stops: the empty EDU is sent
    h = parked(c)
    ephemeral(alice, rid, F.typing([]))
    resp = h.result(30)
    assert ext(resp, "typing") == {"rooms": {rid: F.typing([])}}
    # a byte-identical repeat (e.g. from another poller) is no news
    ephemeral(alice, rid, F.typing([]))
    alice.wait_idle()
    resp = c.sync({}, timeout=500)
    assert "typing" not in resp["extensions"]


def test_typing_seen_by_other_member(proxy, alice, bob):
    rid, _ = shared_room(alice, bob)
    ca, cb = started(proxy, alice, bob)
    cb.sync({"lists": window(), "extensions": TY})
    h = parked(cb)
    # alice's poller delivers the EDU; bob's connection gets it
    ephemeral(alice, rid, F.typing([alice.user_id]))
    resp = h.result(30)
    assert ext(resp, "typing") == {"rooms": {rid: F.typing([alice.user_id])}}


def test_typing_scoped_to_window(proxy, alice):
    r1, _ = own_room(alice, "One")
    r2, _ = own_room(alice, "Two")  # newer: index 0
    ephemeral(alice, r1, F.typing(["@x:localhost"]))
    ephemeral(alice, r2, F.typing(["@y:localhost"]))
    (c,) = started(proxy, alice)
    resp = c.sync({"lists": window(0), "extensions": TY})
    assert set(resp["rooms"]) == {r2}
    assert ext(resp, "typing") == {"rooms": {r2: F.typing(["@y:localhost"])}}
    # a change in r1 (outside the window) is not sent and does not wake the request
    ephemeral(alice, r1, F.typing(["@z:localhost"]))
    alice.wait_idle()
    t0 = time.time()
    resp = c.sync({}, timeout=1500)
    assert time.time() - t0 >= 1.0
    assert "typing" not in resp["extensions"]
    # a list that excludes everything: nothing at all
    resp = c.sync({"extensions": {"typing": {"lists": []}}}, timeout=100)
    ephemeral(alice, r2, F.typing([]))
    alice.wait_idle()
    resp = c.sync({}, timeout=500)
    assert "typing" not in resp["extensions"]
    # an explicitly listed room is in scope
    resp = c.sync({"extensions": {"typing": {"rooms": [r1]}}}, timeout=100)
    ephemeral(alice, r1, F.typing(["@w:localhost"]))
    alice.wait_idle()
    resp = c.sync({}, timeout=5000)
    assert ext(resp, "typing") == {"rooms": {r1: F.typing(["@w:localhost"])}}


def test_typing_enabled_later(proxy, alice):
    rid, _ = own_room(alice, "Room")
    ephemeral(alice, rid, F.typing(["@x:localhost"]))
    (c,) = started(proxy, alice)
    resp = c.sync({"lists": window()})
    assert rid in resp["rooms"]
    assert "typing" not in resp["extensions"]
    # enabling alone sends nothing for rooms not in this response
    resp = c.sync({"extensions": TY}, timeout=100)
    assert "typing" not in resp["extensions"]
    # but live changes come from now on
    h = parked(c)
    ephemeral(alice, rid, F.typing([]))
    resp = h.result(30)
    assert ext(resp, "typing") == {"rooms": {rid: F.typing([])}}
    # and a room that (re)enters the response carries its current EDU
    resp = c.sync({"lists": {"b": {"ranges": [[0, 0]], "timeline_limit": 1}}}, timeout=100)
    assert rid in resp["rooms"]
    assert ext(resp, "typing") == {"rooms": {rid: F.typing([])}}


def test_typing_disabled_sends_nothing(proxy, alice):
    rid, _ = own_room(alice, "Room")
    ephemeral(alice, rid, F.typing(["@x:localhost"]))
    (c,) = started(proxy, alice)
    resp = c.sync({"lists": window(), "extensions": {"typing": {"enabled": False}}})
    assert "typing" not in resp["extensions"]
    ephemeral(alice, rid, F.typing([]))
    alice.wait_idle()
    resp = c.sync({}, timeout=500)
    assert "typing" not in resp["extensions"]


# ---------------------------------------------------------------- receipts

def receipts_of(resp, rid):
    edu = ext(resp, "receipts")["rooms"][rid]
    assert edu["type"] == "m.receipt"
    return edu["content"]


def test_receipts_public_and_private_initial(proxy, alice, bob):
    rid, eid = shared_room(alice, bob)
    ephemeral(alice, rid,
              F.receipt(eid, alice.user_id, ts=1000),
              F.receipt(eid, alice.user_id, ts=1001, receipt_type="m.read.private"),
              F.receipt(eid, "@carol:localhost", ts=1002),
              F.receipt("$elsewhere", "@dave:localhost", ts=1003))
    ca, cb = started(proxy, alice, bob)
    # alice: public receipts on the timeline event, and all her own (incl. private)
    resp = ca.sync({"lists": window(), "extensions": RC})
    content = receipts_of(resp, rid)
    assert content == {eid: {"m.read": {alice.user_id: {"ts": 1000}, "@carol:localhost": {"ts": 1002}},
                             "m.read.private": {alice.user_id: {"ts": 1001}}}}
    # bob: the public ones only
    resp = cb.sync({"lists": window(), "extensions": RC})
    content = receipts_of(resp, rid)
    assert content == {eid: {"m.read": {alice.user_id: {"ts": 1000}, "@carol:localhost": {"ts": 1002}}}}


def test_receipts_live_public_wakes_private_only_owner(proxy, alice, bob):
    rid, eid = shared_room(alice, bob)
    ca, cb = started(proxy, alice, bob)
    ca.sync({"lists": window(), "extensions": RC})
    cb.sync({"lists": window(), "extensions": RC})
    # a live public receipt wakes bob's parked request
    h = parked(cb)
    ephemeral(alice, rid, F.receipt(eid, alice.user_id, ts=5))
    resp = h.result(30)
    assert receipts_of(resp, rid) == {eid: {"m.read": {alice.user_id: {"ts": 5}}}}
    resp = ca.sync({}, timeout=5000)
    assert receipts_of(resp, rid) == {eid: {"m.read": {alice.user_id: {"ts": 5}}}}
    # alice's private receipt: to alice only; bob's request is not woken
    hb = parked(cb)
    ha = parked(ca)
    ephemeral(alice, rid, F.receipt(eid, alice.user_id, ts=6, receipt_type="m.read.private"))
    resp = ha.result(30)
    assert receipts_of(resp, rid) == {eid: {"m.read.private": {alice.user_id: {"ts": 6}}}}
    time.sleep(1.0)
    assert not hb.done()
    # an unchanged receipt (same event) is not re-sent; a moved one is
    ephemeral(alice, rid, F.receipt(eid, alice.user_id, ts=7))
    alice.wait_idle()
    time.sleep(0.5)
    assert not hb.done()
    msg = F.message(bob.user_id, "next")
    alice.queue(F.sync_response(join={rid: F.joined_room(timeline=[msg], ephemeral=[
        F.receipt(msg["event_id"], alice.user_id, ts=8)])}))
    resp = hb.result(30)
    assert [e["event_id"] for e in resp["rooms"][rid]["timeline"]] == [msg["event_id"]]
    assert receipts_of(resp, rid) == {msg["event_id"]: {"m.read": {alice.user_id: {"ts": 8}}}}


def test_receipts_unthreaded_wins(proxy, alice):
    rid, eid = own_room(alice, "Room")
    ephemeral(alice, rid,
              F.receipt(eid, alice.user_id, ts=10, thread_id="$thread"),
              F.receipt(eid, alice.user_id, ts=9))
    (c,) = started(proxy, alice)
    resp = c.sync({"lists": window(), "extensions": RC})
    assert receipts_of(resp, rid) == {eid: {"m.read": {alice.user_id: {"ts": 9}}}}
    # threaded alone keeps its thread_id
    rid2, eid2 = own_room(alice, "Other")
    alice.wait_idle()
    c.sync({}, timeout=5000)
    h = parked(c)
    ephemeral(alice, rid2, F.receipt(eid2, alice.user_id, ts=11, thread_id="$t2"))
    resp = h.result(30)
    assert receipts_of(resp, rid2) == {eid2: {"m.read": {alice.user_id: {"ts": 11, "thread_id": "$t2"}}}}


def test_receipts_scoped(proxy, alice):
    r1, e1 = own_room(alice, "One")
    r2, e2 = own_room(alice, "Two")  # newer: index 0
    ephemeral(alice, r1, F.receipt(e1, "@x:localhost", ts=1))
    ephemeral(alice, r2, F.receipt(e2, "@y:localhost", ts=2))
    (c,) = started(proxy, alice)
    resp = c.sync({"lists": window(0), "extensions": RC})
    assert set(ext(resp, "receipts")["rooms"]) == {r2}
    ephemeral(alice, r1, F.receipt(e1, "@z:localhost", ts=3))
    alice.wait_idle()
    resp = c.sync({}, timeout=1000)
    assert "receipts" not in resp["extensions"]


def test_receipts_enabled_later(proxy, alice):
    rid, eid = own_room(alice, "Room")
    (c,) = started(proxy, alice)
    c.sync({"lists": window()})
    resp = c.sync({"extensions": RC}, timeout=100)
    assert "receipts" not in resp["extensions"]
    h = parked(c)
    ephemeral(alice, rid, F.receipt(eid, "@x:localhost", ts=4))
    resp = h.result(30)
    assert receipts_of(resp, rid) == {eid: {"m.read": {"@x:localhost": {"ts": 4}}}}
