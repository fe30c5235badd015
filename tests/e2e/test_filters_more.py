"""More list filters (docs/behaviour.md, "Filters"): is_encrypted, room_name_like, room_types /
not_room_types, is_tombstoned, spaces changes; the sticky merge of filters ("Sticky parameters");
bump_event_types edge cases and what recency may never reveal ("Timestamps",
"Recency and bump_event_types")."""

import time

import pytest

from helpers import list_ops, sync_op_room_ids
import fakehs as F


def ids_of(resp, key):
    return set(sync_op_room_ids(resp, key))


# ---------------------------------------------------------------- is_encrypted

def test_is_encrypted(proxy, alice):
    A = alice.user_id
    enc, plain = F.new_room_id("enc"), F.new_room_id("plain")
    alice.queue(F.sync_response(join={
        enc: F.joined_room(F.room_state(A, "Vault", encrypted=True), [F.message(A, "sealed")]),
        plain: F.joined_room(F.room_state(A, "Lobby"), [F.message(A, "open")]),
    }))
    c = proxy.client(alice.token)
    resp = c.sync({"lists": {"enc": {"ranges": [[0, 1]], "filters": {"is_encrypted": True}},
                             "noenc": {"ranges": [[0, 1]], "filters": {"is_encrypted": False}}}})
    assert sync_op_room_ids(resp, "enc") == [enc]
    assert sync_op_room_ids(resp, "noenc") == [plain]
    alice.wait_idle()

    # a connection that only lists encrypted rooms hears nothing of the plain one
    only = proxy.client(alice.token)
    only.sync({"conn_id": "only", "lists": {"enc": {"ranges": [[0, 9]], "filters": {"is_encrypted": True},
                                                    "timeline_limit": 1}}})
    alice.queue(F.sync_response(join={plain: F.joined_room(timeline=[F.message(A, "for the lobby")])}))
    alice.wait_idle()
    sealed = F.message(A, "for the vault")
    alice.queue(F.sync_response(join={enc: F.joined_room(timeline=[sealed])}))
    alice.wait_idle()
    resp = only.sync({"conn_id": "only"}, timeout=5000)
    assert set(resp["rooms"]) == {enc}
    assert resp["rooms"][enc]["timeline"] == [sealed]
    resp = c.sync({}, timeout=5000)   # (the plain room is now newest for c's lists too)
    alice.wait_idle()

    # the plain room turns on encryption
    alice.queue(F.sync_response(join={plain: F.joined_room(timeline=[F.encryption(A)])}))
    alice.wait_idle()
    resp = c.sync({}, timeout=5000)
    assert resp["lists"]["enc"]["count"] == 2
    assert list_ops(resp, "enc") == [{"op": "DELETE", "index": 1}, {"op": "INSERT", "index": 0, "room_id": plain}]
    assert resp["lists"]["noenc"]["count"] == 0
    assert list_ops(resp, "noenc") == [{"op": "DELETE", "index": 0}]

    fresh = proxy.client(alice.token).sync({"conn_id": "fresh", "lists": {
        "enc": {"ranges": [[0, 1]], "filters": {"is_encrypted": True}}}})
    assert list_ops(fresh, "enc") == [{"op": "SYNC", "range": [0, 1], "room_ids": [plain, enc]}]


def test_is_encrypted_for_invites_reads_the_invite_state(proxy, alice):
    carol = "@carol:localhost"
    secret, open_ = F.new_room_id("encinv"), F.new_room_id("plaininv")
    alice.queue(F.sync_response(invite={
        secret: F.invited_room(F.invite_to(carol, alice.user_id, room_name="Secret", encrypted=True)),
        open_: F.invited_room(F.invite_to(carol, alice.user_id, room_name="Open")),
    }))
    resp = proxy.client(alice.token).sync({"lists": {
        "enc": {"ranges": [[0, 9]], "filters": {"is_encrypted": True}},
        "noenc": {"ranges": [[0, 9]], "filters": {"is_encrypted": False}}}})
    assert sync_op_room_ids(resp, "enc") == [secret]
    assert sync_op_room_ids(resp, "noenc") == [open_]


