"""
The change record: what the document layer hands to the notification point.

One L{Change} is made for every applied write. It is immutable and carries both
versions of the document (the store is copy-on-write, so the old tree is never
mutated), which is what a selector-scoped watcher needs to decide whether the change
touches what it watches, before or after.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from lxml import etree


@dataclass(frozen=True, eq=False)
class Change:
    """One applied write to one document."""

    method: str
    """C{PUT}, C{POST} or C{DELETE}."""
    url: str
    """The document's canonical URL, e.g. C{/dir/index.html}."""
    selector: str
    """The CSS selector of the request, or C{""} for a whole-document write."""
    sequence: int
    """Per-document sequence number, 1 for the first change after start-up."""
    content: str
    """The changed nodes as stored: new nodes for PUT/POST, removed ones for DELETE."""
    before: etree._ElementTree | None = None
    after: etree._ElementTree | None = None
    removed: tuple[etree._Element, ...] = field(default=())
    """Changed elements of C{before} (replaced or deleted; the root for whole writes)."""
    inserted: tuple[etree._Element, ...] = field(default=())
    """New elements of C{after} (the root for whole-document writes)."""
    containers: tuple[etree._Element, ...] = field(default=())
    """Elements of C{after} that received new nodes (POST targets, parents of PUT)."""
    size: int = 0
    """Bytes of the document as this change stored it (what keeping it costs)."""
    body: bytes | None = None
    """The request body as sent (C{None} for DELETE): with C{method}, C{url} and
    C{selector}, what a replica needs to apply the same write to its own copy."""

    @property
    def wholeDocument(self) -> bool:
        return self.selector == ""


ChangeSink = Callable[[Change], None]
