"""
The browser client (C{/_rustybeam/rustybeam.js}) and the live demo (C{examples/todo.html})
in a real headless Chromium, driven with Selenium.

Two separate browser sessions (not two tabs: a background tab may be throttled) open the
same document; what one does through the demo's UI shows in the other within a second.
A small TCP proxy between one page and the server cuts the page's connections and
restores them, so that the page must resume (replay with C{since}) or reload (C{reset}).

Chromium is Debian's (C{/usr/bin/chromium}, C{/usr/bin/chromedriver}), started with an
explicit driver path so that Selenium Manager never downloads anything. A browser that
cannot start fails these tests; they are not skipped.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Callable, Iterator

import pytest

from conftest import PROJECT, Server

os.environ.setdefault("SE_OFFLINE", "true")

from selenium import webdriver  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

pytestmark = pytest.mark.browser

EXAMPLES = PROJECT / "examples"
SCREENSHOT = PROJECT / "docs" / "demo.png"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_ARGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
)
LIVE = 1.0
"""How long another page may take to show a change: "within a second"."""
SLOW = 10.0
"""How long a page may take to load, or to reconnect after its backoff."""

# What Chromium logs as SEVERE while a test cuts the connection on purpose.
CUT_ERRORS = ("WebSocket connection to", "ERR_CONNECTION", "ERR_EMPTY_RESPONSE",
              "net::ERR_", "Failed to fetch")


# The server and the proxy


def startServer(root: Path, port: int | None = None) -> Server:
    """A rustybeam process on C{root}; on C{port} when given (a restart)."""
    server = Server(root)
    if port is not None:
        server.port = port
        server.log = root.parent / f"server-{port}.log"
        server.args = ["--root", str(root), "--port", f"tcp:{port}:interface=127.0.0.1"]
    return server.start()


def examplesCopy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("site") / "root"
    shutil.copytree(EXAMPLES, root)
    return root


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server on a copy of examples/, shared by this module's tests."""
    server = startServer(examplesCopy(tmp_path_factory))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def todo(site: Server) -> str:
    """The path of a fresh copy of the demo on the shared server."""
    name = f"todo-{uuid.uuid4().hex[:8]}.html"
    shutil.copy(EXAMPLES / "todo.html", site.root / name)
    return "/" + name


class Proxy:
    """
    Forwards 127.0.0.1:port to a server's port, byte for byte. L{cut} closes every
    forwarded connection and turns new ones away (accepted, then closed at once) until
    L{restore}.
    """

    def __init__(self, target: int) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.cutOff = False
        self.accepted = 0
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                if self._closing or self.cutOff:
                    client.close()
                    continue
                self.accepted += 1
                try:
                    upstream = socket.create_connection(("127.0.0.1", self.target), timeout=5)
                    upstream.settimeout(None)
                except OSError:
                    client.close()
                    continue
                self._open |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for s in (source, sink):
            self._drop(s)

    def _drop(self, s: socket.socket) -> None:
        with self._lock:
            self._open.discard(s)
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        s.close()

    def cut(self) -> None:
        with self._lock:
            self.cutOff = True
            sockets = list(self._open)
        for s in sockets:
            self._drop(s)

    def restore(self) -> None:
        with self._lock:
            self.cutOff = False

    def close(self) -> None:
        self._closing = True
        self.cut()
        self.listener.close()


@pytest.fixture
def proxy(site: Server) -> Iterator[Proxy]:
    p = Proxy(site.port)
    yield p
    p.close()


# The browsers


def startBrowser(profile: Path) -> WebDriver:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in CHROMIUM_ARGS:
        options.add_argument(arg)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument("--window-size=800,640")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit driver path: Selenium Manager is never asked to find (or fetch) one.
    service = webdriver.ChromeService(executable_path=CHROMEDRIVER)
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(SLOW)
    driver.set_script_timeout(SLOW)
    return driver


