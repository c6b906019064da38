"""
The hand-over of an HTTP request to a WebSocket protocol (L{WebSocketUpgrade.upgrade})
and the protocol options the factory sets, without a server: a real Twisted Web
C{HTTPChannel} on a C{StringTransport}, driven by the bytes a browser would send.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest
from autobahn.websocket.compress import PerMessageDeflateOffer
from conftest import clientFrame
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from rustybeam.documents import DocumentStore, StoreOptions
from rustybeam.notifier import DocumentChangeNotifier
from rustybeam.websocket import (
    DocumentWebSocketFactory,
    DocumentWebSocketProtocol,
    WebSocketOptions,
    WebSocketUpgrade,
)

PEER = IPv4Address("TCP", "192.0.2.7", 5555)


class Viewer:
    """A viewer that may read everything (the upgrade only carries it along)."""

    def mayRead(self, url: str, selector: str | None, tree: object) -> bool:
        return True


class Upgrading(Resource):
    """The part of the document resource that matters here: upgrade every request."""

    isLeaf = True

    def __init__(self, upgrade: WebSocketUpgrade, viewer: object) -> None:
        super().__init__()
        self.upgrade, self.viewer = upgrade, viewer
        self.returned: list[object] = []
        self.requests: list[Request] = []

    def render(self, request: Request) -> object:
        self.requests.append(request)
        result = self.upgrade.upgrade(request, "/d.html", self.viewer)  # type: ignore[arg-type]
        self.returned.append(result)
        return result


def handshake(key: str, path: str = "/d.html", extra: str = "") -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\n{extra}\r\n").encode()


def accept(key: str) -> bytes:
    import hashlib

    digest = hashlib.sha1(key.encode() + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()
    return base64.b64encode(digest)


class Served:
    """An HTTP connection of a real Twisted Web site whose one resource upgrades."""

    def __init__(self, tmp_path: Path, **options: object) -> None:
        (tmp_path / "d.html").write_text("<!DOCTYPE html><html><body><h1 id=t>T</h1></body></html>")
        store = DocumentStore(str(tmp_path), options=StoreOptions(fsync=False))
        self.notifier = DocumentChangeNotifier()
        self.factory = DocumentWebSocketFactory(
            store, self.notifier, WebSocketOptions(autoPingInterval=0, **options),  # type: ignore[arg-type]
            Clock())
        self.viewer = Viewer()
        self.resource = Upgrading(WebSocketUpgrade(self.factory), self.viewer)
        self.site = Site(self.resource)
        self.channel = self.site.buildProtocol(PEER)
        self.transport = StringTransport(peerAddress=PEER)
        self.transport.protocol = self.channel  # what a TCP transport has
        self.channel.makeConnection(self.transport)

    @property
    def protocol(self) -> DocumentWebSocketProtocol:
        (protocol,) = self.factory.open
        return protocol


@pytest.fixture
def served(tmp_path: Path) -> Served:
    return Served(tmp_path)


def test_an_upgraded_request_gets_the_101_handshake_of_its_own_key(served: Served) -> None:
    key = base64.b64encode(os.urandom(16)).decode()
    served.channel.dataReceived(handshake(key))
    head = served.transport.value()
    assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert b"Sec-WebSocket-Accept: " + accept(key) + b"\r\n" in head
    assert served.protocol.state == DocumentWebSocketProtocol.STATE_OPEN


def test_the_upgrade_takes_the_transport_from_twisted_web(served: Served) -> None:
    served.channel.dataReceived(handshake(base64.b64encode(os.urandom(16)).decode()))
    assert served.resource.returned == [NOT_DONE_YET]
    assert served.transport.protocol is served.protocol
    assert served.protocol.transport is served.transport
    (request,) = served.resource.requests
    assert request.channel.transport is None
    assert served.protocol.httpRequest is None  # logged and let go once open


def test_the_upgraded_connection_watches_the_document_for_its_viewer_and_address(
        served: Served) -> None:
    served.channel.dataReceived(handshake(base64.b64encode(os.urandom(16)).decode()))
    protocol = served.protocol
    assert (protocol.documentUrl, protocol.viewer, protocol.address) == (
        "/d.html", served.viewer, "192.0.2.7")
    assert served.factory.perAddress == {"192.0.2.7": 1}
    assert served.notifier.watchers == 1


def test_the_upgrade_is_written_to_the_access_log_as_101(served: Served) -> None:
    logged: list[tuple[int, bytes]] = []
    served.site.log = lambda request: logged.append((request.code, request.uri))  # type: ignore[method-assign]
    served.channel.dataReceived(handshake(base64.b64encode(os.urandom(16)).decode(), "/d.html?x=1"))
    assert logged == [(101, b"/d.html?x=1")]


def test_frames_after_the_upgrade_reach_the_websocket(served: Served) -> None:
    served.channel.dataReceived(handshake(base64.b64encode(os.urandom(16)).decode()))
    before = len(served.transport.value())
    served.transport.protocol.dataReceived(clientFrame(json.dumps({"action": "nope"}).encode()))
    frame = served.transport.value()[before:]
    assert frame[0] == 0x81
    assert json.loads(frame[2:])["error"] == "unknown-action"


def test_the_paused_transport_is_resumed_for_the_websocket(served: Served) -> None:
    served.transport.pauseProducing()
    served.channel.dataReceived(handshake(base64.b64encode(os.urandom(16)).decode()))
    assert served.transport.producerState == "producing"


def test_a_header_sent_on_several_lines_is_handed_over_whole(served: Served) -> None:
    """Twisted Web keeps repeated header lines apart; the hand-over must join them with
    commas, or a C{Connection: keep-alive} line followed by C{Connection: Upgrade}
    would lose its upgrade token."""
    key = base64.b64encode(os.urandom(16)).decode()
    request = handshake(key).replace(b"Connection: Upgrade\r\n",
                                     b"Connection: keep-alive\r\nConnection: Upgrade\r\n")
    served.channel.dataReceived(request)
    assert served.transport.value().startswith(b"HTTP/1.1 101 ")


def test_the_request_line_is_handed_over_as_it_was(served: Served) -> None:
    served.channel.dataReceived(handshake(base64.b64encode(os.urandom(16)).decode(),
                                          "/d.html?since=3"))
    protocol = served.protocol
    assert served.transport.value().startswith(b"HTTP/1.1 101 ")
    assert protocol.http_request_path == "/d.html"


# The transports Twisted Web may hold: a wrapper itself (TLS), a transport whose
# protocol is a wrapper, and one that hands production to a network producer.


class Producer:
    def __init__(self) -> None:
        self.resumed = 0

    def resumeProducing(self) -> None:
        self.resumed += 1


class Held(StringTransport):
    """A transport of a channel, as the upgrade finds it."""

    def __init__(self) -> None:
        super().__init__(peerAddress=PEER)
        self.protocol = Protocol()


class Channel:
    """What a request needs of its HTTP channel."""

    site = None

    def __init__(self, transport: object) -> None:
        self.transport = transport

    def getPeer(self) -> IPv4Address:
        return PEER

    def getHost(self) -> IPv4Address:
        return IPv4Address("TCP", "127.0.0.1", 80)


def upgradeOn(transport: object, client: object = PEER) -> DocumentWebSocketProtocol:
    factory = DocumentWebSocketFactory(None, DocumentChangeNotifier(),  # type: ignore[arg-type]
                                       WebSocketOptions(autoPingInterval=0), Clock())
    request = Request(Channel(transport), parsePOSTFormSubmission=False)
    request.method, request.uri, request.client = b"GET", b"/d.html", client
    key = base64.b64encode(os.urandom(16)).decode()
    for name, value in [(b"Host", b"localhost"), (b"Upgrade", b"websocket"),
                        (b"Connection", b"Upgrade"), (b"Sec-WebSocket-Key", key.encode()),
                        (b"Sec-WebSocket-Version", b"13")]:
        request.requestHeaders.setRawHeaders(name, [value])
    assert WebSocketUpgrade(factory).upgrade(request, "/d.html", None) is NOT_DONE_YET
    (protocol,) = factory.open
    assert protocol.state == DocumentWebSocketProtocol.STATE_OPEN
    return protocol


def test_a_wrapping_transport_wraps_the_websocket_instead() -> None:
    inner = Held()
    wrapper = ProtocolWrapper(WrappingFactory(Factory.forProtocol(Protocol)), Protocol())
    wrapper.makeConnection(inner)
    protocol = upgradeOn(wrapper)
    assert wrapper.wrappedProtocol is protocol
    assert protocol.transport is wrapper
    assert inner.value().startswith(b"HTTP/1.1 101 ")


def test_a_transport_whose_protocol_wraps_gives_the_wrapper_the_websocket() -> None:
    transport = Held()
    wrapper = ProtocolWrapper(WrappingFactory(Factory.forProtocol(Protocol)), Protocol())
    transport.protocol = wrapper
    protocol = upgradeOn(transport)
    assert wrapper.wrappedProtocol is protocol
    assert transport.protocol is wrapper
    assert protocol.transport is transport


def test_a_plain_transport_is_given_the_websocket_as_its_protocol() -> None:
    transport = Held()
    protocol = upgradeOn(transport)
    assert transport.protocol is protocol


def test_a_client_without_an_ip_address_is_counted_under_a_question_mark() -> None:
    from twisted.internet.address import UNIXAddress

    protocol = upgradeOn(Held(), client=UNIXAddress(None))
    assert protocol.address == "?"
    assert protocol.factory.perAddress == {"?": 1}


def test_a_transport_with_a_network_producer_has_that_producer_resumed() -> None:
    transport = Held()
    transport._networkProducer = Producer()  # type: ignore[attr-defined]
    transport.pauseProducing()
    upgradeOn(transport)
    assert transport._networkProducer.resumed == 1  # type: ignore[attr-defined]
    assert transport.producerState == "paused"


# The factory's protocol options


def test_the_factory_hands_its_limits_to_autobahn() -> None:
    options = WebSocketOptions(maxFrameSize=1111, maxMessageSize=2222, autoPingInterval=7.0,
                               autoPingTimeout=3.0, openHandshakeTimeout=4.0,
                               closeHandshakeTimeout=2.0, serverName="beam-test")
    factory = DocumentWebSocketFactory(None, DocumentChangeNotifier(), options, Clock())  # type: ignore[arg-type]
    protocol = factory.buildProtocol(None)
    assert (protocol.maxFramePayloadSize, protocol.maxMessagePayloadSize) == (1111, 2222)
    assert (protocol.autoPingInterval, protocol.autoPingTimeout) == (7.0, 3.0)
    assert (protocol.openHandshakeTimeout, protocol.closeHandshakeTimeout) == (4.0, 2.0)
    assert protocol.versions == [13]
    assert protocol.failByDrop is False
    assert factory.server == "beam-test"


def test_the_server_names_itself_in_the_handshake(tmp_path: Path) -> None:
    served = Served(tmp_path, serverName="beam-test")
    served.channel.dataReceived(handshake(base64.b64encode(os.urandom(16)).decode()))
    assert b"Server: beam-test\r\n" in served.transport.value()


@pytest.mark.parametrize("compression, accepted", [(True, True), (False, False)])
def test_permessage_deflate_is_accepted_only_when_enabled(compression: bool,
                                                          accepted: bool) -> None:
    factory = DocumentWebSocketFactory(None, DocumentChangeNotifier(),  # type: ignore[arg-type]
                                       WebSocketOptions(compression=compression), Clock())
    protocol = factory.buildProtocol(None)
    answer = protocol.perMessageCompressionAccept([PerMessageDeflateOffer()])
    assert (answer is not None) is accepted


def test_protocols_share_one_configured_class_until_the_options_change() -> None:
    factory = DocumentWebSocketFactory(None, DocumentChangeNotifier(), clock=Clock())  # type: ignore[arg-type]
    first, second = factory.buildProtocol(None), factory.buildProtocol(None)
    assert type(first) is type(second)
    assert issubclass(type(first), DocumentWebSocketProtocol)
    assert type(first).__name__ == "DocumentWebSocketProtocol"
    assert type(first).CONFIG_ATTRS == ()
    assert first.factory is factory
    factory.setProtocolOptions(autoPingInterval=99.0)
    third = factory.buildProtocol(None)
    assert type(third) is not type(first) and third.autoPingInterval == 99.0
