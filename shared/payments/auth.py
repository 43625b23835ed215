"""Who is calling: the member behind a Memberstack bearer token, and whether they are an admin.

Two checks, in this order. The token's signature and claims are verified locally against
Memberstack's published keys (fast; a bad token is a 401 with no round trip). Memberstack
serves those keys over plain HTTP, so a network attacker between a function and that address
could substitute keys and forge any member's token; the local check alone therefore guards
only what a member could do anyway. Whatever discloses or destroys data, or moves money, also
asks Memberstack itself (``confirm``: its ``verify-token`` over HTTPS with the secret key),
which no forged or revoked token passes: every administrator request, and the member actions
that call ``current_member`` with ``confirm=True`` (erasure, the data export, a plan's change,
pause, resume or cancel, the Billing Portal, a product switch).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

from payments import errors
from payments.observability import logger
from payments.settings import Settings, get_settings


@dataclass(frozen=True)
class Member:
    id: str
    is_admin: bool = False


class TokenVerifier(Protocol):
    def verify(self, token: str) -> str:
        """The member id of a token whose signature and claims check out locally."""
        ...

    def confirm(self, token: str) -> str:
        """The member id, once Memberstack itself says the session is still valid."""
        ...


def bearer_token(headers: Mapping[str, str] | None) -> str:
    """The token of ``Authorization: Bearer <token>``, or ``Unauthenticated``."""
    value = ""
    for name, header in (headers or {}).items():
        if name.lower() == "authorization":
            value = header
            break
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise errors.Unauthenticated("Please sign in to continue.", code="unauthenticated")
    return token.strip()


def authenticate(
    headers: Mapping[str, str] | None,
    verifier: TokenVerifier,
    admin_ids: tuple[str, ...],
    *,
    confirm: bool = False,
) -> Member:
    """The member a token names. The token is verified locally first (signature and claims),
    so a bad one fails fast. An administrator's token, and any token when ``confirm`` is set,
    is then confirmed with Memberstack, the authoritative check: a forged token (keys
    substituted on their way from Memberstack) or a revoked one is refused, a revoked one
    within the minute confirmations are cached."""
    token = bearer_token(headers)
    member_id = verifier.verify(token)
    is_admin = member_id in admin_ids
    if is_admin or confirm:
        member_id = verifier.confirm(token)
    return Member(id=member_id, is_admin=is_admin)


def current_member(headers: Mapping[str, str] | None, *, confirm: bool = False) -> Member:
    """The member calling with these request headers (``Unauthenticated`` if none).

    ``confirm=True`` for a member action that discloses or destroys data or moves money (export,
    erasure, cancel, product switch): Memberstack itself must accept the token, at the cost of
    one round trip per token and minute."""
    settings = get_settings()
    return authenticate(headers, get_verifier(settings), settings.admin_member_ids, confirm=confirm)


def require_admin(member: Member, action: str) -> None:
    """Refuse a non-admin, and leave a trace of the attempt for the audit."""
    if not member.is_admin:
        logger.warning("admin action refused", extra={"member_id": member.id, "action": action})
        raise errors.Forbidden("Only an administrator can do this.", code="admin_only")


@lru_cache(maxsize=1)
def _verifier(
    api_base: str, app_id: str, secret_key: str, jwks_url: str | None = None
) -> TokenVerifier:
    from payments.adapters.memberstack import MemberstackVerifier

    return MemberstackVerifier(api_base, secret_key, app_id, jwks_url=jwks_url)


def get_verifier(settings: Settings) -> TokenVerifier:
    """The container's verifier (one HTTP client, key set and token cache per container)."""
    settings.require("memberstack_secret_key", "memberstack_app_id")
    return _verifier(
        settings.memberstack_api_base,
        settings.value("memberstack_app_id"),
        settings.value("memberstack_secret_key"),
        settings.memberstack_jwks_url,
    )
