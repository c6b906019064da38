"""
The document store: parse, apply, persist, and record every change.

L{DocumentStore} owns one directory of documents. Reads come from a bounded cache of
parsed lxml trees that is re-read when a file changes underneath (mtime, size, inode).
Writes to one document are applied in arrival order from one queue. Selector writes
that queue up together form a group: in a worker thread each is checked and applied in
its turn to the document's working tree, in place (readers keep the committed tree, see
L{rustybeam.versions}; a refused write is undone), then the group is written atomically
and durably once (temporary file, fsync, rename, directory fsync), and only then
committed, and each write reported, as its own L{Change}, to the change sink.
"""

from __future__ import annotations

import mimetypes
from functools import partial
import os
import tempfile
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from email.utils import formatdate
from typing import Awaitable, Callable, Optional, Sequence, TypeVar, cast

from lxml import etree
from twisted.internet.defer import Deferred, DeferredList, ensureDeferred
from twisted.internet.interfaces import IReactorThreads, IReactorTime
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure

from rustybeam import markup, roundtrip, versions
from rustybeam.changes import Change, ChangeSink
from rustybeam.errors import (
    IS_DIRECTORY,
    PARENT_IS_FILE,
    NO_MATCH,
    NOT_FOUND,
    NOT_HTML,
    NOT_UTF8,
    PRECONDITION_FAILED,
    RESTRUCTURED,
    UNSTORABLE,
    WRITE_FAILED,
    Problem,
)
from rustybeam.ids import IdIndex
from rustybeam.paths import TEMP_PREFIX, TEMP_SUFFIX, DocumentPath, resolve
from rustybeam.selectors import Selector

T = TypeVar("T")
Check = Callable[[Optional[etree._ElementTree]], None]
"""Called inside a write's turn with the current tree; raises a Problem to refuse it."""


@dataclass(frozen=True)
class StoreOptions:
    """Options of a L{DocumentStore}."""

    cacheSize: int = 256
    """How many parsed documents are kept in memory."""
    fsync: bool = True
    """Whether writes are flushed to stable storage before they are acknowledged."""
    maxBatch: int = 256
    """Selector writes queued on one document that are applied together and made
    durable by one file write (group commit); each keeps its own change, sequence
    number, ETag, authorization and response."""
    hidden: frozenset[str] = frozenset()
    """Files under the root that are never served or written (real paths): the
    server's own users, rules and logs when they live among the documents."""


@dataclass(frozen=True)
class FileInfo:
    """What HTTP needs to describe a file without reading it."""

    size: int
    mtime: float
    etag: str
    contentType: str

    @property
    def lastModified(self) -> str:
        return formatdate(self.mtime, usegmt=True)


@dataclass(frozen=True)
class WriteResult:
    """The outcome of a write: the change (its content is the response body), the
    ETag of the document it left (C{None} once deleted), and whether it was new."""

    change: Change
    etag: str | None
    created: bool = False


@dataclass
class _Cached:
    stamp: tuple[int, int, int]
    lineage: versions.Lineage

    @property
    def tree(self) -> etree._ElementTree:
        return self.lineage.committed


def contentTypeOf(filename: str) -> str:
    if filename.lower().endswith((".html", ".htm")):
        return "text/html; charset=utf-8"
    guessed, _ = mimetypes.guess_type(filename)
    if guessed is None:
        return "application/octet-stream"
    if guessed.startswith("text/") or guessed in ("application/javascript", "application/json"):
        return guessed + "; charset=utf-8"
    return guessed


def _stamp(st: os.stat_result) -> tuple[int, int, int]:
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _etag(st: os.stat_result, sequence: int | None = None) -> str:
    """The ETag of a file's version: its stamp, and the sequence number of the change
    that made it once this store has changed it (so the versions that one group
    commit makes, all stored by one file write, have an ETag each)."""
    if sequence is None:
        return '"%x-%x-%x"' % _stamp(st)
    return '"%x-%x-%x-%x"' % (*_stamp(st), sequence)


