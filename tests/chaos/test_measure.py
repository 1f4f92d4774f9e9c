"""The chaos figures detect what they claim to: a clean conversation scores zero everywhere, and each kind
of damage (lost, duplicated, reordered, never shown, dead-lettered) moves exactly its own figure. Fast:
synthetic records, no processes."""

from __future__ import annotations

import time
from typing import Any

from tools.chaos.client import Sent, Shown
from tools.chaos.journey import CLOSE, ESCALATE, Journey, Said
from tools.chaos.measure import Figures, ReplayEvidence, measure
from tools.chaos.observe import Observed
from tools.chaos.operator import DeadLetters, Replay
from tools.chaos.plan import ChaosPlan

CONVERSATION = "11111111-2222-3333-4444-555555555555"
GREETING = "Hi, this is Alex. How can I help you today?"
GOODBYE = "Thanks for chatting with us. Goodbye!"


def _journey(echo_order: tuple[int, ...] = (1, 2)) -> Journey:
    """c0000 after a clean run: bot turns, handoff, two agent messages echoed in `echo_order`, closed."""
    journey = Journey(0, ChaosPlan(conversations=1, exchanges=2), ["ws://127.0.0.1:1/ws"], time.monotonic(),
                      lambda: None)
    customer, now = journey.customer, time.monotonic()
    customer.welcome = {"type": "welcome", "conversation_id": CONVERSATION, "resume_token": "t"}
    said = [Said("c0000-b1", "what is my balance", "bot", expect="checking or savings", answered_at=now),
            Said("c0000-b2", "Checking", "bot", expect="balance is", answered_at=now),
            Said("c0000-e1", ESCALATE[0], "escalate", expect=ESCALATE[1], answered_at=now),
            Said("c0000-m1", "msg c0000-1", "agent", k=1, expect="You said: msg c0000-1"),
            Said("c0000-m2", "msg c0000-2", "agent", k=2, expect="You said: msg c0000-2"),
            Said("c0000-close", CLOSE, "close", expect="conversation_ended")]
    journey.record.said = said
    customer.sent = {s.id: Sent(s.id, s.text, first_sent=now, sends=1, accepted_at=now) for s in said}
    frames: list[dict[str, Any]] = [
        {"type": "message", "from": "bot", "text": "Which account would you like, checking or savings?"},
        {"type": "message", "from": "bot", "text": "Your Checking account balance is $1,234.56."},
        {"type": "message", "from": "bot", "text": "Sure, let me connect you with an agent."},
        {"type": "event", "event": "handoff_requested"},
        {"type": "event", "event": "agent_queued"},
        {"type": "event", "event": "agent_joined"},
        {"type": "message", "from": "agent", "text": GREETING},
        *({"type": "message", "from": "agent", "text": f"You said: msg c0000-{k}"} for k in echo_order),
        {"type": "message", "from": "agent", "text": GOODBYE},
        {"type": "event", "event": "conversation_ended", "by": "agent"},
    ]
    customer.shown = [Shown(n, {**frame, "seq": n}, now) for n, frame in enumerate(frames, start=1)]
    customer.last_seq = len(frames)
    customer.ended = True
    journey.record.phase = "done"
    return journey


def _talkdesk(received: list[str], agent: list[str] | None = None) -> dict[str, Any]:
    agent = agent if agent is not None else [GREETING, "You said: msg c0000-1", "You said: msg c0000-2", GOODBYE]
    return {
        "id": "td-1", "created_at": "2026-01-01T00:00:00.000Z",
        "request": {"contact_person": {"email": "c0000@chaos.example"}},
        "previous_messages": [{"type": "USER", "content": t} for t in
                              ("what is my balance", "Checking", ESCALATE[0])],
        "customer_messages": [{"content": c} for c in received],
        "agent_messages": [{"content": c, "delivery": "delivered"} for c in agent],
    }


def _observed(received: list[str], last_seq: int = 11, failed: list[dict[str, Any]] | None = None,
              replayed: list[dict[str, Any]] | None = None, agent: list[str] | None = None) -> Observed:
    return Observed(talkdesk=[_talkdesk(received, agent)], talkdesk_stats={"duplicates_absorbed": 0, "faults": {}},
                    transcripts={CONVERSATION: {"last_seq": last_seq, "transcript": []}},
                    failed_rows=failed or [], replayed_rows=replayed or [])


def _no_replay(replayed: int = 0, listed: list[dict[str, Any]] | None = None) -> ReplayEvidence:
    listed = listed or []
    return ReplayEvidence(DeadLetters(True, listed, total=len(listed)), Replay(True, replayed, replayed),
                          Replay(True))


