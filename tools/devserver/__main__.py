"""``make dev``: the whole service on loopback, no Docker, no internet.

Starts what is not configured already (every variable of DESIGN.md §4 found in the
environment wins over its local default): an embedded Postgres with the migrations applied,
the Stripe emulator, the Memberstack stand-in, the Make.com receiver, a local SQS with the
worker polling it, and the API on http://127.0.0.1:3000.

* Every port is checked before anything starts (``ports.py``).
* The API listens before the emulator can post a webhook to it.
* The emulator's objects and the queue's messages are saved beside the database under
  ``.local/`` and restored on start, so a restart keeps one consistent world; ``make reset``
  wipes all of it.
* ``.local/env`` tells the operator tools where the stack is, while it runs.
* SIGINT, SIGTERM and SIGHUP, once or repeated, stop everything it started, Postgres included;
  a stop that has not finished after :data:`STOP_DEADLINE_SECONDS` is forced.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from types import FrameType
from typing import Any

from tools.db import (
    MigrationChanged,
    apply_migrations,
    database_identity,
    describe,
    embedded_postgres,
    local_state_dir,
)
from tools.devserver import devlog, instance, localenv, ports
from tools.devserver.lambda_host import LambdaHost
from tools.devserver.ports import Port, StartupError
from tools.devserver.server import ApiServer

LOCAL_DEFAULTS = {
    "STRIPE_SECRET_KEY": "sk_test_local_emulator",
    "MEMBERSTACK_SECRET_KEY": "sk_sb_local_standin",
    "MEMBERSTACK_APP_ID": "app_local_payments",
    "MAKE_API_KEY": "make_local_key",
    "ADMIN_MEMBER_IDS": "mem_admin_local",
    "SUPABASE_JWT_SECRET": "local-jwt-secret-at-least-32-characters-long",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "POWERTOOLS_TRACE_DISABLED": "1",
    "POWERTOOLS_METRICS_NAMESPACE": "Payments",
    "POWERTOOLS_SERVICE_NAME": "payments",
    # The reconciler leaves younger work to the worker; 5 minutes deployed, 30 s here.
    "RECONCILE_MIN_AGE_SECONDS": "30",
}


# Variables that point the stack at real services instead of the local stand-ins. Runs that
# drive the stand-ins themselves (make demo, the browser test) clear them first.
SERVICE_VARIABLES = (
    "STRIPE_SECRET_KEY",
    "STRIPE_WEBHOOK_SECRET",
    "STRIPE_API_BASE",
    "MEMBERSTACK_SECRET_KEY",
    "MEMBERSTACK_APP_ID",
    "MEMBERSTACK_API_BASE",
    "MAKE_WEBHOOK_URL",
    "MAKE_API_KEY",
    "WEBHOOK_QUEUE_URL",
    "AWS_ENDPOINT_URL",
    "CHECKOUT_SUCCESS_URL",
    "CHECKOUT_CANCEL_URL",
    "ALLOWED_ORIGINS",
    "ADMIN_MEMBER_IDS",
    "SENTRY_DSN",
)

EMULATOR_STATE = "stripe-emulator.pickle"
QUEUE_STATE = "sqs-messages.json"
STOP_DEADLINE_SECONDS = 8.0

# Last resorts for a stop that hangs (the embedded Postgres, which outlives this process).
_EMERGENCY: list[Callable[[], None]] = []


class StopRequested(Exception):
    """A signal arrived while starting: unwind what started and leave."""


def _say(name: str, address: str, note: str = "") -> None:
    devlog.write_line(f"  {name:<18} {address}{'  ' + note if note else ''}")


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _uses_emulator() -> bool:
    return "STRIPE_API_BASE" not in os.environ and os.environ.get(
        "STRIPE_SECRET_KEY", LOCAL_DEFAULTS["STRIPE_SECRET_KEY"]
    ).startswith("sk_test_local")


def _uses_local_queue() -> bool:
    # A queue of the caller's is drained by its own consumer (a deployed worker).
    return "WEBHOOK_QUEUE_URL" not in os.environ


def planned_ports() -> list[Port]:
    """The ports the parts that will run listen on (a configured service needs none)."""
    planned = [ports.API]
    if _uses_emulator():
        planned.append(ports.STRIPE_EMULATOR)
    if "MEMBERSTACK_API_BASE" not in os.environ:
        planned.append(ports.MEMBERSTACK)
    if "MAKE_WEBHOOK_URL" not in os.environ:
        planned.append(ports.MAKE_RECEIVER)
    if _uses_local_queue():
        planned.append(ports.LOCAL_SQS)
    return planned


def _listen(port: Port, number: int, starter: Callable[[], Any]) -> Any:
    """Start a server; a bind that fails after all (a race) is the same one-line error."""
    try:
        return starter()
    except OSError as exc:
        cause = exc.__cause__ if isinstance(exc.__cause__, OSError) else exc
        raise StartupError(ports.busy_message(port, number, cause)) from exc


def start(
    stack: ExitStack,
    host: str = "127.0.0.1",
    *,
    state_dir: Path | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> ApiServer:
    """Start every local part not configured in the environment; return the serving API.

    With ``state_dir`` the emulator's objects and the queue's messages are restored from it
    and saved there on stop (``make dev``); without it they live only as long as the process
    (``make demo``, tests). ``should_stop`` is asked between parts, so a signal received while
    starting ends the start early (:class:`StopRequested`).
    """

    def checkpoint() -> None:
        if should_stop():
            raise StopRequested

    numbers = ports.check_free(planned_ports(), host)
    for name, value in LOCAL_DEFAULTS.items():
        os.environ.setdefault(name, value)
    if not devlog.json_logs():
        # A metric is a CloudWatch document (EMF) of a few hundred characters: noise in the
        # compact log, kept with LOG_FORMAT=json.
        os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    # A fixed secret would let another copy of the project's webhooks through.
    os.environ.setdefault("STRIPE_WEBHOOK_SECRET", "whsec_" + secrets.token_hex(24))
    if state_dir is not None:
        os.environ.setdefault(
            "MEMBERSTACK_STANDIN_KEY_FILE", str(state_dir / "memberstack" / "key.pem")
        )

    # Bound now, so the port is ours and its address known; it serves once the rest is up.
    server: ApiServer = _listen(
        ports.API, numbers[ports.API], lambda: ApiServer((host, numbers[ports.API]))
    )
    stack.callback(server.server_close)
    stack.callback(server.shutdown)
    api_url = server.url
    os.environ["API_URL"] = api_url
    os.environ.setdefault(
        "CHECKOUT_SUCCESS_URL", f"{api_url}/success.html?session_id={{CHECKOUT_SESSION_ID}}"
    )
    os.environ.setdefault("CHECKOUT_CANCEL_URL", f"{api_url}/cancel.html")
    os.environ.setdefault(
        "ALLOWED_ORIGINS", f"{api_url},http://localhost:{server.server_address[1]}"
    )

    devlog.write_line("payments service, local:")
    database = _start_database(stack, state_dir)
    checkpoint()
    poller = (
        _start_queue(stack, server.lambda_host, numbers, state_dir) if _uses_local_queue() else None
    )
    checkpoint()

    if "MEMBERSTACK_API_BASE" not in os.environ:
        from tools.local.memberstack import start_memberstack

        number = numbers[ports.MEMBERSTACK]
        memberstack = _listen(ports.MEMBERSTACK, number, lambda: start_memberstack(number))
        stack.callback(memberstack.stop)
        os.environ["MEMBERSTACK_API_BASE"] = memberstack.url
        _say("memberstack", memberstack.url, "tokens: make token MEMBER=mem_123 [ADMIN=1]")

    if "MAKE_WEBHOOK_URL" not in os.environ:
        from tools.local.make_receiver import start_make_receiver

        number = numbers[ports.MAKE_RECEIVER]
        make = _listen(ports.MAKE_RECEIVER, number, lambda: start_make_receiver(number))
        stack.callback(make.stop)
        os.environ["MAKE_WEBHOOK_URL"] = make.url
        _say("make.com receiver", make.url, f"received payloads: {make.url}/_received")
    checkpoint()

    seed = (
        _start_emulator(stack, host, api_url, numbers, state_dir, database)
        if _uses_emulator()
        else None
    )
    checkpoint()

    # Everything the handlers read is in the environment now: serve, then let events flow.
    server.start_in_thread()
    if seed is not None:
        seed()
    if poller is not None:
        poller.start()
        stack.callback(poller.stop)
    _start_reconcile_schedule(stack, server.lambda_host)
    _say("api", api_url, "every route of template.yaml; demo page at /")
    return server


def _start_reconcile_schedule(stack: ExitStack, lambda_host: LambdaHost) -> None:
    """The reconciler on a short interval, like its EventBridge schedule does every 15 minutes
    (``RECONCILE_INTERVAL_SECONDS``, default 60; 0 turns it off)."""
    interval = float(os.environ.get("RECONCILE_INTERVAL_SECONDS") or 60)
    if interval <= 0:
        return
    stopping = threading.Event()

    def run() -> None:
        while not stopping.wait(interval):
            try:
                lambda_host.invoke(
                    "functions.reconcile.app",
                    {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}},
                    function_name="ReconcileFunction",
                    timeout_seconds=120,
                )
            except Exception as exc:  # noqa: BLE001 - logged; the next tick tries again
                devlog.write_line(f"reconcile: failed ({type(exc).__name__})")

    thread = threading.Thread(target=run, name="reconcile-schedule", daemon=True)
    thread.start()

    def stop() -> None:
        stopping.set()
        thread.join(timeout=5)

    stack.callback(stop)
    _say("reconciler", f"every {interval:g} s", "or now: make reconcile")


def _start_database(stack: ExitStack, state_dir: Path | None) -> str:
    """The database (``DATABASE_URL`` or the embedded one), migrated; returns its URL."""
    if "DATABASE_URL" in os.environ:
        url = os.environ["DATABASE_URL"]
        where = f"{describe(url)} (DATABASE_URL)"
    else:
        pgdata = (state_dir or local_state_dir()) / "pgdata"
        handle = embedded_postgres(pgdata)
        _EMERGENCY.append(handle.kill)
        stack.callback(handle.release)
        url = handle.url
        os.environ["DATABASE_URL"] = url
        where = f"{url}  (embedded, data in {_shown(pgdata)})"
    try:
        applied = apply_migrations(url)
    except MigrationChanged as exc:
        raise StartupError(f"make dev: {exc}") from exc
    _say("postgres", where, f"{len(applied)} migrations applied now" if applied else "")
    return url


def _start_queue(
    stack: ExitStack, lambda_host: LambdaHost, numbers: dict[Port, int], state_dir: Path | None
) -> Any:
    """Local SQS with the messages saved at the last stop; returns the worker's poller."""
    from tools.local.sqs import SqsPoller, create_queues, restore_messages, save_messages, start_sqs

    number = numbers[ports.LOCAL_SQS]
    sqs = _listen(ports.LOCAL_SQS, number, lambda: start_sqs(number))
    queue_url, dlq_url = create_queues(sqs.endpoint_url)
    saved = state_dir / QUEUE_STATE if state_dir is not None else None
    restored = restore_messages(saved, sqs.endpoint_url, [queue_url, dlq_url]) if saved else 0

    def stop_queue() -> None:
        if saved is not None:
            save_messages(saved, [queue_url, dlq_url])
        sqs.stop()

    # Registered before the poller's stop, so it runs after it: nothing moves while saving.
    stack.callback(stop_queue)
    os.environ["AWS_ENDPOINT_URL"] = sqs.endpoint_url
    os.environ["WEBHOOK_QUEUE_URL"] = queue_url
    os.environ["WEBHOOK_DLQ_URL"] = dlq_url
    note = f"dead letters: {dlq_url.rsplit('/', 1)[-1]}"
    if restored:
        note += f"; {restored} saved messages restored"
    _say("local sqs", sqs.endpoint_url, note)

    def worker(event: dict[str, Any], context: Any) -> Any:
        return lambda_host.invoke(
            "functions.webhook_worker.app",
            event,
            function_name="WebhookWorkerFunction",
            timeout_seconds=30,
        )

    return SqsPoller(sqs.endpoint_url, queue_url, worker, function_name="WebhookWorkerFunction")


