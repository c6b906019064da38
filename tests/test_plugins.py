"""
Rusty Beam's pipeline plugins (cors, security-headers, health-check, redirect,
error-handler, compression, rate-limit, directory, html-prettifier, config-reload),
each on a real server started from a Rusty Beam-style config.html that names it.
"""

from __future__ import annotations

import gzip
import json
import signal
import time
from pathlib import Path
from typing import Iterator

import pytest

from conftest import Server

PAGE = "<!DOCTYPE html><html><head><title>t</title></head><body><ul id=\"list\"><li>one</li></ul></body></html>"


def plugin(name: str, **properties: str) -> str:
    """One C{Plugin} item for the pipeline, with its properties as C{meta} tags."""
    metas = "".join(f'<meta itemprop="{k}" content="{v}">' for k, v in properties.items())
    return (f'<li itemprop="plugin" itemscope itemtype="http://rustybeam.net/Plugin">'
            f'<span itemprop="library">file://./plugins/librusty_beam_{name.replace("-", "_")}.so</span>'
            f'{metas}</li>')


HANDLERS = (plugin("selector-handler"), plugin("file-handler"))


def writeConfig(base: Path, *plugins: str, server: str = "", inRoot: bool = False) -> Path:
    """A config.html serving C{base/root} as host 127.0.0.1 through C{plugins} (the
    file itself in the root with C{inRoot}, as Rusty Beam's config-reload expects)."""
    root = base / "root"
    root.mkdir(exist_ok=True)
    (root / "index.html").write_text(PAGE)
    config = (root if inRoot else base) / "config.html"
    hostRoot = "." if inRoot else "./root"
    config.write_text(
        '<!DOCTYPE html><html><body>'
        '<table itemscope itemtype="http://rustybeam.net/ServerConfig">'
        '<tr><td itemprop="bindAddress">127.0.0.1</td></tr><tr><td itemprop="bindPort">0</td></tr>'
        f'{server}</table>'
        '<table itemscope itemtype="http://rustybeam.net/HostConfig">'
        '<tr><td itemprop="hostName">127.0.0.1</td></tr>'
        f'<tr><td itemprop="hostRoot">{hostRoot}</td></tr>'
        f'<tr><td><ol>{"".join(plugins)}</ol></td></tr></table></body></html>'
    )
    return config


@pytest.fixture
def serve(tmp_path: Path) -> Iterator:
    """Start a server from a config naming the given plugins; stopped after the test."""
    started: list[Server] = []

    def start(*plugins: str, args: tuple[str, ...] = (), server: str = "",
              inRoot: bool = False) -> Server:
        config = writeConfig(tmp_path, *plugins, server=server, inRoot=inRoot)
        s = Server(tmp_path / "root", *args, config=config).start()
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


# cors

def test_cors_preflight_answers_204_with_allowed_methods_and_headers(serve) -> None:
    s = serve(plugin("cors", allowed_origins="https://app.example", max_age="600"), *HANDLERS)
    r = s.request("OPTIONS", "/index.html", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "PUT"})
    assert r.status == 204
    assert r.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert r.headers["Access-Control-Allow-Methods"] == "GET, POST, PUT, DELETE, OPTIONS"
    assert r.headers["Access-Control-Allow-Headers"] == "Content-Type, Authorization, X-Requested-With"
    assert r.headers["Access-Control-Max-Age"] == "600"


def test_cors_allowed_origin_gets_allow_origin_on_responses(serve) -> None:
    s = serve(plugin("cors", allowed_origins="https://app.example", exposed_headers="ETag"), *HANDLERS)
    r = s.request("GET", "/index.html", headers={"Origin": "https://app.example"})
    assert r.status == 200
    assert r.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert r.headers["Access-Control-Expose-Headers"] == "ETag"


def test_cors_other_origin_gets_no_allow_origin(serve) -> None:
    s = serve(plugin("cors", allowed_origins="https://app.example"), *HANDLERS)
    r = s.request("GET", "/index.html", headers={"Origin": "https://evil.example"})
    assert r.status == 200 and "Access-Control-Allow-Origin" not in r.headers


