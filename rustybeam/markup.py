"""
HTML parsing, serialization and tree editing with html5lib and lxml.

Documents are parsed as a browser would, into lxml trees: by html5lib, the reference,
or by lexbor where it builds the same tree (L{parseWhole}). Body fragments
(by lexbor too, in the contexts where it builds html5lib's nodes) are parsed in the context of the element they will live under, so that C{<li>},
C{<tr>}, C{<td>} or C{<option>} land where they belong.
"""

from __future__ import annotations

import re
import threading
from copy import deepcopy
from itertools import zip_longest
from typing import Callable, Iterator, Union

import html5lib
from lxml import etree

from rustybeam import fastparse

Node = Union[etree._Element, str]
"""A parsed fragment node: an element (with its tail dropped) or a text string."""

_parsers = threading.local()


def _parser() -> html5lib.HTMLParser:
    """This thread's parser: html5lib builds its parser state machine (a few dozen
    classes) per parser, which is a fifth of the cost of parsing a small fragment."""
    parser = getattr(_parsers, "parser", None)
    if parser is None:
        parser = _parsers.parser = html5lib.HTMLParser(
            tree=html5lib.getTreeBuilder("lxml"), namespaceHTMLElements=False
        )
    return parser


def parseDocument(text: str | bytes) -> etree._ElementTree:
    return _parser().parse(text)


def parseWhole(text: str) -> etree._ElementTree:
    """Parse a whole document: with lexbor when it builds the tree html5lib would
    (L{rustybeam.fastparse}), otherwise with html5lib."""
    tree = fastparse.parse(text)
    return tree if tree is not None else parseDocument(text)


def parseLeniently(data: bytes) -> etree._ElementTree:
    """
    Parse a file as a browser would even when it holds characters that an lxml
    tree cannot (C0 controls, noncharacters): those become U+FFFD. Files are read as
    UTF-8 (what they are served as); one that is not UTF-8 is left to html5lib's
    encoding detection.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    try:
        if text is None:
            return parseDocument(data)
        return parseWhole(text[1:] if text.startswith("\ufeff") else text)
    except ValueError:
        text = data.decode("utf-8", errors="replace")
        return parseDocument(_UNSTORABLE.sub("\ufffd", text))


_UNSTORABLE = re.compile("[\x00-\x08\x0b\x0e-\x1f\ufffe\uffff]")


def sameStructure(a: etree._ElementTree, b: etree._ElementTree) -> bool:
    """Whether two trees have the same elements, attributes and nesting (text aside)."""
    def shape(tree: etree._ElementTree) -> Iterator[tuple[object, ...]]:
        for element in tree.getroot().iter():
            if isinstance(element.tag, str):
                parent = element.getparent()
                yield element.tag, tuple(sorted(element.attrib.items())), len(element), (
                    parent.tag if parent is not None else None)

    return all(x == y for x, y in zip_longest(shape(a), shape(b)))


def parseFragment(text: str, context: str = "div") -> list[Node]:
    """Parse C{text} as the children of an element named C{context}."""
    container = context if _isPlainTag(context) else "div"
    if container == "html":
        container = "body"
    fast = fastparse.parseFragment(text, container)
    if fast is not None:
        return fast
    parsed = _parser().parseFragment(text, container=container)
    nodes: list[Node] = []
    for item in parsed:
        if isinstance(item, str):
            nodes.append(item)
            continue
        tail = item.tail
        item.tail = None
        nodes.append(item)
        if tail:
            nodes.append(tail)
    return nodes


def _isPlainTag(name: object) -> bool:
    return isinstance(name, str) and name.isalnum() and name.isascii()


def serialize(node: Node) -> str:
    """The outer HTML of one node, without its tail."""
    if isinstance(node, str):
        return _escapeText(node)
    return etree.tostring(node, method="html", encoding="unicode", with_tail=False)


def serializeAll(nodes: list[Node], separator: str = "") -> str:
    return separator.join(serialize(n) for n in nodes)


def serializeDocument(tree: etree._ElementTree) -> bytes:
    root = tree.getroot()
    doctype = tree.docinfo.doctype or "<!DOCTYPE html>"
    body = etree.tostring(root, method="html", encoding="unicode")
    prefix = _leadingSiblings(root)
    return (doctype + "\n" + prefix + body).encode("utf-8")


def _leadingSiblings(root: etree._Element) -> str:
    out = []
    prev = root.getprevious()
    while prev is not None:
        out.append(etree.tostring(prev, method="html", encoding="unicode", with_tail=False) + "\n")
        prev = prev.getprevious()
    return "".join(reversed(out))


def copyTree(tree: etree._ElementTree) -> etree._ElementTree:
    return deepcopy(tree)


def _escapeText(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# Editing trees: text between elements lives in a parent's text or a sibling's tail,
# so inserting and removing must move it along.


def _appendText(parent: etree._Element, previous: etree._Element | None, text: str | None) -> None:
    if not text:
        return
    if previous is None:
        parent.text = (parent.text or "") + text
    else:
        previous.tail = (previous.tail or "") + text


def appendNodes(parent: etree._Element, nodes: list[Node]) -> None:
    """Insert C{nodes} after the last child of C{parent} (without counting its children)."""
    _place(parent, lastChild(parent), nodes, parent.append)


def replaceWith(target: etree._Element, nodes: list[Node]) -> None:
    """Put C{nodes} where C{target} is, and remove it (keeping its tail text in place).
    Its position is never counted: that would cost a walk over its preceding siblings."""
    parent = target.getparent()
    tail = target.tail
    last = _place(parent, target.getprevious(), nodes, target.addprevious)
    parent.remove(target)
    _appendText(parent, last, tail)


def _place(parent: etree._Element, previous: etree._Element | None, nodes: list[Node],
           insert: Callable[[etree._Element], None]) -> etree._Element | None:
    """Put C{nodes} in C{parent} after C{previous}: elements by C{insert}, text into
    the tail (or text) before them; the last element before what follows."""
    for node in nodes:
        if isinstance(node, str):
            _appendText(parent, previous, node)
        else:
            insert(node)
            previous = node
    return previous


def lastChild(parent: etree._Element) -> etree._Element | None:
    """The last child of C{parent} (found from the end, without counting the others)."""
    try:
        return parent[-1]
    except IndexError:
        return None


def detach(target: etree._Element) -> etree._Element:
    """Remove C{target}, keeping its tail text in place; return its former parent."""
    parent = target.getparent()
    if parent is None:
        for child in list(target):
            target.remove(child)
        target.text = None
        return target
    tail = target.tail
    previous = target.getprevious()
    parent.remove(target)
    _appendText(parent, previous, tail)
    return parent
