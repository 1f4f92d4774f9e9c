"""One Talkdesk client, one Lex runtime and one Lex models client per process, built from settings
(and Secrets Manager when LEXDESK_SECRETS_SOURCE=aws)."""

from __future__ import annotations

import json
import os
from functools import lru_cache
from urllib.parse import urlparse

import boto3

from shared.clients.lex import LexClient
from shared.clients.lex_models import LexModels
from shared.clients.talkdesk import TalkdeskClient, TalkdeskCredentials
from shared.settings import Settings, SettingsError, get_settings


def aws_region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


def talkdesk_credentials(settings: Settings) -> TalkdeskCredentials:
    if settings.secrets_source == "env":
        return TalkdeskCredentials(settings.talkdesk_client_id, settings.talkdesk_client_secret.get_secret_value(),
                                   settings.talkdesk_touchpoint_id)
    secrets = boto3.session.Session().client("secretsmanager", region_name=aws_region())
    keys = _secret_json(secrets, settings.talkdesk_client_secret_name, ("client_id", "client_secret"))
    ids = _secret_json(secrets, settings.talkdesk_touchpoint_secret_name, ("touchpoint_id",))
    return TalkdeskCredentials(keys["client_id"], keys["client_secret"], ids["touchpoint_id"])


def _secret_json(client: object, name: str, required: tuple[str, ...]) -> dict[str, str]:
    try:
        raw = client.get_secret_value(SecretId=name)["SecretString"]  # type: ignore[attr-defined]
        value = json.loads(raw)
    except Exception as exc:
        raise SettingsError(f"LEXDESK_SECRETS_SOURCE=aws: cannot read secret {name!r}: {exc}") from exc
    missing = [key for key in required if not isinstance(value, dict) or not value.get(key)]
    if missing:
        raise SettingsError(f"secret {name!r} lacks {', '.join(missing)}")
    return value


@lru_cache(maxsize=1)
def talkdesk_client() -> TalkdeskClient:
    settings = get_settings()
    return TalkdeskClient(settings.talkdesk_api_url, settings.talkdesk_auth_url, talkdesk_credentials(settings),
                          timeout=settings.talkdesk_timeout)


def _emulator_credentials(endpoint: str | None) -> dict[str, str] | None:
    local = endpoint is not None and urlparse(endpoint).hostname in ("127.0.0.1", "localhost", "::1")
    if local and not os.environ.get("AWS_ACCESS_KEY_ID"):
        # The emulator checks no signature, but botocore will not sign without some credentials.
        return {"aws_access_key_id": "emulator", "aws_secret_access_key": "emulator"}
    return None


@lru_cache(maxsize=1)
def lex_client() -> LexClient:
    settings = get_settings()
    endpoint = settings.lex_endpoint_url
    return LexClient(bot_id=settings.lex_bot_id, bot_alias_id=settings.lex_bot_alias_id,
                     locale_id=settings.lex_locale_id, region=aws_region(), endpoint_url=endpoint,
                     timeout=settings.lex_timeout, credentials=_emulator_credentials(endpoint))


@lru_cache(maxsize=1)
def lex_models() -> LexModels:
    settings = get_settings()
    endpoint = settings.lex_models_endpoint_url or settings.lex_endpoint_url
    return LexModels(bot_id=settings.lex_bot_id, bot_alias_id=settings.lex_bot_alias_id,
                     locale_id=settings.lex_locale_id, region=aws_region(), endpoint_url=endpoint,
                     timeout=min(settings.lex_timeout, 5.0), credentials=_emulator_credentials(endpoint))
