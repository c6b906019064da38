"""
The WebSocket side's own machinery without sockets, on a C{task.Clock}: the rate
limiter's token bucket and the protocol timers that replace txaio's batched timer.
"""

from __future__ import annotations

import base64
import os
from dataclasses import replace

from twisted.internet import abstract
from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory

from rustybeam.changes import Change
from rustybeam.notifier import Delivery, DocumentChangeNotifier
from rustybeam.websocket import (
    DocumentWebSocketFactory,
    DocumentWebSocketProtocol,
    ReactorTimer,
    WebSocketOptions,
    _Bucket,
    pendingBytes,
)


class _Reactor(Clock):
    """A clock that also takes (and ignores) reader and writer registrations."""

    def addWriter(self, writer: object) -> None:
        pass

    def removeWriter(self, writer: object) -> None:
        pass

    def addReader(self, reader: object) -> None:
        pass

    def removeReader(self, reader: object) -> None:
        pass


class Unsent(abstract.FileDescriptor):
    """A Twisted transport whose peer never reads: everything written stays queued
    in Twisted's own buffer, as it does for a slow consumer."""

    def __init__(self, reactor: _Reactor) -> None:
        super().__init__(reactor)
        self.connected = 1

    def writeSomeData(self, data: bytes) -> int:
        return 0

    def getPeer(self) -> IPv4Address:
        return IPv4Address("TCP", "127.0.0.1", 40000)

    def getHost(self) -> IPv4Address:
        return IPv4Address("TCP", "127.0.0.1", 3000)


def test_pending_bytes_counts_what_the_transport_has_not_yet_written() -> None:
    transport = Unsent(_Reactor())
    assert pendingBytes(transport) == 0
    transport.write(b"x" * 100)
    transport.write(b"y" * 20)
    assert pendingBytes(transport) == 120
    transport.dataBuffer, transport.offset = b"z" * 50, 30
    assert pendingBytes(transport) == 20 + 120
    wrapper = ProtocolWrapper(WrappingFactory(Factory.forProtocol(Protocol)), Protocol())
    wrapper.makeConnection(transport)
    assert pendingBytes(wrapper) == 140


