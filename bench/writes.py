#!/usr/bin/env python3
"""
Write benchmark: what one selector write costs next to what it must cost.

    python bench/writes.py            # about 1-2 minutes
    python bench/writes.py --quick    # in-process figures only, a few seconds

For documents of about 10 KB, 100 KB and 1 MB (a list of ``<li>`` items) it prints,
in one run, the anchors -- lxml's serialization of the whole document, lxml.html's
and html5lib's parse of it -- the CPU of rustybeam's whole-document parse (lexbor where it
builds html5lib's tree), and the CPU that the store spends on one selector PUT,
POST and DELETE of one small element (the write computed on the working tree,
checked and serialized; no disk), as a multiple of one serialization.

Then, over HTTP against ``python -m rustybeam`` on 127.0.0.1 (a temporary root, fsync on,
then ``--no-fsync``), 1 and 8 clients on keep-alive connections each replace their own
``<li>`` with selector PUTs as fast as they are answered, for a few seconds per cell:
acknowledged writes per second, server CPU per write (utime+stime of the server process,
all threads) and p50/p99 latency; next to the anchor of a bare loop that writes, fsyncs and
renames a file of the same size in the same directory (no HTML work at all).
"""

from __future__ import annotations

import argparse
import base64
import http.client
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from typing import Iterator

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lxml import html as lxmlhtml  # noqa: E402

from rustybeam import markup, selectors, versions  # noqa: E402
from functools import partial  # noqa: E402

from rustybeam.documents import _applyGroup, _applySelector, _Pending  # noqa: E402

SIZES = {"10 KB": 100, "100 KB": 1000, "1 MB": 10000}


def document(items: int) -> bytes:
    lis = "\n".join(
        f'<li id="i{i}" class="item">Item number {i}, with <b>bold</b> text &amp; a '
        f'<a href="/items/{i}">link</a></li>' for i in range(items))
    return (f'<!DOCTYPE html>\n<html><head><title>list</title></head><body><h1>List</h1>'
            f'<ul id="list">\n{lis}\n</ul></body></html>\n').encode()


