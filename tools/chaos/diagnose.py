"""When a run misses a target, what an operator would look at while the system is still up: the
broker's queues and channels (messages ready, unacknowledged, consumers), and every worker's threads
(Celery dumps them to its log on SIGUSR1), so a stuck task shows where it is stuck."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from tools.chaos.commands import CommandError, run
from tools.chaos.rabbitmq import PrivateRabbitMQ
from tools.harness.system import System

BROKER_VIEWS = (
    ("list_queues", "name", "messages_ready", "messages_unacknowledged", "consumers"),
    ("list_channels", "connection", "number", "consumer_count", "messages_unacknowledged", "prefetch_count"),
)


def snapshot(system: System, rabbitmq: PrivateRabbitMQ, into: Path) -> Path:
    into.mkdir(parents=True, exist_ok=True)
    out = into / "diagnostics.txt"
    sections = []
    for view in BROKER_VIEWS:
        try:
            result = run(["rabbitmqctl", "-q", "-n", rabbitmq.nodename, *view], timeout=60, env=rabbitmq.env())
            sections.append(f"== rabbitmqctl {' '.join(view)}\n{result.stdout}")
        except CommandError as exc:
            sections.append(f"== rabbitmqctl {' '.join(view)} failed: {exc}")
    for name, proc in system.procs.items():
        if name.startswith("worker-") and proc.popen is not None and proc.popen.poll() is None:
            os.kill(proc.popen.pid, signal.SIGUSR1)  # Celery's "cry" handler: every thread's stack, to the log
            sections.append(f"== {name}: thread dump requested (SIGUSR1), see {proc.log_path.name}")
    time.sleep(1.0)
    out.write_text("\n".join(sections))
    return out
