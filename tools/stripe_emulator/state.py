"""The emulator's in-memory store.

One :class:`Store` holds every object by id plus the bookkeeping the API needs (creation order
for lists, internal data that Stripe keeps but never returns, idempotency results). A single
re-entrant lock guards it: every API call runs its whole state change under the lock, which keeps
multi-object updates (a payment touching a session, an intent, a charge and several events)
atomic without per-object locking. Network I/O (webhook delivery, hangs injected by faults)
never happens while the lock is held.
"""

from __future__ import annotations

import contextvars
import copy
import secrets
import string
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tools.stripe_emulator.errors import StripeError, resource_missing

_ALPHABET = string.ascii_letters + string.digits

# Stripe's own id lengths differ by resource; these keep the same look.
_ID_LENGTHS = {"cus_": 14, "prod_": 14, "si_": 14, "cs_test_": 58}

# Human names used in "No such <kind>" messages, by id prefix.
KIND_BY_PREFIX = {
    "prod_": "product",
    "price_": "price",
    "cus_": "customer",
    "cs_test_": "checkout.session",
    "pi_": "payment_intent",
    "ch_": "charge",
    "re_": "refund",
    "sub_": "subscription",
    "si_": "subscription_item",
    "in_": "invoice",
    "inpay_": "invoice_payment",
    "ii_": "invoiceitem",
    "dp_": "dispute",
    "evt_": "event",
    "we_": "webhook_endpoint",
    "bpc_": "billing_portal.configuration",
    "bps_": "billing_portal.session",
}


def new_id(prefix: str) -> str:
    """Return a random Stripe-looking id such as ``cus_Q3k9...``."""
    length = _ID_LENGTHS.get(prefix, 24)
    body = "".join(secrets.choice(_ALPHABET) for _ in range(length))
    if prefix == "cs_test_":
        body = "a1" + body[2:]
    return prefix + body


@dataclass
class RequestInfo:
    """The API request being served, recorded in the ``request`` field of events it causes."""

    id: str | None
    idempotency_key: str | None


_current_request: contextvars.ContextVar[RequestInfo | None] = contextvars.ContextVar(
    "stripe_emulator_request", default=None
)


@contextmanager
def request_context(info: RequestInfo | None) -> Iterator[None]:
    """Attribute the events created inside the block to ``info`` (None: no API request)."""
    token = _current_request.set(info)
    try:
        yield
    finally:
        _current_request.reset(token)


def current_request() -> RequestInfo | None:
    """The request events are attributed to right now, if any."""
    return _current_request.get()


@dataclass
class IdempotentResult:
    """A saved response for an ``Idempotency-Key``."""

    fingerprint: str
    status: int
    body: bytes
    headers: dict[str, str]


