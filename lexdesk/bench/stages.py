"""Where a round trip's time goes, read back from the transcript after the run.

Every row of `messages` carries `created_at` (stored), `sent_at` (a customer frame handed to the edge
node's queue) and `delivered_at` (a bot/Talkdesk row answered or posted). Together with the client's
send and receipt times (all on this machine's clock) they split each round trip into hops:

bot:   send ─▶ customer row stored (edge publish, routing worker) ─▶ bot row stored (lex.drain: outbox
       relay, queue, RecognizeText) ─▶ bot frame sent to edge (routing.deliver) ─▶ frame read by client
agent: send ─▶ stored ─▶ posted to Talkdesk (talkdesk.drain) ─▶ agent reply stored (emulator's scripted
       reply delay, callback, routing.agent_message) ─▶ sent to edge (routing.deliver) ─▶ read by client
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise

from sqlalchemy import select

from lexdesk.bench.stats import Latency

BOT_HOPS = ("send→stored", "stored→bot answered", "answered→sent to edge", "sent to edge→client")
AGENT_HOPS = ("send→stored", "stored→posted to Talkdesk", "posted→agent reply stored", "reply stored→sent to edge",
              "sent to edge→client")


@dataclass(frozen=True)
class Trip:
    """One measured round trip, as the client saw it."""

    conversation_id: str
    message_id: str  # the client message id
    expect: str  # text of the answer that completed the trip (exact for agent echoes)
    kind: str  # "bot" | "agent"
    sent_wall: float
    received_wall: float


def _epoch(value: datetime | None) -> float | None:
    if value is None:
        return None
    # SQLite hands back naive datetimes; lexdesk only ever stores UTC.
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


def breakdown(database_url: str, trips: Sequence[Trip]) -> dict[str, dict[str, Latency]]:
    """Per kind of trip, per hop: the latency distribution. Trips whose rows are missing are left out."""
    from shared.db import session_scope
    from shared.models import Message

    conversation_ids = sorted({t.conversation_id for t in trips})
    rows: dict[str, list[Message]] = defaultdict(list)
    with session_scope(database_url) as session:
        for chunk in _chunks(conversation_ids, 500):
            for message in session.scalars(select(Message).where(Message.conversation_id.in_(chunk))):
                rows[message.conversation_id].append(message)
    hops: dict[str, dict[str, list[float]]] = {"bot": defaultdict(list), "agent": defaultdict(list)}
    for trip in trips:
        transcript = sorted(rows.get(trip.conversation_id, []), key=lambda m: m.seq)
        asked = next((m for m in transcript if m.client_message_id == trip.message_id), None)
        if asked is None:
            continue
        later = [m for m in transcript if m.seq > asked.seq]
        if trip.kind == "bot":
            answer = next((m for m in later if m.sender == "bot"), None)
            points = [trip.sent_wall, _epoch(asked.created_at), _epoch(answer.created_at if answer else None),
                      _epoch(answer.sent_at if answer else None), trip.received_wall]
            names = BOT_HOPS
        else:
            answer = next((m for m in later if m.sender == "agent" and m.body == trip.expect), None)
            points = [trip.sent_wall, _epoch(asked.created_at), _epoch(asked.delivered_at),
                      _epoch(answer.created_at if answer else None), _epoch(answer.sent_at if answer else None),
                      trip.received_wall]
            names = AGENT_HOPS
        if any(p is None for p in points):
            continue
        # Not clamped at zero: a negative hop would mean the clocks or the attribution are wrong, and
        # the report should show that rather than hide it.
        for name, (start, end) in zip(names, pairwise(points), strict=True):
            assert start is not None and end is not None
            hops[trip.kind][name].append(end - start)
    return {kind: {name: Latency.of(samples) for name, samples in by_hop.items()} for kind, by_hop in hops.items()}


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
