"""
The one-send write seam (L{rustybeam.wire.Wire}) on real loopback sockets, driven by
a private epoll reactor that is never run: what reaches the peer without a reactor
turn went out inline.
"""

from __future__ import annotations

import socket
from typing import Iterator

import pytest
from twisted.internet import tcp
from twisted.internet.epollreactor import EPollReactor
from twisted.internet.protocol import Protocol
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory

from rustybeam.wire import Wire


@pytest.fixture
def pair() -> Iterator[tuple[EPollReactor, tcp.Connection, socket.socket]]:
    reactor = EPollReactor()
    ours, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    ours.setblocking(False)
    peer.settimeout(2)
    connection = tcp.Connection(ours, Protocol(), reactor)
    connection.connected = True
    yield reactor, connection, peer
    reactor.removeAll()
    ours.close()
    peer.close()


def receive(peer: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        data += peer.recv(size - len(data))
    return data


def test_a_write_with_nothing_queued_is_sent_inline(pair: tuple) -> None:
    reactor, connection, peer = pair
    wire = Wire(connection)
    wire.write(b"hello")
    assert receive(peer, 5) == b"hello"
    assert wire.inline == 1
    assert connection not in reactor.getWriters()
    assert wire.pending() == 0


def test_a_write_behind_queued_bytes_waits_its_turn(pair: tuple) -> None:
    reactor, connection, peer = pair
    wire = Wire(connection)
    connection.write(b"first ")
    wire.write(b"second")
    assert wire.inline == 0
    assert wire.pending() == 12
    peer.setblocking(False)
    with pytest.raises(BlockingIOError):
        peer.recv(100)
    connection.doWrite()
    peer.settimeout(2)
    assert receive(peer, 12) == b"first second"


def test_what_the_kernel_does_not_take_is_queued_in_order(pair: tuple) -> None:
    reactor, connection, peer = pair
    connection.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    wire = Wire(connection)
    big = bytes(range(256)) * 4096
    wire.write(big)
    wire.write(b"after")
    assert wire.inline == 1
    assert 0 < wire.pending() < len(big) + 5
    assert connection in reactor.getWriters()
    received = b""
    while len(received) < len(big) + 5:
        received += peer.recv(65536)
        connection.doWrite()
    assert received == big + b"after"
    assert wire.pending() == 0


def test_a_write_after_the_peer_has_gone_is_left_to_the_transport(pair: tuple) -> None:
    reactor, connection, peer = pair
    peer.close()
    wire = Wire(connection)
    assert wire.write(b"x" * 100) is True
    assert wire.write(b"y" * 100) is True
    assert connection.doWrite() is not None  # the error is reported by Twisted's path


def test_tls_and_wrapped_transports_keep_their_own_write(pair: tuple) -> None:
    reactor, connection, peer = pair
    connection.TLS = True
    assert not Wire(connection).direct
    connection.TLS = False
    wrapper = ProtocolWrapper(WrappingFactory(None), Protocol())
    wrapper.makeConnection(connection)
    wire = Wire(wrapper)
    assert not wire.direct
    wire.write(b"through")
    assert wire.inline == 0
    assert wire.pending() == 7
    connection.doWrite()
    assert receive(peer, 7) == b"through"


def test_a_write_past_the_limit_is_refused_and_nothing_is_sent(pair: tuple) -> None:
    reactor, connection, peer = pair
    wire = Wire(connection)
    connection.write(b"x" * 100)
    assert wire.write(b"y" * 50, limit=120) is False
    assert wire.pending() == 100
    assert wire.write(b"y" * 20, limit=120) is True
    assert wire.write(b"z" * 200, limit=120) is False
    connection.doWrite()
    assert receive(peer, 120) == b"x" * 100 + b"y" * 20


@pytest.mark.parametrize("state", ["queued", "not connected", "disconnecting", "write side closed"])
def test_the_socket_s_send_is_handed_out_only_while_nothing_is_queued_on_an_open_connection(
        pair: tuple, state: str) -> None:
    reactor, connection, peer = pair
    wire = Wire(connection)
    assert wire.expressSend() == connection.socket.send
    if state == "queued":
        connection.write(b"x")
    elif state == "not connected":
        connection.connected = False
    elif state == "disconnecting":
        connection.disconnecting = True
    else:
        connection._writeDisconnected = True
    assert wire.expressSend() is None


def test_a_write_the_kernel_refuses_whole_is_queued_whole(pair: tuple) -> None:
    reactor, connection, peer = pair
    filled = 0
    while True:
        try:
            filled += connection.socket.send(b"f" * 65536)
        except BlockingIOError:
            break
    wire = Wire(connection)
    assert wire.write(b"after") is True
    assert wire.pending() == 5
    received = b""
    while len(received) < filled + 5:
        received += peer.recv(1 << 20)
        connection.doWrite()
    assert received == b"f" * filled + b"after"


def test_a_write_with_nothing_queued_may_reach_the_limit_but_not_pass_it(pair: tuple) -> None:
    reactor, connection, peer = pair
    wire = Wire(connection)
    assert wire.write(b"y" * 121, limit=120) is False
    assert wire.write(b"z" * 120, limit=120) is True
    assert receive(peer, 120) == b"z" * 120


def test_pending_counts_what_twisted_has_not_written_of_its_buffer(pair: tuple) -> None:
    reactor, connection, peer = pair
    connection.dataBuffer, connection.offset = b"z" * 50, 30
    connection.write(b"x" * 7)
    assert Wire(connection).pending() == 20 + 7
