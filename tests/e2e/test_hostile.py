"""Hostile clients: malformed and oversized requests, slow and vanishing senders,
bounded memory under many connections, and a graceful SIGTERM with parked long-polls.

Every bad request must get a Matrix error (400, or 413 for size) at once; the process must
never crash and must keep serving normal requests afterwards (the `proxy` fixture also fails
the test on a crash, a non-zero exit or a sanitizer report).
"""

import json
import os
import random
import signal
import socket
import string
import threading
import time

import pytest

import fakehs as F
from helpers import SS_PATH, metric_value, run_in_thread, sanitizer_report, wait_until

LIST = {"a": {"ranges": [[0, 5]]}}
MAX_SAFE = 2 ** 53 - 1
ERRCODES_400 = ("M_BAD_JSON", "M_INVALID_PARAM", "M_NOT_JSON", "M_UNKNOWN_POS", "M_TOO_LARGE")


@pytest.fixture
def ready(proxy, alice):
    """alice with one room, initial sync stored; returns her client."""
    return _ready_client(proxy, alice)


def _ready_client(proxy, alice):
    rid = F.new_room_id()
    alice.queue(F.sync_response(join={rid: F.joined_room(
        F.room_state(alice.user_id, "Room"), [F.message(alice.user_id, "hello")])}))
    c = proxy.client(alice.token)
    c.sync({"lists": LIST})
    c.room_id = rid
    return c


def assert_matrix_error(r, statuses=(400,), errcodes=None):
    assert r.status in statuses, r
    assert isinstance(r.json, dict), "error body must be JSON: %r" % r
    assert isinstance(r.json.get("error"), str), r
    code = r.json.get("errcode")
    assert isinstance(code, str) and code.startswith("M_"), r
    if errcodes is not None:
        assert code in errcodes, "errcode %r not in %r: %r" % (code, errcodes, r)


def assert_still_serving(proxy, c):
    """The process is up and a fresh connection gets a normal answer."""
    assert proxy.alive(), "syncv3 died:\n%s" % proxy.stderr_tail()
    r = c.request({"conn_id": "probe", "lists": LIST}, timeout=100, http_timeout=20)
    assert r.status == 200, "a normal request after the hostile one failed: %r" % r
    assert r.json["lists"]["a"]["count"] == 1, r


