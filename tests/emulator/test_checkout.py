"""Checkout Sessions and the hosted payment page."""

from __future__ import annotations

import re
import time

import httpx
import pytest
import stripe

from tests.emulator.conftest import Helpers, WebhookReceiver, monthly_price, one_time_price
from tools.stripe_emulator import EmulatorHandle

pytestmark = pytest.mark.integration


def _session(
    client: stripe.StripeClient, price_id: str, **extra: object
) -> stripe.checkout.Session:
    params: dict[str, object] = {
        "mode": "payment",
        "line_items": [{"price": price_id, "quantity": 1}],
        "success_url": "https://shop.test/thanks?session_id={CHECKOUT_SESSION_ID}",
        "cancel_url": "https://shop.test/cart",
        "client_reference_id": "user_7",
        "metadata": {"order_id": "ord_9"},
        "payment_intent_data": {"metadata": {"order_id": "ord_9"}},
        **extra,
    }
    return client.v1.checkout.sessions.create(params=params)


def test_created_session_is_open_unpaid_and_points_at_the_hosted_page(
    client: stripe.StripeClient, emu: EmulatorHandle
) -> None:
    price = one_time_price(client, 9900)

    session = _session(client, price.id)

    assert session.id.startswith("cs_test_")
    assert (session.status, session.payment_status, session.mode) == ("open", "unpaid", "payment")
    assert session.url == f"{emu.base_url}/checkout/{session.id}"
    assert (session.amount_total, session.currency) == (9900, "usd")
    assert session.client_reference_id == "user_7"
    assert session.metadata.to_dict() == {"order_id": "ord_9"}
    assert session.payment_intent is None
    assert session.expires_at > time.time() + 23 * 3600


def test_hosted_page_shows_product_and_amount_and_success_redirects_with_session_id(
    client: stripe.StripeClient, receiver: WebhookReceiver, helpers: Helpers
) -> None:
    # Given an open session for a $99.00 product
    price = one_time_price(client, 9900, name="Lifetime licence")
    session = _session(client, price.id)

    # When a person opens the page and pays with the succeeding card
    page = httpx.get(session.url)
    paid = httpx.post(f"{session.url}/pay", data={"outcome": "success", "email": "p@example.com"})

    # Then the page showed what is bought and the payment redirects to the success URL
    assert page.status_code == 200
    assert "Lifetime licence" in page.text
    assert "$99.00" in page.text
    for element in ("pay-success", "pay-decline", "pay-delayed"):
        assert f"id={element}" in page.text
    assert paid.status_code == 303
    assert paid.headers["location"] == f"https://shop.test/thanks?session_id={session.id}"

    # And the session, payment intent and charge are complete
    done = client.v1.checkout.sessions.retrieve(
        session.id, params={"expand": ["line_items", "payment_intent"]}
    )
    assert (done.status, done.payment_status) == ("complete", "paid")
    assert done.customer_details.email == "p@example.com"
    intent = done.payment_intent
    assert intent.status == "succeeded"
    assert intent.amount_received == 9900
    assert intent.metadata.to_dict() == {"order_id": "ord_9"}
    charge = client.v1.charges.retrieve(intent.latest_charge)
    assert (charge.paid, charge.amount, charge.payment_intent) == (True, 9900, intent.id)
    assert [item.description for item in done.line_items.data] == ["Lifetime licence"]

    # And the webhooks Stripe sends for a card payment arrived in order
    helpers.flush()
    assert receiver.types() == [
        "product.created",
        "price.created",
        "payment_intent.created",
        "charge.succeeded",
        "payment_intent.succeeded",
        "charge.updated",  # the balance transaction, captured asynchronously
        "checkout.session.completed",
    ]


