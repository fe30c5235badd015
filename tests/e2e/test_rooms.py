"""A new connection's first response: lists, ops, room objects (docs/behaviour.md,
"Request-driven ops", "Room object", "Sorts")."""

import pytest

from helpers import sync_op_room_ids
import fakehs as F


def pairs(events):
    return {(e["type"], e["state_key"]) for e in events}


@pytest.fixture
def three_rooms(alice, bob):
    """Three rooms for alice; events are made in order so recency is r3 > r2 > r1 and
    by_name order is r1 ("Apple pie") < r2 ("banana") < r3 ("#Cherry")."""
    A, B = alice.user_id, bob.user_id
    r1, r2, r3 = F.new_room_id("r1"), F.new_room_id("r2"), F.new_room_id("r3")
    s1 = F.room_state(A, "Apple pie")
    t1 = [F.message(A, "a1")]
    s2 = F.room_state(A, "banana") + [F.join(B, displayname="Bob")]
    t2 = [F.message(B, "b1"), F.message(B, "b2")]
    s3 = F.room_state(A, "#Cherry")
    t3 = [F.message(A, "c1")]
    nb = alice.queue(F.sync_response(join={
        r1: F.joined_room(s1, t1, prev_batch="pb1", notification_count=2, highlight_count=1),
        r2: F.joined_room(s2, t2, prev_batch="pb2", notification_count=0, highlight_count=0),
        r3: F.joined_room(s3, t3, prev_batch="pb3"),
    }))
    return {"ids": (r1, r2, r3), "state": (s1, s2, s3), "timeline": (t1, t2, t3), "next_batch": nb}


def test_first_request_returns_rooms(proxy, alice, bob, three_rooms):
    r1, r2, r3 = three_rooms["ids"]
    s1, s2, s3 = three_rooms["state"]
    t1, t2, t3 = three_rooms["timeline"]
    c = proxy.client(alice.token)
    resp = c.sync({"lists": {"a": {
        "ranges": [[0, 9]], "sort": ["by_recency"], "timeline_limit": 1,
        "required_state": [["m.room.name", ""], ["m.room.member", "$ME"]]}}})

    assert set(resp) >= {"lists", "rooms", "extensions", "pos"}
    assert resp["lists"]["a"]["count"] == 3
    assert resp["lists"]["a"]["ops"] == [{"op": "SYNC", "range": [0, 2], "room_ids": [r3, r2, r1]}]
    assert set(resp["rooms"]) == {r1, r2, r3}

    room1, room2, room3 = (resp["rooms"][r] for r in (r1, r2, r3))
    assert room1["name"] == "Apple pie"
    assert room2["name"] == "banana"
    assert room3["name"] == "#Cherry"
    for room in (room1, room2, room3):
        assert room["initial"] is True
        assert room["invited_count"] == 0
        assert "invite_state" not in room
        assert room["avatar"] is None
    # timelines: the newest event only, exactly as the homeserver sent it
    assert room1["timeline"] == t1[-1:]
    assert room2["timeline"] == t2[-1:]
    assert room3["timeline"] == t3[-1:]
    assert room1["prev_batch"] == "pb1"
    # limited: only where older visible events exist (room2 has b1 before b2)
    assert "limited" not in room1 and "limited" not in room3
    assert room2["limited"] is True
    # b2 is not the first event of its chunk: one from before b1 would skip b1; the sync
    # token after b2 paginates back over b2 again, then b1 (docs/behaviour.md, "Timeline").
    assert room2["prev_batch"] == three_rooms["next_batch"]
    # required_state: exactly the requested entries, events as sent
    me_join = s1[1]
    assert room1["required_state"] == [s1[4], me_join] or room1["required_state"] == [me_join, s1[4]]
    assert pairs(room2["required_state"]) == {("m.room.name", ""), ("m.room.member", alice.user_id)}
    # counts
    assert (room1["notification_count"], room1["highlight_count"]) == (2, 1)
    assert (room2["notification_count"], room2["highlight_count"]) == (0, 0)
    assert (room3["notification_count"], room3["highlight_count"]) == (0, 0)
    assert room1["joined_count"] == 1
    assert room2["joined_count"] == 2
    # timestamp is the last event's origin_server_ts
    assert room2.get("timestamp") == t2[-1]["origin_server_ts"]


def test_by_name_and_by_recency(proxy, alice, three_rooms):
    r1, r2, r3 = three_rooms["ids"]
    resp = proxy.client(alice.token).sync({"lists": {
        "recent": {"ranges": [[0, 9]], "sort": ["by_recency"]},
        "names": {"ranges": [[0, 9]], "sort": ["by_name"]},
        "default": {"ranges": [[0, 9]]},
    }})
    assert sync_op_room_ids(resp, "recent") == [r3, r2, r1]
    assert sync_op_room_ids(resp, "names") == [r1, r2, r3]
    assert sync_op_room_ids(resp, "default") == [r3, r2, r1], "default sort is by_recency"
    assert set(resp["rooms"]) == {r1, r2, r3}


