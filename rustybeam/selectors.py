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
from cssselect.xpath import ExpressionError
from lxml import etree

from rustybeam.errors import BAD_RANGE, BAD_SELECTOR, EMPTY_SELECTOR

MAX_SELECTOR_LENGTH = 4096
_translator = HTMLTranslator()


@dataclass(frozen=True, eq=False)
class Selector:
    """A compiled CSS selector: C{select(root)} lists matches in document order."""

    css: str
    _xpath: etree.XPath

    def select(self, root: etree._Element) -> list[etree._Element]:
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
        expression = _translator.css_to_xpath(css)
        return Selector(css, etree.XPath(expression))
    except (SelectorError, ExpressionError, etree.XPathError) as e:
        raise BAD_SELECTOR.because(_oneLine(str(e) or css)) from None


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


