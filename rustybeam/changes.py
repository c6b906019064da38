"""
The change record: what the document layer hands to the notification point.

One L{Change} is made for every applied write. It is immutable and carries both
versions of the document, which is what a selector-scoped watcher needs to decide
whether the change touches what it watches, before or after. The store edits its
trees in place, so it hands over the versions lazily (L{Versions}): they are rebuilt
only when something asks for them, once per change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

from lxml import etree

Path = tuple[int, ...]


class Versions(Protocol):
    """Where a change's two versions of the document come from."""

    removed: Sequence[Path]
    inserted: Sequence[Path]
    containers: Sequence[Path]

    def treeBefore(self) -> etree._ElementTree | None: ...

    def treeAfter(self) -> etree._ElementTree | None: ...


PENDING: Any = type("Pending", (), {"__repr__": lambda self: "PENDING"})()
"""The value of a version or element field that is taken from C{versions} when read."""

_LAZY = frozenset(("before", "after", "removed", "inserted", "containers"))


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
    """Per-document sequence number."""
    content: str
    """The changed nodes as stored: new nodes for PUT/POST, removed ones for DELETE."""
    before: etree._ElementTree | None = None
    """The document before the change (C{None} if it did not exist)."""
    after: etree._ElementTree | None = None
    """The document after the change (C{None} once deleted, or when not HTML)."""
    removed: tuple[etree._Element, ...] = field(default=())
    """Changed elements of C{before} (replaced or deleted; the root for whole writes)."""
    inserted: tuple[etree._Element, ...] = field(default=())
    """New elements of C{after} (the root for whole-document writes)."""
    containers: tuple[etree._Element, ...] = field(default=())
    """Elements of C{after} that received new nodes (POST targets, parents of PUT)."""
    size: int = 0
    """Bytes of the document as this change stored it (what keeping it costs)."""
    versions: Versions | None = field(default=None, repr=False)
    """Where the fields left L{PENDING} come from."""
    body: bytes | None = field(default=None, repr=False)
    """The request body as sent (C{None} for DELETE): with C{method}, C{url} and
    C{selector}, what a replica needs to apply the same write to its own copy."""

    @classmethod
    def lazy(cls, method: str, url: str, selector: str, sequence: int, content: str,
             size: int, versions: Versions, body: bytes | None = None) -> Change:
        """A change whose versions and elements are rebuilt from C{versions} when read."""
        return cls(method, url, selector, sequence, content, PENDING, PENDING, PENDING,
                   PENDING, PENDING, size, versions, body)

    def __getattribute__(self, name: str) -> Any:
        value = object.__getattribute__(self, name)
        if value is PENDING and name in _LAZY:
            value = self._resolve(name)
            object.__setattr__(self, name, value)
        return value

    def _resolve(self, name: str) -> Any:
        versions = self.versions
        assert versions is not None
        if name == "before":
            return versions.treeBefore()
        if name == "after":
            return versions.treeAfter()
        paths = getattr(versions, name)
        if not paths:
            return ()
        return _resolve(self.before if name == "removed" else self.after, paths)

    def versionBefore(self) -> etree._ElementTree | None:
        """The document before the change, rebuilt if need be but not kept on the
        change (for a reader that needs it once)."""
        before = object.__getattribute__(self, "before")
        if before is PENDING:
            assert self.versions is not None
            return self.versions.treeBefore()
        return before

    @property
    def wholeDocument(self) -> bool:
        return self.selector == ""


def _resolve(tree: etree._ElementTree | None, paths: Sequence[Path]) -> tuple[etree._Element, ...]:
    if tree is None:
        return ()
    found = []
    for path in paths:
        element = tree.getroot()
        for index in path:
            element = element[index]
        found.append(element)
    return tuple(found)


ChangeSink = Callable[[Sequence[Change]], None]
"""Where a store hands the changes of one commit: one document's, in the order applied
(one change, or the several writes of one group commit, which reach each watcher in
one write)."""
