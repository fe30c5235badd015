"""List filters tags / not_tags / spaces (docs/behaviour.md, "Filters"), bump_event_types
("Recency and bump_event_types") and old rooms ("Old rooms and upgrades")."""

import json

from helpers import sync_op_room_ids
import fakehs as F


def tag(*names):
    return F.account_data("m.tag", {"tags": {n: {} for n in names}})


def ids_of(resp, key):
    return set(sync_op_room_ids(resp, key))


def test_tags_and_not_tags(proxy, alice):
    A = alice.user_id
    r1, r2, r3 = (F.new_room_id("tag%d" % i) for i in (1, 2, 3))
    alice.queue(F.sync_response(join={
        r1: F.joined_room(F.room_state(A, "One"), [F.message(A, "1")], account_data=[tag("m.favourite")]),
        r2: F.joined_room(F.room_state(A, "Two"), [F.message(A, "2")],
                          account_data=[tag("m.favourite", "m.lowpriority")]),
        r3: F.joined_room(F.room_state(A, "Three"), [F.message(A, "3")]),
    }))
    c = proxy.client(alice.token)
    resp = c.sync({"lists": {
        "fav": {"ranges": [[0, 9]], "filters": {"tags": ["m.favourite"]}},
        "notlow": {"ranges": [[0, 9]], "filters": {"not_tags": ["m.lowpriority"]}},
        "both": {"ranges": [[0, 9]], "filters": {"tags": ["m.favourite", "u.other"],
                                                  "not_tags": ["m.lowpriority"]}},
        "none": {"ranges": [[0, 9]], "filters": {"tags": ["u.nothing"]}},
    }})
    assert ids_of(resp, "fav") == {r1, r2}
    assert ids_of(resp, "notlow") == {r1, r3}
    assert ids_of(resp, "both") == {r1}
    assert resp["lists"]["none"]["count"] == 0
    alice.wait_idle()

    # r3 gains the tag (enters "fav" at the top: it is the most recent room), r1 loses it.
    alice.queue(F.sync_response(join={r3: F.joined_room(account_data=[tag("m.favourite")]),
                                      r1: F.joined_room(account_data=[tag()])}))
    alice.wait_idle()
    resp = c.sync({}, timeout=5000)
    fav = resp["lists"]["fav"]
    assert fav["count"] == 2
    ops = fav["ops"]
    assert {"op": "INSERT", "index": 0, "room_id": r3} in ops, ops
    assert any(o["op"] == "DELETE" for o in ops), ops
    assert resp["lists"]["both"]["count"] == 1
    assert resp["lists"]["notlow"]["count"] == 2

    # a new connection (state from the store) agrees
    c2 = proxy.client(alice.token)
    resp = c2.sync({"conn_id": "again", "lists": {
        "fav": {"ranges": [[0, 9]], "filters": {"tags": ["m.favourite"]}},
        "both": {"ranges": [[0, 9]], "filters": {"tags": ["m.favourite"], "not_tags": ["m.lowpriority"]}},
    }})
    assert sync_op_room_ids(resp, "fav") == [r3, r2]
    assert ids_of(resp, "both") == {r3}


