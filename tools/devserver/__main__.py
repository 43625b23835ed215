"""``make dev``: the whole service on loopback, no Docker, no internet.

Starts what is not configured already (every variable of DESIGN.md §4 found in the
environment wins over its local default): an embedded Postgres with the migrations applied,
the Stripe emulator, the Memberstack stand-in, the Make.com receiver, a local SQS with the
worker polling it, and the API on http://127.0.0.1:3000. Ctrl-C stops everything it started.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

from tools.db import apply_migrations, database_url
from tools.devserver.lambda_host import LambdaHost
from tools.devserver.server import ApiServer

LOCAL_DEFAULTS = {
    "STRIPE_SECRET_KEY": "sk_test_local_emulator",
    "STRIPE_WEBHOOK_SECRET": "whsec_local_emulator_secret_0123456789",
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


def _port(variable: str, default: int) -> int:
    return int(os.environ.get(variable, default))


def _say(name: str, address: str, note: str = "") -> None:
    print(f"  {name:<18} {address}{'  ' + note if note else ''}", flush=True)


def start(stack: ExitStack, host: str = "127.0.0.1") -> ApiServer:
    """Start every local part not configured in the environment; return the API server."""
    api_port = _port("API_PORT", 3000)
    api_url = f"http://{host}:{api_port}"
    for name, value in LOCAL_DEFAULTS.items():
        os.environ.setdefault(name, value)
    os.environ.setdefault(
        "CHECKOUT_SUCCESS_URL", f"{api_url}/success.html?session_id={{CHECKOUT_SESSION_ID}}"
    )
    os.environ.setdefault("CHECKOUT_CANCEL_URL", f"{api_url}/cancel.html")
    os.environ.setdefault("ALLOWED_ORIGINS", f"{api_url},http://localhost:{api_port}")

    print("payments service, local:", flush=True)
    url = database_url()
    applied = apply_migrations(url)
    os.environ.setdefault("DATABASE_URL", url)
    _say(
        "postgres",
        "DATABASE_URL" if "DATABASE_URL" in os.environ else url,
        f"migrations applied: {len(applied)}",
    )

    if "MEMBERSTACK_API_BASE" not in os.environ:
        from tools.local.memberstack import start_memberstack

        memberstack = start_memberstack(_port("MEMBERSTACK_STANDIN_PORT", 12112))
        stack.callback(memberstack.stop)
        os.environ["MEMBERSTACK_API_BASE"] = memberstack.url
        _say(
            "memberstack",
            memberstack.url,
            "tokens: python -m tools.local.member_token <member id> [--admin]",
        )

    if "MAKE_WEBHOOK_URL" not in os.environ:
        from tools.local.make_receiver import start_make_receiver

        make = start_make_receiver(_port("MAKE_RECEIVER_PORT", 12113))
        stack.callback(make.stop)
        os.environ["MAKE_WEBHOOK_URL"] = make.url
        _say("make.com receiver", make.url)

    if "STRIPE_API_BASE" not in os.environ and os.environ["STRIPE_SECRET_KEY"].startswith(
        "sk_test_local"
    ):
        from tools.seed_stripe import seed_catalog
        from tools.stripe_emulator import start_emulator

        emulator = start_emulator(
            host=host,
            port=_port("STRIPE_EMULATOR_PORT", 12111),
            webhook_url=f"{api_url}/v1/webhooks/stripe",
            webhook_secret=os.environ["STRIPE_WEBHOOK_SECRET"],
        )
        stack.callback(emulator.stop)
        os.environ["STRIPE_API_BASE"] = emulator.base_url
        seed_catalog(os.environ["STRIPE_SECRET_KEY"], emulator.base_url, quiet=True)
        _say("stripe emulator", emulator.base_url, "catalog prices seeded")

    server = ApiServer((host, api_port), host=LambdaHost())
    stack.callback(server.server_close)
    stack.callback(server.shutdown)
    _start_queue(stack, server.lambda_host)
    return server


def _start_queue(stack: ExitStack, lambda_host: LambdaHost) -> None:
    """Local SQS and the worker polling it, when the worker function exists."""
    import importlib.util

    if "WEBHOOK_QUEUE_URL" in os.environ:
        # A queue of the caller's: its own consumer (a deployed worker) drains it.
        return
    if importlib.util.find_spec("functions.webhook_worker") is None:
        return
    from tools.local.sqs import SqsPoller, create_queues, start_sqs

    sqs = start_sqs(_port("LOCAL_SQS_PORT", 12114))
    stack.callback(sqs.stop)
    queue_url, dlq_url = create_queues(sqs.endpoint_url)
    os.environ["AWS_ENDPOINT_URL"] = sqs.endpoint_url
    os.environ["WEBHOOK_QUEUE_URL"] = queue_url
    _say("local sqs", sqs.endpoint_url, f"dead letters: {dlq_url.rsplit('/', 1)[-1]}")

    def worker(event: dict[str, Any], context: Any) -> Any:
        return lambda_host.invoke(
            "functions.webhook_worker.app",
            event,
            function_name="WebhookWorkerFunction",
            timeout_seconds=30,
        )

    poller = SqsPoller(sqs.endpoint_url, queue_url, worker, function_name="WebhookWorkerFunction")
    poller.start()
    stack.callback(poller.stop)


def main() -> int:
    stop = threading.Event()
    with ExitStack() as stack:
        server = start(stack)
        server.start_in_thread()
        _say("api", server.url, "every route of template.yaml; demo page at /")
        print("Ctrl-C stops everything.", flush=True)
        handler: Callable[[int, Any], None] = lambda *_: stop.set()  # noqa: E731
        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)
        stop.wait()
        print("\nstopping…", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
