"""Element X (matrix-rust-sdk) replayed black-box: the requests its SyncService makes, in the
order it makes them, with the query parameters and bodies it sends, against an account of 120
rooms (DMs, encrypted rooms, invites, a space) — and what its UI reads from the answers.

  discovery      GET /_matrix/client/versions, unstable_features["org.matrix.simplified_msc3575"]
  room-list      RoomListService: `all_rooms` in selective mode 0..19 (timeout=0), then growing
                 mode in batches of 100 from 0 (timeout=0) until the range covers `count`, then
                 the same range long-polled (timeout=30000); a room subscription (timeline 20,
                 + m.room.pinned_events) is added by resending the in-flight request's pos
  encryption     EncryptionSyncService: extensions to_device + e2ee only, always timeout=30000,
                 to_device.since = the last next_batch
  notifications  NotificationClient: list `invites` 0..16 (timeline 8), a subscription to the
                 notified room (timeline 16), account_data, timeout=1000
  errors         400 M_UNKNOWN_POS: pos, list counts and subscriptions dropped, back to 0..19;
                 401 M_UNKNOWN_TOKEN on every connection of the device

Every 200 is checked against ruma's v5 response types (helpers.SimplifiedSync).
(docs/behaviour.md, "Simplified sliding sync")"""

import time

import pytest

import fakehs as F
import pgtmp
from helpers import SimplifiedSync, http_request, run_in_thread, sync_op_room_ids
from msc4186_shape import check_error
from test_msc4186_clients import EX_REQUIRED_STATE as ROOM_LIST_RS  # room_list_service's DEFAULT_REQUIRED_STATE

LIVE_TIMEOUT = 30000  # rust-sdk's default poll timeout, in ms
SELECTIVE_END = 19  # ALL_ROOMS_DEFAULT_SELECTIVE_RANGE 0..=19
GROWING_BATCH = 100  # ALL_ROOMS_DEFAULT_GROWING_BATCH_SIZE

# subscribe_to_rooms: the same plus the pinned events, timeline_limit 20
SUBSCRIPTION = {"required_state": ROOM_LIST_RS + [["m.room.pinned_events", ""]], "timeline_limit": 20}
# matrix-rust-sdk's NotificationClient: the state needed for the push context
NOTIF_RS = [
    ["m.room.encryption", ""], ["m.room.member", "$LAZY"], ["m.room.member", "$ME"],
    ["m.room.canonical_alias", ""], ["m.room.name", ""], ["m.room.avatar", ""], ["m.room.power_levels", ""],
    ["m.room.join_rules", ""], ["org.matrix.msc3401.call.member", "*"], ["m.room.create", ""],
    ["io.element.functional_members", ""],
]

N_GROUPS, N_DMS, N_INVITES = 100, 15, 4


def room_list_body(end, subscriptions=None):
    body = {"conn_id": "room-list",
            "lists": {"all_rooms": {"ranges": [[0, end]], "required_state": ROOM_LIST_RS, "filters": {},
                                    "timeline_limit": 1}},
            "extensions": {"account_data": {"enabled": True}, "receipts": {"enabled": True, "rooms": ["*"]},
                           "typing": {"enabled": True}}}
    if subscriptions:
        body["room_subscriptions"] = {rid: SUBSCRIPTION for rid in subscriptions}
    return body


def encryption_body(since=None):
    td = {"enabled": True}
    if since is not None:
        td["since"] = since
    return {"conn_id": "encryption", "extensions": {"to_device": td, "e2ee": {"enabled": True}}}


def notification_body(room_id):
    return {"conn_id": "notifications",
            "lists": {"invites": {"ranges": [[0, 16]], "required_state": NOTIF_RS, "timeline_limit": 8,
                                  "filters": {"is_invite": True}}},
            "room_subscriptions": {room_id: {"required_state": NOTIF_RS, "timeline_limit": 16}},
            "extensions": {"account_data": {"enabled": True}}}


