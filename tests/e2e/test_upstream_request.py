"""The exact requests syncv3 makes to the homeserver (docs/behaviour.md,
"Upstream requests", "Pollers and new connections")."""

import time

from helpers import User, run_in_thread
import fakehs as F

SYNC_V3 = "/_matrix/client/v3/sync"
FILTER_INITIAL = {"presence": {"not_types": ["*"]}, "room": {"timeline": {"limit": 1}}}
FILTER_NORMAL = {"presence": {"not_types": ["*"]}, "room": {"timeline": {"limit": 50}}}
FILTER_TODEVICE_INITIAL = {"presence": {"not_types": ["*"]},
                           "room": {"rooms": [], "timeline": {"limit": 1}}}


def initial_rooms(user):
    rid = F.new_room_id()
    nb = user.queue(F.sync_response(join={rid: F.joined_room(
        F.room_state(user.user_id, "Room"), [F.message(user.user_id, "hello")])}))
    return rid, nb


def test_versions_is_checked_at_startup(proxy, hs):
    hs.wait_for(lambda reqs: [r for r in reqs if r.path == "/_matrix/client/versions"],
                timeout=10, what="GET /_matrix/client/versions")


def test_first_and_second_sync_requests(proxy, hs, alice):
    _, nb = initial_rooms(alice)
    proxy.client(alice.token).sync({"lists": {"a": {"ranges": [[0, 0]]}}})

    first = hs.wait_for_sync(alice.token, 1)
    assert first.method == "GET"
    assert first.path == SYNC_V3
    assert first.authorization == "Bearer " + alice.token
    assert first.query["timeout"] == "0"
    assert "since" not in first.query
    assert first.query["set_presence"] == "offline"
    assert first.filter == FILTER_INITIAL
    assert "access_token" not in first.query

    second = hs.wait_for_sync(alice.token, 2)
    assert second.path == SYNC_V3
    assert second.query["timeout"] == "30000"
    assert second.query["since"] == nb
    assert second.query["set_presence"] == "offline"
    assert second.filter == FILTER_NORMAL
    assert hs.unknown_since == []


def test_query_parameter_order(proxy, hs, alice):
    initial_rooms(alice)
    proxy.client(alice.token).sync({})
    first = hs.wait_for_sync(alice.token, 1)
    second = hs.wait_for_sync(alice.token, 2)
    assert [k for k, _ in first.query_list] == ["timeout", "set_presence", "filter"]
    assert [k for k, _ in second.query_list] == ["timeout", "since", "set_presence", "filter"]


def test_since_token_is_escaped(proxy, hs, alice):
    odd = "t12-34_5/6+7&x=y z~!%;#"
    rid = F.new_room_id()
    alice.queue(F.sync_response(join={rid: F.joined_room(
        F.room_state(alice.user_id, "Room"), [F.message(alice.user_id, "hi")])}, next_batch=odd))
    proxy.client(alice.token).sync({})
    second = hs.wait_for_sync(alice.token, 2)
    assert second.query["since"] == odd, second.raw_query
    assert [k for k, _ in second.query_list].count("since") == 1


def test_one_poller_per_device(proxy, hs, alice):
    rid, _ = initial_rooms(alice)
    c = proxy.client(alice.token)
    for conn in ("a", "b", "c"):
        c.reset()
        c.sync({"conn_id": conn, "lists": {"l": {"ranges": [[0, 0]]}}})
    for i in range(3):
        alice.queue(F.sync_response(join={rid: F.joined_room(timeline=[F.message(alice.user_id, "m%d" % i)])}))
    alice.wait_idle()
    syncs = alice.syncs()
    for a, b in zip(syncs, syncs[1:]):
        assert a.answered_at is not None and b.time >= a.answered_at - 0.01, \
            "two /sync requests of one device overlapped: %r %r" % (a, b)
    assert len(hs.whoami_requests(alice.token)) == 1


def test_first_request_waits_for_the_initial_sync(proxy, hs, alice):
    rid, _ = initial_rooms(alice)
    hs.hold(alice.token)
    c = proxy.client(alice.token)
    h = run_in_thread(c.request, {"lists": {"a": {"ranges": [[0, 0]]}}}, timeout=100)
    hs.wait_for_sync(alice.token, 1)
    time.sleep(1.5)
    assert not h.done(), "the first request returned before the initial /sync was answered"
    hs.release(alice.token)
    r = h.result(60)
    assert r.status == 200, r
    assert r.json["lists"]["a"]["count"] == 1
    assert rid in r.json["rooms"]


def test_initial_sync_401_gives_m_unknown_token_and_is_not_cached(proxy, hs, alice):
    initial_rooms(alice)
    hs.fail_next(alice.token, "status", status=401)
    c = proxy.client(alice.token)
    status, body = c.request({}, timeout=100)
    assert status == 401, body
    assert body["errcode"] == "M_UNKNOWN_TOKEN"
    # The homeserver accepts the token again: a new attempt works (failure not remembered).
    status, body = c.request({"lists": {"a": {"ranges": [[0, 0]]}}}, timeout=100)
    assert status == 200, body
    assert body["lists"]["a"]["count"] == 1
    assert len(hs.whoami_requests(alice.token)) >= 2


def test_second_device_polls_to_device_only_first(proxy, hs, alice):
    initial_rooms(alice)
    proxy.client(alice.token).sync({})
    alice.wait_idle()

    alice2 = User(hs, "alice")  # same user, new device
    assert alice2.user_id == alice.user_id and alice2.device_id != alice.device_id
    nb = alice2.queue(F.sync_response(to_device=[F.to_device("@bob:localhost", "m.test", {"n": 1})]))
    c2 = proxy.client(alice2.token)
    c2.sync({})
    first = hs.wait_for_sync(alice2.token, 1)
    assert first.query["timeout"] == "0"
    assert "since" not in first.query
    assert first.filter == FILTER_TODEVICE_INITIAL
    second = hs.wait_for_sync(alice2.token, 2)
    assert second.query["since"] == nb
    assert second.query["timeout"] == "30000"
    assert second.filter == FILTER_NORMAL, "to-device-only mode must end after a 200"
