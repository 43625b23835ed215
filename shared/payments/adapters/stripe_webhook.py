"""Stripe webhook signature verification, with the stripe library, on the raw body.

Kept apart from ``stripe_service`` so the webhook Lambda imports only what checks a signature:
no API client is ever built on that path. Every ``v1`` signature in the header is tried against
every configured secret (the current one and, during a rotation, the previous one), with
Stripe's default tolerance on the timestamp.
"""

from __future__ import annotations

from collections.abc import Sequence

from stripe import SignatureVerificationError, Webhook, WebhookSignature

from payments import errors

TOLERANCE_SECONDS: int = Webhook.DEFAULT_TOLERANCE


class InvalidSignature(errors.InvalidRequest):
    code = "invalid_signature"
    default_message = "The Stripe signature is missing, invalid or too old."


def verify_signature(
    payload: str, header: str, secrets: Sequence[str], *, tolerance: int = TOLERANCE_SECONDS
) -> None:
    """Return if ``header`` signs ``payload`` with one of ``secrets``; else ``InvalidSignature``.

    The stripe error carries the header and the body: it is dropped here (``from None``) so
    neither can reach a log line or an error report through the exception chain.
    """
    for secret in secrets:
        try:
            WebhookSignature.verify_header(payload, header, secret, tolerance)
        except SignatureVerificationError:
            continue
        return
    raise InvalidSignature() from None
