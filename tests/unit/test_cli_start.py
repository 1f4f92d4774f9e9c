"""What `lexdesk` says before anything runs: a database it cannot use is one line naming
LEXDESK_DATABASE_URL (never "lexdesk is up", never a traceback); the CLI imports only what a command
needs; the test tools are listed when their extra is installed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tools.harness.servers import free_port

REPO = Path(__file__).resolve().parents[2]


def _lexdesk(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LEXDESK_")}
    environ.update({"LEXDESK_STATE_DIR": str(tmp_path / "state"), **env})
    return subprocess.run([sys.executable, "-m", "lexdesk", *args], cwd=REPO, env=environ, capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize(("url", "cause"), [
    (f"postgresql://postgres@127.0.0.1:{free_port()}/lexdesk", "Connection refused"),
    ("postgresql://no_such_user@127.0.0.1:5432/test", 'role "no_such_user" does not exist'),
])
def test_a_postgresql_url_that_cannot_work_is_one_line(tmp_path: Path, url: str, cause: str) -> None:
    result = _lexdesk(["up"], tmp_path, LEXDESK_DATABASE_URL=url)
    assert result.returncode == 2
    assert "lexdesk is up" not in result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("lexdesk: LEXDESK_DATABASE_URL: cannot use postgresql")
    assert cause in lines[0]


def test_migrate_says_the_same(tmp_path: Path) -> None:
    result = _lexdesk(["migrate"], tmp_path, LEXDESK_DATABASE_URL=f"postgresql://postgres@127.0.0.1:{free_port()}/x")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "LEXDESK_DATABASE_URL" in result.stderr and "Connection refused" in result.stderr


@pytest.mark.parametrize(("url", "says"), [
    ("sqlite:///", "names no database file"),
    ("sqlite://", "names no database file"),
    ("sqlite:///:memory:", "names no database file"),
])
def test_a_sqlite_url_without_a_file_is_refused_before_anything_starts(tmp_path: Path, url: str, says: str) -> None:
    result = _lexdesk(["up"], tmp_path, LEXDESK_DATABASE_URL=url)
    assert result.returncode == 2
    assert "lexdesk is up" not in result.stdout
    assert "LEXDESK_DATABASE_URL" in result.stderr and says in result.stderr
    assert not (tmp_path / "state").exists()  # refused before anything was written


def test_a_sqlite_file_in_a_missing_folder_is_an_error_not_a_new_folder(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "folder"
    result = _lexdesk(["up"], tmp_path, LEXDESK_DATABASE_URL=f"sqlite:///{missing / 'lexdesk.sqlite'}")
    assert result.returncode == 2
    assert f"the folder {missing} does not exist" in result.stderr
    assert not (tmp_path / "no").exists()


def test_the_cli_imports_no_test_tool_and_nothing_heavy() -> None:
    probe = ("import json, sys; import lexdesk.cli; "
             "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    loaded = set(json.loads(subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True,
                                           check=True).stdout))
    assert not loaded & {"tools", "hypothesis", "schemathesis", "celery", "kombu", "sqlalchemy", "fastapi",
                         "uvicorn", "websockets", "boto3", "botocore", "httpx", "services", "workers", "emulators"}


def test_help_lists_the_tools_when_their_extra_is_installed(tmp_path: Path) -> None:
    result = _lexdesk(["--help"], tmp_path)
    assert result.returncode == 0
    for command in ("up", "edge", "callback", "worker", "migrate", "dead-letters", "replay", "emulate", "bench",
                    "chaos", "fuzz"):
        assert f" {command} " in result.stdout, command
