"""
The WebSocket side's own machinery without sockets, on a C{task.Clock}: the rate
limiter's token bucket and the timer wheel that replaces txaio's batched timer.
"""

from __future__ import annotations

import base64
import os
from dataclasses import replace

from twisted.internet import abstract
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory

import json
import zlib
from pathlib import Path
from typing import Callable

import pytest
from conftest import clientFrame, serverFrames
from twisted.web.test.requesthelper import DummyRequest

from rustybeam import markup, selectors
from rustybeam.changes import Change
from rustybeam.documents import DocumentStore, StoreOptions
from rustybeam.errors import Problem
from rustybeam.notifier import Batch, Delivery, DocumentChangeNotifier
from rustybeam.websocket import (
    DocumentWebSocketFactory,
    DocumentWebSocketProtocol,
    WebSocketOptions,
    WebSocketUpgrade,
    isUpgrade,
    _Bucket,
)
from rustybeam.timers import TimerWheel
from rustybeam.wire import Wire


def pendingBytes(transport: object) -> int:
    """What the connection's wire counts as not yet taken by the kernel."""
    return Wire(transport).pending()


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


def openConnection(limit: int, store: object = None, httpRequest: object = None,
                   extensions: str = "", **options: object
                   ) -> tuple[DocumentWebSocketProtocol, Unsent, DocumentChangeNotifier]:
    """A protocol past its opening handshake on an L{Unsent} transport."""
    clock = _Reactor()
    notifier = DocumentChangeNotifier()
    settings = WebSocketOptions(maxBacklogBytes=limit, autoPingInterval=0, **options)  # type: ignore[arg-type]
    factory = DocumentWebSocketFactory(store, notifier, settings, clock)  # type: ignore[arg-type]
    protocol = factory.connect("127.0.0.1", "/d.html", None)
    if httpRequest is not None:
        protocol.httpRequest = httpRequest
    transport = Unsent(clock)
    protocol.makeConnection(transport)
    key = base64.b64encode(os.urandom(16)).decode()
    protocol.dataReceived((
        "GET /d.html HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        + (f"Sec-WebSocket-Extensions: {extensions}\r\n" if extensions else "")
        + "Sec-WebSocket-Version: 13\r\n\r\n").encode())
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


@pytest.mark.parametrize("batch", [False, True])
def test_a_sequenced_connection_that_falls_behind_is_closed_too(batch: bool) -> None:
    protocol, transport, notifier = openConnection(limit=10**9)
    protocol.sequenced = True
    handshake = pendingBytes(transport)
    protocol.factory.options = replace(protocol.factory.options, maxBacklogBytes=handshake + 100)
    items = [Change("PUT", "/d.html", "#a", n, "x" * 1000) for n in (1, 2)]
    if batch:
        notifier.changedAll(items)
    else:
        notifier.changed(items[0])
    assert protocol.state == DocumentWebSocketProtocol.STATE_CLOSING
    close = b"".join(transport._tempDataBuffer)[handshake:]
    assert close[0] == 0x88 and int.from_bytes(close[2:4], "big") == 1008


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
    TimerWheel(clock).call_later(0.5, lambda: fired.append(clock.seconds()))
    clock.advance(0.49)
    assert fired == []
    clock.advance(0.01)
    assert fired == [0.5]


def test_cancelling_a_timer_that_already_fired_is_harmless() -> None:
    clock = Clock()
    call = TimerWheel(clock).call_later(1, lambda: None)
    clock.advance(1)
    call.cancel()
    cancelled = TimerWheel(clock).call_later(1, lambda: (_ for _ in ()).throw(AssertionError))
    cancelled.cancel()
    clock.advance(2)


def test_timers_are_never_early_and_at_most_one_tick_late() -> None:
    clock = Clock()
    clock.advance(0.123)
    wheel = TimerWheel(clock, resolution=0.05)
    fired: list[float] = []
    wheel.call_later(2, lambda: fired.append(clock.seconds()))
    clock.advance(1.99)
    clock.advance(0.0069)
    assert fired == []
    clock.advance(0.05)
    assert len(fired) == 1 and 2.123 <= fired[0] <= 2.173 + 1e-9


