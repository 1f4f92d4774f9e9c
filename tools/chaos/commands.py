"""Running the operating system's database and broker tools: bounded in time, as the service's own
user when we are root (PostgreSQL refuses to run as root; RabbitMQ's wrapper switches user itself)."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path


class CommandError(RuntimeError):
    """A tool exited non-zero or ran out of time; the message carries its output."""


def as_user(user: str, argv: Sequence[str]) -> list[str]:
    """`argv` run as `user` when we are root, as is otherwise."""
    if os.geteuid() == 0 and shutil.which("runuser"):
        return ["runuser", "-u", user, "--", *argv]
    return list(argv)


def run(argv: Sequence[str], *, timeout: float, env: dict[str, str] | None = None, check: bool = True,
        cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run to completion in its own session, so a Ctrl-C meant for us does not reach a server it starts."""
    try:
        result = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd,
                                start_new_session=True)
    except subprocess.TimeoutExpired as exc:
        raise CommandError(f"{' '.join(argv)} did not finish within {timeout:.0f}s") from exc
    if check and result.returncode != 0:
        raise CommandError(f"{' '.join(argv)} exited {result.returncode}: "
                           f"{(result.stderr or result.stdout).strip()[-2000:]}")
    return result


def give_to(user: str, path: Path) -> None:
    """Make `path` (recursively) belong to `user`, when we are root and the user exists."""
    if os.geteuid() != 0:
        return
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return
    for root, dirs, files in os.walk(path):
        os.chown(root, entry.pw_uid, entry.pw_gid)
        for name in dirs + files:
            os.chown(os.path.join(root, name), entry.pw_uid, entry.pw_gid, follow_symlinks=False)
