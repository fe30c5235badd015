"""Membership transitions and the security rules around them (docs/behaviour.md, "Joins",
"Membership and security", "Room object", "Counts").

In every scenario "alice" is the user whose membership changes and "bob" is a user who stays
joined to the room with a poller of his own, so the proxy keeps learning about the room after
alice lost access. Text that alice must never see carries the marker SECRET; each check that she
did not see it is paired with a check that bob did, so the data really flowed through the proxy.
"""

import json

import pytest

import fakehs as F
from helpers import Window, ids, list_ops, sync_op_room_ids, tl_ids

SECRET = "SECRET"
CAROL = "@carol:localhost"


# ---------------------------------------------------------------- helpers

def list_body(timeline_limit=10, **kw):
    """One list "a" over every room, newest first, with two required_state entries that would
    match (and so reveal) any room's create and name events."""
    return {"a": dict({"ranges": [[0, 19]], "sort": ["by_recency"], "timeline_limit": timeline_limit,
                       "required_state": [["m.room.create", ""], ["m.room.name", ""]]}, **kw)}


def text(resp):
    return json.dumps(resp)


def quick(c, body=None):
    """One incremental request that returns what is pending (or nothing after 300 ms)."""
    return c.sync(body or {}, timeout=300)


def assert_nothing_of(resp, rid, who="alice"):
    s = text(resp)
    assert rid not in s, "%s was told about %s: %s" % (who, rid, s[:2000])
    assert SECRET not in s, "%s saw data from a room she is not in: %s" % (who, s[:2000])


def fresh_view(proxy, user, conn_id, subscribe=()):
    """A fresh connection's first response: list "a" plus room subscriptions."""
    body = {"conn_id": conn_id, "lists": list_body()}
    if subscribe:
        body["room_subscriptions"] = {rid: {"timeline_limit": 10, "required_state": [["*", "*"]]}
                                      for rid in subscribe}
    return proxy.client(user.token).sync(body)


def setup_shared(proxy, alice, bob, bob_extra=None):
    """alice: her own room `own` and room `rid` shared with bob (newer, so at index 0).
    Both have a connection on list "a"; returns a dict of everything. bob_extra: more
    joined rooms (room_id -> joined_room) for bob's first poll."""
    A, B = alice.user_id, bob.user_id
    own = F.new_room_id("own")
    own_st = F.room_state(A, "Alice's notes")
    own_tl = [F.message(A, "note to self")]
    rid = F.new_room_id("shared")
    st = F.room_state(B, "Shared room") + [F.join(A, displayname="Alice")]
    tl = [F.message(B, "hi alice"), F.message(A, "hi bob")]
    alice.queue(F.sync_response(join={own: F.joined_room(own_st, own_tl),
                                      rid: F.joined_room(st, tl, prev_batch="pa")}))
    ca = proxy.client(alice.token)
    wa = Window()
    resp = ca.sync({"lists": list_body()})
    assert wa.apply(resp) == [rid, own]
    alice.wait_idle()
    bob.queue(F.sync_response(join=dict(bob_extra or {}, **{rid: F.joined_room(st, tl, prev_batch="pb")})))
    cb = proxy.client(bob.token)
    wb = Window()
    assert wb.apply(cb.sync({"lists": list_body()}))[0] == rid
    bob.wait_idle()
    return dict(A=A, B=B, own=own, rid=rid, st=st, tl=tl, ca=ca, wa=wa, cb=cb, wb=wb)


def membership_change(kind, A, B):
    if kind == "leave":
        return F.leave(A)
    if kind == "kick":
        return F.leave(A, sender=B, reason="out")
    if kind == "ban":
        return F.ban(B, A, reason="spam")
    raise ValueError(kind)


def deliver_departure(alice, bob, rid, ev, after, own_first):
    """alice's poller sees the room in rooms.leave with [ev]; bob's sees [ev] + after."""
    def own():
        alice.queue(F.sync_response(leave={rid: F.left_room([ev])}))
        alice.wait_idle()

    def other():
        bob.queue(F.sync_response(join={rid: F.joined_room(timeline=[ev] + after)}))
        bob.wait_idle()

    for step in ((own, other) if own_first else (other, own)):
        step()


