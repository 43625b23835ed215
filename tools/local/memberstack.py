"""Stand-in for Memberstack's Admin REST API, limited to member token verification.

The real endpoint is ``POST {base}/members/verify-token`` with the secret key in ``X-API-KEY``
and ``{"token": "<jwt>"}`` as the body. It answers 200 with ``{"data": {id, type, iat, exp, aud,
iss}}`` for a valid token and 401 ``{"code": "INVALID_TOKEN", ...}`` otherwise. It does not
check the audience: it returns ``aud`` and the payment service compares it with its app id, so
this stand-in does not check it either.

Memberstack also publishes the public keys that sign member tokens as a JWKS document, which
its own admin package (and the payment service) reads to verify tokens without calling the
API. The stand-in publishes its keys the same way at ``GET /.well-known/jwks.json`` (the
service derives that address from ``MEMBERSTACK_API_BASE`` when it is not Memberstack's).

Tokens are real RS256 JWTs. The signing key is persisted at ``.local/memberstack/key.pem``
(override with ``MEMBERSTACK_STANDIN_KEY_FILE``) and created on first use, so tokens minted by
``python -m tools.local.member_token`` in another terminal verify against the running server.

Extra endpoints for tests and demos, loopback only and never part of the real API:

* ``POST /_standin/revoke {"token"}``: later verify-token calls for that token fail (a token
  verified against the published keys still passes until it expires, as with Memberstack).
* ``POST /_standin/rotate {"retire_previous"?}``: sign with a new key from now on, published
  beside the previous one (or instead of it with ``retire_previous``).
* ``POST /_standin/tokens {"member_id", "ttl_seconds"?, "email"?}``: mint a token.
* ``GET /_standin/health``.

Run it with ``python -m tools.local.memberstack`` (port from ``MEMBERSTACK_STANDIN_PORT``,
default 12112).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import threading
import time
from http import HTTPStatus
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tools.local._http import (
    BackgroundServer,
    BadRequestError,
    Request,
    Response,
    configure_cli_logging,
    port_from_env,
    wait_for_termination,
)

logger = logging.getLogger(__name__)

DEFAULT_PORT = 12112
PORT_ENV = "MEMBERSTACK_STANDIN_PORT"
SECRET_KEY_ENV = "MEMBERSTACK_SECRET_KEY"
APP_ID_ENV = "MEMBERSTACK_APP_ID"
KEY_FILE_ENV = "MEMBERSTACK_STANDIN_KEY_FILE"

DEFAULT_SECRET_KEY = "sk_sb_local_standin"
DEFAULT_APP_ID = "app_local_payments"
ISSUER = "https://api.memberstack.com"
ALGORITHM = "RS256"
# A well-known member id for local admin use; it still has to be listed in ADMIN_MEMBER_IDS.
LOCAL_ADMIN_MEMBER_ID = "mem_admin_local"

_REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_KEY_FILE = _REPO_ROOT / ".local" / "memberstack" / "key.pem"

# The claims Memberstack's verify-token returns under "data".
_RETURNED_CLAIMS = ("id", "type", "iat", "exp", "aud", "iss")


def configured_secret_key() -> str:
    """The Admin API secret key: ``MEMBERSTACK_SECRET_KEY`` or the local default."""
    return os.environ.get(SECRET_KEY_ENV) or DEFAULT_SECRET_KEY


def configured_app_id() -> str:
    """The Memberstack app id put in ``aud``: ``MEMBERSTACK_APP_ID`` or the local default."""
    return os.environ.get(APP_ID_ENV) or DEFAULT_APP_ID


def key_file_path() -> Path:
    """Where the shared signing key lives: ``MEMBERSTACK_STANDIN_KEY_FILE`` or ``.local/``."""
    override = os.environ.get(KEY_FILE_ENV)
    return Path(override) if override else DEFAULT_KEY_FILE


def generate_signing_key() -> rsa.RSAPrivateKey:
    """A fresh 2048-bit RSA key, kept in memory only."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def load_or_create_signing_key(path: Path | None = None) -> rsa.RSAPrivateKey:
    """Load the signing key from ``path`` (default :func:`key_file_path`), creating it if absent.

    The key is a throw-away local key, stored unencrypted with mode 0600 in a git-ignored
    folder. Creation is race-free: the key is written to a temporary file and hard-linked into
    place, so when the server and the CLI start together both end up with the same key.
    """
    path = path or key_file_path()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        pem = generate_signing_key().private_bytes(
            encoding=serialization.Encoding.PEM,
            format=serialization.PrivateFormat.PKCS8,
            encryption_algorithm=serialization.NoEncryption(),
        )
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process created it first; use theirs
        finally:
            tmp.unlink()
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"{path} does not hold an RSA private key")
    return key


def key_id(key: rsa.RSAPrivateKey | rsa.RSAPublicKey) -> str:
    """A short, stable identifier of the key pair, used as the JWT ``kid`` header."""
    public = key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()[:16]


