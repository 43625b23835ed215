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


@pytest.mark.parametrize(
    "secret",
    [
        "sb_secret_" + "N7UnzbpAfRkZ9xq2DkqTXw_RqlfYGrd",
        "pi_3MtwBwLkdIwHu7ix28a3tqPa_secret_YrKJUKribcBjcG8HVhfZluoGH",
        "https://hook.eu1.make.com/abcd1234efgh5678ijkl",
        "postgresql://postgres:s3cr3t-pass@db.abcdefg.supabase.co:5432/postgres",
        "host=db.example dbname=payments user=svc password=s3cr3t-pass",
    ],
)
def test_more_secret_shapes_are_redacted(secret: str) -> None:
    assert secret.split("@")[0].split("=")[-1][-8:] not in scrub_text(f"failed: {secret} .")


@pytest.mark.parametrize("key", ["url", "database_url", "DATABASE_URL", "conninfo", "bearer",
                                 "make_webhook_url", "webhook_url"])  # fmt: skip
def test_values_under_connection_and_address_keys_are_redacted(key: str) -> None:
    from payments.scrub import scrub

    assert scrub({key: "anything at all"}) == {key: REDACTED}


def test_sentry_never_sends_the_local_variables_of_stack_frames(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sentry_sdk

    from payments import observability
    from payments.settings import Settings

    seen: dict[str, object] = {}
    monkeypatch.setattr(sentry_sdk, "init", lambda **options: seen.update(options))
    monkeypatch.setattr(observability, "_sentry_started", False)
    observability.init_sentry(Settings(sentry_dsn="https://public@127.0.0.1/1"))
    monkeypatch.setattr(observability, "_sentry_started", False)
    assert seen["include_local_variables"] is False
    assert seen["send_default_pii"] is False
