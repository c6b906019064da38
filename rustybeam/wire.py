"""
Writing to a connection in one system call.

Twisted's C{FileDescriptor.write} never writes inline: it buffers the bytes and asks the
reactor to watch the socket for writability, so one small write costs three system
calls (C{epoll_ctl} to start watching, C{send}, C{epoll_ctl} to stop) and a later
reactor turn. A L{Wire} writes straight to the socket when the transport has nothing
buffered -- one C{send} -- and hands the transport only what the kernel did not take,
so ordering, back-pressure and error handling stay Twisted's.

A fan-out can go one step further: L{Wire.expressSend} hands out the socket's own
C{send} while nothing is queued, for the owner to keep in its express lane (see
L{rustybeam.notifier.IWatcher.express}) as long as everything else it writes goes
through the L{Wire}.

This is the one place that touches Twisted's private buffer attributes
(C{dataBuffer}, C{offset}, C{_tempDataLen}); it does so only for a plain
C{twisted.internet.tcp.Connection} and uses the transport's own C{write} for anything
else (TLS, wrapping protocols, other transports).
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet import tcp
from twisted.protocols.policies import ProtocolWrapper


def _innermost(transport: Any) -> Any:
    while isinstance(transport, ProtocolWrapper):
        transport = transport.transport
    return transport


def _plainTCP(transport: Any) -> tcp.Connection | None:
    """C{transport} if it is a plain (not TLS) TCP connection that we may write to."""
    if (isinstance(transport, tcp.Connection) and not getattr(transport, "TLS", False)
            and hasattr(transport, "_tempDataLen") and hasattr(transport, "dataBuffer")):
        return transport
    return None


EXPRESS_BYTES = 64 * 1024
"""The largest write an express lane takes: a connection keeps one only while its
backlog limit is at least this, so that what the kernel does not take of such a write
is always queued (never refused half-sent)."""


class Wire:
    """
    One connection's outgoing bytes: inline C{send} when possible, else the transport.

    @ivar inline: writes that went to the socket directly (for tests and statistics).
    """

    __slots__ = ("_transport", "_tcp", "_send", "inline")

    def __init__(self, transport: Any) -> None:
        self._transport = transport
        self._tcp = _plainTCP(transport)
        self._send: Callable[[bytes], int] | None = (
            self._tcp.socket.send if self._tcp is not None else None)
        self.inline = 0

    @property
    def direct(self) -> bool:
        """Whether writes may bypass the transport's buffer."""
        return self._tcp is not None

    def pending(self) -> int:
        """Bytes written that the kernel has not taken yet."""
        t = self._tcp
        if t is None:
            t = _innermost(self._transport)
            buffered = len(getattr(t, "dataBuffer", b"")) - getattr(t, "offset", 0)
            return buffered + getattr(t, "_tempDataLen", 0)
        return len(t.dataBuffer) - t.offset + t._tempDataLen

    def expressSend(self) -> Callable[[bytes], int] | None:
        """
        The socket's C{send}, if the next write may go straight to it (a plain TCP
        connection, open, with nothing queued), else C{None}. The caller may use it
        only until it hands this connection anything else: what C{send} does not take,
        and everything after it, goes through L{queue} or L{write}.
        """
        t = self._tcp
        if (t is None or t._tempDataLen or len(t.dataBuffer) != t.offset
                or not t.connected or t.disconnecting or t._writeDisconnected):
            return None
        return self._send

    def queue(self, data: bytes) -> None:
        """Hand the transport bytes that must follow what went out already (the rest
        of an express C{send}): it writes them when the socket is writable, and reports
        a connection error the way it reports its own."""
        self._transport.write(data)

    def write(self, data: bytes, limit: int | None = None) -> bool:
        """
        Write C{data}: to the socket now if nothing is queued before it. With a
        C{limit}, refuse (and return C{False}) when the bytes not yet taken by the
        kernel would pass it.
        """
        send = self.expressSend()
        if send is None:
            if limit is not None and self.pending() + len(data) > limit:
                return False
            self._transport.write(data)
            return True
        if limit is not None and len(data) > limit:
            return False
        try:
            sent = send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            # The reactor's own write path reports the error (connectionLost).
            self.queue(data)
            return True
        self.inline += 1
        if sent < len(data):
            self.queue(data[sent:])
        return True
