"""Extensions to_device, e2ee and account_data (docs/behaviour.md, "to_device", "e2ee",
"account_data", "Sticky parameters", "Extensions and long-polling", "Storage")."""

import time

import pytest

from helpers import run_in_thread
import fakehs as F
import pgtmp

TD = {"to_device": {"enabled": True}}


def room_for(user, label="Room"):
    rid = F.new_room_id()
    user.queue(F.sync_response(join={rid: F.joined_room(
        F.room_state(user.user_id, label), [F.message(user.user_id, "hello")])}))
    return rid


def started(proxy, user):
    """A client for user once the proxy polls it and has stored everything queued
    (a warm-up connection starts the poller)."""
    proxy.client(user.token).sync({"conn_id": "warm-up"})
    user.wait_idle()
    return proxy.client(user.token)


def msgs(n, start=0):
    return [F.to_device("@bob:localhost", "m.test", {"n": i}) for i in range(start, start + n)]


def ext(resp, name):
    return resp["extensions"].get(name)


# ---------------------------------------------------------------- to_device

def test_to_device_delivery_ack_and_deletion(proxy, db, alice):
    room_for(alice)
    c = proxy.client(alice.token)
    resp = c.sync({"extensions": TD})
    assert ext(resp, "to_device") == {"next_batch": "0"}
    sent = msgs(3)
    alice.queue(F.sync_response(to_device=sent))
    alice.wait_idle()
    resp = c.sync({}, timeout=5000)
    td = ext(resp, "to_device")
    assert td["events"] == sent
    nb = td["next_batch"]
    # not acknowledged yet: the same since gets them again
    resp = c.sync({}, timeout=100)
    assert ext(resp, "to_device")["events"] == sent
    # acknowledged: deleted, nothing more
    resp = c.sync({"extensions": {"to_device": {"since": nb}}}, timeout=100)
    assert ext(resp, "to_device") == {"next_batch": nb}
    assert count_rows(db, "syncv3_to_device_messages") == 0
    # since is sticky
    resp = c.sync({}, timeout=100)
    assert ext(resp, "to_device") == {"next_batch": nb}


