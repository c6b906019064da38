"""
SPEC section 4: a Rusty Beam user's config.html, users and rules, served for real —
over HTTP and over WebSocket alike.

Each server is started from a fixture in ../shared/rustybeam-fixtures/config/, copied
into a temporary directory in which the relative paths it names (hostRoot, authfile)
are laid out with test documents.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from conftest import DOCUMENTS, FIXTURES, HERE, PROJECT, Server, Watcher, rawHandshake

AUTH = FIXTURES / "auth"
LIVE_RULES = HERE / "data" / "auth" / "live-rules.html"


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def configured(tmp: Path, fixture: str, hostRoot: str, authfile: Path | None = None,
               extraPlugin: str = "") -> Path:
    """Lay out C{fixture}'s relative paths under C{tmp}; return the copied config."""
    config = (FIXTURES / "config" / fixture).read_text()
    if extraPlugin:
        config = config.replace("</td>\n            </tr>\n        </tbody>\n    </table>\n</body>",
                                extraPlugin + "</td>\n            </tr>\n        </tbody>\n    </table>\n</body>", 1)
        assert extraPlugin in config
    (tmp / "config.html").write_text(config)
    root = tmp / hostRoot
    shutil.copytree(DOCUMENTS, root, dirs_exist_ok=True)
    if authfile is not None:
        shutil.copy(authfile, root / "users.html")
    return tmp / "config.html"


def start(tmp: Path, config: Path, *args: str) -> Server:
    return Server(tmp / "unused", *args, config=config).start()


LOCAL = {"Host": "localhost"}


@pytest.fixture(scope="module")
def authorization(tmp_path_factory) -> Iterator[Server]:
    """authorization-config.html with Rusty Beam's own users.html."""
    tmp = tmp_path_factory.mktemp("authorization")
    config = configured(tmp, "authorization-config.html", "tests/plugins/hosts/authorization",
                        AUTH / "users.html")
    users = tmp / "tests/plugins/hosts/authorization"
    for who in ("johndoe", "admin"):
        (users / "users" / who).mkdir(parents=True)
        (users / "users" / who / "notes.html").write_text(f"<html><body><p id=n>{who}</p></body></html>")
    (users / "admin").mkdir()
    (users / "admin" / "panel.html").write_text("<html><body><p id=p>panel</p></body></html>")
    server = start(tmp, config)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def live(tmp_path_factory) -> Iterator[Server]:
    """websocket-config.html with bcrypt and plaintext users and selector rules,
    plus an access log; basic-auth lets anonymous requests reach the rules
    (rustybeam's C{allow_anonymous}), so public parts are public."""
    tmp = tmp_path_factory.mktemp("live")
    config = (FIXTURES / "config" / "websocket-config.html").read_text()

    def row(library: str, **properties: str) -> str:
        spans = "".join(f'<span itemprop="{k}">{v}</span>' for k, v in properties.items())
        return ('<tr><td>Plugin</td><td itemprop="plugin" itemscope '
                'itemtype="https://rustybeam.net/schema/Plugin">'
                f'<span itemprop="library">file://./plugins/{library}</span>{spans}</td></tr>\n')

    authfile = "file://./tests/plugins/hosts/websocket/users.html"
    before = (row("librusty_beam_basic_auth.so", realm="Live Docs", authfile=authfile,
                  allow_anonymous="true")
              + row("librusty_beam_authorization.so", authfile=authfile))
    after = row("librusty_beam_access_log.so", log_file="file://./access.log")
    first = config.index("<tr>\n                <td>Plugin</td>")
    last = config.rindex("</tbody>")
    config = config[:first] + before + config[first:last] + after + config[last:]
    (tmp / "config.html").write_text(config)
    root = tmp / "tests/plugins/hosts/websocket"
    shutil.copytree(DOCUMENTS, root)
    shutil.copy(LIVE_RULES, root / "users.html")
    server = start(tmp, tmp / "config.html")
    server.accessLog = tmp / "access.log"  # type: ignore[attr-defined]
    yield server
    server.stop()


