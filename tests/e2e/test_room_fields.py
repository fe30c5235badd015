"""Room object fields as they change over a connection (docs/behaviour.md, "Room object", "Live updates"): heroes, live
names/avatars/counts, DM avatars, upgrades and include_old_rooms, num_live, redacted state,
subscription parameters, stripped per-user fields."""

import json

import fakehs as F
from helpers import sync_op_room_ids

BOB_PIC = "mxc://localhost/bob-face"
CAROL_PIC = "mxc://localhost/carol-face"
DAVE_PIC = "mxc://localhost/dave-face"
CAROL = "@carol:localhost"
DAVE = "@dave:localhost"


def pairs(events):
    return [(e["type"], e["state_key"]) for e in events]


def deliver(user, c, timeout=5000, **rooms):
    """Queues one v2 response for `user` (join=/leave=/invite=/account_data=), waits until the
    proxy stored it and returns c's next response."""
    user.queue(F.sync_response(**rooms))
    user.wait_idle()
    return c.sync({}, timeout=timeout)


def live(user, c, rid, *events):
    return deliver(user, c, join={rid: F.joined_room(timeline=list(events))})


def bodies(room):
    return [e["content"].get("body") for e in room.get("timeline", [])]


# ---------------------------------------------------------------- heroes ("Heroes")

def test_heroes_follow_membership_changes(proxy, alice):
    A = alice.user_id
    rid = F.new_room_id("heroes")
    named, aliased = F.new_room_id("named"), F.new_room_id("aliased")
    others = [F.join("@bob:localhost", displayname="Bob")]
    alice.queue(F.sync_response(join={
        rid: F.joined_room(F.room_state(A), [F.message(A, "alone")]),
        named: F.joined_room(F.room_state(A, "Has a name") + others, [F.message(A, "n")]),
        aliased: F.joined_room(F.room_state(A, alias="#al:localhost") + others, [F.message(A, "a")]),
    }))
    B = "@bob:localhost"
    c = proxy.client(alice.token)
    resp = c.sync({"lists": {"a": {"ranges": [[0, 9]], "timeline_limit": 1, "include_heroes": True}}})
    assert resp["rooms"][rid]["name"] == "Empty Room"
    for r in (rid, named, aliased):
        assert "heroes" not in resp["rooms"][r], "no heroes: alone, named, or aliased"
    alice.wait_idle()

    # bob joins: the name and the heroes change together; alice is never a hero
    resp = live(alice, c, rid, F.join(B, displayname="Bob", avatar_url=BOB_PIC))
    room = resp["rooms"][rid]
    assert room["name"] == "Bob"
    assert room["heroes"] == [{"user_id": B, "displayname": "Bob", "avatar_url": BOB_PIC}]
    assert room["joined_count"] == 2

    resp = live(alice, c, rid, F.join(CAROL, displayname="Carol"))
    room = resp["rooms"][rid]
    # heroes are in the order members joined, earliest first
    assert room["name"] == "Bob and Carol"
    assert room["heroes"] == [{"user_id": B, "displayname": "Bob", "avatar_url": BOB_PIC},
                              {"user_id": CAROL, "displayname": "Carol"}]
    assert room["joined_count"] == 3

    # a message changes neither
    resp = live(alice, c, rid, F.message(B, "just talking"))
    room = resp["rooms"][rid]
    assert bodies(room) == ["just talking"]
    assert "heroes" not in room and "name" not in room

    resp = live(alice, c, rid, F.leave(CAROL))
    room = resp["rooms"][rid]
    assert room["name"] == "Bob"
    assert room["heroes"] == [{"user_id": B, "displayname": "Bob", "avatar_url": BOB_PIC}]
    assert room["joined_count"] == 2

    # a fresh connection agrees; without include_heroes there is no key at all
    fresh = proxy.client(alice.token).sync({"conn_id": "fresh", "room_subscriptions": {
        rid: {"timeline_limit": 0, "include_heroes": True},
        named: {"timeline_limit": 0, "include_heroes": True}}})
    assert fresh["rooms"][rid]["heroes"] == [{"user_id": B, "displayname": "Bob", "avatar_url": BOB_PIC}]
    assert "heroes" not in fresh["rooms"][named]
    plain = proxy.client(alice.token).sync({"conn_id": "plain", "lists": {"a": {"ranges": [[0, 9]]}}})
    assert plain["rooms"][rid]["name"] == "Bob"
    assert all("heroes" not in r for r in plain["rooms"].values())


