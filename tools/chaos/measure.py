"""The figures, computed from both ends: what each customer's client sent (and the edge accepted) and
displayed, against what the Talkdesk emulator received and delivered, with the dead letters (operator API
and database) and the two replays. Pure functions of what was recorded: nothing here retries or waits.

Definitions (per conversation, then summed):
- sent: customer messages the edge answered `accepted` for (durable, docs/protocol.md §2).
- delivered: a bot-bound message whose bot answer was displayed (or whose row lexdesk marked delivered);
  an agent-bound one that appears in what Talkdesk received.
- lost: sent, not delivered, and not dead-lettered; plus agent messages Talkdesk delivered that the screen
  never displayed, plus frames lexdesk numbered that the screen never displayed.
- duplicated at Talkdesk: the same customer message received more than once.
- duplicated on screen: the same agent message or end event displayed under two different seqs.
- reordered: an agent message echoed on screen, or received at Talkdesk, after a later one (dead-lettered
  messages are left out: they arrive after replay, out of order by design).
"""

from __future__ import annotations

import re
import statistics
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tools.chaos.journey import Journey, Said
from tools.chaos.observe import Observed
from tools.chaos.operator import DeadLetters, Replay

ECHO_RE = re.compile(r"^You said: msg (c\d+)-(\d+)$")
AGENT_MSG_RE = re.compile(r"^msg (c\d+)-(\d+)$")
BOT_BOUND = ("bot", "escalate")


@dataclass
class Figures:
    conversations: int = 0
    completed: int = 0
    unfinished: list[str] = field(default_factory=list)
    sent: int = 0
    sent_to_bot: int = 0
    sent_to_agent: int = 0
    never_accepted: int = 0
    delivered: int = 0
    lost: int = 0
    lost_customer_messages: int = 0
    lost_agent_messages: int = 0  # Talkdesk delivered them, the screen never showed them
    frames_never_shown: int = 0
    skipped_by_product: int = 0  # part of lost: lexdesk marked them skipped
    duplicated_at_talkdesk: int = 0
    duplicates_absorbed_by_talkdesk: int = 0  # retried calls answered from the idempotency store
    reordered_at_talkdesk: int = 0
    duplicated_on_screen: int = 0
    reordered_on_screen: int = 0
    seq_gaps_on_screen: int = 0
    handover_transcripts_wrong: int = 0
    agent_messages_from_talkdesk: int = 0
    agent_callbacks_failed: int = 0
    frames_shown: int = 0
    resent_frames_dropped: int = 0
    out_of_order_on_wire: int = 0
    gap_resyncs: int = 0
    reconnects: int = 0
    message_resends: int = 0
    handoff_failures: int = 0
    dead_lettered: int = 0
    dead_letters_by_class: dict[str, int] = field(default_factory=dict)
    dead_letters_api_total: int | None = None
    replay_available: bool = False
    replayed: int = 0
    replayed_again: int = 0
    replay_skipped: dict[str, int] = field(default_factory=dict)  # why the first replay left some alone
    replayed_delivered_once: int = 0
    replayed_not_delivered: int = 0
    replayed_duplicated: int = 0
    talkdesk_faults: dict[str, int] = field(default_factory=dict)
    details: list[str] = field(default_factory=list)


@dataclass
class ReplayEvidence:
    before: DeadLetters
    first: Replay
    second: Replay
    first_at: float = 0.0  # time.monotonic() of the first replay


def measure(journeys: list[Journey], observed: Observed, replay: ReplayEvidence) -> Figures:
    figures = Figures(conversations=len(journeys))
    by_email = observed.talkdesk_by_email()
    dead = _dead_letter_rows(observed, replay.before)
    dead_by_conversation: dict[str, list[dict[str, Any]]] = {}
    for row in dead.values():
        dead_by_conversation.setdefault(str(row.get("conversation_id")), []).append(row)
    for journey in journeys:
        conversation_id = journey.customer.conversation_id or ""
        _one(figures, journey, by_email.get(journey.record.email, []), dead_by_conversation.get(conversation_id, []),
             observed.transcripts.get(conversation_id))
    _dead_letters(figures, dead, replay, journeys, by_email, observed.transcripts)
    stats = observed.talkdesk_stats
    figures.duplicates_absorbed_by_talkdesk = int(stats.get("duplicates_absorbed", 0))
    figures.talkdesk_faults = dict(stats.get("faults", {}))
    figures.lost = figures.lost_customer_messages + figures.lost_agent_messages + figures.frames_never_shown
    return figures


