"""The customer's chat page in Chromium (Debian's, driven by Playwright), against the real processes on
PostgreSQL + RabbitMQ: the bot with a card whose buttons work once, the agent with their name, typing
and timestamps, a reload in the middle that loses and repeats nothing, the agent's close, the rating
and the transcript link. The last screenshot is the README's."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx

from tests.browser import chromium, conversation_of, open_chat, say, wait_for_text
from tools.harness.system import System

MESSAGES = "() => [...document.querySelectorAll('#log .msg')].map(e => e.className + ': ' + e.firstChild.textContent)"


def test_a_customer_goes_through_the_whole_chat_in_the_page(system: System, tmp_path: Path) -> None:
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 900, "height": 900})
        open_chat(page, f"{system.http_url}/")
        say(page, "what is my balance")
        wait_for_text(page, "#log .bot", "checking or savings")
        buttons = page.locator("#log .card button")
        assert buttons.count() == 2
        buttons.first.click()  # "Checking"
        wait_for_text(page, "#log .bot", "Checking account balance is")
        assert page.locator("#log .card button:disabled").count() == 2  # a card answers once
        assert page.locator("#log .msg .time").count() >= 4  # every line has its time

        say(page, "I want to talk to an agent")
        wait_for_text(page, "#log .agent", "How can I help")
        assert page.locator("#log .agent .author").first.inner_text() == "Alex"
        conversation_id = conversation_of(page)
        with system.admin() as admin:
            talkdesk_id = admin.get(f"/api/conversations/{conversation_id}").json()["talkdesk_conversation_id"]
        with system.callback() as callback:
            callback.post(f"/talkdesk/conversations/{talkdesk_id}/typing", json={"active": True}).raise_for_status()
        page.wait_for_function("() => document.getElementById('typing').textContent === 'Alex is typing…'",
                               timeout=20_000)

        say(page, "my card was charged twice")
        wait_for_text(page, "#log .agent", "You said: my card was charged twice")
        assert page.locator("#typing").inner_text() == ""  # the agent's message ends the typing
        before = page.evaluate(MESSAGES)
        page.reload()  # mid-conversation: the page resumes after what it showed
        page.wait_for_selector("#text:not([disabled])", timeout=20_000)
        say(page, "are you still there?")
        wait_for_text(page, "#log .agent", "You said: are you still there?")
        after = page.evaluate(MESSAGES)
        assert after[:len(before)] == before  # nothing lost, nothing shown twice
        assert len(after) == len(set(after)) or after.count(after[0]) == 1

        say(page, "close")
        page.wait_for_selector("#rating", timeout=20_000)
        wait_for_text(page, "#log .bot", "How would you rate this chat")
        assert page.locator("#text").is_disabled() and page.locator("#end").is_disabled()
        link = page.locator("#transcript").get_attribute("href")
        assert link and link.startswith(f"/transcript/{conversation_id}?")
        page.check("#rating input[value='5']")
        page.fill("#comment", "Alex was great")
        page.screenshot(path=str(tmp_path / "chat-rating.png"))
        page.click("#rating button[type=submit]")
        wait_for_text(page, "#after", "Thank you for your rating.")
        page.screenshot(path=str(tmp_path / "chat-page.png"), full_page=True)

    with system.admin() as admin:
        rating = admin.get(f"/api/conversations/{conversation_id}").json()["rating"]
    assert (rating["score"], rating["comment"]) == (5, "Alex was great")
    download = httpx.get(f"{system.http_url}{link}", timeout=10)
    assert download.status_code == 200 and "You: are you still there?" in download.text
    if os.environ.get("SCREENSHOTS_DIR"):  # `SCREENSHOTS_DIR=docs/screenshots pytest ...` refreshes the README's
        target = Path(os.environ["SCREENSHOTS_DIR"])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / "chat-page.png", target / "chat-page.png")
