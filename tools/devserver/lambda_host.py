"""Runs Lambda handlers in-process the way the Lambda runtime would: one import per function
(a warm container), one invocation at a time per function, a context with a deadline.

Each invocation's context is also recorded for its thread (:func:`current_context`), so the
dev log credits a line to the function that wrote it even though every function shares one
process. Kept free of heavy imports: benchmarks time handler imports after importing this.
"""

from __future__ import annotations

import importlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

Handler = Callable[[dict[str, Any], Any], Any]

_invocation = threading.local()


def current_context() -> Any | None:
    """The Lambda context of the invocation this thread is running, if any."""
    return getattr(_invocation, "context", None)


@contextmanager
def invocation(context: Any) -> Iterator[None]:
    """Record ``context`` as this thread's invocation for the duration of the block."""
    previous = current_context()
    _invocation.context = context
    try:
        yield
    finally:
        _invocation.context = previous


@dataclass
class FakeLambdaContext:
    """What handlers read from the Lambda context object."""

    function_name: str
    timeout_seconds: float = 10.0
    memory_limit_in_mb: int = 512
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = "local"
    _deadline: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_seconds
        if not self.log_group_name:
            self.log_group_name = f"/aws/lambda/{self.function_name}"

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:000000000000:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class LambdaHost:
    """Imports each handler once and serialises its invocations, like one warm container."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def handler(self, module: str, attribute: str = "lambda_handler") -> Handler:
        key = f"{module}.{attribute}"
        with self._guard:
            if key not in self._handlers:
                self._handlers[key] = getattr(importlib.import_module(module), attribute)
                self._locks[key] = threading.Lock()
            return self._handlers[key]

    def invoke(
        self,
        module: str,
        event: dict[str, Any],
        *,
        function_name: str,
        timeout_seconds: float = 10.0,
        attribute: str = "lambda_handler",
    ) -> Any:
        handler = self.handler(module, attribute)
        with self._locks[f"{module}.{attribute}"]:
            context = FakeLambdaContext(function_name, timeout_seconds=timeout_seconds)
            with invocation(context):
                return handler(event, context)
