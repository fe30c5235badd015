"""Homeserver failures: network errors, 5xx, 429, bad bodies are retried with backoff;
nothing is lost and client connections survive (docs/behaviour.md, "Upstream requests",
"Processing one upstream response")."""

import time

import pytest

import fakehs as F
from helpers import wait_until


def start(proxy, user):
    rid = F.new_room_id()
    user.queue(F.sync_response(join={rid: F.joined_room(
        F.room_state(user.user_id, "Room"), [F.message(user.user_id, "hello")])}))
    c = proxy.client(user.token)
    c.sync({"lists": {"a": {"ranges": [[0, 9]]}}})
    user.wait_idle()
    return c, rid


def receive(c, rid, ev, deadline_s=60):
    """Long-polls c until ev shows up in rid's timeline; fails on any error status."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        resp = c.sync({}, timeout=5000)
        tl = ((resp.get("rooms") or {}).get(rid) or {}).get("timeline") or []
        if ev in tl:
            return
    pytest.fail("event never reached the client")


FAULTS = [
    pytest.param(dict(kind="status", status=500), id="500"),
    pytest.param(dict(kind="status", status=502), id="502"),
    pytest.param(dict(kind="status", status=503), id="503"),
    pytest.param(dict(kind="status", status=429, retry_after_ms=300), id="429"),
    pytest.param(dict(kind="status", status=404), id="404"),
    pytest.param(dict(kind="invalid_json"), id="invalid_json"),
    pytest.param(dict(kind="reset"), id="reset"),
    pytest.param(dict(kind="null"), id="null"),
    pytest.param(dict(kind="hang", seconds=2), id="hang"),
]


@pytest.mark.parametrize("fault", FAULTS)
def test_failures_are_retried_and_nothing_is_lost(proxy, hs, alice, fault):
    c, rid = start(proxy, alice)
    since = alice.syncs()[-1].query.get("since")
    n = len(alice.syncs())
    hs.fail_next(alice.token, count=2, **fault)
    hs.kick()  # end the parked /sync: the next requests meet the faults
    ev = F.message(alice.user_id, "after the storm")
    alice.queue(F.sync_response(join={rid: F.joined_room(timeline=[ev])}))
    receive(c, rid, ev)
    later = alice.syncs()[n:]
    assert len(later) >= 3, "expected the failed requests to be retried: %r" % later
    delivered = [r for r in later if r.served_next_batch and r.status == 200
                 and r.served_next_batch != since]
    assert delivered, later
    if fault["kind"] != "null":
        # a failed response never advances the since token
        assert delivered[0].query.get("since") == since, (since, later)
    assert hs.unknown_since == []


def test_retries_back_off(proxy, hs, alice):
    c, rid = start(proxy, alice)
    n = len(alice.syncs())
    hs.fail_next(alice.token, "status", status=500, count=4)
    hs.kick()
    wait_until(lambda: len([r for r in alice.syncs()[n:] if r.status == 500]) >= 4, timeout=90,
               what="four retries")
    failed = [r for r in alice.syncs()[n:] if r.status == 500][:4]
    gaps = [b.time - a.answered_at for a, b in zip(failed, failed[1:])]
    assert all(g >= 0.2 for g in gaps), "retries without backoff: gaps %r" % gaps
    assert gaps[-1] > gaps[0], "backoff should grow: gaps %r" % gaps


def test_client_connection_survives_upstream_errors(proxy, hs, alice):
    c, rid = start(proxy, alice)
    hs.fail_next(alice.token, "status", status=500, count=2)
    hs.kick()
    resp = c.sync({}, timeout=2000)  # no M_UNKNOWN_POS
    assert resp["lists"]["a"]["count"] == 1
