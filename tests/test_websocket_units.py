"""
The WebSocket side's own machinery without sockets, on a C{task.Clock}: the rate
limiter's token bucket and the timer wheel that replaces txaio's batched timer.
"""

from __future__ import annotations

from twisted.internet.task import Clock

from rustybeam.timers import TimerWheel
from rustybeam.websocket import WebSocketOptions, _Bucket


def test_bucket_allows_a_burst_then_the_sustained_rate() -> None:
    bucket = _Bucket(tokens=3.0, stamp=0.0)
    assert [bucket.take(0.0, rate=2.0, burst=3) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(0.5, rate=2.0, burst=3) is True
    assert bucket.take(0.5, rate=2.0, burst=3) is False
    assert bucket.strikes == 2


def test_bucket_never_saves_more_than_a_burst() -> None:
    bucket = _Bucket(tokens=0.0, stamp=0.0)
    taken = [bucket.take(1000.0, rate=2.0, burst=3) for _ in range(5)]
    assert taken == [True, True, True, False, False]


def test_bucket_forgives_strikes_once_it_has_filled_up_again() -> None:
    bucket = _Bucket(tokens=0.0, stamp=0.0)
    assert not bucket.take(0.0, rate=1.0, burst=2)
    assert bucket.strikes == 1
    assert bucket.take(10.0, rate=1.0, burst=2)
    assert bucket.strikes == 0


def test_protocol_timers_fire_exactly_on_time() -> None:
    clock = Clock()
    fired: list[float] = []
    TimerWheel(clock).call_later(0.5, lambda: fired.append(clock.seconds()))
    clock.advance(0.49)
    assert fired == []
    clock.advance(0.01)
    assert fired == [0.5]


def test_cancelling_a_timer_that_already_fired_is_harmless() -> None:
    clock = Clock()
    call = TimerWheel(clock).call_later(1, lambda: None)
    clock.advance(1)
    call.cancel()
    cancelled = TimerWheel(clock).call_later(1, lambda: (_ for _ in ()).throw(AssertionError))
    cancelled.cancel()
    clock.advance(2)


def test_timers_are_never_early_and_at_most_one_tick_late() -> None:
    clock = Clock()
    clock.advance(0.123)
    wheel = TimerWheel(clock, resolution=0.05)
    fired: list[float] = []
    wheel.call_later(2, lambda: fired.append(clock.seconds()))
    clock.advance(1.99)
    clock.advance(0.0069)
    assert fired == []
    clock.advance(0.05)
    assert len(fired) == 1 and 2.123 <= fired[0] <= 2.173 + 1e-9


def test_many_timers_share_one_reactor_call() -> None:
    clock = Clock()
    wheel = TimerWheel(clock)
    fired: list[int] = []
    timers = [wheel.call_later(10 + i * 0.001, fired.append, i) for i in range(1000)]
    assert len(clock.getDelayedCalls()) == 1
    for timer in timers[::2]:
        timer.cancel()
    assert len(wheel) == 500
    clock.advance(11)
    assert sorted(fired) == list(range(1, 1000, 2))
    assert clock.getDelayedCalls() == [] and len(wheel) == 0


def test_an_earlier_timer_rearms_the_wheel() -> None:
    clock = Clock()
    wheel = TimerWheel(clock)
    fired: list[str] = []
    wheel.call_later(30, fired.append, "ping")
    wheel.call_later(1, fired.append, "pong timeout")
    clock.advance(1)
    assert fired == ["pong timeout"]
    clock.advance(29)
    assert fired == ["pong timeout", "ping"]
    assert clock.getDelayedCalls() == []


def test_default_limits_are_safe() -> None:
    options = WebSocketOptions()
    assert 0 < options.maxMessageSize <= 1024 * 1024
    assert 0 < options.maxConnectionsPerAddress < options.maxConnections
    assert options.autoPingInterval > options.autoPingTimeout > 0
    assert options.allowedOrigins == ("*",)


def test_waiting_for_connections_to_close_gives_up_after_the_timeout() -> None:
    from rustybeam.notifier import DocumentChangeNotifier
    from rustybeam.websocket import DocumentWebSocketFactory

    clock = Clock()
    factory = DocumentWebSocketFactory(None, DocumentChangeNotifier(), clock=clock)  # type: ignore[arg-type]
    assert factory.whenClosed(5).called
    protocol = factory.connect("127.0.0.1", "/d.html", None)
    waiting = factory.whenClosed(5)
    assert not waiting.called
    factory.release(protocol)
    assert waiting.called
    factory.connect("127.0.0.1", "/d.html", None)
    stuck = factory.whenClosed(5)
    clock.advance(5)
    assert stuck.called
