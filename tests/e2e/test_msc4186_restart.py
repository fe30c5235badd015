"""MSC4186 connections survive a restart of syncv3: the stored state is read back for a pos
no connection in memory knows, and the next response is incremental; unusable state is
M_UNKNOWN_POS; the rows are bounded and cleaned up.
(docs/behaviour.md, "Connections across restarts")"""

import os
import subprocess
import time

import fakehs as F
import pgtmp
from helpers import REPO, SimplifiedSync, run_in_thread, wait_until
from test_cli import run

RS = [["m.room.name", ""], ["m.room.member", "$ME"]]
BOB = "@bob:localhost"


def body(ranges=((0, 9),), timeline_limit=2, conn_id="room-list"):
    return {"conn_id": conn_id, "lists": {"all": {"ranges": [list(r) for r in ranges],
                                                  "timeline_limit": timeline_limit, "required_state": RS}}}


def three_rooms(user):
    """Apple, Banana, Cherry (oldest first), three messages each: [(room_id, timeline)]."""
    A = user.user_id
    made = [(F.new_room_id(n.lower()), F.room_state(A, n), [F.message(A, "%s %d" % (n, i)) for i in range(3)])
            for n in ("Apple", "Banana", "Cherry")]
    user.queue(F.sync_response(join={rid: F.joined_room(st, tl) for rid, st, tl in made}))
    return [(rid, tl) for rid, _, tl in made]


def synced(proxy, user, b=None):
    """A connection that has sent its first response and one more (steady state)."""
    c = SimplifiedSync(proxy, user.token)
    first = c.sync(b or body())
    user.wait_idle()
    c.sync(b or body())
    return c, first


def down_then(proxy, fn):
    """Stops syncv3, runs fn (the homeserver goes on), starts syncv3 again."""
    proxy.stop()
    fn()
    proxy.start()


def rows(db, sql="SELECT count(*) FROM syncv3_conns"):
    return pgtmp.psql(db, sql).strip()


def test_pos_survives_a_restart_and_the_next_response_is_incremental(proxy, db, alice):
    (ra, _), (rb, tb), (rc, _) = three_rooms(alice)
    c, first = synced(proxy, alice)
    assert set(first["rooms"]) == {ra, rb, rc}
    new = [F.message(alice.user_id, "while down %d" % i) for i in range(2)]
    down_then(proxy, lambda: alice.queue(F.sync_response(join={rb: F.joined_room(timeline=new)})))
    resp = c.sync(body())
    assert set(resp["rooms"]) == {rb}, "only the changed room: %r" % list(resp["rooms"])
    room = resp["rooms"][rb]
    assert "initial" not in room, room
    assert room["timeline"] == new, "every event since the last one sent, nothing before"
    assert room["limited"] is False
    assert "required_state" not in room, "no state changed"
    assert resp["lists"]["all"]["count"] == 3
    assert resp["lists"]["all"]["ops"] == [{"op": "SYNC", "range": [0, 9], "room_ids": [rb, rc, ra]}]
    # and the connection goes on live from there
    h = run_in_thread(c.sync, body(), timeout=10000)
    time.sleep(0.3)
    live = F.message(alice.user_id, "after")
    alice.queue(F.sync_response(join={ra: F.joined_room(timeline=[live])}))
    resp = h.result(30)
    assert resp["rooms"][ra]["timeline"] == [live] and "initial" not in resp["rooms"][ra]


def test_nothing_changed_means_no_rooms(proxy, alice):
    three_rooms(alice)
    c, _ = synced(proxy, alice)
    proxy.restart()
    resp = c.sync(body())
    assert resp["rooms"] == {}, resp["rooms"]
    assert resp["lists"]["all"]["count"] == 3


def test_state_changes_while_down_come_as_a_live_update_would(proxy, alice):
    (ra, _), _, _ = three_rooms(alice)
    c, _ = synced(proxy, alice)
    rename = F.name(alice.user_id, "Apricot")
    down_then(proxy, lambda: alice.queue(F.sync_response(join={ra: F.joined_room(timeline=[rename])})))
    room = c.sync(body())["rooms"][ra]
    assert "initial" not in room
    assert room["name"] == "Apricot"
    assert room["timeline"] == [rename]
    assert [e["event_id"] for e in room["required_state"]] == [rename["event_id"]]


def test_more_new_events_than_the_limit_are_limited(proxy, alice):
    _, (rb, _), _ = three_rooms(alice)
    c, _ = synced(proxy, alice)
    new = [F.message(alice.user_id, "n %d" % i) for i in range(5)]
    down_then(proxy, lambda: alice.queue(F.sync_response(join={rb: F.joined_room(timeline=new)})))
    room = c.sync(body())["rooms"][rb]
    assert room["timeline"] == new[-2:]
    assert room["limited"] is True, "a gap between what the client has and the timeline"
    assert "initial" not in room, "a delta from what the client has (docs/behaviour.md, \"Re-sending a room\")"
    assert "required_state" not in room, "no state changed"


