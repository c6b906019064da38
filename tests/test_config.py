from __future__ import annotations

import os
from pathlib import Path

import pytest

from rustybeam.config import (
    ConfigError,
    HostConfig,
    PluginConfig,
    ServerConfig,
    loadConfig,
    pluginName,
    resolvePath,
)

from conftest import FIXTURES as SHARED_FIXTURES  # noqa: E402

FIXTURES = SHARED_FIXTURES / "config"

SERVER = """
<table itemscope itemtype="https://rustybeam.net/schema/ServerConfig">
  <tr><td itemprop="serverRoot">srv</td></tr>
  <tr><td itemprop="bindAddress">0.0.0.0</td></tr>
  {port}
</table>
"""

HOST = """
<table itemscope itemtype="https://rustybeam.net/schema/HostConfig">
  {name}{root}
  <tr><td itemprop="plugin" itemscope itemtype="https://rustybeam.net/schema/Plugin">
    <span itemprop="library">{library}</span>
    <span itemprop="authfile">file://./auth/users.html</span>
  </td></tr>
</table>
"""


def writeConfig(
    tmp_path: Path,
    port: str = '<tr><td itemprop="bindPort">3000</td></tr>',
    hosts: tuple[tuple[str | None, str | None, str], ...] = (("localhost", "root", "librusty_beam_websocket.so"),),
    server: bool = True,
) -> str:
    parts = [SERVER.format(port=port)] if server else []
    for name, root, library in hosts:
        parts.append(
            HOST.format(
                name=f'<tr><td itemprop="hostName">{name}</td></tr>' if name is not None else "",
                root=f'<tr><td itemprop="hostRoot">{root}</td></tr>' if root is not None else "",
                library=library,
            )
        )
    path = tmp_path / "config.html"
    path.write_text("<!DOCTYPE html><html><body>" + "".join(parts) + "</body></html>")
    return str(path)


@pytest.mark.parametrize("fixture", sorted(p.name for p in FIXTURES.glob("*.html")))
def test_every_fixture_loads(fixture: str, tmp_path: Path) -> None:
    config = loadConfig(str(FIXTURES / fixture), base=str(tmp_path))
    assert config.bindPort == 3000
    assert config.hosts
    for host in config.hosts:
        assert host.hostRoot.startswith(str(tmp_path))
        assert host.plugins


def test_itemref_linked_host_and_pipeline(tmp_path: Path) -> None:
    config = loadConfig(str(FIXTURES / "authorization-config.html"), base=str(tmp_path))
    [host] = config.hosts
    assert host.hostName == "localhost"
    assert host.hostRoot == str(tmp_path / "tests/plugins/hosts/authorization")
    assert [p.name for p in host.plugins] == [
        "basic-auth", "authorization", "selector-handler", "file-handler",
    ]
    basic = host.plugin("basic-auth")
    assert basic is not None
    assert basic.get("realm") == "Rusty Beam"
    assert basic.get("authfile") == str(tmp_path / "tests/plugins/hosts/authorization/users.html")
    assert basic.library == "file://./plugins/librusty_beam_basic_auth.so"


def test_server_values(tmp_path: Path) -> None:
    config = loadConfig(str(FIXTURES / "websocket-config.html"), base=str(tmp_path))
    assert config == ServerConfig(
        bindAddress="127.0.0.1",
        bindPort=3000,
        serverRoot=str(tmp_path / "tests/plugins/hosts/websocket"),
        hosts=(
            HostConfig(
                hostName="localhost",
                hostRoot=str(tmp_path / "tests/plugins/hosts/websocket"),
                plugins=(
                    PluginConfig("websocket", "file://./plugins/librusty_beam_websocket.so", {}),
                    PluginConfig("selector-handler", "file://./plugins/librusty_beam_selector_handler.so", {}),
                    PluginConfig("file-handler", "file://./plugins/librusty_beam_file_handler.so", {}),
                ),
            ),
        ),
    )


def test_top_level_hosts_with_plugin_group(tmp_path: Path) -> None:
    config = loadConfig(str(FIXTURES / "test-config-multi-host.html"), base=str(tmp_path))
    assert [h.hostName for h in config.hosts] == ["localhost", "example.com"]
    example = config.hosts[1]
    assert [p.name for p in example.plugins] == ["selector-handler", "file-handler"]
    assert example.plugins[0].get("root_dir") == str(tmp_path / "tests/files/example-com")


def test_host_wrapper_item_stands_for_nested_host(tmp_path: Path) -> None:
    config = loadConfig(str(FIXTURES / "test-auth-config.html"), base=str(tmp_path))
    [host] = config.hosts
    assert host.hostName == "localhost"
    assert [p.name for p in host.plugins] == [
        "basic-auth", "authorization", "selector-handler", "file-handler",
    ]


def test_base_defaults_to_config_directory(tmp_path: Path) -> None:
    config = loadConfig(writeConfig(tmp_path))
    assert config.serverRoot == str(tmp_path / "srv")
    assert config.hosts[0].hostRoot == str(tmp_path / "root")
    assert config.hosts[0].plugins[0].get("authfile") == str(tmp_path / "auth/users.html")


def test_absolute_paths_stay_absolute(tmp_path: Path) -> None:
    assert resolvePath("/var/www", str(tmp_path)) == "/var/www"
    assert resolvePath("file:///etc/users.html", str(tmp_path)) == "/etc/users.html"
    assert resolvePath("file://./a/../b.html", str(tmp_path)) == str(tmp_path / "b.html")


