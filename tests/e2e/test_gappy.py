"""Gappy syncs: limited timelines with a state block, prev_batch chunks and backfilled history
(docs/behaviour.md, "Processing one upstream response"; ARCHITECTURE.md, "The accumulator"
and "Decisions that differ").

The rules these tests hold the server to:
* a state block for a room the server already knows changes the room's state; connections that
  show the room get it again as a snapshot (`initial: true`) instead of being ended;
* a timeline never reaches back past a gap (the first event of a limited chunk whose predecessor
  is unknown), and a timeline that stops there is `limited: true`;
* state-block events are state, never timeline;
* a membership learnt only from someone else's state block counts like one from a timeline: a
  user who left, was kicked or banned that way loses the room on every connection at once.

Text that a departed user must never see carries the marker SECRET.
"""

import json
import time

import pytest

import fakehs as F
from helpers import User, ids, list_ops, run_in_thread, sync_op_room_ids, tl_ids
from test_storage import events_of

SECRET = "SECRET"


# ---------------------------------------------------------------- helpers

def text(resp):
    return json.dumps(resp)


def quick(c, body=None):
    """One incremental request: what is pending, or nothing after 300 ms."""
    return c.sync(body or {}, timeout=300)


def state_keys(room, type_="m.room.member"):
    """{state_key: content.membership or content} of the room's required_state entries of a type."""
    out = {}
    for e in room.get("required_state") or []:
        if e["type"] == type_:
            out[e["state_key"]] = e["content"].get("membership", e["content"])
    return out


def a_list(timeline_limit=20, required_state=None, **kw):
    return {"a": dict({"ranges": [[0, 9]], "sort": ["by_recency"], "timeline_limit": timeline_limit,
                       "required_state": required_state if required_state is not None else []}, **kw)}


def fresh(proxy, user, conn_id, timeline_limit=20, required_state=None, subscribe=None):
    """A new connection's first response: list "a" (+ room subscriptions with the same params)."""
    body = {"conn_id": conn_id, "lists": a_list(timeline_limit, required_state)}
    if subscribe:
        body["room_subscriptions"] = {rid: {"timeline_limit": timeline_limit,
                                            "required_state": required_state or []}
                                      for rid in subscribe}
    return proxy.client(user.token).sync(body)


def custom_state(sender, n, label="cs"):
    return [F.state("com.example.gappy", "%s%02d" % (label, i), sender, {"i": i}) for i in range(n)]


def gappy(state, timeline, prev_batch):
    return F.joined_room(state, timeline, prev_batch=prev_batch, limited=True)


# ---------------------------------------------------------------- someone else's state block

def shared_room(proxy, alice, bob):
    """Room `rid` made by alice with bob joined, known to both pollers; bob's connection has it
    in list "a" and as a room subscription; alice's connection shows it too."""
    A, B = alice.user_id, bob.user_id
    rid = F.new_room_id("shared")
    st = F.room_state(A, "Shared") + [F.join(B, displayname="Bob")]
    tl = [F.message(A, "hello bob"), F.message(B, "hello alice")]
    alice.queue(F.sync_response(join={rid: F.joined_room(st, tl, prev_batch="pa1")}))
    ca = proxy.client(alice.token)
    ra = ca.sync({"lists": a_list(10, [["m.room.member", "*"]])})
    assert sync_op_room_ids(ra, "a") == [rid]
    alice.wait_idle()
    # bob's own room, so his list is never empty for a reason other than the shared room
    own = F.new_room_id("bobs")
    old = F.now_ts() - 60000
    bob.queue(F.sync_response(join={
        rid: F.joined_room(st, tl, prev_batch="pb1"),
        own: F.joined_room(F.room_state(B, "Bob's notes", ts=old), [F.message(B, "note", ts=old + 1)])}))
    cb = proxy.client(bob.token)
    rb = cb.sync({"lists": a_list(10, [["m.room.member", "*"]]),
                  "room_subscriptions": {rid: {"timeline_limit": 5, "required_state": [["*", "*"]]}}})
    bob.wait_idle()
    assert sync_op_room_ids(rb, "a") == [rid, own]
    assert rb["rooms"][rid]["joined_count"] == 2
    return rid, own, st, tl, ca, cb


