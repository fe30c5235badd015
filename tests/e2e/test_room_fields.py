"""Room object fields as they change over a connection (client-api §10, §11, §14): heroes, live
names/avatars/counts, DM avatars, upgrades and include_old_rooms, num_live, redacted state,
subscription parameters, stripped per-user fields."""

import pytest

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


# ---------------------------------------------------------------- heroes (§10, §11.3)

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
    # heroes are the newest members first
    assert room["name"] == "Carol and Bob"
    assert room["heroes"] == [{"user_id": CAROL, "displayname": "Carol"},
                              {"user_id": B, "displayname": "Bob", "avatar_url": BOB_PIC}]
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
    assert room["name"] == "Carol and Bob"
    assert room["heroes"] == [{"user_id": CAROL, "displayname": "Carol", "avatar_url": CAROL_PIC},
                              {"user_id": B, "displayname": "Bob"}]


# ---------------------------------------------------------------- live name and counts (§10, §11.4)

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
    assert room["name"] == "@carol:localhost and Bob"

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


# ---------------------------------------------------------------- avatars (§11.5, §11.6)

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