# Authorization with Rusty Beam's own users.html


def test_anonymous_get_gets_a_basic_challenge_even_where_a_star_rule_allows_it(
        authorization: Server) -> None:
    r = authorization.request("GET", "/doc.html", headers=LOCAL)
    assert r.status == 401
    assert r.headers["WWW-Authenticate"] == 'Basic realm="Rusty Beam"'
    assert b"Original" not in r.body


def test_star_rule_means_any_authenticated_user(authorization: Server) -> None:
    r = authorization.request("GET", "/doc.html", headers={**LOCAL, **basic("johndoe", "doe123")})
    assert r.status == 200 and b"Original" in r.body


def test_options_needs_no_credentials(authorization: Server) -> None:
    assert authorization.request("OPTIONS", "/doc.html", headers=LOCAL).status == 200


def test_anonymous_selector_read_gets_a_basic_challenge(authorization: Server) -> None:
    assert authorization.select("GET", "/doc.html", "#content", headers=LOCAL).status == 401


def test_anonymous_put_is_refused_with_a_basic_challenge(authorization: Server) -> None:
    r = authorization.select("PUT", "/doc.html", "#content", "<div id=content>x</div>", LOCAL)
    assert r.status == 401
    assert r.headers["WWW-Authenticate"] == 'Basic realm="Rusty Beam"'
    assert b"x</div>" not in authorization.request("GET", "/doc.html", headers=LOCAL).body


def test_admin_by_username_may_write(authorization: Server) -> None:
    r = authorization.select("PUT", "/doc.html", "#content", "<div id=content>by admin</div>",
                             {**LOCAL, **basic("admin", "admin123")})
    assert r.status == 206


def test_plaintext_user_without_a_rule_is_forbidden_to_write(authorization: Server) -> None:
    r = authorization.select("PUT", "/doc.html", "#content", "<div id=content>x</div>",
                             {**LOCAL, **basic("johndoe", "doe123")})
    assert r.status == 403


def test_wrong_password_is_refused(authorization: Server) -> None:
    r = authorization.request("GET", "/doc.html", headers={**LOCAL, **basic("admin", "nope")})
    assert r.status == 401 and "WWW-Authenticate" in r.headers


def test_role_rule_admits_administrators_only(authorization: Server) -> None:
    assert authorization.request("GET", "/admin/panel.html",
                                 headers={**LOCAL, **basic("admin", "admin123")}).status == 200
    assert authorization.request("GET", "/admin/panel.html",
                                 headers={**LOCAL, **basic("johndoe", "doe123")}).status == 403
    assert authorization.request("GET", "/admin/panel.html", headers=LOCAL).status == 401


def test_username_paths_admit_only_their_owner(authorization: Server) -> None:
    john = {**LOCAL, **basic("johndoe", "doe123")}
    assert authorization.request("GET", "/users/johndoe/notes.html", headers=john).status == 200
    assert authorization.select("PUT", "/users/johndoe/notes.html", "#n", "<p id=n>mine</p>",
                                john).status == 206
    assert authorization.request("GET", "/users/admin/notes.html", headers=john).status == 403


def test_unknown_host_gets_404(authorization: Server) -> None:
    r = authorization.request("GET", "/doc.html", headers={"Host": "elsewhere.example"})
    assert r.status == 404 and "host" in r.text


# Basic auth alone, with bcrypt and plaintext users


