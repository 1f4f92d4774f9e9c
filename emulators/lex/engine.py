"""The Lex V2 dialog engine: pure logic, no I/O.

Given a bot definition, the stored state of a conversation and one user utterance, it computes what
Amazon Lex V2's RecognizeText would: the next dialog action (ElicitIntent / ElicitSlot / ConfirmIntent /
Close), the intent with its slots, state and confirmation state, the interpretations with NLU confidence
scores (and sentiment when the bot has it enabled) and the messages to show. It also implements the
state changes of PutSession. Everything is expressed in Lex wire shapes via ``to_wire`` methods, so the
HTTP layer only serialises.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from emulators.lex import ids, nlu
from emulators.lex.botdef import (
    FALLBACK_INTENT,
    MESSAGE_CONTENT_TYPES,
    PLACEHOLDER_RE,
    TEMPLATE_RE,
    BotDef,
    IntentDef,
    Message,
    SlotDef,
)
from emulators.lex.errors import ValidationException
from emulators.lex.slot_values import ExtractedValue, extract_value

INTENT_STATES: frozenset[str] = frozenset(
    {"Failed", "Fulfilled", "InProgress", "ReadyForFulfillment", "Waiting", "FulfillmentInProgress"}
)
CONFIRMATION_STATES: frozenset[str] = frozenset({"Confirmed", "Denied", "None"})
DIALOG_ACTION_TYPES: frozenset[str] = frozenset(
    {"Close", "ConfirmIntent", "Delegate", "ElicitIntent", "ElicitSlot", "None"}
)
SLOT_ELICITATION_STYLES: frozenset[str] = frozenset({"Default", "SpellByLetter", "SpellByWord"})
MAX_TEXT_LENGTH = 1024
SWITCH_THRESHOLD = 0.8
"""An utterance that does not answer the pending question switches intent only above this confidence."""
MAX_CONFIRMATION_RETRIES = 2
MAX_INTERPRETATIONS = 5


# ----------------------------------------------------------------------------------------------------------
# Session state, in Lex wire shapes


@dataclass
class SlotValue:
    interpreted_value: str
    original_value: str | None = None
    resolved_values: tuple[str, ...] = ()

    @classmethod
    def from_extracted(cls, value: ExtractedValue) -> SlotValue:
        return cls(value.interpreted, value.original, value.resolved)

    def to_wire(self) -> dict[str, Any]:
        value: dict[str, Any] = {}
        if self.original_value:
            value["originalValue"] = self.original_value
        value["interpretedValue"] = self.interpreted_value
        value["resolvedValues"] = list(self.resolved_values)
        return {"value": value}


@dataclass
class IntentState:
    name: str
    slots: dict[str, SlotValue | None] = field(default_factory=dict)
    state: str = "InProgress"
    confirmation_state: str = "None"

    def to_wire(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "slots": {name: None if value is None else value.to_wire() for name, value in self.slots.items()},
            "state": self.state,
            "confirmationState": self.confirmation_state,
        }


@dataclass
class DialogAction:
    type: str
    slot_to_elicit: str | None = None
    slot_elicitation_style: str | None = None

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"type": self.type}
        if self.slot_to_elicit:
            wire["slotToElicit"] = self.slot_to_elicit
        if self.slot_elicitation_style:
            wire["slotElicitationStyle"] = self.slot_elicitation_style
        return wire


@dataclass
class SessionState:
    dialog_action: DialogAction | None = None
    intent: IntentState | None = None
    session_attributes: dict[str, str] = field(default_factory=dict)
    active_contexts: list[dict[str, Any]] | None = None
    runtime_hints: dict[str, Any] | None = None
    originating_request_id: str | None = None
    retries: int = 0
    """Emulator bookkeeping, not on the wire: failed attempts at the pending question."""
    session_id: str = ""
    """Emulator bookkeeping, not on the wire: what generated values (a confirmation code) derive from."""

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {}
        if self.dialog_action is not None:
            wire["dialogAction"] = self.dialog_action.to_wire()
        if self.intent is not None:
            wire["intent"] = self.intent.to_wire()
        if self.active_contexts is not None:
            wire["activeContexts"] = copy.deepcopy(self.active_contexts)
        wire["sessionAttributes"] = dict(self.session_attributes)
        if self.originating_request_id:
            wire["originatingRequestId"] = self.originating_request_id
        if self.runtime_hints is not None:
            wire["runtimeHints"] = copy.deepcopy(self.runtime_hints)
        return wire


@dataclass
class Conversation:
    """What the emulator stores per session: the state and the outcome of the last turn."""

    session_id: str
    state: SessionState
    messages: list[Message] = field(default_factory=list)
    interpretations: list[dict[str, Any]] = field(default_factory=list)

    def recognize_text_response(self, request_attributes: Mapping[str, str] | None) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if self.messages:
            body["messages"] = copy.deepcopy(self.messages)
        body["sessionState"] = self.state.to_wire()
        body["interpretations"] = copy.deepcopy(self.interpretations)
        if request_attributes:
            body["requestAttributes"] = dict(request_attributes)
        body["sessionId"] = self.session_id
        return body

    def get_session_response(self) -> dict[str, Any]:
        body: dict[str, Any] = {"sessionId": self.session_id}
        if self.messages:
            body["messages"] = copy.deepcopy(self.messages)
        if self.interpretations:
            body["interpretations"] = copy.deepcopy(self.interpretations)
        body["sessionState"] = self.state.to_wire()
        return body


# ----------------------------------------------------------------------------------------------------------
# Parsing client-supplied state (RecognizeText's and PutSession's sessionState)


def _invalid(message: str) -> ValidationException:
    return ValidationException(message)


def _parse_string_map(raw: Any, where: str) -> dict[str, str]:
    if not isinstance(raw, dict) or not all(isinstance(k, str) and k for k in raw):
        raise _invalid(f"{where} must be a map of strings")
    if not all(isinstance(v, str) for v in raw.values()):
        raise _invalid(f"{where} values must be strings")
    return dict(raw)


def parse_messages(raw: Any) -> list[Message]:
    """Validate messages a client sends (PutSession)."""
    if raw is None:
        return []
    if not isinstance(raw, list) or len(raw) > 10:
        raise _invalid("messages must be a list of at most 10 messages")
    messages: list[Message] = []
    for item in raw:
        if not isinstance(item, dict) or item.get("contentType") not in MESSAGE_CONTENT_TYPES:
            raise _invalid("each message needs a valid contentType")
        message: Message = {"contentType": item["contentType"]}
        if "content" in item:
            if not isinstance(item["content"], str):
                raise _invalid("message content must be a string")
            message["content"] = item["content"]
        if "imageResponseCard" in item:
            card = item["imageResponseCard"]
            if not isinstance(card, dict) or not isinstance(card.get("title"), str):
                raise _invalid("imageResponseCard needs a title")
            message["imageResponseCard"] = copy.deepcopy(card)
        if message["contentType"] == "ImageResponseCard" and "imageResponseCard" not in message:
            raise _invalid("an ImageResponseCard message needs imageResponseCard")
        if message["contentType"] != "ImageResponseCard" and "content" not in message:
            raise _invalid("a text message needs content")
        messages.append(message)
    return messages


def _parse_slot(name: str, raw: Any) -> SlotValue | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise _invalid(f"slot {name} must be an object or null")
    value = raw.get("value")
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _invalid(f"slot {name}: value must be an object")
    interpreted = value.get("interpretedValue")
    if not isinstance(interpreted, str) or not interpreted:
        raise _invalid(f"slot {name}: interpretedValue is required")
    original = value.get("originalValue")
    if original is not None and not isinstance(original, str):
        raise _invalid(f"slot {name}: originalValue must be a string")
    resolved = value.get("resolvedValues", [])
    if not isinstance(resolved, list) or not all(isinstance(v, str) for v in resolved):
        raise _invalid(f"slot {name}: resolvedValues must be a list of strings")
    return SlotValue(interpreted, original, tuple(resolved))


def _parse_intent(raw: Any, bot: BotDef) -> IntentState:
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not raw["name"]:
        raise _invalid("sessionState.intent needs a name")
    intent_def = bot.intent(raw["name"])
    if intent_def is None:
        raise _invalid(f"Intent {raw['name']} does not exist in bot {bot.bot_id}")
    slots: dict[str, SlotValue | None] = dict.fromkeys(intent_def.slot_names)
    raw_slots = raw.get("slots") or {}
    if not isinstance(raw_slots, dict):
        raise _invalid("sessionState.intent.slots must be a map")
    for name, raw_slot in raw_slots.items():
        if name not in slots:
            raise _invalid(f"Slot {name} does not exist in intent {intent_def.name}")
        slots[name] = _parse_slot(name, raw_slot)
    state = raw.get("state", "InProgress")
    if state not in INTENT_STATES:
        raise _invalid(f"Invalid intent state {state!r}")
    confirmation = raw.get("confirmationState", "None")
    if confirmation not in CONFIRMATION_STATES:
        raise _invalid(f"Invalid confirmationState {confirmation!r}")
    return IntentState(intent_def.name, slots, state, confirmation)


def _parse_dialog_action(raw: Any) -> DialogAction:
    if not isinstance(raw, dict) or raw.get("type") not in DIALOG_ACTION_TYPES:
        raise _invalid("sessionState.dialogAction.type must be one of " + ", ".join(sorted(DIALOG_ACTION_TYPES)))
    slot = raw.get("slotToElicit")
    if slot is not None and (not isinstance(slot, str) or not slot):
        raise _invalid("slotToElicit must be a non-empty string")
    style = raw.get("slotElicitationStyle")
    if style is not None and style not in SLOT_ELICITATION_STYLES:
        raise _invalid(f"Invalid slotElicitationStyle {style!r}")
    return DialogAction(raw["type"], slot, style)


def apply_session_state(state: SessionState, raw: Any, bot: BotDef) -> SessionState:
    """Overlay the members present in a client-supplied ``sessionState`` onto ``state`` (a copy)."""
    if not isinstance(raw, dict):
        raise _invalid("sessionState must be an object")
    result = copy.deepcopy(state)
    if "intent" in raw and raw["intent"] is not None:
        result.intent = _parse_intent(raw["intent"], bot)
        result.retries = 0
    if "dialogAction" in raw and raw["dialogAction"] is not None:
        result.dialog_action = _parse_dialog_action(raw["dialogAction"])
        result.retries = 0
    if "sessionAttributes" in raw and raw["sessionAttributes"] is not None:
        result.session_attributes = _parse_string_map(raw["sessionAttributes"], "sessionState.sessionAttributes")
    if "activeContexts" in raw and raw["activeContexts"] is not None:
        contexts = raw["activeContexts"]
        if not isinstance(contexts, list) or not all(isinstance(c, dict) and c.get("name") for c in contexts):
            raise _invalid("sessionState.activeContexts must be a list of contexts")
        result.active_contexts = copy.deepcopy(contexts)
    if "runtimeHints" in raw and raw["runtimeHints"] is not None:
        if not isinstance(raw["runtimeHints"], dict):
            raise _invalid("sessionState.runtimeHints must be an object")
        result.runtime_hints = copy.deepcopy(raw["runtimeHints"])
    action = result.dialog_action
    if action is not None and action.type == "ElicitSlot":
        if result.intent is None or not action.slot_to_elicit:
            raise _invalid("An ElicitSlot dialog action needs an intent and slotToElicit")
        if action.slot_to_elicit not in result.intent.slots:
            raise _invalid(f"Slot {action.slot_to_elicit} does not exist in intent {result.intent.name}")
    if action is not None and action.type == "ConfirmIntent" and result.intent is None:
        raise _invalid("A ConfirmIntent dialog action needs an intent")
    return result


# ----------------------------------------------------------------------------------------------------------
# Message templates


def _filter(value: str, name: str | None) -> str:
    if name == "money":
        try:
            return f"{float(value.replace(',', '').lstrip('$')):,.2f}"
        except ValueError:
            return value
    if name == "amount":
        try:
            number = float(value.replace(",", "").lstrip("$"))
        except ValueError:
            return value
        return f"{number:,.0f}" if number == int(number) else f"{number:,.2f}"
    if name == "last4":
        alnum = re.sub(r"[^A-Za-z0-9]", "", value)
        return alnum[-4:]
    if name == "group4":
        alnum = re.sub(r"[^A-Za-z0-9]", "", value)
        return " ".join(alnum[i : i + 4] for i in range(0, len(alnum), 4))
    if name == "lower":
        return value.lower()
    if name == "upper":
        return value.upper()
    return value


def render_text(template: str, values: Mapping[str, str]) -> str:
    """Replace ``{Name}`` / ``{Name|filter}``; unknown or unfilled names are left as written."""

    def replace(match: re.Match[str]) -> str:
        name, flt = match.group(1), match.group(2)
        if name not in values:
            return match.group(0)
        return _filter(values[name], flt)

    return TEMPLATE_RE.sub(replace, template)


def render_messages(messages: tuple[Message, ...], values: Mapping[str, str]) -> list[Message]:
    rendered: list[Message] = []
    for message in messages:
        out = copy.deepcopy(message)
        if "content" in out:
            out["content"] = render_text(out["content"], values)
        card = out.get("imageResponseCard")
        if isinstance(card, dict):
            for key in ("title", "subtitle"):
                if isinstance(card.get(key), str):
                    card[key] = render_text(card[key], values)
            for button in card.get("buttons", []):
                button["text"] = render_text(button["text"], values)
                button["value"] = render_text(button["value"], values)
        rendered.append(out)
    return rendered


# ----------------------------------------------------------------------------------------------------------
# The engine


@dataclass(frozen=True)
class _Sample:
    words: tuple[str, ...]
    placeholders: tuple[str, ...]


@dataclass
class Candidate:
    """One intent's reading of an utterance: its confidence and the slots its best sample filled."""

    intent: str
    score: float
    slots: dict[str, SlotValue] = field(default_factory=dict)


