"""
Fast, network-free tests of the pieces behind the document server: selectors, path
mapping, fragment parsing, atomic writes and the document store's change records.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import pytest_twisted
from lxml import etree
from twisted.internet.defer import DeferredList

from rustybeam import documents, markup, paths, selectors
from rustybeam.changes import Change
from rustybeam.documents import DocumentStore, StoreOptions, _outermost, atomicWrite
from rustybeam.errors import Problem

DOCUMENTS = Path(__file__).resolve().parent / "data" / "documents"


def tags(nodes: list[markup.Node]) -> list[str]:
    return [n.tag if not isinstance(n, str) else "#text" for n in nodes]


# Selectors


@pytest.mark.parametrize("css", ["#list li", "li.item", "ul > li:first-child", "#a, #b",
                                 "p:nth-child(2)", "[data-x='1']", "*"])
def test_valid_selector_compiles(css: str) -> None:
    assert selectors.compile(css).css == css


def test_selector_selects_elements_in_document_order() -> None:
    root = markup.parseDocument(DOCUMENTS.joinpath("doc.html").read_text()).getroot()
    found = selectors.compile("#b, #a").select(root)
    assert [e.get("id") for e in found] == ["a", "b"]


_ID_DOCUMENT = markup.parseDocument(
    '<html id="a"><body><ul><li id="a">1<li id="b">2<li id=\'q"x\'>3<li id="A">4'
    '<li><span id="a">5</span></ul><p id="a b">6</p><p id="">7</p></body></html>')


@pytest.mark.parametrize("css", ["#a", "#b", "*#a", "#A", "#\\71 \\22 x", "#zz", "#a\\ b"])
def test_id_selector_finds_what_the_general_translation_finds(css: str) -> None:
    root = _ID_DOCUMENT.getroot()
    general = etree.XPath(selectors._translator.css_to_xpath(css))
    assert selectors._idOnly(css) is not None
    assert selectors.compile(css).select(root) == general(root)


def test_id_selector_matches_every_element_with_that_id_in_document_order() -> None:
    found = selectors.compile("#a").select(_ID_DOCUMENT.getroot())
    assert [e.tag for e in found] == ["html", "li", "span"]


def test_id_selector_takes_what_the_index_finds() -> None:
    from rustybeam.ids import IdIndex

    root = _ID_DOCUMENT.getroot()
    index = IdIndex(root)
    (only,) = selectors.compile("#b").select(root, index)
    assert only.text == "2"
    index._at["b"] = [root]  # an index is believed while its element holds the id and is in the tree
    root.set("id", "b")
    try:
        assert selectors.compile("#b").select(root, index) == [root]
    finally:
        root.set("id", "a")


def test_id_selector_asks_xpath_when_the_index_cannot_tell() -> None:
    from rustybeam.ids import IdIndex

    root = _ID_DOCUMENT.getroot()
    found = selectors.compile("#a").select(root, IdIndex(root))
    assert [e.tag for e in found] == ["html", "li", "span"]


@pytest.mark.parametrize("css", ["li#a", "#a, #b", "#a > li", "[id=a]", "#a:first-child"])
def test_selectors_beyond_one_id_use_the_general_translation(css: str) -> None:
    assert selectors._idOnly(css) is None


def test_selector_is_trimmed() -> None:
    assert selectors.compile("  #list  ").css == "#list"


@pytest.mark.parametrize("css", ["", "   ", "\t\n"])
def test_empty_selector_is_refused_with_400(css: str) -> None:
    with pytest.raises(Problem) as e:
        selectors.compile(css)
    assert e.value.status == 400


@pytest.mark.parametrize("css", [">>>invalid<<<", "div[", "div(", "#a,", "p:nth-child(",
                                 "p:no-such-pseudo", "::before"])
def test_malformed_selector_is_refused_with_400(css: str) -> None:
    with pytest.raises(Problem) as e:
        selectors.compile(css)
    assert e.value.status == 400
    assert "\n" not in e.value.message


def test_selector_longer_than_the_limit_is_refused_with_400() -> None:
    assert selectors.compile("a" * selectors.MAX_SELECTOR_LENGTH)
    with pytest.raises(Problem) as e:
        selectors.compile("a" * (selectors.MAX_SELECTOR_LENGTH + 1))
    assert e.value.status == 400


def test_selector_longer_than_the_limit_says_so() -> None:
    with pytest.raises(Problem) as e:
        selectors.compile("a" * (selectors.MAX_SELECTOR_LENGTH + 1))
    assert e.value.message == (
        f"malformed CSS selector: longer than {selectors.MAX_SELECTOR_LENGTH} characters")


def test_malformed_selector_message_is_the_parser_s_reason_on_one_line() -> None:
    from cssselect import HTMLTranslator, SelectorError

    css = "div >\n\n  > p"
    with pytest.raises(SelectorError) as reason:
        HTMLTranslator().css_to_xpath(css)
    with pytest.raises(Problem) as e:
        selectors.compile(css)
    assert e.value.message == "malformed CSS selector: " + " ".join(str(reason.value).split())


def test_malformed_selector_message_is_cut_at_200_characters() -> None:
    with pytest.raises(Problem) as e:
        selectors.compile("p:" + "x" * 300)
    reason = e.value.message.removeprefix("malformed CSS selector: ")
    assert len(reason) == 200 and reason.endswith("x" * 100)


def test_selectors_with_the_same_text_are_equal_and_hash_alike() -> None:
    a = selectors.Selector("#a", etree.XPath("//*"))
    same = selectors.Selector("#a", etree.XPath("//p"))
    other = selectors.Selector("#b", etree.XPath("//*"))
    assert a == same and hash(a) == hash(same)
    assert a != other and a != "#a"
    assert len({hash(selectors.compile(f"#s{i}")) for i in range(20)}) == 20


def test_range_header_selector_may_contain_equals_signs() -> None:
    assert selectors.fromRangeHeader('selector=[data-x="1"]').css == '[data-x="1"]'


def test_percent_encoded_range_value_that_is_not_utf8_says_so() -> None:
    with pytest.raises(Problem) as e:
        selectors.fromRangeHeader("selector=%ff")
    assert e.value.message == "malformed CSS selector: percent-encoding is not UTF-8"


def test_range_header_value_names_the_selector() -> None:
    assert selectors.fromRangeHeader("selector=#list li").css == "#list li"


def test_range_header_unit_is_case_insensitive_and_spaces_are_ignored() -> None:
    assert selectors.fromRangeHeader(" Selector = #list ").css == "#list"


@pytest.mark.parametrize("value, css", [
    ("selector=%23list%20li", "#list li"),
    ("selector=%23list%20%3E%20li", "#list > li"),
    ("selector=%5Bdata-x%3D%22%C3%A9%22%5D", '[data-x="é"]'),
])
def test_percent_encoded_range_value_is_decoded(value: str, css: str) -> None:
    assert selectors.fromRangeHeader(value).css == css


def test_percent_encoded_range_value_that_is_not_utf8_is_refused_with_400() -> None:
    with pytest.raises(Problem) as e:
        selectors.fromRangeHeader("selector=%ff")
    assert e.value.status == 400


@pytest.mark.parametrize("value", ["bytes=0-10", "#list", "selector", "selectors=#a", "=#a"])
def test_range_header_without_selector_unit_is_refused_with_400(value: str) -> None:
    with pytest.raises(Problem) as e:
        selectors.fromRangeHeader(value)
    assert e.value.status == 400


def test_empty_range_selector_is_refused_with_400() -> None:
    with pytest.raises(Problem) as e:
        selectors.fromRangeHeader("selector=")
    assert e.value.status == 400


# Paths


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    root.mkdir()
    (root / "index.html").write_text("root")
    (root / "doc.html").write_text("doc")
    (root / "dir").mkdir()
    (root / "dir" / "index.html").write_text("dir")
    (tmp_path / "outside.html").write_text("secret")
    return root


@pytest.mark.parametrize("raw", ["/", "/index.html", "/?q=1"])
def test_root_maps_to_index_html(root: Path, raw: str) -> None:
    doc = paths.resolve(str(root), raw)
    assert doc.url == "/index.html"
    assert doc.filename == str(root / "index.html")


@pytest.mark.parametrize("raw", ["/dir", "/dir/", "/dir/index.html", "/dir?x", "/dir/#frag"])
def test_directory_maps_to_its_index_html(root: Path, raw: str) -> None:
    doc = paths.resolve(str(root), raw)
    assert doc.url == "/dir/index.html"
    assert doc.filename == str(root / "dir" / "index.html")


def test_missing_directory_with_trailing_slash_maps_to_index_html(root: Path) -> None:
    assert paths.resolve(str(root), "/new/").url == "/new/index.html"


def test_percent_encoded_name_is_decoded(root: Path) -> None:
    doc = paths.resolve(str(root), b"/caf%C3%A9%20menu.html")
    assert doc.url == "/café menu.html"
    assert doc.filename == str(root / "café menu.html")


def test_document_is_html_by_extension(root: Path) -> None:
    assert paths.resolve(str(root), "/a.html").isHTML
    assert paths.resolve(str(root), "/a.HTM").isHTML
    assert not paths.resolve(str(root), "/a.css").isHTML


TRAVERSALS = [
    "/../outside.html",
    "/dir/../../outside.html",
    "/%2e%2e/outside.html",
    "/%2E%2E/outside.html",
    "/.%2e/outside.html",
    "/%2e./outside.html",
    "/..%2foutside.html",
    "/..%2Foutside.html",
    "/%2e%2e%2foutside.html",
    "/..\\outside.html",
    "/..%5coutside.html",
    "/..%5Coutside.html",
    "/dir%2f..%2f..%2foutside.html",
    "/outside.html%00.html",
    "/%00",
    "/%c0%ae%c0%ae/outside.html",
    "//outside.html",
    "/./doc.html",
    "/%2e/doc.html",
    "relative.html",
    "/" + "a" * (paths.MAX_PATH_LENGTH + 1),
]


@pytest.mark.parametrize("raw", TRAVERSALS)
def test_path_traversal_is_refused(root: Path, raw: str) -> None:
    with pytest.raises(Problem) as e:
        paths.resolve(str(root), raw.encode("latin-1"))
    assert e.value.status in (400, 404)


@pytest.mark.parametrize("raw, status, reason", [
    ("/" + "a" * paths.MAX_PATH_LENGTH, 400, "too long"),
    ("relative.html", 400, "must be absolute"),
    ("/%ff.html", 400, "not UTF-8"),
    ("/..%2foutside.html", 400, "encoded separator or NUL"),
    ("/..%5coutside.html", 400, "encoded separator or NUL"),
    ("/doc.html%00.txt", 400, "encoded separator or NUL"),
    ("/dir/../doc.html", 400, "dot segment"),
    ("/./doc.html", 400, "dot segment"),
    ("/doc%01.html", 400, "control character"),
    ("/doc%1f.html", 400, "control character"),
    ("/doc%7f.html", 400, "control character"),
    ("/dir//doc.html", 400, "empty segment"),
    ("/.rustybeam-x1.tmp", 404, "temporary file"),
    ("/../outside.html", 400, "dot segment"),
])
def test_refused_path_says_why(root: Path, raw: str, status: int, reason: str) -> None:
    with pytest.raises(Problem) as e:
        paths.resolve(str(root), raw.encode("latin-1"))
    assert (e.value.status, e.value.message.split(": ", 1)[1]) == (status, reason)


def test_path_of_the_longest_allowed_length_is_accepted(root: Path) -> None:
    raw = "/" + "a" * (paths.MAX_PATH_LENGTH - 1)
    assert paths.resolve(str(root), raw).url == raw


@pytest.mark.parametrize("raw", ["/doc.html?q=1?r=2", "/doc.html#x#y", "/doc.html?q#f",
                                 "/doc.html#f?q"])
def test_query_and_fragment_end_the_path_at_their_first_mark(root: Path, raw: str) -> None:
    assert paths.resolve(str(root), raw).url == "/doc.html"


@pytest.mark.parametrize("name", [".rustybeam-notes.html", "notes.tmp"])
def test_only_names_with_both_marks_of_a_temporary_file_are_hidden(root: Path, name: str) -> None:
    assert paths.resolve(str(root), "/" + name).url == "/" + name


def test_symlink_leaving_the_root_says_so(root: Path) -> None:
    (root / "link.html").symlink_to(root.parent / "outside.html")
    with pytest.raises(Problem) as e:
        paths.resolve(str(root), "/link.html")
    assert e.value.message == "no such document: outside the document root"


def test_symlink_into_a_subdirectory_names_the_target_s_full_path(root: Path) -> None:
    (root / "a dir").mkdir()
    (root / "a dir" / "x y.html").write_text("target")
    (root / "alias.html").symlink_to(root / "a dir" / "x y.html")
    resolved = paths.resolve(str(root), "/alias.html")
    assert resolved.url == "/a dir/x y.html"
    assert resolved.filename == str(root / "a dir" / "x y.html")


def test_symlink_leaving_the_root_is_refused(root: Path) -> None:
    (root / "link.html").symlink_to(root.parent / "outside.html")
    with pytest.raises(Problem) as e:
        paths.resolve(str(root), "/link.html")
    assert e.value.status == 404


def test_symlinked_directory_leaving_the_root_is_refused(root: Path) -> None:
    (root / "linkdir").symlink_to(root.parent)
    for raw in ("/linkdir/outside.html", "/linkdir/new.html", "/linkdir/"):
        with pytest.raises(Problem) as e:
            paths.resolve(str(root), raw)
        assert e.value.status == 404


def test_dangling_symlink_leaving_the_root_is_refused(root: Path) -> None:
    (root / "dangling.html").symlink_to(root.parent / "not-yet.html")
    with pytest.raises(Problem):
        paths.resolve(str(root), "/dangling.html")


def test_symlink_inside_the_root_names_the_document_it_points_to(root: Path) -> None:
    (root / "alias.html").symlink_to(root / "doc.html")
    resolved = paths.resolve(str(root), "/alias.html")
    assert (resolved.url, resolved.filename) == ("/doc.html", os.path.realpath(root / "doc.html"))


def test_temporary_files_of_atomic_writes_are_not_documents(root: Path) -> None:
    with pytest.raises(Problem) as e:
        paths.resolve(str(root), "/.rustybeam-abc123.tmp")
    assert e.value.status == 404


# Fragment parsing


def test_li_is_parsed_in_the_context_of_ul() -> None:
    nodes = markup.parseFragment("<li>x</li>", "ul")
    assert tags(nodes) == ["li"]


def test_tr_is_parsed_in_the_context_of_tbody() -> None:
    nodes = markup.parseFragment("<tr><td>1</td></tr>", "tbody")
    assert tags(nodes) == ["tr"]
    assert markup.serialize(nodes[0]) == "<tr><td>1</td></tr>"


def test_td_is_parsed_in_the_context_of_tr() -> None:
    nodes = markup.parseFragment("<td>1</td><td>2</td>", "tr")
    assert tags(nodes) == ["td", "td"]


def test_option_is_parsed_in_the_context_of_select() -> None:
    nodes = markup.parseFragment("<option>o</option>", "select")
    assert tags(nodes) == ["option"]


def test_table_parts_lose_their_tags_outside_a_table_context() -> None:
    # The reason for the context: in a <div>, <td> is not an element at all.
    assert "td" not in tags(markup.parseFragment("<td>1</td>", "div"))


def test_text_fragment_is_one_text_node() -> None:
    assert markup.parseFragment("hello & bye", "div") == ["hello & bye"]


def test_mixed_text_and_elements_keep_their_order() -> None:
    nodes = markup.parseFragment("a<b>b</b>c<i>i</i>", "p")
    assert tags(nodes) == ["#text", "b", "#text", "i"]
    assert nodes[0] == "a" and nodes[2] == "c"
    assert nodes[1].tail is None
    assert markup.serializeAll(nodes) == "a<b>b</b>c<i>i</i>"


def test_unclosed_markup_is_completed_as_a_browser_would() -> None:
    nodes = markup.parseFragment("<p>one<p>two", "div")
    assert markup.serializeAll(nodes) == "<p>one</p><p>two</p>"


def test_text_is_serialized_escaped() -> None:
    assert markup.serialize("1 < 2 & 3") == "1 &lt; 2 &amp; 3"


def test_text_serializes_greater_than_escaped_too() -> None:
    assert markup.serialize("a > b") == "a &gt; b"
    assert markup.serializeAll(["x", "y"], "\n") == "x\ny"


def test_a_context_that_is_not_a_plain_tag_name_parses_as_a_div() -> None:
    for context in ("x-y", "svg:rect", "ünï"):
        assert tags(markup.parseFragment("<li>a</li><td>b</td>", context)) == ["li", "#text"]


def test_a_fragment_for_the_html_element_parses_as_body_content() -> None:
    nodes = markup.parseFragment("<p>a</p>text", "html")
    assert tags(nodes) == ["p", "#text"] and nodes[1] == "text"


def test_a_file_with_characters_a_tree_cannot_hold_is_read_with_replacements() -> None:
    tree = markup.parseLeniently("<p id=p>a\x01b\x0bc\ufffed\x7fe</p>".encode("utf-8"))
    (p,) = selectors.compile("#p").select(tree.getroot())
    assert p.text == "a\ufffdb\ufffdc\ufffdd\x7fe"
    assert markup.parseLeniently(b"<p>tab\tand\nnewline</p>").getroot().find(".//p").text == (
        "tab\tand\nnewline")


def test_same_structure_compares_tags_attributes_nesting_and_not_text() -> None:
    same = markup.sameStructure
    doc = markup.parseDocument
    assert same(doc("<p a=1>x</p>"), doc("<p a=1>y</p>"))
    assert not same(doc("<p a=1>x</p>"), doc("<p a=2>x</p>"))
    assert not same(doc("<p><b>x</b></p>"), doc("<p><i>x</i></p>"))
    assert not same(doc("<div><p>x</p></div>"), doc("<div></div><p>x</p>"))
    assert not same(doc("<p>x</p>"), doc("<p>x</p><p>y</p>"))
    assert not same(doc("<p><b></b><b></b></p>"), doc("<p><b><b></b></b></p>"))


def test_a_document_keeps_its_doctype_and_what_precedes_its_root() -> None:
    tree = markup.parseDocument("<!DOCTYPE html><!-- one --><!-- two --><html><body>x</body></html>")
    assert markup.serializeDocument(tree) == (
        b"<!DOCTYPE html>\n<!-- one -->\n<!-- two -->\n<html><head></head><body>x</body></html>")
    bare = markup.parseDocument("<p>x</p>")
    assert markup.serializeDocument(bare).startswith(b"<!DOCTYPE html>\n<html>")


def test_appended_nodes_keep_text_before_after_and_between_them() -> None:
    parent = etree.fromstring("<div>lead<b>b</b>tail</div>")
    markup.appendNodes(parent, ["t1", etree.fromstring("<i>i</i>"), "t2",
                                etree.fromstring("<u>u</u>"), "t3"])
    assert etree.tostring(parent, encoding="unicode") == (
        "<div>lead<b>b</b>tailt1<i>i</i>t2<u>u</u>t3</div>")
    first = etree.fromstring("<div>lead</div>")
    markup.appendNodes(first, ["x", ""])
    assert etree.tostring(first, encoding="unicode") == "<div>leadx</div>"
    empty = etree.fromstring("<div/>")
    markup.appendNodes(empty, ["only"])
    assert empty.text == "only"


def test_a_replaced_element_leaves_its_tail_after_the_new_nodes() -> None:
    parent = etree.fromstring("<div>a<b>b</b>tail<i>i</i></div>")
    markup.replaceWith(parent[0], ["x", etree.fromstring("<u>u</u>"), "y"])
    assert etree.tostring(parent, encoding="unicode") == "<div>ax<u>u</u>ytail<i>i</i></div>"
    textOnly = etree.fromstring("<div>a<b>b</b>tail</div>")
    markup.replaceWith(textOnly[0], ["x"])
    assert etree.tostring(textOnly, encoding="unicode") == "<div>axtail</div>"


def test_a_detached_element_leaves_its_tail_in_place() -> None:
    parent = etree.fromstring("<div>a<b>b</b>tail<i>i</i>end</div>")
    assert markup.detach(parent[0]) is parent
    assert etree.tostring(parent, encoding="unicode") == "<div>atail<i>i</i>end</div>"
    markup.detach(parent[0])
    assert etree.tostring(parent, encoding="unicode") == "<div>atailend</div>"
    after = etree.fromstring("<div><p>p</p><b>b</b>tail</div>")
    markup.detach(after[1])
    assert etree.tostring(after, encoding="unicode") == "<div><p>p</p>tail</div>"


def test_detaching_the_root_empties_it() -> None:
    root = etree.fromstring('<html lang="en">t<head/><body>x</body></html>')
    assert markup.detach(root) is root
    assert etree.tostring(root, encoding="unicode") == '<html lang="en"/>'


def test_a_copied_tree_is_independent_of_the_original() -> None:
    tree = markup.parseDocument("<p id=p>x</p>")
    copy = markup.copyTree(tree)
    copy.getroot().find(".//p").text = "changed"
    assert tree.getroot().find(".//p").text == "x"


# _outermost


def test_outermost_keeps_only_elements_not_inside_another_match() -> None:
    root = etree.fromstring(
        '<body><div id="a"><p id="b"><span id="c"/></p></div><p id="d"/></body>')
    a, b, c, d = (root.find(f".//*[@id='{i}']") for i in "abcd")
    assert _outermost([a, b, c, d]) == [True, False, False, True]
    assert _outermost([b, c]) == [True, False]
    assert _outermost([c, d]) == [True, True]
    assert _outermost([]) == []


# Atomic writes


def test_atomic_write_replaces_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "doc.html"
    target.write_bytes(b"old")
    target.chmod(0o600)
    atomicWrite(str(target), b"new")
    assert target.read_bytes() == b"new"
    assert oct(target.stat().st_mode & 0o777) == oct(0o600)
    assert sorted(os.listdir(tmp_path)) == ["doc.html"]


def test_atomic_write_keeps_the_old_file_when_the_rename_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "doc.html"
    target.write_bytes(b"old")

    def failingReplace(src: str, dst: str) -> None:
        raise OSError(5, "injected failure")

    monkeypatch.setattr(documents.os, "replace", failingReplace)
    with pytest.raises(OSError):
        atomicWrite(str(target), b"new" * 1000)
    assert target.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["doc.html"]


def test_atomic_write_keeps_the_old_file_when_fsync_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "doc.html"
    target.write_bytes(b"old")

    def failingFsync(fd: int) -> None:
        raise OSError(28, "injected: no space left")

    monkeypatch.setattr(documents.os, "fsync", failingFsync)
    with pytest.raises(OSError):
        atomicWrite(str(target), b"new")
    assert target.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["doc.html"]


# Content types


@pytest.mark.parametrize("name, contentType", [
    ("a.html", "text/html; charset=utf-8"), ("A.HTM", "text/html; charset=utf-8"),
    ("x.css", "text/css; charset=utf-8"), ("x.txt", "text/plain; charset=utf-8"),
    ("x.json", "application/json; charset=utf-8"), ("x.png", "image/png"),
    ("x.xml", "application/xml"), ("noext", "application/octet-stream"),
])
def test_content_type_follows_the_extension_with_utf8_for_text(name: str, contentType: str) -> None:
    assert documents.contentTypeOf(name) == contentType


def test_javascript_is_served_as_utf8(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(documents.mimetypes, "guess_type",
                        lambda name: ("application/javascript", None))
    assert documents.contentTypeOf("x.mjs") == "application/javascript; charset=utf-8"


# The document store and its change records


class Store:
    """A DocumentStore on a copy of the sample documents, collecting its Changes."""

    def __init__(self, root: Path) -> None:
        import shutil

        shutil.copytree(DOCUMENTS, root)
        self.root = root
        self.changes: list[Change] = []
        self.store = DocumentStore(str(root), self.changes.extend, StoreOptions(fsync=False))
        self.doc = self.store.locate("/doc.html")

    def text(self, name: str = "doc.html") -> str:
        return (self.root / name).read_text(encoding="utf-8")


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "docs")


@pytest_twisted.ensureDeferred
async def test_store_reports_one_change_per_write(store: Store) -> None:
    s = store.store
    o = s.sequence("/doc.html")
    await s.append(store.doc, selectors.compile("#list"), b'<li id="c">C</li>')
    await s.replace(store.doc, selectors.compile("#content"), b'<div id="content">New</div>')
    await s.remove(store.doc, selectors.compile(".note"))
    await s.putDocument(store.store.locate("/new.html"), b"<p>new</p>")
    await s.deleteDocument(store.store.locate("/new.html"))

    c = store.changes
    assert [(x.method, x.url, x.selector, x.sequence) for x in c] == [
        ("POST", "/doc.html", "#list", o + 1),
        ("PUT", "/doc.html", "#content", o + 2),
        ("DELETE", "/doc.html", ".note", o + 3),
        ("PUT", "/new.html", "", o + 1),
        ("DELETE", "/new.html", "", o + 2),
    ]
    assert c[0].content == '<li id="c">C</li>'
    assert c[1].content == '<div id="content">New</div>'
    assert c[2].content == '<p class="note">first</p>\n<p class="note">second</p>'
    assert c[3].content == "<p>new</p>"
    assert c[3].wholeDocument and not c[0].wholeDocument
    assert s.sequence("/doc.html") == o + 3


@pytest_twisted.ensureDeferred
async def test_store_change_carries_both_versions_of_the_document(store: Store) -> None:
    await store.store.replace(store.doc, selectors.compile("#content"),
                              b'<div id="content">New</div>')
    (change,) = store.changes
    assert change.before is not None and change.after is not None
    assert change.before.getroot().find(".//div[@id='content']").text == "Original content"
    assert change.after.getroot().find(".//div[@id='content']").text == "New"
    assert [e.get("id") for e in change.removed] == ["content"]
    assert [e.get("id") for e in change.inserted] == ["content"]
    assert [e.tag for e in change.containers] == ["body"]


@pytest_twisted.ensureDeferred
async def test_store_write_is_on_disk_when_it_is_reported(store: Store) -> None:
    seen: list[str] = []
    store.store.onChanges = lambda changes: seen.append(store.text())
    await store.store.append(store.doc, selectors.compile("#list"), b'<li id="c">C</li>')
    assert '<li id="c">C</li>' in seen[0]


@pytest_twisted.ensureDeferred
async def test_store_failed_write_changes_nothing_and_reports_nothing(store: Store) -> None:
    before = store.text()
    with pytest.raises(Problem) as e:
        await store.store.replace(store.doc, selectors.compile("#nothing"), b"<p>x</p>")
    assert e.value.status == 416
    with pytest.raises(Problem) as e:
        await store.store.append(store.doc, selectors.compile("#list"), b"\xff")
    assert e.value.status == 400
    with pytest.raises(Problem) as e:
        await store.store.remove(store.doc, selectors.compile("#list"), ifMatch='"stale"')
    assert e.value.status == 412
    assert store.text() == before
    assert store.changes == []
    assert store.store.sequence("/doc.html") == store.store.sequence("/other.html")


@pytest_twisted.ensureDeferred
async def test_store_applies_concurrent_writes_in_arrival_order(store: Store) -> None:
    pending = [
        store.store.append(store.doc, selectors.compile("#list"), f'<li id="n{i}">{i}</li>'.encode())
        for i in range(20)
    ]
    results = await DeferredList(pending, fireOnOneErrback=True)
    assert all(ok for ok, _ in results)
    o = store.store.sequence("/untouched.html")
    assert [c.sequence - o for c in store.changes] == list(range(1, 21))
    assert [c.content for c in store.changes] == [f'<li id="n{i}">{i}</li>' for i in range(20)]
    root = markup.parseDocument(store.text()).getroot()
    ids = [li.get("id") for li in root.iter("li")]
    assert ids == ["a", "b"] + [f"n{i}" for i in range(20)]


@pytest_twisted.ensureDeferred
async def test_store_rereads_a_file_changed_on_disk(store: Store) -> None:
    sel = selectors.compile("#content")
    assert store.store.select(store.doc, sel)[0].text == "Original content"
    (store.root / "doc.html").write_text(
        '<!DOCTYPE html><html><body><div id="content">Changed elsewhere, and longer</div>'
        "</body></html>")
    assert store.store.select(store.doc, sel)[0].text == "Changed elsewhere, and longer"
    await store.store.append(store.doc, sel, b"<b>!</b>")
    assert "Changed elsewhere, and longer<b>!</b>" in store.text()


@pytest_twisted.ensureDeferred
async def test_store_loads_a_document_in_a_worker_thread_before_reading_it(store: Store) -> None:
    s = store.store
    assert not s.isLoaded(store.doc)
    await s.load(store.doc)
    assert s.isLoaded(store.doc)
    (store.root / "doc.html").write_text("<p id=changed>on disk</p>")
    os.utime(store.root / "doc.html", ns=(1, 1))
    assert not s.isLoaded(store.doc)
    await s.load(s.locate("/missing.html"))
    assert s.isLoaded(s.locate("/missing.html"))


class _Versions:
    def __init__(self) -> None:
        self.before = markup.parseDocument("<ul><li>old</li></ul>")
        self.after = markup.parseDocument("<ul><li>new</li></ul>")
        self.removed = [(1, 0, 0)]
        self.inserted = [(1, 0, 0)]
        self.containers = [(1, 0)]

    def treeBefore(self) -> etree._ElementTree:
        return self.before

    def treeAfter(self) -> etree._ElementTree:
        return self.after


def test_a_lazy_change_finds_removed_elements_before_and_inserted_ones_after() -> None:
    versions = _Versions()
    change = Change.lazy("PUT", "/d.html", "li", 7, "<li>new</li>", 123, versions, b"<li>new</li>")
    assert [e.text for e in change.removed] == ["old"]
    assert [e.text for e in change.inserted] == ["new"]
    assert [e.tag for e in change.containers] == ["ul"]
    assert change.before is versions.before and change.after is versions.after
    assert (change.size, change.body) == (123, b"<li>new</li>")
