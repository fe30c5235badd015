#!/usr/bin/env python3
"""syncv3 memory benchmark: many distinct users, each connecting once (see bench/README.md).

Each user has one private room and one room shared by everyone, makes one sliding sync request
and goes away (the fake homeserver forgets the token, which ends the connection). With
SYNCV3_CACHE_MAX_USERS below the user count, the cache evicts users without a connection, so
RSS should stay flat after the first bound's worth of users. Prints one markdown row per size.

Standard library only. Never part of pass/fail.
"""

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))
sys.path.insert(0, str(REPO / "bench"))

import bench as B  # noqa: E402
import fakehs as F  # noqa: E402
import pgtmp  # noqa: E402


def metric(text, name, labels=""):
    m = re.search(r"^%s%s\s+(\S+)$" % (re.escape(name), re.escape(labels)), text, re.M)
    return float(m.group(1)) if m else 0.0


def scrape(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10) as r:
        return r.read().decode()


def connect_once(port, hs, i, shared_size):
    user = "@mem%d:localhost" % i
    token = "syt_mem_%d" % i
    hs.register(token, user, "D%d" % i)
    own = "!own%d:localhost" % i
    shared = "!shared%d:localhost" % (i // shared_size) if shared_size else "!shared:localhost"
    hs.queue(token, F.sync_response(join={
        own: F.joined_room(F.room_state(user, "Room %d" % i), [F.message(user, "hi")]),
        shared: F.joined_room([F.create("@host:localhost"), F.join("@host:localhost"), F.join(user)],
                              [F.message(user, "hello")]),
    }))
    body = json.dumps({"lists": {"a": {"ranges": [[0, 9]], "timeline_limit": 1}}}).encode()
    req = urllib.request.Request("http://127.0.0.1:%d%s?timeout=100" % (port, B.SS_PATH), data=body,
                                 headers={"Authorization": "Bearer " + token,
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        out = json.loads(r.read())
    if own not in out.get("rooms", {}):
        raise RuntimeError("user %d did not get their room" % i)
    hs.revoke(token)


def run_one(n, args, pg, binary, work, log):
    db = pgtmp.create_database(pg.conninfo(), "mem%d" % n)
    hs = F.FakeHomeserver().start()
    prom = pgtmp.free_port()
    proc = B.Syncv3(binary, hs.url, db, work,
                    ["SYNCV3_CACHE_MAX_USERS=%d" % args.cache_max, "SYNCV3_PROM=127.0.0.1:%d" % prom] + args.env)
    try:
        mark = max(1, min(n, 2 * args.cache_max, n // 10 or 1))
        rss_mark = None
        steps = []  # (users so far, RSS MB, cache users) at every --step users
        max_users = 0.0
        t0 = time.monotonic()
        done = 0
        with ThreadPoolExecutor(max_workers=args.workers) as ex:
            while done < n:
                step = min(args.batch, n - done)
                list(ex.map(lambda i: connect_once(proc.port, hs, i, args.shared_size), range(done, done + step)))
                done += step
                text = scrape(prom)
                max_users = max(max_users, metric(text, "sliding_sync_cache_users"))
                if rss_mark is None and done >= mark:
                    rss_mark = proc.memory_mb()[0]
                if args.step and done % args.step == 0:
                    steps.append((done, proc.memory_mb()[0], metric(text, "sliding_sync_cache_users")))
                    log("step: %d users, RSS %.1f MB" % (done, steps[-1][1]))
                log("users: %d/%d, cache %d, RSS %.0f MB" % (done, n, metric(text, "sliding_sync_cache_users"),
                                                             proc.memory_mb()[0]))
        secs = time.monotonic() - t0
        text = scrape(prom)
        rss, peak = proc.memory_mb()
        return {"users": n, "cache_max": args.cache_max, "secs": secs, "rate": n / secs,
                "cache_users": metric(text, "sliding_sync_cache_users"), "cache_users_max": max_users,
                "cache_rooms": metric(text, "sliding_sync_cache_rooms"),
                "evictions": metric(text, "sliding_sync_cache_evictions_total", '{kind="user"}'),
                "mark": mark, "rss_mark": rss_mark, "rss": rss, "peak": peak, "steps": steps}
    finally:
        proc.stop()
        hs.stop()
        pgtmp.drop_database(pg.conninfo(), "mem%d" % n)


def main(argv=None):
    ap = argparse.ArgumentParser(description="syncv3 memory benchmark: distinct users connecting once")
    ap.add_argument("users", nargs="*", type=int, default=[100000])
    ap.add_argument("--cache-max", type=int, default=10000, help="SYNCV3_CACHE_MAX_USERS")
    ap.add_argument("--workers", type=int, default=8, help="concurrent clients")
    ap.add_argument("--batch", type=int, default=500, help="users between samples")
    ap.add_argument("--step", type=int, default=10000,
                    help="also print RSS every this many users (a multiple of --batch; 0: never)")
    ap.add_argument("--shared-size", type=int, default=0,
                    help="users per shared room (0: one room shared by everyone, whose member list "
                         "grows with the run and makes each join slower)")
    ap.add_argument("--binary", default=str(REPO / "build" / "syncv3"))
    ap.add_argument("--env", metavar="NAME=VALUE", action="append", default=[])
    args = ap.parse_args(argv)

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    work = tempfile.mkdtemp(prefix="syncv3-users-")
    os.chmod(work, 0o755)
    os.makedirs(os.path.join(work, "pg"))
    pg = pgtmp.TempPostgres(os.path.join(work, "pg")).start()
    rows = []
    try:
        for n in args.users:
            rows.append(run_one(n, args, pg, Path(args.binary), work, log))
    finally:
        pg.stop(remove=False)
        shutil.rmtree(work, ignore_errors=True)
    print("| users | cache max | s | users/s | cache users (max seen) | cache rooms | evictions "
          "| RSS MB after N users | RSS MB end | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print("| %d | %d | %.0f | %.0f | %d (%d) | %d | %d | %.0f (N=%d) | %.0f | %.0f |" % (
            r["users"], r["cache_max"], r["secs"], r["rate"], r["cache_users"], r["cache_users_max"],
            r["cache_rooms"], r["evictions"], r["rss_mark"] or 0, r["mark"], r["rss"], r["peak"]))
    for r in rows:
        if not r["steps"]:
            continue
        print()
        print("| users so far (run of %d) | RSS MB | cache users |" % r["users"])
        print("|---|---|---|")
        for done, mb, cu in r["steps"]:
            print("| %d | %.1f | %d |" % (done, mb, cu))
    return 0


if __name__ == "__main__":
    sys.exit(main())
