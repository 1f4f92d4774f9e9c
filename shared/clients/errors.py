"""How a failed call to Talkdesk or Lex is classified: retry it, or dead-letter it at once."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class DeliveryError(Exception):
    """A call that failed. `error_class` is what operators filter dead letters by."""

    transient: bool = False
    error_class: str = "error"

    def __init__(self, message: str, *, retry_after: float | None = None, status: int | None = None,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status
        self.code = code


class TransientError(DeliveryError):
    """Timeouts, connection errors, 5xx, 408, 429: worth retrying with backoff."""

    transient = True
    error_class = "transient"


class PermanentError(DeliveryError):
    """Other 4xx: the same request will fail the same way."""

    error_class = "permanent"


class ConversationEndedError(PermanentError):
    """Talkdesk code 3016011: the Talkdesk side has already ended the conversation."""

    error_class = "conversation_ended"


class ConversationGoneError(PermanentError):
    """Talkdesk no longer knows the conversation (404 on a send: expired or removed on its side). Not a
    dead letter: the customer can ask for an agent again and a new conversation gets the transcript."""

    error_class = "conversation_gone"


@contextmanager
def classified(call: str) -> Iterator[None]:
    """Around a call to a vendor: whatever the client raises comes out as a DeliveryError. An error
    that no classification foresaw (a bug, a library's surprise) is permanent: the message becomes a
    dead letter an operator can see and replay, never a row retried forever without a count."""
    try:
        yield
    except DeliveryError:
        raise
    except Exception as exc:
        raise PermanentError(f"{call}: unexpected {type(exc).__name__}: {str(exc)[:300]}") from exc
