"""
A cluster of nodes on one Redis: one writer, any number of edges.

The writer owns the document root and applies every write, as a single process
does; its change log (L{rustybeam.redislog.RedisChangeLog}) also appends each change
to a Redis stream. An edge has no root: it keeps a L{ReplicaStore} (a copy of the
writer's documents in a private directory) and applies the stream's entries to it
with the store's own write functions, so that its notifier delivers byte-identical
StreamItems with the writer's sequence numbers, and selector scoping and redaction
are decided locally exactly as on the writer. An edge forwards every write to the
writer (L{EdgeRoot}) and answers it once its own replica includes it.

The writer serves a snapshot of every document with its sequence number under
C{/_rustybeam/cluster/snapshot}, only to requests carrying the cluster's shared
secret (C{X-Rustybeam-Cluster}); edges start from it and return to it whenever the
stream cannot bring them up to date.
"""

from __future__ import annotations

import base64
import hmac
import itertools
import json
import os
import shutil
import tempfile
from collections import deque
from dataclasses import replace
from functools import partial
from io import BytesIO
from typing import Any, Callable, Iterable, Mapping, Sequence
from urllib.parse import parse_qs, quote

from lxml import etree
from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, DeferredList, ensureDeferred
from twisted.internet.error import ConnectError, ConnectionDone, DNSLookupError
from twisted.internet.task import deferLater
from twisted.internet.interfaces import IReactorThreads, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import Agent, FileBodyProducer, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from rustybeam import markup
from rustybeam.changelog import StoreFactory
from rustybeam.changes import Change, ChangeSink
from rustybeam.documents import (
    DocumentStore, FileInfo, StoreOptions, WriteResult, atomicWrite, durableUnlink)
from rustybeam.documents import _applySelector, _applyWhole
from rustybeam.errors import (
    CLUSTER_NOT_READY,
    CLUSTER_REFUSED,
    INTERNAL,
    NOT_READY,
    REPLICA_BEHIND,
    TOO_LARGE,
    UNKNOWN_HOST,
    WRITER_FAILED,
    WRITER_UNAVAILABLE,
    Problem,
)
from rustybeam.notifier import DocumentChangeNotifier
from rustybeam.paths import TEMP_PREFIX, TEMP_SUFFIX, DocumentPath
from rustybeam.redislog import (
    SECRET_ENVIRONMENT,
    Entry,
    Gap,
    RedisChangeLog,
    RedisOptions,
    StreamFollower,
    connect,
)
from rustybeam.resource import SEQUENCE_HEADER, renderProblem
from rustybeam import selectors

CLUSTER_HEADER = b"X-Rustybeam-Cluster"
"""Carries the cluster's shared secret on requests from an edge to the writer."""
CLUSTER_PATH = b"/_rustybeam/cluster/"
SNAPSHOT_PATH = CLUSTER_PATH + b"snapshot"
"""Below the mount point of the cluster's resource tree (the site root from the
command line)."""
WRITE_METHODS = (b"PUT", b"POST", b"DELETE")
_HOP_BY_HOP = {b"connection", b"keep-alive", b"transfer-encoding", b"upgrade", b"te", b"trailer",
               b"proxy-authorization", b"proxy-authenticate", b"content-length",
               CLUSTER_HEADER.lower(), b"x-forwarded-for"}


def _urlPath(url: str) -> str:
    return quote(url, safe="/")


def _below(path: bytes, request: Request) -> bytes:
    """The request's path below the resource that was asked for its child C{path}."""
    return b"/" + b"/".join([path, *request.postpath])


def _reactor(reactor: Any) -> Any:
    if reactor is None:
        from twisted.internet import reactor as default

        return default
    return reactor


# The writer


History = Callable[[str], Sequence[Change]]
"""The changes of a document that a node keeps for resuming clients, oldest first."""


