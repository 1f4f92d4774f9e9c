#!/usr/bin/env bash
# Run lexdesk on one machine (README): builds its own virtual environment, then `lexdesk up` starts
# the emulators, workers, callback app and edge on SQLite and the embedded broker. Arguments go to
# `lexdesk up` (e.g. --no-emulators when LEXDESK_TALKDESK_* and LEXDESK_LEX_* point at real services).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV_DIR=${VENV_DIR:-.venv}
if [ ! -x "$VENV_DIR/bin/python" ]; then
  python3 -m venv "$VENV_DIR"
fi
"$VENV_DIR/bin/python" -m pip install -q --upgrade pip
"$VENV_DIR/bin/python" -m pip install -q -e .
exec "$VENV_DIR/bin/lexdesk" up "$@"