def state_of(room, ev_type, state_key=None):
    return [e for e in room.get("required_state", [])
            if e["type"] == ev_type and (state_key is None or e["state_key"] == state_key)]


@pytest.fixture
def account(alice):
    """alice's account: 100 named group rooms (every 4th encrypted), 15 DMs (unnamed, every other
    one encrypted, listed in m.direct), a space with three children, 4 invites (one a DM), a
    busy room with 25 messages and pinned events, unread counts, one-time key counts."""
    A = alice.user_id
    join, invite, direct = {}, {}, {}
    groups, dms, invites = [], [], []
    space = F.new_room_id("space")
    busy = None
    for i in range(N_GROUPS):
        rid = F.new_room_id("g")
        st = F.room_state(A, "Room %03d" % i, encrypted=(i % 4 == 0))
        tl = [F.message(A, "hello %d" % i)]
        if i == 50:
            busy = rid
            st.append(F.state("m.room.pinned_events", "", A, {"pinned": []}))
            tl = [F.message(A, "busy %d" % j) for j in range(25)]
            st[-1]["content"]["pinned"] = [tl[3]["event_id"]]
        join[rid] = F.joined_room(st, tl, prev_batch="pb_%d" % i, limited=(i == 50))
        groups.append(rid)
    join[space] = F.joined_room(
        F.room_state(A, "Our space", room_type="m.space") + [F.space_child(A, g) for g in groups[:3]],
        [F.state("m.space.child", groups[3], A, {"via": ["localhost"]})])
    for i in range(N_DMS):
        rid = F.new_room_id("dm")
        partner = "@user%02d:localhost" % i
        st = [F.create(partner), F.join(partner, displayname="User %02d" % i), F.power_levels(partner),
              F.join_rules(partner, "invite"), F.join(A)]
        if i % 2 == 0:
            st.append(F.encryption(partner))
        unread = {"notification_count": 2, "highlight_count": 1} if i == 0 else {}
        join[rid] = F.joined_room(st, [F.message(partner, "psst %d" % i)], **unread)
        direct[partner] = [rid]
        dms.append((rid, partner))
    for i in range(N_INVITES):
        rid = F.new_room_id("inv")
        inviter = "@inviter%d:localhost" % i
        if i == 0:
            evs = F.invite_to(inviter, A, is_direct=True)
            direct[inviter] = [rid]
        else:
            evs = F.invite_to(inviter, A, room_name="Invite %d" % i, encrypted=(i == 1))
        invite[rid] = F.invited_room(evs)
        invites.append(rid)
    nb = alice.queue(F.sync_response(join=join, invite=invite, account_data=[F.account_data("m.direct", direct)],
                                     otk_counts={"signed_curve25519": 50}, fallback_key_types=["signed_curve25519"]))
    return {"groups": groups, "dms": dms, "invites": invites, "space": space, "busy": busy,
            "count": N_GROUPS + 1 + N_DMS + N_INVITES, "next_batch": nb}


def discover(proxy, token):
    """What Client::available_sliding_sync_versions asks first (with the session's token)."""
    r = http_request(proxy.url + "/_matrix/client/versions", headers={"Authorization": "Bearer " + token})
    assert r.status == 200, r
    assert isinstance(r.json["versions"], list) and r.json["versions"]
    assert r.json["unstable_features"]["org.matrix.simplified_msc3575"] is True
    return r.json


def set_up_room_list(proxy, alice, account):
    """Init -> SettingUp -> Running until fully loaded, as RoomListService does; returns the
    client, every room it was sent (room_id -> merged fields) and the ranges it asked for."""
    c = SimplifiedSync(proxy, alice.token)
    seen, asked = {}, []
    end = SELECTIVE_END
    fetched = 0
    while True:
        asked.append((c.pos, end))
        resp = c.sync(room_list_body(end), timeout=0)
        count = resp["lists"]["all_rooms"]["count"]
        for rid, room in resp["rooms"].items():
            assert rid not in seen, "%s sent twice while the range only grew" % rid
            seen[rid] = room
        ids = sync_op_room_ids(resp, "all_rooms")
        assert len(ids) == min(end + 1, count)
        if len(asked) == 1:
            # growing mode starts over from 0 with the batch size
            fetched = 0
        else:
            fetched = end + 1
            if end >= count - 1:
                return c, seen, asked, resp
        end = min(fetched + GROWING_BATCH, count) - 1