def _b64url_int(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def public_jwk(key: rsa.RSAPrivateKey | rsa.RSAPublicKey) -> dict[str, str]:
    """The JWK of the key pair's public half, as a JWKS document lists it."""
    public = key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key
    numbers = public.public_numbers()
    return {
        "kty": "RSA",
        "kid": key_id(public),
        "use": "sig",
        "alg": ALGORITHM,
        "n": _b64url_int(numbers.n),
        "e": _b64url_int(numbers.e),
    }


def mint_token(
    member_id: str,
    *,
    app_id: str | None = None,
    ttl_seconds: int = 3600,
    email: str | None = None,
    key: rsa.RSAPrivateKey | None = None,
    issued_at: int | None = None,
) -> str:
    """Mint a Memberstack-shaped member token.

    ``app_id`` defaults to :func:`configured_app_id` and ``key`` to the shared key file, which
    is what a running stand-in uses. ``issued_at`` (Unix seconds, default now) lets tests mint
    tokens that are already expired.
    """
    if not member_id:
        raise ValueError("member_id must not be empty")
    signing_key = key or load_or_create_signing_key()
    iat = int(time.time()) if issued_at is None else issued_at
    claims: dict[str, Any] = {
        "id": member_id,
        "sub": member_id,
        "type": "member",
        "aud": app_id or configured_app_id(),
        "iss": ISSUER,
        "iat": iat,
        "exp": iat + ttl_seconds,
    }
    if email is not None:
        claims["email"] = email
    return jwt.encode(
        claims, signing_key, algorithm=ALGORITHM, headers={"kid": key_id(signing_key)}
    )


def _token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _error(status: int, code: str, message: str) -> Response:
    return Response.json(status, {"code": code, "message": message})


_INVALID_TOKEN = (HTTPStatus.UNAUTHORIZED, "INVALID_TOKEN", "Invalid token")


class MemberstackStandIn:
    """The stand-in's behaviour, independent of HTTP. Thread-safe."""

    def __init__(self, *, key: rsa.RSAPrivateKey, secret_key: str, app_id: str) -> None:
        # Published keys, oldest first; the last one signs new tokens.
        self._keys = [key]
        self.secret_key = secret_key
        self.app_id = app_id
        self._revoked: set[str] = set()
        self._lock = threading.Lock()
        self.jwks_served = 0

    @property
    def key(self) -> rsa.RSAPrivateKey:
        """The key that signs new tokens."""
        with self._lock:
            return self._keys[-1]

    def rotate(
        self, new_key: rsa.RSAPrivateKey | None = None, *, retire_previous: bool = False
    ) -> rsa.RSAPrivateKey:
        """Sign with ``new_key`` (a fresh one by default) from now on, as a key rotation does."""
        key = new_key or generate_signing_key()
        with self._lock:
            self._keys = [key] if retire_previous else [*self._keys, key]
        return key

    def jwks(self) -> dict[str, Any]:
        """The JWKS document: every key a valid token may be signed with."""
        with self._lock:
            keys = list(self._keys)
        return {"keys": [public_jwk(key) for key in keys]}

    def _public_key(self, token: str) -> rsa.RSAPublicKey | None:
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.InvalidTokenError:
            return None
        with self._lock:
            keys = list(self._keys)
        for key in keys:
            if key_id(key) == kid:
                return key.public_key()
        return None

    def mint(self, member_id: str, *, ttl_seconds: int = 3600, email: str | None = None) -> str:
        """Mint a token this stand-in will accept."""
        return mint_token(
            member_id, app_id=self.app_id, ttl_seconds=ttl_seconds, email=email, key=self.key
        )

    def revoke(self, token: str) -> None:
        """Make later verifications of ``token`` fail, like a logged-out session."""
        with self._lock:
            self._revoked.add(_token_digest(token))

    def verify(self, token: str) -> dict[str, Any] | None:
        """Return the claims verify-token would return, or None if the token is invalid."""
        with self._lock:
            if _token_digest(token) in self._revoked:
                return None
        public_key = self._public_key(token)
        if public_key is None:
            return None
        try:
            claims = jwt.decode(
                token,
                public_key,
                algorithms=[ALGORITHM],
                issuer=ISSUER,
                # Memberstack leaves the audience check to the caller (see module docstring).
                options={"verify_aud": False, "require": ["exp", "iat", "iss", "aud"]},
            )
        except jwt.InvalidTokenError as exc:
            logger.info("memberstack stand-in rejected a token: %s", type(exc).__name__)
            return None
        if claims.get("type") != "member" or not isinstance(claims.get("id"), str):
            return None
        return {name: claims[name] for name in _RETURNED_CLAIMS}

    def handle(self, request: Request) -> Response:
        """Route one HTTP request."""
        routes = {
            "/members/verify-token": ("POST", self._verify_token),
            "/.well-known/jwks.json": ("GET", self._jwks),
            "/_standin/revoke": ("POST", self._revoke),
            "/_standin/rotate": ("POST", self._rotate),
            "/_standin/tokens": ("POST", self._mint),
            "/_standin/health": ("GET", self._health),
        }
        route = routes.get(request.path.rstrip("/") or "/")
        if route is None:
            return _error(HTTPStatus.NOT_FOUND, "NOT_FOUND", f"No route for {request.path}")
        method, endpoint = route
        if request.method != method:
            return _error(HTTPStatus.METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED", request.method)
        return endpoint(request)

    def _verify_token(self, request: Request) -> Response:
        presented = request.header("X-API-KEY") or ""
        if not hmac.compare_digest(presented.encode(), self.secret_key.encode()):
            return _error(HTTPStatus.UNAUTHORIZED, "UNAUTHORIZED", "Invalid or missing API key")
        token = _token_from(request)
        data = self.verify(token)
        if data is None:
            return _error(*_INVALID_TOKEN)
        return Response.json(HTTPStatus.OK, {"data": data})

    def _jwks(self, request: Request) -> Response:
        with self._lock:
            self.jwks_served += 1
        return Response.json(HTTPStatus.OK, self.jwks())

    def _rotate(self, request: Request) -> Response:
        body = request.json() if request.body else {}
        retire = bool(body.get("retire_previous")) if isinstance(body, dict) else False
        key = self.rotate(retire_previous=retire)
        return Response.json(HTTPStatus.OK, {"kid": key_id(key)})

    def _revoke(self, request: Request) -> Response:
        self.revoke(_token_from(request))
        return Response.json(HTTPStatus.OK, {"revoked": True})

    def _mint(self, request: Request) -> Response:
        body = request.json()
        if not isinstance(body, dict) or not isinstance(body.get("member_id"), str):
            raise BadRequestError('expected {"member_id": "mem_..."}')
        ttl = body.get("ttl_seconds", 3600)
        if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl <= 0:
            raise BadRequestError("ttl_seconds must be a positive integer")
        email = body.get("email")
        if email is not None and not isinstance(email, str):
            raise BadRequestError("email must be a string")
        token = self.mint(body["member_id"], ttl_seconds=ttl, email=email)
        return Response.json(HTTPStatus.CREATED, {"token": token})

    def _health(self, request: Request) -> Response:
        return Response.json(HTTPStatus.OK, {"ok": True, "app_id": self.app_id})


def _token_from(request: Request) -> str:
    body = request.json()
    if not isinstance(body, dict) or not isinstance(body.get("token"), str):
        raise BadRequestError('expected {"token": "<jwt>"}')
    token: str = body["token"]
    return token


class MemberstackServer(BackgroundServer):
    """A running stand-in: ``.url``, ``.stop()``, plus ``.mint()`` and ``.revoke()``."""

    def __init__(self, standin: MemberstackStandIn, port: int = 0) -> None:
        self.standin = standin
        super().__init__(standin, port)

    @property
    def secret_key(self) -> str:
        """The X-API-KEY the server accepts."""
        return self.standin.secret_key

    @property
    def app_id(self) -> str:
        """The ``aud`` of the tokens it mints."""
        return self.standin.app_id

    def mint(self, member_id: str, *, ttl_seconds: int = 3600, email: str | None = None) -> str:
        """Mint a token the server accepts."""
        return self.standin.mint(member_id, ttl_seconds=ttl_seconds, email=email)

    def revoke(self, token: str) -> None:
        """Revoke a token, as ``POST /_standin/revoke`` does."""
        self.standin.revoke(token)


def start_memberstack(
    port: int = 0,
    *,
    secret_key: str | None = None,
    app_id: str | None = None,
    key: rsa.RSAPrivateKey | None = None,
    key_path: Path | None = None,
) -> MemberstackServer:
    """Start the stand-in in a background thread on 127.0.0.1.

    ``secret_key`` and ``app_id`` default to the environment (see the module docstring).
    ``key`` is used as is (tests pass an in-memory key); otherwise the key is loaded from
    ``key_path`` or the shared key file, created if needed.
    """
    signing_key = key or load_or_create_signing_key(key_path)
    standin = MemberstackStandIn(
        key=signing_key,
        secret_key=secret_key or configured_secret_key(),
        app_id=app_id or configured_app_id(),
    )
    return MemberstackServer(standin, port)


def main() -> None:
    """``python -m tools.local.memberstack``: serve until interrupted."""
    configure_cli_logging()
    port = port_from_env(PORT_ENV, DEFAULT_PORT)
    server = start_memberstack(port)
    print(
        f"Memberstack stand-in on {server.url} (app {server.app_id}, key {key_file_path()})",
        flush=True,
    )
    try:
        wait_for_termination()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
