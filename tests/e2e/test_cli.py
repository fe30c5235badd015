"""Command line and configuration (no PostgreSQL, no homeserver needed)."""

import re
import subprocess
import time

import pytest

from helpers import REPO, binary_path, clean_env, sanitizer_env, sanitizer_report

ALL_VARS = ["SYNCV3_SERVER", "SYNCV3_DB", "SYNCV3_SECRET", "SYNCV3_BINDADDR", "SYNCV3_PROM",
            "SYNCV3_LOG_LEVEL", "SYNCV3_LOG_FORMAT", "SYNCV3_MAX_DB_CONN", "SYNCV3_TLS_CERT",
            "SYNCV3_TLS_KEY"]
REQUIRED = ["SYNCV3_SERVER", "SYNCV3_DB", "SYNCV3_SECRET"]
# Valid required values; the database is unreachable on purpose: config errors must be
# reported before anything connects anywhere.
BASE = {"SYNCV3_SERVER": "http://127.0.0.1:9", "SYNCV3_DB": "host=/nonexistent-dir dbname=none",
        "SYNCV3_SECRET": "secret"}


def run(args=(), env=None, timeout=15):
    e = sanitizer_env(clean_env())
    e.update(env or {})
    t0 = time.monotonic()
    r = subprocess.run([str(binary_path())] + list(args), env=e, capture_output=True, text=True,
                       timeout=timeout, stdin=subprocess.DEVNULL)
    r.elapsed = time.monotonic() - t0
    rep = sanitizer_report(r.stderr)
    assert rep is None, "sanitizer report:\n" + rep
    return r


def test_help_prints_every_variable_and_exits_0():
    r = run(["--help"])
    assert r.returncode == 0, r
    out = r.stdout + r.stderr
    for var in ALL_VARS:
        assert var in out, "--help does not mention %s:\n%s" % (var, out)


def test_help_works_without_any_configuration():
    # --help must not need (or validate) the environment.
    r = run(["--help"], env={"SYNCV3_MAX_DB_CONN": "junk"})
    assert r.returncode == 0, r


def test_version_prints_the_version():
    version = (REPO / "VERSION").read_text().strip()
    r = run(["--version"])
    assert r.returncode == 0, r
    assert re.fullmatch(r"syncv3 %s \(([0-9a-f]{7,}|unknown)\)\n" % re.escape(version), r.stdout), r.stdout


def test_help_lists_the_commands():
    r = run(["--help"])
    assert r.returncode == 0, r
    for cmd in ("syncv3 check", "syncv3 migrate status", "syncv3 migrate up", "syncv3 --version"):
        assert cmd in r.stdout, "--help does not list %r:\n%s" % (cmd, r.stdout)


@pytest.mark.parametrize("args", [["frobnicate"], ["migrate"], ["migrate", "down"], ["check", "extra"]])
def test_unknown_commands_are_usage_errors(args):
    r = run(args, BASE)
    assert r.returncode == 2, r
    assert r.stderr.strip() and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_missing_everything_prints_the_table_and_fails():
    r = run([])
    assert r.returncode != 0, r
    out = r.stdout + r.stderr
    for var in ALL_VARS:
        assert var in out, "the variable table should be printed; %s missing:\n%s" % (var, out)


@pytest.mark.parametrize("missing", REQUIRED)
def test_each_required_variable_is_required(missing):
    env = {k: v for k, v in BASE.items() if k != missing}
    r = run([], env)
    assert r.returncode != 0, r
    out = r.stdout + r.stderr
    assert re.search(r"%s\b[^\n]*(not set|missing|required)" % missing, out, re.I), \
        "no line says %s is missing:\n%s" % (missing, out)
    assert r.elapsed < 10


@pytest.mark.parametrize("var,value", [
    ("SYNCV3_MAX_DB_CONN", "many"),
    ("SYNCV3_MAX_DB_CONN", "-3"),
    ("SYNCV3_BINDADDR", "not an address"),
    ("SYNCV3_BINDADDR", "127.0.0.1:99999"),
    ("SYNCV3_PROM", "nonsense"),
    ("SYNCV3_SERVER", "ftp://example.org"),
    ("SYNCV3_LOG_LEVEL", "loudest"),
    ("SYNCV3_LOG_FORMAT", "xml"),
    ("SYNCV3_HTTP_TIMEOUT_SECS", "10s"),
    ("SYNCV3_TLS_CERT", "cert.pem"),  # without SYNCV3_TLS_KEY
])
def test_invalid_value_gives_one_clear_line(var, value):
    env = dict(BASE)
    env[var] = value
    r = run([], env)
    assert r.returncode != 0, r
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert any(var in l for l in lines), "stderr does not name %s:\n%s" % (var, r.stderr)
    assert len(lines) <= 3, "expected one clear line, got:\n%s" % r.stderr
    assert r.elapsed < 10, "took %.1fs: did it try to connect somewhere first?" % r.elapsed