@pytest.mark.parametrize("kind", ["leave", "kick", "ban"])
def test_departure_known_only_from_another_users_gappy_state_block(proxy, alice, bob, kind):
    A, B = alice.user_id, bob.user_id
    rid, own, st, tl, ca, cb = shared_room(proxy, alice, bob)
    ev = {"leave": F.leave(B), "kick": F.leave(B, sender=A, reason="bye"),
          "ban": F.ban(A, B, reason="spam")}[kind]
    after = F.message(A, SECRET + " right after the " + kind)
    # bob's own poller never reports it: he learns it only through alice's gappy state block
    alice.queue(F.sync_response(join={rid: gappy([ev], [after], "pa2")}))
    alice.wait_idle()

    rb = quick(cb)
    assert list_ops(rb, "a") == [{"op": "DELETE", "index": 0}], rb["lists"]["a"]
    assert rb["lists"]["a"]["count"] == 1
    assert SECRET not in text(rb), "bob saw what followed his %s: %s" % (kind, text(rb))
    # nothing of the room but, at most, bob's own membership event
    if rid in rb["rooms"]:
        assert tl_ids(rb, rid) == [ev["event_id"]], text(rb)
        assert set(rb["rooms"][rid]) <= {"timeline", "num_live"}, text(rb)
    assert set(rb["rooms"]) <= {rid}

    # alice's open connection: the room again as a snapshot, with bob gone from its state
    ra = quick(ca)
    room = ra["rooms"][rid]
    assert room["initial"] is True
    assert tl_ids(ra, rid) == [after["event_id"]], "the snapshot stops at the gap"
    assert room.get("limited") is True
    assert room.get("prev_batch") == "pa2"
    assert room["joined_count"] == 1
    assert state_keys(room) == {A: "join", B: ev["content"]["membership"]}

    # alice keeps talking (and renames the room): nothing reaches bob
    for i in range(3):
        evs = [F.message(A, "%s later %d" % (SECRET, i))]
        if i == 1:
            evs.append(F.name(A, SECRET + " renamed"))
        alice.queue(F.sync_response(join={rid: F.joined_room(timeline=evs)}))
        alice.wait_idle()
        assert tl_ids(quick(ca), rid) == ids(evs)
        rb = quick(cb, {"room_subscriptions": {rid: {"timeline_limit": 5}}} if i == 2 else None)
        assert rid not in text(rb) and SECRET not in text(rb), text(rb)
        assert not list_ops(rb, "a") and rb["lists"]["a"]["count"] == 1

    # bob's own poller catches up: the room in rooms.leave with his departure, already known
    bob.queue(F.sync_response(leave={rid: F.left_room([ev])}))
    bob.wait_idle()
    rb = quick(cb)
    assert rid not in text(rb) and not list_ops(rb, "a") and rb["lists"]["a"]["count"] == 1, text(rb)

    # a new connection neither lists nor serves the room, even when subscribed
    fb = fresh(proxy, bob, "fresh", 10, [["*", "*"]], subscribe=[rid])
    assert fb["lists"]["a"]["count"] == 1
    assert sync_op_room_ids(fb, "a") == [own]
    assert set(fb["rooms"]) == {own}
    assert rid not in text(fb) and SECRET not in text(fb)
    # and after a restart, when bob's rooms are read back from the database
    proxy.restart()
    fb = fresh(proxy, bob, "after-restart", 10, [["*", "*"]], subscribe=[rid])
    assert sync_op_room_ids(fb, "a") == [own]
    assert rid not in text(fb) and SECRET not in text(fb)


