"""The per-room newest event of each MSC4186 bump type, kept by ingest in syncv3_room_bump and
read with the room metadata, so a new MSC4186 connection sorts without reading events.
(docs/behaviour.md, "Recency and bump_event_types")"""

import fakehs as F
import pgtmp
from helpers import SimplifiedSync

# after the joins' timestamps, so the recency is the messages' (never before the join)
T = F.now_ts() + 10**7


def order(proxy, alice):
    c = SimplifiedSync(proxy, alice.token)
    resp = c.sync({"lists": {"l": {"ranges": [[0, 9]], "timeline_limit": 0}}})
    return resp["lists"]["l"]["ops"][0]["room_ids"]


def test_ingest_records_the_newest_event_of_each_bump_type(proxy, alice):
    A = alice.user_id
    rid = F.new_room_id("bumprows")
    first = F.message(A, "one", ts=T + 1000)
    last = F.message(A, "two", ts=T + 2000)
    topic = F.event("m.reaction", A, {"m.relates_to": {"rel_type": "m.annotation",
                                                       "event_id": last["event_id"], "key": "x"}},
                    ts=T + 3000)
    alice.queue(F.sync_response(join={rid: F.joined_room(F.room_state(A), [first, last, topic])}))
    assert order(proxy, alice) == [rid]
    rows = pgtmp.psql(proxy.db, "SELECT event_type, ts FROM syncv3_room_bump WHERE room_id = '%s' "
                                "ORDER BY event_type" % rid).split()
    # the newest message only; the reaction is no bump type; the create event is state
    assert rows == ["m.room.message|%d" % (T + 2000)]
    later = F.message(A, "three", ts=T + 4000)
    alice.queue(F.sync_response(join={rid: F.joined_room(timeline=[later])}))
    alice.wait_idle()
    rows = pgtmp.psql(proxy.db, "SELECT event_type, ts FROM syncv3_room_bump WHERE room_id = '%s'"
                      % rid).split()
    assert rows == ["m.room.message|%d" % (T + 4000)]


def test_order_after_restart_comes_from_the_stored_bump_rows(proxy, alice):
    A = alice.user_id
    old, new = F.new_room_id("bumpold"), F.new_room_id("bumpnew")
    alice.queue(F.sync_response(join={
        old: F.joined_room(F.room_state(A, "Old"), [F.message(A, "o", ts=T + 1000)]),
        new: F.joined_room(F.room_state(A, "New"), [F.message(A, "n", ts=T + 2000)]),
    }))
    assert order(proxy, alice) == [new, old]
    proxy.restart()
    assert order(proxy, alice) == [new, old], "the stored values give the same order"
    # the order a new connection uses is the stored row's, not a lookup of the room's events
    proxy.stop()
    pgtmp.psql(proxy.db, "UPDATE syncv3_room_bump SET ts = %d WHERE room_id = '%s'" % (T + 9000, old))
    proxy.start()
    assert order(proxy, alice) == [old, new]
