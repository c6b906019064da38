"""
C{--workers N}: every core of one machine, as a writer and N-1 edges on one port.

The parent process is the writer. Each edge is a child process (C{python -m
rustybeam}) listening on the same public port with C{SO_REUSEPORT}, so the kernel
spreads connections over all of them; edges reach the writer over a private
loopback port, with the cluster secret the parent hands them in their environment.
Stopping the parent stops every child (each closes its WebSockets with 1001); a
child whose parent died stops by itself (its stdin, a pipe from the parent, closes).
"""

from __future__ import annotations

import os
import socket
import sys
from typing import Any

from twisted.application.service import Service
from twisted.internet import protocol
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger

WORKER_ENVIRONMENT = "RUSTYBEAM_WORKER"
"""Set in the environment of the children of C{--workers}."""


def parseTCP(description: str) -> tuple[int, str]:
    """The port and interface of a C{tcp:PORT[:interface=ADDRESS]} endpoint description."""
    parts = description.split(":")
    if parts[0] != "tcp" or len(parts) < 2:
        raise ValueError(f"not a tcp:PORT endpoint: {description}")
    port, interface = None, ""
    for part in parts[1:]:
        key, _, value = part.partition("=")
        if not _:
            port = int(key)
        elif key == "port":
            port = int(value)
        elif key == "interface":
            interface = value
        else:
            raise ValueError(f"unsupported {key!r} in {description}")
    if port is None:
        raise ValueError(f"no port in {description}")
    return port, interface


class ReusePortService(Service):
    """Listen on a TCP port that other processes share (C{SO_REUSEPORT})."""

    def __init__(self, description: str, factory: protocol.Factory, reactor: Any) -> None:
        self.port, self.interface = parseTCP(description)
        self.factory = factory
        self.reactor = reactor
        self.listening: IListeningPort | None = None

    def startService(self) -> None:
        super().startService()
        family = socket.AF_INET6 if ":" in self.interface else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((self.interface, self.port))
        sock.listen(1024)
        sock.setblocking(False)
        try:
            self.listening = self.reactor.adoptStreamPort(sock.fileno(), family, self.factory)
        finally:
            sock.close()

    def stopService(self) -> Deferred[None] | None:
        super().stopService()
        if self.listening is None:
            return None
        return self.listening.stopListening()


class _Child(protocol.ProcessProtocol):
    def __init__(self) -> None:
        self.ended: Deferred[None] = Deferred()

    def processEnded(self, reason: Any) -> None:
        self.ended.callback(None)


class WorkersService(Service):
    """
    The N-1 edge processes of C{--workers N}; one that dies is started again after
    C{restartDelay} seconds.

    @param arguments: each child's command-line options (all but C{--writer}).
    @param private: the writer's private listening port (its number is the edges'
        C{--writer}).
    """

    log = Logger()
    stopTimeout = 15.0
    restartDelay = 1.0

    def __init__(self, count: int, arguments: list[str], private: Any, reactor: Any) -> None:
        self.count = count
        self.arguments = arguments
        self.private = private
        self.reactor = reactor
        self.children: list[tuple[Any, _Child]] = []

    def startService(self) -> None:
        super().startService()
        for _ in range(self.count):
            self._spawn()

    def _spawn(self) -> None:
        if not self.running:
            return
        writer = f"http://127.0.0.1:{self.private.getHost().port}"
        package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(os.environ)
        env[WORKER_ENVIRONMENT] = "1"
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package, env.get("PYTHONPATH")) if p)
        child = _Child()
        argv = [sys.executable, "-m", "rustybeam", *self.arguments, "--writer", writer]
        transport = self.reactor.spawnProcess(child, sys.executable, argv, env=env,
                                              childFDs={0: "w", 1: 1, 2: 2})
        entry = (transport, child)
        self.children.append(entry)
        child.ended.addCallback(lambda _: self._ended(entry))

    def _ended(self, entry: tuple[Any, _Child]) -> None:
        self.children.remove(entry)
        if self.running:
            self.log.warn("edge process {pid} ended; starting another", pid=entry[0].pid)
            self.reactor.callLater(self.restartDelay, self._spawn)

    def signal(self, name: str) -> None:
        """Send every edge process the signal C{name} (e.g. C{HUP}: reload)."""
        for transport, _ in list(self.children):
            try:
                transport.signalProcess(name)
            except Exception:
                pass

    def stopService(self) -> Deferred[Any]:
        super().stopService()
        waits = []
        for transport, child in list(self.children):
            try:
                transport.signalProcess("TERM")
            except Exception:
                pass
            timer = self.reactor.callLater(self.stopTimeout, _kill, transport)
            child.ended.addBoth(lambda _, t=timer: t.active() and t.cancel())
            waits.append(child.ended)
        return DeferredList(waits)


def _kill(transport: Any) -> None:
    try:
        transport.signalProcess("KILL")
    except Exception:
        pass


class _ParentWatch(protocol.Protocol):
    def connectionLost(self, reason: Any) -> None:
        from twisted.internet import reactor

        if reactor.running:
            reactor.stop()


def watchParent() -> None:
    """In a child of C{--workers}: stop when the parent's pipe on stdin closes."""
    from twisted.internet import stdio

    stdio.StandardIO(_ParentWatch(), stdout=os.open(os.devnull, os.O_WRONLY))