# Transitions of bert's membership seen only through ana's gappy state block.
TRANSITIONS = [("none", "invite"), ("none", "join"), ("none", "leave"), ("none", "ban"),
               ("invite", "join"), ("invite", "leave"), ("invite", "ban"),
               ("join", "leave"), ("join", "ban"),
               ("leave", "invite"), ("leave", "join"), ("leave", "ban"),
               ("ban", "leave")]


def member_event(kind, ana, bert):
    return {"invite": F.invite(ana, bert), "join": F.join(bert, displayname="Bert"),
            "leave": F.leave(bert, sender=ana), "ban": F.ban(ana, bert)}[kind]


@pytest.mark.parametrize("before,after", TRANSITIONS, ids=["%s-to-%s" % t for t in TRANSITIONS])
def test_membership_transition_in_a_gappy_state_block(proxy, hs, before, after):
    ana, bert = User(hs, "ana"), User(hs, "bert")
    A, B = ana.user_id, bert.user_id
    rid = F.new_room_id("public")
    st = F.room_state(A, "Public")
    tl = [F.message(A, "first")]
    if before in ("invite", "join"):
        tl.append(member_event("invite", A, B))
    if before in ("join", "leave"):
        tl.append(F.join(B, displayname="Bert"))
    if before == "leave":
        tl.append(F.leave(B))
    if before == "ban":
        tl.append(F.ban(A, B))
    ana.queue(F.sync_response(join={rid: F.joined_room(st, tl, prev_batch="P1")}))
    ca = proxy.client(ana.token)
    ra = ca.sync({"lists": a_list(20, [["m.room.member", "*"]])})
    assert sync_op_room_ids(ra, "a") == [rid]
    ana.wait_idle()
    if before == "invite":
        bert.queue(F.sync_response(invite={rid: F.invited_room(st[:1] + [tl[-1]])}))
    cb = proxy.client(bert.token)
    rb = cb.sync({"lists": a_list(20, [["m.room.member", "*"]])})
    bert.wait_idle()
    assert rb["lists"]["a"]["count"] == (1 if before in ("invite", "join") else 0), rb

    new = member_event(after, A, B)
    msgs = [F.message(A, "msg %d" % i) for i in range(10)]
    ana.queue(F.sync_response(join={rid: gappy([new], msgs, "P2")}))
    ana.wait_idle()
    if after == "invite":
        # invites reach the proxy from the invitee's own poller
        bert.queue(F.sync_response(invite={rid: F.invited_room(st[:1] + [new])}))
        bert.wait_idle()

    joined = 1 + (after == "join")
    invited = int(after == "invite")
    want_members = {A: "join", B: after}

    # ana: her open connection gets the room again, a new one shows the same
    live = quick(ca)
    for label, resp in (("live", live), ("fresh", fresh(proxy, ana, "f", 20, [["m.room.member", "*"]]))):
        room = resp["rooms"][rid]
        assert room["initial"] is True, label
        assert state_keys(room) == want_members, (label, room.get("required_state"))
        assert tl_ids(resp, rid) == ids(msgs), (label, room.get("timeline"))
        assert (room["joined_count"], room["invited_count"]) == (joined, invited), label
        assert room.get("prev_batch") == "P2", label
        assert room.get("limited") is True, label

    # bert: his open connection, then a new one
    live = quick(cb)
    for label, resp in (("live", live), ("fresh", fresh(proxy, bert, "f", 20, [["m.room.member", "*"]]))):
        if after in ("leave", "ban"):
            assert resp["lists"]["a"]["count"] == 0, (label, resp["lists"]["a"])
            if label == "live" and before in ("invite", "join"):
                assert list_ops(resp, "a") == [{"op": "DELETE", "index": 0}], resp["lists"]["a"]
            assert rid not in text(resp), (label, text(resp))
            assert "msg " not in text(resp), (label, text(resp))
            continue
        assert resp["lists"]["a"]["count"] == 1, (label, resp["lists"]["a"])
        if label == "fresh":
            assert sync_op_room_ids(resp, "a") == [rid]
        room = resp["rooms"][rid]
        assert room["initial"] is True, label
        if after == "invite":
            last = room["invite_state"][-1]
            assert (last["state_key"], last["content"]["membership"]) == (B, "invite"), label
            assert (room["joined_count"], room["invited_count"]) == (1, 1), label
            assert "required_state" not in room and "msg " not in text(resp), label
        else:
            assert "invite_state" not in room, label
            assert state_keys(room) == {A: "join", B: "join"}, (label, room.get("required_state"))
            assert (room["joined_count"], room["invited_count"]) == (2, 0), label
            assert tl_ids(resp, rid) == ids(msgs), (label, room.get("timeline"))
            assert room.get("prev_batch") == "P2", label


