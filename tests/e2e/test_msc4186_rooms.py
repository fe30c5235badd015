"""MSC4186 room objects: name/avatar/heroes, invites, is_dm, required_state special values,
bump_stamp, and never a wrongly typed field from hostile state.
(docs/behaviour.md, "Simplified sliding sync")"""

import fakehs as F
from helpers import SimplifiedSync

BOB, CAROL = "@bob:localhost", "@carol:localhost"


def own_room(alice, label):
    """A room of alice's own, named label, with one message."""
    rid = F.new_room_id(label.lower())
    A = alice.user_id
    alice.queue(F.sync_response(join={rid: F.joined_room(F.room_state(A, label), [F.message(A, "x")])}))
    return rid


def live(alice, rid, *events):
    alice.queue(F.sync_response(join={rid: F.joined_room(timeline=list(events))}))
    alice.wait_idle()


def sub(rid, timeline_limit=5, required_state=()):
    return {"room_subscriptions": {rid: {"timeline_limit": timeline_limit,
                                         "required_state": [list(p) for p in required_state]}}}


def all_rooms(timeline_limit=1, required_state=(), **filters):
    return {"lists": {"all": {"ranges": [[0, 20]], "timeline_limit": timeline_limit,
                              "required_state": [list(p) for p in required_state], "filters": filters}}}


def test_heroes_of_unnamed_room(proxy, alice):
    rid = F.new_room_id("heroes")
    st = F.room_state(BOB) + [F.join(alice.user_id, displayname="Alice"),
                              F.join(CAROL, displayname="Carol", avatar_url="mxc://localhost/carol")]
    alice.queue(F.sync_response(join={rid: F.joined_room(st, [F.message(BOB, "hi")])}))
    room = SimplifiedSync(proxy, alice.token).sync(all_rooms())["rooms"][rid]
    assert "name" not in room
    heroes = room["heroes"]
    assert [h["user_id"] for h in heroes] == [BOB, CAROL], "earliest members, never the user"
    assert heroes[1] == {"user_id": CAROL, "displayname": "Carol", "avatar_url": "mxc://localhost/carol"}


def test_hostile_state_never_mistyped(proxy, alice):
    rid = F.new_room_id("hostile")
    st = F.room_state(BOB) + [
        F.state("m.room.name", "", BOB, {"name": 42}),
        F.state("m.room.avatar", "", BOB, {"url": {"no": 1}}),
        F.join(alice.user_id),
        F.state("m.room.member", CAROL, CAROL, {"membership": "join", "displayname": ["x"], "avatar_url": 7}),
    ]
    alice.queue(F.sync_response(join={rid: F.joined_room(st, [F.message(BOB, "hi")])}))
    # SimplifiedSync checks the ruma types of every answer.
    room = SimplifiedSync(proxy, alice.token).sync(all_rooms())["rooms"][rid]
    assert "name" not in room and "avatar" not in room
    carol = [h for h in room["heroes"] if h["user_id"] == CAROL][0]
    assert carol == {"user_id": CAROL}


def test_invite(proxy, alice):
    rid = F.new_room_id("inv")
    inv = F.invite_to(BOB, alice.user_id, room_name="Party", is_direct=True)
    alice.queue(F.sync_response(invite={rid: F.invited_room(inv)}))
    resp = SimplifiedSync(proxy, alice.token).sync(all_rooms(is_invite=True))
    assert resp["lists"]["all"]["count"] == 1
    room = resp["rooms"][rid]
    assert room["initial"] is True
    assert room["name"] == "Party"
    assert room["invite_state"][-1]["content"]["membership"] == "invite"
    assert room["invite_state"][-1]["state_key"] == alice.user_id
    assert room["is_dm"] is True
    assert isinstance(room["bump_stamp"], int)
    assert not room.get("timeline"), "nothing of the room's timeline leaks to an invitee"


def test_hostile_invite_state_filtered(proxy, alice):
    rid = F.new_room_id("badinv")
    inv = F.invite_to(BOB, alice.user_id)
    body = F.sync_response(invite={rid: F.invited_room(inv)})
    body["rooms"]["invite"][rid]["invite_state"]["events"][:0] = [
        5, "x", {"type": 7, "state_key": ""}, {"type": "m.room.name", "state_key": "", "content": {"name": 1}}]
    alice.queue(body)
    resp = SimplifiedSync(proxy, alice.token).sync(all_rooms())
    room = resp["rooms"][rid]
    assert "name" not in room
    assert all(isinstance(e, dict) and isinstance(e["type"], str) for e in room["invite_state"])
    assert room["invite_state"][-1]["state_key"] == alice.user_id


