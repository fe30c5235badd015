"""List operations driven by requests and live updates: sort/range/filter changes
(INVALIDATE + SYNC), several windows, lists added and deleted mid-connection,
timeline_limit/required_state changes, overlapping lists, slow_get_all_rooms and the
notification sorts (docs/behaviour.md, "Sticky parameters", "Request-driven ops",
"Live ops", "slow_get_all_rooms", "Combined subscriptions", "Sorts")."""

import pytest

from helpers import list_ops, sync_op_room_ids
import fakehs as F


def make_rooms(user, names, msgs=1, prefix="lo"):
    """Joined rooms for `user` created one after the other (so the last one is the most
    recent), each with `msgs` messages. Returns (ids newest first, {id: timeline})."""
    U = user.user_id
    ids, timelines, join = [], {}, {}
    for i, n in enumerate(names):
        rid = F.new_room_id("%s%d" % (prefix, i))
        st = F.room_state(U, n)
        tl = [F.message(U, "%s #%d" % (n or rid, k)) for k in range(msgs)]
        join[rid] = F.joined_room(st, tl)
        ids.append(rid)
        timelines[rid] = tl
    user.queue(F.sync_response(join=join))
    return ids[::-1], timelines


def send(user, rid, text="ping", **counts):
    ev = F.message(user.user_id, text)
    user.queue(F.sync_response(join={rid: F.joined_room(timeline=[ev], **counts)}))
    user.wait_idle()
    return ev


def pairs(events):
    return {(e["type"], e["state_key"]) for e in events or []}


# ---------------------------------------------------------------- sort changes

def test_sort_change_invalidates_and_resyncs_the_window(proxy, alice):
    # recency order: Quince, Damson, Yuzu, Medlar (Quince newest)
    order, _ = make_rooms(alice, ["Medlar", "Yuzu", "Damson", "Quince"])
    quince, damson, yuzu, medlar = order
    c = proxy.client(alice.token)
    resp = c.sync({"lists": {"a": {"ranges": [[0, 20]], "sort": ["by_recency"]}}})
    assert list_ops(resp, "a") == [{"op": "SYNC", "range": [0, 3], "room_ids": order}]
    alice.wait_idle()

    resp = c.sync({"txn_id": "sorted", "lists": {"a": {"sort": ["by_name"]}}})
    assert resp["txn_id"] == "sorted"
    assert resp["lists"]["a"]["count"] == 4
    assert list_ops(resp, "a") == [
        {"op": "INVALIDATE", "range": [0, 3]},
        {"op": "SYNC", "range": [0, 3], "room_ids": [damson, medlar, quince, yuzu]},
    ]
    assert set(resp["rooms"]) == set(order)
    assert all(resp["rooms"][r].get("initial") is True for r in order)

    # the same sort again: nothing
    resp = c.sync({"lists": {"a": {"sort": ["by_name"]}}}, timeout=100)
    assert not list_ops(resp, "a")
    assert not resp.get("rooms")


def test_sort_change_with_a_range_beyond_the_end(proxy, alice):
    order, _ = make_rooms(alice, ["Cedar", "Birch", "Alder"])   # newest: Alder
    alder, birch, cedar = order
    c = proxy.client(alice.token)
    resp = c.sync({"lists": {"a": {"ranges": [[0, 1], [8, 9]], "sort": ["by_name"], "timeline_limit": 1}}})
    # by_name puts "Alder" first (the newest room) and "Birch" second
    assert list_ops(resp, "a") == [{"op": "SYNC", "range": [0, 1], "room_ids": [alder, birch]}]
    alice.wait_idle()
    send(alice, cedar, "cedar wakes up")
    resp = c.sync({}, timeout=100)
    assert not list_ops(resp, "a"), "cedar (by_name index 2) is outside every window"
    assert not resp.get("rooms")

    resp = c.sync({"lists": {"a": {"sort": ["by_recency"]}}})
    assert list_ops(resp, "a") == [
        {"op": "INVALIDATE", "range": [0, 1]},
        {"op": "SYNC", "range": [0, 1], "room_ids": [cedar, alder]},
    ]
    assert set(resp["rooms"]) == {cedar, alder}


