"""What a chaos run does: the load, the faults and their schedule, and the bounds. Pure data, so the
full run (`lexdesk chaos`) and the smaller CI run are the same code with different numbers."""

from __future__ import annotations

from dataclasses import dataclass, field

# The Talkdesk emulator's knobs while faults are on (PUT /_emulator/faults); all zero when off.
TALKDESK_FAULTS = {"error_rate": 0.3, "rate_limit_rate": 0.05, "retry_after": 1, "stall_rate": 0.05,
                   "stall_seconds": 2}
TALKDESK_NO_FAULTS = {"error_rate": 0.0, "rate_limit_rate": 0.0, "stall_rate": 0.0, "latency": 0.0}


@dataclass(frozen=True)
class FaultPlan:
    """When each fault happens, in seconds from the start of the load. One thread injects them in order,
    so a restart never overlaps another (a worker cannot start while the broker is down, say)."""

    window: float = 150.0
    """Faults are injected during the first `window` seconds of the load, then turned off."""
    worker_kill_every: tuple[float, float] = (5.0, 10.0)
    """SIGKILL and restart one worker every so many seconds (uniform), cycling through the queues."""
    worker_kills: int | None = None
    """Stop after this many worker kills (None: until the window ends)."""
    rabbitmq_restart_at: float | None = 0.3
    postgres_restart_at: float | None = 0.55
    edge_kill_at: float | None = 0.75
    """Fractions of `window` for the one-off faults; None leaves that fault out."""
    edge_down_seconds: float = 3.0
    talkdesk: dict[str, float] = field(default_factory=lambda: dict(TALKDESK_FAULTS))


@dataclass(frozen=True)
class ChaosPlan:
    conversations: int = 200
    exchanges: int = 3
    """Agent exchanges per conversation ("msg <conv>-<k>", echoed by the scripted agent)."""
    concurrency: int = 50
    """Conversations driven at once (a semaphore; the rest wait their turn)."""
    arrivals: float = 0.85
    """Conversations start evenly spread over this fraction of the fault window (jittered), so that every
    fault, early or late, hits conversations in every phase; 0 starts them all at once."""
    think: tuple[float, float] = (0.2, 1.0)
    """Seconds a customer takes to type each message (uniform)."""
    seconds: float = 600.0
    """Bound on load plus settling; what has not finished by then is reported unfinished."""
    seed: int = 1
    faults: FaultPlan = field(default_factory=FaultPlan)
    edge_nodes: int = 2
    quiet_seconds: float = 10.0
    """After the faults, the system counts as settled when nothing new reached a screen for this long."""
    step_timeout: float = 90.0
    """How long a journey waits for one expected frame (bot answer, agent join) before giving up."""
    echo_timeout: float = 30.0
    """How long a journey waits for an agent echo before sending its next message anyway."""
    extra_env: dict[str, str] = field(default_factory=lambda: {
        # A killed worker's drain lease blocks its conversation until it expires; the default two
        # minutes would make a bounded run mostly waiting. Shorter leases also exercise takeover.
        "LEXDESK_LEASE_SECONDS": "20",
        # Fewer attempts than the default 6, so that 30 % of 5xx really produces dead letters to replay.
        "LEXDESK_MAX_ATTEMPTS": "4",
    })
    ask_again_after_failed_handoff: bool = False
    """False: a customer whose handoff was dead-lettered waits for the operator to replay it (so replay
    of a handoff is exercised). True: the customer asks for an agent again, as the product suggests;
    the failed handoff then stays a dead letter that replay skips once the conversation has closed."""
    keep_logs: bool = False
    """Keep the processes' logs even when every target is met (they are always kept otherwise)."""

    @classmethod
    def small(cls, seed: int = 1) -> ChaosPlan:
        """The CI run: every kind of fault once, on 20 conversations, in well under four minutes."""
        return cls(
            conversations=20, exchanges=2, concurrency=20, seconds=150.0, seed=seed,
            faults=FaultPlan(window=50.0, worker_kill_every=(4.0, 8.0), worker_kills=4,
                             rabbitmq_restart_at=0.25, postgres_restart_at=0.5, edge_kill_at=0.7,
                             talkdesk={"error_rate": 0.3}),
            quiet_seconds=6.0, step_timeout=75.0, echo_timeout=25.0,
            extra_env={"LEXDESK_LEASE_SECONDS": "15", "LEXDESK_MAX_ATTEMPTS": "3"},
        )
