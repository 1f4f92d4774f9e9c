"""How `lexdesk callback` is served: uvicorn's h11 protocol with a deadline for receiving each request,
and uvicorn's own limits set from the settings.

uvicorn has no timeout for a request that never finishes arriving: `timeout_keep_alive` runs only
between requests and is cancelled by every byte received, and ASGI middleware runs only once the
headers are complete. So a slow-loris client (an unfinished request line, headers or body, perhaps a
byte at a time) held its connection for as long as it liked. The deadline here starts when a request
begins (the connection opens, or its first byte arrives on a kept-alive one) and ends when its body is
complete; if it passes first, the connection is closed. Responses are not limited, only receiving.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from shared.settings import Settings

# The client's h11 states in which a request has begun (IDLE once bytes have come) but not fully arrived.
RECEIVING = (h11.IDLE, h11.SEND_BODY)


class DeadlineH11Protocol(H11Protocol):
    """H11Protocol that closes a connection whose request is not received within `request_timeout`."""

    request_timeout: float = 10.0  # set on the subclass deadline_protocol() makes
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._deadline is None and self.conn.their_state is h11.IDLE:
            self._arm()  # the next request on a kept-alive connection begins
        super().data_received(data)
        if self.conn.their_state not in RECEIVING:
            self._disarm()  # received whole (or the connection is done with)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.request_timeout, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.conn.their_state in RECEIVING and not self.transport.is_closing():
            # No response is possible before a request line has arrived (h11 has nowhere to put it),
            # and the client is not reading one anyway: the connection is simply closed.
            self.transport.close()


def deadline_protocol(request_timeout: float) -> type[DeadlineH11Protocol]:
    # uvicorn builds one protocol per connection from a class: the setting travels as a class attribute.
    return type("DeadlineH11Protocol", (DeadlineH11Protocol,), {"request_timeout": request_timeout})


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for uvicorn.run (lexdesk/cli.py `callback`)."""
    return {
        "host": settings.http_host,
        "port": settings.http_port,
        "http": deadline_protocol(settings.http_request_timeout),
        "ws": "none",  # the app has no WebSocket routes: an upgrade is never wanted here
        "timeout_keep_alive": settings.http_keep_alive_timeout,
        # Connections and requests in flight; beyond it uvicorn answers 503 (Talkdesk retries those).
        "limit_concurrency": settings.http_max_connections,
        # A request line and headers still arriving are refused (400) beyond this many bytes.
        "h11_max_incomplete_event_size": settings.http_max_header_bytes,
    }