def test_empty_sort_on_an_existing_list_resorts_by_recency(proxy, alice):
    order, _ = make_rooms(alice, ["Ash", "Oak", "Elm"])   # newest: Elm
    elm, oak, ash = order
    c = proxy.client(alice.token)
    resp = c.sync({"lists": {"a": {"ranges": [[0, 9]], "sort": ["by_name"]}}})
    assert sync_op_room_ids(resp, "a") == [ash, elm, oak]
    resp = c.sync({"lists": {"a": {"sort": []}}})
    assert list_ops(resp, "a") == [
        {"op": "INVALIDATE", "range": [0, 2]},
        {"op": "SYNC", "range": [0, 2], "room_ids": [elm, oak, ash]},
    ]


@pytest.mark.parametrize("sort", [["no_such_sort"], ["by_name", "no_such_sort"], ["no_such_sort", "by_recency"]])
def test_unknown_sort_names_are_not_an_error(proxy, alice, sort):
    order, _ = make_rooms(alice, ["One", "Two"])
    resp = proxy.client(alice.token).sync({"lists": {"a": {"ranges": [[0, 9]], "sort": sort}}})
    assert resp["lists"]["a"]["count"] == 2
    assert set(sync_op_room_ids(resp, "a")) == set(order)


# ---------------------------------------------------------------- range changes

def test_shrinking_and_growing_ranges(proxy, alice):
    order, _ = make_rooms(alice, ["S%02d" % i for i in range(10)])
    c = proxy.client(alice.token)
    resp = c.sync({"lists": {"a": {"ranges": [[0, 20]]}}})
    assert sync_op_room_ids(resp, "a") == order

    resp = c.sync({"lists": {"a": {"ranges": [[2, 6]]}}})
    assert resp["lists"]["a"]["count"] == 10
    assert list_ops(resp, "a") == [{"op": "INVALIDATE", "range": [0, 1]},
                                 {"op": "INVALIDATE", "range": [7, 9]}]
    assert not resp.get("rooms")

    # growing back over [0,1] and [7,9]: SYNC of exactly the new indexes
    resp = c.sync({"lists": {"a": {"ranges": [[0, 10]]}}})
    assert list_ops(resp, "a") == [{"op": "SYNC", "range": [0, 1], "room_ids": order[0:2]},
                                 {"op": "SYNC", "range": [7, 9], "room_ids": order[7:10]}]
    assert set(resp["rooms"]) == set(order[0:2] + order[7:10])

    # past the end of the list: nothing new to say
    resp = c.sync({"lists": {"a": {"ranges": [[0, 20]]}}})
    assert resp["lists"]["a"]["count"] == 10
    assert not list_ops(resp, "a")
    assert not resp.get("rooms")


def test_two_lists_over_the_same_rooms_change_ranges_independently(proxy, alice):
    order, _ = make_rooms(alice, ["T%02d" % i for i in range(16)])
    c = proxy.client(alice.token)
    resp = c.sync({"lists": {"one": {"ranges": [[0, 20]]}, "two": {"ranges": [[0, 16]]}}})
    assert sync_op_room_ids(resp, "one") == order
    assert sync_op_room_ids(resp, "two") == order
    resp = c.sync({"lists": {"one": {"ranges": [[2, 15]]}, "two": {"ranges": [[0, 20]]}}})
    assert list_ops(resp, "one") == [{"op": "INVALIDATE", "range": [0, 1]}]
    assert not list_ops(resp, "two")
    assert resp["lists"]["one"]["count"] == resp["lists"]["two"]["count"] == 16
    assert not resp.get("rooms")


def test_sliding_the_window(proxy, alice):
    order, _ = make_rooms(alice, ["U%02d" % i for i in range(30)])
    c = proxy.client(alice.token)
    resp = c.sync({"lists": {"a": {"ranges": [[0, 20]], "timeline_limit": 1}}})
    assert sync_op_room_ids(resp, "a") == order[:21]
    resp = c.sync({"lists": {"a": {"ranges": [[5, 25]]}}})
    assert list_ops(resp, "a") == [{"op": "INVALIDATE", "range": [0, 4]},
                                 {"op": "SYNC", "range": [21, 25], "room_ids": order[21:26]}]
    assert set(resp["rooms"]) == set(order[21:26])
    assert all(resp["rooms"][r]["initial"] is True for r in order[21:26])


