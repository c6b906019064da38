"""
Rusty Beam's C{config.html}: a C{ServerConfig} item, C{HostConfig} items and, per
host, an ordered pipeline of C{Plugin} items, all as HTML microdata.

L{loadConfig} turns such a file into frozen values or raises L{ConfigError} naming
the file, the item and the property at fault. Rusty Beam loads plugins from shared
libraries named in C{library}; here each known library name maps to a built-in
component (L{SUPPORTED_PLUGINS}) and anything else is a start-up error.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

from lxml import etree

from rustybeam import microdata
from rustybeam.microdata import Item

SUPPORTED_PLUGINS = frozenset(
    "selector-handler file-handler websocket basic-auth authorization access-log "
    "cors security-headers compression health-check redirect error-handler rate-limit "
    "directory config-reload html-prettifier".split()
)
"""Canonical names of the Rusty Beam plugins that this server implements."""

UNSUPPORTED_PLUGINS = {
    "oauth2": "it signs users in through an external identity provider's redirect flow "
              "(client secrets, sessions, cookies), which rustybeam does not implement; "
              "use basic-auth, or an authenticating proxy in front",
    "google-oauth2": "it signs users in through Google's redirect flow (client secrets, "
                     "sessions, cookies), which rustybeam does not implement; use basic-auth, "
                     "or an authenticating proxy in front",
    "javascript-engine": "it runs server-side JavaScript inside the server process; rustybeam "
                         "embeds no JavaScript engine and will not run code from documents "
                         "that clients can write",
}
"""Rusty Beam plugins that stop start-up, and why."""

PATH_PROPERTIES = frozenset("authfile log_file logfile root_dir rulesfile".split())
"""Plugin properties that name files; they are resolved against the config's base."""

DEFAULT_BIND_ADDRESS = "127.0.0.1"

_LIBRARY_SUFFIX = re.compile(r"\.(so|dylib|dll)$", re.IGNORECASE)
_VERSION_SUFFIX = re.compile(r"-v\d+$")


class ConfigError(Exception):
    """A configuration (or users/rules) file that cannot be used, and why."""


@dataclass(frozen=True)
class PluginConfig:
    """One pipeline stage: canonical component name, the library as written, its settings."""

    name: str
    library: str
    properties: Mapping[str, str] = field(default_factory=dict)
    nested: tuple[PluginConfig, ...] = ()
    """The plugins inside this one (a C{directory} plugin's pipeline)."""

    def get(self, key: str, default: str | None = None) -> str | None:
        return self.properties.get(key, default)


@dataclass(frozen=True)
class HostConfig:
    hostName: str
    hostRoot: str
    plugins: tuple[PluginConfig, ...] = ()

    def plugin(self, name: str) -> PluginConfig | None:
        """The first plugin with canonical name C{name}, if the pipeline has one."""
        return next((p for p in self.plugins if p.name == name), None)


@dataclass(frozen=True)
class ServerConfig:
    bindAddress: str
    bindPort: int
    serverRoot: str
    hosts: tuple[HostConfig, ...]
    metrics: bool = False
    """ServerConfig property C{metrics} (C{true}): serve C{/_rustybeam/metrics}."""
    metricsAuthfile: str | None = None
    """ServerConfig property C{metricsAuthfile}: users allowed to scrape metrics."""

    def host(self, hostHeader: str | None) -> HostConfig | None:
        """
        The host configured for a C{Host} header value (port and case ignored), or
        C{None}: an unknown host is not served (the caller answers 404 unknown-host).
        """
        if not hostHeader:
            return None
        wanted = _hostOnly(hostHeader)
        return next((h for h in self.hosts if h.hostName.lower() == wanted), None)


def loadConfig(path: str, base: str | None = None) -> ServerConfig:
    """
    Read a Rusty Beam C{config.html}.

    @param base: the directory that relative paths in the file (C{serverRoot},
        C{hostRoot}, C{file://./...} plugin paths) are resolved against; by default
        the directory that holds the file.
    """
    source = _read(path)
    base = os.path.abspath(base if base is not None else os.path.dirname(os.path.abspath(path)))
    return parseConfig(source, base, where=path)


def parseConfig(source: str | bytes, base: str, where: str = "<config>") -> ServerConfig:
    """Read configuration text; C{where} names it in errors."""
    tree = _parse(source, where)
    servers = microdata.allItems(tree, "ServerConfig")
    if not servers:
        raise ConfigError(f"{where}: no ServerConfig item (itemtype .../ServerConfig)")
    if len(servers) > 1:
        raise ConfigError(f"{where}: {len(servers)} ServerConfig items; expected exactly one")
    server = servers[0]
    label = f"{where}: ServerConfig"
    port = _port(server.text("bindPort"), label)
    hosts = tuple(
        _host(item, index, base, where)
        for index, item in enumerate(_hostItems(tree), start=1)
    )
    if not hosts:
        raise ConfigError(f"{where}: no HostConfig items (property 'hostName'); nothing to serve")
    _noDuplicates(hosts, where)
    return ServerConfig(
        bindAddress=server.text("bindAddress") or DEFAULT_BIND_ADDRESS,
        bindPort=port,
        serverRoot=resolvePath(server.text("serverRoot") or ".", base),
        hosts=hosts,
        metrics=(server.text("metrics") or "").strip().lower() == "true",
        metricsAuthfile=(resolvePath(server.text("metricsAuthfile") or "", base)
                         if server.text("metricsAuthfile") else None),
    )