def _dead_letter_rows(observed: Observed, before: DeadLetters) -> dict[str, dict[str, Any]]:
    """Every row that was ever a dead letter: listed by the API before replay, still failed in the
    database, or marked replayed in it. Keyed by message id."""
    rows: dict[str, dict[str, Any]] = {}
    for row in [*before.items, *observed.failed_rows, *observed.replayed_rows]:
        rows.setdefault(str(row.get("id")), {}).update(row)  # the database's columns complete the API's
    return rows


def _is_dead(said: Said, dead_rows: list[dict[str, Any]]) -> bool:
    destination = "lex" if said.phase in BOT_BOUND else "talkdesk"
    return any(r.get("destination") == destination and r.get("body") == said.text for r in dead_rows)


def _one(figures: Figures, journey: Journey, talkdesk: list[dict[str, Any]], dead_rows: list[dict[str, Any]],
         transcript: dict[str, Any] | None) -> None:
    record, customer = journey.record, journey.customer
    label = record.label
    if record.phase == "done":
        figures.completed += 1
    else:
        figures.unfinished.append(f"{label}: {record.failure or record.phase}")
        figures.details.append(_why_unfinished(journey, transcript, talkdesk))
    received = [m["content"] for conv in talkdesk for m in conv.get("customer_messages", [])]
    received_count = Counter(received)
    lex_rows = Counter(m["text"] for m in (transcript or {}).get("transcript", [])
                       if m.get("sender") == "customer" and m.get("destination") == "lex"
                       and m.get("status") == "delivered")
    skipped_rows = Counter(m["text"] for m in (transcript or {}).get("transcript", [])
                           if m.get("sender") == "customer" and m.get("status") == "skipped")
    dead_texts: set[str] = set()
    for said in record.said:
        sent = customer.sent.get(said.id)
        if sent is None or sent.accepted_at is None:
            figures.never_accepted += 1
            continue
        figures.sent += 1
        bot_bound = said.phase in BOT_BOUND
        if bot_bound:
            figures.sent_to_bot += 1
            delivered = said.answered_at is not None or lex_rows[said.text] > 0
        else:
            figures.sent_to_agent += 1
            delivered = received_count[said.text] > 0
            figures.duplicated_at_talkdesk += max(0, received_count[said.text] - 1)
        dead = _is_dead(said, dead_rows)
        if dead:
            dead_texts.add(said.text)
        if delivered:
            figures.delivered += 1
        elif not dead:
            figures.lost_customer_messages += 1
            skipped = skipped_rows[said.text] > 0
            figures.skipped_by_product += skipped
            figures.details.append(f"lost: {label} {said.text!r} accepted, never reached "
                                   f"{'the bot' if bot_bound else 'Talkdesk'}{' (marked skipped)' if skipped else ''}")
    figures.reordered_at_talkdesk += _inversions(label, [m for m in received if m not in dead_texts], AGENT_MSG_RE,
                                                 figures, "at Talkdesk")
    _screen(figures, journey, talkdesk, dead_texts, transcript)
    figures.handover_transcripts_wrong += _handover_wrong(figures, journey, talkdesk)
    stats = customer.stats
    figures.resent_frames_dropped += stats.duplicates_dropped
    figures.out_of_order_on_wire += stats.wire_gaps
    figures.gap_resyncs += stats.gap_resyncs
    figures.reconnects += stats.reconnects
    figures.message_resends += stats.resends
    figures.handoff_failures += record.handoff_failures


