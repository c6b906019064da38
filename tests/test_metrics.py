"""Prometheus metrics at /_rustybeam/metrics, on real servers."""

from __future__ import annotations

import base64
from pathlib import Path

from conftest import Server, Watcher, rawHandshake
from test_plugins import HANDLERS, PAGE, plugin, writeConfig

USERS = ('<table><tr itemscope itemtype="http://rustybeam.net/Credential">'
         '<td itemprop="username">prom</td><td itemprop="password">scrape</td></tr></table>')


def scrape(server: Server, **headers: str) -> dict[str, float]:
    r = server.request("GET", "/_rustybeam/metrics", headers=headers)
    assert r.status == 200, r.body
    assert r.headers["Content-Type"].startswith("text/plain")
    values = {}
    for line in r.text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def test_metrics_are_off_by_default(tmp_path: Path) -> None:
    s = Server(tmp_path).start()
    try:
        assert s.request("GET", "/_rustybeam/metrics").status == 404
    finally:
        s.stop()


def test_metrics_count_connections_writes_and_deliveries(tmp_path: Path) -> None:
    (tmp_path / "doc.html").write_text(PAGE)
    s = Server(tmp_path, "--metrics").start()
    try:
        w = Watcher(s, "/doc.html")
        assert s.select("PUT", "/doc.html", "#list", "<ul id=\"list\"><li>two</li></ul>").status == 206
        w.item()
        assert s.request("DELETE", "/doc.html", headers={"If-Match": '"nope"'}).status == 412
        m = scrape(s)
        assert m['rustybeam_websockets_open{host="default"}'] == 1
        assert m['rustybeam_subscriptions{host="default"}'] >= 1
        assert m['rustybeam_streamitems_delivered_total{host="default"}'] >= 1
        assert m['rustybeam_writes_total{host="default",method="PUT",result="ok"}'] == 1
        assert m['rustybeam_writes_total{host="default",method="DELETE",result="precondition-failed"}'] == 1
        assert m['rustybeam_write_duration_seconds_count{host="default",method="PUT"}'] == 1
        assert m['rustybeam_put_to_delivery_seconds_count{host="default"}'] == 1
        assert m['rustybeam_history_items{host="default"}'] == 1
        w.close()
    finally:
        s.stop()


def test_metrics_count_refused_handshakes_by_reason(tmp_path: Path) -> None:
    (tmp_path / "doc.html").write_text(PAGE)
    s = Server(tmp_path, "--metrics", "--allow-origin", "https://ok.example").start()
    try:
        sock, head = rawHandshake(s, "/doc.html", {"Sec-WebSocket-Version": "8"})
        sock.close()
        assert head.startswith(b"HTTP/1.1 426")
        sock, head = rawHandshake(s, "/doc.html", {"Origin": "https://evil.example"})
        sock.close()
        assert head.startswith(b"HTTP/1.1 403")
        m = scrape(s)
        assert m['rustybeam_refused_handshakes_total{host="default",reason="upgrade-required"}'] == 1
        assert m['rustybeam_refused_handshakes_total{host="default",reason="origin-refused"}'] == 1
    finally:
        s.stop()


def test_metrics_need_the_configured_users(tmp_path: Path) -> None:
    users = tmp_path / "users.html"
    users.write_text(USERS)
    root = tmp_path / "root"
    root.mkdir()
    s = Server(root, "--metrics", "--metrics-authfile", str(users)).start()
    try:
        r = s.request("GET", "/_rustybeam/metrics")
        assert r.status == 401 and r.headers["WWW-Authenticate"].startswith("Basic ")
        wrong = base64.b64encode(b"prom:wrong").decode()
        assert s.request("GET", "/_rustybeam/metrics", headers={"Authorization": f"Basic {wrong}"}).status == 401
        right = base64.b64encode(b"prom:scrape").decode()
        assert "rustybeam_websockets_open" in str(scrape(s, Authorization=f"Basic {right}"))
    finally:
        s.stop()


def test_metrics_enabled_by_config_property_labelled_by_host(tmp_path: Path) -> None:
    config = writeConfig(tmp_path, plugin("rate-limit", requests_per_second="0.01", burst_capacity="1"),
                         *HANDLERS, server='<tr><td itemprop="metrics">true</td></tr>')
    s = Server(tmp_path / "root", config=config).start()
    try:
        assert s.request("GET", "/index.html").status == 200
        assert s.request("GET", "/index.html").status == 429
        m = scrape(s, Host="anything.example")
        assert m['rustybeam_rate_limit_hits_total{host="127.0.0.1",kind="http"}'] == 1
        assert m['rustybeam_websockets_open{host="127.0.0.1"}'] == 0
    finally:
        s.stop()
