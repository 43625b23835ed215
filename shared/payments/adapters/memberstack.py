"""Memberstack token verification through its Admin REST API.

``POST {MEMBERSTACK_API_BASE}/members/verify-token`` with the secret key in ``X-API-KEY``
answers ``{"data": {"id", "type", "iat", "exp", "aud", "iss"}}`` for a valid member token.
We check the audience (our app id), issuer, type and expiry ourselves, and cache a verified
token until a short TTL or its ``exp``, whichever comes first, so a page load costs one call.
An unreachable Memberstack is a 503, never a pass.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass

import httpx
from cachetools import TLRUCache

from payments import errors

ISSUER = "https://api.memberstack.com"
TIMEOUT = httpx.Timeout(3.0, connect=2.0)
CACHE_TTL_SECONDS = 60.0
MAX_TOKEN_LENGTH = 4096


@dataclass(frozen=True)
class VerifiedToken:
    member_id: str
    expires_at: float


class MemberstackVerifier:
    def __init__(
        self,
        api_base: str,
        secret_key: str,
        app_id: str,
        *,
        http_client: httpx.Client | None = None,
        cache_ttl: float = CACHE_TTL_SECONDS,
    ) -> None:
        self._url = f"{api_base.rstrip('/')}/members/verify-token"
        self._secret_key = secret_key
        self._app_id = app_id
        self._http = http_client or httpx.Client(timeout=TIMEOUT)
        self._cache_ttl = cache_ttl
        self._cache: TLRUCache[str, VerifiedToken] = TLRUCache(
            maxsize=2048,
            ttu=lambda _k, v, now: min(now + cache_ttl, v.expires_at),
            timer=time.time,
        )
        self._lock = threading.Lock()
        self.calls = 0

    def verify(self, token: str) -> str:
        """The member id of a valid token, or ``Unauthenticated`` / ``UpstreamUnavailable``."""
        if not token or len(token) > MAX_TOKEN_LENGTH or token.count(".") != 2:
            raise errors.Unauthenticated("Your session is not valid. Please sign in again.")
        key = hashlib.sha256(token.encode()).hexdigest()
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None:
            return cached.member_id
        verified = self._verify_remotely(token)
        with self._lock:
            self._cache[key] = verified
        return verified.member_id

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
            raise errors.Unauthenticated("Your session has expired. Please sign in again.")
        try:
            data = response.json()["data"]
            member_id, expires_at = str(data["id"]), float(data["exp"])
        except (ValueError, KeyError, TypeError) as exc:
            raise errors.UpstreamError(
                "Sign-in could not be checked. Please retry.", code="auth_unavailable"
            ) from exc
        if (
            data.get("aud") != self._app_id
            or data.get("iss") != ISSUER
            or data.get("type", "member") != "member"
            or not member_id
            or expires_at <= time.time()
        ):
            raise errors.Unauthenticated("Your session is not valid. Please sign in again.")
        return VerifiedToken(member_id=member_id, expires_at=expires_at)


def _unavailable() -> errors.UpstreamUnavailable:
    return errors.UpstreamUnavailable(
        "Sign-in could not be checked right now. Please retry in a moment.",
        code="auth_unavailable",
    )
