from __future__ import annotations

import io
import json

import pytest
from aws_lambda_powertools import Logger

from payments.observability import ScrubbingFormatter, _before_send
from payments.scrub import REDACTED, scrub_text

pytestmark = pytest.mark.unit

# Built from parts so that no secret-shaped literal sits in the repository.
LIVE = "live_"
SECRETS = [
    "sk_" + LIVE + "51Habcdefghijklmnop",
    "sk_test_51Habcdefghijklmnop",
    "rk_" + LIVE + "51Habcdefghijkl",
    "whsec_" + "abcdefghijklmnopqrstuvwx",
    "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJtZW0ifQ.c2lnbmF0dXJl",
    "t=1700000000,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd",
    "jane.doe@example.com",
    "4242 4242 4242 4242",
    "4000000000000002",
]


@pytest.mark.parametrize("secret", SECRETS)
def test_secret_like_text_is_redacted(secret: str) -> None:
    assert secret not in scrub_text(f"context {secret} more")


def test_ordinary_ids_and_amounts_survive() -> None:
    text = "refund re_3Mtw amount 9900 for pi_3MtwBw on 2026-11-26 member mem_abc123"
    assert scrub_text(text) == text


def test_log_lines_never_contain_secrets_even_in_extra_fields() -> None:
    stream = io.StringIO()
    log = Logger(service="t", stream=stream, logger_formatter=ScrubbingFormatter())
    log.info(
        "calling stripe with sk_test_51Habcdefghijklmnop",
        extra={"authorization": "Bearer abcdefghijklmnop", "email": "a@b.co"},
    )
    line = stream.getvalue()
    assert "sk_test_51H" not in line
    assert "abcdefghijklmnop" not in line
    assert "a@b.co" not in line
    assert json.loads(line)["message"] == f"calling stripe with {REDACTED}"


def test_sentry_events_are_scrubbed_by_key_and_by_value() -> None:
    event = {
        "request": {"headers": {"Stripe-Signature": "t=1,v1=abc", "X-Api-Key": "k"}},
        "extra": {"note": "customer jane@example.com paid"},
        "exception": {"values": [{"value": "bad key " + SECRETS[0]}]},
    }
    cleaned = _before_send(event, {})
    assert cleaned["request"]["headers"] == {"Stripe-Signature": REDACTED, "X-Api-Key": REDACTED}
    assert "jane@example.com" not in json.dumps(cleaned)
    assert "sk_" + LIVE not in json.dumps(cleaned)
