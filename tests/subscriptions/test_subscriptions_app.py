"""The subscriptions function end to end: the handler, the Stripe emulator, the Memberstack
stand-in, the real Postgres and the webhook worker that keeps the subscriptions table."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from payments.subscriptions import Quote, quote_secret, sign_quote
from tests.stack import *  # noqa: F403
from tests.stack import STRIPE_KEY, Stack, api
from tests.subscriptions.conftest import (
    act,
    action_logs,
    call,
    customer_events,
    deliver,
    run_worker,
    stripe_get,
    stripe_subscription,
    subscribe,
    subscription_row,
)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("worker_env")]


def _price(subscription: dict[str, Any]) -> dict[str, Any]:
    price: dict[str, Any] = subscription["items"]["data"][0]["price"]
    return price


def _pending_items(stack: Stack, customer: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = stripe_get(
        stack, "/v1/invoiceitems", customer=customer, pending="true", limit=100
    )["data"]
    return items


def _deliver_completion(stack: Stack, customer: str) -> None:
    """Only the checkout's completion: the worker learns whose customer it is."""
    run_worker(
        [e for e in customer_events(stack, customer) if e["type"] == "checkout.session.completed"]
    )


# --- subscribe ------------------------------------------------------------------------------


def test_a_paid_subscription_checkout_becomes_the_members_subscription(
    stack: Stack, db: str, member: str
) -> None:
    # Given a member starting a subscription
    answer = call(stack, member, "POST", "/v1/subscriptions", {"product": "growth_monthly"})
    assert answer.status == 201
    session = stripe_get(stack, f"/v1/checkout/sessions/{answer.body['id']}")
    assert session["mode"] == "subscription"
    assert session["metadata"]["member_id"] == member
    assert session["metadata"]["product"] == "growth_monthly"
    assert answer.body["url"] == session["url"]

    # When the member pays and the worker applies Stripe's events
    paid = stack.emulator_call(
        "POST", f"/_emulator/checkout/sessions/{session['id']}/pay", json={"outcome": "success"}
    )
    deliver(stack, paid["customer"])

    # Then the member's subscriptions list it
    listed = call(stack, member, "GET", "/v1/me/subscriptions")
    assert listed.status == 200
    assert listed.headers.get("Cache-Control") == "no-store"
    (only,) = listed.body["subscriptions"]
    assert only["id"] == paid["subscription"]
    assert only["product"] == "growth_monthly"
    assert only["status"] == "active"
    assert only["paused"] is False
    assert only["cancel_at_period_end"] is False
    assert only["current_period_end"] is not None


def test_a_member_holding_a_plan_changes_it_rather_than_subscribing_again(
    stack: Stack, db: str, member: str
) -> None:
    # Given a member subscribed to growth
    subscribe(stack, member, "growth_monthly")

    # When they subscribe to growth again, or to scale
    again = call(stack, member, "POST", "/v1/subscriptions", {"product": "growth_monthly"})
    other = call(stack, member, "POST", "/v1/subscriptions", {"product": "scale_monthly"})

    # Then both are refused before Stripe: one live subscription per member
    assert (again.status, other.status) == (409, 409)
    assert again.body["error"]["code"] == other.body["error"]["code"] == "subscription_exists"
    assert stack.stripe_calls("POST /v1/checkout/sessions") == 1


def test_a_canceled_plan_can_be_subscribed_to_again(stack: Stack, db: str, member: str) -> None:
    sub = subscribe(stack, member)
    assert act(stack, member, sub.subscription, "cancel", {"at_period_end": False}).status == 200
    deliver(stack, sub.customer)

    answer = call(stack, member, "POST", "/v1/subscriptions", {"product": "growth_monthly"})

    assert answer.status == 201


@pytest.mark.parametrize("product", ["no_such_plan", "business_plan_builder"])
def test_subscribing_to_anything_but_a_plan_is_a_400(
    stack: Stack, member: str, product: str
) -> None:
    answer = call(stack, member, "POST", "/v1/subscriptions", {"product": product})

    assert answer.status == 400
    assert answer.body["error"]["code"] == "unknown_product"
    assert "growth_monthly" in answer.body["error"]["message"]
    assert stack.stripe_calls("POST /v1/checkout/sessions") == 0


# --- preview and change ---------------------------------------------------------------------


