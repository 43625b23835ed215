"""The store port: SQL functions called by name, as the service role or as one member.

All state changes and reads are Postgres functions (``supabase/migrations``). Both adapters,
Supabase (PostgREST RPC) and direct Postgres (``DATABASE_URL``), call the same functions, so
there is one implementation of every rule that protects money and data.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Protocol

from payments import errors
from payments.settings import Settings

_FUNCTION_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

# SQLSTATEs our SQL functions raise on purpose, and the domain error each one means.
ERROR_BY_SQLSTATE: dict[str, type[errors.PaymentsError]] = {
    "PY400": errors.InvalidRequest,
    "PY404": errors.NotFound,
    "PY409": errors.Conflict,
    "PY422": errors.Unprocessable,
    # insufficient_privilege: a member calling a service-only function, or RLS refusing.
    "42501": errors.Forbidden,
}


class StoreError(errors.PaymentsError):
    """The database rejected a call in a way no caller can fix (HTTP 500)."""

    code = "store_error"


class Store(Protocol):
    def call(self, function: str, **params: Any) -> Any:
        """Run ``public.<function>(named params)`` as the service role; return its JSON."""

    def call_as_member(self, member_id: str, function: str, **params: Any) -> Any:
        """Run a read function as this member (role ``authenticated``) under RLS."""


def check_function_name(function: str) -> str:
    if not _FUNCTION_NAME.match(function):
        raise ValueError(f"not a SQL function name: {function!r}")
    return function


def is_domain_sqlstate(sqlstate: str | None) -> bool:
    return sqlstate in ERROR_BY_SQLSTATE


def domain_error(sqlstate: str | None, message: str) -> errors.PaymentsError:
    """The domain error for a database error raised by one of our functions."""
    error_type = ERROR_BY_SQLSTATE.get(sqlstate or "")
    if error_type is None:
        return StoreError()
    return error_type(message)


@lru_cache(maxsize=1)
def _cached_store(settings: Settings) -> Store:
    if settings.database_url is not None:
        from payments.adapters.postgres_store import PostgresStore

        return PostgresStore(settings.database_url.get_secret_value())
    from payments.adapters.supabase_store import SupabaseStore

    settings.require("supabase_url", "supabase_service_role_key", "supabase_jwt_secret")
    return SupabaseStore(
        settings.value("supabase_url"),
        settings.value("supabase_service_role_key"),
        settings.value("supabase_jwt_secret"),
    )


def get_store(settings: Settings) -> Store:
    """The store of this container: direct Postgres when ``DATABASE_URL`` is set, else Supabase."""
    settings.require_store()
    return _cached_store(settings)
