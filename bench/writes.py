#!/usr/bin/env python3
"""
Write benchmark: what one selector write costs next to what it must cost.

    python bench/writes.py            # in-process figures, a few seconds

For documents of about 10 KB, 100 KB and 1 MB (a list of ``<li>`` items) it prints,
in one run, the anchors -- lxml's serialization of the whole document, lxml.html's
and html5lib's parse of it -- and the CPU that the store spends on one selector PUT,
POST and DELETE of one small element (the write computed on the working tree,
checked and serialized; no disk), as a multiple of one serialization.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lxml import html as lxmlhtml  # noqa: E402

from rustybeam import markup, selectors, versions  # noqa: E402
from functools import partial  # noqa: E402

from rustybeam.documents import _applyGroup, _applySelector, _Pending  # noqa: E402

SIZES = {"10 KB": 100, "100 KB": 1000, "1 MB": 10000}


def document(items: int) -> bytes:
    lis = "\n".join(
        f'<li id="i{i}" class="item">Item number {i}, with <b>bold</b> text &amp; a '
        f'<a href="/items/{i}">link</a></li>' for i in range(items))
    return (f'<!DOCTYPE html>\n<html><head><title>list</title></head><body><h1>List</h1>'
            f'<ul id="list">\n{lis}\n</ul></body></html>\n').encode()


def cpu(fn: object, repeat: int, budget: float = 2.0) -> float:
    """Median process CPU seconds of one call of C{fn}."""
    samples = []
    deadline = time.monotonic() + budget
    for _ in range(repeat):
        start = time.process_time()
        fn()  # type: ignore[operator]
        samples.append(time.process_time() - start)
        if time.monotonic() > deadline and len(samples) >= 3:
            break
    samples.sort()
    return samples[len(samples) // 2]


def inProcess(quick: bool) -> None:
    print("| document | lxml serialize | lxml.html parse | html5lib parse | PUT | POST | DELETE |")
    print("|---|---|---|---|---|---|---|")
    for label, items in SIZES.items():
        data = document(items)
        tree = markup.parseDocument(data)
        lineage = versions.Lineage(tree)
        lineage.verified = True
        serialize = cpu(lambda: markup.serializeDocument(tree), 20)
        lxmlParse = cpu(lambda: lxmlhtml.document_fromstring(data), 10)
        html5lib = cpu(lambda: markup.parseDocument(data), 1 if quick or items > 1000 else 3, 10)
        middle = items // 2
        counter = iter(range(10**9))

        def write(method: str, css: str, body: bytes) -> None:
            pending = _Pending(None, None, None,  # type: ignore[arg-type]
                               partial(_applySelector, method, selectors.compile(css), body),
                               None)  # type: ignore[arg-type]
            (p,), tree, data = _applyGroup(lineage, [pending], None)
            assert not isinstance(p, BaseException) and p.edit is not None and tree is not None
            lineage.commit(p.edit, tree)

        def put() -> None:
            n = next(counter)
            write("PUT", f"#i{middle}", f'<li id="i{middle}" class="item">changed {n}</li>'.encode())

        posted: list[int] = []

        def post() -> None:
            n = next(counter)
            posted.append(n)
            write("POST", "#list", f'<li id="n{n}">new {n}</li>'.encode())

        def delete() -> None:
            write("DELETE", f"#n{posted.pop()}", b"")

        put()  # the first write makes the working copy
        costs = [cpu(put, 30), cpu(post, 30), cpu(delete, len(posted))]
        print(f"| {label} ({len(data) // 1024} KB) | {serialize * 1e3:.2f} ms | "
              f"{lxmlParse * 1e3:.2f} ms | {html5lib * 1e3:.0f} ms | "
              + " | ".join(f"{c * 1e3:.2f} ms ({c / serialize:.1f}x)" for c in costs) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="parse with html5lib once")
    args = parser.parse_args()
    inProcess(args.quick)


if __name__ == "__main__":
    main()