def test_an_upgrade_with_its_quote_bills_exactly_the_previewed_amount_at_once(
    stack: Stack, db: str, member: str
) -> None:
    # Given a growth subscriber who previews moving up to scale
    sub = subscribe(stack, member, "growth_monthly")
    first_invoice = stripe_subscription(stack, sub.subscription)["latest_invoice"]
    preview = act(stack, member, sub.subscription, "preview-change", {"product": "scale_monthly"})
    assert preview.status == 200
    shown = preview.body
    # The service decided: an upgrade is invoiced at once
    assert shown["proration_behavior"] == "always_invoice"
    assert shown["amount_due_now"] > 0
    assert shown["next_renewal_amount"] == 7900
    assert shown["quote"]
    expires = datetime.fromisoformat(shown["quote_expires_at"])
    assert 0 < (expires - datetime.now(UTC)).total_seconds() <= 600

    # When the member confirms with the quote
    changed = act(
        stack,
        member,
        sub.subscription,
        "change",
        {"product": "scale_monthly", "quote": shown["quote"]},
    )

    # Then Stripe billed exactly the previewed amount, at the previewed date
    assert changed.status == 200
    assert changed.body["product"] == "scale_monthly"
    assert changed.body["proration_date"] == shown["proration_date"]
    invoice_id = stripe_subscription(stack, sub.subscription)["latest_invoice"]
    assert invoice_id != first_invoice
    invoice = stripe_get(stack, f"/v1/invoices/{invoice_id}")
    assert invoice["amount_due"] == shown["amount_due_now"]
    assert invoice["status"] == "paid"
    assert _pending_items(stack, sub.customer) == []
    # And the worker, from Stripe's events, records the new plan
    deliver(stack, sub.customer)
    assert subscription_row(db, sub.subscription)["product"] == "scale_monthly"  # type: ignore[index]


def test_a_downgrade_with_its_quote_credits_exactly_the_previewed_prorations(
    stack: Stack, db: str, member: str
) -> None:
    # Given a scale subscriber who previews moving down to growth
    sub = subscribe(stack, member, "scale_monthly")
    preview = act(stack, member, sub.subscription, "preview-change", {"product": "growth_monthly"})
    shown = preview.body
    prorations = [line for line in shown["lines"] if line["proration"]]
    # The service decided: a downgrade credits the next renewal, nothing is due now
    assert shown["proration_behavior"] == "create_prorations"
    assert shown["amount_due_now"] == 0
    assert shown["proration_amount"] == sum(line["amount"] for line in prorations) < 0
    assert shown["next_renewal_amount"] == max(0, 2900 + shown["proration_amount"])

    # When the member confirms with the quote
    changed = act(
        stack,
        member,
        sub.subscription,
        "change",
        {"product": "growth_monthly", "quote": shown["quote"]},
    )

    # Then Stripe holds exactly the previewed prorations for the next invoice
    assert changed.status == 200
    pending = _pending_items(stack, sub.customer)
    assert sorted(i["amount"] for i in pending) == sorted(line["amount"] for line in prorations)


@pytest.mark.parametrize(
    "extra",
    [
        {"proration_behavior": "none"},
        {"proration_behavior": "create_prorations"},
        {"proration_date": 1},
    ],
)
def test_a_member_cannot_choose_how_a_change_is_billed(
    stack: Stack, db: str, member: str, extra: dict[str, Any]
) -> None:
    sub = subscribe(stack, member, "growth_monthly")
    for action in ("preview-change", "change"):
        answer = act(stack, member, sub.subscription, action, {"product": "scale_monthly", **extra})
        assert answer.status == 400
        assert answer.body["error"]["code"] == "invalid_request"
    assert stack.stripe_calls(f"POST /v1/subscriptions/{sub.subscription}") == 0
    assert stack.stripe_calls("POST /v1/invoices/create_preview") == 0


def _forged_quote(sub: Any, member: str, **overrides: Any) -> str:
    """A quote signed with the deployment's own secret, as the service would sign it."""
    current = stripe_subscription(sub[0], sub[1].subscription)
    item = current["items"]["data"][0]
    fields: dict[str, Any] = {
        "member": member,
        "subscription": sub[1].subscription,
        "from_price": item["price"]["id"],
        "product": "scale_monthly",
        "proration_date": item["current_period_start"] + 60,
        "behavior": "none",
        "expires_at": int(time.time()) + 300,
    }
    fields.update(overrides)
    return sign_quote(quote_secret(None, STRIPE_KEY), Quote(**fields))