def test_heroes_keep_the_order_members_joined_in(proxy, alice):
    """Heroes (and so the computed name) are ordered by when each member joined or was
    invited: a displayname change, an invitee accepting, or a newer member never reorders
    them; leaving and coming back does."""
    A, B, EVE = alice.user_id, "@bob:localhost", "@eve:localhost"
    rid = F.new_room_id("order")
    st = F.room_state(A) + [F.join(B, displayname="Bob"), F.join(CAROL, displayname="Carol")]
    alice.queue(F.sync_response(join={rid: F.joined_room(st, [F.invite(A, DAVE, displayname="Dave")])}))
    c = proxy.client(alice.token)
    sub = {"room_subscriptions": {rid: {"timeline_limit": 0, "include_heroes": True}}}
    resp = c.sync(sub)
    ids = lambda room: [h["user_id"] for h in room["heroes"]]
    assert ids(resp["rooms"][rid]) == [B, CAROL, DAVE]
    assert resp["rooms"][rid]["name"] == "Bob, Carol and Dave"
    alice.wait_idle()

    room = live(alice, c, rid, F.join(B, displayname="Robert"))["rooms"][rid]
    assert ids(room) == [B, CAROL, DAVE], "a displayname change moved the member"
    assert room["name"] == "Robert, Carol and Dave"
    room = live(alice, c, rid, F.join(DAVE, displayname="David"))["rooms"][rid]
    assert ids(room) == [B, CAROL, DAVE], "accepting the invite moved the member"
    room = live(alice, c, rid, F.join(EVE, displayname="Eve"))["rooms"][rid]
    assert ids(room) == [B, CAROL, DAVE, EVE]
    assert room["name"] == "Robert, Carol, David and Eve"
    live(alice, c, rid, F.leave(CAROL))
    room = live(alice, c, rid, F.join(CAROL, displayname="Carol"))["rooms"][rid]
    assert ids(room) == [B, DAVE, EVE, CAROL]

    fresh = proxy.client(alice.token).sync(dict(sub, conn_id="fresh"))
    assert ids(fresh["rooms"][rid]) == [B, DAVE, EVE, CAROL]
    assert fresh["rooms"][rid]["name"] == "Robert, David, Eve and Carol"


def test_include_heroes_is_ored_across_sources(proxy, alice):
    A, B = alice.user_id, "@bob:localhost"
    rid = F.new_room_id("orh")
    alice.queue(F.sync_response(join={rid: F.joined_room(
        F.room_state(A) + [F.join(B, displayname="Bob")], [F.message(B, "hi")])}))
    c = proxy.client(alice.token)
    # the list does not ask for heroes, the subscription does: the combined room has them
    resp = c.sync({"lists": {"a": {"ranges": [[0, 0]], "timeline_limit": 1}},
                   "room_subscriptions": {rid: {"timeline_limit": 0, "include_heroes": True}}})
    assert resp["rooms"][rid]["heroes"] == [{"user_id": B, "displayname": "Bob"}]
    assert bodies(resp["rooms"][rid]) == ["hi"]
    alice.wait_idle()
    # live: the subscription's include_heroes still applies to the room in the list's window
    resp = live(alice, c, rid, F.join(CAROL, displayname="Carol", avatar_url=CAROL_PIC))
    room = resp["rooms"][rid]
    assert room["name"] == "Bob and Carol"
    assert room["heroes"] == [{"user_id": B, "displayname": "Bob"},
                              {"user_id": CAROL, "displayname": "Carol", "avatar_url": CAROL_PIC}]


# ---------------------------------------------------------------- live name and counts ("Room names")

def test_name_changes_are_sent_live(proxy, alice):
    A, B = alice.user_id, "@bob:localhost"
    rid = F.new_room_id("names")
    alice.queue(F.sync_response(join={rid: F.joined_room(F.room_state(A), [F.message(A, "hello")])}))
    c = proxy.client(alice.token)
    resp = c.sync({"room_subscriptions": {rid: {"timeline_limit": 0}}})
    room = resp["rooms"][rid]
    assert (room["name"], room["joined_count"], room["invited_count"]) == ("Empty Room", 1, 0)
    assert "timeline" not in room
    alice.wait_idle()

    resp = live(alice, c, rid, F.join(B, displayname="Bob"))
    assert set(resp["rooms"]) == {rid}
    room = resp["rooms"][rid]
    assert (room["name"], room["joined_count"], room["invited_count"]) == ("Bob", 2, 0)
    assert "initial" not in room

    resp = live(alice, c, rid, F.invite(A, CAROL))
    room = resp["rooms"][rid]
    assert set(resp["rooms"]) == {rid}
    assert (room["joined_count"], room["invited_count"]) == (2, 1)
    assert room["name"] == "Bob and @carol:localhost"

    resp = live(alice, c, rid, F.canonical_alias(A, "#hangout:localhost"))
    assert set(resp["rooms"]) == {rid}
    assert resp["rooms"][rid]["name"] == "#hangout:localhost"
    assert "joined_count" not in resp["rooms"][rid] and "invited_count" not in resp["rooms"][rid]

    resp = live(alice, c, rid, F.name(A, "Proper name"))
    assert resp["rooms"][rid]["name"] == "Proper name"

    resp = live(alice, c, rid, F.message(B, "chat"))
    room = resp["rooms"][rid]
    assert set(resp["rooms"]) == {rid}
    assert "name" not in room and "avatar" not in room and "joined_count" not in room
    assert bodies(room) == ["chat"]
    assert room["num_live"] == 1


