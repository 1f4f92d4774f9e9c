"""Bot definitions in the response shapes of the Lex V2 models API (boto3 ``lexv2-models``).

Pure functions from :mod:`emulators.lex.botdef` dataclasses to the JSON botocore parses for
DescribeBot, DescribeBotAlias, DescribeIntent, DescribeSlot and the summaries of the List calls. Only
what a bot file can say is reported (no code hooks, contexts, logs); optional members the file has no
counterpart for are left out rather than invented, as Lex leaves out what a bot does not use.

Message texts keep their ``{Slot}`` references in Lex's own syntax; the emulator's ``{Slot|filter}``
extension is shown as plain ``{Slot}``, which is what a real bot's message would hold.
"""

from __future__ import annotations

from typing import Any

from emulators.lex import ids
from emulators.lex.botdef import TEMPLATE_RE, AliasDef, BotDef, IntentDef, Message, SlotDef

Json = dict[str, Any]
ACCOUNT_ID = "123456789012"
CONFIRMATION_MAX_RETRIES = 2
"""The engine does not count confirmation retries; 2 is the Lex console's default."""
_CONTENT_KEYS = {"PlainText": "plainTextMessage", "SSML": "ssmlMessage", "CustomPayload": "customPayload"}


def lex_template(text: str) -> str:
    """``{Name|filter}`` → ``{Name}``: the emulator's filters are not Lex syntax."""
    return TEMPLATE_RE.sub(lambda match: "{" + match.group(1) + "}", text)


def model_message(message: Message) -> Json:
    """A runtime-format message as a models-API ``Message`` (``plainTextMessage``, ``imageResponseCard`` ...)."""
    content_type = message["contentType"]
    if content_type != "ImageResponseCard":
        return {_CONTENT_KEYS[content_type]: {"value": lex_template(message["content"])}}
    card = message["imageResponseCard"]
    shaped: Json = {"title": lex_template(card["title"])}
    if card.get("subtitle"):
        shaped["subtitle"] = lex_template(card["subtitle"])
    if card.get("imageUrl"):
        shaped["imageUrl"] = card["imageUrl"]
    shaped["buttons"] = [
        {"text": lex_template(button["text"]), "value": button["value"]} for button in card.get("buttons", [])
    ]
    return {"imageResponseCard": shaped}


def message_groups(messages: tuple[Message, ...]) -> list[Json]:
    """One message group per message: Lex plays one message of each group, in order, as the runtime does."""
    return [{"message": model_message(message)} for message in messages]


def response_specification(messages: tuple[Message, ...], allow_interrupt: bool = True) -> Json:
    return {"messageGroups": message_groups(messages), "allowInterrupt": allow_interrupt}


def prompt_specification(messages: tuple[Message, ...], max_retries: int, allow_interrupt: bool = True) -> Json:
    return {"messageGroups": message_groups(messages), "maxRetries": max_retries, "allowInterrupt": allow_interrupt}


def _latest_version(bot: BotDef) -> str | None:
    numbered = [int(version) for version in bot.versions if version.isdigit()]
    return str(max(numbered)) if numbered else None


def bot_summary(bot: BotDef, stamp: float) -> Json:
    summary: Json = {
        "botId": bot.bot_id,
        "botName": bot.name,
        "description": bot.description,
        "botStatus": "Available",
        "lastUpdatedDateTime": stamp,
        "botType": "Bot",
    }
    latest = _latest_version(bot)
    if latest is not None:
        summary["latestBotVersion"] = latest
    return summary


def describe_bot(bot: BotDef, stamp: float) -> Json:
    return {
        "botId": bot.bot_id,
        "botName": bot.name,
        "description": bot.description,
        "roleArn": f"arn:aws:iam::{ACCOUNT_ID}:role/aws-service-role/lexv2.amazonaws.com/"
        f"AWSServiceRoleForLexV2Bots_{bot.bot_id}",
        "dataPrivacy": {"childDirected": False},
        "idleSessionTTLInSeconds": bot.idle_session_ttl_seconds,
        "botStatus": "Available",
        "creationDateTime": stamp,
        "lastUpdatedDateTime": stamp,
        "botType": "Bot",
    }


def alias_summary(alias: AliasDef, stamp: float) -> Json:
    return {
        "botAliasId": alias.alias_id,
        "botAliasName": alias.name,
        "description": alias.description,
        "botVersion": alias.bot_version,
        "botAliasStatus": "Available",
        "creationDateTime": stamp,
        "lastUpdatedDateTime": stamp,
    }


def describe_alias(bot: BotDef, alias: AliasDef, stamp: float) -> Json:
    return {
        **alias_summary(alias, stamp),
        "botAliasLocaleSettings": {locale: {"enabled": True} for locale in sorted(bot.locale_ids)},
        "sentimentAnalysisSettings": {"detectSentiment": bot.sentiment_analysis},
        "botAliasHistoryEvents": [{"botVersion": alias.bot_version, "startDate": stamp}],
        "botId": bot.bot_id,
    }


def _parent_signature(intent: IntentDef) -> Json:
    return {"parentIntentSignature": "AMAZON.FallbackIntent"} if intent.name == "FallbackIntent" else {}


def intent_summary(intent: IntentDef, intent_id: str, stamp: float) -> Json:
    return {
        "intentId": intent_id,
        "intentName": intent.name,
        **_parent_signature(intent),
        "inputContexts": [],
        "outputContexts": [],
        "lastUpdatedDateTime": stamp,
    }


