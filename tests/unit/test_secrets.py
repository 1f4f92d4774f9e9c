"""shared/clients/factory.py `talkdesk_credentials`: Secrets Manager (moto) when LEXDESK_SECRETS_SOURCE=aws."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from shared.clients.factory import talkdesk_credentials
from shared.clients.talkdesk import TalkdeskCredentials
from shared.settings import SettingsError, load_settings

CLIENT_SECRET_VALUE = "td-client-s3cret-Zx81"
AWS = {"LEXDESK_SECRETS_SOURCE": "aws"}


@pytest.fixture
def secretsmanager(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    with mock_aws():
        yield boto3.client("secretsmanager", region_name="eu-west-1")


def put(client: Any, name: str, value: Any) -> None:
    client.create_secret(Name=name, SecretString=value if isinstance(value, str) else json.dumps(value))


def put_defaults(client: Any) -> None:
    put(client, "dev/talkdesk/client/keys", {"client_id": "td-client-id", "client_secret": CLIENT_SECRET_VALUE})
    put(client, "dev/talkdesk/touchpoint/ids", {"touchpoint_id": "tp-123"})


def test_reads_the_default_secrets(secretsmanager: Any) -> None:
    put_defaults(secretsmanager)
    credentials = talkdesk_credentials(load_settings(AWS))
    assert credentials == TalkdeskCredentials("td-client-id", CLIENT_SECRET_VALUE, "tp-123")


def test_environment_credentials_are_ignored_when_the_source_is_aws(secretsmanager: Any) -> None:
    put_defaults(secretsmanager)
    settings = load_settings({**AWS, "LEXDESK_TALKDESK_CLIENT_ID": "from-env",
                              "LEXDESK_TALKDESK_CLIENT_SECRET": "env-secret",
                              "LEXDESK_TALKDESK_TOUCHPOINT_ID": "env-tp"})
    assert talkdesk_credentials(settings) == TalkdeskCredentials("td-client-id", CLIENT_SECRET_VALUE, "tp-123")


def test_custom_secret_names(secretsmanager: Any) -> None:
    put_defaults(secretsmanager)  # decoys under the default names
    put(secretsmanager, "prod/td/keys", {"client_id": "prod-id", "client_secret": "prod-secret", "extra": "x"})
    put(secretsmanager, "prod/td/touchpoint", {"touchpoint_id": "prod-tp"})
    settings = load_settings({**AWS, "LEXDESK_TALKDESK_CLIENT_SECRET_NAME": "prod/td/keys",
                              "LEXDESK_TALKDESK_TOUCHPOINT_SECRET_NAME": "prod/td/touchpoint"})
    assert talkdesk_credentials(settings) == TalkdeskCredentials("prod-id", "prod-secret", "prod-tp")


def test_missing_secret_names_it(secretsmanager: Any) -> None:
    put(secretsmanager, "dev/talkdesk/client/keys", {"client_id": "td-client-id", "client_secret": CLIENT_SECRET_VALUE})
    with pytest.raises(SettingsError) as caught:
        talkdesk_credentials(load_settings(AWS))
    message = str(caught.value)
    assert "'dev/talkdesk/touchpoint/ids'" in message
    assert "LEXDESK_SECRETS_SOURCE=aws" in message
    assert CLIENT_SECRET_VALUE not in message


def test_missing_custom_secret_names_it(secretsmanager: Any) -> None:
    put_defaults(secretsmanager)
    settings = load_settings({**AWS, "LEXDESK_TALKDESK_CLIENT_SECRET_NAME": "prod/nothing/here"})
    with pytest.raises(SettingsError) as caught:
        talkdesk_credentials(settings)
    assert "'prod/nothing/here'" in str(caught.value)


def test_missing_key_names_the_secret_and_the_key_not_the_value(secretsmanager: Any) -> None:
    put(secretsmanager, "dev/talkdesk/client/keys", {"client_id": "td-client-id", "clientSecret": CLIENT_SECRET_VALUE})
    put(secretsmanager, "dev/talkdesk/touchpoint/ids", {"touchpoint_id": "tp-123"})
    with pytest.raises(SettingsError) as caught:
        talkdesk_credentials(load_settings(AWS))
    message = str(caught.value)
    assert "'dev/talkdesk/client/keys'" in message
    assert "client_secret" in message
    assert CLIENT_SECRET_VALUE not in message
    assert "td-client-id" not in message


def test_empty_key_counts_as_missing(secretsmanager: Any) -> None:
    put(secretsmanager, "dev/talkdesk/client/keys", {"client_id": "td-client-id", "client_secret": CLIENT_SECRET_VALUE})
    put(secretsmanager, "dev/talkdesk/touchpoint/ids", {"touchpoint_id": ""})
    with pytest.raises(SettingsError) as caught:
        talkdesk_credentials(load_settings(AWS))
    message = str(caught.value)
    assert "'dev/talkdesk/touchpoint/ids'" in message
    assert "touchpoint_id" in message


def test_secret_that_is_not_json_names_it_without_its_value(secretsmanager: Any) -> None:
    put(secretsmanager, "dev/talkdesk/client/keys", f"client_secret={CLIENT_SECRET_VALUE}")
    put(secretsmanager, "dev/talkdesk/touchpoint/ids", {"touchpoint_id": "tp-123"})
    with pytest.raises(SettingsError) as caught:
        talkdesk_credentials(load_settings(AWS))
    message = str(caught.value)
    assert "'dev/talkdesk/client/keys'" in message
    assert CLIENT_SECRET_VALUE not in message


def test_secret_that_is_a_json_list_names_it(secretsmanager: Any) -> None:
    put(secretsmanager, "dev/talkdesk/client/keys", ["td-client-id", CLIENT_SECRET_VALUE])
    put(secretsmanager, "dev/talkdesk/touchpoint/ids", {"touchpoint_id": "tp-123"})
    with pytest.raises(SettingsError) as caught:
        talkdesk_credentials(load_settings(AWS))
    message = str(caught.value)
    assert "'dev/talkdesk/client/keys'" in message
    assert CLIENT_SECRET_VALUE not in message


def test_source_env_reads_settings_not_secrets_manager(secretsmanager: Any) -> None:
    put_defaults(secretsmanager)
    settings = load_settings({"LEXDESK_TALKDESK_CLIENT_ID": "env-id", "LEXDESK_TALKDESK_CLIENT_SECRET": "env-secret",
                              "LEXDESK_TALKDESK_TOUCHPOINT_ID": "env-tp"})
    assert talkdesk_credentials(settings) == TalkdeskCredentials("env-id", "env-secret", "env-tp")


def test_source_env_defaults_are_the_emulators() -> None:
    credentials = talkdesk_credentials(load_settings({}))
    assert credentials == TalkdeskCredentials("lexdesk-emulator-client", "lexdesk-emulator-secret",
                                              "emulator-touchpoint")