def test_declined_card_keeps_the_session_open_and_links_back_to_the_merchant(
    client: stripe.StripeClient, helpers: Helpers, receiver: WebhookReceiver
) -> None:
    price = one_time_price(client)
    session = _session(client, price.id)

    response = httpx.post(f"{session.url}/pay", data={"card_number": "4000 0000 0000 0002"})

    assert response.status_code == 200
    assert "Your card was declined." in response.text
    link = re.search(r'id=back-to-merchant href="([^"]+)"', response.text)
    assert link is not None
    assert link.group(1) == "https://shop.test/cart"
    again = client.v1.checkout.sessions.retrieve(session.id)
    assert (again.status, again.payment_status) == ("open", "unpaid")
    intent = client.v1.payment_intents.retrieve(again.payment_intent)
    assert intent.status == "requires_payment_method"
    assert intent.last_payment_error.code == "card_declined"
    helpers.flush()
    assert "payment_intent.payment_failed" in receiver.types()
    assert "checkout.session.completed" not in receiver.types()


def test_a_declined_session_can_still_be_paid(
    client: stripe.StripeClient, helpers: Helpers
) -> None:
    price = one_time_price(client)
    session = _session(client, price.id)
    helpers.post(f"/checkout/sessions/{session.id}/pay", {"outcome": "decline"})

    helpers.post(f"/checkout/sessions/{session.id}/pay", {"outcome": "success"})

    done = client.v1.checkout.sessions.retrieve(session.id)
    assert done.payment_status == "paid"
    assert len(client.v1.charges.list(params={"payment_intent": done.payment_intent}).data) == 2


def test_delayed_payment_completes_unpaid_then_settles(
    client: stripe.StripeClient, helpers: Helpers, receiver: WebhookReceiver
) -> None:
    # Given a session paid by bank debit
    price = one_time_price(client)
    session = _session(client, price.id)
    paid = httpx.post(f"{session.url}/pay", data={"outcome": "delayed"})
    pending = client.v1.checkout.sessions.retrieve(session.id)

    # When the debit settles successfully
    helpers.post(f"/checkout/sessions/{session.id}/settle", {"succeeded": True})

    # Then the session was complete but unpaid, and is paid after settlement
    assert paid.status_code == 303
    assert (pending.status, pending.payment_status) == ("complete", "unpaid")
    assert client.v1.payment_intents.retrieve(pending.payment_intent).status == "succeeded"
    assert client.v1.checkout.sessions.retrieve(session.id).payment_status == "paid"
    helpers.flush()
    types = receiver.types()
    assert types.index("checkout.session.completed") < types.index(
        "checkout.session.async_payment_succeeded"
    )


def test_failed_delayed_payment_sends_async_payment_failed(
    client: stripe.StripeClient, helpers: Helpers, receiver: WebhookReceiver
) -> None:
    price = one_time_price(client)
    session = _session(client, price.id)
    helpers.post(f"/checkout/sessions/{session.id}/pay", {"outcome": "delayed"})

    helpers.post(f"/checkout/sessions/{session.id}/settle", {"succeeded": False})

    assert client.v1.checkout.sessions.retrieve(session.id).payment_status == "unpaid"
    helpers.flush()
    assert "checkout.session.async_payment_failed" in receiver.types()
    assert "checkout.session.async_payment_succeeded" not in receiver.types()


def test_expired_session_cannot_be_paid(
    client: stripe.StripeClient, helpers: Helpers, receiver: WebhookReceiver
) -> None:
    price = one_time_price(client)
    session = _session(client, price.id)

    expired = client.v1.checkout.sessions.expire(session.id)
    page = httpx.get(session.url)
    attempt = httpx.post(f"{session.url}/pay", data={"outcome": "success"})

    assert expired.status == "expired"
    assert page.status_code == 410
    assert "expired" in page.text
    assert attempt.status_code == 410
    assert client.v1.checkout.sessions.retrieve(session.id).status == "expired"
    helpers.flush()
    assert receiver.types()[-1] == "checkout.session.expired"


def test_completed_session_page_is_an_error_and_it_cannot_expire(
    client: stripe.StripeClient, helpers: Helpers
) -> None:
    price = one_time_price(client)
    session = _session(client, price.id)
    helpers.post(f"/checkout/sessions/{session.id}/pay", {"outcome": "success"})

    page = httpx.get(session.url)
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.checkout.sessions.expire(session.id)

    assert page.status_code == 409
    assert "already complete" in page.text


