"""
Cross-site request protection for hosts with authentication.

A browser attaches the Basic credentials it has cached for a server to requests that
any other web page makes to it: a WebSocket opened by a foreign page reads the user's
live view, and a foreign form POST writes with the user's rights. L{OriginPolicy}
refuses such requests when the C{Origin} (or, failing that, the C{Referer}) names
another origin than the one the request was sent to, unless that origin is trusted
(C{--allow-origin}, or the host's C{cors} plugin). Requests without either header
come from non-browser clients and pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from urllib.parse import urlsplit

from twisted.web.server import Request

from rustybeam.errors import CROSS_SITE

DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


@dataclass(frozen=True)
class OriginPolicy:
    """Which foreign origins may make credentialed writes and WebSocket handshakes."""

    trusted: tuple[str, ...] = ()
    """Origins (C{scheme://host[:port]}, fnmatch patterns) trusted besides the
    request's own."""

    def check(self, request: Request) -> None:
        """Raise a 403 Problem when C{request} comes from a foreign, untrusted page."""
        origin = requestOrigin(request)
        if origin is None or sameOrigin(origin, request.getHeader(b"host")):
            return
        if any(fnmatchcase(origin.lower(), p.lower()) for p in self.trusted):
            return
        raise CROSS_SITE.because(origin)


def requestOrigin(request: Request) -> str | None:
    """The origin of the page that made C{request}: its C{Origin} header, else the
    origin of its C{Referer}; C{None} when it has neither (not a browser)."""
    origin = request.getHeader(b"origin")
    if origin is not None:
        return origin.decode("latin-1").strip()
    referer = request.getHeader(b"referer")
    if referer is None:
        return None
    parts = urlsplit(referer.decode("latin-1").strip())
    if not parts.scheme or not parts.netloc:
        return "null"
    return f"{parts.scheme}://{parts.netloc}"


def sameOrigin(origin: str | None, host: bytes | None) -> bool:
    """
    Whether C{origin} names the server that C{host} (the request's C{Host}) names.

    The scheme is not compared (a proxy may terminate TLS in front of us), but the
    port is: a C{Host} without a port means the default port of the origin's scheme.
    """
    if origin is None or host is None:
        return False
    try:
        parts = urlsplit(origin)
        scheme, name, port = parts.scheme.lower(), parts.hostname, parts.port
        wanted = urlsplit("//" + host.decode("latin-1").strip())
        wantedName, wantedPort = wanted.hostname, wanted.port
    except ValueError:
        return False
    if scheme not in DEFAULT_PORTS or not name or not wantedName:
        return False
    default = DEFAULT_PORTS[scheme]
    return name == wantedName and (port or default) == (wantedPort or default)
