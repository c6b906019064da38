"""
Writing to a connection in one system call.

Twisted's C{FileDescriptor.write} never writes inline: it buffers the bytes and asks the
reactor to watch the socket for writability, so one small write costs three system
calls (C{epoll_ctl} to start watching, C{send}, C{epoll_ctl} to stop) and a later
reactor turn. A L{Wire} writes straight to the socket when the transport has nothing
buffered -- one C{send} -- and hands the transport only what the kernel did not take,
so ordering, back-pressure and error handling stay Twisted's.

This is the one place that touches Twisted's private buffer attributes
(C{dataBuffer}, C{offset}, C{_tempDataLen}); it does so only for a plain
C{twisted.internet.tcp.Connection} and uses the transport's own C{write} for anything
else (TLS, wrapping protocols, other transports).
"""

from __future__ import annotations

from typing import Any

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


class Wire:
    """
    One connection's outgoing bytes: inline C{send} when possible, else the transport.

    @ivar inline: writes that went to the socket directly (for tests and statistics).
    """

    __slots__ = ("_transport", "_tcp", "inline")

    def __init__(self, transport: Any) -> None:
        self._transport = transport
        self._tcp = _plainTCP(transport)
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

    def write(self, data: bytes, limit: int | None = None) -> bool:
        """
        Write C{data}: to the socket now if nothing is queued before it. With a
        C{limit}, refuse (and return C{False}) when the bytes not yet taken by the
        kernel would pass it.
        """
        t = self._tcp
        if (t is None or t._tempDataLen or len(t.dataBuffer) != t.offset
                or not t.connected or t.disconnecting or t._writeDisconnected):
            if limit is not None and self.pending() + len(data) > limit:
                return False
            self._transport.write(data)
            return True
        if limit is not None and len(data) > limit:
            return False
        try:
            sent = t.socket.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            # The reactor's own write path reports the error (connectionLost).
            t.write(data)
            return True
        self.inline += 1
        if sent < len(data):
            t.write(data[sent:])
        return True
