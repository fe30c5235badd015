#!/usr/bin/env python3
"""syncv3 benchmark: BenchmarkNumRooms of the Go proxy, extended (see bench/README.md).

For each room count N: a fresh database, a fresh fake homeserver (in a child process, so its
Python work never competes with the measuring client for the GIL) and a fresh syncv3 process.
One user (alice) with N rooms of 8 events each, all delivered in ONE v2 /sync response.

Measured per N:
  ingest      fake-HS side: from the moment the big /sync response starts being written until
              syncv3's next /sync request arrives (syncv3 polls again only once the previous
              response is stored), and the client-side time of the first sliding sync request
  first req   200 sequential fresh connections (no pos) on one keep-alive HTTP connection,
              client-side latency over loopback (after one warm-up request)
  live        a connection parked on a long poll; the fake HS delivers one message to the
              bottom room; from the moment the fake HS starts writing that /sync response to
              the moment the client has read the woken long-poll's whole answer
  RSS         VmRSS (and VmHWM, the peak) of syncv3 from /proc/<pid>/status at the end

Standard library only. Never part of pass/fail.
"""

import argparse
import ctypes
import http.client
import json
import math
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))

import fakehs as F  # noqa: E402
import pgtmp  # noqa: E402

sys.path.insert(0, str(REPO / "bench"))
import msc4186  # noqa: E402

SS_PATH = "/_matrix/client/unstable/org.matrix.msc3575/sync"
SECRET = "bench-secret-0123456789abcdef0123456789abcdef0123"
EVENTS_PER_ROOM = 8
BIG_ROOMS = 5  # with --members: how many of the newest rooms (all in the window) get the members


# =========================================================================
# The fake homeserver, in a child process driven over a pipe
# =========================================================================

class _TimedHS(F.FakeHomeserver):
    """FakeHomeserver that stamps the moment it starts writing each answer."""

    nodelay = True

    def _answer(self, h, req, status, body, content_type="application/json", extra_headers=None):
        if self.nodelay:
            # BaseHTTPRequestHandler writes the headers and the body in two send()s; with Nagle
            # on, a small body then waits for the proxy's delayed ACK (~40 ms on Linux).
            try:
                h.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        req.send_start = time.monotonic()
        super()._answer(h, req, status, body, content_type, extra_headers)


def room_id(i):
    return "!bench%d:localhost" % i


def fixture_events(n, members):
    return n * EVENTS_PER_ROOM + min(n, BIG_ROOMS) * members


def build_fixture(user, n, base_ts, members=0):
    """N rooms of 8 timeline events; room i is i minutes newer than room 0. With members, the
    BIG_ROOMS newest rooms also have that many other joined members (in their state block)."""
    join = {}
    for i in range(n):
        ts = base_ts + i * 60000
        evs = [F.create(user, ts=ts), F.join(user, ts=ts + 1), F.power_levels(user, ts=ts + 2),
               F.join_rules(user, "public", ts=ts + 3), F.name(user, "My Room %d" % i, ts=ts + 4),
               F.message(user, "A", ts=ts + 5), F.message(user, "B", ts=ts + 6),
               F.message(user, "C", ts=ts + 7)]
        state = []
        if members and i >= n - BIG_ROOMS:
            state = [F.join("@member%d:localhost" % m, ts=ts) for m in range(members)]
        join[room_id(i)] = F.joined_room(state=state, timeline=evs)
    return F.sync_response(join=join)


