"""Debian's Chromium driven by Playwright, for tests of the pages (a browser download does not work on
these machines: scripts/test.sh installs the `chromium` package)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking flags Chromium keeps trying hosts this closed network refuses.
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


@contextmanager
def chromium() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: scripts/test.sh installs Debian's chromium package", pytrace=False)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


def open_chat(page: Page, url: str) -> None:
    """The chat page, once it has its conversation (the input is enabled at `welcome`)."""
    page.goto(url)
    page.wait_for_selector("#text:not([disabled])", timeout=20_000)


def conversation_of(page: Page) -> str:
    """The lexdesk conversation the chat page shows (kept in the tab's sessionStorage)."""
    return str(page.evaluate("() => JSON.parse(sessionStorage.getItem('lexdesk.chat')).conversation"))


def say(page: Page, text: str) -> None:
    """Type a message in the chat page and send it, as a customer does."""
    page.fill("#text", text)
    page.press("#text", "Enter")


def wait_for_text(page: Page, selector: str, text: str, timeout: float = 20) -> None:
    """Until some element matching `selector` contains `text`."""
    page.wait_for_function("([s, t]) => [...document.querySelectorAll(s)].some(e => e.textContent.includes(t))",
                           arg=[selector, text], timeout=timeout * 1000)


# The state of the customer's newest bubble on the chat page (sending, sent, delayed, delivered, failed).
LAST_FATE = "() => { const f = [...document.querySelectorAll('#log .fate')].pop(); return f && f.dataset.state; }"


def wait_for_last_fate(page: Page, state: str, timeout: float = 30) -> None:
    page.wait_for_function(f"() => ({LAST_FATE})() === {state!r}", timeout=timeout * 1000)
