"""
The StreamItem text and its compact (zlib) form, without a network: the seed's
format byte for byte, escaping of every property, and the bounded decompression
that client commands in binary frames go through.
"""

from __future__ import annotations

import tracemalloc
import zlib

import pytest

from conftest import parseItem
from rustybeam import streamitem
from rustybeam.changes import Change


def change(**fields: object) -> Change:
    values: dict[str, object] = dict(method="PUT", url="/d.html", selector="#a", sequence=7,
                                     content='<li id="a">A</li>')
    values.update(fields)
    return Change(**values)  # type: ignore[arg-type]


def test_render_is_the_seed_format() -> None:
    assert streamitem.render(change()) == (
        '<div itemscope itemtype="http://rustybeam.net/StreamItem">\n'
        '    <span itemprop="method">PUT</span>\n'
        '    <span itemprop="url">/d.html</span>\n'
        '    <span itemprop="selector">#a</span>\n'
        '    <div itemprop="content">\n'
        '        <li id="a">A</li>\n'
        '    </div>\n'
        '</div>'
    )


def test_sequenced_item_carries_the_sequence_before_the_content() -> None:
    text = streamitem.render(change(), sequenced=True)
    assert ('    <span itemprop="selector">#a</span>\n'
            '    <span itemprop="sequence">7</span>\n'
            '    <div itemprop="content">\n') in text
    assert parseItem(text).sequence == 7
    assert "sequence" not in streamitem.render(change())


def test_given_content_replaces_the_change_s_own() -> None:
    text = streamitem.render(change(), "<p>visible part</p>")
    assert "        <p>visible part</p>\n" in text
    assert 'id="a"' not in text
    assert streamitem.render(change(), None) == streamitem.render(change())


def test_url_method_and_selector_are_html_escaped() -> None:
    odd = change(method="P<T", url='/a<b&c"d.html', selector="li[title='<&>\"']")
    text = streamitem.render(odd)
    assert '<span itemprop="url">/a&lt;b&amp;c&quot;d.html</span>' in text
    assert '<span itemprop="method">P&lt;T</span>' in text
    assert '<span itemprop="selector">li[title=&#x27;&lt;&amp;&gt;&quot;&#x27;]</span>' in text
    item = parseItem(text)
    assert (item.method, item.url, item.selector) == (odd.method, odd.url, odd.selector)


def test_compact_form_is_zlib_of_the_text() -> None:
    payload = streamitem.render(change()).encode("utf-8")
    packed = streamitem.compress(payload)
    assert zlib.decompress(packed) == payload
    assert packed[:2] == b"\x78\x9c"  # RFC 1950 header of the default compression level


def test_decompress_round_trips_up_to_the_limit() -> None:
    data = b"x" * 1000
    assert streamitem.decompress(zlib.compress(data), 1000) == data


def test_decompress_refuses_output_over_the_limit() -> None:
    with pytest.raises(ValueError) as e:
        streamitem.decompress(zlib.compress(b"x" * 1001), 1000)
    assert str(e.value) == "decompressed message exceeds the size limit"


def test_decompress_never_inflates_a_bomb_past_the_limit() -> None:
    """A small message that inflates to fifty megabytes costs no more memory than
    the limit: decompression stops there."""
    bomb = zlib.compress(bytes(50 * 1024 * 1024), 9)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError):
            streamitem.decompress(bomb, 64 * 1024)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1024 * 1024


def test_decompress_refuses_invalid_data() -> None:
    with pytest.raises(ValueError) as e:
        streamitem.decompress(b"not zlib at all", 1000)
    assert str(e.value).startswith("invalid zlib data: ")


def test_decompress_refuses_truncated_data() -> None:
    packed = zlib.compress(b"hello world" * 10)
    with pytest.raises(ValueError) as e:
        streamitem.decompress(packed[:-4], 1000)
    assert str(e.value) == "truncated or invalid zlib data"
