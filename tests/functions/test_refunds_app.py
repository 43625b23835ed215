"""POST/GET /v1/refunds and POST /v1/purchases/switch end to end: the handler, the Stripe
emulator, the Memberstack stand-in, the real Postgres, and the webhook worker fed with the
emulator's events."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import httpx
import psycopg
import pytest

from payments import errors
from payments.adapters.postgres_store import PostgresStore
from payments.adapters.stripe_service import StripeService
from payments.auth import Member
from payments.refunds import RefundDeps, RefundRequest, request_refund
from tests.stack import *  # noqa: F403
from tests.stack import ADMIN_ID, STRIPE_KEY, Answer, Stack, api
from tests.worker_feed import WorkerFeed

pytestmark = pytest.mark.integration

PRICE = 9900  # business_plan_builder


@pytest.fixture
def member() -> str:
    """A member new to Stripe too: the emulator lives for the whole session."""
    return f"mem_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def feed(stack: Stack) -> WorkerFeed:
    return WorkerFeed(stack.emulator.base_url, STRIPE_KEY)


def rows(db: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(db) as conn:
        return conn.execute(query, params).fetchall()


def purchase_state(db: str, pi: str) -> tuple[str, int]:
    [row] = rows(
        db, "select status, amount_refunded from purchases where payment_intent_id = %s", pi
    )
    return row[0], row[1]


def stripe_get(stack: Stack, path: str, **params: Any) -> Any:
    response = httpx.get(
        f"{stack.emulator.base_url}{path}",
        params=params,
        headers={"Authorization": f"Bearer {STRIPE_KEY}"},
        timeout=30,
    )
    response.raise_for_status()
    return response.json()


def stripe_refunds(stack: Stack, pi: str) -> list[dict[str, Any]]:
    return list(stripe_get(stack, "/v1/refunds", payment_intent=pi, limit=100)["data"])


def start_checkout(stack: Stack, member: str, product: str) -> str:
    answer = api(
        "create_checkout",
        "POST",
        "/v1/checkout/sessions",
        body={"product": product},
        token=stack.token(member),
    )
    assert answer.status == 201, answer.body
    return str(answer.body["id"])


def pay(stack: Stack, session_id: str, outcome: str = "success") -> dict[str, Any]:
    session: dict[str, Any] = stack.emulator_call(
        "POST", f"/_emulator/checkout/sessions/{session_id}/pay", json={"outcome": outcome}
    )
    return session


def paid_purchase(
    stack: Stack, db: str, feed: WorkerFeed, member: str, product: str = "business_plan_builder"
) -> str:
    """A purchase paid on the emulator and recorded by the worker; its payment intent."""
    session_id = start_checkout(stack, member, product)
    pay(stack, session_id)
    feed.deliver_new()
    [(pi, status)] = rows(
        db,
        "select payment_intent_id, status from purchases where checkout_session_id = %s",
        session_id,
    )
    assert status == "paid"
    return str(pi)


def refund(
    stack: Stack, body: dict[str, Any], *, as_member: str = ADMIN_ID, key: str | None = None
) -> Answer:
    return api(
        "refunds",
        "POST",
        "/v1/refunds",
        body=body,
        token=stack.token(as_member),
        headers={"Idempotency-Key": key} if key else None,
    )


def history(stack: Stack, pi: str, *, as_member: str = ADMIN_ID) -> Answer:
    return api(
        "refunds",
        "GET",
        "/v1/refunds",
        query=f"payment_intent={pi}",
        token=stack.token(as_member),
    )


def switch(stack: Stack, member: str, pi: str, product: str) -> Answer:
    return api(
        "refunds",
        "POST",
        "/v1/purchases/switch",
        body={"payment_intent": pi, "product": product},
        token=stack.token(member),
    )


# --- refunds ------------------------------------------------------------------------------


def test_a_full_refund_refunds_what_was_paid_and_records_who_asked_and_why(
    stack: Stack, db: str, feed: WorkerFeed, member: str
) -> None:
    # Given a paid purchase
    pi = paid_purchase(stack, db, feed, member)

    # When an admin refunds it without an amount
    answer = refund(
        stack,
        {"payment_intent": pi, "reason": "requested_by_customer", "note": "User asked on chat"},
    )

    # Then the whole payment is refunded at Stripe and the answer says so
    assert answer.status == 201, answer.body
    assert answer.body == {
        "id": answer.body["id"],
        "status": "succeeded",
        "amount": PRICE,
        "currency": "usd",
        "payment_intent": pi,
    }
    [at_stripe] = stripe_refunds(stack, pi)
    assert (at_stripe["id"], at_stripe["amount"], at_stripe["reason"]) == (
        answer.body["id"],
        PRICE,
        "requested_by_customer",
    )
    assert purchase_state(db, pi) == ("refunded", PRICE)
    # ... and who asked, why and the note are in refunds and payment_logs
    assert rows(db, "select id, status, reason, note, requested_by from refunds") == [
        (answer.body["id"], "succeeded", "requested_by_customer", "User asked on chat", ADMIN_ID)
    ]
    [(user_id, status, metadata)] = rows(
        db,
        "select user_id, status, metadata from payment_logs where event_type = 'refund.requested'",
    )
    assert (user_id, status) == (member, "succeeded")
    assert metadata["requested_by"] == ADMIN_ID
    assert metadata["note"] == "User asked on chat"
    assert metadata["reason"] == "requested_by_customer"

    # When Stripe's refund events reach the worker afterwards (twice)
    feed.deliver_new(times=2)

    # Then the refund is still one row that kept the admin's fields
    assert rows(db, "select id, status, note, requested_by from refunds") == [
        (answer.body["id"], "succeeded", "User asked on chat", ADMIN_ID)
    ]
    assert purchase_state(db, pi) == ("refunded", PRICE)


def test_a_partial_refund_leaves_the_purchase_partially_refunded(
    stack: Stack, db: str, feed: WorkerFeed, member: str
) -> None:
    pi = paid_purchase(stack, db, feed, member)

    answer = refund(stack, {"payment_intent": pi, "amount": 2500, "reason": "duplicate"})

    assert answer.status == 201
    assert (answer.body["amount"], answer.body["status"]) == (2500, "succeeded")
    assert purchase_state(db, pi) == ("partially_refunded", 2500)


def test_two_partial_refunds_can_add_up_to_the_total_but_a_third_is_refused(
    stack: Stack, db: str, feed: WorkerFeed, member: str
) -> None:
    # Given a payment refunded in two parts that add up to what was paid
    pi = paid_purchase(stack, db, feed, member)
    first = refund(stack, {"payment_intent": pi, "amount": 4000, "reason": "duplicate"})
    second = refund(stack, {"payment_intent": pi, "amount": 5900, "reason": "duplicate"})
    assert (first.status, second.status) == (201, 201)
    assert purchase_state(db, pi) == ("refunded", PRICE)

    # When a third partial refund is asked for
    third = refund(stack, {"payment_intent": pi, "amount": 100, "reason": "duplicate"})

    # Then it is refused before Stripe
    assert third.status == 422
    assert third.body["error"]["code"] == "refund_exceeds_refundable"
    assert len(stripe_refunds(stack, pi)) == 2
    # ... and asking for "the rest" of a fully refunded payment is a conflict
    rest = refund(stack, {"payment_intent": pi, "reason": "duplicate"})
    assert rest.status == 409
    assert rest.body["error"]["code"] == "already_fully_refunded"


def test_a_partial_refund_retried_without_a_key_after_it_was_confirmed_refunds_once(
    stack: Stack, db: str, feed: WorkerFeed, member: str
) -> None:
    # Given a partial refund that went through and whose events the worker applied
    pi = paid_purchase(stack, db, feed, member)
    body = {"payment_intent": pi, "amount": 3000, "reason": "requested_by_customer"}
    first = refund(stack, body)
    feed.deliver_new()
    assert purchase_state(db, pi) == ("partially_refunded", 3000)

    # When the admin's tool retries the same request without an Idempotency-Key
    again = refund(stack, body)

    # Then it gets the same refund back: one refund at Stripe, 3000 refunded
    assert (first.status, again.status) == (201, 201)
    assert again.body["id"] == first.body["id"]
    assert len(stripe_refunds(stack, pi)) == 1
    assert purchase_state(db, pi) == ("partially_refunded", 3000)


def test_another_equal_partial_refund_needs_its_own_key(
    stack: Stack, db: str, feed: WorkerFeed, member: str
) -> None:
    pi = paid_purchase(stack, db, feed, member)
    body = {"payment_intent": pi, "amount": 1000, "reason": "requested_by_customer"}
    one = refund(stack, body, key="first-click")
    two = refund(stack, body, key="second-click")
    assert one.body["id"] != two.body["id"]
    assert len(stripe_refunds(stack, pi)) == 2


def test_an_amount_above_what_is_left_is_a_422_naming_what_is_left(
    stack: Stack, db: str, feed: WorkerFeed, member: str
) -> None:
    pi = paid_purchase(stack, db, feed, member)
    refund(stack, {"payment_intent": pi, "amount": 9000, "reason": "duplicate"})

    answer = refund(stack, {"payment_intent": pi, "amount": 901, "reason": "duplicate"})

    assert answer.status == 422
    assert answer.body["error"]["code"] == "refund_exceeds_refundable"
    assert "900 cents" in answer.body["error"]["message"]


@pytest.mark.parametrize("amount", [0, -5])
def test_an_amount_that_is_not_positive_is_a_422(
    stack: Stack, db: str, feed: WorkerFeed, member: str, amount: int
) -> None:
    pi = paid_purchase(stack, db, feed, member)

    answer = refund(stack, {"payment_intent": pi, "amount": amount, "reason": "duplicate"})

    assert answer.status == 422
    assert answer.body["error"]["code"] == "refund_amount_invalid"
    assert stripe_refunds(stack, pi) == []


@pytest.mark.parametrize(
    "body",
    [
        {"payment_intent": "pi_x", "reason": "because"},
        {"payment_intent": "pi_x", "reason": "duplicate", "amount": 10.5},
        {"payment_intent": "pi_x", "reason": "duplicate", "note": "n" * 501},
        {"payment_intent": "pi_x", "reason": "duplicate", "member": "mem_1"},
        {"payment_intent": "ch_x", "reason": "duplicate"},
    ],
)
def test_a_malformed_refund_request_is_a_400_before_stripe(
    stack: Stack, body: dict[str, Any]
) -> None:
    answer = refund(stack, body)

    assert answer.status == 400
    assert answer.body["error"]["code"] == "invalid_request"
    assert stack.stripe_calls("POST /v1/refunds") == 0


def test_the_same_request_retried_with_its_idempotency_key_refunds_once(
    stack: Stack, db: str, feed: WorkerFeed, member: str
) -> None:
    pi = paid_purchase(stack, db, feed, member)
    body = {"payment_intent": pi, "amount": 1000, "reason": "requested_by_customer"}

    first = refund(stack, body, key="refund-click-1")
    again = refund(stack, body, key="refund-click-1")

    assert (first.status, again.status) == (201, 201)
    assert again.body == first.body
    assert len(stripe_refunds(stack, pi)) == 1
    assert stack.stripe_calls("POST /v1/refunds") == 1
    assert purchase_state(db, pi) == ("partially_refunded", 1000)
    # ... while the same key for another amount is refused
    other = refund(stack, {**body, "amount": 2000}, key="refund-click-1")
    assert other.status == 409
    assert other.body["error"]["code"] == "idempotency_key_reused"


def test_a_request_retried_after_stripe_was_unavailable_refunds_once(
    stack: Stack, db: str, feed: WorkerFeed, member: str
) -> None:
    # Given Stripe throttling every attempt of the first request
    pi = paid_purchase(stack, db, feed, member)
    body = {"payment_intent": pi, "amount": 1500, "reason": "requested_by_customer"}
    stack.fault("POST", "/v1/refunds", 429, times=4, should_retry=True)
    failed = refund(stack, body)
    assert failed.status == 503
    assert stripe_refunds(stack, pi) == []

    # When the admin retries once Stripe is back (no Idempotency-Key)
    retried = refund(stack, body)

    # Then one refund is made, and the reservation of the failed attempt was reused for it
    assert retried.status == 201
    assert [r["amount"] for r in stripe_refunds(stack, pi)] == [1500]
    assert rows(db, "select amount, status from refunds") == [(1500, "succeeded")]


def test_a_retry_after_the_answer_was_lost_replays_the_refund_instead_of_refunding_again(
    stack: Stack, db: str, feed: WorkerFeed, member: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a first attempt whose refund Stripe made, but whose confirmation never reached
    # the database (the invocation died between the two)
    pi = paid_purchase(stack, db, feed, member)
    body = {"payment_intent": pi, "amount": 2000, "reason": "requested_by_customer"}
    real_call = PostgresStore.call

    def database_lost_after_stripe(self: PostgresStore, function: str, **params: Any) -> Any:
        if function == "confirm_refund":
            raise errors.UpstreamUnavailable(code="database_unavailable")
        return real_call(self, function, **params)

    monkeypatch.setattr(PostgresStore, "call", database_lost_after_stripe)
    assert refund(stack, body).status == 503
    monkeypatch.setattr(PostgresStore, "call", real_call)
    assert len(stripe_refunds(stack, pi)) == 1

    # When the admin sends the same request again
    retried = refund(stack, body)

    # Then Stripe replays the same refund: still one, now recorded
    assert retried.status == 201
    [at_stripe] = stripe_refunds(stack, pi)
    assert retried.body["id"] == at_stripe["id"]
    assert rows(db, "select id, amount from refunds") == [(at_stripe["id"], 2000)]
    assert purchase_state(db, pi) == ("partially_refunded", 2000)


def test_a_refund_the_worker_records_first_keeps_the_admins_fields_once_confirmed(
    stack: Stack, db: str, feed: WorkerFeed, member: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given Stripe's refund events reach the worker between the Stripe call and our
    # confirmation of it
    pi = paid_purchase(stack, db, feed, member)
    real_call = PostgresStore.call

    def worker_first(self: PostgresStore, function: str, **params: Any) -> Any:
        if function == "confirm_refund":
            feed.deliver_new()
        return real_call(self, function, **params)

    monkeypatch.setattr(PostgresStore, "call", worker_first)

    # When an admin refunds 1200
    answer = refund(
        stack, {"payment_intent": pi, "amount": 1200, "reason": "duplicate", "note": "twice"}
    )

    # Then there is one refund row, Stripe's, with the admin's fields, logged once
    assert answer.status == 201
    assert rows(db, "select id, status, reason, note, requested_by from refunds") == [
        (answer.body["id"], "succeeded", "duplicate", "twice", ADMIN_ID)
    ]
    assert rows(db, "select count(*) from payment_logs where event_type = 'refund.requested'") == [
        (1,)
    ]
    assert purchase_state(db, pi) == ("partially_refunded", 1200)


def _deps(stack: Stack, db: str) -> RefundDeps:
    """What one Lambda container holds: its own database connection and Stripe client."""
    return RefundDeps(
        store=PostgresStore(db),
        payments=StripeService(
            STRIPE_KEY, api_base=stack.emulator.base_url, retry_base_seconds=0.01
        ),
    )


def _race(stack: Stack, db: str, requests: list[tuple[RefundRequest, str | None]]) -> list[Any]:
    """Run each request in its own thread and container, all released at once."""
    barrier = threading.Barrier(len(requests))
    results: list[Any] = [None] * len(requests)

    def run(index: int, request: RefundRequest, key: str | None) -> None:
        deps = _deps(stack, db)
        barrier.wait()
        try:
            results[index] = request_refund(deps, Member(ADMIN_ID, True), request, key)
        except errors.PaymentsError as exc:
            results[index] = exc
        finally:
            deps.store.close()  # type: ignore[attr-defined]

    threads = [
        threading.Thread(target=run, args=(i, request, key))
        for i, (request, key) in enumerate(requests)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_concurrent_requests_for_the_last_cents_refund_them_once(
    stack: Stack, db: str, feed: WorkerFeed, member: str
) -> None:
    # Given a payment with 500 cents left to refund
    pi = paid_purchase(stack, db, feed, member)
    assert (
        refund(stack, {"payment_intent": pi, "amount": 9400, "reason": "duplicate"}).status == 201
    )

    # When two admins ask for those 500 cents at the same moment
    last = RefundRequest(payment_intent=pi, amount=500, reason="duplicate")
    results = _race(stack, db, [(last, "admin-a"), (last, "admin-b")])

    # Then exactly one succeeds and the other is told the amount is no longer there
    refused = [r for r in results if isinstance(r, errors.PaymentsError)]
    assert len(refused) == 1, results
    assert refused[0].code == "refund_exceeds_refundable"
    # ... by our reservation, before Stripe (which would also refuse, but only after a call)
    assert stack.stripe_calls("POST /v1/refunds") == 2
    assert sorted(r["amount"] for r in stripe_refunds(stack, pi)) == [500, 9400]
    assert purchase_state(db, pi) == ("refunded", PRICE)


def test_identical_concurrent_requests_without_a_key_make_one_refund(
    stack: Stack, db: str, feed: WorkerFeed, member: str
) -> None:
    pi = paid_purchase(stack, db, feed, member)
    everything = RefundRequest(payment_intent=pi, reason="requested_by_customer")

    results = _race(stack, db, [(everything, None)] * 3)

    [at_stripe] = stripe_refunds(stack, pi)
    assert at_stripe["amount"] == PRICE
    succeeded = {r.id for r in results if not isinstance(r, errors.PaymentsError)}
    assert succeeded == {at_stripe["id"]}
    assert purchase_state(db, pi) == ("refunded", PRICE)


def test_a_member_who_is_not_an_admin_is_refused_and_stripe_is_not_called(
    stack: Stack, db: str, feed: WorkerFeed, member: str
) -> None:
    pi = paid_purchase(stack, db, feed, member)

    answer = refund(stack, {"payment_intent": pi, "reason": "duplicate"}, as_member=member)

    assert answer.status == 403
    assert answer.body["error"]["code"] == "admin_only"
    assert stack.stripe_calls("POST /v1/refunds") == 0
    assert stack.stripe_calls("GET /v1/payment_intents/{intent}") == 0
    assert rows(db, "select count(*) from refunds") == [(0,)]


def test_a_refund_without_a_member_token_is_a_401(stack: Stack) -> None:
    answer = api(
        "refunds", "POST", "/v1/refunds", body={"payment_intent": "pi_1", "reason": "duplicate"}
    )

    assert answer.status == 401


@pytest.mark.parametrize("worker_saw_the_dispute", [True, False])
def test_a_disputed_payment_cannot_be_refunded(
    stack: Stack, db: str, feed: WorkerFeed, member: str, worker_saw_the_dispute: bool
) -> None:
    # Given a payment the customer disputed (known to our database, or only to Stripe yet)
    pi = paid_purchase(stack, db, feed, member)
    stack.emulator_call("POST", "/_emulator/disputes", json={"payment_intent": pi})
    if worker_saw_the_dispute:
        feed.deliver_new()
        assert purchase_state(db, pi)[0] == "disputed"

    answer = refund(stack, {"payment_intent": pi, "reason": "requested_by_customer"})

    assert answer.status == 409
    assert answer.body["error"]["code"] == "payment_disputed"
    assert stripe_refunds(stack, pi) == []


def test_an_unknown_payment_intent_is_a_404(stack: Stack) -> None:
    answer = refund(stack, {"payment_intent": "pi_doesnotexist", "reason": "duplicate"})

    assert answer.status == 404
    assert answer.body["error"]["code"] == "payment_not_found"
    assert stack.stripe_calls("POST /v1/refunds") == 0


def test_a_refund_made_in_the_stripe_dashboard_counts_before_its_events_arrive(
    stack: Stack, db: str, feed: WorkerFeed, member: str
) -> None:
    # Given 5000 cents refunded directly in Stripe, not yet known to our database
    pi = paid_purchase(stack, db, feed, member)
    httpx.post(
        f"{stack.emulator.base_url}/v1/refunds",
        data={"payment_intent": pi, "amount": 5000},
        headers={"Authorization": f"Bearer {STRIPE_KEY}"},
    ).raise_for_status()
    assert purchase_state(db, pi) == ("paid", 0)

    # When an admin asks for 5000 more
    answer = refund(stack, {"payment_intent": pi, "amount": 5000, "reason": "duplicate"})

    # Then only the 4900 Stripe still holds can be refunded
    assert answer.status == 422
    assert "4900 cents" in answer.body["error"]["message"]


def test_a_pending_refund_is_reported_pending_until_the_worker_settles_it(
    stack: Stack, db: str, feed: WorkerFeed, member: str
) -> None:
    # Given Stripe answers the next refund as pending
    pi = paid_purchase(stack, db, feed, member)
    stack.emulator_call(
        "POST", "/_emulator/refunds/mode", json={"next_status": "pending", "count": 1}
    )

    # When an admin refunds 3000
    answer = refund(
        stack,
        {"payment_intent": pi, "amount": 3000, "reason": "requested_by_customer", "note": "late"},
    )

    # Then the refund is reported pending and already counts against what is refundable
    assert answer.status == 201
    assert answer.body["status"] == "pending"
    assert purchase_state(db, pi) == ("partially_refunded", 3000)

    # When Stripe settles it and the worker receives the events
    feed.deliver_new()
    stack.emulator_call(
        "POST", f"/_emulator/refunds/{answer.body['id']}/settle", json={"status": "succeeded"}
    )
    feed.deliver_new()

    # Then the refund is succeeded and kept the admin's note
    assert rows(db, "select status, note, requested_by from refunds") == [
        ("succeeded", "late", ADMIN_ID)
    ]


def test_a_failed_pending_refund_gives_the_amount_back(
    stack: Stack, db: str, feed: WorkerFeed, member: str
) -> None:
    pi = paid_purchase(stack, db, feed, member)
    stack.emulator_call(
        "POST", "/_emulator/refunds/mode", json={"next_status": "pending", "count": 1}
    )
    pending = refund(stack, {"payment_intent": pi, "amount": 3000, "reason": "duplicate"})
    stack.emulator_call(
        "POST", f"/_emulator/refunds/{pending.body['id']}/settle", json={"status": "failed"}
    )

    feed.deliver_new()

    assert purchase_state(db, pi) == ("paid", 0)
    assert refund(stack, {"payment_intent": pi, "reason": "duplicate"}).body["amount"] == PRICE


def test_the_refund_history_lists_a_payments_refunds_newest_first(
    stack: Stack, db: str, feed: WorkerFeed, member: str
) -> None:
    pi = paid_purchase(stack, db, feed, member)
    older = refund(stack, {"payment_intent": pi, "amount": 1000, "reason": "duplicate"})
    newer = refund(
        stack,
        {"payment_intent": pi, "amount": 2000, "reason": "requested_by_customer", "note": "n"},
    )

    answer = history(stack, pi)

    assert answer.status == 200
    assert answer.headers["Cache-Control"] == "no-store"
    listed = answer.body["refunds"]
    assert [r["id"] for r in listed] == [newer.body["id"], older.body["id"]]
    assert {k: listed[0][k] for k in ("amount", "status", "reason", "note", "requested_by")} == {
        "amount": 2000,
        "status": "succeeded",
        "reason": "requested_by_customer",
        "note": "n",
        "requested_by": ADMIN_ID,
    }


def test_the_refund_history_is_for_admins_and_known_payments_only(
    stack: Stack, db: str, feed: WorkerFeed, member: str
) -> None:
    pi = paid_purchase(stack, db, feed, member)

    assert history(stack, pi, as_member=member).status == 403
    assert history(stack, "pi_unknown").status == 404
    assert history(stack, pi).body == {"payment_intent": pi, "refunds": []}


# --- product switch -----------------------------------------------------------------------


def test_a_paid_switch_refunds_the_original_once_even_when_events_come_twice(
    stack: Stack, db: str, feed: WorkerFeed, member: str
) -> None:
    # Given a member who bought the business plan track
    original = paid_purchase(stack, db, feed, member)

    # When they switch to the website audit and pay the new session
    answer = switch(stack, member, original, "website_audit_feedback")
    assert answer.status == 201, answer.body
    assert answer.body["url"].startswith(stack.emulator.base_url)
    session = stripe_get(stack, f"/v1/checkout/sessions/{answer.body['id']}")
    assert session["metadata"]["switch_from"] == original
    assert session["amount_total"] == 7900
    assert stripe_refunds(stack, original) == []
    pay(stack, answer.body["id"])
    feed.deliver_new(times=2)

    # Then the original payment is refunded once, in full, with the switch as its note
    [at_stripe] = stripe_refunds(stack, original)
    assert (at_stripe["amount"], at_stripe["reason"]) == (PRICE, "requested_by_customer")
    assert at_stripe["metadata"]["note"] == "product switch to website_audit_feedback"
    assert purchase_state(db, original) == ("switched", PRICE)
    assert rows(
        db, "select product, status from purchases where member_id = %s order by id", member
    ) == [("business_plan_builder", "switched"), ("website_audit_feedback", "paid")]
    assert rows(db, "select payment_intent_id, note from refunds") == [
        (original, "product switch to website_audit_feedback")
    ]
    # ... both sides are in the member's payment log
    logged = {
        event_type
        for (event_type,) in rows(
            db, "select event_type from payment_logs where user_id = %s", member
        )
    }
    assert {"purchase.switch_requested", "checkout.session.completed"} <= logged

    # When Stripe's refund events follow, twice
    feed.deliver_new(times=2)

    # Then nothing changes: still one refund, the original still switched
    assert len(stripe_refunds(stack, original)) == 1
    assert purchase_state(db, original) == ("switched", PRICE)
    assert rows(db, "select count(*) from refunds") == [(1,)]
    assert ("refund.created",) in rows(
        db, "select event_type from payment_logs where user_id = %s", member
    )
    # ... and an admin can no longer refund it
    again = refund(stack, {"payment_intent": original, "reason": "duplicate"})
    assert again.status == 409


def test_a_revoked_token_cannot_switch_a_purchase(
    stack: Stack, db: str, feed: WorkerFeed, member: str
) -> None:
    # Given a paid purchase, and the member's session revoked in Memberstack since
    original = paid_purchase(stack, db, feed, member)
    token = stack.token(member)
    stack.memberstack.revoke(token)
    sessions_before = stack.stripe_calls("POST /v1/checkout/sessions")

    # When the token (whose signature is still valid) asks for a switch
    answer = api(
        "refunds",
        "POST",
        "/v1/purchases/switch",
        body={"payment_intent": original, "product": "website_audit_feedback"},
        token=token,
    )

    # Then Memberstack is asked, refuses it, and no new checkout starts the switch
    assert answer.status == 401
    assert answer.body["error"]["code"] == "unauthenticated"
    assert stack.stripe_calls("POST /v1/checkout/sessions") == sessions_before
    assert purchase_state(db, original) == ("paid", 0)


def test_a_switch_whose_new_payment_is_declined_refunds_nothing(
    stack: Stack, db: str, feed: WorkerFeed, member: str
) -> None:
    original = paid_purchase(stack, db, feed, member)
    answer = switch(stack, member, original, "social_media_email_campaign")
    assert answer.status == 201

    pay(stack, answer.body["id"], outcome="decline")
    feed.deliver_new()

    assert stripe_refunds(stack, original) == []
    assert purchase_state(db, original) == ("paid", 0)
    assert rows(db, "select count(*) from outbox where kind = 'switch_refund'") == [(0,)]


def test_switching_someone_elses_purchase_looks_like_an_unknown_payment(
    stack: Stack, db: str, feed: WorkerFeed, member: str
) -> None:
    original = paid_purchase(stack, db, feed, member)
    stranger = f"mem_{uuid.uuid4().hex[:10]}"

    theirs = switch(stack, stranger, original, "website_audit_feedback")
    unknown = switch(stack, stranger, "pi_unknown", "website_audit_feedback")

    assert (theirs.status, unknown.status) == (404, 404)
    assert theirs.body == unknown.body
    assert stack.stripe_calls("POST /v1/checkout/sessions") == 1  # the original's only


@pytest.mark.parametrize(
    ("product", "status", "code"),
    [
        ("business_plan_builder", 409, "same_product"),
        ("growth_monthly", 400, "unknown_product"),
        ("no_such_track", 400, "unknown_product"),
    ],
)
def test_a_switch_goes_only_to_another_one_time_track(
    stack: Stack, db: str, feed: WorkerFeed, member: str, product: str, status: int, code: str
) -> None:
    original = paid_purchase(stack, db, feed, member)

    answer = switch(stack, member, original, product)

    assert answer.status == status
    assert answer.body["error"]["code"] == code


def test_a_partly_refunded_purchase_cannot_be_switched(
    stack: Stack, db: str, feed: WorkerFeed, member: str
) -> None:
    original = paid_purchase(stack, db, feed, member)
    refund(stack, {"payment_intent": original, "amount": 100, "reason": "duplicate"})

    answer = switch(stack, member, original, "website_audit_feedback")

    assert answer.status == 409
    assert answer.body["error"]["code"] == "purchase_not_switchable"


def test_a_switch_to_a_track_the_member_already_owns_is_refused(
    stack: Stack, db: str, feed: WorkerFeed, member: str
) -> None:
    original = paid_purchase(stack, db, feed, member)
    paid_purchase(stack, db, feed, member, "website_audit_feedback")

    answer = switch(stack, member, original, "website_audit_feedback")

    assert answer.status == 409
    assert answer.body["error"]["code"] == "already_purchased"
