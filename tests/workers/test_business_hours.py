"""Business hours, consumers called directly: outside the hours the BankingBot's "I want to talk to an
agent" offers to leave a message instead of a handoff, the next message is that message (kept, not sent
to Lex), and the periodic job hands it to Talkdesk at the opening, once, with the whole transcript.

The hours are Monday to Friday in Lisbon, and yesterday, today and tomorrow are holidays, so it is
closed whenever the test runs; the job's clock is passed in (`now`), at the opening the schedule gives."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import select, update

from shared.db import session_scope
from shared.models import Conversation, Message, utcnow
from shared.store import create_conversation
from tests.workers.conftest import Env, customer_says

LEFT = "Please call me back about a card payment that was declined twice"


@pytest.fixture
def closed(env: Env, monkeypatch: pytest.MonkeyPatch) -> Iterator[datetime]:
    """Closed now; yields the next opening."""
    from shared.settings import get_settings

    today = datetime.now(ZoneInfo("Europe/Lisbon")).date()
    monkeypatch.setenv("LEXDESK_BUSINESS_HOURS", "mon-fri 09:00-17:00")
    monkeypatch.setenv("LEXDESK_BUSINESS_TIMEZONE", "Europe/Lisbon")
    monkeypatch.setenv("LEXDESK_HOLIDAYS", ", ".join(str(today + timedelta(days=d)) for d in (-1, 0, 1)))
    get_settings.cache_clear()
    yield get_settings().business_schedule.next_opening(utcnow())
    get_settings.cache_clear()


def _new(env: Env) -> str:
    with session_scope(env.database_url) as session:
        return create_conversation(session, customer_name="Ana", customer_email="ana@example.com").id


def _say(conversation_id: str, *texts: str) -> None:
    from workers import lex

    for text in texts:
        customer_says(conversation_id, f"m-{text}", text)
        lex.drain(conversation_id=conversation_id)


def _rows(env: Env, conversation_id: str) -> list[Message]:
    with session_scope(env.database_url) as session:
        return list(session.scalars(select(Message).where(Message.conversation_id == conversation_id)
                                    .order_by(Message.seq)))


def _conversation(env: Env, conversation_id: str) -> Conversation:
    with session_scope(env.database_url) as session:
        return session.get_one(Conversation, conversation_id)


def _shown(env: Env, conversation_id: str) -> list[Message]:
    return [r for r in _rows(env, conversation_id) if r.destination == "customer"]


def _talkdesk_rows(env: Env, conversation_id: str) -> list[Message]:
    return [r for r in _rows(env, conversation_id) if r.destination == "talkdesk"]


def _emulator_conversations(env: Env) -> list[dict[str, Any]]:
    return list(httpx.get(f"{env.talkdesk_url}/_emulator/conversations").json())


def _emulator_record(env: Env, talkdesk_id: str) -> dict[str, Any]:
    return dict(httpx.get(f"{env.talkdesk_url}/_emulator/conversations/{talkdesk_id}").json())


def _leave_a_message(env: Env) -> str:
    conversation_id = _new(env)
    _say(conversation_id, "what is my balance", "checking", "I want to talk to an agent")
    customer_says(conversation_id, "left", LEFT)
    return conversation_id


def _hand_over(now: datetime | None) -> int:
    from workers import timers

    return timers.hand_over_left_messages(now=now)


def test_outside_hours_the_message_left_reaches_an_agent_at_the_opening_once(env: Env, closed: datetime) -> None:
    from workers import lex, talkdesk

    before = len(_emulator_conversations(env))
    conversation_id = _new(env)
    _say(conversation_id, "what is my balance", "checking", "I want to talk to an agent")

    # Closed: the hours, the next opening, the offer; no handoff.
    state = _conversation(env, conversation_id)
    assert (state.state, state.talkdesk_conversation_id) == ("bot", None)
    assert state.leave_message_requested_at is not None and state.left_message_at is None
    assert _talkdesk_rows(env, conversation_id) == []
    event, notice = _shown(env, conversation_id)[-2:]
    local = closed.astimezone(ZoneInfo("Europe/Lisbon"))
    assert notice.sender == "system" and notice.body.startswith(
        "Our agents are available Monday to Friday 09:00-17:00, except on holidays (Europe/Lisbon). "
        "We are closed today for a holiday. We open again ")
    assert " at 09:00. Leave a message and an agent will get it when we open: type it now." in notice.body
    assert local.strftime("%A") in notice.body
    assert (event.event, event.payload) == ("closed_hours", {"opens_at": closed.isoformat(timespec="seconds")})

    # The next message is the message left: kept, not sent to Lex, and the customer is told.
    customer_says(conversation_id, "left", LEFT)
    lex.drain(conversation_id=conversation_id)
    left = next(r for r in _rows(env, conversation_id) if r.body == LEFT)
    assert (left.status, left.error_class, left.intent) == ("skipped", "left_message", None)
    thanks_event, thanks = _shown(env, conversation_id)[-2:]
    assert thanks_event.event == "message_left"
    assert thanks.body == "Thanks, we have your message. An agent will get it when we open."
    assert _conversation(env, conversation_id).left_message_at is not None

    # Asking again while it waits: told it will go, not offered again; that message went to the bot.
    _say(conversation_id, "talk to a human")
    again = _shown(env, conversation_id)[-1]
    assert again.body.endswith("An agent will get the message you left then.")
    assert next(r for r in _rows(env, conversation_id) if r.body == "talk to a human").intent == "TalkToAgent"

    # Still closed: the job does nothing, now or a second before the opening.
    assert _hand_over(None) == 0
    assert _hand_over(closed - timedelta(seconds=1)) == 0
    assert _talkdesk_rows(env, conversation_id) == []
    assert len(_emulator_conversations(env)) == before

    # At the opening: a handoff like any other, the left message in the transcript handed over.
    assert _hand_over(closed) == 1
    assert _conversation(env, conversation_id).state == "handoff_requested"
    talkdesk.drain(conversation_id=conversation_id)
    state = _conversation(env, conversation_id)
    assert state.state == "agent_queued" and state.talkdesk_conversation_id
    previous = [m["content"] for m in _emulator_record(env, state.talkdesk_conversation_id)["previous_messages"]]
    assert previous[0] == "what is my balance"
    assert LEFT in previous and "talk to a human" in previous
    assert not any(text.startswith("Our agents are available") for text in previous)

    # Once: the next runs find nothing.
    assert _hand_over(closed) == 0
    assert _hand_over(closed + timedelta(minutes=1)) == 0
    assert [r.event for r in _talkdesk_rows(env, conversation_id)] == ["handoff_requested"]
    assert len(_emulator_conversations(env)) == before + 1


def test_inside_hours_the_handoff_is_unchanged(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.settings import get_settings
    from workers import talkdesk

    monkeypatch.setenv("LEXDESK_BUSINESS_HOURS", "mon-sun 00:00-24:00")
    monkeypatch.setenv("LEXDESK_BUSINESS_TIMEZONE", "America/New_York")
    get_settings.cache_clear()
    conversation_id = _new(env)
    _say(conversation_id, "I want to talk to an agent")
    state = _conversation(env, conversation_id)
    assert (state.state, state.leave_message_requested_at) == ("handoff_requested", None)
    assert [r.event for r in _shown(env, conversation_id) if r.kind == "event"] == ["handoff_requested"]
    assert [r.event for r in _talkdesk_rows(env, conversation_id)] == ["handoff_requested"]
    talkdesk.drain(conversation_id=conversation_id)
    assert _conversation(env, conversation_id).state == "agent_queued"
    get_settings.cache_clear()


def test_a_left_message_waiting_keeps_the_conversation_from_the_inactivity_close(env: Env, closed: datetime) -> None:
    from workers import lex, timers

    waiting = _leave_a_message(env)
    lex.drain(conversation_id=waiting)
    idle = _new(env)
    _say(idle, "what is my balance")
    with session_scope(env.database_url) as session:
        session.execute(update(Conversation).values(updated_at=utcnow() - timedelta(hours=5)))
    assert timers.close_inactive() == 1
    assert (_conversation(env, waiting).state, _conversation(env, idle).state) == ("bot", "closed")
    assert _hand_over(closed) == 1


@pytest.mark.parametrize("lex_took_it_first", [True, False], ids=["left-then-ended", "ended-before-the-lex-worker"])
def test_a_customer_who_ends_the_chat_still_gets_the_left_message_to_an_agent(
        env: Env, closed: datetime, lex_took_it_first: bool) -> None:
    from shared.inbound import customer_ended
    from shared.settings import get_settings
    from workers import lex, talkdesk

    conversation_id = _leave_a_message(env)
    if lex_took_it_first:
        lex.drain(conversation_id=conversation_id)
    customer_ended(get_settings(), conversation_id)
    lex.drain(conversation_id=conversation_id)
    left = next(r for r in _rows(env, conversation_id) if r.body == LEFT)
    assert (left.status, left.error_class) == ("skipped", "left_message")

    assert _hand_over(closed - timedelta(hours=1)) == 0
    assert _hand_over(closed) == 1
    talkdesk.drain(conversation_id=conversation_id)
    state = _conversation(env, conversation_id)
    assert state.state == "closed" and state.talkdesk_conversation_id  # closed stays closed
    record = _emulator_record(env, state.talkdesk_conversation_id)
    assert LEFT in [m["content"] for m in record["previous_messages"]]
    assert record["status"] != "ended"  # left open for the agent to read
    assert _hand_over(closed) == 0
    assert [r.status for r in _talkdesk_rows(env, conversation_id)] == ["delivered"]


def test_a_message_left_after_the_opening_goes_at_once(env: Env, closed: datetime,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Offered while closed, typed once open (the offer said "type it now"; the customer took a while):
    handed over by the lex worker itself, without waiting for the job."""
    from shared.settings import get_settings
    from workers import lex

    conversation_id = _leave_a_message(env)
    monkeypatch.delenv("LEXDESK_BUSINESS_HOURS")
    monkeypatch.delenv("LEXDESK_HOLIDAYS")
    get_settings.cache_clear()
    lex.drain(conversation_id=conversation_id)
    assert _conversation(env, conversation_id).state == "handoff_requested"
    assert any(r.body.startswith("Thanks, we have your message. We are open now") for r in _shown(env, conversation_id))
    assert _hand_over(datetime.now(UTC)) == 0


def test_the_hand_over_is_one_of_the_periodic_jobs(env: Env) -> None:
    """Every timers worker runs it, one run at a time (workers/app.py, shared/periodic.py): no countdown
    to an opening days away."""
    from workers import timers
    from workers.app import periodic_jobs

    job = next(j for j in periodic_jobs() if j.name == "left-messages")
    assert job.run is timers.hand_over_left_messages and job.interval <= 300