def _why_unfinished(journey: Journey, transcript: dict[str, Any] | None, talkdesk: list[dict[str, Any]]) -> str:
    """What an operator would look at first: what the customer sent and saw, lexdesk's state and every
    transcript row (seq, sender, destination, status, frame seq, text), and what Talkdesk has."""
    body = transcript or {}
    rows = [(m["seq"], m["sender"], m["destination"], m["status"], m.get("frame_seq"),
             m["event"] or m["text"][:24]) for m in body.get("transcript", [])]
    customer = journey.customer
    sent = [(s.text[:24], "accepted" if s.accepted_at else s.refused or "unaccepted", s.sends)
            for s in customer.sent.values()]
    shown = [(s.seq, s.frame.get("event") or str(s.frame.get("text", ""))[:24]) for s in customer.shown]
    desk = [(c["id"], c.get("status"), c.get("agent_joined"), len(c.get("customer_messages", []))) for c in talkdesk]
    return (f"unfinished: {journey.record.label} conversation {customer.conversation_id} "
            f"({journey.record.failure or journey.record.phase}); sent {sent}; shown {shown}, held "
            f"{sorted(customer.held)}; lexdesk state {body.get('state')}, rows {rows}; Talkdesk {desk}")


def _screen(figures: Figures, journey: Journey, talkdesk: list[dict[str, Any]], dead_texts: set[str],
            transcript: dict[str, Any] | None) -> None:
    customer, label = journey.customer, journey.record.label
    shown = customer.shown
    figures.frames_shown += len(shown)
    seqs = [s.seq for s in shown]
    gaps = (max(seqs) - len(set(seqs))) if seqs else 0
    figures.seq_gaps_on_screen += gaps + len(customer.held)
    if gaps or customer.held:
        figures.details.append(f"gap: {label} displayed seqs {seqs[:50]} with {sorted(customer.held)} held")
    server_last = int((transcript or {}).get("last_seq") or 0)
    if server_last > customer.last_seq:
        figures.frames_never_shown += server_last - customer.last_seq
        figures.details.append(f"frames never shown: {label} server numbered {server_last}, "
                               f"screen reached {customer.last_seq}")
    # Agent messages: what Talkdesk sent (its agent's messages) against what the screen displayed.
    agent_all = Counter(m["content"] for conv in talkdesk for m in conv.get("agent_messages", []))
    agent_delivered = Counter(m["content"] for conv in talkdesk for m in conv.get("agent_messages", [])
                              if m.get("delivery") == "delivered")
    figures.agent_messages_from_talkdesk += sum(agent_delivered.values())
    figures.agent_callbacks_failed += sum(1 for conv in talkdesk for m in conv.get("agent_messages", [])
                                          if m.get("delivery") == "failed")
    for conv in talkdesk:  # Talkdesk gave up on a callback: what lexdesk answered is the clue
        for event in conv.get("events", []):
            if event.get("type") == "callback_failed":
                figures.details.append(f"callback refused: {label} Talkdesk {conv['id']} {event.get('path')} "
                                       f"-> {event.get('error')} after {event.get('attempts')} attempts")
    on_screen = Counter(s.frame.get("text") for s in shown
                        if s.frame.get("type") == "message" and s.frame.get("from") == "agent")
    for text, count in on_screen.items():
        extra = count - max(agent_all[text], 1)
        if extra > 0:
            figures.duplicated_on_screen += extra
            figures.details.append(f"duplicate on screen: {label} {text!r} displayed {count} times")
    for text, count in agent_delivered.items():
        missing = count - on_screen[text]
        if missing > 0:
            figures.lost_agent_messages += missing
            figures.details.append(f"lost: {label} agent message {text!r} delivered by Talkdesk, never displayed")
    ended = sum(1 for s in shown if s.frame.get("event") == "conversation_ended")
    if ended > 1:
        figures.duplicated_on_screen += ended - 1
        figures.details.append(f"duplicate on screen: {label} conversation_ended displayed {ended} times")
    echoes = [str(s.frame.get("text")) for s in shown if s.frame.get("from") == "agent"]
    echoes = [e for e in echoes if e.removeprefix("You said: ") not in dead_texts]
    figures.reordered_on_screen += _inversions(label, echoes, ECHO_RE, figures, "on screen")


def _inversions(label: str, texts: Iterable[str], pattern: re.Pattern[str], figures: Figures, where: str) -> int:
    """Messages of this conversation that came after one the customer sent later."""
    highest, count = 0, 0
    for text in texts:
        match = pattern.match(text)
        if match is None or match.group(1) != label:
            continue
        k = int(match.group(2))
        if k < highest:
            count += 1
            figures.details.append(f"reordered {where}: {label} message {k} after message {highest}")
        highest = max(highest, k)
    return count


