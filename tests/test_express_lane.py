"""
The express lane (L{rustybeam.notifier.IWatcher.express}) of a real WebSocket
connection on a real loopback TCP connection, driven by a private epoll reactor that is never run:
what reaches the peer without a reactor turn went out inline.
"""

from __future__ import annotations

import base64
import os
import socket
from typing import Iterator

import pytest
from conftest import serverFrames
from twisted.internet import tcp
from twisted.internet.address import IPv4Address
from twisted.internet.epollreactor import EPollReactor

from rustybeam.changes import Change
from rustybeam.notifier import Delivery, DocumentChangeNotifier
from rustybeam.websocket import DocumentWebSocketFactory, DocumentWebSocketProtocol, WebSocketOptions
from rustybeam.wire import EXPRESS_BYTES


def loopbackPair() -> tuple[socket.socket, socket.socket]:
    """Both ends of a TCP connection on 127.0.0.1."""
    with socket.create_server(("127.0.0.1", 0)) as listening:
        client = socket.create_connection(listening.getsockname())
        server, _ = listening.accept()
    return server, client


class Connection(tcp.Connection):
    """A Twisted TCP connection made from a connected socket, with its addresses."""

    def getPeer(self) -> IPv4Address:
        return IPv4Address("TCP", "127.0.0.1", 40000)

    def getHost(self) -> IPv4Address:
        return IPv4Address("TCP", "127.0.0.1", 3000)