def test_cors_default_allows_any_origin_with_star(serve) -> None:
    s = serve(plugin("cors"), *HANDLERS)
    r = s.request("GET", "/index.html", headers={"Origin": "https://any.example"})
    assert r.headers["Access-Control-Allow-Origin"] == "*"


def test_cors_credentials_echo_the_origin_instead_of_star(serve) -> None:
    s = serve(plugin("cors", allow_credentials="true"), *HANDLERS)
    r = s.request("GET", "/index.html", headers={"Origin": "https://any.example"})
    assert r.headers["Access-Control-Allow-Origin"] == "https://any.example"
    assert r.headers["Access-Control-Allow-Credentials"] == "true"


def test_cors_allowed_origins_lists_the_property() -> None:
    from rustybeam.config import PluginConfig
    from rustybeam.plugins.cors import allowedOrigins

    configured = PluginConfig("cors", "cors.so", {"allowed_origins": "https://a.example, https://b.example"})
    assert allowedOrigins(configured) == ("https://a.example", "https://b.example")
    assert allowedOrigins(PluginConfig("cors", "cors.so", {})) == ("*",)


# security-headers

def test_security_headers_defaults(serve) -> None:
    s = serve(*HANDLERS, plugin("security-headers"))
    r = s.request("GET", "/index.html")
    assert r.status == 200
    assert r.headers["Content-Security-Policy"].startswith("default-src 'self'")
    assert r.headers["X-Frame-Options"] == "SAMEORIGIN"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
    assert r.headers["X-XSS-Protection"] == "1; mode=block"
    assert r.headers["Server"] == "rusty-beam"
    assert "Strict-Transport-Security" not in r.headers


def test_security_headers_hsts_only_over_https(serve) -> None:
    s = serve(*HANDLERS, plugin("security-headers", hsts_preload="true", frame_options="DENY"))
    r = s.request("GET", "/index.html", headers={"X-Forwarded-Proto": "https"})
    assert r.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
    assert r.headers["X-Frame-Options"] == "DENY"


def test_security_headers_on_error_responses(serve) -> None:
    s = serve(*HANDLERS, plugin("security-headers"))
    r = s.request("GET", "/missing.html")
    assert r.status == 404 and r.headers["X-Content-Type-Options"] == "nosniff"


def test_pipeline_still_serves_the_browser_client_file(serve) -> None:
    s = serve(plugin("cors"), *HANDLERS, plugin("security-headers"))
    r = s.request("GET", "/_rustybeam/rustybeam.js")
    assert r.status == 200 and len(r.body) == int(r.headers["Content-Length"]) > 1000
    assert r.headers["X-Content-Type-Options"] == "nosniff"


# health-check and /_rustybeam/health

def test_health_check_endpoints_answer_json(serve) -> None:
    s = serve(plugin("health-check"), *HANDLERS)
    for path in ("/health", "/ready", "/live"):
        r = s.request("GET", path)
        assert r.status == 200, path
        assert r.headers["Content-Type"] == "application/json"
        assert r.headers["Cache-Control"] == "no-cache, no-store, must-revalidate"
        assert json.loads(r.body)["status"] == "healthy"
    assert "Server is running" in json.loads(s.request("GET", "/live").body)["checks"]


def test_health_check_custom_endpoints_and_minimal_response(serve) -> None:
    s = serve(plugin("health-check", health_endpoint="/_h", detailed_checks="false"), *HANDLERS)
    r = s.request("GET", "/_h")
    assert r.status == 200 and json.loads(r.body) == {"status": "healthy"}
    assert s.request("GET", "/health").status == 404


def test_health_check_low_disk_space_is_degraded_but_200(serve) -> None:
    s = serve(plugin("health-check", min_disk_space_mb="999999999999"), *HANDLERS)
    r = s.request("GET", "/ready")
    assert r.status == 200 and json.loads(r.body)["status"] == "degraded"


