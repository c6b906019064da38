"""
Documents over HTTP (SPEC section 2), against a real server process.

Every test works in its own copy of tests/data/documents (the C{docs} fixture); every
error test also checks that nothing changed on disk.
"""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import uuid
from contextlib import contextmanager
from email.utils import formatdate
from pathlib import Path
from typing import Iterator

import pytest
from conftest import DOCUMENTS, Docs, Response, Server, makeServer

from rustybeam import markup

HTML = "text/html; charset=utf-8"


# Helpers


def snapshot(directory: Path) -> dict[str, bytes | str]:
    """Every file (bytes) and symlink (target) under C{directory}."""
    found: dict[str, bytes | str] = {}
    for dirpath, dirnames, filenames in os.walk(directory):
        for name in dirnames + filenames:
            full = Path(dirpath) / name
            rel = str(full.relative_to(directory))
            if full.is_symlink():
                found[rel] = "-> " + os.readlink(full)
            elif full.is_file():
                found[rel] = full.read_bytes()
    return found


@contextmanager
def unchangedOnDisk(docs: Docs) -> Iterator[None]:
    """Assert that the block leaves every file of C{docs} byte-identical."""
    before = snapshot(docs.path)
    yield
    assert snapshot(docs.path) == before


def assertProblem(response: Response, status: int) -> None:
    """An error response: C{status}, and a one-line text/plain reason."""
    assert response.status == status, (response.status, response.text)
    assert response.headers["Content-Type"].startswith("text/plain")
    text = response.text
    assert text.strip(), "the reason is empty"
    assert text.rstrip("\n").count("\n") == 0, f"reason is not one line: {text!r}"
    assert not text.lstrip().startswith("<"), f"an HTML error page, not a reason: {text!r}"


def assertSelected(response: Response, status: int, css: str) -> None:
    assert response.status == status, (response.status, response.text)
    assert response.headers["Content-Type"] == HTML
    assert response.headers["Content-Range"] == f"selector {css}"


def stored(docs: Docs, name: str, css: str) -> list[str]:
    """The outer HTML of the elements C{css} matches in the file on disk."""
    from rustybeam import selectors

    tree = markup.parseDocument(docs.file(name).read_text(encoding="utf-8"))
    return [markup.serialize(e) for e in selectors.compile(css).select(tree.getroot())]


def raw(server: Server, method: str, path: str, body: bytes | None = None,
        headers: dict[str, str] | None = None) -> Response:
    """A request with C{path} sent byte for byte (no client-side normalisation)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            conn.putheader(name, value)
        conn.putheader("Content-Length", str(len(body or b"")))
        conn.endheaders(body)
        r = conn.getresponse()
        return Response(r.status, r.headers, r.read())
    finally:
        conn.close()


def rawExchange(server: Server, request: bytes) -> bytes:
    """Send C{request} on a fresh connection and return every byte of the answer."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(request)
        chunks = []
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


# GET and HEAD without Range


@pytest.mark.parametrize("name, contentType", [
    ("doc.html", "text/html; charset=utf-8"),
    ("style.css", "text/css; charset=utf-8"),
])
def test_get_serves_the_file_with_content_type_from_its_extension(
    server: Server, docs: Docs, name: str, contentType: str
) -> None:
    r = server.request("GET", docs.url(name))
    assert r.status == 200
    assert r.headers["Content-Type"] == contentType
    assert r.body == docs.file(name).read_bytes()


def test_get_serves_htm_as_html(server: Server, docs: Docs) -> None:
    docs.write("page.htm", "<p>htm</p>")
    r = server.request("GET", docs.url("page.htm"))
    assert r.status == 200
    assert r.headers["Content-Type"] == HTML


def test_get_sends_etag_and_last_modified(server: Server, docs: Docs) -> None:
    r = server.request("GET", docs.url("doc.html"))
    etag = r.headers["ETag"]
    assert etag.startswith('"') and etag.endswith('"') and len(etag) > 2
    mtime = docs.file("doc.html").stat().st_mtime
    assert r.headers["Last-Modified"] == formatdate(mtime, usegmt=True)
    assert server.request("GET", docs.url("doc.html")).headers["ETag"] == etag


def test_etag_changes_when_the_document_changes(server: Server, docs: Docs) -> None:
    etag = server.request("GET", docs.url("doc.html")).headers["ETag"]
    server.select("PUT", docs.url("doc.html"), "#content", '<div id="content">x</div>')
    assert server.request("GET", docs.url("doc.html")).headers["ETag"] != etag


def test_if_none_match_with_the_current_etag_is_304(server: Server, docs: Docs) -> None:
    etag = server.request("GET", docs.url("doc.html")).headers["ETag"]
    r = server.request("GET", docs.url("doc.html"), headers={"If-None-Match": etag})
    assert r.status == 304
    assert r.body == b""
    assert r.headers["ETag"] == etag


def test_if_none_match_with_a_stale_etag_serves_the_file(server: Server, docs: Docs) -> None:
    r = server.request("GET", docs.url("doc.html"), headers={"If-None-Match": '"stale"'})
    assert r.status == 200
    assert r.body == docs.file("doc.html").read_bytes()


