"""Latency injection for the local stand-ins: a delay before each answer, and a log of calls.

On loopback every upstream answers in microseconds, which hides what a buyer feels: each
Stripe call costs a few hundred milliseconds, Memberstack about as much, a Supabase RPC tens
of milliseconds. A stand-in given a :class:`Latency` sleeps that long before answering each
call and records it (kind, name, start, end) in a :class:`CallLog`, so ``make bench`` can
report wall times under realistic delays and count the calls a request waited for.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class Call:
    kind: str  # "stripe", "memberstack", "database", "sqs", "make"
    name: str  # e.g. "POST /v1/checkout/sessions"
    started: float  # time.perf_counter()
    ended: float


class CallLog:
    """Every call the delayed stand-ins answered, in the order they finished. Thread-safe."""

    def __init__(self) -> None:
        self._calls: list[Call] = []
        self._lock = threading.Lock()

    def add(self, call: Call) -> None:
        with self._lock:
            self._calls.append(call)

    def started_between(self, start: float, end: float) -> list[Call]:
        """The calls that began in ``[start, end]`` (some may finish later)."""
        with self._lock:
            return [c for c in self._calls if start <= c.started <= end]

    def clear(self) -> None:
        with self._lock:
            self._calls.clear()


class Latency:
    """What one stand-in adds to each call: ``seconds`` of delay, recorded in ``log``."""

    def __init__(self, kind: str, seconds: float = 0.0, log: CallLog | None = None) -> None:
        self.kind = kind
        self.seconds = seconds
        self.log = log if log is not None else CallLog()

    @contextmanager
    def around(self, name: str) -> Iterator[None]:
        """Delay, then run the body (the stand-in's answer), then record the call."""
        started = time.perf_counter()
        if self.seconds > 0:
            time.sleep(self.seconds)
        try:
            yield
        finally:
            self.log.add(Call(self.kind, name, started, time.perf_counter()))
