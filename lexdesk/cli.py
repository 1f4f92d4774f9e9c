"""The `lexdesk` command (docs/protocol.md §6).

Every process of the system is a `lexdesk ...` (or `python -m lexdesk ...`), so this module imports
only typer and the settings: each command imports what it needs when it runs. The test tools
(`bench`, `chaos`, `fuzz`) are not part of the product: they live in `tools/`, need the `tools`
extra, and are loaded only when their command is asked for (or listed, by `--help`).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from shared.settings import EMULATOR_LEX_PORT, EMULATOR_TALKDESK_PORT, Settings, SettingsError, load_settings

app = typer.Typer(help="lexdesk: Amazon Lex V2 bot ↔ Talkdesk Digital Connect agents.", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_enable=False)
emulate_app = typer.Typer(help="Run an emulator of a foreign service.", no_args_is_help=True)
app.add_typer(emulate_app, name="emulate")

# The test tools: command name → (module, function). Their modules import only typer at load time.
TOOL_COMMANDS = {"bench": ("tools.bench.cli", "bench"), "chaos": ("tools.chaos.cli", "chaos"),
                 "fuzz": ("tools.fuzz.cli", "fuzz")}
# What the `tools` extra brings beyond the product; if any is missing the tools are not installed.
TOOLS_EXTRA_MODULES = ("tools", "hypothesis", "schemathesis")
TOOLS_HINT = "install the test tools with: pip install -e '.[tools]' (from a checkout of lexdesk)"

Conversation = Annotated[str | None, typer.Option("--conversation", help="Only this conversation id")]
ErrorClass = Annotated[str | None, typer.Option("--error", help="Only this error class (transient, permanent, ...)")]
Since = Annotated[str | None, typer.Option(help="Created at or after (ISO 8601, UTC if no zone)")]
Until = Annotated[str | None, typer.Option(help="Created before (ISO 8601)")]


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        typer.echo(f"lexdesk: {exc}", err=True)
        raise typer.Exit(2) from exc


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"lexdesk: {message}", err=True)
    return typer.Exit(code)


@app.command()
def up(
    emulators: Annotated[bool, typer.Option(help="Start the Talkdesk and Lex emulators")] = True,
    concurrency: Annotated[int, typer.Option(help="Worker threads")] = 8,
) -> None:
    """Run everything on one machine: emulators, workers, callback app and edge."""
    from lexdesk import supervisor
    from shared.db import DatabaseUnavailable, check_database
    from shared.migrate import upgrade
    from shared.settings import get_settings

    settings = _settings()
    environ = {**os.environ, **supervisor.ensure_secrets(settings.state_dir, dict(os.environ))}
    if emulators:
        # The Talkdesk emulator serves the customer-typing call Digital Connect's public API lacks.
        environ.setdefault("LEXDESK_FORWARD_CUSTOMER_TYPING", "true")
    os.environ.update(environ)
    get_settings.cache_clear()
    settings = _settings()
    try:
        check_database(settings.database_url)
    except DatabaseUnavailable as exc:
        raise _fail(str(exc)) from None
    upgrade(settings.database_url)
    callback = f"http://{settings.http_host}:{settings.http_port}"
    banner = "\n".join([
        "lexdesk is up.",
        f"  chat page:             {callback}/",
        f"  customer WebSocket:    {settings.chat_edge_url}",
        f"  Talkdesk callbacks:    {callback}/talkdesk/...   X-Api-Key: {environ['LEXDESK_CALLBACK_API_KEY']}",
        f"  operator API:          {callback}/api/conversations   Bearer {environ['LEXDESK_ADMIN_TOKEN']}",
        *([f"  agent console:         {settings.talkdesk_api_url}/console"] if emulators else []),
        f"  logs:                  {settings.state_dir / 'logs'}",
        "Ctrl-C stops everything.",
    ])
    children = supervisor.plan(settings, emulators, concurrency)
    raise typer.Exit(supervisor.Supervisor(children, environ, settings.state_dir / "logs").run(banner))


@app.command()
def edge() -> None:
    """Run a customer WebSocket edge node."""
    settings = _settings()
    from services.edge.server import run
    from shared.logging import configure_logging

    configure_logging("edge")
    try:
        run(settings)
    except SettingsError as exc:
        raise _fail(str(exc)) from exc


@app.command()
def callback() -> None:
    """Run the HTTP app: Talkdesk callbacks, operator API, chat page."""
    settings = _settings()
    import uvicorn

    from services.callback.app import create_app
    from shared.logging import configure_logging

    configure_logging("callback")
    try:
        asgi = create_app(settings)
    except SettingsError as exc:
        raise _fail(str(exc)) from exc
    uvicorn.run(asgi, log_config=None, access_log=False, **asgi.state.uvicorn_options)  # callback/http_server.py


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def worker(ctx: typer.Context) -> None:
    """Run Celery workers; arguments pass through (`lexdesk worker -Q talkdesk -c 8`)."""
    _settings()
    from workers.app import app as celery_app

    celery_app.worker_main(["worker", *ctx.args])


@app.command()
def migrate(revision: Annotated[str, typer.Argument(help="Target revision")] = "head",
            down: Annotated[bool, typer.Option(help="Downgrade to REVISION instead")] = False) -> None:
    """Bring the database schema to a revision (Alembic)."""
    from shared.db import DatabaseUnavailable, check_database
    from shared.migrate import downgrade, upgrade

    settings = _settings()
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    try:
        check_database(settings.database_url)
    except DatabaseUnavailable as exc:
        raise _fail(str(exc)) from None
    (downgrade if down else upgrade)(settings.database_url, revision)
    typer.echo(f"database at {revision}")


@app.command("dead-letters")
def dead_letters_command(conversation: Conversation = None, error: ErrorClass = None,
                         since: Since = None, until: Until = None,
                         limit: Annotated[int, typer.Option(help="Rows to show")] = 100) -> None:
    """List dead letters (failed messages), with counts by error class."""
    from lexdesk import dead_letter_commands

    dead_letter_commands.list_command(_settings(), conversation, error, since, until, limit)


@app.command()
def replay(ids: Annotated[list[int] | None, typer.Argument(help="Dead letter ids")] = None,
           conversation: Conversation = None, error: ErrorClass = None,
           since: Since = None, until: Until = None,
           dry_run: Annotated[bool, typer.Option("--dry-run", help="Only count what would be replayed")] = False,
           ) -> None:
    """Replay dead letters by id, conversation, time range or error class."""
    from lexdesk import dead_letter_commands

    dead_letter_commands.replay_command(_settings(), ids, conversation, error, since, until, dry_run)


@app.command()
def purge(older_than: Annotated[str, typer.Option("--older-than", help="Age of the last activity: 90d, 12h, 30m")],
          dry_run: Annotated[bool, typer.Option("--dry-run", help="Only count what would be deleted")] = False,
          batch_size: Annotated[int, typer.Option(min=1, max=10000, help="Conversations per transaction")] = 200,
          ) -> None:
    """Delete closed conversations (messages and connections too) with no activity for --older-than."""
    from shared import retention
    from shared.db import DatabaseUnavailable, check_database

    try:
        age = retention.parse_age(older_than)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--older-than") from exc
    settings = _settings()
    try:
        check_database(settings.database_url)
    except DatabaseUnavailable as exc:
        raise _fail(str(exc)) from None
    cutoff = retention.cutoff_for(age)
    result = retention.purge(settings.database_url, cutoff, dry_run=dry_run, batch_size=batch_size)
    verb = "would delete" if dry_run else "deleted"
    typer.echo(f"{verb} {result.conversations} closed conversations with no activity since "
               f"{cutoff.isoformat(timespec='seconds')} ({result.messages} messages, {result.connections} connections)")


@emulate_app.command("talkdesk")
def emulate_talkdesk(
    host: str = "127.0.0.1",
    port: int = EMULATOR_TALKDESK_PORT,
    callback_url: Annotated[str | None, typer.Option(help="lexdesk's callback base URL")] = None,
    callback_api_key: Annotated[str | None, typer.Option(envvar="LEXDESK_CALLBACK_API_KEY")] = None,
    agent_join_delay: float = 2.0,
    scripted_agent: bool = True,
    state_file: Annotated[Path | None, typer.Option(
        help="SQLite file that keeps conversations, tokens and idempotency keys across restarts")] = None,
) -> None:
    """Talkdesk Digital Connect emulator with an agent console at /console."""
    from emulators.talkdesk.app import run
    from emulators.talkdesk.config import EmulatorConfig

    config = EmulatorConfig(callback_url=callback_url, callback_api_key=callback_api_key,
                            agent_join_delay=agent_join_delay, scripted_agent=scripted_agent,
                            state_file=str(state_file) if state_file else None)
    run(host=host, port=port, config=config)


@emulate_app.command("lex")
def emulate_lex(
    host: str = "127.0.0.1",
    port: int = EMULATOR_LEX_PORT,
    bots: Annotated[list[Path] | None, typer.Option(
        "--bots-dir", "--bots", help="Directory of bot definitions (repeatable); default emulators/lex/bots")] = None,
    error_rate: Annotated[float, typer.Option(min=0, max=1, help="Fraction of runtime calls answered 500/503")] = 0.0,
    throttle_rate: Annotated[float, typer.Option(min=0, max=1, help="Fraction of runtime calls answered 429")] = 0.0,
    latency: Annotated[float, typer.Option(min=0, max=60, help="Seconds added to each runtime call")] = 0.0,
    seed: Annotated[int | None, typer.Option(help="Seed of the fault dice (reproducible runs)")] = None,
) -> None:
    """Amazon Lex V2 emulator (runtime and read-only models API); faults also change at /_emulator/faults."""
    from emulators.lex.app import run
    from emulators.lex.faults import FaultSettings

    faults = FaultSettings(error_rate=error_rate, throttle_rate=throttle_rate, latency=latency)
    run(host=host, port=port, bots_dir=bots, faults=faults, seed=seed)


def tools_installed() -> bool:
    """Whether the `tools` extra is installed; looks the modules up without importing them."""
    return all(importlib.util.find_spec(name) is not None for name in TOOLS_EXTRA_MODULES)


def _register_tool(name: str) -> None:
    module, function = TOOL_COMMANDS[name]
    app.command(name)(getattr(importlib.import_module(module), function))


def main(argv: list[str] | None = None) -> None:
    # Files every lexdesk process creates (the SQLite database and its -wal/-shm, the embedded broker,
    # logs) are its user's alone: transcripts and keys live in them. Children inherit it.
    os.umask(0o077)
    args = sys.argv[1:] if argv is None else argv
    asked = args[0] if args else None
    if asked in TOOL_COMMANDS:
        if not tools_installed():
            print(f"lexdesk: `{asked}` is a test tool, not part of the product; {TOOLS_HINT}", file=sys.stderr)
            sys.exit(2)
        _register_tool(asked)
    elif asked in (None, "--help"):
        if tools_installed():
            for name in TOOL_COMMANDS:
                _register_tool(name)
        else:
            app.info.epilog = f"The test tools ({', '.join(TOOL_COMMANDS)}) are not installed: {TOOLS_HINT}."
    try:
        app(args=args, prog_name="lexdesk")
    except SettingsError as exc:
        print(f"lexdesk: {exc}", file=sys.stderr)
        sys.exit(2)