def _base(doc: DocumentPath, sequence: int, history: Sequence[Change]) -> dict[str, Any] | None:
    """
    The version of C{doc} before the oldest change of C{history}, with that version's
    sequence number (and C{None} as data when the document did not exist): where an
    edge starts so that applying the stream's entries gives it the same history.
    C{None} when there is no history, or when it is not that of an HTML document
    ending at C{sequence}. A whole-document C{POST} appends to the bytes on disk,
    which a serialized version need not have: the history starts after the last one.
    """
    if not history or not doc.isHTML or history[-1].sequence != sequence:
        return None
    appended = [i for i, change in enumerate(history)
                if change.method == "POST" and change.wholeDocument]
    history = history[appended[-1] + 1:] if appended else history
    if not history:
        return None
    oldest = history[0]
    before = oldest.versionBefore()
    if before is None and not oldest.wholeDocument:
        return None
    data = markup.serializeDocument(before) if before is not None else None
    return {"sequence": oldest.sequence - 1,
            "data": base64.b64encode(data).decode("ascii") if data is not None else None}


async def writeSnapshot(store: DocumentStore, history: History | None,
                        write: Callable[[bytes], object], clock: IReactorTime) -> None:
    """
    Write, as one JSON object, every document under C{store}'s root, each with its
    sequence number and, when C{history} keeps changes of it, the C{base} they apply
    to (L{_base}). Each document is written as soon as it is taken, and the reactor
    gets a turn before the next one: a snapshot of a large root neither stops the
    writer nor holds all of it in memory at once.
    """
    write(b'{"origin":%d,"documents":[' % store.origin)
    separator = b""
    seen: set[str] = set()
    for directory, subdirectories, files in os.walk(store.root):
        subdirectories.sort()
        for name in sorted(files):
            if name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX):
                continue
            relative = os.path.relpath(os.path.join(directory, name), store.root)
            try:
                doc = store.locate("/" + _urlPath(relative.replace(os.sep, "/")))
            except Problem:
                continue
            if doc.url in seen or not os.path.isfile(doc.filename):
                continue
            seen.add(doc.url)
            sequence, data, etag = await store.snapshot(doc)
            if data is None:
                continue
            item = {"url": doc.url, "sequence": sequence, "etag": etag,
                    "data": base64.b64encode(data).decode("ascii")}
            base = _base(doc, sequence, history(doc.url)) if history is not None else None
            if base is not None:
                item["base"] = base
            write(separator + json.dumps(item).encode("utf-8"))
            separator = b","
            await deferLater(clock, 0, lambda: None)
    gone = []
    for url in sorted(set(store.changed()) - seen):
        try:
            doc = store.locate(url)
        except Problem:
            continue
        sequence, data, _ = await store.snapshot(doc)
        if data is None:
            gone.append({"url": doc.url, "sequence": sequence})
    write(b'],"gone":' + json.dumps(gone).encode("utf-8") + b"}")


class SnapshotResource(Resource):
    """C{GET /_rustybeam/cluster/snapshot?host=NAME}: a host's documents, for edges."""

    isLeaf = True
    log = Logger()

    def __init__(self, stores: Mapping[str, DocumentStore],
                 histories: Mapping[str, History] | None = None,
                 reactor: IReactorTime | None = None) -> None:
        super().__init__()
        self.stores = stores
        self.histories = histories if histories is not None else {}
        self.clock = _reactor(reactor)

    def render_GET(self, request: Request) -> bytes | int:
        host = parse_qs(request.uri.split(b"?", 1)[-1]).get(b"host", [b""])[0].decode()
        store = self.stores.get(host)
        if store is None:
            return renderProblem(request, UNKNOWN_HOST)
        request.setHeader(b"content-type", b"application/json")

        def write(data: bytes) -> None:
            if request._disconnected:
                raise ConnectionDone("the edge went away")
            request.write(data)

        def failed(failure: Any) -> None:
            if failure.check(ConnectionDone):
                return
            self.log.failure("snapshot of {host!r} failed", failure, host=host)
            if not request._disconnected:
                request.loseConnection()  # the edge refuses a truncated snapshot

        d = ensureDeferred(writeSnapshot(store, self.histories.get(host), write, self.clock))
        d.addCallbacks(lambda _: None if request._disconnected else request.finish(), failed)
        return NOT_DONE_YET


class _ProblemResource(Resource):
    isLeaf = True

    def __init__(self, problem: Problem) -> None:
        super().__init__()
        self.problem = problem

    def render(self, request: Request) -> bytes:
        return renderProblem(request, self.problem)


