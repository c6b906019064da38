"""
Virtual hosts from a Rusty Beam C{config.html}: one live document root per
C{HostConfig}, its plugin pipeline mapped to rustybeam's components, and a resource
that routes each request by its C{Host} header.

Pipeline mapping (by Rusty Beam plugin name):
  - C{selector-handler}: C{Range: selector=} requests (without it, Range is ignored);
  - C{file-handler}: whole-file requests (without it, they get 404);
  - C{websocket}: WebSocket upgrades (without it, upgrades are plain HTTP);
  - C{basic-auth} (C{realm}, C{authfile}, rustybeam's C{allow_anonymous}) and
    C{authorization} (C{authfile}): the host's L{AuthGuard}; when authorization
    comes before basic-auth in the pipeline, its rules see every request as
    anonymous;
  - C{access-log} (C{log_file}, C{format}): the host's access log;
  - every other plugin (cors, security-headers, compression, health-check, redirect,
    error-handler, rate-limit, directory, config-reload, html-prettifier): a stage of
    the host's L{rustybeam.plugins.Pipeline}, in front of the document service.

L{Hosts} can be given a new configuration while running (config-reload): hosts
that keep their name and root keep their store, notifier and open WebSockets.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

from typing import Any, Callable, Iterator

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred
from twisted.logger import Logger
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request

from rustybeam.accesslog import AccessLog
from rustybeam.changelog import StoreFactory, StoreProvider, inProcessStore
from rustybeam.config import PATH_PROPERTIES, HostConfig, PluginConfig, ServerConfig
from rustybeam.errors import UNKNOWN_HOST
from rustybeam.guard import AuthGuard, GuardOptions
from rustybeam.plugins import PipelineContext, pipelineFor
from rustybeam.plugins.access_log import accessLog
from rustybeam.plugins.authorization import authorizer
from rustybeam.plugins.basic_auth import basicAuth
from rustybeam.plugins.cors import trustedOrigins
from rustybeam.resource import renderProblem
from rustybeam.service import DocumentOptions, DocumentService
from rustybeam.websocket import WebSocketUpgrade


@dataclass(frozen=True)
class ServerContext:
    """What every host's pipeline shares: the config file, how to reload it, metrics."""

    configPath: str | None = None
    reload: Callable[[], object] | None = None
    metrics: Any = None
    shuttingDown: Callable[[], bool] = lambda: False


log = Logger()

def guardFor(host: HostConfig) -> AuthGuard | None:
    """The access control a host's pipeline asks for, or C{None} if none."""
    names = [p.name for p in host.plugins]
    basic, rules = host.plugin("basic-auth"), host.plugin("authorization")
    if basic is None and rules is None:
        return None
    login = basicAuth(basic, host) if basic is not None else None
    first = basic is None or rules is None or names.index("basic-auth") < names.index("authorization")
    return AuthGuard(GuardOptions(
        users=login.users if login is not None else None,
        realm=login.realm if login is not None else GuardOptions.realm,
        authorizer=authorizer(rules, host) if rules is not None else None,
        authenticateFirst=first,
        allowAnonymous=login is not None and login.allowAnonymous,
    ))


def privateFiles(host: HostConfig) -> frozenset[str]:
    """The files a host's plugins (nested ones included) read or write (users,
    rules, logs, redirect rules): never documents."""
    def walk(plugins: tuple[PluginConfig, ...]) -> Iterator[str]:
        for plugin in plugins:
            for key, value in plugin.properties.items():
                if key in PATH_PROPERTIES - {"root_dir"} and value:
                    yield os.path.realpath(value)
            yield from walk(plugin.nested)

    return frozenset(walk(host.plugins))


def optionsFor(host: HostConfig, base: DocumentOptions) -> DocumentOptions:
    """C{base} with the handlers that a host's pipeline enables."""
    return replace(
        base,
        store=replace(base.store, hidden=base.store.hidden | privateFiles(host)),
        http=replace(
            base.http,
            selectors=host.plugin("selector-handler") is not None,
            files=host.plugin("file-handler") is not None,
            trustedOrigins=base.http.trustedOrigins + corsTrusted(host),
        ),
        enableWebSocket=host.plugin("websocket") is not None,
    )


def corsTrusted(host: HostConfig) -> tuple[str, ...]:
    """The origins the host's C{cors} plugins trust with a browser's credentials."""
    return tuple(o for p in host.plugins if p.name == "cors" for o in trustedOrigins(p))


def accessLogFor(host: HostConfig) -> AccessLog | None:
    plugin = host.plugin("access-log")
    return accessLog(plugin, host) if plugin is not None else None


