"""
The DocumentChangeNotifier: from change records to StreamItems on the wire.

Subscriptions are indexed by document URL and then by selector, so a change costs
work only for the watchers of its own document; each distinct selector is evaluated
once per change, not once per watcher; and each StreamItem is rendered and framed
once per distinct form (compressed once per window size for permessage-deflate
watchers, see L{rustybeam.frames}), then written to every recipient -- straight to
the socket of a watcher in its express lane, see L{IWatcher.express}; the changes of
one commit reach each recipient in one write. A bounded per-document history lets a
reconnecting client resume.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Callable, Collection, Hashable, Protocol, Sequence

from autobahn.websocket.protocol import PreparedMessage
from lxml import etree
from twisted.application.service import Service
from twisted.logger import Logger

from rustybeam import frames, streamitem
from rustybeam.changes import Change
from rustybeam.interfaces import IViewer
from rustybeam.selectors import Selector
from rustybeam.wire import EXPRESS_BYTES


@dataclass(frozen=True)
class NotifierOptions:
    """Options of a L{DocumentChangeNotifier}."""

    historySize: int = 256
    """Changes kept per document for clients that resume with C{since}."""
    historyDocuments: int = 1024
    """Documents whose history is kept (least recently changed are dropped first)."""
    historyBytes: int = 32 * 1024 * 1024
    """Bytes of stored documents that the history of all documents may hold on to
    (each change keeps its version of the document alive); past it the oldest
    changes of the least recently changed documents are dropped first."""


class IWatcher(Protocol):
    """A connection that receives StreamItems (implemented by the WebSocket protocol)."""

    viewer: IViewer | None
    express: Callable[[bytes], int] | None
    """The express lane: a C{send} that takes the plain frames (L{Delivery.plain},
    L{Batch.plain}) of up to L{EXPRESS_BYTES}, returns how many bytes it took and may
    raise C{OSError}; given only while the watcher gets the plain frames and nothing
    of its own waits to be written. Whatever it does not take goes to L{deliverRest}."""

    def deliver(self, delivery: Delivery) -> None: ...

    def deliverAll(self, batch: Batch) -> None: ...

    def deliverRest(self, data: bytes, taken: int) -> None: ...

    def goAway(self) -> None: ...


WHOLE_DOCUMENT: None = None
"""The selector key of a whole-document subscription."""


class Delivery:
    """One change on its way out: each distinct payload and frame is built once and
    shared by every recipient that gets the same bytes.

    @ivar plain: the frame of the most common recipient (no viewer, not sequenced,
        text, no permessage-deflate) once L{plainFrame} has built it, else C{None}:
        read once per recipient, so it is a plain attribute.
    """

    __slots__ = ("change", "plain", "_contents", "_payloads", "_frames")

    def __init__(self, change: Change) -> None:
        self.change = change
        self.plain: bytes | None = None
        self._contents: dict[Hashable, str | None] = {}
        self._payloads: dict[tuple[bool, bool, str | None], bytes] = {}
        self._frames: dict[tuple[bool, bool, str | None, int], bytes] = {}

    def plainFrame(self) -> bytes:
        """The frame for a recipient with no viewer, not sequenced, text, no deflate."""
        data = self.plain
        if data is None:
            data = self.frame()
            assert data is not None  # with no viewer, everything is visible
            self.plain = data
        return data

    def contentFor(self, viewer: IViewer | None) -> str | None:
        """The content C{viewer} may see, or C{None} when it may see none of it."""
        if viewer is None:
            return self.change.content
        key = viewer.key
        if key not in self._contents:
            self._contents[key] = viewer.redact(self.change)
        return self._contents[key]

    def _payload(self, content: str, own: str | None, sequenced: bool, binary: bool) -> bytes:
        key = (sequenced, binary, own)
        payload = self._payloads.get(key)
        if payload is None:
            payload = streamitem.render(self.change, content, sequenced).encode("utf-8")
            if binary:
                payload = streamitem.compress(payload)
            self._payloads[key] = payload
        return payload

    def frame(
        self, viewer: IViewer | None = None, sequenced: bool = False, binary: bool = False,
        deflateBits: int = 0,
    ) -> bytes | None:
        """
        The bytes on the wire of the StreamItem for a recipient (one unmasked frame), or
        C{None} if it must not get one. C{deflateBits} is the C{server_max_window_bits}
        of a connection with permessage-deflate and no server context takeover (0: none);
        compact (binary) frames are zlib already and are not compressed again.
        """
        content = self.contentFor(viewer)
        if content is None:
            return None
        own = content if content is not self.change.content else None
        if binary:
            deflateBits = 0
        key = (sequenced, binary, own, deflateBits)
        data = self._frames.get(key)
        if data is None:
            payload = self._payload(content, own, sequenced, binary)
            if deflateBits:
                data = frames.deflatedFrame(payload, binary, deflateBits)
            else:
                data = frames.frame(payload, binary)
            self._frames[key] = data
        return data

    def message(
        self, viewer: IViewer | None = None, sequenced: bool = False, binary: bool = False
    ) -> PreparedMessage | None:
        """The StreamItem for a recipient as an Autobahn prepared message (for a
        connection whose compression needs its own context), or C{None}."""
        content = self.contentFor(viewer)
        if content is None:
            return None
        own = content if content is not self.change.content else None
        return PreparedMessage(self._payload(content, own, sequenced, binary), binary, False, binary)


class Batch:
    """Changes of one commit on their way to a watcher that gets each of them: its
    StreamItems leave in one write (one C{send}, where the common recipient would
    otherwise pay one per change).

    @ivar plain: the frames of L{Delivery.plain}'s recipient, joined, once
        L{plainFrames} has built them, else C{None}.
    """

    __slots__ = ("deliveries", "plain")

    def __init__(self, deliveries: list[Delivery]) -> None:
        self.deliveries = deliveries
        self.plain: bytes | None = None

    def plainFrames(self) -> bytes:
        """The frames for a recipient with no viewer, not sequenced, text, no deflate."""
        data = self.plain
        if data is None:
            data = self.plain = b"".join([d.plainFrame() for d in self.deliveries])
        return data


class DocumentChangeNotifier(Service):
    """
    Distributes every L{Change} to the watchers whose subscriptions it touches.

    Give L{changedAll} to the L{rustybeam.documents.DocumentStore} as its change sink.
    """

    log = Logger()
    name = "notifier"

    def __init__(self, options: NotifierOptions = NotifierOptions()) -> None:
        self.options = options
        self._topics: dict[str, dict[Selector | None, set[IWatcher]]] = {}
        self._watching: dict[IWatcher, set[tuple[str, Selector | None]]] = {}
        self._history: OrderedDict[str, deque[Change]] = OrderedDict()
        self._historyBytes = 0
        self.delivered = 0

    # Subscriptions

    def subscribe(self, watcher: IWatcher, url: str, selector: Selector | None) -> None:
        self._topics.setdefault(url, {}).setdefault(selector, set()).add(watcher)
        self._watching.setdefault(watcher, set()).add((url, selector))

    def unsubscribe(self, watcher: IWatcher, url: str, selector: Selector | None = None,
                    allOfUrl: bool = False) -> int:
        """End one subscription, or every one on C{url}; return how many ended."""
        mine = self._watching.get(watcher, set())
        ending = [(u, s) for (u, s) in mine if u == url and (allOfUrl or s == selector)]
        for key in ending:
            mine.discard(key)
            u, s = key
            topic = self._topics.get(u, {})
            watchers = topic.get(s)
            if watchers is not None:
                watchers.discard(watcher)
                if not watchers:
                    del topic[s]
            if not topic:
                self._topics.pop(u, None)
        return len(ending)

    def subscriptionCount(self, watcher: IWatcher) -> int:
        return len(self._watching.get(watcher, ()))

    def register(self, watcher: IWatcher) -> None:
        """Know C{watcher} (so that shutdown reaches it) before it subscribes."""
        self._watching.setdefault(watcher, set())

    def forget(self, watcher: IWatcher) -> None:
        """Drop every subscription of a watcher that has gone."""
        for url, selector in list(self._watching.get(watcher, ())):
            self.unsubscribe(watcher, url, selector)
        self._watching.pop(watcher, None)

    @property
    def watchers(self) -> int:
        return len(self._watching)

    # Changes

    def changed(self, change: Change) -> None:
        """Record C{change} and send it to every watcher it concerns, in order."""
        self._remember(change)
        topic = self._topics.get(change.url)
        if not topic:
            return
        self._deliver(self._recipients(topic, change), Delivery(change))

    def changedAll(self, changes: Sequence[Change]) -> None:
        """
        Record the changes of one commit and send them, in order, to every watcher
        they concern: each watcher gets its StreamItems of them in one write.
        """
        if len(changes) == 1 or len({c.url for c in changes}) != 1:
            for change in changes:
                self.changed(change)
            return
        for change in changes:
            self._remember(change)
        topic = self._topics.get(changes[0].url)
        if not topic:
            return
        deliveries = [Delivery(change) for change in changes]
        if len(topic) == 1 and WHOLE_DOCUMENT in topic:
            self._deliverAll(list(topic[WHOLE_DOCUMENT]), Batch(deliveries))
            return
        received: dict[IWatcher, list[int]] = {}
        for index, change in enumerate(changes):
            for watcher in self._recipients(topic, change):
                received.setdefault(watcher, []).append(index)
        batches: dict[tuple[int, ...], list[IWatcher]] = {}
        for watcher, indices in received.items():
            batches.setdefault(tuple(indices), []).append(watcher)
        for share, watchers in batches.items():
            if len(share) == 1:
                self._deliver(watchers, deliveries[share[0]])
            else:
                self._deliverAll(watchers, Batch([deliveries[i] for i in share]))

    def _deliver(self, recipients: Collection[IWatcher], delivery: Delivery) -> None:
        failed = self._fanOut(recipients, delivery.plainFrame,
                              lambda watcher: watcher.deliver(delivery), delivery.change.url)
        self.delivered += len(recipients) - failed

    def _deliverAll(self, recipients: Collection[IWatcher], batch: Batch) -> None:
        failed = self._fanOut(recipients, batch.plainFrames,
                              lambda watcher: watcher.deliverAll(batch),
                              batch.deliveries[0].change.url)
        self.delivered += (len(recipients) - failed) * len(batch.deliveries)

    def _fanOut(self, recipients: Collection[IWatcher], plain: Callable[[], bytes],
                deliver: Callable[[IWatcher], None], url: str) -> int:
        """
        Send to every recipient: the C{plain} frames straight to the socket of each one
        in its express lane (one C{send}, no call into the connection), the rest
        through C{deliver}. Return how many failed (each is logged).
        """
        data = b""
        size = -1
        failed = 0
        for watcher in recipients:
            try:
                send = watcher.express
                if send is None:
                    deliver(watcher)
                    continue
                if size < 0:
                    data = plain()
                    size = len(data) if len(data) <= EXPRESS_BYTES else 0
                if not size:
                    deliver(watcher)
                    continue
                try:
                    taken = send(data)
                except OSError:
                    taken = 0
                if taken != size:
                    watcher.deliverRest(data, taken)
            except Exception:
                failed += 1
                self.log.failure("delivering {url} failed", url=url)
        return failed

    @staticmethod
    def _recipients(
        topic: dict[Selector | None, set[IWatcher]], change: Change
    ) -> list[IWatcher] | dict[IWatcher, None]:
        """Every watcher with a subscription that C{change} touches, once each (a copy,
        since delivering can end subscriptions)."""
        footprint: Footprint | None = None
        touched: list[set[IWatcher]] = []
        for selector, watchers in topic.items():
            if selector is not WHOLE_DOCUMENT:
                if footprint is None:
                    footprint = Footprint.of(change)
                if not touches(selector, change, footprint):
                    continue
            touched.append(watchers)
        if len(touched) == 1:
            return list(touched[0])
        return dict.fromkeys(w for watchers in touched for w in watchers)

    def historySize(self) -> tuple[int, int]:
        """The changes kept for resuming clients, and their bytes."""
        return sum(len(q) for q in self._history.values()), self._historyBytes

    def history(self, url: str) -> list[Change]:
        """The changes of C{url} kept for resuming clients, oldest first."""
        return list(self._history.get(url, ()))

    def missed(self, url: str, since: int, current: int) -> list[Change] | None:
        """
        Changes of C{url} after C{since} up to C{current} (the store's number), or
        C{None} if the history no longer reaches back that far.
        """
        if since == current:
            return []
        if since > current or since < 0:
            return None
        history = self._history.get(url)
        if not history or history[0].sequence > since + 1:
            return None
        return [c for c in history if c.sequence > since]

    def replay(self, watcher: IWatcher, url: str, selector: Selector | None, since: int,
               current: int) -> bool:
        """
        Deliver to C{watcher} the changes of C{url} after C{since} that a subscription
        to C{selector} would have received; C{False} (and nothing delivered) when the
        history no longer reaches back that far.
        """
        missed = self.missed(url, since, current)
        if missed is None:
            return False
        for change in missed:
            if selector is WHOLE_DOCUMENT or touches(selector, change):
                watcher.deliver(Delivery(change))
        return True

    def _remember(self, change: Change) -> None:
        history = self._history.get(change.url)
        if history is None:
            history = self._history[change.url] = deque()
        self._history.move_to_end(change.url)
        history.append(change)
        self._historyBytes += change.size
        if len(history) > self.options.historySize:
            self._historyBytes -= history.popleft().size
        while self._history and (len(self._history) > self.options.historyDocuments
                                 or self._historyBytes > self.options.historyBytes):
            oldestUrl, oldest = next(iter(self._history.items()))
            self._historyBytes -= oldest.popleft().size
            if not oldest:
                del self._history[oldestUrl]

    # Lifecycle

    def stopService(self) -> None:
        """Close every watcher with 1001 (going away)."""
        super().stopService()
        for watcher in list(self._watching):
            watcher.goAway()


def touches(selector: Selector, change: Change, footprint: Footprint | None = None) -> bool:
    """
    Whether C{change} concerns a subscription to C{selector}: an element it matches,
    before or after the change, is a changed element, contains one, or lies in one.
    """
    footprint = footprint or Footprint.of(change)
    if footprint.before.enclosing and change.before is not None and footprint.before.reaches(
            selector, change.before):
        return True
    return bool(footprint.after.enclosing) and change.after is not None and (
        footprint.after.reaches(selector, change.after))


@dataclass(frozen=True)
class _Side:
    """Where a change happened in one version of the document."""

    changed: frozenset[etree._Element]
    enclosing: frozenset[etree._Element]
    """The changed elements, the elements that received new nodes, and their ancestors."""

    @classmethod
    def of(cls, changed: tuple[etree._Element, ...], containers: tuple[etree._Element, ...]) -> _Side:
        enclosing: set[etree._Element] = set()
        for node in (*changed, *containers):
            while node is not None and node not in enclosing:
                enclosing.add(node)
                node = node.getparent()
        return cls(frozenset(changed), frozenset(enclosing))

    def reaches(self, selector: Selector, tree: etree._ElementTree) -> bool:
        if not self.enclosing:
            return False
        for match in selector.select(tree.getroot()):
            if match in self.enclosing:
                return True
            ancestor = match.getparent()
            while ancestor is not None:
                if ancestor in self.changed:
                    return True
                ancestor = ancestor.getparent()
        return False


class Footprint:
    """Where a change happened, before and after; computed once per change, when a
    selector is first evaluated against it, and shared by every selector (a change
    that only whole-document watchers see never rebuilds its versions)."""

    def __init__(self, change: Change) -> None:
        self._change = change
        self._before: _Side | None = None
        self._after: _Side | None = None

    @classmethod
    def of(cls, change: Change) -> Footprint:
        return cls(change)

    @property
    def before(self) -> _Side:
        if self._before is None:
            self._before = _Side.of(self._change.removed, ())
        return self._before

    @property
    def after(self) -> _Side:
        if self._after is None:
            self._after = _Side.of(self._change.inserted, self._change.containers)
        return self._after