def raw_http(port, head, body_parts=(), delay=0.0, timeout=30.0, read=True):
    """Sends `head` then each of body_parts (sleeping `delay` between them) on one socket;
    returns (status, headers_text, body_bytes) or None when read is False."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(head)
        for part in body_parts:
            if delay:
                time.sleep(delay)
            s.sendall(part)
        if not read:
            return None
        return read_http_response(s)
    finally:
        s.close()


def read_http_response(s):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            raise AssertionError("connection closed before a full response head: %r" % data)
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    if "content-length" in hdrs:
        n = int(hdrs["content-length"])
        while len(rest) < n:
            chunk = s.recv(65536)
            if not chunk:
                break
            rest += chunk
        body = rest[:n]
    elif hdrs.get("transfer-encoding", "").lower() == "chunked":
        buf = rest
        body = b""
        while True:
            while b"\r\n" not in buf:
                buf += s.recv(65536)
            size_line, _, buf = buf.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            while len(buf) < size + 2:
                buf += s.recv(65536)
            if size == 0:
                break
            body += buf[:size]
            buf = buf[size + 2:]
    else:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            rest += chunk
        body = rest
    return status, hdrs, body


def post_head(token, length=None, query="timeout=100", chunked=False):
    lines = ["POST %s?%s HTTP/1.1" % (SS_PATH, query), "Host: 127.0.0.1",
             "Authorization: Bearer " + token, "Content-Type: application/json",
             "Connection: close"]
    if chunked:
        lines.append("Transfer-Encoding: chunked")
    elif length is not None:
        lines.append("Content-Length: %d" % length)
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# --------------------------------------------------------------------------- wrong types

def _list(**kw):
    d = {"ranges": [[0, 5]]}
    d.update(kw)
    return {"lists": {"a": d}}


_RID = "!room:localhost"
WRONG_TYPES = {
    # top-level fields
    "lists_string": {"lists": "a"},
    "lists_number": {"lists": 7},
    "lists_true": {"lists": True},
    "room_subscriptions_string": {"room_subscriptions": "x"},
    "room_subscriptions_number": {"room_subscriptions": 1},
    "unsubscribe_rooms_object": {"unsubscribe_rooms": {"a": 1}},
    "unsubscribe_rooms_string": {"unsubscribe_rooms": _RID},
    "unsubscribe_rooms_numbers": {"unsubscribe_rooms": [1, 2]},
    "extensions_array": {"extensions": []},
    "extensions_string": {"extensions": "all"},
    "conn_id_array": {"conn_id": ["a"]},
    "conn_id_object": {"conn_id": {}},
    "txn_id_number": {"txn_id": 5},
    "txn_id_array": {"txn_id": ["t"]},
    # lists.x
    "list_is_array": {"lists": {"a": [[0, 5]]}},
    "list_is_string": {"lists": {"a": "0-5"}},
    "list_is_number": {"lists": {"a": 5}},
    "ranges_object": _list(ranges={"0": 5}),
    "ranges_flat_pair": _list(ranges=[0, 5]),
    "ranges_single": _list(ranges=[[0]]),
    "ranges_triple": _list(ranges=[[0, 1, 2]]),
    "ranges_empty_pair": _list(ranges=[[]]),
    "ranges_floats": _list(ranges=[[0.5, 3.5]]),
    "ranges_bools": _list(ranges=[[False, True]]),
    "ranges_nulls": _list(ranges=[[None, None]]),
    "ranges_strings_numeric": _list(ranges=[["0", "5"]]),
    "ranges_nested_deeper": _list(ranges=[[[0], [5]]]),
    "sort_number": _list(sort=1),
    "sort_object": _list(sort={"by_recency": True}),
    "sort_numbers": _list(sort=[1, 2]),
    "sort_nested": _list(sort=[["by_recency"]]),
    "timeline_limit_float": _list(timeline_limit=2.5),
    "timeline_limit_bool": _list(timeline_limit=True),
    "timeline_limit_array": _list(timeline_limit=[5]),
    "required_state_object": _list(required_state={"m.room.name": ""}),
    "required_state_flat_strings": _list(required_state=["m.room.name", ""]),
    "required_state_single": _list(required_state=[["m.room.name"]]),
    "required_state_triple": _list(required_state=[["m.room.name", "", "x"]]),
    "required_state_numbers": _list(required_state=[[1, 2]]),
    "required_state_null_key": _list(required_state=[["m.room.name", None]]),
    "bump_event_types_string": _list(bump_event_types="m.room.message"),
    "bump_event_types_numbers": _list(bump_event_types=[1]),
    "slow_get_all_rooms_string": _list(slow_get_all_rooms="yes"),
    # lists.x.filters.*
    "filters_string": _list(filters="dm"),
    "filters_array": _list(filters=[]),
    "filters_is_dm_string": _list(filters={"is_dm": "yes"}),
    "filters_is_dm_number": _list(filters={"is_dm": 1}),
    "filters_is_encrypted_string": _list(filters={"is_encrypted": "true"}),
    "filters_is_invite_array": _list(filters={"is_invite": [True]}),
    "filters_room_name_like_number": _list(filters={"room_name_like": 5}),
    "filters_room_name_like_array": _list(filters={"room_name_like": ["x"]}),
    "filters_spaces_string": _list(filters={"spaces": "!s:localhost"}),
    "filters_spaces_numbers": _list(filters={"spaces": [1]}),
    "filters_tags_string": _list(filters={"tags": "m.favourite"}),
    "filters_tags_object": _list(filters={"tags": {"m.favourite": {}}}),
    "filters_not_tags_numbers": _list(filters={"not_tags": [1]}),
    "filters_room_types_string": _list(filters={"room_types": "m.space"}),
    "filters_room_types_numbers": _list(filters={"room_types": [1]}),
    "filters_not_room_types_object": _list(filters={"not_room_types": {}}),
    # room_subscriptions.x
    "subscription_is_array": {"room_subscriptions": {_RID: []}},
    "subscription_is_string": {"room_subscriptions": {_RID: "all"}},
    "subscription_timeline_limit_string": {"room_subscriptions": {_RID: {"timeline_limit": "5"}}},
    "subscription_timeline_limit_float": {"room_subscriptions": {_RID: {"timeline_limit": 1.5}}},
    "subscription_timeline_limit_object": {"room_subscriptions": {_RID: {"timeline_limit": {}}}},
    "subscription_required_state_not_pairs": {
        "room_subscriptions": {_RID: {"required_state": [["m.room.name"]]}}},
    "subscription_required_state_string": {
        "room_subscriptions": {_RID: {"required_state": "*"}}},
    # extensions.x
    "ext_is_array": {"extensions": {"to_device": []}},
    "ext_is_bool": {"extensions": {"e2ee": True}},
    "ext_lists_string": {"extensions": {"account_data": {"enabled": True, "lists": "a"}}},
    "ext_rooms_string": {"extensions": {"receipts": {"enabled": True, "rooms": "!r:localhost"}}},
}
for _ext in ("to_device", "e2ee", "account_data", "typing", "receipts"):
    WRONG_TYPES["ext_%s_enabled_string" % _ext] = {"extensions": {_ext: {"enabled": "yes"}}}
    WRONG_TYPES["ext_%s_enabled_number" % _ext] = {"extensions": {_ext: {"enabled": 1}}}
    WRONG_TYPES["ext_%s_enabled_array" % _ext] = {"extensions": {_ext: {"enabled": [True]}}}


@pytest.mark.parametrize("name", sorted(WRONG_TYPES))
def test_wrong_types_are_400(proxy, ready, name):
    r = ready.request(WRONG_TYPES[name], timeout=100, http_timeout=20)
    assert_matrix_error(r, errcodes=("M_BAD_JSON", "M_INVALID_PARAM", "M_NOT_JSON"))
    # the same bad body on an existing connection is refused without breaking it
    r = ready.request(WRONG_TYPES[name], pos=ready.pos, timeout=100, http_timeout=20)
    assert_matrix_error(r, errcodes=("M_BAD_JSON", "M_INVALID_PARAM", "M_NOT_JSON"))
    ready.sync({}, timeout=100)
    assert_still_serving(proxy, ready)


# --------------------------------------------------------------------------- structure bombs

NESTING = 100000
DEEP_BODIES = {
    "top_level_arrays": b"[" * NESTING + b"]" * NESTING,
    "top_level_objects": b'{"a":' * NESTING + b"1" + b"}" * NESTING,
    "arrays_in_ranges": b'{"lists": {"a": {"ranges": ' + b"[" * NESTING + b"]" * NESTING + b"}}}",
    "objects_in_filters": (b'{"lists": {"a": {"ranges": [[0, 1]], "filters": '
                           + b'{"x":' * NESTING + b"0" + b"}" * NESTING + b"}}}"),
    "arrays_in_unknown_field": b'{"unknown": ' + b"[" * NESTING + b"]" * NESTING + b"}",
    "unterminated_arrays": b'{"lists": ' + b"[" * NESTING,
}


@pytest.mark.parametrize("name", sorted(DEEP_BODIES))
def test_deeply_nested_json_is_refused_without_overflow(proxy, ready, name):
    r = ready.request(raw=DEEP_BODIES[name], timeout=100, http_timeout=30)
    assert_matrix_error(r, statuses=(400, 413))
    assert r.elapsed < 5, "took %.1fs" % r.elapsed
    assert_still_serving(proxy, ready)


def test_max_safe_integer_ranges_answer_quickly(proxy, ready):
    """Indices up to 2^53-1 are valid; a window that large must not be materialised."""
    ready.reset()
    r = ready.request({"conn_id": "big", "lists": {
        "all": {"ranges": [[0, MAX_SAFE]], "timeline_limit": 1},
        "split": {"ranges": [[0, 0], [2, MAX_SAFE]]},
        "far": {"ranges": [[MAX_SAFE - 10, MAX_SAFE]]},
    }}, timeout=100, http_timeout=20)
    assert r.status == 200, r
    assert r.elapsed < 3, "a [0, 2^53-1] window took %.1fs" % r.elapsed
    lists = r.json["lists"]
    assert lists["all"]["count"] == 1
    ids = [rid for op in lists["all"]["ops"] if op["op"] == "SYNC" for rid in op["room_ids"]]
    assert ids == [ready.room_id], lists["all"]
    assert lists["far"]["count"] == 1
    assert not [op for op in lists["far"].get("ops") or [] if op.get("room_ids")], lists["far"]
    # and a later long-poll on that connection still behaves
    r2 = ready.request({"conn_id": "big"}, pos=r.json["pos"], timeout=200, http_timeout=20)
    assert r2.status == 200, r2
    assert r2.elapsed < 3, r2


@pytest.mark.parametrize("bad", [2 ** 53 + 1, 2 ** 63 - 1, 2 ** 63, 2 ** 64, 10 ** 30, -(2 ** 63)])
def test_out_of_range_indices_are_400(proxy, ready, bad):
    body = ('{"lists": {"a": {"ranges": [[0, %d]]}}}' % bad).encode()
    r = ready.request(raw=body, timeout=100, http_timeout=20)
    assert_matrix_error(r, errcodes=("M_BAD_JSON", "M_INVALID_PARAM"))
    assert_still_serving(proxy, ready)


def test_ten_thousand_lists_are_400_invalid_param(proxy, ready):
    lists = {"l%d" % i: {"ranges": [[0, 1]]} for i in range(10000)}
    r = ready.request({"lists": lists}, timeout=100, http_timeout=30)
    assert_matrix_error(r, errcodes=("M_INVALID_PARAM",))
    assert r.elapsed < 5, r
    assert_still_serving(proxy, ready)


def test_list_count_boundary(proxy, ready):
    lists = {"l%d" % i: {"ranges": [[0, 1]]} for i in range(101)}
    r = ready.request({"conn_id": "b101", "lists": lists}, timeout=100, http_timeout=30)
    assert_matrix_error(r, errcodes=("M_INVALID_PARAM",))
    del lists["l100"]
    r = ready.request({"conn_id": "b100", "lists": lists}, timeout=100, http_timeout=30)
    assert r.status == 200, r
    assert len(r.json["lists"]) == 100
    assert all(v["count"] == 1 for v in r.json["lists"].values())


def test_five_thousand_ranges_are_400_invalid_param(proxy, ready):
    ranges = [[3 * i, 3 * i + 1] for i in range(5000)]
    r = ready.request({"lists": {"a": {"ranges": ranges}}}, timeout=100, http_timeout=30)
    assert_matrix_error(r, errcodes=("M_INVALID_PARAM",))
    assert r.elapsed < 5, r
    assert_still_serving(proxy, ready)


def test_many_list_keys_in_subscriptions_and_extensions(proxy, ready):
    """10,000 room subscriptions / extension list names: refused or served, never slow or fatal."""
    subs = {"!r%d:localhost" % i: {"timeline_limit": 1} for i in range(10000)}
    r = ready.request({"room_subscriptions": subs}, timeout=100, http_timeout=30)
    assert_matrix_error(r, errcodes=("M_INVALID_PARAM",))
    r = ready.request({"unsubscribe_rooms": list(subs)}, timeout=100, http_timeout=30)
    assert_matrix_error(r, errcodes=("M_INVALID_PARAM",))
    assert_still_serving(proxy, ready)


# --------------------------------------------------------------------------- body size

def send_and_read(port, head, body, timeout=30.0):
    """Sends head+body (the server may answer and close before reading it all) and reads the
    answer."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        try:
            s.sendall(head)
            for i in range(0, len(body), 65536):
                s.sendall(body[i:i + 65536])
        except (BrokenPipeError, ConnectionResetError):
            pass
        return read_http_response(s)
    finally:
        s.close()


