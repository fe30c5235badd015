"""The files in deploy/: the systemd unit (systemd-analyze verify when available), the example
environment file (every variable, and `syncv3 check` accepts it), the nginx examples (nginx -t,
and the same-host one routing real requests between syncv3 and the homeserver) and the
well-known answers."""

import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.request

import pytest

import fakehs as F
from helpers import REPO, SS_PATH, binary_path, http_request, port_open
from pgtmp import free_port
from test_cli import run

DEPLOY = REPO / "deploy"


def unit_keys(text):
    """{section: {key: [values]}} of a systemd unit file."""
    out, sec = {}, None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        m = re.match(r"^\[(\w+)\]$", line)
        if m:
            sec = out.setdefault(m.group(1), {})
            continue
        k, _, v = line.partition("=")
        sec.setdefault(k.strip(), []).append(v.strip())
    return out


def test_unit_has_the_hardening_and_the_check():
    u = unit_keys((DEPLOY / "syncv3.service").read_text())
    s = u["Service"]
    want = {
        "DynamicUser": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
        "NoNewPrivileges": "yes", "CapabilityBoundingSet": "", "MemoryDenyWriteExecute": "yes",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6", "EnvironmentFile": "/etc/syncv3/env",
        "Restart": "on-failure", "ExecStartPre": "/usr/local/bin/syncv3 check",
        "ExecStart": "/usr/local/bin/syncv3",
    }
    for k, v in want.items():
        assert v in s.get(k, []), "%s=%s missing from the unit (has %r)" % (k, v, s.get(k))
    assert "@system-service" in s["SystemCallFilter"]
    assert u["Install"]["WantedBy"] == ["multi-user.target"]


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
def test_unit_passes_systemd_analyze_verify(tmp_path):
    # verify wants the executables to exist: point them at the binary under test.
    text = (DEPLOY / "syncv3.service").read_text().replace("/usr/local/bin/syncv3", str(binary_path()))
    unit = tmp_path / "syncv3.service"
    unit.write_text(text)
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    # Unknown keys and bad values are only warnings: there must be none.
    problems = [l for l in r.stderr.splitlines() if "syncv3.service" in l]
    assert not problems, "\n".join(problems)


def env_file():
    vals = {}
    for line in (DEPLOY / "syncv3.env.example").read_text().splitlines():
        m = re.match(r"^(SYNCV3_[A-Z0-9_]+)=(.*)$", line)
        if m:
            vals[m.group(1)] = m.group(2)
    return vals


def test_env_example_names_every_variable():
    text = (DEPLOY / "syncv3.env.example").read_text()
    helptext = run(["--help"]).stdout
    names = sorted(set(re.findall(r"\bSYNCV3_[A-Z0-9_]+\b", helptext)))
    assert len(names) >= 15, names
    for n in names:
        assert re.search(r"^#?%s=" % n, text, re.M), "%s is not in deploy/syncv3.env.example" % n


def test_env_example_passes_check(hs, db):
    env = env_file()
    assert {"SYNCV3_SERVER", "SYNCV3_DB", "SYNCV3_SECRET"} <= set(env)
    env.update({"SYNCV3_SERVER": hs.url, "SYNCV3_DB": db})
    r = run(["check"], env)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "listening on 127.0.0.1:8009" in r.stdout and "metrics on 127.0.0.1:2112" in r.stdout, r.stdout


@pytest.mark.parametrize("name,proxy_url", [("well-known-client.json", "https://matrix.example.org"),
                                            ("well-known-client-separate-host.json",
                                             "https://syncv3.example.org")])
def test_well_known_answers(name, proxy_url):
    d = json.loads((DEPLOY / name).read_text())
    assert d["m.homeserver"]["base_url"] == "https://matrix.example.org"
    assert d["org.matrix.msc3575.proxy"]["url"] == proxy_url


# ---------------------------------------------------------------- nginx

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
needs_nginx = pytest.mark.skipif(not NGINX, reason="nginx not installed (apt-get install nginx)")


def nginx_conf(tmp_path, site, listen_port=None):
    """A runnable nginx.conf in tmp_path around one deploy/ site file: certificates replaced by a
    fresh self-signed one, the well-known file by deploy/'s, optionally plain HTTP on a port."""
    crt, key = tmp_path / "t.crt", tmp_path / "t.key"
    if not crt.exists():
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=test", "-keyout", str(key), "-out", str(crt)],
                       check=True, capture_output=True, timeout=60)
    text = site
    text = re.sub(r"ssl_certificate\s+\S+;", "ssl_certificate %s;" % crt, text)
    text = re.sub(r"ssl_certificate_key\s+\S+;", "ssl_certificate_key %s;" % key, text)
    wk = tmp_path / "well-known-client.json"
    shutil.copy(DEPLOY / "well-known-client.json", wk)
    text = text.replace("/etc/nginx/syncv3/well-known-client.json", str(wk))
    if listen_port:
        text = re.sub(r"listen 443 ssl http2;", "listen 127.0.0.1:%d;" % listen_port, text)
        text = re.sub(r"\s*listen \[::\]:443 ssl http2;", "", text)
        text = re.sub(r"\s*ssl_certificate(_key)?\s+\S+;", "", text)
    (tmp_path / "site.conf").write_text(text)
    user = "user root root;\n" if os.geteuid() == 0 else ""
    main = tmp_path / "nginx.conf"
    main.write_text(
        user + "pid %(d)s/nginx.pid;\nerror_log %(d)s/error.log;\nevents {}\nhttp {\n"
        "  access_log %(d)s/access.log;\n  client_body_temp_path %(d)s/cb;\n  proxy_temp_path %(d)s/px;\n"
        "  fastcgi_temp_path %(d)s/fc;\n  uwsgi_temp_path %(d)s/uw;\n  scgi_temp_path %(d)s/sc;\n"
        "  include %(d)s/site.conf;\n}\n" % {"d": tmp_path})
    return main