def test_head_sends_the_headers_of_get_and_no_body(server: Server, docs: Docs) -> None:
    get = server.request("GET", docs.url("doc.html"))
    answer = rawExchange(server, (
        f"HEAD {docs.url('doc.html')} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    ).encode())
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert body == b""
    headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n")[1:])
    lower = {k.lower(): v for k, v in headers.items()}
    assert lower["content-length"] == str(len(get.body))
    assert lower["content-type"] == HTML
    assert lower["etag"] == get.headers["ETag"]


def test_get_of_a_missing_file_is_404(server: Server, docs: Docs) -> None:
    assertProblem(server.request("GET", docs.url("missing.html")), 404)


@pytest.mark.parametrize("path", ["", "index.html"])
def test_directory_url_serves_its_index_html(server: Server, docs: Docs, path: str) -> None:
    r = server.request("GET", docs.url(path))
    assert r.status == 200
    assert r.body == docs.file("index.html").read_bytes()


def test_directory_url_without_slash_serves_its_index_html(server: Server, docs: Docs) -> None:
    r = server.request("GET", docs.prefix)
    assert r.status == 200
    assert r.body == docs.file("index.html").read_bytes()


@pytest.mark.parametrize("path", ["dir", "dir/", "dir/index.html"])
def test_dir_dir_slash_and_dir_index_html_are_one_document(
    server: Server, docs: Docs, path: str
) -> None:
    r = server.request("GET", docs.url(path))
    assert r.status == 200
    assert r.body == docs.file("dir/index.html").read_bytes()
    r = server.select("GET", docs.url(path), "#content")
    assert r.text == '<div id="content">Dir index</div>'


def test_root_url_serves_the_root_index_html(server: Server) -> None:
    (server.root / "index.html").write_text("<!DOCTYPE html><p>root of the server</p>")
    try:
        r = server.request("GET", "/")
        assert r.status == 200
        assert r.body == b"<!DOCTYPE html><p>root of the server</p>"
    finally:
        (server.root / "index.html").unlink()


def test_writes_through_dir_url_change_dir_index_html(server: Server, docs: Docs) -> None:
    r = server.select("PUT", docs.url("dir"), "#content", '<div id="content">via dir</div>')
    assert r.status == 206
    assert stored(docs, "dir/index.html", "#content") == ['<div id="content">via dir</div>']
    assert server.select("GET", docs.url("dir/"), "#content").text == (
        '<div id="content">via dir</div>')


def test_file_changed_on_disk_by_something_else_is_reread(server: Server, docs: Docs) -> None:
    assert server.select("GET", docs.url("doc.html"), "#content").text == (
        '<div id="content">Original content</div>')
    docs.write("doc.html", '<!DOCTYPE html><html><body><div id="content">Edited by hand, '
               "outside the server</div></body></html>")
    assert server.select("GET", docs.url("doc.html"), "#content").text == (
        '<div id="content">Edited by hand, outside the server</div>')


# PUT and DELETE without Range


def test_put_without_range_creates_the_document_with_201(server: Server, docs: Docs) -> None:
    body = b"<!DOCTYPE html>\n<html><body><p id='n'>new</p></body></html>\n"
    r = server.request("PUT", docs.url("new.html"), body)
    assert r.status == 201
    assert docs.file("new.html").read_bytes() == body
    assert server.request("GET", docs.url("new.html")).body == body
    assert server.select("GET", docs.url("new.html"), "#n").text == '<p id="n">new</p>'


def test_put_without_range_replaces_the_document_with_204(server: Server, docs: Docs) -> None:
    body = b"<!DOCTYPE html>\n<html><body><p>replaced</p></body></html>\n"
    r = server.request("PUT", docs.url("doc.html"), body)
    assert r.status == 204
    assert r.body == b""
    assert docs.file("doc.html").read_bytes() == body
    assert server.request("GET", docs.url("doc.html")).body == body


def test_put_without_range_stores_non_html_files_verbatim(server: Server, docs: Docs) -> None:
    body = "p { color: blue; } /* é */".encode()
    assert server.request("PUT", docs.url("style.css"), body).status == 204
    assert docs.file("style.css").read_bytes() == body
    assert server.request("GET", docs.url("style.css")).body == body


def test_put_without_range_creates_missing_directories(server: Server, docs: Docs) -> None:
    r = server.request("PUT", docs.url("a/b/new.html"), b"<p>x</p>")
    assert r.status == 201
    assert docs.file("a/b/new.html").read_bytes() == b"<p>x</p>"
    assert server.request("GET", docs.url("a/b/new.html")).body == b"<p>x</p>"


def test_put_under_a_file_used_as_a_directory_is_409(server: Server, docs: Docs) -> None:
    with unchangedOnDisk(docs):
        assertProblem(server.request("PUT", docs.url("doc.html/new.html"), b"<p>x</p>"), 409)


def test_put_that_creates_directories_through_a_link_out_of_the_root_is_refused(
        server: Server, docs: Docs, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (docs.path / "out").symlink_to(outside)
    r = server.request("PUT", docs.url("out/sub/new.html"), b"<p>x</p>")
    assert r.status in (400, 404)
    assert list(outside.iterdir()) == []


def test_post_without_range_appends_to_the_file(server: Server, docs: Docs) -> None:
    docs.file("log.txt").write_bytes(b"one\n")
    r = server.request("POST", docs.url("log.txt"), b"two\n")
    assert (r.status, r.body) == (200, b"Content appended successfully")
    assert docs.file("log.txt").read_bytes() == b"one\ntwo\n"


def test_post_without_range_creates_the_file_and_its_directories(server: Server, docs: Docs) -> None:
    r = server.request("POST", docs.url("notes/today.txt"), b"first")
    assert (r.status, r.body) == (200, b"Content appended successfully")
    assert docs.file("notes/today.txt").read_bytes() == b"first"


def test_post_without_range_to_a_document_serves_the_appended_document(server: Server, docs: Docs) -> None:
    docs.write("guest.html", "<html><body><ul id=list><li>a</li></ul></body></html>")
    assert server.request("POST", docs.url("guest.html"), b"<p id=signed>b</p>").status == 200
    assert server.select("GET", docs.url("guest.html"), "#signed").text == '<p id="signed">b</p>'


def test_post_without_range_of_a_body_not_utf8_to_a_document_is_400(server: Server, docs: Docs) -> None:
    with unchangedOnDisk(docs):
        assertProblem(server.request("POST", docs.url("doc.html"), b"\xff\xfe"), 400)


def test_delete_without_range_removes_the_document_with_204_then_404(
    server: Server, docs: Docs
) -> None:
    r = server.request("DELETE", docs.url("doc.html"))
    assert r.status == 204
    assert not docs.file("doc.html").exists()
    assertProblem(server.request("GET", docs.url("doc.html")), 404)
    assertProblem(server.select("GET", docs.url("doc.html"), "#content"), 404)
    assertProblem(server.request("DELETE", docs.url("doc.html")), 404)


def test_options_lists_the_allowed_methods(server: Server, docs: Docs) -> None:
    r = server.request("OPTIONS", docs.url("doc.html"))
    assert r.status == 200
    assert set(r.headers["Allow"].replace(" ", "").split(",")) >= {"GET", "HEAD", "PUT", "POST", "DELETE"}
    assert r.headers["Accept-Ranges"] == "selector"


@pytest.mark.parametrize("method", ["PATCH", "PROPFIND", "TRACE", "MKCOL"])
def test_unsupported_method_without_selector_is_405_with_allow(
    server: Server, docs: Docs, method: str
) -> None:
    with unchangedOnDisk(docs):
        r = server.request(method, docs.url("doc.html"), b"<p>x</p>")
    assertProblem(r, 405)
    allowed = set(r.headers["Allow"].replace(" ", "").split(","))
    assert method not in allowed
    assert {"GET", "PUT", "POST", "DELETE"} <= allowed


# Range: selector=<css>


def test_range_get_returns_outer_html_of_every_match_joined_by_newline(
    server: Server, docs: Docs
) -> None:
    r = server.select("GET", docs.url("doc.html"), ".note")
    assertSelected(r, 206, ".note")
    assert r.text == '<p class="note">first</p>\n<p class="note">second</p>'


def test_range_get_of_one_match(server: Server, docs: Docs) -> None:
    r = server.select("GET", docs.url("doc.html"), "#list")
    assertSelected(r, 206, "#list")
    assert r.text == ('<ul id="list"><li class="item" id="a">A</li>'
                      '<li class="item" id="b">B</li></ul>')


def test_range_get_returns_matches_in_document_order(server: Server, docs: Docs) -> None:
    r = server.select("GET", docs.url("doc.html"), "#b, #title, #a")
    assert r.text == ('<h1 id="title">Title</h1>\n<li class="item" id="a">A</li>\n'
                      '<li class="item" id="b">B</li>')


def test_range_head_has_the_headers_and_no_body(server: Server, docs: Docs) -> None:
    get = server.select("GET", docs.url("doc.html"), ".note")
    answer = rawExchange(server, (
        f"HEAD {docs.url('doc.html')} HTTP/1.1\r\nHost: x\r\nRange: selector=.note\r\n"
        "Connection: close\r\n\r\n").encode())
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 206")
    assert body == b""
    assert f"Content-Length: {len(get.body)}".encode() in head


def test_percent_encoded_selector_value(server: Server, docs: Docs) -> None:
    r = server.request("GET", docs.url("doc.html"),
                       headers={"Range": "selector=%23list%20%3E%20li%5Bid%3D%22b%22%5D"})
    assertSelected(r, 206, '#list > li[id="b"]')
    assert r.text == '<li class="item" id="b">B</li>'


def test_percent_encoded_selector_value_for_a_write(server: Server, docs: Docs) -> None:
    r = server.request("PUT", docs.url("doc.html"), '<div id="content">é</div>',
                       headers={"Range": "selector=%23content"})
    assertSelected(r, 206, "#content")
    assert stored(docs, "doc.html", "#content") == ['<div id="content">é</div>']


def test_range_with_another_unit_is_ignored_and_serves_the_whole_file(
    server: Server, docs: Docs
) -> None:
    r = server.request("GET", docs.url("doc.html"), headers={"Range": "bytes=0-5"})
    assert r.status == 200
    assert r.body == docs.file("doc.html").read_bytes()


def test_range_put_replaces_the_match(server: Server, docs: Docs) -> None:
    r = server.select("PUT", docs.url("doc.html"), "#content", '<div id="content">New</div>')
    assertSelected(r, 206, "#content")
    assert r.text == '<div id="content">New</div>'
    assert stored(docs, "doc.html", "#content") == ['<div id="content">New</div>']
    assert "Original content" not in docs.file("doc.html").read_text()


def test_range_put_replaces_every_match(server: Server, docs: Docs) -> None:
    r = server.select("PUT", docs.url("doc.html"), ".note", '<p class="note">new</p>')
    assertSelected(r, 206, ".note")
    assert r.text == '<p class="note">new</p>\n<p class="note">new</p>'
    assert stored(docs, "doc.html", ".note") == ['<p class="note">new</p>'] * 2
    text = docs.file("doc.html").read_text()
    assert "first" not in text and "second" not in text


def test_range_put_response_is_the_new_element_as_stored(server: Server, docs: Docs) -> None:
    r = server.select("PUT", docs.url("doc.html"), "#content",
                      "<DIV id=content class=x>Hi <b>there</DIV>")
    assert r.status == 206
    assert r.text == '<div id="content" class="x">Hi <b>there</b></div>'
    assert stored(docs, "doc.html", "#content") == [r.text]
    assert server.select("GET", docs.url("doc.html"), "#content").text == r.text


def test_range_put_with_several_nodes_replaces_the_match_by_all_of_them(
    server: Server, docs: Docs
) -> None:
    r = server.select("PUT", docs.url("doc.html"), "#a", '<li id="x">X</li><li id="y">Y</li>')
    assert r.text == '<li id="x">X</li><li id="y">Y</li>'
    assert server.select("GET", docs.url("doc.html"), "#list > li").text == (
        '<li id="x">X</li>\n<li id="y">Y</li>\n<li class="item" id="b">B</li>')


def test_range_put_on_nested_matches_replaces_the_outermost(server: Server, docs: Docs) -> None:
    r = server.select("PUT", docs.url("doc.html"), "ul, li", '<p id="p">instead</p>')
    assert r.status == 206
    assert r.text == '<p id="p">instead</p>'
    assert stored(docs, "doc.html", "#p") == ['<p id="p">instead</p>']
    assert stored(docs, "doc.html", "li") == []


def test_range_post_appends_as_last_children(server: Server, docs: Docs) -> None:
    r = server.select("POST", docs.url("doc.html"), "#list", '<li id="c">C</li>')
    assertSelected(r, 206, "#list")
    assert r.text == '<li id="c">C</li>'
    assert stored(docs, "doc.html", "#list > li:last-child") == ['<li id="c">C</li>']
    assert [e.split('id="')[1][0] for e in stored(docs, "doc.html", "#list > li")] == [
        "a", "b", "c"]


def test_range_post_appends_to_every_match(server: Server, docs: Docs) -> None:
    r = server.select("POST", docs.url("doc.html"), ".note", "<b>!</b>")
    assertSelected(r, 206, ".note")
    assert r.text == "<b>!</b>\n<b>!</b>"
    assert stored(docs, "doc.html", ".note") == [
        '<p class="note">first<b>!</b></p>', '<p class="note">second<b>!</b></p>']


def test_range_post_of_text_appends_text(server: Server, docs: Docs) -> None:
    r = server.select("POST", docs.url("doc.html"), "#content", " & more")
    assert r.status == 206
    assert r.text == " &amp; more"
    assert stored(docs, "doc.html", "#content") == [
        '<div id="content">Original content &amp; more</div>']


def test_range_delete_removes_every_match_with_204(server: Server, docs: Docs) -> None:
    r = server.select("DELETE", docs.url("doc.html"), ".note")
    assert r.status == 204
    assert r.body == b""
    assert stored(docs, "doc.html", ".note") == []
    text = docs.file("doc.html").read_text()
    assert "first" not in text and "second" not in text
    assert stored(docs, "doc.html", "#secret") == [
        '<div class="private" id="secret">Secret</div>']
    assertProblem(server.select("GET", docs.url("doc.html"), ".note"), 416)


def test_written_document_stays_a_complete_html_document(server: Server, docs: Docs) -> None:
    server.select("PUT", docs.url("doc.html"), "#content", '<div id="content">x</div>')
    text = docs.file("doc.html").read_text()
    assert text.startswith("<!DOCTYPE html>")
    assert text.rstrip().endswith("</html>")
    assert stored(docs, "doc.html", "title") == ["<title>Doc</title>"]


# Fragments are parsed in the context of the target's parent


def test_li_body_lands_in_ul(server: Server, docs: Docs) -> None:
    server.select("POST", docs.url("doc.html"), "#list", '<li id="c">C</li>')
    server.select("PUT", docs.url("doc.html"), "#a", '<li id="z">Z</li>')
    r = server.select("GET", docs.url("doc.html"), "#list > li")
    assert r.text == '<li id="z">Z</li>\n<li class="item" id="b">B</li>\n<li id="c">C</li>'


def test_tr_body_lands_in_tbody(server: Server, docs: Docs) -> None:
    r = server.select("PUT", docs.url("doc.html"), "#r1", '<tr id="r2"><td>2</td></tr>')
    assert r.text == '<tr id="r2"><td>2</td></tr>'
    server.select("POST", docs.url("doc.html"), "#table > tbody", '<tr id="r3"><td>3</td></tr>')
    r = server.select("GET", docs.url("doc.html"), "#table > tbody > tr > td")
    assert r.text == "<td>2</td>\n<td>3</td>"
    assert stored(docs, "doc.html", "#table") == [
        '<table id="table"><tbody><tr id="r2"><td>2</td></tr>'
        '<tr id="r3"><td>3</td></tr></tbody></table>']


def test_td_body_lands_in_tr(server: Server, docs: Docs) -> None:
    r = server.select("POST", docs.url("doc.html"), "#r1", "<td>new</td>")
    assert r.text == "<td>new</td>"
    r = server.select("GET", docs.url("doc.html"), "#table tr > td")
    assert r.text == "<td>1</td>\n<td>new</td>"
    server.select("PUT", docs.url("doc.html"), "#r1 > td:first-child", "<td>one</td>")
    assert stored(docs, "doc.html", "#r1") == ['<tr id="r1"><td>one</td><td>new</td></tr>']


def test_option_body_lands_in_select(server: Server, docs: Docs) -> None:
    r = server.select("POST", docs.url("doc.html"), "#choice", "<option>two</option>")
    assert r.text == "<option>two</option>"
    r = server.select("GET", docs.url("doc.html"), "#choice > option")
    assert r.text == "<option>one</option>\n<option>two</option>"
    server.select("PUT", docs.url("doc.html"), "#choice > option:first-child",
                  '<option value="1">uno</option>')
    assert stored(docs, "doc.html", "#choice > option") == [
        '<option value="1">uno</option>', "<option>two</option>"]


# Errors: each with a one-line text/plain reason and no change on disk


WRITE_METHODS = ["PUT", "POST", "DELETE"]
ALL_METHODS = ["GET"] + WRITE_METHODS
BODY = '<p id="new">new</p>'


@pytest.mark.parametrize("method", ALL_METHODS)
def test_empty_selector_is_400(server: Server, docs: Docs, method: str) -> None:
    with unchangedOnDisk(docs):
        assertProblem(server.select(method, docs.url("doc.html"), "", BODY), 400)
        assertProblem(server.select(method, docs.url("doc.html"), "   ", BODY), 400)


@pytest.mark.parametrize("method", ALL_METHODS)
@pytest.mark.parametrize("css", [">>>invalid<<<", "div[", "div(", "p:no-such-pseudo"])
def test_malformed_selector_is_400(server: Server, docs: Docs, method: str, css: str) -> None:
    with unchangedOnDisk(docs):
        assertProblem(server.select(method, docs.url("doc.html"), css, BODY), 400)


@pytest.mark.parametrize("method", ALL_METHODS)
def test_percent_encoded_selector_that_is_not_utf8_is_400(
    server: Server, docs: Docs, method: str
) -> None:
    with unchangedOnDisk(docs):
        assertProblem(server.select(method, docs.url("doc.html"), "%ff%fe", BODY), 400)


@pytest.mark.parametrize("method", ALL_METHODS)
def test_selector_longer_than_the_limit_is_400(server: Server, docs: Docs, method: str) -> None:
    with unchangedOnDisk(docs):
        assertProblem(server.select(method, docs.url("doc.html"), "p" * 5000, BODY), 400)


@pytest.mark.parametrize("method", ALL_METHODS)
def test_selector_matching_nothing_is_416(server: Server, docs: Docs, method: str) -> None:
    with unchangedOnDisk(docs):
        assertProblem(server.select(method, docs.url("doc.html"), "#nothing", BODY), 416)


@pytest.mark.parametrize("method", ALL_METHODS)
def test_selector_on_a_non_html_file_is_416(server: Server, docs: Docs, method: str) -> None:
    with unchangedOnDisk(docs):
        assertProblem(server.select(method, docs.url("style.css"), "body", BODY), 416)


@pytest.mark.parametrize("method", ALL_METHODS)
def test_selector_on_a_missing_file_is_404(server: Server, docs: Docs, method: str) -> None:
    with unchangedOnDisk(docs):
        assertProblem(server.select(method, docs.url("missing.html"), "#content", BODY), 404)
    assert not docs.file("missing.html").exists()


@pytest.mark.parametrize("method", ["PATCH", "PROPFIND", "TRACE"])
def test_other_method_with_selector_is_405_with_allow(
    server: Server, docs: Docs, method: str
) -> None:
    with unchangedOnDisk(docs):
        r = server.select(method, docs.url("doc.html"), "#content", BODY)
    assertProblem(r, 405)
    allowed = set(r.headers["Allow"].replace(" ", "").split(","))
    assert {"GET", "HEAD", "PUT", "POST", "DELETE"} <= allowed
    assert method not in allowed


@pytest.mark.parametrize("method", ["PUT", "POST"])
def test_body_that_is_not_utf8_is_400(server: Server, docs: Docs, method: str) -> None:
    with unchangedOnDisk(docs):
        assertProblem(server.select(method, docs.url("doc.html"), "#content",
                                    '<div id="content">caf'.encode() + b"\xe9</div>"), 400)


def test_whole_html_document_that_is_not_utf8_is_400(server: Server, docs: Docs) -> None:
    with unchangedOnDisk(docs):
        assertProblem(server.request("PUT", docs.url("doc.html"), b"<p>\xff</p>"), 400)
        assertProblem(server.request("PUT", docs.url("new.html"), b"<p>\xff</p>"), 400)


@pytest.mark.parametrize("method", WRITE_METHODS)
def test_stale_if_match_is_412(server: Server, docs: Docs, method: str) -> None:
    stale = server.request("GET", docs.url("doc.html")).headers["ETag"]
    server.select("POST", docs.url("doc.html"), "#content", "<b>changed</b>")
    with unchangedOnDisk(docs):
        assertProblem(server.select(method, docs.url("doc.html"), "#content", BODY,
                                    {"If-Match": stale}), 412)
        assertProblem(server.request(method if method != "POST" else "PUT",
                                     docs.url("doc.html"), BODY, {"If-Match": stale}), 412)


def test_if_match_on_a_missing_document_is_412(server: Server, docs: Docs) -> None:
    with unchangedOnDisk(docs):
        assertProblem(server.request("PUT", docs.url("new.html"), BODY,
                                     {"If-Match": '"whatever"'}), 412)
        assertProblem(server.request("PUT", docs.url("new.html"), BODY, {"If-Match": "*"}), 412)


def test_current_if_match_succeeds(server: Server, docs: Docs) -> None:
    etag = server.request("GET", docs.url("doc.html")).headers["ETag"]
    r = server.select("PUT", docs.url("doc.html"), "#content", '<div id="content">1</div>',
                      {"If-Match": etag})
    assert r.status == 206
    assert r.headers["ETag"] != etag
    assert r.headers["ETag"] == server.request("GET", docs.url("doc.html")).headers["ETag"]
    r = server.select("POST", docs.url("doc.html"), "#content", "2",
                      {"If-Match": r.headers["ETag"]})
    assert r.status == 206
    r = server.select("DELETE", docs.url("doc.html"), ".note", headers={"If-Match": r.headers["ETag"]})
    assert r.status == 204
    r = server.request("PUT", docs.url("doc.html"), "<p>whole</p>", {"If-Match": r.headers["ETag"]})
    assert r.status == 204
    assert docs.file("doc.html").read_bytes() == b"<p>whole</p>"


def test_if_match_star_on_an_existing_document_succeeds(server: Server, docs: Docs) -> None:
    r = server.request("PUT", docs.url("doc.html"), "<p>star</p>", {"If-Match": "*"})
    assert r.status == 204


# The body limit (a server of its own with --max-body 100)


@pytest.fixture(scope="module")
def smallServer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from makeServer(tmp_path_factory, "--max-body", "100")


@pytest.fixture
def smallDocs(smallServer: Server) -> Docs:
    name = "t" + uuid.uuid4().hex[:10]
    shutil.copytree(DOCUMENTS, smallServer.root / name)
    return Docs(smallServer, smallServer.root / name, "/" + name)


@pytest.mark.parametrize("method", ["PUT", "POST"])
def test_body_over_the_limit_is_413(smallServer: Server, smallDocs: Docs, method: str) -> None:
    body = "<b>" + "x" * 94 + "</b>"
    assert len(body) == 101
    with unchangedOnDisk(smallDocs):
        assertProblem(smallServer.select(method, smallDocs.url("doc.html"), "#content", body), 413)


def test_whole_document_over_the_limit_is_413(smallServer: Server, smallDocs: Docs) -> None:
    with unchangedOnDisk(smallDocs):
        assertProblem(smallServer.request("PUT", smallDocs.url("doc.html"), b"x" * 101), 413)
        assertProblem(smallServer.request("PUT", smallDocs.url("new.html"), b"x" * 5000), 413)


def test_chunked_body_over_the_limit_is_413(smallServer: Server, smallDocs: Docs) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", smallServer.port, timeout=10)
    try:
        chunks = iter([b"<b>" + b"x" * 60, b"y" * 60 + b"</b>"])
        conn.request("POST", smallDocs.url("doc.html"), body=chunks, encode_chunked=True,
                     headers={"Range": "selector=#content", "Transfer-Encoding": "chunked"})
        r = conn.getresponse()
        response = Response(r.status, r.headers, r.read())
    finally:
        conn.close()
    assertProblem(response, 413)
    assert stored(smallDocs, "doc.html", "#content") == ['<div id="content">Original content</div>']


def test_body_at_the_limit_is_accepted(smallServer: Server, smallDocs: Docs) -> None:
    body = "<b>" + "x" * 93 + "</b>"
    assert len(body) == 100
    r = smallServer.select("POST", smallDocs.url("doc.html"), "#content", body)
    assert r.status == 206
    assert r.text == body


# Nothing outside the root is ever read or written


@pytest.fixture
def outside(server: Server) -> Iterator[Path]:
    """A secret document beside (outside) the server's root."""
    secret = server.root.parent / f"outside-{uuid.uuid4().hex[:8]}.html"
    secret.write_text("<!DOCTYPE html><p id='secret'>TOP SECRET</p>")
    yield secret
    secret.unlink()


def traversals(docs: Docs, name: str) -> list[str]:
    """Paths that would name C{name} in the parent of the server root, if decoded naively."""
    d = docs.prefix
    return [
        f"/../{name}",
        f"{d}/../../{name}",
        f"/%2e%2e/{name}",
        f"/%2E%2E/{name}",
        f"/.%2e/{name}",
        f"{d}/%2e%2e/%2e%2e/{name}",
        f"/..%2f{name}",
        f"/..%2F{name}",
        f"/%2e%2e%2f{name}",
        f"{d}%2f..%2f..%2f{name}",
        f"/..\\{name}",
        f"/..%5c{name}",
        f"/..%5C{name}",
        f"{d}\\..\\..\\{name}",
        f"/../{name}%00",
        f"/%2e%2e/{name}%00.css",
        f"/%c0%ae%c0%ae/{name}",
        f"/%252e%252e/{name}",
        f"/.../{name}",
        f"//{name}",
    ]


def test_path_traversal_never_reads_outside_the_root(
    server: Server, docs: Docs, outside: Path
) -> None:
    for path in traversals(docs, outside.name):
        for headers in ({}, {"Range": "selector=#secret"}):
            r = raw(server, "GET", path, headers=headers)
            assert r.status in (400, 404), (path, r.status)
            assert b"TOP SECRET" not in r.body, path


def test_absolute_filesystem_path_is_never_served(server: Server, outside: Path) -> None:
    for path in (f"/{outside}", f"/{str(outside).replace('/', '%2f')}", f"/{outside}%00"):
        r = raw(server, "GET", path)
        assert r.status in (400, 404), (path, r.status)
        assert b"TOP SECRET" not in r.body


def test_path_traversal_never_writes_outside_the_root(
    server: Server, docs: Docs, outside: Path
) -> None:
    secret = outside.read_bytes()
    newName = f"created-{uuid.uuid4().hex[:8]}.html"
    with unchangedOnDisk(docs):
        for path in traversals(docs, outside.name) + traversals(docs, newName):
            for method, headers in (("PUT", {}), ("POST", {}), ("DELETE", {}),
                                    ("PUT", {"Range": "selector=#secret"}),
                                    ("POST", {"Range": "selector=#secret"}),
                                    ("DELETE", {"Range": "selector=#secret"})):
                r = raw(server, method, path, b"<p>pwned</p>", headers)
                assert r.status in (400, 404), (method, path, headers, r.status)
    assert outside.read_bytes() == secret
    assert not list(server.root.parent.rglob(newName))


def test_symlink_leaving_the_root_is_never_served(
    server: Server, docs: Docs, outside: Path
) -> None:
    (docs.path / "link.html").symlink_to(outside)
    (docs.path / "relative.html").symlink_to(os.path.relpath(outside, docs.path))
    for name in ("link.html", "relative.html"):
        for headers in ({}, {"Range": "selector=#secret"}):
            r = raw(server, "GET", docs.url(name), headers=headers)
            assert r.status in (400, 404), (name, r.status)
            assert b"TOP SECRET" not in r.body


def test_symlink_leaving_the_root_is_never_written_through(
    server: Server, docs: Docs, outside: Path
) -> None:
    secret = outside.read_bytes()
    (docs.path / "link.html").symlink_to(outside)
    with unchangedOnDisk(docs):
        for method, headers in (("PUT", {}), ("DELETE", {}),
                                ("PUT", {"Range": "selector=#secret"}),
                                ("POST", {"Range": "selector=#secret"}),
                                ("DELETE", {"Range": "selector=#secret"})):
            r = raw(server, method, docs.url("link.html"), b"<p>pwned</p>", headers)
            assert r.status in (400, 404), (method, headers, r.status)
    assert outside.read_bytes() == secret


def test_symlinked_directory_leaving_the_root_is_never_used(
    server: Server, docs: Docs, outside: Path
) -> None:
    secret = outside.read_bytes()
    (docs.path / "linkdir").symlink_to(outside.parent)
    newName = f"created-{uuid.uuid4().hex[:8]}.html"
    with unchangedOnDisk(docs):
        r = raw(server, "GET", docs.url(f"linkdir/{outside.name}"))
        assert r.status in (400, 404)
        assert b"TOP SECRET" not in r.body
        for path in (f"linkdir/{outside.name}", f"linkdir/{newName}", "linkdir/"):
            r = raw(server, "PUT", docs.url(path), b"<p>pwned</p>")
            assert r.status in (400, 404), (path, r.status)
            r = raw(server, "DELETE", docs.url(path))
            assert r.status in (400, 404), (path, r.status)
    assert outside.read_bytes() == secret
    assert not (outside.parent / newName).exists()


def test_temporary_files_are_never_served_or_written(server: Server, docs: Docs) -> None:
    (docs.path / ".rustybeam-leftover.tmp").write_text("<p>half a docu")
    with unchangedOnDisk(docs):
        assertProblem(server.request("GET", docs.url(".rustybeam-leftover.tmp")), 404)
        assertProblem(server.request("PUT", docs.url(".rustybeam-leftover.tmp"), "<p>x</p>"), 404)
        assertProblem(server.request("DELETE", docs.url(".rustybeam-leftover.tmp")), 404)


# X-Rustybeam-Sequence


def test_sequence_increments_per_write(server: Server, docs: Docs) -> None:
    url = docs.url("doc.html")

    def sequence(r: Response) -> int:
        return int(r.headers["X-Rustybeam-Sequence"])

    o = sequence(server.request("GET", url))
    assert sequence(server.select("PUT", url, "#content", '<div id="content">1</div>')) == o + 1
    assert sequence(server.select("POST", url, "#list", "<li>2</li>")) == o + 2
    assert sequence(server.select("DELETE", url, ".note")) == o + 3
    assert sequence(server.request("PUT", url, "<!DOCTYPE html><p id='w'>4</p>")) == o + 4
    assert sequence(server.request("GET", url)) == o + 4
    assert sequence(server.select("GET", url, "#w")) == o + 4


def test_failed_write_does_not_increment_the_sequence(server: Server, docs: Docs) -> None:
    url = docs.url("doc.html")
    o = int(server.request("HEAD", url).headers["X-Rustybeam-Sequence"])
    server.select("POST", url, "#list", "<li>1</li>")
    server.select("POST", url, "#nothing", "<li>x</li>")
    server.select("POST", url, "#list", b"\xff")
    server.select("PATCH", url, "#list", "<li>x</li>")
    r = server.select("POST", url, "#list", "<li>2</li>")
    assert int(r.headers["X-Rustybeam-Sequence"]) == o + 2


def test_sequence_is_per_document(server: Server, docs: Docs) -> None:
    o = int(server.request("HEAD", docs.url("dir/")).headers["X-Rustybeam-Sequence"])
    server.select("POST", docs.url("doc.html"), "#list", "<li>1</li>")
    r = server.select("PUT", docs.url("dir/"), "#content", "<div id='content'>d</div>")
    assert int(r.headers["X-Rustybeam-Sequence"]) == o + 1
    assert int(server.request("GET", docs.url("dir/index.html")).headers[
        "X-Rustybeam-Sequence"]) == o + 1


# Bodies and files the HTML tree cannot hold as they are


def test_body_that_the_parser_would_move_elsewhere_is_400(server: Server, docs: Docs) -> None:
    with unchangedOnDisk(docs):
        r = server.select("POST", docs.url("doc.html"), "p.note", '<p id="inner">nested</p>')
        assertProblem(r, 400)
        assert "would move" in r.text
        r = server.select("PUT", docs.url("doc.html"), "#r1", "<div>not a row</div>")
        assertProblem(r, 400)


def test_body_with_characters_html_cannot_hold_is_400(server: Server, docs: Docs) -> None:
    with unchangedOnDisk(docs):
        assertProblem(server.select("PUT", docs.url("doc.html"), "#content", "<div id=content>a\x01b</div>"), 400)
        assertProblem(server.request("PUT", docs.url("doc.html"), "<p>a\x02b</p>"), 400)


def test_file_with_control_characters_is_still_served_and_repairable(server: Server, docs: Docs) -> None:
    url = docs.write("broken.html", "<html><body><p id=x>a\x01b</p></body></html>")
    r = server.select("GET", url, "#x")
    assert (r.status, r.text) == (206, '<p id="x">a\ufffdb</p>')
    assert server.request("PUT", url, "<p id=x>fixed</p>").status == 204
    assert server.select("GET", url, "#x").text == '<p id="x">fixed</p>'


def test_put_on_body_replaces_the_body(server: Server, docs: Docs) -> None:
    r = server.select("PUT", docs.url("doc.html"), "body", "<body><p id=only>only</p></body>")
    assert r.status == 206
    assert server.select("GET", docs.url("doc.html"), "body").text == '<body><p id="only">only</p></body>'


def test_write_response_etag_is_that_of_the_write(server: Server, docs: Docs) -> None:
    r = server.select("PUT", docs.url("doc.html"), "#content", "<div id=content>e</div>")
    assert r.headers["ETag"] == server.request("HEAD", docs.url("doc.html")).headers["ETag"]


def test_writes_through_a_symlink_change_the_target_and_keep_the_link(server: Server, docs: Docs) -> None:
    (docs.path / "alias.html").symlink_to(docs.path / "doc.html")
    r = server.select("PUT", docs.url("alias.html"), "#content", "<div id=content>via alias</div>")
    assert r.status == 206
    assert (docs.path / "alias.html").is_symlink()
    assert server.select("GET", docs.url("doc.html"), "#content").text == '<div id="content">via alias</div>'
