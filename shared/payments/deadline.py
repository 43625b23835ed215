"""The time left in this invocation, so retries never outlive the Lambda.

Handlers call ``start_invocation(context)``; adapters ask ``remaining_seconds()`` before
sleeping for a retry. Outside Lambda (tools, tests) there is no deadline.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from typing import Protocol

# What we keep back to answer the caller after the last attempt gives up.
SAFETY_MARGIN_SECONDS = 1.0

_deadline: ContextVar[float | None] = ContextVar("deadline", default=None)


class HasRemainingTime(Protocol):
    def get_remaining_time_in_millis(self) -> int: ...


def start_invocation(context: HasRemainingTime | None) -> None:
    if context is None:
        _deadline.set(None)
        return
    _deadline.set(time.monotonic() + context.get_remaining_time_in_millis() / 1000)


def remaining_seconds() -> float:
    """Seconds left before the safety margin, or infinity outside an invocation."""
    deadline = _deadline.get()
    if deadline is None:
        return float("inf")
    return deadline - time.monotonic() - SAFETY_MARGIN_SECONDS
