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
  - C{access-log} (C{log_file}, C{format}): the host's access log.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Callable

from twisted.application.service import MultiService
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Request

from rustybeam.accesslog import AccessLog, AccessLogOptions
from rustybeam.changelog import StoreFactory, inProcessStore
from rustybeam.auth import AuthFile, Authorizer, loadAuthFile
from rustybeam.config import PATH_PROPERTIES, ConfigError, HostConfig, ServerConfig
from rustybeam.errors import UNKNOWN_HOST
from rustybeam.guard import AuthGuard, GuardOptions
from rustybeam.resource import renderProblem
from rustybeam.service import DocumentOptions, DocumentService

log = Logger()

ALLOW_ANONYMOUS = "allow_anonymous"
"""rustybeam's basic-auth property: let requests without credentials reach the rules."""


def guardFor(host: HostConfig) -> AuthGuard | None:
    """The access control a host's pipeline asks for, or C{None} if none."""
    names = [p.name for p in host.plugins]
    basic, authorization = host.plugin("basic-auth"), host.plugin("authorization")
    if basic is None and authorization is None:
        return None
    users = None
    realm = GuardOptions.realm
    anonymous = False
    if basic is not None:
        users = _load(_required(basic.get("authfile"), host, "basic-auth", "authfile")).users
        realm = basic.get("realm") or realm
        anonymous = _flag(basic.get(ALLOW_ANONYMOUS), host, "basic-auth", ALLOW_ANONYMOUS)
    authorizer = None
    if authorization is not None:
        authfile = _required(authorization.get("authfile"), host, "authorization", "authfile")
        authorizer = Authorizer(_load(authfile).rules)
    first = basic is None or authorization is None or (
        names.index("basic-auth") < names.index("authorization")
    )
    return AuthGuard(GuardOptions(users, realm, authorizer, authenticateFirst=first,
                                  allowAnonymous=anonymous))


def _load(path: str) -> AuthFile:
    """A users/rules file, with a warning for each rule left out."""
    loaded = loadAuthFile(path)
    for reason in loaded.skipped:
        log.warn("{reason}", reason=reason)
    return loaded


def _flag(value: str | None, host: HostConfig, plugin: str, prop: str) -> bool:
    """A boolean plugin property: absent or empty is off."""
    if value is None or not value.strip():
        return False
    word = value.strip().lower()
    if word in ("true", "yes", "on", "1"):
        return True
    if word in ("false", "no", "off", "0"):
        return False
    raise ConfigError(f"HostConfig ({host.hostName}): plugin {plugin}: property {prop!r} "
                      f"must be true or false, not {value!r}")


def privateFiles(host: HostConfig) -> frozenset[str]:
    """The files a host's plugins read or write (users, rules, logs): never documents."""
    return frozenset(
        os.path.realpath(value)
        for plugin in host.plugins
        for key, value in plugin.properties.items()
        if key in PATH_PROPERTIES - {"root_dir"} and value
    )


def optionsFor(host: HostConfig, base: DocumentOptions) -> DocumentOptions:
    """C{base} with the handlers that a host's pipeline enables."""
    return replace(
        base,
        store=replace(base.store, hidden=base.store.hidden | privateFiles(host)),
        http=replace(
            base.http,
            selectors=host.plugin("selector-handler") is not None,
            files=host.plugin("file-handler") is not None,
        ),
        enableWebSocket=host.plugin("websocket") is not None,
    )


def accessLogFor(host: HostConfig) -> AccessLog | None:
    plugin = host.plugin("access-log")
    if plugin is None:
        return None
    try:
        return AccessLog(AccessLogOptions.fromProperties(plugin.properties))
    except OSError as e:
        raise ConfigError(f"HostConfig ({host.hostName}): access-log: property 'log_file': {e}") from None


def _required(value: str | None, host: HostConfig, plugin: str, prop: str) -> str:
    if not value:
        raise ConfigError(f"HostConfig ({host.hostName}): plugin {plugin}: missing property {prop!r}")
    return value


class VirtualHost(DocumentService):
    """A L{DocumentService} for one C{HostConfig}, with its access log."""

    def __init__(self, host: HostConfig, base: DocumentOptions, guard: AuthGuard | None,
                 reactor: object = None, makeStore: StoreFactory = inProcessStore) -> None:
        super().__init__(host.hostRoot, optionsFor(host, base), guard, reactor,  # type: ignore[arg-type]
                         makeStore)
        self.config = host
        self.name = host.hostName
        self.accessLog = accessLogFor(host)

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
        request.prepath.pop()
        request.postpath.insert(0, path)
        return host.resource()

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


def hostsService(config: ServerConfig, base: DocumentOptions,
                 guards: dict[str, AuthGuard | None] | None = None, reactor: object = None,
                 storeFor: Callable[[str], StoreFactory] | None = None,
                 ) -> tuple[MultiService, HostRouter]:
    """
    Every configured host as a service, and the resource that routes to them.

    @param guards: each host's access control by host name, when already loaded
        (the command line loads them to validate the configuration).
    @param storeFor: the store factory of each host by host name (a cluster's).
    """
    parent = MultiService()
    hosts: dict[str, VirtualHost] = {}
    for host in config.hosts:
        guard = guards[host.hostName] if guards is not None else guardFor(host)
        makeStore = storeFor(host.hostName) if storeFor is not None else inProcessStore
        service = VirtualHost(host, base, guard, reactor, makeStore)
        service.setServiceParent(parent)
        hosts[host.hostName] = service
    return parent, HostRouter(config, hosts)
