"""
Writes find their C{#id} targets in an index kept up to date by the edits, and it
always finds what XPath over the whole tree finds.
"""

from __future__ import annotations

import random
from functools import partial

from lxml import etree

from rustybeam import markup, selectors, versions
from rustybeam.documents import _applyGroup, _applySelector, _Pending, _Plan
from rustybeam.ids import IdIndex


def _tree(html: str) -> etree._ElementTree:
    return markup.parseDocument(html)


def test_an_id_no_element_has_is_found_nowhere() -> None:
    tree = _tree("<ul><li id=a>1</ul>")
    assert IdIndex(tree.getroot()).find("zz") == []


def test_an_id_one_element_has_finds_that_element() -> None:
    tree = _tree("<ul><li id=a>1<li id=b>2</ul>")
    (found,) = IdIndex(tree.getroot()).find("b")
    assert found.text == "2"


def test_an_id_several_elements_share_is_left_to_xpath() -> None:
    tree = _tree("<ul><li id=a>1<li id=a>2</ul>")
    assert IdIndex(tree.getroot()).find("a") is None


def test_an_element_moved_out_of_the_tree_behind_the_index_is_not_found() -> None:
    tree = _tree("<ul><li id=a>1</ul>")
    index = IdIndex(tree.getroot())
    element = tree.getroot().find(".//li")
    element.getparent().remove(element)
    assert index.find("a") is None


def test_the_index_follows_removed_and_inserted_subtrees() -> None:
    tree = _tree("<div id=d><p id=p><b id=b>x</b></p></div>")
    index = IdIndex(tree.getroot())
    p = tree.getroot().find(".//p")
    index.removed(p)
    p.getparent().remove(p)
    assert index.find("p") == [] and index.find("b") == []
    (d,) = index.find("d")
    new = etree.SubElement(d, "i", id="b")
    index.added(new)
    assert index.find("b") == [new]


def _xpath(tree: etree._ElementTree, name: str) -> list[etree._Element]:
    general = etree.XPath(selectors._translator.css_to_xpath("#" + name.replace("-", "\\-")))
    return [e for e in general(tree.getroot()) if isinstance(e.tag, str)]


def _check(lineage: versions.Lineage, tree: etree._ElementTree, names: list[str]) -> None:
    index = lineage.ids(tree)
    for name in names:
        found, expected = index.find(name), _xpath(tree, name)
        if len(expected) <= 1:
            assert found == expected, name
        else:
            assert found is None, name


def test_the_index_finds_what_xpath_finds_through_random_writes_undos_and_replays() -> None:
    rng = random.Random(7)
    names = [f"n{i}" for i in range(12)]
    items = "".join(f'<li id="{n}">{n}</li>' for n in names[:6])
    lineage = versions.Lineage(_tree(f"<!DOCTYPE html><html><body><ul id=list>{items}</ul>"
                                     f"<div id=box><p id=n6>p</p></div></body></html>"))
    lineage.verified = True
    checked = 0
    for _ in range(300):
        group = []
        for _ in range(rng.randint(1, 4)):
            name, other = rng.choice(names), rng.choice(names)
            choice = rng.random()
            if choice < 0.35:
                method, css, body = "PUT", f"#{name}", f'<li id="{other}">{other}</li>'
            elif choice < 0.6:
                method, css, body = "POST", rng.choice(["#list", "#box", f"#{name}"]), \
                    f'<li id="{other}"><b id="{rng.choice(names)}">x</b></li>'
            elif choice < 0.8:
                method, css, body = "DELETE", f"#{name}", ""
            elif choice < 0.85:
                method, css, body = "PUT", f"#{name}", "<td>refused in a list</td><p>"
            elif choice < 0.9:
                method, css, body = rng.choice([("POST", "ul", f'<li id="{other}">u</li>'),
                                                ("DELETE", "#box > p", "")])
            else:
                method, css, body = "PUT", "#box", f'<div id="box"><p id="{other}">p</p></div>'
            group.append(_Pending(None, None, None,  # type: ignore[arg-type]
                                  partial(_applySelector, method, selectors.compile(css),
                                          body.encode()), None))  # type: ignore[arg-type]
        outcomes, tree, data = _applyGroup(lineage, group, None)
        assert tree is not None
        _check(lineage, tree, names)
        plans = [o for o in outcomes if isinstance(o, _Plan) and o.edit is not None]
        if data is not None and plans:
            lineage.commitAll([p.edit for p in plans], tree)
            _check(lineage, lineage.committed, names)
            _check(lineage, lineage.working(), names)
            checked += 1
    assert checked > 100


def test_the_root_element_is_found_by_its_id() -> None:
    tree = _tree("<html id=top><body><p id=p>x</p></body></html>")
    assert IdIndex(tree.getroot()).find("top") == [tree.getroot()]


def test_removing_a_subtree_forgets_every_id_in_it_even_after_one_it_never_knew() -> None:
    tree = _tree("<div id=d><p>x</p><p id=q>y</p></div>")
    index = IdIndex(tree.getroot())
    first = tree.getroot().find(".//p")
    first.set("id", "unknown")
    (div,) = index.find("d")
    index.removed(div)
    assert index.find("q") == []