def cpu(fn: object, repeat: int, budget: float = 2.0) -> float:
    """Median process CPU seconds of one call of C{fn}."""
    samples = []
    deadline = time.monotonic() + budget
    for _ in range(repeat):
        start = time.process_time()
        fn()  # type: ignore[operator]
        samples.append(time.process_time() - start)
        if time.monotonic() > deadline and len(samples) >= 3:
            break
    samples.sort()
    return samples[len(samples) // 2]


def inProcess(quick: bool) -> None:
    print("| document | lxml serialize | lxml.html parse | html5lib parse | rustybeam parse | PUT | POST | DELETE |")
    print("|---|---|---|---|---|---|---|---|")
    for label, items in SIZES.items():
        data = document(items)
        tree = markup.parseDocument(data)
        lineage = versions.Lineage(tree)
        lineage.verified = True
        serialize = cpu(lambda: markup.serializeDocument(tree), 20)
        lxmlParse = cpu(lambda: lxmlhtml.document_fromstring(data), 10)
        html5lib = cpu(lambda: markup.parseDocument(data), 1 if quick or items > 1000 else 3, 10)
        text = data.decode()
        whole = cpu(lambda: markup.parseWhole(text), 10)
        middle = items // 2
        counter = iter(range(10**9))

        def write(method: str, css: str, body: bytes) -> None:
            pending = _Pending(None, None, None,  # type: ignore[arg-type]
                               partial(_applySelector, method, selectors.compile(css), body),
                               None)  # type: ignore[arg-type]
            (p,), tree, data = _applyGroup(lineage, [pending], None)
            assert not isinstance(p, BaseException) and p.edit is not None and tree is not None
            lineage.commit(p.edit, tree)

        def put() -> None:
            n = next(counter)
            write("PUT", f"#i{middle}", f'<li id="i{middle}" class="item">changed {n}</li>'.encode())

        posted: list[int] = []

        def post() -> None:
            n = next(counter)
            posted.append(n)
            write("POST", "#list", f'<li id="n{n}">new {n}</li>'.encode())

        def delete() -> None:
            write("DELETE", f"#n{posted.pop()}", b"")

        put()  # the first write makes the working copy
        costs = [cpu(put, 30), cpu(post, 30), cpu(delete, len(posted))]
        print(f"| {label} ({len(data) // 1024} KB) | {serialize * 1e3:.2f} ms | "
              f"{lxmlParse * 1e3:.2f} ms | {html5lib * 1e3:.0f} ms | "
              f"{whole * 1e3:.1f} ms ({whole / lxmlParse:.1f}x lxml.html) | "
              + " | ".join(f"{c * 1e3:.2f} ms ({c / serialize:.1f}x)" for c in costs) + " |")


CLK_TCK = os.sysconf("SC_CLK_TCK")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def serverCpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fsyncLoop(directory: str, data: bytes, seconds: float) -> float:
    """Writes per second of a bare temporary-file write + fsync + rename loop."""
    target = os.path.join(directory, "anchor.html")
    count = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        tmp = target + ".tmp"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
        dfd = os.open(directory, os.O_RDONLY)
        os.fsync(dfd)
        os.close(dfd)
        count += 1
    return count / seconds


@contextmanager
def serving(root: str, fsync: bool) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """C{python -m rustybeam} on C{root} and a free loopback port, once it listens."""
    port = freePort()
    server = subprocess.Popen(
        [sys.executable, "-m", "rustybeam", "--root", root,
         "--port", f"tcp:{port}:interface=127.0.0.1", *([] if fsync else ["--no-fsync"])],
        cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield server, port
    finally:
        server.terminate()
        server.wait(30)


def clients(port: int, n: int, items: int, seconds: float) -> tuple[int, list[float]]:
    """Run C{n} clients for C{seconds}; acknowledged writes and their latencies."""
    latencies: list[list[float]] = [[] for _ in range(n)]
    stop = time.monotonic() + seconds

    def run(k: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        target = (items // (n + 1)) * (k + 1)
        i = 0
        while time.monotonic() < stop:
            body = f'<li id="i{target}" class="item">client {k} write {i}</li>'.encode()
            start = time.perf_counter()
            connection.request("PUT", "/doc.html", body, {"Range": f"selector=#i{target}"})
            response = connection.getresponse()
            response.read()
            if response.status in (200, 206):
                latencies[k].append(time.perf_counter() - start)
            i += 1
        connection.close()

    threads = [threading.Thread(target=run, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    merged = sorted(x for ls in latencies for x in ls)
    return len(merged), merged


def overHttp(seconds: float) -> None:
    print()
    print("| document | fsync | clients | writes/s | server CPU/write | p50 | p99 | raw write+fsync+rename loop |")
    print("|---|---|---|---|---|---|---|---|")
    for fsync in (True, False):
        for label, items in SIZES.items():
            with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as root:
                data = document(items)
                with open(os.path.join(root, "doc.html"), "wb") as f:
                    f.write(data)
                anchor = fsyncLoop(root, data, 1.0) if fsync else None
                with serving(root, fsync) as (server, port):
                    clients(port, 1, items, 0.5)  # warm up: parse, first write
                    for n in (1, 8):
                        cpu0 = serverCpu(server.pid)
                        wall0 = time.monotonic()
                        count, lat = clients(port, n, items, seconds)
                        wall = time.monotonic() - wall0
                        cpu = serverCpu(server.pid) - cpu0
                        p50 = lat[len(lat) // 2] * 1e3 if lat else float("nan")
                        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e3 if lat else float("nan")
                        raw = f"{anchor:.0f}/s" if anchor is not None else "—"
                        print(f"| {label} | {'on' if fsync else 'off'} | {n} | {count / wall:.0f} | "
                              f"{cpu / max(count, 1) * 1e3:.2f} ms | {p50:.1f} ms | {p99:.1f} ms | {raw} |",
                              flush=True)


def _watch(port: int, path: str) -> socket.socket:
    """A WebSocket watcher of C{path} (a bare client: handshake, then read frames)."""
    sock = socket.create_connection(("127.0.0.1", port), 10)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  f"Sec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(head.decode(errors="replace"))
    return sock


def _frames(sock: socket.socket, received: list[float], stop: threading.Event) -> None:
    """Note when each text frame arrives (server frames are unmasked)."""
    sock.settimeout(0.5)
    buffer = b""
    while not stop.is_set():
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        if not chunk:
            return
        buffer += chunk
        while len(buffer) >= 2:
            length, offset = buffer[1] & 0x7F, 2
            if length == 126:
                if len(buffer) < 4:
                    break
                length, offset = int.from_bytes(buffer[2:4], "big"), 4
            elif length == 127:
                if len(buffer) < 10:
                    break
                length, offset = int.from_bytes(buffer[2:10], "big"), 10
            if len(buffer) < offset + length:
                break
            if buffer[0] & 0x0F == 1:
                received.append(time.perf_counter())
            buffer = buffer[offset + length:]


def responsiveness(seconds: float) -> None:
    """
    While 2 clients write a 1 MB document as fast as they can, a watcher of a small
    document receives a change made every 50 ms (PUT sent -> StreamItem received: the
    small document's own durable write included), and selector GETs of the small
    document are answered; fsync on, then off (the reactor alone).
    """
    print()
    print("| while a 1 MB document is written by 2 clients | fsync | p50 | p99 | max | count |")
    print("|---|---|---|---|---|---|")
    for fsync in (True, False):
        _responsiveness(seconds, fsync)


def _responsiveness(seconds: float, fsync: bool) -> None:
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as root:
        with open(os.path.join(root, "doc.html"), "wb") as f:
            f.write(document(SIZES["1 MB"]))
        with open(os.path.join(root, "small.html"), "wb") as f:
            f.write(document(10))
        with serving(root, fsync) as (server, port):
            clients(port, 1, SIZES["1 MB"], 0.5)
            watcher = _watch(port, "/small.html")
            received: list[float] = []
            stop = threading.Event()
            reader = threading.Thread(target=_frames, args=(watcher, received, stop))
            reader.start()
            load = threading.Thread(target=clients, args=(port, 2, SIZES["1 MB"], seconds + 1))
            load.start()
            time.sleep(0.5)
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            delivery: list[float] = []
            reads: list[float] = []
            end = time.monotonic() + seconds
            n = 0
            while time.monotonic() < end:
                before = len(received)
                sent = time.perf_counter()
                connection.request("PUT", "/small.html", f'<li id="i3">change {n}</li>'.encode(),
                                   {"Range": "selector=#i3"})
                connection.getresponse().read()
                wait = time.monotonic() + 5
                while len(received) == before and time.monotonic() < wait:
                    time.sleep(0.0005)
                if len(received) > before:
                    delivery.append(received[before] - sent)
                start = time.perf_counter()
                connection.request("GET", "/small.html", headers={"Range": "selector=#i5"})
                connection.getresponse().read()
                reads.append(time.perf_counter() - start)
                n += 1
                time.sleep(0.05)
            load.join()
            stop.set()
            reader.join()
            watcher.close()
            for label, samples in (("PUT -> StreamItem to a watcher of another document", delivery),
                                   ("selector GET of another document", reads)):
                samples.sort()
                if samples:
                    print(f"| {label} | {'on' if fsync else 'off'} | "
                          f"{samples[len(samples) // 2] * 1e3:.1f} ms | "
                          f"{samples[min(len(samples) - 1, int(len(samples) * 0.99))] * 1e3:.1f} ms | "
                          f"{samples[-1] * 1e3:.1f} ms | {len(samples)} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="in-process figures only, html5lib parsing once")
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per HTTP cell")
    parser.add_argument("--responsiveness-only", action="store_true",
                        help="only the watcher latency while a 1 MB document is written")
    args = parser.parse_args()
    if args.responsiveness_only:
        responsiveness(max(args.seconds, 5.0))
        return
    inProcess(args.quick)
    if not args.quick:
        overHttp(args.seconds)
        responsiveness(max(args.seconds, 5.0))


if __name__ == "__main__":
    main()
