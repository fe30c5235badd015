"""The web client's files at /client/: compiled into the binary (the proxy runs in an empty
directory), content types, ETag/Cache-Control, 304, HEAD, the /client redirect, JSON 404s for
anything else, and the API's CORS and errors left as they were."""

import hashlib
import http.client
import json
import urllib.parse

import pytest

from helpers import REPO, SS_PATH

WEB = REPO / "web" / "client"
FILES = sorted(p.name for p in WEB.iterdir() if p.is_file())
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
CORS_ORIGIN = "*"


def raw(proxy, method, path, headers=None):
    """One request without following redirects: (status, headers dict lower-cased, body)."""
    u = urllib.parse.urlsplit(proxy.url)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        c.request(method, path, headers=headers or {})
        r = c.getresponse()
        body = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, body
    finally:
        c.close()


def etag_of(name):
    return '"%s"' % hashlib.sha256((WEB / name).read_bytes()).hexdigest()[:32]


def test_the_client_has_its_files():
    assert {"index.html", "app.js", "style.css", "msc3575.js", "listmodel.js", "icon.svg"} <= set(FILES)


@pytest.mark.parametrize("name", FILES)
def test_every_file_is_served_from_the_binary(proxy, name):
    assert not (proxy.workdir / "web").exists()  # nothing on disk beside the binary
    status, h, body = raw(proxy, "GET", "/client/" + name)
    assert status == 200, body
    assert body == (WEB / name).read_bytes()
    assert h["content-type"] == TYPES[(WEB / name).suffix]
    assert h["etag"] == etag_of(name)
    assert h["cache-control"] == "no-cache"
    assert h["x-content-type-options"] == "nosniff"
    assert h["access-control-allow-origin"] == CORS_ORIGIN
    assert int(h["content-length"]) == len(body)


def test_index_is_the_folder_and_has_a_csp(proxy):
    status, h, body = raw(proxy, "GET", "/client/")
    assert status == 200
    assert body == (WEB / "index.html").read_bytes()
    assert h["etag"] == etag_of("index.html")
    csp = h["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp and "unsafe-inline" not in csp
    assert "content-security-policy" not in raw(proxy, "GET", "/client/app.js")[1]


def test_if_none_match_is_304_without_body(proxy):
    tag = etag_of("app.js")
    status, h, body = raw(proxy, "GET", "/client/app.js", {"If-None-Match": tag})
    assert (status, body) == (304, b"")
    assert h["etag"] == tag and h["cache-control"] == "no-cache"
    status, _, _ = raw(proxy, "GET", "/client/app.js", {"If-None-Match": 'W/"other", W/' + tag})
    assert status == 304
    status, _, body = raw(proxy, "GET", "/client/app.js", {"If-None-Match": '"stale"'})
    assert status == 200 and body == (WEB / "app.js").read_bytes()


def test_head_is_get_without_body(proxy):
    status, h, body = raw(proxy, "HEAD", "/client/style.css")
    assert (status, body) == (200, b"")
    assert int(h["content-length"]) == (WEB / "style.css").stat().st_size
    assert h["content-type"] == "text/css; charset=utf-8"
    assert h["etag"] == etag_of("style.css")


def test_client_without_slash_redirects(proxy):
    for method in ("GET", "HEAD"):
        status, h, _ = raw(proxy, method, "/client")
        assert status in (301, 308)
        assert h["location"] == "/client/"


@pytest.mark.parametrize("path", [
    "/client/nope.js", "/client/../README.md", "/client/%2e%2e/VERSION", "/client/..%2fVERSION",
    "/client/./app.js", "/client//app.js", "/client/sub/", "/client/app.js/", "/client/APP.JS",
    "/client/..", "/client/.", "/clientx", "/clients/app.js", "/app.js", "/index.html", "/",
])
def test_anything_else_is_a_json_404(proxy, path):
    status, h, body = raw(proxy, "GET", path)
    assert status == 404, (path, body)
    assert h["content-type"] == "application/json"
    assert json.loads(body)["errcode"] == "M_UNRECOGNIZED"
    assert h["access-control-allow-origin"] == CORS_ORIGIN


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_files_only_get_and_head(proxy, method):
    status, h, body = raw(proxy, method, "/client/index.html")
    assert (status, body) == (405, b"")
    assert h["allow"] == "GET, OPTIONS"


def test_server_json_is_still_a_route(proxy, hs):
    status, h, body = raw(proxy, "GET", "/client/server.json")
    assert status == 200
    assert json.loads(body)["server"] == hs.url
    assert h["content-type"].startswith("application/json")


def test_api_cors_and_errors_unchanged(proxy):
    status, h, body = raw(proxy, "POST", SS_PATH)
    assert status == 401
    assert json.loads(body)["errcode"] == "M_MISSING_TOKEN"
    assert h["access-control-allow-origin"] == CORS_ORIGIN
    assert "etag" not in h and "cache-control" not in h and "content-security-policy" not in h
    status, h, body = raw(proxy, "OPTIONS", "/client/app.js",
                          {"Origin": "https://x.example", "Access-Control-Request-Method": "GET"})
    assert (status, body) == (200, b"")
    assert h["access-control-allow-methods"] == "GET, POST, PUT, DELETE, OPTIONS"
