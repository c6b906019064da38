"""
Clustering on Redis: a writer and edges as real processes, on a real redis-server,
talking over real sockets.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import AsyncIterator, Callable, Iterator

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import DeferredList, ensureDeferred
from twisted.internet.task import deferLater

from conftest import DOCUMENTS, FIXTURES, HERE, Server, Watcher
from redisserver import RedisServer

from rustybeam import selectors
from rustybeam.cluster import ReplicaStore
from rustybeam.documents import DocumentStore, StoreOptions
from rustybeam.notifier import DocumentChangeNotifier
from rustybeam.redislog import Entry, RedisOptions, StreamFollower, _HostLog

PAGE = ('<!DOCTYPE html><html><head><title>t</title></head><body>'
        '<ul id="list"><li>first</li></ul><p id="note">note</p></body></html>')


def eventually(check: Callable[[], bool], timeout: float = 15, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class Node(Server):
    """A cluster node: the writer (with a root) or an edge (with --writer, no root)."""

    def __init__(self, root: Path, redis: RedisServer, writer: Node | None = None,
                 *args: str, port: int | None = None, config: Path | None = None) -> None:
        super().__init__(root, *args)
        if port is not None:
            self.port = port
        self.args = ["--port", f"tcp:{self.port}:interface=127.0.0.1", "--redis", redis.url, *args]
        if config is not None:
            self.args += ["--config", str(config)]
        if writer is None and config is None:
            self.args += ["--root", str(root)]
        elif writer is not None:
            self.args += ["--writer", f"http://127.0.0.1:{writer.port}"]
            self.log = root.parent / f"edge-{self.port}.log"

    def start(self) -> Node:
        """Start, and wait until the node is ready: an edge has copied the documents,
        a writer has reached Redis (its cluster endpoint no longer answers 503)."""
        super().start()
        path = "/" if "--writer" in self.args else "/_rustybeam/cluster/snapshot"
        eventually(lambda: self.request("GET", path, headers={"Host": "localhost"}).status != 503,
                   what="the node to be ready")
        return self


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture
def cluster(tmp_path: Path, redis: RedisServer) -> Iterator[Callable[..., Node]]:
    """Start nodes: C{cluster()} is the writer, C{cluster(writer)} an edge of it."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "index.html").write_text(PAGE)
    (root / "notes.txt").write_text("plain text\n")
    started: list[Node] = []

    def start(writer: Node | None = None, *args: str, port: int | None = None) -> Node:
        node = Node(root, redis, writer, *args, port=port).start()
        started.append(node)
        return node

    yield start
    for node in reversed(started):
        node.stop()


@pytest.fixture
def watchers() -> Iterator[Callable[..., Watcher]]:
    opened: list[Watcher] = []

    def open_(node: Server, path: str = "/index.html") -> Watcher:
        w = Watcher(node, path)
        opened.append(w)
        return w

    yield open_
    for w in opened:
        w.close()


def subscribed(open_: Callable[..., Watcher], node: Server, selector: str | None = None,
               since: int | None = None) -> Watcher:
    w = open_(node)
    fields: dict[str, object] = {"url": "/index.html"}
    if selector is not None:
        fields["selector"] = selector
    if since is not None:
        fields["since"] = since
    reply = w.subscribe(**fields)
    assert reply["type"] == "subscribed", reply
    return w


def edgesListening(parent: Node, count: int = 1) -> None:
    """Wait until C{count} edge processes of C{--workers} listen on the parent's port
    too (an edge logs its start to the parent's output)."""
    eventually(lambda: parent.output().count(f"starting on {parent.port}") > count,
               what="the edges to listen")


def sequenceOf(node: Server, path: str = "/index.html") -> int:
    return int(node.request("GET", path).headers["X-Rustybeam-Sequence"])


def test_edge_serves_the_writers_documents_without_a_root(cluster):
    writer = cluster()
    edge = cluster(writer)
    assert edge.request("GET", "/index.html").body == writer.request("GET", "/index.html").body
    assert edge.request("GET", "/notes.txt").body == b"plain text\n"
    assert sequenceOf(edge) == sequenceOf(writer)
    assert edge.select("GET", "/index.html", "#list").text == '<ul id="list"><li>first</li></ul>'


def test_watchers_on_every_node_get_identical_items_with_the_same_sequences(cluster, watchers):
    writer = cluster()
    edges = [cluster(writer), cluster(writer)]
    start = sequenceOf(writer)
    nodes = [writer, *edges]
    whole = [subscribed(watchers, n, since=start) for n in nodes]
    scoped = [subscribed(watchers, n, selector="#note", since=start) for n in nodes]
    writes = [(writer, "POST", "#list", "<li>a</li>"), (edges[0], "PUT", "#note", '<p id="note">b</p>'),
              (edges[1], "POST", "#list", "<li>c</li>"), (writer, "DELETE", "#list li", None)]
    for node, method, selector, body in writes:
        assert node.select(method, "/index.html", selector, body).status in (200, 204, 206)
    items = [[w.item().raw for _ in writes] for w in whole]
    assert items[0] == items[1] == items[2]
    assert [int(r.split('itemprop="sequence">')[1].split("<")[0]) for r in items[0]] == \
        [start + 1, start + 2, start + 3, start + 4]
    notes = [w.item().raw for w in scoped]
    assert notes[0] == notes[1] == notes[2] and "<p id=\"note\">b</p>" in notes[0]
    for w in scoped:
        w.nothing()


def test_a_write_through_an_edge_is_answered_once_that_edge_reads_it(cluster):
    writer = cluster()
    edge = cluster(writer)
    for i in range(5):
        r = edge.select("POST", "/index.html", "#list", f"<li>{i}</li>")
        assert r.status == 206
        read = edge.select("GET", "/index.html", "#list")
        assert f"<li>{i}</li>" in read.text
        assert read.headers["X-Rustybeam-Sequence"] == r.headers["X-Rustybeam-Sequence"]
    assert writer.request("GET", "/index.html").body == edge.request("GET", "/index.html").body


