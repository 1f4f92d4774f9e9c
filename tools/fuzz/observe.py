"""What the system itself says about the fuzz: errors its processes logged meanwhile, whether they are
all still running, and what reached RabbitMQ's dead-letter queue (task messages a worker rejected)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from tools.harness.system import System

DEAD_LETTER_QUEUE = "lexdesk.dead-letters"  # shared/celery_app.py DEAD_LETTER_QUEUE


class LogWatch:
    """Error and critical lines the processes log after `start()`, grouped by process and event."""

    def __init__(self, system: System) -> None:
        self.system = system
        self.offsets: dict[str, int] = {}

    def start(self) -> None:
        self.offsets = {name: _size(proc.log_path) for name, proc in self.system.procs.items()}

    def errors(self) -> tuple[Counter[str], dict[str, str]]:
        """(count per "process: event", one full line per key)."""
        counts: Counter[str] = Counter()
        examples: dict[str, str] = {}
        for name, proc in self.system.procs.items():
            if not proc.log_path.exists():
                continue
            with proc.log_path.open("rb") as log:
                log.seek(self.offsets.get(name, 0))
                for raw in log:
                    line = raw.decode("utf-8", "replace")
                    try:
                        entry = json.loads(line)
                    except ValueError:
                        continue  # Celery's banner and warnings are not JSON
                    if not isinstance(entry, dict) or entry.get("level") not in ("error", "critical"):
                        continue
                    event = str(entry.get("event", "")).strip().splitlines()[0][:120]
                    exc = entry.get("exc_info")
                    kind = exc[0] if isinstance(exc, list) and exc else entry.get("error", "")
                    key = f"{name}: {event}" + (f" [{str(kind)[:100]}]" if kind else "")
                    counts[key] += 1
                    examples.setdefault(key, line.strip()[:800])
        return counts, examples


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def dead_processes(system: System) -> list[str]:
    """Names of the system's processes that are no longer running, with their exit codes."""
    return [f"{name} (exit {proc.popen.returncode if proc.popen else 'never started'})"
            for name, proc in system.procs.items() if proc.popen is None or proc.popen.poll() is not None]


def dead_letter_queue_depth(broker_url: str) -> int | None:
    """Messages in RabbitMQ's dead-letter queue; None on the embedded broker, which has none."""
    if not broker_url.startswith("amqp"):
        return None
    from kombu import Connection

    with Connection(broker_url, connect_timeout=5) as connection:
        channel = connection.channel()
        try:
            _, count, _ = channel.queue_declare(queue=DEAD_LETTER_QUEUE, passive=True)
        except Exception:  # not declared yet: nothing was ever dead-lettered
            return 0
        return int(count)
