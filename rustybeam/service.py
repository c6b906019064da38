"""
The service behind one document root: store, notifier and WebSocket factory, with
one lifecycle. This is the object to embed in another Twisted application.

    live = DocumentService("/srv/docs")
    live.setServiceParent(application)
    root.putChild(b"docs", live.resource())

Stopping it waits for every accepted write to be on disk, then closes every
WebSocket with 1001 (going away).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, ensureDeferred, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from rustybeam.changelog import StoreFactory, inProcessStore
from rustybeam.documents import StoreOptions
from rustybeam.interfaces import IGuard
from rustybeam.notifier import DocumentChangeNotifier, NotifierOptions
from rustybeam.resource import DocumentResource, HTTPOptions, LiveRoot
from rustybeam.websocket import DocumentWebSocketFactory, WebSocketOptions, WebSocketUpgrade


@dataclass(frozen=True)
class DocumentOptions:
    """Every option of one document root, grouped by component."""

    store: StoreOptions = field(default_factory=StoreOptions)
    http: HTTPOptions = field(default_factory=HTTPOptions)
    websocket: WebSocketOptions = field(default_factory=WebSocketOptions)
    notifier: NotifierOptions = field(default_factory=NotifierOptions)
    enableWebSocket: bool = True


class DocumentService(Service):
    """
    A live document root.

    @param root: the directory served.
    @param guard: authentication and authorization for HTTP and WebSocket alike.
    @param reactor: the reactor for timers and the write thread pool.
    @param makeStore: builds the store (a cluster's writer or edge gives its own).
    """

    def __init__(
        self,
        root: str,
        options: DocumentOptions = DocumentOptions(),
        guard: IGuard | None = None,
        reactor: IReactorTime | None = None,
        makeStore: StoreFactory = inProcessStore,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor  # type: ignore[assignment]
        self.options = options
        self.guard = guard
        self.notifier = DocumentChangeNotifier(options.notifier)
        self.store = makeStore(root, self.notifier, options.store,
                               reactor)  # type: ignore[arg-type]
        self.factory = DocumentWebSocketFactory(self.store, self.notifier, options.websocket,
                                                reactor)
        self.documents = DocumentResource(
            self.store,
            WebSocketUpgrade(self.factory) if options.enableWebSocket else None,
            guard,
            options.http,
        )
        self._resource = LiveRoot(self.documents)

    def resource(self) -> LiveRoot:
        """The Twisted Web resource serving this root and the browser client
        (mount it anywhere; document URLs are relative to where it is mounted)."""
        return self._resource

    def startService(self) -> None:
        self.store.removeLeftovers()
        super().startService()
        self.notifier.startService()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return ensureDeferred(self._stop())

    async def _stop(self) -> None:
        await self.store.drain()
        if self.notifier.running:
            self.notifier.stopService()
        await self.factory.whenClosed(self.options.websocket.closeHandshakeTimeout + 1)


class StopInOrder(MultiService):
    """
    A MultiService that stops its children one after the other, the last added
    first (a plain MultiService stops them all at once): add what must stop last
    first, e.g. the documents, then the request drain, then the listening endpoint.
    """

    log = Logger()

    def stopService(self) -> Deferred[None]:
        Service.stopService(self)
        return ensureDeferred(self._stopInOrder())

    async def _stopInOrder(self) -> None:
        for service in reversed(list(self)):
            try:
                await maybeDeferred(service.stopService)
            except Exception:
                self.log.failure("stopping {service} failed", service=service)
