"""Token rotation and verification: superseded tokens are deleted from the
store and forgotten in memory once a newer one works; whoami is shared by
concurrent requests and never holds an HTTP thread."""

import hashlib
import time

from helpers import User, metric_value, run_in_thread, wait_until
import pgtmp
from test_connections import one_room, send

LIST = {"lists": {"a": {"ranges": [[0, 9]], "timeline_limit": 1}}}
POOL_THREADS = 8  # the server's HTTP pool


def token_rows(db, device_id):
    out = pgtmp.psql(db, "SELECT count(*) FROM syncv3_sync2_tokens WHERE device_id = '%s'" % device_id)
    return int(out.strip())


def test_rotated_tokens_are_deleted_once_a_newer_one_works(proxy, hs, db, alice):
    rid = one_room(alice)
    c = proxy.client(alice.token)
    c.sync(LIST)
    alice.wait_idle()
    tokens = [alice]
    for i in range(4):
        prev, new = tokens[-1], User(hs, "alice", device_id=alice.device_id)
        # A refresh-token client swaps tokens on its connection.
        c.token = new.token
        c.sync({}, timeout=100)
        # The poller takes the new token at its next /sync: end the current one.
        send(prev, rid, "last with token %d" % (i + 1))
        hs.wait_for_sync(new.token, 1, timeout=20)
        send(new, rid, "first with token %d" % (i + 2))
        new.wait_idle()
        tokens.append(new)
    wait_until(lambda: token_rows(db, alice.device_id) == 1, timeout=20,
               what="one token row left for the device")
    row = pgtmp.psql(db, "SELECT token_hash FROM syncv3_sync2_tokens WHERE device_id = '%s'" % alice.device_id)
    assert row.strip() == hashlib.sha256(tokens[-1].token.encode()).hexdigest()
    # The newest token still works on the connection.
    c.token = tokens[-1].token
    ev = send(tokens[-1], rid, "still here")
    got = []
    deadline = time.monotonic() + 20
    while ev["event_id"] not in got and time.monotonic() < deadline:
        resp = c.sync({}, timeout=5000)
        got += [e["event_id"] for e in resp.get("rooms", {}).get(rid, {}).get("timeline", [])]
    assert ev["event_id"] in got
    # The old tokens were forgotten in memory too: they are verified again.
    for old in tokens[:-1]:
        hs.revoke(old.token)
    n_who = len(hs.whoami_requests(alice.token))
    r = c.request({}, pos=c.pos, timeout=100, token=alice.token)
    assert r.status == 401 and r.json["errcode"] == "M_UNKNOWN_TOKEN", r
    assert len(hs.whoami_requests(alice.token)) == n_who + 1, "an old token was still trusted from memory"
    # and the newest one was not disturbed by that
    assert c.request({}, pos=c.pos, timeout=100).status == 200


def test_concurrent_requests_with_a_new_token_share_one_whoami(proxy, hs, alice):
    one_room(alice)
    hs.fail_next(alice.token, "delay", seconds=1.5, endpoint="whoami")
    clients = [proxy.client(alice.token) for _ in range(5)]
    hs_ = [run_in_thread(c.request, dict(LIST, conn_id="c%d" % i), timeout=100) for i, c in enumerate(clients)]
    for h in hs_:
        r = h.result(30)
        assert r.status == 200, r
    assert len(hs.whoami_requests(alice.token)) == 1, hs.whoami_requests(alice.token)


def assert_woken_at_once(parked, user, rid, behind):
    """An event for `user` in `rid` wakes the `parked` long-poll at once."""
    t_ev = time.monotonic()
    ev = send(user, rid, "not held up")
    r = parked.result(20)
    waited = time.monotonic() - t_ev
    assert r.status == 200, r
    assert ev["event_id"] in [e["event_id"] for e in r.json["rooms"][rid]["timeline"]]
    assert waited < 1.5, "the long-poll waited %.1fs behind %s" % (waited, behind)


def test_slow_whoami_does_not_hold_other_users_long_polls(proxy, hs, bob):
    rid = one_room(bob)
    c = proxy.client(bob.token)
    c.sync(LIST)
    bob.wait_idle()
    parked = run_in_thread(c.request, {}, pos=c.pos, timeout=30000)
    time.sleep(0.5)
    # More new users than HTTP threads, each with a slow whoami.
    slow = [User(hs, "slow%d" % i) for i in range(POOL_THREADS + 4)]
    for u in slow:
        one_room(u)
        hs.fail_next(u.token, "delay", seconds=6, endpoint="whoami")
    t_slow = time.monotonic()
    pending = [run_in_thread(proxy.client(u.token).request, LIST, timeout=100) for u in slow]
    slow_tokens = {u.token for u in slow}
    hs.wait_for(lambda reqs: len([r for r in reqs if r.token in slow_tokens and "whoami" in r.path])
                >= POOL_THREADS, timeout=10, what="slow whoamis")
    time.sleep(0.3)
    assert_woken_at_once(parked, bob, rid, "the slow whoamis")
    assert time.monotonic() - t_slow < 5.5, "the slow whoamis finished before bob's event: test is void"
    # Every slow request is parked, none holds a thread.
    wait_until(lambda: metric_value(proxy.metrics()[1], "sliding_sync_api_num_parked_requests",
                                    {"phase": "whoami"}) == len(slow), timeout=3, what="the slow requests parked")
    for h in pending:
        assert h.result(30).status == 200