def test_empty_ranges_clear_the_window(proxy, alice):
    order, _ = make_rooms(alice, ["V1", "V2", "V3"])
    c = proxy.client(alice.token)
    resp = c.sync({"lists": {"a": {"ranges": [[0, 9]]}}})
    assert sync_op_room_ids(resp, "a") == order
    alice.wait_idle()
    resp = c.sync({"lists": {"a": {"ranges": []}}})
    assert list_ops(resp, "a") == [{"op": "INVALIDATE", "range": [0, 2]}]
    # with no window a bump is counted but neither shown nor sent
    send(alice, order[2], "unseen")
    resp = c.sync({}, timeout=100)
    assert resp["lists"]["a"]["count"] == 3
    assert not list_ops(resp, "a")
    assert not resp.get("rooms")


def test_adding_a_second_window(proxy, alice):
    order, _ = make_rooms(alice, ["W%d" % i for i in range(7)])
    c = proxy.client(alice.token)
    resp = c.sync({"lists": {"a": {"ranges": [[0, 2]]}}})
    assert sync_op_room_ids(resp, "a") == order[:3]
    resp = c.sync({"lists": {"a": {"ranges": [[0, 2], [3, 5]]}}})
    assert list_ops(resp, "a") == [{"op": "SYNC", "range": [3, 5], "room_ids": order[3:6]}]
    assert set(resp["rooms"]) == set(order[3:6])


# ---------------------------------------------------------------- several windows, live

def test_a_bump_across_three_windows(proxy, alice):
    order, _ = make_rooms(alice, ["X%02d" % i for i in range(20)])
    c = proxy.client(alice.token)
    resp = c.sync({"lists": {"a": {"ranges": [[0, 2], [10, 12], [17, 19]], "timeline_limit": 1}}})
    assert list_ops(resp, "a") == [
        {"op": "SYNC", "range": [0, 2], "room_ids": order[0:3]},
        {"op": "SYNC", "range": [10, 12], "room_ids": order[10:13]},
        {"op": "SYNC", "range": [17, 19], "room_ids": order[17:20]},
    ]
    alice.wait_idle()
    moved = order[18]
    ev = send(alice, moved, "from the bottom window to the top")
    resp = c.sync({}, timeout=5000)
    assert list_ops(resp, "a") == [
        {"op": "DELETE", "index": 18}, {"op": "INSERT", "index": 17, "room_id": order[16]},
        {"op": "DELETE", "index": 2}, {"op": "INSERT", "index": 0, "room_id": moved},
        {"op": "DELETE", "index": 12}, {"op": "INSERT", "index": 10, "room_id": order[9]},
    ]
    assert set(resp["rooms"]) == {moved, order[16], order[9]}
    assert resp["rooms"][order[16]]["initial"] is True
    assert resp["rooms"][order[9]]["initial"] is True
    assert "initial" not in resp["rooms"][moved]
    assert resp["rooms"][moved]["timeline"] == [ev]


def test_middle_window_with_no_timeline(proxy, alice):
    order, _ = make_rooms(alice, ["Y%02d" % i for i in range(20)])
    c = proxy.client(alice.token)
    resp = c.sync({"lists": {"a": {"ranges": [[5, 10]], "timeline_limit": 0}}})
    assert list_ops(resp, "a") == [{"op": "SYNC", "range": [5, 10], "room_ids": order[5:11]}]
    assert set(resp["rooms"]) == set(order[5:11])
    for i in range(5, 11):
        room = resp["rooms"][order[i]]
        assert room["name"] == "Y%02d" % (19 - i)
        assert "timeline" not in room
    alice.wait_idle()
    send(alice, order[15], "jumps over the window")
    resp = c.sync({}, timeout=5000)
    assert list_ops(resp, "a") == [{"op": "DELETE", "index": 10},
                                 {"op": "INSERT", "index": 5, "room_id": order[4]}]
    assert set(resp["rooms"]) == {order[4]}
    room = resp["rooms"][order[4]]
    assert room["initial"] is True and room["name"] == "Y15"
    assert "timeline" not in room


