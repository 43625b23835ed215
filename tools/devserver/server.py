"""The local API: every route of ``template.yaml`` on one port, served by the real handlers."""

from __future__ import annotations

import base64
import json
import logging
import mimetypes
import os
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tools.devserver.devlog import request_line
from tools.devserver.events import http_event
from tools.devserver.lambda_host import LambdaHost
from tools.devserver.routes import ROOT, Route, http_routes

MAX_REQUEST_BYTES = 6 * 1024 * 1024  # API Gateway's payload limit
STATIC_ROOT = ROOT / "web"
LOCAL_MEMBER_TOKEN_PATH = "/_local/member-token"
_DEMO_MEMBER_ID = re.compile(r"^mem_[A-Za-z0-9_]{1,64}$")
_log = logging.getLogger("tools.devserver")


class ApiServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        routes: list[Route] | None = None,
        host: LambdaHost | None = None,
        static_root: Path | None = STATIC_ROOT,
    ) -> None:
        self.routes = routes if routes is not None else http_routes()
        self.lambda_host = host or LambdaHost()
        self.static_root = static_root
        self._thread: threading.Thread | None = None
        super().__init__(address, _RequestHandler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def resolve(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        for route in self.routes:
            params = route.match(method, path)
            if params is not None:
                return route, params
        return None

    def shutdown(self) -> None:
        """Stop serving; a no-op before :meth:`start_in_thread` (the base class would hang)."""
        if self._thread is not None:
            super().shutdown()
            self._thread.join(timeout=5)

    def start_in_thread(self) -> threading.Thread:
        """Serve from a daemon thread; a second call returns the thread already serving."""
        if self._thread is None:
            self._thread = threading.Thread(target=self.serve_forever, name="api", daemon=True)
            self._thread.start()
        return self._thread


def _local_member_token(body: bytes) -> tuple[int, dict[str, str], bytes]:
    """The demo page's member picker: ``{"member_id"}`` -> ``{"token"}`` from the stand-in's key.

    Only while tokens are verified by the Memberstack stand-in on loopback; with a real
    ``MEMBERSTACK_API_BASE`` a locally minted token would be refused anyway, so it is a 404.
    """
    headers = {"Content-Type": "application/json", "Cache-Control": "no-store"}
    base = urlsplit(os.environ.get("MEMBERSTACK_API_BASE", ""))
    if base.hostname not in ("127.0.0.1", "localhost"):
        return 404, headers, b'{"error":{"code":"not_found","message":"No such route."}}'
    try:
        member_id = json.loads(body or b"{}").get("member_id")
    except (ValueError, AttributeError):
        member_id = None
    if not isinstance(member_id, str) or not _DEMO_MEMBER_ID.match(member_id):
        return (
            400,
            headers,
            b'{"error":{"code":"invalid_member_id","message":"Use a member id like mem_alice."}}',
        )
    from tools.local.memberstack import mint_token

    return 201, headers, json.dumps({"token": mint_token(member_id)}).encode()


class _RequestHandler(BaseHTTPRequestHandler):
    server: ApiServer
    protocol_version = "HTTP/1.1"

    # Set by _send, read by the request line written once the answer is out.
    _status = 0
    _function: str | None = None

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # The request line is written by _serve, with the time taken and the function.
        pass

    def log_error(self, format: str, *args: Any) -> None:
        # Malformed requests, timeouts: never headers or bodies (they carry tokens).
        _log.warning("api: %s", format % args)

    def _serve(self) -> None:
        started = time.monotonic()
        self._status, self._function = 0, None
        try:
            self._answer()
        finally:
            request_line(
                self.command,
                urlsplit(self.path).path,
                self._status,
                (time.monotonic() - started) * 1000,
                self._function,
            )

    def _answer(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_REQUEST_BYTES:
            self._send(
                413,
                {"Content-Type": "application/json"},
                b'{"error":{"code":'
                b'"payload_too_large","message":"The request body is too large."}}',
            )
            return
        body = self.rfile.read(length) if length else b""
        if self.command == "POST" and parts.path == LOCAL_MEMBER_TOKEN_PATH:
            self._function = "local member token"
            self._send(*_local_member_token(body))
            return
        if self.command == "GET" and self._serve_static(parts.path):
            self._function = "static"
            return
        resolved = self.server.resolve(self.command, parts.path)
        if resolved is None:
            self._send(
                404,
                {"Content-Type": "application/json"},
                b'{"error":{"code":"not_found","message":"No such route."}}',
            )
            return
        route, params = resolved
        self._function = route.function
        event = http_event(
            method=self.command,
            path=parts.path,
            route_key=route.route_key,
            headers=list(self.headers.items()),
            query=parts.query,
            body=body,
            path_parameters=params or None,
            source_ip=self.client_address[0],
        )
        result = self.server.lambda_host.invoke(route.module, event, function_name=route.function)
        self._send_lambda_result(result)

    def _serve_static(self, path: str) -> bool:
        root = self.server.static_root
        if root is None or path.startswith("/v1/"):
            return False
        relative = "index.html" if path in ("", "/") else path.lstrip("/")
        target = (root / relative).resolve()
        if not target.is_file() or root.resolve() not in target.parents:
            return False
        content_type = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        self._send(
            200, {"Content-Type": content_type, "Cache-Control": "no-store"}, target.read_bytes()
        )
        return True

    def _send_lambda_result(self, result: Any) -> None:
        if not isinstance(result, dict) or "statusCode" not in result:
            # Payload 2.0 lets a handler return a bare JSON value.
            self._send(200, {"Content-Type": "application/json"}, json.dumps(result).encode())
            return
        body = result.get("body") or ""
        raw = base64.b64decode(body) if result.get("isBase64Encoded") else str(body).encode()
        headers = {str(k): str(v) for k, v in (result.get("headers") or {}).items()}
        for name, values in (result.get("multiValueHeaders") or {}).items():
            headers[str(name)] = ",".join(str(v) for v in values)
        self._send(int(result["statusCode"]), headers, raw, cookies=result.get("cookies") or [])

    def _send(
        self, status: int, headers: dict[str, str], body: bytes, cookies: list[str] | None = None
    ) -> None:
        self._status = status
        self.send_response(status)
        for name, value in headers.items():
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        for cookie in cookies or []:
            self.send_header("Set-Cookie", cookie)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = _serve
