#!/usr/bin/env python3
"""
The send() floor: what one delivery costs a Python process that does nothing but a
non-blocking C{socket.send} of the same bytes to N loopback TCP sockets.

    python bench/sendfloor.py [--n 1000] [--bytes 313] [--paced 100] [--bursts 4]

A reader process (this script with C{--reader}) connects the N sockets and drains them;
this process accepts them and then, paced (one round every 20 ms) and in bursts (50
rounds back to back), sends one frame-sized payload to each. The CPU of the sending
process (user + system, which on loopback includes the receive-side softirq work it
triggers) divided by the sends is the floor any Python server pays per delivery on this
machine. Prints one JSON line; L{bench.fanout} shows it beside the servers.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import selectors
import socket
import subprocess
import sys
import time


def cpu_us() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return (r.ru_utime + r.ru_stime) * 1e6


def reader(port: int, n: int) -> None:
    sel = selectors.DefaultSelector()
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    drain(sel)


def drain(sel: selectors.BaseSelector) -> None:
    """Say "ready", then read and drop whatever arrives until a connection closes."""
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while True:
        for key, _ in sel.select():
            try:
                if not key.fileobj.recv(1 << 16):
                    return
            except BlockingIOError:
                pass
            except OSError:
                return


def measure(n: int, size: int, paced: int, interval: float, bursts: int, burst: int) -> dict:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(n)
    port = listener.getsockname()[1]
    child = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--reader", str(port), "--n", str(n)],
                             stdout=subprocess.PIPE, text=True)
    try:
        socks = []
        for _ in range(n):
            s, _ = listener.accept()
            s.setblocking(False)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            socks.append(s)
        child.stdout.readline()
        payload = b"\x81\x7e" + size.to_bytes(2, "big") + b"x" * (size - 4)
        sends = [s.send for s in socks]

        def round_() -> None:
            for send in sends:
                send(payload)

        for _ in range(20):
            round_()
            time.sleep(interval)
        used = 0.0
        for _ in range(paced):
            c0 = cpu_us()
            round_()
            used += cpu_us() - c0
            time.sleep(interval)
        paced_us = used / (paced * n)
        time.sleep(0.3)
        used = 0.0
        for _ in range(bursts):
            c0 = cpu_us()
            for _ in range(burst):
                round_()
            used += cpu_us() - c0
            time.sleep(0.3)
        burst_us = used / (bursts * burst * n)
        for s in socks:
            s.close()
        return {"server": "send() floor", "n": n, "bytes": size,
                "paced_us_per_delivery": paced_us, "burst_us_per_delivery": burst_us}
    finally:
        child.kill()
        child.wait()
        listener.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--bytes", type=int, default=313)
    ap.add_argument("--paced", type=int, default=100)
    ap.add_argument("--interval", type=float, default=0.02)
    ap.add_argument("--bursts", type=int, default=4)
    ap.add_argument("--burst", type=int, default=50)
    ap.add_argument("--reader", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.reader is not None:
        reader(args.reader, args.n)
        return
    print(json.dumps(measure(args.n, args.bytes, args.paced, args.interval, args.bursts, args.burst)))


if __name__ == "__main__":
    main()
