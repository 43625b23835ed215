"""Direct Postgres store (``DATABASE_URL``): local development, tests, or a Supabase pooler.

One connection per container, autocommit between calls, one transaction per call. Member reads
switch to role ``authenticated`` with the claims PostgREST would set, so RLS applies exactly as
it does through Supabase.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from payments import errors
from payments.adapters.store import check_function_name, domain_error, is_domain_sqlstate

CONNECT_TIMEOUT_SECONDS = 5
STATEMENT_TIMEOUT_MS = 10_000


def _adapt(value: Any) -> Any:
    return Jsonb(value) if isinstance(value, dict | list) else value


class PostgresStore:
    def __init__(self, url: str) -> None:
        self._url = url
        self._conn: psycopg.Connection[Any] | None = None
        # Lambda runs one invocation at a time, but the local dev server and tests share a
        # store between threads: one call at a time on the connection, so one caller's role
        # and claims can never leak into another's transaction.
        self._lock = threading.Lock()

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            try:
                self._conn = psycopg.connect(
                    self._url,
                    autocommit=True,
                    connect_timeout=CONNECT_TIMEOUT_SECONDS,
                    options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
                )
            except psycopg.OperationalError as exc:
                raise errors.UpstreamUnavailable(
                    "The database is unavailable. Please retry in a moment.",
                    code="database_unavailable",
                ) from exc
        return self._conn

    @staticmethod
    def _statement(function: str, params: dict[str, Any]) -> sql.Composed:
        arguments = sql.SQL(", ").join(
            sql.SQL("{} => {}").format(sql.Identifier(name), sql.Placeholder(name))
            for name in params
        )
        return sql.SQL("select public.{}({})").format(
            sql.Identifier(check_function_name(function)), arguments
        )

    def _run(self, function: str, params: dict[str, Any], claims: dict[str, Any] | None) -> Any:
        statement = self._statement(function, params)
        values = {name: _adapt(value) for name, value in params.items()}
        with self._lock:
            return self._execute(statement, values, claims)

    def _execute(
        self, statement: sql.Composed, values: dict[str, Any], claims: dict[str, Any] | None
    ) -> Any:
        conn = self._connection()
        try:
            with conn.transaction(), conn.cursor() as cur:
                if claims is not None:
                    cur.execute("set local role authenticated")
                    cur.execute(
                        "select set_config('request.jwt.claims', %s, true)", (json.dumps(claims),)
                    )
                cur.execute(statement, values)
                row = cur.fetchone()
        except psycopg.Error as exc:
            if is_domain_sqlstate(exc.sqlstate):
                raise domain_error(exc.sqlstate, exc.diag.message_primary or "") from exc
            if isinstance(exc, psycopg.OperationalError):
                raise errors.UpstreamUnavailable(
                    "The database is unavailable. Please retry in a moment.",
                    code="database_unavailable",
                ) from exc
            raise
        return row[0] if row else None

    def call(self, function: str, **params: Any) -> Any:
        return self._run(function, params, claims=None)

    def call_as_member(self, member_id: str, function: str, **params: Any) -> Any:
        claims = {"sub": member_id, "role": "authenticated", "aud": "authenticated"}
        return self._run(function, params, claims=claims)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
