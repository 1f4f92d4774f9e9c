"""The Lex V2 models API (boto3 `lexv2-models`), read only: what the bot's own configuration says about
a prompt, so that lexdesk follows the bot instead of constants. For a slot: its elicitation prompt,
whether it may be interrupted, and its wait-and-continue (the waiting, still-waiting and continue
responses, how often to remind, when to give up). For an intent: whether its closing response may be
interrupted.

RecognizeText does not carry these (over a stream Lex acts on them itself), so they are looked up by
name: the alias gives the bot version, `list_intents` and `list_slots` give the ids, `describe_slot`
and `describe_intent` the settings. Answers are cached per process for `ttl` seconds: configuration
changes rarely, and a lookup is several calls. A bot served through this API needs the IAM actions
lex:DescribeBotAlias, lex:ListIntents, lex:ListSlots, lex:DescribeSlot and lex:DescribeIntent.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

T = TypeVar("T")


class LexModelsUnavailable(RuntimeError):
    """The bot's configuration could not be read; the caller falls back to its settings."""


@dataclass(frozen=True)
class WaitAndContinue:
    waiting: tuple[str, ...]
    still_waiting: tuple[str, ...]
    continuing: tuple[str, ...]
    frequency_seconds: float
    timeout_seconds: float
    still_waiting_interruptible: bool


@dataclass(frozen=True)
class SlotPrompt:
    """A slot's elicitation as the bot defines it."""

    prompt: tuple[str, ...]
    allow_interrupt: bool
    wait_and_continue: WaitAndContinue | None


def texts(groups: list[dict[str, Any]] | None) -> tuple[str, ...]:
    """The plain-text messages of a Lex message-group list (each group's main message)."""
    found = []
    for group in groups or []:
        plain = ((group.get("message") or {}).get("plainTextMessage") or {}).get("value")
        if plain:
            found.append(str(plain))
    return tuple(found)


def _wait_and_continue(spec: dict[str, Any] | None) -> WaitAndContinue | None:
    if not spec or spec.get("active") is False:
        return None
    still = spec.get("stillWaitingResponse") or {}
    return WaitAndContinue(
        waiting=texts((spec.get("waitingResponse") or {}).get("messageGroups")),
        still_waiting=texts(still.get("messageGroups")),
        continuing=texts((spec.get("continueResponse") or {}).get("messageGroups")),
        frequency_seconds=float(still.get("frequencyInSeconds") or 0) or 30.0,
        timeout_seconds=float(still.get("timeoutInSeconds") or 0) or 300.0,
        still_waiting_interruptible=bool(still.get("allowInterrupt", True)),
    )


class LexModels:
    def __init__(self, *, bot_id: str, bot_alias_id: str, locale_id: str, region: str, endpoint_url: str | None,
                 timeout: float = 5.0, credentials: dict[str, str] | None = None, ttl: float = 300.0) -> None:
        self.bot_id, self.bot_alias_id, self.locale_id = bot_id, bot_alias_id, locale_id
        self.ttl = ttl
        config = Config(connect_timeout=min(timeout, 5.0), read_timeout=timeout, retries={"total_max_attempts": 2})
        self._client = boto3.session.Session().client(
            "lexv2-models", region_name=region, endpoint_url=endpoint_url, config=config, **(credentials or {}))
        self._cache: dict[tuple[str, ...], tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def slot(self, intent: str, slot: str) -> SlotPrompt | None:
        """None: the bot has no such intent or slot."""
        return self._cached(("slot", intent, slot), lambda: self._describe_slot(intent, slot))

    def closing_allows_interrupt(self, intent: str) -> bool | None:
        """Whether the intent's closing response may be cut short; None: the bot does not say."""
        return self._cached(("closing", intent), lambda: self._closing_interrupt(intent))

    # -- lookups ---------------------------------------------------------------------------------------

    def _cached(self, key: tuple[str, ...], load: Callable[[], T]) -> T:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and hit[0] > now:
                return hit[1]  # type: ignore[no-any-return]
        value = load()
        with self._lock:
            self._cache[key] = (now + self.ttl, value)
        return value

    def _call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        try:
            return dict(getattr(self._client, operation)(**kwargs))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                return {}
            raise LexModelsUnavailable(f"Lex {operation}: {exc}") from exc
        except BotoCoreError as exc:
            raise LexModelsUnavailable(f"Lex {operation}: {type(exc).__name__}: {exc}") from exc

    def _version(self) -> str:
        return self._cached(("version",), lambda: str(self._call(
            "describe_bot_alias", botId=self.bot_id, botAliasId=self.bot_alias_id).get("botVersion") or "DRAFT"))

    def _intent_id(self, intent: str) -> str | None:
        def load() -> str | None:
            found = self._call("list_intents", botId=self.bot_id, botVersion=self._version(), localeId=self.locale_id,
                               filters=[{"name": "IntentName", "values": [intent], "operator": "EQ"}])
            return next((i["intentId"] for i in found.get("intentSummaries") or [] if i.get("intentName") == intent),
                        None)
        return self._cached(("intent", intent), load)

    def _describe_slot(self, intent: str, slot: str) -> SlotPrompt | None:
        intent_id = self._intent_id(intent)
        if intent_id is None:
            return None
        version = self._version()
        found = self._call("list_slots", botId=self.bot_id, botVersion=version, localeId=self.locale_id,
                           intentId=intent_id, filters=[{"name": "SlotName", "values": [slot], "operator": "EQ"}])
        slot_id = next((s["slotId"] for s in found.get("slotSummaries") or [] if s.get("slotName") == slot), None)
        if slot_id is None:
            return None
        described = self._call("describe_slot", botId=self.bot_id, botVersion=version, localeId=self.locale_id,
                               intentId=intent_id, slotId=slot_id)
        elicitation = described.get("valueElicitationSetting") or {}
        prompt = elicitation.get("promptSpecification") or {}
        return SlotPrompt(prompt=texts(prompt.get("messageGroups")),
                          allow_interrupt=bool(prompt.get("allowInterrupt", True)),
                          wait_and_continue=_wait_and_continue(elicitation.get("waitAndContinueSpecification")))

    def _closing_interrupt(self, intent: str) -> bool | None:
        intent_id = self._intent_id(intent)
        if intent_id is None:
            return None
        described = self._call("describe_intent", botId=self.bot_id, botVersion=self._version(),
                               localeId=self.locale_id, intentId=intent_id)
        closing = (described.get("intentClosingSetting") or {}).get("closingResponse") or {}
        return bool(closing["allowInterrupt"]) if "allowInterrupt" in closing else None
