"""Moved to lexdesk.harness; kept so test modules can import from tests.support."""

from lexdesk.harness.customer import *  # noqa: F403
