"""MSC4186 list filters, with its empty-list rules, and order by recency.
(docs/behaviour.md, "Simplified sliding sync")"""

import pytest

import fakehs as F
from helpers import SimplifiedSync

BOB = "@bob:localhost"


@pytest.fixture
def world(alice):
    """A space (child: plain), an encrypted room, a DM with bob, a favourite, an invite."""
    A = alice.user_id
    ids = {k: F.new_room_id(k) for k in ("space", "plain", "enc", "dm", "fav", "inv")}
    join = {
        ids["space"]: F.joined_room(F.room_state(A, "Space", room_type="m.space") +
                                    [F.space_child(A, ids["plain"])], [F.message(A, "s")]),
        ids["plain"]: F.joined_room(F.room_state(A, "Plain"), [F.message(A, "p")]),
        ids["enc"]: F.joined_room(F.room_state(A, "Enc", encrypted=True), [F.message(A, "e")]),
        ids["dm"]: F.joined_room(F.room_state(BOB) + [F.join(A)], [F.message(BOB, "d")]),
        ids["fav"]: F.joined_room(F.room_state(A, "Fav"), [F.message(A, "f")],
                                  account_data=[F.tags({"m.favourite": {"order": 0.5}})]),
    }
    invite = {ids["inv"]: F.invited_room(F.invite_to(BOB, A, room_name="Inv"))}
    alice.queue(F.sync_response(join=join, invite=invite,
                                account_data=[F.account_data("m.direct", {BOB: [ids["dm"]]})]))
    return ids


def rooms_of(proxy, alice, **filters):
    c = SimplifiedSync(proxy, alice.token)
    resp = c.sync({"lists": {"l": {"ranges": [[0, 50]], "timeline_limit": 0, "filters": filters}}})
    ops = resp["lists"]["l"].get("ops") or [{"room_ids": []}]
    assert resp["lists"]["l"]["count"] == len(ops[0]["room_ids"])
    return ops[0]["room_ids"]


def names(world, room_ids):
    inv = {v: k for k, v in world.items()}
    return {inv[r] for r in room_ids}


def test_no_filters_all_by_recency(proxy, alice, world):
    got = rooms_of(proxy, alice)
    assert names(world, got) == set(world)
    assert got[0] == world["inv"], "the newest membership first"


def test_is_dm(proxy, alice, world):
    assert names(world, rooms_of(proxy, alice, is_dm=True)) == {"dm"}


def test_is_encrypted(proxy, alice, world):
    assert names(world, rooms_of(proxy, alice, is_encrypted=True)) == {"enc"}
    assert "enc" not in names(world, rooms_of(proxy, alice, is_encrypted=False))


def test_is_invite_and_is_invited(proxy, alice, world):
    assert names(world, rooms_of(proxy, alice, is_invite=True)) == {"inv"}
    assert names(world, rooms_of(proxy, alice, is_invited=True)) == {"inv"}
    assert "inv" not in names(world, rooms_of(proxy, alice, is_invite=False))


def test_room_types(proxy, alice, world):
    assert names(world, rooms_of(proxy, alice, room_types=["m.space"])) == {"space"}
    assert "space" not in names(world, rooms_of(proxy, alice, room_types=[None]))
    assert "space" not in names(world, rooms_of(proxy, alice, not_room_types=["m.space"]))
    assert rooms_of(proxy, alice, room_types=[]) == [], "room_types: [] matches nothing"
    assert names(world, rooms_of(proxy, alice, not_room_types=[])) == set(world), \
        "not_room_types: [] excludes nothing"


def test_tags(proxy, alice, world):
    assert names(world, rooms_of(proxy, alice, tags=["m.favourite"])) == {"fav"}
    assert "fav" not in names(world, rooms_of(proxy, alice, not_tags=["m.favourite"]))
    # Element Web's DM list.
    assert names(world, rooms_of(proxy, alice, is_dm=True, is_invite=False,
                                 not_tags=["m.favourite", "m.lowpriority"])) == {"dm"}


def test_spaces(proxy, alice, world):
    assert names(world, rooms_of(proxy, alice, spaces=[world["space"]])) == {"plain"}


def test_filters_change_between_requests(proxy, alice, world):
    c = SimplifiedSync(proxy, alice.token)
    first = c.sync({"lists": {"l": {"ranges": [[0, 50]], "timeline_limit": 0,
                                    "filters": {"is_encrypted": True}}}})
    assert first["lists"]["l"]["count"] == 1
    resp = c.sync({"lists": {"l": {"ranges": [[0, 50]], "timeline_limit": 0}}})
    assert resp["lists"]["l"]["count"] == len(world), "filters left out mean no filtering"
    assert world["enc"] not in resp["rooms"], "a room already sent is not sent again"
