"""
The HTTP site: a Twisted Web C{Site} whose requests refuse to buffer oversized bodies
and whose connections must send their request headers within a deadline.

L{DocumentResource} checks the body size itself (so it is safe when embedded in any
Site); L{DocumentSite} adds the early refusal: once a body passes the limit its bytes
are discarded as they arrive instead of being spooled to a temporary file.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.web import http
from twisted.web.resource import IResource
from twisted.web.server import Request, Site

from rustybeam.accesslog import AccessLog, entryFromRequest


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
    host router, wins over the site's).
    """

    requestFactory = LimitedRequest

    def __init__(self, resource: IResource, maxBodyBytes: int,
                 accessLog: AccessLog | None = None,
                 headerTimeout: float = DEFAULT_HEADER_TIMEOUT, **kwargs: Any) -> None:
        super().__init__(resource, **kwargs)
        self.maxBodyBytes = maxBodyBytes
        self.accessLog = accessLog
        self.headerTimeout = headerTimeout

    def protocol(self) -> http._GenericHTTPChannelProtocol:  # type: ignore[override]
        """Twisted's HTTP/1.1-or-2 channel with the header deadline on HTTP/1.1."""
        channel = HeaderDeadlineChannel()
        channel.headerTimeout = self.headerTimeout
        return http._GenericHTTPChannelProtocol(channel)

    def log(self, request: Request) -> None:
        accessLog = getattr(request, "rustybeamAccessLog", None) or self.accessLog
        if accessLog is None:
            super().log(request)
            return
        accessLog.log(entryFromRequest(request, getattr(request, "rustybeamUser", None)))
