"""
The WebSocket side: an Autobahn server factory and protocol that watch documents.

A connection opened on a document's URL watches that whole document until its first
explicit C{subscribe}. Client commands are JSON text frames (or, in compact mode,
zlib-compressed JSON in binary frames); the server answers with JSON and pushes
StreamItems prepared once by the L{rustybeam.notifier.DocumentChangeNotifier}.

The handshake itself is reached through L{WebSocketUpgrade}, a Twisted Web resource
that the document resource hands upgrade requests to, after the checks that must
happen before any upgrade (origin, limits, authorization).
"""

from __future__ import annotations

import json
from collections import Counter, deque
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, Callable

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.compress import (
    PerMessageDeflateOffer,
    PerMessageDeflateOfferAccept,
)
from autobahn.websocket.protocol import TrafficStats
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.protocols.policies import ProtocolWrapper
from twisted.web.server import NOT_DONE_YET, Request

from rustybeam import selectors, streamitem
from rustybeam.documents import DocumentStore
from rustybeam.errors import ORIGIN_REFUSED, TOO_MANY_CONNECTIONS, UPGRADE_REQUIRED, Problem
from rustybeam.interfaces import IViewer
from rustybeam.origins import sameOrigin
from rustybeam.changes import Change
from rustybeam.notifier import Batch, Delivery, DocumentChangeNotifier
from rustybeam.selectors import Selector
from rustybeam.timers import TimerWheel
from rustybeam.wire import EXPRESS_BYTES, Wire

CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_TRY_AGAIN_LATER = 1013
SENT_MEMORY = 1024
"""Sequence numbers per document a resuming connection remembers having received."""
_STATE_OPEN = WebSocketServerProtocol.STATE_OPEN


@dataclass(frozen=True)
class WebSocketOptions:
    """Limits and features of the WebSocket side; every default is a safe one."""

    maxConnections: int = 10_000
    """Open WebSockets in total; over it the handshake is refused with 503."""
    maxConnectionsPerAddress: int = 100
    """Open WebSockets per client IP address; over it, 503."""
    messagesPerSecond: float = 20.0
    """Sustained rate of client messages; excess messages get a C{rate-limited} error."""
    messageBurst: int = 40
    """Client messages allowed back to back before the rate applies."""
    rateLimitStrikes: int = 100
    """Excess messages tolerated (they are answered with errors) before closing with 1008."""
    autoPingInterval: float = 30.0
    """Seconds between server pings; 0 disables them."""
    autoPingTimeout: float = 10.0
    """Seconds to wait for a pong before dropping the connection."""
    maxMessageSize: int = 64 * 1024
    """Largest incoming message in bytes (after decompression); over it, close 1009."""
    maxFrameSize: int = 64 * 1024
    """Largest incoming frame payload in bytes; over it, close 1009."""
    compression: bool = True
    """Accept permessage-deflate (RFC 7692) when the client offers it."""
    allowedOrigins: tuple[str, ...] = ("*",)
    """Origin patterns (fnmatch-style) allowed to open a WebSocket; others get 403."""
    maxBacklogBytes: int = 4 * 1024 * 1024
    """Unsent bytes a connection may have queued; past it the connection is closed 1008."""
    maxSubscriptions: int = 64
    """Subscriptions one connection may hold."""
    openHandshakeTimeout: float = 10.0
    closeHandshakeTimeout: float = 5.0
    serverName: str = "rustybeam"


@dataclass
class _Bucket:
    """A token bucket for the client-message rate limit."""

    tokens: float
    stamp: float
    strikes: int = 0

    def take(self, now: float, rate: float, burst: int) -> bool:
        """Take a token; count a strike when there is none. A client that lets the
        bucket fill up again is forgiven its strikes: only sustained abuse adds up."""
        self.tokens = min(float(burst), self.tokens + (now - self.stamp) * rate)
        self.stamp = now
        if self.tokens >= burst:
            self.strikes = 0
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        self.strikes += 1
        return False


