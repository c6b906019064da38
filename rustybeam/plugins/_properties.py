"""
Reading plugin properties as Rusty Beam's plugins do: a value that does not parse
falls back to the default (Rust's C{parse().unwrap_or(default)}).
"""

from __future__ import annotations

from rustybeam.config import PluginConfig


def text(plugin: PluginConfig, key: str, default: str | None = None) -> str | None:
    value = plugin.get(key)
    return value.strip() if value is not None else default


def flag(plugin: PluginConfig, key: str, default: bool) -> bool:
    value = (plugin.get(key) or "").strip().lower()
    return {"true": True, "false": False}.get(value, default)


def number(plugin: PluginConfig, key: str, default: float) -> float:
    try:
        return float((plugin.get(key) or "").strip())
    except ValueError:
        return default


def integer(plugin: PluginConfig, key: str, default: int | None) -> int | None:
    try:
        return int((plugin.get(key) or "").strip(), 10)
    except ValueError:
        return default


def items(plugin: PluginConfig, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
    """A comma-separated list, each item trimmed."""
    value = plugin.get(key)
    if value is None:
        return default
    return tuple(part.strip() for part in value.split(","))