def _handover_wrong(figures: Figures, journey: Journey, talkdesk: list[dict[str, Any]]) -> int:
    """The transcript handed to each agent: the customer's bot-bound messages, in order, each once."""
    accepted = [s.text for s in journey.record.said
                if s.phase in BOT_BOUND and (sent := journey.sent(s)) is not None and sent.accepted_at is not None]
    wrong = 0
    for conv in talkdesk:
        users = [m["content"] for m in conv.get("previous_messages", []) if m.get("type") == "USER"]
        if len(users) < len(accepted[:3]) or users != accepted[:len(users)]:
            wrong += 1
            figures.details.append(f"handover: {journey.record.label} agent was handed {users}, "
                                   f"customer said {accepted}")
    return wrong


def _dead_letters(figures: Figures, dead: dict[str, dict[str, Any]], replay: ReplayEvidence,
                  journeys: list[Journey], by_email: dict[str, list[dict[str, Any]]],
                  transcripts: dict[str, dict[str, Any]]) -> None:
    figures.dead_lettered = len(dead)
    figures.dead_letters_by_class = dict(Counter(str(r.get("error_class")) for r in dead.values()))
    figures.dead_letters_api_total = replay.before.total if replay.before.available else None
    figures.replay_available = replay.first.available and replay.second.available
    figures.replayed = replay.first.replayed
    figures.replayed_again = replay.second.replayed
    figures.replay_skipped = dict(Counter(replay.first.skipped_ids.values()))
    by_conversation = {j.customer.conversation_id: j for j in journeys}
    for key, row in dead.items():
        journey = by_conversation.get(str(row.get("conversation_id")))
        figures.details.append(_dead_letter_story(key, row, replay, journey,
                                                  transcripts.get(str(row.get("conversation_id")))))
        if journey is None or row.get("destination") != "talkdesk" or row.get("event") or not row.get("body"):
            continue  # handoffs and other events: their effect is checked by the journey itself
        received = sum(1 for conv in by_email.get(journey.record.email, [])
                       for m in conv.get("customer_messages", []) if m["content"] == row.get("body"))
        if received == 1:
            figures.replayed_delivered_once += 1
        elif received == 0:
            figures.replayed_not_delivered += 1
            figures.details.append(f"dead letter never delivered: {journey.record.label} {row.get('body')!r}")
        else:
            figures.replayed_duplicated += 1
            figures.details.append(f"dead letter delivered {received} times: {journey.record.label} "
                                   f"{row.get('body')!r}")


def _dead_letter_story(key: str, row: dict[str, Any], replay: ReplayEvidence, journey: Journey | None,
                       transcript: dict[str, Any] | None) -> str:
    """One dead letter: what it was, what the first replay did with it, and where its customer was; when
    replay did not take it, the conversation's events and rows too."""
    replayed_ids = {str(i) for i in replay.first.ids}
    outcome = ("replayed" if key in replayed_ids
               else f"left alone ({replay.first.skipped_ids[key]})" if key in replay.first.skipped_ids
               else "not matched")
    what = row.get("event") or repr(row.get("body"))
    story = f"dead letter {key}: {row.get('destination')} {what} ({row.get('error_class')}); first replay: {outcome}"
    if journey is None:
        return f"{story}; no journey has conversation {row.get('conversation_id')}"
    record, at = journey.record, replay.first_at

    def when(t: float | None) -> str:
        return "never" if t is None else f"{t - at:+.1f}s"

    story += (f"; {record.label} ({record.phase}): handoff failed {when(record.handoff_failed_at)}, "
              f"agent joined {when(record.agent_joined_at)}, finished {when(record.finished_at)} "
              f"(relative to the first replay)")
    if outcome != "replayed":
        events = [s.frame.get("event") for s in journey.customer.shown if s.frame.get("type") == "event"]
        rows = [(m["seq"], m["destination"], m["status"], m["attempts"], m["event"] or m["text"][:16])
                for m in (transcript or {}).get("transcript", []) if m["destination"] == "talkdesk"]
        story += f"; events shown {events}; Talkdesk-bound rows {rows}"
    return story


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return {"p50": round(statistics.median(ordered), 2), "p95": round(p95, 2), "max": round(ordered[-1], 2)}