@pytest.mark.parametrize("case", ["expired", "other_member", "tampered", "left_the_period"])
def test_a_quote_that_is_not_this_change_is_a_409_and_nothing_is_billed(
    stack: Stack, db: str, member: str, case: str
) -> None:
    # Given a growth subscriber and a quote that does not price this change
    sub = subscribe(stack, member, "growth_monthly")
    if case == "expired":
        quote = _forged_quote((stack, sub), member, expires_at=int(time.time()) - 1)
    elif case == "other_member":
        quote = _forged_quote((stack, sub), "mem_someone_else")
    elif case == "tampered":
        good = act(
            stack, member, sub.subscription, "preview-change", {"product": "scale_monthly"}
        ).body["quote"]
        quote = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    else:
        item = stripe_subscription(stack, sub.subscription)["items"]["data"][0]
        quote = _forged_quote((stack, sub), member, proration_date=item["current_period_end"])
    # When the member changes with it
    answer = act(
        stack, member, sub.subscription, "change", {"product": "scale_monthly", "quote": quote}
    )
    # Then the change is refused with a message to preview again, and Stripe is not called
    assert answer.status == 409
    assert answer.body["error"]["code"] == "quote_invalid"
    assert "preview" in answer.body["error"]["message"].lower()
    assert stack.stripe_calls(f"POST /v1/subscriptions/{sub.subscription}") == 0


def test_a_quote_for_another_plan_cannot_bill_this_change(
    stack: Stack, db: str, member: str
) -> None:
    # Given a scale subscriber's quote for moving down to growth
    sub = subscribe(stack, member, "scale_monthly")
    quote = act(
        stack, member, sub.subscription, "preview-change", {"product": "growth_monthly"}
    ).body["quote"]
    # When they try it for another target, then it is refused
    with_other = _forged_quote((stack, sub), member, product="growth_monthly")
    assert with_other != quote
    answer = act(
        stack, member, sub.subscription, "change", {"product": "growth_monthly", "quote": quote}
    )
    assert answer.status == 200  # the real quote works for its own target
    again = act(
        stack, member, sub.subscription, "change", {"product": "scale_monthly", "quote": quote}
    )
    assert again.status == 409
    assert again.body["error"]["code"] == "quote_invalid"


def test_a_change_without_a_quote_is_prorated_from_now(stack: Stack, db: str, member: str) -> None:
    sub = subscribe(stack, member, "scale_monthly")
    before = int(time.time())

    changed = act(stack, member, sub.subscription, "change", {"product": "growth_monthly"})

    assert changed.status == 200
    assert before <= changed.body["proration_date"] <= int(time.time())
    assert changed.body["proration_behavior"] == "create_prorations"
    ((_, _, _, metadata),) = action_logs(db, sub.subscription)
    assert metadata["priced_by"] == "now"


def test_a_change_is_logged_once_with_its_idempotency_key_and_sent_to_stripe_with_it(
    stack: Stack, db: str, member: str
) -> None:
    sub = subscribe(stack, member, "growth_monthly")

    changed = act(
        stack,
        member,
        sub.subscription,
        "change",
        {"product": "scale_monthly"},
        headers={"Idempotency-Key": "switch-click-1"},
    )

    assert changed.status == 200
    ((event_type, user_id, status, metadata),) = action_logs(db, sub.subscription)
    assert (event_type, user_id, status) == ("subscription.change_requested", member, "active")
    assert metadata["product"] == "scale_monthly"
    assert metadata["from_product"] == "growth_monthly"
    assert metadata["proration_behavior"] == "always_invoice"
    updated = [
        e
        for e in customer_events(stack, sub.customer)
        if e["type"] == "customer.subscription.updated"
    ]
    assert updated[-1]["request"]["idempotency_key"] == metadata["idempotency_key"]
    assert metadata["idempotency_key"].startswith("subscription-change-")


def test_stripe_throttling_a_change_is_retried_into_one_change(
    stack: Stack, db: str, member: str
) -> None:
    sub = subscribe(stack, member, "scale_monthly")
    stack.fault("POST", f"/v1/subscriptions/{sub.subscription}", 429, times=2)

    changed = act(stack, member, sub.subscription, "change", {"product": "growth_monthly"})

    assert changed.status == 200
    assert stack.stripe_calls(f"POST /v1/subscriptions/{sub.subscription}") == 3
    assert len(_pending_items(stack, sub.customer)) == 2
    assert len(action_logs(db, sub.subscription)) == 1


