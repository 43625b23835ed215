"""The webhook receiver: real Stripe signatures on the raw body, moto SQS behind it."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

from functions.webhook import app as webhook_app
from tests.conftest import event_file
from tests.fakes.lambda_context import FakeLambdaContext
from tests.webhooks import factories as f
from tests.webhooks.conftest import receive_all, webhook_event
from tools.devserver.routes import ROOT

pytestmark = pytest.mark.integration


@pytest.fixture
def configured(env: pytest.MonkeyPatch, sqs_queue: tuple[Any, str]) -> tuple[Any, str]:
    env.setenv("STRIPE_WEBHOOK_SECRET", f.WEBHOOK_SECRET)
    env.setenv("WEBHOOK_QUEUE_URL", sqs_queue[1])
    return sqs_queue


def invoke(event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = webhook_app.lambda_handler(event, FakeLambdaContext("WebhookFunction"))
    return int(response["statusCode"]), json.loads(response["body"])


def signed_completed_event() -> tuple[dict[str, Any], str]:
    stripe_event = f.event("checkout.session.completed", f.checkout_session())
    return stripe_event, f.payload(stripe_event)


def test_a_correctly_signed_event_is_queued_verbatim_with_its_id_and_type(
    configured: tuple[Any, str],
) -> None:
    # Given an event signed with the endpoint secret
    client, queue_url = configured
    stripe_event, body = signed_completed_event()

    # When Stripe posts it
    status, answer = invoke(webhook_event(body, [("Stripe-Signature", f.sign(body))]))

    # Then it is acknowledged and the queue holds the raw body with id and type attributes
    assert (status, answer) == (200, {"received": True})
    [message] = receive_all(client, queue_url)
    assert message["Body"] == body
    attributes = message["MessageAttributes"]
    assert attributes["stripe_event_id"]["StringValue"] == stripe_event["id"]
    assert attributes["stripe_event_type"]["StringValue"] == "checkout.session.completed"


def test_a_missing_signature_is_refused_before_any_configuration_is_read(
    env: pytest.MonkeyPatch,
) -> None:
    # Given no configuration at all (any settings access would fail with a 500)
    _stripe_event, body = signed_completed_event()

    # When a request arrives without a Stripe-Signature header
    status, answer = invoke(webhook_event(body, []))

    # Then it is a 400 in the contract's error shape
    assert status == 400
    assert answer["error"]["code"] == "missing_signature"


def test_a_missing_variable_fails_with_its_name(env: pytest.MonkeyPatch) -> None:
    # Given a signing secret but no queue configured
    env.setenv("STRIPE_WEBHOOK_SECRET", f.WEBHOOK_SECRET)
    env.setenv("WEBHOOK_QUEUE_URL", "   ")  # CloudFormation's empty parameter
    _stripe_event, body = signed_completed_event()

    # When a signed event arrives
    status, answer = invoke(webhook_event(body, [("Stripe-Signature", f.sign(body))]))

    # Then it is a 500 (Stripe retries) naming the variable, never the secret
    assert status == 500
    assert answer["error"]["code"] == "configuration_error"
    assert "WEBHOOK_QUEUE_URL" in answer["error"]["message"]
    assert f.WEBHOOK_SECRET not in json.dumps(answer)


def test_a_base64_encoded_body_is_verified_on_its_decoded_bytes(
    configured: tuple[Any, str],
) -> None:
    client, queue_url = configured
    _stripe_event, body = signed_completed_event()
    event = webhook_event(body, [("Stripe-Signature", f.sign(body))])
    event["body"] = base64.b64encode(body.encode()).decode()
    event["isBase64Encoded"] = True

    status, _ = invoke(event)

    assert status == 200
    assert [m["Body"] for m in receive_all(client, queue_url)] == [body]


@pytest.mark.parametrize(
    ("case", "header_for"),
    [
        ("stale timestamp", lambda body: f.sign(body, timestamp=int(time.time()) - 301)),
        ("wrong secret", lambda body: f.sign(body, secret="whsec_someone_else")),
        ("tampered body", lambda body: f.sign(body.replace("9900", "100"))),
        ("garbage header", lambda body: "not-a-signature"),
        ("no v1 scheme", lambda body: f.sign(body).replace("v1=", "v0=")),
    ],
)
def test_an_unverifiable_signature_is_a_400_and_nothing_is_queued(
    configured: tuple[Any, str], case: str, header_for: Any
) -> None:
    client, queue_url = configured
    _stripe_event, body = signed_completed_event()

    status, answer = invoke(webhook_event(body, [("Stripe-Signature", header_for(body))]))

    assert status == 400, case
    assert answer["error"]["code"] == "invalid_signature"
    assert receive_all(client, queue_url) == []


def test_any_v1_signature_in_the_header_may_match(configured: tuple[Any, str]) -> None:
    # Given a header with a stale-secret signature first and the valid one second
    _stripe_event, body = signed_completed_event()
    valid = f.sign(body)
    other = f.sign(body, secret="whsec_rolled_secret", timestamp=int(valid[2:12]))
    header = f"{other},v1={valid.split('v1=')[1]}"

    status, _ = invoke(webhook_event(body, [("Stripe-Signature", header)]))

    assert status == 200


def test_the_previous_secret_is_accepted_during_a_rotation(
    configured: tuple[Any, str], env: pytest.MonkeyPatch
) -> None:
    env.setenv("STRIPE_WEBHOOK_SECRET_PREVIOUS", f.PREVIOUS_SECRET)
    _stripe_event, body = signed_completed_event()

    status, _ = invoke(
        webhook_event(body, [("Stripe-Signature", f.sign(body, secret=f.PREVIOUS_SECRET))])
    )

    assert status == 200


@pytest.mark.parametrize(
    "body",
    [
        "this is not json",
        json.dumps({"id": "evt_1", "type": "charge.refunded"}),
        json.dumps({"object": "event", "type": "charge.refunded", "created": 1}),
        json.dumps([1, 2, 3]),
    ],
)
def test_a_signed_body_that_is_not_a_stripe_event_is_a_400(
    configured: tuple[Any, str], body: str
) -> None:
    client, queue_url = configured

    status, answer = invoke(webhook_event(body, [("Stripe-Signature", f.sign(body))]))

    assert status == 400
    assert answer["error"]["code"] == "malformed_event"
    assert receive_all(client, queue_url) == []


def test_a_failed_queue_write_is_a_500_so_stripe_retries(
    configured: tuple[Any, str], env: pytest.MonkeyPatch
) -> None:
    # Given a queue that does not exist
    _client, queue_url = configured
    env.setenv("WEBHOOK_QUEUE_URL", queue_url + "-gone")
    _stripe_event, body = signed_completed_event()

    status, answer = invoke(webhook_event(body, [("Stripe-Signature", f.sign(body))]))

    assert status == 500
    assert answer["error"]["code"] == "queue_unavailable"


def test_no_body_signature_or_secret_reaches_the_logs(
    configured: tuple[Any, str], log_lines: Callable[[], str]
) -> None:
    stripe_event, body = signed_completed_event()
    header = f.sign(body)

    invoke(webhook_event(body, [("Stripe-Signature", header)]))
    invoke(webhook_event(body, [("Stripe-Signature", f.sign(body, secret="whsec_wrong_one"))]))

    logs = log_lines()
    assert stripe_event["id"] in logs
    assert "stripe signature rejected" in logs
    for secret_or_body in (header, header.split("v1=")[1], f.WEBHOOK_SECRET, "example@example.com"):
        assert secret_or_body not in logs


def test_the_sample_event_is_accepted_once_re_signed(configured: tuple[Any, str]) -> None:
    # Given events/webhook.json, whose signature has aged past the tolerance
    sample = json.loads(event_file("webhook").read_text())
    stale_status, _ = invoke(dict(sample))
    assert stale_status == 400

    # When it is signed again now
    sample["headers"]["stripe-signature"] = f.sign(sample["body"])
    status, _ = invoke(sample)

    # Then it is queued
    assert status == 200
    client, queue_url = configured
    assert len(receive_all(client, queue_url)) == 1


def test_the_webhook_path_imports_only_what_its_route_uses(sqs_queue: tuple[Any, str]) -> None:
    # Given a fresh interpreter (the cold start) and a queue served over HTTP by moto
    _client, queue_url = sqs_queue
    stripe_event = f.event("checkout.session.completed", f.checkout_session())
    body = f.payload(stripe_event)
    # The event and context are built by hand: the test's helpers would load what we look for.
    event = webhook_event(body, [("Stripe-Signature", f.sign(body))])
    script = """
