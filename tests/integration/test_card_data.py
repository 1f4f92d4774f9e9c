"""Card data never stored or handed on in clear (issue 7, finding 6), through the real processes:
a card number in the hello's own fields, the PaymentsBot's expiry date, and what the chat page keeps
in the browser's sessionStorage."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page
from sqlalchemy import select

from shared.db import session_scope
from shared.models import Conversation, Message
from tests.browser import chromium, open_chat, say, wait_for_text
from tests.integration.journeys import talkdesk_id, talkdesk_record
from tests.integration.private import private_database, private_vhost
from tools.harness.customer import Customer
from tools.harness.system import System

CARD = "4111 1111 1111 1111"
OTHER_CARD = "5555-5555-5555-4444"
CVV = "737"
EXPIRY = "12/27"
CLEAR_FORMS = (CARD, CARD.replace(" ", ""), "4111-1111-1111-1111", OTHER_CARD, OTHER_CARD.replace("-", ""),
               "5555 5555 5555 4444")


def _no_clear_card(text: str) -> bool:
    return not any(clear in text for clear in CLEAR_FORMS)


def _row_text(database_url: str, conversation_id: str) -> tuple[dict[str, Any], list[Message]]:
    with session_scope(database_url) as session:
        conversation = session.get_one(Conversation, conversation_id)
        fields = {"customer_name": conversation.customer_name, "customer_email": conversation.customer_email,
                  "locale": conversation.locale, "attributes": conversation.attributes}
        messages = list(session.scalars(select(Message).where(Message.conversation_id == conversation_id)
                                        .order_by(Message.seq)))
    return fields, messages


def test_a_card_number_in_the_hello_is_stored_and_handed_to_the_agent_masked(system: System) -> None:
    """The attack: a customer (or a form that pre-fills the chat) puts a card number in the name, the
    email, the locale or any attribute. It was stored as given and sent to Talkdesk as the subject,
    contact_person, contact_name and website_location."""
    async def journey() -> None:
        customer = Customer()
        await customer.hello(
            system.edge_urls[0],
            customer={"name": f"Ana {CARD}", "email": f"{CARD.replace(' ', '')}@example.com"},
            locale="4222222222222",  # a 13-digit card number: masked, and still fits the 32-character column
            attributes={"page": f"/pay?card={CARD.replace(' ', '')}", "phone": "+1 415 555 0100",
                        "cart": {"items": [{"note": f"pay with {OTHER_CARD}"}]}, OTHER_CARD: "as a key"})
        await customer.say("I want to talk to an agent")
        await customer.wait_event("agent_joined")
        assert customer.welcome is not None
        fields, _ = _row_text(system.database_url, customer.welcome["conversation_id"])
        assert fields == {
            "customer_name": "Ana [card ending 1111]",
            "customer_email": "[card ending 1111]@example.com",
            "locale": "[card ending 2222]",
            "attributes": {"page": "/pay?card=[card ending 1111]", "phone": "+1 415 555 0100",
                           "cart": {"items": [{"note": "pay with [card ending 4444]"}]},
                           "[card ending 4444]": "as a key"},
        }
        record = talkdesk_record(system, talkdesk_id(system, customer))
        handed = json.dumps(record)
        assert _no_clear_card(handed) and "4222222222222" not in handed, handed
        assert record["request"]["subject"] == "Chat with Ana [card ending 1111]"
        assert record["request"]["contact_person"] == {"email": "[card ending 1111]@example.com"}
        assert record["context_parameters"]["contact_name"] == "Ana [card ending 1111]"
        assert record["context_parameters"]["website_location"] == "/pay?card=[card ending 1111]"
        assert record["context_parameters"]["contact_phone"] == "+1 415 555 0100"  # not a card: untouched
        await customer.disconnect()

    asyncio.run(journey())


@pytest.fixture(scope="module")
def payments(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    """The PaymentsBot (card number, CVV and expiry slots) on PostgreSQL and RabbitMQ of its own (see
    private.py); one worker process for every queue keeps the two cores free for the rest."""
    with private_database("payments") as database, private_vhost("payments") as broker, \
            System(tmp_path_factory.mktemp("payments"), database, broker,
                   worker_queues=("routing,lex,talkdesk,timers",),
                   # Two tabs a conversation, so that the tabs test can open a third.
                   extra_env={"LEXDESK_LEX_BOT_ID": "PAYMENTBOT",
                              "LEXDESK_MAX_SOCKETS_PER_CONVERSATION": "2"}) as running:
        yield running


PAYMENT_STEPS = [
    ("I want to make a payment", "account ID"),
    ("1234", "How much"),
    ("$250", "credit card number"),
    (CARD, "is that correct?"),
    ("yes", "expiration date"),
    (EXPIRY, "security code"),
]
STORED_ANSWERS = ["I want to make a payment", "1234", "$250", "[redacted]", "yes", "[redacted]"]
CLOSING = "I will go ahead and process the $250 payment on your account using the card ending in 1111."


def test_the_card_expiry_date_is_never_stored_in_clear(payments: System) -> None:
    """The PaymentsBot's ExpirationDate answer was stored as typed (and its slot value, 2027-12-31, on
    the row), next to the card's last four: with the number, it is what a payment needs."""
    async def journey() -> str:
        customer = Customer()
        welcome = await customer.hello(payments.edge_urls[0])
        for text, answer in PAYMENT_STEPS:
            await customer.say(text)
            await customer.wait_text("bot", answer)
        await customer.say(CVV)
        prompt = await customer.wait_text("bot", CLOSING)
        # The prompts whose answers are card data say so (for the chat page); the others do not.
        flagged = [f["text"] for f in customer.shown if f["type"] == "message" and f.get("lex", {}).get(
            "sensitive_answer")]
        assert flagged == ["What is the credit card number you would like to use?",
                           "What is the card's expiration date?",
                           "What is the three digit security code (CVV) on the back of the card?"]
        assert "sensitive_answer" not in prompt["lex"]
        await customer.disconnect()
        return str(welcome["conversation_id"])

    conversation_id = asyncio.run(journey())
    _, messages = _row_text(payments.database_url, conversation_id)
    customer_rows = [m for m in messages if m.sender == "customer"]
    assert [m.body for m in customer_rows] == [*STORED_ANSWERS, "[redacted]"]
    assert all(m.status == "delivered" and m.sealed_body is None for m in customer_rows)
    stored = json.dumps([[m.body, m.sealed_body, m.payload, m.last_error] for m in messages])
    assert EXPIRY not in stored and "2027-12" not in stored, stored
    assert _no_clear_card(stored) and f'"{CVV}"' not in stored
    slots = customer_rows[-1].payload["lex"]["slots"]
    assert slots["ExpirationDate"] == slots["CVV"] == slots["CreditCardNumber"] == "[redacted]"
    assert slots["PaymentAmount"] == "250"


