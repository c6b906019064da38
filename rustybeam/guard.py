"""
Access control as the HTTP and WebSocket sides see it: Rusty Beam's basic-auth and
authorization plugins behind the L{IGuard} and L{IViewer} seams.

L{AuthGuard} turns an C{Authorization} header into a L{Viewer} and decides each
operation with an L{Authorizer}. A L{Viewer} lives as long as a WebSocket connection:
it decides subscriptions with the credentials of the opening handshake and cuts from
each StreamItem the content that its user could not C{GET}.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Hashable, Mapping

import bcrypt
from lxml import etree
from twisted.internet.defer import Deferred, DeferredSemaphore
from twisted.internet.interfaces import IReactorThreads
from twisted.internet.threads import deferToThreadPool

from rustybeam import markup
from rustybeam.auth import Authorizer, Credential, parseBasicAuthorization, verify
from rustybeam.changes import Change
from rustybeam.errors import FORBIDDEN, UNAUTHORIZED, Problem

VERIFIED_CACHE_SIZE = 1024
BCRYPT_CONCURRENCY = 2
"""bcrypt checks running at once; the rest wait, so that a flood of guesses leaves
the worker threads free for durable writes."""


@dataclass(frozen=True)
class GuardOptions:
    """What the pipeline asks for: who may log in, and the rules (if any)."""

    users: Mapping[str, Credential] | None = None
    """The basic-auth users; C{None} when the pipeline has no basic-auth."""
    realm: str = "Restricted Area"
    """Rusty Beam's default realm."""
    authorizer: Authorizer | None = None
    """The authorization rules; C{None} when the pipeline has no authorization."""
    authenticateFirst: bool = True
    """Whether basic-auth comes before authorization in the pipeline (otherwise the
    rules see every request as anonymous, as Rusty Beam would)."""
    allowAnonymous: bool = False
    """rustybeam's opt-in (basic-auth property C{allow_anonymous}): requests without
    credentials go on to the rules as anonymous. Off, as in Rusty Beam, every request
    but OPTIONS needs valid credentials (401 with C{WWW-Authenticate} otherwise)."""


@dataclass(frozen=True, eq=False)
class Viewer:
    """An authenticated user (or nobody) and what they may read."""

    user: Credential | None
    authorizer: Authorizer | None = field(repr=False)

    @property
    def key(self) -> Hashable:
        return self.user.username if self.user is not None else None

    @property
    def name(self) -> str | None:
        return self.user.username if self.user is not None else None

    def may(self, method: str, url: str, selector: str | None,
            tree: etree._ElementTree | None) -> bool:
        if self.authorizer is None:
            return True
        return self.authorizer.decide(self.user, method, url, selector, tree)

    def mayRead(self, url: str, selector: str | None, tree: etree._ElementTree | None) -> bool:
        return self.may("GET", url, selector, tree)

    @property
    def hidesParts(self) -> bool:
        """Whether rules may hide parts of a document from this viewer."""
        return self.authorizer is not None and self.authorizer.hasSelectorRules

    def redactDocument(self, url: str, tree: etree._ElementTree) -> bytes | None:
        if not self.hidesParts:
            return None
        access = self.authorizer.access(self.user, "GET", url, tree)  # type: ignore[union-attr]
        if not access.hidden():
            return None
        visible = access.redact([tree.getroot()])
        root = visible[0] if visible and not isinstance(visible[0], str) else etree.Element("html")
        return markup.serializeDocument(etree.ElementTree(root))

    def redact(self, change: Change) -> str | None:
        """The content of C{change} that this viewer could GET, or C{None} if none."""
        if self.authorizer is None:
            return change.content
        if not self.hidesParts:
            return change.content if self.may("GET", change.url, None, None) else None
        tree = change.before if change.method == "DELETE" else change.after
        if tree is None:
            return change.content if self.may("GET", change.url, None, None) else None
        access = self.authorizer.access(self.user, "GET", change.url, tree)
        nodes = change.removed if change.method == "DELETE" else change.inserted
        textVisible = access.documentAllowed and all(access.allows(c) for c in change.containers)
        if not nodes:
            return change.content if textVisible else None
        visible = access.redact(list(nodes))
        if not visible:
            return None
        whole = len(visible) == len(nodes) and all(a is b for a, b in zip(visible, nodes))
        if whole and textVisible:
            return change.content
        return "\n".join(markup.serialize(n) for n in visible)