def bob_keeps_talking(s, alice, bob, rounds=3, label="later"):
    """bob's poller receives messages (and a topic) in the shared room; bob's connection sees
    them; alice's sees nothing of the room, over several responses."""
    B, rid = s["B"], s["rid"]
    for i in range(rounds):
        evs = [F.message(B, "%s %s %d" % (SECRET, label, i))]
        if i == 1:
            evs.append(F.topic(B, "%s topic" % SECRET))
        bob.queue(F.sync_response(join={rid: F.joined_room(timeline=evs)}))
        bob.wait_idle()
        rb = quick(s["cb"])
        assert tl_ids(rb, rid) == ids(evs), "bob (still joined) must get the room's events"
        ra = quick(s["ca"])
        assert_nothing_of(ra, rid)
        assert not list_ops(ra, "a"), ra
        assert ra["lists"]["a"]["count"] == s["wa"].count


# ---------------------------------------------------------------- invites

def setup_invite(proxy, alice, bob, inviter_polls):
    """bob's room "Party" (bob and carol joined); alice, whose list holds only her own room,
    is invited. When inviter_polls, bob has a poller, so the proxy also knows the room itself
    (messages before and after the invite and a later rename, all marked SECRET or renamed).
    Returns the dict of the scenario after alice's response carrying the invite."""
    A, B = alice.user_id, bob.user_id
    own = F.new_room_id("own")
    alice.queue(F.sync_response(join={own: F.joined_room(F.room_state(A, "Alice's notes"),
                                                         [F.message(A, "note to self")])}))
    ca = proxy.client(alice.token)
    wa = Window()
    assert wa.apply(ca.sync({"lists": list_body()})) == [own]
    alice.wait_idle()

    rid = F.new_room_id("party")
    st = F.room_state(B, "Party") + [F.join(CAROL, displayname="Carol")]
    m1 = F.message(B, SECRET + " before the invite")
    inv = F.invite(B, A)
    rename = F.name(B, "Renamed after the invite")
    m2 = F.message(B, SECRET + " after the invite")
    # as a homeserver sends it: stripped state, then the invite event itself in full
    invite_state = [F.stripped(e) for e in st if e["type"] in ("m.room.create", "m.room.join_rules",
                                                               "m.room.name")] + [inv]
    cb = None
    if inviter_polls:
        bob.queue(F.sync_response(join={rid: F.joined_room(st, [m1], prev_batch="pb")}))
        cb = proxy.client(bob.token)
        cb.sync({"lists": list_body()})
        bob.wait_idle()
        bob.queue(F.sync_response(join={rid: F.joined_room(timeline=[inv, rename, m2])}))
        bob.wait_idle()
    alice.queue(F.sync_response(invite={rid: {"invite_state": {"events": invite_state}}}))
    alice.wait_idle()
    resp = quick(ca)
    s = dict(A=A, B=B, own=own, rid=rid, st=st, m1=m1, m2=m2, inv=inv, rename=rename,
             invite_state=invite_state, ca=ca, wa=wa, cb=cb)
    return s, resp


