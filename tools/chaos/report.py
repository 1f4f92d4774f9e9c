"""The outcome of a chaos run: the figures, which targets were met, the faults as they happened and the
timings; printed as rich tables and written as JSON."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from tools.chaos.faults import Injected
from tools.chaos.measure import Figures


@dataclass
class ChaosReport:
    conversations: int
    exchanges: int
    seed: int
    seconds: float
    figures: Figures
    faults: list[Injected] = field(default_factory=list)
    faults_planned: int = 0
    timings: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    logs_dir: str | None = None
    targets: dict[str, bool] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.targets:
            self.targets = targets(self.figures, self.faults, self.faults_planned)

    @property
    def passed(self) -> bool:
        return all(self.targets.values())

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2, default=str) + "\n")


def targets(f: Figures, faults: list[Injected], planned: int) -> dict[str, bool]:
    replay_ok = f.dead_lettered == 0 or (
        f.replay_available and f.replayed == f.dead_lettered and f.replayed_again == 0
        and f.replayed_not_delivered == 0 and f.replayed_duplicated == 0)
    return {
        "every planned fault injected": len(faults) == planned and all(i.error is None for i in faults),
        "every conversation completed": f.completed == f.conversations,
        "0 lost": f.lost == 0,
        "0 duplicated at Talkdesk": f.duplicated_at_talkdesk == 0,
        "0 duplicated on screen": f.duplicated_on_screen == 0,
        "0 reordered": f.reordered_on_screen == 0 and f.reordered_at_talkdesk == 0,
        "0 gaps in seq on screen": f.seq_gaps_on_screen == 0,
        "every dead letter replayed once": replay_ok,
    }


def _ok(good: bool) -> str:
    return "[green]ok[/]" if good else "[bold red]MISSED[/]"


def _warn(count: int) -> str:
    return "[yellow]look[/]" if count else ""


def render(report: ChaosReport, console: Console | None = None) -> None:
    console = console or Console()
    f = report.figures
    table = Table(title=f"lexdesk chaos: {report.conversations} conversations x {report.exchanges} agent "
                        f"exchanges, seed {report.seed}")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("target")
    rows: list[tuple[str, Any, str]] = [
        ("conversations completed", f"{f.completed}/{f.conversations}",
         _ok(report.targets["every conversation completed"])),
        ("messages sent (accepted by the edge)", f"{f.sent} ({f.sent_to_bot} to bot, {f.sent_to_agent} to agent)", ""),
        ("messages never accepted", f.never_accepted, ""),
        ("delivered", f.delivered, ""),
        ("lost (customer -> bot/agent)", f.lost_customer_messages, _ok(f.lost_customer_messages == 0)),
        ("lost (agent -> customer screen)", f.lost_agent_messages, _ok(f.lost_agent_messages == 0)),
        ("frames numbered but never shown", f.frames_never_shown, _ok(f.frames_never_shown == 0)),
        ("duplicated at Talkdesk", f.duplicated_at_talkdesk, _ok(f.duplicated_at_talkdesk == 0)),
        ("  retries absorbed by Talkdesk idempotency", f.duplicates_absorbed_by_talkdesk, ""),
        ("duplicated on screen", f.duplicated_on_screen, _ok(f.duplicated_on_screen == 0)),
        ("reordered on screen", f.reordered_on_screen, _ok(f.reordered_on_screen == 0)),
        ("reordered at Talkdesk", f.reordered_at_talkdesk, _ok(f.reordered_at_talkdesk == 0)),
        ("gaps in seq on screen", f.seq_gaps_on_screen, _ok(f.seq_gaps_on_screen == 0)),
        ("dead-lettered", f"{f.dead_lettered} {f.dead_letters_by_class or ''}", ""),
        ("replayed (first replay)", f.replayed if f.replay_available else "API missing",
         _ok(report.targets["every dead letter replayed once"])),
        ("  left alone by the first replay", f.replay_skipped or 0, ""),
        ("replayed by a second replay", f.replayed_again, _ok(f.replayed_again == 0)),
        ("replayed and delivered once", f"{f.replayed_delivered_once} (not delivered {f.replayed_not_delivered}, "
                                        f"twice {f.replayed_duplicated})", ""),
        ("handed-over transcripts wrong", f.handover_transcripts_wrong, _warn(f.handover_transcripts_wrong)),
        ("frames out of order on the wire", f"{f.out_of_order_on_wire} ({f.gap_resyncs} resumes to fill)",
         _warn(f.out_of_order_on_wire)),
        ("resent frames dropped by clients", f.resent_frames_dropped, ""),
        ("client reconnects / message resends", f"{f.reconnects} / {f.message_resends}", ""),
        ("handoffs dead-lettered (customer told)", f.handoff_failures, ""),
        ("agent messages from Talkdesk (callback failures)",
         f"{f.agent_messages_from_talkdesk} ({f.agent_callbacks_failed})", ""),
        ("Talkdesk faults injected", f.talkdesk_faults, ""),
    ]
    for name, value, status in rows:
        table.add_row(name, str(value), status)
    console.print(table)

    faults = Table(title="faults injected (seconds from the start of the load)")
    for column in ("at", "fault", "target", "recovery s", "active conversations", "error"):
        faults.add_column(column)
    for i in report.faults:
        faults.add_row(f"{i.at:.1f}", i.kind, i.target, f"{i.took:.1f}", str(i.in_flight), i.error or "")
    console.print(faults)

    timings = Table(title="timings (seconds)")
    timings.add_column("what")
    timings.add_column("value", justify="right")
    for name, value in report.timings.items():
        timings.add_row(name, str(value))
    console.print(timings)
    for note in report.notes:
        console.print(f"[yellow]note:[/] {note}")
    for line in f.details[:40]:
        console.print(f"  - {line}")
    if len(f.details) > 40:
        console.print(f"  ... {len(f.details) - 40} more in the JSON report")
    if report.logs_dir:
        console.print(f"process logs: {report.logs_dir}")
    verdict = "[bold green]all targets met[/]" if report.passed else "[bold red]targets missed: " + ", ".join(
        name for name, good in report.targets.items() if not good) + "[/]"
    console.print(verdict)