def test_dm_member_seen_again_in_the_timeline_is_named_by_displayname(proxy, alice):
    A, B = alice.user_id, "@bob:localhost"
    rid = F.new_room_id("dmname")
    bare = F.join(B)
    alice.queue(F.sync_response(
        join={rid: F.joined_room(F.room_state(A) + [bare], [F.message(B, "who am i")])},
        account_data=[F.account_data("m.direct", {B: [rid]})]))
    c = proxy.client(alice.token)
    resp = c.sync({"lists": {"a": {"ranges": [[0, 0]], "timeline_limit": 1}}})
    assert resp["rooms"][rid]["name"] == B
    assert resp["rooms"][rid]["is_dm"] is True
    alice.wait_idle()
    named = F.join(B, displayname="Bob", unsigned={"prev_content": {"membership": "join"},
                                                   "prev_sender": B, "replaces_state": bare["event_id"]})
    resp = live(alice, c, rid, named)
    assert resp["rooms"][rid]["name"] == "Bob"
    assert "joined_count" not in resp["rooms"][rid], "the count did not change"
    fresh = proxy.client(alice.token).sync({"conn_id": "f", "lists": {"a": {"ranges": [[0, 0]]}}})
    assert fresh["rooms"][rid]["name"] == "Bob"
    assert fresh["rooms"][rid]["joined_count"] == 2


# ---------------------------------------------------------------- avatars ("Avatars")

def test_dm_avatars(proxy, alice):
    A, B = alice.user_id, "@bob:localhost"
    dm, pending, group = F.new_room_id("dm"), F.new_room_id("pending"), F.new_room_id("group")
    alice.queue(F.sync_response(
        join={
            dm: F.joined_room(F.room_state(A) + [F.join(B, displayname="Bob", avatar_url=BOB_PIC)],
                              [F.message(B, "dm")]),
            pending: F.joined_room(F.room_state(A) + [F.invite(A, CAROL, avatar_url=CAROL_PIC)],
                                   [F.message(A, "waiting for carol")]),
            group: F.joined_room(F.room_state(A) + [F.join(B, avatar_url=BOB_PIC),
                                                    F.join(DAVE, avatar_url=DAVE_PIC)],
                                 [F.message(DAVE, "group")]),
        },
        account_data=[F.account_data("m.direct", {B: [dm, group], CAROL: [pending]})]))
    c = proxy.client(alice.token)
    resp = c.sync({"lists": {"a": {"ranges": [[0, 9]], "timeline_limit": 1}}})
    rooms = resp["rooms"]
    assert (rooms[dm]["avatar"], rooms[dm]["is_dm"]) == (BOB_PIC, True)
    assert (rooms[pending]["avatar"], rooms[pending]["is_dm"]) == (CAROL_PIC, True)
    assert (rooms[group]["avatar"], rooms[group]["is_dm"]) == (None, True)
    alice.wait_idle()

    # dave leaves the group DM: bob is the only other member, his avatar is the room's
    resp = live(alice, c, group, F.leave(DAVE))
    assert resp["rooms"][group]["avatar"] == BOB_PIC
    # a message: the avatar did not change, the key is absent
    resp = live(alice, c, group, F.message(B, "just us"))
    assert "avatar" not in resp["rooms"][group]

    # bob changes his avatar, then removes it
    resp = live(alice, c, dm, F.join(B, displayname="Bob", avatar_url="mxc://localhost/bob-new"))
    assert resp["rooms"][dm]["avatar"] == "mxc://localhost/bob-new"
    resp = live(alice, c, dm, F.join(B, displayname="Bob"))
    assert "avatar" in resp["rooms"][dm] and resp["rooms"][dm]["avatar"] is None
    # an m.room.avatar wins over the member's
    resp = live(alice, c, dm, F.avatar(A, "mxc://localhost/room-pic"))
    assert resp["rooms"][dm]["avatar"] == "mxc://localhost/room-pic"

    fresh = proxy.client(alice.token).sync({"conn_id": "f", "lists": {"a": {"ranges": [[0, 9]]}}})
    assert fresh["rooms"][group]["avatar"] == BOB_PIC
    assert fresh["rooms"][dm]["avatar"] == "mxc://localhost/room-pic"
    assert fresh["rooms"][pending]["avatar"] == CAROL_PIC


def test_room_avatar_set_changed_and_removed_live(proxy, alice):
    A, B = alice.user_id, "@bob:localhost"
    rid = F.new_room_id("roomav")
    alice.queue(F.sync_response(join={rid: F.joined_room(
        F.room_state(A, "Pictures") + [F.join(B, avatar_url=BOB_PIC)], [F.message(A, "x")])}))
    c = proxy.client(alice.token)
    resp = c.sync({"lists": {"a": {"ranges": [[0, 0]]}}})
    assert resp["rooms"][rid]["avatar"] is None, "not a DM: a member's avatar is not the room's"
    alice.wait_idle()
    resp = live(alice, c, rid, F.avatar(A, "mxc://localhost/one"))
    assert resp["rooms"][rid]["avatar"] == "mxc://localhost/one"
    resp = live(alice, c, rid, F.avatar(A, "mxc://localhost/two"))
    assert resp["rooms"][rid]["avatar"] == "mxc://localhost/two"
    resp = live(alice, c, rid, F.state("m.room.avatar", "", A, {}))
    assert "avatar" in resp["rooms"][rid] and resp["rooms"][rid]["avatar"] is None


