"""
The command line: options of C{twistd rustybeam} and C{python -m rustybeam}, and
the service they build.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any


from twisted.application.service import IService, MultiService
from twisted.application.strports import service as endpointService
from twisted.python import usage

from twisted.web.resource import Resource

from rustybeam.accesslog import AccessLog, AccessLogOptions
from rustybeam.auth import loadAuthFile
from rustybeam.metrics import DEFAULT_HOST, Metrics
from rustybeam.config import ConfigError, ServerConfig, loadConfig
from rustybeam.changelog import inProcessStore
from rustybeam.documents import StoreOptions
from rustybeam.guard import AuthGuard
from rustybeam.hosts import HostRouter, ServerContext, guardFor, hostsService
from rustybeam.observe import MetricsEndpoint, ServerEndpoints
from rustybeam.plugins import checkPipeline
from rustybeam.plugins.config_reload import ConfigReloader
from rustybeam.plugins.health_check import Lifecycle, ServerHealth
from rustybeam.notifier import NotifierOptions
from rustybeam.resource import HTTPOptions
from rustybeam.service import DocumentOptions, DocumentService, StopInOrder
from rustybeam.site import DEFAULT_HEADER_TIMEOUT, DocumentSite, RequestDrain
from rustybeam.websocket import WebSocketOptions

if TYPE_CHECKING:
    from rustybeam.cluster import EdgeNode, WriterNode

_ws = WebSocketOptions()
_http = HTTPOptions()
_notifier = NotifierOptions()
_store = StoreOptions()


def _atLeast(kind: type, minimum: float) -> object:
    def coerce(value: str) -> object:
        parsed = kind(value)
        if parsed < minimum:
            raise ValueError(f"must be at least {minimum}: {value}")
        return parsed

    coerce.coerceDoc = f"At least {minimum}."  # type: ignore[attr-defined]
    return coerce


_count = _atLeast(int, 1)
_optional = _atLeast(int, 0)
_seconds = _atLeast(float, 0)
_rate = _atLeast(float, 0.001)


class Options(usage.Options):
    """rustybeam [options]: serve a directory of live HTML documents."""

    synopsis = "[options]"
    longdesc = (
        "Serves HTML documents whose parts are read and changed with "
        "'Range: selector=<css>' and watched live over WebSocket."
    )
    optParameters = [
        ["root", "r", None, "Document root directory (default: the bundled examples)."],
        ["port", "p", None, "Listening endpoint description (default: tcp:3000, or the config's bindAddress/bindPort)."],
        ["config", "c", None, "A Rusty Beam config.html (ServerConfig/HostConfig microdata)."],
        ["max-body", None, _http.maxBodyBytes, "Largest PUT/POST body in bytes (413 over it).", _count],
        ["cache-size", None, _store.cacheSize, "Parsed documents kept in memory.", _count],
        ["history", None, _notifier.historySize, "StreamItems kept per document for resume.", _optional],
        ["history-bytes", None, _notifier.historyBytes,
         "Bytes of document versions the resume history may keep, all documents together.", _optional],
        ["max-connections", None, _ws.maxConnections, "Open WebSockets in total (503 over it).", _count],
        ["max-connections-per-address", None, _ws.maxConnectionsPerAddress,
         "Open WebSockets per client address (503 over it).", _count],
        ["rate", None, _ws.messagesPerSecond, "Client messages per second per connection.", _rate],
        ["burst", None, _ws.messageBurst, "Client messages allowed back to back.", _count],
        ["rate-strikes", None, _ws.rateLimitStrikes,
         "Messages over the rate answered with errors before closing with 1008.", _optional],
        ["ping-interval", None, _ws.autoPingInterval, "Seconds between pings (0: off).", _seconds],
        ["ping-timeout", None, _ws.autoPingTimeout, "Seconds to wait for a pong.", _seconds],
        ["max-message-size", None, _ws.maxMessageSize, "Largest incoming message in bytes (1009).", _count],
        ["max-frame-size", None, _ws.maxFrameSize, "Largest incoming frame in bytes (1009).", _count],
        ["max-backlog", None, _ws.maxBacklogBytes,
         "Unsent bytes per connection before a slow reader is closed with 1008.", _count],
        ["max-subscriptions", None, _ws.maxSubscriptions, "Subscriptions per connection.", _count],
        ["header-timeout", None, DEFAULT_HEADER_TIMEOUT,
         "Seconds a connection may take to send a request's headers before it is closed (0: no limit).",
         _seconds],
        ["access-log", None, None, "Access log file ('-' for stdout)."],
        ["access-log-format", None, "common", "Access log format: common, combined or json."],
        ["metrics-authfile", None, None,
         "Users file (Credential items) whose users alone may read /_rustybeam/metrics."],
        ["redis", None, None, "Join a cluster on this Redis (redis://HOST:PORT/DB): as its writer "
         "with --root or --config, as an edge with --writer."],
        ["writer", None, None, "The cluster writer's base URL (http://HOST:PORT): run as an edge "
         "that keeps a replica and forwards writes (needs --redis, no --root)."],
        ["workers", None, 1, "Processes on this machine: the writer and N-1 edges sharing --port "
         "(needs --redis).", _count],
    ]
    optFlags = [
        ["no-compression", None, "Refuse permessage-deflate."],
        ["no-websocket", None, "Serve HTTP only."],
        ["no-fsync", None, "Do not fsync writes (faster, not crash-safe; for tests only)."],
        ["autobahn-testee", None, "Echo every message (for the Autobahn|Testsuite) with its limits raised."],
        ["metrics", None, "Serve Prometheus metrics at /_rustybeam/metrics."],
        ["reuse-port", None, "Listen with SO_REUSEPORT, sharing --port (tcp:PORT) with other nodes."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["allowed-origins"] = []

    def opt_allow_origin(self, pattern: str) -> None:
        """Allow WebSocket handshakes from this Origin (fnmatch pattern; repeatable; default: any)."""
        self["allowed-origins"].append(pattern)

    def postOptions(self) -> None:
        self.serverConfig: ServerConfig | None = None
        self.guards: dict[str, AuthGuard | None] = {}
        if self["autobahn-testee"] and self["config"] is not None:
            raise usage.UsageError("--autobahn-testee serves --root only, not a --config")
        if self["config"] is not None:
            try:
                self.serverConfig = loadConfig(self["config"])
            except ConfigError as e:
                raise usage.UsageError(f"bad --config: {e}") from None
            for host in self.serverConfig.hosts:
                try:
                    self.guards[host.hostName] = guardFor(host)
                    checkPipeline(host)
                except (ConfigError, OSError) as e:
                    raise usage.UsageError(f"bad --config: {self['config']}: {e}") from None
                if not os.path.isdir(host.hostRoot) and self["writer"] is None:
                    raise usage.UsageError(
                        f"bad --config: {self['config']}: HostConfig ({host.hostName}): "
                        f"property 'hostRoot': not a directory: {host.hostRoot}"
                    )
        if self["writer"] is not None:
            if self["redis"] is None:
                raise usage.UsageError("--writer needs --redis")
            if self["root"] is not None:
                raise usage.UsageError("an edge (--writer) has no --root: it copies the writer's")
            if self["workers"] != 1:
                raise usage.UsageError("--workers is given to the writer, not to an edge")
        if self["workers"] > 1 and self["redis"] is None:
            raise usage.UsageError("--workers needs --redis")
        if self["workers"] > 1 or self["reuse-port"]:
            from rustybeam.workers import parseTCP

            try:
                parseTCP(self["port"] or "tcp:3000")
            except ValueError as e:
                raise usage.UsageError(f"--workers and --reuse-port need a tcp:PORT --port: {e}")
        if self["redis"] is not None and not self["redis"].startswith("redis://"):
            raise usage.UsageError("--redis must be a redis://HOST:PORT/DB URL")
        if self["writer"] is None:
            if self["root"] is None and self["config"] is None:
                self["root"] = bundledExamples()
            if self["root"] is not None and not os.path.isdir(self["root"]):
                raise usage.UsageError(f"--root {self['root']!r} is not a directory")
        if self["access-log-format"] not in ("common", "combined", "json"):
            raise usage.UsageError("--access-log-format must be common, combined or json")
        config = self.serverConfig
        self.metricsEnabled = bool(self["metrics"] or (config is not None and config.metrics))
        self.metricsUsers = None
        authfile = self["metrics-authfile"] or (config.metricsAuthfile if config is not None else None)
        if authfile is not None:
            try:
                self.metricsUsers = loadAuthFile(authfile).users
            except (ConfigError, OSError) as e:
                raise usage.UsageError(f"bad metrics users file: {e}") from None
            if not self.metricsUsers:
                raise usage.UsageError(f"bad metrics users file: {authfile}: no users")

    def _privateFiles(self) -> frozenset[str]:
        """Files that are never documents: the access log, the configuration (which
        names every other private file, and which a write could turn into more
        access) and the metrics users."""
        config = getattr(self, "serverConfig", None)
        files = [self["access-log"] if self["access-log"] != "-" else None, self["config"],
                 self["metrics-authfile"], config.metricsAuthfile if config is not None else None]
        return frozenset(os.path.realpath(f) for f in files if f is not None)

    def documentOptions(self) -> DocumentOptions:
        websocket = WebSocketOptions(
            maxConnections=self["max-connections"],
            maxConnectionsPerAddress=self["max-connections-per-address"],
            messagesPerSecond=self["rate"],
            messageBurst=self["burst"],
            rateLimitStrikes=self["rate-strikes"],
            autoPingInterval=self["ping-interval"],
            autoPingTimeout=self["ping-timeout"],
            maxMessageSize=self["max-message-size"],
            maxFrameSize=self["max-frame-size"],
            compression=not self["no-compression"],
            allowedOrigins=tuple(self["allowed-origins"]) or ("*",),
            maxBacklogBytes=self["max-backlog"],
            maxSubscriptions=self["max-subscriptions"],
        )
        if self["autobahn-testee"]:
            from rustybeam.testee import testeeLimits

            websocket = testeeLimits(websocket)
        return DocumentOptions(
            store=StoreOptions(cacheSize=self["cache-size"], fsync=not self["no-fsync"],
                               hidden=self._privateFiles()),
            http=HTTPOptions(maxBodyBytes=self["max-body"],
                             trustedOrigins=tuple(self["allowed-origins"])),
            websocket=websocket,
            notifier=NotifierOptions(historySize=self["history"], historyBytes=self["history-bytes"]),
            enableWebSocket=not self["no-websocket"],
        )


def bundledExamples() -> str:
    """The bundled examples: beside the checkout, or as installed in
    C{<prefix>/share/rustybeam/examples}."""
    here = os.path.dirname(os.path.abspath(__file__))
    for candidate in (
        os.path.join(os.path.dirname(here), "examples"),
        os.path.join(sys.prefix, "share", "rustybeam", "examples"),
    ):
        if os.path.isfile(os.path.join(candidate, "index.html")):
            return candidate
    raise usage.UsageError("no --root given and the bundled examples are not installed")


SWITCH_INTERVAL = 0.001
"""Seconds a thread may hold the GIL while another waits for it (Python's default is
0.005). Writes run Python code (applying edits, converting parsed trees) in worker
threads; a shorter turn bounds how long the reactor thread, and so every delivery and
request, waits behind them."""


def makeService(options: Options) -> IService:
    """The whole server: document service(s) and the listening endpoint; in a
    cluster, its writer or edge side (and with --workers, the edge processes)."""
    import txaio
    from twisted.internet import reactor

    txaio.set_global_log_level("info")
    sys.setswitchinterval(SWITCH_INTERVAL)
    top = StopInOrder()
    lifecycle = Lifecycle()
    documentOptions = options.documentOptions()
    config = options.serverConfig
    metrics = Metrics() if options.metricsEnabled else None
    reloader = None
    if config is not None:
        reloader = ConfigReloader(os.path.abspath(options["config"]), config, reactor,
                                  checkRoots=options["writer"] is None)
    server = ServerContext(configPath=reloader.path if reloader is not None else None, metrics=metrics,
                           reload=reloader.reload if reloader is not None else None,
                           shuttingDown=lifecycle.shuttingDown)
    root: Resource
    node = _clusterNode(options, reactor)
    if node is not None:
        node.setServiceParent(top)
    if config is not None:
        hosts, root = hostsService(config, documentOptions, options.guards, reactor, server,
                                   node)
        hosts.setServiceParent(top)
        assert reloader is not None
        reloader.hosts = hosts
        reloader.setServiceParent(top)
        port = options["port"] or f"tcp:{config.bindPort}:interface={config.bindAddress}"
    else:
        documents = DocumentService(options["root"] or "", documentOptions, reactor=reactor,
                                    makeStore=node.storeFor("") if node else inProcessStore)
        if options["autobahn-testee"]:
            from rustybeam.testee import EchoProtocol

            documents.factory.protocol = EchoProtocol
        if metrics is not None:
            metrics.observe(DEFAULT_HOST, documents)
        documents.setServiceParent(top)
        root = documents.resource()
        port = options["port"] or "tcp:3000"
    accessLog = None
    if options["access-log"] is not None:
        accessLog = AccessLog(AccessLogOptions(options["access-log"], options["access-log-format"]))
    endpoints: dict[bytes, Resource] = {b"health": ServerHealth(lifecycle.shuttingDown)}
    if metrics is not None:
        endpoints[b"metrics"] = MetricsEndpoint(metrics, options.metricsUsers)
    root = _clusterRoot(node, root, hosts.router if config is not None else None)
    site = DocumentSite(ServerEndpoints(root, endpoints), documentOptions.http.maxBodyBytes,
                        accessLog, metrics, headerTimeout=options["header-timeout"])
    RequestDrain(site, reactor).setServiceParent(top)
    if options["workers"] > 1 or options["reuse-port"]:
        from rustybeam.workers import ReusePortService

        listening: IService = ReusePortService(port, site, reactor)
    else:
        listening = endpointService(port, site)
    if hasattr(node, "listenWhenReady"):
        listening = node.listenWhenReady(listening)  # type: ignore[union-attr]
    listening.setServiceParent(top)
    if options["workers"] > 1:
        workers = _workers(options, port, site, reactor)
        workers.setServiceParent(top)
        if reloader is not None:
            reloader.onReload.append(lambda: workers.signal("HUP"))
    if os.environ.get("RUSTYBEAM_WORKER"):
        from rustybeam.workers import watchParent

        watchParent()
    lifecycle.setServiceParent(top)
    return top



def _clusterNode(options: Options, reactor: object) -> WriterNode | EdgeNode | None:
    """The writer's or the edge's cluster side, or C{None} without --redis."""
    if options["redis"] is None:
        return None
    from rustybeam.cluster import EdgeNode, WriterNode
    from rustybeam.redislog import SECRET_ENVIRONMENT, RedisOptions

    notifier = NotifierOptions()
    redis = RedisOptions(url=options["redis"],
                         streamLength=max(1, options["history"] * notifier.historyDocuments),
                         streamBytes=options["history-bytes"])
    if options["writer"] is not None:
        return EdgeNode(redis, options["writer"], reactor)
    if options["workers"] > 1 and not os.environ.get(SECRET_ENVIRONMENT):
        import secrets

        os.environ[SECRET_ENVIRONMENT] = secrets.token_hex(16)
    return WriterNode(redis, reactor)  # type: ignore[arg-type]


def _clusterRoot(node: object, root: Resource, router: HostRouter | None) -> Resource:
    """C{root} in a writer's or an edge's tree; an edge finds the replica of a
    request's host in the configuration the router serves now (reloads included)."""
    from rustybeam.cluster import EdgeNode, WriterNode

    if isinstance(node, WriterNode):
        return node.wrap(root)
    if isinstance(node, EdgeNode):
        if router is None:
            return node.wrap(root, lambda request: node.replicas.get(""))

        def replicaFor(request: object) -> object:
            header = request.getHeader(b"host")  # type: ignore[attr-defined]
            assert router is not None
            host = router.config.host(header.decode("latin-1") if header else None)
            return node.replicas.get(host.hostName) if host is not None else None

        return node.wrap(root, replicaFor)  # type: ignore[arg-type]
    return root


