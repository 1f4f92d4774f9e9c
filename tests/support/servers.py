"""Moved to lexdesk.harness; kept so test modules can import from tests.support."""

from lexdesk.harness.servers import *  # noqa: F403