def test_direct_invite_shows_the_inviters_avatar(proxy, alice):
    A, B = alice.user_id, "@bob:localhost"
    rid = F.new_room_id("dminv")
    inv = [F.create(B), F.join(B, displayname="Bob", avatar_url=BOB_PIC), F.join_rules(B, "invite"),
           F.invite(B, A, is_direct=True)]
    alice.queue(F.sync_response(invite={rid: F.invited_room(inv)}))
    resp = proxy.client(alice.token).sync({"lists": {"a": {"ranges": [[0, 9]]}}})
    room = resp["rooms"][rid]
    assert room["is_dm"] is True
    assert room["avatar"] == BOB_PIC
    assert room["name"] == "Bob"


def test_invitee_avatar_is_not_a_named_rooms_avatar(proxy, alice):
    A, B = alice.user_id, "@bob:localhost"
    rid = F.new_room_id("nice")
    alice.queue(F.sync_response(join={rid: F.joined_room(
        F.room_state(A, "Nice test room"), [F.invite(A, B, displayname="Bob", avatar_url=BOB_PIC)])}))
    resp = proxy.client(alice.token).sync({"lists": {"a": {"ranges": [[0, 9]]}}})
    assert set(resp["rooms"]) == {rid}
    room = resp["rooms"][rid]
    assert room["avatar"] is None
    assert (room["name"], room["joined_count"], room["invited_count"]) == ("Nice test room", 1, 1)


# ------------------------------------------------------------ upgrades and include_old_rooms ("Old rooms and upgrades")

def upgraded_create(creator, predecessor):
    return F.create(creator, predecessor=predecessor)


def test_room_upgraded_live(proxy, alice):
    A = alice.user_id
    old, other, new = F.new_room_id("old"), F.new_room_id("other"), F.new_room_id("new")
    old_state = F.room_state(A, "Before the upgrade")
    alice.queue(F.sync_response(join={
        old: F.joined_room(old_state, [F.message(A, "old times")]),
        other: F.joined_room(F.room_state(A, "Other"), [F.message(A, "other")]),
    }))
    c = proxy.client(alice.token)
    resp = c.sync({"lists": {"a": {"ranges": [[0, 9]], "timeline_limit": 1,
                                   "required_state": [["m.room.create", ""]]}}})
    assert sync_op_room_ids(resp, "a") == [other, old]
    # a second connection also asks for the old rooms of what it shows
    c2 = proxy.client(alice.token)
    old_params = {"timeline_limit": 0, "required_state": [["m.room.create", ""], ["m.room.tombstone", ""]]}
    resp = c2.sync({"conn_id": "old", "lists": {"a": {"ranges": [[0, 9]], "timeline_limit": 1,
                                                      "include_old_rooms": old_params}}})
    assert set(resp["rooms"]) == {old, other}
    alice.wait_idle()

    tomb = F.tombstone(A, new)
    new_create = upgraded_create(A, old)
    alice.queue(F.sync_response(join={
        old: F.joined_room(timeline=[tomb]),
        new: F.joined_room([new_create] + F.room_state(A, "After the upgrade")[1:],
                           [F.message(A, "new times")]),
    }))
    alice.wait_idle()
    for conn, body in ((c, {}), (c2, {"conn_id": "old"})):
        resp = conn.sync(body, timeout=5000)
        a = resp["lists"]["a"]
        assert a["count"] == 2
        window = [other, old]
        for op in a["ops"]:
            if op["op"] == "DELETE":
                # a DELETE at the end of a window that grew removes nothing the client holds
                if op["index"] < len(window):
                    del window[op["index"]]
            elif op["op"] == "INSERT":
                window.insert(op["index"], op["room_id"])
            else:
                raise AssertionError("unexpected op %r" % op)
        assert window == [new, other], a["ops"]
        assert all(op.get("room_id") != old for op in a["ops"])
        # the new room: a snapshot with the list's parameters
        room = resp["rooms"][new]
        assert room["initial"] is True
        assert room["joined_count"] == 1
        assert room["name"] == "After the upgrade"
        assert bodies(room) == ["new times"]
        if conn is c:
            assert room["required_state"] == [new_create]
            # the old room: the tombstone reaches the client, the room is not re-sent whole
            assert resp["rooms"][old]["timeline"] == [tomb]
            assert "initial" not in resp["rooms"][old]
        else:
            assert "required_state" not in room, json.dumps(room)
            # the old room comes with the new one, as include_old_rooms asks
            assert resp["rooms"][old]["initial"] is True
            assert resp["rooms"][old]["required_state"] == [old_state[0], tomb]
            # the client showed the old room when the tombstone came: it gets it, although
            # the old-room parameters ask for no timeline
            assert resp["rooms"][old]["timeline"] == [tomb]
            assert resp["rooms"][old]["num_live"] == 1

    # a fresh connection: the old room only in `rooms`, with the include_old_rooms parameters
    fresh = proxy.client(alice.token).sync({"conn_id": "f", "lists": {"a": {
        "ranges": [[0, 9]], "timeline_limit": 1, "include_old_rooms": old_params}}})
    assert fresh["lists"]["a"]["count"] == 2
    assert sync_op_room_ids(fresh, "a") == [new, other]
    assert set(fresh["rooms"]) == {new, other, old}
    assert fresh["rooms"][old]["required_state"] == [old_state[0], tomb]
    assert "timeline" not in fresh["rooms"][old]
    assert "required_state" not in fresh["rooms"][new]