def test_body_over_one_mib_is_413(proxy, ready):
    limit = 1 << 20
    prefix, suffix = b'{"txn_id": "x", "pad": "', b'"}'
    body = prefix + b"a" * (limit + 1 - len(prefix) - len(suffix)) + suffix
    assert len(body) == limit + 1
    status, _, resp = send_and_read(proxy.port, post_head(ready.token, length=len(body)), body)
    assert status == 413, (status, resp[:200])
    assert json.loads(resp)["errcode"] == "M_TOO_LARGE"
    assert_still_serving(proxy, ready)


def test_chunked_body_over_one_mib_is_413(proxy, ready):
    """No Content-Length: the limit is enforced while reading."""
    chunk = b"a" * 65536
    parts = [b'%x\r\n{"pad": "\r\n' % len(b'{"pad": "')]
    parts += [b"%x\r\n" % len(chunk) + chunk + b"\r\n"] * 20  # 1.25 MiB
    parts += [b'2\r\n"}\r\n', b"0\r\n\r\n"]
    try:
        status, _, body = raw_http(proxy.port, post_head(ready.token, chunked=True), parts)
    except (BrokenPipeError, ConnectionResetError) as e:
        pytest.fail("no answer to an oversized chunked body: %r" % e)
    assert status == 413, (status, body[:200])
    assert json.loads(body)["errcode"] == "M_TOO_LARGE"
    assert_still_serving(proxy, ready)


