"""
The README's first command, run as a newcomer would: in a fresh copy of the project
and a fresh virtual environment, it installs rustybeam and serves the bundled examples.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import PROJECT, freePort


def readmeCommands() -> list[str]:
    text = (PROJECT / "README.md").read_text()
    return re.findall(r"```sh\n(.*?)\n```", text, re.S)


def test_readme_starts_with_install_and_test_commands() -> None:
    first, second = readmeCommands()[:2]
    assert "pip install ." in first and "rustybeam" in first
    assert second.strip() == "tests/run"
    ci = (PROJECT / ".ci" / "run").read_text()
    assert "\ntests/run" in ci


@pytest.mark.slow
def test_readme_install_and_run_command_serves_the_examples(tmp_path: Path) -> None:
    copy = tmp_path / "rustybeam"
    shutil.copytree(PROJECT, copy, ignore=shutil.ignore_patterns(
        ".git", ".venv", "venv", "__pycache__", "*.egg-info", "build", "reports", "node_modules"))
    port = freePort()
    command = readmeCommands()[0].replace("tcp:3000", f"tcp:{port}")
    log = open(tmp_path / "run.log", "wb")
    process = subprocess.Popen(["bash", "-c", command], cwd=copy, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True, env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    try:
        deadline = time.monotonic() + 600
        page = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                page = urllib.request.urlopen(f"http://127.0.0.1:{port}/todo.html", timeout=2).read()
                break
            except OSError:
                time.sleep(0.5)
        assert page is not None, (tmp_path / "run.log").read_text()
        assert b"/_rustybeam/rustybeam.js" in page
        script = urllib.request.urlopen(f"http://127.0.0.1:{port}/_rustybeam/rustybeam.js", timeout=5)
        assert script.headers["Content-Type"].startswith("text/javascript")
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(20)
        log.close()