class AuthGuard:
    """L{IGuard} for a host's basic-auth and authorization plugins."""

    def __init__(self, options: GuardOptions, reactor: IReactorThreads | None = None) -> None:
        self.options = options
        self._reactor = reactor
        self._verified: OrderedDict[bytes, Credential] = OrderedDict()
        self._bcrypt = DeferredSemaphore(BCRYPT_CONCURRENCY)
        self._decoy: Credential | None = None

    @property
    def authenticates(self) -> bool:
        """Whether requests may carry credentials here (the host has basic-auth)."""
        return self.options.users is not None

    def viewer(self, authorization: bytes | None, method: str = "GET") -> Viewer | Deferred[Viewer]:
        """
        The viewer for a request. Without credentials, a host with basic-auth
        answers 401 to every method but OPTIONS, as Rusty Beam does, unless
        anonymous requests were allowed. A bcrypt password is checked in a worker
        thread (a Deferred is returned then), so that a flood of wrong passwords
        cannot stall the reactor; a successful check is remembered by a digest of
        the header, so bcrypt runs once per user and password, not once per request.
        """
        users = self.options.users
        if users is None:
            return Viewer(None, self.options.authorizer)
        if authorization is None:
            if self.options.allowAnonymous or method == "OPTIONS":
                return Viewer(None, self.options.authorizer)
            raise self._challenge()
        digest = hashlib.sha256(authorization).digest()
        known = self._verified.get(digest)
        if known is not None:
            self._verified.move_to_end(digest)
            return self._viewerFor(known)
        parsed = parseBasicAuthorization(authorization)
        if parsed is None:
            raise self._challenge("malformed Basic credentials")
        credential = users.get(parsed[0])
        known = credential is not None
        if credential is None:
            credential = self._decoyFor(users)
        if credential.encryption != "bcrypt":
            return self._verifiedAs(digest, credential, known and verify(credential, parsed[1]))
        reactor = self._reactor
        if reactor is None:
            from twisted.internet import reactor  # type: ignore[no-redef]
        d = self._bcrypt.run(deferToThreadPool, reactor, reactor.getThreadPool(),  # type: ignore[union-attr]
                             verify, credential, parsed[1])
        return d.addCallback(lambda ok: self._verifiedAs(digest, credential, known and ok))

    def _decoyFor(self, users: Mapping[str, Credential]) -> Credential:
        """A credential checked in place of an unknown user, at the cost of the real
        ones, so that a wrong name takes as long as a wrong password and does not
        reveal which names exist."""
        if self._decoy is None:
            costs = [_cost(c.password) for c in users.values() if c.encryption == "bcrypt"]
            if costs:
                hashed = bcrypt.hashpw(os.urandom(16), bcrypt.gensalt(max(costs)))
                self._decoy = Credential("", hashed.decode(), (), "bcrypt")
            else:
                self._decoy = Credential("", os.urandom(16).hex(), (), "plaintext")
        return self._decoy

    def _verifiedAs(self, digest: bytes, credential: Credential, ok: bool) -> Viewer:
        if not ok:
            raise self._challenge("wrong user name or password")
        self._verified[digest] = credential
        while len(self._verified) > VERIFIED_CACHE_SIZE:
            self._verified.popitem(last=False)
        return self._viewerFor(credential)

    def _viewerFor(self, user: Credential) -> Viewer:
        if not self.options.authenticateFirst:
            return Viewer(None, self.options.authorizer)
        return Viewer(user, self.options.authorizer)

    def authorize(self, viewer: Viewer, method: str, url: str, selector: str | None,
                  tree: etree._ElementTree | None) -> None:
        if self.options.authorizer is None:
            if self.options.users is not None and viewer.user is None:
                raise self._challenge()
            return
        if viewer.may(method, url, selector, tree):
            return
        if viewer.user is None and self.options.users is not None:
            raise self._challenge()
        raise FORBIDDEN.because(f"{method} {url}" + (f" selector {selector}" if selector else ""))

    def _challenge(self, reason: str | None = None) -> Problem:
        realm = self.options.realm.replace("\\", "\\\\").replace('"', '\\"')
        problem = UNAUTHORIZED.because(reason) if reason else UNAUTHORIZED
        return problem.withHeader(
            b"WWW-Authenticate", f'Basic realm="{realm}"'.encode("utf-8")
        )


def _cost(hashed: str) -> int:
    """The work factor of a bcrypt hash (C{$2b$12$...} is 12), 12 if unreadable."""
    parts = hashed.split("$")
    return int(parts[2]) if len(parts) > 3 and parts[2].isdigit() else 12