def test_multiple_lists_and_a_second_window(proxy, alice):
    A = alice.user_id
    enc_ids, plain_ids, join = [], [], {}
    for i in range(8):
        rid = F.new_room_id("ml%d" % i)
        encrypted = i % 2 == 0
        (enc_ids if encrypted else plain_ids).append(rid)
        join[rid] = F.joined_room(F.room_state(A, "ML %d" % i, encrypted=encrypted), [F.message(A, "m")])
    alice.queue(F.sync_response(join=join))
    enc_ids.reverse()
    plain_ids.reverse()
    c = proxy.client(alice.token)
    resp = c.sync({"lists": {"enc": {"ranges": [[0, 1]], "filters": {"is_encrypted": True}},
                             "plain": {"ranges": [[0, 1]], "filters": {"is_encrypted": False}}}})
    assert sync_op_room_ids(resp, "enc") == enc_ids[:2]
    assert sync_op_room_ids(resp, "plain") == plain_ids[:2]
    resp = c.sync({"lists": {"enc": {"ranges": [[0, 1], [2, 3]]}}})
    assert list_ops(resp, "enc") == [{"op": "SYNC", "range": [2, 3], "room_ids": enc_ids[2:4]}]
    assert not list_ops(resp, "plain")
    assert set(resp["rooms"]) == set(enc_ids[2:4])


# ---------------------------------------------------------------- room_name_like

def test_room_name_like(proxy, alice, bob):
    A, B = alice.user_id, bob.user_id
    names = ["mango", "GRAPE", "Papaya", "lychee", "CarAmbola", "bAnAnA", "plum"]
    ids, join = {}, {}
    for n in names:
        rid = F.new_room_id("nm")
        ids[n] = rid
        join[rid] = F.joined_room(F.room_state(A, n), [F.message(A, n)])
    dm = F.new_room_id("nmdm")   # no name: called after bob's displayname
    join[dm] = F.joined_room(F.room_state(A) + [F.join(B, displayname="Bobby Smith")], [F.message(B, "hi")])
    alice.queue(F.sync_response(join=join))
    by_recency = [dm] + [ids[n] for n in reversed(names)]
    with_a = [r for r in by_recency if r in {ids[n] for n in ("mango", "GRAPE", "Papaya", "CarAmbola", "bAnAnA")}]

    c = proxy.client(alice.token)
    resp = c.sync({"lists": {"a": {"ranges": [[0, 9]], "filters": {"room_name_like": "a"}},
                             "bob": {"ranges": [[0, 9]], "filters": {"room_name_like": "BOBBY"}},
                             "all": {"ranges": [[0, 9]], "filters": {"room_name_like": ""}}}})
    assert resp["lists"]["a"]["count"] == 5
    assert list_ops(resp, "a") == [{"op": "SYNC", "range": [0, 4], "room_ids": with_a}]
    assert sync_op_room_ids(resp, "bob") == [dm]
    assert sync_op_room_ids(resp, "all") == by_recency

    resp = c.sync({"lists": {"a": {"filters": {"room_name_like": "aN"}}}})
    assert resp["lists"]["a"]["count"] == 2
    assert list_ops(resp, "a") == [
        {"op": "INVALIDATE", "range": [0, 4]},
        {"op": "SYNC", "range": [0, 1], "room_ids": [ids["bAnAnA"], ids["mango"]]},
    ]
    assert set(resp["rooms"]) == {ids["bAnAnA"], ids["mango"]}

    # a rename moves a room into the filter live
    alice.wait_idle()
    alice.queue(F.sync_response(join={ids["plum"]: F.joined_room(timeline=[F.name(A, "Plantain")])}))
    alice.wait_idle()
    resp = c.sync({}, timeout=5000)
    assert resp["lists"]["a"]["count"] == 3
    assert list_ops(resp, "a") == [{"op": "DELETE", "index": 2},
                                 {"op": "INSERT", "index": 0, "room_id": ids["plum"]}]
    assert resp["rooms"][ids["plum"]]["name"] == "Plantain"