@pytest.mark.parametrize("ranges,expected_ops,rooms", [
    ([[0, 1]], [{"op": "SYNC", "range": [0, 1], "room_ids": ["r3", "r2"]}], {"r3", "r2"}),
    ([[0, 99]], [{"op": "SYNC", "range": [0, 2], "room_ids": ["r3", "r2", "r1"]}], {"r1", "r2", "r3"}),
    ([[1, 1]], [{"op": "SYNC", "range": [1, 1], "room_ids": ["r2"]}], {"r2"}),
    ([[0, 0], [2, 5]], [{"op": "SYNC", "range": [0, 0], "room_ids": ["r3"]},
                        {"op": "SYNC", "range": [2, 2], "room_ids": ["r1"]}], {"r3", "r1"}),
    ([[5, 9]], None, set()),
    ([], None, set()),
])
def test_ranges(proxy, alice, three_rooms, ranges, expected_ops, rooms):
    ids = dict(zip(("r1", "r2", "r3"), three_rooms["ids"]))
    resp = proxy.client(alice.token).sync({"lists": {"a": {"ranges": ranges}}})
    assert resp["lists"]["a"]["count"] == 3
    if expected_ops is None:
        assert not resp["lists"]["a"].get("ops"), resp["lists"]["a"]
    else:
        for op in expected_ops:
            op["room_ids"] = [ids[x] for x in op["room_ids"]]
        assert resp["lists"]["a"]["ops"] == expected_ops
    assert set(resp.get("rooms") or {}) == {ids[x] for x in rooms}


def test_no_ranges_gives_count_only(proxy, alice, three_rooms):
    resp = proxy.client(alice.token).sync({"lists": {"a": {"sort": ["by_name"]}}})
    assert resp["lists"]["a"] == {"count": 3}
    assert not resp.get("rooms")


def test_timeline_limit(proxy, alice):
    A = alice.user_id
    rid = F.new_room_id()
    msgs = [F.message(A, "m%d" % i) for i in range(60)]
    alice.queue(F.sync_response(join={rid: F.joined_room(F.room_state(A, "Busy"), msgs,
                                                          prev_batch="pb")}))
    c = proxy.client(alice.token)
    for conn, limit, want in (("l3", 3, msgs[-3:]), ("l1", 1, msgs[-1:]), ("l100", 100, msgs)):
        c.reset()
        resp = c.sync({"conn_id": conn, "lists": {"a": {"ranges": [[0, 0]], "timeline_limit": limit}}})
        assert resp["rooms"][rid]["timeline"] == want, "timeline_limit %d" % limit
    c.reset()
    resp = c.sync({"conn_id": "l0", "lists": {"a": {"ranges": [[0, 0]], "timeline_limit": 0}}})
    assert "timeline" not in resp["rooms"][rid]
    # state events never show up in a timeline
    c.reset()
    resp = c.sync({"conn_id": "l50", "lists": {"a": {"ranges": [[0, 0]], "timeline_limit": 50}}})
    assert all(e["type"] == "m.room.message" for e in resp["rooms"][rid]["timeline"])


