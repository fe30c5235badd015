"""Room fields that follow the connection over time: lazily loaded members of later senders
(docs/behaviour.md, "Lazy members") and the room `timestamp` under bump_event_types
("Timestamps")."""

import fakehs as F


def members_in(room):
    return sorted(e["state_key"] for e in room.get("required_state", []) if e["type"] == "m.room.member")


def test_lazy_members_for_later_senders(proxy, alice):
    A = alice.user_id
    B, C, D, E = ("@%s:localhost" % n for n in ("bob", "carol", "dave", "eve"))
    r = F.new_room_id("lazy")
    state = F.room_state(A, "Lazy") + [F.join(u, displayname=u[1:4]) for u in (B, C, D)]
    alice.queue(F.sync_response(join={r: F.joined_room(state, [F.message(B, "b1"), F.message(C, "c1")])}))
    c = proxy.client(alice.token)
    resp = c.sync({"lists": {"a": {"ranges": [[0, 0]], "timeline_limit": 2,
                                   "required_state": [["m.room.name", ""], ["m.room.member", "$LAZY"]]}}})
    room = resp["rooms"][r]
    # only the senders of the returned timeline, not dave and not alice
    assert members_in(room) == sorted([B, C])
    assert any(e["type"] == "m.room.name" for e in room["required_state"])
    alice.wait_idle()

    # dave speaks for the first time: his member event comes along, once
    alice.queue(F.sync_response(join={r: F.joined_room(timeline=[F.message(D, "d1"), F.message(D, "d2"),
                                                                 F.message(B, "b2")])}))
    alice.wait_idle()
    resp = c.sync({}, timeout=5000)
    room = resp["rooms"][r]
    assert [e["content"]["body"] for e in room["timeline"]] == ["d1", "d2", "b2"]
    assert members_in(room) == [D]
    assert [e["content"].get("displayname") for e in room["required_state"]] == ["dav"]
    assert "initial" not in room

    # a known sender changes profile: the change is a timeline event, not required_state;
    # eve joins and speaks: her join is her member event, nothing is repeated
    alice.queue(F.sync_response(join={r: F.joined_room(timeline=[
        F.join(D, displayname="Dave"), F.message(D, "d3"), F.join(E), F.message(E, "e1")])}))
    alice.wait_idle()
    resp = c.sync({}, timeout=5000)
    room = resp["rooms"][r]
    assert len(room["timeline"]) == 4
    assert "required_state" not in room, room

    # a second connection starts afresh (lazy memory is per connection)
    c2 = proxy.client(alice.token)
    resp = c2.sync({"conn_id": "two", "room_subscriptions": {r: {
        "timeline_limit": 3, "required_state": [["m.room.member", "$LAZY"]]}}})
    assert members_in(resp["rooms"][r]) == sorted([D, E])
    dave = [e for e in resp["rooms"][r]["required_state"] if e["state_key"] == D][0]
    assert dave["content"]["displayname"] == "Dave"


def test_lazy_members_without_timeline_and_with_all_state(proxy, alice):
    A, B = alice.user_id, "@bob:localhost"
    r = F.new_room_id("lazy0")
    alice.queue(F.sync_response(join={r: F.joined_room(F.room_state(A, "Zero") + [F.join(B)],
                                                       [F.message(B, "hello")])}))
    c = proxy.client(alice.token)
    resp = c.sync({"lists": {"a": {"ranges": [[0, 0]], "timeline_limit": 0,
                                   "required_state": [["*", "*"], ["m.room.member", "$LAZY"]]}}})
    room = resp["rooms"][r]
    # all state except members (no timeline: no lazy members)
    types = {e["type"] for e in room["required_state"]}
    assert "m.room.create" in types and "m.room.name" in types
    assert members_in(room) == []
    alice.wait_idle()

    # the room is lazily loaded: a live sender's member event follows
    alice.queue(F.sync_response(join={r: F.joined_room(timeline=[F.message(B, "again")])}))
    alice.wait_idle()
    resp = c.sync({}, timeout=5000)
    assert members_in(resp["rooms"][r]) == [B]

    # without $LAZY nothing is added live
    c2 = proxy.client(alice.token)
    c2.sync({"conn_id": "plain", "lists": {"a": {"ranges": [[0, 0]], "timeline_limit": 1,
                                                 "required_state": [["m.room.name", ""]]}}})
    alice.queue(F.sync_response(join={r: F.joined_room(timeline=[F.message(B, "third")])}))
    alice.wait_idle()
    resp = c2.sync({"conn_id": "plain"}, timeout=5000)
    assert "required_state" not in resp["rooms"][r]


