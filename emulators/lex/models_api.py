"""Read-only Lex V2 models API (boto3 ``lexv2-models``) over the emulator's bot files.

lexdesk and its tools can thus discover a bot the way they would on AWS (alias → version → intents →
slots, e.g. to learn which slot waits for a card number) without a second source of truth: the answers
are derived from the same bot files the runtime serves. Paths and shapes follow botocore's service
model (``lexv2-models`` 2020-08-07, rest-json, trailing slashes included). Only the eight read calls
lexdesk needs are served; anything else is a 404 ``UnknownOperationException`` from the app.

List calls honour ``maxResults`` (1..1000; 10 when absent, the emulator's choice), ``nextToken``,
``sortBy`` (by name; all resources share one timestamp) and ``filters`` (``EQ``/``CO``, and ``NE``
for bots). Every bot version an alias points to, and ``DRAFT``, serve the one definition in the file.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from emulators.lex import ids
from emulators.lex import model_shapes as shapes
from emulators.lex.botdef import BotDef, BotDefinitionError, IntentDef, SlotDef
from emulators.lex.errors import ResourceNotFoundException, ValidationException

Json = dict[str, Any]
DEFAULT_MAX_RESULTS = 10
LOCALE_PATH = "/bots/{bot_id}/botversions/{bot_version}/botlocales/{locale_id}"


@dataclass(frozen=True)
class LocaleIndex:
    """Id lookups of one bot locale, built once (and checked for id collisions) at start-up."""

    intents: Mapping[str, IntentDef]
    slots: Mapping[tuple[str, str], SlotDef]


def build_index(bot: BotDef, locale_id: str) -> LocaleIndex:
    intents: dict[str, IntentDef] = {}
    slots: dict[tuple[str, str], SlotDef] = {}
    for intent in bot.intents.values():
        intent_id = ids.intent_id(bot.bot_id, locale_id, intent.name)
        if intent_id in intents:
            raise BotDefinitionError(f"{bot.bot_id}: intents {intent.name} and {intents[intent_id].name} share id")
        intents[intent_id] = intent
        for slot in intent.slots:
            key = (intent_id, ids.slot_id(bot.bot_id, locale_id, intent.name, slot.name))
            if key in slots:
                raise BotDefinitionError(f"{bot.bot_id}.{intent.name}: two slots share id {key[1]}")
            slots[key] = slot
    return LocaleIndex(intents, slots)


async def _body(request: Request) -> Json:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationException(f"Request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ValidationException("Request body must be a JSON object")
    return body


def _encode_token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode("ascii")


def _decode_token(token: Any) -> int:
    try:
        text = base64.urlsafe_b64decode(str(token).encode("ascii")).decode("ascii")
        kind, _, number = text.partition(":")
        if kind != "offset" or not number.isdigit():
            raise ValueError(text)
        return int(number)
    except (ValueError, binascii.Error, UnicodeError) as exc:
        raise ValidationException("The nextToken is not valid") from exc


def _filtered_sorted(
    items: list[Json],
    body: Json,
    name_key: str,
    filter_name: str,
    sort_attributes: frozenset[str],
    operators: frozenset[str],
) -> list[Json]:
    """Apply the request's ``filters`` (by name), then its ``sortBy`` (by name; ascending by default)."""
    filters = body.get("filters") or []
    if not isinstance(filters, list):
        raise ValidationException("filters must be a list")
    for flt in filters:
        if not isinstance(flt, dict):
            raise ValidationException("each filter must be an object")
        values = flt.get("values")
        if flt.get("name") != filter_name or flt.get("operator") not in operators:
            raise ValidationException(f"Unsupported filter {flt.get('name')!r} {flt.get('operator')!r}")
        if not (isinstance(values, list) and len(values) == 1 and isinstance(values[0], str)):
            raise ValidationException("a filter takes exactly one value")
        wanted, operator = values[0], flt["operator"]
        if operator == "EQ":
            items = [item for item in items if item[name_key] == wanted]
        elif operator == "NE":
            items = [item for item in items if item[name_key] != wanted]
        else:
            items = [item for item in items if wanted.lower() in item[name_key].lower()]
    sort_by = body.get("sortBy") or {}
    if not isinstance(sort_by, dict):
        raise ValidationException("sortBy must be an object")
    if sort_by and sort_by.get("attribute") not in sort_attributes:
        raise ValidationException(f"Unsupported sort attribute {sort_by.get('attribute')!r}")
    if sort_by.get("order", "Ascending") not in ("Ascending", "Descending"):
        raise ValidationException("sortBy.order must be Ascending or Descending")
    return sorted(items, key=lambda item: item[name_key], reverse=sort_by.get("order") == "Descending")


def _page(items: list[Json], body: Json, list_key: str, **extra: str) -> JSONResponse:
    max_results = body.get("maxResults", DEFAULT_MAX_RESULTS)
    if not isinstance(max_results, int) or isinstance(max_results, bool) or not 1 <= max_results <= 1000:
        raise ValidationException("maxResults must be 1..1000")
    offset = _decode_token(body["nextToken"]) if body.get("nextToken") else 0
    page: Json = {**extra, list_key: items[offset : offset + max_results]}
    if offset + max_results < len(items):
        page["nextToken"] = _encode_token(offset + max_results)
    return JSONResponse(page)


