"""
The HTTP site: a Twisted Web C{Site} whose requests refuse to buffer oversized bodies
and whose connections must send their request headers within a deadline.

L{DocumentResource} checks the body size itself (so it is safe when embedded in any
Site); L{DocumentSite} adds the early refusal: once a body passes the limit its bytes
are discarded as they arrive instead of being spooled to a temporary file.
"""

from __future__ import annotations

import weakref
from typing import Any

from twisted.application.service import Service
from twisted.internet import task
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.web import http
from twisted.web.resource import IResource
from twisted.web.server import Request, Site

from rustybeam.accesslog import AccessLog, entryFromRequest
from rustybeam.metrics import DEFAULT_HOST
from rustybeam.websocket import isUpgrade


class LimitedRequest(Request):
    """A request that stops storing its body once it exceeds the site's limit."""

    rustybeamTooLarge = False
    _received = 0

    def gotLength(self, length: int | None) -> None:
        limit = getattr(self.channel.site, "maxBodyBytes", None)
        if limit is not None and length is not None and length > limit:
            self.rustybeamTooLarge = True
            length = 0
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        limit = getattr(self.channel.site, "maxBodyBytes", None)
        self._received += len(data)
        if limit is not None and self._received > limit:
            self.rustybeamTooLarge = True
        if not self.rustybeamTooLarge:
            super().handleContentChunk(data)


DEFAULT_HEADER_TIMEOUT = 5.0
"""Seconds a connection may take to send a request's line and headers."""


class HeaderDeadlineChannel(http.HTTPChannel):
    """
    An HTTP channel that closes a connection which has not finished a request's
    headers within C{headerTimeout} seconds of their first byte. Twisted's own idle
    timeout restarts with every byte received, so without it a client that sends one
    header byte every 100 ms (slowloris) holds its socket and file descriptor forever.
    """

    log = Logger()
    headerTimeout: float = DEFAULT_HEADER_TIMEOUT
    _headerDeadline: IDelayedCall | None = None

    def dataReceived(self, data: bytes) -> None:
        if self._headerDeadline is None and self.line_mode and self.headerTimeout > 0:
            self._headerDeadline = self.callLater(self.headerTimeout, self._headersTooSlow)
        super().dataReceived(data)

    def allHeadersReceived(self) -> None:
        self._cancelHeaderDeadline()
        super().allHeadersReceived()

    def connectionLost(self, reason: Any) -> None:
        self._cancelHeaderDeadline()
        super().connectionLost(reason)

    def _cancelHeaderDeadline(self) -> None:
        if self._headerDeadline is not None:
            if self._headerDeadline.active():
                self._headerDeadline.cancel()
            self._headerDeadline = None

    def _headersTooSlow(self) -> None:
        self._headerDeadline = None
        peer = self.transport.getPeer() if self.transport is not None else None
        self.log.info("closing {peer}: request headers not received within {timeout} s",
                      peer=getattr(peer, "host", "?"), timeout=self.headerTimeout)
        if self.transport is not None:
            self.transport.abortConnection()


class DocumentSite(Site):
    """
    A C{Site} for rustybeam resources, with a request body limit and an access log
    that knows the authenticated user (a host's own log, set on the request by the
    host router, wins over the site's). With L{rustybeam.metrics.Metrics}, it counts
    the WebSocket handshakes that were refused, by the refusal's error code.
    """

    requestFactory = LimitedRequest

    def __init__(self, resource: IResource, maxBodyBytes: int,
                 accessLog: AccessLog | None = None, metrics: Any = None,
                 headerTimeout: float = DEFAULT_HEADER_TIMEOUT, **kwargs: Any) -> None:
        super().__init__(resource, **kwargs)
        self.maxBodyBytes = maxBodyBytes
        self.accessLog = accessLog
        self.metrics = metrics
        self.headerTimeout = headerTimeout
        self._connections: weakref.WeakSet[Any] = weakref.WeakSet()

    def protocol(self) -> http._GenericHTTPChannelProtocol:  # type: ignore[override]
        """Twisted's HTTP/1.1-or-2 channel with the header deadline on HTTP/1.1."""
        channel = HeaderDeadlineChannel()
        channel.headerTimeout = self.headerTimeout
        return http._GenericHTTPChannelProtocol(channel)

    def buildProtocol(self, addr: Any) -> Any:
        protocol = super().buildProtocol(addr)
        if protocol is not None:
            self._connections.add(protocol)
        return protocol
    def busy(self) -> bool:
        """Whether a request is being processed or a response is still being sent
        on an HTTP connection (WebSocket connections, which have left HTTP, aside)."""
        for protocol in list(self._connections):
            channel = getattr(protocol, "_channel", protocol)
            transport = getattr(channel, "transport", None)
            if transport is None or getattr(transport, "disconnected", False):
                continue
            if getattr(channel, "requests", None):
                return True
            if getattr(transport, "dataBuffer", b"") or getattr(transport, "_tempDataBuffer", None):
                return True
        return False

    def closeIdle(self) -> None:
        """Close every HTTP connection (after what it has buffered is sent)."""
        for protocol in list(self._connections):
            channel = getattr(protocol, "_channel", protocol)
            transport = getattr(channel, "transport", None)
            if transport is not None and not getattr(transport, "disconnected", False):
                transport.loseConnection()

    def log(self, request: Request) -> None:
        if self.metrics is not None and request.code >= 400 and isUpgrade(request):
            self.metrics.refused(getattr(request, "rustybeamHost", DEFAULT_HOST),
                                 getattr(request, "rustybeamProblem", str(request.code)))
        accessLog = getattr(request, "rustybeamAccessLog", None) or self.accessLog
        if accessLog is None:
            super().log(request)
            return
        accessLog.log(entryFromRequest(request, getattr(request, "rustybeamUser", None)))


class RequestDrain(Service):
    """
    The graceful stop of a L{DocumentSite}: stopped once the site no longer accepts
    connections, it waits until every request being processed has been answered
    and its response flushed (at most C{timeout} seconds), then closes the HTTP
    connections; a request that was applied is never left without its answer.
    """

    log = Logger()

    def __init__(self, site: DocumentSite, reactor: IReactorTime, timeout: float = 30.0,
                 interval: float = 0.01) -> None:
        self.site = site
        self._reactor = reactor
        self.timeout = timeout
        self.interval = interval

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return ensureDeferred(self._drain())

    async def _drain(self) -> None:
        deadline = self._reactor.seconds() + self.timeout
        while self.site.busy() and self._reactor.seconds() < deadline:
            await task.deferLater(self._reactor, self.interval, lambda: None)
        if self.site.busy():
            self.log.warn("stopping with HTTP requests still in progress after {timeout} s",
                          timeout=self.timeout)
        self.site.closeIdle()
        while self.site.busy() and self._reactor.seconds() < deadline:
            await task.deferLater(self._reactor, self.interval, lambda: None)
