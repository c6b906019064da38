"""
Whole-document and fragment parsing with lexbor (through selectolax), into the lxml
tree that html5lib would build.

lexbor is an HTML5-conformant parser written in C, about 100 times faster than
html5lib. Its tree is converted to lxml node by node. html5lib stays the reference:
where the two may build different trees, or where html5lib's lxml tree builder
changes what it was given, L{parse} returns C{None} and the caller uses html5lib.
That is the case for foreign content (SVG, MathML: html5lib names their elements
with namespaces), C{<template>} (html5lib keeps only part of its content), elements
that the standard has changed since html5lib was written (C{isindex}, C{rb}, C{rtc},
C{search}, C{dialog}, and any element but an option in a C{select}), names that
are not XML names (html5lib rewrites them), comments that XML cannot hold, comments
outside the root element, and any doctype other than C{<!DOCTYPE html>}.
"""

from __future__ import annotations

import re

from lxml import etree

try:
    from selectolax.lexbor import LexborHTMLParser
except ImportError:  # pragma: no cover - declared dependency; html5lib still works
    LexborHTMLParser = None

_FOREIGN = frozenset(("svg", "math", "template", "isindex", "rb", "rtc", "search", "dialog"))
"""Elements whose treatment html5lib (which follows an older edition of the
standard in places) and lexbor may not share."""
_IN_SELECT = frozenset(("option", "optgroup", "script"))
_XML_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*\Z")
_DOCTYPE = re.compile(r"\s*<!doctype\s+html\s*>", re.IGNORECASE)
_DOCTYPE_ANY = re.compile(r"\s*<!doctype", re.IGNORECASE)
_NEWLINE_DROPPERS = re.compile(r"<(?:pre|listing|textarea)\b", re.IGNORECASE)
_TABLE_PARTS = re.compile(r"<(?:table|caption|td|th)\b", re.IGNORECASE)


def _newlineInTable(text: str) -> bool:
    """Whether C{text} may hold a C{<pre>}, C{<listing>} or C{<textarea>} inside a
    table: html5lib keeps the newline after its start tag there, which the standard
    (and lexbor) drops."""
    return bool(_NEWLINE_DROPPERS.search(text)) and bool(_TABLE_PARTS.search(text))


class _Unsupported(Exception):
    """The document needs html5lib."""


def parse(text: str) -> etree._ElementTree | None:
    """The document C{text} parsed as html5lib would, or C{None} if html5lib must."""
    if LexborHTMLParser is None or _newlineInTable(text):
        return None
    if _DOCTYPE.match(text):
        doctype = "<!DOCTYPE html>"
    elif _DOCTYPE_ANY.match(text):
        return None
    else:
        doctype = ""
    parsed = LexborHTMLParser(text)
    document = parsed.root.parent if parsed.root is not None else None
    if document is None:
        return None
    html = None
    node = document.child
    while node is not None:
        tag = node.tag
        if tag == "html":
            html = node
        elif tag != "-doctype":
            return None
        node = node.next
    if html is None:
        return None
    root = etree.fromstring("<!DOCTYPE html><html/>") if doctype else etree.Element("html")
    try:
        _convert(html, root)
    except _Unsupported:
        return None
    return root.getroottree()


FRAGMENT_CONTEXTS = frozenset((
    "div", "ul", "ol", "li", "p", "span", "section", "article", "main", "nav", "header",
    "footer", "aside", "body", "h1", "h2", "h3", "h4", "h5", "h6", "dl", "dt", "dd", "a",
    "b", "i", "em", "strong", "small", "code", "label", "blockquote", "figure",
    "figcaption", "details", "summary", "fieldset", "legend", "address", "menu", "button",
))
"""Contexts in which lexbor's fragment parse is used (the differential test covers
each). Elsewhere html5lib parses the fragment: raw text contexts, C{select},
C{template}, C{head}, foreign content, and the table and C{form} contexts, where
html5lib's fragment parse follows an older edition of the standard (a C{<pre>}'s
leading newline, C{<image>}, nested buttons and forms)."""


def parseFragment(text: str, context: str) -> list[etree._Element | str] | None:
    """
    C{text} parsed as the children of a C{context} element, as html5lib's fragment
    parse would (elements without tails, and text strings, in order), or C{None} if
    html5lib must parse it.
    """
    if LexborHTMLParser is None or context not in FRAGMENT_CONTEXTS or _newlineInTable(text):
        return None
    parsed = LexborHTMLParser(text, is_fragment=True, fragment_tag=context)
    nodes: list[etree._Element | str] = []
    node = parsed.root
    try:
        while node is not None:
            tag = node.tag
            if tag == "-text":
                text = node.text_content
                if nodes and isinstance(nodes[-1], str):
                    nodes[-1] += text
                elif text:
                    nodes.append(text)
            elif tag == "-comment":
                nodes.append(_comment(node))
            elif tag.startswith("-"):
                return None
            else:
                if tag in _FOREIGN or tag == "select" or not _usableName(tag):
                    return None
                element = etree.Element(tag)
                _convert(node, element)
                nodes.append(element)
            node = node.next
    except _Unsupported:
        return None
    return nodes


def _comment(node: object) -> etree._Comment:
    comment = node.html[4:-3]  # type: ignore[attr-defined]
    if "--" in comment or comment.endswith("-"):
        raise _Unsupported("comment")
    return etree.Comment(comment)


_usable: set[str] = set()
"""Tag and attribute names already found usable as they are."""


def _usableName(name: str) -> bool:
    if name in _usable:
        return True
    if not _XML_NAME.match(name) or name.startswith("xml"):
        return False
    if len(_usable) < 10000:
        _usable.add(name)
    return True


def _attributes(node: object) -> dict[str, str]:
    attributes = node.attributes  # type: ignore[attr-defined]
    if not attributes:
        return {}
    for name, value in attributes.items():
        if not _usableName(name):
            raise _Unsupported(name)
        if value is None:
            attributes[name] = ""
    return attributes


def _element(node: object, parent: etree._Element) -> etree._Element:
    tag = node.tag  # type: ignore[attr-defined]
    if tag in _FOREIGN or not _usableName(tag):
        raise _Unsupported(tag)
    return etree.SubElement(parent, tag, _attributes(node))


def _convert(html: object, root: etree._Element) -> None:
    """Copy lexbor's tree under C{html} into C{root}, depth first; C{last} is the
    node that text goes after (C{None}: into the parent's text)."""
    for name, value in _attributes(html).items():
        root.set(name, value)
    stack: list[tuple[object, etree._Element, etree._Element | None, bool]] = []
    node, parent, last, inSelect = html.child, root, None, False  # type: ignore[attr-defined]
    while True:
        while node is not None:
            tag = node.tag
            if tag == "-text":
                text = node.text_content
                if last is not None:
                    last.tail = (last.tail or "") + text
                else:
                    parent.text = (parent.text or "") + text
            elif tag == "-comment":
                last = _comment(node)
                parent.append(last)
            else:
                if inSelect and tag not in _IN_SELECT:
                    raise _Unsupported(tag)
                element = _element(node, parent)
                if node.child is not None:
                    stack.append((node.next, parent, element, inSelect))
                    node, parent, last = node.child, element, None
                    inSelect = inSelect or tag == "select"
                    continue
                last = element
            node = node.next
        if not stack:
            return
        node, parent, last, inSelect = stack.pop()