def test_include_old_rooms_follows_the_chain_while_joined(proxy, alice):
    A = alice.user_id
    ra, rb, rc, rd = (F.new_room_id(x) for x in ("chainA", "chainB", "chainC", "chainD"))
    creates = {ra: F.create(A), rb: upgraded_create(A, ra), rc: upgraded_create(A, rb), rd: upgraded_create(A, rc)}
    succ = {ra: rb, rb: rc, rc: rd}
    join = {}
    for rid in (ra, rb, rc, rd):
        tl = [F.message(A, "in " + rid)]
        if rid in succ:
            tl.append(F.tombstone(A, succ[rid]))
        join[rid] = F.joined_room([creates[rid]] + F.room_state(A)[1:], tl)
    alice.queue(F.sync_response(join=join))
    c = proxy.client(alice.token)
    resp = c.sync({"room_subscriptions": {rb: {"timeline_limit": 1, "include_old_rooms": {
        "timeline_limit": 0, "required_state": [["m.room.create", ""]]}}}})
    assert set(resp["rooms"]) == {ra, rb}
    assert resp["rooms"][ra]["required_state"] == [creates[ra]]
    assert resp["rooms"][rb]["timeline"][-1]["type"] == "m.room.tombstone"
    alice.wait_idle()

    # alice leaves B: walking back from D stops at C, the first room she is not in ends it
    alice.queue(F.sync_response(leave={rb: F.left_room([F.leave(A)])}))
    alice.wait_idle()
    resp = proxy.client(alice.token).sync({"conn_id": "d", "room_subscriptions": {rd: {
        "timeline_limit": 1, "include_old_rooms": {"timeline_limit": 1}}}})
    assert set(resp["rooms"]) == {rc, rd}
    assert resp["rooms"][rc]["timeline"][-1]["type"] == "m.room.tombstone"
    assert resp["rooms"][rc]["initial"] is True


def test_include_old_rooms_of_a_list_and_a_subscription_are_combined(proxy, alice):
    A = alice.user_id
    old, new = F.new_room_id("uold"), F.new_room_id("unew")
    old_state = F.room_state(A, "Old union")
    tomb = F.tombstone(A, new)
    old_tl = [F.message(A, "o%d" % i) for i in range(4)] + [tomb]
    new_create = upgraded_create(A, old)
    alice.queue(F.sync_response(join={
        old: F.joined_room(old_state, old_tl),
        new: F.joined_room([new_create] + F.room_state(A, "New union")[1:],
                           [F.message(A, "n%d" % i) for i in range(4)]),
    }))
    resp = proxy.client(alice.token).sync({
        "lists": {"a": {"ranges": [[0, 9]], "timeline_limit": 4, "required_state": [["m.room.name", ""]],
                        "include_old_rooms": {"timeline_limit": 0, "required_state": [
                            ["m.room.member", "$ME"], ["m.room.create", ""]]}}},
        "room_subscriptions": {new: {"timeline_limit": 3, "required_state": [["m.room.join_rules", ""]],
                                     "include_old_rooms": {"timeline_limit": 1, "required_state": [
                                         ["m.room.tombstone", ""], ["m.room.create", ""]]}}}})
    assert sync_op_room_ids(resp, "a") == [new]
    room = resp["rooms"][old]
    assert room["timeline"] == [tomb]
    assert sorted(pairs(room["required_state"])) == sorted([
        ("m.room.create", ""), ("m.room.member", A), ("m.room.tombstone", "")])
    # the new room: its own sources combined, nothing of include_old_rooms
    assert len(resp["rooms"][new]["timeline"]) == 4
    assert sorted(pairs(resp["rooms"][new]["required_state"])) == [("m.room.join_rules", ""),
                                                                   ("m.room.name", "")]


# ---------------------------------------------------------------- num_live ("num_live")

