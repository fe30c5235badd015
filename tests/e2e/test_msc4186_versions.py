"""GET /_matrix/client/versions: the homeserver's answer with simplified sliding sync
advertised, cached briefly; a clear 502 when the homeserver cannot say; asked without holding an
HTTP thread (docs/behaviour.md, "Endpoints")"""

import time

from helpers import http_request, run_in_thread
from test_connections import one_room
from test_tokens import assert_woken_at_once

POOL_THREADS = 8  # the server's HTTP pool

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


def test_slow_homeserver_versions_does_not_hold_other_users_long_polls(proxy, hs, bob):
    rid = one_room(bob)
    c = proxy.client(bob.token)
    c.sync({"lists": {"a": {"ranges": [[0, 9]], "timeline_limit": 1}}})
    bob.wait_idle()
    parked = run_in_thread(c.request, {}, pos=c.pos, timeout=30000)
    time.sleep(0.5)
    # More clients than HTTP threads ask /versions with the cache cold and a slow homeserver.
    before = versions_calls(hs)
    hs.versions_delay = 4.0
    t_slow = time.monotonic()
    pending = [run_in_thread(http_request, proxy.url + "/_matrix/client/versions", timeout=30)
               for _ in range(POOL_THREADS + 4)]
    hs.wait_for(lambda reqs: sum(1 for r in reqs if r.path == "/_matrix/client/versions") > before,
                timeout=10, what="the slow /versions")
    time.sleep(0.5)
    assert_woken_at_once(parked, bob, rid, "the slow /versions")
    assert time.monotonic() - t_slow < 3.5, "the slow /versions finished before bob's event: test is void"
    for h in pending:
        r = h.result(30)
        assert r.status == 200 and r.json["unstable_features"][FLAG] is True, r
    assert versions_calls(hs) == before + 1, "the waiting clients share one call"
