"""
The finer points of L{rustybeam.auth} that the mutation run found untested: exact
CSS escaping, error messages that name what is wrong, path-pattern precedence and
matching, and the per-element decisions behind redaction. No server, no hashing.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from rustybeam import selectors
from rustybeam.auth import (
    AuthorizationRule,
    Authorizer,
    Credential,
    _PathPattern,
    cssEscape,
    loadAuthFile,
    parseAuthFile,
    parseBasicAuthorization,
)
from rustybeam.config import ConfigError
from rustybeam.markup import parseDocument, serialize


def rule(path: str = "/*", methods: str = "GET", action: str = "allow",
         username: str | None = "*", selector: str | None = None) -> AuthorizationRule:
    return AuthorizationRule(username, None, path, selector, frozenset(methods.split()),
                             action)  # type: ignore[arg-type]


def user(name: str) -> Credential:
    return Credential(name, "pw")


def item(kind: str, **fields: str) -> str:
    cells = "".join(f'<td itemprop="{name}">{value}</td>' for name, value in fields.items())
    return f'<table><tr itemscope itemtype="https://rustybeam.net/schema/{kind}">{cells}</tr></table>'


def configError(source: str | bytes, **where: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parseAuthFile(source, **where)
    return str(caught.value)


DOC = parseDocument(
    "<html><body>"
    '<div id="other">public</div>'
    '<div class="private" id="secret"><p id="inner">hidden</p></div>'
    "</body></html>"
)


# CSS escaping (CSSOM CSS.escape)


@pytest.mark.parametrize("value, escaped", [
    ("alice", "alice"), ("a", "a"), ("a1", "a1"), ("_x-", "_x-"),
    ("1a", "\\31 a"), ("-1x", "-\\31 x"), ("-", "\\-"), ("-a", "-a"),
    ("\x00", "\ufffd"), ("\x01", "\\1 "), ("\x1f", "\\1f "), ("\x7f", "\\7f "),
    (" ", "\\ "), ("a b", "a\\ b"), ("\x80", "\x80"), ("ünï", "ünï"),
    ('a"]b', 'a\\"\\]b'), ("x\\y", "x\\\\y"), ("!", "\\!"),
])
def test_css_escape_follows_cssom(value: str, escaped: str) -> None:
    assert cssEscape(value) == escaped


# Basic credentials


def test_basic_credentials_with_characters_outside_base64_are_refused() -> None:
    assert parseBasicAuthorization("Basic " + base64.b64encode(b"a:b").decode()) == ("a", "b")
    assert parseBasicAuthorization("Basic YT!pi") is None


# Messages of a users/rules file that cannot be used


def test_an_auth_file_that_is_not_utf8_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "users.html"
    path.write_bytes(b"<p>\xff</p>")
    with pytest.raises(ConfigError) as caught:
        loadAuthFile(str(path))
    assert str(caught.value) == f"{path}: not an HTML file (not valid UTF-8)"


def test_an_unreadable_auth_file_is_named_with_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "nope.html"
    with pytest.raises(ConfigError) as caught:
        loadAuthFile(str(path))
    assert str(caught.value) == f"{path}: cannot be read: No such file or directory"


def test_an_auth_source_without_a_name_is_called_auth() -> None:
    assert configError(item("Credential", password="x")) == (
        "<auth>: Credential #1: missing property 'username'")


def test_a_rule_without_subject_is_named_by_its_number_only() -> None:
    assert configError(item("AuthorizationRule", path="/*", method="GET", action="deny"),
                       where="users.html") == (
        "users.html: AuthorizationRule #1: missing property 'username' or 'role'; a deny "
        "rule cannot be skipped, since that could allow what it was meant to deny")


def test_a_rule_without_action_says_the_action_is_empty() -> None:
    assert configError(item("AuthorizationRule", username="*", path="/*", method="GET"),
                       where="users.html") == (
        "users.html: AuthorizationRule #1 (*): property 'action' must be allow or deny, "
        "not ''; a deny rule cannot be skipped, since that could allow what it was meant "
        "to deny")


def test_methods_may_be_given_as_methods_too() -> None:
    loaded = parseAuthFile(item("AuthorizationRule", username="*", path="/*", methods="put",
                                action="allow"))
    assert loaded.rules[0].methods == frozenset({"PUT"})


# Decisions without the document


def test_a_selector_rule_for_every_element_decides_any_selector_request() -> None:
    authorizer = Authorizer([rule(), rule(action="deny", selector="*")])
    assert not authorizer.decide(None, "GET", "/d.html", "#other")
    assert authorizer.decide(None, "GET", "/d.html")


def test_a_selector_rule_that_does_not_apply_does_not_hide_later_rules() -> None:
    authorizer = Authorizer([rule(action="deny", selector=".private"), rule()])
    assert authorizer.decide(None, "GET", "/d.html", "#other")


def test_a_compiled_selector_is_decided_like_its_text_without_the_document() -> None:
    authorizer = Authorizer([rule(), rule(action="deny", selector=".private")])
    assert not authorizer.decide(None, "GET", "/d.html", selectors.compile(".private"))
    assert authorizer.decide(None, "GET", "/d.html", selectors.compile("#other"))


def test_rules_that_cannot_apply_are_skipped_not_the_end_of_the_list() -> None:
    anonymous = Authorizer([rule(action="deny", selector="#${username}"), rule()])
    assert anonymous.decide(None, "GET", "/d.html")
    broken = Authorizer([rule(action="deny", selector="[["), rule()])
    assert broken.decide(None, "GET", "/d.html")


# Decisions on the document


def test_access_is_decided_for_the_user_given() -> None:
    access = Authorizer([rule(username="alice")]).access(user("alice"), "get", "/d.html", DOC)
    assert access.documentAllowed


def test_access_may_be_asked_of_an_element_instead_of_a_tree() -> None:
    root = DOC.getroot()
    access = Authorizer([rule()]).access(None, "GET", "/d.html", root)
    assert access.allows(root)


def test_a_post_needs_only_its_target_allowed_whatever_the_case_of_the_method() -> None:
    authorizer = Authorizer([rule(methods="POST"),
                             rule(methods="POST", action="deny", selector="#inner")])
    assert authorizer.decide(None, "POST", "/d.html", ".private", DOC)
    assert authorizer.decide(None, "post", "/d.html", ".private", DOC)
    put = Authorizer([rule(methods="PUT"), rule(methods="PUT", action="deny", selector="#inner")])
    assert not put.decide(None, "PUT", "/d.html", ".private", DOC)


def test_a_document_without_selector_rules_is_allowed_whole() -> None:
    authorizer = Authorizer([rule()])
    assert authorizer.decide(None, "GET", "/d.html", tree=DOC)
    assert authorizer.decide(None, "GET", "/d.html", "#secret", DOC)


def test_a_selector_rule_on_the_root_element_beats_any_path_rule() -> None:
    authorizer = Authorizer([rule("/d.html"), rule(action="deny", selector="html")])
    assert not authorizer.decide(None, "GET", "/d.html", tree=DOC)
    access = Authorizer([rule(), rule(action="deny", selector="html")]).access(
        None, "GET", "/d.html", DOC)
    assert not access.allows(DOC.getroot())


def test_redaction_removes_several_hidden_children_each_in_its_place() -> None:
    tree = parseDocument('<div id="d"><i class="private">1</i><b>2</b>'
                         '<i class="private">3</i><b>4</b><i class="private">5</i></div>')
    access = Authorizer([rule(), rule(action="deny", selector=".private")]).access(
        None, "GET", "/d.html", tree)
    (copy,) = access.redact([tree.getroot().find(".//div")])
    assert serialize(copy) == '<div id="d"><b>2</b><b>4</b></div>'


def test_redaction_keeps_text_and_comments_the_parent_may_show() -> None:
    tree = parseDocument('<div id="d"><!-- note --><b>x</b></div>')
    div = tree.getroot().find(".//div")
    comment, bold = div[0], div[1]
    access = Authorizer([rule()]).access(None, "GET", "/d.html", tree)
    assert access.redact(["text", comment, bold], parent=div) == ["text", comment, bold]
    hidden = Authorizer([rule(), rule(action="deny", selector="#d")]).access(
        None, "GET", "/d.html", tree)
    assert hidden.redact(["text", comment, bold], parent=div) == []


# Rule paths


def test_path_precedence_counts_literal_segments_then_exactness_then_characters() -> None:
    """The C{specificity} that L{Authorizer}'s precedence rule 3 compares."""
    assert _PathPattern("/docs/:name/x.html").specificity == (2, 0, 10)
    assert _PathPattern("/a*/b").specificity == (1, 0, 1)
    assert _PathPattern("/docs/readme.html").specificity == (2, 1, 15)
    assert _PathPattern("/docs/*").specificity == (1, 0, 4)
    assert _PathPattern("/").specificity == (0, 1, 0)


@pytest.mark.parametrize("pattern, path, matches", [
    ("/*", "/a/b.html", True),
    ("/x/:", "/x/:", True),
    ("/x/:", "/x/y", False),
    ("/u/:a", "/u/bob", True),
    ("/docs/*", "/docs/a\nb", True),
])
def test_rule_paths_match(pattern: str, path: str, matches: bool) -> None:
    assert Authorizer([rule(pattern)]).decide(None, "GET", path) is matches
