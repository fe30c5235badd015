"""Profiles (SYNCV3_PPROF): CPU profiles under load read back with google-pprof, heap profiles,
and the listener's errors."""

import shutil
import subprocess
import threading
import time

import pytest

import fakehs as F
from helpers import REPO, http_request
from pgtmp import free_port

pytestmark = pytest.mark.skipif(shutil.which("google-pprof") is None,
                                reason="google-pprof missing (Debian package google-perftools; scripts/setup.sh)")



def our_functions(binary):
    """Names of the functions defined in the syncv3 binary itself."""
    out = subprocess.run(["nm", "--defined-only", str(binary)], capture_output=True, text=True,
                         check=True).stdout
    return {line.split()[2] for line in out.splitlines()
            if len(line.split()) == 3 and line.split()[1] in "tT"}


@pytest.fixture
def plain_binary():
    """build/syncv3, the build without sanitizers (tcmalloc); made if needed (a fast no-op
    when it is up to date)."""
    r = subprocess.run(["make", "-j2", "build/syncv3"], cwd=str(REPO), capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return REPO / "build" / "syncv3"


def start(make_proxy, user, **kw):
    port = free_port()
    env = {"SYNCV3_PPROF": "127.0.0.1:%d" % port, "SYNCV3_LOG_LEVEL": "info"}
    proxy = make_proxy(extra_env=env, **kw)
    rooms = {F.new_room_id(): F.joined_room(F.room_state(user.user_id, "Room %d" % i),
                                            [F.message(user.user_id, "m%d" % j) for j in range(5)])
             for i in range(30)}
    user.queue(F.sync_response(join=rooms))
    proxy.client(user.token).sync({"lists": {"a": {"ranges": [[0, 9]]}}})
    user.wait_idle()
    return proxy, "http://127.0.0.1:%d" % port


def load(proxy, token, stop, conn_id="load"):
    """Fresh connections in a loop: every one sorts, filters and snapshots the rooms."""
    c = proxy.client(token)
    body = {"conn_id": conn_id, "lists": {"a": {"ranges": [[0, 20]], "timeline_limit": 3, "filters": {"is_encrypted": False},
                            "required_state": [["m.room.create", ""], ["m.room.member", "$ME"]]}}}
    while not stop.is_set():
        c.reset()
        r = c.request(body, timeout=100)
        assert r.status == 200, r


def pprof_functions(binary, profile, tmp_path, *flags):
    """google-pprof --text of the profile: (the text, our functions it names)."""
    path = tmp_path / "profile.out"
    path.write_bytes(profile)
    r = subprocess.run(["google-pprof", "--text"] + list(flags) + [str(binary), str(path)],
                       capture_output=True, text=True, timeout=300,
                       env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Total:" in r.stdout, r.stdout
    named = {line.split()[-1] for line in r.stdout.splitlines()[1:] if line.strip()}
    return r.stdout, named & our_functions(binary)


def test_cpu_profile_under_load_parses_with_google_pprof(make_proxy, alice, tmp_path):
    proxy, base = start(make_proxy, alice)
    stop = threading.Event()
    errors = []

    def run(conn_id):
        try:
            load(proxy, alice.token, stop, conn_id)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)
    workers = [threading.Thread(target=run, args=("load%d" % i,), daemon=True) for i in range(2)]
    for t in workers:
        t.start()
    try:
        r = http_request(base + "/debug/pprof/profile?seconds=4", timeout=60)
    finally:
        stop.set()
        for t in workers:
            t.join(30)
    assert not errors, errors
    assert r.status == 200, r
    assert r.headers["Content-Type"] == "application/octet-stream"
    assert len(r.body) > 1000, r
    text, ours = pprof_functions(proxy.binary, r.body, tmp_path)
    # The load runs through the HTTP server, the sliding sync handler and the store.
    assert len(ours) >= 5, text[:3000]
    assert ours & {"run_handler", "on_access", "sync_api_handle", "conn_apply_request", "conn_finish"}, ours
    assert "taking a CPU profile for 4 s" in proxy.stderr()


def test_one_cpu_profile_at_a_time_and_bad_parameters(make_proxy, alice):
    proxy, base = start(make_proxy, alice)
    results = []
    t = threading.Thread(target=lambda: results.append(http_request(base + "/debug/pprof/profile?seconds=3")))
    t.start()
    try:
        deadline = time.monotonic() + 3
        while "taking a CPU profile" not in proxy.stderr() and time.monotonic() < deadline:
            time.sleep(0.05)
        second = http_request(base + "/debug/pprof/profile?seconds=1")
    finally:
        t.join(30)
    assert second.status == 429, second
    assert second.json["errcode"] == "M_LIMIT_EXCEEDED", second
    assert second.json["retry_after_ms"] > 0, second
    assert results and results[0].status == 200, results
    for q in ("seconds=0", "seconds=301", "seconds=abc", "seconds="):
        r = http_request(base + "/debug/pprof/profile?" + q)
        assert r.status == 400 and r.json["errcode"] == "M_INVALID_PARAM", (q, r)
    r = http_request(base + "/debug/pprof/nope")
    assert r.status == 404 and r.json["errcode"] == "M_UNRECOGNIZED", r
    r = http_request(base + "/debug/pprof/profile?seconds=1", method="POST", body=b"x")
    assert r.status == 405 and "errcode" in r.json, r
    r = http_request(base + "/debug/pprof/")
    assert r.status == 200 and b"/debug/pprof/heap" in r.body, r
    # Never on the client port.
    r = http_request(proxy.url + "/debug/pprof/profile?seconds=1")
    assert r.status == 404, r


def test_heap_profile_from_the_tcmalloc_build(make_proxy, alice, tmp_path, plain_binary):
    # By default SYNCV3_PPROF samples every 512 KiB allocated (the header says so).
    proxy, base = start(make_proxy, alice, binary=plain_binary)
    r = http_request(base + "/debug/pprof/heap", timeout=60)
    assert r.status == 200, r
    assert r.body.startswith(b"heap profile:") and b"@ heap_v2/524288\n" in r.body[:200], r.body[:300]
    proxy.stop()
    # TCMALLOC_SAMPLE_PARAMETER wins; sampled finely, the profile names what holds memory.
    proxy.extra_env["TCMALLOC_SAMPLE_PARAMETER"] = "4096"
    proxy.start()
    proxy.client(alice.token).sync({"lists": {"a": {"ranges": [[0, 29]], "timeline_limit": 5}}})
    r = http_request(base + "/debug/pprof/heap", timeout=60)  # the same SYNCV3_PPROF
    assert r.status == 200, r
    assert b"@ heap_v2/4096\n" in r.body[:200], r.body[:300]
    text, ours = pprof_functions(plain_binary, r.body, tmp_path, "--inuse_space")
    # What the server keeps comes through the allocation wrappers.
    assert ours & {"xmalloc", "xcalloc", "xrealloc", "xstrdup", "xstrndup"}, text[:3000]
    assert r.headers["Content-Type"].startswith("text/plain"), r.headers


def test_heap_profile_of_a_sanitizer_build_is_501(make_proxy, alice):
    proxy, base = start(make_proxy, alice)
    linked = subprocess.run(["ldd", str(proxy.binary)], capture_output=True, text=True).stdout
    if "libasan" not in linked:
        pytest.skip("the binary under test is not a sanitizer build")
    r = http_request(base + "/debug/pprof/heap")
    assert r.status == 501, r
    assert r.json["errcode"] == "M_UNRECOGNIZED" and "tcmalloc" in r.json["error"], r
