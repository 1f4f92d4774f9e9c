"""routing.customer_acks, called directly: an edge node's acknowledgements of one interval, for many
conversations, applied in one transaction (one statement per table)."""

from __future__ import annotations

from sqlalchemy import Engine, event, select

from shared.db import session_scope
from shared.models import Conversation, Destination, Message, Sender
from shared.store import add_message, create_conversation
from tests.workers.conftest import Env


def _conversation_with_frames(env: Env, frames: int) -> str:
    with session_scope(env.database_url) as session:
        conversation_id = create_conversation(session).id
        for n in range(frames):
            add_message(session, conversation_id, sender=Sender.BOT, destination=Destination.CUSTOMER, body=f"f{n}")
    return conversation_id


def _state(env: Env, conversation_id: str) -> tuple[int, list[str]]:
    with session_scope(env.database_url) as session:
        acked = session.get_one(Conversation, conversation_id).acked_frame_seq
        statuses = list(session.scalars(select(Message.status).where(Message.conversation_id == conversation_id)
                                        .order_by(Message.frame_seq)))
    return acked, statuses


def test_one_batch_acknowledges_many_conversations_in_one_commit(env: Env) -> None:
    from workers.routing import customer_acks

    first, second, third = (_conversation_with_frames(env, n) for n in (3, 2, 2))
    commits: list[object] = []
    listener = lambda _conn: commits.append(1)  # noqa: E731
    event.listen(Engine, "commit", listener)
    try:
        # Beyond what was numbered is bounded to it; a repeat, a lower seq and junk change nothing.
        customer_acks(acks=[[first, 2], [second, 99], [first, 1], ["no-such-conversation", 4], [third, 0]])
    finally:
        event.remove(Engine, "commit", listener)
    assert len(commits) == 1
    assert _state(env, first) == (2, ["delivered", "delivered", "pending"])
    assert _state(env, second) == (2, ["delivered", "delivered"])
    assert _state(env, third) == (0, ["pending", "pending"])
    customer_acks(acks=[[first, 1]])  # an older ack arriving late does not move anything back
    assert _state(env, first) == (2, ["delivered", "delivered", "pending"])
    customer_acks(acks=[])