def test_discovery_then_selective_then_growing(proxy, alice, account):
    discover(proxy, alice.token)
    c, seen, asked, last = set_up_room_list(proxy, alice, account)
    n = account["count"]
    # the ranges rust-sdk's own room-list tests expect, for 120 rooms
    assert [e for _, e in asked] == [19, 99, n - 1]
    assert asked[0][0] is None and all(p is not None for p, _ in asked[1:])
    assert last["lists"]["all_rooms"]["count"] == n
    assert len(seen) == n and all(r.get("initial") is True for r in seen.values())

    # the order Element X shows: newest bump_stamp first, every room once
    order = sync_op_room_ids(last, "all_rooms")
    assert len(set(order)) == n
    stamps = [seen[rid]["bump_stamp"] for rid in order]
    assert stamps == sorted(stamps, reverse=True)
    assert order[0] == account["dms"][-1][0], "the newest message on top"
    assert order[-1] == account["groups"][0], "the oldest room at the bottom"

    # group rooms: the name Element X computes from required_state, the encryption state, counts
    for i, rid in enumerate(account["groups"]):
        room = seen[rid]
        assert room["name"] == "Room %03d" % i
        assert state_of(room, "m.room.name")[0]["content"]["name"] == "Room %03d" % i
        assert bool(state_of(room, "m.room.encryption")) == (i % 4 == 0)
        assert state_of(room, "m.room.member", alice.user_id)[0]["content"]["membership"] == "join"
        assert state_of(room, "m.room.create") and state_of(room, "m.room.power_levels")
        assert room["joined_count"] == 1 and room["invited_count"] == 0
        assert len(room["timeline"]) == 1 and "heroes" not in room
        assert room["bump_stamp"] == room["timeline"][-1]["origin_server_ts"]
        assert room["notification_count"] == 0 and room["highlight_count"] == 0
        if rid != account["busy"]:
            # the whole timeline: the homeserver's token for what came before it
            assert room["prev_batch"] == "pb_%d" % i and room["limited"] is False
    busy = seen[account["busy"]]
    assert busy["limited"] is True and len(busy["timeline"]) == 1
    # the newest of 25: without a token rust-sdk's event cache takes the room's history as
    # complete and never paginates; the sync token paginates back from after the event
    assert busy["prev_batch"] == account["next_batch"]
    assert not state_of(busy, "m.room.pinned_events"), "not in the list's required_state"

    # DMs: no name, the partner as hero (display name for the title), is_dm, unread counts
    for i, (rid, partner) in enumerate(account["dms"]):
        room = seen[rid]
        assert room["prev_batch"] == account["next_batch"], "no token from the homeserver: the sync one"
        assert "name" not in room
        assert room["heroes"] == [{"user_id": partner, "displayname": "User %02d" % i}]
        assert room["is_dm"] is True and room["joined_count"] == 2
        assert bool(state_of(room, "m.room.encryption")) == (i % 2 == 0)
        # $LAZY: the sender of the timeline event; $ME: alice
        assert state_of(room, "m.room.member", partner) and state_of(room, "m.room.member", alice.user_id)
    dm0 = seen[account["dms"][0][0]]
    assert (dm0["notification_count"], dm0["highlight_count"]) == (2, 1)

    # the space: its type in m.room.create and its children as m.space.child state
    sp = seen[account["space"]]
    assert state_of(sp, "m.room.create")[0]["content"]["type"] == "m.space"
    assert {e["state_key"] for e in state_of(sp, "m.space.child")} == set(account["groups"][:4])

    # invites: invite_state with alice's invite membership, named ones named, the DM one a DM
    for i, rid in enumerate(account["invites"]):
        room = seen[rid]
        st = room["invite_state"]
        mine = [e for e in st if e["type"] == "m.room.member" and e["state_key"] == alice.user_id]
        assert mine and mine[-1]["content"]["membership"] == "invite"
        assert "timeline" not in room or room["timeline"] == []
        if i == 0:
            assert room.get("is_dm") is True and "name" not in room
            assert mine[-1]["content"]["is_direct"] is True
        else:
            assert room["name"] == "Invite %d" % i
    assert any(e["type"] == "m.room.encryption" for e in seen[account["invites"][1]]["invite_state"])

    # Running and fully loaded: the same range, long-polled; nothing new comes back at once
    t0 = time.monotonic()
    h = run_in_thread(c.sync, room_list_body(n - 1), timeout=LIVE_TIMEOUT)
    time.sleep(1.0)
    assert not h.done(), "a fully loaded list long-polls"
    alice.queue(F.sync_response(join={account["groups"][7]: F.joined_room(timeline=[F.message("@x:localhost", "x")])}))
    resp = h.result(40)
    assert time.monotonic() - t0 < 20
    assert list(resp["rooms"]) == [account["groups"][7]]