def test_changing_to_the_plan_it_already_has_is_a_409(stack: Stack, db: str, member: str) -> None:
    sub = subscribe(stack, member, "growth_monthly")

    for action in ("preview-change", "change"):
        answer = act(stack, member, sub.subscription, action, {"product": "growth_monthly"})
        assert answer.status == 409
        assert answer.body["error"]["code"] == "plan_unchanged"
    assert stack.stripe_calls(f"POST /v1/subscriptions/{sub.subscription}") == 0


@pytest.mark.parametrize("product", ["no_such_plan", "website_audit_feedback"])
@pytest.mark.parametrize("action", ["preview-change", "change"])
def test_changing_to_anything_but_a_plan_is_a_400(
    stack: Stack, db: str, member: str, product: str, action: str
) -> None:
    sub = subscribe(stack, member, "growth_monthly")

    answer = act(stack, member, sub.subscription, action, {"product": product})

    assert answer.status == 400
    assert answer.body["error"]["code"] == "unknown_product"


# --- cancel, pause, resume ------------------------------------------------------------------


def test_cancel_at_period_end_can_be_undone_by_resume(stack: Stack, db: str, member: str) -> None:
    # Given a subscription set to cancel at the end of its period
    sub = subscribe(stack, member)
    canceled = act(stack, member, sub.subscription, "cancel", {})
    assert canceled.status == 200
    assert canceled.body["cancel_at_period_end"] is True
    assert canceled.body["status"] == "active"
    assert stripe_subscription(stack, sub.subscription)["cancel_at_period_end"] is True
    again = act(stack, member, sub.subscription, "cancel", {"at_period_end": True})
    assert again.status == 409
    assert again.body["error"]["code"] == "cancel_already_scheduled"
    deliver(stack, sub.customer)
    listed = call(stack, member, "GET", "/v1/me/subscriptions").body["subscriptions"]
    assert listed[0]["cancel_at_period_end"] is True

    # When the member resumes before the period ends
    resumed = act(stack, member, sub.subscription, "resume")

    # Then it renews again
    assert resumed.status == 200
    assert resumed.body["cancel_at_period_end"] is False
    assert stripe_subscription(stack, sub.subscription)["cancel_at_period_end"] is False
    deliver(stack, sub.customer)
    assert subscription_row(db, sub.subscription)["cancel_at_period_end"] is False  # type: ignore[index]
    assert [row[0] for row in action_logs(db, sub.subscription)] == [
        "subscription.cancel_requested",
        "subscription.resume_requested",
    ]


def test_a_revoked_token_cannot_cancel_though_it_still_reads(
    stack: Stack, db: str, member: str
) -> None:
    # Given a subscriber whose session was revoked in Memberstack
    sub = subscribe(stack, member)
    token = stack.token(member)
    stack.memberstack.revoke(token)

    # When the token (whose signature is still valid) lists, then cancels
    listed = api("subscriptions", "GET", "/v1/me/subscriptions", token=token)
    canceled = api(
        "subscriptions",
        "POST",
        f"/v1/subscriptions/{sub.subscription}/cancel",
        body={"at_period_end": False},
        token=token,
    )

    # Then the read passes the local check; the cancel asks Memberstack, which refuses it
    assert listed.status == 200
    assert canceled.status == 401
    assert canceled.body["error"]["code"] == "unauthenticated"
    assert stripe_subscription(stack, sub.subscription)["status"] == "active"
    assert action_logs(db, sub.subscription) == []


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/subscriptions/{id}/change", {"product": "scale_monthly"}),
        ("/v1/subscriptions/{id}/pause", {}),
        ("/v1/subscriptions/{id}/resume", None),
        ("/v1/billing-portal", None),
    ],
)
def test_a_revoked_token_cannot_charge_stop_or_open_the_card(
    stack: Stack, db: str, member: str, path: str, body: dict[str, Any] | None
) -> None:
    # Given a subscriber whose session was revoked in Memberstack
    sub = subscribe(stack, member)
    token = stack.token(member)
    stack.memberstack.revoke(token)

    # When the token (whose signature is still valid) changes, pauses, resumes or opens the
    # portal
    answer = api("subscriptions", "POST", path.format(id=sub.subscription), body=body, token=token)

    # Then Memberstack is asked and refuses it, and nothing was done
    assert answer.status == 401
    assert answer.body["error"]["code"] == "unauthenticated"
    assert stripe_subscription(stack, sub.subscription)["status"] == "active"
    assert action_logs(db, sub.subscription) == []


