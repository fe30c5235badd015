"""MSC4186: a room the client already has is re-sent only with what changed — state newly
covered by a grown required_state, the timeline again when timeline_limit grew
(unstable_expanded_timeline), the changes since it was last sent when it comes back into a
window, limited live updates — and a grown request answers at once.
(docs/behaviour.md, "Re-sending a room")"""

import time

import fakehs as F
from helpers import SimplifiedSync

BOB, CAROL = "@bob:localhost", "@carol:localhost"
NAME = ["m.room.name", ""]
TOPIC = ["m.room.topic", ""]


def room_data(alice, label, n_messages=3):
    rid = F.new_room_id(label.lower())
    A = alice.user_id
    st = F.room_state(A, label) + [F.topic(A, "old topic")]
    return rid, st, [F.message(A, "%s %d" % (label, i)) for i in range(n_messages)]


def make_room(alice, label, n_messages=3, prev_batch=None):
    """A room of alice's named label with a topic and n messages, in the first upstream sync;
    returns (room_id, state, timeline)."""
    rid, st, tl = room_data(alice, label, n_messages)
    alice.queue(F.sync_response(join={rid: F.joined_room(st, tl, prev_batch=prev_batch)}))
    return rid, st, tl


def live(alice, rid, events, prev_batch=None):
    alice.queue(F.sync_response(join={rid: F.joined_room(timeline=list(events), prev_batch=prev_batch)}))
    alice.wait_idle()


def sub(rid, timeline_limit=2, required_state=(NAME,)):
    return {"room_subscriptions": {rid: {"timeline_limit": timeline_limit,
                                         "required_state": [list(p) for p in required_state]}}}


def window(ranges=(0, 0), timeline_limit=2, required_state=(NAME,)):
    return {"lists": {"all": {"ranges": [list(ranges)], "timeline_limit": timeline_limit,
                              "required_state": [list(p) for p in required_state]}}}


def test_required_state_growth_sends_only_new_state(proxy, alice):
    rid, st, tl = make_room(alice, "Grow")
    topic = [e for e in st if e["type"] == "m.room.topic"][0]
    c = SimplifiedSync(proxy, alice.token)
    assert c.sync(sub(rid))["rooms"][rid]["initial"] is True
    room = c.sync(sub(rid, required_state=(NAME, TOPIC)))["rooms"][rid]
    assert "initial" not in room, "the client has the room: only what is new to it"
    assert room["required_state"] == [topic], "only the newly covered entry"
    assert "timeline" not in room, "no timeline repeat"
    # Shrinking sends nothing; a change outside what is asked for goes out without its state.
    assert rid not in c.sync(sub(rid))["rooms"]
    new_topic = F.topic(alice.user_id, "new topic")
    live(alice, rid, [new_topic])
    room = c.sync(sub(rid))["rooms"][rid]
    assert room["timeline"] == [new_topic] and "required_state" not in room
    # Growing again re-sends what may have changed meanwhile.
    room = c.sync(sub(rid, required_state=(NAME, TOPIC)))["rooms"][rid]
    assert "initial" not in room and room["required_state"] == [new_topic]
    assert "timeline" not in room
    # And a covered entry that changes comes live.
    newer = F.topic(alice.user_id, "newer topic")
    live(alice, rid, [newer])
    room = c.sync(sub(rid, required_state=(NAME, TOPIC)))["rooms"][rid]
    assert room["required_state"] == [newer] and room["timeline"] == [newer]


def test_wildcard_and_me_growth(proxy, alice):
    rid, st, tl = make_room(alice, "Wild")
    c = SimplifiedSync(proxy, alice.token)
    c.sync(sub(rid, required_state=(NAME,)))
    room = c.sync(sub(rid, required_state=(NAME, ["m.room.member", "$ME"])))["rooms"][rid]
    assert [(e["type"], e["state_key"]) for e in room["required_state"]] == [("m.room.member", alice.user_id)]
    room = c.sync(sub(rid, required_state=(["*", "*"],)))["rooms"][rid]
    got = {(e["type"], e["state_key"]) for e in room["required_state"]}
    assert ("m.room.name", "") not in got and ("m.room.member", alice.user_id) not in got, "already sent"
    assert ("m.room.create", "") in got and ("m.room.topic", "") in got


