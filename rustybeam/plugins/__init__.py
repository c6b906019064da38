"""
Rusty Beam's plugin pipeline on Twisted Web.

Rusty Beam runs a host's plugins in two phases: the I{request phase} asks each plugin
in pipeline order whether it answers the request (the first answer wins and the
rest are not asked), and the I{response phase} then gives the response to every
plugin, again in pipeline order, to change its status, headers or body.

Here the handlers of rustybeam itself (file-handler, selector-handler, websocket,
basic-auth, authorization, access-log) are the host's L{DocumentService}, whose
basic-auth, authorization and access-log parts the modules C{basic_auth},
C{authorization} and C{access_log} read from their plugin items; every other
plugin is a L{Stage}, and L{Pipeline} is the C{IResource} in front of the service
that runs the stages' two phases around it. One module per plugin in this package
builds its stage from the plugin's properties (C{stage(plugin, context)}).

Authentication is a place in the pipeline, as in Rusty Beam: a stage that comes
after C{basic-auth} or C{authorization} only answers a request whose credentials the
host's guard accepts and whose method and path its rules allow.
"""

from __future__ import annotations

import importlib
from urllib.parse import unquote
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import IResource, Resource, getChildForRequest
from twisted.web.server import NOT_DONE_YET, Request

from rustybeam.config import HostConfig, PluginConfig
from rustybeam.errors import INTERNAL, Problem
from rustybeam.interfaces import IGuard, IViewer

AUTH_PLUGINS = frozenset({"basic-auth", "authorization"})

STAGES = {
    "cors": "cors",
    "security-headers": "security_headers",
    "compression": "compression",
    "health-check": "health_check",
    "redirect": "redirect",
    "error-handler": "error_handler",
    "rate-limit": "rate_limit",
    "directory": "directory",
    "config-reload": "config_reload",
    "html-prettifier": "html_prettifier",
}
"""Plugin name -> module of this package that builds its stage."""

log = Logger()


@dataclass(frozen=True)
class Reply:
    """A whole response that a stage answers a request with."""

    status: int
    body: bytes = b""
    contentType: bytes | None = b"text/plain; charset=utf-8"
    headers: tuple[tuple[bytes, bytes], ...] = ()
    code: str | None = None
    """For an error, its machine-readable code (as L{Problem.code}), for metrics."""


@dataclass
class Response:
    """The response as the response phase sees it: status and headers live on the
    request; the body is buffered here until every stage has seen it."""

    request: Request
    body: bytes
    changed: bool = False

    @property
    def status(self) -> int:
        return int(self.request.code)

    def header(self, name: bytes) -> bytes | None:
        return self.request.responseHeaders.getRawHeaders(name, [None])[-1]

    def setBody(self, body: bytes) -> None:
        self.body = body
        self.changed = True

    def replace(self, status: int, contentType: bytes, body: bytes) -> None:
        """A new response that keeps the old one's headers except those describing
        its body (so C{WWW-Authenticate}, C{Allow} and C{Retry-After} survive)."""
        self.request.setResponseCode(status)
        for name in (b"content-encoding", b"content-range", b"etag", b"last-modified"):
            self.request.responseHeaders.removeHeader(name)
        self.request.setHeader(b"content-type", contentType)
        self.setBody(body)


class Stage:
    """One plugin of the pipeline; the hooks do nothing unless overridden."""

    answers = False
    """Whether L{request} can answer (so the guard must be asked first when the
    stage comes after authentication)."""
    wantsUser = False
    """Whether L{request} needs the authenticated user even when it does not answer."""

    def request(self, request: Request, user: str | None) -> Reply | None | Deferred[Reply | None]:
        """Answer C{request}, or C{None} to pass it on (or a Deferred of either; a
        L{Problem} raised or failed with is answered as the error it is)."""
        return None

    def response(self, request: Request, response: Response) -> None:
        """Change the response to C{request}."""


@dataclass(frozen=True)
class PipelineContext:
    """What stages may need from outside their own properties."""

    host: HostConfig
    guard: IGuard | None = None
    clock: IReactorTime | None = None
    configPath: str | None = None
    """The C{config.html} the server was started with (config-reload)."""
    reload: Callable[[], object] | None = None
    """Reloads the configuration (config-reload)."""
    metrics: Any = None
    """The server's L{rustybeam.metrics.Metrics}, if enabled."""
    shuttingDown: Callable[[], bool] = field(default=lambda: False)


