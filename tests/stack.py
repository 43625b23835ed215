"""Fixtures for tests that drive handlers against the local stack: the Stripe emulator (with
the catalog seeded), the Memberstack stand-in (real RS256 tokens over HTTP) and the real
Postgres. Import them in a test module with ``from tests.stack import *  # noqa: F403``.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.fakes.lambda_context import FakeLambdaContext
from tools.devserver.events import http_event
from tools.local.make_receiver import MakeReceiverServer, start_make_receiver
from tools.local.memberstack import MemberstackServer, start_memberstack
from tools.seed_stripe import seed_account
from tools.stripe_emulator import start_emulator
from tools.stripe_emulator.server import EmulatorHandle

STRIPE_KEY = "sk_test_stack_0123456789"
WEBHOOK_SECRET = "whsec_stack_test_secret_0123456789abcd"
MEMBERSTACK_KEY = "sk_sb_stack_secret"
APP_ID = "app_stack_payments"
ADMIN_ID = "mem_admin"
SUCCESS_URL = "https://site.example/f5?session_id={CHECKOUT_SESSION_ID}"
CANCEL_URL = "https://site.example/f4"
MAKE_KEY = "make_stack_key"

__all__ = ["api", "emulator", "make_receiver", "memberstack", "service_env", "stack"]


@pytest.fixture(scope="session")
def emulator() -> Iterator[EmulatorHandle]:
    handle = start_emulator(
        port=0, api_key=STRIPE_KEY, webhook_secret=WEBHOOK_SECRET, auto_deliver=False
    )
    seed_account(STRIPE_KEY, handle.base_url, quiet=True)
    yield handle
    handle.stop()


@pytest.fixture(scope="session")
def memberstack() -> Iterator[MemberstackServer]:
    server = start_memberstack(0, secret_key=MEMBERSTACK_KEY, app_id=APP_ID)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def make_receiver() -> Iterator[MakeReceiverServer]:
    server = start_make_receiver(0, api_key=MAKE_KEY)
    yield server
    server.stop()


@pytest.fixture
def service_env(
    env: pytest.MonkeyPatch,
    db: str,
    emulator: EmulatorHandle,
    memberstack: MemberstackServer,
    make_receiver: MakeReceiverServer,
) -> pytest.MonkeyPatch:
    """Environment of a deployed function, pointed at the local stack."""
    httpx.delete(f"{emulator.base_url}/_emulator/faults")
    httpx.delete(f"{emulator.base_url}/_emulator/calls")
    for name, value in {
        "STRIPE_SECRET_KEY": STRIPE_KEY,
        "STRIPE_API_BASE": emulator.base_url,
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "STRIPE_RETRY_BASE_SECONDS": "0.01",
        "DATABASE_URL": db,
        "MEMBERSTACK_SECRET_KEY": MEMBERSTACK_KEY,
        "MEMBERSTACK_APP_ID": APP_ID,
        "MEMBERSTACK_API_BASE": memberstack.url,
        "ADMIN_MEMBER_IDS": ADMIN_ID,
        "CHECKOUT_SUCCESS_URL": SUCCESS_URL,
        "CHECKOUT_CANCEL_URL": CANCEL_URL,
        "ALLOWED_ORIGINS": "https://site.example",
        "MAKE_WEBHOOK_URL": make_receiver.url,
        "MAKE_API_KEY": MAKE_KEY,
    }.items():
        env.setenv(name, value)
    return env


@dataclass
class Answer:
    status: int
    body: Any
    headers: dict[str, str]


@dataclass
class Stack:
    emulator: EmulatorHandle
    memberstack: MemberstackServer

    def token(self, member_id: str) -> str:
        return self.memberstack.mint(member_id)

    def emulator_call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = httpx.request(method, f"{self.emulator.base_url}{path}", timeout=30, **kwargs)
        response.raise_for_status()
        return response.json()

    def stripe_calls(self, key: str) -> int:
        calls = self.emulator_call("GET", "/_emulator/calls")
        counts: dict[str, int] = calls["calls"]
        return int(counts.get(key, 0))

    def fault(self, method: str, path: str, status: int, times: int, **extra: Any) -> None:
        self.emulator_call(
            "POST",
            "/_emulator/faults",
            json={"method": method, "path": path, "status": status, "times": times, **extra},
        )


@pytest.fixture
def stack(
    service_env: pytest.MonkeyPatch, emulator: EmulatorHandle, memberstack: MemberstackServer
) -> Stack:
    return Stack(emulator, memberstack)


def api(
    function: str,
    method: str,
    path: str,
    *,
    route: str | None = None,
    body: Any = None,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    raw_body: bytes | None = None,
    query: str = "",
    path_parameters: dict[str, str] | None = None,
) -> Answer:
    """Invoke ``functions.<function>.app`` with the API Gateway event of this request."""
    all_headers = {"content-type": "application/json", **(headers or {})}
    if token is not None:
        all_headers["authorization"] = f"Bearer {token}"
    payload = (
        raw_body
        if raw_body is not None
        else (json.dumps(body).encode() if body is not None else b"")
    )
    event = http_event(
        method=method,
        path=path,
        route_key=route or f"{method} {path}",
        headers=list(all_headers.items()),
        body=payload,
        query=query,
        path_parameters=path_parameters,
    )
    module = importlib.import_module(f"functions.{function}.app")
    result = module.lambda_handler(event, FakeLambdaContext(function, timeout_seconds=10))
    text = result.get("body") or ""
    try:
        parsed = json.loads(text) if text else None
    except json.JSONDecodeError:
        parsed = text
    return Answer(result["statusCode"], parsed, result.get("headers") or {})
