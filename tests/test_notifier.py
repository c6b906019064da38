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
from rustybeam.notifier import Batch, Delivery, DocumentChangeNotifier, NotifierOptions, touches

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
    batches: list[list[int]] = field(default_factory=list)
    express: object = None
    rests: list[tuple[bytes, int]] = field(default_factory=list)

    def deliver(self, delivery: Delivery) -> None:
        self.received.append(delivery)
        self.frames.append(delivery.frame(self.viewer, deflateBits=self.deflateBits))

    def deliverAll(self, batch: Batch) -> None:
        self.batches.append([d.change.sequence for d in batch.deliveries])
        for delivery in batch.deliveries:
            self.deliver(delivery)

    def deliverRest(self, data: bytes, taken: int) -> None:
        self.rests.append((data, taken))

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


def deletion(selector: str, url: str = "/d.html", sequence: int = 1) -> Change:
    """A DELETE as the store records it: the removed elements are in C{before}
    only, their former parents (in C{after}) are the containers."""
    before = DOC
    after = markup.copyTree(DOC)
    removed = tuple(selectors.compile(selector).select(before.getroot()))
    containers = tuple(markup.detach(e) for e in selectors.compile(selector).select(after.getroot()))
    content = "\n".join(markup.serialize(e) for e in removed)
    return Change("DELETE", url, selector, sequence, content, before, after, removed, (),
                  containers)


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


def test_selector_subscription_sees_the_delete_of_the_element_it_watches() -> None:
    """The watched element exists only in the document before the change, so the
    selector must be evaluated there too."""
    notifier = DocumentChangeNotifier()
    watching, matching, sibling = FakeWatcher(), FakeWatcher(), FakeWatcher()
    notifier.subscribe(watching, "/d.html", selectors.compile("#a"))
    notifier.subscribe(matching, "/d.html", selectors.compile("#l > li"))
    notifier.subscribe(sibling, "/d.html", selectors.compile("#b"))
    notifier.changed(deletion("#a"))
    assert [d.change.method for d in watching.received] == ["DELETE"]
    assert [d.change.method for d in matching.received] == ["DELETE"]
    assert sibling.received == []


def test_selector_subscription_sees_the_delete_of_an_ancestor_of_what_it_watches() -> None:
    notifier = DocumentChangeNotifier()
    inside, elsewhere = FakeWatcher(), FakeWatcher()
    notifier.subscribe(inside, "/d.html", selectors.compile("#b"))
    notifier.subscribe(elsewhere, "/d.html", selectors.compile("#t"))
    notifier.changed(deletion("#l"))
    assert [d.change.selector for d in inside.received] == ["#l"]
    assert elsewhere.received == []


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


# Deliveries: one frame per distinct form, content per viewer


@dataclass(eq=False)
class FakeViewer:
    """A viewer that sees the change's content, a version of it, or nothing."""

    key: object
    shows: object = "all"
    redacted: list[Change] = field(default_factory=list)

    def redact(self, c: Change) -> str | None:
        self.redacted.append(c)
        return c.content if self.shows == "all" else self.shows  # type: ignore[return-value]


def unframe(data: bytes) -> bytes:
    """The payload of one unmasked server frame."""
    n = data[1] & 0x7F
    start = 2 if n < 126 else 4 if n == 126 else 10
    return data[start:]


def test_a_delivery_frames_the_streamitem_as_one_text_message() -> None:
    from rustybeam import streamitem

    c = change()
    frame = Delivery(c).message()
    assert frame is not None
    assert (frame.payload, frame.binary, frame.doNotCompress) == (
        streamitem.render(c).encode("utf-8"), False, False)
    assert frame.payloadHybi[:1] == b"\x81" and not frame.payloadHybi[1] & 0x80
    assert unframe(frame.payloadHybi) == frame.payload


def test_a_compact_delivery_is_one_binary_zlib_message_never_compressed_again() -> None:
    import zlib

    from rustybeam import streamitem

    c = change()
    frame = Delivery(c).message(binary=True)
    assert frame is not None and frame.doNotCompress
    assert frame.payloadHybi[:1] == b"\x82"
    assert zlib.decompress(unframe(frame.payloadHybi)) == streamitem.render(c).encode("utf-8")


def test_a_sequenced_delivery_carries_the_sequence() -> None:
    frame = Delivery(change(sequence=42)).message(sequenced=True)
    assert frame is not None and b'<span itemprop="sequence">42</span>' in frame.payload
    plain = Delivery(change(sequence=42)).message()
    assert plain is not None and b"sequence" not in plain.payload


