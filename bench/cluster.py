#!/usr/bin/env python3
"""
Cluster benchmark: ``--workers 2`` against one process, and replication lag.

    python bench/cluster.py                    # about a minute: 2,000 watchers
    python bench/cluster.py --watchers 10000   # the issue's figure (a few minutes)

It starts a real ``redis-server`` (Debian's) on a free loopback port in a temporary
directory, then:

  1. one process (``python -m rustybeam --root R``) and the fan-out harness of
     ``bench/fanout.py`` (``bench/node/fanout_harness.js``: Node + ws) with N watchers
     of one document: burst deliveries/s and PUT -> last watcher (p50/p99 of the
     unloaded fan-out time of the warm-up PUTs; p99 of every (PUT, watcher) pair of
     the paced phase);
  2. the same with ``--redis URL --workers 2``: the writer and one edge share the
     port (SO_REUSEPORT spreads the watchers' connections), so about half the
     watchers are served by the edge; PUTs land on either and the edge forwards its
     share to the writer;
  3. replication lag: a writer and an edge on two ports, one watcher on each;
     paced PUTs to the writer; lag = the edge watcher's receipt minus the writer
     watcher's receipt of the same StreamItem (the writer delivers as soon as its
     fsync is done, so this is writer-fsync -> edge delivery, plus a few
     microseconds), p50/p99.

Both servers run with fsync on and ``--max-connections(-per-address)`` raised for
N watchers from 127.0.0.1. Everything talks to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from fanout import (  # noqa: E402
    DOCUMENT, HARNESS, NODE_DIR, ceiling, ensure_node_modules, free_port, sinks_for, wait_ready)


def log(msg: str) -> None:
    print(f"[cluster] {msg}", file=sys.stderr, flush=True)


class Redis:
    def __init__(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="rustybeam-bench-redis-")
        self.port = free_port()
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
             self.directory, "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start")
                time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        shutil.rmtree(self.directory, ignore_errors=True)


def server(root: str, port: int, *options: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, "-m", "rustybeam", "--port",
                             f"tcp:{port}:interface=127.0.0.1", *options],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)


def listeners(port: int) -> int:
    """Sockets listening on 127.0.0.1:C{port} (several with SO_REUSEPORT)."""
    with open("/proc/net/tcp") as f:
        rows = [line.split() for line in f.readlines()[1:]]
    return sum(1 for row in rows if row[1] == f"0100007F:{port:04X}" and row[3] == "0A")


def wait_listening(port: int, count: int, timeout: float = 120) -> None:
    """Wait until every worker listens (an edge does once it has copied the documents):
    watchers that connect before would all land on the writer."""
    deadline = time.monotonic() + timeout
    while listeners(port) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {listeners(port)} of {count} workers listen on {port}")
        time.sleep(0.1)


def family(pid: int) -> list[int]:
    """C{pid} and its descendants (the workers of C{--workers}), for the server's CPU."""
    pids, i = [pid], 0
    while i < len(pids):
        for task in os.listdir(f"/proc/{pids[i]}/task"):
            try:
                with open(f"/proc/{pids[i]}/task/{task}/children") as f:
                    pids.extend(int(c) for c in f.read().split())
            except OSError:
                pass
        i += 1
    return pids


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def fanout(args: argparse.Namespace, label: str, *options: str) -> dict:
    root = tempfile.mkdtemp(prefix="rustybeam-bench-")
    with open(os.path.join(root, "doc.html"), "w") as f:
        f.write(DOCUMENT)
    port = free_port()
    limit = str(args.watchers + 100)
    process = server(root, port, "--root", root, "--max-connections", limit,
                     "--max-connections-per-address", limit, *options)
    try:
        wait_ready(port, process)
        if "--workers" in options:
            wait_listening(port, int(options[options.index("--workers") + 1]))
        time.sleep(0.3)
        log(f"{label}: {args.watchers} watchers")
        pids = family(process.pid)
        log(f"server processes: {pids}")
        h = subprocess.run(["node", HARNESS, "--port", str(port), "--pid", ",".join(map(str, pids)),
                            "--sinks", str(sinks_for(str(args.watchers))),
                            "--levels", str(args.watchers), "--paced", str(args.paced),
                            "--burst-total", str(args.burst_total), "--burst-deliveries",
                            str(args.burst_deliveries)],
                           cwd=NODE_DIR, stdout=subprocess.PIPE, text=True, timeout=args.timeout)
        if h.returncode != 0:
            raise RuntimeError(f"the harness failed ({h.returncode})")
        return json.loads(h.stdout.strip().splitlines()[-1])["levels"][-1]
    finally:
        stop(process)
        shutil.rmtree(root, ignore_errors=True)