@pytest.mark.parametrize("inviter_polls", [True, False], ids=["inviter_polls", "inviter_not_polling"])
def test_invite_arrives_live(proxy, alice, bob, inviter_polls):
    s, resp = setup_invite(proxy, alice, bob, inviter_polls)
    rid, own, wa = s["rid"], s["own"], s["wa"]
    # the invite is the newest thing: it enters at the top of a one-room list (docs/behaviour.md, "Live ops")
    assert list_ops(resp, "a") == [{"op": "DELETE", "index": 1},
                                   {"op": "INSERT", "index": 0, "room_id": rid}]
    assert wa.apply(resp) == [rid, own]
    assert wa.count == 2
    assert set(resp["rooms"]) == {rid}
    room = resp["rooms"][rid]
    assert room["initial"] is True
    assert room["invite_state"] == s["invite_state"], "invite_state must be passed on as received"
    assert room["highlight_count"] == 1
    assert room["notification_count"] == 0
    # the real counts (2 joined: bob, carol) are not revealed to an invitee
    assert room["joined_count"] == 1
    assert room["invited_count"] == 1
    assert "required_state" not in room, "invites never carry required_state"
    # nothing but the invite itself may appear in the timeline
    assert set(ids(room.get("timeline") or [])) <= {s["inv"]["event_id"]}, room.get("timeline")
    # name from invite_state only, never from the proxy's own (newer) copy of the room
    assert room["name"] == "Party"
    assert "Renamed" not in text(resp)
    assert SECRET not in text(resp)
    # a fresh connection shows the same invite, in an is_invite list too
    fresh = proxy.client(alice.token).sync({"conn_id": "fresh", "lists": {
        "a": list_body()["a"], "inv": {"ranges": [[0, 9]], "filters": {"is_invite": True}}}})
    assert sync_op_room_ids(fresh, "a") == [rid, own]
    assert sync_op_room_ids(fresh, "inv") == [rid]
    froom = fresh["rooms"][rid]
    assert (froom["joined_count"], froom["invited_count"], froom["highlight_count"]) == (1, 1, 1)
    assert "required_state" not in froom
    assert SECRET not in text(fresh) and "Renamed" not in text(fresh)


@pytest.mark.parametrize("inviter_polls", [True, False], ids=["inviter_polls", "inviter_not_polling"])
def test_invite_accepted(proxy, alice, bob, inviter_polls):
    s, resp = setup_invite(proxy, alice, bob, inviter_polls)
    A, B, rid, own, wa = s["A"], s["B"], s["rid"], s["own"], s["wa"]
    assert wa.apply(resp) == [rid, own]
    rj = F.join(A, displayname="Alice", unsigned={"prev_content": {"membership": "invite"}})
    if inviter_polls:
        bob.queue(F.sync_response(join={rid: F.joined_room(timeline=[rj])}))
        bob.wait_idle()
    # alice's homeserver: the state before the timeline, then the latest message and her join
    state_before = [e for e in s["st"] if e["type"] != "m.room.name"] + [s["rename"], s["inv"]]
    alice.queue(F.sync_response(join={rid: F.joined_room(state_before, [s["m2"], rj], prev_batch="pj")}))
    alice.wait_idle()
    resp = quick(s["ca"])
    # still the newest room: it stays at index 0, so no ops (docs/behaviour.md, "Joins")
    assert not list_ops(resp, "a"), resp["lists"]["a"]
    assert wa.apply(resp) == [rid, own]
    assert wa.count == 2
    room = resp["rooms"][rid]
    assert room["initial"] is True
    assert ids(room["timeline"]) == [rj["event_id"]], \
        "the timeline of a newly joined room starts at the join: %r" % room["timeline"]
    assert room["timeline"][-1]["content"]["membership"] == "join"
    rs = {e["type"]: e for e in room.get("required_state", [])}
    assert set(rs) == {"m.room.create", "m.room.name"}, room.get("required_state")
    assert rs["m.room.create"]["event_id"] == s["st"][0]["event_id"]
    assert rs["m.room.name"]["event_id"] == s["rename"]["event_id"]
    assert room["name"] == "Renamed after the invite"
    assert room["joined_count"] == 3
    assert room["invited_count"] == 0
    assert room["highlight_count"] == 0
    assert "invite_state" not in room
    assert SECRET not in text(resp)
    # a fresh connection: the room is joined, not invited, same timeline
    fresh = proxy.client(alice.token).sync({"conn_id": "fresh", "lists": {
        "a": list_body()["a"], "inv": {"ranges": [[0, 9]], "filters": {"is_invite": True}}}})
    assert sync_op_room_ids(fresh, "a") == [rid, own]
    assert fresh["lists"]["inv"]["count"] == 0
    assert not sync_op_room_ids(fresh, "inv")
    assert ids(fresh["rooms"][rid]["timeline"]) == [rj["event_id"]]
    assert (fresh["rooms"][rid]["joined_count"], fresh["rooms"][rid]["invited_count"]) == (3, 0)
    # live messages now flow to alice
    if inviter_polls:
        m = F.message(B, "welcome alice")
        bob.queue(F.sync_response(join={rid: F.joined_room(timeline=[m])}))
        bob.wait_idle()
        assert tl_ids(quick(s["ca"]), rid) == [m["event_id"]]





