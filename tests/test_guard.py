"""
What a viewer may see of a change: the redaction that keeps StreamItems to what the
recipient could GET, without a network.
"""

from __future__ import annotations

import base64

import bcrypt
import pytest
import pytest_twisted
from twisted.internet.defer import Deferred

from rustybeam import guard, markup, selectors
from rustybeam.auth import AuthorizationRule, Authorizer, Credential
from rustybeam.changes import Change
from rustybeam.errors import Problem
from rustybeam.guard import AuthGuard, GuardOptions, Viewer, _cost


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


# The guard: who a request comes from, and whether it may do what it asks


def basic(userpass: str) -> bytes:
    return b"Basic " + base64.b64encode(userpass.encode())


USERS = {"alice": Credential("alice", "wonder"), "bob": Credential("bob", "builder")}


def challenged(call: object, *args: object) -> Problem:
    with pytest.raises(Problem) as e:
        call(*args)  # type: ignore[operator]
    assert e.value.status == 401
    assert dict(e.value.headers) == {b"WWW-Authenticate": b'Basic realm="Restricted Area"'}
    return e.value


def test_without_basic_auth_every_request_is_anonymous() -> None:
    rules = Authorizer([rule("allow")])
    viewer = AuthGuard(GuardOptions(authorizer=rules)).viewer(basic("alice:wonder"))
    assert isinstance(viewer, Viewer)
    assert (viewer.user, viewer.authorizer, viewer.key, viewer.name) == (None, rules, None, None)


def test_with_basic_auth_a_request_without_credentials_is_challenged() -> None:
    challenged(AuthGuard(GuardOptions(users=USERS)).viewer, None)
    challenged(AuthGuard(GuardOptions(users=USERS)).viewer, None, "PUT")


def test_options_needs_no_credentials() -> None:
    assert AuthGuard(GuardOptions(users=USERS)).viewer(None, "OPTIONS").user is None


def test_allow_anonymous_lets_requests_without_credentials_through_as_anonymous() -> None:
    guard = AuthGuard(GuardOptions(users=USERS, allowAnonymous=True))
    assert guard.viewer(None).user is None
    challenged(guard.viewer, basic("alice:wrong"))


def test_a_user_with_the_right_password_is_recognised() -> None:
    viewer = AuthGuard(GuardOptions(users=USERS)).viewer(basic("alice:wonder"))
    assert isinstance(viewer, Viewer)
    assert (viewer.key, viewer.name) == ("alice", "alice")


def test_wrong_password_unknown_user_and_malformed_header_are_challenged() -> None:
    g = AuthGuard(GuardOptions(users=USERS))
    wrong = challenged(g.viewer, basic("alice:wrong"))
    unknown = challenged(g.viewer, basic("mallory:wonder"))
    assert wrong.message == unknown.message == (
        "authentication required: wrong user name or password")
    assert challenged(g.viewer, b"Basic !!!").message == (
        "authentication required: malformed Basic credentials")


def test_the_realm_is_quoted_in_the_challenge() -> None:
    g = AuthGuard(GuardOptions(users=USERS, realm='a "b" \\ c'))
    with pytest.raises(Problem) as e:
        g.viewer(basic("alice:wrong"))
    assert dict(e.value.headers)[b"WWW-Authenticate"] == b'Basic realm="a \\"b\\" \\\\ c"'


def test_without_authentication_first_the_rules_see_anonymous() -> None:
    g = AuthGuard(GuardOptions(users=USERS, authenticateFirst=False))
    viewer = g.viewer(basic("alice:wonder"))
    assert viewer.user is None  # type: ignore[union-attr]
    challenged(g.viewer, basic("alice:wrong"))