def lag(args: argparse.Namespace, redis: Redis) -> list[float]:
    """Edge receipt - writer receipt of the same StreamItem, in ms."""
    from websockets.sync.client import connect

    root = tempfile.mkdtemp(prefix="rustybeam-bench-")
    with open(os.path.join(root, "doc.html"), "w") as f:
        f.write(DOCUMENT)
    wport, eport = free_port(), free_port()
    writer = server(root, wport, "--root", root, "--redis", redis.url)
    edge = None
    try:
        wait_ready(wport, writer)
        edge = server(root, eport, "--redis", redis.url, "--writer", f"http://127.0.0.1:{wport}")
        wait_ready(eport, edge)
        received: dict[str, dict[int, float]] = {"writer": {}, "edge": {}}
        sockets = {name: connect(f"ws://127.0.0.1:{p}/doc.html").__enter__()
                   for name, p in (("writer", wport), ("edge", eport))}

        def read(name: str) -> None:
            ws = sockets[name]
            while len(received[name]) < args.lag_puts:
                text = ws.recv(timeout=30)
                now = time.monotonic()
                marker = text.split('data-n="', 1)
                if len(marker) == 2:
                    received[name][int(marker[1].split('"', 1)[0])] = now

        readers = [threading.Thread(target=read, args=(n,)) for n in sockets]
        for t in readers:
            t.start()
        conn = http.client.HTTPConnection("127.0.0.1", wport, timeout=10)
        for n in range(args.lag_puts):
            conn.request("PUT", "/doc.html", f'<div id="x" data-n="{n}">{n}</div>',
                         {"Range": "selector=#x"})
            conn.getresponse().read()
            time.sleep(args.lag_interval / 1000)
        for t in readers:
            t.join(60)
        for ws in sockets.values():
            ws.close()
        return sorted((received["edge"][n] - received["writer"][n]) * 1000
                      for n in range(args.lag_puts) if n in received["edge"] and n in received["writer"])
    finally:
        for p in (edge, writer):
            if p is not None:
                stop(p)
        shutil.rmtree(root, ignore_errors=True)


def pct(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, int(p / 100 * len(values)))] if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--watchers", type=int, default=2000)
    parser.add_argument("--paced", type=int, default=50, help="paced PUTs (PUT -> watcher latency)")
    parser.add_argument("--burst-total", type=int, default=200)
    parser.add_argument("--burst-deliveries", type=int, default=400_000,
                        help="deliveries the burst phase aims at (fewer PUTs for more watchers)")
    parser.add_argument("--lag-puts", type=int, default=200)
    parser.add_argument("--lag-interval", type=float, default=10, help="ms between lag PUTs")
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--json", help="save the raw results here")
    args = parser.parse_args()
    if shutil.which("redis-server") is None:
        sys.exit("redis-server not found (apt-get install redis-server)")
    ensure_node_modules()
    redis = Redis()
    try:
        single = fanout(args, "one process")
        workers = fanout(args, "--workers 2", "--redis", redis.url, "--workers", "2")
        log("replication lag")
        lags = lag(args, redis)
    finally:
        redis.stop()
    cores = os.cpu_count() or 1
    rows = []
    for name, level in (("one process", single), ("--workers 2", workers)):
        b = level["burst_phase"]
        s, h = b["server_us_per_delivery"], b["harness_us_per_delivery"]
        rows.append((name, b["deliveries_per_s"],
                     level["warmup_fanout_ms"]["p50"], level["warmup_fanout_ms"]["p99"],
                     level["paced_phase"]["latency_ms"]["p99"],
                     level["paced_phase"]["missing"] + b["missing"], s, h, ceiling(s, h)))
    print(f"\n{args.watchers} watchers of one document, loadavg {os.getloadavg()[0]:.2f} "
          f"on {cores} cores\n")
    print("| server | burst deliveries/s | PUT -> last watcher p50 / p99 (ms) | "
          "paced PUT -> watcher p99 (ms) | missing | burst CPU µs/delivery, server / harness "
          "| ceiling deliveries/s (share) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, rate, p50, p99, paced99, missing, s, h, most in rows:
        print(f"| {name} | {rate:,.0f} | {p50:.1f} / {p99:.1f} | {paced99:.1f} | {missing} "
              f"| {s:.2f} / {h:.2f} | {most:,.0f} ({rate / most:.0%}) |")
    print(f"\nspeed-up: {rows[1][1] / rows[0][1]:.2f}x")
    print(f"ceiling = {cores} cores / (server + harness CPU per delivery): what the machine could "
          f"deliver if nothing else ran and every core were busy; with both on this machine, "
          f"--workers 2 can reach at most {rows[1][8] / rows[0][1]:.2f}x one process's rate "
          f"at its own CPU per delivery.")
    print(f"replication lag, writer fsync -> edge delivery ({len(lags)} PUTs): "
          f"p50 {pct(lags, 50):.2f} ms, p99 {pct(lags, 99):.2f} ms")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"single": single, "workers": workers, "lag_ms": lags}, f)


if __name__ == "__main__":
    main()
