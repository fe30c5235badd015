"""The MSC4186 (simplified sliding sync) rows of bench/bench.py (see bench/README.md).

Measured per N, on the same account, database and fake homeserver as the MSC3575 rows:
  first req   Element X's first `room-list` request (range 0..19, its required_state list,
              timeline_limit 1, the extensions it turns on), no pos, timeout=0, as fresh
              connections one after another
  live        the `room-list` connection parked on a long poll (timeout=30000); one message for the
              bottom room; from the fake HS starting to write that /sync answer to the client
              having read the woken answer
  restart     stop syncv3 (SIGTERM), start it again on the same database, and time the first
              MSC4186 request: alternately a new connection and the `pos` from before the restart
              (reported as "resumed" if accepted, "M_UNKNOWN_POS → new" if refused, in which case
              the client starts over as rust-sdk does), plus process start → first served answer

A binary that answers 404 on the path (one from before MSC4186) gets the rows marked n/a.
"""

import time

SSS_PATH = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"
LIST = "all_rooms"
WINDOW = 20  # range 0..19

# What matrix-rust-sdk's RoomListService asks for in its `all_rooms` list.
EX_REQUIRED_STATE = [
    ["m.room.name", ""], ["m.room.encryption", ""], ["m.room.member", "$LAZY"], ["m.room.member", "$ME"],
    ["m.room.topic", ""], ["m.room.avatar", ""], ["m.room.canonical_alias", ""],
    ["m.room.power_levels", ""], ["org.matrix.msc3401.call.member", "*"], ["m.room.join_rules", ""],
    ["m.room.tombstone", ""], ["m.room.create", ""], ["m.room.history_visibility", ""],
    ["io.element.functional_members", ""], ["m.space.parent", "*"], ["m.space.child", "*"],
    ["org.matrix.msc3672.beacon_info", "*"],
]


def room_list_body():
    """Element X's `room-list` request: the selective range 0..19 it starts with."""
    return {"conn_id": "room-list",
            "lists": {LIST: {"ranges": [[0, WINDOW - 1]], "required_state": EX_REQUIRED_STATE,
                             "filters": {}, "timeline_limit": 1}},
            "extensions": {"account_data": {"enabled": True},
                           "receipts": {"enabled": True, "rooms": ["*"]},
                           "typing": {"enabled": True}}}


def check_room_list(B, js, n, want, what, initial=True):
    """200 body of a room-list request: a string pos, count N, the window's room_ids in recency
    order `want` (room ids newest first) and, for a fresh connection, each of those rooms in full
    (its name from required_state, one timeline event). B is bench.py's module."""
    if not isinstance(js, dict) or not isinstance(js.get("pos"), str):
        raise RuntimeError("%s: not a JSON object with a string pos" % what)
    B.check_list(js, n, want, what, LIST, WINDOW)
    want = want[:WINDOW]
    if not initial:
        return
    rooms = js.get("rooms") or {}
    if sorted(rooms) != sorted(want):
        raise RuntimeError("%s: %d rooms in the answer, expected the %d of the window"
                           % (what, len(rooms), len(want)))
    for rid, r in rooms.items():
        names = [e.get("content", {}).get("name") for e in r.get("required_state") or []
                 if e.get("type") == "m.room.name"]
        if not r.get("initial") or len(names) != 1 or len(r.get("timeline") or []) != 1:
            raise RuntimeError("%s: room %s not sent in full (initial, m.room.name, 1 event)" % (what, rid))


def error_code(js):
    return js.get("errcode") if isinstance(js, dict) else None