def test_each_form_of_a_delivery_is_framed_once() -> None:
    d = Delivery(change())
    assert d.frame() is d.frame()
    assert d.frame(sequenced=True) is d.frame(sequenced=True)
    assert d.frame(deflateBits=9) is d.frame(deflateBits=9)
    assert len({id(d.frame(sequenced=s, binary=b)) for s in (False, True)
                for b in (False, True)}) == 4


def test_the_plain_frame_is_the_frame_of_a_recipient_with_no_viewer_sequence_or_deflate() -> None:
    d = Delivery(change())
    assert d.plain is None
    assert d.plainFrame() is d.plain is d.frame()
    assert d.plainFrame() is not d.frame(sequenced=True)


def test_each_viewer_gets_what_it_may_see_judged_once_per_key() -> None:
    c = change()
    d = Delivery(c)
    everything, same, partial, other, nothing = (
        FakeViewer("a"), FakeViewer("a"), FakeViewer("p", "<li>part</li>"),
        FakeViewer("q", "<li>part</li>"), FakeViewer("n", None))
    full = d.frame(everything)
    assert full is d.frame(same) is d.frame(None)
    assert (len(everything.redacted), len(same.redacted)) == (1, 0)
    assert everything.redacted == [c]
    cut = d.frame(partial)
    assert cut is not None and cut is not full
    assert b"<li>part</li>" in cut and b"A2" not in cut
    assert d.frame(other) is cut
    assert d.frame(nothing) is None
    assert d.contentFor(partial) == "<li>part</li>"


def test_unsubscribing_ends_only_the_subscriptions_named() -> None:
    notifier = DocumentChangeNotifier()
    w = FakeWatcher()
    a, t = selectors.compile("#a"), selectors.compile("#t")
    for url in ("/d.html", "/e.html"):
        notifier.subscribe(w, url, a)
        notifier.subscribe(w, url, t)
    notifier.subscribe(w, "/d.html", None)
    assert notifier.unsubscribe(w, "/d.html", a) == 1
    assert notifier.subscriptionCount(w) == 4
    assert notifier.unsubscribe(w, "/d.html", allOfUrl=True) == 2
    assert notifier.subscriptionCount(w) == 2
    notifier.changed(change("#a", url="/e.html"))
    assert len(w.received) == 1
    assert notifier.unsubscribe(FakeWatcher(), "/e.html", a) == 0


def test_registering_and_forgetting_unknown_watchers_is_harmless() -> None:
    notifier = DocumentChangeNotifier()
    w = FakeWatcher()
    notifier.forget(w)
    notifier.register(w)
    notifier.subscribe(w, "/d.html", None)
    assert notifier.watchers == 1 and notifier.subscriptionCount(w) == 1
    notifier.forget(w)
    assert notifier.watchers == 0 and notifier._topics == {}


def test_an_untouched_subscription_does_not_hide_a_touched_one() -> None:
    notifier = DocumentChangeNotifier()
    elsewhere, here = FakeWatcher(), FakeWatcher()
    notifier.subscribe(elsewhere, "/d.html", selectors.compile("#t"))
    notifier.subscribe(here, "/d.html", selectors.compile("#a"))
    notifier.changed(change("#a"))
    assert (len(elsewhere.received), len(here.received)) == (0, 1)


def appended(css: str) -> Change:
    """A POST that appends <li id=c> to C{css}: nothing removed, one element new."""
    after = markup.copyTree(DOC)
    (target,) = selectors.compile(css).select(after.getroot())
    new = markup.parseFragment('<li id="c">C</li>', "ul")[0]
    target.append(new)
    return Change("POST", "/d.html", css, 1, '<li id="c">C</li>', DOC, after, (), (new,), (target,))


def test_a_subscription_sees_an_element_that_only_the_document_after_has() -> None:
    assert touches(selectors.compile("#c"), appended("#l"))
    assert touches(selectors.compile("#l"), appended("#l"))
    assert not touches(selectors.compile("#t"), appended("#l"))


def test_an_element_deep_inside_the_changed_one_is_touched() -> None:
    assert touches(selectors.compile("#a"), change("body"))
    assert touches(selectors.compile("li"), deletion("body"))


def test_one_watcher_leaving_keeps_the_others_of_its_document() -> None:
    notifier = DocumentChangeNotifier()
    leaving, staying = FakeWatcher(), FakeWatcher()
    for w in (leaving, staying):
        notifier.subscribe(w, "/d.html", selectors.compile("#a"))
    notifier.unsubscribe(leaving, "/d.html", selectors.compile("#a"))
    notifier.forget(leaving)
    notifier.changed(change("#a"))
    assert (len(leaving.received), len(staying.received)) == (0, 1)


