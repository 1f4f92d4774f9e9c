"""A bot answer of several messages, paced, and cut short when the customer writes first (the chat form
of Lex's PlaybackInterruptionEvent).

The first message of a turn goes out at once; the later ones are stored `held` (sender bot,
destination none: not shown, no frame seq yet) and `timers.bot_continues` shows one every
LEXDESK_BOT_TYPING_DELAY seconds, giving it the next frame seq then, so what the customer sees has no
gaps. A customer message stored after a held one (a higher transcript `seq`) cuts every held row of
that answer that the bot lets be interrupted (`allowInterrupt`, read from the bot's configuration):
they become `skipped`, and the customer gets an `interrupted` event naming what was cut. Both the
worker about to send the new message to Lex and the release task check this, under the conversation's
row lock, so a held message is either shown before the interruption or cut, never both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import exists, select, update
from sqlalchemy.orm import Session

from shared.lifecycle import DELIVER
from shared.models import Conversation, Destination, Message, MessageStatus, Sender
from shared.outbox import UnitOfWork
from shared.store import add_event, add_message

BOT_CONTINUES = "timers.bot_continues"


def hold(uow: UnitOfWork, conversation_id: str, messages: Sequence[dict[str, Any]], allow_interrupt: bool,
         **columns: Any) -> None:
    """Store the later messages of a bot answer, to be shown one by one (timers.bot_continues)."""
    for message in messages:
        payload = {key: message[key] for key in ("lex", "cards") if message.get(key)}
        payload["allow_interrupt"] = allow_interrupt
        add_message(uow.session, conversation_id, sender=Sender.BOT, destination=Destination.NONE,
                    status=MessageStatus.HELD, body=message["text"], payload=payload, **columns)
    if messages:
        uow.publish_after_commit(BOT_CONTINUES, conversation_id=conversation_id)


def held(session: Session, conversation_id: str) -> Sequence[Message]:
    return session.scalars(
        select(Message)
        .where(Message.conversation_id == conversation_id, Message.destination == Destination.NONE,
               Message.status == MessageStatus.HELD)
        .order_by(Message.seq)
    ).all()


def cut_if_interrupted(uow: UnitOfWork, conversation_id: str, rows: Sequence[Message] | None = None) -> bool:
    """Cut the held messages that a later customer message interrupted and the bot lets be cut."""
    session = uow.session
    rows = held(session, conversation_id) if rows is None else rows
    cuttable = [row for row in rows if row.payload.get("allow_interrupt", True)]
    if not cuttable:
        return False
    written_after = session.scalar(select(exists().where(
        Message.conversation_id == conversation_id, Message.sender == Sender.CUSTOMER,
        Message.seq > cuttable[0].seq)))
    if not written_after:
        return False
    for row in cuttable:
        row.status, row.last_error = MessageStatus.SKIPPED, "interrupted: the customer wrote first"
    add_event(session, conversation_id, "interrupted", cut=[row.body for row in cuttable],
              intent=cuttable[0].intent)
    uow.publish_after_commit(DELIVER, conversation_id=conversation_id)
    return True


def show_next(uow: UnitOfWork, conversation: Conversation) -> bool:
    """Show the next held message (unless interrupted); True if more are held after it."""
    session = uow.session
    rows = held(session, conversation.id)
    if not rows or cut_if_interrupted(uow, conversation.id, rows):
        return False
    row = rows[0]
    frame_seq = session.execute(
        update(Conversation).where(Conversation.id == conversation.id)
        .values(last_frame_seq=Conversation.last_frame_seq + 1)
        .returning(Conversation.last_frame_seq)
    ).scalar_one()
    row.frame_seq, row.destination, row.status = frame_seq, Destination.CUSTOMER, MessageStatus.PENDING
    uow.publish_after_commit(DELIVER, conversation_id=conversation.id)
    return len(rows) > 1
