"""Live updates and long-polling (docs/behaviour.md, "Long-polling", "Live ops", "Live updates")."""

import time

import pytest

from helpers import run_in_thread, sync_op_room_ids
import fakehs as F


@pytest.fixture
def live(proxy, alice):
    """alice with rooms r1, r2, r3 (recency r3 > r2 > r1) and a connection on list "a"
    (ranges [[0, 9]], by_recency, timeline_limit 1) whose first response was consumed."""
    A = alice.user_id
    ids = [F.new_room_id("r%d" % i) for i in (1, 2, 3)]
    join = {}
    for i, rid in enumerate(ids):
        join[rid] = F.joined_room(F.room_state(A, "Room %d" % (i + 1)), [F.message(A, "first %d" % i)])
    alice.queue(F.sync_response(join=join))
    c = proxy.client(alice.token)
    resp = c.sync({"lists": {"a": {"ranges": [[0, 9]], "sort": ["by_recency"], "timeline_limit": 1}}})
    assert sync_op_room_ids(resp, "a") == ids[::-1]
    alice.wait_idle()
    return c, ids


def send(user, rid, text, **counts):
    ev = F.message(user.user_id, text)
    user.queue(F.sync_response(join={rid: F.joined_room(timeline=[ev], **counts)}))
    return ev


def parked(c, timeout_ms=20000, body=None):
    """Starts a long-poll on c's pos in the background."""
    h = run_in_thread(c.sync, body or {}, timeout=timeout_ms)
    time.sleep(1.0)
    assert not h.done(), "the long-poll returned although nothing happened"
    return h


def test_message_wakes_parked_long_poll_and_moves_room(live, alice):
    c, (r1, r2, r3) = live
    h = parked(c)
    t0 = time.monotonic()
    ev = send(alice, r1, "wake up")
    resp = h.result(30)
    assert time.monotonic() - t0 < 10, "the long-poll was not woken by the new event"
    a = resp["lists"]["a"]
    assert a["count"] == 3
    assert a["ops"] == [{"op": "DELETE", "index": 2}, {"op": "INSERT", "index": 0, "room_id": r1}]
    room = resp["rooms"][r1]
    assert room["timeline"] == [ev]
    assert room.get("num_live") == 1
    assert set(resp["rooms"]) == {r1}


def test_message_in_top_room_gives_no_ops(live, alice):
    c, (r1, r2, r3) = live
    h = parked(c)
    ev = send(alice, r3, "still on top")
    resp = h.result(30)
    assert not resp["lists"]["a"].get("ops"), resp["lists"]["a"]
    assert resp["lists"]["a"]["count"] == 3
    assert resp["rooms"][r3]["timeline"] == [ev]
    assert "initial" not in resp["rooms"][r3]


def test_successive_moves(live, alice):
    c, (r1, r2, r3) = live
    send(alice, r1, "one")
    alice.wait_idle()
    resp = c.sync({}, timeout=5000)
    assert resp["lists"]["a"]["ops"] == [{"op": "DELETE", "index": 2},
                                         {"op": "INSERT", "index": 0, "room_id": r1}]
    # order is now r1 r3 r2; bump r2 (index 2) to the top
    ev = send(alice, r2, "two")
    alice.wait_idle()
    resp = c.sync({}, timeout=5000)
    assert resp["lists"]["a"]["ops"] == [{"op": "DELETE", "index": 2},
                                         {"op": "INSERT", "index": 0, "room_id": r2}]
    assert resp["rooms"][r2]["timeline"][-1] == ev
    # a fresh connection sees the new order
    c2 = c.proxy.client(alice.token)
    resp = c2.sync({"conn_id": "fresh", "lists": {"a": {"ranges": [[0, 9]]}}})
    assert sync_op_room_ids(resp, "a") == [r2, r1, r3]


def test_room_entering_the_window_gets_a_snapshot(proxy, alice):
    A = alice.user_id
    ids = [F.new_room_id("w%d" % i) for i in range(3)]
    st = {}
    for i, rid in enumerate(ids):
        st[rid] = F.room_state(A, "W%d" % i)
    alice.queue(F.sync_response(join={rid: F.joined_room(st[rid], [F.message(A, "m")]) for rid in ids}))
    c = proxy.client(alice.token)
    resp = c.sync({"lists": {"a": {"ranges": [[0, 1]], "timeline_limit": 2,
                                   "required_state": [["m.room.name", ""]]}}})
    assert sync_op_room_ids(resp, "a") == [ids[2], ids[1]]
    alice.wait_idle()
    ev = send(alice, ids[0], "from below")
    alice.wait_idle()
    resp = c.sync({}, timeout=5000)
    assert resp["lists"]["a"]["ops"] == [{"op": "DELETE", "index": 1},
                                         {"op": "INSERT", "index": 0, "room_id": ids[0]}]
    room = resp["rooms"][ids[0]]
    assert room["initial"] is True
    assert room["name"] == "W0"
    assert room["timeline"][-1] == ev
    assert [e["type"] for e in room["required_state"]] == ["m.room.name"]


def test_new_room_is_inserted(live, alice):
    c, (r1, r2, r3) = live
    A = alice.user_id
    rnew = F.new_room_id("new")
    alice.queue(F.sync_response(join={rnew: F.joined_room(F.room_state(A, "Brand new"),
                                                           [F.message(A, "hello new")])}))
    alice.wait_idle()
    resp = c.sync({}, timeout=5000)
    a = resp["lists"]["a"]
    assert a["count"] == 4
    assert a["ops"] == [{"op": "DELETE", "index": 3}, {"op": "INSERT", "index": 0, "room_id": rnew}]
    assert resp["rooms"][rnew]["initial"] is True
    assert resp["rooms"][rnew]["name"] == "Brand new"


def test_timeout_expiry_returns_no_ops(live):
    c, ids = live
    old_pos = c.pos
    t0 = time.monotonic()
    resp = c.sync({}, timeout=1500)
    elapsed = time.monotonic() - t0
    assert elapsed >= 1.3, "returned after %.2fs, before the timeout" % elapsed
    assert elapsed < 10
    assert resp["lists"]["a"]["count"] == 3
    assert not resp["lists"]["a"].get("ops")
    assert not resp.get("rooms")
    assert c.pos != old_pos


def test_small_timeouts_are_raised_to_100ms(live):
    c, ids = live
    t0 = time.monotonic()
    c.sync({}, timeout=0)
    assert time.monotonic() - t0 >= 0.09


def test_unread_count_change_is_pushed(live, alice):
    c, (r1, r2, r3) = live
    h = parked(c)
    alice.queue(F.sync_response(join={r1: F.joined_room(notification_count=4, highlight_count=2)}))
    resp = h.result(30)
    room = resp["rooms"][r1]
    assert (room["notification_count"], room["highlight_count"]) == (4, 2)
    assert "timeline" not in room


def test_new_request_cancels_parked_one(live):
    c, ids = live
    pos = c.pos
    h = parked(c)
    t0 = time.monotonic()
    r = c.request({}, pos=pos, timeout=100)
    assert r.status in (200, 400), r
    first = h.result(30)
    assert time.monotonic() - t0 < 10, "the parked request was not cancelled"
    assert isinstance(first["pos"], str)
