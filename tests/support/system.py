"""Moved to lexdesk.harness; kept so test modules can import from tests.support."""

from lexdesk.harness.system import *  # noqa: F403
