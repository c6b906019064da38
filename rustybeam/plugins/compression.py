"""
Rusty Beam's C{compression} plugin: compresses response bodies by
C{Accept-Encoding}.

The first of brotli (C{br}), gzip and deflate that both the client accepts and
C{algorithms} enables is used, for bodies of C{min_size} to C{max_size} bytes whose
C{Content-Type} starts with one of C{compressible_types} (or that have none), that
are not encoded already. As in Rusty Beam this includes 206 selector responses (the
encoding applies to the selected fragment; C{Content-Range} and C{ETag} are left as
they are, so If-Match keeps working). HEAD responses and WebSocket upgrades are
never touched.
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass
from typing import Callable

import brotli
from twisted.web.server import Request

from rustybeam.config import PluginConfig
from rustybeam.plugins import PipelineContext, Response, Stage, addVary
from rustybeam.plugins._properties import integer, items

DEFAULT_TYPES = (
    "text/html", "text/css", "text/javascript", "text/plain", "application/json",
    "application/javascript", "application/xml", "application/rss+xml",
    "application/atom+xml", "image/svg+xml",
)
PREFERENCE = ("br", "gzip", "deflate")
_NAMES = {"gzip": "gzip", "deflate": "deflate", "brotli": "br", "br": "br"}


@dataclass(frozen=True)
class CompressionOptions:
    algorithms: tuple[str, ...] = ("gzip", "deflate")
    """Content-codings enabled: C{br}, C{gzip}, C{deflate}."""
    minSize: int = 1024
    maxSize: int = 10 * 1024 * 1024
    level: int = 6
    compressibleTypes: tuple[str, ...] = DEFAULT_TYPES

    @classmethod
    def fromPlugin(cls, plugin: PluginConfig) -> CompressionOptions:
        d = cls()
        names = items(plugin, "algorithms", d.algorithms)
        return cls(
            algorithms=tuple(_NAMES[n.lower()] for n in names if n.lower() in _NAMES),
            minSize=integer(plugin, "min_size", d.minSize) or 0,
            maxSize=integer(plugin, "max_size", d.maxSize) or 0,
            level=min(9, max(0, integer(plugin, "compression_level", d.level) or 0)),
            compressibleTypes=items(plugin, "compressible_types", d.compressibleTypes),
        )


def accepted(header: bytes | None) -> set[str]:
    """The content-codings an C{Accept-Encoding} value accepts (C{q=0} refuses)."""
    codings = set()
    for part in (header or b"").decode("latin-1").split(","):
        name, _, params = part.strip().partition(";")
        q = params.strip().lower()
        if q.startswith("q=") and q[2:].strip() in ("0", "0.0", "0.00", "0.000"):
            continue
        if name.strip():
            codings.add(name.strip().lower())
    return codings


class Compression(Stage):
    def __init__(self, options: CompressionOptions) -> None:
        self.options = options
        level = options.level
        self.encoders: dict[str, Callable[[bytes], bytes]] = {
            "br": lambda data: brotli.compress(data, quality=level),
            "gzip": lambda data: gzip.compress(data, compresslevel=level, mtime=0),
            "deflate": lambda data: zlib.compress(data, level),
        }

    def choose(self, request: Request) -> str | None:
        offered = accepted(request.getHeader(b"accept-encoding"))
        return next((c for c in PREFERENCE if c in self.options.algorithms and c in offered), None)

    def compressible(self, response: Response) -> bool:
        o = self.options
        if not o.minSize <= len(response.body) <= o.maxSize:
            return False
        if response.header(b"content-encoding") is not None:
            return False
        contentType = response.header(b"content-type")
        if contentType is None:
            return True
        kind = contentType.decode("latin-1").split(";", 1)[0].strip().lower()
        return any(kind.startswith(t.lower()) for t in o.compressibleTypes)

    def response(self, request: Request, response: Response) -> None:
        if request.method == b"HEAD":
            return
        coding = self.choose(request)
        if coding is None or not self.compressible(response):
            return
        response.setBody(self.encoders[coding](response.body))
        request.setHeader(b"content-encoding", coding.encode())
        addVary(request, b"Accept-Encoding")


def stage(plugin: PluginConfig, context: PipelineContext) -> Stage:
    return Compression(CompressionOptions.fromPlugin(plugin))
