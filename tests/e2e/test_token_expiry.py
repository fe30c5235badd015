"""The homeserver rejecting a token: poller stops, token forgotten, every request
with the dead token gets 401 M_UNKNOWN_TOKEN (with or without pos, parked or not,
on every connection of the device), and a new token of the device works at once (docs/behaviour.md, "Authentication")."""

import time

from helpers import User, run_in_thread, wait_until
import fakehs as F

LIST = {"lists": {"a": {"ranges": [[0, 9]]}}}


def start(proxy, user, conn_id=None):
    rid = F.new_room_id()
    user.queue(F.sync_response(join={rid: F.joined_room(
        F.room_state(user.user_id, "Room"), [F.message(user.user_id, "hello")])}))
    c = proxy.client(user.token)
    c.sync(dict(LIST, conn_id=conn_id) if conn_id else LIST)
    user.wait_idle()
    return c, rid


def wait_rejected(hs, user, status=401):
    return hs.wait_for(lambda reqs: [r for r in reqs if r.is_sync and r.token == user.token
                                     and r.status == status], timeout=20, what="a %d /sync" % status)[0]


def assert_401(r):
    assert r.status == 401, r
    assert r.json["errcode"] == "M_UNKNOWN_TOKEN", r


def wait_dead(c, pos):
    """Until the proxy has taken the token's rejection in (its requests with a pos get 401)."""
    wait_until(lambda: c.request({}, pos=pos, timeout=100).status == 401, timeout=10,
               what="401 for the rejected token")


def test_revoked_token(proxy, hs, alice):
    c, _ = start(proxy, alice)
    pos = c.pos
    h = run_in_thread(c.request, {}, pos=pos, timeout=25000)
    time.sleep(1.0)
    t_revoke = time.monotonic()
    hs.revoke(alice.token)  # the parked /sync answers 401 now
    r = h.result(40)
    assert time.monotonic() - t_revoke < 15, "the parked request was not ended by the token expiry"
    assert_401(r)

    # The connection ended with the token: the client must refresh it, not start over.
    r = c.request({}, pos=pos, timeout=100)
    assert_401(r)
    assert r.elapsed < 0.9

    c.reset()
    t_new = time.monotonic()
    r = c.request(LIST, timeout=100)
    assert_401(r)
    assert [w for w in hs.whoami_requests(alice.token) if w.time >= t_new], \
        "the token should have been forgotten and checked with whoami again"


def test_every_connection_of_the_device_gets_401(proxy, hs, alice):
    a, _ = start(proxy, alice, conn_id="A")
    b = proxy.client(alice.token)
    b.sync(dict(LIST, conn_id="B"))
    parked = run_in_thread(a.request, {"conn_id": "A"}, pos=a.pos, timeout=25000)
    time.sleep(1.0)
    hs.revoke(alice.token)
    assert_401(parked.result(20))
    wait_rejected(hs, alice)
    for c, cid in ((a, "A"), (b, "B")):
        r = c.request({"conn_id": cid}, pos=c.pos, timeout=100)
        assert_401(r)
        # and again: still the token, not the connection, is the problem
        assert_401(c.request({"conn_id": cid}, pos=c.pos, timeout=100))


def test_poller_stops_and_is_not_resumed(proxy, hs, alice, bob):
    start(proxy, alice)
    start(proxy, bob)
    hs.revoke(alice.token)
    got_401 = wait_rejected(hs, alice)
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
    wait_rejected(hs, alice)
    time.sleep(0.5)
    assert_401(c.request({}, pos=pos, timeout=100))
    n = len(alice.syncs())
    c.reset()
    resp = c.sync(LIST)  # whoami says the token is fine after all
    assert resp["lists"]["a"]["count"] == 1
    first = hs.wait_for_sync(alice.token, 1, start=n)
    assert first.query.get("since") in issued, "a fresh poller resumes from the stored since"


def test_403_is_treated_like_401(proxy, hs, alice):
    c, _ = start(proxy, alice)
    pos = c.pos
    hs.fail_next(alice.token, "status", status=403)
    hs.kick()
    wait_rejected(hs, alice, 403)
    time.sleep(0.5)
    assert_401(c.request({}, pos=pos, timeout=100))


def test_a_new_token_for_the_device_works_right_after_expiry(proxy, hs, alice):
    c, rid = start(proxy, alice)
    pos = c.pos
    issued = {r.served_next_batch for r in alice.syncs() if r.served_next_batch}
    hs.revoke(alice.token)
    wait_rejected(hs, alice)
    wait_dead(c, pos)
    # The client refreshes: a new token of the same device.
    newer = User(hs, "alice", device_id=alice.device_id)
    ev = F.message(alice.user_id, "after the refresh")
    newer.queue(F.sync_response(join={rid: F.joined_room(timeline=[ev])}))
    c2 = proxy.client(newer.token)
    # Its old connection ended with the old token: start over (no 401 for a good token).
    r = c2.request({}, pos=pos, timeout=100)
    assert r.status == 400 and r.json["errcode"] == "M_UNKNOWN_POS", r
    t0 = time.monotonic()
    r = c2.request(dict(LIST, lists={"a": {"ranges": [[0, 9]], "timeline_limit": 5}}), timeout=100)
    assert r.status == 200, r  # not 401 for the device the old token left expired
    assert time.monotonic() - t0 < 10
    first = hs.wait_for_sync(newer.token, 1)
    assert first.query.get("since") in issued, "the new token's poller resumes from the stored since"
    resp = r.json
    deadline = time.monotonic() + 20
    while ev["event_id"] not in [e["event_id"] for e in resp["rooms"].get(rid, {}).get("timeline", [])]:
        assert time.monotonic() < deadline, "the new token's first sync never arrived"
        c2.pos = resp["pos"]
        resp = c2.sync({}, timeout=5000)
    # The old token still gets 401 on its connection.
    assert_401(c.request({}, pos=pos, timeout=100))
