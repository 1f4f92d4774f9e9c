"""All configuration, read from LEXDESK_* environment variables in one place (PROTOCOL.md §1).

`get_settings()` validates once per process; a bad value raises `SettingsError`, whose message names
the variable, and the CLI turns that into a one-line exit. Variables that look like ours but are not
(`LEXDESK_EDGE_PROT`) are errors too: a typo must not silently fall back to a default.
"""

from __future__ import annotations

import difflib
import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared import business_hours

ENV_PREFIX = "LEXDESK_"
DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
STATE_DIR = Path(os.environ.get("LEXDESK_STATE_DIR", ".lexdesk")).resolve()

# The emulators' well-known credentials, so the embedded default works with no configuration.
EMULATOR_TALKDESK_PORT = 8001
EMULATOR_LEX_PORT = 8002
EMULATOR_CLIENT_ID = "lexdesk-emulator-client"
EMULATOR_CLIENT_SECRET = "lexdesk-emulator-secret"
EMULATOR_TOUCHPOINT_ID = "emulator-touchpoint"


# The four keys lexdesk checks or signs with (callback key, admin token, resume-token and data keys).
MIN_SECRET_LENGTH = 16


class SettingsError(RuntimeError):
    """Configuration that cannot work; the message names the offending variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", validate_default=True)

    # Storage and transport.
    state_dir: Path = STATE_DIR
    database_url: str = f"sqlite:///{STATE_DIR / 'lexdesk.sqlite'}"
    broker_url: str = f"sqla+sqlite:///{STATE_DIR / 'broker.sqlite'}"
    broker_quorum_queues: bool = False

    # Entry points.
    edge_host: str = "127.0.0.1"
    edge_port: int = Field(8765, ge=1, le=65535)
    http_host: str = "127.0.0.1"
    http_port: int = Field(8080, ge=1, le=65535)
    node_id: str = Field(default_factory=lambda: f"node-{secrets.token_hex(4)}", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    public_edge_url: str | None = None  # what the chat page connects to, when behind a proxy

    # Secrets (never logged: SecretStr renders as '**********').
    callback_api_key: SecretStr | None = None
    admin_token: SecretStr | None = None
    resume_token_secret: SecretStr | None = None
    data_key: SecretStr | None = None  # seals card data in transit to Lex (shared/sealing.py)

    # Talkdesk.
    talkdesk_api_url: str = f"http://127.0.0.1:{EMULATOR_TALKDESK_PORT}"
    talkdesk_auth_url: str = f"http://127.0.0.1:{EMULATOR_TALKDESK_PORT}"
    talkdesk_client_id: str = EMULATOR_CLIENT_ID
    talkdesk_client_secret: SecretStr = SecretStr(EMULATOR_CLIENT_SECRET)
    talkdesk_touchpoint_id: str = EMULATOR_TOUCHPOINT_ID
    talkdesk_timeout: float = Field(10.0, gt=0)
    secrets_source: Literal["env", "aws"] = "env"
    talkdesk_client_secret_name: str = "dev/talkdesk/client/keys"
    talkdesk_touchpoint_secret_name: str = "dev/talkdesk/touchpoint/ids"

    # Lex.
    lex_bot_id: str = "BANKINGBOT"
    lex_bot_alias_id: str = "TSTALIASID"
    lex_locale_id: str = "en_US"
    lex_endpoint_url: str | None = f"http://127.0.0.1:{EMULATOR_LEX_PORT}"
    # The Lex V2 models API (the bot's configuration: wait-and-continue, interruptible prompts); unset,
    # it is the runtime's endpoint_url when that is set (the emulator serves both), else AWS's own.
    lex_models_endpoint_url: str | None = None
    lex_timeout: float = Field(10.0, gt=0)
    escalation_intent: str = "TalkToAgent"

    # Delivery guarantees.
    # A transient failure (timeouts, connection errors, 408, 429, 5xx) is retried until this many
    # seconds have passed since the message was accepted; only then is it a dead letter. Vendors fail
    # for minutes, not seconds. At most a day.
    retry_for: float = Field(15 * 60.0, gt=0, le=24 * 3600)
    # Optional count bound as well (earlier versions bounded retries by count only); unset: time only.
    max_attempts: int | None = Field(None, ge=1, le=1000)
    retry_backoff_base: float = Field(0.5, gt=0)
    retry_backoff_max: float = Field(30.0, gt=0)
    # A message failing (or waiting behind one that is) for this long is reported `delayed` to the
    # customer, and its destination is named by /readyz.
    delayed_after: float = Field(10.0, gt=0, le=3600)
    lease_seconds: float = Field(30.0, gt=0)  # renewed after each message; must exceed one call's timeout
    sweep_interval: float = Field(15.0, gt=0)
    inactivity_timeout: float = Field(1800.0, gt=0)
    # While a bot intent is Waiting (Lex wait-and-continue): prompt every N seconds, give up after T.
    # Used only where the bot's own waitAndContinueSpecification cannot be read (shared/clients/lex_models.py).
    waiting_prompt_interval: float = Field(20.0, gt=0, le=600)
    waiting_timeout: float = Field(120.0, gt=0, le=1500)
    # A bot answer of several messages goes out one message per this many seconds (as if typed), so a
    # customer who writes first can cut the rest short where the bot allows it; 0 sends them at once.
    bot_typing_delay: float = Field(1.0, ge=0, le=30)
    # Forward the customer's typing to the agent (workers/talkdesk.py customer_typing). Digital Connect's
    # public API has no call for it: turn it on only for a Talkdesk that serves
    # POST /digital-connect/conversations/{id}/typing, as lexdesk's emulator does (`lexdesk up` turns it on).
    forward_customer_typing: bool = False
    # While a conversation waits for an agent: a word to the customer (with their place in the queue)
    # every this many seconds, and back to the bot after the timeout (0: wait for ever).
    queue_update_interval: float = Field(30.0, gt=0, le=3600)
    queue_timeout: float = Field(600.0, ge=0, le=24 * 3600)
    # How long the transcript link given at the end of a chat works.
    transcript_link_ttl: float = Field(24 * 3600.0, gt=0, le=30 * 24 * 3600)
    # When agents are there (shared/business_hours.py): outside these hours asking for an agent offers
    # to leave a message instead, handed over at the opening (shared/left_messages.py). Unset: always open.
    business_hours: str | None = None  # "mon-fri 09:00-17:00, sat 10:00-14:00"
    business_timezone: str = "UTC"  # IANA name: the hours and holidays are wall-clock times there
    holidays: str | None = None  # ISO dates, closed all day: "2026-12-25, 2027-01-01"

    # How long customer data stays reachable.
    # Seconds a resume token works after it was issued (every welcome issues a fresh one): a token
    # copied out of a browser must not open the transcript for ever. At most 30 days.
    resume_token_ttl: float = Field(24 * 3600.0, ge=1, le=30 * 24 * 3600)
    # Seconds after a conversation ended during which its token still resumes it (a reload shows the
    # end); after that, `invalid_token`.
    closed_resume_grace: float = Field(600.0, ge=0, le=24 * 3600)
    # Closed conversations whose last activity is older than this many days are deleted with their
    # messages and connections (timers.purge_expired; `lexdesk purge`). 0 keeps them for ever.
    retention_days: int = Field(90, ge=0, le=36500)

    # Customer edge limits.
    max_frame_bytes: int = Field(16 * 1024, ge=256)
    rate_limit_messages: int = Field(20, ge=1)
    rate_limit_window: float = Field(10.0, gt=0)

    # Customer edge limits per client address and per conversation (services/edge/sessions.py), so
    # that many sockets cannot multiply the per-socket limit. All are checked in memory, before any
    # database work; per-conversation counts are per edge node. The client address is the socket's
    # peer, or, when trusted, the last X-Forwarded-For entry (what the proxy in front of us saw).
    trust_forwarded_for: bool = False  # only behind a proxy that sets the header: clients can forge it
    # Messages per LEXDESK_RATE_LIMIT_WINDOW over all sockets of one conversation (resumes included).
    rate_limit_conversation_messages: int = Field(30, ge=1)
    # Messages per LEXDESK_RATE_LIMIT_WINDOW over all sockets of one client address (a NAT is many people).
    rate_limit_address_messages: int = Field(300, ge=1)
    # Live sockets one conversation may have (several tabs each show it and can write); a newer one
    # beyond this replaces the oldest, which is told (`superseded`, 4409). Every frame costs one publish
    # per edge node holding a socket of it, so this bounds the fan-out a client can cause. 1: one tab.
    max_sockets_per_conversation: int = Field(5, ge=1, le=50)
    # Sockets one address may hold open at once, and how many of them may lack a hello/resume; beyond
    # either, the WebSocket upgrade is refused with HTTP 429.
    address_max_sockets: int = Field(100, ge=1, le=1_000_000)
    address_max_unstarted_sockets: int = Field(20, ge=1, le=1_000_000)
    # New sockets per address in any sliding window of this many seconds (429 beyond).
    address_new_sockets: int = Field(60, ge=1, le=1_000_000)
    address_new_sockets_window: float = Field(10.0, gt=0, le=3600)
    # New conversations (hello) per address in any sliding window (`rate_limited` beyond).
    address_new_conversations: int = Field(30, ge=1, le=1_000_000)
    address_new_conversations_window: float = Field(60.0, gt=0, le=86400)
    # Seconds a socket may stay open without a successful hello or resume; then it is closed (4408).
    hello_timeout: float = Field(10.0, gt=0, le=3600)

    # HTTP app limits (services/callback/http_server.py): uvicorn has no timeout for a request that
    # never finishes arriving, so a slow-loris client could hold connections for ever.
    http_request_timeout: float = Field(10.0, gt=0, le=600)  # seconds to send headers and body, once begun
    http_keep_alive_timeout: float = Field(5.0, gt=0, le=600)  # idle seconds between requests
    http_max_connections: int = Field(1000, ge=1)  # uvicorn's limit_concurrency: beyond it, 503
    http_max_header_bytes: int = Field(16 * 1024, ge=1024, le=1024 * 1024)  # request line and headers
    # /readyz must get a short write transaction through within this many seconds, or it answers 503.
    readiness_timeout: float = Field(2.0, gt=0, le=30)

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: Any, **_: Any
                                   ) -> tuple[Any, ...]:
        # Only what load_settings passes in: it reads the environment itself, so that a dict given
        # by a caller (a test, `lexdesk up` checking a child's environment) is the whole truth.
        return (init_settings,)

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if not value.startswith(("sqlite", "postgresql")):
            raise ValueError(f"must be a sqlite:// or postgresql:// SQLAlchemy URL, got {value.split(':')[0]!r}")
        if value.startswith("sqlite"):
            _sqlite_file(value)
        return value.replace("postgresql://", "postgresql+psycopg://", 1)

    @field_validator("retry_for", "delayed_after", "queue_update_interval", "queue_timeout", "transcript_link_ttl",
                     mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        """Seconds, or a number with a unit: `900`, `90s`, `15m`, `1h`."""
        if isinstance(value, str) and value.strip()[-1:].lower() in DURATION_UNITS:
            number, unit = value.strip()[:-1], value.strip()[-1].lower()
            try:
                return float(number) * DURATION_UNITS[unit]
            except ValueError:
                raise ValueError(f"must be seconds or a duration such as 90s, 15m or 1h, got {value!r}") from None
        return value

    @field_validator("business_hours")
    @classmethod
    def _business_hours(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None  # set but blank: as unset, always open
        business_hours.parse_hours(value)  # ValueError says what is wrong
        return value.strip()

    @field_validator("business_timezone")
    @classmethod
    def _business_timezone(cls, value: str) -> str:
        business_hours.parse_zone(value.strip())
        return value.strip()

    @field_validator("holidays")
    @classmethod
    def _holidays(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        business_hours.parse_holidays(value)
        return value.strip()

    @field_validator("broker_url")
    @classmethod
    def _known_broker(cls, value: str) -> str:
        if not value.startswith(("amqp://", "amqps://", "pyamqp://", "sqla+", "redis://", "memory://")):
            raise ValueError("must be an amqp://, sqla+sqlite:// or redis:// kombu URL")
        return value

    @field_validator("callback_api_key", "admin_token", "resume_token_secret", "data_key")
    @classmethod
    def _strong_secret(cls, value: SecretStr | None) -> SecretStr | None:
        # An empty key would let an empty X-Api-Key or `Bearer ` through; a short one can be guessed.
        if value is not None and len(value.get_secret_value()) < MIN_SECRET_LENGTH:
            length = len(value.get_secret_value())
            raise ValueError(f"is {'empty' if not length else f'{length} characters'}; it must be at least "
                             f"{MIN_SECRET_LENGTH} characters (for example: python3 -c \"import secrets; "
                             "print(secrets.token_urlsafe(32))\")")
        return value

    @model_validator(mode="after")
    def _sqlite_folders_exist(self) -> Settings:
        # The state directory is created by `lexdesk up` and `lexdesk migrate`; any other folder must
        # exist already: a typo in a path must not become a new, empty database somewhere else.
        for name, url in (("database_url", self.database_url), ("broker_url", self.broker_url)):
            if url.startswith(("sqlite", "sqla+sqlite")):
                folder = _sqlite_file(url.removeprefix("sqla+")).parent
                if not folder.is_dir() and folder.resolve() != self.state_dir.resolve():
                    raise ValueError(f"{ENV_PREFIX}{name.upper()}: the folder {folder} does not exist "
                                     "(create it first, or name a file in an existing folder)")
        return self

    @property
    def uses_amqp(self) -> bool:
        return self.broker_url.startswith(("amqp", "pyamqp"))

    @property
    def business_schedule(self) -> business_hours.BusinessHours:
        """The business hours as one object (parsed once per process: business_hours.schedule caches)."""
        return business_hours.schedule(self.business_hours, self.business_timezone, self.holidays)

    @property
    def chat_edge_url(self) -> str:
        return self.public_edge_url or f"ws://{self.edge_host}:{self.edge_port}/ws"

    def require(self, *names: str) -> None:
        """Stop a process that needs secrets nobody configured, naming the variables."""
        missing = [n for n in names if getattr(self, n) is None]
        if missing:
            joined = ", ".join(ENV_PREFIX + n.upper() for n in missing)
            raise SettingsError(f"{joined} must be set (lexdesk up generates them for one machine)")


def _sqlite_file(url: str) -> Path:
    """The file of a sqlite:///PATH URL. Every lexdesk process must open the same file, so an in-memory
    database (`sqlite://`, `sqlite:///`, `:memory:`) cannot work and is refused."""
    path = url.split(":///", 1)[1] if ":///" in url else ""
    path = path.split("?", 1)[0]
    if not path or path == ":memory:":
        raise ValueError(f"{url!r} names no database file; use sqlite:////absolute/path/lexdesk.sqlite "
                         "(an in-memory database cannot be shared by lexdesk's processes)")
    return Path(path)


def _unknown_variables(environ: dict[str, str]) -> list[str]:
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields} | {"LEXDESK_STATE_DIR"}
    problems = []
    for name in sorted(environ):
        if name.startswith(ENV_PREFIX) and name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            problems.append(f"{name} is not a lexdesk setting{hint}")
    return problems


def _may_hold_secret(field: str) -> bool:
    # URLs carry passwords (postgresql://user:pw@host); keys, tokens and secrets are secrets.
    return any(word in field for word in ("secret", "key", "token", "url"))


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Validate the environment; raise SettingsError naming every bad variable."""
    environ = dict(os.environ if environ is None else environ)
    problems = _unknown_variables(environ)
    values = _from_environ(environ)
    # The embedded files live in the state directory the environment names, not the one this
    # module saw at import.
    state_dir = Path(values.get("state_dir", STATE_DIR)).resolve()
    values.setdefault("database_url", f"sqlite:///{state_dir / 'lexdesk.sqlite'}")
    values.setdefault("broker_url", f"sqla+sqlite:///{state_dir / 'broker.sqlite'}")
    try:
        settings = Settings(**values)
    except ValidationError as exc:
        for error in exc.errors():
            if not error["loc"]:  # a check across fields: its message names the variable itself
                problems.append(error["msg"].removeprefix("Value error, "))
                continue
            field = str(error["loc"][0])
            given = environ.get(ENV_PREFIX + field.upper())
            shown = "" if given is None or _may_hold_secret(field) else f" (got {given!r})"
            problems.append(f"{ENV_PREFIX}{field.upper()}: {error['msg']}{shown}")
        settings = None
    if problems:
        raise SettingsError("invalid configuration: " + "; ".join(problems))
    assert settings is not None
    return settings


def _from_environ(environ: dict[str, str]) -> dict[str, str]:
    # Passing values explicitly (rather than letting pydantic-settings read os.environ) lets tests and
    # `lexdesk up` validate an environment before handing it to child processes.
    return {
        name: environ[ENV_PREFIX + name.upper()]
        for name in Settings.model_fields
        if ENV_PREFIX + name.upper() in environ
    }


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
