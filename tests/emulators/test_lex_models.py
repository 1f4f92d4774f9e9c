"""The Lex V2 emulator's read-only models API, through real boto3 ``lexv2-models``.

The emulator runs on a loopback port (uvicorn in a thread, like the runtime tests); every call goes
through botocore, so paths, trailing slashes, shapes and error codes are checked against botocore's
own service model. Expected values are read from the bot files themselves, not restated here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emulators.lex import ids
from emulators.lex.app import DEFAULT_BOTS_DIR, create_app
from emulators.lex.botdef import BotDefinitionError, parse_bot
from tests.emulators.aws import lex_client
from tools.harness.servers import serve_asgi

PAY = "PAYMENTBOT"
BANK = "BANKINGBOT"
LOCALE = "en_US"
ID_RE = re.compile(r"^[0-9A-Z]{10}$")


@pytest.fixture(scope="module")
def models_url() -> Iterator[str]:
    with serve_asgi(create_app()) as url:
        yield url


def models_client(url: str) -> Any:
    return lex_client(url, "lexv2-models")


@pytest.fixture(scope="module")
def models(models_url: str) -> Any:
    return models_client(models_url)


def bot_file(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DEFAULT_BOTS_DIR / name).read_text(encoding="utf-8"))
    return data


def file_slot(data: dict[str, Any], intent: str, slot: str) -> dict[str, Any]:
    found: dict[str, Any] = next(
        s for i in data["intents"] if i["name"] == intent for s in i.get("slots", []) if s["name"] == slot
    )
    return found


def plain_groups(*texts: str) -> list[dict[str, Any]]:
    return [{"message": {"plainTextMessage": {"value": text}}} for text in texts]


def walk_to_slot(models: Any, bot_id: str, alias_id: str, intent_name: str, slot_name: str) -> dict[str, Any]:
    """What a client does that knows only names: alias → version → intent id → slot id → the slot."""
    aliases = models.list_bot_aliases(botId=bot_id)["botAliasSummaries"]
    assert alias_id in [a["botAliasId"] for a in aliases]
    version = models.describe_bot_alias(botId=bot_id, botAliasId=alias_id)["botVersion"]
    intents = models.list_intents(botId=bot_id, botVersion=version, localeId=LOCALE)["intentSummaries"]
    intent_id = next(i["intentId"] for i in intents if i["intentName"] == intent_name)
    slots = models.list_slots(botId=bot_id, botVersion=version, localeId=LOCALE, intentId=intent_id)
    slot_id = next(s["slotId"] for s in slots["slotSummaries"] if s["slotName"] == slot_name)
    slot: dict[str, Any] = models.describe_slot(
        botId=bot_id, botVersion=version, localeId=LOCALE, intentId=intent_id, slotId=slot_id
    )
    assert (slot["botId"], slot["botVersion"], slot["localeId"]) == (bot_id, version, LOCALE)
    assert (slot["intentId"], slot["slotId"], slot["slotName"]) == (intent_id, slot_id, slot_name)
    return slot


# ----------------------------------------------------------------------------------------------------------
# The walk to the card number's wait-and-continue


@pytest.mark.parametrize(("alias_id", "version"), [("TSTALIASID", "DRAFT"), ("PRODALIAS1", "1")])
def test_credit_card_slot_wait_and_continue_comes_from_the_bot_file(
    models: Any, alias_id: str, version: str
) -> None:
    assert models.describe_bot_alias(botId=PAY, botAliasId=alias_id)["botVersion"] == version
    slot = walk_to_slot(models, PAY, alias_id, "ProcessPayment", "CreditCardNumber")
    raw = file_slot(bot_file("paymentbot.json"), "ProcessPayment", "CreditCardNumber")
    wac = raw["waitAndContinue"]
    still = wac["stillWaitingResponse"]

    assert slot["slotTypeId"] == raw["slotType"] == "AMAZON.AlphaNumeric"
    setting = slot["valueElicitationSetting"]
    assert setting["slotConstraint"] == "Required"
    assert setting["promptSpecification"] == {
        "messageGroups": plain_groups(raw["prompt"]),
        "maxRetries": 2,
        "allowInterrupt": True,
    }
    assert setting["waitAndContinueSpecification"] == {
        "waitingResponse": {
            "messageGroups": plain_groups(wac["waitingResponse"]["messages"]),
            "allowInterrupt": wac["waitingResponse"]["allowInterrupt"],
        },
        "continueResponse": {"messageGroups": plain_groups(wac["continueResponse"]), "allowInterrupt": True},
        "stillWaitingResponse": {
            "messageGroups": plain_groups(still["messages"]),
            "frequencyInSeconds": still["frequencyInSeconds"],
            "timeoutInSeconds": still["timeoutInSeconds"],
            "allowInterrupt": still["allowInterrupt"],
        },
        "active": True,
    }
    # The file sets values other than the defaults, so this proves they are read from it.
    assert (still["frequencyInSeconds"], still["timeoutInSeconds"]) == (15, 180)
    assert wac["waitingResponse"]["allowInterrupt"] is False


def test_a_slot_without_wait_and_continue_has_no_specification(models: Any) -> None:
    slot = walk_to_slot(models, PAY, "TSTALIASID", "ProcessPayment", "CVV")
    assert "waitAndContinueSpecification" not in slot["valueElicitationSetting"]
    assert slot["slotTypeId"] == "AMAZON.Number"


def test_a_card_prompt_and_a_custom_slot_type(models: Any) -> None:
    slot = walk_to_slot(models, BANK, "TSTALIASID", "CheckBalance", "AccountType")
    groups = slot["valueElicitationSetting"]["promptSpecification"]["messageGroups"]
    assert groups[0] == plain_groups("Which account would you like the balance for, checking or savings?")[0]
    card = groups[1]["message"]["imageResponseCard"]
    assert card["title"] == "Account type"
    assert card["buttons"] == [{"text": "Checking", "value": "Checking"}, {"text": "Savings", "value": "Savings"}]
    assert slot["slotTypeId"] == ids.slot_type_id(BANK, LOCALE, "AccountTypeValues")
    assert ID_RE.match(slot["slotTypeId"])


# ----------------------------------------------------------------------------------------------------------
# Bots, aliases, intents


def test_list_and_describe_bots(models: Any) -> None:
    summaries = models.list_bots()["botSummaries"]
    assert [(b["botId"], b["botName"]) for b in summaries] == [(BANK, "BankingBot"), (PAY, "PaymentsBot")]
    for summary in summaries:
        assert summary["botStatus"] == "Available"
        assert summary["botType"] == "Bot"
        assert summary["latestBotVersion"] == "1"
    described = models.describe_bot(botId=PAY)
    data = bot_file("paymentbot.json")
    assert described["botName"] == data["botName"]
    assert described["description"] == data["description"]
    assert described["idleSessionTTLInSeconds"] == data["idleSessionTTLInSeconds"]
    assert described["dataPrivacy"] == {"childDirected": False}
    assert described["creationDateTime"] <= described["lastUpdatedDateTime"]


def test_list_bots_filters_sorts_and_pages(models: Any) -> None:
    only = models.list_bots(filters=[{"name": "BotName", "values": ["Pay"], "operator": "CO"}])
    assert [b["botId"] for b in only["botSummaries"]] == [PAY]
    other = models.list_bots(filters=[{"name": "BotName", "values": ["PaymentsBot"], "operator": "NE"}])
    assert [b["botId"] for b in other["botSummaries"]] == [BANK]
    backwards = models.list_bots(sortBy={"attribute": "BotName", "order": "Descending"})
    assert [b["botId"] for b in backwards["botSummaries"]] == [PAY, BANK]
    first = models.list_bots(maxResults=1)
    assert [b["botId"] for b in first["botSummaries"]] == [BANK]
    second = models.list_bots(maxResults=1, nextToken=first["nextToken"])
    assert [b["botId"] for b in second["botSummaries"]] == [PAY]
    assert "nextToken" not in second


def test_aliases_give_their_version_and_settings(models: Any) -> None:
    listed = models.list_bot_aliases(botId=BANK)
    assert listed["botId"] == BANK
    assert {(a["botAliasId"], a["botAliasName"], a["botVersion"]) for a in listed["botAliasSummaries"]} == {
        ("TSTALIASID", "TestBotAlias", "DRAFT"),
        ("PRODALIAS1", "PRODALIAS1", "1"),
    }
    alias = models.describe_bot_alias(botId=BANK, botAliasId="PRODALIAS1")
    assert alias["botId"] == BANK
    assert alias["botAliasStatus"] == "Available"
    assert alias["botAliasLocaleSettings"] == {LOCALE: {"enabled": True}}
    assert alias["sentimentAnalysisSettings"] == {"detectSentiment": True}
    assert models.describe_bot_alias(botId=PAY, botAliasId="PRODALIAS1")["sentimentAnalysisSettings"] == {
        "detectSentiment": False
    }


def test_intents_of_a_version_with_stable_ids(models: Any) -> None:
    data = bot_file("paymentbot.json")
    listed = models.list_intents(botId=PAY, botVersion="DRAFT", localeId=LOCALE)
    assert (listed["botId"], listed["botVersion"], listed["localeId"]) == (PAY, "DRAFT", LOCALE)
    by_name = {i["intentName"]: i for i in listed["intentSummaries"]}
    assert set(by_name) == {i["name"] for i in data["intents"]}
    assert by_name["FallbackIntent"]["intentId"] == "FALLBCKINT"
    assert by_name["FallbackIntent"]["parentIntentSignature"] == "AMAZON.FallbackIntent"
    assert all(ID_RE.match(i["intentId"]) for i in by_name.values())
    assert len({i["intentId"] for i in by_name.values()}) == len(by_name)
    # The same ids in another version, and from the documented derivation.
    numbered = models.list_intents(botId=PAY, botVersion="1", localeId=LOCALE)["intentSummaries"]
    assert {i["intentName"]: i["intentId"] for i in numbered} == {n: i["intentId"] for n, i in by_name.items()}
    assert by_name["ProcessPayment"]["intentId"] == ids.intent_id(PAY, LOCALE, "ProcessPayment")
    filtered = models.list_intents(
        botId=PAY, botVersion="DRAFT", localeId=LOCALE,
        filters=[{"name": "IntentName", "values": ["ProcessPayment"], "operator": "EQ"}],
    )
    assert [i["intentName"] for i in filtered["intentSummaries"]] == ["ProcessPayment"]


def test_describe_intent_mirrors_the_bot_file(models: Any) -> None:
    data = bot_file("paymentbot.json")
    raw = next(i for i in data["intents"] if i["name"] == "ProcessPayment")
    intent_id = ids.intent_id(PAY, LOCALE, "ProcessPayment")
    intent = models.describe_intent(botId=PAY, botVersion="DRAFT", localeId=LOCALE, intentId=intent_id)
    assert (intent["intentId"], intent["intentName"]) == (intent_id, "ProcessPayment")
    assert [u["utterance"] for u in intent["sampleUtterances"]] == raw["sampleUtterances"]
    slots = models.list_slots(botId=PAY, botVersion="DRAFT", localeId=LOCALE, intentId=intent_id)["slotSummaries"]
    slot_ids = {s["slotName"]: s["slotId"] for s in slots}
    assert intent["slotPriorities"] == [
        {"priority": n, "slotId": slot_ids[s["name"]]} for n, s in enumerate(raw["slots"], start=1)
    ]
    confirmation = intent["intentConfirmationSetting"]
    prompt = confirmation["promptSpecification"]["messageGroups"][0]["message"]["plainTextMessage"]["value"]
    assert "{CreditCardNumber}" in prompt and "|" not in prompt  # the emulator's filters are not Lex syntax
    assert confirmation["declinationResponse"]["messageGroups"] == plain_groups(
        raw["confirmation"]["declinationResponse"]
    )
    closing = intent["intentClosingSetting"]["closingResponse"]["messageGroups"]
    assert closing == plain_groups(*(text.replace("|amount", "").replace("|last4", "")
                                     for text in raw["closingResponse"]["messages"]))


def test_list_slots_summaries(models: Any) -> None:
    intent_id = ids.intent_id(PAY, LOCALE, "ProcessPayment")
    listed = models.list_slots(botId=PAY, botVersion="1", localeId=LOCALE, intentId=intent_id)
    assert (listed["botId"], listed["botVersion"], listed["localeId"], listed["intentId"]) == (
        PAY, "1", LOCALE, intent_id,
    )
    summaries = {s["slotName"]: s for s in listed["slotSummaries"]}
    assert set(summaries) == {"AccountId", "PaymentAmount", "CreditCardNumber", "CVV", "ExpirationDate"}
    assert all(ID_RE.match(s["slotId"]) for s in summaries.values())
    assert len({s["slotId"] for s in summaries.values()}) == 5
    card = summaries["CreditCardNumber"]
    assert card["slotConstraint"] == "Required"
    assert card["valueElicitationPromptSpecification"]["messageGroups"] == plain_groups(
        "What is the credit card number you would like to use?"
    )
    paged = models.list_slots(botId=PAY, botVersion="1", localeId=LOCALE, intentId=intent_id, maxResults=3)
    assert len(paged["slotSummaries"]) == 3 and paged["nextToken"]


# ----------------------------------------------------------------------------------------------------------
# Errors


def test_unknown_resources_are_resource_not_found(models: Any) -> None:
    intent_id = ids.intent_id(PAY, LOCALE, "ProcessPayment")
    slot_id = ids.slot_id(PAY, LOCALE, "ProcessPayment", "CVV")
    calls = [
        lambda: models.describe_bot(botId="NOSUCHBOT1"),
        lambda: models.list_bot_aliases(botId="NOSUCHBOT1"),
        lambda: models.describe_bot_alias(botId=PAY, botAliasId="NOSUCHALIA"),
        lambda: models.list_intents(botId=PAY, botVersion="7", localeId=LOCALE),
        lambda: models.list_intents(botId=PAY, botVersion="DRAFT", localeId="fr_FR"),
        lambda: models.describe_intent(botId=PAY, botVersion="DRAFT", localeId=LOCALE, intentId="ABCDEFGHIJ"),
        lambda: models.list_slots(botId=PAY, botVersion="DRAFT", localeId=LOCALE, intentId="ABCDEFGHIJ"),
        lambda: models.describe_slot(
            botId=PAY, botVersion="DRAFT", localeId=LOCALE, intentId=intent_id, slotId="ABCDEFGHIJ"
        ),
        # A real slot id, asked of the wrong intent.
        lambda: models.describe_slot(
            botId=PAY, botVersion="DRAFT", localeId=LOCALE, intentId="FALLBCKINT", slotId=slot_id
        ),
    ]
    for call in calls:
        with pytest.raises(models.exceptions.ResourceNotFoundException) as missing:
            call()
        assert missing.value.response["Error"]["Code"] == "ResourceNotFoundException"
        assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
        assert missing.value.response["Error"]["Message"]


def test_bad_list_arguments_are_validation_exceptions(models: Any) -> None:
    with pytest.raises(models.exceptions.ValidationException):
        models.list_bots(nextToken="not-a-token")
    with pytest.raises(models.exceptions.ValidationException):
        models.list_intents(
            botId=PAY, botVersion="DRAFT", localeId=LOCALE,
            filters=[{"name": "IntentName", "values": ["x"], "operator": "NE"}],
        )


# ----------------------------------------------------------------------------------------------------------
# The bot-file fields behind it


def _bot_with_card_slot(wait: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "botId": "MODELBOT01",
        "botName": "ModelBot",
        "localeIds": [LOCALE],
        "aliasIds": ["TSTALIASID"],
        "intents": [
            {
                "name": "Pay",
                "sampleUtterances": ["pay"],
                "slots": [
                    {"name": "Card", "slotType": "AMAZON.AlphaNumeric", "prompt": "Card?", "waitAndContinue": wait}
                ],
            },
            {"name": "FallbackIntent"},
        ],
        **extra,
    }


def test_defaults_alias_objects_and_custom_bot_dirs_over_http(tmp_path: Path) -> None:
    bot = _bot_with_card_slot(
        {"waitingResponse": "Take your time.", "stillWaitingResponse": "Still here."},
        aliasIds=["TSTALIASID", {"botAliasId": "LIVEALIAS1", "botAliasName": "Live", "botVersion": "3"}],
    )
    (tmp_path / "modelbot.json").write_text(json.dumps(bot), encoding="utf-8")
    with serve_asgi(create_app(tmp_path)) as url:
        client = models_client(url)
        alias = client.describe_bot_alias(botId="MODELBOT01", botAliasId="LIVEALIAS1")
        assert (alias["botAliasName"], alias["botVersion"]) == ("Live", "3")
        assert client.list_bots()["botSummaries"][0]["latestBotVersion"] == "3"
        slot = walk_to_slot(client, "MODELBOT01", "LIVEALIAS1", "Pay", "Card")
        with pytest.raises(client.exceptions.ResourceNotFoundException):
            client.list_intents(botId="MODELBOT01", botVersion="1", localeId=LOCALE)
    assert slot["valueElicitationSetting"]["waitAndContinueSpecification"] == {
        "waitingResponse": {"messageGroups": plain_groups("Take your time."), "allowInterrupt": True},
        # No continue response in the file: the engine re-asks the prompt, and the model says so.
        "continueResponse": {"messageGroups": plain_groups("Card?"), "allowInterrupt": True},
        "stillWaitingResponse": {
            "messageGroups": plain_groups("Still here."),
            "frequencyInSeconds": 30,
            "timeoutInSeconds": 300,
            "allowInterrupt": True,
        },
        "active": True,
    }


@pytest.mark.parametrize(
    ("still", "message"),
    [
        ({"messages": "x", "frequencyInSeconds": 0}, "frequencyInSeconds"),
        ({"messages": "x", "frequencyInSeconds": 301}, "frequencyInSeconds"),
        ({"messages": "x", "timeoutInSeconds": 901}, "timeoutInSeconds"),
        ({"messages": "x", "timeoutInSeconds": 30.5}, "timeoutInSeconds"),
        ({"messages": "x", "allowInterrupt": "yes"}, "allowInterrupt"),
        ({"messages": "x", "interval": 5}, "unknown keys"),
        ({"messages": {"contentType": "Nope"}}, "stillWaitingResponse.messages"),
    ],
)
def test_bad_wait_and_continue_settings_are_rejected(still: dict[str, Any], message: str) -> None:
    with pytest.raises(BotDefinitionError, match=message):
        parse_bot(_bot_with_card_slot({"waitingResponse": "Wait.", "stillWaitingResponse": still}))


def test_timing_keys_belong_to_the_still_waiting_response_only() -> None:
    wait = {"waitingResponse": {"messages": "Wait.", "frequencyInSeconds": 10}}
    with pytest.raises(BotDefinitionError, match="unknown keys"):
        parse_bot(_bot_with_card_slot(wait))


@pytest.mark.parametrize(
    ("aliases", "message"),
    [
        ([{"botAliasId": "LIVEALIAS1", "botVersion": "v2"}], "botVersion"),
        ([{"botAliasName": "Live"}], "botAliasId"),
        ([{"botAliasId": "LIVEALIAS1", "version": "1"}], "unknown keys"),
        (["TSTALIASID", "TSTALIASID"], "duplicate alias"),
        ([], "non-empty"),
    ],
)
def test_bad_aliases_are_rejected(aliases: list[Any], message: str) -> None:
    with pytest.raises(BotDefinitionError, match=message):
        parse_bot(_bot_with_card_slot({"waitingResponse": "Wait."}, aliasIds=aliases))


def test_ids_are_deterministic_upper_case_alphanumerics() -> None:
    first = ids.intent_id(PAY, LOCALE, "ProcessPayment")
    assert first == ids.intent_id(PAY, LOCALE, "ProcessPayment")
    assert ID_RE.match(first)
    assert first != ids.intent_id(BANK, LOCALE, "ProcessPayment")
    assert first != ids.intent_id(PAY, "en_GB", "ProcessPayment")
    assert ids.intent_id(BANK, LOCALE, "FallbackIntent") == "FALLBCKINT"
    card = ids.slot_id(PAY, LOCALE, "ProcessPayment", "CreditCardNumber")
    assert ID_RE.match(card) and card != ids.slot_id(PAY, LOCALE, "GetBalanceAmount", "CreditCardNumber")
    many = {ids.derived_id("slot", "B", "l", "i", f"S{n}") for n in range(5000)}
    assert len(many) == 5000 and all(ID_RE.match(i) for i in many)