def run(ctx):
    """The MSC4186 phases; ctx carries n, args, hs, pg, token, user, the recency order (room ids
    newest first, kept up to date), procs (the current syncv3 is procs[-1]; a restart appends),
    the B module (bench.py's helpers) and log. Fills and returns a dict of results."""
    B, n, args, log = ctx.B, ctx.n, ctx.args, ctx.log
    out = {}
    proxy = ctx.procs[-1]
    c = B.Client(proxy.port, ctx.token, path=SSS_PATH)
    body = room_list_body()

    # 0. is the path served at all?
    status, js, data, _ = c.post(body, timeout_ms=0)
    if status == 404:
        c.close()
        log("  MSC4186: HTTP 404 on %s, rows n/a" % SSS_PATH)
        return {"msc4186": "n/a (HTTP 404)"}
    if status != 200:
        raise RuntimeError("MSC4186 warm-up: HTTP %d %s" % (status, data[:300]))
    check_room_list(B, js, n, ctx.order, "MSC4186 warm-up")
    out["msc4186"] = "served"
    out["m_response_bytes"] = len(data)

    # 1. Element X's first room-list request, as fresh connections
    perf = B.Perf(args.perf, proxy.pid, "n%d-msc4186-firstreq" % n)
    cpu0, pgcpu0 = B.proc_cpu_s(proxy.pid), B.postgres_cpu_s(ctx.pg)
    lat = []
    for i in range(args.requests):
        status, js, data, dt = c.post(body, timeout_ms=0)
        if status != 200:
            raise RuntimeError("MSC4186 request %d: HTTP %d %s" % (i, status, data[:300]))
        lat.append(dt * 1000)
        check_room_list(B, js, n, ctx.order, "MSC4186 request %d" % i)
    out["m_first_cpu_ms"] = (B.proc_cpu_s(proxy.pid) - cpu0) * 1000 / args.requests
    out["m_first_pg_cpu_ms"] = (B.postgres_cpu_s(ctx.pg) - pgcpu0) * 1000 / args.requests
    perf.stop()
    out["m_first_p50"], out["m_first_p99"] = B.percentile(lat, 0.50), B.percentile(lat, 0.99)
    out["m_first_max"] = max(lat)
    log("  MSC4186 room-list first request: p50 %.2f ms, p99 %.2f ms, max %.2f ms (%d requests; CPU per "
        "request: syncv3 %.2f ms, PostgreSQL %.2f ms)" % (out["m_first_p50"], out["m_first_p99"], out["m_first_max"],
                                                         len(lat), out["m_first_cpu_ms"], out["m_first_pg_cpu_ms"]))

    # 2. live: the room-list connection parked on a long poll, a message for the bottom room
    status, js, data, _ = c.post(body, timeout_ms=0)
    if status != 200:
        raise RuntimeError("MSC4186 live connection: HTTP %d %s" % (status, data[:300]))
    pos = js["pos"]
    live = []
    for k in range(args.live):
        rid = ctx.order[-1]
        c.send(body, pos=pos, timeout_ms=30000)
        time.sleep(args.park_ms / 1000.0)
        nb, evid = ctx.hs.call("queue_message", ctx.token, ctx.user, rid, "live4186 %d" % k)
        ctx.bump(rid)
        status, js, data, t_recv = c.receive()
        if status != 200:
            raise RuntimeError("MSC4186 live sample %d: HTTP %d %s" % (k, status, data[:300]))
        pos = js["pos"]
        room = (js.get("rooms") or {}).get(rid) or {}
        if not any(e.get("event_id") == evid for e in room.get("timeline") or []):
            raise RuntimeError("MSC4186 live sample %d: the woken answer lacks the message (rooms %r)"
                               % (k, list((js.get("rooms") or {}))[:3]))
        check_room_list(B, js, n, ctx.order, "MSC4186 live sample %d" % k, initial=False)
        served = [r for r in ctx.hs.call("sync_log", ctx.token) if r["nb"] == nb]
        if not served or served[0]["send_start"] is None:
            raise RuntimeError("MSC4186 live sample %d: the fake HS has no record of serving %s" % (k, nb))
        live.append((t_recv - served[0]["send_start"]) * 1000)
        ctx.hs.call("wait_idle", ctx.token, 30)
    c.close()
    out["m_live_p50"], out["m_live_p99"] = B.percentile(live, 0.50), B.percentile(live, 0.99)
    out["m_live_max"] = max(live)
    out["m_rss_mb"], out["m_hwm_mb"] = proxy.memory_mb()
    log("  MSC4186 live: p50 %.2f ms, p99 %.2f ms, max %.2f ms (%d samples)"
        % (out["m_live_p50"], out["m_live_p99"], out["m_live_max"], len(live)))

    # 3. restarts, alternately resuming with the old pos and opening a new connection
    samples = {"pos": [], "new": []}
    before, listen, served_after, outcomes = [], [], [], []
    for k in range(args.restarts):
        kind = "pos" if k % 2 == 0 else "new"
        c = B.Client(ctx.procs[-1].port, ctx.token, path=SSS_PATH)
        status, js, data, dt = c.post(body, timeout_ms=0)
        if status != 200:
            raise RuntimeError("MSC4186 before restart %d: HTTP %d %s" % (k, status, data[:300]))
        check_room_list(B, js, n, ctx.order, "MSC4186 before restart %d" % k)
        before.append(dt * 1000)
        old_pos = js["pos"]
        c.close()
        ctx.hs.call("wait_idle", ctx.token, 30)
        ctx.procs[-1].stop()
        t0 = time.monotonic()
        proxy = B.Syncv3(ctx.binary, ctx.hs.url, ctx.db, ctx.work, args.env, poll_s=0.002)
        ctx.procs.append(proxy)
        listen.append((time.monotonic() - t0) * 1000)
        c = B.Client(proxy.port, ctx.token, path=SSS_PATH)
        if kind == "pos":
            status, js, data, dt = c.post(body, pos=old_pos, timeout_ms=0)
            if status == 200:
                outcomes.append("resumed")
                check_room_list(B, js, n, ctx.order, "MSC4186 resumed after restart %d" % k, initial=False)
                total = dt
            elif status == 400 and error_code(js) == "M_UNKNOWN_POS":
                outcomes.append("M_UNKNOWN_POS → new")
                total = dt
                status, js, data, dt = c.post(body, timeout_ms=0)  # rust-sdk starts over
                total += dt
                if status != 200:
                    raise RuntimeError("MSC4186 new connection after M_UNKNOWN_POS (restart %d): HTTP %d %s"
                                       % (k, status, data[:300]))
                check_room_list(B, js, n, ctx.order, "MSC4186 new connection after restart %d" % k)
            else:
                raise RuntimeError("MSC4186 pos after restart %d: HTTP %d %s" % (k, status, data[:300]))
        else:
            status, js, data, dt = c.post(body, timeout_ms=0)
            if status != 200:
                raise RuntimeError("MSC4186 first request after restart %d: HTTP %d %s"
                                   % (k, status, data[:300]))
            check_room_list(B, js, n, ctx.order, "MSC4186 first request after restart %d" % k)
            total = dt
        served_after.append((time.monotonic() - t0) * 1000)
        samples[kind].append(total * 1000)
        c.close()
        log("  restart %d (%s): listening after %.0f ms, first MSC4186 request %.2f ms%s, served %.0f ms "
            "after the process start" % (k, "old pos" if kind == "pos" else "new connection", listen[-1],
                                         total * 1000, " (" + outcomes[-1] + ")" if kind == "pos" else "",
                                         served_after[-1]))
    if args.restarts:
        out["m_restart_new_ms"] = samples["new"]
        out["m_restart_pos_ms"] = samples["pos"]
        out["m_restart_pos_outcome"] = "/".join(sorted(set(outcomes))) if outcomes else None
        out["m_before_restart_ms"] = before
        out["m_listen_ms"] = listen
        out["m_start_to_served_ms"] = served_after
    return out


def median(values):
    return None if not values else sorted(values)[(len(values) - 1) // 2]
