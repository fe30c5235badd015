"""A to-device `since` handed out before a restart, presented by a new MSC4186 connection after
it, is honoured: what it acknowledges is deleted and not sent again. A `since` syncv3 did not
hand out to this device (another device's, or past every message ever sent, as after the
database was recreated) reads from 0: duplicates, never loss.
(docs/behaviour.md, "Connections across restarts"; "Extensions")"""

import fakehs as F
import pgtmp
from helpers import SimplifiedSync, User

BOB = "@bob:localhost"


def td_body(since=None, conn_id="encryption"):
    td = {"enabled": True, "limit": 100}
    if since is not None:
        td["since"] = since
    return {"conn_id": conn_id, "extensions": {"to_device": td}}


def td_of(resp):
    return resp["extensions"]["to_device"]


def stored_count(db, user):
    return int(pgtmp.psql(db, "SELECT count(*) FROM syncv3_to_device_messages WHERE user_id = '%s' AND "
                              "device_id = '%s'" % (user.user_id, user.device_id)).strip())


def delivered(proxy, user, n, start=0):
    """A new connection gets n messages (their content.n = start..start+n-1); returns them and
    the next_batch that acknowledges them."""
    c = SimplifiedSync(proxy, user.token)
    nb = td_of(c.sync(td_body()))["next_batch"]
    sent = [F.to_device(BOB, "m.room_key", {"n": start + i}) for i in range(n)]
    user.queue(F.sync_response(to_device=sent))
    user.wait_idle()
    got = td_of(c.sync(td_body(nb), timeout=5000))
    assert got["events"] == sent
    return sent, got["next_batch"]


def test_a_new_connection_after_a_restart_honours_the_previous_since(proxy, db, alice):
    _, nb = delivered(proxy, alice, 2)
    assert stored_count(db, alice) == 2, "not acknowledged yet"
    proxy.restart()
    # Element X after its own restart: no pos (a new connection), the since it kept
    c = SimplifiedSync(proxy, alice.token)
    got = td_of(c.sync(td_body(nb)))
    assert not got.get("events"), "acknowledged messages are not sent again"
    assert got["next_batch"] == nb
    assert stored_count(db, alice) == 0, "the since acknowledged (deleted) them"
    # a later message comes exactly once
    m3 = F.to_device(BOB, "m.room_key", {"n": 3})
    alice.queue(F.sync_response(to_device=[m3]))
    alice.wait_idle()
    got = td_of(c.sync(td_body(got["next_batch"]), timeout=5000))
    assert got["events"] == [m3]
    again = td_of(c.sync(td_body(got["next_batch"])))
    assert not again.get("events")
    assert stored_count(db, alice) == 0


def test_an_older_since_from_before_the_restart_resends_only_what_it_did_not_acknowledge(proxy, db, alice):
    first, nb1 = delivered(proxy, alice, 1)
    # a second batch on a connection that presented nb1 (acknowledging the first message)
    c = SimplifiedSync(proxy, alice.token)
    td_of(c.sync(td_body(nb1)))
    m2 = F.to_device(BOB, "m.room_key", {"n": 2})
    alice.queue(F.sync_response(to_device=[m2]))
    alice.wait_idle()
    assert td_of(c.sync(td_body(nb1), timeout=5000))["events"] == [m2]
    proxy.restart()
    # the client never got that response: it still holds nb1
    c = SimplifiedSync(proxy, alice.token)
    got = td_of(c.sync(td_body(nb1)))
    assert got["events"] == [m2], "only the unacknowledged message, once"
    assert stored_count(db, alice) == 1


def test_a_since_past_everything_sent_reads_from_0(proxy, db, alice):
    sent, nb = delivered(proxy, alice, 2)
    proxy.restart()
    c = SimplifiedSync(proxy, alice.token)
    got = td_of(c.sync(td_body(str(int(nb) + 1000))))
    assert got["events"] == sent, "a since syncv3 never handed out acknowledges nothing"
    assert stored_count(db, alice) == 2


def test_another_devices_since_reads_from_0(proxy, hs, db, alice):
    other = User(hs, "alice", device_id="OTHER", token="syt_alice_other")
    c, co = SimplifiedSync(proxy, alice.token), SimplifiedSync(proxy, other.token)
    nb0, onb0 = td_of(c.sync(td_body()))["next_batch"], td_of(co.sync(td_body()))["next_batch"]
    # positions: alice's a1, the other device's o1, alice's a2
    a1, o1, a2 = (F.to_device(BOB, "m.room_key", {"n": n}) for n in (1, 10, 2))
    for user, m in ((alice, a1), (other, o1), (alice, a2)):
        user.queue(F.sync_response(to_device=[m]))
        user.wait_idle()
    assert td_of(c.sync(td_body(nb0), timeout=5000))["events"] == [a1, a2]
    got = td_of(co.sync(td_body(onb0), timeout=5000))
    assert got["events"] == [o1]
    proxy.restart()
    # the other device's since lies between alice's two unacknowledged messages
    c = SimplifiedSync(proxy, alice.token)
    got = td_of(c.sync(td_body(got["next_batch"])))
    assert got["events"] == [a1, a2], "another device's since acknowledges nothing of this device's"
    assert stored_count(db, alice) == 2