def _hs_child(conn, parent_pid):
    # Exit if the parent disappears (e.g. SIGKILL), so nothing is left behind.
    def watch():
        while True:
            if os.getppid() != parent_pid:
                os._exit(1)
            time.sleep(1)
    threading.Thread(target=watch, daemon=True).start()
    hs = _TimedHS().start()
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
                elif cmd == "register":
                    out = hs.register(*args)
                elif cmd == "queue_fixture":
                    token, user, n, base_ts, members = args
                    body = build_fixture(user, n, base_ts, members)
                    raw = json.dumps(body)
                    nb = hs.queue(token, body)
                    out = (nb, len(raw))
                elif cmd == "queue_message":
                    token, user, rid, text = args
                    ev = F.message(user, text)
                    nb = hs.queue(token, F.sync_response(join={rid: F.joined_room(timeline=[ev])}))
                    out = (nb, ev["event_id"])
                elif cmd == "sync_log":
                    out = [{"time": r.time, "send_start": getattr(r, "send_start", None),
                            "answered_at": r.answered_at, "nb": r.served_next_batch,
                            "since": r.since, "timeout": r.timeout, "status": r.status}
                           for r in hs.sync_requests(args[0])]
                elif cmd == "wait_idle":
                    hs.wait_until_idle(args[0], args[1])
                    out = True
                elif cmd == "stop":
                    conn.send(("ok", None))
                    return
                else:
                    raise ValueError("unknown command %r" % cmd)
                conn.send(("ok", out))
            except Exception as e:  # noqa: BLE001 - reported to the parent
                conn.send(("error", "%s: %s" % (type(e).__name__, e)))
    finally:
        hs.stop()


class HSProcess:
    def __init__(self):
        ctx = multiprocessing.get_context("fork")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_hs_child, args=(child, os.getpid()), daemon=True)
        self.proc.start()
        child.close()
        self.url = self.call("url")

    def call(self, *msg, timeout=120.0):
        self.conn.send(msg)
        if not self.conn.poll(timeout):
            raise RuntimeError("fake homeserver did not answer %r within %.0fs" % (msg[0], timeout))
        status, out = self.conn.recv()
        if status != "ok":
            raise RuntimeError("fake homeserver: %s" % out)
        return out

    def stop(self):
        if self.proc is None:
            return
        try:
            if self.proc.is_alive():
                self.call("stop", timeout=10)
        except Exception:  # noqa: BLE001
            pass
        self.proc.join(5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)
        self.proc = None


# =========================================================================
# syncv3 process and client
# =========================================================================

def _pdeathsig():
    """preexec_fn: the child gets SIGTERM when this process dies (Linux prctl)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001
        pass


class Syncv3:
    def __init__(self, binary, hs_url, db, workdir, extra_env=(), poll_s=0.05):
        self.port = pgtmp.free_port()
        self.stderr_path = Path(workdir) / "syncv3.stderr"
        env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCV3_")}
        env.update({"SYNCV3_SERVER": hs_url, "SYNCV3_DB": db, "SYNCV3_SECRET": SECRET,
                    "SYNCV3_BINDADDR": "127.0.0.1:%d" % self.port, "SYNCV3_LOG_LEVEL": "warn"})
        env.update(dict(kv.split("=", 1) for kv in extra_env))
        with open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen([str(binary)], env=env, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=err, cwd=str(workdir),
                                         preexec_fn=_pdeathsig)
        deadline = time.monotonic() + 30
        while not port_open(self.port):
            if self.proc.poll() is not None:
                raise RuntimeError("syncv3 exited during start-up:\n" + self.stderr_tail())
            if time.monotonic() > deadline:
                raise RuntimeError("syncv3 did not listen within 30 s:\n" + self.stderr_tail())
            time.sleep(poll_s)

    @property
    def pid(self):
        return self.proc.pid

    def stderr_tail(self, n=30):
        try:
            return "\n".join(self.stderr_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def memory_mb(self):
        vals = {}
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "VmHWM"):
                    vals[k] = int(v.split()[0]) / 1024.0
        return vals.get("VmRSS"), vals.get("VmHWM")

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pid):
    """utime + stime of a process in seconds (0 if it is gone)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return 0.0


