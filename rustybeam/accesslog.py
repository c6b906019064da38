"""
Access log lines in Common, Combined or JSON format, as Rusty Beam's access-log
plugin writes them, and a writer that appends them to a file or stdout.

Every field that a client controls is escaped so that one request is always one
line: C{"} and C{\\} get a backslash, control and other non-printable characters
become C{\\xHH} (C{\\n} is written C{\\x0a}), and the unquoted fields (address and
user) also escape spaces, so a crafted request can never forge or split a line.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Mapping, TextIO

from rustybeam.config import ConfigError

FORMATS = ("common", "combined", "json")
STDOUT = "-"

_MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()


@dataclass(frozen=True)
class AccessLogOptions:
    """Where to log (C{None} or C{"-"}: stdout) and in which of L{FORMATS}."""

    path: str | None = None
    format: str = "common"

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ConfigError(f"access log format must be one of {', '.join(FORMATS)}: {self.format!r}")

    @classmethod
    def fromProperties(cls, properties: Mapping[str, str]) -> AccessLogOptions:
        """Options from an access-log plugin's C{log_file} (or C{logfile}) and C{format}."""
        path = properties.get("log_file") or properties.get("logfile")
        return cls(path=path, format=(properties.get("format") or "common").strip().lower())

    @property
    def toStdout(self) -> bool:
        return self.path is None or self.path == STDOUT


@dataclass(frozen=True)
class AccessLogEntry:
    """One finished request (or WebSocket upgrade, status 101)."""

    clientIP: str
    method: str
    uri: str
    status: int
    bytes: int | None
    time: datetime
    user: str | None = None
    protocol: str = "HTTP/1.1"
    referer: str | None = None
    userAgent: str | None = None


def escape(value: str, unquoted: bool = False) -> str:
    """C{value} made safe for one log line (see the module docstring)."""
    out: list[str] = []
    for char in value:
        if char == "\\" or char == '"':
            out.append("\\" + char)
        elif char == " " and unquoted:
            out.append("\\x20")
        elif not char.isprintable() and char != " ":
            code = ord(char)
            out.append(f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}")
        else:
            out.append(char)
    return "".join(out)


def formatTime(moment: datetime) -> str:
    """C{10/Oct/2024:13:55:36 +0000}, with English month names whatever the locale."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    offset = moment.strftime("%z") or "+0000"
    return (
        f"{moment.day:02d}/{_MONTHS[moment.month - 1]}/{moment.year:04d}:"
        f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d} {offset}"
    )


def formatEntry(entry: AccessLogEntry, format: str = "common") -> str:
    """One log line, without its newline."""
    if format == "json":
        return _json(entry)
    line = (
        f"{escape(entry.clientIP or '-', unquoted=True)} - "
        f"{escape(entry.user or '-', unquoted=True)} [{formatTime(entry.time)}] "
        f'"{escape(entry.method)} {escape(entry.uri)} {escape(entry.protocol)}" '
        f"{entry.status} {'-' if entry.bytes is None else entry.bytes}"
    )
    if format == "combined":
        line += f' "{escape(entry.referer or "-")}" "{escape(entry.userAgent or "-")}"'
    elif format != "common":
        raise ValueError(f"unknown access log format {format!r}")
    return line


def _json(entry: AccessLogEntry) -> str:
    record: dict[str, Any] = {
        "timestamp": formatTime(entry.time),
        "remote_ip": entry.clientIP or "-",
        "user": entry.user or "-",
        "method": entry.method,
        "uri": entry.uri,
        "version": entry.protocol,
        "status": entry.status,
        "size": entry.bytes if entry.bytes is not None else 0,
        "user_agent": entry.userAgent or "-",
        "referer": entry.referer or "-",
    }
    return json.dumps(record, ensure_ascii=True, separators=(",", ":"))


class AccessLog:
    """Writes formatted entries, one line each, to a file (appending) or stdout."""

    def __init__(self, options: AccessLogOptions, stream: TextIO | None = None) -> None:
        self.options = options
        self._owned = stream is None and not options.toStdout
        if stream is not None:
            self._stream = stream
        elif options.toStdout:
            self._stream = sys.stdout
        else:
            assert options.path is not None
            self._stream = open(options.path, "a", encoding="utf-8", buffering=1)

    def log(self, entry: AccessLogEntry) -> None:
        self._stream.write(formatEntry(entry, self.options.format) + "\n")
        self._stream.flush()

    def close(self) -> None:
        if self._owned and not self._stream.closed:
            self._stream.close()


def entryFromRequest(
    request: Any,
    user: str | None = None,
    now: datetime | None = None,
) -> AccessLogEntry:
    """
    An entry for a finished C{twisted.web.http.Request}; C{user} is the
    authenticated user, which the request itself does not know.
    """
    address = request.getClientAddress()
    host = getattr(address, "host", None)
    return AccessLogEntry(
        clientIP=_text(host) if host else "-",
        method=_text(request.method),
        uri=_text(request.uri),
        status=int(request.code),
        bytes=request.sentLength if request.sentLength else None,
        time=now or datetime.now(timezone.utc),
        user=user,
        protocol=_text(request.clientproto),
        referer=_optionalText(request.getHeader(b"referer")),
        userAgent=_optionalText(request.getHeader(b"user-agent")),
    )


def twistedLogFormatter(
    format: str = "common",
    userOf: Callable[[Any], str | None] = lambda request: None,
) -> Callable[[str, Any], str]:
    """
    A C{logFormatter} for C{twisted.web.http.HTTPFactory}: Twisted's timestamp
    argument is ignored in favour of the entry's own time, so all formats agree.
    """
    if format not in FORMATS:
        raise ValueError(f"unknown access log format {format!r}")

    def formatter(timestamp: str, request: Any) -> str:
        return formatEntry(entryFromRequest(request, userOf(request)), format)

    return formatter


def _text(value: bytes | str) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


def _optionalText(value: bytes | str | None) -> str | None:
    return None if value is None else _text(value)