def atomicWrite(filename: str, data: bytes, fsync: bool = True) -> os.stat_result:
    """
    Replace C{filename} with C{data} so that a crash leaves the old or new file;
    return the new file's status (taken before the rename, so it is this write's
    even when another write follows at once).
    """
    dirname = os.path.dirname(filename)
    makeDirectories(dirname, fsync)
    try:
        mode = os.stat(filename).st_mode & 0o777
    except FileNotFoundError:
        mode = 0o644
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX, dir=dirname)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
            os.fchmod(f.fileno(), mode)
            written = os.fstat(f.fileno())
        os.replace(tmp, filename)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    if fsync:
        _fsyncDirectory(dirname)
    return written


def makeDirectories(dirname: str, fsync: bool = True) -> None:
    """Create C{dirname} and its missing parents (like C{mkdir -p}), each made
    durable in its parent directory."""
    missing = []
    while not os.path.isdir(dirname):
        missing.append(dirname)
        dirname = os.path.dirname(dirname)
    for directory in reversed(missing):
        os.mkdir(directory)
        if fsync:
            _fsyncDirectory(os.path.dirname(directory))


def durableUnlink(filename: str, fsync: bool = True) -> None:
    os.unlink(filename)
    if fsync:
        _fsyncDirectory(os.path.dirname(filename))


