"""Opening a report in Debian's chromium through Playwright, with every network request blocked and
counted, and everything a person would notice collected: console errors, page errors, dialogs."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
RENDER_TIMEOUT_MS = 90_000
ALL_PLOTS_DRAWN = """() => Array.from(document.querySelectorAll('div[data-figure]'))
    .every(div => div.getAttribute('data-rendered') === 'true' && div.querySelector('svg.main-svg'))"""
ON_ATTRIBUTES = """() => Array.from(document.querySelectorAll('*')).flatMap(element =>
    Array.from(element.attributes).filter(a => a.name.toLowerCase().startsWith('on'))
        .map(a => element.tagName.toLowerCase() + ' ' + a.name))"""


@dataclass
class Visit:
    """What happened while a report was open."""

    network_requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    plots: int = 0
    plots_with_svg: int = 0
    on_attributes: list[str] = field(default_factory=list)
    images: int = 0
    title: str = ""
    screenshot: Path | None = None


def launch_chromium() -> Iterator[Any]:
    """Yield a launched chromium; skip when it is missing, except under CI where that fails."""
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium) to run browser tests"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; .ci/run installs it")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def visit(browser: Any, report: Path, *, screenshot: Path) -> Visit:
    """Open ``report`` from ``file://``, block and count every other request, wait until every
    plot has drawn its svg, and save a full-page screenshot."""
    seen = Visit()
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        page = context.new_page()

        def route(request_route: Any) -> None:
            if request_route.request.url.startswith("file://"):
                request_route.continue_()
            else:
                seen.network_requests.append(request_route.request.url)
                request_route.abort()

        context.route("**/*", route)
        page.on("request", lambda r: None if r.url.startswith("file://") else seen.network_requests.append(r.url))
        page.on("websocket", lambda ws: seen.network_requests.append(ws.url))
        page.on("console", lambda m: seen.console_errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda error: seen.page_errors.append(str(error)))
        page.on("dialog", lambda dialog: (seen.dialogs.append(dialog.message), dialog.dismiss()))
        page.goto(report.resolve().as_uri(), wait_until="load")
        page.wait_for_function(ALL_PLOTS_DRAWN, timeout=RENDER_TIMEOUT_MS)
        page.wait_for_timeout(300)  # let any late dialog or error surface
        seen.plots = page.locator("div[data-figure]").count()
        seen.plots_with_svg = page.locator("div[data-figure] svg.main-svg").locator("xpath=ancestor::div[@data-figure]").count()
        seen.on_attributes = page.evaluate(ON_ATTRIBUTES)
        seen.images = page.locator("img").count()
        seen.title = page.title()
        page.screenshot(path=str(screenshot), full_page=True)
        seen.screenshot = screenshot
    finally:
        context.close()
    seen.network_requests = sorted(set(seen.network_requests))
    return seen
