"""Memberstack member tokens, verified locally against Memberstack's published signing keys.

A member token is an RS256 JWT. Memberstack publishes the public keys that sign them as a JWKS
document (``@memberstack/admin``'s ``verifyToken`` reads them from ``JWKS_URL`` below and checks
signature, issuer, audience and expiry itself): so do we, and a buyer's click costs no
Memberstack round trip. The keys are fetched once per container, kept for ``JWKS_MAX_AGE``,
and fetched again when a token names a key id we do not know (a rotation), at most once per
``JWKS_REFRESH_COOLDOWN`` so that tokens with invented key ids cannot make us hammer the
endpoint. We check the signature, audience (our app id), issuer, type and expiry ourselves.

The Admin REST API (``POST {MEMBERSTACK_API_BASE}/members/verify-token`` with the secret key)
is the fallback: when the keys cannot be fetched, when the key id stays unknown, and — see
``confirm`` — for what must see a revocation. It answers ``{"data": {id, type, iat, exp, aud,
iss}}`` for a valid token, and its answer gets the same claim checks. Verified tokens are cached
until ``CACHE_TTL_SECONDS`` or their ``exp``, whichever comes first.

Trust in the keys: Memberstack publishes them over plain HTTP (``JWKS_URL``, S3's website
endpoint, which has no HTTPS), so someone on the network path between a function and that
address could hand us keys of their own and sign any member's token. The local check is a fast
first filter, not the last word: ``confirm`` asks Memberstack's Admin API, over HTTPS with the
secret key, and ``payments.auth`` requires it for administrators and for the member actions
that disclose or destroy data or move money. ``MEMBERSTACK_JWKS_URL`` points the key fetch at
an HTTPS copy of the key set when the business keeps one.

Revocation: a signature cannot say that a member signed out or was deleted, so a token verified
locally passes until its ``exp`` even if revoked. ``confirm`` (cached ``CACHE_TTL_SECONDS``)
sees it, so on the confirmed routes a revoked token stops working within a minute.
docs/performance.md has the policy. An unreachable Memberstack is a 503, never a pass.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx
from cachetools import TLRUCache

from payments import errors
from payments.observability import logger
from payments.rs256 import (
    MalformedToken,
    RsaPublicKey,
    UnverifiedToken,
    key_from_jwk,
    split_token,
    verify_rs256,
)

ISSUER = "https://api.memberstack.com"
# Where Memberstack publishes its token signing keys (the URL its own admin package reads). Plain
# HTTP: keys read from it are trusted only as far as the module docstring says.
JWKS_URL = "http://member-jwt.s3-website-us-east-1.amazonaws.com/"
DEFAULT_API_BASE = "https://admin.memberstack.com"
# Where a stand-in for the Admin API (any other MEMBERSTACK_API_BASE) publishes its keys.
STANDIN_JWKS_PATH = "/.well-known/jwks.json"
TIMEOUT = httpx.Timeout(3.0, connect=2.0)
CACHE_TTL_SECONDS = 60.0
JWKS_MAX_AGE = 600.0
JWKS_REFRESH_COOLDOWN = 30.0
# Past its age, a key set that cannot be refreshed is still used this long (Memberstack down).
JWKS_MAX_STALE = 24 * 3600.0
MAX_TOKEN_LENGTH = 4096
# Clock skew tolerated on ``exp`` and ``nbf`` between Memberstack and Lambda.
LEEWAY_SECONDS = 5

MALFORMED = "Your sign-in token is malformed. Please sign in again."
NOT_VERIFIED = "Your sign-in token could not be verified. Please sign in again."
EXPIRED = "Your session has expired. Please sign in again."
OTHER_APP = "Your sign-in token is for another site. Please sign in here again."
NOT_MEMBER = "Your sign-in token is not a member token. Please sign in again."
REVOKED = (
    "Memberstack did not accept this sign-in (signed out, revoked or not its own). "
    "Please sign in again."
)


def jwks_url_for(api_base: str, explicit: str | None = None) -> str:
    """Memberstack's key set for its own API; a stand-in's for any other API base."""
    if explicit:
        return explicit
    base = api_base.rstrip("/")
    return JWKS_URL if base == DEFAULT_API_BASE else base + STANDIN_JWKS_PATH


@dataclass(frozen=True)
class VerifiedToken:
    member_id: str
    expires_at: float


def _refused(message: str) -> errors.Unauthenticated:
    return errors.Unauthenticated(message, code="unauthenticated")


def check_claims(claims: dict[str, Any], app_id: str, now: float) -> VerifiedToken:
    """The checks every accepted token passes, however its signature was verified."""
    member_id = claims.get("id")
    expires_at = claims.get("exp")
    if (
        isinstance(expires_at, bool)
        or not isinstance(expires_at, int | float)
        or not isinstance(member_id, str)
        or not member_id
    ):
        raise _refused(MALFORMED)
    if claims.get("iss") != ISSUER or claims.get("type", "member") != "member":
        raise _refused(NOT_MEMBER)
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    if app_id not in audiences:
        raise _refused(OTHER_APP)
    not_before = claims.get("nbf")
    if isinstance(not_before, int | float) and not_before > now + LEEWAY_SECONDS:
        raise _refused(NOT_VERIFIED)
    if expires_at <= now - LEEWAY_SECONDS:
        raise _refused(EXPIRED)
    return VerifiedToken(member_id=member_id, expires_at=float(expires_at))


class SigningKeys:
    """Memberstack's published keys by key id, fetched lazily and refreshed as described above."""

    def __init__(
        self,
        url: str,
        http: httpx.Client,
        *,
        max_age: float = JWKS_MAX_AGE,
        cooldown: float = JWKS_REFRESH_COOLDOWN,
        clock: Any = time.monotonic,
    ) -> None:
        self.url = url
        self._http = http
        self._max_age = max_age
        self._cooldown = cooldown
        self._clock = clock
        self._keys: dict[str, RsaPublicKey] = {}
        self._fetched_at = float("-inf")
        self._attempted_at = float("-inf")
        self._lock = threading.Lock()
        self.fetches = 0

    def get(self, kid: str) -> RsaPublicKey | None:
        """The key ``kid`` names, refreshing the set if it is old or does not know ``kid``."""
        with self._lock:
            now = self._clock()
            key = self._keys.get(kid)
            stale = now - self._fetched_at > self._max_age
            if (key is None or stale) and now - self._attempted_at >= self._cooldown:
                self._refresh(now)
                key = self._keys.get(kid)
            if key is not None and now - self._fetched_at > self._max_age + JWKS_MAX_STALE:
                return None  # too old to trust without a successful refresh
            return key

    def _refresh(self, now: float) -> None:
        self._attempted_at = now
        self.fetches += 1
        try:
            response = self._http.get(self.url, headers={"Accept": "application/json"})
            response.raise_for_status()
            document = response.json()
            published = document["keys"] if isinstance(document, dict) else None
            if not isinstance(published, list):
                raise ValueError("no keys array")
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            # Keep what we have; the caller falls back to verify-token for what it cannot check.
            logger.warning(
                "memberstack signing keys unavailable", extra={"error_type": type(exc).__name__}
            )
            return
        keys: dict[str, RsaPublicKey] = {}
        for jwk in published:
            if isinstance(jwk, dict) and isinstance(jwk.get("kid"), str):
                key = key_from_jwk(jwk)
                if key is not None:
                    keys[jwk["kid"]] = key
        self._keys = keys
        self._fetched_at = now


