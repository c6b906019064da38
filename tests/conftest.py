"""
Fixtures: real rustybeam servers on loopback, and plain clients to talk to them.

A L{Server} is a real process (C{python -m rustybeam}) listening on a free port.
The module-scoped C{server} is shared; each test gets its own directory under its
root (C{docs}), so tests never see each other's changes.
"""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
SHARED = Path(os.environ.get("RUSTYBEAM_SHARED", PROJECT.parent / "shared"))
"""The shared fixtures beside the checkout (tests/mutation runs a copy elsewhere)."""
FIXTURES = SHARED / "rustybeam-fixtures"
DOCUMENTS = HERE / "data" / "documents"


def freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")


class Server:
    """A rustybeam process on 127.0.0.1 with its own root and options."""

    def __init__(self, root: Path, *args: str, module: str = "rustybeam",
                 config: Path | None = None) -> None:
        self.root = root
        self.port = freePort()
        self.log = root.parent / f"server-{self.port}.log"
        where = ["--config", str(config)] if config is not None else ["--root", str(root)]
        self.args = [*where, "--port", f"tcp:{self.port}:interface=127.0.0.1", *args]
        self.module = module
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Server:
        env = dict(os.environ, PYTHONPATH=str(PROJECT), PYTHONUNBUFFERED="1")
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", self.module, *self.args],
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(PROJECT),
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"server did not start: {self.log.read_text()}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def request(self, method: str, path: str, body: bytes | str | None = None,
                headers: dict[str, str] | None = None) -> Response:
        if isinstance(body, str):
            body = body.encode("utf-8")
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return Response(r.status, r.headers, r.read())
        finally:
            conn.close()

    def select(self, method: str, path: str, selector: str, body: bytes | str | None = None,
               headers: dict[str, str] | None = None) -> Response:
        return self.request(method, path, body, {"Range": f"selector={selector}", **(headers or {})})


@dataclass
class Docs:
    """One test's own directory of documents on a running server."""

    server: Server
    path: Path
    prefix: str

    def url(self, name: str = "") -> str:
        return f"{self.prefix}/{name}"

    def file(self, name: str) -> Path:
        return self.path / name

    def write(self, name: str, html: str) -> str:
        target = self.path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(html, encoding="utf-8")
        return self.url(name)


