"""
Every error a client can see, defined once: a status code and a one-line reason.

Handlers raise L{Problem} (or return one) and the resource layer renders it as a
C{text/plain} response; the WebSocket layer renders the same values as JSON error
messages with the C{code} as the C{error} field.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class Problem(Exception):
    """A client-visible failure: HTTP status, machine-readable code, human reason."""

    status: int
    code: str
    message: str
    headers: tuple[tuple[bytes, bytes], ...] = field(default=())

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"

    def because(self, detail: str) -> Problem:
        """The same problem with a more precise message."""
        return replace(self, message=f"{self.message}: {detail}")

    def withHeader(self, name: bytes, value: bytes) -> Problem:
        return replace(self, headers=self.headers + ((name, value),))


BAD_SELECTOR = Problem(400, "bad-selector", "malformed CSS selector")
EMPTY_SELECTOR = Problem(400, "bad-selector", "empty selector")
BAD_RANGE = Problem(400, "bad-range", "Range header must be 'selector=<css>'")
NOT_UTF8 = Problem(400, "not-utf8", "request body is not valid UTF-8")
UNSTORABLE = Problem(400, "unstorable", "the body cannot be stored as HTML")
RESTRUCTURED = Problem(400, "restructured", "the body would not keep its place: an HTML parser "
                       "reading the stored document would move it (for example a <p> inside a <p>)")
BAD_PATH = Problem(400, "bad-path", "request path is not allowed")
UNAUTHORIZED = Problem(401, "unauthorized", "authentication required")
FORBIDDEN = Problem(403, "forbidden", "not allowed")
ORIGIN_REFUSED = Problem(403, "origin-refused", "Origin is not allowed")
CROSS_SITE = Problem(403, "cross-site", "a page from another site may not write or watch "
                     "here with your credentials")
NOT_FOUND = Problem(404, "not-found", "no such document")
UNKNOWN_HOST = Problem(404, "unknown-host", "no host is configured for this name")
METHOD_NOT_ALLOWED = Problem(405, "method-not-allowed", "method not allowed")
PRECONDITION_FAILED = Problem(412, "precondition-failed", "If-Match does not match the current ETag")
TOO_LARGE = Problem(413, "too-large", "request body exceeds the configured limit")
NO_MATCH = Problem(416, "no-match", "selector matched no element")
NOT_HTML = Problem(416, "not-html", "selector ranges apply only to .html and .htm documents")
SELECTORS_DISABLED = Problem(416, "no-selectors", "this host does not change documents by selector")
IS_DIRECTORY = Problem(409, "is-directory", "path names a directory")
PARENT_IS_FILE = Problem(409, "parent-is-file", "a parent of the path is a file, not a directory")
UPGRADE_REQUIRED = Problem(426, "upgrade-required", "unsupported WebSocket version").withHeader(
    b"Sec-WebSocket-Version", b"13"
)
WRITE_FAILED = Problem(500, "write-failed", "the document could not be written")
INTERNAL = Problem(500, "internal", "internal server error")
TOO_MANY_CONNECTIONS = Problem(503, "too-many-connections", "connection limit reached")
WRITER_UNAVAILABLE = Problem(503, "writer-unavailable", "the cluster's writer cannot be reached; "
                             "nothing was applied").withHeader(b"Retry-After", b"1")
NOT_READY = Problem(503, "not-ready", "this node has not yet copied the documents from the "
                    "writer").withHeader(b"Retry-After", b"1")
REPLICA_BEHIND = Problem(504, "replica-behind", "the writer applied the write but this node's "
                         "copy has not caught up yet")
CLUSTER_REFUSED = Problem(403, "cluster-refused", "not a member of this cluster")
WRITER_FAILED = Problem(502, "writer-failed", "the cluster's writer failed while handling the "
                        "write; it may or may not have been applied")
CLUSTER_NOT_READY = Problem(503, "writer-not-ready", "the writer has not reached Redis yet; "
                            "nothing was applied").withHeader(b"Retry-After", b"1")
