"""
The HTTP site: a Twisted Web C{Site} whose requests refuse to buffer oversized bodies.

L{DocumentResource} checks the body size itself (so it is safe when embedded in any
Site); L{DocumentSite} adds the early refusal: once a body passes the limit its bytes
are discarded as they arrive instead of being spooled to a temporary file.
"""

from __future__ import annotations

from typing import Any

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


class DocumentSite(Site):
    """
    A C{Site} for rustybeam resources, with a request body limit and an access log
    that knows the authenticated user (a host's own log, set on the request by the
    host router, wins over the site's). With L{rustybeam.metrics.Metrics}, it counts
    the WebSocket handshakes that were refused, by the refusal's error code.
    """

    requestFactory = LimitedRequest

    def __init__(self, resource: IResource, maxBodyBytes: int,
                 accessLog: AccessLog | None = None, metrics: Any = None, **kwargs: Any) -> None:
        super().__init__(resource, **kwargs)
        self.maxBodyBytes = maxBodyBytes
        self.accessLog = accessLog
        self.metrics = metrics

    def log(self, request: Request) -> None:
        if self.metrics is not None and request.code >= 400 and isUpgrade(request):
            self.metrics.refused(getattr(request, "rustybeamHost", DEFAULT_HOST),
                                 getattr(request, "rustybeamProblem", str(request.code)))
        accessLog = getattr(request, "rustybeamAccessLog", None) or self.accessLog
        if accessLog is None:
            super().log(request)
            return
        accessLog.log(entryFromRequest(request, getattr(request, "rustybeamUser", None)))
