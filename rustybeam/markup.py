"""
HTML parsing and serialization with html5lib and lxml.

Documents are parsed as a browser would (html5lib into an lxml tree). Body fragments
are parsed in the context of the element they will live under, so that C{<li>},
C{<tr>}, C{<td>} or C{<option>} land where they belong.
"""

from __future__ import annotations

import threading
from copy import deepcopy
from typing import Union

import html5lib
from lxml import etree

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


def parseFragment(text: str, context: str = "div") -> list[Node]:
    """Parse C{text} as the children of an element named C{context}."""
    container = context if _isPlainTag(context) else "div"
    if container == "html":
        container = "body"
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
