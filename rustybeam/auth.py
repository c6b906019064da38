"""
Users and authorization rules from Rusty Beam's microdata files, and the decisions
made with them.

A users file holds C{Credential} items (C{username}, C{password}, C{roles} or repeated
C{role}, C{encryption} plaintext|bcrypt); a rules file holds C{AuthorizationRule}
items (C{username} or C{role}, C{path}, optional C{selector}, C{method}s, C{action}).
One file may hold both. L{Authorizer} decides requests; see L{Authorizer} for the
precedence rules and L{ElementAccess} for what the WebSocket layer needs to keep
hidden content out of StreamItems.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from copy import deepcopy
from dataclasses import dataclass, field
from typing import Iterable, Literal, Mapping, Sequence, Union

import bcrypt
from lxml import etree

from rustybeam import markup, microdata, selectors
from rustybeam.config import ConfigError
from rustybeam.errors import Problem
from rustybeam.microdata import Item

ANYONE = "*"
"""Rule subject that matches every request, anonymous ones included."""

SELF = ":username"
"""Rule subject that matches any authenticated user, binding C{:username} in the path."""

USERNAME_PLACEHOLDER = "${username}"
ANY_METHOD = "*"

Encryption = Literal["plaintext", "bcrypt"]
Action = Literal["allow", "deny"]
Node = Union[etree._Element, str]

_ENCRYPTIONS = ("plaintext", "bcrypt")
_ACTIONS = ("allow", "deny")
_SUBJECT_RANKS = {"user": 3, "self": 2, "role": 1, "anyone": 0}


@dataclass(frozen=True)
class Credential:
    """A user who can log in with HTTP Basic authentication."""

    username: str
    password: str = field(repr=False)
    roles: tuple[str, ...] = ()
    encryption: Encryption = "plaintext"


@dataclass(frozen=True)
class AuthorizationRule:
    """
    One rule. Exactly one of C{username} (a name, L{ANYONE} or L{SELF}) and C{role}
    is set. C{methods} holds upper-case method names, or L{ANY_METHOD}.
    """

    username: str | None
    role: str | None
    path: str
    selector: str | None
    methods: frozenset[str]
    action: Action


@dataclass(frozen=True)
class AuthFile:
    """Everything one users/rules file defines."""

    users: Mapping[str, Credential]
    rules: tuple[AuthorizationRule, ...]
    skipped: tuple[str, ...] = ()
    """Why each allow rule that can never match was left out (Rusty Beam loads such
    files; its rule would simply never apply)."""


def loadAuthFile(path: str) -> AuthFile:
    """Read the C{Credential} and C{AuthorizationRule} items of one file."""
    try:
        with open(path, "rb") as f:
            source = f.read()
    except OSError as e:
        raise ConfigError(f"{path}: cannot be read: {e.strerror or e}") from None
    return parseAuthFile(source, where=path)


def loadUsers(path: str) -> dict[str, Credential]:
    return dict(loadAuthFile(path).users)


def loadRules(path: str) -> tuple[AuthorizationRule, ...]:
    return loadAuthFile(path).rules


def parseAuthFile(source: str | bytes, where: str = "<auth>") -> AuthFile:
    if isinstance(source, bytes):
        try:
            source = source.decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigError(f"{where}: not an HTML file (not valid UTF-8)") from None
    tree = microdata.parse(source)
    users: dict[str, Credential] = {}
    for index, item in enumerate(microdata.allItems(tree, "Credential"), start=1):
        credential = _credential(item, f"{where}: Credential #{index}")
        if credential.username in users:
            raise ConfigError(
                f"{where}: Credential #{index} ({credential.username}): property 'username' "
                f"duplicates an earlier user"
            )
        users[credential.username] = credential
    rules: list[AuthorizationRule] = []
    skipped: list[str] = []
    for index, item in enumerate(microdata.allItems(tree, "AuthorizationRule"), start=1):
        try:
            rules.append(_rule(item, f"{where}: AuthorizationRule #{index}"))
        except ConfigError as e:
            if (item.text("action") or "").strip().lower() != "allow":
                raise ConfigError(f"{e}; a deny rule cannot be skipped, since that could "
                                  f"allow what it was meant to deny") from None
            skipped.append(f"{e}; skipped: this allow rule can never match")
    return AuthFile(users=users, rules=tuple(rules), skipped=tuple(skipped))


def _credential(item: Item, label: str) -> Credential:
    username = (item.text("username") or "").strip()
    if not username:
        raise ConfigError(f"{label}: missing property 'username'")
    label = f"{label} ({username})"
    if ":" in username or username in (ANYONE, SELF):
        raise ConfigError(f"{label}: property 'username' may not be '*' or contain ':'")
    password = item.text("password")
    if password is None:
        raise ConfigError(f"{label}: missing property 'password'")
    encryption = (item.text("encryption") or "plaintext").strip().lower()
    if encryption not in _ENCRYPTIONS:
        raise ConfigError(
            f"{label}: property 'encryption' must be plaintext or bcrypt, not {encryption!r}"
        )
    roles = tuple(dict.fromkeys(item.texts("roles") + item.texts("role")))
    return Credential(username, password, roles, encryption)  # type: ignore[arg-type]


def _rule(item: Item, label: str) -> AuthorizationRule:
    username = _optional(item.text("username"))
    role = _optional(item.text("role"))
    described = f"{label} ({username or role})" if username or role else label
    if username is None and role is None:
        raise ConfigError(f"{described}: missing property 'username' or 'role'")
    if username is not None and role is not None:
        raise ConfigError(f"{described}: has both 'username' and 'role'; use one")
    path = _optional(item.text("path"))
    if path is None:
        raise ConfigError(f"{described}: missing property 'path'")
    if not path.startswith("/"):
        raise ConfigError(f"{described}: property 'path' must start with '/': {path!r}")
    selector = _optional(item.text("selector"))
    if selector is not None:
        try:
            selectors.compile(selector.replace(USERNAME_PLACEHOLDER, "x"))
        except Problem as e:
            raise ConfigError(f"{described}: property 'selector' is not valid CSS: {e.message}") from None
    methods = frozenset(m.upper() for m in item.texts("method") + item.texts("methods"))
    if not methods:
        raise ConfigError(f"{described}: missing property 'method'")
    action = (item.text("action") or "").strip().lower()
    if action not in _ACTIONS:
        raise ConfigError(f"{described}: property 'action' must be allow or deny, not {action!r}")
    return AuthorizationRule(username, role, path, selector, methods, action)  # type: ignore[arg-type]


def _optional(value: str | None) -> str | None:
    value = (value or "").strip()
    return value or None


def verify(credential: Credential, password: str) -> bool:
    """Check a password in constant time (plaintext) or with bcrypt."""
    given = password.encode("utf-8")
    if credential.encryption == "bcrypt":
        try:
            return bcrypt.checkpw(given, credential.password.encode("utf-8"))
        except ValueError:
            return False
    return hmac.compare_digest(given, credential.password.encode("utf-8"))


def parseBasicAuthorization(header: str | bytes | None) -> tuple[str, str] | None:
    """
    The C{(username, password)} of an C{Authorization: Basic ...} value, or C{None}
    for anything else: another scheme, bad base64, no colon, bytes that are not UTF-8.
    """
    if header is None:
        return None
    if isinstance(header, bytes):
        try:
            header = header.decode("ascii")
        except UnicodeDecodeError:
            return None
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    username, colon, password = decoded.partition(":")
    if not colon or not username:
        return None
    return username, password


def authenticate(users: Mapping[str, Credential], header: str | bytes | None) -> Credential | None:
    """The user an C{Authorization} header proves to be, or C{None}."""
    parsed = parseBasicAuthorization(header)
    if parsed is None:
        return None
    credential = users.get(parsed[0])
    if credential is None or not verify(credential, parsed[1]):
        return None
    return credential


def cssEscape(value: str) -> str:
    """
    C{value} serialized as a CSS identifier (CSSOM C{CSS.escape}); the result is also
    a safe body for a quoted CSS string, so a user name can never end a string or an
    attribute selector early.
    """
    out: list[str] = []
    for index, char in enumerate(value):
        code = ord(char)
        if code == 0:
            out.append("\ufffd")
        elif 0x01 <= code <= 0x1F or code == 0x7F:
            out.append(f"\\{code:x} ")
        elif char.isascii() and char.isdigit() and (
            index == 0 or (index == 1 and value[0] == "-")
        ):
            out.append(f"\\{code:x} ")
        elif index == 0 and char == "-" and len(value) == 1:
            out.append("\\-")
        elif code >= 0x80 or char in "-_" or (char.isascii() and char.isalnum()):
            out.append(char)
        else:
            out.append("\\" + char)
    return "".join(out)


@dataclass(frozen=True)
class _Bound:
    """A rule that applies to one (user, method, path), with its selector made concrete."""

    rule: AuthorizationRule
    subject: int
    pathSpecificity: tuple[int, int, int]
    selector: selectors.Selector | None

    @property
    def deny(self) -> bool:
        return self.rule.action == "deny"

    def key(self, depth: int) -> tuple[int, int, tuple[int, int, int], bool]:
        return (self.subject, depth, self.pathSpecificity, self.deny)


_Key = tuple[int, int, tuple[int, int, int], bool]
_NO_RULE: tuple[_Key, bool] = ((-1, -2, (-1, -1, -1), True), False)


class Authorizer:
    """
    Decides requests with a list of rules.

    A rule applies to a request when its subject, method and path match:
      - subject: C{username} equal to the user's name; L{SELF} (C{:username}) for
        any authenticated user, every C{:username} path segment then being that
        user's name; C{role} among the user's roles; L{ANYONE} (C{*}) for everyone.
        Anonymous requests (C{user=None}) match only L{ANYONE} rules.
      - method: listed (C{HEAD} is covered by C{GET}), or C{*}.
      - path: C{*} matches within one segment, a trailing C{/*} matches the directory
        and everything below it, C{:name} matches one whole segment (for a L{SELF}
        rule, C{:username} matches only the user's own name).
    A rule with a selector (C{${username}} replaced by the user's name, CSS-escaped;
    the rule is skipped for anonymous users) applies to the elements it matches and to
    everything inside them; a rule without a selector applies to the whole document.

    Precedence: for each element, the applicable rules are compared by, in order,
      1. subject: exact username > C{:username} > role > C{*};
      2. reach: a selector rule matching the element or its nearest ancestor beats
         one matching a farther ancestor, and any selector rule beats a path-only rule;
      3. path: more literal segments, then no wildcard at all, then more literal
         characters;
      4. deny beats allow.
    The first rule in that order decides; when none applies, the answer is deny.
    """

    def __init__(self, rules: Iterable[AuthorizationRule]) -> None:
        self.rules = tuple(rules)
        self._patterns = {r.path: _PathPattern(r.path) for r in self.rules}
        self.hasSelectorRules = any(r.selector is not None for r in self.rules)
        """Whether any decision can depend on a document's content."""

    def decide(
        self,
        user: Credential | None,
        method: str,
        path: str,
        selector: str | selectors.Selector | None = None,
        tree: etree._ElementTree | etree._Element | None = None,
    ) -> bool:
        """
        Whether C{user} may make this request.

        Without C{tree}, only the path counts (a selector request then honours
        selector rules whose selector is C{*} or the request's own text).

        With C{tree}, the request targets the elements C{selector} matches, or the
        root element when there is no selector. Every target must be allowed and,
        except for C{POST} (which only appends to its targets), so must everything
        inside it: a C{GET} or C{PUT} of C{body} is refused when C{.private} inside it
        is denied, and so is a whole-document request. A selector that matches
        nothing is decided on the path alone (the handler then answers 416).
        """
        method = method.upper()
        bound = self._applicable(user, method, path)
        if tree is None:
            return _withoutDocument(bound, selector)
        access = ElementAccess(bound, tree)
        if selector is None:
            targets = [access.root]
        else:
            compiled = selector if isinstance(selector, selectors.Selector) else selectors.compile(selector)
            targets = compiled.select(access.root)
        if not targets:
            return access.documentAllowed
        check = access.allows if method == "POST" else access.allowsAll
        return all(check(target) for target in targets)

    def access(
        self,
        user: Credential | None,
        method: str,
        path: str,
        tree: etree._ElementTree | etree._Element,
    ) -> ElementAccess:
        """Per-element decisions for one user, method and document."""
        return ElementAccess(self._applicable(user, method.upper(), path), tree)

    def _applicable(self, user: Credential | None, method: str, path: str) -> list[_Bound]:
        found = []
        for rule in self.rules:
            if not _methodMatches(rule.methods, method):
                continue
            subject = _subject(rule, user)
            if subject is None:
                continue
            pattern = self._patterns[rule.path]
            bindTo = user.username if subject == _SUBJECT_RANKS["self"] and user else None
            if not pattern.matches(path, bindTo):
                continue
            compiled: selectors.Selector | None = None
            if rule.selector is not None:
                if USERNAME_PLACEHOLDER in rule.selector and user is None:
                    continue
                css = rule.selector.replace(
                    USERNAME_PLACEHOLDER, cssEscape(user.username) if user else ""
                )
                try:
                    compiled = selectors.compile(css)
                except Problem:
                    continue
            found.append(_Bound(rule, subject, pattern.specificity, compiled))
        return found


class ElementAccess:
    """
    Which elements of one document one user may act on with one method.

    This is what the WebSocket layer uses to keep a StreamItem's content to what the
    recipient could C{GET}: build one with C{Authorizer.access(user, "GET", url,
    tree)} on the tree that holds the changed nodes (the new tree for PUT and POST,
    the old one for DELETE), then send L{redact}C{(nodes, parent)}; send nothing when
    that is empty. When L{redact} returns the very same node objects, the shared,
    unredacted frame can be sent.
    """

    def __init__(self, bound: Sequence[_Bound], tree: etree._ElementTree | etree._Element) -> None:
        self.root = tree.getroot() if isinstance(tree, etree._ElementTree) else tree
        self._pathRules = [b for b in bound if b.selector is None]
        self._selectorRules = [(b, set(b.selector.select(self.root))) for b in bound if b.selector]
        base = max(((b.key(-1), not b.deny) for b in self._pathRules), default=_NO_RULE)
        self._base: tuple[_Key, bool] = base
        self._memo: dict[etree._Element, tuple[_Key, bool, int]] = {}

    @property
    def documentAllowed(self) -> bool:
        """The decision of the path-only rules, ignoring every selector rule."""
        return self._base[1]

    def allows(self, element: etree._Element) -> bool:
        """Whether the element itself (not necessarily its content) is allowed."""
        return self._decide(element)[1]

    def allowsAll(self, element: etree._Element) -> bool:
        """Whether the element and everything inside it is allowed."""
        if not self.allows(element):
            return False
        if not self._selectorRules:
            return True
        return all(self.allows(e) for e in _descendants(element))

    def hidden(self, element: etree._Element | None = None) -> list[etree._Element]:
        """The outermost denied elements in C{element} (default: the whole document)."""
        start = self.root if element is None else element
        found: list[etree._Element] = []
        stack = [start]
        while stack:
            current = stack.pop()
            if not self.allows(current):
                found.append(current)
            else:
                stack.extend(reversed([c for c in current if isinstance(c.tag, str)]))
        return found

    def redact(
        self, nodes: Iterable[Node], parent: etree._Element | None = None
    ) -> list[Node]:
        """
        C{nodes} (elements of this document, or text under C{parent}) without what is
        denied: denied elements are dropped, partly denied ones are replaced by copies
        without their denied descendants, fully allowed ones are returned as they are.
        """
        textAllowed = self.allows(parent) if parent is not None else self.documentAllowed
        out: list[Node] = []
        for node in nodes:
            if isinstance(node, str):
                if textAllowed:
                    out.append(node)
                continue
            if not isinstance(node.tag, str):
                if textAllowed:
                    out.append(node)
                continue
            redacted = self._redactElement(node)
            if redacted is not None:
                out.append(redacted)
        return out

    def _redactElement(self, element: etree._Element) -> etree._Element | None:
        if not self.allows(element):
            return None
        hidden = self.hidden(element)
        if not hidden:
            return element
        paths = [_childPath(element, h) for h in hidden]
        copy = _copyWithoutTail(element)
        for path in sorted(paths, reverse=True):
            markup.detach(_follow(copy, path))
        return copy

    def _decide(self, element: etree._Element) -> tuple[_Key, bool]:
        key, allowed, _ = self._resolve(element)
        return key, allowed

    def _resolve(self, element: etree._Element) -> tuple[_Key, bool, int]:
        memo = self._memo.get(element)
        if memo is not None:
            return memo
        chain = []
        current: etree._Element | None = element
        while current is not None and current not in self._memo:
            chain.append(current)
            current = current.getparent()
        if current is None:
            inherited = (self._base[0], self._base[1], -1)
        else:
            inherited = self._memo[current]
        for node in reversed(chain):
            key, allowed, depth = inherited
            depth += 1
            for bound, matched in self._selectorRules:
                if node in matched:
                    candidate = bound.key(depth)
                    if candidate > key:
                        key, allowed = candidate, not bound.deny
            inherited = (key, allowed, depth)
            self._memo[node] = inherited
        return self._memo[element]


def _withoutDocument(bound: Sequence[_Bound], selector: str | selectors.Selector | None) -> bool:
    css = selector.css if isinstance(selector, selectors.Selector) else selector
    best = _NO_RULE
    for b in bound:
        if b.selector is None:
            candidate = (b.key(-1), not b.deny)
        elif css is not None and b.selector.css in ("*", css.strip()):
            candidate = (b.key(0), not b.deny)
        else:
            continue
        best = max(best, candidate)
    return best[1]


def _methodMatches(methods: frozenset[str], method: str) -> bool:
    return (
        ANY_METHOD in methods
        or method in methods
        or (method == "HEAD" and "GET" in methods)
    )


def _subject(rule: AuthorizationRule, user: Credential | None) -> int | None:
    if rule.username == ANYONE:
        return _SUBJECT_RANKS["anyone"]
    if user is None:
        return None
    if rule.username == SELF:
        return _SUBJECT_RANKS["self"]
    if rule.username is not None:
        return _SUBJECT_RANKS["user"] if rule.username == user.username else None
    if rule.role is not None and rule.role in user.roles:
        return _SUBJECT_RANKS["role"]
    return None


class _PathPattern:
    """A rule path compiled to a regular expression, per binding of C{:username}."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        segments = pattern.split("/")
        self.recursive = len(segments) > 1 and segments[-1] == "*"
        self.segments = segments[:-1] if self.recursive else segments
        literal = [s for s in self.segments if s and "*" not in s and not s.startswith(":")]
        exact = "*" not in pattern and ":" not in pattern
        self.specificity = (len(literal), int(exact), sum(len(s) for s in literal))
        self._cache: dict[str | None, re.Pattern[str]] = {}

    def matches(self, path: str, username: str | None) -> bool:
        regex = self._cache.get(username)
        if regex is None:
            regex = self._cache[username] = self._compile(username)
        return regex.fullmatch(path) is not None

    def _compile(self, username: str | None) -> re.Pattern[str]:
        parts = []
        for segment in self.segments:
            if segment == SELF and username is not None:
                parts.append(re.escape(username))
            elif segment.startswith(":") and len(segment) > 1:
                parts.append("[^/]+")
            else:
                parts.append("[^/]*".join(re.escape(piece) for piece in segment.split("*")))
        body = "/".join(parts)
        if self.recursive:
            body += "(?:/.*)?"
        return re.compile(body, re.DOTALL)


def _descendants(element: etree._Element) -> Iterable[etree._Element]:
    return (e for e in element.iterdescendants() if isinstance(e.tag, str))


def _childPath(ancestor: etree._Element, element: etree._Element) -> tuple[int, ...]:
    path: list[int] = []
    current = element
    while current is not ancestor:
        parent = current.getparent()
        path.append(parent.index(current))
        current = parent
    return tuple(reversed(path))


def _follow(element: etree._Element, path: tuple[int, ...]) -> etree._Element:
    for index in path:
        element = element[index]
    return element


def _copyWithoutTail(element: etree._Element) -> etree._Element:
    copy = deepcopy(element)
    copy.tail = None
    return copy