def test_etags_are_the_writers_on_every_node(cluster):
    writer = cluster()
    edge = cluster(writer)
    etag = edge.request("GET", "/index.html").headers["ETag"]
    assert etag == writer.request("GET", "/index.html").headers["ETag"]
    assert edge.request("GET", "/index.html", headers={"If-None-Match": etag}).status == 304
    r = edge.select("PUT", "/index.html", "#note", '<p id="note">matched</p>', {"If-Match": etag})
    assert r.status == 206
    assert edge.request("GET", "/index.html").headers["ETag"] == r.headers["ETag"] \
        == writer.request("GET", "/index.html").headers["ETag"] != etag
    stale = edge.select("PUT", "/index.html", "#note", '<p id="note">stale</p>', {"If-Match": etag})
    assert stale.status == 412


def test_concurrent_writes_through_different_nodes_are_all_applied_once_in_one_order(cluster, watchers):
    writer = cluster()
    edges = [cluster(writer), cluster(writer)]
    nodes = [writer, *edges]
    start = sequenceOf(writer)
    seen = [subscribed(watchers, n, since=start) for n in nodes]
    perNode = 15

    def write(node: Server, n: int) -> None:
        for i in range(perNode):
            assert node.select("POST", "/index.html", "#list", f"<li>{n}-{i}</li>").status == 206

    threads = [threading.Thread(target=write, args=(node, n)) for n, node in enumerate(nodes)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total = perNode * len(nodes)
    orders = [[w.item().raw for _ in range(total)] for w in seen]
    assert orders[0] == orders[1] == orders[2]
    body = writer.select("GET", "/index.html", "#list").text
    for n in range(len(nodes)):
        for i in range(perNode):
            assert body.count(f"<li>{n}-{i}</li>") == 1
    for edge in edges:
        assert edge.request("GET", "/index.html").body == writer.request("GET", "/index.html").body


def test_resume_with_since_on_another_node_replays_what_was_missed(cluster, watchers):
    writer = cluster()
    first, second = cluster(writer), cluster(writer)
    start = sequenceOf(writer)
    w = subscribed(watchers, first, since=start)
    first.select("POST", "/index.html", "#list", "<li>seen</li>")
    last = w.item().sequence
    w.close()
    writer.select("POST", "/index.html", "#list", "<li>missed 1</li>")
    first.select("POST", "/index.html", "#list", "<li>missed 2</li>")
    eventually(lambda: sequenceOf(second) == last + 2, what="the second edge to catch up")
    resumed = subscribed(watchers, second, since=last)
    assert [resumed.item().content for _ in range(2)] == ["<li>missed 1</li>", "<li>missed 2</li>"]
    resumed.nothing()


def test_resume_with_since_on_an_edge_started_after_the_change_replays_it(cluster, watchers):
    writer = cluster()
    first = cluster(writer)
    start = sequenceOf(writer)
    whole = subscribed(watchers, writer, since=start)
    scoped = subscribed(watchers, writer, selector="#note", since=start)
    w = subscribed(watchers, first, since=start)
    assert first.select("POST", "/index.html", "#list", "<li>seen</li>").status == 206
    last = w.item().sequence
    w.close()
    assert writer.select("POST", "/index.html", "#list", "<li>missed 1</li>").status == 206
    assert first.select("PUT", "/index.html", "#note", '<p id="note">missed 2</p>').status == 206
    replaced = PAGE.replace("<li>first</li>", "<li>again</li>").replace(">note<", ">missed 3<")
    assert writer.request("PUT", "/index.html", body=replaced).status in (200, 204)
    assert writer.select("POST", "/index.html", "#list", "<li>missed 4</li>").status == 206
    onWriter = [whole.item() for _ in range(5)]
    notes = [scoped.item().raw for _ in range(2)]
    assert [i.sequence for i in onWriter] == [last, last + 1, last + 2, last + 3, last + 4]
    second = cluster(writer)
    resumed = subscribed(watchers, second, since=last)
    assert [resumed.item().raw for _ in range(4)] == [i.raw for i in onWriter[1:]]
    resumedNote = subscribed(watchers, second, selector="#note", since=last)
    assert [resumedNote.item().raw for _ in range(2)] == notes
    assert second.select("PUT", "/index.html", "#note", '<p id="note">live</p>').status == 206
    assert resumed.item().raw == whole.item().raw
    assert resumedNote.item().raw == scoped.item().raw
    resumed.nothing()
    resumedNote.nothing()
    assert second.request("GET", "/index.html").body == writer.request("GET", "/index.html").body


def test_an_edge_started_later_replays_the_creation_of_a_document(cluster, watchers):
    writer = cluster()
    onWriter = watchers(writer)
    origin = onWriter.subscribe(url="/new.html")["sequence"]
    assert onWriter.subscribe(url="/new.html", since=origin)["type"] == "subscribed"
    assert writer.request("PUT", "/new.html", body=PAGE).status in (200, 201, 204)
    assert writer.select("POST", "/new.html", "#list", "<li>added</li>").status == 206
    items = [onWriter.item().raw for _ in range(2)]
    edge = cluster(writer)
    resumed = watchers(edge)
    assert resumed.subscribe(url="/new.html", since=origin)["type"] == "subscribed"
    assert [resumed.item().raw for _ in range(2)] == items
    resumed.nothing()


def test_an_edge_started_later_keeps_the_history_after_a_whole_file_append(cluster, watchers):
    writer = cluster()
    start = sequenceOf(writer)
    onWriter = subscribed(watchers, writer, since=start)
    assert writer.select("POST", "/index.html", "#list", "<li>before</li>").status == 206
    assert writer.request("POST", "/index.html", body="<p>appended</p>").status in (200, 204)
    assert writer.select("PUT", "/index.html", "#note", '<p id="note">after</p>').status == 206
    items = [onWriter.item() for _ in range(3)]
    edge = cluster(writer)
    assert edge.request("GET", "/index.html").body == writer.request("GET", "/index.html").body
    after = subscribed(watchers, edge, since=start + 2)
    assert after.item().raw == items[2].raw
    after.nothing()
    w = watchers(edge)
    w.send({"action": "subscribe", "url": "/index.html", "since": start + 1})
    assert w.json()["type"] == "subscribed"
    assert w.json() == {"type": "reset", "url": "/index.html", "sequence": start + 3}


def test_an_edge_started_after_the_stream_lost_the_history_resets_resuming_clients(cluster, redis,
                                                                                   watchers):
    writer = cluster()
    start = sequenceOf(writer)
    length = lambda: int(redis.command("XLEN", "rustybeam:log")[1:])  # noqa: E731
    before = length()
    for i in range(3):
        assert writer.select("POST", "/index.html", "#list", f"<li>{i}</li>").status == 206
    eventually(lambda: length() == before + 3, what="the entries")
    redis.command("XTRIM", "rustybeam:log", "MAXLEN", "0")
    edge = cluster(writer)
    assert edge.request("GET", "/index.html").body == writer.request("GET", "/index.html").body
    assert sequenceOf(edge) == start + 3
    w = watchers(edge)
    w.send({"action": "subscribe", "url": "/index.html", "since": start})
    assert w.json()["type"] == "subscribed"
    assert w.json() == {"type": "reset", "url": "/index.html", "sequence": start + 3}


def test_resume_beyond_the_history_gets_reset_on_an_edge(cluster, watchers):
    writer = cluster(None, "--history", "2")
    edge = cluster(writer, "--history", "2")
    start = sequenceOf(writer)
    for i in range(4):
        writer.select("POST", "/index.html", "#list", f"<li>{i}</li>")
    eventually(lambda: sequenceOf(edge) == start + 4, what="the edge to catch up")
    w = watchers(edge)
    w.send({"action": "subscribe", "url": "/index.html", "since": start})
    assert w.json()["type"] == "subscribed"
    assert w.json() == {"type": "reset", "url": "/index.html", "sequence": start + 4}


def test_an_edge_killed_costs_the_writer_and_other_edges_nothing(cluster, watchers):
    writer = cluster()
    doomed, survivor = cluster(writer), cluster(writer)
    onWriter, onSurvivor = subscribed(watchers, writer), subscribed(watchers, survivor)
    orphan = subscribed(watchers, doomed, since=sequenceOf(writer))
    assert doomed.select("POST", "/index.html", "#list", "<li>before</li>").status == 206
    last = orphan.item().sequence
    doomed.stop(signal.SIGKILL)
    assert survivor.select("POST", "/index.html", "#list", "<li>after</li>").status == 206
    assert [onWriter.item().raw for _ in range(2)] == [onSurvivor.item().raw for _ in range(2)]
    resumed = subscribed(watchers, survivor, since=last)
    assert resumed.item().content == "<li>after</li>"
    resumed.nothing()


def test_while_the_writer_is_down_edges_serve_reads_and_refuse_writes_with_503(cluster, watchers):
    writer = cluster()
    edge = cluster(writer)
    before = edge.request("GET", "/index.html").body
    w = subscribed(watchers, edge)
    writer.stop(signal.SIGKILL)
    r = edge.select("POST", "/index.html", "#list", "<li>lost</li>")
    assert r.status == 503 and r.headers["Retry-After"] == "1"
    assert edge.request("GET", "/index.html").body == before
    w.nothing()
    restarted = cluster(None, port=writer.port)

    def written() -> bool:
        status = edge.select("POST", "/index.html", "#list", "<li>back</li>").status
        assert status in (206, 503)
        return status == 206

    eventually(written, what="a write through the edge to succeed")
    assert "<li>back</li>" in w.item().content
    assert b"lost" not in restarted.request("GET", "/index.html").body
    assert edge.request("GET", "/index.html").body == restarted.request("GET", "/index.html").body
    assert sequenceOf(edge) == sequenceOf(restarted)


def test_redis_restarted_without_its_data_makes_edges_copy_the_documents_again(cluster, redis, watchers):
    writer = cluster()
    edge = cluster(writer)
    w = subscribed(watchers, edge)
    redis.stop()
    writer.select("POST", "/index.html", "#list", "<li>while redis was down</li>")
    redis.start()
    assert "while redis was down" in w.item(timeout=20).content
    writer.select("POST", "/index.html", "#list", "<li>after</li>")
    assert "<li>after</li>" in w.item(timeout=20).content
    eventually(lambda: edge.request("GET", "/index.html").body
               == writer.request("GET", "/index.html").body, what="the edge to match the writer")


def test_a_document_deleted_while_an_edge_could_not_follow_reaches_its_watchers_as_a_delete(
        cluster, redis, watchers):
    writer = cluster()
    assert writer.request("PUT", "/gone.html", body=PAGE).status in (200, 201, 204)
    edge = cluster(writer)
    onWriter, onEdge = watchers(writer, "/gone.html"), watchers(edge, "/gone.html")
    redis.stop()
    assert writer.request("DELETE", "/gone.html").status in (200, 204)
    deleted = onWriter.item(timeout=10)
    redis.start()
    item = onEdge.item(timeout=20)
    assert (item.method, item.url, item.sequence) == ("DELETE", "/gone.html", deleted.sequence)
    assert item.raw == deleted.raw
    eventually(lambda: edge.request("GET", "/gone.html").status == 404, what="the edge to lose it")


def test_a_persistent_redis_restarted_lets_edges_replay_the_stream(tmp_path, redis, watchers):
    redis.stop()
    persistent = RedisServer(tmp_path / "aof", persistent=True).start()
    root = tmp_path / "root"
    root.mkdir()
    (root / "index.html").write_text(PAGE)
    writer = Node(root, persistent).start()
    edge = Node(root, persistent, writer).start()
    try:
        start = sequenceOf(writer)
        w = subscribed(watchers, edge, since=start)
        writer.select("POST", "/index.html", "#list", "<li>before</li>")
        assert w.item().content == "<li>before</li>"
        persistent.stop()
        writer.select("POST", "/index.html", "#list", "<li>while redis was down</li>")
        persistent.start()
        item = w.item(timeout=20)
        assert (item.method, item.selector, item.content, item.sequence) == \
            ("POST", "#list", "<li>while redis was down</li>", start + 2)
        w.nothing()
    finally:
        edge.stop()
        writer.stop()
        persistent.stop()


def test_a_node_that_fell_behind_the_stream_copies_the_documents_again(cluster, redis, watchers):
    writer = cluster()
    edge = cluster(writer)
    w = subscribed(watchers, edge)
    assert edge.process is not None
    edge.process.send_signal(signal.SIGSTOP)
    try:
        for i in range(3):
            writer.select("POST", "/index.html", "#list", f"<li>{i}</li>")
        eventually(lambda: redis.command("XLEN", "rustybeam:log") != ":0", what="entries")
        redis.command("XTRIM", "rustybeam:log", "MAXLEN", "0")
        writer.select("POST", "/index.html", "#list", "<li>last</li>")
    finally:
        edge.process.send_signal(signal.SIGCONT)
    items = [w.item(timeout=20)]
    while items[-1].selector != "" and len(items) < 4:
        items.append(w.item(timeout=20))
    assert items[-1].method == "PUT" and "<li>last</li>" in items[-1].content
    assert edge.request("GET", "/index.html").body == writer.request("GET", "/index.html").body
    assert sequenceOf(edge) == sequenceOf(writer)


def test_the_writer_refuses_cluster_requests_without_the_secret(cluster):
    writer = cluster()
    assert writer.request("GET", "/_rustybeam/cluster/snapshot").status == 403
    r = writer.select("POST", "/index.html", "#list", "<li>forged</li>",
                      {"X-Rustybeam-Cluster": "guess"})
    assert r.status == 403
    assert b"forged" not in writer.request("GET", "/index.html").body


def test_workers_share_one_port_and_stop_together_with_1001(tmp_path, redis):
    root = tmp_path / "root"
    root.mkdir()
    (root / "index.html").write_text(PAGE)
    parent = Node(root, redis, None, "--workers", "2").start()
    try:
        children = Path(f"/proc/{parent.process.pid}/task/{parent.process.pid}/children")
        eventually(lambda: children.read_text().split() != [], what="the edge process")
        (child,) = children.read_text().split()
        edgesListening(parent)
        opened = [Watcher(parent, "/index.html") for _ in range(16)]
        for w in opened:
            assert w.subscribe(url="/index.html")["type"] == "subscribed"
        assert parent.select("POST", "/index.html", "#list", "<li>all</li>").status == 206
        for w in opened:
            assert "<li>all</li>" in w.item().content
        parent.process.send_signal(signal.SIGTERM)
        assert [w.closeCode() for w in opened] == [1001] * len(opened)
        assert parent.process.wait(15) == 0
        eventually(lambda: not os.path.exists(f"/proc/{child}") or
                   "zombie" in open(f"/proc/{child}/status").read(), what="the edge to stop")
    finally:
        parent.stop()


def test_the_shared_stream_keeps_no_more_than_history_bytes(cluster, redis):
    writer = cluster(None, "--history-bytes", "3000")
    for i in range(12):
        writer.select("POST", "/index.html", "#list", f"<li>{i:03d}{'x' * 400}</li>")
    kept = int(redis.command("XLEN", "rustybeam:log")[1:])
    assert 1 <= kept <= 5


def liveConfig(tmp: Path) -> Path:
    """The compatibility tests' live configuration: basic-auth letting anonymous
    requests reach selector rules that hide C{.private} from all but admin."""
    config = (FIXTURES / "config" / "websocket-config.html").read_text()

    def row(library: str, **properties: str) -> str:
        spans = "".join(f'<span itemprop="{k}">{v}</span>' for k, v in properties.items())
        return ('<tr><td>Plugin</td><td itemprop="plugin" itemscope '
                'itemtype="https://rustybeam.net/schema/Plugin">'
                f'<span itemprop="library">file://./plugins/{library}</span>{spans}</td></tr>\n')

    authfile = "file://./tests/plugins/hosts/websocket/users.html"
    before = (row("librusty_beam_basic_auth.so", realm="Live Docs", authfile=authfile,
                  allow_anonymous="true")
              + row("librusty_beam_authorization.so", authfile=authfile))
    first = config.index("<tr>\n                <td>Plugin</td>")
    config = config[:first] + before + config[first:]
    (tmp / "config.html").write_text(config)
    root = tmp / "tests/plugins/hosts/websocket"
    import shutil

    shutil.copytree(DOCUMENTS, root)
    shutil.copy(HERE / "data" / "auth" / "live-rules.html", root / "users.html")
    return tmp / "config.html"


def test_with_a_config_every_node_authorizes_and_redacts_alike(tmp_path, redis):
    import base64

    config = liveConfig(tmp_path)
    local = {"Host": "localhost"}
    admin = {**local, "Authorization": "Basic " + base64.b64encode(b"admin:admin123").decode()}
    writer = Node(tmp_path / "w", redis, None, config=config).start()
    edge = Node(tmp_path / "e", redis, writer, config=config).start()
    watching: list[Watcher] = []
    try:
        for node in (writer, edge):
            anonymous = node.request("GET", "/doc.html", headers=local)
            assert anonymous.status == 200 and b"Secret" not in anonymous.body
            assert b"Secret" in node.request("GET", "/doc.html", headers=admin).body
            assert node.select("GET", "/doc.html", ".private", headers=local).status == 401
            assert node.select("PUT", "/doc.html", "#content", "<div id=content>x</div>",
                               headers=local).status == 401
            w = Watcher(node, "/doc.html", host="localhost")
            assert w.subscribe()["type"] == "subscribed"
            watching.append(w)
        r = edge.select("PUT", "/doc.html", "#secret", '<div class="private" id="secret">New secret</div>',
                        headers=admin)
        assert r.status == 206
        assert b"New secret" in edge.request("GET", "/doc.html", headers=admin).body
        r = edge.select("PUT", "/doc.html", "#content", "<div id=content>public</div>", headers=admin)
        assert r.status == 206
        items = [w.item().raw for w in watching]
        assert items[0] == items[1] and "public" in items[0]
        for w in watching:
            w.nothing()
    finally:
        for w in watching:
            w.close()
        edge.stop()
        writer.stop()


def test_twistd_runs_a_writer_and_an_edge_with_the_same_options(tmp_path, redis):
    import subprocess
    import sys

    from conftest import PROJECT, freePort

    root = tmp_path / "root"
    root.mkdir()
    (root / "index.html").write_text(PAGE)
    nodes = []
    try:
        for args in (["--root", str(root)], ["--writer", f"http://127.0.0.1:{{writer}}"]):
            port = freePort()
            args = [a.format(writer=nodes[0].port) if nodes else a for a in args]
            node = Node(root, redis)
            node.port = port
            node.process = subprocess.Popen(
                [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n",
                 "--pidfile=", "rustybeam", "--port", f"tcp:{port}:interface=127.0.0.1",
                 "--redis", redis.url, *args],
                cwd=PROJECT, env=dict(os.environ, PYTHONPATH=str(PROJECT)),
                stdout=open(tmp_path / f"twistd-{port}.log", "wb"), stderr=subprocess.STDOUT)
            nodes.append(node)

            def up(node: Node = node) -> bool:
                try:
                    return node.request("GET", "/index.html").status == 200
                except OSError:
                    return False

            eventually(up, what="twistd to serve")
        writer, edge = nodes
        w = subscribed(lambda n: Watcher(n, "/index.html"), writer)
        assert edge.select("POST", "/index.html", "#list", "<li>via twistd</li>").status == 206
        assert "<li>via twistd</li>" in w.item().content
        w.close()
    finally:
        for node in reversed(nodes):
            node.stop()


def test_an_idle_writer_gives_a_redis_restarted_empty_a_new_epoch(cluster, redis):
    writer = cluster()
    edge = cluster(writer)
    before = redis.command("GET", "rustybeam:epoch")
    redis.stop()
    redis.start()
    eventually(lambda: redis.command("GET", "rustybeam:epoch") not in ("$-1", before),
               what="a new epoch")
    assert edge.select("POST", "/index.html", "#list", "<li>after</li>").status == 206
    assert "<li>after</li>" in edge.select("GET", "/index.html", "#list").text


def test_the_readme_cluster_embedding_example_runs_a_writer_and_an_edge(tmp_path, redis):
    import re
    import subprocess
    import sys

    from conftest import PROJECT, freePort

    text = (PROJECT / "README.md").read_text()
    section = text[text.index("## Cluster"):text.index("## Compliance")]
    example = re.search(r"```python\n(.*?)\n```", section, re.S).group(1)
    root = tmp_path / "root"
    root.mkdir()
    (root / "index.html").write_text(PAGE)
    nodes: list[Node] = []
    try:
        for writer in (None, "writer"):
            port = freePort()
            app = (example.replace('"redis://127.0.0.1:6379/0"', repr(redis.url))
                   .replace('"/srv/docs"', repr(str(root)))
                   .replace('"tcp:8080"', f'"tcp:{port}:interface=127.0.0.1"'))
            if writer is not None:
                app = app.replace("WRITER = None", f'WRITER = "http://127.0.0.1:{nodes[0].port}/docs"')
            (tmp_path / f"app{port}.tac").write_text(app)
            node = Node(root, redis)
            node.port = port
            node.process = subprocess.Popen(
                [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n",
                 "--pidfile=", "-y", str(tmp_path / f"app{port}.tac")],
                cwd=PROJECT, stdout=open(tmp_path / f"twistd-{port}.log", "wb"),
                stderr=subprocess.STDOUT)
            nodes.append(node)

            def up(node: Node = node) -> bool:
                try:
                    return node.request("GET", "/docs/index.html").status == 200
                except OSError:
                    return False

            eventually(up, what="the embedded node to serve")
        writer, edge = nodes
        w = Watcher(writer, "/docs/index.html")
        assert w.subscribe()["url"] == "/index.html"
        assert edge.select("POST", "/docs/index.html", "#list", "<li>embedded</li>").status == 206
        assert w.item().content == "<li>embedded</li>"
        assert "<li>embedded</li>" in edge.select("GET", "/docs/index.html", "#list").text
        w.close()
    finally:
        for node in reversed(nodes):
            node.stop()


def test_workers_with_a_config_authorize_and_redact_alike(tmp_path, redis):
    import base64

    config = liveConfig(tmp_path)
    local = {"Host": "localhost"}
    admin = {**local, "Authorization": "Basic " + base64.b64encode(b"admin:admin123").decode()}
    parent = Node(tmp_path / "w", redis, None, "--workers", "2", config=config).start()
    try:
        children = Path(f"/proc/{parent.process.pid}/task/{parent.process.pid}/children")
        eventually(lambda: children.read_text().split() != [], what="the edge process")
        edgesListening(parent)
        assert parent.select("PUT", "/doc.html", "#content", "<div id=content>w</div>",
                             headers=admin).status == 206
        eventually(lambda: all(b'<div id="content">w</div>' in
                               parent.request("GET", "/doc.html", headers=admin).body
                               for _ in range(10)), what="every worker to have the write")
        for _ in range(10):
            anonymous = parent.request("GET", "/doc.html", headers=local)
            assert b"Secret" not in anonymous.body and b"<div id=\"content\">w</div>" in anonymous.body
            assert parent.select("GET", "/doc.html", ".private", headers=local).status == 401
            assert b"Secret" in parent.request("GET", "/doc.html", headers=admin).body
    finally:
        parent.stop()


def test_workers_start_an_edge_again_when_one_dies(tmp_path, redis):
    root = tmp_path / "root"
    root.mkdir()
    (root / "index.html").write_text(PAGE)
    parent = Node(root, redis, None, "--workers", "2").start()
    try:
        children = Path(f"/proc/{parent.process.pid}/task/{parent.process.pid}/children")
        eventually(lambda: children.read_text().split() != [], what="the edge process")
        (first,) = children.read_text().split()
        os.kill(int(first), signal.SIGKILL)
        eventually(lambda: children.read_text().split() not in ([], [first]), what="a new edge")
        (second,) = children.read_text().split()
        assert second != first
        eventually(lambda: all(parent.request("GET", "/index.html").status == 200
                               for _ in range(10)), what="every worker to serve")
    finally:
        parent.stop()


def test_a_workers_edge_stops_when_its_parent_is_killed(tmp_path, redis):
    root = tmp_path / "root"
    root.mkdir()
    (root / "index.html").write_text(PAGE)
    parent = Node(root, redis, None, "--workers", "2").start()
    children = Path(f"/proc/{parent.process.pid}/task/{parent.process.pid}/children")
    eventually(lambda: children.read_text().split() != [], what="the edge process")
    (child,) = children.read_text().split()
    parent.stop(signal.SIGKILL)

    def gone() -> bool:
        try:
            return "zombie" in Path(f"/proc/{child}/status").read_text()
        except FileNotFoundError:
            return True

    eventually(gone, what="the orphaned edge to stop")


def test_a_writer_started_before_redis_serves_and_joins_it_when_it_comes(tmp_path, redis, watchers):
    redis.stop()
    root = tmp_path / "root"
    root.mkdir()
    (root / "index.html").write_text(PAGE)
    writer = Node(root, redis)
    Server.start(writer)
    edge = None
    try:
        assert writer.select("POST", "/index.html", "#list", "<li>alone</li>").status == 206
        assert writer.request("GET", "/_rustybeam/cluster/snapshot").status == 503
        redis.start()
        edge = Node(root, redis, writer).start()
        assert "<li>alone</li>" in edge.select("GET", "/index.html", "#list").text
        w = subscribed(watchers, edge)
        assert writer.select("POST", "/index.html", "#list", "<li>together</li>").status == 206
        assert w.item().content == "<li>together</li>"
    finally:
        if edge is not None:
            edge.stop()
        writer.stop()


def test_whole_file_appends_through_an_edge_reach_every_node_as_themselves(cluster, watchers):
    writer = cluster()
    edge = cluster(writer)
    start = sequenceOf(writer)
    watching = [subscribed(watchers, n, since=start) for n in (writer, edge)]
    r = edge.request("POST", "/index.html", '<p id="tail">tail</p>')
    assert r.status in (200, 201, 204), r.status
    items = [w.item().raw for w in watching]
    assert items[0] == items[1] and 'id="tail"' in items[0]
    page = edge.request("GET", "/index.html").body
    assert page == writer.request("GET", "/index.html").body and b'<p id="tail">tail</p>' in page
    assert edge.request("POST", "/notes.txt", "more\n").status in (200, 201, 204)
    assert edge.request("GET", "/notes.txt").body == b"plain text\nmore\n"
    assert writer.request("GET", "/notes.txt").body == b"plain text\nmore\n"


def test_a_put_through_an_edge_creates_its_directories_on_every_node(cluster, tmp_path):
    writer = cluster()
    edge = cluster(writer)
    r = edge.request("PUT", "/new/deeper/page.html", PAGE)
    assert r.status == 201, r.status
    assert (tmp_path / "root" / "new" / "deeper" / "page.html").read_text() == PAGE
    assert edge.request("GET", "/new/deeper/page.html").body == PAGE.encode()
    assert edge.select("POST", "/new/deeper/page.html", "#list", "<li>2</li>").status == 206
    late = cluster(writer)
    for node in (writer, edge, late):
        assert b"<li>2</li>" in node.request("GET", "/new/deeper/page.html").body


def test_a_host_added_by_a_reload_is_served_and_written_through_an_edge(tmp_path, redis):
    from test_plugins import HANDLERS, plugin, writeConfig

    config = writeConfig(tmp_path, *HANDLERS, plugin("websocket"))
    other = tmp_path / "other"
    other.mkdir()
    (other / "index.html").write_text(PAGE)
    writer = Node(tmp_path / "w", redis, None, config=config).start()
    edge = Node(tmp_path / "e", redis, writer, config=config).start()
    added = {"Host": "localhost"}
    watching: list[Watcher] = []
    try:
        assert edge.request("GET", "/index.html", headers=added).status == 404
        text = config.read_text()
        host = text[text.index('<table itemscope itemtype="http://rustybeam.net/HostConfig">'):
                    text.index("</body>")]
        config.write_text(text.replace("</body>", host.replace(">127.0.0.1<", ">localhost<")
                                       .replace(">./root<", ">./other<") + "</body>"))
        for node in (edge, writer):
            assert node.process is not None
            node.process.send_signal(signal.SIGHUP)
        eventually(lambda: edge.request("GET", "/index.html", headers=added).body == PAGE.encode(),
                   what="the edge to serve the added host")
        for node in (writer, edge):
            w = Watcher(node, "/index.html", host="localhost")
            assert w.subscribe()["type"] == "subscribed"
            watching.append(w)
        r = edge.select("POST", "/index.html", "#list", "<li>added</li>", headers=added)
        assert r.status == 206
        assert b"<li>added</li>" in edge.request("GET", "/index.html", headers=added).body
        items = [w.item().raw for w in watching]
        assert items[0] == items[1] and "added" in items[0]
        assert "added" in (other / "index.html").read_text()
        assert b"added" not in edge.request("GET", "/index.html").body
    finally:
        for w in watching:
            w.close()
        edge.stop()
        writer.stop()


def test_an_edge_whose_copy_refuses_an_entry_delivers_no_misnumbered_change(cluster, redis, watchers,
                                                                           tmp_path, monkeypatch):
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setenv("TMPDIR", str(temporary))
    writer = cluster()
    edge = cluster(writer)
    start = sequenceOf(writer)
    w = subscribed(watchers, edge, since=start)
    (copy,) = temporary.glob("rustybeam-replica-*/*/index.html")
    length = lambda: int(redis.command("XLEN", "rustybeam:log")[1:])  # noqa: E731
    assert edge.process is not None
    edge.process.send_signal(signal.SIGSTOP)
    try:
        before = length()
        assert writer.select("PUT", "/index.html", "#note", '<p id="note">a</p>').status == 206
        eventually(lambda: length() == before + 1, what="the first entry")
        copy.write_text(PAGE.replace('<ul id="list"><li>first</li></ul>', ""))
        assert writer.select("POST", "/index.html", "#list", "<li>b</li>").status == 206
        assert writer.select("PUT", "/index.html", "#note", '<p id="note">c</p>').status == 206
        eventually(lambda: length() == before + 3, what="the other entries")
    finally:
        edge.process.send_signal(signal.SIGCONT)
    first = w.item(timeout=20)
    assert (first.method, first.selector, first.sequence) == ("PUT", "#note", start + 1)
    again = w.item(timeout=20)
    assert (again.method, again.selector, again.sequence) == ("PUT", "", start + 3)
    assert "<li>b</li>" in again.content and '<p id="note">c</p>' in again.content
    assert edge.request("GET", "/index.html").body == writer.request("GET", "/index.html").body
    w.nothing()


def test_a_reload_of_a_workers_writer_reloads_its_edges(tmp_path, redis):
    from test_plugins import HANDLERS, plugin, writeConfig

    config = writeConfig(tmp_path, *HANDLERS, plugin("websocket"))
    other = tmp_path / "other"
    other.mkdir()
    (other / "index.html").write_text(PAGE)
    parent = Node(tmp_path / "w", redis, None, "--workers", "2", config=config).start()
    added = {"Host": "localhost"}
    try:
        assert parent.process is not None
        children = Path(f"/proc/{parent.process.pid}/task/{parent.process.pid}/children")
        eventually(lambda: children.read_text().split() != [], what="the edge process")
        edgesListening(parent)
        text = config.read_text()
        host = text[text.index('<table itemscope itemtype="http://rustybeam.net/HostConfig">'):
                    text.index("</body>")]
        config.write_text(text.replace("</body>", host.replace(">127.0.0.1<", ">localhost<")
                                       .replace(">./root<", ">./other<") + "</body>"))
        parent.process.send_signal(signal.SIGHUP)
        eventually(lambda: all(parent.request("GET", "/index.html", headers=added).body == PAGE.encode()
                               for _ in range(20)), what="every worker to serve the added host")
    finally:
        parent.stop()


def test_an_edge_gives_every_store_a_directory_of_its_own_when_a_reload_replaces_one(
        tmp_path: Path) -> None:
    from twisted.internet import reactor

    from rustybeam.cluster import EdgeNode
    from rustybeam.documents import StoreOptions
    from rustybeam.notifier import DocumentChangeNotifier
    from rustybeam.redislog import RedisOptions

    node = EdgeNode(RedisOptions("redis://127.0.0.1:1/0"), "http://127.0.0.1:1")
    try:
        made = [node.storeFor(host)("", DocumentChangeNotifier(), StoreOptions(), reactor)
                for host in ("a", "a", "b")]  # "a" again: a reload changed its root
        assert len({store.root for store in made}) == 3
        assert node.replicas == {"a": made[1], "b": made[2]}
    finally:
        shutil.rmtree(node.directory)


@pytest_twisted.ensureDeferred
async def test_each_change_of_a_group_commit_is_published_with_its_own_etag(tmp_path: Path) -> None:
    """A group commit stores several versions with one file write and reports their
    changes together: each stream entry still carries its version's ETag, the one
    the write was answered with."""
    (tmp_path / "index.html").write_text(PAGE)
    published: list[Entry] = []
    publisher = SimpleNamespace(publish=published.append)
    log = _HostLog(publisher, "", DocumentChangeNotifier())  # type: ignore[arg-type]
    store = log.store = DocumentStore(str(tmp_path), log.extend, StoreOptions(fsync=False))
    doc = store.locate("/index.html")
    await store.append(doc, selectors.compile("#list"), b"<li>0</li>")
    results = await DeferredList(
        [store.append(doc, selectors.compile("#list"), f"<li>{i}</li>".encode()) for i in (1, 2, 3)],
        fireOnOneErrback=True)
    etags = [r.etag for _, r in results]
    assert len(set(etags)) == 3
    assert [(e.sequence, e.etag) for e in published[1:]] == [
        (r.change.sequence, r.etag) for _, r in results]


@pytest_twisted.ensureDeferred
async def test_each_entry_of_a_group_commit_but_the_last_says_more_follow(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text(PAGE)
    published: list[Entry] = []
    log = _HostLog(SimpleNamespace(publish=published.append), "", DocumentChangeNotifier())  # type: ignore[arg-type]
    store = log.store = DocumentStore(str(tmp_path), log.extend, StoreOptions(fsync=False))
    doc = store.locate("/index.html")
    await store.append(doc, selectors.compile("#list"), b"<li>0</li>")
    await deferLater(reactor, 0, lambda: None)
    pending = [store.append(doc, selectors.compile("#list"), f"<li>{i}</li>".encode())
               for i in (1, 2, 3)]
    await DeferredList(pending, fireOnOneErrback=True)
    assert [e.more for e in published] == [False, True, True, False]
    assert [Entry.decode(e.encode()).more for e in published] == [False, True, True, False]
    assert Entry.decode('{"kind":"change","host":"","url":"/a.html","sequence":1}').more is False


class RecordingReplica:
    """A replica that records each entry offered to it, with the reactor turn it was
    offered in: the turn's number moves on once the reactor has run past the turn of
    an offer, so offers made in one turn share it."""

    origin = 0

    def __init__(self) -> None:
        self.offered: list[tuple[int, int]] = []
        self.turn = 0
        self._next: object = None

    def _turnOver(self) -> None:
        self.turn += 1
        self._next = None

    def stop(self) -> None:
        if self._next is not None:
            self._next.cancel()  # type: ignore[attr-defined]

    def offer(self, entry: Entry) -> None:
        self.offered.append((entry.sequence, self.turn))
        if self._next is None:
            self._next = reactor.callLater(0, self._turnOver)

    async def install(self, snapshot: object) -> None:
        pass

    def behind(self) -> dict[str, int]:
        return {}

    async def catchUp(self, entries: object) -> None:
        pass


@asynccontextmanager
async def following(redis: RedisServer, block: int) -> AsyncIterator[RecordingReplica]:
    """A stream follower on C{redis}, its C{XREAD} waiting C{block} ms, with one replica."""
    redis.command("SET", "rustybeam:epoch", "e1")
    replica = RecordingReplica()

    async def snapshot(host: str) -> dict:
        return {}

    follower = StreamFollower(RedisOptions(redis.url, block=block), {"": replica}, snapshot, reactor)
    follower.startService()
    try:
        await follower.whenReady()
        yield replica
    finally:
        replica.stop()
        await follower.stopService()


def publish(redis: RedisServer, sequence: int, more: bool) -> None:
    entry = Entry("change", "", "/index.html", sequence, "PUT", "#note", b"<p>x</p>", more=more)
    redis.command("XADD", "rustybeam:log", "*", "c", entry.encode())


async def settled(check: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await deferLater(reactor, 0.02, lambda: None)


@pytest_twisted.ensureDeferred
async def test_an_edge_offers_a_commit_s_entries_together_once_the_last_has_come(redis) -> None:
    async with following(redis, block=10_000) as replica:
        publish(redis, 1, more=True)
        publish(redis, 2, more=True)
        await deferLater(reactor, 0.3, lambda: None)
        assert replica.offered == []
        publish(redis, 3, more=False)
        await settled(lambda: len(replica.offered) == 3)
        assert [n for n, _ in replica.offered] == [1, 2, 3]
        assert len({turn for _, turn in replica.offered}) == 1  # so one group commit


@pytest_twisted.ensureDeferred
async def test_an_entry_that_says_more_follow_is_applied_when_nothing_follows(redis) -> None:
    async with following(redis, block=300) as replica:
        publish(redis, 1, more=True)
        await settled(lambda: len(replica.offered) == 1)
        assert replica.offered[0][0] == 1


@pytest_twisted.ensureDeferred
async def test_a_group_of_entries_delivers_none_after_one_that_fails_on_the_copy(
        tmp_path: Path) -> None:
    """Entries applied as one group commit where one fails here (the copy lost a
    change): the entries after it were numbered one short of the writer's, so none of
    them is delivered and the copy is marked for copying again."""
    (tmp_path / "index.html").write_text(PAGE)
    delivered: list = []
    store = ReplicaStore(str(tmp_path), delivered.extend, StoreOptions(), reactor)
    start = store.sequence("/index.html")

    def entry(n: int, method: str, selector: str, body: str) -> Entry:
        return Entry("change", "", "/index.html", start + n, method, selector, body.encode())

    pending = [store.offer(entry(1, "PUT", "#note", '<p id="note">a</p>')),
               store.offer(entry(2, "POST", "#missing", "<li>b</li>")),
               store.offer(entry(3, "PUT", "#note", '<p id="note">c</p>'))]
    results = await DeferredList(pending, consumeErrors=True)  # type: ignore[arg-type]
    assert [c.sequence for c in delivered] == [start + 1]
    assert [ok for ok, _ in results] == [True, False, False]


@pytest_twisted.ensureDeferred
async def test_a_reload_releases_the_store_of_each_host_it_removes_or_moves_once_stopped(
        tmp_path: Path) -> None:
    from rustybeam.changelog import inProcessStore
    from rustybeam.config import HostConfig, ServerConfig
    from rustybeam.hosts import Hosts
    from rustybeam.service import DocumentOptions

    for name in ("a", "b", "c", "c2"):
        (tmp_path / name).mkdir()
    released: list[tuple[str, object, bool]] = []

    class Provider:
        def storeFor(self, host: str):  # type: ignore[no-untyped-def]
            return inProcessStore

        def release(self, host: str, store: DocumentStore) -> None:
            released.append((host, store, hosts.router.hosts.get(host) is not stopped.get(host)))

    def config(*hosts: tuple[str, str]) -> ServerConfig:
        return ServerConfig("127.0.0.1", 0, str(tmp_path),
                            tuple(HostConfig(n, str(tmp_path / r)) for n, r in hosts))

    hosts = Hosts(config(("a", "a"), ("b", "b"), ("c", "c")), DocumentOptions(), stores=Provider())
    hosts.startService()
    stopped = {name: hosts.router.hosts[name] for name in ("b", "c")}
    await hosts.reload(config(("a", "a"), ("c", "c2")), {"a": None, "c": None})
    assert sorted((h, s) for h, s, _ in released) == sorted(
        [("b", stopped["b"].store), ("c", stopped["c"].store)], key=lambda x: x[0])
    assert all(not service.running for service in stopped.values())
    assert all(routedElsewhere for _, _, routedElsewhere in released)
    await hosts.stopService()


def test_a_released_host_is_forgotten_by_the_writer_and_the_edge_and_the_edge_s_copy_goes(
        tmp_path: Path) -> None:
    from twisted.internet import reactor

    from rustybeam.cluster import EdgeNode, WriterNode
    from rustybeam.redislog import RedisOptions

    redis = RedisOptions("redis://127.0.0.1:1/0")
    writer = WriterNode(redis)
    kept, gone = (writer.storeFor(h)(str(tmp_path), DocumentChangeNotifier(), StoreOptions(), reactor)
                  for h in ("kept", "gone"))
    writer.release("gone", gone)
    writer.release("kept", DocumentStore(str(tmp_path)))  # not its store: nothing happens
    assert (writer.stores, list(writer.histories)) == ({"kept": kept}, ["kept"])

    edge = EdgeNode(redis, "http://127.0.0.1:1")
    try:
        old, new, other = (edge.storeFor(h)("", DocumentChangeNotifier(), StoreOptions(), reactor)
                           for h in ("a", "a", "b"))
        edge.release("a", old)  # a reload gave "a" another root
        edge.release("b", other)
        assert edge.replicas == {"a": new}
        assert [os.path.isdir(s.root) for s in (old, new, other)] == [False, True, False]
    finally:
        shutil.rmtree(edge.directory)


@pytest_twisted.ensureDeferred
async def test_a_snapshot_is_written_one_document_at_a_time_with_a_reactor_turn_between(
        tmp_path: Path) -> None:
    import base64
    import json

    from twisted.internet import reactor
    from twisted.internet.task import Clock, deferLater

    from rustybeam.cluster import writeSnapshot

    for name in ("a", "b", "c"):
        (tmp_path / f"{name}.html").write_text(PAGE.replace("note", name))
    notifier = DocumentChangeNotifier()
    store = DocumentStore(str(tmp_path), notifier.changedAll, StoreOptions(fsync=False))
    await store.replace(store.locate("/b.html"), selectors.compile("#b"), b'<p id="b">new</p>')
    await deferLater(reactor, 0, lambda: None)  # the write's turn is over
    clock, written = Clock(), []
    done = ensureDeferred(writeSnapshot(store, notifier.history, written.append, clock))
    await settled(lambda: len(written) == 2)  # the opening, then a.html (taken in its turn)
    await deferLater(reactor, 0.05, lambda: None)
    assert len(written) == 2 and not done.called  # b.html waits for the snapshot's turn
    for count in (3, 4):
        clock.advance(0)
        await settled(lambda: len(written) == count)
    clock.advance(0)
    await settled(lambda: done.called)
    assert len(written) == 5
    snapshot = json.loads(b"".join(written))
    assert snapshot["origin"] == store.origin and snapshot["gone"] == []
    assert [d["url"] for d in snapshot["documents"]] == ["/a.html", "/b.html", "/c.html"]
    b = snapshot["documents"][1]
    assert b"<p id=\"b\">new</p>" in base64.b64decode(b["data"])
    assert b"<p id=\"b\">b</p>" in base64.b64decode(b["base"]["data"])
    assert b["base"]["sequence"] == b["sequence"] - 1
    assert all("base" not in d for d in snapshot["documents"][::2])
