"""Heroes order when the membership changes arrive together in one v2 response (ingest
works out where each member's join/invite run began from the rows of the same batch).
(docs/behaviour.md, heroes)"""

import fakehs as F
import pgtmp

BOB, CAROL, DAVE = "@bob:localhost", "@carol:localhost", "@dave:localhost"


def test_runs_inside_one_batch_and_across_batches(proxy, alice):
    A = alice.user_id
    rid = F.new_room_id("batchheroes")
    st = F.room_state(A) + [F.join(BOB, displayname="Bob"), F.join(CAROL, displayname="Carol")]
    tl = [F.invite(A, DAVE, displayname="Dave"), F.join(BOB, displayname="Robert"),
          F.join(DAVE, displayname="David"), F.leave(CAROL), F.join(CAROL, displayname="Carol")]
    alice.queue(F.sync_response(join={rid: F.joined_room(st, tl)}))
    c = proxy.client(alice.token)
    sub = {"room_subscriptions": {rid: {"timeline_limit": 0, "include_heroes": True}}}
    resp = c.sync(sub)
    assert [h["user_id"] for h in resp["rooms"][rid]["heroes"]] == [BOB, DAVE, CAROL]
    assert resp["rooms"][rid]["name"] == "Robert, David and Carol"
    # the stored runs: bob's began with his first join, dave's with the invite, carol's with
    # her second join; a later batch continues them
    alice.queue(F.sync_response(join={rid: F.joined_room(timeline=[F.join(DAVE, displayname="D")])}))
    alice.wait_idle()
    rows = pgtmp.psql(proxy.db, "SELECT s.state_key, s.member_since = (SELECT min(p.start_nid) FROM "
                                "syncv3_room_state p WHERE p.room_id = s.room_id AND p.event_type = s.event_type "
                                "AND p.state_key = s.state_key AND p.start_nid > COALESCE((SELECT max(q.start_nid) "
                                "FROM syncv3_room_state q WHERE q.room_id = s.room_id AND q.state_key = s.state_key "
                                "AND q.event_type = s.event_type AND q.membership <> 'join' AND q.membership <> "
                                "'invite'), 0)) FROM syncv3_room_state s WHERE s.room_id = '%s' AND "
                                "s.event_type = 'm.room.member' AND s.end_nid IS NULL ORDER BY s.member_since" % rid)
    assert rows.split() == ["%s|t" % u for u in (A, BOB, DAVE, CAROL)]