def test_live_message_invite_leave_and_subscription(proxy, alice, account):
    A = alice.user_id
    c, seen, _, _ = set_up_room_list(proxy, alice, account)
    n = account["count"]
    old = account["groups"][0]

    # a new message in the bottom room: it moves to the top, with its unread count
    h = run_in_thread(c.sync, room_list_body(n - 1), timeout=LIVE_TIMEOUT)
    time.sleep(0.3)
    ev = F.message("@user00:localhost", "news")
    alice.queue(F.sync_response(join={old: F.joined_room(timeline=[ev], notification_count=1)}))
    resp = h.result(40)
    room = resp["rooms"][old]
    assert room["timeline"] == [ev] and room["num_live"] == 1
    assert room.get("initial") is not True and room["notification_count"] == 1
    assert room["bump_stamp"] == ev["origin_server_ts"] > seen[old]["bump_stamp"]
    order = sync_op_room_ids(resp, "all_rooms")
    assert order[0] == old and len(order) == n and resp["lists"]["all_rooms"]["count"] == n

    # an invite arrives: count grows, the range is now one short — rust-sdk grows it again.
    # An invite's recency is the time syncv3 saw it; the fake homeserver's timestamps can run
    # ahead of the wall clock (strictly increasing), so wait until the clock passes the message's.
    while time.time() * 1000 <= ev["origin_server_ts"] + 1:
        time.sleep(0.005)
    inv = F.new_room_id("inv")
    h = run_in_thread(c.sync, room_list_body(n - 1), timeout=LIVE_TIMEOUT)
    time.sleep(0.3)
    alice.queue(F.sync_response(invite={inv: F.invited_room(F.invite_to("@carol:localhost", A, "Late party"))}))
    resp = h.result(40)
    assert resp["lists"]["all_rooms"]["count"] == n + 1
    room = resp["rooms"][inv]
    assert room["initial"] is True and room["name"] == "Late party"
    assert [e["content"]["membership"] for e in room["invite_state"]
            if e["type"] == "m.room.member" and e["state_key"] == A] == ["invite"]
    assert sync_op_room_ids(resp, "all_rooms")[0] == inv
    n += 1
    resp = c.sync(room_list_body(n - 1), timeout=0)
    assert len(sync_op_room_ids(resp, "all_rooms")) == n

    # alice leaves a room (from another device): the leave comes in required_state ($ME),
    # the room leaves the list
    gone = account["groups"][1]
    h = run_in_thread(c.sync, room_list_body(n - 1), timeout=LIVE_TIMEOUT)
    time.sleep(0.3)
    lv = F.leave(A)
    alice.queue(F.sync_response(leave={gone: F.left_room(timeline=[lv])}))
    resp = h.result(40)
    assert resp["lists"]["all_rooms"]["count"] == n - 1
    assert gone not in sync_op_room_ids(resp, "all_rooms")
    assert [e["content"]["membership"] for e in state_of(resp["rooms"][gone], "m.room.member", A)] == ["leave"]
    n -= 1
    resp = c.sync(room_list_body(n - 1), timeout=0)

    # the user opens the busy room: subscribe_to_rooms cancels the long-poll in flight and
    # resends its pos with the subscription; the client has the room from the list (timeline 1),
    # so it comes as a delta: the timeline expanded to 20 events and the newly covered pins
    busy = account["busy"]
    pos = c.pos
    parked = run_in_thread(c.request, room_list_body(n - 1), pos=pos, timeout=LIVE_TIMEOUT)
    time.sleep(0.3)
    t0 = time.monotonic()
    resp = c.sync(room_list_body(n - 1, [busy]), timeout=LIVE_TIMEOUT)
    parked.result(40)
    if busy not in resp["rooms"]:
        # the answer the cancelled request missed came first; the subscription is in the next
                resp = c.sync(room_list_body(n - 1, [busy]), timeout=LIVE_TIMEOUT)
    assert time.monotonic() - t0 < 10, "a new subscription does not wait for the long-poll"
    room = resp["rooms"][busy]
    assert "initial" not in room and room["unstable_expanded_timeline"] is True
    assert len(room["timeline"]) == 20 and room["limited"] is True
    assert [e["content"]["body"] for e in room["timeline"]] == ["busy %d" % j for j in range(5, 25)]
    assert room["prev_batch"] == account["next_batch"]
    pins = state_of(room, "m.room.pinned_events")
    assert len(pins) == 1 and len(pins[0]["content"]["pinned"]) == 1
    assert "name" not in room, "the client has the name from the list"

    # while subscribed, every request carries the subscription; live events arrive without
    # waiting out a long-poll (an answer buffered by the cancelled request may come first)
    ev = F.message("@user01:localhost", "in the open room")
    alice.queue(F.sync_response(join={busy: F.joined_room(timeline=[ev])}))
    alice.wait_idle()
    t0 = time.monotonic()
    for _ in range(3):
        resp = c.sync(room_list_body(n - 1, [busy]), timeout=LIVE_TIMEOUT)
        if busy in resp["rooms"]:
            break
    assert time.monotonic() - t0 < 10
    assert resp["rooms"][busy]["timeline"] == [ev] and resp["rooms"][busy]["num_live"] == 1


