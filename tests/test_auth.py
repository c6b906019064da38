from __future__ import annotations

import base64
import hmac
from pathlib import Path

import bcrypt
import pytest

from rustybeam import auth, selectors
from rustybeam.auth import (
    AuthorizationRule,
    Authorizer,
    Credential,
    authenticate,
    cssEscape,
    loadAuthFile,
    loadRules,
    loadUsers,
    parseAuthFile,
    parseBasicAuthorization,
    verify,
)
from rustybeam.config import ConfigError
from rustybeam.errors import Problem
from rustybeam.markup import parseDocument, serialize

from conftest import FIXTURES  # noqa: E402

AUTH = FIXTURES / "auth"
ALL = frozenset({"GET", "PUT", "POST", "DELETE"})


def rule(
    path: str = "/*",
    methods: str = "GET",
    action: str = "allow",
    username: str | None = "*",
    role: str | None = None,
    selector: str | None = None,
) -> AuthorizationRule:
    return AuthorizationRule(
        username=None if role else username,
        role=role,
        path=path,
        selector=selector,
        methods=frozenset(methods.split()),
        action=action,  # type: ignore[arg-type]
    )


def user(name: str, *roles: str) -> Credential:
    return Credential(name, "pw", roles)


def basic(userpass: bytes) -> str:
    return "Basic " + base64.b64encode(userpass).decode()


