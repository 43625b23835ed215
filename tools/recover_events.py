"""Push the Stripe events whose webhook delivery failed back through the webhook queue.

    python -m tools.recover_events                 # last 30 days (STRIPE_SECRET_KEY)
    python -m tools.recover_events --days 3 --dry-run

Stripe keeps retrying a failed delivery for three days, then gives up; ``events.list`` with
``delivery_success=false`` finds those events. Each is sent to ``WEBHOOK_QUEUE_URL`` exactly as
the webhook function would (raw event JSON, ``stripe_event_id``/``stripe_event_type``
attributes). The events come from Stripe's API with our secret key, so no signature is needed.
Re-running is safe: the worker applies an event id once and ignores repeats. Stripe keeps an
event marked undelivered after it was recovered this way (its own delivery to the endpoint
still failed), so a second run lists and queues it again, and the worker's ledger records it as
a duplicate.

Stripe lists an event at the API version the account had when the event was created, not at
the version the service is pinned to (the SDK's, which the webhook endpoint also uses). An
event of another version is queued with its id, type and time, and its object re-read from
Stripe at the pinned version (what the reconciler does too); one whose object cannot be read
is left out and named.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import stripe
from botocore.exceptions import BotoCoreError, ClientError

from payments.adapters.queue import EventQueue, QueueUnavailable, sqs_client
from tools.redrive_dlq import missing_region, sqs_problem


def failed_events(client: stripe.StripeClient, days: int) -> Iterator[dict[str, Any]]:
    """Events created in the last ``days`` days whose delivery to some endpoint failed."""
    since = int(time.time()) - days * 86400
    page = client.v1.events.list(
        params={"delivery_success": False, "created": {"gte": since}, "limit": 100}
    )
    for event in page.auto_paging_iter():
        raw: dict[str, Any] = json.loads(str(event))
        yield raw


# The objects the worker's events carry, by their ``object``: how to read each one now.
_READERS: dict[str, Callable[[stripe.StripeClient, str], Any]] = {
    "checkout.session": lambda c, i: c.v1.checkout.sessions.retrieve(i),
    "payment_intent": lambda c, i: c.v1.payment_intents.retrieve(i),
    "charge": lambda c, i: c.v1.charges.retrieve(i),
    "refund": lambda c, i: c.v1.refunds.retrieve(i),
    "dispute": lambda c, i: c.v1.disputes.retrieve(i),
    "subscription": lambda c, i: c.v1.subscriptions.retrieve(i),
    "invoice": lambda c, i: c.v1.invoices.retrieve(i),
}


def at_pinned_version(client: stripe.StripeClient, event: dict[str, Any]) -> dict[str, Any] | None:
    """The event as the webhook endpoint would carry it: itself when it is at the pinned API
    version, else with its object read now at that version; None if it cannot be read."""
    version = event.get("api_version")
    if version is None or version == stripe.api_version:
        return event
    obj = (event.get("data") or {}).get("object") or {}
    reader = _READERS.get(str(obj.get("object")))
    if reader is None or not obj.get("id"):
        return None
    try:
        current: dict[str, Any] = json.loads(str(reader(client, str(obj["id"]))))
    except stripe.InvalidRequestError:
        return None
    return {**event, "api_version": stripe.api_version, "data": {"object": current}}


def recover(
    client: stripe.StripeClient, queue: EventQueue | None, *, days: int = 30, dry_run: bool = False
) -> int:
    """Queue (or, dry, list) every undelivered event; return how many."""
    count = 0
    for listed in failed_events(client, days):
        label = f"{listed['id']} ({listed['type']})"
        event = at_pinned_version(client, listed)
        if event is None:
            print(
                f"left out {label}: listed at API version {listed.get('api_version')}, and its"
                f" object cannot be read at {stripe.api_version}",
                file=sys.stderr,
                flush=True,
            )
            continue
        count += 1
        if event is not listed:
            label += f", its object re-read at API version {stripe.api_version}"
        if dry_run or queue is None:
            print(f"would queue {label}")
            continue
        queue.send_event(json.dumps(event), event_id=event["id"], event_type=event["type"])
        print(f"queued {label}", flush=True)
    verb = "would queue" if dry_run else "queued"
    print(f"{verb} {count} undelivered event(s) from the last {days} day(s)", flush=True)
    return count


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.recover_events",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--dry-run", action="store_true", help="list, queue nothing")
    parser.add_argument("--days", type=int, default=30, help="how far back (default 30)")
    args = parser.parse_args(argv)
    api_key = os.environ.get("STRIPE_SECRET_KEY")
    queue_url = os.environ.get("WEBHOOK_QUEUE_URL")
    if not api_key:
        parser.error("set STRIPE_SECRET_KEY")
    if not queue_url and not args.dry_run:
        parser.error("set WEBHOOK_QUEUE_URL")
    if queue_url and not args.dry_run:
        problem = missing_region()
        if problem:
            print(f"recover_events: {problem}", file=sys.stderr)
            return 2
    api_base = os.environ.get("STRIPE_API_BASE")
    client = stripe.StripeClient(
        api_key, base_addresses={"api": api_base} if api_base else {}, max_network_retries=2
    )
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    try:
        queue = (
            EventQueue(queue_url, sqs_client(endpoint)) if queue_url and not args.dry_run else None
        )
        recover(client, queue, days=args.days, dry_run=args.dry_run)
    except stripe.APIConnectionError:
        where = api_base or "api.stripe.com"
        hint = ": is make dev running?" if api_base else ""
        print(f"recover_events: cannot reach Stripe at {where}{hint}", file=sys.stderr)
        return 1
    except stripe.StripeError as exc:
        print(
            f"recover_events: Stripe refused the call: {exc.user_message or exc}", file=sys.stderr
        )
        return 1
    except QueueUnavailable as exc:
        cause = exc.__cause__
        detail = (
            sqs_problem(cause, queue_url or "", endpoint)
            if isinstance(cause, BotoCoreError | ClientError)
            else "the queue refused the event"
        )
        print(f"recover_events: {detail}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
