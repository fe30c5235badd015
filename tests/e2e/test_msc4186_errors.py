"""MSC4186 errors: positions the server cannot use, rejected tokens, bad bodies — always a
Matrix error, never a crash.
(docs/behaviour.md, "Simplified sliding sync")"""

import pytest

import fakehs as F
import pgtmp
from helpers import SimplifiedSync


@pytest.fixture
def client(proxy, alice):
    rid = F.new_room_id()
    alice.queue(F.sync_response(join={rid: F.joined_room(F.room_state(alice.user_id, "R"),
                                                         [F.message(alice.user_id, "x")])}))
    return SimplifiedSync(proxy, alice.token)


def err(r):
    assert isinstance(r.json, dict) and isinstance(r.json.get("error"), str), r
    return r.status, r.json["errcode"]


@pytest.mark.parametrize("pos", ["999", "abc", "5/s2633508_17_338", "-1", "1e3", " "])
def test_unusable_pos(client, pos):
    client.sync({})
    assert err(client.request({}, pos=pos)) == (400, "M_UNKNOWN_POS")


def test_pos_of_a_replaced_connection(client):
    client.sync({"conn_id": "c"})
    old = client.pos
    client.reset()
    client.sync({"conn_id": "c"})
    assert err(client.request({"conn_id": "c"}, pos=old)) == (400, "M_UNKNOWN_POS")


def test_pos_of_another_conn_id(client):
    client.sync({"conn_id": "a"})
    assert err(client.request({"conn_id": "b"}, pos=client.pos)) == (400, "M_UNKNOWN_POS")


def test_rejected_token(proxy, hs):
    c = SimplifiedSync(proxy, "not-a-known-token")
    assert err(c.request({})) == (401, "M_UNKNOWN_TOKEN")
    assert err(c.request({}, token=None)) == (401, "M_MISSING_TOKEN")


def test_bad_timeout(client):
    assert err(client.request({}, timeout="soon", http_timeout=10)) == (400, "M_INVALID_PARAM")


BAD_JSON = [
    "not json", "[]", "5", '{"lists": []}', '{"lists": {"a": 5}}', '{"lists": {"a": {"ranges": "x"}}}',
    '{"lists": {"a": {"ranges": [[0, 1]], "timeline_limit": "x"}}}',
    '{"lists": {"a": {"ranges": [[0, 1]], "required_state": [["a"]]}}}',
    '{"lists": {"a": {"ranges": [[0, 1]], "required_state": "x"}}}',
    '{"lists": {"a": {"ranges": [[0, 1]], "filters": []}}}',
    '{"lists": {"a": {"ranges": [[0, 1]], "filters": {"is_dm": "yes"}}}}',
    '{"lists": {"a": {"ranges": [[0, 1]], "filters": {"room_types": "m.space"}}}}',
    '{"room_subscriptions": []}', '{"room_subscriptions": {"!r:x": 5}}',
    '{"room_subscriptions": {"!r:x": {"timeline_limit": {}}}}',
    '{"extensions": []}', '{"extensions": {"to_device": {"enabled": true, "since": 5}}}', '{"conn_id": 5}', '{"a": 1, "a": 2}',
]


@pytest.mark.parametrize("body", BAD_JSON)
def test_bad_bodies(client, body):
    status, code = err(client.request(raw=body.encode()))
    assert status == 400 and code in ("M_BAD_JSON", "M_INVALID_PARAM", "M_NOT_JSON"), (body, code)


INVALID = [
    '{"lists": {"a": {"ranges": [[3, 1]]}}}', '{"lists": {"a": {"ranges": [[-1, 1]]}}}',
    '{"conn_id": "%s"}' % ("x" * 17),
    '{"lists": {"a": {"ranges": [[0, 99999999999999999999]]}}}',
]


@pytest.mark.parametrize("body", INVALID)
def test_invalid_params(client, body):
    status, code = err(client.request(raw=body.encode()))
    assert status == 400 and code in ("M_INVALID_PARAM", "M_BAD_JSON"), (body, code)


def test_odd_but_valid_bodies(client):
    for body in ({"lists": {"a": {"ranges": [[0, 1]], "timeline_limit": 1, "required_state": None,
                                  "filters": None}}},
                 {"lists": {"a": {"range": [0, 1], "timeline_limit": 1}}},
                 {"extensions": {"to_device": None, "unknown_ext": {"enabled": True}}},
                 {"lists": None, "room_subscriptions": None, "extensions": None}):
        client.reset()
        client.sync(body)


def test_pos_after_restart(proxy, db, client):
    client.sync({"conn_id": "room-list"})
    proxy.restart()
    # stored across the restart (docs/behaviour.md, "Connections across restarts")
    client.sync({"conn_id": "room-list"})
    proxy.stop()
    pgtmp.psql(db, "DELETE FROM syncv3_conns")
    proxy.start()
    r = client.request({"conn_id": "room-list"}, pos=client.pos)
    assert err(r) == (400, "M_UNKNOWN_POS"), "nothing stored: the client starts over"
    client.reset()
    client.sync({"conn_id": "room-list"})


def test_cors_preflight(proxy):
    from helpers import SSS_PATH, http_request
    r = http_request(proxy.url + SSS_PATH, method="OPTIONS",
                     headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"})
    assert r.status in (200, 204)
    assert r.headers.get("Access-Control-Allow-Origin") == "*"
    assert "POST" in r.headers.get("Access-Control-Allow-Methods", "")
