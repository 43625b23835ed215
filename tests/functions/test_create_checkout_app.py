"""POST /v1/checkout/sessions end to end: the handler, the Stripe emulator, the Memberstack
stand-in and the real Postgres."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from tests.stack import *  # noqa: F403
from tests.stack import Answer, Stack, api

pytestmark = pytest.mark.integration

BUY = {"product": "business_plan_builder"}


@pytest.fixture
def member() -> str:
    """A member new to Stripe too: the emulator lives for the whole session."""
    return f"mem_{uuid.uuid4().hex[:10]}"


def buy(stack: Stack, member: str, **kw: object) -> Answer:
    return api(
        "create_checkout",
        "POST",
        "/v1/checkout/sessions",
        body=BUY,
        token=stack.token(member),
        **kw,
    )  # type: ignore[arg-type]


def test_a_member_gets_a_checkout_url_that_opens_the_emulators_page(
    stack: Stack, db: str, member: str
) -> None:
    answer = buy(stack, member)
    assert answer.status == 201
    session_id, url = answer.body["id"], answer.body["url"]
    assert session_id.startswith("cs_test_")
    import httpx

    html = httpx.get(url).text
    assert "$99.00" in html
    session = stack.emulator_call(
        "GET",
        f"/v1/checkout/sessions/{session_id}",
        headers={"Authorization": "Bearer sk_test_stack_0123456789"},
    )
    assert session["metadata"]["member_id"] == member
    assert session["client_reference_id"] == member
    assert session["success_url"] == "https://site.example/f5?session_id={CHECKOUT_SESSION_ID}"
    assert session["cancel_url"] == "https://site.example/f4"
    assert session["amount_total"] == 9900


def test_a_retried_request_with_the_same_key_returns_the_same_session(
    stack: Stack, member: str
) -> None:
    first = buy(stack, member, headers={"Idempotency-Key": "click-42"})
    again = buy(stack, member, headers={"Idempotency-Key": "click-42"})
    assert first.body["id"] == again.body["id"]
    # The open session is handed out again without asking Stripe a second time.
    assert stack.stripe_calls("POST /v1/checkout/sessions") == 1


def test_racing_requests_that_miss_each_other_still_make_one_session_per_key(
    stack: Stack, db: str, member: str
) -> None:
    # Given the first answer was lost before it was recorded (our row gone)
    first = buy(stack, member, headers={"Idempotency-Key": "click-7"})
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("delete from purchases")
    # When the client retries with the same key
    again = buy(stack, member, headers={"Idempotency-Key": "click-7"})
    # Then Stripe replays the same session for the same key
    assert again.body["id"] == first.body["id"]
    assert stack.stripe_calls("POST /v1/checkout/sessions") == 2


def test_checkout_creates_the_customer_and_the_worker_remembers_it(
    stack: Stack, db: str, member: str
) -> None:
    from tests.worker_feed import WorkerFeed

    feed = WorkerFeed(stack.emulator.base_url, "sk_test_stack_0123456789")
    # Given a first purchase: no customer search or create on the click
    first = buy(stack, member)
    assert stack.stripe_calls("POST /v1/customers") == 0
    assert stack.stripe_calls("GET /v1/customers/search") == 0
    # When it is paid and its events reach the worker
    stack.emulator_call(
        "POST", f"/_emulator/checkout/sessions/{first.body['id']}/pay", json={"outcome": "success"}
    )
    feed.deliver_new()
    # Then the customer Checkout created is the member's, and the next checkout uses it
    with psycopg.connect(db) as conn:
        [(customer,)] = conn.execute(
            "select stripe_customer_id from customers where member_id = %s", (member,)
        ).fetchall()
    second = api(
        "create_checkout",
        "POST",
        "/v1/checkout/sessions",
        body={"product": "website_audit_feedback"},
        token=stack.token(member),
    )
    session = stack.emulator_call(
        "GET",
        f"/v1/checkout/sessions/{second.body['id']}",
        headers={"Authorization": "Bearer sk_test_stack_0123456789"},
    )
    assert session["customer"] == customer


def test_stripe_throttling_is_retried_into_one_session(stack: Stack, db: str, member: str) -> None:
    stack.fault("POST", "/v1/checkout/sessions", 429, times=2)
    answer = buy(stack, member)
    assert answer.status == 201
    assert stack.stripe_calls("POST /v1/checkout/sessions") == 3
    with psycopg.connect(db) as conn:
        assert conn.execute("select count(*) from purchases").fetchone() == (1,)


def test_stripe_failing_for_good_is_a_502_after_three_retries(
    stack: Stack, db: str, member: str
) -> None:
    stack.fault("POST", "/v1/checkout/sessions", 500, times=10, should_retry=True)
    answer = buy(stack, member)
    assert answer.status == 502
    assert answer.body["error"]["message"] == "Payment could not be started, please retry."
    assert stack.stripe_calls("POST /v1/checkout/sessions") == 4
    with psycopg.connect(db) as conn:
        assert conn.execute("select count(*) from purchases").fetchone() == (0,)


def test_a_declined_request_error_is_not_retried(stack: Stack, member: str) -> None:
    stack.fault("POST", "/v1/checkout/sessions", 400, times=1)
    answer = buy(stack, member)
    assert answer.status == 502
    assert stack.stripe_calls("POST /v1/checkout/sessions") == 1


@pytest.mark.parametrize(
    ("token", "status"),
    [(None, 401), ("garbage", 401), ("a.b.c", 401)],
)
def test_requests_without_a_valid_member_are_refused(
    stack: Stack, token: str | None, status: int
) -> None:
    answer = api("create_checkout", "POST", "/v1/checkout/sessions", body=BUY, token=token)
    assert answer.status == status
    assert answer.body["error"]["code"] == "unauthenticated"
    assert stack.stripe_calls("POST /v1/checkout/sessions") == 0


def test_memberstack_down_is_a_503(
    stack: Stack, service_env: pytest.MonkeyPatch, member: str
) -> None:
    service_env.setenv("MEMBERSTACK_API_BASE", "http://127.0.0.1:9")
    answer = buy(stack, member)
    assert answer.status == 503
    assert answer.body["error"]["code"] == "auth_unavailable"


def test_an_unknown_product_lists_the_valid_ones(stack: Stack, member: str) -> None:
    answer = api(
        "create_checkout",
        "POST",
        "/v1/checkout/sessions",
        body={"product": "nope"},
        token=stack.token(member),
    )
    assert answer.status == 400
    assert answer.body["error"]["code"] == "unknown_product"
    assert "website_audit_feedback" in answer.body["error"]["message"]


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"{not json", 400),
        (b'{"product": "x", "price": 1}', 400),
        (b"[]", 400),
        (b'{"product": "' + b"x" * 20000 + b'"}', 413),
    ],
)
def test_bad_bodies_are_refused_before_stripe(
    stack: Stack, raw: bytes, status: int, member: str
) -> None:
    answer = api(
        "create_checkout",
        "POST",
        "/v1/checkout/sessions",
        raw_body=raw,
        token=stack.token(member),
    )
    assert answer.status == status
    assert "error" in answer.body
    assert stack.stripe_calls("POST /v1/checkout/sessions") == 0


def test_a_customer_stripe_no_longer_knows_is_replaced(stack: Stack, db: str, member: str) -> None:
    # Given a stored customer that Stripe does not know (deleted in the Dashboard)
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(
            "insert into customers (member_id, stripe_customer_id) values (%s, 'cus_deleted')",
            (member,),
        )
    # When the member buys
    answer = buy(stack, member)
    # Then the checkout goes through, Checkout creates a new customer, and the dead mapping is
    # gone (the new one is stored when the session completes)
    assert answer.status == 201
    session = stack.emulator_call(
        "GET",
        f"/v1/checkout/sessions/{answer.body['id']}",
        headers={"Authorization": "Bearer sk_test_stack_0123456789"},
    )
    assert session["customer"] is None
    assert session["customer_creation"] == "always"
    with psycopg.connect(db) as conn:
        mappings = conn.execute(
            "select stripe_customer_id from customers where member_id = %s", (member,)
        ).fetchall()
    assert mappings == []