class WriterRoot(Resource):
    """
    The writer's resource tree: its documents, and the snapshot for edges. A request
    that claims to come from an edge with a wrong secret is refused.
    """

    def __init__(self, inner: Resource, stores: Mapping[str, DocumentStore],
                 secret: Callable[[], str | None],
                 histories: Mapping[str, History] | None = None,
                 reactor: IReactorTime | None = None) -> None:
        super().__init__()
        self.inner = inner
        self.secret = secret
        self.snapshots = SnapshotResource(stores, histories, reactor)

    def _refused(self, request: Request, below: bytes) -> Problem | None:
        """Why a request from an edge (or for the snapshot) is refused, if it is."""
        claimed = request.getHeader(CLUSTER_HEADER)
        if claimed is None and not below.startswith(CLUSTER_PATH):
            return None
        secret = self.secret()
        if secret is None:
            return CLUSTER_NOT_READY
        if claimed is None or not _same(claimed, secret.encode()):
            return CLUSTER_REFUSED
        return None

    def getChildWithDefault(self, path: bytes, request: Request) -> Resource:
        below = _below(path, request)
        refused = self._refused(request, below)
        if refused is not None:
            return _ProblemResource(refused)
        if below == SNAPSHOT_PATH:
            return self.snapshots
        return self.inner.getChildWithDefault(path, request)

    def render(self, request: Request) -> bytes | int:
        return self.inner.render(request)


def _same(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)


class WriterNode(MultiService):
    """The writer's cluster side: the stream publisher and the stores it announces."""

    def __init__(self, options: RedisOptions, reactor: IReactorTime | None = None) -> None:
        super().__init__()
        self.publisher = RedisChangeLog(options, _reactor(reactor))
        self.publisher.setServiceParent(self)
        self.stores: dict[str, DocumentStore] = {}
        self.histories: dict[str, History] = {}

    def storeFor(self, host: str) -> StoreFactory:
        def make(root: str, notifier: DocumentChangeNotifier, options: StoreOptions,
                 reactor: IReactorThreads) -> DocumentStore:
            log = self.publisher.logFor(host, notifier)
            store = DocumentStore(root, log.extend, options, reactor)
            log.store = store
            self.stores[host] = store
            self.histories[host] = notifier.history
            if self.running:
                self.publisher.hello(host, store.origin)
            return store

        return make

    def release(self, host: str, store: DocumentStore) -> None:
        """Stop serving snapshots of a host that a reload removed (or gave another root)."""
        if self.stores.get(host) is store:
            del self.stores[host]
            del self.histories[host]

    def startService(self) -> None:
        for host, store in self.stores.items():
            self.publisher.hello(host, store.origin)
        super().startService()

    def wrap(self, root: Resource) -> WriterRoot:
        return WriterRoot(root, self.stores, lambda: self.publisher.secret, self.histories,
                          self.publisher.clock)


# The edge