def postgres_cpu_s(pg):
    """CPU seconds of the cluster: the postmaster and its children (backends, writers)."""
    try:
        with open(os.path.join(pg.data, "postmaster.pid")) as f:
            master = int(f.readline())
    except (OSError, ValueError):
        return 0.0
    total = proc_cpu_s(master)
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == master:
            total += proc_cpu_s(int(d))
    return total


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class Client:
    """One keep-alive HTTP/1.1 connection to syncv3 (reconnects if the server closes it)."""

    def __init__(self, port, token, path=SS_PATH):
        self.port = port
        self.token = token
        self.path = path
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=90)
        self.sockets = set()

    def _url(self, pos, timeout_ms):
        q = ["timeout=%d" % timeout_ms]
        if pos is not None:
            q.insert(0, "pos=%s" % pos)
        return self.path + "?" + "&".join(q)

    def send(self, body, pos=None, timeout_ms=20):
        data = json.dumps(body).encode()
        self.conn.request("POST", self._url(pos, timeout_ms), body=data,
                          headers={"Authorization": "Bearer " + self.token,
                                   "Content-Type": "application/json"})
        self.sockets.add(id(self.conn.sock))

    def receive(self):
        r = self.conn.getresponse()
        data = r.read()
        t = time.monotonic()
        try:
            js = json.loads(data)
        except ValueError:
            js = None
        return r.status, js, data, t

    def post(self, body, pos=None, timeout_ms=20):
        t0 = time.monotonic()
        self.send(body, pos, timeout_ms)
        status, js, data, t1 = self.receive()
        return status, js, data, t1 - t0

    def get(self, path):
        t0 = time.monotonic()
        self.conn.request("GET", path)
        r = self.conn.getresponse()
        r.read()
        return r.status, time.monotonic() - t0

    def close(self):
        self.conn.close()


def percentile(values, q):
    """Nearest-rank percentile."""
    v = sorted(values)
    return v[max(0, math.ceil(q * len(v)) - 1)]


def bench_body(user, conn_id=None):
    body = {"lists": {"a": {"ranges": [[0, 20]], "filters": {"is_encrypted": False},
                            "timeline_limit": 3,
                            "required_state": [["m.room.create", ""], ["m.room.member", user]]}}}
    if conn_id is not None:
        body["conn_id"] = conn_id
    return body


def check_list(js, n, order, what, name="a", window=21):
    """List `name` of an answer: count N and the SYNC ops' room_ids the `window` newest rooms of
    `order` (room ids, newest first)."""
    if not isinstance(js, dict):
        raise RuntimeError("%s: not a JSON object" % what)
    a = (js.get("lists") or {}).get(name) or {}
    if a.get("count") != n:
        raise RuntimeError("%s: list count %r, expected %d" % (what, a.get("count"), n))
    ids = []
    for op in a.get("ops") or []:
        if op.get("op") == "SYNC":
            ids += op.get("room_ids") or []
    want = order[:window]
    if ids != want:
        raise RuntimeError("%s: SYNC room_ids %r... not the expected recency order %r..."
                           % (what, ids[:3], want[:3]))


