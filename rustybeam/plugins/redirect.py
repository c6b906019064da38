"""
Rusty Beam's C{redirect} plugin: regular-expression redirects.

Rules come from the plugin's properties (C{redirect_rule_N_pattern},
C{_replacement}, C{_status}, C{_condition}, N from 1, as its documentation gives
them) and from a C{rulesfile} of C{RedirectRule} items (C{from}, C{to}, C{status},
C{conditions}, and C{on}: response statuses that trigger the rule), as its source
reads them; like Rusty Beam, which reads that file for every request, a changed
file takes effect at once (it is read again when its size or time changes), and a
missing one means no rules from it (logged). The first rule whose pattern matches the decoded path answers with its
status (C{default_status_code}, else 302) and C{Location}: the path with the first
match replaced (C{$1} and C{${name}} name groups). A rule with C{on} statuses
instead replaces a response of one of those statuses. Conditions C{https_only} and
C{http_only} look at the scheme (C{X-Forwarded-Proto}, else the connection).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import quote

from twisted.logger import Logger
from twisted.web.server import Request

from rustybeam import microdata
from rustybeam.config import ConfigError, PluginConfig
from rustybeam.plugins import PipelineContext, Reply, Response, Stage, requestPath
from rustybeam.plugins._properties import integer, items
from rustybeam.plugins.security_headers import isHTTPS

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_RULE = re.compile(r"^redirect_rule_(\d+)_pattern$")
_GROUP = re.compile(r"\$(\d+|\{\w+\})")
_LOCATION_SAFE = "/:?#[]@!$&'()*+,;=%~"


@dataclass(frozen=True)
class RedirectRule:
    pattern: re.Pattern[str]
    replacement: str
    status: int = 302
    conditions: tuple[str, ...] = ()
    on: frozenset[int] = frozenset()

    def location(self, path: str) -> str:
        return quote(self.pattern.sub(self.replacement, path, count=1), safe=_LOCATION_SAFE)

    def applies(self, request: Request) -> bool:
        https = isHTTPS(request)
        return not (("https_only" in self.conditions and not https)
                    or ("http_only" in self.conditions and https))


def _status(value: int | None, default: int) -> int:
    return value if value in REDIRECT_STATUSES else default


def _compile(pattern: str, replacement: str, where: str) -> tuple[re.Pattern[str], str]:
    try:
        compiled = re.compile(pattern)
    except re.error as e:
        raise ConfigError(f"{where}: not a regular expression: {pattern!r} ({e})") from None
    return compiled, _GROUP.sub(lambda m: "\\g<" + m.group(1).strip("{}") + ">", replacement.replace("\\", "\\\\"))


def rulesFromProperties(plugin: PluginConfig) -> list[RedirectRule]:
    default = _status(integer(plugin, "default_status_code", 302), 302)
    numbers = sorted(int(m.group(1)) for m in map(_RULE.match, plugin.properties) if m)
    rules = []
    for n in numbers:
        prefix = f"redirect_rule_{n}_"
        replacement = plugin.get(prefix + "replacement")
        if replacement is None:
            raise ConfigError(f"redirect: missing property {prefix + 'replacement'!r}")
        pattern, replacement = _compile(plugin.get(prefix + "pattern") or "", replacement,
                                        f"redirect: property {prefix + 'pattern'!r}")
        rules.append(RedirectRule(
            pattern, replacement, _status(integer(plugin, prefix + "status", default), default),
            tuple(c for c in items(plugin, prefix + "condition", ()) if c)))
    return rules


def rulesFromFile(path: str) -> list[RedirectRule]:
    try:
        with open(path, "rb") as f:
            tree = microdata.parse(f.read())
    except (OSError, ValueError) as e:
        raise ConfigError(f"redirect: rulesfile {path}: cannot be read: {e}") from None
    rules = []
    for index, item in enumerate(microdata.allItems(tree, "RedirectRule"), start=1):
        source, target = (item.text("from") or "").strip(), (item.text("to") or "").strip()
        if not source or not target:
            continue
        pattern, replacement = _compile(source, target, f"redirect: {path}: RedirectRule #{index}")
        statuses = frozenset(int(v) for v in item.texts("on") if v.strip().isdigit())
        status = int(s) if (s := (item.text("status") or "").strip()).isdigit() else 302
        conditions = tuple(c.strip() for c in (item.text("conditions") or "").split(",") if c.strip())
        rules.append(RedirectRule(pattern, replacement, _status(status, 302), conditions, statuses))
    return rules


class RulesFile:
    """A C{rulesfile}, read again whenever it changes."""

    log = Logger()

    def __init__(self, path: str) -> None:
        self.path = path
        self.stamp: tuple[float, int] | None = None
        self.rules: list[RedirectRule] = []
        self.current()

    def current(self) -> list[RedirectRule]:
        try:
            stat = os.stat(self.path)
        except OSError as e:
            if self.stamp != (0.0, -1):
                self.log.warn("redirect: rulesfile {path}: {error}; no rules from it",
                              path=self.path, error=e.strerror)
                self.stamp, self.rules = (0.0, -1), []
            return self.rules
        stamp = (stat.st_mtime, stat.st_size)
        if stamp != self.stamp:
            self.stamp = stamp
            try:
                self.rules = rulesFromFile(self.path)
            except ConfigError as e:
                self.log.error("{error}; keeping the rules read before", error=e)
        return self.rules


class Redirect(Stage):
    answers = True

    def __init__(self, rules: list[RedirectRule], rulesFile: RulesFile | None = None) -> None:
        self.rules = rules
        self.rulesFile = rulesFile

    def current(self) -> list[RedirectRule]:
        return self.rules + (self.rulesFile.current() if self.rulesFile is not None else [])

    def request(self, request: Request, user: str | None) -> Reply | None:
        path = requestPath(request)
        for rule in self.current():
            if not rule.on and rule.pattern.search(path) and rule.applies(request):
                return redirectReply(rule.location(path), rule.status)
        return None

    def response(self, request: Request, response: Response) -> None:
        path = requestPath(request)
        for rule in self.current():
            if rule.on and response.status in rule.on and rule.pattern.search(path) \
                    and rule.applies(request):
                location = rule.location(path)
                response.replace(rule.status, b"text/plain", f"Redirecting to: {location}".encode())
                request.setHeader(b"location", location.encode("ascii"))
                return


def redirectReply(location: str, status: int) -> Reply:
    return Reply(status, f"Redirecting to: {location}".encode(), b"text/plain",
                 ((b"Location", location.encode("ascii")),))


def stage(plugin: PluginConfig, context: PipelineContext) -> Stage:
    rulesfile = plugin.get("rulesfile")
    return Redirect(rulesFromProperties(plugin), RulesFile(rulesfile) if rulesfile else None)