# ---------------------------------------------------------------- lists added / deleted

def test_lists_added_and_deleted_mid_connection(proxy, alice):
    order, timelines = make_rooms(alice, ["Z1", "Z2", "Z3", "Z4"], msgs=2)
    c = proxy.client(alice.token)
    resp = c.sync({"lists": {}})
    assert resp["lists"] == {}
    assert not resp.get("rooms")
    alice.wait_idle()

    resp = c.sync({"lists": {"a": {"ranges": [[0, 2]], "timeline_limit": 1}}})
    assert resp["lists"]["a"]["count"] == 4
    assert list_ops(resp, "a") == [{"op": "SYNC", "range": [0, 2], "room_ids": order[:3]}]
    assert set(resp["rooms"]) == set(order[:3])
    for r in order[:3]:
        assert resp["rooms"][r]["initial"] is True
        assert resp["rooms"][r]["timeline"] == timelines[r][-1:]

    # omitting "a" keeps it; a second list comes and goes
    resp = c.sync({"lists": {"b": {"ranges": [[0, 0]], "sort": ["by_name"]}}})
    assert set(resp["lists"]) == {"a", "b"}
    assert list_ops(resp, "b") == [{"op": "SYNC", "range": [0, 0], "room_ids": [order[3]]}]
    resp = c.sync({})
    assert set(resp["lists"]) == {"a", "b"} and resp["lists"]["a"]["count"] == 4

    resp = c.sync({"lists": {"a": {"deleted": True}}})
    assert set(resp["lists"]) == {"b"}
    # deleting a list that does not exist creates nothing
    resp = c.sync({"lists": {"ghost": {"deleted": True, "ranges": [[0, 9]]}}})
    assert set(resp["lists"]) == {"b"}
    assert not resp.get("rooms")
    # a deleted list's key can be used again: a new list, synced from scratch
    resp = c.sync({"lists": {"a": {"ranges": [[0, 0]]}}})
    assert set(resp["lists"]) == {"a", "b"}
    assert list_ops(resp, "a") == [{"op": "SYNC", "range": [0, 0], "room_ids": [order[0]]}]
    # live events no longer produce ops for a deleted list
    resp = c.sync({"lists": {"b": {"deleted": True}}})
    assert set(resp["lists"]) == {"a"}
    send(alice, order[3], "bottom room bumps")
    resp = c.sync({}, timeout=5000)
    assert set(resp["lists"]) == {"a"}
    assert list_ops(resp, "a") == [{"op": "DELETE", "index": 0},
                                 {"op": "INSERT", "index": 0, "room_id": order[3]}]


# ---------------------------------------------------------------- timeline / required_state changes

