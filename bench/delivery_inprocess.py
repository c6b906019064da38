#!/usr/bin/env python3
"""
In-process micro-benchmark of the StreamItem delivery path, without sockets.

    python bench/delivery_inprocess.py [--subscribers 1000] [--changes 200] [--profile]

It builds the real objects (DocumentStore, DocumentChangeNotifier,
DocumentWebSocketFactory and N DocumentWebSocketProtocol instances, each opened with
a real WebSocket handshake) on in-memory transports, with logging set up as
``python -m rustybeam`` does, then times ``notifier.changed(change)`` for one change
delivered to N watchers, i.e. everything the server does per delivery except the
reactor's later doWrite/send (kernel) work. For reference it times the same N
protocols fed by a bare Autobahn loop (``factory.prepareMessage`` once, then
``sendPreparedMessage`` per protocol, as the anchors' autobahn-prepared server does),
and both again with the protocol's Twisted ``Logger`` class attribute removed, so that
Autobahn's own txaio logger (whose debug() is a no-op at level "info") is used: the
change proposed in the benchmark notes. Reports microseconds of Python per delivery
(best of 5 repeats).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import txaio  # noqa: E402
from twisted.internet import reactor  # noqa: E402
from twisted.logger import (  # noqa: E402
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    textFileLogObserver,
)
from twisted.internet.testing import StringTransport  # noqa: E402

from rustybeam.changes import Change  # noqa: E402
from rustybeam.documents import DocumentStore  # noqa: E402
from rustybeam.notifier import DocumentChangeNotifier  # noqa: E402
from rustybeam.websocket import DocumentWebSocketFactory, DocumentWebSocketProtocol  # noqa: E402


class NullTransport(StringTransport):
    """Keeps nothing: a write costs a method call, like a buffered Twisted write."""

    def write(self, data: bytes) -> None:
        self.written = len(data)

    def setTcpNoDelay(self, enabled: bool) -> None:  # autobahn asks for it
        pass


HANDSHAKE = (
    b"GET /doc.html HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n"
)


def build(n: int, root: str) -> tuple[DocumentChangeNotifier, list[DocumentWebSocketProtocol], DocumentWebSocketFactory]:
    notifier = DocumentChangeNotifier()
    store = DocumentStore(root, notifier.changedAll, reactor=reactor)
    factory = DocumentWebSocketFactory(store, notifier, clock=reactor)
    factory.setProtocolOptions(autoPingInterval=0, openHandshakeTimeout=0, closeHandshakeTimeout=0)
    protocols = []
    for i in range(n):
        p = factory.connect("127.0.0.1", "/doc.html", None)
        p.makeConnection(NullTransport())
        p.dataReceived(HANDSHAKE)
        assert p.state == DocumentWebSocketProtocol.STATE_OPEN, p.state
        protocols.append(p)
    return notifier, protocols, factory


def change(seq: int) -> Change:
    content = f'<div id="x"><b>seq={seq:08d}</b> ' + "x" * 40 + "</div>"
    return Change(method="PUT", url="/doc.html", selector="#x", sequence=seq, content=content)


def timeit(fn, n: int, changes: int) -> float:
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        for s in range(changes):
            fn(s)
        best = min(best, time.perf_counter() - t)
    return best / (n * changes) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--subscribers", type=int, default=1000)
    ap.add_argument("--changes", type=int, default=100)
    ap.add_argument("--profile", action="store_true", help="print a cProfile of the rustybeam path")
    a = ap.parse_args()
    # logging as in rustybeam.__main__ / rustybeam.tap.makeService
    txaio.use_twisted()
    globalLogBeginner.beginLoggingTo(
        [FilteringLogObserver(textFileLogObserver(io.StringIO()), [LogLevelFilterPredicate(LogLevel.info)])],
        redirectStandardIO=False)
    txaio.set_global_log_level("info")
    root = tempfile.mkdtemp(prefix="rustybeam-micro-")
    n, k = a.subscribers, a.changes

    from rustybeam import streamitem

    def measure() -> tuple[float, float]:
        notifier, protocols, factory = build(n, root)

        def bare(s: int) -> None:
            msg = factory.prepareMessage(streamitem.render(change(s)).encode("utf-8"))
            for p in protocols:
                p.sendPreparedMessage(msg)

        return timeit(lambda s: notifier.changed(change(s)), n, k), timeit(bare, n, k)

    rusty, bare_rusty = measure()
    if a.profile:
        notifier, _, _ = build(n, root)
        prof = cProfile.Profile()
        prof.enable()
        for s in range(k):
            notifier.changed(change(s))
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(15)

    saved = DocumentWebSocketProtocol.__dict__.get("log")
    if saved is not None:
        del DocumentWebSocketProtocol.log  # fall back to autobahn's txaio logger
    try:
        patched, bare_patched = measure()
    finally:
        if saved is not None:
            DocumentWebSocketProtocol.log = saved

    print(f"{n} subscribers, {k} changes; µs of Python per delivery (best of 5), in-memory transports:")
    print("| protocol logger | notifier.changed -> deliver (rustybeam path) | bare prepareMessage + sendPreparedMessage loop |")
    print("|---|---|---|")
    print(f"| as is{' (twisted.logger.Logger)' if saved is not None else ''} | {rusty:.2f} | {bare_rusty:.2f} |")
    print(f"| autobahn's txaio logger (proposed) | {patched:.2f} | {bare_patched:.2f} |")


if __name__ == "__main__":
    main()
