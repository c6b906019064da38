"""
Prometheus metrics: every metric rustybeam exports, defined once, in a registry of
the server's own (so embedding applications and tests can have several).

The document layers know nothing of metrics: L{Metrics.observe} watches a
L{DocumentService} from outside. It wraps the store's write methods (writes by
method and result, and their latency), the store's change sink (the time from the
start of a write to its StreamItems being handed to every watching connection), and
the WebSocket factory's protocol (slow-consumer closes, WebSocket messages refused
by the rate limit); open connections, subscriptions, StreamItems delivered and the
resume history are read from the service when scraped.

    rustybeam_websockets_open{host}                     gauge
    rustybeam_subscriptions{host}                       gauge
    rustybeam_history_items{host}, rustybeam_history_bytes{host}   gauges
    rustybeam_streamitems_delivered_total{host}         counter
    rustybeam_writes_total{host,method,result}          counter
    rustybeam_write_duration_seconds{host,method}       histogram
    rustybeam_put_to_delivery_seconds{host}             histogram
    rustybeam_slow_consumer_closes_total{host}          counter
    rustybeam_rate_limit_hits_total{host,kind}          counter (kind: http, websocket)
    rustybeam_refused_handshakes_total{host,reason}     counter
"""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING, Any, Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from twisted.internet.defer import Deferred

from rustybeam.errors import Problem

if TYPE_CHECKING:
    from rustybeam.service import DocumentService

DEFAULT_HOST = "default"
"""The C{host} label of a C{--root} server."""

WRITE_METHODS = {
    "putDocument": "PUT", "replace": "PUT", "append": "POST", "appendDocument": "POST",
    "remove": "DELETE", "deleteDocument": "DELETE",
}
"""Store methods that write, by the HTTP method they serve."""

LATENCY_BUCKETS = (.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1.0, 2.5, 5.0, 10.0)

SLOW_CONSUMER_REASON = "client is reading too slowly"