def lowCostHash(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()


DOC = parseDocument(
    "<html><body>"
    '<div id="other">public</div>'
    '<div class="private" id="secret"><p id="inner">hidden</p></div>'
    '<ul id="list"><li data-owner="alice">a</li><li data-owner="bob">b</li></ul>'
    "</body></html>"
)


# users


def test_load_users_plaintext_fixture() -> None:
    users = loadUsers(str(AUTH / "users.html"))
    assert set(users) == {"admin", "johndoe"}
    assert users["admin"].roles == ("administrators", "user")
    assert users["johndoe"].encryption == "plaintext"


def test_load_users_roles_list_fixture() -> None:
    users = loadUsers(str(AUTH / "users_bcrypt.html"))
    assert users["admin"].roles == ("admin", "user")
    assert users["johndoe"].roles == ("user", "editor")
    assert users["admin"].encryption == "bcrypt"


def test_verify_plaintext() -> None:
    users = loadUsers(str(AUTH / "users_mixed.html"))
    assert verify(users["johndoe"], "doe123")
    assert not verify(users["johndoe"], "doe1234")
    assert not verify(users["johndoe"], "")


def test_plaintext_password_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Timing cannot be measured reliably in a test, so pin the constant-time call."""
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(given: bytes, stored: bytes) -> bool:
        compared.append((given, stored))
        return real(given, stored)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    credential = Credential("johndoe", "doe123")
    assert credential.encryption == "plaintext"
    assert verify(credential, "doe123")
    assert not verify(credential, "doe124")
    assert compared == [(b"doe123", b"doe123"), (b"doe124", b"doe123")]


def test_verify_bcrypt_fixture() -> None:
    users = loadUsers(str(AUTH / "users_bcrypt.html"))
    assert verify(users["admin"], "admin123")


def test_verify_bcrypt_wrong_password() -> None:
    credential = Credential("u", lowCostHash("right"), (), "bcrypt")
    assert verify(credential, "right")
    assert not verify(credential, "wrong")


def test_verify_bcrypt_malformed_hash_is_false() -> None:
    assert not verify(Credential("u", "not-a-hash", (), "bcrypt"), "not-a-hash")


def test_credential_repr_hides_password() -> None:
    assert "secret" not in repr(Credential("u", "secret"))


def test_mixed_file_has_both_encryptions() -> None:
    users = loadUsers(str(AUTH / "users_mixed.html"))
    assert {u.encryption for u in users.values()} == {"plaintext", "bcrypt"}


def test_parse_basic_authorization() -> None:
    assert parseBasicAuthorization(basic(b"alice:pa:ss")) == ("alice", "pa:ss")
    assert parseBasicAuthorization(basic(b"alice:").encode()) == ("alice", "")
    assert parseBasicAuthorization("basic   " + base64.b64encode(b"a:b").decode()) == ("a", "b")


@pytest.mark.parametrize(
    "header",
    [None, "", "Basic", "Basic !!!", "Basic YWxpY2U=", "Bearer YTpi", basic(b":pw"), basic(b"\xff:x"), "Basic YTpi=x"],
)
def test_parse_basic_authorization_rejects_malformed(header: str | None) -> None:
    assert parseBasicAuthorization(header) is None


def test_authenticate() -> None:
    users = loadUsers(str(AUTH / "users.html"))
    assert authenticate(users, basic(b"admin:admin123")) == users["admin"]
    assert authenticate(users, basic(b"admin:wrong")) is None
    assert authenticate(users, basic(b"nobody:admin123")) is None


# rules


def test_load_rules_only_file() -> None:
    rules = loadRules(str(AUTH / "authorization-only.html"))
    assert len(rules) == 3
    assert rules[2] == rule("/test-resource/*", "PUT POST", "allow", "testuser")
    assert loadUsers(str(AUTH / "authorization-only.html")) == {}


def test_file_with_users_and_rules() -> None:
    loaded = loadAuthFile(str(AUTH / "users.html"))
    assert len(loaded.users) == 2
    assert loaded.rules[0] == rule("/*", "GET PUT POST DELETE", "allow", "admin")
    assert loaded.rules[2].role == "administrators" and loaded.rules[2].username is None
    assert loaded.rules[1].selector == "*"


def test_anonymous_get_allowed_put_denied() -> None:
    authorizer = Authorizer(loadRules(str(AUTH / "authorization-only.html")))
    assert authorizer.decide(None, "GET", "/index.html")
    assert authorizer.decide(None, "HEAD", "/index.html")
    assert not authorizer.decide(None, "PUT", "/index.html")
    assert not authorizer.decide(None, "PUT", "/test-resource/x.html")


def test_exact_user_rule_beats_anyone_deny() -> None:
    authorizer = Authorizer(loadRules(str(AUTH / "authorization-only.html")))
    assert authorizer.decide(user("testuser"), "PUT", "/test-resource/x.html")
    assert not authorizer.decide(user("testuser"), "DELETE", "/test-resource/x.html")
    assert not authorizer.decide(user("other"), "PUT", "/test-resource/x.html")


def test_admin_by_username() -> None:
    authorizer = Authorizer(loadRules(str(AUTH / "users.html")))
    assert authorizer.decide(user("admin"), "DELETE", "/anything.html")


def test_admin_by_role() -> None:
    authorizer = Authorizer(loadRules(str(AUTH / "users.html")))
    boss = user("carol", "administrators")
    assert authorizer.decide(boss, "PUT", "/admin/settings.html")
    assert not authorizer.decide(user("dave", "user"), "PUT", "/admin/settings.html")
    assert not authorizer.decide(user("dave", "user"), "GET", "/admin/settings.html")


def test_role_rule_beats_anyone_rule() -> None:
    authorizer = Authorizer([rule("/*", "GET", "deny"), rule("/*", "GET", "allow", role="staff")])
    assert authorizer.decide(user("x", "staff"), "GET", "/a")
    assert not authorizer.decide(user("y"), "GET", "/a")


def test_exact_user_beats_role() -> None:
    authorizer = Authorizer([rule("/*", "GET", "allow", role="staff"), rule("/*", "GET", "deny", "x")])
    assert not authorizer.decide(user("x", "staff"), "GET", "/a")


def test_username_placeholder_rule_lets_users_into_their_own_directory() -> None:
    authorizer = Authorizer(loadRules(str(AUTH / "users.html")))
    john = user("johndoe", "user")
    assert authorizer.decide(john, "PUT", "/users/johndoe/notes.html")
    assert authorizer.decide(john, "GET", "/users/johndoe")
    assert not authorizer.decide(john, "GET", "/users/admin/notes.html")
    assert not authorizer.decide(None, "GET", "/users/johndoe/notes.html")
    assert authorizer.decide(None, "GET", "/users.html")


def test_username_placeholder_segment_is_a_whole_segment() -> None:
    authorizer = Authorizer([rule("/users/:username/*", "GET", "allow", ":username")])
    assert not authorizer.decide(user("john"), "GET", "/users/johnny/a.html")
    assert not authorizer.decide(user("a.b"), "GET", "/users/aXb/a.html")
    assert authorizer.decide(user("a.b"), "GET", "/users/a.b/a.html")


def test_more_literal_path_wins_at_equal_subject() -> None:
    authorizer = Authorizer([rule("/*", "GET", "allow"), rule("/docs/*", "GET", "deny"), rule("/docs/open.html", "GET", "allow")])
    assert not authorizer.decide(None, "GET", "/docs/x.html")
    assert authorizer.decide(None, "GET", "/docs/open.html")
    assert authorizer.decide(None, "GET", "/other.html")


def test_deny_beats_allow_on_tie() -> None:
    authorizer = Authorizer([rule("/*", "GET", "allow"), rule("/*", "GET", "deny")])
    assert not authorizer.decide(None, "GET", "/a")


def test_default_deny() -> None:
    assert not Authorizer([]).decide(user("admin"), "GET", "/")
    assert not Authorizer([rule("/docs/*")]).decide(None, "GET", "/other.html")


def test_path_patterns() -> None:
    authorizer = Authorizer([rule("/docs/*"), rule("/a*.html"), rule("/exact/")])
    assert authorizer.decide(None, "GET", "/docs")
    assert authorizer.decide(None, "GET", "/docs/deep/er/x.html")
    assert not authorizer.decide(None, "GET", "/docsx/a.html")
    assert authorizer.decide(None, "GET", "/abc.html")
    assert not authorizer.decide(None, "GET", "/a/b.html")
    assert authorizer.decide(None, "GET", "/exact/")
    assert not authorizer.decide(None, "GET", "/exact/more")


def test_root_wildcard_matches_root() -> None:
    assert Authorizer([rule("/*")]).decide(None, "GET", "/")


def test_any_method_rule() -> None:
    authorizer = Authorizer([rule("/*", "*")])
    assert authorizer.decide(None, "PATCH", "/a")


def test_deny_selector_forbids_matching_get() -> None:
    authorizer = Authorizer([rule("/*"), rule("/*", "GET", "deny", selector=".private")])
    assert not authorizer.decide(None, "GET", "/doc.html", ".private", DOC)
    assert not authorizer.decide(None, "GET", "/doc.html", "#inner", DOC)
    assert not authorizer.decide(None, "GET", "/doc.html", "body", DOC)
    assert authorizer.decide(None, "GET", "/doc.html", "#other", DOC)


def test_deny_selector_applies_to_whole_document_with_tree() -> None:
    authorizer = Authorizer([rule("/*"), rule("/*", "GET", "deny", selector=".private")])
    assert not authorizer.decide(None, "GET", "/doc.html", tree=DOC)
    assert authorizer.decide(None, "GET", "/doc.html")


def test_selector_request_without_tree_uses_path_rules() -> None:
    authorizer = Authorizer([rule("/*"), rule("/*", "GET", "deny", selector=".private")])
    assert not authorizer.decide(None, "GET", "/doc.html", ".private")
    assert authorizer.decide(None, "GET", "/doc.html", "#other")


def test_selector_matching_nothing_uses_path_rules() -> None:
    authorizer = Authorizer([rule("/*"), rule("/*", "GET", "deny", selector=".private")])
    assert authorizer.decide(None, "GET", "/doc.html", "#absent", DOC)


def test_nearer_selector_rule_wins() -> None:
    authorizer = Authorizer(
        [rule("/*"), rule("/*", "GET", "deny", selector=".private"), rule("/*", "GET", "allow", selector="#inner")]
    )
    assert authorizer.decide(None, "GET", "/doc.html", "#inner", DOC)
    assert not authorizer.decide(None, "GET", "/doc.html", ".private", DOC)


def test_post_checks_only_the_target_itself() -> None:
    authorizer = Authorizer(loadRules(str(AUTH / "users.html")))
    guestbook = parseDocument('<ul class="entry"><li>first</li></ul><p id="x">p</p>')
    assert authorizer.decide(None, "POST", "/guestbook/", "ul.entry", guestbook)
    assert not authorizer.decide(None, "POST", "/guestbook/", "#x", guestbook)
    assert not authorizer.decide(None, "PUT", "/guestbook/", "ul.entry", guestbook)


def test_put_of_container_with_protected_child_is_denied() -> None:
    authorizer = Authorizer([rule("/*", "PUT"), rule("/*", "PUT", "deny", selector="#inner")])
    assert not authorizer.decide(None, "PUT", "/doc.html", ".private", DOC)
    assert authorizer.decide(None, "PUT", "/doc.html", "#other", DOC)


def test_username_selector_lets_each_user_read_own_item() -> None:
    authorizer = Authorizer(
        [
            rule("/*", "GET", "allow"),
            rule("/*", "GET", "deny", selector="#list li"),
            rule("/*", "GET", "allow", ":username", selector='li[data-owner="${username}"]'),
        ]
    )
    alice, bob = user("alice"), user("bob")
    assert authorizer.decide(alice, "GET", "/doc.html", '[data-owner="alice"]', DOC)
    assert not authorizer.decide(alice, "GET", "/doc.html", '[data-owner="bob"]', DOC)
    assert authorizer.decide(bob, "GET", "/doc.html", '[data-owner="bob"]', DOC)
    assert not authorizer.decide(None, "GET", "/doc.html", "#list li", DOC)
    assert not authorizer.decide(alice, "GET", "/doc.html", "#list", DOC)


def test_username_selector_substitution_is_injection_safe() -> None:
    tree = parseDocument("<ul><li data-owner='x\"]'>mine</li><li data-owner=\"x\">victim</li></ul>")
    authorizer = Authorizer(
        [rule("/*", "GET", "allow", ":username", selector='li[data-owner="${username}"]')]
    )
    attacker = user('x"]')
    assert authorizer.decide(attacker, "GET", "/d.html", "li:nth-child(1)", tree)
    assert not authorizer.decide(attacker, "GET", "/d.html", "li:nth-child(2)", tree)


def test_username_selector_rule_skipped_for_anonymous() -> None:
    authorizer = Authorizer([rule("/*", "GET", "allow", selector="#${username}")])
    assert not authorizer.decide(None, "GET", "/doc.html", "#other", DOC)


@pytest.mark.parametrize("name", ["alice", "123", "-1x", 'a"]b', "a b", "x\\y", "-", "ünï", "a\nb"])
def test_css_escape_round_trips(name: str) -> None:
    tree = parseDocument("<p></p>")
    tree.getroot().find(".//p").set("data-n", name)
    for css in (f'p[data-n="{cssEscape(name)}"]', f"p[data-n={cssEscape(name)}]"):
        assert len(selectors.compile(css).select(tree.getroot())) == 1


def test_css_escape_identifier_selects_id() -> None:
    tree = parseDocument('<p id="1a.b"></p>')
    assert len(selectors.compile("#" + cssEscape("1a.b")).select(tree.getroot())) == 1


def test_has_selector_rules() -> None:
    assert not Authorizer([rule()]).hasSelectorRules
    assert Authorizer([rule(selector="p")]).hasSelectorRules


def test_redact_removes_denied_descendants() -> None:
    authorizer = Authorizer([rule("/*"), rule("/*", "GET", "deny", selector=".private")])
    access = authorizer.access(None, "GET", "/doc.html", DOC)
    body = DOC.getroot().find("body")
    [redacted] = access.redact([body])
    assert "hidden" not in serialize(redacted) and "public" in serialize(redacted)
    assert DOC.getroot().find(".//p") is not None


def test_redact_drops_denied_nodes_and_keeps_visible_ones_as_is() -> None:
    authorizer = Authorizer([rule("/*"), rule("/*", "GET", "deny", selector=".private")])
    access = authorizer.access(None, "GET", "/doc.html", DOC)
    other = DOC.getroot().find(".//div")
    inner = DOC.getroot().find(".//p")
    result = access.redact([other, inner])
    assert len(result) == 1 and result[0] is other


def test_redact_text_follows_parent() -> None:
    authorizer = Authorizer([rule("/*"), rule("/*", "GET", "deny", selector=".private")])
    access = authorizer.access(None, "GET", "/doc.html", DOC)
    secret = DOC.getroot().find(".//div[@id='secret']")
    other = DOC.getroot().find(".//div[@id='other']")
    assert access.redact(["text"], parent=secret) == []
    assert access.redact(["text"], parent=other) == ["text"]


def test_redact_keeps_tail_text_of_removed_element() -> None:
    tree = parseDocument('<div id="d">a<span class="private">x</span>b</div>')
    access = Authorizer([rule("/*"), rule("/*", "GET", "deny", selector=".private")]).access(None, "GET", "/d", tree)
    [copy] = access.redact([tree.getroot().find(".//div")])
    assert serialize(copy) == '<div id="d">ab</div>'


def test_hidden_lists_outermost_denied_elements() -> None:
    access = Authorizer([rule("/*"), rule("/*", "GET", "deny", selector=".private, #inner")]).access(
        None, "GET", "/doc.html", DOC
    )
    assert [e.get("id") for e in access.hidden()] == ["secret"]


def test_access_for_path_denied_user_allows_nothing() -> None:
    access = Authorizer([]).access(None, "GET", "/doc.html", DOC)
    assert access.redact([DOC.getroot()]) == []
    assert not access.documentAllowed


def test_decide_accepts_compiled_selector() -> None:
    authorizer = Authorizer([rule("/*"), rule("/*", "GET", "deny", selector=".private")])
    assert not authorizer.decide(None, "GET", "/doc.html", selectors.compile(".private"), DOC)


def test_decide_rejects_bad_request_selector() -> None:
    with pytest.raises(Problem):
        Authorizer([rule()]).decide(None, "GET", "/doc.html", "[[", DOC)


# errors in users/rules files


def credential(fields: str) -> str:
    return f'<table><tr itemscope itemtype="https://rustybeam.net/schema/Credential">{fields}</tr></table>'


def ruleItem(fields: str) -> str:
    return f'<table><tr itemscope itemtype="https://rustybeam.net/schema/AuthorizationRule">{fields}</tr></table>'


def td(name: str, value: str) -> str:
    return f'<td itemprop="{name}">{value}</td>'


def authError(html: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parseAuthFile(html, where="users.html")
    return str(caught.value)


def test_error_credential_missing_username() -> None:
    message = authError(credential(td("password", "x")))
    assert "users.html: Credential #1" in message and "'username'" in message


def test_error_credential_missing_password() -> None:
    message = authError(credential(td("username", "bob")))
    assert "users.html: Credential #1 (bob)" in message and "'password'" in message


def test_error_credential_bad_encryption() -> None:
    message = authError(credential(td("username", "bob") + td("password", "x") + td("encryption", "md5")))
    assert "Credential #1 (bob)" in message and "'encryption'" in message


def test_error_credential_reserved_username() -> None:
    message = authError(credential(td("username", "a:b") + td("password", "x")))
    assert "Credential #1 (a:b)" in message and "'username'" in message


def test_error_duplicate_credential() -> None:
    one = credential(td("username", "bob") + td("password", "x"))
    message = authError(one + one)
    assert "Credential #2 (bob)" in message and "'username'" in message


MALFORMED_RULES = {
    "missing subject": (td("path", "/*") + td("method", "GET"), "AuthorizationRule #1", "'username' or 'role'"),
    "missing path": (td("username", "*") + td("method", "GET"), "AuthorizationRule #1 (*)", "'path'"),
    "path *": (td("username", "*") + td("path", "*") + td("method", "GET"), "AuthorizationRule #1 (*)", "'path'"),
    "relative path": (td("username", "*") + td("path", "docs/*") + td("method", "GET"),
                      "AuthorizationRule #1 (*)", "'path'"),
    "missing method": (td("role", "staff") + td("path", "/*"), "AuthorizationRule #1 (staff)", "'method'"),
}


@pytest.mark.parametrize("case", MALFORMED_RULES)
def test_allow_rule_that_can_never_match_is_skipped_with_a_reason(case: str) -> None:
    fields, item, prop = MALFORMED_RULES[case]
    good = ruleItem(td("username", "*") + td("path", "/*") + td("method", "GET") + td("action", "allow"))
    loaded = parseAuthFile(ruleItem(fields + td("action", "allow")) + good, where="users.html")
    assert len(loaded.rules) == 1 and loaded.rules[0].path == "/*"
    [reason] = loaded.skipped
    assert "users.html: " + item in reason and prop in reason and "never match" in reason


@pytest.mark.parametrize("case", MALFORMED_RULES)
def test_deny_rule_that_cannot_be_read_stops_start_up(case: str) -> None:
    fields, item, prop = MALFORMED_RULES[case]
    message = authError(ruleItem(fields + td("action", "deny")))
    assert "users.html: " + item in message and prop in message and "deny rule" in message


def test_skipped_rules_are_logged_at_start_up(tmp_path: Path) -> None:
    from rustybeam.config import HostConfig, PluginConfig
    from rustybeam.hosts import guardFor
    from twisted.logger import globalLogPublisher

    users = tmp_path / "users.html"
    users.write_text(ruleItem(td("username", "*") + td("path", "*") + td("method", "GET") + td("action", "allow")))
    host = HostConfig("localhost", str(tmp_path), (
        PluginConfig("authorization", "authorization.so", {"authfile": str(users)}),))
    seen: list[str] = []
    observer = lambda event: seen.append(event.get("reason", ""))  # noqa: E731
    globalLogPublisher.addObserver(observer)
    try:
        guardFor(host)
    finally:
        globalLogPublisher.removeObserver(observer)
    assert any(str(users) in reason and "AuthorizationRule #1" in reason for reason in seen), seen


def test_error_rule_bad_action() -> None:
    message = authError(ruleItem(td("username", "*") + td("path", "/*") + td("method", "GET") + td("action", "maybe")))
    assert "AuthorizationRule #1 (*)" in message and "'action'" in message


def test_error_rule_bad_selector() -> None:
    message = authError(
        ruleItem(td("username", "*") + td("path", "/*") + td("selector", "[[") + td("method", "GET") + td("action", "deny"))
    )
    assert "AuthorizationRule #1 (*)" in message and "'selector'" in message


def test_error_rule_both_username_and_role() -> None:
    message = authError(
        ruleItem(td("username", "a") + td("role", "b") + td("path", "/*") + td("method", "GET") + td("action", "deny"))
    )
    assert "AuthorizationRule #1 (a)" in message and "'role'" in message


def test_error_unreadable_auth_file(tmp_path: Path) -> None:
    path = str(tmp_path / "nope.html")
    with pytest.raises(ConfigError) as caught:
        loadUsers(path)
    assert path in str(caught.value)


def test_methods_are_upper_cased() -> None:
    loaded = parseAuthFile(
        ruleItem(td("username", "*") + td("path", "/*") + td("method", "get") + td("action", "Allow"))
    )
    assert loaded.rules[0].methods == frozenset({"GET"}) and loaded.rules[0].action == "allow"
