"""
The seams between the HTTP/WebSocket front and access control.

The document and WebSocket resources ask an L{IGuard} who a request is and whether
it may do what it asks; the answer is an L{IViewer}, which the WebSocket layer keeps
for the life of a connection to check subscriptions and redact StreamItems.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Hashable, Protocol

if TYPE_CHECKING:
    from lxml import etree
    from twisted.internet.defer import Deferred

    from rustybeam.changes import Change


class IViewer(Protocol):
    """Who a client is, as far as reading documents goes."""

    key: Hashable
    """Equal for viewers that may see exactly the same things (e.g. the user name)."""
    name: str | None
    """The authenticated user name, or C{None} for an anonymous client."""

    def may(self, method: str, url: str, selector: str | None,
            tree: etree._ElementTree | None) -> bool:
        """Whether this viewer may use C{method} on C{selector} (or the whole
        document) of C{url}."""

    def mayRead(self, url: str, selector: str | None, tree: etree._ElementTree | None) -> bool:
        """Whether this viewer may GET C{selector} (or the whole document) of C{url}."""

    hidesParts: bool
    """Whether rules may hide parts of documents from this viewer (if not, the
    redaction methods need not be asked)."""

    def redactDocument(self, url: str, tree: etree._ElementTree) -> bytes | None:
        """The document without what this viewer may not GET, or C{None} when it
        may see all of it."""

    def redact(self, change: Change) -> str | None:
        """The change's content with what this viewer may not GET removed; C{None}
        when nothing of the change is visible to it."""


class IGuard(Protocol):
    """Authenticates a request and authorizes one operation on one document."""

    authenticates: bool
    """Whether requests may carry credentials (so that a foreign page could ride on
    a browser's cached ones)."""

    def viewer(self, authorization: bytes | None, method: str = "GET") -> IViewer | Deferred[IViewer]:
        """The viewer for an C{Authorization} header value on a C{method} request (or
        a Deferred of it, when checking takes a worker thread); raises (or fails
        with) a 401 Problem when credentials are wrong, or missing where they are
        required."""

    def authorize(
        self,
        viewer: IViewer,
        method: str,
        url: str,
        selector: str | None,
        tree: etree._ElementTree | None,
    ) -> None:
        """Raise a 401 (anonymous) or 403 Problem unless C{viewer} may do this."""
