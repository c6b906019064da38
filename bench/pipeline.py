#!/usr/bin/env python3
"""
What the Rusty Beam plugin pipeline and metrics cost per HTTP request.

    python bench/pipeline.py [--seconds 3]

Starts real servers (``python -m rustybeam --config``) on loopback, one per setup:
only the handlers; the handlers behind cors, security-headers, rate-limit (a limit
no client reaches) and error-handler; the same plus compression (gzip, every
response compressed); and the handlers with ``--metrics``. For each it sends
sequential keep-alive requests from one client for the given time: GET of a 5 KB
document, and selector PUTs. Prints requests per second and the median latency.
The client shares the machine with the server, so the numbers compare setups; they
are not capacity figures.
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT / "tests"))

from test_plugins import HANDLERS, plugin, writeConfig  # noqa: E402

DOC = ("<!DOCTYPE html><html><body><ul id=\"list\">" + "<li>an item of the list</li>" * 180
       + "</ul><p id=\"p\">x</p></body></html>")
STAGES = (plugin("cors"), plugin("security-headers"),
          plugin("rate-limit", requests_per_second="1000000", burst_capacity="1000000"))
SETUPS = {
    "handlers only": (HANDLERS, ()),
    "4 plugins": (STAGES + HANDLERS + (plugin("error-handler"),), ()),
    "4 plugins + compression": (STAGES + HANDLERS + (plugin("error-handler"), plugin("compression")), ()),
    "handlers + --metrics": (HANDLERS, ("--metrics",)),
}


def freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(conn: http.client.HTTPConnection, seconds: float, method: str, headers: dict[str, str],
        body: bytes | None) -> tuple[float, float]:
    times = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        start = time.perf_counter()
        conn.request(method, "/index.html", body=body, headers=headers)
        r = conn.getresponse()
        r.read()
        assert r.status in (200, 206), r.status
        times.append(time.perf_counter() - start)
    return len(times) / seconds, statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    print(f"{'setup':28} {'GET req/s':>10} {'p50 ms':>7} {'PUT req/s':>10} {'p50 ms':>7}")
    for name, (plugins, options) in SETUPS.items():
        with tempfile.TemporaryDirectory() as tmp:
            config = writeConfig(Path(tmp), *plugins)
            (Path(tmp) / "root" / "index.html").write_text(DOC)
            port = freePort()
            env = dict(os.environ, PYTHONPATH=str(PROJECT))
            server = subprocess.Popen(
                [sys.executable, "-m", "rustybeam", "--config", str(config), "--no-fsync",
                 "--port", f"tcp:{port}:interface=127.0.0.1", *options],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
            try:
                for _ in range(200):
                    try:
                        socket.create_connection(("127.0.0.1", port), 0.1).close()
                        break
                    except OSError:
                        time.sleep(0.05)
                conn = http.client.HTTPConnection("127.0.0.1", port)
                get = run(conn, args.seconds, "GET", {"Accept-Encoding": "gzip"}, None)
                put = run(conn, args.seconds, "PUT", {"Range": "selector=#p"}, b'<p id="p">y</p>')
                print(f"{name:28} {get[0]:10.0f} {get[1]:7.2f} {put[0]:10.0f} {put[1]:7.2f}")
            finally:
                server.terminate()
                server.wait()


if __name__ == "__main__":
    main()