# A line's text without its time (the page shows when each line came).
SHOWN = ("() => [...document.querySelectorAll('#log .msg')].map(e => { const c = e.cloneNode(true); "
         "c.querySelectorAll('.time').forEach(t => t.remove()); return {cls: e.className, text: c.textContent}; })")
STORED = "() => Object.fromEntries(Object.keys(sessionStorage).map(k => [k, sessionStorage.getItem(k)]))"
SHARED = "() => Object.fromEntries(Object.keys(localStorage).map(k => [k, localStorage.getItem(k)]))"


def _open_chat(page: Page, system: System) -> None:
    open_chat(page, f"{system.http_url}/")


def _say(page: Page, text: str, answer: str) -> None:
    say(page, text)
    wait_for_text(page, "#log .bot, #log .agent", answer)


def test_the_chat_page_keeps_no_card_data_in_session_storage(payments: System, tmp_path: Path) -> None:
    """The page kept its rendered log, card number and CVV included, in sessionStorage (readable by any
    script on the site, and left behind on a shared computer) and showed it again after a reload.
    Driven in Chromium: the page served by the callback app, against the real edge."""
    with chromium() as browser:
        page = browser.new_page()
        _open_chat(page, payments)
        for text, answer in PAYMENT_STEPS:
            _say(page, text, answer)
        stored: dict[str, str] = page.evaluate(STORED)
        shared: dict[str, str] = page.evaluate(SHARED)
        shown_before = page.evaluate(SHOWN)
        page.screenshot(path=str(tmp_path / "payment-before-reload.png"))
        page.reload()
        page.wait_for_selector("#text:not([disabled])", timeout=20_000)
        restored = page.evaluate(SHOWN)
        _say(page, CVV, CLOSING)
        shown_after = page.evaluate(SHOWN)
        page.screenshot(path=str(tmp_path / "payment-after-reload.png"))

    assert list(stored) == ["lexdesk.chat"]
    assert _no_clear_card(json.dumps(stored)) and EXPIRY not in json.dumps(stored), stored
    kept = json.loads(stored["lexdesk.chat"])
    assert set(kept) == {"conversation", "lastSeq", "maskNext", "entries"}
    # What the site's tabs share (localStorage) is the conversation and its resume token, nothing more.
    assert list(shared) == ["lexdesk.session"]
    assert set(json.loads(shared["lexdesk.session"])) == {"conversation", "token"}
    assert [e["text"] for e in kept["entries"] if e["cls"] == "customer"] == STORED_ANSWERS
    # The message ids are random UUIDs, which can hold "737" by chance: what is checked is everything else.
    assert CVV not in json.dumps([{k: v for k, v in e.items() if k != "id"} for e in kept["entries"]])
    # What the page shows (live, and restored after the reload) is what the server stored.
    for lines in (shown_before, restored):
        assert [line["text"] for line in lines if "customer" in line["cls"]] == STORED_ANSWERS
        assert _no_clear_card(json.dumps(lines)) and EXPIRY not in json.dumps(lines)
    assert restored == shown_before
    # And the chat goes on after the reload: it resumed with the token it kept.
    assert any(CLOSING in line["text"] for line in shown_after[len(restored):])


