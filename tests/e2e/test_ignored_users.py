"""Users in m.ignored_user_list (docs/behaviour.md, "Ignored users"): their message events are left out of
timelines, snapshots and live, while their state events are kept; invites they send are
not shown."""

import fakehs as F
from helpers import sync_op_room_ids


def ignore(*users):
    return F.account_data("m.ignored_user_list", {"ignored_users": {u: {} for u in users}})


def bodies(room):
    return [e["content"].get("body", e["type"]) for e in room.get("timeline", [])]


def test_messages_of_ignored_users_are_left_out(proxy, alice, bob):
    A, B, N = alice.user_id, bob.user_id, "@nigel:localhost"
    rid = F.new_room_id("ign")
    st = F.room_state(A, "Ignoring") + [F.join(B), F.join(N)]
    tl = [F.message(N, "n1"), F.message(B, "b1"), F.topic(N, "nigel's topic")]
    alice.queue(F.sync_response(join={rid: F.joined_room(st, tl)}, account_data=[ignore(N)]))
    bob.queue(F.sync_response(join={rid: F.joined_room(st, tl)}))
    c = proxy.client(alice.token)
    resp = c.sync({"lists": {"a": {"ranges": [[0, 0]], "timeline_limit": 10}}})
    # nigel's message is gone, his state event is kept
    assert bodies(resp["rooms"][rid])[-2:] == ["b1", "m.room.topic"]
    assert "n1" not in bodies(resp["rooms"][rid])
    cb = proxy.client(bob.token)
    resp = cb.sync({"lists": {"a": {"ranges": [[0, 0]], "timeline_limit": 10}}})
    assert "n1" in bodies(resp["rooms"][rid])
    alice.wait_idle()
    bob.wait_idle()

    # live, delivered by bob's poller: alice sees bob's message only, bob sees both
    bob.queue(F.sync_response(join={rid: F.joined_room(timeline=[F.message(N, "n2"), F.message(B, "b2")])}))
    bob.wait_idle()
    resp = c.sync({}, timeout=5000)
    room = resp["rooms"][rid]
    assert bodies(room) == ["b2"]
    assert room["num_live"] == 1
    resp = cb.sync({}, timeout=5000)
    assert bodies(resp["rooms"][rid]) == ["n2", "b2"]

    # alice stops ignoring nigel: his later messages reach her
    alice.queue(F.sync_response(account_data=[ignore()]))
    alice.wait_idle()
    bob.queue(F.sync_response(join={rid: F.joined_room(timeline=[F.message(N, "n3")])}))
    bob.wait_idle()
    resp = c.sync({}, timeout=5000)
    assert bodies(resp["rooms"][rid]) == ["n3"]


def test_invites_from_ignored_users_are_not_shown(proxy, alice):
    A, N, B = alice.user_id, "@nigel:localhost", "@bob:localhost"
    mine = F.new_room_id("mine")
    alice.queue(F.sync_response(join={mine: F.joined_room(F.room_state(A, "Mine"), [F.message(A, "x")])},
                                account_data=[ignore(N)]))
    c = proxy.client(alice.token)
    resp = c.sync({"lists": {"inv": {"ranges": [[0, 9]], "filters": {"is_invite": True}},
                             "all": {"ranges": [[0, 9]]}}})
    assert resp["lists"]["inv"]["count"] == 0
    alice.wait_idle()

    spam, real = F.new_room_id("spam"), F.new_room_id("real")
    alice.queue(F.sync_response(invite={spam: F.invited_room(F.invite_to(N, A, room_name="Spam")),
                                        real: F.invited_room(F.invite_to(B, A, room_name="Real"))}))
    alice.wait_idle()
    resp = c.sync({}, timeout=5000)
    assert resp["lists"]["inv"]["count"] == 1
    assert resp["lists"]["all"]["count"] == 2
    assert spam not in resp.get("rooms", {})
    assert real in resp["rooms"]
    # a new connection agrees
    fresh = proxy.client(alice.token).sync({"conn_id": "fresh", "lists": {"all": {"ranges": [[0, 9]]}}})
    assert set(sync_op_room_ids(fresh, "all")) == {mine, real}


def test_unignoring_shows_the_pending_invite(proxy, alice):
    A, N = alice.user_id, "@nigel:localhost"
    spam = F.new_room_id("later")
    alice.queue(F.sync_response(invite={spam: F.invited_room(F.invite_to(N, A, room_name="Later"))},
                                account_data=[ignore(N)]))
    c = proxy.client(alice.token)
    resp = c.sync({"lists": {"all": {"ranges": [[0, 9]]}}})
    assert resp["lists"]["all"]["count"] == 0
    alice.wait_idle()
    alice.queue(F.sync_response(account_data=[ignore()]))
    alice.wait_idle()
    resp = c.sync({}, timeout=5000)
    assert resp["lists"]["all"]["count"] == 1
    assert resp["lists"]["all"]["ops"] == [{"op": "DELETE", "index": 0}, {"op": "INSERT", "index": 0, "room_id": spam}]
    assert resp["rooms"][spam]["initial"] is True
