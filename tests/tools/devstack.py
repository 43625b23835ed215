"""``make dev`` as a separate process, the way a person runs it, for the tests of its life cycle.

Every port is 0 (any free port) and the local state lives in a directory of the test's, so a
run never touches ``.local/`` nor a ``make dev`` running beside the tests. The process gets a
session of its own: signals go to its process group, as a terminal's Ctrl-C does.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

import psutil

from tools.devserver.__main__ import SERVICE_VARIABLES
from tools.devserver.localenv import env_file, read
from tools.devserver.routes import ROOT

PORT_VARIABLES = (
    "API_PORT",
    "STRIPE_EMULATOR_PORT",
    "MEMBERSTACK_STANDIN_PORT",
    "MAKE_RECEIVER_PORT",
    "LOCAL_SQS_PORT",
)
URL_VARIABLES = (
    "API_URL",
    "STRIPE_API_BASE",
    "MEMBERSTACK_API_BASE",
    "MAKE_WEBHOOK_URL",
    "AWS_ENDPOINT_URL",
)
START_TIMEOUT = 90.0


def dev_environment(state_dir: Path, **overrides: str) -> dict[str, str]:
    """The environment of a ``make dev`` on ``state_dir`` and free ports, nothing configured."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if name not in SERVICE_VARIABLES
        and name not in ("DATABASE_URL", "TEST_DATABASE_URL", "LOG_FORMAT")
        # A person's shell, not the make that may be running these tests.
        and name not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS", "MAKEOVERRIDES")
        and not name.startswith(("PYTEST_", "MEMBERSTACK_STANDIN"))
    }
    environment.update(dict.fromkeys(PORT_VARIABLES, "0"))
    environment["LOCAL_STATE_DIR"] = str(state_dir)
    environment["PYTHONPATH"] = "shared:."
    environment.update(overrides)
    return environment


@dataclass
class DevProcess:
    """A running ``make dev``: its process, its ``.local/env`` values and its output file."""

    process: subprocess.Popen[bytes]
    state_dir: Path
    output: Path
    values: dict[str, str] = field(default_factory=dict)

    @property
    def api(self) -> str:
        return self.values["API_URL"]

    def ports(self) -> list[int]:
        return [
            int(urlsplit(self.values[name]).port or 0)
            for name in URL_VARIABLES
            if name in self.values
        ]

    def postmaster_pid(self) -> int | None:
        pid_file = self.state_dir / "pgdata" / "postmaster.pid"
        return int(pid_file.read_text().split()[0]) if pid_file.exists() else None

    def text(self) -> str:
        return self.output.read_text(encoding="utf-8", errors="replace")

    def signal_group(self, signum: int) -> None:
        os.killpg(self.process.pid, signum)

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        """Best-effort stop for the teardown of a test that failed half-way."""
        if self.process.poll() is None:
            self.signal_group(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.signal_group(signal.SIGKILL)
                self.process.wait(timeout=5)
        pid = self.postmaster_pid()
        if pid is not None and psutil.pid_exists(pid):
            os.kill(pid, signal.SIGQUIT)


def start_dev(
    state_dir: Path, output: Path, *, command: Sequence[str] | None = None, **overrides: str
) -> DevProcess:
    """Start ``make dev`` (or ``command``) and wait until it has written its ``.local/env``."""
    state_dir.mkdir(parents=True, exist_ok=True)
    env_path = env_file(state_dir)
    env_path.unlink(missing_ok=True)
    log: IO[bytes] = output.open("wb")
    process = subprocess.Popen(
        list(command or [sys.executable, "-m", "tools.devserver"]),
        cwd=ROOT,
        env=dev_environment(state_dir, **overrides),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    dev = DevProcess(process, state_dir, output)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"make dev exited with {process.returncode}:\n{dev.text()}")
        if env_path.exists():
            dev.values = read(env_path)
            if dev.values.get("DEV_SERVER_PID"):
                return dev
        time.sleep(0.1)
    dev.stop()
    raise AssertionError(f"make dev did not get ready in {START_TIMEOUT:.0f} s:\n{dev.text()}")


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def processes_using(path: Path) -> list[psutil.Process]:
    """Live processes whose command line mentions ``path`` (the embedded Postgres does)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info.get("cmdline") or []
        if any(str(path) in part for part in cmdline):
            found.append(process)
    return found
