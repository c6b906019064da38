"""
The document store: parse, apply, persist, and record every change.

L{DocumentStore} owns one directory of documents. Reads come from a bounded cache of
parsed lxml trees that is re-read when a file changes underneath (mtime, size, inode).
Writes to one document are applied one at a time in arrival order; each is computed on
a copy of the tree (so a failure leaves nothing changed), written atomically and
durably (temporary file, fsync, rename, directory fsync) in a worker thread, and only
then installed in the cache and reported, as one L{Change}, to the change sink.
"""

from __future__ import annotations

import mimetypes
from functools import partial
import os
import tempfile
import time
from collections import OrderedDict
from dataclasses import dataclass
from email.utils import formatdate
from typing import Awaitable, Callable, Optional, TypeVar

from lxml import etree
from twisted.internet.defer import Deferred, DeferredList, DeferredLock, ensureDeferred
from twisted.internet.interfaces import IReactorThreads
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from rustybeam import markup
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
    tree: etree._ElementTree


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


def _etag(st: os.stat_result) -> str:
    return '"%x-%x-%x"' % _stamp(st)


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
    @param onChange: the single notification point every applied change is handed to.
    @param reactor: provides the thread pool that durable writes run in.
    """

    log = Logger()

    def __init__(
        self,
        root: str,
        onChange: ChangeSink | None = None,
        options: StoreOptions = StoreOptions(),
        reactor: IReactorThreads | None = None,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor  # type: ignore[assignment]
        self.root = os.path.realpath(root)
        self.options = options
        self.onChange: ChangeSink = onChange or (lambda change: None)
        self._reactor = reactor
        self._cache: OrderedDict[str, _Cached] = OrderedDict()
        self._locks: dict[str, DeferredLock] = {}
        self._sequences: dict[str, int] = {}
        self._origin = time.time_ns() // 1000
        self._inflight: set[Deferred] = set()

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
        return FileInfo(st.st_size, st.st_mtime, _etag(st), contentTypeOf(doc.filename))

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

    def tree(self, doc: DocumentPath) -> etree._ElementTree:
        """The parsed document, from the cache when the file has not changed."""
        if not doc.isHTML:
            raise NOT_HTML
        try:
            st = os.stat(doc.filename)
        except (FileNotFoundError, NotADirectoryError):
            self._cache.pop(doc.url, None)
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

    def _remember(self, url: str, stamp: tuple[int, int, int], tree: etree._ElementTree) -> None:
        self._cache[url] = _Cached(stamp, tree)
        self._cache.move_to_end(url)
        while len(self._cache) > self.options.cacheSize:
            self._cache.popitem(last=False)

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

    async def snapshot(self, doc: DocumentPath) -> tuple[int, bytes | None, str | None]:
        """The document's sequence number, bytes and ETag (C{None} when missing), taken
        in a write's turn so that they agree (what a cluster replica starts from)."""
        lock = self._locks.setdefault(doc.url, DeferredLock())
        await lock.acquire()
        try:
            try:
                info = self.info(doc)
                data: bytes | None = self.read(doc)
            except Problem:
                info, data = None, None
            return self.sequence(doc.url), data, info.etag if info is not None else None
        finally:
            lock.release()
            if not lock.locked and not lock.waiting:
                self._locks.pop(doc.url, None)

    def drain(self) -> Deferred:
        """Fire when every write accepted so far is on disk and reported."""
        return DeferredList(list(self._inflight), consumeErrors=True)

    def _write(self, doc: DocumentPath, ifMatch: str | None, check: Check | None,
               plan: partial[_Plan]) -> Deferred[WriteResult]:
        d = ensureDeferred(self._serialized(doc, ifMatch, check, plan))
        self._inflight.add(d)

        def done(result: object) -> object:
            self._inflight.discard(d)
            return result

        d.addBoth(done)
        return d

    async def _serialized(self, doc: DocumentPath, ifMatch: str | None, check: Check | None,
                          plan: partial[_Plan]) -> WriteResult:
        """
        Apply one write in its turn: check it, compute it from the current tree in a
        worker thread (C{plan} is L{_applySelector} or L{_applyWhole} with all but
        that tree bound), persist it, number it and report it.
        """
        lock = self._locks.setdefault(doc.url, DeferredLock())
        await lock.acquire()
        try:
            self._checkPrecondition(doc, ifMatch)
            if not self.isLoaded(doc):
                await self.load(doc)
            current = self.tree(doc) if plan.func is _applySelector else self.treeOrNone(doc)
            if check is not None:
                check(current)
            try:
                p = await self._inThread(lambda: plan(current))
            except ValueError as e:
                raise UNSTORABLE.because(_oneLine(e)) from None
            etag = await self._persist(doc, p)
            sequence = self.sequence(doc.url) + 1
            self._sequences[doc.url] = sequence
            change = p.change(doc.url, sequence)
            try:
                self.onChange(change)
            except Exception:
                self.log.failure("change listener failed for {url}", url=doc.url)
            return WriteResult(change, etag, p.created)
        finally:
            lock.release()
            if not lock.locked and not lock.waiting:
                self._locks.pop(doc.url, None)

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

    async def _persist(self, doc: DocumentPath, p: _Plan) -> str | None:
        """Write C{p} to disk; the new file's ETag (C{None} once it is deleted)."""
        try:
            if p.data is None:
                await self._inThread(lambda: durableUnlink(doc.filename, self.options.fsync))
                stamp = None
            else:
                data = p.data
                stamp = await self._inThread(
                    lambda: atomicWrite(doc.filename, data, self.options.fsync))
        except FileNotFoundError:
            self._cache.pop(doc.url, None)
            raise NOT_FOUND from None
        except OSError as e:
            self._cache.pop(doc.url, None)
            self.log.error("writing {file} failed: {error}", file=doc.filename, error=e)
            raise WRITE_FAILED.because(e.strerror or type(e).__name__) from None
        if stamp is None or p.after is None:
            self._cache.pop(doc.url, None)
        else:
            self._remember(doc.url, _stamp(stamp), p.after)
        return _etag(stamp) if stamp is not None else None

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


