"""Outage injection of the Lex V2 emulator (``/_emulator/faults`` and the ``--error-rate`` flags).

Everything is checked the way lexdesk meets it: through real boto3 ``lexv2-runtime`` and lexdesk's own
:class:`shared.clients.lex.LexClient`, against the emulator on a loopback port (uvicorn in a thread, as
the other emulator tests, and a real subprocess for the command-line flags).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from emulators.lex.app import create_app
from shared.clients.errors import TransientError
from shared.clients.lex import LexClient
from tests.emulators.aws import lex_client
from tools.harness.servers import free_port, serve_asgi

REPO = Path(__file__).resolve().parents[2]
PAY = "PAYMENTBOT"
ALIAS = "TSTALIASID"
LOCALE = "en_US"
OUTAGE_CODES = {500: "InternalFailureException", 503: "ServiceUnavailableException"}


@pytest.fixture
def lex_url() -> Iterator[str]:
    """A fresh emulator per test: the knobs are process-wide state."""
    with serve_asgi(create_app(seed=7)) as url:
        yield url


def runtime(url: str) -> Any:
    return lex_client(url)


def lexdesk_client(url: str) -> LexClient:
    return LexClient(bot_id=PAY, bot_alias_id=ALIAS, locale_id=LOCALE, region="us-east-1", endpoint_url=url,
                     timeout=5.0, credentials={"aws_access_key_id": "x", "aws_secret_access_key": "x"})


def put_faults(url: str, **knobs: Any) -> dict[str, Any]:
    response = httpx.put(f"{url}/_emulator/faults", json=knobs)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def say(client: Any, session: str, text: str) -> dict[str, Any]:
    response: dict[str, Any] = client.recognize_text(
        botId=PAY, botAliasId=ALIAS, localeId=LOCALE, sessionId=session, text=text
    )
    return response


def session_id() -> str:
    return f"faults-{uuid.uuid4().hex}"


# ----------------------------------------------------------------------------------------------------------
# The control route


def test_faults_default_to_off_and_update_partially(lex_url: str) -> None:
    assert httpx.get(f"{lex_url}/_emulator/faults").json() == {"error_rate": 0.0, "throttle_rate": 0.0, "latency": 0.0}
    assert put_faults(lex_url, error_rate=0.25) == {"error_rate": 0.25, "throttle_rate": 0.0, "latency": 0.0}
    assert put_faults(lex_url, latency=0.01) == {"error_rate": 0.25, "throttle_rate": 0.0, "latency": 0.01}
    assert put_faults(lex_url) == {"error_rate": 0.25, "throttle_rate": 0.0, "latency": 0.01}
    assert httpx.get(f"{lex_url}/_emulator/faults").json()["error_rate"] == 0.25


@pytest.mark.parametrize(
    "body",
    [{"error_rate": 1.5}, {"error_rate": -0.1}, {"throttle_rate": "lots"}, {"latency": -1}, {"stall_rate": 0.5}],
)
def test_a_bad_fault_update_is_422_and_changes_nothing(lex_url: str, body: dict[str, Any]) -> None:
    put_faults(lex_url, throttle_rate=0.5)
    response = httpx.put(f"{lex_url}/_emulator/faults", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == [next(iter(body))]
    assert httpx.get(f"{lex_url}/_emulator/faults").json() == {"error_rate": 0.0, "throttle_rate": 0.5, "latency": 0.0}


def test_a_fault_update_that_is_not_json_is_422(lex_url: str) -> None:
    response = httpx.put(f"{lex_url}/_emulator/faults", content=b"error_rate=1")
    assert response.status_code == 422


# ----------------------------------------------------------------------------------------------------------
# What boto3 sees


def test_error_rate_one_fails_every_runtime_call_in_the_aws_shape(lex_url: str) -> None:
    client = runtime(lex_url)
    session = session_id()
    say(client, session, "make a payment of 75")
    say(client, session, "1234")  # the account id: the card number is asked next
    put_faults(lex_url, error_rate=1)
    key = {"botId": PAY, "botAliasId": ALIAS, "localeId": LOCALE, "sessionId": session}
    calls = [
        lambda: client.recognize_text(**key, text="hello"),
        lambda: client.get_session(**key),
        lambda: client.put_session(**key, sessionState={"dialogAction": {"type": "Close"}}),
        lambda: client.delete_session(**key),
    ]
    for call in calls:
        with pytest.raises(ClientError) as failed:
            call()
        status = failed.value.response["ResponseMetadata"]["HTTPStatusCode"]
        assert status in OUTAGE_CODES
        assert failed.value.response["Error"]["Code"] == OUTAGE_CODES[status]
        assert "injected" in failed.value.response["Error"]["Message"]
        assert failed.value.response["ResponseMetadata"]["RequestId"]
    # The health probe and the control route are not Lex calls: they stay up.
    assert httpx.get(f"{lex_url}/healthz").status_code == 200
    put_faults(lex_url, error_rate=0)
    # Neither the failed PutSession nor the failed DeleteSession touched the session.
    got = client.get_session(**key)
    assert got["sessionState"]["dialogAction"] == {"type": "ElicitSlot", "slotToElicit": "CreditCardNumber"}


def test_error_rate_is_a_fraction_of_calls_split_between_500_and_503(lex_url: str) -> None:
    client = runtime(lex_url)
    put_faults(lex_url, error_rate=0.5)
    outcomes: Counter[int] = Counter()
    for _ in range(120):
        try:
            say(client, session_id(), "what is my balance")
            outcomes[200] += 1
        except ClientError as exc:
            outcomes[exc.response["ResponseMetadata"]["HTTPStatusCode"]] += 1
    assert set(outcomes) == {200, 500, 503}, outcomes
    assert 30 <= outcomes[200] <= 90, outcomes


def test_throttle_rate_answers_429_throttling_exception(lex_url: str) -> None:
    client = runtime(lex_url)
    put_faults(lex_url, throttle_rate=1)
    with pytest.raises(client.exceptions.ThrottlingException) as throttled:
        say(client, session_id(), "what is my balance")
    assert throttled.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429


def test_latency_delays_each_runtime_call(lex_url: str) -> None:
    client = runtime(lex_url)
    say(client, session_id(), "what is my balance")  # warm the connection
    put_faults(lex_url, latency=0.3)
    started = time.monotonic()
    say(client, session_id(), "what is my balance")
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    assert httpx.get(f"{lex_url}/healthz").status_code == 200
    assert time.monotonic() - started < 0.3


# ----------------------------------------------------------------------------------------------------------
# What lexdesk's client sees


def test_lexdesk_client_gets_a_transient_error_and_the_session_resumes_where_it_was(lex_url: str) -> None:
    lex = lexdesk_client(lex_url)
    session = session_id()
    assert lex.recognize_text(session, "make a payment of 75").slot_to_elicit == "AccountId"
    assert lex.recognize_text(session, "1234").slot_to_elicit == "CreditCardNumber"

    put_faults(lex_url, error_rate=1)
    with pytest.raises(TransientError) as outage:
        lex.recognize_text(session, "4000 1234 5678 9010")  # would fill the card, had it got through
    assert outage.value.status in OUTAGE_CODES
    assert outage.value.code == OUTAGE_CODES[outage.value.status]

    put_faults(lex_url, error_rate=0, throttle_rate=1)
    with pytest.raises(TransientError) as throttled:
        lex.recognize_text(session, "4000 1234 5678 9010")
    assert (throttled.value.status, throttled.value.code) == (429, "ThrottlingException")

    put_faults(lex_url, throttle_rate=0)
    state = runtime(lex_url).get_session(botId=PAY, botAliasId=ALIAS, localeId=LOCALE, sessionId=session)
    assert state["sessionState"]["intent"]["slots"]["CreditCardNumber"] is None
    assert state["sessionState"]["dialogAction"]["slotToElicit"] == "CreditCardNumber"
    resumed = lex.recognize_text(session, "4000 1234 5678 9010")
    assert resumed.intent == "ProcessPayment"
    assert resumed.dialog_action == "ConfirmIntent"  # the card number is read back before anything else
    assert resumed.session_state["intent"]["slots"]["PaymentAmount"]["value"]["interpretedValue"] == "75"


def test_lexdesk_delete_session_during_an_outage_is_transient(lex_url: str) -> None:
    lex = lexdesk_client(lex_url)
    session = session_id()
    lex.recognize_text(session, "make a payment")
    put_faults(lex_url, error_rate=1)
    with pytest.raises(TransientError):
        lex.delete_session(session)


# ----------------------------------------------------------------------------------------------------------
# The command-line flags, in a real process


def _serve(command: list[str], port: int) -> subprocess.Popen[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LEXDESK_")}
    process = subprocess.Popen([sys.executable, *command, "--port", str(port)], cwd=REPO, env=environ,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            output = process.stdout.read() if process.stdout else ""
            pytest.fail(f"{command} exited with {process.returncode}: {output}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"{command} did not answer /healthz within 30s")
        time.sleep(0.1)


@pytest.mark.parametrize(
    "command",
    [
        ["-m", "emulators.lex", "--error-rate", "1", "--seed", "3"],
        ["-m", "lexdesk", "emulate", "lex", "--error-rate", "1", "--seed", "3"],
    ],
)
def test_error_rate_flag_starts_the_emulator_in_an_outage(command: list[str]) -> None:
    port = free_port()
    process = _serve(command, port)
    try:
        url = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{url}/_emulator/faults").json() == {"error_rate": 1.0, "throttle_rate": 0.0, "latency": 0.0}
        with pytest.raises(TransientError):
            lexdesk_client(url).recognize_text(session_id(), "make a payment")
        put_faults(url, error_rate=0)
        assert lexdesk_client(url).recognize_text(session_id(), "make a payment").slot_to_elicit == "AccountId"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.parametrize(
    "command",
    [["-m", "emulators.lex", "--error-rate", "2"], ["-m", "lexdesk", "emulate", "lex", "--error-rate", "2"]],
)
def test_an_out_of_range_error_rate_flag_is_refused(command: list[str]) -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LEXDESK_")}
    result = subprocess.run([sys.executable, *command, "--port", str(free_port())], cwd=REPO, env=environ,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result
    assert "error" in result.stderr.lower() and "rate" in result.stderr.lower()
