"""Log lines on stderr: an ISO 8601 UTC timestamp on every line, and with SYNCV3_LOG_FORMAT=json
one JSON object per line with the request log's fields."""

import json
import re

import fakehs as F
from helpers import SS_PATH, http_request

ISO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
TEXT_LINE = re.compile(r"^" + ISO + r" (TRC|DBG|INF|WRN|ERR|FTL) \[[a-z0-9_]+\] ")


def traffic(proxy, user):
    user.queue(F.sync_response(join={F.new_room_id(): F.joined_room(
        F.room_state(user.user_id, "Room"), [F.message(user.user_id, "hello")])}))
    c = proxy.client(user.token)
    c.sync({"lists": {"a": {"ranges": [[0, 9]]}}})
    c.sync({}, timeout=100)
    # An error answer, and a path with a quote, a backslash, a control byte and invalid UTF-8.
    assert c.request(raw=b"{not json").status == 400
    assert http_request(proxy.url + "/_matrix/%22q%5Cb%01%C3%A9%FF").status == 404


def stderr_lines(proxy, strict=False):
    """Every stderr line of every run; strict: the bytes must be valid UTF-8."""
    raw = b"".join(p.read_bytes() for p in sorted(proxy.workdir.glob("syncv3-run*.stderr")))
    text = raw.decode("utf-8", errors="strict" if strict else "replace")
    return [l for l in text.split("\n") if l]


def test_text_lines_carry_the_date_and_time(proxy, alice):
    traffic(proxy, alice)
    proxy.restart()
    proxy.stop()
    lines = stderr_lines(proxy)
    assert len(lines) > 10
    for l in lines:
        assert TEXT_LINE.match(l), "line without an ISO 8601 UTC timestamp: %r" % l
    reqs = [l for l in lines if SS_PATH in l and "status=200" in l]
    assert reqs and all("user=" + alice.user_id in l and "device=" in l for l in reqs), reqs


def test_json_lines_parse_and_carry_request_fields(make_proxy, alice):
    proxy = make_proxy(extra_env={"SYNCV3_LOG_FORMAT": "json"})
    traffic(proxy, alice)
    proxy.restart()  # start-up and shutdown lines of a second run (migrations already applied)
    proxy.stop()
    lines = stderr_lines(proxy, strict=True)
    assert len(lines) > 10
    objs = []
    for l in lines:
        try:
            o = json.loads(l)
        except ValueError:
            raise AssertionError("not a JSON line: %r" % l)
        assert isinstance(o, dict), l
        assert re.fullmatch(ISO, o.get("time", "")), l
        assert o.get("level") in ("trace", "debug", "info", "warn", "error", "fatal"), l
        assert isinstance(o.get("module"), str) and o["module"], l
        assert isinstance(o.get("message"), str), l
        objs.append(o)
    ok = [o for o in objs if o["message"] == "POST " + SS_PATH and o.get("status") == 200]
    assert len(ok) >= 2, [o for o in objs if o["module"] == "http"]
    for o in ok:
        assert o["user"] == alice.user_id and o["device"] == alice.device_id, o
        assert isinstance(o["duration"], (int, float)) and isinstance(o["size"], int), o
    bad = [o for o in objs if o["message"] == "POST " + SS_PATH and o.get("status") == 400]
    assert bad, "the 400 answer was not logged"
    odd = [o for o in objs if o.get("status") == 404 and o["message"].startswith("GET /_matrix/")]
    assert odd and '"q\\b\x01é\ufffd' in odd[0]["message"], odd