def test_many_timers_share_one_reactor_call() -> None:
    clock = Clock()
    wheel = TimerWheel(clock)
    fired: list[int] = []
    timers = [wheel.call_later(10 + i * 0.001, fired.append, i) for i in range(1000)]
    assert len(clock.getDelayedCalls()) == 1
    for timer in timers[::2]:
        timer.cancel()
    assert len(wheel) == 500
    clock.advance(11)
    assert sorted(fired) == list(range(1, 1000, 2))
    assert clock.getDelayedCalls() == [] and len(wheel) == 0


def test_an_earlier_timer_rearms_the_wheel() -> None:
    clock = Clock()
    wheel = TimerWheel(clock)
    fired: list[str] = []
    wheel.call_later(30, fired.append, "ping")
    wheel.call_later(1, fired.append, "pong timeout")
    clock.advance(1)
    assert fired == ["pong timeout"]
    clock.advance(29)
    assert fired == ["pong timeout", "ping"]
    assert clock.getDelayedCalls() == []


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


# The command protocol, in process: client frames in, server frames out


class Client:
    """Drives one in-process connection: sends client frames, reads server frames."""

    def __init__(self, tmp_path: Path, **options: object) -> None:
        (tmp_path / "d.html").write_text(
            "<!DOCTYPE html><html><body><h1 id=t>T</h1><ul id=l><li id=a>A</li></ul></body></html>")
        (tmp_path / "s.css").write_text("p {}")
        self.store = DocumentStore(str(tmp_path), options=StoreOptions(fsync=False))
        self.protocol, self.transport, self.notifier = openConnection(
            10**9, self.store, **options)
        self.read = len(b"".join(self.transport._tempDataBuffer))

    def send(self, message: object, binary: bool = False) -> None:
        text = message if isinstance(message, (str, bytes)) else json.dumps(message)
        data = text.encode() if isinstance(text, str) else text
        self.protocol.dataReceived(clientFrame(zlib.compress(data) if binary else data,
                                               2 if binary else 1))

    def frames(self) -> list[tuple[int, bytes]]:
        """The frames the server wrote since the last call: (opcode, payload)."""
        data = b"".join(self.transport._tempDataBuffer)
        new, self.read = data[self.read:], len(data)
        return [(head & 0x0F, payload) for head, payload in serverFrames(new)]

    def replies(self) -> list[dict[str, object]]:
        out = []
        for opcode, payload in self.frames():
            assert opcode in (1, 2), opcode
            out.append(json.loads(zlib.decompress(payload) if opcode == 2 else payload))
        return out

    def reply(self, message: object, binary: bool = False) -> dict[str, object]:
        self.send(message, binary)
        (answer,) = self.replies()
        return answer

    def change(self, css: str, sequence: int = 1) -> None:
        self.notifier.changed(change(css, sequence))


def change(css: str, sequence: int = 1, url: str = "/d.html") -> Change:
    before = markup.parseDocument(
        "<html><body><h1 id=t>T</h1><ul id=l><li id=a>A</li></ul></body></html>")
    after = markup.copyTree(before)
    removed = tuple(selectors.compile(css).select(before.getroot()))
    inserted = tuple(selectors.compile(css).select(after.getroot()))
    return Change("PUT", url, css, sequence, "x", before, after, removed, inserted,
                  tuple(e.getparent() for e in inserted))


@pytest.fixture
def client(tmp_path: Path) -> Client:
    return Client(tmp_path)


def test_a_new_connection_watches_its_whole_document(client: Client) -> None:
    client.change("#t")
    ((opcode, payload),) = client.frames()
    assert opcode == 1 and payload.startswith(b"<div itemscope")


def test_subscribing_replaces_the_implicit_watch_and_is_acknowledged(client: Client) -> None:
    sequence = client.store.sequence("/d.html")
    assert client.reply({"action": "subscribe", "selector": "#a"}) == {
        "type": "subscribed", "url": "/d.html", "selector": "#a", "sequence": sequence}
    client.change("#t")
    assert client.frames() == []
    client.change("#a")
    assert len(client.frames()) == 1
    assert client.reply({"action": "subscribe", "url": "/d.html"})["selector"] is None
    client.change("#t")
    assert len(client.frames()) == 1


