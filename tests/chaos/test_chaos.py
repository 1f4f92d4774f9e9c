"""The chaos suite, small enough for CI: 20 conversations on real processes with a private PostgreSQL
and RabbitMQ, while each queue's worker is SIGKILLed once, RabbitMQ and PostgreSQL are restarted once, an
edge node is killed once and Talkdesk answers 30 % of calls with a 5xx. Nothing may be lost, duplicated
or reordered, and every dead letter is replayed once. The same code as `lexdesk chaos`, other numbers."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.chaos.plan import ChaosPlan
from tools.chaos.run import main

pytestmark = pytest.mark.integration


@pytest.mark.timeout(290)
def test_nothing_lost_duplicated_or_reordered_under_faults(tmp_path: Path) -> None:
    report = main(plan=ChaosPlan.small(), report_path=tmp_path / "chaos.json")
    figures = report.figures

    # The run really was chaotic: every fault happened, under load, and Talkdesk failed calls.
    assert {i.kind for i in report.faults} == {"worker_kill", "rabbitmq_restart", "postgres_restart", "edge_kill"}
    assert {i.target for i in report.faults if i.kind == "worker_kill"} == {
        "worker-routing", "worker-lex", "worker-talkdesk", "worker-timers"}
    assert all(i.error is None for i in report.faults), report.faults
    assert all(i.in_flight > 0 for i in report.faults), report.faults
    assert figures.talkdesk_faults.get("error_500", 0) + figures.talkdesk_faults.get("error_503", 0) > 0

    assert figures.completed == figures.conversations, report.notes
    assert figures.sent > 0 and figures.delivered == figures.sent  # dead letters included, once replayed
    assert figures.lost == 0, figures.details
    assert figures.duplicated_at_talkdesk == 0, figures.details
    assert figures.duplicated_on_screen == 0, figures.details
    assert figures.reordered_on_screen == 0 and figures.reordered_at_talkdesk == 0, figures.details
    assert figures.seq_gaps_on_screen == 0, figures.details
    assert figures.replayed == figures.dead_lettered and figures.replayed_again == 0, figures.details
    assert figures.replayed_not_delivered == 0 and figures.replayed_duplicated == 0, figures.details
    assert report.passed, report.targets