class Metrics:
    """The metrics of one server."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock = clock
        self.registry = CollectorRegistry()
        r = self.registry
        self.writes = Counter("rustybeam_writes", "Writes by HTTP method and result "
                              "(ok, or the error code)", ["host", "method", "result"], registry=r)
        self.writeSeconds = Histogram("rustybeam_write_duration_seconds",
                                      "Time from accepting a write to its answer (durable on disk)",
                                      ["host", "method"], buckets=LATENCY_BUCKETS, registry=r)
        self.deliverySeconds = Histogram("rustybeam_put_to_delivery_seconds",
                                         "Time from accepting a write to its StreamItems being sent "
                                         "to every watching connection", ["host"],
                                         buckets=LATENCY_BUCKETS, registry=r)
        self.slowConsumerCloses = Counter("rustybeam_slow_consumer_closes",
                                          "WebSockets closed because the client read too slowly",
                                          ["host"], registry=r)
        self.rateLimitHits = Counter(
            "rustybeam_rate_limit_hits", "Requests (http, the rate-limit plugin) and WebSocket "
            "messages (websocket) refused for exceeding a rate", ["host", "kind"], registry=r)
        self.refusedHandshakes = Counter("rustybeam_refused_handshakes",
                                         "WebSocket opening handshakes refused, by reason (the "
                                         "error code)", ["host", "reason"], registry=r)
        self.services: dict[str, DocumentService] = {}
        self._collector = _ServiceCollector(self.services)
        self.registry.register(self._collector)

    def snapshot(self) -> None:
        """Read the services' own counts now (in the reactor thread) for the next
        collection, which C{prometheus_client}'s resource runs in a worker thread."""
        self._collector.snapshot()

    def observe(self, host: str, service: DocumentService) -> None:
        """Count what C{service} does, labelled C{host}."""
        self.services[host] = service
        pending: dict[str, deque[float]] = {}
        for name, method in WRITE_METHODS.items():
            if hasattr(service.store, name):
                setattr(service.store, name,
                        self._timedWrite(getattr(service.store, name), host, method, pending))
        service.store.onChanges = self._timedSink(service.store.onChanges, service, host, pending)
        service.factory.protocol = self._meteredProtocol(service.factory.protocol, host)

    def forget(self, host: str) -> None:
        self.services.pop(host, None)

    def refused(self, host: str, reason: str) -> None:
        self.refusedHandshakes.labels(host, reason).inc()

    def _timedWrite(self, write: Callable[..., Deferred[Any]], host: str, method: str,
                    pending: dict[str, deque[float]]) -> Callable[..., Deferred[Any]]:
        def timed(doc: Any, *args: Any, **kwargs: Any) -> Deferred[Any]:
            start = self.clock()
            queue = pending.setdefault(doc.url, deque())
            queue.append(start)

            def done(result: object) -> object:
                if start in queue:
                    queue.remove(start)
                if not queue:
                    pending.pop(doc.url, None)
                problem = getattr(result, "value", None)
                outcome = "ok" if not hasattr(result, "value") else (
                    problem.code if isinstance(problem, Problem) else "error")
                self.writes.labels(host, method, outcome).inc()
                self.writeSeconds.labels(host, method).observe(self.clock() - start)
                return result

            d = write(doc, *args, **kwargs)
            return d.addBoth(done)

        return timed

    def _timedSink(self, sink: Callable[[Any], None], service: DocumentService, host: str,
                   pending: dict[str, deque[float]]) -> Callable[[Any], None]:
        def changed(changes: Any) -> None:
            starts = []
            for change in changes:
                queue = pending.get(change.url)
                if queue:
                    starts.append(queue.popleft())
            before = service.notifier.delivered
            sink(changes)
            if service.notifier.delivered > before:
                now = self.clock()
                for start in starts:
                    self.deliverySeconds.labels(host).observe(now - start)

        return changed

    def _meteredProtocol(self, protocol: type, host: str) -> type:
        metrics = self

        class Metered(protocol):  # type: ignore[misc, valid-type]
            def closeWith(self, code: int, reason: str) -> None:
                if reason == SLOW_CONSUMER_REASON and self.state == self.STATE_OPEN:
                    metrics.slowConsumerCloses.labels(host).inc()
                super().closeWith(code, reason)

            def _reply(self, message: dict[str, Any], isBinary: bool = False) -> None:
                if message.get("error") == "rate-limited":
                    metrics.rateLimitHits.labels(host, "websocket").inc()
                super()._reply(message, isBinary)

        Metered.__name__ = Metered.__qualname__ = "Metered" + protocol.__name__
        return Metered


class _ServiceCollector(Collector):
    """Reports what the services already keep count of, as last snapshotted."""

    def __init__(self, services: dict[str, DocumentService]) -> None:
        self.services = services
        self.rows: list[tuple[str, int, int, int, int, int]] = []

    def snapshot(self) -> None:
        rows = []
        for host, service in self.services.items():
            notifier, factory = service.notifier, service.factory
            items, size = notifier.historySize()
            rows.append((host, len(factory.open),
                         sum(notifier.subscriptionCount(p) for p in factory.open),
                         notifier.delivered, items, size))
        self.rows = rows

    def collect(self) -> Iterator[Any]:
        families = (
            GaugeMetricFamily("rustybeam_websockets_open", "Open WebSocket connections",
                              labels=["host"]),
            GaugeMetricFamily("rustybeam_subscriptions",
                              "Subscriptions of the open WebSocket connections", labels=["host"]),
            CounterMetricFamily("rustybeam_streamitems_delivered",
                                "StreamItems handed to connections", labels=["host"]),
            GaugeMetricFamily("rustybeam_history_items", "Changes kept for resuming clients",
                              labels=["host"]),
            GaugeMetricFamily("rustybeam_history_bytes",
                              "Bytes of document versions kept for resuming clients",
                              labels=["host"]),
        )
        for host, *values in self.rows:
            for family, value in zip(families, values):
                family.add_metric([host], value)
        yield from families
