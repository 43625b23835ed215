"""HTTP front end: Stripe's API under ``/v1``, test helpers under ``/_emulator``, and the hosted
Checkout page under ``/checkout``.

Built on ``http.server.ThreadingHTTPServer`` speaking HTTP/1.1 with keep-alive, so the real
``stripe`` client (which reuses connections) talks to it unchanged and fast.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import secrets
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

from tools.stripe_emulator import billing_portal, checkout, checkout_page
from tools.stripe_emulator.api import Emulator
from tools.stripe_emulator.errors import StripeError, unrecognized_url
from tools.stripe_emulator.expand import render
from tools.stripe_emulator.forms import decode
from tools.stripe_emulator.objects import API_VERSION
from tools.stripe_emulator.state import IdempotentResult, RequestInfo, request_context
from tools.stripe_emulator.validation import validate
from tools.stripe_emulator.webhooks import WebhookConfig

log = logging.getLogger("tools.stripe_emulator")

MAX_BODY = 1024 * 1024


class _Response:
    """What a handler answers: status, headers and body bytes."""

    def __init__(self, status: int, body: bytes, content_type: str, headers: dict[str, str]):
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = headers
        # False for answers an idempotency key must not keep (rejected parameters).
        self.saveable = True


def _json(status: int, payload: Any, headers: dict[str, str] | None = None) -> _Response:
    body = json.dumps(payload, indent=2).encode("utf-8")
    return _Response(status, body, "application/json", dict(headers or {}))


def _html(status: int, text: str, headers: dict[str, str] | None = None) -> _Response:
    return _Response(status, text.encode("utf-8"), "text/html; charset=utf-8", dict(headers or {}))


def _mask(key: str) -> str:
    return key[:8] + "*" * max(0, len(key) - 12) + key[-4:]


class EmulatorHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server that carries the :class:`Emulator` it serves."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], emulator: Emulator) -> None:
        super().__init__(address, EmulatorRequestHandler)
        self.emulator = emulator
        # Set on shutdown so injected hangs end early instead of holding a worker thread.
        self.stopping = threading.Event()
        # Called after every request that may have changed the state (see persistence.py).
        self.after_change: list[Callable[[], None]] = []
        # Injected per-call delay on the API (``make bench``): an object whose
        # ``around(name)`` context manager delays and records the call; None answers at once.
        self.latency: Any = None


class EmulatorRequestHandler(BaseHTTPRequestHandler):
    """Routes one HTTP request."""

    protocol_version = "HTTP/1.1"
    server_version = "stripe-emulator"
    sys_version = ""
    # Headers and body go out in separate writes; without this, Nagle's algorithm and delayed
    # ACKs add ~40 ms to every keep-alive request.
    disable_nagle_algorithm = True
    server: EmulatorHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s - %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    # Plumbing -----------------------------------------------------------------------------

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise StripeError("Request body too large.", status=413)
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, response: _Response) -> None:
        try:
            self._write(response)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (e.g. its timeout fired during an injected hang).
            self.close_connection = True

    def _write(self, response: _Response) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        self.send_header("Cache-Control", "no-cache, no-store")
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(response.body)

    def _handle(self, method: str) -> None:
        url = urlsplit(self.path)
        path = url.path
        try:
            body = self._read_body()
            if path.startswith("/v1/") and self.server.latency is not None:
                with self.server.latency.around(f"{method} {path}"):
                    response = self._api(method, path, url.query, body)
            elif path.startswith("/v1/"):
                response = self._api(method, path, url.query, body)
            elif path.startswith("/_emulator/"):
                response = self._helper(method, path, body)
            elif path.startswith("/checkout/"):
                response = self._page(method, path, body)
            elif path.startswith(billing_portal.PAGE_PREFIX) and method == "GET":
                with self.server.emulator.store.lock:
                    status, text = billing_portal.render(
                        self.server.emulator.store, path.removeprefix(billing_portal.PAGE_PREFIX)
                    )
                response = _html(status, text)
            elif path in ("/", "/healthz"):
                response = _json(
                    200, {"ok": True, "emulator": "stripe", "api_version": API_VERSION}
                )
            else:
                response = _json(404, unrecognized_url(method, path).body())
        except StripeError as exc:
            response = _json(exc.status, exc.body(), exc.headers)
        except Exception:  # one broken request must not take the server down
            log.exception("emulator error on %s %s", method, self.path)
            response = _json(
                500, StripeError("Emulator internal error.", status=500, type="api_error").body()
            )
        self._send(response)
        # A GET of the hosted page may expire its session; other GETs only read.
        if method != "GET" or path.startswith("/checkout/"):
            for listener in list(self.server.after_change):
                listener()

    # Stripe API ---------------------------------------------------------------------------

    def _api_key(self) -> str | None:
        header = self.headers.get("Authorization") or ""
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer":
            return value.strip() or None
        if scheme.lower() == "basic":
            try:
                return base64.b64decode(value).decode().split(":", 1)[0] or None
            except (binascii.Error, UnicodeDecodeError):
                return None
        return None

    def _api(self, method: str, path: str, query: str, raw: bytes) -> _Response:
        emu = self.server.emulator
        request_id = "req_" + secrets.token_hex(7)
        matched = emu.match(method, path)
        emu.faults.record(method, path, matched[0].template if matched else None)
        base_headers = {"Request-Id": request_id, "Stripe-Version": API_VERSION}
        rule = emu.faults.take(method, path)
        if rule is not None:
            if rule.hang_seconds:
                self.server.stopping.wait(rule.hang_seconds)
            error = rule.error()
            if error is not None:
                return _json(
                    error.status, error.body(request_id), {**base_headers, **error.headers}
                )
        key = self._api_key()
        if not emu.key_accepted(key):
            error = StripeError(
                f"Invalid API Key provided: {_mask(key)}"
                if key
                else "You did not provide an API key. You need to provide your API key in the "
                "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
                "YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for details, "
                "or we can help at https://support.stripe.com/.",
                status=401,
            )
            return _json(401, error.body(request_id), base_headers)
        if matched is None:
            return _json(404, unrecognized_url(method, path).body(request_id), base_headers)
        route, args = matched
        params = decode(raw if method == "POST" else query)
        idempotency_key = self.headers.get("Idempotency-Key") if method == "POST" else None
        if not idempotency_key:
            return self._run(route, args, params, request_id, None, base_headers)
        return self._idempotent(
            route, args, params, request_id, key or "", idempotency_key, base_headers
        )

    def _idempotent(
        self,
        route: Any,
        args: dict[str, str],
        params: dict[str, Any],
        request_id: str,
        api_key: str,
        idempotency_key: str,
        headers: dict[str, str],
    ) -> _Response:
        store = self.server.emulator.store
        slot = (api_key, idempotency_key)
        fingerprint = hashlib.sha256(
            json.dumps([route.method, self.path, params], sort_keys=True).encode()
        ).hexdigest()
        headers = {**headers, "Idempotency-Key": idempotency_key}
        with store.lock:
            saved = store.idempotency.get(slot)
            if saved is not None:
                if saved.fingerprint != fingerprint:
                    error = StripeError(
                        "Keys for idempotent requests can only be used with the same parameters "
                        "they were first used with. Try using a key other than "
                        f"'{idempotency_key}' if you meant to execute a different request.",
                        type="idempotency_error",
                    )
                    return _json(400, error.body(request_id), headers)
                replay = {**saved.headers, "Idempotent-Replayed": "true"}
                return _Response(saved.status, saved.body, "application/json", replay)
            if slot in store.idempotency_in_flight:
                error = StripeError(
                    "There is currently another in-progress request using this Stripe API key "
                    "and idempotency key. Please try again later.",
                    status=409,
                    code="idempotency_key_in_use",
                )
                return _json(409, error.body(request_id), headers)
            store.idempotency_in_flight.add(slot)
        try:
            response = self._run(route, args, params, request_id, idempotency_key, headers)
            # Stripe saves a result once the endpoint started executing: not for requests
            # rejected by parameter validation.
            if response.saveable:
                with store.lock:
                    store.idempotency[slot] = IdempotentResult(
                        fingerprint, response.status, response.body, dict(response.headers)
                    )
            return response
        finally:
            with store.lock:
                store.idempotency_in_flight.discard(slot)

    def _run(
        self,
        route: Any,
        args: dict[str, str],
        params: dict[str, Any],
        request_id: str,
        idempotency_key: str | None,
        headers: dict[str, str],
    ) -> _Response:
        emu = self.server.emulator
        try:
            checked = validate(params, route.params)
        except StripeError as exc:
            rejected = _json(exc.status, exc.body(request_id), {**headers, **exc.headers})
            rejected.saveable = False
            return rejected
        try:
            with emu.store.lock, request_context(RequestInfo(request_id, idempotency_key)):
                result = route.handler(emu, args, checked)
                payload = render(emu.store, result, checked.get("expand"))
        except StripeError as exc:
            return _json(exc.status, exc.body(request_id), {**headers, **exc.headers})
        return _json(200, payload, headers)

    # Test helpers ---------------------------------------------------------------------------

    def _helper(self, method: str, path: str, raw: bytes) -> _Response:
        emu = self.server.emulator
        body: dict[str, Any] = {}
        if raw.strip():
            try:
                parsed = json.loads(raw)
            except ValueError:
                raise StripeError("The helper API takes a JSON body.") from None
            if not isinstance(parsed, dict):
                raise StripeError("The helper API takes a JSON object.")
            body = parsed
        status, payload = emu.helper(method, path, body)
        with emu.store.lock:
            return _json(status, render(emu.store, payload) if _is_object(payload) else payload)

    # Hosted Checkout page -------------------------------------------------------------------

    def _page(self, method: str, path: str, raw: bytes) -> _Response:
        emu = self.server.emulator
        parts = path.strip("/").split("/")
        session_id = parts[1] if len(parts) > 1 else ""
        action = parts[2] if len(parts) > 2 else ""
        with emu.store.lock:
            session = emu.store.objects.get(session_id)
            if session is None or session.get("object") != "checkout.session":
                return _html(404, checkout_page.render_error("No such Checkout Session."))
            checkout.refresh(emu.store, session)
            if method == "GET" and action == "":
                return self._show(session)
            if method == "GET" and action == "complete":
                return _html(200, checkout_page.render_complete(session))
            if method == "POST" and action == "pay":
                form = dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
                return self._pay(session, form)
        return _html(404, checkout_page.render_error("Page not found."))

    def _show(self, session: dict[str, Any]) -> _Response:
        if session["status"] == "expired":
            return _html(410, checkout_page.render_error("This Checkout Session has expired."))
        if session["status"] == "complete":
            return _html(
                409, checkout_page.render_error("This Checkout Session is already complete.")
            )
        items = checkout.line_item_summary(self.server.emulator.store, session)
        return _html(200, checkout_page.render_checkout(session, items))

    def _pay(self, session: dict[str, Any], form: dict[str, str]) -> _Response:
        store = self.server.emulator.store
        outcome = form.get("outcome") or "success"
        if outcome == "success":
            # The main button pays with whatever card was typed (a declining test card declines).
            outcome = checkout_page.card_outcome(form.get("card_number"))
        try:
            checkout.pay(store, session["id"], outcome, email=form.get("email") or None)
        except checkout.SessionNotPayable as exc:
            return _html(
                409 if session["status"] == "complete" else 410,
                checkout_page.render_error(exc.message),
            )
        if outcome == "decline":
            return _html(200, checkout_page.render_declined(session))
        target = session.get("success_url") or f"/checkout/{session['id']}/complete"
        target = target.replace("{CHECKOUT_SESSION_ID}", quote(session["id"]))
        return _html(
            int(HTTPStatus.SEE_OTHER),
            checkout_page.render_complete(session),
            {"Location": target},
        )


def _is_object(payload: Any) -> bool:
    return isinstance(payload, dict) and isinstance(payload.get("object"), str)


class EmulatorHandle:
    """A running emulator: ``base_url``, ``stop()``, and a context manager."""

    def __init__(self, server: EmulatorHTTPServer, thread: threading.Thread, base_url: str):
        self.server = server
        self.thread = thread
        self.base_url = base_url
        self.emulator = server.emulator
        self.host, self.port = server.server_address[0], server.server_address[1]

    @property
    def webhook_secret(self) -> str:
        """The secret webhooks are signed with (``whsec_...``)."""
        return self.emulator.webhooks.config.secret

    def flush_webhooks(self, timeout: float = 30.0) -> bool:
        """Block until queued webhook deliveries are done."""
        return self.emulator.webhooks.flush(timeout)

    def reset(self) -> None:
        """Forget every object, event, fault and call count."""
        self.emulator.reset()

    def stop(self) -> None:
        """Stop serving and stop webhook delivery."""
        self.server.stopping.set()
        self.server.shutdown()
        self.server.server_close()
        self.emulator.webhooks.stop()
        self.thread.join(timeout=5)

    def __enter__(self) -> EmulatorHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_emulator(
    host: str = "127.0.0.1",
    port: int = 0,
    api_key: str | None = None,
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
    auto_deliver: bool = True,
    *,
    public_url: str | None = None,
    webhook_max_attempts: int = 3,
    webhook_retry_backoff: float = 0.05,
    webhook_timeout: float = 5.0,
) -> EmulatorHandle:
    """Start the emulator in a background thread and return its handle.

    ``port=0`` picks a free port (read it from ``handle.base_url``). With ``api_key=None`` any
    ``sk_test_...`` key is accepted, otherwise only ``api_key``. Events are posted to
    ``webhook_url`` signed with ``webhook_secret`` (generated when not given), automatically
    unless ``auto_deliver`` is False. ``public_url`` overrides the address put in Checkout URLs
    (for an emulator reached through another host name).
    """
    config = WebhookConfig(
        url=webhook_url,
        auto_deliver=auto_deliver,
        max_attempts=webhook_max_attempts,
        retry_backoff=webhook_retry_backoff,
        timeout=webhook_timeout,
    )
    if webhook_secret:
        config.secret = webhook_secret
    emulator = Emulator(api_key, config, base_url="")
    server = EmulatorHTTPServer((host, port), emulator)
    bound_host, bound_port = server.server_address[0], server.server_address[1]
    shown_host = "127.0.0.1" if bound_host in ("0.0.0.0", "") else str(bound_host)
    if ":" in shown_host:
        shown_host = f"[{shown_host}]"
    base_url = f"http://{shown_host}:{bound_port}"
    emulator.store.base_url = (public_url or base_url).rstrip("/")
    emulator.webhooks.start()
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.2},
        name="stripe-emulator",
        daemon=True,
    )
    thread.start()
    return EmulatorHandle(server, thread, base_url)