def test_num_live_counts_live_events_only(proxy, alice):
    A = alice.user_id
    r1, r2, r3 = (F.new_room_id("nl%d" % i) for i in (1, 2, 3))
    join = {}
    for rid in (r1, r2, r3):
        join[rid] = F.joined_room(F.room_state(A, rid[1:4]), [F.message(A, "old 1"), F.message(A, "old 2")])
    alice.queue(F.sync_response(join=join))
    c = proxy.client(alice.token)
    resp = c.sync({"lists": {"a": {"ranges": [[0, 1]], "timeline_limit": 2}}})
    assert sync_op_room_ids(resp, "a") == [r3, r2]
    assert all("num_live" not in r for r in resp["rooms"].values())
    alice.wait_idle()

    # two events pull r1 into the window: one snapshot holding both, num_live 2
    resp = live(alice, c, r1, F.message(A, "bump 1"), F.message(A, "bump 2"))
    assert set(resp["rooms"]) == {r1}
    room = resp["rooms"][r1]
    assert room["initial"] is True
    assert bodies(room) == ["bump 1", "bump 2"]
    assert room["num_live"] == 2
    assert resp["lists"]["a"]["ops"] == [{"op": "DELETE", "index": 1}, {"op": "INSERT", "index": 0, "room_id": r1}]

    # ten events over four v2 responses before the client asks: all of them, beyond the limit
    msgs = [F.message(A, "batch %d" % i) for i in range(10)]
    for chunk in (msgs[0:2], msgs[2:3], msgs[3:6], msgs[6:10]):
        alice.queue(F.sync_response(join={r1: F.joined_room(timeline=chunk)}))
        alice.wait_idle()
    resp = c.sync({}, timeout=5000)
    room = resp["rooms"][r1]
    assert room["timeline"] == msgs
    assert room["num_live"] == 10
    assert "initial" not in room

    fresh = proxy.client(alice.token).sync({"conn_id": "f", "lists": {"a": {"ranges": [[0, 2]], "timeline_limit": 3}}})
    assert all("num_live" not in r for r in fresh["rooms"].values())
    assert fresh["rooms"][r1]["timeline"] == msgs[-3:]


# ---------------------------------------------------------------- redacted state ("Timeline")

def redaction_of(sender, ev):
    r = F.event("m.room.redaction", sender, {})
    r["redacts"] = ev["event_id"]
    return r


def test_redacted_state_changes_room_fields_live(proxy, alice):
    A, B = alice.user_id, "@bob:localhost"
    rid = F.new_room_id("redst")
    name_ev = F.name(A, "Named room")
    alias_ev = F.canonical_alias(A, "#fallback:localhost")
    avatar_ev = F.avatar(A, "mxc://localhost/room")
    bob_join = F.join(B, displayname="Bob")
    alice.queue(F.sync_response(join={rid: F.joined_room(
        F.room_state(A) + [name_ev, alias_ev, avatar_ev, bob_join], [F.message(B, "hi")])}))
    c = proxy.client(alice.token)
    resp = c.sync({"lists": {"a": {"ranges": [[0, 0]], "timeline_limit": 1}}})
    assert (resp["rooms"][rid]["name"], resp["rooms"][rid]["avatar"]) == ("Named room", "mxc://localhost/room")
    alice.wait_idle()

    steps = [
        (name_ev, {"name": "#fallback:localhost"}),
        (avatar_ev, {"avatar": None}),
        (alias_ev, {"name": "Bob"}),
        (bob_join, {"name": B}),
    ]
    for target, want in steps:
        red = redaction_of(A, target)
        resp = live(alice, c, rid, red)
        room = resp["rooms"][rid]
        assert room["timeline"] == [red]
        for k, v in want.items():
            assert k in room and room[k] == v, (target["type"], room)
        for k in {"name", "avatar"} - set(want):
            assert k not in room, (target["type"], room)
    fresh = proxy.client(alice.token).sync({"conn_id": "f", "lists": {"a": {
        "ranges": [[0, 0]], "required_state": [["m.room.member", B]]}}})
    room = fresh["rooms"][rid]
    assert (room["name"], room["avatar"], room["joined_count"]) == (B, None, 2)
    assert room["required_state"][0]["content"] == {"membership": "join"}


# ---------------------------------------------------------------- subscriptions ("Sticky parameters")