def test_health_check_only_answers_get(serve) -> None:
    s = serve(plugin("health-check"), *HANDLERS)
    assert s.request("PUT", "/health", "<p>x</p>").status == 201


def test_health_check_after_basic_auth_needs_credentials(serve, tmp_path: Path) -> None:
    users = tmp_path / "users.html"
    users.write_text(
        '<table><tr itemscope itemtype="http://rustybeam.net/Credential">'
        '<td itemprop="username">alice</td><td itemprop="password">pw</td>'
        '<td itemprop="encryption">plaintext</td></tr></table>')
    s = serve(plugin("basic-auth", authfile=str(users)), plugin("health-check"), *HANDLERS)
    assert s.request("GET", "/live").status == 401
    r = s.request("GET", "/live", headers={"Authorization": "Basic YWxpY2U6cHc="})
    assert r.status == 200


def test_server_health_endpoint_on_every_server(serve, tmp_path: Path) -> None:
    s = serve(*HANDLERS)
    r = s.request("GET", "/_rustybeam/health", headers={"Host": "unknown.example"})
    assert r.status == 200 and json.loads(r.body) == {"status": "healthy"}
    plain = Server(tmp_path / "root").start()
    try:
        assert plain.request("GET", "/_rustybeam/health").status == 200
    finally:
        plain.stop()


def test_server_health_is_503_while_shutting_down() -> None:
    from twisted.web.test.requesthelper import DummyRequest

    from rustybeam.plugins.health_check import Lifecycle, ServerHealth

    lifecycle = Lifecycle()
    lifecycle.startService()
    resource = ServerHealth(lifecycle.shuttingDown)
    request = DummyRequest([b""])
    assert json.loads(resource.render_GET(request)) == {"status": "healthy"}
    lifecycle.stopService()
    request = DummyRequest([b""])
    assert json.loads(resource.render_GET(request)) == {"status": "unhealthy"}
    assert request.responseCode == 503


# redirect

def test_redirect_rule_from_properties(serve) -> None:
    s = serve(plugin("redirect", redirect_rule_1_pattern=r"^/products/(\d+)$",
                     redirect_rule_1_replacement="/shop/item/$1", redirect_rule_1_status="301"),
              *HANDLERS)
    r = s.request("GET", "/products/42")
    assert r.status == 301 and r.headers["Location"] == "/shop/item/42"
    assert r.text == "Redirecting to: /shop/item/42"
    assert s.request("GET", "/index.html").status == 200


def test_redirect_default_status_is_302_and_conditions_apply(serve) -> None:
    s = serve(plugin("redirect", redirect_rule_1_pattern="^(.*)$",
                     redirect_rule_1_replacement="https://example.com$1",
                     redirect_rule_1_condition="http_only"), *HANDLERS)
    r = s.request("GET", "/a.html")
    assert r.status == 302 and r.headers["Location"] == "https://example.com/a.html"
    assert s.request("GET", "/index.html", headers={"X-Forwarded-Proto": "https"}).status == 200


def test_redirect_rules_file_with_response_trigger(serve, tmp_path: Path) -> None:
    rules = tmp_path / "redirects.html"
    rules.write_text(
        '<div itemscope itemtype="http://rustybeam.net/RedirectRule">'
        '<span itemprop="from">^/old/(.*)$</span><span itemprop="to">/new/$1</span>'
        '<span itemprop="status">308</span></div>'
        '<div itemscope itemtype="http://rustybeam.net/RedirectRule">'
        '<span itemprop="from">^/gone(.*)$</span><span itemprop="to">/index.html</span>'
        '<span itemprop="on">404</span></div>')
    s = serve(plugin("redirect", rulesfile=str(rules)), *HANDLERS)
    r = s.request("GET", "/old/x.html")
    assert r.status == 308 and r.headers["Location"] == "/new/x.html"
    r = s.request("GET", "/gone.html")
    assert r.status == 302 and r.headers["Location"] == "/index.html"


