from __future__ import annotations

from collections.abc import Iterator

import pytest

from tools.harness.system import System


@pytest.fixture(scope="session")
def system(tmp_path_factory: pytest.TempPathFactory, postgres_url: str, rabbitmq_url: str) -> Iterator[System]:
    """The production shape: PostgreSQL, RabbitMQ, two edge nodes, one worker process per queue."""
    with System(tmp_path_factory.mktemp("system"), postgres_url, rabbitmq_url, edge_nodes=2) as running:
        yield running


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """On failure, show what the processes logged: the story is usually there."""
    outcome = yield
    report = outcome.get_result()
    running = item.funcargs.get("system") if hasattr(item, "funcargs") else None
    if report.failed and isinstance(running, System):
        report.sections.append(("process logs", running.logs()))
