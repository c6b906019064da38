"""
Fast, network-free tests of the document store through its public API: reading and
its cache, ETags and If-Match, selector writes and their group commits, whole-document
writes, durable storage and what a failed one leaves, and the changes it reports.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from pathlib import Path
from typing import Sequence

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.task import deferLater
from twisted.logger import Logger, formatEvent

from rustybeam import documents, markup, selectors
from rustybeam.changes import Change
from rustybeam.documents import DocumentStore, StoreOptions, WriteResult
from rustybeam.errors import (
    IS_DIRECTORY,
    NO_MATCH,
    NOT_FOUND,
    NOT_HTML,
    NOT_UTF8,
    PARENT_IS_FILE,
    PRECONDITION_FAILED,
    RESTRUCTURED,
    UNSTORABLE,
    WRITE_FAILED,
    Problem,
)

DOCUMENTS = Path(__file__).resolve().parent / "data" / "documents"
PAGE = (b'<!DOCTYPE html>\n<html><head><title>T</title></head><body>'
        b'<div id="a">A</div><div id="b">B</div><ul id="l"><li>1</li></ul></body></html>')


class Store:
    """A DocumentStore on a fresh directory, collecting its Changes and log lines."""

    def __init__(self, root: Path, **options: object) -> None:
        root.mkdir(parents=True, exist_ok=True)
        (root / "page.html").write_bytes(PAGE)
        self.root = root
        self.changes: list[Change] = []
        self.events: list[dict] = []
        self.store = DocumentStore(str(root), self.changes.extend,
                                   StoreOptions(**{"fsync": False, **options}))
        self.store.log = Logger(observer=self.events.append)
        self.page = self.store.locate("/page.html")

    def doc(self, name: str):
        return self.store.locate(name)

    def bytes(self, name: str = "page.html") -> bytes:
        return (self.root / name).read_bytes()

    def logged(self) -> list[str]:
        return [formatEvent(e) for e in self.events]

    def etag(self, name: str = "/page.html") -> str:
        info = self.store.info(self.doc(name))
        assert info is not None
        return info.etag


@pytest.fixture
def s(tmp_path: Path) -> Store:
    return Store(tmp_path / "docs")


def css(text: str) -> selectors.Selector:
    return selectors.compile(text)


async def refused(d: Deferred) -> Problem:
    """The Problem that the write C{d} was refused with."""
    try:
        await d
    except Problem as e:
        return e
    raise AssertionError("the write was not refused")


def ids(tree) -> list[str]:
    return [e.get("id") for e in tree.getroot().iter() if e.get("id")]


# Content types and decoding


def test_an_html_extension_in_capitals_is_served_as_html() -> None:
    assert documents.contentTypeOf("PAGE.HTM") == "text/html; charset=utf-8"


def test_json_is_served_as_utf8() -> None:
    assert documents.contentTypeOf("x.json") == "application/json; charset=utf-8"


def test_a_body_that_is_not_utf8_says_where_the_bad_byte_is() -> None:
    with pytest.raises(Problem) as e:
        documents.decodeBody(b"ok\xff")
    assert e.value.code == NOT_UTF8.code
    assert e.value.message == NOT_UTF8.message + ": invalid byte at offset 2"


# Atomic writes on disk


def test_atomic_write_keeps_the_permissions_of_the_file_it_replaces(tmp_path: Path) -> None:
    target = tmp_path / "f.html"
    target.write_bytes(b"old")
    os.chmod(target, 0o640)
    documents.atomicWrite(str(target), b"new", fsync=False)
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o640


def test_atomic_write_creates_a_new_file_readable_by_all(tmp_path: Path) -> None:
    target = tmp_path / "f.html"
    documents.atomicWrite(str(target), b"new", fsync=False)
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o644


def test_atomic_write_returns_the_status_of_the_file_it_wrote(tmp_path: Path) -> None:
    target = tmp_path / "f.html"
    written = documents.atomicWrite(str(target), b"12345", fsync=False)
    st = os.stat(target)
    assert (written.st_size, written.st_ino, written.st_mtime_ns) == (
        5, st.st_ino, st.st_mtime_ns)


def test_atomic_write_creates_the_missing_directories(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "f.html"
    documents.atomicWrite(str(target), b"x", fsync=False)
    assert target.read_bytes() == b"x"


def fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What os.fsync is called on from now: 'file' or 'dir'."""
    calls: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        calls.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return calls


def test_atomic_write_flushes_the_file_then_its_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = fsyncs(monkeypatch)
    documents.atomicWrite(str(tmp_path / "f.html"), b"x")
    assert calls == ["file", "dir"]


