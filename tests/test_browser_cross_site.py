"""
Cross-site WebSocket hijacking and cross-site form writes, tried for real: a headless
Chromium logs in to a protected host (so it caches the Basic credentials), then loads
a page from a second origin (same host, another port) that opens a WebSocket to the protected document and posts a
form to it. Both must fail, while the protected host's own page still opens its WebSocket
with the same cached credentials.
"""

from __future__ import annotations

import functools
import http.server
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from conftest import Server
from test_browser import SLOW, startBrowser
from test_cross_site import protectedHost

pytestmark = pytest.mark.browser

ATTACK = """<!DOCTYPE html>
<html><body>
<iframe name="sink" style="display:none"></iframe>
<form id="forged" method="POST" action="{target}/doc.html" target="sink" enctype="text/plain">
  <input name="&lt;p id" value='"forged"&gt;forged&lt;/p&gt;'>
</form>
<script>
  window.result = {{ws: "pending", messages: []}};
  const ws = new WebSocket("{wsTarget}/doc.html");
  ws.onopen = () => {{ window.result.ws = "open"; ws.send(JSON.stringify({{action: "subscribe"}})); }};
  ws.onmessage = (e) => window.result.messages.push(String(e.data));
  ws.onerror = () => {{ if (window.result.ws === "pending") window.result.ws = "refused"; }};
  document.getElementById("forged").submit();
</script>
</body></html>
"""

OWN_SOCKET = """
const done = arguments[arguments.length - 1];
const ws = new WebSocket(`ws://${location.host}/doc.html`);
ws.onopen = () => { ws.close(); done("open"); };
ws.onerror = () => done("refused");
"""


@pytest.fixture(scope="module")
def victim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = protectedHost(tmp_path_factory.mktemp("victim"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def attacker(tmp_path_factory: pytest.TempPathFactory, victim: Server) -> Iterator[str]:
    """
    An origin of its own serving the attacking page: another port of the same host,
    as another application on the machine (or a subdomain) would be. It is the same
    *site*, so Chromium shares its cache of HTTP credentials with it (a page of another
    site gets a partitioned cache today, but older and other browsers share it too).
    """
    root = tmp_path_factory.mktemp("attacker")
    (root / "attack.html").write_text(ATTACK.format(
        target=f"http://localhost:{victim.port}", wsTarget=f"ws://localhost:{victim.port}"))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.RequestHandlerClass.log_message = lambda *args: None  # type: ignore[method-assign]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://localhost:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_a_foreign_page_cannot_watch_or_write_with_cached_credentials(
        victim: Server, attacker: str, tmp_path: Path) -> None:
    stored = (victim.root.parent / "root" / "doc.html")
    before = stored.read_bytes()
    driver = startBrowser(tmp_path / "profile")
    try:
        driver.get(f"http://admin:admin123@localhost:{victim.port}/doc.html")
        assert "Original content" in driver.page_source
        assert driver.execute_async_script(OWN_SOCKET) == "open"

        driver.get(f"{attacker}/attack.html")
        state = driver.execute_async_script("""
            const done = arguments[arguments.length - 1];
            const started = Date.now();
            (function poll() {
              if (window.result.ws !== "pending" || Date.now() - started > %d) done(window.result);
              else setTimeout(poll, 50);
            })();
        """ % int(SLOW * 1000))
        assert state["ws"] == "refused", state
        assert state["messages"] == []
        deadline = time.monotonic() + SLOW
        while '"POST /doc.html HTTP/1.1" 403' not in victim.output() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        driver.quit()
    assert '"POST /doc.html HTTP/1.1" 403' in victim.output()
    assert stored.read_bytes() == before
