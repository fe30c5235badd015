"""Updates are judged as of their own position, and nothing a connection owes
its client is lost on the way: a message and the user's own departure in one
batch, an invitee's view of the room, live events drained into a response that
re-sends the room whole, the leave that arrives together with a snapshot, and
a request repeated with a new body while its response is still unreceived."""

import json

import pytest

import fakehs as F
from helpers import Window, ids, list_ops, tl_ids
from test_membership import SECRET, assert_nothing_of, list_body, quick, setup_invite, setup_shared


def text(resp):
    return json.dumps(resp)


# ------------------------------------------------- message + departure in one batch

@pytest.mark.parametrize("kind", ["leave", "kick", "ban"])
@pytest.mark.parametrize("source", ["own_poller", "other_poller"])
def test_message_and_departure_in_one_batch(proxy, alice, bob, kind, source):
    s = setup_shared(proxy, alice, bob)
    A, B, rid, own = s["A"], s["B"], s["rid"], s["own"]
    msg = F.message(B, "last words before you go")
    ev = {"leave": F.leave(A), "kick": F.leave(A, sender=B, reason="out"), "ban": F.ban(B, A)}[kind]
    after = F.message(B, SECRET + " after")
    if source == "own_poller":
        alice.queue(F.sync_response(leave={rid: F.left_room([msg, ev])}))
        alice.wait_idle()
    else:
        bob.queue(F.sync_response(join={rid: F.joined_room(timeline=[msg, ev, after])}))
        bob.wait_idle()
    resp = quick(s["ca"])
    # She was joined when the message was sent: she gets it, then her departure.
    assert tl_ids(resp, rid) == ids([msg, ev]), resp.get("rooms")
    assert resp["rooms"][rid]["timeline"][-1]["content"]["membership"] == ev["content"]["membership"]
    assert list_ops(resp, "a") == [{"op": "DELETE", "index": 0}], resp["lists"]["a"]
    assert s["wa"].apply(resp) == [own]
    assert SECRET not in text(resp)
    # Nothing of the room afterwards.
    bob.queue(F.sync_response(join={rid: F.joined_room(timeline=[F.message(B, SECRET + " later")])}))
    bob.wait_idle()
    assert_nothing_of(quick(s["ca"]), rid)


def test_departure_then_rejoin_in_one_batch_hides_the_gap(proxy, alice, bob):
    s = setup_shared(proxy, alice, bob)
    A, B, rid = s["A"], s["B"], s["rid"]
    gone = F.message(B, SECRET + " while she was away")
    back = F.join(A, displayname="Alice again")
    bob.queue(F.sync_response(join={rid: F.joined_room(timeline=[F.leave(A), gone, back])}))
    bob.wait_idle()
    resp = quick(s["ca"])
    # She left, missed a message and came back: the room returns, without the message
    # from the time she was not in it as a live event.
    got = tl_ids(resp, rid)
    assert gone["event_id"] not in got, resp["rooms"][rid]
    assert got[-1] == back["event_id"], resp["rooms"][rid]
    assert s["wa"].apply(resp) == [rid, s["own"]]


# ------------------------------------------------- invitees see only the invite

def test_invitee_gets_nothing_of_the_room_but_the_invite(proxy, alice, bob):
    s, resp = setup_invite(proxy, alice, bob, inviter_polls=True)
    rid, B = s["rid"], s["B"]
    assert rid in resp["rooms"] and resp["rooms"][rid].get("invite_state")
    # While alice is only invited, bob talks, renames, types and reads in the room.
    m = F.message(B, SECRET + " while alice is invited")
    bob.queue(F.sync_response(join={rid: F.joined_room(
        timeline=[m, F.topic(B, SECRET + " topic")],
        ephemeral=[F.typing([B]), F.receipt(m["event_id"], B)])}))
    bob.wait_idle()
    ext = {"extensions": {"typing": {"enabled": True}, "receipts": {"enabled": True}}}
    for _ in range(2):
        r = s["ca"].sync(ext, timeout=300)
        assert SECRET not in text(r), text(r)
        assert m["event_id"] not in text(r)
        assert rid not in text(r.get("extensions", {})), r["extensions"]
    # Once she joins, she gets the room (and from then on its events).
    join = F.join(s["A"], displayname="Alice")
    bob.queue(F.sync_response(join={rid: F.joined_room(timeline=[join])}))
    alice.queue(F.sync_response(join={rid: F.joined_room(timeline=[join])}))
    alice.wait_idle()
    bob.wait_idle()
    r = s["ca"].sync({}, timeout=300)
    assert rid in r["rooms"]
    after = F.message(B, "welcome")
    bob.queue(F.sync_response(join={rid: F.joined_room(timeline=[after])}))
    bob.wait_idle()
    assert tl_ids(s["ca"].sync({}, timeout=3000), rid) == [after["event_id"]]


# ------------------------------------------------- live events and snapshots in one response

def three_messages(bob, B, rid):
    evs = [F.message(B, "live %d" % i) for i in range(3)]
    bob.queue(F.sync_response(join={rid: F.joined_room(timeline=evs)}))
    bob.wait_idle()
    return evs


def test_live_events_survive_a_resend_with_a_smaller_timeline(proxy, alice, bob):
    s = setup_shared(proxy, alice, bob)
    B, rid = s["B"], s["rid"]
    body = {"lists": list_body(timeline_limit=1)}
    quick(s["ca"], body)  # timeline_limit 1 is sticky now
    evs = three_messages(bob, B, rid)
    # The next request changes required_state: the window is re-sent whole, with the
    # three live events the client has not seen yet, although timeline_limit is 1.
    resp = quick(s["ca"], {"lists": {"a": {"ranges": [[0, 19]], "required_state": [["m.room.topic", ""]]}}})
    room = resp["rooms"][rid]
    assert room.get("initial") is True
    assert ids(room["timeline"])[-3:] == ids(evs), room
    assert room.get("num_live") == 3


