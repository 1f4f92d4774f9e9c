"""Talkdesk Digital Connect client (docs/protocol.md §4), over httpx.

One client per process: the OAuth token is cached and shared by every thread, refreshed a minute
before it expires (or at 90% of its life for short-lived tokens), and fetched again once on a 401.
Errors come back classified (shared/clients/errors.py); retrying is the caller's job, so that the
retry goes through Celery and per-conversation order is kept.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from shared.clients.errors import (
    ConversationEndedError,
    ConversationGoneError,
    DeliveryError,
    PermanentError,
    TransientError,
)

CONVERSATION_ENDED_CODE = "3016011"
SCOPE = "digital-connect:write"
# Not in the public docs we have (docs/protocol.md §4); kept in this one place.
END_CONVERSATION_PATH = "/digital-connect/conversations/{id}"
# Not in Digital Connect's public API either: lexdesk's Talkdesk emulator serves it (its console shows
# "Customer is typing…"), and it is called only with LEXDESK_FORWARD_CUSTOMER_TYPING on.
CUSTOMER_TYPING_PATH = "/digital-connect/conversations/{id}/typing"
# The shape of the ids Talkdesk issues (UUIDs and opaque alphanumeric ids): letters, digits, '-' and '_'.
# An id is checked against it before it is pasted into a URL path, and percent-encoded as one path
# segment all the same, so that no id can reach another path on the API host with our bearer token.
TALKDESK_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")


def valid_talkdesk_id(value: object) -> bool:
    return isinstance(value, str) and TALKDESK_ID.fullmatch(value) is not None


def _path_segment(conversation_id: str) -> str:
    if not valid_talkdesk_id(conversation_id):
        raise PermanentError(f"not a Talkdesk conversation id: {conversation_id[:120]!r}")
    return quote(conversation_id, safe="")


def _ascii_header(name: str, value: str) -> str:
    if not value.isascii() or any(c in value for c in "\r\n\0"):
        raise PermanentError(f"header {name} must be printable ASCII: {value[:120]!r}")
    return value


@dataclass(frozen=True)
class TalkdeskCredentials:
    client_id: str
    client_secret: str
    touchpoint_id: str


@dataclass(frozen=True)
class SentMessage:
    id: str
    message_id: str | None
    created_at: str | None
    partial_fail_reason: str | None = None


class TalkdeskClient:
    def __init__(self, api_url: str, auth_url: str, credentials: TalkdeskCredentials, *,
                 timeout: float = 10.0, transport: httpx.BaseTransport | None = None) -> None:
        self.credentials = credentials
        self._api_url = api_url.rstrip("/")
        self._auth_url = auth_url.rstrip("/")
        self._http = httpx.Client(timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
                                  transport=transport, headers={"User-Agent": "lexdesk/0.1"})
        self._token: str | None = None
        self._token_refresh_at = 0.0
        self._token_lock = threading.Lock()

    def close(self) -> None:
        self._http.close()

    # -- token -------------------------------------------------------------------------------------

    def _access_token(self, force: bool = False) -> str:
        with self._token_lock:
            if force or self._token is None or time.monotonic() >= self._token_refresh_at:
                self._token, lifetime = self._fetch_token()
                self._token_refresh_at = time.monotonic() + max(lifetime - 60, lifetime * 0.9)
            return self._token

    def _fetch_token(self) -> tuple[str, float]:
        response = self._send("POST", f"{self._auth_url}/oauth/token",
                              auth=(self.credentials.client_id, self.credentials.client_secret),
                              data={"grant_type": "client_credentials", "scope": SCOPE})
        body = _json(response, "POST /oauth/token")
        try:
            return str(body["access_token"]), float(body.get("expires_in", 3600))
        except (KeyError, TypeError, ValueError) as exc:
            raise TransientError(f"POST /oauth/token: unusable token answer ({type(exc).__name__})") from exc

    # -- API -----------------------------------------------------------------------------------------

    def start_conversation(self, body: dict[str, Any], idempotency_key: str) -> str:
        response = self._api("POST", "/digital-connect/conversations", json=body,
                             idempotency_key=idempotency_key)
        talkdesk_id = _json(response, "POST /digital-connect/conversations").get("id")
        if not valid_talkdesk_id(talkdesk_id):
            # Stored and later pasted into URLs: an answer we cannot use is refused here, not there.
            raise PermanentError(f"Talkdesk answered a conversation id of an unknown shape: {str(talkdesk_id)[:120]!r}")
        return str(talkdesk_id)

    def send_message(self, conversation_id: str, content: str, idempotency_key: str) -> SentMessage:
        with _gone_on_404():
            response = self._api("POST", f"/digital-connect/conversations/{_path_segment(conversation_id)}/messages",
                                 json={"content": content, "attachments": []}, idempotency_key=idempotency_key)
        body = _json(response, "POST .../messages")
        return SentMessage(id=str(body.get("id", "")), message_id=body.get("message_id"),
                           created_at=body.get("created_at"),
                           partial_fail_reason=body.get("partial_fail_reason"))

    def end_conversation(self, conversation_id: str) -> None:
        segment = _path_segment(conversation_id)
        with _gone_on_404():
            self._api("DELETE", END_CONVERSATION_PATH.format(id=segment), idempotency_key=f"end-{segment}")

    def customer_typing(self, conversation_id: str, active: bool) -> None:
        """The customer started (or stopped) typing. Ephemeral, so no idempotency key: latest wins."""
        with _gone_on_404():
            self._api("POST", CUSTOMER_TYPING_PATH.format(id=_path_segment(conversation_id)), json={"active": active})

    def _api(self, method: str, path: str, *, idempotency_key: str | None = None, **kwargs: Any) -> httpx.Response:
        headers = {}
        if idempotency_key is not None:
            headers["x-idempotency-key"] = _ascii_header("x-idempotency-key", idempotency_key)
        for attempt in (1, 2):
            headers["Authorization"] = f"Bearer {self._access_token(force=attempt == 2)}"
            try:
                return self._send(method, f"{self._api_url}{path}", headers=headers, **kwargs)
            except PermanentError as exc:
                if exc.status != 401 or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, url, **kwargs)
        except httpx.TimeoutException as exc:
            raise TransientError(f"{method} {url}: timed out ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise TransientError(f"{method} {url}: {type(exc).__name__}: {exc}") from exc
        except (httpx.HTTPError, httpx.InvalidURL, UnicodeError, ValueError, TypeError) as exc:
            # The request could not even be built (a bad URL, a header that is not ASCII): the same
            # request fails the same way every time, so it is permanent, never a silent endless retry.
            raise PermanentError(f"{method} {url[:200]}: request refused before sending: "
                                 f"{type(exc).__name__}: {str(exc)[:200]}") from exc
        if response.status_code < 400:
            return response
        raise classify(method, url, response)


@contextmanager
def _gone_on_404() -> Iterator[None]:
    """A call on a conversation id that Talkdesk answers 404 or 410: it no longer knows the conversation."""
    try:
        yield
    except PermanentError as exc:
        if exc.status in (404, 410) and not isinstance(exc, ConversationEndedError):
            raise ConversationGoneError(str(exc), status=exc.status, code=exc.code) from exc
        raise


def _json(response: httpx.Response, what: str) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError as exc:
        raise TransientError(f"{what}: answer {response.status_code} is not JSON") from exc
    if not isinstance(body, dict):
        raise TransientError(f"{what}: answer {response.status_code} is not a JSON object")
    return body


def classify(method: str, url: str, response: httpx.Response) -> DeliveryError:
    """Talkdesk errors: 408, 429 and 5xx are transient (honour Retry-After); 3016011 means the
    conversation has ended; every other 4xx is permanent."""
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = {}
    body = body if isinstance(body, dict) else {}
    code = str(body.get("code", "")) or None
    detail = body.get("message") or body.get("error") or response.text[:200]
    fields = ", ".join(f"{f.get('name')}: {f.get('description')}" for f in body.get("fields") or [])
    message = f"{method} {url} -> {status} {code or ''} {detail}{f' ({fields})' if fields else ''}".strip()
    retry_after = _retry_after(response.headers.get("Retry-After"))
    kwargs = {"status": status, "code": code, "retry_after": retry_after}
    if code == CONVERSATION_ENDED_CODE:
        return ConversationEndedError(message, **kwargs)
    if status in (408, 429) or status >= 500:
        return TransientError(message, **kwargs)
    return PermanentError(message, **kwargs)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None
