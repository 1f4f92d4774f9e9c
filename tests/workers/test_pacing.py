"""A bot answer of several messages, paced out (shared/pacing.py) and cut short by the customer where the
bot allows it (the BankingBot's AccountOptions closes with three messages, `allowInterrupt: true`, read
through the models API). Consumers called directly: timers.bot_continues as Celery runs it when due."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from shared.db import session_scope
from shared.models import Message
from shared.store import create_conversation
from tests.workers.conftest import Env, customer_says

OPTIONS = ["We offer a Checking account for everyday spending, with no monthly fee and a free debit card.",
           "We also offer a Savings account that earns interest every month, with no minimum balance.",
           "Which one would you like to know more about?"]


def _rows(env: Env, conversation_id: str) -> list[Message]:
    with session_scope(env.database_url) as session:
        return list(session.scalars(select(Message).where(Message.conversation_id == conversation_id)
                                    .order_by(Message.seq)))


def _shown(env: Env, conversation_id: str) -> list[tuple[int, str]]:
    """What the customer is (to be) shown, by frame seq: bodies, and events by name."""
    rows = [r for r in _rows(env, conversation_id) if r.destination == "customer"]
    return [(int(r.frame_seq or 0), r.body if r.kind == "message" else f"event:{r.event}")
            for r in sorted(rows, key=lambda r: r.frame_seq or 0)]


@pytest.fixture
def conversation_id(env: Env) -> str:
    with session_scope(env.database_url) as session:
        return create_conversation(session, customer_name="Ana").id


def test_a_multi_message_answer_goes_out_one_message_at_a_time(env: Env, conversation_id: str) -> None:
    from workers import lex, timers

    customer_says(conversation_id, "ask", "what accounts do you offer")
    lex.drain(conversation_id=conversation_id)
    assert [text for _, text in _shown(env, conversation_id)] == OPTIONS[:1]
    held = [r for r in _rows(env, conversation_id) if r.status == "held"]
    assert [r.body for r in held] == OPTIONS[1:] and all(r.frame_seq is None for r in held)

    timers.bot_continues(conversation_id=conversation_id, due=True)
    timers.bot_continues(conversation_id=conversation_id, due=True)
    shown = _shown(env, conversation_id)
    assert [text for _, text in shown] == OPTIONS
    assert [seq for seq, _ in shown] == [1, 2, 3]  # numbered when shown: no gap
    timers.bot_continues(conversation_id=conversation_id, due=True)  # nothing left: no effect
    assert len(_shown(env, conversation_id)) == 3


def test_a_customer_who_writes_first_cuts_the_rest_short_and_is_told(env: Env, conversation_id: str) -> None:
    from workers import lex, timers

    customer_says(conversation_id, "ask", "what accounts do you offer")
    lex.drain(conversation_id=conversation_id)
    timers.bot_continues(conversation_id=conversation_id, due=True)  # the second message goes out
    customer_says(conversation_id, "cut", "checking please")  # before the third
    lex.drain(conversation_id=conversation_id)
    timers.bot_continues(conversation_id=conversation_id, due=True)  # its turn came: it was cut
    shown = [text for _, text in _shown(env, conversation_id)]
    assert shown[:3] == [OPTIONS[0], OPTIONS[1], "event:interrupted"]
    assert OPTIONS[2] not in shown
    interrupted = next(r for r in _rows(env, conversation_id) if r.event == "interrupted")
    assert interrupted.payload == {"cut": [OPTIONS[2]], "intent": "AccountOptions"}
    cut = next(r for r in _rows(env, conversation_id) if r.body == OPTIONS[2])
    assert (cut.status, cut.frame_seq) == ("skipped", None)
    # The new input was processed: the bot answered it after the interruption.
    assert len(shown) > 3 and not shown[3].startswith("event:")


def test_with_no_typing_delay_the_whole_answer_goes_out_at_once(
        env: Env, conversation_id: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.settings import get_settings
    from workers import lex

    monkeypatch.setenv("LEXDESK_BOT_TYPING_DELAY", "0")
    get_settings.cache_clear()
    customer_says(conversation_id, "ask", "tell me about your accounts")
    lex.drain(conversation_id=conversation_id)
    assert [text for _, text in _shown(env, conversation_id)] == OPTIONS
