"""
Cross-site request protection (issue 12, section 1): on a host with authentication, a
page from another origin may not open a WebSocket or write with the credentials a
browser has cached for us; non-browser clients (no Origin, no Referer), trusted
origins and hosts without authentication are unaffected.
"""

from __future__ import annotations

import base64
import shutil
from pathlib import Path
from typing import Iterator

import pytest

from conftest import DOCUMENTS, FIXTURES, HERE, Docs, Server, rawHandshake
from rustybeam.origins import sameOrigin

RULES = HERE / "data" / "auth" / "live-rules.html"
TRUSTED = "https://trusted.example"


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def protectedHost(tmp: Path, *args: str, cors: dict[str, str] | None = None) -> Server:
    """websocket-config.html behind basic-auth and authorization (admin may do anything),
    optionally with a C{cors} plugin with these properties."""
    config = (FIXTURES / "config" / "websocket-config.html").read_text()
    authfile = "file://./root/users.html"
    rows = "".join(
        '<tr><td>Plugin</td><td itemprop="plugin" itemscope itemtype="https://rustybeam.net/schema/Plugin">'
        f'<span itemprop="library">file://./plugins/{library}</span>'
        f'<span itemprop="authfile">{authfile}</span></td></tr>\n'
        for library in ("librusty_beam_basic_auth.so", "librusty_beam_authorization.so")
    )
    if cors is not None:
        rows = ('<tr><td>Plugin</td><td itemprop="plugin" itemscope itemtype="https://rustybeam.net/schema/Plugin">'
                '<span itemprop="library">file://./plugins/cors.so</span>'
                + "".join(f'<span itemprop="{k}">{v}</span>' for k, v in cors.items())
                + '</td></tr>\n' + rows)
    first = config.index("<tr>\n                <td>Plugin</td>")
    config = config[:first] + rows + config[first:]
    config = config.replace("tests/plugins/hosts/websocket", "root")
    (tmp / "config.html").write_text(config)
    shutil.copytree(DOCUMENTS, tmp / "root")
    shutil.copy(RULES, tmp / "root" / "users.html")
    return Server(tmp / "unused", *args, config=tmp / "config.html").start()