def test_lying_content_length_is_413_at_once(proxy, ready):
    """A Content-Length of 1 TB with no body: answered from the header, no allocation."""
    t0 = time.monotonic()
    status, _, body = raw_http(proxy.port, post_head(ready.token, length=10 ** 12), timeout=10)
    assert status == 413, (status, body[:200])
    assert json.loads(body)["errcode"] == "M_TOO_LARGE"
    assert time.monotonic() - t0 < 3
    assert_still_serving(proxy, ready)


def test_body_of_exactly_one_mib_is_accepted(proxy, ready):
    limit = 1 << 20
    prefix, suffix = b'{"conn_id": "one", "lists": {"a": {"ranges": [[0, 5]]}}, "pad": "', b'"}'
    body = prefix + b"a" * (limit - len(prefix) - len(suffix)) + suffix
    assert len(body) == limit
    r = ready.request(raw=body, timeout=100, http_timeout=30)
    assert r.status == 200, r
    assert r.json["lists"]["a"]["count"] == 1


# --------------------------------------------------------------------------- slow / vanishing senders

def test_slow_sender_is_answered_and_does_not_block_others(proxy, ready, bob):
    bob.queue(F.sync_response(join={F.new_room_id(): F.joined_room(
        F.room_state(bob.user_id, "Bob's room"), [F.message(bob.user_id, "hi")])}))
    bob_c = proxy.client(bob.token)
    bob_c.sync({"lists": LIST})  # bob's poller is running before the slow one begins

    body = json.dumps({"conn_id": "slow", "txn_id": "trickle",
                       "lists": {"s": {"ranges": [[0, 3]], "timeline_limit": 1}}}).encode()
    parts = [body[i:i + 1] for i in range(len(body))]
    delay = 3.0 / len(parts)
    t0 = time.monotonic()
    slow = run_in_thread(raw_http, proxy.port, post_head(ready.token, length=len(body)), parts,
                         delay=delay, timeout=30)
    time.sleep(0.5)
    others = []
    while time.monotonic() - t0 < 2.5:  # all of these while the slow body is still arriving
        assert not slow.done(), "the slow request finished too early"
        r = bob_c.request({"conn_id": "fast%d" % len(others), "lists": LIST}, timeout=100,
                          http_timeout=10)
        others.append(r)
        assert r.status == 200, r
        assert r.elapsed < 1.0, "a normal request took %.2fs while a slow sender was in flight" \
            % r.elapsed
    assert len(others) >= 2
    assert not slow.done(), "the slow request finished before its body was sent"
    status, _, resp_body = slow.result(30)
    assert time.monotonic() - t0 >= 2.9
    assert status == 200, resp_body[:300]
    resp = json.loads(resp_body)
    assert resp["txn_id"] == "trickle"
    assert resp["lists"]["s"]["count"] == 1
    assert ready.room_id in resp["rooms"]
    assert resp["rooms"][ready.room_id]["timeline"][-1]["content"]["body"] == "hello"


