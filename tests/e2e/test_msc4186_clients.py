"""The bodies Element X (matrix-rust-sdk) and Element Web (matrix-js-sdk) send, as they send
them, answered in the shape they read.
(docs/behaviour.md, "Simplified sliding sync")"""

import pytest

import fakehs as F
from helpers import SimplifiedSync, run_in_thread

BOB = "@bob:localhost"

EX_REQUIRED_STATE = [
    ["m.room.name", ""], ["m.room.encryption", ""], ["m.room.member", "$LAZY"], ["m.room.member", "$ME"],
    ["m.room.topic", ""], ["m.room.avatar", ""], ["m.room.canonical_alias", ""], ["m.room.power_levels", ""],
    ["org.matrix.msc3401.call.member", "*"], ["m.room.join_rules", ""], ["m.room.tombstone", ""],
    ["m.room.create", ""], ["m.room.history_visibility", ""], ["io.element.functional_members", ""],
    ["m.space.parent", "*"], ["m.space.child", "*"], ["org.matrix.msc3672.beacon_info", "*"],
]


def element_x(end):
    return {"conn_id": "room-list",
            "lists": {"all_rooms": {"ranges": [[0, end]], "required_state": EX_REQUIRED_STATE,
                                    "filters": {}, "timeline_limit": 1}},
            "extensions": {"account_data": {"enabled": True}, "receipts": {"enabled": True, "rooms": ["*"]},
                           "typing": {"enabled": True}}}


EW_RS = [["m.room.join_rules", ""], ["m.room.avatar", ""], ["m.room.canonical_alias", ""],
         ["m.room.tombstone", ""], ["m.room.encryption", ""], ["m.room.create", ""], ["m.space.child", "*"],
         ["m.space.parent", "*"], ["m.room.member", "$ME"]]


def element_web():
    def l(tl, **filters):
        d = {"ranges": [[0, 10]], "timeline_limit": tl, "required_state": EW_RS, "include_old_rooms": {
            "timeline_limit": 0, "required_state": EW_RS}}
        if filters:
            d["filters"] = filters
        return d
    return {"lists": {"spaces": l(0, room_types=["m.space"]), "invites": l(1, is_invite=True),
                      "favourites": l(1, tags=["m.favourite"]),
                      "dms": l(1, is_dm=True, is_invite=False, not_tags=["m.favourite", "m.lowpriority"]),
                      "untagged": l(1)},
            "extensions": {"e2ee": {"enabled": True}, "to_device": {"enabled": True, "limit": 100},
                           "account_data": {"enabled": True}, "typing": {"enabled": True},
                           "receipts": {"enabled": True}}}


@pytest.fixture
def many(alice):
    """25 rooms of alice's, one DM with bob, one invite."""
    A = alice.user_id
    join = {}
    for i in range(25):
        join[F.new_room_id("r")] = F.joined_room(F.room_state(A, "Room %02d" % i), [F.message(A, "m%d" % i)])
    dm = F.new_room_id("dm")
    join[dm] = F.joined_room(F.room_state(BOB) + [F.join(A)], [F.message(BOB, "hi")])
    inv = F.new_room_id("inv")
    alice.queue(F.sync_response(join=join, invite={inv: F.invited_room(F.invite_to(BOB, A, "Invite"))},
                                account_data=[F.account_data("m.direct", {BOB: [dm]})]))
    return {"dm": dm, "inv": inv, "n": 27}


def test_element_x_room_list_grows_then_long_polls(proxy, alice, many):
    c = SimplifiedSync(proxy, alice.token)
    resp = c.sync(element_x(19))
    assert resp["lists"]["all_rooms"]["count"] == many["n"]
    assert len(resp["rooms"]) == 20
    assert all(r["initial"] for r in resp["rooms"].values())
    resp = c.sync(element_x(many["n"] - 1))
    assert len(resp["rooms"]) == many["n"] - 20, "only the rooms the window gained"
    resp = c.sync(element_x(many["n"] - 1))
    assert resp["rooms"] == {}
    h = run_in_thread(c.sync, element_x(many["n"] - 1), timeout=30000)
    ev = F.message(BOB, "news")
    alice.queue(F.sync_response(join={many["dm"]: F.joined_room(timeline=[ev])}))
    resp = h.result(40)
    assert resp["rooms"][many["dm"]]["timeline"] == [ev]
    assert resp["lists"]["all_rooms"]["ops"][0]["room_ids"][0] == many["dm"]


def test_element_x_encryption_connection(proxy, alice, many):
    rl = SimplifiedSync(proxy, alice.token)
    rl.sync(element_x(19))
    enc = SimplifiedSync(proxy, alice.token)
    body = {"conn_id": "encryption", "extensions": {"e2ee": {"enabled": True}, "to_device": {"enabled": True}}}
    resp = enc.sync(body)
    assert resp["rooms"] == {}
    assert isinstance(resp["extensions"]["to_device"]["next_batch"], str)
    # both connections of the device live side by side
    assert rl.sync(element_x(19))["rooms"] == {}


def test_element_web_lists(proxy, alice, many):
    c = SimplifiedSync(proxy, alice.token)
    resp = c.sync(element_web(), timeout=0)
    counts = {k: v["count"] for k, v in resp["lists"].items()}
    assert counts == {"spaces": 0, "invites": 1, "favourites": 0, "dms": 1, "untagged": many["n"]}
    assert resp["rooms"][many["inv"]]["invite_state"]
    assert resp["rooms"][many["dm"]]["is_dm"] is True
    # js-sdk sends the same lists again on every request, with its pos
    again = c.sync(element_web(), timeout=0)
    assert again["rooms"] == {}