def _fsyncDirectory(dirname: str) -> None:
    dfd = os.open(dirname, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def decodeBody(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise NOT_UTF8.because(f"invalid byte at offset {e.start}") from None


class DocumentStore:
    """
    All documents under one root directory.

    @param root: the document root; nothing outside it is read or written.
    @param onChanges: the single notification point every applied change is handed to,
        the changes of one commit together.
    @param reactor: provides the thread pool that durable writes run in, and the
        reactor turn after which each group commit starts.
    """

    log = Logger()

    def __init__(
        self,
        root: str,
        onChanges: ChangeSink | None = None,
        options: StoreOptions = StoreOptions(),
        reactor: IReactorThreads | None = None,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor  # type: ignore[assignment]
        self.root = os.path.realpath(root)
        self.options = options
        self.onChanges: ChangeSink = onChanges or (lambda changes: None)
        self._reactor = reactor
        self._cache: OrderedDict[str, _Cached] = OrderedDict()
        self._queues: dict[str, deque[_Pending]] = {}
        self._sequences: dict[str, int] = {}
        self._origin = time.time_ns() // 1000
        self._inflight: set[Deferred] = set()

    def removeLeftovers(self) -> int:
        """
        Delete the temporary files that writes killed midway left under the root
        (only regular files named with our prefix and suffix; symbolic links are
        not followed); return how many. Call it before serving.
        """
        removed = 0
        for dirpath, _, filenames in os.walk(self.root):
            for name in filenames:
                if not (name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX)):
                    continue
                path = os.path.join(dirpath, name)
                try:
                    if os.path.islink(path) or not os.path.isfile(path):
                        continue
                    os.unlink(path)
                    removed += 1
                except OSError as e:
                    self.log.warn("could not remove {file}: {error}", file=path, error=e)
        if removed:
            self.log.info("removed {count} temporary files left by interrupted writes",
                          count=removed)
        return removed

    # Reading

    def locate(self, rawPath: bytes | str) -> DocumentPath:
        doc = resolve(self.root, rawPath)
        if doc.filename in self.options.hidden:
            raise NOT_FOUND
        return doc

    def info(self, doc: DocumentPath) -> FileInfo | None:
        """Describe C{doc}, or C{None} when it does not exist."""
        try:
            st = os.stat(doc.filename)
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not os.path.isfile(doc.filename):
            raise IS_DIRECTORY
        return FileInfo(st.st_size, st.st_mtime, _etag(st, self._sequences.get(doc.url)),
                        contentTypeOf(doc.filename))

    def etagAt(self, doc: DocumentPath, sequence: int) -> str | None:
        """The ETag of C{doc}'s version C{sequence}, if the file on disk holds it (the
        versions one group commit makes share the file), else C{None}."""
        try:
            st = os.stat(doc.filename)
        except OSError:
            return None
        return _etag(st, sequence)

    def read(self, doc: DocumentPath) -> bytes:
        try:
            with open(doc.filename, "rb") as f:
                return f.read()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise NOT_FOUND from None

    def sequence(self, url: str) -> int:
        """
        The sequence number of the last change applied to C{url}.

        Numbers start, for every document, at this store's origin: the microsecond
        it was created. A restarted server therefore numbers its changes above any
        number the previous process handed out (no document changes more than once
        a microsecond), so a client resuming from an old number is never mistaken
        for one that is up to date.
        """
        return self._sequences.get(url, self._origin)

    def changed(self) -> dict[str, int]:
        """The sequence number of the last change of every document changed since
        start-up, deleted ones included."""
        return dict(self._sequences)

    def tree(self, doc: DocumentPath) -> etree._ElementTree:
        """The parsed document, from the cache when the file has not changed."""
        if not doc.isHTML:
            raise NOT_HTML
        try:
            st = os.stat(doc.filename)
        except (FileNotFoundError, NotADirectoryError):
            self._forget(doc.url)
            raise NOT_FOUND from None
        cached = self._cache.get(doc.url)
        if cached is not None and cached.stamp == _stamp(st):
            self._cache.move_to_end(doc.url)
            return cached.tree
        tree = markup.parseLeniently(self.read(doc))
        self._remember(doc.url, _stamp(st), tree)
        return tree

    def isLoaded(self, doc: DocumentPath) -> bool:
        """Whether L{tree} would answer without parsing: the document is cached and
        unchanged on disk, or there is nothing to parse (missing, not HTML)."""
        if not doc.isHTML:
            return True
        try:
            st = os.stat(doc.filename)
        except OSError:
            return True
        cached = self._cache.get(doc.url)
        return cached is not None and cached.stamp == _stamp(st)

    def load(self, doc: DocumentPath) -> Deferred[None]:
        """
        Parse C{doc} into the cache in a worker thread, so that the first read of a
        large document does not stall every other connection; L{tree} is then
        immediate. Errors are left for L{tree} to raise.
        """
        def parse() -> tuple[tuple[int, int, int], etree._ElementTree]:
            st = os.stat(doc.filename)
            return _stamp(st), markup.parseLeniently(self.read(doc))

        def install(loaded: tuple[tuple[int, int, int], etree._ElementTree]) -> None:
            self._remember(doc.url, *loaded)

        d = deferToThreadPool(self._reactor, self._reactor.getThreadPool(), parse)
        return d.addCallbacks(install, lambda failure: None)

    def select(self, doc: DocumentPath, selector: Selector) -> list[etree._Element]:
        matches = selector.select(self.tree(doc).getroot())
        if not matches:
            raise NO_MATCH.because(selector.css)
        return matches

    def _remember(self, url: str, stamp: tuple[int, int, int],
                  tree: etree._ElementTree | versions.Lineage) -> None:
        lineage = tree if isinstance(tree, versions.Lineage) else versions.Lineage(tree)
        self._forget(url, keep=lineage)
        self._cache[url] = _Cached(stamp, lineage)
        self._cache.move_to_end(url)
        while len(self._cache) > self.options.cacheSize:
            _, evicted = self._cache.popitem(last=False)
            evicted.lineage.release()

    def _forget(self, url: str, keep: versions.Lineage | None = None) -> None:
        cached = self._cache.pop(url, None)
        if cached is not None and cached.lineage is not keep:
            cached.lineage.release()

    def _lineage(self, doc: DocumentPath) -> versions.Lineage:
        self.tree(doc)
        return self._cache[doc.url].lineage

    # Writing

    def replace(self, doc: DocumentPath, selector: Selector, body: bytes,
                ifMatch: str | None = None, check: Check | None = None) -> Deferred[WriteResult]:
        """
        Replace every element C{selector} matches with the body's nodes.

        Every write takes C{ifMatch} (an C{If-Match} value) and C{check}, which is
        called with the document's current tree (C{None} when it has none) once the
        write's turn has come, just before it is computed; it raises a L{Problem} to
        refuse the write. Authorization goes there, so that it judges the very
        elements the write will change.
        """
        return self._write(doc, ifMatch, check,
                           partial(_applySelector, "PUT", selector, body))

    def append(self, doc: DocumentPath, selector: Selector, body: bytes,
               ifMatch: str | None = None, check: Check | None = None) -> Deferred[WriteResult]:
        """Append the body's nodes as last children of every matched element."""
        return self._write(doc, ifMatch, check,
                           partial(_applySelector, "POST", selector, body))

    def remove(self, doc: DocumentPath, selector: Selector,
               ifMatch: str | None = None, check: Check | None = None) -> Deferred[WriteResult]:
        """Remove every element C{selector} matches."""
        return self._write(doc, ifMatch, check,
                           partial(_applySelector, "DELETE", selector, b""))

    def putDocument(self, doc: DocumentPath, body: bytes,
                    ifMatch: str | None = None, check: Check | None = None) -> Deferred[WriteResult]:
        """Create or replace the whole file."""
        return self._write(doc, ifMatch, check, partial(_applyWhole, doc, "PUT", body))

    def appendDocument(self, doc: DocumentPath, body: bytes,
                       ifMatch: str | None = None, check: Check | None = None) -> Deferred[WriteResult]:
        """Append the body to the file, creating it (and its directories) if needed."""
        return self._write(doc, ifMatch, check, partial(_applyWhole, doc, "POST", body))

    def deleteDocument(self, doc: DocumentPath,
                       ifMatch: str | None = None, check: Check | None = None) -> Deferred[WriteResult]:
        """Remove the whole file."""
        return self._write(doc, ifMatch, check, partial(_applyWhole, doc, "DELETE", None))

    @property
    def origin(self) -> int:
        """The sequence number of every document that has not changed since start-up."""
        return self._origin

    def snapshot(self, doc: DocumentPath) -> Deferred[tuple[int, bytes | None, str | None]]:
        """
        The document's sequence number, bytes and ETag (C{None} when missing), taken
        in the document's turn, between two writes, so that they agree with each
        other and with the changes reported so far (what a cluster replica starts
        from).
        """
        def take() -> tuple[int, bytes | None, str | None]:
            try:
                info = self.info(doc)
                data: bytes | None = self.read(doc)
            except Problem:
                info, data = None, None
            return self.sequence(doc.url), data, info.etag if info is not None else None

        return self._write(doc, None, None, partial(_inTurn, take))  # type: ignore[arg-type]

    def drain(self) -> Deferred:
        """Fire when every write accepted so far is on disk and reported."""
        return DeferredList(list(self._inflight), consumeErrors=True)

    def _write(self, doc: DocumentPath, ifMatch: str | None, check: Check | None,
               plan: partial[_Plan]) -> Deferred[WriteResult]:
        d: Deferred[WriteResult] = Deferred()
        self._inflight.add(d)

        def done(result: object) -> object:
            self._inflight.discard(d)
            return result

        d.addBoth(done)
        queue = self._queues.get(doc.url)
        if queue is None:
            queue = self._queues[doc.url] = deque()
            queue.append(_Pending(doc, ifMatch, check, plan, d))
            # Start after this reactor turn: writes that arrive in the same turn (requests
            # read from one poll, a cluster edge's entries of one commit) join the group.
            cast(IReactorTime, self._reactor).callLater(
                0, lambda: ensureDeferred(self._commit(doc.url, queue)))
        else:
            queue.append(_Pending(doc, ifMatch, check, plan, d))
        return d

    async def _commit(self, url: str, queue: deque[_Pending]) -> None:
        """
        Apply the writes queued on one document, in arrival order, until none is
        left: a whole-document write on its own, consecutive selector writes in one
        group (L{_group}).
        """
        try:
            while queue:
                if queue[0].plan.func is _inTurn:
                    pending = queue.popleft()
                    try:
                        pending.deferred.callback(pending.plan.args[0]())
                    except BaseException:
                        pending.deferred.errback()
                    continue
                if queue[0].plan.func is not _applySelector:
                    pending = queue.popleft()
                    try:
                        result = await self._single(pending)
                    except BaseException:
                        pending.deferred.errback()
                    else:
                        pending.deferred.callback(result)
                    continue
                group: list[_Pending] = []
                while (queue and queue[0].plan.func is _applySelector
                       and len(group) < self.options.maxBatch):
                    group.append(queue.popleft())
                try:
                    await self._group(group, queue)
                except BaseException:
                    for pending in group:
                        if not pending.deferred.called:
                            pending.deferred.errback()
        finally:
            del self._queues[url]

    async def _single(self, pending: _Pending) -> WriteResult:
        """
        Apply a whole-document write in its turn: check it, compute it in a worker
        thread, persist it, commit it, number it and report it.
        """
        doc, plan = pending.doc, pending.plan
        self._checkPrecondition(doc, pending.ifMatch)
        if not self.isLoaded(doc):
            await self.load(doc)
        current = self.treeOrNone(doc)
        cached = self._cache.get(doc.url)
        lineage = cached.lineage if current is not None and cached is not None else None
        if pending.check is not None:
            pending.check(current)
        try:
            p = await self._inThread(lambda: plan(current))
        except ValueError as e:
            raise UNSTORABLE.because(_oneLine(e)) from None
        stamp = await self._persist(doc, p, lineage)
        result = self._number(doc, p, stamp)
        self._report(doc, [result.change])
        return result

    def _number(self, doc: DocumentPath, p: _Plan, stamp: os.stat_result | None) -> WriteResult:
        """Give a committed write the document's next sequence number."""
        sequence = self.sequence(doc.url) + 1
        self._sequences[doc.url] = sequence
        return WriteResult(p.change(doc.url, sequence),
                           _etag(stamp, sequence) if stamp is not None else None, p.created)

    def _report(self, doc: DocumentPath, changes: list[Change]) -> None:
        """Hand the changes of one commit to the change sink, together."""
        if not changes:
            return
        try:
            self.onChanges(changes)
        except Exception:
            self.log.failure("change listener failed for {url}", url=doc.url)

    def _committed(self, doc: DocumentPath, answers: Sequence[WriteResult | Failure]) -> None:
        """Report the changes of a group commit's writes that were applied (the others
        are answered with their errors)."""
        self._report(doc, [a.change for a in answers if isinstance(a, WriteResult)])

    async def _group(self, group: list[_Pending], queue: deque[_Pending]) -> None:
        """
        Apply consecutive selector writes to one document as one group commit: each
        is checked (If-Match, then C{check}) and applied in its turn on the working
        tree in a worker thread (a refused one is undone and answered with its
        error), the result is written and fsynced once, and then the writes are
        committed and numbered, their changes reported together (so each watcher gets
        them in one write), and each write answered, in order. Writes the group could
        not take (a PUT of the whole C{html} element after others) go back to the
        front of the queue.
        """
        doc = group[0].doc
        try:
            if not self.isLoaded(doc):
                await self.load(doc)
            lineage = self._lineage(doc)
            info = self.info(doc)
        except Exception:
            failure = Failure()
            for pending in group:
                try:
                    self._checkPrecondition(doc, pending.ifMatch)
                except Problem:
                    pending.deferred.errback()
                else:
                    pending.deferred.errback(failure)
            return
        diskTag = info.etag if info is not None else None
        fsync = self.options.fsync

        def applyAndWrite() -> tuple[list[_Plan | BaseException], etree._ElementTree | None,
                                     bytes | None, os.stat_result | Exception | None]:
            outcomes, tree, data = _applyGroup(lineage, group, diskTag)
            if data is None or any(isinstance(o, _Plan) and o.edit is None for o in outcomes):
                return outcomes, tree, data, None
            return outcomes, tree, data, _written(doc.filename, data, fsync)

        try:
            outcomes, tree, data, written = await self._inThread(applyAndWrite)
        except BaseException:
            lineage.discardWorking()  # it may hold edits of writes that now fail
            raise
        queue.extendleft(reversed(group[len(outcomes):]))
        done = group[:len(outcomes)]
        plans = [o for o in outcomes if isinstance(o, _Plan)]
        stamp = None
        if plans:
            p = plans[0] if len(plans) == 1 and plans[0].edit is None else None
            try:
                if p is not None:
                    stamp = await self._persist(doc, p, lineage)
                else:
                    assert data is not None and tree is not None and written is not None
                    stamp = self._stored(doc, written, lineage)
                    lineage.commitAll([q.edit for q in plans if q.edit is not None], tree)
                    self._remember(doc.url, _stamp(stamp), lineage)
            except Exception:
                failure = Failure()
                outcomes = [failure if isinstance(o, _Plan) else o for o in outcomes]
        answers: list[WriteResult | Failure] = []
        for outcome in outcomes:
            if isinstance(outcome, _Plan):
                if outcome.versions is None:
                    assert outcome.edit is not None
                    outcome.versions = _EditVersions(outcome.edit)
                answers.append(self._number(doc, outcome, stamp))
            elif isinstance(outcome, Failure):
                answers.append(outcome)
            elif isinstance(outcome, ValueError):
                answers.append(Failure(UNSTORABLE.because(_oneLine(outcome))))
            else:
                answers.append(Failure(outcome))
        self._committed(doc, answers)
        for pending, answer in zip(done, answers):
            if isinstance(answer, Failure):
                pending.deferred.errback(answer)
            else:
                pending.deferred.callback(answer)

    def _checkPrecondition(self, doc: DocumentPath, ifMatch: str | None) -> None:
        if ifMatch is None:
            return
        info = self.info(doc)
        if ifMatch.strip() == "*":
            if info is None:
                raise PRECONDITION_FAILED.because("the document does not exist")
            return
        tags = [t.strip() for t in ifMatch.split(",")]
        if info is None or info.etag not in tags:
            raise PRECONDITION_FAILED

    async def _store(self, doc: DocumentPath, data: bytes | None,
                     lineage: versions.Lineage | None) -> os.stat_result | None:
        """Write C{data} to disk (C{None}: delete the file); the new file's status. On
        failure the document is dropped from the cache and the error raised."""
        fsync = self.options.fsync
        return self._stored(doc, await self._inThread(
            lambda: _written(doc.filename, data, fsync)), lineage)

    def _stored(self, doc: DocumentPath, written: os.stat_result | Exception | None,
                lineage: versions.Lineage | None) -> os.stat_result | None:
        """The outcome of a write to disk made in a worker thread: the new file's
        status, or the error raised after the document is dropped from the cache."""
        if not isinstance(written, Exception):
            return written
        if lineage is not None:
            lineage.release()
        self._forget(doc.url)
        if not isinstance(written, OSError):
            raise written
        if isinstance(written, FileNotFoundError):
            raise NOT_FOUND from None
        self.log.error("writing {file} failed: {error}", file=doc.filename, error=written)
        raise WRITE_FAILED.because(written.strerror or type(written).__name__) from None

    async def _persist(self, doc: DocumentPath, p: _Plan,
                       lineage: versions.Lineage | None) -> os.stat_result | None:
        """
        Write C{p}, which replaces the whole tree, to disk and install it in the cache
        (C{lineage} is the document's before the write); the new file's status.
        """
        stamp = await self._store(doc, p.data, lineage)
        previous = lineage.latest if lineage is not None else None
        installed = None
        if stamp is not None and p.tree is not None:
            installed = versions.Lineage(p.tree)
            installed.verified = p.verified
            self._remember(doc.url, _stamp(stamp), installed)
        else:
            self._forget(doc.url)
        p.versions = _WholeVersions(previous, installed.latest if installed else None)
        return stamp

    def _inThread(self, fn: Callable[[], T]) -> Awaitable[T]:
        return deferToThreadPool(self._reactor, self._reactor.getThreadPool(), fn)

    def treeOrNone(self, doc: DocumentPath) -> etree._ElementTree | None:
        """The parsed document, or C{None} when it is missing or not HTML."""
        if not doc.isHTML:
            return None
        try:
            return self.tree(doc)
        except (Problem, ValueError):
            return None


def _written(filename: str, data: bytes | None, fsync: bool) -> os.stat_result | Exception | None:
    """Write C{data} to C{filename} durably (C{None}: delete it), in a worker thread;
    the new file's status, or the error, returned for L{DocumentStore._stored}."""
    try:
        if data is None:
            durableUnlink(filename, fsync)
            return None
        return atomicWrite(filename, data, fsync)
    except Exception as e:
        return e


def _applySelector(method: str, selector: Selector, body: bytes,
                   tree: etree._ElementTree | None) -> _Plan:
    """A selector write (queued with these arguments; L{_applyGroup} applies it)."""
    raise NotImplementedError("selector writes are applied by _applyGroup")


def _inTurn(fn: Callable[[], object]) -> object:
    """Not a write: C{fn}, called in the document's turn (queued like a write)."""
    raise NotImplementedError("called by DocumentStore._commit")


def _applyGroup(lineage: versions.Lineage, group: list[_Pending], diskTag: str | None
                ) -> tuple[list[_Plan | BaseException], etree._ElementTree | None, bytes | None]:
    """
    Apply selector writes in order to the working tree of C{lineage}, in a worker
    thread: for each, the outcome (its plan, or the error that refused it, after its
    edit is undone), then the tree and its serialization (C{None} if nothing
    changed). Fewer outcomes than writes mean that the rest must wait for another
    group. The edits are checked to round-trip (L{rustybeam.roundtrip}): by the cost
    of each edit once the document is known to, by parsing the whole result before.
    """
    try:
        tree = lineage.working()
    except BaseException as e:
        lineage.discardWorking()
        return [e], None, None
    byId = any(getattr(pending.plan.args[1], "id", None) is not None for pending in group)
    ids = lineage.ids(tree) if byId else lineage.indexOf(tree)
    outcomes: list[_Plan | BaseException] = []
    verified = lineage.verified
    changed = False
    for pending in group:
        if not lineage.verified and outcomes:
            break
        method, selector, body = pending.plan.args
        edit = versions.Edit()
        try:
            _precondition(pending.ifMatch, None if changed else diskTag, changed)
            if pending.check is not None:
                pending.check(tree)
            text = decodeBody(body) if method != "DELETE" else ""
            p = _edit(method, selector, text, tree, verified, edit, ids)
            p.body = body if method != "DELETE" else None
        except BaseException as e:
            try:
                edit.undo(tree, ids)
            except BaseException:
                lineage.discardWorking()
                outcomes.append(e)
                return outcomes, None, None
            outcomes.append(e)
            continue
        if p.edit is None:
            if outcomes:
                break
            return [p], None, None
        outcomes.append(p)
        changed = verified = True
    if not changed:
        return outcomes, tree, None
    data = markup.serializeDocument(tree)
    if not lineage.verified and not roundtrip.documentRoundTrips(tree, data):
        (p,) = outcomes
        assert isinstance(p, _Plan) and p.edit is not None
        p.edit.undo(tree, ids)
        return [RESTRUCTURED], tree, None
    for outcome in outcomes:
        if isinstance(outcome, _Plan):
            outcome.data = data
    return outcomes, tree, data


def _precondition(ifMatch: str | None, current: str | None, changed: bool) -> None:
    """Check C{If-Match} against the version a write applies to: on disk (ETag
    C{current}), or one that an earlier write of the same group made, whose ETag
    nobody can have yet."""
    if ifMatch is None:
        return
    if ifMatch.strip() == "*":
        return
    tags = [t.strip() for t in ifMatch.split(",")]
    if changed or current is None or current not in tags:
        raise PRECONDITION_FAILED


def _edit(method: str, selector: Selector, text: str, tree: etree._ElementTree,
          verified: bool, edit: versions.Edit | None = None,
          ids: IdIndex | None = None) -> _Plan:
    """Apply one selector write to C{tree}, recording its steps in C{edit} (so that
    the caller can undo them when it fails midway) and keeping C{ids}, the tree's
    index, up to date."""
    targets = selector.select(tree.getroot(), ids)
    if not targets:
        raise NO_MATCH.because(selector.css)
    if method != "POST":
        targets = [t for t, k in zip(targets, _outermost(targets)) if k]
    if method == "PUT" and targets[0].getparent() is None:
        after = markup.parseWhole(text)
        data = markup.serializeDocument(after)
        if not roundtrip.documentRoundTrips(after, data):
            raise RESTRUCTURED
        return _Plan(method, selector.css, markup.serialize(after.getroot()), data,
                     tree=after, verified=True)
    edit = edit if edit is not None else versions.Edit()
    single = len(targets) == 1 and targets[0].getparent() is not None
    if method != "POST" and not single:
        edit.removed = [versions.pathOf(t) for t in targets]
    pieces: list[str] = []
    inserted: list[etree._Element] = []
    containers: list[etree._Element] = []
    for target in targets:
        parent = target.getparent()
        if method == "DELETE":
            pieces.append(markup.serialize(target))
            step = versions.remove(target, ids)
            container = parent if parent is not None else target
            nodes: list[markup.Node] = []
        elif method == "POST":
            nodes = markup.parseFragment(text, str(target.tag))
            step = versions.append(target, nodes, ids)
            container = target
        else:
            if parent.getparent() is None and target.tag in ("head", "body"):
                found = markup.parseDocument(text).getroot().find(target.tag)
                if found is None:
                    raise RESTRUCTURED
                nodes = [found]
            else:
                nodes = markup.parseFragment(text, str(parent.tag))
            step = versions.replace(target, nodes, ids)
            container = parent
        edit.steps.append(step)
        containers.append(container)
        new = [n for n in nodes if not isinstance(n, str)]
        if method != "DELETE":
            pieces.append(markup.serializeAll(nodes))
            inserted.extend(new)
        if verified and not roundtrip.editRoundTrips(tree, container, step.index, step.inserted,
                                                     new):
            raise RESTRUCTURED
    if single:
        # one step: its path and index say where everything is, without walking again
        where = step.path if method == "POST" else step.path[:-1]
        edit.removed = [] if method == "POST" else [step.path]
        edit.inserted = [where + (step.index + k,) for k in range(len(inserted))]
        edit.containers = [where]
    else:
        edit.inserted = [versions.pathOf(e) for e in inserted]
        edit.containers = [versions.pathOf(e) for e in containers]
    return _Plan(method, selector.css, "\n".join(pieces), None, tree=tree, edit=edit)


def _applyWhole(doc: DocumentPath, method: str, body: bytes | None,
                before: etree._ElementTree | None) -> _Plan:
    """A whole-document write; runs in a worker thread like L{_applySelector}."""
    exists = os.path.isfile(doc.filename)
    if method == "DELETE":
        if not exists:
            raise NOT_FOUND
        return _Plan(method, "", "", None)
    assert body is not None
    _checkParents(os.path.dirname(doc.filename))
    data = body
    if method == "POST" and exists:
        with open(doc.filename, "rb") as f:
            data = f.read() + body
    after = None
    content = ""
    if doc.isHTML:
        content = decodeBody(body)
        after = markup.parseWhole(content) if data is body else markup.parseLeniently(data)
    return _Plan(method, "", content, data, tree=after, created=not exists, body=body)


def _checkParents(dirname: str) -> None:
    """Refuse a file whose missing directories cannot be created (a parent is a file)."""
    while not os.path.isdir(dirname):
        if os.path.lexists(dirname):
            raise PARENT_IS_FILE
        dirname = os.path.dirname(dirname)


@dataclass
class _Pending:
    """A write waiting for its turn."""

    doc: DocumentPath
    ifMatch: str | None
    check: Check | None
    plan: partial[_Plan]
    deferred: Deferred[WriteResult]


@dataclass
class _Plan:
    """A computed write, not yet on disk: the bytes to store, the tree they are the
    serialization of, and the edit that made it (C{None} when the tree is new)."""

    method: str
    selector: str
    content: str
    data: bytes | None
    tree: etree._ElementTree | None = None
    edit: versions.Edit | None = None
    verified: bool = False
    created: bool = False
    versions: _EditVersions | _WholeVersions | None = None
    """Set when the write is committed."""
    body: bytes | None = None
    """The request body as sent (C{None} for DELETE), which the change carries."""

    def change(self, url: str, sequence: int) -> Change:
        assert self.versions is not None
        return Change.lazy(self.method, url, self.selector, sequence, self.content,
                           len(self.data) if self.data is not None else 0, self.versions,
                           self.body)


class _EditVersions:
    """The versions around an edit of a lineage."""

    def __init__(self, edit: versions.Edit) -> None:
        self.edit = edit
        self.removed = edit.removed
        self.inserted = edit.inserted
        self.containers = edit.containers

    def treeBefore(self) -> etree._ElementTree:
        return self.edit.treeBefore()

    def treeAfter(self) -> etree._ElementTree:
        return self.edit.treeAfter()


class _WholeVersions:
    """The versions around a write that replaced the whole document: the last version
    of the old lineage, the first of the new one."""

    def __init__(self, before: versions.Edit | None, after: versions.Edit | None) -> None:
        self.before = before
        self.after = after
        self.removed = [()] if before is not None else []
        self.inserted = [()] if after is not None else []
        self.containers: list[versions.Path] = []

    def treeBefore(self) -> etree._ElementTree | None:
        return self.before.treeAfter() if self.before is not None else None

    def treeAfter(self) -> etree._ElementTree | None:
        return self.after.treeAfter() if self.after is not None else None


def _outermost(elements: list[etree._Element]) -> list[bool]:
    """For each element, whether no other element of the list contains it."""
    chosen = set(elements)
    keep = []
    for e in elements:
        ancestor = e.getparent()
        while ancestor is not None and ancestor not in chosen:
            ancestor = ancestor.getparent()
        keep.append(ancestor is None)
    return keep


def _oneLine(error: BaseException) -> str:
    return " ".join(str(error).split())[:200]
