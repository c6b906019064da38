"""
The DocumentChangeNotifier without a network: indexing, selector evaluation once per
change, one frame shared by every recipient, history for resume, shutdown.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field, replace
from unittest.mock import patch

import pytest

from rustybeam import frames, markup, selectors
from rustybeam.changes import Change
from rustybeam.notifier import Delivery, DocumentChangeNotifier, NotifierOptions, touches

DOC = markup.parseDocument(
    "<html><body><h1 id=t>T</h1><ul id=l><li id=a>A</li><li id=b>B</li></ul></body></html>"
)


@dataclass(eq=False)
class FakeWatcher:
    viewer: object = None
    received: list[Delivery] = field(default_factory=list)
    frames: list[object] = field(default_factory=list)
    gone: bool = False
    deflateBits: int = 0

    def deliver(self, delivery: Delivery) -> None:
        self.received.append(delivery)
        self.frames.append(delivery.frame(self.viewer, deflateBits=self.deflateBits))

    def goAway(self) -> None:
        self.gone = True


class CountingSelector:
    """A selector that counts its evaluations."""

    def __init__(self, css: str) -> None:
        self.inner = selectors.compile(css)
        self.css = css
        self.calls = 0

    def select(self, root):  # type: ignore[no-untyped-def]
        self.calls += 1
        return self.inner.select(root)


def change(selector: str = "#a", url: str = "/d.html", sequence: int = 1) -> Change:
    before = DOC
    after = markup.copyTree(DOC)
    removed = tuple(selectors.compile(selector).select(before.getroot()))
    inserted = tuple(selectors.compile(selector).select(after.getroot()))
    return Change("PUT", url, selector, sequence, "<li id=a>A2</li>", before, after, removed,
                  inserted, tuple(e.getparent() for e in inserted))


def test_a_change_reaches_only_the_watchers_of_its_document() -> None:
    notifier = DocumentChangeNotifier()
    mine, other = FakeWatcher(), FakeWatcher()
    notifier.subscribe(mine, "/d.html", None)
    notifier.subscribe(other, "/e.html", None)
    notifier.changed(change())
    assert (len(mine.received), len(other.received)) == (1, 0)


def test_each_distinct_selector_is_evaluated_once_per_change() -> None:
    notifier = DocumentChangeNotifier()
    selector = CountingSelector("#l")
    watchers = [FakeWatcher() for _ in range(50)]
    for w in watchers:
        notifier.subscribe(w, "/d.html", selector)  # type: ignore[arg-type]
    notifier.changed(change())
    assert all(len(w.received) == 1 for w in watchers)
    assert 1 <= selector.calls <= 2  # on the tree before the change and, if needed, after


def test_every_recipient_gets_the_same_prepared_frame() -> None:
    notifier = DocumentChangeNotifier()
    watchers = [FakeWatcher() for _ in range(10)]
    for w in watchers:
        notifier.subscribe(w, "/d.html", None)
    notifier.changed(change())
    assert len({id(w.frames[0]) for w in watchers}) == 1


def unframe(frame: bytes) -> bytes:
    """The payload of one unmasked server frame under 64 KiB."""
    return frame[2:] if frame[1] < 126 else frame[4:]


def test_deflate_recipients_share_one_compressed_frame_per_window_size() -> None:
    notifier = DocumentChangeNotifier()
    plain = [FakeWatcher() for _ in range(3)]
    wide = [FakeWatcher(deflateBits=15) for _ in range(3)]
    narrow = [FakeWatcher(deflateBits=10) for _ in range(3)]
    for w in plain + wide + narrow:
        notifier.subscribe(w, "/d.html", None)
    with patch.object(frames, "deflate", side_effect=frames.deflate) as deflate:
        notifier.changed(change())
    assert deflate.call_count == 2
    assert len({id(w.frames[0]) for w in wide}) == 1
    assert len({id(w.frames[0]) for w in narrow}) == 1
    text = unframe(plain[0].frames[0])
    for w in (wide[0], narrow[0]):
        frame = w.frames[0]
        assert frame[0] == 0xC1  # FIN, RSV1 (compressed), text
        inflater = zlib.decompressobj(-15)
        assert inflater.decompress(unframe(frame) + b"\x00\x00\xff\xff") == text


def test_a_watcher_gets_a_change_once_however_many_subscriptions_match() -> None:
    notifier = DocumentChangeNotifier()
    w = FakeWatcher()
    notifier.subscribe(w, "/d.html", None)
    notifier.subscribe(w, "/d.html", selectors.compile("li"))
    notifier.subscribe(w, "/d.html", selectors.compile("#l"))
    notifier.changed(change())
    assert len(w.received) == 1


@pytest.mark.parametrize("css,expected", [
    ("#a", True),          # the changed element itself
    ("#l", True),          # contains it
    ("body", True),        # contains it, further up
    ("#t", False),         # elsewhere
    ("#b", False),         # a sibling
])
def test_selector_subscription_receives_only_intersecting_changes(css: str, expected: bool) -> None:
    assert touches(selectors.compile(css), change("#a")) is expected


def test_an_element_inside_the_changed_one_is_touched() -> None:
    assert touches(selectors.compile("#a"), change("#l"))


def test_history_replays_what_was_missed_and_knows_when_it_cannot() -> None:
    notifier = DocumentChangeNotifier(NotifierOptions(historySize=3))
    for n in range(1, 6):
        notifier.changed(change(sequence=n))
    assert [c.sequence for c in notifier.missed("/d.html", 3, 5)] == [4, 5]
    assert notifier.missed("/d.html", 5, 5) == []
    assert notifier.missed("/d.html", 1, 5) is None
    assert notifier.missed("/d.html", 9, 5) is None


def test_history_is_bounded_in_documents() -> None:
    notifier = DocumentChangeNotifier(NotifierOptions(historySize=3, historyDocuments=2))
    for url in ("/a.html", "/b.html", "/c.html"):
        notifier.changed(change(url=url))
    assert notifier.missed("/a.html", 0, 1) is None
    assert [c.url for c in notifier.missed("/c.html", 0, 1)] == ["/c.html"]


def test_history_is_bounded_in_bytes_dropping_the_least_recently_changed_first() -> None:
    notifier = DocumentChangeNotifier(NotifierOptions(historyBytes=1000))
    big = lambda url, n: replace(change(url=url, sequence=n), size=400)  # noqa: E731
    notifier.changed(big("/a.html", 1))
    notifier.changed(big("/b.html", 1))
    notifier.changed(big("/b.html", 2))
    assert notifier.missed("/a.html", 0, 1) is None
    assert [c.sequence for c in notifier.missed("/b.html", 0, 2)] == [1, 2]
    notifier.changed(big("/b.html", 3))
    assert notifier.missed("/b.html", 0, 3) is None
    assert [c.sequence for c in notifier.missed("/b.html", 1, 3)] == [2, 3]


def test_replay_sends_what_a_subscription_missed_or_says_it_cannot() -> None:
    notifier = DocumentChangeNotifier()
    for n in range(1, 4):
        notifier.changed(change("#a" if n != 2 else "#t", sequence=n))
    w = FakeWatcher()
    assert notifier.replay(w, "/d.html", selectors.compile("#l"), 0, 3)
    assert [d.change.sequence for d in w.received] == [1, 3]
    assert not notifier.replay(w, "/d.html", None, 7, 3)


def test_forgotten_watchers_leave_no_index_behind() -> None:
    notifier = DocumentChangeNotifier()
    w = FakeWatcher()
    notifier.subscribe(w, "/d.html", selectors.compile("#a"))
    notifier.forget(w)
    assert notifier._topics == {} and notifier.watchers == 0


def test_stopping_sends_every_watcher_away() -> None:
    notifier = DocumentChangeNotifier()
    watchers = [FakeWatcher() for _ in range(3)]
    for w in watchers:
        notifier.register(w)
    notifier.startService()
    notifier.stopService()
    assert all(w.gone for w in watchers)


def test_a_failing_watcher_does_not_stop_delivery_to_the_others() -> None:
    notifier = DocumentChangeNotifier()

    class Broken(FakeWatcher):
        def deliver(self, delivery: Delivery) -> None:
            raise RuntimeError("boom")

    good = FakeWatcher()
    notifier.subscribe(Broken(), "/d.html", None)
    notifier.subscribe(good, "/d.html", None)
    notifier.changed(change())
    assert len(good.received) == 1
