#!/usr/bin/env python3
"""
The delivery path on real sockets, against the send() floor on the very same sockets.

    python bench/delivery_sockets.py [--n 1000] [--rounds 3] [--paced 100] [--burst 50]

One process runs rustybeam's real L{DocumentWebSocketFactory} and notifier on a Twisted
TCP port; a reader process (this script with C{--reader}) opens N WebSockets to it (a
real handshake each) and drains them (server pings are off: the reader never answers). Once all are open, this process alternates, on
the same N connections and in the same conditions:

  - C{rustybeam}: C{notifier.changed(change)}, i.e. everything the server does to deliver
    one change to N watchers (Delivery, deliver(), Wire, one C{send} each);
  - C{floor}: a bare loop of C{socket.send(frame)} over the same N sockets with the same
    frame bytes (what L{bench/sendfloor.py} measures, here on the server's own sockets;
    what the kernel does not take at once is dropped);

paced (one change, then 20 ms of idle reactor) and in bursts (C{--burst} changes back to
back). It reports the process's CPU (user + system from C{getrusage}) per delivery for
each, best and median over C{--rounds} alternations, and the difference: what
rustybeam's delivery costs above the floor, without the HTTP PUT and without the
harness's noise. Everything stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import resource
import selectors
import socket
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sendfloor import drain  # noqa: E402


def reader(port: int, n: int) -> None:
    """Open N WebSockets to the server, then drain them until the server goes."""
    sel = selectors.DefaultSelector()
    socks = []
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16))
        s.sendall(b"GET /doc.html HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                  b"Connection: Upgrade\r\nSec-WebSocket-Key: " + key + b"\r\n"
                  b"Sec-WebSocket-Version: 13\r\n\r\n")
        socks.append(s)
    for s in socks:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(4096)
            if not chunk:
                sys.exit("the server closed a connection during the handshake")
            head += chunk
        if not head.startswith(b"HTTP/1.1 101"):
            sys.exit(f"handshake refused: {head[:80]!r}")
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    drain(sel)


def cpu_us() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return (r.ru_utime + r.ru_stime) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3, help="alternations of rustybeam and floor")
    ap.add_argument("--paced", type=int, default=100, help="changes per paced phase")
    ap.add_argument("--interval", type=float, default=0.02)
    ap.add_argument("--burst", type=int, default=50, help="changes per burst")
    ap.add_argument("--bursts", type=int, default=4, help="bursts per burst phase")
    ap.add_argument("--decompose", action="store_true",
                    help="also time a bare loop of deliver() and one of Wire.write over the watchers")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--reader", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.reader is not None:
        reader(a.reader, a.n)
        return

    import txaio
    from twisted.internet import reactor, task
    from twisted.logger import (FilteringLogObserver, LogLevel, LogLevelFilterPredicate,
                                globalLogBeginner, textFileLogObserver)

    from rustybeam import frames, streamitem
    from rustybeam.changes import Change
    from rustybeam.documents import DocumentStore
    from rustybeam.notifier import DocumentChangeNotifier
    from rustybeam.websocket import DocumentWebSocketFactory, WebSocketOptions

    txaio.use_twisted()
    globalLogBeginner.beginLoggingTo(
        [FilteringLogObserver(textFileLogObserver(io.StringIO()), [LogLevelFilterPredicate(LogLevel.info)])],
        redirectStandardIO=False)
    txaio.set_global_log_level("info")

    root = tempfile.mkdtemp(prefix="rustybeam-delivery-")
    with open(os.path.join(root, "doc.html"), "w") as f:
        f.write('<!DOCTYPE html><html><body><div id="x">x</div></body></html>')
    notifier = DocumentChangeNotifier()
    store = DocumentStore(root, notifier.changedAll, reactor=reactor)
    factory = DocumentWebSocketFactory(
        store, notifier, WebSocketOptions(maxConnections=a.n + 10, maxConnectionsPerAddress=a.n + 10,
                                    autoPingInterval=0.0),
        clock=reactor)
    factory.protocol.documentUrl = "/doc.html"
    port = reactor.listenTCP(0, factory, backlog=a.n, interface="127.0.0.1")
    child = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--reader",
                              str(port.getHost().port), "--n", str(a.n)], stdout=subprocess.PIPE, text=True)
    seq = [0]

    def change() -> Change:
        seq[0] += 1
        content = f'<div id="x"><b>seq={seq[0]:08d}</b> ' + "x" * 40 + "</div>"
        return Change(method="PUT", url="/doc.html", selector="#x", sequence=seq[0], content=content)

    def protocols() -> list:
        return [w for w in notifier._watching if w.state == w.STATE_OPEN]

    def rustybeam() -> None:
        notifier.changed(change())

    def floor() -> None:
        data = frames.frame(streamitem.render(change()).encode("utf-8"))
        for send in sends:
            try:
                send(data)
            except BlockingIOError:
                pass

    def wire() -> None:
        data = frames.frame(streamitem.render(change()).encode("utf-8"))
        for write in writes:
            write(data)

    def deliver() -> None:
        from rustybeam.notifier import Delivery
        delivery = Delivery(change())
        for d in delivers:
            d(delivery)

    def sleep(seconds: float):
        return task.deferLater(reactor, seconds, lambda: None)

    async def phase(fn, paced: bool) -> float:
        """CPU per delivery of C{fn}, the idle reactor turns after it included (they
        flush whatever the kernel did not take at once)."""
        n = len(sends)
        c = cpu_us()
        if paced:
            for _ in range(a.paced):
                fn()
                await sleep(a.interval)
            return (cpu_us() - c) / (a.paced * n)
        for _ in range(a.bursts):
            for _ in range(a.burst):
                fn()
            await sleep(0.3)
        return (cpu_us() - c) / (a.bursts * a.burst * n)

    results: dict = {}

    async def run() -> None:
        nonlocal sends
        while len(protocols()) < a.n:
            if child.poll() is not None:
                raise RuntimeError(f"the reader exited ({child.returncode})")
            await sleep(0.1)
        child.stdout.readline()
        sends = [p.transport.socket.send for p in protocols()]
        writes[:] = [p._wire.write for p in protocols()]
        delivers[:] = [p.deliver for p in protocols()]
        for _ in range(20):
            rustybeam()
            floor()
            await sleep(a.interval)
        paths = {"rustybeam": rustybeam, "floor": floor}
        if a.decompose:
            paths.update({"deliver loop": deliver, "Wire.write loop": wire})
        rows: dict[str, list[float]] = {f"{k} {m}": [] for k in paths for m in ("paced", "burst")}
        for _ in range(a.rounds):
            for paced in (True, False):
                mode = "paced" if paced else "burst"
                for name, fn in paths.items():
                    rows[f"{name} {mode}"].append(await phase(fn, paced))
                    await sleep(0.3)
        results.update(rows)

    sends: list = []
    writes: list = []
    delivers: list = []

    def done(result):
        if reactor.running:
            reactor.stop()
        if hasattr(result, "printTraceback"):
            result.printTraceback(file=sys.stderr)
        return None

    from twisted.internet.defer import ensureDeferred
    reactor.callWhenRunning(lambda: ensureDeferred(run()).addBoth(done))
    la0 = os.getloadavg()[0]
    reactor.run()
    child.kill()
    child.wait()
    if not results:
        sys.exit("no results")
    out = {"n": a.n, "rounds": a.rounds, "loadavg": [la0, os.getloadavg()[0]],
           "us_per_delivery": {k: {"best": min(v), "median": statistics.median(v), "all": v}
                               for k, v in results.items()}}
    print(f"{a.n} watchers, {a.rounds} alternations; load average {la0:.1f} -> {os.getloadavg()[0]:.1f}")
    print("| path | paced µs/delivery best / median | burst µs/delivery best / median |")
    print("|---|---|---|")
    u = out["us_per_delivery"]
    for name in [k[:-6] for k in u if k.endswith(" paced")]:
        p, b = u[f"{name} paced"], u[f"{name} burst"]
        print(f"| {name} | {p['best']:.2f} / {p['median']:.2f} | {b['best']:.2f} / {b['median']:.2f} |")
    dp = u["rustybeam paced"]["median"] - u["floor paced"]["median"]
    db = u["rustybeam burst"]["median"] - u["floor burst"]["median"]
    print(f"| rustybeam above the floor (medians) | {dp:.2f} | {db:.2f} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f)


if __name__ == "__main__":
    main()