def test_redirect_location_cannot_carry_a_new_header(serve) -> None:
    s = serve(plugin("redirect", redirect_rule_1_pattern=r"^/r([\s\S]*)$", redirect_rule_1_replacement="/x$1"),
              *HANDLERS)
    r = s.request("GET", "/r%0d%0aSet-Cookie:%20a=b")
    assert r.status == 302 and "Set-Cookie" not in r.headers
    assert r.headers["Location"] == "/x%0D%0ASet-Cookie:%20a=b"


# error-handler

def test_error_handler_serves_the_custom_page(serve, tmp_path: Path) -> None:
    s = serve(*HANDLERS, plugin("error-handler"))
    (tmp_path / "root" / "404.html").write_text("<h1>custom missing</h1>")
    r = s.request("GET", "/missing.html")
    assert r.status == 404 and r.text == "<h1>custom missing</h1>"
    assert r.headers["Content-Type"] == "text/html; charset=utf-8"


def test_error_handler_generates_a_page_for_other_errors(serve) -> None:
    s = serve(*HANDLERS, plugin("error-handler", error_page_404="nothere.html"))
    r = s.request("DELETE", "/index.html", headers={"If-Match": '"nope"'})
    assert r.status == 412
    assert "<div class=\"error-code\">412</div>" in r.text and "Precondition Failed" in r.text


def test_error_handler_keeps_www_authenticate(serve, tmp_path: Path) -> None:
    users = tmp_path / "users.html"
    users.write_text('<table><tr itemscope itemtype="http://rustybeam.net/Credential">'
                     '<td itemprop="username">alice</td><td itemprop="password">pw</td></tr></table>')
    s = serve(plugin("basic-auth", authfile=str(users)), *HANDLERS, plugin("error-handler"))
    r = s.request("GET", "/index.html", headers={"Authorization": "Basic YWxpY2U6d3Jvbmc="})
    assert r.status == 401 and "WWW-Authenticate" in r.headers
    assert "<div class=\"error-code\">401</div>" in r.text


def test_error_handler_leaves_successes_alone(serve) -> None:
    s = serve(*HANDLERS, plugin("error-handler"))
    assert s.request("GET", "/index.html").text == PAGE


# compression

BIG = "<!DOCTYPE html><html><body><ul id=\"list\">" + "<li>an item of the list</li>" * 200 + "</ul></body></html>"


def test_compression_gzip_by_accept_encoding(serve, tmp_path: Path) -> None:
    s = serve(*HANDLERS, plugin("compression"))
    (tmp_path / "root" / "big.html").write_text(BIG)
    r = s.request("GET", "/big.html", headers={"Accept-Encoding": "gzip"})
    assert r.headers["Content-Encoding"] == "gzip"
    assert "Accept-Encoding" in r.headers["Vary"]
    assert gzip.decompress(r.body).decode() == BIG
    assert int(r.headers["Content-Length"]) == len(r.body)


def test_compression_brotli_preferred_when_enabled(serve, tmp_path: Path) -> None:
    import brotli

    s = serve(*HANDLERS, plugin("compression", algorithms="gzip,brotli"))
    (tmp_path / "root" / "big.html").write_text(BIG)
    r = s.request("GET", "/big.html", headers={"Accept-Encoding": "gzip, br"})
    assert r.headers["Content-Encoding"] == "br" and brotli.decompress(r.body).decode() == BIG


def test_compression_skips_small_bodies_and_unasked(serve, tmp_path: Path) -> None:
    s = serve(*HANDLERS, plugin("compression"))
    (tmp_path / "root" / "big.html").write_text(BIG)
    assert "Content-Encoding" not in s.request("GET", "/index.html", headers={"Accept-Encoding": "gzip"}).headers
    assert "Content-Encoding" not in s.request("GET", "/big.html").headers
    r = s.request("GET", "/big.html", headers={"Accept-Encoding": "gzip;q=0"})
    assert "Content-Encoding" not in r.headers


