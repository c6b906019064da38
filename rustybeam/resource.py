"""
The Twisted Web resource for a document root: HTTP documents and WebSocket upgrades
on the same URLs.

L{DocumentResource} is a leaf C{IResource}: every path below it names a document.
Requests carrying C{Upgrade: websocket} are checked (origin, limits, authorization)
and handed to the WebSocket side; all others are served from the L{DocumentStore},
with C{Range: selector=<css>} reading or changing just the matched elements.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from lxml import etree
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from twisted.web.static import File

from rustybeam import markup, selectors
from rustybeam.documents import Check, DocumentStore, WriteResult
from rustybeam.errors import (
    INTERNAL,
    METHOD_NOT_ALLOWED,
    SELECTORS_DISABLED,
    NOT_FOUND,
    NOT_HTML,
    TOO_LARGE,
    Problem,
)
from rustybeam.interfaces import IGuard, IViewer
from rustybeam.origins import OriginPolicy
from rustybeam.paths import DocumentPath
from rustybeam.selectors import Selector
from rustybeam.websocket import WebSocketUpgrade, isUpgrade

SELECTOR_METHODS = (b"GET", b"HEAD", b"PUT", b"POST", b"DELETE", b"OPTIONS")
DOCUMENT_METHODS = (b"GET", b"HEAD", b"PUT", b"POST", b"DELETE", b"OPTIONS")
SEQUENCE_HEADER = b"X-Rustybeam-Sequence"
HTML_TYPE = b"text/html; charset=utf-8"
CLIENT_PREFIX = b"_rustybeam"
APPENDED = b"Content appended successfully"
"""The body of a whole-file POST's answer, as Rusty Beam's file-handler words it."""
STATIC_DIRECTORY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
CLIENT_SCRIPT = os.path.join(STATIC_DIRECTORY, "rustybeam.js")
"""The browser client, also served at C{/_rustybeam/rustybeam.js}."""


@dataclass(frozen=True)
class HTTPOptions:
    """Options of the HTTP side of a L{DocumentResource}."""

    maxBodyBytes: int = 1024 * 1024
    """Largest request body accepted for PUT or POST; larger ones get 413."""
    selectors: bool = True
    """Serve C{Range: selector=} requests (Rusty Beam's selector-handler)."""
    files: bool = True
    """Serve whole files (Rusty Beam's file-handler)."""
    trustedOrigins: tuple[str, ...] = ()
    """Foreign origins (fnmatch patterns) that may write and open WebSockets with a
    browser's credentials on a host with authentication; see L{OriginPolicy}."""


_PHRASES = {426: b"Upgrade Required"}


def renderProblem(request: Request, problem: Problem) -> bytes:
    """Write C{problem} as the response: its status and a one-line text/plain reason."""
    request.setResponseCode(problem.status, _PHRASES.get(problem.status))
    request.rustybeamProblem = problem.code  # type: ignore[attr-defined]
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    request.setHeader(b"cache-control", b"no-store")
    for name, value in problem.headers:
        request.setHeader(name, value)
    if problem.status in (400, 413):
        request.setHeader(b"connection", b"close")
    body = (problem.message.replace("\n", " ") + "\n").encode("utf-8")
    request.setHeader(b"content-length", str(len(body)).encode())
    return b"" if request.method == b"HEAD" else body


class DocumentResource(Resource):
    """
    Serves every document under a L{DocumentStore}'s root, over HTTP and WebSocket.

    @param store: the documents.
    @param websocket: where upgrade requests go; without it, upgrades are served as
        plain HTTP requests.
    @param guard: authenticates and authorizes requests; without it, all is allowed.
    """

    isLeaf = True
    log = Logger()

    def __init__(
        self,
        store: DocumentStore,
        websocket: WebSocketUpgrade | None = None,
        guard: IGuard | None = None,
        options: HTTPOptions = HTTPOptions(),
    ) -> None:
        super().__init__()
        self.store = store
        self.websocket = websocket
        self.guard = guard
        self.options = options
        self.origins = OriginPolicy(options.trustedOrigins)

    def render(self, request: Request) -> bytes | int:
        """
        Serve C{request} at once when nothing it needs is slow; otherwise (a bcrypt
        check, or a document that must first be parsed to read it) wait for that in a
        worker thread and answer afterwards.
        """
        try:
            doc = self.store.locate(relativePath(request))
            viewer = self._viewer(request)
            reading = request.method in (b"GET", b"HEAD", b"OPTIONS") and _header(request, b"range")
            loading = None if self.store.isLoaded(doc) or not reading else self.store.load(doc)
            if loading is None and not isinstance(viewer, Deferred):
                return self._route(request, doc, viewer)
        except Problem as problem:
            return renderProblem(request, problem)
        except Exception:
            self.log.failure("{method} {uri} failed", method=request.method, uri=request.uri)
            return renderProblem(request, INTERNAL)
        d: Deferred[object] = loading if loading is not None else Deferred()
        d.addCallback(lambda _: viewer)
        d.addCallback(self._identified, request, doc)
        d.addCallback(lambda body: self._respond(request, body))
        d.addErrback(self._failed, request)
        if loading is None:
            d.callback(None)
        return NOT_DONE_YET

    def _identified(self, viewer: IViewer | None, request: Request, doc: DocumentPath) -> bytes | int:
        if viewer is not None:
            request.rustybeamUser = viewer.name  # type: ignore[attr-defined]
        return self._route(request, doc, viewer)

    def _respond(self, request: Request, body: bytes | int) -> None:
        if body is NOT_DONE_YET or request._disconnected:
            return
        request.write(body)  # type: ignore[arg-type]
        request.finish()

    def _route(self, request: Request, doc: DocumentPath, viewer: IViewer | None) -> bytes | int:
        if self.websocket is not None and isUpgrade(request):
            self._refuseCrossSite(request)
            return self._upgrade(request, doc, viewer)
        selector = self._selector(request)
        method = request.method
        allowed = SELECTOR_METHODS if selector is not None else DOCUMENT_METHODS
        if method not in allowed:
            raise METHOD_NOT_ALLOWED.withHeader(b"Allow", b", ".join(allowed))
        if method == b"OPTIONS":
            request.setHeader(b"Allow", b", ".join(self._permitted(viewer, allowed, doc, selector)))
            request.setHeader(b"accept-ranges", b"selector")
            request.setHeader(b"content-length", b"0")
            return b""
        if selector is not None and not doc.isHTML:
            raise NOT_HTML
        if selector is None and not self.options.files:
            raise NOT_FOUND.because("this host serves selector ranges only")
        if method in (b"GET", b"HEAD"):
            self._authorize(viewer, b"GET", doc, selector)
            return self._read(request, doc, selector, viewer)
        self._refuseCrossSite(request)
        body = self._body(request) if method in (b"PUT", b"POST") else b""
        ifMatch = _header(request, b"if-match")
        check = self._writeCheck(viewer, method, doc, selector)
        if selector is None:
            if method == b"PUT":
                d = self.store.putDocument(doc, body, ifMatch, check)
            elif method == b"POST":
                d = self.store.appendDocument(doc, body, ifMatch, check)
            else:
                d = self.store.deleteDocument(doc, ifMatch, check)
        elif method == b"PUT":
            d = self.store.replace(doc, selector, body, ifMatch, check)
        elif method == b"POST":
            d = self.store.append(doc, selector, body, ifMatch, check)
        else:
            d = self.store.remove(doc, selector, ifMatch, check)
        d.addCallback(self._written, request, selector)
        d.addErrback(self._failed, request)
        return NOT_DONE_YET

    # Access

    def _viewer(self, request: Request) -> IViewer | Deferred[IViewer] | None:
        if self.guard is None:
            return None
        viewer = self.guard.viewer(request.getHeader(b"authorization"),
                                   request.method.decode("ascii", "replace"))
        if not isinstance(viewer, Deferred):
            request.rustybeamUser = viewer.name  # type: ignore[attr-defined]
        return viewer

    def _refuseCrossSite(self, request: Request) -> None:
        """On a host with authentication, a write or WebSocket from a foreign page
        would ride on the browser's cached credentials: refuse it."""
        if self.guard is not None and self.guard.authenticates:
            self.origins.check(request)

    def _authorize(
        self, viewer: IViewer | None, method: bytes, doc: DocumentPath, selector: Selector | None
    ) -> None:
        """Refuse a read (or an upgrade) that C{viewer} may not make; selector reads
        are judged on the elements they would return."""
        if self.guard is None or viewer is None:
            return
        tree = self.store.treeOrNone(doc) if selector is not None else None
        self.guard.authorize(viewer, method.decode("ascii"), doc.url,
                             selector.css if selector else None, tree)

    def _permitted(self, viewer: IViewer | None, methods: tuple[bytes, ...], doc: DocumentPath,
                   selector: Selector | None) -> list[bytes]:
        """The methods of C{methods} that C{viewer} may use on C{doc} (and
        C{selector}), judged by the rules on the document as it is now."""
        if self.guard is None or viewer is None:
            return list(methods)
        tree = self.store.treeOrNone(doc)
        css = selector.css if selector else None
        permitted = []
        for method in methods:
            asked = b"GET" if method == b"HEAD" else method
            if method == b"OPTIONS" or viewer.may(asked.decode("ascii"), doc.url, css, tree):
                permitted.append(method)
        return permitted

    def _writeCheck(self, viewer: IViewer | None, method: bytes, doc: DocumentPath,
                    selector: Selector | None) -> Check | None:
        """The authorization of a write, run by the store in the write's turn on the
        tree it will change (so whole-document writes honour selector rules too)."""
        guard = self.guard
        if guard is None or viewer is None:
            return None
        name, css = method.decode("ascii"), selector.css if selector else None

        def check(tree: etree._ElementTree | None) -> None:
            guard.authorize(viewer, name, doc.url, css, tree)

        return check

    def _upgrade(self, request: Request, doc: DocumentPath, viewer: IViewer | None) -> int:
        assert self.websocket is not None
        self.websocket.check(request)
        self._authorize(viewer, b"GET", doc, None)
        return self.websocket.upgrade(request, doc.url, viewer)  # type: ignore[return-value]

    # Reading

    def _selector(self, request: Request) -> Selector | None:
        value = _header(request, b"range")
        if value is None or not value.strip().lower().startswith("selector"):
            return None
        if not self.options.selectors:
            if request.method in (b"GET", b"HEAD"):
                return None
            raise SELECTORS_DISABLED
        return selectors.fromRangeHeader(value)

    def _read(self, request: Request, doc: DocumentPath, selector: Selector | None,
              viewer: IViewer | None) -> bytes:
        info = self.store.info(doc)
        if info is None or (selector is None and not self.options.files):
            raise NOT_FOUND
        request.setHeader(SEQUENCE_HEADER, str(self.store.sequence(doc.url)).encode())
        request.setHeader(b"etag", info.etag.encode())
        request.setHeader(b"vary", b"Range")
        if selector is not None:
            body = "\n".join(markup.serialize(e) for e in self.store.select(doc, selector))
            return self._selected(request, selector, body)
        request.setHeader(b"last-modified", info.lastModified.encode())
        request.setHeader(b"content-type", info.contentType.encode())
        request.setHeader(b"accept-ranges", b"selector")
        if _notModified(request, info.etag, info.mtime):
            request.setResponseCode(http.NOT_MODIFIED)
            return b""
        data = self._visible(request, doc, viewer) or self.store.read(doc)
        request.setHeader(b"content-length", str(len(data)).encode())
        return b"" if request.method == b"HEAD" else data

    def _visible(self, request: Request, doc: DocumentPath, viewer: IViewer | None) -> bytes | None:
        """The document as C{viewer} may see it, when rules hide parts of it."""
        if viewer is None or not doc.isHTML:
            return None
        redacted = viewer.redactDocument(doc.url, self.store.tree(doc)) if viewer.hidesParts else None
        if redacted is not None:
            request.setHeader(b"etag", b'W/"redacted"')
            request.setHeader(b"cache-control", b"private, no-cache")
        return redacted

    def _selected(self, request: Request, selector: Selector, body: str) -> bytes:
        data = body.encode("utf-8")
        request.setResponseCode(http.PARTIAL_CONTENT)
        request.setHeader(b"content-type", HTML_TYPE)
        request.setHeader(b"content-range", b"selector " + _headerSafe(selector.css))
        request.setHeader(b"content-length", str(len(data)).encode())
        return b"" if request.method == b"HEAD" else data

    # Writing

    def _body(self, request: Request) -> bytes:
        if getattr(request, "rustybeamTooLarge", False):
            raise TOO_LARGE.because(f"limit is {self.options.maxBodyBytes} bytes")
        content = request.content
        content.seek(0, 2)
        if content.tell() > self.options.maxBodyBytes:
            raise TOO_LARGE.because(f"limit is {self.options.maxBodyBytes} bytes")
        content.seek(0)
        return content.read()

    def _written(self, result: WriteResult, request: Request, selector: Selector | None) -> None:
        if request._disconnected:
            return
        request.setHeader(SEQUENCE_HEADER, str(result.change.sequence).encode())
        if result.etag is not None:
            request.setHeader(b"etag", result.etag.encode())
        if selector is not None and result.change.method != "DELETE":
            request.write(self._selected(request, selector, result.change.content))
        elif result.change.method == "POST":
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            request.write(APPENDED)
        else:
            request.setResponseCode(http.CREATED if result.created else http.NO_CONTENT)
        request.finish()

    def _failed(self, failure: Failure, request: Request) -> None:
        if failure.check(Problem):
            problem = failure.value
        else:
            self.log.failure("{method} {uri} failed", failure, method=request.method,
                             uri=request.uri)
            problem = INTERNAL
        if request._disconnected or request.finished:
            return
        request.write(renderProblem(request, problem))
        request.finish()


def relativePath(request: Request) -> bytes:
    """The request's raw (still percent-encoded) path below this resource's mount point."""
    raw = request.path.split(b"?", 1)[0].split(b"/")[1:]
    return b"/" + b"/".join(raw[len(request.prepath):])


class LiveRoot(Resource):
    """
    The resource tree of one live document root: the browser client under
    C{/_rustybeam/} and every other path a document.
    """

    def __init__(self, documents: DocumentResource) -> None:
        super().__init__()
        self.documents = documents
        client = Resource()
        client.putChild(b"rustybeam.js", File(CLIENT_SCRIPT, defaultType="text/javascript"))
        self.putChild(CLIENT_PREFIX, client)

    def getChild(self, path: bytes, request: Request) -> Resource:
        request.prepath.pop()
        request.postpath.insert(0, path)
        return self.documents

    def render(self, request: Request) -> bytes | int:
        return self.documents.render(request)


def _header(request: Request, name: bytes) -> str | None:
    value = request.getHeader(name)
    if value is None:
        return None
    return value.decode("latin-1")


def _headerSafe(text: str) -> bytes:
    return text.encode("utf-8").replace(b"\r", b" ").replace(b"\n", b" ")


def _notModified(request: Request, etag: str, mtime: float) -> bool:
    inm = _header(request, b"if-none-match")
    if inm is not None:
        tags = [t.strip() for t in inm.split(",")]
        return "*" in tags or etag in tags or ("W/" + etag) in tags
    ims = _header(request, b"if-modified-since")
    if ims is not None:
        try:
            return int(mtime) <= parsedate_to_datetime(ims).timestamp()
        except (TypeError, ValueError, IndexError):
            return False
    return False
