"""What the far ends saw, fetched once the run has settled: every conversation the Talkdesk emulator
received (customer messages with their idempotency keys, the handed-over transcript, the agent messages it
delivered), lexdesk's own transcripts (operator API), and the dead-letter rows in the database, as a
cross-check of the operator API."""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import create_engine, text

from tools.harness.system import System


@dataclass
class Observed:
    talkdesk: list[dict[str, Any]] = field(default_factory=list)  # full emulator records
    talkdesk_stats: dict[str, Any] = field(default_factory=dict)
    transcripts: dict[str, dict[str, Any]] = field(default_factory=dict)  # our conversation id -> API body
    failed_rows: list[dict[str, Any]] = field(default_factory=list)  # messages.status = failed, from the DB
    replayed_rows: list[dict[str, Any]] = field(default_factory=list)  # messages.replayed, from the DB

    def talkdesk_by_email(self) -> dict[str, list[dict[str, Any]]]:
        """Talkdesk conversations per customer email, oldest first (a failed handoff can make two)."""
        grouped: dict[str, list[dict[str, Any]]] = {}
        for record in sorted(self.talkdesk, key=lambda r: r.get("created_at") or ""):
            email = ((record.get("request") or {}).get("contact_person") or {}).get("email")
            grouped.setdefault(str(email), []).append(record)
        return grouped


def observe(system: System, conversation_ids: Iterable[str]) -> Observed:
    observed = Observed()
    with system.talkdesk() as talkdesk:
        summaries = talkdesk.get("/_emulator/conversations").raise_for_status().json()
        observed.talkdesk_stats = talkdesk.get("/_emulator/stats").raise_for_status().json()
    ids = [s["id"] for s in summaries]
    with ThreadPoolExecutor(max_workers=8) as pool:
        observed.talkdesk = list(pool.map(lambda i: _get(system.talkdesk_url, f"/_emulator/conversations/{i}"), ids))
        wanted = [c for c in conversation_ids if c]
        bodies = pool.map(lambda c: _get(system.http_url, f"/api/conversations/{c}",
                                         {"Authorization": f"Bearer {system.admin_token}"}), wanted)
        observed.transcripts = dict(zip(wanted, bodies, strict=True))
    observed.failed_rows, observed.replayed_rows = _dead_letter_rows(system.database_url)
    return observed


def _get(base: str, path: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    with httpx.Client(base_url=base, headers=headers or {}, timeout=30) as client:
        return dict(client.get(path).raise_for_status().json())


def _dead_letter_rows(database_url: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Read-only: failed and replayed rows straight from the table, to check the operator API against."""
    engine = create_engine(database_url)
    query = text("SELECT id, conversation_id, seq, destination, status, event, body, error_class, attempts, "
                 "replayed FROM messages WHERE status = 'failed' OR replayed ORDER BY id")
    try:
        with engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query)]
    finally:
        engine.dispose()
    return [r for r in rows if r["status"] == "failed"], [r for r in rows if r["replayed"]]
