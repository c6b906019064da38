"""
SPEC section 3, the seed's "future enhancements": each limit, configured small on a
real server, actually triggers.
"""

from __future__ import annotations

import json
import signal
import socket
import struct
import time
from typing import Iterator

import pytest

from conftest import Server, Watcher, clientFrame, makeServer, rawHandshake

DOC = "<!DOCTYPE html><html><body><div id=content>x</div><ul id=l></ul></body></html>"


def serverWith(tmp_path_factory: pytest.TempPathFactory, *args: str) -> Iterator[Server]:
    for server in makeServer(tmp_path_factory, *args):
        (server.root / "d.html").write_text(DOC)
        yield server


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from serverWith(tmp_path_factory, "--max-connections", "5",
                          "--max-connections-per-address", "3")


def handshakeFrom(server: Server, source: str) -> tuple[socket.socket, bytes]:
    return rawHandshake(server, "/d.html", source=source)


def readFrame(sock: socket.socket) -> tuple[int, bytes]:
    """Read one server frame: (opcode, payload)."""
    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data

    b0, b1 = exactly(2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", exactly(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", exactly(8))[0]
    return b0 & 0x0F, exactly(n)


def closeCodeOf(sock: socket.socket, timeout: float = 15) -> int | None:
    """Read frames until the close frame; its code, or None if the socket just ends."""
    sock.settimeout(timeout)
    try:
        while True:
            opcode, payload = readFrame(sock)
            if opcode == 8:
                return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
    except (ConnectionError, OSError):
        return None


def statusesWhileHolding(server: Server, holders: list[str], newcomers: list[str]) -> list[bytes]:
    """Open WebSockets from the C{holders} addresses (all must succeed), then one from
    each of the C{newcomers}; the status codes that the newcomers get."""
    held = [handshakeFrom(server, source) for source in holders]
    try:
        assert all(head.startswith(b"HTTP/1.1 101") for _, head in held)
        statuses = []
        for source in newcomers:
            sock, head = handshakeFrom(server, source)
            sock.close()
            statuses.append(head[9:12])
        return statuses
    finally:
        for sock, _ in held:
            sock.close()


def test_connections_over_the_per_address_limit_get_503(limited: Server) -> None:
    assert statusesWhileHolding(limited, ["127.0.0.1"] * 3, ["127.0.0.1", "127.0.0.2"]) == [
        b"503", b"101"]


def test_connections_over_the_total_limit_get_503(limited: Server) -> None:
    holders = ["127.0.0.2"] * 3 + ["127.0.0.3"] * 2
    assert statusesWhileHolding(limited, holders, ["127.0.0.9"]) == [b"503"]


def test_closed_connections_free_their_slot(limited: Server) -> None:
    for _ in range(3):
        held = [handshakeFrom(limited, "127.0.0.5") for _ in range(3)]
        assert all(head.startswith(b"HTTP/1.1 101") for _, head in held)
        for sock, _ in held:
            sock.close()
        time.sleep(0.3)


def test_excess_messages_are_refused_then_abuse_closes_with_1008(tmp_path_factory) -> None:
    for server in serverWith(tmp_path_factory, "--rate", "1", "--burst", "3", "--rate-strikes", "5"):
        w = Watcher(server, "/d.html")
        for _ in range(3):
            w.send({"action": "subscribe"})
            assert w.json()["type"] == "subscribed"
        w.send({"action": "subscribe"})
        assert w.json()["error"] == "rate-limited"
        for _ in range(10):
            try:
                w.send({"action": "subscribe"})
            except Exception:
                break
        assert w.closeCode() == 1008


def test_oversized_message_closes_with_1009(tmp_path_factory) -> None:
    for server in serverWith(tmp_path_factory, "--max-message-size", "1000", "--max-frame-size", "600"):
        w = Watcher(server, "/d.html", compression=None)
        w.connection.send(iter(["x" * 400, "x" * 400, "x" * 400]))
        assert w.closeCode() == 1009


def test_oversized_frame_closes_with_1009(tmp_path_factory) -> None:
    for server in serverWith(tmp_path_factory, "--max-message-size", "100000", "--max-frame-size", "600"):
        w = Watcher(server, "/d.html", compression=None)
        w.connection.send("x" * 700)
        assert w.closeCode() == 1009


def test_origin_outside_the_allow_list_gets_403(tmp_path_factory) -> None:
    for server in serverWith(tmp_path_factory, "--allow-origin", "https://good.example",
                             "--allow-origin", "http://*.trusted.example"):
        for origin, status in [("https://evil.example", b"403"), ("https://good.example", b"101"),
                               ("http://app.trusted.example", b"101"), (None, b"101")]:
            sock, head = rawHandshake(server, "/d.html", {"Origin": origin} if origin else {})
            sock.close()
            assert head.startswith(b"HTTP/1.1 " + status), (origin, head)


def test_allowed_origin_on_another_port_gets_403(tmp_path_factory) -> None:
    for server in serverWith(tmp_path_factory, "--allow-origin", "https://good.example"):
        for origin, status in [("https://good.example:8443", b"403"),
                               ("https://good.example:443", b"403"),
                               ("http://good.example", b"403"),
                               ("https://good.example", b"101")]:
            sock, head = rawHandshake(server, "/d.html", {"Origin": origin})
            sock.close()
            assert head.startswith(b"HTTP/1.1 " + status), (origin, head)