def models_routes(bots: Mapping[str, BotDef], clock: Callable[[], float] = time.time) -> APIRouter:
    """The read-only models routes over ``bots``; every resource reports the load time as its timestamps."""
    stamp = clock()
    indexes = {(bot.bot_id, locale): build_index(bot, locale) for bot in bots.values() for locale in bot.locale_ids}
    router = APIRouter()

    def bot_of(bot_id: str) -> BotDef:
        bot = bots.get(bot_id)
        if bot is None:
            raise ResourceNotFoundException(f"Failed to retrieve resource since it does not exist: bot {bot_id}")
        return bot

    def locale_of(bot_id: str, version: str, locale_id: str) -> tuple[BotDef, LocaleIndex]:
        bot = bot_of(bot_id)
        if version not in bot.versions:
            raise ResourceNotFoundException(f"Could not find version {version} of bot {bot_id}")
        index = indexes.get((bot_id, locale_id))
        if index is None:
            raise ResourceNotFoundException(f"Could not find locale {locale_id} in version {version} of bot {bot_id}")
        return bot, index

    def intent_of(index: LocaleIndex, bot_id: str, intent_id: str) -> IntentDef:
        intent = index.intents.get(intent_id)
        if intent is None:
            raise ResourceNotFoundException(f"Could not find intent {intent_id} in bot {bot_id}")
        return intent

    @router.post("/bots/")
    async def list_bots(request: Request) -> JSONResponse:
        body = await _body(request)
        items = [shapes.bot_summary(bot, stamp) for bot in bots.values()]
        items = _filtered_sorted(items, body, "botName", "BotName", frozenset({"BotName"}),
                                 frozenset({"EQ", "CO", "NE"}))
        return _page(items, body, "botSummaries")

    @router.get("/bots/{bot_id}/")
    async def describe_bot(bot_id: str) -> JSONResponse:
        return JSONResponse(shapes.describe_bot(bot_of(bot_id), stamp))

    @router.post("/bots/{bot_id}/botaliases/")
    async def list_bot_aliases(bot_id: str, request: Request) -> JSONResponse:
        bot = bot_of(bot_id)
        body = await _body(request)
        aliases = [bot.alias(alias_id) for alias_id in sorted(bot.alias_ids)]
        items = [shapes.alias_summary(alias, stamp) for alias in aliases if alias is not None]
        return _page(items, body, "botAliasSummaries", botId=bot_id)

    @router.get("/bots/{bot_id}/botaliases/{bot_alias_id}/")
    async def describe_bot_alias(bot_id: str, bot_alias_id: str) -> JSONResponse:
        bot = bot_of(bot_id)
        alias = bot.alias(bot_alias_id)
        if alias is None:
            raise ResourceNotFoundException(f"Could not find bot alias {bot_alias_id} of bot {bot_id}")
        return JSONResponse(shapes.describe_alias(bot, alias, stamp))

    @router.post(LOCALE_PATH + "/intents/")
    async def list_intents(bot_id: str, bot_version: str, locale_id: str, request: Request) -> JSONResponse:
        _, index = locale_of(bot_id, bot_version, locale_id)
        body = await _body(request)
        items = [shapes.intent_summary(intent, intent_id, stamp) for intent_id, intent in index.intents.items()]
        items = _filtered_sorted(items, body, "intentName", "IntentName",
                                 frozenset({"IntentName", "LastUpdatedDateTime"}), frozenset({"EQ", "CO"}))
        return _page(items, body, "intentSummaries", botId=bot_id, botVersion=bot_version, localeId=locale_id)

    @router.get(LOCALE_PATH + "/intents/{intent_id}/")
    async def describe_intent(bot_id: str, bot_version: str, locale_id: str, intent_id: str) -> JSONResponse:
        bot, index = locale_of(bot_id, bot_version, locale_id)
        intent = intent_of(index, bot_id, intent_id)
        return JSONResponse(shapes.describe_intent(bot, bot_version, locale_id, intent, stamp))

    @router.post(LOCALE_PATH + "/intents/{intent_id}/slots/")
    async def list_slots(
        bot_id: str, bot_version: str, locale_id: str, intent_id: str, request: Request
    ) -> JSONResponse:
        bot, index = locale_of(bot_id, bot_version, locale_id)
        intent = intent_of(index, bot_id, intent_id)
        body = await _body(request)
        items = [shapes.slot_summary(bot, locale_id, intent, slot, stamp) for slot in intent.slots]
        items = _filtered_sorted(items, body, "slotName", "SlotName",
                                 frozenset({"SlotName", "LastUpdatedDateTime"}), frozenset({"EQ", "CO"}))
        return _page(items, body, "slotSummaries", botId=bot_id, botVersion=bot_version, localeId=locale_id,
                     intentId=intent_id)

    @router.get(LOCALE_PATH + "/intents/{intent_id}/slots/{slot_id}/")
    async def describe_slot(
        bot_id: str, bot_version: str, locale_id: str, intent_id: str, slot_id: str
    ) -> JSONResponse:
        bot, index = locale_of(bot_id, bot_version, locale_id)
        intent = intent_of(index, bot_id, intent_id)
        slot = index.slots.get((intent_id, slot_id))
        if slot is None:
            raise ResourceNotFoundException(f"Could not find slot {slot_id} in intent {intent_id} of bot {bot_id}")
        return JSONResponse(shapes.describe_slot(bot, bot_version, locale_id, intent, slot, stamp))

    return router