@pytest.fixture(scope="module")
def basicOnly(tmp_path_factory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("basic")
    config = configured(tmp, "basic-auth-config.html", "tests/plugins/hosts/basic-auth",
                        AUTH / "users_mixed.html")
    server = start(tmp, config)
    yield server
    server.stop()


@pytest.mark.parametrize("user,password", [("admin", "admin123"), ("johndoe", "doe123")])
def test_bcrypt_and_plaintext_users_log_in(basicOnly: Server, user: str, password: str) -> None:
    assert basicOnly.request("GET", "/doc.html", headers={**LOCAL, **basic(user, password)}).status == 200


def test_basic_auth_alone_requires_credentials(basicOnly: Server) -> None:
    assert basicOnly.request("GET", "/doc.html", headers=LOCAL).status == 401
    assert basicOnly.request("GET", "/doc.html", headers={**LOCAL, **basic("admin", "x")}).status == 401


def test_the_users_file_is_never_a_document(basicOnly: Server) -> None:
    admin = {**LOCAL, **basic("admin", "admin123")}
    assert basicOnly.request("GET", "/users.html", headers=admin).status == 404
    assert basicOnly.request("PUT", "/users.html", "<p>pwned</p>", headers=admin).status == 404
    assert basicOnly.select("GET", "/users.html", "td", headers=admin).status == 404


def test_malformed_basic_header_is_refused(basicOnly: Server) -> None:
    r = basicOnly.request("GET", "/doc.html", headers={**LOCAL, "Authorization": "Basic !!!"})
    assert r.status == 401


# Multiple hosts


def test_requests_are_routed_by_host(tmp_path: Path) -> None:
    config = configured(tmp_path, "test-config-multi-host.html", "tests/files/localhost")
    other = tmp_path / "tests/files/example-com"
    other.mkdir(parents=True)
    (other / "doc.html").write_text("<html><body><div id=content>example.com</div></body></html>")
    server = start(tmp_path, config)
    try:
        local = server.select("GET", "/doc.html", "#content", headers={"Host": "localhost:3000"})
        remote = server.select("GET", "/doc.html", "#content", headers={"Host": "EXAMPLE.com"})
        assert local.text == '<div id="content">Original content</div>'
        assert remote.text == '<div id="content">example.com</div>'
        assert server.request("GET", "/doc.html", headers={"Host": "nowhere"}).status == 404
    finally:
        server.stop()


# Configuration errors stop start-up with a message naming file, item and property


def startupError(tmp: Path, html: str) -> str:
    (tmp / "config.html").write_text(html)
    (tmp / "root").mkdir(exist_ok=True)
    p = subprocess.run([sys.executable, "-m", "rustybeam", "--config", str(tmp / "config.html")],
                       capture_output=True, text=True, cwd=PROJECT, timeout=30)
    assert p.returncode != 0
    return p.stderr


def _config(host: str = '<span itemprop="hostName">localhost</span><span itemprop="hostRoot">root</span>',
            plugin: str = "librusty_beam_file_handler.so", port: str = "3000") -> str:
    return (
        '<html><body><div itemscope itemtype="https://rustybeam.net/schema/ServerConfig">'
        f'<span itemprop="bindPort">{port}</span></div>'
        '<div itemscope itemtype="https://rustybeam.net/schema/HostConfig">' + host +
        '<div itemprop="plugin" itemscope itemtype="https://rustybeam.net/schema/Plugin">'
        f'<span itemprop="library">file://./plugins/{plugin}</span></div></div></body></html>'
    )


@pytest.mark.parametrize("html,expected", [
    (_config(plugin="librusty_beam_teleport.so"), ["config.html", "Plugin", "library", "teleport"]),
    (_config(port="eighty"), ["config.html", "ServerConfig", "bindPort"]),
    (_config(host='<span itemprop="hostName">localhost</span>'), ["config.html", "HostConfig", "hostRoot"]),
    (_config(host='<span itemprop="hostName">localhost</span><span itemprop="hostRoot">missing</span>'),
     ["config.html", "HostConfig", "hostRoot", "not a directory"]),
    ("<html><body>no microdata</body></html>", ["config.html", "ServerConfig"]),
])
def test_config_errors_name_file_item_and_property(tmp_path: Path, html: str, expected: list[str]) -> None:
    message = startupError(tmp_path, html)
    for word in expected:
        assert word in message, (word, message)


def test_missing_authfile_is_a_startup_error(tmp_path: Path) -> None:
    config = (FIXTURES / "config" / "basic-auth-config.html").read_text()
    (tmp_path / "tests/plugins/hosts/basic-auth").mkdir(parents=True)
    message = startupError(tmp_path, config)
    assert "users.html" in message


# Selector rules over HTTP


def test_private_elements_are_hidden_from_anonymous_selector_reads(live: Server) -> None:
    assert live.select("GET", "/doc.html", ".private", headers=LOCAL).status == 401
    assert live.select("GET", "/doc.html", "#content", headers=LOCAL).status == 206
    admin = {**LOCAL, **basic("admin", "admin123")}
    assert live.select("GET", "/doc.html", ".private", headers=admin).status == 206


def test_whole_document_get_leaves_out_what_the_reader_may_not_see(live: Server) -> None:
    anonymous = live.request("GET", "/doc.html", headers=LOCAL)
    assert anonymous.status == 200 and b"Original content" in anonymous.body
    assert b"Secret" not in anonymous.body
    admin = live.request("GET", "/doc.html", headers={**LOCAL, **basic("admin", "admin123")})
    assert b"Secret" in admin.body


def test_username_selector_rule_lets_each_user_read_only_their_own_item(live: Server) -> None:
    john = {**LOCAL, **basic("johndoe", "doe123")}
    assert live.select("GET", "/people.html", "#p-john", headers=john).status == 206
    assert live.select("GET", "/people.html", "#p-test", headers=john).status == 403
    test = {**LOCAL, **basic("testuser", "test123")}
    assert live.select("GET", "/people.html", "#p-test", headers=test).status == 206
    assert live.select("GET", "/people.html", "#p-john", headers=LOCAL).status == 401


# WebSocket security


def test_unauthenticated_upgrade_on_a_protected_document_gets_401(live: Server) -> None:
    sock, head = rawHandshake(live, "/locked/", {"Host": "localhost"})
    sock.close()
    assert head.startswith(b"HTTP/1.1 401")
    assert b"WWW-Authenticate: Basic realm=\"Live Docs\"" in head


def test_authenticated_upgrade_succeeds(live: Server) -> None:
    w = Watcher(live, "/locked/", host="localhost", additional_headers={**basic("admin", "admin123")})
    assert w.subscribe()["type"] == "subscribed"
    w.close()


def test_first_request_of_a_bcrypt_user_can_be_an_upgrade(tmp_path_factory) -> None:
    tmp = tmp_path_factory.mktemp("bcrypt-upgrade")
    config = configured(tmp, "basic-auth-config.html", "tests/plugins/hosts/basic-auth",
                        AUTH / "users_bcrypt.html")
    config.write_text(config.read_text().replace(
        "librusty_beam_file_handler.so</span>",
        "librusty_beam_file_handler.so</span></div><div itemprop=\"plugin\" itemscope "
        "itemtype=\"https://rustybeam.net/schema/Plugin\"><span itemprop=\"library\">"
        "file://./plugins/librusty_beam_websocket.so</span>", 1))
    server = start(tmp, config)
    try:
        w = Watcher(server, "/doc.html", host="localhost",
                    additional_headers=basic("admin", "admin123"))
        server.select("PUT", "/doc.html", "#content", "<div id=content>z</div>",
                      {**LOCAL, **basic("johndoe", "doe123")})
        assert w.item().content == '<div id="content">z</div>'
        sock, head = rawHandshake(server, "/doc.html", {"Host": "localhost", **basic("admin", "nope")})
        sock.close()
        assert head.startswith(b"HTTP/1.1 401")
        sock, head = rawHandshake(server, "/doc.html", {"Host": "localhost", **basic("nobody", "x")})
        sock.close()
        assert head.startswith(b"HTTP/1.1 401")
    finally:
        server.stop()


def test_subscribe_needs_read_permission_on_its_selector(live: Server) -> None:
    w = Watcher(live, "/people.html", host="localhost", additional_headers={**basic("johndoe", "doe123")})
    assert w.subscribe(selector="#p-john")["type"] == "subscribed"
    refused = w.subscribe(selector="#p-test")
    assert (refused["type"], refused["error"]) == ("error", "forbidden")
    refused = w.subscribe(url="/locked/index.html")
    assert refused["error"] == "forbidden"
    w.close()


def test_streamitems_are_redacted_per_recipient(live: Server) -> None:
    anonymous = Watcher(live, "/doc.html", host="localhost")
    admin = Watcher(live, "/doc.html", host="localhost", additional_headers={**basic("admin", "admin123")})
    body = '<div id="box"><p>public</p><p class="private">secret</p></div>'
    r = live.select("PUT", "/doc.html", "#content", body, {**LOCAL, **basic("admin", "admin123")})
    assert r.status == 206
    whole = admin.item()
    seen = anonymous.item()
    assert "secret" in whole.content
    assert "public" in seen.content and "secret" not in seen.content
    live.select("DELETE", "/doc.html", ".private", headers={**LOCAL, **basic("admin", "admin123")})
    assert admin.item().method == "DELETE"
    anonymous.nothing()
    anonymous.close()
    admin.close()


def test_access_log_records_upgrades_with_101_and_the_user(live: Server) -> None:
    w = Watcher(live, "/doc.html", host="localhost", additional_headers={**basic("johndoe", "doe123")})
    w.subscribe()
    w.close()
    live.request("GET", "/doc.html?x=%0aforged", headers=LOCAL)
    lines = live.accessLog.read_text().splitlines()  # type: ignore[attr-defined]
    assert any(" johndoe " in line and '"GET /doc.html HTTP/1.1" 101' in line for line in lines), lines
    assert not any(line.startswith("forged") for line in lines)
    assert all(line.startswith("127.0.0.1 ") for line in lines)


def test_host_without_file_handler_refuses_whole_file_requests(tmp_path: Path) -> None:
    config = (FIXTURES / "config" / "websocket-config.html").read_text()
    row = config.index("<tr>\n                <td>Plugin</td>\n                <td itemprop=\"plugin\" itemscope itemtype=\"https://rustybeam.net/schema/Plugin\">\n                    <span itemprop=\"library\">file://./plugins/librusty_beam_file_handler.so")
    end = config.index("</tr>", row) + len("</tr>")
    (tmp_path / "config.html").write_text(config[:row] + config[end:])
    shutil.copytree(DOCUMENTS, tmp_path / "tests/plugins/hosts/websocket")
    server = start(tmp_path, tmp_path / "config.html")
    try:
        assert server.select("GET", "/doc.html", "#content", headers=LOCAL).status == 206
        for method in ("GET", "PUT", "DELETE"):
            assert server.request(method, "/doc.html", "<p>x</p>" if method == "PUT" else None,
                                  headers=LOCAL).status == 404
        assert (tmp_path / "tests/plugins/hosts/websocket/doc.html").read_text().count("Original") == 1
    finally:
        server.stop()


def test_host_without_selector_handler_refuses_selector_writes(tmp_path: Path) -> None:
    config = (FIXTURES / "config" / "websocket-config.html").read_text()
    config = config.replace("librusty_beam_selector_handler.so", "librusty_beam_websocket.so")
    (tmp_path / "config.html").write_text(config)
    shutil.copytree(DOCUMENTS, tmp_path / "tests/plugins/hosts/websocket")
    server = start(tmp_path, tmp_path / "config.html")
    try:
        r = server.select("PUT", "/doc.html", "#content", "<div id=content>x</div>", LOCAL)
        assert r.status == 416
        assert server.select("GET", "/doc.html", "#content", headers=LOCAL).status == 200
    finally:
        server.stop()


def test_whole_document_writes_honour_selector_rules(live: Server) -> None:
    john = {**LOCAL, **basic("johndoe", "doe123")}
    assert live.select("PUT", "/people.html", "#p-john", '<li data-owner="johndoe" id="p-john">new</li>',
                       john).status == 206
    assert live.select("PUT", "/people.html", "#p-test", "<li id=p-test>mine now</li>", john).status == 403
    assert live.request("PUT", "/people.html", "<ul></ul>", headers=john).status == 403
    assert live.request("DELETE", "/people.html", headers=john).status == 403
    assert "Test's notes" in live.request("GET", "/people.html", headers={
        **LOCAL, **basic("admin", "admin123")}).text


# basic-auth fails closed, as Rusty Beam's does; anonymous access is an explicit opt-in


def test_realm_defaults_to_rusty_beams(tmp_path: Path) -> None:
    config = configured(tmp_path, "basic-auth-config.html", "tests/plugins/hosts/basic-auth",
                        AUTH / "users_mixed.html")
    config.write_text(config.read_text().replace('<span itemprop="realm">Rusty Beam</span>', ""))
    server = start(tmp_path, config)
    try:
        r = server.request("GET", "/doc.html", headers=LOCAL)
        assert r.status == 401
        assert r.headers["WWW-Authenticate"] == 'Basic realm="Restricted Area"'
    finally:
        server.stop()


def test_websocket_upgrade_without_credentials_gets_401_where_a_star_rule_allows_get(
        tmp_path: Path) -> None:
    config = configured(tmp_path, "authorization-config.html", "tests/plugins/hosts/authorization",
                        AUTH / "users.html")
    config.write_text(config.read_text().replace(
        "librusty_beam_file_handler.so</span>",
        "librusty_beam_file_handler.so</span></td></tr><tr><td>Plugin</td><td itemprop=\"plugin\" "
        "itemscope itemtype=\"https://rustybeam.net/schema/Plugin\"><span itemprop=\"library\">"
        "file://./plugins/librusty_beam_websocket.so</span>", 1))
    assert "websocket.so" in config.read_text()
    server = start(tmp_path, config)
    try:
        sock, head = rawHandshake(server, "/doc.html", {"Host": "localhost"})
        sock.close()
        assert head.startswith(b"HTTP/1.1 401") and b"WWW-Authenticate" in head
        sock, head = rawHandshake(server, "/doc.html", {"Host": "localhost", **basic("johndoe", "doe123")})
        sock.close()
        assert head.startswith(b"HTTP/1.1 101")
    finally:
        server.stop()


def test_allow_anonymous_lets_the_rules_decide_for_anonymous_requests(live: Server) -> None:
    assert live.request("GET", "/doc.html", headers=LOCAL).status == 200
    r = live.select("PUT", "/doc.html", "#content", "<div id=content>anon</div>", LOCAL)
    assert r.status == 401 and "WWW-Authenticate" in r.headers
    assert b"anon</div>" not in live.request("GET", "/doc.html", headers=LOCAL).body


def test_allow_anonymous_must_be_true_or_false(tmp_path: Path) -> None:
    config = (FIXTURES / "config" / "basic-auth-config.html").read_text().replace(
        '<span itemprop="realm">Rusty Beam</span>',
        '<span itemprop="realm">Rusty Beam</span><span itemprop="allow_anonymous">maybe</span>')
    root = tmp_path / "tests/plugins/hosts/basic-auth"
    root.mkdir(parents=True)
    shutil.copy(AUTH / "users_mixed.html", root / "users.html")
    message = startupError(tmp_path, config)
    assert "allow_anonymous" in message and "maybe" in message


def allowed(r) -> set[str]:
    return set(r.headers["Allow"].replace(" ", "").split(","))


def test_options_lists_the_methods_this_user_may_use(authorization: Server) -> None:
    admin = authorization.request("OPTIONS", "/doc.html", headers={**LOCAL, **basic("admin", "admin123")})
    assert allowed(admin) == {"GET", "HEAD", "PUT", "POST", "DELETE", "OPTIONS"}
    john = authorization.request("OPTIONS", "/doc.html", headers={**LOCAL, **basic("johndoe", "doe123")})
    assert allowed(john) == {"GET", "HEAD", "OPTIONS"}
    assert john.headers["Accept-Ranges"] == "selector"


def test_options_with_a_selector_lists_the_methods_allowed_on_it(live: Server) -> None:
    john = {**LOCAL, **basic("johndoe", "doe123")}
    own = live.select("OPTIONS", "/people.html", "#p-john", headers=john)
    other = live.select("OPTIONS", "/people.html", "#p-test", headers=john)
    assert {"GET", "PUT", "DELETE"} <= allowed(own)
    assert "GET" not in allowed(other) and "OPTIONS" in allowed(other)
