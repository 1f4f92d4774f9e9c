"""One conversation's whole pipeline in this process, with what it costs counted.

The tasks publish to kombu's in-memory broker; `Pipeline.run` takes each message off its queue and
runs the task it names, as a worker would, and plays the edge node for frames (it shows them and
acknowledges the highest, as the edge does). Every database COMMIT (SQLAlchemy's engine `commit`
event) and every broker publish (kombu's `Producer.publish`, which carries both Celery's task messages
and the frames for edge nodes) is counted. Counts are deterministic, unlike timings, so a test may
hold them to a number."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from kombu import Connection
from kombu.messaging import Producer
from sqlalchemy import Engine, event

NODE_ID = "cost-node"


@dataclass
class Cost:
    commits: int = 0
    publishes: int = 0
    tasks: Counter[str] = field(default_factory=Counter)
    timers_deferred: int = 0

    def __str__(self) -> str:
        return f"{self.commits} commits, {self.publishes} publishes, tasks run: {dict(self.tasks)}"


class Pipeline:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import workers.app  # every task module registered, as in a worker
        from shared.edge_bus import edge_queue

        self.app = workers.app.app
        self.cost = Cost()
        self.shown: list[dict[str, Any]] = []
        self._connection = Connection(self.app.conf.broker_url)
        channel = self._connection.default_channel
        # The memory transport routes only to declared queues: declare what the workers and a node consume.
        self._queues = [queue.bind(channel) for queue in [*self.app.conf.task_queues, edge_queue(NODE_ID)]]
        for queue in self._queues:
            queue.declare()
            queue.purge()
        original = Producer.publish

        def counting_publish(producer: Producer, *args: Any, **kwargs: Any) -> Any:
            self.cost.publishes += 1
            return original(producer, *args, **kwargs)

        monkeypatch.setattr(Producer, "publish", counting_publish)
        event.listen(Engine, "commit", self._on_commit)

    def _on_commit(self, _connection: Any) -> None:
        self.cost.commits += 1

    def close(self) -> None:
        event.remove(Engine, "commit", self._on_commit)
        self._connection.release()

    @contextmanager
    def measure(self) -> Iterator[Cost]:
        """Count from here: what the block does, and everything it sets off, run to the end."""
        self.cost = Cost()
        yield self.cost
        self.run()

    def drop_queued(self) -> None:
        """Lose what is queued, as a broker or a process that died would."""
        for queue in self._queues:
            queue.purge()

    def run(self, max_messages: int = 200) -> None:
        for _ in range(max_messages):
            message = next((m for q in self._queues if (m := q.get(no_ack=True)) is not None), None)
            if message is None:
                return
            if message.delivery_info.get("routing_key", "").startswith("edge."):
                self._edge(message.decode())
            elif message.headers.get("eta"):
                # A timer due later (the agent queue's next word, a still-waiting prompt): not part of what
                # this message costs now. Its publish is counted; tests of timers call them directly.
                self.cost.timers_deferred += 1
            else:
                self._task(message)
        raise AssertionError(f"still busy after {max_messages} messages: {self.cost}")

    def _task(self, message: Any) -> None:
        from workers.base import RetryLater

        name = message.headers["task"]
        _args, kwargs, _embed = message.decode()
        self.cost.tasks[name] += 1
        try:
            self.app.tasks[name](**kwargs)
        except RetryLater as retry:  # called directly, Celery's retry re-raises: a test must not need it
            raise AssertionError(f"{name} asked to retry: {retry}") from retry

    def _edge(self, envelope: dict[str, Any]) -> None:
        """What services/edge does with frames for a socket it holds: write them, then acknowledge the
        highest seq (the edge sends every socket's acks of an interval in one task)."""
        from shared.celery_app import send_task

        frames = [f for f in envelope["frames"] if isinstance(f.get("seq"), int)]
        self.shown.extend(frames)
        if frames:
            send_task("routing.customer_acks", acks=[[envelope["conversation_id"], max(f["seq"] for f in frames)]])