class ReplicaStore(DocumentStore):
    """
    An edge's copy of one host's documents, in a private directory: read like any
    store, changed only by the writer's entries (L{offer}) and snapshots (L{install}).
    """

    def __init__(self, root: str, sink: ChangeSink, options: StoreOptions,
                 reactor: IReactorThreads) -> None:
        super().__init__(root, None, replace(options, fsync=False), reactor)
        self.onChanges = self._applied
        self._sink = sink
        self._expected: dict[str, int] = {}
        self._offered: dict[str, deque[int]] = {}
        """The sequence numbers of the entries in the write queue, oldest first."""
        self._diverged: set[str] = set()
        """Documents whose copy lost an entry that the writer applied (it failed
        here): not delivered or read as current until the documents are copied again."""
        self._etags: dict[str, str] = {}
        self._etagAt: dict[tuple[str, int], str | None] = {}
        self._waiting: dict[str, list[tuple[int, Deferred[bool]]]] = {}
        self.takesHistory = True
        """Whether the next copy takes the writer's history (L{catchUp}): only the
        first, and only if nobody can watch the replica before it."""
        self._catching: dict[str, tuple[int, bytes, str | None]] = {}
        """Documents installed at an older version than the snapshot's (to take the
        writer's history from the stream), each with the snapshot's sequence number,
        bytes and ETag, which L{catchUp} brings them to."""

    def info(self, doc: DocumentPath) -> FileInfo | None:
        """The replica's file, described with the writer's ETag (so that C{If-Match}
        and C{If-None-Match} mean the same on every node)."""
        info = super().info(doc)
        etag = self._etags.get(doc.url)
        return replace(info, etag=etag) if info is not None and etag else info

    def _write(self, *args: Any) -> Deferred[Any]:
        raise WRITER_UNAVAILABLE.because("an edge never writes its replica itself")

    def offer(self, entry: Entry) -> Deferred[object] | None:
        """
        Apply C{entry} after every entry offered before it. A whole-document write
        is checked against the size the writer stored (a selector write's size is
        that of the group commit it was part of, which differs between nodes).
        """
        doc = self.locate(_urlPath(entry.url))
        if doc.url in self._diverged:
            raise Gap(f"{entry.url}: the copy lost an entry before {entry.sequence}")
        expected = self._expected.get(doc.url, self.sequence(doc.url))
        if entry.sequence <= expected:
            return None
        if entry.sequence != expected + 1:
            raise Gap(f"{entry.url}: sequence {entry.sequence} after {expected}")
        self._expected[doc.url] = entry.sequence
        self._offered.setdefault(doc.url, deque()).append(entry.sequence)
        self._etagAt[(doc.url, entry.sequence)] = entry.etag
        if entry.selector:
            plan = partial(_applySelector, entry.method, selectors.compile(entry.selector),
                           entry.body or b"")
        else:
            plan = partial(_applyWhole, doc, entry.method, entry.body)
        d = DocumentStore._write(self, doc, None, None, plan)

        def verify(result: Any) -> object:
            if doc.url in self._diverged or (not entry.selector and result.change.size != entry.size):
                raise Gap(f"{entry.url}: replica differs from the writer at {entry.sequence}")
            return result

        def failed(failure: Any) -> Any:
            self._offered[doc.url].popleft()
            self._diverged.add(doc.url)
            return failure

        return d.addCallbacks(verify, failed)

    async def install(self, snapshot: Mapping[str, Any]) -> None:
        """
        Make the replica the writer's snapshot; watchers of a document that differs
        get it whole, as a PUT with the writer's sequence number. A copy that
        L{takesHistory} installs a document that has a C{base} at it, for L{catchUp}.
        """
        await self.drain()
        first, self.takesHistory = self.takesHistory, False
        self._catching.clear()
        self._origin = int(snapshot["origin"])
        self._expected.clear()
        self._offered.clear()
        self._diverged.clear()
        self._etagAt.clear()
        self._etags = {item["url"]: item["etag"] for item in snapshot["documents"] if item.get("etag")}
        sequences: dict[str, int] = {}
        kept: set[str] = set()
        for item in snapshot["documents"]:
            doc = self.locate(_urlPath(item["url"]))
            data = base64.b64decode(item["data"])
            sequences[doc.url] = int(item["sequence"])
            base = item.get("base") if first else None
            if base is not None:
                self._catching[doc.url] = (sequences[doc.url], data, item.get("etag"))
                self._etags.pop(doc.url, None)
                sequences[doc.url] = int(base["sequence"])
                if base["data"] is None:
                    continue
                data = base64.b64decode(base["data"])
            kept.add(doc.filename)
            try:
                old: bytes | None = self.read(doc)
            except Problem:
                old = None
            if old == data:
                continue
            before = self._rewrite(doc, data, sequences[doc.url])
            if old is not None or before is not None:
                self._announce(doc, data, before, sequences[doc.url])
        gone = {item["url"]: int(item["sequence"]) for item in snapshot.get("gone", ())}
        for directory, _, files in os.walk(self.root):
            for name in files:
                filename = os.path.join(directory, name)
                if filename in kept:
                    continue
                doc = self._located(filename)
                before = self.treeOrNone(doc) if doc is not None else None
                durableUnlink(filename, fsync=False)
                if doc is not None and doc.url in gone:
                    sequences[doc.url] = gone[doc.url]
                    self._announceDeleted(doc, before, gone[doc.url])
        for url in list(self._cache):
            self._forget(url)
        self._sequences = sequences
        for url in list(self._waiting):
            self._wake(url)

    def behind(self) -> dict[str, int]:
        """The documents installed behind the snapshot, each with the sequence number
        of the first entry it needs."""
        return {url: self.sequence(url) + 1 for url in self._catching}

    async def catchUp(self, entries: Iterable[Entry]) -> None:
        """
        Apply C{entries} (the stream's, oldest first) to the documents L{behind} the
        snapshot, up to its sequence numbers, as if this replica had followed them: its
        notifier keeps them as history. A document they do not bring to the snapshot's
        sequence number is given the snapshot's bytes as a whole-document change with
        that number (as after any copy); one that they bring there with other bytes
        is given the snapshot's bytes only.
        """
        applying: list[Deferred[object]] = []
        for entry in entries:
            target = self._catching.get(entry.url)
            if entry.kind != "change" or target is None or entry.sequence > target[0]:
                continue
            try:
                applied = self.offer(entry)
            except (Gap, Problem):
                continue
            if applied is not None:
                applying.append(applied)
        await DeferredList(applying, consumeErrors=True)
        catching, self._catching = self._catching, {}
        for url, (sequence, data, etag) in catching.items():
            doc = self.locate(_urlPath(url))
            try:
                current: bytes | None = self.read(doc)
            except Problem:
                current = None
            reached = url not in self._diverged and self.sequence(url) == sequence
            if not reached or current != data:
                self.log.info("{url}: the stream did not bring the copy to {sequence}; copying it whole",
                              url=url, sequence=sequence)
                before = self._rewrite(doc, data, sequence)
                self._diverged.discard(url)
                self._expected.pop(url, None)
                self._offered.pop(url, None)
                if not reached:
                    self._announce(doc, data, before, sequence)
            if etag:
                self._etags[url] = etag
            else:
                self._etags.pop(url, None)
            self._wake(url)

    def _rewrite(self, doc: DocumentPath, data: bytes,
                 sequence: int) -> etree._ElementTree | None:
        """Make C{doc} the writer's C{data} at C{sequence}; the tree it replaced."""
        before = self.treeOrNone(doc)
        atomicWrite(doc.filename, data, fsync=False)
        self._forget(doc.url)
        self._sequences[doc.url] = sequence
        return before

    def _announce(self, doc: Any, data: bytes, before: Any, sequence: int) -> None:
        after = markup.parseLeniently(data) if doc.isHTML else None
        change = Change(
            method="PUT", url=doc.url, selector="", sequence=sequence,
            content=data.decode("utf-8", "replace") if doc.isHTML else "",
            before=before, after=after,
            removed=(before.getroot(),) if before is not None else (),
            inserted=(after.getroot(),) if after is not None else (),
            size=len(data), body=data,
        )
        self._deliver(change)

    def _located(self, filename: str) -> Any:
        relative = os.path.relpath(filename, self.root).replace(os.sep, "/")
        try:
            return self.locate("/" + _urlPath(relative))
        except Problem:
            return None

    def _announceDeleted(self, doc: Any, before: Any, sequence: int) -> None:
        """Tell the watchers of a document that the writer deleted while this copy
        could not follow the stream: the writer's DELETE, with its sequence number."""
        change = Change(
            method="DELETE", url=doc.url, selector="", sequence=sequence, content="",
            before=before, after=None,
            removed=(before.getroot(),) if before is not None else (), inserted=(),
            size=0, body=None,
        )
        self._deliver(change)

    def _committed(self, doc: DocumentPath, answers: Sequence[WriteResult | Failure]) -> None:
        """A group commit's entries up to the first that failed here: those after it were
        numbered one short of the writer's, so the copy is marked as lost before they
        could be delivered."""
        applied = []
        for answer in answers:
            if not isinstance(answer, WriteResult):
                self._diverged.add(doc.url)
                break
            applied.append(answer.change)
        self._report(doc, applied)

    def _applied(self, changes: Sequence[Change]) -> None:
        """Changes the store made from entries (one commit's): delivered if each has
        its entry's number (it has not, once an earlier entry failed here)."""
        kept = []
        for change in changes:
            offered = self._offered.get(change.url)
            number = offered.popleft() if offered else None
            if number != change.sequence or change.url in self._diverged:
                self._diverged.add(change.url)
                self.log.warn("{url}: the copy lost a change; not delivering {sequence}",
                              url=change.url, sequence=number)
                continue
            kept.append(change)
        self._deliver(*kept)

    def _deliver(self, *changes: Change) -> None:
        if not changes:
            return
        for change in changes:
            key = (change.url, change.sequence)
            if key in self._etagAt:
                etag = self._etagAt.pop(key)
                if etag is None:
                    self._etags.pop(change.url, None)
                else:
                    self._etags[change.url] = etag
        try:
            self._sink(changes)
        finally:
            for url in {change.url: None for change in changes}:
                self._wake(url)

    def waitFor(self, url: str, sequence: int) -> Deferred[bool]:
        """Fire when the replica of C{url} is at C{sequence} or later."""
        d: Deferred[bool] = Deferred()
        self._waiting.setdefault(url, []).append((sequence, d))
        self._wake(url)
        return d

    def _wake(self, url: str) -> None:
        waiting = self._waiting.get(url)
        if not waiting or url in self._diverged:
            return
        current = self.sequence(url)
        still = [(s, d) for s, d in waiting if s > current]
        if still:
            self._waiting[url] = still
        else:
            del self._waiting[url]
        for s, d in waiting:
            if s <= current:
                d.callback(True)


