"""The operator's side of dead letters, through the HTTP API (docs/protocol.md §6, bearer LEXDESK_ADMIN_TOKEN):
`GET /api/dead-letters` lists them, `POST /api/dead-letters/replay` replays them. A missing route is
reported, not worked around: replay is part of what the suite checks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

from tools.harness.system import System


@dataclass
class DeadLetters:
    available: bool
    items: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    total: int = 0
    error: str | None = None


@dataclass
class Replay:
    available: bool
    matched: int = 0
    replayed: int = 0
    skipped: int = 0
    ids: list[Any] = field(default_factory=list)
    skipped_ids: dict[str, str] = field(default_factory=dict)  # id -> why (closed, not_dead)
    error: str | None = None


def _client(system: System) -> httpx.Client:
    return httpx.Client(base_url=system.http_url, headers={"Authorization": f"Bearer {system.admin_token}"},
                        timeout=60)


def list_dead_letters(system: System, page: int = 1000) -> DeadLetters:
    listed = DeadLetters(True)
    try:
        with _client(system) as client:
            while True:
                response = client.get("/api/dead-letters", params={"limit": page, "offset": len(listed.items)})
                if response.status_code != 200:
                    return DeadLetters(False, error=f"GET /api/dead-letters answered {response.status_code}: "
                                                    f"{response.text[:200]}")
                body = response.json()
                batch = list(body.get("dead_letters", []))
                listed.items += batch
                listed.counts = dict(body.get("counts", {}))
                listed.total = int(body.get("total", len(listed.items)))
                if not batch or len(listed.items) >= listed.total:
                    return listed
    except httpx.HTTPError as exc:
        return DeadLetters(False, error=f"{type(exc).__name__}: {exc}")


def replay_dead_letters(system: System, **filters: Any) -> Replay:
    try:
        with _client(system) as client:
            response = client.post("/api/dead-letters/replay", json={"dry_run": False, **filters})
    except httpx.HTTPError as exc:
        return Replay(False, error=f"{type(exc).__name__}: {exc}")
    if response.status_code not in (200, 202):
        return Replay(False, error=f"POST /api/dead-letters/replay answered {response.status_code}: "
                                   f"{response.text[:200]}")
    body = response.json()
    return Replay(True, int(body.get("matched", 0)), int(body.get("replayed", 0)), int(body.get("skipped", 0)),
                  list(body.get("ids", [])), {str(k): str(v) for k, v in body.get("skipped_ids", {}).items()})
