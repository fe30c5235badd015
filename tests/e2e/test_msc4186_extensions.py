"""MSC4186 extensions: to_device (since = the last next_batch, delivered until acknowledged),
e2ee, account_data, typing and receipts scoped by lists/rooms, and the extensions-only
connection Element X uses for encryption.
(docs/behaviour.md, "Simplified sliding sync")"""

import time

import fakehs as F
from helpers import SimplifiedSync, run_in_thread

BOB = "@bob:localhost"


def own_room(user, label):
    rid = F.new_room_id()
    msg = F.message(user.user_id, label)
    user.queue(F.sync_response(join={rid: F.joined_room(F.room_state(user.user_id, label), [msg])}))
    return rid, msg["event_id"]


def started(proxy, user, conn_id="warm-up"):
    c = SimplifiedSync(proxy, user.token)
    c.sync({"conn_id": conn_id})
    user.wait_idle()
    return SimplifiedSync(proxy, user.token)


def td(since=None):
    e = {"enabled": True, "limit": 100}
    if since is not None:
        e["since"] = since
    return {"to_device": e}


def test_to_device_until_acknowledged(proxy, alice):
    own_room(alice, "R")
    c = started(proxy, alice)
    body = {"conn_id": "encryption", "extensions": {**td(), "e2ee": {"enabled": True}}}
    resp = c.sync(body)
    nb0 = resp["extensions"]["to_device"]["next_batch"]
    sent = [F.to_device(BOB, "m.test", {"n": i}) for i in range(3)]
    alice.queue(F.sync_response(to_device=sent))
    alice.wait_idle()
    body = {"conn_id": "encryption", "extensions": {**td(nb0), "e2ee": {"enabled": True}}}
    resp = c.sync(body, timeout=5000)
    got = resp["extensions"]["to_device"]
    assert got["events"] == sent
    # the client did not take next_batch: the same since gets them again
    assert c.sync(body)["extensions"]["to_device"]["events"] == sent
    ack = {"conn_id": "encryption", "extensions": {**td(got["next_batch"]), "e2ee": {"enabled": True}}}
    resp = c.sync(ack)
    assert not resp["extensions"]["to_device"].get("events"), "acknowledged messages are gone"


def test_extensions_only_connection_long_polls(proxy, alice):
    own_room(alice, "R")
    c = started(proxy, alice)
    body = {"conn_id": "encryption", "extensions": {**td(), "e2ee": {"enabled": True}}}
    first = c.sync(body)
    assert first["rooms"] == {} and not first.get("lists")
    body["extensions"]["to_device"]["since"] = first["extensions"]["to_device"]["next_batch"]
    h = run_in_thread(c.sync, body, timeout=10000)
    time.sleep(0.3)
    msg = F.to_device(BOB, "m.room_key", {"k": 1})
    alice.queue(F.sync_response(to_device=[msg]))
    resp = h.result(30)
    assert resp["extensions"]["to_device"]["events"] == [msg]
    # and the connection keeps working with its pos
    body["extensions"]["to_device"]["since"] = resp["extensions"]["to_device"]["next_batch"]
    again = c.sync(body)
    assert not again["extensions"]["to_device"].get("events")


def test_e2ee(proxy, alice):
    alice.queue(F.sync_response(otk_counts={"signed_curve25519": 50}, fallback_key_types=["signed_curve25519"]))
    c = started(proxy, alice)
    body = {"extensions": {"e2ee": {"enabled": True}}}
    e2ee = c.sync(body)["extensions"]["e2ee"]
    assert e2ee["device_one_time_keys_count"] == {"signed_curve25519": 50}
    assert e2ee["device_unused_fallback_key_types"] == ["signed_curve25519"]
    alice.queue(F.sync_response(device_lists={"changed": [BOB], "left": []}))
    alice.wait_idle()
    e2ee = c.sync(body, timeout=5000)["extensions"]["e2ee"]
    assert e2ee["device_lists"]["changed"] == [BOB]


def test_extension_left_out_is_off(proxy, alice):
    alice.queue(F.sync_response(otk_counts={"signed_curve25519": 50}))
    c = started(proxy, alice)
    assert "e2ee" in c.sync({"extensions": {"e2ee": {"enabled": True}}})["extensions"]
    alice.queue(F.sync_response(device_lists={"changed": [BOB]}))
    alice.wait_idle()
    resp = c.sync({}, timeout=300)
    assert "e2ee" not in resp["extensions"], "extensions are not sticky"


def test_account_data(proxy, alice):
    rid, _ = own_room(alice, "R")
    alice.queue(F.sync_response(account_data=[F.account_data("m.custom", {"a": 1})]))
    c = started(proxy, alice)
    body = {"lists": {"all": {"ranges": [[0, 5]], "timeline_limit": 1}},
            "extensions": {"account_data": {"enabled": True}}}
    ad = c.sync(body)["extensions"]["account_data"]
    assert {"type": "m.custom", "content": {"a": 1}} in ad["global"]
    alice.queue(F.sync_response(join={rid: F.joined_room(account_data=[F.tags({"u.x": {}})])}))
    alice.wait_idle()
    ad = c.sync(body, timeout=5000)["extensions"]["account_data"]
    assert ad["rooms"][rid][0]["type"] == "m.tag"


def test_typing_and_receipts_scoped_by_lists_and_rooms(proxy, alice):
    r1, e1 = own_room(alice, "One")
    r2, e2 = own_room(alice, "Two")  # newer: index 0
    alice.queue(F.sync_response(join={r1: F.joined_room(ephemeral=[F.typing(["@x:localhost"]),
                                                                    F.receipt(e1, "@x:localhost")]),
                                      r2: F.joined_room(ephemeral=[F.typing(["@y:localhost"]),
                                                                    F.receipt(e2, "@y:localhost")])}))
    c = started(proxy, alice)
    lists = {"top": {"ranges": [[0, 0]], "timeline_limit": 1}}
    resp = c.sync({"lists": lists, "extensions": {"typing": {"enabled": True}, "receipts": {"enabled": True}}})
    assert set(resp["extensions"]["typing"]["rooms"]) == {r2}
    assert set(resp["extensions"]["receipts"]["rooms"]) == {r2}
    c.reset()
    resp = c.sync({"conn_id": "b", "lists": lists, "room_subscriptions": {r1: {"timeline_limit": 1}},
                   "extensions": {"typing": {"enabled": True, "lists": [], "rooms": [r1]}}})
    assert set(resp["extensions"]["typing"]["rooms"]) == {r1}
    c.reset()
    resp = c.sync({"conn_id": "c", "lists": lists,
                   "extensions": {"typing": {"enabled": True, "lists": [], "rooms": []}}})
    assert not resp["extensions"].get("typing")
