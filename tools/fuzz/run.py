"""`lexdesk fuzz`: start the system, bring bystanders to an agent, throw generated bad input at both
edges (WebSocket frames, callback requests, Schemathesis cases from the OpenAPI schema), then check
that nothing crashed, nothing answered 5xx, and the bystanders were not touched."""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from hypothesis.errors import HypothesisWarning
from rich.console import Console

from tools.fuzz.api_schema import SchemaFuzzer, SchemaTargets, case_strategy, load_schema
from tools.fuzz.callbacks import CallbackFuzzer, Targets, callback_inputs
from tools.fuzz.conversations import LoopThread, Parties
from tools.fuzz.frames import FrameFuzzer, frame_inputs
from tools.fuzz.known import DEEP
from tools.fuzz.observe import LogWatch, dead_letter_queue_depth, dead_processes
from tools.fuzz.report import FuzzReport, PhaseStats, Violations
from tools.harness.backends import backend as make_backend
from tools.harness.system import System

T = TypeVar("T")
# How `examples` is shared out: frames are the cheapest and the edge has the most to get wrong.
SHARES = {"frames": 0.5, "callbacks": 0.35, "schemathesis": 0.15}
VERIFY_RESERVE = 60.0  # at most this many seconds (and a fifth of the budget) kept back for the checks after
SETTLE_SECONDS = 3.0  # let the last deliveries and a sweep (every 2 s in the harness) run before checking
SAFE_DEPTH = 500  # nesting generated when the known deep-JSON bugs are skipped


class OutOfTime(Exception):
    """Raised inside a Hypothesis run to end it when its time budget is spent."""


def split(examples: int) -> dict[str, int]:
    frames = round(examples * SHARES["frames"])
    callbacks = round(examples * SHARES["callbacks"])
    return {"frames": frames, "callbacks": callbacks, "schemathesis": max(0, examples - frames - callbacks)}


def drive(name: str, strategy: st.SearchStrategy[T], count: int, seed: int, deadline: float, stats: PhaseStats,
          violations: Violations, one: Callable[[T], None], progress: Callable[[str], None] | None = None) -> None:
    """Run `one` on `count` inputs Hypothesis draws from `strategy`. Nothing it finds is raised (the
    run goes on and every violation is counted); a failure of the fuzzer itself is recorded too."""
    if count <= 0:
        return
    started = time.monotonic()
    step = max(1, count // 10)

    @settings(max_examples=count, database=None, deadline=None, derandomize=False, verbosity=Verbosity.quiet,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck),
              report_multiple_bugs=False)
    @hypothesis_seed(seed)
    @given(strategy)
    def run(item: T) -> None:
        before = time.monotonic()
        if before > deadline:
            raise OutOfTime
        try:
            one(item)
        except Exception as exc:  # the fuzzer's own trouble: record it and keep going
            violations.add(name, f"fuzzer error: {type(exc).__name__}", traceback.format_exc()[-1500:],
                           repr(item)[:300])
        stats.seconds_by_category[_category(item)] += time.monotonic() - before
        done = stats.inputs + stats.skipped_known + stats.unsendable
        if progress and done % step == 0:
            progress(f"{name}: {done}/{count} ({time.monotonic() - started:.0f} s)")

    try:
        with warnings.catch_warnings():
            # Hypothesis warns about reprs of large inputs (we build 150 KB frames on purpose) and about
            # the `random` module, which threads of websockets and kombu use while it generates.
            warnings.simplefilter("ignore", HypothesisWarning)
            run()
    except OutOfTime:
        stats.out_of_time = True
    finally:
        stats.seconds = time.monotonic() - started


def _category(item: Any) -> str:
    if isinstance(item, tuple):  # (Schemathesis case, right credentials?)
        return str(item[0].operation.label)
    return str(getattr(item, "category", type(item).__name__))