@pytest.mark.parametrize("message, code", [
    ("not json", "bad-json"),
    ("[1, 2]", "bad-json"),
    (b"\xff\xfe", "bad-json"),
    ({"action": "dance"}, "unknown-action"),
    ({"url": "/d.html"}, "unknown-action"),
    ({"action": "subscribe", "url": 7}, "bad-url"),
    ({"action": "subscribe", "url": "/../x.html"}, "bad-url"),
    ({"action": "subscribe", "selector": 7}, "bad-selector"),
    ({"action": "subscribe", "selector": "div["}, "bad-selector"),
    ({"action": "subscribe", "since": -1}, "bad-since"),
    ({"action": "subscribe", "since": True}, "bad-since"),
    ({"action": "subscribe", "since": "1"}, "bad-since"),
    ({"action": "subscribe", "url": "/s.css", "selector": "p"}, "not-html"),
    ({"action": "unsubscribe", "url": 7}, "bad-url"),
])
def test_a_bad_command_gets_an_error_and_the_connection_stays_open(
    client: Client, message: object, code: str
) -> None:
    client.send(message, binary=isinstance(message, bytes))
    (answer,) = client.replies()
    assert (answer["type"], answer["error"]) == ("error", code)
    assert isinstance(answer["message"], str) and answer["message"]
    assert client.protocol.state == DocumentWebSocketProtocol.STATE_OPEN
    assert client.reply({"action": "subscribe"})["type"] == "subscribed"


def test_an_unknown_action_is_named_in_the_error(client: Client) -> None:
    assert client.reply({"action": "x" * 100})["message"] == f"unknown action: {'x' * 64!r}"


def test_unsubscribing_says_how_many_subscriptions_ended(client: Client) -> None:
    client.reply({"action": "subscribe", "selector": "#a"})
    client.reply({"action": "subscribe", "selector": "#t"})
    assert client.reply({"action": "unsubscribe", "selector": "#a"}) == {
        "type": "unsubscribed", "url": "/d.html", "selector": "#a", "ended": 1}
    client.change("#a")
    assert client.frames() == []
    assert client.reply({"action": "unsubscribe"})["ended"] == 1
    client.change("#t")
    assert client.frames() == []


def test_unsubscribing_the_connection_document_ends_the_implicit_watch(client: Client) -> None:
    assert client.reply({"action": "unsubscribe"})["ended"] == 1
    client.change("#t")
    assert client.frames() == []
    client.reply({"action": "subscribe", "selector": "#t"})
    client.change("#t")
    assert len(client.frames()) == 1


def test_subscriptions_over_the_limit_are_refused_with_an_error(tmp_path: Path) -> None:
    client = Client(tmp_path, maxSubscriptions=1)
    assert client.reply({"action": "subscribe", "selector": "#a"})["type"] == "subscribed"
    refused = client.reply({"action": "subscribe", "selector": "#t"})
    assert (refused["error"], refused["message"]) == ("too-many-subscriptions",
                                                      "at most 1 subscriptions")


def test_a_binary_command_is_answered_and_then_served_in_compact_frames(client: Client) -> None:
    assert client.reply({"action": "subscribe"}, binary=True)["type"] == "subscribed"
    client.change("#t")
    ((opcode, payload),) = client.frames()
    assert opcode == 2 and zlib.decompress(payload).startswith(b"<div itemscope")
    client.send({"action": "dance"})
    ((opcode, _),) = client.frames()
    assert opcode == 2


def test_a_bad_binary_frame_is_an_error(client: Client) -> None:
    client.protocol.dataReceived(clientFrame(b"not zlib", 2))
    answer = json.loads(zlib.decompress(client.frames()[0][1]))
    assert answer["error"] == "bad-binary"
    assert answer["message"].startswith("binary frames must be zlib JSON: ")


def test_excess_messages_are_refused_then_persistent_abuse_is_closed_with_1008(
    tmp_path: Path
) -> None:
    client = Client(tmp_path, messagesPerSecond=1.0, messageBurst=2, rateLimitStrikes=2)
    for _ in range(2):
        assert client.reply({"action": "subscribe"})["type"] == "subscribed"
    for _ in range(2):
        refused = client.reply({"action": "subscribe"})
        assert (refused["error"], refused["message"]) == ("rate-limited",
                                                          "too many messages; slow down")
    client.send({"action": "subscribe"})
    ((opcode, payload),) = client.frames()
    assert opcode == 8 and int.from_bytes(payload[:2], "big") == 1008
    assert payload[2:] == b"message rate limit exceeded"