def test_cancel_now_ends_the_subscription_and_nothing_else_applies_to_it(
    stack: Stack, db: str, member: str
) -> None:
    sub = subscribe(stack, member)

    canceled = act(stack, member, sub.subscription, "cancel", {"at_period_end": False})

    assert canceled.status == 200
    assert canceled.body["status"] == "canceled"
    assert stripe_subscription(stack, sub.subscription)["status"] == "canceled"
    deliver(stack, sub.customer)
    assert subscription_row(db, sub.subscription)["status"] == "canceled"  # type: ignore[index]
    for action, body in (
        ("cancel", {"at_period_end": False}),
        ("cancel", {}),
        ("change", {"product": "scale_monthly"}),
        ("pause", {}),
        ("resume", None),
    ):
        answer = act(stack, member, sub.subscription, action, body)
        assert answer.status == 409, action
        assert answer.body["error"]["code"] == "subscription_canceled"


def test_pause_then_resume(stack: Stack, db: str, member: str) -> None:
    # Given an active subscription
    sub = subscribe(stack, member)
    renewal = stripe_subscription(stack, sub.subscription)["items"]["data"][0]["current_period_end"]
    resumes_at = renewal - 60

    # When the member pauses it until its renewal's own second (refused: Stripe may renew
    # first), then until a minute before it
    at_renewal = act(
        stack, member, sub.subscription, "pause", {"behavior": "void", "resumes_at": renewal}
    )
    paused = act(
        stack, member, sub.subscription, "pause", {"behavior": "void", "resumes_at": resumes_at}
    )
    assert at_renewal.status == 422
    assert at_renewal.body["error"]["code"] == "resumes_at_after_renewal"

    # Then Stripe voids what it would bill meanwhile, a second pause is refused, and the
    # worker records it
    assert paused.status == 200
    assert paused.body["paused"] is True
    assert paused.body["pause_behavior"] == "void"
    assert stripe_subscription(stack, sub.subscription)["pause_collection"] == {
        "behavior": "void",
        "resumes_at": resumes_at,
    }
    twice = act(stack, member, sub.subscription, "pause", {})
    assert twice.status == 409
    assert twice.body["error"]["code"] == "already_paused"
    deliver(stack, sub.customer)
    listed = call(stack, member, "GET", "/v1/me/subscriptions").body["subscriptions"]
    assert listed[0]["paused"] is True
    assert listed[0]["resumes_at"] is not None

    # When the member resumes, collection starts again; resuming twice is refused
    resumed = act(stack, member, sub.subscription, "resume", {})
    assert resumed.status == 200
    assert resumed.body["paused"] is False
    assert stripe_subscription(stack, sub.subscription)["pause_collection"] is None
    not_paused = act(stack, member, sub.subscription, "resume", {})
    assert not_paused.status == 409
    assert not_paused.body["error"]["code"] == "not_paused"


def test_a_pause_without_a_behavior_voids_what_it_would_bill(
    stack: Stack, db: str, member: str
) -> None:
    sub = subscribe(stack, member)

    paused = act(stack, member, sub.subscription, "pause")

    assert paused.status == 200
    assert stripe_subscription(stack, sub.subscription)["pause_collection"] == {
        "behavior": "void",
        "resumes_at": None,
    }


@pytest.mark.parametrize("behavior", ["keep_as_draft", "mark_uncollectible"])
def test_a_pause_that_would_serve_the_plan_for_free_is_a_422_and_stripe_is_not_called(
    stack: Stack, db: str, member: str, behavior: str
) -> None:
    # Given an active subscription
    sub = subscribe(stack, member)

    # When the member asks for a pause that bills nothing while the plan stays on
    answer = act(stack, member, sub.subscription, "pause", {"behavior": behavior})

    # Then it is refused with what is offered, and nothing changes at Stripe
    assert answer.status == 422
    assert answer.body["error"]["code"] == "pause_behavior_not_offered"
    assert '"void"' in answer.body["error"]["message"]
    assert stack.stripe_calls(f"POST /v1/subscriptions/{sub.subscription}") == 0
    assert stripe_subscription(stack, sub.subscription)["pause_collection"] is None


