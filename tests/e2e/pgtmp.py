#!/usr/bin/env python3
"""A throwaway PostgreSQL cluster in a temporary directory (standard library only).

Used by the pytest fixtures (conftest.py) and by scripts/demo.sh.

PostgreSQL refuses to run as root, so when we are root every server-side
command runs as the `postgres` user through runuser, and the directory is
handed to that user. The server listens on a unix socket inside the directory
and on 127.0.0.1:<free port>, with fsync off (data is disposable).

CLI (for shell scripts):
  pgtmp.py start DIR        -> prints the admin conninfo (unix socket) on stdout
  pgtmp.py createdb DIR NAME -> prints the conninfo of the new database
  pgtmp.py stop DIR
"""

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time


def free_port(host="127.0.0.1"):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def pg_bindir():
    """Directory of initdb/pg_ctl/psql: $SYNCV3_PG_BINDIR, pg_config --bindir, Debian's layout,
    or PATH."""
    env = os.environ.get("SYNCV3_PG_BINDIR")
    if env:
        return env
    try:
        d = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True,
                           check=True).stdout.strip()
        if os.path.exists(os.path.join(d, "initdb")):
            return d
    except (OSError, subprocess.CalledProcessError):
        pass
    cands = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(p.split("/")[-3]) if p.split("/")[-3].isdigit() else 0)
    if cands:
        return os.path.dirname(cands[-1])
    found = shutil.which("initdb")
    if found:
        return os.path.dirname(found)
    raise RuntimeError("PostgreSQL server binaries not found (install the postgresql package)")


class TempPostgres:
    """A PostgreSQL cluster living in `base` (created if None)."""

    def __init__(self, base=None, port=None):
        self.base = base or tempfile.mkdtemp(prefix="syncv3-pg-")
        self.data = os.path.join(self.base, "data")
        self.sockdir = self.base
        self.log = os.path.join(self.base, "postgres.log")
        self.portfile = os.path.join(self.base, "port")
        self.port = port
        self.bindir = pg_bindir()
        self.as_root = os.geteuid() == 0
        self.user = "postgres" if self.as_root else pwd.getpwuid(os.geteuid()).pw_name

    def _run(self, argv, check=True, **kw):
        if self.as_root:
            argv = ["runuser", "-u", "postgres", "--"] + argv
        return subprocess.run(argv, cwd=self.base, capture_output=True, text=True, check=check, **kw)

    def _tool(self, name):
        return os.path.join(self.bindir, name)

    def start(self):
        if self.as_root:
            pw = pwd.getpwnam("postgres")
            os.chown(self.base, pw.pw_uid, pw.pw_gid)
            os.chmod(self.base, 0o755)  # root-owned clients reach the socket
        if not os.path.exists(os.path.join(self.data, "PG_VERSION")):
            r = self._run([self._tool("initdb"), "-D", self.data, "-A", "trust", "-U", self.user,
                           "-E", "UTF8", "--locale=C", "--no-sync"], check=False)
            if r.returncode != 0:
                raise RuntimeError("initdb failed:\n%s%s" % (r.stdout, r.stderr))
        if self.port is None:
            self.port = free_port()
        opts = ("-c listen_addresses=127.0.0.1 -p %d -k %s -c fsync=off -c synchronous_commit=off "
                "-c full_page_writes=off -c max_connections=300 -c shared_buffers=64MB"
                % (self.port, self.sockdir))
        r = self._run([self._tool("pg_ctl"), "-D", self.data, "-l", self.log, "-o", opts, "-w",
                       "-t", "60", "start"], check=False)
        if r.returncode != 0:
            logtail = ""
            if os.path.exists(self.log):
                with open(self.log, errors="replace") as f:
                    logtail = f.read()[-3000:]
            raise RuntimeError("pg_ctl start failed:\n%s%s\n%s" % (r.stdout, r.stderr, logtail))
        with open(self.portfile, "w") as f:
            f.write(str(self.port))
        return self

    def stop(self, remove=True, mode="immediate"):
        if os.path.exists(os.path.join(self.data, "postmaster.pid")):
            self._run([self._tool("pg_ctl"), "-D", self.data, "-m", mode, "-w", "stop"],
                      check=False)
        if remove:
            shutil.rmtree(self.base, ignore_errors=True)

    def conninfo(self, dbname="postgres", tcp=False):
        host = "127.0.0.1" if tcp else self.sockdir
        return "host=%s port=%d user=%s dbname=%s sslmode=disable" % (host, self.port, self.user,
                                                                      dbname)

    @classmethod
    def attach(cls, base):
        """A handle on a cluster started earlier (by `pgtmp.py start`)."""
        with open(os.path.join(base, "port")) as f:
            port = int(f.read().strip())
        return cls(base, port)


def psql(conninfo, sql, bindir=None):
    """Runs one SQL command with psql (autocommit); raises on error; returns stdout."""
    exe = os.path.join(bindir or pg_bindir(), "psql")
    r = subprocess.run([exe, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At", "-d", conninfo, "-c", sql],
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError("psql failed (%s): %s" % (sql, r.stderr.strip()))
    return r.stdout


def with_dbname(conninfo, dbname):
    """Replaces/sets dbname in a key=value conninfo."""
    parts = [p for p in conninfo.split() if not p.startswith("dbname=")]
    return " ".join(parts + ["dbname=" + dbname])


def create_database(admin_conninfo, name):
    psql(with_dbname(admin_conninfo, "postgres"), 'CREATE DATABASE "%s"' % name)
    return with_dbname(admin_conninfo, name)


def drop_database(admin_conninfo, name):
    psql(with_dbname(admin_conninfo, "postgres"), 'DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name)


def main(argv):
    if len(argv) < 2 or argv[0] not in ("start", "stop", "createdb"):
        sys.stderr.write(__doc__)
        return 2
    cmd, base = argv[0], os.path.abspath(argv[1])
    if cmd == "start":
        os.makedirs(base, exist_ok=True)
        pg = TempPostgres(base).start()
        print(pg.conninfo())
    elif cmd == "createdb":
        pg = TempPostgres.attach(base)
        print(create_database(pg.conninfo(), argv[2]))
    else:
        if os.path.exists(os.path.join(base, "port")):
            TempPostgres.attach(base).stop(remove=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
