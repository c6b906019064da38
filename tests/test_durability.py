"""
Durability and concurrency of writes (SPEC section 2): many clients writing at once
lose nothing, writes are applied one at a time in arrival order, and a process killed
at any instant leaves either the old or a new document, never a torn one.
"""

from __future__ import annotations

import errno
import http.client
import itertools
import random
import shutil
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import pytest_twisted
from conftest import DOCUMENTS, Docs, Response, Server

from rustybeam import documents, markup, selectors
from rustybeam.changes import Change
from rustybeam.documents import DocumentStore, StoreOptions
from rustybeam.errors import WRITE_FAILED, Problem


def concurrently(server: Server, requests: list[tuple[str, str, dict[str, str], bytes]]
                 ) -> list[Response]:
    """Send every (method, path, headers, body) at once, one connection and thread each."""
    barrier = threading.Barrier(len(requests))
    results: list[Response | BaseException | None] = [None] * len(requests)

    def run(i: int) -> None:
        method, path, headers, body = requests[i]
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        try:
            conn.connect()
            barrier.wait(timeout=30)
            conn.request(method, path, body=body, headers=headers)
            r = conn.getresponse()
            results[i] = Response(r.status, r.headers, r.read())
        except BaseException as e:  # reported below
            results[i] = e
        finally:
            conn.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
        assert not t.is_alive(), "a request never finished"
    for result in results:
        if not isinstance(result, Response):
            raise AssertionError(f"request failed: {result!r}")
    return results  # type: ignore[return-value]


def sequence(r: Response) -> int:
    return int(r.headers["X-Rustybeam-Sequence"])


def select(html: str | bytes, css: str) -> list:
    if isinstance(html, bytes):
        html = html.decode("utf-8")
    return selectors.compile(css).select(markup.parseDocument(html).getroot())


def temporaryFiles(directory: Path) -> list[Path]:
    return sorted(directory.rglob(".rustybeam-*.tmp"))


N = 50


def test_concurrent_posts_lose_no_change_and_apply_in_sequence_order(
    server: Server, docs: Docs
) -> None:
    url = docs.url("doc.html")
    responses = concurrently(server, [
        ("POST", url, {"Range": "selector=#list"}, f'<li id="p{i}">{i}</li>'.encode())
        for i in range(N)
    ])
    assert [r.status for r in responses] == [206] * N
    assert [r.text for r in responses] == [f'<li id="p{i}">{i}</li>' for i in range(N)]
    origin = sequence(server.request("HEAD", docs.url("index.html")))
    assert sorted(sequence(r) - origin for r in responses) == list(range(1, N + 1))

    bySequence = [f"p{i}" for _, i in sorted((sequence(r), i) for i, r in enumerate(responses))]
    onDisk = [li.get("id") for li in select(docs.file("doc.html").read_bytes(), "#list > li")]
    assert onDisk == ["a", "b"] + bySequence
    served = [li.get("id") for li in select(server.request("GET", url).body, "#list > li")]
    assert served == onDisk
    assert temporaryFiles(docs.path) == []


def test_concurrent_writes_reach_every_watcher_once_each_as_its_own_item_in_sequence_order(
    server: Server, docs: Docs, watch
) -> None:
    """Writes committed together reach a watcher in one write to its socket: still
    one StreamItem each, in the writer's order, with its own sequence number."""
    url = docs.url("doc.html")
    plain, onList = watch(url), watch(url)
    origin = sequence(server.request("HEAD", url))
    numbered = watch(url)
    numbered.subscribe(since=origin)
    onList.subscribe(selector="#list")
    responses = concurrently(server, [
        ("POST", url, {"Range": "selector=#list"}, f'<li id="p{i}">{i}</li>'.encode())
        for i in range(N)
    ] + [("PUT", url, {"Range": "selector=#title"}, b'<h1 id="title">T</h1>')])
    bySequence = [r.text for r in sorted(responses, key=sequence)]
    assert [plain.item().content for _ in responses] == bySequence
    items = [numbered.item() for _ in responses]
    assert [(i.sequence, i.content) for i in items] == [
        (sequence(r), r.text) for r in sorted(responses, key=sequence)]
    assert sorted(i.content for i in [onList.item() for _ in range(N)]) == sorted(
        f'<li id="p{i}">{i}</li>' for i in range(N))
    for w in (plain, numbered, onList):
        w.nothing()


