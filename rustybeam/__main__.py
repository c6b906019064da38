"""
C{python -m rustybeam}: the same server as C{twistd -n rustybeam}, without twistd.
"""

from __future__ import annotations

import sys
from typing import IO

from twisted.logger import FileLogObserver, formatEventAsClassicLogText
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
    event), with each second's timestamp formatted once: the access log line of every
    request goes through it, and formatting the time was a sixth of that.
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

    return FileLogObserver(stream, lambda event: formatEventAsClassicLogText(event, formatTime))


if __name__ == "__main__":
    main()