class VirtualHost(DocumentService):
    """A L{DocumentService} for one C{HostConfig}, with its access log and plugin
    pipeline."""

    def __init__(self, host: HostConfig, base: DocumentOptions, guard: AuthGuard | None,
                 reactor: object = None, server: ServerContext = ServerContext(),
                 makeStore: StoreFactory = inProcessStore) -> None:
        super().__init__(host.hostRoot, optionsFor(host, base), guard, reactor,  # type: ignore[arg-type]
                         makeStore)
        self.name = host.hostName
        self.server = server
        self.clock = reactor
        if server.metrics is not None:
            server.metrics.observe(host.hostName, self)
        self._configure(host, guard)

    def _configure(self, host: HostConfig, guard: AuthGuard | None) -> None:
        self.config = host
        self.accessLog = accessLogFor(host)
        context = PipelineContext(host, guard, self.clock, self.server.configPath,  # type: ignore[arg-type]
                                  self.server.reload, self.server.metrics,
                                  self.server.shuttingDown)
        self._front = pipelineFor(context, super().resource())

    def resource(self) -> IResource:  # type: ignore[override]
        return self._front

    def reconfigure(self, host: HostConfig, base: DocumentOptions, guard: AuthGuard | None) -> None:
        """Take a reloaded configuration of this host (same name and root): new
        rules, users, handlers and plugin settings; open WebSockets stay open and
        keep the viewer they were admitted with."""
        options = optionsFor(host, base)
        old = self.accessLog
        self.guard = self.documents.guard = guard
        self.documents.options = options.http
        self.documents.websocket = WebSocketUpgrade(self.factory) if options.enableWebSocket else None
        self.store.options = options.store
        self._configure(host, guard)
        if old is not None:
            old.close()

    def stopService(self):  # type: ignore[no-untyped-def]
        d = super().stopService()
        if self.accessLog is not None:
            d.addBoth(lambda result: (self.accessLog.close(), result)[1])  # type: ignore[union-attr]
        return d


class HostRouter(Resource):
    """
    Routes each request to the host its C{Host} header names (port and case
    ignored); a request for a host the configuration does not name gets 404.
    """

    def __init__(self, config: ServerConfig, hosts: dict[str, VirtualHost]) -> None:
        super().__init__()
        self.config = config
        self.hosts = hosts

    def getChildWithDefault(self, path: bytes, request: Request) -> Resource:
        host = self._host(request)
        if host is None:
            return _Problem()
        request.rustybeamAccessLog = host.accessLog  # type: ignore[attr-defined]
        request.rustybeamHost = host.name  # type: ignore[attr-defined]
        request.prepath.pop()
        request.postpath.insert(0, path)
        return host.resource()  # type: ignore[return-value]

    def render(self, request: Request) -> bytes:
        return _Problem().render(request)

    def _host(self, request: Request) -> VirtualHost | None:
        header = request.getHeader(b"host")
        config = self.config.host(header.decode("latin-1") if header else None)
        return self.hosts.get(config.hostName) if config is not None else None


class _Problem(Resource):
    isLeaf = True

    def render(self, request: Request) -> bytes:
        return renderProblem(request, UNKNOWN_HOST)


class Hosts(MultiService):
    """Every configured host as a service, and the router in front of them.

    @param stores: gives each host its store (a cluster's writer or edge gives its
        own, and hears when a reload ends one); the in-process store by default.
    """

    log = Logger()

    def __init__(self, config: ServerConfig, base: DocumentOptions,
                 guards: dict[str, AuthGuard | None] | None = None, reactor: object = None,
                 server: ServerContext = ServerContext(),
                 stores: StoreProvider | None = None) -> None:
        super().__init__()
        self.base = base
        self.reactor = reactor
        self.server = server
        self.stores = stores
        hosts = {h.hostName: self._add(h, guards) for h in config.hosts}
        self.router = HostRouter(config, hosts)

    def _add(self, host: HostConfig, guards: dict[str, AuthGuard | None] | None) -> VirtualHost:
        guard = guards[host.hostName] if guards is not None else guardFor(host)
        makeStore = self.stores.storeFor(host.hostName) if self.stores is not None else inProcessStore
        service = VirtualHost(host, self.base, guard, self.reactor, self.server, makeStore)
        service.setServiceParent(self)
        return service

    def reload(self, config: ServerConfig, guards: dict[str, AuthGuard | None]) -> Deferred[Any]:
        """
        Serve C{config} from now on. A host with the same name and root is
        reconfigured in place (its WebSockets stay open); a new host starts; a host
        that is gone, or whose root changed, stops (closing its WebSockets with 1001).
        """
        old = self.router.hosts
        hosts: dict[str, VirtualHost] = {}
        stopping: list[tuple[VirtualHost, Deferred[None]]] = []
        for host in config.hosts:
            current = old.get(host.hostName)
            if current is not None and current.config.hostRoot == host.hostRoot:
                current.reconfigure(host, self.base, guards[host.hostName])
                hosts[host.hostName] = current
                continue
            if current is not None:
                stopping.append((current, maybeDeferred(current.disownServiceParent)))
            hosts[host.hostName] = self._add(host, guards)
        for name, service in old.items():
            if name not in hosts:
                stopping.append((service, maybeDeferred(service.disownServiceParent)))
                if self.server.metrics is not None:
                    self.server.metrics.forget(name)
        self.router.config, self.router.hosts = config, hosts
        return DeferredList([d.addBoth(self._release, service) for service, d in stopping])

    def _release(self, result: object, service: VirtualHost) -> object:
        """Once a host that a reload ended has stopped, and no request reaches it,
        tell the store provider that its store is done."""
        if self.stores is not None:
            self.stores.release(service.config.hostName, service.store)
        return result


def hostsService(config: ServerConfig, base: DocumentOptions,
                 guards: dict[str, AuthGuard | None] | None = None, reactor: object = None,
                 server: ServerContext = ServerContext(),
                 stores: StoreProvider | None = None,
                 ) -> tuple[Hosts, HostRouter]:
    """
    Every configured host as a service, and the resource that routes to them.

    @param guards: each host's access control by host name, when already loaded
        (the command line loads them to validate the configuration).
    @param stores: gives each host its store (a cluster's), also for the hosts a
        reload adds, and hears when a reload ends one.
    """
    hosts = Hosts(config, base, guards, reactor, server, stores)
    return hosts, hosts.router