def test_a_verified_header_is_remembered_least_recently_used_first_out(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    checked: list[str] = []
    real = guard.verify

    def counting(credential: Credential, password: str) -> bool:
        checked.append(credential.username)
        return real(credential, password)

    monkeypatch.setattr(guard, "verify", counting)
    monkeypatch.setattr(guard, "VERIFIED_CACHE_SIZE", 2)
    users = {**USERS, "carol": Credential("carol", "singer")}
    g = AuthGuard(GuardOptions(users=users))
    for header in ("alice:wonder", "bob:builder", "alice:wonder", "carol:singer",
                   "alice:wonder", "bob:builder"):
        assert g.viewer(basic(header)).name == header.split(":")[0]  # type: ignore[union-attr]
    assert checked == ["alice", "bob", "carol", "bob"]


def test_an_unknown_user_is_checked_against_a_decoy_of_the_real_users_cost() -> None:
    users = {"a": Credential("a", bcrypt.hashpw(b"x", bcrypt.gensalt(4)).decode(), (), "bcrypt"),
             "b": Credential("b", bcrypt.hashpw(b"y", bcrypt.gensalt(5)).decode(), (), "bcrypt"),
             "c": Credential("c", "plain")}
    g = AuthGuard(GuardOptions(users=users))
    decoy = g._decoyFor(users)
    assert (decoy.username, decoy.encryption, _cost(decoy.password)) == ("", "bcrypt", 5)
    assert g._decoyFor(users) is decoy
    plain = AuthGuard(GuardOptions(users=USERS))._decoyFor(USERS)
    assert (plain.username, plain.encryption, len(plain.password)) == ("", "plaintext", 32)


@pytest_twisted.ensureDeferred
async def test_bcrypt_passwords_are_checked_in_a_worker_thread() -> None:
    users = {"a": Credential("a", bcrypt.hashpw(b"right", bcrypt.gensalt(4)).decode(), (), "bcrypt")}
    g = AuthGuard(GuardOptions(users=users))
    pending = g.viewer(basic("a:right"))
    assert isinstance(pending, Deferred)
    assert (await pending).name == "a"
    assert isinstance(g.viewer(basic("a:right")), Viewer)
    for header in ("a:wrong", "nobody:right"):
        with pytest.raises(Problem) as e:
            await g.viewer(basic(header))  # type: ignore[misc]
        assert e.value.status == 401


@pytest.mark.parametrize("hashed, cost", [
    ("$2b$12$abcdefghijklmnopqrstuv", 12), ("$2b$05$abc", 5), ("$2b$xx$abc", 12),
    ("$2b$07", 12), ("plain", 12),
])
def test_bcrypt_cost_is_read_from_the_hash(hashed: str, cost: int) -> None:
    assert _cost(hashed) == cost


def test_without_rules_basic_auth_only_asks_anonymous_requests_to_log_in() -> None:
    g = AuthGuard(GuardOptions(users=USERS))
    challenged(g.authorize, Viewer(None, None), "GET", "/d.html", None, None)
    assert g.authorize(Viewer(USERS["bob"], None), "PUT", "/d.html", None, None) is None
    assert AuthGuard(GuardOptions()).authorize(Viewer(None, None), "PUT", "/d.html", None, None) is None


def test_a_denied_request_is_challenged_when_anonymous_and_forbidden_when_logged_in() -> None:
    rules = Authorizer([AuthorizationRule("*", None, "/*", None, frozenset({"GET"}), "allow")])
    g = AuthGuard(GuardOptions(users=USERS, authorizer=rules))
    assert g.authorize(Viewer(None, rules), "GET", "/d.html", None, None) is None
    challenged(g.authorize, Viewer(None, rules), "PUT", "/d.html", None, None)
    for selector, message in [(None, "not allowed: PUT /d.html"),
                              ("#a", "not allowed: PUT /d.html selector #a")]:
        with pytest.raises(Problem) as e:
            g.authorize(Viewer(USERS["bob"], rules), "PUT", "/d.html", selector, None)
        assert (e.value.status, e.value.message, e.value.headers) == (403, message, ())
    anonymousRules = AuthGuard(GuardOptions(authorizer=rules))
    with pytest.raises(Problem) as e:
        anonymousRules.authorize(Viewer(None, rules), "PUT", "/d.html", None, None)
    assert e.value.status == 403


def test_a_viewer_without_rules_may_do_anything() -> None:
    viewer = Viewer(None, None)
    assert viewer.may("DELETE", "/d.html", "#a", None) and viewer.mayRead("/d.html", None, None)
    assert not viewer.hidesParts


def test_a_viewer_reads_with_get_rights() -> None:
    rules = Authorizer([AuthorizationRule("*", None, "/*", None, frozenset({"GET"}), "allow")])
    viewer = Viewer(None, rules)
    assert viewer.mayRead("/d.html", None, None)
    assert not viewer.may("PUT", "/d.html", None, None)


def test_a_redacted_document_leaves_out_what_the_viewer_may_not_read() -> None:
    tree = markup.parseDocument(
        '<html><body><p id="open">o</p><div class="private">s</div></body></html>')
    assert Viewer(None, Authorizer([rule("allow")])).redactDocument("/d.html", tree) is None
    assert Viewer(None, None).redactDocument("/d.html", tree) is None
    nothingHidden = Authorizer([rule("allow"), rule("deny", ".absent")])
    assert Viewer(None, nothingHidden).redactDocument("/d.html", tree) is None
    rules = Authorizer([rule("allow"), rule("deny", ".private")])
    assert Viewer(None, rules).redactDocument("/d.html", tree) == (
        b'<!DOCTYPE html>\n<html><head></head><body><p id="open">o</p></body></html>')
    everything = Authorizer([rule("allow"), rule("deny", "html")])
    assert Viewer(None, everything).redactDocument("/d.html", tree) == b"<!DOCTYPE html>\n<html></html>"


def test_a_viewer_is_judged_as_its_user_on_the_elements_it_names() -> None:
    rules = Authorizer([
        AuthorizationRule("*", None, "/*", None, frozenset({"GET"}), "allow"),
        AuthorizationRule("alice", None, "/*", None, frozenset({"PUT"}), "allow"),
        AuthorizationRule("alice", None, "/*", ".locked", frozenset({"PUT"}), "deny"),
    ])
    tree = markup.parseDocument('<body><p id="open">o</p><p class="locked">l</p></body>')
    alice = Viewer(Credential("alice", "pw"), rules)
    assert alice.may("PUT", "/d.html", None, None)
    assert not Viewer(None, rules).may("PUT", "/d.html", None, None)
    assert alice.may("PUT", "/d.html", "#open", tree)
    assert not alice.may("PUT", "/d.html", ".locked", tree)
    assert not alice.may("PUT", "/d.html", "p:last-child", tree)
    assert alice.may("PUT", "/d.html", "p:last-child", None)


def deleteChange(html: str, target: str) -> Change:
    before = markup.parseDocument(html)
    removed = tuple(selectors.compile(target).select(before.getroot()))
    after = markup.copyTree(before)
    containers = tuple(markup.detach(e) for e in selectors.compile(target).select(after.getroot()))
    return Change("DELETE", "/d.html", target, 1, "\n".join(markup.serialize(e) for e in removed),
                  before, after, removed, (), containers)


def test_a_delete_is_judged_on_the_document_before_it() -> None:
    rules = Authorizer([rule("allow"), rule("deny", ".private")])
    html = '<body><p class="private" id="s">s</p><p id="o">o</p></body>'
    assert Viewer(None, rules).redact(deleteChange(html, "#s")) is None
    public = deleteChange(html, "#o")
    assert Viewer(None, rules).redact(public) is public.content


def test_a_change_without_a_tree_is_judged_by_its_path() -> None:
    change = Change("PUT", "/d.css", "", 1, "p {}", None, None)
    allowed = Authorizer([rule("allow"), rule("deny", ".private")])
    denied = Authorizer([rule("deny", path="/d.css"), rule("deny", ".private")])
    assert Viewer(None, allowed).redact(change) is change.content
    assert Viewer(None, denied).redact(change) is None


def test_selector_rules_of_a_user_decide_what_that_user_sees() -> None:
    rules = Authorizer([rule("allow"), rule("deny", ".private"),
                        AuthorizationRule("alice", None, "/*", ".private", frozenset({"GET"}),
                                          "allow")])
    change = putChange('<body><div class="private" id="p">s</div></body>', "#p",
                       '<div class="private" id="p">s</div>')
    assert Viewer(Credential("alice", "pw"), rules).redact(change) is change.content
    assert Viewer(None, rules).redact(change) is None


def test_text_only_change_is_shown_when_its_container_is_visible() -> None:
    def textChange(html: str) -> Change:
        after = markup.parseDocument(html)
        (box,) = selectors.compile("#box").select(after.getroot())
        return Change("POST", "/d.html", "#box", 1, "more text", None, after, (), (), (box,))

    rules = Authorizer([rule("allow"), rule("deny", ".private")])
    visible = textChange('<body><div id="box">t</div></body>')
    assert Viewer(None, rules).redact(visible) is visible.content
    assert Viewer(None, rules).redact(textChange('<body><div id="box" class="private">t</div></body>')) is None


def test_inserted_elements_with_hidden_parts_are_sent_without_them_one_per_line() -> None:
    rules = Authorizer([rule("allow"), rule("deny", ".private")])
    after = markup.parseDocument(
        '<body><ul id="l"><li id="x">x<b class="private">s</b></li><li id="y">y</li></ul></body>')
    inserted = tuple(selectors.compile("#l > li").select(after.getroot()))
    change = Change("POST", "/d.html", "#l", 1,
                    '<li id="x">x<b class="private">s</b></li><li id="y">y</li>', None, after,
                    (), inserted, (inserted[0].getparent(),))
    assert Viewer(None, rules).redact(change) == '<li id="x">x</li>\n<li id="y">y</li>'