def buildStage(plugin: PluginConfig, context: PipelineContext) -> Stage:
    module = importlib.import_module(f"rustybeam.plugins.{STAGES[plugin.name]}")
    return module.stage(plugin, context)  # type: ignore[no-any-return]


def stagesFor(plugins: Sequence[PluginConfig], context: PipelineContext
              ) -> list[tuple[Stage, bool]]:
    """The stages of a pipeline in order, each with whether it comes after
    authentication."""
    stages: list[tuple[Stage, bool]] = []
    afterAuth = False
    for plugin in plugins:
        if plugin.name in AUTH_PLUGINS:
            afterAuth = True
        elif plugin.name in STAGES:
            stages.append((buildStage(plugin, context), afterAuth))
    return stages


def checkPipeline(host: HostConfig) -> None:
    """Build (and drop) a host's stages, so that a plugin's bad settings or files stop
    start-up, or a reload, before anything runs (raises L{ConfigError} or L{OSError})."""
    stagesFor(host.plugins, PipelineContext(host))


def pipelineFor(context: PipelineContext, inner: IResource) -> IResource:
    """C{inner} behind the host's pipeline stages, or C{inner} itself if it has none."""
    stages = stagesFor(context.host.plugins, context)
    return Pipeline(inner, stages, context.guard) if stages else inner


class Pipeline(Resource):
    """
    Runs the request phase of every stage before C{inner} sees a request, and the
    response phase on whatever answers it (a stage or C{inner}).
    """

    def __init__(self, inner: IResource, stages: Sequence[tuple[Stage, bool]],
                 guard: IGuard | None = None) -> None:
        super().__init__()
        self.inner = inner
        self.stages = tuple(stages)
        self.guard = guard

    def getChildWithDefault(self, path: bytes, request: Request) -> IResource:
        _Capture(request, self.stages)
        try:
            outcome = self._requestPhase(request, 0, None, False)
        except Problem as problem:
            return _Answer(problemReply(problem))
        if isinstance(outcome, Deferred):
            return _Waiting(outcome, self.inner, path)
        if outcome is not None:
            return _Answer(outcome)
        return self.inner.getChildWithDefault(path, request)

    def render(self, request: Request) -> bytes | int:
        return self.inner.render(request)

    def _requestPhase(self, request: Request, start: int, viewer: IViewer | None,
                      identified: bool) -> Reply | None | Deferred[Reply | None]:
        for index in range(start, len(self.stages)):
            stage, afterAuth = self.stages[index]
            if not (stage.answers or stage.wantsUser):
                continue
            guarded = afterAuth and self.guard is not None
            if guarded and not identified:
                found = self.guard.viewer(request.getHeader(b"authorization"))  # type: ignore[union-attr]
                if isinstance(found, Deferred):
                    return found.addCallback(
                        lambda v, i=index: self._requestPhase(request, i, v, True))
                viewer, identified = found, True
            reply = stage.request(request, viewer.name if viewer is not None else None)
            if isinstance(reply, Deferred):
                return reply.addCallback(self._answered, request, index, viewer, identified, guarded)
            if reply is not None:
                return self._answered(reply, request, index, viewer, identified, guarded)
        return None

    def _answered(self, reply: Reply | None, request: Request, index: int, viewer: IViewer | None,
                  identified: bool, guarded: bool) -> Reply | None | Deferred[Reply | None]:
        """A stage's answer (checked against the host's rules when the stage comes after
        authentication), or the rest of the request phase when it had none."""
        if reply is None:
            return self._requestPhase(request, index + 1, viewer, identified)
        if guarded:
            assert viewer is not None
            self.guard.authorize(viewer, request.method.decode("ascii", "replace"),  # type: ignore[union-attr]
                                 requestPath(request), None, None)
        return reply


def problemReply(problem: Problem) -> Reply:
    body = (problem.message.replace("\n", " ") + "\n").encode("utf-8")
    return Reply(problem.status, body, headers=problem.headers + ((b"cache-control", b"no-store"),),
                 code=problem.code)


