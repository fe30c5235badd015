"""`syncv3 check` and `syncv3 migrate status|up` against a real PostgreSQL and the fake
homeserver: what they print, their exit status, and that status/check change nothing."""

import re

import fakehs as F
import pgtmp
from helpers import DEFAULT_SECRET, REPO
from pgtmp import free_port
from test_cli import run

MIGRATIONS = sorted(p.stem for p in (REPO / "src" / "store" / "migrations").glob("*.sql"))
LATEST = int(MIGRATIONS[-1].split("_")[0])


def env_for(hs_url, db, **kw):
    e = {"SYNCV3_SERVER": hs_url, "SYNCV3_DB": db, "SYNCV3_SECRET": DEFAULT_SECRET}
    e.update(kw)
    return e


def has_schema_table(db):
    return pgtmp.psql(db, "SELECT to_regclass('syncv3_schema_version') IS NOT NULL").strip() == "t"


def failed_lines(r):
    return [l for l in r.stderr.splitlines() if ": FAILED: " in l]


def test_check_all_good_on_a_fresh_database_changes_nothing(hs, db):
    r = run(["check"], env_for(hs.url, db))
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "homeserver: OK" in r.stdout and "v1.6" in r.stdout, r.stdout
    assert re.search(r"database: OK, PostgreSQL \d+[.\d]* .*schema version 0 of %d \(%d pending"
                     % (LATEST, LATEST), r.stdout), r.stdout
    assert r.stdout.rstrip().endswith("syncv3 check: all good"), r.stdout
    assert not failed_lines(r), r.stderr
    assert not has_schema_table(db), "check must not create or migrate anything"


def test_check_after_a_run_checks_the_stored_tokens(make_proxy, hs, db, alice):
    proxy = make_proxy()
    alice.queue(F.sync_response())
    proxy.client(alice.token).sync({})
    proxy.stop()
    r = run(["check"], env_for(hs.url, db))
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "schema version %d of %d\n" % (LATEST, LATEST) in r.stdout, r.stdout
    assert "secret: OK, all 1 stored access tokens decrypt" in r.stdout, r.stdout
    # Another secret decrypts nothing: that must stop a deploy.
    r = run(["check"], env_for(hs.url, db, SYNCV3_SECRET="another-secret"))
    assert r.returncode == 1, r.stdout
    assert [l for l in failed_lines(r) if l.startswith("secret: FAILED: ")], r.stderr
    assert "was it changed?" in r.stderr


def test_check_homeserver_down(db):
    r = run(["check"], env_for("http://127.0.0.1:%d" % free_port(), db))
    assert r.returncode == 1, r
    lines = failed_lines(r)
    assert len(lines) == 1 and lines[0].startswith("homeserver: FAILED: GET http://127.0.0.1:"), r.stderr
    assert "database: OK" in r.stdout, "the database is still checked"
    assert r.stderr.strip().splitlines()[-1] == "syncv3 check: 1 problem"


def test_check_homeserver_that_is_not_a_homeserver(hs, db):
    hs.versions_body = {"hello": "world"}
    r = run(["check"], env_for(hs.url, db))
    assert r.returncode == 1, r
    lines = failed_lines(r)
    assert len(lines) == 1 and "versions" in lines[0], r.stderr


def test_check_database_down(hs):
    r = run(["check"], env_for(hs.url, "host=/nonexistent-dir dbname=none"))
    assert r.returncode == 1, r
    lines = failed_lines(r)
    assert len(lines) == 1 and lines[0].startswith("database: FAILED: cannot connect (SYNCV3_DB): "), r.stderr
    assert "homeserver: OK" in r.stdout


def test_check_both_down_reports_each(db):
    r = run(["check"], env_for("http://127.0.0.1:%d" % free_port(), "host=/nonexistent-dir dbname=none"))
    assert r.returncode == 1, r
    assert [l.split(":")[0] for l in failed_lines(r)] == ["homeserver", "database"], r.stderr
    assert "2 problems" in r.stderr