def test_a_resumed_subscription_replays_what_was_missed_or_says_reset(client: Client) -> None:
    client.reply({"action": "subscribe", "selector": "#a"})
    for n in (1, 2):
        client.change("#a", sequence=n)
    client.frames()
    client.protocol.factory.store._sequences["/d.html"] = 2
    answer = client.reply({"action": "subscribe", "selector": "#l", "since": 2})
    assert answer["sequence"] == 2
    client.send({"action": "subscribe", "selector": "#t", "since": 7})
    acknowledged, reset = client.replies()
    assert acknowledged["type"] == "subscribed"
    assert reset == {"type": "reset", "url": "/d.html", "sequence": 2}
    client.change("#a", sequence=3)
    ((_, payload),) = client.frames()
    assert b'<span itemprop="sequence">3</span>' in payload


def test_a_replay_does_not_repeat_what_the_connection_already_had(tmp_path: Path) -> None:
    client = Client(tmp_path)
    client.protocol.sequenced = True
    for n in (1, 2):
        client.change("#a", sequence=n)
    assert len(client.frames()) == 2
    client.protocol.factory.store._sequences["/d.html"] = 2
    client.send({"action": "subscribe", "selector": "#a", "since": 0})
    assert [opcode for opcode, _ in client.frames()] == [1]


class Refusing:
    key = "nobody"

    def mayRead(self, url: str, selector: str | None, tree: object) -> bool:
        self.asked = (url, selector, tree is not None)
        return False


def test_a_viewer_may_subscribe_only_to_what_it_may_read(client: Client) -> None:
    viewer = Refusing()
    client.protocol.viewer = viewer  # type: ignore[assignment]
    refused = client.reply({"action": "subscribe", "selector": "#a"})
    assert (refused["error"], refused["message"]) == ("forbidden", "not allowed to read /d.html")
    assert viewer.asked == ("/d.html", "#a", True)
    client.reply({"action": "subscribe"})
    assert viewer.asked == ("/d.html", None, False)


class Redacting:
    key = "partial"

    def redact(self, change: Change) -> str:
        return "<li>part</li>"


def test_a_connection_with_a_viewer_gets_its_own_content_not_the_shared_plain_frame(
        client: Client) -> None:
    delivery = Delivery(change("#a"))
    delivery.plainFrame()
    client.protocol.viewer = Redacting()  # type: ignore[assignment]
    client.protocol.deliver(delivery)
    ((opcode, payload),) = client.frames()
    assert b"<li>part</li>" in payload


def test_a_sequenced_connection_gets_the_sequence_not_the_shared_plain_frame(client: Client) -> None:
    delivery = Delivery(change("#a", sequence=7))
    delivery.plainFrame()
    client.protocol.sequenced = True
    client.protocol.deliver(delivery)
    ((opcode, payload),) = client.frames()
    assert b'<span itemprop="sequence">7</span>' in payload


def test_a_plain_connection_gets_the_shared_plain_frame(client: Client) -> None:
    delivery = Delivery(change("#a"))
    client.protocol.deliver(delivery)
    assert b"".join(client.transport._tempDataBuffer).endswith(delivery.plainFrame())


def _writes(client: Client, deliver: Callable[[], None]) -> int:
    before = len(client.transport._tempDataBuffer)
    deliver()
    return len(client.transport._tempDataBuffer) - before


@pytest.mark.parametrize("form", ["plain", "sequenced", "viewer", "compact", "deflate"])
def test_a_batch_is_one_write_of_the_frames_the_changes_would_get_one_by_one(
        tmp_path: Path, form: str) -> None:
    (tmp_path / "one").mkdir()
    (tmp_path / "batched").mkdir()
    extensions = "permessage-deflate" if form == "deflate" else ""
    one, batched = (Client(tmp_path / "one", extensions=extensions),
                    Client(tmp_path / "batched", extensions=extensions))
    for c in (one, batched):
        c.protocol.sequenced = form == "sequenced"
        c.protocol.compact = form == "compact"
        if form == "viewer":
            c.protocol.viewer = Redacting()  # type: ignore[assignment]
    items = [change("#a", sequence=1), change("#t", sequence=2)]
    assert _writes(one, lambda: [one.protocol.deliver(Delivery(i)) for i in items]) == 2
    assert _writes(batched, lambda: batched.protocol.deliverAll(
        Batch([Delivery(i) for i in items]))) == 1
    expected = one.frames()
    assert len(expected) == 2 and batched.frames() == expected


