"""
Whole documents are parsed by lexbor where it builds the tree html5lib would, and by
html5lib (the reference) everywhere else: a differential test over a corpus of edge
cases, the repository's documents and generated combinations.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from lxml import etree

from rustybeam import fastparse, markup

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

EDGE_CASES = [
    # implied tags
    "<p>x", "<li>a<li>b", "<dd>a<dt>b", "<ul><li>a<li>b</ul>", "<p>a<p>b", "<head><p>x</p></head>",
    "<p>a</p></body></html>trailing", "<html><body></body></html><!-- after -->", "<title>a<b>c</title>",
    # tables and foster parenting
    "<table><tr><td>a</td></tr>text<div>foster</div></table>", "<table><td>x</table>", "<tr><td><td>",
    "<table><input type=hidden><tr><td>x</table>", "<table><input><tr><td>x</table>",
    "<table><style>s</style><tr><td>x</table>", "<table><caption>x<table></table>", "<col><colgroup>",
    "<caption><div>x</caption>", "<table><form><tr><td>x</form></table>", "<a><table><a>x</table>",
    "<html><body><p>quirks <table><tr><td>x</td></tr></table></p></body></html>",
    "<!DOCTYPE html><p>standard <table><tr><td>x</td></tr></table></p>",
    # formatting elements and the adoption agency
    "<b><p>x</b>y</p>", "<a><a>x</a></a>", "<p><b><i>x</p>y", "<i><b>mis</i>nested</b>", "<nobr>a<nobr>b</nobr>",
    "<b>1<b>2<b>3<b>4<b>5</b></b></b></b></b>", "<a href=x><div>y</a>z</div>",
    # template, select and option, ruby
    "<template><td>c</td></template>", "<select><option>a<option>b</select>", "<select><div>x</div></select>",
    "<select><optgroup><optgroup></select>", "<option><optgroup>", "<select><b>x</b></select>",
    "<ruby>a<rt>b</rt><rp>c</rp></ruby>", "<ruby>a<rb>b<rt>c<rp>d</ruby>",
    # foreign content
    "<svg viewBox='0 0 1 1'><foreignObject><p>x</p></foreignObject></svg>", "<math><mi>x</mi></math>",
    # comments, character references, CR/LF, raw text
    "<!-- a -- b -->", "<!---->", "<!--->", "<p><!--a\nb--></p>", "<!-- c1 --><!DOCTYPE html><p>x",
    "&notin; &noti &amp &#x41; &#0; &#128; &nbsp;", "a\r\nb\rc", "<pre>\n\nx</pre>", "<textarea>\nx</textarea>",
    "<listing>\nx</listing>", "<script><!--<script></script>--></script>x", "<style></style><p>", "<plaintext><p>x",
    "<xmp><b>x</b></xmp>", "<noscript><p>n</p></noscript>", "<iframe><p>i</iframe>",
    # malformed markup
    "<div a=1 a=2>", "<div A=1 B>", "<x-custom foo-bar=1>y</x-custom>", "<a:b c:d=1>x</a:b>", "<div xmlns=x>",
    "<br/><br></br>", "<p>\x00</p>", "<image src=x>", "<isindex>", "<frameset><frame></frameset>",
    "<body onload=x><body class=y>", "<html lang=en><html dir=rtl>", "<h1><h2>x</h2></h1>",
    "<button><button>x", "<form><form>x</form></form>", "<p><dialog>x</dialog>", "<p><search>x</search>",
    "<p><hr>", "<li><ul><li>x</ul>", "</p>", "<div></span>", "<<p>>", "<p =x>", "<p a='b>c",
    "<!DOCTYPE html PUBLIC \"-//W3C//DTD HTML 4.01//EN\"><p>x", "<!doctype html><table><p>x</table>",
    "<div>\u00e9\U0001F600</div>", "",
]


def _documents() -> list[str]:
    texts = list(EDGE_CASES)
    for path in [*(REPO / "examples").glob("*.html"), *(HERE / "data" / "documents").rglob("*.html")]:
        texts.append(path.read_text(encoding="utf-8"))
    bodies = EDGE_CASES[:40]
    for a in bodies[::2]:
        for b in bodies[1::4]:
            texts.append("<!DOCTYPE html><body>" + a + "<div id=x>" + b + "</div>" + a)
    return texts


def _html5lib(text: str) -> str | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            tree = markup.parseDocument(text)
        except ValueError:
            return None
    return tree.docinfo.doctype + etree.tostring(tree, encoding="unicode")


def _whole(text: str) -> str | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            tree = markup.parseWhole(text)
        except ValueError:
            return None
    return tree.docinfo.doctype + etree.tostring(tree, encoding="unicode")


def test_the_corpus_is_mostly_parsed_by_lexbor() -> None:
    texts = _documents()
    fast = sum(1 for t in texts if fastparse.parse(t) is not None)
    assert len(texts) > 250 and fast > len(texts) * 0.6


def test_whole_document_parse_builds_html5libs_tree_on_the_corpus() -> None:
    different = [t for t in _documents() if _whole(t) != _html5lib(t)]
    assert different == []


@pytest.mark.parametrize("text", [
    "<p><dialog>x</dialog>",  # the standard now closes the <p>; html5lib nests
    "<select><div>x</div></select>",  # the standard now keeps the <div>; html5lib drops it
    "<ruby>a<rb>b<rt>c</ruby>",
    "<svg><path d=M></path></svg>",
    "<template><td>c</td></template>",
    "<!-- x - -->",
    "<!DOCTYPE html PUBLIC \"-//W3C//DTD HTML 4.01//EN\"><p>x",
    "<table><caption><pre>\n\nx</pre></caption></table>",  # html5lib keeps the newline there
])
def test_where_lexbor_and_html5lib_may_differ_html5lib_decides(text: str) -> None:
    assert fastparse.parse(text) is None
    assert _whole(text) == _html5lib(text)


def test_a_large_document_is_parsed_by_lexbor() -> None:
    items = "".join(f'<li id="i{i}">item <b>{i}</b> &amp; <a href="/{i}">x</a></li>' for i in range(2000))
    text = f"<!DOCTYPE html><html><head><title>t</title></head><body><ul>{items}</ul></body></html>"
    tree = fastparse.parse(text)
    assert tree is not None
    assert tree.docinfo.doctype + etree.tostring(tree, encoding="unicode") == _html5lib(text)


def _fragmentCases() -> list[tuple[str, str]]:
    bodies = [*EDGE_CASES, '<li id="i3" class="item">changed</li>', "text only", " <b>x</b> tail ",
              "<tr><td>a<td>b</tr>", "<td>c</td>", "<tbody><tr><td>x</tbody>", "<caption>c</caption>",
              "<col span=2>", "<li>a</li><!--c-->b<li>c", "<dt>t<dd>d", "<option>o", "<body x=1>y",
              "<html a=1><p>x", "</div>after", "</ul><li>x", "</table><p>x", "<p>a</p></p>",
              "<a href=/x>1<a>2", "<form><input></form><form>", "<select><option>a</select>",
              "<table>x<tr><td>y</table>", "<svg><rect/></svg>", "<math></math>", "\x00x\r\ny\rz"]
    bodies += [a + b for a in EDGE_CASES[::3] for b in EDGE_CASES[1::5]]
    return [(context, body) for context in sorted(fastparse.FRAGMENT_CONTEXTS) for body in bodies]


def _fragmentAsHtml5lib(text: str, context: str) -> list[str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parsed = markup._parser().parseFragment(text, container=context)
    nodes: list[str] = []
    for item in parsed:
        if isinstance(item, str):
            nodes.append(item)
            continue
        tail, item.tail = item.tail, None
        nodes.append(etree.tostring(item, encoding="unicode"))
        if tail:
            nodes.append(tail)
    return nodes


def test_fragment_parse_builds_html5libs_nodes_in_every_context_it_is_used_in() -> None:
    different = []
    fast = 0
    for context, body in _fragmentCases():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nodes = fastparse.parseFragment(body, context)
        if nodes is None:
            continue
        fast += 1
        mine = [n if isinstance(n, str) else etree.tostring(n, encoding="unicode") for n in nodes]
        if mine != _fragmentAsHtml5lib(body, context):
            different.append((context, body))
    assert different == []
    assert fast > len(_fragmentCases()) * 0.6


@pytest.mark.parametrize("context", ["select", "template", "title", "textarea", "script", "style",
                                     "head", "svg", "noscript", "plaintext", "x-custom", "table",
                                     "tbody", "tr", "td", "form"])
def test_fragments_in_contexts_lexbor_is_not_trusted_with_are_left_to_html5lib(context: str) -> None:
    assert fastparse.parseFragment("<b>x</b>", context) is None


@pytest.mark.parametrize("body", ["<svg><rect/></svg>", "<template>x</template>", "<select></select>",
                                  "<!-- a -- b -->", "<a:b>x</a:b>",
                                  "<table><caption><pre>\n\nx</pre></caption></table>"])
def test_fragments_lexbor_may_build_differently_are_left_to_html5lib(body: str) -> None:
    assert fastparse.parseFragment(body, "div") is None