def describe_intent(bot: BotDef, version: str, locale_id: str, intent: IntentDef, stamp: float) -> Json:
    intent_id = ids.intent_id(bot.bot_id, locale_id, intent.name)
    described: Json = {
        "intentId": intent_id,
        "intentName": intent.name,
        **_parent_signature(intent),
        "sampleUtterances": [{"utterance": utterance} for utterance in intent.sample_utterances],
        "dialogCodeHook": {"enabled": False},
        "fulfillmentCodeHook": {"enabled": False},
        "slotPriorities": [
            {"priority": index, "slotId": ids.slot_id(bot.bot_id, locale_id, intent.name, slot.name)}
            for index, slot in enumerate(intent.slots, start=1)
        ],
        "inputContexts": [],
        "outputContexts": [],
        "botId": bot.bot_id,
        "botVersion": version,
        "localeId": locale_id,
        "creationDateTime": stamp,
        "lastUpdatedDateTime": stamp,
    }
    if intent.confirmation is not None:
        described["intentConfirmationSetting"] = confirmation_setting(intent)
    if intent.closing_response:
        described["intentClosingSetting"] = {
            "closingResponse": response_specification(intent.closing_response, intent.closing_allow_interrupt),
            "active": True,
        }
    return described


def _next_slot_after(intent: IntentDef, slot_name: str) -> Json:
    """The dialog step after ``slot_name``: the next required slot, else closing the intent."""
    names = [slot.name for slot in intent.slots]
    for slot in intent.slots[names.index(slot_name) + 1 :]:
        if slot.required:
            return {"dialogAction": {"type": "ElicitSlot", "slotToElicit": slot.name}}
    return {"dialogAction": {"type": "CloseIntent"}}


def confirmation_setting(intent: IntentDef) -> Json:
    """``intentConfirmationSetting``; a confirmation asked right after a slot names its next steps as
    Lex V2 conversation flows do (``confirmationNextStep``, ``declinationNextStep``)."""
    confirmation = intent.confirmation
    assert confirmation is not None
    setting: Json = {
        "promptSpecification": prompt_specification(
            confirmation.prompt, CONFIRMATION_MAX_RETRIES, confirmation.prompt_allow_interrupt
        ),
    }
    if confirmation.declination_response:
        setting["declinationResponse"] = response_specification(
            confirmation.declination_response, confirmation.declination_allow_interrupt
        )
    setting["active"] = True
    if confirmation.after_slot is not None:
        setting["confirmationNextStep"] = _next_slot_after(intent, confirmation.after_slot)
    if confirmation.declination_next_step == "ElicitSlot":
        setting["declinationNextStep"] = {
            "dialogAction": {"type": "ElicitSlot", "slotToElicit": confirmation.after_slot}
        }
    return setting


def _slot_type_id(bot: BotDef, locale_id: str, slot: SlotDef) -> str:
    if slot.slot_type.startswith("AMAZON."):
        return slot.slot_type
    return ids.slot_type_id(bot.bot_id, locale_id, slot.slot_type)


def slot_summary(bot: BotDef, locale_id: str, intent: IntentDef, slot: SlotDef, stamp: float) -> Json:
    return {
        "slotId": ids.slot_id(bot.bot_id, locale_id, intent.name, slot.name),
        "slotName": slot.name,
        "slotConstraint": "Required" if slot.required else "Optional",
        "slotTypeId": _slot_type_id(bot, locale_id, slot),
        "valueElicitationPromptSpecification": prompt_specification(
            slot.prompt, slot.max_retries, slot.allow_interrupt
        ),
        "lastUpdatedDateTime": stamp,
    }


def wait_and_continue_specification(slot: SlotDef) -> Json | None:
    """The slot's ``waitAndContinueSpecification``, or None when the slot has no wait-and-continue."""
    wait = slot.wait_and_continue
    if wait is None:
        return None
    # Lex requires a continue response; without one in the file the engine re-asks the slot prompt.
    specification: Json = {
        "waitingResponse": response_specification(wait.waiting_response, wait.waiting_allow_interrupt),
        "continueResponse": response_specification(
            wait.continue_response or slot.prompt, wait.continue_allow_interrupt
        ),
    }
    if wait.still_waiting_response:  # optional in Lex too: no reminders
        specification["stillWaitingResponse"] = {
            "messageGroups": message_groups(wait.still_waiting_response),
            "frequencyInSeconds": wait.frequency_in_seconds,
            "timeoutInSeconds": wait.timeout_in_seconds,
            "allowInterrupt": wait.still_waiting_allow_interrupt,
        }
    specification["active"] = True
    return specification


def describe_slot(
    bot: BotDef, version: str, locale_id: str, intent: IntentDef, slot: SlotDef, stamp: float
) -> Json:
    elicitation: Json = {
        "slotConstraint": "Required" if slot.required else "Optional",
        "promptSpecification": prompt_specification(slot.prompt, slot.max_retries, slot.allow_interrupt),
    }
    wait = wait_and_continue_specification(slot)
    if wait is not None:
        elicitation["waitAndContinueSpecification"] = wait
    if intent.confirmation is not None and intent.confirmation.after_slot == slot.name:
        # The intent's confirmation comes right after this slot is captured (Lex V2 conversation flow).
        elicitation["slotCaptureSetting"] = {"captureNextStep": {"dialogAction": {"type": "ConfirmIntent"}}}
    return {
        "slotId": ids.slot_id(bot.bot_id, locale_id, intent.name, slot.name),
        "slotName": slot.name,
        "slotTypeId": _slot_type_id(bot, locale_id, slot),
        "valueElicitationSetting": elicitation,
        "obfuscationSetting": {"obfuscationSettingType": "None"},
        "botId": bot.bot_id,
        "botVersion": version,
        "localeId": locale_id,
        "intentId": ids.intent_id(bot.bot_id, locale_id, intent.name),
        "creationDateTime": stamp,
        "lastUpdatedDateTime": stamp,
        "multipleValuesSetting": {"allowMultipleValues": False},
    }