def _damage(figures: Figures) -> dict[str, int]:
    return {name: getattr(figures, name) for name in (
        "lost", "duplicated_at_talkdesk", "duplicated_on_screen", "reordered_on_screen", "reordered_at_talkdesk",
        "seq_gaps_on_screen", "frames_never_shown", "dead_lettered")}


CLEAN = dict.fromkeys(("lost", "duplicated_at_talkdesk", "duplicated_on_screen", "reordered_on_screen",
                       "reordered_at_talkdesk", "seq_gaps_on_screen", "frames_never_shown", "dead_lettered"), 0)


def test_a_clean_conversation_scores_zero() -> None:
    figures = measure([_journey()], _observed(["msg c0000-1", "msg c0000-2", CLOSE]), _no_replay())
    assert _damage(figures) == CLEAN
    assert (figures.completed, figures.sent, figures.delivered, figures.handover_transcripts_wrong) == (1, 6, 6, 0)


def test_a_message_that_never_reached_talkdesk_is_lost() -> None:
    figures = measure([_journey()], _observed(["msg c0000-2", CLOSE]), _no_replay())
    assert _damage(figures) == {**CLEAN, "lost": 1}
    assert figures.details == ["lost: c0000 'msg c0000-1' accepted, never reached Talkdesk"]


def test_a_message_received_twice_is_a_duplicate_at_talkdesk() -> None:
    figures = measure([_journey()], _observed(["msg c0000-1", "msg c0000-1", "msg c0000-2", CLOSE]), _no_replay())
    assert _damage(figures) == {**CLEAN, "duplicated_at_talkdesk": 1}


def test_order_is_checked_at_both_ends() -> None:
    figures = measure([_journey(echo_order=(2, 1))], _observed(["msg c0000-2", "msg c0000-1", CLOSE]), _no_replay())
    assert _damage(figures) == {**CLEAN, "reordered_on_screen": 1, "reordered_at_talkdesk": 1}


def test_an_agent_message_shown_under_two_seqs_is_a_duplicate_on_screen() -> None:
    journey = _journey(echo_order=(1, 2, 2))
    figures = measure([journey], _observed(["msg c0000-1", "msg c0000-2", CLOSE], last_seq=12), _no_replay())
    assert _damage(figures) == {**CLEAN, "duplicated_on_screen": 1}


def test_frames_the_server_numbered_but_the_screen_never_showed_are_lost() -> None:
    figures = measure([_journey()], _observed(["msg c0000-1", "msg c0000-2", CLOSE], last_seq=13), _no_replay())
    assert _damage(figures) == {**CLEAN, "lost": 2, "frames_never_shown": 2}


def test_an_agent_message_talkdesk_delivered_but_never_shown_is_lost() -> None:
    journey = _journey(echo_order=(1,))
    figures = measure([journey], _observed(["msg c0000-1", "msg c0000-2", CLOSE], last_seq=10), _no_replay())
    assert figures.lost_agent_messages == 1 and figures.lost == 1


def test_a_replayed_dead_letter_arrives_late_without_counting_as_reordered() -> None:
    row = {"id": 7, "conversation_id": CONVERSATION, "destination": "talkdesk", "body": "msg c0000-1",
           "event": None, "error_class": "transient", "status": "pending", "replayed": True}
    observed = _observed(["msg c0000-2", "msg c0000-1", CLOSE], replayed=[row])
    figures = measure([_journey(echo_order=(2, 1))], observed, _no_replay(replayed=1, listed=[row]))
    assert _damage(figures) == {**CLEAN, "dead_lettered": 1}
    assert (figures.replayed, figures.replayed_delivered_once, figures.replayed_again) == (1, 1, 0)


def test_a_dead_letter_that_was_never_replayed_is_not_lost_but_is_reported() -> None:
    row = {"id": 7, "conversation_id": CONVERSATION, "destination": "talkdesk", "body": "msg c0000-1",
           "event": None, "error_class": "transient", "status": "failed", "replayed": False}
    observed = _observed(["msg c0000-2", CLOSE], last_seq=10, failed=[row],
                         agent=[GREETING, "You said: msg c0000-2", GOODBYE])
    figures = measure([_journey(echo_order=(2,))], observed, _no_replay(listed=[row]))
    assert (figures.lost, figures.dead_lettered, figures.replayed, figures.replayed_not_delivered) == (0, 1, 0, 1)