def test_concurrent_puts_and_posts_to_distinct_elements_lose_no_change(
    server: Server, docs: Docs
) -> None:
    slots = "".join(f'<div id="s{i}">old</div>' for i in range(N))
    url = docs.write("many.html", f"<!DOCTYPE html><html><body>{slots}</body></html>")
    requests = []
    for i in range(N):
        if i % 2:
            requests.append(("POST", url, {"Range": f"selector=#s{i}"}, f"<b>{i}</b>".encode()))
        else:
            requests.append(("PUT", url, {"Range": f"selector=#s{i}"},
                             f'<div id="s{i}">new {i}</div>'.encode()))
    responses = concurrently(server, requests)
    assert [r.status for r in responses] == [206] * N
    origin = sequence(server.request("HEAD", docs.url("index.html")))
    assert sorted(sequence(r) - origin for r in responses) == list(range(1, N + 1))

    expected = [
        f'<div id="s{i}">old<b>{i}</b></div>' if i % 2 else f'<div id="s{i}">new {i}</div>'
        for i in range(N)
    ]
    text = docs.file("many.html").read_bytes()
    assert [markup.serialize(e) for e in select(text, "body > div")] == expected
    served = server.select("GET", url, "body > div")
    assert served.text == "\n".join(expected)
    assert temporaryFiles(docs.path) == []


def test_concurrent_whole_document_puts_leave_the_last_one_applied(
    server: Server, docs: Docs
) -> None:
    url = docs.url("doc.html")
    bodies = [f"<!DOCTYPE html><html><body><p id='v'>{i}</p></body></html>\n".encode()
              for i in range(N)]
    responses = concurrently(server, [("PUT", url, {}, body) for body in bodies])
    assert [r.status for r in responses] == [204] * N
    origin = sequence(server.request("HEAD", docs.url("index.html")))
    assert sorted(sequence(r) - origin for r in responses) == list(range(1, N + 1))
    last = max(range(N), key=lambda i: sequence(responses[i]))
    assert docs.file("doc.html").read_bytes() == bodies[last]
    assert server.request("GET", url).body == bodies[last]


# A write that cannot be made durable