def test_timestamp_follows_bump_event_types(proxy, alice, bob):
    A, B = alice.user_id, bob.user_id
    r = F.new_room_id("ts")
    t0 = F.now_ts() - 100_000
    # bob's message from before alice joined must never show as alice's activity
    st = F.room_state(B, "TS", ts=t0)
    bob.queue(F.sync_response(join={r: F.joined_room(st,
                                                     [F.message(B, "before alice", ts=t0 + 1000)])}))
    cb = proxy.client(bob.token)
    cb.sync({"lists": {"a": {"ranges": [[0, 0]]}}})
    bob.wait_idle()
    join = F.join(A, ts=t0 + 2000)
    react = F.event("m.reaction", B, {}, ts=t0 + 3000)
    alice.queue(F.sync_response(join={r: F.joined_room(st, [join, react])}))
    c = proxy.client(alice.token)
    resp = c.sync({"lists": {"msgs": {"ranges": [[0, 0]], "bump_event_types": ["m.room.message"]}}})
    # no message since the join: the join's time
    assert resp["rooms"][r]["timestamp"] == t0 + 2000
    plain = proxy.client(alice.token).sync({"conn_id": "plain", "lists": {"a": {"ranges": [[0, 0]]}}})
    # without bump types: the newest event
    assert plain["rooms"][r]["timestamp"] == t0 + 3000
    alice.wait_idle()

    # a live reaction does not move it; a live message does
    alice.queue(F.sync_response(join={r: F.joined_room(timeline=[F.event("m.reaction", B, {}, ts=t0 + 4000)])}))
    alice.wait_idle()
    resp = c.sync({}, timeout=5000)
    assert resp["rooms"][r]["timestamp"] == t0 + 2000
    alice.queue(F.sync_response(join={r: F.joined_room(timeline=[F.message(B, "now", ts=t0 + 5000),
                                                                 F.event("m.reaction", B, {}, ts=t0 + 6000)])}))
    alice.wait_idle()
    resp = c.sync({}, timeout=5000)
    assert resp["rooms"][r]["timestamp"] == t0 + 5000
    # and a new connection agrees
    fresh = proxy.client(alice.token).sync({"conn_id": "fresh", "lists": {
        "msgs": {"ranges": [[0, 0]], "bump_event_types": ["m.room.message"]}}})
    assert fresh["rooms"][r]["timestamp"] == t0 + 5000


def test_lazy_members_for_typing_users(proxy, alice):
    A, B, C = alice.user_id, "@bob:localhost", "@carol:localhost"
    r = F.new_room_id("lazyty")
    alice.queue(F.sync_response(join={r: F.joined_room(
        F.room_state(A, "Typing") + [F.join(B), F.join(C, displayname="Carol")], [F.message(B, "hi")])}))
    c = proxy.client(alice.token)
    resp = c.sync({"lists": {"a": {"ranges": [[0, 0]], "timeline_limit": 1,
                                   "required_state": [["m.room.member", "$LAZY"]]}},
                   "extensions": {"typing": {"enabled": True}}})
    assert members_in(resp["rooms"][r]) == [B]
    alice.wait_idle()

    # carol (never sent on this connection) starts typing: the client can show her name
    alice.queue(F.sync_response(join={r: F.joined_room(ephemeral=[F.typing([B, C])])}))
    alice.wait_idle()
    resp = c.sync({}, timeout=5000)
    assert resp["extensions"]["typing"]["rooms"][r]["content"]["user_ids"] == [B, C]
    room = resp["rooms"][r]
    assert members_in(room) == [C]
    assert room["required_state"][0]["content"]["displayname"] == "Carol"
    assert "notification_count" in room and "timeline" not in room

    # she stops and starts again: nothing is repeated
    alice.queue(F.sync_response(join={r: F.joined_room(ephemeral=[F.typing([C])])}))
    alice.wait_idle()
    resp = c.sync({}, timeout=5000)
    assert resp["extensions"]["typing"]["rooms"][r]["content"]["user_ids"] == [C]
    assert r not in resp.get("rooms", {}) or "required_state" not in resp["rooms"][r]