def fuzz_system(system: System, *, frames: int, callbacks: int, schema_cases: int, seed: int = 0,
                backend: str = "embedded", seconds: float = 600.0, skip_known_bugs: bool = False,
                replay: bool = True, bystanders: int = 2, report: FuzzReport | None = None,
                progress: Callable[[str], None] | None = None) -> FuzzReport:
    """Fuzz a running system; `replay=False` keeps Schemathesis' dead-letter replays dry (a shared
    system whose other users' dead letters must stay put)."""
    started = time.monotonic()
    report = report or FuzzReport(backend, seed, frames + callbacks + schema_cases, skip_known_bugs)
    counts = {"frames": frames, "callbacks": callbacks, "schemathesis": schema_cases}
    end_of_fuzz = started + max(10.0, seconds - min(VERIFY_RESERVE, seconds / 5))
    max_depth = SAFE_DEPTH if skip_known_bugs else max(DEEP * 6, 5_000)
    loop = LoopThread()
    parties = Parties(system, loop)
    try:
        parties.setup(bystanders)
        say = progress or (lambda _: None)
        say(f"{len(parties.bystanders)} bystanders and {len(parties.sacrificial)} sacrificial conversations "
            "are talking to an agent")
        watch = LogWatch(system)
        watch.start()
        dead_letters_before = dead_letter_queue_depth(system.env["LEXDESK_BROKER_URL"])

        def deadline(name: str) -> float:
            """This phase's share of what is left of the time, by its share of what is left to send."""
            order = list(counts)
            left = sum(counts[n] for n in order[order.index(name):]) or 1
            return time.monotonic() + (end_of_fuzz - time.monotonic()) * counts[name] / left

        stats = report.phase("frames", frames)
        frame_fuzzer = FrameFuzzer(system.edge_urls, [p.resume_token for p in parties.bystanders], backend, stats,
                                   report.violations, skip_known_bugs)
        try:
            drive("frames", frame_inputs(max_depth), frames, seed, deadline("frames"), stats, report.violations,
                  frame_fuzzer.run_one, say)
        finally:
            frame_fuzzer.close()

        stats = report.phase("callbacks", callbacks)
        targets = Targets([p.talkdesk_id for p in parties.bystanders], parties.sacrificial[0].talkdesk_id,
                          parties.sacrificial[1].talkdesk_id)
        callback_fuzzer = CallbackFuzzer(system.http_url, system.api_key, targets, backend, stats,
                                         report.violations, skip_known_bugs)
        try:
            drive("callbacks", callback_inputs(max_depth), callbacks, seed, deadline("callbacks"), stats,
                  report.violations, callback_fuzzer.run_one, say)
        finally:
            callback_fuzzer.close()

        stats = report.phase("schemathesis", schema_cases)
        if schema_cases > 0:
            schema = load_schema(system.http_url, system.admin_token)
            schema_targets = SchemaTargets(parties.sacrificial[0].talkdesk_id, parties.sacrificial[1].talkdesk_id,
                                           [p.conversation_id for p in parties.bystanders])
            schema_fuzzer = SchemaFuzzer(system.http_url, system.api_key, system.admin_token, backend, stats,
                                         report.violations, skip_known_bugs, replay)

            def one_case(drawn: tuple[Any, bool]) -> None:
                schema_fuzzer.run_one(*drawn)

            drive("schemathesis", case_strategy(schema, schema_targets), schema_cases, seed, deadline("schemathesis"),
                  stats, report.violations, one_case, say)

        time.sleep(SETTLE_SECONDS)
        parties.verify(report)
        _check_system(report, system, watch, dead_letters_before)
        _note_fuzz_dead_letters(report, system, parties)
    finally:
        try:
            parties.disconnect()
        finally:
            loop.close()
        report.seconds = time.monotonic() - started
    return report


def _check_system(report: FuzzReport, system: System, watch: LogWatch, dead_letters_before: int | None) -> None:
    dead = dead_processes(system)
    report.check("processes", f"all {len(system.procs)} still running", not dead, ", ".join(dead))
    errors, examples = watch.errors()
    report.check("logs", "no error logged by any process during the fuzz", not errors,
                 "; ".join(f"{key} x{n}" for key, n in errors.most_common(8)))
    for key, line in examples.items():
        report.notes.append(f"logged error {key} x{errors[key]}: {line[:400]}")
    after = dead_letter_queue_depth(system.env["LEXDESK_BROKER_URL"])
    if after is not None and dead_letters_before is not None:
        report.check("broker", "no task message dead-lettered in RabbitMQ", after == dead_letters_before,
                     f"{after - dead_letters_before} new in {'lexdesk.dead-letters'}")


def _note_fuzz_dead_letters(report: FuzzReport, system: System, parties: Parties) -> None:
    """Dead letters of the fuzzer's own conversations are not failures (Lex refuses a blank text or one
    over 1024 characters, which the edge accepts) but worth knowing."""
    with system.admin() as admin:
        listed = admin.get("/api/dead-letters", params={"limit": 1000}).json()
    bystanders = {p.conversation_id for p in parties.bystanders}
    reasons: Counter[str] = Counter()
    for dead in listed.get("dead_letters", []):
        if dead.get("conversation_id") not in bystanders:
            error = str(dead.get("last_error", "")).split("constraint:")[-1].strip()[:90]
            reasons[f"{dead.get('destination')}/{dead.get('error_class')}: {error}"] += 1
    if reasons:
        report.notes.append("dead letters in the fuzzer's own conversations (input the edge accepts but Lex or "
                            "Talkdesk refuses): " + "; ".join(f"{k} x{n}" for k, n in reasons.most_common()))


def main(examples: int = 10_000, seed: int = 0, backend: str = "embedded", *, seconds: float = 600.0,
         skip_known_bugs: bool = False, json_path: Path | None = None, console: Console | None = None) -> FuzzReport:
    """Start the whole system on `backend` (embedded: SQLite and the embedded broker; postgres: a
    fresh database and RabbitMQ vhost), fuzz it with `examples` generated inputs within `seconds`,
    print the report and return it."""
    # Not a terminal (CI, a pipe): a wide console, so that the tables stay readable in a log.
    console = console or (Console() if sys.stdout.isatty() else Console(width=180))
    report = FuzzReport(backend, seed, examples, skip_known_bugs)
    shares = split(examples)
    workdir = Path(tempfile.mkdtemp(prefix="lexdesk-fuzz-"))
    started = time.monotonic()
    try:
        with make_backend(backend, workdir, label="fuzz") as infra:
            console.log(f"starting lexdesk ({backend}) in {workdir}")
            with System(workdir, infra.database_url, infra.broker_url, edge_nodes=2,
                        worker_queues=infra.worker_queues) as system:
                fuzz_system(system, frames=shares["frames"], callbacks=shares["callbacks"],
                            schema_cases=shares["schemathesis"], seed=seed, backend=backend,
                            seconds=seconds - (time.monotonic() - started), skip_known_bugs=skip_known_bugs,
                            report=report, progress=console.log)
    except Exception as exc:  # start-up or set-up failed: a report that says so beats a traceback
        report.error = f"{type(exc).__name__}: {exc}"[:1000]
    report.seconds = time.monotonic() - started
    if report.passed:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        report.notes.append(f"process logs kept in {workdir / 'logs'}")
    report.print(console)
    if json_path is not None:
        report.write_json(json_path)
    return report