def test_compression_applies_to_selector_responses_as_rusty_beam_does(serve, tmp_path: Path) -> None:
    s = serve(*HANDLERS, plugin("compression"))
    (tmp_path / "root" / "big.html").write_text(BIG)
    r = s.select("GET", "/big.html", "#list", headers={"Accept-Encoding": "gzip"})
    assert r.status == 206 and r.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(r.body).decode().startswith('<ul id="list">')


# rate-limit

def test_rate_limit_answers_429_with_retry_after(serve) -> None:
    s = serve(plugin("rate-limit", requests_per_second="0.01", burst_capacity="2"), *HANDLERS)
    first = s.request("GET", "/index.html")
    assert first.status == 200
    assert first.headers["X-RateLimit-Limit"] == "2" and first.headers["X-RateLimit-Remaining"] == "1"
    assert s.request("GET", "/index.html").status == 200
    r = s.request("GET", "/index.html")
    assert r.status == 429 and int(r.headers["Retry-After"]) >= 1
    assert json.loads(r.body)["error"] == "Rate limit exceeded"


def test_rate_limit_ignores_forwarded_for(serve) -> None:
    s = serve(plugin("rate-limit", requests_per_second="0.01", burst_capacity="1"), *HANDLERS)
    assert s.request("GET", "/index.html", headers={"X-Forwarded-For": "10.0.0.1"}).status == 200
    assert s.request("GET", "/index.html", headers={"X-Forwarded-For": "10.0.0.2"}).status == 429


def test_rate_limit_bucket_refills_over_time() -> None:
    from twisted.internet.task import Clock

    from rustybeam.plugins.rate_limit import RateLimit, RateLimitOptions

    clock = Clock()
    limit = RateLimit(RateLimitOptions(requestsPerSecond=2, burstCapacity=1), clock)
    assert limit.take("a") is None
    assert limit.take("a") == pytest.approx(0.5)
    clock.advance(0.5)
    assert limit.take("a") is None


# directory

def test_directory_applies_nested_plugins_below_its_path(serve, tmp_path: Path) -> None:
    nested = (plugin("security-headers", frame_options="DENY")
              + plugin("redirect", redirect_rule_1_pattern="^/admin/old$", redirect_rule_1_replacement="/admin/new"))
    directory = ('<li itemprop="plugin" itemscope><span itemprop="library">file://./plugins/libdirectory.so</span>'
                 f'<span itemprop="directory">/admin</span><ol>{nested}</ol></li>')
    s = serve(directory, *HANDLERS)
    (tmp_path / "root" / "admin").mkdir()
    (tmp_path / "root" / "admin" / "index.html").write_text(PAGE)
    assert s.request("GET", "/admin/").headers["X-Frame-Options"] == "DENY"
    assert s.request("GET", "/admin").headers["X-Frame-Options"] == "DENY"
    assert s.request("GET", "/admin/old").status == 302
    assert "X-Frame-Options" not in s.request("GET", "/index.html").headers
    assert "X-Frame-Options" not in s.request("GET", "/administrator.html").headers


ADMIN_AUTH = (
    '<table><tr itemscope itemtype="http://rustybeam.net/Credential"><td itemprop="username">admin</td>'
    '<td itemprop="password">admin123</td><td itemprop="role">administrators</td></tr>'
    '<tr itemscope itemtype="http://rustybeam.net/Credential"><td itemprop="username">user</td>'
    '<td itemprop="password">user123</td><td itemprop="role">users</td></tr>'
    '<tr itemscope itemtype="http://rustybeam.net/AuthorizationRule"><td itemprop="role">administrators</td>'
    '<td itemprop="path">/admin/*</td><td itemprop="method">*</td><td itemprop="action">allow</td></tr>'
    '</table>')