@pytest.mark.parametrize("n,limit,page", [(5, 2, 2), (1203, 100000, 1000)], ids=["limit", "capped"])
def test_to_device_limit_pages(proxy, alice, n, limit, page):
    """`limit` messages per response, at most 1000 whatever a client asks; the rest follow
    with the next since."""
    room_for(alice)
    sent = msgs(n)
    alice.queue(F.sync_response(to_device=sent))
    c = started(proxy, alice)
    resp = c.sync({"extensions": {"to_device": {"enabled": True, "limit": limit}}})
    td = ext(resp, "to_device")
    assert td["events"] == sent[:page]
    got = list(td["events"])
    for _ in range(n // page + 1):
        resp = c.sync({"extensions": {"to_device": {"since": td["next_batch"]}}}, timeout=100)
        td = ext(resp, "to_device")
        assert len(td.get("events", [])) <= page
        got += td.get("events", [])
    assert got == sent
    assert "events" not in td


def test_to_device_retransmit_returns_same_messages(proxy, alice):
    room_for(alice)
    c = proxy.client(alice.token)
    resp = c.sync({"extensions": TD})
    alice.queue(F.sync_response(to_device=msgs(2)))
    alice.wait_idle()
    resp = c.sync({}, timeout=100)
    first = ext(resp, "to_device")
    body = {"extensions": {"to_device": {"since": first["next_batch"]}}}
    pos = c.pos
    alice.queue(F.sync_response(to_device=msgs(2, start=10)))
    alice.wait_idle()
    r1 = c.request(body, pos=pos, timeout=100)
    assert r1.status == 200
    assert [e["content"]["n"] for e in r1.json["extensions"]["to_device"]["events"]] == [10, 11]
    # the response was "lost": the client retries the same pos and body
    r2 = c.request(body, pos=pos, timeout=100)
    assert r2.status == 200
    assert r2.json == r1.json


def test_to_device_not_lost_across_restart(proxy, db, alice):
    room_for(alice)
    c = proxy.client(alice.token)
    c.sync({"extensions": TD})
    sent = msgs(2)
    alice.queue(F.sync_response(to_device=sent))
    alice.wait_idle()
    resp = c.sync({}, timeout=100)
    td = ext(resp, "to_device")
    assert td["events"] == sent
    # the client never acknowledges; the proxy restarts
    proxy.restart()
    c.reset()
    # the first to-device request after start presents a since never handed out to this
    # device (as after the database was recreated): it is treated as 0, everything still
    # stored is re-sent, nothing is deleted
    resp = c.sync({"extensions": {"to_device": {"enabled": True, "since": str(int(td["next_batch"]) + 1)}}})
    assert ext(resp, "to_device")["events"] == sent
    assert count_rows(db, "syncv3_to_device_messages") == 2
    # later requests (other connections too) honour since again
    nb = ext(resp, "to_device")["next_batch"]
    c2 = proxy.client(alice.token)
    resp = c2.sync({"conn_id": "two", "extensions": {"to_device": {"enabled": True, "since": nb}}})
    assert ext(resp, "to_device") == {"next_batch": nb}
    assert count_rows(db, "syncv3_to_device_messages") == 0


def key_request(user, action, request_id, device="OTHERDEV"):
    """An m.room_key_request from another device of `user` (a request carries a body)."""
    content = {"action": action, "request_id": request_id, "requesting_device_id": device}
    if action == "request":
        content["body"] = {"algorithm": "m.megolm.v1.aes-sha2", "room_id": "!r:localhost",
                           "session_id": "s_" + request_id, "sender_key": "k"}
    return F.to_device(user.user_id, "m.room_key_request", content)


def test_room_key_request_cancelled_in_the_same_response_is_never_delivered(proxy, db, alice):
    """A request and its cancellation in one v2 response, before the client fetches: neither
    is stored nor delivered. Another device's request with the same id, and other messages,
    are untouched."""
    room_for(alice)
    other = msgs(1)[0]
    kept = key_request(alice, "request", "r2")
    foreign_cancel = key_request(alice, "request_cancellation", "r2", device="THIRDDEV")
    alice.queue(F.sync_response(to_device=[key_request(alice, "request", "r1"), other, kept,
                                           key_request(alice, "request_cancellation", "r1"),
                                           foreign_cancel]))
    c = started(proxy, alice)
    resp = c.sync({"extensions": TD})
    assert ext(resp, "to_device")["events"] == [other, kept, foreign_cancel]
    assert count_rows(db, "syncv3_to_device_messages") == 3


def test_room_key_request_cancelled_in_a_later_response_is_never_delivered(proxy, db, alice):
    """The request is stored (undelivered) when its cancellation arrives: both go."""
    room_for(alice)
    c = proxy.client(alice.token)
    resp = c.sync({"extensions": TD})
    first = msgs(1)
    alice.queue(F.sync_response(to_device=first))
    alice.wait_idle()
    resp = c.sync({}, timeout=100)
    assert ext(resp, "to_device")["events"] == first
    nb = ext(resp, "to_device")["next_batch"]
    kept = key_request(alice, "request", "r3")
    alice.queue(F.sync_response(to_device=[key_request(alice, "request", "r1"), kept]))
    alice.wait_idle()
    alice.queue(F.sync_response(to_device=[key_request(alice, "request_cancellation", "r1")]))
    alice.wait_idle()
    assert count_rows(db, "syncv3_to_device_messages") == 2   # `first` (unacknowledged) and r3
    resp = c.sync({"extensions": {"to_device": {"since": nb}}}, timeout=100)
    assert ext(resp, "to_device")["events"] == [kept]


def test_cancellation_of_a_delivered_room_key_request_is_delivered(proxy, db, alice):
    """A request the client already fetched is followed by its cancellation."""
    room_for(alice)
    c = proxy.client(alice.token)
    c.sync({"extensions": TD})
    req = key_request(alice, "request", "r1")
    alice.queue(F.sync_response(to_device=[req]))
    alice.wait_idle()
    resp = c.sync({}, timeout=100)
    assert ext(resp, "to_device")["events"] == [req]
    nb = ext(resp, "to_device")["next_batch"]
    cancel = key_request(alice, "request_cancellation", "r1")
    alice.queue(F.sync_response(to_device=[cancel]))
    alice.wait_idle()
    resp = c.sync({"extensions": {"to_device": {"since": nb}}}, timeout=100)
    assert ext(resp, "to_device")["events"] == [cancel]


def test_parked_long_poll_woken_by_to_device(proxy, alice):
    room_for(alice)
    c = proxy.client(alice.token)
    c.sync({"extensions": TD})
    alice.wait_idle()
    c.sync({}, timeout=100)
    h = run_in_thread(c.sync, {}, timeout=20000)
    time.sleep(1.0)
    assert not h.done(), "the long-poll returned although nothing happened"
    t0 = time.monotonic()
    sent = msgs(1)
    alice.queue(F.sync_response(to_device=sent))
    resp = h.result(30)
    assert time.monotonic() - t0 < 10
    assert ext(resp, "to_device")["events"] == sent


def test_extension_needs_enabled_on_first_appearance(proxy, alice):
    room_for(alice)
    alice.queue(F.sync_response(to_device=msgs(1)))
    c = started(proxy, alice)
    resp = c.sync({"extensions": {"to_device": {"limit": 5}}})
    assert "to_device" not in resp["extensions"]
    resp = c.sync({"extensions": {"to_device": {"enabled": True}}}, timeout=100)
    assert len(ext(resp, "to_device")["events"]) == 1
    # absent keeps it enabled; enabled: false turns it off
    resp = c.sync({}, timeout=100)
    assert "to_device" in resp["extensions"]
    resp = c.sync({"extensions": {"to_device": {"enabled": False}}}, timeout=100)
    assert "to_device" not in resp["extensions"]


# ---------------------------------------------------------------- e2ee

def test_e2ee_otk_counts_and_fallback_types(proxy, alice):
    room_for(alice)
    alice.queue(F.sync_response(otk_counts={"signed_curve25519": 50}, fallback_key_types=["signed_curve25519"]))
    c = started(proxy, alice)
    resp = c.sync({"extensions": {"e2ee": {"enabled": True}}})
    assert ext(resp, "e2ee") == {"device_one_time_keys_count": {"signed_curve25519": 50},
                                 "device_unused_fallback_key_types": ["signed_curve25519"]}
    # the initial request leaves the changed bits alone; the first incremental request
    # clears them, but the values are the ones just given: not sent again (and no wake-up)
    resp = c.sync({}, timeout=100)
    assert "e2ee" not in resp["extensions"]
    resp = c.sync({}, timeout=100)
    assert "e2ee" not in resp["extensions"]
    # fallback key used up: [] is news and is sent as []
    alice.queue(F.sync_response(fallback_key_types=[]))
    alice.wait_idle()
    resp = c.sync({}, timeout=5000)
    assert ext(resp, "e2ee") == {"device_unused_fallback_key_types": []}
    alice.queue(F.sync_response(otk_counts={"signed_curve25519": 49}))
    alice.wait_idle()
    resp = c.sync({}, timeout=5000)
    assert ext(resp, "e2ee") == {"device_one_time_keys_count": {"signed_curve25519": 49}}
    # a new connection gets the whole picture again
    c2 = proxy.client(alice.token)
    resp = c2.sync({"conn_id": "two", "extensions": {"e2ee": {"enabled": True}}})
    assert ext(resp, "e2ee") == {"device_one_time_keys_count": {"signed_curve25519": 49},
                                 "device_unused_fallback_key_types": []}


def test_e2ee_fallback_absent_when_never_reported(proxy, alice):
    room_for(alice)
    alice.queue(F.sync_response(otk_counts={"signed_curve25519": 5}))
    c = started(proxy, alice)
    resp = c.sync({"extensions": {"e2ee": {"enabled": True}}})
    assert ext(resp, "e2ee") == {"device_one_time_keys_count": {"signed_curve25519": 5}}


def test_e2ee_device_lists_new_sent(proxy, alice):
    room_for(alice)
    c = proxy.client(alice.token)
    resp = c.sync({"extensions": {"e2ee": {"enabled": True}}})
    assert "e2ee" not in resp["extensions"]
    alice.queue(F.sync_response(device_lists={"changed": ["@bob:localhost", "@carol:localhost"],
                                              "left": ["@dave:localhost"]}))
    alice.wait_idle()
    resp = c.sync({}, timeout=5000)
    dl = ext(resp, "e2ee")["device_lists"]
    assert sorted(dl["changed"]) == ["@bob:localhost", "@carol:localhost"]
    assert dl["left"] == ["@dave:localhost"]
    # the next request acknowledges them (SENT is deleted): a new connection
    # has nothing to re-send
    resp = c.sync({}, timeout=100)
    assert "e2ee" not in resp["extensions"]
    c2 = proxy.client(alice.token)
    resp = c2.sync({"conn_id": "b", "extensions": {"e2ee": {"enabled": True}}})
    assert "e2ee" not in resp["extensions"]


def test_e2ee_sent_bucket_resent_on_new_connection(proxy, alice):
    room_for(alice)
    c = proxy.client(alice.token)
    c.sync({"extensions": {"e2ee": {"enabled": True}}})
    alice.queue(F.sync_response(device_lists={"changed": ["@bob:localhost"]}))
    alice.wait_idle()
    resp = c.sync({}, timeout=5000)
    assert ext(resp, "e2ee")["device_lists"] == {"changed": ["@bob:localhost"], "left": []}
    # that response was lost; the client starts a new connection: SENT again, read-only
    c.reset()
    for _ in range(2):
        resp = c.sync({"extensions": {"e2ee": {"enabled": True}}})
        assert ext(resp, "e2ee")["device_lists"] == {"changed": ["@bob:localhost"], "left": []}
        c.reset()
    # NEW changes meanwhile come on the next incremental request, not the initial one
    resp = c.sync({"extensions": {"e2ee": {"enabled": True}}})
    alice.queue(F.sync_response(device_lists={"left": ["@carol:localhost"]}))
    alice.wait_idle()
    resp = c.sync({}, timeout=5000)
    assert ext(resp, "e2ee")["device_lists"] == {"changed": [], "left": ["@carol:localhost"]}


def test_e2ee_long_poll_woken_by_device_data(proxy, alice):
    room_for(alice)
    c = proxy.client(alice.token)
    c.sync({"extensions": {"e2ee": {"enabled": True}}})
    alice.wait_idle()
    c.sync({}, timeout=100)
    h = run_in_thread(c.sync, {}, timeout=20000)
    time.sleep(1.0)
    assert not h.done()
    alice.queue(F.sync_response(device_lists={"changed": ["@bob:localhost"]}))
    resp = h.result(30)
    assert ext(resp, "e2ee")["device_lists"]["changed"] == ["@bob:localhost"]


# ---------------------------------------------------------------- account_data

def test_account_data_global_initial_and_live(proxy, alice):
    rid = F.new_room_id()
    alice.queue(F.sync_response(
        join={rid: F.joined_room(F.room_state(alice.user_id, "R"), [F.message(alice.user_id, "m")],
                                 account_data=[F.tags({"m.favourite": {}})])},
        account_data=[F.account_data("m.direct", {}), F.account_data("im.x", {"a": 1})]))
    c = started(proxy, alice)
    resp = c.sync({"lists": {"a": {"ranges": [[0, 9]]}},
                   "extensions": {"account_data": {"enabled": True}}})
    ad = ext(resp, "account_data")
    assert sorted(e["type"] for e in ad["global"]) == ["im.x", "m.direct"]
    assert ad["rooms"] == {rid: [F.tags({"m.favourite": {}})]}
    # nothing changed: nothing sent
    resp = c.sync({}, timeout=100)
    assert "account_data" not in resp["extensions"]
    # a live global change wakes the long-poll, only the changed type comes
    h = run_in_thread(c.sync, {}, timeout=20000)
    time.sleep(1.0)
    assert not h.done()
    alice.queue(F.sync_response(account_data=[F.account_data("im.x", {"a": 2})]))
    resp = h.result(30)
    assert ext(resp, "account_data") == {"global": [F.account_data("im.x", {"a": 2})]}
    # an identical re-delivery is not news
    alice.queue(F.sync_response(account_data=[F.account_data("im.x", {"a": 2})]))
    alice.wait_idle()
    resp = c.sync({}, timeout=500)
    assert "account_data" not in resp["extensions"]
    # a live room change
    alice.queue(F.sync_response(join={rid: F.joined_room(account_data=[F.tags({"u.work": {}})])}))
    alice.wait_idle()
    resp = c.sync({}, timeout=5000)
    assert ext(resp, "account_data")["rooms"] == {rid: [F.tags({"u.work": {}})]}


def test_account_data_room_scope(proxy, alice):
    A = alice.user_id
    r1, r2 = F.new_room_id(), F.new_room_id()
    alice.queue(F.sync_response(join={
        r1: F.joined_room(F.room_state(A, "One"), [F.message(A, "1")], account_data=[F.tags({"a": {}})]),
        r2: F.joined_room(F.room_state(A, "Two"), [F.message(A, "2")], account_data=[F.tags({"b": {}})]),
    }))
    c = started(proxy, alice)
    # r2 is newer: window [0,0] of list "a" holds only r2; no list in scope, r1 listed by ID
    resp = c.sync({"lists": {"a": {"ranges": [[0, 0]]}},
                   "room_subscriptions": {r1: {"timeline_limit": 1}},
                   "extensions": {"account_data": {"enabled": True, "lists": [], "rooms": [r1]}}})
    assert set(resp["rooms"]) == {r1, r2}
    assert ext(resp, "account_data")["rooms"] == {r1: [F.tags({"a": {}})]}
    # live: a change in r2 (out of scope) is not sent, one in r1 is
    alice.queue(F.sync_response(join={r2: F.joined_room(account_data=[F.tags({"b2": {}})])}))
    alice.queue(F.sync_response(join={r1: F.joined_room(account_data=[F.tags({"a2": {}})])}))
    alice.wait_idle()
    resp = c.sync({}, timeout=5000)
    assert ext(resp, "account_data") == {"rooms": {r1: [F.tags({"a2": {}})]}}
    # a new connection with default scope (["*"] lists) sees r2 through the window
    c2 = proxy.client(alice.token)
    resp = c2.sync({"conn_id": "x", "lists": {"a": {"ranges": [[0, 0]]}},
                    "extensions": {"account_data": {"enabled": True}}})
    assert ext(resp, "account_data")["rooms"] == {r2: [F.tags({"b2": {}})]}


# ---------------------------------------------------------------- helpers

def count_rows(conninfo, table):
    return int(pgtmp.psql(conninfo, "SELECT count(*) FROM %s" % table).strip())
