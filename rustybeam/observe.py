"""
The server's own endpoints, in front of whatever it serves: C{/_rustybeam/health}
always, and C{/_rustybeam/metrics} when metrics are enabled. They answer for every
C{Host} (a C{--config} server's hosts included) and cannot collide with documents,
since no document path starts with C{/_rustybeam/}.
"""

from __future__ import annotations

from typing import Mapping

from prometheus_client.twisted import MetricsResource as PrometheusResource
from twisted.internet.threads import deferToThread
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET, Request

from rustybeam.auth import Credential, authenticate
from rustybeam.metrics import Metrics

PREFIX = b"_rustybeam"


class ServerEndpoints(Resource):
    """Routes C{/_rustybeam/<name>} to C{endpoints[name]}, everything else to C{inner}."""

    def __init__(self, inner: IResource, endpoints: dict[bytes, IResource]) -> None:
        super().__init__()
        self.inner = inner
        self.endpoints = endpoints

    def getChildWithDefault(self, path: bytes, request: Request) -> IResource:
        postpath = request.postpath
        if path == PREFIX and len(postpath) == 1 and postpath[0] in self.endpoints:
            name = postpath.pop(0)
            request.prepath.append(name)
            return self.endpoints[name]
        return self.inner.getChildWithDefault(path, request)

    def render(self, request: Request) -> bytes | int:
        return self.inner.render(request)


class MetricsEndpoint(Resource):
    """
    C{/_rustybeam/metrics}: the registry in Prometheus' text format, through
    C{prometheus_client}'s Twisted resource (which renders in the reactor's thread
    pool; the values read from the services are snapshotted first, in the reactor
    thread). With C{users}, only a request with the Basic credentials of one of them
    is answered (others get 401); the password check runs in a worker thread too,
    since bcrypt is slow on purpose.
    """

    isLeaf = True

    def __init__(self, metrics: Metrics, users: Mapping[str, Credential] | None = None,
                 realm: str = "rustybeam metrics") -> None:
        super().__init__()
        self.metrics = metrics
        self.exposition = PrometheusResource(registry=metrics.registry)
        self.users = users
        self.realm = realm

    def render(self, request: Request) -> bytes | int:
        if request.method not in (b"GET", b"HEAD"):
            request.setResponseCode(405)
            request.setHeader(b"allow", b"GET, HEAD")
            return b""
        if self.users is None:
            return self._expose(request)
        d = deferToThread(authenticate, self.users, request.getHeader(b"authorization"))
        d.addErrback(lambda failure: None)
        d.addCallback(self._checked, request)
        return NOT_DONE_YET

    def _expose(self, request: Request) -> bytes | int:
        self.metrics.snapshot()
        return self.exposition.render(request)  # type: ignore[no-any-return]

    def _checked(self, user: Credential | None, request: Request) -> None:
        if request._disconnected:
            return
        if user is not None:
            self._expose(request)
            return
        request.setResponseCode(401)
        request.setHeader(b"www-authenticate", f'Basic realm="{self.realm}"'.encode())
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        if request.method != b"HEAD":
            request.write(b"authentication required\n")
        request.finish()
