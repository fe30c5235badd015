"""Error reports (SYNCV3_SENTRY_DSN) to a fake Sentry: 5xx answers, fatal errors, crashes."""

import os
import signal
import subprocess
import time

import pytest

from fakeobs import FakeSentry
from helpers import REPO, binary_path, clean_env, metric_value, sanitizer_env, sanitizer_report, wait_until

VERSION = (REPO / "VERSION").read_text().strip()


@pytest.fixture
def sentry():
    s = FakeSentry().start()
    yield s
    s.stop()


def check_envelope(env, sentry):
    assert env.path == "/api/%s/envelope/" % sentry.project
    auth = env.headers.get("X-Sentry-Auth", "")
    assert auth.startswith("Sentry "), env.headers
    parts = dict(p.strip().split("=", 1) for p in auth[len("Sentry "):].split(","))
    assert parts["sentry_version"] == "7", auth
    assert parts["sentry_key"] == sentry.key, auth
    assert parts["sentry_client"] == "syncv3/" + VERSION, auth
    assert env.headers.get("Content-Type") == "application/x-sentry-envelope"
    ev = env.event
    assert env.header["event_id"] == ev["event_id"]
    assert len(ev["event_id"]) == 32 and int(ev["event_id"], 16) >= 0
    assert ev["platform"] in ("native", "c")
    assert "timestamp" in ev
    return ev


def test_5xx_answer_sends_an_envelope(make_proxy, sentry, hs, alice):
    proxy = make_proxy(extra_env={"SYNCV3_SENTRY_DSN": sentry.dsn, "SYNCV3_SENTRY_ENVIRONMENT": "staging"})
    hs.fail_next(alice.token, "status", status=500, endpoint="whoami")
    r = proxy.client(alice.token).request({"lists": {"a": {"ranges": [[0, 9]]}}})
    assert r.status == 502, r
    env = sentry.wait_events(lambda e: e.get("level") == "error")[0]
    ev = check_envelope(env, sentry)
    assert ev["release"] == "syncv3@" + VERSION
    assert ev["environment"] == "staging"
    assert ev["tags"]["http.status_code"] == "502"
    assert ev["tags"]["http.method"] == "POST"
    assert ev["tags"]["http.path"] == "/_matrix/client/unstable/org.matrix.msc3575/sync"
    assert "502" in ev["message"]["formatted"]
    # Never the token, the Authorization header or the request body.
    assert alice.token.encode() not in env.raw
    assert b"Authorization" not in env.raw and b"Bearer" not in env.raw
    assert b"ranges" not in env.raw
    # The sender counts the envelope once the collector's answer is read: it may lag the arrival.
    wait_until(lambda: metric_value(proxy.metrics()[1], "sliding_sync_sentry_events_sent_total") == 1,
               timeout=5, what="the sent envelope counted")
    # A 4xx is not an error report.
    proxy.client("syt_unknown").request({})
    time.sleep(0.5)
    assert len(sentry.envelopes) == 1, [e.event for e in sentry.envelopes]


def test_5xx_reports_are_rate_limited(make_proxy, sentry, hs, alice):
    proxy = make_proxy(extra_env={"SYNCV3_SENTRY_DSN": sentry.dsn})
    hs.fail_next(alice.token, "status", status=500, endpoint="whoami", count=16)
    for _ in range(16):
        assert proxy.client(alice.token).request({}).status == 502
    sentry.wait_events(count=10)
    wait_until(lambda: metric_value(proxy.metrics()[1], "sliding_sync_sentry_events_dropped_total") >= 6,
               what="rate-limited reports counted")
    time.sleep(0.5)
    assert len(sentry.envelopes) == 10
    assert sentry.envelopes[0].event["environment"] == "production"


def test_fatal_error_is_reported_before_exit(sentry, tmp_path):
    env = sanitizer_env(clean_env())
    env.update({"SYNCV3_SERVER": "http://127.0.0.1:9", "SYNCV3_SECRET": "secret",
                "SYNCV3_DB": "host=/nonexistent-dir dbname=none connect_timeout=2",
                "SYNCV3_SENTRY_DSN": sentry.dsn, "SYNCV3_SENTRY_CRASH_DIR": str(tmp_path)})
    r = subprocess.run([str(binary_path())], env=env, capture_output=True, text=True, timeout=60,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 1, r
    assert sanitizer_report(r.stderr) is None, r.stderr
    ev = check_envelope(sentry.wait_events(lambda e: e.get("level") == "fatal")[0], sentry)
    assert ev["logger"] == "syncv3.main"
    assert "cannot connect to the database" in ev["message"]["formatted"]


def test_malformed_dsn_is_a_configuration_error(tmp_path):
    env = sanitizer_env(clean_env())
    env.update({"SYNCV3_SERVER": "http://127.0.0.1:9", "SYNCV3_SECRET": "secret",
                "SYNCV3_DB": "host=/nonexistent-dir dbname=none", "SYNCV3_SENTRY_DSN": "http://127.0.0.1:9/1"})
    r = subprocess.run([str(binary_path())], env=env, capture_output=True, text=True, timeout=30,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 1, r
    assert "SYNCV3_SENTRY_DSN" in r.stderr and "cannot connect" not in r.stderr, r.stderr


def test_crash_leaves_a_report_that_the_next_start_sends(make_proxy, sentry, alice, tmp_path):
    crash_dir = tmp_path / "crashes"
    # ASan would take SIGSEGV itself; the report is syncv3's own handler's job.
    asan = sanitizer_env(clean_env()).get("ASAN_OPTIONS", "")
    proxy = make_proxy(extra_env={"SYNCV3_SENTRY_DSN": sentry.dsn, "SYNCV3_SENTRY_CRASH_DIR": str(crash_dir),
                                  "ASAN_OPTIONS": asan + ":handle_segv=0:handle_abort=0"})
    assert crash_dir.is_dir()
    proxy.proc.send_signal(signal.SIGSEGV)
    rc = proxy.proc.wait(20)
    assert rc == -signal.SIGSEGV, (rc, proxy.stderr_tail())
    text = proxy.stderr()
    assert sanitizer_report(text) is None, text
    # Handled as a crash, not a problem of the harness: forget this run's process.
    proxy.proc = None
    files = sorted(os.listdir(crash_dir))
    assert len(files) == 1 and files[0].startswith("syncv3-crash-") and files[0].endswith(".txt"), files
    assert "crash report written to %s/%s" % (crash_dir, files[0]) in text
    report = (crash_dir / files[0]).read_text()
    assert report.startswith("syncv3-crash 1\n") and "signal=11\n" in report, report
    assert sentry.envelopes == [], "sent before the restart"

    proxy.start()
    env = sentry.wait_events(lambda e: e.get("level") == "fatal")[0]
    ev = check_envelope(env, sentry)
    assert ev["release"] == "syncv3@" + VERSION
    assert ev["environment"] == "production"
    exc = ev["exception"]["values"][0]
    assert exc["type"] == "SIGSEGV"
    assert exc["mechanism"]["meta"]["signal"]["number"] == 11
    assert exc["mechanism"]["handled"] is False
    frames = exc["stacktrace"]["frames"]
    assert frames and all(f["instruction_addr"].startswith("0x") for f in frames), frames
    wait_until(lambda: os.listdir(crash_dir) == [], what="the sent report removed")