@pytest.mark.parametrize("inviter_polls", [
    True, False], ids=["inviter_polls", "inviter_not_polling"])
@pytest.mark.parametrize("kind", ["rejected", "withdrawn"])
def test_invite_rejected_or_withdrawn(proxy, alice, bob, kind, inviter_polls):
    s, resp = setup_invite(proxy, alice, bob, inviter_polls)
    A, B, rid, own, wa = s["A"], s["B"], s["rid"], s["own"], s["wa"]
    assert wa.apply(resp) == [rid, own]
    ev = F.leave(A) if kind == "rejected" else F.leave(A, sender=B, reason="oops")
    if inviter_polls:
        bob.queue(F.sync_response(join={rid: F.joined_room(
            timeline=[ev, F.message(B, SECRET + " after the " + kind + " invite")])}))
        bob.wait_idle()
    alice.queue(F.sync_response(leave={rid: F.left_room([ev])}))
    alice.wait_idle()
    resp = quick(s["ca"])
    assert list_ops(resp, "a") == [{"op": "DELETE", "index": 0}], resp["lists"]["a"]
    assert wa.apply(resp) == [own]
    assert wa.count == 1
    assert tl_ids(resp, rid) == [ev["event_id"]], \
        "the leave must be delivered exactly once, as the room's only timeline event: " + text(resp)
    assert "required_state" not in resp["rooms"][rid]
    assert SECRET not in text(resp) and "Renamed" not in text(resp)
    # nothing more of the room afterwards
    for i in range(3):
        if inviter_polls:
            bob.queue(F.sync_response(join={rid: F.joined_room(
                timeline=[F.message(B, "%s %d" % (SECRET, i))])}))
            bob.wait_idle()
        later = quick(s["ca"])
        assert_nothing_of(later, rid)
        assert later["lists"]["a"]["count"] == 1
    fresh = proxy.client(alice.token).sync({"conn_id": "fresh", "lists": {
        "a": list_body()["a"], "inv": {"ranges": [[0, 9]], "filters": {"is_invite": True}}}})
    assert fresh["lists"]["inv"]["count"] == 0
    assert sync_op_room_ids(fresh, "a") == [own]
    assert_nothing_of(fresh, rid)


# ---------------------------------------------------------------- leave, kick, ban

@pytest.mark.parametrize("own_first", [True, False], ids=["own_poller_first", "other_poller_first"])
@pytest.mark.parametrize("kind", ["leave", "kick", "ban"])
def test_departure(proxy, alice, bob, kind, own_first):
    s = setup_shared(proxy, alice, bob)
    A, B, rid, own, wa = s["A"], s["B"], s["rid"], s["own"], s["wa"]
    ev = membership_change(kind, A, B)
    # right after the departure: the room is renamed and a message is sent (bob's poller)
    after = [F.name(B, SECRET + " name"), F.message(B, SECRET + " right after")]
    deliver_departure(alice, bob, rid, ev, after, own_first)

    resp = quick(s["ca"])
    # the membership event, exactly once, as the room's (only) timeline event...
    assert tl_ids(resp, rid) == [ev["event_id"]], resp.get("rooms")
    assert resp["rooms"][rid]["timeline"][-1]["content"]["membership"] == ev["content"]["membership"]
    # ... and the room leaves the list in the same response
    assert list_ops(resp, "a") == [{"op": "DELETE", "index": 0}], resp["lists"]["a"]
    assert wa.apply(resp) == [own]
    assert wa.count == 1
    assert set(resp["rooms"]) == {rid}
    assert "required_state" not in resp["rooms"][rid]
    assert SECRET not in text(resp), "events after the %s reached alice: %s" % (kind, text(resp))
    # bob (still joined) got all of it
    rb = quick(s["cb"])
    assert tl_ids(rb, rid) == ids([ev] + after)
    # afterwards: nothing of the room, in several responses, while bob keeps talking there
    bob_keeps_talking(s, alice, bob)
    # a fresh connection neither lists nor serves the room, even when subscribed
    fresh = fresh_view(proxy, alice, "fresh", subscribe=[rid])
    assert fresh["lists"]["a"]["count"] == 1
    assert sync_op_room_ids(fresh, "a") == [own]
    assert_nothing_of(fresh, rid)
    assert set(fresh["rooms"]) == {own}


