"""``make reset`` wipes the database, the emulator's and the queue's saves together, and never
under a running ``make dev``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tools.devserver import instance
from tools.devserver.routes import ROOT

pytestmark = pytest.mark.unit


def _reset(state: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tools.devserver.reset"],
        cwd=ROOT,
        env={**os.environ, "LOCAL_STATE_DIR": str(state), "PYTHONPATH": "shared:."},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _local_world(state: Path) -> None:
    (state / "pgdata").mkdir(parents=True)
    (state / "pgdata" / "PG_VERSION").write_text("18")
    (state / "stripe-emulator.pickle").write_bytes(b"saved")
    (state / "sqs-messages.json").write_text("{}")
    (state / "memberstack").mkdir()
    (state / "memberstack" / "key.pem").write_text("key")


def test_reset_removes_the_database_the_emulator_and_the_queue_together(tmp_path: Path) -> None:
    _local_world(tmp_path)

    result = _reset(tmp_path)

    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "pgdata").exists()
    assert not (tmp_path / "stripe-emulator.pickle").exists()
    assert not (tmp_path / "sqs-messages.json").exists()
    # Not state of the world: tokens minted earlier stay valid.
    assert (tmp_path / "memberstack" / "key.pem").exists()


def test_reset_refuses_while_make_dev_runs_on_the_state(tmp_path: Path) -> None:
    _local_world(tmp_path)
    lock = instance.acquire(tmp_path)  # this test stands in for a running make dev
    try:
        result = _reset(tmp_path)
    finally:
        lock.close()

    assert result.returncode == 2
    assert f"make dev is running on this state (pid {os.getpid()}); stop it first" in result.stderr
    assert (tmp_path / "pgdata" / "PG_VERSION").exists()
