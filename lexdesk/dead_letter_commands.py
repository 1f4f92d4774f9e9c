"""`lexdesk dead-letters` and `lexdesk replay`: the operator's view of what could not be delivered,
and putting it back in its conversation's stream."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from shared import dead_letters
from shared.db import session_scope
from shared.settings import Settings

console = Console()



def _filter(ids: list[int] | None, conversation: str | None, error: str | None, since: str | None,
            until: str | None) -> dead_letters.DeadLetterFilter:
    try:
        return dead_letters.DeadLetterFilter(ids=ids or None, conversation_id=conversation, error_class=error,
                                             since=dead_letters.parse_time(since, "--since"),
                                             until=dead_letters.parse_time(until, "--until"))
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


def list_command(settings: Settings, conversation: str | None, error: str | None, since: str | None,
                 until: str | None, limit: int) -> None:
    flt = _filter(None, conversation, error, since, until)
    with session_scope(settings.database_url) as session:
        found = dead_letters.list_dead_letters(session, flt, limit=limit)
    table = Table(title=f"Dead letters ({found['total']})")
    for column in ("id", "conversation", "seq", "to", "error class", "attempts", "created", "last error"):
        table.add_column(column, overflow="fold")
    for row in found["dead_letters"]:
        table.add_row(str(row["id"]), row["conversation_id"], str(row["seq"]), row["destination"],
                      row["error_class"] or "", str(row["attempts"]), row["created_at"][:19],
                      (row["last_error"] or "")[:80])
    console.print(table)
    counts = Table(title="By error class")
    counts.add_column("error class")
    counts.add_column("count", justify="right")
    for error_class, count in sorted(found["counts"].items()):
        counts.add_row(error_class, str(count))
    console.print(counts)


def replay_command(settings: Settings, ids: list[int] | None, conversation: str | None, error: str | None,
                   since: str | None, until: str | None, dry_run: bool) -> dead_letters.ReplaySummary:
    flt = _filter(ids, conversation, error, since, until)
    with session_scope(settings.database_url) as session:
        matched = dead_letters.matching_ids(session, flt)
    summary = dead_letters.ReplaySummary(matched=len(matched))
    if dry_run:
        console.print(f"dry run: {len(matched)} dead letter(s) would be replayed: {matched[:50]}")
        return summary
    columns = (TextColumn("replaying"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("replay", total=len(matched))
        for message_id in matched:
            summary.add(message_id, dead_letters.replay_one(settings, message_id))
            progress.advance(task)
    console.print(f"matched {summary.matched}, replayed {summary.replayed}, skipped {summary.skipped}"
                  + (f" {summary.skipped_ids}" if summary.skipped_ids else ""))
    return summary
