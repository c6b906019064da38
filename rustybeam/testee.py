"""
The Autobahn|Testsuite testee: the production stack with an echo message handler.

Everything but L{EchoProtocol.onMessage} is rustybeam's own: the same Site, resource
tree, upgrade dispatch, factory, protocol options and logging as C{twistd rustybeam}.
Only the limits that the suite must exceed are raised (see L{TESTEE_LIMITS}).

    python -m rustybeam.testee --port tcp:9001:interface=127.0.0.1
"""

from __future__ import annotations

import sys
from dataclasses import replace

from rustybeam.websocket import DocumentWebSocketProtocol, WebSocketOptions


class EchoProtocol(DocumentWebSocketProtocol):
    """Echoes every message back, as the fuzzing client expects."""

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.sendMessage(payload, isBinary)


def testeeLimits(options: WebSocketOptions) -> WebSocketOptions:
    """C{options} with the limits the suite exceeds on purpose raised (9.x sends
    16 MiB messages; 2.x-9.x send hundreds of messages per second)."""
    return replace(
        options,
        maxMessageSize=64 * 1024 * 1024,
        maxFrameSize=64 * 1024 * 1024,
        maxBacklogBytes=256 * 1024 * 1024,
        messagesPerSecond=1e9,
        messageBurst=1_000_000_000,
        autoPingInterval=0.0,
    )


def main(argv: list[str] | None = None) -> None:
    from rustybeam.__main__ import main as run

    run(["--autobahn-testee", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    main()