def test_atomic_write_flushes_each_directory_it_creates(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = fsyncs(monkeypatch)
    documents.atomicWrite(str(tmp_path / "a" / "b" / "f.html"), b"x")
    assert calls == ["dir", "dir", "file", "dir"]


def test_atomic_write_without_fsync_flushes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = fsyncs(monkeypatch)
    documents.atomicWrite(str(tmp_path / "a" / "f.html"), b"x", fsync=False)
    documents.durableUnlink(str(tmp_path / "a" / "f.html"), fsync=False)
    assert calls == []


def test_durable_unlink_removes_the_file_and_flushes_its_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "f.html"
    target.write_bytes(b"x")
    calls = fsyncs(monkeypatch)
    documents.durableUnlink(str(target))
    assert not target.exists() and calls == ["dir"]


@pytest_twisted.ensureDeferred
async def test_a_store_with_fsync_flushes_every_write(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(tmp_path / "docs", fsync=True)
    calls = fsyncs(monkeypatch)
    await store.store.append(store.page, css("#a"), b"<b>x</b>")
    await store.store.deleteDocument(store.page)
    assert calls == ["file", "dir", "dir"]


# Leftovers of interrupted writes


def test_leftover_temporary_files_are_removed_and_counted(s: Store) -> None:
    (s.root / "sub").mkdir()
    (s.root / ".rustybeam-1.tmp").write_bytes(b"x")
    (s.root / "sub" / ".rustybeam-2.tmp").write_bytes(b"x")
    (s.root / ".rustybeam-keep").write_bytes(b"x")
    (s.root / "keep.tmp").write_bytes(b"x")
    assert s.store.removeLeftovers() == 2
    assert sorted(p.name for p in s.root.rglob("*") if p.is_file()) == [
        ".rustybeam-keep", "keep.tmp", "page.html"]
    assert s.logged() == ["removed 2 temporary files left by interrupted writes"]


def test_removing_leftovers_follows_no_symbolic_link(s: Store, tmp_path: Path) -> None:
    outside = tmp_path / "outside.html"
    outside.write_bytes(b"x")
    os.symlink(outside, s.root / ".rustybeam-link.tmp")
    assert s.store.removeLeftovers() == 0
    assert outside.exists() and (s.root / ".rustybeam-link.tmp").is_symlink()
    assert s.logged() == []


def test_a_leftover_that_cannot_be_removed_is_logged_and_skipped(
        s: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    (s.root / ".rustybeam-1.tmp").write_bytes(b"x")

    def unlink(path: str) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(os, "unlink", unlink)
    assert s.store.removeLeftovers() == 0
    (line,) = s.logged()
    assert line.startswith("could not remove " + str(s.root / ".rustybeam-1.tmp") + ": ")
    assert "Permission denied" in line


# Reading


def test_a_hidden_file_is_not_found(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    root.mkdir()
    (root / "users.html").write_bytes(b"x")
    store = DocumentStore(str(root), options=StoreOptions(
        hidden=frozenset({str(root / "users.html")})))
    with pytest.raises(Problem) as e:
        store.locate("/users.html")
    assert e.value is NOT_FOUND
    assert store.locate("/other.html").url == "/other.html"


def test_info_describes_size_time_etag_and_type(s: Store) -> None:
    st = os.stat(s.root / "page.html")
    info = s.store.info(s.page)
    assert info is not None
    assert (info.size, info.mtime, info.contentType) == (
        len(PAGE), st.st_mtime, "text/html; charset=utf-8")
    assert info.etag == '"%x-%x-%x"' % (st.st_mtime_ns, st.st_size, st.st_ino)
    assert info.lastModified.endswith(" GMT")


def test_info_of_a_missing_document_is_none(s: Store) -> None:
    assert s.store.info(s.doc("/missing.html")) is None
    assert s.store.info(s.doc("/page.html/under.html")) is None


def test_info_of_a_directory_is_refused(s: Store) -> None:
    (s.root / "dir.html").mkdir()
    with pytest.raises(Problem) as e:
        s.store.info(documents.DocumentPath("/dir.html", str(s.root / "dir.html")))
    assert e.value is IS_DIRECTORY


def test_reading_a_missing_document_or_a_directory_is_not_found(s: Store) -> None:
    (s.root / "dir.html").mkdir()
    for doc in (s.doc("/missing.html"), s.doc("/page.html/under.html"),
                documents.DocumentPath("/dir.html", str(s.root / "dir.html"))):
        with pytest.raises(Problem) as e:
            s.store.read(doc)
        assert e.value is NOT_FOUND
    assert s.store.read(s.page) == PAGE


def test_the_tree_of_a_file_that_is_not_html_is_refused(s: Store) -> None:
    (s.root / "a.txt").write_bytes(b"x")
    with pytest.raises(Problem) as e:
        s.store.tree(s.doc("/a.txt"))
    assert e.value is NOT_HTML
    assert s.store.treeOrNone(s.doc("/a.txt")) is None
    assert s.store.isLoaded(s.doc("/a.txt"))


def test_the_tree_of_a_missing_document_is_not_found(s: Store) -> None:
    with pytest.raises(Problem) as e:
        s.store.tree(s.doc("/missing.html"))
    assert e.value is NOT_FOUND
    assert s.store.treeOrNone(s.doc("/missing.html")) is None
    assert s.store.isLoaded(s.doc("/missing.html"))


def test_an_unchanged_document_is_parsed_once(s: Store) -> None:
    assert not s.store.isLoaded(s.page)
    tree = s.store.tree(s.page)
    assert s.store.isLoaded(s.page)
    assert s.store.tree(s.page) is tree
    assert s.store.treeOrNone(s.page) is tree


def test_a_document_deleted_on_disk_is_no_longer_served_from_the_cache(s: Store) -> None:
    s.store.tree(s.page)
    (s.root / "page.html").unlink()
    with pytest.raises(Problem):
        s.store.tree(s.page)
    (s.root / "page.html").write_bytes(PAGE)
    os.utime(s.root / "page.html", ns=(1, 1))
    assert ids(s.store.tree(s.page)) == ["a", "b", "l"]


def test_the_cache_keeps_the_most_recently_read_documents(tmp_path: Path) -> None:
    s = Store(tmp_path / "docs", cacheSize=2)
    for name in ("x", "y", "z"):
        (s.root / f"{name}.html").write_bytes(PAGE)
    x, y, z = (s.doc(f"/{n}.html") for n in "xyz")
    tx, ty = s.store.tree(x), s.store.tree(y)
    assert s.store.tree(x) is tx
    s.store.tree(z)
    assert s.store.isLoaded(x) and s.store.isLoaded(z) and not s.store.isLoaded(y)
    assert s.store.tree(x) is tx
    assert s.store.tree(y) is not ty


def test_select_refuses_a_selector_that_matches_nothing_naming_it(s: Store) -> None:
    with pytest.raises(Problem) as e:
        s.store.select(s.page, css("#nothing"))
    assert (e.value.code, e.value.message) == (NO_MATCH.code, NO_MATCH.message + ": #nothing")
    assert [e.get("id") for e in s.store.select(s.page, css("div"))] == ["a", "b"]


@pytest_twisted.ensureDeferred
async def test_loading_a_document_that_cannot_be_read_leaves_the_error_for_later(
        s: Store) -> None:
    assert await s.store.load(s.doc("/missing.html")) is None
    await s.store.load(s.page)
    assert s.store.isLoaded(s.page)


@pytest_twisted.ensureDeferred
async def test_a_store_without_a_change_listener_still_writes(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    root.mkdir()
    (root / "page.html").write_bytes(PAGE)
    store = DocumentStore(str(root), options=StoreOptions(fsync=False))
    result = await store.append(store.locate("/page.html"), css("#a"), b"<b>x</b>")
    assert result.change.content == "<b>x</b>"


def test_sequence_numbers_start_at_the_microsecond_the_store_was_made(tmp_path: Path) -> None:
    before = time.time_ns() // 1000
    store = DocumentStore(str(tmp_path))
    after = time.time_ns() // 1000
    assert isinstance(store.origin, int)
    assert before <= store.origin <= after
    assert store.sequence("/any.html") == store.origin


# ETags and If-Match


@pytest_twisted.ensureDeferred
async def test_a_written_version_has_an_etag_with_its_sequence_number(s: Store) -> None:
    result = await s.store.append(s.page, css("#a"), b"<b>x</b>")
    st = os.stat(s.root / "page.html")
    expected = '"%x-%x-%x-%x"' % (st.st_mtime_ns, st.st_size, st.st_ino,
                                  result.change.sequence)
    assert result.etag == expected == s.etag()


@pytest_twisted.ensureDeferred
async def test_a_write_with_the_current_etag_among_others_is_applied(s: Store) -> None:
    tag = s.etag()
    await s.store.append(s.page, css("#a"), b"<b>1</b>", ifMatch=f'"other" , {tag} ')
    tag = s.etag()
    await s.store.append(s.page, css("#a"), b"<b>2</b>", ifMatch=f'"other",{tag}')
    tag = s.etag()
    await s.store.putDocument(s.page, PAGE, ifMatch=f'"other",{tag}')
    assert s.bytes() == PAGE and len(s.changes) == 3


@pytest_twisted.ensureDeferred
async def test_a_write_with_a_stale_etag_is_refused(s: Store) -> None:
    stale = s.etag()
    await s.store.append(s.page, css("#a"), b"<b>1</b>")
    before = s.bytes()
    for write in (s.store.append(s.page, css("#a"), b"<b>2</b>", ifMatch=stale),
                  s.store.replace(s.page, css("#a"), b"<b>2</b>", ifMatch=stale),
                  s.store.remove(s.page, css("#a"), ifMatch=stale),
                  s.store.putDocument(s.page, b"<p>x</p>", ifMatch=stale),
                  s.store.appendDocument(s.page, b"<p>x</p>", ifMatch=stale),
                  s.store.deleteDocument(s.page, ifMatch=stale)):
        assert (await refused(write)) is PRECONDITION_FAILED
    assert s.bytes() == before and len(s.changes) == 1


@pytest_twisted.ensureDeferred
async def test_every_kind_of_write_can_be_refused_by_its_check(s: Store) -> None:
    seen: list[list[str]] = []

    def forbid(tree) -> None:
        seen.append(ids(tree))
        raise Problem(403, "forbidden", "no")

    for write in (s.store.append(s.page, css("#a"), b"<b>2</b>", check=forbid),
                  s.store.replace(s.page, css("#a"), b"<b>2</b>", check=forbid),
                  s.store.remove(s.page, css("#a"), check=forbid),
                  s.store.putDocument(s.page, b"<p>x</p>", check=forbid),
                  s.store.appendDocument(s.page, b"<p>x</p>", check=forbid),
                  s.store.deleteDocument(s.page, check=forbid)):
        assert (await refused(write)).status == 403
    assert seen == [["a", "b", "l"]] * 6
    assert s.bytes() == PAGE and s.changes == []


@pytest_twisted.ensureDeferred
async def test_if_match_star_needs_the_document_to_exist(s: Store) -> None:
    await s.store.append(s.page, css("#a"), b"<b>1</b>", ifMatch=" * ")
    await s.store.putDocument(s.page, PAGE, ifMatch="*")
    new = s.doc("/new.html")
    problem = await refused(s.store.putDocument(new, b"<p>x</p>", ifMatch="*"))
    assert (problem.code, problem.message) == (
        PRECONDITION_FAILED.code, PRECONDITION_FAILED.message + ": the document does not exist")
    assert not (s.root / "new.html").exists()


@pytest_twisted.ensureDeferred
async def test_if_match_on_a_missing_document_is_a_failed_precondition(s: Store) -> None:
    missing = s.doc("/missing.html")
    assert (await refused(s.store.append(missing, css("p"), b"x", ifMatch='"x"'))
            ) is PRECONDITION_FAILED
    assert (await refused(s.store.append(missing, css("p"), b"x"))) is NOT_FOUND
    assert (await refused(s.store.putDocument(missing, b"x", ifMatch='"x"'))
            ) is PRECONDITION_FAILED


@pytest_twisted.ensureDeferred
async def test_a_queued_write_whose_etag_an_earlier_one_changed_is_refused(s: Store) -> None:
    await s.store.append(s.page, css("#a"), b"<b>0</b>")
    tag = s.etag()
    first = s.store.append(s.page, css("#a"), b"<b>1</b>", ifMatch=tag)
    second = s.store.append(s.page, css("#b"), b"<b>2</b>", ifMatch=tag)
    third = s.store.append(s.page, css("#b"), b"<b>3</b>", ifMatch="*")
    await first
    assert (await refused(second)) is PRECONDITION_FAILED
    await third
    assert [c.content for c in s.changes] == ["<b>0</b>", "<b>1</b>", "<b>3</b>"]


# Group commit


def countWrites(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    written: list[bytes] = []
    real = documents.atomicWrite

    def atomicWrite(filename: str, data: bytes, fsync: bool = True) -> os.stat_result:
        written.append(data)
        return real(filename, data, fsync)

    monkeypatch.setattr(documents, "atomicWrite", atomicWrite)
    return written


@pytest_twisted.ensureDeferred
async def test_queued_selector_writes_are_stored_by_one_file_write_each_group(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = Store(tmp_path / "docs", maxBatch=2)
    await s.store.append(s.page, css("#a"), b"<b>0</b>")
    written = countWrites(monkeypatch)
    results = await DeferredList(
        [s.store.append(s.page, css("#l"), f"<li>{i}</li>".encode()) for i in range(1, 7)],
        fireOnOneErrback=True)
    assert len(written) == 3  # the queue was still open: [1, 2], [3, 4], [5, 6]
    assert [c.content for c in s.changes[1:]] == [f"<li>{i}</li>" for i in range(1, 7)]
    tags = [r.etag for _, r in results]
    assert len(set(tags)) == 6
    assert tags[-1] == s.etag()
    assert [int(t.strip('"').split("-")[-1], 16) for t in tags] == [
        c.sequence for c in s.changes[1:]]


@pytest_twisted.ensureDeferred
async def test_a_group_s_changes_are_reported_together_in_order_before_any_is_answered(
        tmp_path: Path) -> None:
    s = Store(tmp_path / "docs", maxBatch=2)
    await s.store.append(s.page, css("#a"), b"<b>0</b>")
    reports: list[list[str]] = []
    answered: list[int] = []
    s.store.onChanges = lambda changes: reports.append(
        [c.content for c in changes] + [f"answered {len(answered)}"])
    pending = [s.store.append(s.page, css("#l"), f"<li>{i}</li>".encode()) for i in range(1, 5)]
    for d in pending:
        d.addCallback(lambda result: answered.append(result.change.sequence))
    await DeferredList(pending, fireOnOneErrback=True)
    assert reports == [["<li>1</li>", "<li>2</li>", "answered 0"],
                       ["<li>3</li>", "<li>4</li>", "answered 2"]]
    assert answered == sorted(answered)


@pytest_twisted.ensureDeferred
async def test_writes_made_in_one_reactor_turn_form_one_group_commit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = Store(tmp_path / "docs")
    await s.store.append(s.page, css("#a"), b"<b>0</b>")
    await deferLater(reactor, 0, lambda: None)  # that write's commit has ended
    reports: list[list[str]] = []
    s.store.onChanges = lambda changes: reports.append([c.content for c in changes])
    written = countWrites(monkeypatch)
    pending = [s.store.append(s.page, css("#l"), f"<li>{i}</li>".encode()) for i in range(1, 4)]
    assert not any(d.called for d in pending)
    await DeferredList(pending, fireOnOneErrback=True)
    assert len(written) == 1  # not [1] alone, then [2, 3]
    assert reports == [["<li>1</li>", "<li>2</li>", "<li>3</li>"]]


@pytest_twisted.ensureDeferred
async def test_the_first_write_to_a_freshly_read_document_is_checked_on_its_own(
        s: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    written = countWrites(monkeypatch)
    pending = [s.store.append(s.page, css("#l"), f"<li>{i}</li>".encode()) for i in range(3)]
    await DeferredList(pending, fireOnOneErrback=True)
    assert len(written) == 2  # [0] alone, then [1, 2] together
    assert [c.content for c in s.changes] == [f"<li>{i}</li>" for i in range(3)]
    assert b"<li>1</li><li>0</li><li>1</li><li>2</li>" in s.bytes()


@pytest_twisted.ensureDeferred
async def test_a_refused_write_in_a_group_is_undone_and_the_others_are_applied(
        s: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    await s.store.append(s.page, css("#a"), b"<b>0</b>")
    written = countWrites(monkeypatch)

    def forbid(tree) -> None:
        assert tree is not None and tree.getroot().find(".//b") is not None
        raise Problem(403, "forbidden", "no")

    d1 = s.store.append(s.page, css("#a"), b"<i>1</i>")
    d2 = s.store.append(s.page, css("#b"), b"<i>2</i>", check=forbid)
    d3 = s.store.remove(s.page, css("#l"))
    d4 = s.store.replace(s.page, css("#nothing"), b"<p>x</p>")
    d5 = s.store.append(s.page, css("#a, #b"), b"<u>5</u>")
    await d1
    assert (await refused(d2)).status == 403
    await d3
    assert (await refused(d4)) .code == NO_MATCH.code
    await d5
    assert [c.content for c in s.changes[1:]] == [
        "<i>1</i>", '<ul id="l"><li>1</li></ul>', "<u>5</u>\n<u>5</u>"]
    assert len(written) == 1
    data = s.bytes()
    assert b'<div id="a">A<b>0</b><i>1</i><u>5</u></div><div id="b">B<u>5</u></div></body>' in data
    tree = s.store.tree(s.page)
    assert markup.serializeDocument(tree) == data


@pytest_twisted.ensureDeferred
async def test_a_group_of_only_refused_writes_stores_nothing(
        s: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    await s.store.append(s.page, css("#a"), b"<b>0</b>")
    written = countWrites(monkeypatch)
    d1 = s.store.append(s.page, css("#a"), b"<i>1</i>", ifMatch='"old"')
    d2 = s.store.append(s.page, css("#a"), b"\xff")
    assert (await refused(d1)) is PRECONDITION_FAILED
    assert (await refused(d2)).code == NOT_UTF8.code
    assert written == [] and len(s.changes) == 1


@pytest_twisted.ensureDeferred
async def test_replacing_the_html_element_after_other_writes_waits_for_its_own_turn(
        s: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    await s.store.append(s.page, css("#a"), b"<b>0</b>")
    written = countWrites(monkeypatch)
    d1 = s.store.append(s.page, css("#a"), b"<i>1</i>")
    d2 = s.store.replace(s.page, css("html"), b"<p id=new>whole</p>")
    d3 = s.store.append(s.page, css("#new"), b"<i>3</i>")
    await DeferredList([d1, d2, d3], fireOnOneErrback=True)
    assert [c.selector for c in s.changes[1:]] == ["#a", "html", "#new"]
    assert [c.method for c in s.changes[1:]] == ["POST", "PUT", "POST"]
    assert len(written) == 3
    assert b'<p id="new">whole<i>3</i></p>' in s.bytes()
    change = s.changes[2]
    assert change.content == '<html><head></head><body><p id="new">whole</p></body></html>'
    assert ids(change.before) == ["a", "b", "l"] and ids(change.after) == ["new"]
    assert [e.tag for e in change.removed] == ["html"]
    assert [e.tag for e in change.inserted] == ["html"]


@pytest_twisted.ensureDeferred
async def test_a_body_lxml_cannot_hold_is_refused_as_unstorable(s: Store) -> None:
    for write in (s.store.append(s.page, css("#a"), b"<b>\x01</b>"),
                  s.store.putDocument(s.page, b"<p>\x01</p>")):
        problem = await refused(write)
        assert problem.code == UNSTORABLE.code
        assert problem.message.startswith(UNSTORABLE.message + ": All strings must be XML")
        assert "\n" not in problem.message
    assert s.bytes() == PAGE and s.changes == []


@pytest_twisted.ensureDeferred
async def test_a_body_that_a_parser_would_move_is_refused(s: Store) -> None:
    await s.store.append(s.page, css("#a"), b"<b>0</b>")
    before = s.bytes()
    (s.root / "p.html").write_bytes(b"<!DOCTYPE html><html><body><p id=p>x</p></body></html>")
    problem = await refused(s.store.append(s.doc("/p.html"), css("#p"), b"<div>in p</div>"))
    assert problem.code == RESTRUCTURED.code
    assert s.bytes() == before and len(s.changes) == 1
    assert b"in p" not in s.bytes("p.html")


@pytest_twisted.ensureDeferred
async def test_a_failed_group_write_refuses_every_write_of_the_group(
        s: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    await s.store.append(s.page, css("#a"), b"<b>0</b>")
    before = s.bytes()

    def fail(filename: str, data: bytes, fsync: bool = True) -> os.stat_result:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(documents, "atomicWrite", fail)
    d1 = s.store.append(s.page, css("#a"), b"<i>1</i>")
    d2 = s.store.append(s.page, css("#b"), b"<i>2</i>")
    d3 = s.store.append(s.page, css("#nothing"), b"<i>3</i>")
    for d in (d1, d2):
        problem = await refused(d)
        assert (problem.code, problem.message) == (
            WRITE_FAILED.code, WRITE_FAILED.message + ": Input/output error")
    assert (await refused(d3)).code == NO_MATCH.code
    assert len(s.changes) == 1
    assert "writing " + str(s.root / "page.html") + " failed: [Errno 5] Input/output error" in (
        s.logged())
    monkeypatch.undo()
    assert s.bytes() == before
    assert b"<i>" not in markup.serializeDocument(s.store.tree(s.page))
    await s.store.append(s.page, css("#b"), b"<i>after</i>")
    assert b'<div id="b">B<i>after</i></div>' in s.bytes() and b"<i>1</i>" not in s.bytes()


@pytest_twisted.ensureDeferred
async def test_a_failed_write_without_a_reason_is_named_by_its_error(
        s: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(filename: str, data: bytes, fsync: bool = True) -> os.stat_result:
        raise PermissionError()

    monkeypatch.setattr(documents, "atomicWrite", fail)
    problem = await refused(s.store.putDocument(s.page, b"<p>x</p>"))
    assert problem.message == WRITE_FAILED.message + ": PermissionError"
    assert s.bytes() == PAGE and s.changes == []


@pytest_twisted.ensureDeferred
async def test_a_whole_write_that_fails_on_disk_is_not_served(
        s: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    s.store.tree(s.page)

    def fail(filename: str, data: bytes, fsync: bool = True) -> os.stat_result:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(documents, "atomicWrite", fail)
    assert (await refused(s.store.putDocument(s.page, b"<p id=lost>x</p>"))).code == (
        WRITE_FAILED.code)
    assert ids(s.store.tree(s.page)) == ["a", "b", "l"]
    assert s.changes == []


@pytest_twisted.ensureDeferred
async def test_a_document_that_vanishes_during_its_deletion_is_not_found(
        s: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    s.store.tree(s.page)

    def vanished(filename: str, fsync: bool = True) -> None:
        raise FileNotFoundError(errno.ENOENT, "No such file or directory")

    monkeypatch.setattr(documents, "durableUnlink", vanished)
    assert (await refused(s.store.deleteDocument(s.page))) is NOT_FOUND
    assert s.changes == []
    monkeypatch.undo()
    (s.root / "page.html").write_bytes(b"<p id=other>x</p>")
    os.utime(s.root / "page.html", ns=(2, 2))
    assert ids(s.store.tree(s.page)) == ["other"]


# Selector writes


@pytest_twisted.ensureDeferred
async def test_appending_to_nested_matches_appends_to_each_of_them(s: Store) -> None:
    (s.root / "n.html").write_bytes(
        b'<!DOCTYPE html><html><head></head><body><div class="x" id="o">'
        b'<div class="x" id="i"></div></div></body></html>')
    result = await s.store.append(s.doc("/n.html"), css(".x"), b"<b>+</b>")
    assert b'<div class="x" id="o"><div class="x" id="i"><b>+</b></div><b>+</b></div>' in (
        s.bytes("n.html"))
    assert [e.get("id") for e in result.change.containers] == ["o", "i"]
    assert [e.tag for e in result.change.inserted] == ["b", "b"]
    assert result.change.removed == ()


@pytest_twisted.ensureDeferred
async def test_replacing_nested_matches_replaces_only_the_outermost(s: Store) -> None:
    (s.root / "n.html").write_bytes(
        b'<!DOCTYPE html><html><head></head><body><div class="x" id="o"><p>'
        b'<span class="x" id="i"></span></p></div><p class="x" id="p"></p></body></html>')
    result = await s.store.replace(s.doc("/n.html"), css(".x"), b"<hr>")
    assert b"<body><hr><hr></body>" in s.bytes("n.html")
    assert [e.get("id") for e in result.change.removed] == ["o", "p"]
    assert result.change.content == "<hr>\n<hr>"


@pytest_twisted.ensureDeferred
async def test_removing_nested_matches_removes_the_outermost_and_reports_them(
        s: Store) -> None:
    (s.root / "n.html").write_bytes(
        b'<!DOCTYPE html><html><head></head><body><div class="x" id="o">'
        b'<div class="x" id="i"></div></div>t</body></html>')
    result = await s.store.remove(s.doc("/n.html"), css(".x"))
    assert b"<body>t</body>" in s.bytes("n.html")
    c = result.change
    assert c.content == '<div class="x" id="o"><div class="x" id="i"></div></div>'
    assert [e.get("id") for e in c.removed] == ["o"]
    assert [e.tag for e in c.containers] == ["body"] and c.inserted == ()
    assert c.body is None and c.size == len(s.bytes("n.html"))


@pytest_twisted.ensureDeferred
async def test_a_change_carries_the_body_as_sent_and_the_size_stored(s: Store) -> None:
    body = b"<li>two</li>  "
    result = await s.store.append(s.page, css("#l"), body)
    assert result.change.body == body
    assert result.change.size == len(s.bytes())
    assert result.change.method == "POST" and not result.created
    assert s.changes == [result.change]


@pytest_twisted.ensureDeferred
async def test_a_listener_that_fails_does_not_fail_the_write(s: Store) -> None:
    def broken(changes: Sequence[Change]) -> None:
        raise RuntimeError("listener bug")

    s.store.onChanges = broken
    result = await s.store.append(s.page, css("#a"), b"<b>x</b>")
    assert result.etag == s.etag()
    assert any(line.startswith("change listener failed for /page.html")
               for line in s.logged())


@pytest_twisted.ensureDeferred
async def test_replacing_the_body_replaces_the_whole_body_element(s: Store) -> None:
    result = await s.store.replace(s.page, css("body"), b"<body class=new><p>n</p></body>")
    assert b'<body class="new"><p>n</p></body>' in s.bytes()
    assert [e.tag for e in result.change.removed] == ["body"]
    assert [e.tag for e in result.change.containers] == ["html"]
    result = await s.store.replace(s.page, css("head"), b"<title>New</title>")
    assert b"<head><title>New</title></head>" in s.bytes()


@pytest_twisted.ensureDeferred
async def test_the_versions_of_a_selector_change_stay_what_they_were(s: Store) -> None:
    first = await s.store.replace(s.page, css("#a"), b'<div id="a2">2</div>')
    second = await s.store.remove(s.page, css("#a2"))
    assert ids(first.change.before) == ["a", "b", "l"]
    assert ids(first.change.after) == ["a2", "b", "l"]
    assert ids(second.change.before) == ["a2", "b", "l"]
    assert ids(second.change.after) == ["b", "l"]
    assert [e.get("id") for e in first.change.inserted] == ["a2"]


# Whole-document writes


@pytest_twisted.ensureDeferred
async def test_putting_a_new_document_creates_it_and_says_so(s: Store) -> None:
    new = s.doc("/dir/new.html")
    result = await s.store.putDocument(new, b"<p id=n>new</p>")
    assert result.created and result.etag == s.etag("/dir/new.html")
    assert s.bytes("dir/new.html") == b"<p id=n>new</p>"
    c = result.change
    assert (c.method, c.selector, c.content, c.body) == ("PUT", "", "<p id=n>new</p>",
                                                          b"<p id=n>new</p>")
    assert c.before is None and ids(c.after) == ["n"]
    assert c.removed == () and [e.tag for e in c.inserted] == ["html"]
    assert c.containers == () and c.size == len(b"<p id=n>new</p>")
    assert s.store.isLoaded(new) and ids(s.store.tree(new)) == ["n"]


@pytest_twisted.ensureDeferred
async def test_putting_over_a_document_reports_both_versions(s: Store) -> None:
    s.store.tree(s.page)
    result = await s.store.putDocument(s.page, b"<p id=n>new</p>")
    assert not result.created
    c = result.change
    assert ids(c.before) == ["a", "b", "l"] and ids(c.after) == ["n"]
    assert [e.tag for e in c.removed] == ["html"] and [e.tag for e in c.inserted] == ["html"]
    assert s.store.isLoaded(s.page)
    assert await s.store.append(s.page, css("#n"), b"<b>+</b>")
    assert s.bytes().endswith(b'<p id="n">new<b>+</b></p></body></html>')


@pytest_twisted.ensureDeferred
async def test_a_document_put_without_being_read_reports_no_earlier_version(
        s: Store) -> None:
    (s.root / "other.html").write_bytes(b"<p id=o>o</p>")
    s.store.tree(s.doc("/other.html"))
    (s.root / "other.html").write_bytes(b"<p id=changed>changed</p>")
    result = await s.store.putDocument(s.doc("/other.html"), b"<p id=n>n</p>")
    assert ids(result.change.before) == ["changed"]


@pytest_twisted.ensureDeferred
async def test_appending_to_a_document_adds_the_body_to_its_bytes(s: Store) -> None:
    result = await s.store.appendDocument(s.page, b"<p id=more>more</p>")
    assert s.bytes() == PAGE + b"<p id=more>more</p>"
    assert not result.created
    c = result.change
    assert (c.method, c.content, c.body, c.size) == (
        "POST", "<p id=more>more</p>", b"<p id=more>more</p>", len(s.bytes()))
    assert ids(c.after) == ["a", "b", "l", "more"]
    assert ids(s.store.tree(s.page)) == ["a", "b", "l", "more"]


@pytest_twisted.ensureDeferred
async def test_appending_to_a_missing_file_creates_it(s: Store) -> None:
    result = await s.store.appendDocument(s.doc("/log/new.txt"), b"line\n")
    assert result.created and s.bytes("log/new.txt") == b"line\n"
    result = await s.store.appendDocument(s.doc("/log/new.txt"), b"two\n")
    assert not result.created and s.bytes("log/new.txt") == b"line\ntwo\n"
    c = result.change
    assert (c.content, c.after, c.size) == ("", None, len(b"line\ntwo\n"))


@pytest_twisted.ensureDeferred
async def test_a_file_that_is_not_html_is_stored_as_sent(s: Store) -> None:
    body = b"\xff\x00 not text"
    result = await s.store.putDocument(s.doc("/blob.bin"), body)
    assert s.bytes("blob.bin") == body and result.created
    assert (result.change.content, result.change.after, result.change.body) == ("", None, body)


@pytest_twisted.ensureDeferred
async def test_an_html_document_that_is_not_utf8_is_refused(s: Store) -> None:
    assert (await refused(s.store.putDocument(s.page, b"<p>\xff</p>"))).code == NOT_UTF8.code
    assert s.bytes() == PAGE


@pytest_twisted.ensureDeferred
async def test_deleting_a_document_removes_it_and_reports_the_last_version(s: Store) -> None:
    s.store.tree(s.page)
    result = await s.store.deleteDocument(s.page)
    assert not (s.root / "page.html").exists()
    assert result.etag is None and not result.created
    c = result.change
    assert (c.method, c.selector, c.content, c.size, c.body) == ("DELETE", "", "", 0, None)
    assert ids(c.before) == ["a", "b", "l"] and c.after is None
    assert [e.tag for e in c.removed] == ["html"] and c.inserted == ()
    assert s.store.treeOrNone(s.page) is None
    assert (await refused(s.store.deleteDocument(s.page))) is NOT_FOUND
    assert len(s.changes) == 1


@pytest_twisted.ensureDeferred
async def test_a_document_under_a_file_cannot_be_created(s: Store) -> None:
    (s.root / "file").write_bytes(b"x")
    for name in ("/file/new.html", "/file/deeper/new.html"):
        assert (await refused(s.store.putDocument(s.doc(name), b"<p>x</p>"))
                ) is PARENT_IS_FILE
    assert (s.root / "file").read_bytes() == b"x" and s.changes == []


@pytest_twisted.ensureDeferred
async def test_a_whole_write_is_checked_with_the_current_tree(s: Store) -> None:
    seen: list[object] = []
    await s.store.putDocument(s.page, PAGE, check=lambda tree: seen.append(ids(tree)))
    await s.store.putDocument(s.doc("/new.html"), b"x", check=seen.append)
    assert seen == [["a", "b", "l"], None]

    def forbid(tree) -> None:
        raise Problem(403, "forbidden", "no")

    assert (await refused(s.store.deleteDocument(s.page, check=forbid))).status == 403
    assert (s.root / "page.html").exists() and len(s.changes) == 2


@pytest_twisted.ensureDeferred
async def test_whole_and_selector_writes_are_applied_in_arrival_order(s: Store) -> None:
    pending = [
        s.store.append(s.page, css("#a"), b"<b>1</b>"),
        s.store.putDocument(s.page, b"<p id=w>w</p>"),
        s.store.append(s.page, css("#w"), b"<b>2</b>"),
        s.store.deleteDocument(s.page),
        s.store.appendDocument(s.page, b"<p id=z>z</p>"),
    ]
    results = await DeferredList(pending, fireOnOneErrback=True)
    assert [c.method for c in s.changes] == ["POST", "PUT", "POST", "DELETE", "POST"]
    assert s.bytes() == b"<p id=z>z</p>"
    assert [r.created for _, r in results] == [False, False, False, False, True]


# Snapshots and draining


@pytest_twisted.ensureDeferred
async def test_a_snapshot_agrees_with_the_writes_before_it(s: Store) -> None:
    first = s.store.append(s.page, css("#a"), b"<b>1</b>")
    snap = s.store.snapshot(s.page)
    s.store.append(s.page, css("#a"), b"<b>2</b>")
    result = await first
    sequence, data, etag = await snap
    assert sequence == result.change.sequence
    assert data is not None and b"<b>1</b>" in data and b"<b>2</b>" not in data
    assert etag == result.etag
    await s.store.drain()
    assert await s.store.snapshot(s.doc("/missing.html")) == (s.store.origin, None, None)


@pytest_twisted.ensureDeferred
async def test_drain_waits_for_every_accepted_write(s: Store) -> None:
    pending = [s.store.append(s.page, css("#l"), f"<li>{i}</li>".encode()) for i in range(3)]
    pending.append(s.store.append(s.page, css("#nothing"), b"x"))
    pending[-1].addErrback(lambda f: None)
    await s.store.drain()
    assert all(d.called for d in pending)
    assert len(s.changes) == 3
    assert isinstance(pending[0].result, WriteResult)


# Costs the store promises: no parse in the reactor thread, no copy per write


@pytest_twisted.ensureDeferred
async def test_a_write_to_a_document_not_yet_read_parses_it_in_a_worker_thread(
        s: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    threads: list[bool] = []
    real = markup.parseLeniently

    def parse(data: bytes):
        threads.append(threading.current_thread() is threading.main_thread())
        return real(data)

    monkeypatch.setattr(markup, "parseLeniently", parse)
    (s.root / "other.html").write_bytes(PAGE)
    await s.store.append(s.page, css("#a"), b"<b>x</b>")
    await s.store.putDocument(s.doc("/other.html"), b"<p>x</p>")
    assert threads == [False, False]


@pytest_twisted.ensureDeferred
async def test_consecutive_writes_edit_the_document_without_copying_it_again(
        s: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    copies: list[object] = []
    real = markup.copyTree

    def copyTree(tree):
        copies.append(tree)
        return real(tree)

    monkeypatch.setattr(markup, "copyTree", copyTree)
    for i in range(4):
        await s.store.append(s.page, css("#l"), f"<li>{i}</li>".encode())
    assert len(copies) == 1
    assert b"<li>1</li><li>0</li><li>1</li><li>2</li><li>3</li>" in s.bytes()


@pytest_twisted.ensureDeferred
async def test_a_store_works_in_the_thread_pool_of_the_reactor_it_is_given(
        tmp_path: Path) -> None:
    from twisted.internet import reactor

    class Reactor:
        pools = 0

        def getThreadPool(self):
            Reactor.pools += 1
            return reactor.getThreadPool()

        def __getattr__(self, name: str):
            return getattr(reactor, name)

    root = tmp_path / "docs"
    root.mkdir()
    (root / "page.html").write_bytes(PAGE)
    store = DocumentStore(str(root), options=StoreOptions(fsync=False), reactor=Reactor())
    await store.append(store.locate("/page.html"), css("#a"), b"<b>x</b>")
    assert Reactor.pools >= 2


def test_a_leftover_name_on_something_other_than_a_file_is_left_alone(s: Store) -> None:
    os.mkfifo(s.root / ".rustybeam-fifo.tmp")
    assert s.store.removeLeftovers() == 0
    assert (s.root / ".rustybeam-fifo.tmp").exists()


# Round trips and parsing contexts of selector writes


@pytest_twisted.ensureDeferred
async def test_a_queued_write_that_a_parser_would_move_is_refused_alone(s: Store) -> None:
    (s.root / "p.html").write_bytes(
        b"<!DOCTYPE html><html><head></head><body><p id=p>x</p><div id=d></div></body></html>")
    doc = s.doc("/p.html")
    await s.store.append(doc, css("#d"), b"<i>0</i>")
    d1 = s.store.append(doc, css("#d"), b"<i>1</i>")
    d2 = s.store.append(doc, css("#p"), b"<div>in p</div>")
    d4 = s.store.append(doc, css("#d"), b"<i>4</i>")
    await d1
    assert (await refused(d2)).code == RESTRUCTURED.code
    await d4
    assert b'<p id="p">x</p><div id="d"><i>0</i><i>1</i><i>4</i></div>' in s.bytes("p.html")
    assert (await refused(s.store.append(doc, css("#p"), b"<div>alone</div>"))).code == (
        RESTRUCTURED.code)
    assert b"alone" not in s.bytes("p.html")


@pytest_twisted.ensureDeferred
async def test_a_row_appended_to_a_table_body_stays_a_row(s: Store) -> None:
    (s.root / "t.html").write_bytes(
        b"<!DOCTYPE html><html><head></head><body><table><tbody id=b><tr><td id=c>1</td>"
        b"</tr></tbody></table></body></html>")
    doc = s.doc("/t.html")
    await s.store.append(doc, css("#b"), b"<tr><td>2</td></tr>")
    await s.store.replace(doc, css("#c"), b"<td id=c>one</td>")
    assert b'<tbody id="b"><tr><td id="c">one</td></tr><tr><td>2</td></tr></tbody>' in (
        s.bytes("t.html"))


@pytest_twisted.ensureDeferred
async def test_removing_the_html_element_is_refused_as_a_parser_would_restore_it(
        s: Store) -> None:
    for _ in range(2):  # as the document's first write, and once it is verified
        assert (await refused(s.store.remove(s.page, css("html")))).code == RESTRUCTURED.code
        await s.store.append(s.page, css("#a"), b"<b>x</b>")
    assert ids(s.store.tree(s.page)) == ["a", "b", "l"]
    assert markup.serializeDocument(s.store.tree(s.page)) == s.bytes()


@pytest_twisted.ensureDeferred
async def test_an_unstorable_body_is_refused_with_lxml_s_reason_on_one_line(
        s: Store) -> None:
    problem = await refused(s.store.append(s.page, css("#a"), b"<b>\x01</b>"))
    assert problem.message.startswith(UNSTORABLE.message + ": All strings must be XML")


@pytest_twisted.ensureDeferred
async def test_a_write_whose_selector_matches_nothing_names_it(s: Store) -> None:
    problem = await refused(s.store.replace(s.page, css("#nothing"), b"x"))
    assert problem.message == NO_MATCH.message + ": #nothing"


@pytest_twisted.ensureDeferred
async def test_writes_queued_behind_a_whole_document_write_check_the_new_document_first(
        s: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    written = countWrites(monkeypatch)
    s.store.tree(s.page)
    pending = [s.store.putDocument(s.page, b"<!DOCTYPE html><p id=n>n</p>")]
    pending += [s.store.append(s.page, css("#n"), f"<b>{i}</b>".encode()) for i in range(3)]
    await DeferredList(pending, fireOnOneErrback=True)
    assert len(written) == 3  # the put; [0] alone on the unverified document; [1, 2]
    assert s.bytes().endswith(b'<p id="n">n<b>0</b><b>1</b><b>2</b></p></body></html>')


@pytest_twisted.ensureDeferred
async def test_writes_queued_behind_a_checked_whole_replacement_form_one_group(
        s: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    await s.store.append(s.page, css("#a"), b"<b>0</b>")
    written = countWrites(monkeypatch)
    pending = [s.store.replace(s.page, css("html"), b"<p id=n>n</p>")]
    pending += [s.store.append(s.page, css("#n"), f"<b>{i}</b>".encode()) for i in range(3)]
    pending.append(s.store.append(s.page, css("#n"), b"<div>moved</div>"))
    results = await DeferredList(pending, consumeErrors=True)
    assert [ok for ok, _ in results] == [True, True, True, True, False]
    assert results[-1][1].value.code == RESTRUCTURED.code
    assert len(written) == 2  # the replacement (checked whole); then one group
    assert s.bytes().endswith(b'<p id="n">n<b>0</b><b>1</b><b>2</b></p></body></html>')


def test_the_temporary_file_of_a_write_is_a_hidden_neighbour_of_the_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    renamed: list[tuple[str, str]] = []
    real = os.replace

    def replace(src: str, dst: str) -> None:
        renamed.append((src, dst))
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    target = tmp_path / "f.html"
    documents.atomicWrite(str(target), b"x", fsync=False)
    ((src, dst),) = renamed
    assert dst == str(target)
    assert os.path.dirname(src) == str(tmp_path)
    name = os.path.basename(src)
    assert name.startswith(documents.TEMP_PREFIX) and name.endswith(documents.TEMP_SUFFIX)


@pytest.mark.parametrize("name", ["a.html", "b.HTML", "c.htm", "d.HtM"])
def test_html_is_served_as_html_whatever_the_platform_s_types_table_says(
        name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(documents.mimetypes, "guess_type", lambda name: (None, None))
    assert documents.contentTypeOf(name) == "text/html; charset=utf-8"


def test_created_directories_are_made_durable_by_default(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = fsyncs(monkeypatch)
    documents.makeDirectories(str(tmp_path / "a" / "b"))
    assert (tmp_path / "a" / "b").is_dir() and calls == ["dir", "dir"]


@pytest_twisted.ensureDeferred
async def test_a_store_without_fsync_flushes_nothing(
        s: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = fsyncs(monkeypatch)
    await s.store.append(s.page, css("#a"), b"<b>x</b>")
    await s.store.putDocument(s.doc("/new/n.html"), b"<p>n</p>")
    await s.store.deleteDocument(s.page)
    assert calls == []


@pytest_twisted.ensureDeferred
async def test_a_document_that_is_gone_leaves_the_cache(tmp_path: Path) -> None:
    s = Store(tmp_path / "docs", cacheSize=2)
    for name in ("x", "y", "z", "w"):
        (s.root / f"{name}.html").write_bytes(PAGE)
    x, y, z, w = (s.doc(f"/{n}.html") for n in "xyzw")
    s.store.tree(y)
    s.store.tree(x)
    await s.store.deleteDocument(x)
    s.store.tree(z)
    assert s.store.isLoaded(y) and s.store.isLoaded(z)
    (s.root / "z.html").unlink()
    with pytest.raises(Problem):
        s.store.tree(z)
    s.store.tree(w)
    assert s.store.isLoaded(y) and s.store.isLoaded(w)


@pytest_twisted.ensureDeferred
async def test_a_file_that_is_not_html_takes_no_place_in_the_cache(tmp_path: Path) -> None:
    s = Store(tmp_path / "docs", cacheSize=2)
    (s.root / "other.html").write_bytes(PAGE)
    s.store.tree(s.page)
    s.store.tree(s.doc("/other.html"))
    await s.store.putDocument(s.doc("/a.txt"), b"text")
    await s.store.appendDocument(s.doc("/a.txt"), b" more")
    assert s.store.isLoaded(s.page) and s.store.isLoaded(s.doc("/other.html"))


@pytest_twisted.ensureDeferred
async def test_a_failed_write_of_a_file_that_is_not_html_is_reported(
        s: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    (s.root / "old.txt").write_bytes(b"old")

    def fail(filename: str, data: bytes, fsync: bool = True) -> os.stat_result:
        raise OSError(errno.ENOSPC, "No space left on device")

    def vanished(filename: str, fsync: bool = True) -> None:
        raise FileNotFoundError(errno.ENOENT, "No such file or directory")

    monkeypatch.setattr(documents, "atomicWrite", fail)
    monkeypatch.setattr(documents, "durableUnlink", vanished)
    for write in (s.store.putDocument(s.doc("/new.txt"), b"x"),
                  s.store.putDocument(s.doc("/new.html"), b"<p>x</p>")):
        assert (await refused(write)).message == WRITE_FAILED.message + ": No space left on device"
    assert (await refused(s.store.deleteDocument(s.doc("/old.txt")))) is NOT_FOUND
    assert s.changes == []


@pytest_twisted.ensureDeferred
async def test_a_finished_write_is_not_kept(s: Store) -> None:
    import gc
    import weakref

    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    d = s.store.append(s.page, css("#a"), b"<b>x</b>")
    await d
    await deferLater(reactor, 0, lambda: None)
    finished = weakref.ref(d)
    del d
    gc.collect()
    assert finished() is None


@pytest_twisted.ensureDeferred
async def test_an_unexpected_error_in_a_group_fails_its_writes_and_not_the_next(
        s: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    await s.store.append(s.page, css("#a"), b"<b>0</b>")
    real = markup.serializeDocument

    def broken(tree):
        raise RuntimeError("serializer bug")

    monkeypatch.setattr(markup, "serializeDocument", broken)
    d1 = s.store.append(s.page, css("#a"), b"<i>1</i>")
    d2 = s.store.append(s.page, css("#b"), b"<i>2</i>")
    results = await DeferredList([d1, d2], consumeErrors=True)
    assert [(ok, type(r.value)) for ok, r in results] == [(False, RuntimeError)] * 2
    monkeypatch.setattr(markup, "serializeDocument", real)
    await s.store.append(s.page, css("#b"), b"<i>3</i>")
    assert b'<div id="b">B<i>3</i></div>' in s.bytes() and b"<i>1</i>" not in s.bytes()


def test_leftovers_among_many_files_are_all_found(s: Store, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.write_bytes(b"x")
    for i in range(12):
        (s.root / f".rustybeam-{i}.tmp").write_bytes(b"x")
        (s.root / f"keep-{i}.tmp").write_bytes(b"x")
        os.symlink(outside, s.root / f".rustybeam-link{i}.tmp")
    assert s.store.removeLeftovers() == 12
    assert not list(s.root.glob(".rustybeam-[0-9]*.tmp"))
    assert len(list(s.root.glob("keep-*.tmp"))) == 12
    assert len(list(s.root.glob(".rustybeam-link*.tmp"))) == 12


@pytest_twisted.ensureDeferred
async def test_draining_consumes_the_errors_of_failed_writes(s: Store) -> None:
    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    d = s.store.append(s.page, css("#nothing"), b"x")
    await s.store.drain()
    await deferLater(reactor, 0, lambda: None)
    seen: list[object] = []
    d.addBoth(seen.append)
    assert seen == [None]


@pytest_twisted.ensureDeferred
async def test_a_document_whose_write_failed_is_read_again_from_disk(
        s: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(filename: str, data: bytes, fsync: bool = True) -> os.stat_result:
        raise OSError(errno.EIO, "Input/output error")

    def vanished(filename: str, fsync: bool = True) -> None:
        raise FileNotFoundError(errno.ENOENT, "No such file or directory")

    monkeypatch.setattr(documents, "atomicWrite", fail)
    monkeypatch.setattr(documents, "durableUnlink", vanished)
    for write in (lambda: s.store.append(s.page, css("#a"), b"<b>x</b>"),
                  lambda: s.store.putDocument(s.page, b"<p>x</p>"),
                  lambda: s.store.deleteDocument(s.page)):
        s.store.tree(s.page)
        assert s.store.isLoaded(s.page)
        await refused(write())
        assert not s.store.isLoaded(s.page)
    assert ids(s.store.tree(s.page)) == ["a", "b", "l"]


@pytest_twisted.ensureDeferred
async def test_a_refused_write_that_cannot_be_undone_keeps_its_error_and_is_forgotten(
        s: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    from rustybeam import versions

    (s.root / "p.html").write_bytes(
        b"<!DOCTYPE html><html><head></head><body><p id=p>x</p><div id=d></div></body></html>")
    doc = s.doc("/p.html")
    await s.store.append(doc, css("#d"), b"<i>0</i>")

    def undo(self, tree) -> None:
        raise RuntimeError("undo bug")

    monkeypatch.setattr(versions.Edit, "undo", undo)
    assert (await refused(s.store.append(doc, css("#p"), b"<div>in p</div>"))).code == (
        RESTRUCTURED.code)
    monkeypatch.undo()
    await s.store.append(doc, css("#d"), b"<i>1</i>")
    assert b"in p" not in s.bytes("p.html")
    assert b'<div id="d"><i>0</i><i>1</i></div>' in s.bytes("p.html")