def test_a_batch_does_not_repeat_what_a_sequenced_connection_already_had(client: Client) -> None:
    client.protocol.sequenced = True
    client.protocol.deliver(Delivery(change("#a", sequence=1)))
    client.frames()
    client.protocol.deliverAll(Batch([Delivery(change("#a", sequence=n)) for n in (1, 2)]))
    ((_, payload),) = client.frames()
    assert b'<span itemprop="sequence">2</span>' in payload


def test_going_away_closes_with_1001(client: Client) -> None:
    client.protocol.goAway()
    ((opcode, payload),) = client.frames()
    assert (opcode, int.from_bytes(payload[:2], "big"), payload[2:]) == (
        8, 1001, b"server shutting down")
    client.protocol.goAway()
    assert client.frames() == []


def test_a_closing_connection_gets_no_more_items(client: Client) -> None:
    client.protocol.goAway()
    client.frames()
    client.change("#t")
    assert client.frames() == []


def test_connections_over_a_limit_are_refused_with_503() -> None:
    factory = DocumentWebSocketFactory(None, DocumentChangeNotifier(),  # type: ignore[arg-type]
                                       WebSocketOptions(maxConnections=3,
                                                        maxConnectionsPerAddress=2), Clock())
    factory.admit("10.0.0.1")
    opened = [factory.connect("10.0.0.1", "/d.html", None) for _ in range(2)]
    with pytest.raises(Problem) as e:
        factory.admit("10.0.0.1")
    assert (e.value.status, e.value.message) == (
        503, "connection limit reached: too many connections from your address")
    factory.connect("10.0.0.2", "/d.html", None)
    with pytest.raises(Problem) as e:
        factory.admit("10.0.0.3")
    assert e.value.message == "connection limit reached: server is full"
    factory.release(opened[0])
    factory.admit("10.0.0.1")
    factory.release(opened[0])
    assert factory.perAddress == {"10.0.0.1": 1, "10.0.0.2": 1}
    factory.release(opened[1])
    assert factory.perAddress == {"10.0.0.2": 1}


def upgradeRequest(**headers: str) -> DummyRequest:
    request = DummyRequest([b"d.html"])
    request.client = IPv4Address("TCP", "192.0.2.7", 5555)
    for name, value in headers.items():
        request.requestHeaders.setRawHeaders(name.replace("_", "-").encode(), [value.encode()])
    return request


@pytest.mark.parametrize("value, expected", [
    ("websocket", True), ("WebSocket", True), ("keep-alive, websocket", True),
    (" h2c ,websocket ", True), ("h2c", False), ("websockets", False),
])
def test_an_upgrade_is_recognised_by_its_websocket_token(value: str, expected: bool) -> None:
    assert isUpgrade(upgradeRequest(upgrade=value)) is expected


def test_a_request_without_upgrade_is_not_one() -> None:
    assert not isUpgrade(upgradeRequest())


def test_an_upgrade_is_checked_for_version_origin_and_limits() -> None:
    factory = DocumentWebSocketFactory(None, DocumentChangeNotifier(),  # type: ignore[arg-type]
                                       WebSocketOptions(allowedOrigins=("https://good.example",),
                                                        maxConnectionsPerAddress=1), Clock())
    check = WebSocketUpgrade(factory).check
    for request, status in [
        (upgradeRequest(sec_websocket_version="8"), 426),
        (upgradeRequest(), 426),
        (upgradeRequest(sec_websocket_version="13", origin="https://evil.example"), 403),
    ]:
        with pytest.raises(Problem) as e:
            check(request)
        assert e.value.status == status
    check(upgradeRequest(sec_websocket_version="13", origin="https://good.example"))
    check(upgradeRequest(sec_websocket_version="13"))
    factory.connect("192.0.2.7", "/d.html", None)
    with pytest.raises(Problem) as e:
        check(upgradeRequest(sec_websocket_version="13"))
    assert e.value.status == 503


def test_a_transport_without_a_buffer_has_nothing_pending() -> None:
    from types import SimpleNamespace

    from twisted.internet.testing import StringTransport

    assert pendingBytes(StringTransport()) == 0
    assert pendingBytes(SimpleNamespace(dataBuffer=b"abc")) == 3