def test_preemptive_ban_leaks_nothing(proxy, alice, bob):
    A, B = alice.user_id, bob.user_id
    dm = F.new_room_id("dm")
    dm_st = F.room_state(B) + [F.join(A, displayname="Alice")]
    dm_tl = [F.message(B, "hi")]
    pub = F.new_room_id("public")
    pub_st = F.room_state(B, SECRET + " public room")
    alice.queue(F.sync_response(join={dm: F.joined_room(dm_st, dm_tl)}))
    ca = proxy.client(alice.token)
    wa = Window()
    assert wa.apply(ca.sync({"lists": list_body()})) == [dm]
    alice.wait_idle()
    bob.queue(F.sync_response(join={dm: F.joined_room(dm_st, dm_tl),
                                    pub: F.joined_room(pub_st, [F.message(B, SECRET + " one")])}))
    cb = proxy.client(bob.token)
    assert sorted(Window().apply(cb.sync({"lists": list_body()}))) == sorted([dm, pub])
    bob.wait_idle()

    # bob bans alice, who was never in the public room; then a sentinel in the DM
    ban = F.ban(B, A, reason="pre-emptive")
    bob.queue(F.sync_response(join={pub: F.joined_room(timeline=[ban, F.message(B, SECRET + " two")])}))
    sentinel = F.message(B, "sentinel")
    bob.queue(F.sync_response(join={dm: F.joined_room(timeline=[sentinel])}))
    bob.wait_idle()
    resp = quick(ca)
    assert tl_ids(resp, dm) == [sentinel["event_id"]], "the DM sentinel must arrive"
    assert_nothing_of(resp, pub)
    assert wa.apply(resp) == [dm] and wa.count == 1

    # alice's own homeserver reports the ban in rooms.leave: still nothing
    alice.queue(F.sync_response(leave={pub: F.left_room([ban])}))
    sentinel2 = F.message(B, "sentinel 2")
    alice.queue(F.sync_response(join={dm: F.joined_room(timeline=[sentinel2])}))
    alice.wait_idle()
    resp = quick(ca)
    assert tl_ids(resp, dm) == [sentinel2["event_id"]]
    assert_nothing_of(resp, pub)
    assert wa.apply(resp) == [dm] and wa.count == 1
    for conn in ("fresh1", "fresh2"):
        fresh = fresh_view(proxy, alice, conn, subscribe=[pub])
        assert sync_op_room_ids(fresh, "a") == [dm]
        assert_nothing_of(fresh, pub)


# ---------------------------------------------------------------- room subscriptions

def test_subscriptions_to_rooms_not_joined_or_left(proxy, alice, bob):
    A, B = alice.user_id, bob.user_id
    # bob's private room, which alice is not in
    priv = F.new_room_id("private")
    priv_st = F.room_state(B, SECRET + " private")
    s = setup_shared(proxy, alice, bob,
                     bob_extra={priv: F.joined_room(priv_st, [F.message(B, SECRET + " p1")])})
    rid = s["rid"]

    # a connection with room subscriptions only: the private room gives nothing, the shared a snapshot
    c = proxy.client(alice.token)
    resp = c.sync({"conn_id": "subs", "room_subscriptions": {
        priv: {"timeline_limit": 10, "required_state": [["*", "*"]]},
        rid: {"timeline_limit": 10, "required_state": [["m.room.name", ""]]}}})
    assert set(resp.get("rooms") or {}) == {rid}
    assert resp["rooms"][rid]["initial"] is True
    assert_nothing_of(resp, priv)
    # live activity in the private room reaches nothing
    bob.queue(F.sync_response(join={priv: F.joined_room(timeline=[F.name(B, SECRET + " renamed"),
                                                                  F.message(B, SECRET + " p2")])}))
    m = F.message(B, "in the shared room")
    bob.queue(F.sync_response(join={rid: F.joined_room(timeline=[m])}))
    bob.wait_idle()
    resp = quick(c)
    assert tl_ids(resp, rid) == [m["event_id"]]
    assert_nothing_of(resp, priv)
    # asking again, on the same connection, still nothing
    resp = quick(c, {"room_subscriptions": {priv: {"timeline_limit": 5}}})
    assert_nothing_of(resp, priv)

    # alice leaves the shared room: the subscription delivers the leave once, then stops
    ev = F.leave(A)
    deliver_departure(alice, bob, rid, ev, [F.message(B, SECRET + " after leave")], own_first=False)
    resp = quick(c)
    assert tl_ids(resp, rid) == [ev["event_id"]]
    assert SECRET not in text(resp)
    for i in range(3):
        bob.queue(F.sync_response(join={rid: F.joined_room(timeline=[F.message(B, "%s s%d" % (SECRET, i))])}))
        bob.wait_idle()
        body = {"room_subscriptions": {rid: {"timeline_limit": 5, "required_state": [["*", "*"]]}}} \
            if i == 1 else {}
        assert_nothing_of(quick(c, body), rid)
    assert_nothing_of(proxy.client(alice.token).sync(
        {"conn_id": "subs2", "room_subscriptions": {rid: {"timeline_limit": 5}, priv: {"timeline_limit": 5}}}),
        rid)