@dataclass(frozen=True)
class CommandError(Exception):
    """A bad client message; answered with a JSON error, the connection stays open."""

    code: str
    message: str


_HANDSHAKE_LEFTOVERS = (
    "http_headers", "http_request_data", "http_response_data", "http_status_line",
    "http_request_params", "websocket_extensions", "websocket_protocols", "_wskey",
)
"""What Autobahn keeps of the opening handshake and never reads once the connection is
open (the class holds empty defaults)."""
_UNREAD_STATS = TrafficStats()
"""One Autobahn traffic counter shared by every connection: Autobahn adds to it on
every frame, rustybeam never reads it, and one per connection costs about 1 KB."""
_MISSING = object()


class _LeavesTheLane:
    """An attribute of what a connection is sent, kept in a slot: setting it takes the
    connection out of its express lane (the plain frames may no longer be its own)."""

    def __init__(self, slot: str, doc: str) -> None:
        self.slot = slot
        self.__doc__ = doc

    def __get__(self, protocol: DocumentWebSocketProtocol | None, owner: type | None = None) -> Any:
        if protocol is None:
            return self
        return getattr(protocol, self.slot)

    def __set__(self, protocol: DocumentWebSocketProtocol, value: Any) -> None:
        protocol.express = None
        setattr(protocol, self.slot, value)


