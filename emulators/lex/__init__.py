"""Amazon Lex V2 emulator: the lexv2-runtime REST API over bots defined in JSON data files, the
read-only lexv2-models calls that describe those bots, and outage injection (``/_emulator/faults``).

Entry points: :func:`emulators.lex.app.create_app` (ASGI app) and :func:`emulators.lex.app.run`.
It deliberately imports nothing from lexdesk's own packages: it stands in for a foreign service.
"""
