"""room_subscriptions and unsubscribe_rooms (docs/behaviour.md, "Sticky parameters",
"Processing order", "Membership and security")."""

import pytest

import fakehs as F
from helpers import run_in_thread


@pytest.fixture
def rooms(alice):
    """Rooms named Apple (r1), Banana (r2), Cherry (r3); timelines of 3 messages each."""
    A = alice.user_id
    out, join = [], {}
    for n in ("Apple", "Banana", "Cherry"):
        rid = F.new_room_id(n.lower())
        st = F.room_state(A, n)
        tl = [F.message(A, "%s %d" % (n, i)) for i in range(3)]
        join[rid] = F.joined_room(st, tl, prev_batch="pb_" + n)
        out.append((rid, st, tl))
    alice.queue(F.sync_response(join=join))
    return out


BY_NAME_TOP = {"a": {"ranges": [[0, 0]], "sort": ["by_name"], "timeline_limit": 1}}


def test_subscription_outside_the_window(proxy, alice, rooms):
    (r1, _, t1), (r2, _, _), (r3, s3, t3) = rooms
    resp = proxy.client(alice.token).sync({
        "lists": BY_NAME_TOP,
        "room_subscriptions": {r3: {"timeline_limit": 2, "required_state": [["m.room.name", ""]]}},
    })
    assert resp["lists"]["a"]["ops"] == [{"op": "SYNC", "range": [0, 0], "room_ids": [r1]}]
    assert set(resp["rooms"]) == {r1, r3}
    sub = resp["rooms"][r3]
    assert sub["initial"] is True
    assert sub["name"] == "Cherry"
    assert sub["timeline"] == t3[-2:]
    assert sub["required_state"] == [s3[4]]
    assert resp["rooms"][r1]["timeline"] == t1[-1:]


def test_subscription_to_rooms_not_joined_returns_nothing(proxy, alice, rooms):
    inv = F.new_room_id("inv")
    alice.queue(F.sync_response(invite={inv: F.invited_room(F.invite_to("@carol:localhost", alice.user_id))}))
    c = proxy.client(alice.token)
    resp = c.sync({"room_subscriptions": {"!nope:localhost": {"timeline_limit": 5}}}, timeout=300)
    assert not resp.get("rooms")
    alice.wait_idle()
    c.reset()
    resp = c.sync({"conn_id": "x", "room_subscriptions": {inv: {"timeline_limit": 5,
                                                                "required_state": [["*", "*"]]}}},
                  timeout=300)
    assert not resp.get("rooms"), "subscriptions to invited rooms return nothing"


def test_live_events_follow_subscriptions(proxy, alice, rooms):
    (r1, _, _), _, (r3, _, _) = rooms
    c = proxy.client(alice.token)
    c.sync({"lists": BY_NAME_TOP, "room_subscriptions": {r3: {"timeline_limit": 1}}})
    alice.wait_idle()
    ev = F.message(alice.user_id, "for the subscriber")
    alice.queue(F.sync_response(join={r3: F.joined_room(timeline=[ev])}))
    alice.wait_idle()
    resp = c.sync({}, timeout=5000)
    assert resp["rooms"][r3]["timeline"] == [ev]
    assert not resp["lists"]["a"].get("ops"), "by_name order did not change"

    resp = c.sync({"unsubscribe_rooms": [r3]}, timeout=100)
    assert r3 not in (resp.get("rooms") or {})
    h = run_in_thread(c.sync, {}, timeout=2000)
    alice.queue(F.sync_response(join={r3: F.joined_room(timeline=[F.message(alice.user_id, "unseen")])}))
    resp = h.result(30)
    assert r3 not in (resp.get("rooms") or {}), "unsubscribed room outside every window was sent"


def test_subscriptions_are_sticky(proxy, alice, rooms):
    _, (r2, _, _), _ = rooms
    c = proxy.client(alice.token)
    resp = c.sync({"room_subscriptions": {r2: {"timeline_limit": 1}}})
    assert r2 in resp["rooms"]
    alice.wait_idle()
    ev = F.message(alice.user_id, "later")
    alice.queue(F.sync_response(join={r2: F.joined_room(timeline=[ev])}))
    alice.wait_idle()
    resp = c.sync({}, timeout=5000)  # no room_subscriptions in this body
    assert resp["rooms"][r2]["timeline"] == [ev]