def test_directory_nested_auth_protects_only_its_directory(serve, tmp_path: Path) -> None:
    """Rusty Beam's config/test-directory.html: basic-auth and authorization nested in
    a directory plugin for /admin."""
    (tmp_path / "admin-auth.html").write_text(ADMIN_AUTH)
    nested = (plugin("basic-auth", realm="Admin Area", authfile=str(tmp_path / "admin-auth.html"))
              + plugin("authorization", authfile=str(tmp_path / "admin-auth.html")))
    directory = ('<li itemprop="plugin" itemscope><span itemprop="library">file://./plugins/libdirectory.so</span>'
                 f'<span itemprop="directory">/admin</span><ol>{nested}</ol></li>')
    s = serve(directory, *HANDLERS)
    (tmp_path / "root" / "admin").mkdir()
    (tmp_path / "root" / "admin" / "index.html").write_text("<h1>Admin Dashboard</h1>")
    (tmp_path / "root" / "administrator.html").write_text("<h1>Administrator Page</h1>")
    r = s.request("GET", "/admin/")
    assert r.status == 401 and "Admin Area" in r.headers["WWW-Authenticate"]
    assert s.request("GET", "/admin/", headers={"Authorization": "Basic dXNlcjp1c2VyMTIz"}).status == 403
    r = s.request("GET", "/admin/", headers={"Authorization": "Basic YWRtaW46YWRtaW4xMjM="})
    assert r.status == 200 and "Admin Dashboard" in r.text
    assert s.request("PUT", "/admin/x.html", "<p>x</p>").status == 401
    assert "Administrator Page" in s.request("GET", "/administrator.html").text
    assert s.request("GET", "/index.html").status == 200


def test_directory_refuses_to_nest_a_whole_host_handler(tmp_path: Path) -> None:
    nested = plugin("file-handler")
    directory = ('<li itemprop="plugin" itemscope><span itemprop="library">file://./plugins/libdirectory.so</span>'
                 f'<span itemprop="directory">/admin</span><ol>{nested}</ol></li>')
    config = writeConfig(tmp_path, directory, *HANDLERS)
    with pytest.raises(RuntimeError, match="nested plugin 'file-handler'"):
        Server(tmp_path / "root", config=config).start()


# html-prettifier

def test_html_prettifier_indents_write_responses(serve) -> None:
    s = serve(*HANDLERS, plugin("html-prettifier"))
    r = s.select("PUT", "/index.html", "#list", '<ul id="list"><li>one</li><li>two</li></ul>')
    assert r.status == 206
    assert r.text == '<ul id="list">\n  <li>one</li>\n  <li>two</li>\n</ul>\n'
    assert int(r.headers["Content-Length"]) == len(r.body)


def test_html_prettifier_leaves_reads_and_stored_documents_alone(serve, tmp_path: Path) -> None:
    s = serve(*HANDLERS, plugin("html-prettifier"))
    s.select("PUT", "/index.html", "#list", '<ul id="list"><li>one</li><li>two</li></ul>')
    assert '<ul id="list"><li>one</li><li>two</li></ul>' in (tmp_path / "root" / "index.html").read_text()
    r = s.select("GET", "/index.html", "#list")
    assert r.text == '<ul id="list"><li>one</li><li>two</li></ul>'


# config-reload