class Browsers:
    def __init__(self, factory: pytest.TempPathFactory) -> None:
        self.factory = factory
        self.drivers: list[WebDriver] = []

    def __getitem__(self, i: int) -> WebDriver:
        while len(self.drivers) <= i:
            self.drivers.append(startBrowser(self.factory.mktemp("profile")))
        return self.drivers[i]

    def quit(self) -> None:
        for d in self.drivers:
            d.quit()


@pytest.fixture(scope="module")
def browsers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browsers]:
    b = Browsers(tmp_path_factory)
    try:
        yield b
    finally:
        b.quit()


@pytest.fixture
def console(browsers: Browsers) -> Iterator[list[str]]:
    """
    Fails the test if a browser logged a SEVERE message during it. A test that cuts
    connections on purpose adds the expected messages' fragments to the list.
    """
    for d in browsers.drivers:
        d.get_log("browser")  # drop what earlier tests left
    allowed: list[str] = []
    yield allowed
    severe = [
        entry["message"]
        for d in browsers.drivers
        for entry in d.get_log("browser")
        if entry["level"] == "SEVERE" and not any(a in entry["message"] for a in allowed)
    ]
    assert severe == [], severe


@pytest.fixture
def pages(browsers: Browsers, console: list[str]) -> Iterator[Browsers]:
    """Two browsers (sessions started once per module), checked for console errors."""
    browsers[0], browsers[1]
    yield browsers
    for d in browsers.drivers:  # no page keeps reconnecting to a server that is gone
        d.get("about:blank")


# Reading and driving the demo


State = list[tuple[str, bool, str]]

LIST_STATE = """
return [...document.querySelectorAll('#todo > li')].map((li) => [
  li.id, li.classList.contains('is-done'), li.querySelector('.text').textContent]);
"""

RECORD = """
window.recorded = [];
for (const type of ['open', 'close', 'reset', 'applied', 'error']) {
  window.liveDocument.addEventListener(type, (e) => window.recorded.push({
    type, code: e.detail.code ?? null, sequence: e.detail.sequence ?? null,
    method: e.detail.method ?? null, selector: e.detail.selector ?? null}));
}
"""


def state(driver: WebDriver) -> State:
    return [tuple(row) for row in driver.execute_script(LIST_STATE)]


def status(driver: WebDriver) -> str:
    return driver.find_element(By.ID, "status").get_attribute("data-state")


def until(driver: WebDriver, condition: Callable[[WebDriver], object], timeout: float = SLOW,
          message: str = "") -> object:
    return WebDriverWait(driver, timeout, poll_frequency=0.02).until(condition, message)


def load(driver: WebDriver, url: str) -> None:
    """Open the demo and wait until its WebSocket subscription is confirmed."""
    driver.get(url)
    until(driver, lambda d: status(d) == "live", message=f"{url} never went live")
    driver.execute_script(RECORD)


def recorded(driver: WebDriver) -> list[dict[str, object]]:
    return driver.execute_script("return window.recorded")


def sameList(a: WebDriver, b: WebDriver, check: Callable[[State], bool], what: str) -> State:
    """Wait for page C{a} to show a change (C{check}), then give C{b} one second to match."""
    until(a, lambda d: check(state(d)), message=f"the acting page never showed {what}")
    expected = state(a)
    start = time.monotonic()
    try:
        until(b, lambda d: state(d) == expected, timeout=LIVE)
    except Exception:
        raise AssertionError(
            f"the other page did not show {what} within {LIVE}s: {state(b)} != {expected}"
        ) from None
    assert time.monotonic() - start <= LIVE + 0.2
    return expected


def item(driver: WebDriver, ident: str):
    return driver.find_element(By.ID, ident)


def texts(s: State) -> list[str]:
    return [text for _, _, text in s]


def addThrough(driver: WebDriver, text: str) -> None:
    field = driver.find_element(By.ID, "new-item")
    field.send_keys(text)
    driver.find_element(By.ID, "add").click()


# Tests


def test_clientScriptServed(site: Server) -> None:
    """The client is served as JavaScript at its fixed path, byte for byte."""
    r = site.request("GET", "/_rustybeam/rustybeam.js")
    assert r.status == 200
    kind = r.headers["Content-Type"].split(";")[0].strip().lower()
    assert kind in ("text/javascript", "application/javascript")
    assert r.body == (PROJECT / "rustybeam" / "static" / "rustybeam.js").read_bytes()