class Site:
    def __init__(self) -> None:
        self.logged: list[tuple[int, int]] = []

    def log(self, request: DummyRequest) -> None:
        self.logged.append((request.code, request.sentLength))


def test_the_opening_handshake_is_written_to_the_access_log_once() -> None:
    from types import SimpleNamespace

    site = Site()
    request = upgradeRequest()
    request.channel = SimpleNamespace(site=site)
    protocol, transport, _ = openConnection(10**9, httpRequest=request)
    assert site.logged == [(101, 0)]
    protocol.connectionLost(Failure(ConnectionDone()))
    assert site.logged == [(101, 0)]


def test_a_handshake_that_never_opens_is_logged_as_400() -> None:
    from types import SimpleNamespace

    site = Site()
    request = upgradeRequest()
    request.channel = SimpleNamespace(site=site)
    factory = DocumentWebSocketFactory(None, DocumentChangeNotifier(),  # type: ignore[arg-type]
                                       WebSocketOptions(autoPingInterval=0), _Reactor())
    protocol = factory.connect("127.0.0.1", "/d.html", None)
    protocol.httpRequest = request
    protocol.makeConnection(Unsent(factory.clock))  # type: ignore[arg-type]
    protocol.connectionLost(Failure(ConnectionDone()))
    assert site.logged == [(400, 0)]
    assert factory.open == set() and factory.notifier.watchers == 0


@pytest.mark.parametrize("message, error", [
    ("not json", "messages must be JSON objects"),
    ("[1, 2]", "messages must be JSON objects"),
    ({"action": "subscribe", "url": 7}, "url must be a string"),
    ({"action": "subscribe", "selector": 7}, "selector must be a string"),
    ({"action": "subscribe", "since": -1}, "since must be a non-negative integer"),
    ({"action": "subscribe", "url": "/s.css", "selector": "p"},
     "selectors apply only to .html and .htm documents"),
])
def test_a_bad_command_error_says_what_is_wrong(client: Client, message: object,
                                                error: str) -> None:
    assert client.reply(message)["message"] == error


def test_replies_are_compact_json(client: Client) -> None:
    sequence = client.store.sequence("/d.html")
    client.send({"action": "subscribe", "selector": "#a"})
    ((opcode, payload),) = client.frames()
    assert (opcode, payload) == (1, b'{"type":"subscribed","url":"/d.html","selector":"#a",'
                                    b'"sequence":%d}' % sequence)


def test_a_subscription_since_zero_is_a_resumption(client: Client) -> None:
    client.send({"action": "subscribe", "since": 0})
    assert client.replies()[0]["type"] == "subscribed"
    assert client.protocol.sequenced


def test_only_the_first_subscription_ends_the_implicit_watch(client: Client) -> None:
    client.reply({"action": "subscribe"})
    client.reply({"action": "subscribe", "selector": "#a"})
    client.change("#t")
    assert len(client.frames()) == 1


@pytest.mark.parametrize("unsubscribe", [
    {"action": "unsubscribe", "selector": "#a"},
    {"action": "unsubscribe", "url": "/s.css"},
])
def test_unsubscribing_something_else_keeps_the_implicit_watch_until_a_subscription(
        client: Client, unsubscribe: dict[str, object]) -> None:
    assert client.reply(unsubscribe)["ended"] == 0
    client.change("#l")
    assert len(client.frames()) == 1
    client.reply({"action": "subscribe", "selector": "#t"})
    client.change("#l")
    assert client.frames() == []


def test_a_first_binary_message_over_the_rate_is_refused_in_a_binary_frame(
        tmp_path: Path) -> None:
    client = Client(tmp_path, messageBurst=0)
    client.send({"action": "subscribe"}, binary=True)
    ((opcode, payload),) = client.frames()
    assert opcode == 2 and json.loads(zlib.decompress(payload))["error"] == "rate-limited"


