"""
SPEC section 5, embedding: the README's own example application, run with twistd,
mounts a live document root inside another resource tree.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from conftest import DOCUMENTS, PROJECT, Server, Watcher, freePort


def readmeExample() -> str:
    text = (PROJECT / "README.md").read_text()
    section = text[text.index("## Embedding"):]
    return re.search(r"```python\n(.*?)\n```", section, re.S).group(1)


def test_the_readme_embedding_example_serves_documents_and_websockets(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    shutil.copytree(DOCUMENTS, root)
    port = freePort()
    app = readmeExample().replace('"/srv/docs"', repr(str(root))).replace(
        '"tcp:8080"', f'"tcp:{port}:interface=127.0.0.1"')
    (tmp_path / "app.tac").write_text(app)
    log = open(tmp_path / "twistd.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
         "-n", "--pidfile=", "-y", str(tmp_path / "app.tac")],
        cwd=PROJECT, stdout=log, stderr=subprocess.STDOUT,
    )
    server = Server(root)
    server.port = port
    server.process = process
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                r = server.select("GET", "/docs/doc.html", "#content")
                break
            except OSError:
                assert time.monotonic() < deadline, (tmp_path / "twistd.log").read_text()
                time.sleep(0.1)
        assert (r.status, r.text) == (206, '<div id="content">Original content</div>')
        assert server.request("GET", "/docs/_rustybeam/rustybeam.js").status == 200
        assert server.request("GET", "/doc.html").status == 404

        watcher = Watcher(server, "/docs/doc.html")
        assert watcher.subscribe()["url"] == "/doc.html"
        server.select("PUT", "/docs/doc.html", "#content", '<div id="content">embedded</div>')
        item = watcher.item()
        assert (item.url, item.content) == ("/doc.html", '<div id="content">embedded</div>')
        watcher.close()
    finally:
        server.stop()
        log.close()
