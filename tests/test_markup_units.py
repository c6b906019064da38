"""
Fast tests of HTML parsing and serialization (L{rustybeam.markup}) beyond those in
test_units.py: the parser each thread keeps, reading files leniently, whole-document
parsing and serialization details.
"""

from __future__ import annotations

import threading

import html5lib
import pytest
from lxml import etree

from rustybeam import markup


def inThread(fn):
    """Call C{fn} in a new thread (which has no parser yet) and return its result."""
    result = []
    thread = threading.Thread(target=lambda: result.append(fn()))
    thread.start()
    thread.join(30)
    assert result, "the thread failed"
    return result[0]


def test_a_thread_builds_its_parser_once(monkeypatch: pytest.MonkeyPatch) -> None:
    built = []
    real = html5lib.HTMLParser

    def HTMLParser(*args, **kwargs):
        parser = real(*args, **kwargs)
        built.append(parser)
        return parser

    monkeypatch.setattr(html5lib, "HTMLParser", HTMLParser)

    def parseTwice() -> list[str]:
        markup.parseFragment("<b>x</b>")
        return [e.tag for e in markup.parseDocument("<p>y</p>").getroot().iter()]

    assert inThread(parseTwice) == ["html", "head", "body", "p"]
    assert len(built) == 1
    inThread(parseTwice)
    assert len(built) == 2


def test_threads_parse_with_parsers_of_their_own() -> None:
    mine = markup._parser()
    assert markup._parser() is mine
    assert inThread(markup._parser) is not mine


def test_a_whole_document_with_foreign_content_is_parsed_as_html5lib_would() -> None:
    tree = markup.parseWhole("<p>x</p><svg><rect/></svg>")
    assert [e.tag for e in tree.getroot().iter()] == [
        "html", "head", "body", "p", "{http://www.w3.org/2000/svg}svg",
        "{http://www.w3.org/2000/svg}rect"]


def test_a_whole_document_parses_into_plain_html_tag_names() -> None:
    tree = markup.parseWhole("<!DOCTYPE html><title>t</title><p>x</p>")
    assert [e.tag for e in tree.getroot().iter()] == ["html", "head", "title", "body", "p"]
    assert [e.tag for e in markup.parseDocument("<p>x</p>").getroot().iter()] == [
        "html", "head", "body", "p"]


def test_a_file_that_starts_with_a_byte_order_mark_is_read_without_it() -> None:
    tree = markup.parseLeniently("\ufeff<p id=p>x</p>".encode("utf-8"))
    body = tree.getroot().find("body")
    assert body.text is None
    assert [(e.tag, e.text) for e in body] == [("p", "x")]


def test_a_byte_order_mark_later_in_a_file_is_kept() -> None:
    tree = markup.parseLeniently("<p id=p>x\ufeff</p>".encode("utf-8"))
    assert tree.getroot().find(".//p").text == "x\ufeff"


def test_a_file_that_is_not_utf8_is_read_in_the_encoding_it_declares() -> None:
    tree = markup.parseLeniently(b"<meta charset=windows-1252><p id=p>caf\xe9</p>")
    assert tree.getroot().find(".//p").text == "caf\u00e9"


def test_a_file_neither_utf8_nor_storable_is_read_with_replacements() -> None:
    tree = markup.parseLeniently(b"<p id=p>a\xffb\x01c</p>")
    assert tree.getroot().find(".//p").text == "a\ufffdb\ufffdc"


def test_every_character_a_tree_cannot_hold_is_replaced() -> None:
    unstorable = "".join(map(chr, [*range(0, 9), 0x0B, *range(0x0E, 0x20), 0xFFFE, 0xFFFF]))
    tree = markup.parseLeniently(f"<p id=p>[{unstorable}]</p>".encode("utf-8"))
    text = tree.getroot().find(".//p").text
    assert text.startswith("[") and text.endswith("]")
    assert set(text[1:-1]) == {"\ufffd"}
    kept = "\t\n\r\x7f\ufffd\ufffc"
    tree = markup.parseLeniently(f"<p id=p>\x01{kept}</p>".encode("utf-8"))
    assert tree.getroot().find(".//p").text == "\ufffd" + kept.replace("\r", "\n")