def requestPath(request: Request) -> str:
    """The request's decoded path, as Rusty Beam's plugins see it."""
    return unquote(request.path.split(b"?", 1)[0].decode("latin-1"), errors="replace")


class _Answer(Resource):
    """Renders a stage's L{Reply}."""

    isLeaf = True

    def __init__(self, reply: Reply) -> None:
        super().__init__()
        self.reply = reply

    def render(self, request: Request) -> bytes:
        writeReply(request, self.reply)
        return b"" if request.method == b"HEAD" else self.reply.body


def writeReply(request: Request, reply: Reply) -> None:
    request.setResponseCode(reply.status)
    if reply.code is not None:
        request.rustybeamProblem = reply.code  # type: ignore[attr-defined]
    if reply.contentType is not None:
        request.setHeader(b"content-type", reply.contentType)
    for name, value in reply.headers:
        request.setHeader(name, value)
    request.setHeader(b"content-length", str(len(reply.body)).encode())


class _Waiting(Resource):
    """The rest of a request phase that waits for the guard (a bcrypt check)."""

    isLeaf = True

    def __init__(self, outcome: Deferred[Reply | None], inner: IResource, path: bytes) -> None:
        super().__init__()
        self.outcome = outcome
        self.inner = inner
        self.path = path

    def render(self, request: Request) -> int:
        self.outcome.addCallback(self._continue, request)
        self.outcome.addErrback(self._failed, request)
        return NOT_DONE_YET

    def _continue(self, reply: Reply | None, request: Request) -> None:
        if reply is not None:
            body = _Answer(reply).render(request)
        else:
            request.postpath.insert(0, request.prepath.pop())
            resource = getChildForRequest(self.inner, request)
            body = resource.render(request)
            if body is NOT_DONE_YET:
                return
        if not request._disconnected:
            request.write(body)
            request.finish()

    def _failed(self, failure: Failure, request: Request) -> None:
        if failure.check(Problem):
            problem = failure.value
        else:
            log.failure("{method} {uri} failed in the plugin pipeline", failure,
                        method=request.method, uri=request.uri)
            problem = INTERNAL
        if not request._disconnected and not request.finished:
            request.write(_Answer(problemReply(problem)).render(request))
            request.finish()


class _Capture:
    """
    Holds back a response's body until the response is finished, then runs the
    response phase and sends it. Installed on the request itself, so it sees every
    writer (resources, static file producers, error pages). A WebSocket upgrade
    never finishes its HTTP request, so it passes untouched.
    """

    def __init__(self, request: Request, stages: Sequence[tuple[Stage, bool]]) -> None:
        self.request = request
        self.stages = stages
        self.chunks: list[bytes] = []
        self.finished = False
        request.write = self.write  # type: ignore[method-assign]
        request.finish = self.finish  # type: ignore[method-assign]
        request.registerProducer = self.registerProducer  # type: ignore[method-assign]

    def write(self, data: bytes) -> None:
        self.chunks.append(data)

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        if streaming:
            Request.registerProducer(self.request, producer, True)
            return
        self.request.unregisterProducer = lambda: None  # type: ignore[method-assign]
        while not self.finished and not self.request._disconnected:
            producer.resumeProducing()

    def finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        request = self.request
        for name in ("write", "finish", "registerProducer", "unregisterProducer"):
            request.__dict__.pop(name, None)
        if request._disconnected:
            return
        response = Response(request, b"".join(self.chunks))
        for stage, _ in self.stages:
            try:
                stage.response(request, response)
            except Exception:
                log.failure("response phase of {stage} failed", stage=type(stage).__name__)
        if response.changed and request.method != b"HEAD":
            request.setHeader(b"content-length", str(len(response.body)).encode())
        if response.body and request.method != b"HEAD":
            request.write(response.body)
        request.finish()


def addVary(request: Request, token: bytes) -> None:
    """Add C{token} to the response's one C{Vary} header."""
    values = [v.strip() for raw in request.responseHeaders.getRawHeaders(b"vary", [])
              for v in raw.split(b",") if v.strip()]
    if token.lower() not in (v.lower() for v in values):
        values.append(token)
    request.setHeader(b"vary", b", ".join(values))
