"""Stand-in for a Make.com custom webhook (the "add_project" scenario).

A Make.com webhook accepts a JSON ``POST``, checks the ``x-make-apikey`` header when the hook
has an API key, and answers ``200 Accepted``. This receiver does the same on any path, prints
each payload as one line to stdout and keeps it in memory.

Endpoints of the receiver itself, loopback only:

* ``GET /_received``: the payloads received so far, oldest first; ``DELETE`` clears them.
* ``POST /_faults {"status": 503, "times": 2}``: the next ``times`` webhook posts fail with
  ``status`` (before the key check, as an outage would), to exercise the caller's retries.

Run it with ``python -m tools.local.make_receiver`` (port from ``MAKE_RECEIVER_PORT``, default
12113; key from ``MAKE_API_KEY``, default ``make_local_key``).
"""

from __future__ import annotations

import hmac
import json
import os
import threading
from http import HTTPStatus
from typing import Any

from tools.local._http import (
    BackgroundServer,
    BadRequestError,
    Request,
    Response,
    configure_cli_logging,
    port_from_env,
    wait_for_termination,
)

DEFAULT_PORT = 12113
PORT_ENV = "MAKE_RECEIVER_PORT"
API_KEY_ENV = "MAKE_API_KEY"
DEFAULT_API_KEY = "make_local_key"
API_KEY_HEADER = "x-make-apikey"
DEFAULT_SCENARIO = "add_project"


def configured_api_key() -> str:
    """The webhook API key: ``MAKE_API_KEY`` or the local default."""
    return os.environ.get(API_KEY_ENV) or DEFAULT_API_KEY


class MakeReceiver:
    """The receiver's behaviour, independent of HTTP. Thread-safe."""

    def __init__(
        self, *, api_key: str, scenario: str = DEFAULT_SCENARIO, echo: bool = True
    ) -> None:
        self.api_key = api_key
        self.scenario = scenario
        self.echo = echo
        # Appended to in place, so a handle's ``.received`` stays the live list.
        self.received: list[Any] = []
        self._fault_status = HTTPStatus.SERVICE_UNAVAILABLE.value
        self._fault_times = 0
        self._lock = threading.Lock()

    def inject_fault(self, status: int, times: int) -> None:
        """Make the next ``times`` webhook posts fail with ``status``."""
        if not 400 <= status <= 599:
            raise ValueError("status must be an HTTP error status (400-599)")
        if times < 0:
            raise ValueError("times must not be negative")
        with self._lock:
            self._fault_status = status
            self._fault_times = times

    def clear(self) -> None:
        """Forget the payloads received so far."""
        with self._lock:
            self.received.clear()

    def handle(self, request: Request) -> Response:
        """Route one HTTP request."""
        path = request.path.rstrip("/")
        if path == "/_received":
            if request.method == "GET":
                with self._lock:
                    return Response.json(HTTPStatus.OK, list(self.received))
            if request.method == "DELETE":
                self.clear()
                return Response.json(HTTPStatus.OK, [])
        elif path == "/_faults" and request.method == "POST":
            return self._set_faults(request)
        elif request.method == "POST":
            return self._webhook(request)
        return Response.text(HTTPStatus.METHOD_NOT_ALLOWED, "Method Not Allowed")

    def _webhook(self, request: Request) -> Response:
        with self._lock:
            if self._fault_times > 0:
                self._fault_times -= 1
                status = HTTPStatus(self._fault_status)
                return Response.text(status, status.phrase)
        presented = request.header(API_KEY_HEADER) or ""
        if not hmac.compare_digest(presented.encode(), self.api_key.encode()):
            return Response.text(HTTPStatus.UNAUTHORIZED, "Unauthorized")
        payload = request.json()
        with self._lock:
            self.received.append(payload)
        if self.echo:
            print(
                f"make.com {self.scenario} received: {json.dumps(payload, sort_keys=True)}",
                flush=True,
            )
        return Response.text(HTTPStatus.OK, "Accepted")

    def _set_faults(self, request: Request) -> Response:
        body = request.json()
        if not isinstance(body, dict):
            raise BadRequestError('expected {"status": 503, "times": 2}')
        status = body.get("status", HTTPStatus.SERVICE_UNAVAILABLE.value)
        times = body.get("times", 1)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (status, times)):
            raise BadRequestError("status and times must be integers")
        try:
            self.inject_fault(status, times)
        except ValueError as exc:
            raise BadRequestError(str(exc)) from exc
        return Response.json(HTTPStatus.OK, {"status": status, "times": times})


class MakeReceiverServer(BackgroundServer):
    """A running receiver: ``.url``, ``.received``, ``.inject_fault()``, ``.stop()``."""

    def __init__(self, receiver: MakeReceiver, port: int = 0) -> None:
        self.receiver = receiver
        super().__init__(receiver, port)

    @property
    def received(self) -> list[Any]:
        """The payloads accepted so far (the live list)."""
        return self.receiver.received

    @property
    def api_key(self) -> str:
        """The key expected in ``x-make-apikey``."""
        return self.receiver.api_key

    def inject_fault(self, status: int, times: int) -> None:
        """Make the next ``times`` webhook posts fail with ``status``."""
        self.receiver.inject_fault(status, times)


def start_make_receiver(
    port: int = 0,
    api_key: str | None = None,
    *,
    scenario: str = DEFAULT_SCENARIO,
    echo: bool = True,
) -> MakeReceiverServer:
    """Start the receiver in a background thread on 127.0.0.1.

    ``api_key`` defaults to ``MAKE_API_KEY`` or ``make_local_key``; ``echo=False`` keeps
    payloads off stdout (benchmarks).
    """
    receiver = MakeReceiver(api_key=api_key or configured_api_key(), scenario=scenario, echo=echo)
    return MakeReceiverServer(receiver, port)


def main() -> None:
    """``python -m tools.local.make_receiver``: serve until interrupted."""
    configure_cli_logging()
    server = start_make_receiver(port_from_env(PORT_ENV, DEFAULT_PORT))
    print(f"Make.com receiver on {server.url} (checks x-make-apikey)", flush=True)
    try:
        wait_for_termination()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
