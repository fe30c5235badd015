"""A client that stops reading: its connection ends once more updates are
queued than it may hold, its next request gets M_UNKNOWN_POS, and a new
connection with the same conn_id works and keeps receiving. The proxy runs
under the sanitizer build; the fixture fails the test on any report (the old
connection used to stay registered with the cache after it was freed)."""

from helpers import tl_ids, wait_until
import fakehs as F

LIST = {"ranges": [[0, 9]], "timeline_limit": 1}


def flood(user, rid, n, per_response=250):
    """Queues n messages in rid, per_response per v2 response; returns the last event."""
    last = None
    left = n
    while left:
        k = min(per_response, left)
        evs = [F.message(user.user_id, "m%d" % (n - left + i)) for i in range(k)]
        user.queue(F.sync_response(join={rid: F.joined_room(timeline=evs)}))
        last = evs[-1]
        left -= k
    return last


def test_connection_that_falls_behind_ends_and_a_new_one_keeps_receiving(proxy, alice):
    rid = F.new_room_id()
    alice.queue(F.sync_response(join={rid: F.joined_room(F.room_state(alice.user_id, "Busy"),
                                                         [F.message(alice.user_id, "hi")])}))
    c = proxy.client(alice.token)
    first = c.sync({"conn_id": "room-list", "lists": {"a": LIST}})
    assert rid in first["rooms"]
    alice.wait_idle()
    # The phone sleeps while the account produces more updates than a connection holds.
    flood(alice, rid, 2100)
    alice.wait_idle(timeout=60)
    r = c.request({"conn_id": "room-list"}, pos=c.pos, timeout=100)
    assert r.status == 400 and r.json["errcode"] == "M_UNKNOWN_POS", r
    # It starts over with the same conn_id.
    c.reset()
    again = c.sync({"conn_id": "room-list", "lists": {"a": LIST}})
    assert rid in again["rooms"]
    # Updates for the user after the old connection was freed reach only the new one.
    for round_ in range(3):
        ev = F.message(alice.user_id, "after %d" % round_)
        alice.queue(F.sync_response(join={rid: F.joined_room(timeline=[ev])}))
        got = []
        wait_until(lambda: (got.extend(tl_ids(c.sync({"conn_id": "room-list"}, timeout=2000), rid))
                            or ev["event_id"] in got), timeout=15, what="live event on the new connection")


def test_two_connections_fall_behind_and_expire_quietly(proxy, alice):
    rid = F.new_room_id()
    alice.queue(F.sync_response(join={rid: F.joined_room(F.room_state(alice.user_id, "Busy"),
                                                         [F.message(alice.user_id, "hi")])}))
    a, b = proxy.client(alice.token), proxy.client(alice.token)
    a.sync({"conn_id": "a", "lists": {"a": LIST}})
    b.sync({"conn_id": "b", "lists": {"a": LIST}})
    alice.wait_idle()
    flood(alice, rid, 2100)
    alice.wait_idle(timeout=60)
    # Both ended; one reconnects, the other never comes back. More traffic must not
    # touch either old connection.
    for c, cid in ((a, "a"), (b, "b")):
        r = c.request({"conn_id": cid}, pos=c.pos, timeout=100)
        assert r.status == 400 and r.json["errcode"] == "M_UNKNOWN_POS", (cid, r)
    a.reset()
    a.sync({"conn_id": "a", "lists": {"a": LIST}})
    last = flood(alice, rid, 20, per_response=5)
    got = []
    wait_until(lambda: (got.extend(tl_ids(a.sync({"conn_id": "a"}, timeout=2000), rid))
                        or last["event_id"] in got), timeout=15, what="events after the flood")
