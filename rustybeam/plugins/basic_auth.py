"""
Rusty Beam's C{basic-auth} plugin: who may log in to a host.

Its properties are C{authfile} (the users file, required), C{realm} (Rusty Beam's
default C{Restricted Area}) and rustybeam's own C{allow_anonymous} (default off:
every request without valid credentials but OPTIONS gets 401, as in Rusty Beam). The
checking itself is L{rustybeam.guard.AuthGuard}'s; users files are read by
L{rustybeam.auth}.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from twisted.logger import Logger

from rustybeam.auth import AuthFile, Credential, loadAuthFile
from rustybeam.config import ConfigError, HostConfig, PluginConfig
from rustybeam.guard import GuardOptions

ALLOW_ANONYMOUS = "allow_anonymous"
"""rustybeam's property: let requests without credentials reach the rules."""

log = Logger()


@dataclass(frozen=True)
class BasicAuth:
    """What a C{basic-auth} plugin item asks for."""

    users: Mapping[str, Credential]
    realm: str = GuardOptions.realm
    allowAnonymous: bool = False


def basicAuth(plugin: PluginConfig, host: HostConfig) -> BasicAuth:
    """Read a C{basic-auth} item: its users file now, and its settings."""
    users = loadUsersAndRules(required(plugin, host, "authfile")).users
    return BasicAuth(users, plugin.get("realm") or GuardOptions.realm,
                     _flag(plugin, host, ALLOW_ANONYMOUS))


def loadUsersAndRules(path: str) -> AuthFile:
    """A users/rules file, with a warning in the log for each rule left out."""
    loaded = loadAuthFile(path)
    for reason in loaded.skipped:
        log.warn("{reason}", reason=reason)
    return loaded


def required(plugin: PluginConfig, host: HostConfig, prop: str) -> str:
    value = plugin.get(prop)
    if not value:
        raise ConfigError(f"HostConfig ({host.hostName}): plugin {plugin.name}: missing property {prop!r}")
    return value


def _flag(plugin: PluginConfig, host: HostConfig, prop: str) -> bool:
    """A boolean property: absent or empty is off, anything but a yes or a no is an
    error (a typo must not silently open a host)."""
    value = plugin.get(prop)
    if value is None or not value.strip():
        return False
    word = value.strip().lower()
    if word in ("true", "yes", "on", "1"):
        return True
    if word in ("false", "no", "off", "0"):
        return False
    raise ConfigError(f"HostConfig ({host.hostName}): plugin {plugin.name}: property {prop!r} "
                      f"must be true or false, not {value!r}")
