"""Bad-input fuzzing of the running system (`lexdesk fuzz`): Hypothesis-generated WebSocket frames and
callback requests, Schemathesis against the callback app's OpenAPI schema, and checks that bystander
conversations were not affected."""

from lexdesk.fuzz.report import FuzzReport
from lexdesk.fuzz.run import fuzz_system, main

__all__ = ["FuzzReport", "fuzz_system", "main"]