def test_bump_event_types(proxy, alice):
    A = alice.user_id
    r1, r2 = F.new_room_id("bump1"), F.new_room_id("bump2")
    st1, st2 = F.room_state(A, "B1"), F.room_state(A, "B2")
    m1 = F.message(A, "old message in r1")
    m2 = F.message(A, "newer message in r2")
    react = F.event("m.reaction", A, {"m.relates_to": {"rel_type": "m.annotation", "event_id": m1["event_id"],
                                                       "key": "+1"}})
    alice.queue(F.sync_response(join={r1: F.joined_room(st1, [m1, react]), r2: F.joined_room(st2, [m2])}))
    c = proxy.client(alice.token)
    resp = c.sync({"lists": {
        "msgs": {"ranges": [[0, 9]], "bump_event_types": ["m.room.message"]},
        "all": {"ranges": [[0, 9]]},
    }})
    assert sync_op_room_ids(resp, "msgs") == [r2, r1]
    assert sync_op_room_ids(resp, "all") == [r1, r2]
    alice.wait_idle()

    # a reaction in r2 moves it in "all" only
    alice.queue(F.sync_response(join={r2: F.joined_room(timeline=[F.event("m.reaction", A, {})])}))
    alice.wait_idle()
    resp = c.sync({}, timeout=5000)
    assert resp["lists"]["all"]["ops"] == [{"op": "DELETE", "index": 1},
                                           {"op": "INSERT", "index": 0, "room_id": r2}]
    assert not resp["lists"]["msgs"].get("ops"), resp["lists"]["msgs"]

    # a message in r1 moves it in "msgs"
    alice.queue(F.sync_response(join={r1: F.joined_room(timeline=[F.message(A, "bump")])}))
    alice.wait_idle()
    resp = c.sync({}, timeout=5000)
    assert resp["lists"]["msgs"]["ops"] == [{"op": "DELETE", "index": 1},
                                            {"op": "INSERT", "index": 0, "room_id": r1}]


def test_spaces_filter(proxy, alice, bob):
    A, B = alice.user_id, bob.user_id
    space, c1, c2, c3 = (F.new_room_id(x) for x in ("space", "child1", "child2", "other"))
    other_space = F.new_room_id("bobspace")
    # bob's space (alice is not in it) lists c3; alice and bob are both in c3
    bob.queue(F.sync_response(join={
        other_space: F.joined_room(F.room_state(B, "Bob's space", room_type="m.space")
                                   + [F.space_child(B, c3)], [F.message(B, "hi")]),
        c3: F.joined_room(F.room_state(B, "C3") + [F.join(A)], [F.message(B, "c3")]),
    }))
    bc = proxy.client(bob.token)
    bc.sync({"lists": {"a": {"ranges": [[0, 9]]}}})
    bob.wait_idle()
    alice.queue(F.sync_response(join={
        space: F.joined_room(F.room_state(A, "Space", room_type="m.space")
                             + [F.space_child(A, c1),
                                F.state("m.space.child", c2, A, {"via": "not-an-array"})],
                             [F.message(A, "space")]),
        c1: F.joined_room(F.room_state(A, "C1"), [F.message(A, "c1")]),
        c2: F.joined_room(F.room_state(A, "C2"), [F.message(A, "c2")]),
        c3: F.joined_room(F.room_state(B, "C3") + [F.join(A)], [F.message(B, "c3")]),
    }))
    c = proxy.client(alice.token)
    resp = c.sync({"lists": {"s": {"ranges": [[0, 9]], "filters": {"spaces": [space, other_space]}}}})
    assert sync_op_room_ids(resp, "s") == [c1]
    alice.wait_idle()

    # the space gains c2 (now with an array via): c2 enters the list
    alice.queue(F.sync_response(join={space: F.joined_room(timeline=[F.space_child(A, c2)])}))
    alice.wait_idle()
    resp = c.sync({}, timeout=5000)
    s = resp["lists"]["s"]
    assert s["count"] == 2
    assert {"op": "INSERT", "index": 0, "room_id": c2} in s["ops"], s


