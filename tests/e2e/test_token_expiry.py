"""The homeserver rejecting a token: poller stops, token forgotten, connections get
M_UNKNOWN_POS then 401 (docs/behaviour.md, "Authentication", "Pollers and new connections")."""

import time

from helpers import run_in_thread
import fakehs as F


def start(proxy, user):
    rid = F.new_room_id()
    user.queue(F.sync_response(join={rid: F.joined_room(
        F.room_state(user.user_id, "Room"), [F.message(user.user_id, "hello")])}))
    c = proxy.client(user.token)
    c.sync({"lists": {"a": {"ranges": [[0, 9]]}}})
    user.wait_idle()
    return c, rid


def test_revoked_token(proxy, hs, alice):
    c, _ = start(proxy, alice)
    pos = c.pos
    h = run_in_thread(c.request, {}, pos=pos, timeout=25000)
    time.sleep(1.0)
    t_revoke = time.monotonic()
    hs.revoke(alice.token)  # the parked /sync answers 401 now
    r = h.result(40)
    assert time.monotonic() - t_revoke < 15, "the parked request was not ended by the token expiry"
    assert r.status in (200, 400), r

    r = c.request({}, pos=pos, timeout=100)
    assert r.status == 400, r
    assert r.json["errcode"] == "M_UNKNOWN_POS"
    assert r.elapsed < 0.9

    c.reset()
    t_new = time.monotonic()
    status, body = c.request({"lists": {"a": {"ranges": [[0, 9]]}}}, timeout=100)
    assert status == 401, body
    assert body["errcode"] == "M_UNKNOWN_TOKEN"
    assert [w for w in hs.whoami_requests(alice.token) if w.time >= t_new], \
        "the token should have been forgotten and checked with whoami again"


def test_poller_stops_and_is_not_resumed(proxy, hs, alice, bob):
    start(proxy, alice)
    start(proxy, bob)
    hs.revoke(alice.token)
    got_401 = hs.wait_for(lambda reqs: [r for r in reqs if r.is_sync and r.token == alice.token
                                        and r.status == 401], timeout=15, what="a 401 /sync")[0]
    time.sleep(3)
    after = [r for r in alice.syncs() if r.time > got_401.time]
    assert after == [], "the poller kept polling a dead token: %r" % after
    n_b = len(bob.syncs())
    proxy.restart()
    hs.wait_for_sync(bob.token, 1, start=n_b, timeout=20)
    time.sleep(2)
    after = [r for r in alice.syncs() if r.time > got_401.time]
    assert after == [], "a forgotten token was polled again after restart: %r" % after


def test_sync_401_for_a_still_valid_token_allows_a_fresh_start(proxy, hs, alice):
    c, rid = start(proxy, alice)
    pos = c.pos
    issued = {r.served_next_batch for r in alice.syncs() if r.served_next_batch}
    hs.fail_next(alice.token, "status", status=401)
    hs.kick()  # end the parked /sync so the next one meets the 401
    hs.wait_for(lambda reqs: [r for r in reqs if r.is_sync and r.token == alice.token
                              and r.status == 401], timeout=20, what="a 401 /sync")
    time.sleep(0.5)
    r = c.request({}, pos=pos, timeout=100)
    assert r.status == 400 and r.json.get("errcode") == "M_UNKNOWN_POS", r
    n = len(alice.syncs())
    c.reset()
    resp = c.sync({"lists": {"a": {"ranges": [[0, 9]]}}})
    assert resp["lists"]["a"]["count"] == 1
    first = hs.wait_for_sync(alice.token, 1, start=n)
    assert first.query.get("since") in issued, "a fresh poller resumes from the stored since"


def test_403_is_treated_like_401(proxy, hs, alice):
    c, _ = start(proxy, alice)
    pos = c.pos
    hs.fail_next(alice.token, "status", status=403)
    hs.kick()
    hs.wait_for(lambda reqs: [r for r in reqs if r.is_sync and r.token == alice.token
                              and r.status == 403], timeout=20, what="a 403 /sync")
    time.sleep(0.5)
    r = c.request({}, pos=pos, timeout=100)
    assert r.status == 400 and r.json.get("errcode") == "M_UNKNOWN_POS", r
