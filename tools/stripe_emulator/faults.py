"""Fault injection and call accounting for reliability tests.

A fault rule makes the next ``times`` API calls that match ``method`` and ``path`` fail with
``status`` (and Stripe's error body for it), optionally after hanging for ``hang_seconds`` so a
client's timeout fires. Every API call is counted per concrete path and per route template, so a
test can assert how many attempts a retrying client made.
"""

from __future__ import annotations

import fnmatch
import threading
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from tools.stripe_emulator.errors import StripeError

# What Stripe answers for each status a test may inject.
_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Injected fault: invalid request."),
    401: ("invalid_request_error", None, "Invalid API Key provided."),
    402: ("card_error", "card_declined", "Your card was declined."),
    404: ("invalid_request_error", "resource_missing", "Injected fault: no such resource."),
    409: (
        "invalid_request_error",
        "lock_timeout",
        "This object cannot be accessed right now because another API request or Stripe "
        "process is currently accessing it.",
    ),
    429: (
        "invalid_request_error",
        "rate_limit",
        "Request rate limit exceeded. Learn more about rate limits here "
        "https://stripe.com/docs/rate-limits.",
    ),
    500: ("api_error", None, "Injected fault: an error occurred with our connection to Stripe."),
    502: ("api_error", None, "Injected fault: bad gateway."),
    503: ("api_error", None, "Injected fault: service unavailable."),
}


@dataclass
class FaultRule:
    """One injected failure, consumed by the next ``times`` matching calls."""

    method: str
    path: str
    status: int = 500
    times: int = 1
    should_retry: bool | None = None
    hang_seconds: float = 0.0
    message: str | None = None
    code: str | None = None

    def matches(self, method: str, path: str) -> bool:
        """True when the call is ``method path`` (``*`` method and glob paths allowed)."""
        method_ok = self.method in ("*", method.upper())
        return method_ok and (self.path == path or fnmatch.fnmatchcase(path, self.path))

    def error(self) -> StripeError | None:
        """The error to answer, or None for a hang-only rule (status 0)."""
        if not self.status:
            return None
        type_, code, message = _ERRORS.get(
            self.status, ("api_error", None, f"Injected fault: HTTP {self.status}.")
        )
        headers = {}
        if self.should_retry is not None:
            headers["Stripe-Should-Retry"] = "true" if self.should_retry else "false"
        return StripeError(
            self.message or message,
            status=self.status,
            type=type_,
            code=self.code or code,
            headers=headers,
        )


class FaultRegistry:
    """The active fault rules and the per-route call counts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self.calls: Counter[str] = Counter()
        self.routes: Counter[str] = Counter()

    def add(self, spec: dict[str, Any]) -> FaultRule:
        """Add a rule from the helper API's JSON body."""
        if "path" not in spec:
            raise StripeError("A fault needs a path.", param="path")
        rule = FaultRule(
            method=str(spec.get("method", "*")).upper(),
            path=str(spec["path"]),
            status=int(spec.get("status", 500)),
            times=int(spec.get("times", 1)),
            should_retry=spec.get("should_retry"),
            hang_seconds=float(spec.get("hang_seconds", 0)),
            message=spec.get("message"),
            code=spec.get("code"),
        )
        if rule.times < 1:
            raise StripeError("times must be at least 1.", param="times")
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear(self) -> None:
        """Remove every rule."""
        with self._lock:
            self._rules.clear()

    def take(self, method: str, path: str) -> FaultRule | None:
        """Consume one use of the first rule matching this call, if any."""
        with self._lock:
            for rule in self._rules:
                if rule.matches(method, path):
                    rule.times -= 1
                    if rule.times <= 0:
                        self._rules.remove(rule)
                    return rule
        return None

    def record(self, method: str, path: str, route: str | None) -> None:
        """Count one call, by concrete path and by route template."""
        with self._lock:
            self.calls[f"{method} {path}"] += 1
            if route:
                self.routes[f"{method} {route}"] += 1

    def snapshot(self) -> dict[str, Any]:
        """Counts and remaining rules for ``GET /_emulator/calls`` and ``/faults``."""
        with self._lock:
            return {
                "calls": dict(self.calls),
                "routes": dict(self.routes),
                "total": sum(self.calls.values()),
                "faults": [asdict(r) for r in self._rules],
            }

    def reset_calls(self) -> None:
        """Zero the call counts."""
        with self._lock:
            self.calls.clear()
            self.routes.clear()