def waitFor(check, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def test_config_reload_patch_reloads_plugin_settings(serve, tmp_path: Path) -> None:
    s = serve(plugin("config-reload"), *HANDLERS, inRoot=True)
    assert "X-Frame-Options" not in s.request("GET", "/index.html").headers
    writeConfig(tmp_path, plugin("config-reload"), *HANDLERS, plugin("security-headers"), inRoot=True)
    r = s.request("PATCH", "/config.html")
    assert r.status == 202 and r.text == "Configuration reload initiated"
    waitFor(lambda: "X-Frame-Options" in s.request("GET", "/index.html").headers)


def test_config_reload_options_lists_patch(serve) -> None:
    s = serve(plugin("config-reload"), *HANDLERS, inRoot=True)
    r = s.request("OPTIONS", "/config.html")
    assert r.status == 200 and "PATCH" in r.headers["Allow"]
    assert r.headers["Accept-Ranges"] == "selector"


def test_config_reload_patch_with_a_body_is_not_a_reload(serve) -> None:
    s = serve(plugin("config-reload"), *HANDLERS, inRoot=True)
    r = s.request("PATCH", "/config.html", "x")
    assert r.status == 404 and "configuration reload" not in s.output()


def test_sighup_reload_keeps_open_websockets_and_applies_new_users(serve, tmp_path: Path) -> None:
    from conftest import Watcher

    users = tmp_path / "users.html"
    users.write_text('<table><tr itemscope itemtype="http://rustybeam.net/Credential">'
                     '<td itemprop="username">alice</td><td itemprop="password">old</td></tr></table>')
    pipeline = (plugin("basic-auth", authfile=str(users)), *HANDLERS, plugin("websocket"))
    s = serve(*pipeline)
    old = {"Authorization": "Basic YWxpY2U6b2xk"}
    new = {"Authorization": "Basic YWxpY2U6bmV3"}
    assert s.request("GET", "/index.html", headers=old).status == 200
    w = Watcher(s, "/index.html", additional_headers=old)
    users.write_text(users.read_text().replace(">old<", ">new<"))
    assert s.process is not None
    s.process.send_signal(signal.SIGHUP)
    waitFor(lambda: s.request("GET", "/index.html", headers=new).status == 200)
    assert s.request("GET", "/index.html", headers=old).status == 401
    assert s.select("PUT", "/index.html", "#list", '<ul id="list"><li>2</li></ul>', headers=new).status == 206
    assert w.item().content == '<ul id="list"><li>2</li></ul>'
    w.close()


def test_reload_of_a_broken_config_keeps_the_running_one(serve, tmp_path: Path) -> None:
    s = serve(plugin("config-reload"), *HANDLERS, plugin("security-headers"), inRoot=True)
    (tmp_path / "root" / "config.html").write_text("<p>not a config</p>")
    assert s.request("PATCH", "/config.html").status == 202
    waitFor(lambda: "configuration reload failed" in s.output())
    assert s.request("GET", "/index.html").headers["X-Frame-Options"] == "SAMEORIGIN"


def test_config_file_and_rules_file_are_never_documents(serve, tmp_path: Path) -> None:
    rules = tmp_path / "root" / "redirects.html"
    rules.parent.mkdir(exist_ok=True)
    rules.write_text('<div itemscope itemtype="http://rustybeam.net/RedirectRule">'
                     '<span itemprop="from">^/a$</span><span itemprop="to">/b</span></div>')
    s = serve(plugin("config-reload"), plugin("redirect", rulesfile="./redirects.html"), *HANDLERS,
              inRoot=True)
    assert s.request("GET", "/config.html").status == 404
    assert s.request("PUT", "/config.html", "<p>owned</p>").status == 404
    assert s.request("GET", "/redirects.html").status == 404
    assert s.request("GET", "/a").status == 302


def test_rate_limit_applies_to_websocket_handshakes(tmp_path: Path) -> None:
    from conftest import rawHandshake

    config = writeConfig(tmp_path, plugin("rate-limit", requests_per_second="0.01", burst_capacity="1"),
                         *HANDLERS, plugin("websocket"))
    s = Server(tmp_path / "root", "--metrics", config=config).start()
    try:
        assert s.request("GET", "/index.html").status == 200
        sock, head = rawHandshake(s, "/index.html")
        sock.close()
        assert head.startswith(b"HTTP/1.1 429")
        metrics = s.request("GET", "/_rustybeam/metrics").text
        assert 'rustybeam_refused_handshakes_total{host="127.0.0.1",reason="rate-limited"} 1.0' in metrics
    finally:
        s.stop()


def test_rate_limit_by_user_after_basic_auth(serve, tmp_path: Path) -> None:
    users = tmp_path / "users.html"
    users.write_text(''.join(
        f'<table><tr itemscope itemtype="http://rustybeam.net/Credential"><td itemprop="username">{u}</td>'
        f'<td itemprop="password">pw</td></tr></table>' for u in ("alice", "bob")))
    s = serve(plugin("basic-auth", authfile=str(users)),
              plugin("rate-limit", requests_per_second="0.01", burst_capacity="1", key_strategy="user"),
              *HANDLERS)
    alice = {"Authorization": "Basic YWxpY2U6cHc="}
    bob = {"Authorization": "Basic Ym9iOnB3"}
    assert s.request("GET", "/index.html", headers=alice).status == 200
    assert s.request("GET", "/index.html", headers=alice).status == 429
    assert s.request("GET", "/index.html", headers=bob).status == 200


def test_reload_adds_and_removes_hosts(serve, tmp_path: Path) -> None:
    s = serve(*HANDLERS)
    assert s.request("GET", "/index.html", headers={"Host": "localhost"}).status == 404
    config = tmp_path / "config.html"
    text = config.read_text()
    second = text[text.index('<table itemscope itemtype="http://rustybeam.net/HostConfig">'):text.index("</body>")]
    config.write_text(text.replace("</body>", second.replace(">127.0.0.1<", ">localhost<") + "</body>")
                      .replace('<td itemprop="hostName">127.0.0.1</td>', '<td itemprop="hostName">gone.example</td>', 1))
    assert s.process is not None
    s.process.send_signal(signal.SIGHUP)
    waitFor(lambda: s.request("GET", "/index.html", headers={"Host": "localhost"}).status == 200)
    assert s.request("GET", "/index.html").status == 404


def test_stage_after_bcrypt_auth_waits_for_the_check_then_serves(serve, tmp_path: Path) -> None:
    import bcrypt

    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode()
    users = tmp_path / "users.html"
    users.write_text('<table><tr itemscope itemtype="http://rustybeam.net/Credential">'
                     f'<td itemprop="username">alice</td><td itemprop="password">{hashed}</td>'
                     '<td itemprop="encryption">bcrypt</td></tr></table>')
    s = serve(plugin("basic-auth", authfile=str(users)), plugin("health-check"),
              plugin("rate-limit", key_strategy="user"), *HANDLERS, plugin("security-headers"))
    alice = {"Authorization": "Basic YWxpY2U6cHc="}
    r = s.request("GET", "/index.html", headers=alice)
    assert r.status == 200 and r.text == PAGE and r.headers["X-Frame-Options"] == "SAMEORIGIN"
    assert r.headers["X-RateLimit-Limit"] == "20"
    assert s.request("GET", "/live", headers=alice).status == 200
    assert s.request("GET", "/live", headers={"Authorization": "Basic YWxpY2U6bm8="}).status == 401


def test_bad_plugin_settings_stop_start_up_with_a_message(tmp_path: Path) -> None:
    config = writeConfig(tmp_path, plugin("redirect", redirect_rule_1_pattern="(", redirect_rule_1_replacement="/x"),
                         *HANDLERS)
    with pytest.raises(RuntimeError, match="bad --config: .*redirect.*not a regular expression"):
        Server(tmp_path / "root", config=config).start()


def test_redirect_rules_file_changes_apply_at_once_and_missing_is_no_rules(serve, tmp_path: Path) -> None:
    rules = tmp_path / "redirects.html"
    s = serve(plugin("redirect", rulesfile=str(rules)), *HANDLERS)
    assert s.request("GET", "/index.html").status == 200
    rules.write_text('<div itemscope itemtype="http://rustybeam.net/RedirectRule">'
                     '<span itemprop="from">^/index.html$</span><span itemprop="to">/moved.html</span></div>')
    r = s.request("GET", "/index.html")
    assert r.status == 302 and r.headers["Location"] == "/moved.html"


def test_reload_moves_a_host_to_its_new_root(serve, tmp_path: Path) -> None:
    s = serve(*HANDLERS)
    other = tmp_path / "other"
    other.mkdir()
    (other / "index.html").write_text("<p>moved</p>")
    config = tmp_path / "config.html"
    config.write_text(config.read_text().replace(">./root<", ">./other<"))
    assert s.process is not None
    s.process.send_signal(signal.SIGHUP)
    waitFor(lambda: s.request("GET", "/index.html").text == "<p>moved</p>")
