"""Restarting syncv3: polling resumes from the stored since token without any client;
MSC3575 connections (pos) do not survive, MSC4186 ones do (test_msc4186_restart.py)
(docs/behaviour.md, "Processing one upstream response", "Connections")."""

import fakehs as F

FILTER_NORMAL = {"presence": {"not_types": ["*"]}, "room": {"timeline": {"limit": 50}}}


def start_alice(proxy, alice):
    rid = F.new_room_id()
    alice.queue(F.sync_response(join={rid: F.joined_room(
        F.room_state(alice.user_id, "Persistent"), [F.message(alice.user_id, "remember me")])}))
    c = proxy.client(alice.token)
    c.sync({"lists": {"a": {"ranges": [[0, 9]]}}})
    alice.wait_idle()
    return c, rid


def test_restart_resumes_polling_without_clients(proxy, hs, alice, bob):
    c, rid = start_alice(proxy, alice)
    bob.queue(F.sync_response(join={F.new_room_id(): F.joined_room(
        F.room_state(bob.user_id, "Bob's"), [F.message(bob.user_id, "b")])}))
    proxy.client(bob.token).sync({})
    bob.wait_idle()
    issued_a = {r.served_next_batch for r in alice.syncs() if r.served_next_batch}
    issued_b = {r.served_next_batch for r in bob.syncs() if r.served_next_batch}
    n_a, n_b = len(alice.syncs()), len(bob.syncs())

    proxy.restart()
    # no client request: the poller must come back by itself
    first_a = hs.wait_for_sync(alice.token, 1, start=n_a, timeout=20)
    first_b = hs.wait_for_sync(bob.token, 1, start=n_b, timeout=20)
    for first, issued in ((first_a, issued_a), (first_b, issued_b)):
        assert first.query.get("since") in issued, "resumed with since %r" % first.query.get("since")
        assert first.query["timeout"] == "0", "first poll of a new poller uses timeout=0"
        assert first.filter == FILTER_NORMAL, "a known since means timeline limit 50"
    assert hs.unknown_since == []


def test_old_pos_is_unknown_after_restart_but_data_is_kept(proxy, alice):
    c, rid = start_alice(proxy, alice)
    pos = c.pos
    proxy.restart()
    r = c.request({}, pos=pos, timeout=100)
    assert r.status == 400, r
    assert r.json["errcode"] == "M_UNKNOWN_POS"
    c.reset()
    resp = c.sync({"lists": {"a": {"ranges": [[0, 9]], "timeline_limit": 1}}})
    assert resp["lists"]["a"]["count"] == 1
    assert resp["rooms"][rid]["name"] == "Persistent"
    assert resp["rooms"][rid]["timeline"][-1]["content"]["body"] == "remember me"


def test_to_device_messages_are_not_refetched_after_restart(proxy, hs, alice):
    start_alice(proxy, alice)
    nb = alice.queue(F.sync_response(to_device=[
        F.to_device("@bob:localhost", "m.room_key_request", {"action": "request", "n": 1})]))
    alice.wait_idle()
    n = len(alice.syncs())
    proxy.restart()
    first = hs.wait_for_sync(alice.token, 1, start=n, timeout=20)
    assert first.query.get("since") == nb, \
        "since must be persisted with to-device messages (got %r, want %r)" % (first.query.get("since"), nb)


def test_stored_to_device_messages_are_served_after_restart(proxy, hs, alice):
    start_alice(proxy, alice)
    msg = F.to_device("@bob:localhost", "m.test", {"secret": 42})
    alice.queue(F.sync_response(to_device=[msg]))
    alice.wait_idle()
    proxy.restart()
    c = proxy.client(alice.token)
    resp = c.sync({"extensions": {"to_device": {"enabled": True}}})
    assert resp["extensions"]["to_device"]["events"] == [msg]