def test_each_partly_visible_form_of_a_change_gets_its_own_frame() -> None:
    d = Delivery(change())
    one = d.message(FakeViewer("p1", "<li>one</li>"))  # type: ignore[arg-type]
    two = d.message(FakeViewer("p2", "<li>two</li>"))  # type: ignore[arg-type]
    assert one is not None and b"<li>one</li>" in one.payload
    assert two is not None and b"<li>two</li>" in two.payload


def test_deliveries_are_counted_and_failures_are_logged_with_the_document() -> None:
    from twisted.logger import capturedLogs, formatEvent

    notifier = DocumentChangeNotifier()

    class Broken(FakeWatcher):
        def deliver(self, delivery: Delivery) -> None:
            raise RuntimeError("boom")

    for w in (FakeWatcher(), FakeWatcher(), Broken()):
        notifier.subscribe(w, "/d.html", None)
    assert notifier.delivered == 0
    with capturedLogs() as events:
        notifier.changed(change())
        notifier.changed(change(sequence=2))
    assert notifier.delivered == 4
    assert [formatEvent(e) for e in events] == ["delivering /d.html failed"] * 2


def test_history_keeps_exactly_its_size_documents_and_bytes() -> None:
    notifier = DocumentChangeNotifier(NotifierOptions(historySize=3, historyDocuments=2,
                                                      historyBytes=1000))
    sized = lambda url, n, size: replace(change(url=url, sequence=n), size=size)  # noqa: E731
    for n in (1, 2, 3):
        notifier.changed(sized("/a.html", n, 100))
    notifier.changed(sized("/b.html", 1, 700))
    assert [c.sequence for c in notifier.missed("/a.html", 0, 3)] == [1, 2, 3]
    assert [c.sequence for c in notifier.missed("/b.html", 0, 1)] == [1]


def test_history_bytes_forget_what_the_size_limit_dropped() -> None:
    notifier = DocumentChangeNotifier(NotifierOptions(historySize=2, historyBytes=250))
    sized = lambda url, n: replace(change(url=url, sequence=n), size=100)  # noqa: E731
    for n in (1, 2, 3):
        notifier.changed(sized("/a.html", n))
    assert [c.sequence for c in notifier.missed("/a.html", 1, 3)] == [2, 3]
    notifier.changed(sized("/b.html", 1))
    assert notifier.missed("/a.html", 1, 3) is None
    assert [c.sequence for c in notifier.missed("/a.html", 2, 3)] == [3]


def test_the_changes_of_one_commit_reach_a_whole_document_watcher_in_one_batch() -> None:
    notifier = DocumentChangeNotifier()
    watcher, other = FakeWatcher(), FakeWatcher()
    notifier.subscribe(watcher, "/d.html", None)
    notifier.subscribe(other, "/e.html", None)
    notifier.changedAll([change(sequence=1), change("#b", sequence=2), change("#t", sequence=3)])
    assert watcher.batches == [[1, 2, 3]]
    assert [d.change.sequence for d in watcher.received] == [1, 2, 3]
    assert other.received == []
    assert [c.sequence for c in notifier.history("/d.html")] == [1, 2, 3]
    assert notifier.delivered == 3


def test_a_batch_s_plain_frames_are_each_change_s_plain_frame_in_order() -> None:
    deliveries = [Delivery(change(sequence=1)), Delivery(change("#b", sequence=2))]
    batch = Batch(deliveries)
    assert batch.plainFrames() == deliveries[0].plainFrame() + deliveries[1].plainFrame()
    assert batch.plain is batch.plainFrames()


def test_a_commit_reaches_each_watcher_with_only_the_changes_its_subscriptions_touch() -> None:
    notifier = DocumentChangeNotifier()
    whole, onA, onB, onBoth = FakeWatcher(), FakeWatcher(), FakeWatcher(), FakeWatcher()
    notifier.subscribe(whole, "/d.html", None)
    notifier.subscribe(onA, "/d.html", selectors.compile("#a"))
    notifier.subscribe(onB, "/d.html", selectors.compile("#b"))
    notifier.subscribe(onBoth, "/d.html", selectors.compile("#a"))
    notifier.subscribe(onBoth, "/d.html", selectors.compile("#b"))
    notifier.changedAll([change("#a", sequence=1), change("#b", sequence=2)])
    assert (whole.batches, onBoth.batches) == ([[1, 2]], [[1, 2]])
    assert (onA.batches, onB.batches) == ([], [])
    assert [d.change.sequence for d in onA.received] == [1]
    assert [d.change.sequence for d in onB.received] == [2]
    assert notifier.delivered == 6