def test_slow_headers_do_not_block_others(proxy, ready):
    """A client that trickles its request line and headers does not hold the server."""
    head = post_head(ready.token, length=2)
    parts = [head[i:i + 1] for i in range(len(head))] + [b"{}"]
    slow = run_in_thread(raw_http, proxy.port, b"", parts, delay=2.0 / len(parts), timeout=30)
    time.sleep(0.3)
    r = ready.request({"conn_id": "fast", "lists": LIST}, timeout=100, http_timeout=10)
    assert r.status == 200 and r.elapsed < 1.0, r
    assert not slow.done()
    status, _, body = slow.result(30)
    assert status == 200, body[:300]


def sigterm_and_wait(proxy, secs=10.0):
    """SIGTERM; returns the exit status, or None after killing a process that did not exit
    within `secs` (the fixture then has nothing left to record)."""
    proxy.proc.send_signal(signal.SIGTERM)
    try:
        return proxy.proc.wait(secs)
    except Exception:  # noqa: BLE001 - subprocess.TimeoutExpired
        proxy.proc.kill()
        proxy.proc.wait()
        proxy.proc = None
        return None



@pytest.mark.parametrize("how", [
    "close",
    "reset",
])
def test_client_disconnecting_mid_body(proxy, ready, how):
    body = json.dumps({"conn_id": "gone", "lists": LIST}).encode()
    for _ in range(20):
        s = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
        s.sendall(post_head(ready.token, length=len(body) + 1000) + body[:len(body) // 2])
        if how == "reset":
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        elif how == "half_close":
            s.shutdown(socket.SHUT_WR)
            s.settimeout(5)
            try:
                s.recv(65536)  # either an error answer or EOF, but no hang past 5 s
            except socket.timeout:
                pytest.fail("a half-closed request with a short body was left hanging")
            except ConnectionResetError:
                pass
        s.close()
    # a long-poll whose client goes away while parked
    r = ready.request({}, pos=ready.pos, timeout=100)
    assert r.status == 200
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    b = b"{}"
    s.sendall(post_head(ready.token, length=len(b),
                        query="timeout=5000&pos=%s" % r.json["pos"]) + b)
    time.sleep(0.3)
    s.close()
    time.sleep(0.2)
    assert_still_serving(proxy, ready)
    # nothing left behind holds up a shutdown
    t0 = time.monotonic()
    rc = sigterm_and_wait(proxy, 10.0)
    assert rc is not None, "syncv3 did not exit within 10 s of SIGTERM after clients " \
        "vanished mid-body"
    assert rc == 0, proxy.stderr_tail()
    assert time.monotonic() - t0 < 10


# --------------------------------------------------------------------------- encodings

BAD_ENCODINGS = {
    "invalid_utf8_list_key": b'{"lists": {"\xff\xfe": {"ranges": [[0, 1]]}}}',
    "invalid_utf8_txn_id": b'{"txn_id": "ab\xc3"}',
    "overlong_utf8_conn_id": b'{"conn_id": "\xc0\xaf"}',
    "surrogate_utf8_room_name_like": (b'{"lists": {"a": {"ranges": [[0, 1]], '
                                      b'"filters": {"room_name_like": "\xed\xa0\x80"}}}}'),
    "lone_continuation_subscription": b'{"room_subscriptions": {"!\x80:localhost": {}}}',
    "invalid_utf8_sort": b'{"lists": {"a": {"ranges": [[0, 1]], "sort": ["by_\xfe"]}}}',
    "invalid_utf8_required_state": (b'{"lists": {"a": {"ranges": [[0, 1]], '
                                    b'"required_state": [["m.room.\xf8\x88\x80\x80\x80", ""]]}}}'),
    "lone_surrogate_escape_txn_id": b'{"txn_id": "\\ud800"}',
    "raw_nul_in_string": b'{"txn_id": "a\x00b"}',
    "raw_control_char_in_string": b'{"txn_id": "a\x01b"}',
    "nul_after_document": b'{"txn_id": "a"}\x00',
    "utf16_body": '{"txn_id": "a"}'.encode("utf-16"),
}


@pytest.mark.parametrize("name", sorted(BAD_ENCODINGS))
def test_bad_encodings_are_400(proxy, ready, name):
    r = ready.request(raw=BAD_ENCODINGS[name], timeout=100, http_timeout=20)
    assert_matrix_error(r, errcodes=("M_BAD_JSON", "M_INVALID_PARAM", "M_NOT_JSON"))
    assert_still_serving(proxy, ready)


def _nul_bodies():
    return {
        "txn_id": {"txn_id": "a\u0000b"},
        "conn_id": {"conn_id": "a\u0000b"},
        "list_key": {"lists": {"a\u0000b": {"ranges": [[0, 1]]}}},
        "room_subscription": {"room_subscriptions": {"!ro\u0000om:localhost": {}}},
        "room_name_like": {"lists": {"a": {"ranges": [[0, 1]],
                                           "filters": {"room_name_like": "Ro\u0000om"}}}},
        "required_state": {"lists": {"a": {"ranges": [[0, 1]],
                                           "required_state": [["m.room.name\u0000x", ""]]}}},
    }


@pytest.mark.parametrize("field", ["txn_id", "conn_id", "list_key", "room_subscription",
                                   "room_name_like", "required_state"])
def test_escaped_nul_in_strings(proxy, ready, field):
    """An escaped NUL (\\u0000) inside a string is refused with 400, or kept intact: it must
    never silently truncate the string (which would alias another value)."""
    body = _nul_bodies()[field]
    r = ready.request(body, timeout=100, http_timeout=20)
    if r.status != 200:
        assert_matrix_error(r, errcodes=("M_BAD_JSON", "M_INVALID_PARAM", "M_NOT_JSON"))
    else:
        j = r.json
        if field == "txn_id":
            assert j.get("txn_id") == "a\u0000b", j
        elif field == "list_key":
            assert list(j.get("lists", {})) == ["a\u0000b"], j
        elif field == "room_name_like":
            # "Ro\0om" does not match the room named "Room"
            assert j["lists"]["a"]["count"] == 0, j
        elif field == "conn_id":
            # it is a different connection from conn_id "a"
            r2 = ready.request({"conn_id": "a"}, pos=j["pos"], timeout=100)
            assert r2.status == 400 and r2.json["errcode"] == "M_UNKNOWN_POS", r2
        elif field == "room_subscription":
            assert not j.get("rooms"), j
    assert_still_serving(proxy, ready)


# --------------------------------------------------------------------------- pos

@pytest.mark.parametrize("pos", ["-1", "-9223372036854775808", "abc", "1abc", "0x10", "1e3",
                                 "1.5", "99999999999999999999999999",
                                 "9223372036854775807", "18446744073709551617", "%00",
                                 "\u00e9", "1" * 5000])
def test_bad_or_unknown_pos_is_400(proxy, ready, pos):
    r = ready.request({}, pos=pos, timeout=100, http_timeout=20)
    assert_matrix_error(r, errcodes=("M_UNKNOWN_POS", "M_INVALID_PARAM"))
    assert r.elapsed < 0.9, r
    # the real connection is untouched
    ready.sync({}, timeout=100)
    assert_still_serving(proxy, ready)


# --------------------------------------------------------------------------- memory

def vm_rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for pid %d" % pid)


def test_memory_stays_bounded_with_many_connections(make_proxy, alice):
    # Under AddressSanitizer freed memory sits in a quarantine (256 MiB by
    # default) and would count as growth: keep it small for this process.
    asan = os.environ.get("ASAN_OPTIONS", "detect_leaks=1")
    proxy = make_proxy(extra_env={"ASAN_OPTIONS": asan + ":quarantine_size_mb=4"})
    ready = _ready_client(proxy, alice)
    n_conns, n_lists, bound_mib = 2000, 100, 200
    rng = random.Random(1234)

    def body(i):
        keys = set()
        while len(keys) < n_lists:
            keys.add("".join(rng.choice(string.ascii_letters + string.digits)
                             for _ in range(rng.randint(8, 64))))
        return {"conn_id": "m%d" % i, "lists": {k: {"ranges": [[0, rng.randint(0, 20)]],
                                                    "timeline_limit": rng.randint(0, 5)}
                                                for k in keys}}

    bodies = [body(i) for i in range(n_conns)]
    # warm up (allocator arenas, caches), then take the baseline
    for i in range(20):
        r = ready.request({"conn_id": "w%d" % i, "lists": LIST}, timeout=100)
        assert r.status == 200, r
    _, text = proxy.metrics()
    conns_before = metric_value(text, "sliding_sync_api_num_active_conns")
    assert conns_before is not None, "sliding_sync_api_num_active_conns is not exported"
    rss_before = vm_rss_kib(proxy.proc.pid)

    failures = []
    lock = threading.Lock()
    it = iter(range(n_conns))

    def worker():
        while True:
            with lock:
                i = next(it, None)
            if i is None:
                return
            r = ready.request(bodies[i], timeout=100, http_timeout=60)
            if r.status != 200 or len(r.json.get("lists", {})) != n_lists:
                with lock:
                    failures.append((i, r))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    assert not failures, "%d requests failed, first: %r" % (len(failures), failures[:3])
    elapsed = time.monotonic() - t0
    assert proxy.alive()
    rss_after = vm_rss_kib(proxy.proc.pid)
    grown_mib = (rss_after - rss_before) / 1024.0
    _, text = proxy.metrics()
    conns_after = metric_value(text, "sliding_sync_api_num_active_conns")
    print("2000 connections: %.1fs, RSS %d -> %d KiB (+%.1f MiB), conns %s -> %s"
          % (elapsed, rss_before, rss_after, grown_mib, conns_before, conns_after))
    assert grown_mib < bound_mib, "RSS grew by %.1f MiB for %d connections" % (grown_mib, n_conns)
    # a device keeps at most 64 connections (the least recently used ones end)
    assert conns_after <= conns_before + 64, (conns_before, conns_after)
    # re-sending on the same conn_ids replaces state rather than adding to it
    for i in range(0, n_conns, 10):
        r = ready.request(bodies[i], timeout=100, http_timeout=60)
        assert r.status == 200, r
    _, text = proxy.metrics()
    assert metric_value(text, "sliding_sync_api_num_active_conns") == conns_after
    assert_still_serving(proxy, ready)


# --------------------------------------------------------------------------- shutdown

def test_sigterm_answers_parked_long_polls_and_restart_resumes(proxy, hs, ready, alice):
    alice.wait_idle()
    n_parked = 20
    clients = []
    for i in range(n_parked):
        c = proxy.client(alice.token)
        resp = c.sync({"conn_id": "park%d" % i, "lists": LIST})
        assert resp["lists"]["a"]["count"] == 1
        clients.append(c)

    def park(c, i):
        return c.request({"conn_id": "park%d" % i}, pos=c.pos, timeout=60000, http_timeout=30)

    handles = [run_in_thread(park, c, i) for i, c in enumerate(clients)]
    time.sleep(1.5)
    assert not any(h.done() for h in handles), "long-polls returned before the signal"
    alice.wait_idle()
    before = alice.syncs()
    n_syncs = len(before)
    stored_since = before[-1].since  # the poller's in-flight /sync carries the stored token
    assert stored_since is not None

    t0 = time.monotonic()
    proxy.proc.send_signal(signal.SIGTERM)
    results = []
    for h in handles:
        left = max(0.1, t0 + 5.0 - time.monotonic())
        try:
            results.append(h.result(left))
        except AssertionError:
            pytest.fail("a parked long-poll was not answered within 5 s of SIGTERM")
        except OSError as e:
            results.append(e)
    answered = time.monotonic() - t0
    for r in results:
        assert not isinstance(r, Exception), \
            "a parked long-poll got no HTTP answer on SIGTERM (%r)" % (r,)
        assert isinstance(r.json, dict), "no JSON body: %r" % r
        if r.status == 200:
            assert isinstance(r.json.get("pos"), str), r
        else:
            assert_matrix_error(r, statuses=(r.status,))
            assert r.status in (400, 500, 503), r
    try:
        rc = proxy.proc.wait(max(0.1, t0 + 10.0 - time.monotonic()))
    except Exception:  # noqa: BLE001
        pytest.fail("syncv3 did not exit within 10 s of SIGTERM:\n%s" % proxy.stderr_tail())
    exited = time.monotonic() - t0
    print("parked answered in %.2fs, exit in %.2fs" % (answered, exited))
    assert rc == 0, "exit status %s:\n%s" % (rc, proxy.stderr_tail())
    rep = sanitizer_report(proxy.stderr())
    assert rep is None, rep
    proxy.stop()  # records nothing new (already exited cleanly)
    # the fake homeserver does not notice that the dead process's long-poll went away; end
    # it, or it would take the next queued response for a closed socket
    hs.kick()

    proxy.start()
    first = hs.wait_for_sync(alice.token, 1, start=n_syncs, timeout=20)
    assert first.since == stored_since, \
        "poller resumed with since %r, stored %r" % (first.since, stored_since)
    assert hs.unknown_since == []
    c = proxy.client(alice.token)
    resp = c.sync({"conn_id": "after", "lists": LIST})
    assert resp["lists"]["a"]["count"] == 1
    assert ready.room_id in resp["rooms"]
    # the old positions are gone, with the usual error
    r = clients[0].request({"conn_id": "park0"}, pos=clients[0].pos, timeout=100)
    assert_matrix_error(r, errcodes=("M_UNKNOWN_POS",))
    # and the poller keeps going: new data arrives on the new connection
    alice.queue(F.sync_response(join={ready.room_id: F.joined_room(
        timeline=[F.message(alice.user_id, "after restart")])}))
    resp = wait_until(lambda: (lambda j: j if j.get("rooms") else None)(
        c.sync({"conn_id": "after"}, timeout=2000)), timeout=20, what="new event after restart")
    assert resp["rooms"][ready.room_id]["timeline"][-1]["content"]["body"] == "after restart"