def test_timeline_and_required_state_changes_resend_the_window(proxy, alice):
    A = alice.user_id
    order, timelines = make_rooms(alice, ["P%d" % i for i in range(10)], msgs=4)
    c = proxy.client(alice.token)
    resp = c.sync({"lists": {"a": {"ranges": [[0, 2]], "timeline_limit": 1,
                                   "required_state": [["m.room.create", ""]]}}})
    assert list_ops(resp, "a") == [{"op": "SYNC", "range": [0, 2], "room_ids": order[:3]}]
    for r in order[:3]:
        assert resp["rooms"][r]["timeline"] == timelines[r][-1:]
        assert pairs(resp["rooms"][r]["required_state"]) == {("m.room.create", "")}

    # a longer timeline: no ops, the window's rooms again, complete
    resp = c.sync({"lists": {"a": {"timeline_limit": 3}}})
    assert not list_ops(resp, "a")
    assert set(resp["rooms"]) == set(order[:3])
    for r in order[:3]:
        room = resp["rooms"][r]
        assert room["initial"] is True
        assert room["timeline"] == timelines[r][-3:]
        assert pairs(room["required_state"]) == {("m.room.create", "")}

    # more required_state: again with the timeline
    resp = c.sync({"lists": {"a": {"required_state": [["m.room.create", ""], ["m.room.member", "$ME"]]}}})
    assert not list_ops(resp, "a")
    assert set(resp["rooms"]) == set(order[:3])
    for r in order[:3]:
        room = resp["rooms"][r]
        assert room["initial"] is True
        assert pairs(room["required_state"]) == {("m.room.create", ""), ("m.room.member", A)}
        assert room["timeline"] == timelines[r][-3:]

    # timeline_limit 0 is "not given": the list keeps 3 and nothing is resent
    resp = c.sync({"lists": {"a": {"timeline_limit": 0}}}, timeout=100)
    assert not resp.get("rooms")
    resp = c.sync({"lists": {"a": {"ranges": [[0, 3]]}}})
    assert list_ops(resp, "a") == [{"op": "SYNC", "range": [3, 3], "room_ids": [order[3]]}]
    assert resp["rooms"][order[3]]["timeline"] == timelines[order[3]][-3:]

    # same values again: nothing
    resp = c.sync({"lists": {"a": {"timeline_limit": 3,
                                   "required_state": [["m.room.create", ""], ["m.room.member", "$ME"]]}}},
                  timeout=100)
    assert not resp.get("rooms")


def test_timeline_limit_raised_from_zero(proxy, alice):
    order, timelines = make_rooms(alice, ["Q%d" % i for i in range(4)], msgs=2)
    c = proxy.client(alice.token)
    resp = c.sync({"lists": {"a": {"ranges": [[0, 1]], "timeline_limit": 0}}})
    assert set(resp["rooms"]) == set(order[:2])
    for r in order[:2]:
        assert "timeline" not in resp["rooms"][r]
        assert "required_state" not in resp["rooms"][r]
    resp = c.sync({"lists": {"a": {"timeline_limit": 1}}})
    assert not list_ops(resp, "a")
    assert set(resp["rooms"]) == set(order[:2])
    for r in order[:2]:
        assert resp["rooms"][r]["initial"] is True
        assert resp["rooms"][r]["timeline"] == timelines[r][-1:]
        assert "required_state" not in resp["rooms"][r]


# ---------------------------------------------------------------- overlapping lists

def test_overlapping_lists_combine_their_room_parameters(proxy, alice):
    A = alice.user_id
    both, enc_only, named_only = (F.new_room_id(x) for x in ("both", "enconly", "namedonly"))
    tls = {}
    join = {}
    for rid, nm, enc in ((both, "shared secret", True), (enc_only, "lonely", True),
                         (named_only, "shared plain", False)):
        tls[rid] = [F.message(A, "%s %d" % (nm, k)) for k in range(4)]
        join[rid] = F.joined_room(F.room_state(A, nm, encrypted=enc), tls[rid])
    alice.queue(F.sync_response(join=join))
    c = proxy.client(alice.token)
    resp = c.sync({"lists": {
        "enc": {"ranges": [[0, 9]], "filters": {"is_encrypted": True}, "timeline_limit": 2,
                "required_state": [["m.room.join_rules", ""]]},
        "shared": {"ranges": [[0, 9]], "filters": {"room_name_like": "shared"}, "timeline_limit": 1,
                   "required_state": [["m.room.power_levels", ""]]},
    }})
    assert set(sync_op_room_ids(resp, "enc")) == {both, enc_only}
    assert set(sync_op_room_ids(resp, "shared")) == {both, named_only}
    rooms = resp["rooms"]
    assert rooms[both]["timeline"] == tls[both][-2:]
    assert pairs(rooms[both]["required_state"]) == {("m.room.join_rules", ""), ("m.room.power_levels", "")}
    assert len(rooms[both]["required_state"]) == 2
    assert rooms[enc_only]["timeline"] == tls[enc_only][-2:]
    assert pairs(rooms[enc_only]["required_state"]) == {("m.room.join_rules", "")}
    assert rooms[named_only]["timeline"] == tls[named_only][-1:]
    assert pairs(rooms[named_only]["required_state"]) == {("m.room.power_levels", "")}

    # a list and a subscription for the same room combine the same way
    c2 = proxy.client(alice.token)
    resp = c2.sync({"conn_id": "sub", "lists": {
        "shared": {"ranges": [[0, 9]], "filters": {"room_name_like": "shared"}, "timeline_limit": 1,
                   "required_state": [["m.room.power_levels", ""]]}},
        "room_subscriptions": {named_only: {"timeline_limit": 3,
                                            "required_state": [["m.room.create", ""]]}}})
    room = resp["rooms"][named_only]
    assert room["timeline"] == tls[named_only][-3:]
    assert pairs(room["required_state"]) == {("m.room.power_levels", ""), ("m.room.create", "")}
    assert resp["rooms"][both]["timeline"] == tls[both][-1:]
    assert pairs(resp["rooms"][both]["required_state"]) == {("m.room.power_levels", "")}


