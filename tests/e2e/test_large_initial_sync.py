"""A very large /sync body (one device's initial sync) is parsed off the poller
thread: every other device's long-poll keeps being read, so their live events
are not held up behind it."""

import json
import time

import fakehs as F
from helpers import User, one_room_connection, run_in_thread

BIG_MB = 30


def big_body(next_batch):
    # Expensive to parse, cheap to store: a large member syncv3 does not use.
    item = json.dumps({"k": "v" * 16}, separators=(",", ":"))
    n = BIG_MB * 1024 * 1024 // (len(item) + 1)
    return ('{"next_batch":"%s","org.example.padding":[%s]}' % (next_batch, ",".join([item] * n))).encode()


def live_latency(c, alice, rid, text):
    h = run_in_thread(c.sync, {}, timeout=20000)
    time.sleep(0.5)
    t0 = time.monotonic()
    alice.queue(F.sync_response(join={rid: F.joined_room(timeline=[F.message(alice.user_id, text)])}))
    resp = h.result(30)
    took = time.monotonic() - t0
    assert [e["content"]["body"] for e in resp["rooms"][rid]["timeline"]] == [text], resp
    return took


def test_large_initial_sync_does_not_delay_others(proxy, hs, alice):
    c, rid = one_room_connection(proxy, alice)
    normal = live_latency(c, alice, rid, "before")

    bob = User(hs, "bob")
    hs.queue(bob.token, big_body("big1"))
    bh = run_in_thread(proxy.client(bob.token).request, {"lists": {"a": {"ranges": [[0, 9]]}}}, timeout=100,
                       http_timeout=120)
    hs.wait_for(lambda reqs: [r for r in reqs if r.is_sync and r.token == bob.token and r.status == 200],
                timeout=30, what="bob's initial sync served")
    during = live_latency(c, alice, rid, "during")
    print("live event latency: %.3fs normally, %.3fs while a %d MB body is parsed" % (normal, during, BIG_MB))
    assert during < max(1.0, 5 * normal), "a live event took %.2fs behind a large body" % during
    r = bh.result(120)
    assert r.status == 200, r
