"""The agent console at /console, in Chromium: a person takes a conversation lexdesk handed over, types,
replies and ends it, and lexdesk hears each of those through its callbacks.

Screenshots go to the test's tmp_path; with UPDATE_SCREENSHOTS=1 the one of the chat is also written to
docs/screenshots/agent-console.png.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect

from tests.browser import chromium
from tests.emulators.test_talkdesk_emulator import (
    API_KEY,
    CREATE_BODY,
    Receiver,
    auth,
    create,
    emulator_with_receiver,
    send,
    wait_until,
)

ROOT = Path(__file__).resolve().parents[2]
DOCS_SCREENSHOT = ROOT / "docs" / "screenshots" / "agent-console.png"
VIEWPORT = {"width": 1366, "height": 820}
NAME_KEY = "talkdesk-emulator.agent-name"


def body_for(name: str, subject: str, **context: str) -> dict[str, Any]:
    return {**CREATE_BODY, "subject": subject, "context_parameters": {"contact_name": name, **context}}


def open_console(page: Page, base_url: str) -> None:
    page.goto(base_url + "/console")
    expect(page.locator("#conversation-list")).not_to_contain_text("No conversations yet")


def list_names(page: Page) -> list[str]:
    return [text.strip() for text in page.locator("#conversation-list .conv .name").all_inner_texts()]


def test_a_person_takes_types_replies_and_ends_a_conversation(tmp_path: Path) -> None:
    receiver = Receiver()
    with emulator_with_receiver(receiver, scripted_agent=False) as client, chromium() as browser:
        headers = auth(client)
        create(client, headers, body_for("Ravi Patel", "Card declined", contact_reason="billing"))
        ended = create(client, headers, body_for("Lee Chen", "Address change"))
        assert client.delete(f"/digital-connect/conversations/{ended}", headers=headers).status_code == 204
        conversation_id = create(client, headers)  # Dana Visitor, with context and the bot's transcript
        assert send(client, headers, conversation_id, "Hello? I still cannot log in.").status_code == 201

        page = browser.new_page(viewport=VIEWPORT)
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        open_console(page, str(client.base_url))
        assert list_names(page) == ["Dana Visitor", "Ravi Patel", "Lee Chen"]  # open first, newest first

        # Select it: the reply box has the focus; the bot's hand-over is there.
        page.get_by_role("button", name="Dana Visitor").click()
        expect(page.locator("#detail-title")).to_contain_text(conversation_id)
        assert page.evaluate("document.activeElement.id") == "agent-input"
        context = page.locator("#context")
        for text in ("Contact reason", "account", "Contact phone", "+18445852205", "Website location"):
            expect(context).to_contain_text(text)
        previous = page.locator("#previous")
        expect(previous).to_contain_text("How can I help you?")
        expect(previous).to_contain_text("I want to reset my account.")
        expect(page.locator("#subject")).to_contain_text("Reset my account")
        expect(page.locator("#chat")).to_contain_text("Hello? I still cannot log in.")

        # Nobody has joined: the console says so, and lexdesk has heard nothing.
        expect(page.locator("#presence")).to_have_text("Waiting for an agent to take it")
        time.sleep(1.2)  # more than the join delay, and a refresh of the page
        expect(page.locator("#presence")).to_have_text("Waiting for an agent to take it")
        assert "joined" not in page.locator("#detail").inner_text()
        assert receiver.calls == []
        page.screenshot(path=str(tmp_path / "1-waiting.png"))

        # Take it over: the console asks the person's name once and keeps it.
        page.get_by_role("button", name="Take over").click()
        dialog = page.locator("#name-dialog")
        expect(dialog).to_be_visible()
        expect(page.locator("#agent-name-input")).to_have_value("Agent")
        page.fill("#agent-name-input", "Sam Rivera")
        page.screenshot(path=str(tmp_path / "2-name.png"))
        page.keyboard.press("Enter")
        expect(dialog).to_be_hidden()
        wait_until(lambda: receiver.actions(conversation_id) == ["agent-joined"])
        joined = receiver.accepted(conversation_id)[0]
        assert joined.body == {"agent_name": "Sam Rivera"} and joined.api_key == API_KEY
        expect(page.locator("#presence")).to_have_text("Sam Rivera joined")
        expect(page.locator("#chat .line.system")).to_contain_text("Sam Rivera joined")
        expect(page.get_by_role("button", name="Taken over")).to_be_disabled()
        assert page.evaluate(f"localStorage.getItem('{NAME_KEY}')") == "Sam Rivera"
        expect(page.locator("#agent-name-label")).to_have_text("Sam Rivera")
        assert page.evaluate("document.activeElement.id") == "agent-input"

        # Typing: one "true" when it starts, "false" 4 s after the last keystroke.
        page.keyboard.type("Hello", delay=60)
        typed_at = time.monotonic()
        wait_until(lambda: receiver.typing(conversation_id) == [True])
        wait_until(lambda: receiver.typing(conversation_id) == [True, False], timeout=8)
        assert time.monotonic() - typed_at > 3.5
        typing_calls = [c for c in receiver.accepted(conversation_id) if c.action == "typing"]
        assert all(c.api_key == API_KEY for c in typing_calls)

        # Emptying the reply box stops the typing at once.
        page.keyboard.type("!", delay=60)
        wait_until(lambda: receiver.typing(conversation_id) == [True, False, True])
        emptied_at = time.monotonic()
        page.fill("#agent-input", "")  # an input event, as a Backspace over the last character
        wait_until(lambda: receiver.typing(conversation_id) == [True, False, True, False], timeout=3)
        assert time.monotonic() - emptied_at < 2

        # Typing on for 3.5 s: a second "true" after 3 s, not one per keystroke; Enter sends, with no
        # "false" before the message (the message says the typing is over).
        reply = "Hi Dana, I'm Sam. Let me look."
        page.keyboard.type(reply, delay=120)
        page.keyboard.press("Enter")
        sent_at = time.monotonic()
        wait_until(lambda: receiver.messages(conversation_id) == [reply])
        assert receiver.typing(conversation_id) == [True, False, True, False, True, True]
        assert receiver.actions(conversation_id)[-3:] == ["typing", "typing", "messages"]
        message = next(c for c in receiver.accepted(conversation_id) if c.action == "messages")
        assert message.body["author_name"] == "Sam Rivera" and message.api_key == API_KEY
        expect(page.locator("#agent-input")).to_have_value("")

        # The live chat shows each line's author and time; the customer answers.
        assert send(client, headers, conversation_id, "Thank you!").status_code == 201
        agent_line = page.locator("#chat .line.agent").last
        expect(agent_line).to_contain_text(reply)
        expect(agent_line.locator(".author")).to_have_text("Sam Rivera")
        assert agent_line.locator("time").get_attribute("datetime")
        customer_line = page.locator("#chat .line.customer").last
        expect(customer_line).to_contain_text("Thank you!")
        expect(customer_line.locator(".author")).to_have_text("Dana Visitor")
        expect(page.locator("#conversation-list")).to_contain_text("with Sam Rivera")
        page.locator("#agent-input").blur()  # no focus ring in the picture
        page.screenshot(path=str(tmp_path / "3-chat.png"))
        time.sleep(max(0.0, 4.5 - (time.monotonic() - sent_at)))
        assert receiver.typing(conversation_id) == [True, False, True, False, True, True]  # no late "false"

        # End it.
        page.get_by_role("button", name="End conversation").click()
        wait_until(lambda: receiver.actions(conversation_id)[-1:] == ["close"])
        expect(page.locator("#presence")).to_have_text("Ended by the agent")
        expect(page.locator("#chat")).to_contain_text("The agent ended the conversation")
        expect(page.locator("#agent-input")).to_be_disabled()
        expect(page.locator("#end-button")).to_be_disabled()
        assert list_names(page) == ["Ravi Patel", "Dana Visitor", "Lee Chen"]
        page.screenshot(path=str(tmp_path / "4-ended.png"))
        assert page.locator("#error").inner_text() == ""
        assert errors == []

    for name in ("1-waiting", "2-name", "3-chat", "4-ended"):
        assert (tmp_path / f"{name}.png").stat().st_size > 10_000, name
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        DOCS_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(tmp_path / "3-chat.png", DOCS_SCREENSHOT)


def test_the_console_is_usable_with_a_keyboard_and_a_screen_reader() -> None:
    receiver = Receiver()
    with emulator_with_receiver(receiver, scripted_agent=False) as client, chromium() as browser:
        headers = auth(client)
        conversation_id = create(client, headers)
        assert send(client, headers, conversation_id, "first").status_code == 201
        page = browser.new_page(viewport=VIEWPORT)
        open_console(page, str(client.base_url))

        unlabelled = page.evaluate(
            """() => [...document.querySelectorAll("input, textarea, select")]
                .filter((field) => ![...field.labels].some((label) => label.textContent.trim())
                                   && !field.getAttribute("aria-label"))
                .map((field) => field.id || field.name)"""
        )
        assert unlabelled == []
        assert page.locator("#chat").get_attribute("aria-live") == "polite"
        assert page.locator("#presence").get_attribute("role") == "status"
        assert page.locator("[onclick], a[href='#'], div[tabindex='0'], span[tabindex='0']").count() == 0
        assert page.locator("#conversation-list li button.conv").count() == 1

        # From the keyboard alone: to the conversation, Enter, and the focus is in the reply box.
        page.locator("#change-name").focus()
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.dataset.id") == conversation_id
        page.keyboard.press("Enter")
        expect(page.locator("#detail-title")).to_contain_text(conversation_id)
        wait_until(lambda: page.evaluate("document.activeElement.id") == "agent-input")

        # Lines already shown stay the same nodes across refreshes: a screen reader hears each line once.
        page.evaluate("document.querySelector('#chat .line.customer').dataset.marked = 'yes'")
        assert send(client, headers, conversation_id, "second").status_code == 201
        expect(page.locator("#chat .line.customer")).to_have_count(2)
        time.sleep(1.2)
        assert page.locator("#chat .line.customer").first.get_attribute("data-marked") == "yes"
        assert page.evaluate("document.activeElement.id") == "agent-input"  # refreshes keep the focus

        # Sending without taking over first asks the name, joins, then sends; Escape on the name cancels.
        page.keyboard.type("Hello there")
        page.keyboard.press("Enter")
        expect(page.locator("#name-dialog")).to_be_visible()
        page.keyboard.press("Escape")
        expect(page.locator("#name-dialog")).to_be_hidden()
        time.sleep(0.3)
        assert receiver.calls == []
        page.locator("#agent-input").focus()
        page.keyboard.press("Enter")
        expect(page.locator("#agent-name-input")).to_be_focused()
        page.keyboard.press("Enter")  # the dialog's default name, "Agent"
        wait_until(lambda: receiver.messages(conversation_id) == ["Hello there"])
        assert receiver.actions(conversation_id) == ["agent-joined", "messages"]
        assert receiver.accepted(conversation_id)[0].body == {"agent_name": "Agent"}


def test_with_the_scripted_agent_the_console_says_joined_only_once_alex_has() -> None:
    receiver = Receiver()
    with emulator_with_receiver(receiver, agent_join_delay=2.0) as client, chromium() as browser:
        conversation_id = create(client, auth(client))
        page = browser.new_page(viewport=VIEWPORT)
        open_console(page, str(client.base_url))
        page.get_by_role("button", name="Dana Visitor").click()
        expect(page.locator("#presence")).to_have_text("Waiting for an agent to take it")
        assert receiver.calls == []
        expect(page.locator("#presence")).to_have_text("Alex joined", timeout=5000)
        assert receiver.actions(conversation_id)[0] == "agent-joined"
        expect(page.locator("#chat")).to_contain_text("Hi, this is Alex")


def test_the_fault_knobs_still_apply_from_the_console() -> None:
    with emulator_with_receiver(Receiver(), scripted_agent=False) as client, chromium() as browser:
        page = browser.new_page(viewport=VIEWPORT)
        page.goto(str(client.base_url) + "/console")
        page.get_by_text("Fault knobs").click()
        expect(page.get_by_label("latency (s)")).to_have_value("0")  # loaded from the emulator
        page.get_by_label("rate_limit_rate").fill("0.25")
        page.get_by_role("button", name="Apply faults").click()
        wait_until(lambda: client.get("/_emulator/faults").json()["rate_limit_rate"] == 0.25)
        assert page.locator("#error").inner_text() == ""
