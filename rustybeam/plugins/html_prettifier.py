"""
Rusty Beam's C{html-prettifier} plugin: indents the HTML that write requests get
back.

Only responses to C{PUT}, C{POST} and C{DELETE} with an HTML C{Content-Type} and a
successful status (200, and 206: rustybeam answers selector writes with 206 where
Rusty Beam answers 200) are changed; reads and errors are left alone, and so is
what is stored. An element whose children are all inline (phrasing) content stays
on one line; others put each child on its own line, two spaces deeper. C{pre},
C{textarea}, C{script} and C{style} keep their content exactly; a document keeps its
doctype.
"""

from __future__ import annotations

import html
from typing import Iterator

from lxml import etree
from twisted.web.server import Request

from rustybeam import markup
from rustybeam.config import PluginConfig
from rustybeam.plugins import PipelineContext, Response, Stage

INDENT = "  "
METHODS = (b"PUT", b"POST", b"DELETE")
PHRASING = frozenset(
    "a abbr b bdi bdo br button cite code data del dfn em i img input ins kbd label mark "
    "meter output progress q ruby s samp select small span strong sub sup time u var wbr".split()
)
VERBATIM = frozenset("pre textarea script style".split())
_CONTEXT = {"tr": "tbody", "td": "tr", "th": "tr", "li": "ul", "option": "select",
            "thead": "table", "tbody": "table", "tfoot": "table", "caption": "table",
            "dt": "dl", "dd": "dl", "head": "html", "body": "html"}


def _startTag(element: etree._Element) -> str:
    attributes = "".join(f' {name}="{html.escape(value, quote=True)}"'
                         for name, value in element.attrib.items())
    return f"<{element.tag}{attributes}>"


def _inline(element: etree._Element) -> bool:
    return element.tag in VERBATIM or all(
        isinstance(child.tag, str) and child.tag in PHRASING for child in element)


def _lines(element: etree._Element, depth: int) -> Iterator[str]:
    indent = INDENT * depth
    if not isinstance(element.tag, str):
        yield indent + markup.serialize(element)
        return
    if _inline(element):
        yield indent + markup.serialize(element).strip()
        return
    yield indent + _startTag(element)
    if element.text and element.text.strip():
        yield indent + INDENT + markup.serialize(element.text.strip())
    for child in element:
        yield from _lines(child, depth + 1)
        if child.tail and child.tail.strip():
            yield indent + INDENT + markup.serialize(child.tail.strip())
    yield indent + f"</{element.tag}>"


def prettify(text: str) -> str:
    """C{text} (a document or a fragment) indented."""
    start = text.lstrip()[:20].lower()
    if start.startswith("<!doctype") or start.startswith("<html"):
        tree = markup.parseDocument(text)
        doctype = (tree.docinfo.doctype or "<!DOCTYPE html>") if start.startswith("<!doctype") else None
        body = "\n".join(_lines(tree.getroot(), 0))
        return (doctype + "\n" + body if doctype else body) + "\n"
    first = text.lstrip()[1:].split(">", 1)[0].split()[0].lower() if text.lstrip().startswith("<") else ""
    nodes = markup.parseFragment(text, _CONTEXT.get(first, "div"))
    out = []
    for node in nodes:
        if isinstance(node, str):
            if node.strip():
                out.append(markup.serialize(node.strip()))
        else:
            out.extend(_lines(node, 0))
    return "\n".join(out) + "\n"


class HtmlPrettifier(Stage):
    def response(self, request: Request, response: Response) -> None:
        if request.method not in METHODS or response.status not in (200, 206):
            return
        contentType = response.header(b"content-type") or b""
        if b"text/html" not in contentType.lower() or not response.body:
            return
        try:
            text = response.body.decode("utf-8")
        except UnicodeDecodeError:
            return
        response.setBody(prettify(text).encode("utf-8"))


def stage(plugin: PluginConfig, context: PipelineContext) -> Stage:
    return HtmlPrettifier()
