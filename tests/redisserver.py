"""
A real C{redis-server} for the cluster tests: on a free loopback port, in a
temporary directory, started and stopped by the test.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from conftest import freePort


class RedisServer:
    """One C{redis-server} process; C{persistent} turns on the append-only file."""

    def __init__(self, directory: Path, persistent: bool = False) -> None:
        self.directory = directory
        self.port = freePort()
        self.persistent = persistent
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        executable = shutil.which("redis-server")
        if executable is None:
            raise RuntimeError("redis-server is not installed (tests/run installs it with apt-get)")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [executable, "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
             str(self.directory), "--save", "", "--appendonly",
             "yes" if self.persistent else "no", "--appendfsync", "always"],
            stdout=open(self.directory / "redis.log", "ab"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if self.command("PING") == "+PONG":
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def command(self, *words: str) -> str:
        """Send one command; return the first line of the reply, or a bulk string's value."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
            s.sendall(("*%d\r\n" % len(words) + "".join(
                "$%d\r\n%s\r\n" % (len(w.encode()), w) for w in words)).encode())
            reply = s.recv(65536).decode(errors="replace").split("\r\n")
            if reply[0].startswith("$") and reply[0] != "$-1":
                return reply[1]
            return reply[0]