def test_encryption_connection(proxy, alice, account):
    bob_dev = F.to_device("@user00:localhost", "m.room.encrypted",
                          {"algorithm": "m.olm.v1.curve25519-aes-sha2", "ciphertext": {}})
    # the encryption sync always asks with the default poll timeout; no pos answers at once
    enc = SimplifiedSync(proxy, alice.token)
    t0 = time.monotonic()
    first = enc.sync(encryption_body(), timeout=LIVE_TIMEOUT)
    assert time.monotonic() - t0 < 10, "a request without pos never long-polls"
    assert first["rooms"] == {} and not first.get("lists")
    e2ee = first["extensions"]["e2ee"]
    assert e2ee["device_one_time_keys_count"] == {"signed_curve25519": 50}
    assert e2ee["device_unused_fallback_key_types"] == ["signed_curve25519"]
    since = first["extensions"]["to_device"]["next_batch"]

    # the room list runs beside it on the same device
    rl = SimplifiedSync(proxy, alice.token)
    rl.sync(room_list_body(SELECTIVE_END), timeout=0)

    # long-poll: to-device messages, a device list change and the new key count wake it
    h = run_in_thread(enc.sync, encryption_body(since), timeout=LIVE_TIMEOUT)
    time.sleep(1.0)
    assert not h.done(), "the encryption loop long-polls (the key counts it was given are no news)"
    alice.queue(F.sync_response(to_device=[bob_dev], device_lists={"changed": ["@user00:localhost"]},
                                otk_counts={"signed_curve25519": 49}))
    resp = h.result(40)
    ext = resp["extensions"]
    assert ext["to_device"]["events"] == [bob_dev]
    assert "@user00:localhost" in ext["e2ee"]["device_lists"]["changed"]
    assert ext["e2ee"]["device_one_time_keys_count"] == {"signed_curve25519": 49}
    assert resp["rooms"] == {}
    since = ext["to_device"]["next_batch"]

    # acknowledged by since: the next message comes alone, the first never again
    h = run_in_thread(enc.sync, encryption_body(since), timeout=LIVE_TIMEOUT)
    time.sleep(0.5)
    second = F.to_device("@user01:localhost", "m.room_key_request", {"action": "request"})
    alice.queue(F.sync_response(to_device=[second]))
    resp = h.result(40)
    assert resp["extensions"]["to_device"]["events"] == [second]
    assert not resp["extensions"].get("e2ee", {}).get("device_lists", {}).get("changed"), \
        "a device list change comes once"
    since = resp["extensions"]["to_device"]["next_batch"]

    # the room-list connection never carries to-device messages
    rl_resp = rl.sync(room_list_body(SELECTIVE_END), timeout=0)
    assert "to_device" not in rl_resp.get("extensions", {})

    # the app restarts: a new connection (no pos) with the persisted since gets nothing old
    enc2 = SimplifiedSync(proxy, alice.token)
    resp = enc2.sync(encryption_body(since), timeout=LIVE_TIMEOUT)
    assert not resp["extensions"]["to_device"].get("events")


