"""
Redis Streams as a cluster's change log.

The writer appends one entry per applied change to one stream (C{<prefix>log}), in
the order it applied them; every edge follows the stream and applies the same
changes to its own replica. An entry carries the change's host, URL, sequence
number, method, selector and the body as sent: what a replica needs to apply it.

Beside the stream, Redis holds the cluster's I{epoch} (a random value the writer
sets when it finds none): a Redis that lost its data has no epoch or a new one, so
no node mistakes an emptied stream for a short history. It also holds the cluster's
shared secret unless C{RUSTYBEAM_CLUSTER_SECRET} gives one.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from collections import deque
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Iterable, Mapping, Protocol, Sequence
from urllib.parse import quote, unquote, urlparse

import txredisapi
from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.defer import Deferred, DeferredList, ensureDeferred, gatherResults
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger

from rustybeam.changes import Change
from rustybeam.documents import DocumentStore
from rustybeam.errors import Problem
from rustybeam.notifier import DocumentChangeNotifier

SECRET_ENVIRONMENT = "RUSTYBEAM_CLUSTER_SECRET"
"""An environment variable that, when set, gives the cluster's shared secret."""


@dataclass(frozen=True)
class RedisOptions:
    """How a node reaches Redis and how much the shared stream keeps."""

    url: str = "redis://127.0.0.1:6379/0"
    streamLength: int = 256 * 1024
    """Entries the stream keeps (C{XADD MAXLEN ~}): C{--history} changes for each of
    the documents whose history a node keeps. A node that falls further behind
    copies the documents again."""
    streamBytes: int = 32 * 1024 * 1024
    """Bytes of entries the stream keeps (C{XTRIM MINID}), C{--history-bytes}."""
    prefix: str = "rustybeam:"
    """Prefix of every key, so that several clusters can share one Redis."""
    backoff: float = 0.1
    """First delay before reconnecting; it doubles up to C{maxBackoff}."""
    maxBackoff: float = 5.0
    block: int = 1000
    """Milliseconds an edge's C{XREAD} waits for new entries before it checks the epoch."""

    @property
    def stream(self) -> str:
        return self.prefix + "log"

    @property
    def epochKey(self) -> str:
        return self.prefix + "epoch"

    @property
    def secretKey(self) -> str:
        return self.prefix + "secret"


def connect(options: RedisOptions) -> Deferred[Any]:
    """One connection to the Redis that C{options.url} names (C{redis://[:pw@]host:port/db})."""
    parsed = urlparse(options.url)
    if parsed.scheme != "redis":
        raise ValueError(f"not a redis:// URL: {options.url}")
    db = int(parsed.path.strip("/") or 0)
    password = unquote(parsed.password) if parsed.password else None
    return txredisapi.Connection(parsed.hostname or "127.0.0.1", parsed.port or 6379, dbid=db,
                                 password=password, reconnect=False, convertNumbers=False,
                                 charset="utf-8")


@dataclass(frozen=True)
class Entry:
    """One stream entry: a change (or, with C{kind} C{hello}, a writer's start)."""

    kind: str
    host: str
    url: str = ""
    sequence: int = 0
    method: str = ""
    selector: str = ""
    body: bytes | None = None
    size: int = 0
    origin: int = 0
    """For C{hello}: the sequence every unchanged document has on the new writer."""
    etag: str | None = None
    """The document's ETag on the writer after the change, which replicas answer with."""
    more: bool = False
    """Another change of the same commit follows: an edge applies them as one group."""

    @classmethod
    def of(cls, host: str, change: Change, etag: str | None, more: bool = False) -> Entry:
        return cls("change", host, change.url, change.sequence, change.method, change.selector,
                   change.body, change.size, etag=etag, more=more)

    def encode(self) -> str:
        fields = dict(self.__dict__)
        fields["body"] = base64.b64encode(self.body).decode("ascii") if self.body is not None else None
        return json.dumps(fields, separators=(",", ":"))

    @classmethod
    def decode(cls, text: str) -> Entry:
        fields = {k: v for k, v in json.loads(text).items() if k in cls.__dataclass_fields__}
        body = fields.get("body")
        fields["body"] = base64.b64decode(body) if body is not None else None
        return cls(**fields)


def _sleep(reactor: IReactorTime, seconds: float) -> Deferred[None]:
    return deferLater(reactor, seconds, lambda: None)


