#!/usr/bin/env bash
# The test command (README): builds its own virtual environment, installs Debian's chromium if it is
# missing, starts PostgreSQL and RabbitMQ if they are down, then runs ruff and the whole pytest suite.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV_DIR=${VENV_DIR:-.venv}
if [ ! -x "$VENV_DIR/bin/python" ]; then
  python3 -m venv "$VENV_DIR"
fi
"$VENV_DIR/bin/python" -m pip install -q --upgrade pip
"$VENV_DIR/bin/python" -m pip install -q -e '.[test]'

# The page tests drive Debian's Chromium with Playwright (a browser download does not work here).
if [ ! -x /usr/bin/chromium ]; then
  echo "test.sh: installing Debian's chromium for the page tests"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() {
  local port=$1 name=$2
  for _ in $(seq 1 120); do port_open "$port" && return 0; sleep 0.5; done
  echo "test.sh: $name is not listening on 127.0.0.1:$port after 60s" >&2; exit 1
}

if ! port_open 5432; then
  echo "test.sh: starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
fi
wait_port 5432 PostgreSQL
if ! port_open 5672; then
  echo "test.sh: starting RabbitMQ"
  rabbitmq-server -detached
fi
wait_port 5672 RabbitMQ
rabbitmqctl -q await_startup >/dev/null

"$VENV_DIR/bin/ruff" check .
exec "$VENV_DIR/bin/python" -m pytest "$@"
