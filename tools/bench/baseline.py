"""The floor lexdesk is measured against: a bare Celery chain on the run's broker, with lexdesk's settings
and the hop count of an agent round trip, and nothing else (no database, no HTTP, no WebSocket).

One task, `bench.chain.hop`, on four queues, each served by its own worker process started the way the
harness starts lexdesk's (`celery -A tools.bench.baseline worker -Q <queue> --pool threads --concurrency
4`). A round trip is the driver publishing a hop to queue a, whose task publishes one to b, then c, then d;
the task on d publishes the reply to the driver's reply queue. That is 4 task hops and a reply, the shape
the issue measured (130/s, p50 121 ms at 16 in flight). The settings that matter are lexdesk's
(shared/celery_app.py): late acks, reject on worker lost, prefetch 1 on AMQP (4 on the embedded
transport, as lexdesk), JSON, publisher confirms on AMQP, durable queues and persistent task messages;
the reply goes the way lexdesk's frames go to an edge node (shared/edge_bus.py: default exchange, a
non-durable queue with an expiry, a producer from the pool, consumed in one thread with prefetch 200).

The driver is closed loop: `in_flight` slots each send the next round trip when their reply arrives, for
`seconds`; then it waits (bounded) for the replies still in flight. Workers read their broker URL and
queue names from the environment (BENCH_CHAIN_*; never LEXDESK_*, which lexdesk's settings would refuse).

`python -m tools.bench.baseline --broker-url amqp://... --in-flight 16 --seconds 20` runs it on its own.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from celery import Celery
from kombu import Connection, Consumer, Exchange, Queue

from shared import embedded_broker
from shared.celery_app import delivery_settings
from tools.bench import infra

if TYPE_CHECKING:
    from tools.bench.report import ChainReport

BROKER_ENV, QUEUES_ENV = "BENCH_CHAIN_BROKER_URL", "BENCH_CHAIN_QUEUES"
HOP_TASK = "bench.chain.hop"
HOPS = ("a", "b", "c", "d")
WORKER_CONCURRENCY = 4  # what tools/harness/system.py gives each of lexdesk's workers
DEFAULT_EXCHANGE = Exchange("", type="direct")
REPLY_EXPIRES_SECONDS = 120
WARMUP_ROUNDS = 1  # round trips per slot before the measured window: the first ones open pools
DRAIN_SECONDS = 30.0  # after the window, the longest the driver waits for replies still in flight
START_TIMEOUT = 60.0  # per worker process
MAX_ERRORS_KEPT = 20

Log = Callable[[str], None]


def uses_amqp(broker_url: str) -> bool:
    return broker_url.startswith(("amqp", "pyamqp"))


def build_app(broker_url: str, queues: Sequence[str]) -> Celery:
    """The chain's Celery app with the settings of shared/celery_app.py that bear on a hop's cost."""
    embedded_broker.install()  # sqla+ URLs: lexdesk's embedded transport (50 ms polling, WAL)
    app = Celery("bench-chain", broker=broker_url, set_as_current=False)
    app.conf.update(
        task_queues=[Queue(q, routing_key=q, durable=True) for q in queues if q],
        **delivery_settings(uses_amqp(broker_url)),
    )
    return app


# The workers' app (`celery -A tools.bench.baseline worker`); the driver builds its own with build_app.
app = build_app(os.environ.get(BROKER_ENV, "memory://"), os.environ.get(QUEUES_ENV, "").split(","))


@app.task(name=HOP_TASK)
def hop(route: list[str], reply_to: str, token: str) -> None:
    """Pass the round trip on to the next queue of `route`, or, at the end of it, reply."""
    if route:
        app.send_task(HOP_TASK, args=(route[1:], reply_to, token), queue=route[0])
        return
    with app.producer_pool.acquire(block=True) as producer:
        producer.publish({"token": token}, exchange=DEFAULT_EXCHANGE, routing_key=reply_to, serializer="json",
                         retry=True, retry_policy={"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5})


# -- the driver -----------------------------------------------------------------------------------------


@dataclass
class _Loop:
    """The closed loop's state; touched only by the driver's one thread."""

    window_end: float = 0.0  # perf_counter; no slot starts a round trip after it
    measuring: bool = False
    sent_at: dict[str, float] = field(default_factory=dict)  # token → perf_counter at send
    latencies: list[float] = field(default_factory=list)
    sent: int = 0
    first_send: float | None = None
    last_answer: float | None = None
    errors: list[str] = field(default_factory=list)
    error_count: int = 0
    unexpected: int = 0  # replies to no round trip of ours (must be 0)
    window: float = 0.0  # seconds from the window's start to its last reply (or the drain bound)
    cpu: float | None = None  # CPU seconds of the worker processes over the window
    machine_busy: float | None = None
    loadavg: float | None = None

    def error(self, message: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_ERRORS_KEPT:
            self.errors.append(message)


def run_chain(broker_url: str, workdir: Path, *, in_flight: int = 16, seconds: float = 20.0,
              concurrency: int = WORKER_CONCURRENCY, log: Log | None = None) -> ChainReport:
    """Start the chain's four workers on `broker_url`, drive it closed loop with `in_flight` round trips
    for `seconds`, stop the workers, delete the queues; return what it measured."""
    from tools.bench.report import ChainReport, RoundTrips
    from tools.bench.stats import Latency

    if in_flight < 1 or seconds <= 0 or concurrency < 1:
        raise ValueError("in_flight and concurrency must be >= 1, seconds > 0")
    say: Log = log or (lambda _line: None)
    suffix = secrets.token_hex(4)
    queues = [f"bench-chain-{suffix}.{name}" for name in HOPS]
    reply_queue = Queue(f"bench-chain-{suffix}.reply", DEFAULT_EXCHANGE, routing_key=f"bench-chain-{suffix}.reply",
                        durable=False, auto_delete=False, expires=REPLY_EXPIRES_SECONDS)
    driver = build_app(broker_url, queues)
    loop = _Loop()
    try:
        with driver.connection_for_read() as connection:
            channel = connection.channel()
            reply_queue.bind(channel).declare()
            try:
                _drive(driver, connection, channel, queues, reply_queue, loop, workdir, in_flight, seconds,
                       concurrency, say)
            finally:
                # After the workers are gone: deleting a queue under its consumer makes Celery redeclare it.
                _delete_queues(channel, [*queues, reply_queue.name])
    except Exception as exc:  # a broken chain is a result to show, not a reason to lose the lexdesk figures
        loop.error(f"chain failed: {exc!r}")
    wall = (loop.last_answer - loop.first_send) if loop.first_send is not None and loop.last_answer else 0.0
    answered = len(loop.latencies)
    cpu, window = loop.cpu, loop.window
    if loop.unexpected:
        loop.error(f"{loop.unexpected} replies matched no round trip")
    return ChainReport(
        hops=len(HOPS), in_flight=in_flight, seconds=seconds, broker=_describe(broker_url),
        worker_concurrency=concurrency,
        trips=RoundTrips(expected=loop.sent, sent=loop.sent, answered=answered, latency=Latency.of(loop.latencies),
                         wall_seconds=round(wall, 3), per_second=round(answered / wall, 2) if wall > 0 else 0.0),
        cpu_ms_per_trip=round(1000 * cpu / answered, 2) if answered and cpu is not None else None,
        cpu_percent=round(100 * cpu / window, 1) if window > 0 and cpu is not None else None,
        machine_busy_percent=loop.machine_busy, loadavg_after=loop.loadavg,
        error_count=loop.error_count, errors=loop.errors)


def _drive(driver: Celery, connection: Connection, channel: Any, queues: Sequence[str], reply_queue: Queue,
           loop: _Loop, workdir: Path, in_flight: int, seconds: float, concurrency: int, say: Log) -> None:
    """Start the workers, warm up, run the measured window; the results go into `loop`."""
    with _workers(driver.conf.broker_url, queues, workdir, concurrency, say) as pids:

        def send(slot: int) -> None:
            token = f"{slot}:{secrets.token_hex(6)}"
            at = time.perf_counter()
            loop.sent_at[token] = at
            if loop.measuring:
                loop.sent += 1
                loop.first_send = at if loop.first_send is None else loop.first_send
            driver.send_task(HOP_TASK, args=(queues[1:], reply_queue.name, token), queue=queues[0])

        def received(body: dict[str, Any], message: Any) -> None:
            at = time.perf_counter()
            message.ack()
            token = str(body.get("token", ""))
            started = loop.sent_at.pop(token, None)
            if started is None:
                loop.unexpected += 1
                return
            if not loop.measuring:
                return  # a warm-up round trip
            loop.latencies.append(at - started)
            loop.last_answer = at
            if at < loop.window_end:
                send(int(token.split(":", 1)[0]))

        with Consumer(channel, queues=[reply_queue], callbacks=[received], accept=["json"],
                      prefetch_count=200):
            say(f"chain: warm-up, {in_flight} x {WARMUP_ROUNDS} round trips")
            for _round in range(WARMUP_ROUNDS):
                for slot in range(in_flight):
                    send(slot)
                _drain_until(connection, lambda: not loop.sent_at, time.perf_counter() + DRAIN_SECONDS)
            if loop.sent_at:
                loop.error(f"warm-up: {len(loop.sent_at)} round trips unanswered after {DRAIN_SECONDS:g}s")
                loop.sent_at.clear()
            say(f"chain: {in_flight} in flight for {seconds:g}s")
            cpu_before, machine_before = _cpu(pids), infra.machine_cpu()
            started = time.perf_counter()
            loop.window_end, loop.measuring = started + seconds, True
            for slot in range(in_flight):
                send(slot)
            _drain_until(connection, lambda: not loop.sent_at, loop.window_end + DRAIN_SECONDS)
            loop.window = time.perf_counter() - started
            cpu_after = _cpu(pids)
            loop.cpu = sum(cpu_after[pid] - cpu_before.get(pid, 0.0) for pid in cpu_after)
            loop.machine_busy = infra.busy_percent(machine_before, infra.machine_cpu())
            loop.loadavg = round(os.getloadavg()[0], 2)
            if loop.sent_at:
                loop.error(f"{len(loop.sent_at)} round trips unanswered {DRAIN_SECONDS:g}s after the window")


def _drain_until(connection: Connection, done: Callable[[], bool], deadline: float) -> None:
    while not done():
        left = deadline - time.perf_counter()
        if left <= 0:
            return
        with contextlib.suppress(TimeoutError, OSError):
            connection.drain_events(timeout=min(0.5, left))


def _cpu(leaders: Sequence[int]) -> dict[int, float]:
    """CPU seconds so far of the workers' processes (their groups: what each one forked too)."""
    return infra.cpu_by_pid(pid for leader in leaders for pid, _comm in infra.process_group(leader))


