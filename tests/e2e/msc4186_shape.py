"""The MSC4186 response types as matrix-rust-sdk deserialises them (ruma's sync v5
`Response`, then the events as rust-sdk's processors read them): mandatory fields and value
types. check_response(resp) and check_error(status, body) raise AssertionError naming the first
offending path."""

import re

UINT_MAX = 2 ** 53 - 1
ROOM_ID = re.compile(r"^![^:]+:.+$")
USER_ID = re.compile(r"^@[^:]+:.+$")
MEMBERSHIPS = ("join", "invite", "leave", "ban", "knock")


def _fail(path, what, value):
    raise AssertionError("%s: %s, got %r" % (path, what, value))


def _uint(path, v):
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= UINT_MAX:
        _fail(path, "expected an unsigned integer (js_int::UInt)", v)


def _of(kind, what):
    """A checker that v is an instance of kind (bool is no int, and no int is a bool)."""
    def check(path, v):
        if not isinstance(v, kind):
            _fail(path, "expected " + what, v)
    return check


_str = _of(str, "a string")
_bool = _of(bool, "a boolean")
_obj = _of(dict, "an object")
_arr = _of(list, "an array")


def _opt(d, k, fn, path):
    """Option<T>: absent or null is fine, else fn must accept the value."""
    if d.get(k) is not None:
        fn("%s.%s" % (path, k), d[k])


def _events(path, v):
    """Vec<Raw<Any*Event>>: Raw only needs a JSON object, but the event enums need type."""
    _arr(path, v)
    for i, ev in enumerate(v):
        _obj("%s[%d]" % (path, i), ev)
        _str("%s[%d].type" % (path, i), ev.get("type"))


def _user_id(path, v):
    _str(path, v)
    if not USER_ID.match(v):
        _fail(path, "expected a user ID", v)


def _sync_events(path, v):
    """Vec<Raw<AnySync*Event>>: what rust-sdk deserialises each one as (a sync timeline or state
    event needs event_id, sender, origin_server_ts and content; one that fails is dropped)."""
    _events(path, v)
    for i, ev in enumerate(v):
        p = "%s[%d]" % (path, i)
        _str(p + ".event_id", ev.get("event_id"))
        _user_id(p + ".sender", ev.get("sender"))
        _uint(p + ".origin_server_ts", ev.get("origin_server_ts"))
        _obj(p + ".content", ev.get("content"))
        if "room_id" in ev:
            _fail(p, "sync events come without room_id", ev["room_id"])


def _state_events(path, v):
    _sync_events(path, v)
    for i, ev in enumerate(v):
        _str("%s[%d].state_key" % (path, i), ev.get("state_key"))


def _stripped_events(path, v):
    """Vec<Raw<AnyStrippedStateEvent>>: type and state_key; sender and content as the homeserver
    gave them (a stripped event without them is the homeserver's, and rust-sdk skips it)."""
    _events(path, v)
    for i, ev in enumerate(v):
        p = "%s[%d]" % (path, i)
        _str(p + ".state_key", ev.get("state_key"))
        if "sender" in ev:
            _user_id(p + ".sender", ev["sender"])
        if "content" in ev:
            _obj(p + ".content", ev["content"])


def _hero(path, h):
    _obj(path, h)
    _user_id(path + ".user_id", h.get("user_id"))
    _opt(h, "displayname", _str, path)
    _opt(h, "avatar_url", _str, path)


def check_room(path, room):
    _obj(path, room)
    _opt(room, "name", _str, path)
    # avatar is JsOption<OwnedMxcUri>: absent, null, or a string.
    _opt(room, "avatar", _str, path)
    for k in ("initial", "is_dm", "limited", "unstable_expanded_timeline"):
        _opt(room, k, _bool, path)
    for k in ("notification_count", "highlight_count", "joined_count", "invited_count", "num_live",
              "bump_stamp"):
        _opt(room, k, _uint, path)
    _opt(room, "prev_batch", _str, path)
    if "timeline" in room:
        _sync_events(path + ".timeline", room["timeline"])
    if "required_state" in room:
        _state_events(path + ".required_state", room["required_state"])
    if room.get("invite_state") is not None:
        _stripped_events(path + ".invite_state", room["invite_state"])
    # Final-text fields: ruma's Room has no deny_unknown_fields, so the deployed dialect's
    # clients skip them; they are checked as the final text types them.
    if room.get("stripped_state") is not None:
        _stripped_events(path + ".stripped_state", room["stripped_state"])
    _opt(room, "expanded_timeline", _bool, path)
    if "membership" in room and room["membership"] not in MEMBERSHIPS:
        _fail(path + ".membership", "expected one of " + "/".join(MEMBERSHIPS), room["membership"])
    if "lists" in room:
        _arr(path + ".lists", room["lists"])
        for i, name in enumerate(room["lists"]):
            _str("%s.lists[%d]" % (path, i), name)
    if room.get("heroes") is not None:
        _arr(path + ".heroes", room["heroes"])
        for i, h in enumerate(room["heroes"]):
            _hero("%s.heroes[%d]" % (path, i), h)


