"""Rows of member data written straight into the test database, with the ages a test needs.

The webhook pipeline normally writes these; tests of reads, erasure, retention and analytics
need exact timestamps and statuses, so they insert them directly as the table owner.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import jwt
import psycopg
from psycopg.types.json import Jsonb

from payments.adapters.supabase_store import SupabaseStore
from tests.fakes.postgrest import PostgrestOverPostgres

JWT_SECRET = "test-jwt-secret-with-at-least-32-characters"
# PostgreSQL interval literals: how long ago a row was written.
NOW = "0 seconds"


def supabase_store(db: str) -> SupabaseStore:
    service_key = jwt.encode({"role": "service_role", "iat": int(time.time())}, JWT_SECRET)
    client = httpx.Client(transport=PostgrestOverPostgres(db, JWT_SECRET))
    return SupabaseStore("https://project.supabase.co", service_key, JWT_SECRET, http_client=client)


class Rows:
    """Insert helpers over one autocommit connection."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def log(
        self,
        user_id: str | None,
        *,
        ago: str = NOW,
        event_type: str = "checkout.session.completed",
        amount: int | None = 9900,
        currency: str | None = "usd",
        status: str | None = "paid",
        object_id: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> int:
        row = self.conn.execute(
            "insert into payment_logs (created_at, event_type, user_id, amount, currency, status,"
            " stripe_object_id, metadata) values (now() - %s::interval, %s, %s, %s, %s, %s, %s, %s)"
            " returning id",
            (ago, event_type, user_id, amount, currency, status, object_id, Jsonb(metadata or {})),
        ).fetchone()
        assert row is not None
        return int(row[0])

    def purchase(
        self,
        member_id: str | None,
        session: str,
        *,
        ago: str = NOW,
        updated_ago: str | None = None,
        product: str = "business_plan_builder",
        amount: int = 9900,
        status: str = "paid",
        payment_intent: str | None = None,
        amount_refunded: int = 0,
        at: str | None = None,
        updated_at: str | None = None,
    ) -> None:
        created = at or f"now() - '{ago}'::interval"
        updated = updated_at or (f"now() - '{updated_ago}'::interval" if updated_ago else created)
        # The payment lifecycle behind the status (every status past payment implies paid).
        lifecycle = status if status in ("open", "processing", "failed", "expired") else "paid"
        self.conn.execute(
            "insert into purchases (checkout_session_id, payment_intent_id, member_id, product,"
            " amount, currency, amount_refunded, status, payment_status, created_at, updated_at)"
            f" values (%s, %s, %s, %s, %s, 'usd', %s, %s, %s, {_ts(created)}, {_ts(updated)})",
            (
                session,
                payment_intent,
                member_id,
                product,
                amount,
                amount_refunded,
                status,
                lifecycle,
            ),
        )

    def refund(
        self,
        refund_id: str,
        payment_intent: str,
        member_id: str | None,
        *,
        amount: int = 1000,
        ago: str = NOW,
        status: str = "succeeded",
        note: str | None = None,
        at: str | None = None,
    ) -> None:
        when = at or f"now() - '{ago}'::interval"
        self.conn.execute(
            "insert into refunds (id, payment_intent_id, member_id, amount, currency, status,"
            f" reason, note, requested_by, created_at, updated_at) values (%s, %s, %s, %s,"
            f" 'usd', %s, 'requested_by_customer', %s, 'usr_admin', {_ts(when)}, {_ts(when)})",
            (refund_id, payment_intent, member_id, amount, status, note),
        )

    def subscription(
        self, sub_id: str, member_id: str, *, status: str = "active", ago: str = NOW
    ) -> None:
        self.conn.execute(
            "insert into subscriptions (id, member_id, stripe_customer_id, product, status,"
            " state_as_of, created_at, updated_at) values (%s, %s, %s, 'growth_monthly', %s,"
            " now(), now() - %s::interval, now() - %s::interval)",
            (sub_id, member_id, f"cus_{member_id}", status, ago, ago),
        )

    def customer(self, member_id: str, *, ago: str = NOW) -> None:
        self.conn.execute(
            "insert into customers (member_id, stripe_customer_id, created_at)"
            " values (%s, %s, now() - %s::interval)",
            (member_id, f"cus_{member_id}", ago),
        )

    def outbox(
        self, key: str, payload: dict[str, Any], *, status: str = "sent", ago: str = NOW
    ) -> None:
        self.conn.execute(
            "insert into outbox (kind, dedupe_key, member_id, payload, status, created_at,"
            " sent_at) values ('add_project', %s, %s, %s, %s, now() - %s::interval,"
            " case when %s = 'sent' then now() - %s::interval end)",
            (key, payload.get("member_id"), Jsonb(payload), status, ago, status, ago),
        )

    def processed_event(self, event_id: str, *, ago: str = NOW) -> None:
        self.conn.execute(
            "insert into processed_events (event_id, event_type, event_created, outcome,"
            " processed_at) values (%s, 'checkout.session.completed', now(), 'applied',"
            " now() - %s::interval)",
            (event_id, ago),
        )

    def count(self, table: str, where: str = "true") -> int:
        row = self.conn.execute(f"select count(*) from {table} where {where}").fetchone()
        assert row is not None
        return int(row[0])

    def member(self, member_id: str, tag: str) -> None:
        """A member with a bit of everything: log, purchase, refund, ended subscription,
        customer mapping and a Make.com payload naming them."""
        self.customer(member_id)
        self.log(
            member_id,
            object_id=f"cs_{tag}",
            metadata={"product": "business_plan_builder", "email": f"{tag}@example.test"},
        )
        self.purchase(member_id, f"cs_{tag}", payment_intent=f"pi_{tag}")
        self.refund(f"re_{tag}", f"pi_{tag}", member_id, note=f"{tag} asked by phone")
        self.subscription(f"sub_{tag}", member_id, status="canceled")
        self.outbox(f"make:{tag}", {"member_id": member_id, "product": "business_plan_builder"})


def _ts(expression: str) -> str:
    """A timestamp expression: ``now() - ...`` as given, or a literal date/time quoted."""
    if expression.startswith("now()"):
        return expression
    return f"'{expression}'::timestamptz"