class _HostLog:
    """The change log of one host on the writer: its notifier, then the stream."""

    def __init__(self, publisher: RedisChangeLog, host: str, notifier: DocumentChangeNotifier) -> None:
        self.publisher = publisher
        self.host = host
        self.notifier = notifier
        self.store: DocumentStore | None = None
        """The store whose changes these are (to read each change's ETag)."""

    def extend(self, changes: Sequence[Change]) -> None:
        self.notifier.changedAll(changes)
        last = len(changes) - 1
        for i, change in enumerate(changes):
            self.publisher.publish(Entry.of(self.host, change, self._etag(change), more=i < last))

    def _etag(self, change: Change) -> str | None:
        """The ETag of the version just stored: the store reports a commit's changes
        before another write to the document may start."""
        if self.store is None:
            return None
        try:
            return self.store.etagAt(self.store.locate(quote(change.url, safe="/")), change.sequence)
        except Problem:
            return None


class RedisChangeLog(Service):
    """
    The writer's side of the stream: every change, in order, appended to Redis.

    Entries wait in memory while Redis is unreachable and are sent, in order, once it
    is back (up to C{maxPending}; past that they are dropped, and edges see the gap
    in the sequence numbers and copy the documents again).
    """

    log = Logger()
    maxPending = 100_000
    flushTimeout = 2.0
    """Seconds a stopping writer spends sending the entries still queued."""

    def __init__(self, options: RedisOptions, reactor: IReactorTime) -> None:
        self.options = options
        self.clock = reactor
        self.secret: str | None = os.environ.get(SECRET_ENVIRONMENT) or None
        self.epoch: str | None = None
        self.sent = 0
        self._pending: deque[str] = deque()
        self._kept: deque[tuple[str, int]] = deque()
        self._keptBytes = 0
        self._wake: Deferred[None] | None = None
        self._loop: Deferred[None] | None = None
        self._connection: Any = None

    def logFor(self, host: str, notifier: DocumentChangeNotifier) -> _HostLog:
        return _HostLog(self, host, notifier)

    def hello(self, host: str, origin: int) -> None:
        """Announce a writer that has just started (its sequence numbers restart)."""
        self.publish(Entry("hello", host, origin=origin))

    def publish(self, entry: Entry) -> None:
        if len(self._pending) >= self.maxPending:
            self.log.warn("Redis unreachable: dropping {n} unsent changes", n=len(self._pending))
            self._pending.clear()
        self._pending.append(entry.encode())
        self._wakeUp()

    def _wakeUp(self) -> None:
        """Let the sending loop go on (it waits for entries, or for the stop)."""
        if self._wake is not None:
            wake, self._wake = self._wake, None
            wake.callback(None)

    def startService(self) -> None:
        super().startService()
        self._loop = ensureDeferred(self._run())

    def stopService(self) -> Deferred[None] | None:
        """Stop once the queued entries are sent, or after C{flushTimeout}."""
        super().stopService()
        self._wakeUp()
        if self._loop is None:
            return None
        self._loop.addTimeout(self.flushTimeout, self.clock)
        return self._loop.addBoth(lambda _: None)

    async def _run(self) -> None:
        backoff = self.options.backoff
        while self.running:
            try:
                self._connection = await connect(self.options)
                await self._claim(self._connection)
                backoff = self.options.backoff
                await self._send(self._connection)
            except Exception as e:
                if not self.running:
                    break
                self.log.warn("Redis {url}: {error}; retrying in {delay}s", url=self.options.url,
                              error=e, delay=backoff)
                await _sleep(self.clock, backoff)
                backoff = min(backoff * 2, self.options.maxBackoff)
            finally:
                if self._connection is not None:
                    connection, self._connection = self._connection, None
                    try:
                        connection.disconnect()
                    except Exception:
                        pass
        if self._pending:
            self.log.warn("stopping with {n} changes not sent to Redis", n=len(self._pending))

    async def _claim(self, connection: Any) -> None:
        """Make sure Redis has an epoch (a new one when it lost its data) and a secret."""
        await connection.execute_command("SET", self.options.epochKey, secrets.token_hex(8), "NX")
        epoch = await connection.execute_command("GET", self.options.epochKey)
        if epoch != self.epoch and self.epoch is not None:
            self.log.warn("Redis lost its data (new epoch {epoch}); edges will copy the documents again",
                          epoch=epoch)
        self.epoch = epoch
        if self.secret is None:
            await connection.execute_command("SET", self.options.secretKey, secrets.token_hex(16), "NX")
            self.secret = await connection.execute_command("GET", self.options.secretKey)
        else:
            await connection.execute_command("SET", self.options.secretKey, self.secret)

    async def _send(self, connection: Any) -> None:
        """Send the queued entries in order; while idle, check the epoch every
        C{block} milliseconds (a Redis that restarted empty gets a new one at once)."""
        while self.running or self._pending:
            if not self._pending:
                self._wake = Deferred()
                self._wake.addTimeout(self.options.block / 1000, self.clock)
                try:
                    await self._wake
                except defer.TimeoutError:
                    self._wake = None
                    await self._claim(connection)
                continue
            batch = [self._pending[i] for i in range(min(len(self._pending), 256))]
            ids = await gatherResults([
                connection.execute_command("XADD", self.options.stream, "MAXLEN", "~",
                                           str(self.options.streamLength), "*", "c", text)
                for text in batch
            ], consumeErrors=True)
            for entryId, text in zip(ids, batch):
                self._pending.popleft()
                self._kept.append((entryId, len(text)))
                self._keptBytes += len(text)
            self.sent += len(batch)
            await self._trim(connection)

    async def _trim(self, connection: Any) -> None:
        """Drop the oldest entries past C{streamBytes} (those this writer added)."""
        if self._keptBytes <= self.options.streamBytes:
            while len(self._kept) > self.options.streamLength:
                self._keptBytes -= self._kept.popleft()[1]
            return
        while self._kept and self._keptBytes > self.options.streamBytes:
            self._keptBytes -= self._kept.popleft()[1]
        first = self._kept[0][0] if self._kept else "+"
        if first == "+":
            await connection.execute_command("XTRIM", self.options.stream, "MAXLEN", "0")
        else:
            await connection.execute_command("XTRIM", self.options.stream, "MINID", first)


