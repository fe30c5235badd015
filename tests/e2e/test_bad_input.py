"""Bad input → 400 (or 413) with an errcode, never a crash (docs/behaviour.md,
"Request parsing", "Errors")."""

import http.client
import json
import time

import pytest

from helpers import SS_PATH
import fakehs as F

LIST = {"a": {"ranges": [[0, 5]]}}


@pytest.fixture
def ready(proxy, alice):
    """alice with one room, initial sync stored."""
    rid = F.new_room_id()
    alice.queue(F.sync_response(join={rid: F.joined_room(
        F.room_state(alice.user_id, "Room"), [F.message(alice.user_id, "hello")])}))
    c = proxy.client(alice.token)
    c.sync({"lists": LIST})
    return c


def assert_matrix_error(r, status=400):
    assert r.status == status, r
    assert isinstance(r.json, dict), "error body must be JSON: %r" % r
    assert isinstance(r.json.get("error"), str), r
    assert isinstance(r.json.get("errcode"), str) and r.json["errcode"].startswith("M_"), r


BAD_BODIES = {
    "truncated": b'{"lists": {',
    "not_json": b"this is not json",
    "top_level_array": b"[]",
    "top_level_number": b"42",
    "lists_is_array": b'{"lists": []}',
    "ranges_is_string": b'{"lists": {"a": {"ranges": "0-5"}}}',
    "range_not_ints": b'{"lists": {"a": {"ranges": [["a", "b"]]}}}',
    "timeline_limit_string": b'{"lists": {"a": {"ranges": [[0, 1]], "timeline_limit": "5"}}}',
    "sort_is_string": b'{"lists": {"a": {"ranges": [[0, 1]], "sort": "by_name"}}}',
    "required_state_not_pairs": b'{"lists": {"a": {"ranges": [[0, 1]], "required_state": "all"}}}',
    "subscriptions_is_array": b'{"room_subscriptions": []}',
    "conn_id_number": b'{"conn_id": 5}',
    "extension_enabled_string": b'{"extensions": {"to_device": {"enabled": "yes"}}}',
    "range_end_before_start": b'{"lists": {"a": {"ranges": [[5, 2]]}}}',
    "range_negative": b'{"lists": {"a": {"ranges": [[-1, 3]]}}}',
    "ranges_overlap": b'{"lists": {"a": {"ranges": [[0, 10], [5, 20]]}}}',
    "ranges_touch": b'{"lists": {"a": {"ranges": [[0, 10], [10, 20]]}}}',
    "conn_id_too_long": json.dumps({"conn_id": "c" * 17}).encode(),
    "txn_id_too_long": json.dumps({"txn_id": "t" * 65}).encode(),
    "invalid_utf8": b'{"conn_id": "\xff\xfe"}',
    "deep_nesting": b'{"x": ' + b"[" * 100000 + b"]" * 100000 + b"}",
}


@pytest.mark.parametrize("name", sorted(BAD_BODIES))
def test_bad_body_is_400_with_errcode(ready, name):
    r = ready.request(raw=BAD_BODIES[name], timeout=100)
    assert_matrix_error(r)
    # still serving, and the connection still works
    ready.sync({}, timeout=100)


def test_bad_body_on_existing_connection_keeps_it(ready):
    pos = ready.pos
    r = ready.request(raw=b'{"lists": {"a": {"ranges": [[3, 1]]}}}', pos=pos, timeout=100)
    assert_matrix_error(r)
    r = ready.request({}, pos=pos, timeout=100)
    assert r.status == 200, "errors must not break the connection: %r" % r


def test_boundary_lengths_are_accepted(ready):
    ready.reset()
    r = ready.request({"conn_id": "c" * 16, "txn_id": "t" * 64, "lists": LIST}, timeout=100)
    assert r.status == 200, r
    assert r.json.get("txn_id") == "t" * 64
    r = ready.request({"lists": {"a": {"ranges": [[0, 9], [10, 20]]}}}, timeout=100)
    assert r.status == 200, r


def test_empty_body_is_an_empty_request(ready):
    ready.reset()
    r = ready.request(raw=b"", timeout=100)
    assert r.status == 200, r
    assert isinstance(r.json["pos"], str)
    assert r.json.get("lists", {}) == {}


def test_bad_timeout_is_400(ready):
    r = ready.request({}, pos=ready.pos, query={"timeout": "soon"})
    assert_matrix_error(r)


def test_non_integer_pos_is_400(ready):
    r = ready.request({}, pos="abc", timeout=100)
    assert_matrix_error(r)


def test_unknown_pos_is_400_m_unknown_pos_without_delay(proxy, alice, ready):
    r = ready.request({}, pos="987654", timeout=100)
    assert_matrix_error(r)
    assert r.json["errcode"] == "M_UNKNOWN_POS", r
    assert r.elapsed < 0.9, "M_UNKNOWN_POS must be sent without the error delay (%.2fs)" % r.elapsed


def test_pos_of_another_conn_id_is_unknown(ready):
    pos = ready.pos  # belongs to conn_id ""
    r = ready.request({"conn_id": "other"}, pos=pos, timeout=100)
    assert_matrix_error(r)
    assert r.json["errcode"] == "M_UNKNOWN_POS", r


def test_pos_without_any_connection_is_unknown(proxy, bob):
    bob.queue(F.sync_response())
    r = proxy.client(bob.token).request({}, pos="1", timeout=100)
    assert_matrix_error(r)
    assert r.json["errcode"] == "M_UNKNOWN_POS", r


def test_huge_body_is_rejected(ready, proxy):
    size = 48 * 1024 * 1024
    prefix = b'{"conn_id": "x", "padding": "'
    suffix = b'"}'
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=60)
    conn.putrequest("POST", SS_PATH + "?timeout=100")
    conn.putheader("Authorization", "Bearer " + ready.token)
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", str(len(prefix) + size + len(suffix)))
    conn.endheaders()
    t0 = time.monotonic()
    try:
        conn.send(prefix)
        chunk = b"a" * (1024 * 1024)
        for _ in range(size // len(chunk)):
            conn.send(chunk)
        conn.send(suffix)
    except OSError:
        pass  # the server may answer and close before reading everything
    try:
        resp = conn.getresponse()
        body = resp.read()
    except (OSError, http.client.HTTPException) as e:
        pytest.fail("no HTTP answer to a %d MB body (%r)" % (size >> 20, e))
    finally:
        conn.close()
    assert resp.status in (400, 413), (resp.status, body[:200])
    err = json.loads(body)
    assert err["errcode"].startswith("M_"), err
    assert time.monotonic() - t0 < 60
    ready.sync({}, timeout=100)  # still alive