def _workers(options: Options, port: str, site: DocumentSite, reactor: object) -> Any:
    """The edge processes of --workers, and the writer's private port they forward to."""
    from rustybeam.workers import WorkersService

    class Private(MultiService):
        """The writer's loopback port for its edges, listening before they start."""

        listening: object = None
        edges: WorkersService | None = None

        def startService(self) -> None:
            self.listening = reactor.listenTCP(0, site, interface="127.0.0.1")  # type: ignore[attr-defined]
            self.edges = WorkersService(options["workers"] - 1, edgeArguments(options, port),
                                        self.listening, reactor)
            self.edges.setServiceParent(self)
            super().startService()

        def signal(self, name: str) -> None:
            if self.edges is not None:
                self.edges.signal(name)

        def stopService(self):  # type: ignore[no-untyped-def]
            d = super().stopService()
            if self.listening is not None:
                self.listening.stopListening()  # type: ignore[attr-defined]
            return d

    return Private()


def edgeArguments(options: Options, port: str) -> list[str]:
    """The command line of an edge of --workers: the writer's options but --root."""
    skip = {"root", "port", "workers", "writer", "redis"}
    argv = ["--port", port, "--reuse-port", "--redis", options["redis"]]
    for long, _, default, *_ in Options.optParameters:
        if long not in skip and options[long] is not None and options[long] != default:
            argv += [f"--{long}", str(options[long])]
    for long, *_ in Options.optFlags:
        if long != "reuse-port" and options[long]:
            argv.append(f"--{long}")
    for pattern in options["allowed-origins"]:
        argv += ["--allow-origin", pattern]
    return argv



