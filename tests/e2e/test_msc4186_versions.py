"""GET /_matrix/client/versions: the homeserver's answer with simplified sliding sync
advertised, cached briefly; a clear 502 when the homeserver cannot say.
(docs/behaviour.md, "Endpoints")"""

from helpers import http_request

FLAG = "org.matrix.simplified_msc3575"


def versions_calls(hs):
    return sum(1 for r in hs.requests if r.path == "/_matrix/client/versions")


def test_passes_through_with_flag(proxy, hs):
    hs.versions_body = {"versions": ["v1.11", "v1.12"], "unstable_features": {"org.example.x": True}}
    r = http_request(proxy.url + "/_matrix/client/versions")
    assert r.status == 200
    assert r.json["versions"] == ["v1.11", "v1.12"]
    assert r.json["unstable_features"] == {"org.example.x": True, FLAG: True}
    assert r.headers.get("Access-Control-Allow-Origin") == "*"


def test_flag_added_without_unstable_features(proxy, hs):
    hs.versions_body = {"versions": ["v1.11"], "unstable_features": "junk"}
    r = http_request(proxy.url + "/_matrix/client/versions")
    assert r.json["unstable_features"] == {FLAG: True}


def test_cached(proxy, hs):
    first = http_request(proxy.url + "/_matrix/client/versions").json
    before = versions_calls(hs)
    hs.versions_body = {"versions": ["v9.9"]}
    again = http_request(proxy.url + "/_matrix/client/versions").json
    assert again == first and versions_calls(hs) == before, "answered from the cache"


def test_homeserver_failure_is_502(proxy, hs):
    hs.versions_body = {"no": "versions"}
    r = http_request(proxy.url + "/_matrix/client/versions")
    assert r.status == 502 and r.json["errcode"] == "M_UNKNOWN" and r.json["error"]
    hs.versions_body = {"versions": ["v1.11"]}
    r = http_request(proxy.url + "/_matrix/client/versions")
    assert r.status == 200 and r.json["unstable_features"][FLAG] is True, "failures are not cached"