def test_unanswered_pings_drop_the_connection(tmp_path_factory) -> None:
    for server in serverWith(tmp_path_factory, "--ping-interval", "0.3", "--ping-timeout", "0.6"):
        sock, head = rawHandshake(server, "/d.html")
        assert head.startswith(b"HTTP/1.1 101")
        sock.settimeout(5)
        assert readFrame(sock)[0] == 9
        started = time.monotonic()
        with pytest.raises((ConnectionError, OSError)):
            while True:
                readFrame(sock)
        assert time.monotonic() - started < 3
        sock.close()


def test_answered_pings_keep_the_connection(tmp_path_factory) -> None:
    for server in serverWith(tmp_path_factory, "--ping-interval", "0.3", "--ping-timeout", "0.5"):
        w = Watcher(server, "/d.html")
        time.sleep(1.5)
        server.select("PUT", "/d.html", "#content", "<div id=content>alive</div>")
        assert w.item().content == '<div id="content">alive</div>'


def test_compression_can_be_refused(tmp_path_factory) -> None:
    for server in serverWith(tmp_path_factory, "--no-compression"):
        w = Watcher(server, "/d.html")
        assert "Sec-WebSocket-Extensions" not in w.connection.response.headers


def test_slow_reader_is_closed_and_others_are_not_delayed(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A client that stops reading is closed with 1008 once the bytes queued for it
    pass --max-backlog; a reading client meanwhile gets every item at once. The
    server's kernel send buffer is made small (L{tests.smallsendbuffer}) so that
    the queued bytes stay where the limit sees them: without that the kernel would
    swallow about two megabytes before any limit could apply."""
    root = tmp_path_factory.mktemp("root")
    (root / "d.html").write_text(DOC)
    server = Server(root, "--max-backlog", "100000", "--no-fsync",
                    module="tests.smallsendbuffer").start()
    try:
        slow, head = rawHandshake(server, "/d.html", receiveBuffer=4096)
        assert head.startswith(b"HTTP/1.1 101")
        fast = Watcher(server, "/d.html", compression=None, max_size=None)
        block = "y" * 20_000
        for i in range(10):
            server.select("PUT", "/d.html", "#content", f"<div id=content>{i}{block}</div>")
            assert fast.item(timeout=5).content.startswith(f'<div id="content">{i}y')
        assert closeCodeOf(slow) == 1008
        slow.close()
        assert "closing slow consumer" in server.output()
        server.select("PUT", "/d.html", "#content", "<div id=content>after</div>")
        assert fast.item(timeout=5).content == '<div id="content">after</div>'
        fast.close()
    finally:
        server.stop()


def test_shutdown_closes_every_websocket_with_1001(tmp_path_factory) -> None:
    for server in serverWith(tmp_path_factory):
        watchers = [Watcher(server, "/d.html") for _ in range(3)]
        server.stop(signal.SIGTERM)
        assert [w.closeCode() for w in watchers] == [1001, 1001, 1001]


def test_shutdown_waits_for_pending_writes(tmp_path_factory) -> None:
    for server in serverWith(tmp_path_factory):
        import threading

        results: list[int] = []

        def post(i: int) -> None:
            try:
                results.append(server.select("POST", "/d.html", "#l", f"<li>{i}</li>").status)
            except OSError:
                pass

        threads = [threading.Thread(target=post, args=(i,)) for i in range(20)]
        for t in threads:
            t.start()
        time.sleep(0.05)
        server.stop(signal.SIGTERM)
        for t in threads:
            t.join()
        stored = (server.root / "d.html").read_text()
        assert stored.count("<li>") >= results.count(206)


def test_subscriptions_over_the_limit_are_refused(tmp_path_factory) -> None:
    for server in serverWith(tmp_path_factory, "--max-subscriptions", "2"):
        w = Watcher(server, "/d.html")
        assert w.subscribe(selector="#content")["type"] == "subscribed"
        assert w.subscribe(selector="#l")["type"] == "subscribed"
        refused = w.subscribe(selector="body")
        assert (refused["type"], refused["error"]) == ("error", "too-many-subscriptions")
        w.send({"action": "unsubscribe", "selector": "#l"})
        assert w.json()["type"] == "unsubscribed"
        assert w.subscribe(selector="body")["type"] == "subscribed"


@pytest.fixture(scope="module")
def headerDeadline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from serverWith(tmp_path_factory, "--header-timeout", "1")


def test_slowloris_connection_is_closed_at_the_header_deadline(headerDeadline: Server) -> None:
    head = b"GET /d.html HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + b"a" * 500 + b"\r\n\r\n"
    sock = socket.create_connection(("127.0.0.1", headerDeadline.port), timeout=5)
    sock.settimeout(0.1)
    closed = False
    try:
        for byte in head[:60]:  # one byte per 100 ms: 6 s, each byte resetting any idle timer
            try:
                sock.sendall(bytes([byte]))
                closed = sock.recv(1024) == b""
            except TimeoutError:
                continue
            except (ConnectionResetError, BrokenPipeError):
                closed = True
            if closed:
                break
    finally:
        sock.close()
    assert closed


def test_prompt_requests_are_not_affected_by_the_header_deadline(headerDeadline: Server) -> None:
    sock = socket.create_connection(("127.0.0.1", headerDeadline.port), timeout=5)
    try:
        for _ in range(2):  # a keep-alive connection idle longer than the deadline between requests
            sock.sendall(b"GET /d.html HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            response = b""
            while b"</html>" not in response:
                chunk = sock.recv(65536)
                assert chunk, "closed"
                response += chunk
            assert response.startswith(b"HTTP/1.1 200")
            time.sleep(1.5)
    finally:
        sock.close()