# ---------------------------------------------------------------- rejoin

@pytest.mark.parametrize("own_first", [True, False], ids=["own_poller_first", "other_poller_first"])
def test_rejoin_starts_at_the_rejoin(proxy, alice, bob, own_first):
    s = setup_shared(proxy, alice, bob)
    A, B, rid, own, wa = s["A"], s["B"], s["rid"], s["own"], s["wa"]
    lv = F.leave(A)
    deliver_departure(alice, bob, rid, lv, [], own_first=False)
    resp = quick(s["ca"])
    assert wa.apply(resp) == [own]
    # while alice is away
    away = [F.message(B, SECRET + " while away 1"), F.topic(B, "new topic"),
            F.message(B, SECRET + " while away 2")]
    bob.queue(F.sync_response(join={rid: F.joined_room(timeline=away)}))
    bob.wait_idle()
    assert_nothing_of(quick(s["ca"]), rid)
    # alice rejoins; her homeserver shows the recent history before the join (shared visibility)
    rj = F.join(A, displayname="Alice again")
    state_before = [e for e in s["st"] if not (e["type"] == "m.room.member" and e["state_key"] == A)] + [lv]

    def own_poller():
        alice.queue(F.sync_response(join={rid: F.joined_room(state_before, away + [rj], prev_batch="pr")}))
        alice.wait_idle()

    def other_poller():
        bob.queue(F.sync_response(join={rid: F.joined_room(timeline=[rj])}))
        bob.wait_idle()

    for step in ((own_poller, other_poller) if own_first else (other_poller, own_poller)):
        step()
    resp = quick(s["ca"])
    assert list_ops(resp, "a") == [{"op": "DELETE", "index": 1},
                                   {"op": "INSERT", "index": 0, "room_id": rid}], resp["lists"]["a"]
    assert wa.apply(resp) == [rid, own]
    assert wa.count == 2
    room = resp["rooms"][rid]
    assert room["initial"] is True
    assert ids(room["timeline"]) == [rj["event_id"]], \
        "the timeline must start at the rejoin: %r" % room["timeline"]
    assert room["joined_count"] == 2
    assert {e["type"] for e in room.get("required_state", [])} == {"m.room.create", "m.room.name"}
    assert SECRET not in text(resp)
    # alice now receives the room's events again
    m = F.message(B, "welcome back")
    bob.queue(F.sync_response(join={rid: F.joined_room(timeline=[m])}))
    bob.wait_idle()
    assert tl_ids(quick(s["ca"]), rid) == [m["event_id"]]
    # a fresh connection: the history also starts at the rejoin
    fresh = fresh_view(proxy, alice, "fresh")
    assert sync_op_room_ids(fresh, "a") == [rid, own]
    assert ids(fresh["rooms"][rid]["timeline"]) == [rj["event_id"], m["event_id"]]
    assert SECRET not in text(fresh)


