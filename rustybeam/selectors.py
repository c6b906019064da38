"""
CSS selectors: parsed by cssselect, compiled to lxml XPath once, cached.

A L{Selector} is the compiled, reusable form; L{compile} is the only way to make one
and raises L{rustybeam.errors.Problem} for anything that is not a usable selector.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import unquote

from cssselect import HTMLTranslator, SelectorError
from cssselect.parser import Element, Hash, parse
from cssselect.xpath import ExpressionError
from lxml import etree

from rustybeam.errors import BAD_RANGE, BAD_SELECTOR, EMPTY_SELECTOR
from rustybeam.ids import IdIndex

MAX_SELECTOR_LENGTH = 4096
_translator = HTMLTranslator()


@dataclass(frozen=True, eq=False)
class Selector:
    """A compiled CSS selector: C{select(root)} lists matches in document order."""

    css: str
    _xpath: etree.XPath
    id: str | None = None
    """The id, for a selector that is one C{#id} alone."""

    def select(self, root: etree._Element, ids: IdIndex | None = None) -> list[etree._Element]:
        """The matches under C{root}, looked up in C{ids} (the index of C{root}'s
        tree) when it can tell."""
        if ids is not None and self.id is not None:
            found = ids.find(self.id)
            if found is not None:
                return found
        return [node for node in self._xpath(root) if isinstance(node.tag, str)]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Selector) and other.css == self.css

    def __hash__(self) -> int:
        return hash(self.css)


def compile(css: str) -> Selector:
    """Compile C{css}, or raise a 400 L{Problem} saying why it is unusable."""
    css = css.strip()
    if not css:
        raise EMPTY_SELECTOR
    if len(css) > MAX_SELECTOR_LENGTH:
        raise BAD_SELECTOR.because(f"longer than {MAX_SELECTOR_LENGTH} characters")
    return _compile(css)


@lru_cache(maxsize=4096)
def _compile(css: str) -> Selector:
    try:
        name = _idOnly(css)
        if name is not None:
            return Selector(css, etree.XPath(
                "descendant-or-self::*/@id[. = %s]/.." % _translator.xpath_literal(name)), name)
        return Selector(css, etree.XPath(_translator.css_to_xpath(css)))
    except (SelectorError, ExpressionError, etree.XPathError) as e:
        raise BAD_SELECTOR.because(_oneLine(str(e) or css)) from None


def _idOnly(css: str) -> str | None:
    """
    The id of a selector that is one C{#id} alone (what most writes name): its XPath
    finds the same elements as cssselect's in half the time (libxml2 tests the C{id}
    attributes themselves instead of evaluating a predicate on every element), and
    an L{IdIndex} finds them at once.
    """
    parsed = parse(css)
    if len(parsed) != 1 or parsed[0].pseudo_element is not None:
        return None
    tree = parsed[0].parsed_tree
    if not (isinstance(tree, Hash) and isinstance(tree.selector, Element)
            and tree.selector.element is None and tree.selector.namespace is None):
        return None
    return str(tree.id)


def fromRangeHeader(value: str) -> Selector:
    """Parse a C{Range: selector=<css>} value; the css may be percent-encoded."""
    unit, sep, css = value.partition("=")
    if not sep or unit.strip().lower() != "selector":
        raise BAD_RANGE
    css = css.strip()
    if "%" in css:
        try:
            css = unquote(css, errors="strict")
        except UnicodeDecodeError:
            raise BAD_SELECTOR.because("percent-encoding is not UTF-8") from None
    return compile(css)


def _oneLine(text: str) -> str:
    return " ".join(text.split())[:200]


