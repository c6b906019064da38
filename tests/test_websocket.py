"""
SPEC section 3: watching documents over WebSocket, with a real client over TCP.
"""

from __future__ import annotations

import json
import zlib
from urllib.parse import quote

from conftest import Docs, Server, compact, parseItem, rawHandshake


def test_put_reaches_watcher(docs: Docs, watch) -> None:
    w = watch(docs.url("doc.html"))
    docs.server.select("PUT", docs.url("doc.html"), "#content", '<div id="content">New</div>')
    item = w.item()
    assert (item.method, item.url, item.selector) == ("PUT", docs.url("doc.html"), "#content")
    assert item.content == '<div id="content">New</div>'


def test_streamitem_has_the_seed_format(docs: Docs, watch) -> None:
    w = watch(docs.url("doc.html"))
    docs.server.select("PUT", docs.url("doc.html"), "#content", '<div id="content">New content</div>')
    assert w.recv() == (
        '<div itemscope itemtype="http://rustybeam.net/StreamItem">\n'
        '    <span itemprop="method">PUT</span>\n'
        f'    <span itemprop="url">{docs.url("doc.html")}</span>\n'
        '    <span itemprop="selector">#content</span>\n'
        '    <div itemprop="content">\n'
        '        <div id="content">New content</div>\n'
        '    </div>\n'
        '</div>'
    )


def test_two_watchers_get_identical_items(docs: Docs, watch) -> None:
    a, b = watch(docs.url("doc.html")), watch(docs.url("doc.html"))
    docs.server.select("POST", docs.url("doc.html"), "#list", "<li>C</li>")
    assert a.recv() == b.recv()


def test_watchers_of_other_documents_get_nothing(docs: Docs, watch) -> None:
    other = watch(docs.url("index.html"))
    mine = watch(docs.url("doc.html"))
    docs.server.select("PUT", docs.url("doc.html"), "#title", "<h1 id=title>T</h1>")
    mine.item()
    other.nothing()


def test_directory_urls_name_one_document(docs: Docs, watch) -> None:
    watchers = [watch(docs.url(p)) for p in ("dir", "dir/", "dir/index.html")]
    docs.server.select("PUT", docs.url("dir/"), "#content", '<div id="content">X</div>')
    items = [w.item() for w in watchers]
    assert {i.url for i in items} == {docs.url("dir/index.html")}


def test_root_and_index_name_one_document(server: Server, watch) -> None:
    (server.root / "index.html").write_text("<html><body><p id=p>x</p></body></html>")
    a, b = watch("/"), watch("/index.html")
    server.select("PUT", "/", "#p", "<p id=p>y</p>")
    assert a.item().url == b.item().url == "/index.html"


def test_post_content_is_the_appended_nodes(docs: Docs, watch) -> None:
    w = watch(docs.url("doc.html"))
    docs.server.select("POST", docs.url("doc.html"), "#list", '<li id="c">C</li>')
    item = w.item()
    assert (item.method, item.content) == ("POST", '<li id="c">C</li>')


def test_delete_content_is_the_removed_nodes(docs: Docs, watch) -> None:
    w = watch(docs.url("doc.html"))
    docs.server.select("DELETE", docs.url("doc.html"), "#a")
    item = w.item()
    assert (item.method, item.content) == ("DELETE", '<li class="item" id="a">A</li>')


def test_selector_with_markup_characters_is_escaped(docs: Docs, watch) -> None:
    w = watch(docs.url("doc.html"))
    selector = 'ul > li[id="a"]'
    docs.server.select("PUT", docs.url("doc.html"), selector, '<li id="a">A2</li>')
    raw = w.recv()
    assert '<span itemprop="selector">ul &gt; li[id=&quot;a&quot;]</span>' in raw
    assert parseItem(raw).selector == selector


def test_url_with_markup_characters_is_escaped(docs: Docs, watch) -> None:
    name = 'a<b&c"d.html'
    docs.write(name, '<!DOCTYPE html><html><body><p id="p">x</p></body></html>')
    path = docs.url(quote(name))
    w = watch(path)
    docs.server.select("PUT", path, "#p", '<p id="p">y</p>')
    raw = w.recv()
    assert f'<span itemprop="url">{docs.url("a&lt;b&amp;c&quot;d.html")}</span>' in raw
    item = parseItem(raw)
    assert (item.url, item.selector, item.content) == (docs.url(name), "#p", '<p id="p">y</p>')


