"""The envelope check of a Stripe event, for the webhook's hot path.

The webhook must refuse a signed body that is not a Stripe event (400, nothing queued) and
put the event's id and type on the message, and nothing more: it never interprets the event.
``payments.webhooks.parse_event`` does the same check but its module loads the catalog (and
pydantic) for the worker, which is a large share of a cold start the webhook does not need.
``tests/webhooks/test_stripe_envelope.py`` proves the two accept and refuse the same payloads
with the same message.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from payments.errors import InvalidRequest


class MalformedEnvelope(InvalidRequest):
    """A payload that is not a Stripe event: retrying it cannot help."""

    code = "malformed_event"


@dataclass(frozen=True)
class Envelope:
    id: str
    type: str


def check_envelope(body: str | bytes) -> Envelope:
    """The id and type of the Stripe event in ``body``, or ``MalformedEnvelope`` saying why."""
    try:
        raw = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise MalformedEnvelope("The payload is not JSON.") from None
    if not isinstance(raw, dict) or raw.get("object") != "event":
        raise MalformedEnvelope("The payload is not a Stripe event.")
    event_id, event_type, created = raw.get("id"), raw.get("type"), raw.get("created")
    if not isinstance(event_id, str) or not event_id.startswith("evt_"):
        raise MalformedEnvelope("The event has no valid id.")
    if not isinstance(event_type, str) or not event_type:
        raise MalformedEnvelope("The event has no type.")
    if not isinstance(created, int) or isinstance(created, bool) or created <= 0:
        raise MalformedEnvelope("The event has no valid created timestamp.")
    data = raw.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
        raise MalformedEnvelope("The event has no data.object.")
    return Envelope(id=event_id, type=event_type)
