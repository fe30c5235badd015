"""Bounded memory: users without a connection are evicted from the cache
(SYNCV3_CACHE_MAX_USERS), their rooms with them, and come back from the store
when they connect again."""

import os
import time
from concurrent.futures import ThreadPoolExecutor

import fakehs as F
from helpers import User, metric_value, one_room_connection, run_in_thread, wait_until

MAX_USERS = 100
N_USERS = int(os.environ.get("SYNCV3_TEST_CACHE_USERS", "2000"))
ASAN = ("detect_leaks=1:abort_on_error=0:halt_on_error=1:strict_string_checks=1:"
        "allocator_may_return_null=0:quarantine_size_mb=8:thread_local_quarantine_size_kb=64")


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def gauges(proxy):
    text = proxy.metrics()[1]
    return (metric_value(text, "sliding_sync_cache_users") or 0,
            metric_value(text, "sliding_sync_api_num_active_conns") or 0,
            metric_value(text, "sliding_sync_cache_rooms") or 0, text)


def connect_once(proxy, hs, i, shared):
    """A user joins their own room and a shared one, syncs once and goes away
    (the homeserver forgets the token, which ends the connection)."""
    u = User(hs, "u%d" % i)
    own = F.new_room_id("own%d" % i)
    u.queue(F.sync_response(join={
        own: F.joined_room(F.room_state(u.user_id, "Own %d" % i), [F.message(u.user_id, "hi")]),
        shared: F.joined_room([F.create("@host:localhost"), F.join("@host:localhost"), F.join(u.user_id)],
                              [F.message(u.user_id, "hello from %d" % i)]),
    }))
    c = proxy.client(u.token)
    resp = c.sync({"lists": {"a": {"ranges": [[0, 9]], "timeline_limit": 1}}})
    assert own in resp.get("rooms", {}), resp
    hs.revoke(u.token)
    return u, own


def test_many_users_once_stay_bounded(make_proxy, hs):
    proxy = make_proxy(extra_env={"SYNCV3_CACHE_MAX_USERS": str(MAX_USERS), "ASAN_OPTIONS": ASAN,
                                  "SYNCV3_LOG_LEVEL": "info"})
    shared = F.new_room_id("shared")
    first, first_room = connect_once(proxy, hs, 0, shared)
    peak_excess = 0
    rss_mark = None
    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=6) as ex:
        for start in range(1, N_USERS, 100):
            list(ex.map(lambda i: connect_once(proxy, hs, i, shared), range(start, min(start + 100, N_USERS))))
            users, conns, _, _ = gauges(proxy)
            # Only users whose connection has not ended yet may exceed the bound.
            peak_excess = max(peak_excess, users - MAX_USERS - conns)
            if rss_mark is None and start >= 300:
                rss_mark = rss_kb(proxy.proc.pid)
    elapsed = time.monotonic() - t0
    assert peak_excess <= 0, "cache held %d users beyond the bound and the live connections" % peak_excess
    wait_until(lambda: gauges(proxy)[1] == 0, timeout=30, what="every connection ended")

    # An evicted user connects again (a new device): their rooms come from the store,
    # including what happened while they were not loaded.
    assert metric_value(proxy.metrics()[1], "sliding_sync_cache_evictions_total", {"kind": "user"}) >= \
        N_USERS - MAX_USERS - 50
    host = User(hs, "host")
    host.queue(F.sync_response(join={shared: F.joined_room(
        [F.create("@host:localhost"), F.join("@host:localhost")], [F.message(host.user_id, "while away")])}))
    proxy.client(host.token).sync({"lists": {"a": {"ranges": [[0, 9]]}}})
    again = User(hs, "u0")
    c = proxy.client(again.token)
    resp = c.sync({"lists": {"a": {"ranges": [[0, 9]], "timeline_limit": 1}}})
    assert first_room in resp["rooms"] and shared in resp["rooms"], resp
    assert resp["rooms"][shared]["timeline"][-1]["content"]["body"] == "while away"
    users, conns, rooms, _ = gauges(proxy)
    assert users <= MAX_USERS + conns, (users, conns)
    # Rooms only of evicted users are gone too: each loaded user has one own room.
    assert rooms <= users + 1, (rooms, users)
    # And live events reach the reloaded user.
    again.queue(F.sync_response(join={first_room: F.joined_room(timeline=[F.message(again.user_id, "back")])}))
    resp = c.sync({}, timeout=10000)
    assert [e["content"]["body"] for e in resp["rooms"][first_room]["timeline"]] == ["back"], resp

    growth = rss_kb(proxy.proc.pid) - (rss_mark or 0)
    print("%d users in %.1fs, RSS growth after the first 300: %d KiB" % (N_USERS, elapsed, growth))
    assert growth < 96 * 1024, "RSS grew by %d KiB" % growth


def test_memory_gauges(proxy, hs, alice):
    c, rid = one_room_connection(proxy, alice)
    _, _, rooms, text = gauges(proxy)
    assert metric_value(text, "sliding_sync_cache_users") == 1
    assert rooms == 1
    h = run_in_thread(c.sync, {}, timeout=20000)
    wait_until(lambda: metric_value(proxy.metrics()[1], "sliding_sync_api_num_parked_requests",
                                    {"phase": "long_poll"}) == 1, timeout=10, what="the long-poll counted as parked")
    alice.queue(F.sync_response(join={rid: F.joined_room(timeline=[F.message(alice.user_id, "live")])}))
    h.result(30)
    # With no request waiting, a live event stays queued until the next request drains it.
    alice.queue(F.sync_response(join={rid: F.joined_room(timeline=[F.message(alice.user_id, "queued")])}))
    alice.wait_idle()
    assert metric_value(proxy.metrics()[1], "sliding_sync_api_queued_updates") >= 1
    c.sync({}, timeout=100)
    assert metric_value(proxy.metrics()[1], "sliding_sync_api_queued_updates") == 0
