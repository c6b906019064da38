"""
The store edits trees in place: every change must still carry its own two versions
of the document (rebuilt on demand), and a failed write must leave nothing changed.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Sequence

import pytest
import pytest_twisted

from rustybeam import markup, selectors
from rustybeam.changes import Change
from rustybeam.documents import DocumentStore, StoreOptions
from rustybeam.errors import Problem

DOCUMENTS = Path(__file__).resolve().parent / "data" / "documents"


class Recorder:
    def __init__(self, root: Path) -> None:
        shutil.copytree(DOCUMENTS, root)
        self.root = root
        self.changes: list[Change] = []
        self.files: list[str] = []
        self.store = DocumentStore(str(root), self.record, StoreOptions(fsync=False))
        self.doc = self.store.locate("/doc.html")

    def record(self, changes: Sequence[Change]) -> None:
        for change in changes:
            self.changes.append(change)
            self.files.append((self.root / "doc.html").read_text(encoding="utf-8"))


@pytest.fixture
def recorder(tmp_path: Path) -> Recorder:
    return Recorder(tmp_path / "docs")


def shape(tree: object) -> str:
    return markup.serializeDocument(tree).decode()  # type: ignore[arg-type]


@pytest_twisted.ensureDeferred
async def test_every_change_keeps_its_own_versions_after_later_writes(recorder: Recorder) -> None:
    s, doc = recorder.store, recorder.doc
    original = (recorder.root / "doc.html").read_text(encoding="utf-8")
    await s.append(doc, selectors.compile("#list"), b'<li id="c">C</li>')
    await s.replace(doc, selectors.compile("#content"), b'<div id="content">New <b>x</b></div>')
    await s.remove(doc, selectors.compile(".note"))
    await s.append(doc, selectors.compile("#c"), b" and more<i>!</i>")
    await s.replace(doc, selectors.compile("li"), b"<li>all</li>")
    await s.remove(doc, selectors.compile("#content b"))
    expected = [markup.serializeDocument(markup.parseDocument(original)).decode(), *recorder.files]
    for i, change in enumerate(recorder.changes):
        assert change.before is not None and change.after is not None
        assert shape(change.before) == expected[i], i
        assert shape(change.after) == expected[i + 1], i
        assert all(e.getroottree().getroot() is change.before.getroot() for e in change.removed)
        assert all(e.getroottree().getroot() is change.after.getroot()
                   for e in (*change.inserted, *change.containers))
    assert [e.get("id") for e in recorder.changes[1].removed] == ["content"]
    assert [e.get("id") for e in recorder.changes[1].inserted] == ["content"]
    assert [e.tag for e in recorder.changes[3].containers] == ["li"]
    assert [markup.serialize(e) for e in recorder.changes[4].inserted][0] == "<li>all</li>"


@pytest_twisted.ensureDeferred
async def test_a_refused_write_leaves_the_next_write_a_clean_tree(recorder: Recorder) -> None:
    s, doc = recorder.store, recorder.doc
    await s.append(doc, selectors.compile("#list"), b'<li id="c">C</li>')
    with pytest.raises(Problem) as e:
        await s.append(doc, selectors.compile("p.note"), b'<p id="moved">nested</p>')
    assert e.value.status == 400
    with pytest.raises(Problem) as e:
        await s.replace(doc, selectors.compile("#r1"), b"<div>b</div>")
    assert e.value.status == 400
    await s.append(doc, selectors.compile("#list"), b'<li id="d">D</li>')
    text = (recorder.root / "doc.html").read_text(encoding="utf-8")
    assert '<li id="c">C</li>' in text and '<li id="d">D</li>' in text
    assert "moved" not in text and "<div>b</div>" not in text and '<tr id="r1">' in text
    assert shape(s.tree(doc)) == text
    assert shape(recorder.changes[-1].after) == text


@pytest_twisted.ensureDeferred
async def test_whole_document_write_carries_the_last_version_before_it(recorder: Recorder) -> None:
    s, doc = recorder.store, recorder.doc
    await s.append(doc, selectors.compile("#list"), b'<li id="c">C</li>')
    before = (recorder.root / "doc.html").read_text(encoding="utf-8")
    await s.putDocument(doc, b"<!DOCTYPE html><p id=new>new</p>")
    await s.append(doc, selectors.compile("body"), b"<p>after</p>")
    whole = recorder.changes[1]
    assert whole.before is not None and shape(whole.before) == before
    assert whole.after is not None and whole.after.getroot().find(".//p").get("id") == "new"
    assert "after" not in shape(whole.after)
    assert whole.removed[0] is whole.before.getroot()
    assert whole.inserted[0] is whole.after.getroot()


@pytest_twisted.ensureDeferred
async def test_a_utf8_document_without_a_charset_keeps_its_characters_through_a_write(
        tmp_path: Path) -> None:
    root = tmp_path / "docs"
    root.mkdir()
    (root / "u.html").write_bytes("<!DOCTYPE html><p id=a>café ✓</p><p id=b>b</p>".encode())
    store = DocumentStore(str(root), None, StoreOptions(fsync=False))
    await store.replace(store.locate("/u.html"), selectors.compile("#b"), b"<p id=b>c</p>")
    text = (root / "u.html").read_text(encoding="utf-8")
    assert "café ✓" in text and "<p id=\"b\">c</p>" in text


# Group commit: writes queued on one document share one file write


@pytest_twisted.ensureDeferred
async def test_queued_writes_share_file_writes_but_keep_their_own_sequence_and_etag(
        recorder: Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    from rustybeam import documents

    writes = []
    real = documents.atomicWrite
    monkeypatch.setattr(documents, "atomicWrite",
                        lambda *a, **k: writes.append(1) or real(*a, **k))
    s, doc = recorder.store, recorder.doc
    o = s.sequence("/doc.html")
    pending = [s.append(doc, selectors.compile("#list"), f'<li id="n{i}">{i}</li>'.encode())
               for i in range(20)]
    results = [await d for d in pending]
    assert [r.change.sequence for r in results] == [o + 1 + i for i in range(20)]
    assert len({r.etag for r in results}) == 20
    assert results[-1].etag == s.info(doc).etag
    assert len(writes) < 20
    assert [c.sequence for c in recorder.changes] == [o + 1 + i for i in range(20)]
    text = (recorder.root / "doc.html").read_text(encoding="utf-8")
    assert text.index('id="n0"') < text.index('id="n19"')
    for i, change in enumerate(recorder.changes):
        assert shape(change.after).count("<li id=\"n") == i + 1


@pytest_twisted.ensureDeferred
async def test_in_a_group_if_match_names_the_version_each_write_applies_to(
        recorder: Recorder) -> None:
    s, doc = recorder.store, recorder.doc
    await s.append(doc, selectors.compile("#list"), b'<li id="c">C</li>')
    etag = s.info(doc).etag
    first = s.append(doc, selectors.compile("#list"), b'<li id="d">D</li>', ifMatch=etag)
    second = s.append(doc, selectors.compile("#list"), b'<li id="e">E</li>', ifMatch=etag)
    third = s.append(doc, selectors.compile("#list"), b'<li id="f">F</li>', ifMatch="*")
    result = await first
    with pytest.raises(Problem) as e:
        await second
    assert e.value.status == 412
    last = await third
    assert result.etag != last.etag and last.etag == s.info(doc).etag
    text = (recorder.root / "doc.html").read_text(encoding="utf-8")
    assert 'id="d"' in text and 'id="e"' not in text and 'id="f"' in text


@pytest_twisted.ensureDeferred
async def test_in_a_group_a_refused_write_is_undone_and_the_others_apply(
        recorder: Recorder) -> None:
    s, doc = recorder.store, recorder.doc
    await s.append(doc, selectors.compile("#list"), b'<li id="c">C</li>')
    seen: list[bool] = []
    good = s.append(doc, selectors.compile("#list"), b'<li id="d">D</li>')
    bad = s.append(doc, selectors.compile("p.note"), b'<p id="nested">x</p>')
    checked = s.append(doc, selectors.compile("#list"), b'<li id="e">E</li>',
                       check=lambda tree: seen.append(tree.getroot().find(".//li[@id='d']") is not None))
    await good
    with pytest.raises(Problem) as e:
        await bad
    assert e.value.status == 400
    await checked
    assert seen == [True]
    text = (recorder.root / "doc.html").read_text(encoding="utf-8")
    assert 'id="d"' in text and 'id="e"' in text and 'id="nested"' not in text
    assert shape(s.tree(doc)) == text


@pytest_twisted.ensureDeferred
async def test_edits_are_kept_only_while_a_change_needs_them(tmp_path: Path) -> None:
    import gc
    import weakref

    shutil.copytree(DOCUMENTS, tmp_path / "docs")
    refs: list[weakref.ref[object]] = []
    store = DocumentStore(str(tmp_path / "docs"),
                          lambda changes: refs.extend(weakref.ref(c.versions.edit) for c in changes),  # type: ignore[union-attr]
                          StoreOptions(fsync=False))
    doc = store.locate("/doc.html")
    for i in range(6):
        await store.append(doc, selectors.compile("#list"), f"<li>{i}</li>".encode())
    gc.collect()
    assert [r() is None for r in refs[:4]] == [True] * 4

