"""Who is calling: the member behind a Memberstack bearer token, and whether they are an admin."""

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
    def verify(self, token: str) -> str: ...


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
    headers: Mapping[str, str] | None, verifier: TokenVerifier, admin_ids: tuple[str, ...]
) -> Member:
    member_id = verifier.verify(bearer_token(headers))
    return Member(id=member_id, is_admin=member_id in admin_ids)


def current_member(headers: Mapping[str, str] | None) -> Member:
    """The member calling with these request headers (``Unauthenticated`` if none)."""
    settings = get_settings()
    return authenticate(headers, get_verifier(settings), settings.admin_member_ids)


def require_admin(member: Member, action: str) -> None:
    """Refuse a non-admin, and leave a trace of the attempt for the audit."""
    if not member.is_admin:
        logger.warning("admin action refused", extra={"member_id": member.id, "action": action})
        raise errors.Forbidden("Only an administrator can do this.", code="admin_only")


@lru_cache(maxsize=1)
def _verifier(api_base: str, app_id: str, secret_key: str) -> TokenVerifier:
    from payments.adapters.memberstack import MemberstackVerifier

    return MemberstackVerifier(api_base, secret_key, app_id)


def get_verifier(settings: Settings) -> TokenVerifier:
    """The container's verifier (one HTTP client and token cache per container)."""
    settings.require("memberstack_secret_key", "memberstack_app_id")
    return _verifier(
        settings.memberstack_api_base,
        settings.value("memberstack_app_id"),
        settings.value("memberstack_secret_key"),
    )
