"""MSC4186 (simplified sliding sync): the endpoint, pos/timeout in the query, nothing
sticky, per-room deltas, SYNC ops with room_ids, room fields.
(docs/behaviour.md, "Simplified sliding sync")"""

import pytest

import fakehs as F
from helpers import SimplifiedSync, run_in_thread

RS = [["m.room.name", ""], ["m.room.member", "$ME"]]


def lists(ranges=((0, 9),), timeline_limit=2, required_state=RS, **extra):
    l = {"ranges": [list(r) for r in ranges], "timeline_limit": timeline_limit,
         "required_state": required_state}
    l.update(extra)
    return {"all": l}


@pytest.fixture
def rooms(alice):
    """Three named rooms, oldest first: Apple, Banana, Cherry (3 messages each), as
    (room_id, state, timeline) triples."""
    A = alice.user_id
    made = [(F.new_room_id(n.lower()), F.room_state(A, n), [F.message(A, "%s %d" % (n, i)) for i in range(3)])
            for n in ("Apple", "Banana", "Cherry")]
    alice.queue(F.sync_response(join={rid: F.joined_room(st, tl, prev_batch="pb_" + st[-1]["content"]["name"])
                                      for rid, st, tl in made}))
    return made


def sss(proxy, user):
    return SimplifiedSync(proxy, user.token)


def test_first_response(proxy, alice, rooms):
    (r1, s1, t1), (r2, _, t2), (r3, s3, t3) = rooms
    resp = sss(proxy, alice).sync({"lists": lists(ranges=[(0, 1)])})
    assert resp["lists"]["all"]["count"] == 3
    assert resp["lists"]["all"]["ops"] == [{"op": "SYNC", "range": [0, 1], "room_ids": [r3, r2]}]
    assert set(resp["rooms"]) == {r3, r2}
    room = resp["rooms"][r3]
    assert room["initial"] is True
    assert room["name"] == "Cherry"
    assert room["timeline"] == t3[-2:]
    assert room["limited"] is True
    assert isinstance(room["bump_stamp"], int) and room["bump_stamp"] >= t3[-1]["origin_server_ts"]
    assert room["joined_count"] == 1 and room["invited_count"] == 0
    assert room["notification_count"] == 0 and room["highlight_count"] == 0
    assert room["num_live"] == 0
    assert [e["type"] for e in room["required_state"]] == ["m.room.member", "m.room.name"] or \
        sorted(e["type"] for e in room["required_state"]) == ["m.room.member", "m.room.name"]
    assert "heroes" not in room, "a named room has no heroes"
    assert "extensions" in resp and isinstance(resp["rooms"], dict)


def test_ranges_one_sync_op_each(proxy, alice, rooms):
    (r1, _, _), (r2, _, _), (r3, _, _) = rooms
    resp = sss(proxy, alice).sync({"lists": lists(ranges=[(0, 0), (2, 5)])})
    assert resp["lists"]["all"]["ops"] == [
        {"op": "SYNC", "range": [0, 0], "room_ids": [r3]},
        {"op": "SYNC", "range": [2, 5], "room_ids": [r1]},
    ]
    assert set(resp["rooms"]) == {r3, r1}


def test_no_ranges_count_only(proxy, alice, rooms):
    resp = sss(proxy, alice).sync({"lists": {"all": {"timeline_limit": 1}}})
    assert resp["lists"]["all"] == {"count": 3}
    assert resp["rooms"] == {}


def test_unchanged_rooms_omitted_and_changes_only(proxy, alice, rooms):
    (r1, _, _), (r2, _, _), (r3, _, _) = rooms
    c = sss(proxy, alice)
    body = {"lists": lists()}
    c.sync(body)
    resp = c.sync(body)
    assert resp["rooms"] == {}, "no room changed"
    assert resp["lists"]["all"]["count"] == 3
    ev = F.message(alice.user_id, "new in Apple")
    alice.queue(F.sync_response(join={r1: F.joined_room(timeline=[ev])}))
    alice.wait_idle()
    resp = c.sync(body)
    assert set(resp["rooms"]) == {r1}
    room = resp["rooms"][r1]
    assert room["timeline"] == [ev]
    assert room["num_live"] == 1
    assert "initial" not in room
    assert "name" not in room, "the name did not change"
    assert resp["lists"]["all"]["ops"][0]["room_ids"] == [r1, r3, r2], "ordered by recency"


def test_timeline_state_change_in_required_state(proxy, alice, rooms):
    (r1, _, _), _, _ = rooms
    c = sss(proxy, alice)
    body = {"lists": lists()}
    c.sync(body)
    ev = F.name(alice.user_id, "Apricot")
    alice.queue(F.sync_response(join={r1: F.joined_room(timeline=[ev])}))
    alice.wait_idle()
    room = c.sync(body)["rooms"][r1]
    assert room["name"] == "Apricot"
    assert room["required_state"] == [ev], "the changed state entry is re-sent"
    assert room["timeline"] == [ev]


def test_lists_are_not_sticky(proxy, alice, rooms):
    (r1, _, _), _, _ = rooms
    c = sss(proxy, alice)
    c.sync({"lists": lists()})
    resp = c.sync({})
    assert not resp.get("lists"), "a list left out of the request is gone"
    alice.queue(F.sync_response(join={r1: F.joined_room(timeline=[F.message(alice.user_id, "x")])}))
    alice.wait_idle()
    resp = c.sync({}, timeout=300)
    assert r1 not in resp["rooms"]