def makeServer(tmp_path_factory: pytest.TempPathFactory, *args: str) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("root")
    server = Server(root, *args).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A rustybeam server with default options, shared by one test module."""
    yield from makeServer(tmp_path_factory)


@pytest.fixture
def docs(server: Server) -> Docs:
    """A fresh directory of the sample documents on the shared server."""
    name = "t" + uuid.uuid4().hex[:10]
    path = server.root / name
    shutil.copytree(DOCUMENTS, path)
    return Docs(server, path, "/" + name)


# WebSocket clients

import base64
import json
import zlib

from lxml import etree
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect


@dataclass(frozen=True)
class Item:
    """A StreamItem as a test sees it: its properties and its raw text."""

    method: str
    url: str
    selector: str
    content: str
    sequence: int | None
    raw: str


def parseItem(text: str) -> Item:
    """Parse a StreamItem with a real HTML parser and read its microdata."""
    from rustybeam.markup import parseDocument

    root = parseDocument(text).getroot()
    (item,) = root.xpath('//*[@itemtype="http://rustybeam.net/StreamItem"]')

    def prop(name: str) -> etree._Element | None:
        found = item.xpath(f'.//*[@itemprop="{name}"]')
        return found[0] if found else None

    content = prop("content")
    inner = (content.text or "") + "".join(
        etree.tostring(c, method="html", encoding="unicode") for c in content
    )
    seq = prop("sequence")
    return Item(
        method=prop("method").text or "",
        url=prop("url").text or "",
        selector=prop("selector").text or "",
        content=inner.strip(),
        sequence=int(seq.text) if seq is not None else None,
        raw=text,
    )


class Watcher:
    """A real WebSocket client (the websockets package) on a document URL."""

    def __init__(self, server: Server, path: str, host: str = "127.0.0.1", **kwargs: object) -> None:
        self.connection: ClientConnection = connect(
            f"ws://{host}:{server.port}{path}", open_timeout=5, **kwargs
        ).__enter__()

    def send(self, message: dict[str, object]) -> None:
        self.connection.send(json.dumps(message))

    def recv(self, timeout: float = 5) -> str | bytes:
        return self.connection.recv(timeout=timeout)

    def json(self, timeout: float = 5) -> dict[str, object]:
        message = self.recv(timeout)
        assert isinstance(message, str), message
        return json.loads(message)

    def item(self, timeout: float = 5) -> Item:
        message = self.recv(timeout)
        assert isinstance(message, str) and message.startswith("<div itemscope"), message
        return parseItem(message)

    def nothing(self, timeout: float = 0.4) -> None:
        """Assert that no message arrives within C{timeout} seconds."""
        try:
            message = self.connection.recv(timeout=timeout)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected message: {message!r}")

    def subscribe(self, **fields: object) -> dict[str, object]:
        self.send({"action": "subscribe", **fields})
        return self.json()

    def closeCode(self, timeout: float = 10) -> int | None:
        """Read until the server closes; return its close code."""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                self.connection.recv(timeout=max(0.01, deadline - time.monotonic()))
        except ConnectionClosed as e:
            return e.rcvd.code if e.rcvd else None
        except TimeoutError:
            pass
        raise AssertionError("server did not close the connection")

    def close(self) -> None:
        self.connection.close()


@pytest.fixture
def watch(server: Server) -> Iterator[object]:
    """Open WebSockets on the shared server; all are closed after the test."""
    opened: list[Watcher] = []

    def open_(path: str, target: Server | None = None, **kwargs: object) -> Watcher:
        w = Watcher(target or server, path, **kwargs)
        opened.append(w)
        return w

    yield open_
    for w in opened:
        w.close()


def rawHandshake(server: Server, path: str, headers: dict[str, str] | None = None,
                 source: str = "127.0.0.1", receiveBuffer: int | None = None
                 ) -> tuple[socket.socket, bytes]:
    """Open a WebSocket by hand (for what a polite client library will not do), from
    the loopback address C{source}; return the socket and the raw response head."""
    sock = socket.socket()
    if receiveBuffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receiveBuffer)
    sock.bind((source, 0))
    sock.settimeout(5)
    sock.connect(("127.0.0.1", server.port))
    key = base64.b64encode(os.urandom(16)).decode()
    fields = {"Host": f"127.0.0.1:{server.port}", "Upgrade": "websocket", "Connection": "Upgrade",
              "Sec-WebSocket-Key": key, "Sec-WebSocket-Version": "13", **(headers or {})}
    head = f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items() if v) + "\r\n"
    sock.sendall(head.encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return sock, data


def serverFrames(data: bytes) -> list[tuple[int, bytes]]:
    """Whole unmasked server frames, one after the other: (first header byte, payload);
    an incomplete frame at the end is left out."""
    out = []
    while len(data) >= 2:
        n, start = data[1] & 0x7F, 2
        if n == 126:
            n, start = int.from_bytes(data[2:4], "big"), 4
        elif n == 127:
            n, start = int.from_bytes(data[2:10], "big"), 10
        if len(data) < start + n:
            break
        out.append((data[0], data[start:start + n]))
        data = data[start + n:]
    return out


def clientFrame(payload: bytes, opcode: int = 1) -> bytes:
    """One masked, final client frame."""
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = bytes([0x80 | opcode, 0x80 | n])
    elif n < 65536:
        head = bytes([0x80 | opcode, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x80 | opcode, 0x80 | 127]) + n.to_bytes(8, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def compact(message: dict[str, object]) -> bytes:
    return zlib.compress(json.dumps(message).encode())
