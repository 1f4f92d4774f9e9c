"""POSTing one callback to lexdesk's receiver, with a retry budget that depends on what is sent.

The agent's joins, messages and closes must get through (lexdesk may be restarting): up to ten attempts,
backing off to five seconds. Typing is best effort: it is stale within seconds, so it gets two short
attempts and then is given up. Both share one HTTP client and one way of recording the outcome.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import httpx

from .config import EmulatorConfig
from .state import Conversation, Stats


@dataclass(frozen=True)
class Budget:
    """How hard to try: attempts in all, first and longest pause between them, seconds per attempt."""

    attempts: int
    first_backoff: float
    max_backoff: float
    timeout: float


RELIABLE = Budget(attempts=10, first_backoff=0.2, max_backoff=5.0, timeout=5.0)
BEST_EFFORT = Budget(attempts=2, first_backoff=0.2, max_backoff=0.5, timeout=2.0)


class CallbackSender:
    """The one HTTP client of the emulator's outgoing callbacks; used from the event loop only."""

    def __init__(self, config: EmulatorConfig, stats: Stats) -> None:
        self._config = config
        self._stats = stats
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=RELIABLE.timeout)

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def deliver(self, conv: Conversation, path: str, body: dict[str, Any], budget: Budget = RELIABLE) -> bool:
        """POST one callback; retry connection errors, 5xx and 429 within the budget; never other 4xx.

        The outcome is recorded in the conversation's events (`callback_delivered` or `callback_failed`).
        """
        assert self._config.callback_url is not None
        if self._client is None:
            await self.start()
        assert self._client is not None
        url = self._config.callback_url.rstrip("/") + path
        headers = {"X-Api-Key": self._config.callback_api_key} if self._config.callback_api_key else {}
        stats = self._stats
        backoff = budget.first_backoff
        problem = ""
        for attempt in range(1, budget.attempts + 1):
            wait = backoff
            try:
                response = await self._client.post(url, json=body, headers=headers, timeout=budget.timeout)
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if response.is_success:
                    stats.callbacks_delivered += 1
                    conv.record("callback_delivered", path=path, status=response.status_code, attempts=attempt)
                    return True
                problem = f"HTTP {response.status_code}"
                if response.status_code != 429 and response.status_code < 500:
                    stats.callback_failures += 1
                    conv.record("callback_failed", path=path, error=problem, attempts=attempt, retried=False)
                    return False
                wait = max(wait, _retry_after(response))
            if attempt < budget.attempts:
                stats.callback_retries += 1
                await asyncio.sleep(min(wait, budget.max_backoff))
                backoff = min(backoff * 2, budget.max_backoff)
        stats.callback_failures += 1
        conv.record("callback_failed", path=path, error=problem, attempts=budget.attempts, retried=True)
        return False


def _retry_after(response: httpx.Response) -> float:
    try:
        return float(response.headers.get("Retry-After", "0"))
    except ValueError:
        return 0.0
