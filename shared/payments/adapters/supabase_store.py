"""Supabase store: the same SQL functions over PostgREST RPC, as supabase-py calls them.

It uses ``postgrest`` (supabase-py's own RPC client) rather than the whole ``supabase``
client: the RPC layer is all the service needs, and it skips importing the realtime, storage
and auth clients on every cold start. Member reads carry a short-lived JWT signed with the
project's JWT secret (``sub`` = member id, ``role`` = authenticated) so PostgREST runs them
under RLS as that member.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import jwt
from postgrest import APIError, SyncPostgrestClient

from payments import errors
from payments.adapters.store import check_function_name, domain_error, is_domain_sqlstate

TIMEOUT = httpx.Timeout(10.0, connect=3.0)
MEMBER_TOKEN_TTL_SECONDS = 60


class SupabaseStore:
    def __init__(
        self,
        supabase_url: str,
        service_role_key: str,
        jwt_secret: str,
        *,
        http_client: httpx.Client | None = None,
    ) -> None:
        self._rest_url = f"{supabase_url.rstrip('/')}/rest/v1"
        self._service_role_key = service_role_key
        self._jwt_secret = jwt_secret
        self._http = http_client or httpx.Client(timeout=TIMEOUT)
        self._service = self._client(service_role_key)

    def _client(self, bearer: str) -> SyncPostgrestClient:
        return SyncPostgrestClient(
            self._rest_url,
            headers={
                "apikey": self._service_role_key,
                "Authorization": f"Bearer {bearer}",
                "Accept": "application/json",
                "Content-Type": "application/json",
            },
            http_client=self._http,
            retry_enabled=False,
        )

    def member_token(self, member_id: str) -> str:
        now = int(time.time())
        claims = {
            "sub": member_id,
            "role": "authenticated",
            "aud": "authenticated",
            "iat": now,
            "exp": now + MEMBER_TOKEN_TTL_SECONDS,
        }
        return jwt.encode(claims, self._jwt_secret, algorithm="HS256")

    @staticmethod
    def _execute(client: SyncPostgrestClient, function: str, params: dict[str, Any]) -> Any:
        try:
            return client.rpc(check_function_name(function), params).execute().data
        except APIError as exc:
            if is_domain_sqlstate(exc.code):
                raise domain_error(exc.code, exc.message or "") from exc
            raise domain_error(None, "") from exc
        except httpx.HTTPError as exc:
            raise errors.UpstreamUnavailable(
                "The database is unavailable. Please retry in a moment.",
                code="database_unavailable",
            ) from exc

    def call(self, function: str, **params: Any) -> Any:
        return self._execute(self._service, function, params)

    def call_as_member(self, member_id: str, function: str, **params: Any) -> Any:
        return self._execute(self._client(self.member_token(member_id)), function, params)