def nginx_test(main, tmp_path):
    return subprocess.run([NGINX, "-t", "-p", str(tmp_path), "-c", str(main)], capture_output=True, text=True,
                          timeout=60)


@needs_nginx
@pytest.mark.parametrize("name", ["nginx-same-host.conf", "nginx-separate-host.conf"])
def test_nginx_configs_pass_nginx_t(name, tmp_path):
    site = (DEPLOY / name).read_text()
    r = nginx_test(nginx_conf(tmp_path, site), tmp_path)
    assert r.returncode == 0, r.stderr
    if name == "nginx-same-host.conf":
        # syncv3 serves MSC4186 and /versions: the same-host file routes both to it.
        for loc in (r"location ~ \^/_matrix/client/unstable/org\\\.matrix\\\.simplified_msc3575/sync\$ \{",
                    r"location = /_matrix/client/versions \{"):
            assert re.search(r"^\s*" + loc, site, re.M), "%s must be routed to syncv3" % loc


@needs_nginx
def test_nginx_same_host_routes_sync_to_syncv3_and_the_rest_to_the_homeserver(proxy, hs, alice, tmp_path):
    site = (DEPLOY / "nginx-same-host.conf").read_text()
    site = site.replace("server 127.0.0.1:8009;", "server 127.0.0.1:%d;" % proxy.port)
    site = site.replace("server 127.0.0.1:8008;", "server 127.0.0.1:%d;" % hs.port)
    port = free_port()
    main = nginx_conf(tmp_path, site, listen_port=port)
    proc = subprocess.Popen([NGINX, "-p", str(tmp_path), "-c", str(main), "-g", "daemon off;"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while not port_open("127.0.0.1", port):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read().decode()
            time.sleep(0.05)
        base = "http://127.0.0.1:%d" % port
        host = {"Host": "matrix.example.org"}
        alice.queue(F.sync_response())
        r = http_request(base + SS_PATH + "?timeout=100", "POST", {}, dict(host, Authorization="Bearer " + alice.token))
        assert r.status == 200 and "pos" in r.json, r
        r = http_request(base + "/client/server.json", headers=host)
        assert r.status == 200 and r.json["server"] == hs.url, r
        r = http_request(base + "/_matrix/client/versions", headers=host)
        assert r.status == 200 and "v1.6" in r.json["versions"], r
        # The case-sensitive match: another case is the homeserver's business.
        before = len(hs.requests)
        http_request(base + SS_PATH.replace("msc3575", "MSC3575"), "POST", {}, host)
        assert len(hs.requests) == before + 1, "an upper-case path must not reach syncv3"
        r = http_request(base + "/.well-known/matrix/client", headers={"Host": "example.org"})
        assert r.status == 200 and r.headers["Access-Control-Allow-Origin"] == "*", r
        assert r.json["org.matrix.msc3575.proxy"]["url"] == "https://matrix.example.org"
    finally:
        proc.send_signal(signal.SIGQUIT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def separate_host_msc4186_block():
    """The commented MSC4186 locations at the end of the separate-host file, uncommented."""
    text = (DEPLOY / "nginx-separate-host.conf").read_text()
    tail = text[text.index("# Element X"):]
    return "\n".join(l[1:] for l in tail.splitlines() if l.startswith("#    ")) + "\n"


def location_blocks(text, *starts):
    """The location blocks of text that begin with one of starts, whitespace-normalised."""
    out = []
    for m in re.finditer(r"^\s*(location [^{]*\{.*?^\s*\})", text, re.M | re.S):
        block = re.sub(r"\s*#[^\n]*", "", m.group(1))
        if block.startswith(starts):
            out.append(" ".join(block.split()))
    return out


def test_separate_host_msc4186_block_matches_the_same_host_routes():
    starts = ("location ~ ^/_matrix/client/unstable/org\\.matrix\\.simplified_msc3575/sync$",
              "location = /_matrix/client/versions")
    block = location_blocks(separate_host_msc4186_block(), *starts)
    assert len(block) == 2, block
    assert block == location_blocks((DEPLOY / "nginx-same-host.conf").read_text(), *starts)


@needs_nginx
def test_separate_host_msc4186_block_passes_nginx_t(tmp_path):
    site = (DEPLOY / "nginx-separate-host.conf").read_text()
    # the homeserver's own server block with the block added, as the comment says
    site += ("\nserver {\n    listen 443 ssl http2;\n    server_name matrix.example.org;\n"
             "    ssl_certificate /x;\n    ssl_certificate_key /x;\n" + separate_host_msc4186_block() +
             "    location / { proxy_pass http://127.0.0.1:8008; }\n}\n")
    r = nginx_test(nginx_conf(tmp_path, site), tmp_path)
    assert r.returncode == 0, r.stderr
