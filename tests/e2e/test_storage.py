"""What the walking-skeleton issue demands of storage (docs/behaviour.md,
"Processing one upstream response", "Ordering and de-duplication", "Storage"):
asserted on what clients see and, where they cannot see it yet, on the database."""

import json
import os
import subprocess

import pytest

from helpers import sync_op_room_ids, wait_until
import fakehs as F
import pgtmp


# ---------------------------------------------------------------- database access

def lit(s):
    """A SQL string literal."""
    return "'" + str(s).replace("'", "''") + "'"


def rows(db, sql):
    """Runs a SELECT on the test database; returns its rows as a list of dicts."""
    exe = os.path.join(pgtmp.pg_bindir(), "psql")
    wrapped = "SELECT coalesce(json_agg(t), '[]'::json) FROM (%s) t" % sql
    r = subprocess.run([exe, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At", "-d", db, "-c", wrapped],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, "psql failed (%s): %s" % (sql, r.stderr.strip())
    return json.loads(r.stdout)


def events_of(db, room_id):
    """The stored events of a room, in NID order."""
    return rows(db, "SELECT event_nid, event_id, event_type, state_key, is_state, missing_previous, "
                    "prev_batch, event FROM syncv3_events WHERE room_id = %s ORDER BY event_nid"
                % lit(room_id))


def stored_event(db, event_id):
    got = rows(db, "SELECT event FROM syncv3_events WHERE event_id = %s" % lit(event_id))
    assert len(got) == 1, "event %s stored %d times" % (event_id, len(got))
    return json.loads(got[0]["event"])


def timeline_ids(room):
    return [e["event_id"] for e in room.get("timeline", [])]


def snapshot(proxy, user, conn_id, limit=20, **list_kw):
    """A fresh connection's first response for one list "a" over every room."""
    c = proxy.client(user.token)
    body = {"conn_id": conn_id, "lists": {"a": dict({"ranges": [[0, 19]], "timeline_limit": limit},
                                                    **list_kw)}}
    return c.sync(body)


def make_room(user, label="room", room_name=None, members=(), timeline=None, **room_kw):
    """A room created by `user` (+ joined `members` with displaynames): (room_id, state, timeline)."""
    rid = F.new_room_id(label)
    st = F.room_state(user.user_id, room_name)
    for m in members:
        st.append(F.join(m.user_id, displayname=m.user_id[1:].split(":")[0].capitalize()))
    tl = timeline if timeline is not None else [F.message(user.user_id, "hello from " + label)]
    return rid, st, tl


# ---------------------------------------------------------------- de-duplication

def test_overlapping_timelines_of_two_pollers_store_each_event_once(proxy, db, alice, bob):
    A, B = alice.user_id, bob.user_id
    rid, st, _ = make_room(alice, "shared", "Shared", members=[bob])
    m = [F.message(A if i % 2 else B, "m%d" % i) for i in range(7)]

    # alice's poller: m0..m2
    alice.queue(F.sync_response(join={rid: F.joined_room(st, m[0:3], prev_batch="pa")}))
    snapshot(proxy, alice, "a0")
    alice.wait_idle()
    # bob's poller: the same state block, overlapping timeline m1..m4
    bob.queue(F.sync_response(join={rid: F.joined_room(st, m[1:5], prev_batch="pb")}))
    snapshot(proxy, bob, "b0")
    bob.wait_idle()
    # alice's poller again: m3..m6 (m3, m4 already known through bob)
    alice.queue(F.sync_response(join={rid: F.joined_room(timeline=m[3:7])}))
    alice.wait_idle()

    stored = events_of(db, rid)
    ids = [e["event_id"] for e in stored]
    assert len(ids) == len(set(ids)), "an event was stored twice: %r" % ids
    assert sorted(ids) == sorted([e["event_id"] for e in st + m])
    tl_nids = {e["event_id"]: e["event_nid"] for e in stored if not e["is_state"]}
    assert [tl_nids[e["event_id"]] for e in m] == sorted(tl_nids.values()), \
        "timeline NIDs must increase in delivery order"
    assert all(e["is_state"] for e in stored if e["event_id"] in {s["event_id"] for s in st})
    # state stored once too: one current row per (type, state_key)
    cur = rows(db, "SELECT event_type, state_key, count(*) AS n FROM syncv3_room_state WHERE room_id = %s "
                   "AND end_nid IS NULL GROUP BY 1, 2" % lit(rid))
    assert {(r["event_type"], r["state_key"]) for r in cur} == {(e["type"], e["state_key"]) for e in st}
    assert all(r["n"] == 1 for r in cur)

    for user in (alice, bob):
        resp = snapshot(proxy, user, "after", limit=20)
        room = resp["rooms"][rid]
        assert timeline_ids(room) == [e["event_id"] for e in m], "timeline of %s" % user.user_id
        assert room["joined_count"] == 2


def test_duplicate_event_within_one_timeline_is_stored_once(proxy, db, alice):
    A = alice.user_id
    rid, st, _ = make_room(alice, "dup", "Dup")
    e1, e2 = F.message(A, "one"), F.message(A, "two")
    alice.queue(F.sync_response(join={rid: F.joined_room(st, [e1, e2, e2])}))
    resp = snapshot(proxy, alice, "c")
    assert timeline_ids(resp["rooms"][rid]) == [e1["event_id"], e2["event_id"]]
    assert [e["event_id"] for e in events_of(db, rid) if not e["is_state"]] == \
        [e1["event_id"], e2["event_id"]]


def test_unknown_events_before_a_known_one_are_not_new_history(proxy, db, alice):
    A = alice.user_id
    rid, st, _ = make_room(alice, "bf", "Current name")
    old_ts = F.now_ts() - 3600 * 1000
    m1, m2 = F.message(A, "m1"), F.message(A, "m2")
    alice.queue(F.sync_response(join={rid: F.joined_room(st, [m1, m2])}))
    c = proxy.client(alice.token)
    c.sync({"lists": {"a": {"ranges": [[0, 9]], "timeline_limit": 10}}})
    alice.wait_idle()

    # [unknown old state event, unknown old message, known, known]: nothing is new
    old_name = F.name(A, "Backfilled old name", ts=old_ts)
    old_msg = F.message(A, "old, backfilled", ts=old_ts + 1)
    alice.queue(F.sync_response(join={rid: F.joined_room(timeline=[old_name, old_msg, m1, m2])}))
    # [unknown old, known, new]: only the new one
    old2 = F.message(A, "another old one", ts=old_ts + 2)
    m3 = F.message(A, "m3")
    alice.queue(F.sync_response(join={rid: F.joined_room(timeline=[old2, m2, m3])}))
    alice.wait_idle()

    stored = {e["event_id"] for e in events_of(db, rid)}
    for old in (old_name, old_msg, old2):
        assert old["event_id"] not in stored, "old event %s stored as new history" % old["content"]
    assert m3["event_id"] in stored
    resp = snapshot(proxy, alice, "fresh", limit=10, required_state=[["m.room.name", ""]])
    room = resp["rooms"][rid]
    assert timeline_ids(room) == [m1["event_id"], m2["event_id"], m3["event_id"]]
    assert room["name"] == "Current name"
    assert room["required_state"][0]["content"]["name"] == "Current name"


# ---------------------------------------------------------------- room creation

def test_rooms_without_create_event_are_ignored(proxy, db, alice):
    A = alice.user_id
    good, gst, gtl = make_room(alice, "good", "Good")
    ghost = F.new_room_id("ghost")   # state block without m.room.create
    stray = F.new_room_id("stray")   # unknown room, timeline only
    ghost_st = [F.join(A), F.name(A, "Ghost"), F.power_levels(A)]
    alice.queue(F.sync_response(join={
        good: F.joined_room(gst, gtl),
        ghost: F.joined_room(ghost_st, [F.message(A, "boo")]),
        stray: F.joined_room(timeline=[F.message(A, "stray"), F.name(A, "Stray")]),
    }))
    resp = snapshot(proxy, alice, "c")
    assert resp["lists"]["a"]["count"] == 1
    assert set(resp["rooms"]) == {good}
    alice.wait_idle()
    for rid in (ghost, stray):
        assert events_of(db, rid) == [], "events of %s were stored" % rid
        assert rows(db, "SELECT 1 FROM syncv3_rooms WHERE room_id = %s" % lit(rid)) == []
        assert rows(db, "SELECT 1 FROM syncv3_room_state WHERE room_id = %s" % lit(rid)) == []
    # the bad rooms did not wedge the poller: the next response is processed
    later = F.message(A, "still alive")
    alice.queue(F.sync_response(join={good: F.joined_room(timeline=[later]),
                                      stray: F.joined_room(timeline=[F.message(A, "again")])}))
    alice.wait_idle()
    resp = snapshot(proxy, alice, "c2", limit=1)
    assert set(resp["rooms"]) == {good}
    assert timeline_ids(resp["rooms"][good]) == [later["event_id"]]


def test_create_event_in_timeline_instead_of_state_is_accepted(proxy, db, alice):
    A = alice.user_id
    rid = F.new_room_id("quirk")
    create = F.create(A)
    st = [F.join(A), F.power_levels(A), F.join_rules(A), F.name(A, "Quirky")]
    msg = F.message(A, "after the create")
    alice.queue(F.sync_response(join={rid: F.joined_room(st, [create, msg])}))
    resp = snapshot(proxy, alice, "c", required_state=[["m.room.create", ""]])
    assert resp["lists"]["a"]["count"] == 1
    room = resp["rooms"][rid]
    assert room["name"] == "Quirky"
    assert timeline_ids(room)[-1] == msg["event_id"]
    assert [e["type"] for e in room["required_state"]] == ["m.room.create"]
    alice.wait_idle()
    stored = events_of(db, rid)
    assert [e["event_id"] for e in stored].count(create["event_id"]) == 1
    assert rows(db, "SELECT room_id FROM syncv3_rooms WHERE room_id = %s" % lit(rid)) == [{"room_id": rid}]


def test_timeline_witnessing_room_creation_is_accepted(proxy, db, alice):
    A = alice.user_id
    rid = F.new_room_id("born")
    tl = [F.create(A), F.join(A), F.power_levels(A), F.name(A, "Newborn"), F.message(A, "first!")]
    alice.queue(F.sync_response(join={rid: F.joined_room(timeline=tl)}))
    resp = snapshot(proxy, alice, "c", limit=10)
    assert resp["lists"]["a"]["count"] == 1
    assert resp["rooms"][rid]["name"] == "Newborn"
    # the timeline starts at alice's join (docs/behaviour.md, "Timeline"), so the create is not in it
    assert timeline_ids(resp["rooms"][rid]) == [e["event_id"] for e in tl[1:]]
    alice.wait_idle()
    stored = events_of(db, rid)
    assert [e["event_id"] for e in stored] == [e["event_id"] for e in tl]
    assert not any(e["is_state"] for e in stored), "timeline events are not state-block events"
    assert rows(db, "SELECT name FROM syncv3_rooms WHERE room_id = %s" % lit(rid)) == [{"name": "Newborn"}]


# ---------------------------------------------------------------- gaps

def test_limited_timeline_marks_gap_and_snapshots_stop_there(proxy, db, alice):
    A = alice.user_id
    rid, st, _ = make_room(alice, "gap", "Gappy")
    before = [F.message(A, "before %d" % i) for i in range(3)]
    alice.queue(F.sync_response(join={rid: F.joined_room(st, before, prev_batch="p_start")}))
    snapshot(proxy, alice, "c0")
    alice.wait_idle()
    after = [F.message(A, "after %d" % i) for i in range(2)]
    alice.queue(F.sync_response(join={rid: F.joined_room(timeline=after, limited=True,
                                                          prev_batch="p_gap")}))
    alice.wait_idle()

    by_id = {e["event_id"]: e for e in events_of(db, rid)}
    assert by_id[after[0]["event_id"]]["missing_previous"] is True
    assert by_id[after[0]["event_id"]]["prev_batch"] == "p_gap"
    assert by_id[after[1]["event_id"]]["missing_previous"] is False
    assert not any(by_id[e["event_id"]]["missing_previous"] for e in before)

    resp = snapshot(proxy, alice, "c1", limit=10)
    room = resp["rooms"][rid]
    assert timeline_ids(room) == [e["event_id"] for e in after], "timeline crossed the gap"
    assert room.get("prev_batch") == "p_gap"
    assert room.get("limited") is True, "a timeline that stops at a gap is limited"

    # a limited chunk that starts with a known event has no gap
    more = F.message(A, "contiguous")
    alice.queue(F.sync_response(join={rid: F.joined_room(timeline=[after[1], more], limited=True,
                                                          prev_batch="p_x")}))
    alice.wait_idle()
    assert [e["missing_previous"] for e in events_of(db, rid) if e["event_id"] == more["event_id"]] == [False]
    resp = snapshot(proxy, alice, "c2", limit=10)
    assert timeline_ids(resp["rooms"][rid]) == [e["event_id"] for e in after + [more]]


# ---------------------------------------------------------------- redactions

@pytest.mark.parametrize("room_version", ["10", "11"])
def test_redacted_message_is_stored_and_served_redacted(proxy, db, alice, room_version):
    A = alice.user_id
    rid = F.new_room_id("red")
    st = [F.create(A, room_version=room_version), F.join(A), F.power_levels(A), F.join_rules(A),
          F.name(A, "Redactions")]
    target = F.message(A, "regrettable")
    target["content"]["m.relates_to"] = {"rel_type": "m.thread", "event_id": "$x"}
    alice.queue(F.sync_response(join={rid: F.joined_room(st, [target])}))
    snapshot(proxy, alice, "c0")
    alice.wait_idle()
    if room_version == "11":   # v11 puts `redacts` in the content
        redaction = F.event("m.room.redaction", A, {"redacts": target["event_id"], "reason": "oops"})
    else:
        redaction = F.event("m.room.redaction", A, {"reason": "oops"})
        redaction["redacts"] = target["event_id"]
    alice.queue(F.sync_response(join={rid: F.joined_room(timeline=[redaction])}))
    alice.wait_idle()

    ev = stored_event(db, target["event_id"])
    assert ev["content"] == {}, "content must be emptied: %r" % ev
    assert ev["unsigned"]["redacted_because"] == redaction
    for k in ("event_id", "type", "sender", "origin_server_ts"):
        assert ev[k] == target[k]

    resp = snapshot(proxy, alice, "c1", limit=10)
    tl = resp["rooms"][rid]["timeline"]
    assert [e["event_id"] for e in tl] == [target["event_id"], redaction["event_id"]]
    assert tl[0]["content"] == {}
    assert tl[0]["unsigned"]["redacted_because"] == redaction
    assert tl[1] == redaction


def test_redacting_the_room_name_changes_the_computed_name(proxy, db, alice, bob):
    A = alice.user_id
    rid = F.new_room_id("rn")
    name_ev = F.name(A, "Secret plans")
    st = [F.create(A), F.join(A), F.power_levels(A), F.join_rules(A), F.join(bob.user_id, displayname="Bob")]
    alice.queue(F.sync_response(join={rid: F.joined_room(st, [name_ev, F.message(A, "hi")])}))
    c = proxy.client(alice.token)
    resp = c.sync({"lists": {"a": {"ranges": [[0, 9]], "timeline_limit": 1}}})
    assert resp["rooms"][rid]["name"] == "Secret plans"
    alice.wait_idle()
    redaction = F.event("m.room.redaction", A, {})
    redaction["redacts"] = name_ev["event_id"]
    alice.queue(F.sync_response(join={rid: F.joined_room(timeline=[redaction])}))
    alice.wait_idle()

    assert stored_event(db, name_ev["event_id"])["content"] == {}
    assert rows(db, "SELECT name FROM syncv3_rooms WHERE room_id = %s" % lit(rid)) == [{"name": None}]
    resp = snapshot(proxy, alice, "fresh", required_state=[["m.room.name", ""]])
    room = resp["rooms"][rid]
    assert room["name"] == "Bob"
    assert room["required_state"][0]["content"] == {}


def test_redacting_the_room_name_updates_live_connections(proxy, db, alice, bob):
    A = alice.user_id
    rid = F.new_room_id("rnl")
    name_ev = F.name(A, "Secret plans")
    st = [F.create(A), F.join(A), F.power_levels(A), F.join_rules(A), F.join(bob.user_id, displayname="Bob")]
    alice.queue(F.sync_response(join={rid: F.joined_room(st, [name_ev, F.message(A, "hi")])}))
    c = proxy.client(alice.token)
    resp = c.sync({"lists": {"a": {"ranges": [[0, 9]], "timeline_limit": 1}}})
    assert resp["rooms"][rid]["name"] == "Secret plans"
    alice.wait_idle()
    redaction = F.event("m.room.redaction", A, {})
    redaction["redacts"] = name_ev["event_id"]
    alice.queue(F.sync_response(join={rid: F.joined_room(timeline=[redaction])}))
    alice.wait_idle()
    live = c.sync({}, timeout=3000)
    assert live["rooms"][rid]["timeline"][-1]["event_id"] == redaction["event_id"]
    assert live["rooms"][rid].get("name") == "Bob", "live update after the name was redacted: %r" \
        % live["rooms"].get(rid)


# ---------------------------------------------------------------- invites

def test_invite_is_listed_then_retired_by_a_federated_join(proxy, db, alice, bob):
    A, B = alice.user_id, bob.user_id
    rid = F.new_room_id("inv")
    inv = F.invite_to(B, A, room_name="Federated party")
    alice.queue(F.sync_response(invite={rid: F.invited_room(inv)}))
    resp = snapshot(proxy, alice, "c0")
    assert sync_op_room_ids(resp, "a") == [rid]
    room = resp["rooms"][rid]
    assert room["invite_state"] == [F.stripped(e) for e in inv]
    assert (room["highlight_count"], room["joined_count"], room["invited_count"]) == (1, 1, 1)
    alice.wait_idle()
    got = rows(db, "SELECT user_id, invite_state FROM syncv3_invites WHERE room_id = %s" % lit(rid))
    assert [r["user_id"] for r in got] == [A]
    assert json.loads(got[0]["invite_state"]) == [F.stripped(e) for e in inv]

    # the join, as a federated join arrives: no unsigned.prev_content
    st = [inv[0], inv[1], inv[2], inv[3]]
    my_join = F.join(A, displayname="Alice")
    assert "unsigned" not in my_join
    alice.queue(F.sync_response(join={rid: F.joined_room(st, [my_join, F.message(B, "welcome")])}))
    alice.wait_idle()
    assert rows(db, "SELECT 1 FROM syncv3_invites WHERE room_id = %s" % lit(rid)) == [], \
        "the invite survived the join"
    resp = snapshot(proxy, alice, "c1")
    assert resp["lists"]["a"]["count"] == 1
    room = resp["rooms"][rid]
    assert "invite_state" not in room
    assert room["joined_count"] == 2
    assert room["name"] == "Federated party"
    assert room["highlight_count"] == 0


def test_rejected_invite_for_unknown_room_leaves_nothing_behind(proxy, db, alice, bob):
    A, B = alice.user_id, bob.user_id
    rid = F.new_room_id("rej")
    alice.queue(F.sync_response(invite={rid: F.invited_room(F.invite_to(B, A, room_name="Nope"))}))
    resp = snapshot(proxy, alice, "c0")
    assert resp["lists"]["a"]["count"] == 1
    alice.wait_idle()
    assert len(rows(db, "SELECT 1 FROM syncv3_invites WHERE room_id = %s" % lit(rid))) == 1
    alice.queue(F.sync_response(leave={rid: F.left_room([F.leave(A)])}))
    alice.wait_idle()
    assert rows(db, "SELECT 1 FROM syncv3_invites WHERE room_id = %s" % lit(rid)) == []
    assert events_of(db, rid) == []
    assert rows(db, "SELECT 1 FROM syncv3_rooms WHERE room_id = %s" % lit(rid)) == []
    assert rows(db, "SELECT 1 FROM syncv3_room_state WHERE room_id = %s" % lit(rid)) == []
    resp = snapshot(proxy, alice, "c1")
    assert resp["lists"]["a"]["count"] == 0
    assert rid not in (resp.get("rooms") or {})


# ---------------------------------------------------------------- per-user fields

def test_transaction_id_and_membership_are_not_stored_in_the_shared_event(proxy, db, alice, bob):
    A = alice.user_id
    rid, st, _ = make_room(alice, "txn", "Txn", members=[bob])
    sent = F.message(A, "local echo", unsigned={"transaction_id": "m1234.5", "membership": "join",
                                               "io.element.msc4115.membership": "join", "age": 17})
    alice.queue(F.sync_response(join={rid: F.joined_room(st, [sent])}))
    snapshot(proxy, alice, "c0")
    alice.wait_idle()

    ev = stored_event(db, sent["event_id"])
    uns = ev.get("unsigned", {})
    assert "transaction_id" not in uns
    assert "membership" not in uns
    assert "io.element.msc4115.membership" not in uns
    assert uns.get("age") == 17, "other unsigned fields are kept"
    txns = rows(db, "SELECT user_id, device_id, event_id, txn_id FROM syncv3_txns")
    assert txns == [{"user_id": A, "device_id": alice.device_id, "event_id": sent["event_id"],
                     "txn_id": "m1234.5"}]

    # bob (another user) sees neither the txn id nor alice's membership
    resp = snapshot(proxy, bob, "b0")
    ev = resp["rooms"][rid]["timeline"][-1]
    assert ev["event_id"] == sent["event_id"]
    assert "transaction_id" not in ev.get("unsigned", {})
    assert "membership" not in ev.get("unsigned", {})


def test_state_event_membership_field_is_stripped(proxy, db, alice):
    A = alice.user_id
    rid = F.new_room_id("ms")
    st = F.room_state(A, "Strip")
    st[1]["unsigned"] = {"membership": "join"}
    alice.queue(F.sync_response(join={rid: F.joined_room(st, [F.message(A, "x")])}))
    snapshot(proxy, alice, "c0")
    alice.wait_idle()
    assert "unsigned" not in stored_event(db, st[1]["event_id"])


# ---------------------------------------------------------------- non-room data

def test_device_and_account_data_is_stored(proxy, db, alice, bob):
    A, B = alice.user_id, bob.user_id
    rid, st, tl = make_room(alice, "misc", "Misc", members=[bob])
    target = tl[-1]["event_id"]
    receipts = {"type": "m.receipt", "content": {target: {
        "m.read": {B: {"ts": 1000}},
        "m.read.private": {A: {"ts": 2000}}}}}
    typing = F.typing([B])
    to_dev = [F.to_device(B, "m.room_key_request", {"n": 1}), F.to_device(B, "m.custom", {"n": 2})]
    direct = F.account_data("m.direct", {B: [rid]})
    tag = F.tags({"m.favourite": {"order": 0.5}})
    alice.queue(F.sync_response(
        join={rid: F.joined_room(st, tl, ephemeral=[receipts, typing], account_data=[tag])},
        to_device=to_dev, account_data=[direct],
        device_lists={"changed": ["@carol:localhost", "@dave:localhost"], "left": ["@dave:localhost"]},
        otk_counts={"signed_curve25519": 42}, fallback_key_types=[]))
    snapshot(proxy, alice, "c0")
    alice.wait_idle()
    D = alice.device_id

    msgs = rows(db, "SELECT user_id, device_id, event_type, sender, message FROM syncv3_to_device_messages "
                    "ORDER BY position")
    assert [(m["user_id"], m["device_id"], m["event_type"], m["sender"]) for m in msgs] == \
        [(A, D, "m.room_key_request", B), (A, D, "m.custom", B)]
    assert [json.loads(m["message"]) for m in msgs] == to_dev

    ad = rows(db, "SELECT user_id, room_id, type, data FROM syncv3_account_data ORDER BY room_id")
    assert [(r["user_id"], r["room_id"], r["type"]) for r in ad] == [(A, "", "m.direct"), (A, rid, "m.tag")]
    assert json.loads(ad[0]["data"])["content"] == direct["content"]
    assert json.loads(ad[1]["data"])["content"] == tag["content"]

    rc = rows(db, "SELECT room_id, user_id, thread_id, is_private, event_id, ts FROM syncv3_receipts "
                  "ORDER BY is_private")
    assert rc == [{"room_id": rid, "user_id": B, "thread_id": "", "is_private": False, "event_id": target,
                   "ts": 1000},
                  {"room_id": rid, "user_id": A, "thread_id": "", "is_private": True, "event_id": target,
                   "ts": 2000}]

    ty = rows(db, "SELECT room_id, event FROM syncv3_typing")
    assert [r["room_id"] for r in ty] == [rid]
    assert json.loads(ty[0]["event"])["content"]["user_ids"] == [B]

    dl = rows(db, "SELECT user_id, device_id, target_user_id, target_state FROM syncv3_device_list_updates "
                  "ORDER BY target_user_id")
    assert [(r["user_id"], r["device_id"], r["target_user_id"], r["target_state"]) for r in dl] == \
        [(A, D, "@carol:localhost", 1), (A, D, "@dave:localhost", 2)], "left wins over changed"

    dd = rows(db, "SELECT user_id, device_id, otk_counts, fallback_types FROM syncv3_device_data")
    assert len(dd) == 1 and (dd[0]["user_id"], dd[0]["device_id"]) == (A, D)
    assert json.loads(dd[0]["otk_counts"]) == {"signed_curve25519": 42}
    assert json.loads(dd[0]["fallback_types"]) == [], "an empty fallback list is news"

    # updates: receipts move, account data replaced, absent fallback types change nothing
    alice.queue(F.sync_response(
        join={rid: F.joined_room(ephemeral=[F.receipt(target, A, ts=3000)],
                                 account_data=[F.tags({})])},
        otk_counts={"signed_curve25519": 41}))
    alice.wait_idle()
    dd = rows(db, "SELECT otk_counts, fallback_types FROM syncv3_device_data")
    assert json.loads(dd[0]["otk_counts"]) == {"signed_curve25519": 41}
    assert json.loads(dd[0]["fallback_types"]) == []
    assert rows(db, "SELECT count(*) AS n FROM syncv3_receipts WHERE user_id = %s AND NOT is_private"
                % lit(A)) == [{"n": 1}]
    ad = rows(db, "SELECT data FROM syncv3_account_data WHERE room_id = %s" % lit(rid))
    assert json.loads(ad[0]["data"])["content"] == {"tags": {}}


def test_fallback_key_types_absent_versus_empty(proxy, db, alice):
    alice.queue(F.sync_response(otk_counts={"signed_curve25519": 5}))
    snapshot(proxy, alice, "c0")
    alice.wait_idle()
    dd = rows(db, "SELECT otk_counts, fallback_types FROM syncv3_device_data")
    assert len(dd) == 1
    assert dd[0]["fallback_types"] is None, "absent means no information"
    alice.queue(F.sync_response(fallback_key_types=["signed_curve25519"]))
    alice.wait_idle()
    assert json.loads(rows(db, "SELECT fallback_types FROM syncv3_device_data")[0]["fallback_types"]) == \
        ["signed_curve25519"]
    alice.queue(F.sync_response(fallback_key_types=[]))
    alice.wait_idle()
    assert json.loads(rows(db, "SELECT fallback_types FROM syncv3_device_data")[0]["fallback_types"]) == []


def _kill9(proxy):
    proxy.proc.kill()
    proxy.proc.wait()
    proxy.proc = None


@pytest.mark.parametrize("when", ["after_commit", "right_after_serving"])
def test_to_device_messages_survive_kill9_exactly_once(proxy, db, hs, alice, when):
    rid, st, tl = make_room(alice, "td", "TD")
    alice.queue(F.sync_response(join={rid: F.joined_room(st, tl)}))
    snapshot(proxy, alice, "c0")
    alice.wait_idle()
    before = alice.syncs()[-1].since
    msgs = [F.to_device("@bob:localhost", "m.test", {"n": i}) for i in range(3)]
    body = F.sync_response(to_device=msgs)
    nb = alice.queue(body)
    body["next_batch"] = nb

    def count():
        return rows(db, "SELECT count(*) AS n FROM syncv3_to_device_messages")[0]["n"]

    if when == "after_commit":
        wait_until(lambda: count() == 3, what="to-device rows")
    else:
        hs.wait_for(lambda reqs: any(r.served_next_batch == nb for r in reqs), what="batch served")
    _kill9(proxy)
    n = len(alice.syncs())
    stored_at_death = count()
    assert stored_at_death in (0, 3), "to-device messages partially stored"
    proxy.start()
    first = hs.wait_for_sync(alice.token, 1, start=n, timeout=20)
    if stored_at_death == 3:
        assert first.since == nb, "messages stored but since not advanced (they would be re-fetched)"
    else:
        assert first.since == before, "since advanced past messages that were not stored"
        # the fake homeserver, like a real one, answers the repeated since with the same batch
    alice.wait_idle()
    got = rows(db, "SELECT message FROM syncv3_to_device_messages ORDER BY position")
    assert [json.loads(r["message"]) for r in got] == msgs
    assert rows(db, "SELECT since FROM syncv3_sync2_devices WHERE device_id = %s"
                % lit(alice.device_id)) == [{"since": nb}]


# ---------------------------------------------------------------- unread counts

def test_unread_counts_are_stored_and_served(proxy, db, alice):
    A = alice.user_id
    rid, st, tl = make_room(alice, "un", "Unread")
    alice.queue(F.sync_response(join={rid: F.joined_room(st, tl, notification_count=3,
                                                          highlight_count=1)}))
    c = proxy.client(alice.token)
    resp = c.sync({"lists": {"a": {"ranges": [[0, 9]]}}})
    room = resp["rooms"][rid]
    assert (room["notification_count"], room["highlight_count"]) == (3, 1)
    alice.wait_idle()
    assert rows(db, "SELECT user_id, room_id, notification_count, highlight_count FROM syncv3_unread") == \
        [{"user_id": A, "room_id": rid, "notification_count": 3, "highlight_count": 1}]

    # only notification_count present: highlight_count is kept
    ev = F.message("@bob:localhost", "ping")
    alice.queue(F.sync_response(join={rid: F.joined_room(timeline=[ev], notification_count=4)}))
    alice.wait_idle()
    live = c.sync({}, timeout=3000)
    room = live["rooms"][rid]
    assert (room["notification_count"], room["highlight_count"]) == (4, 1)
    assert timeline_ids(room) == [ev["event_id"]]
    assert rows(db, "SELECT notification_count, highlight_count FROM syncv3_unread") == \
        [{"notification_count": 4, "highlight_count": 1}]

    # read: both drop to 0
    alice.queue(F.sync_response(join={rid: F.joined_room(notification_count=0, highlight_count=0)}))
    alice.wait_idle()
    live = c.sync({}, timeout=3000)
    assert (live["rooms"][rid]["notification_count"], live["rooms"][rid]["highlight_count"]) == (0, 0)
    resp = snapshot(proxy, alice, "fresh")
    assert (resp["rooms"][rid]["notification_count"], resp["rooms"][rid]["highlight_count"]) == (0, 0)


def test_redaction_in_the_first_response_of_a_room_uses_its_room_version(proxy, db, alice):
    """A room first seen in a response whose timeline also redacts a state event: the room
    version (11 here, which keeps power_levels.invite) must come from the create event of
    that same response, not default to v1."""
    A = alice.user_id
    rid = F.new_room_id("v11")
    st = [F.create(A, room_version="11"), F.join(A), F.join_rules(A)]
    pl = F.power_levels(A)
    pl["content"]["invite"] = 50
    redaction = F.event("m.room.redaction", A, {"redacts": pl["event_id"]})
    alice.queue(F.sync_response(join={rid: F.joined_room(st, [pl, F.message(A, "x"), redaction])}))
    snapshot(proxy, alice, "c0")
    alice.wait_idle()
    ev = stored_event(db, pl["event_id"])
    assert ev["unsigned"]["redacted_because"] == redaction
    assert ev["content"] == {"ban": 50, "events": {}, "events_default": 0, "invite": 50, "kick": 50,
                             "redact": 50, "state_default": 50, "users": {A: 100}, "users_default": 0}


@pytest.mark.parametrize("room_version", ["5", "9", "11"])
def test_redaction_follows_the_room_versions_rules(proxy, db, alice, bob, room_version):
    """What a client sees of redacted events: the content keys the room version keeps, the
    top-level keys, and an `unsigned` that holds only `redacted_because` (no bundled
    relations, no prev_content, no age) in the one shared stored copy."""
    A, B = alice.user_id, bob.user_id
    v = int(room_version)
    rid = F.new_room_id("rv")
    st = [F.create(A, room_version=room_version), F.join(A), F.power_levels(A), F.join_rules(A)]
    rules = F.join_rules(A, "restricted")
    rules["content"]["allow"] = [{"type": "m.room_membership", "room_id": "!space:localhost"}]
    pl = F.power_levels(A, users={A: 100, B: 50})
    pl["content"]["notifications"] = {"room": 50}
    bob_join = F.join(B, displayname="Bob", avatar_url="mxc://localhost/b",
                      unsigned={"prev_content": {"membership": "invite"}, "age": 3})
    bob_join["content"]["join_authorised_via_users_server"] = A
    create_ev = st[0]
    create_ev["content"]["m.federate"] = True
    msg = F.message(A, "regrettable", unsigned={"age": 5, "m.relations": {
        "m.thread": {"count": 2, "current_user_participated": True, "latest_event": {"event_id": "$t"}}}})
    msg["content"]["n"] = 123456789012345678901234567890
    targets = [rules, pl, bob_join, msg, create_ev]
    alice.queue(F.sync_response(join={rid: F.joined_room(st, [rules, pl, bob_join, msg])}))
    snapshot(proxy, alice, "c0")
    alice.wait_idle()
    redactions = {}
    for t in targets:
        r = F.event("m.room.redaction", A, {"reason": "test"})
        if v >= 11:
            r["content"]["redacts"] = t["event_id"]
        else:
            r["redacts"] = t["event_id"]
        redactions[t["event_id"]] = r
    alice.queue(F.sync_response(join={rid: F.joined_room(timeline=list(redactions.values()))}))
    alice.wait_idle()

    resp = snapshot(proxy, alice, "c1", limit=20, required_state=[["*", "*"]])
    room = resp["rooms"][rid]
    served = {e["event_id"]: e for e in room["timeline"] + room["required_state"]}
    for t in targets:
        for ev in (served[t["event_id"]], stored_event(db, t["event_id"])):
            assert ev["unsigned"] == {"redacted_because": redactions[t["event_id"]]}, ev
            assert set(ev) <= {"event_id", "type", "room_id", "sender", "state_key", "content",
                               "origin_server_ts", "unsigned"}, ev
            for k in ("event_id", "type", "sender", "origin_server_ts"):
                assert ev[k] == t[k]
    got = lambda ev: served[ev["event_id"]]["content"]
    assert got(msg) == {}
    assert got(rules) == ({"join_rule": "restricted", "allow": rules["content"]["allow"]} if v >= 8
                          else {"join_rule": "restricted"})
    want_pl = {k: pl["content"][k] for k in ("ban", "events", "events_default", "kick", "redact",
                                             "state_default", "users", "users_default")}
    if v >= 11:
        want_pl["invite"] = 0
    assert got(pl) == want_pl
    want_member = {"membership": "join"}
    if v >= 9:
        want_member["join_authorised_via_users_server"] = A
    assert got(bob_join) == want_member
    assert got(create_ev) == (create_ev["content"] if v >= 11 else {"creator": A})


def test_redaction_of_an_event_in_the_same_chunk(proxy, db, alice):
    A = alice.user_id
    rid, st, tl = make_room(alice, "same", "Same chunk")
    alice.queue(F.sync_response(join={rid: F.joined_room(st, tl)}))
    snapshot(proxy, alice, "c0")
    alice.wait_idle()
    target = F.message(A, "gone soon")
    redaction = F.event("m.room.redaction", A, {})
    redaction["redacts"] = target["event_id"]
    alice.queue(F.sync_response(join={rid: F.joined_room(timeline=[target, redaction])}))
    alice.wait_idle()
    assert stored_event(db, target["event_id"])["content"] == {}
    resp = snapshot(proxy, alice, "c1", limit=2)
    assert resp["rooms"][rid]["timeline"][0]["content"] == {}
    assert resp["rooms"][rid]["timeline"][0]["unsigned"]["redacted_because"] == redaction


def test_an_integer_too_big_for_64_bits_does_not_block_the_device(proxy, alice):
    """One event with a huge number in its content must not make the homeserver's
    response unreadable (which would stall the device forever)."""
    A = alice.user_id
    rid = F.new_room_id("big")
    big = F.message(A, "huge")
    big["content"]["n"] = 123456789012345678901234567890
    alice.queue(F.sync_response(join={rid: F.joined_room(F.room_state(A, "Big numbers"), [big])}))
    c = proxy.client(alice.token)
    resp = c.sync({"lists": {"a": {"ranges": [[0, 9]], "timeline_limit": 1}}})
    ev = resp["rooms"][rid]["timeline"][-1]
    assert ev["event_id"] == big["event_id"]
    assert ev["content"]["body"] == "huge"
    assert float(ev["content"]["n"]) > 1e29


# ---------------------------------------------------------------- malformed events

def _malformed(A):
    no_id = F.message(A, "no id")
    del no_id["event_id"]
    return [{}, {"type": 5}, dict(F.message(A, "empty id"), event_id=""), no_id]


def test_malformed_timeline_events_are_skipped(proxy, alice):
    A = alice.user_id
    rid = F.new_room_id("malformed_tl")
    odd = F.state("", "", A, {"odd": True})
    alice.queue(F.sync_response(join={rid: F.joined_room(F.room_state(A, "Odd"), [odd] + _malformed(A))}))
    resp = snapshot(proxy, alice, "c0", limit=1)
    room = resp["rooms"][rid]
    assert room["joined_count"] == 1
    assert [e["event_id"] for e in room["timeline"]] == [odd["event_id"]]
    # polling went on: a later message arrives
    alice.wait_idle()
    later = F.message(A, "still polling")
    alice.queue(F.sync_response(join={rid: F.joined_room(timeline=[later])}))
    alice.wait_idle()
    resp = snapshot(proxy, alice, "c1", limit=1)
    assert [e["event_id"] for e in resp["rooms"][rid]["timeline"]] == [later["event_id"]]


def test_malformed_state_events_are_skipped(proxy, alice):
    A = alice.user_id
    rid = F.new_room_id("malformed_st")
    odd = F.state("", "", A, {"odd": True})
    msg = F.message(A, "fine")
    alice.queue(F.sync_response(join={rid: F.joined_room(F.room_state(A, "Odd") + [odd] + _malformed(A), [msg])}))
    resp = snapshot(proxy, alice, "c0", limit=1, required_state=[["", ""]])
    room = resp["rooms"][rid]
    assert [e["event_id"] for e in room["timeline"]] == [msg["event_id"]]
    assert [e["event_id"] for e in room["required_state"]] == [odd["event_id"]]
