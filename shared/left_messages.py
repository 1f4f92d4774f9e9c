"""Messages left for the agents outside business hours (shared/business_hours.py).

Asked for an agent while closed, the bot does not hand off: the customer reads the hours and the next
opening (a `system` message and the `closed_hours` event) and is offered to leave a message, and their
next message is that message (`message_left`). At the opening, a periodic job
(timers.hand_over_left_messages) hands each conversation with a left message to Talkdesk, oldest first,
exactly as a handoff the customer asks for: the Talkdesk conversation starts with the whole transcript,
the left message included, in `previous_messages`.

Where the left message is kept. It is the customer's row as the edge stored it (destination `lex`: the
conversation stays with the bot, so nothing at the edge changes), and the lex worker, instead of calling
Lex, settles it `skipped` with error class `left_message` (lifecycle.mark_left_message), as it settles
a message typed while a handoff started (`handed_over`): both reach the agent inside the handed-over
transcript, not as sends of their own. Re-addressing the row to `talkdesk` would make it a send, queued
in seq order ahead of the handoff row that creates the Talkdesk conversation, which the talkdesk drain
would then skip for having no conversation to send it to.

Where the state is kept: `leave_message_requested_at` (offered: the next message is the left one) and
`left_message_at` (left) on the conversation. Both set: it waits for the opening. Handing it over clears
`leave_message_requested_at` in the transaction that queues the handoff, which is what makes it once.

Closing. A conversation whose left message waits is not closed for inactivity (timers.close_inactive),
so at the opening it is handed over live and the agent can still reach the customer's page. One the
customer ended themselves (closed is final: it cannot be handed off) still gets its message through, by
its own path: the Talkdesk handoff row is queued in the closed conversation with no state change, and
the talkdesk drain starts the Talkdesk conversation with the transcript as it does for a handoff the
customer left during. The agent reads the message and answers by other means (the contact's email);
callbacks about that conversation get 409, as for any ended chat.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import ColumnElement, and_, select

from shared.business_hours import BusinessHours
from shared.db import session_scope
from shared.domain import BOT_STATES
from shared.leases import lock_conversation
from shared.lifecycle import DELIVER, LEFT_MESSAGE, mark_left_message, queue_talkdesk_start, request_handoff
from shared.message_status import DELIVERED
from shared.models import Conversation, ConversationState, Destination, Message, MessageStatus, Sender
from shared.outbox import UnitOfWork, unit_of_work
from shared.settings import Settings
from shared.store import add_event, add_message

HANDED_OVER_PER_RUN = 200  # conversations per run of the job; the rest go in the next runs, a minute apart

OFFER = "Leave a message and an agent will get it when we open: type it now."
ALREADY_LEFT = "An agent will get the message you left then."
TAKEN = "Thanks, we have your message. An agent will get it when we open."
TAKEN_OPEN = "Thanks, we have your message. We are open now: an agent will get it shortly."


def waiting() -> ColumnElement[bool]:
    """SQL: the conversation has a left message not handed over yet."""
    return and_(Conversation.leave_message_requested_at.is_not(None), Conversation.left_message_at.is_not(None))


def is_waiting(conversation: Conversation) -> bool:
    return conversation.leave_message_requested_at is not None and conversation.left_message_at is not None


def awaits_message(conversation: Conversation) -> bool:
    """Offered and not left yet: the customer's next message is the one for the agents."""
    return conversation.leave_message_requested_at is not None and conversation.left_message_at is None


def ask_for_agent(uow: UnitOfWork, conversation: Conversation, hours: BusinessHours, now: datetime) -> None:
    """The bot recognised the escalation intent: the handoff while open; outside the hours, the hours,
    the next opening and the offer to leave a message (or, if one is left already, that it will go)."""
    if hours.is_open(now):
        request_handoff(uow, conversation)
        _handed_over(uow, conversation)  # a left message waiting goes with this handoff's transcript
        return
    opens_at = hours.next_opening(now)
    holiday = "We are closed today for a holiday. " if hours.is_holiday(now) else ""
    text = (f"Our agents are available {hours.describe()} ({hours.zone_name}). {holiday}"
            f"We open again {hours.opening_in_words(opens_at, now)}.")
    if is_waiting(conversation):
        text = f"{text} {ALREADY_LEFT}"
    else:
        text = f"{text} {OFFER}"
        conversation.leave_message_requested_at, conversation.left_message_at = now, None
    add_event(uow.session, conversation.id, "closed_hours",
              opens_at=opens_at.astimezone(UTC).isoformat(timespec="seconds"))
    add_message(uow.session, conversation.id, sender=Sender.SYSTEM, destination=Destination.CUSTOMER, body=text)
    uow.publish_after_commit(DELIVER, conversation_id=conversation.id)


def take(uow: UnitOfWork, conversation: Conversation, message: Message, hours: BusinessHours,
         now: datetime) -> None:
    """The lex worker took the customer's next message after the offer: it is the left message. If the
    business opened meanwhile it goes at once, without waiting for the job."""
    mark_left_message(conversation, message)
    add_event(uow.session, conversation.id, "message_left")
    is_open = hours.is_open(now)
    add_message(uow.session, conversation.id, sender=Sender.SYSTEM, destination=Destination.CUSTOMER,
                body=TAKEN_OPEN if is_open else TAKEN)
    uow.publish_after_commit(DELIVER, conversation_id=conversation.id)
    if is_open:
        hand_over(uow, conversation)


def hand_over(uow: UnitOfWork, conversation: Conversation) -> bool:
    """The conversation's left message to Talkdesk, once (False: none waits). See the module docstring
    for a conversation the customer ended meanwhile."""
    if not is_waiting(conversation):
        return False
    if conversation.state in BOT_STATES:
        request_handoff(uow, conversation)
    elif conversation.state == ConversationState.CLOSED:
        queue_talkdesk_start(uow, conversation.id)
    # Any other state: a handoff asked for since the opening started, and its transcript carries it.
    _handed_over(uow, conversation)
    return True


def _handed_over(uow: UnitOfWork, conversation: Conversation) -> None:
    if not is_waiting(conversation):
        conversation.leave_message_requested_at = None  # an offer not taken up lapses with the handoff
        return
    conversation.leave_message_requested_at = None
    left = uow.session.scalars(
        select(Message).where(Message.conversation_id == conversation.id, Message.error_class == LEFT_MESSAGE,
                              Message.status == MessageStatus.SKIPPED)
        .order_by(Message.seq.desc()).limit(1)
    ).one_or_none()
    if left is not None:
        uow.notify(left, DELIVERED)  # on its way to an agent, as a message typed while a handoff starts


def hand_over_due(config: Settings, now: datetime, limit: int = HANDED_OVER_PER_RUN) -> int:
    """The periodic job's work: while open, the conversations with a left message to Talkdesk, oldest
    first, at most `limit` per run, each in its own transaction. Closed: nothing, not even a query."""
    if not config.business_schedule.is_open(now):
        return 0
    with session_scope(config.database_url) as session:
        due = session.scalars(
            select(Conversation.id).where(waiting()).order_by(Conversation.left_message_at).limit(limit)
        ).all()
    handed = 0
    for conversation_id in due:
        with unit_of_work(config) as uow:
            conversation = lock_conversation(uow.session, conversation_id)
            if conversation is not None and hand_over(uow, conversation):
                handed += 1
    return handed