def test_a_resume_date_after_the_renewal_is_a_422_and_stripe_is_not_called(
    stack: Stack, db: str, member: str
) -> None:
    # Given an active subscription
    sub = subscribe(stack, member)
    renewal = stripe_subscription(stack, sub.subscription)["items"]["data"][0]["current_period_end"]

    # When the member pauses until a day after its renewal (Stripe would void the renewal,
    # then resume collecting mid-period: the rest of that period served unpaid)
    answer = act(stack, member, sub.subscription, "pause", {"resumes_at": renewal + 86400})

    # Then it is refused with the way to pause longer, and nothing changes at Stripe
    assert answer.status == 422
    assert answer.body["error"]["code"] == "resumes_at_after_renewal"
    assert "leave resumes_at out" in answer.body["error"]["message"]
    assert stack.stripe_calls(f"POST /v1/subscriptions/{sub.subscription}") == 0


def test_a_pause_behavior_stripe_does_not_know_is_a_400(stack: Stack, db: str, member: str) -> None:
    sub = subscribe(stack, member)

    answer = act(stack, member, sub.subscription, "pause", {"behavior": "free"})

    assert answer.status == 400
    assert answer.body["error"]["code"] == "invalid_request"


def test_a_plan_is_not_changed_while_it_is_paused(stack: Stack, db: str, member: str) -> None:
    # Given a growth subscriber with a quote for scale, who then pauses
    sub = subscribe(stack, member, "growth_monthly")
    quote = act(
        stack, member, sub.subscription, "preview-change", {"product": "scale_monthly"}
    ).body["quote"]
    assert act(stack, member, sub.subscription, "pause", {}).status == 200
    previews = stack.stripe_calls("POST /v1/invoices/create_preview")
    updates = stack.stripe_calls(f"POST /v1/subscriptions/{sub.subscription}")

    # When they preview, change with the quote, or change without one
    scale = {"product": "scale_monthly"}
    answers = [
        act(stack, member, sub.subscription, "preview-change", scale),
        act(stack, member, sub.subscription, "change", {**scale, "quote": quote}),
        act(stack, member, sub.subscription, "change", scale),
    ]

    # Then each is a 409 asking to resume first (Stripe would never collect the change's
    # invoice), and Stripe is not asked anything
    for answer in answers:
        assert answer.status == 409
        assert answer.body["error"]["code"] == "subscription_paused"
        assert "resume" in answer.body["error"]["message"].lower()
    assert stack.stripe_calls("POST /v1/invoices/create_preview") == previews
    assert stack.stripe_calls(f"POST /v1/subscriptions/{sub.subscription}") == updates
    assert _price(stripe_subscription(stack, sub.subscription))["lookup_key"].startswith("growth")


def test_a_plan_stripe_paused_is_not_changed_either(stack: Stack, db: str, member: str) -> None:
    sub = subscribe(stack, member, "growth_monthly")
    stack.emulator_call("POST", f"/_emulator/subscriptions/{sub.subscription}/pause", json={})

    answer = act(stack, member, sub.subscription, "change", {"product": "scale_monthly"})

    assert answer.status == 409
    assert answer.body["error"]["code"] == "subscription_paused"


@pytest.fixture
def emulator_clock(stack: Stack) -> Iterator[None]:
    """Put the emulator's clock back after a test moved it (the emulator lives for the whole
    session, and other tests compare its periods with the wall clock)."""
    offset = stack.emulator_call("GET", "/_emulator/clock")["clock_offset"]
    yield
    moved = stack.emulator_call("GET", "/_emulator/clock")["clock_offset"] - offset
    stack.emulator_call("POST", "/_emulator/clock", json={"advance_seconds": -moved})