def test_check_bad_config_is_one_line_and_fast(hs, db):
    r = run(["check"], env_for(hs.url, db, SYNCV3_BINDADDR="nowhere"))
    assert r.returncode == 1, r
    lines = failed_lines(r)
    assert len(lines) == 1 and lines[0].startswith("config: FAILED: SYNCV3_BINDADDR"), r.stderr
    assert not hs.requests, "a bad configuration must be reported before contacting anything"
    r = run(["check"], {"SYNCV3_SERVER": hs.url})
    assert r.returncode == 1 and "config: FAILED: SYNCV3_DB is not set" in r.stderr, r.stderr


def test_check_unreadable_tls_files(hs, db, tmp_path):
    r = run(["check"], env_for(hs.url, db, SYNCV3_TLS_CERT=str(tmp_path / "no.pem"),
                               SYNCV3_TLS_KEY=str(tmp_path / "no.key")))
    assert r.returncode == 1, r
    assert [l for l in failed_lines(r) if "SYNCV3_TLS_CERT" in l], r.stderr


def test_check_refuses_the_go_proxys_database(hs, db):
    pgtmp.psql(db, "CREATE TABLE goose_db_version (id int)")
    r = run(["check"], env_for(hs.url, db))
    assert r.returncode == 1, r
    assert [l for l in failed_lines(r) if "Go sliding-sync proxy" in l], r.stderr


def test_migrate_status_then_up(db):
    r = run(["migrate", "status"], {"SYNCV3_DB": db})
    assert r.returncode == 0, r
    assert "schema version: 0 (this syncv3 knows up to %d)" % LATEST in r.stdout, r.stdout
    assert "applied: none" in r.stdout
    pending = r.stdout.split("pending:")[1]
    for m in MIGRATIONS:
        assert "  " + m in pending, r.stdout
    assert not has_schema_table(db), "status must not apply anything"

    r = run(["migrate", "up"], {"SYNCV3_DB": db})
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "schema version: %d" % LATEST in r.stdout
    assert "pending: none" in r.stdout
    assert re.search(r"  %s  \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ" % MIGRATIONS[0], r.stdout), r.stdout

    r = run(["migrate", "status"], {"SYNCV3_DB": db})
    assert r.returncode == 0 and "pending: none" in r.stdout, r.stdout


def test_migrate_status_database_down():
    r = run(["migrate", "status"], {"SYNCV3_DB": "host=/nonexistent-dir dbname=none"})
    assert r.returncode == 1, r
    assert len(r.stderr.strip().splitlines()) == 1 and "cannot connect" in r.stderr, r.stderr
    r = run(["migrate", "status"], {})
    assert r.returncode == 1 and "SYNCV3_DB is not set" in r.stderr, r.stderr


def test_migrate_up_from_the_previous_release(db):
    """A database of the release before stored connections (schema 3) gets 0004 and nothing else."""
    pgtmp.psql(db, "CREATE TABLE syncv3_schema_version (version INT PRIMARY KEY, name TEXT NOT NULL, "
                   "applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
    for m in MIGRATIONS[:3]:
        pgtmp.psql(db, (REPO / "src" / "store" / "migrations" / (m + ".sql")).read_text())
        pgtmp.psql(db, "INSERT INTO syncv3_schema_version (version, name) VALUES (%d, '%s')" % (int(m[:4]), m))
    r = run(["migrate", "status"], {"SYNCV3_DB": db})
    assert r.returncode == 0 and "schema version: 3" in r.stdout, r.stdout
    assert r.stdout.split("pending:")[1].split() == MIGRATIONS[3:], r.stdout
    r = run(["migrate", "up"], {"SYNCV3_DB": db})
    assert r.returncode == 0 and "pending: none" in r.stdout, (r.stdout, r.stderr)
    assert pgtmp.psql(db, "SELECT to_regclass('syncv3_conn_rooms') IS NOT NULL").strip() == "t"