def test_old_rooms(proxy, alice):
    A = alice.user_id
    old, new, other, gone = (F.new_room_id(x) for x in ("old", "new", "other", "gone"))
    elsewhere = F.new_room_id("elsewhere")
    alice.queue(F.sync_response(join={
        old: F.joined_room(F.room_state(A, "Old"), [F.message(A, "before"), F.tombstone(A, new)]),
        new: F.joined_room([F.create(A, predecessor=old)] + F.room_state(A, "New")[1:], [F.message(A, "after")]),
        gone: F.joined_room(F.room_state(A, "Gone"), [F.tombstone(A, elsewhere)]),
        other: F.joined_room(F.room_state(A, "Other"), [F.message(A, "other")]),
    }))
    c = proxy.client(alice.token)
    resp = c.sync({"lists": {"a": {"ranges": [[0, 9]], "timeline_limit": 1}},
                   "room_subscriptions": {new: {"timeline_limit": 1,
                                                "include_old_rooms": {"timeline_limit": 1}}}})
    # the replaced room is in no list; a room replaced by one alice is not in still is
    assert set(sync_op_room_ids(resp, "a")) == {new, other, gone}
    assert resp["lists"]["a"]["count"] == 3
    # but the subscription's include_old_rooms sends it as a snapshot
    assert old in resp["rooms"], sorted(resp["rooms"])
    assert resp["rooms"][old]["timeline"][-1]["type"] == "m.room.tombstone"
    assert elsewhere not in resp["rooms"]

    # without include_old_rooms no old room is sent
    c2 = proxy.client(alice.token)
    resp = c2.sync({"conn_id": "plain", "room_subscriptions": {new: {"timeline_limit": 1}}})
    assert set(resp["rooms"]) == {new}


def test_spaces_filter_follows_joining_and_leaving_the_space(proxy, alice, bob):
    A, B = alice.user_id, bob.user_id
    space, c1, c2 = (F.new_room_id(x) for x in ("jspace", "jchild1", "jchild2"))
    space_state = F.room_state(B, "Joined later", room_type="m.space") + [F.space_child(B, c1)]
    # bob's space lists c1; alice is in c1 and c2 but not (yet) in the space
    bob.queue(F.sync_response(join={space: F.joined_room(space_state, [F.message(B, "space")])}))
    proxy.client(bob.token).sync({"lists": {"a": {"ranges": [[0, 9]]}}})
    bob.wait_idle()
    alice.queue(F.sync_response(join={
        c1: F.joined_room(F.room_state(A, "J1"), [F.message(A, "1")]),
        c2: F.joined_room(F.room_state(A, "J2"), [F.message(A, "2")]),
    }))
    c = proxy.client(alice.token)
    resp = c.sync({"lists": {"s": {"ranges": [[0, 9]], "filters": {"spaces": [space]}}}})
    assert resp["lists"]["s"]["count"] == 0
    alice.wait_idle()

    # alice joins the space: its children (learnt from the join's state) enter the list
    alice.queue(F.sync_response(join={space: F.joined_room(space_state, [F.join(A)])}))
    alice.wait_idle()
    resp = c.sync({}, timeout=5000)
    s = resp["lists"]["s"]
    assert s["count"] == 1, s
    assert {"op": "INSERT", "index": 0, "room_id": c1} in s["ops"], s

    # alice leaves the space: its children leave the list
    alice.queue(F.sync_response(leave={space: F.left_room(timeline=[F.leave(A)])}))
    alice.wait_idle()
    resp = c.sync({}, timeout=5000)
    s = resp["lists"]["s"]
    assert s["count"] == 0, s
    assert {"op": "DELETE", "index": 0} in s["ops"], s


def test_leaving_the_replacement_brings_the_old_room_back(proxy, alice):
    A = alice.user_id
    old, new = F.new_room_id("old2"), F.new_room_id("new2")
    alice.queue(F.sync_response(join={
        old: F.joined_room(F.room_state(A, "Old"), [F.message(A, "before"), F.tombstone(A, new)]),
        new: F.joined_room([F.create(A, predecessor=old)] + F.room_state(A, "New")[1:], [F.message(A, "after")]),
    }))
    c = proxy.client(alice.token)
    resp = c.sync({"lists": {"a": {"ranges": [[0, 9]]}}})
    assert sync_op_room_ids(resp, "a") == [new]
    alice.wait_idle()
    alice.queue(F.sync_response(leave={new: F.left_room(timeline=[F.leave(A)])}))
    alice.wait_idle()
    resp = c.sync({}, timeout=5000)
    a = resp["lists"]["a"]
    assert a["count"] == 1, a
    assert {"op": "INSERT", "index": 0, "room_id": old} in a["ops"], a
    assert resp["rooms"][old].get("initial") is True


