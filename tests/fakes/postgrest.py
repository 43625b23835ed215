"""A PostgREST stand-in that executes each RPC on the real test database.

It does what PostgREST does for ``POST /rest/v1/rpc/<fn>``: verifies the bearer JWT with the
project's JWT secret, switches to the role it names with its claims in
``request.jwt.claims``, calls the function with the JSON body as named arguments, and maps a
raised SQLSTATE to PostgREST's error JSON. The Supabase adapter is therefore tested against
the real SQL functions and RLS, not canned responses.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import jwt
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

ROLES = {"anon", "authenticated", "service_role"}


class PostgrestOverPostgres(httpx.BaseTransport):
    def __init__(self, database_url: str, jwt_secret: str) -> None:
        self._url = database_url
        self._secret = jwt_secret
        self.requests: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        prefix = "/rest/v1/rpc/"
        if request.method != "POST" or not request.url.path.startswith(prefix):
            return httpx.Response(404, json={"message": "not an RPC"})
        function = request.url.path[len(prefix) :]
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=["HS256"],
                audience=None,
                options={"verify_aud": False},
            )
        except jwt.PyJWTError:
            return httpx.Response(401, json={"code": "PGRST301", "message": "JWT invalid"})
        role = claims.get("role", "anon")
        if role not in ROLES:
            return httpx.Response(401, json={"code": "PGRST301", "message": "bad role"})
        params: dict[str, Any] = json.loads(request.content or b"{}")
        return self._call(function, params, role, claims)

    def _call(
        self, function: str, params: dict[str, Any], role: str, claims: dict[str, Any]
    ) -> httpx.Response:
        arguments = sql.SQL(", ").join(
            sql.SQL("{} => {}").format(sql.Identifier(name), sql.Placeholder(name))
            for name in params
        )
        statement = sql.SQL("select public.{}({})").format(sql.Identifier(function), arguments)
        values = {k: Jsonb(v) if isinstance(v, dict | list) else v for k, v in params.items()}
        try:
            with psycopg.connect(self._url, autocommit=True) as conn, conn.transaction():
                conn.execute(sql.SQL("set local role {}").format(sql.Identifier(role)))
                conn.execute(
                    "select set_config('request.jwt.claims', %s, true)", (json.dumps(claims),)
                )
                row = conn.execute(statement, values).fetchone()
        except psycopg.Error as exc:
            status = 400 if (exc.sqlstate or "").startswith("PY") else 500
            if exc.sqlstate == "42501":
                status = 403
            return httpx.Response(
                status,
                json={
                    "code": exc.sqlstate,
                    "message": exc.diag.message_primary,
                    "details": None,
                    "hint": None,
                },
            )
        return httpx.Response(200, json=row[0] if row else None)