def _applySelector(method: str, selector: Selector, body: bytes,
                   before: etree._ElementTree | None) -> _Plan:
    """A selector write computed on a copy of C{before}; it runs in a worker thread
    and touches nothing but its arguments."""
    assert before is not None
    text = decodeBody(body) if method != "DELETE" else ""
    targets = selector.select(before.getroot())
    if not targets:
        raise NO_MATCH.because(selector.css)
    after = markup.copyTree(before)
    copies = selector.select(after.getroot())
    if method != "POST":
        keep = _outermost(targets)
        targets = [t for t, k in zip(targets, keep) if k]
        copies = [c for c, k in zip(copies, keep) if k]
    pieces: list[str] = []
    inserted: list[etree._Element] = []
    containers: list[etree._Element] = []
    for target in copies:
        if method == "DELETE":
            pieces.append(markup.serialize(target))
            containers.append(markup.detach(target))
            continue
        if method == "POST":
            nodes = markup.parseFragment(text, str(target.tag))
            markup.insertNodes(target, len(target), target[-1] if len(target) else None, nodes)
            containers.append(target)
        elif target.getparent() is None:
            after = markup.parseDocument(text)
            nodes = [after.getroot()]
        else:
            parent = target.getparent()
            if parent.getparent() is None and target.tag in ("head", "body"):
                nodes = [markup.parseDocument(text).getroot().find(target.tag)]
            else:
                nodes = markup.parseFragment(text, str(parent.tag))
            markup.replaceWith(target, nodes)
            containers.append(parent)
        pieces.append(markup.serializeAll(nodes))
        inserted.extend(n for n in nodes if not isinstance(n, str))
    data = markup.serializeDocument(after)
    if not markup.sameStructure(after, markup.parseDocument(data)):
        raise RESTRUCTURED
    return _Plan(
        method=method,
        selector=selector.css,
        content="\n".join(pieces),
        data=data,
        before=before,
        after=after,
        removed=tuple(targets) if method != "POST" else (),
        inserted=tuple(inserted),
        containers=tuple(containers),
        body=body if method != "DELETE" else None,
    )

def _applyWhole(doc: DocumentPath, method: str, body: bytes | None,
                before: etree._ElementTree | None) -> _Plan:
    """A whole-document write; runs in a worker thread like L{_applySelector}."""
    exists = os.path.isfile(doc.filename)
    if method == "DELETE":
        if not exists:
            raise NOT_FOUND
        return _Plan(method, "", "", None, before, None,
                     removed=(before.getroot(),) if before is not None else ())
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
        after = markup.parseDocument(content) if data is body else markup.parseLeniently(data)
    return _Plan(
        method, "", content, data, before, after,
        removed=(before.getroot(),) if before is not None else (),
        inserted=(after.getroot(),) if after is not None else (),
        created=not exists,
        body=body,
    )


def _checkParents(dirname: str) -> None:
    """Refuse a file whose missing directories cannot be created (a parent is a file)."""
    while not os.path.isdir(dirname):
        if os.path.lexists(dirname):
            raise PARENT_IS_FILE
        dirname = os.path.dirname(dirname)


@dataclass(frozen=True)
class _Plan:
    """A computed write, not yet on disk: the bytes to store and the change it makes."""

    method: str
    selector: str
    content: str
    data: bytes | None
    before: etree._ElementTree | None
    after: etree._ElementTree | None
    removed: tuple[etree._Element, ...] = ()
    inserted: tuple[etree._Element, ...] = ()
    containers: tuple[etree._Element, ...] = ()
    created: bool = False
    body: bytes | None = None

    def change(self, url: str, sequence: int) -> Change:
        return Change(
            method=self.method,
            url=url,
            selector=self.selector,
            sequence=sequence,
            content=self.content,
            before=self.before,
            after=self.after,
            removed=self.removed,
            inserted=self.inserted,
            containers=self.containers,
            size=len(self.data) if self.data is not None else 0,
            body=self.body,
        )


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
