"""
Rusty Beam's C{rate-limit} plugin: a token bucket per client for HTTP requests.

Each client (C{key_strategy}: C{ip}, the connection's address; C{user}, the
authenticated user, else the address; C{host}, the C{Host} header) has a bucket of
C{burst_capacity} tokens (default twice the rate) refilled at
C{requests_per_second}; each request takes one. A request that finds the bucket
empty gets 429 with C{Retry-After} (whole seconds until a token is back, at least 1)
and a JSON body. Other responses carry C{X-RateLimit-Limit}, C{-Remaining} and
C{-Reset} (seconds until the bucket is full again). Buckets idle for an hour are
dropped every C{cleanup_interval} seconds.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.web.server import Request

from rustybeam.config import PluginConfig
from rustybeam.plugins import PipelineContext, Reply, Response, Stage
from rustybeam.plugins._properties import number, text

IDLE_SECONDS = 3600.0
KEY_STRATEGIES = ("ip", "user", "host")


@dataclass(frozen=True)
class RateLimitOptions:
    requestsPerSecond: float = 10.0
    burstCapacity: float = 20.0
    keyStrategy: str = "ip"
    cleanupInterval: float = 300.0

    @classmethod
    def fromPlugin(cls, plugin: PluginConfig) -> RateLimitOptions:
        rate = number(plugin, "requests_per_second", 10.0)
        if rate <= 0:
            rate = 10.0
        strategy = (text(plugin, "key_strategy", "ip") or "ip").lower()
        return cls(
            requestsPerSecond=rate,
            burstCapacity=max(1.0, number(plugin, "burst_capacity", rate * 2)),
            keyStrategy=strategy if strategy in KEY_STRATEGIES else "ip",
            cleanupInterval=number(plugin, "cleanup_interval", 300.0),
        )


@dataclass
class Bucket:
    tokens: float
    last: float

    def refill(self, now: float, rate: float, capacity: float) -> None:
        self.tokens = min(capacity, self.tokens + max(0.0, now - self.last) * rate)
        self.last = now


class RateLimit(Stage):
    answers = True

    def __init__(self, options: RateLimitOptions, clock: IReactorTime,
                 metrics: Any = None, hostName: str = "") -> None:
        self.options = options
        self.clock = clock
        self.metrics = metrics
        self.hostName = hostName
        self.buckets: dict[str, Bucket] = {}
        self.lastCleanup = clock.seconds()
        self.wantsUser = options.keyStrategy == "user"

    def key(self, request: Request, user: str | None) -> str:
        address = getattr(request.getClientAddress(), "host", None) or "-"
        if self.options.keyStrategy == "user":
            return "user:" + user if user is not None else "ip:" + address
        if self.options.keyStrategy == "host":
            return "host:" + (request.getHeader(b"host") or b"unknown").decode("latin-1").lower()
        return "ip:" + address

    def take(self, key: str) -> float | None:
        """Take a token for C{key}: C{None} if there was one, else the seconds until
        there will be."""
        now, o = self.clock.seconds(), self.options
        self._cleanup(now)
        bucket = self.buckets.setdefault(key, Bucket(o.burstCapacity, now))
        bucket.refill(now, o.requestsPerSecond, o.burstCapacity)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        return (1.0 - bucket.tokens) / o.requestsPerSecond

    def _cleanup(self, now: float) -> None:
        if now - self.lastCleanup < self.options.cleanupInterval:
            return
        self.lastCleanup = now
        for key in [k for k, b in self.buckets.items() if now - b.last > IDLE_SECONDS]:
            del self.buckets[key]

    def request(self, request: Request, user: str | None) -> Reply | None:
        key = self.key(request, user)
        wait = self.take(key)
        if wait is None:
            request.rustybeamRateLimitKey = key  # type: ignore[attr-defined]
            return None
        if self.metrics is not None:
            self.metrics.rateLimitHits.labels(self.hostName, "http").inc()
        seconds = max(1, math.ceil(wait))
        body = json.dumps({"error": "Rate limit exceeded",
                           "message": "Too many requests. Please try again later.",
                           "retry_after_seconds": seconds})
        return Reply(429, body.encode(), b"application/json",
                     ((b"Retry-After", str(seconds).encode()),), code="rate-limited")

    def response(self, request: Request, response: Response) -> None:
        bucket = self.buckets.get(getattr(request, "rustybeamRateLimitKey", ""))
        if bucket is None:
            return
        o = self.options
        reset = math.ceil((o.burstCapacity - bucket.tokens) / o.requestsPerSecond)
        request.setHeader(b"X-RateLimit-Limit", str(int(o.burstCapacity)).encode())
        request.setHeader(b"X-RateLimit-Remaining", str(int(bucket.tokens)).encode())
        request.setHeader(b"X-RateLimit-Reset", str(reset).encode())


def stage(plugin: PluginConfig, context: PipelineContext) -> Stage:
    clock = context.clock
    if clock is None:
        from twisted.internet import reactor as clock  # type: ignore[assignment]
    return RateLimit(RateLimitOptions.fromPlugin(plugin), clock, context.metrics,  # type: ignore[arg-type]
                     context.host.hostName)