# extra: more members, so that the room is read the way large rooms are (members by key).
@pytest.mark.parametrize("extra", [0, 120])
def test_required_state_matching(proxy, alice, bob, extra):
    A, B = alice.user_id, bob.user_id
    rid = F.new_room_id()
    crowd = [F.join("@crowd%d:localhost" % i) for i in range(extra)]
    st = F.room_state(A, "Stateful") + crowd + [F.topic(A, "things"), F.join(B, displayname="Bob"),
                                         F.state("m.custom", "k1", A, {"v": 1}),
                                         # spelled together, these read as ("m.custom", "k1") and
                                         # ("m.custom:", "k1"): a pattern must never match them
                                         F.state("m.custo", "mk1", A, {"v": 2}),
                                         F.state("m.custom:", "k1", A, {"v": 3}),
                                         # types around m.room.member in byte order, one of which
                                         # starts with it: members are read apart from other state
                                         F.state("m.room.member.x", B, A, {"v": 4}),
                                         F.state("a.early", B, A, {"v": 5}),
                                         F.state("z.late", "", A, {"v": 6})]
    by_pair = {(e["type"], e["state_key"]): e for e in st}
    alice.queue(F.sync_response(join={rid: F.joined_room(st, [F.message(B, "hi")])}))
    everything = set(by_pair)
    members = {p for p in everything if p[0] == "m.room.member"}
    assert len(members) == 2 + extra
    empty_keys = {p for p in everything if p[1] == ""}
    cases = [
        ([["*", "*"]], everything),
        ([["m.room.member", "*"]], members),
        ([["*", ""]], empty_keys),
        ([["m.room.member", "$ME"]], {("m.room.member", A)}),
        ([["*", "*"], ["m.room.member", B]], (everything - members) | {("m.room.member", B)}),
        ([["m.room.topic", ""], ["m.room.nonexistent", ""]], {("m.room.topic", "")}),
        ([["m.custom", "k1"], ["m.room.create", ""]], {("m.custom", "k1"), ("m.room.create", "")}),
        ([["m.custom", "*"]], {("m.custom", "k1")}),
        ([["m.custom", "k1"]], {("m.custom", "k1")}),
        ([["m.custo", "mk1"], ["m.custom:", "k1"]], {("m.custo", "mk1"), ("m.custom:", "k1")}),
        ([["*", "k1"]], {("m.custom", "k1"), ("m.custom:", "k1")}),
        ([["*", "k1"], ["m.custom", "*"], ["m.custom", "k1"]], {("m.custom", "k1"), ("m.custom:", "k1")}),
        ([["*", B]], {("m.room.member", B), ("m.room.member.x", B), ("a.early", B)}),
        ([["m.room.member", B], ["m.room.member", "@nobody:localhost"]], {("m.room.member", B)}),
        ([["*", B], ["m.room.member", B], ["m.room.member", "$ME"], ["m.room.member", A]],
         {("m.room.member", B), ("m.room.member.x", B), ("a.early", B), ("m.room.member", A)}),
        ([["m.room.member", B], ["m.room.member", "*"]], members),
        ([["m.room.member.x", "*"], ["z.late", ""], ["a.early", B]],
         {("m.room.member.x", B), ("z.late", ""), ("a.early", B)}),
        ([["m.room.member", "$ME"], ["m.room.name", ""]], {("m.room.member", A), ("m.room.name", "")}),
    ]
    c = proxy.client(alice.token)
    for i, (req, want) in enumerate(cases):
        c.reset()
        resp = c.sync({"conn_id": "c%d" % i,
                       "lists": {"a": {"ranges": [[0, 0]], "required_state": req}}})
        got = resp["rooms"][rid].get("required_state", [])
        assert pairs(got) == want, "required_state %r" % req
        assert len(got) == len(want), "duplicates for %r: %r" % (req, got)
        for e in got:
            assert e == by_pair[(e["type"], e["state_key"])], "event changed on the way: %r" % e
    c.reset()
    resp = c.sync({"conn_id": "none", "lists": {"a": {"ranges": [[0, 0]]}}})
    assert "required_state" not in resp["rooms"][rid]


def test_invite(proxy, alice):
    carol = "@carol:localhost"
    rid = F.new_room_id("inv")
    inv = F.invite_to(carol, alice.user_id, room_name="Party")
    alice.queue(F.sync_response(invite={rid: F.invited_room(inv)}))
    resp = proxy.client(alice.token).sync({"lists": {"a": {
        "ranges": [[0, 9]], "timeline_limit": 5, "required_state": [["*", "*"]]}}})
    assert resp["lists"]["a"]["count"] == 1
    assert sync_op_room_ids(resp, "a") == [rid]
    room = resp["rooms"][rid]
    assert room["invite_state"] == [F.stripped(e) for e in inv]
    assert room["name"] == "Party"
    assert room["joined_count"] == 1
    assert room["invited_count"] == 1
    assert room["highlight_count"] == 1
    assert room["notification_count"] == 0
    assert room["initial"] is True
    assert "required_state" not in room


def test_avatar_and_name_fallbacks(proxy, alice, bob):
    A, B = alice.user_id, bob.user_id
    r_avatar, r_alias, r_heroes, r_alone = (F.new_room_id(x) for x in ("av", "al", "he", "lo"))
    alice.queue(F.sync_response(join={
        r_avatar: F.joined_room(F.room_state(A, "Pretty", avatar_url="mxc://localhost/pic"),
                                [F.message(A, "x")]),
        r_alias: F.joined_room(F.room_state(A, alias="#hangout:localhost"), [F.message(A, "x")]),
        r_heroes: F.joined_room(F.room_state(A) + [F.join(B, displayname="Bob")], [F.message(B, "x")]),
        r_alone: F.joined_room(F.room_state(A), [F.message(A, "x")]),
    }))
    resp = proxy.client(alice.token).sync({"lists": {"a": {"ranges": [[0, 9]]}}})
    rooms = resp["rooms"]
    assert rooms[r_avatar]["avatar"] == "mxc://localhost/pic"
    assert rooms[r_avatar]["name"] == "Pretty"
    assert rooms[r_alias]["name"] == "#hangout:localhost"
    assert rooms[r_heroes]["name"] == "Bob"
    assert rooms[r_heroes]["joined_count"] == 2
    assert rooms[r_alone]["name"] == "Empty Room"


def test_left_rooms_are_not_listed(proxy, alice):
    A = alice.user_id
    joined, left = F.new_room_id("j"), F.new_room_id("l")
    alice.queue(F.sync_response(
        join={joined: F.joined_room(F.room_state(A, "Here"), [F.message(A, "x")])},
        leave={left: F.left_room([F.leave(A)])}))
    resp = proxy.client(alice.token).sync({"lists": {"a": {"ranges": [[0, 9]]}}})
    assert resp["lists"]["a"]["count"] == 1
    assert set(resp["rooms"]) == {joined}
