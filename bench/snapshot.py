#!/usr/bin/env python3
"""
Snapshot benchmark: what serving an edge's snapshot costs the writer's reactor.

    python bench/snapshot.py                  # 100 documents of 100 KB, 20 of 1 MB

An edge starting (or copying again) asks the writer for every document of a host, each
with the version before its oldest kept change (its ``base``). For a root of N documents
of one size, each changed once (so each has history, hence a base), it prints the
snapshot's wall and CPU time, its size, and the longest time the writer's reactor could not
run anything else meanwhile (a 1 ms ``LoopingCall`` measures the gaps): the pause every
request and WebSocket of the writer sees.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from twisted.internet import defer, reactor, task  # noqa: E402

from rustybeam import selectors  # noqa: E402
from rustybeam.cluster import writeSnapshot  # noqa: E402
from rustybeam.documents import DocumentStore, StoreOptions  # noqa: E402
from rustybeam.notifier import DocumentChangeNotifier  # noqa: E402
from writes import document  # noqa: E402


async def measure(count: int, items: int) -> str:
    root = tempfile.mkdtemp(prefix="rustybeam-snapshot-")
    data = document(items)
    for i in range(count):
        with open(os.path.join(root, f"d{i}.html"), "wb") as f:
            f.write(data)
    notifier = DocumentChangeNotifier()
    store = DocumentStore(root, notifier.changedAll, StoreOptions(fsync=False))
    for i in range(count):
        await store.replace(store.locate(f"/d{i}.html"), selectors.compile("#i0"),
                            b'<li id="i0">changed</li>')
    await task.deferLater(reactor, 0.05, lambda: None)
    gaps: list[float] = []
    last = [time.perf_counter()]

    def tick() -> None:
        now = time.perf_counter()
        gaps.append(now - last[0])
        last[0] = now

    ticker = task.LoopingCall(tick)
    ticker.start(0.001)
    out: list[bytes] = []
    wall, cpu = time.perf_counter(), time.process_time()
    await writeSnapshot(store, notifier.history, out.append, reactor)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    await task.deferLater(reactor, 0.01, lambda: None)
    ticker.stop()
    size = sum(len(b) for b in out)
    return (f"| {count} × {len(data) // 1024} KB | {wall * 1e3:.0f} | {cpu * 1e3:.0f} | "
            f"{size / 1e6:.1f} | {max(gaps) * 1e3:.1f} |")


async def main(args: argparse.Namespace) -> None:
    print("| documents (each changed once) | snapshot wall ms | CPU ms | MB | longest reactor pause ms |")
    print("|---|---|---|---|---|")
    for spec in args.roots.split(","):
        count, items = (int(x) for x in spec.split("x"))
        print(await measure(count, items))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--roots", default="100x1000,20x10000",
                    help="documents x list items, comma-separated (1,000 items is about 100 KB)")
    d = defer.ensureDeferred(main(ap.parse_args()))
    d.addErrback(lambda f: f.printTraceback()).addBoth(lambda _: reactor.stop())
    reactor.run()
