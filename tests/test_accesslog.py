from __future__ import annotations

import io
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from twisted.internet.address import IPv4Address
from twisted.web.test.requesthelper import DummyRequest

from rustybeam.accesslog import (
    AccessLog,
    AccessLogEntry,
    AccessLogOptions,
    entryFromRequest,
    escape,
    formatEntry,
    formatTime,
    twistedLogFormatter,
)
from rustybeam.config import ConfigError

WHEN = datetime(2024, 10, 10, 13, 55, 36, tzinfo=timezone.utc)

ENTRY = AccessLogEntry(
    clientIP="127.0.0.1",
    method="GET",
    uri="/index.html",
    status=200,
    bytes=2326,
    time=WHEN,
    user="alice",
    referer="http://example.com/",
    userAgent="Mozilla/5.0",
)


def test_common_format() -> None:
    assert formatEntry(ENTRY) == '127.0.0.1 - alice [10/Oct/2024:13:55:36 +0000] "GET /index.html HTTP/1.1" 200 2326'


def test_combined_format() -> None:
    assert formatEntry(ENTRY, "combined") == (
        '127.0.0.1 - alice [10/Oct/2024:13:55:36 +0000] "GET /index.html HTTP/1.1" 200 2326 '
        '"http://example.com/" "Mozilla/5.0"'
    )


def test_json_format() -> None:
    assert json.loads(formatEntry(ENTRY, "json")) == {
        "timestamp": "10/Oct/2024:13:55:36 +0000",
        "remote_ip": "127.0.0.1",
        "user": "alice",
        "method": "GET",
        "uri": "/index.html",
        "version": "HTTP/1.1",
        "status": 200,
        "size": 2326,
        "user_agent": "Mozilla/5.0",
        "referer": "http://example.com/",
    }


def test_missing_values_are_dashes() -> None:
    entry = AccessLogEntry("10.0.0.1", "GET", "/ws", 101, None, WHEN)
    assert formatEntry(entry, "combined") == '10.0.0.1 - - [10/Oct/2024:13:55:36 +0000] "GET /ws HTTP/1.1" 101 - "-" "-"'


def test_escape_control_characters_and_quotes() -> None:
    assert escape('a"b\\c\nd\re\x00\x7f\x85') == 'a\\"b\\\\c\\x0ad\\x0de\\x00\\x7f\\x85'


def test_escape_keeps_printable_unicode() -> None:
    assert escape("héllo wörld") == "héllo wörld"


def test_escape_line_separator() -> None:
    assert escape("a\u2028b") == "a\\u2028b"


def test_log_injection_stays_on_one_line() -> None:
    entry = AccessLogEntry(
        clientIP="1.2.3.4",
        method="GET",
        uri='/x" 200 0\n5.6.7.8 - admin [x] "GET /',
        status=404,
        bytes=0,
        time=WHEN,
        user="eve space",
        userAgent='ua"\r\nforged',
    )
    for format in ("common", "combined", "json"):
        line = formatEntry(entry, format)
        assert "\n" not in line and "\r" not in line
    assert "eve\\x20space" in formatEntry(entry)
    assert '/x\\" 200 0\\x0a5.6.7.8' in formatEntry(entry)
    assert json.loads(formatEntry(entry, "json"))["user_agent"] == 'ua"\r\nforged'


def test_time_with_offset() -> None:
    moment = datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=-5)))
    assert formatTime(moment) == "02/Jan/2024:03:04:05 -0500"


def test_naive_time_is_utc() -> None:
    assert formatTime(datetime(2024, 12, 31, 23, 59, 59)) == "31/Dec/2024:23:59:59 +0000"


def test_options_default_to_common_on_stdout() -> None:
    options = AccessLogOptions()
    assert options.format == "common" and options.toStdout
    assert AccessLogOptions("-").toStdout


def test_options_reject_unknown_format() -> None:
    with pytest.raises(ConfigError):
        AccessLogOptions(format="xml")


def test_options_from_plugin_properties() -> None:
    options = AccessLogOptions.fromProperties({"log_file": "/tmp/a.log", "format": "JSON"})
    assert options == AccessLogOptions("/tmp/a.log", "json")
    assert AccessLogOptions.fromProperties({"logfile": "/tmp/b.log"}) == AccessLogOptions("/tmp/b.log")