def test_room_name_like_and_by_name_for_every_script(proxy, alice):
    """Case-insensitive for every script, not ASCII only: Greek with accents, German ß,
    Turkish dotted/dotless i, Cyrillic; by_name is alphabetical ignoring case and accents."""
    A = alice.user_id
    names = ["αθήνα 2004", "Große Straße", "İzmir", "МОСКВА", "émile", "Zoe", "Ärger", "athens"]
    ids, join = {}, {}
    for n in names:
        rid = F.new_room_id("uni")
        ids[n] = rid
        join[rid] = F.joined_room(F.room_state(A, n), [F.message(A, n)])
    alice.queue(F.sync_response(join=join))
    c = proxy.client(alice.token)
    flt = lambda like: {"ranges": [[0, 9]], "filters": {"room_name_like": like}}
    resp = c.sync({"lists": {"greek": flt("ΑΘΉΝΑ"), "sz": flt("STRASSE"), "tr": flt("izmir"),
                             "ru": flt("москва"), "e": flt("ÉMILE"),
                             "sorted": {"ranges": [[0, 9]], "sort": ["by_name"]}}})
    assert sync_op_room_ids(resp, "greek") == [ids["αθήνα 2004"]]
    assert sync_op_room_ids(resp, "sz") == [ids["Große Straße"]]
    assert sync_op_room_ids(resp, "tr") == [ids["İzmir"]]
    assert sync_op_room_ids(resp, "ru") == [ids["МОСКВА"]]
    assert sync_op_room_ids(resp, "e") == [ids["émile"]]
    order = ["Ärger", "athens", "émile", "Große Straße", "İzmir", "Zoe", "αθήνα 2004", "МОСКВА"]
    assert sync_op_room_ids(resp, "sorted") == [ids[n] for n in order]

# ---------------------------------------------------------------- room_types

@pytest.fixture
def typed_rooms(alice):
    A = alice.user_id
    space, plain, other = F.new_room_id("tspace"), F.new_room_id("tplain"), F.new_room_id("tother")
    alice.queue(F.sync_response(join={
        space: F.joined_room(F.room_state(A, "A space", room_type="m.space"), [F.message(A, "s")]),
        plain: F.joined_room(F.room_state(A, "A room"), [F.message(A, "p")]),
        other: F.joined_room(F.room_state(A, "Something", room_type="org.example.else"), [F.message(A, "o")]),
    }))
    return {"space": space, "plain": plain, "other": other}


@pytest.mark.parametrize("filters,want", [
    ({"room_types": ["m.space"]}, {"space"}),
    ({"room_types": [None]}, {"plain"}),
    ({"room_types": [None, "org.example.else"]}, {"plain", "other"}),
    ({"not_room_types": ["m.space"]}, {"plain", "other"}),
    ({"not_room_types": [None]}, {"space", "other"}),
    ({"room_types": ["m.space", "org.example.else"], "not_room_types": ["m.space"]}, {"other"}),
    ({"room_types": ["org.example.nothing"]}, set()),
    ({"not_room_types": ["org.example.nothing"]}, {"space", "plain", "other"}),
])
def test_room_types(proxy, alice, typed_rooms, filters, want):
    resp = proxy.client(alice.token).sync({"lists": {"a": {"ranges": [[0, 9]], "filters": filters}}})
    assert resp["lists"]["a"]["count"] == len(want)
    assert ids_of(resp, "a") == {typed_rooms[k] for k in want}
    assert set(resp.get("rooms") or {}) == {typed_rooms[k] for k in want}


# ---------------------------------------------------------------- is_tombstoned

def test_is_tombstoned(proxy, alice):
    A = alice.user_id
    dead, alive, blank = F.new_room_id("dead"), F.new_room_id("alive"), F.new_room_id("blank")
    elsewhere = F.new_room_id("elsewhere")   # alice is not in the replacement
    alice.queue(F.sync_response(join={
        dead: F.joined_room(F.room_state(A, "Dead"), [F.message(A, "bye"), F.tombstone(A, elsewhere)]),
        alive: F.joined_room(F.room_state(A, "Alive"), [F.message(A, "still here")]),
        blank: F.joined_room(F.room_state(A, "Blank"), [F.tombstone(A, "")]),
    }))
    c = proxy.client(alice.token)
    resp = c.sync({"lists": {"yes": {"ranges": [[0, 9]], "filters": {"is_tombstoned": True}},
                             "no": {"ranges": [[0, 9]], "filters": {"is_tombstoned": False}}}})
    assert sync_op_room_ids(resp, "yes") == [dead]
    assert ids_of(resp, "no") == {alive, blank}
    alice.wait_idle()

    # a tombstone arriving live moves the room between the lists
    alice.queue(F.sync_response(join={alive: F.joined_room(timeline=[F.tombstone(A, elsewhere)])}))
    alice.wait_idle()
    resp = c.sync({}, timeout=5000)
    assert resp["lists"]["yes"]["count"] == 2
    assert list_ops(resp, "yes") == [{"op": "DELETE", "index": 1}, {"op": "INSERT", "index": 0, "room_id": alive}]
    assert resp["lists"]["no"]["count"] == 1


