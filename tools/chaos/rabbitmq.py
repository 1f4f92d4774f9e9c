"""A private RabbitMQ node for one chaos run: its own node name, ports, database and logs, so the suite
can stop and restart it without touching the machine's shared broker on 5672. It registers with the
machine's epmd like any node and uses the `rabbitmq` user's Erlang cookie (the Debian wrappers switch to
that user), so `rabbitmqctl -n NODE` reaches it."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from tools.chaos.commands import CommandError, give_to, run
from tools.harness.servers import free_port

USER = "rabbitmq"


class PrivateRabbitMQ:
    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="lexdesk-chaos-mq-"))
        self.nodename = f"lexdesk-chaos-{secrets.token_hex(4)}@localhost"
        self.port = free_port()
        self.dist_port = free_port()
        self.pid_file = self.root / "rabbitmq.pid"
        for sub in ("mnesia", "log"):
            (self.root / sub).mkdir()
        (self.root / "enabled_plugins").write_text("")  # no management plugin, no port 15672
        # Our own config and env files: the machine's (/etc/rabbitmq) name the shared node and its port.
        (self.root / "rabbitmq.conf").write_text(f"listeners.tcp.local = 127.0.0.1:{self.port}\n")
        (self.root / "rabbitmq-env.conf").write_text("")
        self.root.chmod(0o755)
        give_to(USER, self.root)

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "RABBITMQ_NODENAME": self.nodename,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.root / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.root / "log"),
            "RABBITMQ_PID_FILE": str(self.pid_file),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.root / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(self.root / "rabbitmq.conf"),
            "RABBITMQ_CONF_ENV_FILE": str(self.root / "rabbitmq-env.conf"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            # Erlang distribution on loopback only (it listens on every interface by default).
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    def _ctl(self, *args: str, timeout: float = 60, check: bool = True) -> bool:
        result = run(["rabbitmqctl", "-q", "-n", self.nodename, *args], timeout=timeout, env=self.env(),
                     check=check)
        return result.returncode == 0

    def start(self, timeout: float = 90) -> None:
        run(["rabbitmq-server", "-detached"], timeout=60, env=self.env())
        # -detached returns before the node has registered with epmd: poll until it has booted.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self._ctl("await_startup", "--timeout", "30", timeout=40, check=False):
                    return
            except CommandError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"RabbitMQ node {self.nodename} did not start within {timeout:.0f}s; "
                           f"logs in {self.root / 'log'}")

    def stop(self) -> None:
        """A clean stop: durable queues and persistent messages survive it, nothing else does. Given
        the pid file, rabbitmqctl waits until the Erlang VM has exited."""
        self._ctl("stop", str(self.pid_file), timeout=90)

    def restart(self, down_seconds: float = 1.0) -> None:
        self.stop()
        time.sleep(down_seconds)
        self.start()

    def cleanup(self) -> None:
        """Stop (if running) and delete everything it wrote. Never raises: it runs in `finally`."""
        try:
            self.stop()
        except (CommandError, RuntimeError):
            self._kill_vm()
        shutil.rmtree(self.root, ignore_errors=True)

    def _kill_vm(self) -> None:
        """Last resort: the VM we started, by the pid it wrote (never by name)."""
        with suppress(OSError, ValueError):
            os.kill(int(self.pid_file.read_text().strip()), signal.SIGKILL)


@contextmanager
def private_rabbitmq() -> Iterator[PrivateRabbitMQ]:
    node = PrivateRabbitMQ()
    try:
        node.start()
        yield node
    finally:
        node.cleanup()