def test_a_room_left_while_down_gets_the_leave(proxy, alice):
    (ra, _), (rb, _), (rc, _) = three_rooms(alice)
    c, _ = synced(proxy, alice)
    bye = F.leave(alice.user_id)
    down_then(proxy, lambda: alice.queue(F.sync_response(leave={ra: {"timeline": {"events": [bye]}}})))
    resp = c.sync(body())
    assert resp["rooms"][ra]["timeline"][-1]["event_id"] == bye["event_id"]
    assert resp["lists"]["all"]["ops"][0]["room_ids"] == [rc, rb]
    assert resp["lists"]["all"]["count"] == 2


def test_encryption_connection_keeps_pos_and_to_device_is_neither_lost_nor_repeated(proxy, alice):
    F_td = lambda since=None: {"conn_id": "encryption", "extensions": {
        "to_device": dict({"enabled": True, "limit": 100}, **({"since": since} if since else {})),
        "e2ee": {"enabled": True}}}
    c = SimplifiedSync(proxy, alice.token)
    nb = c.sync(F_td())["extensions"]["to_device"]["next_batch"]
    m1 = F.to_device(BOB, "m.room_key", {"n": 1})
    alice.queue(F.sync_response(to_device=[m1]))
    alice.wait_idle()
    got = c.sync(F_td(nb), timeout=5000)["extensions"]["to_device"]
    assert got["events"] == [m1]
    nb = got["next_batch"]
    m2 = F.to_device(BOB, "m.room_key", {"n": 2})
    down_then(proxy, lambda: alice.queue(F.sync_response(to_device=[m2])))
    r = c.request(F_td(nb), pos=c.pos, timeout=5000)
    assert r.status == 200, r
    c.pos = r.json["pos"]
    assert r.json["extensions"]["to_device"]["events"] == [m2], "m1 acknowledged before, m2 new"
    again = c.sync(F_td(r.json["extensions"]["to_device"]["next_batch"]))
    assert not again["extensions"]["to_device"].get("events")


def unknown_pos(c, b):
    r = c.request(b, pos=c.pos, timeout=0)
    assert r.status == 400, r
    assert r.json["errcode"] == "M_UNKNOWN_POS", r.json


def spoiled(proxy, db, alice, sql):
    """Two stored connections; sql (with {conn} for the first's conn_id) spoils the first while
    syncv3 is down: it is M_UNKNOWN_POS while the other one continues."""
    three_rooms(alice)
    bad, _ = synced(proxy, alice, body(conn_id="spoiled"))
    good, _ = synced(proxy, alice, body(conn_id="kept"))
    down_then(proxy, lambda: pgtmp.psql(db, sql.format(
        conn="(SELECT conn_nid FROM syncv3_conns WHERE conn_id LIKE '%spoiled')")))
    unknown_pos(bad, body(conn_id="spoiled"))
    assert good.sync(body(conn_id="kept"))["rooms"] == {}


def test_expired_state_is_unknown_pos(proxy, db, alice):
    spoiled(proxy, db, alice, "UPDATE syncv3_conns SET updated_ms = updated_ms - 36 * 60 * 1000 "
                              "WHERE conn_nid = {conn}")


def test_state_of_another_format_is_unknown_pos(proxy, db, alice):
    spoiled(proxy, db, alice, "UPDATE syncv3_conns SET format = 999 WHERE conn_nid = {conn}")


def test_malformed_state_is_unknown_pos(proxy, db, alice):
    spoiled(proxy, db, alice, "UPDATE syncv3_conn_rooms SET sent = 'not json' WHERE conn_nid = {conn}")


def test_a_pos_from_before_the_stored_change_is_unknown(proxy, alice):
    (ra, _), _, _ = three_rooms(alice)
    c, _ = synced(proxy, alice)
    old = c.pos
    alice.queue(F.sync_response(join={ra: F.joined_room(timeline=[F.message(alice.user_id, "x")])}))
    alice.wait_idle()
    assert ra in c.sync(body(), timeout=5000)["rooms"]
    current = c.pos
    proxy.restart()
    c.pos = old
    unknown_pos(c, body())
    c.pos = current
    assert c.sync(body())["rooms"] == {}, "the stored pos itself continues"