def test_m_direct_change_moves_rooms_between_dm_lists_at_once(proxy, alice):
    A, B = alice.user_id, "@bob:localhost"
    r1, r2 = F.new_room_id("dm1"), F.new_room_id("dm2")
    alice.queue(F.sync_response(join={
        r1: F.joined_room(F.room_state(A) + [F.join(B)], [F.message(B, "1")]),
        r2: F.joined_room(F.room_state(A, "Group") + [F.join(B)], [F.message(A, "2")]),
    }, account_data=[F.account_data("m.direct", {B: [r1]})]))
    c = proxy.client(alice.token)
    resp = c.sync({"lists": {"dm": {"ranges": [[0, 9]], "filters": {"is_dm": True}},
                             "rooms": {"ranges": [[0, 9]], "filters": {"is_dm": False}}}})
    assert sync_op_room_ids(resp, "dm") == [r1]
    assert sync_op_room_ids(resp, "rooms") == [r2]
    alice.wait_idle()

    # r2 becomes the DM instead of r1: both lists change in the next response
    alice.queue(F.sync_response(account_data=[F.account_data("m.direct", {B: [r2]})]))
    alice.wait_idle()
    resp = c.sync({}, timeout=5000)
    dm, rooms = resp["lists"]["dm"], resp["lists"]["rooms"]
    assert dm["count"] == 1 and rooms["count"] == 1, resp["lists"]
    assert {"op": "INSERT", "index": 0, "room_id": r2} in dm["ops"], dm
    assert any(o["op"] == "INSERT" and o["room_id"] == r1 for o in rooms["ops"]), rooms
    fresh = proxy.client(alice.token).sync({"conn_id": "fresh", "lists": {
        "dm": {"ranges": [[0, 9]], "filters": {"is_dm": True}}}})
    assert sync_op_room_ids(fresh, "dm") == [r2]


def test_space_child_the_user_is_not_in_leaks_nothing(proxy, alice, bob):
    A, B = alice.user_id, bob.user_id
    parent, secret = F.new_room_id("parent"), F.new_room_id("secret")
    pst = F.room_state(B, "Parent", room_type="m.space") + [F.join(A)]
    bob.queue(F.sync_response(join={parent: F.joined_room(pst, [F.message(B, "welcome")])}))
    alice.queue(F.sync_response(join={parent: F.joined_room(pst, [F.message(B, "welcome")])}))
    proxy.client(bob.token).sync({"lists": {"a": {"ranges": [[0, 9]]}}})
    c = proxy.client(alice.token)
    resp = c.sync({"lists": {"all": {"ranges": [[0, 9]], "timeline_limit": 1},
                             "kids": {"ranges": [[0, 9]], "filters": {"spaces": [parent]}}}})
    assert resp["lists"]["kids"]["count"] == 0
    alice.wait_idle()
    bob.wait_idle()

    # bob makes a room alice is not in and adds it to the space
    child = F.space_child(B, secret)
    bob.queue(F.sync_response(join={
        secret: F.joined_room(F.room_state(B, "Top secret plans", encrypted=True), [F.message(B, "psst")]),
        parent: F.joined_room(timeline=[child]),
    }))
    bob.wait_idle()
    alice.queue(F.sync_response(join={parent: F.joined_room(timeline=[child])}))
    alice.wait_idle()
    resp = c.sync({}, timeout=5000)
    assert set(resp["rooms"]) == {parent}
    assert [e["event_id"] for e in resp["rooms"][parent]["timeline"]] == [child["event_id"]]
    assert resp["lists"]["kids"]["count"] == 0
    assert resp["lists"]["all"]["count"] == 1
    text = json.dumps(resp)
    assert "Top secret plans" not in text and "psst" not in text
    fresh = proxy.client(alice.token).sync({"conn_id": "fresh", "lists": {
        "kids": {"ranges": [[0, 9]], "filters": {"spaces": [parent]}}}})
    assert fresh["lists"]["kids"]["count"] == 0
    assert secret not in fresh.get("rooms", {})
