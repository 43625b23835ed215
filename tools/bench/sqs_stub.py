"""A minimal SQS endpoint for latency measurements: answers ``SendMessage`` at once.

moto's server is a faithful SQS but a slow one (it parses, stores and often closes the
connection), and in the benchmark it shares the process with the handler. Timing the
webhook against it measures moto. This stub answers the JSON protocol's ``SendMessage`` with
the fields a client checks, over a kept-alive connection, so the figure is the handler's own;
with a :class:`Latency` it delays each answer like SQS across the network.
"""

from __future__ import annotations

import hashlib
import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tools.local.latency import Latency


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; without this, delayed ACKs add 40 ms to each.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        latency: Latency | None = self.server.latency  # type: ignore[attr-defined]
        if latency is None:
            self._answer()
            return
        with latency.around(str(self.headers.get("X-Amz-Target", "POST /"))):
            self._answer()

    def _answer(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        request = json.loads(body or b"{}")
        self.server.sent += 1  # type: ignore[attr-defined]
        message = str(request.get("MessageBody", ""))
        answer = json.dumps(
            {
                "MessageId": str(uuid.uuid4()),
                "MD5OfMessageBody": hashlib.md5(
                    message.encode(), usedforsecurity=False
                ).hexdigest(),
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-amz-json-1.0")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


class SqsStub(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.sent = 0
        # Injected per-call delay (the latency model); None answers at once.
        self.latency: Latency | None = None
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
