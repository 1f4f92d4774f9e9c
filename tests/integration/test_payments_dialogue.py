"""The Lex streaming article's conversation over chat, through the real processes on PostgreSQL +
RabbitMQ: the PaymentsBot's dialogue line by line, wait-and-continue driven by the bot's own
configuration (a copy of the PaymentsBot reminding every 2 s and giving up after 7 s:
tests/emulators/bots/paymentbot_fast.json), a wait that times out and asks for the card again, an
answer cut short by the customer, and no card number, CVV or expiry date in the database or the logs."""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tools.harness.backends import Backend, backend
from tools.harness.customer import Customer, Frame
from tools.harness.system import System

REPO = Path(__file__).resolve().parents[2]
FREQUENCY, TIMEOUT = 2.0, 7.0  # paymentbot_fast.json's stillWaitingResponse
STILL_WAITING = "Take your time. Let me know when you are ready."
CARD_PROMPT = "What is the credit card number you would like to use?"


@dataclass
class Payments:
    system: System
    shape: Backend


@pytest.fixture(scope="module")
def payments(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Payments]:
    workdir = tmp_path_factory.mktemp("payments-dialogue")
    with backend("postgres", workdir, label="dialogue") as shape, System(
            workdir, shape.database_url, shape.broker_url,
            extra_env={"LEXDESK_LEX_BOT_ID": "PAYFASTBOT", "LEXDESK_BOT_TYPING_DELAY": "1"},
            lex_args=["--bots-dir", str(REPO / "emulators/lex/bots"),
                      "--bots-dir", str(REPO / "tests/emulators/bots")]) as system:
        yield Payments(system, shape)


class Dialogue:
    """A customer's side of the chat, each bot line with the time it arrived."""

    def __init__(self, customer: Customer) -> None:
        self.customer = customer
        self.began = time.monotonic()
        self.lines: list[tuple[float, str, str]] = []  # (seconds since the start, who, text)
        self._seen: set[int] = set()  # the seqs of the bot lines read so far

    async def say(self, text: str) -> None:
        self.lines.append((time.monotonic() - self.began, "customer", text))
        await self.customer.say(text)

    async def bot(self, contains: str, timeout: float = 20.0) -> Frame:
        """The next bot line (after what was already read) containing `contains`."""
        after = max((f["seq"] for f in self.customer.shown if self._read(f)), default=0)
        frame = await self.customer.wait_shown(
            lambda f: f["seq"] > after and f["type"] == "message" and f["from"] == "bot"
            and contains.lower() in f["text"].lower(), timeout)
        self.lines.append((time.monotonic() - self.began, "bot", frame["text"]))
        self._seen.add(frame["seq"])
        return frame

    def _read(self, frame: Frame) -> bool:
        return frame["seq"] in self._seen

    def at(self, text: str) -> list[float]:
        return [at for at, who, said in self.lines if who == "bot" and said == text]

    def transcript(self) -> str:
        return "\n".join(f"{at:6.1f}s  {who:>8}: {text}" for at, who, text in self.lines)


def assert_nothing_in_clear(payments: Payments, *secrets: str) -> None:
    """Neither a dump of the database nor any process's log holds them (digits in any grouping)."""
    dump = subprocess.run(["pg_dump", "-h", "127.0.0.1", "-U", "postgres", str(payments.shape.database)],
                          capture_output=True, text=True, timeout=120, check=True).stdout
    logs = "\n".join(p.read_text(errors="replace") for p in (payments.system.workdir / "logs").glob("*.log"))
    for where, text in (("the database dump", dump), ("the logs", logs)):
        for secret in secrets:
            digits = re.sub(r"\D", "", secret)
            pattern = r"(?<![\w-])" + r"[\s./-]*".join(digits) + r"(?![\w-])" if digits else re.escape(secret)
            found = re.search(pattern, text)
            assert found is None, f"{secret!r} is in {where}: …{text[max(0, found.start() - 80):found.end() + 80]}…"


