"""Fault injection, call counts, idempotency and concurrent use."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import stripe

from tests.emulator.conftest import API_KEY, Helpers, one_time_price
from tools.stripe_emulator import EmulatorHandle

pytestmark = pytest.mark.integration

CREATE_SESSION = "POST /v1/checkout/sessions"


def _session_params(price_id: str) -> dict[str, object]:
    return {
        "mode": "payment",
        "line_items": [{"price": price_id, "quantity": 1}],
        "success_url": "https://shop.test/ok",
    }


def test_rate_limit_with_should_retry_is_retried_by_the_client_and_counted(
    client: stripe.StripeClient, emu: EmulatorHandle, helpers: Helpers
) -> None:
    # Given two injected 429s on session creation that ask the client to retry
    price = one_time_price(client)
    helpers.post(
        "/faults",
        {
            "method": "POST",
            "path": "/v1/checkout/sessions",
            "status": 429,
            "times": 2,
            "should_retry": True,
        },
    )
    helpers.http.delete("/_emulator/calls")
    retrying = stripe.StripeClient(
        API_KEY, base_addresses={"api": emu.base_url}, max_network_retries=2
    )

    # When a client allowing two retries creates a session
    session = retrying.v1.checkout.sessions.create(params=_session_params(price.id))

    # Then it succeeded on the third and last attempt
    assert session.status == "open"
    assert helpers.get("/calls")["calls"][CREATE_SESSION] == 3


def test_rate_limit_reaches_a_client_without_retries_as_rate_limit_error(
    client: stripe.StripeClient, emu: EmulatorHandle, helpers: Helpers
) -> None:
    helpers.post(
        "/faults", {"method": "POST", "path": "/v1/customers", "status": 429, "should_retry": True}
    )

    with pytest.raises(stripe.RateLimitError) as error:
        client.v1.customers.create(params={"name": "x"})
    raw = httpx.post(f"{emu.base_url}/v1/customers", auth=(API_KEY, ""))

    assert error.value.http_status == 429
    assert error.value.headers is not None
    assert error.value.headers["Stripe-Should-Retry"] == "true"
    assert raw.status_code == 200  # the fault was used up by the first call


def test_server_errors_stop_after_the_clients_retry_budget(
    client: stripe.StripeClient, emu: EmulatorHandle, helpers: Helpers
) -> None:
    helpers.post("/faults", {"method": "GET", "path": "/v1/customers/*", "status": 500, "times": 5})
    retrying = stripe.StripeClient(
        API_KEY, base_addresses={"api": emu.base_url}, max_network_retries=1
    )

    with pytest.raises(stripe.APIError):
        retrying.v1.customers.retrieve("cus_any")

    calls = helpers.get("/calls")
    assert calls["calls"]["GET /v1/customers/cus_any"] == 2
    assert calls["routes"]["GET /v1/customers/{customer}"] == 2


def test_hanging_call_times_out_the_client_and_the_next_call_works(
    emu: EmulatorHandle, helpers: Helpers
) -> None:
    helpers.post(
        "/faults", {"method": "GET", "path": "/v1/products", "status": 0, "hang_seconds": 2}
    )
    impatient = stripe.StripeClient(
        API_KEY,
        base_addresses={"api": emu.base_url},
        max_network_retries=0,
        http_client=stripe.RequestsClient(timeout=0.3),
    )

    started = time.monotonic()
    with pytest.raises(stripe.APIConnectionError):
        impatient.v1.products.list()
    waited = time.monotonic() - started

    assert waited < 1.5
    assert impatient.v1.products.list().data == []


def test_faults_can_be_cleared(client: stripe.StripeClient, helpers: Helpers) -> None:
    helpers.post("/faults", {"method": "*", "path": "/v1/*", "status": 503, "times": 50})

    response = helpers.http.delete("/_emulator/faults")

    assert response.status_code == 200
    assert response.json()["faults"] == []
    assert client.v1.customers.list().data == []


def test_same_idempotency_key_and_parameters_replays_the_saved_response(
    client: stripe.StripeClient, emu: EmulatorHandle
) -> None:
    # Given a customer created with an idempotency key
    options: dict[str, str] = {"idempotency_key": "signup-42"}
    first = client.v1.customers.create(params={"email": "i@example.com"}, options=options)

    # When the same request is sent again, through the client and raw
    second = client.v1.customers.create(params={"email": "i@example.com"}, options=options)
    raw = httpx.post(
        f"{emu.base_url}/v1/customers",
        data={"email": "i@example.com"},
        headers={"Authorization": f"Bearer {API_KEY}", "Idempotency-Key": "signup-42"},
    )

    # Then the first response is replayed and no second customer exists
    assert second.id == first.id
    assert raw.headers["Idempotent-Replayed"] == "true"
    assert raw.json()["id"] == first.id
    assert len(client.v1.customers.list().data) == 1


def test_same_idempotency_key_with_other_parameters_is_an_idempotency_error(
    client: stripe.StripeClient,
) -> None:
    client.v1.customers.create(params={"email": "a@example.com"}, options={"idempotency_key": "k1"})

    with pytest.raises(stripe.IdempotencyError) as error:
        client.v1.customers.create(
            params={"email": "b@example.com"}, options={"idempotency_key": "k1"}
        )

    assert error.value.http_status == 400
    assert "same parameters" in str(error.value.user_message)


def test_validation_errors_are_not_saved_under_the_idempotency_key(
    client: stripe.StripeClient,
) -> None:
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.customers.create(
            params={"email": "a@example.com", "bogus": "1"},
            options={"idempotency_key": "k2"},
        )

    retried = client.v1.customers.create(
        params={"email": "a@example.com"}, options={"idempotency_key": "k2"}
    )

    assert retried.id.startswith("cus_")


def test_concurrent_requests_are_all_served_and_kept_consistent(
    client: stripe.StripeClient, helpers: Helpers
) -> None:
    # Given a paid $100.00 payment
    price = one_time_price(client, 10000)
    session = client.v1.checkout.sessions.create(params=_session_params(price.id))
    helpers.post(f"/checkout/sessions/{session.id}/pay", {"outcome": "success"})
    intent_id = client.v1.checkout.sessions.retrieve(session.id).payment_intent

    # When 20 refunds of $10.00 race each other from 8 threads
    def refund(_: int) -> str:
        try:
            client.v1.refunds.create(params={"payment_intent": intent_id, "amount": 1000})
        except stripe.InvalidRequestError as exc:
            return str(exc.code)
        return "ok"

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(refund, range(20)))

    # Then exactly ten succeed and the charge is never over-refunded
    assert outcomes.count("ok") == 10
    assert set(outcomes) == {"ok", "charge_already_refunded"}
    charge = client.v1.charges.list(params={"payment_intent": intent_id}).data[0]
    assert charge.amount_refunded == 10000


def test_state_summary_and_reset(client: stripe.StripeClient, helpers: Helpers) -> None:
    client.v1.customers.create(params={"name": "x"})

    before = helpers.get("/state")
    helpers.post("/reset")
    after = helpers.get("/state")

    assert before["objects"]["customer"] == 1
    assert after["objects"] == {}
