"""Every function answers its own sample event from events/ (what `sam local invoke` sends),
with the local stack standing in for Stripe, Memberstack, SQS and Supabase."""

from __future__ import annotations

import hashlib
import hmac
import importlib
import json
import time
from typing import Any

import pytest

from tests.conftest import EVENTS_DIR
from tests.fakes.lambda_context import FakeLambdaContext
from tests.stack import *  # noqa: F403
from tests.stack import ADMIN_ID, WEBHOOK_SECRET, Stack
from tools.devserver.routes import function_names

pytestmark = pytest.mark.integration

FUNCTIONS = sorted(
    resource["Properties"]["CodeUri"].strip("/").split("/")[-1]
    for resource in function_names().values()
)


def _prepare(event: dict[str, Any], stack: Stack) -> dict[str, Any]:
    """Fill what a checked-in event cannot hold: a live member token, a fresh signature."""
    headers = event.get("headers") or {}
    if "authorization" in headers:
        path = event.get("rawPath", "")
        member = ADMIN_ID if "/refunds" in path or "/admin/" in path else "mem_sample_event"
        headers["authorization"] = f"Bearer {stack.token(member)}"
    if "stripe-signature" in headers:
        timestamp = int(time.time())
        body = event["body"]
        digest = hmac.new(WEBHOOK_SECRET.encode(), f"{timestamp}.{body}".encode(), hashlib.sha256)
        headers["stripe-signature"] = f"t={timestamp},v1={digest.hexdigest()}"
    return event


@pytest.mark.parametrize("function", FUNCTIONS)
def test_each_function_answers_its_sample_event(
    function: str, stack: Stack, service_env: pytest.MonkeyPatch
) -> None:
    if function == "webhook":
        from payments.adapters.queue import get_event_queue
        from tools.local.sqs import create_queues, start_sqs

        # moto over HTTP: the webhook signs its own SQS requests, as it does in AWS.
        with start_sqs() as sqs:
            service_env.setenv("AWS_ENDPOINT_URL", sqs.endpoint_url)
            queue_url, _ = create_queues(sqs.endpoint_url, "sample-events")
            service_env.setenv("WEBHOOK_QUEUE_URL", queue_url)
            get_event_queue.cache_clear()
            result = _invoke(function, stack)
            get_event_queue.cache_clear()
    else:
        result = _invoke(function, stack)
    if "statusCode" in result:
        assert result["statusCode"] < 500, result.get("body")
        body = json.loads(result["body"]) if result.get("body") else {}
        if result["statusCode"] >= 400:
            assert set(body) == {"error"}
    elif "batchItemFailures" in result:
        assert result["batchItemFailures"] == []


def _invoke(function: str, stack: Stack) -> dict[str, Any]:
    event = _prepare(json.loads((EVENTS_DIR / f"{function}.json").read_text()), stack)
    module = importlib.import_module(f"functions.{function}.app")
    result: dict[str, Any] = module.lambda_handler(event, FakeLambdaContext(function, 60))
    return result
