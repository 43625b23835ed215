"""``.local/env``: what the operator tools learn about the running ``make dev``."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tools.devserver import localenv
from tools.devserver.routes import ROOT

pytestmark = pytest.mark.unit


def test_the_file_is_shell_syntax_only_its_owner_reads(tmp_path: Path) -> None:
    # Given the environment of a running make dev
    path = tmp_path / "env"
    stack = {
        "WEBHOOK_QUEUE_URL": "http://127.0.0.1:12114/123456789012/payments-webhook-events",
        "DATABASE_URL": "postgresql://postgres:@/postgres?host=/tmp/a dir",
        "STRIPE_SECRET_KEY": "sk_test_local_emulator",
    }

    # When it is written
    localenv.write(path, stack, inherited={}, pid=os.getpid())

    # Then a shell reads the same values back, and nobody else can read the file
    shell = subprocess.run(
        ["bash", "-c", f'set -a; . {path}; set +a; echo "$DATABASE_URL|$WEBHOOK_QUEUE_URL"'],
        capture_output=True,
        text=True,
        check=True,
    )
    assert shell.stdout.strip() == f"{stack['DATABASE_URL']}|{stack['WEBHOOK_QUEUE_URL']}"
    assert localenv.read(path)["STRIPE_SECRET_KEY"] == "sk_test_local_emulator"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_secret_from_the_callers_environment_is_not_copied_into_the_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "env"
    real_key = "sk_test_" + "a" * 24

    localenv.write(
        path,
        {"STRIPE_SECRET_KEY": real_key, "STRIPE_API_BASE": "http://127.0.0.1:1"},
        inherited={"STRIPE_SECRET_KEY": real_key},
        pid=os.getpid(),
    )

    text = path.read_text()
    assert real_key not in text
    assert "STRIPE_SECRET_KEY: from your environment" in text
    assert "STRIPE_API_BASE=http://127.0.0.1:1" in text


def _launch(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tools.devserver.localenv", *args],
        cwd=ROOT,
        env={**os.environ, "LOCAL_STATE_DIR": str(tmp_path), "PYTHONPATH": "shared:."},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_without_a_running_make_dev_the_tools_say_so_in_one_line(tmp_path: Path) -> None:
    result = _launch(tmp_path, "tools.redrive_dlq", "--dry-run")

    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "make redrive: make dev is not running in this checkout "
        f"(no {tmp_path / 'env'}): start it in another terminal first"
    ]


def test_an_env_file_left_by_a_killed_make_dev_is_not_trusted(tmp_path: Path) -> None:
    # Given the file of a make dev that died without removing it
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    localenv.write(
        tmp_path / "env", {"API_URL": "http://127.0.0.1:1"}, {}, pid=int(finished.stdout)
    )

    result = _launch(tmp_path, "tools.local.member_token", "mem_1")

    assert result.returncode == 2
    assert "make token: make dev is not running any more" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_tool_that_does_not_exist_is_named(tmp_path: Path) -> None:
    result = _launch(tmp_path, "tools.no_such_tool")

    assert result.returncode == 2
    assert "there is no module tools.no_such_tool to run" in result.stderr


def test_the_tool_runs_with_the_files_variables(tmp_path: Path) -> None:
    # Given the file of a running make dev (this test's own process stands in for it)
    localenv.write(
        tmp_path / "env",
        {
            "MEMBERSTACK_APP_ID": "app_from_env_file",
            "MEMBERSTACK_STANDIN_KEY_FILE": str(tmp_path / "key.pem"),
        },
        {},
        pid=os.getpid(),
    )

    # When a tool runs through the launcher
    result = _launch(tmp_path, "tools.local.member_token", "mem_launched")

    # Then it saw the file's variables (the token is for that app)
    import jwt

    assert result.returncode == 0, result.stderr
    claims = jwt.decode(result.stdout.strip(), options={"verify_signature": False})
    assert claims["aud"] == "app_from_env_file"
