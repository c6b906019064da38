"""
C{python -m tests.smallsendbuffer [rustybeam options]}: a rustybeam server whose
accepted TCP connections have a small kernel send buffer (C{SO_SNDBUF}).

A test-only wrapper: on loopback the kernel buffers about two megabytes per
connection, so a client that stops reading is noticed only after that much has been
sent. With a few kilobytes of kernel buffer, what the server writes stays in the
connection's own (Twisted) buffer, where the slow-consumer limit (C{--max-backlog})
sees it, and a test can provoke that limit with little data, deterministically.
"""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet import tcp

SEND_BUFFER = 4096
"""Bytes asked for; Linux doubles it for its bookkeeping."""


class SmallSendBufferServer(tcp.Server):
    """An accepted connection whose socket gets a small send buffer first."""

    def __init__(self, sock: socket.socket, *args: Any, **kwargs: Any) -> None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        super().__init__(sock, *args, **kwargs)


if __name__ == "__main__":
    tcp.Port.transport = SmallSendBufferServer
    from rustybeam.__main__ import main

    main()
