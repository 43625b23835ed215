"""One ``make dev`` per checkout: a lock file held for as long as it runs.

Two dev servers on one local state directory would share the database and overwrite each
other's saved emulator state and queue, so the second one refuses to start; ``make reset``
refuses to wipe the state under a running one.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

LOCK_NAME = "devserver.lock"


class AlreadyRunning(Exception):
    """Another process holds the lock; ``pid`` is the one it recorded."""

    def __init__(self, pid: str) -> None:
        super().__init__(pid)
        self.pid = pid


def acquire(state_dir: Path) -> IO[str]:
    """Take the lock (keep the returned file open while running) or :class:`AlreadyRunning`."""
    state_dir.mkdir(parents=True, exist_ok=True)
    handle = (state_dir / LOCK_NAME).open("a+", encoding="utf-8")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        pid = handle.read().strip() or "?"
        handle.close()
        raise AlreadyRunning(pid) from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def running_pid(state_dir: Path) -> str | None:
    """The pid of the ``make dev`` running on ``state_dir``, or None."""
    if not (state_dir / LOCK_NAME).exists():
        return None
    try:
        acquire(state_dir).close()
    except AlreadyRunning as running:
        return running.pid
    return None
