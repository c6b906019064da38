"""
C{python -m rustybeam}: the same server as C{twistd -n rustybeam}, without twistd.
"""

from __future__ import annotations

import sys

from twisted.python import usage


def main(argv: list[str] | None = None) -> None:
    from twisted.internet import reactor
    from twisted.logger import (
        FilteringLogObserver,
        LogLevel,
        LogLevelFilterPredicate,
        globalLogBeginner,
        textFileLogObserver,
    )

    from rustybeam.tap import Options, makeService

    options = Options()
    try:
        options.parseOptions(sys.argv[1:] if argv is None else argv)
    except usage.UsageError as e:
        print(f"rustybeam: {e}\n{options}", file=sys.stderr)
        raise SystemExit(2)
    observer = FilteringLogObserver(
        textFileLogObserver(sys.stdout), [LogLevelFilterPredicate(LogLevel.info)]
    )
    globalLogBeginner.beginLoggingTo([observer])
    service = makeService(options)
    service.startService()
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    reactor.run()


if __name__ == "__main__":
    main()