def test_editAppearsInOtherPage(site: Server, todo: str, pages: Browsers) -> None:
    """Editing an item's text in one page (Edit, type, Enter) shows in the other."""
    a, b = pages[0], pages[1]
    load(a, f"http://127.0.0.1:{site.port}{todo}")
    load(b, f"http://127.0.0.1:{site.port}{todo}")
    assert state(a) == state(b) == [
        ("item-welcome", False, "Open this page in two windows"),
        ("item-tick", True, "Tick an item and watch the other window"),
    ]

    li = item(a, "item-welcome")
    li.find_element(By.CSS_SELECTOR, "button.edit").click()
    field = li.find_element(By.CSS_SELECTOR, "input.edit-input")
    field.clear()
    field.send_keys("Edited in page one", Keys.ENTER)
    after = sameList(a, b, lambda s: "Edited in page one" in texts(s), "the edit")
    assert after[0] == ("item-welcome", False, "Edited in page one")
    assert not a.find_elements(By.CSS_SELECTOR, "#item-welcome input.edit-input")

    # ... and back the other way, with the Save button.
    li = item(b, "item-tick")
    li.find_element(By.CSS_SELECTOR, "button.edit").click()
    field = li.find_element(By.CSS_SELECTOR, "input.edit-input")
    field.clear()
    field.send_keys("Saved in page two")
    li.find_element(By.CSS_SELECTOR, "button.edit").click()  # now labelled Save
    sameList(b, a, lambda s: "Saved in page two" in texts(s), "the saved edit")

    # Escape cancels: nothing is written.
    li = item(a, "item-tick")
    li.find_element(By.CSS_SELECTOR, "button.edit").click()
    li.find_element(By.CSS_SELECTOR, "input.edit-input").send_keys("not this", Keys.ESCAPE)
    assert not a.find_elements(By.CSS_SELECTOR, "#item-tick input.edit-input")
    assert "not this" not in site.request("GET", todo).text

    stored = site.select("GET", todo, "#todo").text
    assert "Edited in page one" in stored and "Saved in page two" in stored
    assert a.find_element(By.ID, "error").text == ""


def test_addTickRemove(site: Server, todo: str, pages: Browsers) -> None:
    """POST (add), PUT (tick done, untick) and DELETE (remove) through the demo's UI."""
    a, b = pages[0], pages[1]
    load(a, f"http://127.0.0.1:{site.port}{todo}")
    load(b, f"http://127.0.0.1:{site.port}{todo}")

    addThrough(a, "Buy <oat> milk & bread")
    added = sameList(a, b, lambda s: len(s) == 3, "the added item")
    ident, done, text = added[-1]
    assert ident.startswith("item-") and not done and text == "Buy <oat> milk & bread"
    assert a.find_element(By.ID, "new-item").get_attribute("value") == ""

    addThrough(b, "Water the plants")
    sameList(b, a, lambda s: len(s) == 4 and s[-1][2] == "Water the plants", "the second item")

    item(b, ident).find_element(By.CSS_SELECTOR, "input.done").click()
    sameList(b, a, lambda s: (ident, True, text) in s, "the ticked item")
    assert item(a, ident).find_element(By.CSS_SELECTOR, "input.done").is_selected()

    item(a, "item-tick").find_element(By.CSS_SELECTOR, "input.done").click()
    sameList(a, b, lambda s: s[1][:2] == ("item-tick", False), "the unticked item")

    item(a, "item-welcome").find_element(By.CSS_SELECTOR, "button.remove").click()
    after = sameList(a, b, lambda s: "item-welcome" not in [i for i, _, _ in s], "the removal")
    assert [i for i, _, _ in after][:2] == ["item-tick", ident]

    stored = site.select("GET", todo, "#todo > li").text
    assert "item-welcome" not in stored and "Buy &lt;oat&gt; milk &amp; bread" in stored
    assert b.find_element(By.ID, "error").text == ""