def _start_emulator(
    stack: ExitStack,
    host: str,
    api_url: str,
    numbers: dict[Port, int],
    state_dir: Path | None,
    database: str,
) -> Callable[[], None]:
    """The Stripe emulator with its saved objects; returns the catalog seeding to run once
    the API serves (seeding creates events, which the emulator delivers at once)."""
    from tools.seed_stripe import seed_account
    from tools.stripe_emulator import start_emulator
    from tools.stripe_emulator.persistence import EmulatorPersistence

    number = numbers[ports.STRIPE_EMULATOR]
    emulator = _listen(
        ports.STRIPE_EMULATOR,
        number,
        lambda: start_emulator(
            host=host,
            port=number,
            webhook_url=f"{api_url}/v1/webhooks/stripe",
            webhook_secret=os.environ["STRIPE_WEBHOOK_SECRET"],
        ),
    )
    persistence = None
    note = "objects kept for this run only"
    if state_dir is not None:
        try:
            world = database_identity(database)
        except Exception:  # noqa: BLE001 - any database answers to describe()
            world = describe(database)
        persistence = EmulatorPersistence(emulator, state_dir / EMULATOR_STATE, world=world)
        note = persistence.restore().note
        persistence.start()

    def stop_emulator() -> None:
        emulator.stop()
        if persistence is not None:
            persistence.close()

    stack.callback(stop_emulator)
    os.environ["STRIPE_API_BASE"] = emulator.base_url

    def seed() -> None:
        seed_account(os.environ["STRIPE_SECRET_KEY"], emulator.base_url, quiet=True)
        _say(
            "stripe emulator",
            emulator.base_url,
            f"{note}; catalog prices and billing portal configuration seeded",
        )

    return seed