class Perf:
    """Optional `perf record -g -p PID` around a phase."""

    def __init__(self, outdir, pid, name):
        self.proc = None
        if not outdir:
            return
        path = Path(outdir) / ("perf-%s.data" % name)
        self.proc = subprocess.Popen(["perf", "record", "--call-graph", "dwarf,16384", "-F", "999", "-p", str(pid), "-o",
                                      str(path)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        time.sleep(0.5)

    def stop(self):
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# =========================================================================
# One room count
# =========================================================================

def run_one(n, args, pg, binary, workroot, log):
    res = {"rooms": n, "events": fixture_events(n, args.members)}
    work = Path(workroot) / ("n%d" % n)
    work.mkdir()
    dbname = "bench_n%d" % n
    admin = pg.conninfo()
    pgtmp.drop_database(admin, dbname)
    db = pgtmp.create_database(admin, dbname)
    hs = proxy = None
    procs = []  # every syncv3 process of this N (the MSC4186 restarts add some)
    order = [room_id(i) for i in range(n - 1, -1, -1)]  # recency order, newest first

    def bump(rid):
        order.remove(rid)
        order.insert(0, rid)

    try:
        hs = HSProcess()
        user, token, device = "@alice:localhost", "syt_bench_alice_%d" % n, "BENCHDEV%d" % n
        hs.call("register", token, user, device)
        base_ts = int(time.time() * 1000) - (n + 5) * 60000
        nb, size = hs.call("queue_fixture", token, user, n, base_ts, args.members)
        res["v2_mb"] = size / 1e6
        proxy = Syncv3(binary, hs.url, db, work, args.env)
        procs.append(proxy)
        res["pid"] = proxy.pid
        log("N=%d: v2 response %.1f MB, syncv3 pid %d" % (n, size / 1e6, proxy.pid))

        # 1. ingest
        perf = Perf(args.perf, proxy.pid, "n%d-ingest" % n)
        c = Client(proxy.port, token)
        body = bench_body(user)
        cpu0, pgcpu0 = proc_cpu_s(proxy.pid), postgres_cpu_s(pg)
        t0 = time.monotonic()
        deadline = t0 + args.ingest_timeout
        while True:
            status, js, data, _ = c.post(body, timeout_ms=20)
            if status == 200 or time.monotonic() > deadline:
                break
            log("  first request: HTTP %d, retrying: %s" % (status, data[:200]))
            time.sleep(0.2)
        res["first_request_s"] = time.monotonic() - t0
        if status != 200:
            raise RuntimeError("first request failed: HTTP %d %s" % (status, data[:300]))
        check_list(js, n, order, "first request")
        served = nxt = None
        while time.monotonic() < deadline:
            syncs = hs.call("sync_log", token)
            for i, r in enumerate(syncs):
                if r["nb"] == nb and r["send_start"] is not None:
                    served = r
                    nxt = syncs[i + 1] if i + 1 < len(syncs) else None
            if nxt:
                break
            time.sleep(0.02)
        perf.stop()
        res["ingest_cpu_s"] = proc_cpu_s(proxy.pid) - cpu0
        res["ingest_pg_cpu_s"] = postgres_cpu_s(pg) - pgcpu0
        res["rss_after_ingest_mb"] = proxy.memory_mb()[0]
        if not (served and nxt):
            raise RuntimeError("syncv3 never polled again after the big v2 response")
        res["ingest_s"] = nxt["time"] - served["send_start"]
        res["ingest_transfer_s"] = served["answered_at"] - served["send_start"]
        res["events_per_s"] = res["events"] / res["ingest_s"]
        log("  ingest %.3f s (%.0f events/s); first sliding sync request answered after %.3f s"
            % (res["ingest_s"], res["events_per_s"], res["first_request_s"]))
        hs.call("wait_idle", token, 30)

        # 2. first-request latency of fresh connections
        status, js, data, _ = c.post(body)  # warm-up
        if status != 200:
            raise RuntimeError("warm-up failed: HTTP %d %s" % (status, data[:300]))
        check_list(js, n, order, "warm-up")
        res["response_bytes"] = len(data)
        # the floor: a trivial request (GET /client/server.json) on the same keep-alive connection
        floor = []
        for _ in range(args.requests):
            status, dt = c.get("/client/server.json")
            floor.append(dt * 1000)
        res["floor_p50"] = percentile(floor, 0.50)
        perf = Perf(args.perf, proxy.pid, "n%d-firstreq" % n)
        lat = []
        c.sockets.clear()
        for i in range(args.requests):
            status, js, data, dt = c.post(body)
            if status != 200:
                raise RuntimeError("request %d: HTTP %d %s" % (i, status, data[:300]))
            lat.append(dt * 1000)
            check_list(js, n, order, "timed request %d" % i)  # outside the timer
        perf.stop()
        res["first_p50"], res["first_p99"] = percentile(lat, 0.50), percentile(lat, 0.99)
        res["first_max"] = max(lat)
        res["first_tcp_conns"] = len(c.sockets)
        log("  first request: p50 %.2f ms, p99 %.2f ms, max %.2f ms (%d requests, %d TCP connection(s))"
            % (res["first_p50"], res["first_p99"], res["first_max"], len(lat), len(c.sockets)))
        c.close()

        # 3. live-update latency
        lc = Client(proxy.port, token)
        lbody = bench_body(user, conn_id="bench-live")
        status, js, data, _ = lc.post(lbody)
        if status != 200:
            raise RuntimeError("live connection: HTTP %d %s" % (status, data[:300]))
        pos = js["pos"]
        live = []
        stray = 0
        for k in range(args.live):
            rid = order[-1]  # the bottom room
            lc.send(lbody, pos=pos, timeout_ms=30000)
            time.sleep(args.park_ms / 1000.0)
            nb, evid = hs.call("queue_message", token, user, rid, "live %d" % k)
            bump(rid)
            for _ in range(5):
                status, js, data, t_recv = lc.receive()
                if status != 200:
                    raise RuntimeError("live sample %d: HTTP %d %s" % (k, status, data[:300]))
                pos = js["pos"]
                room = (js.get("rooms") or {}).get(rid) or {}
                if any(e.get("event_id") == evid for e in room.get("timeline") or []):
                    break
                stray += 1  # an answer without our event (should not happen): poll again
                lc.send(lbody, pos=pos, timeout_ms=30000)
            else:
                raise RuntimeError("live sample %d: the message never arrived" % k)
            served = [r for r in hs.call("sync_log", token) if r["nb"] == nb]
            if not served or served[0]["send_start"] is None:
                raise RuntimeError("live sample %d: the fake HS has no record of serving %s" % (k, nb))
            live.append((t_recv - served[0]["send_start"]) * 1000)
            hs.call("wait_idle", token, 30)
        lc.close()
        res["live_p50"], res["live_p99"], res["live_max"] = (percentile(live, 0.50),
                                                             percentile(live, 0.99), max(live))
        res["live_stray"] = stray
        log("  live: p50 %.2f ms, p99 %.2f ms, max %.2f ms (%d samples)"
            % (res["live_p50"], res["live_p99"], res["live_max"], len(live)))

        # 4. memory
        res["rss_mb"], res["hwm_mb"] = proxy.memory_mb()
        log("  RSS %.1f MB (peak %.1f MB)" % (res["rss_mb"], res["hwm_mb"]))

        # 5. the MSC4186 rows (bench/msc4186.py)
        if not args.no_msc4186:
            ctx = argparse.Namespace(B=sys.modules[__name__], n=n, args=args, hs=hs, pg=pg, token=token, user=user,
                                     order=order, bump=bump, procs=procs, binary=binary, db=db, work=work,
                                     log=log)
            try:
                res.update(msc4186.run(ctx))
            except Exception as e:  # noqa: BLE001 - keep the MSC3575 rows of this N
                log("bench: N=%d MSC4186 failed: %s\nsyncv3 stderr (tail):\n%s" % (n, e, procs[-1].stderr_tail()))
                res["msc4186"] = "failed"
                res["error"] = "MSC4186: %s" % e
        return res
    except Exception:
        if procs:
            log("syncv3 stderr (tail):\n" + procs[-1].stderr_tail())
        raise
    finally:
        for p in procs:
            p.stop()
        if hs is not None:
            hs.stop()
        try:
            pgtmp.drop_database(admin, dbname)
        except Exception:  # noqa: BLE001
            pass


# =========================================================================
# Report
# =========================================================================

def fmt(v, spec):
    return "—" if v is None else format(v, spec)


def table(results):
    """One MSC3575 row and one MSC4186 row per N (the ingest is shared: it is on the first)."""
    rows = ["| rooms | API | events | ingest s | events/s | first req p50 ms | p99 ms | live p50 ms | p99 ms "
            "| after restart: first req ms | start → served ms | old pos after restart | RSS MB | peak RSS MB |",
            "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|"]
    for r in results:
        rows.append("| %s | MSC3575 | %s | %s | %s | %s | %s | %s | %s | — | — | — | %s | %s |" % (
            format(r["rooms"], ","), format(r["events"], ","), fmt(r.get("ingest_s"), ".3f"),
            fmt(r.get("events_per_s"), ",.0f"), fmt(r.get("first_p50"), ".2f"),
            fmt(r.get("first_p99"), ".2f"), fmt(r.get("live_p50"), ".2f"),
            fmt(r.get("live_p99"), ".2f"), fmt(r.get("rss_mb"), ".1f"), fmt(r.get("hwm_mb"), ".1f")))
        state = r.get("msc4186")
        if state is None or state != "served":
            why = state or ("not measured" if "error" not in r else "failed")
            rows.append("| %s | MSC4186 | %s | | | | | | | | | | | |" % (format(r["rooms"], ","), why))
            continue
        rows.append("| %s | MSC4186 | | | | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            format(r["rooms"], ","), fmt(r.get("m_first_p50"), ".2f"), fmt(r.get("m_first_p99"), ".2f"),
            fmt(r.get("m_live_p50"), ".2f"), fmt(r.get("m_live_p99"), ".2f"),
            restart_cell(r),
            fmt(msc4186.median(r.get("m_start_to_served_ms")), ".0f"),
            r.get("m_restart_pos_outcome") or "—", fmt(r.get("m_rss_mb"), ".1f"), fmt(r.get("m_hwm_mb"), ".1f")))
    rows.append("| budget (4,000 rooms) | MSC3575 | | | ≥ 20,000 | ≤ 5 | ≤ 20 | ≤ 5 | ≤ 10 | | | | | |")
    rows.append("| budget (4,000 rooms) | MSC4186 | | | | ≤ 3 | ≤ 10 | ≤ 5 | | | | | | |")
    return "\n".join(rows)


def restart_cell(r):
    """Median first request after a restart (new connection), and how many times the p50 before."""
    after, before = msc4186.median(r.get("m_restart_new_ms")), r.get("m_first_p50")
    if after is None:
        return "—"
    return "%.2f (%.1f× p50)" % (after, after / before) if before else "%.2f" % after


def msc4186_details(results):
    """Per N: the restart samples one by one and the MSC4186 context numbers."""
    def ms(vals, spec=".1f"):
        return "—" if not vals else " / ".join(format(v, spec) for v in vals)
    rows = ["| rooms | room-list response KB | first req max ms | CPU ms per first req: syncv3 / PostgreSQL "
            "| live max ms | first req before restart ms "
            "| after restart, new connection ms | after restart, old pos ms (outcome) | start → listening ms "
            "| start → served ms |",
            "|---:|---:|---:|---:|---:|---|---|---|---|---|"]
    for r in results:
        if r.get("msc4186") != "served":
            continue
        rows.append("| %s | %s | %s | %s / %s | %s | %s | %s | %s | %s | %s |" % (
            format(r["rooms"], ","), fmt(r["m_response_bytes"] / 1024, ".1f"), fmt(r.get("m_first_max"), ".2f"),
            fmt(r.get("m_first_cpu_ms"), ".2f"), fmt(r.get("m_first_pg_cpu_ms"), ".2f"),
            fmt(r.get("m_live_max"), ".2f"), ms(r.get("m_before_restart_ms"), ".2f"),
            ms(r.get("m_restart_new_ms"), ".2f"),
            ms(r.get("m_restart_pos_ms"), ".2f") + (" (%s)" % r["m_restart_pos_outcome"]
                                                    if r.get("m_restart_pos_outcome") else ""),
            ms(r.get("m_listen_ms"), ".0f"), ms(r.get("m_start_to_served_ms"), ".0f")))
    return "\n".join(rows) if len(rows) > 2 else None


def details(results):
    rows = ["| rooms | v2 body MB | first sliding sync request s (cold, incl. ingest) | "
            "v2 body transfer s | syncv3 CPU s during ingest | Postgres CPU s during ingest | "
            "RSS after ingest MB | v3 response KB | first req max ms | HTTP floor p50 ms | live max ms |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        rows.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            format(r["rooms"], ","), fmt(r.get("v2_mb"), ".1f"), fmt(r.get("first_request_s"), ".3f"),
            fmt(r.get("ingest_transfer_s"), ".3f"), fmt(r.get("ingest_cpu_s"), ".2f"),
            fmt(r.get("ingest_pg_cpu_s"), ".2f"), fmt(r.get("rss_after_ingest_mb"), ".1f"),
            fmt(r["response_bytes"] / 1024 if "response_bytes" in r else None, ".1f"),
            fmt(r.get("first_max"), ".2f"), fmt(r.get("floor_p50"), ".2f"), fmt(r.get("live_max"), ".2f")))
    return "\n".join(rows)


