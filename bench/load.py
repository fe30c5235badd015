#!/usr/bin/env python3
"""syncv3 load test: many parked long-polls plus a steady stream of v2 messages (see bench/README.md).

U users x C connections each (distinct conn_id), every connection parked on a sliding sync
long-poll (timeout=30 s, re-issued after every answer) over raw HTTP/1.1 on asyncio streams.
The fake homeserver (a child process) gets a steady stream of messages (default 20/s) spread
over the users' rooms. Measured:

  wake-up latency  from the moment the fake homeserver starts writing the v2 /sync answer that
                   carries a message to the moment a parked client that should see it has read
                   the answer containing it (one sample per message per connection of the user)
  RSS              VmRSS of syncv3 when idle with everything parked, and at the end (and VmHWM)
  errors           non-200 answers, transport errors, deliveries that never arrived
  CPU              syncv3, PostgreSQL, the fake homeserver and this client during the steady phase
                   (from /proc/PID/stat), and the client's event-loop lag, to tell client-side
                   saturation from server-side slowness

Standard library only. Never part of pass/fail.
"""

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import resource
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests" / "e2e"))
sys.path.insert(0, str(HERE))

import bench as B  # noqa: E402
import fakehs as F  # noqa: E402
import pgtmp  # noqa: E402

SS_PATH = B.SS_PATH


def user_id(i):
    return "@load%d:localhost" % i


def token_of(i):
    return "syt_load_%d" % i


def room_of(i, j):
    return "!load%dr%d:localhost" % (i, j)


# =========================================================================
# Fake homeserver child: serves syncv3, generates the message stream, stamps send times
# =========================================================================