def pluginName(library: str) -> str:
    """
    The canonical component name for a Rusty Beam library reference:
    C{file://./plugins/librusty_beam_basic_auth.so}, C{basic-auth.so} and
    C{file-handler-v2.so} become C{basic-auth}, C{basic-auth}, C{file-handler}.
    """
    name = library.strip()
    if "://" in name:
        name = name.split("://", 1)[1]
    name = name.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    name = _LIBRARY_SUFFIX.sub("", name).lower().replace("_", "-")
    if name.startswith("lib"):
        name = name[3:]
    if name.startswith("rusty-beam-"):
        name = name[len("rusty-beam-"):]
    return _VERSION_SUFFIX.sub("", name)


def resolvePath(value: str, base: str) -> str:
    """A file path or C{file://} URL from the config as an absolute path under C{base}."""
    value = value.strip()
    if value.startswith("file://"):
        value = value[len("file://"):]
    return os.path.normpath(os.path.join(base, os.path.expanduser(value)))


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ConfigError(f"{path}: cannot be read: {e.strerror or e}") from None


def _parse(source: str | bytes, where: str) -> etree._ElementTree:
    if isinstance(source, bytes):
        try:
            source = source.decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigError(f"{where}: not an HTML file (not valid UTF-8)") from None
    if "\x00" in source or "<" not in source:
        raise ConfigError(f"{where}: not an HTML file")
    try:
        return microdata.parse(source)
    except Exception as e:
        raise ConfigError(f"{where}: not an HTML file ({e})") from None


def _port(value: str | None, label: str) -> int:
    if value is None or not value.strip():
        raise ConfigError(f"{label}: missing property 'bindPort'")
    try:
        port = int(value.strip(), 10)
    except ValueError:
        raise ConfigError(f"{label}: property 'bindPort' is not a port number: {value!r}") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"{label}: property 'bindPort' out of range 0-65535: {port}")
    return port


def _hostItems(tree: etree._ElementTree) -> list[Item]:
    """
    Every C{HostConfig} in the document, whether linked to the C{ServerConfig} by
    C{itemprop="host"}/C{itemref} or top-level, in document order. A C{HostConfig}
    that has no C{hostName} of its own but nested C{host} items is a wrapper (as in
    Rusty Beam's C{test-auth-config.html}) and stands for those items.
    """
    return [i for i in microdata.allItems(tree, "HostConfig") if not _isHostWrapper(i)]


def _isHostWrapper(item: Item) -> bool:
    return item.text("hostName") is None and bool(item.items("host"))


def _host(item: Item, index: int, base: str, where: str) -> HostConfig:
    name = (item.text("hostName") or "").strip()
    label = f"{where}: HostConfig #{index}" + (f" ({name})" if name else "")
    if not name:
        raise ConfigError(f"{label}: missing property 'hostName'")
    root = item.text("hostRoot")
    if not root:
        raise ConfigError(f"{label}: missing property 'hostRoot'")
    plugins = tuple(
        _plugin(p, n, base, label) for n, p in enumerate(_pluginItems(item), start=1)
    )
    return HostConfig(hostName=name, hostRoot=resolvePath(root, base), plugins=plugins)


def _pluginItems(host: Item) -> list[Item]:
    """
    The host's pipeline in order. A C{plugin} item without a C{library} that holds
    C{plugin} items of its own (Rusty Beam's C{<ol itemprop="plugin" itemscope>}
    around C{<li itemprop="plugin" itemscope>} stages) is a group: it is replaced by
    its stages.
    """
    flat: list[Item] = []

    def add(item: Item) -> None:
        if item.text("library") is None and item.items("plugin"):
            for inner in item.items("plugin"):
                add(inner)
        else:
            flat.append(item)

    for plugin in host.items("plugin"):
        add(plugin)
    return flat


def _plugin(item: Item, index: int, base: str, hostLabel: str) -> PluginConfig:
    library = (item.text("library") or "").strip()
    label = f"{hostLabel}: Plugin #{index}"
    if not library:
        raise ConfigError(f"{label}: missing property 'library'")
    name = pluginName(library)
    if name in UNSUPPORTED_PLUGINS:
        raise ConfigError(f"{label}: plugin {name!r} is not supported: {UNSUPPORTED_PLUGINS[name]}")
    if name not in SUPPORTED_PLUGINS:
        raise ConfigError(
            f"{label}: property 'library': unknown plugin {library!r} ({name!r}); "
            f"supported: {', '.join(sorted(SUPPORTED_PLUGINS))}"
        )
    properties: dict[str, str] = {}
    for key in item.properties:
        value = item.text(key)
        if key in ("library", "plugin", "nested_plugins") or value is None:
            continue
        properties[key] = resolvePath(value, base) if key in PATH_PROPERTIES else value
    inner = _pluginItems(item)
    for wrapper in item.items("nested_plugins"):
        inner += [wrapper] if wrapper.text("library") is not None else _pluginItems(wrapper)
    nested = tuple(_plugin(p, n, base, label) for n, p in enumerate(inner, start=1))
    return PluginConfig(name=name, library=library, properties=MappingProxyType(properties),
                        nested=nested)


def _noDuplicates(hosts: tuple[HostConfig, ...], where: str) -> None:
    seen: set[str] = set()
    for index, host in enumerate(hosts, start=1):
        key = host.hostName.lower()
        if key in seen:
            raise ConfigError(
                f"{where}: HostConfig #{index} ({host.hostName}): property 'hostName' "
                f"duplicates an earlier host"
            )
        seen.add(key)


def _hostOnly(hostHeader: str) -> str:
    host = hostHeader.strip().lower()
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    return host.split(":", 1)[0].rstrip(".")
