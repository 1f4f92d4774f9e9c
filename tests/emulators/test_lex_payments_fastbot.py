"""The PaymentsBot with short still-waiting timings (tests/emulators/bots/paymentbot_fast.json, PAYFASTBOT).

Tests of lexdesk's wait-and-continue reminders cannot wait 15 s per reminder, so they point the
emulator at this copy, which reminds every 2 s and gives up after 7 s. It lives outside
``emulators/lex/bots`` (only real bots ship there) and must stay the PaymentsBot in every other
respect, or such tests would drift from the bot they stand in for; both are checked here, as is the
way to serve it next to the real bots (``--bots-dir`` given twice, or ``create_app([...])``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from emulators.lex.app import DEFAULT_BOTS_DIR, create_app
from emulators.lex.botdef import BotDefinitionError, load_bots_dirs
from shared.clients.lex_models import LexModels
from tests.emulators.aws import lex_client
from tools.harness.servers import free_port, serve_asgi

REPO = Path(__file__).resolve().parents[2]
FAST_DIR = Path(__file__).resolve().parent / "bots"
FAST = "PAYFASTBOT"
FAKE_AWS = {"aws_access_key_id": "x", "aws_secret_access_key": "x"}


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def test_the_fast_bot_is_the_payments_bot_with_short_timings() -> None:
    real, fast = load(DEFAULT_BOTS_DIR / "paymentbot.json"), load(FAST_DIR / "paymentbot_fast.json")
    assert (fast["botId"], real["botId"]) == (FAST, "PAYMENTBOT")
    timings = []
    for bot in (real, fast):
        for key in ("botId", "botName", "description"):
            bot.pop(key)
        slots = [slot for intent in bot["intents"] for slot in intent.get("slots", [])]
        still = next(s["waitAndContinue"]["stillWaitingResponse"] for s in slots if "waitAndContinue" in s)
        timings.append((still.pop("frequencyInSeconds"), still.pop("timeoutInSeconds")))
    assert timings == [(15, 180), (2, 7)]
    assert fast == real


def test_only_real_bots_ship_with_the_emulator() -> None:
    assert set(load_bots_dirs([DEFAULT_BOTS_DIR])) == {"BANKINGBOT", "PAYMENTBOT"}
    assert set(load_bots_dirs([DEFAULT_BOTS_DIR, FAST_DIR])) == {"BANKINGBOT", "PAYMENTBOT", FAST}
    with pytest.raises(BotDefinitionError, match="defined twice"):
        load_bots_dirs([DEFAULT_BOTS_DIR, DEFAULT_BOTS_DIR])


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with serve_asgi(create_app([DEFAULT_BOTS_DIR, FAST_DIR])) as base_url:
        yield base_url


def test_the_fast_bot_waits_like_the_payments_bot(url: str) -> None:
    runtime = lex_client(url)
    session = f"fast-{uuid.uuid4().hex}"
    for text in ("I'd like to make a payment on my account", "1234", "$100"):
        runtime.recognize_text(botId=FAST, botAliasId="TSTALIASID", localeId="en_US", sessionId=session, text=text)
    waiting = runtime.recognize_text(botId=FAST, botAliasId="TSTALIASID", localeId="en_US", sessionId=session,
                                     text="Can you wait a minute?")
    assert [m["content"] for m in waiting["messages"]] == ["Sure"]
    assert waiting["sessionState"]["intent"]["state"] == "Waiting"


def test_lexdesk_reads_the_short_timings(url: str) -> None:
    models = LexModels(bot_id=FAST, bot_alias_id="TSTALIASID", locale_id="en_US", region="us-east-1",
                       endpoint_url=url, credentials=FAKE_AWS)
    prompt = models.slot("ProcessPayment", "CreditCardNumber")
    assert prompt is not None and prompt.wait_and_continue is not None
    wait = prompt.wait_and_continue
    assert (wait.frequency_seconds, wait.timeout_seconds) == (2.0, 7.0)
    assert wait.still_waiting == ("Take your time. Let me know when you are ready.",)


@pytest.mark.parametrize("command", [["-m", "emulators.lex"], ["-m", "lexdesk", "emulate", "lex"]])
def test_bots_dir_flags_serve_the_real_bots_and_the_fast_one(command: list[str]) -> None:
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LEXDESK_")}
    args = [*command, "--port", str(port), "--bots-dir", str(DEFAULT_BOTS_DIR), "--bots-dir", str(FAST_DIR)]
    process = subprocess.Popen([sys.executable, *args], cwd=REPO, env=environ, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                output = process.stdout.read() if process.stdout else ""
                pytest.fail(f"{args} exited with {process.returncode}: {output}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"{args} did not answer /healthz within 30s")
            time.sleep(0.1)
        models = lex_client(f"http://127.0.0.1:{port}", "lexv2-models")
        assert {b["botId"] for b in models.list_bots()["botSummaries"]} == {"BANKINGBOT", "PAYMENTBOT", FAST}
    finally:
        process.terminate()
        process.wait(timeout=10)