def test_is_dm_from_m_direct(proxy, alice):
    dm, group = F.new_room_id("dm"), F.new_room_id("group")
    alice.queue(F.sync_response(
        join={dm: F.joined_room(F.room_state(BOB) + [F.join(alice.user_id)], [F.message(BOB, "psst")]),
              group: F.joined_room(F.room_state(alice.user_id, "Group"), [F.message(alice.user_id, "hi")])},
        account_data=[F.account_data("m.direct", {BOB: [dm]})]))
    resp = SimplifiedSync(proxy, alice.token).sync(all_rooms())
    assert resp["rooms"][dm]["is_dm"] is True
    assert "is_dm" not in resp["rooms"][group]


def test_avatar_changes_and_removal(proxy, alice):
    rid = F.new_room_id("av")
    A = alice.user_id
    alice.queue(F.sync_response(join={rid: F.joined_room(F.room_state(A, "Pics", avatar_url="mxc://localhost/a"),
                                                         [F.message(A, "x")])}))
    c = SimplifiedSync(proxy, alice.token)
    body = sub(rid, required_state=[("m.room.avatar", "")])
    assert c.sync(body)["rooms"][rid]["avatar"] == "mxc://localhost/a"
    ev = F.avatar(A, "mxc://localhost/b")
    alice.queue(F.sync_response(join={rid: F.joined_room(timeline=[ev])}))
    alice.wait_idle()
    room = c.sync(body)["rooms"][rid]
    assert room["avatar"] == "mxc://localhost/b"
    assert room["required_state"] == [ev]
    gone = F.state("m.room.avatar", "", A, {})
    alice.queue(F.sync_response(join={rid: F.joined_room(timeline=[gone])}))
    alice.wait_idle()
    room = c.sync(body)["rooms"][rid]
    assert "avatar" in room and room["avatar"] is None, "null clears the avatar"


def test_required_state_special_values(proxy, alice):
    rid = F.new_room_id("rs")
    A = alice.user_id
    st = F.room_state(A, "State", encrypted=True) + [F.join(BOB), F.join(CAROL)]
    tl = [F.message(BOB, "from bob")]
    alice.queue(F.sync_response(join={rid: F.joined_room(st, tl)}))
    c = SimplifiedSync(proxy, alice.token)

    def state_of(conn_id, pairs):
        c.reset()
        return c.sync({"conn_id": conn_id, **sub(rid, 1, pairs)})["rooms"][rid]["required_state"]

    assert len(state_of("a", [("*", "*"), ("m.room.member", BOB)])) == len(st), \
        "[*,*] is all state, no exclusions"
    keys = sorted(e["state_key"] for e in state_of("b", [("m.room.member", "$ME"), ("m.room.member", "$LAZY")]))
    assert keys == sorted([A, BOB]), "$ME and the lazily loaded timeline sender"
    assert len(state_of("c", [("m.room.member", "*")])) == 3
    types = sorted(e["type"] for e in state_of("d", [("*", "")]))
    assert types == sorted(["m.room.create", "m.room.power_levels", "m.room.join_rules", "m.room.name",
                            "m.room.encryption"])


def test_bump_stamp_moves_with_bump_types(proxy, alice):
    rid = own_room(alice, "Bump")
    c = SimplifiedSync(proxy, alice.token)
    body = all_rooms()
    first = c.sync(body)["rooms"][rid]["bump_stamp"]
    live(alice, rid, F.topic(alice.user_id, "no bump"))
    room = c.sync(body)["rooms"][rid]
    assert room.get("bump_stamp", first) == first, "a topic change is not a bump event"
    live(alice, rid, F.message(alice.user_id, "2"))
    assert c.sync(body)["rooms"][rid]["bump_stamp"] > first


def test_live_member_change_sends_counts(proxy, alice):
    rid = own_room(alice, "Counts")
    c = SimplifiedSync(proxy, alice.token)
    body = all_rooms()
    assert c.sync(body)["rooms"][rid]["joined_count"] == 1
    live(alice, rid, F.join(BOB))
    room = c.sync(body)["rooms"][rid]
    assert room["joined_count"] == 2 and room["invited_count"] == 0