# ---------------------------------------------------------------- slow_get_all_rooms

def test_slow_get_all_rooms(proxy, alice):
    A = alice.user_id
    names = ["Slow Room %d" % i for i in range(20)]
    order, timelines = make_rooms(alice, names, msgs=4)
    c = proxy.client(alice.token)
    resp = c.sync({"lists": {"all": {"slow_get_all_rooms": True, "ranges": [[0, 3]], "timeline_limit": 3},
                             "none": {"slow_get_all_rooms": True, "filters": {"room_types": ["m.space"]}}}})
    assert resp["lists"]["all"]["count"] == 20
    assert list_ops(resp, "all") == [{"op": "SYNC", "range": [0, 19], "room_ids": order}]
    assert resp["lists"]["none"]["count"] == 0
    assert list_ops(resp, "none") == [{"op": "SYNC", "range": [0, -1]}]
    assert set(resp["rooms"]) == set(order)
    for r in order:
        assert resp["rooms"][r]["initial"] is True
        assert resp["rooms"][r]["timeline"] == timelines[r][-3:]
    alice.wait_idle()

    # a filter change: the whole (filtered) list again, no INVALIDATE
    ones = [r for r in order if "Slow Room 1" in names[19 - order.index(r)]]
    assert len(ones) == 11
    resp = c.sync({"lists": {"all": {"filters": {"room_name_like": "slow room 1"}}}})
    assert resp["lists"]["all"]["count"] == 11
    assert list_ops(resp, "all") == [{"op": "SYNC", "range": [0, 10], "room_ids": ones}]
    assert set(resp["rooms"]) == set(ones)

    # a new matching room: counted and sent as a snapshot, but no ops
    fresh = F.new_room_id("slowfresh")
    alice.queue(F.sync_response(join={fresh: F.joined_room(F.room_state(A, "Slow Room 100"),
                                                            [F.message(A, "new")])}))
    alice.wait_idle()
    resp = c.sync({}, timeout=5000)
    assert resp["lists"]["all"]["count"] == 12
    assert not list_ops(resp, "all")
    assert set(resp["rooms"]) == {fresh}
    assert resp["rooms"][fresh]["initial"] is True

    # a message in a listed room: a plain update, no ops
    ev = send(alice, ones[-1], "old room speaks")
    resp = c.sync({}, timeout=5000)
    assert not list_ops(resp, "all")
    assert set(resp["rooms"]) == {ones[-1]}
    assert "initial" not in resp["rooms"][ones[-1]]
    assert resp["rooms"][ones[-1]]["timeline"] == [ev]

    # a room that is renamed out of the filter silently leaves the count
    alice.queue(F.sync_response(join={ones[0]: F.joined_room(timeline=[F.name(A, "Fast Room")])}))
    alice.wait_idle()
    resp = c.sync({}, timeout=5000)
    assert resp["lists"]["all"]["count"] == 11
    assert not list_ops(resp, "all")

    # adding lists while rooms arrive keeps working
    for i in range(3):
        rid = F.new_room_id("slowmore")
        alice.queue(F.sync_response(join={rid: F.joined_room(
            F.room_state(A, "More %d" % i, room_type="m.space" if i % 2 else None), [F.message(A, "x")])}))
        resp = c.sync({"lists": {"extra%d" % i: {"slow_get_all_rooms": True,
                                                 "filters": {"room_types": ["m.space"]}}}}, timeout=100)
    alice.wait_idle()
    resp = c.sync({}, timeout=100)
    assert resp["lists"]["none"]["count"] == 1
    assert all(resp["lists"]["extra%d" % i]["count"] == 1 for i in range(3))


