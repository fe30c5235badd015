"""More membership transitions (docs/behaviour.md, "Joins",
"Membership and security"): an invite rejected and then sent again,
several invites rejected or accepted in one response, a subscription waiting for an invite to
be accepted."""

import fakehs as F
from helpers import Window, sync_op_room_ids

BOB = "@bob:localhost"
CAROL = "@carol:localhost"


def deliver(user, c, timeout=5000, **rooms):
    """Queues one v2 response, waits until the proxy stored it, returns c's next response."""
    user.queue(F.sync_response(**rooms))
    user.wait_idle()
    return c.sync({}, timeout=timeout)


def own_room(alice):
    own = F.new_room_id("own")
    alice.queue(F.sync_response(join={own: F.joined_room(F.room_state(alice.user_id, "Notes"),
                                                         [F.message(alice.user_id, "note")])}))
    return own


def test_invite_rejected_then_sent_again(proxy, alice):
    A = alice.user_id
    own = own_room(alice)
    c = proxy.client(alice.token)
    w = Window("a")
    assert w.apply(c.sync({"lists": {"a": {"ranges": [[0, 9]], "timeline_limit": 5}}})) == [own]
    alice.wait_idle()

    rid = F.new_room_id("twice")
    first = F.invited_room(F.invite_to(BOB, A, room_name="Try again"))
    resp = deliver(alice, c, invite={rid: first})
    assert w.apply(resp) == [rid, own]
    assert resp["rooms"][rid]["invite_state"] == first["invite_state"]["events"]

    reject = F.leave(A)
    resp = deliver(alice, c, leave={rid: F.left_room([reject])})
    assert w.apply(resp) == [own]
    assert resp["rooms"][rid]["timeline"] == [reject], "the rejection is delivered once"
    resp = c.sync({}, timeout=300)
    assert rid not in (resp.get("rooms") or {})

    # bob invites her again: the same room is listed again, as a fresh invite
    second = F.invited_room(F.invite_to(BOB, A, room_name="Try again"))
    resp = deliver(alice, c, invite={rid: second})
    assert w.apply(resp) == [rid, own]
    assert w.count == 2
    room = resp["rooms"][rid]
    assert room["initial"] is True
    assert room["invite_state"] == second["invite_state"]["events"]
    assert (room["name"], room["invited_count"], room["joined_count"]) == ("Try again", 1, 1)
    # and a new connection sees it too
    fresh = proxy.client(alice.token).sync({"conn_id": "f", "lists": {"a": {"ranges": [[0, 9]]}}})
    assert sync_op_room_ids(fresh, "a") == [rid, own]
    assert fresh["rooms"][rid]["invite_state"] == second["invite_state"]["events"]


def test_two_invites_rejected_in_one_response(proxy, alice):
    A = alice.user_id
    own = own_room(alice)
    c = proxy.client(alice.token)
    body = {"lists": {"inv": {"ranges": [[0, 9]], "filters": {"is_invite": True}},
                      "all": {"ranges": [[0, 9]]}}}
    wi, wa = Window("inv"), Window("all")
    resp = c.sync(body)
    assert (wi.apply(resp), wa.apply(resp)) == ([], [own])
    alice.wait_idle()
    r1, r2 = F.new_room_id("inv1"), F.new_room_id("inv2")
    resp = deliver(alice, c, invite={r1: F.invited_room(F.invite_to(BOB, A, room_name="One"))})
    wi.apply(resp), wa.apply(resp)
    resp = deliver(alice, c, invite={r2: F.invited_room(F.invite_to(CAROL, A, room_name="Two"))})
    assert wi.apply(resp) == [r2, r1]
    assert wa.apply(resp) == [r2, r1, own]

    l1, l2 = F.leave(A), F.leave(A)
    resp = deliver(alice, c, leave={r1: F.left_room([l1]), r2: F.left_room([l2])})
    assert resp["lists"]["inv"]["count"] == 0
    assert sorted(op["op"] for op in resp["lists"]["inv"]["ops"]) == ["DELETE", "DELETE"]
    assert wi.apply(resp) == []
    assert wa.apply(resp) == [own]
    assert wa.count == 1
    assert resp["rooms"][r1]["timeline"] == [l1]
    assert resp["rooms"][r2]["timeline"] == [l2]

    fresh = proxy.client(alice.token).sync({"conn_id": "f", "lists": {"inv": {
        "ranges": [[0, 9]], "filters": {"is_invite": True}}}})
    assert fresh["lists"]["inv"] == {"count": 0}
    assert not fresh.get("rooms")


def test_two_invites_accepted_in_one_response(proxy, alice):
    A = alice.user_id
    own = own_room(alice)
    c = proxy.client(alice.token)
    body = {"lists": {"inv": {"ranges": [[0, 9]], "filters": {"is_invite": True}},
                      "joined": {"ranges": [[0, 9]], "filters": {"is_invite": False}, "timeline_limit": 1}}}
    wi, wj = Window("inv"), Window("joined")
    resp = c.sync(body)
    assert (wi.apply(resp), wj.apply(resp)) == ([], [own])
    alice.wait_idle()
    r1, r2 = F.new_room_id("acc1"), F.new_room_id("acc2")
    resp = deliver(alice, c, invite={
        r1: F.invited_room(F.invite_to(BOB, A, room_name="First")),
        r2: F.invited_room(F.invite_to(CAROL, A, room_name="Second"))})
    wi.apply(resp), wj.apply(resp)
    assert sorted(wi.rooms) == sorted([r1, r2])

    s1 = F.room_state(BOB, "First")
    s2 = F.room_state(CAROL, "Second")
    j1, j2 = F.join(A), F.join(A)
    resp = deliver(alice, c, join={r1: F.joined_room(s1, [j1]), r2: F.joined_room(s2, [j2])})
    assert resp["lists"]["inv"]["count"] == 0
    assert wi.apply(resp) == []
    assert sorted(wj.apply(resp)[:2]) == sorted([r1, r2])
    assert wj.rooms[2] == own and wj.count == 3
    for rid, j in ((r1, j1), (r2, j2)):
        room = resp["rooms"][rid]
        assert room["initial"] is True
        assert room["timeline"] == [j]
        assert (room["joined_count"], room["invited_count"], room["highlight_count"]) == (2, 0, 0)
        assert "invite_state" not in room


def test_subscription_waits_for_the_invite_to_be_accepted(proxy, alice):
    A = alice.user_id
    own = own_room(alice)
    rid = F.new_room_id("pending")
    c = proxy.client(alice.token)
    sub = {rid: {"timeline_limit": 2, "required_state": [["m.room.name", ""]]}}
    resp = c.sync({"room_subscriptions": sub})
    assert not resp.get("rooms")
    alice.wait_idle()

    resp = deliver(alice, c, timeout=300,
                   invite={rid: F.invited_room(F.invite_to(BOB, A, room_name="Later"))})
    assert rid not in (resp.get("rooms") or {}), "an invite does not activate a subscription"

    st = F.room_state(BOB, "Later")
    hello = F.message(BOB, "hello")
    join = F.join(A)
    resp = deliver(alice, c, join={rid: F.joined_room(st, [hello, join])})
    assert set(resp["rooms"]) == {rid}
    room = resp["rooms"][rid]
    assert room["initial"] is True
    assert room["timeline"] == [join], "history starts at her join"
    assert room["required_state"] == [st[4]]
    # and live events follow
    msg = F.message(BOB, "welcome")
    resp = deliver(alice, c, join={rid: F.joined_room(timeline=[msg])})
    assert resp["rooms"][rid]["timeline"] == [msg]
    assert own not in resp["rooms"]
