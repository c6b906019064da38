"""
The command line refuses bad options before anything starts, with a message that
names the option.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import PROJECT


def refusal(*args: str) -> str:
    p = subprocess.run([sys.executable, "-m", "rustybeam", *args], capture_output=True,
                       text=True, cwd=PROJECT, timeout=30)
    assert p.returncode == 2, p
    return p.stderr.splitlines()[0]


@pytest.mark.parametrize("args,words", [
    (["--max-message-size", "0"], ["at least 1"]),
    (["--max-connections", "-5"], ["at least 1"]),
    (["--rate", "0"], ["at least 0.001"]),
    (["--ping-timeout", "soon"], ["soon"]),
    (["--root", "/no/such/dir"], ["--root", "not a directory"]),
    (["--access-log-format", "xml"], ["--access-log-format"]),
    (["--config", "/no/such/config.html"], ["--config", "config.html"]),
    (["--autobahn-testee", "--config", "x.html"], ["--autobahn-testee"]),
    (["--writer", "http://127.0.0.1:3000"], ["--writer", "--redis"]),
    (["--redis", "redis://127.0.0.1:6379/0", "--writer", "http://127.0.0.1:3000", "--root", "."],
     ["no --root"]),
    (["--workers", "2"], ["--workers", "--redis"]),
    (["--redis", "http://127.0.0.1:6379"], ["--redis", "redis://"]),
    (["--redis", "redis://127.0.0.1:6379/0", "--workers", "2", "--port", "unix:/tmp/s"],
     ["--workers", "tcp:PORT"]),
])
def test_bad_options_are_refused_with_a_message(args: list[str], words: list[str]) -> None:
    message = refusal(*args)
    assert message.startswith("rustybeam: ")
    for word in words:
        assert word in message


def test_the_testee_module_takes_the_same_options() -> None:
    p = subprocess.run([sys.executable, "-m", "rustybeam.testee", "--help"], capture_output=True,
                       text=True, cwd=PROJECT, timeout=30)
    assert p.returncode == 0 and "--max-message-size" in p.stdout


def test_python_m_logs_lines_exactly_as_twisteds_text_observer() -> None:
    import io
    import time

    from twisted.logger import LogLevel, textFileLogObserver
    from twisted.python.failure import Failure

    from rustybeam.__main__ import classicTextObserver

    now = int(time.time()) + 0.1
    try:
        1 / 0
    except ZeroDivisionError:
        failure = Failure()
    events = [
        {"log_format": "{log_io}", "log_io": "GET / 200", "log_time": now,
         "log_namespace": "twisted.python.log", "log_level": LogLevel.info},
        {"log_format": "{log_io}", "log_io": "next", "log_time": now + 0.5,
         "log_namespace": "twisted.python.log", "log_level": LogLevel.info},
        {"log_format": "{log_io}", "log_io": "two {x}\nlines", "log_time": now + 0.6,
         "log_namespace": "twisted.python.log", "log_level": LogLevel.warn},
        {"log_format": "{log_io}", "log_io": "", "log_time": now + 0.7},
        {"log_format": "{log_io}", "log_io": "no level or namespace", "log_time": now + 0.8},
        {"log_format": "{log_io}", "log_io": "system", "log_time": now + 0.9, "log_system": "s"},
        {"log_format": "a {x}", "x": 1, "log_time": now + 1.2, "log_system": "sys"},
        {"log_format": "failed", "log_time": now + 3, "log_failure": failure,
         "log_namespace": "n", "log_level": LogLevel.error},
        {"log_format": "no time"},
        {"log_time": now},
    ]
    ours, theirs = io.StringIO(), io.StringIO()
    observe, reference = classicTextObserver(ours), textFileLogObserver(theirs)
    for event in events:
        observe(dict(event))
        reference(dict(event))
    assert ours.getvalue() == theirs.getvalue()
    assert ours.getvalue().count("\n") > 5
