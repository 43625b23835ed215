"""Secrets hygiene: across a journey full of failures, nothing secret reaches a log line or
Sentry. Logs are captured at the file descriptors (Powertools writes JSON to stdout); Sentry
runs through ``payments.observability.init_sentry`` with its real ``before_send`` scrubber and
a transport that keeps the envelopes instead of sending them."""

from __future__ import annotations

import io
import logging
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sentry_sdk
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

from payments import observability
from payments.settings import get_settings
from payments.webhook_signature import TOLERANCE_SECONDS
from tests.stack import MAKE_KEY, MEMBERSTACK_KEY, STRIPE_KEY, WEBHOOK_SECRET, Stack, api
from tools.reliability.attacks import sign, stripe_event_body
from tools.reliability.chaos import Action, ChaosEnv, ChaosPlan, run_plan

pytestmark = pytest.mark.integration

EMAIL = "jane.doe@example.com"
CARD = "4242 4242 4242 4242"


class KeptEnvelopes(Transport):
    """A Sentry transport that keeps what would have been sent."""

    sent: list[bytes] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        KeptEnvelopes.sent.append(envelope.serialize())


@pytest.fixture
def sentry(service_env: pytest.MonkeyPatch) -> Iterator[list[bytes]]:
    """Sentry started the way a function starts it, keeping its envelopes."""
    real_init = sentry_sdk.init
    service_env.setenv("SENTRY_DSN", "https://public@127.0.0.1/1")
    # The webhook refuses every signature below before it would reach the queue.
    service_env.setenv("WEBHOOK_QUEUE_URL", "https://sqs.us-east-1.amazonaws.com/0/unused")
    service_env.setattr(
        sentry_sdk, "init", lambda **options: real_init(**options, transport=KeptEnvelopes)
    )
    service_env.setattr(observability, "_sentry_started", False)
    KeptEnvelopes.sent = []
    get_settings.cache_clear()
    assert observability.init_sentry(get_settings())
    yield KeptEnvelopes.sent
    sentry_sdk.flush()
    sentry_sdk.get_client().close()
    real_init()  # no DSN: Sentry off again for the tests that follow


@pytest.fixture
def service_logs() -> Iterator[io.StringIO]:
    """Every line the service logs, formatted (and scrubbed) as it is written to stdout."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(observability.logger.registered_formatter)
    observability.logger.addHandler(handler)
    yield stream
    observability.logger.removeHandler(handler)


def _fail_unexpectedly(*_: Any, **__: Any) -> Any:
    token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJtZW1fbGVhayJ9.c2lnbmF0dXJlLXZhbHVl"
    raise RuntimeError(
        f"boom with {STRIPE_KEY} and {WEBHOOK_SECRET} for {EMAIL}, card {CARD}, Bearer {token}"
    )


def test_no_secret_or_personal_data_reaches_logs_or_sentry_in_a_failing_journey(
    stack: Stack,
    sentry: list[bytes],
    chaos_env: ChaosEnv,
    capfd: pytest.CaptureFixture[str],
    service_logs: io.StringIO,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    member = f"mem_hygiene_{uuid.uuid4().hex[:8]}"
    token = stack.memberstack.mint(member, email=EMAIL)
    body = stripe_event_body()
    signatures = [
        sign(body, "whsec_wrong_secret_0123456789"),
        sign(body, WEBHOOK_SECRET, timestamp=1_700_000_000 - TOLERANCE_SECONDS),
    ]
    secrets = [STRIPE_KEY, WEBHOOK_SECRET, MEMBERSTACK_KEY, MAKE_KEY, token, EMAIL]
    secrets += [s.split("v1=")[1] for s in signatures]

    # Given a journey where everything that can fail does
    for signature in signatures:  # bad signatures
        headers = {"stripe-signature": signature}
        answer = api(
            "webhook", "POST", "/v1/webhooks/stripe", raw_body=body.encode(), headers=headers
        )
        assert answer.status == 400
    garbage = api(
        "create_checkout", "POST", "/v1/checkout/sessions", body={"product": "x"}, token="x" * 40
    )
    assert garbage.status == 401
    # Expired (a revoked member token passes until it expires: it is verified locally).
    expired = stack.memberstack.mint(member, ttl_seconds=-60, email=EMAIL)
    secrets.append(expired)
    answer = api(
        "create_checkout", "POST", "/v1/checkout/sessions", body={"product": "x"}, token=expired
    )
    assert answer.status == 401
    stack.fault("POST", "/v1/checkout/sessions", 500, 10)  # Stripe errors
    checkout = {"product": "business_plan_builder"}
    assert (
        api("create_checkout", "POST", "/v1/checkout/sessions", body=checkout, token=token).status
        == 502
    )
    stack.emulator_call("DELETE", "/_emulator/faults")
    # A paid purchase, then a dispute: the worker raises an alert (log and Sentry)
    report = run_plan(
        chaos_env,
        ChaosPlan(((Action("buy", 0, 0), Action("dispute", 0, 0)),), seed=3, members=1),
    )
    assert report.problems == []
    # An unexpected exception whose message carries secrets
    import functions.create_checkout.app as checkout_app

    monkeypatch.setattr(checkout_app, "start_checkout", _fail_unexpectedly)
    assert (
        api("create_checkout", "POST", "/v1/checkout/sessions", body=checkout, token=token).status
        == 500
    )
    sentry_sdk.flush()

    # When everything written to stdout, stderr and Sentry is read
    captured = capfd.readouterr()
    logs = service_logs.getvalue() + captured.out + captured.err
    sent = b"\n".join(sentry).decode("utf-8", "replace")

    # Then the failures were reported, and no secret, token, signature, e-mail or card is there
    assert "stripe signature rejected" in logs
    assert "payment disputed" in sent
    assert "RuntimeError" in sent
    for where, text in (("logs", logs), ("sentry", sent)):
        leaked = [s[:12] + "…" for s in secrets if s in text]
        assert leaked == [], f"{where} leaked {leaked}"
        assert not re.search(r"\b(?:\d[ -]?){12,18}\d\b", text), f"{where} has a card-like number"