def test_expanded_timeline(proxy, alice):
    rid, st, tl = make_room(alice, "Expand", n_messages=8, prev_batch="pb_expand")
    c = SimplifiedSync(proxy, alice.token)
    room = c.sync(window(timeline_limit=1))["rooms"][rid]
    assert room["timeline"] == tl[-1:] and room["initial"] is True
    room = c.sync(window(timeline_limit=5))["rooms"][rid]
    assert "initial" not in room
    assert room["unstable_expanded_timeline"] is True
    assert room["timeline"] == tl[-5:]
    # The upstream token of the batch that ended with the room's timeline (docs/behaviour.md).
    assert room["limited"] is True and isinstance(room["prev_batch"], str), room.get("prev_batch")
    assert room["num_live"] == 0, "old events are not live"
    assert "required_state" not in room, "required_state did not change"
    assert c.sync(window(timeline_limit=5))["rooms"] == {}
    # Lowered and raised again without a gap: the client still has 5 events.
    assert c.sync(window(timeline_limit=3))["rooms"] == {}
    assert c.sync(window(timeline_limit=5))["rooms"] == {}
    room = c.sync(window(timeline_limit=20))["rooms"][rid]
    assert room["unstable_expanded_timeline"] is True and room["timeline"] == tl
    # Always limited: the expanded timeline replaces the client's (docs/behaviour.md).
    assert room["limited"] is True and room["prev_batch"] == "pb_expand"


def test_grown_request_answers_at_once(proxy, alice):
    rid, st, tl = make_room(alice, "Quick")
    c = SimplifiedSync(proxy, alice.token)
    c.sync(window())
    t0 = time.monotonic()
    assert c.sync(window(), timeout=1500)["rooms"] == {}
    assert time.monotonic() - t0 >= 1.2, "an identical request long-polls"
    t0 = time.monotonic()
    room = c.sync(window(required_state=(NAME, TOPIC)), timeout=20000)["rooms"][rid]
    assert time.monotonic() - t0 < 10, "grown required_state answers at once"
    assert "initial" not in room and [e["type"] for e in room["required_state"]] == ["m.room.topic"]
    # A subscription for a room the window shows, asking for state that does not exist.
    body = dict(window(required_state=(NAME, TOPIC)), **sub(rid, required_state=(["m.no.such", ""],)))
    t0 = time.monotonic()
    resp = c.sync(body, timeout=20000)
    assert time.monotonic() - t0 < 10, "a new subscription answers at once"
    assert resp["rooms"] == {}, "nothing new to send"


def test_room_back_in_window_sends_changes(proxy, alice):
    (r1, st1, tl1), (r2, st2, tl2) = room_data(alice, "Away"), room_data(alice, "Here")
    alice.queue(F.sync_response(join={r1: F.joined_room(st1, tl1), r2: F.joined_room(st2, tl2)}))
    c = SimplifiedSync(proxy, alice.token)
    c.sync(window(ranges=(0, 1), required_state=(NAME, ["m.room.member", "$LAZY"])))
    c.sync(window(ranges=(0, 0), required_state=(NAME, ["m.room.member", "$LAZY"])))
    A = alice.user_id
    # While out of the window: a rename, a topic change (not asked for), Bob joins and talks.
    rename, topic = F.name(A, "Away renamed"), F.topic(A, "t2")
    evs = [rename, topic, F.join(BOB), F.message(BOB, "one"), F.message(BOB, "two"), F.message(BOB, "three")]
    # Two upstream syncs: the token of the second is the one before the events that fit.
    alice.queue(F.sync_response(join={r1: F.joined_room(timeline=evs[:4])}))
    live(alice, r1, evs[4:], prev_batch="pb_gap")
    resp = c.sync(window(ranges=(0, 0), required_state=(NAME, ["m.room.member", "$LAZY"])))
    room = resp["rooms"][r1]
    assert "initial" not in room, "the client has the room: only its changes"
    assert room["timeline"] == evs[-2:] and room["limited"] is True
    assert room["num_live"] == 2, "events after the request's pos are live, even from while away"
    assert room["prev_batch"] == "pb_gap"
    assert room["name"] == "Away renamed"
    got = {(e["type"], e["state_key"]): e for e in room["required_state"]}
    assert got.get(("m.room.name", "")) == rename
    assert ("m.room.topic", "") not in got
    assert ("m.room.member", BOB) in got, "the new sender's member event (lazy members)"
    assert ("m.room.member", A) not in got, "already sent"
    assert room["joined_count"] == 2
    # One more event while away: not limited.
    c.sync(window(ranges=(1, 1), required_state=(NAME, ["m.room.member", "$LAZY"])))
    ev = F.message(BOB, "four")
    live(alice, r1, [ev])
    room = c.sync(window(ranges=(0, 0), required_state=(NAME, ["m.room.member", "$LAZY"])))["rooms"][r1]
    assert room["timeline"] == [ev] and room["limited"] is False and "initial" not in room
    assert "required_state" not in room and "name" not in room


