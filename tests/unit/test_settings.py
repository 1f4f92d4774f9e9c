"""shared/settings.py: defaults, validation naming the variable, secrets kept out of messages, and the CLI exit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.settings import Settings, SettingsError, load_settings

REPO_ROOT = Path(__file__).resolve().parents[2]


def problem(environ: dict[str, str]) -> str:
    with pytest.raises(SettingsError) as caught:
        load_settings(environ)
    return str(caught.value)


def test_defaults_are_the_embedded_setup() -> None:
    settings = load_settings({})
    assert settings.database_url.startswith("sqlite:///")
    assert settings.database_url.endswith("/lexdesk.sqlite")
    assert settings.broker_url.startswith("sqla+sqlite:///")
    assert settings.broker_url.endswith("/broker.sqlite")
    assert not settings.uses_amqp
    assert settings.edge_host == "127.0.0.1"
    assert settings.edge_port == 8765
    assert settings.http_host == "127.0.0.1"
    assert settings.http_port == 8080
    assert settings.escalation_intent == "TalkToAgent"
    assert settings.secrets_source == "env"
    assert settings.lex_bot_id == "BANKINGBOT"
    assert settings.lex_bot_alias_id == "TSTALIASID"
    assert settings.lex_locale_id == "en_US"
    assert settings.talkdesk_client_secret_name == "dev/talkdesk/client/keys"
    assert settings.talkdesk_touchpoint_secret_name == "dev/talkdesk/touchpoint/ids"
    assert settings.max_attempts is None  # bounded by time: LEXDESK_RETRY_FOR
    assert settings.retry_for == 900
    assert settings.delayed_after == 10
    assert settings.callback_api_key is None
    assert settings.admin_token is None
    assert settings.chat_edge_url == "ws://127.0.0.1:8765/ws"
    assert settings.node_id.startswith("node-")
    assert load_settings({}).node_id != settings.node_id  # random per process (per load)


def test_values_are_read_from_the_given_environment() -> None:
    settings = load_settings({
        "LEXDESK_EDGE_PORT": "8766",
        "LEXDESK_HTTP_HOST": "0.0.0.0",
        "LEXDESK_NODE_ID": "edge-b",
        "LEXDESK_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672//",
        "LEXDESK_ESCALATION_INTENT": "Escalate",
        "LEXDESK_PUBLIC_EDGE_URL": "wss://chat.example.com/ws",
        "LEXDESK_BROKER_QUORUM_QUEUES": "true",
        "LEXDESK_STATE_DIR": "/tmp/lexdesk-state",
        "PATH": "/usr/bin",  # not ours: ignored
    })
    assert settings.edge_port == 8766
    assert settings.http_host == "0.0.0.0"
    assert settings.node_id == "edge-b"
    assert settings.uses_amqp
    assert settings.broker_quorum_queues is True
    assert settings.escalation_intent == "Escalate"
    assert settings.chat_edge_url == "wss://chat.example.com/ws"
    assert settings.state_dir == Path("/tmp/lexdesk-state")


def test_postgresql_url_gets_the_psycopg_driver() -> None:
    settings = load_settings({"LEXDESK_DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/lexdesk"})
    assert settings.database_url == "postgresql+psycopg://postgres@127.0.0.1:5432/lexdesk"
    explicit = load_settings({"LEXDESK_DATABASE_URL": "postgresql+psycopg://u@db/x"})
    assert explicit.database_url == "postgresql+psycopg://u@db/x"


def test_non_integer_port_names_the_variable() -> None:
    message = problem({"LEXDESK_EDGE_PORT": "abc"})
    assert "LEXDESK_EDGE_PORT" in message
    assert "integer" in message
    assert "'abc'" in message


@pytest.mark.parametrize("value", ["0", "65536", "70000", "-1"])
def test_port_out_of_range_names_the_variable(value: str) -> None:
    message = problem({"LEXDESK_HTTP_PORT": value})
    assert "LEXDESK_HTTP_PORT" in message
    assert f"'{value}'" in message
    assert "LEXDESK_EDGE_PORT" not in message


def test_bad_database_scheme_names_the_variable() -> None:
    message = problem({"LEXDESK_DATABASE_URL": "mysql://db.example.com/lexdesk"})
    assert "LEXDESK_DATABASE_URL" in message
    assert "'mysql'" in message


def test_bad_broker_scheme_names_the_variable() -> None:
    message = problem({"LEXDESK_BROKER_URL": "kafka://broker:9092"})
    assert "LEXDESK_BROKER_URL" in message
    assert "amqp://" in message


def test_bad_secrets_source_names_the_variable() -> None:
    message = problem({"LEXDESK_SECRETS_SOURCE": "vault"})
    assert "LEXDESK_SECRETS_SOURCE" in message
    assert "'env'" in message and "'aws'" in message


def test_bad_node_id_names_the_variable() -> None:
    assert "LEXDESK_NODE_ID" in problem({"LEXDESK_NODE_ID": "edge a/1"})


def test_unknown_variable_suggests_the_known_one() -> None:
    message = problem({"LEXDESK_EDGE_PROT": "8765"})
    assert "LEXDESK_EDGE_PROT is not a lexdesk setting" in message
    assert "did you mean LEXDESK_EDGE_PORT?" in message


def test_unknown_variable_far_from_any_setting_has_no_suggestion() -> None:
    message = problem({"LEXDESK_ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ": "1"})
    assert "LEXDESK_ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ is not a lexdesk setting" in message
    assert "did you mean" not in message


def test_several_problems_are_reported_together() -> None:
    message = problem({
        "LEXDESK_EDGE_PORT": "abc",
        "LEXDESK_HTTP_PORT": "99999",
        "LEXDESK_DATABASE_URL": "mysql://x/y",
        "LEXDESK_SECRETS_SOURCE": "vault",
        "LEXDESK_EDGE_PROT": "1",
    })
    for name in ("LEXDESK_EDGE_PORT:", "LEXDESK_HTTP_PORT:", "LEXDESK_DATABASE_URL:", "LEXDESK_SECRETS_SOURCE:",
                 "LEXDESK_EDGE_PROT is not"):
        assert name in message, name
    assert message.startswith("invalid configuration: ")
    assert "\n" not in message


def test_secrets_never_appear_in_errors_or_repr() -> None:
    secrets = {
        "LEXDESK_TALKDESK_CLIENT_SECRET": "td-s3cr3t-value",
        "LEXDESK_CALLBACK_API_KEY": "cb-k3y-value-of-16+",
        "LEXDESK_ADMIN_TOKEN": "adm1n-t0ken-value-16+",
        "LEXDESK_RESUME_TOKEN_SECRET": "r3sume-s3cret-value-16+",
    }
    message = problem({**secrets, "LEXDESK_EDGE_PORT": "abc", "LEXDESK_EDGE_PROT": "1"})
    settings = load_settings(secrets)
    shown = [message, repr(settings), str(settings), str(settings.model_dump())]
    for value in secrets.values():
        for text in shown:
            assert value not in text
    assert settings.talkdesk_client_secret.get_secret_value() == "td-s3cr3t-value"
    assert settings.callback_api_key is not None
    assert settings.callback_api_key.get_secret_value() == "cb-k3y-value-of-16+"
    assert settings.admin_token is not None and settings.admin_token.get_secret_value() == "adm1n-t0ken-value-16+"
    assert "**********" in repr(settings)


def test_require_names_the_missing_variables() -> None:
    settings = load_settings({"LEXDESK_ADMIN_TOKEN": "t" * 16})
    with pytest.raises(SettingsError) as caught:
        settings.require("callback_api_key", "admin_token", "resume_token_secret")
    message = str(caught.value)
    assert "LEXDESK_CALLBACK_API_KEY" in message
    assert "LEXDESK_RESUME_TOKEN_SECRET" in message
    assert "LEXDESK_ADMIN_TOKEN" not in message
    settings.require("admin_token")  # present: no error


def test_settings_is_validated_on_construction() -> None:
    assert isinstance(load_settings({}), Settings)
    with pytest.raises(SettingsError):
        load_settings({"LEXDESK_MAX_ATTEMPTS": "0"})


def test_durations_take_seconds_or_a_unit() -> None:
    assert load_settings({"LEXDESK_RETRY_FOR": "90"}).retry_for == 90
    assert load_settings({"LEXDESK_RETRY_FOR": "15m"}).retry_for == 900
    assert load_settings({"LEXDESK_RETRY_FOR": "1h", "LEXDESK_DELAYED_AFTER": "30s"}).delayed_after == 30
    with pytest.raises(SettingsError, match=r"LEXDESK_RETRY_FOR: .*duration such as 90s"):
        load_settings({"LEXDESK_RETRY_FOR": "soonm"})
    with pytest.raises(SettingsError, match="LEXDESK_RETRY_FOR"):
        load_settings({"LEXDESK_RETRY_FOR": "0"})


def test_cli_exits_2_with_one_line_naming_the_variable(tmp_path: Path) -> None:
    environ = {name: value for name, value in os.environ.items() if not name.startswith("LEXDESK_")}
    environ["LEXDESK_EDGE_PORT"] = "abc"
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), environ.get("PYTHONPATH")]))
    result = subprocess.run([sys.executable, "-m", "lexdesk", "migrate"], cwd=tmp_path, env=environ,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("lexdesk: ")
    assert "LEXDESK_EDGE_PORT" in lines[0]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert not (tmp_path / ".lexdesk").exists()  # nothing was migrated


def test_database_password_not_in_error() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({"LEXDESK_DATABASE_URL": "mysql://lexdesk:hunter2-pw@db.example.com/lexdesk"})
    assert "LEXDESK_DATABASE_URL" in str(caught.value)
    assert "hunter2-pw" not in str(caught.value)


@pytest.mark.parametrize("name", ["LEXDESK_CALLBACK_API_KEY", "LEXDESK_ADMIN_TOKEN", "LEXDESK_RESUME_TOKEN_SECRET",
                                  "LEXDESK_DATA_KEY"])
@pytest.mark.parametrize(("value", "says"), [("", "is empty"), ("short-key-15chr", "is 15 characters")])
def test_empty_or_short_secrets_are_refused_and_the_error_says_why(name: str, value: str, says: str) -> None:
    """The attack: `LEXDESK_CALLBACK_API_KEY=` started the app, and then an empty X-Api-Key passed."""
    message = problem({name: value})
    assert f"{name}: Value error, {says}; it must be at least 16 characters" in message
    assert value not in message.replace(name, "") or not value  # the value itself is never echoed
