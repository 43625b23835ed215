"""The embedded Postgres is stopped by the last process that uses it, and only then."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tools.devserver.routes import ROOT

pytestmark = pytest.mark.integration

# A process that attaches to the server in argv[1], says so, then waits for stdin to close.
USER = """
import sys
from tools.db import start_embedded
start_embedded(__import__("pathlib").Path(sys.argv[1]))
print("attached", flush=True)
sys.stdin.read()
"""


def _user(pgdata: Path) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-c", USER, str(pgdata)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": "shared:."},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "attached"
    return process


def _leave(process: subprocess.Popen[str]) -> None:
    assert process.stdin is not None
    process.stdin.close()
    assert process.wait(timeout=30) == 0


def _postmaster(pgdata: Path) -> int:
    return int((pgdata / "postmaster.pid").read_text().split()[0])


def _gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while psutil.pid_exists(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not psutil.pid_exists(pid)


def test_the_server_runs_until_its_last_user_leaves(tmp_path: Path) -> None:
    # Given two processes using one embedded server (two test workers, make dev and migrate)
    pgdata = tmp_path / "pg"
    first = _user(pgdata)
    second = _user(pgdata)
    postmaster = _postmaster(pgdata)

    # When the first leaves, the server keeps running for the second
    _leave(first)
    assert psutil.pid_exists(postmaster)

    # And when the second leaves, the server stops
    _leave(second)
    assert _gone(postmaster)


def test_a_user_that_died_without_leaving_does_not_keep_the_server_running(
    tmp_path: Path,
) -> None:
    # Given a server whose user list still names a process killed with SIGKILL
    pgdata = tmp_path / "pg"
    killed = _user(pgdata)
    killed.kill()
    killed.wait(timeout=10)
    postmaster = _postmaster(pgdata)
    assert killed.pid in json.loads((pgdata / ".handle_pids.json").read_text())

    # When another process uses it and leaves
    _leave(_user(pgdata))

    # Then the server stops, instead of waiting forever for the dead one
    assert _gone(postmaster)
