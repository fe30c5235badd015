"""MSC4186 as its final text words it, next to the deployed dialect: pos/timeout/set_presence in the
body, object-form required_state, range, is_invited, the 100-subscription bound, the final names of
the answer (stripped_state, expanded_timeline, no unread counts), the membership and lists room
fields, and timeline_limit above 50.
(docs/behaviour.md, "Simplified sliding sync", "Final-text requests")"""

import json
import threading
import time

import pytest

import fakehs as F
from helpers import SimplifiedSync, http_request

BOB = "@bob:localhost"


def own_room(alice, label, n_messages=1, extra_state=(), invite=None):
    """A room of alice's own, named label; invite: also an invite to that room ID, in the same sync."""
    rid = F.new_room_id(label.lower())
    A = alice.user_id
    st = F.room_state(A, label) + list(extra_state)
    tl = [F.message(A, "m%d" % i) for i in range(n_messages)]
    inv = {invite: F.invited_room(F.invite_to(BOB, A, room_name="Party"))} if invite else None
    alice.queue(F.sync_response(join={rid: F.joined_room(st, tl)}, invite=inv))
    return rid


def live(alice, rid, *events):
    alice.queue(F.sync_response(join={rid: F.joined_room(timeline=list(events))}))
    alice.wait_idle()


def err(r):
    assert isinstance(r.json, dict) and isinstance(r.json.get("error"), str), r
    return r.status, r.json["errcode"]


def body_sync(c, body, **kw):
    """A final-text request: pos in the body, nothing in the query."""
    b = dict(body)
    if c.pos is not None:
        b["pos"] = c.pos
    r = c.request(b, **kw)
    assert r.status == 200, r
    import msc4186_shape
    msc4186_shape.check_response(r.json)
    c.pos = r.json["pos"]
    return r.json


# ---- pos, timeout, set_presence in the body ----

def test_pos_in_body_continues_the_connection(proxy, alice):
    rid = own_room(alice, "Body")
    c = SimplifiedSync(proxy, alice.token)
    sub = {"room_subscriptions": {rid: {"timeline_limit": 1}}}
    first = body_sync(c, sub)
    assert first["rooms"][rid]["initial"] is True
    ev = F.message(alice.user_id, "later")
    live(alice, rid, ev)
    resp = body_sync(c, sub)
    room = resp["rooms"][rid]
    assert "initial" not in room, "a body pos continues the connection"
    assert [e["event_id"] for e in room["timeline"]] == [ev["event_id"]]
    # A body pos no connection knows is M_UNKNOWN_POS, like a query one.
    assert err(c.request({**sub, "pos": "12345"})) == (400, "M_UNKNOWN_POS")
    # The query's pos wins over the body's.
    r = c.request({**sub, "pos": "12345"}, pos=c.pos)
    assert r.status == 200, r
    assert "initial" not in r.json["rooms"].get(rid, {})


def test_timeout_in_body_long_polls(proxy, alice):
    rid = own_room(alice, "Poll")
    c = SimplifiedSync(proxy, alice.token)
    sub = {"room_subscriptions": {rid: {"timeline_limit": 1}}}
    body_sync(c, sub)
    t0 = time.monotonic()
    resp = body_sync(c, {**sub, "timeout": 1500})
    assert time.monotonic() - t0 >= 1.2, "the body timeout made the request wait"
    assert not resp["rooms"]
    # The query's timeout wins: 0 answers at once.
    t0 = time.monotonic()
    r = c.request({**sub, "pos": c.pos, "timeout": 20000}, timeout=0)
    assert r.status == 200 and time.monotonic() - t0 < 1.0, r


@pytest.mark.parametrize("body", [{"pos": 5}, {"pos": ["1"]}, {"timeout": "1000"}, {"timeout": 1.5},
                                  {"set_presence": "busy"}, {"set_presence": 1}])
def test_bad_body_fields(proxy, alice, body):
    c = SimplifiedSync(proxy, alice.token)
    assert err(c.request(body)) == (400, "M_INVALID_PARAM")


def test_set_presence(proxy, alice):
    c = SimplifiedSync(proxy, alice.token)
    for v in ("online", "offline", "unavailable"):
        assert c.request({"set_presence": v}).status == 200
        assert c.request({}, query={"set_presence": v}).status == 200
    assert err(c.request({}, query={"set_presence": "away"})) == (400, "M_INVALID_PARAM")


def test_more_than_100_subscriptions(proxy, alice):
    c = SimplifiedSync(proxy, alice.token)
    subs = {"!r%d:localhost" % i: {"timeline_limit": 1} for i in range(101)}
    assert err(c.request({"room_subscriptions": subs})) == (400, "M_INVALID_PARAM")
    subs.popitem()
    assert c.request({"room_subscriptions": subs}).status == 200
    lists = {"l%d" % i: {"ranges": [[0, 0]], "timeline_limit": 0} for i in range(101)}
    assert err(c.request({"lists": lists})) == (400, "M_INVALID_PARAM")


# ---- object-form required_state ----

def test_object_required_state_include_exclude_lazy(proxy, alice):
    A = alice.user_id
    rid = F.new_room_id("obj")
    st = F.room_state(A, "Obj") + [F.topic(A, "t"), F.join(BOB), F.join("@carol:localhost")]
    alice.queue(F.sync_response(join={rid: F.joined_room(st, [F.message(BOB, "from bob")])}))
    c = SimplifiedSync(proxy, alice.token)
    rs = {"include": [{}], "exclude": [{"type": "m.room.member"}, {"type": "m.room.topic", "state_key": ""}],
          "lazy_members": True}
    room = body_sync(c, {"room_subscriptions": {rid: {"timeline_limit": 1, "required_state": rs}}})["rooms"][rid]
    got = {(e["type"], e["state_key"]) for e in room["required_state"]}
    assert ("m.room.name", "") in got and ("m.room.create", "") in got
    assert ("m.room.topic", "") not in got, "excluded"
    members = {k for t, k in got if t == "m.room.member"}
    assert members == {BOB}, "members excluded, but the timeline's sender lazily loaded"