def test_a_commit_of_one_change_is_delivered_as_a_change() -> None:
    notifier = DocumentChangeNotifier()
    watcher = FakeWatcher()
    notifier.subscribe(watcher, "/d.html", None)
    notifier.changedAll([change(sequence=4)])
    assert (watcher.batches, [d.change.sequence for d in watcher.received]) == ([], [4])


# The express lane


class Socket:
    """An express lane's C{send}: takes up to C{room} bytes a call, or raises C{error}."""

    def __init__(self, room: int = 10**9, error: OSError | None = None) -> None:
        self.room, self.error = room, error
        self.sent: list[bytes] = []

    def send(self, data: bytes) -> int:
        if self.error is not None:
            raise self.error
        self.sent.append(data[:self.room])
        return min(len(data), self.room)


def test_a_watcher_in_its_express_lane_is_sent_the_plain_frames_without_a_call_into_it() -> None:
    notifier = DocumentChangeNotifier()
    socket = Socket()
    watcher = FakeWatcher(express=socket.send)
    notifier.subscribe(watcher, "/d.html", None)
    one = change()
    notifier.changed(one)
    two, three = change(sequence=2), change("#b", sequence=3)
    notifier.changedAll([two, three])
    assert socket.sent == [Delivery(one).plainFrame(),
                           Delivery(two).plainFrame() + Delivery(three).plainFrame()]
    assert watcher.received == [] and watcher.rests == []
    assert notifier.delivered == 3


@pytest.mark.parametrize("socket, taken", [(Socket(room=5), 5),
                                           (Socket(error=BlockingIOError()), 0),
                                           (Socket(error=ConnectionResetError()), 0)])
def test_what_an_express_send_does_not_take_is_handed_back_to_its_watcher(
        socket: Socket, taken: int) -> None:
    notifier = DocumentChangeNotifier()
    watcher = FakeWatcher(express=socket.send)
    notifier.subscribe(watcher, "/d.html", None)
    item = change()
    notifier.changed(item)
    assert watcher.rests == [(Delivery(item).plainFrame(), taken)]
    assert watcher.received == []


def _frameOfSize(size: int, sequence: int) -> Change:
    """A change whose plain frame is C{size} bytes."""
    length = size
    for _ in range(10):
        change = Change("PUT", "/d.html", "#a", sequence, "x" * length)
        over = len(Delivery(change).plainFrame()) - size
        if over == 0:
            return change
        length -= over
    raise AssertionError(f"no change has a plain frame of {size} bytes")


def test_frames_over_the_express_size_are_delivered_through_the_watcher() -> None:
    from rustybeam.wire import EXPRESS_BYTES

    notifier = DocumentChangeNotifier()
    sockets = [Socket(), Socket()]
    watchers = [FakeWatcher(express=s.send) for s in sockets]
    for watcher in watchers:
        notifier.subscribe(watcher, "/d.html", None)
    largest, big = _frameOfSize(EXPRESS_BYTES, 1), _frameOfSize(EXPRESS_BYTES + 1, 2)
    notifier.changed(largest)
    notifier.changed(big)
    assert [len(data) for s in sockets for data in s.sent] == [EXPRESS_BYTES] * 2
    assert [[d.change for d in w.received] for w in watchers] == [[big], [big]]


def test_a_commit_is_counted_per_change_and_its_failures_are_logged_with_the_document() -> None:
    from twisted.logger import capturedLogs, formatEvent

    notifier = DocumentChangeNotifier()

    class Broken(FakeWatcher):
        def deliverAll(self, batch: Batch) -> None:
            raise RuntimeError("boom")

    for w in (FakeWatcher(), FakeWatcher(), Broken(), Broken()):
        notifier.subscribe(w, "/d.html", None)
    with capturedLogs() as events:
        notifier.changedAll([change(), change(sequence=2)])
    assert notifier.delivered == 4
    assert [formatEvent(e) for e in events] == ["delivering /d.html failed"] * 2


def test_an_express_watcher_that_fails_does_not_stop_the_others_and_is_counted() -> None:
    notifier = DocumentChangeNotifier()

    class Broken(FakeWatcher):
        def deliverRest(self, data: bytes, taken: int) -> None:
            raise RuntimeError("boom")

    good = Socket()
    notifier.subscribe(Broken(express=Socket(error=ConnectionResetError()).send), "/d.html", None)
    notifier.subscribe(FakeWatcher(express=good.send), "/d.html", None)
    notifier.changed(change())
    assert len(good.sent) == 1
    assert notifier.delivered == 1
