"""A real browser for the viewer tests: Debian's Chromium driven by Playwright, with no
network at all. Never a browser download: ``executable_path`` is the system chromium.

If Playwright or Chromium is missing, or Chromium cannot start, the browser tests are
SKIPPED with that reason (``make setup`` installs both where apt-get is available).
Every page opened through :func:`open_viewer` fails its test on a console error, a page
error, or any request other than the file itself (every request is routed: anything else
is aborted and recorded).
"""

from __future__ import annotations

import atexit
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

# Flags that keep Chromium off the network: besides the page's own requests (routed below),
# no background, update, sync, safe-browsing or metrics traffic, and no name resolution.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication",
    "--no-first-run",
    "--no-pings",
    "--dns-prefetch-disable",
    "--host-resolver-rules=MAP * ~NOTFOUND",
]


# One Playwright and one Chromium per test process, whichever conftest asks for them (the demo
# tests import this fixture too, and a second sync_playwright() inside the first one's event
# loop fails). Started on first use, stopped when the process exits.
_SHARED: dict[str, object] = {}


def _shared_browser():
    """The process's launched Chromium, or the reason there is none (a string)."""
    if "browser" in _SHARED:
        return _SHARED["browser"]
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError as err:
        _SHARED["browser"] = f"playwright is not installed ({err}); `make setup` installs it"
        return _SHARED["browser"]
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        _SHARED["browser"] = (
            "chromium is not installed (`make setup` installs Debian's chromium when "
            "apt-get is available)"
        )
        return _SHARED["browser"]
    playwright = sync_playwright().start()
    try:
        launched = playwright.chromium.launch(
            executable_path=executable, args=CHROMIUM_ARGS, timeout=60_000
        )
    except Error as err:
        playwright.stop()
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        _SHARED["browser"] = f"chromium at {executable} cannot be launched: {first}"
        return _SHARED["browser"]

    def stop() -> None:
        launched.close()
        playwright.stop()

    atexit.register(stop)
    _SHARED["browser"] = launched
    return launched


@pytest.fixture(scope="session")
def browser():
    """A launched headless Chromium (shared by the whole test process), or a skip saying why
    there is none."""
    launched = _shared_browser()
    if isinstance(launched, str):
        pytest.skip(launched)
    return launched


@dataclass
class OpenedPage:
    page: object  # playwright.sync_api.Page
    url: str
    problems: list[str] = field(default_factory=list)

    def assert_clean(self) -> None:
        assert not self.problems, "the page misbehaved:\n" + "\n".join(self.problems)


@pytest.fixture
def open_viewer(browser):
    """``open_viewer(path, width=1280, height=900) -> OpenedPage``: the file loaded in a
    fresh browser context with every request routed. Problems (console errors, page
    errors, any request but the file) fail the test at teardown, or earlier through
    ``OpenedPage.assert_clean()``."""
    opened: list[tuple[object, OpenedPage]] = []

    def open_(path: str | os.PathLike, *, width: int = 1280, height: int = 900) -> OpenedPage:
        url = Path(path).resolve().as_uri()
        context = browser.new_context(viewport={"width": width, "height": height})
        page = context.new_page()
        result = OpenedPage(page, url)

        def route(r) -> None:  # nothing but the file itself is ever fetched
            if r.request.url == url:
                r.continue_()
            else:
                r.abort()

        def request(r) -> None:  # every request is seen here, routed or not
            if r.url != url:
                result.problems.append(f"network request: {r.url}")

        def console(message) -> None:
            if message.type == "error":
                result.problems.append(f"console error: {message.text}")

        context.route("**/*", route)
        page.on("request", request)
        page.on("websocket", lambda ws: result.problems.append(f"websocket: {ws.url}"))
        page.on("console", console)
        page.on("pageerror", lambda e: result.problems.append(f"page error: {e}"))
        page.goto(url)
        opened.append((context, result))
        return result

    yield open_
    for context, _ in opened:
        context.close()
    for _, result in opened:
        result.assert_clean()


@pytest.fixture
def screenshot_dir(tmp_path) -> Path:
    """Where screenshots go: $MULTIHEAD_VIZ_SCREENSHOTS if set (to keep them), else tmp."""
    kept = os.environ.get("MULTIHEAD_VIZ_SCREENSHOTS")
    path = Path(kept) if kept else tmp_path / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path
