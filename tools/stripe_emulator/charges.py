"""Payment intents, charges, refunds and disputes."""

from __future__ import annotations

from typing import Any

from tools.stripe_emulator import objects
from tools.stripe_emulator.errors import StripeError
from tools.stripe_emulator.events import changes, emit
from tools.stripe_emulator.expand import register_computed
from tools.stripe_emulator.state import (
    Store,
    deep_merge_metadata,
    match_created,
    new_id,
    paginate,
)

DECLINE_MESSAGE = "Your card was declined."
DELAYED_FAILURE_MESSAGE = "The customer's account has insufficient funds to cover this payment."
# Stripe's fee for a card dispute in the US, in cents.
DISPUTE_FEE = 1500


def new_intent(
    store: Store,
    *,
    amount: int,
    currency: str,
    customer_id: str | None,
    metadata: dict[str, str],
    description: str | None = None,
    receipt_email: str | None = None,
) -> dict[str, Any]:
    """Create a payment intent (``payment_intent.created``)."""
    intent = store.add(
        objects.payment_intent(
            store,
            amount=amount,
            currency=currency,
            customer_id=customer_id,
            metadata=metadata,
            description=description,
            receipt_email=receipt_email,
        )
    )
    emit(store, "payment_intent.created", intent)
    return intent