def test_is_dm_change_is_sent(proxy, alice):
    rid = F.new_room_id("becomes_dm")
    alice.queue(F.sync_response(join={rid: F.joined_room(F.room_state(BOB) + [F.join(alice.user_id)],
                                                         [F.message(BOB, "hi")])}))
    c = SimplifiedSync(proxy, alice.token)
    body = {**all_rooms(), "extensions": {"account_data": {"enabled": True}}}
    assert "is_dm" not in c.sync(body)["rooms"][rid]
    alice.queue(F.sync_response(account_data=[F.account_data("m.direct", {BOB: [rid]})]))
    alice.wait_idle()
    room = c.sync(body, timeout=5000)["rooms"][rid]
    assert room["is_dm"] is True and "initial" not in room
    alice.queue(F.sync_response(account_data=[F.account_data("m.direct", {})]))
    alice.wait_idle()
    assert c.sync(body, timeout=5000)["rooms"][rid]["is_dm"] is False
    assert c.sync(body)["rooms"] == {}, "said once"


def test_leave_shows_only_the_leave(proxy, alice):
    """The user's leave is delivered once as the room's last event and the room leaves the list;
    of the room's state only the leave itself comes with it (rust-sdk reads the user's membership
    from required_state alone), not the member counts or heroes of before the leave (they claimed
    the user still joined). (docs/behaviour.md, "Membership and security")"""
    A = alice.user_id
    rid = F.new_room_id("left")  # unnamed: heroes before the leave
    alice.queue(F.sync_response(join={rid: F.joined_room(
        F.room_state(A) + [F.join(BOB, displayname="Bob")], [F.message(BOB, "bye?")])}))
    kept = own_room(alice, "Kept")
    c = SimplifiedSync(proxy, alice.token)
    body = all_rooms(required_state=[("m.room.member", "$ME")])
    first = c.sync(body)
    assert first["rooms"][rid]["joined_count"] == 2 and first["rooms"][rid]["heroes"]
    ev = F.leave(A)
    alice.queue(F.sync_response(leave={rid: F.left_room(timeline=[ev])}))
    alice.wait_idle()
    resp = c.sync(body)
    assert resp["lists"]["all"]["count"] == 1
    assert resp["lists"]["all"]["ops"][0]["room_ids"] == [kept]
    room = resp["rooms"][rid]
    assert room["timeline"] == [ev] and room["num_live"] == 1
    assert room["required_state"] == [ev]
    for field in ("joined_count", "invited_count", "heroes", "name", "initial"):
        assert field not in room, field
    assert rid not in c.sync(body)["rooms"], "the leave is sent once"


def test_all_state_wins_across_list_and_subscription(proxy, alice):
    """A room in a list window whose required_state names members ($ME) and subscribed with
    ["*","*"] (Element Web opening a room of its list) gets all state, every member included:
    the members it lacked when subscribed, and every member change in live updates. (docs/behaviour.md, "Simplified sliding sync")"""
    A = alice.user_id
    rid = F.new_room_id("open")
    alice.queue(F.sync_response(join={rid: F.joined_room(
        F.room_state(A, "Open") + [F.join(BOB, displayname="Bob"), F.join(CAROL, displayname="Carol")],
        [F.message(BOB, "hi")])}))
    c = SimplifiedSync(proxy, alice.token)
    body = all_rooms(required_state=[("m.room.member", "$ME"), ("m.room.create", "")])
    members = lambda room: sorted(e["state_key"] for e in room.get("required_state", ())  # noqa: E731
                                  if e["type"] == "m.room.member")
    assert members(c.sync(body)["rooms"][rid]) == [A]
    body.update(sub(rid, required_state=[("*", "*")]))
    room = c.sync(body)["rooms"][rid]
    assert "initial" not in room, "the client has the room: only the newly covered state comes"
    assert members(room) == sorted([BOB, CAROL])
    dave = "@dave:localhost"
    ev = F.join(dave, displayname="Dave")
    live(alice, rid, ev)
    room = c.sync(body)["rooms"][rid]
    assert room["timeline"] == [ev]
    assert [e["event_id"] for e in room.get("required_state", ())] == [ev["event_id"]]