# ---------------------------------------------------------------- the state block of a known room

def one_room(user, st, tl, prev_batch="p1"):
    rid = F.new_room_id("gap")
    user.queue(F.sync_response(join={rid: F.joined_room(st, tl, prev_batch=prev_batch)}))
    return rid


def test_state_block_of_unknown_types_resends_the_room(proxy, alice):
    A = alice.user_id
    st = F.room_state(A, "apple")
    pl_old = st[2]
    before = [F.message(A, "before %d" % i) for i in range(3)]
    rid = one_room(alice, st, before)
    rs = [["m.room.power_levels", ""]]
    c = proxy.client(alice.token)
    r = c.sync({"lists": a_list(10, rs)})
    assert r["rooms"][rid]["name"] == "apple"
    assert [e["event_id"] for e in r["rooms"][rid]["required_state"]] == [pl_old["event_id"]]
    assert tl_ids(r, rid) == ids(before)
    alice.wait_idle()

    name = F.name(A, "banana")
    pl_new = F.power_levels(A, users={A: 100, "@someone:localhost": 50})
    msg = F.message(A, "after the gap")
    alice.queue(F.sync_response(join={rid: gappy([name, pl_new], [msg], "p_gap")}))
    alice.wait_idle()

    live = quick(c)
    assert not list_ops(live, "a"), "the room stays where it is"
    for label, resp in (("live", live), ("fresh", fresh(proxy, alice, "f", 10, rs))):
        room = resp["rooms"][rid]
        assert room["initial"] is True, label
        assert room["name"] == "banana", label
        assert [e["event_id"] for e in room["required_state"]] == [pl_new["event_id"]], label
        assert room["required_state"][0]["content"]["users"]["@someone:localhost"] == 50
        assert tl_ids(resp, rid) == [msg["event_id"]], (label, "the timeline crossed the gap")
        assert room.get("limited") is True, label
        assert room.get("prev_batch") == "p_gap", label
    # the connection goes on normally afterwards
    m2 = F.message(A, "and on")
    alice.queue(F.sync_response(join={rid: F.joined_room(timeline=[m2])}))
    alice.wait_idle()
    nxt = quick(c)
    assert tl_ids(nxt, rid) == [m2["event_id"]]
    assert "initial" not in nxt["rooms"][rid] and "required_state" not in nxt["rooms"][rid]


def test_state_block_events_never_enter_the_timeline(proxy, alice, bob):
    A, B = alice.user_id, bob.user_id
    st = F.room_state(A)
    first = [F.name(A, "wonderland"), F.message(A, "msg1")]
    rid = one_room(alice, st, first)
    c = proxy.client(alice.token)
    sub = {"timeline_limit": 100, "required_state": [["*", "*"]]}
    r = c.sync({"room_subscriptions": {rid: sub}})
    assert r["rooms"][rid]["name"] == "wonderland"
    assert tl_ids(r, rid)[-2:] == ids(first)
    alice.wait_idle()

    extra = custom_state(A, 10)
    rename = F.name(A, "not wonderland")
    bj = F.join(B, displayname="Bob")
    later = [F.message(A, "msg2"), F.message(B, "msg3")]
    alice.queue(F.sync_response(join={rid: gappy(extra + [rename, bj], later, "p_gap")}))
    alice.wait_idle()

    live = quick(c)
    f = proxy.client(alice.token).sync({"conn_id": "f", "room_subscriptions": {rid: sub}})
    for label, resp in (("live", live), ("fresh", f)):
        room = resp["rooms"][rid]
        assert room["initial"] is True, label
        assert room["name"] == "not wonderland", label
        assert tl_ids(resp, rid) == ids(later), (label, room["timeline"])
        assert room["joined_count"] == 2, label
        assert room.get("limited") is True, label
        got = {(e["type"], e["state_key"]): e["event_id"] for e in room["required_state"]}
        for e in extra + [rename, bj]:
            assert got.get((e["type"], e["state_key"])) == e["event_id"], (label, e["state_key"])
        assert got[("m.room.create", "")] == st[0]["event_id"], label