def test_subscriptions_are_not_sticky(proxy, alice, rooms):
    (r1, _, t1), _, _ = rooms
    c = sss(proxy, alice)
    resp = c.sync({"room_subscriptions": {r1: {"timeline_limit": 1, "required_state": []}}})
    assert resp["rooms"][r1]["timeline"] == t1[-1:]
    resp = c.sync({})
    alice.queue(F.sync_response(join={r1: F.joined_room(timeline=[F.message(alice.user_id, "x")])}))
    alice.wait_idle()
    resp = c.sync({}, timeout=300)
    assert r1 not in resp["rooms"], "the subscription was not repeated"


def test_subscription_live_update(proxy, alice, rooms):
    (r1, _, _), _, _ = rooms
    c = sss(proxy, alice)
    body = {"room_subscriptions": {r1: {"timeline_limit": 1}}}
    c.sync(body)
    ev = F.message(alice.user_id, "live")
    alice.queue(F.sync_response(join={r1: F.joined_room(timeline=[ev])}))
    alice.wait_idle()
    room = c.sync(body)["rooms"][r1]
    assert room["timeline"] == [ev] and "initial" not in room


def test_growing_range_sends_only_new_rooms(proxy, alice, rooms):
    (r1, _, _), (r2, _, _), (r3, _, _) = rooms
    c = sss(proxy, alice)
    resp = c.sync({"lists": lists(ranges=[(0, 0)])})
    assert set(resp["rooms"]) == {r3}
    resp = c.sync({"lists": lists(ranges=[(0, 2)])})
    assert set(resp["rooms"]) == {r1, r2}
    assert all(r["initial"] for r in resp["rooms"].values())


def test_timeout_long_polls_until_data(proxy, alice, rooms):
    (r1, _, _), _, _ = rooms
    c = sss(proxy, alice)
    body = {"lists": lists()}
    c.sync(body)
    quick = c.sync(body, timeout=0)
    assert quick["rooms"] == {}
    h = run_in_thread(c.sync, body, timeout=10000)
    ev = F.message(alice.user_id, "wake up")
    alice.queue(F.sync_response(join={r1: F.joined_room(timeline=[ev])}))
    resp = h.result(30)
    assert resp["rooms"][r1]["timeline"] == [ev]


def test_whole_timeline_prev_batch(proxy, alice, rooms):
    (r1, _, t1), _, _ = rooms
    room = sss(proxy, alice).sync({"room_subscriptions": {r1: {"timeline_limit": 5}}})["rooms"][r1]
    assert room["timeline"] == t1 and room["limited"] is False
    assert room["prev_batch"] == "pb_Apple"


def test_timeline_limit_zero(proxy, alice, rooms):
    c = sss(proxy, alice)
    resp = c.sync({"lists": lists(timeline_limit=0)})
    for room in resp["rooms"].values():
        assert room["timeline"] == []
        assert "limited" not in room


def test_own_conn_ids_apart_from_msc3575(proxy, alice, rooms):
    c = sss(proxy, alice)
    resp = c.sync({"conn_id": "room-list", "lists": lists()})
    old = proxy.client(alice.token)
    status, body = old.request({"conn_id": "room-list"}, pos=resp["pos"], timeout=100)
    assert (status, body["errcode"]) == (400, "M_UNKNOWN_POS")
    again = c.sync({"conn_id": "room-list", "lists": lists()})
    assert again["rooms"] == {}


def test_msc3575_fields_ignored(proxy, alice, rooms):
    (r1, _, _), _, (r3, _, _) = rooms
    body = {"lists": lists(ranges=[(0, 0)], sort=["by_name"], include_old_rooms={"timeline_limit": 1},
                           slow_get_all_rooms=True, bump_event_types=["m.room.name"]),
            "unsubscribe_rooms": [r1], "txn_id": "t1"}
    resp = sss(proxy, alice).sync(body)
    assert resp["lists"]["all"]["ops"][0]["room_ids"] == [r3], "sort stays by recency"


def test_room_back_in_window_only_if_changed(proxy, alice, rooms):
    (r1, _, _), (r2, _, _), (r3, _, _) = rooms
    c = sss(proxy, alice)
    small, big = {"lists": lists(ranges=[(0, 0)])}, {"lists": lists(ranges=[(0, 2)])}
    c.sync(small)
    assert set(c.sync(big)["rooms"]) == {r1, r2}
    c.sync(small)
    assert c.sync(big)["rooms"] == {}, "the client has every room as it is"
    c.sync(small)
    ev = F.message(alice.user_id, "while away")
    alice.queue(F.sync_response(join={r2: F.joined_room(timeline=[ev])}))
    alice.wait_idle()
    resp = c.sync(small)
    # The client has r2 up to before ev: only ev comes (docs/behaviour.md, "Re-sending a room").
    assert "initial" not in resp["rooms"][r2], "r2 moved into the window, sent as its changes"
    assert resp["rooms"][r2]["timeline"] == [ev]
    resp = c.sync(big)
    assert set(resp["rooms"]) == set(), "r3 unchanged, r2 already sent"


def test_all_lists_replaced_at_the_limit(proxy, alice, rooms):
    c = sss(proxy, alice)
    mk = lambda prefix: {"%s%d" % (prefix, i): {"ranges": [[0, 0]], "timeline_limit": 0} for i in range(100)}
    assert len(c.sync({"lists": mk("a")})["lists"]) == 100
    resp = c.sync({"lists": mk("b")})
    assert sorted(resp["lists"]) == sorted(mk("b")), "100 new lists replace 100 old ones"