class _Signals:
    """Records SIGINT, SIGTERM and SIGHUP; nothing else happens inside the handler.

    A handler runs between two bytecodes of the main thread, which may be holding any lock at
    that moment (an Event's, the logging module's); taking a lock there can deadlock, so the
    handler only appends to a list, and the main thread polls it.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.received: list[int] = []

    def install(self) -> None:
        for signum in self.SIGNALS:
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.received.append(signum)

    def requested(self) -> bool:
        return bool(self.received)

    def wait(self) -> None:
        while not self.received:
            time.sleep(0.2)


def _force_stop_after(seconds: float, done: threading.Event) -> None:
    """Last resort: if stopping takes longer than ``seconds``, kill Postgres and exit."""

    def watchdog() -> None:
        if done.wait(seconds):
            return
        devlog.write_line(f"could not stop cleanly within {seconds:.0f} s; forcing it", sys.stderr)
        for action in _EMERGENCY:
            # The process exits next, whatever happens here.
            with contextlib.suppress(Exception):
                action()
        os._exit(1)

    threading.Thread(target=watchdog, name="stop-watchdog", daemon=True).start()


def main() -> int:
    started = time.monotonic()
    signals = _Signals()
    signals.install()
    inherited = dict(os.environ)
    state_dir = local_state_dir()
    try:
        lock = instance.acquire(state_dir)
    except instance.AlreadyRunning as running:
        devlog.write_line(
            f"make dev: already running on {_shown(state_dir)} (pid {running.pid}); "
            "stop it first, or give this one another LOCAL_STATE_DIR",
            sys.stderr,
        )
        return 2
    devlog.configure()
    stopped = threading.Event()
    env_path = localenv.env_file(state_dir)
    try:
        with ExitStack() as stack:
            try:
                server = start(stack, state_dir=state_dir, should_stop=signals.requested)
            except StartupError as exc:
                devlog.write_line(str(exc), sys.stderr)
                return 2
            except StopRequested:
                devlog.write_line("stopping…")
                _force_stop_after(STOP_DEADLINE_SECONDS, stopped)
                return 0
            localenv.write(env_path, os.environ, inherited, pid=os.getpid())
            stack.callback(localenv.remove, env_path, pid=os.getpid())
            devlog.write_line(
                f"ready in {time.monotonic() - started:.1f} s on {server.url}; tools: "
                f"make token MEMBER=mem_123, make redrive, make recover ({_shown(env_path)}). "
                "Ctrl-C stops everything."
            )
            signals.wait()
            devlog.write_line("stopping…")
            _force_stop_after(STOP_DEADLINE_SECONDS, stopped)
    finally:
        stopped.set()
        lock.close()
    devlog.write_line("stopped.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