def test_new_subscription_after_live_events_has_the_newest_events_in_order(proxy, alice):
    A = alice.user_id
    rid, other = F.new_room_id("order"), F.new_room_id("orderother")
    st = F.room_state(A, "Ordered")
    ea, eb, ec = (F.message(A, x) for x in "ABC")
    alice.queue(F.sync_response(join={
        rid: F.joined_room(st, [F.topic(A, "t"), ea, eb, ec]),
        other: F.joined_room(F.room_state(A, "Newer"), [F.message(A, "o")])}))
    c = proxy.client(alice.token)
    resp = c.sync({"lists": {"a": {"ranges": [[1, 1]], "timeline_limit": 1}}})
    assert bodies(resp["rooms"][rid]) == ["C"]
    alice.wait_idle()
    alice.queue(F.sync_response(join={rid: F.joined_room(timeline=[F.message(A, "D")])}))
    alice.wait_idle()
    alice.queue(F.sync_response(join={rid: F.joined_room(timeline=[F.message(A, "E")])}))
    alice.wait_idle()
    # D and E moved the room out of the window [1,1]; nothing more of it is sent...
    resp = c.sync({}, timeout=3000)
    assert resp["lists"]["a"]["count"] == 2
    # ...until a subscription asks for 5 events: exactly the newest five, oldest first
    resp = c.sync({"room_subscriptions": {rid: {"timeline_limit": 5}}}, timeout=3000)
    assert bodies(resp["rooms"][rid]) == ["A", "B", "C", "D", "E"]
    assert resp["rooms"][rid]["initial"] is True
    alice.queue(F.sync_response(join={rid: F.joined_room(timeline=[F.message(A, "F"), F.message(A, "G")])}))
    alice.wait_idle()
    resp = c.sync({}, timeout=3000)
    assert bodies(resp["rooms"][rid]) == ["F", "G"]
    fresh = proxy.client(alice.token).sync({"conn_id": "f", "room_subscriptions": {rid: {"timeline_limit": 3}}})
    assert bodies(fresh["rooms"][rid]) == ["E", "F", "G"]


def test_changing_a_subscription(proxy, alice):
    A = alice.user_id
    rid, other = F.new_room_id("subch"), F.new_room_id("subother")
    st = F.room_state(A, "Changing") + [F.topic(A, "About")]
    alice.queue(F.sync_response(join={
        rid: F.joined_room(st, [F.message(A, "m1"), F.message(A, "m2")]),
        other: F.joined_room(F.room_state(A, "Other"), [F.message(A, "x")]),
    }))
    c = proxy.client(alice.token)
    resp = c.sync({"room_subscriptions": {rid: {"timeline_limit": 1, "required_state": [["m.room.name", ""]]}}})
    assert pairs(resp["rooms"][rid]["required_state"]) == [("m.room.name", "")]
    alice.wait_idle()

    # a different required_state: the room again, whole, with exactly the new state
    resp = c.sync({"room_subscriptions": {rid: {"timeline_limit": 1,
                                                "required_state": [["m.room.topic", ""]]}}}, timeout=3000)
    room = resp["rooms"][rid]
    assert room["initial"] is True
    assert pairs(room["required_state"]) == [("m.room.topic", "")]
    assert bodies(room) == ["m2"]

    # a different timeline_limit: both fields again
    resp = c.sync({"room_subscriptions": {rid: {"timeline_limit": 2,
                                                "required_state": [["m.room.topic", ""]]}}}, timeout=3000)
    room = resp["rooms"][rid]
    assert room["initial"] is True
    assert bodies(room) == ["m1", "m2"]
    assert pairs(room["required_state"]) == [("m.room.topic", "")]

    # only include_heroes / include_old_rooms changed: nothing is re-sent
    resp = c.sync({"room_subscriptions": {rid: {"timeline_limit": 2, "required_state": [["m.room.topic", ""]],
                                                "include_heroes": True,
                                                "include_old_rooms": {"timeline_limit": 1}}}}, timeout=300)
    assert rid not in (resp.get("rooms") or {})

    # the same room subscribed to again and unsubscribed in one request: unsubscribed
    resp = c.sync({"room_subscriptions": {rid: {"timeline_limit": 5}}, "unsubscribe_rooms": [rid]}, timeout=300)
    assert rid not in (resp.get("rooms") or {})
    alice.queue(F.sync_response(join={rid: F.joined_room(timeline=[F.message(A, "unseen")]),
                                      other: F.joined_room(timeline=[F.message(A, "seen elsewhere")])}))
    alice.wait_idle()
    # a list over `other` only shows that the response is not empty for lack of data
    resp = c.sync({"lists": {"o": {"ranges": [[0, 0]], "filters": {"room_name_like": "Other"},
                                   "timeline_limit": 1}}}, timeout=3000)
    assert rid not in resp["rooms"]
    assert other in resp["rooms"]
    resp = c.sync({}, timeout=300)
    assert rid not in (resp.get("rooms") or {})


def test_request_changes_do_not_starve_live_events(proxy, alice):
    A = alice.user_id
    rooms = [F.new_room_id("st%d" % i) for i in range(10)]
    alice.queue(F.sync_response(join={rid: F.joined_room(F.room_state(A, "S%d" % i), [F.message(A, "s%d" % i)])
                                      for i, rid in enumerate(rooms)}))
    top = rooms[-1]
    c = proxy.client(alice.token)
    resp = c.sync({"lists": {"a": {"ranges": [[0, 0]], "timeline_limit": 1}}})
    assert sync_op_room_ids(resp, "a") == [top]
    alice.wait_idle()
    sent, seen = [], []
    for i in range(1, 10):
        ev = F.message(A, "live %d" % i)
        sent.append(ev["event_id"])
        alice.queue(F.sync_response(join={top: F.joined_room(timeline=[ev])}))
        # every request changes the window, so every response has ops to return at once
        resp = c.sync({"lists": {"a": {"ranges": [[0, i]]}}}, timeout=3000)
        for rid, room in resp.get("rooms", {}).items():
            if rid == top:
                seen += [e["event_id"] for e in room.get("timeline", [])]
    alice.wait_idle()
    resp = c.sync({}, timeout=1000)
    seen += [e["event_id"] for e in resp.get("rooms", {}).get(top, {}).get("timeline", [])]
    assert [e for e in seen if e in sent] == sent, "live events lost or repeated"


