from __future__ import annotations


from rustybeam import microdata
from rustybeam.microdata import Item, typeName

from conftest import FIXTURES


def read(html: str) -> list[Item]:
    return microdata.items(microdata.parse(html))


def test_top_level_items_exclude_itemprop_items() -> None:
    found = read(
        '<div itemscope itemtype="http://x/A"><p itemprop="b" itemscope itemtype="http://x/B"></p></div>'
        '<div itemscope itemtype="http://x/C"></div>'
    )
    assert [typeName(i) for i in found] == ["A", "C"]


def test_items_filtered_by_type_name_or_full_type() -> None:
    html = (
        '<div itemscope itemtype="https://rustybeam.net/schema/Credential"></div>'
        '<div itemscope itemtype="http://rustybeam.net/Credential"></div>'
        '<div itemscope itemtype="http://rustybeam.net/Other"></div>'
    )
    tree = microdata.parse(html)
    assert len(microdata.items(tree, "Credential")) == 2
    assert len(microdata.items(tree, "http://rustybeam.net/Credential")) == 2
    assert len(microdata.items(tree, "https://rustybeam.net/schema/Other")) == 1


def test_type_name_is_last_path_segment() -> None:
    assert typeName("https://rustybeam.net/schema/HostConfig") == "HostConfig"
    assert typeName("http://rustybeam.net/HostConfig/") == "HostConfig"
    assert typeName(None) is None


def test_text_value_is_stripped_text_content() -> None:
    [item] = read('<div itemscope><span itemprop="name">\n  Ada <b>L</b>  \n</span></div>')
    assert item.text("name") == "Ada L"


def test_attribute_values_by_element() -> None:
    [item] = read(
        '<div itemscope>'
        '<meta itemprop="m" content="meta-content">'
        '<a itemprop="link" href="/a">text</a>'
        '<img itemprop="image" src="/i.png">'
        '<time itemprop="when" datetime="2024-01-01">New year</time>'
        '<data itemprop="count" value="7">seven</data>'
        '<meter itemprop="level" value="0.5">half</meter>'
        '<span itemprop="over" content="override">shown</span>'
        '</div>'
    )
    assert item.text("m") == "meta-content"
    assert item.text("link") == "/a"
    assert item.text("image") == "/i.png"
    assert item.text("when") == "2024-01-01"
    assert item.text("count") == "7"
    assert item.text("level") == "0.5"
    assert item.text("over") == "override"


def test_time_without_datetime_uses_text() -> None:
    [item] = read('<div itemscope><time itemprop="when">tomorrow</time></div>')
    assert item.text("when") == "tomorrow"


def test_multiple_names_in_one_itemprop() -> None:
    [item] = read('<div itemscope><span itemprop="a b">v</span></div>')
    assert item.text("a") == "v" and item.text("b") == "v"


def test_repeated_properties_in_document_order() -> None:
    [item] = read(
        '<div itemscope><ul><li itemprop="x">1</li><li itemprop="x">2</li></ul>'
        '<p itemprop="x">3</p></div>'
    )
    assert item.all("x") == ("1", "2", "3")
    assert item.first("x") == "1"


def test_nested_item_owns_its_descendants() -> None:
    [outer] = read(
        '<div itemscope><span itemprop="name">outer</span>'
        '<div itemprop="child" itemscope><span itemprop="name">inner</span></div></div>'
    )
    assert outer.all("name") == ("outer",)
    [inner] = outer.items("child")
    assert inner.text("name") == "inner"


def test_itemref_adds_referenced_subtree() -> None:
    [item] = read(
        '<div itemscope itemref="extra"><span itemprop="a">1</span></div>'
        '<p id="extra"><span itemprop="b">2</span></p>'
    )
    assert item.text("a") == "1" and item.text("b") == "2"


def test_itemref_to_itemprop_item_links_nested_item() -> None:
    [server] = read(
        '<table itemscope itemtype="x/S" itemref="h"><tr><td itemprop="p">1</td></tr></table>'
        '<table id="h" itemprop="host" itemscope itemtype="x/H"><tr><td itemprop="n">h</td></tr></table>'
    )
    [host] = server.items("host")
    assert host.text("n") == "h"


def test_itemref_cycle_terminates() -> None:
    [item] = read('<div id="a" itemscope itemref="a"><span itemprop="x">1</span></div>')
    assert item.all("x") == ("1",)


def test_missing_property_is_none_or_empty() -> None:
    [item] = read("<div itemscope></div>")
    assert item.first("x") is None and item.text("x") is None and item.all("x") == ()


def test_texts_splits_list_items() -> None:
    [item] = read('<div itemscope><div itemprop="roles"><ul><li>admin<li>user</li></ul></div></div>')
    assert item.texts("roles") == ("admin", "user")


def test_texts_splits_commas_and_whitespace() -> None:
    [item] = read('<div itemscope><span itemprop="roles">admin, user editor</span></div>')
    assert item.texts("roles") == ("admin", "user", "editor")


def test_texts_of_repeated_properties() -> None:
    [item] = read('<div itemscope><i itemprop="role">a</i><i itemprop="role">b</i></div>')
    assert item.texts("role") == ("a", "b")


def test_all_items_includes_nested() -> None:
    tree = microdata.parse(
        '<div itemscope itemtype="x/A"><p itemprop="b" itemscope itemtype="x/B"></p></div>'
    )
    assert [typeName(i) for i in microdata.allItems(tree)] == ["A", "B"]
    assert [typeName(i) for i in microdata.allItems(tree, "B")] == ["B"]


def test_property_keeps_its_element() -> None:
    [item] = read('<div itemscope><span id="here" itemprop="x">1</span></div>')
    [prop] = item.properties["x"]
    assert prop.element.get("id") == "here"
    assert prop.line is None or isinstance(prop.line, int)


def test_multi_host_fixture_plugin_wrapper_holds_inner_plugins() -> None:
    tree = microdata.parse((FIXTURES / "config/test-config-multi-host.html").read_text())
    hosts = microdata.items(tree, "HostConfig")
    assert [h.text("hostName") for h in hosts] == ["localhost", "example.com"]
    [wrapper] = hosts[0].items("plugin")
    assert wrapper.text("library") is None
    assert [p.text("library") for p in wrapper.items("plugin")] == [
        "file://./plugins/selector-handler.so",
        "file://./plugins/file-handler-v2.so",
    ]


def test_bcrypt_fixture_roles_from_unclosed_list_items() -> None:
    tree = microdata.parse((FIXTURES / "auth/users_bcrypt.html").read_text())
    admin = microdata.items(tree, "Credential")[0]
    assert admin.texts("roles") == ("admin", "user")
