"""
Whether stored markup parses back into the tree it was serialized from.

A write stores the serialization of the edited tree, so the tree must be what a
browser would build from those bytes; markup that an HTML parser would move (a
C{<div>} in a C{<p>}, a C{<tr>} outside a table) is refused instead (400).

L{documentRoundTrips} decides it for a whole document by parsing it again. Once a
document is known to round-trip, L{editRoundTrips} decides it for one edit at the
cost of the edit: the tree builder's treatment of a node depends only on the document
mode (the doctype) and on the elements open at that point, so a I{skeleton} -- the
doctype, the chain of ancestors of the edited element with their attributes, the
element siblings next to each link of the chain (without their content), and the
new nodes themselves -- is parsed in place of the document (by L{markup.parseWhole}:
lexbor where it builds html5lib's tree, html5lib elsewhere).
"""

from __future__ import annotations

from copy import deepcopy
import itertools
from typing import Iterator

from lxml import etree

from rustybeam import markup


def documentRoundTrips(tree: etree._ElementTree, data: bytes) -> bool:
    """Whether C{data}, the serialization of C{tree}, parses back into its structure."""
    return markup.sameStructure(tree, markup.parseWhole(data.decode("utf-8")))


def editRoundTrips(tree: etree._ElementTree, container: etree._Element, index: int,
                   count: int, inserted: list[etree._Element] | None = None) -> bool:
    """
    Whether the C{count} elements at C{index} of C{container} (just inserted into
    C{tree}, with the text around them; C{inserted}, when given), or the gap at
    C{index} when C{count} is 0 (something was removed there), parse back where they
    are.
    """
    skeleton = _skeleton(container, index, count, inserted or None)
    doctype = tree.docinfo.doctype or "<!DOCTYPE html>"
    if not _generalize(skeleton):
        return _reparses(skeleton, doctype)
    # The key is the tree itself (its XML form), not the markup: markup can lose
    # nodes (children of a void element), and then is not what was decided on.
    key = doctype + "\n" + etree.tostring(skeleton, encoding="unicode")
    decision = _decisions.get(key)
    if decision is None:
        decision = _reparses(skeleton, doctype)
        if len(_decisions) >= DECISIONS:
            _decisions.clear()
        _decisions[key] = decision
    return decision


DECISIONS = 4096
"""How many skeleton decisions are remembered (writes to the same places of the same
kind of document, such as items of one list, share them)."""

_decisions: dict[str, bool] = {}

_RAW_TEXT_TAGS = tuple("{*}" + name for name in (
    "script", "style", "textarea", "title", "xmp", "iframe", "noembed", "noframes", "noscript",
    "plaintext"))
_OPAQUE = ("id", "class")
_WHITESPACE = " \t\n\r\f"


def _reparses(skeleton: etree._Element, doctype: str) -> bool:
    """Whether C{skeleton}'s markup parses back into its structure."""
    data = doctype + "\n" + etree.tostring(skeleton, method="html", encoding="unicode")
    return markup.sameStructure(etree.ElementTree(skeleton), markup.parseWhole(data))


def _generalize(skeleton: etree._Element) -> bool:
    """
    Make C{skeleton} stand for every skeleton that HTML parsing treats alike: text
    that holds more than whitespace (not a comment's) becomes C{x}, and C{id} and
    C{class} values become empty (the tree builder reads neither, and looks at text
    only for being empty, whitespace or not). Whether it did: nothing is changed
    around raw text (C{script}, C{style}, C{textarea}...), whose content the
    serializer does not escape.
    """
    if next(skeleton.iter(*_RAW_TEXT_TAGS), None) is not None:
        return False
    for element in skeleton.iter():
        tail = element.tail
        if tail and tail.strip(_WHITESPACE):
            element.tail = "x"
        if not isinstance(element.tag, str):
            continue  # a comment's content stays: it can end the comment early (<!-->)
        text = element.text
        if text and text.strip(_WHITESPACE):
            element.text = "x"
        attributes = element.attrib
        for name in _OPAQUE:
            if name in attributes:
                attributes[name] = ""
    return True


def _shallow(element: etree._Element) -> etree._Element:
    """An element's tag and attributes, standing for it with its content (an empty
    C{<li>} gets a comment, as lxml leaves out the end tag of an empty one)."""
    copy = etree.Element(element.tag, dict(element.attrib))
    if element.tag == "li":
        copy.append(etree.Comment(""))
    return copy


def _elementSibling(element: etree._Element, preceding: bool) -> etree._Element | None:
    for sibling in element.itersiblings(preceding=preceding):
        if isinstance(sibling.tag, str):
            return sibling
    return None


def _skeleton(container: etree._Element, index: int, count: int,
              inserted: list[etree._Element] | None = None) -> etree._Element:
    chain = [container, *container.iterancestors()]
    chain.reverse()
    top = current = _shallow(chain[0])
    for depth, link in enumerate(chain[1:]):
        copy = _shallow(link)
        if depth == 0:
            for child in chain[0]:
                if child is link:
                    current.append(copy)
                elif isinstance(child.tag, str):
                    current.append(_shallow(child))
        else:
            previous = _elementSibling(link, preceding=True)
            if previous is not None:
                current.append(_shallow(previous))
            current.append(copy)
            following = _elementSibling(link, preceding=False)
            if following is not None:
                current.append(_shallow(following))
        current = copy
    if container is chain[0]:
        for child in container[:max(index - 1, 0)]:
            if isinstance(child.tag, str):
                current.append(_shallow(child))
    if inserted is not None:
        previousNode = inserted[0].getprevious()
    else:
        previousNode = container[index - 1] if index > 0 else None
    if previousNode is not None:
        if isinstance(previousNode.tag, str):
            shallow = _shallow(previousNode)
            shallow.tail = previousNode.tail
            current.append(shallow)
        elif len(current):
            current[-1].tail = previousNode.tail
        else:
            current.text = previousNode.tail
    else:
        current.text = container.text
    new = inserted if inserted is not None else [container[index + k] for k in range(count)]
    for node in new:
        current.append(deepcopy(node))
    rest = inserted[-1].itersiblings() if inserted is not None else _after(container, index + count)
    for node in rest:
        if isinstance(node.tag, str):
            current.append(_shallow(node))
            if container is not chain[0]:
                break
    return top


def _after(container: etree._Element, index: int) -> Iterator[etree._Element]:
    """The children of C{container} from C{index} on, one at a time (a slice would
    make a proxy for every one of them, and a list may hold thousands)."""
    if index >= len(container):
        return iter(())
    first = container[index]
    return itertools.chain((first,), first.itersiblings())