def attempt(
    store: Store,
    intent: dict[str, Any],
    outcome: str,
    *,
    email: str | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """Try to pay ``intent``: ``success``, ``decline`` (card 4000 0000 0000 0002) or
    ``delayed`` (a bank debit that settles later, see :func:`settle`).

    Returns the new charge. Emits the events Stripe sends for each outcome.
    """
    if outcome not in ("success", "decline", "delayed"):
        raise StripeError("outcome must be success, decline or delayed.", param="outcome")
    payment_method = new_id("pm_")
    status = {"success": "succeeded", "decline": "failed", "delayed": "pending"}[outcome]
    charge = objects.charge(
        store,
        intent,
        status=status,
        payment_method_id=payment_method,
        email=email,
        name=name,
        last4="0002" if outcome == "decline" else "4242",
    )
    if outcome == "delayed":
        charge["payment_method_details"] = {
            "type": "us_bank_account",
            "us_bank_account": {
                "account_holder_type": "individual",
                "account_type": "checking",
                "bank_name": "STRIPE TEST BANK",
                "fingerprint": charge["payment_method_details"]["card"]["fingerprint"],
                "last4": "6789",
                # The trace number the bank reports once the debit is sent.
                "payment_reference": None,
                "routing_number": "110000000",
            },
        }
        intent["payment_method_types"] = ["card", "us_bank_account"]
    store.add(charge)
    intent["latest_charge"] = charge["id"]
    if outcome == "success":
        _succeed(store, intent, charge)
    elif outcome == "decline":
        _fail(store, intent, charge, "card_declined", DECLINE_MESSAGE, "generic_decline")
    else:
        intent.update(status="processing", payment_method=payment_method)
        emit(store, "charge.pending", charge)
        emit(store, "payment_intent.processing", intent)
    return charge


def _succeed(store: Store, intent: dict[str, Any], charge: dict[str, Any]) -> None:
    """The payment succeeds. Payment intents capture asynchronously in this API version:
    ``charge.succeeded`` and ``payment_intent.succeeded`` carry no balance transaction, and
    ``charge.updated`` follows once it exists (Stripe's "Asynchronous capture" guide)."""
    charge.update(
        status="succeeded",
        paid=True,
        captured=True,
        amount_captured=charge["amount"],
        balance_transaction=None,
    )
    intent.update(
        status="succeeded",
        amount_received=intent["amount"],
        payment_method=charge["payment_method"],
        last_payment_error=None,
    )
    emit(store, "charge.succeeded", charge)
    emit(store, "payment_intent.succeeded", intent)
    before = store.snapshot(charge)
    charge["balance_transaction"] = new_id("txn_")
    emit(store, "charge.updated", charge, changes(before, charge))


def _fail(
    store: Store,
    intent: dict[str, Any],
    charge: dict[str, Any],
    code: str,
    message: str,
    decline_code: str | None,
) -> None:
    charge.update(
        status="failed",
        paid=False,
        captured=False,
        amount_captured=0,
        balance_transaction=None,
        failure_code=code,
        failure_message=message,
        outcome={
            "advice_code": None,
            "network_advice_code": None,
            "network_decline_code": None,
            "network_status": "declined_by_network",
            "reason": decline_code,
            "risk_level": "normal",
            "risk_score": 12,
            "seller_message": "The bank did not return any further details with this decline.",
            "type": "issuer_declined",
        },
    )
    method = objects.payment_method(
        store,
        details=charge["payment_method_details"],
        email=charge["billing_details"]["email"],
        name=charge["billing_details"]["name"],
        customer_id=intent["customer"],
    )
    method["id"] = charge["payment_method"]
    error: dict[str, Any] = {
        "charge": charge["id"],
        "code": code,
        "doc_url": "https://stripe.com/docs/error-codes/" + code.replace("_", "-"),
        "message": message,
        "payment_method": method,
        "type": "card_error",
    }
    if decline_code is not None:  # absent, not null, when the bank gave none
        error["decline_code"] = decline_code
    intent.update(status="requires_payment_method", payment_method=None, last_payment_error=error)
    emit(store, "charge.failed", charge)
    emit(store, "payment_intent.payment_failed", intent)


def settle(store: Store, intent: dict[str, Any], succeeded: bool) -> dict[str, Any]:
    """Finish a ``processing`` (delayed) payment, successfully or not."""
    if intent["status"] != "processing":
        raise StripeError(
            f"PaymentIntent {intent['id']} is not processing (status {intent['status']}).",
            code="payment_intent_unexpected_state",
        )
    charge = store.get(intent["latest_charge"], "charge")
    if succeeded:
        _succeed(store, intent, charge)
    else:
        _fail(store, intent, charge, "insufficient_funds", DELAYED_FAILURE_MESSAGE, None)
    return charge


def cancel_intent(store: Store, intent: dict[str, Any], reason: str) -> None:
    """Cancel an unpaid intent (``payment_intent.canceled``)."""
    if intent["status"] in ("succeeded", "canceled", "processing"):
        return
    intent.update(status="canceled", canceled_at=store.now(), cancellation_reason=reason)
    emit(store, "payment_intent.canceled", intent)


def list_intents(store: Store, params: dict[str, Any]) -> dict[str, Any]:
    """``GET /v1/payment_intents`` (``customer``, ``created``)."""
    items = store.all("payment_intent")
    if "customer" in params:
        items = [i for i in items if i["customer"] == params["customer"]]
    if "created" in params:
        items = [i for i in items if match_created(i, params["created"])]
    return paginate(items, params, "/v1/payment_intents")


def update_intent(store: Store, intent_id: str, params: dict[str, Any]) -> dict[str, Any]:
    """``POST /v1/payment_intents/{id}``: ``metadata``, ``description``, ``receipt_email``.

    Stripe has no event for this: there is no ``payment_intent.updated``."""
    intent = store.get(intent_id, "payment_intent")
    for field in ("description", "receipt_email"):
        if field in params:
            intent[field] = params[field] or None
    if "metadata" in params:
        intent["metadata"] = deep_merge_metadata(intent["metadata"], params["metadata"])
    return intent


def list_charges(store: Store, params: dict[str, Any]) -> dict[str, Any]:
    """``GET /v1/charges`` (``payment_intent``, ``customer``, ``created``)."""
    items = store.all("charge")
    for field in ("payment_intent", "customer"):
        if field in params:
            items = [c for c in items if c[field] == params[field]]
    if "created" in params:
        items = [c for c in items if match_created(c, params["created"])]
    return paginate(items, params, "/v1/charges")


# Refunds ----------------------------------------------------------------------------------


def _charge_refunds(store: Store, charge: dict[str, Any]) -> dict[str, Any]:
    """``expand[]=refunds`` on a charge: its refunds, newest first. Stripe leaves the list out
    of charges (and of every ``charge.*`` event) unless it is asked for."""
    data = [r for r in store.all("refund") if r["charge"] == charge["id"]]
    return {
        "object": "list",
        "data": data,
        "has_more": False,
        "url": f"/v1/charges/{charge['id']}/refunds",
    }


register_computed("charge", "refunds", _charge_refunds)


def _open_dispute(store: Store, charge: dict[str, Any]) -> dict[str, Any] | None:
    for dispute in store.all("dispute"):
        if dispute["charge"] == charge["id"] and dispute["status"] not in ("won", "lost"):
            return dispute
    return None


def create_refund(store: Store, params: dict[str, Any]) -> dict[str, Any]:
    """``POST /v1/refunds`` by ``payment_intent`` or ``charge``.

    ``amount`` defaults to what is left to refund; the sum of refunds that are pending or
    succeeded can never exceed the charge, with Stripe's errors (``charge_already_refunded``,
    ``amount_too_large``).
    """
    if not params.get("payment_intent") and not params.get("charge"):
        raise StripeError(
            "One of the following params should be provided for this request: "
            "payment_intent or charge.",
            code="parameter_missing",
        )
    charge: dict[str, Any] | None = None
    if params.get("charge"):
        charge = store.get(params["charge"], "charge", "charge")
    if params.get("payment_intent"):
        intent = store.get(params["payment_intent"], "payment_intent", "payment_intent")
        latest = store.objects.get(intent["latest_charge"] or "")
        if latest is None or latest["status"] != "succeeded":
            raise StripeError(
                f"This PaymentIntent ({intent['id']}) does not have a successful charge to refund.",
                code="charge_not_refundable",
                param="payment_intent",
            )
        if charge is not None and charge["id"] != latest["id"]:
            raise StripeError(
                f"The charge {charge['id']} does not belong to PaymentIntent {intent['id']}.",
                param="charge",
            )
        charge = latest
    assert charge is not None
    if charge["status"] != "succeeded":
        raise StripeError(
            f"Charge {charge['id']} has not succeeded and cannot be refunded.",
            code="charge_not_refundable",
        )
    if _open_dispute(store, charge) is not None:
        raise StripeError(
            f"Charge {charge['id']} has been charged back; cannot issue a refund.",
            code="charge_disputed",
        )
    remaining = charge["amount"] - charge["amount_refunded"]
    if remaining <= 0:
        raise StripeError(
            f"Charge {charge['id']} has already been refunded.",
            code="charge_already_refunded",
        )
    amount = params.get("amount", remaining)
    if amount < 1:
        raise StripeError(
            "Invalid positive integer", code="parameter_invalid_integer", param="amount"
        )
    if amount > remaining:
        currency = charge["currency"]
        raise StripeError(
            f"Refund amount ({objects.format_amount(amount, currency)}) is greater than "
            f"unrefunded amount on charge ({objects.format_amount(remaining, currency)})",
            code="amount_too_large",
            param="amount",
        )
    status = "succeeded"
    if store.refund_next_status:
        status = store.refund_next_status
        if store.refund_next_count is not None:
            store.refund_next_count -= 1
            if store.refund_next_count <= 0:
                store.refund_next_status = store.refund_next_count = None
    refund = objects.refund(
        store,
        charge,
        amount=amount,
        status=status,
        reason=params.get("reason"),
        metadata=dict(params.get("metadata") or {}),
    )
    if status == "succeeded":
        refund["destination_details"]["card"]["reference_status"] = "available"
        refund["destination_details"]["card"]["reference"] = new_id("")[:12]
    store.add(refund)
    before = store.snapshot(charge)
    charge["amount_refunded"] += amount
    charge["refunded"] = charge["amount_refunded"] >= charge["amount"]
    emit(store, "refund.created", refund)
    emit(store, "charge.refunded", charge, changes(before, charge))
    return refund


def settle_refund(store: Store, refund_id: str, status: str) -> dict[str, Any]:
    """Finish a pending refund (test helper): ``succeeded`` or ``failed``."""
    refund = store.get(refund_id, "refund")
    if status not in ("succeeded", "failed"):
        raise StripeError("status must be succeeded or failed.", param="status")
    if refund["status"] != "pending":
        raise StripeError(
            f"Refund {refund_id} is not pending (status {refund['status']}).",
            code="refund_unexpected_state",
        )
    before = store.snapshot(refund)
    refund["status"] = status
    if status == "succeeded":
        refund["destination_details"]["card"].update(
            reference_status="available", reference=new_id("")[:12]
        )
        _refund_updated(store, refund, before)
        return refund
    refund["failure_reason"] = "expired_or_canceled_card"
    refund["failure_balance_transaction"] = new_id("txn_")
    refund["destination_details"]["card"]["reference_status"] = "unavailable"
    charge = store.get(refund["charge"], "charge")
    charge["amount_refunded"] -= refund["amount"]
    charge["refunded"] = False
    _refund_updated(store, refund, before)
    emit(store, "refund.failed", refund)
    return refund


def _refund_updated(store: Store, refund: dict[str, Any], before: dict[str, Any]) -> None:
    """A refund changed: ``refund.updated``, and ``charge.refund.updated`` as Stripe also sends
    for refunds of card payments."""
    diff = changes(before, refund)
    emit(store, "refund.updated", refund, diff)
    emit(store, "charge.refund.updated", refund, diff)


def update_refund(store: Store, refund_id: str, params: dict[str, Any]) -> dict[str, Any]:
    """``POST /v1/refunds/{id}`` (metadata)."""
    refund = store.get(refund_id, "refund")
    before = store.snapshot(refund)
    if "metadata" in params:
        refund["metadata"] = deep_merge_metadata(refund["metadata"], params["metadata"])
    if changes(before, refund):
        _refund_updated(store, refund, before)
    return refund


def list_refunds(store: Store, params: dict[str, Any]) -> dict[str, Any]:
    """``GET /v1/refunds`` (``payment_intent``, ``charge``, ``created``)."""
    items = store.all("refund")
    for field in ("payment_intent", "charge"):
        if field in params:
            items = [r for r in items if r[field] == params[field]]
    if "created" in params:
        items = [r for r in items if match_created(r, params["created"])]
    return paginate(items, params, "/v1/refunds")


# Disputes ---------------------------------------------------------------------------------


def open_dispute(store: Store, spec: dict[str, Any]) -> dict[str, Any]:
    """Test helper: the cardholder disputes a charge (``charge.dispute.created``)."""
    if spec.get("charge"):
        charge = store.get(spec["charge"], "charge", "charge")
    elif spec.get("payment_intent"):
        intent = store.get(spec["payment_intent"], "payment_intent", "payment_intent")
        charge = store.get(intent["latest_charge"], "charge", "payment_intent")
    else:
        raise StripeError("Give a charge or a payment_intent to dispute.", param="charge")
    if charge["status"] != "succeeded":
        raise StripeError(f"Charge {charge['id']} was not paid.", param="charge")
    if _open_dispute(store, charge) is not None:
        raise StripeError(f"Charge {charge['id']} is already disputed.", param="charge")
    amount = int(spec.get("amount", charge["amount"]))
    if not 1 <= amount <= charge["amount"]:
        raise StripeError("amount must be between 1 and the charge amount.", param="amount")
    due_by = int(spec.get("due_by", store.now() + 7 * 86400))
    dispute = store.add(
        objects.dispute(
            store, charge, amount=amount, reason=spec.get("reason", "fraudulent"), due_by=due_by
        )
    )
    charge["disputed"] = True
    # The disputed amount and the dispute fee leave the balance at once.
    dispute["balance_transactions"].append(
        objects.balance_transaction(
            store,
            amount=-amount,
            currency=dispute["currency"],
            source=dispute["id"],
            type="adjustment",
            reporting_category="dispute",
            description=f"Chargeback withdrawal for {charge['id']}",
            fee=DISPUTE_FEE,
            fee_description="Dispute fee",
        )
    )
    emit(store, "charge.dispute.created", dispute)
    emit(store, "charge.dispute.funds_withdrawn", dispute)
    return dispute


def close_dispute(store: Store, dispute_id: str, status: str) -> dict[str, Any]:
    """Close a dispute as ``won`` or ``lost`` (``charge.dispute.closed``)."""
    dispute = store.get(dispute_id, "dispute")
    if status not in ("won", "lost", "warning_closed"):
        raise StripeError("status must be won, lost or warning_closed.", param="status")
    if dispute["status"] in ("won", "lost", "warning_closed"):
        raise StripeError(f"Dispute {dispute_id} is already closed.", param="status")
    before = store.snapshot(dispute)
    dispute["status"] = status
    emit(store, "charge.dispute.closed", dispute, changes(before, dispute))
    if status == "won":
        # Winning gives the disputed amount back.
        before = store.snapshot(dispute)
        dispute["balance_transactions"].append(
            objects.balance_transaction(
                store,
                amount=dispute["amount"],
                currency=dispute["currency"],
                source=dispute["id"],
                type="adjustment",
                reporting_category="dispute_reversal",
                description=f"Chargeback reversal for {dispute['charge']}",
            )
        )
        emit(store, "charge.dispute.funds_reinstated", dispute, changes(before, dispute))
    return dispute


def update_dispute(store: Store, dispute_id: str, params: dict[str, Any]) -> dict[str, Any]:
    """``POST /v1/disputes/{id}``: ``metadata``, ``evidence`` and ``submit``."""
    dispute = store.get(dispute_id, "dispute")
    before = store.snapshot(dispute)
    if "metadata" in params:
        dispute["metadata"] = deep_merge_metadata(dispute["metadata"], params["metadata"])
    for key, value in (params.get("evidence") or {}).items():
        if isinstance(value, str):
            dispute["evidence"][key] = value or None
    if params.get("evidence"):
        dispute["evidence_details"]["has_evidence"] = True
    if params.get("submit", True) and params.get("evidence"):
        dispute["status"] = "under_review"
        dispute["evidence_details"]["submission_count"] += 1
        dispute["evidence_details"]["submission_method"] = "manual"
    diff = changes(before, dispute)
    if diff:
        emit(store, "charge.dispute.updated", dispute, diff)
    return dispute


def list_disputes(store: Store, params: dict[str, Any]) -> dict[str, Any]:
    """``GET /v1/disputes`` (``charge``, ``payment_intent``, ``created``)."""
    items = store.all("dispute")
    for field in ("charge", "payment_intent"):
        if field in params:
            items = [d for d in items if d[field] == params[field]]
    if "created" in params:
        items = [d for d in items if match_created(d, params["created"])]
    return paginate(items, params, "/v1/disputes")
