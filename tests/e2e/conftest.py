"""pytest fixtures for syncv3's black-box tests.

  pg      (session)  a throwaway PostgreSQL cluster, or the server named by
                     $SYNCV3_TEST_DB (a libpq conninfo with admin rights)
  db      (test)     a fresh database in it; yields its conninfo
  hs      (test)     a fake homeserver on 127.0.0.1:<free port>
  proxy   (test)     syncv3 ($SYNCV3_TEST_BINARY, default build-san/syncv3 or
                     build/syncv3) on those, stopped with SIGTERM at teardown;
                     the test fails if it crashed, exited non-zero or printed a
                     sanitizer report
  make_proxy (test)  factory for extra proxies / custom environments
"""

import itertools
import os
import re

import pytest

import pgtmp
from helpers import Proxy, User, binary_path  # noqa: F401 (re-exported for convenience)
import fakehs

_db_counter = itertools.count(1)


class _ExternalPostgres:
    def __init__(self, conninfo):
        self._conninfo = conninfo

    def conninfo(self, dbname="postgres", tcp=False):
        return pgtmp.with_dbname(self._conninfo, dbname)


@pytest.fixture(scope="session")
def pg():
    external = os.environ.get("SYNCV3_TEST_DB")
    if external:
        yield _ExternalPostgres(external)
        return
    server = pgtmp.TempPostgres().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def db(pg, request):
    name = "t%d_%s" % (next(_db_counter), re.sub(r"[^a-z0-9_]", "_", request.node.name.lower())[:40])
    admin = pg.conninfo()
    pgtmp.drop_database(admin, name)
    conninfo = pgtmp.create_database(admin, name)
    yield conninfo
    try:
        pgtmp.drop_database(admin, name)
    except RuntimeError:
        pass


@pytest.fixture
def hs():
    server = fakehs.FakeHomeserver().start()
    yield server
    server.stop()


@pytest.fixture
def make_proxy(hs, db, tmp_path):
    """make_proxy(**kw) -> a started Proxy (kw: extra_env, hs_url, db, secret, prom)."""
    made = []

    def make(start=True, **kw):
        kw.setdefault("hs_url", hs.url)
        kw.setdefault("db", db)
        p = Proxy(workdir=tmp_path / ("proxy%d" % (len(made) + 1)), **kw)
        made.append(p)
        if start:
            p.start()
        return p

    yield make
    problems = []
    for p in made:
        p.stop()
        problems += p.problems
    if problems:
        pytest.fail("syncv3 misbehaved:\n" + "\n\n".join(problems), pytrace=False)


@pytest.fixture
def proxy(make_proxy):
    return make_proxy()


@pytest.fixture
def alice(hs):
    return User(hs, "alice")


@pytest.fixture
def bob(hs):
    return User(hs, "bob")
