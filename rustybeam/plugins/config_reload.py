"""
Rusty Beam's C{config-reload} plugin, and the reload it triggers.

The plugin answers requests for the configuration file itself (when the host's
root holds it, as in Rusty Beam's setups): C{PATCH} with an empty body gets 202
C{Configuration reload initiated} and reloads the configuration, C{OPTIONS} gets
200 with C{Allow} (PATCH included) and C{Accept-Ranges: selector}; anything else
passes on. C{SIGHUP} reloads too, with or without the plugin.

L{ConfigReloader} re-reads the file and, if it is valid, hands it to the running
hosts (L{rustybeam.hosts.Hosts.reload}): hosts, users, rules, handlers and plugin
settings take effect for new requests, and open WebSockets stay open. An invalid
file is logged and the running configuration kept. The listening address
(C{bindAddress}, C{bindPort}), C{--port}, the metrics settings and the command-line
options only change with a restart.
"""

from __future__ import annotations

import os
import signal
from typing import Any, Callable

from twisted.application.service import Service
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.logger import Logger
from twisted.web.server import Request

from rustybeam.config import ConfigError, PluginConfig, ServerConfig, loadConfig
from rustybeam.plugins import PipelineContext, Reply, Stage, checkPipeline, requestPath

ALLOWED = b"GET, PUT, DELETE, OPTIONS, PATCH, HEAD, POST"


class ConfigReload(Stage):
    answers = True

    def __init__(self, root: str, configPath: str | None, reload: Any, clock: Any) -> None:
        self.root = root
        self.configPath = os.path.realpath(configPath) if configPath else None
        self.reload = reload
        self.clock = clock

    def isConfigFile(self, request: Request) -> bool:
        if self.configPath is None:
            return False
        path = requestPath(request)
        return os.path.realpath(os.path.join(self.root, path.lstrip("/"))) == self.configPath

    def request(self, request: Request, user: str | None) -> Reply | None:
        if request.method not in (b"PATCH", b"OPTIONS") or not self.isConfigFile(request):
            return None
        if request.method == b"OPTIONS":
            return Reply(200, contentType=None,
                         headers=((b"Allow", ALLOWED), (b"Accept-Ranges", b"selector")))
        if int(request.getHeader(b"content-length") or b"0") != 0:
            return None
        if self.reload is None:
            return Reply(500, b"Failed to send reload signal: no configuration to reload",
                         b"text/plain")
        self.clock.callLater(0, self.reload)
        return Reply(202, b"Configuration reload initiated", b"text/plain")


def stage(plugin: PluginConfig, context: PipelineContext) -> Stage:
    clock = context.clock
    if clock is None:
        from twisted.internet import reactor as clock  # type: ignore[assignment]
    return ConfigReload(context.host.hostRoot, context.configPath, context.reload, clock)


class ConfigReloader(Service):
    """
    Reloads C{path} into C{hosts} on C{SIGHUP} and when asked (L{reload}); reloads
    never overlap, and requests that arrive during one are folded into one more.

    @param checkRoots: whether each host's root must be a directory (a cluster's
        edge has none: it copies the writer's documents).
    """

    log = Logger()

    def __init__(self, path: str, running: ServerConfig, reactor: Any,
                 checkRoots: bool = True) -> None:
        self.path = path
        self.checkRoots = checkRoots
        self.current = running
        self.reactor = reactor
        self.hosts: Any = None
        self._busy = False
        self._again = False
        self._previous: Any = None
        self.reloaded = 0
        """Reloads applied (for tests and logs)."""
        self.onReload: list[Callable[[], object]] = []
        """Called after each reload that applied (a C{--workers} writer signals its
        edge processes to reload too)."""

    def startService(self) -> None:
        super().startService()
        self._previous = signal.signal(
            signal.SIGHUP, lambda signum, frame: self.reactor.callFromThread(self.reload))

    def stopService(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGHUP, self._previous)
        super().stopService()

    def reload(self) -> Deferred[None] | None:
        if self._busy:
            self._again = True
            return None
        self._busy = True
        d = ensureDeferred(self._reload())
        d.addErrback(lambda failure: self.log.failure("configuration reload failed", failure))
        return d

    async def _reload(self) -> None:
        from rustybeam.hosts import guardFor

        try:
            while True:
                self._again = False
                try:
                    config = loadConfig(self.path)
                    guards = {h.hostName: guardFor(h) for h in config.hosts}
                    for h in config.hosts:
                        checkPipeline(h)
                        if self.checkRoots and not os.path.isdir(h.hostRoot):
                            raise ConfigError(f"HostConfig ({h.hostName}): property 'hostRoot': "
                                              f"not a directory: {h.hostRoot}")
                except (ConfigError, OSError) as e:
                    self.log.error("configuration reload failed, keeping the running "
                                   "configuration: {path}: {error}", path=self.path, error=e)
                else:
                    self._warnRestart(config)
                    await self.hosts.reload(config, guards)
                    self.current = config
                    self.reloaded += 1
                    self.log.info("configuration reloaded from {path} ({count} hosts)",
                                  path=self.path, count=len(config.hosts))
                    for hook in self.onReload:
                        hook()
                if not self._again:
                    break
        finally:
            self._busy = False

    def _warnRestart(self, config: ServerConfig) -> None:
        old = self.current
        if (old.bindAddress, old.bindPort) != (config.bindAddress, config.bindPort):
            self.log.warn("bindAddress/bindPort changed in {path}; the server keeps listening "
                          "where it does until restarted", path=self.path)
        if (old.metrics, old.metricsAuthfile) != (config.metrics, config.metricsAuthfile):
            self.log.warn("metrics settings changed in {path}; they take effect on restart",
                          path=self.path)
