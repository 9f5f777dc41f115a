"""Browser tests of the console: Debian's Chromium (/usr/bin/chromium) driven by Playwright, in
front of a real suite (`emsupply demo`: the Qiandongnan data set, one token per role). They
skip, saying why, where Chromium or Playwright is missing (`.ci/run` installs Chromium).

Screenshots of every step go to var/screenshots/ (or $EMSUPPLY_SCREENSHOTS)."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))  # e2e_helpers: `emsupply` as real processes

CHROMIUM = os.environ.get("EMSUPPLY_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-dev-shm-usage"]
SHOTS = Path(os.environ.get("EMSUPPLY_SCREENSHOTS", ROOT / "var" / "screenshots"))


def pytest_configure(config):
    config.addinivalue_line("markers", "browser: drives Chromium through Playwright")


def why_not() -> str | None:
    """Why the browser tests cannot run here, or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed (pip install -e '.[test]')"
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    return None


def pytest_collection_modifyitems(config, items):
    reason = why_not()
    if reason is None:
        return
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=reason))


class Suite:
    """A running demo suite: its URL and a token per role."""

    def __init__(self, up, tokens: dict[str, str]):
        self.up = up
        self.url = up.url
        self.tokens = tokens

    def api(self, role: str = "admin"):
        return self.up.session(self.tokens[role])


def run_demo(tmp_path_factory, *args: str):
    if why_not():
        pytest.skip(why_not())
    from e2e_helpers import Up, wait_gone

    data_dir = tmp_path_factory.mktemp("console") / "var"
    up = Up(data_dir, command="demo", args=args)
    try:
        up.wait_ready(300)
        yield Suite(up, json.loads((data_dir / "tokens.json").read_text()))
    finally:
        code = up.stop()
        assert code == 0, up.output
        assert wait_gone(data_dir) == []


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    """The whole Qiandongnan data set (3,700 road nodes, 2,669 depots): the commander's map."""
    yield from run_demo(tmp_path_factory)


@pytest.fixture(scope="module")
def small_suite(tmp_path_factory):
    """Every county and township but only 200 villages: enough for a keeper's phone, quicker to
    seed (under `make test -n 2` the two browser tests may each start a suite)."""
    yield from run_demo(tmp_path_factory, "--villages", "200")


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


class Page:
    """A browser page on the suite that records every host it asks and every script error,
    and saves numbered screenshots of its steps."""

    def __init__(self, browser, suite: Suite, name: str, viewport: dict[str, int]):
        self.context = browser.new_context(viewport=viewport, locale="zh-CN",
                                           service_workers="block")
        self.page = self.context.new_page()
        self.suite = suite
        self.name = name
        self.step = 0
        self.hosts: set[str] = set()
        self.errors: list[str] = []
        self.page.on("request", lambda r: self.hosts.add(urlsplit(r.url).netloc))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("console", lambda m: m.type == "error" and not m.text.startswith(
            "Failed to load resource") and self.errors.append(m.text))
        SHOTS.mkdir(parents=True, exist_ok=True)

    def shot(self, what: str) -> Path:
        self.step += 1
        path = SHOTS / f"{self.name}-{self.step:02d}-{what}.png"
        self.page.screenshot(path=str(path))
        return path

    def foreign_hosts(self) -> set[str]:
        return {h for h in self.hosts if h and h != urlsplit(self.suite.url).netloc}


@pytest.fixture
def open_page(browser):
    pages: list[Page] = []

    def make(suite: Suite, name: str, width: int = 1440, height: int = 900) -> Page:
        pages.append(Page(browser, suite, name, {"width": width, "height": height}))
        return pages[-1]
    yield make
    for page in pages:
        page.context.close()