# ---------------------------------------------------------------- notification sorts

def test_by_notification_level_puts_highlights_on_top(proxy, alice):
    order, _ = make_rooms(alice, ["Bing", "No bing"])
    nobing, bing = order
    c = proxy.client(alice.token)
    resp = c.sync({"lists": {"a": {"ranges": [[0, 9]], "sort": ["by_notification_level", "by_recency"]}}})
    assert sync_op_room_ids(resp, "a") == [nobing, bing]
    alice.wait_idle()

    alice.queue(F.sync_response(join={bing: F.joined_room(highlight_count=1, notification_count=1)}))
    alice.wait_idle()
    resp = c.sync({}, timeout=5000)
    assert list_ops(resp, "a") == [{"op": "DELETE", "index": 1}, {"op": "INSERT", "index": 0, "room_id": bing}]
    assert set(resp["rooms"]) == {bing}
    assert resp["rooms"][bing]["highlight_count"] == 1

    # newer activity without a notification does not beat a highlight
    send(alice, nobing, "quiet chatter", notification_count=0, highlight_count=0)
    resp = c.sync({}, timeout=5000)
    assert not list_ops(resp, "a")
    assert set(resp["rooms"]) == {nobing}


def test_by_notification_level_follows_count_changes(proxy, alice):
    A = alice.user_id
    ra, rb, rc = F.new_room_id("nla"), F.new_room_id("nlb"), F.new_room_id("nlc")
    # creation order: C, then B, then A; A has a notification
    sc, tc = F.room_state(A, "C"), [F.message(A, "c")]
    sb, tb = F.room_state(A, "B"), [F.message(A, "b")]
    sa, ta = F.room_state(A, "A"), [F.message(A, "a")]
    alice.queue(F.sync_response(join={
        ra: F.joined_room(sa, ta, notification_count=1, highlight_count=0),
        rb: F.joined_room(sb, tb), rc: F.joined_room(sc, tc)}))
    c = proxy.client(alice.token)
    resp = c.sync({"lists": {"a": {"ranges": [[0, 9]], "sort": ["by_notification_level", "by_recency"]}}})
    assert sync_op_room_ids(resp, "a") == [ra, rb, rc]
    alice.wait_idle()
    send(alice, rc, "c moves above b")
    resp = c.sync({}, timeout=5000)
    assert list_ops(resp, "a") == [{"op": "DELETE", "index": 2}, {"op": "INSERT", "index": 1, "room_id": rc}]

    # C notifies: it joins A's group and, being newer, goes first
    alice.queue(F.sync_response(join={rc: F.joined_room(notification_count=1)}))
    alice.wait_idle()
    resp = c.sync({}, timeout=5000)
    assert list_ops(resp, "a") == [{"op": "DELETE", "index": 1}, {"op": "INSERT", "index": 0, "room_id": rc}]
    assert set(resp["rooms"]) == {rc}
    # a B message dated as B's old one moves nothing
    late = F.message(A, "late", ts=tb[0]["origin_server_ts"])
    alice.queue(F.sync_response(join={rb: F.joined_room(timeline=[late])}))
    alice.wait_idle()
    resp = c.sync({}, timeout=5000)
    assert not list_ops(resp, "a")
    assert resp["rooms"][rb]["timeline"] == [late]
    # C is read: back below A, still above B
    alice.queue(F.sync_response(join={rc: F.joined_room(notification_count=0)}))
    alice.wait_idle()
    resp = c.sync({}, timeout=5000)
    assert list_ops(resp, "a") == [{"op": "DELETE", "index": 0}, {"op": "INSERT", "index": 1, "room_id": rc}]
    # a fresh connection agrees
    resp = proxy.client(alice.token).sync({"conn_id": "fresh", "lists": {
        "a": {"ranges": [[0, 9]], "sort": ["by_notification_level", "by_recency"]}}})
    assert sync_op_room_ids(resp, "a") == [ra, rc, rb]