# ---------------------------------------------------------------- two users, two views

def test_others_get_the_joined_count_change_live(proxy, alice, bob):
    """joined_count is sent live when it changed (TestMemberCounts: "charlie leaves ->
    joined 2"), and omitted when it did not."""
    s = setup_shared(proxy, alice, bob)
    A, B, rid, cb = s["A"], s["B"], s["rid"], s["cb"]
    lv = F.leave(A)
    deliver_departure(alice, bob, rid, lv, [], own_first=False)
    rb = quick(cb)
    assert tl_ids(rb, rid) == [lv["event_id"]]
    got = {"after leave": rb["rooms"][rid].get("joined_count")}
    m = F.message(B, "alone now")
    bob.queue(F.sync_response(join={rid: F.joined_room(timeline=[m])}))
    bob.wait_idle()
    rb = quick(cb)
    assert tl_ids(rb, rid) == [m["event_id"]]
    got["after message"] = rb["rooms"][rid].get("joined_count")
    rj = F.join(A, displayname="Alice")
    bob.queue(F.sync_response(join={rid: F.joined_room(timeline=[rj])}))
    bob.wait_idle()
    rb = quick(cb)
    assert tl_ids(rb, rid) == [rj["event_id"]]
    got["after rejoin"] = rb["rooms"][rid].get("joined_count")
    assert got == {"after leave": 1, "after message": None, "after rejoin": 2}, got


def test_each_user_sees_their_own_membership(proxy, alice, bob):
    A, B = alice.user_id, bob.user_id
    r1, r2 = F.new_room_id("one"), F.new_room_id("two")
    st1 = F.room_state(B, "One") + [F.join(A, displayname="Alice")]
    st2 = F.room_state(B, "Two") + [F.join(A, displayname="Alice")]
    tl1, tl2 = [F.message(A, "one")], [F.message(A, "two")]
    body = F.sync_response(join={r1: F.joined_room(st1, tl1), r2: F.joined_room(st2, tl2)})
    alice.queue(body)
    bob.queue(body)
    ca, cb = proxy.client(alice.token), proxy.client(bob.token)
    wa, wb = Window(), Window()
    assert wa.apply(ca.sync({"lists": list_body()})) == [r2, r1]
    assert wb.apply(cb.sync({"lists": list_body()})) == [r2, r1]
    alice.wait_idle()
    bob.wait_idle()

    lv = F.leave(A)
    b1 = F.message(B, SECRET + " bob alone in one")
    b2 = F.message(B, "bob in two")
    bob.queue(F.sync_response(join={r1: F.joined_room(timeline=[lv, b1])}))
    bob.queue(F.sync_response(join={r2: F.joined_room(timeline=[b2])}))
    bob.wait_idle()
    alice.queue(F.sync_response(leave={r1: F.left_room([lv])}, join={r2: F.joined_room(timeline=[b2])}))
    alice.wait_idle()

    ra = quick(ca)
    wa.apply(ra)
    assert wa.rooms == [r2] and wa.count == 1
    assert tl_ids(ra, r1) == [lv["event_id"]]
    assert tl_ids(ra, r2) == [b2["event_id"]]
    assert SECRET not in text(ra)
    rb = quick(cb)
    wb.apply(rb)
    assert wb.rooms == [r2, r1] and wb.count == 2
    assert tl_ids(rb, r1) == [lv["event_id"], b1["event_id"]]
    assert tl_ids(rb, r2) == [b2["event_id"]]

    # fresh connections: alice's view stops at her leave (the room is not there), bob's goes on
    fa = fresh_view(proxy, alice, "fa", subscribe=[r1])
    assert sync_op_room_ids(fa, "a") == [r2]
    assert_nothing_of(fa, r1)
    assert fa["rooms"][r2]["joined_count"] == 2
    fb = fresh_view(proxy, bob, "fb")
    assert sync_op_room_ids(fb, "a") == [r2, r1]
    assert fb["rooms"][r1]["joined_count"] == 1
    assert ids(fb["rooms"][r1]["timeline"])[-2:] == [lv["event_id"], b1["event_id"]]
    assert fb["rooms"][r2]["joined_count"] == 2