def test_changesFromElsewhere(site: Server, todo: str, pages: Browsers) -> None:
    """Selector requests from any HTTP client show in an open page within a second."""
    a = pages[0]
    load(a, f"http://127.0.0.1:{site.port}{todo}")
    before = state(a)

    start = time.monotonic()
    r = site.select("POST", todo, "#todo", '<li id="item-x" class="item">'
                    '<input type="checkbox" class="done"><span class="text">From curl</span>'
                    '<button type="button" class="edit">Edit</button>'
                    '<button type="button" class="remove">×</button></li>')
    assert r.status == 206
    until(a, lambda d: len(state(d)) == 3, timeout=LIVE)
    assert time.monotonic() - start < LIVE + 0.2
    assert state(a) == [*before, ("item-x", False, "From curl")]

    assert site.select("DELETE", todo, "#todo > li").status == 204
    until(a, lambda d: state(d) == [], timeout=LIVE)
    assert a.find_element(By.CSS_SELECTOR, ".empty").is_displayed()


def test_resumeAfterCut(site: Server, todo: str, pages: Browsers, proxy: Proxy,
                        console: list[str]) -> None:
    """
    The page's connection is cut; changes made meanwhile are replayed when it comes
    back (it resumes with C{since}: no reload), and it stays live afterwards.
    """
    console.extend(CUT_ERRORS)
    a, b = pages[0], pages[1]
    load(a, proxy.url(todo))
    load(b, f"http://127.0.0.1:{site.port}{todo}")

    addThrough(b, "Before the cut")
    sameList(b, a, lambda s: len(s) == 3, "the item added before the cut")
    known = a.execute_script("return window.liveDocument.sequence")
    assert isinstance(known, int) and known >= 1

    proxy.cut()
    until(a, lambda d: status(d) == "reconnecting", timeout=5)

    # Changes while the page is away: from page b's UI and from plain HTTP.
    addThrough(b, "During the cut")
    until(b, lambda d: len(state(d)) == 4)
    item(b, "item-tick").find_element(By.CSS_SELECTOR, "input.done").click()
    until(b, lambda d: state(d)[1] == ("item-tick", False, "Tick an item and watch the other window"))
    assert site.select("DELETE", todo, "#item-welcome").status == 204
    assert site.select("PUT", todo, "#todo > li:last-child .text",
                       '<span class="text">During the cut, edited</span>').status == 206
    expected = until(b, lambda d: len(state(d)) == 3 and
                     texts(state(d))[-1] == "During the cut, edited" and state(d))
    time.sleep(0.3)
    assert len(state(a)) == 3 and status(a) == "reconnecting"  # a saw none of it

    proxy.restore()
    until(a, lambda d: status(d) == "live", message="the page did not reconnect")
    until(a, lambda d: state(d) == expected, timeout=LIVE, message="missed changes not replayed")

    events = recorded(a)
    kinds = [e["type"] for e in events]
    assert "reset" not in kinds, events  # resumed, not reloaded
    assert kinds.index("close") < kinds.index("open")
    replayed = [e for e in events if e["type"] == "applied" and e["sequence"] > known]
    assert [e["method"] for e in replayed] == ["POST", "PUT", "DELETE", "PUT"], events
    sequence = int(site.request("HEAD", todo).headers["X-Rustybeam-Sequence"])
    assert a.execute_script("return window.liveDocument.sequence") == sequence

    # Live again: a change in page a reaches page b within a second.
    addThrough(a, "After the cut")
    sameList(a, b, lambda s: "After the cut" in texts(s), "the item added after the cut")