class LexEngine:
    """Runs conversations for one bot. Stateless: conversations are passed in and returned."""

    def __init__(self, bot: BotDef, today: Callable[[], date] | None = None) -> None:
        self.bot = bot
        self._today = today or date.today
        self._samples: dict[str, list[_Sample]] = {}
        for intent in bot.intents.values():
            if intent.name == FALLBACK_INTENT:
                continue
            samples = []
            for utterance in intent.sample_utterances:
                placeholders = tuple(PLACEHOLDER_RE.findall(utterance))
                samples.append(_Sample(tuple(nlu.words(PLACEHOLDER_RE.sub(" ", utterance))), placeholders))
            self._samples[intent.name] = samples

    # -- NLU ------------------------------------------------------------------------------------------

    def _extract(self, slot: SlotDef, text: str, *, whole_utterance: bool) -> ExtractedValue | None:
        return extract_value(
            slot.slot_type,
            text,
            slot_types=self.bot.slot_types,
            today=self._today(),
            whole_utterance=whole_utterance,
        )

    def rank(self, text: str) -> list[Candidate]:
        """Every intent except FallbackIntent with its confidence for ``text``, best first."""
        tokens = nlu.tokenize(text)
        cache: dict[str, ExtractedValue | None] = {}
        candidates: list[Candidate] = []
        for intent_name, samples in self._samples.items():
            intent = self.bot.intents[intent_name]
            best = Candidate(intent_name, 0.0)
            for sample in samples:
                spans: list[tuple[int, int]] = []
                filled: dict[str, SlotValue] = {}
                missing = 0
                for placeholder in sample.placeholders:
                    slot = intent.slot(placeholder)
                    assert slot is not None  # checked when the bot was loaded
                    if slot.slot_type not in cache:
                        cache[slot.slot_type] = self._extract(slot, text, whole_utterance=False)
                    value = cache[slot.slot_type]
                    overlaps = value is not None and any(
                        value.start < end and start < value.end for start, end in spans
                    )
                    if value is None or overlaps or placeholder in filled:
                        missing += 1
                        continue
                    spans.append((value.start, value.end))
                    filled[placeholder] = SlotValue.from_extracted(value)
                user_words = [t.text for t in tokens if not any(start <= t.start < end for start, end in spans)]
                score = nlu.similarity(
                    user_words,
                    list(sample.words),
                    matched_placeholders=len(filled),
                    missing_placeholders=missing,
                )
                if score > best.score:
                    best = Candidate(intent_name, score, filled)
            best.score = round(best.score, 2)
            candidates.append(best)
        candidates.sort(key=lambda c: -c.score)
        return candidates

    # -- turns ----------------------------------------------------------------------------------------

    def recognize_text(
        self,
        previous: Conversation | None,
        session_id: str,
        text: Any,
        *,
        request_state: Any = None,
        request_id: str,
    ) -> Conversation:
        """One RecognizeText turn. Returns the new conversation (``previous`` is not modified)."""
        if not isinstance(text, str) or not text.strip():
            raise ValidationException(
                "1 validation error detected: Value at 'text' failed to satisfy constraint: "
                "Member must have length greater than or equal to 1"
            )
        if len(text) > MAX_TEXT_LENGTH:
            raise ValidationException(
                "1 validation error detected: Value at 'text' failed to satisfy constraint: "
                f"Member must have length less than or equal to {MAX_TEXT_LENGTH}"
            )
        text = text.strip()
        state = copy.deepcopy(previous.state) if previous is not None else SessionState()
        if request_state is not None:
            state = apply_session_state(state, request_state, self.bot)
        state.originating_request_id = request_id
        state.session_id = session_id
        ranking = self.rank(text)

        pending = self._pending(state)
        if pending is not None and pending[0] == "ElicitSlot":
            messages, score = self._answer_slot(state, pending[1], text, ranking)
        elif pending is not None and pending[0] == "ConfirmIntent":
            messages, score = self._answer_confirmation(state, text, ranking)
        else:
            messages, score = self._new_intent(state, ranking)

        interpretations = self._interpretations(state, ranking, score, text)
        return Conversation(session_id, state, messages, interpretations)

    def put_session(
        self,
        session_id: str,
        raw_state: Any,
        raw_messages: Any = None,
        *,
        request_id: str,
    ) -> Conversation:
        """PutSession: replace the session's state with the client's one."""
        if raw_state is None:
            raise ValidationException(
                "1 validation error detected: Value null at 'sessionState' failed to satisfy constraint: "
                "Member must not be null"
            )
        state = apply_session_state(SessionState(), raw_state, self.bot)
        state.originating_request_id = request_id
        state.session_id = session_id
        messages = parse_messages(raw_messages)
        action, intent = state.dialog_action, state.intent
        if action is not None and intent is not None:
            intent_def = self.bot.intents[intent.name]
            if action.type == "Delegate":
                generated = self._advance(state, intent_def)
                messages = messages or generated
            elif action.type == "ElicitSlot" and not messages:
                slot = intent_def.slot(action.slot_to_elicit or "")
                if slot is not None:
                    messages = render_messages(slot.prompt, self._values(state, intent_def))
            elif action.type == "ConfirmIntent" and not messages and intent_def.confirmation is not None:
                messages = render_messages(intent_def.confirmation.prompt, self._values(state, intent_def))
        elif action is not None and action.type == "Delegate":
            state.dialog_action = DialogAction("ElicitIntent")
        return Conversation(session_id, state, messages, [])

    # -- dialog management ----------------------------------------------------------------------------

    def _pending(self, state: SessionState) -> tuple[str, str | None] | None:
        """The question the bot is waiting an answer to, if any."""
        action, intent = state.dialog_action, state.intent
        if action is None or intent is None or intent.state not in {"InProgress", "Waiting"}:
            return None
        intent_def = self.bot.intent(intent.name)
        if intent_def is None or intent_def.name == FALLBACK_INTENT:
            return None
        if action.type == "ElicitSlot" and action.slot_to_elicit and intent_def.slot(action.slot_to_elicit):
            return ("ElicitSlot", action.slot_to_elicit)
        if action.type == "ConfirmIntent":
            return ("ConfirmIntent", None)
        if action.type == "Delegate":
            step = self._next_step(intent, intent_def)
            if step[0] in {"ElicitSlot", "ConfirmIntent"}:
                return step
        return None

    def _next_step(self, intent: IntentState, intent_def: IntentDef) -> tuple[str, str | None]:
        """What the intent needs next, in slot priority order: ("ElicitSlot", slot), ("ConfirmIntent",
        None), ("Decline", None) for a denied confirmation, or ("Close", None). A confirmation with an
        ``after_slot`` comes right after that slot is filled, before the slots that follow it."""
        confirmation = intent_def.confirmation

        def confirmation_step() -> tuple[str, str | None] | None:
            if intent.confirmation_state == "None":
                return ("ConfirmIntent", None)
            if intent.confirmation_state == "Denied":
                return ("Decline", None)
            return None

        for slot in intent_def.slots:
            if slot.required and intent.slots.get(slot.name) is None:
                return ("ElicitSlot", slot.name)
            if confirmation is not None and confirmation.after_slot == slot.name:
                step = confirmation_step()
                if step is not None:
                    return step
        if confirmation is not None and confirmation.after_slot is None:
            step = confirmation_step()
            if step is not None:
                return step
        return ("Close", None)

    def _values(self, state: SessionState, intent_def: IntentDef) -> dict[str, str]:
        intent = state.intent
        assert intent is not None
        values = {name: value.interpreted_value for name, value in intent.slots.items() if value is not None}
        for name, variable in intent_def.response_variables.items():
            if variable.generated == "confirmationCode":
                values[name] = ids.confirmation_code(state.session_id)
                continue
            slot_value = values.get(variable.from_slot or "")
            values[name] = variable.values.get(slot_value, variable.default) if slot_value else variable.default
        return values

    def _advance(self, state: SessionState, intent_def: IntentDef) -> list[Message]:
        """Ask for the next missing slot or the confirmation (see :meth:`_next_step`), else close."""
        intent = state.intent
        assert intent is not None
        state.retries = 0
        step, slot_name = self._next_step(intent, intent_def)
        if step == "ElicitSlot":
            slot = intent_def.slot(slot_name or "")
            assert slot is not None
            intent.state = "InProgress"
            state.dialog_action = DialogAction("ElicitSlot", slot.name)
            return render_messages(slot.prompt, self._values(state, intent_def))
        if step == "ConfirmIntent":
            assert intent_def.confirmation is not None
            intent.state = "InProgress"
            state.dialog_action = DialogAction("ConfirmIntent")
            return render_messages(intent_def.confirmation.prompt, self._values(state, intent_def))
        if step == "Decline":
            return self._decline(state, intent_def)
        intent.state = intent_def.fulfilled_state
        state.dialog_action = DialogAction(intent_def.dialog_action_on_close)
        return render_messages(intent_def.closing_response, self._values(state, intent_def))

    def _decline(self, state: SessionState, intent_def: IntentDef) -> list[Message]:
        """A "no": the intent fails, or (declinationNextStep ElicitSlot) the confirmed slot is asked again."""
        intent = state.intent
        confirmation = intent_def.confirmation
        assert intent is not None and confirmation is not None
        intent.confirmation_state = "Denied"
        state.retries = 0
        declined = render_messages(confirmation.declination_response, self._values(state, intent_def))
        slot = intent_def.slot(confirmation.after_slot or "")
        if confirmation.declination_next_step == "ElicitSlot" and slot is not None:
            intent.slots[slot.name] = None
            intent.state = "InProgress"
            state.dialog_action = DialogAction("ElicitSlot", slot.name)
            return declined + render_messages(slot.prompt, self._values(state, intent_def))
        intent.state = "Failed"
        state.dialog_action = DialogAction("Close")
        return declined

    def _start(self, state: SessionState, candidate: Candidate) -> tuple[list[Message], float | None]:
        intent_def = self.bot.intents[candidate.intent]
        slots: dict[str, SlotValue | None] = dict.fromkeys(intent_def.slot_names)
        slots.update(copy.deepcopy(candidate.slots))
        state.intent = IntentState(intent_def.name, slots)
        return self._advance(state, intent_def), candidate.score

    def _fallback(self, state: SessionState) -> tuple[list[Message], float | None]:
        fallback = self.bot.fallback
        state.intent = IntentState(FALLBACK_INTENT, {}, fallback.fulfilled_state)
        state.dialog_action = DialogAction(fallback.dialog_action_on_close)
        state.retries = 0
        return render_messages(fallback.closing_response, {}), None

    def _new_intent(self, state: SessionState, ranking: list[Candidate]) -> tuple[list[Message], float | None]:
        if not ranking or ranking[0].score < self.bot.nlu_confidence_threshold:
            return self._fallback(state)
        return self._start(state, ranking[0])

    def _switch_candidate(self, state: SessionState, ranking: list[Candidate]) -> Candidate | None:
        current = state.intent.name if state.intent else None
        for candidate in ranking:
            if candidate.intent != current and candidate.score >= SWITCH_THRESHOLD:
                return candidate
        return None

    def _answer_slot(
        self, state: SessionState, slot_name: str | None, text: str, ranking: list[Candidate]
    ) -> tuple[list[Message], float | None]:
        intent = state.intent
        assert intent is not None and slot_name is not None
        intent_def = self.bot.intents[intent.name]
        slot = intent_def.slot(slot_name)
        assert slot is not None
        wait = slot.wait_and_continue
        has_digits = any(ch.isdigit() for ch in text)
        is_wait = wait is not None and not has_digits and nlu.contains_phrase(text, wait.wait_phrases)
        is_continue = wait is not None and not has_digits and nlu.contains_phrase(text, wait.continue_phrases)
        value = None if (is_wait or is_continue) else self._extract(slot, text, whole_utterance=True)
        switch_to = self._switch_candidate(state, ranking)

        def fill(extracted: ExtractedValue) -> tuple[list[Message], float | None]:
            self._fill(state, intent_def, slot, extracted)
            return self._advance(state, intent_def), 1.0

        def elicit(messages: tuple[Message, ...], intent_state: str) -> tuple[list[Message], float | None]:
            intent.state = intent_state
            state.dialog_action = DialogAction("ElicitSlot", slot.name)
            return render_messages(messages, self._values(state, intent_def)), 1.0

        if wait is not None and intent.state == "Waiting":
            if value is not None and not value.weak:
                return fill(value)
            if is_continue:
                return elicit(wait.continue_response or slot.prompt, "InProgress")
            if switch_to is not None:
                return self._start(state, switch_to)
            return elicit(wait.still_waiting_response or wait.waiting_response, "Waiting")
        if wait is not None and is_wait:
            return elicit(wait.waiting_response, "Waiting")
        if wait is not None and is_continue:
            return elicit(slot.prompt, "InProgress")
        if value is not None and not (value.weak and switch_to is not None):
            return fill(value)
        if switch_to is not None:
            return self._start(state, switch_to)
        state.retries += 1
        if state.retries > slot.max_retries:
            return self._fallback(state)
        return elicit(slot.prompt, "InProgress")

    def _answer_confirmation(
        self, state: SessionState, text: str, ranking: list[Candidate]
    ) -> tuple[list[Message], float | None]:
        intent = state.intent
        assert intent is not None
        intent_def = self.bot.intents[intent.name]
        answer = nlu.classify_yes_no(text)
        if answer == "yes":
            intent.confirmation_state = "Confirmed"
            return self._advance(state, intent_def), 1.0
        confirmation = intent_def.confirmation
        if answer == "no" and confirmation is not None:
            slot = intent_def.slot(confirmation.after_slot or "")
            if confirmation.declination_next_step == "ElicitSlot" and slot is not None:
                # "No, it's 4111 ..." corrects the value at once: confirm the new one.
                correction = self._extract(slot, text, whole_utterance=False)
                if correction is not None and not correction.weak:
                    self._fill(state, intent_def, slot, correction)
                    return self._advance(state, intent_def), 1.0
            return self._decline(state, intent_def), 1.0
        switch_to = self._switch_candidate(state, ranking)
        if switch_to is not None:
            return self._start(state, switch_to)
        state.retries += 1
        if state.retries > MAX_CONFIRMATION_RETRIES or intent_def.confirmation is None:
            return self._fallback(state)
        state.dialog_action = DialogAction("ConfirmIntent")
        return render_messages(intent_def.confirmation.prompt, self._values(state, intent_def)), 1.0

    @staticmethod
    def _fill(state: SessionState, intent_def: IntentDef, slot: SlotDef, extracted: ExtractedValue) -> None:
        """Store a captured value; a new value of the slot a confirmation follows needs confirming anew."""
        intent = state.intent
        assert intent is not None
        intent.slots[slot.name] = SlotValue.from_extracted(extracted)
        confirmation = intent_def.confirmation
        if confirmation is not None and confirmation.after_slot == slot.name:
            intent.confirmation_state = "None"

    # -- interpretations ------------------------------------------------------------------------------

    def _interpretations(
        self, state: SessionState, ranking: list[Candidate], score: float | None, text: str
    ) -> list[dict[str, Any]]:
        intent = state.intent
        assert intent is not None
        top: dict[str, Any] = {"intent": intent.to_wire(), "interpretationSource": "Lex"}
        if intent.name != FALLBACK_INTENT and score is not None:
            top = {"nluConfidence": {"score": round(score, 2)}, **top}
        items = [top]
        if intent.name != FALLBACK_INTENT:
            items.append({"intent": {"name": FALLBACK_INTENT, "slots": {}}, "interpretationSource": "Lex"})
        for candidate in ranking:
            if len(items) >= MAX_INTERPRETATIONS:
                break
            if candidate.intent == intent.name or candidate.score <= 0:
                continue
            intent_def = self.bot.intents[candidate.intent]
            slots: dict[str, Any] = dict.fromkeys(intent_def.slot_names)
            slots.update({name: value.to_wire() for name, value in candidate.slots.items()})
            items.append(
                {
                    "nluConfidence": {"score": candidate.score},
                    "intent": {"name": candidate.intent, "slots": slots},
                    "interpretationSource": "Lex",
                }
            )
        if self.bot.sentiment_analysis:
            items[0]["sentimentResponse"] = nlu.analyze_sentiment(text)
        return items