class _LoadHS(F.FakeHomeserver):
    """Stamps when it starts writing each /sync answer, keyed by (token, next_batch)."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.sent = {}  # (token, next_batch) -> monotonic time of the first answer with it

    def _answer(self, h, req, status, body, content_type="application/json", extra_headers=None):
        try:  # see bench/README.md "Nagle in the fake homeserver"
            h.connection.setsockopt(B.socket.IPPROTO_TCP, B.socket.TCP_NODELAY, 1)
        except OSError:
            pass
        nb = req.served_next_batch if req.is_sync else None
        if nb is not None:
            self.sent.setdefault((req.token, nb), time.monotonic())
        super()._answer(h, req, status, body, content_type, extra_headers)


def _hs_child(conn, parent_pid):
    def watch():
        while True:
            if os.getppid() != parent_pid:
                os._exit(1)
            time.sleep(1)
    threading.stack_size(256 * 1024)
    threading.Thread(target=watch, daemon=True).start()
    hs = _LoadHS().start()
    msgs = []  # (event_id, token, room_id, next_batch, queued_at)
    gen = {"thread": None, "stop": threading.Event()}

    def generate(users, rooms_per_user, rate, duration, seed):
        rnd = random.Random(seed)
        t0 = time.monotonic()
        k = 0
        while not gen["stop"].is_set():
            due = t0 + k / rate
            if due - t0 >= duration:
                break
            d = due - time.monotonic()
            if d > 0 and gen["stop"].wait(d):
                break
            i, j = rnd.randrange(users), rnd.randrange(rooms_per_user)
            ev = F.message(user_id(i), "load %d" % k)
            nb = hs.queue(token_of(i), F.sync_response(
                join={room_of(i, j): F.joined_room(timeline=[ev])}))
            msgs.append((ev["event_id"], token_of(i), room_of(i, j), nb, time.monotonic()))
            k += 1

    try:
        while True:
            try:
                msg = conn.recv()
            except EOFError:
                return
            cmd, args = msg[0], msg[1:]
            try:
                if cmd == "url":
                    out = hs.url
                elif cmd == "setup":
                    users, rooms_per_user = args
                    base = int(time.time() * 1000) - 3600 * 1000
                    for i in range(users):
                        u = user_id(i)
                        hs.register(token_of(i), u, "LOADDEV%d" % i)
                        join = {}
                        for j in range(rooms_per_user):
                            ts = base + (i * rooms_per_user + j) * 10
                            join[room_of(i, j)] = F.joined_room(timeline=[
                                F.create(u, ts=ts), F.join(u, ts=ts + 1),
                                F.name(u, "Load room %d/%d" % (i, j), ts=ts + 2),
                                F.message(u, "hello", ts=ts + 3)])
                        hs.queue(token_of(i), F.sync_response(join=join))
                    out = True
                elif cmd == "start_load":
                    gen["stop"].clear()
                    gen["thread"] = threading.Thread(target=generate, args=args, daemon=True)
                    gen["thread"].start()
                    out = True
                elif cmd == "wait_load":
                    gen["thread"].join(args[0])
                    out = not gen["thread"].is_alive()
                elif cmd == "results":
                    out = [(evid, tok, rid, nb, q, hs.sent.get((tok, nb)))
                           for evid, tok, rid, nb, q in msgs]
                elif cmd == "pid":
                    out = os.getpid()
                elif cmd == "stop":
                    gen["stop"].set()
                    conn.send(("ok", None))
                    return
                else:
                    raise ValueError("unknown command %r" % cmd)
                conn.send(("ok", out))
            except Exception as e:  # noqa: BLE001 - reported to the parent
                conn.send(("error", "%s: %s" % (type(e).__name__, e)))
    finally:
        gen["stop"].set()
        hs.stop()


class HSProcess(B.HSProcess):
    def __init__(self):  # same pipe protocol as bench.py's, another child
        ctx = multiprocessing.get_context("fork")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_hs_child, args=(child, os.getpid()), daemon=True)
        self.proc.start()
        child.close()
        self.url = self.call("url")


# =========================================================================
# Client: one raw HTTP/1.1 keep-alive connection per sliding sync connection
# =========================================================================

class Stats:
    def __init__(self):
        self.recv = {}          # (user index, event_id) -> [receive times], one per connection
        self.status = {}        # HTTP status -> count
        self.transport_errors = 0
        self.responses = 0
        self.empty = 0          # 200 answers with no message (long-poll timeouts, other updates)
        self.parked = 0         # connections currently with a request outstanding
        self.load_phase = False


class Conn:
    def __init__(self, port, uidx, cidx, stats, timeout_ms):
        self.port, self.uidx, self.cidx, self.stats = port, uidx, cidx, stats
        self.token = token_of(uidx)
        self.timeout_ms = timeout_ms
        self.pos = None
        self.reader = self.writer = None
        body = {"conn_id": "load-%d" % cidx,
                "lists": {"a": {"ranges": [[0, 9]], "timeline_limit": 5,
                                "required_state": [["m.room.name", ""]]}}}
        self.body = json.dumps(body).encode()

    async def _connect(self):
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port, limit=1 << 22)

    def _close(self):
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def request(self, timeout_ms):
        """One POST; returns (status, parsed JSON or None, receive time)."""
        if self.writer is None:
            await self._connect()
        q = "timeout=%d" % timeout_ms
        if self.pos is not None:
            q = "pos=%s&%s" % (self.pos, q)
        head = ("POST %s?%s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAuthorization: Bearer %s\r\n"
                "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                % (SS_PATH, q, self.port, self.token, len(self.body))).encode()
        self.writer.write(head + self.body)
        await self.writer.drain()
        r = self.reader
        status_line = await r.readline()
        if not status_line:
            raise ConnectionError("connection closed")
        status = int(status_line.split()[1])
        length, chunked, close = None, False, False
        while True:
            line = await r.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            k, _, v = line.decode("latin-1").partition(":")
            k, v = k.strip().lower(), v.strip().lower()
            if k == "content-length":
                length = int(v)
            elif k == "transfer-encoding" and "chunked" in v:
                chunked = True
            elif k == "connection" and v == "close":
                close = True
        if chunked:
            parts = []
            while True:
                n = int((await r.readline()).split(b";")[0], 16)
                if n == 0:
                    while (await r.readline()) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                parts.append(await r.readexactly(n))
                await r.readexactly(2)
            data = b"".join(parts)
        elif length is not None:
            data = await r.readexactly(length)
        else:
            data = await r.read()
            close = True
        t = time.monotonic()
        if close:
            self._close()
        try:
            js = json.loads(data)
        except ValueError:
            js = None
        return status, js, t

    async def first(self):
        """The initial (non-long-poll) request; retried until 200."""
        for _ in range(50):
            try:
                status, js, _ = await asyncio.wait_for(self.request(0), 120)
            except (OSError, asyncio.TimeoutError, ConnectionError, asyncio.IncompleteReadError, ValueError):
                self.stats.transport_errors += 1
                self._close()
                await asyncio.sleep(0.5)
                continue
            if status == 200 and isinstance(js, dict) and "pos" in js:
                self.pos = js["pos"]
                return
            self.stats.status[status] = self.stats.status.get(status, 0) + 1
            await asyncio.sleep(0.5)
        raise RuntimeError("user %d conn %d: no initial answer" % (self.uidx, self.cidx))

    async def loop(self):
        st = self.stats
        while True:
            st.parked += 1
            try:
                status, js, t = await asyncio.wait_for(self.request(self.timeout_ms),
                                                       self.timeout_ms / 1000.0 + 30)
            except asyncio.CancelledError:
                raise
            except (OSError, asyncio.TimeoutError, ConnectionError, asyncio.IncompleteReadError, ValueError):
                st.parked -= 1
                st.transport_errors += 1
                self._close()
                await asyncio.sleep(0.5)
                continue
            st.parked -= 1
            st.responses += 1
            st.status[status] = st.status.get(status, 0) + 1
            if status != 200 or not isinstance(js, dict):
                if status == 400:
                    self.pos = None  # expired connection: start over
                await asyncio.sleep(0.5)
                continue
            self.pos = js.get("pos", self.pos)
            got = False
            for room in (js.get("rooms") or {}).values():
                for ev in room.get("timeline") or []:
                    evid = ev.get("event_id")
                    if evid:
                        st.recv.setdefault((self.uidx, evid), []).append(t)
                        got = True
            if not got:
                st.empty += 1

    def close(self):
        self._close()


async def loop_lag(samples, period=0.01):
    while True:
        t = time.monotonic()
        await asyncio.sleep(period)
        samples.append((time.monotonic() - t - period) * 1000)


def own_cpu_s():
    t = os.times()
    return t.user + t.system


def rss_mb(pid):
    vals = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                vals[k] = int(v.split()[0]) / 1024.0
    return vals.get("VmRSS"), vals.get("VmHWM")


# =========================================================================
# The run
# =========================================================================

async def run(args, pg, binary, work, log):
    res = {"users": args.users, "conns_per_user": args.conns, "connections": args.users * args.conns,
           "rate": args.rate, "duration_s": args.duration}
    admin = pg.conninfo()
    dbname = "load"
    pgtmp.drop_database(admin, dbname)
    db = pgtmp.create_database(admin, dbname)
    hs = proxy = None
    conns = []
    tasks = []
    try:
        hs = HSProcess()
        hs_pid = hs.call("pid")
        t = time.monotonic()
        hs.call("setup", args.users, args.rooms, timeout=300)
        log("load: fake homeserver has %d users x %d rooms (%.1f s)"
            % (args.users, args.rooms, time.monotonic() - t))
        proxy = B.Syncv3(binary, hs.url, db, work)
        res["pid"] = proxy.pid
        log("load: syncv3 pid %d on port %d" % (proxy.pid, proxy.port))
        stats = Stats()
        conns = [Conn(proxy.port, u, c, stats, args.timeout_ms)
                 for u in range(args.users) for c in range(args.conns)]

        # 1. initial syncs: first one connection per user (whoami + first v2 poll + ingest), then
        #    the others; bounded concurrency
        sem = asyncio.Semaphore(args.setup_concurrency)

        async def first(c):
            async with sem:
                await c.first()
        t = time.monotonic()
        await asyncio.gather(*(first(c) for c in conns if c.cidx == 0))
        res["setup_first_s"] = time.monotonic() - t
        log("load: %d users' first requests answered in %.1f s" % (args.users, res["setup_first_s"]))
        t = time.monotonic()
        await asyncio.gather(*(first(c) for c in conns if c.cidx != 0))
        log("load: other %d initial requests in %.1f s" % (len(conns) - args.users, time.monotonic() - t))

        # 2. park everything, measure idle RSS
        tasks = [asyncio.ensure_future(c.loop()) for c in conns]
        deadline = time.monotonic() + 60
        while stats.parked < len(conns) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await asyncio.sleep(args.settle)
        res["parked_idle"] = stats.parked
        res["rss_idle_mb"], _ = rss_mb(proxy.pid)
        res["cpu_idle_pct"] = None
        c0 = B.proc_cpu_s(proxy.pid)
        await asyncio.sleep(2)
        res["cpu_idle_pct"] = (B.proc_cpu_s(proxy.pid) - c0) / 2 * 100
        log("load: %d connections parked; syncv3 VmRSS %.1f MB, idle CPU %.1f %%"
            % (stats.parked, res["rss_idle_mb"], res["cpu_idle_pct"]))
        pre_status = dict(stats.status)
        pre_terr = stats.transport_errors

        # 3. steady load
        lag = []
        lag_task = asyncio.ensure_future(loop_lag(lag))
        cpu = {"syncv3": B.proc_cpu_s(proxy.pid), "pg": B.postgres_cpu_s(pg),
               "hs": B.proc_cpu_s(hs_pid), "client": own_cpu_s()}
        t0 = time.monotonic()
        hs.call("start_load", args.users, args.rooms, args.rate, args.duration, args.seed)
        log("load: %d messages/s for %.0f s" % (args.rate, args.duration))
        while time.monotonic() - t0 < args.duration:
            await asyncio.sleep(min(5, args.duration - (time.monotonic() - t0)))
            if time.monotonic() - t0 < args.duration - 0.5:
                log("  t=%3.0f s: %d deliveries so far, %d parked, syncv3 VmRSS %.1f MB"
                    % (time.monotonic() - t0, sum(len(v) for v in stats.recv.values()),
                       stats.parked, rss_mb(proxy.pid)[0]))
        elapsed = time.monotonic() - t0
        for k, v in (("syncv3", B.proc_cpu_s(proxy.pid)), ("pg", B.postgres_cpu_s(pg)),
                     ("hs", B.proc_cpu_s(hs_pid)), ("client", own_cpu_s())):
            res["cpu_%s_pct" % k] = (v - cpu[k]) / elapsed * 100
        lag_task.cancel()
        res["lag_p50"] = B.percentile(lag, 0.5) if lag else None
        res["lag_p99"] = B.percentile(lag, 0.99) if lag else None
        res["lag_max"] = max(lag) if lag else None
        # let the tail drain
        await asyncio.get_running_loop().run_in_executor(None, lambda: hs.call("wait_load", 30))
        await asyncio.sleep(args.drain)
        res["rss_end_mb"], res["hwm_mb"] = rss_mb(proxy.pid)
        res["parked_end"] = stats.parked

        # 4. match deliveries
        msgs = hs.call("results")
        lat = []
        missing = unsent = 0
        tok2u = {token_of(i): i for i in range(args.users)}
        for evid, tok, rid, nb, queued, sent in msgs:
            u = tok2u[tok]
            times = stats.recv.get((u, evid), [])
            if sent is None:
                unsent += 1
                continue
            for tr in times[:args.conns]:
                lat.append((tr - sent) * 1000)
            missing += max(0, args.conns - len(times))
        res["messages"] = len(msgs)
        res["unsent"] = unsent
        res["deliveries"] = len(lat)
        res["expected"] = (len(msgs) - unsent) * args.conns
        res["missing"] = missing
        if lat:
            res["p50"], res["p90"], res["p99"] = (B.percentile(lat, q) for q in (0.5, 0.9, 0.99))
            res["max"] = max(lat)
        non200 = {s: n - pre_status.get(s, 0) for s, n in stats.status.items() if s != 200}
        res["non200"] = sum(non200.values())
        res["non200_detail"] = {s: n for s, n in non200.items() if n}
        res["transport_errors"] = stats.transport_errors - pre_terr
        res["responses"] = stats.responses
        res["empty"] = stats.empty
        log("load: %d messages, %d/%d deliveries, p50 %.2f ms, p99 %.2f ms"
            % (len(msgs), len(lat), res["expected"], res.get("p50", -1), res.get("p99", -1)))
        return res
    except Exception:
        if proxy is not None:
            log("syncv3 stderr (tail):\n" + proxy.stderr_tail())
        raise
    finally:
        for tk in tasks:
            tk.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        for c in conns:
            c.close()
        if proxy is not None:
            proxy.stop()
        if hs is not None:
            hs.stop()
        try:
            pgtmp.drop_database(admin, dbname)
        except Exception:  # noqa: BLE001
            pass


def fmt(v, spec):
    return "—" if v is None else format(v, spec)


def table(r):
    rows = ["| metric | value |", "|---|---:|"]

    def row(k, v):
        rows.append("| %s | %s |" % (k, v))
    row("users × connections per user", "%d × %d = %d" % (r["users"], r["conns_per_user"], r["connections"]))
    row("steady load", "%g messages/s for %g s (%d messages)" % (r["rate"], r["duration_s"], r.get("messages", 0)))
    row("deliveries / expected", "%s / %s" % (fmt(r.get("deliveries"), ","), fmt(r.get("expected"), ",")))
    row("wake-up latency p50 ms", fmt(r.get("p50"), ".2f"))
    row("wake-up latency p90 ms", fmt(r.get("p90"), ".2f"))
    row("wake-up latency p99 ms", fmt(r.get("p99"), ".2f"))
    row("wake-up latency max ms", fmt(r.get("max"), ".2f"))
    row("errors: non-200 / transport / missing deliveries", "%s / %s / %s" % (
        fmt(r.get("non200"), "d"), fmt(r.get("transport_errors"), "d"), fmt(r.get("missing"), "d")))
    row("syncv3 VmRSS idle, all parked MB", fmt(r.get("rss_idle_mb"), ".1f"))
    row("syncv3 VmRSS at end MB (peak VmHWM)", "%s (%s)" % (fmt(r.get("rss_end_mb"), ".1f"),
                                                          fmt(r.get("hwm_mb"), ".1f")))
    row("syncv3 CPU idle / under load (% of a core)", "%s / %s" % (fmt(r.get("cpu_idle_pct"), ".1f"),
                                                                fmt(r.get("cpu_syncv3_pct"), ".1f")))
    row("PostgreSQL CPU under load %", fmt(r.get("cpu_pg_pct"), ".1f"))
    row("fake homeserver CPU under load %", fmt(r.get("cpu_hs_pct"), ".1f"))
    row("load client CPU under load %", fmt(r.get("cpu_client_pct"), ".1f"))
    row("client event-loop lag p50 / p99 / max ms", "%s / %s / %s" % (
        fmt(r.get("lag_p50"), ".2f"), fmt(r.get("lag_p99"), ".2f"), fmt(r.get("lag_max"), ".2f")))
    return "\n".join(rows)


def main(argv=None):
    ap = argparse.ArgumentParser(description="syncv3 load test: parked long-polls + steady v2 messages")
    ap.add_argument("--users", type=int, default=100)
    ap.add_argument("--conns", type=int, default=10, help="connections (conn_id) per user")
    ap.add_argument("--rooms", type=int, default=2, help="rooms per user")
    ap.add_argument("--rate", type=float, default=20.0, help="v2 messages per second")
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of steady load")
    ap.add_argument("--timeout-ms", type=int, default=30000, help="sliding sync long-poll timeout")
    ap.add_argument("--settle", type=float, default=3.0, help="idle seconds before the idle RSS")
    ap.add_argument("--drain", type=float, default=3.0, help="seconds to wait after the last message")
    ap.add_argument("--setup-concurrency", type=int, default=50)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--time-limit", type=float, default=float(os.environ.get("BENCH_TIME_LIMIT", 900)),
                    help="abort the whole run after this many seconds")
    ap.add_argument("--binary", default=str(REPO / "build" / "syncv3"))
    ap.add_argument("--json", metavar="FILE", help="also write the raw results as JSON")
    args = ap.parse_args(argv)

    binary = Path(args.binary)
    if not binary.exists():
        sys.exit("load: %s not found (run make)" % binary)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = args.users * args.conns * 2 + 1000
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(need, soft)), hard))

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    class Abort(BaseException):
        pass

    def on_signal(signum, frame):
        raise Abort("signal %d" % signum)

    def on_alarm(signum, frame):
        raise Abort("time limit of %.0f s reached" % args.time_limit)

    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, on_signal)
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(max(1, int(args.time_limit)))

    workroot = tempfile.mkdtemp(prefix="syncv3-load-")
    os.chmod(workroot, 0o755)
    pg = None
    res = None
    rc = 0
    try:
        log("load: starting PostgreSQL (fsync off)")
        os.makedirs(os.path.join(workroot, "pg"))
        pg = pgtmp.TempPostgres(os.path.join(workroot, "pg")).start()
        res = asyncio.run(run(args, pg, binary, workroot, log))
    except Abort as e:
        log("load: aborted (%s); cleaning up" % e)
        rc = 2
    except Exception as e:  # noqa: BLE001
        log("load: failed: %s" % e)
        rc = 1
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if pg is not None:
            pg.stop(remove=False)
        shutil.rmtree(workroot, ignore_errors=True)
    if res:
        print("syncv3 load test — %s, %d CPU(s), build/syncv3 at %s" % (
            time.strftime("%Y-%m-%d %H:%M"), os.cpu_count(), B._git_rev()))
        print()
        print(table(res))
        print()
        print("Wake-up latency: fake homeserver starts writing the v2 answer carrying a message → the "
              "parked client has read the sliding sync answer containing it (client-side, loopback; "
              "percentiles nearest-rank over all deliveries). CPU % is of one core over the steady phase.")
        if res.get("non200_detail"):
            print("non-200 statuses: %r" % res["non200_detail"])
        if res.get("missing") or res.get("unsent"):
            print("messages never served by the fake homeserver: %d; deliveries missing: %d"
                  % (res.get("unsent", 0), res.get("missing", 0)))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(res, f, indent=2, default=str)
        if res.get("non200") or res.get("missing") or res.get("transport_errors"):
            rc = rc or 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