def openConnection(limit: int) -> tuple[DocumentWebSocketProtocol, Unsent, DocumentChangeNotifier]:
    """A protocol past its opening handshake on an L{Unsent} transport."""
    clock = _Reactor()
    notifier = DocumentChangeNotifier()
    options = WebSocketOptions(maxBacklogBytes=limit, autoPingInterval=0)
    factory = DocumentWebSocketFactory(None, notifier, options, clock)  # type: ignore[arg-type]
    protocol = factory.connect("127.0.0.1", "/d.html", None)
    transport = Unsent(clock)
    protocol.makeConnection(transport)
    key = base64.b64encode(os.urandom(16)).decode()
    protocol.dataReceived(
        "GET /d.html HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode())
    assert protocol.state == DocumentWebSocketProtocol.STATE_OPEN
    return protocol, transport, notifier


def test_slow_consumer_limit_counts_the_bytes_already_queued() -> None:
    """An item is sent while what is queued plus the item fits in the backlog limit;
    the item that would pass it closes the connection with 1008 instead."""
    item = lambda n: Change("PUT", "/d.html", "#a", n, "x" * 1000)  # noqa: E731
    frame = len(Delivery(item(1)).message().payloadHybi)
    protocol, transport, notifier = openConnection(limit=10**9)
    handshake = pendingBytes(transport)
    assert handshake > 0
    protocol.factory.options = replace(protocol.factory.options,
                                       maxBacklogBytes=handshake + 2 * frame)
    notifier.changed(item(1))
    notifier.changed(item(2))
    assert protocol.state == DocumentWebSocketProtocol.STATE_OPEN
    assert pendingBytes(transport) == handshake + 2 * frame
    notifier.changed(item(3))
    assert protocol.state == DocumentWebSocketProtocol.STATE_CLOSING
    queued = b"".join(transport._tempDataBuffer)
    assert pendingBytes(transport) == len(queued)
    close = queued[handshake + 2 * frame:]
    assert close[0] == 0x88 and int.from_bytes(close[2:4], "big") == 1008
    assert notifier.watchers == 0


def test_bucket_allows_a_burst_then_the_sustained_rate() -> None:
    bucket = _Bucket(tokens=3.0, stamp=0.0)
    assert [bucket.take(0.0, rate=2.0, burst=3) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(0.5, rate=2.0, burst=3) is True
    assert bucket.take(0.5, rate=2.0, burst=3) is False
    assert bucket.strikes == 2


def test_bucket_never_saves_more_than_a_burst() -> None:
    bucket = _Bucket(tokens=0.0, stamp=0.0)
    taken = [bucket.take(1000.0, rate=2.0, burst=3) for _ in range(5)]
    assert taken == [True, True, True, False, False]


def test_bucket_forgives_strikes_once_it_has_filled_up_again() -> None:
    bucket = _Bucket(tokens=0.0, stamp=0.0)
    assert not bucket.take(0.0, rate=1.0, burst=2)
    assert bucket.strikes == 1
    assert bucket.take(10.0, rate=1.0, burst=2)
    assert bucket.strikes == 0


def test_protocol_timers_fire_exactly_on_time() -> None:
    clock = Clock()
    fired: list[float] = []
    ReactorTimer(clock).call_later(0.5, lambda: fired.append(clock.seconds()))
    clock.advance(0.49)
    assert fired == []
    clock.advance(0.01)
    assert fired == [0.5]


def test_cancelling_a_timer_that_already_fired_is_harmless() -> None:
    clock = Clock()
    call = ReactorTimer(clock).call_later(1, lambda: None)
    clock.advance(1)
    call.cancel()
    cancelled = ReactorTimer(clock).call_later(1, lambda: (_ for _ in ()).throw(AssertionError))
    cancelled.cancel()
    clock.advance(2)


def test_default_limits_are_safe() -> None:
    options = WebSocketOptions()
    assert 0 < options.maxMessageSize <= 1024 * 1024
    assert 0 < options.maxConnectionsPerAddress < options.maxConnections
    assert options.autoPingInterval > options.autoPingTimeout > 0
    assert options.allowedOrigins == ("*",)


def test_waiting_for_connections_to_close_gives_up_after_the_timeout() -> None:
    from rustybeam.notifier import DocumentChangeNotifier
    from rustybeam.websocket import DocumentWebSocketFactory

    clock = Clock()
    factory = DocumentWebSocketFactory(None, DocumentChangeNotifier(), clock=clock)  # type: ignore[arg-type]
    assert factory.whenClosed(5).called
    protocol = factory.connect("127.0.0.1", "/d.html", None)
    waiting = factory.whenClosed(5)
    assert not waiting.called
    factory.release(protocol)
    assert waiting.called
    factory.connect("127.0.0.1", "/d.html", None)
    stuck = factory.whenClosed(5)
    clock.advance(5)
    assert stuck.called


def test_allowed_origin_matches_scheme_host_and_port() -> None:
    from rustybeam.notifier import DocumentChangeNotifier
    from rustybeam.websocket import DocumentWebSocketFactory

    options = WebSocketOptions(allowedOrigins=("https://good.example", "http://*.trusted.example"))
    factory = DocumentWebSocketFactory(None, DocumentChangeNotifier(), options, Clock())  # type: ignore[arg-type]
    assert factory.originAllowed("https://good.example")
    assert factory.originAllowed("HTTPS://Good.Example")
    assert factory.originAllowed("http://app.trusted.example")
    assert factory.originAllowed(None)
    assert not factory.originAllowed("https://good.example:8443")
    assert not factory.originAllowed("http://good.example")
    assert not factory.originAllowed("https://evil.example")
    assert not factory.originAllowed("http://app.trusted.example:8080")
