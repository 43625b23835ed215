"""``make reset``: wipe the local state on purpose, all of it at once.

The database (``.local/pgdata``), the Stripe emulator's saved objects and the local queue's
saved messages describe one world; removing one without the others leaves the rest pointing at
things that no longer exist, so they go together. Refused while ``make dev`` runs. Left alone:
the test and demo databases (each run rebuilds its own) and the Memberstack stand-in's signing
key (tokens minted earlier stay valid).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from tools.db import local_state_dir
from tools.devserver import instance

STATE = (
    "pgdata",
    "stripe-emulator.pickle",
    "stripe-emulator.pickle.tmp",
    "stripe-emulator.pickle.unreadable",
    "sqs-messages.json",
    "sqs-messages.json.tmp",
    "env",
)


def stop_leftover_postgres(pgdata: Path) -> None:
    """Stop a server still running on ``pgdata`` (its dev server was killed) before deleting."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split()[0])
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        return  # no server, or a stale pid file
    from tools.db import embedded_postgres

    # Attaching then leaving as the only live user stops it the normal way.
    embedded_postgres(pgdata).release()


def main() -> int:
    state_dir = local_state_dir()
    pid = instance.running_pid(state_dir)
    if pid is not None:
        print(
            f"make reset: make dev is running on this state (pid {pid}); stop it first",
            file=sys.stderr,
        )
        return 2
    stop_leftover_postgres(state_dir / "pgdata")
    removed = []
    for name in STATE:
        path = state_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        else:
            continue
        removed.append(name)
    if removed:
        print(f"removed from {state_dir}: {', '.join(removed)}")
        print("the next make dev starts with an empty database, emulator and queue")
    else:
        print(f"nothing to remove: {state_dir} holds no local state")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
