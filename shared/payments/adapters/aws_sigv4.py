"""Signed calls to AWS's JSON APIs with the standard library alone.

botocore builds a session, loads the service model from disk and registers hundreds of event
handlers before it sends a request: that was most of the webhook function's cold start, for
one ``SendMessage``. SQS, Secrets Manager and SSM all speak the AWS JSON protocol (one POST to
the service endpoint, the operation in ``X-Amz-Target``, a JSON body), so a request is a
SigV4 signature (HMAC-SHA256, as AWS publishes it) over a few headers and the body.

:class:`AwsJsonClient` is that, for any such service: ``call("SendMessage", {...})``. It reads
what Lambda provides: credentials from ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` /
``AWS_SESSION_TOKEN`` (read at each call, so they are never cached past their rotation), the
region from ``AWS_REGION`` (else ``AWS_DEFAULT_REGION``), and the endpoint override
``AWS_ENDPOINT_URL_<SERVICE>`` or ``AWS_ENDPOINT_URL`` as boto3 does. One kept-alive
connection per client, explicit connect and read timeouts, and a bounded retry of what AWS
documents as retryable (connection errors, 5xx, throttling), never past the invocation's
remaining time. ``tests/test_aws_sigv4.py`` checks the signatures against botocore's own
signer and AWS's published test vector.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import os
import random
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

from payments import errors
from payments.deadline import remaining_seconds

ALGORITHM = "AWS4-HMAC-SHA256"
CONNECT_TIMEOUT_SECONDS = 2.0
READ_TIMEOUT_SECONDS = 3.0
MAX_ATTEMPTS = 3
# Full-jitter backoff between attempts (seconds): short, the webhook answers Stripe in time.
BACKOFF_BASE_SECONDS = 0.05
BACKOFF_CAP_SECONDS = 1.0
# The error codes AWS's standard retry mode treats as throttling (worth another attempt).
THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "RequestThrottled",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
    }
)


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Credentials:
        """Lambda's credentials, from the variables it sets in every function's environment."""
        env = os.environ if environ is None else environ
        access_key = (env.get("AWS_ACCESS_KEY_ID") or "").strip()
        secret_key = (env.get("AWS_SECRET_ACCESS_KEY") or "").strip()
        missing = [
            name
            for name, value in (
                ("AWS_ACCESS_KEY_ID", access_key),
                ("AWS_SECRET_ACCESS_KEY", secret_key),
            )
            if not value
        ]
        if missing:
            raise errors.ConfigurationError(
                "missing required environment variable(s): " + ", ".join(missing)
            )
        return cls(access_key, secret_key, (env.get("AWS_SESSION_TOKEN") or "").strip() or None)


class AwsError(errors.PaymentsError):
    """An AWS call failed: the service refused it, or it could not be reached."""

    code = "aws_error"

    def __init__(
        self, message: str, *, status: int | None = None, aws_code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.aws_code = aws_code

    @property
    def retryable(self) -> bool:
        if self.status is None:  # never reached the service, or no answer
            return True
        return self.status >= 500 or self.status == 429 or self.aws_code in THROTTLING_CODES


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def signing_key(secret_access_key: str, date: str, region: str, service: str) -> bytes:
    """SigV4's derived key: the secret, narrowed to one day, region and service."""
    key = _hmac(f"AWS4{secret_access_key}".encode(), date)
    key = _hmac(key, region)
    key = _hmac(key, service)
    return _hmac(key, "aws4_request")


def _canonical_uri(path: str) -> str:
    # Every service but S3 double-encodes: encode each segment of the already-encoded path.
    return quote(path or "/", safe="/~")


def _canonical_query(query: str) -> str:
    pairs = []
    for item in query.split("&") if query else []:
        name, _, value = item.partition("=")
        pairs.append((quote(name, safe="-_.~"), quote(value, safe="-_.~")))
    return "&".join(f"{name}={value}" for name, value in sorted(pairs))


def sign(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    credentials: Credentials,
    region: str,
    service: str,
    amz_date: str,
) -> dict[str, str]:
    """The headers to send: ``headers`` plus ``X-Amz-Date``, the session token and
    ``Authorization``, signed with SigV4 for ``service`` in ``region`` at ``amz_date``
    (``YYYYMMDDTHHMMSSZ``). Every header passed in is signed, and ``Host`` is added."""
    parts = urlsplit(url)
    signed: dict[str, str] = {name.lower(): " ".join(v.split()) for name, v in headers.items()}
    signed.setdefault("host", parts.netloc)
    signed["x-amz-date"] = amz_date
    if credentials.session_token:
        signed["x-amz-security-token"] = credentials.session_token
    names = sorted(signed)
    signed_headers = ";".join(names)
    payload_hash = hashlib.sha256(body).hexdigest()
    canonical_request = "\n".join(
        [
            method.upper(),
            _canonical_uri(parts.path),
            _canonical_query(parts.query),
            "".join(f"{name}:{signed[name]}\n" for name in names),
            signed_headers,
            payload_hash,
        ]
    )
    scope = f"{amz_date[:8]}/{region}/{service}/aws4_request"
    string_to_sign = "\n".join(
        [ALGORITHM, amz_date, scope, hashlib.sha256(canonical_request.encode()).hexdigest()]
    )
    key = signing_key(credentials.secret_access_key, amz_date[:8], region, service)
    signature = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    out = {name: value for name, value in headers.items() if name.lower() != "host"}
    out["Host"] = signed["host"]
    out["X-Amz-Date"] = amz_date
    if credentials.session_token:
        out["X-Amz-Security-Token"] = credentials.session_token
    out["Authorization"] = (
        f"{ALGORITHM} Credential={credentials.access_key_id}/{scope}, "
        f"SignedHeaders={signed_headers}, Signature={signature}"
    )
    return out


