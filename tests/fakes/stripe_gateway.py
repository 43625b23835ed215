"""An in-memory Stripe for domain tests, honouring idempotency keys like Stripe does."""

from __future__ import annotations

import itertools
import time
from typing import Any

from payments.models import CheckoutSession, StripePrice


class FakeStripeGateway:
    def __init__(self, prices: dict[str, StripePrice]) -> None:
        self.prices = prices
        self.customers: dict[str, str] = {}  # customer id -> member id
        self.sessions: dict[str, dict[str, Any]] = {}
        self.expired: list[str] = []
        self._by_key: dict[str, Any] = {}
        self._ids = itertools.count(1)
        self.price_lookups = 0

    def prices_by_lookup_key(self, lookup_keys: list[str]) -> dict[str, StripePrice]:
        self.price_lookups += 1
        return {k: p for k, p in self.prices.items() if k in lookup_keys}

    def create_checkout_session(self, *, idempotency_key: str, **params: Any) -> CheckoutSession:
        if idempotency_key not in self._by_key:
            session_id = f"cs_test_{next(self._ids)}"
            self.sessions[session_id] = params
            self._by_key[idempotency_key] = CheckoutSession(
                session_id,
                f"https://checkout.example/{session_id}",
                # Stripe's default: a day from now.
                expires_at=int(time.time()) + 86400,
            )
        result: CheckoutSession = self._by_key[idempotency_key]
        return result

    def expire_checkout_session(self, session_id: str, idempotency_key: str) -> None:
        self.expired.append(session_id)