import json, sys
from functions.webhook import app
class Context:
    function_name = "WebhookFunction"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:000000000000:function:WebhookFunction"
    aws_request_id = "req-1"
    def get_remaining_time_in_millis(self):
        return 10_000
response = app.lambda_handler(json.loads(sys.stdin.read()), Context())
heavy = [m for m in HEAVY if m in sys.modules]
print(json.dumps({"status": response["statusCode"], "heavy": heavy}))
"""
    heavy = (
        "psycopg",
        "postgrest",
        "supabase",
        "sentry_sdk",
        "stripe",
        "httpx",
        "pydantic",
        "pydantic_settings",
        "botocore.session",
        "botocore.client",
        "aws_lambda_powertools.event_handler",
        "payments.settings",
        "payments.catalog",
    )
    child_env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT / 'shared'}:{ROOT}",
        "STRIPE_WEBHOOK_SECRET": f.WEBHOOK_SECRET,
        "WEBHOOK_QUEUE_URL": queue_url,
        "POWERTOOLS_TRACE_DISABLED": "1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    child_env.pop("SENTRY_DSN", None)

    # When it handles a request
    result = subprocess.run(
        [sys.executable, "-c", f"HEAVY = {heavy!r}\n{script}"],
        input=json.dumps(event),
        capture_output=True,
        text=True,
        env=child_env,
        cwd=ROOT,
        timeout=120,
        check=True,
    )

    # Then it queued the event without loading a database client, Sentry, the settings
    # model, the resolver or botocore's session machinery
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome == {"status": 200, "heavy": []}
    assert len(receive_all(_client, queue_url)) == 1


@pytest.mark.parametrize("store", ["secretsmanager", "ssm"])
def test_a_deployed_webhook_reads_its_signing_secret_from_where_its_arn_points(
    env: pytest.MonkeyPatch, sqs_queue: tuple[Any, str], moto_sqs: Any, store: str
) -> None:
    # Given a deployment: no secret in the environment, only where it is kept
    import boto3

    from payments.adapters.aws_secrets import webhook_secrets

    endpoint = moto_sqs.endpoint_url
    if store == "secretsmanager":
        client = boto3.client("secretsmanager", endpoint_url=endpoint)
        arn = client.create_secret(Name=f"whsec-{time.time_ns()}", SecretString=f.WEBHOOK_SECRET)[
            "ARN"
        ]
    else:
        client = boto3.client("ssm", endpoint_url=endpoint)
        name = f"/payments/whsec-{time.time_ns()}"
        client.put_parameter(Name=name, Value=f.WEBHOOK_SECRET, Type="SecureString")
        arn = client.get_parameter(Name=name)["Parameter"]["ARN"]
    env.setenv("STRIPE_WEBHOOK_SECRET_ARN", arn)
    env.setenv("WEBHOOK_QUEUE_URL", sqs_queue[1])
    webhook_secrets.clear()
    _, body = signed_completed_event()

    # When Stripe posts a signed event, then a forged one
    good, _ = invoke(webhook_event(body, [("Stripe-Signature", f.sign(body))]))
    forged, _ = invoke(webhook_event(body, [("Stripe-Signature", f.sign(body, secret="whsec_x"))]))

    # Then the secret was read (signed with the standard-library client) and checked
    assert (good, forged) == (200, 400)
    webhook_secrets.clear()


def test_a_signing_secret_that_cannot_be_read_fails_naming_its_variable(
    env: pytest.MonkeyPatch, sqs_queue: tuple[Any, str]
) -> None:
    from payments.adapters.aws_secrets import webhook_secrets

    env.setenv("STRIPE_WEBHOOK_SECRET_ARN", "arn:aws:secretsmanager:us-east-1:1:secret:gone")
    env.setenv("WEBHOOK_QUEUE_URL", sqs_queue[1])
    webhook_secrets.clear()
    _, body = signed_completed_event()

    status, answer = invoke(webhook_event(body, [("Stripe-Signature", f.sign(body))]))

    # Then it is a 500 (Stripe retries) naming the variable, like a missing one
    assert status == 500
    assert answer["error"]["code"] == "secret_unavailable"
    assert "STRIPE_WEBHOOK_SECRET" in answer["error"]["message"]
    webhook_secrets.clear()
