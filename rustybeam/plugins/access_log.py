"""
Rusty Beam's C{access-log} plugin: the host's access log (C{log_file}, default
stdout; C{format} C{common}, C{combined} or C{json}), written by
L{rustybeam.accesslog.AccessLog}.
"""

from __future__ import annotations

from rustybeam.accesslog import AccessLog, AccessLogOptions
from rustybeam.config import ConfigError, HostConfig, PluginConfig


def accessLog(plugin: PluginConfig, host: HostConfig) -> AccessLog:
    try:
        return AccessLog(AccessLogOptions.fromProperties(plugin.properties))
    except OSError as e:
        raise ConfigError(f"HostConfig ({host.hostName}): access-log: property 'log_file': {e}") from None
