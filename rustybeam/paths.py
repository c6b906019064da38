"""
Mapping request paths to files under a document root, and naming documents.

Nothing outside the root is ever returned, whatever the encoding of the path:
percent-encoded dots and slashes, backslashes, NUL, and symlinks that leave the root
are all refused with L{rustybeam.errors.BAD_PATH} (or L{NOT_FOUND} for escaping links).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import unquote, unquote_to_bytes

from rustybeam.errors import BAD_PATH, NOT_FOUND

INDEX = "index.html"
HTML_SUFFIXES = (".html", ".htm")
MAX_PATH_LENGTH = 2048
TEMP_PREFIX = ".rustybeam-"
TEMP_SUFFIX = ".tmp"
"""Names of the temporary files of atomic writes: never served or written as documents."""


@dataclass(frozen=True)
class DocumentPath:
    """A document's canonical URL (C{/dir/index.html}) and its file on disk."""

    url: str
    filename: str

    @property
    def isHTML(self) -> bool:
        return self.filename.lower().endswith(HTML_SUFFIXES)


def decodeSegments(rawPath: bytes | str) -> list[str]:
    """Split a raw (still percent-encoded) URL path into safe, decoded segments."""
    if isinstance(rawPath, str):
        rawPath = rawPath.encode("utf-8")
    rawPath = rawPath.split(b"?", 1)[0].split(b"#", 1)[0]
    if len(rawPath) > MAX_PATH_LENGTH:
        raise BAD_PATH.because("too long")
    if not rawPath.startswith(b"/"):
        raise BAD_PATH.because("must be absolute")
    segments = []
    for raw in rawPath.split(b"/")[1:]:
        try:
            segment = unquote_to_bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            raise BAD_PATH.because("not UTF-8") from None
        if "/" in segment or "\\" in segment or "\x00" in segment:
            raise BAD_PATH.because("encoded separator or NUL")
        if segment in (".", "..") or unquote(segment) in (".", ".."):
            raise BAD_PATH.because("dot segment")
        if segment and segment.strip(".") == "":
            raise BAD_PATH.because("a name of dots only")
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in segment):
            raise BAD_PATH.because("control character")
        segments.append(segment)
    return segments


def resolve(root: str, rawPath: bytes | str) -> DocumentPath:
    """
    Map C{rawPath} to a document under C{root}.

    A path ending in C{/}, or naming an existing directory, names that directory's
    C{index.html}; C{/dir}, C{/dir/} and C{/dir/index.html} are one document. A path
    through a symlink (that stays inside the root) names the file the link points
    to: one file is one document, with one write lock, one cache entry, one set of
    watchers and one set of rules, however it is reached.
    """
    segments = decodeSegments(rawPath)
    root = os.path.realpath(root)
    if segments and segments[-1] == "":
        segments[-1] = INDEX
    if not segments:
        segments = [INDEX]
    if any(s == "" for s in segments):
        raise BAD_PATH.because("empty segment")
    if any(s.startswith(TEMP_PREFIX) and s.endswith(TEMP_SUFFIX) for s in segments):
        raise NOT_FOUND.because("temporary file")
    filename = os.path.join(root, *segments)
    if os.path.isdir(filename):
        segments.append(INDEX)
        filename = os.path.join(filename, INDEX)
    real = _inside(root, filename)
    if real != filename:
        relative = os.path.relpath(real, root).split(os.sep)
        return DocumentPath("/" + "/".join(relative), real)
    return DocumentPath("/" + "/".join(segments), filename)


def _inside(root: str, filename: str) -> str:
    """C{filename} with symlinks resolved; refused if that leaves C{root}."""
    real = os.path.realpath(filename)
    if real == root or not real.startswith(root + os.sep):
        raise NOT_FOUND.because("outside the document root")
    return real
