"""Listener and upstream transport forms: unix sockets both ways, TLS, a pool of one
database connection, and a clean exit on SIGTERM (issue: configuration working now)."""

import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import time

import pytest

from helpers import DEFAULT_SECRET, SS_PATH, User, binary_path, clean_env, sanitizer_env, sanitizer_report
import fakehs as F

BODY = {"lists": {"a": {"ranges": [[0, 9]], "timeline_limit": 1}}}


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=30):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


def start(tmp_path, env_extra, db, hs_url, ready):
    env = sanitizer_env(clean_env())
    env.update({"SYNCV3_SERVER": hs_url, "SYNCV3_DB": db, "SYNCV3_SECRET": DEFAULT_SECRET,
                "SYNCV3_LOG_LEVEL": "debug"})
    env.update(env_extra)
    err = open(tmp_path / "syncv3.stderr", "wb")
    proc = subprocess.Popen([str(binary_path())], env=env, stdout=subprocess.DEVNULL, stderr=err,
                            stdin=subprocess.DEVNULL, cwd=str(tmp_path))
    deadline = time.monotonic() + 30
    while not ready():
        assert proc.poll() is None, (tmp_path / "syncv3.stderr").read_text()
        assert time.monotonic() < deadline, "syncv3 did not start listening"
        time.sleep(0.05)
    return proc


def stop(proc, tmp_path):
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(20)
    text = (tmp_path / "syncv3.stderr").read_text(errors="replace")
    assert rc == 0, text[-3000:]
    assert not sanitizer_report(text), sanitizer_report(text)


def one_room(user):
    rid = F.new_room_id()
    user.queue(F.sync_response(join={rid: F.joined_room(F.room_state(user.user_id, "Sock room"),
                                                         [F.message(user.user_id, "hi")])}))
    return rid


def post(conn, token, body, pos=None):
    path = SS_PATH + "?timeout=100" + ("&pos=%s" % pos if pos else "")
    conn.request("POST", path, body=json.dumps(body), headers={"Authorization": "Bearer " + token})
    r = conn.getresponse()
    return r.status, json.loads(r.read() or b"null")


def test_unix_socket_listener(tmp_path, db, hs, alice):
    sock = str(tmp_path / "syncv3.sock")
    rid = one_room(alice)
    proc = start(tmp_path, {"SYNCV3_BINDADDR": sock}, db, hs.url, lambda: os.path.exists(sock))
    try:
        assert os.stat(sock).st_mode & 0o777 == 0o666
        status, body = post(UnixHTTPConnection(sock), alice.token, BODY)
        assert status == 200, body
        assert body["lists"]["a"]["ops"][0]["room_ids"] == [rid]
        assert body["rooms"][rid]["name"] == "Sock room"
    finally:
        stop(proc, tmp_path)


def test_homeserver_on_a_unix_socket(tmp_path, db):
    hs_sock = str(tmp_path / "hs.sock")
    hs = F.FakeHomeserver(unix_path=hs_sock).start()
    try:
        alice = User(hs, "alice")
        rid = one_room(alice)
        port = socket.socket()
        port.bind(("127.0.0.1", 0))
        p = port.getsockname()[1]
        port.close()
        proc = start(tmp_path, {"SYNCV3_BINDADDR": "127.0.0.1:%d" % p}, db, hs_sock,
                     lambda: _open(p))
        try:
            status, body = post(http.client.HTTPConnection("127.0.0.1", p, timeout=30), alice.token, BODY)
            assert status == 200, body
            assert rid in body["rooms"]
            assert [r for r in hs.sync_requests(alice.token)], "no /sync reached the unix-socket homeserver"
        finally:
            stop(proc, tmp_path)
    finally:
        hs.stop()


def _open(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


def test_tls_listener(tmp_path, db, hs, alice):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=localhost", "-keyout", str(key), "-out", str(cert)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rid = one_room(alice)
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    proc = start(tmp_path, {"SYNCV3_BINDADDR": "127.0.0.1:%d" % p, "SYNCV3_TLS_CERT": str(cert),
                            "SYNCV3_TLS_KEY": str(key)}, db, hs.url, lambda: _open(p))
    try:
        ctx = ssl.create_default_context(cafile=str(cert))
        ctx.check_hostname = False
        status, body = post(http.client.HTTPSConnection("127.0.0.1", p, context=ctx, timeout=30), alice.token, BODY)
        assert status == 200, body
        assert rid in body["rooms"]
        # Plain HTTP on the TLS port does not get a sliding sync answer.
        with pytest.raises(Exception):
            st, _ = post(http.client.HTTPConnection("127.0.0.1", p, timeout=5), alice.token, BODY)
            assert st != 200
            raise RuntimeError("plain HTTP was not served")
    finally:
        stop(proc, tmp_path)


def test_a_single_database_connection_is_enough(make_proxy, hs, alice, bob):
    proxy = make_proxy(extra_env={"SYNCV3_MAX_DB_CONN": "1"})
    rooms = {}
    for u in (alice, bob):
        rooms[u.user_id] = one_room(u)
    clients = [proxy.client(u.token) for u in (alice, bob)]
    for u, c in zip((alice, bob), clients):
        resp = c.sync(BODY)
        assert rooms[u.user_id] in resp["rooms"]
    # live traffic through the single connection, with both users long-polling
    for u, c in zip((alice, bob), clients):
        u.queue(F.sync_response(join={rooms[u.user_id]: F.joined_room(timeline=[F.message(u.user_id, "again")])}))
        resp = c.sync({}, timeout=10000)
        assert resp["rooms"][rooms[u.user_id]]["timeline"][-1]["content"]["body"] == "again"
