"""
Rusty Beam's C{cors} plugin: answers CORS preflights and adds the CORS headers to
every response.

A preflight is an C{OPTIONS} request with C{Access-Control-Request-Method}; it gets
204 with C{Access-Control-Allow-Origin} (when the origin is allowed),
C{-Allow-Methods}, C{-Allow-Headers}, C{-Allow-Credentials} and C{-Max-Age}. Other
responses get C{Access-Control-Allow-Origin}, C{-Expose-Headers} and
C{-Allow-Credentials}. An origin is allowed when C{allowed_origins} lists it exactly
or lists C{*}; with C{*} and C{allow_credentials} the origin itself is echoed.
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.web.server import Request

from rustybeam.config import PluginConfig
from rustybeam.plugins import PipelineContext, Reply, Response, Stage, addVary
from rustybeam.plugins._properties import flag, integer, items


@dataclass(frozen=True)
class CorsOptions:
    allowedOrigins: tuple[str, ...] = ("*",)
    allowedMethods: tuple[str, ...] = ("GET", "POST", "PUT", "DELETE", "OPTIONS")
    allowedHeaders: tuple[str, ...] = ("Content-Type", "Authorization", "X-Requested-With")
    exposedHeaders: tuple[str, ...] = ()
    allowCredentials: bool = False
    maxAge: int | None = None

    @classmethod
    def fromPlugin(cls, plugin: PluginConfig) -> CorsOptions:
        d = cls()
        return cls(
            allowedOrigins=items(plugin, "allowed_origins", d.allowedOrigins),
            allowedMethods=items(plugin, "allowed_methods", d.allowedMethods),
            allowedHeaders=items(plugin, "allowed_headers", d.allowedHeaders),
            exposedHeaders=tuple(h for h in items(plugin, "exposed_headers", ()) if h),
            allowCredentials=flag(plugin, "allow_credentials", False),
            maxAge=integer(plugin, "max_age", None),
        )


def allowedOrigins(plugin: PluginConfig) -> tuple[str, ...]:
    """The origins a C{cors} plugin allows (C{*} for any; otherwise exact origins,
    which contain no fnmatch wildcards)."""
    return CorsOptions.fromPlugin(plugin).allowedOrigins


def trustedOrigins(plugin: PluginConfig) -> tuple[str, ...]:
    """
    The foreign origins this plugin lets act with a browser's credentials (see
    L{rustybeam.origins}): the origins it lists by name, and any origin only when it
    allows C{*} I{with} C{allow_credentials}. A bare C{*} (the default) shares
    responses with every page but trusts none with the user's credentials.
    """
    options = CorsOptions.fromPlugin(plugin)
    if "*" in options.allowedOrigins:
        return ("*",) if options.allowCredentials else ()
    return tuple(o.replace("[", "[[]").replace("*", "[*]").replace("?", "[?]")
                 for o in options.allowedOrigins)


class Cors(Stage):
    answers = True

    def __init__(self, options: CorsOptions) -> None:
        self.options = options

    def allowOrigin(self, origin: str | None) -> str | None:
        """The C{Access-Control-Allow-Origin} value for a request's C{Origin}."""
        o = self.options
        if origin is None or not ("*" in o.allowedOrigins or origin in o.allowedOrigins):
            return None
        if "*" in o.allowedOrigins and not o.allowCredentials:
            return "*"
        return origin

    def request(self, request: Request, user: str | None) -> Reply | None:
        if request.method != b"OPTIONS" or request.getHeader(b"access-control-request-method") is None:
            return None
        o = self.options
        headers: list[tuple[bytes, bytes]] = []
        allowed = self.allowOrigin(_origin(request))
        if allowed is not None:
            headers += _originHeaders(allowed)
        if o.allowedMethods:
            headers.append((b"Access-Control-Allow-Methods", ", ".join(o.allowedMethods).encode()))
        if o.allowedHeaders:
            headers.append((b"Access-Control-Allow-Headers", ", ".join(o.allowedHeaders).encode()))
        if o.allowCredentials:
            headers.append((b"Access-Control-Allow-Credentials", b"true"))
        if o.maxAge is not None:
            headers.append((b"Access-Control-Max-Age", str(o.maxAge).encode()))
        return Reply(204, contentType=None, headers=tuple(headers))

    def response(self, request: Request, response: Response) -> None:
        allowed = self.allowOrigin(_origin(request))
        if allowed is not None:
            for name, value in _originHeaders(allowed):
                if name == b"Vary":
                    addVary(request, value)
                else:
                    request.setHeader(name, value)
        if self.options.exposedHeaders:
            request.setHeader(b"Access-Control-Expose-Headers",
                              ", ".join(self.options.exposedHeaders).encode())
        if self.options.allowCredentials:
            request.setHeader(b"Access-Control-Allow-Credentials", b"true")


def _origin(request: Request) -> str | None:
    value = request.getHeader(b"origin")
    return value.decode("latin-1") if value is not None else None


def _originHeaders(allowed: str) -> list[tuple[bytes, bytes]]:
    headers = [(b"Access-Control-Allow-Origin", allowed.encode("latin-1"))]
    if allowed != "*":
        headers.append((b"Vary", b"Origin"))
    return headers


def stage(plugin: PluginConfig, context: PipelineContext) -> Stage:
    return Cors(CorsOptions.fromPlugin(plugin))
