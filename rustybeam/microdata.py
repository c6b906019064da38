"""
HTML microdata (WHATWG "itemscope"/"itemprop") read from lxml trees.

Rusty Beam keeps its configuration, users and rules as microdata in ordinary HTML
tables, so everything that reads those files goes through L{items}. The reader follows
the WHATWG algorithm closely enough for those files: properties are found by crawling
an item's subtree and its C{itemref} targets, stopping at nested C{itemscope}
elements, whose content belongs to the nested item.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Mapping, Union

from lxml import etree

from rustybeam.markup import parseDocument

Value = Union[str, "Item"]
"""A property value: a string, or a nested item."""

_SRC_ELEMENTS = frozenset("audio embed iframe img source track video".split())
_HREF_ELEMENTS = frozenset("a area link".split())
_VALUE_ELEMENTS = frozenset("data meter".split())
_LIST_SEPARATORS = re.compile(r"[,\s]+")


@dataclass(frozen=True, eq=False)
class Property:
    """One C{itemprop} occurrence: its name, value and the element that carries it."""

    name: str
    value: Value
    element: etree._Element

    @property
    def line(self) -> int | None:
        return self.element.sourceline

    def texts(self) -> tuple[str, ...]:
        """
        The value as a list of words: the texts of the element's C{li} items when it
        has any (C{<td itemprop="roles"><ul><li>a</li><li>b</li></ul></td>}), else the
        string value split on commas and whitespace. A nested item gives C{()}.
        """
        if isinstance(self.value, Item):
            return ()
        listItems = _outermostListItems(self.element)
        if listItems:
            return tuple(t for t in (_text(li) for li in listItems) if t)
        return tuple(word for word in _LIST_SEPARATORS.split(self.value) if word)


@dataclass(frozen=True, eq=False)
class Item:
    """An C{itemscope} element with its type and properties in document order."""

    type: str | None
    properties: Mapping[str, tuple[Property, ...]]
    element: etree._Element
    id: str | None = None
    names: tuple[str, ...] = field(default=())

    @property
    def line(self) -> int | None:
        return self.element.sourceline

    @property
    def typeName(self) -> str | None:
        return typeName(self)

    def all(self, name: str) -> tuple[Value, ...]:
        return tuple(p.value for p in self.properties.get(name, ()))

    def first(self, name: str) -> Value | None:
        found = self.properties.get(name, ())
        return found[0].value if found else None

    def text(self, name: str) -> str | None:
        """The first string value of C{name}; nested items are skipped."""
        for p in self.properties.get(name, ()):
            if isinstance(p.value, str):
                return p.value
        return None

    def items(self, name: str) -> tuple[Item, ...]:
        """The nested item values of C{name}."""
        return tuple(v for v in self.all(name) if isinstance(v, Item))

    def texts(self, name: str) -> tuple[str, ...]:
        """Every word of every C{name} value (see L{Property.texts}), in order."""
        return tuple(word for p in self.properties.get(name, ()) for word in p.texts())


def typeName(item: Item | str | None) -> str | None:
    """
    The last path segment of an item type, so that C{https://rustybeam.net/schema/Credential}
    and C{http://rustybeam.net/Credential} are both C{"Credential"}.
    """
    itemtype = item.type if isinstance(item, Item) else item
    if not itemtype:
        return None
    first = itemtype.split()[0]
    return first.rstrip("/").rsplit("/", 1)[-1].rsplit("#", 1)[-1] or None


def items(
    tree: etree._ElementTree | etree._Element, type: str | None = None
) -> list[Item]:
    """
    The top-level items of a document (C{itemscope} without C{itemprop}) in document
    order; with C{type}, only those whose L{typeName} or full type equals it.
    """
    return [i for i in _Reader(tree).topLevel() if _typeMatches(i, type)]


def allItems(
    tree: etree._ElementTree | etree._Element, type: str | None = None
) -> list[Item]:
    """Every item in the document, nested ones included, in document order."""
    return [i for i in _Reader(tree).everything() if _typeMatches(i, type)]


def parse(source: str | bytes) -> etree._ElementTree:
    """Parse HTML as a browser would, ready for L{items}."""
    return parseDocument(source)


def _typeMatches(item: Item, wanted: str | None) -> bool:
    if wanted is None:
        return True
    if item.type is not None and wanted in item.type.split():
        return True
    return typeName(item) == typeName(wanted)


class _Reader:
    """One pass over one document: document order and id lookup computed once."""

    def __init__(self, tree: etree._ElementTree | etree._Element) -> None:
        root = tree.getroot() if isinstance(tree, etree._ElementTree) else tree
        self.root = root
        self.order: dict[etree._Element, int] = {}
        self.byId: dict[str, etree._Element] = {}
        for index, element in enumerate(_elements(root)):
            self.order[element] = index
            ident = element.get("id")
            if ident is not None and ident not in self.byId:
                self.byId[ident] = element
        self.cache: dict[etree._Element, Item] = {}

    def topLevel(self) -> Iterator[Item]:
        for element in self.order:
            if element.get("itemscope") is not None and element.get("itemprop") is None:
                yield self.item(element, frozenset())

    def everything(self) -> Iterator[Item]:
        for element in self.order:
            if element.get("itemscope") is not None:
                yield self.item(element, frozenset())

    def item(self, element: etree._Element, visiting: frozenset[etree._Element]) -> Item:
        if element in self.cache:
            return self.cache[element]
        visiting = visiting | {element}
        found: dict[str, list[Property]] = {}
        for propElement in self.propertyElements(element):
            if propElement in visiting:
                continue
            value = self.value(propElement, visiting)
            for name in propElement.get("itemprop", "").split():
                found.setdefault(name, []).append(Property(name, value, propElement))
        made = Item(
            type=(element.get("itemtype") or "").strip() or None,
            properties={name: tuple(props) for name, props in found.items()},
            element=element,
            id=element.get("itemid"),
            names=tuple(element.get("itemprop", "").split()),
        )
        self.cache[element] = made
        return made

    def propertyElements(self, element: etree._Element) -> list[etree._Element]:
        pending = list(_childElements(element))
        for ref in element.get("itemref", "").split():
            target = self.byId.get(ref)
            if target is not None:
                pending.append(target)
        seen: set[etree._Element] = set()
        results: list[etree._Element] = []
        while pending:
            current = pending.pop()
            if current in seen or current is element:
                continue
            seen.add(current)
            if current.get("itemscope") is None:
                pending.extend(_childElements(current))
            if current.get("itemprop") is not None:
                results.append(current)
        results.sort(key=lambda e: self.order.get(e, -1))
        return results

    def value(self, element: etree._Element, visiting: frozenset[etree._Element]) -> Value:
        if element.get("itemscope") is not None:
            return self.item(element, visiting)
        return propertyValue(element)


def propertyValue(element: etree._Element) -> str:
    """The string value of a non-item property element."""
    tag = element.tag if isinstance(element.tag, str) else ""
    for attribute in _valueAttributes(tag.lower()):
        found = element.get(attribute)
        if found is not None:
            return found.strip()
    return _text(element)


def _valueAttributes(tag: str) -> tuple[str, ...]:
    if tag in _SRC_ELEMENTS:
        return ("content", "src")
    if tag in _HREF_ELEMENTS:
        return ("content", "href")
    if tag == "object":
        return ("content", "data")
    if tag in _VALUE_ELEMENTS:
        return ("content", "value")
    if tag == "time":
        return ("content", "datetime")
    return ("content",)


def _text(element: etree._Element) -> str:
    return "".join(_texts(element)).strip()


def _texts(element: etree._Element) -> Iterator[str]:
    if element.text:
        yield element.text
    for child in element:
        if isinstance(child.tag, str):
            yield from _texts(child)
        if child.tail:
            yield child.tail


def _elements(root: etree._Element) -> Iterable[etree._Element]:
    return (e for e in root.iter() if isinstance(e.tag, str))


def _childElements(element: etree._Element) -> list[etree._Element]:
    return [child for child in element if isinstance(child.tag, str)]


def _outermostListItems(element: etree._Element) -> list[etree._Element]:
    found: list[etree._Element] = []
    stack = list(reversed(_childElements(element)))
    while stack:
        current = stack.pop()
        if current.tag == "li":
            found.append(current)
        elif current.get("itemscope") is None:
            stack.extend(reversed(_childElements(current)))
    return found