# ---------------------------------------------------------------- sticky filters

def test_a_new_filters_object_replaces_the_old_one(proxy, alice):
    A = alice.user_id
    enc_x, enc_y, plain_y = F.new_room_id("ex"), F.new_room_id("ey"), F.new_room_id("py")
    alice.queue(F.sync_response(join={
        enc_x: F.joined_room(F.room_state(A, "xylophone", encrypted=True), [F.message(A, "1")]),
        enc_y: F.joined_room(F.room_state(A, "yodel", encrypted=True), [F.message(A, "2")]),
        plain_y: F.joined_room(F.room_state(A, "yak"), [F.message(A, "3")]),
    }))
    c = proxy.client(alice.token)
    resp = c.sync({"lists": {"a": {"ranges": [[0, 9]], "filters": {"is_encrypted": True, "room_name_like": "y"}}}})
    assert sync_op_room_ids(resp, "a") == [enc_y, enc_x]   # "xylophone" has a y too
    # only room_name_like now: is_encrypted is gone, not merged
    resp = c.sync({"lists": {"a": {"filters": {"room_name_like": "y"}}}})
    assert list_ops(resp, "a") == [{"op": "INVALIDATE", "range": [0, 1]},
                                 {"op": "SYNC", "range": [0, 2], "room_ids": [plain_y, enc_y, enc_x]}]
    # a request without filters keeps them
    resp = c.sync({"lists": {"a": {"ranges": [[0, 9]]}}}, timeout=100)
    assert resp["lists"]["a"]["count"] == 3 and not list_ops(resp, "a")
    resp = c.sync({"lists": {"a": {"filters": {"room_name_like": "yo"}}}})
    assert sync_op_room_ids(resp, "a") == [enc_y]
    # an empty filters object filters nothing any more, and is a change
    resp = c.sync({"lists": {"a": {"filters": {}}}})
    assert list_ops(resp, "a") == [{"op": "INVALIDATE", "range": [0, 0]},
                                 {"op": "SYNC", "range": [0, 2], "room_ids": [plain_y, enc_y, enc_x]}]


# ---------------------------------------------------------------- spaces