@pytest.mark.usefixtures("emulator_clock")
def test_resuming_after_a_voided_renewal_bills_a_new_period_from_today(
    stack: Stack, db: str, member: str
) -> None:
    # Given a paused subscription whose renewal came during the pause (Stripe voided it)
    sub = subscribe(stack, member, "growth_monthly")
    assert act(stack, member, sub.subscription, "pause", {}).status == 200
    stack.emulator_call("POST", f"/_emulator/subscriptions/{sub.subscription}/advance", json={})
    renewal = stripe_get(
        stack, f"/v1/invoices/{stripe_subscription(stack, sub.subscription)['latest_invoice']}"
    )
    assert renewal["status"] == "void"
    now = stack.emulator_call("GET", "/_emulator/clock")["now"]

    # When the member resumes
    resumed = act(stack, member, sub.subscription, "resume", {})

    # Then a new period starts today and is paid in full at once: the period the pause left
    # unpaid is not served for free
    assert resumed.status == 200, resumed.body
    current = stripe_subscription(stack, sub.subscription)
    assert current["pause_collection"] is None
    item = current["items"]["data"][0]
    assert now <= item["current_period_start"] <= now + 60
    invoice = stripe_get(stack, f"/v1/invoices/{current['latest_invoice']}")
    assert (invoice["status"], invoice["amount_paid"]) == ("paid", 2900)
    ((_, _, _, metadata),) = [
        log for log in action_logs(db, sub.subscription) if log[0].endswith("resume_requested")
    ]
    assert metadata["period_restarted"] is True


def test_resuming_inside_the_paid_period_bills_nothing_more(
    stack: Stack, db: str, member: str
) -> None:
    # Given a subscription paused and resumed before its renewal
    sub = subscribe(stack, member, "growth_monthly")
    before = stripe_subscription(stack, sub.subscription)
    assert act(stack, member, sub.subscription, "pause", {}).status == 200

    resumed = act(stack, member, sub.subscription, "resume", {})

    # Then its period and its invoices are what they were
    assert resumed.status == 200
    after = stripe_subscription(stack, sub.subscription)
    assert after["latest_invoice"] == before["latest_invoice"]
    assert (
        after["items"]["data"][0]["current_period_end"]
        == (before["items"]["data"][0]["current_period_end"])
    )


def test_a_subscription_stripe_paused_is_resumed_to_active(
    stack: Stack, db: str, member: str
) -> None:
    sub = subscribe(stack, member)
    stack.emulator_call("POST", f"/_emulator/subscriptions/{sub.subscription}/pause", json={})

    resumed = act(stack, member, sub.subscription, "resume")

    assert resumed.status == 200
    assert resumed.body["status"] == "active"
    assert stripe_subscription(stack, sub.subscription)["status"] == "active"


def test_resumes_at_in_the_past_is_a_422_and_stripe_is_not_called(
    stack: Stack, db: str, member: str
) -> None:
    sub = subscribe(stack, member)

    answer = act(stack, member, sub.subscription, "pause", {"resumes_at": int(time.time()) - 60})

    assert answer.status == 422
    assert answer.body["error"]["code"] == "resumes_at_in_past"
    assert stack.stripe_calls(f"POST /v1/subscriptions/{sub.subscription}") == 0


# --- ownership ------------------------------------------------------------------------------

ACTIONS: list[tuple[str, dict[str, Any] | None]] = [
    ("preview-change", {"product": "scale_monthly"}),
    ("change", {"product": "scale_monthly"}),
    ("cancel", {"at_period_end": False}),
    ("pause", {}),
    ("resume", None),
]


@pytest.mark.parametrize(("action", "body"), ACTIONS)
def test_another_member_cannot_tell_the_subscription_exists(
    stack: Stack, db: str, member: str, action: str, body: dict[str, Any] | None
) -> None:
    # Given a subscriber and another member who is a Stripe customer too
    sub = subscribe(stack, member)
    stranger = subscribe(stack, f"{member}_other", "scale_monthly").member

    # When the other member acts on the subscription
    answer = act(stack, stranger, sub.subscription, action, body)

    # Then it answers as for a subscription that does not exist, and nothing changes
    missing = act(stack, stranger, "sub_doesnotexist0000", action, body)
    assert answer.status == missing.status == 404
    assert answer.body == missing.body
    assert answer.body["error"]["code"] == "subscription_not_found"
    assert stack.stripe_calls(f"POST /v1/subscriptions/{sub.subscription}") == 0
    assert stack.stripe_calls(f"DELETE /v1/subscriptions/{sub.subscription}") == 0


