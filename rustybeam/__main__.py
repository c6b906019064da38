"""
C{python -m rustybeam}: the same server as C{twistd -n rustybeam}, without twistd.
"""

from __future__ import annotations

import sys
from typing import IO

from twisted.logger import FileLogObserver, LogEvent, formatEventAsClassicLogText
from twisted.logger import formatTime as _formatTime
from twisted.python import usage


def main(argv: list[str] | None = None) -> None:
    from twisted.internet import reactor
    from twisted.logger import (
        FilteringLogObserver,
        LogLevel,
        LogLevelFilterPredicate,
        globalLogBeginner,
    )

    from rustybeam.tap import Options, makeService

    options = Options()
    try:
        options.parseOptions(sys.argv[1:] if argv is None else argv)
    except usage.UsageError as e:
        print(f"rustybeam: {e}\n{options}", file=sys.stderr)
        raise SystemExit(2)
    observer = FilteringLogObserver(
        classicTextObserver(sys.stdout), [LogLevelFilterPredicate(LogLevel.info)]
    )
    globalLogBeginner.beginLoggingTo([observer])
    service = makeService(options)
    service.startService()
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    reactor.run()


def classicTextObserver(stream: IO[str]) -> FileLogObserver:
    """
    What C{twisted.logger.textFileLogObserver} writes (a C{twistd}-style line per
    event), with each second's timestamp formatted once and lines written through the
    legacy log (the access log of every request) put together directly: formatting
    them was most of what logging a request cost.
    """
    cache: list[tuple[int, str]] = [(-1, "")]

    def formatTime(when: float | None) -> str:
        if when is None:
            return _formatTime(None)
        second = int(when)
        cached = cache[0]
        if cached[0] != second:
            cached = cache[0] = (second, _formatTime(second))
        return cached[1]

    def formatEvent(event: LogEvent) -> str | None:
        text = event.get("log_io")
        if (event.get("log_format") != "{log_io}" or not isinstance(text, str) or not text
                or "log_failure" in event or "log_system" in event):
            return formatEventAsClassicLogText(event, formatTime)
        level = event.get("log_level")
        system = f"{event.get('log_namespace', '-')}#{level.name if level is not None else '-'}"
        line = f"{formatTime(event.get('log_time'))} [{system}] {text}"
        return line.replace("\n", "\n\t") + "\n"

    return FileLogObserver(stream, formatEvent)


if __name__ == "__main__":
    main()