def main(argv=None):
    ap = argparse.ArgumentParser(description="syncv3 benchmark (BenchmarkNumRooms, extended)")
    ap.add_argument("rooms", nargs="*", type=int, default=[100, 800, 4000])
    ap.add_argument("--requests", type=int, default=200, help="timed fresh-connection requests")
    ap.add_argument("--live", type=int, default=50, help="live-update samples")
    ap.add_argument("--members", type=int, default=0, metavar="M",
                    help="give the %d newest rooms (all in the window) M other members each" % BIG_ROOMS)
    ap.add_argument("--park-ms", type=int, default=50, help="wait before delivering a live event")
    ap.add_argument("--ingest-timeout", type=float, default=300.0)
    ap.add_argument("--time-limit", type=float, default=float(os.environ.get("BENCH_TIME_LIMIT", 1800)),
                    help="abort the whole run after this many seconds")
    ap.add_argument("--binary", default=str(REPO / "build" / "syncv3"),
                    help="the syncv3 binary to measure (default build/syncv3 of this tree)")
    ap.add_argument("--restarts", type=int, default=4, help="MSC4186 restarts per N, alternately with "
                    "the old pos and a new connection (0: none)")
    ap.add_argument("--no-msc4186", action="store_true", help="skip the MSC4186 rows")
    ap.add_argument("--perf", metavar="DIR", help="record perf profiles of the ingest and "
                    "first-request phases into DIR (perf-n<N>-<phase>.data)")
    ap.add_argument("--fakehs-nagle", action="store_true",
                    help="leave Nagle on in the fake HS (adds ~40 ms to live latency; see README)")
    ap.add_argument("--json", metavar="FILE", help="also write the raw results as JSON")
    ap.add_argument("--env", metavar="NAME=VALUE", action="append", default=[],
                    help="extra environment for syncv3, e.g. SYNCV3_OTLP_URL=http://127.0.0.1:4318 (repeatable)")
    args = ap.parse_args(argv)

    binary = Path(args.binary).resolve()  # syncv3 runs in a work directory
    if not binary.exists():
        sys.exit("bench: %s not found (run make)" % binary)
    _TimedHS.nodelay = not args.fakehs_nagle
    if args.perf:
        Path(args.perf).mkdir(parents=True, exist_ok=True)

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    class Abort(Exception):
        pass

    def on_signal(signum, frame):
        raise Abort("signal %d" % signum)

    def on_alarm(signum, frame):
        raise Abort("time limit of %.0f s reached" % args.time_limit)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(max(1, int(args.time_limit)))

    workroot = tempfile.mkdtemp(prefix="syncv3-bench-")
    os.chmod(workroot, 0o755)
    pg = None
    results = []
    rc = 0
    try:
        log("bench: starting PostgreSQL (fsync off)")
        os.makedirs(os.path.join(workroot, "pg"))
        pg = pgtmp.TempPostgres(os.path.join(workroot, "pg")).start()
        for n in args.rooms:
            try:
                results.append(run_one(n, args, pg, binary, workroot, log))
                if "error" in results[-1]:
                    rc = 1
            except Abort:
                raise
            except Exception as e:  # noqa: BLE001 - report and continue with the next N
                log("bench: N=%d failed: %s" % (n, e))
                results.append({"rooms": n, "events": fixture_events(n, args.members), "error": str(e)})
                rc = 1
    except Abort as e:
        log("bench: aborted (%s); cleaning up" % e)
        rc = 2
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if pg is not None:
            pg.stop(remove=False)
        shutil.rmtree(workroot, ignore_errors=True)
    if results:
        cpu = os.cpu_count()
        default = binary.resolve() == (REPO / "build" / "syncv3").resolve()
        print("syncv3 benchmark — %s, %d CPU(s), %s" % (
            time.strftime("%Y-%m-%d %H:%M"), cpu,
            ("build/syncv3 at %s" % _git_rev()) if default else ("binary %s" % binary)))
        print()
        print(table(results))
        print()
        print(details(results))
        print()
        extra = msc4186_details(results)
        if extra:
            print(extra)
            print()
        ok = [r for r in results if "first_p50" in r]
        byn = {r["rooms"]: r for r in ok}
        if 100 in byn and 800 in byn:
            print("t(800)/t(100) first-request p50: %.2f" % (byn[800]["first_p50"] / byn[100]["first_p50"]))
        if 100 in byn and 4000 in byn:
            print("t(4000)/t(100) first-request p50: %.2f" % (byn[4000]["first_p50"] / byn[100]["first_p50"]))
        print("Latencies are client-side over loopback (Python http.client, one keep-alive connection); "
              "percentiles are nearest-rank (with %d live samples, p99 is the maximum)."
              % args.live)
        for r in results:
            if "error" in r:
                print("N=%d failed: %s" % (r["rooms"], r["error"]))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=2)
    return rc


def _git_rev():
    try:
        rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except Exception:  # noqa: BLE001
        return "unknown"


if __name__ == "__main__":
    sys.exit(main())
