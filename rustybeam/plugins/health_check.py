"""
Rusty Beam's C{health-check} plugin, and the server's own C{/_rustybeam/health}.

The plugin answers C{GET} (and C{HEAD}) on three paths with JSON (C{status}, and with
C{detailed_checks} the C{checks} made and a C{timestamp}):

  - C{live_endpoint} (C{/live}): the server runs;
  - C{ready_endpoint} (C{/ready}): the host's root is a directory, and (with
    C{check_disk_space}) its file system has C{min_disk_space_mb} free, else
    C{degraded};
  - C{health_endpoint} (C{/health}): both.

C{healthy} and C{degraded} are 200, C{unhealthy} 503. While the server shuts down
every check is C{unhealthy}, so load balancers stop sending requests.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Callable

from twisted.application.service import Service
from twisted.web.resource import Resource
from twisted.web.server import Request

from rustybeam.config import PluginConfig
from rustybeam.plugins import PipelineContext, Reply, Stage, requestPath
from rustybeam.plugins._properties import flag, integer, text

JSON = b"application/json"
NO_CACHE = ((b"Cache-Control", b"no-cache, no-store, must-revalidate"),)


@dataclass(frozen=True)
class HealthCheckOptions:
    healthEndpoint: str = "/health"
    readyEndpoint: str = "/ready"
    liveEndpoint: str = "/live"
    detailedChecks: bool = True
    checkDiskSpace: bool = True
    minDiskSpaceMB: int = 100

    @classmethod
    def fromPlugin(cls, plugin: PluginConfig) -> HealthCheckOptions:
        d = cls()
        return cls(
            healthEndpoint=text(plugin, "health_endpoint", d.healthEndpoint) or d.healthEndpoint,
            readyEndpoint=text(plugin, "ready_endpoint", d.readyEndpoint) or d.readyEndpoint,
            liveEndpoint=text(plugin, "live_endpoint", d.liveEndpoint) or d.liveEndpoint,
            detailedChecks=flag(plugin, "detailed_checks", True),
            checkDiskSpace=flag(plugin, "check_disk_space", True),
            minDiskSpaceMB=integer(plugin, "min_disk_space_mb", d.minDiskSpaceMB) or 0,
        )


HEALTHY, DEGRADED, UNHEALTHY = "healthy", "degraded", "unhealthy"
_RANK = {HEALTHY: 0, DEGRADED: 1, UNHEALTHY: 2}


class HealthCheck(Stage):
    answers = True

    def __init__(self, options: HealthCheckOptions, root: str,
                 shuttingDown: Callable[[], bool]) -> None:
        self.options = options
        self.root = root
        self.shuttingDown = shuttingDown

    def request(self, request: Request, user: str | None) -> Reply | None:
        if request.method not in (b"GET", b"HEAD"):
            return None
        path, o = requestPath(request), self.options
        if path == o.liveEndpoint:
            status, checks = self.live()
        elif path == o.readyEndpoint:
            status, checks = self.ready()
        elif path == o.healthEndpoint:
            status, checks = self.health()
        else:
            return None
        return healthReply(status, checks if o.detailedChecks else None)

    def live(self) -> tuple[str, list[str]]:
        if self.shuttingDown():
            return UNHEALTHY, ["Server is shutting down"]
        return HEALTHY, ["Server is running"]

    def ready(self) -> tuple[str, list[str]]:
        status, checks = self.live()
        if os.path.isdir(self.root) and os.access(self.root, os.R_OK | os.X_OK):
            checks.append(f"Document root accessible: {self.root}")
        else:
            checks.append(f"Document root not accessible: {self.root}")
            status = UNHEALTHY
        if self.options.checkDiskSpace:
            try:
                stat = os.statvfs(self.root)
                available = stat.f_bavail * stat.f_frsize // (1024 * 1024)
            except OSError as e:
                checks.append(f"Could not check disk space: {e.strerror}")
                status = _worst(status, DEGRADED)
            else:
                if available < self.options.minDiskSpaceMB:
                    checks.append(f"Low disk space: {available} MB available")
                    status = _worst(status, DEGRADED)
                else:
                    checks.append(f"Disk space OK: {available} MB available")
        if checks[0] == "Server is running":
            checks.pop(0)
        return status, checks

    def health(self) -> tuple[str, list[str]]:
        live, liveChecks = self.live()
        ready, readyChecks = self.ready()
        checks = liveChecks + [c for c in readyChecks if c not in liveChecks]
        if self.options.detailedChecks:
            checks += [f"Timestamp: {int(time.time())}", "Server: rustybeam"]
        return _worst(live, ready), checks


def _worst(a: str, b: str) -> str:
    return a if _RANK[a] >= _RANK[b] else b


def healthReply(status: str, checks: list[str] | None) -> Reply:
    body: dict[str, object] = {"status": status}
    if checks is not None:
        body["checks"] = checks
        body["timestamp"] = int(time.time())
    return Reply(503 if status == UNHEALTHY else 200, json.dumps(body).encode(), JSON, NO_CACHE)


def stage(plugin: PluginConfig, context: PipelineContext) -> Stage:
    return HealthCheck(HealthCheckOptions.fromPlugin(plugin), context.host.hostRoot,
                       context.shuttingDown)


class Lifecycle(Service):
    """Knows when the server has begun to stop. Add it to the top service last, so
    that it is stopped (and says so) first."""

    stopping = False

    def stopService(self) -> None:
        self.stopping = True
        super().stopService()

    def shuttingDown(self) -> bool:
        return self.stopping


class ServerHealth(Resource):
    """C{/_rustybeam/health}: 200 C{{"status": "healthy"}}, or 503 C{unhealthy}
    while the server shuts down. Needs no credentials and reveals nothing else."""

    isLeaf = True

    def __init__(self, shuttingDown: Callable[[], bool]) -> None:
        super().__init__()
        self.shuttingDown = shuttingDown

    def render_GET(self, request: Request) -> bytes:
        reply = healthReply(UNHEALTHY if self.shuttingDown() else HEALTHY, None)
        request.setResponseCode(reply.status)
        request.setHeader(b"content-type", JSON)
        for name, value in reply.headers:
            request.setHeader(name, value)
        return reply.body

    render_HEAD = render_GET