def test_whole_document_put_and_delete_notify(docs: Docs, watch) -> None:
    w = watch(docs.url("doc.html"))
    html = "<!DOCTYPE html><html><body><p>new</p></body></html>"
    docs.server.request("PUT", docs.url("doc.html"), html)
    put = w.item()
    assert (put.method, put.selector) == ("PUT", "")
    assert "<p>new</p>" in put.content
    docs.server.request("DELETE", docs.url("doc.html"))
    deleted = w.item()
    assert (deleted.method, deleted.selector, deleted.content) == ("DELETE", "", "")


def test_whole_file_append_is_announced(docs: Docs, watch) -> None:
    w = watch(docs.url("doc.html"))
    selected = watch(docs.url("doc.html"))
    assert selected.subscribe(selector="#content")["type"] == "subscribed"
    assert docs.server.request("POST", docs.url("doc.html"), '<p id="more">more</p>').status == 200
    for watcher in (w, selected):
        item = watcher.item()
        assert (item.method, item.selector, item.content) == ("POST", "", '<p id="more">more</p>')


def sequenceOf(server: Server, url: str) -> int:
    return int(server.request("HEAD", url).headers["X-Rustybeam-Sequence"])


def test_subscribe_is_acknowledged_with_the_current_sequence(docs: Docs, watch) -> None:
    origin = sequenceOf(docs.server, docs.url("doc.html"))
    docs.server.select("PUT", docs.url("doc.html"), "#title", "<h1 id=title>1</h1>")
    w = watch(docs.url("doc.html"))
    ack = w.subscribe(selector="#content")
    assert ack == {"type": "subscribed", "url": docs.url("doc.html"), "selector": "#content",
                   "sequence": origin + 1}


def test_subscribe_defaults_to_the_connection_document(docs: Docs, watch) -> None:
    w = watch(docs.url("doc.html"))
    ack = w.subscribe()
    assert (ack["url"], ack["selector"]) == (docs.url("doc.html"), None)


def test_selector_subscription_receives_only_intersecting_changes(docs: Docs, watch) -> None:
    w = watch(docs.url("doc.html"))
    w.subscribe(selector="#list")
    docs.server.select("PUT", docs.url("doc.html"), "#title", "<h1 id=title>no</h1>")
    w.nothing()
    docs.server.select("PUT", docs.url("doc.html"), "#a", '<li id="a">inside</li>')
    assert w.item().selector == "#a"
    docs.server.select("PUT", docs.url("doc.html"), "body", "<body><ul id=list></ul></body>")
    assert w.item().selector == "body"


def test_subscription_sees_an_element_the_change_creates(docs: Docs, watch) -> None:
    w = watch(docs.url("doc.html"))
    w.subscribe(selector="#fresh")
    docs.server.select("POST", docs.url("doc.html"), "#content", '<span id="fresh">new</span>')
    assert w.item().method == "POST"


def test_selector_subscription_sees_the_delete_of_the_element_it_watches(
    docs: Docs, watch
) -> None:
    w = watch(docs.url("doc.html"))
    w.subscribe(selector="#a")
    docs.server.select("DELETE", docs.url("doc.html"), "#b")
    w.nothing()
    docs.server.select("DELETE", docs.url("doc.html"), "#a")
    item = w.item()
    assert (item.method, item.selector, item.content) == ("DELETE", "#a", '<li class="item" id="a">A</li>')


def test_explicit_subscribe_replaces_the_implicit_watch(docs: Docs, watch) -> None:
    w = watch(docs.url("doc.html"))
    w.subscribe(url=docs.url("index.html"))
    docs.server.select("PUT", docs.url("doc.html"), "#title", "<h1 id=title>x</h1>")
    w.nothing()
    docs.server.select("PUT", docs.url("index.html"), "#content", "<div id=content>y</div>")
    assert w.item().url == docs.url("index.html")


def test_one_item_per_change_however_many_subscriptions_match(docs: Docs, watch) -> None:
    w = watch(docs.url("doc.html"))
    w.subscribe(selector="#list")
    w.subscribe(selector="li")
    w.subscribe()
    docs.server.select("DELETE", docs.url("doc.html"), "#b")
    w.item()
    w.nothing()


def test_unsubscribe_with_selector_ends_that_subscription(docs: Docs, watch) -> None:
    w = watch(docs.url("doc.html"))
    w.subscribe(selector="#list")
    w.send({"action": "unsubscribe", "selector": "#list"})
    assert w.json() == {"type": "unsubscribed", "url": docs.url("doc.html"), "selector": "#list",
                        "ended": 1}
    docs.server.select("DELETE", docs.url("doc.html"), "#b")
    w.nothing()