def test_live_events_survive_a_subscription_with_timeline_limit_zero(proxy, alice, bob):
    s = setup_shared(proxy, alice, bob)
    B, rid = s["B"], s["rid"]
    # The room is shown through a subscription only (the list window is elsewhere).
    sub = {"timeline_limit": 1, "required_state": [["m.room.name", ""]]}
    quick(s["ca"], {"lists": {"a": {"ranges": [[5, 9]]}}, "room_subscriptions": {rid: sub}})
    evs = three_messages(bob, B, rid)
    resp = quick(s["ca"], {"room_subscriptions": {rid: {"timeline_limit": 0,
                                                        "required_state": [["m.room.topic", ""]]}}})
    room = resp["rooms"][rid]
    assert set(ids(evs)) <= set(ids(room.get("timeline", []))), room
    assert room.get("num_live") == len([e for e in room["timeline"] if e["event_id"] in ids(evs)])


def test_event_that_moves_a_room_into_a_filtered_list_is_delivered(proxy, alice, bob):
    s = setup_shared(proxy, alice, bob)
    A, B, rid = s["A"], s["B"], s["rid"]
    ca = s["ca"]
    enc = {"ranges": [[0, 9]], "timeline_limit": 1, "filters": {"is_encrypted": True}}
    r = quick(ca, {"lists": {"a": {"ranges": [[0, 19]]}, "enc": enc}})
    assert r["lists"]["enc"]["count"] == 0
    e = F.encryption(B)
    m1, m2 = F.message(B, "one"), F.message(B, "two")
    bob.queue(F.sync_response(join={rid: F.joined_room(timeline=[e, m1, m2])}))
    bob.wait_idle()
    resp = quick(ca)
    assert resp["lists"]["enc"]["count"] == 1
    got = ids(resp["rooms"][rid]["timeline"])
    # Visible through list "a" all along: every one of the three events arrives.
    assert got[-3:] == ids([e, m1, m2]), resp["rooms"][rid]
    assert A  # alice is joined throughout


def test_snapshot_of_a_room_in_a_list_and_subscribed_combines_both(proxy, alice, bob):
    s = setup_shared(proxy, alice, bob)
    B, rid, own = s["B"], s["rid"], s["own"]
    topic = F.topic(B, "the topic")
    bob.queue(F.sync_response(join={rid: F.joined_room(timeline=[topic] + [F.message(B, "m%d" % i)
                                                                          for i in range(6)])}))
    bob.wait_idle()
    ca = s["ca"]
    # Subscribed with a long timeline and the topic; the list window is elsewhere.
    sub = {"timeline_limit": 5, "required_state": [["m.room.topic", ""]]}
    quick(ca, {"lists": {"a": {"ranges": [[1, 1]], "timeline_limit": 1,
                               "required_state": [["m.room.name", ""]]}},
               "room_subscriptions": {rid: sub}})
    # The list's window moves onto the room: its snapshot carries both sources' settings.
    resp = quick(ca, {"lists": {"a": {"ranges": [[0, 0]]}}})
    room = resp["rooms"][rid]
    assert room.get("initial") is True, room
    types = {e["type"] for e in room.get("required_state", [])}
    assert {"m.room.topic", "m.room.name"} <= types, room
    assert len(room["timeline"]) >= 5, room
    assert own


def test_leave_arriving_with_a_resend_is_delivered(proxy, alice, bob):
    s = setup_shared(proxy, alice, bob)
    A, B, rid, own = s["A"], s["B"], s["rid"], s["own"]
    kick = F.leave(A, sender=B, reason="bye")
    bob.queue(F.sync_response(join={rid: F.joined_room(timeline=[kick])}))
    bob.wait_idle()
    # The request that drains the kick also changes the list's required_state, which
    # would re-send every room of the window whole.
    resp = quick(s["ca"], {"lists": {"a": {"ranges": [[0, 19]], "required_state": [["m.room.topic", ""]]}}})
    assert rid in resp["rooms"], resp
    assert tl_ids(resp, rid)[-1] == kick["event_id"], resp["rooms"][rid]
    assert "required_state" not in resp["rooms"][rid]
    w = Window()
    w.rooms = list(s["wa"].rooms)
    assert w.apply(resp) == [own]


# ------------------------------------------------- retransmission with a new body

def test_repeated_pos_with_a_new_body_loses_nothing(proxy, alice, bob):
    s = setup_shared(proxy, alice, bob)
    B, rid = s["B"], s["rid"]
    ca = s["ca"]
    pos = ca.pos
    m = F.message(B, "do not lose me")
    bob.queue(F.sync_response(join={rid: F.joined_room(timeline=[m])}))
    bob.wait_idle()
    lost = ca.request({}, pos=pos, timeout=3000)  # the client never reads this one
    assert lost.status == 200 and m["event_id"] in tl_ids(lost.json, rid)
    # It aborts and resends the same pos with a new range (as js-sdk does on scroll).
    r = ca.request({"lists": {"a": {"ranges": [[0, 5]]}}}, pos=pos, timeout=3000)
    assert r.status == 200
    got = tl_ids(r.json, rid)
    nxt = ca.request({}, pos=r.json["pos"], timeout=300)
    assert nxt.status == 200
    got += tl_ids(nxt.json, rid)
    assert m["event_id"] in got, (r.json, nxt.json)