def test_subscription_to_a_room_joined_later(proxy, alice):
    A = alice.user_id
    rid = F.new_room_id("race")
    own = F.new_room_id("ownrace")
    alice.queue(F.sync_response(join={own: F.joined_room(F.room_state(A, "Mine"), [F.message(A, "m")])}))
    c = proxy.client(alice.token)
    resp = c.sync({"room_subscriptions": {rid: {"timeline_limit": 1, "required_state": [["m.room.create", ""]]}}})
    assert rid not in (resp.get("rooms") or {})
    alice.wait_idle()
    st = F.room_state("@bob:localhost", "Raced") + [F.join(A)]
    msg = F.message(A, "here now")
    alice.queue(F.sync_response(join={rid: F.joined_room(st, [msg])}))
    alice.wait_idle()
    resp = c.sync({}, timeout=3000)
    assert set(resp["rooms"]) == {rid}
    room = resp["rooms"][rid]
    assert room["initial"] is True
    assert room["required_state"] == [st[0]]
    assert room["timeline"] == [msg]


# ---------------------------------------------------------------- per-user fields ("Timeline")

def test_per_user_membership_fields_are_stripped(proxy, alice):
    A = alice.user_id
    rid = F.new_room_id("msc4115")
    name_ev = F.name(A, "Stripped", unsigned={"membership": "join", "io.element.msc4115.membership": "join",
                                              "age": 5})
    st = F.room_state(A) + [name_ev]
    alice.queue(F.sync_response(join={rid: F.joined_room(st, [F.message(A, "first")])}))
    c = proxy.client(alice.token)
    resp = c.sync({"lists": {"a": {"ranges": [[0, 0]], "timeline_limit": 1,
                                   "required_state": [["m.room.name", ""]]}}})
    want = dict(name_ev, unsigned={"age": 5})
    assert resp["rooms"][rid]["required_state"] == [want]
    alice.wait_idle()
    ev = F.message(A, "mine", unsigned={"membership": "join", "io.element.msc4115.membership": "join",
                                        "age": 17, "custom": [1, 2]})
    resp = live(alice, c, rid, ev)
    assert resp["rooms"][rid]["timeline"] == [dict(ev, unsigned={"age": 17, "custom": [1, 2]})]
    only = F.message(A, "only membership", unsigned={"io.element.msc4115.membership": "join"})
    resp = live(alice, c, rid, only)
    got = resp["rooms"][rid]["timeline"][0]
    assert got.get("unsigned", {}) == {}
    assert {k: v for k, v in got.items() if k != "unsigned"} == {k: v for k, v in only.items() if k != "unsigned"}


# ---------------------------------------------------------------- names arriving in pieces ("Room names")

def test_room_names_arriving_in_pieces(proxy, alice):
    A = alice.user_id
    rooms = [F.new_room_id("piece%d" % i) for i in range(4)]
    names = {rid: "Piece %d" % i for i, rid in enumerate(rooms)}
    c = proxy.client(alice.token)
    latest = {}

    def poll(timeout=3000):
        resp = c.sync({}, timeout=timeout)
        for rid, room in resp.get("rooms", {}).items():
            if "name" in room:
                latest.setdefault(rid, []).append(room["name"])
        return resp

    resp = c.sync({"lists": {"all": {"slow_get_all_rooms": True, "timeline_limit": 1,
                                     "required_state": [["m.room.name", ""]]}}})
    assert resp["lists"]["all"]["count"] == 0
    # per room: create + join, then power levels and join rules, then the name
    steps = [
        lambda rid: F.joined_room([F.create(A)], [F.join(A)]),
        lambda rid: F.joined_room(timeline=[F.power_levels(A), F.join_rules(A)]),
        lambda rid: F.joined_room(timeline=[F.name(A, names[rid])]),
    ]
    for step in range(3):
        for rid in rooms:
            alice.queue(F.sync_response(join={rid: steps[step](rid)}))
            alice.wait_idle()
            poll()
    for rid in rooms:
        got = latest[rid]
        assert got[-1] == names[rid], (rid, got)
        # once named, the name never goes back
        assert got[got.index(names[rid]):] == [names[rid]] * (len(got) - got.index(names[rid])), got
    fresh = proxy.client(alice.token).sync({"conn_id": "f", "lists": {"all": {"slow_get_all_rooms": True}}})
    assert {rid: fresh["rooms"][rid]["name"] for rid in rooms} == names
