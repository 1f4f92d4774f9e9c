"""Bad-input fuzzing of the running system (`lexdesk fuzz`): Hypothesis-generated WebSocket frames and
callback requests, Schemathesis against the callback app's OpenAPI schema, and checks that bystander
conversations were not affected.

The entry points are `tools.fuzz.run.main` and `tools.fuzz.run.fuzz_system`; this package imports
nothing, so that loading the command (`tools.fuzz.cli`) stays cheap."""