def test_unsubscribe_without_selector_ends_every_subscription_on_the_url(docs: Docs, watch) -> None:
    w = watch(docs.url("doc.html"))
    w.send({"action": "unsubscribe"})
    assert w.json()["type"] == "unsubscribed"
    docs.server.select("DELETE", docs.url("doc.html"), "#b")
    w.nothing()


def test_changes_arrive_in_the_order_they_were_applied(docs: Docs, watch) -> None:
    w = watch(docs.url("doc.html"))
    for i in range(20):
        docs.server.select("POST", docs.url("doc.html"), "#list", f"<li>{i}</li>")
    assert [w.item().content for _ in range(20)] == [f"<li>{i}</li>" for i in range(20)]


def test_bad_messages_get_errors_and_the_connection_stays_open(docs: Docs, watch) -> None:
    w = watch(docs.url("doc.html"))
    cases = {
        "not json": "bad-json",
        "[1, 2]": "bad-json",
        "[" * 60000: "bad-json",
        json.dumps({"action": "dance"}): "unknown-action",
        json.dumps({"action": "subscribe", "selector": ">>>invalid<<<"}): "bad-selector",
        json.dumps({"action": "subscribe", "selector": ""}): "bad-selector",
        json.dumps({"action": "subscribe", "selector": 5}): "bad-selector",
        json.dumps({"action": "subscribe", "url": "/../etc/passwd"}): "bad-url",
        json.dumps({"action": "subscribe", "url": 7}): "bad-url",
        json.dumps({"action": "subscribe", "since": -1}): "bad-since",
        json.dumps({"action": "subscribe", "url": docs.url("style.css"), "selector": "p"}): "not-html",
    }
    for message, code in cases.items():
        w.connection.send(message)
        reply = w.json()
        assert (reply["type"], reply["error"]) == ("error", code), message
        assert reply["message"]
    docs.server.select("PUT", docs.url("doc.html"), "#title", "<h1 id=title>still open</h1>")
    assert w.item().method == "PUT"


def test_resume_replays_exactly_the_missed_items(docs: Docs, watch) -> None:
    url = docs.url("doc.html")
    origin = sequenceOf(docs.server, url)
    first = watch(url)
    first.subscribe(since=origin)
    for i in range(3):
        docs.server.select("POST", url, "#list", f"<li>{i}</li>")
    seen = first.item().sequence
    first.close()
    for i in range(3, 6):
        docs.server.select("POST", url, "#list", f"<li>{i}</li>")
    again = watch(url)
    ack = again.subscribe(since=seen)
    assert ack["sequence"] == origin + 6
    replayed = [again.item() for _ in range(5)]
    assert [i.sequence - origin for i in replayed] == [2, 3, 4, 5, 6]
    assert [i.content for i in replayed] == [f"<li>{i}</li>" for i in range(1, 6)]
    again.nothing()


def test_resuming_several_subscriptions_sends_each_change_once(docs: Docs, watch) -> None:
    url = docs.url("doc.html")
    origin = sequenceOf(docs.server, url)
    docs.server.select("POST", url, "#list", "<li>x</li>")
    docs.server.select("PUT", url, "#title", "<h1 id=title>y</h1>")
    w = watch(url)
    w.subscribe(selector="#list", since=origin)
    first = w.item()
    w.subscribe(selector="body", since=origin)
    second = w.item()
    assert (first.sequence, second.sequence) == (origin + 1, origin + 2)
    w.nothing()


def test_sequence_header_tells_where_to_resume_from(docs: Docs, watch) -> None:
    url = docs.url("doc.html")
    docs.server.select("POST", url, "#list", "<li>x</li>")
    current = int(docs.server.request("HEAD", url).headers["X-Rustybeam-Sequence"])
    w = watch(url)
    assert w.subscribe(since=current)["sequence"] == current
    w.nothing()


def test_resume_beyond_history_gets_reset(tmp_path_factory, watch) -> None:
    from conftest import makeServer

    for server in makeServer(tmp_path_factory, "--history", "2"):
        (server.root / "d.html").write_text("<html><body><ul id=l></ul></body></html>")
        origin = sequenceOf(server, "/d.html")
        for i in range(5):
            server.select("POST", "/d.html", "#l", f"<li>{i}</li>")
        w = watch("/d.html", server)
        assert w.subscribe(since=origin + 1)["sequence"] == origin + 5
        assert w.json() == {"type": "reset", "url": "/d.html", "sequence": origin + 5}
        w2 = watch("/d.html", server)
        w2.subscribe(since=origin + 3)
        assert [w2.item().sequence - origin for _ in range(2)] == [4, 5]