def test_stripe_owner_check_protects_a_subscription_the_worker_has_not_seen_yet(
    stack: Stack, db: str, member: str
) -> None:
    # Given a subscription paid on Stripe whose own events the worker has not seen yet (only
    # the checkout's completion, which tells whose customer it is)
    answer = call(stack, member, "POST", "/v1/subscriptions", {"product": "growth_monthly"})
    paid = stack.emulator_call(
        "POST", f"/_emulator/checkout/sessions/{answer.body['id']}/pay", json={"outcome": "success"}
    )
    _deliver_completion(stack, paid["customer"])
    assert subscription_row(db, paid["subscription"]) is None
    stranger = subscribe(stack, f"{member}_other").member

    # When another customer tries to cancel it, and then its owner does
    by_stranger = act(stack, stranger, paid["subscription"], "cancel", {})
    by_owner = act(stack, member, paid["subscription"], "cancel", {})

    # Then Stripe's customer decides
    assert by_stranger.status == 404
    assert by_owner.status == 200


def test_a_member_who_never_bought_anything_gets_404(stack: Stack, db: str, member: str) -> None:
    sub = subscribe(stack, member)

    answer = act(stack, f"{member}_new", sub.subscription, "cancel", {})

    assert answer.status == 404
    assert answer.body["error"]["code"] == "subscription_not_found"


def test_a_malformed_subscription_id_is_refused_before_any_lookup(
    stack: Stack, member: str
) -> None:
    answer = act(stack, member, "pi_123", "cancel", {})

    assert answer.status == 400
    assert stack.stripe_calls("GET /v1/subscriptions/{subscription}") == 0


def test_each_member_lists_only_their_own_subscriptions(stack: Stack, db: str, member: str) -> None:
    mine = subscribe(stack, member)
    theirs = subscribe(stack, f"{member}_other", "scale_monthly")

    listed = call(stack, member, "GET", "/v1/me/subscriptions")
    other = call(stack, theirs.member, "GET", "/v1/me/subscriptions")

    assert [s["id"] for s in listed.body["subscriptions"]] == [mine.subscription]
    assert [s["id"] for s in other.body["subscriptions"]] == [theirs.subscription]
    assert call(stack, f"{member}_none", "GET", "/v1/me/subscriptions").body == {
        "subscriptions": []
    }


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/v1/me/subscriptions", None),
        ("POST", "/v1/subscriptions", {"product": "growth_monthly"}),
        ("POST", "/v1/subscriptions/sub_abc/cancel", {}),
    ],
)
def test_requests_without_a_member_token_are_a_401(
    stack: Stack, method: str, path: str, body: dict[str, str] | None
) -> None:
    answer = api("subscriptions", method, path, body=body)

    assert answer.status == 401
    assert answer.body["error"]["code"] == "unauthenticated"


# --- ordering of Stripe's events ------------------------------------------------------------


def test_an_update_delivered_before_the_creation_leaves_the_newest_state(
    stack: Stack, db: str, member: str
) -> None:
    # Given a subscription created and then changed on Stripe, before the worker saw any of
    # the subscription's own events
    answer = call(stack, member, "POST", "/v1/subscriptions", {"product": "growth_monthly"})
    paid = stack.emulator_call(
        "POST", f"/_emulator/checkout/sessions/{answer.body['id']}/pay", json={"outcome": "success"}
    )
    _deliver_completion(stack, paid["customer"])
    assert (
        act(stack, member, paid["subscription"], "change", {"product": "scale_monthly"}).status
        == 200
    )
    events = [
        e
        for e in customer_events(stack, paid["customer"])
        if e["type"].startswith("customer.subscription.")
    ]
    assert [e["type"] for e in events] == [
        "customer.subscription.created",
        "customer.subscription.updated",
    ]

    # When the update reaches the worker before the creation (separate batches: within one
    # batch the worker orders events by id)
    run_worker([events[1]])
    run_worker([events[0]])

    # Then the row holds the plan after the change
    row = subscription_row(db, paid["subscription"])
    assert row is not None
    assert (row["product"], row["status"], row["member_id"]) == ("scale_monthly", "active", member)
    with psycopg.connect(db) as conn:
        outcomes = dict(conn.execute("select event_type, outcome from processed_events").fetchall())
    # The late creation is refused as stale, or (stamped in the same second as the update)
    # applied with the state the worker re-read from Stripe: either way it changed nothing.
    assert outcomes["customer.subscription.created"] in {"stale", "applied"}
