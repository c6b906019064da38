"""
What a viewer may see of a change: the redaction that keeps StreamItems to what the
recipient could GET, without a network.
"""

from __future__ import annotations

from rustybeam import markup, selectors
from rustybeam.auth import AuthorizationRule, Authorizer
from rustybeam.changes import Change
from rustybeam.guard import Viewer


def rule(action: str, selector: str | None = None, path: str = "/*") -> AuthorizationRule:
    return AuthorizationRule("*", None, path, selector, frozenset({"GET"}), action)  # type: ignore[arg-type]


def putChange(html: str, target: str, content: str) -> Change:
    after = markup.parseDocument(html)
    (inserted,) = selectors.compile(target).select(after.getroot())
    return Change("PUT", "/d.html", target, 1, content, None, after, (), (inserted,),
                  (inserted.getparent(),))


def test_text_in_a_hidden_container_is_not_shown_with_a_visible_element() -> None:
    rules = Authorizer([rule("allow"), rule("deny", "#box"), rule("allow", ".pub")])
    change = putChange('<body><div id="box">secret text <span class="pub">x</span></div></body>',
                       "#box > span", 'secret text <span class="pub">x</span>')
    assert Viewer(None, rules).redact(change) == '<span class="pub">x</span>'


def test_a_change_wholly_hidden_is_not_sent() -> None:
    rules = Authorizer([rule("allow"), rule("deny", ".private")])
    change = putChange('<body><div class="private"><p id="p">s</p></div></body>', "#p", '<p id="p">s</p>')
    assert Viewer(None, rules).redact(change) is None


def test_a_visible_change_is_shared_as_it_is() -> None:
    rules = Authorizer([rule("allow"), rule("deny", ".private")])
    change = putChange('<body><div id="open"><p id="p">s</p></div></body>', "#p", '<p id="p">s</p>')
    assert Viewer(None, rules).redact(change) is change.content


def test_without_selector_rules_the_path_decides() -> None:
    change = putChange('<body><p id="p">s</p></body>', "#p", '<p id="p">s</p>')
    assert Viewer(None, Authorizer([rule("allow")])).redact(change) is change.content
    assert Viewer(None, Authorizer([rule("deny")])).redact(change) is None
    assert not Viewer(None, Authorizer([rule("allow")])).hidesParts
