"""Stripe subscription calls: retrieve, preview a change, change, cancel, pause, resume.

Every request goes through ``StripeService.call`` (bounded retries, Stripe errors turned into
domain errors) and every POST carries the caller's idempotency key. Nothing above this module
sees a ``stripe`` type: results come back as ``payments.subscription_models`` values.
"""

from __future__ import annotations

import uuid
from functools import lru_cache

import stripe

from payments.adapters.stripe_service import StripeService, get_stripe
from payments.settings import Settings
from payments.subscription_models import (
    InvoicePreview,
    PauseBehavior,
    PreviewLine,
    ProrationBehavior,
    StripeSubscription,
)


class StripeSubscriptions:
    """The subscription endpoints the service uses, on the container's ``StripeService``."""

    def __init__(self, service: StripeService) -> None:
        self._service = service
        self._v1 = service.client.v1

    def retrieve(self, subscription_id: str) -> StripeSubscription:
        # The latest invoice tells whether the period running now was billed (a resume after
        # a pause that voided its invoice must bill it).
        found = self._service.call(
            "subscriptions.retrieve",
            lambda: self._v1.subscriptions.retrieve(
                subscription_id, params={"expand": ["latest_invoice"]}
            ),
        )
        return _subscription(found)

    def preview_change(
        self,
        subscription_id: str,
        *,
        item_id: str,
        price_id: str,
        proration_date: int,
        proration_behavior: ProrationBehavior,
    ) -> InvoicePreview:
        params: stripe.params.InvoiceCreatePreviewParams = {
            "subscription": subscription_id,
            "subscription_details": {
                "items": [{"id": item_id, "price": price_id}],
                "proration_date": proration_date,
                "proration_behavior": proration_behavior,
            },
        }
        # A read, but a POST: it carries a key like every other. One per preview, shared by
        # its retries only: the same question asked after the plan changed must be answered
        # anew, not replayed.
        key = f"preview:{subscription_id}:{uuid.uuid4().hex}"
        invoice = self._service.call(
            "invoices.create_preview",
            lambda: self._v1.invoices.create_preview(
                params=params, options={"idempotency_key": key}
            ),
        )
        return InvoicePreview(
            currency=invoice.currency,
            total=invoice.total,
            amount_due=invoice.amount_due,
            ending_balance=invoice.ending_balance or 0,
            lines=tuple(
                PreviewLine(
                    description=line.description or "",
                    amount=line.amount,
                    proration=_is_proration(line),
                )
                for line in invoice.lines.data
            ),
        )

    def change_price(
        self,
        subscription_id: str,
        *,
        item_id: str,
        price_id: str,
        proration_behavior: ProrationBehavior,
        proration_date: int,
        metadata: dict[str, str],
        idempotency_key: str,
    ) -> StripeSubscription:
        params: stripe.params.SubscriptionUpdateParams = {
            "items": [{"id": item_id, "price": price_id}],
            "proration_behavior": proration_behavior,
            "proration_date": proration_date,
            "metadata": metadata,
        }
        return self._update(subscription_id, params, idempotency_key)

    def cancel_at_period_end(
        self, subscription_id: str, idempotency_key: str
    ) -> StripeSubscription:
        return self._update(subscription_id, {"cancel_at_period_end": True}, idempotency_key)

    def cancel_now(self, subscription_id: str, idempotency_key: str) -> StripeSubscription:
        canceled = self._service.call(
            "subscriptions.cancel",
            lambda: self._v1.subscriptions.cancel(
                subscription_id, options={"idempotency_key": idempotency_key}
            ),
        )
        return _subscription(canceled)

    def pause_collection(
        self,
        subscription_id: str,
        *,
        behavior: PauseBehavior,
        resumes_at: int | None,
        idempotency_key: str,
    ) -> StripeSubscription:
        pause: stripe.params.SubscriptionUpdateParamsPauseCollection = {"behavior": behavior}
        if resumes_at is not None:
            pause["resumes_at"] = resumes_at
        return self._update(subscription_id, {"pause_collection": pause}, idempotency_key)

    def clear_pause_and_cancellation(
        self,
        subscription_id: str,
        *,
        clear_cancel: bool,
        restart_period: bool,
        idempotency_key: str,
    ) -> StripeSubscription:
        params: stripe.params.SubscriptionUpdateParams = {"pause_collection": ""}
        if clear_cancel:
            params["cancel_at_period_end"] = False
        if restart_period:
            # A new period from now, invoiced in full at once; no credit for the unpaid one.
            params["billing_cycle_anchor"] = {"type": "now"}
            params["proration_behavior"] = "none"
        return self._update(subscription_id, params, idempotency_key)

    def resume_paused(self, subscription_id: str, idempotency_key: str) -> StripeSubscription:
        """Resume a subscription whose *status* is ``paused`` (Stripe's resume endpoint)."""
        resumed = self._service.call(
            "subscriptions.resume",
            lambda: self._v1.subscriptions.resume(
                subscription_id,
                params={"billing_cycle_anchor": {"type": "now"}},
                options={"idempotency_key": idempotency_key},
            ),
        )
        return _subscription(resumed)

    def _update(
        self,
        subscription_id: str,
        params: stripe.params.SubscriptionUpdateParams,
        idempotency_key: str,
    ) -> StripeSubscription:
        updated = self._service.call(
            "subscriptions.update",
            lambda: self._v1.subscriptions.update(
                subscription_id, params=params, options={"idempotency_key": idempotency_key}
            ),
        )
        return _subscription(updated)


def _is_proration(line: stripe.InvoiceLineItem) -> bool:
    parent = line.parent
    if parent is None:
        return False
    for details in (parent.subscription_item_details, parent.invoice_item_details):
        if details is not None and details.proration:
            return True
    return False


def _subscription(sub: stripe.Subscription) -> StripeSubscription:
    items = sub["items"].data
    item = items[0] if items else None
    price = item.price if item is not None else None
    pause = sub.pause_collection
    customer = sub.customer if isinstance(sub.customer, str) else sub.customer.id
    latest = sub.latest_invoice
    metadata = sub.metadata.to_dict() if sub.metadata is not None else {}
    member = metadata.get("member_id")
    return StripeSubscription(
        id=sub.id,
        customer=customer,
        status=sub.status,
        item_id=item.id if item is not None else None,
        price_id=price.id if price is not None else None,
        price_lookup_key=price.lookup_key if price is not None else None,
        # Periods live on the items since API version 2025-03-31.
        current_period_start=item.current_period_start if item is not None else None,
        current_period_end=item.current_period_end if item is not None else None,
        cancel_at_period_end=bool(sub.cancel_at_period_end),
        pause_behavior=pause.behavior if pause is not None else None,
        resumes_at=pause.resumes_at if pause is not None else None,
        member_id=member or None,
        latest_invoice_status=None if latest is None or isinstance(latest, str) else latest.status,
    )


@lru_cache(maxsize=1)
def _subscriptions(service: StripeService) -> StripeSubscriptions:
    return StripeSubscriptions(service)


def get_stripe_subscriptions(settings: Settings) -> StripeSubscriptions:
    """The container's subscription adapter, on its one Stripe client."""
    return _subscriptions(get_stripe(settings))