def test_a_resending_connection_remembers_the_last_sequences_it_was_sent(
        client: Client) -> None:
    """Up to twice SENT_MEMORY sequence numbers per document are remembered; past
    that the oldest are forgotten, keeping the last SENT_MEMORY."""
    from rustybeam.websocket import SENT_MEMORY

    protocol = client.protocol
    protocol.sequenced = True
    sent = lambda n, url="/d.html": len(_deliver(protocol, Change(  # noqa: E731
        "PUT", url, "#a", n, "x"), client))
    assert [sent(n) for n in range(1, 2 * SENT_MEMORY + 1)] == [1] * (2 * SENT_MEMORY)
    assert sent(1) == 0 and sent(SENT_MEMORY) == 0
    assert sent(1, "/other.html") == 1
    assert sent(2 * SENT_MEMORY + 1) == 1
    assert sent(SENT_MEMORY + 1) == 1
    assert sent(SENT_MEMORY + 2) == 0 and sent(2 * SENT_MEMORY + 1) == 0


def _deliver(protocol: DocumentWebSocketProtocol, item: Change,
             client: Client) -> list[tuple[int, bytes]]:
    protocol.deliver(Delivery(item))
    return client.frames()


def test_an_unlisted_origin_of_the_server_itself_may_upgrade() -> None:
    factory = DocumentWebSocketFactory(None, DocumentChangeNotifier(),  # type: ignore[arg-type]
                                       WebSocketOptions(allowedOrigins=("https://good.example",)),
                                       Clock())
    check = WebSocketUpgrade(factory).check
    check(upgradeRequest(sec_websocket_version="13", origin="http://beam.example:8080",
                         host="beam.example:8080"))
    with pytest.raises(Problem):
        check(upgradeRequest(sec_websocket_version="13", origin="http://beam.example:8080",
                             host="beam.example:8081"))


def test_going_away_before_the_handshake_aborts_the_connection() -> None:
    from twisted.internet.testing import StringTransport

    class Aborting(StringTransport):
        aborted = False

        def unregisterProducer(self) -> None:
            self.producer = None

        def abortConnection(self) -> None:
            self.aborted = True
            super().abortConnection()

    factory = DocumentWebSocketFactory(None, DocumentChangeNotifier(),  # type: ignore[arg-type]
                                       WebSocketOptions(autoPingInterval=0), _Reactor())
    protocol = factory.connect("127.0.0.1", "/d.html", None)
    transport = Aborting()
    protocol.makeConnection(transport)
    assert protocol.state == DocumentWebSocketProtocol.STATE_CONNECTING
    protocol.goAway()
    assert transport.disconnecting and transport.aborted


def test_going_away_while_closing_does_nothing_more(client: Client) -> None:
    from twisted.internet.testing import StringTransport

    transport = StringTransport()
    client.protocol.transport = transport
    client.protocol.goAway()
    assert client.protocol.state == DocumentWebSocketProtocol.STATE_CLOSING
    client.protocol.goAway()
    assert not transport.disconnecting


def test_a_client_that_never_answers_the_close_is_dropped_after_the_timeout(
        client: Client) -> None:
    client.protocol.goAway()
    clock = client.protocol.factory.clock
    clock.advance(client.protocol.factory.options.closeHandshakeTimeout + 1)
    assert client.protocol.wasCloseHandshakeTimeout
    assert client.transport.disconnecting


