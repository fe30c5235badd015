"""After a restart, the users with a recently used stored MSC4186 connection are loaded into
the cache in the background, before any request; other users are not, and the pre-load never
fills the cache past its bound (docs/behaviour.md, "Connections across restarts")."""

import time

import fakehs as F
import pgtmp
from helpers import SimplifiedSync, User, metric_value, wait_until

BODY = {"conn_id": "warm", "lists": {"all": {"ranges": [[0, 9]], "timeline_limit": 1}}}


def one_room(user, name):
    rid = F.new_room_id(name.lower())
    user.queue(F.sync_response(join={rid: F.joined_room(F.room_state(user.user_id, name),
                                                        [F.message(user.user_id, "hi")])}))
    return rid


def stored(proxy, user, name):
    """The user has a stored connection (an MSC4186 connection answered twice)."""
    rid = one_room(user, name)
    c = SimplifiedSync(proxy, user.token)
    assert rid in c.sync(BODY)["rooms"]
    user.wait_idle()
    c.sync(BODY)
    return c


def rows_of(db, user):
    return pgtmp.psql(db, "SELECT count(*) FROM syncv3_conns WHERE user_id = '%s'" % user.user_id).strip()


def cache(proxy):
    text = proxy.metrics()[1]
    return (metric_value(text, "sliding_sync_cache_users"),
            metric_value(text, "sliding_sync_cache_preloaded_users_total"))


def test_a_user_with_a_recent_stored_connection_is_loaded_without_a_request(proxy, hs, db, alice):
    c = stored(proxy, alice, "Alice's")
    bob = User(hs, "bob")  # MSC3575 only: nothing stored
    rb = one_room(bob, "Bob's")
    assert rb in proxy.client(bob.token).sync({"lists": {"a": {"ranges": [[0, 9]]}}})["rooms"]
    carol = User(hs, "carol")  # stored, but not used within the expiry window
    stored(proxy, carol, "Carol's")
    assert (rows_of(db, alice), rows_of(db, bob), rows_of(db, carol)) == ("1", "0", "1")
    proxy.stop()
    pgtmp.psql(db, "UPDATE syncv3_conns SET updated_ms = 0 WHERE user_id = '%s'" % carol.user_id)
    proxy.start()
    assert cache(proxy)[0] in (0, 1)
    wait_until(lambda: cache(proxy) == (1, 1), timeout=20, what="alice pre-loaded, no one else")
    bob.wait_idle()
    carol.wait_idle()
    time.sleep(1.5)  # the gauges are updated every second
    assert cache(proxy) == (1, 1), "only the user with a recent stored connection"
    # her connection goes on from the stored state, and her user was not loaded again
    assert c.sync(BODY)["rooms"] == {}
    assert cache(proxy)[1] == 1
    assert "pre-loaded 1 of 1 users" in proxy.stderr()


def test_the_pre_load_stops_at_the_cache_bound_most_recent_first(make_proxy, hs, db, alice):
    proxy = make_proxy(extra_env={"SYNCV3_CACHE_MAX_USERS": "1"})
    stored(proxy, alice, "Alice's")
    bob = User(hs, "bob")
    c = stored(proxy, bob, "Bob's")
    c.sync(BODY)  # bob's row is written last
    proxy.stop()
    pgtmp.psql(db, "UPDATE syncv3_conns SET updated_ms = updated_ms - 60000 WHERE user_id = '%s'" % alice.user_id)
    proxy.start()
    wait_until(lambda: cache(proxy) == (1, 1), timeout=20, what="one user pre-loaded")
    alice.wait_idle()
    bob.wait_idle()
    time.sleep(1.5)
    assert cache(proxy) == (1, 1), "no more than SYNCV3_CACHE_MAX_USERS"
    assert "pre-loaded 1 of 1 users" in proxy.stderr(), "only the most recent one was asked for"
    # bob (the most recent) is the one loaded: his request finds him, so no user is evicted
    assert c.sync(BODY)["rooms"] == {}
    time.sleep(1.5)
    assert metric_value(proxy.metrics()[1], "sliding_sync_cache_evictions_total", {"kind": "user"}) in (None, 0)


def test_the_pre_load_ends_before_listening(proxy, alice):
    c = stored(proxy, alice, "Alice's")
    proxy.stop()
    proxy.start()
    log = proxy.stderr()  # this run's
    assert "pre-loaded 1 of 1 users" in log and "listening on" in log
    assert log.index("pre-loaded 1 of 1 users") < log.index("listening on"), log
    assert c.sync(BODY)["rooms"] == {}
    assert cache(proxy)[1] == 1, "her first request did not load her again"


def test_a_loaded_users_timelines_start_at_the_current_join(proxy, alice, bob):
    """Loading a user from the store (a first connection, as after a restart) finds each room's
    join span: a plain join, a rejoin followed by a profile change, and an invite then a join.
    Only bob's poller sees the rooms; alice's own poller returns nothing."""
    A, B = alice.user_id, bob.user_id
    plain, rejoined, invited = (F.new_room_id(n) for n in ("plain", "rejoined", "invited"))
    jp, jr, prof, ji = F.join(A), F.join(A), F.join(A, displayname="Alice 2"), F.join(A)
    timelines = {
        plain: [jp, F.message(B, "p1")],
        rejoined: [F.join(A), F.message(B, "r0"), F.leave(A), F.message(B, "r away"), jr, F.message(B, "r1"),
                   prof, F.message(B, "r2")],
        invited: [F.invite(B, A), F.message(B, "i0"), ji, F.message(B, "i1")],
    }
    bob.queue(F.sync_response(join={rid: F.joined_room(F.room_state(B, rid[1:6]), tl)
                                    for rid, tl in timelines.items()}))
    assert proxy.client(bob.token).sync({"lists": {"a": {"ranges": [[0, 9]]}}})["lists"]["a"]["count"] == 3
    bob.wait_idle()
    alice.queue(F.sync_response())
    c = SimplifiedSync(proxy, alice.token)
    rooms = c.sync({"conn_id": "spans", "lists": {"all": {"ranges": [[0, 9]], "timeline_limit": 10}}})["rooms"]
    got = {rid: [e["event_id"] for e in rooms[rid]["timeline"]] for rid in timelines}
    want = {rid: [e["event_id"] for e in tl[tl.index(first):]]
            for rid, tl, first in ((plain, timelines[plain], jp), (rejoined, timelines[rejoined], jr),
                                   (invited, timelines[invited], ji))}
    assert got == want
