"""
One timer wheel for the protocol timers of every connection.

Autobahn asks its factory's C{_batched_timer} for each connection's timers (opening and
closing handshake, ping, pong). One reactor C{DelayedCall} per connection costs memory
(a DelayedCall is several hundred bytes) and a heap entry each; here all timers share
one reactor call, and a timer is a small slotted object in a per-tick bucket. Deadlines
are rounded I{up} to the wheel's resolution: a timer never fires early (txaio's batched
timer rounds down, so that a 2 s pong timeout could fire after 1 s), and at most one
resolution late.
"""

from __future__ import annotations

import heapq
import math
from typing import Any, Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

DEFAULT_RESOLUTION = 0.05
"""Seconds between the ticks that deadlines are rounded up to."""
_EPSILON = 1e-6


class Timer:
    """One pending call on a L{TimerWheel}; C{cancel()} is harmless once it has run."""

    __slots__ = ("_wheel", "_tick", "_func", "_args", "_kwargs")

    def __init__(self, wheel: TimerWheel, tick: int, func: Callable[..., Any],
                 args: tuple[Any, ...], kwargs: dict[str, Any] | None) -> None:
        self._wheel = wheel
        self._tick = tick
        self._func = func
        self._args = args
        self._kwargs = kwargs

    def active(self) -> bool:
        return self._func is not None

    def cancel(self) -> None:
        if self._func is not None:
            self._wheel._remove(self)

    def _run(self) -> None:
        func, args, kwargs = self._func, self._args, self._kwargs
        self._func = self._args = self._kwargs = None  # type: ignore[assignment]
        if func is not None:
            func(*args, **(kwargs or {}))


class TimerWheel:
    """
    Calls functions later, on one reactor call for all of them.

    @param clock: the reactor (a C{task.Clock} in tests).
    @param resolution: seconds per tick.
    """

    log = Logger()

    def __init__(self, clock: IReactorTime, resolution: float = DEFAULT_RESOLUTION) -> None:
        self.clock = clock
        self.resolution = resolution
        self._buckets: dict[int, dict[Timer, None]] = {}
        self._ticks: list[int] = []
        self._call: IDelayedCall | None = None
        self._armedFor: int | None = None

    def __len__(self) -> int:
        return sum(len(bucket) for bucket in self._buckets.values())

    def call_later(self, delay: float, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Timer:
        """Call C{func(*args, **kwargs)} no sooner than C{delay} seconds from now."""
        tick = math.ceil((self.clock.seconds() + max(0.0, delay)) / self.resolution - _EPSILON)
        timer = Timer(self, tick, func, args, kwargs or None)
        bucket = self._buckets.get(tick)
        if bucket is None:
            bucket = self._buckets[tick] = {}
            heapq.heappush(self._ticks, tick)
        bucket[timer] = None
        if self._armedFor is None or tick < self._armedFor:
            self._arm(tick)
        return timer

    callLater = call_later

    def _remove(self, timer: Timer) -> None:
        bucket = self._buckets.get(timer._tick)
        timer._func = timer._args = timer._kwargs = None  # type: ignore[assignment]
        if bucket is not None:
            bucket.pop(timer, None)
            if not bucket:
                del self._buckets[timer._tick]  # its tick stays in the heap until passed

    def _arm(self, tick: int) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._armedFor = tick
        self._call = self.clock.callLater(
            max(0.0, tick * self.resolution - self.clock.seconds()), self._fire)

    def _fire(self) -> None:
        self._call = self._armedFor = None
        now = self.clock.seconds() / self.resolution + _EPSILON
        while self._ticks and self._ticks[0] <= now:
            tick = heapq.heappop(self._ticks)
            for timer in list(self._buckets.pop(tick, ())):
                try:
                    timer._run()
                except Exception:
                    self.log.failure("a protocol timer failed")
        while self._ticks and self._ticks[0] not in self._buckets:
            heapq.heappop(self._ticks)
        if self._ticks:
            self._arm(self._ticks[0])