@pytest.fixture(scope="module")
def protected(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A host with authentication and the default origin settings."""
    server = protectedHost(tmp_path_factory.mktemp("cross-site"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def trusting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The same, with C{--allow-origin TRUSTED}."""
    server = protectedHost(tmp_path_factory.mktemp("trusting"), "--allow-origin", TRUSTED)
    yield server
    server.stop()


def own(server: Server) -> dict[str, str]:
    return {"Host": f"localhost:{server.port}", **basic("admin", "admin123")}


def handshakeStatus(server: Server, origin: str | None = None) -> bytes:
    """The status code of a credentialed handshake for /doc.html from C{origin}."""
    headers = own(server) if origin is None else {**own(server), "Origin": origin}
    sock, head = rawHandshake(server, "/doc.html", headers)
    sock.close()
    return head.split(b" ", 2)[1]


def content(server: Server) -> str:
    return server.select("GET", "/doc.html", "#content", headers=own(server)).text


def test_websocket_from_a_foreign_page_is_refused(protected: Server) -> None:
    assert handshakeStatus(protected, "http://evil.example") == b"403"


def test_websocket_from_our_own_pages_is_accepted(protected: Server) -> None:
    assert handshakeStatus(protected, f"http://localhost:{protected.port}") == b"101"


def test_websocket_without_origin_is_accepted(protected: Server) -> None:
    assert handshakeStatus(protected) == b"101"


def test_websocket_from_a_trusted_origin_is_accepted(trusting: Server) -> None:
    assert handshakeStatus(trusting, TRUSTED) == b"101"


@pytest.mark.parametrize("method", ["PUT", "POST", "DELETE"])
def test_writes_from_a_foreign_page_are_refused_and_change_nothing(protected: Server, method: str) -> None:
    before = content(protected)
    r = protected.select(method, "/doc.html", "#content", "<p>forged</p>",
                         {**own(protected), "Origin": "http://evil.example"})
    assert r.status == 403 and "another site" in r.text
    assert content(protected) == before


def test_whole_file_writes_from_a_foreign_page_are_refused(protected: Server) -> None:
    r = protected.request("PUT", "/forged.html", "<p>forged</p>",
                          {**own(protected), "Origin": "http://evil.example"})
    assert r.status == 403
    assert protected.request("GET", "/forged.html", headers=own(protected)).status == 404


def test_a_foreign_referer_counts_when_there_is_no_origin(protected: Server) -> None:
    before = content(protected)
    r = protected.select("PUT", "/doc.html", "#content", "<div id=content>forged</div>",
                         {**own(protected), "Referer": "http://evil.example/attack.html"})
    assert r.status == 403
    assert content(protected) == before


def test_an_opaque_origin_is_foreign(protected: Server) -> None:
    r = protected.select("PUT", "/doc.html", "#content", "<div id=content>forged</div>",
                         {**own(protected), "Origin": "null"})
    assert r.status == 403


def test_our_host_on_another_port_is_foreign(protected: Server) -> None:
    r = protected.select("PUT", "/doc.html", "#content", "<div id=content>forged</div>",
                         {**own(protected), "Origin": f"http://localhost:{protected.port + 1}"})
    assert r.status == 403


def test_writes_from_our_own_pages_and_trusted_origins_are_accepted(trusting: Server) -> None:
    for origin in (f"http://localhost:{trusting.port}", TRUSTED):
        r = trusting.select("PUT", "/doc.html", "#content", f"<div id=content>{origin}</div>",
                            {**own(trusting), "Origin": origin})
        assert r.status == 206, (origin, r.text)
        assert origin in content(trusting)


def test_websocket_from_our_own_pages_is_accepted_despite_an_allow_list(trusting: Server) -> None:
    assert handshakeStatus(trusting, f"http://localhost:{trusting.port}") == b"101"


def test_reads_from_foreign_pages_are_served(protected: Server) -> None:
    r = protected.request("GET", "/doc.html", headers={**own(protected), "Origin": "http://evil.example"})
    assert r.status == 200


def test_hosts_without_authentication_accept_foreign_writes(docs: Docs) -> None:
    docs.write("open.html", "<html><body><div id=content>a</div></body></html>")
    r = docs.server.select("PUT", docs.url("open.html"), "#content", "<div id=content>b</div>",
                           {"Origin": "http://elsewhere.example"})
    assert r.status == 206


@pytest.mark.parametrize("origin,host,same", [
    ("http://localhost:3000", b"localhost:3000", True),
    ("http://LOCALHOST:3000", b"localhost:3000", True),
    ("http://example.com", b"example.com", True),
    ("http://example.com:80", b"example.com", True),
    ("https://example.com", b"example.com", True),
    ("https://example.com", b"example.com:443", True),
    ("http://example.com:8080", b"example.com", False),
    ("http://example.com", b"example.com:8080", False),
    ("http://evil.example", b"example.com", False),
    ("http://example.com.evil.example", b"example.com", False),
    ("null", b"example.com", False),
    ("file://", b"example.com", False),
    ("http://example.com", None, False),
])
def test_same_origin_compares_host_and_port(origin: str, host: bytes | None, same: bool) -> None:
    assert sameOrigin(origin, host) is same


@pytest.mark.parametrize("cors,origin,status", [
    ({"allowed_origins": "https://app.example"}, "https://app.example", 206),
    ({"allowed_origins": "https://app.example"}, "https://other.example", 403),
    ({}, "https://app.example", 403),
    ({"allowed_origins": "*"}, "https://app.example", 403),
    ({"allowed_origins": "*", "allow_credentials": "true"}, "https://app.example", 206),
])
def test_origins_the_cors_plugin_trusts_with_credentials_may_write(
        tmp_path: Path, cors: dict[str, str], origin: str, status: int) -> None:
    server = protectedHost(tmp_path, cors=cors)
    try:
        r = server.select("PUT", "/doc.html", "#content", "<div id=content>cors</div>",
                          {**own(server), "Origin": origin})
        assert r.status == status, r.text
    finally:
        server.stop()