def resolve_region(explicit: str | None = None, environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    region = explicit or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if not region or not region.strip():
        raise errors.ConfigurationError("missing required environment variable(s): AWS_REGION")
    return region.strip()


def resolve_endpoint(
    service: str, region: str, explicit: str | None = None, environ: Mapping[str, str] | None = None
) -> str:
    """Where ``service`` is called: an explicit URL, boto3's ``AWS_ENDPOINT_URL_<SERVICE>`` and
    ``AWS_ENDPOINT_URL`` overrides, else the public regional endpoint."""
    env = os.environ if environ is None else environ
    for candidate in (
        explicit,
        env.get(f"AWS_ENDPOINT_URL_{service.upper().replace('-', '_')}"),
        env.get("AWS_ENDPOINT_URL"),
    ):
        if candidate and candidate.strip():
            return candidate.strip().rstrip("/")
    return f"https://{service}.{region}.amazonaws.com"


class AwsJsonClient:
    """One AWS service spoken over its JSON protocol: ``call(operation, params) -> dict``.

    ``target_prefix`` is what precedes the operation in ``X-Amz-Target`` (``AmazonSQS``,
    ``secretsmanager``, ``AmazonSSM``) and ``json_version`` the protocol's content type
    (``1.0`` for SQS, ``1.1`` for Secrets Manager and SSM). Thread-safe: one request at a time
    on the kept-alive connection.
    """

    def __init__(
        self,
        service: str,
        target_prefix: str,
        *,
        json_version: str = "1.0",
        region: str | None = None,
        endpoint_url: str | None = None,
        connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
        read_timeout: float = READ_TIMEOUT_SECONDS,
        max_attempts: int = MAX_ATTEMPTS,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.service = service
        self._target_prefix = target_prefix
        self._content_type = f"application/x-amz-json-{json_version}"
        self._environ = environ
        self.region = resolve_region(region, environ)
        self.endpoint = resolve_endpoint(service, self.region, endpoint_url, environ)
        parts = urlsplit(self.endpoint)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise errors.ConfigurationError(f"not an endpoint URL for {service}: {self.endpoint}")
        self._scheme = parts.scheme
        self._host = parts.hostname
        self._port = parts.port
        self._path = parts.path or "/"
        self._url = f"{parts.scheme}://{parts.netloc}{self._path}"
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._max_attempts = max(1, max_attempts)
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()

    def call(self, operation: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """Run ``operation`` with ``params``; its JSON answer, or ``AwsError``."""
        body = json.dumps(params, separators=(",", ":")).encode()
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._send(operation, body)
            except AwsError as exc:
                delay = random.uniform(  # noqa: S311 - jitter, not a secret
                    0, min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2**attempt)
                )
                if (
                    not exc.retryable
                    or attempt >= self._max_attempts
                    or remaining_seconds() < delay + self._read_timeout
                ):
                    raise
                time.sleep(delay)

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            conn_type = (
                http.client.HTTPSConnection
                if self._scheme == "https"
                else http.client.HTTPConnection
            )
            conn = conn_type(self._host, self._port, timeout=self._connect_timeout)
            conn.connect()
            if conn.sock is not None:
                conn.sock.settimeout(self._read_timeout)
            self._conn = conn
        return self._conn

    def _send(self, operation: str, body: bytes) -> dict[str, Any]:
        credentials = Credentials.from_environment(self._environ)
        headers = sign(
            "POST",
            self._url,
            {
                "Content-Type": self._content_type,
                "X-Amz-Target": f"{self._target_prefix}.{operation}",
            },
            body,
            credentials=credentials,
            region=self.region,
            service=self.service,
            amz_date=time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()),
        )
        headers["Content-Length"] = str(len(body))
        with self._lock:
            try:
                conn = self._connection()
                conn.request("POST", self._path, body=body, headers=headers)
                response = conn.getresponse()
                status, raw = response.status, response.read()
                if response.will_close:
                    self._drop()
            except (OSError, http.client.HTTPException) as exc:
                # A kept-alive connection the server closed, a timeout, a refused connect.
                self._drop()
                raise AwsError(f"{self.service} {operation} failed: {type(exc).__name__}") from exc
        return _answer(self.service, operation, status, raw)


def _answer(service: str, operation: str, status: int, raw: bytes) -> dict[str, Any]:
    try:
        decoded = json.loads(raw) if raw else {}
    except ValueError:
        decoded = None
    if status == 200 and isinstance(decoded, dict):
        return decoded
    aws_code = None
    if isinstance(decoded, dict):
        # "com.amazonaws.sqs#QueueDoesNotExist" or plain "QueueDoesNotExist".
        aws_code = str(decoded.get("__type") or decoded.get("code") or "").rpartition("#")[2]
    raise AwsError(
        f"{service} {operation} answered {status} {aws_code or ''}".strip(),
        status=status,
        aws_code=aws_code or None,
    )
