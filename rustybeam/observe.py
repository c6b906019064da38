"""
The server's own endpoints, in front of whatever it serves: C{/_rustybeam/health}
always, and C{/_rustybeam/metrics} when metrics are enabled. They answer for every
C{Host} (a C{--config} server's hosts included) and cannot collide with documents,
since no document path starts with C{/_rustybeam/}.
"""

from __future__ import annotations

from twisted.web.resource import IResource, Resource
from twisted.web.server import Request

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
