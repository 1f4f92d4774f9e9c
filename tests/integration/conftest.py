from __future__ import annotations

from collections.abc import Iterator

import pytest

from tools.harness.system import System


@pytest.fixture(scope="session")
def system(tmp_path_factory: pytest.TempPathFactory, postgres_url: str, rabbitmq_url: str) -> Iterator[System]:
    """The production shape: PostgreSQL, RabbitMQ, two edge nodes, one worker process per queue."""
    # Retries end after 6 s here, so a dead-letter test does not wait out the 15-minute default
    # (tests/integration/test_outages.py runs its own system with minutes of retries).
    with System(tmp_path_factory.mktemp("system"), postgres_url, rabbitmq_url, edge_nodes=2,
                extra_env={"LEXDESK_RETRY_FOR": "6s"}) as running:
        yield running


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """On failure, show what the processes logged: the story is usually there."""
    outcome = yield
    report = outcome.get_result()
    running = item.funcargs.get("system") if hasattr(item, "funcargs") else None
    if report.failed and isinstance(running, System):
        report.sections.append(("process logs", running.logs()))
