"""Bot definitions for the Lex V2 emulator.

A bot is described by one JSON data file (see ``bots/*.json``); this module turns such a file into
immutable dataclasses and checks it thoroughly, so that a typo in a data file fails loudly at start-up
instead of producing odd conversations later. Only :func:`load_bot_file` and :func:`load_bots_dir` touch
the file system; :func:`parse_bot` is pure.

File format (camelCase keys, as in the Lex V2 model-building API where a counterpart exists)::

    {
      "botId": "BANKINGBOT",                 # exactly 10 upper-case letters/digits
      "botName": "BankingBot",
      "aliasIds": ["TSTALIASID",             # a string, or an object naming the version it points to:
                   {"botAliasId": "PRODALIAS1", "botAliasName": "Prod", "botVersion": "1",
                    "description": "..."}],  # defaults: TSTALIASID is "TestBotAlias" → DRAFT,
                                             # any other alias is named by its id and → "1"
      "localeIds": ["en_US"],
      "sentimentAnalysis": true,
      "nluConfidenceThreshold": 0.4,         # optional, default 0.4 (the Lex default)
      "idleSessionTTLInSeconds": 300,        # optional, default 300
      "slotTypes": [{"name": "...", "resolution": "TopResolution" | "OriginalValue",
                     "values": [{"value": "Checking", "synonyms": ["chequing"]}]}],
      "intents": [{
        "name": "CheckBalance",
        "sampleUtterances": ["balance for my {AccountType} account", ...],
        "slots": [{"name": "AccountType", "slotType": "AccountTypeValues", "required": true,
                   "prompt": <messages>, "maxRetries": 2, "allowInterrupt": true,
                   "waitAndContinue": {"waitingResponse": <response>, "continueResponse": <response>,
                                       "stillWaitingResponse": <response> | {"messages": <messages>,
                                           "frequencyInSeconds": 30, "timeoutInSeconds": 300,
                                           "allowInterrupt": true},
                                       "waitPhrases": [...], "continuePhrases": [...]}}],
        "confirmation": {"prompt": <response>, "declinationResponse": <response>,
                         "afterSlot": "CreditCardNumber",        # optional: confirm right after this
                                                                 # slot is captured, not at the end
                         "declinationNextStep": "Close" | "ElicitSlot"},  # ElicitSlot: a "no" asks
                                                                 # the afterSlot again (default Close)
        "closingResponse": <response>,
        "fulfilledState": "Fulfilled" | "ReadyForFulfillment",
        "dialogActionOnClose": "Close" | "ElicitIntent",
        "responseVariables": {"Balance": {"fromSlot": "AccountType", "values": {"Checking": "$1"},
                                          "default": "$0.00"},
                              "Code": {"generated": "confirmationCode"}}  # 6 upper-case alphanumerics
      }]                                                                  # derived from the session id
    }

``<response>`` is ``<messages>`` or ``{"messages": <messages>, "allowInterrupt": true}``, the shape of a
Lex ``ResponseSpecification``. ``allowInterrupt`` (default true) and the still-waiting
``frequencyInSeconds`` (1..300, default 30) and ``timeoutInSeconds`` (1..900, default 300) only matter to
the models API (``describe_slot``, ``describe_intent``): RecognizeText is turn by turn, with no clock to
remind a caller by and no field to say whether a message may be cut short.

``<messages>`` is a string (one PlainText message) or a list of strings and wire-format message objects
(``{"contentType": "ImageResponseCard", "imageResponseCard": {...}}``). Message texts are templates:
``{SlotName}`` is the slot's interpreted value, ``{Var}`` a response variable, and ``{Name|filter}``
applies a filter: ``money`` (1,234.50), ``amount`` (100, or 1,234.50 when there are cents), ``last4``,
``group4`` (digits in groups of four: 1234 5678 1234 5678), ``lower``, ``upper``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FALLBACK_INTENT = "FallbackIntent"
BUILTIN_SLOT_TYPES: frozenset[str] = frozenset({"AMAZON.Number", "AMAZON.AlphaNumeric", "AMAZON.Date"})
BOT_ID_RE = re.compile(r"^[0-9A-Z]{10}$")
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
PLACEHOLDER_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
TEMPLATE_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?:\|([a-z0-9]+))?\}")
TEMPLATE_FILTERS: frozenset[str] = frozenset({"money", "amount", "last4", "group4", "lower", "upper"})
MESSAGE_CONTENT_TYPES: frozenset[str] = frozenset({"PlainText", "SSML", "CustomPayload", "ImageResponseCard"})
CLOSING_INTENT_STATES: frozenset[str] = frozenset({"Fulfilled", "ReadyForFulfillment"})
CLOSING_DIALOG_ACTIONS: frozenset[str] = frozenset({"Close", "ElicitIntent"})
DECLINATION_NEXT_STEPS: frozenset[str] = frozenset({"Close", "ElicitSlot"})
GENERATED_VARIABLES: frozenset[str] = frozenset({"confirmationCode"})
DEFAULT_WAIT_PHRASES: tuple[str, ...] = (
    "wait",
    "hold on",
    "hang on",
    "give me a moment",
    "give me a second",
    "give me a minute",
    "one sec",
    "one second",
    "one moment",
    "just a moment",
    "just a minute",
    "just a sec",
    "give me a sec",
)
TEST_ALIAS_ID = "TSTALIASID"
TEST_ALIAS_NAME = "TestBotAlias"
DRAFT_VERSION = "DRAFT"
BOT_VERSION_RE = re.compile(r"^(DRAFT|[0-9]{1,5})$")
DEFAULT_STILL_WAITING_FREQUENCY = 30
DEFAULT_STILL_WAITING_TIMEOUT = 300
DEFAULT_CONTINUE_PHRASES: tuple[str, ...] = (
    "i'm ready",
    "im ready",
    "i am ready",
    "ready",
    "go ahead",
    "continue",
    "i have it",
    "i've got it",
    "got it",
    "found it",
    "ok i have it",
    "i'm back",
    "im back",
    "i am back",
)

Message = dict[str, Any]
"""A message in Lex wire format, whose texts may still contain ``{...}`` template references."""


class BotDefinitionError(ValueError):
    """A bot data file is malformed."""


@dataclass(frozen=True)
class SlotTypeValue:
    value: str
    synonyms: tuple[str, ...] = ()


@dataclass(frozen=True)
class SlotType:
    name: str
    values: tuple[SlotTypeValue, ...]
    resolution: str = "TopResolution"


@dataclass(frozen=True)
class WaitAndContinue:
    waiting_response: tuple[Message, ...]
    continue_response: tuple[Message, ...]
    still_waiting_response: tuple[Message, ...]
    wait_phrases: tuple[str, ...] = DEFAULT_WAIT_PHRASES
    continue_phrases: tuple[str, ...] = DEFAULT_CONTINUE_PHRASES
    waiting_allow_interrupt: bool = True
    continue_allow_interrupt: bool = True
    still_waiting_allow_interrupt: bool = True
    frequency_in_seconds: int = DEFAULT_STILL_WAITING_FREQUENCY
    timeout_in_seconds: int = DEFAULT_STILL_WAITING_TIMEOUT


@dataclass(frozen=True)
class SlotDef:
    name: str
    slot_type: str
    prompt: tuple[Message, ...]
    required: bool = True
    max_retries: int = 2
    wait_and_continue: WaitAndContinue | None = None
    allow_interrupt: bool = True


@dataclass(frozen=True)
class Confirmation:
    """The intent's confirmation: at the end (``after_slot`` None) or right after one slot is captured
    (Lex V2: that slot's ``captureNextStep`` is ConfirmIntent). ``declination_next_step`` ElicitSlot
    clears ``after_slot`` and asks it again on a "no" (Lex: ``declinationNextStep``) instead of failing."""

    prompt: tuple[Message, ...]
    declination_response: tuple[Message, ...]
    after_slot: str | None = None
    declination_next_step: str = "Close"
    prompt_allow_interrupt: bool = True
    declination_allow_interrupt: bool = True


@dataclass(frozen=True)
class ResponseVariable:
    """A template value: looked up by a slot's value (``from_slot``), or ``generated`` per session."""

    from_slot: str | None
    values: Mapping[str, str]
    default: str = ""
    generated: str | None = None


@dataclass(frozen=True)
class IntentDef:
    name: str
    sample_utterances: tuple[str, ...]
    slots: tuple[SlotDef, ...] = ()
    confirmation: Confirmation | None = None
    closing_response: tuple[Message, ...] = ()
    closing_allow_interrupt: bool = True
    fulfilled_state: str = "Fulfilled"
    dialog_action_on_close: str = "Close"
    response_variables: Mapping[str, ResponseVariable] = field(default_factory=dict)

    def slot(self, name: str) -> SlotDef | None:
        for slot in self.slots:
            if slot.name == name:
                return slot
        return None

    @property
    def slot_names(self) -> tuple[str, ...]:
        return tuple(slot.name for slot in self.slots)


@dataclass(frozen=True)
class AliasDef:
    """A bot alias and the bot version it points to (every version serves the one definition)."""

    alias_id: str
    name: str
    bot_version: str
    description: str = ""

    @classmethod
    def default(cls, alias_id: str) -> AliasDef:
        if alias_id == TEST_ALIAS_ID:
            return cls(alias_id, TEST_ALIAS_NAME, DRAFT_VERSION, "test bot alias")
        return cls(alias_id, alias_id, "1")


@dataclass(frozen=True)
class BotDef:
    bot_id: str
    name: str
    alias_ids: frozenset[str]
    locale_ids: frozenset[str]
    intents: Mapping[str, IntentDef]
    slot_types: Mapping[str, SlotType] = field(default_factory=dict)
    sentiment_analysis: bool = False
    nlu_confidence_threshold: float = 0.4
    idle_session_ttl_seconds: int = 300
    description: str = ""
    aliases: Mapping[str, AliasDef] = field(default_factory=dict)

    def alias(self, alias_id: str) -> AliasDef | None:
        if alias_id not in self.alias_ids:
            return None
        return self.aliases.get(alias_id) or AliasDef.default(alias_id)

    @property
    def versions(self) -> frozenset[str]:
        """DRAFT and every version an alias points to."""
        found = {DRAFT_VERSION}
        for alias_id in self.alias_ids:
            alias = self.alias(alias_id)
            assert alias is not None
            found.add(alias.bot_version)
        return frozenset(found)

    @property
    def fallback(self) -> IntentDef:
        return self.intents[FALLBACK_INTENT]

    def intent(self, name: str) -> IntentDef | None:
        return self.intents.get(name)


# ----------------------------------------------------------------------------------------------------------
# Parsing


def _expect(condition: bool, where: str, message: str) -> None:
    if not condition:
        raise BotDefinitionError(f"{where}: {message}")


def _str(data: Mapping[str, Any], key: str, where: str, default: str | None = None) -> str:
    value = data.get(key, default)
    _expect(isinstance(value, str) and value != "", where, f"'{key}' must be a non-empty string")
    assert isinstance(value, str)
    return value


def _str_list(data: Mapping[str, Any], key: str, where: str, *, required: bool = True) -> tuple[str, ...]:
    value = data.get(key)
    if value is None and not required:
        return ()
    _expect(
        isinstance(value, list) and all(isinstance(v, str) and v.strip() for v in value),
        where,
        f"'{key}' must be a list of non-empty strings",
    )
    assert isinstance(value, list)
    _expect(not required or len(value) > 0, where, f"'{key}' must not be empty")
    return tuple(value)


def _check_template(text: str, where: str, names: frozenset[str] | None) -> None:
    for match in TEMPLATE_RE.finditer(text):
        name, flt = match.group(1), match.group(2)
        _expect(flt is None or flt in TEMPLATE_FILTERS, where, f"unknown template filter '{flt}'")
        _expect(names is None or name in names, where, f"template refers to unknown name '{name}'")


def parse_messages(raw: Any, where: str, names: frozenset[str] | None = None) -> tuple[Message, ...]:
    """Normalise a ``<messages>`` value (string, or list of strings / wire message objects)."""
    if raw is None:
        return ()
    items = [raw] if isinstance(raw, str | dict) else raw
    _expect(isinstance(items, list), where, "messages must be a string, an object or a list")
    messages: list[Message] = []
    for index, item in enumerate(items):
        here = f"{where}[{index}]"
        if isinstance(item, str):
            _expect(item.strip() != "", here, "message text must not be empty")
            _check_template(item, here, names)
            messages.append({"contentType": "PlainText", "content": item})
            continue
        _expect(isinstance(item, dict), here, "message must be a string or an object")
        content_type = item.get("contentType")
        _expect(content_type in MESSAGE_CONTENT_TYPES, here, f"unknown contentType {content_type!r}")
        if content_type == "ImageResponseCard":
            card = item.get("imageResponseCard")
            _expect(isinstance(card, dict), here, "ImageResponseCard message needs 'imageResponseCard'")
            assert isinstance(card, dict)
            _expect(isinstance(card.get("title"), str) and card["title"] != "", here, "card needs a title")
            buttons = card.get("buttons", [])
            _expect(isinstance(buttons, list) and len(buttons) <= 5, here, "card buttons: a list of <= 5")
            for button in buttons:
                _expect(
                    isinstance(button, dict)
                    and isinstance(button.get("text"), str)
                    and isinstance(button.get("value"), str),
                    here,
                    "each button needs string 'text' and 'value'",
                )
            for text in (card["title"], card.get("subtitle") or "", *(b["text"] for b in buttons)):
                _check_template(text, here, names)
            messages.append({"contentType": "ImageResponseCard", "imageResponseCard": dict(card)})
        else:
            content = item.get("content")
            _expect(isinstance(content, str) and content != "", here, "message needs non-empty 'content'")
            assert isinstance(content, str)
            _check_template(content, here, names)
            messages.append({"contentType": content_type, "content": content})
    _expect(len(messages) <= 10, where, "at most 10 messages")
    return tuple(messages)


def _parse_slot_type(raw: Any, where: str) -> SlotType:
    _expect(isinstance(raw, dict), where, "slot type must be an object")
    name = _str(raw, "name", where)
    _expect(NAME_RE.match(name) is not None, where, f"bad slot type name {name!r}")
    resolution = raw.get("resolution", "TopResolution")
    _expect(resolution in {"TopResolution", "OriginalValue"}, where, f"bad resolution {resolution!r}")
    raw_values = raw.get("values")
    _expect(isinstance(raw_values, list) and raw_values, f"{where}.{name}", "'values' must be a non-empty list")
    values: list[SlotTypeValue] = []
    for index, item in enumerate(raw_values):
        here = f"{where}.{name}.values[{index}]"
        _expect(isinstance(item, dict), here, "value must be an object")
        values.append(SlotTypeValue(_str(item, "value", here), _str_list(item, "synonyms", here, required=False)))
    return SlotType(name=name, values=tuple(values), resolution=resolution)


def _bool(data: Mapping[str, Any], key: str, where: str, default: bool) -> bool:
    value = data.get(key, default)
    _expect(isinstance(value, bool), where, f"'{key}' must be a boolean")
    assert isinstance(value, bool)
    return value


def _int(data: Mapping[str, Any], key: str, where: str, default: int, low: int, high: int) -> int:
    value = data.get(key, default)
    _expect(
        isinstance(value, int) and not isinstance(value, bool) and low <= value <= high,
        where,
        f"'{key}' must be an integer {low}..{high}",
    )
    assert isinstance(value, int)
    return value


def _parse_response(
    raw: Any, where: str, names: frozenset[str], extra_keys: frozenset[str] = frozenset()
) -> tuple[tuple[Message, ...], Mapping[str, Any]]:
    """A ``<response>``: bare ``<messages>``, or ``{"messages": ..., "allowInterrupt": ...}`` (+ ``extra_keys``).

    Returns the messages and the response object's settings ({} for bare messages). A dict is a
    response object when it has ``messages``; otherwise it is one wire-format message.
    """
    if not (isinstance(raw, dict) and "messages" in raw):
        return parse_messages(raw, where, names), {}
    unknown = set(raw) - {"messages", "allowInterrupt"} - extra_keys
    _expect(not unknown, where, f"unknown keys {sorted(unknown)}")
    return parse_messages(raw["messages"], f"{where}.messages", names), raw


def _parse_wait_and_continue(raw: Any, where: str, names: frozenset[str]) -> WaitAndContinue:
    _expect(isinstance(raw, dict), where, "waitAndContinue must be an object")
    here = f"{where}.waitingResponse"
    waiting, waiting_opts = _parse_response(raw.get("waitingResponse"), here, names)
    _expect(len(waiting) > 0, where, "'waitingResponse' is required")
    here = f"{where}.continueResponse"
    continuing, continue_opts = _parse_response(raw.get("continueResponse"), here, names)
    here = f"{where}.stillWaitingResponse"
    timing = frozenset({"frequencyInSeconds", "timeoutInSeconds"})
    still, still_opts = _parse_response(raw.get("stillWaitingResponse"), here, names, timing)
    return WaitAndContinue(
        waiting_response=waiting,
        continue_response=continuing,
        still_waiting_response=still,
        wait_phrases=_str_list(raw, "waitPhrases", where, required=False) or DEFAULT_WAIT_PHRASES,
        continue_phrases=_str_list(raw, "continuePhrases", where, required=False) or DEFAULT_CONTINUE_PHRASES,
        waiting_allow_interrupt=_bool(waiting_opts, "allowInterrupt", f"{where}.waitingResponse", True),
        continue_allow_interrupt=_bool(continue_opts, "allowInterrupt", f"{where}.continueResponse", True),
        still_waiting_allow_interrupt=_bool(still_opts, "allowInterrupt", here, True),
        frequency_in_seconds=_int(still_opts, "frequencyInSeconds", here, DEFAULT_STILL_WAITING_FREQUENCY, 1, 300),
        timeout_in_seconds=_int(still_opts, "timeoutInSeconds", here, DEFAULT_STILL_WAITING_TIMEOUT, 1, 900),
    )


def _parse_confirmation(raw: Any, where: str, names: frozenset[str], slot_names: frozenset[str]) -> Confirmation:
    _expect(isinstance(raw, dict), where, "must be an object")
    unknown = set(raw) - {"prompt", "declinationResponse", "afterSlot", "declinationNextStep"}
    _expect(not unknown, where, f"unknown keys {sorted(unknown)}")
    prompt, prompt_opts = _parse_response(raw.get("prompt"), f"{where}.prompt", names)
    _expect(len(prompt) > 0, where, "'prompt' is required")
    here = f"{where}.declinationResponse"
    declination, declination_opts = _parse_response(raw.get("declinationResponse"), here, names)
    after_slot = raw.get("afterSlot")
    _expect(after_slot is None or after_slot in slot_names, where, f"'afterSlot' {after_slot!r} is not a slot")
    next_step = raw.get("declinationNextStep", "Close")
    _expect(next_step in DECLINATION_NEXT_STEPS, where, f"bad declinationNextStep {next_step!r}")
    needs_slot = next_step == "ElicitSlot" and after_slot is None
    _expect(not needs_slot, where, "declinationNextStep ElicitSlot needs afterSlot")
    return Confirmation(
        prompt=prompt,
        declination_response=declination,
        after_slot=after_slot,
        declination_next_step=next_step,
        prompt_allow_interrupt=_bool(prompt_opts, "allowInterrupt", f"{where}.prompt", True),
        declination_allow_interrupt=_bool(declination_opts, "allowInterrupt", here, True),
    )


def _parse_intent(raw: Any, where: str, slot_types: Mapping[str, SlotType]) -> IntentDef:
    _expect(isinstance(raw, dict), where, "intent must be an object")
    name = _str(raw, "name", where)
    _expect(NAME_RE.match(name) is not None, where, f"bad intent name {name!r}")
    where = f"{where}({name})"
    is_fallback = name == FALLBACK_INTENT
    utterances = _str_list(raw, "sampleUtterances", where, required=not is_fallback)

    raw_slots = raw.get("slots", [])
    _expect(isinstance(raw_slots, list), where, "'slots' must be a list")
    _expect(not (is_fallback and raw_slots), where, "FallbackIntent cannot have slots")
    slot_names = frozenset(s["name"] for s in raw_slots if isinstance(s, dict) and isinstance(s.get("name"), str))
    raw_vars = raw.get("responseVariables", {})
    _expect(isinstance(raw_vars, dict), where, "'responseVariables' must be an object")
    names = slot_names | frozenset(raw_vars)

    slots: list[SlotDef] = []
    seen: set[str] = set()
    for index, raw_slot in enumerate(raw_slots):
        here = f"{where}.slots[{index}]"
        _expect(isinstance(raw_slot, dict), here, "slot must be an object")
        slot_name = _str(raw_slot, "name", here)
        _expect(NAME_RE.match(slot_name) is not None, here, f"bad slot name {slot_name!r}")
        _expect(slot_name not in seen, here, f"duplicate slot {slot_name!r}")
        seen.add(slot_name)
        slot_type = _str(raw_slot, "slotType", here)
        _expect(
            slot_type in BUILTIN_SLOT_TYPES or slot_type in slot_types,
            here,
            f"unknown slot type {slot_type!r}",
        )
        prompt = parse_messages(raw_slot.get("prompt"), f"{here}.prompt", names)
        _expect(len(prompt) > 0, here, "'prompt' is required")
        max_retries = raw_slot.get("maxRetries", 2)
        _expect(isinstance(max_retries, int) and 0 <= max_retries <= 5, here, "'maxRetries' must be 0..5")
        required = raw_slot.get("required", True)
        _expect(isinstance(required, bool), here, "'required' must be a boolean")
        wac_raw = raw_slot.get("waitAndContinue")
        slots.append(
            SlotDef(
                name=slot_name,
                slot_type=slot_type,
                prompt=prompt,
                required=required,
                max_retries=max_retries,
                wait_and_continue=(
                    None if wac_raw is None else _parse_wait_and_continue(wac_raw, f"{here}.waitAndContinue", names)
                ),
                allow_interrupt=_bool(raw_slot, "allowInterrupt", here, True),
            )
        )

    for utterance in utterances:
        for placeholder in PLACEHOLDER_RE.findall(utterance):
            _expect(placeholder in slot_names, where, f"utterance {utterance!r} refers to unknown slot")

    confirmation = None
    if raw.get("confirmation") is not None:
        confirmation = _parse_confirmation(raw["confirmation"], f"{where}.confirmation", names, slot_names)

    variables: dict[str, ResponseVariable] = {}
    for var_name, spec in raw_vars.items():
        here = f"{where}.responseVariables.{var_name}"
        _expect(NAME_RE.match(var_name) is not None and var_name not in slot_names, here, "bad name")
        _expect(isinstance(spec, dict), here, "must be an object")
        if "generated" in spec:
            _expect(set(spec) == {"generated"}, here, "'generated' takes no other keys")
            _expect(spec["generated"] in GENERATED_VARIABLES, here, f"unknown generator {spec['generated']!r}")
            variables[var_name] = ResponseVariable(from_slot=None, values={}, generated=spec["generated"])
            continue
        from_slot = _str(spec, "fromSlot", here)
        _expect(from_slot in slot_names, here, f"unknown slot {from_slot!r}")
        values = spec.get("values", {})
        _expect(
            isinstance(values, dict) and all(isinstance(v, str) for v in values.values()),
            here,
            "'values' must map strings to strings",
        )
        default = spec.get("default", "")
        _expect(isinstance(default, str), here, "'default' must be a string")
        variables[var_name] = ResponseVariable(from_slot=from_slot, values=dict(values), default=default)

    fulfilled_state = raw.get("fulfilledState", "Fulfilled")
    _expect(fulfilled_state in CLOSING_INTENT_STATES, where, f"bad fulfilledState {fulfilled_state!r}")
    close_action = raw.get("dialogActionOnClose", "Close")
    _expect(close_action in CLOSING_DIALOG_ACTIONS, where, f"bad dialogActionOnClose {close_action!r}")
    here = f"{where}.closingResponse"
    closing, closing_opts = _parse_response(raw.get("closingResponse"), here, names)
    return IntentDef(
        name=name,
        sample_utterances=utterances,
        slots=tuple(slots),
        confirmation=confirmation,
        closing_response=closing,
        closing_allow_interrupt=_bool(closing_opts, "allowInterrupt", here, True),
        fulfilled_state=fulfilled_state,
        dialog_action_on_close=close_action,
        response_variables=variables,
    )


def parse_bot(data: Any, source: str = "<bot>") -> BotDef:
    """Validate a decoded bot data file and build its :class:`BotDef`."""
    _expect(isinstance(data, dict), source, "a bot file must hold a JSON object")
    bot_id = _str(data, "botId", source)
    _expect(BOT_ID_RE.match(bot_id) is not None, source, f"botId {bot_id!r} must be 10 upper-case alphanumerics")
    where = f"{source}({bot_id})"
    name = _str(data, "botName", where)
    aliases = _parse_aliases(data.get("aliasIds"), f"{where}.aliasIds")
    locale_ids = _str_list(data, "localeIds", where)
    sentiment = data.get("sentimentAnalysis", False)
    _expect(isinstance(sentiment, bool), where, "'sentimentAnalysis' must be a boolean")
    threshold = data.get("nluConfidenceThreshold", 0.4)
    _expect(isinstance(threshold, int | float) and 0 <= threshold <= 1, where, "bad nluConfidenceThreshold")
    ttl = data.get("idleSessionTTLInSeconds", 300)
    _expect(isinstance(ttl, int) and 60 <= ttl <= 86400, where, "idleSessionTTLInSeconds must be 60..86400")

    raw_types = data.get("slotTypes", [])
    _expect(isinstance(raw_types, list), where, "'slotTypes' must be a list")
    slot_types: dict[str, SlotType] = {}
    for index, raw_type in enumerate(raw_types):
        slot_type = _parse_slot_type(raw_type, f"{where}.slotTypes[{index}]")
        _expect(slot_type.name not in slot_types, where, f"duplicate slot type {slot_type.name!r}")
        _expect(slot_type.name not in BUILTIN_SLOT_TYPES, where, f"{slot_type.name!r} is a built-in")
        slot_types[slot_type.name] = slot_type

    raw_intents = data.get("intents")
    _expect(isinstance(raw_intents, list) and raw_intents, where, "'intents' must be a non-empty list")
    intents: dict[str, IntentDef] = {}
    for index, raw_intent in enumerate(raw_intents):
        intent = _parse_intent(raw_intent, f"{where}.intents[{index}]", slot_types)
        _expect(intent.name not in intents, where, f"duplicate intent {intent.name!r}")
        intents[intent.name] = intent
    _expect(FALLBACK_INTENT in intents, where, "a bot needs a FallbackIntent")
    _expect(len(intents) >= 2, where, "a bot needs at least one intent besides FallbackIntent")
    description = data.get("description", "")
    _expect(isinstance(description, str), where, "'description' must be a string")
    return BotDef(
        bot_id=bot_id,
        name=name,
        alias_ids=frozenset(aliases),
        locale_ids=frozenset(locale_ids),
        intents=intents,
        slot_types=slot_types,
        sentiment_analysis=sentiment,
        nlu_confidence_threshold=float(threshold),
        idle_session_ttl_seconds=ttl,
        description=description,
        aliases=aliases,
    )


def _parse_aliases(raw: Any, where: str) -> dict[str, AliasDef]:
    """``aliasIds``: strings (default name and version) or objects that name the version."""
    _expect(isinstance(raw, list) and len(raw) > 0, where, "must be a non-empty list")
    assert isinstance(raw, list)
    aliases: dict[str, AliasDef] = {}
    for index, item in enumerate(raw):
        here = f"{where}[{index}]"
        if isinstance(item, str):
            _expect(item.strip() != "", here, "alias id must not be empty")
            alias = AliasDef.default(item)
        else:
            _expect(isinstance(item, dict), here, "alias must be a string or an object")
            unknown = set(item) - {"botAliasId", "botAliasName", "botVersion", "description"}
            _expect(not unknown, here, f"unknown keys {sorted(unknown)}")
            default = AliasDef.default(_str(item, "botAliasId", here))
            version = item.get("botVersion", default.bot_version)
            _expect(isinstance(version, str) and BOT_VERSION_RE.match(version) is not None, here,
                    "'botVersion' must be DRAFT or a number")
            description = item.get("description", default.description)
            _expect(isinstance(description, str), here, "'description' must be a string")
            alias = AliasDef(default.alias_id, _str(item, "botAliasName", here, default.name), version, description)
        _expect(alias.alias_id not in aliases, here, f"duplicate alias {alias.alias_id!r}")
        aliases[alias.alias_id] = alias
    return aliases


def load_bot_file(path: Path) -> BotDef:
    """Read and validate one bot data file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise BotDefinitionError(f"{path}: invalid JSON: {exc}") from exc
    return parse_bot(data, str(path))


def load_bots_dir(directory: Path) -> dict[str, BotDef]:
    """Load every ``*.json`` file of ``directory``; keyed by bot id."""
    return load_bots_dirs([directory])


def load_bots_dirs(directories: Sequence[Path]) -> dict[str, BotDef]:
    """Load every ``*.json`` file of each directory, in order; a bot id defined twice is an error."""
    bots: dict[str, BotDef] = {}
    for directory in directories:
        if not directory.is_dir():
            raise BotDefinitionError(f"{directory}: not a directory")
        for path in sorted(directory.glob("*.json")):
            bot = load_bot_file(path)
            if bot.bot_id in bots:
                raise BotDefinitionError(f"{path}: bot id {bot.bot_id} is defined twice")
            bots[bot.bot_id] = bot
    return bots