def _delete_queues(channel: Any, names: Sequence[str]) -> None:
    for name in names:
        with contextlib.suppress(Exception):
            channel.queue_delete(name)


def _describe(broker_url: str) -> str:
    """The transport and where, without credentials."""
    scheme, _, rest = broker_url.partition("://")
    return f"{scheme}://{rest.rpartition('@')[2]}"


@contextlib.contextmanager
def _workers(broker_url: str, queues: Sequence[str], workdir: Path, concurrency: int, say: Log) -> Iterator[list[int]]:
    """One worker process per queue, started at once; yields their pids; stops them all on exit."""
    from tools.harness.system import Proc

    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("LEXDESK_", "BENCH_CHAIN_"))},
           BROKER_ENV: broker_url, QUEUES_ENV: ",".join(queues)}
    logs = workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    procs = [Proc(f"chain-{name}", [sys.executable, "-m", "celery", "-A", "tools.bench.baseline", "worker",
                                    "-Q", queue, "--pool", "threads", "--concurrency", str(concurrency),
                                    "--hostname", f"chain-{name}-{os.getpid()}@%h", "--loglevel", "INFO"],
                  env, logs / f"chain-{name}.log", "log:ready.")
             for name, queue in zip(HOPS, queues, strict=True)]
    say(f"chain: starting {len(procs)} workers ({', '.join(queues)})")
    try:
        with ThreadPoolExecutor(len(procs)) as pool:
            for future in [pool.submit(proc.start, START_TIMEOUT) for proc in procs]:
                future.result()
        yield [proc.popen.pid for proc in procs if proc.popen is not None]
    finally:
        with ThreadPoolExecutor(len(procs)) as pool:
            list(pool.map(lambda proc: proc.stop(timeout=10.0), procs))


def main(argv: Sequence[str] | None = None) -> None:
    import argparse
    import json
    import tempfile

    parser = argparse.ArgumentParser(description="The bare Celery chain lexdesk bench compares against")
    parser.add_argument("--broker-url", required=True)
    parser.add_argument("--in-flight", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=WORKER_CONCURRENCY)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="lexdesk-chain-") as tmp:
        report = run_chain(args.broker_url, Path(tmp), in_flight=args.in_flight, seconds=args.seconds,
                           concurrency=args.concurrency, log=lambda line: print(line, file=sys.stderr))
    import dataclasses

    print(json.dumps(dataclasses.asdict(report), indent=2))


if __name__ == "__main__":
    main()