@dataclass
class Store:
    """Objects by id, creation order per object type, and emulator-only data."""

    lock: threading.RLock = field(default_factory=threading.RLock)
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    order: dict[str, list[str]] = field(default_factory=dict)
    # Data Stripe keeps server-side but never shows, keyed by object id.
    internal: dict[str, dict[str, Any]] = field(default_factory=dict)
    idempotency: dict[tuple[str, str], IdempotentResult] = field(default_factory=dict)
    idempotency_in_flight: set[tuple[str, str]] = field(default_factory=set)
    clock_offset: int = 0
    # Where the emulator is reachable, for URLs it hands out (hosted checkout pages).
    base_url: str = "http://127.0.0.1"
    # Test helper state: status given to the next refunds (None: Stripe's default, succeeded).
    refund_next_status: str | None = None
    refund_next_count: int | None = None
    # Called with every event right after it is stored (the webhook dispatcher).
    event_listeners: list[Callable[[dict[str, Any]], None]] = field(default_factory=list)

    def now(self) -> int:
        """Current Unix time as the emulator sees it (shifted by the clock helper)."""
        return int(time.time()) + self.clock_offset

    def reset(self) -> None:
        """Forget every object and saved response."""
        with self.lock:
            self.objects.clear()
            self.order.clear()
            self.internal.clear()
            self.idempotency.clear()
            self.idempotency_in_flight.clear()
            self.clock_offset = 0
            self.refund_next_status = None
            self.refund_next_count = None

    def add(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Store a new object under its ``id`` and remember its creation order."""
        with self.lock:
            self.objects[obj["id"]] = obj
            self.order.setdefault(obj["object"], []).append(obj["id"])
            return obj

    def get(self, object_id: Any, kind: str, param: str | None = "id") -> dict[str, Any]:
        """Return the stored object ``object_id`` of type ``kind`` or raise Stripe's 404."""
        obj = self.objects.get(object_id) if isinstance(object_id, str) else None
        if obj is None or obj.get("object") != kind:
            raise resource_missing(kind, str(object_id), param)
        return obj

    def hidden(self, object_id: str) -> dict[str, Any]:
        """Internal, never-serialised data attached to ``object_id``."""
        return self.internal.setdefault(object_id, {})

    def all(self, kind: str) -> list[dict[str, Any]]:
        """Every object of ``kind``, newest first (Stripe's list order)."""
        ids = self.order.get(kind, [])
        return [self.objects[i] for i in reversed(ids) if i in self.objects]

    def snapshot(self, obj: dict[str, Any]) -> dict[str, Any]:
        """A deep copy that later changes to the stored object cannot reach."""
        return copy.deepcopy(obj)


def paginate(items: list[dict[str, Any]], params: dict[str, Any], url: str) -> dict[str, Any]:
    """Apply ``limit``/``starting_after``/``ending_before`` to a newest-first list."""
    limit = params.get("limit", 10)
    if not 1 <= limit <= 100:
        raise StripeError(
            f"This value must be between 1 and 100 (it currently is {limit}).",
            param="limit",
        )
    ids = [o["id"] for o in items]
    start, end = 0, len(items)
    if params.get("starting_after"):
        cursor = params["starting_after"]
        if cursor not in ids:
            raise resource_missing(
                KIND_BY_PREFIX.get(_prefix(cursor), "object"), cursor, "starting_after"
            )
        start = ids.index(cursor) + 1
    elif params.get("ending_before"):
        cursor = params["ending_before"]
        if cursor not in ids:
            raise resource_missing(
                KIND_BY_PREFIX.get(_prefix(cursor), "object"), cursor, "ending_before"
            )
        end = ids.index(cursor)
        start = max(0, end - limit)
    page = items[start:end][:limit]
    has_more = (start + len(page) < end) if not params.get("ending_before") else start > 0
    return {"object": "list", "data": page, "has_more": has_more, "url": url}


def _prefix(object_id: str) -> str:
    for prefix in sorted(KIND_BY_PREFIX, key=len, reverse=True):
        if object_id.startswith(prefix):
            return prefix
    return ""


def kind_of(object_id: str) -> str | None:
    """The object type an id belongs to, from its prefix."""
    return KIND_BY_PREFIX.get(_prefix(object_id))


def match_created(obj: dict[str, Any], created: Any) -> bool:
    """Apply a ``created`` filter (an int, or ``{gt, gte, lt, lte}``)."""
    if created is None:
        return True
    value = obj.get("created", 0)
    if isinstance(created, int):
        return bool(value == created)
    checks = {
        "gt": lambda bound: value > bound,
        "gte": lambda bound: value >= bound,
        "lt": lambda bound: value < bound,
        "lte": lambda bound: value <= bound,
    }
    return all(checks[op](bound) for op, bound in created.items() if op in checks)


def deep_merge_metadata(current: dict[str, str], update: Any) -> dict[str, str]:
    """Stripe's metadata update rule: ``""`` clears all, a key set to ``""`` is removed."""
    if update == "":
        return {}
    merged = dict(current)
    for key, value in (update or {}).items():
        if value == "":
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged
