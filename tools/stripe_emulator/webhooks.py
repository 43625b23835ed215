"""Webhook signing and delivery.

Events are delivered by one background thread, one at a time and in the order they were queued,
so an endpoint sees ``checkout.session.completed`` after the ``payment_intent.succeeded`` that
preceded it, as it would from Stripe most of the time. Failed attempts (non-2xx answers or
connection errors) are retried with a short exponential backoff, a bounded number of times; an
event whose attempts all failed keeps ``pending_webhooks: 1`` so that
``events.list(delivery_success=false)`` finds it, exactly like Stripe.

Tests wait for deliveries deterministically with :meth:`WebhookDispatcher.flush`, never by
sleeping.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
import urllib.error
import urllib.request
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from typing import Any

from tools.stripe_emulator.state import Store

log = logging.getLogger("tools.stripe_emulator.webhooks")

# Webhook payloads are posted straight to the configured URL, never through an HTTP proxy
# that the environment might set for outbound traffic.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
USER_AGENT = "Stripe/1.0 (+https://stripe.com/docs/webhooks)"


def new_webhook_secret() -> str:
    """A random endpoint secret in Stripe's format (``whsec_...``)."""
    return "whsec_" + secrets.token_hex(16)


def sign(payload: str, secret: str, timestamp: int) -> str:
    """The ``Stripe-Signature`` header value for ``payload``: ``t=<ts>,v1=<hex hmac-sha256>``."""
    signed = f"{timestamp}.{payload}".encode()
    digest = hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


@dataclass
class WebhookConfig:
    """Where and how events are delivered."""

    url: str | None = None
    secret: str = field(default_factory=new_webhook_secret)
    auto_deliver: bool = True
    max_attempts: int = 3
    retry_backoff: float = 0.05
    timeout: float = 5.0

    def public(self) -> dict[str, Any]:
        """The configuration as JSON for the helper API."""
        return asdict(self)


@dataclass
class Attempt:
    """One POST of an event to the endpoint."""

    at: float
    status: int | None
    error: str | None
    duration_ms: int


class WebhookDispatcher:
    """Queues events and posts them, signed, to the configured endpoint."""

    def __init__(self, store: Store, config: WebhookConfig) -> None:
        self.store = store
        self.config = config
        self._queue: deque[str] = deque()
        self._cond = threading.Condition()
        self._busy = False
        self._stop = threading.Event()
        self.attempts: dict[str, list[Attempt]] = {}
        self.counts: Counter[str] = Counter()
        self._thread = threading.Thread(
            target=self._run, name="stripe-emulator-webhooks", daemon=True
        )

    def start(self) -> None:
        """Start the delivery thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the delivery thread; queued deliveries are dropped."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=self.config.timeout + 1)

    def configure(self, **changes: Any) -> WebhookConfig:
        """Change the endpoint at run time (url, secret, auto_deliver, retry settings)."""
        with self._cond:
            for key, value in changes.items():
                if value is not None or key == "url":
                    setattr(self.config, key, value)
            return self.config

    def on_event(self, event: dict[str, Any]) -> None:
        """Record a just-created event as pending for the endpoint and queue it if automatic.

        Called with the store lock held, so the event is never visible without its
        ``pending_webhooks`` count.
        """
        if not self.config.url:
            return
        event["pending_webhooks"] = 1
        if self.config.auto_deliver:
            self.enqueue([event["id"]])

    def enqueue(self, event_ids: list[str]) -> int:
        """Queue deliveries (an id may appear several times: each is one more delivery)."""
        with self._cond:
            self._queue.extend(event_ids)
            self._cond.notify_all()
        return len(event_ids)

    def flush(self, timeout: float = 30.0) -> bool:
        """Block until every queued delivery is finished; False if ``timeout`` ran out."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue and not self._busy, timeout)

    def reset(self) -> None:
        """Drop queued deliveries and forget delivery history."""
        with self._cond:
            self._queue.clear()
            self.attempts.clear()
            self.counts.clear()

    def summary(self) -> dict[str, Any]:
        """Counts for the helper API."""
        with self._cond:
            return {
                "queued": len(self._queue),
                "in_flight": self._busy,
                "delivered": self.counts["delivered"],
                "failed": self.counts["failed"],
                "attempts": self.counts["attempts"],
            }

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._stop.is_set())
                if self._stop.is_set():
                    return
                event_id = self._queue.popleft()
                self._busy = True
            try:
                self._deliver(event_id)
            except Exception:  # the thread must survive any one bad delivery
                log.exception("webhook delivery of %s crashed", event_id)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _deliver(self, event_id: str) -> None:
        with self.store.lock:
            event = self.store.objects.get(event_id)
            if event is None:
                return
            # Stripe sends the event pretty-printed; the signature covers these exact bytes.
            payload = json.dumps(event, indent=2)
        with self._cond:
            url, secret = self.config.url, self.config.secret
            max_attempts = max(1, self.config.max_attempts)
            backoff, timeout = self.config.retry_backoff, self.config.timeout
        if not url:
            return
        for attempt in range(1, max_attempts + 1):
            ok = self._post(event_id, url, secret, payload, timeout)
            if ok:
                with self.store.lock:
                    event["pending_webhooks"] = 0
                with self._cond:
                    self.counts["delivered"] += 1
                return
            if attempt < max_attempts and self._stop.wait(backoff * 2 ** (attempt - 1)):
                return
        with self._cond:
            self.counts["failed"] += 1
        log.info("webhook %s not delivered after %d attempts", event_id, max_attempts)

    def _post(self, event_id: str, url: str, secret: str, payload: str, timeout: float) -> bool:
        # The signature uses the real clock: the receiver checks it against its own time.
        header = sign(payload, secret, int(time.time()))
        request = urllib.request.Request(
            url,
            data=payload.encode("utf-8"),
            method="POST",
            headers={
                "Content-Type": "application/json; charset=utf-8",
                "User-Agent": USER_AGENT,
                "Stripe-Signature": header,
            },
        )
        started = time.monotonic()
        status: int | None = None
        error: str | None = None
        try:
            with _OPENER.open(request, timeout=timeout) as response:
                response.read()
                status = response.status
        except urllib.error.HTTPError as exc:
            status = exc.code
            error = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            error = str(getattr(exc, "reason", exc))
        attempt = Attempt(
            at=time.time(),
            status=status,
            error=error,
            duration_ms=int((time.monotonic() - started) * 1000),
        )
        with self._cond:
            self.attempts.setdefault(event_id, []).append(attempt)
            self.counts["attempts"] += 1
        return status is not None and 200 <= status < 300