def test_elements_are_serialized_as_html() -> None:
    (br, text) = markup.parseFragment("<br>x")
    assert markup.serialize(br) == "<br>"
    assert text == "x"
    assert markup.serializeAll(markup.parseFragment("<p>a</p><hr>")) == "<p>a</p><hr>"


def test_a_serialized_element_leaves_out_its_tail() -> None:
    parent = etree.fromstring("<div><b>b</b>tail</div>")
    assert markup.serialize(parent[0]) == "<b>b</b>"


def test_a_document_serializes_as_utf8_html() -> None:
    tree = markup.parseDocument("<!DOCTYPE html><p>caf\u00e9<br></p>")
    assert markup.serializeDocument(tree) == (
        "<!DOCTYPE html>\n<html><head></head><body><p>caf\u00e9<br></p></body></html>"
    ).encode("utf-8")


def test_a_leading_comment_is_serialized_on_its_own_line() -> None:
    tree = markup.parseDocument("<!--c--><p>x</p>")
    assert markup.serializeDocument(tree) == (
        b"<!DOCTYPE html>\n<!--c-->\n<html><head></head><body><p>x</p></body></html>")


def test_a_fragment_in_the_context_of_a_cell_keeps_its_text_and_elements() -> None:
    nodes = markup.parseFragment("x<b>y</b>z", "td")
    assert [n if isinstance(n, str) else n.tag for n in nodes] == ["x", "b", "z"]
    assert all(n.tail is None for n in nodes if not isinstance(n, str))


def test_a_context_is_matched_whatever_its_case() -> None:
    nodes = markup.parseFragment("<td>1</td>", "TR")
    assert [n.tag for n in nodes] == ["td"]


def test_a_text_context_parses_markup_as_text() -> None:
    assert markup.parseFragment("<b>x</b>", "title") == ["<b>x</b>"]
    assert markup.parseFragment("<b>x</b>", "script") == ["<b>x</b>"]


def test_a_whole_document_is_parsed_by_lexbor_when_it_can_be(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from rustybeam import fastparse

    fast = etree.ElementTree(etree.Element("html"))
    monkeypatch.setattr(fastparse, "parse", lambda text: fast)
    assert markup.parseWhole("<p>x</p>") is fast


def test_replacing_elements_go_before_the_siblings_that_follow() -> None:
    parent = etree.fromstring("<div><b/><x/><s/></div>")
    markup.replaceWith(parent[1], [etree.Element("i"), etree.Element("u")])
    assert [e.tag for e in parent] == ["b", "i", "u", "s"]


def test_text_replacing_an_element_joins_the_tail_of_the_one_before() -> None:
    parent = etree.fromstring("<div>a<s/>s-tail<b>b</b>tail</div>")
    markup.replaceWith(parent[1], ["x", etree.Element("u"), "y"])
    assert etree.tostring(parent, encoding="unicode") == "<div>a<s/>s-tailx<u/>ytail</div>"


def test_same_structure_tells_a_different_parent_behind_a_comment() -> None:
    doc = markup.parseDocument
    assert not markup.sameStructure(doc("<div><!--c--></div><p>x</p>"),
                                    doc("<div><p>x</p></div><!--c-->"))


def test_fragments_are_parsed_by_lexbor_in_the_contexts_where_it_builds_html5libs_nodes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def html5lib() -> object:
        raise AssertionError("html5lib parsed a fragment that lexbor can")

    monkeypatch.setattr(markup, "_parser", html5lib)
    nodes = markup.parseFragment('<li id="a">x</li> tail', "ul")
    assert [getattr(n, "tag", n) for n in nodes] == ["li", " tail"]