class MemberstackVerifier:
    def __init__(
        self,
        api_base: str,
        secret_key: str,
        app_id: str,
        *,
        jwks_url: str | None = None,
        http_client: httpx.Client | None = None,
        cache_ttl: float = CACHE_TTL_SECONDS,
        jwks_refresh_cooldown: float = JWKS_REFRESH_COOLDOWN,
        clock: Any = time.time,
    ) -> None:
        self._url = f"{api_base.rstrip('/')}/members/verify-token"
        self._secret_key = secret_key
        self._app_id = app_id
        self._http = http_client or httpx.Client(timeout=TIMEOUT)
        self._clock = clock
        self.keys = SigningKeys(
            jwks_url_for(api_base, jwks_url), self._http, cooldown=jwks_refresh_cooldown
        )
        self._cache = self._new_cache(cache_ttl)
        self._confirmed = self._new_cache(cache_ttl)
        self._lock = threading.Lock()
        # Calls to verify-token (the fallback and confirmations), for tests and the bench.
        self.calls = 0
        self.local_verifications = 0

    def _new_cache(self, ttl: float) -> TLRUCache[str, VerifiedToken]:
        return TLRUCache(
            maxsize=2048,
            ttu=lambda _k, v, now: min(now + ttl, v.expires_at),
            timer=self._clock,
        )

    def verify(self, token: str) -> str:
        """The member id of a valid token, or ``Unauthenticated`` / ``UpstreamUnavailable``."""
        if not token or len(token) > MAX_TOKEN_LENGTH or token.count(".") != 2:
            raise _refused(MALFORMED)
        key = hashlib.sha256(token.encode()).hexdigest()
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None:
            return cached.member_id
        verified = self._verify_locally(token)
        if verified is None:
            verified = self._verify_remotely(token)
        with self._lock:
            self._cache[key] = verified
        return verified.member_id

    def confirm(self, token: str) -> str:
        """Like ``verify``, but Memberstack itself says the session is still valid (so a
        revoked token is refused); cached ``CACHE_TTL_SECONDS``."""
        member_id = self.verify(token)
        key = hashlib.sha256(token.encode()).hexdigest()
        with self._lock:
            confirmed = self._confirmed.get(key)
        if confirmed is None:
            confirmed = self._verify_remotely(token)
            with self._lock:
                self._confirmed[key] = confirmed
        if confirmed.member_id != member_id:
            raise _refused(NOT_VERIFIED)
        return member_id

    def _verify_locally(self, token: str) -> VerifiedToken | None:
        """The verified token, ``Unauthenticated``, or None when only Memberstack can tell."""
        try:
            parts: UnverifiedToken = split_token(token)
        except MalformedToken:
            raise _refused(MALFORMED) from None
        alg, kid = parts.header.get("alg"), parts.header.get("kid")
        if alg != "RS256":
            # "none", HS256 signed with a public key, ...: never a Memberstack token.
            raise _refused(NOT_VERIFIED)
        if not isinstance(kid, str) or not kid:
            raise _refused(MALFORMED)
        signing_key = self.keys.get(kid)
        if signing_key is None:
            return None
        if not verify_rs256(parts.signing_input, parts.signature, signing_key):
            raise _refused(NOT_VERIFIED)
        self.local_verifications += 1
        return check_claims(parts.claims, self._app_id, self._clock())

    def _verify_remotely(self, token: str) -> VerifiedToken:
        self.calls += 1
        try:
            response = self._http.post(
                self._url,
                json={"token": token},
                headers={"X-API-KEY": self._secret_key, "Accept": "application/json"},
            )
        except httpx.HTTPError as exc:
            raise _unavailable() from exc
        if response.status_code == 429 or response.status_code >= 500:
            raise _unavailable()
        if response.status_code != 200:
            # Memberstack says no without saying why: revoked, expired or forged alike.
            raise _refused(REVOKED)
        try:
            data = response.json()["data"]
            if not isinstance(data, dict):
                raise TypeError("data is not an object")
        except (ValueError, KeyError, TypeError) as exc:
            raise errors.UpstreamError(
                "Sign-in could not be checked. Please retry.", code="auth_unavailable"
            ) from exc
        return check_claims(data, self._app_id, self._clock())


def _unavailable() -> errors.UpstreamUnavailable:
    return errors.UpstreamUnavailable(
        "Sign-in could not be checked right now. Please retry in a moment.",
        code="auth_unavailable",
    )
