"""Small HTTP plumbing shared by the local stand-ins.

Each stand-in is an object with a ``handle(request) -> Response`` method; this module runs it
behind a threaded stdlib HTTP server bound to the loopback interface, either in a background
thread (tests, the dev server) or in the foreground (``python -m``). Keeping the apps free of
HTTP details keeps them easy to read and to test.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, TracebackType
from typing import Any, Protocol, Self

from tools.local.latency import Latency

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"

# The stand-ins receive small JSON documents; anything bigger is a bug in the caller.
MAX_BODY_BYTES = 1024 * 1024


class BadRequestError(Exception):
    """The request body is not what the endpoint expects (answered with 400)."""


@dataclass(frozen=True)
class Request:
    """One HTTP request, as the stand-in apps see it."""

    method: str
    path: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        """Return a header value, looked up case-insensitively."""
        wanted = name.lower()
        for key, value in self.headers.items():
            if key.lower() == wanted:
                return value
        return None

    def json(self) -> Any:
        """Decode the body as JSON, raising :class:`BadRequestError` if it is not."""
        try:
            return json.loads(self.body or b"null")
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BadRequestError(f"body is not valid JSON: {exc}") from exc


@dataclass(frozen=True)
class Response:
    """One HTTP response produced by a stand-in app."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"

    @classmethod
    def json(cls, status: int, payload: Any) -> Response:
        """A JSON response."""
        return cls(status, json.dumps(payload).encode(), "application/json")

    @classmethod
    def text(cls, status: int, text: str) -> Response:
        """A plain-text response."""
        return cls(status, text.encode(), "text/plain; charset=utf-8")


class App(Protocol):
    """What a stand-in must provide to be served."""

    def handle(self, request: Request) -> Response:
        """Answer one request."""
        ...


class _Server(ThreadingHTTPServer):
    # Handler threads must not keep the process alive once the server is shut down.
    daemon_threads = True

    def __init__(self, address: tuple[str, int], app: App) -> None:
        self.app = app
        # Injected per-call delay (``make bench``); None answers at once.
        self.latency: Latency | None = None
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "local-standin/1"

    def _dispatch(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self._send(Response.json(HTTPStatus.BAD_REQUEST, {"message": "bad Content-Length"}))
            return
        if length < 0 or length > MAX_BODY_BYTES:
            self._send(
                Response.json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"message": "body too large"})
            )
            return
        body = self.rfile.read(length) if length else b""
        request = Request(
            method=self.command,
            path=self.path.split("?", 1)[0],
            headers=dict(self.headers.items()),
            body=body,
        )
        try:
            latency = self.server.latency
            if latency is None:
                response = self.server.app.handle(request)
            else:
                with latency.around(f"{request.method} {request.path}"):
                    response = self.server.app.handle(request)
        except BadRequestError as exc:
            response = Response.json(HTTPStatus.BAD_REQUEST, {"message": str(exc)})
        except Exception:
            # A bug in a stand-in must show up loudly, but must not kill the server thread.
            logger.exception("stand-in failed on %s %s", request.method, request.path)
            response = Response.json(
                HTTPStatus.INTERNAL_SERVER_ERROR, {"message": "stand-in error"}
            )
        self._send(response)

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    # BaseHTTPRequestHandler looks these names up per HTTP method.
    do_GET = _dispatch
    do_POST = _dispatch
    do_PUT = _dispatch
    do_PATCH = _dispatch
    do_DELETE = _dispatch

    def log_message(self, format: str, *args: Any) -> None:
        # The default writes every request to stderr; keep it available but quiet.
        logger.debug("%s - %s", self.address_string(), format % args)


class BackgroundServer:
    """Serve an app on the loopback interface from a daemon thread.

    ``port=0`` lets the OS pick a free port, which is what tests want; read it back from
    :attr:`port` or :attr:`url`. Usable as a context manager.
    """

    def __init__(self, app: App, port: int = 0) -> None:
        self.app = app
        # Binding happens here, in the caller's thread, so "port in use" raises immediately.
        self._server = _Server((LOOPBACK, port), app)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"{type(app).__name__}-http",
            daemon=True,
        )
        self._thread.start()

    @property
    def latency(self) -> Latency | None:
        """The delay added to each answer, and its call log (None: answer at once)."""
        return self._server.latency

    @latency.setter
    def latency(self, value: Latency | None) -> None:
        self._server.latency = value

    @property
    def port(self) -> int:
        """The port actually bound."""
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Base URL, without a trailing slash."""
        return f"http://{LOOPBACK}:{self.port}"

    def stop(self) -> None:
        """Stop serving and release the port. Safe to call twice."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def port_from_env(variable: str, default: int) -> int:
    """Read a TCP port from an environment variable, falling back to ``default``."""
    raw = os.environ.get(variable, "").strip()
    if not raw:
        return default
    try:
        port = int(raw)
    except ValueError:
        raise SystemExit(f"{variable}={raw!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise SystemExit(f"{variable}={port} is out of range")
    return port


def wait_for_termination() -> None:
    """Block until SIGINT, SIGTERM or SIGHUP, so ``python -m`` entry points stop cleanly."""
    received: list[int] = []

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        # Only record: a handler that takes a lock (Event.set) can deadlock with the main
        # thread it interrupts, if that thread holds the same lock at that moment.
        received.append(signum)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _on_signal)
    while not received:
        time.sleep(0.2)


def configure_cli_logging() -> None:
    """Plain one-line logs for the ``python -m`` entry points."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