def test_live_update_over_timeline_limit_is_limited(proxy, alice):
    rid, _, _ = make_room(alice, "Busy")
    c = SimplifiedSync(proxy, alice.token)
    c.sync(window(timeline_limit=2))
    first = [F.message(BOB, "a %d" % i) for i in range(3)]
    second = [F.message(BOB, "b %d" % i) for i in range(2)]
    alice.queue(F.sync_response(join={rid: F.joined_room(timeline=first)}))
    alice.queue(F.sync_response(join={rid: F.joined_room(timeline=second, prev_batch="pb_second")}))
    alice.wait_idle()
    room = c.sync(window(timeline_limit=2))["rooms"][rid]
    assert "initial" not in room
    assert room["timeline"] == second, "the newest timeline_limit events"
    assert room["limited"] is True and room["prev_batch"] == "pb_second"
    assert room["num_live"] == 2


def test_name_removed_is_null(proxy, alice):
    rid, _, _ = make_room(alice, "Named")
    c = SimplifiedSync(proxy, alice.token)
    c.sync(window())
    live(alice, rid, [F.state("m.room.name", "", alice.user_id, {})])
    room = c.sync(window())["rooms"][rid]
    assert "name" in room and room["name"] is None, "the final MSC text: null when removed"


def test_gap_sends_events_after_it_limited(proxy, alice):
    """A gappy upstream sync (limited, unknown history before it) while the client has the room:
    the events after the gap, limited, with the chunk's token; state changed in the gap comes
    as required_state; still no initial. A rejoin, though, is initial."""
    rid, _, _ = make_room(alice, "Gappy")
    c = SimplifiedSync(proxy, alice.token)
    c.sync(window(timeline_limit=5, required_state=(NAME, TOPIC)))
    after = [F.message(BOB, "after %d" % i) for i in range(2)]
    topic = F.topic(alice.user_id, "changed in the gap")
    alice.queue(F.sync_response(join={rid: F.joined_room([topic], after, prev_batch="p_gap", limited=True)}))
    alice.wait_idle()
    room = c.sync(window(timeline_limit=5, required_state=(NAME, TOPIC)))["rooms"][rid]
    assert "initial" not in room
    assert room["timeline"] == after and room["limited"] is True and room["prev_batch"] == "p_gap"
    assert room["required_state"] == [topic]

    # Left and joined again: new to the client, whole.
    A = alice.user_id
    live(alice, rid, [F.leave(A)])
    c.sync(window(timeline_limit=5))
    live(alice, rid, [F.join(A), F.message(A, "back")])
    room = c.sync(window(timeline_limit=5))["rooms"][rid]
    assert room["initial"] is True


def test_lazy_members_added_later(proxy, alice):
    """$LAZY added to a room the client has: the members of the senders of its timeline come,
    without the timeline again and without initial."""
    rid, st, _ = room_data(alice, "Lazy")
    A = alice.user_id
    st += [F.join(BOB, displayname="Bob"), F.join(CAROL, displayname="Carol")]
    tl = [F.message(BOB, "b"), F.message(CAROL, "c"), F.message(A, "a")]
    alice.queue(F.sync_response(join={rid: F.joined_room(st, tl)}))
    c = SimplifiedSync(proxy, alice.token)
    c.sync(window(timeline_limit=3, required_state=(NAME, ["m.room.member", "$ME"])))
    room = c.sync(window(timeline_limit=3, required_state=(NAME, ["m.room.member", "$ME"],
                                                           ["m.room.member", "$LAZY"])))["rooms"][rid]
    assert "initial" not in room and "timeline" not in room
    assert sorted(e["state_key"] for e in room["required_state"]) == [BOB, CAROL], "alice's was sent"
    ev = F.message(BOB, "again")
    live(alice, rid, [ev])
    room = c.sync(window(timeline_limit=3, required_state=(NAME, ["m.room.member", "$ME"],
                                                           ["m.room.member", "$LAZY"])))["rooms"][rid]
    assert room["timeline"] == [ev] and "required_state" not in room, "Bob's member was sent"