def test_the_articles_dialogue_runs_as_written_with_a_wait_and_a_continue(payments: Payments) -> None:
    system = payments.system

    async def journey() -> Dialogue:
        customer = Customer()
        await customer.hello(system.edge_urls[0], customer={"name": "Article Caller"})
        talk = Dialogue(customer)
        await talk.say("I'd like to make a payment on my account")
        await talk.bot("Sure. What is your account ID?")
        await talk.say("Yes the account ID is 1234")
        await talk.bot("The balance due is $100. How much would you like to pay today?")
        await talk.say("$100")
        await talk.bot(CARD_PROMPT)
        await talk.say("Can you wait a minute?")
        await talk.bot("Sure")
        waiting_since = talk.lines[-1][0]
        await customer.wait_event("waiting")
        await talk.bot(STILL_WAITING, timeout=FREQUENCY + 5)
        await talk.bot(STILL_WAITING, timeout=FREQUENCY + 5)
        await talk.say("Ok I am back")
        await talk.bot("Ok please go ahead")
        await talk.say("1234 5678 1234 5678")
        # Read back for the customer to check, by its last four digits only (it is stored as shown).
        await talk.bot("Just to confirm, the card number is [card ending 5678], is that correct?")
        await talk.say("Yes")
        await talk.bot("What is the card's expiration date?")
        await talk.say("11/29")
        await talk.bot("What is the three digit security code (CVV) on the back of the card?")
        await talk.say("739")
        await talk.bot("I will go ahead and process the $100 payment on your account using the card ending in 5678.")
        confirmation = await talk.bot("The payment went through. Your confirmation code is")
        assert re.fullmatch(r"The payment went through\. Your confirmation code is [A-Z0-9]{6}\.?",
                            confirmation["text"])

        # Reminders at the bot's frequency, two of them, then none: the customer's "Ok I am back"
        # cancelled the series (a third would have come at 6 s, the timeout's prompt at 7 s).
        reminders = [at - waiting_since for at in talk.at(STILL_WAITING)]
        assert len(reminders) == 2, talk.transcript()
        assert FREQUENCY * 0.75 <= reminders[0] <= FREQUENCY + 2.5, reminders
        assert FREQUENCY * 0.75 <= reminders[1] - reminders[0] <= FREQUENCY + 2.5, reminders
        assert CARD_PROMPT not in [text for _, who, text in talk.lines[talk.lines.index(
            next(line for line in talk.lines if line[2] == "Ok please go ahead")):] if who == "bot"]
        await customer.disconnect()
        return talk

    talk = asyncio.run(journey())
    print("\nThe article's dialogue as the customer saw it:\n" + talk.transcript())
    (payments.system.workdir / "dialogue.txt").write_text(talk.transcript())
    # Typed at the card prompt but no card data: kept as written.
    with payments.system.admin() as admin:
        transcript = admin.get(f"/api/conversations/{talk.customer.welcome['conversation_id']}").json()["transcript"]
    customer_lines = [m["text"] for m in transcript if m["sender"] == "customer"]
    assert "Can you wait a minute?" in customer_lines and "Ok I am back" in customer_lines
    assert customer_lines.count("[redacted]") == 3  # the card number, the expiry and the CVV
    assert_nothing_in_clear(payments, "1234 5678 1234 5678", "11/29", "2029-11", "739")


def test_a_wait_that_times_out_asks_for_the_card_again_and_a_quick_reply_cuts_the_bot_short(
        payments: Payments) -> None:
    system = payments.system

    async def journey() -> Dialogue:
        customer = Customer()
        await customer.hello(system.edge_urls[0], customer={"name": "Slow Caller"})
        talk = Dialogue(customer)
        for line, answer in (("I want to make a payment", "account ID"), ("4321", "How much would you like"),
                             ("50 dollars", CARD_PROMPT), ("hold on", "Sure")):
            await talk.say(line)
            await talk.bot(answer)
        waiting_since = talk.lines[-1][0]
        again = await talk.bot(CARD_PROMPT, timeout=TIMEOUT + 5)  # the slot's own prompt, at the timeout
        asked_again = talk.lines[-1][0] - waiting_since
        assert TIMEOUT - 1 <= asked_again <= TIMEOUT + 3, talk.transcript()
        assert again["lex"]["dialog_action"] == "ElicitSlot" and again["lex"]["sensitive_answer"] is True
        assert customer.texts("bot").count(STILL_WAITING) == 3, customer.texts("bot")  # at 2, 4 and 6 s
        await talk.say("4000 0566 5566 5556")
        await talk.bot("Just to confirm, the card number is [card ending 5556]")
        await talk.say("yes")
        await talk.bot("expiration date")
        await talk.say("12/30")
        await talk.bot("security code")
        await talk.say("246")
        await talk.bot("I will go ahead and process the $50 payment")
        # The bot's closing has a second message, paced a second behind: writing at once cuts it.
        await talk.say("thanks, bye")
        interrupted = await customer.wait_event("interrupted")
        assert [text[:35] for text in interrupted["cut"]] == ["The payment went through. Your conf"]
        await asyncio.sleep(2)
        assert not any("The payment went through" in t for t in customer.texts("bot"))
        await customer.disconnect()
        return talk

    talk = asyncio.run(journey())
    print("\nA wait that timed out, then an interruption:\n" + talk.transcript())
    assert_nothing_in_clear(payments, "4000 0566 5566 5556", "12/30", "2030-12", "246")