def test_spaces_filter_changes(proxy, alice):
    A = alice.user_id
    sa, sd = F.new_room_id("spa"), F.new_room_id("spd")
    c1, c2, c3 = F.new_room_id("sc1"), F.new_room_id("sc2"), F.new_room_id("sc3")
    unknown = F.new_room_id("nowhere")
    alice.queue(F.sync_response(join={
        c1: F.joined_room(F.room_state(A, "Child 1"), [F.message(A, "1")]),
        c2: F.joined_room(F.room_state(A, "Child 2"), [F.message(A, "2")]),
        c3: F.joined_room(F.room_state(A, "Child 3"), [F.message(A, "3")]),
        sa: F.joined_room(F.room_state(A, "Space A", room_type="m.space")
                          + [F.space_child(A, c1), F.space_child(A, c2)], [F.message(A, "a")]),
        sd: F.joined_room(F.room_state(A, "Space D", room_type="m.space") + [F.space_child(A, c3)],
                          [F.message(A, "d")]),
    }))
    c = proxy.client(alice.token)
    resp = c.sync({"lists": {"a": {"ranges": [[0, 9]], "filters": {"spaces": [sa]}},
                             "ad": {"ranges": [[0, 9]], "filters": {"spaces": [sa, sd]}}}})
    assert sync_op_room_ids(resp, "a") == [c2, c1]
    assert sync_op_room_ids(resp, "ad") == [c3, c2, c1]
    alice.wait_idle()

    # c2 is taken out of space A (empty content), then put back
    alice.queue(F.sync_response(join={sa: F.joined_room(timeline=[F.state("m.space.child", c2, A, {})])}))
    alice.wait_idle()
    resp = c.sync({}, timeout=5000)
    assert resp["lists"]["a"]["count"] == 1
    assert list_ops(resp, "a") == [{"op": "DELETE", "index": 0}]
    assert list_ops(resp, "ad") == [{"op": "DELETE", "index": 1}]
    alice.queue(F.sync_response(join={sa: F.joined_room(timeline=[F.space_child(A, c2)])}))
    alice.wait_idle()
    resp = c.sync({}, timeout=5000)
    assert resp["lists"]["a"]["count"] == 2
    assert list_ops(resp, "a") == [{"op": "DELETE", "index": 1}, {"op": "INSERT", "index": 0, "room_id": c2}]

    # a child that is no room alice knows: fine, and the event is in the space's timeline
    ev = F.space_child(A, unknown)
    alice.queue(F.sync_response(join={sa: F.joined_room(timeline=[ev])}))
    alice.wait_idle()
    resp = c.sync({"room_subscriptions": {sa: {"timeline_limit": 1}}}, timeout=5000)
    assert resp["rooms"][sa]["timeline"] == [ev]
    assert resp["lists"]["a"]["count"] == 2
    assert unknown not in resp["rooms"]

    # switching the space on pos
    resp = c.sync({"lists": {"a": {"filters": {"spaces": [sd]}}}})
    assert list_ops(resp, "a") == [{"op": "INVALIDATE", "range": [0, 1]},
                                 {"op": "SYNC", "range": [0, 0], "room_ids": [c3]}]
    assert resp["lists"]["a"]["count"] == 1


def test_invites_to_spaces_and_not_room_types(proxy, alice):
    carol = "@carol:localhost"
    space_inv, room_inv = F.new_room_id("invspace"), F.new_room_id("invroom")
    sp = [F.create(carol, room_type="m.space"), F.join(carol), F.name(carol, "Carol's space"),
          F.invite(carol, alice.user_id)]
    alice.queue(F.sync_response(invite={space_inv: F.invited_room(sp),
                                        room_inv: F.invited_room(F.invite_to(carol, alice.user_id, "Party"))}))
    resp = proxy.client(alice.token).sync({"lists": {
        "rooms": {"ranges": [[0, 9]], "filters": {"is_invite": True, "not_room_types": ["m.space"]}},
        "spaces": {"ranges": [[0, 9]], "filters": {"is_invite": True, "room_types": ["m.space"]}}}})
    assert sync_op_room_ids(resp, "rooms") == [room_inv]
    assert sync_op_room_ids(resp, "spaces") == [space_inv]


# ---------------------------------------------------------------- bump_event_types

SECRET = "org.example.secret"


@pytest.mark.parametrize("how", ["join", "invite"])
def test_bump_event_types_reveal_nothing_from_before_the_join(proxy, alice, bob, how):
    A, B = alice.user_id, bob.user_id
    r1, r2 = F.new_room_id("leak1"), F.new_room_id("leak2")
    # r1's secret is older than r2's; bob joins (or is invited to) r1 after both
    st1 = F.room_state(A, "Before") + [F.state(SECRET, "", A, {"v": 1})]
    st2 = F.room_state(A, "Shared") + [F.join(B)]
    sec2 = F.state(SECRET, "", A, {"v": 2})
    alice.queue(F.sync_response(join={r1: F.joined_room(st1, [F.message(A, "r1")]),
                                      r2: F.joined_room(st2, [sec2])}))
    proxy.client(alice.token).sync({"lists": {"a": {"ranges": [[0, 9]]}}})
    alice.wait_idle()
    if how == "join":
        bjoin = F.join(B)
        body = F.sync_response(join={r1: F.joined_room(st1, [bjoin]), r2: F.joined_room(st2, [sec2])})
        floor = bjoin["origin_server_ts"]
    else:
        body = F.sync_response(join={r2: F.joined_room(st2, [sec2])},
                               invite={r1: F.invited_room(st1[:2] + [F.invite(A, B)])})
        # an invite is dated when it is seen: make sure that is after r2's secret
        while time.time() * 1000 <= sec2["origin_server_ts"] + 1:
            time.sleep(0.01)
        floor = sec2["origin_server_ts"] + 1
    bob.queue(body)
    resp = proxy.client(bob.token).sync({"lists": {"a": {"ranges": [[0, 1]], "bump_event_types": [SECRET]}}})
    assert list_ops(resp, "a") == [{"op": "SYNC", "range": [0, 1], "room_ids": [r1, r2]}]
    assert resp["rooms"][r1]["timestamp"] >= floor
    assert resp["rooms"][r2]["timestamp"] == sec2["origin_server_ts"]


