"""What a fuzz run found: inputs per phase, their outcomes, the violations (each with an input that
triggers it), the bystanders' checks and the processes; as a rich table and as JSON."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.table import Table

from tools.fuzz.known import KNOWN_BUGS

EXAMPLES_PER_KIND = 3  # inputs kept per violation kind: enough to reproduce, short enough to read


@dataclass
class PhaseStats:
    name: str
    requested: int = 0
    inputs: int = 0  # generated inputs actually sent
    skipped_known: int = 0  # generated, not sent: they trigger a known bug (--skip-known-bugs)
    unsendable: int = 0  # generated, not sent: the HTTP client cannot put them on the wire
    seconds: float = 0.0
    out_of_time: bool = False
    categories: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    seconds_by_category: Counter[str] = field(default_factory=Counter)  # where the time went

    @property
    def rate(self) -> float:
        return self.inputs / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Violation:
    phase: str
    kind: str
    count: int = 0
    known: str | None = None  # key of a known bug (tools/fuzz/known.py) this is
    examples: list[dict[str, str]] = field(default_factory=list)  # {"input", "detail"}


class Violations:
    """Violations grouped by (phase, kind), a few triggering inputs kept for each."""

    def __init__(self) -> None:
        self.by_kind: dict[tuple[str, str], Violation] = {}

    def add(self, phase: str, kind: str, detail: str, shown_input: str, known: str | None = None) -> None:
        entry = self.by_kind.setdefault((phase, kind), Violation(phase, kind, known=known))
        entry.count += 1
        entry.known = entry.known or known
        if len(entry.examples) < EXAMPLES_PER_KIND:
            entry.examples.append({"input": shown_input, "detail": detail[:600]})

    def __len__(self) -> int:
        return len(self.by_kind)

    def all(self) -> list[Violation]:
        return sorted(self.by_kind.values(), key=lambda v: (v.phase, -v.count))


@dataclass
class Check:
    """One after-the-fact check (a bystander's, the processes', the logs')."""

    subject: str
    name: str
    ok: bool
    detail: str = ""


@dataclass
class FuzzReport:
    backend: str
    seed: int
    examples: int
    skip_known_bugs: bool = False
    phases: dict[str, PhaseStats] = field(default_factory=dict)
    violations: Violations = field(default_factory=Violations)
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None  # the run itself could not complete (start-up failed, ...)

    @property
    def generated(self) -> int:
        return sum(p.inputs for p in self.phases.values())

    @property
    def complete(self) -> bool:
        return not any(p.out_of_time for p in self.phases.values())

    @property
    def passed(self) -> bool:
        return (self.error is None and not len(self.violations) and all(c.ok for c in self.checks)
                and self.complete)

    def phase(self, name: str, requested: int) -> PhaseStats:
        self.phases[name] = PhaseStats(name, requested=requested)
        return self.phases[name]

    def check(self, subject: str, name: str, ok: bool, detail: str = "") -> None:
        self.checks.append(Check(subject, name, ok, detail))

    def failures(self) -> list[str]:
        """One line per reason the run failed."""
        lines = [f"{v.phase}: {v.kind} (x{v.count})" for v in self.violations.all()]
        lines += [f"{c.subject}: {c.name}: {c.detail}" for c in self.checks if not c.ok]
        lines += [f"{p.name}: time budget ran out after {p.inputs} of {p.requested} inputs"
                  for p in self.phases.values() if p.out_of_time]
        if self.error:
            lines.append(f"run: {self.error}")
        return lines

    # -- output ---------------------------------------------------------------------------------------------

    def as_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed, "backend": self.backend, "seed": self.seed, "examples": self.examples,
            "skip_known_bugs": self.skip_known_bugs, "generated_inputs": self.generated,
            "seconds": round(self.seconds, 1), "error": self.error, "notes": self.notes,
            "phases": {name: {**{k: val for k, val in asdict(p).items()
                                 if k not in ("categories", "outcomes", "seconds_by_category")},
                              "rate_per_second": round(p.rate, 1), "categories": dict(p.categories),
                              "outcomes": dict(p.outcomes.most_common()),
                              "seconds_by_category": {k: round(t, 1) for k, t in
                                                      p.seconds_by_category.most_common()}}
                       for name, p in self.phases.items()},
            "violations": [asdict(v) for v in self.violations.all()],
            "known_bugs": {key: asdict(bug) for key, bug in KNOWN_BUGS.items()},
            "checks": [asdict(c) for c in self.checks],
            "failures": self.failures(),
        }

    def write_json(self, path: Path) -> None:
        path.write_text(json.dumps(self.as_json(), indent=2, ensure_ascii=False) + "\n")

    def renderable(self) -> Group:
        phases = Table(title=f"lexdesk fuzz: backend {self.backend}, seed {self.seed}, "
                             f"{self.generated} generated inputs in {self.seconds:.0f} s")
        for column in ("phase", "inputs", "skipped (known bug)", "seconds", "inputs/s", "outcomes", "violations"):
            phases.add_column(column, overflow="fold")
        for name, p in self.phases.items():
            kinds = sum(1 for v in self.violations.all() if v.phase == name)
            outcomes = ", ".join(f"{k} {n}" for k, n in p.outcomes.most_common(8))
            phases.add_row(name, f"{p.inputs}/{p.requested}" + (" (out of time)" if p.out_of_time else ""),
                           str(p.skipped_known), f"{p.seconds:.1f}", f"{p.rate:.0f}", outcomes,
                           f"[red]{kinds}[/red]" if kinds else "[green]0[/green]")
        parts: list[Any] = [phases]
        if len(self.violations):
            table = Table(title="violations (each with an input that triggers it)")
            for column in ("phase", "kind", "count", "known bug", "input", "detail"):
                table.add_column(column, overflow="fold")
            for v in self.violations.all():
                example = v.examples[0] if v.examples else {"input": "", "detail": ""}
                table.add_row(v.phase, v.kind, str(v.count), v.known or "", example["input"][:200],
                              example["detail"][:200])
            parts.append(table)
        checks = Table(title="after the fuzz: bystanders, processes, logs")
        for column in ("subject", "check", "result", "detail"):
            checks.add_column(column, overflow="fold")
        for c in self.checks:
            checks.add_row(c.subject, c.name, "[green]ok[/green]" if c.ok else "[red]FAILED[/red]", c.detail[:300])
        parts.append(checks)
        for note in self.notes:
            parts.append(f"note: {note}")
        if self.error:
            parts.append(f"[red]run failed: {self.error}[/red]")
        parts.append("[green]PASSED[/green]" if self.passed else "[red]FAILED[/red]: " + "; ".join(self.failures()))
        return Group(*parts)

    def print(self, console: Console | None = None) -> None:
        (console or Console()).print(self.renderable())
