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
