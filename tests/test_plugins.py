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


def writeConfig(base: Path, *plugins: str, server: str = "") -> Path:
    """A config.html serving C{base/root} as host 127.0.0.1 through C{plugins}."""
    root = base / "root"
    root.mkdir(exist_ok=True)
    (root / "index.html").write_text(PAGE)
    config = base / "config.html"
    config.write_text(
        '<!DOCTYPE html><html><body>'
        '<table itemscope itemtype="http://rustybeam.net/ServerConfig">'
        '<tr><td itemprop="bindAddress">127.0.0.1</td></tr><tr><td itemprop="bindPort">0</td></tr>'
        f'{server}</table>'
        '<table itemscope itemtype="http://rustybeam.net/HostConfig">'
        '<tr><td itemprop="hostName">127.0.0.1</td></tr><tr><td itemprop="hostRoot">./root</td></tr>'
        f'<tr><td><ol>{"".join(plugins)}</ol></td></tr></table></body></html>'
    )
    return config


@pytest.fixture
def serve(tmp_path: Path) -> Iterator:
    """Start a server from a config naming the given plugins; stopped after the test."""
    started: list[Server] = []

    def start(*plugins: str, args: tuple[str, ...] = (), server: str = "") -> Server:
        config = writeConfig(tmp_path, *plugins, server=server)
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