@pytest_twisted.ensureDeferred
async def test_failed_durable_write_leaves_the_cache_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the rename of a write fails (ENOSPC, EIO), the store keeps serving what
    is on disk: the lost version is never read back, nor built on by the next write."""
    root = tmp_path / "docs"
    shutil.copytree(DOCUMENTS, root)
    changes: list[Change] = []
    store = DocumentStore(str(root), changes.extend, StoreOptions(fsync=False))
    doc = store.locate("/doc.html")
    content = selectors.compile("#content")
    assert [e.text for e in store.select(doc, content)] == ["Original content"]
    onDisk = (root / "doc.html").read_bytes()

    def failingReplace(src: str, dst: str) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(documents.os, "replace", failingReplace)
    with pytest.raises(Problem) as e:
        await store.replace(doc, content, b'<div id="content">Lost</div>')
    assert (e.value.status, e.value.code) == (WRITE_FAILED.status, WRITE_FAILED.code)
    monkeypatch.undo()

    assert (root / "doc.html").read_bytes() == onDisk
    assert [e.text for e in store.select(doc, content)] == ["Original content"]
    assert changes == []
    await store.append(doc, content, b"<b>kept</b>")
    assert '<div id="content">Original content<b>kept</b></div>' in (
        root / "doc.html").read_text(encoding="utf-8")
    assert markup.serialize(store.select(doc, content)[0]) == (
        '<div id="content">Original content<b>kept</b></div>')


# Killed in the middle of writes


MARKERS = 2000
"""Markers per version: a version is about fifty kilobytes."""


def wholeVersion(tag: str) -> bytes:
    items = "".join(f'<p class="m">{tag}:{i:05d}</p>\n' for i in range(MARKERS))
    return (f'<!DOCTYPE html>\n<html><head><title>{tag}</title></head><body>\n'
            f'<div id="version">{tag}</div>\n{items}<p id="end">{tag}</p>\n'
            "</body></html>\n").encode()


def boxVersion(tag: str) -> bytes:
    items = "".join(f'<p class="m">{tag}:{i:05d}</p>' for i in range(MARKERS))
    return f'<div id="box" data-v="{tag}">{items}</div>'.encode()


@dataclass
class Writer:
    """Keeps writing versions of one document until the server goes away."""

    server: Server
    path: str
    headers: dict[str, str]
    version: object
    tags: itertools.count
    prefix: str
    sent: set[str] = field(default_factory=set)
    acknowledged: dict[int, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    firstAck: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while True:
            tag = f"{self.prefix}{next(self.tags)}"
            body = self.version(tag)  # type: ignore[operator]
            with self.lock:
                self.sent.add(tag)
            conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=30)
            try:
                conn.request("PUT", self.path, body=body, headers=self.headers)
                r = conn.getresponse()
                r.read()
            except (OSError, http.client.HTTPException):
                return  # the server was killed
            finally:
                conn.close()
            assert r.status in (204, 206), r.status
            with self.lock:
                self.acknowledged[int(r.getheader("X-Rustybeam-Sequence"))] = tag
            self.firstAck.set()


def checkNotTorn(data: bytes, css: str, versionOf, known: set[str]) -> str:
    """Check that C{data} is one complete version; return its tag."""
    text = data.decode("utf-8")
    assert text.startswith("<!DOCTYPE html>")
    assert text.rstrip().endswith("</html>"), "the document is cut short"
    tree = markup.parseDocument(text)
    (holder,) = selectors.compile(css).select(tree.getroot())
    markers = [p.text for p in selectors.compile(".m").select(tree.getroot())]
    assert len(markers) == MARKERS, f"{len(markers)} markers instead of {MARKERS}"
    tags = {m.split(":")[0] for m in markers}
    assert len(tags) == 1, f"markers of several versions: {sorted(tags)[:5]}"
    (tag,) = tags
    assert tag in known, f"version {tag!r} was never sent"
    assert markers == [f"{tag}:{i:05d}" for i in range(MARKERS)]
    assert holder.get("data-v", holder.text) == tag
    return tag


def checkNotBehindAcknowledged(tag: str, writers: list[Writer]) -> None:
    """An acknowledged write is never lost: the document is the last acknowledged
    version, or a version sent (but not acknowledged) later."""
    acknowledged = {}
    for w in writers:
        acknowledged.update(w.acknowledged)
    if not acknowledged:
        return
    last = acknowledged[max(acknowledged)]
    acknowledgedEarlier = set(acknowledged.values()) - {last}
    assert tag not in acknowledgedEarlier, (
        f"document is {tag!r} although {last!r} was acknowledged after it")


@pytest.mark.slow
def test_process_killed_during_writes_leaves_an_old_or_new_document_never_a_torn_one(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    root = tmp_path_factory.mktemp("crash")
    (root / "whole.html").write_bytes(wholeVersion("initial"))
    (root / "part.html").write_bytes(
        b"<!DOCTYPE html>\n<html><head><title>part</title></head><body>"
        + boxVersion("initial") + b"</body></html>\n")
    rng = random.Random(20240611)
    tags = itertools.count()
    knownWhole, knownBox = {"initial"}, {"initial"}

    for round in range(6):
        server = Server(root).start()
        writers = [
            Writer(server, "/whole.html", {}, wholeVersion, tags, f"w{round}-")
            for _ in range(3)
        ] + [
            Writer(server, "/part.html", {"Range": "selector=#box"}, boxVersion, tags,
                   f"b{round}-")
            for _ in range(3)
        ]
        threads = [threading.Thread(target=w.run, daemon=True) for w in writers]
        for t in threads:
            t.start()
        try:
            for w in writers:
                assert w.firstAck.wait(30), "no write was acknowledged"
            # The kill lands at a random instant while every writer keeps writing.
            threading.Event().wait(rng.uniform(0.0, 0.4))
        finally:
            server.stop(signal.SIGKILL)
        assert server.process is not None and server.process.returncode == -signal.SIGKILL
        for t in threads:
            t.join(30)
            assert not t.is_alive()

        for w in writers:
            (knownWhole if w.path == "/whole.html" else knownBox).update(w.sent)
        whole = (root / "whole.html").read_bytes()
        tag = checkNotTorn(whole, "#version", wholeVersion, knownWhole)
        assert whole == wholeVersion(tag), "whole-document PUTs are stored byte for byte"
        checkNotBehindAcknowledged(tag, writers[:3])
        tag = checkNotTorn((root / "part.html").read_bytes(), "#box", boxVersion, knownBox)
        checkNotBehindAcknowledged(tag, writers[3:])

    # A restarted server serves the intact documents and never the leftovers.
    server = Server(root).start()
    try:
        for name in ("whole.html", "part.html"):
            r = server.request("GET", f"/{name}")
            assert r.status == 200
            assert r.body == (root / name).read_bytes()
        r = server.select("GET", "/part.html", "#box > p:first-child")
        assert r.status == 206
        for leftover in temporaryFiles(root):
            r = server.request("GET", "/" + leftover.name)
            assert r.status == 404, leftover.name
            assert r.body != leftover.read_bytes()
    finally:
        server.stop()


def test_temporary_files_left_by_killed_writes_are_removed_at_start_up(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    root = tmp_path_factory.mktemp("leftovers")
    (root / "sub").mkdir()
    (root / "doc.html").write_text("<p>doc</p>")
    ours = [root / ".rustybeam-a1b2c3.tmp", root / "sub" / ".rustybeam-zz.tmp"]
    others = [root / ".other-a1.tmp", root / "rustybeam-a1.tmp", root / ".rustybeam-a1.html"]
    for path in (*ours, *others):
        path.write_bytes(b"partial")
    server = Server(root).start()
    try:
        assert server.request("GET", "/doc.html").status == 200
        assert [p for p in ours if p.exists()] == []
        assert [p for p in others if not p.exists()] == []
    finally:
        server.stop()


def test_sigterm_answers_every_write_it_applied(tmp_path_factory: pytest.TempPathFactory) -> None:
    root = tmp_path_factory.mktemp("stop")
    filler = "".join(f'<li class="old">existing item {i} with some text</li>' for i in range(400))
    (root / "log.html").write_text(
        f'<!DOCTYPE html><html><head><title>log</title></head><body><ul id="log">{filler}</ul>'
        "</body></html>")
    server = Server(root).start()
    answered: set[int] = set()
    failed: list[int] = []

    def post() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        for i in range(1000):
            try:
                connection.request("POST", "/log.html", f'<li id="n{i}">{i}</li>'.encode(),
                                   {"Range": "selector=#log"})
                response = connection.getresponse()
                response.read()
                if response.status == 206 or response.status == 200:
                    answered.add(i)
            except (OSError, http.client.HTTPException):
                failed.append(i)
                return

    writer = threading.Thread(target=post, daemon=True)
    writer.start()
    threading.Event().wait(1.0)
    assert server.stop(signal.SIGTERM) == 0
    writer.join(30)
    assert not writer.is_alive()
    tree = markup.parseDocument((root / "log.html").read_bytes())
    stored = {int(e.get("id")[1:]) for e in tree.getroot().iter("li") if e.get("id")}
    assert stored, "no write was applied before the stop"
    assert stored - answered == set(), "applied writes whose client got no answer"
    assert answered <= stored