def test_resetWhenHistoryIsGone(site: Server, todo: str, pages: Browsers, proxy: Proxy,
                                console: list[str]) -> None:
    """More changes than the server's history keeps: the page reloads #todo instead."""
    console.extend(CUT_ERRORS)
    a = pages[0]
    load(a, proxy.url(todo))
    proxy.cut()
    until(a, lambda d: status(d) == "reconnecting", timeout=5)

    assert site.select("DELETE", todo, "#todo > li").status == 204
    for i in range(300):  # the default history is 256 changes per document
        html = (f'<li id="item-n{i}" class="item"><input type="checkbox" class="done">'
                f'<span class="text">n{i}</span></li>')
        assert site.select("POST", todo, "#todo", html).status == 206
    assert site.select("DELETE", todo, "#todo > li:nth-child(n+4)").status == 204

    proxy.restore()
    until(a, lambda d: status(d) == "live", message="the page did not reconnect")
    until(a, lambda d: texts(state(d)) == ["n0", "n1", "n2"], timeout=LIVE)
    events = recorded(a)
    assert [e["type"] for e in events].count("reset") == 1, events
    sequence = int(site.request("HEAD", todo).headers["X-Rustybeam-Sequence"])
    assert a.execute_script("return window.liveDocument.sequence") == sequence

    site.select("PUT", todo, "#item-n1 .text", '<span class="text">still live</span>')
    until(a, lambda d: texts(state(d)) == ["n0", "still live", "n2"], timeout=LIVE)


@pytest.mark.parametrize("sig", [
    pytest.param(signal.SIGTERM, id="stop"),
    pytest.param(signal.SIGKILL, id="crash"),
])
def test_serverRestart(tmp_path_factory: pytest.TempPathFactory, pages: Browsers,
                       console: list[str], sig: int) -> None:
    """
    The server stops (1001, going away) or crashes, and a new process starts on the
    same port and root: the page must not be left with a gap. A new process numbers
    changes from a later origin, so an old number gets a reset, and the page reloads
    its part of the document and carries on.
    """
    console.extend(CUT_ERRORS)
    root = examplesCopy(tmp_path_factory)
    server = startServer(root)
    proxy = Proxy(server.port)
    a, b = pages[0], pages[1]
    try:
        load(a, proxy.url("/todo.html"))
        load(b, f"http://127.0.0.1:{server.port}/todo.html")
        origin = int(server.request("HEAD", "/todo.html").headers["X-Rustybeam-Sequence"])
        for text in ("one", "two", "three"):
            addThrough(b, text)
            until(a, lambda d: texts(state(d))[-1] == text)
        assert a.execute_script("return window.liveDocument.sequence") == origin + 3

        server.stop(sig)
        until(a, lambda d: status(d) == "reconnecting", timeout=5)
        code = 1001 if sig == signal.SIGTERM else 1006
        assert any(e["type"] == "close" and e["code"] == code for e in recorded(a))
        # The new process sees changes before the page is back; resuming "after 3" from
        # the old process must not be taken as up to date.
        proxy.cut()
        server = startServer(root, server.port)
        until(b, lambda d: status(d) == "live", message="page b did not reconnect")
        addThrough(b, "four")
        until(b, lambda d: texts(state(d))[-1] == "four")
        for name in ("item-welcome", "item-tick"):
            assert server.select("DELETE", "/todo.html", f"#{name}").status == 204
        addThrough(b, "five")
        expected = until(b, lambda d: texts(state(d)) == ["one", "two", "three", "four", "five"]
                         and state(d))
        proxy.restore()
        until(a, lambda d: status(d) == "live", message="page a did not reconnect")
        try:
            until(a, lambda d: state(d) == expected, timeout=LIVE)
        except Exception:
            raise AssertionError(f"the page did not catch up with the restarted server: "
                                 f"{state(a)} != {expected}; {recorded(a)}") from None
        assert "reset" in [e["type"] for e in recorded(a)]

        addThrough(a, "six")
        sameList(a, b, lambda s: texts(s)[-1] == "six", "a change after the restart")
    finally:
        for d in (a, b):
            d.get("about:blank")
        proxy.close()
        server.stop()


def test_wholeDocumentPage(site: Server, pages: Browsers) -> None:
    """The examples' index page watches its whole document: a PUT on #greeting shows."""
    a = pages[0]
    a.get(f"http://127.0.0.1:{site.port}/")
    until(a, lambda d: d.execute_script("return document.readyState") == "complete")
    time.sleep(0.3)  # no status badge on this page: give the subscribe a moment
    html = '<div id="greeting"><p>Changed from the test.</p></div>'
    assert site.select("PUT", "/index.html", "#greeting", html).status == 206
    until(a, lambda d: d.find_element(By.ID, "greeting").text == "Changed from the test.",
          timeout=LIVE)


