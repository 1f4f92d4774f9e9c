"""Amazon Lex V2 runtime emulator: the lexv2-runtime REST API over bots defined in JSON data files.

Entry points: :func:`emulators.lex.app.create_app` (ASGI app) and :func:`emulators.lex.app.run`.
It deliberately imports nothing from lexdesk's own packages: it stands in for a foreign service.
"""
