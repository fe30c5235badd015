"""Authentication (docs/behaviour.md, "Authentication", "Errors"): header handling, whoami, tokens stored encrypted."""

import os
import subprocess

from helpers import SS_PATH, User, http_request
import fakehs as F
import pgtmp

WHOAMI_V3 = "/_matrix/client/v3/account/whoami"


def one_room(user):
    rid = F.new_room_id()
    user.queue(F.sync_response(join={rid: F.joined_room(
        F.room_state(user.user_id, "Room"), [F.message(user.user_id, "hello")])}))
    return rid


def test_missing_authorization_is_401(proxy, hs):
    r = http_request(proxy.url + SS_PATH, "POST", body={})
    assert r.status == 401, r
    assert isinstance(r.json, dict) and "error" in r.json, r
    assert hs.whoami_requests() == []


def test_access_token_query_parameter_is_not_accepted(proxy, alice):
    one_room(alice)
    r = http_request(proxy.url + SS_PATH + "?access_token=" + alice.token, "POST", body={})
    assert r.status == 401, r


def test_unknown_token_is_401_m_unknown_token(proxy, hs):
    c = proxy.client("syt_nobody_knows_me")
    status, body = c.request({})
    assert status == 401
    assert body["errcode"] == "M_UNKNOWN_TOKEN", body
    who = hs.whoami_requests("syt_nobody_knows_me")
    assert len(who) == 1, hs.requests
    assert who[0].path == WHOAMI_V3
    assert who[0].authorization == "Bearer syt_nobody_knows_me"
    assert who[0].method == "GET"


def test_empty_bearer_is_401_m_missing_token(proxy, hs):
    r = http_request(proxy.url + SS_PATH, "POST", body={}, headers={"Authorization": "Bearer "})
    assert r.status == 401, r
    assert r.json["errcode"] == "M_MISSING_TOKEN", r
    assert hs.whoami_requests() == []


def test_whoami_failure_other_than_401_is_502(proxy, hs, alice):
    hs.fail_next(alice.token, "status", status=500, endpoint="whoami")
    status, body = proxy.client(alice.token).request({})
    assert status == 502, body


def test_header_without_bearer_prefix_is_the_token(proxy, alice):
    one_room(alice)
    r = http_request(proxy.url + SS_PATH + "?timeout=100", "POST",
                     body={"lists": {"a": {"ranges": [[0, 0]]}}},
                     headers={"Authorization": alice.token, "Content-Type": "application/json"})
    assert r.status == 200, r
    assert r.json["lists"]["a"]["count"] == 1


def test_known_token_is_not_verified_again(proxy, hs, alice):
    one_room(alice)
    c = proxy.client(alice.token)
    c.sync({"conn_id": "one", "lists": {"a": {"ranges": [[0, 0]]}}})
    c.reset()
    c.sync({"conn_id": "two", "lists": {"a": {"ranges": [[0, 0]]}}})
    assert len(hs.whoami_requests(alice.token)) == 1, hs.whoami_requests(alice.token)


def test_tokens_are_not_stored_in_plain_text(proxy, hs, db):
    u = User(hs, "carol", token="syt_plaintext_canary_5f2b8c1d9e")
    one_room(u)
    proxy.client(u.token).sync({"lists": {"a": {"ranges": [[0, 0]]}}})
    dump = subprocess.run([os.path.join(pgtmp.pg_bindir(), "pg_dump"), "--data-only", "-d", db],
                          capture_output=True, text=True, timeout=60)
    assert dump.returncode == 0, dump.stderr
    assert "syt_plaintext_canary" not in dump.stdout, "an access token is stored in plain text"
    assert u.token not in proxy.all_stderr(), "an access token was logged"