def test_session_expires_by_itself_once_expires_at_has_passed(
    client: stripe.StripeClient, helpers: Helpers
) -> None:
    price = one_time_price(client)
    # (a minute over Stripe's 30-minute minimum, so a second ticking by cannot break it)
    session = _session(client, price.id, expires_at=int(time.time()) + 1860)

    helpers.post("/clock", {"advance_seconds": 1861})

    assert client.v1.checkout.sessions.retrieve(session.id).status == "expired"


def test_recurring_price_is_rejected_in_payment_mode(client: stripe.StripeClient) -> None:
    price = monthly_price(client)
    with pytest.raises(stripe.InvalidRequestError) as error:
        _session(client, price.id)
    assert "recurring price" in str(error.value.user_message)
    assert error.value.param == "line_items[0][price]"


def test_one_time_price_alone_is_rejected_in_subscription_mode(
    client: stripe.StripeClient,
) -> None:
    price = one_time_price(client)
    with pytest.raises(stripe.InvalidRequestError) as error:
        client.v1.checkout.sessions.create(
            params={
                "mode": "subscription",
                "line_items": [{"price": price.id, "quantity": 1}],
                "success_url": "https://shop.test/ok",
            }
        )
    assert "at least one recurring price" in str(error.value.user_message)


def test_unknown_price_in_line_items_is_a_404_naming_the_line(
    client: stripe.StripeClient,
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as error:
        _session(client, "price_missing")
    assert (error.value.http_status, error.value.param) == (404, "line_items[0][price]")


def test_line_items_are_listed_with_quantities_and_amounts(client: stripe.StripeClient) -> None:
    first = one_time_price(client, 500, name="Sticker")
    second = one_time_price(client, 2500, name="Mug")
    session = client.v1.checkout.sessions.create(
        params={
            "mode": "payment",
            "line_items": [
                {"price": first.id, "quantity": 3},
                {"price": second.id, "quantity": 1},
            ],
            "success_url": "https://shop.test/ok",
        }
    )

    items = client.v1.checkout.sessions.line_items.list(session.id)

    assert [(i.description, i.quantity, i.amount_total) for i in items.data] == [
        ("Sticker", 3, 1500),
        ("Mug", 1, 2500),
    ]
    assert session.amount_total == 4000


def test_subscription_session_creates_customer_subscription_and_paid_invoice(
    client: stripe.StripeClient, helpers: Helpers, receiver: WebhookReceiver
) -> None:
    # Given a subscription-mode session without a customer
    price = monthly_price(client, 3000)
    session = client.v1.checkout.sessions.create(
        params={
            "mode": "subscription",
            "line_items": [{"price": price.id, "quantity": 2}],
            "success_url": "https://shop.test/ok",
            "customer_email": "new@example.com",
            "subscription_data": {"metadata": {"user_id": "u_1"}},
        }
    )

    # When it is paid
    helpers.post(f"/checkout/sessions/{session.id}/pay", {"outcome": "success"})

    # Then a customer, an active subscription and a paid invoice exist
    done = client.v1.checkout.sessions.retrieve(session.id)
    assert (done.status, done.payment_status) == ("complete", "paid")
    customer = client.v1.customers.retrieve(done.customer)
    assert customer.email == "new@example.com"
    sub = client.v1.subscriptions.retrieve(done.subscription)
    assert (sub.status, sub.customer, sub.metadata.to_dict()) == (
        "active",
        customer.id,
        {"user_id": "u_1"},
    )
    item = sub["items"].data[0]
    assert (item.price.id, item.quantity) == (price.id, 2)
    assert item.current_period_end > item.current_period_start
    invoice = client.v1.invoices.retrieve(done.invoice)
    assert (invoice.status, invoice.amount_paid, invoice.billing_reason) == (
        "paid",
        6000,
        "subscription_create",
    )
    helpers.flush()
    types = receiver.types()
    for expected in ("customer.subscription.created", "invoice.paid", "checkout.session.completed"):
        assert expected in types
    assert types[-1] == "checkout.session.completed"