def test_bump_event_types_order_on_a_fresh_connection(proxy, alice, bob):
    A, B = alice.user_id, bob.user_id
    r1, r2 = F.new_room_id("bt1"), F.new_room_id("bt2")
    st1 = F.room_state(A, "First") + [F.join(B, displayname="Bob")]
    st2 = F.room_state(A, "Second")
    topic1 = F.topic(A, "a topic")
    msg2 = F.message(A, "a message")
    rename1 = F.join(B, displayname="Robert")
    react2 = F.event("m.reaction", A, {"m.relates_to": {"rel_type": "m.annotation",
                                                        "event_id": msg2["event_id"], "key": "x"}})
    alice.queue(F.sync_response(join={r1: F.joined_room(st1, [topic1, rename1]),
                                      r2: F.joined_room(st2, [msg2, react2])}))
    c = proxy.client(alice.token)
    resp = c.sync({"lists": {
        "topic": {"ranges": [[0, 9]], "bump_event_types": ["m.room.topic"]},
        "any": {"ranges": [[0, 9]], "bump_event_types": []},
        "topic_or_msg": {"ranges": [[0, 9]], "bump_event_types": ["m.room.topic", "m.room.message"]},
        "member": {"ranges": [[0, 9]], "bump_event_types": ["m.room.member"]},
        "nothing": {"ranges": [[0, 9]], "bump_event_types": ["org.example.doesnotexist"]},
    }})
    want = {"topic": [r1, r2], "any": [r2, r1], "topic_or_msg": [r2, r1], "member": [r1, r2],
            "nothing": [r2, r1]}
    for key, order in want.items():
        assert sync_op_room_ids(resp, key) == order, key


def test_bump_event_types_live(proxy, alice):
    A = alice.user_id
    charlie = "@charlie:localhost"
    s1, s2 = F.new_room_id("bl1"), F.new_room_id("bl2")
    alice.queue(F.sync_response(join={
        s1: F.joined_room(F.room_state(A, "Older"), [F.message(A, "1")]),
        s2: F.joined_room(F.room_state(A, "Newer"), [F.message(A, "2")]),
    }))
    c = proxy.client(alice.token)
    resp = c.sync({"lists": {
        "msgs": {"ranges": [[0, 9]], "bump_event_types": ["m.room.message", "m.room.encrypted"]},
        "members": {"ranges": [[0, 9]], "bump_event_types": ["m.room.member"]},
        "plain": {"ranges": [[0, 9]]},
    }})
    for key in ("msgs", "members", "plain"):
        assert sync_op_room_ids(resp, key) == [s2, s1], key
    alice.wait_idle()

    cjoin = F.join(charlie)
    alice.queue(F.sync_response(join={s1: F.joined_room(timeline=[cjoin])}))
    alice.wait_idle()
    resp = c.sync({}, timeout=5000)
    assert not list_ops(resp, "msgs")
    moved = [{"op": "DELETE", "index": 1}, {"op": "INSERT", "index": 0, "room_id": s1}]
    assert list_ops(resp, "members") == moved
    assert list_ops(resp, "plain") == moved
    assert resp["rooms"][s1]["timeline"] == [cjoin]

    # counts and receipts move nothing, in any list
    mine = F.message(A, "mine")   # (s2 back on top in msgs and plain first)
    alice.queue(F.sync_response(join={s2: F.joined_room(timeline=[mine])}))
    alice.wait_idle()
    resp = c.sync({}, timeout=5000)
    assert not list_ops(resp, "msgs")
    assert list_ops(resp, "plain") == moved[:1] + [{"op": "INSERT", "index": 0, "room_id": s2}]
    assert not list_ops(resp, "members")
    alice.queue(F.sync_response(join={
        s1: F.joined_room(notification_count=3, highlight_count=1,
                          ephemeral=[F.receipt(cjoin["event_id"], charlie)])}))
    alice.wait_idle()
    resp = c.sync({}, timeout=5000)
    assert resp["rooms"][s1]["notification_count"] == 3
    for key in ("msgs", "members", "plain"):
        assert not list_ops(resp, key), key