def test_a_card_number_the_customer_types_is_masked_in_what_the_page_keeps(payments: System) -> None:
    """Outside a card prompt, a card number in free text is masked by the page as the server masks it."""
    with chromium() as browser:
        page = browser.new_page()
        _open_chat(page, payments)
        _say(page, f"is {CARD} accepted?", "make a payment or ask for your balance")
        stored = page.evaluate(STORED)
        shown = page.evaluate(SHOWN)
    kept = json.loads(stored["lexdesk.chat"])
    assert [e["text"] for e in kept["entries"] if e["cls"] == "customer"] == ["is [card ending 1111] accepted?"]
    assert _no_clear_card(json.dumps(stored)) and _no_clear_card(json.dumps(shown))


def test_two_tabs_show_the_chat_and_the_card_data_masked_in_both(payments: System, tmp_path: Path) -> None:
    """Two tabs of the site (one browser: they share localStorage): the second opens on the chat of the
    first and shows it whole, the customer's lines too, with card data masked as stored; the customer
    writes in either and both show it; neither is pushed out."""
    with chromium() as browser:
        context = browser.new_context()
        first = context.new_page()
        _open_chat(first, payments)
        _say(first, "I want to make a payment", "account ID")
        _say(first, "1234", "How much")
        _say(first, "$250", "credit card number")
        second = context.new_page()
        _open_chat(second, payments)
        for page in (first, second):  # every window says the chat is open in two
            wait_for_text(page, "#tabs", "open in 2 windows")
        wait_for_text(second, "#log .customer", "$250")
        wait_for_text(second, "#log .bot", "credit card number")
        # The card number typed in the second tab is masked in the first as the server stored it.
        _say(second, CARD, "is that correct?")
        wait_for_text(first, "#log .bot", "is that correct?")
        wait_for_text(first, "#log .customer", "[redacted]")
        _say(first, "yes", "expiration date")
        wait_for_text(second, "#log .customer", "yes")
        shown = {name: [line["text"] for line in page.evaluate(SHOWN) if "customer" in line["cls"]]
                 for name, page in (("first", first), ("second", second))}
        for page in (first, second):
            assert page.evaluate("document.getElementById('state').textContent") != "open in another window"
        first.screenshot(path=str(tmp_path / "tab-1.png"))
        second.screenshot(path=str(tmp_path / "tab-2.png"))
        stored = [page.evaluate(STORED) for page in (first, second)]

        # A third tab, one more than this system allows (LEXDESK_MAX_SOCKETS_PER_CONVERSATION=2): the oldest
        # says so and waits for the customer instead of reconnecting, which would push out another.
        third = context.new_page()
        _open_chat(third, payments)
        first.wait_for_function("document.getElementById('state').textContent === 'open in another window'",
                                timeout=20_000)
        first.screenshot(path=str(tmp_path / "superseded.png"))
        assert first.is_disabled("#text")
        _say(third, "11/29", "security code")
        wait_for_text(second, "#log .bot", "security code")  # the second tab is still in it
        first.wait_for_timeout(1000)
        assert first.evaluate("document.getElementById('state').textContent") == "open in another window"
        first.click("text=Continue the chat in this window")
        first.wait_for_selector("#text:not([disabled])", timeout=20_000)
        wait_for_text(first, "#log .bot", "security code")  # caught up with what it missed
        second.wait_for_function("document.getElementById('state').textContent === 'open in another window'",
                                 timeout=20_000)
    assert shown["first"] == shown["second"] == ["I want to make a payment", "1234", "$250", "[redacted]", "yes"]
    assert _no_clear_card(json.dumps(stored))
    if os.environ.get("SCREENSHOTS_DIR"):  # `SCREENSHOTS_DIR=docs/screenshots pytest ...` refreshes the README's
        shutil.copy(tmp_path / "tab-1.png", Path(os.environ["SCREENSHOTS_DIR"]) / "two-tabs.png")
