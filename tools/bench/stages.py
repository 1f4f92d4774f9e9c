"""Where a round trip's time goes, read back from the transcript after the run.

Every row of `messages` carries `created_at` (stored), `sent_at` (a customer frame handed to the edge
node's queue) and `delivered_at` (a bot/Talkdesk row answered or posted). Together with the client's
send and receipt times (all on this machine's clock) they split each round trip into hops:

bot:   send ─▶ customer row stored (by the edge, before it answers `accepted`) ─▶ bot row stored (lex.drain:
       outbox relay, queue, RecognizeText) ─▶ bot frame published to the edge's queue (routing.deliver) ─▶ frame
       read by the client (edge consumer, socket)
agent: send ─▶ stored ─▶ posted to Talkdesk (talkdesk.drain) ─▶ agent reply stored (the emulator's scripted
       reply delay, then its callback, which the callback app stores) ─▶ published to the edge
       (routing.deliver) ─▶ read
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise

from sqlalchemy import select

from tools.bench.stats import Latency

# `sent_at` is stamped just after the publish to the edge's queue, so a fast edge can hand the frame to
# the client a few milliseconds before it: the last hop may be slightly negative. A `sent_at` later than
# the receipt by more than this is a resend, not that.
RESENT_AFTER = 1.0
BOT_HOPS = ("send→stored", "stored→bot answered", "answered→published to edge", "published→client")
AGENT_HOPS = ("send→stored", "stored→posted to Talkdesk", "posted→agent reply stored",
              "reply stored→published to edge", "published→client")


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
    """Per kind of trip, per hop: the latency distribution. Trips whose rows are missing, or whose answer
    was resent after the client had it, are left out (so `count` may be below the trips measured)."""
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
            names: tuple[str, ...] = BOT_HOPS
        else:
            answer = next((m for m in later if m.sender == "agent" and m.body == trip.expect), None)
            points = [trip.sent_wall, _epoch(asked.created_at), _epoch(asked.delivered_at),
                      _epoch(answer.created_at if answer else None), _epoch(answer.sent_at if answer else None),
                      trip.received_wall]
            names = AGENT_HOPS
        if any(p is None for p in points):
            continue
        if points[-2] is not None and points[-2] > trip.received_wall + RESENT_AFTER:
            # `sent_at` is rewritten when a frame goes out again (the sweep resends frames not
            # acknowledged within 30 s): this trip's last hops cannot be told apart, so it is left out.
            continue
        # Not clamped at zero: beyond the few milliseconds the last hop may legitimately be negative, a
        # negative hop would mean the clocks or the attribution are wrong, and the report should show it.
        for name, (start, end) in zip(names, pairwise(points), strict=True):
            assert start is not None and end is not None
            hops[trip.kind][name].append(end - start)
    return {kind: {name: Latency.of(samples) for name, samples in by_hop.items()} for kind, by_hop in hops.items()}


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
