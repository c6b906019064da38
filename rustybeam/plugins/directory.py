"""
Rusty Beam's C{directory} plugin: a pipeline of nested plugins that applies only
below one path.

C{directory} (default C{/}; a C{file://} URL stands for C{/<its last segment>}) is
matched as Rusty Beam does: the path equals it (trailing slashes ignored) or starts
with it and C{/}; case matters. For a matching request the nested plugins run their
request phase in order (the first answer wins) and their response phase in order.
The nested plugins are the C{plugin} items inside the directory plugin's item (or
inside its C{nested_plugins} item).

Nested C{basic-auth} and C{authorization} protect the directory: a matching request
must carry valid credentials of the nested users file (else 401) and be allowed by
the nested rules for its method and path (else 401/403) before the nested plugins
after them, and the host's own handlers, see it. They decide on the whole path (a
rule's C{selector} is not consulted here). The other handlers (file-handler,
selector-handler, websocket, access-log) serve the whole host and cannot be nested:
a directory that nests one is a start-up error.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.web.server import Request

from rustybeam.config import ConfigError, HostConfig, PluginConfig
from rustybeam.interfaces import IGuard, IViewer
from rustybeam.plugins import (
    AUTH_PLUGINS,
    STAGES,
    PipelineContext,
    Response,
    Stage,
    buildStage,
    requestPath,
)

ROOT = "/"


def directoryPath(value: str) -> str:
    if value.startswith("file://"):
        return ROOT + value.rstrip("/").rsplit("/", 1)[-1]
    return value


class Directory(Stage):
    def __init__(self, directory: str, nested: list[Stage], guard: IGuard | None = None) -> None:
        self.directory = directory.rstrip("/")
        self.nested = nested
        self.guard = guard
        self.answers = guard is not None or any(s.answers for s in nested)
        self.wantsUser = any(s.wantsUser for s in nested)

    def matches(self, path: str) -> bool:
        return path.rstrip("/") == self.directory or path.startswith(self.directory + "/")

    def request(self, request: Request, user: str | None) -> Any:
        if not self.matches(requestPath(request)):
            return None
        if self.guard is None:
            return self._nested(request, user)
        found = self.guard.viewer(request.getHeader(b"authorization"))
        if isinstance(found, Deferred):
            return found.addCallback(self._authorized, request)
        return self._authorized(found, request)

    def _authorized(self, viewer: IViewer, request: Request) -> Any:
        assert self.guard is not None
        self.guard.authorize(viewer, request.method.decode("ascii", "replace"),
                             requestPath(request), None, None)
        if viewer.name is not None:
            request.rustybeamUser = viewer.name  # type: ignore[attr-defined]
        return self._nested(request, viewer.name)

    def _nested(self, request: Request, user: str | None, start: int = 0) -> Any:
        for index in range(start, len(self.nested)):
            reply = self.nested[index].request(request, user)
            if isinstance(reply, Deferred):
                return reply.addCallback(
                    lambda r, i=index: r if r is not None else self._nested(request, user, i + 1))
            if reply is not None:
                return reply
        return None

    def response(self, request: Request, response: Response) -> None:
        if self.matches(requestPath(request)):
            for stage in self.nested:
                stage.response(request, response)


def stage(plugin: PluginConfig, context: PipelineContext) -> Stage:
    from rustybeam.hosts import guardFor

    host = context.host
    nested, access = [], []
    for inner in plugin.nested:
        if inner.name in AUTH_PLUGINS:
            access.append(inner)
        elif inner.name in STAGES:
            nested.append(buildStage(inner, context))
        else:
            raise ConfigError(
                f"HostConfig ({host.hostName}): plugin directory: nested plugin {inner.name!r} "
                f"cannot apply to one directory in rustybeam (it serves the whole host); put it "
                f"in the host's pipeline")
    guard = guardFor(HostConfig(host.hostName, host.hostRoot, tuple(access))) if access else None
    return Directory(directoryPath((plugin.get("directory") or ROOT).strip()), nested, guard)