# ---------------------------------------------------------------- is_dm

def test_dm_lists_follow_messages_and_m_direct(proxy, alice):
    A = alice.user_id
    friends = ["@f%d:localhost" % i for i in range(3)]
    dms, groups, join = [], [], {}
    for i, f in enumerate(friends):
        # a DM and a group room per friend, interleaved: dm0 g0 dm1 g1 dm2 g2 (oldest first)
        dm, grp = F.new_room_id("dm%d" % i), F.new_room_id("grp%d" % i)
        join[dm] = F.joined_room(F.room_state(A) + [F.join(f)], [F.message(f, "psst")])
        join[grp] = F.joined_room(F.room_state(A, "Group %d" % i) + [F.join(f)], [F.message(f, "hey all")])
        dms.insert(0, dm)
        groups.insert(0, grp)
    direct = F.account_data("m.direct", {f: [dms[2 - i]] for i, f in enumerate(friends)})
    alice.queue(F.sync_response(join=join, account_data=[direct]))
    c = proxy.client(alice.token)
    resp = c.sync({"lists": {"dm": {"ranges": [[0, 9]], "filters": {"is_dm": True}, "timeline_limit": 1},
                             "nodm": {"ranges": [[0, 9]], "filters": {"is_dm": False}}}})
    assert sync_op_room_ids(resp, "dm") == dms
    assert sync_op_room_ids(resp, "nodm") == groups
    assert all(resp["rooms"][r].get("is_dm") is True for r in dms)
    alice.wait_idle()

    ev = F.message(A, "to the oldest dm")
    alice.queue(F.sync_response(join={dms[2]: F.joined_room(timeline=[ev])}))
    alice.wait_idle()
    resp = c.sync({}, timeout=5000)
    assert list_ops(resp, "dm") == [{"op": "DELETE", "index": 2}, {"op": "INSERT", "index": 0, "room_id": dms[2]}]
    assert resp["lists"]["nodm"]["count"] == 3
    assert not list_ops(resp, "nodm")
    assert resp["rooms"][dms[2]]["timeline"] == [ev]

    # the oldest group becomes a DM too: it moves between the lists at once
    direct2 = F.account_data("m.direct", {friends[0]: [dms[2], groups[2]],
                                          friends[1]: [dms[1]], friends[2]: [dms[0]]})
    alice.queue(F.sync_response(account_data=[direct2]))
    alice.wait_idle()
    resp = c.sync({}, timeout=5000)
    assert resp["lists"]["dm"]["count"] == 4
    dm_ops = list_ops(resp, "dm")
    assert dm_ops[-1]["op"] == "INSERT" and dm_ops[-1]["room_id"] == groups[2], dm_ops
    assert resp["lists"]["nodm"]["count"] == 2
    assert list_ops(resp, "nodm") == [{"op": "DELETE", "index": 2}]
    assert resp["rooms"][groups[2]]["initial"] is True
    at = dm_ops[-1]["index"]
    # a message in it then moves it to the top of the DM list only
    ev2 = F.message(A, "now a dm")
    alice.queue(F.sync_response(join={groups[2]: F.joined_room(timeline=[ev2])}))
    alice.wait_idle()
    resp = c.sync({}, timeout=5000)
    if at == 0:
        assert not list_ops(resp, "dm")
    else:
        assert list_ops(resp, "dm") == [{"op": "DELETE", "index": at}, {"op": "INSERT", "index": 0, "room_id": groups[2]}]
    assert not list_ops(resp, "nodm")
    assert resp["rooms"][groups[2]]["timeline"] == [ev2]


def apply_ops(window, ops):
    """A client's view of a list whose window covers all of it, after `ops`."""
    view = list(window)
    for op in ops or []:
        if op["op"] == "SYNC":
            a, b = op["range"]
            del view[a:b + 1]
            view[a:a] = op.get("room_ids", [])
        elif op["op"] == "INVALIDATE":
            a, b = op["range"]
            del view[a:b + 1]
        elif op["op"] == "DELETE":
            del view[op["index"]]
        elif op["op"] == "INSERT":
            view.insert(op["index"], op["room_id"])
    return view