class EdgeRoot(Resource):
    """
    The edge's resource tree: reads and WebSockets from the replicas, writes
    forwarded to the writer and answered once the replica includes them.
    """

    log = Logger()

    def __init__(self, inner: Resource, node: EdgeNode,
                 replicaFor: Callable[[Request], ReplicaStore | None]) -> None:
        super().__init__()
        self.inner = inner
        self.node = node
        self.replicaFor = replicaFor

    def getChildWithDefault(self, path: bytes, request: Request) -> Resource:
        if not self.node.follower.ready:
            return _ProblemResource(NOT_READY)
        if request.method in WRITE_METHODS:
            return _Forward(self.node, self.replicaFor, _below(path, request))
        return self.inner.getChildWithDefault(path, request)

    def render(self, request: Request) -> bytes | int:
        return self.inner.render(request)


class _Forward(Resource):
    """One write, forwarded to the writer."""

    isLeaf = True
    log = Logger()

    def __init__(self, node: EdgeNode, replicaFor: Callable[[Request], ReplicaStore | None],
                 path: bytes) -> None:
        super().__init__()
        self.node = node
        self.replicaFor = replicaFor
        self.path = path

    def render(self, request: Request) -> bytes | int:
        if getattr(request, "rustybeamTooLarge", False):
            return renderProblem(request, TOO_LARGE)
        d = ensureDeferred(self._forward(request))
        d.addErrback(self._failed, request)
        return NOT_DONE_YET

    async def _forward(self, request: Request) -> None:
        node = self.node
        request.content.seek(0)
        body = request.content.read()
        headers = Headers()
        for name, values in request.requestHeaders.getAllRawHeaders():
            if name.lower() not in _HOP_BY_HOP:
                headers.setRawHeaders(name, values)
        headers.setRawHeaders(CLUSTER_HEADER, [(node.secret() or "").encode()])
        client = getattr(request.getClientAddress(), "host", "unknown")
        headers.setRawHeaders(b"X-Forwarded-For", [client.encode()])
        try:
            query = b"?" + request.uri.split(b"?", 1)[1] if b"?" in request.uri else b""
            response = await node.agent.request(
                request.method, node.writer + self.path + query, headers,
                FileBodyProducer(BytesIO(body)) if body else None)
            data = await readBody(response)
        except (ConnectError, DNSLookupError) as e:
            raise WRITER_UNAVAILABLE.because(type(e).__name__) from None
        except Exception as e:
            raise WRITER_FAILED.because(type(e).__name__) from None
        sequence = response.headers.getRawHeaders(SEQUENCE_HEADER)
        replica = self.replicaFor(request)
        if 200 <= response.code < 300 and sequence and replica is not None:
            url = replica.locate(self.path).url
            caught = replica.waitFor(url, int(sequence[0]))
            caught.addTimeout(node.catchUpTimeout, node.clock, lambda result, timeout: False)
            if not await caught:
                raise REPLICA_BEHIND
        if request._disconnected:
            return
        request.setResponseCode(response.code, response.phrase)
        for name, values in response.headers.getAllRawHeaders():
            if name.lower() not in _HOP_BY_HOP:
                request.responseHeaders.setRawHeaders(name, values)
        request.setHeader(b"content-length", str(len(data)).encode())
        request.write(data)
        request.finish()

    def _failed(self, failure: Any, request: Request) -> None:
        if failure.check(Problem):
            problem = failure.value
        else:
            self.log.failure("forwarding {method} {uri} failed", failure,
                             method=request.method, uri=request.uri)
            problem = INTERNAL
        if request._disconnected or request.finished:
            return
        request.write(renderProblem(request, problem))
        request.finish()