class Peer:
    """One open WebSocket on a socket pair: the server's protocol and the client's socket."""

    def __init__(self, reactor: EPollReactor, backlog: int = 10**6) -> None:
        ours, self.socket = loopbackPair()
        ours.setblocking(False)
        self.socket.settimeout(2)
        self.notifier = DocumentChangeNotifier()
        factory = DocumentWebSocketFactory(
            None, self.notifier,  # type: ignore[arg-type]
            WebSocketOptions(maxBacklogBytes=backlog, autoPingInterval=0), reactor)
        self.protocol = factory.connect("127.0.0.1", "/d.html", None)
        self.transport = Connection(ours, self.protocol, reactor)
        self.transport.connected = True
        self.protocol.makeConnection(self.transport)
        key = base64.b64encode(os.urandom(16)).decode()
        self.protocol.dataReceived((
            "GET /d.html HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        assert self.protocol.state == DocumentWebSocketProtocol.STATE_OPEN
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.socket.recv(1)
        self.sequence = 0

    def change(self, size: int = 40) -> Change:
        self.sequence += 1
        return Change("PUT", "/d.html", "#x", self.sequence, f"<b>{self.sequence}</b>" + "x" * size)

    def frames(self, count: int) -> list[tuple[int, bytes]]:
        """The next C{count} frames the peer receives (opcode, payload)."""
        data, found = b"", []
        while len(found) < count:
            data += self.socket.recv(1 << 20)
            found = [(head & 0x0F, payload) for head, payload in serverFrames(data)]
        return found

    def close(self) -> None:
        self.transport.stopReading()
        self.transport.stopWriting()
        self.transport.socket.close()
        self.socket.close()


@pytest.fixture
def reactor() -> Iterator[EPollReactor]:
    reactor = EPollReactor()
    yield reactor
    reactor.removeAll()


@pytest.fixture
def peer(reactor: EPollReactor) -> Iterator[Peer]:
    peer = Peer(reactor)
    yield peer
    peer.close()


def items(peer: Peer, frames: list[tuple[int, bytes]]) -> list[int]:
    """The sequence numbers that StreamItem frames carry in their content."""
    out = []
    for opcode, payload in frames:
        assert opcode == 1
        out.append(int(payload.split(b"<b>")[1].split(b"</b>")[0]))
    return out


def test_a_plain_delivery_with_nothing_queued_opens_the_express_lane(peer: Peer) -> None:
    assert peer.protocol.express is None
    peer.notifier.changed(peer.change())
    assert peer.protocol.express is not None
    inline = peer.protocol._wire.inline
    peer.notifier.changed(peer.change())
    peer.notifier.changed(peer.change())
    assert peer.protocol._wire.inline == inline  # not through the connection's own write
    assert items(peer, peer.frames(3)) == [1, 2, 3]
    assert peer.transport not in peer.transport.reactor.getWriters()


def test_anything_else_written_leaves_the_lane_and_keeps_its_place(peer: Peer) -> None:
    peer.notifier.changed(peer.change())
    peer.protocol.sendPing(b"p")
    assert peer.protocol.express is None
    peer.notifier.changed(peer.change())
    frames = peer.frames(3)
    assert [opcode for opcode, _ in frames] == [1, 9, 1]
    assert peer.protocol.express is not None


@pytest.mark.parametrize("attribute, value", [
    ("sequenced", True), ("compact", True), ("viewer", object())])
def test_a_change_of_what_a_connection_is_sent_leaves_the_lane(
        peer: Peer, attribute: str, value: object) -> None:
    peer.notifier.changed(peer.change())
    setattr(peer.protocol, attribute, value)
    assert peer.protocol.express is None


def test_a_sequenced_connection_is_sent_its_own_frames_after_the_plain_ones(peer: Peer) -> None:
    peer.notifier.changed(peer.change())
    peer.protocol.sequenced = True
    peer.notifier.changed(peer.change())
    frames = peer.frames(2)
    assert b'itemprop="sequence"' not in frames[0][1]
    assert b'<span itemprop="sequence">2</span>' in frames[-1][1]
    assert peer.protocol.express is None


def test_a_closing_connection_leaves_the_lane(peer: Peer) -> None:
    peer.notifier.changed(peer.change())
    peer.protocol.goAway()
    assert peer.protocol.express is None
    peer.notifier.changed(peer.change())
    frames = peer.frames(2)
    assert [opcode for opcode, _ in frames] == [1, 8]


def test_a_dropped_connection_leaves_the_lane(peer: Peer) -> None:
    peer.notifier.changed(peer.change())
    peer.protocol.dropConnection(abort=True)
    assert peer.protocol.express is None


@pytest.mark.parametrize("backlog, lane", [(EXPRESS_BYTES - 1, False), (EXPRESS_BYTES, True)])
def test_a_backlog_limit_below_an_express_write_keeps_the_connection_out_of_the_lane(
        reactor: EPollReactor, backlog: int, lane: bool) -> None:
    peer = Peer(reactor, backlog=backlog)
    try:
        peer.notifier.changed(peer.change())
        assert (peer.protocol.express is not None) is lane
        assert items(peer, peer.frames(1)) == [1]
    finally:
        peer.close()


def test_frames_over_the_express_size_go_through_the_connection(peer: Peer) -> None:
    peer.notifier.changed(peer.change())
    inline = peer.protocol._wire.inline
    peer.notifier.changed(peer.change(size=EXPRESS_BYTES))
    assert peer.protocol._wire.inline == inline + 1
    assert items(peer, peer.frames(2)) == [1, 2]


def test_what_the_kernel_does_not_take_of_an_express_write_is_queued_in_order(
        peer: Peer) -> None:
    peer.transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    peer.notifier.changed(peer.change())
    sent = 1
    while peer.protocol.express is not None:
        peer.notifier.changed(peer.change(size=60_000))
        sent += 1
    assert peer.transport in peer.transport.reactor.getWriters()
    peer.notifier.changed(peer.change())
    sent += 1
    assert peer.protocol.express is None  # not while anything is queued
    received: list[tuple[int, bytes]] = []
    data = b""
    while len(received) < sent:
        data += peer.socket.recv(1 << 20)
        peer.transport.doWrite()
        received = [(head & 0x0F, payload) for head, payload in serverFrames(data)]
    assert items(peer, received) == list(range(1, sent + 1))
    peer.notifier.changed(peer.change())
    assert peer.protocol.express is not None


def test_an_express_write_after_the_peer_has_gone_is_left_to_the_transport(peer: Peer) -> None:
    peer.notifier.changed(peer.change())
    peer.socket.close()
    for _ in range(3):
        peer.notifier.changed(peer.change())
    assert peer.protocol.express is None
    assert peer.transport.doWrite() is not None  # the error is reported by Twisted's path
