"""Lex V2 runtime client: boto3 `lexv2-runtime` (`endpoint_url` for the emulator), turned into plain
`BotTurn` data for the domain layer. Retries are the caller's (Celery's), so botocore's own are off."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, ParamValidationError, ReadTimeoutError

from shared.clients.errors import DeliveryError, PermanentError, TransientError
from shared.domain import BotTurn
from shared.redaction import mask_values, redact_slots, sensitive_values

TRANSIENT_CODES = {"ThrottlingException", "InternalFailureException", "DependencyFailedException",
                   "BadGatewayException", "ServiceUnavailableException"}


class LexClient:
    def __init__(self, *, bot_id: str, bot_alias_id: str, locale_id: str, region: str,
                 endpoint_url: str | None, timeout: float = 10.0, credentials: dict[str, str] | None = None
                 ) -> None:
        self.bot_id, self.bot_alias_id, self.locale_id = bot_id, bot_alias_id, locale_id
        config = Config(connect_timeout=min(timeout, 5.0), read_timeout=timeout,
                        retries={"total_max_attempts": 1}, max_pool_connections=32)
        self._client = boto3.session.Session().client(
            "lexv2-runtime", region_name=region, endpoint_url=endpoint_url, config=config,
            **(credentials or {}),
        )

    def recognize_text(self, session_id: str, text: str, session_attributes: dict[str, str] | None = None,
                       session_state: dict[str, Any] | None = None) -> BotTurn:
        """`session_state` replaces Lex's own for this turn (a replay after a crash)."""
        kwargs: dict[str, Any] = {}
        state = _without_nulls(session_state or {})
        if session_attributes:
            state["sessionAttributes"] = {**state.get("sessionAttributes", {}), **session_attributes}
        if state:
            kwargs["sessionState"] = state
        try:
            response = self._client.recognize_text(
                botId=self.bot_id, botAliasId=self.bot_alias_id, localeId=self.locale_id,
                sessionId=session_id, text=text, **kwargs,
            )
        except (ReadTimeoutError, ConnectionError) as exc:
            raise TransientError(f"Lex RecognizeText: {type(exc).__name__}: {exc}") from exc
        except ClientError as exc:
            raise _classify(exc) from exc
        except ParamValidationError as exc:  # a misconfigured bot id or alias never gets better
            raise PermanentError(f"Lex RecognizeText: invalid request: {exc}") from exc
        except BotoCoreError as exc:
            raise TransientError(f"Lex RecognizeText: {type(exc).__name__}: {exc}") from exc
        return parse_turn(response)

    def delete_session(self, session_id: str) -> None:
        try:
            self._client.delete_session(botId=self.bot_id, botAliasId=self.bot_alias_id,
                                        localeId=self.locale_id, sessionId=session_id)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                raise _classify(exc) from exc
        except BotoCoreError as exc:
            raise TransientError(f"Lex DeleteSession: {type(exc).__name__}: {exc}") from exc


def _without_nulls(value: Any) -> Any:
    """Lex returns unfilled slots as null, but botocore will not send a null: leave them out, which
    means the same to Lex."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _classify(exc: ClientError) -> DeliveryError:
    code = exc.response.get("Error", {}).get("Code", "")
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    message = f"Lex RecognizeText: {code}: {exc.response.get('Error', {}).get('Message', '')}"
    if code in TRANSIENT_CODES or (status is not None and status >= 500):
        return TransientError(message, status=status, code=code)
    return PermanentError(message, status=status, code=code)


def parse_turn(response: dict[str, Any]) -> BotTurn:
    state = response.get("sessionState") or {}
    intent = state.get("intent") or {}
    dialog = state.get("dialogAction") or {}
    interpretations = response.get("interpretations") or []
    top = interpretations[0] if interpretations else {}
    sentiment = top.get("sentimentResponse") or {}
    messages = []
    # A bot reading a card number, CVV or expiry back ("the card number is 1234 5678 …, is that
    # correct?") says it in clear: masked here, before anything can log or store it.
    read_back = sensitive_values(state)
    for message in response.get("messages") or []:
        if message.get("contentType") == "ImageResponseCard" and message.get("imageResponseCard"):
            card = message["imageResponseCard"]
            messages.append({"text": mask_values(card.get("title", ""), read_back), "cards": [_card(card)]})
        elif message.get("content"):
            messages.append({"text": mask_values(message["content"], read_back)})
    slots = {
        name: ((value or {}).get("value") or {}).get("interpretedValue") if value else None
        for name, value in (intent.get("slots") or {}).items()
    }
    return BotTurn(
        messages=messages,
        intent=intent.get("name"),
        intent_state=intent.get("state"),
        dialog_action=dialog.get("type"),
        slot_to_elicit=dialog.get("slotToElicit"),
        slots=redact_slots(slots),
        sentiment=sentiment.get("sentiment"),
        sentiment_score=sentiment.get("sentimentScore"),
        confidence=(top.get("nluConfidence") or {}).get("score"),
        session_attributes=state.get("sessionAttributes") or {},
        session_state=state,
    )


def _card(card: dict[str, Any]) -> dict[str, Any]:
    return {
        "title": card.get("title", ""),
        "subtitle": card.get("subtitle"),
        "image_url": card.get("imageUrl"),
        "buttons": [{"text": b.get("text", ""), "value": b.get("value", "")} for b in card.get("buttons") or []],
    }