class _AfterReady(Service):
    def __init__(self, inner: Service, ready: Callable[[], Deferred[None]]) -> None:
        self.inner = inner
        self.ready = ready

    def startService(self) -> None:
        super().startService()
        self.ready().addCallback(lambda _: self.inner.startService() if self.running else None)

    def stopService(self) -> Deferred[None] | None:
        super().stopService()
        return self.inner.stopService() if self.inner.running else None


class EdgeNode(MultiService):
    """
    The edge's cluster side: its replicas (in a private temporary directory), the
    stream follower that keeps them current, and the client that reaches the writer.

    @param writer: the base URL of the writer's tree, e.g. C{http://10.0.0.1:3000}
        (with the mount point's path when the tree is embedded below the root).
    """

    catchUpTimeout = 10.0
    """Seconds a forwarded write waits for the replica before it is answered 504."""

    def __init__(self, options: RedisOptions, writer: str, reactor: Any = None) -> None:
        super().__init__()
        reactor = _reactor(reactor)
        self.options = options
        self.writer = writer.rstrip("/").encode("ascii")
        self.clock = reactor
        self.directory = tempfile.mkdtemp(prefix="rustybeam-replica-")
        self.replicas: dict[str, ReplicaStore] = {}
        self._directories = itertools.count()
        pool = HTTPConnectionPool(reactor, persistent=True)
        pool.maxPersistentPerHost = 16
        self.agent = Agent(reactor, connectTimeout=5, pool=pool)
        self._secret = os.environ.get(SECRET_ENVIRONMENT) or None
        self.follower = StreamFollower(options, self.replicas, self._snapshot, reactor)
        self.follower.setServiceParent(self)

    def secret(self) -> str | None:
        return self._secret

    def storeFor(self, host: str) -> StoreFactory:
        def make(root: str, notifier: DocumentChangeNotifier, options: StoreOptions,
                 reactor: IReactorThreads) -> DocumentStore:
            directory = os.path.join(self.directory, str(next(self._directories)))
            os.mkdir(directory)
            store = ReplicaStore(directory, notifier.changedAll, options, reactor)
            self.replicas[host] = store
            if self.follower.ready:
                store.takesHistory = False
                self.follower.copyAgain()
            return store

        return make

    def release(self, host: str, store: DocumentStore) -> None:
        """Drop the copy of a host that a reload removed (or gave another root): the
        stream's entries for it are no longer applied, and its directory goes."""
        if self.replicas.get(host) is store:
            del self.replicas[host]
        shutil.rmtree(store.root, ignore_errors=True)

    async def _snapshot(self, host: str) -> Mapping[str, Any]:
        if not os.environ.get(SECRET_ENVIRONMENT):
            connection = await connect(self.options)
            try:
                self._secret = await connection.execute_command("GET", self.options.secretKey)
            finally:
                connection.disconnect()
        headers = Headers({CLUSTER_HEADER: [(self._secret or "").encode()]})
        response = await self.agent.request(
            b"GET", self.writer + SNAPSHOT_PATH + b"?host=" + quote(host).encode(), headers)
        data = await readBody(response)
        if response.code == UNKNOWN_HOST.status:
            return {"origin": 0, "documents": []}
        if response.code != 200:
            raise ConnectionError(f"the writer refused the snapshot: {response.code}")
        return json.loads(data)

    def wrap(self, root: Resource, replicaFor: Callable[[Request], ReplicaStore | None]) -> EdgeRoot:
        return EdgeRoot(root, self, replicaFor)

    def listenWhenReady(self, listening: Service) -> Service:
        """C{listening}, started only once the replicas are copied: an edge sharing a
        port with others takes no connection it could not serve."""
        return _AfterReady(listening, self.follower.whenReady)

    def stopService(self) -> Deferred[None]:
        d = super().stopService()
        d.addBoth(lambda result: (shutil.rmtree(self.directory, ignore_errors=True), result)[1])
        return d