GAP_PAGE = """<!DOCTYPE html>
<html><head><title>Gap</title><link rel="icon" href="data:,"></head><body>
<ul id="list"><li id="first">first</li></ul>
<script type="module">
import { watch } from "/_rustybeam/rustybeam.js";
window.startWatching = () => {
  window.live = watch({ selectors: ["#list"] });
  window.live.addEventListener("open", () => { window.opened = true; });
};
</script>
</body></html>"""


def test_change_between_page_load_and_watch_is_not_missed(site: Server, pages: Browsers) -> None:
    """A change made after the page was served but before its client started is
    shown: the client fetches what it watches instead of trusting the page."""
    name = f"/gap-{uuid.uuid4().hex[:8]}.html"
    (site.root / name.lstrip("/")).write_text(GAP_PAGE)
    a = pages[0]
    a.get(f"http://127.0.0.1:{site.port}{name}")
    until(a, lambda d: d.execute_script("return typeof window.startWatching") == "function")
    assert site.select("POST", name, "#list", '<li id="meanwhile">meanwhile</li>').status == 206
    a.execute_script("window.startWatching()")
    until(a, lambda d: d.execute_script("return window.opened === true"))
    until(a, lambda d: [e.text for e in d.find_elements(By.CSS_SELECTOR, "#list li")]
          == ["first", "meanwhile"], timeout=LIVE)
    assert site.select("POST", name, "#list", '<li id="after">after</li>').status == 206
    until(a, lambda d: [e.text for e in d.find_elements(By.CSS_SELECTOR, "#list li")]
          == ["first", "meanwhile", "after"], timeout=LIVE)


def test_screenshot(site: Server, todo: str, pages: Browsers) -> None:
    """A screenshot of the demo with a few items, for the README (docs/demo.png)."""
    a, b = pages[0], pages[1]
    load(a, f"http://127.0.0.1:{site.port}{todo}")
    load(b, f"http://127.0.0.1:{site.port}{todo}")
    for text in ("Buy oat milk", "Water the plants"):
        addThrough(b, text)
        until(a, lambda d: texts(state(d))[-1] == text, timeout=LIVE + 1)
    until(a, lambda d: len(state(d)) == 4)
    item(b, state(b)[2][0]).find_element(By.CSS_SELECTOR, "input.done").click()
    until(a, lambda d: state(d)[2][1])
    a.set_window_size(800, 720)
    a.execute_script("document.activeElement?.blur()")
    SCREENSHOT.parent.mkdir(exist_ok=True)
    try:
        assert a.save_screenshot(str(SCREENSHOT))
    finally:
        a.set_window_size(800, 640)
    assert SCREENSHOT.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


WHOLE_WATCH = """<!DOCTYPE html><html><head><title>guestbook</title><link rel="icon" href="data:,"></head><body>
<h1 id="title">Guestbook</h1>
<script type="module">
  import { watch } from "/_rustybeam/rustybeam.js";
  window.live = watch();
  window.live.addEventListener("open", () => { document.body.dataset.live = "yes"; });
</script>
</body></html>"""


def test_wholeFileAppendShowsInAnOpenPage(site: Server, pages: Browsers) -> None:
    """A whole-file POST (an append) reaches a page watching the whole document, which
    reloads it, so the appended markup shows."""
    name = f"guest-{uuid.uuid4().hex[:8]}.html"
    (site.root / name).write_text(WHOLE_WATCH)
    a = pages[0]
    a.get(f"http://127.0.0.1:{site.port}/{name}")
    until(a, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-live") == "yes")
    r = site.request("POST", f"/{name}", '<p id="signed">Ada was here</p>')
    assert r.status == 200
    until(a, lambda d: d.find_elements(By.ID, "signed"), timeout=LIVE + 1)
    assert a.find_element(By.ID, "signed").text == "Ada was here"