def test_writer_appends_lines_to_file(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    path.write_text("earlier\n")
    log = AccessLog(AccessLogOptions(str(path)))
    log.log(ENTRY)
    assert path.read_text().splitlines()[1] == formatEntry(ENTRY)
    log.log(ENTRY)
    log.close()
    assert len(path.read_text().splitlines()) == 3


def test_writer_to_stream() -> None:
    stream = io.StringIO()
    AccessLog(AccessLogOptions(format="json"), stream=stream).log(ENTRY)
    assert stream.getvalue() == formatEntry(ENTRY, "json") + "\n"


def test_writer_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    AccessLog(AccessLogOptions()).log(ENTRY)
    assert capsys.readouterr().out == formatEntry(ENTRY) + "\n"


def twistedRequest() -> DummyRequest:
    request = DummyRequest([b"index.html"])
    request.method = b"PUT"
    request.uri = b"/index.html"
    request.clientproto = b"HTTP/1.1"
    request.code = 204
    request.sentLength = 0
    request.client = IPv4Address("TCP", "192.0.2.1", 1234)
    request.requestHeaders.setRawHeaders(b"user-agent", [b"curl/8"])
    return request


def test_entry_from_twisted_request() -> None:
    entry = entryFromRequest(twistedRequest(), user="bob", now=WHEN)
    assert entry == AccessLogEntry("192.0.2.1", "PUT", "/index.html", 204, None, WHEN, "bob", "HTTP/1.1", None, "curl/8")


def test_twisted_log_formatter() -> None:
    formatter = twistedLogFormatter("combined", userOf=lambda request: "bob")
    line = formatter("[ignored]", twistedRequest())
    assert line.startswith("192.0.2.1 - bob [") and line.endswith('"PUT /index.html HTTP/1.1" 204 - "-" "curl/8"')


def test_unknown_format_is_refused_naming_the_formats() -> None:
    with pytest.raises(ConfigError) as e:
        AccessLogOptions(format="xml")
    assert str(e.value) == "access log format must be one of common, combined, json: 'xml'"
    with pytest.raises(ValueError) as v:
        formatEntry(ENTRY, "xml")
    assert str(v.value) == "unknown access log format 'xml'"
    with pytest.raises(ValueError) as v:
        twistedLogFormatter("xml")
    assert str(v.value) == "unknown access log format 'xml'"


def test_address_with_a_space_is_escaped_and_a_missing_one_is_a_dash() -> None:
    spaced = AccessLogEntry("10.0.0.1 x", "GET", "/", 200, 1, WHEN)
    assert formatEntry(spaced).startswith("10.0.0.1\\x20x - - [")
    missing = AccessLogEntry("", "GET", "/", 200, 1, WHEN)
    assert formatEntry(missing).startswith("- - - [")


def test_json_line_is_compact_ascii_with_dashes_and_zero_for_what_is_missing() -> None:
    bare = AccessLogEntry("", "GET", "/caf\u00e9", 304, None, WHEN)
    assert formatEntry(bare, "json") == (
        '{"timestamp":"10/Oct/2024:13:55:36 +0000","remote_ip":"-","user":"-",'
        '"method":"GET","uri":"/caf\\u00e9","version":"HTTP/1.1","status":304,"size":0,'
        '"user_agent":"-","referer":"-"}')
    assert json.loads(formatEntry(ENTRY, "json"))["size"] == 2326


def test_closing_the_log_closes_only_a_file_it_opened(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    owned = AccessLog(AccessLogOptions(str(tmp_path / "access.log")))
    owned.close()
    assert owned._stream.closed
    owned.close()
    stream = io.StringIO()
    AccessLog(AccessLogOptions(str(tmp_path / "other.log")), stream=stream).close()
    AccessLog(AccessLogOptions(), stream=stream).close()
    assert not stream.closed
    AccessLog(AccessLogOptions()).close()
    import sys

    assert not sys.stdout.closed


def test_entry_from_a_request_without_an_ip_address_has_a_dash() -> None:
    from twisted.internet.address import UNIXAddress

    request = twistedRequest()
    request.client = UNIXAddress(b"/run/rustybeam.sock")
    assert entryFromRequest(request, now=WHEN).clientIP == "-"


def test_entry_from_a_request_carries_size_protocol_and_referer() -> None:
    request = twistedRequest()
    request.sentLength = 512
    request.clientproto = b"HTTP/1.0"
    request.requestHeaders.setRawHeaders(b"referer", [b"http://example.com/from"])
    entry = entryFromRequest(request, now=WHEN)
    assert (entry.bytes, entry.protocol, entry.referer) == (512, "HTTP/1.0", "http://example.com/from")


def test_entry_time_defaults_to_now_in_utc() -> None:
    before = datetime.now(timezone.utc)
    entry = entryFromRequest(twistedRequest())
    assert entry.time.utcoffset() == timedelta(0)
    assert before <= entry.time <= datetime.now(timezone.utc)


def test_twisted_log_formatter_defaults_to_common_and_asks_who_the_user_is() -> None:
    assert twistedLogFormatter()("[ignored]", twistedRequest()).startswith("192.0.2.1 - - [")
    formatter = twistedLogFormatter(userOf=lambda request: request.method.decode().lower())
    assert formatter("[ignored]", twistedRequest()).startswith("192.0.2.1 - put [")
