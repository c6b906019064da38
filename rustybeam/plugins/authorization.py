"""
Rusty Beam's C{authorization} plugin: the rules of a host (its C{authfile}), decided
by L{rustybeam.auth.Authorizer} on HTTP and WebSocket alike.
"""

from __future__ import annotations

from rustybeam.auth import Authorizer
from rustybeam.config import HostConfig, PluginConfig
from rustybeam.plugins.basic_auth import loadUsersAndRules, required


def authorizer(plugin: PluginConfig, host: HostConfig) -> Authorizer:
    """Read an C{authorization} item's rules now (rules that can never match are
    left out with a warning)."""
    return Authorizer(loadUsersAndRules(required(plugin, host, "authfile")).rules)
