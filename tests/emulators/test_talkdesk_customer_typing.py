"""The customer's typing in the Talkdesk emulator: `POST /digital-connect/conversations/{id}/typing`, which
lexdesk calls while the customer types, and the agent console at /console showing "Customer is typing…".

The emulator is served on 127.0.0.1 in this process (tools.harness.servers.serve_asgi), as in the other
emulator tests; the console is driven in Debian's Chromium (tests/browser.py).
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

import emulators.talkdesk.__main__ as cli
from emulators.talkdesk.app import create_app
from emulators.talkdesk.config import EmulatorConfig
from tests.browser import chromium
from tests.emulators.test_talkdesk_emulator import (
    FAST,
    Receiver,
    assert_talkdesk_error,
    auth,
    create,
    emulator,
    emulator_with_receiver,
    record,
    send,
    wait_until,
)
from tools.harness.servers import serve_asgi

VIEWPORT = {"width": 1366, "height": 820}
TYPING_TEXT = "Customer is typing\u2026"


def post_typing(client: httpx.Client, headers: dict[str, str], conversation_id: str, body: Any) -> httpx.Response:
    return client.post(f"/digital-connect/conversations/{conversation_id}/typing", json=body, headers=headers)


def typing_shown(client: httpx.Client, conversation_id: str, *, listed_too: bool = True) -> bool:
    """What the console is told, from both routes it reads (the list and the conversation), which agree.
    `listed_too=False` while the typing may lapse: the two reads could fall either side of the moment."""
    full = record(client, conversation_id)["customer_typing"]
    assert isinstance(full, bool)
    if listed_too:
        listed = next(c for c in client.get("/_emulator/conversations").json() if c["id"] == conversation_id)
        assert listed["customer_typing"] is full, (listed, full)
    return full


def typing_events(client: httpx.Client, conversation_id: str) -> list[tuple[bool, str | None]]:
    events = record(client, conversation_id)["events"]
    return [(e["active"], e.get("reason")) for e in events if e["type"] == "customer_typing"]


# The route


def test_true_shows_the_customer_typing_and_false_clears_it() -> None:
    with emulator() as client:
        headers = auth(client)
        conversation_id = create(client, headers)
        assert typing_shown(client, conversation_id) is False

        started = post_typing(client, headers, conversation_id, {"active": True})
        assert (started.status_code, started.json()) == (202, {})
        assert typing_shown(client, conversation_id) is True
        # lexdesk refreshes "true" while the customer keeps typing: one event for the lot, not one each.
        for _ in range(3):
            assert post_typing(client, headers, conversation_id, {"active": True}).status_code == 202
        assert typing_events(client, conversation_id) == [(True, None)]

        stopped = post_typing(client, headers, conversation_id, {"active": False})
        assert (stopped.status_code, stopped.json()) == (202, {})
        assert typing_shown(client, conversation_id) is False
        assert post_typing(client, headers, conversation_id, {"active": False}).status_code == 202  # no change
        assert typing_events(client, conversation_id) == [(True, None), (False, "stopped")]
        assert record(client, conversation_id)["status"] == "open"


def test_typing_lapses_after_the_ttl_unless_refreshed() -> None:
    assert EmulatorConfig().customer_typing_ttl == 8.0  # twice lexdesk's ~4 s refresh
    with emulator(customer_typing_ttl=1.5) as client:
        headers = auth(client)
        conversation_id = create(client, headers)
        first = time.monotonic()
        assert post_typing(client, headers, conversation_id, {"active": True}).status_code == 202
        time.sleep(0.9)
        refreshed = time.monotonic()
        assert post_typing(client, headers, conversation_id, {"active": True}).status_code == 202
        time.sleep(max(0.0, first + 1.8 - time.monotonic()))  # past the first "true"'s 1.5 s
        assert typing_shown(client, conversation_id) is True
        wait_until(lambda: not typing_shown(client, conversation_id, listed_too=False), timeout=4)
        assert typing_shown(client, conversation_id) is False
        assert time.monotonic() - refreshed >= 1.4  # it lapsed the ttl after the refresh, not sooner
        # Nobody sent "false": the lapse is not recorded, and a new "true" is a change again.
        assert typing_events(client, conversation_id) == [(True, None)]
        assert post_typing(client, headers, conversation_id, {"active": False}).status_code == 202
        assert typing_events(client, conversation_id) == [(True, None)]
        assert post_typing(client, headers, conversation_id, {"active": True}).status_code == 202
        assert typing_shown(client, conversation_id) is True
        assert typing_events(client, conversation_id) == [(True, None), (True, None)]


def test_the_ttl_has_a_command_line_knob(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[EmulatorConfig | None] = []
    monkeypatch.setattr(cli, "run", lambda host, port, config=None: started.append(config))
    cli.main(["--customer-typing-ttl", "2.5"])
    cli.main([])
    assert [c.customer_typing_ttl if c else None for c in started] == [2.5, 8.0]


def test_a_customer_message_ends_the_typing() -> None:
    with emulator() as client:
        headers = auth(client)
        conversation_id = create(client, headers)
        assert post_typing(client, headers, conversation_id, {"active": True}).status_code == 202
        assert send(client, headers, conversation_id, "Here is what I was typing").status_code == 201
        assert typing_shown(client, conversation_id) is False
        types = [e["type"] for e in record(client, conversation_id)["events"]]
        assert types[-2:] == ["customer_typing", "customer_message"]
        assert typing_events(client, conversation_id) == [(True, None), (False, "message")]
        # A message while nobody is typing records no typing.
        assert send(client, headers, conversation_id, "And one more").status_code == 201
        assert typing_events(client, conversation_id) == [(True, None), (False, "message")]


def test_typing_needs_a_valid_bearer_token() -> None:
    with emulator() as client:
        conversation_id = create(client, auth(client))
        url = f"/digital-connect/conversations/{conversation_id}/typing"
        missing = client.post(url, json={"active": True})
        assert_talkdesk_error(missing, 401, "1001401")
        made_up = client.post(url, json={"active": True}, headers={"Authorization": "Bearer made-up"})
        assert_talkdesk_error(made_up, 401, "1001401")
        basic = client.post(url, json={"active": True}, headers={"Authorization": "Basic Zm9vOmJhcg=="})
        assert_talkdesk_error(basic, 401, "1001401")
        assert typing_shown(client, conversation_id) is False
        assert typing_events(client, conversation_id) == []


def test_unknown_conversation_is_404_and_ended_is_400_3016011() -> None:
    with emulator() as client:
        headers = auth(client)
        unknown = post_typing(client, headers, str(uuid.uuid4()), {"active": True})
        assert_talkdesk_error(unknown, 404, "3016005")

        conversation_id = create(client, headers)
        assert post_typing(client, headers, conversation_id, {"active": True}).status_code == 202
        assert client.delete(f"/digital-connect/conversations/{conversation_id}", headers=headers).status_code == 204
        assert typing_shown(client, conversation_id) is False  # nobody types into an ended conversation
        for active in (True, False):
            ended = post_typing(client, headers, conversation_id, {"active": active})
            assert_talkdesk_error(ended, 400, "3016011")
        assert typing_shown(client, conversation_id) is False

        forgotten = create(client, headers)
        assert client.post(f"/_emulator/conversations/{forgotten}/forget").status_code == 200
        assert_talkdesk_error(post_typing(client, headers, forgotten, {"active": True}), 404, "3016005")


@pytest.mark.parametrize(
    "body",
    [{}, {"active": "yes"}, {"active": "true"}, {"active": 1}, {"active": None}, {"typing": True}],
    ids=["missing", "yes", "string-true", "one", "null", "other-field"],
)
def test_a_bad_body_is_422_naming_active(body: dict[str, Any]) -> None:
    with emulator() as client:
        headers = auth(client)
        conversation_id = create(client, headers)
        error = assert_talkdesk_error(post_typing(client, headers, conversation_id, body), 422, "3016001")
        assert [f["name"] for f in error["fields"]] == ["active"], error
        assert typing_shown(client, conversation_id) is False


def test_a_body_that_is_not_a_json_object_is_422() -> None:
    with emulator() as client:
        headers = auth(client)
        conversation_id = create(client, headers)
        url = f"/digital-connect/conversations/{conversation_id}/typing"
        for content in (b"not json", b"[true]", b""):
            error = assert_talkdesk_error(client.post(url, content=content, headers=headers), 422, "3016001")
            assert [f["name"] for f in error["fields"]] == ["body"], error


def test_injected_faults_answer_before_anything_else_with_no_effect() -> None:
    with emulator() as client:
        headers = auth(client)
        conversation_id = create(client, headers)
        assert client.put("/_emulator/faults", json={"error_rate": 1.0}).status_code == 200
        failed = post_typing(client, headers, conversation_id, {"active": True})
        assert failed.status_code in (500, 503), failed.text
        # Even a request the route would refuse meets the fault first.
        assert post_typing(client, {}, str(uuid.uuid4()), {"active": "yes"}).status_code in (500, 503)
        assert client.put("/_emulator/faults", json={"error_rate": 0.0}).status_code == 200
        assert typing_shown(client, conversation_id) is False
        assert typing_events(client, conversation_id) == []


def test_typing_is_not_kept_in_the_state_file(tmp_path: Path) -> None:
    """A restarted emulator has nobody typing: the deadline is not written (its record of events is)."""
    config = EmulatorConfig(**FAST, state_file=str(tmp_path / "td.sqlite3"))
    with serve_asgi(create_app(config)) as url, httpx.Client(base_url=url, timeout=10) as client:
        headers = auth(client)
        conversation_id = create(client, headers)
        assert post_typing(client, headers, conversation_id, {"active": True}).status_code == 202
        assert typing_shown(client, conversation_id) is True
    with serve_asgi(create_app(config)) as url, httpx.Client(base_url=url, timeout=10) as client:
        assert typing_shown(client, conversation_id) is False
        assert typing_events(client, conversation_id) == [(True, None)]
        assert post_typing(client, headers, conversation_id, {"active": True}).status_code == 202
        assert typing_shown(client, conversation_id) is True


# The console


def test_the_console_shows_the_customer_typing(tmp_path: Path) -> None:
    screenshot = tmp_path / "console-typing.png"
    receiver = Receiver()
    with emulator_with_receiver(receiver, scripted_agent=False) as client, chromium() as browser:
        headers = auth(client)
        conversation_id = create(client, headers)
        assert send(client, headers, conversation_id, "Hello? I still cannot log in.").status_code == 201

        page = browser.new_page(viewport=VIEWPORT)
        page.set_default_timeout(10_000)
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.goto(str(client.base_url) + "/console")
        page.get_by_role("button", name="Dana Visitor").click()
        expect(page.locator("#detail-title")).to_contain_text(conversation_id)
        page.get_by_role("button", name="Take over").click()
        page.fill("#agent-name-input", "Sam Rivera")
        page.keyboard.press("Enter")
        expect(page.locator("#presence")).to_have_text("Sam Rivera joined")

        indicator = page.locator("#customer-typing")
        hint = page.locator("#conversation-list .conv .typing-hint")
        assert indicator.get_attribute("aria-live") == "polite"
        expect(indicator).to_be_hidden()
        expect(hint).to_have_count(0)

        assert post_typing(client, headers, conversation_id, {"active": True}).status_code == 202
        expect(indicator).to_be_visible(timeout=4000)  # the page polls once a second
        expect(indicator).to_have_text(TYPING_TEXT)
        expect(hint).to_have_text(" \u00b7 typing\u2026")
        page.locator("#agent-input").blur()  # no focus ring in the picture
        page.screenshot(path=str(screenshot))
        # The live region is told once: later refreshes leave its text alone, so it is not re-announced.
        page.evaluate(
            """() => { window.typingChanges = 0;
                       new MutationObserver((m) => { window.typingChanges += m.length; })
                         .observe(document.getElementById("customer-typing"),
                                  { childList: true, characterData: true, subtree: true }); }"""
        )
        time.sleep(2.2)
        assert page.evaluate("window.typingChanges") == 0

        assert post_typing(client, headers, conversation_id, {"active": False}).status_code == 202
        expect(indicator).to_be_hidden(timeout=4000)
        expect(indicator).to_have_text("")
        expect(hint).to_have_count(0)

        # Typing again, then the message it was: the message shows, the indicator goes.
        assert post_typing(client, headers, conversation_id, {"active": True}).status_code == 202
        expect(indicator).to_have_text(TYPING_TEXT, timeout=4000)
        assert send(client, headers, conversation_id, "Found it: my email changed.").status_code == 201
        expect(page.locator("#chat .line.customer").last).to_contain_text("Found it: my email changed.")
        expect(indicator).to_be_hidden(timeout=4000)

        assert page.locator("#error").inner_text() == ""
        assert errors == []
    assert screenshot.stat().st_size > 10_000