def test_resume_after_a_server_restart_gets_reset(tmp_path, watch) -> None:
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "d.html").write_text("<html><body><ul id=l></ul></body></html>")
    first = Server(tmp_path / "root").start()
    first.select("POST", "/d.html", "#l", "<li>old</li>")
    seen = sequenceOf(first, "/d.html")
    first.stop()
    second = Server(tmp_path / "root").start()
    try:
        for i in range(3):
            second.select("POST", "/d.html", "#l", f"<li>new {i}</li>")
        w = watch("/d.html", second)
        ack = w.subscribe(since=seen)
        assert ack["sequence"] > seen
        assert w.json() == {"type": "reset", "url": "/d.html", "sequence": ack["sequence"]}
    finally:
        second.stop()


def test_binary_commands_switch_the_connection_to_compact_frames(docs: Docs, watch) -> None:
    w = watch(docs.url("doc.html"))
    w.connection.send(compact({"action": "subscribe", "selector": "#content"}))
    ack = w.recv()
    assert isinstance(ack, bytes)
    assert json.loads(zlib.decompress(ack))["type"] == "subscribed"
    docs.server.select("PUT", docs.url("doc.html"), "#content", '<div id="content">Z</div>')
    frame = w.recv()
    assert isinstance(frame, bytes)
    assert parseItem(zlib.decompress(frame).decode()).content == '<div id="content">Z</div>'


def test_bad_binary_frame_is_an_error(docs: Docs, watch) -> None:
    w = watch(docs.url("doc.html"))
    w.connection.send(b"\x00not zlib")
    reply = json.loads(zlib.decompress(w.recv()))
    assert reply["error"] == "bad-binary"


def test_permessage_deflate_is_negotiated_when_offered(docs: Docs, watch) -> None:
    w = watch(docs.url("doc.html"))
    assert "permessage-deflate" in w.connection.response.headers["Sec-WebSocket-Extensions"]
    docs.server.select("PUT", docs.url("doc.html"), "#content", '<div id="content">' + "z" * 5000 + "</div>")
    assert w.item().content.count("z") == 5000


def readRawFrame(sock) -> bytes:
    """One whole server frame, header included, as it came off the wire."""
    data = b""
    while True:
        if len(data) >= 2:
            n, head = data[1] & 0x7F, 2
            if n == 126 and len(data) >= 4:
                n, head = int.from_bytes(data[2:4], "big"), 4
            if n != 126 and len(data) >= head + n:
                assert len(data) == head + n, "one frame expected"
                return data
        chunk = sock.recv(65536)
        assert chunk, "connection closed"
        data += chunk


def test_deflate_watchers_get_one_shared_compressed_frame(docs: Docs) -> None:
    offer = {"Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits"}
    opened = [rawHandshake(docs.server, docs.url("doc.html"), offer) for _ in range(2)]
    try:
        for _, head in opened:
            extensions = [line for line in head.decode().lower().split("\r\n")
                          if line.startswith("sec-websocket-extensions:")]
            assert extensions and "server_no_context_takeover" in extensions[0]
            assert "client_no_context_takeover" in extensions[0]
        docs.server.select("PUT", docs.url("doc.html"), "#content", '<div id="content">' + "z" * 500 + "</div>")
        frames = [readRawFrame(sock) for sock, _ in opened]
        assert frames[0] == frames[1]
        assert frames[0][0] == 0xC1  # FIN, RSV1 (compressed), text
        head = 4 if frames[0][1] & 0x7F == 126 else 2
        text = zlib.decompressobj(-15).decompress(frames[0][head:] + b"\x00\x00\xff\xff").decode()
        assert parseItem(text).content.count("z") == 500
    finally:
        for sock, _ in opened:
            sock.close()


def test_plain_http_on_the_same_url_is_still_a_document(docs: Docs) -> None:
    r = docs.server.request("GET", docs.url("doc.html"))
    assert r.status == 200 and b"Original content" in r.body


def test_handshake_with_wrong_version_gets_426(docs: Docs) -> None:
    sock, head = rawHandshake(docs.server, docs.url("doc.html"), {"Sec-WebSocket-Version": "8"})
    sock.close()
    assert head.startswith(b"HTTP/1.1 426")
    assert b"sec-websocket-version: 13" in head.lower()


def test_handshake_without_key_gets_400(docs: Docs) -> None:
    sock, head = rawHandshake(docs.server, docs.url("doc.html"), {"Sec-WebSocket-Key": ""})
    sock.close()
    assert head.startswith(b"HTTP/1.1 400")


def test_handshake_on_a_path_outside_the_root_is_refused(docs: Docs) -> None:
    sock, head = rawHandshake(docs.server, "/%2e%2e/etc/passwd")
    sock.close()
    assert head.startswith(b"HTTP/1.1 400")