class DocumentWebSocketProtocol(WebSocketServerProtocol):
    """
    One client watching documents.

    It logs through Autobahn's own (txaio) logger, whose disabled levels cost nothing:
    a C{twisted.logger.Logger} here would build an event for the debug call that
    Autobahn makes on every frame sent, about a fifth of the CPU of a delivery.
    """

    __slots__ = ("_state", "express", "factory", "_viewer", "_sequenced", "_compactMode",
                 "_deflateBits", "_wire")
    """What L{deliver} reads for every change: slots are read at a fixed offset in the
    object, where an instance dict would cost a lookup (and a cache line) each."""

    express: Callable[[bytes], int] | None
    """The socket's C{send} while this connection may be written to directly with the
    plain frames (see L{rustybeam.notifier.IWatcher.express}): set by a plain delivery
    that found nothing queued, and dropped by anything else that writes (L{sendData}),
    by leaving the open state and by a change of what this client is sent."""
    factory: DocumentWebSocketFactory
    _state: int
    _viewer: IViewer | None
    _sequenced: bool
    _compactMode: bool
    viewer = _LeavesTheLane("_viewer", "Who reads, or C{None}: the connection is not authenticated.")
    sequenced = _LeavesTheLane("_sequenced", "Whether StreamItems carry their sequence number.")
    compact = _LeavesTheLane("_compactMode", "Whether replies and StreamItems are binary zlib JSON.")
    _deflateBits: int
    """0: no permessage-deflate; else the window bits of the shared compressed frames
    (no server context takeover); -1: this connection compresses with its own context."""
    _wire: Wire

    documentUrl: str = "/index.html"
    implicit = True

    openHandshakeTimeoutCall = None
    http_headers: dict[str, str] = {}
    http_request_data = http_response_data = http_status_line = None
    http_request_params: dict[str, list[str]] = {}
    websocket_extensions: list[Any] = []
    websocket_protocols: list[str] = []
    # What an open connection's attributes usually are, so that _compact can leave
    # them to the class (an attribute is dropped only when it is this very object).
    _perMessageCompress = None
    autoPingPending = autoPingPendingSent = autoPingTimeoutCall = None
    closeHandshakeTimeoutCall = current_frame = httpRequest = trackedTimings = None
    localCloseCode = localCloseReason = remoteCloseCode = remoteCloseReason = None
    wasNotCleanReason = websocket_protocol_in_use = None
    closedByMe = droppedByMe = failedByMe = inside_message = triggered = wasClean = False
    wasCloseHandshakeTimeout = wasOpenHandshakeTimeout = wasServerConnectionDropTimeout = False
    wasMaxFramePayloadSizeExceeded = wasMaxMessagePayloadSizeExceeded = False
    wasServingFlashSocketPolicyFile = False
    autoPingPendingSeq = send_state = 0
    websocket_origin = ""
    websocket_version = 13
    data = b""
    send_queue: deque[Any] | tuple[()] = ()
    trafficStats = _UNREAD_STATS

    def __init__(self) -> None:
        super().__init__()
        self.factory = None  # type: ignore[assignment]
        self.express = None
        self.viewer = None
        self.sequenced = self.compact = False
        self._deflateBits = 0

    @property
    def state(self) -> int:
        return self._state

    @state.setter
    def state(self, value: int) -> None:
        if value != _STATE_OPEN:
            self.express = None
        self._state = value

    def connectionMade(self) -> None:
        self._wire = Wire(self.transport)
        super().connectionMade()

    def sendData(self, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:
        """Every frame goes out through the connection's L{Wire} (one C{send} when
        nothing is queued), except Autobahn's own synchronous or chopped writes."""
        self.express = None
        if sync or chopsize or self.send_queue:
            if not isinstance(self.send_queue, deque):
                self.send_queue = deque()
            super().sendData(data, sync, chopsize)
        else:
            self._wire.write(data)

    def onConnect(self, request: Any) -> None:
        self._sent: dict[str, set[int]] = {}

    def onOpen(self) -> None:
        self._logUpgrade(101)
        now = self.factory.clock.seconds()
        self._bucket = _Bucket(float(self.factory.options.messageBurst), now)
        deflate = self._perMessageCompress
        if deflate is not None:
            self._deflateBits = deflate.server_max_window_bits if deflate.server_no_context_takeover else -1
        self.factory.notifier.subscribe(self, self.documentUrl, None)
        self._compact()

    def _compact(self) -> None:
        """
        Shrink what an open connection keeps: Autobahn keeps the handshake's request,
        headers and response and sets some forty state attributes, most of them to the
        same value on every open connection. The handshake leftovers go, attributes
        equal to (the same object as) the class's default are left to the class, and the
        rest are put in a new, right-sized dict. (The factory options are class
        attributes already: see L{DocumentWebSocketFactory.buildProtocol}.)
        """
        cls = type(self)
        state = self.__dict__
        for name in _HANDSHAKE_LEFTOVERS:
            state.pop(name, None)
        if self.openHandshakeTimeoutCall is not None:
            self.openHandshakeTimeoutCall.cancel()
        state.pop("openHandshakeTimeoutCall", None)
        state["trafficStats"] = _UNREAD_STATS
        if not state.get("send_queue", ()):
            state["send_queue"] = ()
        self.__dict__ = {name: value for name, value in state.items()
                         if getattr(cls, name, _MISSING) is not value}

    def _logUpgrade(self, status: int) -> None:
        """Write the opening handshake to the site's access log, once."""
        request, self.httpRequest = getattr(self, "httpRequest", None), None
        site = getattr(getattr(request, "channel", None), "site", None)
        if request is None or site is None:
            return
        request.code = status
        request.sentLength = 0
        site.log(request)

    def connectionLost(self, reason: Any) -> None:
        self._logUpgrade(400)
        super().connectionLost(reason)
        self.factory.notifier.forget(self)
        self.factory.release(self)

    # Incoming

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self._releaseCompression()
        options = self.factory.options
        if not self._bucket.take(self.factory.clock.seconds(), options.messagesPerSecond,
                                 options.messageBurst):
            if self._bucket.strikes > options.rateLimitStrikes:
                self.closeWith(CLOSE_POLICY, "message rate limit exceeded")
                return
            self._reply(self._error("rate-limited", "too many messages; slow down"), isBinary)
            return
        try:
            command = self._decode(payload, isBinary)
            action = command.get("action")
            if action == "subscribe":
                self._subscribe(command, isBinary)
            elif action == "unsubscribe":
                self._unsubscribe(command, isBinary)
            else:
                raise CommandError("unknown-action", f"unknown action: {str(action)[:64]!r}")
        except CommandError as e:
            self._reply(self._error(e.code, e.message), isBinary)

    def _decode(self, payload: bytes, isBinary: bool) -> dict[str, Any]:
        if isBinary:
            self.compact = True
            try:
                payload = streamitem.decompress(payload, self.factory.options.maxMessageSize)
            except ValueError as e:
                raise CommandError("bad-binary", f"binary frames must be zlib JSON: {e}") from None
        try:
            command = json.loads(payload.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise CommandError("bad-json", "messages must be JSON objects") from None
        if not isinstance(command, dict):
            raise CommandError("bad-json", "messages must be JSON objects")
        return command

    def _target(self, command: dict[str, Any]) -> tuple[str, Selector | None, bool]:
        url = command.get("url", self.documentUrl)
        if not isinstance(url, str):
            raise CommandError("bad-url", "url must be a string")
        try:
            doc = self.factory.store.locate(url)
        except Problem as p:
            raise CommandError("bad-url", p.message) from None
        raw = command.get("selector")
        if raw is None:
            return doc.url, None, doc.isHTML
        if not isinstance(raw, str):
            raise CommandError("bad-selector", "selector must be a string")
        try:
            return doc.url, selectors.compile(raw), doc.isHTML
        except Problem as p:
            raise CommandError(p.code, p.message) from None

    def _subscribe(self, command: dict[str, Any], isBinary: bool) -> None:
        url, selector, isHTML = self._target(command)
        since = command.get("since")
        if since is not None and (not isinstance(since, int) or isinstance(since, bool) or since < 0):
            raise CommandError("bad-since", "since must be a non-negative integer")
        if selector is not None and not isHTML:
            raise CommandError("not-html", "selectors apply only to .html and .htm documents")
        self._checkRead(url, selector)
        notifier = self.factory.notifier
        if self.implicit:
            notifier.unsubscribe(self, self.documentUrl, None)
            self.implicit = False
        if notifier.subscriptionCount(self) >= self.factory.options.maxSubscriptions:
            raise CommandError("too-many-subscriptions",
                               f"at most {self.factory.options.maxSubscriptions} subscriptions")
        notifier.subscribe(self, url, selector)
        current = self.factory.store.sequence(url)
        self._reply({"type": "subscribed", "url": url,
                     "selector": selector.css if selector else None,
                     "sequence": current}, isBinary)
        if since is None:
            return
        self.sequenced = True
        if not notifier.replay(self, url, selector, since, current):
            self._reply({"type": "reset", "url": url, "sequence": current}, isBinary)

    def _checkRead(self, url: str, selector: Selector | None) -> None:
        if self.viewer is None:
            return
        store = self.factory.store
        tree = store.treeOrNone(store.locate(url)) if selector is not None else None
        if not self.viewer.mayRead(url, selector.css if selector else None, tree):
            raise CommandError("forbidden", f"not allowed to read {url}")

    def _unsubscribe(self, command: dict[str, Any], isBinary: bool) -> None:
        url, selector, _ = self._target(command)
        ended = self.factory.notifier.unsubscribe(self, url, selector, allOfUrl=selector is None)
        if url == self.documentUrl and selector is None:
            self.implicit = False
        self._reply({"type": "unsubscribed", "url": url,
                     "selector": selector.css if selector else None, "ended": ended}, isBinary)

    # Outgoing

    @staticmethod
    def _error(code: str, message: str) -> dict[str, str]:
        return {"type": "error", "error": code, "message": message}

    def _reply(self, message: dict[str, Any], isBinary: bool = False) -> None:
        payload = json.dumps(message, separators=(",", ":")).encode("utf-8")
        if isBinary or self.compact:
            self.sendMessage(streamitem.compress(payload), isBinary=True)
        else:
            self.sendMessage(payload, isBinary=False)
        self._releaseCompression()

    def _releaseCompression(self) -> None:
        """Free the zlib state that permessage-deflate without context takeover does
        not need between messages (a compressor holds about 256 KB), so that an idle
        connection costs no compression memory."""
        deflate = self._perMessageCompress
        if deflate is None:
            return
        if deflate.server_no_context_takeover:
            deflate._compressor = None
        if deflate.client_no_context_takeover:
            deflate._decompressor = None

    def deliver(self, delivery: Delivery) -> None:
        """Send one StreamItem, unless this client has fallen too far behind.

        This runs once per watcher per change: the common recipient (no viewer, not
        sequenced, text, no deflate) takes the change's shared plain frame without
        further calls."""
        if self._state != _STATE_OPEN:
            return
        if self._viewer is None and not self._sequenced and not self._compactMode and not self._deflateBits:
            self._sendPlain(delivery.plain or delivery.plainFrame())
            return
        data = self._frameOf(delivery)
        if data is not None and not self._wire.write(data, self.factory.options.maxBacklogBytes):
            self._tooSlow()

    def deliverAll(self, batch: Batch) -> None:
        """Send the StreamItems of several changes of one commit, in one write."""
        if self._state != _STATE_OPEN:
            return
        if self._viewer is None and not self._sequenced and not self._compactMode and not self._deflateBits:
            self._sendPlain(batch.plain or batch.plainFrames())
            return
        frames = [f for f in map(self._frameOf, batch.deliveries) if f is not None]
        if frames and not self._wire.write(b"".join(frames), self.factory.options.maxBacklogBytes):
            self._tooSlow()

    def _sendPlain(self, data: bytes) -> None:
        """Write plain frames, and take the express lane for the next ones if the
        socket took them all and nothing else is waiting."""
        limit = self.factory.options.maxBacklogBytes
        if not self._wire.write(data, limit):
            self._tooSlow()
        elif limit >= EXPRESS_BYTES and not self.send_queue:
            self.express = self._wire.expressSend()

    def deliverRest(self, data: bytes, taken: int) -> None:
        """Queue what the express lane's C{send} did not take of C{data} (all of it
        after an error, which the transport then reports), and leave the lane."""
        self.express = None
        self._wire.queue(data[taken:] if taken else data)

    def _frameOf(self, delivery: Delivery) -> bytes | None:
        """This connection's frame of C{delivery}, or C{None} when it gets none here (a
        connection with its own compression context is sent the message at once)."""
        if self._sequenced and self._alreadySent(delivery.change):
            return None
        bits = self._deflateBits
        if bits < 0:
            message = delivery.message(self._viewer, self._sequenced, self._compactMode)
            if message is not None:
                self.sendPreparedMessage(message)
            return None
        return delivery.frame(self._viewer, self._sequenced, self._compactMode, bits)

    def _tooSlow(self) -> None:
        self.log.info("closing slow consumer {peer}", peer=self.peer)
        self.factory.notifier.forget(self)
        self.closeWith(CLOSE_POLICY, "client is reading too slowly")

    def closeWith(self, code: int, reason: str) -> None:
        """Start the closing handshake with a protocol-level code (1001, 1008, ...),
        which Autobahn's C{sendClose} reserves; the connection is dropped if the
        client does not answer within the close handshake timeout."""
        if self.state == WebSocketServerProtocol.STATE_OPEN:
            self.sendCloseFrame(code, reason.encode("utf-8"), isReply=False)

    def _alreadySent(self, change: Change) -> bool:
        """Whether this connection has had C{change} (a replay for one subscription
        can repeat what another's replay or a live delivery already sent)."""
        sent = self._sent.setdefault(change.url, set())
        if change.sequence in sent:
            return True
        sent.add(change.sequence)
        if len(sent) > 2 * SENT_MEMORY:
            self._sent[change.url] = set(sorted(sent)[-SENT_MEMORY:])
        return False

    def goAway(self) -> None:
        if self.state == WebSocketServerProtocol.STATE_OPEN:
            self.closeWith(CLOSE_GOING_AWAY, "server shutting down")
        elif self.state == WebSocketServerProtocol.STATE_CONNECTING:
            self.dropConnection(abort=True)


class DocumentWebSocketFactory(WebSocketServerFactory):
    """
    Builds document-watching protocols and enforces connection-level limits.

    @param store: resolves and reads the documents that subscriptions name.
    @param notifier: where subscriptions live and StreamItems come from.
    """

    protocol = DocumentWebSocketProtocol

    def __init__(
        self,
        store: DocumentStore,
        notifier: DocumentChangeNotifier,
        options: WebSocketOptions = WebSocketOptions(),
        clock: IReactorTime | None = None,
    ) -> None:
        super().__init__(server=options.serverName)
        if clock is None:
            from twisted.internet import reactor as clock  # type: ignore[assignment]
        self.store = store
        self.notifier = notifier
        self.options = options
        self.clock = clock
        self.open: set[DocumentWebSocketProtocol] = set()
        self.perAddress: Counter[str] = Counter()
        self._emptyWaiters: list[Deferred[None]] = []
        self._batched_timer = TimerWheel(clock)
        self.setProtocolOptions(
            versions=[13],
            failByDrop=False,
            maxFramePayloadSize=options.maxFrameSize,
            maxMessagePayloadSize=options.maxMessageSize,
            autoPingInterval=options.autoPingInterval,
            autoPingTimeout=options.autoPingTimeout,
            openHandshakeTimeout=options.openHandshakeTimeout,
            closeHandshakeTimeout=options.closeHandshakeTimeout,
            perMessageCompressionAccept=_acceptDeflate if options.compression else lambda offers: None,
        )

    _configuredProtocols: dict[type, type] | None = None

    def setProtocolOptions(self, **options: Any) -> None:
        super().setProtocolOptions(**options)
        self._configuredProtocols = {}

    def buildProtocol(self, addr: Any) -> DocumentWebSocketProtocol:
        """A protocol of a subclass of C{self.protocol} that holds this factory's
        protocol options as class attributes, so that connections need not keep a
        copy each."""
        configured = self._configuredProtocols
        if configured is None:
            configured = self._configuredProtocols = {}
        cls = configured.get(self.protocol)
        if cls is None:
            options = {name: staticmethod(value) if callable(value) else value
                       for name in self.protocol.CONFIG_ATTRS
                       for value in [getattr(self, name)]}
            # Nothing left for Autobahn to copy per connection (it would also pformat
            # the list of options for a debug message on every connection: ~2 ms).
            options["CONFIG_ATTRS"] = ()
            cls = configured[self.protocol] = type(self.protocol.__name__, (self.protocol,), options)
        protocol = cls()
        protocol.factory = self
        return protocol

    def originAllowed(self, origin: str | None) -> bool:
        if origin is None:
            return True
        return any(fnmatchcase(origin.lower(), p.lower()) for p in self.options.allowedOrigins)

    def admit(self, address: str) -> None:
        """Raise a 503 Problem if one more connection from C{address} is too many."""
        if len(self.open) >= self.options.maxConnections:
            raise TOO_MANY_CONNECTIONS.because("server is full")
        if self.perAddress[address] >= self.options.maxConnectionsPerAddress:
            raise TOO_MANY_CONNECTIONS.because("too many connections from your address")

    def connect(self, address: str, url: str, viewer: IViewer | None) -> DocumentWebSocketProtocol:
        """Build the protocol for an admitted upgrade and count it."""
        protocol = self.buildProtocol(None)
        protocol.documentUrl = url
        protocol.viewer = viewer
        protocol.address = address
        self.open.add(protocol)
        self.perAddress[address] += 1
        self.notifier.register(protocol)
        return protocol

    def release(self, protocol: DocumentWebSocketProtocol) -> None:
        if protocol in self.open:
            self.open.discard(protocol)
            address = protocol.address
            self.perAddress[address] -= 1
            if self.perAddress[address] <= 0:
                del self.perAddress[address]
        if not self.open:
            waiters, self._emptyWaiters = self._emptyWaiters, []
            for waiter in waiters:
                waiter.callback(None)

    def whenClosed(self, timeout: float) -> Deferred[None]:
        """Fire when every connection has gone, or after C{timeout} seconds."""
        d: Deferred[None] = Deferred()
        if not self.open:
            d.callback(None)
            return d
        self._emptyWaiters.append(d)
        call = self.clock.callLater(timeout, lambda: d.called or d.callback(None))

        def cancel(result: object) -> object:
            if call.active():
                call.cancel()
            return result

        return d.addBoth(cancel)


CLIENT_WINDOW_BITS = 9
"""The client_max_window_bits asked of a client that keeps its compression context
(one that cannot be asked for C{client_no_context_takeover}): the window of the
decompressor kept for it between messages (2 ** 9 bytes). A client that drops its
context is left its own window: the decompressor is released after each message, and
a small window makes its compression poor and slow (the Autobahn suite's 12.x/13.x
cases take twice as long with one)."""


class _DeflateAccept(PerMessageDeflateOfferAccept):
    """An accept that states C{server_no_context_takeover} even when the client did not
    ask for it (Autobahn only echoes it when asked)."""

    def get_extension_string(self) -> str:
        extension = super().get_extension_string()
        if self.no_context_takeover and not self.offer.request_no_context_takeover:
            extension += "; server_no_context_takeover"
        return extension


def _acceptDeflate(offers: list[Any]) -> PerMessageDeflateOfferAccept | None:
    """
    Accept the first permessage-deflate offer, always with C{server_no_context_takeover}
    (RFC 7692 7.1.1.1 lets a server declare it unasked), so that one compressed frame per
    change serves every such watcher; ask for C{client_no_context_takeover} (7.1.1.2: a
    server may, unasked), so that the decompressor is released after each message, or,
    where that cannot be asked, for a small client window.
    """
    for offer in offers:
        if isinstance(offer, PerMessageDeflateOffer):
            small = offer.accept_max_window_bits and not offer.accept_no_context_takeover
            return _DeflateAccept(
                offer,
                request_no_context_takeover=offer.accept_no_context_takeover,
                request_max_window_bits=CLIENT_WINDOW_BITS if small else 0,
                no_context_takeover=True,
            )
    return None


def isUpgrade(request: Request) -> bool:
    """Whether C{request} asks for a WebSocket (C{Upgrade: websocket})."""
    upgrade = request.getHeader(b"upgrade")
    return upgrade is not None and b"websocket" in [
        token.strip().lower() for token in upgrade.split(b",")
    ]


@dataclass
class WebSocketUpgrade:
    """
    Hands an HTTP request's transport to a new WebSocket protocol, as Autobahn's
    C{WebSocketResource} does, with the connection's document and viewer attached.
    """

    factory: DocumentWebSocketFactory

    def check(self, request: Request) -> None:
        """The checks that precede any upgrade; raise a Problem to refuse it."""
        if request.getHeader(b"sec-websocket-version") != b"13":
            raise UPGRADE_REQUIRED
        origin = request.getHeader(b"origin")
        text = origin.decode("latin-1") if origin else None
        if not self.factory.originAllowed(text) and not sameOrigin(text, request.getHeader(b"host")):
            raise ORIGIN_REFUSED
        self.factory.admit(_address(request))

    def upgrade(self, request: Request, url: str, viewer: IViewer | None) -> object:
        protocol = self.factory.connect(_address(request), url, viewer)
        protocol.httpRequest = request
        transport, request.channel.transport = request.channel.transport, None
        if isinstance(transport, ProtocolWrapper):
            transport.wrappedProtocol = protocol
        elif isinstance(transport.protocol, ProtocolWrapper):
            transport.protocol.wrappedProtocol = protocol
        else:
            transport.protocol = protocol
        protocol.makeConnection(transport)
        if hasattr(transport, "_networkProducer"):
            transport._networkProducer.resumeProducing()
        elif hasattr(transport, "resumeProducing"):
            transport.resumeProducing()
        data = request.method + b" " + request.uri + b" HTTP/1.1\r\n"
        for name, values in request.requestHeaders.getAllRawHeaders():
            data += name + b": " + b",".join(values) + b"\r\n"
        data += b"\r\n"
        protocol.dataReceived(data)
        return NOT_DONE_YET


def _address(request: Request) -> str:
    return getattr(request.getClientAddress(), "host", "?")