def test_object_required_state_types_and_keys(proxy, alice):
    A = alice.user_id
    rid = own_room(alice, "Keys", extra_state=[F.topic(A, "t"), F.join(BOB)])
    c = SimplifiedSync(proxy, alice.token)
    rs = {"include": [{"type": "m.room.member", "state_key": A}, {"type": "m.room.topic"}, {"state_key": ""}],
          "exclude": [{"type": "m.room.join_rules"}]}
    room = c.sync({"room_subscriptions": {rid: {"timeline_limit": 0, "required_state": rs}}})["rooms"][rid]
    got = {(e["type"], e["state_key"]) for e in room["required_state"]}
    assert ("m.room.member", A) in got and ("m.room.member", BOB) not in got
    assert ("m.room.topic", "") in got and ("m.room.name", "") in got and ("m.room.create", "") in got
    assert not any(t == "m.room.join_rules" for t, _ in got)
    for bad in ({"include": {}}, {"include": [5]}, {"include": [{"type": 1}]}, {"exclude": "x"},
                {"lazy_members": "yes"}):
        r = c.request({"room_subscriptions": {rid: {"timeline_limit": 1, "required_state": bad}}})
        assert err(r) == (400, "M_BAD_JSON"), bad


# ---- the answer in the final text's names ----

def test_final_request_gets_final_names(proxy, alice):
    inv = F.new_room_id("inv")
    rid = own_room(alice, "Names", invite=inv)
    c = SimplifiedSync(proxy, alice.token)
    lst = {"range": [0, 9], "timeline_limit": 1, "required_state": {"include": [{"type": "m.room.name"}]}}
    resp = c.sync({"lists": {"all": lst}})
    assert resp["lists"]["all"] == {"count": 2}, "the final text's lists carry only count"
    invite = resp["rooms"][inv]
    assert invite["stripped_state"][-1]["state_key"] == alice.user_id
    assert "invite_state" not in invite
    joined = resp["rooms"][rid]
    for room in (invite, joined):
        assert "notification_count" not in room and "highlight_count" not in room
    # A grown timeline_limit: expanded_timeline.
    live(alice, rid, F.message(alice.user_id, "more"))
    room = c.sync({"lists": {"all": {**lst, "timeline_limit": 3}}})["rooms"][rid]
    assert room.get("expanded_timeline") is True and "unstable_expanded_timeline" not in room
    # The same connection in the deployed dialect: the deployed names.
    live(alice, rid, F.message(alice.user_id, "again"))
    room = c.sync({"lists": {"all": {"ranges": [[0, 9]], "timeline_limit": 5}}})["rooms"][rid]
    assert room.get("unstable_expanded_timeline") is True and "expanded_timeline" not in room
    assert "notification_count" in room


# ---- membership and lists ----

def test_membership_and_lists(proxy, alice):
    A = alice.user_id
    inv = F.new_room_id("inv")
    rid = own_room(alice, "Mine", invite=inv)
    c = SimplifiedSync(proxy, alice.token)
    body = {"lists": {"all": {"ranges": [[0, 9]], "timeline_limit": 1},
                      "joined": {"ranges": [[0, 9]], "timeline_limit": 1, "filters": {"is_invite": False}}},
            "room_subscriptions": {rid: {"timeline_limit": 1}}}
    resp = c.sync(body)
    assert resp["rooms"][rid]["membership"] == "join"
    assert sorted(resp["rooms"][rid]["lists"]) == ["all", "joined"]
    assert resp["rooms"][inv]["membership"] == "invite"
    assert resp["rooms"][inv]["lists"] == ["all"]
    # A live update in a window says its lists; membership only when it changes.
    live(alice, rid, F.message(A, "new"))
    room = c.sync(body)["rooms"][rid]
    assert "membership" not in room and sorted(room["lists"]) == ["all", "joined"]
    # Banned: the room says so, in no list any more.
    alice.queue(F.sync_response(leave={rid: F.left_room(timeline=[F.ban(BOB, A)])}))
    alice.wait_idle()
    resp = c.sync(body)
    assert resp["rooms"][rid]["membership"] == "ban"
    assert "lists" not in resp["rooms"][rid]


# ---- timeline_limit above 50 ----

def test_timeline_limit_100(proxy, alice):
    rid = own_room(alice, "Long", n_messages=120)
    c = SimplifiedSync(proxy, alice.token)
    room = c.sync({"room_subscriptions": {rid: {"timeline_limit": 100}}})["rooms"][rid]
    assert len(room["timeline"]) == 100
    assert room["limited"] is True
    assert room["timeline"][-1]["content"]["body"] == "m119"
    assert room.get("prev_batch")


def test_timeline_limit_bounded_by_window(proxy, alice):
    """Above 50, a list's limit is spread over its window (10,000 events at most)."""
    rid = own_room(alice, "Wide", n_messages=120)
    c = SimplifiedSync(proxy, alice.token)
    room = c.sync({"lists": {"all": {"ranges": [[0, 199]], "timeline_limit": 1000}}})["rooms"][rid]
    assert len(room["timeline"]) == 50, "200 rooms: 50 each"
    c.reset()
    room = c.sync({"lists": {"all": {"ranges": [[0, 99]], "timeline_limit": 1000}}})["rooms"][rid]
    assert len(room["timeline"]) == 100, "100 rooms: 100 each"
