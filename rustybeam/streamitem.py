"""
StreamItems: the HTML microdata message that tells a watcher what changed.

The text form is the seed's, byte for byte; connections that asked to resume
(C{"since"} in a subscribe) get one more property, C{sequence}, before the content.
"""

from __future__ import annotations

import zlib
from html import escape

from rustybeam.changes import Change

ITEMTYPE = "http://rustybeam.net/StreamItem"


def render(change: Change, content: str | None = None, sequenced: bool = False) -> str:
    """The StreamItem for C{change}, with C{content} in place of its own if given."""
    if content is None:
        content = change.content
    sequence = (
        f'    <span itemprop="sequence">{change.sequence}</span>\n' if sequenced else ""
    )
    return (
        f'<div itemscope itemtype="{ITEMTYPE}">\n'
        f'    <span itemprop="method">{escape(change.method)}</span>\n'
        f'    <span itemprop="url">{escape(change.url)}</span>\n'
        f'    <span itemprop="selector">{escape(change.selector)}</span>\n'
        f"{sequence}"
        f'    <div itemprop="content">\n'
        f"        {content}\n"
        f"    </div>\n"
        f"</div>"
    )


def compress(payload: bytes) -> bytes:
    """The binary-frame form of a message: zlib (RFC 1950) of its UTF-8 text."""
    return zlib.compress(payload, 6)


def decompress(payload: bytes, limit: int) -> bytes:
    """Inverse of L{compress}, refusing output larger than C{limit} bytes."""
    d = zlib.decompressobj()
    try:
        out = d.decompress(payload, limit + 1)
    except zlib.error as e:
        raise ValueError(f"invalid zlib data: {e}") from None
    if len(out) > limit or d.unconsumed_tail:
        raise ValueError("decompressed message exceeds the size limit")
    if not d.eof:
        raise ValueError("truncated or invalid zlib data")
    return out