def test_members_from_a_gappy_state_block_are_served_as_state(proxy, alice, bob):
    A, B = alice.user_id, bob.user_id
    st = F.room_state(A)
    rid = F.new_room_id("gap")
    # the room as first seen: its creation in the timeline
    alice.queue(F.sync_response(join={rid: F.joined_room(timeline=st, prev_batch="p_create")}))
    c = proxy.client(alice.token)
    sub = {"timeline_limit": 20, "required_state": [["m.room.member", "*"]]}
    r = c.sync({"room_subscriptions": {rid: sub}})
    assert [e["event_id"] for e in r["rooms"][rid]["required_state"]] == [st[1]["event_id"]]
    assert tl_ids(r, rid) == ids(st[1:]), "history starts at alice's join"
    alice.wait_idle()

    bj = F.join(B, displayname="Bob")
    msgs = [F.message(A if i % 2 else B, "m%d" % i) for i in range(10)]
    alice.queue(F.sync_response(join={rid: gappy([bj], msgs, "p_gap")}))
    alice.wait_idle()

    live = quick(c)
    f = proxy.client(alice.token).sync({"conn_id": "f", "room_subscriptions": {rid: sub}})
    for label, resp in (("live", live), ("fresh", f)):
        room = resp["rooms"][rid]
        assert room["initial"] is True, label
        assert sorted(e["event_id"] for e in room["required_state"]) == \
            sorted([st[1]["event_id"], bj["event_id"]]), label
        assert tl_ids(resp, rid) == ids(msgs), label
        assert room["joined_count"] == 2, label
        assert room.get("prev_batch") == "p_gap", label


def test_second_device_starting_after_a_gap(proxy, hs, alice):
    """Device 1 saw the room; device 2 of the same user starts later and its first /sync is a
    limited timeline plus a big state block. Both see the new state and nothing across the gap."""
    A = alice.user_id
    st = F.room_state(A, "Romeo Oscar Oscar Mike")
    first = F.message(A, "first message")
    rid = one_room(alice, st, [first])
    c1 = proxy.client(alice.token)
    r = c1.sync({"lists": a_list(10, [["m.room.name", ""]])})
    assert r["rooms"][rid]["name"] == "Romeo Oscar Oscar Mike"
    assert tl_ids(r, rid) == [first["event_id"]]
    alice.wait_idle()

    dev2 = User(hs, "alice", device_id="SECONDDEV")
    assert dev2.user_id == A
    rename = F.name(A, "potato")
    extra = custom_state(A, 40)
    msgs = [F.message(A, "while away %d" % i) for i in range(20)]
    # the homeserver's initial sync for device 2: the full current state, the last message
    dev2.queue(F.sync_response(join={rid: gappy(st[:4] + extra + [rename], msgs[-1:], "p_dev2")}))
    c2 = proxy.client(dev2.token)
    c2.sync({"conn_id": "warmup", "lists": a_list(1)})
    dev2.wait_idle()

    r2 = proxy.client(dev2.token).sync({"lists": a_list(100, [["m.room.name", ""]])})
    live = quick(c1)
    for label, resp in (("device 2", r2), ("device 1 live", live)):
        room = resp["rooms"][rid]
        assert room["initial"] is True, label
        assert room["name"] == "potato", label
        assert tl_ids(resp, rid) == [msgs[-1]["event_id"]], (label, room["timeline"])
        assert {e["type"] for e in room["timeline"]} == {"m.room.message"}, label
        assert room.get("prev_batch") == "p_dev2", label
        assert room.get("limited") is True, label