def test_autobahn_synchronous_and_chopped_writes_keep_their_order(
        client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    """Autobahn sends what it queues (synchronous or chopped writes) one piece per
    turn of its loop; frames written meanwhile must wait their turn."""
    import txaio

    protocol, clock = client.protocol, client.protocol.factory.clock
    monkeypatch.setattr(txaio.config, "loop", clock)
    client.frames()
    written = lambda: b"".join(client.transport._tempDataBuffer)[client.read:]  # noqa: E731
    protocol.sendData(b"a1", sync=True)
    protocol.sendData(b"b1", sync=True)
    protocol.sendData(b"c1")
    assert written() == b"a1"
    for _ in range(5):
        clock.advance(1)
    assert written() == b"a1b1c1"
    client.read += 6
    protocol.sendData(b"d1d2d3", chopsize=2)
    assert written() == b"d1"
    for _ in range(5):
        clock.advance(1)
    assert written() == b"d1d2d3"
    client.read += 6
    protocol.sendData(b"e1")
    protocol.sendData(b"f1")
    assert written() == b"e1f1"


def test_an_open_connection_keeps_only_what_differs_from_its_class(client: Client) -> None:
    from rustybeam.websocket import _HANDSHAKE_LEFTOVERS

    protocol = client.protocol
    state = protocol.__dict__
    assert not set(_HANDSHAKE_LEFTOVERS) & set(state)
    assert "openHandshakeTimeoutCall" not in state
    assert "trafficStats" not in state and "send_queue" not in state
    cls = type(protocol)
    assert all(getattr(cls, name, object()) is not value for name, value in state.items())
    assert {"_bucket", "_sent", "transport"} <= set(state)
    assert protocol._wire is not None and protocol.factory is not None  # in slots


def test_frames_queued_before_the_connection_opened_are_still_sent(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import txaio

    factory = DocumentWebSocketFactory(None, DocumentChangeNotifier(),  # type: ignore[arg-type]
                                       WebSocketOptions(autoPingInterval=0), _Reactor())
    monkeypatch.setattr(txaio.config, "loop", factory.clock)
    protocol = factory.connect("127.0.0.1", "/d.html", None)
    transport = Unsent(factory.clock)
    protocol.makeConnection(transport)
    protocol.sendData(b"first", sync=True)
    protocol.sendData(b"second", sync=True)
    key = base64.b64encode(os.urandom(16)).decode()
    protocol.dataReceived(
        "GET /d.html HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode())
    assert protocol.state == DocumentWebSocketProtocol.STATE_OPEN
    for _ in range(5):
        factory.clock.advance(1)
    written = b"".join(transport._tempDataBuffer)
    assert written.startswith(b"first") and b"second" in written


def test_a_connection_without_an_opening_handshake_timeout_is_compacted_too(
        tmp_path: Path) -> None:
    client = Client(tmp_path, openHandshakeTimeout=0)
    assert "openHandshakeTimeoutCall" not in client.protocol.__dict__
    assert "http_headers" not in client.protocol.__dict__


def test_an_upgrade_request_without_a_site_is_not_logged() -> None:
    from types import SimpleNamespace

    request = upgradeRequest()
    request.channel = SimpleNamespace(site=None)
    protocol, _, _ = openConnection(10**9, httpRequest=request)
    protocol.connectionLost(Failure(ConnectionDone()))
    assert protocol.httpRequest is None


def test_waiting_for_connections_that_close_in_time_leaves_no_timer() -> None:
    clock = Clock()
    factory = DocumentWebSocketFactory(None, DocumentChangeNotifier(), clock=clock)  # type: ignore[arg-type]
    protocol = factory.connect("127.0.0.1", "/d.html", None)
    waiting = factory.whenClosed(5)
    factory.release(protocol)
    assert waiting.called
    assert clock.getDelayedCalls() == []


def test_an_upgrade_request_without_a_site_still_opens_a_watching_connection() -> None:
    from types import SimpleNamespace

    request = upgradeRequest()
    request.channel = SimpleNamespace(site=None)
    protocol, transport, notifier = openConnection(10**9, httpRequest=request)
    before = pendingBytes(transport)
    notifier.changed(Change("PUT", "/d.html", "#a", 1, "x"))
    assert pendingBytes(transport) > before


def test_a_resumed_selector_subscription_replays_only_what_touched_its_selector(
        client: Client) -> None:
    client.change("#t", sequence=1)
    client.frames()
    client.protocol.factory.store._sequences["/d.html"] = 1
    client.send({"action": "subscribe", "selector": "#a", "since": 0})
    (acknowledged,) = client.replies()
    assert acknowledged["type"] == "subscribed"


class Recording:
    """A logger that keeps what it is asked to log at info level."""

    def __init__(self) -> None:
        self.infos: list[tuple[str, dict[str, object]]] = []

    def info(self, format: str, **fields: object) -> None:
        self.infos.append((format, fields))

    def debug(self, *args: object, **fields: object) -> None:
        pass


def test_a_slow_consumer_is_logged_and_told_why_it_is_closed() -> None:
    item = lambda n: Change("PUT", "/d.html", "#a", n, "x" * 1000)  # noqa: E731
    protocol, transport, notifier = openConnection(limit=10**9)
    handshake = pendingBytes(transport)
    protocol.factory.options = replace(protocol.factory.options, maxBacklogBytes=handshake + 10)
    log = Recording()
    protocol.log = log  # type: ignore[assignment]
    notifier.changed(item(1))
    assert log.infos == [("closing slow consumer {peer}", {"peer": protocol.peer})]
    close = b"".join(transport._tempDataBuffer)[handshake:]
    assert close[0] == 0x88 and close[4:] == b"client is reading too slowly"