@pytest.mark.parametrize(
    "library, name",
    [
        ("file://./plugins/librusty_beam_selector_handler.so", "selector-handler"),
        ("file://./plugins/selector-handler.so", "selector-handler"),
        ("file://./plugins/file-handler-v2.so", "file-handler"),
        ("librusty_beam_websocket.dylib", "websocket"),
        ("C:\\plugins\\rusty_beam_basic_auth.dll", "basic-auth"),
        ("libbasic_auth.so", "basic-auth"),
        ("file://./plugins/librusty_beam_authorization.so", "authorization"),
        ("file://./plugins/librusty_beam_access_log.so", "access-log"),
        ("websocket", "websocket"),
    ],
)
def test_plugin_name_normalisation(library: str, name: str) -> None:
    assert pluginName(library) == name


def test_host_lookup_ignores_port_and_case(tmp_path: Path) -> None:
    config = loadConfig(str(FIXTURES / "test-config-multi-host.html"), base=str(tmp_path))
    found = config.host("Example.COM:3000")
    assert found is not None and found.hostName == "example.com"


def test_unknown_host_is_none(tmp_path: Path) -> None:
    config = loadConfig(str(FIXTURES / "test-config-multi-host.html"), base=str(tmp_path))
    assert config.host("evil.example") is None
    assert config.host(None) is None


def test_default_bind_address(tmp_path: Path) -> None:
    path = writeConfig(tmp_path)
    Path(path).write_text(Path(path).read_text().replace('<tr><td itemprop="bindAddress">0.0.0.0</td></tr>', ""))
    assert loadConfig(path).bindAddress == "127.0.0.1"


def errorOf(path: str) -> str:
    with pytest.raises(ConfigError) as caught:
        loadConfig(path)
    return str(caught.value)


def test_error_missing_server_config(tmp_path: Path) -> None:
    path = writeConfig(tmp_path, server=False)
    message = errorOf(path)
    assert path in message and "ServerConfig" in message


def test_error_two_server_configs(tmp_path: Path) -> None:
    path = writeConfig(tmp_path)
    text = Path(path).read_text()
    Path(path).write_text(text.replace("<body>", "<body>" + SERVER.format(port="")))
    assert "2 ServerConfig items" in errorOf(path)


def test_error_missing_bind_port(tmp_path: Path) -> None:
    path = writeConfig(tmp_path, port="")
    message = errorOf(path)
    assert path in message and "ServerConfig" in message and "'bindPort'" in message


@pytest.mark.parametrize("value", ["http", "-1", "70000", "30.5"])
def test_error_invalid_bind_port(value: str, tmp_path: Path) -> None:
    path = writeConfig(tmp_path, port=f'<tr><td itemprop="bindPort">{value}</td></tr>')
    message = errorOf(path)
    assert path in message and "ServerConfig" in message and "'bindPort'" in message


def test_error_no_hosts(tmp_path: Path) -> None:
    path = writeConfig(tmp_path, hosts=())
    message = errorOf(path)
    assert path in message and "no HostConfig" in message


def test_error_missing_host_name(tmp_path: Path) -> None:
    path = writeConfig(tmp_path, hosts=(("a.example", "a", "websocket.so"), (None, "b", "websocket.so")))
    message = errorOf(path)
    assert path in message and "HostConfig #2" in message and "'hostName'" in message


def test_error_missing_host_root(tmp_path: Path) -> None:
    path = writeConfig(tmp_path, hosts=(("a.example", "a", "websocket.so"), ("example.com", None, "websocket.so")))
    message = errorOf(path)
    assert "HostConfig #2 (example.com)" in message and "'hostRoot'" in message and path in message


def test_error_unknown_plugin_library(tmp_path: Path) -> None:
    path = writeConfig(tmp_path, hosts=(("example.com", "r", "file://./plugins/librusty_beam_frobnicator.so"),))
    message = errorOf(path)
    assert path in message
    assert "HostConfig #1 (example.com): Plugin #1" in message
    assert "'library'" in message and "unknown plugin" in message and "frobnicator" in message


@pytest.mark.parametrize("name", ["oauth2", "google-oauth2", "javascript-engine"])
def test_error_unsupported_plugin_says_why(tmp_path: Path, name: str) -> None:
    library = f"file://./plugins/librusty_beam_{name.replace('-', '_')}.so"
    message = errorOf(writeConfig(tmp_path, hosts=(("example.com", "r", library),)))
    assert f"plugin {name!r} is not supported: " in message and "rustybeam" in message


def test_error_missing_plugin_library(tmp_path: Path) -> None:
    path = writeConfig(tmp_path, hosts=(("example.com", "r", ""),))
    message = errorOf(path)
    assert "HostConfig #1 (example.com): Plugin #1" in message and "'library'" in message


def test_error_duplicate_host_name(tmp_path: Path) -> None:
    path = writeConfig(tmp_path, hosts=(("a.example", "a", "websocket.so"), ("A.example", "b", "websocket.so")))
    message = errorOf(path)
    assert "HostConfig #2 (A.example)" in message and "'hostName'" in message


def test_error_unreadable_file(tmp_path: Path) -> None:
    path = str(tmp_path / "missing.html")
    message = errorOf(path)
    assert path in message and "cannot be read" in message


def test_error_not_html(tmp_path: Path) -> None:
    path = tmp_path / "config.html"
    path.write_bytes(b"\xff\xfe\x00binary")
    message = errorOf(str(path))
    assert str(path) in message and "not an HTML file" in message


def test_error_plain_text_is_not_html(tmp_path: Path) -> None:
    path = tmp_path / "config.html"
    path.write_text("bindPort = 3000\n")
    assert "not an HTML file" in errorOf(str(path))


def test_error_directory_is_unreadable(tmp_path: Path) -> None:
    assert "cannot be read" in errorOf(str(tmp_path))


def test_relative_base_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = loadConfig(writeConfig(tmp_path), base="sub")
    assert config.serverRoot == os.path.join(str(tmp_path), "sub", "srv")
