"""
permessage-deflate (RFC 7692) on the WebSocket side, in process: what the server
accepts of a client's offer, how StreamItems and replies are compressed, and that an
idle connection keeps no compressor.
"""

from __future__ import annotations

import base64
import json
import os
import zlib
from pathlib import Path
from typing import Any, Callable

import pytest
from autobahn.websocket.compress import (
    PerMessageBzip2Offer,
    PerMessageDeflateOffer,
    PerMessageDeflateOfferAccept,
)
from conftest import clientFrame, serverFrames
from test_websocket_units import Unsent, _Reactor, change

from rustybeam.documents import DocumentStore, StoreOptions
from rustybeam.notifier import DocumentChangeNotifier
from rustybeam.websocket import (
    CLIENT_WINDOW_BITS,
    DocumentWebSocketFactory,
    DocumentWebSocketProtocol,
    WebSocketOptions,
    _acceptDeflate,
)


class Connection:
    """One in-process connection that negotiated (or not) permessage-deflate."""

    def __init__(self, tmp_path: Path, extensions: str, accept: Callable[..., Any] | None = None,
                 viewer: object = None) -> None:
        (tmp_path / "d.html").write_text(
            "<!DOCTYPE html><html><body><h1 id=t>T</h1><ul id=l><li id=a>A</li></ul></body></html>")
        store = DocumentStore(str(tmp_path), options=StoreOptions(fsync=False))
        self.notifier = DocumentChangeNotifier()
        factory = DocumentWebSocketFactory(store, self.notifier,
                                           WebSocketOptions(autoPingInterval=0), _Reactor())
        if accept is not None:
            factory.setProtocolOptions(perMessageCompressionAccept=accept)
        self.protocol = factory.connect("127.0.0.1", "/d.html", viewer)  # type: ignore[arg-type]
        self.transport = Unsent(factory.clock)
        self.protocol.makeConnection(self.transport)
        key = base64.b64encode(os.urandom(16)).decode()
        self.protocol.dataReceived((
            "GET /d.html HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Extensions: {extensions}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        assert self.protocol.state == DocumentWebSocketProtocol.STATE_OPEN
        data = b"".join(self.transport._tempDataBuffer)
        self.head, self.read = data[:data.index(b"\r\n\r\n")].decode(), data.index(b"\r\n\r\n") + 4
        self.inflater = zlib.decompressobj(-15)

    @property
    def extension(self) -> str | None:
        for line in self.head.split("\r\n"):
            name, _, value = line.partition(": ")
            if name.lower() == "sec-websocket-extensions":
                return value
        return None

    def frames(self) -> list[tuple[int, bool, bytes]]:
        """The frames written since the last call: (opcode, RSV1, payload)."""
        data = b"".join(self.transport._tempDataBuffer)
        new, self.read = data[self.read:], len(data)
        return [(head & 0x0F, bool(head & 0x40), payload) for head, payload in serverFrames(new)]

    def messages(self, fresh: bool = True) -> list[tuple[int, bytes]]:
        """The messages written since the last call, inflated (each with a fresh
        inflater when the server keeps no context, else with one kept across)."""
        out = []
        for opcode, compressed, payload in self.frames():
            assert compressed, "expected a permessage-deflate frame"
            inflater = zlib.decompressobj(-15) if fresh else self.inflater
            out.append((opcode, inflater.decompress(payload + b"\x00\x00\xff\xff")))
        return out

    def send(self, message: dict[str, object]) -> None:
        deflater = zlib.compressobj(wbits=-15)
        data = deflater.compress(json.dumps(message).encode()) + deflater.flush(zlib.Z_SYNC_FLUSH)
        self.protocol.dataReceived(clientFrame(data[:-4], 0x41))


@pytest.mark.parametrize("offer, answer", [
    ("permessage-deflate",
     "permessage-deflate; client_no_context_takeover; server_no_context_takeover"),
    ("permessage-deflate; client_max_window_bits",
     "permessage-deflate; client_no_context_takeover; server_no_context_takeover"),
    ("permessage-deflate; server_no_context_takeover",
     "permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
])
def test_the_server_declares_no_context_takeover_of_its_own_and_asks_the_client_for_it(
        tmp_path: Path, offer: str, answer: str) -> None:
    assert Connection(tmp_path, offer).extension == answer


def test_only_a_deflate_offer_is_accepted_and_the_first_one() -> None:
    assert _acceptDeflate([]) is None
    assert _acceptDeflate([PerMessageBzip2Offer()]) is None
    first = PerMessageDeflateOffer(accept_no_context_takeover=True, accept_max_window_bits=True)
    accepted = _acceptDeflate([PerMessageBzip2Offer(), first, PerMessageDeflateOffer()])
    assert accepted is not None and accepted.offer is first
    assert accepted.no_context_takeover is True
    assert accepted.request_no_context_takeover is True
    assert accepted.request_max_window_bits == 0
    plain = _acceptDeflate([PerMessageDeflateOffer(accept_no_context_takeover=False,
                                                   accept_max_window_bits=False)])
    assert plain is not None
    assert (plain.no_context_takeover, plain.request_no_context_takeover,
            plain.request_max_window_bits) == (True, False, 0)


def test_deflate_clients_keep_their_own_window_when_asked_to_drop_their_context() -> None:
    dropping = _acceptDeflate([PerMessageDeflateOffer(accept_max_window_bits=True)])
    assert dropping.request_no_context_takeover and dropping.request_max_window_bits == 0
    keeping = _acceptDeflate([PerMessageDeflateOffer(accept_no_context_takeover=False,
                                                     accept_max_window_bits=True)])
    assert not keeping.request_no_context_takeover
    assert keeping.request_max_window_bits == CLIENT_WINDOW_BITS


def test_stream_items_are_sent_deflated_in_the_shared_frames(tmp_path: Path) -> None:
    connection = Connection(tmp_path, "permessage-deflate; server_max_window_bits=10")
    assert connection.protocol._deflateBits == 10
    connection.notifier.changed(change("#t"))
    ((opcode, item),) = connection.messages()
    assert opcode == 1 and item.startswith(b"<div itemscope")


def test_replies_are_deflated_and_the_compressor_is_released_after_each(tmp_path: Path) -> None:
    connection = Connection(tmp_path, "permessage-deflate")
    for _ in range(2):
        connection.protocol.dataReceived(clientFrame(b'{"action": "dance"}'))
        ((opcode, reply),) = connection.messages()
        assert json.loads(reply)["error"] == "unknown-action"
        assert connection.protocol._perMessageCompress._compressor is None


def test_compressed_commands_are_read_and_the_decompressor_released_after_each(
        tmp_path: Path) -> None:
    connection = Connection(tmp_path, "permessage-deflate")
    for _ in range(2):
        connection.send({"action": "subscribe", "selector": "#a"})
        ((_, reply),) = connection.messages()
        assert json.loads(reply)["type"] == "subscribed"
        assert connection.protocol._perMessageCompress._decompressor is None


def keepContext(offers: list[Any]) -> PerMessageDeflateOfferAccept:
    """An accept (as an embedding application might configure) with which the server
    keeps its compression context between messages."""
    return PerMessageDeflateOfferAccept(offers[0])


class Hiding:
    """A viewer that may see nothing of any change."""

    key = "hiding"

    def redact(self, change: object) -> None:
        return None

    def mayRead(self, url: str, selector: str | None, tree: object) -> bool:
        return True


def test_a_connection_with_its_own_compression_context_gets_its_own_messages(
        tmp_path: Path) -> None:
    connection = Connection(tmp_path, "permessage-deflate", accept=keepContext)
    assert connection.protocol._deflateBits == -1
    for sequence in (1, 2):
        connection.notifier.changed(change("#t", sequence))
    items = connection.messages(fresh=False)
    assert [opcode for opcode, _ in items] == [1, 1]
    assert all(item.startswith(b"<div itemscope") for _, item in items)


def test_own_context_messages_follow_the_connection_sequenced_and_compact_modes(
        tmp_path: Path) -> None:
    connection = Connection(tmp_path, "permessage-deflate", accept=keepContext)
    connection.protocol.sequenced = True
    connection.protocol.compact = True
    connection.notifier.changed(change("#t", 5))
    ((opcode, deflated, item),) = connection.frames()
    assert (opcode, deflated) == (2, False)  # zlib already: not deflated again
    assert b'<span itemprop="sequence">5</span>' in zlib.decompress(item)


@pytest.mark.parametrize("accept", [None, keepContext])
def test_a_viewer_that_may_see_nothing_of_a_change_is_sent_nothing(
        tmp_path: Path, accept: Callable[..., Any] | None) -> None:
    connection = Connection(tmp_path, "permessage-deflate", accept=accept, viewer=Hiding())
    connection.notifier.changed(change("#t"))
    assert connection.frames() == []
    assert connection.protocol.state == DocumentWebSocketProtocol.STATE_OPEN
