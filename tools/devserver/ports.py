"""The ports ``make dev`` listens on, checked before anything starts.

A busy port found only when its server starts leaves the parts started before it running, and
the Stripe emulator posting signed webhooks to whatever holds the API port. So every port is
checked first, and a problem is one line naming the port and the variable that moves it.
"""

from __future__ import annotations

import errno
import os
import socket
from dataclasses import dataclass


class StartupError(Exception):
    """Something a person must fix before ``make dev`` can start; the message says what."""


@dataclass(frozen=True)
class Port:
    """One listening port of the local stack and the variable that moves it."""

    variable: str
    default: int
    what: str

    def value(self) -> int:
        """The port to use: the variable's value (0 = any free port) or the default."""
        raw = os.environ.get(self.variable, "").strip()
        if not raw:
            return self.default
        try:
            port = int(raw)
        except ValueError:
            raise StartupError(f"{self.variable}={raw!r} is not a port number") from None
        if not 0 <= port <= 65535:
            raise StartupError(f"{self.variable}={port} is not a port number (0-65535)")
        return port


API = Port("API_PORT", 3000, "the API")
STRIPE_EMULATOR = Port("STRIPE_EMULATOR_PORT", 12111, "the Stripe emulator")
MEMBERSTACK = Port("MEMBERSTACK_STANDIN_PORT", 12112, "the Memberstack stand-in")
MAKE_RECEIVER = Port("MAKE_RECEIVER_PORT", 12113, "the Make.com receiver")
LOCAL_SQS = Port("LOCAL_SQS_PORT", 12114, "the local SQS")


def busy_message(port: Port, number: int, error: OSError | None = None) -> str:
    """The one line that explains a port ``make dev`` cannot listen on."""
    if error is not None and error.errno == errno.EACCES:
        return (
            f"make dev: not allowed to listen on port {number} for {port.what}; "
            f"move it with {port.variable}=<port above 1024>"
        )
    return (
        f"make dev: port {number} ({port.what}) is already in use; stop what holds it "
        f"or move it, e.g. {port.variable}={number + 1 if number < 65535 else 0} make dev"
    )


def check_free(ports: list[Port], host: str = "127.0.0.1") -> dict[Port, int]:
    """Every port's number, after checking it is free; :class:`StartupError` otherwise.

    Binds each port for a moment with ``SO_REUSEADDR``, as the servers will, so a port left in
    TIME_WAIT by the previous run counts as free and one with a listener does not.
    """
    numbers = {port: port.value() for port in ports}
    seen: dict[int, Port] = {}
    for port, number in numbers.items():
        if number == 0:
            continue
        if number in seen:
            raise StartupError(
                f"make dev: {seen[number].variable} and {port.variable} are both {number}; "
                "give each part its own port"
            )
        seen[number] = port
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, number))
            except OSError as exc:
                raise StartupError(busy_message(port, number, exc)) from None
    return numbers
