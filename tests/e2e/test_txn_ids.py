"""unsigned.transaction_id reaches the device that sent an event, and only that device
(docs/behaviour.md, "Transaction IDs"): the stored copy is shared and has none."""

import time

import fakehs as F
from helpers import User, run_in_thread


def last_event(resp, rid):
    return resp["rooms"][rid]["timeline"][-1]


def txn_of(ev):
    return ev.get("unsigned", {}).get("transaction_id")


def setup_room(alice, bob):
    rid = F.new_room_id("txn")
    st = F.room_state(alice.user_id, "Txn") + [F.join(bob.user_id)]
    return rid, st


def test_sender_device_sees_its_transaction_ids(proxy, hs, alice, bob):
    A = alice.user_id
    rid, st = setup_room(alice, bob)
    sent = F.message(A, "echo me", unsigned={"transaction_id": "t1", "age": 5})
    alice.queue(F.sync_response(join={rid: F.joined_room(st, [sent])}))
    bob.queue(F.sync_response(join={rid: F.joined_room(st, [sent])}))
    c = proxy.client(alice.token)
    resp = c.sync({"lists": {"a": {"ranges": [[0, 0]], "timeline_limit": 5}}})
    ev = last_event(resp, rid)
    assert ev["event_id"] == sent["event_id"]
    assert txn_of(ev) == "t1"
    assert ev["unsigned"]["age"] == 5, "the rest of unsigned is kept"
    assert ev["content"] == sent["content"]
    # other users never see it
    other = proxy.client(bob.token).sync({"lists": {"a": {"ranges": [[0, 0]], "timeline_limit": 5}}})
    assert txn_of(last_event(other, rid)) is None
    alice.wait_idle()

    # live: the next message from this device carries its id too; bob's does not
    live = F.message(A, "again", unsigned={"transaction_id": "t2"})
    theirs = F.message(bob.user_id, "reply")
    alice.queue(F.sync_response(join={rid: F.joined_room(timeline=[live, theirs])}))
    alice.wait_idle()
    resp = c.sync({}, timeout=5000)
    tl = resp["rooms"][rid]["timeline"]
    assert [txn_of(e) for e in tl] == ["t2", None]

    # alice's other device (its own sync shows no transaction id) sees none
    phone = User(hs, "alice", device_id="PHONE")
    plain = [dict(e, unsigned={}) for e in (sent, live)]
    phone.queue(F.sync_response(join={rid: F.joined_room(st, plain + [theirs])}))
    resp = proxy.client(phone.token).sync({"lists": {"a": {"ranges": [[0, 0]], "timeline_limit": 5}}})
    assert [txn_of(e) for e in resp["rooms"][rid]["timeline"]] == [None] * len(resp["rooms"][rid]["timeline"]), resp["rooms"][rid]["timeline"]


def test_transaction_id_arrives_when_another_poller_stored_the_event_first(proxy, alice, bob):
    A = alice.user_id
    rid, st = setup_room(alice, bob)
    alice.queue(F.sync_response(join={rid: F.joined_room(st, [F.message(A, "first")])}))
    bob.queue(F.sync_response(join={rid: F.joined_room(st, [F.message(A, "first")])}))
    c = proxy.client(alice.token)
    c.sync({"lists": {"a": {"ranges": [[0, 0]], "timeline_limit": 1}}})
    proxy.client(bob.token).sync({"lists": {"a": {"ranges": [[0, 0]]}}})
    alice.wait_idle()
    bob.wait_idle()

    # bob's poller delivers alice's message before alice's own poller does, while alice's
    # connection is long-polling: the response waits briefly for her own sync
    waiting = run_in_thread(c.sync, {}, timeout=5000)
    time.sleep(0.2)
    sent = F.message(A, "raced")
    bob.queue(F.sync_response(join={rid: F.joined_room(timeline=[sent])}))
    bob.wait_idle()
    time.sleep(0.2)
    mine = dict(sent, unsigned={"transaction_id": "t-race"})
    alice.queue(F.sync_response(join={rid: F.joined_room(timeline=[mine])}))
    resp = waiting.result()
    ev = last_event(resp, rid)
    assert ev["event_id"] == sent["event_id"]
    assert txn_of(ev) == "t-race", "the response waits briefly for the sender's own sync"

    # an own event the device's sync never shows with an id is released after at most a second
    other = F.message(A, "from another client")
    bob.queue(F.sync_response(join={rid: F.joined_room(timeline=[other])}))
    t0 = time.monotonic()
    resp = c.sync({}, timeout=5000)
    assert last_event(resp, rid)["event_id"] == other["event_id"]
    assert txn_of(last_event(resp, rid)) is None
    assert time.monotonic() - t0 < 4.0
