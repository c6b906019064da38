"""
The WebSocket side's own machinery without sockets, on a C{task.Clock}: the rate
limiter's token bucket and the protocol timers that replace txaio's batched timer.
"""

from __future__ import annotations

from twisted.internet.task import Clock

from rustybeam.websocket import ReactorTimer, WebSocketOptions, _Bucket


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
    ReactorTimer(clock).call_later(0.5, lambda: fired.append(clock.seconds()))
    clock.advance(0.49)
    assert fired == []
    clock.advance(0.01)
    assert fired == [0.5]


def test_cancelling_a_timer_that_already_fired_is_harmless() -> None:
    clock = Clock()
    call = ReactorTimer(clock).call_later(1, lambda: None)
    clock.advance(1)
    call.cancel()
    cancelled = ReactorTimer(clock).call_later(1, lambda: (_ for _ in ()).throw(AssertionError))
    cancelled.cancel()
    clock.advance(2)


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


def test_allowed_origin_matches_scheme_host_and_port() -> None:
    from rustybeam.notifier import DocumentChangeNotifier
    from rustybeam.websocket import DocumentWebSocketFactory

    options = WebSocketOptions(allowedOrigins=("https://good.example", "http://*.trusted.example"))
    factory = DocumentWebSocketFactory(None, DocumentChangeNotifier(), options, Clock())  # type: ignore[arg-type]
    assert factory.originAllowed("https://good.example")
    assert factory.originAllowed("HTTPS://Good.Example")
    assert factory.originAllowed("http://app.trusted.example")
    assert factory.originAllowed(None)
    assert not factory.originAllowed("https://good.example:8443")
    assert not factory.originAllowed("http://good.example")
    assert not factory.originAllowed("https://evil.example")
    assert not factory.originAllowed("http://app.trusted.example:8080")