def test_rebuilding_a_list_never_brings_back_a_left_room(proxy, alice):
    A = alice.user_id
    stay, go = F.new_room_id("stay"), F.new_room_id("go")
    alice.queue(F.sync_response(join={
        stay: F.joined_room(F.room_state(A, "Stay here"), [F.message(A, "1")]),
        go: F.joined_room(F.room_state(A, "Go away"), [F.message(A, "2")]),
    }))
    c = proxy.client(alice.token)
    resp = c.sync({"lists": {"a": {"ranges": [[0, 9]], "filters": {"room_name_like": "stay"}}}})
    assert sync_op_room_ids(resp, "a") == [stay]
    alice.wait_idle()

    # the leave and a filter change in one response: the client ends with [stay]
    alice.queue(F.sync_response(leave={go: F.left_room(timeline=[F.leave(A)])}))
    alice.wait_idle()
    resp = c.sync({"lists": {"a": {"filters": {"room_name_like": "a"}}}})
    assert resp["lists"]["a"]["count"] == 1
    assert apply_ops([stay], list_ops(resp, "a")) == [stay]
    assert (resp["rooms"].get(go) or {}).get("initial") is None

    # later rebuilds (the leave long processed) never list it again
    resp = c.sync({"lists": {"a": {"filters": {"room_name_like": ""}}}})
    assert list_ops(resp, "a") == [{"op": "INVALIDATE", "range": [0, 0]},
                                 {"op": "SYNC", "range": [0, 0], "room_ids": [stay]}]
    assert set(resp["rooms"]) == {stay}
    resp = c.sync({"lists": {"a": {"sort": ["by_name"], "filters": {}}}})
    assert list_ops(resp, "a") == [{"op": "INVALIDATE", "range": [0, 0]},
                                 {"op": "SYNC", "range": [0, 0], "room_ids": [stay]}]
    fresh = proxy.client(alice.token).sync({"conn_id": "fresh", "lists": {"a": {"ranges": [[0, 9]]}}})
    assert sync_op_room_ids(fresh, "a") == [stay]


def test_bump_event_types_set_on_an_existing_list_apply_from_then_on(proxy, alice):
    A = alice.user_id
    rooms, join = {}, {}
    for nm in ("Oldest", "Middle", "Newest"):
        rooms[nm] = F.new_room_id(nm.lower())
        join[rooms[nm]] = F.joined_room(F.room_state(A, nm), [F.message(A, nm)])
    alice.queue(F.sync_response(join=join))
    old, mid, new = rooms["Oldest"], rooms["Middle"], rooms["Newest"]
    c = proxy.client(alice.token)
    resp = c.sync({"lists": {"a": {"ranges": [[0, 9]]}}})
    assert sync_op_room_ids(resp, "a") == [new, mid, old]
    alice.wait_idle()
    resp = c.sync({"lists": {"a": {"bump_event_types": ["m.room.message"]}}}, timeout=100)
    assert not list_ops(resp, "a")

    # a reaction no longer moves a room, a message does
    alice.queue(F.sync_response(join={old: F.joined_room(timeline=[F.event("m.reaction", A, {})])}))
    alice.wait_idle()
    resp = c.sync({}, timeout=5000)
    assert not list_ops(resp, "a")
    alice.queue(F.sync_response(join={mid: F.joined_room(timeline=[F.message(A, "up")])}))
    alice.wait_idle()
    resp = c.sync({}, timeout=5000)
    assert list_ops(resp, "a") == [{"op": "DELETE", "index": 1}, {"op": "INSERT", "index": 0, "room_id": mid}]

    # without bump types again, the latest event of any type counts
    resp = c.sync({"lists": {"a": {"bump_event_types": []}}}, timeout=100)
    alice.queue(F.sync_response(join={old: F.joined_room(timeline=[F.event("m.reaction", A, {})])}))
    alice.wait_idle()
    resp = c.sync({}, timeout=5000)
    assert list_ops(resp, "a") == [{"op": "DELETE", "index": 2}, {"op": "INSERT", "index": 0, "room_id": old}]