def test_a_first_response_is_not_held_back_by_its_write_and_a_crash_before_it_is_unknown_pos(
        proxy, db, alice):
    (ra, _), (rb, _), (rc, _) = three_rooms(alice)
    synced(proxy, alice)  # the user is loaded, the start-up purge is done
    locks = ("SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
             "WHERE c.relname = 'syncv3_conns' AND l.mode = 'AccessExclusiveLock' AND l.granted")
    # Another session holds the table locked: a write to it waits until it lets go.
    holder = subprocess.Popen([os.path.join(pgtmp.pg_bindir(), "psql"), "-X", "-q", "-d", db, "-c",
                               "BEGIN; LOCK TABLE syncv3_conns IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(120)"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: rows(db, locks) == "1", timeout=10, what="the table locked")
        c = SimplifiedSync(proxy, alice.token)
        first = c.sync(body(conn_id="fresh"), http_timeout=10)
        assert set(first["rooms"]) == {ra, rb, rc}, "answered while its state could not be written"
        # syncv3 dies before the write could land; its waiting statement goes with it.
        proxy.proc.kill()
        proxy.proc.wait()
        proxy.proc = None
        pgtmp.psql(db, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                       "WHERE wait_event_type = 'Lock' AND pid <> pg_backend_pid()")
    finally:
        pgtmp.psql(db, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                       "WHERE query LIKE '%pg_sleep(120)%' AND pid <> pg_backend_pid()")
        holder.wait(30)
    assert rows(db, "SELECT count(*) FROM syncv3_conns WHERE conn_id LIKE '%fresh'") == "0"
    proxy.start()
    unknown_pos(c, body(conn_id="fresh"))


def test_rows_are_replaced_capped_and_purged(proxy, db, alice):
    three_rooms(alice)
    synced(proxy, alice)
    synced(proxy, alice)  # a new connection with the same conn_id replaces the row
    assert rows(db) == "1"
    n_rooms = rows(db, "SELECT count(*) FROM syncv3_conn_rooms")
    assert n_rooms == "3", n_rooms
    for i in range(66):
        SimplifiedSync(proxy, alice.token).sync({"conn_id": "c%d" % i})
    assert int(rows(db)) == 64, "at most 64 per device, as in memory"
    # expired rows go when syncv3 starts (and hourly)
    down_then(proxy, lambda: pgtmp.psql(db, "UPDATE syncv3_conns SET updated_ms = updated_ms - 36 * 60 * 1000"))
    alice.queue(F.sync_response())
    wait_until(lambda: rows(db) == "0", timeout=20, what="expired rows purged")
    assert rows(db, "SELECT count(*) FROM syncv3_conn_rooms") == "0"


def test_rows_go_with_the_device_token(proxy, hs, db, alice):
    three_rooms(alice)
    synced(proxy, alice)
    assert rows(db) == "1"
    hs.revoke(alice.token)
    wait_until(lambda: rows(db) == "0", timeout=20, what="rows deleted with the token")


def test_a_database_of_the_previous_schema_is_migrated_and_works(make_proxy, db, alice):
    migrations = sorted((REPO / "src" / "store" / "migrations").glob("*.sql"))
    old = [m for m in migrations if int(m.stem.split("_")[0]) <= 3]
    pgtmp.psql(db, "CREATE TABLE syncv3_schema_version (version INT PRIMARY KEY, name TEXT NOT NULL, "
                   "applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
    for m in old:
        pgtmp.psql(db, m.read_text())
        pgtmp.psql(db, "INSERT INTO syncv3_schema_version (version, name) VALUES (%d, '%s')"
                   % (int(m.stem.split("_")[0]), m.stem))
    r = run(["migrate", "status"], {"SYNCV3_DB": db})
    assert r.returncode == 0, r
    assert "schema version: 3" in r.stdout and "0004_conn_state" in r.stdout.split("pending:")[1], r.stdout
    proxy = make_proxy()  # start-up applies 0004 and every later one
    assert rows(db, "SELECT max(version) FROM syncv3_schema_version") == str(int(migrations[-1].stem.split("_")[0]))
    (ra, _), _, _ = three_rooms(alice)
    c, _ = synced(proxy, alice)
    msg = F.message(alice.user_id, "after the upgrade")
    down_then(proxy, lambda: alice.queue(F.sync_response(join={ra: F.joined_room(timeline=[msg])})))
    resp = c.sync(body())
    assert set(resp["rooms"]) == {ra} and resp["rooms"][ra]["timeline"] == [msg]


def test_account_data_continues_from_its_position(proxy, alice):
    three_rooms(alice)
    alice.queue(F.sync_response(account_data=[F.account_data("m.old", {"a": 1})]))
    b = dict(body(), extensions={"account_data": {"enabled": True}})
    c, first = synced(proxy, alice, b)
    new = F.account_data("m.new", {"b": 2})
    down_then(proxy, lambda: alice.queue(F.sync_response(account_data=[new])))
    ad = c.sync(b)["extensions"]["account_data"]
    assert ad.get("global") == [new], "only what changed since, not the whole account data again: %r" % ad


def test_too_much_changed_is_unknown_pos(proxy, db, alice):
    A = alice.user_id
    rids = [F.new_room_id() for _ in range(501)]
    alice.queue(F.sync_response(join={rid: F.joined_room(F.room_state(A, "R%d" % i), [F.message(A, "m")])
                                      for i, rid in enumerate(rids)}))
    b = body(ranges=((0, 600),), timeline_limit=1)
    c, first = synced(proxy, alice, b)
    assert len(first["rooms"]) == 501
    later = {rid: F.joined_room(timeline=[F.message(A, "while down")]) for rid in rids}
    down_then(proxy, lambda: alice.queue(F.sync_response(join=later)))
    unknown_pos(c, b)
    assert rows(db) == "0", "the unusable row is deleted"
    c.reset()
    assert len(c.sync(b)["rooms"]) == 501
