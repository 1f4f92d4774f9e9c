"""Talkdesk Digital Connect emulator: the public API on the real wire protocol plus an emulated agent.

Build the app with `emulators.talkdesk.app.create_app(EmulatorConfig(...))`, or serve it with
`python -m emulators.talkdesk`. It stands in for a foreign service, so it imports nothing from lexdesk.
"""