# ---------------------------------------------------------------- prev_batch of chunks

def test_prev_batch_is_the_nearest_chunk_at_or_after_the_oldest_event(proxy, alice):
    A = alice.user_id
    st = F.room_state(A)
    topic, msg = F.topic(A, "chunks"), F.message(A, "in the first chunk")
    rid = F.new_room_id("gap")
    nb1 = alice.queue(F.sync_response(join={rid: F.joined_room(st, [topic, msg], prev_batch="create")}))

    def view(n, conn):
        room = fresh(proxy, alice, conn, n)["rooms"][rid]
        return tl_ids({"rooms": {rid: room}}, rid), room.get("prev_batch"), room.get("limited")

    # no chunk starts at or after msg: the response's next_batch, which /messages takes too,
    # is the token after msg (paginating from it repeats msg, never skips topic)
    assert view(1, "c1") == ([msg["event_id"]], nb1, True)
    alice.wait_idle()
    msg2 = F.message(A, "in the second chunk")
    alice.queue(F.sync_response(join={rid: F.joined_room(timeline=[msg2], prev_batch="newer")}))
    alice.wait_idle()
    assert view(1, "d1") == ([msg2["event_id"]], "newer", True), "a chunk's own token comes first"
    assert view(2, "d2") == ([msg["event_id"], msg2["event_id"]], nb1, True)
    tl3, pb3, lim3 = view(3, "d3")
    assert (tl3, pb3) == (ids([topic, msg, msg2]), "create")
    assert not lim3, "the whole timeline since the join is there"


# ---------------------------------------------------------------- backfilled history

def test_backfilled_invite_before_a_known_join_is_not_new_state(proxy, db, hs, alice):
    charlie = User(hs, "charlie")
    A, C = alice.user_id, charlie.user_id
    fed = "@bob:over_federation"
    rid = F.new_room_id("fed", server="over_federation")
    st = F.room_state(fed, "Federated")
    aj = F.join(A, displayname="Alice")
    alice.queue(F.sync_response(join={rid: F.joined_room(st, [aj], prev_batch="pa")}))
    ca = proxy.client(alice.token)
    r = ca.sync({"lists": a_list(5, [["m.room.member", A]])})
    assert r["lists"]["a"]["count"] == 1
    assert list_ops(r, "a") == [{"op": "SYNC", "range": [0, 0], "room_ids": [rid]}]
    alice.wait_idle()

    # charlie's first poll: history reaching back to the room's creation, with an invite of
    # alice (never seen) before her join (known), then charlie's join (new)
    old = F.message(fed, "older, unseen", ts=aj["origin_server_ts"] - 20)
    inv = F.invite(fed, A, ts=aj["origin_server_ts"] - 10)
    cj = F.join(C, displayname="Charlie")
    charlie.queue(F.sync_response(join={rid: F.joined_room(timeline=st + [old, inv, aj, cj],
                                                           prev_batch="pc")}))
    cc = proxy.client(charlie.token)
    cc.sync({"lists": a_list(5)})
    charlie.wait_idle()
    assert fresh(proxy, charlie, "again", 5)["lists"]["a"]["count"] == 1

    r = quick(ca)
    assert not list_ops(r, "a"), r["lists"]["a"]
    assert set(r["rooms"]) == {rid}
    room = r["rooms"][rid]
    assert tl_ids(r, rid) == [cj["event_id"]]
    assert room["num_live"] == 1
    assert room["joined_count"] == 3
    assert room.get("invited_count", 0) == 0
    assert "required_state" not in room and "initial" not in room

    stored = {e["event_id"] for e in events_of(db, rid)}
    assert old["event_id"] not in stored and inv["event_id"] not in stored
    f = fresh(proxy, alice, "f", 5, [["m.room.member", A]])
    room = f["rooms"][rid]
    assert state_keys(room) == {A: "join"}, room["required_state"]
    assert room["required_state"][0]["event_id"] == aj["event_id"]
    assert tl_ids(f, rid) == [aj["event_id"], cj["event_id"]]
    assert (room["joined_count"], room.get("invited_count", 0)) == (3, 0)
    assert f["lists"]["a"]["count"] == 1