def check_extensions(path, ext):
    _obj(path, ext)
    td = ext.get("to_device")
    if td is not None:
        _obj(path + ".to_device", td)
        _str(path + ".to_device.next_batch", td.get("next_batch"))
        if "events" in td:
            _events(path + ".to_device.events", td["events"])
            for i, ev in enumerate(td["events"]):
                _user_id("%s.to_device.events[%d].sender" % (path, i), ev.get("sender"))
                _obj("%s.to_device.events[%d].content" % (path, i), ev.get("content"))
    e2ee = ext.get("e2ee")
    if e2ee is not None:
        _obj(path + ".e2ee", e2ee)
        dl = e2ee.get("device_lists")
        if dl is not None:
            _obj(path + ".e2ee.device_lists", dl)
            for k in ("changed", "left"):
                if k in dl:
                    _arr("%s.e2ee.device_lists.%s" % (path, k), dl[k])
                    for u in dl[k]:  # Vec<OwnedUserId>: one bad entry fails the response
                        _user_id("%s.e2ee.device_lists.%s[]" % (path, k), u)
        otk = e2ee.get("device_one_time_keys_count")
        if otk is not None:
            _obj(path + ".e2ee.device_one_time_keys_count", otk)
            for alg, n in otk.items():
                _uint("%s.e2ee.device_one_time_keys_count.%s" % (path, alg), n)
        fb = e2ee.get("device_unused_fallback_key_types")
        if fb is not None:
            _arr(path + ".e2ee.device_unused_fallback_key_types", fb)
            for alg in fb:
                _str(path + ".e2ee.device_unused_fallback_key_types[]", alg)
    ad = ext.get("account_data")
    if ad is not None:
        _obj(path + ".account_data", ad)
        if "global" in ad:
            _events(path + ".account_data.global", ad["global"])
        for rid, evs in (ad.get("rooms") or {}).items():
            _events("%s.account_data.rooms.%s" % (path, rid), evs)
    for k in ("receipts", "typing"):
        e = ext.get(k)
        if e is not None:
            _obj("%s.%s" % (path, k), e)
            for rid, edu in (e.get("rooms") or {}).items():
                _obj("%s.%s.rooms.%s" % (path, k, rid), edu)
                want = {"receipts": "m.receipt", "typing": "m.typing"}[k]
                if edu.get("type") != want:
                    _fail("%s.%s.rooms.%s.type" % (path, k, rid), "expected " + want, edu.get("type"))
                _obj("%s.%s.rooms.%s.content" % (path, k, rid), edu.get("content"))


def check_error(status, body, errcode=None):
    """A Matrix error as ruma reads it: errcode and error strings (M_UNKNOWN_POS is
    ErrorKind::UnknownPos, which makes rust-sdk start the connection over)."""
    if not 400 <= status <= 599:
        _fail("status", "expected an error status", status)
    _obj("$", body)
    _str("$.errcode", body.get("errcode"))
    _str("$.error", body.get("error"))
    if errcode is not None and body["errcode"] != errcode:
        _fail("$.errcode", "expected " + errcode, body["errcode"])
    _opt(body, "soft_logout", _bool, "$")


def check_response(resp):
    _obj("$", resp)
    _str("$.pos", resp.get("pos"))
    _opt(resp, "txn_id", _str, "$")
    lists = resp.get("lists")
    if lists is not None:
        _obj("$.lists", lists)
        for name, l in lists.items():
            _obj("$.lists.%s" % name, l)
            _uint("$.lists.%s.count" % name, l.get("count"))
    rooms = resp.get("rooms")
    if rooms is not None:
        _obj("$.rooms", rooms)
        for rid, room in rooms.items():
            if not ROOM_ID.match(rid):
                _fail("$.rooms", "expected room IDs as keys", rid)
            check_room("$.rooms.%s" % rid, room)
    if resp.get("extensions") is not None:
        check_extensions("$.extensions", resp["extensions"])