def test_notification_sorts(proxy, alice):
    A = alice.user_id
    # (name, encrypted, notification_count, highlight_count), oldest first
    spec = [("hl", False, 1, 2), ("enc", True, 1, 0), ("plain", False, 3, 0), ("quiet", False, 0, 0),
            ("hl2", False, 0, 1), ("enc2", True, 2, 0)]
    ids, join = {}, {}
    for nm, enc, n, h in spec:
        rid = F.new_room_id(nm)
        ids[nm] = rid
        join[rid] = F.joined_room(F.room_state(A, nm, encrypted=enc), [F.message(A, nm)],
                                  notification_count=n, highlight_count=h)
    alice.queue(F.sync_response(join=join))
    c = proxy.client(alice.token)
    resp = c.sync({"lists": {
        "level": {"ranges": [[0, 9]], "sort": ["by_notification_level", "by_recency"]},
        "count": {"ranges": [[0, 9]], "sort": ["by_notification_count", "by_name"]},
        "highlight": {"ranges": [[0, 9]], "sort": ["by_highlight_count", "by_recency"]},
    }})
    want = {
        # highlights, then encrypted with notifications, then unencrypted with, then the rest
        "level": ["hl2", "hl", "enc2", "enc", "plain", "quiet"],
        "count": ["plain", "enc2", "enc", "hl", "hl2", "quiet"],
        "highlight": ["hl", "hl2", "enc2", "quiet", "plain", "enc"],
    }
    for key, names in want.items():
        assert sync_op_room_ids(resp, key) == [ids[n] for n in names], key


def test_a_rename_moves_a_room_in_a_by_name_list(proxy, alice):
    A = alice.user_id
    order, _ = make_rooms(alice, ["Apricot", "Elderberry", "Cherry"])
    cherry, elder, apricot = order
    c = proxy.client(alice.token)
    resp = c.sync({"lists": {"a": {"ranges": [[0, 9]], "sort": ["by_name"]}}})
    assert sync_op_room_ids(resp, "a") == [apricot, cherry, elder]
    alice.wait_idle()
    alice.queue(F.sync_response(join={elder: F.joined_room(timeline=[F.name(A, "Banana")])}))
    alice.wait_idle()
    resp = c.sync({}, timeout=5000)
    assert list_ops(resp, "a") == [{"op": "DELETE", "index": 2}, {"op": "INSERT", "index": 1, "room_id": elder}]
    assert resp["rooms"][elder]["name"] == "Banana"
    # a message moves nothing in a by_name list
    send(alice, apricot, "hello")
    resp = c.sync({}, timeout=5000)
    assert not list_ops(resp, "a")


def test_timeline_change_resends_joined_rooms_only(proxy, alice):
    order, timelines = make_rooms(alice, ["J1", "J2"], msgs=3)
    inv = F.new_room_id("loinv")
    alice.queue(F.sync_response(invite={inv: F.invited_room(F.invite_to("@carol:localhost", alice.user_id,
                                                                        room_name="Invited"))}))
    c = proxy.client(alice.token)
    # The first request may be answered as soon as the first response is stored; let the
    # second (the invite) be stored too before starting the connection that counts it.
    proxy.client(alice.token).sync({"conn_id": "warm-up"})
    alice.wait_idle()
    resp = c.sync({"lists": {"a": {"ranges": [[0, 9]], "timeline_limit": 1}}})
    assert resp["lists"]["a"]["count"] == 3
    assert set(sync_op_room_ids(resp, "a")) == set(order) | {inv}
    resp = c.sync({"lists": {"a": {"timeline_limit": 2}}})
    assert not list_ops(resp, "a")
    assert set(resp["rooms"]) == set(order)
    for r in order:
        assert resp["rooms"][r]["timeline"] == timelines[r][-2:]