class Replica(Protocol):
    """An edge's copy of one host's documents (L{rustybeam.cluster.ReplicaStore})."""

    @property
    def origin(self) -> int: ...

    def offer(self, entry: Entry) -> Deferred[object] | None:
        """Apply C{entry} after those offered before; raise L{Gap} if one is missing."""

    def install(self, snapshot: Mapping[str, Any]) -> Awaitable[None]: ...

    def behind(self) -> Mapping[str, int]:
        """The documents L{install} left behind the snapshot, to take the writer's
        history from the stream: each with the sequence of the first entry it needs."""

    def catchUp(self, entries: Iterable[Entry]) -> Awaitable[None]:
        """Bring the documents L{behind} the snapshot up to it with C{entries}."""


class Gap(Exception):
    """An entry does not follow the replica's last one: the replica must be copied again."""


class StreamFollower(Service):
    """
    The edge's side of the stream: apply every entry, in order, to the replicas.

    It copies every host's documents from the writer (C{snapshot}) when it starts,
    when the epoch changes (Redis lost its data), when the stream no longer reaches
    back to its last entry (it fell behind, or Redis lost entries), when a writer
    restarts, and when an entry does not follow the last one.
    """

    log = Logger()
    page = 1000
    """Entries read at a time while reading the stream back for history."""

    def __init__(self, options: RedisOptions, replicas: Mapping[str, Replica],
                 snapshot: Callable[[str], Awaitable[Mapping[str, Any]]],
                 reactor: IReactorTime) -> None:
        self.options = options
        self.replicas = replicas
        self.snapshot = snapshot
        self.clock = reactor
        self.ready = False
        self.resyncs = 0
        self.epoch: str | None = None
        self.lastId: str | None = None
        self._connection: Any = None
        self._loop: Deferred[None] | None = None
        self._stale = True
        self._readiness: list[Deferred[None]] = []

    def whenReady(self) -> Deferred[None]:
        """Fire once the replicas have been copied from the writer the first time."""
        d: Deferred[None] = Deferred()
        if self.ready:
            d.callback(None)
        else:
            self._readiness.append(d)
        return d

    def copyAgain(self) -> None:
        """Copy every host's documents again before the next entry (a host was added)."""
        self._stale = True

    def startService(self) -> None:
        super().startService()
        self._loop = ensureDeferred(self._run())

    def stopService(self) -> Deferred[None] | None:
        super().stopService()
        if self._connection is not None:
            try:
                self._connection.disconnect()
            except Exception:
                pass
        if self._loop is None:
            return None
        return self._loop.addBoth(lambda _: None)

    async def _run(self) -> None:
        backoff = self.options.backoff
        while self.running:
            try:
                self._connection = await connect(self.options)
                await self._follow(self._connection)
            except Exception as e:
                if not self.running:
                    break
                self.log.warn("following {url}: {error}; retrying in {delay}s",
                              url=self.options.url, error=e, delay=backoff)
                await _sleep(self.clock, backoff)
                backoff = min(backoff * 2, self.options.maxBackoff)
                continue
            finally:
                if self._connection is not None:
                    connection, self._connection = self._connection, None
                    try:
                        connection.disconnect()
                    except Exception:
                        pass
            backoff = self.options.backoff

    async def _follow(self, connection: Any) -> None:
        """Check the epoch and history, copy the documents if needed, then apply entries."""
        while self.running:
            epoch = await connection.execute_command("GET", self.options.epochKey)
            if epoch is None:
                raise ConnectionError("no writer has claimed this Redis yet")
            last = await self._lastId(connection)
            if (self._stale or epoch != self.epoch or self.lastId is None
                    or _idLess(last, self.lastId)):
                await self._resync(connection, last)
                self.epoch = epoch
            held: list[tuple[str, Entry]] = []
            while self.running and not self._stale:
                reply = await connection.execute_command(
                    "XREAD", "COUNT", "1000", "BLOCK", str(self.options.block),
                    "STREAMS", self.options.stream, held[-1][0] if held else self.lastId)
                if reply:
                    held.extend((entryId, Entry.decode(_field(fields, "c")))
                                for entryId, fields in reply[0][1])
                    if held[-1][1].more and len(held) < 1000:
                        continue  # the rest of the commit is on its way
                elif not held:
                    break
                applying: list[Deferred[object]] = []
                for entryId, entry in held:  # offered in one turn: one group commit
                    self.lastId = entryId
                    applied = self._apply(entry)
                    if applied is not None:
                        applying.append(applied)
                    if self._stale:
                        break
                held = []
                if applying:
                    for ok, result in await DeferredList(applying, consumeErrors=True):
                        if not ok:
                            self.log.warn("applying a change failed: {error}", error=result.value)
                            self._stale = True
                if not reply:
                    break

    def _apply(self, entry: Entry) -> Deferred[object] | None:
        replica = self.replicas.get(entry.host)
        if replica is None:
            return None
        if entry.kind == "hello":
            if entry.origin != replica.origin:
                self.log.info("the writer restarted; copying the documents again")
                self._stale = True
            return None
        try:
            return replica.offer(entry)
        except Gap as gap:
            self.log.info("{gap}; copying the documents again", gap=gap)
            self._stale = True
            return None

    async def _resync(self, connection: Any, last: str) -> None:
        """Copy every host's documents (with the writer's history, L{_catchUp});
        entries after C{last} then apply on top. A host added meanwhile
        (L{copyAgain}) leaves the replicas stale for another copy."""
        self._stale = False
        try:
            for host, replica in list(self.replicas.items()):
                await replica.install(await self.snapshot(host))
            await self._catchUp(connection)
        except BaseException:
            self._stale = True
            raise
        self.lastId = last
        self.resyncs += 1
        self.ready = True
        waiting, self._readiness = self._readiness, []
        for d in waiting:
            d.callback(None)

    async def _catchUp(self, connection: Any) -> None:
        """Give the documents that replicas installed behind the snapshot the
        stream's entries, read back from its end to the first entry each needs."""
        replicas = dict(self.replicas)
        needed = {(host, url): first for host, replica in replicas.items()
                  for url, first in replica.behind().items()}
        if not needed:
            return
        wanted = set(needed)
        entries: list[Entry] = []
        end = "+"
        while needed:
            reply = await connection.execute_command("XREVRANGE", self.options.stream, end, "-",
                                                     "COUNT", str(self.page))
            for entryId, fields in reply:
                entry = Entry.decode(_field(fields, "c"))
                key = (entry.host, entry.url)
                if key in wanted:
                    entries.append(entry)
                    if entry.sequence <= needed.get(key, -1):
                        del needed[key]
            if len(reply) < self.page:
                break
            end = "(" + reply[-1][0]
        entries.reverse()
        for host, replica in replicas.items():
            await replica.catchUp([e for e in entries if e.host == host])

    async def _lastId(self, connection: Any) -> str:
        reply = await connection.execute_command("XREVRANGE", self.options.stream, "+", "-",
                                                 "COUNT", "1")
        return reply[0][0] if reply else "0-0"


def _field(fields: list[Any], name: str) -> str:
    for key, value in zip(fields[::2], fields[1::2]):
        if key == name:
            return value
    raise ValueError(f"stream entry without {name!r}")


def _idLess(a: str, b: str) -> bool:
    ta, tb = a.split("-"), b.split("-")
    return (int(ta[0]), int(ta[1])) < (int(tb[0]), int(tb[1]))
