"""HTTP surface: routes, methods, CORS (docs/behaviour.md, "Endpoints")."""

import pytest

from helpers import REPO, SS_PATH, V3_SYNC_PATH, http_request
import fakehs as F

CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, PUT, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "Origin, X-Requested-With, Content-Type, Accept, Authorization",
}


def assert_cors(r):
    for k, v in CORS.items():
        assert r.headers.get(k) == v, "header %s: %r (response %r)" % (k, r.headers.get(k), r)


@pytest.mark.parametrize("path", [SS_PATH, V3_SYNC_PATH])
def test_options_is_200_with_cors_and_no_auth(proxy, path):
    r = http_request(proxy.url + path, "OPTIONS",
                     headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"})
    assert r.status == 200, r
    assert r.body == b"", r
    assert_cors(r)


@pytest.mark.parametrize("path", [SS_PATH, V3_SYNC_PATH])
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_other_methods_are_405_with_empty_body(proxy, path, method):
    r = http_request(proxy.url + path, method, headers={"Authorization": "Bearer whatever"})
    assert r.status == 405, r
    assert r.body == b"", r
    assert r.headers.get("Access-Control-Allow-Origin") == "*", r


@pytest.mark.parametrize("path", [SS_PATH + "/", "/_matrix/client/unstable/org.matrix.msc3575/syncx",
                                  "/_matrix/client/r0/sync", "/nothing/here"])
def test_unknown_paths_are_404(proxy, path):
    r = http_request(proxy.url + path, "POST", body={}, headers={"Authorization": "Bearer x"})
    assert r.status == 404, r


def test_error_responses_carry_cors(proxy):
    r = http_request(proxy.url + SS_PATH, "POST", body={})  # no Authorization
    assert r.status == 401, r
    assert_cors(r)


@pytest.mark.parametrize("path", [SS_PATH, V3_SYNC_PATH])
def test_both_paths_serve_sliding_sync(proxy, hs, alice, path):
    rid = F.new_room_id()
    alice.queue(F.sync_response(join={rid: F.joined_room(
        F.room_state(alice.user_id, "Hello"), [F.message(alice.user_id, "hi")])}))
    c = proxy.client(alice.token, path=path)
    r = c.request({"lists": {"a": {"ranges": [[0, 0]]}}}, timeout=100)
    assert r.status == 200, r
    assert r.headers.get("Content-Type", "").startswith("application/json"), r.headers
    assert r.headers.get("Access-Control-Allow-Origin") == "*"
    assert r.body.endswith(b"\n"), "a success body is one JSON object followed by a newline"
    assert r.json["lists"]["a"]["count"] == 1
    assert isinstance(r.json["pos"], str)


def test_server_json(proxy, hs):
    r = http_request(proxy.url + "/client/server.json")
    assert r.status == 200, r
    assert r.headers.get("Content-Type", "").startswith("application/json")
    assert r.json["server"] == hs.url
    assert (REPO / "VERSION").read_text().strip() in r.json["version"]
