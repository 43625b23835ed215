"""``.local/env``: the variables that point the operator tools at the running ``make dev``.

``make dev`` writes the file once everything listens and removes it when it stops. It is
shell syntax (``set -a; . .local/env; set +a`` loads it), readable only by its owner. Secrets
that came from your own environment (a real Stripe key, say) are not copied into it; the
tools then read them from your environment as usual.

``python -m tools.devserver.localenv <module> [args…]`` runs ``python -m <module> [args…]``
with those variables, which is what ``make token``, ``make redrive``, ``make recover`` and
``make reconcile`` do. Without a running ``make dev`` it says so in one line and exits 2.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from tools.db import local_state_dir

FILE_NAME = "env"
PID_VARIABLE = "DEV_SERVER_PID"

# What the tools need to reach the local stack; written when set.
VARIABLES = (
    "API_URL",
    "DATABASE_URL",
    "STRIPE_SECRET_KEY",
    "STRIPE_API_BASE",
    "STRIPE_WEBHOOK_SECRET",
    "WEBHOOK_QUEUE_URL",
    "WEBHOOK_DLQ_URL",
    "AWS_ENDPOINT_URL",
    "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "MEMBERSTACK_API_BASE",
    "MEMBERSTACK_SECRET_KEY",
    "MEMBERSTACK_APP_ID",
    "MEMBERSTACK_STANDIN_KEY_FILE",
    "ADMIN_MEMBER_IDS",
    "MAKE_WEBHOOK_URL",
    "MAKE_API_KEY",
    "SUPABASE_JWT_SECRET",
)
# Never copied from the caller's environment into a file.
SECRETS = frozenset(
    {
        "STRIPE_SECRET_KEY",
        "STRIPE_WEBHOOK_SECRET",
        "MEMBERSTACK_SECRET_KEY",
        "MAKE_API_KEY",
        "SUPABASE_JWT_SECRET",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "DATABASE_URL",
    }
)
# The make target of each module, for messages.
TARGETS = {
    "tools.local.member_token": "make token",
    "tools.redrive_dlq": "make redrive",
    "tools.recover_events": "make recover",
    "tools.reconcile": "make reconcile",
}


def env_file(state_dir: Path | None = None) -> Path:
    return (state_dir or local_state_dir()) / FILE_NAME


def write(
    path: Path, environment: Mapping[str, str], inherited: Mapping[str, str], *, pid: int
) -> None:
    """Write the file for the stack described by ``environment``.

    ``inherited`` is the environment ``make dev`` was started with: a secret found there is
    the caller's and stays out of the file.
    """
    lines = [
        f"# Written by make dev (pid {pid}) at {time.strftime('%Y-%m-%d %H:%M:%S')}; removed "
        "when it stops.",
        "# The variables that point the tools at this local stack (make token, make redrive,",
        "# make recover, make reconcile). In a shell: set -a; . .local/env; set +a",
        f"{PID_VARIABLE}={pid}",
    ]
    for name in VARIABLES:
        value = environment.get(name)
        if value is None:
            continue
        if name in SECRETS and inherited.get(name) == value:
            lines.append(f"# {name}: from your environment, not copied here")
            continue
        lines.append(f"{name}={shlex.quote(value)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    os.replace(temporary, path)


def read(path: Path) -> dict[str, str]:
    """The variables of an env file (comments and blank lines skipped)."""
    values: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.lstrip().startswith("#") or "=" not in line:
            continue
        name, _, raw = line.partition("=")
        parsed = shlex.split(raw)
        values[name.strip()] = parsed[0] if parsed else ""
    return values


def remove(path: Path, *, pid: int) -> None:
    """Remove the file if it is still the one written by ``pid``."""
    try:
        if read(path).get(PID_VARIABLE) == str(pid):
            path.unlink()
    except OSError:
        pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class NotRunning(Exception):
    """No ``make dev`` is running in this checkout (the message says how it was found)."""


def load(path: Path | None = None) -> dict[str, str]:
    """The running ``make dev``'s variables, or :class:`NotRunning`."""
    path = path or env_file()
    if not path.exists():
        raise NotRunning(
            f"make dev is not running in this checkout (no {_shown(path)}): "
            "start it in another terminal first"
        )
    values = read(path)
    pid = values.get(PID_VARIABLE, "")
    if not pid.isdigit() or not _alive(int(pid)):
        raise NotRunning(
            f"make dev is not running any more ({_shown(path)} is left from pid {pid or '?'}, "
            "which has exited): start it again"
        )
    return values


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tools.devserver.localenv <module> [args…]``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print("usage: python -m tools.devserver.localenv <module> [args…]", file=sys.stderr)
        return 2
    module, rest = args[0], args[1:]
    target = TARGETS.get(module, f"python -m {module}")
    if importlib.util.find_spec(module) is None:
        print(
            f"{target}: there is no module {module} to run",
            file=sys.stderr,
        )
        return 2
    try:
        values = load()
    except NotRunning as exc:
        print(f"{target}: {exc}", file=sys.stderr)
        return 2
    environment = {**os.environ, **values}
    sys.stdout.flush()
    # Replaced by the tool, so its exit status and signals are make's to see.
    os.execvpe(sys.executable, [sys.executable, "-m", module, *rest], environment)  # noqa: S606
    return 0  # not reached: exec replaces this process


if __name__ == "__main__":
    raise SystemExit(main())