def test_notification_client_fetches_the_event(proxy, alice, account):
    A = alice.user_id
    rl = SimplifiedSync(proxy, alice.token)
    rl.sync(room_list_body(SELECTIVE_END), timeout=0)
    alice.wait_idle()
    # a push arrives for a message in an encrypted DM
    rid, partner = account["dms"][2]
    pushed = F.event("m.room.encrypted", partner, {"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "x"})
    alice.queue(F.sync_response(join={rid: F.joined_room(timeline=[pushed], notification_count=1)}))
    alice.wait_idle()

    nc = SimplifiedSync(proxy, alice.token)
    t0 = time.monotonic()
    resp = nc.sync(notification_body(rid), timeout=1000)
    assert time.monotonic() - t0 < 5
    room = resp["rooms"][rid]
    assert pushed["event_id"] in [e["event_id"] for e in room["timeline"]], "found on the first try"
    assert len(room["timeline"]) == 2 and room["initial"] is True
    # what the push context needs: power levels, alice's member event, the encryption state
    assert state_of(room, "m.room.power_levels") and state_of(room, "m.room.encryption")
    assert state_of(room, "m.room.member", A)[0]["content"]["membership"] == "join"
    assert state_of(room, "m.room.member", partner), "$LAZY: the sender"
    assert not state_of(room, "m.room.topic"), "only the notification client's required_state"
    assert room["heroes"][0]["user_id"] == partner and room["notification_count"] == 1
    # the invites list: all four, with their invite_state, at most 17 of them
    assert resp["lists"]["invites"]["count"] == N_INVITES
    assert set(sync_op_room_ids(resp, "invites")) == set(account["invites"])
    for inv in account["invites"]:
        assert resp["rooms"][inv]["invite_state"]
    assert "account_data" in resp["extensions"]
    # the invite a push was about: found as the stripped member event of the user
    inv = account["invites"][2]
    mem = [e for e in resp["rooms"][inv]["invite_state"] if e["type"] == "m.room.member"]
    assert mem[-1]["state_key"] == A and mem[-1]["sender"] == "@inviter2:localhost"


def test_unknown_pos_starts_over(proxy, db, alice, account):
    c, seen, _, _ = set_up_room_list(proxy, alice, account)
    n = account["count"]
    busy = account["busy"]
    c.sync(room_list_body(n - 1, [busy]), timeout=0)
    stale = c.pos
    c.sync(room_list_body(n - 1, [busy]), timeout=0)
    c.sync(room_list_body(n - 1, [busy]), timeout=0)
    # a pos two answers old (another process of the app used the shared pos meanwhile)
    r = c.request(room_list_body(n - 1, [busy]), pos=stale, timeout=LIVE_TIMEOUT)
    assert r.status == 400, r
    check_error(r.status, r.json, "M_UNKNOWN_POS")

    enc = SimplifiedSync(proxy, alice.token)
    since = enc.sync(encryption_body(), timeout=LIVE_TIMEOUT)["extensions"]["to_device"]["next_batch"]
    msg = F.to_device("@user03:localhost", "m.room.encrypted", {"ciphertext": "y"})
    alice.queue(F.sync_response(to_device=[msg]))
    alice.wait_idle()
    resp = enc.sync(encryption_body(since), timeout=LIVE_TIMEOUT)
    assert resp["extensions"]["to_device"]["events"] == [msg]
    since = resp["extensions"]["to_device"]["next_batch"]
    # acknowledged (deleted); then one more arrives that the client receives but has not
    # acknowledged when the server forgets its connections
    assert not enc.sync(encryption_body(since), timeout=0)["extensions"]["to_device"].get("events")
    unacked = F.to_device("@user04:localhost", "m.room.encrypted", {"ciphertext": "z"})
    alice.queue(F.sync_response(to_device=[unacked]))
    alice.wait_idle()
    resp = enc.sync(encryption_body(since), timeout=LIVE_TIMEOUT)
    assert resp["extensions"]["to_device"]["events"] == [unacked]

    # the server forgets every connection (a restart without the stored connections,
    # docs/behaviour.md "Connections across restarts"): both loops get M_UNKNOWN_POS
    proxy.stop()
    pgtmp.psql(db, "DELETE FROM syncv3_conns")
    proxy.start()
    for client, body in ((c, room_list_body(n - 1)), (enc, encryption_body(since))):
        r = client.request(body, pos=client.pos, timeout=LIVE_TIMEOUT)
        assert r.status == 400, r
        check_error(r.status, r.json, "M_UNKNOWN_POS")

    # expire_session(): no pos, no subscriptions, the Recovering state's 0..19 with timeout=0
    c.reset()
    resp = c.sync(room_list_body(SELECTIVE_END), timeout=0)
    assert resp["lists"]["all_rooms"]["count"] == n
    assert len(resp["rooms"]) == 20 and all(r["initial"] for r in resp["rooms"].values())
    assert busy not in resp["rooms"] or len(resp["rooms"][busy]["timeline"]) == 1
    resp = c.sync(room_list_body(n - 1), timeout=0)
    assert len(resp["rooms"]) == n - 20

    # the encryption loop restarts with its persisted since: the acknowledged message stays
    # gone; the unacknowledged one comes again (after a restart syncv3 re-sends rather than
    # trust a since it did not hand out: duplicates, never loss)
    enc.reset()
    resp = enc.sync(encryption_body(since), timeout=LIVE_TIMEOUT)
    assert resp["extensions"]["to_device"]["events"] == [unacked]


def test_rejected_token_is_401_on_every_connection(proxy, hs, alice, account):
    c, _, _, _ = set_up_room_list(proxy, alice, account)
    enc = SimplifiedSync(proxy, alice.token)
    enc.sync(encryption_body(), timeout=LIVE_TIMEOUT)
    n = account["count"]
    parked = run_in_thread(c.request, room_list_body(n - 1), pos=c.pos, timeout=LIVE_TIMEOUT)
    time.sleep(0.5)
    hs.revoke(alice.token)
    r = parked.result(40)
    assert r.status == 401, r
    check_error(r.status, r.json, "M_UNKNOWN_TOKEN")
    r = enc.request(encryption_body(), pos=enc.pos, timeout=LIVE_TIMEOUT)
    assert r.status == 401, r
    check_error(r.status, r.json, "M_UNKNOWN_TOKEN")
    # not M_UNKNOWN_POS: starting over would not help, the session must be refreshed
    r = SimplifiedSync(proxy, alice.token).request(room_list_body(SELECTIVE_END), timeout=0)
    assert r.status == 401, r
    check_error(r.status, r.json, "M_UNKNOWN_TOKEN")
