"""
Rusty Beam's C{security-headers} plugin: adds C{Content-Security-Policy},
C{X-Frame-Options}, C{X-Content-Type-Options}, C{Referrer-Policy},
C{Permissions-Policy}, C{X-XSS-Protection} and C{Server: rusty-beam} to every
response, and C{Strict-Transport-Security} to responses over HTTPS (a TLS endpoint,
or C{X-Forwarded-Proto: https}).
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.web.server import Request

from rustybeam.config import PluginConfig
from rustybeam.plugins import PipelineContext, Response, Stage
from rustybeam.plugins._properties import flag, integer, text

DEFAULT_CSP = "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'"


@dataclass(frozen=True)
class SecurityHeadersOptions:
    cspPolicy: str = DEFAULT_CSP
    hstsMaxAge: int = 31536000
    hstsIncludeSubdomains: bool = True
    hstsPreload: bool = False
    frameOptions: str = "SAMEORIGIN"
    contentTypeOptions: bool = True
    referrerPolicy: str = "strict-origin-when-cross-origin"
    permissionsPolicy: str | None = None
    xssProtection: str = "1; mode=block"

    @classmethod
    def fromPlugin(cls, plugin: PluginConfig) -> SecurityHeadersOptions:
        d = cls()
        return cls(
            cspPolicy=text(plugin, "csp_policy", d.cspPolicy) or d.cspPolicy,
            hstsMaxAge=integer(plugin, "hsts_max_age", d.hstsMaxAge) or 0,
            hstsIncludeSubdomains=flag(plugin, "hsts_include_subdomains", True),
            hstsPreload=flag(plugin, "hsts_preload", False),
            frameOptions=text(plugin, "frame_options", d.frameOptions) or d.frameOptions,
            contentTypeOptions=flag(plugin, "content_type_options", True),
            referrerPolicy=text(plugin, "referrer_policy", d.referrerPolicy) or d.referrerPolicy,
            permissionsPolicy=text(plugin, "permissions_policy"),
            xssProtection=text(plugin, "xss_protection", d.xssProtection) or d.xssProtection,
        )


def isHTTPS(request: Request) -> bool:
    """Whether the client reached us over HTTPS (directly, or as a proxy says)."""
    proto = request.getHeader(b"x-forwarded-proto")
    if proto is not None:
        return proto.strip().lower() == b"https"
    return bool(request.isSecure())


class SecurityHeaders(Stage):
    def __init__(self, options: SecurityHeadersOptions) -> None:
        o = options
        headers = [(b"Content-Security-Policy", o.cspPolicy),
                   (b"X-Frame-Options", o.frameOptions)]
        if o.contentTypeOptions:
            headers.append((b"X-Content-Type-Options", "nosniff"))
        headers.append((b"Referrer-Policy", o.referrerPolicy))
        if o.permissionsPolicy:
            headers.append((b"Permissions-Policy", o.permissionsPolicy))
        headers.append((b"X-XSS-Protection", o.xssProtection))
        headers.append((b"Server", "rusty-beam"))
        self.headers = tuple((name, value.encode("latin-1")) for name, value in headers)
        hsts = f"max-age={o.hstsMaxAge}"
        if o.hstsIncludeSubdomains:
            hsts += "; includeSubDomains"
        if o.hstsPreload:
            hsts += "; preload"
        self.hsts = hsts.encode()

    def response(self, request: Request, response: Response) -> None:
        for name, value in self.headers:
            request.setHeader(name, value)
        if isHTTPS(request):
            request.setHeader(b"Strict-Transport-Security", self.hsts)


def stage(plugin: PluginConfig, context: PipelineContext) -> Stage:
    return SecurityHeaders(SecurityHeadersOptions.fromPlugin(plugin))
