"""
Rusty Beam's C{directory} plugin: a pipeline of nested plugins that applies only
below one path.

C{directory} (default C{/}; a C{file://} URL stands for C{/<its last segment>}) is
matched as Rusty Beam does: the path equals it (trailing slashes ignored) or starts
with it and C{/}; case matters. For a matching request the nested plugins run their
request phase in order (the first answer wins) and their response phase in order.
The nested plugins are the C{plugin} items inside the directory plugin's item (or
inside its C{nested_plugins} item). rustybeam's own handlers (file-handler,
selector-handler, websocket, basic-auth, authorization, access-log) serve the whole
host and cannot be nested: a directory that nests one is a start-up error, rather
than a directory whose protection silently does not apply.
"""

from __future__ import annotations

from twisted.web.server import Request

from rustybeam.config import ConfigError, PluginConfig
from rustybeam.plugins import (
    STAGES,
    PipelineContext,
    Reply,
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
    def __init__(self, directory: str, nested: list[Stage]) -> None:
        self.directory = directory.rstrip("/")
        self.nested = nested
        self.answers = any(s.answers for s in nested)
        self.wantsUser = any(s.wantsUser for s in nested)

    def matches(self, path: str) -> bool:
        return path.rstrip("/") == self.directory or path.startswith(self.directory + "/")

    def request(self, request: Request, user: str | None) -> Reply | None:
        if not self.matches(requestPath(request)):
            return None
        for stage in self.nested:
            reply = stage.request(request, user)
            if reply is not None:
                return reply
        return None

    def response(self, request: Request, response: Response) -> None:
        if self.matches(requestPath(request)):
            for stage in self.nested:
                stage.response(request, response)


def stage(plugin: PluginConfig, context: PipelineContext) -> Stage:
    nested = []
    for inner in plugin.nested:
        if inner.name not in STAGES:
            raise ConfigError(
                f"HostConfig ({context.host.hostName}): plugin directory: nested plugin "
                f"{inner.name!r} cannot apply to one directory in rustybeam (it serves the "
                f"whole host); put it in the host's pipeline (for access rules, use paths "
                f"like /dir/* in the authorization file)")
        nested.append(buildStage(inner, context))
    return Directory(directoryPath((plugin.get("directory") or ROOT).strip()), nested)
