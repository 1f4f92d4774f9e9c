#!/usr/bin/env bash
# Run lexdesk on one machine (README): needs Python 3.11 or newer (python3, or $PYTHON) with venv; builds
# its own virtual environment (the product only, no extras), then `lexdesk up` starts the emulators,
# workers, callback app and edge on SQLite and the embedded broker. Arguments go to `lexdesk up`
# (e.g. --no-emulators when LEXDESK_TALKDESK_* and LEXDESK_LEX_* point at real services).
# A second start reinstalls nothing unless pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV_DIR=${VENV_DIR:-.venv}

if ! command -v "$PYTHON" >/dev/null; then
  echo "up.sh: lexdesk needs Python 3.11 or newer; $PYTHON was not found (set PYTHON=/path/to/python3.11)" >&2
  exit 1
fi
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "up.sh: lexdesk needs Python 3.11 or newer; $PYTHON is $("$PYTHON" -V 2>&1)" \
       "(set PYTHON=/path/to/python3.11)" >&2
  exit 1
fi

# What the installed environment was built from: the project's dependencies and the interpreter.
wanted="$(sha256sum pyproject.toml | cut -d' ' -f1) $("$PYTHON" -V 2>&1)"
stamp="$VENV_DIR/.lexdesk-installed"
if [ ! -x "$VENV_DIR/bin/lexdesk" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  echo "up.sh: installing lexdesk into $VENV_DIR (once; later starts skip this)"
  [ -x "$VENV_DIR/bin/python" ] || "$PYTHON" -m venv "$VENV_DIR"
  "$VENV_DIR/bin/python" -m pip install -q --upgrade pip
  "$VENV_DIR/bin/python" -m pip install -q -e .
  echo "$wanted" > "$stamp"
fi
exec "$VENV_DIR/bin/lexdesk" up "$@"