def test_gappy_sync_wakes_a_parked_request_and_two_gaps_give_one_snapshot(proxy, alice):
    A = alice.user_id
    st = F.room_state(A, "first")
    rid = one_room(alice, st, [F.message(A, "before")])
    c = proxy.client(alice.token)
    c.sync({"lists": a_list(10, [["m.room.name", ""]])})
    alice.wait_idle()

    # a long-poll is parked when the gappy sync arrives: it answers with the snapshot
    pending = run_in_thread(c.sync, {}, timeout=20000)
    after1 = F.message(A, "after the first gap")
    time.sleep(0.3)
    assert not pending.done(), "the request must be parked while nothing happened"
    alice.queue(F.sync_response(join={rid: gappy([F.name(A, "second")], [after1], "g1")}))
    r = pending.result(15)
    room = r["rooms"][rid]
    assert room["initial"] is True and room["name"] == "second"
    assert tl_ids(r, rid) == [after1["event_id"]]
    assert room["required_state"][0]["content"]["name"] == "second"
    alice.wait_idle()

    # two gaps before the client asks: one snapshot, the newest state, only the last chunk
    g2 = [F.message(A, "chunk two")]
    g3 = [F.message(A, "chunk three a"), F.message(A, "chunk three b")]
    alice.queue(F.sync_response(join={rid: gappy([F.name(A, "third")], g2, "g2")}))
    alice.queue(F.sync_response(join={rid: gappy([F.name(A, "fourth")], g3, "g3")}))
    alice.wait_idle()
    r = quick(c)
    room = r["rooms"][rid]
    assert room["initial"] is True
    assert room["name"] == "fourth"
    assert [e["content"]["name"] for e in room["required_state"]] == ["fourth"]
    assert tl_ids(r, rid) == ids(g3), room["timeline"]
    assert room.get("prev_batch") == "g3" and room.get("limited") is True


def test_gap_without_state_change_is_limited_on_open_connections(proxy, alice):
    """A limited timeline whose first event follows unknown history, with no state block (nothing
    changed): an open connection must not get the new events as if they followed what it has.
    The room comes again as a snapshot that stops at the gap, limited, with the chunk's token."""
    A = alice.user_id
    st = F.room_state(A, "quiet")
    before = [F.message(A, "before %d" % i) for i in range(3)]
    rid = one_room(alice, st, before)
    c = proxy.client(alice.token)
    r = c.sync({"lists": a_list(10)})
    assert tl_ids(r, rid) == ids(before)
    alice.wait_idle()

    after = [F.message(A, "after %d" % i) for i in range(2)]
    alice.queue(F.sync_response(join={rid: gappy([], after, "p_gap")}))
    alice.wait_idle()
    r = quick(c)
    room = r["rooms"][rid]
    assert tl_ids(r, rid) == ids(after)
    assert room.get("limited") is True, room
    assert room.get("prev_batch") == "p_gap", room
    assert room.get("initial") is True, room

    # a limited chunk that starts with a known event has no gap: plain live events
    more = F.message(A, "contiguous")
    alice.queue(F.sync_response(join={rid: gappy([], [after[-1], more], "p_x")}))
    alice.wait_idle()
    r = quick(c)
    room = r["rooms"][rid]
    assert tl_ids(r, rid) == [more["event_id"]]
    assert "limited" not in room and "initial" not in room, room
